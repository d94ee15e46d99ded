"""Real kernel networking on one machine: each scenario host a Linux network namespace, each link a veth pair.

A ``Fabric`` builds the scenario's network (hosts and switches; devices are not namespaces) out of
namespaces joined by veth pairs. Every node has a bridge that its link ends join, so the hosts share one
layer-2 segment and a frame takes the one path the tree allows -- the simulator's route. Each direction of
a link is shaped where it leaves: a ``tbf`` qdisc at the link's bandwidth on the sending end's egress. Hosts
get an address on their bridge (``Fabric.address``). Only trees are built (a loop would need spanning tree
and could route differently from the simulator): other graphs are refused with one line.

What the kernel does here is real TCP/IP: segmentation into MSS-sized packets with their headers, slow
start, congestion control, the shared FIFO queue of each shaped direction. A link's loss drops each frame
but ARP's where it arrives, in each direction, with the link's probability (an nftables rule: hw/nftloss.py); a
lossy link carries frames, one by one (``LOSSY_GSO_MAX_SEGS``) and in order (``_steer``), as a wire does. This
kernel has no netem: a link's latency of ``DELAY_FROM_S`` or more (and its jitter with it) is a delay-only hop in user
space, a namespace of its own between the link's two ends (hw/delayline.py); a smaller one is left to the fabric's
own (tens of us a hop), and ``not_applied`` names those links.

Clean-up is not left to luck: ``Fabric.close`` deletes every namespace (their veths and bridges go with them,
and the processes in them are killed first); a reaper process started with the fabric does the same when
the pipe from this process closes, so a ``kill -9`` of the orchestrator leaves nothing behind either.
Needs root (``CAP_SYS_ADMIN`` and ``CAP_NET_ADMIN``), ``ip`` and ``tc`` from iproute2: ``unavailable``
says in one line why it cannot run.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from hw import tcp
from sim.contract import FabricProbe, HopLateness, LinkDelay
from sim.errors import UserError
from sim.scenario import LinkParams, Scenario, Transport

PREFIX = "pqt"  # every namespace of ours starts with it: pqt<tag>-<index>
NETNS_DIR = Path("/var/run/netns")
SUBNET = "10.77"  # hosts are 10.77.<i // 250>.<i % 250 + 1>/16
MTU_BYTES = 1500
FRAME_BYTES = MTU_BYTES + 14  # a full frame on a veth: the MTU and its Ethernet header (what tbf counts)
CLONE_NEWNET = 0x40000000


class NetnsUnavailable(UserError):
    """This machine cannot build the namespaces (one line for the user, as the CLI prints user errors)."""


def unavailable() -> str | None:
    """Why namespaces cannot be built here (None: they can)."""
    if sys.platform != "linux":
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root or use --backend local"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    return None


def unsupported(s: Scenario) -> str | None:
    """Why the fabric cannot build a scenario's network (one line, naming the field), or None."""
    return None if nx.is_tree(_fabric_graph(s.graph())) else f"deployment.network: {NOT_A_TREE}"


NOT_A_TREE = "the netns backend builds tree networks only (hosts and switches, no loops)"


def _fabric_graph(graph: nx.Graph) -> nx.Graph:
    """What becomes namespaces: hosts and switches (devices are emulated, not namespaces)."""
    return graph.subgraph(n for n, d in graph.nodes(data=True) if d.get("kind") != "device")


# From this latency on a link runs through a delay hop (hw/delayline.py), its jitter with it; below it the fabric's
# own latency (tens of us a hop: veth, bridge, the machine's scheduler) is as close as a user-space hop would get,
# whose own wake-ups add ~0.1-0.4 ms on this machine (the probe measures them: ``Fabric.undelayed``).
DELAY_FROM_S = 0.5e-3


def delayed(params: LinkParams) -> tuple[float, float] | None:
    """(latency_s, jitter_s) of a link the fabric delays (``DELAY_FROM_S``), else None."""
    _, latency_s, jitter_s, _ = params.resolved()
    return (latency_s, jitter_s) if latency_s >= DELAY_FROM_S else None


