"""Process set-up shared by the twin's node processes and ``pqtwin calibrate``.

Model messages are ~1 MB buffers. glibc serves such sizes with mmap/munmap by default, so every message
costs page faults on allocation and a TLB shoot-down on release (~0.3 ms per MB here), and the first
buffers after a free are served differently from later ones. Raising the mmap and trim thresholds keeps
large buffers on the heap, and one arena for all threads (``M_ARENA_MAX``) keeps one heap: a node's job and
reader threads reuse the pages its warm-up faulted in (``prefault_heap``) instead of growing arenas of their
own. Both the calibration and the twin run with the same, steadier allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
LARGE_BUFFER_BYTES = 256 << 20


SWITCH_INTERVAL_S = 0.0005
# the environment every node process starts with (each backend sets it): glibc takes M_ARENA_MAX from its start, before
# any thread exists. Set by ``tune_allocator`` once the node runs, it came after threads of the node's start-up had
# made arenas of their own (3 in an aggregator), and glibc then handed the job threads of the first concurrent round
# those arenas in turn, not the heap ``prefault_heap`` had faulted in: 9,000-11,000 pages faulted in that round
# against ~500 later, and on our VM's lazily backed memory the round took +100-140 ms at 1 M parameters
# (2026-12-05: 253-325 ms against ~160; with this, 160-162 ms and as many faults as later rounds)
NODE_ENV = {"MALLOC_ARENA_MAX": "1"}
# "port=fd,...": listening sockets a node inherits from the orchestrator, bound before the node started so no other
# process can take their ports meanwhile (hw/local.py ``listening_socket``; hw/node/common.py ``listen``)
LISTEN_FDS_ENV = "PQTWIN_LISTEN_FDS"
# the run's link key, hex: a connection to one of the run's shaping proxies opens with it (hw/proxy.py), so that only
# the run's own processes put bytes on its links. In the environment, not in run.json (which any local user may read)
LINK_KEY_ENV = "PQTWIN_LINK_KEY"
LINK_KEY_BYTES = 16


def new_link_key() -> bytes:
    return secrets.token_bytes(LINK_KEY_BYTES)


def link_key() -> bytes:
    """This process's run key (``LINK_KEY_ENV``); empty where none was given (a Kubernetes pod: no proxies) or it is
    not one (a hand-edited environment: its connections are then refused by the links, and the node says so)."""
    try:
        key = bytes.fromhex(os.environ.get(LINK_KEY_ENV, ""))
    except ValueError:
        return b""
    return key if len(key) == LINK_KEY_BYTES else b""


def tune_threads() -> None:
    """Hand the GIL over sooner than CPython's 5 ms default: a thread that finished a crypto call (which
    runs without the GIL) otherwise waits up to 5 ms for a busy Python thread, a delay no model predicts."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def tune_allocator() -> bool:
    """Keep buffers up to 256 MiB on the heap, one heap for all threads (glibc only); True if applied."""
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
    ok_arena = mallopt(M_ARENA_MAX, 1)
    return bool(ok_mmap and ok_trim and ok_arena)


PREFAULT_MESSAGES = 16  # model-sized buffers alive at once in a node at its busiest (a concurrent aggregator's)


def prefault_heap(message_bytes: int) -> None:
    """Touch the heap a node's busiest round needs, once, before the run's clock matters, and free it: the
    heap keeps it (``tune_allocator``'s trim threshold and single arena), so rounds reuse pages already faulted
    in. Without it the first rounds pay for the pages their new buffers touch the first time: on our VMs the
    first concurrent 1 M-parameter round took 150-230 ms against ~105 ms later (its AEAD calls 17 ms instead of
    0.5); with it and one arena, 138-155 ms. At most ``LARGE_BUFFER_BYTES``."""
    bytearray(min(PREFAULT_MESSAGES * message_bytes, LARGE_BUFFER_BYTES))  # zero-filled: every page touched
