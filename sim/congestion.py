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

CUBIC leaves slow start early where its HyStart sees the acknowledgements of one round trip come back as a train longer
than half the path's minimum round trip (Linux's ``hystart_update``, ACK-train detection, on by default:
``Transport.hystart``): at a window of about that round trip plus a millisecond at the path's slowest rate
(``hystart_exit_packets``; traced: 88 and 96 packets on two 3 ms links at 77 Mbit/s, where this says 86). On a path
whose round trip under load is longer than its minimum (jitter kept in order: ~20 ms against 12.5 there) the window
so stops below the path's bandwidth-delay product and grows on at 5 % a round trip (no loss yet: ``Cubic``), where it
would have grown to it; a connection detects it once (``Cubic.found``), later slow starts end at the threshold it set.

A loss (``Window.lost``, told as the acknowledgement of a segment that lost a packet comes back) is answered by the
connection's congestion control (``loss_response``: Linux's CUBIC, ``Cubic``, or Reno; BBR does not cut), in whole
packets as the kernel counts them: the window cut once an episode, no growth from the segments that were out before the
cut (fast recovery), then grown acknowledgement by acknowledgement as the kernel grows it, the window filled packet by
packet (``Window._split``). Its state (CUBIC's epoch, maximum and Reno-friendly estimate) is the connection's, kept
from one message to the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CUBIC_BETA = 717  # Linux's CUBIC: a loss cuts the window to 717/1024 of it (``Cubic.cut``)
HYSTART_LOW_WINDOW = 16  # HyStart looks at slow start from this window on (packets; Linux's hystart_low_window)
HYSTART_ACK_DELAY_S = 1e-3  # its train's allowance for delayed acknowledgements (``hystart_ack_delay``: 1 ms at most)
CUBIC_UPDATE_S = 1 / 32  # CUBIC recomputes its growth at most every HZ / 32 jiffies while the window stands still
# CUBIC's Reno-friendly estimate grows one packet each cwnd * RENO_ACKS_8 / 8 packets acknowledged: Linux's beta_scale,
# 8 (1024 + 717) / 3 / (1024 - 717) in integers, 3 (1 - 0.7) / (1 + 0.7) packets a round trip
RENO_ACKS_8 = 8 * (1024 + CUBIC_BETA) // 3 // (1024 - CUBIC_BETA)
CUBE_FACTOR = (1 << 40) // 410  # Linux's cube_factor: 2^(10 + 3 * 10) / (bic_scale 41 * 10); C = 0.4 packets/s^3


@dataclass(slots=True)
class Reno:
    """Reno's answer to a loss (RFC 5681, Linux's ``tcp_reno_*``), in whole packets: the window halved, then one
    packet per window acknowledged (``tcp_cong_avoid_ai``)."""

    cwnd_cnt: int = 0  # packets acknowledged toward the next one (``snd_cwnd_cnt``)

    def cut(self, cwnd: int) -> int:
        self.cwnd_cnt = 0  # a cut drops the credits toward the next packet (``tcp_init_cwnd_reduction``)
        return max(cwnd // 2, 2)

    def grow(self, cwnd: int, acked: int, now_s: float, min_rtt_s: float) -> int:
        return self._ai(cwnd, cwnd, acked)

    def resumed(self, idle_s: float, now_s: float) -> None:
        """The connection sends again at ``now_s`` with nothing in flight, ``idle_s`` after it last sent (Reno keeps
        no clock)."""

    def _ai(self, cwnd: int, w: int, acked: int) -> int:
        """Linux's ``tcp_cong_avoid_ai``: one packet each ``w`` acknowledged, credits kept."""
        if self.cwnd_cnt >= w:
            self.cwnd_cnt, cwnd = 0, cwnd + 1
        self.cwnd_cnt += acked
        if self.cwnd_cnt >= w:
            grown, self.cwnd_cnt = divmod(self.cwnd_cnt, w)
            cwnd += grown
        return cwnd


@dataclass(slots=True)
class Cubic(Reno):
    """Linux's CUBIC in congestion avoidance (net/ipv4/tcp_cubic.c: ``bictcp_update``, ``cubictcp_recalc_ssthresh``,
    RFC 9438), in whole packets and with its integer arithmetic. A loss cuts the window to 717/1024 of it and, with
    fast convergence, remembers less than the window it had; the window then grows toward the cubic curve through
    that maximum, or as fast as its Reno-friendly estimate (``tcp_cwnd``, 0.53 packets a round trip) where that is
    faster, whichever asks fewer acknowledgements a packet (``cnt``). What matters on a lossy path of milliseconds: an
    epoch starts with the estimate at the window, which it passes only ~2 round trips later, and the growth is
    recomputed at most every 1/32 s while the window stands still (``CUBIC_UPDATE_S``): after each cut the window
    stands for 3-5 round trips of 13 ms (measured, bench/net_fidelity.py's 1 MB at 1 % loss, traced with the
    kernel's ``tcp_probe``), so it grows ~0.36 packets a round trip between losses, not 0.53."""

    found: bool = False  # HyStart ended a slow start of this connection (Linux's ``found``; an RTO would clear it)
    last_max: int = 0  # the window before the last cut (``last_max_cwnd``)
    epoch_s: float | None = None  # when the current epoch of growth began (None: at the next acknowledgement)
    origin: int = 0
    k_units: int = 0  # time to reach ``origin`` again, in 1/1024 s (``bic_K``)
    tcp_cwnd: int = 0
    ack_cnt: int = 0
    cnt: int = 0
    last_cwnd: int = 0
    last_s: float = -math.inf

    def cut(self, cwnd: int) -> int:
        self.epoch_s, self.cwnd_cnt = None, 0
        self.last_max = cwnd * (1024 + CUBIC_BETA) // 2048 if cwnd < self.last_max else cwnd
        return max(cwnd * CUBIC_BETA // 1024, 2)

    def grow(self, cwnd: int, acked: int, now_s: float, min_rtt_s: float) -> int:
        self._update(cwnd, acked, now_s, min_rtt_s)
        return self._ai(cwnd, self.cnt, acked)

    def resumed(self, idle_s: float, now_s: float) -> None:
        """Linux shifts the epoch by the time the connection sat idle, not past now (``CA_EVENT_TX_START``)."""
        if self.epoch_s is not None and idle_s > 0:
            self.epoch_s = min(self.epoch_s + idle_s, now_s)

    def _update(self, cwnd: int, acked: int, now_s: float, min_rtt_s: float) -> None:
        """``bictcp_update``: how many packets acknowledged grow the window by one (``cnt``)."""
        self.ack_cnt += acked
        if self.last_cwnd == cwnd and now_s - self.last_s <= CUBIC_UPDATE_S:
            return
        self.last_cwnd, self.last_s = cwnd, now_s
        if self.epoch_s is None:
            self.epoch_s, self.ack_cnt, self.tcp_cwnd = now_s, acked, cwnd
            if self.last_max <= cwnd:
                self.k_units, self.origin = 0, cwnd
            else:
                self.k_units, self.origin = _cube_root(CUBE_FACTOR * (self.last_max - cwnd)), self.last_max
        t = int((now_s - self.epoch_s + min_rtt_s) * 1024)  # where the curve is a round trip ahead
        offs = abs(self.k_units - t)
        delta = (410 * offs**3) >> 40
        target = self.origin - delta if t < self.k_units else self.origin + delta
        self.cnt = cwnd // (target - cwnd) if target > cwnd else 100 * cwnd
        if self.last_max == 0:
            self.cnt = min(self.cnt, 20)
        reno_acks = cwnd * RENO_ACKS_8 >> 3
        if self.ack_cnt > reno_acks:
            grown, self.ack_cnt = divmod(self.ack_cnt, reno_acks)
            if self.ack_cnt == 0:  # Linux's loop stops at equal: it keeps a whole step
                grown, self.ack_cnt = grown - 1, reno_acks
            self.tcp_cwnd += grown
        if self.tcp_cwnd > cwnd:
            self.cnt = min(self.cnt, cwnd // (self.tcp_cwnd - cwnd))
        self.cnt = max(self.cnt, 2)


def _cube_root(a: int) -> int:
    """The integer cube root Linux's ``cubic_root`` approximates (within a unit)."""
    x = round(math.cbrt(a))
    while x**3 > a:
        x -= 1
    while (x + 1) ** 3 <= a:
        x += 1
    return x


def hystart_exit_packets(min_rtt_s: float, packet_s: float) -> int:
    """The window (packets) at which CUBIC's HyStart ends slow start on a path of minimum round trip ``min_rtt_s`` whose
    slowest link takes ``packet_s`` a packet: its acknowledgement train, a packet's time each, outlasts half the round
    trip plus the delayed-acknowledgement allowance once half the window came back within one round trip -- the
    window then is twice what came back (``hystart_update``); never below ``HYSTART_LOW_WINDOW``."""
    return max(HYSTART_LOW_WINDOW, math.ceil((min_rtt_s + HYSTART_ACK_DELAY_S) / packet_s))


def loss_response(congestion_control: str) -> Reno | None:
    """How ``Transport.congestion_control`` answers a loss: a fresh state per connection; None for BBR, which does not
    cut its window on a random loss (a loss only delays the bytes resent: ``Network._carry``)."""
    kinds: dict[str, type[Reno]] = {"cubic": Cubic, "reno": Reno}
    kind = kinds.get(congestion_control)
    return kind() if kind is not None else None


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
    response: Reno | None = None  # how it answers a loss (``loss_response``), its state kept from message to message
    acked_s: float = -math.inf  # when the last acknowledgement of what it sent is back (nothing in flight after)
    peak_bytes: float = 0.0  # the largest window it has had (its send buffer's size: ``Network.send_buffer_bytes``)

    @property
    def cut(self) -> bool:
        """Whether a loss has cut its window (a threshold HyStart set is not a cut)."""
        if isinstance(self.response, Cubic):
            return self.response.last_max > 0
        return self.ssthresh_bytes < math.inf

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
    # how its connection answers a loss (``loss_response``; None: a loss does not cut the window), in packets of
    # ``packet_bytes``; ``rtt_s`` the path's round trip (CUBIC's curve looks one ahead)
    response: Reno | None = None
    packet_bytes: int = 0
    rtt_s: float = 0.0
    # segments before this one were out when the last loss was answered: its recovery, which neither cuts again (one
    # cut a window) nor grows the window (Linux's fast recovery: the window shrinks to the cut one, then grows)
    recover: int = 0
    # segments before this one were out when the window last held one back: only their acknowledgements grow it after
    # a loss (Linux grows a window only while it limits the sender, ``tcp_is_cwnd_limited``; a message's last flight
    # and a message smaller than the window do not)
    limited: int = 0
    acked_s: float = -math.inf  # when its last acknowledgement is back (``Network._acked_after``)
    # where CUBIC's HyStart ends this slow start (``hystart_exit_packets``, bytes; inf: it does not, or it did before)
    hystart_bytes: float = math.inf
    # a window that fills the path (its bandwidth-delay product at its round trip under load), where HyStart, not a
    # loss, set the threshold: growing past it the window becomes the steady one (``limit_bytes``), which this model's
    # segments need to fill the link where Linux's packets fill it with the product (inf: no such bound)
    full_bytes: float = math.inf
    filled_bytes: float = 0.0  # the window when it passed ``full_bytes`` (0: it has not): what the connection keeps
    # its segments cut to whole packets (``_recut``, ``_split``) once a loss was answered (None: where its threshold
    # is set, as before HyStart; a threshold HyStart set, no loss since, keeps them whole)
    packetwise: bool | None = None
    # (bytes, call): called with the time once that many bytes are acknowledged (``Network.transfer``'s ``taken``)
    watch: tuple[float, Callable[[float], Any]] | None = None
    acked_bytes: float = 0.0
    now_s: float = 0.0  # the time of the acknowledgement being counted
    peak_bytes: float = 0.0  # the largest window it had (Linux's, where the steady one stands for it: ``_fill``)

    def __post_init__(self) -> None:
        if self.limit_bytes <= 0 or self.cwnd_bytes <= 0:
            raise ValueError(f"a window needs positive sizes (cwnd {self.cwnd_bytes}, limit {self.limit_bytes})")
        if self.response is not None and self.packet_bytes <= 0:
            raise ValueError("a window that answers a loss needs its packets' size (packet_bytes)")
        self.grown_bytes = min(self.cwnd_bytes, GROWN_LIMITS * self.limit_bytes)
        self.cwnd_bytes = min(self.cwnd_bytes, self.limit_bytes)
        self._fill()
        self.counted = [False] * len(self.sizes)
        if self.packetwise is None:
            self.packetwise = self.response is not None and self.ssthresh_bytes < math.inf
        loss_window = self.packetwise and self.ssthresh_bytes <= self.cwnd_bytes < self.limit_bytes
        if loss_window:  # a loss's window, still small: its segments in packets
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
        if self.response is None or k < self.recover:
            return
        self.recover, self.packetwise = self.sent, True
        if self.filled_bytes:  # cut from the window Linux has, not the steady one standing for it
            self.cwnd_bytes, self.filled_bytes, self.full_bytes = self.filled_bytes, 0.0, math.inf
        self.cwnd_bytes = self.ssthresh_bytes = self.response.cut(self.packets()) * self.packet_bytes
        self.grown_bytes = self.cwnd_bytes
        self._recut()

    def _slow_start(self, k: int) -> None:
        """Slow start's growth by segment ``k``'s bytes; where it ends below the steady window (at a loss's threshold),
        the segments not sent yet are cut to the window (``_recut``)."""
        self.cwnd_bytes = min(self.limit_bytes, self.cwnd_bytes + self.sizes[k])
        if self.cwnd_bytes >= self.hystart_bytes and self.slow:  # HyStart's train: slow start ends here, once
            self.cwnd_bytes = self.ssthresh_bytes = self.hystart_bytes
            self.hystart_bytes = math.inf
            if isinstance(self.response, Cubic):
                self.response.found = True
        if self.packetwise and not self.slow and self.cwnd_bytes < self.limit_bytes:
            self._recut()

    def _recut(self) -> None:
        """The segments not sent yet cut to whole packets, ``1 / PIECES`` of the window at most (``lost``)."""
        piece = max(1, int(self.cwnd_bytes / PIECES / self.packet_bytes)) * self.packet_bytes
        left = sum(self.sizes[self.sent :])
        split = [min(piece, left - at) for at in range(0, left, piece)]
        self.sizes[self.sent :] = split
        self.counted[self.sent :] = [False] * len(split)

    def packets(self) -> int:
        """The window in whole packets, as the kernel counts it."""
        return max(int(self.cwnd_bytes // self.packet_bytes), 1)

    def first_acked(self, k: int, now_s: float = 0.0) -> int:
        """Segment ``k``'s first packet is acknowledged: in slow start the segment counts, and grows the window."""
        self.now_s = now_s
        if self.slow and not self.counted[k]:
            self._count(k)
            self._slow_start(k)
        return self._release()

    def landed_acked(self, k: int, now_s: float = 0.0) -> int:
        """Segment ``k``'s last byte is acknowledged (at ``now_s``): it leaves the window if it has not yet (and grows
        it, in slow start: a segment the window let go after its first packet's acknowledgement came back; after a
        loss, past its recovery, as the connection's congestion control grows it)."""
        self.now_s = now_s
        if not self.counted[k]:
            if self.slow:
                self._slow_start(k)
            elif (
                self.response is not None
                and self.ssthresh_bytes < self.limit_bytes
                and self.recover <= k < self.limited
            ):
                acked = -(-self.sizes[k] // self.packet_bytes)
                grown = self.response.grow(self.packets(), acked, now_s, self.rtt_s) * self.packet_bytes
                self.cwnd_bytes = min(self.limit_bytes, max(self.cwnd_bytes, grown))
                self._fill()
            self._count(k)
        return self._release()

    def _fill(self) -> None:
        """Past the path's product after HyStart (``full_bytes``) the link is full: the steady window from here (its
        segments need it), the window that filled it kept for the connection (``filled_bytes``)."""
        if not self.filled_bytes and self.full_bytes <= self.cwnd_bytes < self.limit_bytes:
            self.filled_bytes, self.cwnd_bytes = self.cwnd_bytes, self.limit_bytes

    def settled_bytes(self) -> float:
        """The connection's window once every segment sent has been acknowledged (what it keeps for its next message:
        the message is in before the last acknowledgements are back): ``grown_bytes`` and each one not yet counted;
        the window that filled the path where one did (``filled_bytes``)."""
        if self.filled_bytes:
            return self.filled_bytes
        if self.ssthresh_bytes < math.inf:  # since a loss it grows as its window does
            return self.cwnd_bytes
        owed = sum(size for size, counted in zip(self.sizes[: self.sent], self.counted, strict=False) if not counted)
        return min(self.grown_bytes + owed, GROWN_LIMITS * self.limit_bytes)

    def _count(self, k: int) -> None:
        self.counted[k] = True
        self.outstanding_bytes -= self.sizes[k]
        self.peak_bytes = max(self.peak_bytes, self.filled_bytes or self.cwnd_bytes)
        self.acked_bytes += self.sizes[k]
        if self.watch is not None and self.acked_bytes >= self.watch[0]:
            call, self.watch = self.watch[1], None
            call(self.now_s)
        self.grown_bytes = min(self.grown_bytes + self.sizes[k], GROWN_LIMITS * self.limit_bytes)

    def _release(self) -> int:
        """Send the next segments while they fit the window (at least one when nothing is out: a segment larger
        than the window still goes). After a loss, whose answer counts the window in packets, the part of the next
        segment that fits goes alone (``_split``): TCP fills its window packet by packet, and a window of 23 packets
        that sent only whole segments of 8 carried 16 a round trip (and grew as slowly)."""
        sizes = self.sizes
        while self.sent < len(sizes):
            size = sizes[self.sent]
            if self.outstanding_bytes > 0 and self.outstanding_bytes + size > self.cwnd_bytes:
                size = self._split()
                if not size:
                    self.limited = self.sent
                    break
            self.outstanding_bytes += size
            self.sent += 1
        return self.sent

    def _split(self) -> int:
        """The next segment cut to the whole packets the window has room for (its rest after it); that part's size,
        or 0 where it cannot be (no room for a packet, or no loss answered yet)."""
        if not self.packetwise:
            return 0
        room = int((self.cwnd_bytes - self.outstanding_bytes) // self.packet_bytes) * self.packet_bytes
        k = self.sent
        if room <= 0 or room >= self.sizes[k]:
            return 0
        self.sizes[k : k + 1] = [room, self.sizes[k] - room]
        self.counted.insert(k, False)
        return room
