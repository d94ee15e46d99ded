"""Userspace TCP shaping proxy: the hardware twin's stand-in for netem, which our kernels lack.

Each direction of a forwarded connection follows the simulator's link model (sim/network.py): the bytes
read from the source are cut into segments of at most ``segment_bytes``; a segment waits for the link
(FIFO), is serialised for ``bytes * 8 / bandwidth_bps``, then propagates for ``latency_s`` plus an
exponential jitter of mean ``jitter_s``. With probability ``loss`` a segment is lost after serialisation
and asks for the link again ``2 * latency_s`` + its serialisation time later, so it can be lost again, as
in the simulator. Nothing is ever dropped: a loss only delays, and segments are written in order (a
delivery never precedes the previous one), so TCP's byte stream is intact.

Deliveries are scheduled on absolute deadlines of the event loop's clock (time.monotonic), so its ~1 ms
wake-up granularity makes each write a little late but never accumulates. The link is modelled in virtual
time at arrival: the proxy acknowledges data at once (localhost) and buffers it, like an unbounded router
queue, up to a backlog at which it stops reading the source (TCP back-pressure).

All connections through one proxy share its two link directions, as flows share a link. Randomness is
deterministic per direction: ``numpy.random.default_rng(SeedSequence(seed).spawn(2)[i])`` with i = 0
upstream (client to target) and 1 downstream; a direction draws ``random()`` per serialisation when
``loss > 0`` and then ``exponential(jitter_s)`` per delivered segment when ``jitter_s > 0``.

A link carries its run's traffic only. Given a ``key`` (the twin's run key, ``hw.runtime.LINK_KEY_ENV``), a
connection must open with it before anything it sends touches the link or reaches the target: the link is paired,
as a device's radio link or a host's switch port is. Anyone else on the machine can reach the proxy's port (it is
in run.json), and what a stranger poured in was queued on the link ahead of the run's own bytes: one 64 KiB write
every 1.5 s held a 262 kbit/s device link past its pod's handshake deadline, and every device of a run sent
nothing while the run said "completed". The key is stripped (it takes no link time); ``present`` is what to open
the target connection with (another paired link's key, when the target is one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import hmac
import itertools
import logging
import math
import numbers
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from hw import tcp

if TYPE_CHECKING:
    from sim.scenario import LinkParams

log = logging.getLogger(__name__)

MIN_BACKLOG_BYTES = 4 * 1024 * 1024  # per connection and direction; the limit is at least 4 x the BDP
# at once per proxy (a route's pod or a device, and its retries, need a few): a newcomer over it takes the place of
# the oldest connection whose client has sent nothing yet (a node sends as it connects), else it is refused. Four
# times a node's gate (hw/node/gate.py: 64 handshakes), so that the gate, which knows who authenticated, decides
# who stays: a connection it cuts ends here too, and strangers sending a byte each could otherwise fill the proxy
# and keep every pod from reaching the gate at all
MAX_CONNECTIONS = 256
# connections not yet paired (opened with the link's key) at once per proxy: a newcomer over it takes the place of the
# oldest; a node sends the key as it connects, so it is paired within a loopback round trip, and a flood of strangers
# cannot hold its place for longer than the flood takes to open this many
MAX_UNPAIRED = 64
PAIR_TIMEOUT_S = 2.0  # a connection that has not sent the link's key by then is closed
# each proxy socket's kernel buffers, fixed: the proxy's queue is its backlog, and the host's sysctl must not add a
# hidden one (autotuned up to tcp_rmem's 32 MB here, a stopped client absorbed 5 more 4 MB models on one run and 2
# on the next); twice this (the kernel doubles it) is 4 ms at a gigabit, read or written at once on loopback
SOCKET_BUFFER_BYTES = 256 * 1024
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
DIRECTIONS = ("upstream", "downstream")


@dataclass(frozen=True)
class LinkShape:
    """One link direction, in the simulator's units (LinkShape(*LinkParams.resolved()) converts)."""

    bandwidth_bps: float
    latency_s: float
    jitter_s: float = 0.0
    loss: float = 0.0
    segment_bytes: int = 65536
    burst_bytes: int = 0  # a token bucket's depth (sim/network.py ``LinkServer.leaves``); 0: none

    @classmethod
    def of(cls, params: LinkParams) -> LinkShape:
        """A scenario link's shape, its preset filled in."""
        return cls(*params.resolved(), burst_bytes=params.burst_bytes or 0)

    def __post_init__(self) -> None:
        rules = {
            "bandwidth_bps": (lambda v: 0 < v < math.inf, "a finite number > 0"),
            "latency_s": (lambda v: 0 <= v < math.inf, "a finite number >= 0"),
            "jitter_s": (lambda v: 0 <= v < math.inf, "a finite number >= 0"),
            "loss": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
            "segment_bytes": (lambda v: isinstance(v, numbers.Integral) and int(v) >= 1, "an integer >= 1"),
            "burst_bytes": (lambda v: isinstance(v, numbers.Integral) and int(v) >= 0, "an integer >= 0"),
        }
        for f in fields(self):
            value = getattr(self, f.name)
            ok, want = rules[f.name]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not ok(value):
                raise ValueError(f"LinkShape.{f.name} must be {want}, got {value!r}")

    def serialisation_s(self, nbytes: int) -> float:
        """Time the link is held to put nbytes on the wire."""
        return nbytes * 8 / self.bandwidth_bps

    def burst_s(self) -> float:
        return self.burst_bytes * 8 / self.bandwidth_bps

    @classmethod
    def from_path(cls, links: Iterable[LinkShape]) -> LinkShape:
        """One shape for a multi-hop path: bottleneck bandwidth, summed latency and jitter, compound loss.

        An approximation of per-hop queueing for one flow. The simulator pipelines segments through a FIFO
        server per hop, so a lone long flow runs at the bottleneck's rate and is delayed by the hops'
        summed latency, which is what this shape gives. It leaves out each segment's store-and-forward
        serialisation on the non-bottleneck hops, queueing behind other flows, the shape of a sum of
        exponential jitters (one exponential of the summed mean here), and that a loss is resent over the
        whole path's round trip instead of the lossy hop's. Segments are the smallest of the hops'; the token
        bucket is the bottleneck's (the shallowest where several are): a faster hop's bucket refills as it waits.
        """
        hops = list(links)
        if not hops:
            raise ValueError("LinkShape.from_path needs at least one link")
        if len(hops) == 1:
            return hops[0]  # exactly, without the loss formula's rounding
        slowest = min(h.bandwidth_bps for h in hops)
        return cls(
            bandwidth_bps=slowest,
            latency_s=sum(h.latency_s for h in hops),
            jitter_s=sum(h.jitter_s for h in hops),
            loss=1 - math.prod(1 - h.loss for h in hops),
            segment_bytes=min(h.segment_bytes for h in hops),
            burst_bytes=min(h.burst_bytes for h in hops if h.bandwidth_bps == slowest),
        )


