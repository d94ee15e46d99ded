"""A twin run directory whose orchestrator ended without writing the results (SIGKILL, the out-of-memory killer, a
full disk) is recoverable (``pqtwin hw recover``), and a node process that died mid-run is said, not silent (a fault
hunt's classes B and G: the run's rounds were kept in journals nothing read, and a SIGKILLed device emulator ended a
run "completed" with no word of it)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hw import local, rundir
from hw.lifecycle import alive, process_start, stopped
from hw.local import Children, node_warnings, recover_run, run_local
from hw.rundir import RunStatus
from sim import contract
from sim.errors import UserError
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS

SMALL = ["workload.fl.model_parameters=50000", "workload.fl.samples_per_client=300"]
NO_DEVICES = ["workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]


def _progress(out: Path) -> int:
    try:
        return int(json.loads((out / "progress.json").read_text())["round"])
    except (OSError, ValueError, KeyError):
        return 0


def _wait(what, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_an_orchestrator_killed_mid_run_leaves_rounds_hw_recover_writes(tmp_path, pqtwin):
    """SIGKILL of `pqtwin hw run` (what the out-of-memory killer does): status.json says the run is running and
    whose it is; hw recover refuses while it runs, and once it is dead writes the rounds its nodes finished."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", "hw", "run", "scenarios/localhost.yaml",
           "--rounds", "200", "--out", str(out), *[a for o in [*SMALL, *NO_DEVICES] for a in ("--set", o)]]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _progress(out) >= 2)
        status = json.loads((out / "status.json").read_text())
        assert status["state"] == "running" and status["pid"] == proc.pid, status
        busy = pqtwin("hw", "recover", str(out))  # the run holds its directory: nothing is written meanwhile
        assert busy.returncode == 2 and "its run is still going" in busy.stderr, busy.stderr
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    nodes = json.loads((out / "pids.json").read_text())
    _wait(lambda: not any(alive(pid) for pid in nodes.values()), 30)  # they end with their parent (SIGTERM)
    journals = {f: f.read_bytes() for f in (out / "spans").glob("*.journal")}
    assert not (out / "summary.json").exists() and journals

    # --force replaced runs, and so removed the journals of this one's finished rounds: refused, nothing touched
    small = [a for o in [*SMALL, *NO_DEVICES] for a in ("--set", o)]
    # (a simulation never replaces a twin run, recovered or not: it says so first)
    refusals = {"hw": f"kept by its nodes that --force would remove: `pqtwin hw recover {out}`",
                "sim": "holds a hardware twin run, whose measurements --force would remove"}  # fmt: skip
    for command in (["hw", "run", "scenarios/localhost.yaml", "--rounds", "1"], ["sim", "scenarios/localhost.yaml"]):
        forced = pqtwin(*command, "--out", str(out), "--force", *small)
        lines = forced.stderr.strip().splitlines()
        assert forced.returncode == 2 and len(lines) == 1, forced.stderr
        assert refusals[command[0]] in lines[0], lines
    assert {f: f.read_bytes() for f in (out / "spans").glob("*.journal")} == journals

    res = pqtwin("hw", "recover", str(out))
    assert res.returncode == 0, res.stderr
    assert "recovered:" in res.stdout and "Traceback" not in res.stderr
    summary = contract.read_summary(out / "summary.json")
    assert summary.state == "interrupted" and summary.rounds_completed >= 2
    assert f"its orchestrator (process {proc.pid}) ended without writing the results" in summary.reason
    assert len(summary.accuracy_per_round) == summary.rounds_completed and summary.initial_accuracy is not None
    assert any("pqtwin hw recover" in w for w in summary.warnings)
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "interrupted" and status["recovered"] is True
    spans = contract.read_spans(out / "spans.parquet")
    assert set(spans[spans.phase == "round"]["round"]) >= {1, 2}
    assert not list(out.rglob("*.journal")) and not list(out.rglob("*.tmp")) and not (out / ".lock").exists()
    again = pqtwin("hw", "recover", str(out))  # a directory with its results has nothing to recover
    assert again.returncode == 2 and "nothing to recover" in again.stderr
    # recovered, it is a twin run like any: a simulation does not replace its measurements (a twin run would)
    kept = pqtwin("sim", "scenarios/localhost.yaml", "--out", str(out), "--force", *small)
    assert kept.returncode == 2 and "holds a hardware twin run" in kept.stderr, kept.stderr
    assert contract.read_summary(out / "summary.json").state == "interrupted"


