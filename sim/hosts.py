"""Hosts and CPU work: every CPU operation asks its host's cores for a cost sampled from the host's profile.

A ``Cpu`` serves work in one of three disciplines (``deployment.hosts[].cpu_sharing``):

- ``processor-sharing`` (default): the OS time-slices runnable threads over the cores; with n operations
  running on c cores each progresses at rate min(1, c/n). A 1 µs decrypt next to two training steps on one
  core takes 3 µs, it does not wait 190 ms for a core. Mean sojourn of a job of work x in M/G/1-PS is
  x / (1 - rho), whatever the distribution (tests/test_hosts.py checks it). Work-conserving: no operation
  waits while a core is idle.
- ``linux``: each core time-slices its own run queue, and threads are placed on cores as Linux places them
  (``PlacedCores``): not work-conserving at the scale of a millisecond, as the hardware twin's machine is not.
- ``fifo``: an operation waits for a free core, then runs to completion (a run-to-completion scheduler).

An ``Endpoint`` is where work runs and messages start or end: a pod on a host (optionally serialised on the
pod's own thread) or a device. Each operation is recorded as a span whose ``queue_wait_s`` is the time spent
waiting for the thread (and, with ``fifo``, for a core); time-slicing stretches the service itself.

Offered work (``Cpu.offered_s``): an operation counts the core-seconds it could have had by the end of the
run on an otherwise idle core, min(work, end − asked): one asked just before the end is not an overload.
"""

from __future__ import annotations

import heapq
import itertools
import math
import types
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from sim.contract import SpanRow
from sim.profile import COLD_GAP_S, COLD_PHASES, LinearOp, Profile, op_kind


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes, with no hook per event: its event ids come
    from a range iterator (whose length hint says how many it gave out), and the events processed are those
    scheduled less those still queued. (SimPy 4 draws an id per ``schedule`` from ``_eid``; tests/test_hosts.py
    checks the count against a per-step one.)"""

    _IDS = 1 << 62

    def __init__(self) -> None:
        super().__init__()
        self._eid = iter(range(self._IDS))  # type: ignore[assignment]
        # SimPy binds ``env.timeout`` (and the like) anew at every access; bound once here, the same events
        self.timeout = types.MethodType(simpy.Timeout, self)  # type: ignore[method-assign]
        self.event = types.MethodType(simpy.Event, self)  # type: ignore[method-assign]
        self.process = types.MethodType(simpy.Process, self)  # type: ignore[method-assign]

    @property
    def events(self) -> int:
        given: int = self._IDS - self._eid.__length_hint__()  # type: ignore[attr-defined]
        return given - len(self._queue)


def wake_at(env: simpy.Environment, at_s: float) -> simpy.Event:
    """A timeout that fires at exactly ``at_s``: SimPy's adds its delay to now, which cannot always land on an
    instant far ahead (a wake one ulp early, then another: an event more, and a tie at that instant turned round).
    Scheduled as ``simpy.Timeout`` schedules itself, at the absolute time."""
    event = simpy.Event(env)
    event._ok, event._value = True, None
    heapq.heappush(env._queue, (at_s, simpy.core.NORMAL, next(env._eid), event))
    return event


def count_events(env: simpy.Environment, n: int) -> None:
    """Count ``n`` steps of the model taken without an event of their own (``Network._carry_flow``,
    ``SharedCores.alone_s``) as events: each takes an event id, so ``CountingEnvironment.events`` (and a run's
    ``events``, which the cost estimate predicts) stays the model's work, whatever the steps cost SimPy."""
    for _ in itertools.islice(env._eid, n):
        pass


class Recorder:
    """Collects span rows of one replication; ``round`` is the FL round now running."""

    def __init__(self, replication: int):
        self.replication = replication
        self.round = 0
        self.rows: list[SpanRow] = []

    def add(
        self, pod: str, host: str, phase: str, op: str, *times: float, nbytes: int = 0, rnd: int | None = None
    ) -> None:
        """Record a span; ``times`` is (start_s, end_s, queue_wait_s)."""
        r = self.round if rnd is None else rnd
        start_s, end_s, wait_s = times
        self.rows.append(SpanRow(self.replication, r, pod, host, phase, op, start_s, end_s, wait_s, nbytes))


