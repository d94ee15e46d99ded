"""How much two threads packing a model-sized delegation message at once slow each other (hw/node/delegation.py
``pack``): the aggregator's job threads do so at each round's start in concurrent mode. Printed as the ratio of the
wall time of two threads (each packing ``--times`` messages) to one thread's, for ``pack`` and, as the baseline
measured in the same run, a bytearray grown with ``+=`` (which holds the GIL while it copies): 1.0 means the two
ran side by side, 2.0 one after the other.

usage: python bench/pack_threads.py [--bytes 4000000] [--times 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.node.delegation import pack


def grown(head: tuple[int, ...], fields: list[Any]) -> bytearray:
    out = bytearray(bytes(16))
    for f in fields:
        out += memoryview(f)
    return out


def ratio(fn: Callable[[], object], times: int) -> tuple[float, float]:
    """(one message's time alone in s, two threads' wall time / one thread's)."""

    def many() -> None:
        for _ in range(times):
            fn()

    many()  # warm
    t = time.perf_counter()
    many()
    one = time.perf_counter() - t
    threads = [threading.Thread(target=many) for _ in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return one / times, (time.perf_counter() - t) / one


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=4_000_000)
    ap.add_argument("--times", type=int, default=40)
    args = ap.parse_args()
    model = np.frombuffer(os.urandom(args.bytes), np.uint8).copy().data.cast("B")
    fields = [b"client-1", bytes(32), bytes(8), bytes(32), b"", model]
    load = os.getloadavg()[0]
    print(f"{args.bytes:,} B messages, {args.times} a thread; load {load:.2f} (two free cores are needed)")
    for name, fn in (("bytearray += (baseline)", lambda: grown((0,), fields)),
                     ("pack", lambda: pack((1, 2, 3, 4, 5), fields))):  # fmt: skip
        alone_s, r = ratio(fn, args.times)
        print(f"  {name:24s} {alone_s * 1e3:6.3f} ms alone; two threads at once: {r:.2f}x one's wall time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
