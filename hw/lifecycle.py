"""A node process's ties to the process that started it: it must not outlive it.

The local backend passes its pid in ``PQTWIN_PARENT_PID``; a node asks the kernel for SIGTERM when its parent
dies (Linux ``prctl(PR_SET_PDEATHSIG)``), and where that is unavailable (or the parent already died before
the request) a watcher thread polls the parent's pid. Kubernetes pods have no such parent: the variable is
unset there and nothing happens.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

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