class SharedCores:
    """Processor sharing over ``cores``: each of n running jobs progresses at rate min(1, cores / n).

    Virtual time ``v`` is the service every running job has received since ``v`` was 0: it grows at the
    common rate, so a job of work w arriving at virtual time v finishes when ``v`` reaches its tag v + w, and
    jobs finish in the order of their tags. A heap of tags makes an arrival or completion O(log n) (a
    gateway reboot puts thousands of handshakes on one host at once). One timer is kept for the next
    completion; stale timers are recognised by a version number and ignored. An arrival that moves the next
    completion later (the cores were full: every job slows down) keeps the timer, which then fires early and
    is armed again for the completion wanted by then: a storm's arrivals, each moving it, would otherwise each
    leave a stale timer (half a 10,000-device storm's timers). Either way the timer fires at the time computed
    when the jobs last changed, from the same state.
    """

    def __init__(self, env: simpy.Environment, cores: int):
        self.env, self.cores = env, cores
        self.heap: list[tuple[float, int, simpy.Event]] = []  # (tag, arrival order, done event)
        self.v, self.last, self.version, self.next_at = 0.0, env.now, 0, float("inf")
        self.want_at = float("inf")  # the next completion as of the last change (``next_at``: the live timer's)
        self.arrivals = 0
        self.on_idle: Callable[[], None] | None = None  # told when its last running job completes

    def __len__(self) -> int:
        """Jobs running now."""
        return len(self.heap)

    def run(self, work_s: float, done: simpy.Event | None = None) -> simpy.Event:
        """An event that fires when ``work_s`` core-seconds of work are done under sharing (``done``: that event,
        for a job moved here from other cores with the work it has left)."""
        self._book()
        done = self.env.event() if done is None else done
        heapq.heappush(self.heap, (self.v + work_s, self.arrivals, done))
        self.arrivals += 1
        self._schedule()
        return done

    def alone_s(self, work_s: float) -> float | None:
        """How long a job of ``work_s`` takes from now if it runs alone to its end: no job running and no event
        scheduled before it would end (``env.peek()``), so nothing can arrive meanwhile (nor from a process woken by
        the event that woke this one: no event of the model wakes two, tests/test_model.py). None otherwise.
        The delay is the one ``run`` would give its timer, and the virtual time is booked as ``run`` and its completion
        book it, so the caller's timeout ends the job at the same instant, one event instead of a timer and the
        job's own: ``done``, once that timeout has fired."""
        if self.heap or self.on_idle is not None:
            return None
        self._book()
        now = self.env.now
        delay = (now + max(0.0, self.v + work_s - self.v)) - now  # ``_schedule``'s and ``_arm``'s, at rate 1 (one job)
        if not now + delay < self.env.peek():
            return None
        self.arrivals += 1
        count_events(self.env, 1)  # the event it saves
        return delay

    def done(self) -> None:
        """The end of a job ``alone_s`` let run: book the virtual time up to now, as its completion would."""
        self._book()

    def take_latest(self) -> tuple[float, simpy.Event]:
        """Remove the job that arrived last (the one a balancing core pulls): (its work left, its event)."""
        self._book()
        i = max(range(len(self.heap)), key=lambda j: self.heap[j][1])
        tag, _, done = self.heap.pop(i)
        heapq.heapify(self.heap)
        self.next_at = math.nan  # the next completion may have moved: always re-arm the timer
        self._schedule()
        return max(0.0, tag - self.v), done

    def rescale(self, done: simpy.Event, ratio: float) -> float:
        """Multiply the work a running job has left by ``ratio`` (contention came or went); the work added
        (negative: removed). Under sharing every job progresses at the common rate whatever its size, so a job
        rescaled midway ends exactly when one of its final total work would have."""
        self._book()
        for i, (tag, order, event) in enumerate(self.heap):
            if event is done:
                left = max(0.0, tag - self.v)
                self.heap[i] = (self.v + left * ratio, order, event)
                heapq.heapify(self.heap)
                self.next_at = math.nan  # the next completion may have moved: always re-arm the timer
                self._schedule()
                return left * (ratio - 1)
        return 0.0

    def _rate(self) -> float:
        return min(1.0, self.cores / len(self.heap)) if self.heap else 1.0

    def _book(self) -> None:
        self.v += (self.env.now - self.last) * self._rate()
        self.last = self.env.now

    def _schedule(self) -> None:
        if not self.heap:
            self.next_at = self.want_at = float("inf")
            return
        at = self.env.now + max(0.0, self.heap[0][0] - self.v) / self._rate()
        self.want_at = at
        if self.next_at <= at:
            return  # the live timer fires then, or sooner and is armed again (a nan next_at: never kept)
        self._arm(at)

    def _arm(self, at: float) -> None:
        self.version += 1
        self.next_at = at
        timer = self.env.timeout(at - self.env.now)
        version = self.version
        timer.callbacks.append(lambda _ev: self._complete(version))

    def _complete(self, version: int) -> None:
        if version != self.version:
            return
        if self.heap and self.want_at > self.next_at:  # fired early: the completion moved later since it was armed
            self._arm(self.want_at)
            return
        self._book()
        due = self.v + ps_tolerance(self.v)
        while self.heap and self.heap[0][0] <= due:
            heapq.heappop(self.heap)[2].succeed()
        self.next_at = float("inf")
        self._schedule()
        if not self.heap and self.on_idle is not None:
            self.on_idle()