def delays(s: Scenario) -> list[LinkDelay]:
    """The scenario's host-to-host links the fabric delays (``delayed``), as a run's summary records them."""
    return [LinkDelay(link=i, latency_s=d[0], jitter_s=d[1])
            for i, link in enumerate(s.deployment.network.links) if (d := delayed(link)) is not None]  # fmt: skip


def hop_lateness(report: dict[str, Any]) -> HopLateness:
    """One direction of a delay hop's answer to ``?`` (hw/delayline.py ``Lateness.report``); zeros where it delayed
    no packet."""
    written = report["written_s"] or dict.fromkeys(("mean", "p50", "p95", "max"), 0.0)
    return HopLateness(packets=report["packets"], read_p95_s=(report["read_s"] or {}).get("p95", 0.0),
                       **{f"written_{k}_s": v for k, v in written.items()})  # fmt: skip


def not_applied(s: Scenario) -> str | None:
    """What of the scenario's host-to-host links the kernel will not reproduce here (a warning), or None.
    Loss is applied (hw/nftloss.py), and latency from ``DELAY_FROM_S`` on with its jitter (hw/delayline.py);
    devices' access links are shaped by their emulator in full (latency, jitter and loss included)."""
    odd = [f"{link.a}-{link.b}" for link in s.deployment.network.links
           if any(link.resolved()[1:3]) and delayed(link) is None]  # fmt: skip
    if not odd:
        return None
    more = " ..." if len(odd) > 3 else ""
    return (f"links {', '.join(odd[:3])}{more}: latency and jitter under {DELAY_FROM_S * 1e3:g} ms are not "
            "applied (this kernel has no netem); they run at their bandwidth with the fabric's own latency (tens of "
            "us)")  # fmt: skip


