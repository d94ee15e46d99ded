"""``pqtwin calibrate``'s delegation hop (``job.glue``): the CPU a job hop costs in the twin's own code beyond
what the profile prices.

In concurrent mode the aggregator hands each verification and each sealing of the model to a crypto worker
process: the job goes over their secure channel and the answer comes back (hw/node/delegation.py). The simulator
prices each hop as the profile's ``serialize`` (packing the job), the AEAD's ``encrypt`` and ``decrypt`` and the
kernel's ``net.loopback`` copy. The twin's code around them -- the job thread taken from the pool, the record
read into a fresh buffer, the fields decoded, the spans kept -- costs a little more: measured here (with the
twin's allocator settings, hw/runtime.py), 1-4 µs a hop end at 1 KiB, 11-17 µs at 256 KiB and ~0.3 ms at
4 MiB. A training run of the twin (sequential) never runs a hop, so ``calibrate --from-run`` cannot learn it.

Measured with the twin's code itself: the aggregator's ``WorkerPool`` (a job thread per job, as the aggregator
submits them) against a forked worker process running the worker's ``serve`` loop over TCP on 127.0.0.1, both
ends' thread CPU time per job at each size. The answer repeats the job's payload (a verified update is the
size of the record it came in; the crypto between is priced separately). ``job.glue`` is per hop end, in
bytes of the hop's plaintext: (CPU of both ends − what the profile prices for the two hops) / 4.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import types
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from hw import tcp
from hw.channel import HEADER, Channel, Delegation, Identity, Suite, load_trust
from hw.crypto import registry
from hw.node.common import Node
from hw.node.delegation import DONE_OK, VERIFY, Job, WorkerPool, encode_job, pack
from hw.node.worker import serve
from hw.runconfig import RunConfig
from sim.profile import LinearOp

SIZES_BYTES = {False: (1024, 65536, 262144, 1 << 20, 4 << 20), True: (1024, 262144, 1 << 20)}
JOBS = {False: 40, True: 12}  # per size, after 3 to warm up
AEAD = "AES-256-GCM"
PRICED = ("serialize", f"{AEAD}.encrypt", f"{AEAD}.decrypt", "net.loopback")  # what the simulator charges a hop
HANDSHAKE = (("ML-KEM-768", "ML-DSA-65"), ("X25519", "Ed25519"))  # the channel's own keys: either will do


def measure_glue(ops: dict[str, Any], quick: bool) -> tuple[list[int], list[float]] | None:
    """(payload sizes in bytes, ``job.glue`` seconds per hop end at each), or None when ``ops`` cannot price a
    hop (no AES-256-GCM, serialisation or loopback measured) or this host has no suite for the channel."""
    if not all(op in ops for op in PRICED) or (suite := _suite()) is None:
        return None
    priced = {op: LinearOp.model_validate(ops[op]) for op in PRICED}
    sizes, glue = [], []
    for n, (agg_cpu, worker_cpu, job_bytes, answer_bytes) in _hops(suite, quick).items():
        cost = sum(priced[op].base_s(b) for op in PRICED for b in (job_bytes, answer_bytes))
        sizes.append(n)
        glue.append(max(1e-7, (float(np.median(agg_cpu + worker_cpu)) - cost) / 4))
    return sizes, glue


def _suite() -> Suite | None:
    here = registry.default().algorithms()
    for kem, sig in HANDSHAKE:
        if {kem, sig, AEAD} <= here:
            return Suite(kem, sig, AEAD)
    return None


def _hops(suite: Suite, quick: bool) -> dict[int, tuple[np.ndarray, np.ndarray, int, int]]:
    """{payload bytes: (aggregator CPU per job, worker CPU per job, job plaintext, answer plaintext)}."""
    agg, worker = Identity.generate("aggregator", suite), Identity.generate("worker-1", suite)
    trust = load_trust(suite, {"aggregator": agg.public(), "worker-1": worker.public()})
    with tcp.listener(("127.0.0.1", 0), tcp.CALIBRATED) as srv:
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker process: the twin's serve loop, then its CPU per job to the parent
            try:
                os.close(report_r)
                _worker(srv.getsockname(), worker, suite, trust, report_w)
            finally:
                os._exit(0)
        os.close(report_w)
        report = os.fdopen(report_r)
        try:
            sock, _ = srv.accept()
            agg_cpu, plaintexts = _aggregator(sock, agg, suite, trust, quick)
            rows = json.load(report)  # written once the aggregator's side closed the channel
        finally:
            report.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # a worker left waiting by a failure here
            os.waitpid(pid, 0)
    worker_cpu = {n: np.array([c for m, c in rows if m == n][3:]) for n in agg_cpu}  # warm-up dropped
    return {n: (agg_cpu[n], worker_cpu[n], *plaintexts[n]) for n in agg_cpu}


def _node(name: str) -> Node:
    """A node for the code under measurement to keep its spans in (on the monotonic clock, no run directory)."""
    cfg = types.SimpleNamespace(clock="mono", epoch=time.monotonic(), pods={}, pod_of=lambda p: p, host_of=lambda p: p)
    return Node(Path(os.devnull), name, cast(RunConfig, cfg), None, None)  # type: ignore[arg-type]


def _aggregator(sock: socket.socket, me: Identity, suite: Suite, trust: Any,
                quick: bool) -> tuple[dict[int, np.ndarray], dict[int, tuple[int, int]]]:  # fmt: skip
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    node = _node("aggregator")
    ch = Channel(sock, me, suite, trust, counters=Counter())
    ch.accept(lambda *_: contextlib.nullcontext())
    pool = WorkerPool(node, {"worker-1": ch}, lambda job: bytearray())
    cpu: dict[int, np.ndarray] = {}
    plaintexts: dict[int, tuple[int, int]] = {}
    with ThreadPoolExecutor(1) as threads:  # the aggregator's job threads, as in a concurrent round
        for n in SIZES_BYTES[quick]:
            payload = memoryview(os.urandom(n // 4 * 4))
            timed: list[float] = []
            for i in range(3 + JOBS[quick]):
                job = Job(VERIFY, 1, "client-1", Delegation(bytes(32), bytes(4), bytes(32), i + 1),
                          bytes(HEADER.size), payload)  # fmt: skip
                spent = threads.submit(_timed, pool.verify, job, node.now()).result()
                timed += [spent] if i >= 3 else []
            cpu[n] = np.array(timed)
            plaintexts[n] = (len(encode_job(job)), len(_echo(job)))
    pool.close()
    return cpu, plaintexts


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    """This thread's CPU time for ``fn(*args)``."""
    t0 = time.thread_time()
    fn(*args)
    return time.thread_time() - t0


def _echo(job: Job) -> bytearray:
    """The worker's answer to a verification, without the crypto between: the payload back."""
    return pack((DONE_OK, job.kind, job.round, 0, 0), [b"", job.payload])


def _worker(address: tuple[str, int], me: Identity, suite: Suite, trust: Any, report: int) -> None:
    sock = tcp.dial(address, tcp.CALIBRATED)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ch = Channel(sock, me, suite, trust, counters=Counter())
    ch.initiate("aggregator", lambda *_: contextlib.nullcontext())
    per_job: list[tuple[int, float]] = []
    last = [time.thread_time()]

    def served(job: Job) -> None:  # this thread's CPU since the last job: reading, opening, answering
        now = time.thread_time()
        per_job.append((len(job.payload), now - last[0]))
        last[0] = now

    serve(_node("worker-1"), ch, "aggregator", AEAD, _echo, served)
    with os.fdopen(report, "w") as f:
        json.dump(per_job, f)
