"""`pqtwin compare`: simulated vs measured run directories (both written by the simulator here)."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hw.compare import (
    AT_SPEED,
    BOOTSTRAP_SEED,
    HW_RGB,
    METRICS,
    RESAMPLES,
    SIM_RGB,
    _resample,
    compare_dirs,
    write_outputs,
)
from pqtwin.cli import app as cli_app
from pqtwin.tables import render_table
from sim import contract
from sim.contract import ROUND_SEGMENTS
from sim.errors import UserError
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "paper-3node.yaml"
COMPARED = (
    {"round_latency_s", "model_distribution_s", "telemetry.latency_s"}
    | {f"phase_s.{p}" for p in ("distribute", "receive", "train", "upload", "verify", "aggregate")}
    | {f"segment_s.{name}" for name in ("received", "trained", "arrived", "closed")}
)
METRIC_KEYS = {
    "label", "unit", "n_sim", "n_hw", "sim_mean", "sim_mean_ci95", "sim_p50", "sim_p95", "hw_mean",
    "hw_mean_ci95", "hw_p50", "hw_p95", "error_pct", "error_ci95", "within_ci", "error_p50_pct",
    "error_p50_ci95", "error_p95_pct", "error_p95_ci95",
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """sim and hw: the same scenario with different seeds; slow: the same with 4x the training samples."""
    base = tmp_path_factory.mktemp("runs")

    def run(name: str, seed: int, *overrides: str) -> Path:
        s = load_scenario(SCENARIO, ["workload.fl.rounds=3", *overrides])
        write_run(simulate(s, None, seed, 4), base / name, s)
        return base / name

    return {
        "sim": run("sim", 2),
        "hw": run("hw", 3),
        "slow": run("slow", 3, "workload.fl.samples_per_client=2000"),
    }


@pytest.fixture(scope="module")
def same(runs) -> dict:
    return compare_dirs(runs["sim"], runs["hw"])


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("compare"))
    return dst


def test_same_model_agrees_within_ci(same, runs):
    # the measured side is a simulation here, and compare says so
    assert same["warnings"] == [f"{runs['hw']} is a simulation, not a measured run: this compares simulations"]
    assert same["same_scenario"] and same["same_mode"]
    rl = same["metrics"]["round_latency_s"]
    assert rl["n_sim"] == rl["n_hw"] == 12  # 3 rounds x 4 replications each: a CI over 6 rounds is too thin
    assert rl["within_ci"] is True and abs(rl["error_pct"]) < 5
    lo, hi = rl["error_ci95"]
    assert lo < 0 < hi and lo <= rl["error_pct"] <= hi
    assert rl["error_pct"] == pytest.approx((rl["sim_mean"] - rl["hw_mean"]) / rl["hw_mean"] * 100)
    for side in ("sim", "hw"):
        lo, hi = rl[f"{side}_mean_ci95"]
        assert lo <= rl[f"{side}_mean"] <= hi
    assert same["metrics"]["model_distribution_s"]["within_ci"] is True


def test_slower_hardware_is_detected(runs):
    res = compare_dirs(runs["sim"], runs["slow"])
    rl = res["metrics"]["round_latency_s"]
    assert rl["error_pct"] < -40 and rl["error_ci95"][1] < 0 and rl["within_ci"] is False
    assert rl["error_p50_ci95"][1] < 0 and rl["error_p95_ci95"][1] < 0
    train = res["metrics"]["phase_s.train"]
    assert train["error_pct"] < -60 and train["within_ci"] is False
    # distribution does not involve training: still in agreement
    assert abs(res["metrics"]["model_distribution_s"]["error_pct"]) < 5


def test_the_segments_say_where_in_the_round_slower_training_lost_its_time(runs):
    """Slower training (4x the samples) shows in the segment up to the last training step, the segments' mean
    differences add up to the round's, and the table says them."""
    res = compare_dirs(runs["sim"], runs["slow"])
    m = res["metrics"]
    diffs = {n: m[f"segment_s.{n}"]["sim_mean"] - m[f"segment_s.{n}"]["hw_mean"] for n in ROUND_SEGMENTS}
    total = m["round_latency_s"]["sim_mean"] - m["round_latency_s"]["hw_mean"]
    assert sum(diffs.values()) == pytest.approx(total, rel=1e-9)
    assert min(diffs, key=lambda n: diffs[n]) == "trained" and diffs["trained"] < 0.8 * total < 0
    console = Console(record=True, width=240)
    console.print(render_table(res))
    assert f"trained {diffs['trained'] * 1e3:+.2f}" in console.export_text()


