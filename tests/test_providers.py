"""Crypto providers (hw.crypto): round trips, tamper rejection, catalogue wire sizes, registry answers.

Parametrised over every algorithm every *available* provider implements here; a provider that is not
available (liboqs on our machines) contributes one test that is skipped with the provider's reason.
The liboqs adapter code itself is also exercised against a stand-in ``oqs`` module with liboqs-python's
API, backed by kyber-py and dilithium-py (`FakeOqs`) -- that tests our adapter, not liboqs.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import sys
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from dilithium_py.ml_dsa import ML_DSA_65
from kyber_py.ml_kem import ML_KEM_512, ML_KEM_768

from hw.crypto import (
    AuthenticationFailed,
    InvalidCiphertext,
    InvalidKey,
    Kem,
    KeyPair,
    Provider,
    Registry,
    Signer,
    UnsupportedAlgorithm,
    registry,
)
from hw.crypto import liboqs as liboqs_mod
from hw.crypto.hybrid import combine
from hw.crypto.liboqs import LiboqsProvider
from hw.crypto.openssl import OpensslProvider
from sim.catalogue import CATALOGUE, OPS

REGISTRY = registry.default()
MESSAGE = b"model update, round 7, device 42"


def _cases(kind: str) -> list[Any]:
    """(provider, algorithm) for every algorithm of `kind` each available provider implements here."""
    out = []
    for p in REGISTRY.providers():
        if p.available:
            out += [pytest.param(p.name, n, id=f"{p.name}:{n}") for n in sorted(p.algorithms(kind))]
        elif kind in p.supported().values():
            out.append(pytest.param(p.name, None, id=f"{p.name}:unavailable"))
    return out


def _alg(provider: str, name: str | None, kind: str) -> Any:
    p = REGISTRY.provider(provider)
    if name is None:
        pytest.skip(f"{p.name}: {p.reason}")
    return p.get(name, kind)


_KEYS: dict[tuple[str, str], KeyPair] = {}


def _keypair(alg: Kem | Signer) -> KeyPair:
    """One key pair per (provider, algorithm) per test session: RSA key generation is slow."""
    key = (alg.provider, alg.name)
    if key not in _KEYS:
        _KEYS[key] = alg.keygen()
    return _KEYS[key]


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# ---------------------------------------------------------------------------------------------- KEMs


@pytest.mark.parametrize(("provider", "name"), _cases("kem"))
def test_kem_round_trip_and_wire_sizes(provider: str, name: str | None) -> None:
    kem: Kem = _alg(provider, name, "kem")
    kp = _keypair(kem)
    pub = kem.load_public(kp.public_bytes)
    ct, ss = kem.encaps(pub)
    assert kem.decaps(kp, ct) == ss
    ct2, ss2 = kem.encaps(pub)
    assert ct2 != ct and ss2 != ss  # encapsulation is randomised
    assert kem.decaps(kp, ct2) == ss2
    spec = CATALOGUE.get(kem.name)
    if spec is not None:
        assert (len(kp.public_bytes), len(ct), len(ss)) == (
            spec.public_key_bytes,
            spec.ciphertext_bytes,
            spec.shared_secret_bytes,
        )
    else:  # a liboqs mechanism outside the catalogue: sizes as liboqs declares them
        assert (len(kp.public_bytes), len(ct)) == (kem.public_key_bytes, kem.ciphertext_bytes)


@pytest.mark.parametrize(("provider", "name"), _cases("kem"))
def test_kem_tampered_ciphertext_gives_another_secret(provider: str, name: str | None) -> None:
    kem: Kem = _alg(provider, name, "kem")
    kp = _keypair(kem)
    ct, ss = kem.encaps(kp.public)
    # ML-KEM (and the hybrid) must not raise: implicit rejection returns a pseudo-random secret; any
    # 32 bytes are an X25519 u-coordinate. A flipped P-256 coordinate leaves the curve: rejected.
    must_not_raise = kem.name.startswith(("ML-KEM", "X25519"))
    for index in (1, len(ct) // 2, len(ct) - 1):
        try:
            out = kem.decaps(kp, _flip(ct, index))
        except InvalidCiphertext:
            assert not must_not_raise
            continue
        assert out != ss


@pytest.mark.parametrize(("provider", "name"), _cases("kem"))
def test_kem_wrong_key_or_length(provider: str, name: str | None) -> None:
    kem: Kem = _alg(provider, name, "kem")
    kp = _keypair(kem)
    ct, ss = kem.encaps(kp.public)
    assert kem.decaps(kem.keygen(), ct) != ss
    for bad in (ct[:-1], ct + b"\x00", b""):
        with pytest.raises(InvalidCiphertext):
            kem.decaps(kp, bad)
    for bad in (kp.public_bytes[:-1], kp.public_bytes + b"\x00"):
        with pytest.raises(InvalidKey):
            kem.load_public(bad)


def test_mlkem_implicit_rejection_is_deterministic() -> None:
    kem = REGISTRY.find("ML-KEM-768", "kem", prefer="openssl")
    kp = kem.keygen()
    ct, _ = kem.encaps(kp.public)
    bad = _flip(ct, 10)
    assert kem.decaps(kp, bad) == kem.decaps(kp, bad)  # FIPS 203: K' = J(z || c), not random


def test_dhkem_secret_is_the_documented_hkdf() -> None:
    kem = REGISTRY.find("X25519", "kem", prefer="openssl")
    kp = kem.keygen()
    enc, ss = kem.encaps(kp.public)
    dh = kp.native.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    info = b"pq-iomt-twin/dhkem/v1/X25519/" + enc + kp.public_bytes
    assert ss == HKDF(hashes.SHA256(), 32, None, info).derive(dh)

    p256 = REGISTRY.find("ECDH-P256", "kem", prefer="openssl")
    kp = p256.keygen()
    enc, ss = p256.encaps(kp.public)
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc)
    dh = kp.native.exchange(ec.ECDH(), peer)
    info = b"pq-iomt-twin/dhkem/v1/ECDH-P256/" + enc + kp.public_bytes
    assert ss == HKDF(hashes.SHA256(), 32, None, info).derive(dh)


def test_dhkem_rejects_bad_points() -> None:
    x = REGISTRY.find("X25519", "kem", prefer="openssl")
    with pytest.raises(InvalidKey):  # u = 0 is a low-order point: DH output all zero
        x.encaps(x.load_public(bytes(32)))
    p256 = REGISTRY.find("ECDH-P256", "kem", prefer="openssl")
    kp = p256.keygen()
    compressed = kp.public.native.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    with pytest.raises(InvalidKey):  # the wire format is the uncompressed point only
        p256.load_public(compressed)
    assert kp.public_bytes[0] == 4 and len(kp.public_bytes) == 65


def test_hybrid_layout_and_combiner() -> None:
    kem = REGISTRY.find("X25519+ML-KEM-768", "kem", prefer="openssl")
    x = REGISTRY.find("X25519", "kem", prefer="openssl")
    m = REGISTRY.find("ML-KEM-768", "kem", prefer="openssl")
    kp = kem.keygen()
    kx, km = kp.native
    assert kp.public_bytes == kx.public_bytes + km.public_bytes  # X25519 first
    ct, ss = kem.encaps(kem.load_public(kp.public_bytes))
    ct_x, ct_m = ct[:32], ct[32:]
    ss_x, ss_m = x.decaps(kx, ct_x), m.decaps(km, ct_m)
    info = b"pq-iomt-twin/hybrid-kem/v1/X25519+ML-KEM-768" + ct_x + ct_m + kx.public_bytes + km.public_bytes
    assert ss == HKDF(hashes.SHA256(), 32, None, info).derive(ss_x + ss_m)
    assert ss == combine(ss_x, ss_m, ct_x, ct_m, kx.public_bytes, km.public_bytes)
    # Either half altered alone changes the hybrid secret, without an exception.
    assert kem.decaps(kp, _flip(ct, 5)) != ss
    assert kem.decaps(kp, _flip(ct, 32 + 5)) != ss


# ---------------------------------------------------------------------------------------- signatures


@pytest.mark.parametrize(("provider", "name"), _cases("signature"))
def test_signature_round_trip_and_wire_sizes(provider: str, name: str | None) -> None:
    signer: Signer = _alg(provider, name, "signature")
    kp = _keypair(signer)
    sig = signer.sign(kp, MESSAGE)
    pub = signer.load_public(kp.public_bytes)
    assert signer.verify(pub, MESSAGE, sig)
    spec = CATALOGUE.get(signer.name)
    if spec is not None:
        assert len(kp.public_bytes) == spec.public_key_bytes
        if spec.signature_max_bytes > spec.signature_bytes:  # Falcon: variable length
            assert 0 < len(sig) <= spec.signature_max_bytes
        else:
            assert len(sig) == spec.signature_bytes
    else:
        assert len(kp.public_bytes) == signer.public_key_bytes
        assert len(sig) <= signer.signature_max_bytes


@pytest.mark.parametrize(("provider", "name"), _cases("signature"))
def test_signature_rejects_tampering(provider: str, name: str | None) -> None:
    signer: Signer = _alg(provider, name, "signature")
    kp = _keypair(signer)
    sig = signer.sign(kp, MESSAGE)
    for bad in (_flip(sig, 0), _flip(sig, len(sig) // 2, 3), _flip(sig, len(sig) - 1, 7)):
        assert not signer.verify(kp.public, MESSAGE, bad)
    assert not signer.verify(kp.public, _flip(MESSAGE, 0), sig)
    assert not signer.verify(kp.public, MESSAGE + b"!", sig)
    for bad in (sig[:-1], sig + b"\x00", b""):  # malformed: False, never an exception
        assert not signer.verify(kp.public, MESSAGE, bad)
    other = signer.keygen() if not signer.name.startswith("RSA") else None
    if other is not None:  # (RSA keygen is slow; the tamper checks above cover it)
        assert not signer.verify(other.public, MESSAGE, sig)
    with pytest.raises(InvalidKey):
        signer.load_public(kp.public_bytes[:-1])


def test_ecdsa_signature_is_raw_r_s() -> None:
    signer = REGISTRY.find("ECDSA-P256", "signature", prefer="openssl")
    kp = signer.keygen()
    sig = signer.sign(kp, MESSAGE)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    kp.public.native.verify(der, MESSAGE, ec.ECDSA(hashes.SHA256()))  # raises if not r || s


def test_rsa_public_key_is_der_spki() -> None:
    signer = REGISTRY.find("RSA-2048", "signature", prefer="openssl")
    kp = _keypair(signer)
    loaded = serialization.load_der_public_key(kp.public_bytes)
    assert isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size == 2048
    with pytest.raises(InvalidKey):  # an RSA-2048 key is not an RSA-3072 key
        REGISTRY.find("RSA-3072", "signature").load_public(kp.public_bytes)


# ------------------------------------------------------------------------------------ AEAD and hashes


@pytest.mark.parametrize(("provider", "name"), _cases("aead"))
def test_aead_round_trip_sizes_and_tamper(provider: str, name: str | None) -> None:
    aead = _alg(provider, name, "aead")
    spec = CATALOGUE[aead.name]
    assert (aead.key_bytes, aead.nonce_bytes, aead.tag_bytes) == (
        spec.key_bytes,
        spec.nonce_bytes,
        spec.tag_bytes,
    )
    key = aead.keygen()
    assert len(key.raw) == spec.key_bytes
    nonce, aad, pt = bytes(range(12)), b"header", b"x" * 1000
    record = aead.encrypt(key, nonce, pt, aad)
    assert len(record) == len(pt) + spec.tag_bytes
    assert aead.decrypt(aead.load_key(key.raw), nonce, record, aad) == pt
    assert aead.decrypt(key, nonce, aead.encrypt(key, nonce, b""), b"") == b""
    tampered = [
        (key, nonce, _flip(record, 0), aad),  # ciphertext
        (key, nonce, _flip(record, len(record) - 1), aad),  # tag
        (key, nonce, record, aad + b"!"),  # AAD
        (key, _flip(nonce, 0), record, aad),  # nonce
        (aead.keygen(), nonce, record, aad),  # key
        (key, nonce, record[:-1], aad),  # truncated
    ]
    for args in tampered:
        with pytest.raises(AuthenticationFailed):
            aead.decrypt(*args)
    assert issubclass(AuthenticationFailed, ValueError)
    with pytest.raises(InvalidKey):
        aead.load_key(key.raw[:-1])
    with pytest.raises(ValueError, match="nonce"):
        aead.encrypt(key, nonce[:8], pt)


@pytest.mark.parametrize(("provider", "name"), _cases("hash"))
def test_hash_matches_hashlib_and_catalogue(provider: str, name: str | None) -> None:
    h = _alg(provider, name, "hash")
    spec = CATALOGUE[h.name]
    reference = {
        "SHA-256": lambda d: hashlib.sha256(d).digest(),
        "SHA-512": lambda d: hashlib.sha512(d).digest(),
        "SHA3-256": lambda d: hashlib.sha3_256(d).digest(),
        "SHAKE-256": lambda d: hashlib.shake_256(d).digest(64),
    }[h.name]
    for data in (b"", b"abc", bytes(range(256)) * 40):
        out = h.hash(data)
        assert len(out) == h.digest_bytes == spec.digest_bytes
        assert out == reference(data)


# ------------------------------------------------------------------------------------------ registry


def test_every_algorithm_object_has_the_catalogue_ops() -> None:
    for p in REGISTRY.providers():
        for name in sorted(p.algorithms()):
            obj = p.get(name)
            assert (obj.name, obj.provider) == (name, p.name)
            for op in OPS[obj.kind]:
                assert callable(getattr(obj, op)), f"{p.name}:{name} lacks {op}"


def test_every_catalogue_algorithm_is_implemented_or_explained() -> None:
    for name, spec in CATALOGUE.items():
        offers = REGISTRY.which(name)
        assert offers, f"no provider would implement {name}"
        if any(o.available for o in offers):
            assert REGISTRY.find(name, spec.kind).name == name
        else:
            with pytest.raises(UnsupportedAlgorithm) as err:
                REGISTRY.find(name, spec.kind)
            msg = str(err.value)
            assert "\n" not in msg and msg.startswith(f"{name}: not available here; provided by ")
            for o in offers:
                assert f"{o.provider} (unavailable: {o.reason})" in msg


def test_missing_pq_algorithm_names_liboqs_and_its_reason() -> None:
    liboqs = REGISTRY.provider("liboqs")
    if liboqs.available:
        pytest.skip("liboqs is available here, so nothing is missing")
    with pytest.raises(UnsupportedAlgorithm) as err:
        registry.find("ML-KEM-512")
    assert str(err.value) == f"ML-KEM-512: not available here; provided by liboqs (unavailable: {liboqs.reason})"
    assert isinstance(err.value, ValueError)
    assert registry.which("Falcon-512") == [registry.Offer("liboqs", False, liboqs.reason)]


def test_find_prefers_and_falls_back() -> None:
    kem = registry.find("ML-KEM-768", "kem")
    assert (kem.name, kem.provider) == ("ML-KEM-768", "openssl")
    assert registry.find("ML-KEM-768", "kem") is kem  # built once
    fallback = registry.find("ML-KEM-768", "kem", prefer="liboqs")
    assert fallback.provider == ("liboqs" if REGISTRY.provider("liboqs").available else "openssl")
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        registry.find("ML-KEM-768", prefer="nope")


def test_kind_mismatch_and_unknown_names() -> None:
    with pytest.raises(UnsupportedAlgorithm, match=r"^AES-256-GCM: is a aead, not a kem$"):
        registry.find("AES-256-GCM", "kem")
    with pytest.raises(UnsupportedAlgorithm, match=r"^Kyber9000: no provider implements this kem"):
        registry.find("Kyber9000", "kem")
    with pytest.raises(UnsupportedAlgorithm, match="not implemented by provider openssl"):
        OpensslProvider().kem("Falcon-512")


class _StubProvider(Provider):
    """A provider with a fixed answer, to test the registry's wording and ordering."""

    def __init__(self, name: str, available: bool, reason: str, algs: dict[str, str], inner: Provider) -> None:
        super().__init__()
        self.name, self.available, self.reason = name, available, reason
        self._algs, self._inner = algs, inner

    def supported(self) -> dict[str, Any]:
        return dict(self._algs)

    def algorithms(self, kind: Any = None) -> set[str]:
        return {n for n, k in self._algs.items() if kind in (None, k)} if self.available else set()

    def _build(self, name: str, kind: Any) -> Any:
        return self._inner.get(name, kind)


