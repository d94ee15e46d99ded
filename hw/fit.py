"""``pqtwin calibrate --from-run HW_DIR [--from-run HW_DIR ...]``: fit what a profile lacks from twin runs' spans.

A profile prices library calls measured in isolation; the twin's nodes run them inside real code paths
(record framing, buffer handling, Python glue between steps, a kernel copy per message, two trainings
sharing memory bandwidth). For every CPU span of the run's rounds the fit predicts the base profile's cost
for the same op and size (signing = the scheme's message hash + the signature, as the simulator prices
it), adds to the measured duration the glue gap before it (the time since the previous step of the same
pod and phase ended, when that gap is shorter than ``GLUE_MAX_S``; longer gaps are waits, not work), and
fits the residual per operation *kind* (``encaps``, ``sign``, ``encrypt``, ``serialize`` ...), with the
session handshakes and telemetry frames of the same run giving the small sizes (their service time only):

- sizes at least ``SPREAD`` apart (signing: model messages and handshake transcripts): ``per_call_s`` +
  ``per_byte_s``, a resistant line through the medians of the small and the large sizes, so the fit
  carries over to other message sizes;
- with runs of three message sizes or more (``_extra_by_size``; or a larger model's messages alone,
  ``fit_from_run``'s ``messages_from``, ``_widen``): the median residual at each size, which the simulator
  interpolates (``Overhead.extra_by_bytes``) where a line through two sizes carried the cache-warm 1 MB price's
  step on top of the profile's memory-bound 4 MB one (docs/twin-validation.md, stop 70);
- work that scales (``train``, ``fedavg``) in runs of model sizes at least ``SPREAD`` apart (training runs at two
  sizes, pooled): a factor and a constant, the resistant line of measured against predicted -- a code path costs
  a per-call amount (Python, fresh buffers) beside what grows with the work, and a factor fitted at one size
  carries the per-call part to other sizes in proportion (at 250 k it undercharged 50 k rounds by ~10 % and
  overcharged 1 M by 3-10 %);
- one size only, of work that scales (``train``, ``fedavg``, anything priced per byte): a factor, the median
  of measured / predicted — its extra cost grows with the work, so a constant would not carry over;
- fixed-size operations (``encaps``, ``decaps``, ``keygen`` ...): ``per_call_s``, the median residual; with runs of
  two model sizes or more (the training runs, and a larger model's, ``messages_from``), also the median residual at
  each size (``_by_model_size``), which the simulator interpolates at a scenario's model size
  (``Overhead.per_call_by_parameters``): the twin's decapsulation costs 50-55 µs a call in rounds of a 12.5 k model
  and 91-98 µs in rounds of a 250 k one, and the pooled median of the two fell anywhere between from one
  calibration to the next (31-50 µs over five on 2026-12-05), taking a 50 k concurrent round's simulated median
  12.6-14.4 ms where the twin measured 13.1-13.6 (docs/twin-validation.md, stop 74);
- ``loopback``: the same for messages between pods of one host (transfer spans, from when the sender's
  encryption ended): the rounds' models and updates, and the session handshakes' records as the small size;
- a burst's first call (``_bursts``, ``_cold``; sim/profile.py ``Overhead.cold_s``): a pod's steps with less than
  ``COLD_GAP_S`` between them are a burst (its transfers count as its work), and where a burst calls a kind twice at
  one size (the sequential aggregator's two serialisations, decryptions ... of a round) the first's time less the
  later ones' is the kind's cold extra: a line in bytes through each size's median where the sizes span ``SPREAD``,
  else a constant. The twin decrypts its second update of a round 74 ps a byte faster than its first (8 MB: 0.66 ms)
  and serialises its second model 54 ps a byte faster: the calibration's back-to-back calls are always warm. Each
  burst's first call of such a kind is fitted net of it (the overhead proper is a later call's), and the simulator
  adds it back to each burst's first call (sim/hosts.py ``Endpoint``);
- the two hand-offs (sim/profile.py ``RECEIVE_HANDOFF``, ``INBOX_HANDOFF``): the median wait from a model's last
  byte to the client's first step on it, and (sequential runs) from the round's last update's last byte to the
  aggregator's first step on it. No span holds them: the transfer ends when the receiving thread has the record,
  the next span begins at the first timed step. Measured here at 50 k-1 M parameters: 60-100 µs and 115-300 µs a
  message, over a model the simulator otherwise starts on at once; per model size as the fixed-size operations.

A constant (the small sizes' median residual, a fixed-size op's) that is within two standard errors of zero
is not fitted: the profile measured that call many times, a run's few handshakes cannot overrule it.

Each kind also gets ``sigma``, the robust spread (1.4826 x MAD) of ln(measured / charged), charged being what the
fitted overhead makes of the profile's price, within each size and pooled: the jitter a real code path shows
around its median, which the simulator samples so its p95 sees it too (across sizes, a line's misfit at one size
would count as jitter), and where two sizes or more have ``SIZE_ROWS`` spans, ``sigma_by_bytes`` (calls with bytes)
and ``sigma_by_cost_s`` (calls without, by their price): the spread within each size, which the simulator
interpolates (a 12.5 k-parameter training step jitters three times as much, relative to
its length, as a 250 k one: with one pooled spread a 1 M round's two steps ended twice as far apart as the twin's,
2026-12-01). Each fitted
value is tagged F with the run it came from. The fit sees only the run it is given: validate it
on other configurations (bench/twin_fidelity.py does).

The overheads must describe code paths, not the host's state that day: this machine's cores switch between two
speeds ~1.6x apart within seconds (hw/speed.py), and a run that spent part of its rounds in the slow state made
a 1 MB signature 0.5 ms dearer, which a line through two sizes carried to 4 MB as 3 ms a message (the
22:30 matrix of 2026-11-30: every 1 M cell 8-13 % above the twin). Where the run kept its speed probe's samples
(``speed_probe.csv``), each span near which a core ran slow (``hw.speed.slow_spans``) is left out of a kind's
fit, as long as every size the kind has keeps ``MIN_ROWS`` spans at speed (else the kind is fitted from all,
as before); the rest are at the calibration's speed as measured. Spans no sample was near, and runs that kept
none, are brought to the profile's speed by the run's median probe (``speed_vs_calibration``); spans left in
that the probe saw slow, by the slow samples' median (``hw.speed.slow_state_us``: a run's median may be either
state's). Not training and FedAvg (``MEMORY_KINDS``): their speed follows the host's memory state, which the probe
does not see, so their spans are kept as measured.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from hw.modes import whole_run
from hw.rundir import unwritten_hint
from hw.speed import KEPT_FILE, read_kept, slow_spans, slow_state_us
from hw.trainprobe import training_facts
from sim import catalogue
from sim.contract import (
    FL_PHASES,
    WIRE_OPS,
    RunLayout,
    TrainingProbe,
    read_spans,
    read_summary,
    without_duplicate_spans,
)
from sim.errors import M, UserError, show
from sim.loading import refuse_repeated_dirs
from sim.profile import (
    COLD_GAP_S,
    COLD_PHASES,
    INBOX_HANDOFF,
    RECEIVE_HANDOFF,
    LinearOp,
    Overhead,
    PerCallOp,
    Profile,
    op_kind,
)
from sim.scenario import Scenario, load_scenario

GLUE_MAX_S = 0.002
SPREAD = 4.0  # sizes must span this factor before a per-byte slope is fitted
MIN_ROWS = 3
SIZE_ROWS = 10  # spans a size needs for a spread of its own (``_jitter_by_size``)
FACTOR_KINDS = ("train", "fedavg")
SMALL_PHASES = ("handshake", "telemetry")  # the small records' (module docstring), not the rounds' messages
# kinds whose speed follows the host's memory state, not the speed probe's (an L1-resident hash): kept as measured.
# Two quick matrices 12 minutes apart (2026-12-04 00:02 and 00:14) had training runs of equal medians (250 k:
# 15.6 / 15.8 ms and 15.1 / 16.0 ms) that the probe read at 1.00x and at 0.65-0.69x; brought to the profile's speed
# by it, the second fit priced training 0.77x the first (its cells' steps 20-32 % short)
MEMORY_KINDS = ("train", "fedavg")
BOOTSTRAP_SEED, BOOTSTRAP_RESAMPLES = 20261129, 400


def memory_at_price(data: dict[str, Any], speed: float, train: float = 1.0) -> dict[str, Any]:
    """Profile data whose work from memory (``MEMORY_KINDS``: training, FedAvg; their ops and overheads) is
    ``speed`` x as dear, so that on cores ``speed`` x as fast (``cpu_speed``, which divides every cost) it keeps
    its price: the speed probe a run's speed comes from does not see the state that work runs in (module doc).
    ``fl.train`` and its overhead ``train`` x their price besides (the host's memory state measured apart: the
    training probe, hw/trainprobe.py; bench/twin_fidelity.py).
    ``data`` is changed in place and returned."""
    for name, op in data["ops"].items():
        if op_kind(name) in MEMORY_KINDS:
            _dearer(op, speed * (train if name == "fl.train" else 1.0))
    for kind, over in (data.get("overheads") or {}).items():
        if kind in MEMORY_KINDS:  # its seconds as the op's (its factor multiplies the op's price, dearer already)
            k = speed * (train if kind == "train" else 1.0)
            over["per_call_s"] = over.get("per_call_s", 0.0) * k
            over["per_byte_s"] = over.get("per_byte_s", 0.0) * k
            if over.get("sigma_by_cost_s"):  # keyed by the price, which moved with it
                over["sigma_by_cost_s"] = [[cost * k, sigma] for cost, sigma in over["sigma_by_cost_s"]]
    return data


def _dearer(op: dict[str, Any], k: float) -> None:
    """An op's entry (``sim.profile.LinearOp`` or ``PerCallOp`` data) ``k`` x as dear, in place."""
    for key in ("per_call_s", "per_unit_s", "mean_s", "p50_s", "stdev_s"):
        if op.get(key) is not None:
            op[key] = op[key] * k
    if op.get("points"):
        op["points"] = [[u, t * k] for u, t in op["points"]]
    dist = op.get("distribution") or {}
    if dist.get("kind") == "lognormal":
        dist["mu"] = dist["mu"] + math.log(k)
    elif dist.get("kind") == "empirical":
        dist["quantiles_s"] = [q * k for q in dist["quantiles_s"]]


