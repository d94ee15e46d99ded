"""``pqtwin calibrate``: measure this machine into a calibration profile (the format of sim/profile.py).

- Per-call operations (KEM keygen/encaps/decaps, signature keygen/sign/verify on a 32-byte message):
  warm-up, then batches of calls until the 95 % confidence interval of the median is within
  ``TARGET_REL_CI`` of it, or the per-operation time budget ends. Stored as statistics plus an
  ``empirical`` distribution (measured quantiles, sampled by inverse CDF: no shape is assumed).
- Size-dependent operations (AEAD, hashes, serialisation): medians at several sizes, each on a fresh
  buffer, kept as ``points`` (the simulator interpolates between them) and fitted by weighted least
  squares as ``per_call_s + per_byte_s * bytes`` (weights 1/median: relative error) for a summary.
- FL compute: the twin's real training step (hw/fl.py) at several (samples, parameters) and FedAvg at
  several sizes, fitted per sample x parameter and per parameter.
Everything is tagged M (measured here) with its source: provider, machine, n and the median's CI.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import os
import platform
import queue
import re
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np
from threadpoolctl import threadpool_limits

from hw import fl, tcp
from hw.crypto import registry
from hw.hopcal import measure_glue
from hw.runtime import tune_allocator
from hw.speed import SpeedProbe
from hw.trainprobe import training_facts, training_job, training_probe
from sim import catalogue
from sim.errors import UserError
from sim.profile import Profile

TARGET_REL_CI = 0.02
# (samples, parameters) of the training steps measured, full and --quick: from a toy model to 4 M parameters at
# a client's 500 samples (the scenarios' sizes; units = samples x parameters, interpolated between)
TRAINING_SIZES = {
    False: ((64, 20_000), (256, 20_000), (500, 50_000), (500, 250_000), (500, 1_000_000), (500, 4_000_000)),
    True: ((128, 20_000), (500, 250_000), (500, 1_000_000)),
}
PAIR_BUDGET_FACTOR = 2.0  # a size's pairs take this x the budget's per-op seconds (4 s; --quick 0.24 s), and
MIN_PAIRS = 3  # at least this many pairs
SIGNAL_SETTLE_S = 0.002  # after SIGCONT, before the next step: the other process runs again
PR_SET_PDEATHSIG = 1  # Linux prctl: a signal for the child when its parent dies
PAIR_MIN_UNITS = 20e6  # the pair slowdown of smaller steps is noise (the model fits in a core's cache)
MESSAGE = bytes(range(32))

# A size-dependent job: (make a fresh input of n bytes, the timed operation on it).
SizedJob = tuple[Callable[[int], Any], Callable[[Any], Any]]


@dataclass(frozen=True)
class Budget:
    """Time and sample limits of one calibration."""

    per_op_s: float
    min_n: int
    max_n: int
    sizes_bytes: tuple[int, ...]
    per_size_s: float

    @classmethod
    def of(cls, quick: bool) -> Budget:
        if quick:
            return cls(0.12, 5, 2000, (64, 16384, 262144, 1 << 20, 4 << 20), 0.05)
        return cls(2.0, 30, 200_000, (64, 1024, 16384, 131072, 262144, 524288, 1 << 20, 4 << 20), 0.4)


def time_calls(
    fn: Callable[..., Any], budget_s: float, min_n: int, max_n: int, setup: Callable[[], Any] | None = None
) -> np.ndarray:
    """Seconds per call: warm-up, then batches until the median's 95 % CI is tight or time is up.

    With ``setup``, each call gets a fresh argument made outside the timing: payloads then arrive in
    fresh memory, as they do in a real run (re-encrypting one hot buffer is several times faster).
    """
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + budget_s * 0.1
    for _ in range(3):
        fn() if setup is None else fn(setup())
        if time.perf_counter() > deadline:
            break
    samples: list[int] = []
    kept: list[Any] = [None] * 4  # outputs stay alive a while, as in a real process, so memory is not recycled hot
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_n:
        for _ in range(10):
            arg = None if setup is None else setup()
            t0 = clock()
            result = fn() if setup is None else fn(arg)
            samples.append(clock() - t0)
            kept[len(samples) % 4] = result
        if len(samples) >= min_n and (
            median_rel_ci(np.array(samples)) <= TARGET_REL_CI or time.perf_counter() > deadline
        ):
            break
    return np.array(samples, dtype=float) / 1e9


RETRIES = 1  # a measurement the host's slow state caught is taken again, at most this many times
SLOW_WAIT_S = 1.0  # ... once the cores are at speed again, or this long after
SLOW_SHARE = 0.25  # caught: more than this share of its core's samples slow (one may be a hiccup)


def time_calls_at_speed(
    probe: SpeedProbe | None, fn: Callable[..., Any], budget_s: float, min_n: int, max_n: int,
    setup: Callable[[], Any] | None = None, retries: int = RETRIES, wait_s: float = SLOW_WAIT_S,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """``time_calls`` on a core at the usual speed (``SpeedProbe.fast_core``, waiting up to ``wait_s`` for
    one), pinned there, and taken again (up to ``retries`` times) while more than ``SLOW_SHARE`` of that core's
    probe samples saw it slow during the measurement (``SpeedProbe.slow_near``), keeping the attempt with the
    fewest slow samples: this machine's vCPUs switch between two speeds ~1.6x apart, one by one, for seconds at a
    time, and a price measured in the slow state (ML-DSA-65 verify at 255 µs against 168 µs, 2026-11-30 13:23)
    moved every cell that uses it. Bounded so ``bench/twin_fidelity.py --quick`` stays under 5 minutes (two
    retries after up to 2 s each took a full calibration from 1.5 to 2.8 min). Returns the seconds per call and
    the attempts made."""
    best, best_slow, attempts = np.array([]), float("inf"), 0
    while attempts <= retries:
        cpu = probe.fast_core(wait_s) if probe is not None else None
        with _pinned(cpu) as cpu:
            t0 = time.monotonic()
            x = time_calls(fn, budget_s, min_n, max_n, setup)
            t1 = time.monotonic()
        attempts += 1
        slow = probe.slow_near(t0, t1, cpu) if probe is not None else None
        if slow is None or slow < best_slow:
            best, best_slow = x, slow if slow is not None else 0.0
        if best_slow <= SLOW_SHARE:
            break
    return best, attempts


def speed_facts(probe: SpeedProbe) -> dict[str, float]:
    """Stop the calibration's speed probe: the probe time of the state its prices were taken at (hw/speed.py
    ``usual_us``; the median where no state stands out) and the spread of all its samples; {} when none ran."""
    if (speed := probe.stop()) is None:
        return {}
    usual = probe.usual_after_stop()
    return {"speed_probe_us": usual if usual is not None else speed.probe_us_p50, "speed_probe_spread": speed.spread}


BATCHES = 5  # a size of training or FedAvg is timed in this many batches, interleaved with the other sizes
BATCH_WAIT_S = 0.2  # ... each on a core at the usual speed, waiting this long for one; not taken again


def fastest_batches(probe: SpeedProbe | None, jobs: Sequence[Callable[[], Any]], budget_s: float, min_n: int,
                    max_n: int) -> list[np.ndarray]:  # fmt: skip
    """Each job timed in ``BATCHES`` batches (``time_calls_at_speed``, ``budget_s / BATCHES`` each, waiting up to
    ``BATCH_WAIT_S`` for a core at the usual speed, none taken again: the batches are the retries), one batch of
    every job in turn: per job the seconds per call of its batch with the lowest median. A batch is at least
    ``time_calls``' warm-up and ten calls whatever its budget, so a large size costs ~5x its old single
    measurement (the training measurement here 38 -> 61 s with its pair slowdown). A size timed in one go
    could meet the slow state for all of it (the speed probe's retry did not always catch it): on 2026-12-01 two
    calibrations priced a 50 k training step at 6.6 and 8.8 ms where its fast state takes 3.8-4.2 (five interleaved
    batches), and the twin's 50 k cells read 55-82 % long steps and 12-30 % long rounds. The fit brings the twin's
    spans to the calibration's speed (hw/fit.py), so a profile must price one state throughout: the fast one, which
    the speed probe calls usual. On a steady host the fastest of five medians sits a little below their median, by
    about the noise of a batch's median."""
    best: list[np.ndarray] = []
    for k in range(BATCHES):
        for i, fn in enumerate(jobs):
            x, _ = time_calls_at_speed(probe, fn, budget_s / BATCHES, min_n, max_n, retries=0, wait_s=BATCH_WAIT_S)
            if k == 0:
                best.append(x)
            elif np.median(x) < np.median(best[i]):
                best[i] = x
    return best


@contextlib.contextmanager
def _pinned(cpu: int | None) -> Iterator[int | None]:
    """The calling thread on ``cpu`` for the block; yields the core it is pinned to (None: not pinned -- no core
    asked, no affinity here, or not an allowed core any more)."""
    before = os.sched_getaffinity(0) if cpu is not None and hasattr(os, "sched_setaffinity") else None
    if before is not None and cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            before = None
    try:
        yield cpu if before is not None else None
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)


