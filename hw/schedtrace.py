"""What the kernel's scheduler did to a twin run: how long its threads waited for a core, and how much of that
while a core sat idle.

The simulator's processor-sharing cores are work-conserving: an operation never waits while a core is free
(sim/hosts.py; ``cpu_sharing: linux`` models Linux's placement, ``PlacedCores``). Linux's cores are not, at the
scale of a round on a small machine. Traced here (a 2-core VM, kernel 6.18, 250 Hz tick): a woken thread is queued
on a busy core and waits for it, or for the next tick's load balancing, while the other core is idle (an idle core
pulls work only when it has been idle longer than the migration cost), and more runnable threads than cores take
turns in 4 ms slices. In concurrent 50 k-parameter rounds (five processes on two cores) the twin's threads waited
0.35-0.37 s per second of rounds while another core idled, in sequential ones 0.12-0.17 s (README, Scheduler). That
is a property of the machine the twin runs on, not of the modelled deployment, so a run reports it beside its load.

``SchedTrace`` records the kernel's ``sched_switch``, ``sched_waking``, ``sched_wakeup(_new)`` and
``sched_process_fork`` events in a tracefs instance of its own (the global tracer is not touched), from before the nodes
start to after they end; an instance left by a run that was killed is removed by the next one. ``waits`` reads them
back, in the kernel's order: per node (its threads found by their forks; the device emulator and the run's own process,
``runner``, count as nodes), the CPU its threads ran for, the time they were runnable but not running (woken, or
preempted, until switched in) within the rounds' window, and the part of it during which another core the node may run
on (``allowed``) ran nothing. A buffer that lost events gives no figures rather than wrong ones. It needs root and
tracefs (``/sys/kernel/tracing``, mounted there if it is not, as systemd would, and left mounted); where either is
missing the run records no scheduler figures.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import gzip
import json
import logging
import math
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.contract import SchedWaits
from sim.errors import UserError
from sim.loading import require_regular

log = logging.getLogger(__name__)

TRACEFS = Path("/sys/kernel/tracing")
# sched_waking is traced on the waker's cpu; sched_wakeup, where the woken thread is queued: on an idle cpu that
# shares a cache with the waker's, Linux hands the wake-up to that cpu, and it is traced there
EVENTS = ("sched/sched_switch", "sched/sched_waking", "sched/sched_wakeup", "sched/sched_wakeup_new",
          "sched/sched_process_fork")  # fmt: skip
OPTIONAL = "sched/sched_waking"  # only ``wake_placements`` needs it: a kernel without it still gives the waits
BUFFER_KB_PER_CPU = 32_768  # ~570 k events a CPU here: minutes of a twin run's scheduling
BUFFER_KB_TOTAL = 131_072  # at most this much kernel memory, however many CPUs
PREFIX = "pqtwin-"  # instances are named pqtwin-<pid>-<token>

# "<comm>-<pid> [cpu] flags timestamp: event: fields": the cpu field is the bracket right before the flags and
# the timestamp, and each event's fields are matched from the end of the line (a comm may hold anything)
_LINE = re.compile(
    r"\[(\d+)\]\s+\S+\s+([\d.]+): (sched_switch|sched_waking|sched_wakeup(?:_new)?|sched_process_fork): (.*)$"
)
_SWITCH = re.compile(r".* prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> .* next_pid=(\d+) next_prio=\d+$")
_WAKEUP = re.compile(r".* pid=(\d+) prio=\d+ target_cpu=(\d+)$")
_FORK = re.compile(r".* pid=(\d+) child_comm=.* child_pid=(\d+)$")


@dataclass
class SchedTrace:
    """A tracefs instance recording the scheduler's events; ``start`` it before the nodes spawn."""

    root: Path

    @classmethod
    def start(cls, tracefs: Path = TRACEFS) -> SchedTrace | None:
        """Recording, or None where this machine cannot trace (not root, no tracefs, an instance refused)."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or not _mounted(tracefs):
            return None
        _remove_orphans(tracefs / "instances")
        root = tracefs / "instances" / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            root.mkdir()
        except OSError as exc:
            log.info("no scheduler trace: %s", exc)
            return None
        trace = cls(root)
        try:
            (root / "trace_clock").write_text("mono")  # time.monotonic(): the twin's clock
            per_cpu = min(BUFFER_KB_PER_CPU, BUFFER_KB_TOTAL // max(1, os.cpu_count() or 1))
            (root / "buffer_size_kb").write_text(str(per_cpu))
            for event in EVENTS:
                if event != OPTIONAL or (root / "events" / event).is_dir():
                    (root / "events" / event / "enable").write_text("1")
            (root / "tracing_on").write_text("1")
        except OSError as exc:
            log.info("no scheduler trace: %s", exc)
            trace.close()
            return None
        atexit.register(trace.close)  # an exception that skips stop() still removes it (a kill: the next run)
        return trace

    def stop(self) -> str | None:
        """Stop recording and remove the instance; the events as text, or None if they could not be read or
        a CPU's buffer lost some (its oldest, whenever it wrapped)."""
        try:
            (self.root / "tracing_on").write_text("0")
            lost = any(_overrun(stats) for stats in (self.root / "per_cpu").glob("cpu*/stats"))
            return None if lost else (self.root / "trace").read_text(errors="replace")
        except OSError:
            return None
        finally:
            self.close()

    def close(self) -> None:
        atexit.unregister(self.close)
        _remove(self.root)


