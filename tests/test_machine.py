"""The twin tells a noisy measurement from a wrong model: machine load is measured and flagged."""

from __future__ import annotations

import subprocess
import sys
import time

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
