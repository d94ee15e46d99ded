"""`pqtwin compare --at-speed` (hw/at_speed.py): the simulated run again on cores as fast as the measured runs' speed
probe read them. The simulator's own run stands in for the twin's here, its summary saying it was measured on the
local backend at a given speed: the model as simulated then agrees with it, and at half the speed it does not, by
about what halving the cores' speed costs a round."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hw.at_speed import MIN_OFF, at_measured_speed, measured_speed, measured_training
from hw.trainprobe import PROBE_PARAMETERS, PROBE_SAMPLES
from pqtwin.cli import app as cli_app
from sim.contract import CpuSpeed, MachineLoad, RunLayout, TrainingProbe, read_summary, write_summary
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"


@pytest.fixture(scope="module")
def sim_run_1m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated run of a model of the training probe's size, whose training the probe's ratio prices."""
    out = tmp_path_factory.mktemp("at-speed-1m") / "sim"
    s = load_scenario(ROOT / "scenarios" / "localhost.yaml", ["workload.fl.rounds=4",
                                                              f"workload.fl.model_parameters={PROBE_PARAMETERS}"],
                      PROFILE)  # fmt: skip
    write_run(simulate(s, "sequential", 7, 3), out, s)
    return out


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("at-speed") / "sim"
    s = load_scenario(ROOT / "scenarios" / "localhost.yaml", ["workload.fl.rounds=4"], PROFILE)
    write_run(simulate(s, "sequential", 7, 3), out, s)
    return out


def measured(sim_run: Path, out: Path, speed: float | None, backend: str = "local", step_s: float | None = None,
             parameters: int = PROBE_PARAMETERS) -> Path:  # fmt: skip
    """A copy of the simulated run that says it was measured on ``backend``, its cores at ``speed`` x their
    calibration (None: not probed), its training probe's step alone ``step_s`` (None: not probed)."""
    shutil.copytree(sim_run, out)
    probe = None if speed is None else CpuSpeed(probe_us_p10=40 / speed, probe_us_p50=40 / speed,
                                                   probe_us_p90=40 / speed, samples=50)  # fmt: skip
    step = None if step_s is None else TrainingProbe(parameters=parameters, samples=PROBE_SAMPLES, alone_s=step_s,
                                                       steps=3)  # fmt: skip
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0, foreign_cpu_cores=0.0,
                       steal_fraction=0.0, quiet=False, calibrated_probe_us=40.0, cpu_speed=probe,
                       training_probe=step)  # fmt: skip
    summary = read_summary(RunLayout(out).summary)
    write_summary(summary.model_copy(update={"backend": backend, "state": "completed", "machine_load": load}), out)
    return out


def test_the_model_at_half_the_speed_is_the_model_on_cores_half_as_fast(sim_run: Path, tmp_path: Path) -> None:
    """At 0.5x the simulated rounds take longer by the crypto and code paths' share (training and FedAvg keep their
    price), so against the run as simulated the error at speed is large and positive; the plain error stays 0."""
    hw = measured(sim_run, tmp_path / "hw", 0.5)
    assert measured_speed([hw]) == pytest.approx(0.5)
    got = at_measured_speed(sim_run, [hw])
    assert "not_simulated" not in got
    assert got["speed"] == pytest.approx(0.5)
    assert 15 < got["error_p50_pct"] < 100 and got["error_p50_ci95"][0] > 0
    assert got["sim_p50_s"] > read_summary(RunLayout(sim_run).summary).round_latency_s.p50
    again = at_measured_speed(sim_run, [hw])  # the same seed and replications: the same simulation
    assert again == got


def test_nothing_at_speed_where_the_speed_is_unknown_near_one_or_of_a_cluster(sim_run: Path, tmp_path: Path) -> None:
    """Asked for, it says in one line why there is nothing to simulate again."""
    unknown = [measured(sim_run, tmp_path / "none", None), measured(sim_run, tmp_path / "k8s", 0.5, "k8s"), sim_run]
    for hw in unknown:  # not probed; a cluster's run; a simulation given as the measured run
        got = at_measured_speed(sim_run, [hw])
        assert got["speed"] is None and "no speed probe" in got["not_simulated"]
    near = at_measured_speed(sim_run, [measured(sim_run, tmp_path / "near", 1 - MIN_OFF / 2)])
    assert near["speed"] == pytest.approx(1 - MIN_OFF / 2) and "within 5%" in near["not_simulated"]
    from pqtwin.tables import _at_speed

    assert _at_speed(None) == ""
    assert _at_speed(near).startswith("; not simulated at the measured speed (0.97x): the measured runs' cores")
    assert _at_speed(got).startswith("; not simulated at the measured speed: the measured runs carry no speed probe")


