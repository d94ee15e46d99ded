"""``pqtwin node``: the one program every pod runs (aggregator, client) plus the device emulator.

A node reads the run directory's ``run.json`` (written by the backend), publishes its public keys to
``keys/<name>.json``, waits for its peers' keys (the trust store), then plays its role. It records spans
in the simulator's format on the run's clock (monotonic seconds since the run's epoch; one clock for
all processes of one machine) and writes ``spans/<name>.parquet`` and ``nodes/<name>.json`` atomically.

In Kubernetes pods (run.json written by hw/k8s/): ``keys`` names the mounted Secret holding this node's
private keys and the mounted trust file holding its peers' public keys (provisioned by the backend, so
nothing is published or awaited); ``report: log`` prints progress lines and, at exit, the node's result
and spans (base64, between markers) to stdout, which the backend reads from the pod's log; ``metrics_port``
serves Prometheus metrics and a health endpoint for the probes (hw/k8s/pod.py).

The FL round follows sim/model.py: the aggregator serialises the global model, then per client signs it,
encapsulates (per-message rekeying) and encrypts it; clients decrypt, verify, train, sign, encrypt and
upload; the aggregator decrypts and verifies updates and runs FedAvg. ``sequential``: all of the
aggregator's security work on its main thread, updates processed after the quorum arrived, one client at
a time. ``concurrent``: a pool of worker threads (the crypto library releases the GIL) does it, updates
are verified and folded in as they arrive, distribution jobs run in parallel.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hw import data, fl
from hw.channel import Channel, ConnectionClosed, Identity, Record, Sealed, SecurityError, Suite, load_trust
from hw.crypto import find
from hw.runtime import tune_allocator, tune_threads
from sim import spans as span_io

MODEL, UPDATE, DONE = 1, 2, 3
MSG = struct.Struct("!BxxxI")  # kind, round; 8 bytes keep the float32 payload aligned
TRUST_TIMEOUT_S = 60.0


class RunFailed(Exception):
    """The run cannot go on (quorum lost, peer unreachable); the message says why."""


# --- run context and span recording ----------------------------------------------------------------


@dataclass
class Node:
    run_dir: Path
    name: str
    cfg: dict[str, Any]
    rows: list[span_io.Row] = field(default_factory=list)
    round: int = 0
    counters: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def suite(self) -> Suite:
        return Suite(**self.cfg["suite"])

    @property
    def host(self) -> str:
        return self.cfg["pods"][self.name]["host"] if self.name in self.cfg["pods"] else "devices"

    def now(self) -> float:
        """Seconds on the run's clock: monotonic on one machine; wall-clock (NTP-synchronised) across
        machines (``clock: wall`` in run.json, as the Kubernetes backend sets it)."""
        if self.cfg.get("clock") == "wall":
            return time.time() - self.cfg["epoch"]
        return time.monotonic() - self.cfg["epoch"]

    def add(self, pod: str, host: str, phase: str, op: str, start: float, end: float, wait: float, nbytes: int,
            rnd: int | None = None) -> None:  # fmt: skip
        row = (0, self.round if rnd is None else rnd, pod, host, phase, op, start, end, wait, nbytes)
        with self.lock:
            self.rows.append(row)

    @contextmanager
    def timer(self, phase: str, op: str, queued_at: float | None = None, nbytes: int = 0, rnd: int | None = None):
        start = self.now()
        yield
        begin = start if queued_at is None else queued_at
        self.add(self.name, self.host, phase, op, begin, self.now(), start - begin, nbytes, rnd)

    def timer_for(self, rnd: int | None = None, phase: str | None = None, queued_at: float | None = None) -> Any:
        """A ``timer(phase, op)`` for code that times its own steps (the channel); optionally forcing the
        phase, and charging ``queued_at`` (a job's wait for a worker) to the first step it times."""
        first = [queued_at]

        def timer(ph: str, op: str) -> Any:
            q, first[0] = first[0], None
            return self.timer(phase or ph, op, queued_at=q, rnd=rnd)

        return timer

    def transfer(self, rec: Record, sender: str, phase: str, end: float) -> None:
        host = self.cfg["pods"].get(sender, {}).get("host", sender)
        self.add(sender, host, phase, "transfer", rec.sent_at_s, end, 0.0, rec.wire_bytes)

    def retag(self, since: int, rnd: int) -> None:
        with self.lock:
            self.rows[since:] = [(r[0], rnd, *r[2:]) for r in self.rows[since:]]

    def identity(self, name: str | None = None) -> Identity:
        """Long-term keys of this node (or of one of the devices it runs): generated here, or provisioned
        (``keys`` in run.json: loaded from the mounted Secret)."""
        if "keys" in self.cfg:
            from hw.k8s.pod import load_identity

            try:
                return load_identity(self.run_dir / self.cfg["keys"]["identity"], name or self.name, self.suite)
            except (OSError, ValueError) as exc:
                raise RunFailed(f"{self.name}: provisioned keys: {exc}") from None
        return Identity.generate(name or self.name, self.suite)

    def publish(self, ident: Identity) -> None:
        if "keys" not in self.cfg:  # provisioned keys: the peers already have ours
            atomic_write(self.run_dir / "keys" / f"{self.name}.json", json.dumps(ident.public()))

    def progress(self, r: int, accuracy: float) -> None:
        text = json.dumps({"round": r, "accuracy": accuracy})
        atomic_write(self.run_dir / "progress.json", text)
        if self.cfg.get("report") == "log":  # Kubernetes: the backend follows the pod's log
            print(f"pqtwin-progress {text}", flush=True)

    def trust(self, names: list[str]) -> dict[str, Any]:
        """Wait for the named peers' published keys; pinned public keys by name."""
        deadline = time.monotonic() + TRUST_TIMEOUT_S
        entries: dict[str, dict[str, str]] = {}
        loaded: set[str] = set()
        if "keys" in self.cfg:  # provisioned: every peer's public keys are in the mounted trust file
            table = json.loads((self.run_dir / self.cfg["keys"]["trust"]).read_text())
            if missing := [n for n in names if n not in table]:
                raise RunFailed(f"{self.name}: no provisioned keys for {', '.join(missing)}")
            for n in names:
                entries.update(table[n] if n == "devices" else {n: table[n]})
            return load_trust(self.suite, entries)
        while True:
            for n in set(names) - loaded:
                f = self.run_dir / "keys" / f"{n}.json"
                if f.exists():  # written atomically: complete when it exists
                    published = json.loads(f.read_text())
                    entries.update(published if n == "devices" else {n: published})  # devices: one file for all
                    loaded.add(n)
            if loaded == set(names):
                return load_trust(self.suite, entries)
            if time.monotonic() > deadline:
                missing = [n for n in names if not (self.run_dir / "keys" / f"{n}.json").exists()]
                raise RunFailed(
                    f"{self.name}: no published keys from {', '.join(missing)} after {TRUST_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.02)

    def finish(self, result: dict[str, Any]) -> None:
        df = span_io.to_frame(self.rows)
        table = pa.Table.from_pandas(df, schema=span_io.SPAN_SCHEMA, preserve_index=False)
        out = self.run_dir / "spans" / f"{self.name}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out.with_suffix(".tmp"))
        out.with_suffix(".tmp").replace(out)
        result["security"] = dict(self.counters)
        atomic_write(self.run_dir / "nodes" / f"{self.name}.json", json.dumps(result, indent=2))
        if self.cfg.get("report") == "log":
            from hw.k8s.pod import emit_result

            emit_result(self.name, result, out)


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def connect(address: list[Any], timeout_s: float = 30.0) -> socket.socket:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock = socket.create_connection((address[0], int(address[1])), timeout=10)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RunFailed(f"cannot connect to {address[0]}:{address[1]}: {exc.strerror}") from None
            time.sleep(0.05)


def listen(port: int, host: str = "127.0.0.1") -> socket.socket:
    """A listening socket; in a pod (``bind: 0.0.0.0`` in run.json) it accepts from the cluster network."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(256)
    return srv


# --- messages: sign, (encapsulate,) encrypt ----------------------------------------------------------


def message(node: Node, kind: int, rnd: int, theta: np.ndarray | None, phase: str,
            queued_at: float | None = None) -> bytearray:  # fmt: skip
    """Serialise a model into a fresh message buffer: header | float32 parameters | room for the signature.

    One copy (the simulator's ``serialize``); signing and encryption then work on this buffer in place.
    """
    n = 0 if theta is None else theta.nbytes
    with node.timer_for(queued_at=queued_at)(phase, "serialize"):
        buf = bytearray(MSG.size + n + _signature_len(node.suite.signature))
        MSG.pack_into(buf, 0, kind, rnd)
        if theta is not None:
            np.frombuffer(buf, fl.DTYPE, count=theta.size, offset=MSG.size)[:] = theta
    return buf


def protect(node: Node, ch: Channel, ident: Identity, buf: bytearray, phase: str, recipient_kem: Any) -> Sealed:
    """Sign the message in ``buf``, then seal it into one record (the simulator's `protect`)."""
    view, sig_len = memoryview(buf), _signature_len(node.suite.signature)
    with node.timer(phase, f"{node.suite.signature}.sign"):
        view[-sig_len:] = find(node.suite.signature, "signature").sign(ident.sig, view[:-sig_len])
    return ch.seal(buf, recipient_kem, node.timer_for(), phase)


def unprotect(node: Node, ch: Channel, rec: Record, sender_sig: Any, phase: str,
              queued_at: float | None = None) -> tuple[int, int, bytes]:  # fmt: skip
    """Open a record, verify the sender's signature: (kind, round, payload)."""
    plaintext = memoryview(ch.open(rec, node.timer_for(queued_at=queued_at), phase))
    sig_len = _signature_len(node.suite.signature)
    message, sig = plaintext[:-sig_len], plaintext[-sig_len:]  # views: no copy of the payload
    with node.timer(phase, f"{node.suite.signature}.verify", nbytes=len(message)):
        ok = find(node.suite.signature, "signature").verify(sender_sig, message, sig)
    if not ok:
        ch.counters["tampered"] += 1
        raise SecurityError("tampered", f"signature of a message from {ch.peer} does not verify")
    kind, rnd = MSG.unpack_from(message)
    return kind, rnd, message[MSG.size :]


def _signature_len(name: str) -> int:
    from sim import catalogue

    alg = catalogue.get(name)
    if alg.signature_bytes != alg.signature_max_bytes:  # variable-size signatures carry their length
        raise RunFailed(f"{name}: variable-size signatures are not supported by the twin's message format")
    return alg.signature_bytes


def warm_up(suite: Suite, payload_bytes: int, shape: fl.Shape | None) -> None:
    """Exercise every code path once before the run's clock matters (library set-up, page faults,
    BLAS start-up): the twin measures steady-state rounds, as the simulator models them."""
    signer, kem, aead = find(suite.signature, "signature"), find(suite.kem, "kem"), find(suite.aead, "aead")
    message = os.urandom(payload_bytes)
    kp = signer.keygen()
    signer.verify(kp.public, message, signer.sign(kp, message))
    k = kem.keygen()
    kem.decaps(k, kem.encaps(k.public)[0])
    key = aead.keygen()
    aead.decrypt(key, bytes(12), aead.encrypt(key, bytes(12), message))
    if shape is not None:
        rng = np.random.default_rng(0)
        x = np.zeros((64, data.FEATURES), fl.DTYPE)
        fl.deserialize(fl.serialize(fl.train(shape, fl.init(shape, rng), x, np.zeros(64, fl.DTYPE), 1, rng)))


# --- aggregator ------------------------------------------------------------------------------------


@dataclass
class Arrival:
    """Something for the aggregator's main thread: a record off the wire, the end of a connection
    (``record`` None), or a worker's verdict on an update (``verified``: the parameters, or False)."""

    client: str
    record: Record | None
    reason: str = ""
    verified: np.ndarray | bool | None = None


class Aggregator:
    def __init__(self, node: Node):
        self.node, cfg = node, node.cfg
        self.fl = cfg["fl"]
        self.clients: list[str] = list(self.fl["clients"])
        self.ident = node.identity()
        self.inbox: queue.Queue[Arrival] = queue.Queue()
        self.channels: dict[str, Channel] = {}
        self.alive: set[str] = set()
        self.rejected = 0  # connections whose handshake was refused
        self.rejections: dict[str, str] = {}  # why a client's connection was closed on it
        self.dropouts: list[dict[str, Any]] = []
        self.accuracy: list[float] = []
        self.pool = ThreadPoolExecutor(cfg["workers"]) if cfg["mode"] == "concurrent" else None
        seeds = np.random.SeedSequence(cfg["seed"]).spawn(3)
        self.rng = np.random.default_rng(seeds[0])
        self.shape = fl.Shape.for_parameters(self.fl["model_parameters"], data.FEATURES)
        self.test = data.holdout(seeds[1])

    def run(self) -> dict[str, Any]:
        node = self.node
        warm_up(node.suite, self.fl["model_parameters"] * 4, self.shape)
        node.publish(self.ident)
        self.trust = node.trust(self.clients)
        self._accept_all()
        theta = fl.init(self.shape, self.rng)
        initial = fl.accuracy(self.shape, theta, *self.test)
        failed = 0
        for r in range(1, self.fl["rounds"] + 1):
            node.round = r
            start = node.now()
            new = self._round(r, theta)
            ok = new is not None
            theta = new if new is not None else theta
            failed += not ok
            node.add(node.name, node.host, "round", "round" if ok else "failed", start, node.now(), 0.0, 0)
            self.accuracy.append(fl.accuracy(self.shape, theta, *self.test))
            node.progress(r, self.accuracy[-1])
        self._drain(node.round)
        signer = find(node.suite.signature, "signature")
        done = MSG.pack(DONE, 0)
        for c in sorted(self.alive):  # not a phase of any round: untimed
            with contextlib.suppress(OSError):
                self.channels[c].write_sealed(self.channels[c].seal(done + signer.sign(self.ident.sig, done)))
        return {"initial_accuracy": initial, "accuracy_per_round": self.accuracy, "dropouts": self.dropouts,
                "rounds_failed": failed}  # fmt: skip

    def _accept_all(self) -> None:
        srv = listen(self.node.cfg["pods"][self.node.name]["port"], self.node.cfg.get("bind", "127.0.0.1"))
        wait_s = self.node.cfg.get("connect_timeout_s", TRUST_TIMEOUT_S)  # pods may start minutes apart
        srv.settimeout(wait_s)
        threads = []
        for i in range(len(self.clients)):
            try:
                sock, _addr = srv.accept()
            except TimeoutError:
                raise RunFailed(f"only {i} of {len(self.clients)} clients connected within {wait_s:.0f} s") from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            threads.append(t)
        srv.close()
        deadline = time.monotonic() + TRUST_TIMEOUT_S
        while len(self.channels) + self.rejected < len(self.clients) and time.monotonic() < deadline:
            time.sleep(0.005)

    def _serve(self, sock: socket.socket) -> None:
        node = self.node
        ch = Channel(sock, self.ident, node.suite, self.trust, clock=node.now, counters=node.counters)
        try:
            name = ch.accept(node.timer_for(0))
        except (SecurityError, ConnectionClosed) as exc:
            print(f"{node.name}: handshake rejected: {exc}", file=sys.stderr)
            self.dropouts.append({"round": 0, "pod": ch.peer or "unknown", "reason": f"handshake rejected: {exc}"})
            self.rejected += 1
            sock.close()
            return
        self.channels[name] = ch
        self.alive.add(name)
        while True:
            try:
                rec = ch.read_record()
            except (ConnectionClosed, SecurityError) as exc:
                self.inbox.put(Arrival(name, None, str(exc) or "connection closed"))
                return
            node.transfer(rec, name, "upload", node.now())
            self.inbox.put(Arrival(name, rec))

    # one round: distribute, then collect and aggregate
    def _round(self, r: int, theta: np.ndarray) -> np.ndarray | None:
        targets = sorted(self.alive)
        if self.pool is None:
            for c in targets:
                self._send_model(c, r, theta, None)
        else:
            for c in targets:
                self.pool.submit(self._send_model, c, r, theta, self.node.now())
        return self._collect(r)

    def _send_model(self, c: str, r: int, theta: np.ndarray, queued_at: float | None) -> None:
        """One client's copy of the global model: serialise, sign, (encapsulate,) encrypt, send."""
        ch = self.channels[c]
        kem_pk = self.trust[c].kem if self.node.cfg["rekey"] == "per_message" else None
        buf = message(self.node, MODEL, r, theta, "distribute", queued_at)
        sealed = protect(self.node, ch, self.ident, buf, "distribute", kem_pk)
        with contextlib.suppress(OSError):  # a dead client shows up as a dropout on its reader thread
            ch.write_sealed(sealed)

    def _collect(self, r: int) -> np.ndarray | None:
        """Wait for the quorum of this round's valid updates (verified as the mode says); FedAvg them.

        None when the round times out; RunFailed when too few clients are left to reach the quorum.
        Rejected or stale (earlier-round) updates do not count: collection goes on without them.
        Workers report verified updates through the same inbox as the network, so nothing polls.
        """
        need = self.fl["quorum_clients"]
        deadline = time.monotonic() + self.fl["round_timeout_s"]
        in_hand: set[str] = set()  # clients whose update of this round arrived (valid or not yet known)
        updates: list[np.ndarray] = []
        acc: np.ndarray | None = None
        pending: list[Arrival] = []
        while len(updates) < need:
            if self.pool is None and pending and len(pending) >= need - len(updates):
                for a in pending:  # sequential: verify only once enough updates have arrived
                    if (u := self._verify(a, r, None)) is not None:
                        updates.append(u[1])
                    else:
                        self._rejected(a.client, in_hand, r)
                pending = []
                continue
            if len(self.alive | in_hand) < need:
                raise RunFailed(f"round {r}: quorum lost: {len(self.alive)} of {len(self.clients)} clients left, "
                                f"quorum needs {need}")  # fmt: skip
            try:
                arrival = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if arrival.verified is not None:  # a worker's result
                if arrival.verified is False:
                    self._rejected(arrival.client, in_hand, r)
                else:
                    acc = self._fold(acc, arrival.verified)
                    updates.append(arrival.verified)
            elif arrival.record is None:
                self._dropout(arrival, r)
            else:
                in_hand.add(arrival.client)
                if self.pool is None:
                    pending.append(arrival)
                else:
                    self.pool.submit(self._verify_job, arrival, r, self.node.now())
        if self.pool is None:
            with self.node.timer("aggregate", "fl.fedavg"):
                return fl.fedavg(updates, [1.0] * len(updates))
        assert acc is not None
        return acc / np.float32(len(updates))

    def _drain(self, r: int) -> None:
        """After the last round: record dropouts still queued, and open records no round needed, so a
        replayed or tampered one is still detected and counted (their work is filed under round 0)."""
        time.sleep(0.05)  # a connection that ended just now is reported within milliseconds
        self.node.round = 0
        while True:
            try:
                arrival = self.inbox.get_nowait()
            except queue.Empty:
                break
            if arrival.record is not None and arrival.client in self.alive:
                if self._verify(arrival, -1, None) is None and arrival.client in self.rejections:
                    self._dropout(Arrival(arrival.client, None, self.rejections[arrival.client]), r)
            elif arrival.record is None and arrival.verified is None:
                self._dropout(arrival, r)
        self.node.round = r

    def _rejected(self, client: str, in_hand: set[str], r: int) -> None:
        """An update that did not count: stale, or rejected (then the client is out of the run)."""
        in_hand.discard(client)
        if client in self.rejections:
            self._dropout(Arrival(client, None, self.rejections[client]), r)

    def _verify_job(self, a: Arrival, r: int, queued_at: float) -> None:
        res = self._verify(a, r, queued_at)
        self.inbox.put(Arrival(a.client, None, verified=False if res is None else res[1]))

    def _fold(self, acc: np.ndarray | None, update: np.ndarray) -> np.ndarray:
        with self.node.timer("aggregate", "fl.fedavg"):
            return update.copy() if acc is None else acc + update

    def _verify(self, a: Arrival, r: int, queued_at: float | None) -> tuple[str, np.ndarray] | None:
        assert a.record is not None
        ch = self.channels[a.client]
        try:
            kind, rnd, payload = unprotect(self.node, ch, a.record, self.trust[a.client].sig, "verify", queued_at)
        except SecurityError as exc:  # fatal for the connection, as a TLS alert would be
            print(f"{self.node.name}: rejected a record from {a.client}: {exc}", file=sys.stderr)
            with contextlib.suppress(OSError):  # its reader thread then reports the dropout
                ch.sock.shutdown(socket.SHUT_RDWR)
            self.rejections[a.client] = f"rejected: {exc}"
            return None
        if kind != UPDATE or rnd != r:
            return None  # a straggler's update from an earlier round
        with self.node.timer("verify", "deserialize", nbytes=len(payload)):
            return a.client, fl.deserialize(payload)  # one copy out of the record buffer

    def _dropout(self, a: Arrival, r: int) -> None:
        if a.client in self.alive:
            self.alive.discard(a.client)
            reason = self.rejections.get(a.client, a.reason)
            self.dropouts.append({"round": r, "pod": a.client, "reason": reason})
            print(f"{self.node.name}: {a.client} dropped out in round {r}: {a.reason}", file=sys.stderr)


# --- client ------------------------------------------------------------------------------------------


def run_client(node: Node) -> dict[str, Any]:
    cfg, fl_cfg = node.cfg, node.cfg["fl"]
    ident = node.identity()
    shape = fl.Shape.for_parameters(fl_cfg["model_parameters"], data.FEATURES)
    warm_up(node.suite, fl_cfg["model_parameters"] * 4, shape)
    node.publish(ident)
    agg = cfg["aggregator"]
    peers = [agg] + (["devices"] if any(d["pod"] == node.name for d in cfg["devices"]) else [])
    trust = node.trust(peers)
    _serve_telemetry(node, ident, trust)
    ch = _session(node, ident, trust, cfg["routes"][node.name][agg], agg, cfg.get("connect_timeout_s", 30.0))
    index = fl_cfg["clients"].index(node.name)
    seeds = np.random.SeedSequence(cfg["seed"]).spawn(3 + len(fl_cfg["clients"]))
    x, y = data.client_data(index, len(fl_cfg["clients"]), fl_cfg["samples_per_client"], seeds[3 + index])
    rng = np.random.default_rng(seeds[2].spawn(len(fl_cfg["clients"]))[index])
    kem_pk = trust[agg].kem if cfg["rekey"] == "per_message" else None
    crash_round = cfg.get("crash", {}).get(node.name)
    rounds = 0
    while True:
        rec = ch.read_record()
        arrived, mark = node.now(), len(node.rows)
        kind, rnd, payload = unprotect(node, ch, rec, trust[agg].sig, "receive")
        if kind == DONE:
            del node.rows[mark:]  # the end-of-run message is not part of a round
            break
        node.round = rnd
        node.retag(mark, rnd)  # the round is known only once the model is open
        node.transfer(rec, agg, "distribute", arrived)
        with node.timer("receive", "deserialize", nbytes=len(payload)):
            theta = fl.deserialize(payload)
        if crash_round is not None and rnd >= crash_round:  # fault injection for tests: die mid-round
            os._exit(17)
        with node.timer("train", "fl.train"):
            theta = fl.train(shape, theta, x, y, fl_cfg["local_epochs"], rng)
        buf = message(node, UPDATE, rnd, theta, "upload")
        ch.write_sealed(protect(node, ch, ident, buf, "upload", kem_pk))
        rounds += 1
    return {"rounds": rounds}


def _session(node: Node, ident: Identity, trust: dict[str, Any], address: list[Any], peer: str,
             timeout_s: float) -> Channel:  # fmt: skip
    """Connect and run the handshake as initiator. A connection closed before the handshake finished (a
    Service or proxy that accepted while the aggregator was not listening yet) is retried until the timeout;
    a rejected handshake is not."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = connect(address, max(1.0, deadline - time.monotonic()))
        ch = Channel(sock, ident, node.suite, trust, clock=node.now, counters=node.counters)
        mark = len(node.rows)
        try:
            ch.initiate(peer, node.timer_for(0))
            return ch
        except ConnectionClosed:
            sock.close()
            del node.rows[mark:]  # the aborted attempt's handshake work is not part of the run
            if time.monotonic() > deadline:
                raise RunFailed(
                    f"{peer} closed every connection before the handshake within {timeout_s:.0f} s"
                ) from None
            time.sleep(0.1)


def _serve_telemetry(node: Node, ident: Identity, trust: dict[str, Any]) -> None:
    port = node.cfg["pods"][node.name].get("telemetry_port")
    if not port:
        return
    srv = listen(port, node.cfg.get("bind", "127.0.0.1"))

    def accept_loop() -> None:
        while True:
            sock, _ = srv.accept()
            threading.Thread(target=_telemetry_session, args=(node, ident, trust, sock), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


def _telemetry_session(node: Node, ident: Identity, trust: dict[str, Any], sock: socket.socket) -> None:
    ch = Channel(sock, ident, node.suite, trust, clock=node.now, counters=node.counters)
    try:
        device = ch.accept(node.timer_for(phase="telemetry"))  # device sessions count as telemetry work
        while True:
            rec = ch.read_record()
            plaintext = ch.open(rec, node.timer_for(), "telemetry")
            node.add(node.name, device, "telemetry", "frame", rec.sent_at_s, node.now(), 0.0, rec.wire_bytes)
            del plaintext
    except (ConnectionClosed, SecurityError, OSError):
        return


# --- devices -----------------------------------------------------------------------------------------


def run_devices(node: Node) -> dict[str, Any]:
    """Every device of the scenario as a thread: handshake with its pod, then frames at its rate."""
    cfg = node.cfg
    # Kubernetes runs one device emulator per host ("runner"); its access links are shaped in-process
    pops = [_shaped(pop, cfg["seed"]) for pop in cfg["devices"] if pop.get("runner", node.name) == node.name]
    idents = {}
    for pop in pops:
        for i in range(pop["count"]):
            name = f"{pop['population']}#{i}"
            idents[name] = node.identity(name)
    if "keys" not in cfg:
        atomic_write(node.run_dir / "keys" / "devices.json", json.dumps({n: d.public() for n, d in idents.items()}))
    trust = node.trust(sorted({pop["pod"] for pop in pops}))
    stop = threading.Event()
    rng = np.random.default_rng(np.random.SeedSequence(cfg["seed"]).spawn(4)[3])
    threads = []
    for pop in pops:
        for i in range(pop["count"]):
            name = f"{pop['population']}#{i}"
            offset = float(rng.uniform(0, pop["period_s"]))
            t = threading.Thread(target=_device, args=(node, idents[name], trust, pop, offset, stop), daemon=True)
            t.start()
            threads.append(t)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    return {"devices": len(threads)}


def _shaped(pop: dict[str, Any], seed: int) -> dict[str, Any]:
    """A population whose run.json entry carries its access path's ``link`` (Kubernetes: the devices are
    emulated in the pod) connects through a shaping proxy in this process, as the local backend's do."""
    if "link" not in pop:
        return pop
    from hw.proxy import LinkShape, open_path

    proxy = open_path(pop["address"][0], int(pop["address"][1]), LinkShape(**pop["link"]), pop.get("link_seed", seed))
    return {**pop, "address": ["127.0.0.1", proxy.port]}


def _device(node: Node, ident: Identity, trust: dict[str, Any], pop: dict[str, Any], offset_s: float,
            stop: threading.Event) -> None:  # fmt: skip
    """One device: (re)connect and handshake with its pod, then send a frame every period until stopped.
    A device whose pod is not listening yet, or whose session breaks, retries after a back-off."""
    backoff_s = 0.05
    if stop.wait(offset_s):
        return
    while not stop.is_set():
        try:
            ch = Channel(connect(pop["address"]), ident, node.suite, trust, clock=node.now, counters=node.counters)
            ch.initiate(pop["pod"], lambda *_: _NoTimer())
            frame = os.urandom(pop["frame_bytes"])
            next_at = time.monotonic()
            while not stop.is_set():
                ch.write_sealed(ch.seal(frame))
                next_at += pop["period_s"]
                stop.wait(max(0.0, next_at - time.monotonic()))
        except (RunFailed, SecurityError, ConnectionClosed, OSError):
            stop.wait(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)


class _NoTimer:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- entry point -------------------------------------------------------------------------------------


def main(run_dir: Path, name: str, role: str) -> int:
    cfg = json.loads((run_dir / "run.json").read_text())
    tune_allocator()  # as calibrate does, so measured costs and the run see the same allocator
    tune_threads()
    node = Node(run_dir, name, cfg)
    if cfg.get("metrics_port"):
        from hw.k8s.pod import serve_metrics

        serve_metrics(node, role, cfg["metrics_port"], cfg.get("bind", "127.0.0.1"))
    try:
        if role == "aggregator":
            result = Aggregator(node).run()
        elif role == "client":
            result = run_client(node)
        elif role == "devices":
            result = run_devices(node)
        else:
            raise RunFailed(f"role {role!r} has no process in the local twin (workers run as threads)")
        result["state"] = "completed"
        node.finish(result)
        return 0
    except (RunFailed, SecurityError, ConnectionClosed) as exc:
        node.finish({"state": "failed", "reason": str(exc)})
        print(f"{name}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
