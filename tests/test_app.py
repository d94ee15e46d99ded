"""The Streamlit app (app.py) through streamlit.testing.v1.AppTest: every page renders without an exception or
an unintended error, changing a control changes the results, and invalid combinations give one-line errors.
Also the app's scenario edits (number of nodes, devices per class) against the simulator's own checks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from app_pages import library
from app_pages.scenario_edit import build_data, device_totals
from sim.contract import read_summary, write_summary
from sim.runner import simulate, write_run
from sim.scenario import load_scenario, load_scenario_data

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAPER = ROOT / "scenarios" / "paper-3node.yaml"
TIMEOUT = 60


def make_runs(root: Path) -> Path:
    """Two small run directories for the Twin page: a simulated run and a stand-in 'measured' one.

    The stand-in is the simulator with another seed, labelled as a local twin run (``backend: local``, the
    twin's marker), so the page's comparison has something to compare without running hardware.
    """
    scenario = load_scenario(ROOT / "scenarios" / "localhost.yaml", ["workload.fl.rounds=5"])
    write_run(simulate(scenario, "sequential", 1, 2), root / "localhost-sim", scenario)
    write_run(simulate(scenario, "concurrent", 1, 2), root / "localhost-sim-concurrent", scenario)
    hw = root / "localhost-hw"
    write_run(simulate(scenario, "sequential", 99, 1), hw, scenario)
    summary = read_summary(hw / "summary.json").model_copy(update={"backend": "local", "state": "completed"})
    write_summary(summary, hw)
    return root


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.sidebar.radio(key="page").set_value(page).run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest, errors: int = 0) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == errors, [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def shape(z: dict | list) -> tuple[int, ...]:
    """Shape of a Plotly array (plotly ≥ 6 sends numeric arrays base64-encoded with their shape)."""
    if isinstance(z, dict):
        return tuple(int(n) for n in z["shape"].split(","))
    return (len(z), len(z[0]))


# --------------------------------------------------------------------------------------------- pages


def test_explore_renders_kpis_charts_and_downloads():
    at = start()
    m = metrics(at)
    assert m["Round latency"].endswith(" ms") and m["Model distribution"].endswith(" ms")
    assert {"Crypto share", "Application bytes", "Busiest host"} <= set(m)
    # energy: the Pi 4 profile's power model per FL round, and the patches' battery life (radio + sleep here)
    assert m["Energy per FL round"].endswith(" J") and m["Battery life, ecg-a"].endswith("days")
    figs = figures(at)
    assert len(figs) == 5  # phases, latency distribution, Gantt, topology, the start-up storm
    storm = figs[4]
    assert storm["layout"]["title"]["text"].startswith("Start-up storm")
    assert max(storm["data"][0]["y"]) >= 1  # the patches' first handshakes were under way
    up = seconds(m["All devices up after a start"])
    notes = [float(a["text"].split()[2]) for a in storm["layout"]["annotations"] if a["text"].startswith("all up")]
    assert 0 < up < 3 and len(notes) == 1 and notes[0] == pytest.approx(up, abs=0.01)
    hist = figs[1]
    # the paper's rounds (~0.5 s) stay below 0.6 × 1.5 s: the 1.5 s line is a note, it does not stretch the axis
    assert not hist["layout"].get("shapes")
    assert any("1.5 s line off scale" in a["text"] for a in hist["layout"]["annotations"])
    assert [b.label for b in at.get("download_button")] == ["Scenario (YAML)", "KPIs (CSV)", "Spans (CSV)"]
    assert any("95 % CI [" in c.value for c in at.caption)
    assert not any("nan" in c.value.split() for c in at.caption)


UNITS_S = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """A duration as the app shows it (sim/units.py fmt_seconds) back in seconds."""
    value, unit = text.split()
    return float(value.replace(",", "")) * UNITS_S[unit]


def test_explore_controls_change_results():
    at = start()
    before = metrics(at)["Round latency"]
    at.selectbox(key="ex_signature_paper-3node").set_value("SLH-DSA-SHA2-128f").run()
    assert_clean(at)
    slh = metrics(at)["Round latency"]
    assert slh != before
    at.selectbox(key="ex_signature_paper-3node").set_value("ML-DSA-65").run()
    assert metrics(at)["Round latency"] == before  # cached, same seed: identical
    at.select_slider(key="ex_model_paper-3node").set_value(1_000_000).run()
    big = metrics(at)["Round latency"]
    assert_clean(at)
    assert seconds(big) > seconds(before)
    at.slider(key="ex_nodes_paper-3node").set_value(5).run()
    assert_clean(at)
    topo = figures(at)[3]
    hosts = next(t for t in topo["data"] if t.get("name") == "host")
    assert len(hosts["x"]) == 5
    sequential = figures(at)[2]
    at.radio(key="ex_mode_paper-3node").set_value("concurrent").run()
    assert_clean(at)
    assert figures(at)[2]["data"] != sequential["data"], "the timeline shows the concurrent round"


def test_controls_survive_page_switches():
    at = start()
    at.select_slider(key="ex_model_paper-3node").set_value(100_000).run()
    value = metrics(at)["Round latency"]
    at.sidebar.radio(key="page").set_value("Learn").run()
    at.sidebar.radio(key="page").set_value("Explore").run()
    assert_clean(at)
    assert at.select_slider(key="ex_model_paper-3node").value == 100_000
    assert metrics(at)["Round latency"] == value


LOCAL = "this machine, runs/local-profile.yaml (every host)"


def partial_profile(runs: Path, without: tuple[str, ...]) -> Path:
    """runs/local-profile.yaml as a calibration without these algorithms would write it (e.g. no liboqs here)."""
    data = yaml.safe_load((ROOT / "scenarios" / "profiles" / "ci-x86.yaml").read_text())
    data["ops"] = {op: v for op, v in data["ops"].items() if op.split(".")[0] not in without}
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "local-profile.yaml").write_text(yaml.safe_dump(data))
    return runs


def test_explore_invalid_combination_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(partial_profile(tmp_path / "runs", ("Falcon-512",))))
    at = start()
    at.selectbox(key="ex_scenario").set_value(ROOT / "scenarios" / "localhost.yaml").run()
    assert_clean(at)
    at.selectbox(key="ex_profile_localhost").set_value(LOCAL).run()
    assert_clean(at)
    at.selectbox(key="ex_signature_localhost").set_value("Falcon-512").run()
    assert_clean(at, errors=1)
    msg = at.error[0].value
    assert "Falcon-512.keygen" in msg and "deployment.hosts[0].profile" in msg
    assert "Traceback" not in msg and str(ROOT) not in msg
    assert not figures(at) and not at.metric


@pytest.mark.usefixtures("app_isolated")
def test_explore_devices_and_network_edits():
    """ward-200's devices and network, over 5 minutes and one replication: the page's edits are what is tested
    (its hour and five replications, three times over, were 49 s of the suite)."""
    ward = ROOT / "scenarios" / "ward-200.yaml"
    data = build_data(ward)
    data["name"] = "ward-short"
    data["run"].update(horizon_s=300, replications=1)
    file = library.upload("ward-short.yaml", yaml.safe_dump(data).encode(), ward)
    at = start()
    at.selectbox(key="ex_scenario").set_value(file).run()
    assert_clean(at)
    before = metrics(at)["Application bytes"]
    at.number_input(key="ex_dev_ecg-3lead_saved-ward-short").set_value(40).run()
    assert_clean(at)
    assert metrics(at)["Application bytes"] != before
    at.selectbox(key="ex_net_saved-ward-short").set_value("wifi-5ghz").run()
    assert_clean(at)
    assert any("--set 'deployment.network.links.0.preset=wifi-5ghz'" in c.value for c in at.code)


def test_compare_suites_table_and_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(partial_profile(tmp_path / "runs", ("SLH-DSA-SHA2-128s",))))
    at = start("Compare suites")
    table = at.table[0].value
    assert list(table.suite) == ["Classical", "PQC L3", "PQC L5", "Hybrid L3"]
    sizes = at.dataframe[0].value.set_index("suite")
    assert sizes.loc["PQC L3", "signature (B)"] == 3309 and sizes.loc["Classical", "signature (B)"] == 64
    assert len(figures(at)) == 3  # latency, sizes, energy
    energy = table.set_index("suite")["energy / round"]
    assert all(e.endswith(" J") for e in energy)  # the Pi 4 profile's power model
    assert not table.isin(["nan", "None"]).any().any()
    assert table.set_index("suite").loc["Classical", "Δ round"] == "±0"  # against the first suite by default
    at.multiselect(key="cs_suites").select("PQC SLH-DSA").run()
    assert_clean(at)
    table = at.table[0].value.set_index("suite")
    assert seconds(table.loc["PQC SLH-DSA", "round latency"]) > seconds(table.loc["PQC L3", "round latency"])
    assert table.loc["PQC SLH-DSA", "Δ round"].startswith("+")
    # a suite the host profile cannot price is listed as not simulated, the rest still compare
    at.selectbox(key="cs_scenario").set_value(ROOT / "scenarios" / "localhost.yaml").run()
    at.selectbox(key="cs_profile").set_value(LOCAL).run()
    assert_clean(at)
    assert any("PQC SLH-DSA" in w.value and "no cost for" in w.value for w in at.warning)
    assert "PQC SLH-DSA" not in set(at.table[0].value.suite)


def _sweep_job(at: AppTest) -> dict:
    job = at.session_state["sw_job"]
    assert job is not None and job["proc"].poll() is None
    return job


def test_sweep_runs_on_the_engine_in_the_background_and_shows_its_results(tmp_path, monkeypatch):
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(tmp_path))
    at = start()
    at.button(key="ex_pin").click().run()  # a baseline pinned on Explore is a reference line on the sweep's charts
    at.sidebar.radio(key="page").set_value("Sweep").run()
    assert any("20 runs × 2 replications" in m.value and "estimated" in m.value for m in at.markdown)
    assert figures(at) == []  # nothing has run yet
    at.button(key="sw_run").click().run()
    job = _sweep_job(at)  # a `pqtwin sweep run` process of its own, the page stays responsive
    deadline = time.monotonic() + 180
    while job["proc"].poll() is None:  # the open page: its progress fragment keeps the heartbeat fresh
        assert time.monotonic() < deadline
        at.run()
        time.sleep(0.5)
    assert job["proc"].returncode == 0, job["log"].read_text()
    at.run()
    assert_clean(at)
    figs = figures(at)
    assert len(figs) == 4  # heatmap, main effects, sensitivity, Pareto front
    z = figs[0]["data"][0]["z"]
    assert shape(z) == (5, 4)  # model 50 k..1 M (y) × nodes 2..5 (x): the nodes axis comes first
    assert "20 runs" in figs[0]["layout"]["title"]["text"]
    line = [sh for sh in figs[1]["layout"]["shapes"] if sh.get("line", {}).get("dash") == "dot"]
    base = at.session_state["baseline"].result.summary.round_latency_s.mean
    assert line and line[0]["y0"] == pytest.approx(base * 1e3)
    assert any("Dotted line: the baseline pinned on Explore" in c.value for c in at.caption)
    assert (job["out"] / "results.parquet").exists() and not job["heartbeat"].exists()
    at.selectbox(key="sw_kpi").set_value("Crypto share of FL CPU time (%)").run()
    assert_clean(at)
    assert figures(at)[0]["data"][0]["z"] != z
    # the directory can be opened again from the list of sweeps under runs/
    at.multiselect(key="sw_axes").set_value(["KEM"]).run()  # another sweep set up: nothing of it has run
    assert figures(at) == []
    at.selectbox(key="sw_open").set_value(str(job["out"])).run()
    assert_clean(at)
    assert len(figures(at)) == 4


def test_sweep_stop_cancels_the_run_and_keeps_what_finished(tmp_path, monkeypatch):
    from sim.sweep import store
    from tests.conftest import session_processes

    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(tmp_path))
    at = start("Sweep")
    at.select_slider(key="sw_Model size (parameters)_paper-3node").set_value((10_000, 5_000_000)).run()
    at.number_input(key="sw_reps").set_value(10).run()  # 36 points × 10 replications: minutes, not seconds
    at.button(key="sw_run").click().run()
    job = _sweep_job(at)
    deadline = time.monotonic() + 120
    while not (job["out"] / "points").exists() or not store.finished(job["out"]):
        assert time.monotonic() < deadline, "no point was written in 120 s"
        assert job["proc"].poll() is None, job["log"].read_text()
        at.run()  # the open page: its progress fragment keeps the sweep's heartbeat fresh
        time.sleep(0.5)
    at.button(key="sw_stop").click().run()
    assert_clean(at)
    assert job["proc"].returncode == 130  # Ctrl-C: every task cancelled
    time.sleep(1)
    assert session_processes(job["proc"].pid) == []  # no worker left behind
    assert any(w.value.startswith("Stopped:") for w in at.warning)
    done = len(store.finished(job["out"]))
    assert 1 <= done < 36, done
    assert len(figures(at)) >= 2  # what finished is shown


def test_sweep_thins_each_axis_once_from_its_own_list():
    from app_pages.explore import MODEL_SIZES
    from app_pages.sweep import thin_grid

    models, nodes = thin_grid([MODEL_SIZES, [1, 2, 3, 4, 5, 6]], 30)
    assert len(models) * len(nodes) <= 30 and len(models) * len(nodes) >= 24
    assert models[0] == 10_000 and models[-1] == 5_000_000 and nodes == [1, 2, 3, 4, 5, 6]
    assert any(100_000 <= m <= 1_000_000 for m in models)  # the middle of the range survives
    at = start("Sweep")
    at.multiselect(key="sw_axes").set_value(["Model size (parameters)", "Number of nodes", "Devices per population",
                                              "Link bandwidth, every network link (Mbit/s)"]).run()  # fmt: skip
    at.select_slider(key="sw_Model size (parameters)_paper-3node").set_value((10_000, 5_000_000)).run()
    at.select_slider(key="sw_Number of nodes_paper-3node").set_value((1, 6)).run()
    assert_clean(at)
    assert any("grid points asked" in i.value and "at most 400" in i.value for i in at.info)
    runs = next(m.value for m in at.markdown if "runs ×" in m.value)
    assert int(runs.split("**")[1].split()[0]) <= 400


def test_twin_compares_run_directories(tmp_path, monkeypatch):
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(make_runs(tmp_path / "runs")))
    at = start("Twin")
    m = metrics(at)
    assert m["Round latency: error"].endswith("%") and "of" in m["Metrics within resampling noise"]
    assert len(figures(at)) == 2
    table = at.dataframe[0].value
    assert "phase train" in set(table.metric)
    assert table["simulated mean"].str.endswith("s").all()
    # only a simulated run of the same scenario and mode is offered: the concurrent run is not scored against it
    box = at.selectbox(key=f"tw_sim_{tmp_path / 'runs' / 'localhost-hw'}")
    assert [o.split(" — ")[0] for o in box.options] == ["localhost-sim"]


def test_twin_shows_a_both_runs_paired_reduction_beside_the_simulated_one(tmp_path, monkeypatch):
    """A measured half of a ``--mode both`` twin run (a stand-in: simulated halves labelled as twin runs, with the
    modes.json hw/modes.py writes) against a half of a ``pqtwin sim --mode both`` run: the page says both
    reductions; a damaged modes.json leaves the line out and the comparison stands."""
    root = tmp_path / "runs"
    scenario = load_scenario(ROOT / "scenarios" / "localhost.yaml", ["workload.fl.rounds=4"])
    for mode in ("sequential", "concurrent"):
        write_run(simulate(scenario, mode, 1, 2), root / "a-sim" / mode, scenario)
        hw = root / "b-hw" / mode
        write_run(simulate(scenario, mode, 99, 1), hw, scenario)
        write_summary(read_summary(hw / "summary.json").model_copy(update={"backend": "local"}), hw)
    (root / "a-sim" / "modes.json").write_text(
        json.dumps({"replications": 2, "round_latency_s": {"reduction": -0.12, "reduction_ci95": [-0.14, -0.10]}})
    )
    modes = {"paired": "rounds", "round_latency_s": {"reduction": -0.1, "reduction_ci95": [-0.15, -0.05], "pairs": 2}}
    (root / "b-hw" / "modes.json").write_text(json.dumps(modes))
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(root))
    at = start("Twin")
    lines = [c.value for c in at.caption if "reduction" in c.value]
    assert lines and "measured -10.0 % [-15.0, -5.0], 2 pairs of rounds; simulated -12.0 % [-14.0, -10.0]" in lines[0]
    (root / "b-hw" / "modes.json").write_text('{"paired": "rounds", "round_latency_s": {"reduction": NaN}}')
    at = start("Twin")
    assert not [c.value for c in at.caption if "reduction" in c.value] and metrics(at)["Round latency: error"]


def test_twin_without_runs_explains(tmp_path, monkeypatch):
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(tmp_path / "empty"))
    at = start("Twin")
    assert any("make run" in i.value for i in at.info)


def test_learn_steps_each_with_a_control():
    at = start("Learn")
    steps = at.radio(key="learn_step").options
    assert len(steps) == 8
    controls = ["learn_years", "learn_size", "learn_kind", "learn_params", "learn_nodes", "learn_target", "learn_rekey",
                "learn_storm_suite"]  # fmt: skip
    values = [40, 100, "signatures", 1_000_000, 5, 45, "frame (1 s)", "post-quantum (ML-KEM-768 + ML-DSA-65)"]
    texts: list[str] = []
    for i, (step, key, value) in enumerate(zip(steps, controls, values, strict=True)):
        if i:
            at.button(key="learn_next").click().run()  # the "Next →" button walks the story
        assert at.radio(key="learn_step").value == step
        assert_clean(at)
        before = figures(at)
        assert before, step
        at.get_by_key(key).set_value(value).run()
        assert_clean(at)
        assert figures(at) != before, f"{step}: the control changes the chart"
        texts += [md.value for md in at.markdown]
    assert any("35 %" in t for t in texts)  # the paper's claim, stated where the modes are compared
    assert any("coin cell" in t for t in texts)  # the battery step
    # the last step, a ward switched on: classical handshakes bring every patch up sooner than post-quantum ones
    pqc = seconds(metrics(at)["Every patch up after"])
    at.get_by_key("learn_storm_suite").set_value("classical (X25519 + Ed25519)").run()
    assert_clean(at)
    classical = seconds(metrics(at)["Every patch up after"])
    assert 0 < classical < pqc, (classical, pqc)


# ----------------------------------------------------------------------------------- scenario edits


@pytest.mark.parametrize("name", ["paper-3node", "ward-200", "localhost"])
@pytest.mark.parametrize("nodes", [1, 2, 4, 6])
def test_set_nodes_gives_valid_scenarios(name, nodes):
    path = ROOT / "scenarios" / f"{name}.yaml"
    s = load_scenario_data(build_data(path, (), nodes), path)
    assert len(s.deployment.hosts) == nodes
    assert len(s.pods("aggregator")) == 1 and len(s.pods("client")) == s.workload.fl.clients >= 1
    assert {p.host for p in s.deployment.pods} <= {h.name for h in s.deployment.hosts}
    r = simulate(s, "concurrent", 1, 1)
    assert r.summary.rounds_completed == s.workload.fl.rounds


def test_device_counts_and_equivalence_with_load_scenario():
    data = build_data(PAPER, (), None, (("ecg-patch", 9), ("spo2", 3)))
    assert device_totals(data) == {"ecg-patch": 9, "spo2": 3}
    assert [p["count"] for p in data["workload"]["devices"] if p["class"] == "ecg-patch"] == [5, 4]
    ov = ("workload.crypto.signature=Falcon-512", "workload.fl.rounds=2")
    a = load_scenario_data(build_data(PAPER, ov), PAPER)
    b = load_scenario(PAPER, list(ov))
    assert a == b and a.path == b.path
    ra, rb = simulate(a, "sequential", 5, 2), simulate(b, "sequential", 5, 2)
    assert ra.spans.equals(rb.spans)
