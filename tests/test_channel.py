"""The secure channel over real sockets: handshake, records, and every attack the issue names."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter

import pytest

from hw.channel import HEADER, KEM, Channel, Identity, SecurityError, Suite, load_trust

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
    assert sealed.type == KEM and len(sealed.parts[0]) == 1088  # an ML-KEM-768 ciphertext travels along
    b.write_sealed(sealed)
    assert a.open(a.read_record()) == b"update"


def raw_records(b: Channel, n: int) -> list[bytes]:
    """n sealed records as raw wire bytes (header + body), without sending them."""
    out = []
    for i in range(n):
        s = b.seal(f"record {i}".encode())
        body = b"".join(s.parts)
        out.append(HEADER.pack(s.type, s.seq, 0.0, len(body)) + body)
    return out


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
