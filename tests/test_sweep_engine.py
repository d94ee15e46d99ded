"""`pqtwin sweep` on Dask: the same rows in any worker count and on a real remote scheduler, a sweep killed at any
moment resumes to the same result, Ctrl-C cancels every task, a failed point is recorded and does not stop it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sim.runner import simulate
from sim.scenario import load_scenario
from sim.sweep import engine, store
from sim.sweep.plan import plan
from sim.sweep.point import Task, run_point
from sim.sweep.spec import load_sweep

from .conftest import ROOT, SCENARIOS, session_processes

PQTWIN = [sys.executable, "-c", "from pqtwin.cli import main; main()"]


def sweep_file(tmp_path: Path, points: int = 6, name: str = "small", rounds: int = 2) -> Path:
    """A small grid on paper-3node (about 0.1 s a point at 2 rounds): suite × mode (× rekey for more points)."""
    rekey = (
        "" if points <= 6 else "\n  - {name: rekey, path: workload.crypto.rekey.fl, values: [per_message, per_round]}"
    )
    kems = ["ML-KEM-512", "ML-KEM-768", "X25519"][: max(1, min(3, points // 2))]
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
sweep: {name}
scenario: {SCENARIOS / "paper-3node.yaml"}
set: ["workload.fl.rounds={rounds}"]
replications: 2
seed: 11
axes:
  - {{path: workload.crypto.kem, values: {kems}}}
  - {{name: mode, path: workload.processing.mode, values: [sequential, concurrent]}}{rekey}
kpis: ["round_latency_s.*", "model_distribution_s.mean", "application_bytes.total", "energy.per_round_j.mean"]
""")
    return path


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PQTWIN, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def _small_sweep_done(tmp_path_factory) -> Path:
    """``sweep_file``'s sweep run once to its end (``--workers 1``) for the tests that start from a finished one."""
    where = tmp_path_factory.mktemp("small-sweep")
    out = where / "out"
    r = cli("sweep", str(sweep_file(where)), "--out", str(out), "--workers", "1")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def finished_sweep(_small_sweep_done, tmp_path) -> Path:
    """A copy of the finished small sweep in this test's own directory (``tmp_path / "out"``; its sweep file
    ``sweep_file(tmp_path)``, the same definition)."""
    out = tmp_path / "out"
    shutil.copytree(_small_sweep_done, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rows_are_the_same_in_any_worker_count_and_are_pqtwin_sims_replications(tmp_path):
    sweep = sweep_file(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    for out, n in ((one, "1"), (two, "2")):
        r = cli("sweep", str(sweep), "--out", str(out), "--workers", n)
        assert r.returncode == 0, r.stderr
        assert f"ran 6 points on {n} worker" in r.stdout
    a, b = pd.read_parquet(one / "results.parquet"), pd.read_parquet(two / "results.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 12 and a["error"].isna().all()
    assert list(a[["point", "replication"]].itertuples(index=False, name=None)) == [
        (p, r) for p in range(6) for r in (0, 1)
    ]
    # a row is replication r of `pqtwin sim --set <the point's overrides> --seed 11 --replications 2`
    manifest = store.manifest(one)
    row = a[(a.point == 3) & (a.replication == 1)].iloc[0]
    p3 = next(p for p in manifest["points"] if p["point"] == 3)
    overrides = ["workload.fl.rounds=2", f"workload.crypto.kem={p3['values']['kem']}",
                 f"workload.processing.mode={p3['values']['mode']}"]  # fmt: skip
    full = simulate(load_scenario(SCENARIOS / "paper-3node.yaml", overrides), None, 11, 2).summary
    assert row["round_latency_s.mean"] == pytest.approx(full.round_latency_s.replication_means[1], rel=1e-12)
    assert row["seed"] == 11 and row["mode"] == p3["values"]["mode"]


def _dask(tmp_path: Path, workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A real `dask scheduler` and ``workers`` `dask worker` processes on 127.0.0.1 (one thread each), each leading
    its own process group; (address, processes), the scheduler first."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              **quiet)]  # fmt: skip
    for _ in range(workers):
        procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                                       "--local-directory", str(tmp_path / "dask")], **quiet))  # fmt: skip
    from distributed import Client

    try:
        with Client(address, timeout=30) as c:
            if workers:
                c.wait_for_workers(workers, timeout=60)
    except BaseException:
        _stop(procs)
        raise
    return address, procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)


