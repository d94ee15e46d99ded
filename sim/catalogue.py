"""Algorithm catalogue: exact wire sizes (bytes) of every algorithm a scenario may name.

Sizes are what goes on the wire in our protocol, per FIPS 203 (ML-KEM), FIPS 204 (ML-DSA), FIPS 205
(SLH-DSA), the Falcon round-3 specification, RFC 7748/8032 and SEC1. The network model charges these
bytes; the crypto providers (hw/) must produce exactly these sizes (a test walks every algorithm).

Encodings: EC public keys are uncompressed SEC1 points (65 B for P-256); ECDSA signatures are raw r||s
(64 B); RSA public keys are DER SubjectPublicKeyInfo; KEM "ciphertext" of a DH scheme is the ephemeral
public key. The hybrid KEM concatenates its parts (X25519 first, as in X-Wing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["kem", "signature", "aead", "hash"]


@dataclass(frozen=True)
class Algorithm:
    """One algorithm and its wire sizes. Fields that do not apply to the kind are 0."""

    name: str
    kind: Kind
    quantum_safe: bool
    nist_category: int  # 0 = classical (broken by a quantum computer), 1..5 = NIST PQC category
    public_key_bytes: int = 0
    secret_key_bytes: int = 0
    ciphertext_bytes: int = 0  # KEM ciphertext (DH: ephemeral public key)
    shared_secret_bytes: int = 0
    signature_bytes: int = 0  # fixed size, or the typical size where `signature_max_bytes` is larger
    signature_max_bytes: int = 0
    message_hash: str = ""  # hash that a signature applies to the whole message (charged per byte)
    # passes of that hash over the message when signing (verifying makes one): PureEdDSA hashes it for the
    # nonce and again for the challenge (RFC 8032 5.1.6), SLH-DSA for R and for the digest (FIPS 205 Alg. 19)
    sign_hash_passes: int = 1
    key_bytes: int = 0  # AEAD key
    nonce_bytes: int = 0
    tag_bytes: int = 0
    digest_bytes: int = 0
    source: str = ""

    @property
    def aead_overhead_bytes(self) -> int:
        """Bytes an AEAD record adds to its plaintext on the wire: the tag. The nonce is implicit (derived
        from the record's sequence number, as TLS 1.3 does), so it is never sent."""
        return self.tag_bytes


def _kem(name: str, pq: bool, cat: int, pk: int, sk: int, ct: int, src: str) -> Algorithm:
    return Algorithm(name, "kem", pq, cat, pk, sk, ct, 32, source=src)


def _sig(name: str, pq: bool, cat: int, pk: int, sk: int, sig: int, h: str, src: str, sig_max: int = 0,
         passes: int = 1) -> Algorithm:  # fmt: skip
    return Algorithm(
        name, "signature", pq, cat, pk, sk, signature_bytes=sig, signature_max_bytes=sig_max or sig,
        message_hash=h, sign_hash_passes=passes, source=src,
    )  # fmt: skip


def _aead(name: str, key: int, src: str) -> Algorithm:
    return Algorithm(name, "aead", False, 0, key_bytes=key, nonce_bytes=12, tag_bytes=16, source=src)


def _hash(name: str, digest: int, src: str) -> Algorithm:
    return Algorithm(name, "hash", False, 0, digest_bytes=digest, source=src)


_ALL = [
    _kem("ML-KEM-512", True, 1, 800, 1632, 768, "FIPS 203 Table 3"),
    _kem("ML-KEM-768", True, 3, 1184, 2400, 1088, "FIPS 203 Table 3"),
    _kem("ML-KEM-1024", True, 5, 1568, 3168, 1568, "FIPS 203 Table 3"),
    _kem("X25519", False, 0, 32, 32, 32, "RFC 7748"),
    _kem("ECDH-P256", False, 0, 65, 32, 65, "SEC1 uncompressed point"),
    _kem("X25519+ML-KEM-768", True, 3, 32 + 1184, 32 + 2400, 32 + 1088, "concatenation, as X-Wing"),
    _sig("ML-DSA-44", True, 2, 1312, 2560, 2420, "SHAKE-256", "FIPS 204 Table 2"),
    _sig("ML-DSA-65", True, 3, 1952, 4032, 3309, "SHAKE-256", "FIPS 204 Table 2"),
    _sig("ML-DSA-87", True, 5, 2592, 4896, 4627, "SHAKE-256", "FIPS 204 Table 2"),
    _sig("Falcon-512", True, 1, 897, 1281, 666, "SHAKE-256", "Falcon r3 (padded 666, max 752)", 752),
    _sig("Falcon-1024", True, 5, 1793, 2305, 1280, "SHAKE-256", "Falcon r3 (padded 1280, max 1462)", 1462),
    _sig("SLH-DSA-SHA2-128f", True, 1, 32, 64, 17088, "SHA-256", "FIPS 205 Table 2", passes=2),
    _sig("SLH-DSA-SHA2-128s", True, 1, 32, 64, 7856, "SHA-256", "FIPS 205 Table 2", passes=2),
    _sig("ECDSA-P256", False, 0, 65, 32, 64, "SHA-256", "SEC1 point, raw r||s"),
    _sig("Ed25519", False, 0, 32, 32, 64, "SHA-512", "RFC 8032", passes=2),
    _sig("RSA-2048", False, 0, 294, 1191, 256, "SHA-256", "PKCS#1 v2.2 PSS, DER SPKI"),
    _sig("RSA-3072", False, 0, 422, 1767, 384, "SHA-256", "PKCS#1 v2.2 PSS, DER SPKI"),
    _aead("AES-128-GCM", 16, "NIST SP 800-38D"),
    _aead("AES-256-GCM", 32, "NIST SP 800-38D"),
    _aead("ChaCha20-Poly1305", 32, "RFC 8439"),
    _hash("SHA-256", 32, "FIPS 180-4"),
    _hash("SHA-512", 64, "FIPS 180-4"),
    _hash("SHA3-256", 32, "FIPS 202"),
    _hash("SHAKE-256", 64, "FIPS 202 (64-byte output)"),
]

CATALOGUE: dict[str, Algorithm] = {a.name: a for a in _ALL}

# The hardware twin's crypto providers that implement each algorithm, in the registry's order of preference
# (hw/crypto/registry.py: openssl = pyca/cryptography, then liboqs). The simulator needs it to say which
# library the twin would run a suite with (sim/provenance.py); tests/test_providers.py pins it against the
# real providers, so a new OpenSSL or liboqs release that adds one shows up as a failing test.
_BOTH, _OPENSSL, _LIBOQS = ("openssl", "liboqs"), ("openssl",), ("liboqs",)
TWIN_PROVIDERS: dict[str, tuple[str, ...]] = {
    "ML-KEM-512": _LIBOQS,  # pyca/cryptography exposes ML-KEM-768 and -1024 only
    "ML-KEM-768": _BOTH,
    "ML-KEM-1024": _BOTH,
    "ML-DSA-44": _BOTH,
    "ML-DSA-65": _BOTH,
    "ML-DSA-87": _BOTH,
    "Falcon-512": _LIBOQS,
    "Falcon-1024": _LIBOQS,
    "SLH-DSA-SHA2-128f": _LIBOQS,  # OpenSSL >= 3.5 has SLH-DSA, pyca/cryptography does not expose it
    "SLH-DSA-SHA2-128s": _LIBOQS,
} | {a.name: _OPENSSL for a in _ALL if not a.quantum_safe or a.kind in ("aead", "hash") or "+" in a.name}

# Operations a profile prices for each kind (per call, or per byte for AEAD and hashes).
OPS: dict[Kind, tuple[str, ...]] = {
    "kem": ("keygen", "encaps", "decaps"),
    "signature": ("keygen", "sign", "verify"),
    "aead": ("encrypt", "decrypt"),
    "hash": ("hash",),
}


def unknown_problem(option: str, names: list[str]) -> str | None:
    """The one line refusing the first of ``names`` (an ``option``'s value) that the catalogue lacks, or None."""
    from sim.errors import shorten

    if (unknown := next((n for n in names if n not in CATALOGUE), None)) is None:
        return None
    return f"{option}: unknown algorithm (known: {', '.join(CATALOGUE)}) (got {shorten(repr(unknown))})"


def names(kind: Kind) -> list[str]:
    """Names of all catalogued algorithms of one kind, in catalogue order."""
    return [a.name for a in _ALL if a.kind == kind]


def get(name: str, kind: Kind | None = None) -> Algorithm:
    """The algorithm called `name`; ValueError listing the known names if absent or of another kind."""
    alg = CATALOGUE.get(name)
    if alg is None or (kind is not None and alg.kind != kind):
        known = ", ".join(names(kind)) if kind else ", ".join(CATALOGUE)
        raise ValueError(f"unknown {kind or 'algorithm'} {name!r} (known: {known})")
    return alg