class SlicedCore:
    """One core of ``PlacedCores``: its run queue as Linux runs it at a round's scale (the kernel's traces of the
    twin, docs/twin-validation.md). One job runs at a time, at the core's full speed:

    - a job of a woken thread (any thread but the one whose job just ended here) preempts the running job with
      ``PlacedCores.WAKE_PREEMPT``'s chance (always without a stream), and the preempted job waits first in line;
      otherwise it waits last;
    - the running job keeps the core until it ends, or until it has run ``slice_s``, then waits last;
    - a thread's next job asked the instant its last one ended here goes on running, its slice as it was (the
      thread never left the core).

    The interface of ``SharedCores``: ``run``, ``take_latest``, ``rescale``, ``on_idle``; ``len`` its jobs.
    Invariant: a job's work is done when it ends, never more than one job progressing.
    """

    def __init__(self, env: simpy.Environment, slice_s: float, preempt: Callable[[], bool]):
        self.env, self.slice_s, self.preempt = env, slice_s, preempt
        self.waiting: deque[_Job] = deque()
        self.running: _Job | None = None
        self.since = env.now  # when the running job last got the core
        self.used = 0.0  # how much of its slice the running job's thread had used by then
        self.version = 0  # the live timer's; older timers are stale
        self.arrivals = 0
        self.ended: tuple[int | None, float, float] | None = None  # (thread, when, slice used) of the last job to end
        self.on_idle: Callable[[], None] | None = None  # told when its last job ends

    def __len__(self) -> int:
        return (self.running is not None) + len(self.waiting)

    def run(self, work_s: float, done: simpy.Event | None = None, key: int | None = None,
            waits: bool = False) -> simpy.Event:  # fmt: skip
        """An event that fires when ``work_s`` of thread ``key``'s work is done on this core (``done``: that event,
        for a job moved here with the work it has left). ``waits``: woken, it does not preempt the running job (a
        handed-on job thread, ``PlacedCores.HAND_ON``)."""
        done = self.env.event() if done is None else done
        job = _Job(work_s, self.arrivals, done, key)
        self.arrivals += 1
        if self.running is not None:
            self._book()
            if self.running.left_s <= ps_tolerance(self.env.now):  # it ends this instant, its timer not fired yet
                self._turn()
        ended = self.ended
        goes_on = key is not None and ended is not None and ended[0] == key and ended[1] == self.env.now
        used = ended[2] if goes_on and ended is not None else 0.0
        if self.running is None:
            self._start(job, used)
        elif goes_on or (not waits and self.preempt()):  # the thread goes on (takes back what started now), or woken
            self.waiting.appendleft(self.running)  # booked above (or started this instant)
            self._start(job, used)
        else:
            self.waiting.append(job)
        return done

    def take_latest(self) -> tuple[float, simpy.Event]:
        """Remove the waiting job that arrived last (the one a balancing core pulls): (its work left, its event)."""
        job = max(self.waiting, key=lambda j: j.order)
        self.waiting.remove(job)
        return max(0.0, job.left_s), job.done

    def rescale(self, done: simpy.Event, ratio: float) -> float:
        """Multiply the work a job has left by ``ratio``; the work added (negative: removed)."""
        self._book()
        for job in (self.running, *self.waiting):
            if job is not None and job.done is done:
                left = max(0.0, job.left_s)
                job.left_s = left * ratio
                if job is self.running:
                    self._arm()
                return left * (ratio - 1)
        return 0.0

    def _book(self) -> None:
        if self.running is not None:
            ran = self.env.now - self.since
            self.running.left_s -= ran
            self.used += ran
            self.since = self.env.now

    def _start(self, job: _Job, used: float) -> None:
        self.running, self.since, self.used = job, self.env.now, used
        self._arm()

    def _arm(self) -> None:
        assert self.running is not None
        self.version += 1
        version = self.version
        at = max(0.0, min(self.running.left_s, self.slice_s - self.used))
        self.env.timeout(at).callbacks.append(lambda _ev: self._fire(version))

    def _fire(self, version: int) -> None:
        if version != self.version or self.running is None:
            return
        self._book()
        self._turn()

    def _turn(self) -> None:
        """The running job ends (its work done) or goes last (its slice used up); the next waiting one starts."""
        assert self.running is not None
        job, self.running = self.running, None
        if job.left_s <= ps_tolerance(self.env.now):
            self.ended = (job.key, self.env.now, self.used)
            job.done.succeed()
        else:  # its slice is used up
            self.ended = None
            self.waiting.append(job)
        if self.waiting:
            self._start(self.waiting.popleft(), 0.0)
        elif self.on_idle is not None:
            self.on_idle()


