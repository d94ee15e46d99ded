"""The Learn page's Mosca and key-establishment steps and the Twin page's pairing of runs, through AppTest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app_pages import learn
from sim import catalogue
from sim.contract import RECORD_HEADER_BYTES, read_summary, write_summary
from sim.runner import simulate, write_run
from sim.scenario import load_scenario
from sim.units import fmt_bytes
from tests.test_app import assert_clean, start

ROOT = Path(__file__).resolve().parents[1]
EXPOSED = "exposed: readable while<br>still meant to be secret"  # the Mosca chart's exposure bar


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def number_bytes(text: str) -> float:
    """fmt_bytes's text back to bytes (B, kB, MB)."""
    value, unit = text.split()
    return float(value.replace(",", "")) * {"B": 1, "kB": 1e3, "MB": 1e6}[unit]


def learn_step(i: int):
    at = start("Learn")
    at.radio(key="learn_step").set_value(learn.STEPS[i]).run()
    assert_clean(at)
    return at


def test_primitives_per_session_frame_pays_only_the_aead_record():
    at = learn_step(1)
    at.select_slider(key="learn_size").set_value(100).run()
    assert_clean(at)
    assert at.radio(key="learn_keying").value == learn.PER_SESSION  # a telemetry frame's default
    # what the channel adds to every record: its header and the AEAD tag (the nonce is never sent)
    record = RECORD_HEADER_BYTES + catalogue.get("AES-256-GCM").aead_overhead_bytes
    m = metrics(at)
    assert m["Per-frame overhead (record header + AEAD tag)"] == fmt_bytes(record)
    per_message = number_bytes(m["Per-message overhead, fresh KEM + signature (post-quantum)"])
    kem, sig = catalogue.get("ML-KEM-768"), catalogue.get("ML-DSA-65")
    assert per_message == pytest.approx(record + kem.ciphertext_bytes + sig.signature_bytes, rel=0.01)
    assert per_message > 50 * record
    assert any("3,600 frames" in md.value for md in at.markdown)  # a 1 s frame period, hourly sessions
    # per message, the frame carries a KEM ciphertext and a signature again
    at.radio(key="learn_keying").set_value(learn.PER_MESSAGE).run()
    assert_clean(at)
    m = metrics(at)
    assert "Per-frame overhead (record header + AEAD tag)" not in m
    assert number_bytes(m["Signature + KEM ciphertext (post-quantum)"]) == pytest.approx(per_message - record, 0.01)


def test_threat_mosca_sliders_change_the_verdict():
    at = learn_step(0)
    # exposed x + y − z years when positive; each slider alone tips the verdict
    for x, y, z in [(25, 5, 15), (10, 5, 15), (10, 6, 15), (10, 6, 16), (0, 20, 1), (1, 0, 1)]:
        at.slider(key="learn_years").set_value(x).run()
        at.slider(key="learn_migration").set_value(y).run()
        at.slider(key="learn_quantum").set_value(z).run()
        assert_clean(at)
        exposed = x + y - z
        if exposed > 0:
            assert not at.success
            verdict = [w.value for w in at.warning]
            assert len(verdict) == 1 and f"x + y = {x + y} > z = {z}" in verdict[0]
            assert f"readable for {exposed} year{'s' * (exposed != 1)} " in verdict[0]
        else:
            assert not at.warning
            verdict = [s.value for s in at.success]
            assert len(verdict) == 1 and f"x + y = {x + y} ≤ z = {z}: safe" in verdict[0]
        bars = {t["y"][0]: (t["base"][0], t["x"][0]) for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
        assert bars["y · migration to PQC"] == (0, y)
        assert bars[EXPOSED] == (z, max(0, exposed))  # the highlighted part: from z to x + y
    assert any("not a forecast" in c.value and "IEEE Security & Privacy 16(5), 2018" in c.value for c in at.caption)


def make_runs(root: Path, *more: str) -> Path:
    """Simulated runs of localhost (sequential and concurrent; ``more`` overrides) and of paper-3node (sequential),
    and two stand-ins for measured runs (the simulator with another seed, marked as the twin's): localhost
    sequential, which has a simulated counterpart, and paper-3node concurrent, which has none."""
    local = load_scenario(ROOT / "scenarios" / "localhost.yaml", ["workload.fl.rounds=3", *more])
    paper = load_scenario(ROOT / "scenarios" / "paper-3node.yaml", ["workload.fl.rounds=3"])
    write_run(simulate(local, "sequential", 1, 1), root / "localhost-sim", local)
    write_run(simulate(local, "concurrent", 1, 1), root / "localhost-sim-concurrent", local)
    write_run(simulate(paper, "sequential", 1, 1), root / "paper-sim", paper)
    for name, scenario, mode in (("localhost-hw", local, "sequential"), ("paper-hw", paper, "concurrent")):
        write_run(simulate(scenario, mode, 99, 1), root / name, scenario)
        summary = read_summary(root / name / "summary.json")
        write_summary(summary.model_copy(update={"backend": "local", "state": "completed"}), root / name)
    return root


def test_twin_offers_only_runs_of_the_same_scenario_and_mode(tmp_path, monkeypatch):
    runs = make_runs(tmp_path / "runs")
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(runs))
    at = start("Twin")
    hw = at.selectbox(key="tw_hw")
    assert [o.split(" — ")[0] for o in hw.options] == ["localhost-hw", "paper-hw"]
    hw.set_value(str(runs / "localhost-hw")).run()
    assert_clean(at)
    sims = at.selectbox(key=f"tw_sim_{runs / 'localhost-hw'}").options
    assert [o.split(" — ")[0] for o in sims] == ["localhost-sim"]  # not the concurrent run, not paper-3node
    assert "Round latency: error" in metrics(at) and at.dataframe
    assert "nan" not in at.dataframe[0].value.to_string().lower()
    # paper-3node in concurrent mode: only a sequential simulation of it exists, so nothing is compared
    at.selectbox(key="tw_hw").set_value(str(runs / "paper-hw")).run()
    assert_clean(at)
    info = [i.value for i in at.info if "No simulated run" in i.value]
    assert info and "'paper-3node'" in info[0] and "concurrent mode" in info[0]
    assert "pqtwin sim scenarios/paper-3node.yaml --mode concurrent --out " in info[0]
    assert f"{runs}/paper-sim`" not in info[0]  # paper-sim is taken (sequential): the command names a new one
    assert f"{runs}/paper-concurrent-sim" in info[0]
    assert not at.metric and not at.dataframe and not at.get("plotly_chart")


