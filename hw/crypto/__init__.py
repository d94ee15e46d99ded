"""Crypto providers of the hardware twin: one small interface over pyca/cryptography and liboqs.

Typical use::

    from hw.crypto import find

    kem = find("ML-KEM-768", "kem")            # from the preferred available provider
    kp = kem.keygen()                          # kp.public_bytes goes on the wire
    ct, ss = kem.encaps(kem.load_public(kp.public_bytes))
    assert kem.decaps(kp, ct) == ss

Modules: `base` (interface, key handles, errors), `openssl` and `liboqs` (providers), `hybrid` (the
X25519+ML-KEM-768 combiner), `registry` (which provider implements what).
"""

from hw.crypto.base import (
    Aead,
    AuthenticationFailed,
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
    UnsupportedAlgorithm,
)
from hw.crypto.registry import Offer, Registry, default, find, providers, which

__all__ = [
    "Aead",
    "AuthenticationFailed",
    "Hash",
    "InvalidCiphertext",
    "InvalidKey",
    "Kem",
    "KeyPair",
    "Kind",
    "Offer",
    "Provider",
    "PublicKey",
    "Registry",
    "SecretKey",
    "Signer",
    "UnsupportedAlgorithm",
    "default",
    "find",
    "providers",
    "which",
]
