"""Interoperability of the liboqs provider, on the real liboqs C library, with the openssl provider and with
implementations no one here wrote (kyber-py, dilithium-py; see tests/test_interop.py for openssl alone).

Every test is skipped, with the provider's reason, when the liboqs provider is not available here; `make test`
points ``OQS_INSTALL_PATH`` at a liboqs build, so there they run.

- ML-KEM-512/768/1024 vs kyber-py (and 768/1024 vs openssl, which has no ML-KEM-512): encapsulation in
  either direction on public keys and ciphertexts only. liboqs stores the FIPS 203 expanded decapsulation
  key ``dk``, the same encoding kyber-py uses, so secret keys cross too (through ``export_private`` /
  ``import_private``): kyber-py decapsulates with a liboqs key and liboqs with a kyber-py key, and a
  tampered ciphertext gives the same implicit-rejection secret in all of them. One key in three libraries:
  openssl's exported seed, expanded by kyber-py, imported into liboqs.
- ML-DSA-44/65/87 vs dilithium-py and openssl: pure ML-DSA with an empty context everywhere (dilithium-py's
  ``ctx=b""``; a signature under another context must not verify), signed by one and verified by the
  others, tampering rejected by each. Secret keys are FIPS 204 encodings, so they cross as for ML-KEM.
- SLH-DSA-SHA2-128f/128s and Falcon-512/1024 (liboqs only here): round trip, tamper rejection and the
  catalogue's wire sizes (Falcon signatures are variable-length, at most ``signature_max_bytes``).
- The external-mu ML-DSA variants (``ML-DSA-65-extmu``) sign a precomputed mu, not a message: liboqs
  enables them, but they must not be offered as signers.
"""

from __future__ import annotations

import os
import struct

import pytest
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87
from kyber_py.ml_kem import ML_KEM_512, ML_KEM_768, ML_KEM_1024

from hw.crypto import Kem, KeyPair, Signer, UnsupportedAlgorithm, registry
from sim import catalogue

REGISTRY = registry.default()
LIBOQS = REGISTRY.provider("liboqs")
OPENSSL = REGISTRY.provider("openssl")
MESSAGE = b"aggregate of round 3 from ward 7"

pytestmark = pytest.mark.skipif(not LIBOQS.available, reason=f"liboqs provider unavailable: {LIBOQS.reason}")

KEMS = [
    pytest.param("ML-KEM-512", ML_KEM_512, id="512"),
    pytest.param("ML-KEM-768", ML_KEM_768, id="768"),
    pytest.param("ML-KEM-1024", ML_KEM_1024, id="1024"),
]
OPENSSL_KEMS = [pytest.param("ML-KEM-768", ML_KEM_768, id="768"), pytest.param("ML-KEM-1024", ML_KEM_1024, id="1024")]
OPENSSL_KEM_NAMES = ["ML-KEM-768", "ML-KEM-1024"]  # cryptography's API has no ML-KEM-512
DSAS = [
    pytest.param("ML-DSA-44", ML_DSA_44, id="44"),
    pytest.param("ML-DSA-65", ML_DSA_65, id="65"),
    pytest.param("ML-DSA-87", ML_DSA_87, id="87"),
]


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _secret(alg: Kem | Signer, keypair: KeyPair) -> bytes:
    """liboqs' own secret-key bytes, from the provider's export (``len(pk) || pk || sk``)."""
    raw = alg.export_private(keypair)
    (pk_len,) = struct.unpack_from("!I", raw)
    assert raw[4 : 4 + pk_len] == keypair.public_bytes
    return raw[4 + pk_len :]


def _import(alg: Kem | Signer, public: bytes, secret: bytes) -> KeyPair:
    """A key pair made elsewhere, given to the liboqs provider in its export format."""
    return alg.import_private(struct.pack("!I", len(public)) + public + secret)


# -------------------------------------------------------------------------------- ML-KEM vs kyber-py


@pytest.mark.parametrize(("name", "other"), KEMS)
def test_mlkem_liboqs_encaps_kyberpy_decaps(name, other) -> None:
    kem = LIBOQS.kem(name)
    ek, dk = other.keygen()  # a key made by kyber-py, received as wire bytes
    ct, ss = kem.encaps(kem.load_public(ek))
    spec = catalogue.get(name)
    assert (len(ct), len(ss)) == (spec.ciphertext_bytes, spec.shared_secret_bytes)
    assert other.decaps(dk, ct) == ss
    # ... and to a key made by liboqs: its secret key is the FIPS 203 dk, which kyber-py uses as is.
    kp = kem.keygen()
    sk = _secret(kem, kp)
    assert (len(kp.public_bytes), len(sk)) == (spec.public_key_bytes, spec.secret_key_bytes)
    ct, ss = kem.encaps(kp.public)
    assert other.decaps(sk, ct) == ss