@pytest.fixture
def dask_cluster(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1 (one thread each)."""
    address, procs = _dask(tmp_path, 2)
    try:
        yield address
    finally:
        _stop(procs)


def test_a_remote_scheduler_gives_the_same_rows(tmp_path, dask_cluster):
    sweep = sweep_file(tmp_path)
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert cli("sweep", str(sweep), "--out", str(local), "--workers", "1").returncode == 0
    r = cli("sweep", str(sweep), "--out", str(remote), "--scheduler", dask_cluster)
    assert r.returncode == 0, r.stderr
    assert "ran 6 points on 2 workers" in r.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(local / "results.parquet"),
                                  pd.read_parquet(remote / "results.parquet"))  # fmt: skip


def test_a_scheduler_no_worker_joins_is_one_line_after_the_wait_given(tmp_path):
    address, procs = _dask(tmp_path, 0)
    try:
        started = time.monotonic()
        r = cli("sweep", str(sweep_file(tmp_path)), "--out", str(tmp_path / "o"), "--scheduler", address,
                "--worker-wait-s", "1.5")  # fmt: skip
        took_s = time.monotonic() - started
    finally:
        _stop(procs)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"--scheduler {address}: no worker joined in 1.5 s" in r.stderr
    assert 1.5 <= took_s < engine.WORKER_WAIT_S, took_s
    for bad in ("0", "nan", "-1", "1e9"):
        out = tmp_path / f"bad-{bad}"
        r = cli("sweep", str(sweep_file(tmp_path)), "--out", str(out), "--worker-wait-s", bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--worker-wait-s" in r.stderr, (bad, r.stderr)
        assert not out.exists()


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    r = cli("sweep", str(sweep_file(tmp_path)), "--out", str(tmp_path / "o"), "--scheduler",
            f"tcp://127.0.0.1:{free_port()}")  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--scheduler tcp://127.0.0.1:" in r.stderr and "cannot connect" in r.stderr
    assert "connection refused" in r.stderr  # found at once, not after Dask's CONNECT_TIMEOUT_S of retries


def test_only_a_tcp_address_nothing_listens_on_is_refused_before_dask_tries_it():
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen()
        assert engine._refused(f"tcp://127.0.0.1:{ls.getsockname()[1]}") is None  # something listens: Dask decides
    assert "connection refused" in (engine._refused(f"tls://127.0.0.1:{free_port()}") or "")
    assert "cannot resolve no-such-host.invalid" in (engine._refused("tcp://no-such-host.invalid:8786") or "")
    for other in ("inproc://127.0.0.1/1/1", "ucx://127.0.0.1:8786", "127.0.0.1:8786", "tcp://127.0.0.1:port"):
        assert engine._refused(other) is None, other


LOUD_WORKER = """
import logging
from sim.sweep import engine
def shout():
    logging.getLogger("distributed.worker").error("WORKER-SHOUTS")  # as its lost heartbeat does, at any time
    return 1
with engine.client(None, 1) as c:
    assert c.submit(shout).result() == 1
print("done")
"""


KILLED_WORKER = """
import os, signal
from sim.sweep import engine
with engine.client(None, 2) as c:
    pids = c.run(os.getpid)
    os.kill(min(pids.values()), signal.SIGKILL)  # as it joined: the warm-up reaches a closed connection
    engine.warm(c)
print("done")
"""


def test_a_worker_gone_before_its_warm_up_does_not_stop_the_sweep():
    """A local worker killed just after it joined made the sweep's warm-up raise Dask's CommClosedError: an
    internal error, though its nanny starts another and the sweep can go on."""
    r = subprocess.run([sys.executable, "-c", KILLED_WORKER], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr


def test_local_workers_log_nothing_to_the_terminal():
    """A local worker's own error log (its heartbeat lost while it simulates, when Ctrl-C stops the sweep) is
    not printed: the sweep says what happened in its own line."""
    r = subprocess.run([sys.executable, "-c", LOUD_WORKER], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr
    assert "WORKER-SHOUTS" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def _start(sweep: Path, out: Path, *engine: str) -> subprocess.Popen[str]:
    cmd = [*PQTWIN, "sweep", str(sweep), "--out", str(out), *(engine or ("--workers", "1"))]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for_points(out: Path, n: int, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while len(store.finished(out)) < n if (out / store.POINTS).exists() else True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no points finished"
        time.sleep(0.05)


def _long_sweep(tmp_path: Path) -> Path:
    # points long enough that the first write (after FLUSH_S) cannot hold them all: 2.9 s on our machines (3 points
    # in the first write); at 12 rounds (1.1 s) a faster machine finished all 12 before its first write (stop 22 CI)
    return sweep_file(tmp_path, points=12, rounds=60)


@pytest.fixture(scope="module")
def long_sweep_results(tmp_path_factory) -> pd.DataFrame:
    """``_long_sweep`` run uninterrupted, once per worker process: what a stopped and resumed one must equal."""
    where = tmp_path_factory.mktemp("long-sweep")
    r = cli("sweep", str(_long_sweep(where)), "--out", str(where / "fresh"), "--workers", "2")
    assert r.returncode == 0, r.stderr
    return pd.read_parquet(where / "fresh" / "results.parquet")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_stopped_sweep_leaves_whole_files_and_resumes_to_the_same_result(tmp_path, sig, long_sweep_results):
    sweep = _long_sweep(tmp_path)
    out = tmp_path / "cut"
    proc = _start(sweep, out)
    _wait_for_points(out, 2, proc)
    os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the whole process group, workers included
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "rerun the same command to resume" in err and "Traceback" not in err
        assert (out / "results.parquet").exists()  # what finished, consolidated
    _nothing_outlives(proc)
    done = store.finished(out)
    assert 2 <= len(done) < 12
    for f in (out / store.POINTS).glob("*.parquet"):  # every file there is whole, with every row of its points
        rows = pd.read_parquet(f)
        assert (rows.groupby("hash").size() == 2).all()
    assert not list((out / store.POINTS).glob("*.tmp"))
    r = cli("sweep", str(sweep), "--out", str(out), "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert f"resumed: {len(done)} of 12 points were already done" in r.stdout
    assert f"ran {12 - len(done)} points" in r.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), long_sweep_results)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _starting_worker(proc: subprocess.Popen[str]) -> int:
    """The first local worker process of the sweep ``proc``, as soon as it is spawned (it then imports)."""
    deadline = time.monotonic() + 60
    while not (spawned := [pid for pid in session_processes(proc.pid) if "multiprocessing.spawn" in _cmdline(pid)]):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    return spawned[0]


def _nothing_outlives(proc: subprocess.Popen[str]) -> None:
    """No process of the ended sweep ``proc`` (a worker, the Ctrl-C witness) is left after a grace of 30 s."""
    deadline = time.monotonic() + 30
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(proc.pid) == []


def test_a_ctrl_c_while_the_workers_start_stops_the_sweep(tmp_path):
    """The sweep ignores SIGINT while its local workers start (they inherit that): a Ctrl-C then was dropped, and
    the sweep ran to its end (the app's Stop in its first seconds waited 30 s, then killed it: stop 81's CI)."""
    sweep = sweep_file(tmp_path, points=12, rounds=400)  # ~a minute of points: ended by the Ctrl-C, not by its end
    proc = _start(sweep, tmp_path / "out", "--workers", "2")
    try:
        _starting_worker(proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted", err
    _nothing_outlives(proc)


def test_a_worker_killed_as_the_local_cluster_starts_is_one_line(tmp_path):
    """Dask's "Nanny failed to start" was an internal error with a traceback file: a worker process killed (or out
    of memory) as the local cluster starts is the user's one line, and nothing outlives the sweep."""
    proc = _start(sweep_file(tmp_path), tmp_path / "out", "--workers", "2")
    try:
        os.kill(_starting_worker(proc), signal.SIGKILL)  # as it imports: long before it could join the cluster
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: the local Dask cluster could not start its 2 worker processes") and "rerun" in line
    _nothing_outlives(proc)


