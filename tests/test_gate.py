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
