"""Node process set-up (hw/runtime.py): the heap a node's warm-up touches stays with the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT

PROBE = """
import re
from hw.runtime import prefault_heap, tune_allocator
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1]) * 1024
assert tune_allocator()
before = rss()
prefault_heap(4 << 20)
print(rss() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_the_heap_a_warm_up_touches_stays_resident():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 60 << 20  # 16 model-sized buffers of 4 MiB: faulted in, freed, kept


THREADS_THEN_STATS = """
import ctypes, threading
from hw.runtime import tune_allocator
def allocate():
    for _ in range(20):
        bytearray(1 << 20)  # served by the thread's arena (beyond the thread caches)
started = [threading.Thread(target=allocate) for _ in range(3)]  # threads of a node's start-up, before its set-up
for t in started:
    t.start()
for t in started:
    t.join()
tune_allocator()  # as a node calls it once running: too late for the arenas those threads made
later = threading.Thread(target=allocate)
later.start()
later.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.parametrize("node_env", [True, False])
def test_a_node_process_keeps_one_malloc_arena_whatever_threads_it_starts_first(node_env):
    """A node starts with NODE_ENV (every backend sets it): one arena, the heap its warm-up faulted in, for every
    thread. Without it, threads started before the node's own set-up make arenas of their own, which glibc then
    hands to later threads: the first concurrent round's job threads faulted in ~40 MB of fresh pages there."""
    import os

    from hw.local import Children
    from hw.runtime import NODE_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if node_env:
        env = {**env, **NODE_ENV}
        assert {k: Children(ROOT).env[k] for k in NODE_ENV} == NODE_ENV  # the local and netns backends start nodes so
    out = subprocess.run([sys.executable, "-c", THREADS_THEN_STATS], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    arenas = out.stderr.count("Arena ")
    assert arenas == 1 if node_env else arenas > 1, out.stderr