@dataclass(eq=False)
class _Segment:
    data: bytes
    delivery: asyncio.Future[float]  # loop-clock time at which it reaches the far end


class _Link:
    """One link direction: a FIFO server whose requests are served in request-time order.

    A request is served (its delivery time set, the link held) when its service starts, not when it is asked:
    first attempts wait in ``waiting`` in the order read, retransmissions (asked in the future) in a heap, and
    ``_pump`` serves the earliest request once the link is free for it. The schedule is the one serving at
    request time gives; but a segment whose connection has gone before its turn (a stranger's pour, closed by
    the node at its first bad record) is dropped and holds the link for no one: before, every byte read was
    booked at once, and one 4 MiB pour into a device's link kept its frames out for half a minute.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, shape: LinkShape, rng: np.random.Generator):
        self.loop, self.shape, self.rng = loop, shape, rng
        self.free_at_s = -math.inf
        self.waiting: collections.deque[tuple[float, _Segment]] = collections.deque()
        self.retries: list[tuple[float, int, _Segment]] = []
        self.order = itertools.count()
        self.wake_s = math.inf  # the pump's next timer
        self.counters = dict.fromkeys(("bytes", "segments", "retransmissions", "dropped"), 0)

    def submit(self, seg: _Segment, now_s: float) -> None:
        self.counters["bytes"] += len(seg.data)
        self.counters["segments"] += 1
        self.waiting.append((now_s, seg))
        self._pump(now_s)

    def _pump(self, now_s: float) -> None:
        """Serve, earliest request first (a retransmission before a first attempt asked at the same time),
        every request whose turn has come by ``now_s``; then wake when the next one's does."""
        while self.waiting or self.retries:
            retry = bool(self.retries) and (not self.waiting or self.retries[0][0] <= self.waiting[0][0])
            request_s, seg = (self.retries[0][0], self.retries[0][2]) if retry else self.waiting[0]
            # its turn: when the link is free for it, less a token bucket's depth (its bytes go that much earlier)
            due_s = max(request_s, self.free_at_s - self.shape.burst_s())
            if due_s > now_s:
                self._wake(due_s)
                return
            if retry:
                heapq.heappop(self.retries)
            else:
                self.waiting.popleft()
            if seg.delivery.done():  # cancelled: its connection has gone, it takes no link time
                self.counters["dropped"] += 1
                continue
            self._serve(seg, request_s)

    def _wake(self, at_s: float) -> None:
        if at_s < self.wake_s:  # a later timer still armed fires harmlessly (``_pump`` serves what is due)
            self.wake_s = at_s
            self.loop.call_at(at_s, self._on_due, at_s)

    def _on_due(self, due_s: float) -> None:
        # call_at may fire a clock resolution early: serve at least what this timer was set for.
        if due_s == self.wake_s:
            self.wake_s = math.inf
        self._pump(max(due_s, self.loop.time()))

    def _serve(self, seg: _Segment, request_s: float) -> None:
        shape = self.shape
        service_s = shape.serialisation_s(len(seg.data))
        self.free_at_s = end_s = max(request_s, self.free_at_s) + service_s
        if shape.loss and self.rng.random() < shape.loss:
            self.counters["retransmissions"] += 1
            retry_s = end_s + 2 * shape.latency_s + service_s
            heapq.heappush(self.retries, (retry_s, next(self.order), seg))
            return  # served by ``_pump`` at its time (the caller's loop goes on to it, or wakes for it)
        jitter_s = float(self.rng.exponential(shape.jitter_s)) if shape.jitter_s else 0.0
        if shape.burst_bytes:  # a token bucket lets it out up to its depth earlier (sim/network.py ``leaves``)
            end_s = max(request_s, end_s - shape.burst_s())
        seg.delivery.set_result(end_s + shape.latency_s + jitter_s)


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline_s: float) -> None:
    """Sleep to an absolute loop-clock deadline, so lateness does not carry over to the next one."""
    if deadline_s <= loop.time():
        return
    wake: asyncio.Future[None] = loop.create_future()

    def _wake() -> None:
        if not wake.done():
            wake.set_result(None)

    handle = loop.call_at(deadline_s, _wake)
    try:
        await wake
    finally:
        handle.cancel()


