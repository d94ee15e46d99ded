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
