"""Replications in forked worker processes that share no lock with their parent.

``multiprocessing.Pool`` hands tasks out through a queue whose read lock an idle worker holds while it waits;
ending the pool (``terminate``) takes that lock too, and on an interrupted run it could wait for it forever:
Ctrl-C during ``pqtwin sim --workers 2`` left the parent asleep on a futex with its workers gone, about one
interrupted run in ten on a loaded 2-core machine (2026-11-29). Here each worker has two pipes of its own: the
parent writes the position of the next item to compute, the worker writes back the pickled result. Nothing is
shared, so ending the pool is killing its workers and reaping them, whatever state they are in.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_INDEX = struct.Struct("!q")  # parent -> worker: the position of the item to compute; -1: end
_SIZE = struct.Struct("!Q")  # worker -> parent: the length of the pickled (ok, position, value) that follows


@dataclass
class _Worker:
    pid: int
    tasks: int  # the parent's end of the task pipe (it writes)
    results: int  # the parent's end of the result pipe (it reads)


class ForkPool(Generic[T, R]):
    """``fn`` over ``items`` in ``n`` forked processes (each computes one item at a time), in order, as
    ``map`` would; an exception raised by ``fn`` is raised here. ``close`` (or leaving the ``with``) kills
    the workers and reaps them. Workers ignore SIGINT: a terminal's Ctrl-C is the parent's to handle."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T], n: int):
        self.fn, self.items = fn, items
        self.workers: list[_Worker] = []
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # no Ctrl-C between fork and SIG_IGN
        try:
            for _ in range(n):
                self.workers.append(self._fork())
        except BaseException:  # a fork refused: none of the workers already started outlives the pool
            self.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def __enter__(self) -> ForkPool[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fork(self) -> _Worker:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
                for w in self.workers:  # the other workers' pipes, inherited: not this worker's to hold open
                    os.close(w.tasks)
                    os.close(w.results)
                os.close(task_w)
                os.close(result_r)
                self._serve(task_r, result_w)
            finally:
                os._exit(0)
        os.close(task_r)
        os.close(result_w)
        return _Worker(pid, task_w, result_r)

    def _serve(self, tasks: int, results: int) -> None:
        while (at := _INDEX.unpack(_read(tasks, _INDEX.size))[0]) >= 0:
            reply: tuple[bool, int, object]
            try:
                reply = (True, at, self.fn(self.items[at]))
            except Exception as exc:  # the parent raises it
                reply = (False, at, exc)
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            write_all(results, _SIZE.pack(len(data)) + data)

    def imap(self, meanwhile: Callable[[], object] | None = None) -> Iterator[R]:
        """The results in the order of ``items``, each as soon as it and those before it are done; ``meanwhile``
        runs here once the first items are out, while the workers compute them."""
        done: dict[int, R] = {}
        sent, given = 0, 0
        with selectors.DefaultSelector() as sel:
            for w in self.workers:
                if sent < len(self.items):
                    write_all(w.tasks, _INDEX.pack(sent))
                    sel.register(w.results, selectors.EVENT_READ, w)
                    sent += 1
            if meanwhile is not None:
                meanwhile()
            while given < len(self.items):
                if given in done:
                    yield done.pop(given)
                    given += 1
                    continue
                for key, _ in sel.select():
                    w = key.data
                    size = _SIZE.unpack(_read(w.results, _SIZE.size))[0]
                    ok, at, value = pickle.loads(_read(w.results, size))  # noqa: S301 - our own fork's output
                    if not ok:
                        raise value
                    done[at] = value
                    if sent < len(self.items):
                        write_all(w.tasks, _INDEX.pack(sent))
                        sent += 1
                    else:
                        sel.unregister(w.results)

    def close(self) -> None:
        for w in self.workers:
            for fd in (w.tasks, w.results):
                os.close(fd)
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
            os.waitpid(w.pid, 0)
        self.workers = []


def _read(fd: int, n: int) -> bytearray:
    """Exactly ``n`` bytes; a worker that ended before writing them is an error."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise RuntimeError("a replication worker process ended before its result (killed? out of memory?)")
        got += k
    return buf


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` (a pipe takes it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_all(fd: int) -> bytes:
    """Everything until the writer closes its end."""
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)