@dataclass(eq=False)
class _Job:
    left_s: float  # work left, as of the core's last booking
    order: int
    done: simpy.Event
    key: int | None  # its thread


class PlacedCores:
    """``cpu_sharing: linux``: cores that each run their own run queue, threads placed on them as Linux's
    scheduler places them. Read from the kernel's traces of the twin's runs on our 2-vCPU machine (hw/schedtrace.py;
    docs/twin-validation.md), Linux is not work-conserving at the scale of a millisecond:

    - a thread runs where it ran last (``key``: the thread), whether it did not sleep or was woken, busy core or
      not, except that a thread woken by a message (``waker``: the thread whose message woke it) from another
      core joins its waker's core with probability ``AFFINE_BUSY`` (its own core busy) or ``AFFINE_IDLE`` (idle):
      Linux's wake-affine choice; a thread that never ran joins its waker's core, or the least busy. No
      idle core is searched for: where both the waker's and the thread's own core were busy and another idle,
      the kernel queued it on a busy one in 91-100 % of cases (with the last-level cache this busy, Linux 6.x
      skips the search: SIS_UTIL); a job thread handed its job by another (``handed``: a concurrent round's jobs
      taken from one queue, each taker waking the next) joins its waker's core with ``HAND_ON``'s chance and does
      not preempt the job running there;
    - an idle core takes over a job waiting on a busy one only at a scheduler tick (``TICK_S``, the periodic
      balance), and the job's thread runs there from then on: in between, jobs queue on a core while another
      sleeps. Not when it goes idle (no new-idle pull): in the kernel's traces of 188 twin runs (2026-11-30,
      ``python bench/sched_idle.py DIR``), a core that went idle while another had threads waiting took one
      within 100 µs in 585 of 36,509 cases (1.6 %) and later in 3,459; their own core got to them first in
      13,336, and in 19,129 the idle core ran a thread woken onto it;
    - each core runs one job at a time (``SlicedCore``): a woken thread's job preempts the running one with
      probability ``WAKE_PREEMPT``, else waits its turn; a job keeps its core for up to ``SLICE_S`` while others
      wait. So a short job behind a training step does not share the core at half speed: it runs at once, or
      waits for the step's slice to end.

    Invariants: every job runs on exactly one core; a moved job keeps its event and the work it had left.
    """

    TICK_S = 0.004  # CONFIG_HZ=250, this machine's kernel (and Debian's, Raspberry Pi OS's)
    # how often a thread woken from another core is queued on its waker's, its own core busy / idle: 211 of 919
    # and 86 of 1,652 wake-ups in the kernel's traces of 8 twin runs here (2026-11-30, localhost.yaml, both modes,
    # 50 k and 1 M parameters, PQC L3 and classical; ``python bench/sched_idle.py DIR``)
    AFFINE_BUSY, AFFINE_IDLE = 0.23, 0.05
    # the kernel's traces of 66 twin runs (stop 32's whole matrix of 18:57 and its 8 runs of 19:38; ``SlicedCore``,
    # ``python bench/sched_idle.py DIR``): a twin's thread woken onto a busy core preempted the thread running there
    # within 100 µs in 19,372 of 32,839 wake-ups (59 %); one that ran while another waited on its core all along
    # ran a median 3.31 ms before it made way (4,763 slices)
    WAKE_PREEMPT, SLICE_S = 0.59, 0.0033
    # a job thread handed a job by another (a concurrent round's jobs, submitted at once: the main thread wakes one
    # job thread, which, taking its job from the pool's queue, wakes the next): queued on its waker's core in 417 of
    # 632 rounds where it last ran on the other core (stop 72, ``hw.schedtrace.handed_on`` over the kernel's traces
    # of three localhost matrices), and not preempting it (docs/twin-validation.md, stop 84)
    HAND_ON = 0.66

    def __init__(self, env: simpy.Environment, cores: int, rng: np.random.Generator | None = None):
        """``rng``: the stream wake-affine choices are drawn from; None: a woken thread always goes back to its
        own core (placement without chance, as the hand-worked tests have it)."""
        self.env, self.cores, self.rng = env, cores, rng
        self.queues = [SlicedCore(env, self.SLICE_S, self._preempts) for _ in range(cores)]
        for q in self.queues:
            q.on_idle = self._arm_balance  # no new-idle pull (class doc): waiting jobs wait for the tick
        self.last: dict[int, int] = {}  # thread -> the core it ran on last
        self.owner: dict[simpy.Event, int] = {}  # a running job -> its thread
        self.balance_at = math.inf

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues)

    def run(self, work_s: float, key: int | None = None, waker: int | None = None,
            handed: bool = False) -> simpy.Event:  # fmt: skip
        """An event that fires when ``work_s`` of the thread ``key``'s work is done on the core it is placed on
        (``handed``: a job ``waker`` handed on, ``HAND_ON``)."""
        core = self._place(key, waker, handed)
        done = self.queues[core].run(work_s, None, key, waits=handed)
        if key is not None:
            self.last[key] = core
            self.owner[done] = key
            done.callbacks.append(self._forget)
        self._arm_balance()
        return done

    def rescale(self, done: simpy.Event, ratio: float) -> float:
        return sum(q.rescale(done, ratio) for q in self.queues)

    def _forget(self, done: simpy.Event) -> None:
        del self.owner[done]

    def _idle(self, k: int) -> bool:
        return not len(self.queues[k])

    def _preempts(self) -> bool:
        """Whether a woken thread's job preempts the job running on its core (always, without a stream)."""
        return self.rng is None or bool(self.rng.random() < self.WAKE_PREEMPT)

    def _place(self, key: int | None, waker: int | None, handed: bool = False) -> int:
        prev = None if key is None else self.last.get(key)
        target = None if waker is None else self.last.get(waker)
        if prev is not None and target is not None and target != prev and self.rng is not None:
            chance = self.HAND_ON if handed else self.AFFINE_IDLE if self._idle(prev) else self.AFFINE_BUSY
            if self.rng.random() < chance:
                return target
        if prev is not None:
            return prev
        if target is not None:
            return target
        return min(range(self.cores), key=lambda k: len(self.queues[k]))  # a new thread: the least busy core

    def _pull(self, k: int) -> None:
        """Core ``k``, if idle, takes the latest job of the busiest core that has more than one."""
        busiest = max(range(self.cores), key=lambda j: len(self.queues[j]))
        if self._idle(k) and len(self.queues[busiest]) > 1:
            left, done = self.queues[busiest].take_latest()
            key = self.owner.get(done)
            self.queues[k].run(left, done, key)
            if key is not None:
                self.last[key] = k  # its thread runs here now

    def _arm_balance(self) -> None:
        """The next tick's balance, if a core idles while another has jobs to spare."""
        imbalanced = any(len(q) > 1 for q in self.queues) and any(self._idle(k) for k in range(self.cores))
        if self.balance_at < math.inf or not imbalanced:
            return
        now = self.env.now
        self.balance_at = (math.floor(now / self.TICK_S) + 1) * self.TICK_S
        self.env.timeout(self.balance_at - now).callbacks.append(self._balance)

    def _balance(self, _event: simpy.Event) -> None:
        self.balance_at = math.inf
        for k in range(self.cores):
            self._pull(k)
        self._arm_balance()