def test_registry_message_lists_every_provider_with_its_reason() -> None:
    inner = OpensslProvider()
    reg = Registry(
        [
            _StubProvider("alpha", False, "alpha library not found", {"ML-KEM-512": "kem"}, inner),
            _StubProvider("beta", True, "", {"ML-KEM-768": "kem"}, inner),
            _StubProvider("gamma", False, "gamma needs a GPU", {"ML-KEM-512": "kem"}, inner),
        ]
    )
    with pytest.raises(UnsupportedAlgorithm) as err:
        reg.find("ML-KEM-512", "kem")
    assert str(err.value) == (
        "ML-KEM-512: not available here; provided by alpha (unavailable: alpha library not found), "
        "gamma (unavailable: gamma needs a GPU)"
    )
    assert reg.find("ML-KEM-768", "kem").name == "ML-KEM-768"
    with pytest.raises(ValueError, match="duplicate"):
        Registry([inner, OpensslProvider()])


# ------------------------------------------------------------------------------------------- liboqs


def test_liboqs_unavailable_without_library_and_never_imports_oqs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OQS_INSTALL_PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setitem(sys.modules, "oqs", None)  # an import attempt would raise ImportError
    p = LiboqsProvider()
    assert not p.available and p.algorithms() == set()
    assert p.reason == "liboqs shared library not found; build it from source, see README"
    assert "ML-KEM-512" in p.supported() and "Falcon-1024" in p.supported()
    with pytest.raises(UnsupportedAlgorithm, match="provider liboqs is unavailable: liboqs shared library"):
        p.kem("ML-KEM-512")


