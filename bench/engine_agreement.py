"""Do the two engines agree on deterministic wards, and does the vectorized one say so when they do not?

    python bench/engine_agreement.py [--seconds 300] [--seed 1] [--window-frames N] [--json FILE]

Draws random small wards from ward-200 (three device populations of 0-25 devices with periods of 0.05-2 s, either
core discipline, 1-4 cores, device rekeys every 2 s, 5 s or never, 1-3 FL rounds of short or long trainings, horizons
of 4, 9 or 20 s), takes every draw off them (no jitter, loss or cost spread: ``tests/test_engines.py``'s
``quiet_network`` and ``fixed_costs``), runs each on the event model and on the kernels (``run.engine: vectorized``)
and sorts it:
- ``equal``: every frame's end and every round equal to 1e-9 s, the engine saying it is exact;
- ``refused``: the kernels refused it (a frame slower than its period; ``auto`` would run the event model);
- ``flagged``: frames differ and the engine says so (``summary.engine.exact`` false, with its perturbation);
- ``wrong``: frames differ and the engine says it is exact -- a bug; the bench exits 1.
``--window-frames`` shrinks the kernels' window (``sim.telemetry.WINDOW_FRAMES``) so a run spans many windows
(what a big run does: the small wards fit in one), to exercise what carries over between them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

import numpy as np

from tests.test_engines import POPULATIONS, frames, run


def draw(rng: random.Random) -> list[str]:
    """One ward's overrides."""
    sharing, cores = rng.choice(["processor-sharing", "fifo"]), rng.randint(1, 4)
    sets = [f"run.horizon_s={rng.choice([4.0, 9.0, 20.0])}",
            f"workload.processing.mode={rng.choice(['sequential', 'concurrent'])}",
            f"workload.crypto.rekey.device_interval_s={rng.choice(['null', '2', '5'])}",
            f"workload.fl.rounds={rng.randint(1, 3)}", "workload.fl.model_parameters=20000",
            f"workload.fl.samples_per_client={rng.choice([500, 20_000, 200_000])}"]  # fmt: skip
    sets += [f"workload.devices.{j}.count=0" for j in range(3, POPULATIONS)]
    for j in range(3):
        sets += [f"workload.devices.{j}.count={rng.randint(0, 25)}",
                 f"workload.devices.{j}.frame_period_s={rng.choice([0.05, 0.25, 1.0, 2.0])}"]  # fmt: skip
    sets += [f"deployment.hosts.{k}.{f}" for k in range(3) for f in (f"cpu_sharing={sharing}", f"cores={cores}")]
    return sets


def judge(sets: list[str]) -> tuple[str, float]:
    """(class, the largest frame difference in seconds) of one ward."""
    from sim.errors import UserError

    ev = run("events", *sets)
    try:
        vec = run("vectorized", *sets)
    except UserError:
        return "refused", 0.0
    unequal = "wrong" if vec.summary.engine is not None and vec.summary.engine.exact else "flagged"
    a, b = frames(ev.spans), frames(vec.spans)
    if len(a) != len(b) or (len(a) and not (a.host.to_numpy() == b.host.to_numpy()).all()):
        return unequal, float("inf")
    off = float(np.abs(a.end_s.to_numpy() - b.end_s.to_numpy()).max()) if len(a) else 0.0
    ra, rb = ev.summary.round_latency_s.mean, vec.summary.round_latency_s.mean
    off = max(off, 0.0 if ra is None or rb is None else abs(ra - rb))
    if off <= 1e-9 and ev.summary.rounds_completed == vec.summary.rounds_completed:
        return "equal", off
    return unequal, off


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="draw wards for this long")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--window-frames", type=int, default=None, help="the kernels' window (default: the engine's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.window_frames is not None:
        import sim.telemetry

        sim.telemetry.WINDOW_FRAMES = args.window_frames
    rng, end = random.Random(args.seed), time.monotonic() + args.seconds
    counts: Counter[str] = Counter()
    worst: dict[str, Any] = {"flagged": (0.0, None), "wrong": (0.0, None)}
    rekeyed: Counter[str] = Counter()
    while time.monotonic() < end:
        sets = draw(rng)
        kind, off = judge(sets)
        counts[kind] += 1
        if kind in worst:
            rekeyed[next(s.split("=")[1] for s in sets if "device_interval_s" in s)] += 1
            if off > worst[kind][0]:
                worst[kind] = (off, sets)
        if kind == "wrong":
            print(f"wrong: {sets}", flush=True)
    total = sum(counts.values())
    print(f"{total} wards: " + ", ".join(f"{k} {counts[k]}" for k in ("equal", "refused", "flagged", "wrong")))
    if counts["flagged"]:
        print(f"flagged by their device rekey interval: {dict(rekeyed)}; largest frame difference "
              f"{worst['flagged'][0] * 1e3:.3f} ms")  # fmt: skip
    if args.json:
        worst_s = worst["flagged"][0] if np.isfinite(worst["flagged"][0]) else None  # inf: frame counts differed
        args.json.write_text(json.dumps({"seed": args.seed, "window_frames": args.window_frames, "wards": total,
                                         "counts": dict(counts), "rekey_of_inexact": dict(rekeyed),
                                         "worst_flagged_s": worst_s,
                                         "worst_flagged": worst["flagged"][1]}, indent=1))  # fmt: skip
    return 1 if counts["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
