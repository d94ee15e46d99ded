"""The ``openssl`` provider: pyca/cryptography (>= 48), i.e. the OpenSSL built into its wheels.

(Longer than our ~450-line guide on purpose: one short class per algorithm family of one library, and the
table that builds them; splitting it would scatter one provider over several files.)

Always available. Implements ML-KEM-768/1024, ML-DSA-44/65/87, X25519 and ECDH-P256 (as KEMs),
ECDSA-P256, Ed25519, RSA-2048/3072 (PSS), AES-128/256-GCM, ChaCha20-Poly1305, SHA-256, SHA-512,
SHA3-256, SHAKE-256 (64-byte output) and the hybrid X25519+ML-KEM-768 (see `hw.crypto.hybrid`).
ML-KEM-512 is not exposed by cryptography's API, hence not here (liboqs has it).

Wire encodings follow `sim.catalogue`:

- ML-KEM / ML-DSA public keys are the raw FIPS 203/204 encodings; ML-DSA signs with an empty context
  and OpenSSL's default hedged randomness.
- EC public keys are uncompressed SEC1 points (65 B); ECDSA(SHA-256) signatures are raw ``r || s``
  (2 x 32 B big-endian), converted from/to OpenSSL's DER.
- RSA public keys are DER SubjectPublicKeyInfo; signatures are RSASSA-PSS with SHA-256, MGF1-SHA-256
  and a salt as long as the digest (32 B); e = 65537.

DH as a KEM (X25519, ECDH-P256), in the manner of RFC 9180's DHKEM: ``encaps`` generates an ephemeral
key pair; the ciphertext is the ephemeral public key (``enc``); the shared secret is::

    HKDF-SHA256(IKM = DH(eph, pk_R), salt = none (32 zero bytes), L = 32,
                info = b"pq-iomt-twin/dhkem/v1/" + name + b"/" || enc || pk_R)

with ``name`` the catalogue name (``X25519`` / ``ECDH-P256``) and ``pk_R`` the recipient's public key in
wire form. ``decaps`` computes ``DH(sk_R, enc)`` and the same HKDF. Binding ``enc`` and ``pk_R`` makes the
secret depend on the exact bytes exchanged, so altering ``enc`` always changes it.

Private keys export as unencrypted PKCS#8 DER (``export_private`` / ``import_private``; ML-KEM and ML-DSA
in their seed-only form, 86 and 54 bytes): how the Kubernetes backend provisions a pod's identity.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from cryptography import exceptions as cryptography_exceptions
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hw.crypto.base import (
    Aead,
    AlgorithmObject,
    AuthenticationFailed,
    Buffer,
    Hash,
    InvalidCiphertext,
    InvalidKey,
    Kem,
    KeyPair,
    Kind,
    Provider,
    PublicKey,
    SecretKey,
    Signer,
    as_bytes,
)
from hw.crypto.hybrid import HYBRID_NAME, HybridKem

NAME = "openssl"
_PKCS8 = (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class _Pkcs8Keys:
    """``export_private`` / ``import_private`` as unencrypted PKCS#8 DER, for keys whose ``native`` is a
    pyca/cryptography private key. A class lists the private key types it accepts and builds a KeyPair
    from one (``_keypair``, which ``keygen`` uses too, so imported and generated keys look alike)."""

    name: str
    _private_types: tuple[type, ...] = ()

    def _keypair(self, sk: Any) -> KeyPair:
        raise NotImplementedError(f"{type(self).__name__} must say how it builds a KeyPair from a private key")

    def _accepts(self, sk: Any) -> bool:
        return isinstance(sk, self._private_types)

    def export_private(self, keypair: KeyPair) -> bytes:
        return keypair.native.private_bytes(*_PKCS8)

    def import_private(self, raw: Buffer) -> KeyPair:
        try:
            sk = serialization.load_der_private_key(bytes(raw), password=None)
        except (ValueError, TypeError, cryptography_exceptions.UnsupportedAlgorithm):
            raise InvalidKey(f"{self.name}: not an unencrypted PKCS#8 DER private key") from None
        if not self._accepts(sk):
            raise InvalidKey(f"{self.name}: the PKCS#8 key is a {type(sk).__name__}, not a {self.name} key")
        return self._keypair(sk)


# ---------------------------------------------------------------------------------------------- KEMs


class MlKem(_Pkcs8Keys, Kem):
    """ML-KEM (FIPS 203) on cryptography's MLKEM*PrivateKey / MLKEM*PublicKey."""

    def __init__(self, name: str, private_cls: Any, public_cls: Any, public_key_bytes: int) -> None:
        super().__init__(name, NAME)
        self._private_cls = private_cls
        self._public_cls = public_cls
        self._pk_bytes = public_key_bytes
        self._private_types = (private_cls,)

    def _keypair(self, sk: Any) -> KeyPair:
        pk = sk.public_key()
        return KeyPair(PublicKey(self.name, pk.public_bytes_raw(), pk), sk)

    def keygen(self) -> KeyPair:
        return self._keypair(self._private_cls.generate())

    def keygen_from_seed(self, seed_64: bytes) -> KeyPair:
        """Deterministic key pair from the FIPS 203 seed ``d || z`` (64 B) -- for tests and interop."""
        return self._keypair(self._private_cls.from_seed_bytes(seed_64))

    def load_public(self, raw: Buffer) -> PublicKey:
        if len(raw) != self._pk_bytes:
            raise InvalidKey(f"{self.name}: public key must be {self._pk_bytes} bytes, got {len(raw)}")
        try:
            return PublicKey(self.name, bytes(raw), self._public_cls.from_public_bytes(raw))
        except ValueError as exc:  # coefficients out of range (FIPS 203 modulus check)
            raise InvalidKey(f"{self.name}: malformed public key ({exc})") from None

    def encaps(self, public: PublicKey) -> tuple[bytes, bytes]:
        ss, ct = public.native.encapsulate()
        return ct, ss

    def decaps(self, keypair: KeyPair, ciphertext: Buffer) -> bytes:
        try:
            return keypair.native.decapsulate(ciphertext)
        except ValueError:  # wrong length only: a well-formed ciphertext never fails (implicit rejection)
            raise InvalidCiphertext(f"{self.name}: malformed ciphertext ({len(ciphertext)} bytes)") from None


