"""The client role: one session with the aggregator; per round receive the model, train, upload the update.

A client that receives device telemetry also serves its devices' sessions on its telemetry port and
decrypts their frames on one thread per device.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable

import numpy as np

from hw import data, fl
from hw.channel import REKEY, Channel, ConnectionClosed, Identity, Peer, Record, SecurityError, StreamCut
from hw.node.common import (
    DONE,
    UPDATE,
    Node,
    RunFailed,
    accept,
    connect,
    key_for,
    listen,
    message,
    model_of,
    protect,
    record_limit,
    shape_of,
    unprotect,
    warm_up,
)
from hw.node.gate import Gate, Pending, authenticate
from hw.runconfig import Address
from hw.rundir import NodeResult


def run_client(node: Node) -> NodeResult:
    cfg, fl_cfg = node.cfg, node.cfg.fl
    ident = node.identity()
    shape = shape_of(node)
    warm_up(node.suite, fl_cfg.model_parameters * 4, shape)
    node.keys.publish(node.name, [ident])
    agg = cfg.aggregator
    peers = [agg] + (["devices"] if cfg.devices_for(node.name) else [])
    trust = node.trust(peers)
    _serve_telemetry(node, ident, trust)
    index, n = fl_cfg.clients.index(node.name), len(fl_cfg.clients)
    seeds = np.random.SeedSequence(cfg.seed).spawn(3 + n)
    x, y = data.client_data(index, n, fl_cfg.samples_per_client, seeds[3 + index])  # before the model can come
    rng = np.random.default_rng(seeds[2].spawn(n)[index])
    kem_pk = trust[agg].kem if cfg.rekey == "per_message" else None
    crash_round = cfg.crash.get(node.name)
    rounds = 0
    ch, opening = open_session(node, ident, trust, cfg.routes[node.name][agg], agg, cfg.connect_timeout_s)
    first: Record | None = opening
    while True:
        rec, first = first or ch.read_record(), None
        arrived = node.now()
        if rec.type == REKEY:  # per-round rekeying: a fresh session for the round the aggregator starts
            node.round = int.from_bytes(ch.open(rec), "big")
            ch.initiate(agg, node.timer_for())
            continue
        with node.captured() as opened:  # the round is known only once the model is open
            kind, rnd, payload = unprotect(node, ch, rec, trust[agg].sig, "receive")
        if kind == DONE:
            break  # the end-of-run message is not part of a round
        node.round = rnd
        node.keep([r._replace(round=rnd) for r in opened])
        node.transfer(rec, agg, "distribute", arrived)
        theta = model_of(node, ch, payload, shape, "receive")
        if crash_round is not None and rnd >= crash_round:  # fault injection for tests: die mid-round
            os._exit(17)
        with node.timer("train", "fl.train"):
            theta = fl.train(shape, theta, x, y, fl_cfg.local_epochs, rng)
        if cfg.attack is not None and cfg.attack[1] == node.name and not rounds:
            theta = compromised(theta, cfg.attack[0])
        buf = message(node, UPDATE, rnd, theta, "upload")
        ch.write_sealed(protect(node, ch, ident, buf, "upload", kem_pk))
        rounds += 1
        node.checkpoint(NodeResult(state="failed", reason=f"{node.name} ended after round {rnd}", rounds=rounds))
    return NodeResult(state="completed", rounds=rounds)


def compromised(theta: np.ndarray, attack: str) -> np.ndarray:
    """The first update of a client that ``--attack`` compromised (hw/attack.py ``INSIDERS``): NaN in its first
    parameter (``poison``), or its last parameter left off (``malform``); an on-path attack leaves it as it is."""
    if attack == "poison":
        theta = theta.copy()
        theta[0] = np.nan
        return theta
    return theta[:-1] if attack == "malform" else theta


RECONNECT_S = 1.0  # how long a pod looks for the aggregator again after a session that authenticated closed


def open_session(node: Node, ident: Identity, trust: dict[str, Peer], address: Address, peer: str,
                 timeout_s: float) -> tuple[Channel, Record]:  # fmt: skip
    """Connect, run the handshake as initiator and read the session's first record. A connection closed before that
    record is opened again until the timeout: a Service or proxy that accepted while the aggregator was not
    listening yet, or the aggregator's gate giving the slot to a newcomer (``hw.node.gate``: strangers may flood
    it), which may cut its answer short, or cut the handshake after our last message, which only the missing first
    record shows. A session closed after it authenticated may also be the aggregator ending the run before its
    first message: then it is gone, and a reconnection that finds no listener ends here at once. A rejected
    handshake is not tried again, nor a malformed one, nor a first record cut short (an attack in the path)."""
    deadline = time.monotonic() + timeout_s
    gone: ConnectionClosed | None = None  # a session closed after it authenticated: the aggregator may have ended
    while True:
        try:
            timeout_s = RECONNECT_S if gone else max(1.0, deadline - time.monotonic())
            sock = connect(address, timeout_s, key_for(node.cfg, address), node.cfg.congestion_control)
        except RunFailed:
            if gone is None:
                raise
            raise gone from None
        ch = Channel(sock, ident, node.suite, trust, clock=node.now, counters=node.counters,
                     max_record_bytes=record_limit(node))  # fmt: skip
        try:
            with node.captured() as attempt:  # an attempt's handshake work is the run's once the session holds
                ch.initiate(peer, node.timer_for(0))
            first = ch.read_record()
        except (ConnectionClosed, OSError, SecurityError) as exc:
            sock.close()
            if isinstance(exc, SecurityError):
                if not isinstance(exc, StreamCut) or ch.authenticated:
                    raise
                node.counters[exc.kind] -= 1  # a cut answer is no attack: the gate counted it where it cut
            if isinstance(exc, ConnectionClosed) and ch.authenticated:
                gone = exc
            if time.monotonic() > deadline:
                why = f"{peer} closed every connection before the handshake within {timeout_s:.0f} s"
                raise gone or RunFailed(why) from None
            time.sleep(0.1)
            continue
        node.keep(attempt)
        return ch, first


def _serve_telemetry(node: Node, ident: Identity, trust: dict[str, Peer]) -> None:
    """This pod's telemetry listener: its devices' sessions, each through the gate (``hw.node.gate``) and named as
    one of this pod's devices; a device that connects again replaces its earlier session."""
    port = node.cfg.pods[node.name].telemetry_port
    if not port:
        return
    srv = listen(port, node.cfg.bind, node.cfg.congestion_control)
    devices = {n for g in node.cfg.devices_for(node.name) for n in g.device_names()}
    gate = Gate(len(devices) + 16, node.counters)
    sessions: dict[str, socket.socket] = {}  # device -> its authenticated session's socket
    lock = threading.Lock()

    def ours(name: str) -> str | None:  # a pod, or another pod's device, is refused as an identity we do not serve
        return None if name in devices else "identity"

    def session(sock: socket.socket, pending: Pending) -> None:
        got = _telemetry_handshake(node, ident, trust, sock, pending, gate, ours)
        if got is None:
            return
        device, ch = got
        with lock:
            earlier = sessions.get(device)
            sessions[device] = sock
        if earlier is not None:
            with contextlib.suppress(OSError):
                earlier.shutdown(socket.SHUT_RDWR)  # the device gave it up: its reader ends
        try:
            _telemetry_frames(node, ch, device)
        finally:
            with lock:
                if sessions.get(device) is sock:
                    del sessions[device]
            sock.close()

    def accept_loop() -> None:
        while (sock := accept(srv, node.name)) is not None:
            pending = gate.enter(sock)
            threading.Thread(target=session, args=(sock, pending), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


def _telemetry_handshake(node: Node, ident: Identity, trust: dict[str, Peer], sock: socket.socket, pending: Pending,
                         gate: Gate, admit: Callable[[str], str | None]) -> tuple[str, Channel] | None:  # fmt: skip
    """A device's session handshake (timed as telemetry work once it authenticated): its name and channel, or
    None."""
    frame_bytes = max((g.frame_bytes for g in node.cfg.devices_for(node.name)), default=0)
    ch = Channel(sock, ident, node.suite, trust, clock=node.now, counters=node.counters,
                 max_record_bytes=frame_bytes + 1024)  # fmt: skip
    try:
        return authenticate(node, ch, gate, pending, admit, phase="telemetry"), ch
    except (ConnectionClosed, SecurityError, OSError):
        return None


def _telemetry_frames(node: Node, ch: Channel, device: str) -> None:
    """A device's frames until its session ends."""
    try:
        while True:
            rec = ch.read_record()
            plaintext = ch.open(rec, node.timer_for(), "telemetry")
            node.add(node.name, device, "telemetry", "frame", rec.sent_at_s, node.now(), 0.0, rec.wire_bytes)
            del plaintext
    except (ConnectionClosed, SecurityError, OSError):
        return