def _mounted(tracefs: Path) -> bool:
    """tracefs is there, mounted here if it was not (where systemd mounts it, and left mounted)."""
    if (tracefs / "instances").is_dir():
        return True
    mount = shutil.which("mount")
    if mount is None or not tracefs.is_dir():
        return False
    done = subprocess.run([mount, "-t", "tracefs", "nodev", str(tracefs)], capture_output=True, check=False)  # noqa: S603
    return done.returncode == 0 and (tracefs / "instances").is_dir()


def _overrun(stats: Path) -> bool:
    """Whether a CPU's buffer lost events (an unreadable count counts as lost)."""
    text = stats.read_text(encoding="utf-8", errors="replace")
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields.get("overrun", "0").strip() or 0) > 0
    except ValueError:
        return True


def _remove(root: Path) -> None:
    """Stop and remove a trace instance (best effort)."""
    with contextlib.suppress(OSError):
        (root / "tracing_on").write_text("0")
    with contextlib.suppress(OSError):
        for event in EVENTS:
            (root / "events" / event / "enable").write_text("0")
    with contextlib.suppress(OSError):
        root.rmdir()


def _remove_orphans(instances: Path) -> None:
    """Instances of runs whose process is gone (killed before it could remove its own)."""
    for root in instances.glob(f"{PREFIX}*"):
        pid = root.name[len(PREFIX) :].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove(root)


def waits(text: str, nodes: dict[str, int], window: tuple[float, float],
          allowed: dict[str, set[int]] | None = None) -> SchedWaits | None:  # fmt: skip
    """The nodes' waits for a core within ``window`` (monotonic seconds): ``nodes`` maps each node to its
    process id; a thread belongs to the node whose process (or a thread of it) forked it; ``allowed``, the
    CPUs each node may run on (default: all). None when the trace does not cover the window."""
    return windows_waits(text, nodes, [window], allowed)[0]


def windows_waits(text: str, nodes: dict[str, int], windows: list[tuple[float, float]],
                  allowed: dict[str, set[int]] | None = None) -> list[SchedWaits | None]:  # fmt: skip
    """``waits`` of each of ``windows`` (a run's rounds), the trace parsed once."""
    events, parent = _events(text)
    owners = _owners(parent, nodes)
    covered = bool(events)
    return [_measure(events, owners, allowed or {}, w0, w1) if covered and events[0][0] <= w0 else None
            for w0, w1 in windows]  # fmt: skip


# (time, 0 wakeup | 1 switch | 2 fork | 3 waking, ...): a wakeup (t, 0, woken pid, the cpu it is queued on, "",
# the cpu it was traced on); a waking (t, 3, pid, its cpu then, "", the waker's cpu); a switch (t, 1, cpu,
# previous pid, its state, next pid)
Event = tuple[float, int, int, int, str, int]


