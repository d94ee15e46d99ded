"""What the command line does with the streams and the locale it is given: any locale's encoding, and an output
that cannot be written, end in a result or one line, never a traceback (an input hunt found both)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, SCENARIOS

ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


def pqtwin(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pqtwin", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=300, **kw)  # fmt: skip


@pytest.mark.parametrize("command", [["scenario", "check"], ["sim", "--replications", "1"]])
def test_a_locale_that_cannot_encode_what_we_print_gets_it_escaped(tmp_path, command):
    """Under LC_ALL=C without Python's UTF-8 mode stdout is ASCII: an em dash in the output raised after the run's
    files were written (`sim`: "internal error: UnicodeEncodeError"), and the internal-error handler itself failed
    writing its traceback file (`scenario check`: a raw traceback, exit 0)."""
    out = ["--out", str(tmp_path / "run")] if command[0] == "sim" else []
    res = pqtwin(*command, str(SCENARIOS / "paper-3node.yaml"), *out, env=ASCII_LOCALE)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    if command[0] == "scenario":
        assert "ok \\u2014 3 hosts" in res.stdout  # escaped, not lost


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["--help"], ["scenario", "check", str(SCENARIOS / "paper-3node.yaml")]])
def test_an_output_that_cannot_be_written_is_said_in_one_line(command):
    """`> /dev/full` (a full disk) was an internal error asking for a bug report."""
    with open("/dev/full", "w", encoding="utf-8") as full:
        res = subprocess.run([sys.executable, "-m", "pqtwin", *command], cwd=ROOT, stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == ["error: cannot write standard output: No space left on device"]


def test_every_product_file_reads_and_writes_text_as_utf8():
    """Text opened without an encoding takes the locale's: ASCII under LC_ALL=C without UTF-8 mode, where a scenario,
    a log or a report with one non-ASCII character would fail. Ruff's unspecified-encoding rule (a preview rule, so
    not in `make lint`'s selection) over the product's code."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this interpreter")
    dirs = ["sim", "hw", "pqtwin", "app_pages", "app.py"]
    res = subprocess.run([str(ruff), "check", "--select", "PLW1514", "--preview", "--output-format", "concise", *dirs],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout
