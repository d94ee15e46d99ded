"""Network model: routes from NetworkX, each link direction a FIFO server.

A message is cut into segments of ``segment_bytes`` that pipeline across hops. Under ``fair`` sharing
(``sim.scenario.Transport``, the default) a message keeps at most a window of segments in flight and sends
the next when the oldest one's acknowledgement is back, so messages crossing one link at once interleave as TCP
flows do; a TCP message's window is its connection's, grown from TCP's initial window by round trips and restarted
after an idle spell (sim/congestion.py); under
``fifo`` all its segments ask at once and messages cross a link whole, one after the other. Where TCP segments
arriving over different links converge on one (``fan_in: packets``), a segment's last packet leaves that link
once every byte that arrived there before it has left (``LinkServer.merged_end``: a switch queues packets as they
come), settled on the route's last link when the segment would have arrived. Only there: where flows from
different links merge at a middle hop (a gateway's uplink on a tree), they are served segment by segment, as
under ``fan_in: segments`` (the shipped layouts are stars, where flows merge on the last link). On each hop a
segment waits for the link (queue wait), holds it for its serialisation delay ``bytes * 8 / bandwidth_bps``, then
propagates for ``latency_s`` plus an exponential jitter of mean ``jitter_s`` (without holding the link), drawn per
packet and in order, as a wire's queue and the twin's delay hops deliver: a TCP segment's last packet waits for the
ones before it (``Network._jitter_s``), so a stream is delayed more than the jitter's mean (``in_order_mean_s``).
Loss: a TCP message (``transfer_tcp``) loses each packet on each hop with probability ``loss``. The lost
packets (and lost resends) are sent again right behind their segment, which holds the link for them; its last
packet arrives a round trip on that link later. That is a selective (SACK) fast retransmit, where the packets
keep flowing. A message's last packet lost has no later packet to reveal it: it is resent after
``Transport.rto_min_s`` (TCP's loss probe with one packet out waits the minimum retransmission timeout),
doubled for each lost resend (bench/loss_tails.py: 1-3 % of messages at 1 % loss, 40-70 % of their mean); it
crosses the later hops on its own, which meanwhile serve other flows (``Network._late``). The sender's congestion
control answers the loss as the segment's acknowledgement comes back (``sim.congestion``: CUBIC's and Reno's cut and
growth as Linux computes them; BBR's window does not change).
A transmission in its own framing (a device's frame or handshake) is lost whole with probability ``loss``,
and sent again after 2 * latency_s + its serialisation delay.
So an N-byte message over one idle, lossless, jitter-free link takes exactly N*8/bandwidth + latency.
A link shaped by a token bucket (``burst_bytes``, as Linux's tbf shapes the netns backend's links) lets bytes
out up to the bucket's depth earlier than the plain server would (``LinkServer.leaves``): an idle link passes
a message of up to ``burst_bytes`` at once, and a longer one N*8/bandwidth - burst_bytes*8/bandwidth after it
started. The plain server's state and counters are the bucket's rate accounting and stay as they are.

What a transfer reports and counts (definitions in sim/contract.py):

- its queue wait: the sum over its segments and hops of the time a segment waited while the link served
  other messages (not its own message's earlier segments: that is the message's own serialisation);
- per link direction: bytes sent (every segment on every hop, resends included) by phase, busy seconds, and
  the offered work: each message's serialisation, back to back from when its segments ask the link, counted
  up to the end of the run (``LinkServer.offered_s``).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import simpy

from sim.congestion import Connection, Cubic, Window, hystart_exit_packets, loss_response
from sim.contract import WINDOW_OF_ITS_OWN
from sim.hosts import count_events, wake_at
from sim.scenario import Transport, lowest_latency_path
from sim.streams import Streams, stream

# a packet's memory in a socket's send buffer as Linux counts it for its size (``tcp_sndbuf_expand``'s per_mss: the
# MSS and the largest headers rounded up to a power of two, 4,096, and the skb, 256); the queued payload, in skbs of
# up to 64 KiB, takes about its own size (the twin's Wi-Fi socket: 225 KB queued for 236 KB of payload)
SNDBUF_PACKET_BYTES = 4352


@dataclass(eq=False, slots=True)
class Arriving:
    """A TCP segment asked on a link after crossing another (``fan_in: packets``): its bytes arrive from
    ``source`` between ``asked_s`` (its first packet) and ``arrived_s`` (its last byte), and its last packet
    cannot leave before ``floor_s``; FIFO, it starts at ``start_s`` (``base_s`` had the link served only its own
    message: its queue wait counted when asked is the difference), is served for ``service_s`` and its last byte
    leaves at ``end_s``. ``settles``: on its route's last link, it waits for ``LinkServer.merged_end``
    (``Network._later``) and holds the later ones until then; ``own[-1]``: the latest end there of its message's
    segments settled so far."""

    asked_s: float
    arrived_s: float
    floor_s: float
    start_s: float
    service_s: float
    end_s: float
    base_s: float
    source: LinkServer
    settles: bool
    own: list[float]
    seq: int = 0


@dataclass(eq=False)
class LinkServer:
    """One direction of a link: a FIFO server with counters."""

    name: str
    bandwidth_bps: float
    latency_s: float
    jitter_s: float
    loss: float
    busy_s: float = 0.0  # serialising, including retransmissions (served counters: up to the last ``settle``)
    demand_s: float = 0.0  # serialisation time asked for, including segments still queued at the end
    bytes_sent: int = 0  # every segment served by the end, resends included
    bytes_by_phase: dict[str, int] = field(default_factory=dict)
    retransmissions: int = 0
    # (due_s, service_s, end_s, bytes, phase) of each transmission asked and not yet counted as served, in the
    # order asked (FIFO: the order served, ends never decrease): due_s is when it would have been served on a link
    # carrying only its message (offered_s); end_s when it leaves the link (``settle`` counts it from then on)
    unserved: deque[tuple[float, float, float, int, str]] = field(default_factory=deque)
    # the FIFO server: when it has served everything asked so far (requests come in time order, so a request
    # starts at max(now, free_s): the queue without a queue object)
    free_s: float = 0.0
    series: np.ndarray | None = None  # busy seconds per time bin (shared links; Network.track)
    index: int = 0  # its random stream: the network seed's child of this index (Network.rng)
    rng: np.random.Generator | None = None
    # (asked_s, service_s, granted_s) of every transmission when set: the vectorized engine replays them
    log: list[tuple[float, float, float]] | None = None
    burst_s: float = 0.0  # a token bucket's depth, in seconds at the rate (``leaves``)
    # TCP messages under way whose sender's link this is, and the share weight the first of them drew: Linux's TCP
    # small queues hold each of a sender's flows to a few packets in its link's queue and the link serves them in
    # turn, so an unpaced sender's flows share it evenly (``Network.share_weight``)
    tcp_flows: int = 0
    weight: float = 1.0
    # fan_in: packets -- TCP segments asked here after crossing another link, in the order asked, from the oldest
    # one still to settle (``arrivals[head]``); ``first_seq``: the ``seq`` of ``arrivals[0]``
    arrivals: list[Arriving] | None = None  # (made when first asked: a hospital has 20,000 device links)
    head: int = 0
    first_seq: int = 0

    def joined(self, seg: Arriving) -> Arriving:
        """Note a TCP segment arriving over another link (``Network._fan_in``); returns it, numbered."""
        if self.arrivals is None:
            self.arrivals = []
        seg.seq = self.first_seq + len(self.arrivals)
        self.arrivals.append(seg)
        self._prune()
        return seg

    def merged_end(self, seg: Arriving) -> float:
        """When a segment's last packet leaves, served packet by packet in arrival order (a switch's egress
        queue) with the segments arriving from *other* links at once: after its own work, from its FIFO start,
        and the part of each later segment's that arrived before its last byte (its bytes arrive evenly over
        [asked, arrived]). Called once the last byte has arrived, when every such segment has been asked.
        Fluid FIFO (a byte leaves once those before it have): exact for arrivals at constant rates, where the
        backlog peaks at the segment's start or its last byte (docs/network-validation.md)."""
        arrivals, arrived, extra = self.arrivals or [], seg.arrived_s, 0.0
        for j in range(seg.seq - self.first_seq + 1, len(arrivals)):
            other = arrivals[j]
            if other.asked_s >= arrived:  # asked in time order: none later arrived before its last byte
                break
            if other.source is not seg.source:  # its own link's segments follow it (FIFO there): none came first
                if other.arrived_s <= arrived:
                    extra += other.service_s
                else:
                    extra += other.service_s * (arrived - other.asked_s) / (other.arrived_s - other.asked_s)
        seg.settles = False
        self._prune()
        return seg.start_s + seg.service_s + extra

    def first_leaves(self, seg: Arriving) -> float:
        """When a segment's first packet starts across, served packet by packet in arrival order (``merged_end``'s
        fluid FIFO): its FIFO start less the work of the segments asked before it that had not yet arrived when its
        first packet did (their later bytes go after it), not before that packet arrived. Called when it is asked."""
        arrivals, first, lost = self.arrivals or [], seg.asked_s, 0.0
        for j in range(self.head, seg.seq - self.first_seq):
            other = arrivals[j]
            if other.arrived_s > first and other.arrived_s > other.asked_s:
                lost += (
                    other.service_s * (other.arrived_s - max(first, other.asked_s)) / (other.arrived_s - other.asked_s)
                )
        return max(first, seg.start_s - lost)

    def _prune(self) -> None:
        """A segment counts for those asked before it only: once they all settled, it is dropped."""
        arrivals = self.arrivals
        assert arrivals is not None
        while self.head < len(arrivals) and not arrivals[self.head].settles:
            self.head += 1
        if self.head > 64 and 2 * self.head > len(arrivals):
            del arrivals[: self.head]
            self.first_seq += self.head
            self.head = 0

    def leaves(self, arrived_s: float, end_s: float) -> float:
        """When a transmission's last byte leaves a link shaped by a token bucket: ``end_s`` (when it leaves
        the plain FIFO server) less the bucket's depth, but not before that byte arrived (``arrived_s``). The
        fluid token bucket (depth B, rate R) fed by arrivals A sends D(t) = min(A(t), D0(t) + B), D0 being the
        rate-R FIFO server's output (network calculus: A convolved with B + R t), so a byte leaves at the later
        of its arrival and the plain server's end of the byte B before it; within one busy period that is the
        plain end less B / R. The plain server (``free_s``, counters) stays as it is."""
        return max(arrived_s, end_s - self.burst_s)

    def settle(self, now_s: float) -> None:
        """Count the transmissions that have left the link by ``now_s`` as served (``busy_s``, bytes). Counted
        when the link is next asked, or at the end: a transmission needs no event of its own."""
        q = self.unserved
        while q and q[0][2] <= now_s:
            _, service, _, size, phase = q.popleft()
            self.busy_s += service
            self.bytes_sent += size
            self.bytes_by_phase[phase] = self.bytes_by_phase.get(phase, 0) + size

    def offered_s(self, end_s: float) -> float:
        """Serialisation asked of this link that it could have done by ``end_s`` serving only each message:
        ``demand_s`` less, for each transmission not served by then, the part due after ``end_s``."""
        self.settle(end_s)
        late = sum(min(service, max(0.0, due - end_s)) for due, service, *_ in self.unserved)
        return self.demand_s - late


