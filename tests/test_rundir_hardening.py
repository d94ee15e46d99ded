"""The run directory against what a stranger plants in it, and against one bad row in a node's spans (an attack
hunt found each): a ``.lock`` link in an empty --out had its target truncated and overwritten with our pid; a
FIFO among the nodes' reports hung the run's end; one span ending before it starts (a rewritten header time) cost
the aggregator its whole spans file, and a run that finished every round reported none."""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hw import rundir
from hw.rundir import NodeResult, merge_spans, node_results, write_results
from pqtwin import cli
from sim import contract
from sim.contract import MAX_SPAN_TIME_S, RunLayout, SpanRow, read_spans, spans_bytes, to_frame
from sim.errors import UserError
from sim.scenario import load_scenario

from .conftest import SCENARIOS

PAPER = SCENARIOS / "paper-3node.yaml"
VICTIM = "precious data, 1 MB of it in real life\n"


def _one_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = cli.run(list(args))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    assert "Traceback" not in out + err and "internal error" not in err
    return lines[0]


# --- A: the lock, and the other files at fixed names -------------------------------------------------------------


@pytest.mark.parametrize("command", [["sim", str(PAPER), "--replications", "1"], ["hw", "run", str(PAPER)]])
def test_a_planted_lock_link_is_refused_and_its_target_left_alone(capsys, tmp_path, command):
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text(VICTIM)
    (out / rundir.LOCK).symlink_to(victim)
    line = _one_error(capsys, *command, "--out", str(out), "--set", "workload.fl.rounds=1")
    assert str(out / rundir.LOCK) in line and "symbolic link" in line
    assert victim.read_text() == VICTIM  # was '<pid>\n'
    assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK] and (out / rundir.LOCK).is_symlink()


def test_a_lock_link_to_a_missing_file_creates_nothing(tmp_path):
    out, target = tmp_path / "run", tmp_path / "created-by-us"
    out.mkdir()
    (out / rundir.LOCK).symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"), rundir.claimed(out):
        pass
    assert not os.path.lexists(target)  # O_CREAT made it through the link


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _hard_link_to_victim(path: Path) -> None:
    os.link(path.parent.parent / "victim.txt", path)


@pytest.mark.parametrize(
    ("plant", "what"),
    [(lambda p: p.mkdir(), "is a directory"),
     (_fifo, "not a regular file"),
     (_hard_link_to_victim, "hard link")],
)  # fmt: skip
def test_a_lock_that_is_not_a_plain_file_of_its_own_is_one_line(tmp_path, plant, what):
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text(VICTIM)
    plant(out / rundir.LOCK)
    with pytest.raises(UserError) as exc, rundir.claimed(out):
        pass
    assert len(exc.value.lines) == 1 and str(out / rundir.LOCK) in exc.value.lines[0] and what in exc.value.lines[0]
    assert victim.read_text() == VICTIM


def test_a_stale_lock_file_of_a_killed_run_still_counts_as_empty(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK).write_text("12345\n")
    with rundir.claimed(out):
        assert (out / rundir.LOCK).read_text() == f"{os.getpid()}\n"
    assert not any(out.iterdir())


def test_a_marker_that_is_a_link_is_no_earlier_run(tmp_path):
    """A link to some real run's status.json made a stranger's folder a run for --force, which then removed
    whatever there was named as a run's outputs (logs/, keys/, ...)."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "status.json").write_text(json.dumps({"state": "completed", "reason": ""}))
    out = tmp_path / "shared"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "mine.txt").write_text("keep")
    (out / "status.json").symlink_to(real / "status.json")
    with pytest.raises(UserError, match="holds no earlier run"), rundir.claimed(out, force=True):
        pass
    assert (out / "logs" / "mine.txt").read_text() == "keep"


@pytest.mark.parametrize("discard", [False, True], ids=["removed", "set-aside"])
def test_force_removes_links_never_what_they_point_to(tmp_path, discard):
    """(Held before: checked here so that it stays so.) An earlier run's outputs that are links are unlinked."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    out = tmp_path / "run"
    out.mkdir()
    (out / "status.json").write_text(json.dumps({"state": "completed", "reason": ""}))
    (out / "logs").symlink_to(elsewhere, target_is_directory=True)
    (out / "spans.parquet").symlink_to(victim)
    (out / "nodes").mkdir()
    (out / "nodes" / "inner").symlink_to(elsewhere, target_is_directory=True)
    with rundir.claimed(out, force=True, discard=discard):
        assert sorted(p.name for p in out.iterdir()) == sorted([rundir.LOCK] + [rundir.ASIDE] * discard)
    assert (elsewhere / "keep.txt").read_text() == "keep" and victim.read_text() == VICTIM
    assert sorted(p.name for p in out.iterdir()) == []


