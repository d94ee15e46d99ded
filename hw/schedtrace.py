"""What the kernel's scheduler did to a twin run: how long its threads waited for a core, and how much of that
while a core sat idle.

The simulator's cores are work-conserving: an operation never waits while a core is free (sim/hosts.py). Linux's
are not, at the scale of a round on a small machine. Traced here (a 2-core VM, kernel 6.18, 250 Hz tick): a woken
thread is queued on a busy core and waits for it, or for the next tick's load balancing, while the other core is
idle (an idle core pulls work only when it has been idle longer than the migration cost), and more runnable
threads than cores take turns in 4 ms slices. In a concurrent 50 k-parameter round (five processes on two cores)
the twin's threads waited ~13.8 ms per 26 ms round while a core idled; in a sequential one ~5.2 ms. That is a
property of the machine the twin runs on, not of the modelled deployment, so a run reports it beside its load.

``SchedTrace`` records the kernel's ``sched_switch``, ``sched_wakeup`` and ``sched_process_fork`` events in a
tracefs instance of its own (the global tracer is not touched), from before the nodes start to after they end;
``waits`` reads them back: per node (its threads found by their forks; the device emulator and the run's own
process, ``runner``, count as nodes), the CPU its threads ran for, the time they were runnable but
not running (woken, or preempted, until switched in) within the rounds' window, and the part of it during which
some core ran nothing. It needs root and tracefs (``/sys/kernel/tracing``, mounted there if it is not, as
systemd would, and left mounted); where either is missing the run records no scheduler figures.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.contract import SchedWaits

log = logging.getLogger(__name__)

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("sched/sched_switch", "sched/sched_wakeup", "sched/sched_process_fork")
BUFFER_KB_PER_CPU = 32_768  # ~1 M events a CPU: a few minutes of a twin run's scheduling
BUFFER_KB_TOTAL = 131_072  # at most this much kernel memory, however many CPUs

_SWITCH = re.compile(
    r"\[(\d+)\].*?\s([\d.]+): sched_switch: .*?prev_pid=(\d+) .*?prev_state=(\S+) ==> .*?next_pid=(\d+)"
)
_WAKEUP = re.compile(r"\s([\d.]+): sched_wakeup: .*?pid=(\d+) .*?target_cpu=(\d+)")
_FORK = re.compile(r"\s([\d.]+): sched_process_fork: .*?pid=(\d+) child_comm=.*? child_pid=(\d+)")


@dataclass
class SchedTrace:
    """A tracefs instance recording the scheduler's events; ``start`` it before the nodes spawn."""

    root: Path

    @classmethod
    def start(cls, tracefs: Path = TRACEFS) -> SchedTrace | None:
        """Recording, or None where this machine cannot trace (not root, no tracefs, an instance refused)."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        if not (tracefs / "instances").is_dir():  # mounted where systemd mounts it, and left mounted
            mount = shutil.which("mount")
            if mount is None or not tracefs.is_dir():
                return None
            done = subprocess.run([mount, "-t", "tracefs", "nodev", str(tracefs)], capture_output=True, check=False)  # noqa: S603
            if done.returncode != 0 or not (tracefs / "instances").is_dir():
                return None
        root = tracefs / "instances" / f"pqtwin-{os.getpid()}"
        try:
            root.mkdir()
            (root / "trace_clock").write_text("mono")  # time.monotonic(): the twin's clock
            per_cpu = min(BUFFER_KB_PER_CPU, BUFFER_KB_TOTAL // max(1, os.cpu_count() or 1))
            (root / "buffer_size_kb").write_text(str(per_cpu))
            for event in EVENTS:
                (root / "events" / event / "enable").write_text("1")
            (root / "tracing_on").write_text("1")
        except OSError as exc:
            log.info("no scheduler trace: %s", exc)
            cls(root).close()
            return None
        return cls(root)

    def stop(self) -> str:
        """Stop recording; the events as text (empty if they could not be read). Removes the instance."""
        try:
            (self.root / "tracing_on").write_text("0")
            return (self.root / "trace").read_text(errors="replace")
        except OSError:
            return ""
        finally:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            for event in EVENTS:
                (self.root / "events" / event / "enable").write_text("0")
        with contextlib.suppress(OSError):
            self.root.rmdir()


def waits(text: str, nodes: dict[str, int], window: tuple[float, float]) -> SchedWaits | None:
    """The nodes' waits for a core within ``window`` (monotonic seconds): ``nodes`` maps each node to its
    process id; a thread belongs to the node whose process (or a thread of it) forked it. None when the trace
    does not cover the window."""
    parent: dict[int, int] = {}
    switches: list[tuple[int, float, int, str, int]] = []
    wakeups: list[tuple[float, int, int]] = []
    first = None  # the oldest event kept: a buffer that overflowed lost the ones before it
    for line in text.splitlines():
        if (m := _SWITCH.search(line)) is not None:
            switches.append((int(m[1]), float(m[2]), int(m[3]), m[4], int(m[5])))
        elif (m := _WAKEUP.search(line)) is not None:
            wakeups.append((float(m[1]), int(m[2]), int(m[3])))
        elif (m := _FORK.search(line)) is not None:
            parent[int(m[3])] = int(m[2])
        else:
            continue
        first = float(m[1] if m.re is not _SWITCH else m[2]) if first is None else first
    w0, w1 = window
    if first is None or first > w0:
        return None
    owner = _owners(parent, nodes)
    return _measure(switches, wakeups, owner, w0, w1)


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


def _measure(switches: Iterable[tuple[int, float, int, str, int]], wakeups: list[tuple[float, int, int]],
             owner: dict[int, str], w0: float, w1: float) -> SchedWaits:  # fmt: skip
    """Runnable-but-not-running intervals of the nodes' threads, clipped to [w0, w1], and their overlap with
    the time some core ran nothing; and the CPU each node's threads ran for in the window."""
    # (time, kind, cpu or woken pid, prev or target cpu, prev_state, next): wakeups (kind 0) before switches
    events = sorted([(t, 1, cpu, prev, state, nxt) for cpu, t, prev, state, nxt in switches]
                    + [(t, 0, pid, target, "", 0) for t, pid, target in wakeups])  # fmt: skip
    replay = _Replay(owner, w0, w1)
    for t, kind, a, b, state, nxt in events:
        if kind == 0:
            replay.wake(t, a, b)
        else:
            replay.switch(t, a, b, state, nxt)
    return replay.result()


