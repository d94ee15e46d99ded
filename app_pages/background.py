"""Simulations too long to run inside a page: ``pqtwin sim`` as a child process that the page can stop.

A run goes here when its estimate (sim/cost.py) is over ``inline_s()``. The what-if is written portable (scenario.yaml
and profiles/, ``sim.scenario.write_scenario``) to ``runs/app-runs/<key>/input/`` and simulated by our own
interpreter into ``runs/app-runs/<key>/run/``; the page reads the result back from there, so a finished run is
reused by every later rerun, page and session. One background run per browser session:

- **Stop** kills its process group at once (the page's Stop button).
- A watchdog thread in the server keeps the run's heartbeat file fresh while the session that started it is
  connected, and kills the run as soon as that session is gone (tab closed).
- The child interrupts itself when the heartbeat goes stale (``pqtwin sim --heartbeat``): a run never outlives a
  server that died.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sim.contract import RunLayout, read_spans, read_summary
from sim.errors import UserError
from sim.runner import RunResult
from sim.scenario import Scenario, write_scenario

APP_RUNS = "app-runs"
WATCH_S = 0.25
ROOT = Path(__file__).resolve().parents[1]


def inline_s() -> float:
    """Runs estimated to take longer than this many seconds run in the background (tests lower it)."""
    return float(os.environ.get("PQTWIN_APP_INLINE_S", "3"))


def confirm_s() -> float:
    """Runs estimated to take longer than this many seconds wait for the user's go."""
    return float(os.environ.get("PQTWIN_APP_CONFIRM_S", "10"))


@functools.cache
def model_stamp() -> str:
    """The simulator's own source: a finished run is reused only by the model that computed it."""
    h = hashlib.sha256()
    for f in sorted((ROOT / "sim").rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def run_key(scenario: Scenario, mode: str, seed: int, replications: int) -> str:
    """What decides the result: the portable scenario, its profiles' bytes, mode, seed, replications."""
    text, files = scenario.portable()
    h = hashlib.sha256(f"{model_stamp()}\0{text}\0{mode}\0{seed}\0{replications}".encode())
    for name, data in sorted(files.items()):
        h.update(name.encode() + b"\0" + data)
    return h.hexdigest()[:16]


@dataclass
class Job:
    key: str
    folder: Path
    proc: subprocess.Popen[bytes]
    session: str | None
    estimate_s: float
    label: str
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False

    @property
    def out(self) -> Path:
        return self.folder / "run"

    @property
    def heartbeat(self) -> Path:
        return self.folder / "heartbeat"

    @property
    def log(self) -> Path:
        return self.folder / "sim.log"

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """The whole process group at once (the simulator holds no state worth a graceful end)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.heartbeat.unlink(missing_ok=True)

    def error_lines(self) -> list[str]:
        """The run's own one-line errors (``error: ...``), or its last log lines."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        lines = [ln.removeprefix("error: ") for ln in text.splitlines() if ln.startswith("error:")]
        return lines or [f"the simulation ended with exit code {self.proc.returncode}: {' '.join(text.split()[-40:])}"]


_jobs: dict[str | None, Job] = {}  # session id → its background run
_lock = threading.Lock()


def folder_of(runs: Path, key: str, session: str | None) -> Path:
    """A session's attempt at ``key``: sessions running the same what-if at once never share files."""
    tag = hashlib.sha256(str(session).encode()).hexdigest()[:8]
    return runs / APP_RUNS / key / tag


def result(runs: Path, key: str, read: Callable[[Path, int], RunResult | None] | None = None) -> RunResult | None:
    """The finished run of ``key``, from any session's attempt (None: not run, or not finished). ``read(run dir,
    its summary's mtime)`` reads it (the page passes a cached reader: it asks on every rerun)."""
    for summary in sorted((runs / APP_RUNS / key).glob(f"*/run/{RunLayout.SUMMARY}")):
        if summary.parent.is_symlink() or summary.parent.parent.is_symlink():
            continue  # not an attempt of ours: a damaged one is removed, and a link would remove what it points to
        try:
            mtime_ns = summary.stat().st_mtime_ns
        except OSError:
            continue
        if (found := (read or read_run)(summary.parent, mtime_ns)) is not None:
            return found
    return None


def read_run(folder: Path, mtime_ns: int = 0) -> RunResult | None:
    """A finished run directory's result; a damaged one (a disk filled up) is removed, to be run again."""
    layout = RunLayout(folder)
    try:
        series = pd.read_parquet(layout.series) if layout.series.is_file() else None
        return RunResult(read_spans(layout.spans), read_summary(layout.summary), series)
    except (OSError, ValueError):
        shutil.rmtree(layout.root, ignore_errors=True)
        return None


def remove(folder: Path) -> None:
    """Remove an attempt's folder; a link there is removed itself, never written through (rmtree refuses a link,
    and the run would then have been written, with --force, into the folder it points to)."""
    if folder.is_symlink():
        folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)


