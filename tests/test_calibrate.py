"""`pqtwin calibrate`: a quick calibration yields a valid profile the simulator accepts; fits and errors."""

from __future__ import annotations

import os
import timeit

import numpy as np
import pytest
import yaml
from threadpoolctl import threadpool_limits

from hw.calibrate import linear_entry, median_rel_ci, per_call_entry
from sim.profile import load_profile

from .conftest import run_pqtwin


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    """One quick calibration through the console entry point (each takes ~13 s of CPU, most of it training), named
    ``t``: the post-quantum suite the tests below read, and a classical signature and AEAD besides."""
    out = tmp_path_factory.mktemp("cal") / "quick.yaml"
    algorithms = "ML-KEM-768,ML-DSA-65,AES-256-GCM,SHAKE-256,Ed25519,ChaCha20-Poly1305"
    res = run_pqtwin("calibrate", "--quick", "--algorithms", algorithms, "--out", str(out), "--name", "t")
    assert res.returncode == 0, res.stderr
    return out


def test_quick_profile_validates_and_is_measured(quick_profile):
    prof = load_profile(quick_profile)
    assert {
        "ML-KEM-768.encaps",
        "ML-DSA-65.sign",
        "AES-256-GCM.encrypt",
        "SHAKE-256.hash",
        "fl.train",
    } <= set(prof.ops)
    assert all(op.tag == "M" for op in prof.ops.values())
    sign = prof.op("ML-DSA-65.sign")
    assert sign.kind == "per_call" and sign.n >= 5 and sign.distribution.kind == "empirical"
    aead = prof.op("AES-256-GCM.encrypt")
    assert aead.kind == "linear" and aead.per_unit_s > 0  # bigger records cost more
    assert prof.platform.cores >= 1 and "cryptography" in prof.platform.libraries["openssl"].build
    # every op says which library measured it: the provider the registry picked, described on the platform
    assert prof.op("ML-DSA-65.sign").provider == "openssl" and prof.op("fl.train").provider == "numpy"
    assert prof.op("net.loopback").provider == "kernel"
    # how fast the cores ran while calibrating: what a twin run's own probe is compared with (hw/speed.py)
    assert prof.platform.speed_probe_us is not None and prof.platform.speed_probe_us > 0
    assert prof.platform.speed_probe_spread is not None and prof.platform.speed_probe_spread >= 1
    assert {op.provider for op in prof.ops.values()} <= set(prof.platform.libraries)
    # training at the scenarios' sizes, to 1 M parameters, and how two steps at once slow each other down
    train = prof.op("fl.train")
    assert train.points is not None and train.points[-1][0] >= 500 * 1_000_000
    if len(os.sched_getaffinity(0)) >= 2:
        assert train.pair_slowdown and all(f >= 1 for _, f in train.pair_slowdown)
    # a delegation hop's code path beyond what the profile prices, measured at each size (hw/hopcal.py)
    glue = prof.op("job.glue")
    assert glue.provider == "python" and glue.points is not None and len(glue.points) == 3