class _Replay:
    """The scheduler's events in time order, kept as: who runs on each cpu since when, which threads are
    runnable since when, the cpus' idle intervals, and the nodes' waits and CPU."""

    def __init__(self, owner: dict[int, str], w0: float, w1: float):
        self.owner, self.w0, self.w1 = owner, w0, w1
        self.ready: dict[int, float] = {}  # thread -> since when it is runnable
        self.woke: dict[int, tuple[float, int]] = {}  # thread -> its last wakeup (time, target cpu)
        self.running: dict[int, int] = {}  # cpu -> thread (0: idle)
        self.since: dict[int, float] = {}
        self.idle: list[tuple[float, float]] = []
        self.waits: list[tuple[str, float, float]] = []
        self.ran: dict[str, float] = {}

    def wake(self, t: float, tid: int, cpu: int) -> None:
        self.woke[tid] = (t, cpu)
        if tid in self.owner and tid not in self.running.values():
            self.ready.setdefault(tid, t)

    def switch(self, t: float, cpu: int, prev: int, state: str, nxt: int) -> None:
        current = self.running.get(cpu)
        woke_t, woke_cpu = self.woke.get(prev, (-1.0, -1))
        if current == 0 and prev != 0 and woke_cpu == cpu and woke_t >= self.since[cpu]:
            # woken on this idle cpu and run at once, its switch in not traced (seen here in ~5 % of
            # switches): the cpu was idle until the wakeup, then ran it
            self.idle.append((self.since[cpu], woke_t))
            self._credit(prev, woke_t, t)
        elif current == 0:
            self.idle.append((self.since[cpu], t))
        elif current is not None:
            self._credit(current, self.since[cpu], t)
        self.running[cpu], self.since[cpu] = nxt, t
        self.ready.pop(prev, None)  # it ran, whether or not its switch in was seen (a wakeup racing its sleep)
        if prev in self.owner and state.startswith("R"):  # preempted: still runnable
            self.ready[prev] = t
        if nxt in self.ready:
            self.waits.append((self.owner[nxt], self.ready.pop(nxt), t))

    def _credit(self, tid: int, a: float, b: float) -> None:
        if (who := self.owner.get(tid)) is not None:
            self.ran[who] = self.ran.get(who, 0.0) + max(0.0, min(b, self.w1) - max(a, self.w0))

    def result(self) -> SchedWaits:
        w0, w1 = self.w0, self.w1
        for cpu, tid in self.running.items():  # still running when the trace ends
            self._credit(tid, self.since[cpu], w1)
        for tid, t in self.ready.items():  # still waiting when the trace ends
            self.waits.append((self.owner[tid], t, w1))
        by_node: dict[str, float] = {}
        total = while_idle = 0.0
        starts, ends = _merged(self.idle + [(self.since[c], w1) for c, tid in self.running.items() if tid == 0])
        for name, a, b in self.waits:
            a, b = max(a, w0), min(b, w1)
            if b <= a:
                continue
            by_node[name] = by_node.get(name, 0.0) + (b - a)
            total += b - a
            lo, hi = np.searchsorted(ends, a, side="right"), np.searchsorted(starts, b, side="left")
            while_idle += float((np.minimum(ends[lo:hi], b) - np.maximum(starts[lo:hi], a)).clip(min=0.0).sum())
        return SchedWaits(window_s=w1 - w0, runnable_wait_s=total, idle_core_wait_s=while_idle,
                          by_node_wait_s={k: by_node[k] for k in sorted(by_node)},
                          by_node_cpu_s={k: self.ran[k] for k in sorted(self.ran)})  # fmt: skip


def _merged(intervals: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals as sorted, disjoint (starts, ends): time during which some core was idle."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    arr = np.array(out) if out else np.empty((0, 2))
    return arr[:, 0], arr[:, 1]