@dataclass(frozen=True)
class Fit:
    profile: dict[str, Any]  # profile data, validated as sim.profile.Profile
    rows: int  # spans that informed the fit
    # the fitted runs measured while other processes or the hypervisor took CPU (``MachineLoad.busy``), each
    # "RUN_DIR (other processes used X cores, steal Y %)": their overheads carry that load, which no speed
    # probe reading takes out (a core's speed is brought back; a neighbour's share of it is not)
    busy_runs: tuple[str, ...] = ()


def base_s(profile: Profile, op: str, units: float) -> float:
    """The profile's typical cost of one call (the median where measured, else the mean)."""
    m = profile.op(op)
    if isinstance(m, PerCallOp):
        return m.p50_s or m.mean_s
    assert isinstance(m, LinearOp)
    return m.base_s(units)


def predicted_s(profile: Profile, s: Scenario, row: Any, updates_per_fedavg: int, others: float = 0.0) -> float:
    """What the simulator would charge for this span's op, before overheads; a training step that ran beside
    ``others`` steps on the same host (on average over its duration) carries their contention, as the
    simulator charges it."""
    alg, _, kind = str(row.op).rpartition(".")
    fl = s.workload.fl
    if kind in ("sign", "verify") and alg in catalogue.CATALOGUE and row.bytes > 0:
        a = catalogue.get(alg)
        hashed = row.bytes * (a.sign_hash_passes if kind == "sign" else 1)
        return base_s(profile, f"{a.message_hash}.hash", hashed) + base_s(profile, row.op, 0)
    if row.op == "fl.train":
        units = fl.train_units
        model = profile.op(row.op)
        slow = model.slowdown(units, others) if isinstance(model, LinearOp) else 1.0
        return base_s(profile, row.op, units) * slow
    if row.op == "fl.fedavg":
        return base_s(profile, row.op, fl.model_parameters * updates_per_fedavg)
    return base_s(profile, row.op, row.bytes)


def _with_glue(cpu: pd.DataFrame, wire: pd.DataFrame) -> pd.DataFrame:
    """Each CPU span's service time plus the glue gap before it in its pod's phase (module docstring)."""
    steps = pd.concat([cpu.assign(cpu_op=True), wire.assign(cpu_op=False)]).sort_values(["start_s", "end_s"])
    prev_end = steps.groupby(["pod", "round", "phase"]).end_s.shift()
    gap = (steps.start_s - prev_end).where(lambda g: (g > 0) & (g < GLUE_MAX_S), 0.0).fillna(0.0)
    steps = steps.assign(measured_s=steps.end_s - steps.start_s - steps.queue_wait_s + gap, glue_s=gap)
    return steps[steps.cpu_op]