def _earlier_sim(capsys: pytest.CaptureFixture[str], out: Path) -> dict[str, bytes]:
    capsys.readouterr()
    code = cli.run(["sim", str(PAPER), "--out", str(out), "--replications", "1", "--workers", "1",
                    "--set", "workload.fl.rounds=1"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stop", [KeyboardInterrupt, MemoryError], ids=["ctrl-c", "failed"])
def test_a_forced_run_that_does_not_finish_puts_the_earlier_run_back(capsys, tmp_path, monkeypatch, stop):
    """`sim --force` removed the earlier run before it simulated: stopped (Ctrl-C) or failed midway, its own half
    was discarded and nothing was left. Now the earlier run waits aside and comes back whole."""
    out = tmp_path / "run"
    before = _earlier_sim(capsys, out)
    from sim import runner

    def stopped(*_args, **_kw):
        assert sorted(p.name for p in out.iterdir()) == sorted([rundir.LOCK, rundir.ASIDE])  # set aside, not removed
        raise stop()

    monkeypatch.setattr(runner, "simulate_modes", stopped)
    saved = tmp_path / "tmp"  # a failure's traceback is saved here, not among the machine's /tmp files
    saved.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(saved))
    code = cli.run(["sim", str(PAPER), "--out", str(out), "--force", "--replications", "1", "--workers", "1"])
    err = capsys.readouterr().err
    assert code != 0
    assert len(list(saved.glob("pqtwin-error-*.txt"))) == (stop is MemoryError), err
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before


def test_a_forced_run_that_finishes_leaves_only_its_own_outputs(capsys, tmp_path):
    out = tmp_path / "run"
    _earlier_sim(capsys, out)
    (out / "notes.txt").write_text("the user's")
    (out / "sequential").mkdir()  # an output only the earlier run wrote (``--mode both``)
    code = cli.run(["sim", str(PAPER), "--out", str(out), "--force", "--replications", "1", "--workers", "1",
                    "--set", "workload.fl.rounds=2"])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["rounds_completed"] == 2
    assert not (out / rundir.ASIDE).exists() and not (out / "sequential").exists()
    assert (out / "notes.txt").read_text() == "the user's"


def test_an_earlier_run_left_aside_by_a_killed_run_comes_back_at_the_next_claim(tmp_path):
    """A run killed (SIGKILL) while it replaced another left the earlier one aside and its own half in place: the
    next --force claim puts the whole earlier run back before it sets it aside again; a failed run then keeps it."""
    out = tmp_path / "run"
    (out / rundir.ASIDE).mkdir(parents=True)
    (out / rundir.ASIDE / "summary.json").write_text("the whole earlier run")
    (out / "status.json").write_text(json.dumps({"state": "interrupted", "reason": "killed"}))
    (out / "spans.parquet").write_text("the killed run's half")
    with pytest.raises(RuntimeError), rundir.claimed(out, force=True, discard=True):
        assert (out / rundir.ASIDE / "summary.json").read_text() == "the whole earlier run"
        raise RuntimeError("this run fails too")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    assert (out / "summary.json").read_text() == "the whole earlier run"


def test_a_fifo_among_the_nodes_reports_is_left_out_not_waited_for(tmp_path):
    NodeResult(state="completed", rounds=1).write(tmp_path, "client-1")
    fifo = tmp_path / "nodes" / "zz.json"
    os.mkfifo(fifo)
    got: list[object] = []
    ignored: list[str] = []
    reader = threading.Thread(target=lambda: got.append(node_results(tmp_path, ignored)), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # the old code blocks in open(): a writer lets it go
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        reader.join(10)
        pytest.fail("node_results waited on a FIFO")
    assert list(got[0]) == ["client-1"]  # type: ignore[call-overload]
    assert len(ignored) == 1 and "nodes/zz.json" in ignored[0]


# --- C: one bad row costs only itself ----------------------------------------------------------------------------


def _rows(pod: str, rounds: int) -> list[SpanRow]:
    rows = []
    for r in range(1, rounds + 1):
        t = float(r)
        rows.append(SpanRow(0, r, pod, "local", "round", "round", t, t + 0.9, 0.0, 0))
        rows.append(SpanRow(0, r, pod, "local", "distribute", "transfer", t, t + 0.1, 0.0, 1000))
    return rows


def _client_rows(rounds: int) -> list[SpanRow]:
    return [SpanRow(0, r, "client-1", "local", "receive", "fl.deserialize", r + 0.1, r + 0.2, 0.0, 0)
            for r in range(1, rounds + 1)]  # fmt: skip


BAD_ROWS = [
    ({"start_s": 5.0, "end_s": 4.0}, "a span ends before it starts"),
    ({"end_s": math.inf}, "start_s or end_s is missing or not finite"),
    ({"start_s": math.nan}, "start_s or end_s is missing or not finite"),
    ({"queue_wait_s": math.nan}, "queue_wait_s is missing or not finite"),
    ({"queue_wait_s": -1.0}, "negative queue_wait_s"),
    ({"end_s": 2 * MAX_SPAN_TIME_S}, "a time beyond 1e+09 s (runs last at most a simulated year)"),
    ({"bytes": -5}, "negative bytes"),
    ({"phase": "lunch"}, "unknown phases ['lunch']"),
    ({"op": None}, "column 'op' has empty values"),
]


def _write_with_bad_row(path: Path, rows: list[SpanRow], change: dict[str, object], at: int) -> None:
    df = to_frame(rows)
    for column, value in change.items():
        if value is None:
            df[column] = df[column].astype(object)
        df.loc[at, column] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)


@pytest.mark.parametrize(("change", "problem"), BAD_ROWS)
def test_a_bad_row_leaves_out_itself_not_the_nodes_file(tmp_path, change, problem):
    layout = RunLayout(tmp_path)
    agg = _rows("aggregator", 5)
    _write_with_bad_row(layout.node_spans("aggregator"), agg, change, at=3)  # round 2's transfer
    layout.node_spans("client-1").write_bytes(spans_bytes(to_frame(_client_rows(5))))
    ignored: list[str] = []
    df = merge_spans(tmp_path, ignored)
    assert ignored == [f"spans/aggregator.parquet: 1 of {len(agg)} spans left out: {problem}"]
    assert len(df[(df.pod == "aggregator") & (df.op == "round")]) == 5  # every round kept
    assert len(df[df.op == "transfer"]) == 4 and len(df[df.phase == "distribution"]) == 5
    with pytest.raises(ValueError, match=r"aggregator\.parquet: "):  # the strict reader is unchanged
        read_spans(layout.node_spans("aggregator"))


def test_rows_with_several_problems_are_counted_once_each_and_said_in_one_line(tmp_path):
    path = tmp_path / "spans" / "aggregator.parquet"
    df = to_frame(_rows("aggregator", 4))
    df.loc[1, ["start_s", "end_s"]] = [3.0, 2.0]
    df.loc[3, ["start_s", "end_s"]] = [5.0, 4.0]
    df.loc[5, "end_s"] = math.nan
    df.loc[5, "bytes"] = -1  # also negative: counted under its first problem only
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    kept, total, left_out = contract.read_valid_spans(path)
    assert (len(kept), total) == (5, 8)
    assert left_out == {"start_s or end_s is missing or not finite": 1, "a span ends before it starts": 2}
    ignored: list[str] = []
    merge_spans(tmp_path, ignored)
    assert ignored == ["spans/aggregator.parquet: 3 of 8 spans left out: start_s or end_s is missing or not finite "
                       "(1); a span ends before it starts (2)"]  # fmt: skip


def test_a_file_that_is_not_spans_is_still_left_out_whole(tmp_path):
    (tmp_path / "spans").mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "spans" / "aggregator.parquet")
    (tmp_path / "spans" / "client-1.parquet").write_bytes(b"not parquet")
    ignored: list[str] = []
    assert len(merge_spans(tmp_path, ignored)) == 0
    assert len(ignored) == 2 and all(w.endswith("(left out)") for w in ignored)
    assert "missing column" in ignored[0] and "cannot read spans" in ignored[1]


