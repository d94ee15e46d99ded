"""Interoperability of the openssl provider with implementations no one here wrote.

- ML-KEM-768/1024 against kyber-py (pure Python, FIPS 203): same keys from the same 64-byte seed
  ``d || z``, encapsulation in either direction, and the same implicit-rejection secret for a tampered
  ciphertext. cryptography exports ML-KEM private keys only as that seed, which kyber-py's
  ``key_derive`` expands, so both directions are possible.
- ML-DSA-44/65/87 against dilithium-py (pure Python, FIPS 204): same keys from the same 32-byte seed,
  signatures verified across in both directions (empty context), tampering rejected by both.
- Ed25519, AES-GCM, ChaCha20-Poly1305 and the hashes against published test vectors.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87
from kyber_py.ml_kem import ML_KEM_768, ML_KEM_1024

from hw.crypto import AuthenticationFailed
from hw.crypto.openssl import OpensslProvider

OPENSSL = OpensslProvider()
MESSAGE = b"aggregate of round 3 from ward 7"


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


KEMS = [pytest.param("ML-KEM-768", ML_KEM_768, id="768"), pytest.param("ML-KEM-1024", ML_KEM_1024, id="1024")]
DSAS = [
    pytest.param("ML-DSA-44", ML_DSA_44, id="44"),
    pytest.param("ML-DSA-65", ML_DSA_65, id="65"),
    pytest.param("ML-DSA-87", ML_DSA_87, id="87"),
]


# -------------------------------------------------------------------------------- ML-KEM vs kyber-py


@pytest.mark.parametrize(("name", "other"), KEMS)
def test_mlkem_same_seed_same_keys(name, other) -> None:
    seed = os.urandom(64)
    kp = OPENSSL.kem(name).keygen_from_seed(seed)
    ek, _ = other.key_derive(seed)
    assert kp.public_bytes == ek
    assert kp.native.private_bytes_raw() == seed  # what cryptography can export: the seed


@pytest.mark.parametrize(("name", "other"), KEMS)
def test_mlkem_openssl_encaps_kyberpy_decaps(name, other) -> None:
    kem = OPENSSL.kem(name)
    ek, dk = other.keygen()  # a key made by kyber-py, received as wire bytes
    ct, ss = kem.encaps(kem.load_public(ek))
    assert other.decaps(dk, ct) == ss
    # ... and to a key made by the openssl provider, expanded by kyber-py from its exported seed.
    kp = kem.keygen()
    _, dk = other.key_derive(kp.native.private_bytes_raw())
    ct, ss = kem.encaps(kp.public)
    assert other.decaps(dk, ct) == ss


@pytest.mark.parametrize(("name", "other"), KEMS)
def test_mlkem_kyberpy_encaps_openssl_decaps(name, other) -> None:
    kem = OPENSSL.kem(name)
    kp = kem.keygen()
    ss, ct = other.encaps(kp.public_bytes)  # kyber-py returns (K, c)
    assert kem.decaps(kp, ct) == ss


@pytest.mark.parametrize(("name", "other"), KEMS)
def test_mlkem_implicit_rejection_agrees(name, other) -> None:
    kem = OPENSSL.kem(name)
    kp = kem.keygen()
    _, dk = other.key_derive(kp.native.private_bytes_raw())
    ct, ss = kem.encaps(kp.public)
    for index in (0, len(ct) - 1):
        bad = _flip(ct, index)
        rejected = kem.decaps(kp, bad)  # no exception
        assert rejected != ss
        assert rejected == other.decaps(dk, bad)  # both compute K' = J(z || c)


# ------------------------------------------------------------------------------ ML-DSA vs dilithium-py


@pytest.mark.parametrize(("name", "other"), DSAS)
def test_mldsa_same_seed_same_keys(name, other) -> None:
    seed = os.urandom(32)
    kp = OPENSSL.signature(name).keygen_from_seed(seed)
    pk, _ = other.key_derive(seed)
    assert kp.public_bytes == pk


@pytest.mark.parametrize(("name", "other"), DSAS)
def test_mldsa_openssl_signs_dilithiumpy_verifies(name, other) -> None:
    signer = OPENSSL.signature(name)
    kp = signer.keygen()
    sig = signer.sign(kp, MESSAGE)
    assert other.verify(kp.public_bytes, MESSAGE, sig, ctx=b"")
    assert not other.verify(kp.public_bytes, MESSAGE, _flip(sig, len(sig) // 2), ctx=b"")
    assert not other.verify(kp.public_bytes, _flip(MESSAGE, 0), sig, ctx=b"")
    assert not other.verify(kp.public_bytes, MESSAGE, sig, ctx=b"other")  # we sign with an empty context


@pytest.mark.parametrize(("name", "other"), DSAS)
def test_mldsa_dilithiumpy_signs_openssl_verifies(name, other) -> None:
    signer = OPENSSL.signature(name)
    pk, sk = other.keygen()
    sig = other.sign(sk, MESSAGE, ctx=b"")
    pub = signer.load_public(pk)
    assert signer.verify(pub, MESSAGE, sig)
    assert not signer.verify(pub, MESSAGE, _flip(sig, 7))
    assert not signer.verify(pub, MESSAGE + b".", sig)
    # A key pair from one seed in both libraries: dilithium-py's signature verifies under ours.
    seed = os.urandom(32)
    kp = signer.keygen_from_seed(seed)
    _, sk = other.key_derive(seed)
    assert signer.verify(kp.public, MESSAGE, other.sign(sk, MESSAGE, ctx=b""))


# ----------------------------------------------------------------------------------- published vectors


def test_ed25519_rfc8032_test_1() -> None:
    signer = OPENSSL.signature("Ed25519")
    pub = signer.load_public(bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
        "d25bf5f0595bbe24655141438e7a100b"
    )
    assert signer.verify(pub, b"", sig)
    assert not signer.verify(pub, b"\x00", sig)
    assert not signer.verify(pub, b"", _flip(sig, 0))


AEAD_VECTORS = [
    # McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 2 and 14.
    pytest.param(
        "AES-128-GCM", bytes(16), bytes(12), bytes(16), b"",
        "0388dace60b6a392f328c2b971b2fe78" "ab6e47d42cec13bdf53a67b21257bddf",
        id="aes128-gcm-tc2",
    ),
    pytest.param(
        "AES-256-GCM", bytes(32), bytes(12), bytes(16), b"",
        "cea7403d4d606b6e074ec5d3baf39d18" "d0d1c8a799996bf0265b98b5d48ab919",
        id="aes256-gcm-tc14",
    ),
    # RFC 8439 section 2.8.2.
    pytest.param(
        "ChaCha20-Poly1305", bytes(range(0x80, 0xA0)), bytes.fromhex("070000004041424344454647"),
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
        b"sunscreen would be it.",
        bytes.fromhex("50515253c0c1c2c3c4c5c6c7"),
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
        "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116" "1ae10b594f09e26a7e902ecbd0600691",
        id="chacha20-poly1305-rfc8439",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "key", "nonce", "plaintext", "aad", "record_hex"), AEAD_VECTORS)
def test_aead_published_vectors(name, key, nonce, plaintext, aad, record_hex) -> None:
    aead = OPENSSL.aead(name)
    k = aead.load_key(key)
    record = bytes.fromhex(record_hex)
    assert aead.encrypt(k, nonce, plaintext, aad) == record
    assert aead.decrypt(k, nonce, record, aad) == plaintext
    with pytest.raises(AuthenticationFailed):
        aead.decrypt(k, nonce, _flip(record, len(record) - 1), aad)


def test_hashes_published_abc_vectors() -> None:
    vectors = {  # FIPS 180-4 / FIPS 202 example values for "abc"
        "SHA-256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "SHA-512": "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "SHA3-256": "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
        "SHAKE-256": hashlib.shake_256(b"abc").hexdigest(64),  # CPython's own build, 64-byte output
    }
    for name, want in vectors.items():
        assert OPENSSL.hash(name).hash(b"abc").hex() == want