def _dhkem_secret(label: bytes, dh: bytes, enc: Buffer, pk_r: bytes) -> bytes:
    # ``label`` is bytes, so ``label + enc`` is bytes for any bytes-like ``enc`` (a view from ``decaps``).
    return HKDF(hashes.SHA256(), 32, None, label + enc + pk_r).derive(dh)


class X25519Kem(_Pkcs8Keys, Kem):
    """X25519 as a KEM (module docstring: DHKEM construction)."""

    _private_types = (x25519.X25519PrivateKey,)

    def __init__(self) -> None:
        super().__init__("X25519", NAME)
        self._label = b"pq-iomt-twin/dhkem/v1/X25519/"

    def _keypair(self, sk: Any) -> KeyPair:
        pk = sk.public_key()
        return KeyPair(PublicKey(self.name, pk.public_bytes_raw(), pk), sk)

    def keygen(self) -> KeyPair:
        return self._keypair(x25519.X25519PrivateKey.generate())

    def load_public(self, raw: Buffer) -> PublicKey:
        try:
            return PublicKey(self.name, bytes(raw), x25519.X25519PublicKey.from_public_bytes(as_bytes(raw)))
        except ValueError:
            raise InvalidKey(f"{self.name}: public key must be 32 bytes, got {len(raw)}") from None

    def encaps(self, public: PublicKey) -> tuple[bytes, bytes]:
        eph = x25519.X25519PrivateKey.generate()
        enc = eph.public_key().public_bytes_raw()
        try:
            dh = eph.exchange(public.native)
        except ValueError:  # all-zero output: a low-order public key
            raise InvalidKey(f"{self.name}: public key is a low-order point") from None
        return enc, _dhkem_secret(self._label, dh, enc, public.raw)

    def decaps(self, keypair: KeyPair, ciphertext: Buffer) -> bytes:
        try:
            dh = keypair.native.exchange(x25519.X25519PublicKey.from_public_bytes(as_bytes(ciphertext)))
        except ValueError:
            raise InvalidCiphertext(f"{self.name}: ciphertext is not a usable X25519 public key") from None
        return _dhkem_secret(self._label, dh, ciphertext, keypair.public.raw)


