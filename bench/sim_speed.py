"""Simulator speed: events per second of the event model on ward-200.yaml (60 s of telemetry and its FL
rounds, ``run.engine: events``) vs a bare SimPy timeout loop. The vectorized engine is measured in frames
per second by bench/sim_scale.py.

Both are measured in the same run, so the ratio holds across machines of different speed.
Run: python bench/sim_speed.py [--replications N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import simpy

from sim.loading import in_range
from sim.runner import simulate
from sim.scenario import MAX_REPLICATIONS, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def bare_timeout_rate(n: int = 500_000) -> float:
    """Events/s of one SimPy process doing nothing but timeouts (SimPy's own ceiling here)."""
    env = simpy.Environment()

    def loop():
        for _ in range(n):
            yield env.timeout(1)

    env.process(loop())
    t0 = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t0)


def model_rate(replications: int) -> tuple[float, int, float]:
    s = load_scenario(ROOT / "scenarios" / "ward-200.yaml", ["run.engine=events", "run.horizon_s=60"])
    t0 = time.perf_counter()
    summary = simulate(s, replications=replications).summary
    wall = time.perf_counter() - t0
    return summary.events / wall, summary.events, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replications", type=in_range(1, MAX_REPLICATIONS), default=5)
    args = ap.parse_args()
    bare = bare_timeout_rate()
    rate, events, wall = model_rate(args.replications)
    print(f"bare SimPy timeout loop : {bare:12,.0f} events/s")
    print(f"ward-200 model          : {rate:12,.0f} events/s ({events:,} events in {wall:.2f} s wall)")
    print(f"ratio model / bare      : {rate / bare:12.2f}")


if __name__ == "__main__":
    main()
