"""The ``liboqs`` provider: liboqs-python (optional extra ``[liboqs]``) over the liboqs C library.

Implements every KEM and signature the loaded liboqs build enables. Catalogue algorithms appear under
their catalogue names (table `LIBOQS_NAMES`); every other enabled mechanism appears under its liboqs
name (e.g. ``HQC-128``, ``MAYO-2``), so scenarios can use it, but the simulator has no wire sizes for it.

Probing, not importing: ``import oqs`` without the C library waits 5 s, tries to ``git clone`` and build
liboqs, then raises ``SystemExit`` -- so the provider first looks for the shared library itself
(``$OQS_INSTALL_PATH/lib*/liboqs.so*``, ``~/_oqs/lib*/`` -- where liboqs-python looks -- and
``ctypes.util.find_library("oqs")``), checks it loads, and only then imports ``oqs``, catching
``SystemExit`` as well as ``ImportError``. When any step fails the provider is unavailable and
``reason`` says which step and what to do.

Names differ across liboqs versions: SLH-DSA is ``SLH_DSA_PURE_SHA2_128F`` from liboqs 0.14, and was
``SPHINCS+-SHA2-128f-simple`` before. The first candidate the build enables wins. The SPHINCS+ round-3.1
"simple" sets have exactly the FIPS 205 sizes but are not byte-compatible with FIPS 205 (different
domain separation); interoperability across implementations needs the SLH_DSA name. Falcon maps to the
unpadded (variable-length, at most ``signature_max_bytes``) ``Falcon-512`` / ``Falcon-1024``.

Exported private keys (``export_private``, to provision Kubernetes pods) are ``len(pk) (4 bytes,
big-endian) || pk || sk`` with liboqs' own secret-key encoding: liboqs cannot derive every scheme's public
key from its secret key, so it travels along.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import io
import logging
import os
import struct
import sys
from typing import Any

from hw.crypto.base import (
    AlgorithmObject,
    Buffer,
    InvalidCiphertext,
    InvalidKey,
    Kem,
    KeyPair,
    Kind,
    Provider,
    PublicKey,
    Signer,
    as_bytes,
)

NAME = "liboqs"

# catalogue name -> (kind, liboqs names to try, in order of preference)
LIBOQS_NAMES: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "ML-KEM-512": ("kem", ("ML-KEM-512",)),
    "ML-KEM-768": ("kem", ("ML-KEM-768",)),
    "ML-KEM-1024": ("kem", ("ML-KEM-1024",)),
    "ML-DSA-44": ("signature", ("ML-DSA-44",)),
    "ML-DSA-65": ("signature", ("ML-DSA-65",)),
    "ML-DSA-87": ("signature", ("ML-DSA-87",)),
    "Falcon-512": ("signature", ("Falcon-512",)),
    "Falcon-1024": ("signature", ("Falcon-1024",)),
    "SLH-DSA-SHA2-128f": ("signature", ("SLH_DSA_PURE_SHA2_128F", "SPHINCS+-SHA2-128f-simple")),
    "SLH-DSA-SHA2-128s": ("signature", ("SLH_DSA_PURE_SHA2_128S", "SPHINCS+-SHA2-128s-simple")),
}

_HINT = "build it from source, see README"


def find_library() -> str | None:
    """Path (or soname) of the liboqs shared library, or None; never imports ``oqs``."""
    suffix = ".dylib" if sys.platform == "darwin" else ".so*"
    roots = [os.environ.get("OQS_INSTALL_PATH", ""), os.path.join(os.path.expanduser("~"), "_oqs")]
    for root in filter(None, roots):
        for sub in ("lib", "lib64"):
            hits = sorted(glob.glob(os.path.join(root, sub, "liboqs" + suffix)))
            if hits:
                return hits[0]
    return ctypes.util.find_library("oqs")


def load_oqs(library: str | None = None) -> tuple[Any, str]:
    """``(oqs module, "")`` if liboqs and liboqs-python both work here, else ``(None, reason)``."""
    library = library or find_library()
    if library is None:
        return None, f"liboqs shared library not found; {_HINT}"
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        return None, f"liboqs shared library at {library} does not load ({exc}); {_HINT}"
    try:
        # Deliberately late: importing oqs without liboqs blocks for seconds, then exits. liboqs-python logs to
        # stdout at import (a machine-readable output such as `pqtwin compare --json` must stay clean): its
        # logger goes to stderr, warnings only.
        with contextlib.redirect_stdout(io.StringIO()):
            import oqs  # type: ignore[import-not-found,unused-ignore]
        for name in ("oqs", "oqs.oqs"):
            log = logging.getLogger(name)
            log.setLevel(logging.WARNING)
            for handler in log.handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(sys.stderr)
    except ImportError:
        return None, "liboqs-python is not installed (pip install -e '.[liboqs]')"
    except SystemExit:  # liboqs-python did not find the library we found and gave up
        return None, f"liboqs-python could not load liboqs (found at {library}); set OQS_INSTALL_PATH"
    except Exception as exc:  # a broken install must not take the other providers down
        return None, f"importing liboqs-python failed: {type(exc).__name__}: {exc}"
    return oqs, ""


def _export(keypair: KeyPair) -> bytes:
    obj = keypair.native.obj
    sk = obj.export_secret_key() if hasattr(obj, "export_secret_key") else bytes(obj.secret_key)
    return struct.pack("!I", len(keypair.public.raw)) + keypair.public.raw + bytes(sk)


def _split(name: str, raw: Buffer, pk_bytes: int, sk_bytes: int | None) -> tuple[bytes, bytes]:
    data = as_bytes(raw)
    if len(data) < 4 or struct.unpack_from("!I", data)[0] != pk_bytes:
        raise InvalidKey(f"{name}: not an exported {name} private key")
    pk, sk = data[4 : 4 + pk_bytes], data[4 + pk_bytes :]
    if len(pk) != pk_bytes or not sk or (sk_bytes is not None and len(sk) != sk_bytes):
        raise InvalidKey(f"{name}: exported private key has the wrong length ({len(data)} bytes)")
    return pk, sk


def _out(result: Any, what: str) -> Any:
    # Older liboqs-python returns 0 instead of raising when the C call fails.
    if isinstance(result, int):
        raise RuntimeError(f"liboqs {what} failed")
    return result


class _Owned:
    """Owns an oqs object that holds a secret key; releases it once, when the KeyPair goes away.

    liboqs-python frees native memory (and cleanses the secret key) only in ``free()``, which must not
    run twice; it has no finaliser, so without this every key pair would leak its OQS_KEM/OQS_SIG.
    """

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __del__(self) -> None:
        try:  # noqa: SIM105 - a plain try is cheaper than contextlib.suppress on this per-key-pair path
            self.obj.free()
        except Exception:  # noqa: S110 - at interpreter exit the library may already be gone
            pass


class OqsKem(Kem):
    """A liboqs KEM. ``native`` of a KeyPair owns the oqs.KeyEncapsulation holding the secret key."""

    def __init__(self, name: str, oqs_name: str, oqs: Any) -> None:
        super().__init__(name, NAME)
        self.oqs_name = oqs_name
        self._cls = oqs.KeyEncapsulation
        # Encapsulation uses no per-key state, so one object serves every public key.
        self._encapsulator = oqs.KeyEncapsulation(oqs_name)
        details = self._encapsulator.details
        self.public_key_bytes: int = details["length_public_key"]
        self.ciphertext_bytes: int = details["length_ciphertext"]
        self.shared_secret_bytes: int = details["length_shared_secret"]
        self.secret_key_bytes: int | None = details.get("length_secret_key")

    def keygen(self) -> KeyPair:
        kem = _Owned(self._cls(self.oqs_name))
        pk = _out(kem.obj.generate_keypair(), "keypair")
        return KeyPair(PublicKey(self.name, pk, pk), kem)

    def export_private(self, keypair: KeyPair) -> bytes:
        return _export(keypair)

    def import_private(self, raw: Buffer) -> KeyPair:
        pk, sk = _split(self.name, raw, self.public_key_bytes, self.secret_key_bytes)
        return KeyPair(PublicKey(self.name, pk, pk), _Owned(self._cls(self.oqs_name, secret_key=sk)))

    def load_public(self, raw: Buffer) -> PublicKey:
        if len(raw) != self.public_key_bytes:
            raise InvalidKey(f"{self.name}: public key must be {self.public_key_bytes} bytes, got {len(raw)}")
        pk = bytes(raw)
        return PublicKey(self.name, pk, pk)

    def encaps(self, public: PublicKey) -> tuple[bytes, bytes]:
        return _out(self._encapsulator.encap_secret(public.native), "encaps")

    def decaps(self, keypair: KeyPair, ciphertext: Buffer) -> bytes:
        # liboqs-python pads a short ciphertext with zeros, so the length is checked here.
        if len(ciphertext) != self.ciphertext_bytes:
            raise InvalidCiphertext(
                f"{self.name}: ciphertext must be {self.ciphertext_bytes} bytes, got {len(ciphertext)}"
            )
        try:
            return _out(keypair.native.obj.decap_secret(as_bytes(ciphertext)), "decaps")
        except RuntimeError:  # schemes without implicit rejection report failure
            raise InvalidCiphertext(f"{self.name}: decapsulation failed") from None


class OqsSigner(Signer):
    """A liboqs signature. ``native`` of a KeyPair owns the oqs.Signature holding the secret key."""

    def __init__(self, name: str, oqs_name: str, oqs: Any) -> None:
        super().__init__(name, NAME)
        self.oqs_name = oqs_name
        self._cls = oqs.Signature
        self._verifier = oqs.Signature(oqs_name)  # verification uses no per-key state
        details = self._verifier.details
        self.public_key_bytes: int = details["length_public_key"]
        self.signature_max_bytes: int = details["length_signature"]
        self.secret_key_bytes: int | None = details.get("length_secret_key")
        self.contexts = bool(details.get("sig_with_ctx_support", False))  # ML-DSA, SLH-DSA: context strings

    def keygen(self) -> KeyPair:
        sig = _Owned(self._cls(self.oqs_name))
        pk = _out(sig.obj.generate_keypair(), "keypair")
        return KeyPair(PublicKey(self.name, pk, pk), sig)

    def export_private(self, keypair: KeyPair) -> bytes:
        return _export(keypair)

    def import_private(self, raw: Buffer) -> KeyPair:
        pk, sk = _split(self.name, raw, self.public_key_bytes, self.secret_key_bytes)
        return KeyPair(PublicKey(self.name, pk, pk), _Owned(self._cls(self.oqs_name, secret_key=sk)))

    def load_public(self, raw: Buffer) -> PublicKey:
        if len(raw) != self.public_key_bytes:
            raise InvalidKey(f"{self.name}: public key must be {self.public_key_bytes} bytes, got {len(raw)}")
        pk = bytes(raw)
        return PublicKey(self.name, pk, pk)

    def sign(self, keypair: KeyPair, message: Buffer, context: bytes = b"") -> bytes:
        if context and self.contexts:
            return _out(keypair.native.obj.sign_with_ctx_str(as_bytes(message), context), "sign")
        return _out(keypair.native.obj.sign(as_bytes(message)), "sign")

    def verify(self, public: PublicKey, message: Buffer, signature: Buffer, context: bytes = b"") -> bool:
        if not 0 < len(signature) <= self.signature_max_bytes:
            return False
        try:
            if context and self.contexts:
                return bool(self._verifier.verify_with_ctx_str(as_bytes(message), as_bytes(signature), context,
                                                               public.native))  # fmt: skip
            return bool(self._verifier.verify(as_bytes(message), as_bytes(signature), public.native))
        except (ValueError, RuntimeError):  # newer liboqs-python may raise on malformed input
            return False


class LiboqsProvider(Provider):
    """liboqs through liboqs-python, when both are present.

    ``module`` injects an object with liboqs-python's API instead of probing (tests use a stand-in).
    """

    name = NAME

    def __init__(self, module: Any = None) -> None:
        super().__init__()
        oqs, self.reason = (module, "") if module is not None else load_oqs()
        self._oqs: Any = oqs
        self.available = oqs is not None
        self._names: dict[str, tuple[Kind, str]] = {}  # our name -> (kind, liboqs name)
        if oqs is not None:
            self._names = _resolve(oqs.get_enabled_kem_mechanisms(), oqs.get_enabled_sig_mechanisms())

    @property
    def version(self) -> str:
        """liboqs version string ("" when unavailable)."""
        return str(self._oqs.oqs_version()) if self._oqs is not None else ""

    def liboqs_name(self, name: str) -> str:
        """The liboqs mechanism name behind one of our names."""
        return self._names[name][1]

    def supported(self) -> dict[str, Kind]:
        known = {name: kind for name, (kind, _) in LIBOQS_NAMES.items()}
        known.update({name: kind for name, (kind, _) in self._names.items()})
        return known

    def algorithms(self, kind: Kind | None = None) -> set[str]:
        return {n for n, (k, _) in self._names.items() if kind is None or k == kind}

    def _build(self, name: str, kind: Kind) -> AlgorithmObject:
        assert self._oqs is not None
        oqs_name = self._names[name][1]
        return OqsKem(name, oqs_name, self._oqs) if kind == "kem" else OqsSigner(name, oqs_name, self._oqs)


def _resolve(kems: Any, sigs: Any) -> dict[str, tuple[Kind, str]]:
    """Our name -> (kind, liboqs name) for every enabled mechanism (catalogue names where mapped)."""
    enabled: dict[Kind, list[str]] = {"kem": list(kems), "signature": list(sigs)}
    names: dict[str, tuple[Kind, str]] = {}
    mapped: set[str] = set()
    for ours, (kind, candidates) in LIBOQS_NAMES.items():
        hit = next((c for c in candidates if c in enabled[kind]), None)
        if hit is not None:
            names[ours] = (kind, hit)
            mapped.add(hit)  # an unchosen candidate (e.g. SPHINCS+ next to SLH-DSA) keeps its own name
    for kind, mechanisms in enabled.items():
        for mech in mechanisms:
            if mech not in mapped and mech not in names and not _signs_a_digest(mech):
                names[mech] = (kind, mech)
    return names


def _signs_a_digest(mechanism: str) -> bool:
    """External-mu ML-DSA (``ML-DSA-65-extmu``) signs a precomputed 64-byte mu, not a message: offering it
    as a message signer would be wrong (liboqs refuses any other input), so it is not offered at all."""
    return mechanism.lower().endswith("-extmu")
