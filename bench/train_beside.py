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

``--offsets MS,...`` asks a sequential round's question instead: two training steps, one on each core, the second
started MS milliseconds after the first (both processes wait for one instant on the monotonic clock), for
``--seconds`` per offset. Per offset: the first- and the second-started step's medians and the median of their
difference per pair, with its interquartile range. Under a symmetric slowdown (the model's: a step's factor depends
only on how many run beside it) the two take the same time; the twin's sequential 1 M rounds ran their
first-started training a median 12 ms longer than the other in one matrix (docs/twin-validation.md, stop 59).

Run: python bench/train_beside.py [--parameters 1000000] [--samples 500] [--bytes 4000000] [--seconds 8]
     [--kinds idle,train,crypto,loopback] [--timed train|crypto] [--offsets MS,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits

from hw import tcp
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
    with tcp.listener(("127.0.0.1", 0), tcp.CALIBRATED) as srv:
        tx = tcp.dial(srv.getsockname(), tcp.CALIBRATED)
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


def _second_core(train: Callable[[], Any], cpu: int, orders: int, done: int) -> NoReturn:
    """The forked second core of ``staggered``: pinned, then per order (the instant to start) waits for that
    instant, runs a step, and answers with its seconds; ends when the orders end."""
    code = 1
    try:
        os.sched_setaffinity(0, {cpu})
        with threadpool_limits(1):
            train()  # warm, as the first core's step is
            os.write(done, struct.pack("d", 0.0))
            while len(order := os.read(orders, 8)) == 8:
                (at,) = struct.unpack("d", order)
                while time.monotonic() < at:
                    pass
                t0 = time.perf_counter()
                train()
                os.write(done, struct.pack("d", time.perf_counter() - t0))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


LEAD_S = 0.002  # from an order to the first step's start: the order reaches the other process before it


def staggered(train: Callable[[], Any], offset_s: float, seconds: float, cores: tuple[int, int]) -> dict[str, Any]:
    """Pairs of training steps for ``seconds`` (at least 3): the first on ``cores[0]`` (the caller pinned there), the
    second on ``cores[1]`` ``offset_s`` later."""
    orders_r, orders_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(orders_w)
        os.close(done_r)
        _second_core(train, cores[1], orders_r, done_w)
    os.close(orders_r)
    os.close(done_w)
    first: list[float] = []
    second: list[float] = []
    try:
        if len(os.read(done_r, 8)) != 8:
            raise RuntimeError(f"the second core's process (on core {cores[1]}) ended before it was ready")
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(first) < 3:
            at = time.monotonic() + LEAD_S
            os.write(orders_w, struct.pack("d", at + offset_s))
            while time.monotonic() < at:
                pass
            t0 = time.perf_counter()
            train()
            first.append(time.perf_counter() - t0)
            answer = os.read(done_r, 8)
            if len(answer) != 8:
                raise RuntimeError("the second core's process ended mid-pair")
            second.append(struct.unpack("d", answer)[0])
            time.sleep(0.02)  # both idle a moment, as a round's steps are apart
    finally:
        os.close(orders_w)
        os.waitpid(pid, 0)
        os.close(done_r)
    a, b = np.array(first), np.array(second)
    diff = a - b
    return {"offset_s": offset_s, "pairs": len(a), "first_p50_s": float(np.median(a)),
            "second_p50_s": float(np.median(b)), "first_minus_second_p50_s": float(np.median(diff)),
            "first_minus_second_p25_s": float(np.percentile(diff, 25)),
            "first_minus_second_p75_s": float(np.percentile(diff, 75))}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parameters", type=int, default=1_000_000, help="the model's parameters (the 1 M cells')")
    ap.add_argument("--samples", type=int, default=500, help="samples a step trains on (localhost.yaml's)")
    ap.add_argument("--bytes", type=int, default=4_000_000, help="the buffers of crypto and loopback (a 1 M model's)")
    ap.add_argument("--seconds", type=float, default=8.0, help="per kind")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--timed", choices=("train", "crypto"), default="train",
                    help="what the first core times: the training step, or one pass of the crypto work")  # fmt: skip
    ap.add_argument("--offsets", default=None, help="comma-separated ms: two steps, the second started that much "
                    "after the first, instead of --kinds")  # fmt: skip
    ap.add_argument("--json", type=out_json, help="write the rows here")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if bad := [k for k in kinds if k not in KINDS]:
        ap.error(f"--kinds {','.join(bad)}: not one of {', '.join(KINDS)}")
    offsets = _offsets(ap, args)
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
    if offsets is not None:
        return _staggered_main(args, train, offsets, (cores[0], cores[1]))
    step = train if args.timed == "train" else crypto_pass(args.bytes)
    rows, load0, load1 = on_first_core(
        cores[0], step, lambda: [measure(k, step, train, args.bytes, args.seconds, (cores[0], cores[1])) for k in kinds]
    )
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


def _offsets(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[float] | None:
    """--offsets as seconds (None: not given); one line for a bad one."""
    if args.offsets is None:
        return None
    out = []
    for part in args.offsets.split(","):
        try:
            ms = float(part)
        except ValueError:
            ap.error(f"--offsets {part!r}: not a number of milliseconds")
        if not 0 <= ms <= 10_000:
            ap.error(f"--offsets {part}: must be in [0, 10000] ms")
        out.append(ms / 1e3)
    return out


def on_first_core(core: int, warm: Callable[[], Any],
                  rows: Callable[[], list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], float, float]:  # fmt: skip
    """``rows()`` with this process pinned to ``core`` and one thread per step (as the twin's clients train), after
    one ``warm()``; its rows and the load average before and after. The affinity is given back after."""
    load0 = os.getloadavg()[0]
    mine = set(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, {core})
        with threadpool_limits(1):
            warm()
            out = rows()
    finally:
        os.sched_setaffinity(0, mine)
    return out, load0, os.getloadavg()[0]


def _staggered_main(args: argparse.Namespace, train: Callable[[], Any], offsets: list[float],
                    cores: tuple[int, int]) -> int:  # fmt: skip
    rows, load0, load1 = on_first_core(cores[0], train, lambda: [staggered(train, d, args.seconds, cores)
                                                                 for d in offsets])  # fmt: skip
    print(f"two training steps of {args.parameters:,} parameters x {args.samples} samples, on cores {cores[0]} and "
          f"{cores[1]}, the second started after the first; load average {load0:.2f} -> "
          f"{load1:.2f}")  # fmt: skip
    print(f"{'offset':>8s} {'pairs':>6s} {'first p50':>10s} {'second p50':>11s} {'first - second p50 [IQR]':>32s}")
    for r in rows:
        print(f"{r['offset_s'] * 1e3:5.1f} ms {r['pairs']:6d} {r['first_p50_s'] * 1e3:7.2f} ms "
              f"{r['second_p50_s'] * 1e3:8.2f} ms {r['first_minus_second_p50_s'] * 1e3:+10.2f} ms "
              f"[{r['first_minus_second_p25_s'] * 1e3:+.2f}, {r['first_minus_second_p75_s'] * 1e3:+.2f}]")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"staggered": True, "parameters": args.parameters, "samples": args.samples,
                                         "load_before": load0, "load_after": load1, "rows": rows},
                                        indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
