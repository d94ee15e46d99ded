"""The provider-neutral crypto interface of the hardware twin: KEM, signature, AEAD and hash.

Every operation is a method on a small per-algorithm object (`Kem`, `Signer`, `Aead`, `Hash`) whose
method names are the op names of `sim.catalogue.OPS`, so the simulator's ``<algorithm>.<op>`` costs map
one to one onto calls here.

Keys travel as handles, not bytes: `PublicKey`, `KeyPair` and `SecretKey` keep the library's own key
object (``native``) next to the wire encoding (``raw``). An operation is then one Python call on top of
the library call -- no key is re-parsed per call, which keeps the interface's overhead near zero
(see bench/crypto_overhead.py). Everything an operation returns is plain ``bytes``: ``PublicKey.raw``,
ciphertexts, signatures, AEAD records; every input may be any bytes-like ``Buffer`` (bytes, bytearray,
memoryview — the twin hands over views of its record buffers without copying), and a provider whose
library wants ``bytes`` converts with ``as_bytes`` (tests/test_bytes_like.py pins this for every
algorithm). Bytes received from a peer become a handle through
``load_public`` / ``load_key``, once per key, as a real device would do.

Errors are `ValueError` subclasses so callers that only know ``ValueError`` still catch them:
`UnsupportedAlgorithm` (no provider here), `InvalidKey`, `InvalidCiphertext` (malformed KEM
ciphertext; a well-formed but tampered ML-KEM ciphertext does *not* raise -- implicit rejection gives a
different secret) and `AuthenticationFailed` (AEAD tag mismatch). Signature verification returns a bool.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Kind = Literal["kem", "signature", "aead", "hash"]
Buffer = bytes | bytearray | memoryview  # what every operation accepts as input; outputs are bytes


def as_bytes(data: Buffer) -> bytes:
    """``data`` as ``bytes`` (no copy when it already is), for library calls that accept nothing else."""
    return data if isinstance(data, bytes) else bytes(data)


class UnsupportedAlgorithm(ValueError):
    """No available provider implements the algorithm; the message names it and who would."""


class InvalidKey(ValueError):
    """Key bytes of the wrong length or encoding for the algorithm."""


class InvalidCiphertext(ValueError):
    """A KEM ciphertext that cannot be decapsulated (wrong length, not a curve point, ...)."""


class AuthenticationFailed(ValueError):
    """An AEAD record whose tag does not verify: wrong key, nonce, AAD, or tampered bytes."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key: its wire bytes and the provider's parsed form of them."""

    algorithm: str
    raw: bytes
    native: Any = field(repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.algorithm}, {len(self.raw)} B, {self.raw[:8].hex()}...)"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A private key (provider object) and its public half. The private key leaves the process only
    through an explicit ``export_private`` (provisioning keys to Kubernetes pods)."""

    public: PublicKey
    native: Any = field(repr=False, compare=False)

    @property
    def algorithm(self) -> str:
        return self.public.algorithm

    @property
    def public_bytes(self) -> bytes:
        """The public key's wire encoding (what a peer receives)."""
        return self.public.raw


@dataclass(frozen=True, slots=True)
class SecretKey:
    """A symmetric AEAD key: its bytes and the provider's keyed cipher object."""

    algorithm: str
    raw: bytes = field(repr=False)
    native: Any = field(repr=False, compare=False)


class _Algorithm(ABC):
    """What every algorithm object carries: its catalogue name, kind and the provider behind it."""

    kind: ClassVar[Kind]

    def __init__(self, name: str, provider: str) -> None:
        self.name = name
        self.provider = provider

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} via {self.provider}>"


class Kem(_Algorithm):
    """Key encapsulation. ``encaps`` returns ``(ciphertext, shared_secret)``, both bytes."""

    kind: ClassVar[Kind] = "kem"

    @abstractmethod
    def keygen(self) -> KeyPair:
        """A fresh key pair."""

    @abstractmethod
    def load_public(self, raw: Buffer) -> PublicKey:
        """Parse a peer's public key from its wire bytes; `InvalidKey` if malformed."""

    @abstractmethod
    def encaps(self, public: PublicKey) -> tuple[bytes, bytes]:
        """Encapsulate a fresh secret to ``public``: ``(ciphertext, shared_secret)``."""

    @abstractmethod
    def decaps(self, keypair: KeyPair, ciphertext: Buffer) -> bytes:
        """The shared secret in ``ciphertext``; `InvalidCiphertext` if it is malformed."""

    def export_private(self, keypair: KeyPair) -> bytes:
        """The private key as bytes, to provision it to another process (a Kubernetes pod's Secret).

        The encoding is the provider's (openssl: unencrypted PKCS#8 DER); `import_private` reads it back.
        Treat the bytes as the secret they are. `UnsupportedAlgorithm` where a provider cannot export.
        """
        raise UnsupportedAlgorithm(f"{self.name}: provider {self.provider} cannot export private keys")

    def import_private(self, raw: Buffer) -> KeyPair:
        """The key pair whose private key `export_private` encoded; `InvalidKey` if ``raw`` is not one."""
        raise UnsupportedAlgorithm(f"{self.name}: provider {self.provider} cannot import private keys")


