"""The TCP congestion control of the twin's connections: the scenario's (``Transport.congestion_control``).

A machine's default congestion control is its own choice (bbr on ours, cubic on a stock Linux or a Raspberry Pi),
and it decides how a message's window grows, how concurrent flows share a link and whether an idle connection
restarts its window (docs/network-validation.md). So the twin does not take the default: every connection its nodes,
its shaping proxies and its fabric probes open is given the scenario's (``TCP_CONGESTION``; an accepted connection
takes its listener's). A congestion control not in the machine's kernel, or one its default policy keeps from this
user (``net.ipv4.tcp_allowed_congestion_control``; root may set any the kernel has), is refused before a run starts
(``problem``), in one line.
"""

from __future__ import annotations

import socket
from pathlib import Path

SYSCTL = Path("/proc/sys/net/ipv4")
NAME_BYTES = 16  # TCP_CA_NAME_MAX


def use(sock: socket.socket, name: str) -> None:
    """Give ``sock`` (TCP, connected or not) the congestion control ``name`` ("": leave the machine's default);
    OSError where the kernel refuses it."""
    if name:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())


def of(sock: socket.socket) -> str:
    """The congestion control ``sock`` runs."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, NAME_BYTES)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def problem(name: str) -> str | None:
    """Why this process cannot give its connections ``name`` (tried on a socket); None where it can."""
    if not name:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            use(s, name)
    except OSError as exc:
        available = _listed("tcp_available_congestion_control")
        if available and name not in available:
            return f"{name!r} is not in this machine's kernel (available: {', '.join(available)})"
        allowed = _listed("tcp_allowed_congestion_control")
        return (f"{name!r} cannot be set by this user here ({exc.strerror or exc}; allowed without CAP_NET_ADMIN: "
                f"{', '.join(allowed) or 'none'}): run as root, or choose one of those")  # fmt: skip
    return None


def _listed(sysctl: str) -> list[str]:
    try:
        return (SYSCTL / sysctl).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return []
