"""What the command line does with the streams and the locale it is given: any locale's encoding, and an output
that cannot be written, end in a result or one line, never a traceback (an input hunt found both)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pqtwin import cli

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


def _limited(soft: int, hard: int) -> Callable[[], None]:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return limit


def test_a_low_open_files_limit_is_raised_and_one_too_low_to_raise_is_one_line(tmp_path):
    """Under `ulimit -n 12` a sweep hung with library tracebacks, Dask's nanny failed at 16-32 and a twin run ended
    in an internal error at 16 (a fault hunt). The soft limit is now raised up to the hard one, as anyone may; a
    hard limit below what a command needs is refused in one line before it starts."""
    import resource

    probe = ("import resource; from pqtwin import cli; cli.run(['scenario', 'schema']); "
             "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")  # fmt: skip
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=_limited(12, hard), timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    raised = int(done.stdout.strip().splitlines()[-1])
    assert raised >= 64 and raised == (min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096)
    done = subprocess.run([sys.executable, "-c", "from pqtwin.cli import main; main()", "scenario", "check",
                           "scenarios/paper-3node.yaml"], capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=_limited(32, 32), timeout=60)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "may open at most 32 files (ulimit -n; hard limit 32); pqtwin needs 64" in lines[0]


def test_too_many_open_files_midway_is_one_line_not_an_internal_error(capsys, monkeypatch):
    from sim import scenario as scn

    def out_of_files(*_args: object, **_kw: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(scn, "load_scenario", out_of_files)
    capsys.readouterr()
    code = cli.run(["scenario", "check", str(ROOT / "scenarios" / "paper-3node.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == ["error: too many open files (Too many open files): raise the limit (ulimit -n) or "
                                 "run fewer at once"], err  # fmt: skip