def _events(text: str) -> tuple[list[Event], dict[int, int]]:
    """The trace's events in time order (the kernel's order within an instant), and each forked thread's parent."""
    parent: dict[int, int] = {}
    events: list[Event] = []
    for line in text.splitlines():
        if (m := _LINE.search(line)) is None:
            continue
        cpu, t, kind, rest = int(m[1]), float(m[2]), m[3], m[4]
        if kind == "sched_switch" and (f := _SWITCH.match(rest)) is not None:
            events.append((t, 1, cpu, int(f[1]), f[2], int(f[3])))
        elif kind.startswith("sched_wakeup") and (f := _WAKEUP.match(rest)) is not None:
            events.append((t, 0, int(f[1]), int(f[2]), "", cpu))
        elif kind == "sched_waking" and (f := _WAKEUP.match(rest)) is not None:
            events.append((t, 3, int(f[1]), int(f[2]), "", cpu))
        elif kind == "sched_process_fork" and (f := _FORK.match(rest)) is not None:
            parent[int(f[2])] = int(f[1])
            events.append((t, 2, 0, 0, "", 0))
    events.sort(key=lambda e: e[0])  # stable: the kernel's order within an instant (microseconds)
    return events, parent


PROMPT_S = 100e-6  # a pull this soon after a core went idle is the new-idle balance's, not a tick's
HOT_S = 500e-6  # Linux's sysctl_sched_migration_cost: a thread that ran this recently is cache-hot


@dataclass(frozen=True)
class IdlePull:
    """A core went idle at ``at_s`` while another had threads waiting (runnable, queued there); what came next:
    ``pulled`` (the idle core ran one of them), ``own`` (their core ran one first) or ``other`` (the idle core
    ran another thread first), ``after_s`` later; ``hot``: every waiting thread had run within ``HOT_S``."""

    at_s: float
    outcome: str
    after_s: float
    hot: bool


def wake_placements(text: str, window: tuple[float, float]) -> dict[tuple[str, str], int]:
    """Where the kernel queued threads woken within ``window`` by a running thread, counted by (where the woken
    thread last ran, at the wakeup: ``waker's cpu``, ``other cpu, busy``, ``other cpu, idle``; where it was
    queued: ``its own``, ``waker's``, ``elsewhere``): how often Linux moves a woken thread to its waker's core
    (its wake-affine choice), which ``PlacedCores`` (sim/hosts.py) draws. The waker is the thread running where
    the wake-up's ``sched_waking`` was traced (a wake-up onto an idle cpu is traced on that cpu); wake-ups from
    an idle cpu (an interrupt's), of threads still running or not seen running yet, and traces without
    ``sched_waking`` (runs before 2026-11-30 20:00) give nothing."""
    events, _ = _events(text)
    running: dict[int, int] = {}  # cpu -> thread (0: idle)
    last: dict[int, int] = {}  # thread -> the cpu it last ran on
    waking: dict[int, tuple[int, str]] = {}  # thread -> (the waker's cpu, where it last ran then)
    out: dict[tuple[str, str], int] = {}
    for t, kind, a, b, _state, c in events:
        if kind == 1:
            running[a] = c
            for tid in (b, c):  # on a cpu: leaving it, or switched in (a switch in is not always traced)
                if tid:
                    last[tid] = a
        elif kind == 3:
            waking.pop(a, None)
            prev = last.get(a)
            if prev is None or a in running.values() or not running.get(c, 0) or not window[0] <= t <= window[1]:
                continue
            busy = "other cpu, busy" if running.get(prev, 0) else "other cpu, idle"
            waking[a] = (c, "waker's cpu" if prev == c else busy)
        elif kind == 0 and a in waking:
            waker_cpu, where = waking.pop(a)
            went = "its own" if b == last[a] else "waker's" if b == waker_cpu else "elsewhere"
            out[where, went] = out.get((where, went), 0) + 1
    return out


HANDED_S = 0.0015  # how soon after a concurrent round's start its jobs are handed on (``handed_on``)


