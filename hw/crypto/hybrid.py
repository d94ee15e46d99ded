"""Hybrid KEM X25519+ML-KEM-768: secure while either component is.

Wire format (X25519 first, as `sim.catalogue` and X-Wing order it)::

    public key  = pk_X (32 B)  || pk_M (1184 B)          # 1216 B
    ciphertext  = ct_X (32 B)  || ct_M (1088 B)          # 1120 B

where ``ct_X`` is the X25519 ephemeral public key of the DH-as-KEM construction (`hw.crypto.openssl`)
and ``ct_M`` the ML-KEM-768 ciphertext. Each component is encapsulated independently, giving
``ss_X`` and ``ss_M`` (32 B each). The combiner -- HKDF-SHA256, binding both ciphertexts and both public
keys as X-Wing and the TLS hybrid groups do -- is::

    shared_secret = HKDF-SHA256(
        IKM  = ss_X || ss_M,
        salt = none (32 zero bytes),
        info = b"pq-iomt-twin/hybrid-kem/v1/X25519+ML-KEM-768" || ct_X || ct_M || pk_X || pk_M,
        L    = 32)

All parts have fixed lengths, so the concatenations are unambiguous. Binding the ML-KEM ciphertext
matters: ML-KEM's implicit rejection returns a pseudo-random ``ss_M`` for a tampered ``ct_M``, and the
binding makes the hybrid secret change with any altered byte of either half.

The class is generic over its two component `Kem` objects; the ``openssl`` provider builds it from its
own X25519 and ML-KEM-768. An exported private key is the two components' exports, each preceded by its
length (4 bytes, big-endian): ``len(sk_X) || sk_X || len(sk_M) || sk_M``.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hw.crypto.base import Buffer, InvalidCiphertext, InvalidKey, Kem, KeyPair, PublicKey

HYBRID_NAME = "X25519+ML-KEM-768"
LABEL = b"pq-iomt-twin/hybrid-kem/v1/X25519+ML-KEM-768"
_X_BYTES = 32  # X25519 public key = X25519 "ciphertext" (ephemeral public key)
_PK_M_BYTES = 1184  # ML-KEM-768 public key
_CT_M_BYTES = 1088  # ML-KEM-768 ciphertext


def combine(ss_x: Buffer, ss_m: Buffer, ct_x: Buffer, ct_m: Buffer, pk_x: Buffer, pk_m: Buffer) -> bytes:
    """The combiner of the module docstring (public so tests can check it from the components).

    Any part may be bytes-like (``decaps`` passes slices of its ciphertext); ``b"".join`` takes them all.
    """
    info = b"".join((LABEL, ct_x, ct_m, pk_x, pk_m))
    return HKDF(hashes.SHA256(), 32, None, info).derive(b"".join((ss_x, ss_m)))


class HybridKem(Kem):
    """X25519 + ML-KEM-768; ``native`` of its keys is the pair of component handles."""

    def __init__(self, classical: Kem, post_quantum: Kem, provider: str) -> None:
        super().__init__(HYBRID_NAME, provider)
        self.classical = classical
        self.post_quantum = post_quantum

    def keygen(self) -> KeyPair:
        kx = self.classical.keygen()
        km = self.post_quantum.keygen()
        public = PublicKey(self.name, kx.public.raw + km.public.raw, (kx.public, km.public))
        return KeyPair(public, (kx, km))

    def load_public(self, raw: Buffer) -> PublicKey:
        if len(raw) != _X_BYTES + _PK_M_BYTES:
            want = _X_BYTES + _PK_M_BYTES
            raise InvalidKey(f"{self.name}: public key must be {want} bytes, got {len(raw)}")
        px = self.classical.load_public(raw[:_X_BYTES])
        pm = self.post_quantum.load_public(raw[_X_BYTES:])
        return PublicKey(self.name, bytes(raw), (px, pm))

    def encaps(self, public: PublicKey) -> tuple[bytes, bytes]:
        px, pm = public.native
        ct_x, ss_x = self.classical.encaps(px)
        ct_m, ss_m = self.post_quantum.encaps(pm)
        return ct_x + ct_m, combine(ss_x, ss_m, ct_x, ct_m, px.raw, pm.raw)

    def export_private(self, keypair: KeyPair) -> bytes:
        kx, km = keypair.native
        parts = (self.classical.export_private(kx), self.post_quantum.export_private(km))
        return b"".join(struct.pack("!I", len(p)) + p for p in parts)

    def import_private(self, raw: Buffer) -> KeyPair:
        raw, parts, pos = bytes(raw), [], 0
        for _ in range(2):
            if pos + 4 > len(raw):
                raise InvalidKey(f"{self.name}: exported private key too short")
            (size,) = struct.unpack_from("!I", raw, pos)
            parts.append(raw[pos + 4 : pos + 4 + size])
            pos += 4 + size
        if pos != len(raw):
            raise InvalidKey(f"{self.name}: exported private key has {len(raw) - pos} trailing or missing bytes")
        kx, km = self.classical.import_private(parts[0]), self.post_quantum.import_private(parts[1])
        public = PublicKey(self.name, kx.public.raw + km.public.raw, (kx.public, km.public))
        return KeyPair(public, (kx, km))

    def decaps(self, keypair: KeyPair, ciphertext: Buffer) -> bytes:
        if len(ciphertext) != _X_BYTES + _CT_M_BYTES:
            raise InvalidCiphertext(
                f"{self.name}: ciphertext must be {_X_BYTES + _CT_M_BYTES} bytes, got {len(ciphertext)}"
            )
        kx, km = keypair.native
        ct_x, ct_m = ciphertext[:_X_BYTES], ciphertext[_X_BYTES:]
        ss_x = self.classical.decaps(kx, ct_x)
        ss_m = self.post_quantum.decaps(km, ct_m)
        return combine(ss_x, ss_m, ct_x, ct_m, kx.public.raw, km.public.raw)