def ps_tolerance(v: float) -> float:
    """How close to its tag a job counts as done: rounding of v, never below 1 ps (the kernels use it too)."""
    return 1e-12 + 8 * math.ulp(v)


class Cpu:
    """The cores of one host (or one device) and the profile that prices its operations."""

    def __init__(
        self, env: simpy.Environment, name: str, cores: int, profile: Profile | None, rng: np.random.Generator,
        sharing: str = "processor-sharing", machine: Cpu | None = None, placement: np.random.Generator | None = None,
    ):  # fmt: skip
        """``machine``: another host's Cpu whose cores (and running trainings) this host shares, as hosts emulated
        on one machine do (``deployment.machine``); ``cores`` is then the machine's. ``placement``: the stream of
        ``linux`` sharing's wake-affine choices (``PlacedCores``)."""
        self.env, self.name, self.cores, self.profile, self.rng = env, name, cores, profile, rng
        # one discipline: shared cores (placed per core with ``linux``), or a run-to-completion resource with a
        # slot per core
        self.shared: SharedCores | PlacedCores | None = None
        if sharing == "processor-sharing":
            self.shared = SharedCores(env, cores)
        elif sharing == "linux":
            self.shared = PlacedCores(env, cores, placement)
        if machine is not None:
            assert machine.shared is not None and self.shared is not None and machine.cores == cores
            self.shared = machine.shared
        self.placed = isinstance(self.shared, PlacedCores)
        self.resource = simpy.Resource(env, cores) if self.shared is None else None
        self.demand_s = 0.0  # core-seconds asked for, including work still queued at the end
        self.unserved: dict[int, tuple[float, float]] = {}  # (asked_s, work_s) of the work not done yet
        self.asks = 0
        # (asked_s, work_s, done_s) of every job in the order asked, when set: the vectorized engine replays
        # them beside frames (at one instant, the order asked is the order served: it matters with ``fifo``)
        self.log: list[tuple[float, float, float]] | None = None
        self.series: np.ndarray | None = None  # core-seconds asked per time bin (by arrival), when tracked
        self.bin_s = 1.0
        # jobs running on these cores that slow each other down (``work``): on a machine, every host's
        self.contended: list[_Contended] = [] if machine is None else machine.contended

    def _retune(self) -> None:
        """Bring every contended job's work to the factor the jobs running beside it now impose (each job's
        own host counts the work it adds)."""
        assert self.shared is not None
        others = min(len(self.contended) - 1, self.cores - 1)
        for c in self.contended:
            factor = c.op.slowdown(c.units, others)
            if factor != c.factor and c.done is not None:
                added = self.shared.rescale(c.done, factor / c.factor)
                c.factor = factor
                c.cpu.demand_s += added
                asked, work = c.cpu.unserved[c.ask]
                c.cpu.unserved[c.ask] = (asked, work + added)

    def offered_s(self, end_s: float) -> float:
        """Core-seconds asked that an idle core could have done by ``end_s``: ``demand_s`` less, for the work
        not done by then, the part due after ``end_s`` (an operation runs on at most one core)."""
        return self.demand_s - sum(min(work, max(0.0, asked + work - end_s)) for asked, work in self.unserved.values())

    def _shared_job(self, cost_s: float, thread: int | None, waker: int | None, handed: bool) -> simpy.Event:
        """A job on the shared cores (placed by its thread and waker with ``linux``)."""
        shared = self.shared
        assert shared is not None
        return shared.run(cost_s, thread, waker, handed) if isinstance(shared, PlacedCores) else shared.run(cost_s)

    def work(self, cost_s: float, contention: tuple[LinearOp, float] | None = None, thread: int | None = None,
             waker: int | None = None, handed: bool = False) -> Generator[Any, Any, float]:  # fmt: skip
        """Do ``cost_s`` of work on these cores; returns the time spent waiting for a core (fifo only).
        ``thread``, ``waker``: whose work it is, and which thread's message woke it (``PlacedCores`` places by them;
        ``handed``: the waker handed it a job, ``PlacedCores.HAND_ON``).

        ``contention`` = (op, units): a job of an op with a measured ``pair_slowdown`` (training) runs slower
        while other such jobs run on the host's other cores. Under sharing, the work left of every such job is
        rescaled whenever one starts or ends (``_retune``); with fifo, a job's factor is fixed when it is asked for."""
        asked = self.env.now
        factor = 1.0
        if contention is not None:
            factor = contention[0].slowdown(contention[1], min(len(self.contended), self.cores - 1))
            cost_s *= factor
        self.demand_s += cost_s
        ask = self.asks
        self.asks += 1
        self.unserved[ask] = (asked, cost_s)
        slot = -1
        if self.log is not None:  # its place in the order asked; done_s is filled in below
            slot = len(self.log)
            self.log.append((asked, cost_s, math.nan))
        if self.series is not None:
            self.series[min(int(asked / self.bin_s), self.series.size - 1)] += cost_s
        me = None if contention is None else _Contended(None, *contention, factor, ask, self)
        alone = None
        if me is None and type(self.shared) is SharedCores:
            alone = self.shared.alone_s(cost_s)
        if alone is not None:  # nothing can arrive before it ends (``SharedCores.alone_s``)
            assert isinstance(self.shared, SharedCores)
            yield self.env.timeout(alone)
            self.shared.done()
            wait = 0.0
        elif self.shared is not None:
            done = self._shared_job(cost_s, thread, waker, handed)
            if me is not None:
                me.done = done
                self.contended.append(me)
                self._retune()
            yield done
            wait = 0.0
        else:
            assert self.resource is not None
            with self.resource.request() as core:
                yield core
                wait = self.env.now - asked
                if me is not None:  # on a core now: later jobs see it
                    self.contended.append(me)
                yield self.env.timeout(cost_s)
        if me is not None:
            self.contended.remove(me)
            if self.shared is not None:
                self._retune()
            cost_s = self.unserved[ask][1]  # the work it ended up needing (the replay's, sim/telemetry.py)
        del self.unserved[ask]
        if self.log is not None:
            self.log[slot] = (asked, cost_s, self.env.now)
        return wait


