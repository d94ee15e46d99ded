"""The aggregator role: sessions with every client, then rounds of distribute → collect → FedAvg.

``sequential``: all of the aggregator's security work on its main thread, updates processed after the
quorum arrived, one client at a time. ``concurrent``: crypto workers do it — worker processes of their own
when the run has them (``RunConfig.worker_processes``, fed over secure channels: hw/node/delegation.py), or
else a pool of the aggregator's threads —; updates are verified and folded in as they arrive,
distribution jobs run in parallel. ``both``: rounds in the two modes in turn (``round_mode``), with the concurrent
mode's workers. Clients that drop out or are rejected are recorded; a round that
cannot reach its quorum fails the run (``RunFailed``); a round that times out is recorded as failed.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from hw import data, fl
from hw.channel import HELLO, REKEY, Channel, ConnectionClosed, Record, Sealed, SecurityError
from hw.lifecycle import nodes_ended
from hw.node.common import (
    DONE,
    MODEL,
    MSG,
    UPDATE,
    Bounded,
    Node,
    RunFailed,
    accept,
    listen,
    log,
    message,
    model_of,
    protect,
    record_limit,
    shape_of,
    signed,
    unprotect,
    warm_up,
)
from hw.node.delegation import DISTRIBUTE, VERIFY, Job, WorkerPool, encode_grant
from hw.node.gate import Gate, Pending, authenticate
from hw.rundir import NodeResult
from sim.contract import Dropout, round_mode

JOIN_GRACE_S = 5.0  # once the quorum is in: how long the rest may still take to authenticate before round 1
GONE_POLL_S = 0.25  # how often the join looks for node processes that ended (``_ended``)
MAX_PENDING_HANDSHAKES = 64  # unauthenticated connections at once (hw.node.gate)
DRAIN_S = 2.0  # after the last round: how long a client still counted in may take to be heard (``_drain``)


@dataclass
class Arrival:
    """Something for the aggregator's main thread: a record off the wire, the end of a connection
    (``record`` None), or a worker's verdict on an update (``verdict``: the parameters, or None if rejected)."""

    client: str
    record: Record | None
    reason: str = ""
    verdict: np.ndarray | None = None
    from_worker: bool = False
    epoch: int = 0  # the client's session the record came in (per-round rekeying: older ones are stale)
    round: int = 0  # a verdict: the round whose collection asked for it
    delegated: bool = False  # a record its reader thread hands to a worker itself: bookkeeping only here