class _Side(asyncio.Protocol):
    """One socket of a forwarded connection; what it reads goes into its outgoing pipe."""

    def __init__(self, conn: _Connection):
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.outgoing: _Pipe | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            # its congestion control: set before its handshake (``tcp.listener``, ``tcp.dial_async``)
        self.conn.made(self)

    def data_received(self, data: bytes) -> None:
        if not self.conn.paired:
            self.conn.greet(data)
            return
        assert self.outgoing is not None  # reading is paused until both pipes exist
        if self is self.conn.client:
            self.conn.spoke = True
        self.outgoing.feed(data)

    def eof_received(self) -> bool:
        if self.outgoing is None:  # a client that ended before it was paired
            self.conn.refuse()
            return False
        self.outgoing.feed_eof()
        upstream = self.conn.client.outgoing
        if self is self.conn.target and upstream is not None:
            # the node hung up: the twin's nodes close, never half-close (one refusing a stranger does so at its
            # first bad record, its gate at a deadline), so what the client sent that the link has not served yet
            # goes nowhere, and nothing it sends from now on: the connection ends once the node's last bytes are
            # delivered, whether or not the client ever sends again (a silent stranger held its place for good)
            upstream.end()
        return True  # keep our write half open: the other direction may still be delivering

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        self.conn.close(abort=exc is not None)


