"""What slows a training step on this machine (issue 9): the twin's step beside other work on the other core.

The simulator slows a training only while another training runs on the host's other cores (``fl.train``'s
``pair_slowdown``, measured by ``pqtwin calibrate``). The twin's rounds run trainings beside other work too: in a
sequential round, the first client trains while the aggregator seals the next client's model and that client
opens it (hashing, AEAD and copies over MB-sized buffers, and their transfer over TCP loopback). This bench times
the twin's own training step (``hw.fl.train``, one epoch, one thread) pinned to the first allowed core while the
second runs, in a forked process:

- idle: nothing (the control: its ratio should be ~1);
- train: the same training step, in a loop (what ``pair_slowdown`` measures);
- crypto: SHAKE-256, AES-256-GCM and a copy over a ``--bytes`` buffer, in a loop (a model's sealing and opening);
- loopback: ``--bytes`` messages sent over a TCP connection on 127.0.0.1 to a thread of the same process, in a loop.

``--timed crypto`` turns it round: the first core times one pass of the crypto work instead (a 1 M model's sealing
or opening by a crypto worker), beside a training (or the other kinds) on the second -- what a worker's job meets
when a client trains on the other core (a concurrent round: the first client trains while the worker seals the
second client's model).

Each step is timed alone (the other process stopped with SIGSTOP) and then beside it (SIGCONT), alternately for
``--seconds`` per kind, so both see the host's state alike; the ratio is beside / alone per adjacent pair. It prints
per kind the medians and the median ratio with its interquartile range, and the host's load average before and
after: a busy neighbour makes it meaningless.

Run: python bench/train_beside.py [--parameters 1000000] [--samples 500] [--bytes 4000000] [--seconds 8]
     [--kinds idle,train,crypto,loopback] [--timed train|crypto] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits

from hw.calibrate import forever, time_beside, training_job
from hw.crypto import registry
from hw.runtime import tune_allocator
from sim.loading import out_json

KINDS = ("idle", "train", "crypto", "loopback")
MAX_PARAMETERS, MAX_SAMPLES, MAX_BYTES = 10_000_000, 10_000, 1 << 28  # a step of seconds, buffers of 256 MiB


def crypto_pass(nbytes: int) -> Callable[[], None]:
    """One pass of a model's sealing over an ``nbytes`` buffer: its signature's message hash, its record's AEAD, a
    copy (serialising)."""
    aead = registry.find("AES-256-GCM", "aead")
    key, nonce, buf = aead.keygen(), bytes(12), os.urandom(nbytes)

    def one() -> None:
        hashlib.shake_256(buf).digest(64)
        aead.encrypt(key, nonce, buf)
        bytearray(buf)

    return one


def _crypto(nbytes: int) -> None:
    forever(crypto_pass(nbytes))


def _loopback(nbytes: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        tx = socket.create_connection(srv.getsockname())
        rx, _ = srv.accept()

        def drain() -> None:
            buf = bytearray(1 << 20)
            while rx.recv_into(buf):
                pass

        threading.Thread(target=drain, daemon=True).start()
        payload = b"\x01" * nbytes
        while True:
            tx.sendall(payload)


def _beside(kind: str, train: Callable[[], Any], nbytes: int) -> None:
    """The other core's work, forever (the parent kills it)."""
    if kind == "train":
        forever(train)
    elif kind == "crypto":
        _crypto(nbytes)
    elif kind == "loopback":
        _loopback(nbytes)
    while True:  # idle
        time.sleep(1.0)


def measure(kind: str, step: Callable[[], Any], train: Callable[[], Any], nbytes: int, seconds: float,
            cores: tuple[int, int]) -> dict[str, Any]:  # fmt: skip
    """Adjacent (alone, beside) times of ``step``, ``seconds`` of them, with ``kind`` on the second core
    (``hw.calibrate.time_beside``, which ``pqtwin calibrate`` measures ``pair_slowdown`` with); the caller pinned
    this process to the first core with one thread per step."""
    a, b = time_beside(step, functools.partial(_beside, kind, train, nbytes), seconds, cores)
    ratio = b / a
    return {"kind": kind, "pairs": len(a), "alone_p50_s": float(np.median(a)), "beside_p50_s": float(np.median(b)),
            "ratio_p50": float(np.median(ratio)), "ratio_p25": float(np.percentile(ratio, 25)),
            "ratio_p75": float(np.percentile(ratio, 75))}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parameters", type=int, default=1_000_000, help="the model's parameters (the 1 M cells')")
    ap.add_argument("--samples", type=int, default=500, help="samples a step trains on (localhost.yaml's)")
    ap.add_argument("--bytes", type=int, default=4_000_000, help="the buffers of crypto and loopback (a 1 M model's)")
    ap.add_argument("--seconds", type=float, default=8.0, help="per kind")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--timed", choices=("train", "crypto"), default="train",
                    help="what the first core times: the training step, or one pass of the crypto work")  # fmt: skip
    ap.add_argument("--json", type=out_json, help="write the rows here")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if bad := [k for k in kinds if k not in KINDS]:
        ap.error(f"--kinds {','.join(bad)}: not one of {', '.join(KINDS)}")
    limits = {"parameters": (1, MAX_PARAMETERS), "samples": (1, MAX_SAMPLES), "bytes": (1, MAX_BYTES),
              "seconds": (1e-3, 600)}  # fmt: skip
    for name, (lo, hi) in limits.items():
        if not lo <= getattr(args, name) <= hi:  # beyond: hours, or more memory than this machine has
            ap.error(f"--{name} {getattr(args, name):g}: must be in [{lo:g}, {hi:g}]")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("needs two usable cores (os.sched_getaffinity): nothing measured")
        return 1
    tune_allocator()  # as the twin's nodes run
    _, train = training_job(args.samples, args.parameters, np.random.default_rng(0))  # as calibrate times it
    step = train if args.timed == "train" else crypto_pass(args.bytes)
    load0 = os.getloadavg()[0]
    mine = set(cores)
    rows = []
    try:
        os.sched_setaffinity(0, {cores[0]})
        with threadpool_limits(1):  # one core per step, as the twin's clients run it
            step()  # warm
            rows = [measure(k, step, train, args.bytes, args.seconds, (cores[0], cores[1])) for k in kinds]
    finally:
        os.sched_setaffinity(0, mine)
    load1 = os.getloadavg()[0]
    timed = (f"training step of {args.parameters:,} parameters x {args.samples} samples" if args.timed == "train"
             else f"crypto pass over {args.bytes:,} bytes (SHAKE-256, AES-256-GCM, a copy)")  # fmt: skip
    print(f"{timed} on core {cores[0]}; beside it on core {cores[1]} (train: {args.parameters:,} parameters x "
          f"{args.samples} samples); load average {load0:.2f} -> {load1:.2f}")  # fmt: skip
    print(f"{'beside':10s} {'pairs':>6s} {'alone p50':>10s} {'beside p50':>11s} {'ratio p50 [IQR]':>22s}")
    for r in rows:
        print(f"{r['kind']:10s} {r['pairs']:6d} {r['alone_p50_s'] * 1e3:8.2f} ms {r['beside_p50_s'] * 1e3:8.2f} ms "
              f"{r['ratio_p50']:8.3f} [{r['ratio_p25']:.3f}, {r['ratio_p75']:.3f}]")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"timed": args.timed, "parameters": args.parameters, "samples": args.samples,
                                         "bytes": args.bytes, "load_before": load0, "load_after": load1,
                                         "rows": rows}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
