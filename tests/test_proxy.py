"""The shaping proxy over real sockets: delay, rate, loss, integrity, half-close, shutdown, validation."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from hw.proxy import LinkShape, ShapingProxy, open_path

Handler = Callable[[socket.socket], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], int]]:
    """Start threaded TCP servers on 127.0.0.1 running handle(sock) per connection; returns the port."""
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(handle: Handler) -> int:
        class Request(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with contextlib.suppress(OSError):
                    handle(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Request)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def echo(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def digest(sock: socket.socket) -> None:
    """Reply with the sha256 of everything received, after the client's half-close."""
    h = hashlib.sha256()
    while data := sock.recv(65536):
        h.update(data)
    sock.sendall(h.digest())
    sock.shutdown(socket.SHUT_WR)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def send_then_close(sock: socket.socket, payload: bytes) -> threading.Thread:
    """Send in a thread (so the caller can read at the same time), then half-close. A peer that closed first (a
    stranger the proxy cut off) ends it early: what arrived is the caller's to check."""

    def run() -> None:
        with contextlib.suppress(OSError):  # EPIPE, ECONNRESET, or ENOTCONN at the half-close
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_one_byte_round_trip_takes_twice_the_latency(serve):
    with ShapingProxy("127.0.0.1", serve(echo), LinkShape(1e9, 0.020)) as proxy, connect(proxy.port) as s:
        rtts_s = []
        for _ in range(10):
            t0 = time.monotonic()
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            rtts_s.append(time.monotonic() - t0)
    assert 0.040 <= statistics.median(rtts_s) <= 0.048
    assert min(rtts_s) >= 0.040  # never early: deliveries wait for absolute deadlines


def transfer_s(serve, shape: LinkShape, nbytes: int) -> float:
    """Seconds from the first byte sent to the last byte received by the target."""
    last_s: list[float] = []

    def sink(sock: socket.socket) -> None:
        while sock.recv(1 << 20):
            last_s.append(time.monotonic())

    payload = os.urandom(nbytes)
    with ShapingProxy("127.0.0.1", serve(sink), shape) as proxy, connect(proxy.port) as s:
        t0 = time.monotonic()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""  # the sink has read everything and closed
    return last_s[-1] - t0


def test_bandwidth_sets_transfer_time(serve):
    nbytes, latency_s = 2_000_000, 0.005
    slow_s = transfer_s(serve, LinkShape(20e6, latency_s), nbytes)
    expected_s = nbytes * 8 / 20e6 + latency_s
    assert slow_s == pytest.approx(expected_s, rel=0.15)
    assert transfer_s(serve, LinkShape(100e6, latency_s), nbytes) < slow_s / 2


