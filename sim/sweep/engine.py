"""Running a sweep's points on Dask ``distributed``: a local cluster of processes, or any running scheduler.

`run(plan, out)` submits the points not yet finished (sim/sweep/store.py), grouped into tasks of about CHUNK_EST_S
of estimated work (`chunks`), and writes the points' rows as they come back (every FLUSH_S) with their wall
times. The client (this process) does all the writing, so remote workers need the package installed but no
files: a task carries its validated scenario with the profiles that price it.

Stopping: Ctrl-C (KeyboardInterrupt) or ``should_stop()`` returning true cancels every task still queued or
running (a local cluster's worker processes are shut down with it), also while the local workers start
(``_workers_ignore_sigint``); what finished is on disk, whole. A local worker that dies as the cluster starts is
a UserError.
A worker lost while running a task (killed, out of memory) makes Dask retry it elsewhere; the points of a task
that keeps killing workers are recorded as crashed and run again when the sweep is resumed. Losing the engine
itself (the scheduler gone, or no worker left on it for ``worker_wait_s``, WORKER_WAIT_S by default) ends the
run with ``Report.lost``: the points it was running are not recorded at all, so a rerun resumes them. Dask's own
logs stay off the terminal (``_mute_dask_logs``): the sweep says what happened in its own lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import UserError, shorten
from sim.sweep import store
from sim.sweep.plan import Plan
from sim.sweep.point import Outcome, Task, failed, run_point

POLL_S = 0.05  # how often a waiting client looks for finished points and for a stop
FLUSH_S = 1.0  # finished points are written at least this often (a kill loses at most this much work)
FLUSH_POINTS = 256
# A local worker's own threads wake up as seldom as they can: every wake-up of its event loop takes the GIL from
# the simulating thread, and on a machine with as many workers as cores it also takes a core (no statistical
# profiler: it samples the simulating thread every 10 ms; ticks, system and memory monitors every 1-10 s, not
# every 20-500 ms).
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.tick.limit": "30s",
    "distributed.admin.system-monitor.interval": "10s",
    "distributed.worker.memory.monitor-interval": "5s",
}
# The scheduler's HTTP server (metrics; no dashboard without bokeh) on a port of the system's choosing, on loopback:
# with dashboard_address=None it still took 8787, and anything there (another sweep, a notebook's cluster) had
# Dask print a raw multi-line "Port 8787 is already in use" warning on the terminal
NO_DASHBOARD = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
CHUNK_EST_S = 0.5  # estimated simulation per Dask task (estimates run 1.3-3.6x over: ~0.15-0.4 s measured)
WORKERS_PER_CORE = 4
CONNECT_TIMEOUT_S = 10.0
WORKER_WAIT_S = 30.0
RESULT_WAIT_S = 5.0  # a finished task's result, fetched from its worker (longer: that worker died)


@dataclass
class Report:
    total: int  # points in the plan
    already: int  # finished before this run (resumed)
    done: int = 0  # finished in this run
    failed: list[tuple[int, str]] = field(default_factory=list)  # (point, one-line error), input and crash
    stopped: bool = False
    lost: str | None = None  # why the sweep lost its engine (a remote scheduler gone): its points stay unfinished
    workers: int = 0
    engine_s: float = 0.0  # starting the cluster or connecting to the scheduler
    wall_s: float = 0.0  # submitting to the last result written
    point_wall_s: float = 0.0  # the points' own simulation time, summed


Progress = Callable[[int, int, int], None]  # (points finished, of all, failed)


def tasks(plan: Plan, skip: set[str]) -> list[Task]:
    spec = plan.spec
    out = []
    for p in plan.points:
        if p.hash in skip:
            continue
        assert p.scenario is not None
        values = {a.key: a.column(p.values[a.key]) for a in spec.axes}
        priority = round((p.est_wall_s or 0.0) * 1e3)
        out.append(Task(p.index, p.hash, values, p.scenario, p.seed, spec.replications, tuple(spec.kpis), priority,
                        plan.budget))  # fmt: skip
    return out


@contextlib.contextmanager
def client(scheduler: str | None, workers: int, worker_wait_s: float = WORKER_WAIT_S) -> Iterator[Any]:
    """A Dask client: on a new local cluster of ``workers`` single-threaded processes, or on ``scheduler``."""
    import dask
    from distributed import Client, LocalCluster

    _mute_dask_logs()
    if scheduler is None:
        with contextlib.ExitStack() as stack:
            # the cluster is entered (so closed however this ends) before a Ctrl-C held during its start is raised
            with _workers_ignore_sigint(), dask.config.set({**QUIET_WORKERS, **_silent_workers(dask)}):
                try:
                    cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                               dashboard_address=None, scheduler_kwargs=NO_DASHBOARD,
                                                               silence_logs=logging.CRITICAL))  # fmt: skip
                except RuntimeError as exc:  # Dask's "Nanny failed to start": a worker ended as it started
                    raise UserError(f"the local Dask cluster could not start its {workers} worker processes "
                                    f"({shorten(str(exc).rstrip('.'), 120)}: one was killed or ran out of memory as it "
                                    "started); no point ran: rerun the same command") from None  # fmt: skip
            yield stack.enter_context(Client(cluster))
        return
    yield from _remote(scheduler, worker_wait_s)


def _refused(scheduler: str) -> str | None:
    """Why a TCP scheduler address cannot be reached at all: found at once where nothing listens there (Dask would
    retry it for CONNECT_TIMEOUT_S), after CONNECT_TIMEOUT_S where nothing answers (Dask would wait as long again);
    None where something listens or the transport is another (Dask's own attempt decides)."""
    scheme, sep, rest = scheduler.partition("://")
    host, _, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls") or not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            return None
    except ConnectionRefusedError:
        return "connection refused (no scheduler listens there)"
    except TimeoutError:
        return f"no answer in {CONNECT_TIMEOUT_S:g} s"
    except socket.gaierror as exc:
        return f"cannot resolve {shorten(host, 100)}: {exc.strerror or exc}"
    except (OSError, ValueError, OverflowError):
        return None


def _remote(scheduler: str, worker_wait_s: float) -> Iterator[Any]:
    from distributed import Client

    if (why := _refused(scheduler)) is not None:
        raise UserError(f"--scheduler {shorten(scheduler, 200)}: cannot connect: {why}")
    try:
        c = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise UserError(f"--scheduler {shorten(scheduler, 200)}: cannot connect: {shorten(str(exc), 200)}") from None
    try:
        try:
            c.wait_for_workers(1, timeout=worker_wait_s)
        except TimeoutError:
            raise UserError(f"--scheduler {shorten(scheduler, 200)}: no worker joined in {worker_wait_s:g} s "
                            "(start some with `dask worker ADDRESS`)") from None  # fmt: skip
        yield c
    finally:
        c.close()


def _silent_workers(dask: Any) -> dict[str, Any]:
    """Local workers log nothing of their own, from their start to their end: a point's failure is the sweep's row
    and line, and a worker busy in a long point when the sweep stops (Ctrl-C) would log its lost scheduler's
    heartbeat with a traceback, after the handlers ``silence_logs`` quiets are restored. Set in the environment
    the nanny spawns them with (``distributed`` sets its loggers' levels from it when it is imported)."""
    key = "distributed.nanny.pre-spawn-environ"
    return {key: {**dask.config.get(key, {}), "DASK_LOGGING__DISTRIBUTED": "critical"}}


def _mute_dask_logs() -> None:
    """Dask's loggers in this process say nothing from now on: what a sweep met is its own lines (a point's error,
    a lost scheduler: ``Report.lost``). For the process's remainder, not a block: a closed client still logs
    its cancelled reconnection from its own thread after ``close`` returns. (``distributed`` gives some loggers
    levels and handlers of their own, so each is muted, not only their parent.)"""
    for name, log in list(logging.root.manager.loggerDict.items()):  # ``distributed`` is imported by now
        if isinstance(log, logging.Logger) and (name == "distributed" or name.startswith("distributed.")):
            log.setLevel(logging.CRITICAL)
    # and Dask's event loop's leftovers: a result fetch given up after RESULT_WAIT_S ends when the client closes,
    # which asyncio reports as "Task exception was never retrieved" (this process's loops are Dask's)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


# A Ctrl-C's witness while the workers start: dies of the process group's SIGINT, ends when its stdin closes
_WITNESS = "import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); os.read(0, 1)"


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (inherited through exec): a terminal's Ctrl-C reaches the whole
    process group, and it is this process that stops the sweep and shuts the workers down, without a traceback
    from each of them. This process ignores it meanwhile too, so a witness in the group (a small process that
    dies of it) says whether one came, and it is raised here on the way out. Ignored alone it was lost, and the
    sweep ran to its end: the app's Stop in the first seconds waited 30 s and killed it. (A blocked signal is not
    lost, but numpy's threads and multiprocessing's resource tracker leave it unblocked in threads of their own.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    witness = None
    with contextlib.suppress(OSError):  # none (no process to spare): a Ctrl-C meanwhile is lost, as it was before
        witness = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WITNESS], stdin=subprocess.PIPE,  # noqa: S603
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if witness is not None:
            with contextlib.suppress(OSError):
                witness.communicate()  # its stdin closed: it ends, unless a Ctrl-C ended it first
    if witness is not None and witness.returncode == -signal.SIGINT:
        raise KeyboardInterrupt