def _run(*cmd: str, check: bool = True) -> str:
    """An iproute2 command (``ip``/``tc`` and our own names: no shell, no user string); its output."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode and check:
        raise NetnsUnavailable(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


# From this rate on a link's bucket holds a whole 64 KiB GSO packet, so tbf passes the kernel's segmentation
# offload packets whole instead of cutting them into frames: frame by frame, one TCP stream cost ~11.5 ms of CPU
# a MB (veth, bridge, tbf, TCP; 0.6-0.9 Gbit/s on one vCPU), and a gigabit fabric measured this machine more than
# TCP; with the deeper bucket one stream gets 1,000 of 1,000 Mbit/s (README "Real kernel networking"). The
# simulator is given the bucket (``burst_bytes``), so its head start is modelled, not an error.
GSO_RATE_BPS = 300e6
GSO_BURST_BYTES = 65536


# A lossy link carries frames, not GSO packets: segmentation offload keeps a TCP flight of up to 45 segments one
# packet through veth, bridge and tbf, and the loss rule (hw/nftloss.py) then dropped it whole -- at a gigabit,
# where the bucket passes GSO packets whole, 172 of 200 fresh 64 KiB messages at 1 % loss per link resent nothing
# and the others 5-16 segments at once, a loss no wire has. With ``gso_max_segs`` 1 on both ends of the link the
# kernel cuts every packet into frames as it leaves onto it (after the qdisc: tbf's shaping is unchanged), each
# lost on its own: 81 of 200 resent nothing, 75 one segment, 31 two, as at 100 Mbit/s where tbf cuts them (67 /
# 75 / 36). One stream still gets 983-998 of 1,000 Mbit/s, but a 64 KiB message takes 0.35-0.44 ms instead of 0.16:
# the frames' CPU (docs/network-validation.md, stop 61).
LOSSY_GSO_MAX_SEGS = 1


# A framed link (lossy, or ``Fabric.frames``) steers a flow's packets to one CPU at each end (receive packet
# steering, ``rps_cpus``): without it a gigabit link reorders them -- tbf hands a packet on from whichever CPU
# dequeues it (the sender's, or its timer's), and each CPU's backlog goes on in parallel -- and TCP takes an
# overtaken frame for a lost one. At 1 % loss per link 1 MB messages resent 18.8 segments each for 14.2 frames lost
# (the twin's paper-3node rounds: 52,176 resent for ~22,600 lost) and 3.0 % waited a retransmission timeout, steered
# 14.2 and 2.3 % (23,211). Lossless GSO links are not steered: there a flow's reordering costs little (0.2-3.6
# segments resent a 1 MB message) and steering costs a cross-CPU hand-over at every hop (a single 64 KiB message
# 0.16 -> 0.31 ms, a single 1 MB one 8.1 -> 9.2 ms; the lossless matrix 63 -> 57 of 72 cells within goal).
# 100 Mbit/s links did not reorder (docs/network-validation.md, stop 62).
def _rps_mask() -> str:
    """Every CPU, as /sys/class/net/*/queues/rx-*/rps_cpus writes it (hex, a comma between 32-bit groups)."""
    digits = f"{(1 << (os.cpu_count() or 1)) - 1:x}"
    groups = [digits[max(0, i - 8) : i] for i in range(len(digits), 0, -8)]
    return ",".join(reversed(groups))


def _steer(ns: str, dev: str) -> bool:
    """Receive packet steering on ``dev`` in namespace ``ns`` (its sysfs is the namespace's under ``ip netns exec``);
    False where this kernel has none (built without RPS): the link may then reorder at a gigabit."""
    done = subprocess.run(["ip", "netns", "exec", ns, "tee", f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"],  # noqa: S603, S607
                          input=_rps_mask(), capture_output=True, text=True, check=False)  # fmt: skip
    return done.returncode == 0


def tbf_burst_bytes(rate_bps: float) -> int:
    """The token bucket's depth: a 64 KiB GSO packet from GSO_RATE_BPS on, two full frames below. With one
    frame tbf releases each frame by a timer whose lateness the link then never makes up: one stream got 96.1 %,
    97.2 % and 98.1 % of 20, 10 and 5 Mbit/s, with two frames 99.8-100.3 % (``probe``, 2026-12-01); one frame at
    100 Mbit/s made a 64 KiB message 39 % slow. The simulator models the bucket's head start (``burst_bytes``;
    bench/net_fidelity.py, docs/network-validation.md)."""
    if rate_bps >= GSO_RATE_BPS:
        return GSO_BURST_BYTES
    return 2 * FRAME_BYTES


def bucket_bytes(params: LinkParams) -> int:
    """A link's token bucket on the fabric: the scenario's ``burst_bytes``, else ``tbf_burst_bytes``."""
    return params.burst_bytes or tbf_burst_bytes(params.resolved()[0])


@dataclass
class Fabric:
    """The namespaces and links of one network; a context manager that always removes them."""

    graph: nx.Graph  # nodes with ``kind`` host | switch | device, edges with ``params`` (sim.scenario.LinkParams)
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    names: dict[str, str] = field(default_factory=dict)  # scenario node -> namespace
    addresses: dict[str, str] = field(default_factory=dict)  # scenario host -> its IPv4 address
    reaper: subprocess.Popen[bytes] | None = None
    frames: bool = False  # every link carries frames, not GSO packets, as a lossy one does (``LOSSY_GSO_MAX_SEGS``)
    drop: bool = True  # lossy links drop frames (False: the same links, framed alike, lose nothing: ``probe_clean``)
    in_order: bool = field(default=True, init=False)  # its framed links steer a flow to one CPU (``_steer``); False
    # where the kernel cannot (set as it builds)
    seed: int = 0  # the delay hops' jitter: link j's stream is the seed's j-th child (spawn key (j,))
    delay: bool = True  # links of ``DELAY_FROM_S`` or more run through delay hops (False: the same links without)
    # the TCP congestion control of every connection the twin opens across it (``hw.tcp``: the scenario's), its
    # probes' too; "": the namespaces' default, the machine's
    congestion_control: str = ""
    delay_lines: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)  # hw/delayline.py, running
    delay_ends: list[tuple[str, str]] = field(default_factory=list, init=False)  # each one's link (a, b), in order

    def __enter__(self) -> Fabric:
        self.build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespace(self, node: str) -> str:
        return self.names[node]

    def address(self, host: str) -> str:
        return self.addresses[host]

    def build(self) -> None:
        if (why := unavailable()) is not None:
            raise NetnsUnavailable(why)
        net = _fabric_graph(self.graph)
        if not nx.is_tree(net):
            raise NetnsUnavailable(NOT_A_TREE)
        self.reaper = subprocess.Popen(  # noqa: S603 - our interpreter and module
            [sys.executable, "-m", "hw.netns", "reap", f"{PREFIX}{self.tag}-"],
            stdin=subprocess.PIPE, start_new_session=True,  # not stopped by the Ctrl-C of our process group
        )  # fmt: skip
        try:
            for i, node in enumerate(net.nodes):
                ns = self.names[node] = f"{PREFIX}{self.tag}-{i}"
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "-n", ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
                _run("ip", "-n", ns, "link", "set", "br0", "up")
                if net.nodes[node].get("kind") == "host":
                    ip = self.addresses[node] = f"{SUBNET}.{len(self.addresses) // 250}.{len(self.addresses) % 250 + 1}"
                    _run("ip", "-n", ns, "addr", "add", f"{ip}/16", "dev", "br0")
            for j, (a, b, data) in enumerate(net.edges(data=True)):
                rate_bps, _, _, loss = data["params"].resolved()
                burst = bucket_bytes(data["params"])
                delay = delayed(data["params"]) if self.delay else None
                if delay is not None:
                    self.delay_ends.append((a, b))
                self._link(self.names[a], self.names[b], f"l{j}", rate_bps, burst, loss,
                           None if delay is None else (j, *delay))  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _link(self, ns_a: str, ns_b: str, name: str, rate_bps: float, burst_bytes: int, loss: float = 0.0,
              delay: tuple[int, float, float] | None = None) -> None:  # fmt: skip
        """Link ends ``{name}a`` in ``ns_a`` and ``{name}b`` in ``ns_b``, each on its bridge, shaped as it sends and
        losing frames as it receives: one veth pair, or with ``delay`` (the link's index, latency_s, jitter_s) a veth
        pair from each end into a hop namespace of its own, where hw/delayline.py joins the two."""
        a, b = f"{name}a", f"{name}b"
        if delay is None:
            _run("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
        else:
            self._delay_hop(name, delay[0], ns_a, ns_b)
        for ns, dev in ((ns_a, a), (ns_b, b)):
            _run("ip", "-n", ns, "link", "set", dev, "master", "br0")
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{int(rate_bps)}bit",
                 "burst", str(burst_bytes), "limit", str(64 * 1024 * 1024))  # fmt: skip
            # frames, not GSO packets, where a GSO packet would be lost or jittered whole (``LOSSY_GSO_MAX_SEGS``; a
            # wire's jitter is a frame's, in order, as the simulator draws it: sim/network.py ``_jitter_s``), each
            # flow steered to one CPU (an overtaken frame is taken for a lost one: ``_steer``)
            if loss > 0 or self.frames or (delay is not None and delay[2] > 0):
                _run("ip", "-n", ns, "link", "set", "dev", dev, "gso_max_segs", str(LOSSY_GSO_MAX_SEGS))
                self.in_order &= _steer(ns, dev)
            if loss > 0 and self.drop:  # each direction loses its frames where they arrive (hw/nftloss.py)
                from hw.nftloss import drop_at_random

                drop_at_random(ns, dev, loss)
        if delay is not None:
            self._start_delay_line(name, *delay)

    def _delay_hop(self, name: str, j: int, ns_a: str, ns_b: str) -> None:
        """Link ``j``'s hop namespace (``{PREFIX}{tag}-d{j}``: removed with the fabric) with its devices ``{name}x``,
        the peer of end ``{name}a``, and ``{name}y``, the peer of end ``{name}b``, up."""
        ns = f"{PREFIX}{self.tag}-d{j}"
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", f"{name}x", "netns", ns, "type", "veth", "peer", "name", f"{name}a", "netns", ns_a)
        _run("ip", "link", "add", f"{name}y", "netns", ns, "type", "veth", "peer", "name", f"{name}b", "netns", ns_b)
        for dev in (f"{name}x", f"{name}y"):
            _run("ip", "-n", ns, "link", "set", dev, "up")

    def _start_delay_line(self, name: str, j: int, latency_s: float, jitter_s: float) -> None:
        """hw/delayline.py in link ``j``'s hop namespace, its jitter stream spawned from ``seed``; back once it holds
        its devices (it answered its first order)."""
        seed = int(np.random.SeedSequence(self.seed, spawn_key=(j,)).generate_state(1)[0])  # the seed's j-th child
        cmd = ["ip", "netns", "exec", f"{PREFIX}{self.tag}-d{j}", sys.executable, "-m", "hw.delayline", f"{name}x",
               f"{name}y", repr(latency_s), repr(jitter_s), str(seed)]  # fmt: skip
        line = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)  # noqa: S603
        self.delay_lines.append(line)
        self._order(line, b"1")

    @staticmethod
    def _order(line: subprocess.Popen[bytes], order: bytes) -> None:
        """Give a delay line an order and wait for its answer (hw/delayline.py: ``0`` pass on, ``1`` delay)."""
        assert line.stdin is not None and line.stdout is not None
        try:
            line.stdin.write(order)
            line.stdin.flush()
            answer = line.stdout.read(1)
        except OSError:
            answer = b""
        if answer != order:
            raise NetnsUnavailable(f"a link's delay hop (hw/delayline.py) did not answer (exit code {line.poll()})")

    @contextlib.contextmanager
    def undelayed(self) -> Iterator[None]:
        """The block with every delay hop passing packets on at once: the fabric's own latency and rate (``probe``)."""
        for line in self.delay_lines:
            self._order(line, b"0")
        try:
            yield
        finally:
            for line in self.delay_lines:
                if line.poll() is None:
                    self._order(line, b"1")

    def lateness(self) -> dict[tuple[str, str], list[HopLateness]]:
        """How late each delay hop passed on its delayed packets so far, by its link's ends (a, b): a to b, then b to
        a (hw/delayline.py's ``?``). A hop that does not answer is left out."""
        out: dict[tuple[str, str], list[HopLateness]] = {}
        for ends, line in zip(self.delay_ends, self.delay_lines, strict=False):
            assert line.stdin is not None and line.stdout is not None
            try:
                line.stdin.write(b"?")
                line.stdin.flush()
                report = json.loads(line.stdout.readline()) if line.stdout.read(1) == b"?" else None
                out[ends] = [hop_lateness(d) for d in report or ()]
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return out

    @property
    def lossy(self) -> bool:
        """Whether any of its links (between hosts and switches) loses frames."""
        net = _fabric_graph(self.graph)
        return self.drop and any(p.resolved()[3] > 0 for _, _, p in net.edges(data="params"))

    def retransmissions(self) -> int:
        """TCP segments the hosts' kernels sent again (``RetransSegs`` of each host namespace's /proc/net/snmp)."""
        total = 0
        for host in [h for h in self.addresses if h in self.names]:  # none once closed
            snmp = _run("ip", "netns", "exec", self.names[host], "cat", "/proc/net/snmp", check=False).splitlines()
            tcp = [line.split()[1:] for line in snmp if line.startswith("Tcp:")]
            if len(tcp) == 2 and "RetransSegs" in tcp[0]:
                total += int(tcp[1][tcp[0].index("RetransSegs")])
        return total

    def close(self) -> None:
        remove(f"{PREFIX}{self.tag}-")  # the delay lines too: they run in the fabric's hop namespaces
        for line in self.delay_lines:
            with contextlib.suppress(subprocess.TimeoutExpired):
                line.wait(5)
        self.delay_lines.clear()
        self.delay_ends.clear()
        self.names.clear()
        if self.reaper is not None and self.reaper.stdin is not None:
            self.reaper.stdin.close()  # the reaper finds nothing left and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.reaper.wait(5)
            self.reaper = None


PROBE_PINGS = 200
PROBE_STREAMS = 5  # the throughput is their median: one 80 ms stream read 610 to 737 Mbit/s in three tries
PROBE_STREAM_S = 0.05  # each lasts about this long at the nominal rate
PROBE_BYTES = (256 * 1024, 16 * 1024 * 1024)  # its bounds


def probe(fabric: Fabric, a: str, b: str) -> FabricProbe:
    """``_probe`` with the fabric's delay hops passing packets on at once: its own latency and rate."""
    with fabric.undelayed():
        return _probe(fabric, a, b)


def _probe(fabric: Fabric, a: str, b: str) -> FabricProbe:
    """Measure the fabric between hosts ``a`` and ``b`` (built, no traffic yet): a 1-byte TCP ping-pong's median
    round trip, and the median throughput of ``PROBE_STREAMS`` streams on one TCP connection, each after its
    first quarter (slow start left out), in wire bits/s as ``sim.scenario.Transport`` frames it. ~0.3 s. A stream
    that could not be timed is left out and another sent, up to twice ``PROBE_STREAMS``; fewer than half of
    ``PROBE_STREAMS`` timed is ``NetnsUnavailable``."""
    net = _fabric_graph(fabric.graph)
    path = nx.shortest_path(net, a, b)
    hops = [net.edges[u, v]["params"] for u, v in itertools.pairwise(path)]
    rate_bps = min(p.resolved()[0] for p in hops)
    burst = min(bucket_bytes(p) for p in hops if p.resolved()[0] == rate_bps)
    (ping, echo), (stream, sink) = _dialled(fabric, a, b, 2)
    conns = (ping, stream, echo, sink)
    try:
        cc = tcp.of(stream)
        rtt_s = _ping(ping, echo)
        nbytes = int(min(max(rate_bps * PROBE_STREAM_S / 8, PROBE_BYTES[0]), PROBE_BYTES[1]))
        rates = []
        for _ in range(2 * PROBE_STREAMS):  # a stream whose reader was away past its quarter measures nothing
            if (timed := _stream(stream, sink, nbytes)) is not None:
                rates.append(Transport().wire_bytes(timed[0]) * 8 / timed[1])
            if len(rates) == PROBE_STREAMS:
                break
    finally:
        for c in conns:
            c.close()
    if len(rates) < (PROBE_STREAMS + 1) // 2:
        raise NetnsUnavailable(
            f"the fabric's probe streams could not be timed ({len(rates)} of "
            f"{2 * PROBE_STREAMS}: their reader was descheduled past each one's first quarter)"
        )
    throughput_bps = statistics.median(_possible(rates, rate_bps))
    return FabricProbe(hosts=(a, b), hops=len(path) - 1, latency_s=rtt_s / 2 / (len(path) - 1),
                       throughput_bps=throughput_bps, rate_bps=rate_bps, burst_bytes=burst,
                       congestion_control=cc)  # fmt: skip


def hop_latency_s(fabric: Fabric, a: str, b: str) -> float:
    """One hop's latency between hosts ``a`` and ``b`` as the fabric stands, its delay hops delaying: a 1-byte TCP
    ping-pong's median round trip over the path, halved, per hop (``_probe``'s, without the streams). Beside the
    links' latencies it holds what a delay hop adds to each packet it forwards (its wake-up and copy)."""
    hops = nx.shortest_path_length(_fabric_graph(fabric.graph), a, b)
    ((ping, echo),) = _dialled(fabric, a, b, 1)
    with ping, echo:
        return _ping(ping, echo) / 2 / hops


def _dialled(fabric: Fabric, a: str, b: str, count: int) -> list[tuple[socket.socket, socket.socket]]:
    """``count`` TCP connections from host ``a`` to ``b`` (Nagle off: the probes time single bytes), each as
    (``a``'s socket, ``b``'s); the caller closes them."""
    with inside(fabric.namespace(b)):
        ls = socket.create_server((fabric.address(b), 0))
    with ls:
        tcp.use(ls, fabric.congestion_control)  # its connections take it
        with inside(fabric.namespace(a)):
            out = [dial(ls.getsockname(), fabric.congestion_control) for _ in range(count)]
        pairs = [(c, ls.accept()[0]) for c in out]
    for pair in pairs:
        for c in pair:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return pairs


def probe_clean(fabric: Fabric, a: str, b: str) -> FabricProbe:
    """``probe`` of the fabric's links without their loss: where a link is lossy, on a copy built for the probe
    whose links drop nothing (framed as the lossy ones are) and removed after it. On the lossy links themselves a
    stream's throughput is the loss's doing (at 10 % loss a gigabit fabric read 396 Mbit/s, "CPU-bound"), which
    ``--fabric-of`` would give the simulator as the links' rate on top of the scenario's loss; and a lost ping backs
    TCP's timer off past the probe's timeout."""
    if not fabric.lossy:
        return probe(fabric, a, b)
    with Fabric(fabric.graph, frames=fabric.frames, drop=False, congestion_control=fabric.congestion_control) as clean:
        return probe(clean, a, b)


KERNEL_PROBE_BPS = 40e9  # a fabric this fast limits nothing: one TCP stream across it measures the kernel


KERNEL_PROBES = 7  # a probe's reading moved 1.84-2.82 Gbit/s from one second to the next here (2026-12-01 18:06)
KERNEL_PROBE_GAP_S = 0.5  # between them, so they meet more than one of the host's speed states (which last seconds)


def kernel_rate_bps() -> float:
    """One TCP stream's throughput across a fabric whose links limit nothing (``probe`` on a two-host star at
    ``KERNEL_PROBE_BPS``): what this machine's kernel moves between namespaces (on our 2-vCPU VM ~2-3 Gbit/s; a 64 KiB
    message takes ~0.2 ms at any link rate of a gigabit or more), the simulated transport's ``host_rate_bps``
    (bench/net_fidelity.py, bench/twin_fidelity.py --netns). The median of ``KERNEL_PROBES`` probes on one fabric:
    twelve single probes a second apart read 1.84-2.82 Gbit/s, their median 2.15, and a matrix had been simulated
    behind one that read 1.94. Spaced ``KERNEL_PROBE_GAP_S`` apart; the median still follows the host's state of
    those seconds (the gigabit block at 18:06 measured 2.82 Gbit/s, the highest of the twelve single probes a
    minute before). ~5 s, root."""
    g = nx.Graph()
    g.add_node("sw", kind="switch")
    for h in ("a", "b"):
        g.add_node(h, kind="host")
        g.add_edge(h, "sw", params=LinkParams(bandwidth_bps=KERNEL_PROBE_BPS, latency_s=0.0, jitter_s=0.0, loss=0.0,
                                              burst_bytes=tbf_burst_bytes(KERNEL_PROBE_BPS)))  # fmt: skip
    with Fabric(g) as fabric:
        rates = []
        for i in range(KERNEL_PROBES):
            if i:
                time.sleep(KERNEL_PROBE_GAP_S)
            rates.append(probe(fabric, "a", "b").throughput_bps)
        return statistics.median(rates)


POSSIBLE_OVER_RATE = 1.1  # a reading above this x the rate no link gives (``_possible``)


def _possible(rates_bps: list[float], rate_bps: float) -> list[float]:
    """The streams' readings a link of ``rate_bps`` can give. Over a stream's ~37 ms a token bucket adds at most
    its depth (1-2 %); a reading far above the rate is a late timestamp: the reader, on a busy machine, was
    descheduled between a read and its clock, and counted bytes that came meanwhile (up to 2.3x the rate with two
    busy loops beside a gigabit probe). Where none is possible (a CI run's two test workers beside it: 1.3x on
    every stream), the most the link can give: the probe then says it kept up, not a figure no link reaches."""
    cap = POSSIBLE_OVER_RATE * rate_bps
    return [r for r in rates_bps if r <= cap] or [cap]


def dial(address: tuple[str, int], congestion_control: str) -> socket.socket:
    """A TCP connection to ``address`` from the calling thread's namespace, with ``congestion_control`` (``hw.tcp``)
    from its first byte."""
    s = tcp.dial(address, congestion_control, timeout_s=10)
    s.settimeout(10)  # as its callers' probes expect
    return s


def congestion_control(fabric: Fabric, host: str) -> str:
    """The TCP congestion control a host's namespace gives new connections (a new namespace takes the
    machine's default); "" where unreadable."""
    with inside(fabric.namespace(host)), contextlib.suppress(OSError):  # /proc/sys/net is the thread's namespace's
        return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text(encoding="utf-8").strip()
    return ""


def _ping(client: socket.socket, server: socket.socket) -> float:
    def answer() -> None:
        while b := server.recv(1):
            server.sendall(b)
            if b == b"q":
                return

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    rtts = []
    for _ in range(PROBE_PINGS):
        t0 = time.perf_counter()
        client.sendall(b"x")
        client.recv(1)
        rtts.append(time.perf_counter() - t0)
    client.sendall(b"q")
    client.recv(1)
    t.join(5)
    return statistics.median(rtts)


def _queued_bytes(sock: socket.socket) -> int:
    """Bytes waiting in a TCP socket's receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


STREAM_MARKS = struct.Struct("!qdqd")  # (bytes, when) at the first quarter and at the end


def _stream(sender: socket.socket, receiver: socket.socket, nbytes: int) -> tuple[int, float] | None:
    """Bytes the receiver got after the first quarter of an ``nbytes`` stream, and how long they took; None when
    the reader's first read past the quarter already took the rest (it was descheduled that long: CI, 2026-12-01).

    The receiver reads in a process of its own: a thread of this one, sharing its interpreter's lock with the
    sending thread, could fall behind on a busy machine, and the backlog it then drained at memory speed made
    the stream look faster than its link (1.21 Gbit/s measured over a 0.94 Gbit/s one). A process of its own can
    still be descheduled (1.32 Gbit/s once under a CI run's two test workers), so the count starts at the first
    read after the first quarter that emptied the socket's queue (fewer bytes than the buffer holds): from
    there on every byte counted came over the link while it was timed."""
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the reader: only its socket and its pipe, then out
        try:
            os.close(done_r)
            buf, got = bytearray(1 << 20), 0
            marks: list[tuple[int, float]] = []
            quarter: tuple[int, float] | None = None
            while got < nbytes and (n := receiver.recv_into(buf)):
                got += n
                if got >= nbytes // 4 and not marks:
                    quarter = quarter or (got, time.perf_counter())
                    # caught up with the link: nothing was waiting behind this read, nor came in meanwhile (what
                    # arrived while the read held the socket waits in its backlog, drained when it returns)
                    if n < len(buf) and _queued_bytes(receiver) == 0:
                        marks.append((got, time.perf_counter()))
            if (not marks or marks[0][0] >= got) and quarter is not None:  # caught up only at the end, or never
                marks = [quarter]  # the first quarter's mark, as before
            marks.append((got, time.perf_counter()))
            os.write(done_w, STREAM_MARKS.pack(*marks[0], *marks[-1]))
        finally:
            os._exit(0)
    os.close(done_w)
    try:
        sender.sendall(bytes(nbytes))
        with os.fdopen(done_r, "rb") as reply:
            report = reply.read(STREAM_MARKS.size)
    except BaseException:  # the reader would wait for the rest of the stream: it ends here
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.waitpid(pid, 0)
    if len(report) < STREAM_MARKS.size:
        raise NetnsUnavailable("the fabric's probe stream did not arrive")
    got0, t0, got1, t1 = STREAM_MARKS.unpack(report)  # (perf_counter: one clock for both processes)
    return (got1 - got0, t1 - t0) if got1 > got0 and t1 > t0 else None


def ours(prefix: str = PREFIX) -> list[str]:
    """Our namespaces on this machine (by name)."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def remove(prefix: str) -> None:
    """Kill every process in the namespaces named ``prefix*``, then delete them (first all the processes: a delay
    hop's forwarder would see its link go down with a host's namespace)."""
    names = ours(prefix)
    for ns in names:
        pids = _run("ip", "netns", "pids", ns, check=False)
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    for ns in names:
        _run("ip", "netns", "del", ns, check=False)


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block's socket calls in namespace ``ns`` (this thread only: ``setns`` is per thread);
    sockets keep the namespace they were made in."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise NetnsUnavailable(f"setns into {ns}: {os.strerror(ctypes.get_errno())}")
        yield
    finally:
        libc.setns(home, CLONE_NEWNET)
        os.close(target)
        os.close(home)


def _reap(prefix: str) -> None:
    """Wait for the orchestrator's pipe to close (it ended, however it ended), then remove what is left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    remove(prefix)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "reap" and sys.argv[2].startswith(PREFIX):
        _reap(sys.argv[2])
    else:
        sys.exit("usage: python -m hw.netns reap PREFIX")
