"""The vectorized engine's second pass resumed from a fork of the first at its storm's end (sim/checkpoint.py):
the same run as computing that pass again from 0, errors brought home, no process left behind."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sim import checkpoint, hosts, model, runner, telemetry
from sim.errors import UserError
from sim.runner import simulate
from sim.scenario import load_scenario
from sim.telemetry import NotVectorizable
from tests.test_engines import ECG_ONLY, WARD

# 1,000 ECG patches, their start-up storm and 6 s of frames: with this seed a frame the kernels computed just
# after the storm overtakes one SimPy computed in it, so the first pass is found delayed there, and only there
# (a scan of seeds 0-99 with in-order jitter, sim/network.py: 27, 39, 40, 51, 78, 79, 92, 96 do it in replication 0)
STORM = [*ECG_ONLY, "run.horizon_s=6", "run.seed=27", "run.engine=vectorized", "run.frame_spans=1",
         "workload.fl.rounds=1",
         "workload.devices.0.count=500", "workload.devices.1.count=500"]  # fmt: skip


# 600 ECG patches and 1,500 blood-pressure cuffs for 40 s: the cuffs' first handshakes (one at a random phase of
# their 300 s period each) go on after the patches' storm, a few a second, past the horizon: the storm has lulls
# (no handshake under way) but no end
LATE_CUFFS = [*ECG_ONLY, "workload.devices.0.count=300", "workload.devices.1.count=300",
              "workload.devices.4.count=1500", "run.horizon_s=40", "workload.fl.rounds=1", "run.engine=vectorized",
              "run.frame_spans=1", "run.replications=1"]  # fmt: skip

RESCAN = (
    "STORM's seed no longer gives a second pass resumed at the storm's end: a model change moved the draws; "
    "scan seeds again (the comment above STORM) and take one that does it in replication 0"
)


class Spy:
    """Records the forks taken and resumed, and which way each second pass was computed, in a file: the replication
    workers that fork are processes of their own (pytest's own process has threads, and does not fork)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, log: Path):
        self.log = log
        take, resume, resumed = checkpoint.Fork.take, checkpoint.Fork.resume, runner._resumed

        def note(line: str) -> None:
            with log.open("a") as f:
                f.write(line + "\n")

        def spy_take(fork, rep):  # type: ignore[no-untyped-def]
            take(fork, rep)
            if fork.pid is not None:
                note(f"forked {fork.pid}")

        def spy_resume(fork, *a):  # type: ignore[no-untyped-def]
            note("resumed")
            return resume(fork, *a)

        def spy_resumed(*a):  # type: ignore[no-untyped-def]
            if a[4] is None or a[4].pid is None:
                note("recomputed")
            return resumed(*a)

        monkeypatch.setattr(checkpoint.Fork, "take", spy_take)
        monkeypatch.setattr(checkpoint.Fork, "resume", spy_resume)
        monkeypatch.setattr(runner, "_resumed", spy_resumed)

    def lines(self, what: str) -> list[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return [ln.split()[-1] for ln in text.splitlines() if ln.startswith(what)]

    def forked(self) -> list[int]:
        return [int(pid) for pid in self.lines("forked")]


def gone(pid: int) -> bool:
    """Ended and reaped (a zombie still answers ``kill(pid, 0)``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init, which reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def none_running(pids: list[int], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while any(running(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_second_pass_resumed_from_the_fork_is_the_pass_computed_again(monkeypatch, tmp_path):
    """Resumed from the first pass's fork (in replication workers), or computed again from 0 where forking is not
    available: the same spans, series and summary, to the bit; the run is exact in 2 passes; forks are reaped."""
    spy = Spy(monkeypatch, tmp_path / "spy")
    s = load_scenario(WARD, [*STORM, "run.replications=2"])
    resumed = simulate(s, workers=2)
    assert len(spy.forked()) == 2 and len(spy.lines("resumed")) >= 1 and not spy.lines("recomputed"), RESCAN
    assert all(gone(pid) for pid in spy.forked())
    monkeypatch.setattr(checkpoint.Fork, "available", staticmethod(lambda: False))
    again = simulate(s, workers=1)
    assert len(spy.lines("recomputed")) == len(spy.lines("resumed")) and len(spy.forked()) == 2
    e = resumed.summary.engine
    assert e is not None and e.exact and e.passes >= 2 and e.hot_frames > 1000, e
    assert resumed.spans.equals(again.spans) and (resumed.spans.op == "frame").sum() > 1000
    assert resumed.series is not None and again.series is not None and resumed.series.equals(again.series)
    a, b = (r.summary.model_dump(exclude={"wall_s", "peak_rss_bytes"}) for r in (resumed, again))
    assert a == b


def test_the_background_a_pass_serves_keeps_the_clock_a_python_float(monkeypatch):
    """A later pass gets its background as numpy arrays. Served as numpy scalars, their times became the clock's,
    and every event scheduled from such a time computed with numpy scalars too (16 % of ward-200's steps, 17 % of
    hospital-10k's). Every step of every pass has a Python number for its clock."""
    seen: set[type] = set()
    step = hosts.CountingEnvironment.step

    def spy(env):  # type: ignore[no-untyped-def]
        seen.add(type(env.now))
        return step(env)

    monkeypatch.setattr(hosts.CountingEnvironment, "step", spy)
    monkeypatch.setattr(checkpoint.Fork, "available", staticmethod(lambda: False))  # every pass in this process
    r = simulate(load_scenario(WARD, [*STORM, "run.replications=1"]), workers=1)
    assert r.summary.engine is not None and r.summary.engine.passes >= 2, RESCAN
    assert seen <= {int, float}, seen


def test_a_fork_not_needed_is_ended_and_reaped(monkeypatch, tmp_path):
    """A first pass that is exact does not resume its fork: the fork ends at once and is reaped."""
    spy = Spy(monkeypatch, tmp_path / "spy")
    sets = [s if not s.startswith("run.seed=") else "run.seed=0" for s in STORM]
    r = simulate(load_scenario(WARD, [*sets, "run.replications=2"]), workers=2)
    assert r.summary.engine is not None and r.summary.engine.passes == 1  # every replication: 1
    assert spy.forked() and not spy.lines("resumed") and all(gone(pid) for pid in spy.forked())


def test_an_error_in_the_resumed_pass_is_raised_in_the_parent(monkeypatch, tmp_path):
    """What the resumed pass raises (here: a frame the kernels cannot compute, found after the storm) is raised
    where the run was asked for, as a first pass's would be; nothing is left running."""
    spy = Spy(monkeypatch, tmp_path / "spy")
    resume = model.Replication.resume

    def failing(rep, background, final):  # type: ignore[no-untyped-def]
        resume(rep, background=background, final=final)

        def refuse():  # type: ignore[no-untyped-def]
            yield rep.env.timeout(0.5)
            raise NotVectorizable("a frame found after the storm")

        rep.env.process(refuse())

    monkeypatch.setattr(model.Replication, "resume", failing)
    with pytest.raises(UserError, match=r"run\.engine: vectorized: a frame found after the storm"):
        simulate(load_scenario(WARD, [*STORM, "run.replications=2"]), workers=2)
    # the run's other workers are killed at once; their forks die with them (PR_SET_PDEATHSIG)
    assert spy.lines("resumed"), RESCAN
    assert none_running(spy.forked())


def test_a_process_with_threads_does_not_fork():
    """A forked child has only the forking thread; another's locks would stay held: no fork then."""
    assert checkpoint.Fork.available() == (threading.active_count() == 1)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not checkpoint.Fork.available()
    finally:
        stop.set()
        t.join()


def test_a_run_beside_other_threads_resumes_in_a_worker_of_its_own(monkeypatch, tmp_path):
    """The command line runs one replication beside its progress bar's thread: that replication runs in a worker
    process of its own, where its fork is safe, and its second pass is resumed there."""
    spy = Spy(monkeypatch, tmp_path / "spy")
    stop = threading.Event()
    bar = threading.Thread(target=stop.wait)
    bar.start()
    try:
        r = simulate(load_scenario(WARD, [*STORM, "run.replications=1"]), workers=1)
    finally:
        stop.set()
        bar.join()
    e = r.summary.engine
    assert e is not None and e.exact and e.passes == 2, e
    assert len(spy.forked()) == 1 and spy.lines("resumed") and not spy.lines("recomputed"), RESCAN


def test_a_profiled_run_computes_every_pass_in_its_own_process(pqtwin, tmp_path):
    """``pqtwin sim --profile-run`` profiles one process: the second pass is computed there, not in a fork, and
    the profile shows it."""
    sets = [a for s in [*STORM, "run.replications=1"] for a in ("--set", s)]
    res = pqtwin("sim", str(WARD), *sets, "--profile-run", "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "run" / "profile.html").read_text()
    assert "_resumed" in html and "simulate_frames" in html and "Fork.resume" not in html


def test_workers_1_runs_every_pass_in_the_commands_process(monkeypatch, tmp_path):
    """``pqtwin sim --workers 1`` (the app's background runs, which Stop kills as a process group) forks nothing:
    a killed fork would linger until the system reaps it. Without it the same run forks."""
    from pqtwin import cli

    forks: list[int] = []
    fork = os.fork

    def counted() -> int:
        forks.append(1)
        return fork()

    monkeypatch.setattr(os, "fork", counted)
    sets = [a for s in [*STORM, "run.replications=1"] for a in ("--set", s)]
    assert cli.run(["sim", str(WARD), *sets, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["engine"]["passes"] == 2 and forks == []
    assert cli.run(["sim", str(WARD), *sets, "--out", str(tmp_path / "default")]) == 0
    assert forks and checkpoint.Fork.enabled


def test_a_fork_refused_by_the_system_computes_the_pass_again(monkeypatch, tmp_path):
    """No fork to be had (out of processes or memory): the run goes on, its second pass computed again."""
    spy = Spy(monkeypatch, tmp_path / "spy")

    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(checkpoint.os, "fork", refused)  # (os's own: nothing forks in this test)
    monkeypatch.setattr(checkpoint.Fork, "available", staticmethod(lambda: True))
    monkeypatch.setattr(runner, "_threads_but_main", lambda: False)  # the replication here, not in a worker
    r = simulate(load_scenario(WARD, [*STORM, "run.replications=1"]), workers=1)
    e = r.summary.engine
    assert e is not None and e.exact and e.passes == 2 and spy.lines("recomputed") and not spy.forked()


def test_only_the_last_replication_of_this_process_loads_tables_while_its_fork_computes(monkeypatch):
    """Computed in this process (no pool), the last job may load pandas and pyarrow while its resumed pass runs
    in a fork (nothing forks after it); earlier jobs may not, and nothing is left set after a job, nor after one
    that failed."""
    seen: list[object] = []

    def job(j):  # type: ignore[no-untyped-def]
        seen.append(runner._MEANWHILE)
        if j == "boom":
            raise RuntimeError(j)
        return j

    monkeypatch.setattr(runner, "_replicate_job", job)
    assert list(runner._here(["a", "b", "c"])) == ["a", "b", "c"]  # type: ignore[list-item]
    assert seen == [None, None, runner._load_tables] and runner._MEANWHILE is None
    with pytest.raises(RuntimeError):
        list(runner._here(["boom"]))  # type: ignore[list-item]
    assert runner._MEANWHILE is None


def test_a_storm_with_late_devices_ends_at_its_first_lull_and_every_pass_resumes_there(monkeypatch, tmp_path):
    """Late cuffs start past the horizon, but the storm (frames in SimPy) ends at its first lull, when no handshake is
    under way: the frames found beside the late handshakes then all arrive after it, so every pass after the first is
    the first resumed there, serving them (no more frames in SimPy, which would run the storm again each pass): all
    from one fork (it forks again for each), the same run as each computed again from 0, and exact."""
    spy = Spy(monkeypatch, tmp_path / "spy")
    end_storm, ends = model.Replication._end_storm, tmp_path / "ends"

    def seen(rep):  # type: ignore[no-untyped-def]
        with ends.open("a") as f:  # (a file: the replication may run in a worker process)
            f.write(f"{rep.env.now!r} {rep.storm_left}\n")
        end_storm(rep)

    monkeypatch.setattr(model.Replication, "_end_storm", seen)
    s = load_scenario(WARD, LATE_CUFFS)
    resumed = simulate(s, workers=1)
    e = resumed.summary.engine
    assert e is not None and e.exact and e.passes >= 3, e
    assert len(spy.forked()) == 1 and len(spy.lines("resumed")) == e.passes - 1 and not spy.lines("recomputed")
    assert all(gone(pid) for pid in spy.forked())
    monkeypatch.setattr(checkpoint.Fork, "available", staticmethod(lambda: False))
    again = simulate(s, workers=1)
    assert len(spy.lines("recomputed")) == e.passes - 1
    assert resumed.spans.equals(again.spans) and (resumed.spans.op == "frame").sum() > 10_000
    a, b = (r.summary.model_dump(exclude={"wall_s", "peak_rss_bytes"}) for r in (resumed, again))
    assert a == b
    # the first run's first pass, the second's and each pass computed again: the storm ended at the same lull, with
    # cuffs to come
    lines = ends.read_text().splitlines()
    at_s, left = lines[0].split()
    assert len(lines) == 1 + e.passes and len(set(lines)) == 1 and 0 < float(at_s) < 10 and int(left) > 1000, lines


def test_a_storm_ended_at_its_lull_is_the_event_model_s_run(monkeypatch, tmp_path):
    """Ended at its first lull and resumed there, the late cuffs' run is the event model's, frame by frame (no
    jitter, loss or cost draws, so both engines draw alike). A storm whose frames' budget is spent before any lull
    does not end there (the kernels' frames before it may lie beside handshakes): no pass resumes it, and it is
    exact too."""
    from tests.test_engines import fixed_costs, frames, quiet_network

    def run(engine: str) -> runner.RunResult:
        s = load_scenario(WARD, [*LATE_CUFFS, f"run.engine={engine}", *quiet_network()])
        return simulate(fixed_costs(s), workers=1)

    spy = Spy(monkeypatch, tmp_path / "spy")
    ev, vec = run("events"), run("vectorized")
    e = vec.summary.engine
    assert e is not None and e.exact and e.passes >= 2 and spy.lines("resumed"), e
    a, b = frames(ev.spans), frames(vec.spans)
    assert len(a) == len(b) > 20_000
    for col in ("start_s", "end_s", "queue_wait_s"):
        assert np.abs(a[col] - b[col]).max() <= 1e-9, col
    assert vec.summary.telemetry.frames == ev.summary.telemetry.frames
    monkeypatch.setattr(telemetry, "STORM_FRAMES_MAX", 0)
    spy.log.unlink()
    e = run("vectorized").summary.engine
    assert e is not None and e.exact and not spy.forked() and not spy.lines("resumed"), e