TSO_MIN_PACKETS = 2  # Linux's tcp_min_tso_segs
PACING_SHIFT_S = 2.0**-10  # sk_pacing_shift 10: a TSO packet holds ~1 ms of the pacing rate


def tso_bytes(flight_bytes: int, packet_bytes: int, rtt_s: float) -> int:
    """The packets Linux puts in one TSO packet of a slow-start flight of ``flight_bytes`` over a round trip
    ``rtt_s`` (``tcp_tso_autosize``: ~1 ms at the pacing rate, twice the window a round trip in slow start, at least
    two packets; the whole flight on a path of microseconds); TCP small queues keep about one of them a flow in the
    link's queue, so flows from one sender interleave by them (sim/network.py ``_queued_at``)."""
    if rtt_s <= 0:
        return flight_bytes
    pacing_bytes = 2 * flight_bytes * PACING_SHIFT_S / rtt_s
    return min(flight_bytes, max(TSO_MIN_PACKETS, int(pacing_bytes // packet_bytes)) * packet_bytes)


def sender_hop(links: list[LinkServer]) -> int:
    """The index in a route of its sender's link: behind its kernel's stage where it has one (``Network.tcp_route``)."""
    return 1 if links[0].index < 0 else 0


@functools.cache
def in_order_mean_s(jitter_s: float, gap_s: float) -> float:
    """The mean delay, beyond the latency, of a stream of packets ``gap_s`` apart over a link that delays each by an
    exponential of mean ``jitter_s``, in order: each waits for the one before it, D = max(J, D' - gap), whose
    stationary distribution is the product over k of P(J <= x + k gap) (numerically, to ~0.1 %)."""
    if jitter_s <= 0:
        return 0.0
    if jitter_s > IN_ORDER_DENSE * gap_s:  # the product tends to a Gumbel law: location jitter ln(jitter / gap)
        return jitter_s * (math.log(jitter_s / gap_s) + EULER_GAMMA)
    x = np.linspace(0.0, 30.0 * jitter_s, 1001)
    k = np.arange(0.0, math.ceil(30.0 * jitter_s / gap_s) + 1)[:, None]
    cdf = np.prod(1.0 - np.exp(-(x[None, :] + k * gap_s) / jitter_s), axis=0)
    return float(np.trapezoid(1.0 - cdf, x))


IN_ORDER_DENSE = 20.0  # packets a jitter apart from which ``in_order_mean_s`` takes the Gumbel limit (within 1 %)
EULER_GAMMA = 0.5772156649015329


class Network:
    """Links of a NetworkX graph whose edges carry ``params: LinkParams`` (``Scenario.graph``); messages take
    ``lowest_latency_path``, the routing rule the twin's backends use too."""

    def __init__(self, env: simpy.Environment, graph: nx.Graph, seed: np.random.SeedSequence, segment_bytes: int,
                 transport: Transport | None = None, machine_hosts: frozenset[str] = frozenset(),
                 speeds: dict[str, float] | None = None):  # fmt: skip
        """``speeds``: each host's ``cpu_speed``, by which its kernel's rate (``Transport.host_rate_bps``) scales."""
        self.env, self.seed, self.segment_bytes = env, seed, segment_bytes
        self.transport = transport or Transport(sharing="fifo", header_bytes=0, fan_in="segments")  # before validation
        self.graph = graph
        self.devices = frozenset(n for n, kind in graph.nodes(data="kind") if kind == "device")
        self.links: dict[tuple[str, str], LinkServer] = {}
        for u, v, data in graph.edges(data=True):
            bw, lat, jit, loss = data["params"].resolved()
            burst_s = data["params"].burst_bytes * 8 / bw if data["params"].burst_bytes else 0.0
            for a, b in ((u, v), (v, u)):
                self.links[a, b] = LinkServer(f"{a}->{b}", bw, lat, jit, loss, index=len(self.links), burst_s=burst_s)
        self._routes: dict[tuple[str, str], list[LinkServer]] = {}
        self._stacked: dict[tuple[str, str], list[LinkServer]] = {}  # a host's TCP routes behind its stack
        # per sending kernel (``Transport.host_rate_bps``; not links): a host's, or None: the machine's
        self.stacks: dict[str | None, LinkServer] = {}
        self.machine_hosts = machine_hosts  # hosts emulated on one machine (``deployment.machine``): one kernel
        self.speeds = speeds or {}
        self.shaped = any(link.burst_s for link in self.links.values())  # any token bucket (``LinkServer.leaves``)
        self._streams = Streams(seed, (), len(self.links))  # a bank on a big network (a device's links each)
        self._share_rngs: dict[tuple[str, str], np.random.Generator] = {}  # by route (``share_weight``)
        self.connections: dict[tuple[str, str], Connection] = {}  # TCP's, by sending and receiving host
        self.bin_s = 1.0

    def settle(self) -> None:
        """Bring every link's served counters (``busy_s``, bytes) up to now: they count a transmission once the
        link is next asked after it left, or at a settle (the end of a run)."""
        for link in self.links.values():
            link.settle(self.env.now)

    def rng(self, link: LinkServer) -> np.random.Generator:
        """A link's own random stream (loss, jitter): its draws follow its own transmissions, not every
        link's in event order, so a change of timing elsewhere does not reshuffle them."""
        if link.rng is None:
            assert link.index >= 0, f"{link.name} has no stream of its own"  # a kernel stage never draws
            link.rng = self._streams[link.index]
        return link.rng

    def track(self, bin_s: float, bins: int) -> None:
        """Keep each link's busy seconds per ``bin_s`` bin (by service start), except devices' access links."""
        self.bin_s = bin_s
        for (a, b), link in self.links.items():
            if a not in self.devices and b not in self.devices:
                link.series = np.zeros(bins)

    def tcp_route(self, src: str, dst: str) -> list[LinkServer]:
        """``route``, behind the sending host's kernel where ``Transport.host_rate_bps`` limits it: a FIFO server at
        that rate, without latency, before the first link (cut-through at packet size, as links are); hosts
        emulated on one machine (``machine_hosts``) share one kernel, so one such server. The kernel's work is CPU
        work: its rate scales with its host's ``cpu_speed`` (a machine's: its slowest host's)."""
        rate = self.transport.host_rate_bps
        if not rate or src == dst or self.graph.nodes[src].get("kind") != "host":
            return self.route(src, dst)
        key = (src, dst)
        if key not in self._stacked:
            kernel = None if src in self.machine_hosts else src
            if kernel not in self.stacks:  # no loss, no jitter: it never draws (``rng``)
                hosts = self.machine_hosts if kernel is None else (kernel,)
                rate *= min(self.speeds.get(h, 1.0) for h in hosts)
                self.stacks[kernel] = LinkServer(f"{kernel or 'machine'} stack", rate, 0.0, 0.0, 0.0, index=-1)
            self._stacked[key] = [self.stacks[kernel], *self.route(src, dst)]
        return self._stacked[key]

    def route(self, src: str, dst: str) -> list[LinkServer]:
        """Link directions on the path from src to dst (cached). A leaf (a device) has one way in and out, so
        its routes are its access link plus its gateway's route: one search per gateway, not per device."""
        key = (src, dst)
        if key not in self._routes:
            g = self.graph
            if src != dst and g.degree(src) == 1:
                (hop,) = g.neighbors(src)
                self._routes[key] = (
                    [self.links[src, hop], *self.route(hop, dst)] if hop != dst else [self.links[src, hop]]
                )
            elif src != dst and g.degree(dst) == 1:
                (hop,) = g.neighbors(dst)
                self._routes[key] = (
                    [*self.route(src, hop), self.links[hop, dst]] if hop != src else [self.links[src, dst]]
                )
            else:
                path = lowest_latency_path(g, src, dst)
                self._routes[key] = [self.links[a, b] for a, b in itertools.pairwise(path)]
        return self._routes[key]

    def transfer(
        self, src: str, dst: str, nbytes: int, phase: str = "", packet_bytes: int | None = None,
        rng: np.random.Generator | None = None, taken: tuple[float, simpy.Event] | None = None,
    ) -> Generator[Any, Any, float]:  # fmt: skip
        """Carry nbytes from node src to node dst; returns its queue wait: the time its segments waited, on
        every hop, for the link to serve other messages (s). ``phase`` labels the link's bytes.
        ``packet_bytes`` (a message in packets, as TCP sends): a segment goes on to the next hop as soon as its
        first packet has crossed (cut-through at packet size, as switches forward packets), and cannot leave
        a hop before its last packet has arrived there. Without it segments are stored and forwarded whole.
        ``rng``: the message's own stream for loss and jitter, instead of each link's (the vectorized engine's
        frames: they must not shift the draws of the traffic they join). ``taken`` (bytes, event): the event
        succeeds once that many of the message's bytes are acknowledged (a TCP window's), or when it is in: its
        sender's blocking send returns then (``send_buffer_bytes``)."""
        if src == dst or nbytes <= 0:
            if taken is not None:
                taken[1].succeed()
            return 0.0
        links = self.tcp_route(src, dst) if packet_bytes else self.route(src, dst)
        shaped = self.shaped  # token buckets: only the general ``_carry`` models them (rare: the fast paths skip them)
        if not packet_bytes and nbytes <= self.segment_bytes and not shaped:  # a device's message or frame
            return (yield from self._carry_whole(links, nbytes, phase, rng))
        cap = self.segment_cap(self.share_weight(src, dst, links, nbytes) if packet_bytes else 1.0)
        rtt_s = self._round_trip_s(links, min(link.bandwidth_bps for link in links))
        sizes = self.segments(nbytes, packet_bytes, cap, rtt_s if packet_bytes else 0.0)
        conn = self._connection(src, dst, packet_bytes) if packet_bytes and self.transport.sharing == "fair" else None
        win = self._window(src, dst, links, sizes, cap, conn, rtt_s)
        if taken is not None:  # succeeded at the acknowledgement's time (a lossless flow computes ahead of it)
            win.watch = (taken[0], functools.partial(self._succeed_at, taken[1]))
        back_s = self.ack_delay_s(src, dst) if conn is not None else 0.0
        first = links[sender_hop(links)]
        if conn is not None:
            conn.open += 1
            first.tcp_flows += 1
        try:
            if packet_bytes and not shaped and not any(link.loss for link in links):  # TCP, lossless: one process
                return (yield from self._carry_flow(links, sizes, phase, win, back_s, packet_bytes, rng))
            return (yield from self._carry_segments(links, sizes, phase, win, back_s, packet_bytes, rng))
        finally:
            if taken is not None and win.watch is not None:  # never acknowledged that far: in
                win.watch = None
                taken[1].succeed()
            if conn is not None:  # what the next message on this connection finds
                first.tcp_flows -= 1
                conn.peak_bytes = max(conn.peak_bytes, win.peak_bytes)
                conn.open -= 1
                settled = win.settled_bytes()
                conn.cwnd_bytes = max(conn.cwnd_bytes, settled) if conn.open else settled
                conn.last_sent_s = max(conn.last_sent_s, win.last_sent_s)
                conn.acked_s = max(conn.acked_s, win.acked_s)
                conn.ssthresh_bytes = win.ssthresh_bytes

    def _window(self, src: str, dst: str, links: list[LinkServer], sizes: list[int], cap: int,
                conn: Connection | None, rtt_s: float) -> Window:  # fmt: skip
        """A message's window over its segments: under fifo sharing all of them at once; under fair sharing the path's
        steady window (``window`` segments of ``cap``), from the window its TCP connection has now (``conn``;
        none, not TCP: the steady one from the first segment)."""
        if self.transport.sharing != "fair":
            return Window(sizes, sum(sizes), sum(sizes))
        limit = self.window(links, cap, rtt_s) * cap
        if conn is None:
            return Window(sizes, limit, limit)
        tcp = self.transport
        cwnd = conn.window_at(self.env.now, self.rto_s(src, dst), tcp.restarts_after_idle)
        ssthresh = conn.ssthresh_bytes
        if cwnd < conn.cwnd_bytes:  # restarted: slow start up to 3/4 of the window it had (``tcp_current_ssthresh``)
            ssthresh = max(ssthresh, 0.75 * conn.cwnd_bytes)
        if conn.response is not None and not conn.open and self.env.now >= conn.acked_s:  # nothing in flight
            conn.response.resumed(self.env.now - conn.last_sent_s, self.env.now)
        hystart, full = self._hystart_bytes(links, conn, rtt_s)
        return Window(sizes, cwnd, limit, queued=True, ssthresh_bytes=ssthresh, response=conn.response,
                      packet_bytes=tcp.packet_bytes, rtt_s=rtt_s, hystart_bytes=hystart, full_bytes=full,
                      packetwise=conn.cut)  # fmt: skip

    def _hystart_bytes(self, links: list[LinkServer], conn: Connection, rtt_s: float) -> tuple[float, float]:
        """Where CUBIC's HyStart ends a connection's slow start on ``links`` (sim/congestion.py
        ``hystart_exit_packets``), and the window that fills the path (``Window.full_bytes``), bytes. HyStart binds
        where it stops below the path's bandwidth-delay product at its round trip under load (``rtt_s``: jitter in
        order makes it longer than the minimum HyStart measures); elsewhere the link is full either way (and this
        model's segments, which need a segment more than the product to fill it, would be slowed by a stop Linux's
        packets are not: 1 MB over two 5 ms links at 100 Mbit/s went +9.5 % off with it). (inf, inf): another
        congestion control, ``Transport.hystart`` off, or the connection's threshold set by a loss; (inf, product):
        HyStart ended a slow start before and no loss came since. The minimum round trip: each link's latency both
        ways and a packet's time on it, no jitter."""
        cubic = conn.response
        if not (self.transport.hystart and isinstance(cubic, Cubic) and not conn.cut):
            return math.inf, math.inf
        packet_bits = self.transport.packet_bytes * 8
        rate_bps = min(link.bandwidth_bps for link in links)
        full_bytes = rtt_s * rate_bps / 8
        if cubic.found:
            return math.inf, full_bytes
        min_rtt_s = sum(2 * link.latency_s + packet_bits / link.bandwidth_bps for link in links)
        exit_bytes = hystart_exit_packets(min_rtt_s, packet_bits / rate_bps) * self.transport.packet_bytes
        return (exit_bytes, full_bytes) if exit_bytes < full_bytes else (math.inf, math.inf)

    def _connection(self, src: str, dst: str, packet_bytes: int) -> Connection:
        """The TCP connection from host ``src`` to ``dst`` (``sim.congestion``): opened at the start of the run, as
        the twin's nodes open theirs, its window the initial one: ``Transport.initial_window_packets`` full packets
        (0: no slow start, the path's steady window from the first segment)."""
        conn = self.connections.get((src, dst))
        if conn is None:
            initial = self.transport.initial_window_packets * packet_bytes or math.inf
            response = loss_response(self.transport.congestion_control)
            conn = self.connections[src, dst] = Connection(initial, initial, response=response)
        return conn

    def ack_delay_s(self, src: str, dst: str) -> float:
        """How long an acknowledgement takes back from ``dst`` to ``src``: the reverse route's latency and jitter (an
        ACK is too small to queue behind much: no serialisation). The jitter is in order (``_jitter_s``): in a
        flow's stream of acknowledgements, one for every two packets at the path's slowest rate, each waits for the
        one before it, which makes the mean delay more than the jitter's mean (``in_order_mean_s``)."""
        back = self.route(dst, src)
        gap_s = 2 * self.transport.packet_bytes * 8 / min(link.bandwidth_bps for link in self.route(src, dst))
        return sum(link.latency_s + in_order_mean_s(link.jitter_s, gap_s) for link in back)

    @staticmethod
    def _jitter_s(link: LinkServer, draw: np.random.Generator, size: int, packet_bytes: int | None) -> float:
        """A transmission's jitter on ``link``: exponential of mean ``jitter_s`` per packet, in order (a packet never
        overtakes the one before it, as a link's queue and the twin's delay hops deliver): for a TCP segment of n
        packets, its last packet's -- the most of each packet's draw less the time of the packets after it (one
        draw for a frame sent whole). A stream at 100 Mbit/s with 1 ms of jitter is so delayed ~2.5 ms a link, where
        a draw per segment said 1 (measured: round trips of 18-24 ms over four 3 ms links, bench/net_fidelity.py
        --jitter-ms 1). Segments are drawn apart: one may still arrive before the one sent before it."""
        n = -(-size // packet_bytes) if packet_bytes else 1
        if n <= 1:
            return float(draw.exponential(link.jitter_s))
        behind_s = packet_bytes * 8 / link.bandwidth_bps * np.arange(n - 1, -1, -1)  # type: ignore[operator]
        return float((draw.exponential(link.jitter_s, n) - behind_s).max())

    def rto_s(self, src: str, dst: str) -> float:
        """A connection's retransmission timeout on a steady path: Linux's ``srtt + rttvar``, rttvar floored at
        the minimum (``Transport.rto_min_s``); the round trip at its links' mean delays."""
        there = sum(link.latency_s + link.jitter_s for link in self.route(src, dst))
        return self.transport.rto_min_s + there + self.ack_delay_s(src, dst)

    def _carry_segments(
        self, links: list[LinkServer], sizes: list[int], phase: str, win: Window, back_s: float,
        packet_bytes: int | None, rng: np.random.Generator | None,
    ) -> Generator[Any, Any, float]:  # fmt: skip
        """A message's segments through ``_carry``, each in a process of its own (one segment: in this one), sent as
        the window lets them (``win``; acknowledgements ``back_s`` after the bytes arrived). Returns at the instant
        its last segment arrived."""
        env = self.env
        win.last_sent_s = env.now
        lossy: set[int] = set()  # segments that lost a packet: the window answers as its acknowledgement comes back
        answers = lossy.add if win.response is not None else None
        if len(sizes) == 1:  # no process, no condition
            wait = yield from self._carry(links, sizes[0], phase, None, packet_bytes, rng, True, None, answers, 0)
            self._acked_after(win, lossy, {0: env.now}, back_s)
            return wait
        # per hop: its segments' last service end there, and when it was due; then ``Arriving.own``
        flow = [0.0] * (2 * len(links)) + [-math.inf]
        done, arrived, ahead = env.event(), [0], [-math.inf]
        procs: list[simpy.Process] = []
        landed_s: dict[int, float] = {}

        def launch() -> None:  # ``sizes`` is the window's: a loss cuts the segments not sent yet (``Window.lost``)
            while len(procs) < win.sent:
                k, queued = len(procs), win.queued and bool(procs)  # TCP's, behind its own (the first: now)
                first = functools.partial(acked_at, win.first_acked, k) if win.slow else None
                at = self._queued_at(links, flow, ahead, sizes[k], packet_bytes, env.now) if queued else env.now
                carry = self._carry(links, sizes[k], phase, flow, packet_bytes, rng, k == len(sizes) - 1, first,
                                    answers, k)  # fmt: skip
                proc = env.process(self._after(at, carry) if at > env.now else carry)
                proc.callbacks.append(functools.partial(landed, k))
                procs.append(proc)
                win.last_sent_s = at

        def acked_at(count: Any, k: int, arrived_s: float) -> None:
            def ack(_: Any) -> None:
                if not done.triggered:
                    count(k, env.now)
                    launch()

            if arrived_s + back_s <= env.now:
                ack(None)
            else:
                env.timeout(arrived_s + back_s - env.now).callbacks.append(ack)

        def landed(k: int, _: Any) -> None:
            landed_s[k] = env.now
            arrived[0] += 1
            if arrived[0] == len(sizes):
                done.succeed()
            else:
                acked_at(win.landed_acked if k not in lossy else answered, k, env.now)

        def answered(k: int, now_s: float) -> int:
            win.lost(k)
            return win.landed_acked(k, now_s)

        launch()
        yield done
        self._acked_after(win, lossy, landed_s, back_s)
        return math.fsum(float(p.value or 0.0) for p in procs)

    @staticmethod
    def _acked_after(win: Window, lossy: set[int], landed_s: dict[int, float], back_s: float) -> None:
        """The acknowledgements still out when a message is in (it is in at its last byte), as they come back, in
        order, before the connection's next message: a loss among them cuts the window (a short message's loss
        cut nothing, and a kept connection's window never fell), and after a loss each grows it."""
        if win.response is None:
            return
        win.acked_s = max(landed_s.values()) + back_s
        for k in sorted(landed_s, key=landed_s.__getitem__):
            if k in lossy:  # counted or not (slow start counts a segment at its first packet's acknowledgement)
                win.lost(k)
            if not win.counted[k] and win.ssthresh_bytes < math.inf:
                win.landed_acked(k, landed_s[k] + back_s)

    def _after(self, at_s: float, carry: Generator[Any, Any, float]) -> Generator[Any, Any, float]:
        """``carry`` from ``at_s`` on."""
        yield self.env.timeout(at_s - self.env.now)
        return (yield from carry)

    def _resent(self, link: LinkServer, nbytes: int, packet_bytes: int, rng: np.random.Generator | None, tail: bool,
                on_loss: Callable[[int], None] | None, k: int) -> tuple[int, float]:  # fmt: skip
        """``_lost_packets`` of segment ``k`` on ``link``, counted there: the bytes resent and a lost tail's wait;
        ``on_loss`` told if it lost any."""
        lost, timed_out_s = self._lost_packets(link, nbytes, packet_bytes, rng, tail)
        link.retransmissions += lost
        if lost and on_loss is not None:
            on_loss(k)
        return lost * packet_bytes, timed_out_s

    def _lost_packets(self, link: LinkServer, nbytes: int, packet_bytes: int, rng: np.random.Generator | None,
                      tail: bool = False) -> tuple[int, float]:  # fmt: skip
        """Packets of a TCP transmission of ``nbytes`` that ``link`` loses, resends included: each packet
        independently with the link's probability, and each resent one again; and how long a lost last packet of
        its message (``tail``) waits to be resent (``Transport.rto_min_s``, doubled for each lost resend)."""
        draw, lost, left = rng or self.rng(link), 0, -(-nbytes // packet_bytes)
        waited_s, rto_s = 0.0, self.transport.rto_min_s if tail else 0.0
        if rto_s:  # the last packet apart: nothing after it reveals its loss
            left -= 1
            while draw.random() < link.loss:
                lost, waited_s, rto_s = lost + 1, waited_s + rto_s, 2 * rto_s
        while left:
            left = int(draw.binomial(left, link.loss))
            lost += left
        return lost, waited_s

    def transfer_tcp(self, src: str, dst: str, payload_bytes: int, phase: str = "",
                     taken: tuple[float, simpy.Event] | None = None) -> Generator[Any, Any, float]:  # fmt: skip
        """Carry a message as TCP sends it (``Transport``): headers on every packet, packets forwarded as they
        come; returns its queue wait as ``transfer`` does (``taken``: as ``transfer`` takes it, payload bytes)."""
        tcp = self.transport
        if taken is not None:
            taken = (tcp.wire_bytes(int(taken[0])), taken[1])
        return (yield from self.transfer(src, dst, tcp.wire_bytes(payload_bytes), phase, tcp.packet_bytes,
                                         taken=taken))  # fmt: skip

    def _succeed_at(self, event: simpy.Event, at_s: float) -> None:
        def go(_: simpy.Event) -> None:
            event.succeed()

        self.env.timeout(max(0.0, at_s - self.env.now)).callbacks.append(go)

    def send_buffer_bytes(self, src: str, dst: str) -> float:
        """The payload a blocking send from host ``src`` to ``dst`` leaves with the kernel: Linux grows a socket's
        send buffer with its window while the writer waits (``tcp_sndbuf_expand``: twice the window at
        ``SNDBUF_PACKET_BYTES`` of memory a packet) and never shrinks it, so it is set by the largest window the
        connection has had -- on a lossy one, that of its first messages -- within ``Transport.send_buffer_bytes``
        (``tcp_wmem``'s maximum). Measured on the twin's Wi-Fi links (`ss -tmi` through a run): it grew from 46 KB
        over the first message or two to 488 KB and 977 KB on the two connections (windows of 56 and 112), then
        stood (docs/network-validation.md, "Stop 89"). A connection not opened yet, or one no loss has cut (its
        window grows on, and the buffer with it: 2.3 MB over a lossless gigabit, bench/send_hold.py): the maximum."""
        tcp = self.transport
        conn = self.connections.get((src, dst))
        if conn is None or not conn.peak_bytes or not conn.cut:
            return float(tcp.send_buffer_bytes)
        packets = max(tcp.initial_window_packets, conn.peak_bytes / tcp.packet_bytes)
        return min(float(tcp.send_buffer_bytes), 2 * packets * SNDBUF_PACKET_BYTES)

    def share_weight(self, src: str, dst: str, links: list[LinkServer], nbytes: int) -> float:
        """A TCP message's share weight (``Transport.share_spread``): 1 where shares are equal, else a lognormal
        draw of median 1, kept within [1/8, 8] (6 sigma at the default spread) so that no message comes in a
        flood of tiny segments. Each route (src, dst) draws from its own stream, the network seed's child
        (links, src, dst) by the nodes' order in the graph: the links' children come first, so no link's draws
        move, and a route's n-th message gets the same weight however other traffic is timed."""
        sigma = self.transport.share_spread(nbytes * 8 / min(link.bandwidth_bps for link in links))
        if not sigma:
            return 1.0
        first = links[sender_hop(links)]
        if self._in_turn(first):
            return first.weight  # beside the sender's flows under way, served in turn with them (``tcp_flows``)
        rng = self._share_rngs.get((src, dst))
        if rng is None:
            index = self._node_index
            rng = self._share_rngs[src, dst] = stream(self.seed, len(self.links), index[src], index[dst])
        first.weight = min(8.0, max(0.125, math.exp(sigma * float(rng.standard_normal()))))
        return first.weight

    def _in_turn(self, first: LinkServer) -> bool:
        """Whether a TCP message starting now shares its sender's link ``first`` evenly with the sender's messages
        under way: Linux's TCP small queues keep each flow's TSO packets in the link's queue (``tso_bytes``) and the
        link serves them in turn, which is even where every flow's packets are at their floor of two MSS (its share
        of the link paced for slow start, 1 ms of it, fits two packets: at 10 Mbit/s shared two ways or more, not at
        100) -- and its congestion control does not pace it at a rate of its own (BBR). Measured: four 1 MB CUBIC
        flows from one sender at 10 Mbit/s end within 40 ms of each other (docs/network-validation.md, "Stop 91");
        at 100 Mbit/s they end apart (4 x 4 MB: mean 1,251 ms, p95 1,506)."""
        if not first.tcp_flows or self.transport.congestion_control in WINDOW_OF_ITS_OWN:
            return False
        share_bps = first.bandwidth_bps / (first.tcp_flows + 1)
        return 2 * share_bps / 8 * PACING_SHIFT_S <= TSO_MIN_PACKETS * self.transport.packet_bytes

    @functools.cached_property
    def _node_index(self) -> dict[str, int]:
        return {node: i for i, node in enumerate(self.graph.nodes)}

    def segment_cap(self, weight: float) -> int:
        """The largest segment of a message of share ``weight``: ``segment_bytes`` times it (at least a byte)."""
        return max(1, round(self.segment_bytes * weight))

    def segments(self, nbytes: int, packet_bytes: int | None, cap: int | None = None,
                 rtt_s: float = 0.0) -> list[int]:  # fmt: skip
        """A message's segments: ``cap`` bytes each (default ``segment_bytes``; a weighted message's
        ``segment_cap``); a TCP message under fair sharing starts with ``initial_window_packets`` packets and
        doubles from there (slow start), so messages that start together interleave finely at first, as the
        kernel interleaves their first flights. With a window of segments in flight, a flow's share of a busy
        FIFO link goes as its segments' size, its weight, once its segments have grown to it (a 64 KiB message,
        10 + 20 + 15 packets, feels a weight only below ~0.46). Over a round trip ``rtt_s``, slow start's flights go
        in the pieces the kernel queues them in (``tso_bytes``), so flows from one sender interleave by them."""
        tcp = self.transport
        first = tcp.initial_window_packets * (packet_bytes or 0) if tcp.sharing == "fair" else 0
        cap = cap or self.segment_bytes
        sizes: list[int] = []
        left, grow = nbytes, first or cap
        while left > 0:
            size = min(left, grow, cap)
            piece = size
            if first and grow < cap and packet_bytes:  # a flight in equal pieces: the window lets each go whole
                packets = -(-size // packet_bytes)
                pieces = -(-packets // (tso_bytes(grow, packet_bytes, rtt_s) // packet_bytes))
                piece = -(-packets // pieces) * packet_bytes
            sizes += [min(piece, size - at) for at in range(0, size, piece)]
            left -= size
            grow *= 2
        return sizes

    def window(self, links: list[LinkServer], cap: int | None = None, rtt_s: float | None = None) -> int:
        """Segments a message keeps in flight on this route: the transport's window, or enough segments of
        ``cap`` bytes (default ``segment_bytes``) to fill the path's round trip at its slowest link, whichever is
        more (TCP's window grows to cover it: a message alone on its path goes at the path's rate whatever its
        share weight); ``rtt_s``: the path's round trip where the caller has it (``_round_trip_s``)."""
        rate_bps = min(link.bandwidth_bps for link in links)
        bdp_bytes = (self._round_trip_s(links, rate_bps) if rtt_s is None else rtt_s) * rate_bps / 8
        return max(self.transport.window_segments, math.ceil(bdp_bytes / (cap or self.segment_bytes)) + 1)

    def _round_trip_s(self, links: list[LinkServer], rate_bps: float) -> float:
        """A flow's round trip over ``links`` at ``rate_bps``: each link's latency both ways and its jitter in order
        (``in_order_mean_s``), for its packets at the link's rate and for their acknowledgements, one for two."""
        packet_bits = self.transport.packet_bytes * 8
        return sum(2 * link.latency_s + in_order_mean_s(link.jitter_s, packet_bits / link.bandwidth_bps)
                   + in_order_mean_s(link.jitter_s, 2 * packet_bits / rate_bps) for link in links)  # fmt: skip

    def _landing(self, k: int, n: int, link: LinkServer, settling: dict[int, Arriving], waits: list[float],
                 done: list[int], now_s: float, back_s: float) -> tuple[float, int] | None:  # fmt: skip
        """Segment ``k`` of ``n`` at the end of its route (``_carry_flow``): its next step (when, code) -- itself again
        while packets that came from other links before its last byte go first (``_later``), else its acknowledgement
        back (2n + k) -- or None if it is the message's last one in (``done[0]`` counts them)."""
        later, wait = self._later(link, settling.pop(k, None))
        waits[k] += wait
        if later > 0:
            return now_s + later, k
        done[0] += 1
        return None if done[0] == n else (now_s + back_s, 2 * n + k)

    @staticmethod
    def _ack_first(steps: list[tuple[float, int, int]], order: int, win: Window, code: int, at_s: float) -> int:
        """In slow start, a step for a segment's first packet's acknowledgement (``code``) back at ``at_s``; returns
        the next step's order."""
        if not win.slow:
            return order
        heapq.heappush(steps, (at_s, order, code))
        return order + 1

    def _let_go(self, steps: list[tuple[float, int, int]], order: int, win: Window, code: int,
                links: list[LinkServer], flow: list[float], ahead: list[float], packet_bytes: int | None,
                now_s: float) -> int:  # fmt: skip
        """An acknowledgement back (``code``: n + k for segment k's first packet, 2n + k for its last byte, n segments):
        a step for each segment the window lets go, in order (``_queued_at``); returns the next step's order."""
        n, before = len(win.sizes), win.sent
        after = win.first_acked(code - n, now_s) if code < 2 * n else win.landed_acked(code - 2 * n, now_s)
        for j in range(before, after):
            win.last_sent_s = (
                self._queued_at(links, flow, ahead, win.sizes[j], packet_bytes, now_s) if win.queued else now_s
            )
            heapq.heappush(steps, (win.last_sent_s, order, j))
            order += 1
        return order

    def _queued_at(self, links: list[LinkServer], flow: list[float], ahead: list[float], size: int,
                   packet_bytes: int | None, now_s: float) -> float:  # fmt: skip
        """When a TCP segment of ``size`` bytes the window lets go leaves for its sender's link: once the message's
        segments before it have left that link (``flow``: those that reached it; ``ahead``: those sent and not yet
        there, where they will have left at the earliest, updated), as Linux's TCP small queues hold a flow's packets
        in the socket while its earlier ones wait in the link's queue -- a flight joins that queue as the last one's
        acknowledgements come back, packet by packet among other flows' packets, not as one block ahead of them. The
        kernel's stage before the link (``tcp_route``) is crossed in a packet's time; a token bucket lets the bytes
        leave up to its depth sooner (``LinkServer.leaves``)."""
        h = sender_hop(links)
        lead_s = (packet_bytes or 0) * 8 / links[0].bandwidth_bps if h else 0.0
        at = max(now_s, max(flow[2 * h], ahead[0]) - lead_s - links[h].burst_s)
        ahead[0] = max(at + lead_s, flow[2 * h], ahead[0]) + size * 8 / links[h].bandwidth_bps
        return at

    def _tell_first(self, first: Callable[[float], None] | None, link: LinkServer, seg: Arriving | None,
                    asked_s: float, start_s: float, packet_s: float, delay_s: float) -> None:  # fmt: skip
        """Tell ``first`` (if any) when a segment's first packet arrives, on its last link (``_lead``; a token bucket
        lets it out up to its depth sooner, not before it came)."""
        if first is not None:
            first(max(asked_s, self._lead(link, seg, start_s) + packet_s - link.burst_s) + delay_s)

    @staticmethod
    def _lead(link: LinkServer, seg: Arriving | None, start_s: float) -> float:
        """When a TCP segment's first packet starts across its last link (its FIFO ``start_s``): where flows from other
        links converge packet by packet (``fan_in: packets``, ``seg``), once the bytes that arrived there before it
        have left (``LinkServer.first_leaves``), not behind other segments' whole."""
        return link.first_leaves(seg) if seg is not None else start_s

    def _fan_in(self, links: list[LinkServer], i: int, asked: float, arrived_s: float, start: float, service: float,
                end_s: float, base_s: float, packet_bytes: int | None,
                own: list[float] | None, resent_s: float = 0.0) -> Arriving | None:  # fmt: skip
        """Under ``fan_in: packets``, note a TCP segment on hop ``i`` past the first (``LinkServer.joined``;
        ``base_s``: when it would have started with only its own message on the link; ``own``: its message's
        ``Arriving.own``, None for a message of one segment); returns it on the route's last link, to settle when
        it arrives (``_later``), else None."""
        if not i or not packet_bytes or self.transport.fan_in != "packets":
            return None
        own = own if own is not None else [-math.inf]
        link, last = links[i], i == len(links) - 1
        arrived = max(asked, arrived_s)
        floor = arrived + packet_bytes * 8 / link.bandwidth_bps + resent_s
        seg = link.joined(Arriving(asked, arrived, floor, start, service, end_s, base_s, links[i - 1], last, own))
        return seg if last else None

    @staticmethod
    def _later(link: LinkServer, seg: Arriving | None) -> tuple[float, float]:
        """(how much later than served whole a segment's last byte leaves its last link, served packet by packet
        with the other links' segments: ``LinkServer.merged_end``, ``leaves`` behind a token bucket; the change to
        its queue wait) -- (0, 0) for none. Its wait on that link is how much later it left than the link would
        have let it go serving only its message, behind that message's segments as they left (not waiting: being
        serialised); it replaces the FIFO wait counted when it was asked (start - base), so a wait is counted
        once, whether the FIFO or the merge imposed it. Asked once it would have arrived: by then every segment
        that may have come before its last byte has asked."""
        if seg is None:
            return 0.0, 0.0
        merged = link.merged_end(seg)
        if link.burst_s:
            later = link.leaves(seg.arrived_s, merged) - link.leaves(seg.arrived_s, seg.end_s)
        else:
            later = merged - seg.end_s
        final, own = max(merged, seg.end_s), seg.own[-1]
        # alone: behind its message's segments served there before it (``base_s``; those settled later than
        # it, ``own``: a lost packet's resending holds them back), after its own resent bytes (``floor_s``)
        alone = max(max(own, seg.asked_s, seg.base_s) + seg.service_s, seg.floor_s)
        seg.own[-1] = max(own, final)
        return max(0.0, later), max(0.0, final - alone) - (seg.start_s - seg.base_s)

    def _merged(self, link: LinkServer, seg: Arriving | None, late_s: float = -math.inf) -> Generator[Any, Any, float]:
        """A segment that has arrived as served whole (``_carry``) waits ``_later`` more, and until its last
        packet, resent after a timeout, has come (``late_s``, ``_late``); returns the wait to add."""
        later, wait = self._later(link, seg)
        if later > 0:
            yield self.env.timeout(later)
        if late_s > self.env.now:
            yield self.env.timeout(late_s - self.env.now)
        return wait

    def _carry_whole(
        self, links: list[LinkServer], size: int, phase: str, rng: np.random.Generator | None
    ) -> Generator[Any, Any, float]:
        """``_carry`` of a message in one segment, stored and forwarded whole (no packets, no flow): the same
        arithmetic and draws, without the branches it does not take (a start-up storm's handshakes and frames)."""
        env, bin_s, wait = self.env, self.bin_s, 0.0
        for link in links:
            service = size * 8 / link.bandwidth_bps
            loss = link.loss
            while True:
                link.demand_s += service
                asked = env.now
                free = link.free_s
                start = free if free > asked else asked  # FIFO: after everything asked before
                free = link.free_s = start + service
                wait += start - asked
                unserved = link.unserved
                if unserved and unserved[0][2] <= asked:
                    link.settle(asked)
                unserved.append((asked + service, service, free, size, phase))
                if link.series is not None:
                    link.series[min(int(start / bin_s), link.series.size - 1)] += service
                if link.log is not None:
                    link.log.append((asked, service, start))
                # lost or not, drawn when asked: a link serves in the order asked, so its own stream's draws are
                # those drawn as each transmission leaves, with no event to wait for that (99.9 % of them are not)
                if loss and (rng or link.rng or self.rng(link)).random() < loss:
                    yield env.timeout(free - asked)  # the sender knows once it has left
                    link.retransmissions += 1
                    yield env.timeout(2 * link.latency_s + service)
                    continue
                break
            jitter = link.jitter_s
            delay = link.latency_s + ((rng or link.rng or self.rng(link)).exponential(jitter) if jitter else 0.0)
            yield env.timeout(free - asked + delay)
        return wait

    def _carry_flow(
        self, links: list[LinkServer], sizes: list[int], phase: str, win: Window, back_s: float, packet_bytes: int,
        rng: np.random.Generator | None = None,
    ) -> Generator[Any, Any, float]:  # fmt: skip
        """``_carry_segments`` of a TCP message on a route without loss, every segment driven from this process:
        the same hops, arithmetic and draws, at the same instants (each segment's next step is kept in a heap
        by time, then by the order it was set, as SimPy orders its events), without a process, its start and
        its end per segment, nor the condition on all of them (the paper's model messages: a third of a run's
        events). A segment goes on to the next hop as soon as its first packet has crossed (cut-through), and
        cannot leave a hop before its last packet has arrived there.

        A step that comes before every event scheduled (``env.peek()``) is taken without waking at its instant: no
        other process can run in between (nor one woken by the event that woke this one: no event of the model wakes
        two, tests/test_model.py), so the links and the event order are those a timeout would give, without its
        event (counted as one: ``count_events``); the message returns at its last step's instant (``wake_at``).

        One difference: steps of *different* messages at the very same instant (possible without jitter) are
        taken in the order their processes wake, the one that slept last going last, where a process per segment
        takes them in the order each step was set; a FIFO link they share may then serve them the other way
        round (tests/test_network.py: the link's work and end stay the same)."""
        env, bin_s = self.env, self.bin_s
        n, last = len(sizes), len(links) - 1
        flow = [0.0] * (2 * len(links))  # per hop: its segments' last service end there, and when it was due
        hop = [0] * n  # each segment's next hop (past the last: arrived)
        arrived_s = [-math.inf] * n  # when its last packet reached the hop it is at (cut-through)
        waits = [0.0] * n
        settling: dict[int, Arriving] = {}  # fan_in: packets -- a segment on its last link (``_fan_in``)
        own_end = [-math.inf]  # (``Arriving.own``)
        now, owed = env.now, 0  # steps taken without an event since the last wait (``_until``)
        # (when, order set, code): each segment k's next step (code k), its first packet's acknowledgement back
        # (n + k) or its last byte's (2n + k: ``sim.congestion.Window``); first the first flight, asked in order now
        ahead = [-math.inf]
        steps: list[tuple[float, int, int]] = [
            (self._queued_at(links, flow, ahead, sizes[k], packet_bytes, now) if win.queued else now, k, k)
            for k in range(win.sent)
        ]
        order = len(steps)
        win.last_sent_s, done = now, [0]
        while steps:
            at, _, k = steps[0]
            if at > now and at >= env.peek():  # later, and something else may come first: wake then
                yield from self._until(at, owed)
                owed, now = 0, at
            owed += at > now  # taken at once if later: nothing else happens before it (see the docstring)
            now = max(now, at)
            heapq.heappop(steps)
            if k < n and hop[k] > last:  # at the end of its route
                step = self._landing(k, n, links[last], settling, waits, done, now, back_s)
                if step is None:  # the message is in: acknowledgements still on their way change nothing
                    break
                heapq.heappush(steps, (step[0], order, step[1]))
                order += 1
                continue
            if k >= n:  # an acknowledgement back: the window may send the next ones (ACK-clocked)
                order = self._let_go(steps, order, win, k, links, flow, ahead, packet_bytes, now)
                continue
            i = hop[k]
            link, size = links[i], sizes[k]
            service = size * 8 / link.bandwidth_bps
            packet_s = packet_bytes * 8 / link.bandwidth_bps
            link.demand_s += service
            asked = now
            free = link.free_s
            start = free if free > asked else asked  # FIFO: after everything asked before
            hold = max(service, arrived_s[k] + packet_s - start)  # until its last byte left: not before it came
            free = link.free_s = start + hold
            own = flow[2 * i]  # behind its own message's segments it is being serialised, not waiting
            base = own if own > asked else asked
            waits[k] += start - base
            due = (flow[2 * i + 1] if flow[2 * i + 1] > asked else asked) + service
            flow[2 * i], flow[2 * i + 1] = free, due
            unserved = link.unserved
            if unserved and unserved[0][2] <= asked:
                link.settle(asked)
            unserved.append((due, service, free, size, phase))
            if link.series is not None:
                link.series[min(int(start / bin_s), link.series.size - 1)] += service
            if link.log is not None:
                link.log.append((asked, hold, start))
            delay = link.latency_s + (self._jitter_s(link, rng or link.rng or self.rng(link), size, packet_bytes)
                                      if link.jitter_s else 0.0)  # fmt: skip
            hop[k] = i + 1
            incoming = arrived_s[k]
            if i < last and packet_bytes < size:  # cut-through: on once its first packet is there
                arrived_s[k] = free + delay
                wake = asked + max(0.0, free - hold + packet_s + delay - asked)
            else:
                wake = asked + (free - asked + delay)
            if seg := self._fan_in(links, i, asked, incoming, start, service, free, base, packet_bytes, own_end):
                settling[k] = seg
            heapq.heappush(steps, (wake, order, k))
            order += 1
            if i == last:  # its first packet's acknowledgement: slow start's clock
                order = self._ack_first(
                    steps, order, win, n + k, self._lead(link, seg, start) + packet_s + delay + back_s
                )
        # the caller goes on at the last step's instant: that wait is the last step's event, if it was taken at once
        yield from self._until(now, max(0, owed - 1))
        return math.fsum(waits)

    def _until(self, at_s: float, owed: int) -> Generator[Any, Any, None]:
        """Count ``owed`` steps taken without an event of their own as events (``count_events``), then wait until
        exactly ``at_s`` (none if it is now)."""
        count_events(self.env, owed)
        if at_s > self.env.now:
            yield wake_at(self.env, at_s)

    def _carry(
        self, links: list[LinkServer], size: int, phase: str, flow: list[float] | None, packet_bytes: int | None,
        rng: np.random.Generator | None = None, tail: bool = False, first: Callable[[float], None] | None = None,
        on_loss: Callable[[int], None] | None = None, k: int = 0,
    ) -> Generator[Any, Any, float]:  # fmt: skip
        """One segment along its route; returns its waits behind other messages. ``flow`` (a message of several
        segments) holds, per hop, where its own earlier segments end: served then, and due on an idle link.
        ``tail``: the message's last segment (its last packet lost waits a timeout: ``_lost_packets``). ``first``:
        told when its first packet arrives, once it is served on its last link (``sim.congestion``). ``on_loss``:
        given ``k`` (its index in its message) if it loses a packet."""
        env, wait, shaped = self.env, 0.0, self.shaped
        arrived_s = -math.inf  # cut-through: when its last packet reaches the hop it is at
        late_s = -math.inf  # when its lost last packet, resent after its timer, reaches the hop it is at (``_late``)
        packet_bytes = packet_bytes or 0
        last = len(links) - 1
        for i, link in enumerate(links):
            service = size * 8 / link.bandwidth_bps
            packet_s = packet_bytes * 8 / link.bandwidth_bps  # 0 when stored and forwarded whole
            resent, timed_out_s = 0, 0.0  # TCP on a lossy link: bytes of its lost packets, sent again right behind
            if packet_bytes and link.loss:  # it (SACK), and a lost last packet's wait for its timer
                resent, timed_out_s = self._resent(link, size, packet_bytes, rng, tail, on_loss, k)
            resent_s = resent * 8 / link.bandwidth_bps
            while True:
                link.demand_s += service + resent_s
                asked = env.now
                start = link.free_s if link.free_s > asked else asked  # FIFO: after everything asked before
                hold = service  # it holds the link until its last byte left, which cannot precede its arrival
                if packet_bytes and arrived_s + packet_s > start + service:
                    hold = arrived_s + packet_s - start
                hold += resent_s
                link.free_s = start + hold
                if flow is None:
                    base = asked
                    wait += start - asked
                    due = asked + service
                else:  # behind its own message's segments it is being serialised, not waiting
                    own = flow[2 * i]
                    base = own if own > asked else asked
                    wait += start - base
                    due = (flow[2 * i + 1] if flow[2 * i + 1] > asked else asked) + service
                    flow[2 * i], flow[2 * i + 1] = link.free_s, due
                if link.unserved and link.unserved[0][2] <= asked:  # (``settle``, without a call per hop)
                    link.settle(asked)
                link.unserved.append((due, service + resent_s, link.free_s, size + resent, phase))
                if link.series is not None:
                    link.series[min(int(start / self.bin_s), link.series.size - 1)] += service + resent_s
                if link.log is not None:
                    link.log.append((asked, hold, start))
                # cut-through (a TCP hop that is not the last): on once its first packet is there (below)
                cut = packet_bytes > 0 and i < last and packet_bytes < size
                if cut or not link.loss or packet_bytes or not (yield from self._lost_whole(link, asked, service, rng)):
                    break
            # a link's draws come in the order asked, which FIFO makes the order served: drawn now, they are the
            # draws made at the end of service (one event a hop instead of two)
            delay = link.latency_s + (self._jitter_s(link, rng or self.rng(link), size, packet_bytes)
                                      if link.jitter_s else 0.0)  # fmt: skip
            noticed_s = 2 * link.latency_s if resent_s else 0.0  # losses are noticed a round trip after they happen
            # fan-in: on its last link, served packet by packet with the other links' segments (after the loop)
            merge = self._fan_in(
                links, i, asked, arrived_s, start, service + resent_s, link.free_s, base, packet_bytes, flow, resent_s
            )
            self._tell_first(first if i == last else None, link, merge, asked, start, packet_s, delay)
            if shaped and link.burst_s:  # a token bucket lets its bytes out up to its depth earlier (``leaves``)
                left = link.leaves(max(asked, arrived_s), link.free_s)
                due, served, _, nbytes, _ = link.unserved[-1]
                link.unserved[-1] = (due, served, left, nbytes, phase)  # counted once it has left
                out = max(asked, link.free_s - hold + packet_s - link.burst_s)  # its first packet has left
                arrived_s = left + delay + noticed_s
                late_s = self._late(late_s, left, delay, timed_out_s, packet_s)
                wake = out + delay if cut else left + (delay + noticed_s)  # its first packet there, or all of it
                yield env.timeout(wake - asked)
                continue
            late_s = self._late(late_s, link.free_s, delay, timed_out_s, packet_s)
            if cut:
                end = link.free_s
                arrived_s = end + delay + noticed_s
                yield env.timeout(max(0.0, end - hold + packet_s + delay - asked))  # its first packet is there
                continue
            yield env.timeout(link.free_s - asked + delay + noticed_s)
        return wait + (yield from self._merged(links[last], merge, late_s))

    @staticmethod
    def _late(late_s: float, left_s: float, delay_s: float, timed_out_s: float, packet_s: float) -> float:
        """When a segment's lost last packet reaches the next hop (-inf: none lost): resent ``timed_out_s`` after
        the segment left this hop (its bytes are in the segment's service), or, lost on an earlier hop, crossing
        this one alone (its serialisation, no queue). Apart from its segment: the segment's other packets go on,
        and the next hops serve other flows' packets while the timer runs (a segment held its next hop's link for
        the whole timeout: in a fan-in of 8 flows one lost tail held the others' shared last link, and 6.6 % of
        the model's flows took over 0.15 s against 2 % alone)."""
        carried = late_s + packet_s + delay_s
        return max(carried, left_s + timed_out_s + delay_s) if timed_out_s else carried

    def _lost_whole(self, link: LinkServer, asked: float, service: float,
                    rng: np.random.Generator | None) -> Generator[Any, Any, bool]:  # fmt: skip
        """A transmission in its own framing on a lossy link, lost or not: drawn when asked (``_carry_whole``);
        if lost, waits until it has left and for a round trip and its service more, and says so."""
        if (rng or self.rng(link)).random() >= link.loss:
            return False
        yield self.env.timeout(link.leaves(asked, link.free_s) - asked)  # the sender knows once it has left
        link.retransmissions += 1
        yield self.env.timeout(2 * link.latency_s + service)
        return True
