"""The lock file of an output directory, for the commands that write into one (hw/rundir.py: a run's; sim/sweep/
store.py: a sweep's): opened without following a link, and the process that holds it, for the line a second
command prints. Each caller takes and releases its lock as its directory needs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

from sim.errors import UserError

NOT_A_LOCK = "remove it, or choose another --out"


def open_lock(path: Path, owner: str) -> int:
    """A descriptor of ``path``, a regular file of one name (created if missing), never opened through a link
    (``O_NOFOLLOW``; ``O_NONBLOCK``: a FIFO there does not hang the open). Anything else there is a UserError
    naming it (a planted link's target would have been overwritten with our pid); ``owner`` ("run", "sweep")
    says whose lock file it is not."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise UserError(f"--out: {path} is a symbolic link, not a {owner}'s lock file; {NOT_A_LOCK}") from None
        if exc.errno == errno.EISDIR or os.path.isdir(path):
            raise UserError(f"--out: {path} is a directory, not a {owner}'s lock file; {NOT_A_LOCK}") from None
        raise UserError(f"--out: cannot write to {path.parent}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise UserError(f"--out: cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        what = "a file with other names (a hard link)" if stat.S_ISREG(st.st_mode) else "not a regular file"
        raise UserError(f"--out: {path} is {what}, not a {owner}'s lock file; {NOT_A_LOCK}")
    os.set_blocking(fd, True)
    return fd


def take(fd: int, path: Path, busy: Callable[[str], str]) -> None:
    """flock the lock file open as ``fd`` without waiting; where it cannot be, ``fd`` is closed and a UserError
    raised: ``busy(holder)`` where another process holds it (``holder``: its pid, or "" if it wrote none), else
    the OS's reason."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = holder_pid(fd) or ""
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise UserError(f"--out: cannot lock {path}: {exc.strerror}") from None
        raise UserError(busy(holder)) from None


def write_pid(fd: int) -> None:
    """Say in the lock file open as ``fd`` which process holds it."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())


def holder_pid(fd: int) -> str | None:
    """The pid the holder of the lock file open as ``fd`` wrote in it, or None."""
    try:
        pid = os.pread(fd, 20, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return pid if pid.isdigit() else None
