"""hw.node.gate: the bound on a node's unauthenticated connections, with real sockets (socketpairs)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hw.channel import HEADER, SERVER, Channel, ConnectionClosed, Identity, SecurityError, load_trust, suite_from
from hw.node.client import open_session
from hw.node.gate import Gate, authenticate

ROOT = Path(__file__).resolve().parents[1]


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    return ours, theirs


def _closed(theirs: socket.socket) -> bool:
    """The peer's end sees the stream end (the gate shut the node's end down)."""
    try:
        return theirs.recv(1) == b""
    except OSError:
        return True


def test_a_connection_that_names_no_one_in_time_is_cut_and_counted():
    counters: Counter[str] = Counter()
    gate = Gate(4, counters, hello_timeout_s=0.2, handshake_timeout_s=5)
    ours, theirs = _pair()
    p = gate.enter(ours)
    theirs.sendall(b"\x01")  # a trickle: a byte now and then does not extend a deadline
    assert _closed(theirs) and counters["timeout"] == 1 and p.cut == "timeout"
    assert not gate.named(p, "client-1")  # its handshake must stop


def test_the_whole_handshake_has_one_deadline():
    counters: Counter[str] = Counter()
    gate = Gate(4, counters, hello_timeout_s=5, handshake_timeout_s=0.3)
    ours, theirs = _pair()
    p = gate.enter(ours)
    assert gate.named(p, "client-1")
    started = time.monotonic()
    assert _closed(theirs) and time.monotonic() - started < 2 and counters["timeout"] == 1


def test_a_full_gate_gives_the_oldest_silent_connections_slot_to_a_newcomer_else_the_oldest():
    counters: Counter[str] = Counter()
    gate = Gate(2, counters, hello_timeout_s=5, handshake_timeout_s=5)
    (a, a_peer), (b, b_peer), (c, _), (d, _) = _pair(), _pair(), _pair(), _pair()
    pa, pb = gate.enter(a), gate.enter(b)
    assert gate.named(pb, "client-1")
    pc = gate.enter(c)  # full: the oldest silent one (a) makes way, not the older named one (b)
    assert _closed(a_peer) and pa.cut == "evicted" and pb.cut is None and counters["evicted"] == 1
    assert gate.named(pc, "client-2")
    pd = gate.enter(d)  # every slot named: the oldest (b, a stranger that named a pod and hangs?) makes way
    assert _closed(b_peer) and pb.cut == "evicted" and gate.pending == [pc, pd]
    gate.leave(pc, authenticated=False)  # named, then gave up: a stranger that made us sign
    gate.leave(pd, authenticated=True)
    assert counters["unfinished"] == 1 and not gate.pending


def test_handshakes_naming_the_same_peer_do_not_cut_each_other():
    """A stranger's HELLOs under a device's public name must not cut the device's own handshake."""
    counters: Counter[str] = Counter()
    gate = Gate(8, counters, hello_timeout_s=5, handshake_timeout_s=5)
    (a, _), (b, _) = _pair(), _pair()
    pa, pb = gate.enter(a), gate.enter(b)
    assert gate.named(pa, "ecg-a#0") and gate.named(pb, "ecg-a#0")
    assert pa.cut is None and pb.cut is None and gate.pending == [pa, pb]


def test_a_gate_needs_a_slot():
    with pytest.raises(ValueError, match="at least one slot"):
        Gate(0, Counter())


# --- the initiator's side: a handshake the responder cut is tried again ------------------------------------


def _client_node(tmp_path):
    """A client-1 node of localhost.yaml (its configuration only: nothing runs)."""
    from hw.local import LocalAddressing
    from hw.node.common import Node
    from hw.node.keys import GeneratedKeys
    from hw.node.report import FileReporter
    from hw.runconfig import build
    from sim.scenario import load_scenario

    s = load_scenario(ROOT / "scenarios" / "localhost.yaml", ["workload.fl.model_parameters=50000"])
    cfg = build(s, "sequential", 2, 1, LocalAddressing(s, 1), epoch=time.monotonic())
    return Node(tmp_path, "client-1", cfg, GeneratedKeys(tmp_path, suite_from(cfg.suite)), FileReporter(tmp_path))