def _again(attempts: int) -> str:
    """What a source says of measurements taken again (``time_calls_at_speed``), '' if none was."""
    return f"; {attempts - 1} measured again (the cores ran slow)" if attempts > 1 else ""


def median_rel_ci(x: np.ndarray) -> float:
    """Half-width of the distribution-free 95 % CI of the median, relative to the median."""
    n = x.size
    if n < 6:
        return float("inf")
    s = np.sort(x)
    half = 1.96 * np.sqrt(n) / 2
    lo, hi = s[max(0, int(n / 2 - half))], s[min(n - 1, int(np.ceil(n / 2 + half)))]
    return float((hi - lo) / 2 / np.median(s))


def per_call_entry(x: np.ndarray, source: str) -> dict[str, Any]:
    trimmed = x[x <= np.quantile(x, 0.995)] if x.size >= 200 else x
    return {
        "kind": "per_call",
        "mean_s": float(x.mean()),
        "p50_s": float(np.median(x)),
        "stdev_s": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "n": int(x.size),
        "distribution": {
            "kind": "empirical",
            "quantiles_s": [float(q) for q in np.quantile(trimmed, np.linspace(0, 1, 21))],
        },
        "source": f"{source}; n={x.size}, median ±{median_rel_ci(x) * 100:.1f} % (95 % CI)",
        "tag": "M",
    }


