"""Process set-up shared by the twin's node processes and ``pqtwin calibrate``.

Model messages are ~1 MB buffers. glibc serves such sizes with mmap/munmap by default, so every message
costs page faults on allocation and a TLB shoot-down on release (~0.3 ms per MB here), and the first
buffers after a free are served differently from later ones. Raising the mmap and trim thresholds keeps
large buffers on the heap: both the calibration and the twin then run with the same, steadier allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LARGE_BUFFER_BYTES = 256 << 20


SWITCH_INTERVAL_S = 0.0005


def tune_threads() -> None:
    """Hand the GIL over sooner than CPython's 5 ms default: a thread that finished a crypto call (which
    runs without the GIL) otherwise waits up to 5 ms for a busy Python thread, a delay no model predicts."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def tune_allocator() -> bool:
    """Keep buffers up to 256 MiB on the heap (glibc only); True if applied."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    ok_mmap = mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES)
    ok_trim = mallopt(M_TRIM_THRESHOLD, 2 * LARGE_BUFFER_BYTES)
    return bool(ok_mmap and ok_trim)
