"""Secure channel between pods (and from devices to pods), built on the crypto providers.

Handshake (initiator I = client or device, responder R = aggregator or pod), the same steps and sizes
as the simulator's handshake:

1. I -> R  HELLO   suite, I's name (<= 255 bytes), nonce_I (32 bytes)
   R checks, before any expensive work: the record's size (no record before authentication may exceed
   the suite's largest handshake message: ``handshake_limit``), the fields' sizes, the suite, that the
   name is in the trust store, and that the node admits it (``admit``: not already connected, one of a pod's own
   devices). Anything else: an ALERT and the end (a connection the node's gate cut: the end alone).
2. R -> I  SERVER  suite, R's name, nonce_R, ephemeral KEM public key, R's identity public key,
                   sig_R = Sign_R(HELLO || SERVER fields)
3. I -> R  FINISH  KEM ciphertext (encapsulated to the ephemeral key), I's identity public key,
                   sig_I = Sign_I(HELLO || SERVER || ciphertext)
   Identity keys are pinned: each side checks the peer's key against the run's trust store.
4. Keys: HKDF-SHA256(IKM = shared secret, salt = SHA-256(transcript), info = LABEL) -> an AEAD key and
   a 4-byte nonce prefix per direction.

A suite other than our own in HELLO, or a SERVER suite that differs from the offered one, is a downgrade and
is refused. Records: header = type (1) | seq (8) | sent_at_s (8, float: when it was sealed; spans are measured
from it) | length (4), the whole header authenticated as AAD; nonce = prefix || seq. The receiver expects seq
= last + 1: a smaller seq is a replay, a larger one a reorder, a short body a truncation, a failed tag a
tamper, a malformed key, ciphertext or signature a tamper too (never a provider's own exception), an over-long
record ``oversize``, a peer silent past the node's deadline ``timeout``, an ALERT (never authenticated)
``alert`` — each rejected with `SecurityError` and counted by kind (``counters``: summary.json ``security``).
``KEM`` records (per-message rekeying) carry a fresh encapsulation to the recipient's static KEM key; their
key is HKDF(session key || that secret, seq). A ``REKEY`` record (sealed, per-round rekeying) asks the
initiator for a fresh handshake on the same connection: its plaintext is the round; the new session's keys and
sequence numbers replace the old ones (``epoch`` counts sessions).

Reading a record (network) and opening it (crypto) are separate calls, so that a node decides which
thread does the crypto work, as the processing modes require.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hw.crypto import find
from hw.crypto.base import AuthenticationFailed, Buffer, KeyPair, PublicKey
from sim.contract import RECORD_HEADER_BYTES

LABEL = b"pq-iomt-twin/channel/v1"
# FIPS 204 context strings: a signature made for one role never verifies for another (schemes without
# contexts rely on the framings: a handshake transcript starts with a zero byte, an FL message never does)
HANDSHAKE_CONTEXT = b"pq-iomt-twin/v1/handshake"
MESSAGE_CONTEXT = b"pq-iomt-twin/v1/fl-message"
HEADER = struct.Struct("!BQdI")
assert HEADER.size == RECORD_HEADER_BYTES, "the simulator prices the record header the channel sends"
HELLO, SERVER, FINISH, DATA, KEM, ALERT, REKEY = 1, 2, 3, 4, 5, 6, 7
MAX_RECORD_BYTES = 64 << 20  # after authentication, unless the node sets a tighter ``max_record_bytes``
NAME_MAX_BYTES = 255
CUT = "cut"  # an ``admit`` refusal for a connection its node's gate has already cut (and counted)
REFUSALS = {"duplicate": b"already connected", "identity": b"unknown identity"}  # ``admit``'s kinds, their alerts
NONCE_BYTES = 32


def handshake_limit(suite: Suite) -> int:
    """The largest handshake record of ``suite`` (SERVER: names, nonce, ephemeral key, identity key,
    signature; FINISH: ciphertext, identity key, signature), with room for the length prefixes."""
    from sim import catalogue

    kem, sig = catalogue.get(suite.kem), catalogue.get(suite.signature)
    fields = len(suite.id) + NAME_MAX_BYTES + NONCE_BYTES + kem.public_key_bytes + kem.ciphertext_bytes
    return fields + sig.public_key_bytes + sig.signature_max_bytes + 6 * 4 + 256


SNDTIMEO = struct.Struct("@ll")  # struct timeval: the kernel's send timeout (SO_SNDTIMEO)
SAID_CHARS = 48  # of a peer's text in an error or log line


def said(raw: bytes | bytearray | memoryview | str) -> str:
    """Text a peer sent (a name, a suite, an alert), fit for an error message and a log line: quoted, every
    character outside printable ASCII escaped (a newline could forge a line of the log, which on Kubernetes is a
    pod's report channel) and cut to ``SAID_CHARS`` (a stranger's 8 KB suite id is not copied into every line)."""
    text = raw if isinstance(raw, str) else bytes(raw[: 4 * SAID_CHARS]).decode(errors="replace")
    cut = len(text) > SAID_CHARS or (not isinstance(raw, str) and len(raw) > 4 * SAID_CHARS)
    return ascii(text[:SAID_CHARS]) + ("..." if cut else "")


class SecurityError(Exception):
    """A record or handshake that must be rejected; ``kind`` is what was detected."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class StreamCut(SecurityError):
    """The stream ended in the middle of a record (``truncated``): an attack in the path, or a connection its peer
    cut short (a gate giving its slot away while it answered)."""


