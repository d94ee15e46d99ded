"""A node's faults of its own machine and run directory: a moment without file descriptors, a disk that will not
take a file, and files in the run directory that are not the run's. None may end a run that can go on, lose a
finished round, or end in a traceback (an attack hunt found each)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter

import pytest

from hw.journal import Journal, recover_journals
from hw.lifecycle import node_alive
from hw.node import _finish
from hw.node.common import accept
from hw.node.report import FileReporter
from hw.rundir import NodeResult, merge_spans, node_results
from sim.contract import RunLayout, SpanRow, atomic_write, read_spans, spans_bytes, to_frame


def _row(rnd: int, op: str = "fl.train") -> SpanRow:
    return SpanRow(0, rnd, "client-1", "local", "train", op, float(rnd), rnd + 0.5, 0.0, 0)


class _Listener:
    """A listening socket's ``accept`` that fails as a process out of file descriptors would, then works."""

    def __init__(self, failures: list[int]):
        self.failures = failures
        self.pair = socket.socketpair()

    def accept(self) -> tuple[socket.socket, str]:
        if self.failures:
            raise OSError(self.failures.pop(0), os.strerror(errno.EMFILE))
        return self.pair[0], "peer"


def test_a_moment_without_file_descriptors_does_not_end_a_listener(caplog):
    """One EMFILE ended a client's telemetry port (an uncaught error in its accept thread), or the aggregator's
    (it returned, as at the run's end), for the rest of the run."""
    listener = _Listener([errno.EMFILE, errno.ENFILE])
    with caplog.at_level(logging.WARNING, logger="pqtwin.node"):
        assert accept(listener, "client-1") is listener.pair[0]  # type: ignore[arg-type]
    assert caplog.text.count("cannot accept a connection now") == 1  # once a spell
    closed = _Listener([errno.EBADF])  # the listener was closed: the run's end
    assert accept(closed, "client-1") is None  # type: ignore[arg-type]


def test_a_file_the_disk_will_not_take_is_said_once_and_the_node_goes_on(tmp_path, caplog):
    """A directory put where the progress file's temporary goes (or a full disk) killed the aggregator mid-run."""
    rep = FileReporter(tmp_path)
    RunLayout(tmp_path).progress.mkdir(parents=True)  # progress.json cannot be replaced: it is a directory
    (tmp_path / "spans").mkdir()
    RunLayout(tmp_path).node_journal("client-1").mkdir()  # nor can the journal be opened
    with caplog.at_level(logging.WARNING, logger="pqtwin.node"):
        for r in (1, 2):
            rep.progress(r, 0.5)
            rep.checkpoint("client-1", NodeResult(state="failed", rounds=r), [_row(r)])
    assert caplog.text.count("cannot write") == 2  # once a file


def test_a_node_whose_report_cannot_be_written_ends_in_one_line(caplog):
    class Full:
        name = "aggregator"

        def finish(self, result: NodeResult) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with caplog.at_level(logging.ERROR, logger="pqtwin.node"):
        assert _finish(Full(), NodeResult(state="completed")) == 3  # type: ignore[arg-type]
    assert "aggregator: cannot write its report: No space left on device" in caplog.text


def test_a_temporary_name_fixed_in_advance_cannot_be_taken(tmp_path):
    """The temporary file carried the process id: a directory of that name made every write of the file fail."""
    path = tmp_path / "progress.json"
    (tmp_path / f"progress.json.{os.getpid()}.tmp").mkdir()
    atomic_write(path, '{"round": 1}')
    assert path.read_text() == '{"round": 1}'
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # as a plain open leaves it
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p.is_file()] == []


def test_a_journal_beside_the_spans_a_node_wrote_does_not_replace_them(tmp_path):
    """A node writes its spans at its end, then removes its journal: stopped in between (or a journal a stranger
    put there), the journal's fewer rounds replaced the node's spans (a forged one: a finished run of 0 rounds)."""
    layout = RunLayout(tmp_path)
    rep = FileReporter(tmp_path)
    rep.checkpoint("client-1", NodeResult(state="failed", rounds=1), [_row(1)])
    layout.node_spans("client-1").write_bytes(spans_bytes(to_frame([_row(1), _row(2), _row(3)])))  # its end
    forged = {"rows": [["a"] * 10], "result": {"state": 7}}  # rows of the wrong types, a result no node writes
    layout.node_journal("aggregator").write_text(json.dumps(forged) + "\n")
    assert recover_journals(tmp_path) == ["aggregator", "client-1"]
    assert list(read_spans(layout.node_spans("client-1"))["round"]) == [1, 2, 3]
    assert len(read_spans(layout.node_spans("aggregator"))) == 0 and not layout.node_result("aggregator").exists()
    assert not list((tmp_path / "spans").glob("*.journal"))