def handed_on(text: str, nodes: dict[str, int], starts_s: list[float], node: str = "aggregator",
              within_s: float = HANDED_S) -> dict[tuple[str, str], int]:  # fmt: skip
    """Where the kernel queued the second job thread of each concurrent round: ``node``'s main thread submits a
    round's jobs at once (hw/node/aggregator.py ``_round``) and wakes one job thread, which, taking its job, wakes
    the next (the pool's queue handed on). For each of ``starts_s`` (rounds' starts, monotonic s), the first
    thread of ``node`` that the thread ``node``'s main thread woke first then wakes, within ``within_s``; counted
    by (where it last ran: ``waker's cpu`` or ``other cpu``; where it was queued: ``waker's`` or ``elsewhere``),
    a round once. ``PlacedCores`` (sim/hosts.py) draws a woken thread's core with ``AFFINE_BUSY`` / ``AFFINE_IDLE``,
    which this wake-up need not follow."""
    events, parent = _events(text)
    owner = _owners(parent, nodes)
    main = nodes.get(node)
    starts = sorted(starts_s)
    running: dict[int, int] = {}  # cpu -> thread
    last: dict[int, int] = {}  # thread -> the cpu it last ran on
    first: dict[int, int] = {}  # round -> the thread the main thread woke first
    done: set[int] = set()
    pending: tuple[int, int, str, int] | None = None  # (woken, waker's cpu, where it last ran, round)
    out: dict[tuple[str, str], int] = {}
    for t, kind, a, b, _state, c in events:
        if kind == 1:
            running[a] = c
            for tid in (b, c):
                if tid:
                    last[tid] = a
            continue
        k = bisect.bisect_right(starts, t) - 1
        if kind == 3 and k >= 0 and t - starts[k] <= within_s and k not in done and pending is None:
            waker = running.get(c, 0)
            if main is None or owner.get(a) != node or owner.get(waker) != node or a == main or a not in last:
                continue
            if k not in first:
                if waker == main:
                    first[k] = a
            elif waker == first[k] and a != first[k]:
                pending = (a, c, "waker's cpu" if last[a] == c else "other cpu", k)
        elif kind == 0 and pending is not None and a == pending[0]:
            key = (pending[2], "waker's" if b == pending[1] else "elsewhere")
            out[key] = out.get(key, 0) + 1
            done.add(pending[3])
            pending = None
    return out


def idle_pulls(text: str, window: tuple[float, float]) -> list[IdlePull]:
    """Every moment within ``window`` a core went idle beside waiting threads (any thread, ours or not), and how
    it ended: whether Linux's new-idle balance pulls waiting work at once, which ``PlacedCores`` (sim/hosts.py)
    has to decide."""
    events, _ = _events(text)
    running: dict[int, int] = {}  # cpu -> thread (0: idle)
    queued: dict[int, int] = {}  # runnable thread -> the cpu whose queue holds it
    stopped: dict[int, float] = {}  # thread -> when it last left a cpu
    open_: list[tuple[int, float, frozenset[int], bool]] = []  # (idle cpu, since, waiting threads, hot)
    out: list[IdlePull] = []
    for t, kind, a, b, state, nxt in events:
        if kind == 0:  # a wakeup of a thread not running: queued on its target cpu
            if a not in running.values():
                queued[a] = b
            continue
        if kind != 1:
            continue
        cpu, prev = a, b
        if prev:
            stopped[prev] = t
            if state.startswith("R"):
                queued[prev] = cpu
            else:
                queued.pop(prev, None)
        from_cpu = queued.pop(nxt, None) if nxt else None
        still = []
        for idle_cpu, since, waiting, hot in open_:
            if nxt and idle_cpu == cpu:
                out.append(IdlePull(since, "pulled" if nxt in waiting else "other", t - since, hot))
            elif nxt in waiting and cpu == from_cpu:
                out.append(IdlePull(since, "own", t - since, hot))
            else:
                still.append((idle_cpu, since, waiting, hot))
        open_ = still
        running[cpu] = nxt
        if nxt == 0 and window[0] <= t <= window[1]:
            waiting = frozenset(tid for tid, c in queued.items() if c != cpu)
            if waiting:
                open_.append((cpu, t, waiting, all(t - stopped.get(tid, -math.inf) < HOT_S for tid in waiting)))
    return out


@dataclass(frozen=True)
class Preemption:
    """How a run queue served its threads within a window: ``busy_wakeups`` threads woken onto a cpu running
    another thread, ``preempted`` of them ran at once (within ``PROMPT_S``), switched in for the thread running
    there (which stayed runnable); ``slices_s``: how long each thread preempted for a thread that had waited on
    its cpu all the while had run."""

    busy_wakeups: int
    preempted: int
    slices_s: tuple[float, ...]


