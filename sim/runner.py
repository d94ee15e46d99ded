"""Run a scenario: replications from one root seed, spans and summary written to a run directory.

Randomness: ``SeedSequence(seed).spawn(replications)`` gives one child per replication; each child
spawns four streams (network, cpu, devices, fl). Same seed, same results; the seed is in summary.json.
Replications may run in worker processes (``workers``): each has its own streams, so the results are the
same, to the bit, in any number of processes.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim import provenance
from sim.checkpoint import Fork
from sim.contract import (
    ALTERNATING,
    ROUND_MODES,
    Energy,
    Engine,
    LinkBytes,
    RunLayout,
    Summary,
    Utilisation,
    atomic_write,
    summary_problem,
    to_frame,
    write_spans,
    write_summary,
)
from sim.energy import summarise_energy
from sim.errors import UserError
from sim.forkpool import ForkPool
from sim.model import Replication, ReplicationResult
from sim.scenario import Scenario, write_scenario
from sim.streams import child
from sim.summary import summarise, with_frames, with_handshakes
from sim.telemetry import NotVectorizable, engine_for, engine_problem

if TYPE_CHECKING:
    import pandas as pd

MODES = ROUND_MODES
# ``ALTERNATING``: a run whose rounds alternate the two modes (``sim.contract.round_mode``), as the twin's ``--mode
# both`` run does: its connections (windows, send buffers) age across both modes' rounds as the twin's do, where a
# run of each mode starts them fresh; sim/alternating.py ``split`` cuts it into a run of each mode (the twin's too)
SEED_STREAMS = (
    "SeedSequence(seed).spawn(replications); per replication .spawn(4): network, cpu, devices, fl; "
    "the network's children by link, then (links, source, destination) for TCP messages' share weights; the "
    "cpu's by host then device; vectorized engine: a fifth, frames"
)


@dataclass
class RunResult:
    spans: pd.DataFrame
    summary: Summary
    series: pd.DataFrame | None = None  # busy seconds per time bin of each shared link and host


def simulate(
    scenario: Scenario,
    mode: str | None = None,
    seed: int | None = None,
    replications: int | None = None,
    progress: Callable[[int], None] | None = None,
    only: int | None = None,
    workers: int = 1,
    before_events: Callable[[Scenario, str], None] | None = None,
) -> RunResult:
    """Run all replications of a scenario in one processing mode (default: the scenario's).

    ``only``: run just that replication of the ``replications`` spawned from ``seed`` (its random streams,
    index and results are those it has in the whole run), so a sweep can spread one point's replications.
    ``workers``: processes that run replications side by side (forked from this one; 1: all here).
    ``before_events``: as ``simulate_modes``'s."""
    mode = mode or scenario.workload.processing.mode
    told = None if progress is None else (lambda _mode, done: progress(done))
    ((_, result),) = simulate_modes(scenario, [mode], seed, replications, told, only, workers, before_events)
    return result


def simulate_modes(
    scenario: Scenario,
    modes: list[str],
    seed: int | None = None,
    replications: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    only: int | None = None,
    workers: int = 1,
    before_events: Callable[[Scenario, str], None] | None = None,
) -> Iterator[tuple[str, RunResult]]:
    """``simulate`` for several modes with one pool of workers: each mode's run, in the order given, as soon
    as its replications are in, while the workers go on with the next mode's (a caller writes one run while
    the next is computed). Each mode has the same replications (seeds) it has alone; a mode's ``wall_s``
    counts from this call's start. ``progress(mode, done)``: replications done in that mode.
    ``before_events(scenario, why)``: where ``run.engine: auto``'s kernels give up at run time (``why``), called
    with the scenario as the event model will run that mode again (``run.engine: events``) before it starts; it
    may raise to refuse what that costs (the command line's budget)."""
    for mode in modes:
        if mode not in (*MODES, ALTERNATING):
            raise ValueError(f"mode must be one of {(*MODES, ALTERNATING)} (got {mode!r})")
    seed = scenario.run.seed if seed is None else seed
    reps = replications or scenario.run.replications
    started = time.perf_counter()
    engine = engine_for(scenario)
    if problem := engine_problem(scenario):
        raise UserError(problem)
    if only is not None and not 0 <= only < reps:
        raise ValueError(f"only must be a replication index below {reps} (got {only})")
    indices = range(reps) if only is None else range(only, only + 1)
    engines = dict.fromkeys(modes, engine)
    left = list(modes)
    seeds = np.random.SeedSequence(seed).spawn(reps)  # each mode's replication i draws from seeds[i]
    while left:
        jobs = [_Job(m, engines[m], i, seeds[i]) for m in left for i in indices]
        done: dict[str, list[ReplicationResult]] = {m: [] for m in left}
        refused: tuple[str, NotVectorizable] | None = None
        with _replicate_all(scenario, jobs, workers) as results:
            for job, result in zip(jobs, results, strict=True):
                if isinstance(result, NotVectorizable):
                    refused = (job.mode, result)  # this mode and those after it start again
                    break
                done[job.mode].append(result)
                if progress:
                    progress(job.mode, len(done[job.mode]))
                if len(done[job.mode]) == len(indices):
                    left.remove(job.mode)
                    with collecting_rarely():  # the results are many live objects, as a replication's are
                        run = _assemble(scenario, job.mode, seed, done[job.mode], started)
                    yield job.mode, run
        if refused is not None:
            _falling_back(scenario, refused[1], before_events)
            engines[refused[0]] = "events"  # auto: the event model computes what the kernels do not


def _falling_back(scenario: Scenario, why: NotVectorizable, before_events: Callable[[Scenario, str], None] | None,
                  ) -> None:  # fmt: skip
    """The kernels gave up at run time (``why``): refused where ``run.engine: vectorized`` asked for them, else the
    event model's scenario shown to ``before_events`` (which may refuse it) before it runs the mode again."""
    if scenario.run.engine == "vectorized":
        raise UserError(f"{scenario.path}: run.engine: vectorized: {why}")
    if before_events is not None:
        before_events(on_events(scenario), str(why))


def on_events(scenario: Scenario) -> Scenario:
    """``scenario`` as the event model runs it (``run.engine: events``), its file's path kept for its messages."""
    return scenario.model_copy(update={"run": scenario.run.model_copy(update={"engine": "events"})})


def _assemble(scenario: Scenario, mode: str, seed: int, results: list[ReplicationResult], started: float) -> RunResult:
    """One mode's run from its replications' results: spans, summary and series."""
    df = to_frame([row for r in results for row in r.rows])
    meta: dict[str, Any] = {
        "scenario": scenario.name,
        "scenario_file": str(scenario.path),
        "mode": mode,
        "seed": seed,
        "seed_streams": SEED_STREAMS,
        "replications": len(results),
        "suite": scenario.workload.crypto.model_dump(),
        "events": int(sum(r.events for r in results)),
        "sim_time_s": float(np.mean([r.sim_time_s for r in results])),
    }
    meta.update(utilisation(results))
    meta["warnings"] = [*provenance.mismatches(scenario), *meta["warnings"]]  # priced by another library
    meta["link_bytes"] = link_bytes(results)
    outcomes = [r.frames for r in results if r.frames is not None]
    summary = summarise(df[df.op != "frame"] if outcomes else df, meta)
    summary.engine = Engine(name="events") if not outcomes else with_frames(summary, outcomes)
    pods = {p.name: p.report_to for p in scenario.workload.devices}
    devices = sum(p.count for p in scenario.workload.devices)
    with_handshakes(summary, [r.device_handshakes for r in results], pods, devices)
    summary.energy = run_energy(scenario, df, results, summary, bool(outcomes))
    summary.wall_s = time.perf_counter() - started
    series = series_frame(results, summary.sim_time_s)  # before the peak is read: its rows may be most of it
    summary.peak_rss_bytes = max(peak_rss_bytes(), *(r.peak_rss_bytes for r in results))
    return RunResult(df, summary, series)


def run_energy(s: Scenario, df: pd.DataFrame, results: list[ReplicationResult], summary: Summary,
               vectorized: bool) -> Energy:  # fmt: skip
    """The run's energy (sim/energy.py) from its spans, and each replication's frames and sessions per population."""
    frames: list[dict[str, float]] = []
    if vectorized:  # frames are counted in the sketches, not span rows
        frames = [{p: float(sk.n) for p, sk in r.frames.sketches.items()} if r.frames else {} for r in results]
    else:  # a frame row's host is its device ("population#i")
        rows = df[df.op == "frame"]
        counts = rows.groupby([rows.replication, rows.host.str.split("#").str[0]]).size()
        frames = [{str(p): float(n) for (rep, p), n in counts.items() if rep == i} for i in range(len(results))]
    sessions = [{p: float(n) for p, n in Counter(pop for pop, *_ in r.device_handshakes).items()} for r in results]
    return summarise_energy(s, df, [r.sim_time_s for r in results], frames, sessions, vectorized)


def series_frame(results: list[ReplicationResult], sim_time_s: float) -> pd.DataFrame:
    """One row per replication, resource and time bin up to the run's end: busy seconds (a link's services by
    their start; a host's work by its arrival) and utilisation = busy / (bin x capacity)."""
    import pandas as pd

    reps, names, kinds, starts, busy, util = [], [], [], [], [], []  # columns: one frame, not one per series
    for rep, r in enumerate(results):
        for name, (kind, capacity, bin_s, values) in r.series.items():
            n = min(values.size, max(1, math.ceil(sim_time_s / bin_s)))
            reps.append(np.full(n, rep))
            names.append(np.full(n, name, dtype=object))
            kinds.append(np.full(n, kind, dtype=object))
            starts.append(np.arange(n) * bin_s)
            busy.append(values[:n])
            util.append(values[:n] / (bin_s * capacity))
    if not reps:
        return pd.DataFrame()
    return pd.DataFrame({"replication": np.concatenate(reps), "resource": np.concatenate(names),
                         "kind": np.concatenate(kinds), "bin_start_s": np.concatenate(starts),
                         "busy_s": np.concatenate(busy), "utilisation": np.concatenate(util)})  # fmt: skip


MAX_PASSES = 5
CLOSE_ENOUGH_S = 1e-6  # a foreground delay this small ends the passes: the next one completes the frames


GC_EVERY_ALLOCATIONS = 1_000_000  # CPython's default: 700
_GC_LOCK = threading.Lock()
_GC_DEPTH = 0
_GC_BEFORE: tuple[int, ...] = gc.get_threshold()


@contextmanager
def collecting_rarely() -> Iterator[None]:
    """Let CPython's cyclic garbage collector run every GC_EVERY_ALLOCATIONS container allocations instead of 700,
    then restore it. A replication keeps up to millions of objects alive (its devices' processes, the logs) and
    frees nearly all it makes by reference counting, so the collector's scans of the live ones were 30-40 % of a
    start-up storm's time (10,000 devices x 60 s: 8.9 s, 5.3 s collecting rarely; the same peak memory). Objects
    frozen meanwhile (``_built``, a storm's fork) go to the oldest generation when the last one out leaves."""
    global _GC_DEPTH, _GC_BEFORE
    with _GC_LOCK:  # replications on several threads (a Dask worker): the first in sets, the last out restores
        if _GC_DEPTH == 0:
            _GC_BEFORE = gc.get_threshold()
            gc.set_threshold(GC_EVERY_ALLOCATIONS, *_GC_BEFORE[1:])
        _GC_DEPTH += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_DEPTH -= 1
            if _GC_DEPTH == 0:
                # what the replications made and kept (the results, what ``_built`` froze) goes to the oldest
                # generation, collectable again, instead of being scanned at once by the first collection
                gc.freeze()
                gc.unfreeze()
                gc.set_threshold(*_GC_BEFORE)


def _built(rep: Replication) -> Replication:
    """A replication's model, built: its objects live as long as it runs (10,000 devices: ~1 M), so the cyclic
    collector leaves them out (``gc.freeze``) until the replication ends (``collecting_rarely``), instead of
    scanning them all at its first collection (0.6 s in a 10,000-device storm)."""
    if _GC_DEPTH:
        gc.freeze()
    return rep


def replicate(
    scenario: Scenario, mode: str, index: int, seed: np.random.SeedSequence, engine: str
) -> ReplicationResult:
    """One replication. The vectorized engine runs up to MAX_PASSES passes: each pass's SimPy run computes
    the frames emitted in the intervals where earlier passes found frames next to the foreground (hot
    intervals, sim/telemetry.py) and serves the rest found there as background, until the kernels find no
    foreground item they would serve later than SimPy did (then the run is the event model's, to rounding).
    Every link, host and device draws from its own stream, so a stochastic run converges too; passes end
    early when the largest delay is under CLOSE_ENOUGH_S, or no longer halves while the hot intervals stay
    the same: the last pass completes the frames and reports what is left. When all that a pass found arrives
    after the first pass's storm (which ends when every device has its first keys, or at its first lull), the
    next pass is the first resumed at the storm's end, serving it all as background (sim/checkpoint.py).
    The cyclic garbage collector runs rarely meanwhile (``collecting_rarely``)."""
    with collecting_rarely():
        result = _replicate(scenario, mode, index, seed, engine)
    result.peak_rss_bytes = peak_rss_bytes()  # its fork's too, reaped by now
    return result


def _replicate(
    scenario: Scenario, mode: str, index: int, seed: np.random.SeedSequence, engine: str
) -> ReplicationResult:
    if engine != "vectorized":
        return _built(Replication(scenario, mode, index, child(seed), engine)).run()  # a copy: ``seed`` is not spawned
    background, hot, worst, final = None, None, math.inf, False
    fork = Fork() if Fork.available() else None
    resumable = False  # the last pass says the next may resume it at its storm's end
    try:
        for passes in range(1, MAX_PASSES + 1):
            final = final or passes == MAX_PASSES
            if resumable:
                assert background is not None
                result = _resumed(scenario, mode, index, seed, fork, background, final)
            else:
                rep = Replication(scenario, mode, index, child(seed), engine, background, final, hot,
                                  at_storm_end=fork.take if fork and passes == 1 else None)  # fmt: skip
                result = _pass(_built(rep), fork)
            assert result.frames is not None
            result.frames.passes = passes
            resumable = result.frames.resumable
            if fork is not None and not resumable:
                fork.discard()  # no pass will resume it: its memory back now
            if result.frames.complete and (not result.frames.perturbation or final):
                break
            delay = max(d for d, _ in result.frames.perturbation.values())
            grew = hot is None or not np.array_equal(hot, result.frames.hot)
            final, worst = (delay > worst / 2 and not grew) or delay < CLOSE_ENOUGH_S, delay
            background, hot = result.frames.background, result.frames.hot
    finally:
        if fork is not None:
            fork.discard()
    return result


def _pass(rep: Replication, fork: Fork | None) -> ReplicationResult:
    """Run one pass; in a process forked from a first pass kept at its storm's end (sim/checkpoint.py), that
    resumes it as a later pass, send its end back."""
    try:
        result = rep.run()
    except BaseException as exc:
        if fork is not None and fork.in_child:
            fork.ship(exc)
        raise
    if fork is not None and fork.in_child:
        fork.ship(result)
    return result


def _resumed(scenario: Scenario, mode: str, index: int, seed: np.random.SeedSequence, fork: Fork | None,
             background: dict[str, np.ndarray], final: bool) -> ReplicationResult:  # fmt: skip
    """A pass that resumes the first at its storm's end: from the kept fork, else computed again (the same events:
    the first pass's run up to the storm's end, then ``Replication.resume``)."""
    if fork is not None and fork.pid is not None:
        return fork.resume(background, final, _MEANWHILE)
    go_on = partial(Replication.resume, background=background, final=final)
    rep = Replication(scenario, mode, index, child(seed), "vectorized", None, False, None, at_storm_end=go_on)
    return _built(rep).run()


@dataclass(frozen=True)
class _Job:
    mode: str
    engine: str
    index: int
    seed: np.random.SeedSequence


_SCENARIO: Scenario | None = None  # what a forked worker simulates: set before the pool forks
_MEANWHILE: Callable[[], None] | None = None  # what this process may do while a fork computes its resumed pass


# events of a replication past which the next one in the same process first collects its garbage: ``_built``
# would freeze it with the next one's objects, so a process running replications one after another grew by one
# replication's garbage each (ward-200 with long trainings, 240 k events a replication: 0.24, 0.31, 0.37 GB for
# three; a collection there took 0.3 s). Smaller ones leave little (the paper's: 3 k events, no collection). With
# replications on several threads of one process (a Dask worker's), another's may be built first: bounded, not exact
COLLECT_AFTER_EVENTS = 100_000
_last_events = 0  # the last replication's in this process


def _replicate_job(job: _Job) -> ReplicationResult | NotVectorizable:
    global _last_events
    assert _SCENARIO is not None
    if _last_events >= COLLECT_AFTER_EVENTS:
        gc.collect()
    _last_events = 0
    try:
        result = replicate(_SCENARIO, job.mode, job.index, job.seed, job.engine)
    except NotVectorizable as exc:
        _last_events = COLLECT_AFTER_EVENTS  # what the refused pass made goes before the event model runs it
        return exc
    _last_events = result.events
    return result


@contextmanager
def _replicate_all(scenario: Scenario, jobs: list[_Job], workers: int,
                   ) -> Iterator[Iterator[ReplicationResult | NotVectorizable]]:  # fmt: skip
    """Every job's result, in order, computed here or in ``workers`` forked processes (sim/forkpool.py); the
    workers end when the ``with`` does, whether or not every result was read."""
    global _SCENARIO
    _SCENARIO = scenario
    many = workers > 1 and len(jobs) > 1
    # a vectorized replication forks itself to resume its second pass (sim/checkpoint.py), which a process with
    # other threads may not: from the main thread of one (the command line's progress bar), it runs in a worker
    alone = not many and Fork.enabled and any(j.engine == "vectorized" for j in jobs) and _threads_but_main()
    pool = ForkPool(_replicate_job, jobs, min(workers, len(jobs)) if many else 1) if many or alone else None
    try:
        yield pool.imap(_load_tables) if pool else _here(jobs)
    finally:
        _SCENARIO = None
        if pool is not None:
            pool.close()


def _here(jobs: list[_Job]) -> Iterator[ReplicationResult | NotVectorizable]:
    """The jobs computed in this process; the last may load the tables' modules while its resumed pass computes
    in a fork (``_MEANWHILE``): no fork is taken after it."""
    global _MEANWHILE
    for i, job in enumerate(jobs):
        _MEANWHILE = _load_tables if i == len(jobs) - 1 else None
        try:
            result = _replicate_job(job)
        finally:
            _MEANWHILE = None
        yield result


def _threads_but_main() -> bool:
    """Called from the main thread of a process that runs others (a forked worker has only the main one)."""
    main = threading.current_thread() is threading.main_thread()
    return hasattr(os, "fork") and main and threading.active_count() > 1


def _load_tables() -> None:
    """What turns results into tables and files (pandas, pyarrow: ~0.3 s here), loaded while the workers compute:
    the model does not need them, so they fork without (sim/contract.py ``span_schema``)."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def peak_rss_bytes() -> int:
    """The peak resident set size of this process, or of the largest process it forked and reaped (Linux: KiB)."""
    own, workers = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return int(max(own, workers)) * 1024


def utilisation(results: list[ReplicationResult]) -> dict[str, Any]:
    """Host and link utilisation over each replication's length T, mean over replications: offered (work
    asked that the resource, serving nothing else, could have done by T, over capacity x T: ``Cpu.offered_s``,
    ``LinkServer.offered_s``; ≥ 1 is flagged) and, for links, busy (served by T, over T)."""
    hosts: dict[str, Utilisation] = {}
    for name in results[0].host_offered_s:
        offered = np.mean([r.host_offered_s[name][1] / (r.host_offered_s[name][0] * r.sim_time_s) for r in results])
        hosts[name] = Utilisation(offered=float(offered), overloaded=bool(offered >= 1))
    # a link direction per device (20,000 at 10,000 devices): one mean over a matrix's rows, as np.mean of each
    # row (the same sum): 0.4 -> 0.1 s there
    names = list(results[0].link_stats)
    stats = [[r.link_stats[name] for r in results] for name in names]
    per_s = np.array([[r.sim_time_s for r in results]])
    busy_all = (np.array([[s.busy_s for s in row] for row in stats]) / per_s).mean(axis=1)
    offered_all = (np.array([[s.offered_s for s in row] for row in stats]) / per_s).mean(axis=1)
    links: dict[str, Utilisation] = {}
    for name, busy, offered in zip(names, busy_all.tolist(), offered_all.tolist(), strict=True):
        if offered > 0:
            links[name] = Utilisation(busy=busy, offered=offered, overloaded=offered >= 1)
    retrans = int(sum(s.retransmissions for r in results for s in r.link_stats.values()))
    over = [("host", k, v) for k, v in hosts.items()] + [("link", k, v) for k, v in links.items()]
    warnings = [f"{kind} {k} is overloaded: offered utilisation {v.offered:.2f} ≥ 1" for kind, k, v in over
                if v.overloaded]  # fmt: skip
    if any(r.rounds_completed < 1 for r in results):
        warnings.append("a replication completed no round before the horizon (raise run.horizon_s)")
    return {
        "host_utilization": hosts,
        "link_utilization": links,
        "retransmissions": retrans,
        "warnings": warnings,
    }


def link_bytes(results: list[ReplicationResult]) -> LinkBytes:
    """Bytes each link direction carried (hop-counted, resends included), per replication: total, by link
    (those that carried any) and by phase."""
    reps = len(results)
    by_link: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for r in results:
        for name, stats in r.link_stats.items():
            if stats.bytes:
                by_link[name] = by_link.get(name, 0.0) + stats.bytes / reps
            for phase, n in stats.bytes_by_phase.items():
                by_phase[phase] = by_phase.get(phase, 0.0) + n / reps
    total = sum(stats.bytes for r in results for stats in r.link_stats.values()) / reps
    return LinkBytes(total=float(total), by_link=by_link, by_phase=by_phase)


# what the strict reader says of a number that overflowed: null (JSON's inf and NaN), infinite, beyond its bound
OVERFLOWED = ("valid number", "finite", "beyond")


def write_run(result: RunResult, out_dir: Path, scenario: Scenario) -> Path:
    """spans.parquet, series.parquet, summary.json and the resolved scenario.yaml with copies of its profiles
    (``write_scenario``) in out_dir."""
    if problem := summary_problem(result.summary):  # before any file: the directory keeps what it held
        if not any(word in problem for word in OVERFLOWED):  # a number of the model's own making: a bug of ours
            raise RuntimeError(f"the run's summary would not read back: {problem}")
        raise UserError(f"{scenario.path}: the run's results are not numbers its readers take ({problem}): a cost "
                        "or size of the scenario or its profiles is too large to compute (a profile's points or "
                        "distribution, a cpu_speed)")  # fmt: skip
    layout = RunLayout(out_dir)
    write_spans(result.spans, layout.spans)
    if result.series is not None and len(result.series):
        atomic_write(layout.series, result.series.to_parquet(index=False))
    write_scenario(scenario, out_dir)
    # the peak memory the run reports is the process's when its tables are written too (their Parquet buffers)
    result.summary.peak_rss_bytes = max(result.summary.peak_rss_bytes or 0, peak_rss_bytes())
    return write_summary(result.summary, out_dir)