def _overhead(kind: str, measured: np.ndarray, predicted: np.ndarray, nbytes: np.ndarray, source: str,
              glue: np.ndarray | None = None, rounds: np.ndarray | None = None) -> Overhead:  # fmt: skip
    """Per kind (module doc): a line in bytes where the run has sizes ``SPREAD`` apart (through its two message
    sizes where it has them beside the small records); for training and FedAvg at sizes ``SPREAD`` apart, a factor
    and a constant; else a factor for work that scales plus the glue before it as a constant (glue is Python
    between two steps: it does not grow with the message, so a factor fitted at one size must not carry it to
    another); and a constant for fixed-size operations. Its spread: ``_jitter``, by size ``_jitter_by_size``.
    ``rounds``: which calls are the rounds' (model messages), not the small records' (``_extra_by_size``)."""
    residual, n = measured - predicted, len(measured)
    fitted: dict[str, float] = {"per_call_s": _shown(residual)}  # fixed-size operations
    extra: list[list[float]] | None = None
    if kind not in FACTOR_KINDS and len(np.unique(nbytes)) >= 2 and nbytes.max() >= SPREAD * max(1.0, nbytes.min()):
        intercept, slope = _message_line(nbytes, residual) or _resistant_line(nbytes, residual)
        fitted = {"per_call_s": intercept, "per_byte_s": slope}
        if rounds is not None:
            extra = _extra_by_size(nbytes[rounds], residual[rounds])
    elif kind in FACTOR_KINDS and predicted.min() > 0 and predicted.max() >= SPREAD * predicted.min():
        # work of several sizes (training runs of two model sizes): a factor and a constant, the line through
        # the medians of the small and the large (a factor alone fitted at a small model carries its per-call
        # Python to a large one)
        intercept, slope = _resistant_line(predicted, measured, floor=float(predicted.min()))
        fitted = {"factor": slope, "per_call_s": intercept}
    elif kind in FACTOR_KINDS or nbytes.min() > 0:
        glue_s = np.zeros_like(measured) if glue is None else glue
        fitted = {"factor": float(np.median((measured - glue_s) / predicted)), "per_call_s": float(np.median(glue_s))}
    charged = (
        predicted * fitted.get("factor", 1.0) + fitted.get("per_call_s", 0.0) + fitted.get("per_byte_s", 0.0) * nbytes
    )
    if extra is not None:  # calls with bytes: the table's extra (sim/profile.py ``Overhead.extra_s``)
        table = Overhead(extra_by_bytes=[(x, y) for x, y in extra], source="fit", tag="F")
        charged = np.where(nbytes > 0, predicted + np.array([table.extra_s(float(b)) for b in nbytes]), charged)
    spread = _jitter(measured, charged, np.where(nbytes > 0, nbytes, predicted))
    carry = nbytes > 0  # by bytes where a call has them, else by its price (``Overhead.sigma_by_cost_s``)
    by_bytes = _jitter_by_size(measured[carry], charged[carry], nbytes[carry])
    by_cost = _jitter_by_size(measured[~carry], charged[~carry], predicted[~carry])
    return _valid(Overhead, {**fitted, "sigma": spread, "sigma_by_bytes": by_bytes, "sigma_by_cost_s": by_cost,
                             "extra_by_bytes": extra, "n": n, "source": source, "tag": "F"},
                  f"overheads.{kind}")  # fmt: skip


def _valid(model: type[M], data: dict[str, Any], where: str) -> M:
    """``model`` of a fitted ``data``; UserError naming the field and value where the fit left the profile's bounds
    (a run and a base profile of different machines, or spans that are not a real run's, fit a factor of 10^5 or 0)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise UserError(f"--from-run: the fitted {where}.{field} is {show(err.get('input'))}: {err['msg']} (the run's "
                        "spans and the base profile do not price one machine: name the profile the run was "
                        "measured against with --base)") from None  # fmt: skip


def _jitter(measured: np.ndarray, charged: np.ndarray, sizes: np.ndarray) -> float:
    """The spread of a code path's durations around what the fit charges, within each size (sizes within a factor
    of 2 count as one), pooled as the count-weighted mean: across sizes, a line's misfit at one size (or, around
    the profile's price, the sizes' different ratios) would count as jitter, and the simulator's p95s with it."""
    ok = (charged > 0) & (measured > 0)
    if ok.sum() < 2:
        return 0.0
    logs = np.log(measured[ok] / charged[ok])
    parts = [(sd, k) for _, sd, k in _class_spreads(logs, sizes[ok]) if k >= MIN_ROWS]
    parts = parts or [(_robust_sigma(logs), len(logs))]
    return float(sum(sd * k for sd, k in parts) / sum(k for _, k in parts))


def _jitter_by_size(measured: np.ndarray, charged: np.ndarray, sizes: np.ndarray) -> list[list[float]] | None:
    """The spread within each size (``_jitter``'s classes with ``SIZE_ROWS`` spans or more), as [median size,
    sigma] pairs in increasing size (``Overhead.sigma_by_bytes``, ``sigma_by_cost_s``); None where fewer than two
    sizes have that many: a step's jitter is partly a fixed time (the scheduler, the interpreter), so relative to
    the step it shrinks as the step grows, which one pooled spread cannot say."""
    ok = (charged > 0) & (measured > 0) & (sizes > 0)
    spreads = _class_spreads(np.log(measured[ok] / charged[ok]), sizes[ok])
    pairs = [[size, min(3.0, sd)] for size, sd, k in spreads if k >= SIZE_ROWS]
    return pairs if len(pairs) >= 2 else None


def _class_spreads(logs: np.ndarray, sizes: np.ndarray) -> list[tuple[float, float, int]]:
    """Per size class (``_size_classes``), in increasing size: its median size, the robust spread of its
    ``logs`` and how many it has."""
    groups = _size_classes(sizes)
    return [(float(np.median(sizes[groups == g])), _robust_sigma(logs[groups == g]), int((groups == g).sum()))
            for g in np.unique(groups)]  # fmt: skip


def _size_classes(x: np.ndarray) -> np.ndarray:
    """Sizes (bytes, or seconds of predicted work) binned by a factor of 2: those within one count as one size."""
    return np.round(np.log2(np.maximum(x, 1e-12)))


EXTRA_MODEL_SIZES = 3  # the rounds' message sizes the runs need for an extra a size (``_extra_by_size``)


def _rounds(rows: pd.DataFrame) -> np.ndarray:
    """Which rows are the rounds' messages, not the small records' (session handshakes, telemetry frames)."""
    return (rows["round"] > 0).to_numpy() & ~rows.phase.isin(SMALL_PHASES).to_numpy()


