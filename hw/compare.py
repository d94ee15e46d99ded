"""``pqtwin compare SIM_DIR HW_DIR``: simulated vs measured, per metric, with the error and its 95 % CI.

Both directories are run directories (``spans.parquet`` + ``summary.json``); the simulator and the hardware
twin write the same formats. The method below is also recorded under ``method`` in compare.json.

Metrics, each a set of per-unit values taken from spans.parquet:

- ``round_latency_s``: end - start of every ``phase == "round"`` & ``op == "round"`` row (failed rounds
  excluded); one value per round.
- ``model_distribution_s``: end - start of every ``phase == "distribution"`` row; one value per round.
- ``phase_s.<phase>`` for each of ``sim.contract.FL_PHASES``: the phase's extent in a round
  (``sim.contract.phase_extents``, the definition of summary.json's ``phase_s``); one value per round in
  which the phase occurs.
- ``segment_s.<segment>`` for each of ``sim.contract.ROUND_SEGMENTS``: a completed round cut at its milestones
  (every client holds the model, the last training step ended, the last update arrived, the round ended;
  ``sim.contract.round_segments``); one value per round. A round's segments add up to its latency, so the
  differences of their means (simulated - measured) add up to the round's: where in the round the model gains
  or loses time, which the phases (overlapping across clients) do not say.
- ``telemetry.latency_s``: end - start of every ``op == "frame"`` row (emission to decryption); one value
  per frame.
- ``round_latency_at_speed_s`` (measured runs that kept their speed probe's samples, hw/speed.py): the measured
  rounds near which every core ran at the calibration's speed (``hw.speed.slow_spans`` 0), against every
  simulated round. This machine's cores switch between two speeds ~1.6x apart within seconds; a round measured
  in the slow state is a noisy measurement, not a model error, and this metric leaves it out.
- ``round_latency_quiet_s`` (repeated measured runs, some completed quiet and some not, ``MachineLoad.quiet``):
  the rounds of the quiet runs alone, against every simulated round: the goal of a fidelity is set on a quiet
  machine, and a pooled error mixes in the runs measured while neighbours, steal or the host's core speed moved
  them.

A metric is compared when both runs have at least one value; otherwise it is listed in ``not_compared``
with the reason (and a warning when only one of the runs has it) -- except ``round_latency_quiet_s``, which only
exists where some runs were quiet and some not.

Error: ``error_pct = (sim_mean - hw_mean) / hw_mean * 100`` (negative: the simulator is faster than the
hardware); ``error_p50_pct`` and ``error_p95_pct`` likewise for the median and the 95th percentile
(numpy's linear interpolation, as in summary.json).

95 % CIs: percentile bootstrap, ``RESAMPLES`` (2000) resamples, one ``numpy.random.default_rng([seed,
crc32("<metric>/<side>")])`` per metric and side (the seed is ``BOOTSTRAP_SEED``, recorded in the JSON; a
metric's CI does not depend on which other metrics exist). The two sides are resampled independently.
The unit is the round (the frame for telemetry): values are resampled with replacement *within each
replication* (stratified: every resample keeps each replication's count), rounds of all replications
pooled.
Replications are resampled as units (two-stage: replications with replacement, then rounds within each) on
the measured side where repeated runs are pooled, and on the simulated side where it has ``SIM_CLUSTERS`` or
more: a replication's rounds share its random draws' luck (a 50 k concurrent cell's replications' own medians
spread 13.6-15.5 ms where the pooled median of five moved 14.4-14.9 ms from seed to seed, docs/twin-validation.md
stop 77), which a CI with the replications fixed does not hold. Fewer simulated replications are stratified (the
simulator's between-replication spread is in summary.json's Student-t CI). Each resample gives an error of means,
of medians and of p95s; the CIs are their 2.5th and 97.5th percentiles. ``within_ci`` is true when 0 lies inside
the CI of the error of means: the difference is within resampling noise. ``sim_mean_ci95`` / ``hw_mean_ci95``
are the bootstrap CIs of each side's mean.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hw.modes import whole_run
from hw.rundir import unwritten_hint
from hw.speed import run_slow_flags
from sim.contract import (
    FL_PHASES,
    ROUND_SEGMENTS,
    RunLayout,
    Summary,
    atomic_write,
    phase_extents,
    read_spans,
    read_summary,
    round_segments,
    without_duplicate_spans,
)
from sim.errors import UserError
from sim.loading import load_yaml_file, refuse_repeated_dirs

COMPARE_JSON = "compare.json"
COMPARE_PNG = "compare.png"
RESAMPLES = 2000
BOOTSTRAP_SEED = 20260611
MIN_N = 5  # fewer values on a side: the bootstrap CI is flagged as unreliable
SIM_CLUSTERS = 5  # simulated replications from which the sim side is resampled two-stage (module docstring)
_MAX_CELLS = 4_000_000  # bootstrap batch size bound (resamples x values) to keep memory flat

SEGMENTS = {  # ROUND_SEGMENTS: what each segment of a round holds
    "received": "round start to every client holding the model (the distribution marker's end)",
    "trained": "from there to the last training step's end",
    "arrived": "from there to the last update's arrival (its upload transfer's end)",
    "closed": "from there to the round's end (verifying and aggregating what is left)",
}
assert tuple(SEGMENTS) == ROUND_SEGMENTS
METRICS: dict[str, tuple[str, str]] = {  # name: (label, definition)
    "round_latency_s": ("round latency", "end - start of each round marker (op 'round'), per round"),
    "model_distribution_s": ("model distribution", "end - start of each distribution marker, per round"),
    **{f"phase_s.{p}": (f"phase {p}", f"max end - min start of '{p}' spans per round (rounds > 0)") for p in FL_PHASES},
    **{
        f"segment_s.{name}": (f"segment {name}", f"{definition}, per completed round (the segments add up to it)")
        for name, definition in SEGMENTS.items()
    },
    "telemetry.latency_s": ("telemetry frames", "end - start of each telemetry frame (op 'frame')"),
    "round_latency_quiet_s": (
        "round latency, quiet runs",
        "as round_latency_s; measured: only the repeated runs that were quiet, where some were and some not",
    ),
    "round_latency_at_speed_s": (
        "round latency at speed",
        "as round_latency_s; measured: only the rounds near "
        "which the speed probe saw every core at the calibration's speed",
    ),
}
AT_SPEED = "round_latency_at_speed_s"
ON_QUIET = "round_latency_quiet_s"


# ---------------------------------------------------------------------------------------------- loading


def _check_dir(d: Path) -> list[str]:
    if not d.is_dir():
        return [f"{d}: no such directory"]
    missing = [f for f in (RunLayout.SPANS, RunLayout.SUMMARY) if not (d / f).is_file()]
    if not missing:
        return []
    hint = unwritten_hint(d) or "not a run directory"
    if RunLayout(d).modes.is_file():
        hint = (
            f"a --mode both run: pass {d / 'sequential'} or {d / 'concurrent'}, or compare it with a twin run of both"
        )
    return [f"{d}: no {' or '.join(missing)} ({hint})"]


def _read_run(d: Path, notes: list[str]) -> tuple[pd.DataFrame, Summary]:
    """A run's spans and summary; a measured run's duplicated spans left out (``without_duplicate_spans``), and
    said in ``notes``."""
    try:
        spans, summary = read_spans(RunLayout(d).spans), read_summary(RunLayout(d).summary)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if (both := whole_run(d, summary)) is not None:
        raise UserError(f"{both}, or compare it with a pqtwin sim --mode both run")
    if summary.backend is not None:
        spans, note = without_duplicate_spans(spans, RunLayout(d).spans)
        notes += [note] if note else []
    return spans, summary


def metric_values(df: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-unit values of every metric: name -> (values in s, replication of each value)."""

    def pair(values: pd.Series, reps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        return values.to_numpy(dtype=float), reps.to_numpy(dtype=np.int64)

    rounds = df[(df.phase == "round") & (df.op == "round")]
    dist = df[df.phase == "distribution"]
    frames = df[df.op == "frame"]
    ext = phase_extents(df)
    out = {
        "round_latency_s": pair(rounds.end_s - rounds.start_s, rounds.replication),
        "model_distribution_s": pair(dist.end_s - dist.start_s, dist.replication),
    }
    for p in FL_PHASES:
        e = ext[ext.phase == p]
        out[f"phase_s.{p}"] = pair(e.extent_s, e.replication)
    seg = round_segments(df)
    for name in ROUND_SEGMENTS:
        e = seg[seg.segment == name]
        out[f"segment_s.{name}"] = pair(e.segment_s, e.replication)
    out["telemetry.latency_s"] = pair(frames.end_s - frames.start_s, frames.replication)
    return out


# -------------------------------------------------------------------------------------------- statistics


def _resample(values: np.ndarray, groups: np.ndarray, rng: np.random.Generator, clusters: bool = False) -> np.ndarray:
    """(3, RESAMPLES): mean, p50 and p95 of bootstrap resamples: stratified (rounds within each replication),
    or with ``clusters`` two-stage (replications with replacement, then rounds within each drawn one), so the
    CI also holds the spread between runs (repeated measurements of one configuration)."""
    order = np.argsort(groups, kind="stable")
    v = values[order]
    _, starts, counts = np.unique(groups[order], return_index=True, return_counts=True)
    out = np.empty((3, RESAMPLES))
    batch = max(1, _MAX_CELLS // v.size)
    for lo in range(0, RESAMPLES, batch):
        b = min(batch, RESAMPLES - lo)
        if clusters:  # slot j keeps its size; the replication filling it is drawn
            drawn = rng.integers(0, len(counts), size=(b, len(counts)))
            idx = np.concatenate([starts[drawn[:, j], None] + (rng.random((b, c)) * counts[drawn[:, j], None]).astype(
                np.int64) for j, c in enumerate(counts)], axis=1)  # fmt: skip
        else:
            idx = np.concatenate([s + rng.integers(0, c, size=(b, c)) for s, c in zip(starts, counts, strict=True)],
                                 axis=1)  # fmt: skip
        x = v[idx]
        out[0, lo : lo + b] = x.mean(axis=1)
        out[1:, lo : lo + b] = np.percentile(x, [50, 95], axis=1)
    return out


def _num(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _rel_err(sim: np.ndarray, hw: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        e = (sim - hw) / hw * 100.0
    return np.where(np.isfinite(e), e, np.nan)


def _ci(x: np.ndarray) -> list[float | None]:
    if np.all(np.isnan(x)):
        return [None, None]
    lo, hi = np.nanpercentile(x, [2.5, 97.5])
    return [_num(lo), _num(hi)]


def compare_metric(name: str, sim: tuple[np.ndarray, np.ndarray], hw: tuple[np.ndarray, np.ndarray],
                   hw_runs: int = 1) -> dict[str, Any]:  # fmt: skip
    """Statistics, errors and bootstrap CIs of one metric (both sides non-empty). ``hw_runs`` > 1: the
    measured side pools that many repeated runs (one replication each), resampled as clusters; the simulated side's
    replications are too, where it has ``SIM_CLUSTERS`` or more."""
    stats: dict[str, tuple[float, float, float]] = {}
    boot: dict[str, np.ndarray] = {}
    for side, (v, g) in (("sim", sim), ("hw", hw)):
        rng = np.random.default_rng([BOOTSTRAP_SEED, zlib.crc32(f"{name}/{side}".encode())])
        p50, p95 = np.percentile(v, [50, 95])
        stats[side] = (float(v.mean()), float(p50), float(p95))
        clusters = hw_runs > 1 if side == "hw" else len(np.unique(g)) >= SIM_CLUSTERS
        boot[side] = _resample(v, g, rng, clusters=clusters)
    errs = _rel_err(np.array(stats["sim"]), np.array(stats["hw"]))
    err_boot = _rel_err(boot["sim"], boot["hw"])
    m: dict[str, Any] = {"label": METRICS[name][0], "unit": "s", "n_sim": int(sim[0].size)}
    m["n_hw"] = int(hw[0].size)
    for side in ("sim", "hw"):
        mean, p50, p95 = stats[side]
        m |= {f"{side}_mean": mean, f"{side}_mean_ci95": _ci(boot[side][0])}
        m |= {f"{side}_p50": p50, f"{side}_p95": p95}
    for i, key in enumerate(("error", "error_p50", "error_p95")):
        m[f"{key}_pct"] = _num(errs[i])
        m[f"{key}_ci95"] = _ci(err_boot[i])
    lo, hi = m["error_ci95"]
    m["within_ci"] = None if lo is None else bool(lo <= 0.0 <= hi)
    if hw_runs > 1:  # how much the repeated measurements disagree: the noise floor of this comparison
        medians = np.array([np.median(hw[0][hw[1] == g]) for g in np.unique(hw[1])])
        m["hw_run_p50s"] = [float(x) for x in medians]
        m["hw_run_spread_pct"] = float(100 * (medians.max() - medians.min()) / np.median(medians))
    if min(m["n_sim"], m["n_hw"]) < MIN_N:
        m["note"] = f"fewer than {MIN_N} values on a side: the bootstrap CI is unreliable"
    return m


def _setting_warnings(runs: dict[str, Any], hw_sums: list[Summary]) -> list[str]:
    out = []
    if len({(s.scenario, s.mode, str(s.suite)) for s in hw_sums}) > 1:
        out.append("the measured runs pooled are not repeats of one configuration (scenario, mode or suite differ)")
    for key in ("scenario", "mode", "suite"):
        a, b = runs["sim"][key], runs["hw"][key]
        if a is not None and b is not None and a != b:
            out.append(f"{key} differs: simulated {a!r}, measured {b!r}")
    return out


def _load_warnings(hw_sum: Summary) -> list[str]:
    load = hw_sum.machine_load
    if load is None or load.quiet:
        return []
    if load.state == "UNSTEADY":
        speed = load.speed_vs_calibration
        # not a bare ``cpu_speed`` setting: it would divide training's and FedAvg's price too, which the speed
        # probe does not see (hw/at_speed.py; at 0.54x it read +55 % where --at-speed read +14 %, stop 84)
        at = "" if speed is None else (f"; to see the model's own error, simulate it again at the speed measured "
                                       f"({speed:.2f}x): `pqtwin compare --at-speed` (the app's Twin page: \"Simulate "
                                       "again at the measured speed\"), which keeps training at its own measured "
                                       "price")  # fmt: skip
        return [f"the measured run's cores changed speed or ran at another speed than when calibrated "
                f"({load.describe()}): a shared host's other guests do that, unseen by load and steal; its "
                "error says as much about the host as about the model; repeat the run (several runs average "
                f"over the host's states) or calibrate again{at}"]  # fmt: skip
    return [f"the measured run was on a busy machine ({load.describe()}): its error says as much about the "
            "neighbours as about the model; measure again on a quiet machine"]  # fmt: skip


def calibration_warnings(sim_dir: Path) -> list[str]:
    """Each host profile of the simulation calibrated while its cores changed speed (``hw.machine.
    calibrated_unsteady``): its prices may be another speed state's than the measured run's. A calibration that
    timed a 1 M-parameter training step at 40-42 ms, where the twin's took 46-58 ms, put every cell of a matrix
    5-13 % low."""
    from hw.machine import STEADY_SPREAD, calibrated_unsteady
    from sim.scenario import load_scenario

    try:
        s = load_scenario(RunLayout(sim_dir).scenario)
        profiles = {p.profile: p for p in (s.host_profile(h.name) for h in s.deployment.hosts)}
    except (UserError, OSError, ValueError, KeyError):  # no readable scenario: no advice
        return []
    return [f"profile {name} was calibrated while the cores changed speed (speed probe spread {spread:.2f}x > "
            f"{STEADY_SPREAD}x): it prices their fast state (platform.speed_probe_us), so a run in the slow state "
            "reads slower than simulated; calibrate on a steady machine to price what it runs"
            for name, p in sorted(profiles.items())
            if calibrated_unsteady(spread := p.platform.speed_probe_spread)]  # fmt: skip


def _fabric_warnings(sim_dir: Path, hw_sums: list[Summary], hw_dir: Path | None = None) -> list[str]:
    """A netns run measured its fabric (``Summary.fabric``): warn when the simulation did not give its links
    that fabric's rate, its hosts the machine's cores or its messages the machine's kernel, and say how to."""
    netns = next((s for s in hw_sums if s.fabric is not None), None)
    if netns is None or netns.fabric is None:
        return []
    fabric, cores = netns.fabric, netns.machine_load.cores if netns.machine_load is not None else None
    try:
        d = load_yaml_file(RunLayout(sim_dir).scenario).get("deployment") or {}
        links = d.get("network", {}).get("links", [])
        rates = [link.get("bandwidth_bps") for link in links]
        buckets = [link.get("burst_bytes") for link in links]
        machine_cores = (d.get("machine") or {}).get("cores")
        kernel_bps = (d.get("network", {}).get("transport") or {}).get("host_rate_bps")
    except (UserError, AttributeError, TypeError):  # unreadable, or not a scenario's shape: no advice
        return []
    missing = []
    if fabric.throughput_bps < fabric.rate_bps and any(
        not isinstance(r, int | float) or r > 1.1 * fabric.throughput_bps for r in rates
    ):
        missing.append(f"links at the {fabric.throughput_bps / 1e6:,.0f} Mbit/s one TCP stream got")
    if fabric.burst_bytes and any(b != fabric.burst_bytes for b in buckets):
        missing.append(f"its links' {fabric.burst_bytes:,}-byte token buckets")
    if cores is not None and machine_cores != cores:
        missing.append(f"its hosts on this machine's {cores} cores")
    if fabric.kernel_rate_bps and not (isinstance(kernel_bps, int | float) and kernel_bps > 0):
        missing.append(f"the machine's kernel at {fabric.kernel_rate_bps / 1e6:,.0f} Mbit/s per second of its CPU")
    if not missing:
        return []
    sets = " ".join(f"--set '{o}'" for o in netns.fabric_overrides())
    how = f"pqtwin sim ... --fabric-of {hw_dir} (or {sets})" if hw_dir is not None else sets
    return [f"the measured run is on the netns backend ({fabric.describe()}); the simulation lacks "
            f"{' and '.join(missing)}: simulate with {how}"]  # fmt: skip


def _least_quiet(summaries: list[Summary]) -> Summary:
    """The summary whose machine was least quiet (its load is the one to warn about)."""
    noisy = [s for s in summaries if s.machine_load is not None and not s.machine_load.quiet]
    return noisy[0] if noisy else summaries[0]


def _run_facts(d: Path, summary: Summary) -> dict[str, Any]:
    keys = ("scenario", "mode", "seed", "replications", "suite", "machine_load")
    return {"dir": str(d), **summary.model_dump(include=set(keys))}


def unsimulated_ops(sim_df: pd.DataFrame, hw_df: pd.DataFrame) -> list[str]:
    """CPU operations in the measured run's rounds that the simulated run never did."""
    ops = lambda df: set(df[(df["round"] > 0) & ~df.op.isin(("transfer", "frame", "round", "distribution"))].op)  # noqa: E731
    return sorted(ops(hw_df) - ops(sim_df))


def _pooled(dirs: list[Path], notes: list[str]) -> tuple[pd.DataFrame, list[Summary]]:
    """Repeated measured runs as one: each run's spans become one replication of the pool."""
    parts, summaries = [], []
    for i, d in enumerate(dirs):
        df, summary = _read_run(d, notes)
        parts.append(df.assign(replication=i) if len(dirs) > 1 else df)
        summaries.append(summary)
    return pd.concat(parts, ignore_index=True), summaries


def at_speed_rounds(dirs: list[Path], pooled: pd.DataFrame, summaries: list[Summary]
                    ) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """The round latencies (and replications) of the pooled measured runs' rounds near which the speed probe saw
    every core at the calibration's speed; None when no run kept its samples or knew the calibrated probe."""
    rounds = pooled[(pooled.phase == "round") & (pooled.op == "round")]
    keep, known = np.zeros(len(rounds), dtype=bool), False
    for i, (d, summary) in enumerate(zip(dirs, summaries, strict=True)):
        mine = (rounds.replication == i).to_numpy() if len(dirs) > 1 else np.ones(len(rounds), dtype=bool)
        r, load = rounds[mine], summary.machine_load
        calibrated = load.calibrated_probe_us if load is not None else None
        flags = run_slow_flags(d, r.start_s.to_numpy(), r.end_s.to_numpy(), calibrated)
        if flags is None:
            continue
        known = True
        keep[mine] = flags == 0
    if not known:
        return None
    r = rounds[keep]
    return (r.end_s - r.start_s).to_numpy(dtype=float), r.replication.to_numpy(dtype=np.int64)


def quiet_run(summary: Summary) -> bool:
    """A measured run that completed on a quiet machine (``MachineLoad.quiet``)."""
    load = summary.machine_load
    return (summary.state or "completed") == "completed" and load is not None and load.quiet


def quiet_rounds(rounds: tuple[np.ndarray, np.ndarray], summaries: list[Summary]
                 ) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """The pooled measured runs' round latencies (and replications) of the runs that completed on a quiet machine;
    None unless there are several runs and some, not all, were quiet."""
    quiet = [i for i, s in enumerate(summaries) if quiet_run(s)]
    if len(summaries) < 2 or not 0 < len(quiet) < len(summaries):
        return None
    keep = np.isin(rounds[1], quiet)
    return rounds[0][keep], rounds[1][keep]


def _compared(sim_v: dict[str, tuple[np.ndarray, np.ndarray]], hw_v: dict[str, tuple[np.ndarray, np.ndarray]],
              n_dirs: int, warnings: list[str]) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    """Each metric compared where both sides have values; else why not (a warning where only one side has)."""
    metrics: dict[str, Any] = {}
    not_compared: dict[str, str] = {}
    for name in METRICS:
        if name == ON_QUIET and name not in hw_v:  # one run, or every run quiet, or none: nothing to tell apart
            continue
        if name not in hw_v:  # runs without the speed probe's samples: nothing to warn about
            not_compared[name] = "the measured run(s) kept no speed probe samples (or no calibrated probe)"
            continue
        ns, nh = sim_v[name][0].size, hw_v[name][0].size
        if ns and nh:
            some = name in (AT_SPEED, ON_QUIET) and n_dirs > 1  # only some runs' rounds
            n_runs = len(np.unique(hw_v[name][1])) if some else n_dirs
            metrics[name] = compare_metric(name, sim_v[name], hw_v[name], n_runs)  # at speed: runs with such rounds
            continue
        if ns or nh:
            not_compared[name] = f"no values in the {'measured' if ns else 'simulated'} run"
            if name == AT_SPEED and ns:  # its samples kept, but the cores were never all at speed through a round
                not_compared[name] = "no measured round ran with every core at the calibration's speed"
            warnings.append(f"{name}: {not_compared[name]}")
        else:
            not_compared[name] = "no values in either run"
    return metrics, not_compared


def compare_dirs(sim_dir: Path, hw_dir: Path, more_hw: Sequence[Path] = ()) -> dict[str, Any]:
    """Compare a simulated run directory with a measured one — or with that and ``more_hw``, repeated
    measurements of the same configuration pooled; the result is compare.json's content."""
    sim_dir, hw_dirs = Path(sim_dir), [Path(hw_dir), *map(Path, more_hw)]
    if problems := _check_dir(sim_dir) + [p for d in hw_dirs for p in _check_dir(d)]:
        raise UserError(problems)
    refuse_repeated_dirs(hw_dirs, "measured run", RunLayout.SPANS)
    notes: list[str] = []
    (sim_df, sim_sum), (hw_df, hw_sums) = _read_run(sim_dir, notes), _pooled(hw_dirs, notes)
    if sim_sum.backend is not None:  # the two directories given the other way round, most likely
        raise UserError(f"{sim_dir}: a measured run (backend: {sim_sum.backend}), given as the simulation: pqtwin "
                        "compare takes the simulated run directory first, then the measured one(s)")  # fmt: skip
    hw_sum = _least_quiet(hw_sums)
    runs = {"sim": _run_facts(sim_dir, sim_sum), "hw": _run_facts(hw_dirs[0], hw_sum)}
    if len(hw_dirs) > 1:
        runs["hw"] |= {"repeats": [str(d) for d in hw_dirs], "quiet_repeats": sum(map(quiet_run, hw_sums))}  # fmt: skip
    warnings = notes + _setting_warnings(runs, hw_sums) + _load_warnings(hw_sum) + calibration_warnings(sim_dir)
    warnings += _fabric_warnings(sim_dir, hw_sums, hw_dirs[0])
    warnings += [f"{d} is a simulation, not a measured run: this compares simulations" for d, s in
                 zip(hw_dirs, hw_sums, strict=True) if s.backend is None]  # fmt: skip
    for side, d, summary in (("simulated", sim_dir, sim_sum), ("measured", hw_dir, hw_sum)):
        state = summary.state or "completed"  # simulator runs always complete
        if state != "completed":
            why = summary.reason
            warnings.append(f"the {side} run did not complete ({state}: {why}); see {d}/status.json")
    if unpriced := unsimulated_ops(sim_df, hw_df):
        warnings.append(f"operations the twin ran that the simulation has no spans for (not priced, or another "
                        f"suite): {', '.join(unpriced)}")  # fmt: skip
    sim_v, hw_v = metric_values(sim_df), metric_values(hw_df)
    if (fast := at_speed_rounds(hw_dirs, hw_df, hw_sums)) is not None:
        sim_v[AT_SPEED], hw_v[AT_SPEED] = sim_v["round_latency_s"], fast
    if (quiet := quiet_rounds(hw_v["round_latency_s"], hw_sums)) is not None:
        sim_v[ON_QUIET], hw_v[ON_QUIET] = sim_v["round_latency_s"], quiet
    metrics, not_compared = _compared(sim_v, hw_v, len(hw_dirs), warnings)
    return {
        "sim_dir": str(sim_dir),
        "hw_dir": str(hw_dirs[0]),
        "runs": runs,
        "same_scenario": runs["sim"]["scenario"] == runs["hw"]["scenario"],
        "same_mode": runs["sim"]["mode"] == runs["hw"]["mode"],
        "warnings": warnings,
        "unsimulated_ops": unsimulated_ops(sim_df, hw_df),
        "method": {
            "error": "(sim - hw) / hw * 100, of the means (error_pct), medians (error_p50_pct), p95s",
            "ci": "95 % percentile bootstrap (2.5th-97.5th percentile of the resampled errors)",
            "resamples": RESAMPLES,
            "seed": BOOTSTRAP_SEED,
            "rng": "numpy.random.default_rng([seed, zlib.crc32(f'{metric}/{side}')]) (PCG64)",
            "units": "rounds (telemetry: frames), resampled with replacement within each replication "
            f"(stratified); two-stage (replications, then rounds within each) for repeated measured runs and "
            f"for {SIM_CLUSTERS} simulated replications or more; sides resampled independently",
            "within_ci": "0 inside error_ci95",
            "metrics": {k: v[1] for k, v in METRICS.items()},
        },
        "metrics": metrics,
        "not_compared": not_compared,
    }


# ----------------------------------------------------------------------------------------------- output


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """compare.json and compare.png in out_dir (each written to a temporary name, then renamed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / COMPARE_JSON, "png": out_dir / COMPARE_PNG}
    atomic_write(paths["json"], (json.dumps(result, indent=2) + "\n").encode())
    atomic_write(paths["png"], render_png(result))
    return paths


# ---------------------------------------------------- PNG: a minimal RGB encoder and a 5x7 bitmap font

_GLYPHS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ .,-%[]()_:/+=?;"
_FONT_HEX = """
3e5149453e 00427f4000 4261514946 2141454b31 1814127f10 2745454539 3c4a494930 0171090503 3649494936
064949291e 7e1111117e 7f49494936 3e41414122 7f4141221c 7f49494941 7f09090101 3e41415132 7f0808087f
00417f4100 2040413f01 7f08142241 7f40404040 7f0204027f 7f0408107f 3e4141413e 7f09090906 3e4151215e
7f09192946 4649494931 01017f0101 3f4040403f 1f2040201f 7f2018207f 6314081463 0304780403 6151494543
0000000000 0060600000 0050300000 0808080808 2313086462 007f414100 0041417f00 001c224100 0041221c00
4040404040 0036360000 2010080402 08083e0808 1414141414 0201510906 0056360000
"""
_FONT = dict(zip(_GLYPHS, (bytes.fromhex(h) for h in _FONT_HEX.split()), strict=True))
SIM_RGB, HW_RGB = (31, 119, 180), (255, 127, 14)
_OK_RGB, _BAD_RGB, _INK, _GRID = (44, 160, 44), (214, 39, 40), (30, 30, 30), (200, 200, 200)


class Canvas:
    """An RGB pixel buffer with rectangles and text, encoded as PNG without any imaging library."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.px = bytearray(b"\xff" * (width * height * 3))

    def rect(self, x0: float, y0: float, x1: float, y1: float, rgb: tuple[int, int, int]) -> None:
        x0, x1 = max(0, round(x0)), min(self.w, round(x1))
        y0, y1 = max(0, round(y0)), min(self.h, round(y1))
        if x0 >= x1:
            return
        row = bytes(rgb) * (x1 - x0)
        for y in range(y0, y1):
            o = (y * self.w + x0) * 3
            self.px[o : o + len(row)] = row

    def text(self, x: float, y: float, s: str, rgb: tuple[int, int, int], scale: int = 1) -> None:
        for i, ch in enumerate(s.upper()):
            for cx, bits in enumerate(_FONT.get(ch, _FONT["?"])):
                for cy in range(7):
                    if bits >> cy & 1:
                        px, py = x + (i * 6 + cx) * scale, y + cy * scale
                        self.rect(px, py, px + scale, py + scale, rgb)

    def png(self) -> bytes:
        stride = self.w * 3
        raw = b"".join(b"\x00" + self.px[y * stride : (y + 1) * stride] for y in range(self.h))

        def chunk(tag: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

        ihdr = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _whisker(c: Canvas, lo: float, hi: float, y: float, rgb: tuple[int, int, int]) -> None:
    c.rect(lo, y - 1, hi + 1, y + 1, rgb)
    c.rect(lo, y - 4, lo + 1, y + 4, rgb)
    c.rect(hi, y - 4, hi + 1, y + 4, rgb)


def render_png(result: dict[str, Any]) -> bytes:
    """Left: simulated and measured means (each row scaled to its own largest value) with bootstrap
    95 % CI whiskers. Right: error % of the means with its CI around a zero line (green: 0 inside)."""
    metrics = list(result["metrics"].values())
    row_h, top, label_w, bar_x0, bar_w, err_x0, err_w = 36, 96, 260, 270, 330, 640, 240
    c = Canvas(1000, top + row_h * max(1, len(metrics)) + 30)
    sim, hw = result["runs"]["sim"], result["runs"]["hw"]
    mode = sim["mode"] if sim["mode"] == hw["mode"] else f"{sim['mode']} vs {hw['mode']}"
    c.text(10, 10, f"simulated vs measured: {sim['scenario']} ({mode})", _INK, 2)
    c.text(10, 34, "error = (sim - hw) / hw; whiskers: 95% bootstrap CI", _INK)
    for x, rgb, name in ((10, SIM_RGB, "simulated"), (130, HW_RGB, "measured")):
        c.rect(x, 50, x + 12, 62, rgb)
        c.text(x + 18, 53, name, _INK)
    c.text(bar_x0, 76, "mean (each row scaled to its largest value)", _INK)
    c.text(err_x0, 76, "error % of means [95% CI]", _INK)
    errs = [abs(v) for m in metrics for v in (m["error_pct"], *m["error_ci95"]) if v is not None]
    span = max([1.0, *errs]) * 1.1
    zero = err_x0 + err_w / 2
    c.rect(zero, top - 4, zero + 1, top + row_h * len(metrics), _GRID)
    for i, m in enumerate(metrics):
        y = top + i * row_h
        c.rect(0, y + row_h - 1, c.w, y + row_h, _GRID)
        c.text(10, y + 11, m["label"][: label_w // 12 - 1], _INK, 2)
        vals = [m["sim_mean"], m["hw_mean"], *m["sim_mean_ci95"], *m["hw_mean_ci95"]]
        scale = bar_w / max([1e-12, *(v for v in vals if v is not None)])
        for side, rgb, dy in (("sim", SIM_RGB, 6), ("hw", HW_RGB, 19)):
            c.rect(bar_x0, y + dy, bar_x0 + m[f"{side}_mean"] * scale, y + dy + 11, rgb)
            lo, hi = m[f"{side}_mean_ci95"]
            if lo is not None:
                _whisker(c, bar_x0 + lo * scale, bar_x0 + hi * scale, y + dy + 5, _INK)
        if m["error_pct"] is None:
            continue
        rgb = _OK_RGB if m["within_ci"] else _BAD_RGB
        lo, hi = m["error_ci95"]
        if lo is not None:
            _whisker(c, zero + lo / span * err_w / 2, zero + hi / span * err_w / 2, y + row_h / 2, rgb)
        x = zero + m["error_pct"] / span * err_w / 2
        c.rect(x - 4, y + row_h / 2 - 4, x + 5, y + row_h / 2 + 5, rgb)
        c.text(err_x0 + err_w + 14, y + 11, f"{m['error_pct']:+.1f}%", rgb, 2)
    yb = top + row_h * len(metrics) + 8
    c.text(err_x0, yb, f"-{span:.0f}%", _INK)
    c.text(zero - 2, yb, "0", _INK)
    c.text(err_x0 + err_w - 30, yb, f"+{span:.0f}%", _INK)
    return c.png()
