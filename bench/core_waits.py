"""Where a round's threads wait for a core: the simulator's cores against the kernel's, each mode's rounds apart.

For every ``--mode both`` twin run kept by ``bench/twin_fidelity.py --keep DIR`` (``hw-<layout>-both-<cell>-<k>``)
and the cells the bench simulated for it (``sim-<layout>-<mode>-<cell>``: their scenario and profiles, as scored),
per round of each mode, medians:

- measured, from the run's kernel scheduler trace (``bench/sched_idle.py`` ``round_costs``): the CPU its nodes
  used, how long its threads were runnable but not running, and of that how long while another core idled;
- simulated (``--replications`` of the cell, the scenario's cores as ``cpu_sharing: linux`` places jobs on them,
  ``PlacedCores``, sampled every ``SAMPLE_S`` of simulated time): the cores' busy time, the jobs waiting on a core
  times how long, and of that while a core idled.

The two are alike, not the same: a measured thread is any of the twin's (NumPy's BLAS threads, the harness's speed
probe among them), a simulated job a modelled operation; what is worth reading is how each mode moves them. The
sampling only reads the cores' state; the model's results are those of an unsampled run.

Run: python bench/core_waits.py DIR [--replications N] [--cells SUBSTRING]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from sched_idle import TRACE, round_costs

from hw.schedtrace import read_kept
from sim import hosts
from sim.runner import simulate
from sim.scenario import load_scenario

SAMPLE_S = 50e-6
MODES = ("sequential", "concurrent")


@contextlib.contextmanager
def sampled_cores() -> Iterator[list[list[tuple[float, int, int, int]]]]:
    """Every ``PlacedCores`` made within: sampled every ``SAMPLE_S`` (time, jobs waiting, of them while a core
    idled, cores busy), one list per instance in the order made (a replication's host)."""
    samples: list[list[tuple[float, int, int, int]]] = []
    made = hosts.PlacedCores.__init__

    def init(self: hosts.PlacedCores, env: Any, cores: int, rng: Any = None) -> None:
        made(self, env, cores, rng)
        rows: list[tuple[float, int, int, int]] = []
        samples.append(rows)

        def sampler() -> Iterator[Any]:
            while True:
                waiting = sum(len(q.waiting) for q in self.queues)
                busy = sum(q.running is not None for q in self.queues)
                rows.append((env.now, waiting, waiting if busy < len(self.queues) else 0, busy))
                yield env.timeout(SAMPLE_S)

        env.process(sampler())

    hosts.PlacedCores.__init__ = init  # type: ignore[method-assign]
    try:
        yield samples
    finally:
        hosts.PlacedCores.__init__ = made  # type: ignore[method-assign]


def simulated(sim_dir: Path, mode: str, replications: int) -> list[tuple[float, float, float]] | None:
    """(busy core-seconds, job-seconds waiting, of them while a core idled) of each simulated round; None where
    the cell's host shares its cores another way than ``linux``."""
    s = load_scenario(sim_dir / "scenario.yaml")
    with sampled_cores() as samples:
        spans = simulate(s, mode, replications=replications, workers=1).spans
    if not samples or len(samples) != replications:  # one placed host per replication, or none
        return None
    rounds = spans[(spans.phase == "round") & (spans.op == "round") & (spans["round"] > 0)]
    out = []
    for rep, rows in enumerate(samples):
        a = np.array(rows)
        for r in rounds[rounds.replication == rep].itertuples():
            inside = (a[:, 0] >= r.start_s) & (a[:, 0] < r.end_s)
            out.append((a[inside, 3].sum() * SAMPLE_S, a[inside, 1].sum() * SAMPLE_S, a[inside, 2].sum() * SAMPLE_S))
    return out


def measured(runs: list[Path]) -> dict[str, list[tuple[float, float, float]]]:
    """(CPU seconds, seconds runnable and waiting, of them while another core idled) of each measured round."""
    out: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
    for run in runs:
        text, window, nodes = read_kept(run / TRACE)
        if window is None:
            continue
        for mode, waits in round_costs(run, text, window, nodes).items():
            out[mode] += [(sum(w.by_node_cpu_s.values()), w.runnable_wait_s, w.idle_core_wait_s) for w in waits]
    return out


def both_runs(root: Path, cells: str) -> dict[str, list[Path]]:
    """{the simulated cell's name with MODE for its mode: the both runs kept for it}."""
    found: dict[str, list[Path]] = {}
    for d in sorted(root.glob("hw-*-both-*")):
        m = re.fullmatch(r"hw-(.+)-both-(.+)-\d+", d.name)
        if m and cells in d.name and (d / TRACE).is_file() and (d / "modes.json").is_file():
            found.setdefault(f"sim-{m[1]}-MODE-{m[2]}", []).append(d)
    return found


def medians(rows: list[tuple[float, float, float]]) -> str:
    if not rows:
        return "-"
    cpu, wait, idle = (1e3 * float(np.median([r[k] for r in rows])) for k in range(3))
    return f"{cpu:7.1f} {wait:6.1f} {idle:6.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="bench/twin_fidelity.py --keep's directory")
    ap.add_argument("--replications", type=int, default=3, help="simulated replications of each cell and mode")
    ap.add_argument("--cells", default="", help="only cells whose name holds this")
    args = ap.parse_args()
    cells = both_runs(args.dir, args.cells)
    if not cells:
        ap.error(f"{args.dir}: no --mode both twin run with a kept {TRACE} (bench/twin_fidelity.py --keep as root)")
    print("per round, median ms: CPU (simulated: busy core-time), waiting for a core, of it while a core idled")
    print(f"{'cell':<44} {'mode':<10} {'measured':>22} {'simulated':>22}")
    for name, runs in cells.items():
        hw = measured(runs)
        for mode in MODES:
            sim_dir = args.dir / name.replace("MODE", mode)
            sim = simulated(sim_dir, mode, args.replications) if (sim_dir / "scenario.yaml").is_file() else None
            sim_text = "-" if sim is None else medians(sim)
            print(f"{name.replace('-MODE', '')[4:]:<44} {mode:<10} {medians(hw[mode]):>22} {sim_text:>22}")


if __name__ == "__main__":
    main()
