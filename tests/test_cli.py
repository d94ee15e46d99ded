"""`pqtwin sim` end to end through the console entry point: files, formats, options."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from sim import contract

REQUIRED_KEYS = {
    "scenario", "seed", "replications", "mode", "round_latency_s", "model_distribution_s", "phase_s",
    "crypto_share", "application_bytes", "link_bytes", "host_utilization", "events", "wall_s",
}  # fmt: skip


def test_sim_writes_spans_and_summary(pqtwin, tmp_path):
    out = tmp_path / "run"
    res = pqtwin("sim", "scenarios/paper-3node.yaml", "--out", str(out), "--replications", "2",
                 "--seed", "9", "--set", "workload.fl.rounds=2", "--mode", "concurrent")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "round latency" in res.stdout and str(out) in res.stdout
    table = pq.read_table(out / "spans.parquet")
    assert table.schema.equals(contract.SPAN_SCHEMA)
    df = table.to_pandas()
    assert contract.validate_spans(df) == []
    assert set(df.replication) == {0, 1} and set(df["round"]) >= {1, 2}
    summary = json.loads((out / contract.RunLayout.SUMMARY).read_text())
    assert set(summary) >= REQUIRED_KEYS
    assert summary["seed"] == 9 and summary["mode"] == "concurrent" and summary["replications"] == 2
    for k in ("round_latency_s", "model_distribution_s"):
        assert {"mean", "p50", "p95", "ci95"} <= set(summary[k])
        lo, hi = summary[k]["ci95"]
        assert lo <= summary[k]["mean"] <= hi
    assert (out / "scenario.yaml").exists()


def test_both_modes_and_profile_run(pqtwin, tmp_path):
    out = tmp_path / "both"
    res = pqtwin("sim", "scenarios/paper-3node.yaml", "--out", str(out), "--replications", "2",
                 "--set", "workload.fl.rounds=2", "--mode", "both", "--profile-run")  # fmt: skip
    assert res.returncode == 0, res.stderr
    for m in ("sequential", "concurrent"):
        assert json.loads((out / m / contract.RunLayout.SUMMARY).read_text())["mode"] == m
    modes = json.loads((out / "modes.json").read_text())
    assert modes["round_latency_s"]["reduction"] is not None
    assert "reduction" in res.stdout
    assert "pyinstrument" in (out / "profile.html").read_text().lower()


def test_bad_cli_values_are_one_line(pqtwin, tmp_path):
    res = pqtwin("sim", "scenarios/paper-3node.yaml", "--mode", "parallel")
    assert res.returncode == 2 and "--mode" in res.stderr and "Traceback" not in res.stderr
    res = pqtwin("sim", "scenarios/nope.yaml")
    assert res.returncode == 2 and "nope.yaml: cannot read file" in res.stderr
    res = pqtwin("sim", "scenarios/paper-3node.yaml", "--profile", str(tmp_path / "none.yaml"))
    assert res.returncode == 2 and "--profile: file not found" in res.stderr