class ConnectionClosed(Exception):
    """The peer closed the connection between records."""


@dataclass(frozen=True)
class Suite:
    kem: str
    signature: str
    aead: str
    provider: str = "auto"  # the scenario's workload.crypto.provider; the wire format does not depend on it

    @property
    def id(self) -> bytes:
        return f"{self.kem}/{self.signature}/{self.aead}".encode()


def suite_from(config: Any) -> Suite:
    """The suite a run configuration names (``RunConfig.suite``). Its provider is applied by the node process
    (``registry.default().set_preference``) and around key generation (``preferring``)."""
    return Suite(**config.model_dump())


@dataclass
class Identity:
    """A pod's (or device's) long-term keys for one run: signature identity and static KEM key."""

    name: str
    sig: KeyPair
    kem: KeyPair

    @classmethod
    def generate(cls, name: str, suite: Suite) -> Identity:
        return cls(name, find(suite.signature, "signature").keygen(), find(suite.kem, "kem").keygen())

    def public(self) -> dict[str, str]:
        return {"sig": self.sig.public_bytes.hex(), "kem": self.kem.public_bytes.hex()}

    def export_private(self) -> dict[str, str]:
        """The private keys as a provisioning Secret holds them: the providers' encodings, base64."""
        sig = find(self.sig.algorithm, "signature").export_private(self.sig)
        kem = find(self.kem.algorithm, "kem").export_private(self.kem)
        return {"sig": base64.b64encode(sig).decode(), "kem": base64.b64encode(kem).decode()}

    @classmethod
    def import_private(cls, name: str, entry: dict[str, str], suite: Suite) -> Identity:
        """The inverse of ``export_private``; ValueError when an entry does not decode."""
        signer, kem = find(suite.signature, "signature"), find(suite.kem, "kem")
        return cls(
            name,
            signer.import_private(base64.b64decode(entry["sig"])),
            kem.import_private(base64.b64decode(entry["kem"])),
        )


@dataclass
class Peer:
    sig: PublicKey
    kem: PublicKey


def load_trust(suite: Suite, entries: dict[str, dict[str, str]]) -> dict[str, Peer]:
    """Pinned public keys by name, from the run directory's published key files."""
    signer, kem = find(suite.signature, "signature"), find(suite.kem, "kem")
    return {
        name: Peer(signer.load_public(bytes.fromhex(e["sig"])), kem.load_public(bytes.fromhex(e["kem"])))
        for name, e in entries.items()
    }


@dataclass
class Sealed:
    """An encrypted record ready to send: its header (authenticated with the body: type, sequence number,
    the time it was sealed, length) and its body, the concatenation of ``parts``."""

    header: bytes
    parts: list[Buffer]
    epoch: int = -1  # the session it was sealed in (``Channel.epoch``); -1: not known (written as it comes)


@dataclass
class Record:
    type: int
    seq: int
    sent_at_s: float
    body: bytes
    header: bytes

    @property
    def wire_bytes(self) -> int:
        return len(self.header) + len(self.body)


