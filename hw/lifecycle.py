"""Processes' lives: a node must not outlive the process that started it, and a run stopped by a signal keeps
what it finished.

The local backend passes its pid in ``PQTWIN_PARENT_PID``; a node asks the kernel for SIGTERM when its parent
dies (Linux ``prctl(PR_SET_PDEATHSIG)``), and where that is unavailable (or the parent already died before
the request) a watcher thread polls the parent's pid. Kubernetes pods have no such parent: the variable is
unset there and nothing happens.

The orchestrator (``hw.local.run_local``) is stopped by Ctrl-C, ``kill`` (SIGTERM) or a closed terminal (SIGHUP)
alike: ``stop_signals`` makes the other two raise ``Stopped``, a ``KeyboardInterrupt``, so every stop takes the
path Ctrl-C takes (the finished rounds recovered and written); ``held_stops`` keeps a second stop from cutting
that path short.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from sim.contract import MAX_RUN_JSON_BYTES, RunLayout
from sim.errors import UserError
from sim.loading import read_bytes

PARENT_ENV = "PQTWIN_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    wanted = os.environ.get(PARENT_ENV)
    if not wanted or not wanted.isdigit():
        return
    parent = int(wanted)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the watcher below does it
    if os.getppid() != parent:  # died before the request took effect
        os._exit(143)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


STOPS = {signal.SIGTERM: "SIGTERM (kill)", signal.SIGHUP: "SIGHUP (the terminal closed)"}


class Stopped(KeyboardInterrupt):
    """A stop asked by SIGTERM or SIGHUP, handled as Ctrl-C is; ``str()`` names the signal."""

    def __init__(self, signum: int):
        super().__init__(STOPS.get(signal.Signals(signum), signal.Signals(signum).name))
        self.signum = signum


last_stop: Stopped | None = None  # the signal that stopped this process's run, for the command's last line


def _heeded(signals: Iterable[int]) -> list[int]:
    """The signals this process does not ignore: ``nohup`` ignores SIGHUP, and a run started so (and its nodes,
    which inherit the disposition) must go on when the terminal closes."""
    return [sig for sig in signals if signal.getsignal(sig) is not signal.SIG_IGN]


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # only it may set handlers


@contextlib.contextmanager
def _handling(signals: Iterable[int], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for each of ``signals`` this process heeds (``_heeded``) while the block runs, then the
    handlers there were; nothing outside the main thread, which alone may set them."""
    if not _in_main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in _heeded(signals)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Stopped`` while the block runs (before, they ended the process at once: no
    results, the finished rounds left in journals nothing read, a stale lock)."""

    def stop(signum: int, _frame: Any) -> None:
        global last_stop
        last_stop = Stopped(signum)
        raise last_stop

    global last_stop
    last_stop = None
    with _handling(STOPS, stop):
        yield


def raise_held(name: str) -> NoReturn:
    """Stop now for a signal ``held_stops`` noted (its name): Ctrl-C as KeyboardInterrupt, SIGTERM and SIGHUP as
    ``Stopped``, recorded as ``last_stop`` as ``stop_signals`` records one, so the command's last line names it and
    exits 128 + its number (a SIGTERM while a run wrote its results read as a Ctrl-C: 130, "interrupted")."""
    global last_stop
    if name == "SIGINT":
        raise KeyboardInterrupt
    last_stop = Stopped(getattr(signal, name))
    raise last_stop


@contextlib.contextmanager
def held_stops() -> Iterator[list[str]]:
    """Ctrl-C, SIGTERM and SIGHUP are noted, not raised, while the block runs (a run's clean-up: a second Ctrl-C
    during it skipped writing the results); the list holds the ones that came. Handlers, not a signal mask: the
    processes the block starts must not inherit blocked signals."""
    came: list[str] = []
    with _handling((signal.SIGINT, *STOPS), lambda signum, _frame: came.append(signal.Signals(signum).name)):
        yield came


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot, ``/proc/PID/stat``), None where unknown: with the
    pid, an identity that a later process given the same pid does not share (a run directory names its orchestrator
    so, for ``pqtwin hw recover`` to tell whether it still runs)."""
    stat = _stat(pid)
    return stat[1] if stat is not None else None


def alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` still runs (not gone, not a zombie) and, with ``start`` (``process_start``), is still
    the process that started then, not another one the pid was given to since."""
    if pid <= 0:  # 0 and -1 are process groups to kill(), never one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    except (OverflowError, OSError):
        return False
    stat = _stat(pid)
    if stat is None:  # no /proc (not Linux): the pid answers, that is all we know
        return True
    state, begun = stat
    return state not in ("Z", "X", "x") and (start is None or begun == start)


def stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP, a debugger): it ends on nothing until it is continued. False where
    unknown (no /proc)."""
    stat = _stat(pid)
    return stat is not None and stat[0] in ("T", "t")


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of process ``pid`` from ``/proc/PID/stat`` (fields 3 and 22; the name, field 2, is in
    parentheses and may hold spaces and parentheses itself: the fields are counted after its last ``)``)."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as f:
            text = f.read(4096)
    except (OSError, ValueError):
        return None
    fields = text.rpartition(")")[2].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def node_pids(run_dir: Path) -> dict[str, int]:
    """The run's node processes, {name: pid}, as ``pids.json`` names them (the local and netns backends write it
    as they start each node; none on Kubernetes, or where it cannot be read)."""
    try:
        pids = json.loads(read_bytes(RunLayout(run_dir).pids, MAX_RUN_JSON_BYTES, "a JSON file"))
    except (UserError, ValueError):
        return {}
    if not isinstance(pids, dict):
        return {}
    return {str(n): p for n, p in pids.items() if isinstance(p, int) and not isinstance(p, bool) and 0 < p < 1 << 31}


def node_alive(pid: int, name: str) -> bool:
    """Whether ``pid`` is still the node process ``name`` (its command line says so)."""
    if not alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: the pid answers
    return b"hw.node" in args and name.encode() in args


def nodes_ended(run_dir: Path, names: Iterable[str]) -> set[str]:
    """Which of ``names`` are node processes of the run whose process has ended (``node_pids``; a name it does not
    list is not known to have ended)."""
    pids = node_pids(run_dir)
    return {n for n in names if n in pids and not node_alive(pids[n], n)}
