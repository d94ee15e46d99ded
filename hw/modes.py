"""A ``--mode both`` twin run: sequential and concurrent rounds in turn in one run, split into a run of each mode.

Two runs of a scenario, one per mode, minutes apart, meet the host in different states: on our 2-core machines the
medians of back-to-back runs of one cell were up to 40 % apart, so the measured concurrent-vs-sequential reduction
swung by tens of points from one pair of runs to the next. One run whose rounds alternate (``round_mode``: S C C S
S C ..., ABBA, so a drift through the run weighs on both modes alike) measures both modes in the same seconds:
the reduction is paired round by round, as the simulator pairs its replications by their common seeds.

``split`` (``sim.alternating``, shared with the simulator's runs of rounds in turn) writes ``DIR/sequential`` and
``DIR/concurrent`` beside the whole run and ``DIR/modes.json``, the reduction with a 95 % CI over the ABBA pairs of
rounds. The whole run's own spans and summary stay in ``DIR`` (mode ``both``), for the record: ``compare`` refuses
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim import alternating
from sim.contract import ALTERNATING_MODES, RunLayout, Summary, read_spans
from sim.errors import UserError, shorten
from sim.modes_json import paired
from sim.summary import ci95

# facts of the run a mode's summary keeps as the whole run's (what its spans alone cannot give)
_COPIED = (RunLayout.STATUS, RunLayout.RUN_CONFIG, RunLayout.PROGRESS, RunLayout.SPEED_PROBE)
_LINKED = (RunLayout.SCHED_TRACE,)  # large: a hard link where the file system allows, else a copy


def whole_run(d: Path, summary: Summary) -> str | None:
    """Why a ``both`` run's whole directory (or a simulated one's, rounds in turn) is not a run of one mode to compare
    or fit (None: it is one)."""
    if summary.mode not in ALTERNATING_MODES:
        return None
    return f"{d}: a --mode both run (its rounds in both modes): pass {d / 'sequential'} or {d / 'concurrent'}"


def split(out: Path) -> dict[str, Summary]:
    """Write the two modes' run directories and modes.json of the ``both`` run in ``out`` (``sim.alternating.split``,
    each keeping the run's status, configuration, progress, speed probe and scheduler trace); returns each mode's
    summary."""
    return alternating.split(out, _COPIED, _LINKED)


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
        seq, conc = alternating.by_mode(spans, "round_latency_s", last)
        seq_s += seq.values()
        conc_s += conc.values()
        pairs.append(alternating.per_pair(seq, conc, last))
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
                      "replications": simulated.get("replications"),
                      "pairs": sim_r.get("pairs") if paired(simulated) else None},  # --rounds-in-turn
        "measured": measured, "difference_points": diff, "goal_points": REDUCTION_GOAL_POINTS,
        "within_goal": None if diff is None else abs(diff) <= REDUCTION_GOAL_POINTS,
    }  # fmt: skip
