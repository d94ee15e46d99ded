"""How Linux's congestion control answers losses on a kept connection, traced in the kernel and set beside the model.

One connection from ``s`` to ``r0`` on ``bench/net_fidelity.py``'s star (two links a path, each ``--latency-ms``
through hw/delayline.py, ``--loss`` a link) carries a warm-up message, then ``--reps`` messages of ``--size`` bytes
back to back, while the kernel's ``tcp/tcp_probe`` (the sender's window and smoothed round trip at each
acknowledgement) and ``tcp/tcp_cong_state_set`` (its recoveries) are traced. Printed: the window's time-weighted mean,
the round trip, recoveries a message, the window's growth a round trip between losses, and its profile after a
recovery, round trip by round trip; then the model's mean message time over the same links (sim/congestion.py).
Needs root and tracefs. Stop 88 (docs/network-validation.md): 1 MB at 1 % loss, the window 6.6 packets, standing for
3-5 round trips after each recovery, 0.36-0.38 packet a round trip between losses.
Run: python bench/cubic_trace.py [--size 1000000] [--loss 0.01] [--reps 10] [--latency-ms 3] [--congestion-control CC]
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import net_fidelity as nf

from hw.netns import Fabric, hop_latency_s, unavailable
from sim.scenario import Transport

TRACING = Path("/sys/kernel/tracing")
EVENTS = ("tcp_probe", "tcp_cong_state_set")
OPEN, RECOVERY, LOSS = 0, 3, 4  # TCP_CA_Open, TCP_CA_Recovery, TCP_CA_Loss
PROBE = re.compile(r"\s(\d+\.\d+): tcp_probe: .*snd_cwnd=(\d+) ssthresh=\d+ .*srtt=(\d+) .*sock_cookie=(\w+)")
STATE = re.compile(r"\s(\d+\.\d+): tcp_cong_state_set: .*cong_state=(\d)")


class Sample(NamedTuple):
    """A traced event: its time (s), and the sender's window (packets) and smoothed round trip (s), or the
    connection's new congestion state (``state``; window and round trip 0)."""

    at_s: float
    cwnd: int
    srtt_s: float
    state: int | None = None


def parse(text: str) -> list[Sample]:
    """The trace's events of the sender: the socket with the fewest probes (the sender sees one acknowledgement for
    every two packets the receiver's socket sees), and every congestion state change."""
    probes: dict[str, list[Sample]] = defaultdict(list)
    states: list[Sample] = []
    for line in text.splitlines():
        if m := PROBE.search(line):
            probes[m[4]].append(Sample(float(m[1]), int(m[2]), int(m[3]) / 1e6))
        elif m := STATE.search(line):
            states.append(Sample(float(m[1]), 0, 0.0, int(m[2])))
    if not probes:
        return []
    sender = min(probes, key=lambda cookie: len(probes[cookie]))
    return sorted([*probes[sender], *states])


class Summary(NamedTuple):
    cwnd_mean: float  # packets, time-weighted
    srtt_s: float
    recoveries_per_message: float
    growth_per_rtt: float  # packets a round trip, from a recovery's end to the next loss
    profile: list[float]  # the window above its value at a recovery's end, round trip by round trip since


def summary(samples: list[Sample], messages: int, gap_s: float = 0.1) -> Summary:
    """The window's time-weighted mean (spans over ``gap_s`` left out: between messages), the mean round trip,
    recoveries a message, growth a round trip over the periods from a recovery's end to the next one, and the window
    above its value at a recovery's end, by round trips since (``profile``)."""
    probes = [s for s in samples if s.state is None]
    spans = [(b.at_s - a.at_s, a.cwnd) for a, b in itertools.pairwise(probes) if b.at_s - a.at_s < gap_s]
    rtt_s = statistics.mean(s.srtt_s for s in probes)
    recoveries, grown, periods = 0, 0.0, 0.0
    profile: dict[int, list[int]] = defaultdict(list)
    state, start, base, last = OPEN, None, None, 0
    for s in samples:
        if s.state is None:
            if start is not None:
                base = s.cwnd if base is None else base
                profile[int((s.at_s - start) / rtt_s)].append(s.cwnd - base)
            last = s.cwnd
            continue
        recoveries += s.state == RECOVERY and state != RECOVERY
        if s.state != OPEN and start is not None:  # a period between losses ends (disorder comes first)
            if base is not None:
                grown, periods = grown + last - base, periods + (s.at_s - start) / rtt_s
            start = None
        if s.state == OPEN and state in (RECOVERY, LOSS):
            start, base = s.at_s, None
        state = s.state
    return Summary(
        sum(d * c for d, c in spans) / sum(d for d, _ in spans), rtt_s, recoveries / messages,
        grown / periods if periods else float("nan"), [statistics.mean(profile[k]) for k in range(16) if profile[k]],
    )  # fmt: skip


