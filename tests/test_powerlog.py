"""Measured node power (hw/powerlog.py, `pqtwin hw energy`): the log format, the integration, and a real run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hw.local import run_local
from hw.powerlog import energy_between, read_power_log
from sim.errors import UserError
from sim.scenario import load_scenario

from .conftest import SCENARIOS

QUICK = ["workload.fl.model_parameters=20000", "workload.fl.samples_per_client=100",
         "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]  # fmt: skip


def test_energy_is_the_integral_of_power_over_the_window():
    t, w = np.array([0.0, 10.0, 20.0]), np.array([3.0, 3.0, 3.0])
    assert energy_between(t, w, 2.5, 7.5) == pytest.approx(15.0)
    ramp = np.array([0.0, 10.0, 20.0])  # 1 W per second
    assert energy_between(t, ramp, 0.0, 20.0) == pytest.approx(200.0)
    assert energy_between(t, ramp, 5.0, 15.0) == pytest.approx(100.0)  # edges interpolated
    assert energy_between(t, w, -1.0, 5.0) is None and energy_between(t, w, 5.0, 21.0) is None  # not covered


def test_log_formats_and_one_line_errors(tmp_path):
    f = tmp_path / "meter.csv"
    f.write_text("# INA219 on pi-1\ntime_s,node,volts,amps\n100.0,pi-1,5.0,0.6\n101.0,pi-1,5.1,0.7\n")
    log = read_power_log(f)
    assert list(log.columns) == ["time_s", "node", "power_w"] and log.power_w.tolist() == pytest.approx([3.0, 3.57])
    for text, expected in (("time_s,node\n1,pi-1\n", "missing power_w"),
                           ("time_s,node,power_w\n1,pi-1,3\nx,pi-1,3\n", "reading 2 (time_s 'x', power_w 3): time_s"),
                           # the reading, not a line number: comment and blank lines made the one given wrong
                           ("# m\n\ntime_s,node,volts,amps\n1,pi-1,5,1\n\n2,pi-1,5,-1\n",
                            "reading 2 (time_s 2, volts 5, amps -1): time_s and power_w must be numbers"),
                           ("time_s,node,power_w\n1,pi-1,-2\n", "power_w >= 0"),
                           # more fields than the header in the first row: pandas read the first column as the
                           # rows' index, and the error's line number int('x') was a ValueError traceback
                           ("time_s,node,power_w\nx,pi-1,3,4\n", "a line has more fields than the header"),
                           ("time_s,node,power_w\n1e400,pi-1,3,4\n", "a line has more fields than the header"),
                           ("time_s,node,power_w\n1,pi-1,3\n2,pi-1,3,4\n", "not a CSV power log")):  # fmt: skip
        f.write_text(text)
        with pytest.raises(UserError) as info:
            read_power_log(f)
        assert len(info.value.lines) == 1 and expected in info.value.lines[0], info.value.lines
    with pytest.raises(UserError, match="file not found"):
        read_power_log(tmp_path / "absent.csv")


def test_cli_sets_measured_energy_beside_the_run(pqtwin, tmp_path):
    s = load_scenario(SCENARIOS / "localhost.yaml", QUICK, priced=False)
    run = tmp_path / "run"
    assert run_local(s, run, "sequential", rounds=1, seed=3).state == "completed"
    res = pqtwin("hw", "energy", str(run), "--power-log", str(tmp_path / "none.csv"))
    assert res.returncode == 2 and "file not found" in res.stderr
    (tmp_path / "m.csv").write_text("time_s,node,power_w\n0,local,4\n")
    res = pqtwin("hw", "energy", str(run), "--power-log", str(tmp_path / "m.csv"))
    assert res.returncode == 2 and "the run's clock is monotonic" in res.stderr  # a local run's clock
    # the same run as a wall-clock (Kubernetes) run would record it: spans from the run.json epoch in Unix time
    cfg = json.loads((run / "run.json").read_text())
    cfg.update(clock="wall", epoch=1_764_352_800.0)
    (run / "run.json").write_text(json.dumps(cfg))
    (tmp_path / "m.csv").write_text("time_s,node,power_w\n1764352700,local,4\n1764353900,local,4\n")
    res = pqtwin("hw", "energy", str(run), "--power-log", str(tmp_path / "m.csv"))
    assert res.returncode == 0, res.stderr
    out = json.loads((run / "energy_measured.json").read_text())
    t0, t1 = out["window_s"]
    assert out["by_node_j"]["local"] == pytest.approx(4.0 * (t1 - t0)) and t1 > t0 > 1_764_352_800
    assert out["per_round_j"]["1"] > 0 and "local" in res.stdout