def test_liboqs_library_that_does_not_load(monkeypatch, tmp_path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "liboqs.so").write_bytes(b"not an ELF file")
    monkeypatch.setenv("OQS_INSTALL_PATH", str(tmp_path))
    assert liboqs_mod.find_library() == str(tmp_path / "lib" / "liboqs.so")
    oqs, reason = liboqs_mod.load_oqs()
    assert oqs is None and "does not load" in reason


def test_liboqs_import_failures_become_reasons(monkeypatch, tmp_path) -> None:
    libc = ctypes.util.find_library("c")  # any loadable library passes the probe's load check
    assert libc is not None
    monkeypatch.setitem(sys.modules, "oqs", None)  # liboqs-python not installed
    oqs, reason = liboqs_mod.load_oqs(libc)
    assert oqs is None and reason == "liboqs-python is not installed (pip install -e '.[liboqs]')"
    # liboqs-python that does not find the library raises SystemExit; that must not end the process.
    monkeypatch.delitem(sys.modules, "oqs")
    (tmp_path / "oqs.py").write_text("raise SystemExit('Could not load liboqs shared library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    oqs, reason = liboqs_mod.load_oqs(libc)
    assert oqs is None and reason.startswith("liboqs-python could not load liboqs")
    (tmp_path / "oqs.py").write_text("raise RuntimeError('broken build')\n")
    sys.modules.pop("oqs", None)
    oqs, reason = liboqs_mod.load_oqs(libc)
    assert oqs is None and "RuntimeError: broken build" in reason


class FakeOqs:
    """Stand-in for the ``oqs`` module (liboqs-python's API) backed by kyber-py and dilithium-py.

    Mechanisms without a backend have ``details`` only (enough for name resolution).
    """

    _SIZES: ClassVar[dict[str, tuple[int, int, int]]] = {  # liboqs name -> (pk, sk, ct or max signature)
        "ML-KEM-512": (800, 1632, 768),
        "ML-KEM-768": (1184, 2400, 1088),
        "HQC-128": (2249, 2305, 4433),
        "ML-DSA-65": (1952, 4032, 3309),
        "SLH_DSA_PURE_SHA2_128F": (32, 64, 17088),
        "SPHINCS+-SHA2-128f-simple": (32, 64, 17088),
    }
    _BACKENDS: ClassVar[dict[str, Any]] = {
        "ML-KEM-512": ML_KEM_512,
        "ML-KEM-768": ML_KEM_768,
        "ML-DSA-65": ML_DSA_65,
    }

    def __init__(self, kems: list[str], sigs: list[str]) -> None:
        self._kems, self._sigs = kems, sigs
        self.freed = 0  # key objects released through free()
        outer = self

        class KeyEncapsulation:
            def __init__(self, alg_name: str, secret_key: bytes | None = None) -> None:
                assert alg_name in outer._kems
                pk, sk, ct = outer._SIZES[alg_name]
                self.details = {"name": alg_name, "length_public_key": pk, "length_secret_key": sk}
                self.details |= {"length_ciphertext": ct, "length_shared_secret": 32}
                self._impl, self.secret_key = outer._BACKENDS.get(alg_name), secret_key

            def generate_keypair(self) -> bytes:
                ek, self.secret_key = self._impl.keygen()
                return ek

            def encap_secret(self, public_key: bytes) -> tuple[bytes, bytes]:
                ss, ct = self._impl.encaps(public_key)
                return ct, ss  # liboqs-python order: (ciphertext, shared_secret)

            def decap_secret(self, ciphertext: bytes) -> bytes:
                return self._impl.decaps(self.secret_key, ciphertext)

            def free(self) -> None:
                assert self.secret_key is not None, "freed twice"
                self.secret_key = None
                outer.freed += 1

        class Signature:
            def __init__(self, alg_name: str, secret_key: bytes | None = None) -> None:
                assert alg_name in outer._sigs
                pk, sk, sig = outer._SIZES[alg_name]
                self.details = {"name": alg_name, "length_public_key": pk, "length_secret_key": sk}
                self.details |= {"length_signature": sig}
                self._impl, self.secret_key = outer._BACKENDS.get(alg_name), secret_key

            def generate_keypair(self) -> bytes:
                pk, self.secret_key = self._impl.keygen()
                return pk

            def sign(self, message: bytes) -> bytes:
                return self._impl.sign(self.secret_key, message)

            def verify(self, message: bytes, signature: bytes, public_key: bytes) -> bool:
                return bool(self._impl.verify(public_key, message, signature))

            def free(self) -> None:
                assert self.secret_key is not None, "freed twice"
                self.secret_key = None
                outer.freed += 1

        self.KeyEncapsulation, self.Signature = KeyEncapsulation, Signature

    def get_enabled_kem_mechanisms(self) -> list[str]:
        return list(self._kems)

    def get_enabled_sig_mechanisms(self) -> list[str]:
        return list(self._sigs)

    def oqs_version(self) -> str:
        return "0.0-stand-in"


def _fake_liboqs(sigs: list[str], fake: FakeOqs | None = None) -> LiboqsProvider:
    return LiboqsProvider(module=fake or FakeOqs(["ML-KEM-512", "ML-KEM-768", "HQC-128"], sigs))


def test_liboqs_adapter_name_resolution() -> None:
    old = _fake_liboqs(["ML-DSA-65", "SPHINCS+-SHA2-128f-simple"])
    assert old.available and old.reason == ""
    assert old.algorithms("kem") == {"ML-KEM-512", "ML-KEM-768", "HQC-128"}
    assert old.algorithms("signature") == {"ML-DSA-65", "SLH-DSA-SHA2-128f"}
    assert old.liboqs_name("SLH-DSA-SHA2-128f") == "SPHINCS+-SHA2-128f-simple"
    new = _fake_liboqs(["SLH_DSA_PURE_SHA2_128F", "SPHINCS+-SHA2-128f-simple"])
    assert new.liboqs_name("SLH-DSA-SHA2-128f") == "SLH_DSA_PURE_SHA2_128F"  # FIPS 205 name preferred
    assert "SPHINCS+-SHA2-128f-simple" in new.algorithms("signature")  # the other keeps its own name
    assert new.version == "0.0-stand-in"


def test_liboqs_adapter_round_trips_and_registry() -> None:
    p = _fake_liboqs(["ML-DSA-65"])
    reg = Registry([OpensslProvider(), p])
    kem512 = reg.find("ML-KEM-512", "kem")  # only liboqs has it
    assert kem512.provider == "liboqs"
    kp = kem512.keygen()
    ct, ss = kem512.encaps(kem512.load_public(kp.public_bytes))
    assert kem512.decaps(kp, ct) == ss
    spec = CATALOGUE["ML-KEM-512"]
    assert (len(kp.public_bytes), len(ct), len(ss)) == (spec.public_key_bytes, spec.ciphertext_bytes, 32)
    assert kem512.decaps(kp, _flip(ct, 3)) != ss
    with pytest.raises(InvalidCiphertext):  # liboqs-python would zero-pad a short ciphertext
        kem512.decaps(kp, ct[:-1])
    # Across providers: openssl encapsulates to a key made through the liboqs adapter.
    assert reg.find("ML-KEM-768", "kem").provider == "openssl"
    oqs768, ossl768 = reg.find("ML-KEM-768", "kem", prefer="liboqs"), reg.find("ML-KEM-768", "kem")
    kp = oqs768.keygen()
    ct, ss = ossl768.encaps(ossl768.load_public(kp.public_bytes))
    assert oqs768.decaps(kp, ct) == ss
    signer = reg.find("ML-DSA-65", "signature", prefer="liboqs")
    assert signer.provider == "liboqs"
    kp = signer.keygen()
    sig = signer.sign(kp, MESSAGE)
    assert signer.verify(kp.public, MESSAGE, sig) and not signer.verify(kp.public, MESSAGE + b"!", sig)
    assert not signer.verify(kp.public, MESSAGE, sig + b"\x00")  # longer than the maximum
    assert reg.find("ML-DSA-65", "signature").verify(reg.find("ML-DSA-65").load_public(kp.public_bytes), MESSAGE, sig)


def test_liboqs_adapter_frees_each_secret_key_once() -> None:
    fake = FakeOqs(["ML-KEM-768"], ["ML-DSA-65"])
    p = _fake_liboqs([], fake)
    kp, skp = p.kem("ML-KEM-768").keygen(), p.signature("ML-DSA-65").keygen()
    assert fake.freed == 0
    del kp, skp  # CPython frees on the last reference
    assert fake.freed == 2
