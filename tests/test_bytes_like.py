"""Every operation of every available provider takes any bytes-like input: ``bytes``, ``bytearray`` and a
``memoryview`` (also a slice of a larger buffer), and gives the same answer as for ``bytes``.

The twin passes exactly these: records arrive in ``bytearray`` buffers, ``Channel.open`` slices views, and a
message is signed as a view of its buffer. One class of crash (a library that wants ``bytes``) is pinned here,
for every algorithm at once, instead of one suite at a time in twin runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .test_providers import _alg, _cases, _keypair


def _forms(data: bytes) -> list[tuple[str, Any]]:
    padded = bytearray(b"\xaa" * 3 + data + b"\x55" * 5)
    return [
        ("bytes", data),
        ("bytearray", bytearray(data)),
        ("memoryview", memoryview(data)),
        ("memoryview of bytearray slice", memoryview(padded)[3 : 3 + len(data)]),
    ]


def _each_form(data: bytes, call: Callable[[Any], Any]) -> None:
    expected = call(data)
    for form, value in _forms(data)[1:]:
        assert call(value) == expected, form


@pytest.mark.parametrize(("provider", "name"), _cases("kem"))
def test_kem_takes_bytes_like(provider: str, name: str | None) -> None:
    kem = _alg(provider, name, "kem")
    kp = _keypair(kem)
    ct, ss = kem.encaps(kp.public)
    _each_form(ct, lambda c: kem.decaps(kp, c))
    _each_form(kp.public.raw, lambda raw: kem.load_public(raw).raw)
    assert kem.decaps(kp, ct) == ss


@pytest.mark.parametrize(("provider", "name"), _cases("signature"))
def test_signature_takes_bytes_like(provider: str, name: str | None) -> None:
    signer = _alg(provider, name, "signature")
    kp = _keypair(signer)
    message = bytes(range(256)) * 20
    sig = signer.sign(kp, message)
    for form, value in _forms(message):
        s = signer.sign(kp, value)
        assert signer.verify(kp.public, message, s), form
        for sform, svalue in _forms(sig):
            assert signer.verify(kp.public, value, svalue), (form, sform)
    _each_form(kp.public.raw, lambda raw: signer.load_public(raw).raw)


@pytest.mark.parametrize(("provider", "name"), _cases("aead"))
def test_aead_takes_bytes_like(provider: str, name: str | None) -> None:
    aead = _alg(provider, name, "aead")
    key = aead.keygen()
    nonce, aad, plaintext = bytes(range(12)), b"header", bytes(range(256)) * 40
    record = aead.encrypt(key, nonce, plaintext, aad)
    _each_form(plaintext, lambda p: aead.encrypt(key, nonce, p, aad))
    _each_form(record, lambda r: aead.decrypt(key, nonce, r, aad))
    _each_form(nonce, lambda n: aead.decrypt(key, n, record, aad))
    _each_form(aad, lambda a: aead.decrypt(key, nonce, record, a))
    _each_form(key.raw, lambda k: aead.load_key(k).raw)


@pytest.mark.parametrize(("provider", "name"), _cases("hash"))
def test_hash_takes_bytes_like(provider: str, name: str | None) -> None:
    h = _alg(provider, name, "hash")
    _each_form(bytes(range(256)) * 10, h.hash)
