"""Cost of the hw.crypto provider interface over calling the libraries (pyca/cryptography, liboqs) directly.

For each operation: the same op on the same keys, once through our `Kem` / `Signer` / `Aead` objects and
once straight on cryptography's key objects (openssl provider) or liboqs-python's ``oqs.KeyEncapsulation`` /
``oqs.Signature`` (liboqs provider, when available here: set ``OQS_INSTALL_PATH``). Each sample times a
batch of calls with ``time.perf_counter_ns`` (batches of >= 16 calls lasting >= ~2 ms, so timer resolution
does not matter); samples of the two variants alternate, so drift hits both alike; after a warm-up the
median per-call time is reported. GC is off while timing. Goal: ours/direct <= 1.1 for public-key operations.

"direct" does what the wire needs too: keygen includes exporting the raw public key (our KeyPair
carries it), and the AEAD call passes the same empty AAD. liboqs keygen creates, and frees, one
``oqs`` object per key pair in both variants (ours frees it when the discarded KeyPair goes away).
SLH-DSA signing (~50 ms a call) is timed with single-call batches and few samples; SLH-DSA-SHA2-128s not at all.

Last, liboqs against openssl on the ops both implement (ML-KEM-768/1024, ML-DSA-44/65/87), our interface on
both sides, sampled the same way: what choosing ``prefer="liboqs"`` costs or saves.

Usage: python bench/crypto_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from cryptography import __version__ as cryptography_version
from cryptography.hazmat.primitives.asymmetric import mlkem

from hw.crypto.liboqs import LiboqsProvider
from hw.crypto.openssl import OpensslProvider

PUBLIC_KEY_GOAL = 1.10
BATCH_NS = 2_000_000  # a sample lasts about this long ...
MIN_CALLS = 16  # ... and has at least this many calls: ML-DSA signing time varies (rejection sampling)
SLOW_SAMPLES = 11  # samples (single calls) for SLH-DSA signing: ~35 signatures per variant with the warm-up
LIBOQS_KEMS = ("ML-KEM-512", "ML-KEM-768", "ML-KEM-1024")
LIBOQS_SIGNATURES = ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "Falcon-512", "SLH-DSA-SHA2-128f")
BOTH_KEMS = ("ML-KEM-768", "ML-KEM-1024")  # implemented by both providers
BOTH_SIGNATURES = ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87")
MESSAGE = bytes(range(256)) * 4  # 1 KiB, signed and encrypted


class Row(NamedTuple):
    label: str
    public_key_op: bool  # held to PUBLIC_KEY_GOAL
    ours: Callable[[], object]
    direct: Callable[[], object]
    slow: bool = False  # single-call batches, at most SLOW_SAMPLES samples


def _per_call_ns(fn: Callable[[], object], inner: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(inner):
        fn()
    return (time.perf_counter_ns() - t0) / inner


def compare(
    ours: Callable[[], object], direct: Callable[[], object], samples: int, min_calls: int = MIN_CALLS
) -> tuple[float, float]:
    """Median per-call ns of ``ours`` and ``direct``, sampled alternately after a warm-up."""
    single = min(_per_call_ns(direct, 1) for _ in range(5))
    inner = max(min_calls, round(BATCH_NS / max(single, 1.0)))
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


def openssl_rows() -> list[Row]:
    p = OpensslProvider()
    kem, dsa, ed, aead = (
        p.kem("ML-KEM-768"),
        p.signature("ML-DSA-65"),
        p.signature("Ed25519"),
        p.aead("AES-256-GCM"),
    )
    message = MESSAGE

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

    return [
        Row("ML-KEM-768 keygen", True, kem.keygen, direct_keygen),
        Row("ML-KEM-768 encaps", True, lambda: kem.encaps(pub), pk_kem.encapsulate),
        Row("ML-KEM-768 decaps", True, lambda: kem.decaps(kp, ct), lambda: sk_kem.decapsulate(ct)),
        Row("ML-DSA-65 sign 1 KiB", True, lambda: dsa.sign(dkp, message), lambda: sk_dsa.sign(message)),
        Row(
            "ML-DSA-65 verify 1 KiB", True, lambda: dsa.verify(dpub, message, sig), lambda: pk_dsa.verify(sig, message)
        ),
        Row("Ed25519 sign 1 KiB", True, lambda: ed.sign(ekp, message), lambda: sk_ed.sign(message)),
        Row(
            "AES-256-GCM encrypt 1 KiB",
            False,
            lambda: aead.encrypt(key, nonce, message),
            lambda: seal(nonce, message, b""),
        ),
        Row(
            "AES-256-GCM decrypt 1 KiB",
            False,
            lambda: aead.decrypt(key, nonce, record),
            lambda: open_(nonce, record, b""),
        ),
    ]


def _secret_key(alg: Any, keypair: Any) -> bytes:
    """liboqs' secret key from the provider's export format ``len(pk) (4 B) || pk || sk``."""
    raw = alg.export_private(keypair)
    return raw[4 + int.from_bytes(raw[:4], "big") :]


def _liboqs_kem_rows(p: LiboqsProvider, oqs: Any, name: str) -> list[Row]:
    kem = p.kem(name)
    kp = kem.keygen()
    pub = kem.load_public(kp.public_bytes)
    ct, _ = kem.encaps(pub)
    oqs_name = p.liboqs_name(name)
    encapsulator = oqs.KeyEncapsulation(oqs_name)
    holder = oqs.KeyEncapsulation(oqs_name, secret_key=_secret_key(kem, kp))  # the same key, held directly
    pk = kp.public_bytes

    def direct_keygen() -> bytes:
        obj = oqs.KeyEncapsulation(oqs_name)
        public = obj.generate_keypair()
        obj.free()
        return public

    return [
        Row(f"{name} keygen", True, kem.keygen, direct_keygen),
        Row(f"{name} encaps", True, lambda: kem.encaps(pub), lambda: encapsulator.encap_secret(pk)),
        Row(f"{name} decaps", True, lambda: kem.decaps(kp, ct), lambda: holder.decap_secret(ct)),
    ]


def _liboqs_signature_rows(p: LiboqsProvider, oqs: Any, name: str) -> list[Row]:
    signer = p.signature(name)
    kp = signer.keygen()
    pub = signer.load_public(kp.public_bytes)
    sig = signer.sign(kp, MESSAGE)
    oqs_name = p.liboqs_name(name)
    holder = oqs.Signature(oqs_name, secret_key=_secret_key(signer, kp))
    verifier = oqs.Signature(oqs_name)
    pk = kp.public_bytes
    slow = name.startswith("SLH-DSA")
    return [
        Row(f"{name} sign 1 KiB", True, lambda: signer.sign(kp, MESSAGE), lambda: holder.sign(MESSAGE), slow),
        Row(
            f"{name} verify 1 KiB",
            True,
            lambda: signer.verify(pub, MESSAGE, sig),
            lambda: verifier.verify(MESSAGE, sig, pk),
        ),
    ]


def liboqs_rows(p: LiboqsProvider) -> list[Row]:
    import oqs  # type: ignore[import-not-found,unused-ignore]  # already loaded by the available provider

    rows: list[Row] = []
    for name in LIBOQS_KEMS:
        if name in p.algorithms("kem"):
            rows += _liboqs_kem_rows(p, oqs, name)
    for name in LIBOQS_SIGNATURES:
        if name in p.algorithms("signature"):
            rows += _liboqs_signature_rows(p, oqs, name)
    return rows


def cross_rows(p: LiboqsProvider) -> list[Row]:
    """(label, public-key op, liboqs, openssl): our interface on both sides; "ours" is liboqs here."""
    o = OpensslProvider()
    rows: list[Row] = []
    for name in BOTH_KEMS:
        if name not in p.algorithms("kem"):
            continue
        a, b = p.kem(name), o.kem(name)
        akp, bkp = a.keygen(), b.keygen()
        act, _ = a.encaps(akp.public)
        bct, _ = b.encaps(bkp.public)
        rows += [
            Row(f"{name} keygen", True, a.keygen, b.keygen),
            Row(f"{name} encaps", True, lambda a=a, k=akp: a.encaps(k.public), lambda b=b, k=bkp: b.encaps(k.public)),
            Row(
                f"{name} decaps",
                True,
                lambda a=a, k=akp, c=act: a.decaps(k, c),
                lambda b=b, k=bkp, c=bct: b.decaps(k, c),
            ),
        ]
    for name in BOTH_SIGNATURES:
        if name not in p.algorithms("signature"):
            continue
        sa, sb = p.signature(name), o.signature(name)
        akp, bkp = sa.keygen(), sb.keygen()
        asig, bsig = sa.sign(akp, MESSAGE), sb.sign(bkp, MESSAGE)
        rows += [
            Row(f"{name} keygen", True, sa.keygen, sb.keygen),
            Row(
                f"{name} sign 1 KiB",
                True,
                lambda s=sa, k=akp: s.sign(k, MESSAGE),
                lambda s=sb, k=bkp: s.sign(k, MESSAGE),
            ),
            Row(
                f"{name} verify 1 KiB",
                True,
                lambda s=sa, k=akp, g=asig: s.verify(k.public, MESSAGE, g),
                lambda s=sb, k=bkp, g=bsig: s.verify(k.public, MESSAGE, g),
            ),
        ]
    return rows


def _table(rows: list[Row], samples: int, heads: tuple[str, str, str], goal: float | None) -> float:
    """Print one line per row (ours, direct, ratio); the worst ratio over public-key ops."""
    print(f"{'operation':<32}{heads[0]:>11}{heads[1]:>11}{heads[2]:>15}" + ("  goal" if goal else ""))
    worst = 0.0
    for row in rows:
        n, calls = (min(samples, SLOW_SAMPLES), 1) if row.slow else (samples, MIN_CALLS)
        a, b = compare(row.ours, row.direct, n, calls)
        ratio = a / b
        mark = ""
        if row.public_key_op:
            worst = max(worst, ratio)
            if goal:
                mark = "  ok" if ratio <= goal else f"  > {goal}"
        slow = f"  ({n} single-call samples)" if row.slow else ""
        print(f"{row.label:<32}{a / 1000:>11.2f}{b / 1000:>11.2f}{ratio:>15.3f}{mark}{slow}")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, noisier)")
    args = parser.parse_args(argv)
    samples = 15 if args.quick else 101

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (a busy machine makes the ratios noisy)")
    print()
    print(f"hw.crypto (openssl provider) vs cryptography {cryptography_version} called directly")
    print(f"median per call over {samples} alternating samples (batches of >= {MIN_CALLS} calls, >= ~2 ms)")
    worst = _table(openssl_rows(), samples, ("ours µs", "direct µs", "ours/direct"), PUBLIC_KEY_GOAL)
    print(f"worst public-key ratio: {worst:.3f} (goal <= {PUBLIC_KEY_GOAL})")

    p = LiboqsProvider()
    print()
    if not p.available:
        print(f"liboqs: skipped, provider unavailable: {p.reason}")
    else:
        print(f"hw.crypto (liboqs provider) vs liboqs-python called directly, liboqs {p.version}")
        worst = _table(liboqs_rows(p), samples, ("ours µs", "direct µs", "ours/direct"), PUBLIC_KEY_GOAL)
        print(f"worst public-key ratio: {worst:.3f} (goal <= {PUBLIC_KEY_GOAL})")
        print()
        print("liboqs vs openssl provider, our interface on both sides")
        _table(cross_rows(p), samples, ("liboqs µs", "openssl µs", "liboqs/openssl"), None)
    if args.quick:
        print("--quick: few samples; ML-DSA signing time varies, so ratios are +-15 %. Judge a full run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