def test_files_in_the_run_directory_that_are_not_the_runs_are_left_out_and_said(tmp_path):
    """A stray nodes/zz.json or spans/zz.parquet ended a finished run in an internal error, with no summary."""
    layout = RunLayout(tmp_path)
    NodeResult(state="completed", rounds=2).write(tmp_path, "client-1")
    (tmp_path / "nodes" / "zz.json").write_text("{")
    layout.node_spans("client-1").parent.mkdir(exist_ok=True)
    layout.node_spans("client-1").write_bytes(spans_bytes(to_frame([_row(1), _row(2)])))
    (tmp_path / "spans" / "zz.parquet").write_bytes(b"not parquet")
    journal = Journal(layout.node_journal("unused"))  # a journal is no spans file
    journal.close()
    ignored: list[str] = []
    assert set(node_results(tmp_path, ignored)) == {"client-1"}
    assert len(merge_spans(tmp_path, ignored)) == 2
    assert len(ignored) == 2 and "nodes/zz.json: not a node's report" in ignored[0] and "zz.parquet" in ignored[1]
    with pytest.raises(ValueError):
        read_spans(tmp_path / "spans" / "zz.parquet")
    assert Counter(p.suffix for p in (tmp_path / "spans").iterdir())[".parquet"] == 2


def _twin(*overrides: str):
    from sim.scenario import load_scenario

    from .conftest import SCENARIOS

    return load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.model_parameters=50000",
                         "workload.fl.samples_per_client=300", "workload.devices.ecg-a.count=0",
                         "workload.devices.ecg-b.count=0", *overrides])  # fmt: skip


def test_a_run_that_loses_its_quorum_keeps_what_it_finished_and_names_who_left(tmp_path):
    """A client that died at round 3 (quorum 1.0) failed the run with a bare report: the accuracy of rounds 1-2,
    the initial accuracy and the dropout were lost, and the reason did not name the client that left."""
    from hw.local import run_local

    summary = run_local(_twin(), tmp_path, "sequential", rounds=4, seed=3, crash={"client-2": 3}).model_dump()
    assert summary["state"] == "failed"
    why = "round 3: quorum lost: 1 of 2 clients left, quorum needs 2 (client-2 dropped out in round 3"
    assert why in summary["reason"]
    assert summary["initial_accuracy"] is not None and len(summary["accuracy_per_round"]) == 2
    assert [(d["pod"], d["round"]) for d in summary["dropouts"]] == [("client-2", 3)]
    report = json.loads(RunLayout(tmp_path).node_result("aggregator").read_text())
    assert report["state"] == "failed" and report["reason"] == summary["reason"] and len(report["dropouts"]) == 1


def _before_it_authenticates(monkeypatch, victim: str, how: str, connect_timeout_s: float) -> None:
    """Start the run's nodes as the local backend does, ``how`` (kill, stop) ``victim`` as soon as it starts."""
    import hw.local

    real_build, real_start = hw.local.build, hw.local.Children.start

    def build(*a, **k):
        return real_build(*a, **k).model_copy(update={"connect_timeout_s": connect_timeout_s})

    def start(self, name: str, role: str, listeners=()) -> None:
        real_start(self, name, role, listeners)
        if name == victim:
            self.procs[name].send_signal(signal.SIGKILL if how == "kill" else signal.SIGSTOP)

    monkeypatch.setattr(hw.local, "build", build)
    monkeypatch.setattr(hw.local.Children, "start", start)


def test_a_client_that_never_authenticates_is_named(tmp_path, monkeypatch):
    """A client stopped before it authenticated (alive, silent): "only 1 of 2 clients and workers authenticated"
    named nobody."""
    import hw.local

    _before_it_authenticates(monkeypatch, "client-1", "stop", 3.0)
    summary = hw.local.run_local(_twin(), tmp_path, "sequential", rounds=2, seed=3).model_dump()
    assert summary["state"] == "failed"
    assert "only 1 of 2 clients and workers authenticated within 3 s (missing: client-1;" in summary["reason"]


@pytest.mark.parametrize(("victim", "mode", "quorum", "why"), [
    ("client-1", "sequential", "1.0", "client-1 ended before authenticating: 1 of 2 clients left, quorum needs 2 "
                                      "(see logs/client-1.log)"),
    ("worker-1.1", "concurrent", "1.0", "crypto worker worker-1.1 ended before it authenticated (see "
                                        "logs/worker-1.1.log)"),
    ("client-1", "sequential", "0.5", None),
])  # fmt: skip
def test_a_node_killed_before_it_authenticates_is_not_waited_for(tmp_path, monkeypatch, victim, mode, quorum, why):
    """A client or crypto worker killed before it authenticated cost the run its whole connect timeout (30 s), and
    then failed it. The aggregator now sees its process has ended (the run's pids.json): without it the run fails
    at once, naming it; a client the quorum can do without drops out, and the run goes on. (The connect timeout
    here is two minutes: a run that waited for it fails its reason, not a clock.)"""
    import hw.local

    _before_it_authenticates(monkeypatch, victim, "kill", 120.0)
    s = _twin(f"workload.fl.quorum={quorum}")
    summary = hw.local.run_local(s, tmp_path, mode, rounds=2, seed=3).model_dump()
    if why is not None:
        assert summary["state"] == "failed" and why in summary["reason"], summary["reason"]
        return
    assert summary["state"] == "completed" and summary["rounds_completed"] == 2, summary["reason"]
    (left,) = summary["dropouts"]
    assert left["pod"] == "client-1" and left["reason"].startswith("its process ended before it authenticated")


