"""Network model against real TCP (issue 18): completion times of concurrent flows, measured and simulated.

The network is a star, as the paper's three Pis on one switch: a host ``s`` and eight hosts ``r0..r7`` on a
switch, every link at one rate. It is built for real with ``hw.netns.Fabric`` (a namespace per host and
for the switch, veth pairs, ``tbf`` at the rate on each direction's egress, its bucket ``hw.netns.tbf_burst_bytes``)
and in the simulator (``sim.network.Network`` with the scenario's ``Transport``, the links given the same bucket:
``burst_bytes``). Two patterns: fan-out (``s`` sends to k
hosts at once, as the aggregator distributes a model) and fan-in (k hosts send to ``s`` at once, as clients
upload). Each flow is one message of the cell's size on its own TCP connection, opened beforehand (new for each
repetition; with ``--kept-connections`` one set a cell, warmed up by a trial not timed, as the twin's nodes keep
theirs); all start at one instant (a barrier), each sender's start is recorded, and a flow completes when its
last bytes reach the receiving kernel (the kernel's receive timestamp: the receiving thread wakes to them tens
of us to 1.5 ms later, the host's scheduling, not the network's). The simulator starts each flow when its sender
did in a measured trial, on that trial's clock: the senders are threads of one Python process on this machine's
two vCPUs, which begin up to ~0.4 ms apart for four flows and ~1 ms for eight, as long as a 64 KiB message takes
at a gigabit, and the first ones finish early (docs/network-validation.md, "Stop 60"). Before each pattern's
cells, a trial not timed carries a 64 KiB message on each of its paths (``warm_up``: a fresh path's first data is
slow). The fabric's base latency
(no shaping delay: veth, bridges and the stack) is measured with 1-byte TCP ping-pongs and given to the simulator as
the links' latency; and, once before the matrix, what the machine's kernel moves of one TCP stream across a fabric
whose links limit nothing (``kernel_rate_bps``) is the simulated transport's ``host_rate_bps`` -- every host of
the star is a namespace of one machine, so one kernel sends for all of them. Those are the figures the model
takes from the machine.

Per cell (pattern x flows x size x rate): measured mean and p95 of completion time over every flow of
``--reps`` repetitions, simulated mean and p95 (over ``SIM_SEEDS`` seeds pooled, more until the model's mean is
known to ``SIM_SE_PCT`` %: the model draws each message a share weight), and the errors
(simulated - measured) / measured for the validated model (``fair``: the default) and for the model before
the validation (``fifo``, no headers, segments stored and forwarded whole). Goal: |mean error| <= 5 % and
|p95 error| <= 10 % in every cell. ``--loss P ...`` runs the matrix at each link loss probability P (default
0 alone): the fabric drops each frame on each link direction with probability P where it arrives (an nftables
rule, hw/nftloss.py; a lossy link carries frames, not GSO packets: ``hw.netns.LOSSY_GSO_MAX_SEGS``), the
simulator draws its own losses (a lost segment is sent again: ``sim/network.py``), its runs pooled as above.
Needs root. The machine's load average is recorded at the start and end of each rate's block, and the hosts'
TCP congestion control (the machine's default) with each cell: it decides which pattern shares unfairly. Each
rate's block first measures one stream's throughput (``hw.netns.probe_clean``); where it falls short of the rate the
fabric is CPU-bound (the kernel's veth, bridge and tbf work per byte; at a gigabit on two vCPUs before its bucket
held a GSO packet) and its cells are counted apart: they measure the machine as much as TCP.
Run: python bench/net_fidelity.py [--quick | --rates MBIT ...] [--reps N] [--loss 0 0.01] [--congestion-control cubic]
     [--kept-connections] [--json FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import networkx as nx
import numpy as np
import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw import tcp
from hw.delayline import ANCILLARY_BYTES, SO_TIMESTAMPNS, kernel_time_s
from hw.netns import (
    DELAY_FROM_S,
    FRAME_BYTES,
    KERNEL_PROBE_BPS,
    Fabric,
    hop_latency_s,
    inside,
    kernel_rate_bps,
    probe_clean,
    tbf_burst_bytes,
    unavailable,
)
from sim.contract import FabricProbe, modelled_congestion_control
from sim.loading import in_range, out_json
from sim.network import Network
from sim.scenario import MAX_BURST_BYTES, LinkParams, Transport

KIB = 1024
SIZES_BYTES = (64 * KIB, 1_000_000, 4_000_000)
RATES_BPS = (10e6, 100e6, 1e9)
FLOWS = (1, 2, 4, 8)
PATTERNS = ("fan-out", "fan-in")
TCP_INFO_TOTAL_RETRANS = struct.Struct("I")  # at byte 100 of struct tcp_info (include/uapi/linux/tcp.h)
TCP_INFO_TOTAL_RTO = struct.Struct("H")  # tcpi_total_rto at byte 240: Linux 6.7 on (shorter structs have none)
HOSTS = 8
WARM_UP_BYTES = 64 * 1024  # each path's message before a pattern's cells (``warm_up``)
SEGMENT_BYTES = 65536  # run.segment_bytes' default
GOAL_MEAN_PCT, GOAL_P95_PCT = 5.0, 10.0
SIM_SEEDS = 50  # simulated runs of a cell (its share weights and losses are random; with neither: one)
# ... and more, a batch at a time, until the pooled runs' mean flow time is known to this standard error (% of
# it), or up to SIM_SEEDS_MAX: on a lossy link 1-3 % of flows wait a 0.2 s timer, and 50 runs of a 64 KiB flow at
# 100 Mbit/s held 3 such (the model's mean 15.4 ms where its rate of them, 2.3 % in 400 runs, gives 9.9)
SIM_SE_PCT = 2.0
SIM_SEEDS_MAX = 2000
PREDICTIVE_SAMPLES = 2000  # samples of the model's runs a measured cell is placed among (``predictive``)
CONSISTENT_QUANTILES = (0.025, 0.975)  # a measured bulk, mean or p95 within these of the model's samples passes


class Trial(NamedTuple):
    """A flow of a measured trial: when its last bytes reached the receiving kernel, segments its sender sent again,
    the times its retransmission timer fired (None: the kernel does not count them), when its sender began to send
    and when its receiving thread woke with the last bytes (s, on the trial's clock)."""

    took_s: float
    resent: int
    timeouts: int | None
    started_s: float
    woke_s: float


def star(rate_bps: float, latency_s: float = 0.0, loss: float = 0.0, burst_bytes: int | None = None,
         jitter_s: float = 0.0) -> nx.Graph:  # fmt: skip
    """The bench's star; its links' bucket ``burst_bytes``, else the fabric's (``tbf_burst_bytes``)."""
    burst = tbf_burst_bytes(rate_bps) if burst_bytes is None else burst_bytes
    g = nx.Graph()
    g.add_node("sw", kind="switch")
    for h in ("s", *(f"r{i}" for i in range(HOSTS))):
        g.add_node(h, kind="host")
        params = LinkParams(
            bandwidth_bps=rate_bps, latency_s=latency_s, jitter_s=jitter_s, loss=loss, burst_bytes=burst
        )  # the fabric's bucket, in both
        g.add_edge(h, "sw", params=params)
    return g


# --- measured ------------------------------------------------------------------------------------------------


def listener(fabric: Fabric, host: str, port: int) -> socket.socket:
    with inside(fabric.namespace(host)):
        return tcp.listener((fabric.address(host), port), CONGESTION or "")


# how long a sender waits for its receiver's answer byte: on a new connection the receiver's side may have no
# round-trip sample yet, so a lost answer waits TCP's initial timeout (1 s; 3 s after a lost SYN), doubled at each
# further loss (two links at 5 % lose a packet 9.75 % of the time): 2.5 and 4.3 s in 300 trials here (2026-12-05,
# bench/loss_tails.py), past the dialled socket's 30 s once in a CI run (4-5 losses in a row); 120 s takes 6-7
ANSWER_S = 120.0
DIAL_S = 30.0  # a dialled socket's timeout for its connect and sends


CONGESTION: str | None = None  # --congestion-control: every dialled (sending) socket's; None: the machine's default


def dial(fabric: Fabric, src: str, dst: str, port: int) -> socket.socket:
    with inside(fabric.namespace(src)):
        s = tcp.dial((fabric.address(dst), port), CONGESTION or "", timeout_s=DIAL_S)  # from its handshake on
    s.settimeout(DIAL_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def connect(fabric: Fabric, src: str, dst: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A new TCP connection from host ``src`` to ``dst`` on ``port``: (sender's socket, receiver's socket)."""
    ls = listener(fabric, dst, port)
    snd = dial(fabric, src, dst, port)
    rcv, _ = ls.accept()
    ls.close()
    return snd, rcv


def connections(fabric: Fabric, ports: Iterator[int], pattern: str, flows: int) -> list[tuple[socket.socket, ...]]:
    """A new connection per flow of the pattern: (sender's socket, receiver's socket) each."""
    pairs = [("s", f"r{i}") if pattern == "fan-out" else (f"r{i}", "s") for i in range(flows)]
    return [connect(fabric, src, dst, next(ports)) for src, dst in pairs]


def measure(fabric: Fabric, ports: Iterator[int], pattern: str, flows: int, size: int,
            kept: list[tuple[socket.socket, ...]] | None = None) -> list[Trial]:  # fmt: skip
    """One trial: ``flows`` messages of ``size`` bytes at once; each flow's ``Trial``, on the trial's clock (its
    start is 0). A flow completes when its last bytes reached the receiving kernel (the time the kernel stamped on
    them, ``SO_TIMESTAMPNS``: the network's doing), not when the receiving thread woke to read them (37 us later at
    the median here, up to 1.5 ms: the host's scheduling). On new connections, closed after it; or on ``kept`` ones
    (``connections``), left open for the next trial."""
    conns = kept or connections(fabric, ports, pattern, flows)
    woke, started = [0.0] * flows, [0.0] * flows  # on CLOCK_REALTIME: the kernel stamps it
    stamped: list[float | None] = [None] * flows
    before = [recovery(s) for s, _ in conns]  # a kept connection's counts so far: the trial's are the growth
    again: list[tuple[int, int | None]] = [(0, None)] * flows  # each sender's own, once its flow is done
    go = threading.Barrier(2 * flows + 1)
    payload = b"\x00" * size

    def send(i: int, s: socket.socket) -> None:
        go.wait()
        started[i] = time.time()
        s.sendall(payload)
        s.settimeout(ANSWER_S)
        s.recv(1)  # the receiver's ack: the connection stays open until the flow is done
        s.settimeout(DIAL_S)
        (resent, timeouts), (resent0, timeouts0) = recovery(s), before[i]
        again[i] = (resent - resent0, None if timeouts is None or timeouts0 is None else timeouts - timeouts0)

    def receive(i: int, r: socket.socket) -> None:
        buf = bytearray(1 << 20)
        r.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        go.wait()
        got, last = 0, None
        while got < size:
            n, anc, _, _ = r.recvmsg_into([buf], ANCILLARY_BYTES)
            if not n:
                break
            got += n
            last = kernel_time_s(anc)  # TCP stamps a read with its last segment's arrival; the last read's decides
        woke[i] = time.time()
        stamped[i] = last
        r.sendall(b"k")

    threads = [threading.Thread(target=send, args=(i, s)) for i, (s, _) in enumerate(conns)]
    threads += [threading.Thread(target=receive, args=(i, r)) for i, (_, r) in enumerate(conns)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.time()
    for t in threads:
        t.join(600)
    if kept is None:
        for pair in conns:
            for sock in pair:
                sock.close()
    # a last read without a stamp, or with one outside the trial: the time the reading thread woke
    done = [a if a is not None and t0 - 1.0 <= a <= w else w for a, w in zip(stamped, woke, strict=True)]
    return [Trial(d - t0, k, n, b - t0, w - t0) for d, (k, n), b, w in zip(done, again, started, woke, strict=True)]


def recovery(sock: socket.socket) -> tuple[int, int | None]:
    """How a connection has recovered its losses so far: the segments it sent again (``tcpi_total_retrans`` of
    Linux's ``struct tcp_info``) and the times its retransmission timer fired (``tcpi_total_rto``; None before
    Linux 6.7). A loss the receiver's later packets reveal is resent without the timer: one it does not costs
    the timer's minimum (the model's ``Transport.rto_min_s``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    timeouts = TCP_INFO_TOTAL_RTO.unpack_from(info, 240)[0] if len(info) >= 240 + TCP_INFO_TOTAL_RTO.size else None
    return int(TCP_INFO_TOTAL_RETRANS.unpack_from(info, 100)[0]), timeouts


def warm_up(fabric: Fabric, ports: Iterator[int], pattern: str) -> None:
    """A trial not timed on every path of ``pattern`` (one 64 KiB message each way the pattern sends): the first data
    a fresh fabric carries on a path is slow (at a gigabit, a 64 KiB message's first repetition 0.34-0.43 ms where
    the next ones 0.15-0.32), which a model of the network has no reason to show."""
    measure(fabric, ports, pattern, HOSTS, WARM_UP_BYTES)


def measure_cell(fabric: Fabric, ports: Iterator[int], pattern: str, flows: int, size: int, reps: int,
                 kept: bool, idle_s: float = 0.0) -> list[Trial]:  # fmt: skip
    """``reps`` trials, each flow's ``Trial`` one after the other: each trial on
    new connections, or (``kept``) all on one set opened for the cell, after a trial not timed (as the twin's nodes
    keep theirs, warm: the window and the loss timer are a kept connection's, not a new one's first flight), each
    trial after ``idle_s`` of silence (bench/idle_restart.py)."""
    if not kept:
        return [t for _ in range(reps) for t in measure(fabric, ports, pattern, flows, size)]
    conns = connections(fabric, ports, pattern, flows)

    def trial() -> list[Trial]:
        time.sleep(idle_s)
        return measure(fabric, ports, pattern, flows, size, conns)

    try:
        measure(fabric, ports, pattern, flows, size, conns)  # the warm-up
        return [t for _ in range(reps) for t in trial()]
    finally:
        for pair in conns:
            for sock in pair:
                sock.close()


# --- simulated -----------------------------------------------------------------------------------------------


def simulate(graph: nx.Graph, transport: Transport | None, pattern: str, flows: int, size: int,
             seed: int = 0, started_s: list[float] | None = None, kept: bool = False) -> list[float]:  # fmt: skip
    """The same flows in the simulator, each begun when its sender began in a measured trial (``started_s``; none:
    all at 0), the times on that trial's clock; ``transport`` None is the model before the validation. ``kept``:
    on connections that carried the cell's flows once before (``measure_cell``'s warm-up), back to back: the model's
    connections keep their windows (sim/congestion.py)."""
    return simulate_trials(graph, transport, pattern, flows, size, seed, [started_s], kept)[0]


def simulate_trials(graph: nx.Graph, transport: Transport | None, pattern: str, flows: int, size: int, seed: int,
                    trials: list[list[float] | None], kept: bool) -> list[list[float]]:  # fmt: skip
    """``simulate``'s trials in turn in one network, each once the one before it is in: on one set of connections
    (``kept``, after a warm-up), as ``measure_cell`` measures them, so each trial finds the windows the trials before
    it left (a CUBIC window that a loss cut stays cut for the next message), else each trial's flows on new
    connections."""
    env = simpy.Environment()
    hosts = frozenset(n for n, kind in graph.nodes(data="kind") if kind == "host")  # namespaces of one VM: one kernel
    net = Network(env, graph, np.random.SeedSequence(seed), SEGMENT_BYTES, transport, hosts)
    pairs = [("s", f"r{i}") if pattern == "fan-out" else (f"r{i}", "s") for i in range(flows)]
    carry = net.transfer if transport is None else net.transfer_tcp
    if kept:
        for src, dst in pairs:
            env.process(carry(src, dst, size))
        env.run()
    out = []
    for started in trials:
        if not kept:
            net.connections.clear()  # new connections: each from TCP's initial window
        out.append(_trial(env, carry, pairs, size, started or [0.0] * flows))
    return out


def _trial(env: simpy.Environment, carry: Any, pairs: list[tuple[str, str]], size: int,
           started_s: list[float]) -> list[float]:  # fmt: skip
    """One trial's flows, begun as its senders began (SimPy from now; a sender may pass the trial's barrier before
    the clock is read), run to their end: each flow's time on the trial's clock."""
    first, t0, done = min(started_s), env.now, [0.0] * len(pairs)

    def flow(i: int, src: str, dst: str) -> Any:
        if started_s[i] > first:
            yield env.timeout(started_s[i] - first)
        yield from carry(src, dst, size)
        done[i] = env.now - t0 + first

    for i, (src, dst) in enumerate(pairs):
        env.process(flow(i, src, dst))
    env.run()
    return done


# --- the matrix ----------------------------------------------------------------------------------------------


def model_runs(graph: nx.Graph, transport: Transport | None, pattern: str, flows: int, size: int,
               trials: list[list[float] | None], random: bool, kept: bool = False) -> list[list[float]]:  # fmt: skip
    """``simulate`` once a seed, the seeds taking the trials' starts in turn: where the model draws at random (share
    weights, losses), ``SIM_SEEDS`` runs pooled (as many for each trial), then as many again until the mean of the
    runs' mean flow times has a standard error of at most ``SIM_SE_PCT`` % of it or ``SIM_SEEDS_MAX`` runs are
    pooled; else one run a trial."""

    def seeds(first: int, end: int) -> list[list[float]]:
        if kept:  # a seed's run carries every trial in turn on its connections, as they were measured
            runs = [r for i in range(first, end, len(trials))
                    for r in simulate_trials(graph, transport, pattern, flows, size, i, trials, kept)]  # fmt: skip
            return runs[: end - first]
        return [simulate(graph, transport, pattern, flows, size, i, trials[i % len(trials)], kept)
                for i in range(first, end)]  # fmt: skip

    batch = len(trials) * (math.ceil(SIM_SEEDS / len(trials)) if random else 1)
    runs = seeds(0, batch)  # the first batch whole: one run a trial at least
    while random and len(runs) < SIM_SEEDS_MAX and _se_pct(runs) > SIM_SE_PCT:
        runs += seeds(len(runs), min(len(runs) + batch, SIM_SEEDS_MAX))
    return runs


def _se_pct(runs: list[list[float]]) -> float:
    """The standard error of the mean of the runs' mean flow times, in % of it."""
    per_run = np.asarray(runs, dtype=float).mean(axis=1)
    return float(per_run.std(ddof=1) / math.sqrt(per_run.size) / per_run.mean() * 100)


def ping_jitter_s(jitter_s: float, hops: int = 2) -> float:
    """What a jittered path adds to ``hop_latency_s`` (a ping-pong's median round trip over ``hops`` links, halved, per
    link): the median of the 2 * hops exponential draws of mean ``jitter_s`` its two bytes crossed (a gamma's, k - 1/3
    + 8 / (405 k) times the mean), per link and way; 0.92 ms over the bench's two 1 ms links. The model draws the
    jitter itself: left in the latency, it was counted twice (~3.7 ms more a round trip of ~20)."""
    k = 2 * hops
    return jitter_s * (k - 1 / 3 + 8 / (405 * k)) / k if jitter_s else 0.0


def cell_of(pattern: str, flows: int, size: int, rate: float, loss: float, lat: float, measured: list[float],
            burst: int, transport: Transport, started: list[float] | None = None,
            kept: bool = False, jitter_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """A cell: the measured flows' times against the same flows simulated (the model, and the one before it) on
    links with the fabric's bucket ``burst``, each simulated run's flows begun as one measured trial's senders
    began (``started``, flow by flow as ``measured``; the trials in turn), or all at once (matrices from before
    the bench measured when each sender began); ``jitter_s``: every link's (its delay hops')."""
    link_s = lat - ping_jitter_s(jitter_s)  # the hop's latency measured holds its jitter, which the model draws
    graph, before = star(rate, link_s, loss, burst, jitter_s), star(rate, 0, loss, burst)  # the model, the one before
    trials = [started[k : k + flows] for k in range(0, len(started), flows)] if started else [None]
    runs = model_runs(graph, transport, pattern, flows, size, trials, bool(loss or transport.share_sigma), kept)
    fair = [t for run in runs for t in run]
    fifo = [t for run in model_runs(before, None, pattern, flows, size, trials, bool(loss)) for t in run]
    (hm, hp), (sm, sp), (fm, fp) = stats(measured), stats(fair), stats(fifo)
    return {"pattern": pattern, "flows": flows, "size_bytes": size, "rate_bps": rate, "loss": loss,
            "hw_mean_s": hm, "hw_p95_s": hp, "sim_mean_s": sm, "sim_p95_s": sp,
            "error_mean_pct": pct(sm, hm), "error_p95_pct": pct(sp, hp),
            "fifo_error_mean_pct": pct(fm, hm), "fifo_error_p95_pct": pct(fp, hp),
            "base_latency_s": lat, "measured_s": measured, "burst_bytes": burst, "started_s": started,
            "predictive": predictive(runs, measured, flows)}  # fmt: skip


def predictive(model_runs: list[list[float]], measured: list[float], flows: int) -> dict[str, Any] | None:
    """Where the measured bulk, mean and p95 fall among what the model says a sample of that size reads: the
    model's runs (one per seed, ``flows`` times each) drawn with replacement into ``PREDICTIVE_SAMPLES`` samples of
    as many repetitions as were measured, each sample's bulk (the median over its repetitions of each one's mean
    flow), mean and p95 (as ``stats`` takes them), and the measured figure's place among them (mid-rank quantile,
    0.5 at the samples' median). Each within ``CONSISTENT_QUANTILES`` or within its goal (bulk and mean
    ±``GOAL_MEAN_PCT`` %, p95 ±``GOAL_P95_PCT`` %: the model's spread has none of the host's noise, so a lossless
    cell's is narrower than any measurement's): *consistent*, the measurement is one the model could well have
    given -- the test that still judges a cell whose sample cannot show ±5 % (on a lossy link a few flows wait a
    0.2 s timer: two repetitions either miss them all or catch one). The bulk is there because where timers make
    the mean's and p95's spread, flows 30 % slower than the model's still sit inside it. Not the flows' median: a
    cell's flows end in k groups, and the median of an even number of them falls between two; a repetition's mean
    is one number, and a timer meets a minority of them.
    ``reps_for_goal``: repetitions for the mean's 95 % interval to be ±``GOAL_MEAN_PCT`` % wide, by the spread of
    the model's runs. None where the model made one run (no spread)."""
    if len(model_runs) < 2 or not measured:
        return None
    runs = np.asarray(model_runs, dtype=float)
    reps = max(1, len(measured) // flows)
    pick = np.random.default_rng(0).integers(0, len(runs), size=(PREDICTIVE_SAMPLES, reps))
    samples = runs[pick].reshape(PREDICTIVE_SAMPLES, -1)
    hm, hp = stats(measured)
    place = lambda sampled, x: float(((sampled < x).mean() + (sampled <= x).mean()) / 2)  # noqa: E731
    per_run = runs.mean(axis=1)
    # the bulk: the median over repetitions of each one's mean flow (measured: repetition after repetition)
    bulks = np.median(per_run[pick], axis=1)
    measured_bulk = float(np.median(np.asarray(measured[: reps * flows]).reshape(reps, -1).mean(axis=1)))
    q_bulk = place(bulks, measured_bulk)
    q_mean, q_p95 = place(samples.mean(axis=1), hm), place(np.percentile(samples, 95, axis=1), hp)
    error_bulk = pct(float(np.median(bulks)), measured_bulk)
    half_width = 1.96 * float(per_run.std(ddof=1)) / (GOAL_MEAN_PCT / 100 * float(per_run.mean()))
    sm, sp = stats(runs.ravel().tolist())
    low, high = CONSISTENT_QUANTILES
    figures = ((q_bulk, error_bulk, GOAL_MEAN_PCT), (q_mean, pct(sm, hm), GOAL_MEAN_PCT),
               (q_p95, pct(sp, hp), GOAL_P95_PCT))  # fmt: skip
    return {"reps": reps, "bulk_quantile": q_bulk, "error_bulk_pct": error_bulk, "mean_quantile": q_mean,
            "p95_quantile": q_p95, "consistent": all(low <= q <= high or abs(e) <= goal for q, e, goal in figures),
            "reps_for_goal": max(1, math.ceil(half_width**2))}  # fmt: skip


HEADER = (
    "| pattern | flows | size | rate | hw mean | hw p95 | sim mean | sim p95 | err mean | err p95 "
    "| fifo err mean |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(cell: dict[str, Any], cc: str) -> str:
    c = cell
    return (
        f"| {c['pattern']} | {c['flows']} | {c['size_bytes']:,} B | {c['rate_bps'] / 1e6:g} Mbit/s, loss "
        f"{c['loss']:g}, {cc} | {c['hw_mean_s'] * 1e3:.2f} ms | {c['hw_p95_s'] * 1e3:.2f} ms "
        f"| {c['sim_mean_s'] * 1e3:.2f} ms | {c['sim_p95_s'] * 1e3:.2f} ms | {c['error_mean_pct']:+.1f} % "
        f"| {c['error_p95_pct']:+.1f} % | {c['fifo_error_mean_pct']:+.1f} % |"
    )


def stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values)
    return float(a.mean()), float(np.percentile(a, 95))


def pct(sim: float, hw: float) -> float:
    return (sim - hw) / hw * 100


def _cpu_bound(fab: FabricProbe) -> bool:
    """One stream got less than 97 % of the rate: the kernel's per-byte work, not the shaper, set its pace."""
    return fab.throughput_bps < 0.97 * fab.rate_bps


def use_congestion_control(name: str | None) -> str | None:
    """Make ``name`` every sending socket's congestion control; why not, if it is not available here."""
    global CONGESTION
    if name is None:
        return None
    if (why := tcp.problem(name)) is not None:
        return why
    CONGESTION = name
    return None


def _report(cells: list[dict[str, Any]], losses: list[float]) -> list[bool]:
    """Print how many cells met the goal (in all, per loss, and where the fabric kept up); each cell's verdict."""
    ok = [abs(c["error_mean_pct"]) <= GOAL_MEAN_PCT and abs(c["error_p95_pct"]) <= GOAL_P95_PCT for c in cells]
    worst_mean = max(abs(c["error_mean_pct"]) for c in cells)
    worst_p95 = max(abs(c["error_p95_pct"]) for c in cells)
    fifo_worst = max(abs(c["fifo_error_mean_pct"]) for c in cells)
    print(f"\ncells within goal (|mean| <= {GOAL_MEAN_PCT:g} %, |p95| <= {GOAL_P95_PCT:g} %): {sum(ok)} of {len(ok)}; "
          f"worst |mean| {worst_mean:.1f} %, worst |p95| {worst_p95:.1f} % (the fifo model's worst |mean|: "
          f"{fifo_worst:.1f} %)")  # fmt: skip
    for loss in losses:
        mine = [o for o, c in zip(ok, cells, strict=True) if c["loss"] == loss]
        print(f"loss {loss:g}: {sum(mine)} of {len(mine)} cells within goal")
    for what, key in (
        ("rate", lambda c: f"{c['rate_bps'] / 1e6:g} Mbit/s"),
        ("size", lambda c: f"{c['size_bytes']:,} B"),
    ):
        groups: dict[str, list[bool]] = {}
        for o, c in zip(ok, cells, strict=True):
            groups.setdefault(key(c), []).append(o)
        print(f"by {what}: " + ", ".join(f"{k} {sum(v)} of {len(v)}" for k, v in groups.items()))
    mean_abs = sum(abs(c["error_mean_pct"]) for c in cells) / len(cells)
    print(f"mean |error of the mean| {mean_abs:.1f} %")
    _report_predictive(cells, ok)
    kept_up = [o for o, c in zip(ok, cells, strict=True) if not c["cpu_bound"]]
    if len(kept_up) < len(cells):
        print(f"on a fabric that carried one stream at its rate: {sum(kept_up)} of {len(kept_up)} cells within goal; "
              f"the other {len(cells) - len(kept_up)} ran where the machine's kernel could not (CPU-bound: they "
              "measure this machine as much as TCP)")  # fmt: skip
    return ok


def _report_predictive(cells: list[dict[str, Any]], ok: list[bool]) -> None:
    """The cells the model draws at random (loss, share weights): how many measured what the model says a sample
    of their size reads (``predictive``), per loss; which missed the goal and are not; and the repetitions a cell
    would need for its mean to show ±5 %."""
    judged = [(c, o) for c, o in zip(cells, ok, strict=True) if c.get("predictive")]
    if not judged:
        return
    central = CONSISTENT_QUANTILES[1] - CONSISTENT_QUANTILES[0]
    for loss in sorted({c["loss"] for c, _ in judged}):
        mine = [(c["predictive"], o) for c, o in judged if c["loss"] == loss]
        reps = sorted(p["reps_for_goal"] for p, _ in mine)
        print(
            f"loss {loss:g}: {sum(o or p['consistent'] for p, o in mine)} of {len(mine)} cells within goal or "
            f"measuring what the model says a sample of their size reads (bulk, mean and p95 each within goal or "
            f"the central {central:.0%} of its samples); ±{GOAL_MEAN_PCT:g} % on a mean needs "
            f"{reps[len(reps) // 2]} repetitions a cell (median; up to {reps[-1]}) by the model's spread"
        )
    off = [c for c, o in judged if not o and not c["predictive"]["consistent"]]
    if off:
        print(f"missing the goal and outside the model's spread ({len(off)}): " + "; ".join(map(_placed, off)))


def _placed(c: dict[str, Any]) -> str:
    p = c["predictive"]
    return (f"{c['pattern']} {c['flows']} x {c['size_bytes']:,} B at {c['rate_bps'] / 1e6:g} Mbit/s loss "
            f"{c['loss']:g} (bulk {p['error_bulk_pct']:+.1f} %, at the model's {p['bulk_quantile']:.1%}; "
            f"mean at {p['mean_quantile']:.1%}, p95 at {p['p95_quantile']:.1%})")  # fmt: skip


def transport_of(fields: list[str], prog: str = "net_fidelity", base: Transport | None = None) -> Transport | None:
    """``--transport FIELD=VALUE ...`` as a Transport (over ``base``'s fields, if given); None, having said what is
    wrong in one line, as ``prog``."""
    from pydantic import ValidationError

    if bad := [kv for kv in fields if "=" not in kv]:
        print(f"{prog}: --transport {bad[0]}: expected FIELD=VALUE (a field of sim.scenario.Transport)",
              file=sys.stderr)  # fmt: skip
        return None
    try:
        return Transport(**{**(base.model_dump() if base else {}), **dict(kv.split("=", 1) for kv in fields)})
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(map(str, e["loc"]))
        print(f"{prog}: --transport {where}: {e['msg']} (got {e.get('input')!r})", file=sys.stderr)
        return None


def _cell_key(c: dict[str, Any]) -> tuple[Any, ...]:
    """A measured cell's ``cell_of`` arguments, each within what this bench measures (ValueError naming the field
    otherwise: a matrix from elsewhere must not make the simulator run for hours or fail inside)."""
    finite = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    rules = {
        "pattern": c["pattern"] in PATTERNS,
        "flows": isinstance(c["flows"], int) and 1 <= c["flows"] <= HOSTS,
        "size_bytes": isinstance(c["size_bytes"], int) and 1 <= c["size_bytes"] <= max(SIZES_BYTES),
        "rate_bps": finite(c["rate_bps"]) and min(RATES_BPS) <= c["rate_bps"] <= max(RATES_BPS),
        "loss": finite(c["loss"]) and 0 <= c["loss"] < 0.5,
        "base_latency_s": finite(c["base_latency_s"]) and 0 <= c["base_latency_s"] <= 1,
        "measured_s": isinstance(c["measured_s"], list) and len(c["measured_s"]) > 0
        and all(finite(t) and t > 0 for t in c["measured_s"]),
        "burst_bytes": isinstance(c["burst_bytes"], int) and not isinstance(c["burst_bytes"], bool)
        and 0 <= c["burst_bytes"] <= MAX_BURST_BYTES,
        "started_s": c["started_s"] is None or (isinstance(c["started_s"], list) and len(c["started_s"])
        == len(c["measured_s"]) and all(finite(t) and abs(t) <= 60 for t in c["started_s"])),
    }  # fmt: skip
    if bad := [k for k, ok in rules.items() if not ok]:
        raise ValueError(f"a cell's {bad[0]} is not one this bench measures: {str(c[bad[0]])[:80]}")
    return tuple(c[k] for k in rules)


def _jitter_of(cell: dict[str, Any]) -> float:
    """A recorded cell's links' jitter (none in matrices before the bench applied any); ValueError if out of range."""
    jitter = cell.get("link_jitter_s", 0.0)
    if not isinstance(jitter, (int, float)) or isinstance(jitter, bool) or not 0 <= jitter <= 1:
        raise ValueError(f"a cell's link_jitter_s is not one this bench measures: {str(jitter)[:80]}")
    return float(jitter)


SLOW_FRAME_BEFORE_S = 1e-3  # until 2026-12-01 17:35 the bucket was one frame where a frame took this long or more


def _bucket_before(cell: Any) -> int | None:
    """The bucket rescoring gives cells written before they recorded theirs: the fabric's from 2026-11-30 12:55 to
    2026-12-01 17:35 (one frame where a frame took ``SLOW_FRAME_BEFORE_S`` or more, up to ~12 Mbit/s; else as
    today). Matrices older than 12:55 (a 6,250 B bucket at a gigabit, two frames at 10 Mbit/s before 01:29) are
    rescored with it too, as they always were. None where the cell's rate is no rate (``_cell_key`` names it)."""
    rate = cell.get("rate_bps") if isinstance(cell, dict) else None
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0:
        return None
    return FRAME_BYTES if FRAME_BYTES * 8 / rate >= SLOW_FRAME_BEFORE_S else tbf_burst_bytes(rate)


def _rates_mbit() -> str:
    return ", ".join(f"{r / 1e6:g}" for r in RATES_BPS)


def matrix_rate(text: str) -> float:
    """``--rates``: one of the matrix's rates given in Mbit/s, as bits/s (argparse names the option otherwise)."""
    try:
        rate_bps = float(text) * 1e6
    except ValueError:
        rate_bps = math.nan
    if rate_bps not in RATES_BPS:
        raise argparse.ArgumentTypeError(f"{text}: not a rate of the matrix ({_rates_mbit()} Mbit/s)")
    return rate_bps


def _recorded_kernel(doc: dict[str, Any], transport: Transport) -> Transport:
    """``transport`` with the kernel's rate a matrix recorded (none before stop 35: as given); ValueError naming the
    field where the recorded one is not a Transport's."""
    from pydantic import ValidationError

    recorded = doc.get("transport", {})
    if not isinstance(recorded, dict):
        raise ValueError(f"its transport is not a mapping: {str(recorded)[:80]}")
    if "host_rate_bps" not in recorded:
        return transport
    rate = recorded["host_rate_bps"]
    why = "a number, not a truth value"
    if not isinstance(rate, bool):  # pydantic would take True for 1 bit/s
        try:
            return transport.model_validate({**transport.model_dump(), "host_rate_bps": rate})
        except ValidationError as exc:
            why = exc.errors()[0]["msg"]
    raise ValueError(f"its transport.host_rate_bps {str(rate)[:40]} is not a rate: {why}")


def rescore(path: Path, transport: Transport, out: Path | None, kernel_given: bool = False,
            cc_given: bool = False) -> int:  # fmt: skip
    """``--rescore``: each measured cell of ``path`` against the model as the code has it now, with the kernel's rate
    the matrix measured (``host_rate_bps`` in its transport; none in matrices before it) unless ``kernel_given``, and
    the congestion control each cell's senders ran (as recorded) unless ``cc_given``."""
    try:
        doc = json.loads(path.read_text())
        cells_in = doc["cells"]
        if not kernel_given:
            transport = _recorded_kernel(doc, transport)
        # loss and cpu_bound: absent from matrices written before the bench measured them (no loss; kept up);
        # burst_bytes: before the bench recorded it, the fabric's bucket of the time
        # started_s: before the bench measured when each sender began (the model then starts the flows at once)
        cells_in = [{"loss": 0.0, "cpu_bound": False, "burst_bytes": _bucket_before(c), "started_s": None, **c}
                    for c in cells_in]  # fmt: skip
        keys = [_cell_key(c) for c in cells_in]
        jitters = [_jitter_of(c) for c in cells_in]
        if not keys:
            raise ValueError("no cells")
    except KeyError as exc:
        print(f"net_fidelity: --rescore {path}: a cell has no {exc}: not a matrix this bench wrote", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError) as exc:
        print(f"net_fidelity: --rescore {path}: not a JSON matrix this bench wrote ({exc})", file=sys.stderr)
        return 2
    print(HEADER)
    cells = []
    for old, key, jitter in zip(cells_in, keys, jitters, strict=True):
        *fields, started = key
        cc = None if cc_given else modelled_congestion_control(str(old.get("congestion_control", "")))
        ran = transport.model_copy(update={"congestion_control": cc}) if cc else transport
        cell = {**old, **cell_of(*fields, ran, started, old.get("connections") == "kept", jitter)}
        cells.append(cell)
        print(row(cell, old.get("congestion_control", "?")), flush=True)
    ok = _report(cells, sorted({c["loss"] for c in cells}))
    if out is not None:
        out.write_text(json.dumps({"cells": cells, "goal_met": all(ok), "rescored_from": str(path),
                                   "transport": transport.model_dump()}, indent=1))  # fmt: skip
    return 0


def measure_matrix(losses: list[float], rates: tuple[float, ...], sizes: tuple[int, ...], reps: int,
                   transport: Transport, kept: bool = False, flows: tuple[int, ...] = FLOWS,
                   patterns: tuple[str, ...] = PATTERNS, frames: bool = False,
                   latency_s: float = 0.0, jitter_s: float = 0.0) -> list[dict[str, Any]]:  # fmt: skip
    """Every cell measured through the fabric (one per loss and rate) and simulated beside it, printed as it goes;
    ``frames``: every link carries frames (``hw.netns.Fabric.frames``; a lossy link always does); ``latency_s``: every
    link's latency, applied by delay hops (hw/delayline.py) and simulated on top of the fabric's own; ``jitter_s`` their
    mean exponential jitter, in order (the hops do not reorder)."""
    cells: list[dict[str, Any]] = []
    ports = itertools.count(20001)  # each connection's listening port
    print(HEADER)
    for loss, rate in itertools.product(losses, rates):
        load_start = os.getloadavg()[0]
        framed = frames or loss > 0 or jitter_s > 0  # a lossy or jittered link carries frames, steered in order
        graph = star(rate, latency_s, loss=loss, jitter_s=jitter_s)
        with Fabric(graph, frames=frames, congestion_control=CONGESTION or "") as fabric:
            # probed without its loss (``probe_clean``: a lost ping backed TCP's timer off past the probe's timeout,
            # a traceback, the block lost; a lossy stream's throughput is not the fabric's), on links framed alike
            fab = probe_clean(fabric, "s", "r0")  # below the rate: this block measures the machine's kernel, not TCP
            # a hop's latency (a 1-byte TCP ping-pong across the switch): the fabric's own, and with delay hops what
            # they add (their latency, and their forwarding: 0.2-0.3 ms a round trip over two of them here)
            lat = hop_latency_s(fabric, "s", "r0") if latency_s else fab.latency_s
            # which pattern shares unfairly depends on it (docs/network-validation.md)
            cc = fab.congestion_control  # as the probe's connection ran it: the senders' (``dial``)
            print(f"| {fab.describe()} |", flush=True)
            for pattern in patterns:
                warm_up(fabric, ports, pattern)
                for size in sizes:
                    for k in flows:
                        trials = measure_cell(fabric, ports, pattern, k, size, reps, kept)
                        measured, started = [t.took_s for t in trials], [t.started_s for t in trials]
                        cell = cell_of(pattern, k, size, rate, loss, lat, measured, fab.burst_bytes, transport,
                                       started, kept, jitter_s)  # fmt: skip
                        cell.update({"resent_segments": [t.resent for t in trials],
                                     "rto_timeouts": [t.timeouts for t in trials],
                                     "woke_s": [t.woke_s for t in trials], "congestion_control": cc, "reps": reps,
                                     "fabric_throughput_bps": fab.throughput_bps, "cpu_bound": _cpu_bound(fab),
                                     "connections": "kept" if kept else "new",
                                     "frames": framed, "steered": framed and fabric.in_order,
                                     "link_latency_s": latency_s, "link_jitter_s": jitter_s})  # fmt: skip
                        cells.append(cell)
                        print(row(cell, cc), flush=True)
            for c in cells:
                if c["rate_bps"] == rate and c["loss"] == loss:
                    c["load_start"], c["load_end"] = load_start, os.getloadavg()[0]
    return cells


def _refuse_mixed(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that cannot go together: one line each (``ap.error``)."""
    if args.rates is not None and (args.quick or args.rescore is not None):
        ap.error("argument --rates: the full matrix at some of its rates; not with --quick or --rescore")
    if args.rescore is not None and (picked := [a for a in ("sizes", "flows", "patterns") if getattr(args, a)]):
        ap.error(f"argument --{picked[0]}: picks cells to measure; --rescore measures nothing")
    how = [a for a in ("kept_connections", "frames", "latency_ms") if getattr(args, a)]
    if args.rescore is not None and how:
        ap.error(f"argument --{how[0].replace('_', '-')}: says how to measure; --rescore measures nothing")
    if not (args.latency_ms == 0 or DELAY_FROM_S * 1e3 <= args.latency_ms <= 1000):
        ap.error(f"argument --latency-ms: 0 or from {DELAY_FROM_S * 1e3:g} to 1000 ms (got {args.latency_ms:g})")
    if args.jitter_ms and (args.rescore is not None or not args.latency_ms or not 0 < args.jitter_ms <= 1000):
        ap.error("argument --jitter-ms: from 0 to 1000 ms, with --latency-ms (the delay hops apply it)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="100 Mbit/s and 1 Gbit/s, 64 KiB and 1 MB, 2 repetitions unless --reps")  # fmt: skip
    ap.add_argument("--reps", type=in_range(1, 10_000), default=None, help="repetitions a cell (default 3)")
    ap.add_argument("--json", type=out_json, help="write the cells here (checked before anything is measured)")
    ap.add_argument("--loss", type=float, nargs="+", default=[0.0], help="link loss probabilities (default 0)")
    ap.add_argument("--rates", type=matrix_rate, nargs="+", metavar="MBIT", default=None,
                    help=f"only these of the matrix's rates, Mbit/s ({_rates_mbit()})")  # fmt: skip
    ap.add_argument("--sizes", type=int, nargs="+", choices=SIZES_BYTES, metavar="BYTES",
                    help=f"only these of the matrix's message sizes ({', '.join(map(str, SIZES_BYTES))})")  # fmt: skip
    ap.add_argument("--flows", type=int, nargs="+", choices=FLOWS, metavar="K",
                    help=f"only these of the matrix's concurrent flows ({', '.join(map(str, FLOWS))})")  # fmt: skip
    ap.add_argument("--patterns", nargs="+", choices=PATTERNS, help="only these patterns")
    ap.add_argument(
        "--congestion-control",
        metavar="NAME",
        default=Transport().congestion_control,
        help="the senders' TCP congestion control (default: the model's and the twin's, Transport.congestion_control: "
        f"{Transport().congestion_control}; bbr as ours runs it by default)",
    )
    ap.add_argument("--kept-connections", action="store_true",
                    help="a cell's repetitions on one set of connections, after a warm-up trial (as the twin's nodes "
                         "keep theirs); default: new connections each repetition")  # fmt: skip
    ap.add_argument("--frames", action="store_true",
                    help="every link carries frames, not GSO packets, as lossy links do (the fabric's per-frame "
                         "work apart from the loss)")  # fmt: skip
    ap.add_argument("--latency-ms", type=float, default=0.0, metavar="MS",
                    help=f"every link's latency, applied by delay hops in user space (hw/delayline.py): 0 (default) "
                    f"or from {DELAY_FROM_S * 1e3:g} ms")  # fmt: skip
    ap.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="every link's mean jitter (exponential, in order), applied by its delay hop: with --latency-ms",
    )
    ap.add_argument("--rescore", type=Path, metavar="JSON",
                    help="no measuring: the cells of a JSON this bench wrote, simulated again by the model as the "
                    "code has it now (with --transport), against their measured times")  # fmt: skip
    ap.add_argument(
        "--transport",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="the simulated transport's fields (sim.scenario.Transport), e.g. share_sigma=0",
    )
    args = ap.parse_args()
    _refuse_mixed(ap, args)
    if (transport := transport_of(args.transport)) is None:
        return 2
    kernel_given = any(kv.startswith("host_rate_bps=") for kv in args.transport)
    if args.rescore is not None:
        cc_given = any(kv.startswith("congestion_control=") for kv in args.transport)
        return rescore(args.rescore, transport, args.json, kernel_given, cc_given)
    if any(not 0 <= p < 0.5 for p in args.loss):
        print("net_fidelity: --loss: each probability must be in [0, 0.5)", file=sys.stderr)
        return 2
    if (why := use_congestion_control(args.congestion_control)) is not None:
        print(f"net_fidelity: --congestion-control: {why}", file=sys.stderr)
        return 2
    if (cc := modelled_congestion_control(args.congestion_control)) is not None:  # the model's TCP as the senders'
        transport = transport.model_copy(update={"congestion_control": cc})
    if (why := unavailable()) is not None:
        print(f"net_fidelity: {why}", file=sys.stderr)
        return 2
    rates = RATES_BPS[1:] if args.quick else RATES_BPS
    if args.rates is not None:  # in the matrix's order, each once
        rates = tuple(r for r in RATES_BPS if r in args.rates)
    sizes = SIZES_BYTES[:2] if args.quick else SIZES_BYTES
    if args.sizes is not None:  # each picked in the matrix's order, once
        sizes = tuple(s for s in SIZES_BYTES if s in args.sizes)
    flows = tuple(k for k in FLOWS if k in args.flows) if args.flows else FLOWS
    patterns = tuple(p for p in PATTERNS if p in args.patterns) if args.patterns else PATTERNS
    reps = args.reps or (2 if args.quick else 3)
    if not kernel_given:  # the machine's kernel: what one TCP stream moves where no link limits it
        transport = transport.model_copy(update={"host_rate_bps": kernel_rate_bps()})
        print(f"the kernel moves {transport.host_rate_bps / 1e9:.2f} Gbit/s of one TCP stream between namespaces "
              f"(a {KERNEL_PROBE_BPS / 1e9:g} Gbit/s fabric): Transport.host_rate_bps", flush=True)  # fmt: skip
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    cells = measure_matrix(args.loss, rates, sizes, reps, transport, args.kept_connections, flows, patterns,
                           args.frames, args.latency_ms / 1e3, args.jitter_ms / 1e3)  # fmt: skip
    ok = _report(cells, args.loss)
    if args.json:
        args.json.write_text(json.dumps({"cells": cells, "goal_met": all(ok), "cpus": os.cpu_count(),
                                         "transport": transport.model_dump(), "argv": sys.argv[1:],
                                         "started": started, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                        indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
