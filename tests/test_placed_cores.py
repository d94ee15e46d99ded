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

TICK = PlacedCores.TICK_S
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


def test_a_woken_thread_shares_its_wakers_core_while_another_idles():
    # W runs 10 ms on a core; at 1 ms its message wakes R (no core of its own yet): R joins W's core, both at
    # half speed, the other core idle -- under processor sharing R would take its 1 ms on the idle core
    jobs = [(0.0, 0.010, W, None), (0.001, 0.001, R, W)]
    assert run_jobs(2, jobs) == pytest.approx([0.011, 0.003])
    assert run_jobs(2, jobs, "processor-sharing") == pytest.approx([0.010, 0.002])


def test_a_tick_balances_a_busy_core_onto_an_idle_one():
    # R's 5 ms share W's core until the next tick (4 ms), which moves R, the latest, to the idle core
    done = run_jobs(2, [(0.0, 0.010, W, None), (0.001, 0.005, R, W)])
    r_left = 0.005 - (TICK - 0.001) / 2
    assert done[1] == pytest.approx(TICK + r_left)
    assert done[0] == pytest.approx(0.010 + (TICK - 0.001) / 2)  # W lost half of [1 ms, tick]


def test_a_core_that_goes_idle_leaves_a_waiting_job_to_the_tick():
    # X alone on one core until 1.5 ms; W and R (woken by W) share the other: X's core goes idle, R stays
    # (Linux pulls no waiting thread when a core goes idle: PlacedCores); W ends at 2 ms, R runs alone after it
    done = run_jobs(2, [(0.0, 0.0015, X, None), (0.0, 0.001, W, None), (0.0, 0.003, R, W)])
    assert done == pytest.approx([0.0015, 0.002, 0.002 + (0.003 - 0.001)])


def test_a_core_that_goes_idle_gets_a_waiting_job_at_the_next_tick():
    # as above with R longer: its core is still shared at the tick (4 ms) after X's went idle at 1.5 ms; the
    # tick moves R (the latest) to the idle core, where it finishes alone
    w, r = 0.006, 0.006
    done = run_jobs(2, [(0.0, 0.0015, X, None), (0.0, w, W, None), (0.0, r, R, W)])
    r_by_tick = TICK / 2
    assert done[2] == pytest.approx(TICK + r - r_by_tick)
    assert done[1] == pytest.approx(TICK + w - TICK / 2)


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
    # R last ran on core 1, now idle; W, busy on core 0, wakes it: below AFFINE_IDLE R joins W's core and both
    # run at half speed until R's 1 ms is done (the tick at 4 ms finds it done); above it, R runs alone on core 1
    jobs = [(0.0, 0.0005, X, None), (0.0, 0.0005, R, None), (0.001, 0.010, W, None), (0.002, 0.001, R, W)]
    joined = Draws(PlacedCores.AFFINE_IDLE - 0.01)
    done = run_jobs(2, jobs, placement=joined)
    assert done[3] == pytest.approx(0.004) and done[2] == pytest.approx(0.012) and joined.drawn == 1
    assert run_jobs(2, jobs, placement=Draws(PlacedCores.AFFINE_IDLE + 0.01))[3] == pytest.approx(0.003)


def test_a_thread_whose_own_core_is_busy_joins_its_wakers_with_the_busy_chance():
    # R last ran on core 0, where X now runs long; W's core 1 is free: with a draw below AFFINE_BUSY R is queued
    # on W's core and runs alone; above it, R queues beside X until the tick (as without draws)
    jobs = [(0.0, 0.0002, R, None), (0.0, 0.0002, W, None), (0.0003, 0.010, X, None), (0.0005, 0.002, R, W)]
    assert run_jobs(2, jobs, placement=Draws(PlacedCores.AFFINE_BUSY - 0.01))[3] == pytest.approx(0.0025)
    stays = run_jobs(2, jobs, placement=Draws(PlacedCores.AFFINE_BUSY + 0.01))
    assert stays == pytest.approx(run_jobs(2, jobs))
    # only a wake-up from another core draws: none here (R's waker ran on R's own core)
    same = Draws()
    run_jobs(2, [(0.0, 0.0002, W, None), (0.0003, 0.001, R, W), (0.002, 0.001, R, W)], placement=same)
    assert same.drawn == 0