WORKERLESS_S = 4.0  # the tests' --worker-wait-s (the default, engine.WORKER_WAIT_S, is 30 s)


def _losing(tmp_path: Path, kill: int) -> tuple[int, list[str], str, Path, Path, float]:
    """A sweep on a real remote cluster (a scheduler, one worker) whose process ``kill`` (0: the scheduler, 1: the
    worker, with its nanny) is killed, with no goodbye, once two points are written: (the sweep's exit code, its
    non-blank stderr lines, the scheduler's address, the sweep file, its result directory, seconds from the kill to
    the sweep's end)."""
    address, procs = _dask(tmp_path, 1)
    try:
        sweep = _long_sweep(tmp_path)
        out = tmp_path / "cut"
        proc = _start(sweep, out, "--scheduler", address, "--worker-wait-s", str(WORKERLESS_S))
        _wait_for_points(out, 2, proc)
        os.killpg(procs[kill].pid, signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=WORKERLESS_S + 60)
        ended_s = time.monotonic() - killed
    finally:
        _stop(procs)
    return proc.returncode, [line for line in err.splitlines() if line.strip()], address, sweep, out, ended_s


def test_a_lost_scheduler_ends_the_sweep_in_one_line_and_loses_no_point(tmp_path):
    """The remote scheduler dies mid-sweep: one line says so (no Dask log, no traceback), exit 2; the points that
    finished are kept, the others are not recorded as failed, and rerunning resumes them."""
    code, lines, address, sweep, out, _ = _losing(tmp_path, 0)
    assert code == 2 and len(lines) == 1, lines
    assert f"--scheduler {address}: lost the connection to the scheduler" in lines[0], lines
    assert "rerun the same command to resume" in lines[0]
    done = store.finished(out)
    assert 2 <= len(done) < 12
    assert store.consolidate(out)["error"].isna().all()  # none of the points it was running counts as failed
    r = cli("sweep", str(sweep), "--out", str(out), "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert f"resumed: {len(done)} of 12 points were already done" in r.stdout
    assert f"ran {12 - len(done)} points" in r.stdout


def test_a_scheduler_left_without_workers_ends_the_sweep_in_one_line(tmp_path):
    """The remote cluster's only worker dies mid-sweep: the sweep does not wait for ever; after ``--worker-wait-s``
    without a worker it ends in one line, exit 2, keeping what finished."""
    code, lines, _, _, out, ended_s = _losing(tmp_path, 1)
    assert code == 2 and len(lines) == 1, lines
    assert f"no worker left on the scheduler for {WORKERLESS_S:g} s" in lines[0], lines
    assert WORKERLESS_S <= ended_s < engine.WORKER_WAIT_S, ended_s  # the time given, not the default
    assert 2 <= len(store.finished(out)) < 12 and store.consolidate(out)["error"].isna().all()


def test_a_crashed_point_is_recorded_does_not_stop_the_sweep_and_runs_again_on_resume(tmp_path):
    spec, scenario = load_sweep(sweep_file(tmp_path))
    p = plan(spec, scenario)
    broken = p.points[2].scenario.model_copy()
    broken._profiles = {}  # its profiles left behind: simulate() cannot price anything (a bug, not an input)
    sabotaged = dataclasses.replace(p, points=[*p.points[:2], dataclasses.replace(p.points[2], scenario=broken),
                                                *p.points[3:]])  # fmt: skip
    out = tmp_path / "out"
    store.prepare(out, sabotaged, tmp_path / "small.yaml")
    report = engine.run(sabotaged, out, workers=2)
    assert report.done == 5 and [i for i, _ in report.failed] == [p.points[2].index]
    assert report.failed[0][1].startswith("KeyError")
    df = store.consolidate(out)
    bad = df[df.point == p.points[2].index]
    assert (bad["error_kind"] == "crash").all() and bad["error"].str.startswith("KeyError").all()
    assert df[df.point != p.points[2].index]["error"].isna().all()
    again = engine.run(p, out, workers=1)  # resumed with the point whole again: only it runs
    assert again.already == 5 and again.done == 1 and not again.failed
    assert store.consolidate(out)["error"].isna().all()


def test_a_point_the_simulator_refuses_is_an_input_error_row(tmp_path):
    s = load_scenario(
        SCENARIOS / "paper-3node.yaml", ["run.engine=vectorized", "workload.telemetry_receiver=one-thread"]
    )
    outcome = run_point(Task(0, "h", {"x": 1}, s, 3, 2, ()))
    assert outcome.error_kind == "input" and "run.engine: vectorized" in (outcome.error or "")
    assert [r["replication"] for r in outcome.rows] == [0, 1] and all(r["x"] == 1 for r in outcome.rows)


def test_the_check_refuses_what_simulate_would_refuse_before_anything_runs(tmp_path):
    sweep = tmp_path / "refused.yaml"
    sweep.write_text(f"""
sweep: refused
scenario: {SCENARIOS / "paper-3node.yaml"}
set: ["run.engine=vectorized"]
axes:
  - {{path: workload.telemetry_receiver, values: [per-device, one-thread]}}
""")
    r = cli("sweep", "check", str(sweep))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert "1 of 2 points cannot be simulated" in lines[0]
    assert "telemetry_receiver=one-thread" in lines[1] and "event model only" in lines[1]


def test_a_directory_holding_another_sweep_is_refused(tmp_path):
    out = tmp_path / "out"
    assert cli("sweep", str(sweep_file(tmp_path, name="first")), "--out", str(out), "--workers", "1").returncode == 0
    r = cli("sweep", str(sweep_file(tmp_path, name="second")), "--out", str(out))
    assert r.returncode == 2 and "holds the results of sweep 'first'" in r.stderr


def test_report_writes_a_self_contained_html(tmp_path):
    out = tmp_path / "out"
    assert cli("sweep", str(sweep_file(tmp_path)), "--out", str(out), "--workers", "2").returncode == 0
    r = cli("sweep", "report", str(out))
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    assert "Sensitivity" in html and "Main effects on round_latency_s.mean" in html and "Pareto front" in html
    assert '<script src="http' not in html and "plotly" in html.lower()  # the library inlined: opens offline
    assert "kem" in r.stdout and "mode" in r.stdout


def test_report_out_is_checked_and_never_replaces_the_sweeps_own_files(tmp_path, finished_sweep):
    """`sweep report DIR --out DIR/sweep.json` wrote the report over the manifest (the sweep was lost), `--out ''`
    (typer's Path('.')) was an internal error, `--out DIR-that-exists` a line naming a temporary file."""
    out = finished_sweep
    manifest = (out / store.MANIFEST).read_bytes()
    nowhere = tmp_path / "no" / "r.html"
    for given, expected in ((str(out / store.MANIFEST), f"--out: {out / store.MANIFEST} is a file of the sweep "
                             f"directory {out}: give a new file name, e.g. {out / 'report.html'}"),
                            ("", "--out: . is a directory; give a file name, e.g. ./report.html"),
                            (str(tmp_path), f"--out: {tmp_path} is a directory; give a file name"),
                            (str(nowhere), f"--out: no directory {nowhere.parent} to write r.html")):  # fmt: skip
        r = cli("sweep", "report", str(out), "--out", given)
        assert r.returncode == 2 and r.stderr.startswith(f"error: {expected}"), r.stderr
        assert r.stderr.count("\n") == 1 and (out / store.MANIFEST).read_bytes() == manifest
    assert cli("sweep", "report", str(out), "--out", str(out / "report.html")).returncode == 0


def test_a_check_in_forked_processes_gives_the_plan_of_one_process(tmp_path):
    sweep = tmp_path / "big.yaml"
    sweep.write_text(f"""
sweep: big
scenario: {SCENARIOS / "paper-3node.yaml"}
design: lhs
size: 2500
seed: 3
axes:
  - {{name: model, path: workload.fl.model_parameters, range: {{low: 10000, high: 1000000, log: true, integer: true}}}}
  - {{path: workload.crypto.kem, values: [ML-KEM-512, ML-KEM-768, NOT-A-KEM]}}
  - {{name: mode, path: workload.processing.mode, values: [sequential, concurrent]}}
constraints: ["model < 900000 or mode == 'concurrent'"]
""")
    spec, scenario = load_sweep(sweep)
    seen: list[tuple[int, int]] = []  # progress: 1,000-point chunks, so each process checks more than one
    one, two = plan(spec, scenario), plan(spec, scenario, processes=2, progress=lambda *a: seen.append(a))
    assert [done for done, _ in seen] == [1000, 2000, 2500] and {total for _, total in seen} == {2500}

    def summary(p):
        return ([(q.index, q.hash, q.est_wall_s) for q in p.points], p.designed, p.skipped, p.duplicates,
                {k: [q.index for q in v] for k, v in p.invalid.items()}, p.problems())  # fmt: skip

    assert summary(one) == summary(two)
    assert one.skipped > 0 and one.invalid and len(one.points) > 1000
    assert all(q.scenario is None for q in two.points)  # a check keeps no scenarios


def test_a_stale_heartbeat_stops_the_sweep(tmp_path):
    """The app's closed tab: nothing touches the heartbeat file any more, and the sweep stops itself."""
    heartbeat = tmp_path / "hb"
    heartbeat.touch()
    os.utime(heartbeat, (time.time() - 3600, time.time() - 3600))
    out = tmp_path / "out"
    r = cli("sweep", str(sweep_file(tmp_path, points=12)), "--out", str(out), "--workers", "1", "--heartbeat",
            str(heartbeat))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "stopped before the end" in r.stderr
    assert len(store.finished(out)) < 12


@pytest.mark.parametrize(
    ("manifest", "part", "expected"),
    [
        (b"{}", None, "points: Field required"),
        (b"\xff\xfe", None, "not UTF-8 text"),
        (b"[1]", None, "not a sweep manifest"),
        (None, b"junk", "not a result file of this sweep"),
    ],
    ids=["empty-manifest", "not-utf8", "not-a-mapping", "junk-part"],
)
def test_a_damaged_result_directory_is_one_line_errors(tmp_path, finished_sweep, manifest, part, expected):
    out = finished_sweep
    (out / store.RESULTS).unlink()
    if manifest is not None:
        (out / store.MANIFEST).write_bytes(manifest)
    if part is not None:
        (out / store.POINTS / "part-9-1.parquet").write_bytes(part)
    for args in (["sweep", "report", str(out)], ["sweep", str(sweep_file(tmp_path)), "--out", str(out)]):
        r = cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
        assert expected in r.stderr and all(line.startswith("error: ") for line in r.stderr.strip().splitlines())


def test_a_part_whose_kpi_is_not_numbers_is_one_line_and_an_empty_kpi_is_nan(tmp_path, finished_sweep):
    """A part file whose KPI column held text (or was all empty, Arrow's null type) made that column text when the
    parts were joined: the report's main effects raised KeyError, a resumed sweep's results.parquet ArrowTypeError."""
    out = finished_sweep
    (out / store.RESULTS).unlink()
    part = sorted((out / store.POINTS).glob("part-*.parquet"))[-1]
    rows = pd.read_parquet(part)
    rows.assign(**{"application_bytes.total": None}).to_parquet(part)
    r = cli("sweep", "report", str(out))
    assert r.returncode == 0 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    rows.assign(**{"application_bytes.total": "lots"}).to_parquet(part)
    for args in (["sweep", "report", str(out)], ["sweep", str(sweep_file(tmp_path)), "--out", str(out)]):
        r = cli(*args)
        assert r.returncode == 2 and r.stderr.startswith(
            f"error: {part}: not a result file of this sweep (column "
            "'application_bytes.total' holds 'lots', not a number)"
        ), r.stderr


def test_results_are_the_points_on_disk_when_parts_are_newer_than_results_parquet(tmp_path, finished_sweep):
    out = finished_sweep
    before = store.results(out)
    rows = before[before.point == 0].to_dict("records")
    rows = [r | {"round_latency_s.mean": 123.0} for r in rows]  # a point written again after results.parquet
    time.sleep(0.01)
    store.write_points(out, rows)
    after = store.results(out)
    assert (after.loc[after.point == 0, "round_latency_s.mean"] == 123.0).all()
    assert after[after.point != 0].equals(before[before.point != 0])


def test_more_local_workers_than_the_machine_takes_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    r = cli("sweep", str(sweep_file(tmp_path)), "--out", str(out), "--workers", "1000")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--workers 1000: this machine has" in r.stderr
    assert not out.exists()


def test_a_changed_sweep_resumes_in_its_directory_past_the_parts_of_its_earlier_definition(tmp_path):
    """Rerunning a sweep after removing an axis failed on the earlier parts' text column of that axis ("column 'mode'
    holds 'sequential', not a number") after rewriting sweep.json, so neither definition could be reported. A point
    both definitions share (the base's mode: the same scenario, the same hash) is reused, under this sweep's point
    number, without the axis it no longer has; adding an axis back fills its column from the manifest."""
    out = tmp_path / "out"
    first = sweep_file(tmp_path, points=2, name="s")
    assert cli("sweep", str(first), "--out", str(out), "--workers", "1").returncode == 0
    mode_axis = "  - {name: mode, path: workload.processing.mode, values: [sequential, concurrent]}"
    first.write_text(first.read_text().replace(mode_axis, ""))
    r = cli("sweep", str(first), "--out", str(out), "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "resumed: 1 of 1 points were already done" in r.stdout, r.stdout
    df = pd.read_parquet(out / "results.parquet")
    assert "mode" not in df.columns and len(df) == 2 and set(df.point) == {0}, df
    kem_axis = "  - {path: workload.crypto.kem, values: ['ML-KEM-512']}"
    assert kem_axis in first.read_text()
    first.write_text(first.read_text().replace(kem_axis, f"{kem_axis}\n{mode_axis.replace(', concurrent', '')}"))
    assert cli("sweep", str(first), "--out", str(out), "--workers", "1").returncode == 0
    df = pd.read_parquet(out / "results.parquet")
    assert list(df["mode"]) == ["sequential", "sequential"], df
