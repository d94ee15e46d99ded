"""bench/sched_idle.py and bench/gil_release.py, run on small inputs: what they read and print."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

from hw import schedtrace
from sim import contract

from .test_schedtrace import LINES, sw, waking, woke

ROOT = Path(__file__).resolve().parents[1]


def test_sched_idle_pools_a_cells_runs_and_prints_both_tables(tmp_path):
    """Two runs of one cell (<cell>-0, <cell>-1): each has a core going idle beside a waiting thread that its own
    core then runs, and a wake-up from another busy core that queues the thread on its waker's."""
    text = "".join([
        sw(0, 1.0, 0, "R", 10), sw(1, 1.0, 0, "R", 20), sw(1, 1.1, 20, "S", 11),
        waking(0, 1.2, 20), woke(0, 1.2, 20, 0),  # busy own core: to the waker's
        waking(0, 1.3, 30), woke(0, 1.3, 30, 0),  # 30 never ran: not counted
        sw(1, 1.4, 11, "S", 0),  # cpu 1 idles while 20 and 30 wait on cpu 0
        sw(0, 1.5, 10, "S", 20),  # their own core runs 20 first
    ])  # fmt: skip
    for k in (0, 1):
        run = tmp_path / f"hw-cell-{k}"
        run.mkdir()
        schedtrace.keep(text, (1.0, 2.0), {"a": 10}, run / "sched_trace.txt.gz")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "sched_idle.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    cell = next(line for line in out.splitlines() if line.startswith("hw-cell "))
    assert cell.split()[1:3] == ["2", "0"]  # two cases pooled, none pulled
    busy = next(line for line in out.splitlines() if "other cpu, busy" in line)
    assert "0 /      2 /      0" in busy and "waker's: 100.0%" in busy


def test_sched_idle_splits_a_both_runs_rounds_by_mode(tmp_path):
    """A --mode both run (modes.json beside its spans): round 1 (sequential, 10.0-10.5 s on the trace's clock) and
    round 2 (concurrent, 10.5-11.0), each with the CPU its nodes used and its threads' waits (test_schedtrace's
    trace: node a waits 0.25 s in round 1, 0.2 s of it beside an idle core, and none in round 2)."""
    run = tmp_path / "hw-cell-0"
    run.mkdir()
    schedtrace.keep(LINES, (10.0, 11.0), {"a": 100}, run / "sched_trace.txt.gz")
    rows = [(0, r, "aggregator", "h", "round", "round", 0.5 * (r - 1), 0.5 * r, 0.0, 0) for r in (1, 2)]
    contract.write_spans(pd.DataFrame(rows, columns=list(contract.COLUMNS)), run / "spans.parquet")
    (run / "modes.json").write_text("{}")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "sched_idle.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    got = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("  hw-cell ")}
    # rounds, CPU, wait, beside an idle core (ms); by node: CPU/wait
    assert got["sequential"] == ["1", "450.0", "250.0", "200.0", "a", "450.0/250.0"]
    assert got["concurrent"] == ["1", "700.0", "0.0", "0.0", "a", "700.0/0.0"]


def test_sched_idle_says_where_it_found_no_trace(tmp_path):
    got = subprocess.run([sys.executable, str(ROOT / "bench" / "sched_idle.py"), str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert got.returncode == 2 and "no sched_trace.txt.gz" in got.stderr and "Traceback" not in got.stderr


def test_gil_release_times_every_operation_on_one_and_two_threads():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gil_release.py"), "--bytes", "4000", "--trials", "1"],
                         capture_output=True, text=True, check=True, timeout=120).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.endswith("x") and "µs" in line]
    assert any(r.startswith("serialize 4,000 B") for r in rows) and any("ML-DSA-65 sign" in r for r in rows)
    # a ratio of two timings, each a positive finite number; no bound on its size: a unit test is no speed target
    # (one trial on a host whose cores change state read above 4 in a CI run, 2026-12-01 22:07)
    assert all(math.isfinite(x := float(r.split()[-1].rstrip("x"))) and x > 0 for r in rows)


def test_sched_idle_names_a_trace_it_cannot_read(tmp_path):
    (tmp_path / "run-0").mkdir()
    (tmp_path / "run-0" / "sched_trace.txt.gz").write_bytes(b"\xff\xfe not gzip")
    got = subprocess.run([sys.executable, str(ROOT / "bench" / "sched_idle.py"), str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert got.returncode == 2 and "run-0/sched_trace.txt.gz: not a readable" in got.stderr
    assert "Traceback" not in got.stderr