@pytest.mark.parametrize(("name", "other"), KEMS)
def test_mlkem_kyberpy_encaps_liboqs_decaps(name, other) -> None:
    kem = LIBOQS.kem(name)
    kp = kem.keygen()
    ss, ct = other.encaps(kp.public_bytes)  # kyber-py returns (K, c)
    assert kem.decaps(kp, ct) == ss
    # ... and with a key made by kyber-py, imported into liboqs.
    ek, dk = other.keygen()
    theirs = _import(kem, ek, dk)
    ss, ct = other.encaps(ek)
    assert kem.decaps(theirs, ct) == ss


@pytest.mark.parametrize(("name", "other"), KEMS)
def test_mlkem_implicit_rejection_agrees_with_kyberpy(name, other) -> None:
    kem = LIBOQS.kem(name)
    kp = kem.keygen()
    sk = _secret(kem, kp)
    ct, ss = kem.encaps(kp.public)
    for index in (0, len(ct) // 2, len(ct) - 1):
        bad = _flip(ct, index)
        rejected = kem.decaps(kp, bad)  # no exception
        assert rejected != ss
        assert rejected == kem.decaps(kp, bad) == other.decaps(sk, bad)  # both compute K' = J(z || c)


# ------------------------------------------------------------------------------- ML-KEM vs openssl


@pytest.mark.parametrize("name", OPENSSL_KEM_NAMES)
def test_mlkem_liboqs_encaps_openssl_decaps(name: str) -> None:
    mine, theirs = LIBOQS.kem(name), OPENSSL.kem(name)
    kp = theirs.keygen()
    ct, ss = mine.encaps(mine.load_public(kp.public_bytes))
    assert theirs.decaps(kp, ct) == ss


@pytest.mark.parametrize("name", OPENSSL_KEM_NAMES)
def test_mlkem_openssl_encaps_liboqs_decaps(name: str) -> None:
    mine, theirs = LIBOQS.kem(name), OPENSSL.kem(name)
    kp = mine.keygen()
    ct, ss = theirs.encaps(theirs.load_public(kp.public_bytes))
    assert mine.decaps(kp, ct) == ss


@pytest.mark.parametrize(("name", "other"), OPENSSL_KEMS)
def test_mlkem_one_key_in_three_libraries(name, other) -> None:
    """openssl's key from a seed; kyber-py expands the same seed; liboqs imports kyber-py's expansion."""
    mine, theirs = LIBOQS.kem(name), OPENSSL.kem(name)
    seed = os.urandom(64)
    ossl = theirs.keygen_from_seed(seed)
    ek, dk = other.key_derive(seed)
    assert ek == ossl.public_bytes
    oqs_kp = _import(mine, ek, dk)
    assert _secret(mine, oqs_kp) == dk
    for ct, ss in (mine.encaps(oqs_kp.public), theirs.encaps(ossl.public), other.encaps(ek)[::-1]):
        assert mine.decaps(oqs_kp, ct) == theirs.decaps(ossl, ct) == other.decaps(dk, ct) == ss
        bad = _flip(ct, 5)
        assert mine.decaps(oqs_kp, bad) == theirs.decaps(ossl, bad) == other.decaps(dk, bad) != ss


# ------------------------------------------------------------------ ML-DSA vs dilithium-py and openssl


@pytest.mark.parametrize(("name", "other"), DSAS)
def test_mldsa_liboqs_signs_others_verify(name, other) -> None:
    mine, theirs = LIBOQS.signature(name), OPENSSL.signature(name)
    kp = mine.keygen()
    sig = mine.sign(kp, MESSAGE)
    spec = catalogue.get(name)
    assert (len(kp.public_bytes), len(sig)) == (spec.public_key_bytes, spec.signature_bytes)
    pk = kp.public_bytes
    assert other.verify(pk, MESSAGE, sig, ctx=b"")
    assert not other.verify(pk, MESSAGE, sig, ctx=b"other")  # liboqs signs with the empty context
    assert not other.verify(pk, _flip(MESSAGE, 0), sig, ctx=b"")
    assert not other.verify(pk, MESSAGE, _flip(sig, len(sig) // 2), ctx=b"")
    pub = theirs.load_public(pk)
    assert theirs.verify(pub, MESSAGE, sig)
    assert not theirs.verify(pub, MESSAGE + b".", sig)
    assert not theirs.verify(pub, MESSAGE, _flip(sig, 7))


@pytest.mark.parametrize(("name", "other"), DSAS)
def test_mldsa_others_sign_liboqs_verifies(name, other) -> None:
    mine, theirs = LIBOQS.signature(name), OPENSSL.signature(name)
    pk, sk = other.keygen()
    sig = other.sign(sk, MESSAGE, ctx=b"")
    pub = mine.load_public(pk)
    assert mine.verify(pub, MESSAGE, sig)
    assert not mine.verify(pub, _flip(MESSAGE, 3), sig)
    assert not mine.verify(pub, MESSAGE, _flip(sig, len(sig) - 1))
    assert not mine.verify(pub, MESSAGE, other.sign(sk, MESSAGE, ctx=b"other"))  # liboqs: empty context
    kp = theirs.keygen()
    sig = theirs.sign(kp, MESSAGE)
    pub = mine.load_public(kp.public_bytes)
    assert mine.verify(pub, MESSAGE, sig)
    assert not mine.verify(pub, MESSAGE[:-1], sig)
    assert not mine.verify(pub, MESSAGE, _flip(sig, 0))


@pytest.mark.parametrize(("name", "other"), DSAS)
def test_mldsa_secret_keys_cross(name, other) -> None:
    """liboqs' secret key is the FIPS 204 encoding: dilithium-py signs with it, and liboqs with dilithium-py's;
    from one seed, openssl and dilithium-py make the same key, which liboqs then signs with."""
    mine, theirs = LIBOQS.signature(name), OPENSSL.signature(name)
    kp = mine.keygen()
    sk = _secret(mine, kp)
    assert len(sk) == catalogue.get(name).secret_key_bytes
    assert mine.verify(kp.public, MESSAGE, other.sign(sk, MESSAGE, ctx=b""))
    pk, sk = other.keygen()
    assert other.verify(pk, MESSAGE, mine.sign(_import(mine, pk, sk), MESSAGE), ctx=b"")
    seed = os.urandom(32)
    ossl = theirs.keygen_from_seed(seed)
    pk, sk = other.key_derive(seed)
    assert pk == ossl.public_bytes
    sig = mine.sign(_import(mine, pk, sk), MESSAGE)
    assert theirs.verify(ossl.public, MESSAGE, sig)
    assert not theirs.verify(ossl.public, _flip(MESSAGE, 1), sig)


# ------------------------------------------------------------------- SLH-DSA and Falcon (liboqs only)


def _tampering_rejected(signer: Signer, kp: KeyPair, sig: bytes) -> None:
    pub = signer.load_public(kp.public_bytes)
    assert signer.verify(pub, MESSAGE, sig)
    assert not signer.verify(pub, _flip(MESSAGE, 0), sig)
    assert not signer.verify(pub, MESSAGE + b"\x00", sig)
    for index in (1, len(sig) // 2, len(sig) - 1):  # nonce / randomiser, body, last byte
        assert not signer.verify(pub, MESSAGE, _flip(sig, index)), index
    assert not signer.verify(pub, MESSAGE, sig[:-1])
    assert not signer.verify(pub, MESSAGE, sig + b"\x00")
    assert not signer.verify(signer.keygen().public, MESSAGE, sig)  # another key


@pytest.mark.parametrize("name", ["SLH-DSA-SHA2-128f", "SLH-DSA-SHA2-128s"])
def test_slhdsa_round_trip_tamper_and_sizes(name: str) -> None:
    signer = LIBOQS.signature(name)
    spec = catalogue.get(name)
    assert spec.signature_bytes == spec.signature_max_bytes == signer.signature_max_bytes  # fixed length
    kp = signer.keygen()
    assert len(kp.public_bytes) == spec.public_key_bytes
    assert len(_secret(signer, kp)) == spec.secret_key_bytes
    sig = signer.sign(kp, MESSAGE)  # one signature: 128s takes about a second
    assert len(sig) == spec.signature_bytes
    _tampering_rejected(signer, kp, sig)


@pytest.mark.parametrize(("name", "logn"), [("Falcon-512", 9), ("Falcon-1024", 10)])
def test_falcon_round_trip_tamper_and_sizes(name: str, logn: int) -> None:
    signer = LIBOQS.signature(name)
    spec = catalogue.get(name)
    assert signer.signature_max_bytes == spec.signature_max_bytes
    kp = signer.keygen()
    assert len(kp.public_bytes) == spec.public_key_bytes
    assert len(_secret(signer, kp)) == spec.secret_key_bytes
    sigs = [signer.sign(kp, MESSAGE) for _ in range(12)]
    lengths = [len(s) for s in sigs]
    # Unpadded compressed signatures: header byte 0x30 + logn, 40-byte nonce, then a variable-length body.
    assert all(41 < n <= spec.signature_max_bytes for n in lengths), lengths
    assert len(set(lengths)) > 1, lengths  # variable length (12 equal lengths: well under 1e-9)
    assert {s[0] for s in sigs} == {0x30 + logn}
    assert all(signer.verify(kp.public, MESSAGE, s) for s in sigs)
    _tampering_rejected(signer, kp, sigs[0])


# -------------------------------------------------------------------------------------- external mu


def test_extmu_variants_are_not_offered_as_signers() -> None:
    import oqs  # loaded by the available provider already

    extmu = [m for m in oqs.get_enabled_sig_mechanisms() if m.lower().endswith("-extmu")]
    assert not [n for n in LIBOQS.algorithms() if n.lower().endswith("-extmu")]
    for name in extmu or ["ML-DSA-65-extmu"]:  # this build enables them; the contract holds either way
        with pytest.raises(UnsupportedAlgorithm):
            REGISTRY.find(name, "signature")
        with pytest.raises(UnsupportedAlgorithm):
            LIBOQS.signature(name)