class _Pipe:
    """One direction of one connection: segments the source's bytes and writes them on time, in order."""

    def __init__(self, conn: _Connection, link: _Link, src: _Side, dst: _Side):
        self.conn, self.link, self.src, self.dst = conn, link, src, dst
        self.loop = link.loop
        self.queue: asyncio.Queue[_Segment | None] = asyncio.Queue()
        shape = link.shape
        bdp_bytes = shape.bandwidth_bps * (shape.latency_s + shape.jitter_s) / 8
        self.limit_bytes = max(MIN_BACKLOG_BYTES, int(4 * bdp_bytes))
        self.backlog_bytes = 0
        self.reading_paused = False
        self.unsent: collections.deque[_Segment] = collections.deque()  # fed, not yet written to ``dst``
        self.ended = False  # its destination has gone: what comes is not carried
        self.task = self.loop.create_task(self._deliver())
        self.task.add_done_callback(lambda _task: conn.pipe_done())  # however it ended: no connection stranded

    def drop(self) -> None:
        """Its connection has gone (or its target hung up): what the link has not served yet takes no link time
        (``_Link._pump``); what it has served is still written, in order."""
        while self.unsent:
            self.unsent.popleft().delivery.cancel()

    def end(self) -> None:
        """Its destination hung up: drop what the link has not served, carry nothing more, and end."""
        if not self.ended:
            self.ended = True
            self.drop()
            self.queue.put_nowait(None)

    def feed(self, data: bytes) -> None:
        if self.ended:
            return
        now_s, step = self.loop.time(), self.link.shape.segment_bytes
        for i in range(0, len(data), step):
            seg = _Segment(data[i : i + step], self.loop.create_future())
            self.unsent.append(seg)
            self.queue.put_nowait(seg)
            self.link.submit(seg, now_s)
        self.backlog_bytes += len(data)
        if self.backlog_bytes > self.limit_bytes and not self.reading_paused:
            self.reading_paused = True
            self._src_transport().pause_reading()

    def feed_eof(self) -> None:
        if not self.ended:
            self.queue.put_nowait(None)

    def _src_transport(self) -> asyncio.Transport:
        assert self.src.transport is not None
        return self.src.transport

    async def _deliver(self) -> None:
        dst = self.dst.transport
        assert dst is not None
        dropped = False
        while (seg := await self.queue.get()) is not None:
            await asyncio.wait([seg.delivery])  # cancelled (``drop``): the pipe ends here, not by cancellation
            if dropped := seg.delivery.cancelled():
                break
            await _sleep_until(self.loop, seg.delivery.result())
            await self.dst.writable.wait()
            if dst.is_closing():
                return
            dst.write(seg.data)
            if self.unsent and self.unsent[0] is seg:  # else dropped meanwhile (served segments are still written)
                self.unsent.popleft()
            self.backlog_bytes -= len(seg.data)
            if self.reading_paused and self.backlog_bytes <= self.limit_bytes // 2:
                self.reading_paused = False
                self._src_transport().resume_reading()
        if not dropped and not dst.is_closing() and dst.can_write_eof():
            dst.write_eof()  # propagate the half-close once everything before it is delivered
        self.conn.pipe_done()