@pytest.mark.parametrize("cut", ["mid-answer", "before-finish"])
def test_a_handshake_the_responders_gate_cut_is_tried_again(tmp_path, cut):
    """A flood of strangers makes the aggregator's gate give a pod's slot away: the cut may land in the middle of
    the responder's answer (the pod reads a truncated record) or after the pod's last message (its handshake is
    done as far as it can see; the session then ends before its first record). Either is a closed connection, not
    a forgery: the pod connects again instead of failing the run, and keeps only the handshake that held."""
    node = _client_node(tmp_path)
    suite = node.suite
    agg, cli = Identity.generate("aggregator", suite), Identity.generate("client-1", suite)
    trust = load_trust(suite, {"aggregator": agg.public(), "client-1": cli.public()})
    srv = socket.create_server(("127.0.0.1", 0))
    accepted: dict[str, str] = {}

    def aggregator() -> None:
        sock, _ = srv.accept()  # the first attempt: cut by the gate
        ch = Channel(sock, agg, suite, trust, counters=Counter())
        hello = ch.read_record()
        if cut == "mid-answer":
            sock.sendall(HEADER.pack(SERVER, 0, 0.0, 6000) + b"\0" * 1000)
        else:  # the whole answer, then a reset under the pod's FINISH
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            threading.Thread(target=ch.accept, args=(lambda *_: contextlib.nullcontext(), hello), daemon=True).start()
            time.sleep(0.3)
        sock.close()
        sock, _ = srv.accept()  # the second: authenticated
        ch = Channel(sock, agg, suite, trust, counters=Counter())
        accepted["name"] = ch.accept(lambda *_: contextlib.nullcontext())
        ch.write_sealed(ch.seal(b"model", recipient_kem=None))

    t = threading.Thread(target=aggregator, daemon=True)
    t.start()
    ch, first = open_session(node, cli, trust, srv.getsockname(), "aggregator", timeout_s=10)
    assert ch.open(first) == b"model" and accepted == {"name": "client-1"}
    t.join(5)
    ops = [r.op for r in node.rows]  # the cut attempt's handshake work is not the run's
    assert ops.count(f"{suite.signature}.sign") == 1 and ops.count(f"{suite.kem}.encaps") == 1
    assert node.counters["truncated"] == 0  # a cut it recovered from is no attack (the gate counts the cut)