def linear_entry(
    units: Sequence[float], medians: Sequence[float], spread: float, unit: str, source: str
) -> dict[str, Any]:
    """Weighted least-squares fit t = a + b*units (weights 1/t, i.e. relative error)."""
    u, t = np.array(units, dtype=float), np.array(medians, dtype=float)
    b, a = np.polyfit(u, t, 1, w=1 / t)
    if a < 0:  # no measurable fixed cost: refit through the origin
        a, b = 0.0, float(np.sum(u * t / t**2) / np.sum(u * u / t**2))
    return {
        "kind": "linear",
        "unit": unit,
        "per_call_s": float(a),
        "per_unit_s": float(max(b, 0.0)),
        "cv": float(min(2.0, spread)),
        "points": [[float(x), float(y)] for x, y in zip(u, t, strict=True)],
        "source": f"{source}; fitted on {len(u)} sizes {int(u.min())}..{int(u.max())} {unit}s",
        "tag": "M",
    }


def robust_cv(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))) / np.median(x))


# --- what to measure ----------------------------------------------------------------------------------


def crypto_jobs(name: str, prefer: str | None) -> Iterator[tuple[str, Any, str]]:
    """(op name, callable, provider) for every op of one algorithm; sized ops take a byte count."""
    alg = catalogue.get(name)
    impl: Any = registry.find(name, alg.kind, prefer=prefer)
    who = impl.provider
    if alg.kind in ("kem", "signature"):
        kp = impl.keygen()
        yield f"{name}.keygen", impl.keygen, who
        if alg.kind == "kem":
            ct, _ = impl.encaps(kp.public)
            yield f"{name}.encaps", lambda: impl.encaps(kp.public), who
            yield f"{name}.decaps", lambda: impl.decaps(kp, ct), who
        else:
            sig = impl.sign(kp, MESSAGE)
            yield f"{name}.sign", lambda: impl.sign(kp, MESSAGE), who
            yield f"{name}.verify", lambda: impl.verify(kp.public, MESSAGE, sig), who
    elif alg.kind == "aead":
        key, nonce = impl.keygen(), bytes(12)
        yield f"{name}.encrypt", (lambda n: os.urandom(n), lambda pt: impl.encrypt(key, nonce, pt)), who
        seal = lambda n: impl.encrypt(key, nonce, os.urandom(n))  # noqa: E731
        yield f"{name}.decrypt", (seal, lambda rec: impl.decrypt(key, nonce, rec)), who
    else:
        yield f"{name}.hash", (lambda n: os.urandom(n), impl.hash), who


