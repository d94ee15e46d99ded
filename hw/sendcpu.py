"""Blocking sends timed over a fabric's namespaces, and the sending kernel's rate they give (issue 18).

Over veth the kernel moves a TCP message in the context that sends it, the receiving end's work included, as long
as the links take packets as fast as the kernel makes them (bench/send_hold.py, docs/twin-validation.md "Stop 82":
on our 2-vCPU VM, over links of 800 Mbit/s and up, ``sendall`` held its sender 96-97 % of the transfer, its thread
on a core 79-97 % of it). So the machine's kernel is a CPU-bound stage before the links
(``Transport.host_rate_bps``), and what it costs depends on the links: the sender's CPU per byte over gigabit
``tbf`` links was 2.4x that over 10 Gbit/s ones (7.36 against 3.12 ms per 1 MB message). One stream across a
fabric that limits nothing (``hw.netns.kernel_rate_bps``) measures the cheaper path: 1.91 Gbit/s, where the
twin's gigabit transfers moved ~0.8 Gbit/s (docs/twin-validation.md "Stop 83").

``timed_sends`` sends messages over one kept connection of a fabric and times each: how long ``sendall`` held
its thread, when the reader (a process of its own) had it, both threads' CPU time and the whole machine's. The
threads' CPU times do not add up to the work (2026-12-06 23:00: 2.7-4.7 ms sender and 1.3-1.9 ms reader for 9-10 ms
of the machine's per gigabit message: softirq work is charged to whatever runs, or to no thread), so
``kernel_cpu_rate_bps`` turns the machine's busy time per message into the stage's rate on the fabric's own
links, at the cores' speed of the moment, and to a profile's speed by the speed probe (hw/speed.py) taken in the
gaps between the messages.
"""

from __future__ import annotations

import fcntl
import os
import socket
import statistics
import struct
import termios
import time
from dataclasses import dataclass

import networkx as nx

from hw import tcp
from hw.netns import Fabric, dial, inside
from hw.speed import jiffies, probe_us
from sim.scenario import MAX_BANDWIDTH_BPS, MIN_BANDWIDTH_BPS, Transport

WARM_UP = 2  # messages left out of the statistics: the window opening
MESSAGE_BYTES = 1_004_382  # a 250 k-parameter model's record as the twin sends it (the netns cells' size)
_STAMP = struct.Struct("dd")  # when the reader had the message, and its CPU time for it


@dataclass(frozen=True)
class Send:
    """One timed message: seconds ``sendall`` held its thread, until the reader had it (from the send's start),
    the sending thread's and the reader's CPU seconds; bytes unsent when ``sendall`` returned, and ``SO_SNDBUF``;
    the speed probe's µs just before it."""

    held_s: float
    arrived_s: float
    sender_cpu_s: float
    reader_cpu_s: float
    unsent_bytes: int
    sndbuf_bytes: int
    probe_us: float
    machine_cpu_s: float  # every core's busy time from the send's start to its arrival (``_busy_s``)


def _busy_s() -> float:
    """Busy seconds of all cores since boot (``hw.speed.jiffies``: softirq work included, which no thread's CPU time
    may count), in ticks of 1/``SC_CLK_TCK`` s. OSError where /proc/stat cannot be read."""
    counted = jiffies("cpu")
    if counted is None:
        raise OSError("/proc/stat: no cpu line to count the machine's busy time from")
    return counted[0] / os.sysconf("SC_CLK_TCK")


def _reader(conn: socket.socket, messages: int, nbytes: int, stamps: int) -> None:
    """In the forked reader: read each message whole, stamp when it had it."""
    buf = bytearray(1 << 20)
    for _ in range(messages):
        got, cpu0 = 0, time.thread_time()
        while got < nbytes:
            n = conn.recv_into(buf, min(len(buf), nbytes - got))
            if not n:
                return
            got += n
        os.write(stamps, _STAMP.pack(time.perf_counter(), time.thread_time() - cpu0))


def _unsent_bytes(sock: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])


def _connect(fabric: Fabric, src: str, dst: str) -> tuple[socket.socket, socket.socket]:
    with inside(fabric.namespace(dst)):
        listener = socket.create_server((fabric.address(dst), 0))
    tcp.use(listener, fabric.congestion_control)
    with inside(fabric.namespace(src)):
        sender = dial(listener.getsockname(), fabric.congestion_control)
    receiver, _ = listener.accept()
    listener.close()
    for c in (sender, receiver):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sender, receiver


def timed_sends(graph: nx.Graph, src: str, dst: str, messages: int, gap_s: float, nbytes: int) -> list[Send]:
    """``messages`` messages of ``nbytes`` from host ``src`` to ``dst`` of ``graph`` built as namespaces, one
    every ``gap_s`` idle seconds over one kept connection, each timed (``Send``). OSError: the reader ended early,
    a send timed out; UserError: the fabric would not build. Root."""
    with Fabric(graph) as fabric:
        return sends_on(fabric, src, dst, messages, gap_s, nbytes)