def _widen(overheads: dict[str, Overhead], fitted: dict[str, pd.DataFrame], wide: pd.DataFrame) -> None:
    """The message kinds' extra at larger sizes (``fit_from_run``'s ``messages_from``): each kind fitted with a line
    in bytes gets the line's sizes as points (its two largest message sizes, where ``_message_line`` put it) and
    then, per larger message size of ``wide`` (its spans at speed), the median residual there: within the fitted
    sizes nothing changes, beyond them the price follows what larger messages cost, not the line."""
    for kind, w in wide.groupby("kind"):
        o, g = overheads.get(str(kind)), fitted.get(str(kind))
        if o is None or g is None or kind in FACTOR_KINDS or not o.per_byte_s or o.extra_by_bytes:
            continue
        w = at_speed(w, w["bytes"].to_numpy(dtype=float))
        own = _class_points(g["bytes"].to_numpy(dtype=float)[_rounds(g)], (g.measured_s - g.predicted_s)[_rounds(g)])
        more = _class_points(w["bytes"].to_numpy(dtype=float)[_rounds(w)], (w.measured_s - w.predicted_s)[_rounds(w)])
        pts = own[-2:] + [p for p in more if own and p[0] > SPREAD * own[-1][0]]
        if len(own) >= 2 and own[-1][0] >= SPREAD * own[-2][0] and len(pts) >= EXTRA_MODEL_SIZES:
            overheads[str(kind)] = o.model_copy(update={"extra_by_bytes": [(x, y) for x, y in pts]})


def _class_points(x: np.ndarray, residual: Any) -> list[list[float]]:
    """Per size (a factor of 2 wide, with MIN_ROWS rows or more), in increasing size: [median bytes, median
    residual]."""
    r = np.asarray(residual, dtype=float)
    groups = _size_classes(x)
    return [[float(np.median(x[groups == g])), float(np.median(r[groups == g]))]
            for g in np.unique(groups) if (groups == g).sum() >= MIN_ROWS]  # fmt: skip


def _extra_by_size(x: np.ndarray, residual: np.ndarray) -> list[list[float]] | None:
    """The rounds' messages (``x`` bytes, ``residual`` s) per size (a factor of 2 wide, with MIN_ROWS spans or
    more): [its median bytes, its median residual] (as ``_message_line`` takes them), where there are at least
    EXTRA_MODEL_SIZES (training runs of three model sizes): the simulator interpolates between them and carries the
    end segments' lines beyond (sim/profile.py ``Overhead.extra_by_bytes``; the small records, below the smallest, by
    the line through the two smallest), where a line through two sizes carried a cache-warm
    price's step to a larger message whose price was already memory-bound. None otherwise: the line
    (``_message_line``) is all two sizes can tell."""
    pts = _class_points(x, residual)
    return pts if len(pts) >= EXTRA_MODEL_SIZES else None


def _message_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """The line through the medians of the two largest sizes (each a factor of 2 wide, with MIN_ROWS spans or more)
    when they are ``SPREAD`` apart and smaller ones exist too: training runs of two model sizes, whose messages take
    the rounds' code path, which the session handshakes' and frames' small records do not (a line from those to the
    models charged a 4 MB decryption 1.0 ms where the twin's took 0.3-0.4). None: one model size."""
    groups = _size_classes(x)
    sizes = [g for g in np.unique(groups) if (groups == g).sum() >= MIN_ROWS]
    if len(sizes) < 3:
        return None
    lo, hi = groups == sizes[-2], groups == sizes[-1]
    x0, x1 = float(np.median(x[lo])), float(np.median(x[hi]))
    if x1 < SPREAD * x0:
        return None
    y0, y1 = float(np.median(y[lo])), float(np.median(y[hi]))
    slope = (y1 - y0) / (x1 - x0)
    return y0 - slope * x0, slope


def _resistant_line(x: np.ndarray, y: np.ndarray, floor: float = 1.0) -> tuple[float, float]:
    """The line through the medians of the small and the large sizes (split at their geometric middle, sizes
    below ``floor`` counted as ``floor``: a byte for message sizes): robust, and unlike Theil–Sen not dominated
    by the larger group when the groups differ in count."""
    middle = np.sqrt(max(floor, float(x.min())) * float(x.max()))
    lo, hi = x <= middle, x > middle
    x0, x1, y1 = (float(np.median(a)) for a in (x[lo], x[hi], y[hi]))
    y0 = _shown(y[lo])
    slope = (y1 - y0) / (x1 - x0)
    return y0 - slope * x0, slope


def _shown(residual: np.ndarray) -> float:
    """The median residual, or 0 where the run cannot tell it from noise (within two standard errors of the
    median): the profile's price was measured with many calls, a run's few handshakes of a randomised op (an
    ML-DSA signature loops a random number of times, 0.25-3 ms here, in steps of ~0.12 ms) must not overrule it
    by chance: 14 signatures' median missed the profile's by 0.16 ms, which a line carried to every message.
    The standard error is bootstrapped (a fixed seed: the same run, the same fit), as a formula for a continuous
    distribution understates it for such stepped durations."""
    med = float(np.median(residual))
    if len(residual) < 2:
        return med
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    se = float(np.std(np.median(rng.choice(residual, (BOOTSTRAP_RESAMPLES, len(residual))), axis=1)))
    return med if abs(med) > 2 * se else 0.0


