"""A run whose rounds alternate the two modes (S C C S S C ..., ``sim.contract.round_mode``), split into a run of each.

``pqtwin hw run --mode both`` runs its rounds so, to measure both modes in the same seconds of a host whose state
drifts, and ``pqtwin sim --mode both --rounds-in-turn`` simulates them so (``sim.runner.ALTERNATING``), to be compared
with such a run as it was measured: one set of connections, aged by both modes' rounds, and one pool of workers.

``split`` writes ``DIR/sequential`` and ``DIR/concurrent`` beside the whole run, as ``pqtwin sim --mode both`` writes
its two: each a run directory that ``compare``, ``report`` and ``calibrate --from-run`` read (its spans: the rounds of
its mode and the sessions around them, round 0; its summary: the same facts, its KPIs from those spans), and
``DIR/modes.json``, the reduction concurrent vs sequential with a 95 % CI over the ABBA pairs of rounds (``"paired":
"rounds"``), each replication's pairs its own. The whole run's spans and summary stay in ``DIR``, for the record.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.contract import (
    ROUND_MODES,
    Energy,
    RunLayout,
    Summary,
    read_spans,
    read_summary,
    round_mode,
    write_json,
    write_spans,
    write_summary,
)
from sim.scenario import Scenario, load_scenario, write_scenario
from sim.summary import ci95, summarise

# the summary's fields computed from spans (``summarise``), recomputed from each mode's
_FROM_SPANS = ("round_latency_s", "model_distribution_s", "rounds_completed", "rounds_failed", "phase_s",
               "crypto_share", "application_bytes", "telemetry", "energy")  # fmt: skip
Key = tuple[int, int]  # (replication, round)


def rounds_of(mode: str, rounds: int) -> list[int]:
    """The rounds of an alternating run (1..rounds) that ran in ``mode``."""
    return [r for r in range(1, rounds + 1) if round_mode("both", r) == mode]


def split(out: Path, copied: Iterable[str] = (), linked: Iterable[str] = ()) -> dict[str, Summary]:
    """Write the two modes' run directories and modes.json of the alternating run in ``out``; returns each mode's
    summary. A run that stopped early splits what it finished. ``copied``: files of ``out`` (``RunLayout`` names)
    each mode's directory keeps as the whole run's, where present; ``linked``: the same, large, hard-linked where the
    file system allows."""
    whole = read_summary(RunLayout(out).summary)
    spans = read_spans(RunLayout(out).spans)
    last = int(spans["round"].max()) if len(spans) else 0
    summaries = {m: _write_mode(out, m, whole, spans, rounds_of(m, last), tuple(copied), tuple(linked))
                 for m in ROUND_MODES}  # fmt: skip
    write_json(RunLayout(out).modes, paired_reduction(spans, last) | {"scenario": whole.scenario, "seed": whole.seed})
    return summaries


def _write_mode(out: Path, mode: str, whole: Summary, spans: pd.DataFrame, rounds: list[int], copied: tuple[str, ...],
                linked: tuple[str, ...]) -> Summary:  # fmt: skip
    d = out / mode
    d.mkdir(exist_ok=True)
    df = spans[spans["round"].isin([0, *rounds])].reset_index(drop=True)
    write_spans(df, RunLayout(d).spans)
    s = load_scenario(RunLayout(out).scenario, [f"workload.processing.mode={mode}"], priced=False)
    write_scenario(s, d)
    for name in copied:
        if (out / name).is_file():
            shutil.copyfile(out / name, d / name)
    for name in linked:
        if (out / name).is_file():
            _link(out / name, d / name)
    meta: dict[str, Any] = whole.model_dump(exclude=set(_FROM_SPANS))
    accuracy = whole.accuracy_per_round
    meta.update(mode=mode, events=len(df), accuracy_per_round=[accuracy[r - 1] for r in rounds if r <= len(accuracy)],
                warnings=[*whole.warnings, f"the {mode} rounds of a run whose rounds alternate the modes "
                          f"({', '.join(map(str, rounds))}): {out}"])  # fmt: skip
    summary = summarise(df, meta)
    summary.energy = _energy(s, df, whole)
    write_summary(summary, d)
    return summary


def _energy(s: Scenario, df: pd.DataFrame, whole: Summary) -> Energy | None:
    """A mode's energy: its hosts' work over the whole run's time and its rounds' joules, priced as the whole run's
    were (simulated, or estimated from measured spans); the devices' are the whole run's (they send in every round).
    None where the whole run has none."""
    from sim.energy import host_energy, round_energy  # here: a twin's split needs the model only for this

    if whole.energy is None:
        return None
    times = [whole.sim_time_s] * max(1, whole.replications)
    return Energy(basis=whole.energy.basis, hosts=host_energy(s, df, times), per_round_j=round_energy(s, df),
                  devices=whole.energy.devices)  # fmt: skip


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def paired_reduction(spans: pd.DataFrame, last: int) -> dict[str, Any]:
    """Concurrent vs sequential from one alternating run: for round latency and model distribution, each mode's mean
    and median, the reduction 1 - concurrent / sequential of the means (the simulator's ``mode_comparison``) and of
    the medians, and a 95 % CI over the pairs of rounds (each ABBA pair holds one round of each mode; a simulated
    run's replications each have their own)."""
    reps = int(spans["replication"].nunique()) if len(spans) else 0
    out: dict[str, Any] = {"paired": "rounds", "rounds": last, "replications": max(1, reps)}
    for key in ("round_latency_s", "model_distribution_s"):
        seq, conc = by_mode(spans, key, last)
        pairs = per_pair(seq, conc, last)
        if not seq or not conc or not pairs.size:
            out[key] = {"reduction": None, "reduction_ci95": [None, None], "pairs": int(pairs.size)}
            continue
        a, b = np.array(list(seq.values())), np.array(list(conc.values()))
        out[key] = {
            "sequential_mean": float(a.mean()), "concurrent_mean": float(b.mean()),
            "sequential_p50": float(np.median(a)), "concurrent_p50": float(np.median(b)),
            "reduction": float(1 - b.mean() / a.mean()), "reduction_p50": float(1 - np.median(b) / np.median(a)),
            "reduction_ci95": list(ci95(pairs)), "pairs": int(pairs.size),
        }  # fmt: skip
    return out


def pair_reductions(spans: pd.DataFrame, last: int, key: str = "round_latency_s") -> np.ndarray:
    """(sequential - concurrent) / sequential of each ABBA pair of rounds that finished both (``key``: round latency
    or model distribution), each replication's pairs in turn."""
    return per_pair(*by_mode(spans, key, last), last)


def per_pair(seq: dict[Key, float], conc: dict[Key, float], last: int) -> np.ndarray:
    """(sequential - concurrent) / sequential of each ABBA pair of rounds both of whose rounds are in ``seq`` and
    ``conc`` (``by_mode``)."""
    reps = sorted({k[0] for k in (*seq, *conc)})
    return np.array([(seq[(i, r)] - conc[(i, q)]) / seq[(i, r)] for i in reps for r, q in _pairs(last)
                     if (i, r) in seq and (i, q) in conc and seq[(i, r)] > 0])  # fmt: skip


def by_mode(spans: pd.DataFrame, key: str, last: int) -> tuple[dict[Key, float], dict[Key, float]]:
    """Each finished round's round latency (or model distribution) of each mode, by (replication, round)."""
    if key == "round_latency_s":
        rows = spans[(spans.phase == "round") & (spans.op == "round")]
    else:
        rows = spans[spans.phase == "distribution"]
    by_round = (rows.end_s - rows.start_s).groupby([rows["replication"], rows["round"]]).sum()
    values = {(int(i), int(r)): float(v) for (i, r), v in by_round.items()}

    def of(mode: str) -> dict[Key, float]:
        mine = set(rounds_of(mode, last))
        return {k: v for k, v in values.items() if k[1] in mine}

    return of("sequential"), of("concurrent")


def _pairs(last: int) -> list[tuple[int, int]]:
    """(sequential round, concurrent round) of each ABBA pair: rounds 2k+1 and 2k+2."""
    return [(a, a + 1) if round_mode("both", a) == "sequential" else (a + 1, a) for a in range(1, last, 2)]
