"""A first pass's SimPy run kept alive at its storm's end, so the vectorized engine's later passes resume there.

The vectorized engine (sim/runner.py ``replicate``) runs SimPy once per pass. After a start-up storm (every
device's first handshake, or its first lull: sim/model.py), the frames the kernels compute right after it can
overtake some SimPy computed in it, so the first pass is found delayed there and a next pass must serve those
frames beside the foreground. When everything a pass found arrives after the storm's end (``Outcome.resumable``),
the next pass is *defined* as the first pass's run up to the storm's end that then serves them
(``Replication.resume``): the same events in the same order up to there, whether it is computed again from 0 or
resumed here. Forking is only a way not to compute the storm again for each pass (10,000 devices x 1 h: ~7 s of
SimPy).

``Fork.take`` is the model's hook at the storm's end (``Replication.at_storm_end``): it forks; the parent runs
on and finishes the first pass, the child waits for the parent's word. ``Fork.resume(background, final)`` gives
the child the word: it forks again, and that process runs on from the storm's end as the next pass and sends back
its result (or the exception it raised); the child stays for the pass after. ``Fork.discard`` ends the child (it
reads end-of-file and exits).

Where forking is not safe (no ``os.fork``, or more than one thread: a forked child has only the forking one,
and another's locks would stay held) or would not pay (a storm of few events), ``available`` says no and the
runner computes the same passes from 0.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from sim.forkpool import read_message, write_message

if TYPE_CHECKING:
    from collections.abc import Callable

    from sim.contract import SpanRow
    from sim.model import Replication, ReplicationResult

# SimPy events by the storm's end below which a fork costs more than computing the storm again would (a fork and
# its copied pages: milliseconds; 10,000 events: ~0.1 s)
MIN_EVENTS = 10_000


class Fork:
    """A forked copy of a first pass at its storm's end (see the module doc); one ``take``."""

    # processes apart from the caller's: off where one process must do all the work (``pqtwin sim --profile-run``:
    # a profile sees one process); the run is the same either way
    enabled = True

    def __init__(self) -> None:
        self.pid: int | None = None  # the child, in the parent
        self.word = self.result = -1  # the parent's ends of the two pipes
        self.in_child = False
        self._reply = -1  # the child's end of the result pipe
        # the storm's span rows and device handshakes, as both processes hold them at the fork: the child sends
        # only what it adds after them (the lists only grow; their items do not change)
        self._rows: list[SpanRow] = []
        self._handshakes: list[tuple[str, float, float, bool]] = []
        self._held = (0, 0)

    @staticmethod
    def available() -> bool:
        return Fork.enabled and hasattr(os, "fork") and threading.active_count() == 1

    def take(self, rep: Replication) -> None:
        """Fork here (in the SimPy run, at the storm's end). The parent returns at once; the child stays, and for
        each pass asked of it a process forked from it returns here, having applied it (``_serve``)."""
        if rep.env.events < MIN_EVENTS or self.pid is not None or self.in_child:
            return
        from sim import kernels

        kernels.load()  # once for every pass (each would load it: ~0.35 s)
        # the storm's objects live on in both processes: out of the collector's scans in both (each would scan
        # them once, ~0.5 s at 10,000 devices), and their pages stay shared (a scan writes to every object);
        # the replication's end makes them collectable again (sim/runner.py ``collecting_rarely``)
        gc.freeze()
        self._rows, self._handshakes = rep.rec.rows, rep.device_handshakes
        self._held = (len(self._rows), len(self._handshakes))
        fds: list[int] = []
        try:
            fds += os.pipe()
            fds += os.pipe()
            parent = os.getpid()
            pid = os.fork()
        except OSError:  # no fork now (out of processes or memory): the next pass is computed again instead
            for fd in fds:
                os.close(fd)
            return
        word_r, word_w, result_r, result_w = fds
        if pid:
            os.close(word_r)
            os.close(result_w)
            self.pid, self.word, self.result = pid, word_w, result_r
            return
        _die_with(parent)
        os.close(word_w)
        os.close(result_r)
        self.in_child, self._reply = True, result_w
        try:
            word = self._serve(word_r)
            if word is not None:
                background, final = pickle.loads(word)  # noqa: S301 - our own parent's word
                _keep_freed_memory()
                rep.resume(background, final)
                return  # this process goes on as the pass; sim/runner.py ``_pass`` ships its end
        except BaseException:  # nothing of the parent's may run on in this process
            os._exit(1)
        os._exit(0)

    def _serve(self, word_r: int) -> bytearray | None:
        """In the kept child: for each word of the parent, fork a process that goes on as that pass (in it: the
        word); wait for it, and if it ended without its result, say so. None when the parent closes its end."""
        while (word := read_message(word_r)) is not None:
            child = os.getpid()
            pid = os.fork()
            if not pid:
                os.close(word_r)
                _die_with(child)
                return word
            _, status = os.waitpid(pid, 0)
            if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                write_message(self._reply, b"")  # killed (out of memory?) before or while it shipped
        return None

    def resume(self, background: dict[str, np.ndarray], final: bool,
               meanwhile: Callable[[], None] | None = None) -> ReplicationResult:  # fmt: skip
        """The next pass, from a fork of the kept child: it serves ``background`` from the storm's end on; this
        process calls ``meanwhile`` while it waits. The child stays for the pass after (``discard`` ends it)."""
        assert self.pid is not None, "no first pass was kept"
        write_message(self.word, pickle.dumps((background, final), protocol=pickle.HIGHEST_PROTOCOL))
        if meanwhile is not None:
            meanwhile()
        data = read_message(self.result)
        if not data:  # (the runner discards the child, as on any error here)
            raise RuntimeError("the resumed pass of a replication ended without its result (killed? out of memory?)")
        outcome = pickle.loads(data)  # noqa: S301 - our own fork's output
        if isinstance(outcome, BaseException):
            raise outcome
        rows, handshakes = self._held
        outcome.rows[:0] = self._rows[:rows]
        outcome.device_handshakes[:0] = self._handshakes[:handshakes]
        return outcome  # type: ignore[no-any-return]

    def ship(self, outcome: ReplicationResult | BaseException) -> NoReturn:
        """In a resumed pass's process: send its result (or what it raised) to the parent, and end."""
        try:
            try:
                if not isinstance(outcome, BaseException):  # the parent holds the storm's rows and handshakes
                    rows, handshakes = self._held
                    outcome = replace(outcome, rows=outcome.rows[rows:],
                                      device_handshakes=outcome.device_handshakes[handshakes:])  # fmt: skip
                data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # an exception that does not pickle: its message does
                data = pickle.dumps(RuntimeError(f"the resumed pass failed: {outcome!r} ({exc})"))
            write_message(self._reply, data)
        finally:
            os._exit(0)

    def discard(self) -> None:
        """Close the pipes (an unused child reads end-of-file and exits) and reap the child (idempotent)."""
        for fd in (self.word, self.result):
            if fd >= 0:
                os.close(fd)
        self.word = self.result = -1
        if self.pid is not None:
            os.waitpid(self.pid, 0)
            self.pid = None


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def _keep_freed_memory() -> None:
    """In the resumed pass's own process (it ends with the pass): keep freed memory for reuse instead of handing it
    back to the OS. The kernels' windows allocate and free ~100 MB of arrays each; glibc serves big ones from fresh
    mappings and trims the heap's top, so each window faulted its pages in again: 10,000 devices x 1 h, 241 k page
    faults and 0.38 s of system time in this process, against 53 k and 0.09 s with these settings (the same peak
    memory). No effect where mallopt is not glibc's."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 1 << 30)  # arrays from the heap, not a mapping each
    mallopt(M_TRIM_THRESHOLD, 1 << 32)  # ... which is not given back when the top is free
    mallopt(M_TOP_PAD, 1 << 28)  # ... and grows in big steps


def _die_with(parent: int) -> None:
    """Linux: this process is killed when the one that forked it ends (``PR_SET_PDEATHSIG``): a replication
    worker killed mid-run (Ctrl-C, the app's Stop) leaves no resumed pass running on."""
    import ctypes  # only a fork pays for it

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipe's end-of-file still ends an idle child
        return
    if os.getppid() != parent:  # the parent ended before the call above took effect
        os._exit(0)
