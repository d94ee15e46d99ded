"""The TCP options of the twin's connections: its nodes', its devices' and its shaping proxy's (hw/proxy.py).

Every connection goes without Nagle's delay (``TCP_NODELAY``): a record is written whole, and its last segment must
not wait for the previous one's acknowledgement. A loopback connection also names its congestion control,
``LOOPBACK_CONGESTION`` (the kernel's long-standing default), instead of taking the host's: this machine's default
is BBR, which paces what it sends by its model of the path's bandwidth, and on loopback's microsecond round trips
that model now and then collapses: 12 of 16,716 transfers of seven concurrent classical 50 k runs took 8-34 ms (the
median 0.27 ms) with both cores idle and the receiving thread asleep, and none of 16,716 under cubic (max 7.6 ms),
alternated run by run on 2026-12-06 (docs/twin-validation.md, stop 75). The simulator prices a transfer between pods
of one host as a copy (sim/profile.py ``loopback``); a host's congestion control is not part of the deployment a
scenario describes. The netns backend's links are real veths, whose TCP is what issue 18 measures: they keep the
host's."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

LOOPBACK_CONGESTION = "cubic"
AVAILABLE = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")


def loopback_congestion() -> str | None:
    """``LOOPBACK_CONGESTION`` where this kernel has it, else None (the host's default)."""
    try:
        return LOOPBACK_CONGESTION if LOOPBACK_CONGESTION in AVAILABLE.read_text().split() else None
    except OSError:
        return None


def tune(sock: socket.socket, congestion: str | None) -> None:
    """No Nagle delay; ``congestion`` as the connection's congestion control where given and allowed (a kernel that
    refuses it keeps its default: the run goes on, as on a host without it)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if congestion is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
