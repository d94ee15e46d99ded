"""Private-key export/import (``Kem/Signer.export_private``, ``import_private``): how the Kubernetes backend
provisions each pod's identity through a Secret.

openssl: every KEM and signature of the provider, PKCS#8 DER, checked to work across the round trip (the
imported key decapsulates / signs for the original public key). liboqs: its adapter against the stand-in
``oqs`` module of tests/test_providers.py (kyber-py / dilithium-py behind liboqs-python's API) -- that checks
our encoding and adapter, not liboqs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hw.channel import Identity, Suite
from hw.crypto import InvalidKey, Registry, registry
from hw.crypto.liboqs import LiboqsProvider
from hw.crypto.openssl import OpensslProvider
from hw.node.keys import KeysUnavailable, MountedKeys
from hw.runconfig import ProvisionedKeys

from .test_providers import FakeOqs


def load_identity(path: Path, name: str, suite: Suite) -> Identity:
    """``name``'s identity as a pod loads it from its mounted Secret."""
    return MountedKeys(path.parent, ProvisionedKeys(identity=path.name, trust="trust.json"), suite).identity(name)


OPENSSL = registry.default().provider("openssl")
ALGORITHMS = sorted(OPENSSL.algorithms("kem") | OPENSSL.algorithms("signature"))
MESSAGE = b"provisioned identity"


def _works(alg, original, imported) -> None:
    assert imported.public_bytes == original.public_bytes
    if alg.kind == "kem":
        ct, ss = alg.encaps(alg.load_public(original.public_bytes))
        assert alg.decaps(imported, ct) == ss
    else:
        assert alg.verify(original.public, MESSAGE, alg.sign(imported, MESSAGE))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_openssl_round_trip(name):
    alg = OPENSSL.get(name)
    kp = alg.keygen()
    raw = alg.export_private(kp)
    _works(alg, kp, alg.import_private(raw))
    assert alg.export_private(alg.import_private(raw)) == raw  # stable encoding


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if a != "X25519+ML-KEM-768"])
def test_openssl_export_is_standard_pkcs8(name):
    alg = OPENSSL.get(name)
    kp = alg.keygen()
    sk = serialization.load_der_private_key(alg.export_private(kp), password=None)
    assert type(sk) is type(kp.native)


def test_ml_kem_and_ml_dsa_export_their_seeds_only():
    assert len(OPENSSL.kem("ML-KEM-768").export_private(OPENSSL.kem("ML-KEM-768").keygen())) == 86
    assert len(OPENSSL.signature("ML-DSA-65").export_private(OPENSSL.signature("ML-DSA-65").keygen())) == 54


def test_import_rejects_garbage_and_keys_of_another_algorithm():
    kem768, kem1024 = OPENSSL.kem("ML-KEM-768"), OPENSSL.kem("ML-KEM-1024")
    with pytest.raises(InvalidKey, match="not an unencrypted PKCS#8"):
        kem768.import_private(b"\x30\x03garbage")
    with pytest.raises(InvalidKey, match="not a ML-KEM-768 key"):
        kem768.import_private(kem1024.export_private(kem1024.keygen()))
    ecdsa, rsa = OPENSSL.signature("ECDSA-P256"), OPENSSL.signature("RSA-2048")
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidKey):  # right type, wrong curve
        ecdsa.import_private(p384)
    with pytest.raises(InvalidKey):
        rsa.import_private(OPENSSL.signature("RSA-3072").export_private(OPENSSL.signature("RSA-3072").keygen()))
    hybrid = OPENSSL.kem("X25519+ML-KEM-768")
    raw = hybrid.export_private(hybrid.keygen())
    for bad in (raw[:-1], raw + b"\x00", raw[:3]):
        with pytest.raises(InvalidKey):
            hybrid.import_private(bad)


def test_liboqs_adapter_round_trip_against_the_stand_in():
    fake = FakeOqs(["ML-KEM-512", "ML-KEM-768"], ["ML-DSA-65"])
    p = LiboqsProvider(module=fake)
    for name in ("ML-KEM-512", "ML-DSA-65"):
        alg = p.get(name)
        kp = alg.keygen()
        raw = alg.export_private(kp)
        _works(alg, kp, alg.import_private(raw))
        with pytest.raises(InvalidKey):
            alg.import_private(raw[:-1])
        with pytest.raises(InvalidKey):
            alg.import_private(b"\x00\x00\x00\x05short")
    # across providers: a liboqs-provisioned ML-KEM-768 key decapsulates what openssl encapsulated
    reg = Registry([OpensslProvider(), p])
    oqs768, ossl768 = reg.find("ML-KEM-768", "kem", prefer="liboqs"), reg.find("ML-KEM-768", "kem")
    kp = oqs768.import_private(oqs768.export_private(oqs768.keygen()))
    ct, ss = ossl768.encaps(ossl768.load_public(kp.public_bytes))
    assert oqs768.decaps(kp, ct) == ss


def test_identity_file_round_trip(tmp_path):
    suite = Suite("ML-KEM-768", "ML-DSA-65", "AES-256-GCM")
    idents = {n: Identity.generate(n, suite) for n in ("client-1", "ecg-a#0")}
    path = tmp_path / "identity.json"
    path.write_text(json.dumps({n: i.export_private() for n, i in idents.items()}))
    for n, ident in idents.items():
        loaded = load_identity(path, n, suite)
        assert loaded.public() == ident.public()
        signer = OPENSSL.signature("ML-DSA-65")
        assert signer.verify(ident.sig.public, MESSAGE, signer.sign(loaded.sig, MESSAGE))
    with pytest.raises(KeysUnavailable, match="no provisioned private keys for client-2"):
        load_identity(path, "client-2", suite)
    entry = json.loads(path.read_text())["client-1"]
    assert len(base64.b64decode(entry["sig"])) == 54 and len(base64.b64decode(entry["kem"])) == 86