def preemptions(text: str, window: tuple[float, float], nodes: dict[str, int] | None = None) -> Preemption:
    """How one core's run queue takes turns (wake-ups and preemptions within ``window``; of the ``nodes``' threads
    if any are given, as ``waits`` has them, else of any thread): whether a woken thread preempts the running one,
    and how long a thread keeps its core while another waits there, which ``SlicedCore`` (sim/hosts.py) draws and
    charges."""
    events, parent = _events(text)
    ours = _owners(parent, nodes) if nodes else None
    running: dict[int, int] = {}  # cpu -> thread (0: idle)
    since: dict[int, float] = {}  # cpu -> when its thread was switched in
    ready: dict[int, tuple[int, float]] = {}  # runnable thread -> (the cpu it is queued on, since when)
    woken: dict[int, tuple[int, int, float]] = {}  # thread woken onto a busy cpu -> (that cpu, its thread, when)
    busy = preempted = 0
    slices: list[float] = []
    for t, kind, a, b, state, nxt in events:
        inside = window[0] <= t <= window[1]
        if kind == 0 and a not in running.values():
            ready.setdefault(a, (b, t))
            if inside and running.get(b, 0) not in (0, a) and (ours is None or a in ours):
                woken[a] = (b, running[b], t)
                busy += 1
        elif kind == 1:
            cpu, prev = a, b
            pre = state.startswith("R") and bool(prev)
            queued_on, waited_since = ready.get(nxt, (-1, math.inf))
            if (
                pre
                and inside
                and queued_on == cpu
                and waited_since <= since.get(cpu, -math.inf)
                and (ours is None or prev in ours)
            ):
                slices.append(t - since[cpu])  # it ran while nxt waited, then made way for it
            onto = woken.pop(nxt, None)
            if pre and onto is not None and onto[:2] == (cpu, prev) and t - onto[2] <= PROMPT_S:
                preempted += 1
            woken.pop(prev, None)
            ready.pop(nxt, None)
            if pre:
                ready[prev] = (cpu, t)
            running[cpu], since[cpu] = nxt, t
    return Preemption(busy, preempted, tuple(slices))


KEPT_HEADER = "# pqtwin sched trace "


@dataclass(frozen=True)
class SiblingWaits:
    """Within a window, seconds that threads of two or more of a group of nodes (the crypto workers) ran at once
    (``together_s``), and that one of them waited queued behind another of the group on its core, while the other
    core was idle (``behind_idle_s``) or busy (``behind_busy_s``)."""

    together_s: float
    behind_idle_s: float
    behind_busy_s: float


def sibling_waits(text: str, window: tuple[float, float], nodes: dict[str, int], prefix: str) -> SiblingWaits:
    """How the threads of the nodes named ``prefix``... shared the cores within ``window``: side by side, or one
    queued behind another (the twin's two crypto workers of a distribution, bench/sched_idle.py; the model's
    ``PlacedCores`` serialises them more than Linux does,
    docs/twin-validation.md, stop 37)."""
    events, parent = _events(text)
    group = {tid: name for tid, name in _owners(parent, nodes).items() if name.startswith(prefix)}
    running: dict[int, int] = {}  # cpu -> thread (0: idle)
    queued: dict[int, int] = {}  # runnable thread -> the cpu whose queue holds it
    sums = [0.0, 0.0, 0.0]
    last = window[0]
    for t, kind, a, b, state, nxt in events:
        if t > last and t >= window[0]:
            _sibling_state(running, queued, group, sums, min(t, window[1]) - last)
            last = min(t, window[1])
        if kind == 1:
            running[a] = nxt
            queued.pop(nxt, None)
            if b and state.startswith("R"):
                queued[b] = a
            elif b:
                queued.pop(b, None)
        elif kind == 0 and a not in running.values():
            queued[a] = b
    return SiblingWaits(*sums)


def _sibling_state(running: dict[int, int], queued: dict[int, int], group: dict[int, str], sums: list[float],
                   dt: float) -> None:  # fmt: skip
    """Add ``dt`` of the state now to ``sums`` (together, behind one with the other core idle, busy)."""
    on = {cpu: group[tid] for cpu, tid in running.items() if tid in group}
    if len(set(on.values())) >= 2:
        sums[0] += dt
    for tid, cpu in queued.items():
        if tid in group and cpu in on and on[cpu] != group[tid] and group[tid] not in on.values():
            idle = any(not running.get(other, 0) for other in running if other != cpu)
            sums[1 if idle else 2] += dt


