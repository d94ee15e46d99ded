"""The twin tells a noisy measurement from a wrong model: machine load is measured and flagged."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hw.compare import compare_dirs
from hw.machine import LoadMonitor
from sim.contract import MachineLoad, read_summary, write_summary
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

from .conftest import SCENARIOS

BUSY = MachineLoad(cores=2, loadavg_1m_start=1.9, loadavg_1m_end=2.1, twin_cpu_cores=1.0, foreign_cpu_cores=0.98,
                   steal_fraction=0.0, quiet=False)  # fmt: skip


def test_a_busy_neighbour_is_seen_as_foreign_cpu():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a neighbour, not one of the twin's nodes
    try:
        time.sleep(0.3)
        monitor = LoadMonitor().start()
        time.sleep(1.5)
        load = monitor.stop()
    finally:
        hog.kill()
        hog.wait()
    assert load.foreign_cpu_cores > 0.5 and not load.quiet, load
    assert load.twin_cpu_cores < 0.2  # this process slept
    assert "BUSY" in load.describe()


def test_compare_flags_a_measurement_on_a_busy_machine(tmp_path):
    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=6"])
    write_run(simulate(s, "sequential", 1, 2), tmp_path / "sim", s)
    write_run(simulate(s, "sequential", 2, 1), tmp_path / "hw", s)
    hw = read_summary(tmp_path / "hw" / "summary.json")
    write_summary(
        hw.model_copy(update={"backend": "local", "state": "completed", "machine_load": BUSY}), tmp_path / "hw"
    )
    result = compare_dirs(tmp_path / "sim", tmp_path / "hw")
    assert any("busy machine" in w and "0.98 of 2 cores" in w for w in result["warnings"]), result["warnings"]
    assert result["runs"]["hw"]["machine_load"]["quiet"] is False
    quiet = BUSY.model_copy(update={"foreign_cpu_cores": 0.01, "quiet": True})
    write_summary(hw.model_copy(update={"backend": "local", "machine_load": quiet}), tmp_path / "hw")
    assert not any("busy machine" in w for w in compare_dirs(tmp_path / "sim", tmp_path / "hw")["warnings"])


def test_compare_names_the_operations_the_simulation_did_not_price():
    from hw.compare import unsimulated_ops
    from sim.contract import SpanRow, to_frame

    def spans(*ops: str):
        return to_frame([SpanRow(0, 1, "a", "h", "distribute", op, 0.0, 1.0, 0.0, 0) for op in ops])

    sim = spans("SHAKE-256.hash", "ML-DSA-65.sign", "transfer")
    hw = spans("Falcon-512.sign", "ML-DSA-65.sign", "transfer", "ML-KEM-512.encaps")
    assert unsimulated_ops(sim, hw) == ["Falcon-512.sign", "ML-KEM-512.encaps"]
    assert unsimulated_ops(hw, hw) == []


def _spin(cpu: int, seconds: float) -> None:
    os.sched_setaffinity(0, {cpu})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_the_speed_probe_times_every_core_and_keeps_the_measured_window():
    """Every core probed (each kept busy by a spinning process: an idle core's samples do not count), the
    summary of a window or of all."""
    import multiprocessing as mp

    from hw.speed import SpeedProbe, counted

    cpus = sorted(os.sched_getaffinity(0))
    spinners = [mp.Process(target=_spin, args=(c, 1.2)) for c in cpus]
    for sp in spinners:
        sp.start()
    time.sleep(0.1)
    probe = SpeedProbe(interval_s=0.01).start()
    time.sleep(0.4)
    middle = time.monotonic()
    time.sleep(0.4)
    all_of_it = probe.stop()
    for sp in spinners:
        sp.join()
    busy = counted(probe.samples)  # busy at least BUSY_MIN before them, or not known (a 10 ms interval: a jiffy)
    assert len(busy) >= 10 * len(probe.cpus) and {x[1] for x in busy} == set(cpus)
    assert all_of_it is not None and all_of_it.samples == len(busy)
    assert 0 < all_of_it.probe_us_p10 <= all_of_it.probe_us_p50 <= all_of_it.probe_us_p90
    later = probe.stop((middle, time.monotonic()))  # the samples since the middle only
    assert later is not None and later.samples < all_of_it.samples
    assert probe.stop((0.0, 1.0)).samples == all_of_it.samples  # an empty window: all samples, not none
    assert SpeedProbe(interval_s=10).start().stop() is None  # stopped before its first sample


def test_an_idle_cores_samples_do_not_count():
    """An idle vCPU reads slow here (bench/speed_states.py): a sample counts only if its core was busy at least
    BUSY_MIN of the interval before it, in the summary and in ``slow_spans`` alike."""
    import numpy as np

    from hw.speed import SpeedProbe, slow_spans

    probe = SpeedProbe()
    probe.samples = [(0.05 * i, i % 2, 60.0 if i % 2 else 34.0, 0.1 if i % 2 else 0.9) for i in range(40)]
    summary = probe.stop()
    assert summary is not None and summary.samples == 20 and summary.probe_us_p90 == 34.0  # core 1 idle: left out
    kept = np.array(probe.samples)
    assert slow_spans(np.array([0.5]), np.array([0.6]), kept, calibrated_us=34.0).tolist() == [0.0]
    kept[:, 3] = np.nan  # busy share unknown (a run before it was kept): every sample counts
    assert slow_spans(np.array([0.5]), np.array([0.6]), kept, calibrated_us=34.0).tolist() == [1.0]
    idle = SpeedProbe()
    idle.samples = [(0.05 * i, i % 2, 40.0 + i, 0.0) for i in range(10)]  # no core busy: a machine too idle
    summary = idle.stop()
    assert summary is not None and summary.samples == 10  # ... summarised from every sample, not none


def test_a_run_on_cores_that_changed_speed_is_unsteady_not_busy():
    from hw.machine import is_unsteady
    from sim.contract import CpuSpeed

    steady = CpuSpeed(probe_us_p10=60.0, probe_us_p50=62.0, probe_us_p90=66.0, samples=40)
    quiet = BUSY.model_copy(update={"foreign_cpu_cores": 0.01, "quiet": True, "cpu_speed": steady,
                                    "calibrated_probe_us": 62.0})  # fmt: skip
    assert not is_unsteady(quiet) and quiet.speed_vs_calibration == pytest.approx(1.0)
    flipping = quiet.model_copy(update={"cpu_speed": steady.model_copy(update={"probe_us_p90": 100.0})})
    slower = quiet.model_copy(update={"calibrated_probe_us": 50.0})  # cores at 0.81x their calibrated speed
    assert is_unsteady(flipping) and is_unsteady(slower)
    assert not is_unsteady(quiet.model_copy(update={"calibrated_probe_us": None}))  # nothing to compare with
    shown = slower.model_copy(update={"quiet": False, "unsteady": True})
    assert "UNSTEADY" in shown.describe() and "0.81x their calibrated speed" in shown.describe()
    assert "BUSY" in shown.model_copy(update={"busy": True}).describe()  # neighbours: the stronger reason


def test_compare_tells_an_unsteady_host_from_a_busy_one(tmp_path):
    from sim.contract import CpuSpeed

    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=6"])
    write_run(simulate(s, "sequential", 1, 2), tmp_path / "sim", s)
    write_run(simulate(s, "sequential", 2, 1), tmp_path / "hw", s)
    hw = read_summary(tmp_path / "hw" / "summary.json")
    speed = CpuSpeed(probe_us_p10=60.0, probe_us_p50=90.0, probe_us_p90=100.0, samples=40)
    unsteady = BUSY.model_copy(update={"foreign_cpu_cores": 0.0, "cpu_speed": speed, "calibrated_probe_us": 63.0,
                                       "unsteady": True})  # fmt: skip
    write_summary(hw.model_copy(update={"backend": "local", "state": "completed", "machine_load": unsteady}),
                  tmp_path / "hw")  # fmt: skip
    warnings = compare_dirs(tmp_path / "sim", tmp_path / "hw")["warnings"]
    assert any("changed speed" in w and "(0.70x): `pqtwin compare --at-speed`" in w for w in warnings), warnings
    assert not any("busy machine" in w for w in warnings)


def test_the_speed_probes_samples_are_kept_on_the_spans_clock_and_flag_spans_near_a_slow_core(tmp_path):
    """``keep`` writes each sample (seconds since the nodes' epoch, core, µs); ``slow_spans`` marks a span 1
    when a sample within NEAR_S of it, on any core, was SLOW x the calibrated probe or more, 0 when all near it
    were faster, NaN when none was near."""
    import numpy as np

    from hw.speed import NEAR_S, SLOW, SpeedProbe, read_kept, slow_spans

    probe = SpeedProbe(interval_s=0.01).start()
    epoch = time.monotonic()
    time.sleep(0.2)
    probe.stop()
    probe.keep(tmp_path / "kept.csv", epoch)
    kept = read_kept(tmp_path / "kept.csv")
    assert kept is not None and len(kept) == len(probe.samples) and set(kept[:, 1]) <= set(probe.cpus)
    assert kept[0, 0] > -0.05 and kept[-1, 0] < 0.5 and (np.diff(kept[:, 0]) >= 0).all()
    assert read_kept(tmp_path / "missing.csv") is None
    (tmp_path / "empty.csv").write_text("t_s,cpu,probe_us,busy\n")
    assert read_kept(tmp_path / "empty.csv") is None  # a run too short for a sample
    (tmp_path / "binary.csv").write_bytes(b"t_s,cpu,probe_us,busy\n\xff\xfe,1,2,3\n")
    (tmp_path / "short.csv").write_text("t_s,cpu,probe_us,busy\n1.0,0\n2.0,1\n")
    assert read_kept(tmp_path / "binary.csv") is None and read_kept(tmp_path / "short.csv") is None  # not kept

    samples = np.array([[0.0, 0, 60.0], [0.0, 1, 61.0], [1.0, 0, 60.0], [1.0, 1, 60.0 * SLOW], [3.0, 0, 62.0]])
    start = np.array([0.0, 1.0 - NEAR_S / 2, 1.0 + NEAR_S * 1.1, 2.0, 3.0])
    flags = slow_spans(start, start + 0.001, samples, calibrated_us=60.0)
    assert flags[:2].tolist() == [0.0, 1.0] and np.isnan(flags[2]) and np.isnan(flags[3]) and flags[4] == 0.0
