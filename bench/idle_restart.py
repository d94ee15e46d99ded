"""A kept connection's next message after an idle spell: measured over real TCP and simulated (issue 18).

Linux restarts an idle connection's window from the initial one, halved once a retransmission timeout idle
(``tcp_cwnd_restart``, ``net.ipv4.tcp_slow_start_after_idle``), for the congestion controls that leave the window to
TCP (CUBIC, Reno); BBR keeps its own. The model does the same (sim/congestion.py, ``Transport.restart_after_idle``).
Here one connection from ``s`` to ``r0`` on ``bench/net_fidelity.py``'s star (two links a path, each delayed by
``--latency-ms`` through hw/delayline.py) carries a message of each size once (a warm-up), then ``--reps`` more, each
after ``IDLE`` seconds of silence; the model carries the same sequence with the restart and without it. Needs root.
Run: python bench/idle_restart.py [--congestion-control cubic] [--latency-ms 5] [--reps 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import simpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import net_fidelity as nf

from hw.netns import Fabric, congestion_control, hop_latency_s, unavailable
from sim.network import Network
from sim.scenario import Transport

RATE_BPS = 100e6
SIZES_BYTES = (65536, 1_000_000)
IDLES_S = (0.05, 0.6, 3.0)  # under one timeout (~0.22 s here), two, and enough to reach the initial window


def simulated(latency_s: float, size: int, idle_s: float, reps: int, restart: bool) -> list[float]:
    """The model's time for each of ``reps`` messages of ``size`` bytes, each after ``idle_s`` of silence on a
    connection warmed by one message (links of ``latency_s`` each at ``RATE_BPS``)."""
    g = nf.star(RATE_BPS, latency_s)  # the fabric's bucket
    hosts = frozenset(n for n, kind in g.nodes(data="kind") if kind == "host")
    env = simpy.Environment()
    t = Transport(share_sigma=0, restart_after_idle=restart)
    net = Network(env, g, np.random.SeedSequence(0), nf.SEGMENT_BYTES, t, hosts)
    took: list[float] = []

    def go() -> Any:
        yield from net.transfer_tcp("s", "r0", size)
        for _ in range(reps):
            yield env.timeout(idle_s)
            start = env.now
            yield from net.transfer_tcp("s", "r0", size)
            took.append(env.now - start)

    env.process(go())
    env.run()
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--congestion-control", default=None, help="the sending sockets' (default: the machine's)")
    ap.add_argument("--latency-ms", type=float, default=5.0, help="each link's delay (0.5-1000 ms)")
    ap.add_argument("--reps", type=int, default=4, help="messages after each idle spell (1-100)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    if not (nf.DELAY_FROM_S * 1e3 <= args.latency_ms <= 1000) or not (1 <= args.reps <= 100):
        ap.error("--latency-ms from 0.5 to 1000, --reps from 1 to 100")
    if (why := unavailable() or nf.use_congestion_control(args.congestion_control)) is not None:
        print(f"idle_restart: {why}", file=sys.stderr)
        return 2
    ports = iter(range(26001, 28000))
    rows = []
    with Fabric(nf.star(RATE_BPS, args.latency_ms / 1e3)) as fabric:
        lat = hop_latency_s(fabric, "s", "r0")
        cc = args.congestion_control or congestion_control(fabric, "s")
        print(f"| {cc} | a hop {lat * 1e3:.2f} ms | load {os.getloadavg()[0]:.2f} |")
        print("| size | idle | measured | model, restart | model, no restart |\n|---|---|---|---|---|")
        for size in SIZES_BYTES:
            for idle in IDLES_S:
                trials = nf.measure_cell(fabric, ports, "fan-out", 1, size, args.reps, kept=True, idle_s=idle)
                hw = statistics.mean(t.took_s for t in trials)
                sim = {r: statistics.mean(simulated(lat, size, idle, args.reps, r)) for r in (True, False)}
                rows.append({"congestion_control": cc, "size_bytes": size, "idle_s": idle, "hw_mean_s": hw,
                             "sim_restart_s": sim[True], "sim_no_restart_s": sim[False],
                             "hop_latency_s": lat})  # fmt: skip
                err = {r: (sim[r] - hw) / hw * 100 for r in sim}
                print(f"| {size:,} B | {idle:g} s | {hw * 1e3:.2f} ms | {sim[True] * 1e3:.2f} ms ({err[True]:+.1f} %) "
                      f"| {sim[False] * 1e3:.2f} ms ({err[False]:+.1f} %) |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "argv": sys.argv[1:], "load_end": os.getloadavg()[0]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
