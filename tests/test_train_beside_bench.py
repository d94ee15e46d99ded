"""bench/train_beside.py: the twin's training step alone and beside other work, in adjacent pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "train_beside.py")
TOY = ["--parameters", "2000", "--samples", "20", "--bytes", "65536"]  # a step of a millisecond


def bench(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """bench/train_beside.py with ``argv``, its output captured."""
    return subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=timeout)


def test_train_beside_measures_each_kind(tmp_path: Path) -> None:
    """bench/train_beside.py on a toy step: a row per kind asked for, adjacent ratios (no figure is judged here: the
    machine is noisy), and a bad kind refused in one line."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two usable cores")
    out = tmp_path / "beside.json"
    args = [*TOY, "--seconds", "0.3"]
    run = bench(*args, "--kinds", "idle,crypto,loopback", "--json", str(out))
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["kind"] for r in rows] == ["idle", "crypto", "loopback"]
    for r in rows:
        assert r["pairs"] >= 3 and r["ratio_p25"] <= r["ratio_p50"] <= r["ratio_p75"]
        assert r["alone_p50_s"] > 0 and r["beside_p50_s"] > 0
        assert f"\n{r['kind']} " in run.stdout
    turned = bench(*args, "--kinds", "idle,train", "--timed", "crypto", "--json", str(out))
    assert turned.returncode == 0, turned.stderr
    data = json.loads(out.read_text())
    assert data["timed"] == "crypto" and [r["kind"] for r in data["rows"]] == ["idle", "train"]
    assert "crypto pass over 65,536 bytes" in turned.stdout
    bad = bench("--kinds", "idle,gpu", timeout=60)
    assert bad.returncode == 2 and "--kinds gpu: not one of" in bad.stderr and "Traceback" not in bad.stderr
    huge = bench("--parameters", "99999999999999", timeout=60)
    assert huge.returncode == 2 and "--parameters 1e+14: must be in" in huge.stderr and "Traceback" not in huge.stderr


def test_train_beside_staggers_two_steps_by_the_offsets_asked(tmp_path: Path) -> None:
    """--offsets: a row per offset, each with pairs of a first- and a second-started step and their difference's
    quartiles in order; a bad offset refused in one line."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two usable cores")
    out = tmp_path / "staggered.json"
    run = bench(*TOY, "--seconds", "0.2", "--offsets", "0,2.5", "--json", str(out))
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["staggered"] and [r["offset_s"] for r in data["rows"]] == [0.0, 0.0025]
    for r in data["rows"]:
        assert r["pairs"] >= 3 and r["first_p50_s"] > 0 and r["second_p50_s"] > 0
        assert r["first_minus_second_p25_s"] <= r["first_minus_second_p50_s"] <= r["first_minus_second_p75_s"]
    assert "  2.5 ms " in run.stdout and "the second started after the first" in run.stdout
    for bad, said in ((["--offsets", "1,soon"], "--offsets 'soon': not a number"),
                      (["--offsets", "nan"], "--offsets nan: must be in [0, 10000] ms")):  # fmt: skip
        r = bench(*bad, timeout=60)
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, r.stderr