_P256 = ec.SECP256R1()
_POINT = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _load_p256_point(raw: Buffer) -> ec.EllipticCurvePublicKey:
    # from_encoded_point also takes compressed points; the wire format is uncompressed only.
    if len(raw) != 65 or raw[0] != 4:
        raise ValueError("not an uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(_P256, as_bytes(raw))


class _P256Keys(_Pkcs8Keys):
    _private_types = (ec.EllipticCurvePrivateKey,)

    def _accepts(self, sk: Any) -> bool:
        return isinstance(sk, ec.EllipticCurvePrivateKey) and isinstance(sk.curve, ec.SECP256R1)

    def _keypair(self, sk: Any) -> KeyPair:
        pk = sk.public_key()
        return KeyPair(PublicKey(self.name, pk.public_bytes(*_POINT), pk), sk)


class EcdhP256Kem(_P256Keys, Kem):
    """ECDH on P-256 as a KEM (module docstring: DHKEM construction)."""

    def __init__(self) -> None:
        super().__init__("ECDH-P256", NAME)
        self._label = b"pq-iomt-twin/dhkem/v1/ECDH-P256/"
        self._ecdh = ec.ECDH()

    def keygen(self) -> KeyPair:
        return self._keypair(ec.generate_private_key(_P256))

    def load_public(self, raw: Buffer) -> PublicKey:
        try:
            return PublicKey(self.name, bytes(raw), _load_p256_point(raw))
        except ValueError:
            raise InvalidKey(f"{self.name}: not an uncompressed P-256 point ({len(raw)} bytes)") from None

    def encaps(self, public: PublicKey) -> tuple[bytes, bytes]:
        eph = ec.generate_private_key(_P256)
        enc = eph.public_key().public_bytes(*_POINT)
        dh = eph.exchange(self._ecdh, public.native)
        return enc, _dhkem_secret(self._label, dh, enc, public.raw)

    def decaps(self, keypair: KeyPair, ciphertext: Buffer) -> bytes:
        try:
            peer = _load_p256_point(ciphertext)
        except ValueError:
            raise InvalidCiphertext(f"{self.name}: ciphertext is not a P-256 point") from None
        dh = keypair.native.exchange(self._ecdh, peer)
        return _dhkem_secret(self._label, dh, ciphertext, keypair.public.raw)


# ---------------------------------------------------------------------------------------- signatures


class MlDsa(_Pkcs8Keys, Signer):
    """ML-DSA (FIPS 204), pure mode, hedged signing, with the caller's context string (empty by default)."""

    def __init__(self, name: str, private_cls: Any, public_cls: Any, public_key_bytes: int) -> None:
        super().__init__(name, NAME)
        self._private_cls = private_cls
        self._public_cls = public_cls
        self._pk_bytes = public_key_bytes
        self._private_types = (private_cls,)

    def _keypair(self, sk: Any) -> KeyPair:
        pk = sk.public_key()
        return KeyPair(PublicKey(self.name, pk.public_bytes_raw(), pk), sk)

    def keygen(self) -> KeyPair:
        return self._keypair(self._private_cls.generate())

    def keygen_from_seed(self, seed_32: bytes) -> KeyPair:
        """Deterministic key pair from the FIPS 204 seed xi (32 B) -- for tests and interop."""
        return self._keypair(self._private_cls.from_seed_bytes(seed_32))

    def load_public(self, raw: Buffer) -> PublicKey:
        if len(raw) != self._pk_bytes:
            raise InvalidKey(f"{self.name}: public key must be {self._pk_bytes} bytes, got {len(raw)}")
        try:
            return PublicKey(self.name, bytes(raw), self._public_cls.from_public_bytes(raw))
        except ValueError as exc:
            raise InvalidKey(f"{self.name}: malformed public key ({exc})") from None

    def sign(self, keypair: KeyPair, message: Buffer, context: bytes = b"") -> bytes:
        return keypair.native.sign(message, context or None)

    def verify(self, public: PublicKey, message: Buffer, signature: Buffer, context: bytes = b"") -> bool:
        try:
            public.native.verify(signature, message, context or None)
        except InvalidSignature:
            return False
        return True


class Ed25519Signer(_Pkcs8Keys, Signer):
    """Ed25519 (RFC 8032, pure)."""

    _private_types = (ed25519.Ed25519PrivateKey,)

    def __init__(self) -> None:
        super().__init__("Ed25519", NAME)

    def _keypair(self, sk: Any) -> KeyPair:
        pk = sk.public_key()
        return KeyPair(PublicKey(self.name, pk.public_bytes_raw(), pk), sk)

    def keygen(self) -> KeyPair:
        return self._keypair(ed25519.Ed25519PrivateKey.generate())

    def load_public(self, raw: Buffer) -> PublicKey:
        try:
            return PublicKey(self.name, bytes(raw), ed25519.Ed25519PublicKey.from_public_bytes(as_bytes(raw)))
        except ValueError:
            raise InvalidKey(f"{self.name}: public key must be 32 bytes, got {len(raw)}") from None

    def sign(self, keypair: KeyPair, message: Buffer, context: bytes = b"") -> bytes:
        return keypair.native.sign(as_bytes(message))

    def verify(self, public: PublicKey, message: Buffer, signature: Buffer, context: bytes = b"") -> bool:
        try:
            public.native.verify(as_bytes(signature), as_bytes(message))
        except InvalidSignature:
            return False
        return True


class EcdsaP256Signer(_P256Keys, Signer):
    """ECDSA on P-256 with SHA-256; signatures are raw ``r || s`` (64 B), not DER."""

    def __init__(self) -> None:
        super().__init__("ECDSA-P256", NAME)
        self._ecdsa = ec.ECDSA(hashes.SHA256())

    def keygen(self) -> KeyPair:
        return self._keypair(ec.generate_private_key(_P256))

    def load_public(self, raw: Buffer) -> PublicKey:
        try:
            return PublicKey(self.name, bytes(raw), _load_p256_point(raw))
        except ValueError:
            raise InvalidKey(f"{self.name}: not an uncompressed P-256 point ({len(raw)} bytes)") from None

    def sign(self, keypair: KeyPair, message: Buffer, context: bytes = b"") -> bytes:
        r, s = decode_dss_signature(keypair.native.sign(as_bytes(message), self._ecdsa))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, public: PublicKey, message: Buffer, signature: Buffer, context: bytes = b"") -> bool:
        if len(signature) != 64:
            return False
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = encode_dss_signature(r, s)
        try:
            public.native.verify(der, as_bytes(message), self._ecdsa)
        except InvalidSignature:
            return False
        return True


