"""Sweep engine (sim/sweep/, issue 14): parallel efficiency, the engine's overhead per point, checking 10,000 points.

1. A 200-point sweep of paper-3node (a Latin hypercube over model size, samples per client, KEM, signature,
   processing mode and crypto workers; 2 replications, 5 rounds a point) runs on a local Dask cluster of 1 worker
   and then of 2 workers, each into a new directory, alternated ``--repeats`` times; the fastest run of each is
   compared (a shared machine's slow spells only ever add time). Speed-up = wall(1 worker) / wall(2 workers), both
   measured from the first task submitted to the last result written (starting the cluster is reported beside);
   parallel efficiency = speed-up / 2. Goal: >= 90 %.
2. Overhead per point of the engine (submitting, shipping the scenario, sending rows back, writing the point's
   Parquet file and log line): (wall(1 worker) - the points' own simulation time) / points, as a share of a point's
   mean simulation time, on the 1-worker run (the client has the other core). Goal: <= 5 %.
   Beside them, the same points in a bare ``multiprocessing`` pool of 1 and 2 processes: how far the machine itself
   scales (two vCPUs of a shared host may not give two cores' worth), and how close the engine comes to it.
3. ``pqtwin sweep check`` of a 10,000-point Latin hypercube (the same axes), the whole command timed: validation of
   every point, cost estimated on a 2,000-point sample. Goal: < 10 s.

Everything is measured in this run; the machine's load average is printed beside (a busy neighbour moves them).
Run: python bench/sweep_scale.py [--points 200] [--out runs/bench-sweep]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sim.loading import in_range
from sim.sweep import engine, store
from sim.sweep.plan import plan
from sim.sweep.point import run_point
from sim.sweep.spec import MAX_POINTS, load_sweep

ROOT = Path(__file__).resolve().parents[1]
AXES = """
axes:
  - {name: model, path: workload.fl.model_parameters, range: {low: 10000, high: 1000000, log: true, integer: true}}
  - {name: samples, path: workload.fl.samples_per_client, range: {low: 50, high: 1000, integer: true}}
  - {path: workload.crypto.kem, values: [ML-KEM-512, ML-KEM-768, ML-KEM-1024, X25519+ML-KEM-768]}
  - {path: workload.crypto.signature, values: [ML-DSA-44, ML-DSA-65, ML-DSA-87, Falcon-512]}
  - {name: mode, path: workload.processing.mode, values: [sequential, concurrent]}
  - {path: workload.processing.workers, range: {low: 1, high: 4, integer: true}}
"""


def sweep_file(folder: Path, points: int, name: str) -> Path:
    path = folder / f"{name}.yaml"
    head = f"sweep: {name}\nscenario: {ROOT / 'scenarios' / 'paper-3node.yaml'}\nset: ['workload.fl.rounds=5']\n"
    path.write_text(f"{head}design: lhs\nsize: {points}\nreplications: 2\nseed: 14\n{AXES}")
    return path


def timed_sweep(sweep: Path, out: Path, workers: int) -> engine.Report:
    shutil.rmtree(out, ignore_errors=True)
    spec, scenario = load_sweep(sweep)
    p = plan(spec, scenario)
    store.prepare(out, p, sweep)
    return engine.run(p, out, workers=workers)


def pool_wall_s(sweep: Path, processes: int) -> float:
    """The same points in a plain multiprocessing pool (no Dask, nothing written): what the machine gives."""
    spec, scenario = load_sweep(sweep)
    todo = engine.tasks(plan(spec, scenario), set())
    with mp.get_context("spawn").Pool(processes) as pool:
        pool.map(_warm, range(processes))
        t0 = time.perf_counter()
        for _ in pool.imap_unordered(run_point, todo):
            pass
        return time.perf_counter() - t0


def _warm(_: int) -> None:
    import sim.runner  # noqa: F401


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=in_range(1, MAX_POINTS), default=200)
    ap.add_argument(
        "--repeats", type=in_range(1, 1000), default=2, help="runs of each worker count (the fastest is reported)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-sweep")
    args = ap.parse_args()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, no permission
        ap.error(f"--out {args.out}: cannot make the directory ({exc.strerror})")
    print(f"machine: {os.cpu_count()} CPUs, load average {loadavg()} at start")
    sweep = sweep_file(args.out, args.points, "bench")
    runs: dict[int, list[engine.Report]] = {1: [], 2: []}
    bare: dict[int, list[float]] = {1: [], 2: []}
    for i in range(args.repeats):  # alternated, so a slow spell of the machine hits every configuration
        for w in (1, 2):
            runs[w].append(timed_sweep(sweep, args.out / f"w{w}-{i}", w))
            bare[w].append(pool_wall_s(sweep, w))
    for w in (1, 2):
        print(f"  {w} worker(s): Dask " + ", ".join(f"{r.wall_s:.2f} s" for r in runs[w])
              + "; bare process pool " + ", ".join(f"{s:.2f} s" for s in bare[w]))  # fmt: skip
    one, two = (min(runs[w], key=lambda r: r.wall_s) for w in (1, 2))  # the least disturbed of each
    pool1, pool2 = min(bare[1]), min(bare[2])
    speedup = one.wall_s / two.wall_s
    mean_point = one.point_wall_s / one.done
    overhead = (one.wall_s - one.point_wall_s) / one.done
    print(
        f"{args.points}-point sweep of paper-3node ({one.done} ran, {len(one.failed)} failed), best of {args.repeats}:"
    )
    print(
        f"  1 worker : {one.wall_s:7.2f} s (+{one.engine_s:.1f} s starting the cluster); points' own time "
        f"{one.point_wall_s:.2f} s, {mean_point * 1e3:.1f} ms a point"
    )
    print(
        f"  2 workers: {two.wall_s:7.2f} s (+{two.engine_s:.1f} s starting the cluster); points' own time "
        f"{two.point_wall_s:.2f} s (workers busy {two.point_wall_s / (2 * two.wall_s):.0%} of the time)"
    )
    print(
        f"  the machine itself: the same points in a bare process pool take {pool1:.2f} s on 1 process, "
        f"{pool2:.2f} s on 2: it scales {pool1 / pool2:.2f}x ({pool1 / pool2 / 2:.1%})"
    )
    print(f"  speed-up {speedup:.2f}x, parallel efficiency {speedup / 2:.1%} (goal >= 90 %)")
    print(
        f"  engine overhead {overhead * 1e3:.2f} ms a point = {overhead / mean_point:.1%} of a point's own "
        f"simulation time (goal <= 5 %)"
    )
    big = sweep_file(args.out, 10_000, "check10k")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pqtwin", "sweep", "check", str(big)], capture_output=True, text=True,
                       cwd=ROOT, check=False)  # fmt: skip
    check_s = time.perf_counter() - t0
    print(f"pqtwin sweep check, 10,000 points: {check_s:.1f} s, whole command (goal < 10 s); exit {r.returncode}")
    print(f"  {r.stdout.strip() or r.stderr.strip()}")
    print(f"machine: load average {loadavg()} at end")
    result = {"points": args.points, "repeats": args.repeats, "pool_1_s": pool1, "pool_2_s": pool2,
              "one_worker_s": one.wall_s, "two_workers_s": two.wall_s, "speedup": speedup,
              "efficiency": speedup / 2, "overhead_per_point_s": overhead, "mean_point_s": mean_point,
              "overhead_share": overhead / mean_point, "check_10k_s": check_s, "loadavg_end": loadavg()}  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
