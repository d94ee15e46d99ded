"""A ``--mode both`` twin run: sequential and concurrent rounds in turn in one run, split into a run of each mode.

Two runs of a scenario, one per mode, minutes apart, meet the host in different states: on our 2-core machines the
medians of back-to-back runs of one cell were up to 40 % apart, so the measured concurrent-vs-sequential reduction
swung by tens of points from one pair of runs to the next. One run whose rounds alternate (``round_mode``: S C C S
S C ..., ABBA, so a drift through the run weighs on both modes alike) measures both modes in the same seconds:
the reduction is paired round by round, as the simulator pairs its replications by their common seeds.

``split`` writes ``DIR/sequential`` and ``DIR/concurrent`` beside the whole run, as ``pqtwin sim --mode both``
writes its two: each a run directory that ``compare``, ``report`` and ``calibrate --from-run`` read (its spans:
the rounds of its mode and the sessions around them, round 0; its summary: the same facts, its KPIs from those
spans), and ``DIR/modes.json``, the reduction with a 95 % CI over the ABBA pairs of rounds. The whole run's own
spans and summary stay in ``DIR`` (mode ``both``), for the record: ``compare`` refuses them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hw.rundir import estimated_energy
from sim.contract import (
    ROUND_MODES,
    RunLayout,
    Summary,
    read_spans,
    read_summary,
    round_mode,
    write_json,
    write_spans,
    write_summary,
)
from sim.errors import UserError, shorten
from sim.scenario import load_scenario, write_scenario
from sim.summary import ci95, summarise

# facts of the run a mode's summary keeps as the whole run's (what its spans alone cannot give)
_COPIED = (RunLayout.STATUS, RunLayout.RUN_CONFIG, RunLayout.PROGRESS, RunLayout.SPEED_PROBE)
_LINKED = (RunLayout.SCHED_TRACE,)  # large: a hard link where the file system allows, else a copy
# the summary's fields computed from spans (``summarise``), recomputed from each mode's
_FROM_SPANS = ("round_latency_s", "model_distribution_s", "rounds_completed", "rounds_failed", "phase_s",
               "crypto_share", "application_bytes", "telemetry", "energy")  # fmt: skip


def whole_run(d: Path, summary: Summary) -> str | None:
    """Why a ``both`` run's whole directory is not a run of one mode to compare or fit (None: it is one)."""
    if summary.mode != "both":
        return None
    return f"{d}: a --mode both run (its rounds in both modes): pass {d / 'sequential'} or {d / 'concurrent'}"


def rounds_of(mode: str, rounds: int) -> list[int]:
    """The rounds of a ``both`` run (1..rounds) that ran in ``mode``."""
    return [r for r in range(1, rounds + 1) if round_mode("both", r) == mode]


def split(out: Path) -> dict[str, Summary]:
    """Write the two modes' run directories and modes.json of the ``both`` run in ``out``; returns each mode's
    summary. A run that stopped early splits what it finished."""
    whole = read_summary(RunLayout(out).summary)
    spans = read_spans(RunLayout(out).spans)
    last = int(spans["round"].max()) if len(spans) else 0
    summaries = {m: _write_mode(out, m, whole, spans, rounds_of(m, last)) for m in ROUND_MODES}
    write_json(RunLayout(out).modes, paired_reduction(spans, last) | {"scenario": whole.scenario, "seed": whole.seed})
    return summaries


def _write_mode(out: Path, mode: str, whole: Summary, spans: pd.DataFrame, rounds: list[int]) -> Summary:
    d = out / mode
    d.mkdir(exist_ok=True)
    df = spans[spans["round"].isin([0, *rounds])].reset_index(drop=True)
    write_spans(df, RunLayout(d).spans)
    s = load_scenario(RunLayout(out).scenario, [f"workload.processing.mode={mode}"], priced=False)
    write_scenario(s, d)
    for name in _COPIED:
        if (out / name).is_file():
            shutil.copyfile(out / name, d / name)
    for name in _LINKED:
        if (out / name).is_file():
            _link(out / name, d / name)
    meta: dict[str, Any] = whole.model_dump(exclude=set(_FROM_SPANS))
    accuracy = whole.accuracy_per_round
    meta.update(mode=mode, events=len(df), accuracy_per_round=[accuracy[r - 1] for r in rounds if r <= len(accuracy)],
                warnings=[*whole.warnings, f"the {mode} rounds of a --mode both run ({', '.join(map(str, rounds))}): "
                          f"{out}"])  # fmt: skip
    summary = summarise(df, meta)
    summary.energy = estimated_energy(s, df, whole.sim_time_s)
    write_summary(summary, d)
    return summary


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def paired_reduction(spans: pd.DataFrame, last: int) -> dict[str, Any]:
    """Concurrent vs sequential from one ``both`` run: for round latency and model distribution, each mode's mean
    and median, the reduction 1 - concurrent / sequential of the means (the simulator's ``mode_comparison``) and of
    the medians, and a 95 % CI over the pairs of rounds (each ABBA pair holds one round of each mode)."""
    out: dict[str, Any] = {"paired": "rounds", "rounds": last}
    for key in ("round_latency_s", "model_distribution_s"):
        seq, conc = _by_mode(spans, key, last)
        per_pair = _per_pair(seq, conc, last)
        if not seq or not conc or not per_pair.size:
            out[key] = {"reduction": None, "reduction_ci95": [None, None], "pairs": int(per_pair.size)}
            continue
        a, b = np.array(list(seq.values())), np.array(list(conc.values()))
        out[key] = {
            "sequential_mean": float(a.mean()), "concurrent_mean": float(b.mean()),
            "sequential_p50": float(np.median(a)), "concurrent_p50": float(np.median(b)),
            "reduction": float(1 - b.mean() / a.mean()), "reduction_p50": float(1 - np.median(b) / np.median(a)),
            "reduction_ci95": list(ci95(per_pair)), "pairs": int(per_pair.size),
        }  # fmt: skip
    return out