def current(session: str | None) -> Job | None:
    with _lock:
        return _jobs.get(session)


def start(runs: Path, scenario: Scenario, mode: str, seed: int, replications: int, estimate_s: float,
          label: str, session: str | None) -> Job:  # fmt: skip
    """Start the run in the background, after stopping this session's previous one."""
    stop(session)
    key = run_key(scenario, mode, seed, replications)
    folder = folder_of(runs, key, session)
    try:
        remove(folder)  # this session's stopped or failed attempt
        write_scenario(scenario, folder / "input")
        (folder / "heartbeat").touch()
    except OSError as exc:
        raise UserError(f"{runs}: cannot start a background run there: {exc.strerror or exc} (set PQTWIN_RUNS_DIR "
                        "to a writable directory)") from None  # fmt: skip
    cmd = [sys.executable, "-m", "pqtwin", "sim", str(folder / "input" / RunLayout.SCENARIO), "--mode", mode,
           "--seed", str(seed), "--replications", str(replications), "--out", str(folder / "run"), "--force",
           "--heartbeat", str(folder / "heartbeat"),
           # one process: Stop kills it and waits for it; forked replication workers killed with it would linger
           # until the system reaps them (~1.5 s here), and the page's server shares the cores anyway
           "--workers", "1"]  # fmt: skip
    with (folder / "sim.log").open("wb") as log:
        # our own interpreter and a file this module wrote: no shell, no user text in the command
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
    job = Job(key, folder, proc, session, estimate_s, label)
    with _lock:
        _jobs[session] = job
    threading.Thread(target=_watch, args=(job,), name=f"watch-{key}", daemon=True).start()
    return job


def stop(session: str | None) -> None:
    """Stop this session's background run (the Stop button)."""
    with _lock:
        job = _jobs.get(session)
    if job is not None and job.running():
        job.stopped = True
        job.kill()


def _session_connected(session: str | None) -> bool:
    """True while the browser session that started a run is connected (always, without a Streamlit server)."""
    from streamlit.runtime import Runtime

    if session is None or not Runtime.exists():
        return True
    return bool(Runtime.instance().is_active_session(session))


def _watch(job: Job) -> None:
    while job.running():
        if not _session_connected(job.session):
            job.stopped = True
            job.kill()
            break
        job.heartbeat.touch()
        time.sleep(WATCH_S)
    job.heartbeat.unlink(missing_ok=True)


def outcome(job: Job) -> RunResult | None:
    """A finished job's result; UserError with the run's own lines when it failed (None: it was stopped)."""
    if job.stopped or job.proc.returncode in (130, -signal.SIGKILL, -signal.SIGINT):
        job.stopped = True  # killed or interrupted from outside (heartbeat lost): the page offers Run again
        return None
    found = result(job.folder.parent.parent.parent, job.key)
    if job.proc.returncode == 0 and found is not None:
        return found
    raise UserError(job.error_lines())