def test_a_thread_that_does_not_sleep_keeps_its_core():
    # W's second job follows its first at once: it stays on its core beside R rather than take the idle one
    env = simpy.Environment()
    cpu = Cpu(env, "h", 2, None, np.random.default_rng(0), "linux")
    ends: dict[str, float] = {}

    def waker():
        yield from cpu.work(0.001, thread=W)
        yield from cpu.work(0.002, thread=W)
        ends["W"] = env.now

    def woken():
        yield env.timeout(0.0005)
        yield from cpu.work(0.003, thread=R, waker=W)
        ends["R"] = env.now

    env.process(waker())
    env.process(woken())
    env.run()
    # [0, .5] W alone; [.5, 1.5] W and R share (W's first job ends at 1.5); W's second job stays, shares until
    # the tick at 4 ms moves R (the latest) away
    r_by_tick = 0.0005 + (TICK - 0.0015) / 2
    w_by_tick = (TICK - 0.0015) / 2
    assert ends["R"] == pytest.approx(TICK + 0.003 - r_by_tick)
    assert ends["W"] == pytest.approx(TICK + 0.002 - w_by_tick)


def test_a_woken_thread_goes_back_to_its_busy_core_while_another_idles():
    # R ran on core 0, where X now runs long; W ran on core 1 and is done: R, woken by W, queues beside X on core 0
    # (no idle core is searched for) until the tick moves it to core 1
    jobs = [(0.0, 0.0002, R, None), (0.0, 0.0002, W, None), (0.0003, 0.010, X, None), (0.0005, 0.002, R, W)]
    done = run_jobs(2, jobs)
    assert done[1] == pytest.approx(0.0002)
    r_by_tick = (TICK - 0.0005) / 2
    assert done[3] == pytest.approx(TICK + 0.002 - r_by_tick)


def test_a_thread_moved_by_a_balance_runs_on_its_new_core():
    # R is moved to core 1 by the tick; woken again later while X keeps core 0 busy, it runs on core 1, alone
    jobs = [(0.0, 0.010, X, None), (0.001, 0.005, R, X), (0.008, 0.001, R, X)]
    done = run_jobs(2, jobs)
    assert done[1] == pytest.approx(TICK + 0.005 - (TICK - 0.001) / 2)
    assert done[2] == pytest.approx(0.008 + 0.001)


def test_one_core_is_processor_sharing():
    jobs = [(0.0, 0.190, W, None), (0.010, 0.001, R, W), (0.011, 0.004, X, None)]
    assert run_jobs(1, jobs) == pytest.approx(run_jobs(1, jobs, "processor-sharing"))


JOBS = st.lists(st.tuples(st.floats(0, 0.01), st.floats(1e-6, 0.005), st.sampled_from([None, 1, 2, 3, 4]),
                          st.sampled_from([None, 1, 2, 3, 4])), min_size=1, max_size=25)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(cores=st.integers(1, 3), jobs=JOBS, seed=st.one_of(st.none(), st.integers(0, 2**32)))
def test_every_job_ends_and_no_core_idles_beside_waiting_work_past_a_tick(cores, jobs, seed):
    """Any jobs, threads and wakers, with wake-affine draws or without: each job ends, no sooner than its work on
    a whole core; and a core never sits idle beside a queue of more than one job for longer than a tick (the
    balance that moves it; a core going idle only arms it)."""
    stretch = {"since": math.nan, "worst": 0.0}  # the current and the longest idle-beside-waiting stretch

    def watch(cpu: Cpu) -> None:
        placed = cpu.shared
        assert isinstance(placed, PlacedCores)
        stuck = any(len(q) > 1 for q in placed.queues) and any(not q.heap for q in placed.queues)
        if stuck and math.isnan(stretch["since"]):
            stretch["since"] = cpu.env.now
        elif not stuck and not math.isnan(stretch["since"]):
            stretch["worst"] = max(stretch["worst"], cpu.env.now - stretch["since"])
            stretch["since"] = math.nan

    done = run_jobs(cores, jobs, placement=None if seed is None else np.random.default_rng(seed), watch=watch)
    assert math.isnan(stretch["since"]) and stretch["worst"] <= TICK + 1e-9
    for (at, work, _, _), end in zip(jobs, done, strict=True):
        assert end >= at + work - 1e-9


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