@pytest.mark.parametrize(("name", "role", "sig"), [("aggregator", "aggregator", signal.SIGINT),
                                                   ("client-1", "client", signal.SIGTERM),
                                                   ("devices", "devices", signal.SIGINT)])  # fmt: skip
def test_a_node_stopped_by_a_signal_ends_in_one_line(tmp_path, name, role, sig):
    """Ctrl-C of a run (SIGINT to every node) left a raw "Traceback ... KeyboardInterrupt" in the aggregator's,
    the clients' and the device emulator's logs; a SIGTERM ended a node without a word."""
    import subprocess
    import sys
    import time

    from hw.local import LocalAddressing
    from hw.runconfig import build

    from .conftest import ROOT

    s = _twin("workload.devices.ecg-a.count=1")
    build(s, "sequential", 2, 3, LocalAddressing(s, 3), epoch=time.monotonic()).write(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "hw.node", str(tmp_path), name, role], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        published = RunLayout(tmp_path).public_keys(name)
        deadline = time.monotonic() + 20
        while not published.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert published.exists(), "the node did not start"  # it is waiting for its peers now
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == -sig  # ended by the signal, as before
    assert "Traceback" not in out
    said = [line for line in out.strip().splitlines() if not line.startswith("liboqs-python")]  # its import's
    assert said == [f"{name}: stopped by {signal.Signals(sig).name}"
                    + (" (Ctrl-C)" if sig == signal.SIGINT else " (kill)")]  # fmt: skip


def test_a_stopped_crypto_worker_is_dropped_at_the_rounds_deadline_and_its_late_answer_ignored(tmp_path):
    """A SIGSTOPped crypto worker held the job thread that asked it for good (no deadline on its answer): nothing
    was said, the rounds that needed that job failed, and each hung worker cost the aggregator a job thread."""
    from hw.local import run_local

    acted: list[int] = []

    def progress(r: int) -> None:  # stop worker-1.1 after round 2; resume it (dropped by then) after round 6
        pid = json.loads((tmp_path / "pids.json").read_text())["worker-1.1"]
        if r >= 2 and not acted:
            os.kill(pid, signal.SIGSTOP)
            acted.append(r)
        elif r >= 6 and len(acted) == 1:
            os.kill(pid, signal.SIGCONT)
            acted.append(r)

    summary = run_local(_twin("workload.fl.round_timeout_s=3"), tmp_path, "concurrent", rounds=8, seed=3,
                        progress=progress)  # fmt: skip
    assert len(acted) == 2, acted
    assert summary.state == "completed" and summary.rounds_completed >= 6, summary
    assert summary.security == {"worker_lost": 1} and not summary.dropouts, summary
    said = (tmp_path / "logs" / "aggregator.log").read_text()
    assert said.count("crypto worker worker-1.1 lost (did not answer in 3 s); 1 left") == 1, said
    assert not [w for w in summary.warnings if "worker-1.1" in w], summary.warnings  # it ended when resumed


def test_the_join_counts_every_client_that_ended_against_the_quorum(tmp_path):
    """Clients whose processes ended at different moments of the join count together: two of three gone with a
    quorum of two fails the run, whichever poll saw each go; one gone is a dropout; a live process is not gone."""
    from types import SimpleNamespace

    from hw.node.aggregator import Aggregator
    from hw.node.common import RunFailed

    dead = [subprocess.Popen(["true"]) for _ in range(2)]
    for p in dead:
        p.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "hw.node", "client-3"])
    try:
        deadline = time.monotonic() + 5  # its command line is the node's once it runs (it failed once in CI)
        while not node_alive(live.pid, "client-3") and live.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node_alive(live.pid, "client-3"), f"the live process ended before the check: exit {live.poll()}"
        pids = {"client-1": dead[0].pid, "client-2": dead[1].pid, "client-3": live.pid}
        RunLayout(tmp_path).pids.write_text(json.dumps(pids))
        clients = ["client-1", "client-2", "client-3"]
        agg = SimpleNamespace(node=SimpleNamespace(run_dir=tmp_path), worker_names=[], clients=clients,
                              fl=SimpleNamespace(quorum_clients=2))  # fmt: skip
        assert Aggregator._ended(agg, {"client-1", "client-3"}) == {"client-1"}
        with pytest.raises(RunFailed, match=r"client-1, client-2 ended before authenticating: 1 of 3 clients left"):
            Aggregator._ended(agg, {"client-1", "client-2", "client-3"})
    finally:
        live.kill()
        live.wait()