def _pack(fields: list[bytes]) -> bytes:
    return b"".join(struct.pack("!I", len(f)) + f for f in fields)


def _unpack(body: bytes, n: int) -> list[bytes]:
    out, pos = [], 0
    for _ in range(n):
        if pos + 4 > len(body):
            raise SecurityError("truncated", "handshake message too short")
        (size,) = struct.unpack_from("!I", body, pos)
        out.append(body[pos + 4 : pos + 4 + size])
        pos += 4 + size
    if pos != len(body) or any(len(f) == 0 for f in out):
        raise SecurityError("tampered", "malformed handshake message")
    return out


@dataclass
class _Direction:
    key: Any = None
    prefix: bytes = b""
    seq: int = 0
    raw: bytes = b""  # the key's bytes: what a delegated worker is given (``Delegation``)


@dataclass(frozen=True)
class Delegation:
    """What a crypto worker needs to seal or open one record of a session on its owner's behalf: the
    direction's key and nonce prefix, the session key (per-message keys derive from it) and the record's
    sequence number (checked and allocated by the owner, who keeps the session's order)."""

    key: bytes
    prefix: bytes
    session_key: bytes
    seq: int
    epoch: int = 0  # the owner's session (``Sealed.epoch`` of what the worker seals)


@dataclass
class Channel:
    """One end of a secure channel over a connected socket (thread-safe for one reader + writers)."""

    sock: socket.socket
    me: Identity
    suite: Suite
    trust: dict[str, Peer]
    clock: Any = time.monotonic  # seconds on the run's clock (nodes pass epoch-relative time)
    counters: Counter[str] = field(default_factory=Counter)
    peer: str = ""
    session_key: bytes = b""
    epoch: int = 0  # sessions established on this connection (per-round rekeying adds one a round)
    max_record_bytes: int = MAX_RECORD_BYTES
    _send: _Direction = field(default_factory=_Direction)
    _recv: _Direction = field(default_factory=_Direction)
    _wlock: threading.Lock = field(default_factory=threading.Lock)
    _olock: threading.Lock = field(default_factory=threading.Lock)
    opened_s: float = field(default=-math.inf, init=False)  # when this end took the connection (``read_record``)
    # how long one sealed record may take to leave (None: no limit): a peer that stops reading holds a writer no
    # longer, nor the records queued behind it (``write_sealed``)
    send_timeout_s: float | None = None
    _turn: threading.Condition = field(default_factory=threading.Condition, init=False)
    _written: int = field(default=0, init=False)  # the session's last sealed record written
    _broken: OSError | None = field(default=None, init=False)  # why no sealed record can be written any more

    def __post_init__(self) -> None:
        if self.sock is not None:
            self.opened_s = self.clock()

    # --- framing -------------------------------------------------------------------------------------

    def write(self, rtype: int, body: bytes, seq: int = 0) -> int:
        return self.write_parts(rtype, [body], seq)

    def write_parts(self, rtype: int, parts: list[bytes], seq: int = 0) -> int:
        """Send one handshake record whose body is the concatenation of ``parts``."""
        return self._send_record(HEADER.pack(rtype, seq, self.clock(), sum(len(p) for p in parts)), parts)

    def _send_record(self, header: bytes, parts: list[Any]) -> int:
        with self._wlock:
            self._sendall([header, *parts])  # no copy of the parts
        return len(header) + sum(len(p) for p in parts)

    def _sendall(self, parts: list[Any]) -> None:
        views = [memoryview(p) for p in parts if len(p)]
        deadline = None if self.send_timeout_s is None else time.monotonic() + self.send_timeout_s
        while views:
            sent = self.sock.sendmsg(views) if deadline is None else self._send_by(views, deadline)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if views and sent:
                views[0] = views[0][sent:]

    def _send_by(self, views: list[memoryview], deadline: float) -> int:
        """``sendmsg`` that gives up at ``deadline`` (``TimeoutError``): the kernel's send timeout wakes it each
        second it could send nothing, and a peer reading a byte a second does not stretch the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.peer or 'the peer'} took no record for {self.send_timeout_s:g} s")
        wait = min(1.0, left)
        timeval = SNDTIMEO.pack(int(wait), max(1, int(wait % 1 * 1e6)) if wait < 1 else 0)  # 0 s would be no limit
        with contextlib.suppress(OSError):  # a socket in Python's timeout mode has its own
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        try:
            return self.sock.sendmsg(views)
        except BlockingIOError:  # the kernel's timeout passed with nothing sent
            return 0

    def read_record(self) -> Record:
        """The next record off the wire (no crypto); ConnectionClosed at a clean end of stream.

        Before the peer is authenticated a record may be no longer than the suite's largest handshake
        message (nothing bigger is allocated for a stranger); after, no longer than ``max_record_bytes``."""
        header = self._read_exact(HEADER.size, at_boundary=True)
        rtype, seq, sent_at_s, length = HEADER.unpack(header)
        limit = self.max_record_bytes if self.authenticated else handshake_limit(self.suite)
        if length > limit:
            raise self._reject("oversize", f"a record of {length} bytes (at most {limit} here)")
        body = self._read_exact(length, at_boundary=False)
        # ``sent_at_s`` is the sender's clock, read before the record is opened (a handshake record's header is in
        # no transcript at all): a time before this connection, after the record arrived, or none is no measurement
        # and would make a span that ends before it starts, which costs the node its spans file; it is clamped
        now = self.clock()
        sent = min(max(sent_at_s, self.opened_s), now) if sent_at_s == sent_at_s else now  # NaN: unknown
        return Record(rtype, seq, sent, body, header)

    @property
    def authenticated(self) -> bool:
        return self._recv.key is not None

    def _read_exact(self, n: int, at_boundary: bool) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except TimeoutError:
                raise self._reject("timeout", "no record within the deadline") from None
            except OSError as exc:
                if at_boundary and got == 0:
                    raise ConnectionClosed(f"{self.peer or 'peer'}: {exc.strerror or exc}") from None
                k = 0
            if not k:
                if at_boundary and got == 0:
                    raise ConnectionClosed(f"{self.peer or 'peer'} closed the connection")
                raise self._reject("truncated", f"stream ended {n - got} bytes short of a record", StreamCut)
            got += k
        return bytes(buf) if n < 4096 else buf  # type: ignore[return-value]  # large bodies: no copy

    def _reject(self, kind: str, detail: str, error: type[SecurityError] = SecurityError) -> SecurityError:
        self.counters[kind] += 1
        return error(kind, f"from {self.peer or 'peer'}: {detail}")

    def _expect(self, rec: Record, rtype: int) -> None:
        if rec.type == ALERT:  # unauthenticated, as before any handshake: counted, and the handshake ends
            raise self._reject("alert", said(rec.body))
        if rec.type != rtype:
            raise self._reject("tampered", f"expected record type {rtype}, got {rec.type}")

    # --- handshake (spans are recorded by the caller through `timer`) -------------------------------

    def initiate(self, responder: str, timer: Any) -> None:
        """Run the handshake as initiator towards the pod named ``responder``."""
        signer, kem = find(self.suite.signature, "signature"), find(self.suite.kem, "kem")
        hello = _pack([self.suite.id, self.me.name.encode(), os.urandom(32)])
        self.write(HELLO, hello)
        rec = self.read_record()
        server_arrived = self.clock()
        self._expect(rec, SERVER)
        suite_id, name, _nonce, eph_raw, id_raw, sig_r = _unpack(rec.body, 6)
        if suite_id != self.suite.id:
            raise self._reject("downgrade", f"server chose {said(suite_id)}")
        peer = self._pinned(name.decode(errors="replace"), id_raw, expected=responder)
        signed = hello + rec.body[: len(rec.body) - len(sig_r) - 4]
        with timer("handshake", f"{self.suite.signature}.verify"), self._refusing("tampered"):
            ok = signer.verify(peer.sig, signed, sig_r, HANDSHAKE_CONTEXT)
        if not ok:
            raise self._reject("tampered", "server handshake signature does not verify")
        with timer("handshake", f"{self.suite.kem}.encaps"), self._refusing("tampered"):
            ct, secret = kem.encaps(kem.load_public(eph_raw))
        with timer("handshake", f"{self.suite.signature}.sign"):
            sig_i = signer.sign(self.me.sig, signed + ct, HANDSHAKE_CONTEXT)
        finish = _pack([ct, self.me.sig.public_bytes, sig_i])
        self.write(FINISH, finish)
        self._derive(secret, hello + rec.body + finish, initiator=True)
        _arrived(timer, rec, responder, server_arrived)

    def accept(self, timer: Any, hello_record: Record | None = None, admit: Any = None) -> str:
        """Run the handshake as responder (from its ``hello_record`` when already read); returns the
        authenticated initiator's name. ``admit(name)`` refuses a name before any expensive work by returning the
        kind it is counted as (``REFUSALS``: a pod already connected, a name the node does not serve; ``CUT``: not
        counted again), so a stranger using a public name it may not use costs us nothing; None admits it."""
        signer, kem = find(self.suite.signature, "signature"), find(self.suite.kem, "kem")
        rec = hello_record or self.read_record()
        self._expect(rec, HELLO)
        hello = bytes(rec.body)
        suite_id, name, nonce = _unpack(hello, 3)
        if len(name) > NAME_MAX_BYTES or len(nonce) != NONCE_BYTES:  # cheap checks before any expensive work
            raise self._reject("tampered", "a malformed HELLO")
        if suite_id != self.suite.id:
            self.write(ALERT, b"unsupported suite")
            raise self._reject("downgrade", f"{said(name)} offered {said(suite_id)}")
        initiator = name.decode(errors="replace")
        if initiator not in self.trust:
            self.write(ALERT, b"unknown identity")
            raise self._reject("identity", f"{said(initiator)} is not in the trust store")
        refused = admit(initiator) if admit is not None else None
        if refused == CUT:  # no one to tell
            raise SecurityError(CUT, f"{said(initiator)}: the connection was cut")
        if refused is not None:
            alert = REFUSALS.get(refused, b"refused")
            self.write(ALERT, alert)
            raise self._reject(refused, f"{said(initiator)} is not admitted here ({alert.decode()})")
        with timer("handshake", f"{self.suite.kem}.keygen"):
            eph = kem.keygen()
        fields = [
            self.suite.id,
            self.me.name.encode(),
            os.urandom(32),
            eph.public_bytes,
            self.me.sig.public_bytes,
        ]
        unsigned = _pack(fields)
        with timer("handshake", f"{self.suite.signature}.sign"):
            sig_r = signer.sign(self.me.sig, hello + unsigned, HANDSHAKE_CONTEXT)
        server = unsigned + _pack([sig_r])
        self.write(SERVER, server)
        rec = self.read_record()
        finish_arrived = self.clock()
        self._expect(rec, FINISH)
        ct, id_raw, sig_i = _unpack(rec.body, 3)
        peer = self._pinned(initiator, id_raw, expected=initiator)
        if len(ct) != _kem_ct_bytes(self.suite.kem):
            raise self._reject("tampered", f"a KEM ciphertext of {len(ct)} bytes")
        with timer("handshake", f"{self.suite.kem}.decaps"), self._refusing("tampered"):
            secret = kem.decaps(eph, ct)
        with timer("handshake", f"{self.suite.signature}.verify"), self._refusing("tampered"):
            ok = signer.verify(peer.sig, hello + unsigned + ct, sig_i, HANDSHAKE_CONTEXT)
        if not ok:
            raise self._reject("tampered", "client handshake signature does not verify")
        self._derive(secret, hello + server + rec.body, initiator=False)
        _arrived(timer, rec, initiator, finish_arrived)
        return initiator

    def _pinned(self, name: str, id_raw: bytes, expected: str) -> Peer:
        peer = self.trust.get(name)
        if name != expected or peer is None or peer.sig.raw != id_raw:
            raise self._reject("identity", f"{said(name)} does not match the pinned identity of {expected!r}")
        self.peer = name
        return peer

    def _derive(self, secret: bytes, transcript: bytes, initiator: bool) -> None:
        aead = find(self.suite.aead, "aead")
        n = aead.key_bytes
        okm = HKDF(hashes.SHA256(), 2 * n + 8, hashlib.sha256(transcript).digest(), LABEL).derive(secret)
        i2r, r2i = (
            (aead.load_key(okm[:n]), okm[2 * n : 2 * n + 4]),
            (aead.load_key(okm[n : 2 * n]), okm[2 * n + 4 :]),
        )
        send, recv = (i2r, r2i) if initiator else (r2i, i2r)
        send_raw, recv_raw = (okm[:n], okm[n : 2 * n]) if initiator else (okm[n : 2 * n], okm[:n])
        # with the sealers' lock too, so a record's number, key and session are all the old or all the new; and a
        # writer waiting for an earlier session's record learns it never comes
        with self._turn, self._wlock:
            self._send, self._recv = _Direction(*send, raw=send_raw), _Direction(*recv, raw=recv_raw)
            self.session_key = okm[: 2 * n]
            self.epoch += 1
            self._written = 0  # the new session's records count from 1
            self._turn.notify_all()

    # --- delegation to crypto workers (concurrent mode) -----------------------------------------------

    def delegate_seal(self) -> Delegation:
        """Allocate the next record of this session for a worker to seal (``Channel.sealer``)."""
        with self._wlock:
            self._send.seq += 1
            return Delegation(self._send.raw, self._send.prefix, self.session_key, self._send.seq, self.epoch)

    def delegate_open(self, rec: Record) -> Delegation:
        """Admit ``rec`` in the session's order (replay/reorder rejected here, as ``open`` does) for a worker
        to open (``Channel.opener``)."""
        self._admissible(rec)
        with self._olock:
            self._in_order(rec)
            self._recv.seq = rec.seq
        return Delegation(self._recv.raw, self._recv.prefix, self.session_key, rec.seq)

    @classmethod
    def delegated(cls, me: Identity, suite: Suite, d: Delegation, sending: bool, peer: str,
                  counters: Counter[str], clock: Any) -> Channel:  # fmt: skip
        """A socket-less channel that seals (``sending``) or opens exactly the delegated record."""
        ch = cls(None, me, suite, {}, clock=clock, counters=counters, peer=peer, session_key=d.session_key)  # type: ignore[arg-type]
        direction = _Direction(find(suite.aead, "aead").load_key(d.key), d.prefix, d.seq - 1, d.key)
        if sending:
            ch._send = direction
        else:
            ch._recv = direction
        return ch

    # --- records -------------------------------------------------------------------------------------

    def seal(
        self,
        plaintext: Buffer,
        recipient_kem: PublicKey | None = None,
        timer: Any = None,
        phase: str = "",
        rtype: int = DATA,
    ) -> Sealed:
        """Encrypt one record (with a per-message encapsulation if ``recipient_kem``)."""
        aead = find(self.suite.aead, "aead")
        with self._wlock:  # the record's number, key and session, taken together
            self._send.seq += 1
            seq, key, nonce_prefix, epoch = self._send.seq, self._send.key, self._send.prefix, self.epoch
        prefix = b""
        if recipient_kem is not None:
            with _maybe(timer, phase, f"{self.suite.kem}.encaps"):
                ct, secret = find(self.suite.kem, "kem").encaps(recipient_kem)
            key, prefix, rtype = self._message_key(secret, seq), ct, KEM
        # the whole header is authenticated: type, sequence number, send time (spans are measured from it) and length
        aad = HEADER.pack(rtype, seq, self.clock(), len(prefix) + len(plaintext) + aead.tag_bytes)
        with _maybe(timer, phase, f"{self.suite.aead}.encrypt", len(plaintext)):
            ct = aead.encrypt(key, nonce_prefix + seq.to_bytes(8, "big"), plaintext, aad)
        return Sealed(aad, [prefix, ct], epoch)

    def write_sealed(self, sealed: Sealed) -> int:
        """Send a sealed record; the bytes written. Records leave in their session's order whichever thread sealed
        them first (the peer rejects a reorder): each waits for the one sealed before it, up to
        ``send_timeout_s``. One sealed in an earlier session (per-round rekeying renewed it meanwhile) is not sent
        (0): the peer could not open it, and the round it was for is over. A record that could not leave whole
        (the peer took none within the timeout, or the connection failed) ends writing on the channel: the stream
        is cut mid-record, so every later write fails too, with the same kind of error (``OSError``)."""
        seq = HEADER.unpack_from(sealed.header)[1]
        with self._turn:
            ready = lambda: self._broken is not None or self._stale(sealed) or seq <= self._written + 1  # noqa: E731
            if not self._turn.wait_for(ready, self.send_timeout_s):
                self._broken = TimeoutError(f"record {seq} waited {self.send_timeout_s:g} s for the one before it")
                self._turn.notify_all()  # the records behind it fail at once
            if self._stale(sealed):
                return 0
            if self._broken is not None:
                raise type(self._broken)(f"no record to {self.peer or 'the peer'} can leave: {self._broken}")
            try:
                n = self._send_record(sealed.header, sealed.parts)
            except OSError as exc:
                self._broken = exc
                raise
            finally:
                self._turn.notify_all()
            self._written = max(self._written, seq)
        return n

    def _stale(self, sealed: Sealed) -> bool:
        return 0 <= sealed.epoch != self.epoch

    def open(self, rec: Record, timer: Any = None, phase: str = "") -> bytes:
        """Check order and authenticity of a record read off the wire; the plaintext."""
        aead = find(self.suite.aead, "aead")
        self._admissible(rec)
        with self._olock:
            self._in_order(rec)
            body, key = memoryview(rec.body), self._recv.key
            if rec.type == KEM:
                kem = find(self.suite.kem, "kem")
                size = _kem_ct_bytes(self.suite.kem)
                if len(body) < size + aead.tag_bytes:
                    raise self._reject("truncated", f"record {rec.seq} too short for its encapsulation")
                with _maybe(timer, phase, f"{self.suite.kem}.decaps"), self._refusing("tampered"):
                    secret = kem.decaps(self.me.kem, body[:size])
                key, body = self._message_key(secret, rec.seq), body[size:]
            nonce = self._recv.prefix + rec.seq.to_bytes(8, "big")
            try:
                with _maybe(timer, phase, f"{self.suite.aead}.decrypt", len(body) - aead.tag_bytes):
                    plaintext = aead.decrypt(key, nonce, body, rec.header)
            except (AuthenticationFailed, ValueError):
                raise self._reject("tampered", f"record {rec.seq} fails authentication") from None
            self._recv.seq = rec.seq
        return plaintext

    @contextmanager
    def _refusing(self, kind: str) -> Iterator[None]:
        """A provider's own error on input from the peer (a malformed key, ciphertext or signature) is a
        rejected record like any other: counted, and a ``SecurityError``."""
        try:
            yield
        except SecurityError:
            raise
        except Exception as exc:  # providers raise their own types (ValueError, TypeError, InvalidKey, ...)
            raise self._reject(kind, f"malformed input from the peer ({type(exc).__name__})") from None

    def _admissible(self, rec: Record) -> None:
        if rec.type == ALERT:  # an ALERT record is not authenticated: counted, and fatal like any rejection
            raise self._reject("alert", said(rec.body))
        if rec.type not in (DATA, KEM, REKEY):
            raise self._reject("tampered", f"unexpected record type {rec.type}")

    def _in_order(self, rec: Record) -> None:
        expected = self._recv.seq + 1
        if rec.seq < expected:
            raise self._reject("replay", f"record {rec.seq} again (expected {expected})")
        if rec.seq > expected:
            raise self._reject("reorder", f"record {rec.seq} before {expected}")

    def _message_key(self, secret: bytes, seq: int) -> Any:
        aead = find(self.suite.aead, "aead")
        info = LABEL + b"/message/" + seq.to_bytes(8, "big")
        return aead.load_key(HKDF(hashes.SHA256(), aead.key_bytes, None, info).derive(self.session_key + secret))


def _kem_ct_bytes(kem: str) -> int:
    from sim import catalogue

    return catalogue.get(kem).ciphertext_bytes


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _arrived(timer: Any, rec: Record, sender: str, end: float) -> None:
    """A handshake record that was waited for arrived at ``end``: a transfer span, where the caller's timer keeps
    them (``timer.transfer``). Kept only once the handshake succeeded, so a stranger leaves no span. Only the
    records this end waited for: the responder's HELLO may have queued before anyone read it."""
    keep = getattr(timer, "transfer", None)
    if keep is not None:
        keep(rec, sender, end)


def _maybe(timer: Any, phase: str, op: str, nbytes: int = 0) -> Any:
    """``timer(phase, op[, nbytes])`` when the caller times its steps; ``nbytes`` is what the op processed."""
    if timer is None:
        return _Null()
    return timer(phase, op, nbytes) if nbytes else timer(phase, op)