def max_local_workers() -> int:
    """Local worker processes a machine is given at most: a few per core (each is a ~200 MB Python process;
    past the cores they only queue for them)."""
    return WORKERS_PER_CORE * (os.cpu_count() or 1)


def check_workers(scheduler: str | None, workers: int) -> None:
    if scheduler is None and workers > max_local_workers():
        raise UserError(f"--workers {workers}: this machine has {os.cpu_count()} cores; a local cluster takes at most "
                        f"{max_local_workers()} workers (use --scheduler for more machines)")  # fmt: skip


def run(plan: Plan, out: Path, scheduler: str | None = None, workers: int = 0, progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None, worker_wait_s: float = WORKER_WAIT_S) -> Report:  # fmt: skip
    """Run the plan's unfinished points into ``out`` (prepared by store.prepare); see the module docstring."""
    store.lock(out)  # (prepare took it: no other sweep writes here while this one runs)
    done_before = store.finished(out)
    todo = tasks(plan, done_before)
    report = Report(total=len(plan.points), already=len(plan.points) - len(todo))
    if not todo:
        return report
    check_workers(scheduler, workers)
    started = time.perf_counter()
    with client(scheduler, workers or os.cpu_count() or 1, worker_wait_s) as c:
        report.workers = len(c.scheduler_info(n_workers=-1)["workers"])
        warm(c)
        report.engine_s = time.perf_counter() - started
        if progress:
            progress(report.already, report.total, 0)
        started = time.perf_counter()
        _gather(c, todo, out, report, progress, should_stop, worker_wait_s)
        report.wall_s = time.perf_counter() - started
    return report


