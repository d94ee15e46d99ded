"""Cost of the hw.crypto provider interface over calling pyca/cryptography directly.

For each operation: the same op on the same keys, once through our `Kem` / `Signer` / `Aead` objects and
once straight on cryptography's key objects. Each sample times a batch of calls with
``time.perf_counter_ns`` (batches of >= 16 calls lasting >= ~2 ms, so timer resolution does not matter);
samples of the two variants alternate, so drift hits both alike; after a warm-up the median per-call
time is reported. GC is off while timing. Goal: ours/direct <= 1.1 for public-key operations.

"direct" does what the wire needs too: keygen includes exporting the raw public key (our KeyPair
carries it), and the AEAD call passes the same empty AAD.

Usage: python bench/crypto_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from cryptography import __version__ as cryptography_version
from cryptography.hazmat.primitives.asymmetric import mlkem

from hw.crypto.openssl import OpensslProvider

PUBLIC_KEY_GOAL = 1.10
BATCH_NS = 2_000_000  # a sample lasts about this long ...
MIN_CALLS = 16  # ... and has at least this many calls: ML-DSA signing time varies (rejection sampling)


def _per_call_ns(fn: Callable[[], object], inner: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(inner):
        fn()
    return (time.perf_counter_ns() - t0) / inner


def compare(ours: Callable[[], object], direct: Callable[[], object], samples: int) -> tuple[float, float]:
    """Median per-call ns of ``ours`` and ``direct``, sampled alternately after a warm-up."""
    single = min(_per_call_ns(direct, 1) for _ in range(5))
    inner = max(MIN_CALLS, round(BATCH_NS / max(single, 1.0)))
    for _ in range(3):  # warm-up: caches, branch predictors, lazily initialised OpenSSL state
        _per_call_ns(ours, inner)
        _per_call_ns(direct, inner)
    a: list[float] = []
    b: list[float] = []
    gc.disable()
    try:
        for i in range(samples):
            if i % 2:
                a.append(_per_call_ns(ours, inner))
                b.append(_per_call_ns(direct, inner))
            else:
                b.append(_per_call_ns(direct, inner))
                a.append(_per_call_ns(ours, inner))
    finally:
        gc.enable()
    return statistics.median(a), statistics.median(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, noisier)")
    args = parser.parse_args(argv)
    samples = 15 if args.quick else 101

    p = OpensslProvider()
    kem, dsa, ed, aead = (
        p.kem("ML-KEM-768"),
        p.signature("ML-DSA-65"),
        p.signature("Ed25519"),
        p.aead("AES-256-GCM"),
    )
    message = bytes(range(256)) * 4  # 1 KiB, signed and encrypted

    kp = kem.keygen()
    pub = kem.load_public(kp.public_bytes)
    ct, _ = kem.encaps(pub)
    sk_kem, pk_kem = kp.native, pub.native

    dkp = dsa.keygen()
    dpub = dsa.load_public(dkp.public_bytes)
    sig = dsa.sign(dkp, message)
    sk_dsa, pk_dsa = dkp.native, dpub.native

    ekp = ed.keygen()
    sk_ed = ekp.native

    key = aead.keygen()
    nonce = bytes(12)
    record = aead.encrypt(key, nonce, message)
    seal, open_ = key.native.encrypt, key.native.decrypt

    def direct_keygen() -> bytes:
        return mlkem.MLKEM768PrivateKey.generate().public_key().public_bytes_raw()

    # (label, public-key op?, ours, direct)
    rows: list[tuple[str, bool, Callable[[], object], Callable[[], object]]] = [
        ("ML-KEM-768 keygen", True, kem.keygen, direct_keygen),
        ("ML-KEM-768 encaps", True, lambda: kem.encaps(pub), pk_kem.encapsulate),
        ("ML-KEM-768 decaps", True, lambda: kem.decaps(kp, ct), lambda: sk_kem.decapsulate(ct)),
        ("ML-DSA-65 sign 1 KiB", True, lambda: dsa.sign(dkp, message), lambda: sk_dsa.sign(message)),
        (
            "ML-DSA-65 verify 1 KiB",
            True,
            lambda: dsa.verify(dpub, message, sig),
            lambda: pk_dsa.verify(sig, message),
        ),
        ("Ed25519 sign 1 KiB", True, lambda: ed.sign(ekp, message), lambda: sk_ed.sign(message)),
        (
            "AES-256-GCM encrypt 1 KiB",
            False,
            lambda: aead.encrypt(key, nonce, message),
            lambda: seal(nonce, message, b""),
        ),
        (
            "AES-256-GCM decrypt 1 KiB",
            False,
            lambda: aead.decrypt(key, nonce, record),
            lambda: open_(nonce, record, b""),
        ),
    ]

    print(f"hw.crypto (openssl provider) vs cryptography {cryptography_version} called directly")
    print(f"median per call over {samples} alternating samples (batches of >= {MIN_CALLS} calls, >= ~2 ms)")
    print(f"{'operation':<28}{'ours µs':>10}{'direct µs':>11}{'ours/direct':>13}  goal")
    worst = 0.0
    for label, public_key_op, ours, direct in rows:
        a, b = compare(ours, direct, samples)
        ratio = a / b
        goal = ""
        if public_key_op:
            worst = max(worst, ratio)
            goal = "ok" if ratio <= PUBLIC_KEY_GOAL else f"> {PUBLIC_KEY_GOAL}"
        print(f"{label:<28}{a / 1000:>10.2f}{b / 1000:>11.2f}{ratio:>13.3f}  {goal}")
    print(f"worst public-key ratio: {worst:.3f} (goal <= {PUBLIC_KEY_GOAL})")
    if args.quick:
        print("--quick: few samples; ML-DSA signing time varies, so ratios are +-15 %. Judge a full run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
