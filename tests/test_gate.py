"""hw.node.gate: the bound on a node's unauthenticated connections, with real sockets (socketpairs)."""

from __future__ import annotations

import socket
import time
from collections import Counter

import pytest

from hw.node.gate import Gate


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
    assert p is not None
    theirs.sendall(b"\x01")  # a trickle: a byte now and then does not extend a deadline
    assert _closed(theirs) and counters["timeout"] == 1 and p.cut == "timeout"
    assert not gate.named(p, "client-1")  # its handshake must stop


def test_the_whole_handshake_has_one_deadline():
    counters: Counter[str] = Counter()
    gate = Gate(4, counters, hello_timeout_s=5, handshake_timeout_s=0.3)
    ours, theirs = _pair()
    p = gate.enter(ours)
    assert p is not None and gate.named(p, "client-1")
    started = time.monotonic()
    assert _closed(theirs) and time.monotonic() - started < 2 and counters["timeout"] == 1


def test_a_full_gate_gives_a_silent_connections_slot_to_a_newcomer_never_a_named_one():
    counters: Counter[str] = Counter()
    gate = Gate(2, counters, hello_timeout_s=5, handshake_timeout_s=5)
    (a, a_peer), (b, b_peer), (c, _), (d, _) = _pair(), _pair(), _pair(), _pair()
    pa, pb = gate.enter(a), gate.enter(b)
    assert pa is not None and pb is not None and gate.named(pb, "client-1")
    pc = gate.enter(c)  # full: the oldest silent one (a) makes way
    assert pc is not None and _closed(a_peer) and counters["evicted"] == 1
    assert gate.named(pc, "client-2")
    assert gate.enter(d) is None and counters["refused"] == 1  # every slot named: refused
    gate.leave(pb, authenticated=True)
    gate.leave(pc, authenticated=False)  # named, then gave up: a stranger that made us sign
    assert counters["unfinished"] == 1 and not gate.pending
    b_peer.close()


def test_a_newer_hello_of_the_same_name_takes_its_place():
    counters: Counter[str] = Counter()
    gate = Gate(8, counters, hello_timeout_s=5, handshake_timeout_s=5)
    (a, a_peer), (b, _) = _pair(), _pair()
    pa, pb = gate.enter(a), gate.enter(b)
    assert pa is not None and pb is not None
    assert gate.named(pa, "client-1") and gate.named(pb, "client-1")
    assert _closed(a_peer) and pa.cut == "evicted" and gate.pending == [pb]


def test_a_gate_needs_a_slot():
    with pytest.raises(ValueError, match="at least one slot"):
        Gate(0, Counter())