def warm(c: Any) -> None:
    """The simulator's imports, once per worker, before the clock of the points starts. A worker gone meanwhile
    (killed as it joined: its nanny starts another) is no reason to stop: it was an internal error."""
    c.run(_warm, on_error="ignore")


def _warm() -> None:
    import sim.runner  # noqa: F401


def _gather(c: Any, todo: list[Task], out: Path, report: Report, progress: Progress | None,
            should_stop: Callable[[], bool] | None, worker_wait_s: float) -> None:  # fmt: skip
    from distributed import as_completed

    groups = chunks(todo, report.workers)
    futures = {c.submit(run_points, g, key=f"points-{g[0].hash}-{time.time_ns()}", pure=False,
                        priority=sum(t.priority for t in g)): g for g in groups}  # fmt: skip
    pending = as_completed(list(futures))
    batch = _Batch(out, report)
    alone = _Workerless(c, worker_wait_s)
    try:
        while not pending.is_empty() and report.lost is None:
            if should_stop is not None and should_stop():
                report.stopped = True
                break
            batch.flush_if_due()
            if not pending.has_ready():
                report.lost = alone.lost()
                time.sleep(POLL_S)
                continue
            _collect(pending, futures, batch, alone, report)
            if progress:
                progress(report.already + report.done + len(report.failed), report.total, len(report.failed))
    finally:
        if c.status == "running":
            c.cancel([f for f in futures if not f.done()], force=True)
        batch.flush()  # what finished, whatever stopped the sweep


def _collect(pending: Any, futures: dict[Any, list[Task]], batch: _Batch, alone: _Workerless, report: Report) -> None:
    """The finished tasks' points into ``batch``; ``report.lost`` set (and the rest left) if the engine went away."""
    for fut in pending.next_batch(block=False):
        try:
            outcomes = _outcomes(fut, futures[fut])
        except _Again:  # its result is being computed again: it comes back with the others
            pending.add(fut)
            report.lost = alone.lost()  # (unless no worker is left to compute it)
        except _EngineLost:  # not the points' doing: they stay unfinished, for a rerun to resume
            report.lost = "lost the connection to the scheduler"
        else:
            for task, outcome in zip(futures[fut], outcomes, strict=True):
                batch.add(task, outcome)
        if report.lost is not None:
            return