def traced(size: int, loss: float, reps: int, latency_s: float, cc: str) -> tuple[str, list[float], float]:
    """The trace's text, each message's time and the hop's latency, measured on a fresh fabric."""
    nf.CONGESTION = cc
    with Fabric(nf.star(100e6, latency_s, loss=loss), congestion_control=cc) as fabric:
        lat = hop_latency_s(fabric, "s", "r0")
        ports = itertools.count(23001)
        conns = nf.connections(fabric, ports, "fan-out", 1)
        try:
            nf.measure(fabric, ports, "fan-out", 1, size, conns)  # the warm-up
            (TRACING / "trace").write_text("")
            for event in EVENTS:
                (TRACING / "events/tcp" / event / "enable").write_text("1")
            was_on = (TRACING / "tracing_on").read_text().strip()
            (TRACING / "tracing_on").write_text("1")
            try:
                took = [nf.measure(fabric, ports, "fan-out", 1, size, conns)[0].took_s for _ in range(reps)]
            finally:
                (TRACING / "tracing_on").write_text(was_on)
                for event in EVENTS:
                    (TRACING / "events/tcp" / event / "enable").write_text("0")
        finally:
            for pair in conns:
                for sock in pair:
                    sock.close()
    return (TRACING / "trace").read_text(), took, lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="bytes a message (default 1,000,000)")
    ap.add_argument("--loss", type=float, default=0.01, help="each link's loss (default 0.01)")
    ap.add_argument("--reps", type=int, default=10, help="messages traced (default 10)")
    ap.add_argument("--latency-ms", type=float, default=3.0, help="each link's delay (default 3 ms)")
    ap.add_argument("--congestion-control", default="cubic", choices=("cubic", "reno", "bbr"), help="the sender's")
    args = ap.parse_args()
    if not (1 <= args.size <= 100_000_000 and 0 <= args.loss < 0.5 and 1 <= args.reps <= 1000
            and 0.5 <= args.latency_ms <= 1000):  # fmt: skip
        ap.error("--size 1-100,000,000, --loss 0-0.5, --reps 1-1000, --latency-ms 0.5-1000")
    if (why := unavailable()) is not None or not (TRACING / "events/tcp/tcp_probe").exists():
        print(f"cubic_trace: needs the netns backend and tracefs: {why or 'no tcp_probe trace event'}", file=sys.stderr)
        return 2
    text, took, lat = traced(args.size, args.loss, args.reps, args.latency_ms / 1e3, args.congestion_control)
    samples = parse(text)
    if not samples:
        print("cubic_trace: the trace holds no tcp_probe event of the connection", file=sys.stderr)
        return 1
    s = summary(samples, args.reps)
    transport = Transport(congestion_control=args.congestion_control)
    model = nf.simulate_trials(nf.star(100e6, lat, loss=args.loss), transport, "fan-out", 1, args.size, 0,
                               [None] * args.reps, kept=True)  # fmt: skip
    print(f"measured: {statistics.mean(took) * 1e3:.1f} ms a message ({args.reps}), model (one seed): "
          f"{statistics.mean(t[0] for t in model) * 1e3:.1f} ms")  # fmt: skip
    print(f"window {s.cwnd_mean:.1f} packets (time-weighted), srtt {s.srtt_s * 1e3:.2f} ms, "
          f"{s.recoveries_per_message:.1f} recoveries a message, {s.growth_per_rtt:.3f} packet a round trip "
          f"between losses")  # fmt: skip
    print("after a recovery, by round trip: " + " ".join(f"{p:+.2f}" for p in s.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