def test_simulator_accepts_a_calibrated_profile(pqtwin, quick_profile, tmp_path):
    res = pqtwin("sim", "scenarios/localhost.yaml", "--profile", str(quick_profile), "--replications", "2",
                 "--set", "workload.fl.rounds=2", "--out", str(tmp_path / "run"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "summary.json").exists()


def test_cli_quick_writes_profile(quick_profile):
    data = yaml.safe_load(quick_profile.read_text())
    assert data["profile"] == "t" and "Ed25519.sign" in data["ops"] and "ChaCha20-Poly1305.encrypt" in data["ops"]


NO_LIBOQS = {"OQS_INSTALL_PATH": "/nonexistent", "HOME": "/nonexistent"}  # liboqs absent, whatever this machine has


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--algorithms", "ML-KEM-512"], NO_LIBOQS, "ML-KEM-512: not available here; provided by liboqs"),
        (["--algorithms", "Kyber1"], None, "--algorithms: unknown algorithm"),
        (["--provider", "bogus"], None, "--provider: unknown provider"),
        (["--provider", "liboqs"], NO_LIBOQS, "--provider: liboqs is not available here"),
    ],
)
def test_cli_errors_are_one_line(pqtwin, tmp_path, args, env, expected):
    res = pqtwin("calibrate", "--quick", *args, "--out", str(tmp_path / "x.yaml"), env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert expected in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_linear_fit_recovers_known_costs():
    sizes = [64, 1024, 16384, 1 << 20]
    entry = linear_entry(sizes, [2e-6 + 3e-9 * s for s in sizes], 0.01, "byte", "synthetic")
    assert entry["per_call_s"] == pytest.approx(2e-6, rel=1e-6)
    assert entry["per_unit_s"] == pytest.approx(3e-9, rel=1e-6)


def test_median_ci_narrows_with_samples():
    rng = np.random.default_rng(0)
    assert median_rel_ci(rng.lognormal(0, 0.2, 10_000)) < median_rel_ci(rng.lognormal(0, 0.2, 100)) < 0.2
    entry = per_call_entry(rng.lognormal(-9, 0.5, 1000), "synthetic")
    q = entry["distribution"]["quantiles_s"]
    assert q == sorted(q) and entry["p50_s"] == pytest.approx(np.exp(-9), rel=0.1)


def test_a_measurement_the_hosts_slow_state_caught_is_taken_again(monkeypatch):
    """The speed probe's samples near a measurement (hw/speed.py ``slow_near``): while they say a core ran in the
    slow state, the measurement is taken again, at most RETRIES times, and the one with the fewest slow samples
    near it kept. A real probe, its samples planted: fast (34 µs) but for a slow spell (55 µs) over the first
    attempt's window."""
    import time

    from hw import calibrate
    from hw.calibrate import RETRIES, time_calls_at_speed
    from hw.speed import SpeedProbe

    monkeypatch.setattr(calibrate, "SLOW_WAIT_S", 0.2)  # the planted probe takes no new samples to wait for
    probe = SpeedProbe()  # not started: the test plants its samples
    now = time.monotonic()
    probe.samples = [(now - 5 + 0.05 * i, i % 2, 34.0, 1.0) for i in range(100)]
    calls = []

    def op() -> None:  # the first call lands in a slow spell of both cores; later ones do not
        calls.append(time.monotonic())
        if len(calls) == 1:
            t = time.monotonic()
            probe.samples += [(t, 0, 55.0, 1.0), (t, 1, 56.0, 1.0)]

    x, attempts = time_calls_at_speed(probe, op, 0.01, 5, 10)
    assert attempts == 2 and len(x) >= 5  # slow the first time, at speed the second: kept
    assert probe.slow_near(calls[0] - 0.01, calls[0] + 0.01) > 0.5  # both cores slow, beside an earlier fast sample
    probe.samples += [(time.monotonic() + 0.025 * i, i % 2, 55.0, 1.0) for i in range(40)]  # slow for the next second
    _, attempts = time_calls_at_speed(probe, lambda: time.sleep(0.002), 0.01, 3, 3)
    assert attempts == 1 + RETRIES  # slow every time: given up after RETRIES more
    assert time_calls_at_speed(None, op, 0.01, 5, 10)[1] == 1  # no probe: measured once
    assert SpeedProbe().slow_near(0, 1) is None  # no samples yet: unknown


def test_scaling_ops_are_priced_by_their_fastest_batch_the_sizes_interleaved(monkeypatch):
    """``fastest_batches``: every size timed in BATCHES batches, one of each size in turn, and priced by its batch
    with the lowest median, wherever it falls: a host in its slow state for most of a size's batches (here: all but
    one, a middle one for the first size, the first for the second) does not price that size, where timing it in
    one go did (2026-12-01: a 50 k step at 6.6-8.8 ms against 3.8-4.2). Each batch gets its share of the budget,
    waits briefly for a core at speed and is not taken again."""
    from hw import calibrate
    from hw.calibrate import BATCH_WAIT_S, BATCHES, fastest_batches

    order: list[tuple[str, int]] = []
    fast = {"small": BATCHES // 2, "large": 0}  # the one batch of each size the host ran fast

    def timed(probe, fn, budget_s, min_n, max_n, retries, wait_s):  # type: ignore[no-untyped-def]
        name = fn()
        k = sum(1 for n, _ in order if n == name)
        order.append((name, k))
        assert budget_s == pytest.approx(1.0 / BATCHES) and retries == 0 and wait_s == BATCH_WAIT_S
        return np.full(10, 1.0 if k == fast[name] else 2.0) + 0.01 * k, 1

    monkeypatch.setattr(calibrate, "time_calls_at_speed", timed)
    best = fastest_batches(None, [lambda: "small", lambda: "large"], 1.0, 3, 5)
    assert [n for n, _ in order] == ["small", "large"] * BATCHES  # interleaved, not one size after the other
    assert np.median(best[0]) == pytest.approx(1.0 + 0.01 * fast["small"])  # its fast batch, in the middle
    assert np.median(best[1]) == pytest.approx(1.0)  # ... or the first


def test_a_measurement_is_taken_on_a_core_at_the_usual_speed():
    """``fast_core``: the core whose latest probe sample is at the usual speed (the other is in its slow state),
    None when none is; ``slow_near`` of one core looks at that core's samples only."""
    import time

    from hw.speed import SpeedProbe

    probe = SpeedProbe()
    now = time.monotonic()
    probe.samples = [(now - 5 + 0.05 * i, i % 2, 34.0, 1.0) for i in range(90)]
    probe.samples += [(now - 0.01, 0, 57.0, 1.0), (now - 0.01, 1, 34.5, 1.0)]
    assert probe.fast_core(0.0) == 1
    assert probe.slow_near(now - 0.02, now, cpu=0) == 1.0 and probe.slow_near(now - 0.02, now, cpu=1) == 0.0
    probe.samples.append((time.monotonic(), 1, 58.0, 1.0))
    assert probe.fast_core(0.0) is None  # both cores slow now


def test_a_calibration_records_the_state_it_priced_at_not_the_median_of_two():
    """A host in its slow state most of the time (70 %, and 85 %: more than the old 25th percentile could see past,
    as this machine class spent 52-93 % of 15 s stretches slow on 2026-12-01): the profile's reference probe is the
    fast state's, the one ``fast_core`` and ``fastest_batches`` price at, not the samples' median, which lies in
    the slow state. On a steady host it is about the median; a slow spell marks the cores slow."""
    from hw.calibrate import speed_facts
    from hw.speed import SpeedProbe, usual_us

    rng = np.random.default_rng(3)
    for slow_share in (0.7, 0.85):
        n_slow = int(1000 * slow_share)
        two = rng.permutation(np.r_[rng.normal(41.0, 0.8, 1000 - n_slow), rng.normal(62.0, 3.0, n_slow)])
        assert np.median(two) > 55 and (np.percentile(two, 25) > 50) == (slow_share > 0.75)  # at 85 % the 25th too
        assert usual_us(list(two)) == pytest.approx(41.0, rel=0.01), slow_share
    steady = rng.normal(50.0, 2.0, 1000)
    assert usual_us(list(steady)) == pytest.approx(np.median(steady), rel=0.01)
    assert usual_us([]) is None and usual_us([0.0] * 8) is None  # nothing to tell, never a nan
    probe = SpeedProbe()  # not started: its samples planted, as a calibration's would be when it stops
    probe.samples = [(0.05 * i, i % 2, float(us), 1.0) for i, us in enumerate(two)]  # 85 % slow
    assert 0.8 < probe.slow_near(0.0, 50.0) < 0.9  # the slow state's share, judged against the fast state
    facts = speed_facts(probe)  # what the profile records: the fast state, and the spread of every sample
    assert facts["speed_probe_us"] == pytest.approx(41.0, rel=0.01)
    assert facts["speed_probe_spread"] == pytest.approx(np.percentile(two, 90) / np.percentile(two, 10))
    assert speed_facts(SpeedProbe()) == {}  # no probe ran: nothing recorded


def test_a_measurement_is_judged_by_the_core_it_was_pinned_to():
    """``_pinned`` yields the core the thread is on for the block, or None where it could not pin it (a core
    not allowed here): the measurement is then judged by every core's samples, not one it never ran on."""
    import os

    from hw.calibrate import _pinned

    before = os.sched_getaffinity(0)
    core = min(before)
    with _pinned(core) as c:
        assert c == core and os.sched_getaffinity(0) == {core}
    assert os.sched_getaffinity(0) == before
    with _pinned(max(before) + 4096) as c:
        assert c is None and os.sched_getaffinity(0) == before
    with _pinned(None) as c:
        assert c is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="two cores")
def test_time_beside_pairs_steps_alone_and_beside_and_reaps_the_other(monkeypatch):
    """``time_beside`` (``pair_slowdown``, bench/train_beside.py): the other process is stopped during each step
    alone and running, on the other core, during each step beside; at least MIN_PAIRS pairs; reaped afterwards, also
    when the step fails; and a process beside that ends by itself is an error, not a pair beside nothing."""
    import time
    from pathlib import Path

    from hw import calibrate
    from hw.calibrate import MIN_PAIRS, time_beside

    cores = tuple(sorted(os.sched_getaffinity(0))[:2])
    forked: list[int] = []
    fork = os.fork

    def recording_fork() -> int:
        pid = fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(calibrate.os, "fork", recording_fork)

    def idle() -> None:
        while True:
            time.sleep(1.0)

    states: list[tuple[str, set[int]]] = []  # the other process's state and cores at each step

    def step() -> None:
        state = Path(f"/proc/{forked[-1]}/stat").read_text().rsplit(")", 1)[1].split()[0]
        states.append((state, os.sched_getaffinity(forked[-1])))

    def reaped(pid: int) -> bool:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return True

    alone, beside = time_beside(step, idle, 0.0, cores)
    assert len(alone) == len(beside) == MIN_PAIRS and (alone > 0).all() and (beside > 0).all()
    assert len(states) == 1 + 2 * MIN_PAIRS  # the first step runs beside it, then (alone, beside) pairs
    assert all(cpus == {cores[1]} for _, cpus in states)
    assert [state == "T" for state, _ in states[1:]] == [True, False] * MIN_PAIRS  # stopped alone, else running
    assert reaped(forked[0])

    def failing() -> None:
        if len(states) == 9:
            raise RuntimeError("step failed")
        step()

    with pytest.raises(RuntimeError, match="step failed"):
        time_beside(failing, idle, 10.0, cores)
    assert len(forked) == 2 and reaped(forked[1])

    def ends() -> None:
        raise ValueError("the other work failed")

    with pytest.raises(RuntimeError, match="ended"):
        time_beside(lambda: time.sleep(0.01), ends, 10.0, cores)
    assert len(forked) == 3 and reaped(forked[2])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a pair needs two cores")
def test_training_now_measures_a_step_alone_and_two_trainings_at_once():
    """``training_now`` (bench/twin_fidelity.py before each pass): real steps alone and beside a forked copy,
    in adjacent pairs, on two cores: a slowdown of at least 1 (a copy beside never speeds a step up in the model),
    finite; the step alone takes as long as the same step timed here (within the host's noise), and a step of 8x
    the work longer; the calling process's affinity and children as before."""
    from hw.calibrate import training_job, training_now

    mine = os.sched_getaffinity(0)
    got = training_now(64, 20_000, 0.2)
    assert got is not None and 1.0 <= got.pair_slowdown < 10.0
    _, step = training_job(64, 20_000, np.random.default_rng(0))
    with threadpool_limits(1):
        here = min(timeit.repeat(step, number=1, repeat=20))
    assert here / 3 < got.alone_s < 3 * here + 0.01
    bigger = training_now(64, 160_000, 0.2)
    assert bigger is not None and bigger.alone_s > 2 * got.alone_s
    assert os.sched_getaffinity(0) == mine
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the copy was reaped


def test_the_training_probe_times_the_reference_step_alone_and_a_profile_keeps_it_whole():
    """``hw.trainprobe.training_probe``: the reference step as timed here (within the host's noise), the calling
    process's affinity as before; a profile's platform takes its three fields together or refuses them in one line."""
    from hw.trainprobe import PROBE_PARAMETERS, PROBE_SAMPLES, training_facts, training_job, training_probe
    from sim.profile import Platform

    mine = os.sched_getaffinity(0)
    got = training_probe(steps=2)
    assert got is not None and (got.parameters, got.samples, got.steps) == (PROBE_PARAMETERS, PROBE_SAMPLES, 2)
    assert os.sched_getaffinity(0) == mine
    _, step = training_job(PROBE_SAMPLES, PROBE_PARAMETERS, np.random.default_rng(0))
    with threadpool_limits(1):
        here = min(timeit.repeat(step, number=1, repeat=3))
    assert here / 3 < got.alone_s < 3 * here
    platform = {"cpu": "x", "cores": 2, "libraries": {"numpy": {"library": "NumPy", "version": "2", "build": "b"}},
                "date": "2026-12-04", "how_measured": "here"}  # fmt: skip
    kept = Platform.model_validate(platform | training_facts(got))
    assert (kept.training_probe_s, kept.training_probe_parameters) == (got.alone_s, PROBE_PARAMETERS)
    with pytest.raises(ValueError, match="go together"):
        Platform.model_validate(platform | {"training_probe_s": 0.05})


def test_a_training_probe_that_cannot_be_taken_is_none_never_an_error(monkeypatch):
    """A run's results and a calibration's measurements come first: where this process cannot be pinned (a cpuset
    changed under it) or the step fails, the probe is None, and the affinity is as it was."""
    import hw.trainprobe as tp

    mine = os.sched_getaffinity(0)

    def refused(pid, cpus):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(tp.os, "sched_setaffinity", refused)
    assert tp.training_probe(steps=1) is None
    monkeypatch.undo()

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(tp, "training_job", no_memory)
    assert tp.training_probe(steps=1) is None
    assert os.sched_getaffinity(0) == mine