def fit_from_run(run_dir: Path | list[Path], base: Path | None = None, messages_from: Sequence[Path] = ()) -> Fit:
    """A profile: ``base`` (default: the first run's host profile) plus overheads fitted from the spans of
    ``run_dir`` — or of several runs pooled (more rounds, several sizes or suites: a steadier fit).
    ``messages_from``: runs that give the code paths of their messages only (every kind priced by bytes), not
    training, FedAvg, hand-offs or loopback: a larger model's messages widen the sizes the message overheads are
    fitted over (``_extra_by_size``) without its training steps entering the training fit; and their model size's
    point of the fixed-size constants' tables (``_by_model_size``)."""
    runs = [run_dir] if isinstance(run_dir, Path) else list(run_dir)
    if not runs:
        raise UserError("--from-run: name at least one twin run directory")
    refuse_repeated_dirs([*runs, *messages_from], "--from-run", RunLayout.SPANS)
    parts = [_run_rows(r, base) for r in runs]
    wider = [_run_rows(r, base) for r in messages_from]
    s, profile = parts[0].scenario, parts[0].profile
    colds = _cold(pd.concat([p.cold_pairs for p in [*parts, *wider]], ignore_index=True))
    known = _net_of_cold(pd.concat([p.known for p in parts], ignore_index=True), colds)
    transfers = pd.concat([p.transfers for p in parts], ignore_index=True)
    source = "pqtwin calibrate --from-run " + "; ".join(p.source for p in parts)
    if wider:
        source += "; its messages only: " + "; ".join(p.source for p in wider)
    overheads: dict[str, Overhead] = {}
    fitted_rows: dict[str, pd.DataFrame] = {}
    for kind, g in known.groupby("kind"):
        g = fitted_rows[str(kind)] = at_speed(g, np.where(g["bytes"] > 0, g["bytes"], g.predicted_s))
        if len(g) >= MIN_ROWS:
            overheads[str(kind)] = _overhead(str(kind), g.measured_s.to_numpy(), g.predicted_s.to_numpy(),
                                             g["bytes"].to_numpy(dtype=float), source,
                                             g.glue_s.fillna(0.0).to_numpy(), _rounds(g))  # fmt: skip
    if wider:
        _widen(overheads, fitted_rows, _net_of_cold(pd.concat([p.known for p in wider], ignore_index=True), colds))
    _with_cold(overheads, colds)
    for kind in (RECEIVE_HANDOFF, INBOX_HANDOFF):
        if (wait := _handoff_wait(kind, parts, source)) is not None:
            overheads[kind] = wait
    _by_model_size(overheads, [*parts, *wider], source)
    if "train" in overheads and (between := _trained_between(parts)) is not None:
        overheads["train"] = overheads["train"].model_copy(update={"linear_between_parameters": between})
    loop = _loopback(at_speed(transfers, transfers["bytes"].to_numpy(dtype=float)), s, profile, source)
    if loop is not None:
        overheads["loopback"] = loop
    data = profile.model_dump(mode="json", exclude_none=True)
    data["profile"] = f"{profile.profile[:96]}+fit"  # within PROFILE_NAME's 100 characters
    named = ", ".join(str(r) for r in runs)
    data["description"] = f"{profile.description} Overheads fitted from the twin run(s) {named}.".strip()
    data["overheads"] = {k: v.model_dump(exclude_none=True) for k, v in sorted(overheads.items())}
    if "train" in overheads:  # training now priced in the state the runs met: their probe's, or none known
        data["platform"] = with_training_probe(data["platform"], [p.probe for p in parts])
    _valid(Profile, data, "profile")  # what we write must load
    return Fit(data, len(known), tuple(p.busy for p in [*parts, *wider] if p.busy))


def _handoff_wait(kind: str, parts: list[_RunRows], source: str) -> Overhead | None:
    """A hand-off's wait (``_wait``) over the runs ``parts``, its waits at speed where ``MIN_ROWS`` are; None where
    they hold fewer than ``MIN_ROWS``."""
    waits = np.concatenate([p.handoffs[kind] for p in parts])
    fast = waits[:, 1] != 1  # at speed, or unknown (as ``at_speed``)
    waits = waits[fast, 0] if fast.sum() >= MIN_ROWS else waits[:, 0]
    return _wait(waits, source) if len(waits) >= MIN_ROWS else None


def _by_model_size(overheads: dict[str, Overhead], runs: list[_RunRows], source: str) -> None:
    """Each constant of a fixed-size code path (a kind fitted as ``per_call_s`` alone, and the hand-offs) fitted
    again per model size of ``runs`` -- the training runs and the larger model's (``messages_from``) -- as
    ``per_call_by_parameters``, where two sizes or more have ``MIN_ROWS`` calls each (module doc)."""
    by_size: dict[int, list[_RunRows]] = {}
    for r in runs:
        by_size.setdefault(r.scenario.workload.fl.model_parameters, []).append(r)
    if len(by_size) < 2:
        return
    for kind, o in list(overheads.items()):
        if o.factor != 1.0 or o.per_byte_s or o.extra_by_bytes or kind in (*FACTOR_KINDS, "loopback"):
            continue
        points = [(float(size), c) for size, group in sorted(by_size.items())
                  if (c := _constant(kind, group, source)) is not None]  # fmt: skip
        if len(points) >= 2:
            overheads[kind] = o.model_copy(update={"per_call_by_parameters": points})


def _trained_between(runs: list[_RunRows]) -> tuple[float, float] | None:
    """The smallest and largest model sizes ``runs`` trained ``MIN_ROWS`` steps or more at, where they are ``SPREAD``
    apart (the training fit's line, ``_overhead``): between them the simulator prices a step on the line between the
    profile's prices at the two (sim/profile.py ``Overhead.linear_between_parameters``); None otherwise."""
    steps: dict[int, int] = {}
    for r in runs:
        size = r.scenario.workload.fl.model_parameters
        steps[size] = steps.get(size, 0) + int((r.known.kind == "train").sum())
    sizes = sorted(size for size, n in steps.items() if n >= MIN_ROWS)
    return (float(sizes[0]), float(sizes[-1])) if len(sizes) >= 2 and sizes[-1] >= SPREAD * sizes[0] else None


def _constant(kind: str, runs: list[_RunRows], source: str) -> float | None:
    """``kind``'s constant fitted on ``runs`` alone (as ``fit_from_run`` fits it on all), or None where they hold
    fewer than ``MIN_ROWS`` calls of it or fit it another way than as a constant."""
    if kind in (RECEIVE_HANDOFF, INBOX_HANDOFF):
        wait = _handoff_wait(kind, runs, source)
        return None if wait is None else wait.per_call_s
    g = pd.concat([r.known[r.known.kind == kind] for r in runs], ignore_index=True)
    if len(g) < MIN_ROWS:
        return None
    g = at_speed(g, np.where(g["bytes"] > 0, g["bytes"], g.predicted_s))
    try:  # one size's few calls may spread past what a profile holds where all of them did not: no point then
        o = _overhead(kind, g.measured_s.to_numpy(), g.predicted_s.to_numpy(), g["bytes"].to_numpy(dtype=float),
                      source, g.glue_s.fillna(0.0).to_numpy(), _rounds(g))  # fmt: skip
    except UserError:
        return None
    return o.per_call_s if o.factor == 1.0 and not o.per_byte_s and not o.extra_by_bytes else None


def with_training_probe(platform: dict[str, Any], probes: list[TrainingProbe | None]) -> dict[str, Any]:
    """Profile ``platform`` data whose training probe is the median of the fitted runs' ``probes`` (of the same
    reference step, ``hw.trainprobe``), or none where a run recorded none (a run from before the probe: the pooled
    price holds its state too) or they differ: a fitted training price holds the state its runs met, not the
    calibration's."""
    kept = {k: v for k, v in platform.items() if not k.startswith("training_probe_")}
    known = [p for p in probes if p is not None]
    if not known or len(known) < len(probes) or len({(p.parameters, p.samples) for p in known}) != 1:
        return kept
    median_s = float(np.median([p.alone_s for p in known]))
    return kept | training_facts(known[0].model_copy(update={"alone_s": median_s}))


