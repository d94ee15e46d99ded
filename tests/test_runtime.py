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
