"""bench/suite_cost.py: each test's CPU, its own and its children's, from a real pytest run on xdist workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

BENCH = ROOT / "bench" / "suite_cost.py"

TESTS = """
import subprocess, sys, time

def test_spins_in_its_own_process():
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass

def test_spins_in_a_child():
    subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + 0.3\\n"
                    "while time.process_time() < end: pass"], check=True)

def test_sleeps():
    time.sleep(0.3)
"""


def test_a_tests_cpu_is_split_into_its_own_and_its_childrens(tmp_path: Path) -> None:
    file = tmp_path / "test_three.py"
    file.write_text(TESTS)
    out = tmp_path / "cost.json"
    res = subprocess.run([sys.executable, str(BENCH), "--workers", "1", "--json", str(out), "--", str(file)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 tests on 1 workers" in res.stdout and "in the processes they started" in res.stdout, res.stdout
    doc = json.loads(out.read_text())
    rows = {r["test"].split("::")[1]: r for r in doc["rows"]}
    assert set(rows) == {"test_spins_in_its_own_process", "test_spins_in_a_child", "test_sleeps"}
    own, child, sleeps = rows["test_spins_in_its_own_process"], rows["test_spins_in_a_child"], rows["test_sleeps"]
    assert own["own_cpu_s"] >= 0.25 and own["children_cpu_s"] < 0.05
    assert child["children_cpu_s"] >= 0.25 and child["own_cpu_s"] < 0.2
    assert sleeps["wall_s"] >= 0.3 and sleeps["own_cpu_s"] + sleeps["children_cpu_s"] < 0.1
    assert doc["children_cpu_s"] >= 0.25 and doc["pytest_exit"] == 0


def test_a_selection_that_runs_nothing_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "test_none.py"
    empty.write_text("")
    res = subprocess.run([sys.executable, str(BENCH), "--workers", "1", "--", str(empty)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2 and res.stderr.strip().startswith("suite_cost: pytest ran no test"), res.stderr
    assert "Traceback" not in res.stderr