def test_results_the_disk_refuses_name_the_file_and_hw_recover_writes_them_later(tmp_path, monkeypatch):
    """A full disk at the run's end: the error named the run directory only, and nothing ever wrote the results
    once there was room. Now the file is named, no file is half-written, and the run's end is kept for recover."""
    s = load_scenario(SCENARIOS / "localhost.yaml", [*SMALL, *NO_DEVICES])

    def full(summary, out):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() to a full disk: no file named

    monkeypatch.setattr(rundir, "write_summary", full)
    with pytest.raises(UserError) as caught:
        run_local(s, tmp_path, "sequential", rounds=2, seed=3)
    assert caught.value.lines[0] == f"{tmp_path / 'summary.json'}: cannot write: No space left on device"
    assert f"pqtwin hw recover {tmp_path}" in caught.value.lines[1]
    assert not (tmp_path / "summary.json").exists() and not list(tmp_path.rglob("*.tmp"))
    status = json.loads((tmp_path / "status.json").read_text())  # whole: still running, with how the run ended
    assert status["state"] == "running" and status["outcome"]["state"] == "completed"
    monkeypatch.undo()  # the disk has room again

    status["pid"] = _dead_pid()  # the orchestrator was this test's process: make it one that has ended
    (tmp_path / "status.json").write_text(json.dumps(status))
    # a write the end cut short (a node's progress.json when its process was killed) left its temporary file
    cut_short = tmp_path / "progress.json.7b7d8f29803b.tmp"
    cut_short.write_text('{"round": ')
    summary = recover_run(tmp_path)
    assert summary.state == "completed" and summary.rounds_completed == 2 and len(summary.accuracy_per_round) == 2
    assert not cut_short.exists() and not list(tmp_path.rglob("*.tmp"))
    assert contract.read_summary(tmp_path / "summary.json").state == "completed"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "completed" and status["exit_codes"]["aggregator"] == 0
    with pytest.raises(UserError, match="nothing to recover"):
        recover_run(tmp_path)


def test_hw_recover_refuses_a_live_orchestrator_and_what_is_no_twin_run(tmp_path):
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "reason": "", "pid": os.getpid(),
                                                      "pid_start": process_start(os.getpid())}))  # fmt: skip
    with pytest.raises(UserError, match="nothing to recover: not a twin run"):  # no run.json: no node ever started
        recover_run(tmp_path)
    with pytest.raises(UserError, match="is not a directory"):
        recover_run(tmp_path / "missing")
    status = {"state": "running", "reason": "", "pid": os.getpid(), "pid_start": process_start(os.getpid())}
    with pytest.raises(UserError, match=rf"its orchestrator \(process {os.getpid()}\) is still running"):
        local._check_ended(tmp_path, RunStatus.model_validate(status))
    local._check_ended(tmp_path, RunStatus.model_validate({**status, "pid_start": "1"}))  # another process now


def test_a_process_is_alive_only_as_itself():
    me = os.getpid()
    assert alive(me) and alive(me, process_start(me))
    assert not alive(me, "0") and not alive(_dead_pid()) and not alive(0) and not alive(-1)