@pytest.mark.parametrize("damage", ["profile gone", "profile garbled", "scenario gone", "host at another speed"])
def test_a_simulated_run_that_cannot_run_again_is_one_line_not_a_failure(
    sim_run: Path, tmp_path: Path, damage: str
) -> None:
    sim = tmp_path / "sim"
    shutil.copytree(sim_run, sim)
    layout = RunLayout(sim)
    profile = next((sim / RunLayout.PROFILES).glob("*.yaml"))
    if damage == "profile gone":
        profile.unlink()
    elif damage == "profile garbled":
        profile.write_text("ops: [1, 2\n")
    elif damage == "scenario gone":
        layout.scenario.unlink()
    else:
        data = yaml.safe_load(layout.scenario.read_text())
        data["deployment"]["hosts"][0]["cpu_speed"] = 2.0
        layout.scenario.write_text(yaml.safe_dump(data))
    got = at_measured_speed(sim, [measured(sim_run, tmp_path / "hw", 0.5)])
    assert got["speed"] == pytest.approx(0.5)
    assert set(got) == {"speed", "training_ratio", "not_simulated"}
    assert got["not_simulated"] and "\n" not in got["not_simulated"] and "Traceback" not in got["not_simulated"]
    if damage == "host at another speed":
        assert "cpu_speed" in got["not_simulated"]


def test_compare_at_speed_puts_it_in_the_fidelity_line_and_compare_json(sim_run: Path, tmp_path: Path) -> None:
    hw = measured(sim_run, tmp_path / "hw", 0.5)
    runner = CliRunner()
    plain = runner.invoke(cli_app, ["compare", str(sim_run), str(hw)])
    assert plain.exit_code == 0, plain.output
    assert "measured speed" not in plain.output
    assert "model_at_measured_speed" not in json.loads((hw / "compare" / "compare.json").read_text())
    res = runner.invoke(cli_app, ["compare", str(sim_run), str(hw), "--at-speed", "--force"])
    assert res.exit_code == 0, res.output
    at = json.loads((hw / "compare" / "compare.json").read_text())["model_at_measured_speed"]
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("fidelity: round latency error p50 ")
    assert f"simulated at the measured speed (0.50x): p50 {at['error_p50_pct']:+.1f}" in last


def probed_profile(sim_run: Path, out: Path, step_s: float | None, parameters: int = PROBE_PARAMETERS) -> Path:
    """A copy of the simulated run whose profiles recorded the training probe's step alone ``step_s``."""
    shutil.copytree(sim_run, out)
    for f in (out / RunLayout.PROFILES).glob("*.yaml"):
        data = yaml.safe_load(f.read_text())
        if step_s is not None:
            data["platform"] |= {"training_probe_s": step_s, "training_probe_parameters": parameters,
                                 "training_probe_samples": PROBE_SAMPLES}  # fmt: skip
        f.write_text(yaml.safe_dump(data))
    return out


def test_training_is_priced_by_the_runs_training_probe_against_the_profiles(
    sim_run_1m: Path, sim_run: Path, tmp_path: Path
) -> None:
    """Runs of a 1 M model whose step alone read 1.5x the profile's: simulated again with training 1.5x dearer, so the
    rounds take longer than at the speed alone -- and at the calibrated speed, the training state alone is reason
    enough. A 250 k model's training is not priced by it (its step stays in the caches)."""
    sim = probed_profile(sim_run_1m, tmp_path / "sim", 0.040)
    speed_only = at_measured_speed(sim, [measured(sim_run_1m, tmp_path / "plain", 0.5)])
    assert speed_only["training_ratio"] is None
    dearer = measured(sim_run_1m, tmp_path / "dearer", 0.5, step_s=0.060)
    assert measured_training(sim, [dearer]) == pytest.approx(1.5)
    got = at_measured_speed(sim, [dearer])
    assert got["training_ratio"] == pytest.approx(1.5)
    assert got["error_p50_pct"] > speed_only["error_p50_pct"] + 3  # training is a good part of a round here
    calibrated = at_measured_speed(sim, [measured(sim_run_1m, tmp_path / "at-one", 1.0, step_s=0.060)])
    assert "not_simulated" not in calibrated and calibrated["error_p50_pct"] > 3
    same = at_measured_speed(sim, [measured(sim_run_1m, tmp_path / "same", 1.0, step_s=0.041)])
    small = probed_profile(sim_run, tmp_path / "small", 0.040)  # 250 k: its step stays in the caches
    assert measured_training(small, [measured(sim_run, tmp_path / "small-hw", 0.5, step_s=0.060)]) is None
    assert same["training_ratio"] == pytest.approx(1.025) and "within 5%" in same["not_simulated"]
    from pqtwin.tables import _at_speed

    assert "(0.50x, training 1.50x its price): p50 " in _at_speed(got)


