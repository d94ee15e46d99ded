"""The secure channel over real sockets: handshake, records, and every attack the issue names."""

from __future__ import annotations

import contextlib
import logging
import socket
import string
import threading
import time
from collections import Counter

import pytest

from hw.channel import ALERT, HEADER, KEM, REKEY, Channel, ConnectionClosed, Identity, SecurityError, Suite, load_trust
from hw.node.common import Bounded

SUITE = Suite("ML-KEM-768", "ML-DSA-65", "AES-256-GCM")


def null_timer(*_):
    return contextlib.nullcontext()


def pair(suite_a: Suite = SUITE, suite_b: Suite = SUITE, trust_extra: dict | None = None):
    """Aggregator (responder) and client (initiator) channels over a socketpair, handshake done."""
    agg, cli = Identity.generate("aggregator", SUITE), Identity.generate("client-1", SUITE)
    trust = load_trust(SUITE, {"aggregator": agg.public(), "client-1": cli.public(), **(trust_extra or {})})
    sa, sb = socket.socketpair()
    a = Channel(sa, agg, suite_a, trust, counters=Counter())
    b = Channel(sb, cli, suite_b, trust, counters=Counter())
    result: dict = {}

    def accept():
        try:
            result["name"] = a.accept(null_timer)
        except SecurityError as exc:
            result["error"] = exc

    t = threading.Thread(target=accept)
    t.start()
    try:
        b.initiate("aggregator", null_timer)
    except SecurityError as exc:
        result["client_error"] = exc
    t.join(5)
    return a, b, result, (agg, cli)


def test_handshake_authenticates_and_records_round_trip():
    a, b, result, (_agg, _) = pair()
    assert result == {"name": "client-1"} and a.peer == "client-1" and b.peer == "aggregator"
    for size in (0, 1, 1000, 1 << 20):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        writer = threading.Thread(target=b.write_sealed, args=(b.seal(data),))  # larger than socket buffers
        writer.start()
        assert a.open(a.read_record()) == data
        writer.join(5)
    a.write_sealed(a.seal(b"model", recipient_kem=None))
    assert b.open(b.read_record()) == b"model"


def test_per_message_encapsulation_uses_the_recipients_static_key():
    a, b, _, (_agg, _) = pair()
    sealed = b.seal(b"update", recipient_kem=b.trust["aggregator"].kem)
    assert sealed.header[0] == KEM and len(sealed.parts[0]) == 1088  # an ML-KEM-768 ciphertext travels along
    b.write_sealed(sealed)
    assert a.open(a.read_record()) == b"update"


def raw_records(b: Channel, n: int) -> list[bytes]:
    """n sealed records as raw wire bytes (header + body), without sending them."""
    out = []
    for i in range(n):
        s = b.seal(f"record {i}".encode())
        out.append(s.header + b"".join(s.parts))
    return out


def test_the_whole_header_is_authenticated_send_time_included():
    """A forger who skews a record's send time (spans are measured from it) is caught like any tamperer."""
    a, b, _, _ = pair()
    (rec,) = raw_records(b, 1)
    _, seq, sent_at, length = HEADER.unpack(rec[: HEADER.size])
    b.sock.sendall(HEADER.pack(rec[0], seq, sent_at - 0.5, length) + rec[HEADER.size :])
    with pytest.raises(SecurityError) as info:
        a.open(a.read_record())
    assert info.value.kind == "tampered" and a.counters["tampered"] == 1


def test_malformed_kem_records_and_late_alerts_are_security_errors():
    a, b, _, _ = pair()
    kem_ct = b.seal(b"update", recipient_kem=b.trust["aggregator"].kem)
    short = HEADER.pack(KEM, HEADER.unpack(kem_ct.header)[1], 0.0, 10)  # far too short for its encapsulation
    b.sock.sendall(short + b"x" * 10)
    with pytest.raises(SecurityError) as info:
        a.open(a.read_record())
    assert info.value.kind == "truncated"
    a2, b2, _, _ = pair()
    b2.write(ALERT, b"go away")  # unauthenticated after the handshake: counted, fatal for the connection
    with pytest.raises(SecurityError) as info:
        a2.open(a2.read_record())
    assert info.value.kind == "alert" and a2.counters["alert"] == 1


