"""CPU disciplines against known answers: processor sharing by hand and M/D/1-PS theory, fifo by hand."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from scipy import stats

from sim.hosts import CountingEnvironment, Cpu
from sim.profile import LinearOp


def finish_times(cores: int, jobs: list[tuple[float, float]], sharing: str) -> list[float]:
    """(arrival, work) jobs on one CPU; the time each finishes."""
    return finish_times_and_events(cores, jobs, sharing)[0]


def finish_times_and_events(cores: int, jobs: list[tuple[float, float]],
                            sharing: str = "processor-sharing") -> tuple[list[float], int]:  # fmt: skip
    """``finish_times``, and the events the run counted (``CountingEnvironment``)."""
    env = CountingEnvironment()
    cpu = Cpu(env, "h", cores, None, np.random.default_rng(0), sharing)
    done = [0.0] * len(jobs)

    def job(i: int, at: float, work: float):
        yield env.timeout(at)
        yield from cpu.work(work)
        done[i] = env.now

    for i, (at, work) in enumerate(jobs):
        env.process(job(i, at, work))
    env.run()
    return done, env.events


def test_processor_sharing_by_hand():
    # one core: two equal jobs share it and end together; a short job next to a long one ends at 2 x its work
    assert finish_times(1, [(0, 1), (0, 1)], "processor-sharing") == pytest.approx([2, 2])
    assert finish_times(1, [(0, 1), (0, 3)], "processor-sharing") == pytest.approx([2, 4])
    # two cores: up to two jobs run at full speed; a third slows all three to 2/3
    assert finish_times(2, [(0, 1), (0, 3)], "processor-sharing") == pytest.approx([1, 3])
    assert finish_times(2, [(0, 3), (0, 3), (0, 3)], "processor-sharing") == pytest.approx([4.5, 4.5, 4.5])
    # a 1 ms job arriving during a long one on one core takes 2 ms, it does not wait for the long one
    assert finish_times(1, [(0, 0.190), (0.010, 0.001)], "processor-sharing") == pytest.approx([0.191, 0.012])


def test_fifo_by_hand():
    assert finish_times(1, [(0, 0.190), (0.010, 0.001)], "fifo") == pytest.approx([0.190, 0.191])
    assert finish_times(2, [(0, 3), (0, 3), (0, 3)], "fifo") == pytest.approx([3, 3, 6])


@pytest.mark.slow
def test_md1_processor_sharing_mean_sojourn_is_work_over_one_minus_rho():
    """M/D/1-PS: E[T] = D / (1 - rho) (insensitive to the work distribution; FIFO's P-K mean differs)."""
    rng, d, lam, n = np.random.default_rng(7), 0.01, 60.0, 20000  # rho = 0.6
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    ends = finish_times(1, [(float(a), d) for a in arrivals], "processor-sharing")
    sojourn = np.array(ends) - arrivals
    batches = sojourn[n // 10 :].reshape(20, -1).mean(axis=1)  # batch means after a warm-up
    half = stats.t.ppf(0.995, batches.size - 1) * batches.std(ddof=1) / np.sqrt(batches.size)
    assert abs(batches.mean() - d / (1 - 0.6)) < half  # 0.025 s; FIFO's Pollaczek-Khinchine mean is 0.0175 s


def _training(factor: float) -> LinearOp:
    return LinearOp(kind="linear", unit="sample_param", per_call_s=0, per_unit_s=1e-9, pair_slowdown=[(1.0, factor)],
                    source="test", tag="E")  # fmt: skip


def contended_finish_times(cores: int, jobs: list[tuple[float, float, bool]], sharing: str, factor: float = 1.5):
    """(arrival, work, contended) jobs; contended ones slow each other down by ``factor`` (a pair's)."""
    env = simpy.Environment()
    cpu = Cpu(env, "h", cores, None, np.random.default_rng(0), sharing)
    cpu.log = []
    done = [0.0] * len(jobs)
    op = _training(factor)

    def job(i: int, at: float, work: float, contended: bool):
        yield env.timeout(at)
        yield from cpu.work(work, (op, 1.0) if contended else None)
        done[i] = env.now

    for i, spec in enumerate(jobs):
        env.process(job(i, *spec))
    env.run()
    return done, cpu


def test_trainings_slow_each_other_down_while_they_overlap():
    # together from the start: both take 1.5 x their work; a job that does not contend is untouched
    done, _ = contended_finish_times(2, [(0, 2, True), (0, 2, True)], "processor-sharing")
    assert done == pytest.approx([3, 3])
    done, _ = contended_finish_times(2, [(0, 2, True), (0, 2, False)], "processor-sharing")
    assert done == pytest.approx([2, 2])
    # B joins A at t=1: A's last 1 s of work takes 1.5 s (ends at 2.5); B did 1 s of its work in those 1.5 s
    # and does the other 1 s alone (ends at 3.5)
    done, cpu = contended_finish_times(2, [(0, 2, True), (1, 2, True)], "processor-sharing")
    assert done == pytest.approx([2.5, 3.5])
    # the work each ended up needing is what a replay of the host's jobs (the vectorized engine) is given
    assert [w for _, w, _ in cpu.log] == pytest.approx([2.5, 2.5])
    assert cpu.demand_s == pytest.approx(5.0)
    # one core: the pair time-slices; contention counts only steps on other cores
    done, _ = contended_finish_times(1, [(0, 2, True), (0, 2, True)], "processor-sharing")
    assert done == pytest.approx([4, 4])
    # fifo: a step asked for while another runs carries the factor from then on
    done, _ = contended_finish_times(2, [(0, 2, True), (1, 2, True)], "fifo")
    assert done == pytest.approx([2, 4])


def test_hosts_on_one_machine_share_its_cores_and_their_trainings_slow_each_other():
    """``deployment.machine``: two hosts' jobs on a 1-core machine time-slice it (apart they run at once);
    trainings on two hosts of a 2-core machine slow each other as on one host, and each host counts its own."""
    env = simpy.Environment()
    rng = np.random.default_rng(0)
    a = Cpu(env, "a", 1, None, rng)
    b = Cpu(env, "b", 1, None, rng, machine=a)
    done: dict[str, float] = {}

    def job(cpu: Cpu, name: str, work: float, op: LinearOp | None = None):
        yield from cpu.work(work, (op, 1.0) if op else None)
        done[name] = env.now

    env.process(job(a, "a", 1.0))
    env.process(job(b, "b", 1.0))
    env.run()
    assert done == pytest.approx({"a": 2.0, "b": 2.0})  # apart (no machine): 1.0 each
    env = simpy.Environment()
    a, done = Cpu(env, "a", 2, None, rng), {}
    b = Cpu(env, "b", 2, None, rng, machine=a)
    op = _training(1.5)
    env.process(job(a, "a", 2.0, op))
    env.process(job(b, "b", 2.0, op))
    env.run()
    assert done == pytest.approx({"a": 3.0, "b": 3.0})
    assert a.demand_s == pytest.approx(3.0) and b.demand_s == pytest.approx(3.0)


def test_the_environment_counts_every_event_it_processed():
    """CountingEnvironment counts from SimPy's event ids (no hook per step): the same count as one per step."""

    class PerStep(simpy.Environment):
        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def step(self) -> None:
            self.steps += 1
            super().step()

    def world(env: simpy.Environment) -> simpy.Event:
        cpu = Cpu(env, "h", 2, None, np.random.default_rng(0))

        def job(at: float, work: float):
            yield env.timeout(at)
            yield from cpu.work(work)

        for i in range(20):
            env.process(job(i * 0.3, 1.0 + i % 3))
        return env.timeout(4.0)  # stops with events still queued: those are not counted

    counting, per_step = CountingEnvironment(), PerStep()
    counting.run(until=world(counting))
    per_step.run(until=world(per_step))
    assert counting.events == per_step.steps > 20


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cores", [1, 2])
def test_a_job_alone_on_idle_cores_ends_as_shared_cores_would_end_it(monkeypatch, seed, cores):
    """A job on idle processor-sharing cores that nothing can join before it ends (no event scheduled before its
    end: ``SharedCores.alone_s``) takes one timeout instead of a timer and its own event; every job of a random
    mix, alone or not, ends at the same instant, to the bit, as without that path; the event it saves still counts
    (``count_events``: a run's events are the model's work)."""
    rng = np.random.default_rng(seed)
    jobs = [(float(t), float(w)) for t, w in zip(np.cumsum(rng.exponential(0.02, 40)), rng.exponential(0.01, 40),
                                                 strict=True)]  # fmt: skip

    def run() -> tuple[list[float], int]:
        return finish_times_and_events(cores, jobs)

    from sim.hosts import SharedCores

    alone, taken = SharedCores.alone_s, []
    monkeypatch.setattr(SharedCores, "alone_s", lambda self, work_s: taken.append(alone(self, work_s)) or taken[-1])
    fast, fast_events = run()
    assert any(t is not None for t in taken) and None in taken  # both paths were taken
    monkeypatch.setattr(SharedCores, "alone_s", lambda self, work_s: None)
    shared, shared_events = run()
    assert fast == shared
    assert fast_events == shared_events


def test_a_linear_op_reads_its_own_points_after_a_copy_with_others():
    """``LinearOp.base_s`` keeps the sizes it interpolated; a copy with other points (pydantic shares private
    attributes with a copy) must price from its own, and both keep pricing as they did."""
    op = LinearOp(kind="linear", unit="byte", per_call_s=0.0, per_unit_s=0.0, points=[(0, 1e-6), (100, 3e-6)],
                  source="test", tag="M")  # fmt: skip
    assert op.base_s(50) == pytest.approx(2e-6)
    other = op.model_copy(update={"points": [(0, 1e-3), (100, 3e-3)]})
    assert other.base_s(50) == pytest.approx(2e-3)
    assert op.base_s(50) == pytest.approx(2e-6) and other.base_s(50) == pytest.approx(2e-3)
    assert op.base_s(150) == pytest.approx(4e-6)  # past the last point: its slope
    twin = LinearOp(kind="linear", unit="byte", per_call_s=0.0, per_unit_s=0.0, points=[(0, 1e-6), (100, 3e-6)],
                    source="test", tag="M")  # fmt: skip
    assert op == twin  # what it kept is not part of it


def test_past_its_last_point_a_sized_operation_never_costs_less():
    """A noisy last point below the one before (a profile may be written by hand, or measured on a busy host) made
    the extrapolation fall with size, to a cost clamped at 0 further out: a 10 MB record for free."""
    op = LinearOp(kind="linear", unit="byte", per_call_s=0.0, per_unit_s=0.0, points=[(1, 1.0), (2, 0.5)],
                  source="test", tag="M")  # fmt: skip
    assert op.base_s(2) == 0.5 and op.base_s(1e7) == 0.5 and op.base_s(1.5) == pytest.approx(0.75)
