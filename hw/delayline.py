"""A link's latency and jitter on the netns backend: a delay-only hop in user space, since this kernel has no netem.

A link given one (``hw.netns.DELAY_FROM_S``) runs through a namespace of its own between its two veth ends, where this
program forwards every frame between the two devices there (``AF_PACKET``, with the kernel's virtio-net header, so a
64 KiB segmentation-offload packet crosses whole and is cut into frames later, as on a plain veth) after holding it
``latency_s`` plus an exponential jitter of mean ``jitter_s`` drawn per packet -- per frame: a jittered link carries
frames, not GSO packets (``hw.netns``), as the simulator draws it per packet, in order (sim/network.py
``_jitter_s``). It never serialises (no rate: ``tbf`` on the link's sending ends shapes it before the
hop, as a wire serialises before it propagates) and never reorders: a packet leaves no earlier than the one before
it in its direction, so jitter delays a flow as a FIFO delay line would, without the reordering TCP would take for
loss.

    python -m hw.delayline DEV_A DEV_B LATENCY_S JITTER_S SEED

A packet's hold counts from when the kernel took it in (its receive timestamp, ``SO_TIMESTAMPNS``), not from when
this program came to read it: a hop descheduled on busy cores would otherwise add its own wait to the link's latency.
What it cannot take back -- a packet written after its time -- it counts (``Lateness``).

Started by ``hw.netns.Fabric`` in the hop's namespace with pipes on stdin and stdout: a byte ``0`` on stdin passes
packets on at once (``Fabric.undelayed``: the fabric's own latency and rate are probed so), ``1`` delays them again;
each is answered with the same byte once in force. A ``?`` is answered with ``?`` and one line of JSON: how late it
read and wrote the packets it delayed, per direction (``Lateness.report``). Ends when stdin closes (and is killed with
its namespace).
"""

from __future__ import annotations

import array
import collections
import contextlib
import ctypes
import json
import os
import select
import socket
import struct
import sys
import time

import numpy as np

SOL_PACKET = 263
PACKET_VNET_HDR = 15  # each packet read and written with its virtio_net_hdr (GSO and checksum offload state)
PACKET_IGNORE_OUTGOING = 23  # not what this socket itself sends
ETH_P_ALL = 3
PACKET_BYTES = 1 << 17  # a 64 KiB GSO packet, its header and the virtio-net header fit
DRAWS = 4096  # jitter drawn in batches
PR_SET_TIMERSLACK = 29
# = SCM_TIMESTAMPNS, unnamed in Python 3.11's socket (asm-generic/socket.h: 35): a received packet's kernel time
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("qq")  # the stamp's struct timespec (64-bit)
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESPEC.size)
LATENESS_SAMPLES = 1 << 20  # per direction and kind (4 MiB): a run's packets; later ones are counted, not kept
# A timed wake-up on this machine comes ~0.1-0.3 ms late (a Python loop beside the twin's nodes on two vCPUs), and
# much later when the cores are busy: each packet is released before its time by the lateness that nearly every
# wake-up has (the 10th percentile of the last ``LATE_SAMPLES``), so a hold is not the drawn delay plus the usual
# wake-up, and seldom shorter than the drawn delay (the mean lateness, released early, let packets of a 4 ms path
# arrive in 1.2 ms beside a test run on the other core: a link is never faster than its latency).
# Released early by at most ``LATE_MAX_S``: after the cores were busy, the lateness learned then (ms) released
# packets that early once wake-ups were on time again: a 5 ms link's hop measured 2.7 ms in a CI run.
LATE_SAMPLES = 64
LATE_QUANTILE = 0.1
LATE_MAX_S = 0.2e-3


def early_s(lateness: collections.deque[float]) -> float:
    """How early to release packets: the lateness nearly every recent wake-up had, at most ``LATE_MAX_S``."""
    return min(sorted(lateness)[int(LATE_QUANTILE * len(lateness))], LATE_MAX_S)


class Lateness:
    """How late a direction's delayed packets were, in seconds: read after the kernel took them in (``read``: taken
    back, as a hold counts from the kernel's time, where it gives one), and written after their time (``written``:
    negative for one released early, ``early_s``): what the link added to its latency and jitter on this machine."""

    def __init__(self) -> None:
        self.read, self.written = array.array("f"), array.array("f")
        self.packets = 0

    def report(self) -> dict[str, object]:
        return {"packets": self.packets, "read_s": quantiles(self.read), "written_s": quantiles(self.written)}


def keep(samples: array.array[float], late_s: float) -> None:
    if len(samples) < LATENESS_SAMPLES:
        samples.append(late_s)