@dataclass(frozen=True)
class _RunRows:
    scenario: Scenario
    profile: Profile
    known: pd.DataFrame  # CPU spans with measured_s, predicted_s and kind
    transfers: pd.DataFrame  # messages of the rounds
    source: str
    handoffs: dict[str, np.ndarray]  # RECEIVE_HANDOFF, INBOX_HANDOFF: each message's (wait s, slow: 0 1 NaN)
    probe: TrainingProbe | None  # the run's training probe (``MachineLoad.training_probe``), if it recorded one
    cold_pairs: pd.DataFrame  # kind, bytes, diff_s: a burst's first call against its later ones (``_cold_pairs``)
    busy: str | None = None  # how busy, where neighbours or steal took CPU while it ran (``Fit.busy_runs``)


def at_speed(rows: pd.DataFrame, sizes: np.ndarray) -> pd.DataFrame:
    """The rows measured at the calibration's speed (``slow`` 0, or unknown: NaN), if each size among ``sizes``
    (a factor of 2 wide) keeps ``MIN_ROWS`` of them, or all of its own where it has fewer; else all rows (module
    doc): leaving slow spans out must not change the form of a kind's fit."""
    keep = (rows.slow != 1).to_numpy()
    if keep.all():
        return rows
    groups = _size_classes(np.asarray(sizes, dtype=float))
    for g in np.unique(groups):
        here = groups == g
        if (here & keep).sum() < min(MIN_ROWS, here.sum()):
            return rows
    return rows[keep]


def _run_rows(run_dir: Path, base: Path | None) -> _RunRows:
    layout = RunLayout(run_dir)
    try:
        summary = read_summary(layout.summary)
        spans = read_spans(layout.spans)
    except (OSError, ValueError) as exc:
        why = unwritten_hint(run_dir) or str(exc).splitlines()[0]
        raise UserError(f"--from-run: {run_dir} is not a twin run directory ({why})") from None
    if (both := whole_run(run_dir, summary)) is not None:
        raise UserError(f"--from-run: {both}")
    if summary.backend is None or summary.state != "completed" or summary.rounds_completed < 1:
        raise UserError(f"--from-run: {run_dir}: need a completed hardware-twin run (got backend "
                        f"{summary.backend}, state {summary.state}, {summary.rounds_completed} rounds)")  # fmt: skip
    spans, note = without_duplicate_spans(spans, layout.spans)  # each was fitted twice
    if note:
        sys.stderr.write(f"warning: --from-run: {note}\n")  # (cli prints the fit; a library warns here)
    s = load_scenario(layout.scenario, profile_override=base or _profile_of(summary.scenario_file, layout))
    profile = s.host_profile(s.deployment.hosts[0].name)
    flags, slow_speed = _slow(run_dir, spans, summary.machine_load, profile)
    spans = spans.assign(slow=flags)
    rounds = spans[spans["round"] > 0]
    phases = rounds[rounds.phase.isin(FL_PHASES)]
    if phases.empty:  # a summary that says rounds completed, spans that hold none: nothing to fit
        raise UserError(f"--from-run: {layout.spans}: no span of a finished round ({len(spans)} rows in all); "
                        "give a run directory the twin wrote whole")  # fmt: skip
    cpu = _with_glue(phases[~phases.op.isin(("transfer", "frame"))], phases[phases.op == "transfer"])
    # small sizes for the same kinds: session handshakes and telemetry frames (their waits are not glue)
    small = spans[((spans["round"] == 0) & (spans.phase == "handshake")) | (spans.phase == "telemetry")]
    small = small[~small.op.isin(("transfer", "frame"))]
    cpu = pd.concat([cpu, small.assign(measured_s=small.end_s - small.start_s - small.queue_wait_s)])
    per_round = cpu[cpu.op == "fl.fedavg"].groupby("round").size()
    clients = s.workload.fl.quorum_clients
    known = cpu[cpu.op.map(lambda op: op in profile.ops or op.endswith((".sign", ".verify")))]
    if known.empty:
        raise UserError(f"--from-run: {layout.spans}: no operation the profile {profile.profile!r} prices; "
                        "name the profile the run was measured against with --base")  # fmt: skip
    others = _trainings_beside(known)
    predicted = np.array([
        predicted_s(profile, s, r, clients if per_round.get(r.round, 1) == 1 else 1, others.get(r.Index, 0))
        for r in known.itertuples()
    ])  # fmt: skip
    # at the profile's own speed: spans measured at it as they are (``slow`` 0); spans the probe saw slow by the slow
    # samples' median (a span at 0.7x the calibrated speed took 1/0.7 as long; the run's median probe may be either
    # state's); unknown ones by the run's median probe. Slow-0 spans are not rescaled: stretching them by the fast
    # samples' median against a calibration whose median probe had caught the slow state (44-49 µs against 34; a
    # calibration now records its fast state, hw/speed.py usual_us) made the 00:16 and 00:53 matrices of 2026-12-01
    # read 28 % off instead of 15-17 % (rescored)
    speed = (summary.machine_load.speed_vs_calibration if summary.machine_load else None) or 1.0
    slow_speed = slow_speed or speed
    kind = known.op.map(op_kind)
    # work from memory (``MEMORY_KINDS``) as measured: the probe's state is not its state
    known = known.assign(slow=known.slow.where(~kind.isin(MEMORY_KINDS), 0.0))
    scale = _scale(known.slow, speed, slow_speed)
    known = known.assign(predicted_s=predicted, kind=kind, measured_s=known.measured_s * scale,
                         glue_s=known.glue_s.fillna(0.0) * scale)  # fmt: skip
    bursts = _bursts(phases)
    known = known.assign(burst=bursts.burst.reindex(known.index).fillna(-1).astype(int),
                         first=bursts["first"].reindex(known.index).fillna(False).astype(bool))  # fmt: skip
    load = "quiet" if summary.machine_load is None or summary.machine_load.quiet else "BUSY"
    crypto, fl = s.workload.crypto, s.workload.fl
    source = (f"{run_dir}: {s.name}, {summary.mode}, {crypto.kem} + {crypto.signature}, {fl.model_parameters} "
              f"parameters, {summary.rounds_completed} rounds, machine {load}, cores at {speed:.2f}x the "
              f"profile's speed{_at_speed_note(known.slow, slow_speed)}")  # fmt: skip
    transfers = _after_sealing(spans[_is_message(spans)], spans)
    scale = _scale(transfers.slow, speed, slow_speed)
    transfers = transfers.assign(end_s=transfers.start_s + (transfers.end_s - transfers.start_s) * scale)
    probe = summary.machine_load.training_probe if summary.machine_load else None
    ml = summary.machine_load
    busy = (f"{run_dir} (other processes used {ml.foreign_cpu_cores:.2f} cores, steal {100 * ml.steal_fraction:.0f} %)"
            if ml is not None and ml.state == "BUSY" else None)  # fmt: skip
    return _RunRows(s, profile, known, transfers, source, _handoffs(phases, summary.mode == "sequential"), probe,
                    _cold_pairs(known), busy)  # fmt: skip