class RsaPssSigner(_Pkcs8Keys, Signer):
    """RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt; public keys as DER SubjectPublicKeyInfo."""

    def __init__(self, name: str, modulus_bits: int) -> None:
        super().__init__(name, NAME)
        self.modulus_bits = modulus_bits
        self._pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        self._sha256 = hashes.SHA256()

    def _accepts(self, sk: Any) -> bool:
        return isinstance(sk, rsa.RSAPrivateKey) and sk.key_size == self.modulus_bits

    def _keypair(self, sk: Any) -> KeyPair:
        pk = sk.public_key()
        spki = pk.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return KeyPair(PublicKey(self.name, spki, pk), sk)

    def keygen(self) -> KeyPair:
        return self._keypair(rsa.generate_private_key(public_exponent=65537, key_size=self.modulus_bits))

    def load_public(self, raw: Buffer) -> PublicKey:
        spki = as_bytes(raw)
        try:
            pk = serialization.load_der_public_key(spki)
        except ValueError:
            raise InvalidKey(f"{self.name}: not a DER SubjectPublicKeyInfo") from None
        if not isinstance(pk, rsa.RSAPublicKey) or pk.key_size != self.modulus_bits:
            raise InvalidKey(f"{self.name}: not an RSA-{self.modulus_bits} public key")
        return PublicKey(self.name, spki, pk)

    def sign(self, keypair: KeyPair, message: Buffer, context: bytes = b"") -> bytes:
        return keypair.native.sign(message, self._pss, self._sha256)

    def verify(self, public: PublicKey, message: Buffer, signature: Buffer, context: bytes = b"") -> bool:
        try:
            public.native.verify(signature, message, self._pss, self._sha256)
        except InvalidSignature:
            return False
        return True


# ------------------------------------------------------------------------------------ AEAD and hashes


class OpensslAead(Aead):
    """AES-GCM or ChaCha20-Poly1305 with 12-byte nonces and 16-byte tags."""

    def __init__(self, name: str, cipher_cls: Any, key_bytes: int) -> None:
        super().__init__(name, NAME)
        self._cipher_cls = cipher_cls
        self.key_bytes = key_bytes

    def keygen(self) -> SecretKey:
        return self.load_key(os.urandom(self.key_bytes))

    def load_key(self, raw: Buffer) -> SecretKey:
        if len(raw) != self.key_bytes:
            raise InvalidKey(f"{self.name}: key must be {self.key_bytes} bytes, got {len(raw)}")
        return SecretKey(self.name, bytes(raw), self._cipher_cls(raw))

    def encrypt(self, key: SecretKey, nonce: Buffer, plaintext: Buffer, aad: Buffer = b"") -> bytes:
        if len(nonce) != 12:  # AESGCM would accept other lengths; the wire format has 12
            raise ValueError(f"{self.name}: nonce must be 12 bytes, got {len(nonce)}")
        return key.native.encrypt(nonce, plaintext, aad)

    def decrypt(self, key: SecretKey, nonce: Buffer, record: Buffer, aad: Buffer = b"") -> bytes:
        if len(nonce) != 12:
            raise ValueError(f"{self.name}: nonce must be 12 bytes, got {len(nonce)}")
        try:
            return key.native.decrypt(nonce, record, aad)
        except InvalidTag:
            raise AuthenticationFailed(f"{self.name}: authentication failed") from None


