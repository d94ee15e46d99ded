"""The twin's front door at full size: >= 100,000 fuzzed frames and 1,000 stray/silent connections at a live
run's aggregator (loopback only), compared with an undisturbed run of the same seed.

Run: python bench/fuzz_twin.py [--frames N] [--strays N] [--rounds N]
Goal: the fuzzed run completes, its accuracy per round equals the undisturbed run's, every rejection is
counted by kind in summary.json, and no node process is left behind.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from hw.fuzz import Barrage
from hw.local import run_local
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["workload.fl.model_parameters=50000", "workload.fl.samples_per_client=300",
            "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--strays", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=1500, help="long enough for the barrage to land (~1 min)")
    args = ap.parse_args()
    s = load_scenario(ROOT / "scenarios" / "localhost.yaml", SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        ref = run_local(s, Path(tmp) / "ref", "sequential", rounds=args.rounds, seed=11)
        out = Path(tmp) / "fuzzed"
        sent: dict[str, int] = {}

        def fire() -> None:
            sent.update(Barrage.at_run(out, seed=3, stop=ended).run(args.frames, args.strays))

        ended = threading.Event()
        attacker = threading.Thread(target=fire)
        started = time.monotonic()
        attacker.start()
        fuzzed = run_local(s, out, "sequential", rounds=args.rounds, seed=11)
        ended.set()
        attacker.join()
        wall_s = time.monotonic() - started
    same = fuzzed.accuracy_per_round == ref.accuracy_per_round
    print(f"sent: {dict(sorted(sent.items()))} in {wall_s:.0f} s")
    print(f"fuzzed run: {fuzzed.state} ({fuzzed.reason or 'ok'}), rounds {fuzzed.rounds_completed}/{args.rounds}, "
          f"dropouts {len(fuzzed.dropouts)}")  # fmt: skip
    print(f"rejections counted: {dict(sorted(fuzzed.security.items()))} (total {sum(fuzzed.security.values())})")
    print(f"accuracy per round identical to the undisturbed run: {same}")
    print(f"round latency p50: undisturbed {(ref.round_latency_s.p50 or 0) * 1e3:.1f} ms, "
          f"fuzzed {(fuzzed.round_latency_s.p50 or 0) * 1e3:.1f} ms")  # fmt: skip
    landed = sent.get("frames_sent", 0) >= args.frames and sent.get("silent", 0) + sent.get("garbage", 0) >= args.strays
    print(f"barrage landed in full during the run: {landed}")
    ok = fuzzed.state == "completed" and same and not fuzzed.dropouts and landed
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