def pooled_reduction(dirs: list[Path]) -> dict[str, Any]:
    """The round latency's reduction concurrent vs sequential of one or more ``both`` runs of one configuration
    (``pqtwin compare`` of a both run with its repeats): 1 - concurrent / sequential of the means over every run's
    rounds, and a 95 % CI over all their ABBA pairs of rounds. A whole run's spans it cannot read: a UserError
    naming the file."""
    seq_s: list[float] = []
    conc_s: list[float] = []
    pairs: list[np.ndarray] = []
    for d in dirs:
        try:
            spans = read_spans(RunLayout(d).spans)
        except ValueError as exc:  # the file named, and its first problem
            raise UserError(f"{d}: {shorten(str(exc), 300)}") from None
        last = int(spans["round"].max()) if len(spans) else 0
        seq, conc = _by_mode(spans, "round_latency_s", last)
        seq_s += seq.values()
        conc_s += conc.values()
        pairs.append(_per_pair(seq, conc, last))
    per_pair = np.concatenate(pairs) if pairs else np.array([])
    out: dict[str, Any] = {"paired": "rounds", "runs": len(dirs), "pairs": int(per_pair.size)}
    if not seq_s or not conc_s or not per_pair.size:
        return out | {"reduction": None, "reduction_ci95": None}
    return out | {
        "sequential_mean": float(np.mean(seq_s)), "concurrent_mean": float(np.mean(conc_s)),
        "reduction": float(1 - np.mean(conc_s) / np.mean(seq_s)), "reduction_ci95": list(ci95(per_pair)),
    }  # fmt: skip


REDUCTION_JSON = "reduction.json"  # compare of two --mode both runs: the reduction simulated and measured
REDUCTION_GOAL_POINTS = 5.0  # issue 9: the measured reduction within 5 points of the simulated one


def reduction_facts(simulated: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """reduction.json: a ``pqtwin sim --mode both`` run's reduction (its modes.json, ``sim.modes_json.read_modes``)
    beside the one measured (``pooled_reduction``), their difference in points and whether it is within the goal."""
    sim_r = simulated["round_latency_s"]
    both = sim_r["reduction"] is not None and measured["reduction"] is not None
    diff = (sim_r["reduction"] - measured["reduction"]) * 100 if both else None
    return {
        "simulated": {"reduction": sim_r["reduction"], "reduction_ci95": sim_r["reduction_ci95"],
                      "replications": simulated.get("replications")},
        "measured": measured, "difference_points": diff, "goal_points": REDUCTION_GOAL_POINTS,
        "within_goal": None if diff is None else abs(diff) <= REDUCTION_GOAL_POINTS,
    }  # fmt: skip


def pair_reductions(spans: pd.DataFrame, last: int, key: str = "round_latency_s") -> np.ndarray:
    """(sequential - concurrent) / sequential of each ABBA pair of rounds that finished both (``key``: round latency
    or model distribution)."""
    return _per_pair(*_by_mode(spans, key, last), last)


def _per_pair(seq: dict[int, float], conc: dict[int, float], last: int) -> np.ndarray:
    return np.array([(seq[r] - conc[q]) / seq[r] for r, q in _pairs(last) if r in seq and q in conc and seq[r] > 0])


def _by_mode(spans: pd.DataFrame, key: str, last: int) -> tuple[dict[int, float], dict[int, float]]:
    """Each finished round's round latency (or model distribution), by round, of each mode."""
    if key == "round_latency_s":
        rows = spans[(spans.phase == "round") & (spans.op == "round")]
    else:
        rows = spans[spans.phase == "distribution"]
    by_round = (rows.end_s - rows.start_s).groupby(rows["round"]).sum()

    def of(mode: str) -> dict[int, float]:
        return {r: float(by_round[r]) for r in rounds_of(mode, last) if r in by_round.index}

    return of("sequential"), of("concurrent")


def _pairs(last: int) -> list[tuple[int, int]]:
    """(sequential round, concurrent round) of each ABBA pair: rounds 2k+1 and 2k+2."""
    return [(a, a + 1) if round_mode("both", a) == "sequential" else (a + 1, a) for a in range(1, last, 2)]