class Aggregator:
    def __init__(self, node: Node):
        self.node, cfg = node, node.cfg
        self.fl = cfg.fl
        self.clients: list[str] = list(self.fl.clients)
        self.ident = node.identity()
        self.inbox: queue.Queue[Arrival] = queue.Queue()
        self.channels: dict[str, Channel] = {}
        self.alive: set[str] = set()
        self.updated: set[str] = set()  # the clients whose update of the last round collected arrived
        self.lock = threading.Lock()
        self.gate = Gate(MAX_PENDING_HANDSHAKES, node.counters)  # connections not yet authenticated
        self.said = Bounded("handshakes rejected")  # strangers' handshakes: a flood must not fill the disk
        self.pending_join: set[str] = set()  # authenticated clients that join at the next round
        self.joined: queue.Queue[str] = queue.Queue()
        self.rejections: dict[str, str] = {}  # why a client's connection was closed on it
        self.dropouts: list[Dropout] = []
        self.accuracy: list[float] = []
        self.initial: float | None = None  # the initial model's accuracy, once known
        self.failed = 0  # rounds that timed out
        self.rekeyed: queue.Queue[str] = queue.Queue()  # clients whose per-round handshake ended (or failed)
        self.worker_names = cfg.worker_processes
        self.worker_channels: dict[str, Channel] = {}
        self.workers: WorkerPool | None = None
        n_threads = len(self.worker_names) or cfg.workers  # with worker processes: one job thread each
        self.pool = ThreadPoolExecutor(n_threads) if cfg.mode in ("concurrent", "both") else None
        seeds = np.random.SeedSequence(cfg.seed).spawn(3)
        self.rng = np.random.default_rng(seeds[0])
        self.shape = shape_of(node)
        self.test = data.holdout(seeds[1])

    def run(self) -> NodeResult:
        """The whole run; a run that fails raises ``RunFailed`` carrying what was finished (``so_far``)."""
        try:
            return self._run()
        except RunFailed as exc:
            exc.result = self.so_far(str(exc))
            raise

    def so_far(self, reason: str) -> NodeResult:
        """The failed result of a run that ends here: every round finished and every dropout until now."""
        return NodeResult(state="failed", reason=reason, initial_accuracy=self.initial,
                          accuracy_per_round=list(self.accuracy), dropouts=list(self.dropouts),
                          rounds_failed=self.failed)  # fmt: skip

    def _run(self) -> NodeResult:
        node = self.node
        warm_up(node.suite, self.fl.model_parameters * 4, self.shape)
        node.keys.publish(node.name, [self.ident])
        self.trust = node.trust(self.clients + self.worker_names)
        self._accept_all()
        if self.worker_names:
            if missing := set(self.worker_names) - set(self.worker_channels):
                raise RunFailed(f"crypto workers {', '.join(sorted(missing))} did not connect")
            # a worker that does not answer within the round's deadline is lost as a killed one is
            self.workers = WorkerPool(node, self.worker_channels, self._job_here, self.fl.round_timeout_s,
                                      self.shape.parameters * np.dtype(fl.DTYPE).itemsize)  # fmt: skip
        theta = fl.init(self.shape, self.rng)
        self.initial = fl.accuracy(self.shape, theta, *self.test)
        for r in range(1, self.fl.rounds + 1):
            node.round = r
            start = node.now()
            new = self._round(r, theta)
            ok = new is not None
            theta = new if new is not None else theta
            self.failed += not ok
            node.add(node.name, node.host, "round", "round" if ok else "failed", start, node.now(), 0.0, 0)
            self.accuracy.append(fl.accuracy(self.shape, theta, *self.test))
            node.checkpoint(self.so_far(f"{node.name} ended after round {r} without its report"))
            node.progress(r, self.accuracy[-1])
        self._drain(node.round)
        done = signed(node.suite.signature, self.ident.sig, MSG.pack(DONE, 0))
        for c in sorted(self.alive):  # not a phase of any round: untimed
            self.channels[c].send_timeout_s = DRAIN_S  # the rounds are over: a client that takes nothing ends sooner
            self._write(c, self.channels[c].seal(done))
        if self.workers is not None:
            self.workers.close()  # a worker ends when its channel does
        self.server.close()
        return self.so_far("").model_copy(update={"state": "completed"})

    def _accept_all(self) -> None:
        """Listen for the whole run (``_listen``); return once every client and worker is authenticated, or
        once the quorum and every worker are and the rest had ``JOIN_GRACE_S`` more to come. Strangers
        (connections that never authenticate) cost a bounded handshake each and change nothing."""
        cfg = self.node.cfg
        port = cfg.pods[self.node.name].port
        assert port is not None, "RunConfig gives the aggregator a port"
        self.server = listen(port, cfg.bind, cfg.congestion_control)
        threading.Thread(target=self._listen, daemon=True).start()
        start = time.monotonic()
        deadline, quorum_at = start + cfg.connect_timeout_s, None  # pods may start minutes apart
        expected = set(self.clients) | set(self.worker_names)
        gone: set[str] = set()
        looked = start
        while True:
            with self.lock:
                joined = set(self.pending_join) | set(self.worker_channels)
            if time.monotonic() - looked > GONE_POLL_S:
                looked = time.monotonic()
                gone = self._ended(expected - joined)
            if joined | gone >= expected:
                break
            enough = len(joined & set(self.clients)) >= self.fl.quorum_clients and set(self.worker_names) <= joined
            quorum_at = quorum_at or (time.monotonic() if enough else None)
            now = time.monotonic()
            if quorum_at is not None and now - quorum_at > min(JOIN_GRACE_S, cfg.connect_timeout_s):
                break
            if now > deadline:
                raise RunFailed(f"only {len(joined)} of {len(expected)} clients and workers authenticated within "
                                f"{cfg.connect_timeout_s:.0f} s (missing: {', '.join(sorted(expected - joined))}; "
                                f"{self._strangers()})")  # fmt: skip
            with contextlib.suppress(queue.Empty):
                self.joined.get(timeout=0.05)
        for c in sorted(set(self.clients) - joined):
            why = "its process ended before it authenticated" if c in gone else "never authenticated"
            self.dropouts.append(Dropout(round=1, pod=c, reason=f"{why} ({self._strangers()})"))

    def _ended(self, waited: set[str]) -> set[str]:
        """Which of the pods ``waited`` for (every one not authenticated yet) have a process that ended, where the
        run directory names the nodes' processes (the local and netns backends); RunFailed once the run cannot
        start without them: a crypto worker, or clients below the quorum. (A client killed before it authenticated
        cost the run its whole ``connect_timeout_s``, 30 s, and then failed it.)"""
        ended = nodes_ended(self.node.run_dir, waited)
        if not ended:
            return ended
        logs = ", ".join(f"logs/{n}.log" for n in sorted(ended))
        if workers := sorted(ended & set(self.worker_names)):
            raise RunFailed(f"crypto worker {', '.join(workers)} ended before it authenticated (see {logs})")
        left = len(self.clients) - len(ended & set(self.clients))
        if left < self.fl.quorum_clients:
            raise RunFailed(f"{', '.join(sorted(ended))} ended before authenticating: {left} of {len(self.clients)} "
                            f"clients left, quorum needs {self.fl.quorum_clients} (see {logs})")  # fmt: skip
        return ended

    def _job_here(self, job: Job) -> bytearray:
        """A worker's job done in the aggregator, when no worker process is left."""
        from hw.node.worker import do_job

        return do_job(self.node, self.ident, job, self.trust)

    def _vacant(self, name: str) -> str | None:
        """``Channel.accept``'s ``admit``: a pod connected already is refused (its public name in a stranger's HELLO
        costs us no signature)."""
        with self.lock:
            return "duplicate" if self._connected(name) else None

    def _connected(self, name: str) -> bool:
        """``name`` has an authenticated connection in the run (caller holds ``lock``)."""
        return name in self.worker_channels or name in self.pending_join or name in self.alive

    def _strangers(self) -> str:
        refused = {k: v for k, v in self.node.counters.items() if v}
        return "rejected connections: " + (", ".join(f"{k} {v}" for k, v in sorted(refused.items())) or "none")

    def _listen(self) -> None:
        """Accept connections for the whole run, each through the gate (``hw.node.gate``: at most
        ``MAX_PENDING_HANDSHAKES`` unauthenticated at once, each with deadlines to name itself and authenticate)."""
        while (sock := accept(self.server, self.node.name)) is not None:  # None: closed at the end of the run
            pending = self.gate.enter(sock)
            with contextlib.suppress(OSError):  # a connection already gone: its handshake reads the end
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(sock, pending), daemon=True).start()

    def _authenticate(self, sock: socket.socket, pending: Pending) -> tuple[str, Channel] | None:
        node = self.node
        ch = Channel(sock, self.ident, node.suite, self.trust, clock=node.now, counters=node.counters,
                     max_record_bytes=record_limit(node))  # fmt: skip
        try:
            return authenticate(node, ch, self.gate, pending, self._vacant, rnd=0), ch
        except (SecurityError, ConnectionClosed, OSError) as exc:
            self.said.warning(f"{node.name}: handshake rejected: {exc}")
            return None

    def _register(self, name: str, ch: Channel) -> bool:
        """Admit an authenticated connection; False when its pod is connected already (two handshakes at
        once: the first keeps its place)."""
        with self.lock:
            if self._connected(name):
                self.node.counters["duplicate"] += 1
                ch.sock.close()
                return False
            if name in self.worker_names:  # a crypto worker: given our identity before any job can reach it
                ch.write_sealed(ch.seal(encode_grant(self.ident)))
                self.worker_channels[name] = ch
            else:
                ch.send_timeout_s = self.fl.round_timeout_s  # a client that stops reading holds no round longer
                self.channels[name] = ch
                self.pending_join.add(name)  # takes part from the next round on
        return True

    def _serve(self, sock: socket.socket, pending: Pending) -> None:
        node = self.node
        got = self._authenticate(sock, pending)
        if got is None:
            return
        name, ch = got
        if not self._register(name, ch):
            return
        self.joined.put(name)
        if name in self.worker_names:  # its job threads read its answers
            return
        while True:
            try:
                rec = ch.read_record()
                if rec.type == HELLO:  # the client's answer to a per-round REKEY
                    self._rehandshake(ch, rec)
                    continue
            except (ConnectionClosed, SecurityError, OSError) as exc:  # OSError: answering a rekey
                self.inbox.put(Arrival(name, None, str(exc) or "connection closed"))
                self.rekeyed.put(name)
                return
            node.transfer(rec, name, "upload", node.now())
            arrival = Arrival(name, rec, epoch=ch.epoch)
            if self.workers is None or not self._concurrent(node.round):
                self.inbox.put(arrival)
                continue
            # crypto worker processes: this thread, awake already, hands the update to a worker itself, rather
            # than waking the main thread to wake a job thread (two hand-overs that cost a woken thread's
            # wait for a core each on a busy host); the main thread keeps the round's books
            self.inbox.put(replace(arrival, delegated=True))
            self._update_job(arrival, self.node.round, node.now())

    def _rehandshake(self, ch: Channel, hello: Record) -> None:
        peer = ch.peer
        try:
            if ch.accept(self.node.timer_for(self.node.round), hello) != peer:
                raise SecurityError("identity", f"{peer} re-authenticated as another pod")
        finally:
            self.rekeyed.put(peer)

    # one round: distribute, then collect and aggregate
    def _round(self, r: int, theta: np.ndarray) -> np.ndarray | None:
        with self.lock:
            self.alive |= self.pending_join
            self.pending_join.clear()
        if self.node.cfg.rekey == "per_round":
            self._rekey(r)
        targets = sorted(self.alive)
        if not self._concurrent(r):
            for c in targets:
                self._send_model(c, r, theta, None)
        else:
            assert self.pool is not None
            for c in targets:
                self.pool.submit(self._model_job, c, r, theta, self.node.now())
        return self._collect(r)

    def _concurrent(self, r: int) -> bool:
        """Whether round ``r``'s security work goes to the pool (``round_mode``: a ``both`` run alternates)."""
        return self.pool is not None and round_mode(self.node.cfg.mode, r) == "concurrent"

    def _rekey(self, r: int) -> None:
        """Per-round rekeying: every client runs a fresh handshake (its reader thread answers it) before the
        round's model goes out, as the simulator's round starts with one."""
        asked = sorted(self.alive)
        for c in asked:
            ch = self.channels[c]
            self._write(c, ch.seal(r.to_bytes(4, "big"), rtype=REKEY))
        deadline = time.monotonic() + self.fl.round_timeout_s
        pending = set(asked)
        while pending and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                pending.discard(self.rekeyed.get(timeout=max(0.0, min(0.1, deadline - time.monotonic()))))
            pending &= self.alive

    # a pool job's exception would stay in its future, unsaid, and its round wait for it to the deadline
    def _model_job(self, c: str, r: int, theta: np.ndarray, queued_at: float) -> None:
        try:
            self._send_model(c, r, theta, queued_at)
        except Exception:
            log.exception("%s: round %d: the model for %s failed in a job thread; sealed here instead", self.node.name,
                          r, c)  # fmt: skip
            self._send_model(c, r, theta, None)

    def _update_job(self, a: Arrival, r: int, queued_at: float) -> None:
        try:
            self._verify_job(a, r, queued_at)
        except Exception:
            log.exception("%s: round %d: the update of %s failed in a job thread; not counted", self.node.name, r,
                          a.client)  # fmt: skip
            self.inbox.put(Arrival(a.client, None, verdict=None, from_worker=True, round=r))

    def _send_model(self, c: str, r: int, theta: np.ndarray, queued_at: float | None) -> None:
        """One client's copy of the global model: serialise, sign, (encapsulate,) encrypt, send."""
        ch = self.channels[c]
        if self.workers is not None and queued_at is not None:
            grant = ch.delegate_seal()
            job = Job(DISTRIBUTE, r, c, grant, b"", theta.data.cast("B"))
            sealed = replace(self.workers.distribute(job, queued_at), epoch=grant.epoch)  # the session it is for
        else:
            kem_pk = self.trust[c].kem if self.node.cfg.rekey == "per_message" else None
            buf = message(self.node, MODEL, r, theta, "distribute", queued_at)
            sealed = protect(self.node, ch, self.ident, buf, "distribute", kem_pk)
        self._write(c, sealed)

    def _write(self, c: str, sealed: Sealed) -> None:
        """Send a client a record; one that could not leave ends its connection: a dead client shows up as a
        dropout on its reader thread, and one that took nothing within the round's deadline is cut off, as a
        client that stopped reading would otherwise hold the round (sequential: the main thread) or its model's
        sender and the records queued behind it (concurrent) for good."""
        try:
            self.channels[c].write_sealed(sealed)
        except TimeoutError as exc:
            self._cut_off(c, f"took no record in time: {exc}")
        except OSError:
            pass

    def _collect(self, r: int) -> np.ndarray | None:
        """Wait for the quorum of this round's valid updates (verified as the mode says); FedAvg them.

        None when the round times out; RunFailed when too few clients are left to reach the quorum.
        Rejected or stale (earlier-round) updates do not count: collection goes on without them.
        Workers report verified updates through the same inbox as the network, so nothing polls.
        """
        need = self.fl.quorum_clients
        deadline = time.monotonic() + self.fl.round_timeout_s
        in_hand: set[str] = set()  # clients whose update of this round arrived (valid or not yet known)
        self.updated = in_hand
        updates: list[np.ndarray] = []
        acc: np.ndarray | None = None
        pending: list[Arrival] = []
        pool = self.pool if self._concurrent(r) else None
        while len(updates) < need:
            if pool is None and pending and len(pending) >= need - len(updates):
                for a in pending:  # sequential: verify only once enough updates have arrived
                    if (u := self._verify(a, r, None)) is not None:
                        updates.append(u[1])
                    else:
                        self._rejected(a.client, in_hand, r)
                pending = []
                continue
            if len(self.alive | in_hand) < need:
                raise RunFailed(f"round {r}: quorum lost: {len(self.alive)} of {len(self.clients)} clients left, "
                                f"quorum needs {need}{self._gone()}")  # fmt: skip
            try:
                arrival = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if arrival.from_worker:
                acc = self._verdict(arrival, r, in_hand, updates, acc)
            elif arrival.record is None:
                self._dropout(arrival, r)
            else:
                in_hand.add(arrival.client)
                if arrival.delegated:
                    continue  # its reader thread has it verified; the verdict follows
                if pool is None:
                    pending.append(arrival)
                else:
                    pool.submit(self._update_job, arrival, r, self.node.now())
        if pool is None:
            with self.node.timer("aggregate", "fl.fedavg"):
                return fl.fedavg(updates, [1.0] * len(updates))
        assert acc is not None
        return acc / np.float32(len(updates))

    def _gone(self, named: int = 4) -> str:
        """The clients out of the run, each with the round it left in and why (the first ``named``), for a reason."""
        gone = [f"{d.pod} dropped out in round {d.round}: {d.reason}" for d in self.dropouts if d.pod not in self.alive]
        if len(gone) > named:
            gone[named:] = [f"and {len(gone) - named} more"]
        return f" ({'; '.join(gone)})" if gone else ""

    def _verdict(self, a: Arrival, r: int, in_hand: set[str], updates: list[np.ndarray],
                 acc: np.ndarray | None) -> np.ndarray | None:  # fmt: skip
        """A verification job's verdict: folded in when this round asked for it and the update is valid."""
        if a.round != r:
            return acc  # asked for by an earlier round that reached its quorum first: not this round's update
        if a.verdict is None:
            self._rejected(a.client, in_hand, r)
            return acc
        updates.append(a.verdict)
        return self._fold(acc, a.verdict)

    def _drain(self, r: int) -> None:
        """After the last round: record dropouts still queued, and open records no round needed, so a
        replayed or tampered one is still detected and counted (their work is filed under round 0). A client
        still counted in whose last update did not arrive (the quorum did not wait for it) is waited for, up to
        ``DRAIN_S``: its late update, or its connection's end (a dropout), which on a busy machine can come well
        after the round; an earlier round's update from a client that lags behind does not settle it."""
        time.sleep(0.05)  # a connection that ended just now is reported within milliseconds
        owed = self.alive - self.updated
        deadline = time.monotonic() + DRAIN_S
        self.node.round = 0
        while True:
            wait = deadline - time.monotonic() if owed else 0.0
            try:
                arrival = self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
            except queue.Empty:
                break
            if arrival.delegated:
                owed.discard(arrival.client)
                continue  # verified by its reader thread
            if arrival.record is not None and arrival.client in self.alive:
                if self._verify(arrival, r, None) is not None or arrival.client in self.rejections:
                    owed.discard(arrival.client)  # its last round's update, or a rejected record: it is settled
                if arrival.client in self.rejections:
                    self._dropout(Arrival(arrival.client, None, self.rejections[arrival.client]), r)
                # else an earlier round's update, late: a lagging client still owes the last round's (or its end)
            else:
                owed.discard(arrival.client)
                if arrival.record is None and not arrival.from_worker:
                    self._dropout(arrival, r)
        self.node.round = r

    def _rejected(self, client: str, in_hand: set[str], r: int) -> None:
        """An update that did not count: stale, or rejected (then the client is out of the run)."""
        in_hand.discard(client)
        if client in self.rejections:
            self._dropout(Arrival(client, None, self.rejections[client]), r)

    def _verify_job(self, a: Arrival, r: int, queued_at: float) -> None:
        if self.workers is not None:
            verdict = self._delegate(a, r, queued_at)
        else:
            res = self._verify(a, r, queued_at)
            verdict = None if res is None else res[1]
        self.inbox.put(Arrival(a.client, None, verdict=verdict, from_worker=True, round=r))

    def _delegate(self, a: Arrival, r: int, queued_at: float) -> np.ndarray | None:
        """``_verify`` by a worker process: the session's order is checked here, the rest there."""
        assert self.workers is not None and a.record is not None
        ch = self.channels[a.client]
        if a.epoch != ch.epoch:
            return None  # sent in an earlier session (per-round rekeying): a straggler's, stale
        try:
            job = Job(VERIFY, r, a.client, ch.delegate_open(a.record), a.record.header, memoryview(a.record.body))
            res = self.workers.verify(job, queued_at)
        except SecurityError as exc:
            res = exc
        if isinstance(res, SecurityError):
            if res.kind == "stale":
                return None  # a straggler's update from an earlier round
            self._reject_client(a.client, res)
            return None
        return res

    def _fold(self, acc: np.ndarray | None, update: np.ndarray) -> np.ndarray:
        with self.node.timer("aggregate", "fl.fedavg"):
            return update.copy() if acc is None else acc + update

    def _verify(self, a: Arrival, r: int, queued_at: float | None) -> tuple[str, np.ndarray] | None:
        assert a.record is not None
        ch = self.channels[a.client]
        if a.epoch != ch.epoch:
            return None  # sent in an earlier session (per-round rekeying): a straggler's, stale
        try:
            kind, rnd, payload = unprotect(self.node, ch, a.record, self.trust[a.client].sig, "verify", queued_at)
            # a straggler's update is checked too: a malformed one is an attack whenever it comes
            update = model_of(self.node, ch, payload, self.shape, "verify") if kind == UPDATE else None
        except SecurityError as exc:
            self._reject_client(a.client, exc)
            return None
        if update is None or rnd != r:
            return None  # a straggler's update from an earlier round
        return a.client, update

    def _reject_client(self, client: str, exc: SecurityError) -> None:
        """A record that must be rejected is fatal for its connection, as a TLS alert would be."""
        log.warning("%s: rejected a record from %s: %s", self.node.name, client, exc)
        self._cut_off(client, f"rejected: {exc}")

    def _cut_off(self, client: str, reason: str) -> None:
        """End a client's connection; its reader thread then reports the dropout, for ``reason``."""
        self.rejections.setdefault(client, reason)
        with contextlib.suppress(OSError):
            self.channels[client].sock.shutdown(socket.SHUT_RDWR)

    def _dropout(self, a: Arrival, r: int) -> None:
        if a.client in self.alive:
            self.alive.discard(a.client)
            reason = self.rejections.get(a.client, a.reason)
            self.dropouts.append(Dropout(round=r, pod=a.client, reason=reason))
            log.warning("%s: %s dropped out in round %d: %s", self.node.name, a.client, r, a.reason)
