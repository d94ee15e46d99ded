"""The ``modes.json`` of a ``--mode both`` run: which directory is one, its file read bounded, its reduction said.

``pqtwin sim --mode both`` writes ``DIR/sequential``, ``DIR/concurrent`` and ``DIR/modes.json`` (the round latency's
reduction concurrent vs sequential, its CI over replications); ``pqtwin hw run --mode both`` the same beside the
whole run (its CI over ABBA pairs of rounds, ``"paired": "rounds"``; hw/modes.py). The app's Twin page and
``pqtwin report`` read it here. A damaged file reads as none: the line it would add is left out, nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sim.contract import RunLayout
from sim.errors import UserError
from sim.loading import read_json_object

MODES_LIMIT_BYTES = 1 << 20
HALVES = ("sequential", "concurrent")


def both_halves(d: Path) -> tuple[Path, Path] | None:
    """(sequential, concurrent) run directories of the ``--mode both`` run in ``d``; None where ``d`` is none."""
    if not RunLayout(d).modes.is_file():
        return None
    seq, conc = (d / m for m in HALVES)
    return (seq, conc) if seq.is_dir() and conc.is_dir() else None


def read_modes(d: Path) -> dict[str, Any] | None:
    """``d``'s modes.json when it holds a finite round-latency reduction (its CI kept only when finite); None when
    there is none, or it is damaged."""
    path = RunLayout(d).modes
    if not path.is_file():
        return None
    try:
        data = read_json_object(path, MODES_LIMIT_BYTES, "a modes.json")
    except (OSError, UserError):
        return None
    r = data.get("round_latency_s")
    if not isinstance(r, dict) or not _finite(r.get("reduction")):
        return None
    ci = r.get("reduction_ci95")
    if not (isinstance(ci, list) and len(ci) == 2 and all(_finite(x) for x in ci)):
        r = {**r, "reduction_ci95": None}  # said without its band
    if not (isinstance(r.get("pairs"), int) and not isinstance(r.get("pairs"), bool)):
        r = {k: v for k, v in r.items() if k != "pairs"}
    return {**data, "round_latency_s": r}


def paired(modes: dict[str, Any]) -> bool:
    """Whether the reduction is a twin run's, over pairs of its rounds (else a simulation's, over replications)."""
    return modes.get("paired") == "rounds"


def reduction_text(modes: dict[str, Any]) -> str:
    """``+12.3 % [+8.0, +16.1], 20 pairs of rounds``: the reduction, its 95 % CI and what it is over."""
    r = modes["round_latency_s"]
    band = f" [{r['reduction_ci95'][0] * 100:+.1f}, {r['reduction_ci95'][1] * 100:+.1f}]" if r["reduction_ci95"] else ""
    if paired(modes):
        n = f", {r['pairs']} pairs of rounds" if "pairs" in r else ", pairs of rounds"
        if isinstance(modes.get("replications"), int) and modes["replications"] > 1:  # a simulation's, in turn
            n += f" in {modes['replications']} replications"
    else:
        n = f", {modes.get('replications', '?')} replications"
    return f"{r['reduction'] * 100:+.1f} %{band}{n}"


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
