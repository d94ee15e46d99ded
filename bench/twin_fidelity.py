"""Twin fidelity: calibrate this host, simulate localhost.yaml with that profile, run it on the local
twin, and print the error of the simulated median and p95 round latency against the measured ones.

Run: python bench/twin_fidelity.py [--quick] [--rounds N]   (target for the twin: median within ±15 %)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hw.calibrate import calibrate, write_profile
from hw.compare import compare_dirs
from hw.local import run_local
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="quick calibration")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        profile = work / "profile.yaml"
        write_profile(calibrate(quick=args.quick), profile)
        s = load_scenario(ROOT / "scenarios" / "localhost.yaml", [f"workload.fl.rounds={args.rounds}"], profile)
        print(f"localhost.yaml, {args.rounds} rounds, profile measured here ({'quick' if args.quick else 'full'})")
        cols = ("sim p50", "hw p50", "err p50", "sim p95", "hw p95", "err p95")
        print(f"{'mode':12s} " + " ".join(f"{c:>9s}" for c in cols))
        for mode in ("sequential", "concurrent"):
            write_run(simulate(s, mode), work / f"sim-{mode}", s)
            run_local(s, work / f"hw-{mode}", mode, args.rounds, s.run.seed)
            m = compare_dirs(work / f"sim-{mode}", work / f"hw-{mode}")["metrics"]["round_latency_s"]
            print(f"{mode:12s} {m['sim_p50'] * 1e3:7.2f}ms {m['hw_p50'] * 1e3:7.2f}ms {m['error_p50_pct']:+7.1f}%   "
                  f"{m['sim_p95'] * 1e3:7.2f}ms {m['hw_p95'] * 1e3:7.2f}ms {m['error_p95_pct']:+7.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