def keep(text: str, window: tuple[float, float] | None, nodes: dict[str, int], path: Path) -> None:
    """Keep a run's trace in ``path``, gzipped: a header line with its rounds' window and the nodes' processes
    (``waits``' other arguments; the run's own process is ``runner``), then the kernel's lines as read."""
    header = json.dumps({"window": window, "nodes": {**nodes, "runner": os.getpid()}})
    tmp = path.with_name(path.name + ".tmp")
    try:
        with gzip.open(tmp, "wt", compresslevel=6) as f:
            f.write(f"{KEPT_HEADER}{header}\n")
            f.write(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a write that failed (a full disk) leaves no half file


def read_kept(path: Path) -> tuple[str, tuple[float, float] | None, dict[str, int]]:
    """A kept trace: (its text, the rounds' window, the nodes' processes), as ``waits`` takes them."""
    try:
        require_regular(path, "a kept scheduler trace")  # gzip's reader blocks on a FIFO
    except UserError as exc:
        raise ValueError(exc.lines[0]) from None
    with gzip.open(path, "rt") as f:
        first = f.readline()
        text = f.read()
    if not first.startswith(KEPT_HEADER):
        raise ValueError(f"{path}: not a kept scheduler trace")
    meta = json.loads(first[len(KEPT_HEADER) :])
    window = (float(meta["window"][0]), float(meta["window"][1])) if meta["window"] is not None else None
    return text, window, {str(k): int(v) for k, v in meta["nodes"].items()}


def _owners(parent: dict[int, int], nodes: dict[str, int]) -> dict[int, str]:
    """Each traced thread's node: up its forks to a node's process."""
    by_pid = {pid: name for name, pid in nodes.items()}
    out: dict[int, str] = dict(by_pid)
    for tid in parent:
        seen: list[int] = []
        t = tid
        while t not in out and t in parent and len(seen) < 64:
            seen.append(t)
            t = parent[t]
        name = out.get(t)
        if name is not None:
            out.update(dict.fromkeys(seen, name))
    return out


def _measure(events: list[tuple[float, int, int, int, str, int]], owner: dict[int, str],
             allowed: dict[str, set[int]], w0: float, w1: float) -> SchedWaits:  # fmt: skip
    """Runnable-but-not-running intervals of the nodes' threads, clipped to [w0, w1], and their overlap with
    the time another allowed core ran nothing; and the CPU each node's threads ran for in the window."""
    replay = _Replay(owner, w0, w1)
    for t, kind, a, b, state, nxt in events:  # (time, 0 wakeup | 1 switch | 2 fork, cpu or woken pid, ...)
        if kind == 0:
            replay.wake(t, a, b)
        elif kind == 1:
            replay.switch(t, a, b, state, nxt)
    return replay.result(allowed)


class _Replay:
    """The scheduler's events in time order, kept as: who runs on each cpu since when, which threads are
    runnable since when, the cpus' idle intervals, and the nodes' waits and CPU."""

    def __init__(self, owner: dict[int, str], w0: float, w1: float):
        self.owner, self.w0, self.w1 = owner, w0, w1
        # thread -> since when it is runnable, on which cpu's queue, and why: woken, or preempted (still runnable)
        self.ready: dict[int, tuple[float, int, str]] = {}
        self.woke: dict[int, tuple[float, int]] = {}  # thread -> its last wakeup (time, target cpu)
        self.running: dict[int, int] = {}  # cpu -> thread (0: idle)
        self.since: dict[int, float] = {}
        self.idle: dict[int, list[tuple[float, float]]] = {}  # cpu -> its idle intervals
        self.waits: list[tuple[str, float, float, int, str]] = []  # (node, runnable from, to, its queue's cpu, why)
        self.ran: dict[str, float] = {}

    def wake(self, t: float, tid: int, cpu: int) -> None:
        self.woke[tid] = (t, cpu)
        if tid in self.owner and tid not in self.running.values():
            self.ready.setdefault(tid, (t, cpu, "woken"))

    def switch(self, t: float, cpu: int, prev: int, state: str, nxt: int) -> None:
        current = self.running.get(cpu)
        woke_t, woke_cpu = self.woke.get(prev, (-1.0, -1))
        if current == 0 and prev != 0 and woke_cpu == cpu and woke_t >= self.since[cpu]:
            # woken on this idle cpu and run at once, its switch in not traced (seen here in ~5 % of
            # switches): the cpu was idle until the wakeup, then ran it
            self.idle.setdefault(cpu, []).append((self.since[cpu], woke_t))
            self._credit(prev, woke_t, t)
        elif current == 0:
            self.idle.setdefault(cpu, []).append((self.since[cpu], t))
        elif current is not None:
            self._credit(current, self.since[cpu], t)
        self.running[cpu], self.since[cpu] = nxt, t
        self.ready.pop(prev, None)  # it ran, whether or not its switch in was seen (a wakeup racing its sleep)
        if prev in self.owner and state.startswith("R"):  # preempted: still runnable
            self.ready[prev] = (t, cpu, "preempted")
        if nxt in self.ready:
            since, queued_on, why = self.ready.pop(nxt)
            self.waits.append((self.owner[nxt], since, t, queued_on, why))

    def _credit(self, tid: int, a: float, b: float) -> None:
        if (who := self.owner.get(tid)) is not None:
            self.ran[who] = self.ran.get(who, 0.0) + max(0.0, min(b, self.w1) - max(a, self.w0))

    def result(self, allowed: dict[str, set[int]]) -> SchedWaits:
        w0, w1 = self.w0, self.w1
        for cpu, tid in self.running.items():  # still running, or idle, when the trace ends
            if tid == 0:
                self.idle.setdefault(cpu, []).append((self.since[cpu], w1))
            self._credit(tid, self.since[cpu], w1)
        for tid, (t, queued_on, why) in self.ready.items():  # still waiting when the trace ends
            self.waits.append((self.owner[tid], t, w1, queued_on, why))
        unions: dict[frozenset[int], tuple[np.ndarray, np.ndarray]] = {}  # cpus -> when one of them idled
        by_node: dict[str, float] = {}
        by_cause = {"woken": 0.0, "preempted": 0.0}
        by_cause_idle = {"woken": 0.0, "preempted": 0.0}
        total = while_idle = 0.0
        for name, a, b, queued_on, why in self.waits:
            a, b = max(a, w0), min(b, w1)
            if b <= a:
                continue
            by_node[name] = by_node.get(name, 0.0) + (b - a)
            by_cause[why] += b - a
            total += b - a
            # beside an idle core it may run on, other than the one it is queued on (a thread woken onto an idle
            # core waits there only for its wake-up)
            cpus = frozenset(c for c in self.idle if c != queued_on and (name not in allowed or c in allowed[name]))
            if cpus not in unions:
                unions[cpus] = _merged([iv for c in cpus for iv in self.idle[c]])
            beside = _overlap(unions[cpus], a, b)
            while_idle += beside
            by_cause_idle[why] += beside
        return SchedWaits(window_s=w1 - w0, runnable_wait_s=total, idle_core_wait_s=while_idle,
                          by_node_wait_s={k: by_node[k] for k in sorted(by_node)},
                          by_node_cpu_s={k: self.ran[k] for k in sorted(self.ran)},
                          by_cause_wait_s=by_cause, by_cause_idle_core_wait_s=by_cause_idle)  # fmt: skip


def _overlap(merged: tuple[np.ndarray, np.ndarray], a: float, b: float) -> float:
    """Seconds of [a, b] inside sorted, disjoint intervals."""
    starts, ends = merged
    lo, hi = np.searchsorted(ends, a, side="right"), np.searchsorted(starts, b, side="left")
    return float((np.minimum(ends[lo:hi], b) - np.maximum(starts[lo:hi], a)).clip(min=0.0).sum())


def union_s(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of intervals (s)."""
    starts, ends = _merged(intervals)
    return float((ends - starts).sum())


def _merged(intervals: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals as sorted, disjoint (starts, ends)."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    arr = np.array(out) if out else np.empty((0, 2))
    return arr[:, 0], arr[:, 1]