class _Connection:
    """A client socket accepted by the proxy and its socket to the target."""

    def __init__(self, proxy: ShapingProxy):
        self.proxy = proxy
        self.client, self.target = _Side(self), _Side(self)
        self.pipes: list[_Pipe] = []
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False
        self.spoke = False  # its client has sent a byte (past the key)
        self.paired = not proxy.key  # its client has opened with the link's key
        self.greeting = b""  # the key's bytes received so far
        self.early = b""  # what came with the key, fed once the target is there
        self.deadline: asyncio.TimerHandle | None = None

    def made(self, side: _Side) -> None:
        assert side.transport is not None
        if side is self.client and not self.paired:
            unpaired = self.proxy._unpaired
            if len(unpaired) >= MAX_UNPAIRED:
                next(iter(unpaired)).refuse()  # the oldest makes way
            unpaired[self] = None
            self.deadline = asyncio.get_running_loop().call_later(PAIR_TIMEOUT_S, self.refuse)
            return
        if side is self.client:
            self._enter()
            return
        if self.closed:  # evicted (or given up) while its target connection was being made
            side.transport.abort()
            return
        if self.proxy.present:
            side.transport.write(self.proxy.present)  # to the next paired link: not shaped, as this one's key
        up, down = self.proxy._links
        self.client.outgoing = _Pipe(self, up, self.client, self.target)
        self.target.outgoing = _Pipe(self, down, self.target, self.client)
        self.pipes = [self.client.outgoing, self.target.outgoing]
        if self.early:
            self.spoke = True
            self.client.outgoing.feed(self.early)
            self.early = b""
        assert self.client.transport is not None
        self.client.transport.resume_reading()

    def greet(self, data: bytes) -> None:
        """Take the link's key from the start of what an unpaired client sent; what follows it is kept for the
        target. A byte that differs from the key refuses the connection at once."""
        key = self.proxy.key
        take = len(key) - len(self.greeting)
        self.greeting += data[:take]
        if not hmac.compare_digest(self.greeting, key[: len(self.greeting)]):
            self.refuse()
        elif len(self.greeting) == len(key):
            self.paired = True
            self.proxy._unpaired.pop(self, None)
            if self.deadline is not None:
                self.deadline.cancel()
            self.early = data[take:]
            self._enter()

    def refuse(self) -> None:
        """Close a connection that did not open with the link's key (or ended before it had)."""
        if not self.closed and not self.paired:
            self.proxy.unpaired += 1
            self.close(abort=True)

    def _enter(self) -> None:
        """A client that may use the link: counted among the connections, the target dialled."""
        side = self.client
        assert side.transport is not None
        if len(self.proxy._connections) >= MAX_CONNECTIONS:  # a flood of strangers
            silent = next((c for c in self.proxy._connections if not c.spoke), None)
            self.proxy.refused += 1
            if silent is None:  # refused, nothing buffered
                side.transport.abort()
                return
            silent.close(abort=True)  # the oldest that said nothing makes way
        side.transport.pause_reading()  # until the target is there to receive
        self.proxy._connections[self] = None
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.proxy.target
        try:
            sock = await tcp.dial_async((host, port), self.proxy.congestion_control)
            await asyncio.get_running_loop().create_connection(lambda: self.target, sock=sock)
        except OSError as exc:  # passed on as a refused connection: the dialling node retries
            # a target not listening yet is the start-up race every run has (pods start in any order): not news
            level = logging.DEBUG if isinstance(exc, ConnectionRefusedError) else logging.WARNING
            log.log(level, "shaping proxy: cannot reach target %s:%s: %s", host, port, exc)
            self.close(abort=True)

    def pipe_done(self) -> None:
        if all(p.task.done() or p.task is asyncio.current_task() for p in self.pipes):
            self.close(abort=False)

    def close(self, abort: bool) -> None:
        """Close both sockets: flushing what was written when both directions ended, else at once."""
        if self.closed:
            return
        self.closed = True
        self.proxy._connections.pop(self, None)
        self.proxy._unpaired.pop(self, None)
        if self.deadline is not None:
            self.deadline.cancel()
        for pipe in self.pipes:
            pipe.drop()
        current = asyncio.current_task()
        for task in [self.connecting, *(p.task for p in self.pipes)]:
            if task is not None and task is not current:
                task.cancel()
        for side in (self.client, self.target):
            transport = side.transport
            if transport is None or transport.is_closing():
                continue
            if abort:
                transport.abort()
            else:
                transport.close()