def test_no_training_state_where_a_run_or_the_profile_lacks_the_probe_or_they_probed_different_steps(
    sim_run_1m: Path, tmp_path: Path
) -> None:
    probed = probed_profile(sim_run_1m, tmp_path / "probed", 0.040)
    plain = probed_profile(sim_run_1m, tmp_path / "plain", None)
    other = probed_profile(sim_run_1m, tmp_path / "other", 0.040, parameters=2 * PROBE_PARAMETERS)
    with_step = measured(sim_run_1m, tmp_path / "with", 0.5, step_s=0.060)
    without = measured(sim_run_1m, tmp_path / "without", 0.5)
    assert measured_training(probed, [with_step]) == pytest.approx(1.5)
    assert measured_training(probed, [with_step, without]) is None  # one run did not record it
    assert measured_training(plain, [with_step]) is None
    assert measured_training(other, [with_step]) is None
    two = probed_profile(sim_run_1m, tmp_path / "two", 0.040)  # a second profile with another probe: which one is it?
    profile = next((two / RunLayout.PROFILES).glob("*.yaml"))
    data = yaml.safe_load(profile.read_text())
    data["platform"]["training_probe_s"] = 0.050
    (profile.parent / "other-host.yaml").write_text(yaml.safe_dump(data))
    assert measured_training(two, [with_step]) is None
    fifo = probed_profile(sim_run_1m, tmp_path / "fifo", 0.040)
    os.mkfifo(fifo / RunLayout.PROFILES / "zz-fifo.yaml")  # refused unopened, not waited on
    assert measured_training(fifo, [with_step]) is None
    assert "FIFO" in at_measured_speed(fifo, [with_step])["not_simulated"]  # simulating again: one line, not a hang
    garbled = probed_profile(sim_run_1m, tmp_path / "garbled", 0.040)
    next((garbled / RunLayout.PROFILES).glob("*.yaml")).write_text("platform: [1, 2\n")
    assert measured_training(garbled, [with_step]) is None
    assert "not_simulated" in at_measured_speed(garbled, [with_step])  # the simulation's one line says why


def test_a_measured_run_never_at_speed_says_so_in_words() -> None:
    """`make run` in the host's slow state warned "round_latency_at_speed_s: no values in the measured run": the
    probe's samples were there, every round ran slow. Now the reason says that."""
    from hw.compare import AT_SPEED, METRICS, _compared

    values = (np.array([0.05, 0.06]), np.array([0, 0]))
    none = (np.array([]), np.array([], dtype=np.int64))
    sim_v = {name: values for name in METRICS}
    hw_v = {name: values for name in METRICS} | {AT_SPEED: none}
    warnings: list[str] = []
    metrics, not_compared = _compared(sim_v, hw_v, 1, warnings)
    assert AT_SPEED not in metrics and "round_latency_s" in metrics
    why = "no measured round ran with every core at the calibration's speed"
    assert not_compared[AT_SPEED] == why and warnings == [f"{AT_SPEED}: {why}"]


def test_a_half_of_a_simulation_of_rounds_in_turn_is_simulated_again_as_that_run(tmp_path: Path) -> None:
    """``pqtwin sim --mode both --rounds-in-turn`` writes halves of one alternating run: at speed, the run simulated
    again is that alternating run, split as it was, so the half's rounds at 0.5x are the alternating run's at 0.5x --
    not a run of the half's mode alone, whose connections no other mode's rounds aged."""
    from hw.compare import compare_dirs
    from hw.fit import memory_at_price
    from sim.alternating import split
    from sim.profile import write_profile
    from sim.runner import ALTERNATING

    s = load_scenario(ROOT / "scenarios" / "localhost.yaml", ["workload.fl.rounds=8"], PROFILE)
    whole = tmp_path / "turn"
    write_run(simulate(s, ALTERNATING, 7, 2), whole, s)
    split(whole)
    half = whole / "concurrent"
    hw = measured(half, tmp_path / "hw", 0.5)
    got = at_measured_speed(half, [hw])
    assert "not_simulated" not in got and got["speed"] == pytest.approx(0.5)

    def again(mode: str, out: Path) -> float:  # as hw/at_speed.py prices it, by hand
        shutil.copytree(whole, out)
        for f in (out / RunLayout.PROFILES).glob("*.yaml"):
            write_profile(memory_at_price(yaml.safe_load(f.read_text()), 0.5, 1.0), f)
        slow = load_scenario(out / "scenario.yaml", ["deployment.hosts.*.cpu_speed=0.5"])
        write_run(simulate(slow, mode, 7, 2), out / "run", slow)
        if mode == ALTERNATING:
            split(out / "run")
        d = out / "run" / ("concurrent" if mode == ALTERNATING else "")
        return float(compare_dirs(d, hw)["metrics"]["round_latency_s"]["sim_p50"])

    assert got["sim_p50_s"] == pytest.approx(again(ALTERNATING, tmp_path / "turn-again"), rel=1e-12)
    assert got["sim_p50_s"] != pytest.approx(again("concurrent", tmp_path / "alone"), rel=1e-6)
