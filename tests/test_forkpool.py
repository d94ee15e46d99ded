"""Forked replication workers (sim/forkpool.py): results in order, a worker's exception raised in the parent,
and no worker left once the pool is closed, however the iteration ended."""

from __future__ import annotations

import os
import time

import pytest

from sim.forkpool import ForkPool


def _slow_square(x: int) -> int:
    time.sleep(0.01 * (x % 3))  # later items may finish first: the order must still hold
    return x * x


def _fail_on_five(x: int) -> int:
    if x == 5:
        raise ValueError("five")
    return x


def _left(pid: int) -> bool:
    """True unless the worker has ended and been reaped (a zombie or a live process is left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def test_results_come_in_order_and_the_workers_are_reaped():
    with ForkPool(_slow_square, list(range(12)), 3) as pool:
        pids = [w.pid for w in pool.workers]
        assert list(pool.imap()) == [x * x for x in range(12)]
    assert not any(_left(p) for p in pids)


def test_a_workers_exception_is_raised_here_and_ends_the_pool():
    with pytest.raises(ValueError, match="five"), ForkPool(_fail_on_five, list(range(9)), 2) as pool:
        pids = [w.pid for w in pool.workers]
        list(pool.imap())
    assert not any(_left(p) for p in pids)


def test_leaving_early_kills_busy_workers():
    with ForkPool(time.sleep, [0.0, 30.0, 30.0], 2) as pool:
        pids = [w.pid for w in pool.workers]
        next(pool.imap())
    assert not any(_left(p) for p in pids)


def _mark(path: str) -> str:
    with open(path, "w"):
        pass
    return path


def test_workers_go_on_while_the_parent_is_busy(tmp_path):
    """A worker takes its next item when done, not when the parent has read its last result: the parent's own
    work between results (loading pandas, writing a mode's tables) must not idle the workers."""
    items = [str(tmp_path / f"{i}") for i in range(8)]
    seen: list[int] = []

    def busy_parent() -> None:  # the parent reads no result meanwhile: only workers that go on make progress
        deadline = time.monotonic() + 30
        while len(list(tmp_path.iterdir())) < len(items) and time.monotonic() < deadline:
            time.sleep(0.005)
        seen.append(len(list(tmp_path.iterdir())))

    with ForkPool(_mark, items, 2) as pool:
        assert list(pool.imap(busy_parent)) == items
    assert seen == [len(items)]  # every item done by the two workers before the parent read one


def test_more_items_than_the_task_pipe_holds():
    n = 20_000  # 160 kB of positions: more than a pipe holds, handed out as it empties
    with ForkPool(abs, list(range(-n, 0)), 2) as pool:
        assert list(pool.imap()) == list(range(n, 0, -1))


def _die_on_three(x: int) -> int:
    if x == 3:
        os._exit(9)  # as a worker killed by the kernel (out of memory) would end
    return x


def test_a_worker_that_dies_with_an_item_is_an_error_not_a_hang():
    with (
        pytest.raises(RuntimeError, match="ended before its result"),
        ForkPool(_die_on_three, list(range(8)), 2) as pool,
    ):
        pids = [w.pid for w in pool.workers]
        list(pool.imap())
    assert not any(_left(p) for p in pids)
