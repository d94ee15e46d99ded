"""Crypto work delegated to worker processes (concurrent mode with worker pods), both ends.

Each worker process holds one secure channel to the aggregator (the usual handshake, its identity pinned
in the trust store, through the run's shaping proxy when its host differs). On that channel, every message
is an ordinary sealed record:

1. aggregator -> worker, once: ``GRANT`` — the aggregator's private identity (JSON), so the worker can sign
   models and decapsulate per-message keys on its behalf (as a Kubernetes worker pod would mount it).
2. per job, aggregator -> worker: ``JOB`` — kind, round, client, the record's ``Delegation`` (key, nonce
   prefix, session key, sequence number: the aggregator keeps each session's order) and the payload: a
   client's record, header and body (``VERIFY``), or the global model (``DISTRIBUTE``).
3. worker -> aggregator: ``DONE_OK`` with the verified update's float32 parameters (``VERIFY``) or the sealed
   record for the client, header and body (``DISTRIBUTE``), or ``DONE_REJECTED`` with the rejection's kind
   and reason.

One job at a time per worker: a job thread of the aggregator takes a free worker, writes the job and reads
the answer. The simulator prices the same hop: the aggregator's host encrypts the job, the network (or
loopback) carries it, the worker decrypts it; and the answer back the same way (sim/model.py).
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hw import fl
from hw.channel import HEADER, Channel, ConnectionClosed, Delegation, Identity, Record, Sealed, SecurityError
from hw.node.common import Node, log
from sim.contract import ANSWER_HEAD_BYTES, JOB_HEAD_BYTES

GRANT, JOB, DONE_OK, DONE_REJECTED = 1, 2, 3, 4
VERIFY, DISTRIBUTE = 1, 2
_HEAD = struct.Struct("!BBIQB")  # message type, job kind, round, sequence number, record type
assert _HEAD.size + 6 * 4 == JOB_HEAD_BYTES and _HEAD.size + 2 * 4 == ANSWER_HEAD_BYTES, "the simulator prices jobs"


@dataclass(frozen=True)
class Job:
    kind: int
    round: int
    client: str
    grant: Delegation
    header: bytes  # VERIFY: the client's record header (authenticated with its body); DISTRIBUTE: empty
    payload: memoryview


def pack(head: tuple[int, ...], fields: list[Any]) -> bytearray:
    """``_HEAD`` then length-prefixed fields, one copy of each; a field may be a tuple of parts (one field)."""
    out = bytearray(_HEAD.pack(*head))
    for f in fields:
        parts = [memoryview(p) for p in (f if isinstance(f, tuple) else (f,))]
        out += struct.pack("!I", sum(p.nbytes for p in parts))  # bytes, whatever a buffer's items (len counts items)
        for p in parts:
            out += p
    return out


def unpack(buf: memoryview, n: int) -> tuple[tuple[int, ...], list[memoryview]]:
    if len(buf) < _HEAD.size:
        raise SecurityError("tampered", "a delegation message too short")
    head, pos, out = _HEAD.unpack_from(buf), _HEAD.size, []
    for _ in range(n):
        if pos + 4 > len(buf):
            raise SecurityError("tampered", "a truncated delegation message")
        (size,) = struct.unpack_from("!I", buf, pos)
        if pos + 4 + size > len(buf):
            raise SecurityError("tampered", "a delegation field longer than its message")
        out.append(buf[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return head, out


def encode_job(job: Job) -> bytearray:
    g = job.grant
    return pack((JOB, job.kind, job.round, g.seq, 0),
                [job.client.encode(), g.key, g.prefix, g.session_key, job.header, job.payload])  # fmt: skip


def decode_job(buf: memoryview) -> Job:
    (mtype, kind, rnd, seq, _), (client, key, prefix, session_key, header, payload) = unpack(buf, 6)
    if mtype != JOB or kind not in (VERIFY, DISTRIBUTE):
        raise SecurityError("tampered", f"not a job (type {mtype}, kind {kind})")
    if kind == VERIFY and len(header) != HEADER.size:
        raise SecurityError("tampered", "a job without its record's header")
    return Job(kind, rnd, bytes(client).decode(errors="replace"),
               Delegation(bytes(key), bytes(prefix), bytes(session_key), seq), bytes(header), payload)  # fmt: skip


def encode_grant(ident: Identity) -> bytearray:
    return pack((GRANT, 0, 0, 0, 0), [json.dumps({"name": ident.name, **ident.export_private()}).encode()])


def decode_grant(buf: memoryview) -> dict[str, str]:
    (mtype, *_), (body,) = unpack(buf, 1)
    if mtype != GRANT:
        raise SecurityError("tampered", f"expected the grant, got message type {mtype}")
    entry = json.loads(bytes(body))
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("name", "sig", "kem")):
        raise SecurityError("tampered", "a malformed grant")
    return entry


class WorkerPool:
    """The aggregator's side: its channels to the worker processes, each lent to one job at a time. A worker
    whose channel fails (killed, a record that does not open, or an answer that is not one: a distribution's without
    a sealed model, a verification's of another type or, given ``update_bytes``, an update of another size) leaves
    the pool and its job goes to another; with none left, ``local`` does the job in the aggregator (the same code,
    no hop): rounds go on.

    ``answer_timeout_s`` (the round's deadline; None: none): how long a worker may take from the job's write to
    its answer. One that takes longer (stopped, swapped out, deadlocked) is lost as a killed one is: its channel
    is cut (a watchdog thread shuts its socket down, which ends the job thread's write or read at once), so a
    resumed worker's late answer finds no one. Without it, a hung worker held its job thread for good."""

    def __init__(self, node: Node, channels: dict[str, Channel], local: Callable[[Job], bytearray],
                 answer_timeout_s: float | None = None, update_bytes: int | None = None):  # fmt: skip
        self.node, self.local, self.update_bytes = node, local, update_bytes
        self.free: queue.Queue[Channel] = queue.Queue()
        for ch in channels.values():
            self.free.put(ch)
        self.channels = channels
        self.live = len(channels)
        self.answer_timeout_s = answer_timeout_s
        self._asked: dict[str, tuple[float, Channel]] = {}  # worker -> (its answer's deadline, its channel)
        self._overdue: set[str] = set()  # workers cut off by the watchdog
        self._watched = threading.Lock()
        self._closed = threading.Event()
        if answer_timeout_s is not None:
            threading.Thread(target=self._watch, name="worker-deadlines", daemon=True).start()

    def _watch(self) -> None:
        """Cut off each worker whose answer is overdue. Asleep until the earliest deadline (or ``answer_timeout_s``
        when no job is out): a job asked for later has a later deadline, so no job wakes this thread."""
        assert self.answer_timeout_s is not None
        while True:
            with self._watched:
                now = time.monotonic()
                for name, (deadline, ch) in list(self._asked.items()):
                    if deadline <= now:
                        del self._asked[name]
                        self._overdue.add(name)
                        with contextlib.suppress(OSError):
                            ch.sock.shutdown(socket.SHUT_RDWR)
                wake = min((d for d, _ in self._asked.values()), default=now + self.answer_timeout_s)
            if self._closed.wait(max(0.001, wake - now)):
                return

    def _asking(self, ch: Channel) -> None:
        if self.answer_timeout_s is not None:
            with self._watched:
                self._asked[ch.peer] = (time.monotonic() + self.answer_timeout_s, ch)

    def _answered(self, ch: Channel) -> bool:
        """The job is over; False when the watchdog cut the worker off (its answer came too late, or none)."""
        with self._watched:
            self._asked.pop(ch.peer, None)
            return ch.peer not in self._overdue

    def _lose(self, ch: Channel, exc: Exception | None) -> None:
        """A worker out of the pool, said once: killed, a record that did not open, or no answer in time."""
        if self._answered(ch):
            why = str(exc)
        else:
            why = f"did not answer in {self.answer_timeout_s:g} s"
            if isinstance(exc, SecurityError) and exc.kind == "truncated":  # our own cut, mid-record: no attack
                self.node.counters["truncated"] -= 1
                if not self.node.counters["truncated"]:
                    del self.node.counters["truncated"]
        self.live -= 1
        log.warning("%s: crypto worker %s lost (%s); %d left", self.node.name, ch.peer, why, self.live)
        ch.sock.close()
        self.node.counters["worker_lost"] += 1

    def _ask(self, job: Job, queued_at: float,
             check: Callable[[int, list[memoryview]], str | None]) -> tuple[int, list[memoryview]]:  # fmt: skip
        """Send the job to a free worker (sealed here: the hop's first step, charged the job's wait) and
        wait for its answer (opened here), up to ``answer_timeout_s``. An answer that opens but is not one
        (``check``: what is wrong with it, or None) is a tampered record: the worker is lost as one whose record
        did not open, and the job goes to another (a raise here would end the job thread, and the round would wait
        for its model to its deadline)."""
        phase = "verify" if job.kind == VERIFY else "distribute"
        while self.live > 0:
            try:
                ch = self.free.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                with self.node.timer(phase, "serialize", queued_at=queued_at, nbytes=len(job.payload),
                                     rnd=job.round):  # fmt: skip
                    plaintext = encode_job(job)  # one copy of the payload, as the simulator's hop prices it
                sealed = ch.seal(plaintext, None, self.node.timer_for(job.round, phase), phase)
                self._asking(ch)
                ch.write_sealed(sealed)
                rec = ch.read_record()
                self.node.transfer(rec, ch.peer, phase, self.node.now(), job.round)
                answer = memoryview(ch.open(rec, self.node.timer_for(job.round, phase), phase))
            except (ConnectionClosed, SecurityError, OSError) as exc:  # a rejected record: the channel counted it
                self._lose(ch, exc)
                continue
            try:
                mtype, fields = _answer(answer, check)
            except SecurityError as exc:  # it opened, so the worker sent it: counted here
                self.node.counters["tampered"] += 1
                self._lose(ch, SecurityError("tampered", f"from {ch.peer}: {exc}"))
                continue
            if self._answered(ch):
                self.free.put(ch)
            else:  # the answer came as the watchdog cut the channel: it counts, the worker does not come back
                self._lose(ch, None)
            return mtype, fields
        try:
            return _answer(memoryview(self.local(job)), check)
        except SecurityError as exc:
            raise SecurityError("tampered", f"the job done here: {exc}") from None  # this node's own code failed

    def verify(self, job: Job, queued_at: float) -> np.ndarray | SecurityError:
        """The client's update, verified by a worker; or why it was rejected."""

        def check(mtype: int, fields: list[memoryview]) -> str | None:
            if mtype == DONE_OK and self.update_bytes is not None and len(fields[1]) != self.update_bytes:
                return f"an update of {len(fields[1])} bytes, not the model's {self.update_bytes}"
            return None if mtype in (DONE_OK, DONE_REJECTED) else f"an answer of type {mtype} to a verification"

        mtype, (what, data) = self._ask(job, queued_at, check)
        if mtype == DONE_REJECTED:  # the worker counted it
            return SecurityError(bytes(what).decode(errors="replace"), bytes(data).decode(errors="replace"))
        return np.frombuffer(data, fl.DTYPE)  # the worker deserialised it: no copy here

    def distribute(self, job: Job, queued_at: float) -> Sealed:
        """The model sealed for the job's client by a worker (or here, with none left)."""

        def check(mtype: int, fields: list[memoryview]) -> str | None:
            if mtype != DONE_OK or len(fields[0]) != HEADER.size:
                return f"no sealed model ({bytes(fields[1][:200]).decode(errors='replace')})"
            return None

        _, (header, body) = self._ask(job, queued_at, check)
        return Sealed(bytes(header), [body])

    def close(self) -> None:
        self._closed.set()
        for ch in self.channels.values():
            ch.sock.close()


def _answer(buf: memoryview, check: Callable[[int, list[memoryview]], str | None]) -> tuple[int, list[memoryview]]:
    """A job's answer, unpacked: its type and two fields; SecurityError when it is not one (``check``: what is
    wrong with it, or None)."""
    (mtype, *_), fields = unpack(buf, 2)
    if (wrong := check(mtype, fields)) is not None:
        raise SecurityError("tampered", wrong)
    return mtype, fields


def record_of(job: Job) -> Record:
    """The client's record a ``VERIFY`` job carries, as its channel read it (its header is authenticated)."""
    rtype, seq, sent_at_s, _ = HEADER.unpack(job.header)
    if seq != job.grant.seq:
        raise SecurityError("tampered", f"a job for record {job.grant.seq} carries record {seq}")
    return Record(rtype, seq, sent_at_s, job.payload, job.header)  # type: ignore[arg-type]
