"""Replications in forked worker processes that share no lock with their parent.

``multiprocessing.Pool`` hands tasks out through a queue whose read lock an idle worker holds while it waits;
ending the pool (``terminate``) takes that lock too, and on an interrupted run it could wait for it forever:
Ctrl-C during ``pqtwin sim --workers 2`` left the parent asleep on a futex with its workers gone, about one
interrupted run in ten on a loaded 2-core machine (2026-11-29). Here the tasks are the items' positions, 8 bytes
each, in one pipe all workers read (the kernel hands each read of 8 bytes whole to one reader: no lock of ours),
and each worker writes its pickled results into a pipe of its own. Ending the pool is killing its workers and
reaping them, whatever state they are in.

The workers take the next position as soon as they are done, not when the parent has read their last result:
the parent has its own work between results (loading pandas while the first replications run, a mode's tables
and files while the next mode's run; ~0.3 and ~0.15 s of the paper run), and a worker that waited for it to
hand out each item idled through it (the paper run both modes x 30 on 2 workers: 1.63-1.81 s, its workers'
part 1.07 s for 0.52 s of work each). A result waits in its pipe (enlarged to ``RESULT_PIPE_BYTES`` where the
system allows) until the parent reads it; a worker whose pipe is full waits for that.
"""

from __future__ import annotations

import contextlib
import fcntl
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

_INDEX = struct.Struct("!q")  # parent -> workers: the position of an item to compute (the pipe's end: no more)
_SIZE = struct.Struct("!Q")  # the length of the message that follows (``write_message``)
RESULT_PIPE_BYTES = 1 << 20  # a worker's result pipe (Linux's default limit for a user, fs.pipe-max-size)
LOST = "a replication worker process ended before its result (killed? out of memory?)"


@dataclass
class _Worker:
    pid: int
    results: int  # the parent's end of the worker's result pipe (it reads)


class ForkPool(Generic[T, R]):
    """``fn`` over ``items`` in ``n`` forked processes (each computes one item at a time), in order, as
    ``map`` would; an exception raised by ``fn`` is raised here. ``close`` (or leaving the ``with``) kills
    the workers and reaps them. Workers ignore SIGINT: a terminal's Ctrl-C is the parent's to handle."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T], n: int):
        self.fn, self.items = fn, items
        self.workers: list[_Worker] = []
        self._tasks_r, tasks_w = os.pipe()  # the shared task pipe
        self._tasks: int | None = tasks_w  # the parent's end; None once closed
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # no Ctrl-C between fork and SIG_IGN
        try:
            for _ in range(n):
                self.workers.append(self._fork())
        except BaseException:  # a fork refused: none of the workers already started outlives the pool
            self.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            os.close(self._tasks_r)  # the workers' end: theirs alone now
        os.set_blocking(self._tasks, False)  # written as it takes them (``_hand_out``), never waited on

    def __enter__(self) -> ForkPool[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fork(self) -> _Worker:
        result_r, result_w = os.pipe()
        with contextlib.suppress(OSError):  # a smaller pipe only makes the worker wait for the parent sooner
            fcntl.fcntl(result_w, fcntl.F_SETPIPE_SZ, RESULT_PIPE_BYTES)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
                for w in self.workers:  # the other workers' result pipes, inherited: not this worker's to hold open
                    os.close(w.results)
                assert self._tasks is not None
                os.close(self._tasks)  # else the task pipe would never end for the workers
                os.close(result_r)
                self._serve(self._tasks_r, result_w)
            finally:
                os._exit(0)
        os.close(result_w)
        return _Worker(pid, result_r)

    def _serve(self, tasks: int, results: int) -> None:
        while (task := _read_task(tasks)) is not None:
            at = _INDEX.unpack(task)[0]
            reply: tuple[bool, int, object]
            try:
                reply = (True, at, self.fn(self.items[at]))
            except Exception as exc:  # the parent raises it
                reply = (False, at, exc)
            write_message(results, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))

    def _hand_out(self, sent: int) -> int:
        """Put positions from ``sent`` on into the task pipe until it is full or all are in (then it is closed,
        which ends the workers once they have read them); returns the next position to put."""
        assert self._tasks is not None
        while sent < len(self.items):
            try:
                os.write(self._tasks, _INDEX.pack(sent))  # 8 bytes into a pipe: whole or not at all
            except BlockingIOError:
                return sent
            sent += 1
        os.close(self._tasks)
        self._tasks = None
        return sent

    def imap(self, meanwhile: Callable[[], object] | None = None) -> Iterator[R]:
        """The results in the order of ``items``, each as soon as it and those before it are done; ``meanwhile``
        runs here once the items are handed out, while the workers compute them."""
        done: dict[int, R] = {}
        given = ended = 0
        sent = self._hand_out(0)
        with selectors.DefaultSelector() as sel:
            for w in self.workers:
                sel.register(w.results, selectors.EVENT_READ, w)
            if self._tasks is not None:  # more items than the task pipe holds: the rest as it empties
                sel.register(self._tasks, selectors.EVENT_WRITE, None)
            if meanwhile is not None:
                meanwhile()
            while given < len(self.items):
                if given in done:
                    yield done.pop(given)
                    given += 1
                    continue
                for key, _ in sel.select():
                    if key.data is None:  # the task pipe has room
                        sent = self._hand_out(sent)
                        if self._tasks is None:
                            sel.unregister(key.fileobj)
                        continue
                    w = key.data
                    data = read_message(w.results)
                    if data is None:  # the worker has ended: the task pipe was empty and closed
                        sel.unregister(w.results)
                        ended += 1
                        if ended == len(self.workers) and given + len(done) < len(self.items):
                            raise RuntimeError(LOST)  # an item a worker took never came back
                        continue
                    ok, at, value = pickle.loads(data)  # noqa: S301 - our own fork's output
                    if not ok:
                        raise value
                    done[at] = value

    def close(self) -> None:
        if self._tasks is not None:
            os.close(self._tasks)
            self._tasks = None
        for w in self.workers:
            os.close(w.results)
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
            os.waitpid(w.pid, 0)
        self.workers = []


def _read_task(fd: int) -> bytes | None:
    """The next position from the shared task pipe (each write of one is 8 bytes, and a read of 8 bytes takes a
    whole one), or None once the parent has put them all and the pipe is empty."""
    data = os.read(fd, _INDEX.size)
    if not data:
        return None
    assert len(data) == _INDEX.size  # a pipe read takes whole writes here: every write is one 8-byte position
    return data


def _result_size(fd: int) -> int | None:
    """The size of a worker's next result, or None if it has ended (its pipe closed with nothing more in it)."""
    first = os.read(fd, _SIZE.size)
    if not first:
        return None
    return int(_SIZE.unpack(first + _read(fd, _SIZE.size - len(first)))[0])


def _read(fd: int, n: int) -> bytearray:
    """Exactly ``n`` bytes; a worker that ended before writing them is an error."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise RuntimeError(LOST)
        got += k
    return buf


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` (a pipe takes it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_message(fd: int, data: bytes) -> None:
    """``data`` with its length before it, for ``read_message``."""
    write_all(fd, _SIZE.pack(len(data)) + data)


def read_message(fd: int) -> bytearray | None:
    """The next message ``write_message`` put in the pipe, or None once the writer has closed its end."""
    size = _result_size(fd)
    return None if size is None else _read(fd, size)
