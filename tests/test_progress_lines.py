"""Progress in a log or a pipe (pqtwin/progress.py): a long command redirected to a file said nothing for minutes
(rich's bar draws nothing where stderr is no terminal); now it prints a plain line now and then, and a short one
stays as quiet as it was."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from pqtwin import cli
from pqtwin import progress as progress_mod
from pqtwin.progress import LogProgress, line

from .conftest import SCENARIOS

PAPER = (SCENARIOS / "paper-3node.yaml").resolve()


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def _log() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


def test_a_task_says_nothing_before_its_interval_then_a_line_at_most_every_interval() -> None:
    console, out = _log()
    clock = Clock()
    with LogProgress(console, every_s=30, clock=clock) as bar:
        task = bar.add_task("ward [sequential]", total=400)
        clock.now_s += 29.9
        bar.update(task, completed=10)
        assert out.getvalue() == ""  # a command shorter than the interval prints what it printed before
        clock.now_s += 0.2
        bar.update(task, completed=120)
        clock.now_s += 10
        bar.update(task, completed=200)  # within the interval of the last line
    assert out.getvalue().splitlines() == ["ward [sequential]: 120 of 400 (30 %), 30 s elapsed"]


def test_each_task_keeps_its_own_interval_and_a_label_goes_before_its_description() -> None:
    console, out = _log()
    clock = Clock()
    bar = LogProgress(console, label="paper [hw local, both]", every_s=5, clock=clock)
    rounds = bar.add_task("rounds", total=None)
    clock.now_s += 3
    other = bar.add_task("rounds", total=10)
    clock.now_s += 2
    bar.update(rounds, completed=3)
    bar.update(other, completed=3, description="verifying")
    clock.now_s += 3
    bar.update(other, completed=4)
    assert out.getvalue().splitlines() == ["paper [hw local, both] rounds: 3, 5 s elapsed",
                                           "paper [hw local, both] verifying: 4 of 10 (40 %), 8 s elapsed"]  # fmt: skip


@pytest.mark.parametrize("every_s", [0, -1, float("nan")])
def test_an_interval_that_is_not_positive_is_refused(every_s: float) -> None:
    with pytest.raises(ValueError, match="every_s"):
        LogProgress(_log()[0], every_s=every_s)


def test_a_line_counts_thousands_and_says_minutes() -> None:
    said = line("t: checking points", 120_000, 1_000_000, 150)
    assert said == "t: checking points: 120,000 of 1,000,000 (12 %), 2 min elapsed"


def test_a_simulation_redirected_to_a_log_says_how_far_it_is(capsys, tmp_path, monkeypatch) -> None:
    """stderr under pytest is no terminal, as a log file is: the bar drew nothing before."""
    monkeypatch.setattr(progress_mod, "EVERY_S", 1e-9)
    code = cli.run(["sim", str(PAPER), "--out", str(tmp_path / "run"), "--replications", "3", "--workers", "1",
                    "--mode", "both", "--set", "workload.fl.rounds=1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    said = re.findall(r"^paper-3node \[(sequential|concurrent)\]: (\d) of 3 \(\d+ %\), \d+ s elapsed$", err, re.M)
    assert ("sequential", "3") in said and ("concurrent", "3") in said, err


def test_a_sweep_check_redirected_to_a_log_says_how_many_points_it_checked(capsys, tmp_path, monkeypatch) -> None:
    from sim.sweep import plan as plan_mod

    monkeypatch.setattr(progress_mod, "EVERY_S", 1e-9)
    monkeypatch.setattr(plan_mod, "PROGRESS_EVERY", 1)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"sweep": "t", "scenario": str(PAPER), "replications": 1,
                                     "axes": [{"path": "workload.fl.rounds", "values": [1, 2, 3]}]}))  # fmt: skip
    code = cli.run(["sweep", "check", str(sweep), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert re.search(r"^t: checking points: 3 of 3 \(100 %\), \d+ s elapsed$", err, re.M), err


def test_a_short_simulation_in_a_log_prints_no_progress_line(capsys, tmp_path: Path) -> None:
    code = cli.run(["sim", str(PAPER), "--out", str(tmp_path / "run"), "--replications", "1", "--workers", "1",
                    "--set", "workload.fl.rounds=1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and "elapsed" not in err, err