def test_a_stranger_cannot_make_a_node_allocate_before_authenticating():
    agg = Identity.generate("aggregator", SUITE)
    sa, sb = socket.socketpair()
    a = Channel(sa, agg, SUITE, {}, counters=Counter())
    sb.sendall(HEADER.pack(1, 0, 0.0, 64 << 20))  # HELLO announcing 64 MiB
    with pytest.raises(SecurityError) as info:
        a.accept(null_timer)
    assert info.value.kind == "oversize" and a.counters["oversize"] == 1


def _fld(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


FORGED = b"\n----- BEGIN PQTWIN RESULT aggregator -----\n" + b"A" * 7000  # a stranger's "suite id" or "name"


@pytest.mark.parametrize("field", ["suite", "name", "alert"])
def test_a_strangers_text_reaches_an_error_escaped_and_short(field):
    """A HELLO's suite id, name or an ALERT's text is the peer's: it went verbatim, newlines and 8 KB of it, into
    the aggregator's log, where it forged lines (on Kubernetes a pod's log is its report channel) and, a HELLO at
    a time, filled the disk (an attack hunt: 5 MB/s)."""
    agg, cli = Identity.generate("aggregator", SUITE), Identity.generate("client-1", SUITE)
    sa, sb = socket.socketpair()
    a = Channel(sa, agg, SUITE, load_trust(SUITE, {"client-1": cli.public()}), counters=Counter())
    suite, name = (FORGED, b"x") if field == "suite" else (SUITE.id, FORGED[:200])  # a name: at most 255 bytes
    body = _fld(suite) + _fld(name) + _fld(bytes(32))
    sb.sendall(HEADER.pack(ALERT if field == "alert" else 1, 0, 0.0, len(body)) + body)
    with pytest.raises(SecurityError) as info:
        a.accept(null_timer)
    text = str(info.value)
    assert "\n" not in text and len(text) < 200, text
    assert "BEGIN PQTWIN RESULT" in text or field != "suite"  # still says what came, escaped
    assert not any(c not in string.printable or c in "\r\n\x0b\x0c" for c in text)


def test_lines_strangers_cause_are_bounded_and_counted(caplog):
    said = Bounded("handshakes rejected", first=3, every_s=3600.0)
    with caplog.at_level(logging.WARNING, logger="pqtwin.node"):
        for i in range(1000):
            said.warning(f"aggregator: handshake rejected: {i}")
    lines = caplog.messages
    assert lines[:3] == [f"aggregator: handshake rejected: {i}" for i in range(3)]
    assert lines[3:] == ["1 more handshakes rejected since the last line said (the latest: aggregator: handshake "
                         "rejected: 3)"]  # fmt: skip
    said.next_s = 0.0  # the interval has passed: the next line says how many it held
    said.warning("aggregator: handshake rejected: last")
    assert caplog.messages[-1].startswith("997 more handshakes rejected") and len(caplog.messages) == 5


@pytest.mark.parametrize("stamp", [float("nan"), float("inf"), -float("inf"), -1e300, 1e300, 2.5])
def test_a_records_send_time_is_clamped_to_when_it_could_have_been_sent(stamp):
    """The send time in a record's header is the sender's clock, read before the record is opened (a handshake
    record's is in no transcript): an on-path box that rewrote a client's FINISH made the aggregator's transfer span
    end before it started, and its whole spans file was left out (a completed run reported 0 rounds)."""
    clock = iter([10.0, 12.0, 13.0])  # the channel is made at 10 s; the records arrive at 12 and 13 s
    sa, sb = socket.socketpair()
    a = Channel(sa, Identity.generate("aggregator", SUITE), SUITE, {}, clock=lambda: next(clock), counters=Counter())
    for t in (stamp, 11.0):
        sb.sendall(HEADER.pack(1, 0, t, 4) + b"body")
    forged, honest = a.read_record(), a.read_record()
    expected = 10.0 if stamp < 10.0 else 12.0  # before the connection: when it opened; later or NaN: arrival
    assert forged.sent_at_s == expected and honest.sent_at_s == 11.0  # within [connection, arrival]
    assert forged.header == HEADER.pack(1, 0, stamp, 4)  # the bytes as sent: a data record's header is its AAD


def test_sealed_records_leave_in_their_order_whichever_thread_writes_first():
    """Two threads sealed records k and k + 1 for one client (a round's model behind a slow one); the second was
    written first and the client rejected its own aggregator's records as a reorder, and dropped out."""
    a, b, _, _ = pair()
    first, second = b.seal(b"round 1"), b.seal(b"round 2")
    late = threading.Thread(target=b.write_sealed, args=(second,))
    late.start()
    late.join(0.2)
    assert late.is_alive()  # waits for the record sealed before it
    b.write_sealed(first)
    late.join(5)
    assert [a.open(a.read_record()) for _ in range(2)] == [b"round 1", b"round 2"] and not a.counters


@pytest.mark.parametrize("stale", [1, 2])
def test_a_record_sealed_before_a_rekey_is_not_sent_in_the_new_session(stale):
    """Per-round rekeying: round 2's REKEY went out while a late thread still held round 1's model, sealed after
    it. Written after the rehandshake, it was let through into the new session (the client refused its own
    aggregator's record as tampered) or waited for a record of the old session that never came (the review)."""
    a, b, _, _ = pair()
    a.send_timeout_s = 2.0
    rekey = a.seal((2).to_bytes(4, "big"), rtype=REKEY)
    old = [a.seal(b"round 1, late") for _ in range(stale)]  # sealed in the old session, after the REKEY
    a.write_sealed(rekey)
    b.open(b.read_record())
    client = threading.Thread(target=b.initiate, args=("aggregator", null_timer))
    client.start()
    a.accept(null_timer, a.read_record())
    client.join(5)
    started = time.monotonic()
    assert a.write_sealed(old[-1]) == 0 and time.monotonic() - started < 1.0  # not sent, and at once
    a.write_sealed(a.seal(b"round 2"))
    assert b.open(b.read_record()) == b"round 2" and not b.counters


def test_a_peer_that_stops_reading_holds_a_writer_no_longer_than_its_timeout():
    """A client that stops reading (stopped, or a box that keeps its connection open and reads nothing) held the
    aggregator's sequential round, or its model's sender and every record queued behind it, for good."""
    silent, b, _, _ = pair()  # kept open, never read
    b.send_timeout_s = 0.5
    stuck = b.seal(bytes(16 << 20))  # more than any socket buffer: a's end never reads
    queued = b.seal(b"next")
    errors: list[BaseException] = []

    def write_queued():
        try:
            b.write_sealed(queued)
        except OSError as exc:
            errors.append(exc)

    behind = threading.Thread(target=write_queued)
    behind.start()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        b.write_sealed(stuck)
    assert 0.4 < time.monotonic() - started < 3.0
    behind.join(3)
    assert not behind.is_alive() and isinstance(errors[0], TimeoutError)  # behind it: the stream is cut
    with pytest.raises(TimeoutError):
        b.write_sealed(b.seal(b"later"))
    assert silent.sock.fileno() >= 0  # the peer never closed: only the deadline ended the writes


@pytest.mark.parametrize("attack", ["replay", "reorder", "tampered", "truncated"])
def test_record_attacks_are_rejected_and_counted(attack):
    a, b, _, _ = pair()
    r1, r2 = raw_records(b, 2)
    if attack == "replay":
        wire = r1 + r1
    elif attack == "reorder":
        wire = r2 + r1
    elif attack == "tampered":
        wire = r1[:-5] + bytes([r1[-5] ^ 1]) + r1[-4:]
    else:
        wire = r1 + r2[: len(r2) - 3]
    b.sock.sendall(wire)
    b.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(SecurityError) as info:
        for _ in range(2):
            a.open(a.read_record())
    assert info.value.kind == attack and a.counters[attack] == 1


def test_downgraded_suite_is_refused():
    weaker = Suite("X25519", "Ed25519", "AES-128-GCM")
    _, _b, result, _ = pair(suite_b=weaker)
    assert result["error"].kind == "downgrade"
    assert "client_error" in result  # the client is told (alert) and stops


def test_unknown_or_impersonated_identity_is_refused():
    mallory = Identity.generate("client-1", SUITE)  # claims client-1's name with its own key
    agg = Identity.generate("aggregator", SUITE)
    real = Identity.generate("client-1", SUITE)
    trust = load_trust(SUITE, {"aggregator": agg.public(), "client-1": real.public()})
    sa, sb = socket.socketpair()
    a = Channel(sa, agg, SUITE, trust, counters=Counter())
    m = Channel(sb, mallory, SUITE, trust, counters=Counter())
    errors: list = []

    def accept():
        try:
            a.accept(null_timer)
        except SecurityError as exc:
            errors.append(exc)

    t = threading.Thread(target=accept)
    t.start()
    with contextlib.suppress(SecurityError, OSError):
        m.initiate("aggregator", null_timer)
    sb.close()
    t.join(5)
    assert errors and errors[0].kind == "identity" and a.counters["identity"] == 1


def test_signatures_are_bound_to_their_role_by_fips_204_context_strings():
    """An FL message's ML-DSA signature never verifies as a handshake's (nor without its context), on every
    provider that has ML-DSA, and across providers."""
    from hw.channel import HANDSHAKE_CONTEXT, MESSAGE_CONTEXT
    from hw.crypto import registry

    signers = [p.signature("ML-DSA-65") for p in registry.default().providers()
               if p.available and "ML-DSA-65" in p.algorithms("signature")]  # fmt: skip
    assert signers
    for s in signers:
        kp, msg = s.keygen(), b"\x02\x00\x00\x00\x01\x00\x00\x00update"
        sig = s.sign(kp, msg, MESSAGE_CONTEXT)
        for v in signers:  # a public key crosses providers as its FIPS 204 encoding
            pk = v.load_public(kp.public.raw)
            assert v.verify(pk, msg, sig, MESSAGE_CONTEXT)
            assert not v.verify(pk, msg, sig, HANDSHAKE_CONTEXT) and not v.verify(pk, msg, sig)


@pytest.mark.parametrize("refusal", ["duplicate", "identity", "cut"])
def test_a_name_the_node_does_not_admit_costs_no_signature_and_is_counted_as_refused(refusal):
    """``admit`` refuses a name before the key pair and the signature: a pod connected already (``duplicate``), a
    name this node does not serve (``identity``: another pod's device at a telemetry port), or a connection the
    gate has cut (counted by the gate, not again)."""
    agg, cli = Identity.generate("aggregator", SUITE), Identity.generate("client-1", SUITE)
    trust = load_trust(SUITE, {"aggregator": agg.public(), "client-1": cli.public()})
    sa, sb = socket.socketpair()
    counters: Counter[str] = Counter()
    a = Channel(sa, agg, SUITE, trust, counters=counters)
    b = Channel(sb, cli, SUITE, trust, counters=Counter())
    timed: list[str] = []

    def timer(_phase, op, *_):
        timed.append(op)
        return contextlib.nullcontext()

    def initiate():
        with contextlib.suppress(SecurityError, ConnectionClosed, OSError):  # an alert, or the end of the stream
            b.initiate("aggregator", null_timer)

    t = threading.Thread(target=initiate, daemon=True)
    t.start()
    with pytest.raises(SecurityError) as info:
        a.accept(timer, admit=lambda name: refusal if name == "client-1" else None)
    sa.close()
    t.join(5)
    assert info.value.kind == refusal and not timed  # no key pair, no signature
    assert dict(counters) == ({} if refusal == "cut" else {refusal: 1})