def test_a_finished_run_with_one_bad_span_reports_its_rounds(tmp_path):
    """The hunt's run: completed, rounds_completed 0 (of 10), the aggregator's spans file "(left out)"."""
    s = load_scenario(SCENARIOS / "localhost.yaml")
    layout = RunLayout(tmp_path)
    agg = _rows("aggregator", 10)
    _write_with_bad_row(layout.node_spans("aggregator"), agg, {"start_s": 9.0, "end_s": 1.0}, at=1)
    layout.node_spans("client-1").write_bytes(spans_bytes(to_frame(_client_rows(10))))
    NodeResult(state="completed", accuracy_per_round=[0.5] * 10).write(tmp_path, "aggregator")
    summary = write_results(s, tmp_path, "aggregator", "completed", "", {}, 12.0, {"this-machine": 2},
                            {"mode": "sequential", "seed": 1}, machine="this-machine")  # fmt: skip
    assert summary.rounds_completed == 10
    assert summary.warnings == [f"spans/aggregator.parquet: 1 of {len(agg)} spans left out: a span ends before it "
                                "starts"]  # fmt: skip
    assert len(read_spans(layout.spans)) == len(agg) - 1 + 10 + 10  # the merged file reads back: valid


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-0.5", "1e308"])
def test_a_report_with_an_accuracy_no_run_can_have_is_left_out_and_the_summary_reads_back(tmp_path, value):
    """A fuzz case: ``hw recover`` on a run whose aggregator's report held a NaN accuracy wrote it into a summary its
    own reader refused (an internal error). A report is a fraction's list or it is not the aggregator's."""
    s = load_scenario(SCENARIOS / "localhost.yaml")
    layout = RunLayout(tmp_path)
    layout.node_spans("aggregator").parent.mkdir(parents=True, exist_ok=True)
    layout.node_spans("aggregator").write_bytes(spans_bytes(to_frame(_rows("aggregator", 3))))
    NodeResult(state="completed", accuracy_per_round=[0.5] * 3).write(tmp_path, "aggregator")
    report = layout.node_result("aggregator")
    report.write_text(report.read_text().replace("0.5\n", f"{value}\n", 1))
    ignored: list[str] = []
    assert node_results(tmp_path, ignored) == {}
    assert ignored == ["nodes/aggregator.json: not a node's report (left out)"]
    summary = write_results(s, tmp_path, "aggregator", "completed", "", {}, 12.0, {"this-machine": 2},
                            {"mode": "sequential", "seed": 1}, machine="this-machine")  # fmt: skip
    assert contract.read_summary(layout.summary) == summary