def default_algorithms(prefer: str | None) -> list[str]:
    """Every catalogued algorithm some available provider implements here; with ``prefer``, that provider's
    KEMs and signatures, and the AEADs and hashes every suite needs (from whichever provider has them), so
    the profile can price whole suites."""
    here = registry.default().algorithms()
    if prefer:
        mine = registry.default().provider(prefer).algorithms()
        here = {a for a in here if a in mine or catalogue.get(a).kind in ("aead", "hash")}
    return [a for a in catalogue.CATALOGUE if a in here]


def calibrate(
    algorithms: list[str] | None = None, provider: str | None = None, quick: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Measure this machine; returns profile data that validates as sim.profile.Profile."""
    tune_allocator()  # the twin's nodes run with the same allocator settings
    probe = SpeedProbe().start()  # how fast the cores ran while measuring: a twin run compares its own
    algs = _requested(algorithms, provider)
    budget = Budget.of(quick)
    jobs: list[tuple[str, Callable[[], Any] | SizedJob, str, bool]] = []  # (op, job, who, sized)
    for a in algs:
        try:
            sized = catalogue.get(a).kind in ("aead", "hash")
            jobs += [(op, fn, who, sized) for op, fn, who in crypto_jobs(a, provider)]
        except ValueError as exc:  # no provider here: the message says who would
            raise UserError(f"--algorithms: {exc}") from None
    vector = lambda n: np.frombuffer(os.urandom(n // 4 * 4), fl.DTYPE).copy()  # noqa: E731
    jobs += [("serialize", (vector, fl.serialize), "numpy", True)]
    jobs += [("net.loopback", (lambda n: os.urandom(n), Loopback().send), "kernel", True)]
    finite = lambda n: np.random.default_rng(n).random(n // 4, dtype=fl.DTYPE).tobytes()  # noqa: E731  # a model's values
    jobs += [("deserialize", (finite, fl.deserialize), "numpy", True)]  # with its check, as the nodes run it
    total = len(jobs) + 3
    ops: dict[str, Any] = {}
    where = f"pqtwin calibrate on {cpu_model()}"
    for i, (op, fn, who, sized) in enumerate(jobs):
        if progress:
            progress(op, i, total)
        what = "TCP over loopback" if who == "kernel" else who
        if sized:
            ops[op] = _measure_sized(cast(SizedJob, fn), budget, f"{where}, {what}", probe)
        else:
            timed, tries = time_calls_at_speed(probe, cast(Callable[[], Any], fn), budget.per_op_s, budget.min_n,
                                               budget.max_n)  # fmt: skip
            ops[op] = per_call_entry(timed, f"{where}, {what}{_again(tries)}")
        ops[op]["provider"] = who
    if progress:
        progress("job.glue", total - 3, total)
    if (glue := measure_glue(ops, quick)) is not None:  # needs the AEAD, serialize and loopback above
        entry = linear_entry(*glue, 0.0, "byte", f"{where}, hw/hopcal.py: a delegation hop's code path")
        ops["job.glue"] = entry | {"provider": "python"}
    if progress:
        progress("fl.train", total - 2, total)
    ops["fl.train"] = _measure_training(budget, where, probe) | {"provider": "numpy"}
    if progress:
        progress("fl.fedavg", total - 1, total)
    ops["fl.fedavg"] = _measure_fedavg(budget, where, probe) | {"provider": "numpy"}
    facts = platform_facts(quick) | speed_facts(probe) | training_facts(training_probe())
    profile = {
        "profile": f"calibrated-{re.sub(r'[^A-Za-z0-9._+-]', '-', platform.node())[:80] or 'host'}",  # PROFILE_NAME
        "description": f"Measured by pqtwin calibrate{' --quick' if quick else ''} on {platform.node()}.",
        "platform": facts,
        "ops": ops,
    }
    Profile.model_validate(profile)  # what we write must load
    return profile


def _requested(algorithms: list[str] | None, provider: str | None) -> list[str]:
    """The algorithms to measure; UserError for an unknown or unavailable provider or an unknown algorithm."""
    if provider is not None:
        names = [p.name for p in registry.providers()]
        if provider not in names:
            raise UserError(f"--provider: unknown provider (known: {', '.join(names)}) (got {provider!r})")
        p = registry.default().provider(provider)
        if not p.available:
            raise UserError(f"--provider: {provider} is not available here: {p.reason}")
    algs = algorithms or default_algorithms(provider)
    if problem := catalogue.unknown_problem("--algorithms", algs):
        raise UserError(problem)
    return algs


class Loopback:
    """A connected TCP pair on 127.0.0.1 with a reader thread: ``send`` returns once the bytes arrived."""

    def __init__(self) -> None:
        srv = tcp.listener(("127.0.0.1", 0), tcp.CALIBRATED)
        self.tx = tcp.dial(srv.getsockname(), tcp.CALIBRATED)
        self.rx, _ = srv.accept()
        srv.close()
        for s in (self.tx, self.rx):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.want: queue.Queue[int] = queue.Queue()
        self.done: queue.Queue[None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            left = self.want.get()
            while left > 0:
                left -= len(self.rx.recv(min(left, 1 << 20)))
            self.done.put(None)

    def send(self, data: bytes) -> None:
        self.want.put(len(data))
        self.tx.sendall(data)
        self.done.get()


def _measure_sized(job: SizedJob, budget: Budget, source: str, probe: SpeedProbe | None = None) -> dict[str, Any]:
    """``job`` = (make a fresh input of n bytes, the timed operation on it)."""
    make, fn = job
    medians, last, tries = [], np.array([1.0]), 0
    for n in budget.sizes_bytes:
        last, k = time_calls_at_speed(probe, fn, budget.per_size_s, budget.min_n, budget.max_n,
                                      setup=lambda: make(n))  # noqa: B023  # fmt: skip
        medians.append(float(np.median(last)))
        tries += k - 1
    return linear_entry(list(budget.sizes_bytes), medians, robust_cv(last), "byte", source + _again(tries + 1))


def _measure_training(budget: Budget, where: str, probe: SpeedProbe | None = None) -> dict[str, Any]:
    """Training steps at sizes from a toy model to 4 M parameters (``points``: the cost per sample-parameter
    grows once the model leaves the caches, so a line fitted on small models undershoots large ones by a
    fifth), and, on a host with two cores, how much two steps at once slow each other (``pair_slowdown``)."""
    rng = np.random.default_rng(0)
    jobs = [training_job(n, p, rng) for n, p in TRAINING_SIZES[budget.per_op_s < 1]]
    with threadpool_limits(1):  # one core per training step, as the simulator (and the twin) run it
        timed = fastest_batches(probe, [step for _, step in jobs], budget.per_op_s, 3, 200)
    units, medians = [u for u, _ in jobs], [float(np.median(x)) for x in timed]
    source = f"{where}, hw/fl.py train (1 epoch), the fastest of {BATCHES} batches a size"
    entry = linear_entry(units, medians, robust_cv(timed[-1]), "sample_param", source)
    pairs = [(u, step) for u, step in jobs if u >= PAIR_MIN_UNITS]
    if (slowdown := _pair_slowdown(pairs, PAIR_BUDGET_FACTOR * budget.per_op_s)) is not None:
        entry["pair_slowdown"] = slowdown
        entry["source"] += "; pair_slowdown: a step alone then beside a copy on another core, in adjacent pairs"
    return entry


@dataclass(frozen=True)
class TrainingNow:
    """A training step of one size as the host runs it now (``training_now``): ``alone_s``, the median step pinned
    to one core with nothing beside it; ``pair_slowdown``, how much slower beside a copy on another core (>= 1)."""

    alone_s: float
    pair_slowdown: float


def training_now(samples: int, params: int, budget_s: float) -> TrainingNow | None:
    """A training step at one model size as the host has it now (``_pair_slowdown``'s method over ``budget_s``
    seconds of pairs): how a matrix's measurements learn which of the host's memory states their trainings met
    (bench/twin_fidelity.py); the speed probe (in a core's L1) does not see it. None on a host with fewer than two
    usable cores."""
    units, step = training_job(samples, params, np.random.default_rng(0))
    out = _pairs([(units, step)], budget_s)
    return None if out is None else TrainingNow(alone_s=out[0][1], pair_slowdown=out[0][2])


def _pair_slowdown(jobs: list[tuple[int, Callable[[], Any]]], budget_s: float) -> list[list[float]] | None:
    """Per size: how much slower a step pinned to one core runs while a forked copy runs the same steps on another,
    the median over adjacent pairs of steps alone then beside the copy (``time_beside``), at least 1. None on a host
    with fewer than two usable cores. The slowdown follows the host's state from minute to minute
    (docs/twin-validation.md, stop 35)."""
    out = _pairs(jobs, budget_s)
    return None if out is None else [[u, slowdown] for u, _, slowdown in out]


def _pairs(jobs: list[tuple[int, Callable[[], Any]]], budget_s: float) -> list[tuple[float, float, float]] | None:
    """(units, median step alone in s, pair slowdown) per size (``_pair_slowdown``)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2 or not jobs:
        return None
    out = []
    mine = set(cpus)
    try:
        os.sched_setaffinity(0, {cpus[0]})
        with threadpool_limits(1):
            for u, step in jobs:
                alone, beside = time_beside(step, functools.partial(forever, step), budget_s, (cpus[0], cpus[1]))
                out.append((float(u), float(np.median(alone)), max(1.0, float(np.median(beside / alone)))))
    finally:
        os.sched_setaffinity(0, mine)
    return out


def forever(step: Callable[[], Any]) -> None:
    """``step`` again and again: the work beside a measured step (``time_beside``'s ``other``)."""
    while True:
        step()


def time_beside(step: Callable[[], Any], other: Callable[[], Any], budget_s: float, cores: tuple[int, int],
                min_pairs: int = MIN_PAIRS) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(alone, beside): seconds of ``step`` on ``cores[0]`` (the caller pinned there) in adjacent pairs, first with
    ``other`` stopped, then with it running on ``cores[1]``, for ``budget_s`` and at least ``min_pairs`` pairs.
    ``other`` never returns: it runs in a forked process (pinned before the first step; killed with this process),
    stopped with SIGSTOP -- confirmed before each step alone -- and continued with SIGCONT, and killed at the end,
    also when ``step`` raises. RuntimeError if it ends by itself: a step beside nothing would read as no slowdown.
    Forked from a process with other threads: the child runs only ``other`` and leaves with ``os._exit``."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no cleanup handlers of the parent's run
        _run_beside(other, cores[1], ready_w)
    os.close(ready_w)
    try:
        if not os.read(ready_r, 1):  # pinned, or gone
            raise RuntimeError(f"the process beside the measured step ended before it started on core {cores[1]}")
        step()  # once with it running
        alone: list[float] = []
        beside: list[float] = []
        end = time.monotonic() + budget_s
        while time.monotonic() < end or len(beside) < min_pairs:
            os.kill(pid, signal.SIGSTOP)
            _, status = os.waitpid(pid, os.WUNTRACED)  # returns once it has stopped, or ended
            if not os.WIFSTOPPED(status):
                pid = 0  # reaped
                raise RuntimeError(f"the process beside the measured step ended (wait status {status:#x})")
            alone.append(_seconds(step))
            os.kill(pid, signal.SIGCONT)
            time.sleep(SIGNAL_SETTLE_S)  # running again on its core
            beside.append(_seconds(step))
    finally:
        os.close(ready_r)
        if pid:
            os.kill(pid, signal.SIGKILL)  # a stopped process too
            os.waitpid(pid, 0)
    return np.array(alone), np.array(beside)


def _run_beside(other: Callable[[], Any], cpu: int, ready: int) -> NoReturn:
    """The forked process of ``time_beside``: dies with its parent, pins itself, says so, runs ``other``."""
    code = 1
    try:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent kills it at the end
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.sched_setaffinity(0, {cpu})
        os.write(ready, b"1")
        other()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _seconds(step: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def _measure_fedavg(budget: Budget, where: str, probe: SpeedProbe | None = None) -> dict[str, Any]:
    sizes = (10_000, 250_000, 1_000_000)
    updates = [[np.ones(params, fl.DTYPE), np.ones(params, fl.DTYPE)] for params in sizes]
    jobs = [functools.partial(fl.fedavg, two, [1.0, 1.0]) for two in updates]
    timed = fastest_batches(probe, jobs, budget.per_op_s / 2, 5, 2000)
    units = [2 * params for params in sizes]  # the simulator prices FedAvg per parameter per update
    source = f"{where}, hw/fl.py fedavg of 2 updates, the fastest of {BATCHES} batches a size"
    return linear_entry(units, [float(np.median(x)) for x in timed], robust_cv(timed[-1]), "param", source)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def clock_hz() -> float | None:
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text(encoding="utf-8")) * 1e3
    except (OSError, ValueError):
        return None


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def liboqs_build(library: str | None) -> str:
    """How the liboqs shared library was built, from the oqsconfig.h installed beside it."""
    header = Path(library or "").resolve().parent.parent / "include" / "oqs" / "oqsconfig.h"
    try:
        defines = dict(re.findall(r'^#define (OQS_\w+|CMAKE_BUILD_TYPE) "?([^"\n]*)"?$', header.read_text(), re.M))
    except OSError:
        return f"build flags unknown (no {header})"
    parts = [defines.get("CMAKE_BUILD_TYPE", "?"), f"OQS_OPT_TARGET={defines.get('OQS_OPT_TARGET', '?')}"]
    if defines.get("OQS_DIST_BUILD") == "1":
        parts.append("OQS_DIST_BUILD (CPU features picked at run time)")
    parts += sorted(
        k.removeprefix("OQS_USE_") for k in defines if k.startswith("OQS_USE_") and k.endswith("_INSTRUCTIONS")
    )
    return ", ".join(parts) + f"; {defines.get('OQS_COMPILE_BUILD_TARGET', platform.machine())}"


def libraries() -> dict[str, dict[str, str]]:
    """What each provider measured here is: library, version, build (the profile's ``platform.libraries``)."""
    from cryptography.hazmat.backends.openssl.backend import backend

    from hw.crypto.liboqs import find_library

    pyca = f"linked into pyca/cryptography {metadata.version('cryptography')} ({platform.machine()})"
    found = {
        "openssl": {"library": "OpenSSL", "version": backend.openssl_version_text(), "build": pyca},
        "numpy": {"library": "NumPy", "version": metadata.version("numpy"), "build": f"wheel ({platform.machine()})"},
        "kernel": {"library": "Linux TCP over loopback", "version": platform.release(), "build": platform.machine()},
        "python": {"library": "CPython (the twin's own code paths)", "version": platform.python_version(),
                   "build": f"{platform.python_compiler()} ({platform.machine()})"},
    }  # fmt: skip
    oqs = registry.default().provider("liboqs")
    if oqs.available:
        build = f"{liboqs_build(find_library())}; via liboqs-python {_dist('liboqs-python')}"
        found["liboqs"] = {"library": "liboqs", "version": getattr(oqs, "version", "?"), "build": build}
    return found


def platform_facts(quick: bool) -> dict[str, Any]:
    return {
        "cpu": f"{cpu_model()} ({platform.machine()})",
        "cores": os.cpu_count() or 1,
        "clock_hz": clock_hz(),
        "libraries": libraries(),
        "date": dt.date.today().isoformat(),
        "how_measured": (
            f"pqtwin calibrate{' --quick' if quick else ''}: warm-up, then calls until the median's 95 % CI "
            f"is within {TARGET_REL_CI:.0%} or the time budget ends; Python {platform.python_version()}; "
            "crypto on one thread, timings include the Python call; training uses NumPy's BLAS threads"
        ),
    }
