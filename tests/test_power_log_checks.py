"""A power log is checked against itself and against the run (hw/powerlog.py, `pqtwin hw energy`): each problem is
refused in one line naming the file, the reading and its values, or left out with a one-line warning saying what
was left out; the result never holds a node that is not a host of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hw.local import run_local
from hw.powerlog import measured, read_power_log, run_window
from sim.errors import UserError
from sim.scenario import load_scenario

from .conftest import SCENARIOS

QUICK = ["workload.fl.model_parameters=20000", "workload.fl.samples_per_client=100",
         "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]  # fmt: skip
EPOCH = 1_764_352_800.0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real local run as a wall-clock (Kubernetes) run records it, its scenario with a second host, pi-2, that
    runs no pod of the run (it still draws power: a host of the run)."""
    s = load_scenario(SCENARIOS / "localhost.yaml", QUICK, priced=False)
    out = tmp_path_factory.mktemp("power") / "run"
    assert run_local(s, out, "sequential", rounds=2, seed=3).state == "completed"
    cfg = json.loads((out / "run.json").read_text())
    cfg.update(clock="wall", epoch=EPOCH)
    (out / "run.json").write_text(json.dumps(cfg))
    scenario = yaml.safe_load((out / "scenario.yaml").read_text())
    scenario["deployment"]["hosts"].append({**scenario["deployment"]["hosts"][0], "name": "pi-2"})
    (out / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    return out


def _log(path: Path, rows: list[str], header: str = "time_s,node,power_w") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _every(node: str, watts: float, t0: float, t1: float, step: float = 0.1) -> list[str]:
    n = int((t1 - t0) / step) + 1
    return [f"{t0 + i * step:.3f},{node},{watts}" for i in range(n)]


def _refused(path: Path) -> str:
    with pytest.raises(UserError) as info:
        read_power_log(path, warn=pytest.fail)
    assert len(info.value.lines) == 1, info.value.lines
    return info.value.lines[0]


def test_a_log_is_checked_against_itself(tmp_path):
    f = tmp_path / "meter.csv"
    # two different powers of one node at one instant: which is right cannot be told (they were mixed)
    line = _refused(_log(f, ["1,pi-1,3", "1,pi-2,5", "1,pi-1,9", "2,pi-1,3"]))
    assert line.startswith(f"{f}: reading 3 (node 'pi-1', time_s 1, power_w 9) and reading 1 (power_w 3)"), line
    # a node's readings going back in time (a clock step, logs joined out of order: they were sorted silently)
    line = _refused(_log(f, ["1,pi-1,3", "2,pi-2,5", "3,pi-1,3", "2.5,pi-1,4"]))
    assert "reading 4 (node 'pi-1', time_s 2.5, power_w 4) is earlier than reading 3 of the same node" in line
    # an empty node (read as the node 'nan'), a header without readings, -5 V x -1 A (read as +5 W)
    assert "reading 2 (node nan, time_s 2, power_w 3): node is empty" in _refused(_log(f, ["1,pi-1,3", "2,,3"]))
    assert "no readings" in _refused(_log(f, []))
    line = _refused(_log(f, ["1,pi-1,5,1", "2,pi-1,-5,-1"], "time_s,node,volts,amps"))
    assert "reading 2 (time_s 2, volts -5, amps -1)" in line and "volts and amps >= 0" in line
    # an exact repeat is left out, said in one line; a node's name is what the log has around spaces
    said: list[str] = []
    log = read_power_log(_log(f, ["1,pi-1 ,3", "1,pi-1,3", "1,pi-1,3", "2, pi-1,4"]), warn=said.append)
    assert log.node.tolist() == ["pi-1", "pi-1"] and log.time_s.tolist() == [1, 2] and log.power_w.tolist() == [3, 4]
    assert said == [f"{f}: 2 readings repeating the node's previous reading exactly (same time and power) left out, "
                    "first reading 2 (node 'pi-1', time_s 1, power_w 3)"]  # fmt: skip


def test_a_log_is_checked_against_the_run(run, tmp_path):
    t0, t1, rounds = run_window(run)
    a, b = t0 - 5, t1 + 5
    f = _log(tmp_path / "meter.csv", [*_every("local", 3.0, a, b), *_every("pi-9", 100.0, a, b), f"{t0},lonely,5",
                                      f"{t0},pi-2,4"])  # fmt: skip
    said: list[str] = []
    m = measured(run, read_power_log(f), warn=said.append)
    # only the run's hosts: pi-9 (100 W) was listed and summed into every round; pi-2's one reading was dropped
    assert m.by_node_j == {"local": pytest.approx(3.0 * (t1 - t0))}
    for r in rounds.itertuples():
        assert m.per_round_j[int(r.round)] == pytest.approx(3.0 * (r.end_s - r.start_s))
    assert said == m.warnings and len(said) == 3 and all("\n" not in line for line in said)
    assert said[0].startswith(f"{f}: readings of nodes that are not hosts of the run left out ('lonely': 1 from "
                              "reading")  # fmt: skip
    n = len(_every("pi-9", 100.0, a, b))
    assert f"'pi-9': {n} from" in said[0] and said[0].endswith("the run's hosts: 'local', 'pi-2'")
    assert said[1].startswith(f"{f}: node 'pi-2': one reading (reading ") and said[1].endswith(": left out")
    assert said[2] == f"{f}: no measured energy for the run's hosts 'pi-2': the per-round sums are of 'local' only"

    unmeasured = "no host of the run can be measured: node 'local'"
    for rows, expected in (([*_every("pi-9", 3.0, a, b)], "no reading is of a host of the run"),
                           ([f"{t * 1000:.0f},local,3" for t in (a, b)], f"{unmeasured}: its 2 readings (reading 1 at"),
                           ([f"{t0},local,3"], f"{unmeasured}: one reading")):  # fmt: skip
        with pytest.raises(UserError) as info:
            measured(run, read_power_log(_log(f, rows)), warn=pytest.fail)
        assert len(info.value.lines) == 1 and expected in info.value.lines[0], info.value.lines

    # a stray reading long before the run: the power around it is interpolated over the gap, and that is said
    said.clear()
    m = measured(run, read_power_log(_log(f, ["0,local,3", *_every("local", 3.0, t0 + 0.05, b)])), warn=said.append)
    assert m.by_node_j["local"] == pytest.approx(3.0 * (t1 - t0))
    assert any("node 'local' has no reading for" in line and "reading 1 at 0.000, then reading 2" in line
               for line in said), said  # fmt: skip


def test_cli_measures_only_the_runs_hosts(run, pqtwin, tmp_path):
    t0, t1, _ = run_window(run)
    a, b = t0 - 5, t1 + 5
    rows = [*_every("local", 3.0, a, b), *_every("pi-2", 4.0, a, b), *_every("pi-9", 100.0, a, b), f"{t0},lonely,5"]
    res = pqtwin("hw", "energy", str(run), "--power-log", str(_log(tmp_path / "m.csv", rows)))
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "'pi-9'" in warned[0] and "'lonely'" in warned[0] and "left out" in warned[0]
    assert "pi-9" not in res.stdout and "lonely" not in res.stdout and "pi-2" in res.stdout
    out = json.loads((run / "energy_measured.json").read_text())
    assert set(out["by_node_j"]) == {"local", "pi-2"} and out["warnings"] == [warned[0].removeprefix("warning: ")]
    # the repro: two readings of 'local' at each instant, 3 W and 9 W
    rows = [f"{t:.3f},local,{w}" for t in (a, t0, b) for w in (3.0, 9.0)]
    res = pqtwin("hw", "energy", str(run), "--power-log", str(_log(tmp_path / "m.csv", rows)))
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "reading 2 (node 'local'" in res.stderr and "same instant with different power" in res.stderr
