"""The door of a listening node: how many strangers may be half-way through a handshake, and for how long.

Every connection to a node's listening port is a stranger until its handshake authenticates it. A ``Gate``
bounds them, so that no stranger can keep the run's own peers out:

- at most ``slots`` handshakes at once;
- each connection must deliver its HELLO within ``HELLO_TIMEOUT_S`` of connecting and authenticate within
  ``HANDSHAKE_TIMEOUT_S`` -- deadlines for the whole step, not for each read: a peer trickling a byte every few
  seconds held its slot for ever under a per-read timeout;
- when every slot is taken, a newcomer takes the slot of the oldest connection that has not delivered its HELLO
  (a node sends its HELLO as it connects, so only connections that said nothing lose theirs: sixty-four silent
  or trickling connections refused every pod before), or, where all have, of the oldest of those: a stranger
  that names a pod and then hangs (a pod's name is public) holds a slot only until sixty-four newer connections
  came, and a pod's own handshake takes milliseconds.

Several handshakes may name the same peer at once: cutting the older one for a newer one let a stranger sending
HELLOs under a device's name cut the device's own handshake every time (a review found it).

A connection that loses its slot or runs out of time is shut down (its handshake thread reads the end of the
stream and gives up) and counted in the node's security counters (``evicted``, ``timeout``). Initiators treat
a handshake cut that way as a reason to connect again, wherever the cut lands: before the answer, in its middle
(a truncated record), or after their last message, where only the session's missing first record shows it
(``client.open_session``, ``devices._device``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hw.channel import CUT, Channel, ConnectionClosed
from hw.node.common import HANDSHAKE_TIMEOUT_S, Node  # from connecting to an authenticated peer (or closed, counted)
from sim.contract import SpanRow

HELLO_TIMEOUT_S = 2.0  # from connecting to a complete HELLO (ours is one write, sent as the connection opens)
REAP_EVERY_S = 0.1


@dataclass(eq=False)
class Pending:
    """One connection's handshake in progress."""

    sock: socket.socket
    hello_by_s: float
    done_by_s: float
    name: str | None = None  # whom its HELLO named, once delivered
    cut: str | None = field(default=None)  # why the gate shut it down (the counter it went to)


class Gate:
    """Unauthenticated connections of one listener (module docstring). ``enter`` as a connection is accepted,
    ``named`` when its HELLO names a peer, ``leave`` when its handshake is over, either way. Invariant: a
    connection is in ``pending`` from ``enter`` until it leaves or is cut, and is cut at most once."""

    def __init__(self, slots: int, counters: Counter[str], hello_timeout_s: float = HELLO_TIMEOUT_S,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S):  # fmt: skip
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot (got {slots})")
        self.slots, self.counters = slots, counters
        self.hello_timeout_s, self.handshake_timeout_s = hello_timeout_s, handshake_timeout_s
        self.pending: list[Pending] = []  # in the order they connected
        self.lock = threading.Lock()
        threading.Thread(target=self._reap, daemon=True, name="gate-reaper").start()

    def enter(self, sock: socket.socket) -> Pending:
        """A slot for a new connection (taking another's if every slot is taken)."""
        now = time.monotonic()
        with self.lock:
            if len(self.pending) >= self.slots:  # the oldest silent one makes way, else the oldest of all
                self._cut(next((p for p in self.pending if p.name is None), self.pending[0]), "evicted")
            p = Pending(sock, now + self.hello_timeout_s, now + self.handshake_timeout_s)
            self.pending.append(p)
            return p

    def named(self, p: Pending, name: str) -> bool:
        """Its HELLO named ``name``. False when the gate has already cut this connection (its handshake must
        stop before any KEM or signature work)."""
        with self.lock:
            if p.cut is not None:
                return False
            p.name = name
            return True

    def leave(self, p: Pending, authenticated: bool) -> bool:
        """Its handshake is over; False when the gate had cut it meanwhile (its handshake may have authenticated
        an instant after the gate shut the socket down: the connection is dead all the same). One that named a
        peer and then stopped (a stranger using a public name makes us sign for it, then hangs up) is counted as
        ``unfinished``: not the run's work, and not silent."""
        with self.lock:
            if p not in self.pending:
                return False
            self.pending.remove(p)
            if not authenticated and p.name is not None:
                self.counters["unfinished"] += 1
            return True

    def _cut(self, p: Pending, why: str) -> None:
        """Shut a pending connection down (caller holds ``lock``): the thread reading it sees the stream end."""
        p.cut = why
        self.counters[why] += 1
        self.pending.remove(p)
        with contextlib.suppress(OSError):
            p.sock.shutdown(socket.SHUT_RDWR)

    def _reap(self) -> None:
        while True:
            time.sleep(REAP_EVERY_S)
            now = time.monotonic()
            with self.lock:
                for p in [q for q in self.pending if now > q.done_by_s or (q.name is None and now > q.hello_by_s)]:
                    self._cut(p, "timeout")


def authenticate(node: Node, ch: Channel, gate: Gate, pending: Pending, admit: Callable[[str], str | None],
                 rnd: int | None = None, phase: str | None = None) -> str:  # fmt: skip
    """``ch.accept`` for a connection in ``gate``: the peer's name, once ``admit`` and the gate let it in (no KEM
    or signature work before); the handshake's spans (``node.timer_for(rnd, phase)``) are kept only once the peer
    authenticated. Whatever ended it early is raised (a cut that came as it authenticated too), the connection
    closed and the gate told."""
    ch.sock.settimeout(HANDSHAKE_TIMEOUT_S)  # the gate's deadline is for the whole handshake; this, for a read
    held: list[SpanRow] = []  # a stranger's half-handshake is not the run's work
    try:
        name = ch.accept(node.timer_for(rnd, phase, held=held), admit=lambda n: admit(n) or _named(gate, pending, n))
    except BaseException:
        gate.leave(pending, authenticated=False)
        ch.sock.close()
        raise
    if not gate.leave(pending, authenticated=True):  # cut as it authenticated: its peer connects again
        ch.sock.close()
        raise ConnectionClosed(f"{name}: the gate cut the connection ({pending.cut})")
    ch.sock.settimeout(None)
    node.keep(held)
    return name


def _named(gate: Gate, pending: Pending, name: str) -> str | None:
    return None if gate.named(pending, name) else CUT