class Signer(_Algorithm):
    """Digital signature over a whole message (no prehash, empty context where the scheme has one)."""

    kind: ClassVar[Kind] = "signature"

    @abstractmethod
    def keygen(self) -> KeyPair:
        """A fresh key pair."""

    @abstractmethod
    def load_public(self, raw: Buffer) -> PublicKey:
        """Parse a signer's public key from its wire bytes; `InvalidKey` if malformed."""

    @abstractmethod
    def sign(self, keypair: KeyPair, message: Buffer, context: bytes = b"") -> bytes:
        """The signature of ``message`` in the catalogue's wire encoding, under ``context`` (FIPS 204's context
        string, binding a signature to the role it was made for) where the scheme has contexts (ML-DSA);
        schemes without them ignore it."""

    @abstractmethod
    def verify(self, public: PublicKey, message: Buffer, signature: Buffer, context: bytes = b"") -> bool:
        """True iff ``signature`` is valid for ``message`` (under ``context``); never raises for a bad signature."""

    def export_private(self, keypair: KeyPair) -> bytes:
        """The private key as bytes (see `Kem.export_private`)."""
        raise UnsupportedAlgorithm(f"{self.name}: provider {self.provider} cannot export private keys")

    def import_private(self, raw: Buffer) -> KeyPair:
        """The key pair whose private key `export_private` encoded; `InvalidKey` if ``raw`` is not one."""
        raise UnsupportedAlgorithm(f"{self.name}: provider {self.provider} cannot import private keys")


class Aead(_Algorithm):
    """Authenticated encryption with a 12-byte nonce; records are ``ciphertext || tag``."""

    kind: ClassVar[Kind] = "aead"
    key_bytes: int
    nonce_bytes: int = 12
    tag_bytes: int = 16

    @abstractmethod
    def keygen(self) -> SecretKey:
        """A fresh random key."""

    @abstractmethod
    def load_key(self, raw: Buffer) -> SecretKey:
        """A key from its bytes (e.g. a KEM shared secret); `InvalidKey` if the length is wrong."""

    @abstractmethod
    def encrypt(self, key: SecretKey, nonce: Buffer, plaintext: Buffer, aad: Buffer = b"") -> bytes:
        """``ciphertext || tag`` (``len(plaintext) + tag_bytes`` bytes)."""

    @abstractmethod
    def decrypt(self, key: SecretKey, nonce: Buffer, record: Buffer, aad: Buffer = b"") -> bytes:
        """The plaintext of ``record``; `AuthenticationFailed` if anything was altered."""


class Hash(_Algorithm):
    """A hash function with a fixed output length (SHAKE-256 is used with 64-byte output)."""

    kind: ClassVar[Kind] = "hash"
    digest_bytes: int

    @abstractmethod
    def hash(self, data: Buffer) -> bytes:
        """The ``digest_bytes``-byte digest of ``data``."""


AlgorithmObject = Kem | Signer | Aead | Hash


class Provider(ABC):
    """A source of algorithm implementations (a library binding).

    ``supported()`` is what the provider implements *when available* -- known even when it is not, so
    the registry can say who would provide a missing algorithm. ``algorithms()`` is what it implements
    here and now (empty when unavailable). Algorithm objects are built once and cached.
    """

    name: str
    available: bool
    reason: str  # why it is unavailable; "" when available

    def __init__(self) -> None:
        self._cache: dict[str, AlgorithmObject] = {}

    @abstractmethod
    def supported(self) -> dict[str, Kind]:
        """Algorithm name -> kind, for everything this provider implements when available."""

    @abstractmethod
    def algorithms(self, kind: Kind | None = None) -> set[str]:
        """Names of the algorithms (optionally of one kind) implemented here and now."""

    @abstractmethod
    def _build(self, name: str, kind: Kind) -> AlgorithmObject:
        """Construct the algorithm object; called once per name, after the checks in `_get`."""

    def kem(self, name: str) -> Kem:
        obj = self._get(name, "kem")
        assert isinstance(obj, Kem)
        return obj

    def signature(self, name: str) -> Signer:
        obj = self._get(name, "signature")
        assert isinstance(obj, Signer)
        return obj

    def aead(self, name: str) -> Aead:
        obj = self._get(name, "aead")
        assert isinstance(obj, Aead)
        return obj

    def hash(self, name: str) -> Hash:
        obj = self._get(name, "hash")
        assert isinstance(obj, Hash)
        return obj

    def get(self, name: str, kind: Kind | None = None) -> AlgorithmObject:
        """The algorithm object for ``name`` (of ``kind``, if given)."""
        return self._get(name, kind)

    def _get(self, name: str, kind: Kind | None) -> AlgorithmObject:
        obj = self._cache.get(name)
        if obj is None:
            if not self.available:
                raise UnsupportedAlgorithm(f"{name}: provider {self.name} is unavailable: {self.reason}")
            have = self.supported().get(name)
            if have is None or name not in self.algorithms():
                raise UnsupportedAlgorithm(f"{name}: not implemented by provider {self.name}")
            obj = self._cache[name] = self._build(name, have)
        if kind is not None and obj.kind != kind:
            raise UnsupportedAlgorithm(f"{name}: is a {obj.kind}, not a {kind}")
        return obj

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        return f"<{type(self).__name__} {self.name} ({state})>"
