"""Start-up and whole-command time of ``pqtwin``, as a user meets them: each command a fresh process.

Medians of N runs of ``pqtwin --help``, ``pqtwin sim --help``, the paper scenario in both modes with 30
replications and a twin node's imports, against ``python -c pass`` with the same interpreter, measured in the
same run (the runs interleaved, so a busy moment hits every command alike): the ratios hold across machines of
different speed, the seconds are checked against issue 11's goals (help 0.3 s, the paper run 1.5 s).
Run: python bench/startup.py [--runs N] [--check]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_scale import NO_BYTECODE, USER_ENV

from sim.loading import in_range

ROOT = Path(__file__).resolve().parents[1]
NODE_IMPORTS = "import hw.node, hw.node.aggregator, hw.node.client, hw.node.devices, hw.node.worker"
HELP_GOAL_S = 0.3
PAPER_GOAL_S = 1.5


def pqtwin() -> list[str]:
    """The console script beside this interpreter (what `make` installs), else the module."""
    script = Path(sys.executable).parent / "pqtwin"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pqtwin"]


def commands(out: Path) -> dict[str, tuple[list[str], float | None]]:
    """label -> (argv, goal in seconds or None)."""
    cli = pqtwin()
    paper = [*cli, "sim", "scenarios/paper-3node.yaml", "--mode", "both", "--replications", "30",
             "--out", str(out), "--force"]  # fmt: skip
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "pqtwin --help": ([*cli, "--help"], HELP_GOAL_S),
        "pqtwin sim --help": ([*cli, "sim", "--help"], HELP_GOAL_S),
        "paper x 30, both modes": (paper, PAPER_GOAL_S),  # replications in one process per core (the default)
        "paper x 30, one process": ([*paper, "--workers", "1"], None),
        # what every process of a twin run imports before it does anything (no pandas, NetworkX or model: stop 82)
        "a twin node's imports": ([sys.executable, "-c", NODE_IMPORTS], None),
    }


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=USER_ENV)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit code {res.returncode}\n{res.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=in_range(1, 1000), default=7, help="runs of each command (the median is reported)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pqtwin-startup-") as tmp:
        cmds = commands(Path(tmp) / "paper")
        for argv, _ in cmds.values():  # warm-up, not counted: compiled bytecode and OS caches
            wall(argv)
        times: dict[str, list[float]] = {label: [] for label in cmds}
        for _ in range(args.runs):
            for label, (argv, _) in cmds.items():
                times[label].append(wall(argv))
    base = statistics.median(times["python -c pass"])
    missed = []
    print(f"median of {args.runs} runs, each a new process ({sys.executable})")
    if NO_BYTECODE in os.environ:
        print(f"({NO_BYTECODE} is set here; the commands ran without it, caching bytecode as a user's shell does)")
    for label, (_, goal) in cmds.items():
        med = statistics.median(times[label])
        verdict = ""
        if goal is not None:
            verdict = f"goal {goal:.1f} s: {'met' if med <= goal else 'NOT met'}"
            if med > goal:
                missed.append(label)
        spread = f"{min(times[label]):.3f}-{max(times[label]):.3f}"
        print(f"{label:<24}: {med:7.3f} s (range {spread} s)  ratio to python -c pass {med / base:7.1f}  {verdict}")
    if args.check and missed:
        raise SystemExit(f"goals missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
