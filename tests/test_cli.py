"""`pqtwin sim` end to end through the console entry point: files, formats, options."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from sim import contract
from tests.conftest import ROOT, session_processes

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


def test_tables_in_a_log_keep_each_value_on_its_row(tmp_path):
    """Piped (make run | tee, CI), not a terminal: no 80-column wrap splitting a label or a value and its CI over two
    lines; COLUMNS, where set, still rules. And one replication is one, not "1 replications"."""
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", "sim", "scenarios/paper-3node.yaml", "--mode",
           "both", "--replications", "2", "--set", "workload.fl.rounds=2", "--out", str(tmp_path / "run")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("│")]
    assert any("device handshake [95% CI]" in r and re.search(r"ms \[[\d.]+, [\d.]+\]", r) for r in rows), rows
    assert all(r.count("[") == r.count("]") for r in rows), rows  # no CI split over two lines
    narrow = subprocess.run([*cmd, "--force"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**env, "COLUMNS": "60"})  # fmt: skip
    assert narrow.returncode == 0 and max(len(line) for line in narrow.stdout.splitlines()[:20]) <= 60
    one = [*cmd[:4], "scenarios/localhost.yaml", "--replications", "1", "--out", str(tmp_path / "one")]
    assert "sequential, 1 replication, seed" in subprocess.run(one, capture_output=True, text=True, cwd=ROOT,
                                                               timeout=300, env=env).stdout  # fmt: skip


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


def test_ctrl_c_ends_a_run_with_replication_workers_and_leaves_nothing(tmp_path):
    """Replications run in worker processes: a terminal's Ctrl-C (the whole process group) ends the run (exit
    130, "interrupted", no traceback, also when it lands inside a compiled kernel) with no worker left and no
    partial run directory."""
    out = tmp_path / "cut"
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", "sim", "scenarios/ward-200.yaml",
           "--replications", "8", "--set", "run.horizon_s=120", "--workers", "2", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(session_processes(proc.pid)) < 3:  # the run and its two workers
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no workers started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 30
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(proc.pid) == []
    assert not out.exists() or not any(out.iterdir())


def test_an_interrupt_inside_compiled_code_is_an_interrupt_not_a_bug(monkeypatch, capsys):
    """Ctrl-C landing in a numba kernel comes back as a SystemError caused by the KeyboardInterrupt."""
    from pqtwin import cli

    def kernel(*_args: object, **_kwargs: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("CPUDispatcher(<function shared_cores>) returned a result with an exception set") from exc

    monkeypatch.setattr(cli, "app", kernel)
    assert cli.run(["sim", "x.yaml"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "internal error" not in err


def test_hw_run_warns_where_the_scenario_says_first_frames_wait_for_the_handshake(pqtwin):
    """The twin's devices send a session's first frame once they have their keys: a scenario whose devices wait
    for the whole handshake (``first_frame: after_handshake``) is simulated otherwise, and ``hw run`` says so in a
    line (before anything runs: a k8s dry run); paper-3node's devices are ``with_keys`` and run without it."""
    ward = pqtwin("hw", "run", "scenarios/ward-200.yaml", "--backend", "k8s", "--dry-run")
    assert ward.returncode == 0, ward.stderr
    (line,) = [x for x in ward.stderr.splitlines() if "first_frame" in x]
    assert "workload.devices[0] (ecg-patch-1) (and 7 more): first_frame: after_handshake" in line
    assert "set first_frame: with_keys" in line
    paper = pqtwin("hw", "run", "scenarios/paper-3node.yaml", "--backend", "k8s", "--dry-run")
    assert paper.returncode == 0 and "first_frame" not in paper.stderr, paper.stderr