class OpensslHash(Hash):
    """A hash through cryptography's Hash context (the same OpenSSL as every other op here)."""

    def __init__(self, name: str, algorithm: hashes.HashAlgorithm) -> None:
        super().__init__(name, NAME)
        self._algorithm = algorithm
        self.digest_bytes = algorithm.digest_size

    def hash(self, data: Buffer) -> bytes:
        h = hashes.Hash(self._algorithm)
        h.update(data)
        return h.finalize()


# ------------------------------------------------------------------------------------------ provider

_KINDS: dict[str, Kind] = {
    "ML-KEM-768": "kem",
    "ML-KEM-1024": "kem",
    "X25519": "kem",
    "ECDH-P256": "kem",
    HYBRID_NAME: "kem",
    "ML-DSA-44": "signature",
    "ML-DSA-65": "signature",
    "ML-DSA-87": "signature",
    "ECDSA-P256": "signature",
    "Ed25519": "signature",
    "RSA-2048": "signature",
    "RSA-3072": "signature",
    "AES-128-GCM": "aead",
    "AES-256-GCM": "aead",
    "ChaCha20-Poly1305": "aead",
    "SHA-256": "hash",
    "SHA-512": "hash",
    "SHA3-256": "hash",
    "SHAKE-256": "hash",
}


class OpensslProvider(Provider):
    """pyca/cryptography; always available (it is a core dependency)."""

    name = NAME
    available = True
    reason = ""

    def supported(self) -> dict[str, Kind]:
        return dict(_KINDS)

    def algorithms(self, kind: Kind | None = None) -> set[str]:
        return {n for n, k in _KINDS.items() if kind is None or k == kind}

    def _build(self, name: str, kind: Kind) -> AlgorithmObject:
        return _BUILDERS[name](self)


# How each algorithm is built (the provider is passed for composites such as the hybrid KEM).
_BUILDERS: dict[str, Callable[[OpensslProvider], AlgorithmObject]] = {
    "ML-KEM-768": lambda p: MlKem("ML-KEM-768", mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1184),
    "ML-KEM-1024": lambda p: MlKem("ML-KEM-1024", mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey, 1568),
    "X25519": lambda p: X25519Kem(),
    "ECDH-P256": lambda p: EcdhP256Kem(),
    "X25519+ML-KEM-768": lambda p: HybridKem(p.kem("X25519"), p.kem("ML-KEM-768"), NAME),
    "ML-DSA-44": lambda p: MlDsa("ML-DSA-44", mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey, 1312),
    "ML-DSA-65": lambda p: MlDsa("ML-DSA-65", mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey, 1952),
    "ML-DSA-87": lambda p: MlDsa("ML-DSA-87", mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey, 2592),
    "ECDSA-P256": lambda p: EcdsaP256Signer(),
    "Ed25519": lambda p: Ed25519Signer(),
    "RSA-2048": lambda p: RsaPssSigner("RSA-2048", 2048),
    "RSA-3072": lambda p: RsaPssSigner("RSA-3072", 3072),
    "AES-128-GCM": lambda p: OpensslAead("AES-128-GCM", AESGCM, 16),
    "AES-256-GCM": lambda p: OpensslAead("AES-256-GCM", AESGCM, 32),
    "ChaCha20-Poly1305": lambda p: OpensslAead("ChaCha20-Poly1305", ChaCha20Poly1305, 32),
    "SHA-256": lambda p: OpensslHash("SHA-256", hashes.SHA256()),
    "SHA-512": lambda p: OpensslHash("SHA-512", hashes.SHA512()),
    "SHA3-256": lambda p: OpensslHash("SHA3-256", hashes.SHA3_256()),
    "SHAKE-256": lambda p: OpensslHash("SHAKE-256", hashes.SHAKE256(digest_size=64)),
}
