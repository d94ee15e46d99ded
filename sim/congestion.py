"""A TCP connection's congestion window, over a message's segments (``sim.network.Network``).

TCP sends no more unacknowledged bytes than its congestion window. A new connection's window is its initial window
(``Transport.initial_window_packets`` packets, RFC 6928); in slow start every byte acknowledged adds one, so the
window doubles each round trip. A message is carried in segments (``Network.segments``); here a segment counts as
acknowledged

- in slow start, once its *first* packet's acknowledgement is back: the sender then sends two bytes for each one
  acknowledged, so a flight twice the segment's size follows it one round trip after it started (RFC 5681's
  doubling, ACK-clocked: flight j starts j round trips plus a packet's time after the first);
- once the window has reached the path's steady window (``limit_bytes``: ``Network.window`` segments, enough to
  cover the path's bandwidth-delay product), once its *last* byte's acknowledgement is back: a new segment goes
  as an old one leaves the window, the sharing the model was validated with (docs/network-validation.md).

An acknowledgement comes back over the reverse path's latency and mean jitter after the bytes arrived
(``Network.ack_delay_s``). A segment the window lets go joins its sender's link queue no sooner than the message's
segment before it has left that link (Linux's TCP small queues: ``Network._queued_at``), so flows sharing the link
interleave segment by segment as the kernel interleaves their packets, not a flight at a time; where flows converge on a
switch's egress (``fan_in: packets``) a segment's first packet leaves once the bytes that arrived before it have
(``LinkServer.first_leaves``), which sets its acknowledgement's time.

A connection (``Connection``, one per sending and receiving host) keeps its window from one message to the next, as
the twin's nodes keep theirs; after it sent nothing for longer than its retransmission timeout (TCP's minimum,
``Transport.rto_min_s``, plus the round trip), Linux halves the window once for each timeout that passed, down to the
initial window (``tcp_cwnd_restart``, sysctl ``net.ipv4.tcp_slow_start_after_idle``, on by default; congestion
controls with their own window control, BBR, skip it): ``Transport.restarts_after_idle``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# how a congestion control answers a loss (Transport.congestion_control): (the window's multiplier on a loss, packets it
# then grows by per window acknowledged). CUBIC (RFC 9438) cuts to 0.7 and on paths of milliseconds grows as its
# Reno-friendly estimate, 3 (1 - 0.7) / (1 + 0.7) packets a round trip (its cubic curve climbs back to the window it
# lost over K = cbrt(W (1 - 0.7) / 0.4) seconds: 3 s at 40 packets); Reno (RFC 5681) halves and grows one packet a
# round trip. BBR does not cut its window on a random loss: a loss only delays the bytes resent (``Network._carry``)
LOSS_RESPONSE: dict[str, tuple[float, float]] = {"cubic": (0.7, 3 * 0.3 / 1.7), "reno": (0.5, 1.0)}


@dataclass(slots=True)
class Connection:
    """What a connection carries from one message to the next: its window (bytes), when it last sent, and how
    many of its messages are under way (a window restarts only on a connection with nothing in flight)."""

    cwnd_bytes: float
    initial_bytes: float  # TCP's initial window (its restart window)
    last_sent_s: float = float("-inf")
    open: int = 0
    # where slow start ends: a loss sets it (``Window.lost``), kept from message to message
    ssthresh_bytes: float = math.inf

    def window_at(self, now_s: float, rto_s: float, restart: bool) -> float:
        """The window a message starting at ``now_s`` finds (``tcp_cwnd_restart``: halved for each whole timeout
        idle, not below the initial window, nor raised to it)."""
        cwnd, idle_s = self.cwnd_bytes, now_s - self.last_sent_s
        if not restart or self.open or idle_s <= rto_s:
            return cwnd
        floor = min(self.initial_bytes, cwnd)
        while idle_s > rto_s and cwnd > floor:
            idle_s -= rto_s
            cwnd /= 2
        return max(cwnd, floor)


PIECES = 2  # after a loss, the segments not sent yet are cut to at most this part of the window (``Window.lost``)
GROWN_LIMITS = 2  # a connection's window grows up to this many times the path's steady window (``Window.grown_bytes``)


@dataclass(slots=True)
class Window:
    """The congestion window over one message's segments (``sizes``, bytes, in order): which may be sent. Call
    ``first_acked`` / ``landed_acked`` as each segment's acknowledgements come back; each returns how many segments
    may have been sent by then (``sent``), never fewer than before."""

    sizes: list[int]
    cwnd_bytes: float
    limit_bytes: float
    sent: int = 0
    outstanding_bytes: float = 0.0  # sent, not yet counted as acknowledged
    counted: list[bool] = field(default_factory=list)
    last_sent_s: float = float("-inf")  # when its driver last sent a segment (the connection's idle clock)
    queued: bool = False  # a TCP connection's: a segment waits in the socket while the one before is queued
    # the connection's own window, which TCP grows by every byte acknowledged while the flow is window-limited (up to
    # twice what it has out: ``tcp_is_cwnd_limited``; here twice the steady window) -- what an idle restart halves
    grown_bytes: float = 0.0
    ssthresh_bytes: float = math.inf  # slow start ends here (a loss sets it), or at ``limit_bytes``
    # a loss's answer (``LOSS_RESPONSE``): the window's multiplier (0: a loss does not cut the window) and the packets
    # it then grows by each window acknowledged (congestion avoidance); ``packet_bytes`` a packet's
    backoff: float = 0.0
    growth_packets: float = 0.0
    packet_bytes: int = 0
    recover: int = 0  # a loss in a segment before this one is the episode already answered (one cut a window)

    def __post_init__(self) -> None:
        if self.limit_bytes <= 0 or self.cwnd_bytes <= 0:
            raise ValueError(f"a window needs positive sizes (cwnd {self.cwnd_bytes}, limit {self.limit_bytes})")
        if self.backoff and self.packet_bytes <= 0:
            raise ValueError("a window that answers a loss needs its packets' size (packet_bytes)")
        self.grown_bytes = min(self.cwnd_bytes, GROWN_LIMITS * self.limit_bytes)
        self.cwnd_bytes = min(self.cwnd_bytes, self.limit_bytes)
        self.counted = [False] * len(self.sizes)
        if self.backoff and self.ssthresh_bytes <= self.cwnd_bytes < self.limit_bytes:  # a loss's window, still small
            self._recut()
        self._release()

    @property
    def slow(self) -> bool:
        """In slow start: the window still doubles toward the path's steady window (or where a loss ended it)."""
        return self.cwnd_bytes < min(self.limit_bytes, self.ssthresh_bytes)

    def lost(self, k: int) -> None:
        """Segment ``k`` lost a packet, which its sender has noticed: the window cut once for the episode (losses in
        segments sent before the cut are the same window's), slow start over, and the segments not sent yet cut to
        half the window at most, so that it keeps two in flight (TCP clocks out packets, not 64 KiB blocks: a whole
        segment held back till the last one's acknowledgement came back moved 64 KiB a round trip whatever the
        window)."""
        if not self.backoff or k < self.recover:
            return
        self.recover = self.sent
        self.cwnd_bytes = self.ssthresh_bytes = max(self.backoff * self.cwnd_bytes, 2.0 * self.packet_bytes)
        self.grown_bytes = self.cwnd_bytes
        self._recut()

    def _slow_start(self, k: int) -> None:
        """Slow start's growth by segment ``k``'s bytes; where it ends below the steady window (at a loss's threshold),
        the segments not sent yet are cut to the window (``_recut``)."""
        self.cwnd_bytes = min(self.limit_bytes, self.cwnd_bytes + self.sizes[k])
        if self.backoff and not self.slow and self.cwnd_bytes < self.limit_bytes:
            self._recut()

    def _recut(self) -> None:
        """The segments not sent yet cut to whole packets, ``1 / PIECES`` of the window at most (``lost``)."""
        piece = max(1, int(self.cwnd_bytes / PIECES / self.packet_bytes)) * self.packet_bytes
        left = sum(self.sizes[self.sent :])
        split = [min(piece, left - at) for at in range(0, left, piece)]
        self.sizes[self.sent :] = split
        self.counted[self.sent :] = [False] * len(split)

    def first_acked(self, k: int) -> int:
        """Segment ``k``'s first packet is acknowledged: in slow start the segment counts, and grows the window."""
        if self.slow and not self.counted[k]:
            self._count(k)
            self._slow_start(k)
        return self._release()

    def landed_acked(self, k: int) -> int:
        """Segment ``k``'s last byte is acknowledged: it leaves the window if it has not yet (and grows it, in slow
        start: a segment the window let go after its first packet's acknowledgement came back)."""
        if not self.counted[k]:
            if self.slow:
                self._slow_start(k)
            elif self.ssthresh_bytes < self.limit_bytes:  # after a loss: a few packets a window acknowledged
                grow = self.growth_packets * self.packet_bytes * self.sizes[k] / self.cwnd_bytes
                self.cwnd_bytes = min(self.limit_bytes, self.cwnd_bytes + grow)
            self._count(k)
        return self._release()

    def settled_bytes(self) -> float:
        """The connection's window once every segment sent has been acknowledged (what it keeps for its next message:
        the message is in before the last acknowledgements are back): ``grown_bytes`` and each one not yet counted."""
        if self.ssthresh_bytes < math.inf:  # since a loss it grows as its window does
            return self.cwnd_bytes
        owed = sum(size for size, counted in zip(self.sizes[: self.sent], self.counted, strict=False) if not counted)
        return min(self.grown_bytes + owed, GROWN_LIMITS * self.limit_bytes)

    def _count(self, k: int) -> None:
        self.counted[k] = True
        self.outstanding_bytes -= self.sizes[k]
        self.grown_bytes = min(self.grown_bytes + self.sizes[k], GROWN_LIMITS * self.limit_bytes)

    def _release(self) -> int:
        """Send the next segments while they fit the window (at least one when nothing is out: a segment larger
        than the window still goes)."""
        sizes, n = self.sizes, len(self.sizes)
        while self.sent < n and (
            self.outstanding_bytes <= 0 or self.outstanding_bytes + sizes[self.sent] <= self.cwnd_bytes
        ):
            self.outstanding_bytes += sizes[self.sent]
            self.sent += 1
        return self.sent