class ShapingProxy:
    """Forwards TCP connections to a target, shaping each direction like a simulated link.

    Runs its own asyncio loop in a background thread, so synchronous code can use it: ``start()`` returns
    the bound port, ``stop()`` closes the listener and every connection (undelivered data is discarded)
    and joins the thread; ``with ShapingProxy(...) as proxy:`` does both. ``key``: what a connection must open
    with (none: any connection is carried); ``present``: what to open the target connection with;
    ``congestion_control``: every connection's, both sides (``hw.tcp``; "": the machine's default).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        shape: LinkShape,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        downstream_shape: LinkShape | None = None,
        key: bytes = b"",
        present: bytes = b"",
        congestion_control: str = "",
    ):
        self.target = (target_host, target_port)
        self.key, self.present = bytes(key), bytes(present)
        self.congestion_control = congestion_control
        self.shapes = (shape, downstream_shape or shape)
        self.seed, self.host = seed, host
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: tuple[_Link, ...] = ()
        self._connections: dict[_Connection, None] = {}  # in the order they came
        self.refused = 0  # connections over ``MAX_CONNECTIONS``: refused, or a silent one closed for them
        self._unpaired: dict[_Connection, None] = {}  # accepted, not yet opened with the key; in the order they came
        self.unpaired = 0  # connections closed for not opening with the key in time

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ShapingProxy is not started")
        return self._port

    def start(self) -> int:
        """Listen and serve in a background thread; returns the bound port (idempotent)."""
        if self._loop is not None:
            return self.port
        loop = self._loop = asyncio.new_event_loop()
        seeds = np.random.SeedSequence(self.seed).spawn(len(self.shapes))
        self._links = tuple(
            _Link(loop, shape, np.random.default_rng(s)) for shape, s in zip(self.shapes, seeds, strict=True)
        )
        self._thread = threading.Thread(target=loop.run_forever, name="shaping-proxy", daemon=True)
        self._thread.start()
        try:
            self._port = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(START_TIMEOUT_S)
        except BaseException:
            self._halt()
            raise
        return self._port

    def stop(self) -> None:
        """Close the listener and all connections, then stop the loop and join its thread (idempotent)."""
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(STOP_TIMEOUT_S)
        finally:
            self._halt()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per direction (upstream = client to target): payload bytes and segments read, retransmissions, and
        segments dropped unserved because their connection had gone."""
        if not self._links:
            return {d: dict.fromkeys(("bytes", "segments", "retransmissions", "dropped"), 0) for d in DIRECTIONS}
        return {d: dict(link.counters) for d, link in zip(DIRECTIONS, self._links, strict=True)}

    def __enter__(self) -> ShapingProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _listen(self) -> int:
        loop = asyncio.get_running_loop()
        sock = tcp.listener((self.host, self._requested_port), self.congestion_control)
        sock.setblocking(False)
        self._server = await loop.create_server(lambda: _Connection(self).client, sock=sock)
        return int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in [*self._connections, *self._unpaired]:
            conn.close(abort=True)
        if self._server is not None:
            await self._server.wait_closed()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):  # let aborted transports run connection_lost, which closes their sockets
            await asyncio.sleep(0)

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        with contextlib.suppress(RuntimeError):  # still running only if the join timed out
            loop.close()
        self._loop = self._thread = self._server = None
        self._port = None


def open_path(
    target_host: str,
    target_port: int,
    shape: LinkShape | Iterable[LinkShape],
    seed: int = 0,
    *,
    key: bytes = b"",
    present: bytes = b"",
    congestion_control: str = "",
) -> ShapingProxy:
    """A started proxy to the target, shaped like one link or a multi-hop path (see LinkShape.from_path);
    ``key``, ``present`` and ``congestion_control`` as ``ShapingProxy`` takes them."""
    if not isinstance(shape, LinkShape):
        shape = LinkShape.from_path(shape)
    proxy = ShapingProxy(target_host, target_port, shape, seed=seed, key=key, present=present,
                         congestion_control=congestion_control)  # fmt: skip
    proxy.start()
    return proxy