def test_twin_simulates_again_at_the_measured_speed_on_request(tmp_path, monkeypatch):
    """A measured run whose cores ran at half their calibrated speed: the page offers the model again at that speed
    (``pqtwin compare --at-speed``); asked, it shows that error beside the plain one, which it leaves as it was. A run
    at its calibrated speed is offered nothing."""
    from sim.contract import CpuSpeed, MachineLoad

    runs = make_runs(tmp_path / "runs")
    hw = runs / "localhost-hw"
    probe = CpuSpeed(probe_us_p10=80.0, probe_us_p50=80.0, probe_us_p90=80.0, samples=20)  # 0.5x of 40 us
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0, foreign_cpu_cores=0.0,
                       steal_fraction=0.0, quiet=False, calibrated_probe_us=40.0, cpu_speed=probe)  # fmt: skip
    write_summary(read_summary(hw / "summary.json").model_copy(update={"machine_load": load}), hw)
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(runs))
    at = start("Twin")
    at.selectbox(key="tw_hw").set_value(str(hw)).run()
    assert_clean(at)
    plain = metrics(at)["Round latency: error"]
    toggle = at.toggle(key="tw_at_speed")
    assert "0.50×" in toggle.label and not toggle.value
    assert "Round latency p50: error at 0.50×" not in metrics(at)
    toggle.set_value(True).run()
    assert_clean(at)
    got = metrics(at)
    assert metrics(at)["Round latency: error"] == plain
    at_half = float(got["Round latency p50: error at 0.50×"].split()[0])
    assert at_half > 15  # the model on cores half as fast: slower than the run it was simulated as
    fast = load.model_copy(update={"cpu_speed": probe.model_copy(update={"probe_us_p50": 41.0})})  # 0.98x
    write_summary(read_summary(hw / "summary.json").model_copy(update={"machine_load": fast}), hw)
    at = start("Twin")
    at.selectbox(key="tw_hw").set_value(str(hw)).run()
    assert_clean(at)
    assert not [t for t in at.toggle if t.key == "tw_at_speed"]
    # at that speed, but its training probe read 1.5x the profile's: offered (a 1 M model), priced by the ratio
    import yaml

    from sim.contract import TrainingProbe

    runs = make_runs(tmp_path / "runs-1m", "workload.fl.model_parameters=1000000")
    hw = runs / "localhost-hw"
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(runs))
    for f in (runs / "localhost-sim" / "profiles").glob("*.yaml"):
        data = yaml.safe_load(f.read_text())
        data["platform"] |= {"training_probe_s": 0.04, "training_probe_parameters": 1_000_000,
                             "training_probe_samples": 500}  # fmt: skip
        f.write_text(yaml.safe_dump(data))
    step = TrainingProbe(parameters=1_000_000, samples=500, alone_s=0.06, steps=3)
    write_summary(read_summary(hw / "summary.json").model_copy(
        update={"machine_load": fast.model_copy(update={"training_probe": step})}), hw)  # fmt: skip
    at = start("Twin")
    at.selectbox(key="tw_hw").set_value(str(hw)).run()
    toggle = at.toggle(key="tw_at_speed")
    assert "training step 1.50× its price" in toggle.help
    toggle.set_value(True).run()
    assert_clean(at)
    assert any("training at 1.50× its price" in c.value for c in at.caption)