def _slow(run_dir: Path, spans: pd.DataFrame, load: Any, profile: Profile) -> tuple[np.ndarray, float | None]:
    """Per span: 1 if a core ran slow near it, 0 if at the calibration's speed, NaN if unknown (hw/speed.py); and
    how fast the cores ran against the profile while the probe saw them slow (``slow_state_us``; None: unknown)."""
    calibrated = (load.calibrated_probe_us if load is not None else None) or profile.platform.speed_probe_us
    samples = read_kept(run_dir / KEPT_FILE)
    if samples is None or not calibrated:
        return np.full(len(spans), np.nan), None
    flags = slow_spans(spans.start_s.to_numpy(), spans.end_s.to_numpy(), samples, float(calibrated))
    slow_us = slow_state_us(samples, float(calibrated))
    return flags, None if slow_us is None else float(calibrated) / slow_us


def _scale(slow: pd.Series, speed: float, slow_speed: float) -> np.ndarray:
    """Per span, what brings it to the profile's speed: 1 at it, ``slow_speed`` seen slow, ``speed`` unknown."""
    flags = slow.to_numpy(dtype=float)
    return np.where(flags == 0, 1.0, np.where(flags == 1, slow_speed, speed))


def _at_speed_note(slow: pd.Series, slow_speed: float) -> str:
    known = slow.notna().sum()
    if not known:
        return ""
    note = f", {int((slow == 0).sum())} of {int(known)} spans at it (speed probe)"
    return note + (f", the others at {slow_speed:.2f}x" if (slow == 1).any() else "")


def _bursts(phases: pd.DataFrame) -> pd.DataFrame:
    """Per span of the rounds (``phases``: CPU and transfer rows): ``burst``, a number for its pod's burst of work
    (a step that starts more than ``COLD_GAP_S`` after every earlier step of the pod ended begins a new one, the
    simulator's rule, sim/hosts.py ``Endpoint``), and ``first``: the burst's first call of its op kind, for calls
    in ``COLD_PHASES``. A sending pod's transfer spans count as its work (its thread writes the record)."""
    out, offset = [], 0
    for _, g in phases.sort_values(["start_s", "end_s"]).groupby("pod", sort=False):
        ended = np.maximum.accumulate(g.end_s.to_numpy())
        new = np.r_[True, g.start_s.to_numpy()[1:] - ended[:-1] > COLD_GAP_S]
        out.append(g[["op", "phase"]].assign(burst=offset + np.cumsum(new)))  # numbered apart across pods
        offset += int(new.sum())
    rows = pd.concat(out)
    calls = rows.phase.isin(COLD_PHASES) & ~rows.op.isin(WIRE_OPS)
    kinds = rows.op.map(op_kind)
    first = calls & ~pd.DataFrame({"b": rows.burst, "k": kinds}).where(calls).duplicated(keep="first")
    return rows.assign(first=first)


def _cold_pairs(known: pd.DataFrame) -> pd.DataFrame:
    """Per burst and kind with later calls of the first's size: the kind, the size, and the first call's measured
    time less the later ones' median (``Overhead.cold_s``): the sequential aggregator's two serialisations, two
    decryptions ... of a round."""
    rows = []
    for (_, kind), g in known[known.burst >= 0].groupby(["burst", "kind"]):
        if len(g) < 2 or not g["first"].any():
            continue
        head = g[g["first"]].iloc[0]
        later = g[~g["first"] & (g["bytes"] == head["bytes"])]
        if len(later):
            rows.append((kind, float(head["bytes"]), float(head.measured_s - later.measured_s.median())))
    return pd.DataFrame(rows, columns=["kind", "bytes", "diff_s"])


