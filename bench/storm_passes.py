"""Start-up storms with late devices (issue 11): the vectorized engine's passes, exactness and wall time.

Blood-pressure cuffs report every 300 s and open their first session at a random phase of that period, so a
ward's start-up storm goes on for 300 s, long after its patches' first second. The vectorized engine gives SimPy
the storm's frames until its first lull (no handshake under way) and resumes every later pass there from a kept
fork (sim/checkpoint.py); this bench shows what that costs on such wards, seed by seed.

Cases, each in a child process of its own pinned to ``--cpu``:
- mixed ward: ward-200's network with 1,000 ECG patches and 60 blood-pressure cuffs, ``--horizon-s`` (320 s: every
  cuff up), one FL round, one replication, jitter and loss as shipped, for each of ``--seeds``;
- baseline, measured in the same run: the first seed's ward on the event engine (every frame in SimPy): "x events"
  is a case's wall time over it, so the ratio holds across machines of different speed;
- ``--hospital``: scenarios/hospital-10k.yaml as shipped (10,000 devices of six kinds, 1 h), with "x events" against
  the baseline scaled by frames (the event engine would take hours on it).

It prints per case: passes, exact (``summary.engine.exact``), the largest foreground delay left (s), frames SimPy
computed, wall s and x events; and the load average at start and end (a busy neighbour skews the wall times, not
the passes or exactness, which are the same on every machine).
Run: python bench/storm_passes.py [--seeds 0 1 2] [--horizon-s 320] [--hospital] [--cpu 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable from a checkout without install

from sim.loading import in_range, out_json  # noqa: E402

WARD = ROOT / "scenarios" / "ward-200.yaml"
HOSPITAL = ROOT / "scenarios" / "hospital-10k.yaml"
PATCHES, CUFFS = 1_000, 60
# ward-200's populations: the two ECG patch groups and the cuffs kept, the others off
MIXED_WARD = [f"workload.devices.{i}.count={n}" for i, n in
              enumerate((PATCHES // 2, PATCHES // 2, 0, 0, CUFFS, 0, 0, 0))]  # fmt: skip


def case_sets(seed: int, horizon_s: float, engine: str) -> list[str]:
    return [*MIXED_WARD, f"run.horizon_s={horizon_s}", "workload.fl.rounds=1", "run.replications=1",
            f"run.seed={seed}", f"run.engine={engine}"]  # fmt: skip


def child(path: str, sets: list[str], cpu: int | None) -> dict[str, Any]:
    """One run here (the child process): its engine's outcome and wall time."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    from sim.runner import simulate
    from sim.scenario import load_scenario

    s = load_scenario(Path(path), sets)
    started = time.perf_counter()
    r = simulate(s, workers=1)
    wall_s = time.perf_counter() - started
    e, t = r.summary.engine, r.summary.telemetry
    assert e is not None
    delay_s = max((d for d, _ in e.perturbation.values()), default=0.0)
    return {"wall_s": wall_s, "engine": e.name, "passes": e.passes, "exact": e.exact, "delay_s": delay_s,
            "hot_frames": e.hot_frames, "frames": t.frames if t is not None else 0}  # fmt: skip


def run_case(path: Path, sets: list[str], cpu: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(path), "--cpu-child", str(-1 if cpu is None else cpu),
           "--", *sets]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"storm_passes: the case {path.name} {' '.join(sets)} failed:\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=in_range(0, 2**63 - 1), nargs="+", default=list(range(12)))
    ap.add_argument("--horizon-s", type=in_range(1, 1e6, float), default=320.0)
    ap.add_argument("--hospital", action="store_true", help="also scenarios/hospital-10k.yaml as shipped")
    ap.add_argument("--cpu", type=in_range(0, (os.cpu_count() or 1) - 1), default=None,
                    help="pin every case to this core")  # fmt: skip
    ap.add_argument("--json", type=out_json, help="write the results here")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cpu-child", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("sets", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child is not None:
        print(json.dumps(child(str(a.child), a.sets, None if a.cpu_child < 0 else a.cpu_child)))
        return 0
    load_start = os.getloadavg()[0]
    baseline = run_case(WARD, case_sets(a.seeds[0], a.horizon_s, "events"), a.cpu)
    rows: list[dict[str, Any]] = []
    for seed in a.seeds:
        r = run_case(WARD, case_sets(seed, a.horizon_s, "vectorized"), a.cpu)
        rows.append({"case": f"mixed ward, seed {seed}", **r, "x_events": r["wall_s"] / baseline["wall_s"]})
    if a.hospital:
        r = run_case(HOSPITAL, [], a.cpu)
        scaled_s = baseline["wall_s"] * r["frames"] / max(baseline["frames"], 1)  # the event engine, by frames
        rows.append({"case": "hospital-10k", **r, "x_events": r["wall_s"] / scaled_s})
    load_end = os.getloadavg()[0]
    print(f"baseline: seed {a.seeds[0]} on the event engine, {baseline['wall_s']:.2f} s, "
          f"{baseline['frames']:,} frames; load average {load_start:.2f} -> {load_end:.2f}")  # fmt: skip
    print(f"{'case':<22} {'passes':>6} {'exact':>5} {'delay s':>9} {'SimPy frames':>12} {'wall s':>7} {'x events':>8}")
    for r in rows:
        print(f"{r['case']:<22} {r['passes']:>6} {r['exact']!s:>5} {r['delay_s']:>9.2g} {r['hot_frames']:>12,.0f} "
              f"{r['wall_s']:>7.2f} {r['x_events']:>8.3f}")  # fmt: skip
    exact = sum(r["exact"] for r in rows)
    print(f"exact: {exact} of {len(rows)}")
    if a.json:
        doc = {"baseline": baseline, "cases": rows, "load_average": [load_start, load_end],
               "horizon_s": a.horizon_s, "cpu": a.cpu}  # fmt: skip
        a.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