@dataclass(eq=False)
class _Contended:
    """A job running under contention: its op and units (what its slowdown depends on) and the factor its work
    carries now."""

    done: simpy.Event | None  # its completion under sharing (None with fifo: not rescaled)
    op: LinearOp
    units: float
    factor: float
    ask: int
    cpu: Cpu  # the host whose job it is (its ``unserved`` and ``demand_s`` count it)


class Thread:
    """One thread of a pod that work waits for (FIFO), as ``simpy.Resource(env, 1)`` serves it, except that
    taking it free costs no event (a request's event, resumed at the same instant): a receiver thread per device
    is taken for every frame, a pod's own thread for every operation (an eighth of the paper run's events)."""

    def __init__(self, env: simpy.Environment):
        self.env, self.busy = env, False
        self.waiting: deque[simpy.Event] = deque()

    def take(self) -> simpy.Event | None:
        """None: taken now; else an event that fires when it is this caller's turn."""
        if not self.busy:
            self.busy = True
            return None
        turn = self.env.event()
        self.waiting.append(turn)
        return turn

    def give(self) -> None:
        """Hand the thread to the next in line (it stays taken), or free it."""
        if self.waiting:
            self.waiting.popleft().succeed()
        else:
            self.busy = False


@dataclass(eq=False)
class Endpoint:
    """A pod on a host, or a device: its network node, its CPU and an optional thread serialising its work.
    ``woken_by``: the thread whose message to it arrived since its last operation (``PlacedCores``).

    Its bursts of work: a step asked for more than ``COLD_GAP_S`` after the thread's last step ended, the thread
    free, begins a new burst; a round's first call of an op kind in a burst pays its overhead's ``cold_s``
    (sim/profile.py ``Overhead``; hw/fit.py finds the bursts in the twin's spans by the same rule)."""

    pod: str
    node: str
    cpu: Cpu
    thread: Thread | None = None
    woken_by: int | None = None
    handed: bool = False  # ``woken_by`` handed it a job (``PlacedCores.HAND_ON``)
    active_s: float = -math.inf  # the last instant its thread was known to work (a step began or ended)
    warm: set[str] = field(default_factory=set)  # the op kinds its current burst has called

    def _mark(self, now: float) -> None:
        """A step is asked for at ``now``: a new burst if the thread is free and has been for ``COLD_GAP_S``."""
        if now - self.active_s > COLD_GAP_S and (self.thread is None or not self.thread.busy):
            self.warm.clear()
        self.active_s = now

    def first_call(self, kind: str, now: float) -> bool:
        """Whether a call of ``kind`` asked for at ``now`` is its burst's first of that kind (and note it)."""
        self._mark(now)
        if kind in self.warm:
            return False
        self.warm.add(kind)
        return True

    @property
    def key(self) -> int:
        """The thread its work runs on, as ``PlacedCores`` knows it."""
        return id(self.thread) if self.thread is not None else id(self)

    def work(self, cost_s: float, contention: tuple[LinearOp, float] | None = None,
             woken: bool = True) -> Generator[Any, Any, float]:  # fmt: skip
        """``cost_s`` of this endpoint's work on its host's cores, a step of its thread (which serialises its steps);
        ``woken``: its first step since a message woke it (``PlacedCores`` places it by its waker), not a step of a
        thread already awake. Returns how long it waited for its thread and a core."""
        cpu, asked = self.cpu, self.cpu.env.now
        own = self.thread
        self._mark(asked)
        if own is not None and (turn := own.take()) is not None:
            yield turn
        waker, handed = None, False
        if woken and cpu.placed:  # PlacedCores places by thread and waker
            waker, self.woken_by, handed, self.handed = self.woken_by, None, self.handed, False
        wait = cpu.env.now - asked
        wait += yield from cpu.work(cost_s, contention, self.key, waker, handed)
        self.active_s = cpu.env.now
        if own is not None:
            own.give()
        return wait

    def run(
        self, rec: Recorder | None, phase: str, op: str, units: float = 0.0, since: float | None = None,
        rng: np.random.Generator | None = None, contention: tuple[LinearOp, float] | None = None,
    ) -> Generator[Any, Any, None]:  # fmt: skip
        """Run one operation; the span starts at ``since`` (e.g. when the job was queued) or now. Its cost is
        drawn from ``rng`` when given, else from the CPU's stream (``contention``: ``Cpu.work``); no span is
        kept without ``rec``."""
        cpu, env = self.cpu, self.cpu.env
        if cpu.profile is None:  # a device whose compute is not modelled
            return
        model = cpu.profile.op(op)
        cold = phase in COLD_PHASES and self.first_call(op_kind(op), env.now)  # a round's calls only: as fitted
        cost = cpu.profile.cost_s(op, cpu.rng if rng is None else rng, units, cold)
        nbytes = int(units) if isinstance(model, LinearOp) and model.unit == "byte" else 0
        start = env.now if since is None else since
        wait = env.now - start
        wait += yield from self.work(cost, contention)
        if rec is not None:
            rec.add(self.pod, cpu.name, phase, op, start, env.now, wait, nbytes=nbytes)