def _cold(pairs: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per kind with ``MIN_ROWS`` pairs (``_cold_pairs``) or more: (``cold_per_call_s``, ``cold_per_byte_s``).
    Calls with bytes: least squares through each size's median (sizes a factor of 2 wide, ``MIN_ROWS`` pairs each),
    where the sizes span ``SPREAD``; else the median (0 where it cannot be told from noise, ``_shown``). Neither
    below 0: a burst's later call is not dearer than its first for a reason the simulator could carry."""
    out = {}
    for kind, g in pairs.groupby("kind"):
        if len(g) < MIN_ROWS:
            continue
        x, y = g["bytes"].to_numpy(dtype=float), g.diff_s.to_numpy()
        classes = _size_classes(x)
        kept = [c for c in np.unique(classes) if (classes == c).sum() >= MIN_ROWS]
        xs = np.array([np.median(x[classes == c]) for c in kept])
        ys = np.array([np.median(y[classes == c]) for c in kept])
        if len(kept) >= 2 and xs.min() > 0 and xs.max() >= SPREAD * xs.min():
            slope, intercept = (float(v) for v in np.polyfit(xs, ys, 1))
            if slope < 0:
                slope, intercept = 0.0, float(np.median(ys))
            elif intercept < 0:  # through the origin
                slope, intercept = float(xs @ ys / (xs @ xs)), 0.0
        else:
            slope, intercept = 0.0, _shown(y)
        per_call_s, per_byte_s = max(intercept, 0.0), max(slope, 0.0)
        if per_call_s or per_byte_s:
            out[str(kind)] = (per_call_s, per_byte_s)
    return out


def _with_cold(overheads: dict[str, Overhead], colds: dict[str, tuple[float, float]]) -> None:
    """Each fitted kind's overhead with its ``_cold`` extra."""
    for kind, (per_call_s, per_byte_s) in colds.items():
        if kind in overheads:
            update = {"cold_per_call_s": per_call_s, "cold_per_byte_s": per_byte_s}
            overheads[kind] = overheads[kind].model_copy(update=update)


def _net_of_cold(known: pd.DataFrame, colds: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """``known`` with each burst's first call of a kind in ``colds`` measured net of its ``cold_s``: the overhead
    proper is the later calls' (the simulator adds ``cold_s`` back to first calls)."""
    if not colds or known.empty:
        return known
    per_call = known.kind.map(lambda k: colds.get(k, (0.0, 0.0))[0])
    per_byte = known.kind.map(lambda k: colds.get(k, (0.0, 0.0))[1])
    extra = (per_call + per_byte * known["bytes"].astype(float)).where(known["first"], 0.0)
    return known.assign(measured_s=known.measured_s - extra)


def _handoffs(spans: pd.DataFrame, sequential: bool) -> dict[str, np.ndarray]:
    """Per round: each client's wait from its model's last byte (the latest model transfer to end before its first
    ``receive`` step) to that step; and, sequential, the aggregator's from the last update's last byte to its first
    ``verify`` step (concurrent runs hand updates to workers: no such wait). Waits of ``GLUE_MAX_S`` or more are
    something else (a lost or late message), not a hand-off. Each wait with the ``slow`` flag of the step that
    ended it (the probe's samples near it are the step's): an (n, 2) array."""
    client, inbox = [], []
    for _, g in spans.groupby("round"):
        models = np.sort(g.loc[(g.op == "transfer") & (g.phase == "distribute"), "end_s"].to_numpy())
        for _, steps in g[g.phase == "receive"].groupby("pod"):
            first = steps.iloc[int(steps.start_s.to_numpy().argmin())]
            arrived = models[models <= first.start_s]
            if len(arrived):
                client.append((float(first.start_s) - arrived[-1], first.get("slow", np.nan)))
        updates, verify = g[(g.op == "transfer") & (g.phase == "upload")], g[g.phase == "verify"]
        if sequential and len(updates) and len(verify):
            first = verify.iloc[int(verify.start_s.to_numpy().argmin())]
            inbox.append((float(first.start_s - updates.end_s.max()), first.get("slow", np.nan)))
    return {
        kind: np.array([w for w in waits if 0 <= w[0] < GLUE_MAX_S], dtype=float).reshape(-1, 2)
        for kind, waits in ((RECEIVE_HANDOFF, client), (INBOX_HANDOFF, inbox))
    }


def _wait(waits: np.ndarray, source: str) -> Overhead:
    """A hand-off's median wait, and the robust spread of its logarithm (waits of 0 are left out of the spread)."""
    spread = _robust_sigma(np.log(waits[waits > 0])) if (waits > 0).any() else 0.0
    return Overhead(per_call_s=float(np.median(waits)), sigma=min(spread, 3.0), n=len(waits), source=source, tag="F")


def _robust_sigma(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of a normal sample, robust to outliers."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _is_message(spans: pd.DataFrame) -> pd.Series:
    """Messages between pods: the rounds' models and updates, and the session handshakes' records (small: with
    them the loopback fit has two sizes, and the fixed cost of a message shows apart from its per-byte cost)."""
    model = (spans["round"] > 0) & spans.phase.isin(("distribute", "upload"))
    return (spans.op == "transfer") & (model | (spans.phase == "handshake"))


def _after_sealing(transfers: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """Transfers from when the sender's encryption of the record ended: the twin stamps a record when it starts
    sealing it (the stamp is part of what is authenticated), the simulator carries it once encrypted and charges
    the encryption apart."""
    keys = ["pod", "round", "phase"]
    enc = spans.loc[spans.op.str.endswith(".encrypt"), [*keys, "start_s", "end_s"]]
    if enc.empty or transfers.empty:
        return transfers
    # each transfer against the sender's encryptions of its round and phase (a few): the earliest to end inside it
    pairs = transfers[[*keys, "start_s", "end_s"]].reset_index(names="row").merge(enc, on=keys, suffixes=("", "_enc"))
    inside = pairs[(pairs.start_s_enc >= pairs.start_s) & (pairs.end_s_enc <= pairs.end_s)]
    sealed = inside.groupby("row").end_s_enc.min()
    return transfers.assign(start_s=sealed.reindex(transfers.index).fillna(transfers.start_s))


def _trainings_beside(cpu: pd.DataFrame) -> dict[Any, float]:
    """{row index: how many other training steps ran beside this one on its host, on average over its
    duration}, for training rows: the simulator rescales a step's work as others start and end (sim/hosts.py),
    so over its life it carries their contention in proportion to their overlap."""
    train = cpu[cpu.op == "fl.train"]
    out = {}
    for _, g in train.groupby("host"):
        starts, ends = g.start_s.to_numpy(), g.end_s.to_numpy()
        for i, a, b in zip(g.index, starts, ends, strict=True):
            overlap = np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0.0, None).sum() - (b - a)
            out[i] = float(overlap / (b - a)) if b > a else 0.0
    return out


def _loopback(t: pd.DataFrame, s: Scenario, profile: Profile, source: str) -> Overhead | None:
    """Messages between pods of one host: measured transfer time against the profile's ``net.loopback``."""
    hosts = {p.name: p.host for p in s.deployment.pods}
    if "net.loopback" not in profile.ops or len(t) < MIN_ROWS or len(set(hosts.values())) != 1:
        return None
    predicted = np.array([base_s(profile, "net.loopback", b) for b in t["bytes"]])
    return _overhead("loopback", (t.end_s - t.start_s).to_numpy(), predicted, t["bytes"].to_numpy(dtype=float), source)


def _profile_of(scenario_file: str, layout: RunLayout) -> Path:
    """The host profile the run's scenario names: the run's own copy (``profiles/``, written with the run), else the
    file beside the scenario the run was started from (runs written before they kept copies). UserError naming the
    file when the run's scenario.yaml cannot be read or names no profile."""
    from sim.loading import load_yaml_file

    try:
        ref = load_yaml_file(layout.scenario)["deployment"]["hosts"][0]["profile"]
    except (KeyError, IndexError, TypeError):
        ref = None
    if not isinstance(ref, str) or not ref:
        raise UserError(f"--from-run: {layout.scenario}: deployment.hosts[0].profile: not a profile name "
                        "(not a scenario written by a twin run); name the profile to extend with --base")  # fmt: skip
    if ref.endswith((".yaml", ".yml")):
        path = Path(ref)
    elif (own := layout.profile(ref)).is_file():
        path = own
    else:
        path = Path(scenario_file).parent / "profiles" / f"{ref}.yaml"
    if not path.is_file():
        raise UserError(f"--base: the run's profile {ref!r} is not at {path}; name the profile to extend with --base")
    return path
