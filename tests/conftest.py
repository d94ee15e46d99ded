"""Shared fixtures: paths of the shipped scenarios and a runner for the installed CLI."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

# A shell without job control starts a background job (``make test &``, ``nohup``) with SIGINT ignored, and an
# ignored signal stays ignored across exec: every process the tests start would then shrug off the Ctrl-C the
# interruption tests send (they failed so, 2026-11-30). Handled here, it is reset to the default in children.
signal.signal(signal.SIGINT, signal.default_int_handler)


class LoopbackAddressing:
    """``hw.runconfig.Addressing`` for a run's configuration built in a test (``build``): every pod on loopback,
    one port; nothing is bound."""

    def listen_port(self, pod: str, service: str) -> int:
        return 9000

    def dial(self, src: str, pod: str, host: str, service: str, port: int) -> tuple[str, int]:
        return ("127.0.0.1", port)

    def devices(self, pop: object, host: str) -> dict[str, object]:
        return {}


def bench_module(name: str) -> ModuleType:
    """``bench/NAME.py`` imported as module ``NAME`` (registered: its dataclasses look their module up by name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def span_row(rnd: int, pod: str, phase: str, op: str, start_s: float, end_s: float) -> dict[str, object]:
    """One span of replication 0 as a spans table's row (``sim.contract.COLUMNS``), for tests that cut rounds."""
    return {"replication": 0, "round": rnd, "pod": pod, "host": "local", "phase": phase, "op": op,
            "start_s": start_s, "end_s": end_s, "queue_wait_s": 0.0, "bytes": 0}  # fmt: skip


def session_processes(sid: int) -> list[int]:
    """Processes of a session still alive (not zombies): what a run started with start_new_session left."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def run_pqtwin(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess; returns CompletedProcess (text)."""
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", *args]
    environ = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or ROOT, timeout=300, env=environ)


@pytest.fixture
def pqtwin():
    """``run_pqtwin``, as a fixture."""
    return run_pqtwin


@pytest.fixture
def app_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An app test's own runs/ and what-if library, and no background run of another test: AppTest's sessions have
    no id (None), so a finished run one test left would be another's "this session's run" (shown, not asked for)."""
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PQTWIN_WHATIFS_DIR", str(tmp_path / "whatifs"))
    _forget_background_runs()  # another module's test in this process may have left one
    yield
    _forget_background_runs()


def _forget_background_runs() -> None:
    from app_pages import background

    for session in list(background._jobs):
        background.stop(session)
    with background._lock:
        background._jobs.clear()
