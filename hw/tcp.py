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

import asyncio
import socket
from pathlib import Path

SYSCTL = Path("/proc/sys/net/ipv4")
NAME_BYTES = 16  # TCP_CA_NAME_MAX


# a calibration's loopback connections' (hw/calibrate.py ``Loopback``, hw/hopcal.py): the scenarios' default
# (``sim.scenario.Transport.congestion_control``), so a profile prices the copies a run's connections make; they
# took the machine's default before, bbr here, whose pacing holds part of a large message back
CALIBRATED = "cubic"


class Refused(OSError):
    """The kernel refused a congestion control (``problem`` says why)."""


def dial(address: tuple[str, int], name: str, timeout_s: float | None = None) -> socket.socket:
    """A TCP connection to ``address`` (a name is resolved, each of its addresses tried in turn, as
    ``socket.create_connection`` does) that runs congestion control ``name`` from its handshake on: ``use`` before
    ``connect``. Given after the handshake it is too late: the machine's default has been initialised on the
    connection by then and leaves its mark. BBR's (the default on ours) asks the kernel to pace the connection
    (``sk_pacing_status``), which no later choice undoes: such a "cubic" connection was paced at 1.2-2 x its window
    per smoothed round trip, so on the local twin a worker's 200 KB answer left in 64 KB bursts up to 1 ms apart
    (``tcp_pace_kick`` in a kernel trace) where cubic, as a Raspberry Pi runs it, sends it at once; and CUBIC's
    HyStart takes a paced connection's ACK trains for twice as long as an unpaced one's. ``Refused`` where the
    kernel refuses ``name``; OSError where no address takes the connection within ``timeout_s``."""
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = _given(socket.socket(family, kind, proto), name)
        try:
            sock.settimeout(timeout_s)
            sock.connect(sockaddr)
            sock.settimeout(None)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"{host}: no address to connect to")


async def dial_async(address: tuple[str, int], name: str) -> socket.socket:
    """``dial`` on the running event loop: a connected non-blocking socket, for ``loop.create_connection(sock=)``."""
    loop = asyncio.get_running_loop()
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = _given(socket.socket(family, kind, proto), name)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"{host}: no address to connect to")


def listener(address: tuple[str, int], name: str, backlog: int = 256) -> socket.socket:
    """A socket listening on ``address`` whose connections run congestion control ``name`` from their handshake on
    (an accepted connection takes its listener's: ``dial`` says why it must be set before). ``Refused`` where the
    kernel refuses ``name``."""
    host, port = address
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    sock = _given(socket.socket(family, kind, proto), name)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _given(sock: socket.socket, name: str) -> socket.socket:
    """``sock`` with congestion control ``name``; closed, and ``Refused``, where the kernel refuses it."""
    try:
        use(sock, name)
    except OSError as exc:
        sock.close()
        raise Refused(exc.errno, exc.strerror) from None
    return sock


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