def replayed_retransmissions(seed: int, segments: int, loss: float) -> int:
    """Losses drawn before `segments` successes from the upstream stream the proxy documents."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    lost = delivered = 0
    while delivered < segments:
        if rng.random() < loss:
            lost += 1
        else:
            delivered += 1
    return lost


def test_loss_retransmits_but_delivers_every_byte_in_order(serve):
    payload, seed = os.urandom(200_000), 7
    shape = LinkShape(100e6, 0.002, loss=0.5, segment_bytes=1000)
    with ShapingProxy("127.0.0.1", serve(digest), shape, seed=seed) as proxy, connect(proxy.port) as s:
        send_then_close(s, payload)
        assert recv_all(s) == hashlib.sha256(payload).digest()
        up = proxy.stats()["upstream"]
    segments = up["segments"]
    assert up["bytes"] == len(payload)
    assert 200 <= segments <= 260  # reads may split a 1000-byte segment in two
    # A resent segment can be lost again (as in sim/network.py): losses before n successes are
    # negative-binomial, mean n * loss / (1 - loss) = n, sd sqrt(2 n); and exactly the seeded draws.
    assert abs(up["retransmissions"] - segments) <= 5 * math.sqrt(2 * segments)
    assert up["retransmissions"] == replayed_retransmissions(seed, segments, 0.5)


def test_jittery_lossy_echo_is_byte_exact_both_ways(serve):
    payload = os.urandom(1_000_000)
    shape = LinkShape(200e6, 0.002, jitter_s=0.002, loss=0.05, segment_bytes=4096)
    with ShapingProxy("127.0.0.1", serve(echo), shape, seed=1) as proxy, connect(proxy.port) as s:
        sender = send_then_close(s, payload)
        assert recv_all(s) == payload  # echoed while still sending; EOF propagated both ways
        sender.join(5)
        stats = proxy.stats()
    assert stats["upstream"]["bytes"] == stats["downstream"]["bytes"] == len(payload)
    assert stats["upstream"]["retransmissions"] > 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bandwidth_bps": -1.0}, "bandwidth_bps"),
        ({"bandwidth_bps": 0.0}, "bandwidth_bps"),
        ({"bandwidth_bps": math.nan}, "bandwidth_bps"),
        ({"latency_s": -0.001}, "latency_s"),
        ({"jitter_s": math.inf}, "jitter_s"),
        ({"loss": 1.0}, "loss"),
        ({"loss": -0.1}, "loss"),
        ({"segment_bytes": 0}, "segment_bytes"),
        ({"segment_bytes": 1.5}, "segment_bytes"),
        ({"burst_bytes": -1}, "burst_bytes"),
    ],
)
def test_invalid_shape_names_the_field(kwargs, field):
    args = {"bandwidth_bps": 1e6, "latency_s": 0.01, **kwargs}
    with pytest.raises(ValueError, match=rf"LinkShape\.{field} .*got"):
        LinkShape(**args)


def test_from_path_combines_hops():
    hops = [
        LinkShape(1e6, 0.010, jitter_s=0.001, loss=0.1, segment_bytes=4096),
        LinkShape(100e6, 0.002, loss=0.2),
        LinkShape(10e6, 0.003, jitter_s=0.002),
    ]
    path = LinkShape.from_path(hops)
    assert path.bandwidth_bps == 1e6
    assert path.latency_s == pytest.approx(0.015)
    assert path.jitter_s == pytest.approx(0.003)
    assert path.loss == pytest.approx(1 - 0.9 * 0.8)
    assert path.segment_bytes == 4096
    assert LinkShape.from_path([hops[1]]) == hops[1]
    with pytest.raises(ValueError, match="at least one"):
        LinkShape.from_path([])


def test_open_path_is_started_and_stop_frees_the_port(serve):
    proxy = open_path("127.0.0.1", serve(echo), [LinkShape(1e9, 0.001), LinkShape(1e9, 0.001)])
    port = proxy.port
    with connect(port) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        t0 = time.monotonic()
        proxy.stop()
        assert time.monotonic() - t0 < 1.0
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(1) == b""  # closed, not hanging until the 10 s timeout
    with pytest.raises(ConnectionRefusedError):
        connect(port)
    proxy.stop()  # idempotent
    with ShapingProxy("127.0.0.1", 1, LinkShape(1e9, 0.0), port=port) as again:
        assert again.port == port


def test_unreachable_target_closes_the_client():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]  # bound, not listening: connections are refused
        proxy = ShapingProxy("127.0.0.1", dead_port, LinkShape(1e9, 0.0))
        with proxy, connect(proxy.port) as s, contextlib.suppress(ConnectionResetError):
            assert s.recv(1) == b""


def test_a_token_bucket_lets_its_depth_through_at_once(serve):
    """``burst_bytes`` (a scenario link's token bucket, sim/network.py ``LinkServer.leaves``): 400 kB at 8 Mbit/s
    take 0.4 s plain and 0.4 s less the 200 kB bucket's 0.2 s shaped. Real sockets, the proxy's own clock."""
    from sim.scenario import LinkParams

    shape = LinkShape.of(LinkParams(bandwidth_bps=8e6, latency_s=0.002, burst_bytes=200_000))
    assert shape.burst_bytes == 200_000 and shape.burst_s() == pytest.approx(0.2)
    shaped_s = transfer_s(serve, shape, 400_000)
    plain_s = transfer_s(serve, LinkShape(8e6, 0.002), 400_000)
    assert plain_s == pytest.approx(0.402, rel=0.15)
    assert shaped_s == pytest.approx(0.202, rel=0.15)
    path = LinkShape.from_path([LinkShape(1e9, 0.001, burst_bytes=1 << 20), shape, LinkShape(8e6, 0, burst_bytes=5)])
    assert path.burst_bytes == 5  # the slowest hops' shallowest bucket


def test_a_pour_the_target_refuses_holds_the_link_for_no_one_after(serve):
    """A stranger pouring 2 MB into a 8 Mbit/s link, whose target closes the connection at its first bytes (a
    node at a bad record), booked 2 s of the link at once: a pod's message after it waited for all of it (one
    4 MiB pour kept a device's frames out for half a minute). Now a segment is served at its turn, and those of
    a connection that has gone are dropped."""
    first = threading.Event()

    def node(sock: socket.socket) -> None:
        if not first.is_set():  # the stranger: read a little, refuse, close
            first.set()
            sock.recv(64)
            sock.close()
            return
        echo(sock)

    with ShapingProxy("127.0.0.1", serve(node), LinkShape(8e6, 0.001, segment_bytes=16384)) as proxy:
        stranger = connect(proxy.port)
        send_then_close(stranger, os.urandom(2_000_000))
        time.sleep(0.3)  # the node has refused it by now
        started = time.monotonic()
        pod = connect(proxy.port)
        send_then_close(pod, b"x" * 10_000)
        assert recv_all(pod) == b"x" * 10_000
        took_s = time.monotonic() - started
        assert took_s < 0.6, took_s  # 2 x 10 kB at 8 Mbit/s, 4 ms of latency, and the first segments of the pour
        assert proxy.stats()["upstream"]["dropped"] > 0
    stranger.close()


def test_a_full_proxy_gives_a_silent_connections_place_to_a_newcomer_else_refuses_it(serve, monkeypatch):
    """Over the cap, a newcomer takes the place of the oldest connection that has sent nothing (a node speaks as it
    connects; a stranger holding places in silence kept every pod out); where all have spoken, it is refused."""
    from hw import proxy as proxy_module

    monkeypatch.setattr(proxy_module, "MAX_CONNECTIONS", 3)
    with ShapingProxy("127.0.0.1", serve(echo), LinkShape(1e9, 0.0)) as proxy:
        silent, *spoke = [connect(proxy.port) for _ in range(3)]
        for k, sock in enumerate(spoke):
            sock.sendall(b"%d" % k)
            assert sock.recv(1) == b"%d" % k
        newcomer = connect(proxy.port)  # the silent one makes way
        silent.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert silent.recv(1) == b""
        newcomer.sendall(b"n")
        assert newcomer.recv(1) == b"n"
        extra = connect(proxy.port)  # all three have spoken: accepted by the kernel, then closed by the proxy
        extra.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert extra.recv(1) == b""
        assert proxy.refused == 2
        for sock in [*spoke, newcomer]:
            send_then_close(sock, b"ok")
            assert recv_all(sock) == b"ok"  # those that kept their place still work


def test_a_node_that_cut_a_silent_connection_frees_its_place(serve):
    """A node's gate cuts a connection that sends nothing (its HELLO deadline): the proxy ended only the node's
    direction and kept waiting for the client, so sixty-four silent strangers held every place for good and the
    run failed with no pod authenticated (an attack hunt found it)."""

    def node(sock: socket.socket) -> None:
        sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            sock.recv(64)  # nothing comes: the deadline passes
        sock.close()

    with ShapingProxy("127.0.0.1", serve(node), LinkShape(8e6, 0.001)) as proxy:
        strangers = [connect(proxy.port) for _ in range(8)]  # silent, and never closed
        for sock in strangers:
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""  # the node's end reached the stranger: its connection is over
        deadline = time.monotonic() + 5
        while proxy._connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy._connections
    for sock in strangers:
        sock.close()


def test_no_connection_outlives_a_node_that_hung_up_on_it(serve):
    """A node that hangs up on a client with bytes still queued (a stranger's pour): dropping those bytes ended the
    pipe by cancellation, so the connection was never closed; 64 such hang-ups filled the proxy for good (a review
    found it)."""

    def node(sock: socket.socket) -> None:
        sock.recv(64)
        sock.shutdown(socket.SHUT_RDWR)
        time.sleep(0.2)
        sock.close()

    with ShapingProxy("127.0.0.1", serve(node), LinkShape(8e6, 0.001, segment_bytes=16384)) as proxy:
        for _ in range(12):
            stranger = connect(proxy.port)
            with contextlib.suppress(OSError):
                stranger.sendall(os.urandom(200_000))
            stranger.close()
        deadline = time.monotonic() + 10
        while proxy._connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy._connections and proxy.refused == 0


def test_a_flood_of_silent_connections_leaves_no_task_behind(serve, monkeypatch):
    """A silent connection evicted just as its target connection was made got its pipes anyway, on a closed
    connection: their tasks never ended ("Task was destroyed but it is pending!" on the user's terminal; a review
    counted 122 such tasks after 3,000 connections)."""
    import asyncio

    from hw import proxy as proxy_module

    monkeypatch.setattr(proxy_module, "MAX_CONNECTIONS", 16)

    def node(sock: socket.socket) -> None:
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            sock.recv(64)

    with ShapingProxy("127.0.0.1", serve(node), LinkShape(1e9, 0.0)) as proxy:
        flood: list[socket.socket] = []
        for _ in range(1500):  # silent, each newcomer evicting the oldest: some as their target connection is made
            with contextlib.suppress(OSError):
                flood.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=2))
            if len(flood) > 100:
                flood.pop(0).close()
        time.sleep(1)
        assert proxy._loop is not None
        pending = asyncio.run_coroutine_threadsafe(_tasks(), proxy._loop).result(5)
        assert pending <= 2 * proxy_module.MAX_CONNECTIONS + 1, pending  # a live connection's two pipes
        for sock in flood:
            sock.close()


async def _tasks() -> int:
    import asyncio

    return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])


# --- a paired link: only connections opening with its key are carried ------------------------------------------

KEY = bytes(range(16))


def closed_unread(sock: socket.socket) -> bool:
    """The proxy closed ``sock`` (reset or end of stream) without a byte back."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_paired_link_carries_only_connections_opening_with_its_key(serve):
    """A stranger's pour (no key, or a wrong one) is closed at its first byte: it never reaches the target and takes
    no link time, so the run's own connection, right behind it, is as fast as on an idle link. Before pairing, one
    64 KiB write every 1.5 s into a 262 kbit/s device link held it past its pod's handshake deadline for good."""
    reached: list[bytes] = []

    def node(sock: socket.socket) -> None:
        data = recv_all(sock)
        reached.append(data)
        sock.sendall(hashlib.sha256(data).digest())

    shape = LinkShape(262_000, 0.0075, segment_bytes=65536)
    with ShapingProxy("127.0.0.1", serve(node), shape, key=KEY) as proxy:
        strangers = [connect(proxy.port) for _ in range(2)]
        send_then_close(strangers[0], os.urandom(65536))
        send_then_close(strangers[1], KEY[:8] + bytes(8) + os.urandom(65536))  # half the key
        assert all(closed_unread(s) for s in strangers)
        started = time.monotonic()
        pod = connect(proxy.port)
        send_then_close(pod, KEY + b"hello")  # the key and the first bytes in one write
        assert recv_all(pod) == hashlib.sha256(b"hello").digest()
        took_s = time.monotonic() - started
        assert took_s < 0.5, took_s  # behind a 64 KiB pour: 2 s at this rate
        assert reached == [b"hello"]  # the key stripped, the strangers never connected onward
        assert proxy.unpaired == 2 and proxy.stats()["upstream"]["bytes"] == 5


def test_a_paired_link_opens_its_target_with_what_it_presents(serve):
    """The device emulator's access link dials the pod through the run's route link: it presents the run's key,
    unshaped, before the device's bytes."""
    got: list[bytes] = []

    def node(sock: socket.socket) -> None:
        got.append(recv_all(sock))

    with ShapingProxy("127.0.0.1", serve(node), LinkShape(1e9, 0.0), key=KEY, present=b"onward-key") as proxy:
        pod = connect(proxy.port)
        pod.sendall(KEY)
        time.sleep(0.05)  # the key alone first: the rest comes in a later read
        send_then_close(pod, b"frame").join()
        assert closed_unread(pod)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [b"onward-key" + b"frame"]
        assert proxy.stats()["upstream"]["bytes"] == 5


def test_unpaired_connections_are_capped_and_time_out(serve, monkeypatch):
    """Strangers that connect and say nothing hold no place for long: over ``MAX_UNPAIRED`` the oldest makes way,
    and each is closed ``PAIR_TIMEOUT_S`` after it came; a node pairing meanwhile is carried."""
    from hw import proxy as proxy_module

    monkeypatch.setattr(proxy_module, "MAX_UNPAIRED", 4)
    monkeypatch.setattr(proxy_module, "PAIR_TIMEOUT_S", 0.5)
    with ShapingProxy("127.0.0.1", serve(echo), LinkShape(1e9, 0.0), key=KEY) as proxy:
        silent = [connect(proxy.port) for _ in range(6)]
        assert closed_unread(silent[0]) and closed_unread(silent[1])  # made way for the 5th and 6th
        pod = connect(proxy.port)
        pod.sendall(KEY + b"x")
        assert pod.recv(1) == b"x"
        assert all(closed_unread(s) for s in silent[2:])  # timed out
        assert proxy.unpaired == 6 and not proxy._unpaired
        send_then_close(pod, b"ok")
        assert recv_all(pod) == b"ok"
    for s in [*silent, pod]:
        s.close()