class _Workerless:
    """Whether the scheduler has had no worker for ``wait_s`` (a remote cluster's workers all gone: its tasks
    would wait for ever); asked at most every CHECK_S."""

    CHECK_S = 1.0

    def __init__(self, c: Any, wait_s: float):
        self.c, self.wait_s, self.checked = c, wait_s, time.monotonic()
        self.since: float | None = None  # when the scheduler was first seen with no worker

    def lost(self) -> str | None:
        now = time.monotonic()
        if now - self.checked < self.CHECK_S:
            return None
        self.checked = now
        try:
            workers = len(self.c.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # the scheduler itself is gone: its cancelled futures say so (``Report.lost``)
            return None
        self.since = None if workers else (self.since or now)
        if self.since is not None and now - self.since >= self.wait_s:
            return f"no worker left on the scheduler for {self.wait_s:g} s"
        return None


class _Batch:
    """Finished points not yet on disk: written as one part file every FLUSH_S (or FLUSH_POINTS points)."""

    def __init__(self, out: Path, report: Report):
        self.out, self.report = out, report
        self.rows: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.since = time.monotonic()

    def add(self, task: Task, outcome: Outcome) -> None:
        self.rows += outcome.rows
        self.logs.append({"point": task.index, "hash": task.hash, "wall_s": round(outcome.wall_s, 6),
                          "error_kind": outcome.error_kind})  # fmt: skip
        self.report.point_wall_s += outcome.wall_s
        if outcome.error is None:
            self.report.done += 1
        else:
            self.report.failed.append((task.index, outcome.error))
        if len(self.logs) >= FLUSH_POINTS:
            self.flush()

    def flush_if_due(self) -> None:
        if self.logs and time.monotonic() - self.since >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.logs:
            store.write_points(self.out, self.rows)
            store.log(self.out, self.logs)
        self.rows, self.logs, self.since = [], [], time.monotonic()


def chunks(todo: list[Task], workers: int) -> list[list[Task]]:
    """Points grouped into tasks of about CHUNK_EST_S of estimated simulation (Dask's cost is per task, ~10 ms of
    the client's CPU, which a 2-core machine takes from its workers), the longest first (a long point started last
    would leave the other workers idle); at most 1/(4 × workers) of the points in one task, so the last tasks are
    short and every worker has several."""
    known = [t.priority for t in todo if t.priority]
    typical = sum(known) / len(known) if known else 1e3 * CHUNK_EST_S  # points the plan did not estimate
    cap = max(1, len(todo) // (4 * max(workers, 1)))
    out: list[list[Task]] = []
    group: list[Task] = []
    est_ms = 0.0
    for t in sorted(todo, key=lambda t: -(t.priority or typical)):
        group.append(t)
        est_ms += t.priority or typical
        if est_ms >= CHUNK_EST_S * 1e3 or len(group) >= cap:
            out.append(group)
            group, est_ms = [], 0.0
    return [*out, group] if group else out


def run_points(group: list[Task]) -> list[Outcome]:
    return [run_point(t) for t in group]


class _EngineLost(Exception):
    """A task's result could not be had for a reason of the engine's (its scheduler gone), not of its points."""


class _Again(Exception):
    """A finished task's result did not come within RESULT_WAIT_S: the worker holding it died, and Dask computes
    it again (on a worker, when there is one: ``_Workerless`` watches for none)."""


def _outcomes(fut: Any, group: list[Task]) -> list[Outcome]:
    """The points' outcomes (``run_point`` turns whatever a point raises into its row); a task that took its
    worker down more often than Dask's allowed failures is its points' crash; a cancelled task or a connection
    that broke while its result came back is the engine's loss (``_EngineLost``)."""
    from concurrent.futures import CancelledError

    try:
        result: list[Outcome] = fut.result(timeout=RESULT_WAIT_S)
    except TimeoutError as exc:  # (not for ever: with no worker left, that wait would never end)
        raise _Again from exc
    except (CancelledError, OSError) as exc:  # CommClosedError is an OSError
        raise _EngineLost from exc
    except Exception as exc:  # KilledWorker: the task took its worker down again and again
        return [failed(t, f"{type(exc).__name__}: {shorten(str(exc), 200)}", "crash") for t in group]
    return result
