"""A kept connection's next message after an idle spell: measured over real TCP and simulated (issue 18).

Linux restarts an idle connection's window from the initial one, halved once a retransmission timeout idle
(``tcp_cwnd_restart``, ``net.ipv4.tcp_slow_start_after_idle``), for the congestion controls that leave the window to
TCP (CUBIC, Reno); BBR keeps its own. The model does the same (sim/congestion.py, ``Transport.restart_after_idle``).
Here one connection from ``s`` to ``r0`` on ``bench/net_fidelity.py``'s star (two links a path, each delayed by
``--latency-ms`` through hw/delayline.py) carries a message of each size once (a warm-up), then ``--reps`` more, each
after ``IDLE`` seconds of silence; the model carries the same sequence with the restart and without it. Needs root.
``--rate-mbit``, ``--jitter-ms``, ``--loss``, ``--sizes`` and ``--idles`` give other links and spells: the twin's Wi-Fi
cells carry a 1 MB model a round over 77 Mbit/s links of 3 ms, 1 ms jitter and 0.1 % loss, idle ~0.8 s between (a lossy
cell's model is the mean of ``SEEDS`` runs).
Run: python bench/idle_restart.py [--congestion-control cubic] [--latency-ms 5] [--reps 4] [--rate-mbit 100]
[--jitter-ms 0] [--loss 0] [--sizes B ...] [--idles S ...] [--json FILE]
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
from sim.contract import modelled_congestion_control
from sim.network import Network
from sim.scenario import Transport

RATE_BPS = 100e6
SIZES_BYTES = (65536, 1_000_000)
IDLES_S = (0.05, 0.6, 3.0)  # under one timeout (~0.22 s here), two, and enough to reach the initial window


SEEDS = 8  # a lossy or jittered link's model: the mean over this many runs


def simulated(latency_s: float, size: int, idle_s: float, reps: int, restart: bool, rate_bps: float = RATE_BPS,
              jitter_s: float = 0.0, loss: float = 0.0, cc: str = "cubic", seed: int = 0) -> list[float]:  # fmt: skip
    """The model's time for each of ``reps`` messages of ``size`` bytes, each after ``idle_s`` of silence on a
    connection warmed by one message (links of ``latency_s`` each at ``rate_bps``, ``jitter_s`` and ``loss``)."""
    g = nf.star(rate_bps, latency_s, loss=loss, jitter_s=jitter_s)  # the fabric's bucket
    hosts = frozenset(n for n, kind in g.nodes(data="kind") if kind == "host")
    env = simpy.Environment()
    modelled = modelled_congestion_control(cc) or "cubic"
    t = Transport(share_sigma=0, restart_after_idle=restart, congestion_control=modelled)  # type: ignore[arg-type]
    net = Network(env, g, np.random.SeedSequence(seed), nf.SEGMENT_BYTES, t, hosts)
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


def model_mean_s(args: argparse.Namespace, link_s: float, size: int, idle: float, restart: bool, cc: str) -> float:
    """The model's mean message time over ``SEEDS`` runs (one where the links neither lose nor jitter)."""
    seeds = SEEDS if args.loss or args.jitter_ms else 1
    return statistics.mean(
        t
        for k in range(seeds)
        for t in simulated(
            link_s, size, idle, args.reps, restart, args.rate_mbit * 1e6, args.jitter_ms / 1e3, args.loss, cc, k
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--congestion-control", default=None, help="the sending sockets' (default: the machine's)")
    ap.add_argument("--latency-ms", type=float, default=5.0, help="each link's delay (0.5-1000 ms)")
    ap.add_argument("--reps", type=int, default=4, help="messages after each idle spell (1-100)")
    ap.add_argument("--rate-mbit", type=float, default=RATE_BPS / 1e6, help="each link's rate (1-1000 Mbit/s)")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="each link's mean jitter (0-100 ms)")
    ap.add_argument("--loss", type=float, default=0.0, help="each link's loss (0-0.1)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES_BYTES), help="message sizes (1 kB-16 MB)")
    ap.add_argument("--idles", type=float, nargs="+", default=list(IDLES_S), help="idle spells (0-10 s)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    if not (nf.DELAY_FROM_S * 1e3 <= args.latency_ms <= 1000) or not (1 <= args.reps <= 100):
        ap.error("--latency-ms from 0.5 to 1000, --reps from 1 to 100")
    if not (1 <= args.rate_mbit <= 1000 and 0 <= args.jitter_ms <= 100 and 0 <= args.loss <= 0.1):
        ap.error("--rate-mbit from 1 to 1000, --jitter-ms from 0 to 100, --loss from 0 to 0.1")
    if not all(1000 <= b <= 16 << 20 for b in args.sizes) or not all(0 <= i <= 10 for i in args.idles):
        ap.error("--sizes from 1,000 to 16,777,216 bytes, --idles from 0 to 10 s")
    if (why := unavailable() or nf.use_congestion_control(args.congestion_control)) is not None:
        print(f"idle_restart: {why}", file=sys.stderr)
        return 2
    ports = iter(range(26001, 28000))
    rows = []
    star = nf.star(args.rate_mbit * 1e6, args.latency_ms / 1e3, loss=args.loss, jitter_s=args.jitter_ms / 1e3)
    with Fabric(star) as fabric:
        lat = hop_latency_s(fabric, "s", "r0")
        link_s = lat - nf.ping_jitter_s(args.jitter_ms / 1e3)  # the hop's measured latency holds its jitter
        cc = args.congestion_control or congestion_control(fabric, "s")
        print(f"| {cc} | a hop {lat * 1e3:.2f} ms | {args.rate_mbit:g} Mbit/s, jitter {args.jitter_ms:g} ms, loss "
              f"{args.loss:g} | load {os.getloadavg()[0]:.2f} |")  # fmt: skip
        print("| size | idle | measured | model, restart | model, no restart |\n|---|---|---|---|---|")
        for size in args.sizes:
            for idle in args.idles:
                trials = nf.measure_cell(fabric, ports, "fan-out", 1, size, args.reps, kept=True, idle_s=idle)
                took = [t.took_s for t in trials]
                hw = statistics.mean(took)
                sim = {r: model_mean_s(args, link_s, size, idle, r, cc) for r in (True, False)}
                rows.append({"congestion_control": cc, "size_bytes": size, "idle_s": idle, "hw_mean_s": hw,
                             "sim_restart_s": sim[True], "sim_no_restart_s": sim[False], "hop_latency_s": lat,
                             "hw_took_s": took, "rate_bps": args.rate_mbit * 1e6, "jitter_s": args.jitter_ms / 1e3,
                             "loss": args.loss})  # fmt: skip
                err = {r: (sim[r] - hw) / hw * 100 for r in sim}
                print(f"| {size:,} B | {idle:g} s | {hw * 1e3:.2f} ms | {sim[True] * 1e3:.2f} ms ({err[True]:+.1f} %) "
                      f"| {sim[False] * 1e3:.2f} ms ({err[False]:+.1f} %) |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "argv": sys.argv[1:], "load_end": os.getloadavg()[0]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