def sends_on(fabric: Fabric, src: str, dst: str, messages: int, gap_s: float, nbytes: int) -> list[Send]:
    """``timed_sends`` on a fabric already built (a lossy one loses packets of them: ``kernel_rate_clean``)."""
    rows = []
    sender, receiver = _connect(fabric, src, dst)
    stamps_r, stamps_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sender.close()
            _reader(receiver, messages, nbytes, stamps_w)
        finally:
            os._exit(0)
    os.close(stamps_w)
    receiver.close()
    body = bytes(nbytes)
    try:
        for _ in range(messages):
            time.sleep(gap_s)
            probe = probe_us()
            busy0, cpu0, t0 = _busy_s(), time.thread_time(), time.perf_counter()
            sender.sendall(body)
            t1, cpu1 = time.perf_counter(), time.thread_time()
            unsent, sndbuf = _unsent_bytes(sender), sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            stamp = os.read(stamps_r, _STAMP.size)
            if len(stamp) < _STAMP.size:
                raise OSError("the reader process ended before the message arrived")
            busy = _busy_s() - busy0
            arrived, reader_cpu = _STAMP.unpack(stamp)
            rows.append(Send(t1 - t0, arrived - t0, cpu1 - cpu0, reader_cpu, unsent, sndbuf, probe, busy))
    finally:
        sender.close()
        os.waitpid(pid, 0)
        os.close(stamps_r)
    return rows


SENDS = 32  # ~3 s: 30 counted, 80 ms apart as a round's messages are (the busy time is counted in 10 ms ticks)
GAP_S = 0.08


def cpu_rate_bps(sends: list[Send], nbytes: int, transport: Transport | None = None) -> float:
    """A message's wire bytes (``Transport.wire_bytes``, headers included) per second of the machine's CPU it took:
    every core's busy time from each send's start to its arrival, summed over ``sends`` (ticks do not add up to
    one message's time: the sum does)."""
    busy_s = sum(s.machine_cpu_s for s in sends) / len(sends)
    return 8 * (transport or Transport()).wire_bytes(nbytes) / max(busy_s, 1e-6)


def kernel_cpu_rate_bps(graph: nx.Graph, src: str, dst: str, calibrated_probe_us: float | None = None) -> float:
    """The machine's kernel as a stage of ``graph``'s links from ``src`` to ``dst``: ``cpu_rate_bps`` of ``SENDS``
    messages of ``MESSAGE_BYTES``. With ``calibrated_probe_us`` (a profile's ``platform.speed_probe_us``), at that
    speed: times the sends' median probe over it (cores slower now than calibrated read a lower rate; the model
    scales the rate by each run's ``cpu_speed``, as it does the profile's costs). Root."""
    return at_speed(timed_sends(graph, src, dst, SENDS, GAP_S, MESSAGE_BYTES)[WARM_UP:], calibrated_probe_us)


def at_speed(sends: list[Send], calibrated_probe_us: float | None) -> float:
    """``cpu_rate_bps`` of messages of ``MESSAGE_BYTES``, at the speed of ``calibrated_probe_us`` where given; within
    the rates a transport takes."""
    rate = cpu_rate_bps(sends, MESSAGE_BYTES)
    if calibrated_probe_us:
        rate *= statistics.median(s.probe_us for s in sends) / calibrated_probe_us
    return min(max(rate, MIN_BANDWIDTH_BPS), MAX_BANDWIDTH_BPS)


RUN_SENDS = 12  # before a twin run: ~1 s, 10 counted


def kernel_rate_clean(fabric: Fabric, src: str, dst: str, calibrated_probe_us: float | None = None) -> float:
    """``kernel_cpu_rate_bps`` on a fabric already built, with ``RUN_SENDS`` messages (a netns twin run measures
    it before its nodes start: ``Summary.fabric``); on a lossless copy of a lossy one, where a loss's resending would
    count as the kernel's work (as ``hw.netns.probe_clean`` probes), and without delay hops, whose forwarding in
    user space is no kernel's work (over Wi-Fi-like links it read 70 Mbit/s per CPU-second, below the links' rate)."""
    if fabric.lossy or fabric.delay_lines:
        with Fabric(fabric.graph, frames=fabric.frames, drop=False, delay=False,
                    congestion_control=fabric.congestion_control) as clean:  # fmt: skip
            return kernel_rate_clean(clean, src, dst, calibrated_probe_us)
    return at_speed(sends_on(fabric, src, dst, RUN_SENDS, GAP_S, MESSAGE_BYTES)[WARM_UP:], calibrated_probe_us)