def test_json_layout_all_metrics_and_determinism(same, runs, tmp_path):
    assert set(same["metrics"]) == COMPARED
    assert same["not_compared"] == {
        "phase_s.handshake": "no values in either run",
        AT_SPEED: "the measured run(s) kept no speed probe samples (or no calibrated probe)",
    }
    # every metric, but the quiet runs alone: only where some of several measured runs were quiet and some not
    assert set(same["metrics"]) | set(same["not_compared"]) == set(METRICS) - {"round_latency_quiet_s"}
    for m in same["metrics"].values():
        assert set(m) >= METRIC_KEYS
        assert all(len(m[k]) == 2 for k in m if k.endswith("_ci95"))
    assert same["method"]["seed"] == BOOTSTRAP_SEED and same["method"]["resamples"] == RESAMPLES == 2000
    assert same["runs"]["sim"]["seed"] == 2 and same["runs"]["hw"]["seed"] == 3
    assert compare_dirs(runs["sim"], runs["hw"]) == same  # fixed bootstrap seed
    paths = write_outputs(same, tmp_path / "out")
    assert json.loads(paths["json"].read_text()) == same
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["compare.json", "compare.png"]


def decode_png(data: bytes) -> tuple[int, int, np.ndarray]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(tag + body)
        chunks.append((tag, body))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = np.frombuffer(zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT")), np.uint8)
    rows = raw.reshape(h, 1 + 3 * w)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return w, h, rows[:, 1:].reshape(h, w, 3)


def test_png_is_valid_and_shows_both_sides(same, tmp_path):
    w, h, px = decode_png(write_outputs(same, tmp_path)["png"].read_bytes())
    assert w == 1000 and h > 100 + 30 * len(same["metrics"])
    colours = {tuple(c) for c in px.reshape(-1, 3)}
    assert len(colours) >= 5
    for rgb in (SIM_RGB, HW_RGB):
        assert (px == rgb).all(axis=2).sum() > 1000


def test_table(same):
    console = Console(record=True, width=160)
    console.print(render_table(same))
    text = console.export_text()
    assert "round latency" in text and "phase train" in text and "error % [95 % CI]" in text
    assert "not compared: phase_s.handshake" in text


def test_bootstrap_resamples_within_replications():
    values = np.array([0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    groups = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    out = _resample(values, groups, np.random.default_rng(1))
    assert out.shape == (3, RESAMPLES)
    assert np.allclose(out[0], 50 / 8)  # every resample keeps 3 values of replication 0 and 5 of 1


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "{d}: no spans.parquet or summary.json (not a run directory)"),
        (lambda d: (d / contract.RunLayout.SUMMARY).write_text("{}"), "{d}: no spans.parquet (not a run directory)"),
        (lambda d: (d / "modes.json").write_text("{}"), "(a --mode both run: pass {d}/sequential or"),
    ],
)
def test_not_a_run_directory_is_one_line(runs, tmp_path, setup, message):
    d = tmp_path / "x"
    d.mkdir()
    setup(d)
    with pytest.raises(UserError) as exc:
        compare_dirs(runs["sim"], d)
    assert len(exc.value.lines) == 1 and message.format(d=d) in exc.value.lines[0]
    with pytest.raises(UserError) as exc:
        compare_dirs(tmp_path / "nope", runs["hw"])
    assert exc.value.lines == [f"{tmp_path / 'nope'}: no such directory"]


