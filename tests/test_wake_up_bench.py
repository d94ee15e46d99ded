"""bench/wake_up.py: how slow a core runs just after it idled, folded into a curve per gap and window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from .conftest import ROOT, bench_module


def bench() -> Any:
    return bench_module("wake_up")


def test_the_curve_is_each_window_against_the_busy_cores_median():
    """A core 40 µs when kept busy reads 64 µs in the first ms after a 20 ms gap and 44 µs later: slowdown 1.6 and
    all slow there, 1.1 and none slow after; a window without probes is left out."""
    w = bench()
    control = [(t / 1e3, 40.0) for t in range(50)]
    woken = [(0.0002, 64.0), (0.0006, 64.0), *((t / 1e3, 44.0) for t in range(2, 50))]
    rows = {(r["gap_s"], r["from_s"]): r for r in w.curve({0.0: control, 0.02: woken})}
    first, later = rows[(0.02, 0.0)], rows[(0.02, 0.005)]
    assert first["slowdown"] == pytest.approx(1.6) and first["slow_share"] == 1.0 and first["n"] == 2
    assert later["slowdown"] == pytest.approx(1.1) and later["slow_share"] == 0.0
    assert rows[(0.0, 0.0)]["slowdown"] == 1.0
    assert (0.02, 0.05) not in rows  # 50-200 ms: no probe that late


def test_the_bench_measures_every_gap_on_every_core(tmp_path):
    out = tmp_path / "wake.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "wake_up.py"), "--gaps-ms", "2", "--busy-ms", "3",
                        "--seconds", "0.05", "--json", str(out)], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    cpus = sorted(os.sched_getaffinity(0))
    assert {(x["cpu"], x["gap_s"]) for x in rows} == {(c, g) for c in cpus for g in (0.0, 0.002)}
    assert all(x["p50_us"] > 0 and x["n"] > 0 for x in rows)
