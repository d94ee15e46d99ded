"""``cpu_sharing: linux`` (sim/hosts.py ``PlacedCores``): threads placed on cores as Linux places them, by hand
and against invariants that hold for any jobs; the model and its engines around it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import UserError
from sim.hosts import Cpu, PlacedCores
from sim.runner import simulate
from sim.scenario import load_scenario

from .conftest import SCENARIOS

TICK, SLICE = PlacedCores.TICK_S, PlacedCores.SLICE_S
W, R, X = 1, 2, 3  # threads: a waker, the thread its message wakes, a third


def run_jobs(cores: int, jobs: list[tuple[float, float, int | None, int | None]], sharing: str = "linux",
             placement: Any = None, watch: Callable[[Cpu], None] | None = None) -> list[float]:  # fmt: skip
    """(arrival, work, thread, waker) jobs on one host; the time each finishes (``placement``: the wake-affine
    draws; none: a woken thread always goes back to its own core; ``watch``: called with the host after every
    event)."""
    env = simpy.Environment()
    cpu = Cpu(env, "h", cores, None, np.random.default_rng(0), sharing, placement=placement)
    done = [math.nan] * len(jobs)

    def job(i: int, at: float, work: float, thread: int | None, waker: int | None):
        yield env.timeout(at)
        yield from cpu.work(work, thread=thread, waker=waker)
        done[i] = env.now

    for i, j in enumerate(jobs):
        env.process(job(i, *j))
    while env.peek() < math.inf:
        env.step()
        if watch is not None:
            watch(cpu)
    return done


def test_a_woken_thread_joins_its_wakers_core_while_another_idles():
    # W runs 10 ms on a core; at 1 ms its message wakes R (no core of its own yet): R joins W's core and preempts
    # it, the other core idle -- under processor sharing R would take its 1 ms on the idle core, W losing nothing
    jobs = [(0.0, 0.010, W, None), (0.001, 0.001, R, W)]
    assert run_jobs(2, jobs) == pytest.approx([0.011, 0.002])
    assert run_jobs(2, jobs, "processor-sharing") == pytest.approx([0.010, 0.002])


def test_a_tick_balances_a_busy_core_onto_an_idle_one():
    # R preempts W on W's core at 1 ms; W waits there until the next tick (4 ms), which moves it, the core's
    # waiting job, to the idle core, where it does the 9 ms it has left
    done = run_jobs(2, [(0.0, 0.010, W, None), (0.001, 0.005, R, W)])
    assert done == pytest.approx([TICK + 0.009, 0.006])


def test_a_core_that_goes_idle_leaves_a_waiting_job_to_the_tick():
    # X alone on one core until 1.5 ms; on the other R (woken by W) preempts W: X's core goes idle, W stays
    # (Linux pulls no waiting thread when a core goes idle: PlacedCores) and runs once R is done at 3 ms
    done = run_jobs(2, [(0.0, 0.0015, X, None), (0.0, 0.001, W, None), (0.0, 0.003, R, W)])
    assert done == pytest.approx([0.0015, 0.004, 0.003])


def test_a_core_that_goes_idle_gets_a_waiting_job_at_the_next_tick():
    # as above with R and W longer: R runs a slice, then W (R waits); at the tick (4 ms, X's core idle since 1.5 ms)
    # the idle core takes R, the latest waiting, which finishes there alone; W goes on where it is
    w, r = 0.006, 0.006
    done = run_jobs(2, [(0.0, 0.0015, X, None), (0.0, w, W, None), (0.0, r, R, W)])
    assert done[2] == pytest.approx(TICK + r - SLICE)
    assert done[1] == pytest.approx(SLICE + w)


def test_a_woken_thread_takes_its_own_idle_core_over_its_wakers_busy_one():
    # R ran on the core X does not use; woken by W (busy on its core), it goes back there and runs at full speed
    jobs = [(0.0, 0.0005, X, None), (0.0, 0.0005, R, None), (0.001, 0.010, W, None), (0.002, 0.001, R, W)]
    done = run_jobs(2, jobs)
    assert done[3] == pytest.approx(0.003) and done[2] == pytest.approx(0.011)


class Draws:
    """A stream of given uniforms (``random``), counting what was drawn."""

    def __init__(self, *values: float):
        self.values, self.drawn = list(values), 0

    def random(self) -> float:
        self.drawn += 1
        return self.values.pop(0)


def test_a_thread_woken_from_another_core_may_join_its_wakers_core():
    # R last ran on core 1, now idle; W, busy on core 0, wakes it: below AFFINE_IDLE R joins W's core, where it
    # preempts W (a second draw below WAKE_PREEMPT) or waits behind it until the tick moves it to the idle core;
    # above AFFINE_IDLE, R runs alone on core 1
    jobs = [(0.0, 0.0005, X, None), (0.0, 0.0005, R, None), (0.001, 0.010, W, None), (0.002, 0.001, R, W)]
    joined = Draws(PlacedCores.AFFINE_IDLE - 0.01, PlacedCores.WAKE_PREEMPT - 0.01)
    done = run_jobs(2, jobs, placement=joined)
    assert done[3] == pytest.approx(0.003) and done[2] == pytest.approx(0.012) and joined.drawn == 2
    waits = run_jobs(2, jobs, placement=Draws(PlacedCores.AFFINE_IDLE - 0.01, PlacedCores.WAKE_PREEMPT + 0.01))
    assert waits[3] == pytest.approx(TICK + 0.001) and waits[2] == pytest.approx(0.011)
    alone = Draws(PlacedCores.AFFINE_IDLE + 0.01)
    assert run_jobs(2, jobs, placement=alone)[3] == pytest.approx(0.003) and alone.drawn == 1


def test_a_thread_whose_own_core_is_busy_joins_its_wakers_with_the_busy_chance():
    # R last ran on core 0, where X now runs long; W's core 1 is free: with a draw below AFFINE_BUSY R is queued
    # on W's core and runs alone; above it, R goes back to core 0 and preempts X (as without draws)
    jobs = [(0.0, 0.0002, R, None), (0.0, 0.0002, W, None), (0.0003, 0.010, X, None), (0.0005, 0.002, R, W)]
    assert run_jobs(2, jobs, placement=Draws(PlacedCores.AFFINE_BUSY - 0.01))[3] == pytest.approx(0.0025)
    stays = run_jobs(2, jobs, placement=Draws(PlacedCores.AFFINE_BUSY + 0.01, PlacedCores.WAKE_PREEMPT - 0.01))
    assert stays == pytest.approx(run_jobs(2, jobs))  # it preempts X there, as without draws
    # only a wake-up from another core draws: none here (R's waker ran on R's own core)
    same = Draws()
    run_jobs(2, [(0.0, 0.0002, W, None), (0.0003, 0.001, R, W), (0.002, 0.001, R, W)], placement=same)
    assert same.drawn == 0


def test_a_job_thread_handed_its_job_joins_its_wakers_core_with_the_hand_on_chance_and_waits_there():
    """A job thread handed a job by another (``handed``: a concurrent round's jobs taken from one queue, each taker
    waking the next) is queued on its waker's core with ``HAND_ON``'s chance, and does not preempt the job
    running there: it waits until the tick moves it to the idle core (the kernel's traces: stop 72, stop 84)."""
    env = simpy.Environment()
    draws = Draws(PlacedCores.HAND_ON - 0.01)  # above AFFINE_IDLE: a message's wake-up would leave R on its own core
    cpu = Cpu(env, "h", 2, None, np.random.default_rng(0), "linux", placement=draws)
    done: dict[str, float] = {}

    def job(name: str, at: float, work: float, thread: int, waker: int | None = None, handed: bool = False):
        yield env.timeout(at)
        yield from cpu.work(work, thread=thread, waker=waker, handed=handed)
        done[name] = env.now

    for args in (("X", 0.0, 0.0005, X), ("R0", 0.0, 0.0005, R), ("W", 0.001, 0.010, W)):
        env.process(job(*args))
    env.process(job("R", 0.002, 0.001, R, W, True))
    env.run()
    assert draws.drawn == 1  # the placement's draw; none for a preemption
    assert done["R"] == pytest.approx(TICK + 0.001) and done["W"] == pytest.approx(0.011)
    # the same draw for a thread a message woke: above AFFINE_IDLE, it runs on its own idle core at once
    woken = run_jobs(2, [(0.0, 0.0005, X, None), (0.0, 0.0005, R, None), (0.001, 0.010, W, None),
                         (0.002, 0.001, R, W)], placement=Draws(PlacedCores.HAND_ON - 0.01))  # fmt: skip
    assert woken[3] == pytest.approx(0.003)


def _one_core(second_s: float) -> dict[str, float]:
    """On one core: W's job of 1 ms, then at once its next of ``second_s``; X, woken at 0.2 ms, does not preempt
    (a draw above WAKE_PREEMPT) and waits for 5 ms of work. When each ends."""
    env = simpy.Environment()
    cpu = Cpu(env, "h", 1, None, np.random.default_rng(0), "linux", placement=Draws(PlacedCores.WAKE_PREEMPT + 0.01))
    ends: dict[str, float] = {}

    def thread_w():
        yield from cpu.work(0.001, thread=W)
        yield from cpu.work(second_s, thread=W)
        ends["W"] = env.now

    def thread_x():
        yield env.timeout(0.0002)
        yield from cpu.work(0.005, thread=X, waker=W)
        ends["X"] = env.now

    env.process(thread_w())
    env.process(thread_x())
    env.run()
    return ends


def test_a_thread_that_does_not_sleep_keeps_its_core_for_its_slice():
    # W's next job follows its last at once: it goes on running, ahead of X, which waited since 0.2 ms (X runs
    # after it); a next job longer than what is left of W's slice runs to the slice's end, then X has a slice
    assert _one_core(0.002) == pytest.approx({"W": 0.003, "X": 0.008})
    # W: [0, SLICE] (both jobs), X: [SLICE, 2 SLICE], W: the 4 ms less SLICE it has left, X: the rest (9 ms in all)
    assert _one_core(0.003) == pytest.approx({"W": 2 * SLICE + (0.004 - SLICE), "X": 0.009})


def test_a_woken_thread_goes_back_to_its_busy_core_while_another_idles():
    # R ran on core 0, where X now runs long; W ran on core 1 and is done: R, woken by W, goes back to core 0 (no
    # idle core is searched for) and preempts X, which waits there while core 1 idles
    jobs = [(0.0, 0.0002, R, None), (0.0, 0.0002, W, None), (0.0003, 0.010, X, None), (0.0005, 0.002, R, W)]
    done = run_jobs(2, jobs)
    assert done[1] == pytest.approx(0.0002)
    assert done[3] == pytest.approx(0.0025) and done[2] == pytest.approx(0.0123)


def test_a_thread_moved_by_a_balance_runs_on_its_new_core():
    # R preempts X on X's core at 1 ms; the tick moves X, waiting, to core 1, and X's thread stays there: its next
    # job, at 14 ms, runs on core 1 beside R's long one on core 0
    jobs = [(0.0, 0.010, X, None), (0.001, 0.005, R, X), (0.0135, 0.005, R, X), (0.014, 0.001, X, None)]
    where: dict[int, int] = {}

    def watch(cpu: Cpu) -> None:
        placed = cpu.shared
        assert isinstance(placed, PlacedCores)
        where.update(placed.last)

    done = run_jobs(2, jobs, watch=watch)
    assert done[:2] == pytest.approx([TICK + 0.009, 0.006])
    assert done[2] == pytest.approx(0.0185) and done[3] == pytest.approx(0.015)
    assert where[X] == 1 and where[R] == 0


def test_a_job_whose_work_is_done_ends_before_a_newcomer_of_the_same_instant():
    # R's wake-up at 1 ms is processed before W's completion timer of the same instant: W, done, ends then
    assert run_jobs(1, [(0.0, 0.001, W, None), (0.001, 0.001, R, W)]) == pytest.approx([0.001, 0.002])


def test_one_core_runs_a_job_at_a_time():
    # W trains 190 ms; R, woken at 10 ms, preempts it for its 1 ms; X, woken at 11.5 ms, preempts it for a slice,
    # then W and X take slices in turn until X is done: a short job never shares a core at half speed
    jobs = [(0.0, 0.190, W, None), (0.010, 0.001, R, W), (0.0115, 0.004, X, None)]
    done = run_jobs(1, jobs)
    assert done[1] == pytest.approx(0.011)
    assert done[2] == pytest.approx(0.0115 + 2 * SLICE + (0.004 - SLICE))
    assert done[0] == pytest.approx(0.195)


JOBS = st.lists(st.tuples(st.floats(0, 0.01), st.floats(1e-6, 0.005), st.sampled_from([None, 1, 2, 3, 4]),
                          st.sampled_from([None, 1, 2, 3, 4])), min_size=1, max_size=25)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(cores=st.integers(1, 3), jobs=JOBS, seed=st.one_of(st.none(), st.integers(0, 2**32)))
def test_every_job_ends_and_no_core_idles_beside_waiting_work_past_a_tick(cores, jobs, seed):
    """Any jobs, threads and wakers, with wake-affine and preemption draws or without: each job ends, no sooner than
    its work on a whole core; a core never sits idle beside a queue of more than one job for longer than a tick
    (the balance that moves it; a core going idle only arms it); one core alone loses no time."""
    stretch = {"since": math.nan, "worst": 0.0}  # the current and the longest idle-beside-waiting stretch

    def watch(cpu: Cpu) -> None:
        placed = cpu.shared
        assert isinstance(placed, PlacedCores)
        stuck = any(len(q) > 1 for q in placed.queues) and not all(len(q) for q in placed.queues)
        for q in placed.queues:  # a job runs no longer than its work, and a job whose work is done never waits
            assert all(job.left_s > 1e-12 for job in q.waiting)
            assert q.running is None or q.running.left_s - (cpu.env.now - q.since) >= -1e-9
        if stuck and math.isnan(stretch["since"]):
            stretch["since"] = cpu.env.now
        elif not stuck and not math.isnan(stretch["since"]):
            stretch["worst"] = max(stretch["worst"], cpu.env.now - stretch["since"])
            stretch["since"] = math.nan

    done = run_jobs(cores, jobs, placement=None if seed is None else np.random.default_rng(seed), watch=watch)
    assert math.isnan(stretch["since"]) and stretch["worst"] <= TICK + 1e-9
    for (at, work, _, _), end in zip(jobs, done, strict=True):
        assert end >= at + work - 1e-9
    if cores == 1:  # one core never idles while it has a job: the last ends when a work-conserving server's would
        busy_until = 0.0
        for at, work, _, _ in sorted(jobs, key=lambda j: j[0]):
            busy_until = max(busy_until, at) + work
        assert max(done) == pytest.approx(busy_until, abs=1e-9)


def test_the_twin_scenario_is_placed_and_repeatable():
    """localhost.yaml models its machine's scheduler: the same seed gives the same run, and placement costs
    time against the work-conserving ideal."""
    sets = ["workload.fl.rounds=3", "run.replications=2", "workload.fl.model_parameters=50000"]
    s = load_scenario(SCENARIOS / "localhost.yaml", sets)
    assert s.deployment.hosts[0].cpu_sharing == "linux"
    a, b = simulate(s, "concurrent"), simulate(s, "concurrent")
    assert a.summary.round_latency_s == b.summary.round_latency_s
    shared = [*sets, "deployment.hosts.0.cpu_sharing=processor-sharing"]
    ideal = simulate(load_scenario(SCENARIOS / "localhost.yaml", shared), "concurrent")
    assert (a.summary.round_latency_s.mean or 0) > (ideal.summary.round_latency_s.mean or 0)


def test_the_kernels_leave_a_placed_host_to_the_event_model():
    """The vectorized engine's kernels replay processor sharing: auto runs the event model; an explicit
    vectorized says why, in a line."""
    sets = ["workload.fl.rounds=1", "run.replications=1", "run.stop_at=horizon", "run.horizon_s=2",
            "workload.fl.model_parameters=2000"]  # fmt: skip
    r = simulate(load_scenario(SCENARIOS / "localhost.yaml", [*sets, "run.engine=auto"]))
    assert r.summary.engine is None or r.summary.engine.name == "events"
    with pytest.raises(UserError, match=r"cpu_sharing: linux is computed by the event model only") as err:
        simulate(load_scenario(SCENARIOS / "localhost.yaml", [*sets, "run.engine=vectorized"]))
    assert "\n" not in str(err.value)


def _second_job_packed_ms(s: Any) -> float:
    """Mean over a concurrent run's rounds of when its distribution's last ``serialize`` ended, from the first's
    start (ms): how late the second job thread got going."""
    spans = simulate(s, "concurrent", replications=2).spans
    packs = spans[(spans.phase == "distribute") & (spans.op == "serialize") & (spans["round"] > 0)]
    rounds = packs.groupby(["replication", "round"])
    return float((rounds.end_s.max() - rounds.start_s.min()).mean() * 1e3)


def test_a_rounds_second_job_thread_is_handed_on_where_the_aggregator_does_its_jobs(monkeypatch):
    """paper-3node's aggregator signs with job threads of its own (no worker pods): on one machine whose threads
    Linux places (``deployment.machine``, ``cpu_sharing: linux``, as the netns twin runs it), the second job's
    thread is handed on by the first and joins its core with ``HAND_ON``'s chance, so it packs its job later than
    when it never joins (0); localhost.yaml's jobs go to worker processes, where the model leaves the hand-on out,
    and its run is the same whatever the chance."""
    sets = ["deployment.machine.cores=2", "deployment.hosts.*.cpu_sharing=linux", "workload.fl.rounds=10"]
    paper = load_scenario(SCENARIOS / "paper-3node.yaml", sets)
    local = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=6"])
    handed, local_handed = _second_job_packed_ms(paper), simulate(local, "concurrent", replications=2).summary
    monkeypatch.setattr(PlacedCores, "HAND_ON", 0.0)
    never, local_never = _second_job_packed_ms(paper), simulate(local, "concurrent", replications=2).summary
    assert handed > never + 0.5, (handed, never)
    assert local_handed.round_latency_s.mean == local_never.round_latency_s.mean