def test_invalid_spans_are_user_errors(runs, tmp_path):
    bad = copy_run(runs["hw"], tmp_path / "bad")
    df = contract.read_spans(bad / "spans.parquet")
    df.loc[0, "end_s"] = df.loc[0, "start_s"] - 1
    contract.write_spans(df, bad / "spans.parquet")
    with pytest.raises(UserError) as exc:
        compare_dirs(runs["sim"], bad)
    assert exc.value.lines == [f"{bad / 'spans.parquet'}: a span ends before it starts"]
    df.loc[0, "end_s"] = float("nan")
    contract.write_spans(df, bad / "spans.parquet")
    with pytest.raises(UserError, match="start_s or end_s is missing or not finite"):
        compare_dirs(runs["sim"], bad)
    pq.write_table(pa.Table.from_pandas(df.drop(columns=["op"]), preserve_index=False), bad / "spans.parquet")
    with pytest.raises(UserError) as exc:
        compare_dirs(runs["sim"], bad)
    assert exc.value.lines == [f"{bad / 'spans.parquet'}: missing column 'op'"]
    (bad / "spans.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="cannot read spans"):
        compare_dirs(runs["sim"], bad)


def test_mismatch_and_missing_metric_are_warnings(runs, tmp_path):
    hw = copy_run(runs["hw"], tmp_path / "hw")
    summary = json.loads((hw / contract.RunLayout.SUMMARY).read_text())
    summary["mode"] = "concurrent"
    (hw / contract.RunLayout.SUMMARY).write_text(json.dumps(summary))
    df = contract.read_spans(hw / "spans.parquet")
    # a single-replication measured run without telemetry, as the hardware twin may write
    contract.write_spans(df[(df.replication == 0) & (df.op != "frame")], hw / "spans.parquet")
    res = compare_dirs(runs["sim"], hw)
    assert res["same_mode"] is False and res["same_scenario"] is True
    assert "mode differs: simulated 'sequential', measured 'concurrent'" in res["warnings"]
    assert "telemetry.latency_s: no values in the measured run" in res["warnings"]
    assert "telemetry.latency_s" in res["not_compared"]
    assert res["metrics"]["round_latency_s"]["n_hw"] == 3 and "note" in res["metrics"]["round_latency_s"]


def test_cli(runs, tmp_path):
    app = cli_app  # the real pqtwin command
    hw = copy_run(runs["hw"], tmp_path / "hw")
    res = CliRunner().invoke(app, ["compare", str(runs["sim"]), str(hw)])
    assert res.exit_code == 0, res.output
    assert "round latency" in res.stdout and "results:" in res.stdout
    assert res.stdout.strip().splitlines()[-1].startswith("fidelity: round latency error p50 ")  # the last word
    assert (hw / "compare" / "compare.json").is_file() and (hw / "compare" / "compare.png").is_file()

    summary = json.loads((hw / contract.RunLayout.SUMMARY).read_text())
    (hw / contract.RunLayout.SUMMARY).write_text(json.dumps(summary | {"scenario": "other"}))
    res = CliRunner().invoke(app, ["compare", str(runs["sim"]), str(hw), "--json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "warning: scenario differs" in res.stderr  # stdout stays pure JSON
    assert set(json.loads(res.stdout)["metrics"]) == COMPARED
    assert json.loads((tmp_path / "o" / "compare.json").read_text()) == json.loads(res.stdout)

    res = CliRunner().invoke(app, ["compare", str(runs["sim"]), str(tmp_path / "nope")])
    assert res.exit_code != 0 and isinstance(res.exception, UserError)
    assert res.exception.lines == [f"{tmp_path / 'nope'}: no such directory"]


def test_clustered_bootstrap_resamples_runs_as_well():
    """Repeated runs of one configuration: the two-stage bootstrap draws whole runs, so the CI holds the spread
    between runs that the stratified one (runs fixed) cannot see."""
    values = np.array([0.0, 0.0, 0.0, 10.0, 10.0, 10.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    out = _resample(values, groups, np.random.default_rng(1), clusters=True)
    assert set(np.unique(out[0])) == {0.0, 5.0, 10.0}  # both slots from run 0, one from each, both from run 1
    assert 0.1 < np.mean(out[0] == 0.0) < 0.4  # drawn with replacement: 1/4 of the resamples in expectation


def test_a_simulations_replications_are_resampled_whole_where_it_has_enough():
    """Five simulated replications whose medians differ: the CI of the error of medians holds that spread (the
    replications drawn whole), where with the replications fixed it would be as narrow as the rounds' noise."""
    from hw.compare import SIM_CLUSTERS, compare_metric

    rng = np.random.default_rng(3)
    hw = (rng.normal(10.0, 0.1, 200), np.zeros(200, dtype=np.int64))
    shift = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # each replication's own level
    groups = np.repeat(np.arange(5), 40)
    sim = (10.0 + shift[groups] + rng.normal(0, 0.1, 200), groups)
    wide = compare_metric("round_latency_s", sim, hw)["error_p50_ci95"]
    assert SIM_CLUSTERS <= 5 and wide[1] - wide[0] > 8  # ±~5 % from the replications' levels
    few = (sim[0][groups < 4], groups[groups < 4])  # fewer replications than SIM_CLUSTERS: stratified, narrow
    narrow = compare_metric("round_latency_s", few, hw)["error_p50_ci95"]
    assert narrow[1] - narrow[0] < 0.5 * (wide[1] - wide[0])


def test_a_measured_run_given_as_the_simulation_is_refused_in_one_line(runs, tmp_path, pqtwin):
    """pqtwin compare HW SIM (the two the other way round) would call the measurement "simulated" and every
    error's sign the wrong way: refused, naming the directory and what it is."""
    hw = copy_run(runs["hw"], tmp_path / "measured")
    summary = json.loads((hw / "summary.json").read_text())
    (hw / "summary.json").write_text(json.dumps({**summary, "backend": "local", "state": "completed"}))
    assert compare_dirs(runs["sim"], hw)["metrics"]  # the right way round
    with pytest.raises(UserError, match=r"a measured run \(backend: local\), given as the simulation"):
        compare_dirs(hw, runs["sim"])
    out = pqtwin("compare", str(hw), str(runs["sim"]))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"{hw}: a measured run (backend: local)" in out.stderr + out.stdout


def test_repeated_measurements_pool_with_their_spread(runs, tmp_path):
    """pqtwin compare SIM HW HW2 HW3: the measured side pools the runs; the run medians and their spread are
    reported; a repeat that ran slower widens the CI instead of hiding in the pool."""
    s = load_scenario(SCENARIO, ["workload.fl.rounds=3", "deployment.hosts.*.cpu_speed=0.6"])
    write_run(simulate(s, None, 5, 1), tmp_path / "slower", s)
    one = compare_dirs(runs["sim"], runs["hw"])["metrics"]["round_latency_s"]
    pooled = compare_dirs(runs["sim"], runs["hw"], [runs["sim"], tmp_path / "slower"])
    m = pooled["metrics"]["round_latency_s"]
    assert len(m["hw_run_p50s"]) == 3 and m["n_hw"] == one["n_hw"] * 2 + 3
    assert m["hw_run_p50s"][2] > 1.3 * m["hw_run_p50s"][0]  # the slower repeat, seen as a run of its own
    assert m["hw_run_spread_pct"] > 30
    width = lambda x: x["error_p50_ci95"][1] - x["error_p50_ci95"][0]  # noqa: E731
    assert width(m) > width(one)
    assert pooled["runs"]["hw"]["repeats"][1] == str(runs["sim"])
    assert "hw_run_p50s" not in one


def test_pooled_runs_some_quiet_are_also_compared_on_their_quiet_runs_alone(runs, tmp_path):
    """Repeats of which some ran on a quiet machine and some not (here a busy one whose cores ran 0.6x as fast):
    compare pools all, and also compares the quiet runs' rounds alone (``round_latency_quiet_s``), in the table
    and the fidelity line; with every run quiet, or none, or one run, there is nothing to tell apart."""
    from hw.compare import ON_QUIET
    from pqtwin.tables import fidelity_line

    def measured(name: str, quiet: bool, *more: str, seed: int = 3) -> Path:
        s = load_scenario(SCENARIO, ["workload.fl.rounds=3", *more])
        write_run(simulate(s, None, seed, 1), tmp_path / name, s)
        load = contract.MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0,
                                    foreign_cpu_cores=0.0 if quiet else 1.0, steal_fraction=0.0, quiet=quiet,
                                    busy=not quiet)  # fmt: skip
        summary = contract.read_summary(tmp_path / name / "summary.json")
        contract.write_summary(summary.model_copy(update={"machine_load": load, "backend": "local"}), tmp_path / name)
        return tmp_path / name

    quiet, busy = measured("quiet", True), measured("busy", False, "deployment.hosts.*.cpu_speed=0.6")
    again, busy2 = measured("again", True, seed=4), measured("busy2", False, seed=5)
    result = compare_dirs(runs["sim"], quiet, [busy])
    pooled, alone = result["metrics"]["round_latency_s"], result["metrics"][ON_QUIET]
    only = compare_dirs(runs["sim"], quiet)["metrics"]["round_latency_s"]
    assert alone["n_hw"] == only["n_hw"] == pooled["n_hw"] // 2
    assert alone["error_p50_pct"] == pytest.approx(only["error_p50_pct"])  # the same rounds, the same sim
    assert alone["error_p50_pct"] > pooled["error_p50_pct"] + 10  # the slow busy run pooled in pulls it down
    assert "hw_run_p50s" not in alone and result["runs"]["hw"]["quiet_repeats"] == 1
    line = fidelity_line(result)
    assert "2 measured runs pooled, 1 quiet" in line and "; the 1 quiet run alone: p50 " in line, line
    table = Console(width=200, record=True)
    table.print(render_table(result))
    assert "round latency, quiet runs" in table.export_text()
    two = compare_dirs(runs["sim"], quiet, [busy, again])
    assert len(two["metrics"][ON_QUIET]["hw_run_p50s"]) == 2 and "the 2 quiet runs alone" in fidelity_line(two)
    for dirs in ([quiet, again], [quiet], [busy, busy2]):
        got = compare_dirs(runs["sim"], dirs[0], dirs[1:])
        assert ON_QUIET not in got["metrics"] and ON_QUIET not in got["not_compared"]
        assert " alone: p50" not in fidelity_line(got)


def test_cli_pools_repeats(runs, tmp_path, pqtwin):
    out = pqtwin("compare", str(runs["sim"]), str(runs["hw"]), str(runs["slow"]), "--out", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    assert "2 measured runs pooled" in out.stdout and "run medians spread" in out.stdout
    assert "not repeats of one configuration" not in out.stderr  # same scenario, mode and suite


def test_a_netns_run_warns_when_the_simulation_lacks_its_measured_fabric(tmp_path):
    """A netns run's fabric (CPU-bound at 0.7 Gbit/s here) and machine (2 cores): a simulation with the nominal
    links and hosts is warned, with the options that fix it; one with them is not."""
    from hw.compare import _fabric_warnings

    probe = contract.FabricProbe(hosts=("pi-1", "pi-2"), hops=2, latency_s=6e-6, throughput_bps=7e8, rate_bps=9.4e8)
    load = contract.MachineLoad(cores=2, loadavg_1m_start=None, loadavg_1m_end=None, twin_cpu_cores=1.0,
                                foreign_cpu_cores=0.0, steal_fraction=0.0, quiet=True)  # fmt: skip
    paper = load_scenario(SCENARIO, ["workload.fl.rounds=1", "run.replications=1"])
    plain, fitted = tmp_path / "plain", tmp_path / "fitted"
    write_run(simulate(paper, "sequential"), plain, paper)
    hw = simulate(paper, "sequential").summary.model_copy(update={"fabric": probe, "machine_load": load})
    (warning,) = _fabric_warnings(plain, [hw])
    assert "netns backend" in warning and "692" not in warning and "700 Mbit/s" in warning and "2 cores" in warning
    assert "--set 'deployment.network.links.*.bandwidth_bps=7e+08' --set 'deployment.machine.cores=2'" in warning
    matched = load_scenario(SCENARIO,
                            ["workload.fl.rounds=1", "run.replications=1", *probe.overrides(2)])  # fmt: skip
    write_run(simulate(matched, "sequential"), fitted, matched)
    assert _fabric_warnings(fitted, [hw]) == []
    # a run that measured the machine's kernel (hw/sendcpu.py): a simulation without it is warned too
    measured = hw.model_copy(update={"fabric": probe.model_copy(update={"kernel_rate_bps": 1.1e9})})
    (warning,) = _fabric_warnings(fitted, [measured])
    assert "the machine's kernel at 1,100 Mbit/s" in warning and "host_rate_bps=1.1e+09" in warning
    behind = tmp_path / "behind"
    s = load_scenario(SCENARIO, ["workload.fl.rounds=1", "run.replications=1", *measured.fabric_overrides()])
    write_run(simulate(s, "sequential"), behind, s)
    assert _fabric_warnings(behind, [measured]) == []
    assert _fabric_warnings(plain, [hw.model_copy(update={"fabric": None})]) == []  # not a netns run
    (plain / "scenario.yaml").write_bytes(b"\xff\xfe not UTF-8")  # no advice, and no internal error either
    assert _fabric_warnings(plain, [hw]) == []


def test_sim_fabric_of_a_netns_run_simulates_its_links_and_machine(pqtwin, tmp_path):
    """``pqtwin sim --fabric-of HW_DIR`` takes the fabric and machine a netns run measured (its --set options; the
    user's own --set still wins); a run without a fabric, or no run at all, is one line, exit 2."""
    paper = load_scenario(SCENARIO, ["workload.fl.rounds=1", "run.replications=1"])
    hw = tmp_path / "hw"
    write_run(simulate(paper, "sequential"), hw, paper)
    plain = contract.read_summary(hw / "summary.json")
    probe = contract.FabricProbe(hosts=("pi-1", "pi-2"), hops=2, latency_s=6e-6, throughput_bps=7e8, rate_bps=9.4e8,
                                 kernel_rate_bps=1.1e9)  # fmt: skip
    load = contract.MachineLoad(cores=2, loadavg_1m_start=None, loadavg_1m_end=None, twin_cpu_cores=1.0,
                                foreign_cpu_cores=0.0, steal_fraction=0.0, quiet=True)  # fmt: skip
    contract.write_summary(plain.model_copy(update={"fabric": probe, "machine_load": load, "backend": "netns"}), hw)
    res = pqtwin("sim", str(SCENARIO), "--fabric-of", str(hw), "--set", "run.replications=1",
                 "--set", "workload.fl.rounds=1", "--set", "deployment.network.links.0.latency_s=0.001",
                 "--out", str(tmp_path / "sim"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    import yaml

    d = yaml.safe_load((tmp_path / "sim" / "scenario.yaml").read_text())["deployment"]
    links = d["network"]["links"]
    assert {link["bandwidth_bps"] for link in links} == {7e8} and d["machine"]["cores"] == 2
    assert d["network"]["transport"]["host_rate_bps"] == 1.1e9  # the machine's kernel, as the run measured it
    assert {h["cpu_sharing"] for h in d["hosts"]} == {"linux"}  # its scheduler, as the local twin's host has it
    assert links[0]["latency_s"] == 0.001 and links[1]["latency_s"] == 6e-6  # the user's --set wins
    contract.write_summary(plain, hw)
    res = pqtwin("sim", str(SCENARIO), "--fabric-of", str(hw), "--out", str(tmp_path / "sim2"))
    assert res.returncode == 2 and "is not a netns twin run" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = pqtwin("sim", str(SCENARIO), "--fabric-of", str(tmp_path / "nowhere"), "--out", str(tmp_path / "sim3"))
    assert res.returncode == 2 and "--fabric-of" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("spread", [1.06, 1.31])
def test_a_profile_calibrated_while_the_cores_changed_speed_is_warned(tmp_path, spread):
    """A profile whose calibration saw its speed probe spread over hw.machine.STEADY_SPREAD (as a twin run is called
    unsteady) is named in compare's warnings: its prices may be another speed state's (a calibration at 1.28-1.31x
    put a matrix 5-13 % low, docs/twin-validation.md); a steady one is not."""
    import yaml

    from hw.compare import calibration_warnings

    root = SCENARIO.parents[1]
    data = yaml.safe_load((root / "scenarios" / "profiles" / "ci-x86.yaml").read_text())
    data["platform"]["speed_probe_spread"] = spread
    profile = tmp_path / "calibrated.yaml"
    profile.write_text(yaml.safe_dump(data))
    s = load_scenario(root / "scenarios" / "localhost.yaml", ["workload.fl.rounds=1", "run.replications=1"], profile)
    write_run(simulate(s, "sequential"), tmp_path / "sim", s)
    warnings = calibration_warnings(tmp_path / "sim")
    if spread < 1.25:
        assert warnings == []
    else:
        (warning,) = warnings
        assert f"{data['profile']} was calibrated while the cores changed speed" in warning and "1.31x" in warning
    (tmp_path / "sim" / "scenario.yaml").write_bytes(b"\xff\xfe not UTF-8")  # no advice, and no internal error
    assert calibration_warnings(tmp_path / "sim") == []


def test_a_netns_fabrics_token_bucket_is_given_to_the_simulation_or_warned(tmp_path):
    """A fabric recorded with its links' bucket (tbf's burst): a simulation without it is warned, with the
    option that gives it; ``FabricProbe.overrides`` gives it."""
    from hw.compare import _fabric_warnings

    probe = contract.FabricProbe(hosts=("pi-1", "pi-2"), hops=2, latency_s=6e-6, throughput_bps=1e9, rate_bps=1e9,
                                 burst_bytes=65536)  # fmt: skip
    paper = load_scenario(SCENARIO, ["workload.fl.rounds=1", "run.replications=1"])
    plain, fitted = tmp_path / "plain", tmp_path / "fitted"
    write_run(simulate(paper, "sequential"), plain, paper)
    hw = simulate(paper, "sequential").summary.model_copy(update={"fabric": probe})
    (warning,) = _fabric_warnings(plain, [hw])
    assert "65,536-byte token buckets" in warning and "links.*.burst_bytes=65536" in warning
    matched = load_scenario(SCENARIO, ["workload.fl.rounds=1", "run.replications=1", *probe.overrides()])
    assert {link.burst_bytes for link in matched.deployment.network.links} == {65536}
    write_run(simulate(matched, "sequential"), fitted, matched)
    assert _fabric_warnings(fitted, [hw]) == []
    # the bucket's head start is simulated: the model reaches the clients sooner than on plain links
    assert (
        simulate(matched, "concurrent").summary.model_distribution_s.mean
        < simulate(paper, "concurrent").summary.model_distribution_s.mean
    )


def test_rounds_measured_while_a_core_ran_slow_are_left_out_of_the_at_speed_latency(runs, tmp_path):
    """A measured run whose host switched to its slow state for a while (its rounds there 1.6x as long): the
    at-speed metric compares only the rounds the speed probe saw at the calibration's speed, so the same model
    that misses all rounds by the slow ones' share meets the at-speed ones (hw/speed.py)."""
    from hw.speed import KEPT_FILE, KEPT_HEADER
    from sim.contract import MachineLoad, read_summary, write_summary

    hw = tmp_path / "hw"
    shutil.copytree(runs["hw"], hw)
    spans = pq.read_table(hw / "spans.parquet").to_pandas()
    shift = spans.replication * 10.0  # replication r's rounds from r x 10 s on, as repeated runs would be
    spans = spans.assign(start_s=spans.start_s + shift, end_s=spans.end_s + shift)
    late = spans.replication.isin((1, 2)) & (spans.op == "round")  # the host's slow state: from 9.5 to 29.5 s
    spans.loc[late, "end_s"] = spans.start_s + (spans.end_s - spans.start_s) * 1.6
    pq.write_table(pa.Table.from_pandas(spans, preserve_index=False), hw / "spans.parquet")
    t = np.arange(-1.0, 41.0, 0.05)
    rows = [f"{x:.3f},{cpu},{100.0 if 9.5 <= x <= 29.5 else 64.0}\n" for x in t for cpu in (0, 1)]
    (hw / KEPT_FILE).write_text(KEPT_HEADER + "".join(rows))
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0, foreign_cpu_cores=0.0,
                       steal_fraction=0.0, quiet=False, calibrated_probe_us=64.0)  # fmt: skip
    write_summary(read_summary(hw / "summary.json").model_copy(update={"machine_load": load}), hw)

    result = compare_dirs(runs["sim"], hw)
    res = result["metrics"]
    whole, fast = res["round_latency_s"], res[AT_SPEED]
    from pqtwin.tables import fidelity_line

    assert f"the {fast['n_hw']} of {whole['n_hw']} measured rounds at the calibrated speed: p50" in fidelity_line(
        result
    )
    assert fast["n_hw"] == whole["n_hw"] // 2 and fast["n_sim"] == whole["n_sim"]
    assert fast["hw_p95"] < whole["hw_p95"]  # the slow rounds' tail is gone
    assert abs(fast["error_pct"]) < abs(whole["error_pct"]) - 3  # the slow share was the miss
    # a run that kept no samples, pooled with this one: only this one's rounds count
    pooled = compare_dirs(runs["sim"], hw, [runs["hw"]])["metrics"][AT_SPEED]
    assert pooled["n_hw"] == fast["n_hw"]


def test_an_unsteady_runs_warning_points_to_at_speed_not_a_bare_cpu_speed(runs, tmp_path):
    """A run whose cores ran at 0.60x their calibration: the warning's way to the model's own error is the
    simulation again at that speed with training at its own price (``--at-speed``, hw/at_speed.py). It gave a bare
    ``deployment.hosts.*.cpu_speed``, which slows training by the probe's factor too: on make run's unsteady run of
    2026-12-07 (0.54x) that read +55 %, where --at-speed read +14 %."""
    hw = copy_run(runs["hw"], tmp_path / "hw")
    load = contract.MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0,
                                foreign_cpu_cores=0.0, steal_fraction=0.0, quiet=False, unsteady=True,
                                calibrated_probe_us=39.0, cpu_speed=contract.CpuSpeed(
                                    probe_us_p10=60.0, probe_us_p50=65.0, probe_us_p90=70.0, samples=40))  # fmt: skip
    summary = contract.read_summary(hw / "summary.json")
    contract.write_summary(summary.model_copy(update={"machine_load": load, "backend": "local"}), hw)
    (line,) = [w for w in compare_dirs(runs["sim"], hw)["warnings"] if "cores changed speed" in w]
    assert "simulate it again at the speed measured (0.60x): `pqtwin compare --at-speed`" in line, line
    assert "cpu_speed=" not in line, line


def test_a_compare_with_no_metric_in_both_runs_is_one_line_not_an_empty_report(runs, tmp_path):
    """A measured run whose spans hold no round (a twin stopped before its first) gave every metric "no values", an
    empty compare.json and exit 0: the command said it had compared the runs."""
    hw = copy_run(runs["hw"], tmp_path / "hw")
    contract.write_spans(contract.read_spans(hw / "spans.parquet").iloc[:0], hw / "spans.parquet")
    res = CliRunner().invoke(cli_app, ["compare", str(runs["sim"]), str(hw), "--out", str(tmp_path / "c")])
    assert res.exit_code != 0 and isinstance(res.exception, UserError), res.output  # main() makes it exit 2
    (line,) = res.exception.lines
    assert "nothing to compare" in line and "round_latency_s: no values in the measured run" in line, line
    assert not (tmp_path / "c" / "compare.json").exists()


def test_a_measured_runs_duplicated_spans_are_counted_once_and_said(runs, tmp_path):
    """Every row of a measured run's spans.parquet written twice: compare pooled each round twice (n_hw 6 of a
    3-round run, CIs too narrow) without a word. The copies are left out now, in one warning saying how many."""
    hw = copy_run(runs["hw"], tmp_path / "hw")
    summary = json.loads((hw / "summary.json").read_text())
    (hw / "summary.json").write_text(json.dumps({**summary, "backend": "local", "state": "completed"}))
    once = compare_dirs(runs["sim"], hw)
    df = contract.read_spans(hw / "spans.parquet")
    contract.write_spans(pd.concat([df, df], ignore_index=True), hw / "spans.parquet")
    twice = compare_dirs(runs["sim"], hw)
    assert twice["metrics"] == once["metrics"]
    assert twice["metrics"]["round_latency_s"]["n_hw"] == summary["rounds_completed"]
    (note,) = [w for w in twice["warnings"] if w not in once["warnings"]]
    assert note.startswith(f"{hw / 'spans.parquet'}: {len(df):,} of {2 * len(df):,} spans left out, each the same")


def test_fabric_of_a_run_whose_fabric_no_link_can_have_names_its_summary(pqtwin, tmp_path):
    """``sim --fabric-of RUN`` whose summary.json holds an infinite (or 100 s) latency: the --set options made from
    it were refused as the scenario file's deployment.network.links[0].latency_s; now RUN/summary.json's field is
    named, in one line, before anything runs."""
    paper = load_scenario(SCENARIO, ["workload.fl.rounds=1", "run.replications=1"])
    hw = tmp_path / "hw"
    write_run(simulate(paper, "sequential"), hw, paper)
    data = json.loads((hw / "summary.json").read_text())
    bad = ((float("inf"), "Input should be a finite number"), (100.0, "Input should be less than or equal to 60"))
    for latency, expected in bad:
        data |= {"backend": "netns", "fabric": {"hosts": ["pi-1", "pi-2"], "hops": 2, "latency_s": latency,
                                                "throughput_bps": 5e8, "rate_bps": 1e9}}  # fmt: skip
        (hw / "summary.json").write_text(json.dumps(data))
        res = pqtwin("sim", str(SCENARIO), "--fabric-of", str(hw), "--out", str(tmp_path / "sim"))
        (line,) = res.stderr.strip().splitlines()
        assert res.returncode == 2
        assert line == f"error: --fabric-of: {hw / 'summary.json'}: fabric.latency_s: {expected}"
        assert "scenario" not in line and not (tmp_path / "sim").exists()