def test_a_malformed_answer_is_not_tried_again(tmp_path):
    """A whole SERVER record whose fields are too short is a forgery, not a cut: the pod fails at once."""
    node = _client_node(tmp_path)
    cli = Identity.generate("client-1", node.suite)
    trust = load_trust(node.suite, {"aggregator": Identity.generate("aggregator", node.suite).public(),
                                    "client-1": cli.public()})  # fmt: skip
    srv = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def aggregator() -> None:
        while True:
            try:
                sock, _ = srv.accept()
            except OSError:
                return
            accepted.append(sock)
            Channel(sock, cli, node.suite, trust, counters=Counter()).read_record()
            sock.sendall(HEADER.pack(SERVER, 0, 0.0, 3) + b"abc")

    threading.Thread(target=aggregator, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(SecurityError):
        open_session(node, cli, trust, srv.getsockname(), "aggregator", timeout_s=10)
    assert time.monotonic() - started < 5 and len(accepted) == 1
    srv.close()


def test_an_aggregator_that_ended_before_its_first_message_ends_the_pod_at_once(tmp_path):
    """The aggregator authenticated the pod, then ended the run (and stopped listening) before round 1: the pod
    looks for it again only briefly, then ends with the closed session, not after its whole connect timeout."""
    node = _client_node(tmp_path)
    agg, cli = Identity.generate("aggregator", node.suite), Identity.generate("client-1", node.suite)
    trust = load_trust(node.suite, {"aggregator": agg.public(), "client-1": cli.public()})
    srv = socket.create_server(("127.0.0.1", 0))

    def aggregator() -> None:
        sock, _ = srv.accept()
        Channel(sock, agg, node.suite, trust, counters=Counter()).accept(lambda *_: contextlib.nullcontext())
        srv.close()
        sock.close()

    threading.Thread(target=aggregator, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        open_session(node, cli, trust, srv.getsockname(), "aggregator", timeout_s=30)
    assert time.monotonic() - started < 10


def test_a_rejected_handshake_is_not_tried_again(tmp_path):
    node = _client_node(tmp_path)
    suite = node.suite
    cli = Identity.generate("client-1", suite)
    impostor = Identity.generate("aggregator", suite)  # not the key the pod pinned
    trust = load_trust(suite, {"aggregator": Identity.generate("aggregator", suite).public(),
                               "client-1": cli.public()})  # fmt: skip
    srv = socket.create_server(("127.0.0.1", 0))

    def aggregator() -> None:
        sock, _ = srv.accept()
        own = load_trust(suite, {"aggregator": impostor.public(), "client-1": cli.public()})
        with contextlib.suppress(Exception):
            Channel(sock, impostor, suite, own, counters=Counter()).accept(lambda *_: contextlib.nullcontext())

    threading.Thread(target=aggregator, daemon=True).start()
    with pytest.raises(SecurityError):
        open_session(node, cli, trust, srv.getsockname(), "aggregator", timeout_s=10)


def test_spans_a_thread_captures_leave_the_other_threads_spans_alone(tmp_path):
    """A client holds its receive spans until the round is known (or drops them, at the end-of-run message);
    its telemetry threads record meanwhile, and theirs are neither dropped nor given that round."""
    node = _client_node(tmp_path)
    recorded = threading.Event()

    def telemetry() -> None:
        node.add("client-1", "local", "telemetry", "AES-256-GCM.decrypt", 1.0, 1.1, 0.0, 100)
        recorded.set()

    with node.captured() as opened:
        node.add("client-1", "local", "receive", "AES-256-GCM.decrypt", 2.0, 2.1, 0.0, 100)
        threading.Thread(target=telemetry).start()
        assert recorded.wait(5)
        with node.timer("receive", "ML-DSA-65.verify"):
            pass
    assert [r.phase for r in node.rows] == ["telemetry"] and node.rows[0].round == 0
    assert [r.op for r in opened] == ["AES-256-GCM.decrypt", "ML-DSA-65.verify"]
    node.keep([r._replace(round=3) for r in opened])
    node.add("client-1", "local", "train", "fl.train", 3.0, 3.5, 0.0, 0)  # no longer captured
    assert [(r.phase, r.round) for r in node.rows] == [("telemetry", 0), ("receive", 3), ("receive", 3), ("train", 0)]


def test_a_handshake_the_gate_cut_as_it_authenticated_is_not_let_in(tmp_path):
    """The gate's deadline (or a newcomer) may shut a connection down an instant before its handshake returns: a
    dead connection must not be registered as the pod's (its reconnection would be refused as a duplicate)."""
    node = _client_node(tmp_path)
    gate = Gate(4, node.counters, hello_timeout_s=5, handshake_timeout_s=0.2)
    ours, theirs = _pair()
    pending = gate.enter(ours)

    class Late:  # a handshake that authenticates just after the deadline
        sock = ours

        def accept(self, timer, admit):
            assert admit("client-1") is None
            time.sleep(0.6)  # the reaper cuts it meanwhile
            return "client-1"

    with pytest.raises(ConnectionClosed, match="cut"):
        authenticate(node, Late(), gate, pending, lambda name: None)  # type: ignore[arg-type]
    assert node.counters["timeout"] == 1 and _closed(theirs) and not gate.pending