def _leftover_of_a_killed_sim(capsys: pytest.CaptureFixture[str], out: Path) -> None:
    """What `sim --mode both` killed between its modes leaves: ``sequential/`` alone, no top-level comparison."""
    _earlier_sim(capsys, out / "sequential")


def _leftover_of_a_killed_twin(_capsys: pytest.CaptureFixture[str], out: Path) -> None:
    """What `hw run` killed while it provisioned keys leaves: keys/<process>/{identity,trust}.json."""
    for proc in ("aggregator", "client-1"):
        (out / "keys" / proc).mkdir(parents=True)
        (out / "keys" / proc / "identity.json").write_text("{}")
        (out / "keys" / proc / "trust.json").write_text("{}")


@pytest.mark.parametrize("leave", [_leftover_of_a_killed_sim, _leftover_of_a_killed_twin], ids=["sim-both", "twin"])
def test_force_takes_what_a_killed_run_left(capsys, tmp_path, leave):
    """A command killed before it wrote its markers left a directory that was "not empty" without --force and held
    "no earlier run" with it: the user had to remove it by hand (a fault hunt)."""
    out = tmp_path / "run"
    out.mkdir()
    leave(capsys, out)
    with rundir.claimed(out, force=True, discard=True):
        pass
    with rundir.claimed(out, force=True):
        assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK]


def test_a_users_keys_folder_is_still_no_earlier_run(tmp_path):
    out = tmp_path / "mine"
    (out / "keys" / "ssh").mkdir(parents=True)
    (out / "keys" / "ssh" / "id_ed25519").write_text("the user's key")
    with pytest.raises(UserError, match="holds no earlier run"), rundir.claimed(out, force=True):
        pass
    assert (out / "keys" / "ssh" / "id_ed25519").read_text() == "the user's key"


def test_the_key_files_a_killed_run_may_leave_are_those_provisioning_writes():
    from hw.provision import IDENTITY, TRUST

    assert {Path(IDENTITY).name, Path(TRUST).name} == rundir.KEY_FILES