def quantiles(samples: array.array[float]) -> dict[str, float] | None:
    """Mean, median, p95 and max of a sample in seconds; None when empty."""
    if not samples:
        return None
    x = np.sort(np.frombuffer(samples, dtype=np.float32).astype(np.float64))
    return {"mean": float(x.mean()), "p50": float(x[len(x) // 2]), "p95": float(x[int(0.95 * (len(x) - 1))]),
            "max": float(x[-1])}  # fmt: skip


def kernel_time_s(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """A read's receive time (CLOCK_REALTIME) from its ancillary data (``SO_TIMESTAMPNS``), if it carries one: a
    packet's here, a TCP read's last segment's in bench/net_fidelity.py."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec + nsec * 1e-9
    return None


def open_device(dev: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    with contextlib.suppress(OSError):  # without it a hold counts from the read (``kernel_time_s``: None)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
    s.bind((dev, 0))
    s.setblocking(False)
    return s


class Direction:
    """Packets read on one device, held, then written to the other, in the order read."""

    def __init__(self, src: socket.socket, dst: socket.socket, latency_s: float, jitter_s: float,
                 rng: np.random.Generator):  # fmt: skip
        self.src, self.dst, self.latency_s, self.jitter_s, self.rng = src, dst, latency_s, jitter_s, rng
        # (when it leaves, whether it was delayed, the packet)
        self.held: collections.deque[tuple[float, bool, bytes]] = collections.deque()
        self.last_s = 0.0  # when the packet before leaves: none leaves earlier (no reordering)
        self.draws: list[float] = []
        self.lateness = Lateness()

    def delay_s(self) -> float:
        if not self.jitter_s:
            return self.latency_s
        if not self.draws:
            self.draws = self.rng.exponential(self.jitter_s, DRAWS).tolist()
        return self.latency_s + self.draws.pop()

    def read(self, delayed: bool) -> bool:
        """Hold what came in; False once the device is gone (its link removed with the fabric)."""
        while True:
            try:
                packet, ancillary, _, _ = self.src.recvmsg(PACKET_BYTES, ANCILLARY_BYTES)
            except BlockingIOError:
                return True
            except OSError:  # ENETDOWN, ENXIO: the fabric is being removed
                return False
            now = time.monotonic()
            if not delayed:
                self.last_s = max(now, self.last_s)
                self.held.append((self.last_s, False, packet))
                continue
            came_s = now
            if (kernel_s := kernel_time_s(ancillary)) is not None:
                came_s = min(now, kernel_s - (time.time() - now))  # on the monotonic clock
            self.lateness.packets += 1
            keep(self.lateness.read, now - came_s)
            self.last_s = max(came_s + self.delay_s(), self.last_s)
            self.held.append((self.last_s, True, packet))

    def write(self, now: float, late_s: float) -> None:
        """Write the packets due by ``now`` (the clock plus ``late_s``, the early release); count how late the
        delayed ones left (after the one before them, in order: a packet held back by it is not late)."""
        held, sent_s = self.held, now - late_s
        while held and held[0][0] <= now:
            leave_s, delayed, packet = held[0]
            try:
                self.dst.send(packet)
            except BlockingIOError:  # the device's queue is full: the rest waits for the next pass
                return
            except OSError:  # a packet the device refuses is lost, as a wire loses a corrupt frame
                pass
            held.popleft()
            if delayed:
                keep(self.lateness.written, sent_s - leave_s)


def fine_timers() -> None:
    """Wake-ups as close to their time as the kernel can (timer slack 1 ns, not the default 50 us)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def serve(dev_a: str, dev_b: str, latency_s: float, jitter_s: float, seed: int) -> None:
    a, b = open_device(dev_a), open_device(dev_b)
    fine_timers()
    rng_ab, rng_ba = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    ways = (Direction(a, b, latency_s, jitter_s, rng_ab), Direction(b, a, latency_s, jitter_s, rng_ba))
    by_fd = {a.fileno(): ways[0], b.fileno(): ways[1]}
    control = sys.stdin.fileno()  # read with os.read: no buffer in between
    delayed = True
    late_s = 0.0  # how late nearly every timed wake-up comes (``LATE_QUANTILE``): packets are released that early
    lateness: collections.deque[float] = collections.deque(maxlen=LATE_SAMPLES)
    while True:
        due = min((w.held[0][0] for w in ways if w.held), default=None)
        timeout = None if due is None else max(0.0, due - late_s - time.monotonic())
        ready, _, _ = select.select([*by_fd, control], [], [], timeout)
        if not ready and timeout and due is not None:  # woken by its timer alone: how late
            lateness.append(time.monotonic() - (due - late_s))
            late_s = early_s(lateness)
        for r in ready:
            if r == control:
                order = os.read(control, 1)
                if not order:
                    return  # the fabric is gone
                if order == b"?":
                    report = [w.lateness.report() for w in ways]
                    os.write(sys.stdout.fileno(), b"?" + json.dumps(report).encode() + b"\n")
                    continue
                delayed = order == b"1"
                os.write(sys.stdout.fileno(), order)
            elif not by_fd[r].read(delayed):
                return
        now = time.monotonic() + late_s
        for w in ways:
            w.write(now, late_s)


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        sys.stderr.write("usage: python -m hw.delayline DEV_A DEV_B LATENCY_S JITTER_S SEED\n")
        return 2
    dev_a, dev_b, latency, jitter, seed = argv
    serve(dev_a, dev_b, float(latency), float(jitter), int(seed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
