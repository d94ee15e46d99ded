"""Which of the twin's operations let two threads of one process run at once (the interpreter lock released)?

A concurrent run without worker pods does its crypto on threads of the aggregator's process (hw/node/aggregator.py),
and every node's threads share one interpreter lock: an operation that holds it while it runs serialises the
threads, one that releases it (a C library called with the lock dropped) lets them use two cores. For each
operation, the same number of calls on one thread and split over two, alternated ``--trials`` times; the speed-up
is their median ratio (2: released; 1: held). On this 2-vCPU machine a busy neighbour lowers both alike.

Run: python bench/gil_release.py [--bytes 200000] [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from hw import fl
from hw.crypto import registry
from hw.node.delegation import DISTRIBUTE, JOB, pack


def operations(nbytes: int) -> dict[str, Callable[[], object]]:
    """The twin's per-message operations at ``nbytes``, from every provider that offers them."""
    theta = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    msg = fl.serialize(theta)
    ops: dict[str, Callable[[], object]] = {
        f"serialize {nbytes:,} B": lambda: fl.serialize(theta),
        f"deserialize {nbytes:,} B": lambda: fl.deserialize(msg),
        f"pack a job {nbytes:,} B": lambda: pack((JOB, DISTRIBUTE, 1, 1, 0), [b"client-1", bytes(32), msg]),
    }
    aead = registry.find("AES-256-GCM", "aead")
    key, nonce = aead.keygen(), os.urandom(12)
    sealed = aead.encrypt(key, nonce, msg)
    ops[f"AES-256-GCM encrypt {nbytes:,} B ({aead.provider})"] = lambda: aead.encrypt(key, nonce, msg)
    ops[f"AES-256-GCM decrypt {nbytes:,} B ({aead.provider})"] = lambda: aead.decrypt(key, nonce, sealed)
    for offer in (o for o in registry.which("ML-KEM-768") if o.available):
        kem = registry.find("ML-KEM-768", "kem", prefer=offer.provider)
        pair = kem.keygen()
        ct, _ = kem.encaps(pair.public)
        ops[f"ML-KEM-768 encaps ({kem.provider})"] = lambda kem=kem, pair=pair: kem.encaps(pair.public)
        ops[f"ML-KEM-768 decaps ({kem.provider})"] = lambda kem=kem, pair=pair, ct=ct: kem.decaps(pair, ct)
    for offer in (o for o in registry.which("ML-DSA-65") if o.available):
        sig = registry.find("ML-DSA-65", "signature", prefer=offer.provider)
        signer = sig.keygen()
        signature = sig.sign(signer, msg)
        ops[f"ML-DSA-65 sign {nbytes:,} B ({sig.provider})"] = lambda sig=sig, kp=signer: sig.sign(kp, msg)
        ops[f"ML-DSA-65 verify {nbytes:,} B ({sig.provider})"] = lambda sig=sig, kp=signer, s=signature: sig.verify(
            kp.public, msg, s
        )
    return ops


def wall(fn: Callable[[], object], calls: int, threads: int) -> float:
    def work() -> None:
        for _ in range(calls // threads):
            fn()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    t = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", type=int, default=200_000, help="message size (default: a 50 k-parameter model)")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    if not 4 <= args.bytes <= 1 << 28 or not 1 <= args.trials <= 1000:
        ap.error(f"--bytes {args.bytes} --trials {args.trials}: 4 bytes to 256 MiB, 1 to 1,000 trials")
    print(f"load average {os.getloadavg()[0]:.2f}, cores {sorted(os.sched_getaffinity(0))}")
    print(f"{'operation':<44} {'a call':>10}  two threads vs one")
    for name, fn in operations(args.bytes).items():
        fn()
        t = time.perf_counter()
        fn()
        calls = 2 * max(10, int(0.05 / max(time.perf_counter() - t, 1e-7)))  # ~0.1 s a measurement
        ratios, per_call = [], []
        for _ in range(args.trials):
            one = wall(fn, calls, 1)
            ratios.append(one / wall(fn, calls, 2))
            per_call.append(one / calls)
        print(f"{name:<44} {statistics.median(per_call) * 1e6:8.1f} µs  {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