def test_a_stopped_node_is_not_waited_for_at_the_runs_end(monkeypatch):
    """A node stopped by SIGSTOP (a frozen box, a debugger) cannot end after the aggregator; the run waited 10 s
    for it all the same, and 10 s more for each other one (``Children.stop`` ends it)."""
    monkeypatch.setattr(local, "NODES_END_S", 120.0)
    frozen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        frozen.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while not stopped(frozen.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stopped(frozen.pid) and not stopped(os.getpid())
        waiter = threading.Thread(target=local._let_nodes_end, args=([frozen],), daemon=True)
        waiter.start()
        waiter.join(60)  # returns at once; it would wait NODES_END_S (120 s) for a process it took for running
        assert not waiter.is_alive() and frozen.poll() is None
    finally:
        frozen.kill()
        frozen.wait()
    assert not stopped(frozen.pid)


def test_a_device_emulator_killed_mid_run_is_a_warning_not_silence(tmp_path):
    s = load_scenario(SCENARIOS / "localhost.yaml", [*SMALL, "workload.fl.local_epochs=20"])
    killed: list[int] = []

    def strike() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pid = json.loads((tmp_path / "pids.json").read_text()).get("devices") if _progress(tmp_path) else None
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    threading.Thread(target=strike, daemon=True).start()
    summary = run_local(s, tmp_path, "sequential", rounds=4, seed=3)
    assert killed and summary.state == "completed", summary.reason
    warned = [w for w in summary.warnings if "device emulator devices was killed by SIGKILL" in w]
    assert warned and "sent no telemetry after that" in warned[0], summary.warnings
    if summary.security.get("unfinished"):  # its devices' handshakes it cut: said, not passed off as strangers'
        assert "may be handshakes of its own devices" in warned[0]


def test_only_a_node_end_the_run_does_not_explain_is_a_warning(tmp_path):
    children = Children(tmp_path)
    children.roles = {"aggregator": "aggregator", "client-1": "client", "client-2": "client", "devices": "devices",
                      "worker-1.1": "worker"}  # fmt: skip
    children.ended = {"aggregator": 0, "client-1": -9, "client-2": 0, "devices": 0, "worker-1.1": 17}
    lines = node_warnings(tmp_path, children, "completed", "aggregator", None)
    assert len(lines) == 3, lines
    assert lines[0].startswith("client-1 (client) was killed by SIGKILL before the run ended")
    assert lines[1].startswith("the device emulator devices ended before the run ended")  # it ends when stopped
    assert lines[2].startswith("worker-1.1 (worker) exited with code 17")
    # Ctrl-C to the whole group stops every node with the run; a client fails with a failed run (its reason is the
    # run's); neither is news
    children.ended = {"aggregator": -2, "client-1": -2, "devices": 0, "client-2": 130}
    assert node_warnings(tmp_path, children, "interrupted", "aggregator", None) == []
    children.ended = {"aggregator": 3, "client-1": 3, "client-2": 3}
    assert node_warnings(tmp_path, children, "failed", "aggregator", None) == []
    children.ended, children.killed = {}, ["worker-1.1"]
    assert node_warnings(tmp_path, children, "completed", "aggregator", None) == [
        "worker-1.1 did not end within 3 s of SIGTERM at the run's end and was killed (see logs/worker-1.1.log)"
    ]


@pytest.mark.parametrize("command", ["compare", "report", "calibrate"])
def test_the_readers_of_a_run_whose_results_were_never_written_say_how_to_recover_it(capsys, tmp_path, command):
    """compare, report and calibrate --from-run said "not a run directory" of a twin run whose orchestrator died
    before it wrote the results: the user was not told the rounds were there, and how to get them."""
    from pqtwin import cli

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    argv = {"compare": ["compare", str(run), str(run)],
            "report": ["report", str(run), "--out", str(tmp_path / "r.html")],
            "calibrate": ["calibrate", "--from-run", str(run), "--out", str(tmp_path / "p.yaml")]}[command]  # fmt: skip
    capsys.readouterr()
    code = cli.run(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == (2 if command == "compare" else 1), lines  # compare: a line per directory
    assert all(f"a twin run whose results were never written: `pqtwin hw recover {run}`" in x for x in lines), lines


def test_force_keeps_rounds_of_nodes_that_ended_and_takes_a_run_that_finished_none(tmp_path):
    """The nodes ended (their reports and spans written) but the orchestrator died before the results: their
    rounds are recoverable, so --force refuses; a run killed before any round finished has nothing to lose."""
    out = tmp_path / "run"
    (out / "spans").mkdir(parents=True)
    (out / "nodes").mkdir()
    (out / "run.json").write_text('{"suite": {}, "fl": {}}')  # its keys: a run of ours
    rundir.NodeResult(state="completed", accuracy_per_round=[0.5, 0.6]).write(out, "aggregator")
    (out / "spans" / "aggregator.parquet").write_bytes(b"spans")
    with pytest.raises(UserError, match="2 finished rounds kept by its nodes"):
        rundir.claim(out, force=True)
    assert (out / "spans" / "aggregator.parquet").exists() and (out / "nodes" / "aggregator.json").exists()

    (out / "spans" / "aggregator.parquet").unlink()  # a report without its spans: nothing recover could write
    (out / "spans" / "client-1.journal").write_bytes(b"")  # killed before its first round ended
    rundir.claim(out, force=True)
    rundir.release(out)
    assert not (out / "spans").exists() and not (out / "run.json").exists()
