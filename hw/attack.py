"""An on-path attacker for demonstrations and tests: a TCP relay that alters one client's records.

It sits between a client and the aggregator, parses the channel's record framing (hw/channel.py) and
applies one attack to the first data record the client sends (its first model update):

- ``tamper``: flip one ciphertext byte;   - ``replay``: deliver the record twice;
- ``truncate``: deliver half the record, then close;   - ``downgrade``: rewrite the suite the client
  offers in its HELLO to a classical one.
The channel must reject each (and the aggregator report it); nothing here is trusted by the nodes.

Two more kinds are no relay but a compromised client (``INSIDERS``: it authenticates and signs as usual, so
the channel cannot tell): its first update is ``poison`` (one parameter NaN) or ``malform`` (one parameter
short: hw/node/client.py ``compromised``). The aggregator must refuse it as ``malformed`` and go on without the
client (hw/node/common.py ``model_of``), rather than end FedAvg or average the NaN into everyone's model.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import struct
import threading
import time

from hw import tcp
from hw.channel import DATA, HEADER, HELLO, KEM
from hw.proxy import PAIR_TIMEOUT_S

RELAYED = ("tamper", "replay", "truncate", "downgrade")
INSIDERS = ("poison", "malform")
ATTACKS = RELAYED + INSIDERS
CLASSICAL_SUITE = b"X25519/Ed25519/AES-128-GCM"


class AttackRelay:
    """Listens on 127.0.0.1; each connection is relayed to ``target`` with ``attack`` applied upstream. It takes the
    place of a link of the run (hw/proxy.py): a connection must open with ``key``, and the relay opens its own to
    the target with ``present`` (the link's key). Both its sides run ``congestion_control`` from their handshake on
    (``hw.tcp.dial``), as the link it takes the place of does."""

    def __init__(self, target: tuple[str, int], attack: str, key: bytes = b"", present: bytes = b"",
                 congestion_control: str = ""):  # fmt: skip
        if attack not in RELAYED:
            raise ValueError(f"attack must be one of {', '.join(RELAYED)} (got {attack!r})")
        self.target, self.attack, self.key, self.present = target, attack, key, present
        self.congestion_control = congestion_control
        self.srv = tcp.listener(("127.0.0.1", 0), congestion_control)
        self.port = self.srv.getsockname()[1]
        self.applied = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            client.settimeout(PAIR_TIMEOUT_S)
            paired = hmac.compare_digest(_read(client, len(self.key)), self.key)
            client.settimeout(None)
        except (OSError, EOFError):
            paired = False
        server = _connect(self.target, self.congestion_control) if paired else None
        if server is None:
            _close(client)
            return
        try:
            server.sendall(self.present)
        except OSError:
            _close(server)
            _close(client)
            return
        threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
        self._upstream(client, server)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(dst)

    def _upstream(self, src: socket.socket, dst: socket.socket) -> None:
        """Relay record by record, attacking the first data record (or the HELLO for a downgrade)."""
        done = False
        try:
            while True:
                header = _read(src, HEADER.size)
                rtype, _seq, _t, length = HEADER.unpack(header)
                body = _read(src, length)
                if not done and self.attack == "downgrade" and rtype == HELLO:
                    body = _replace_first_field(body, CLASSICAL_SUITE)
                    header = HEADER.pack(rtype, _seq, _t, len(body))
                    done = True
                    self.applied += 1
                elif not done and rtype in (DATA, KEM) and self.attack != "downgrade":
                    done = True
                    self.applied += 1
                    if self.attack == "tamper":
                        body = body[:-20] + bytes([body[-20] ^ 0x01]) + body[-19:]
                    elif self.attack == "replay":
                        dst.sendall(header + body)
                    elif self.attack == "truncate":
                        dst.sendall(header + body[: length // 2])
                        return
                dst.sendall(header + body)
        except (OSError, EOFError):
            pass
        finally:  # half-close: what was sent still arrives (a full close could reset it away)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        _close(self.srv)


def _connect(target: tuple[str, int], congestion_control: str, timeout_s: float = 30.0) -> socket.socket | None:
    """Connect to the target, waiting for it to listen (the relay may be up before the aggregator)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return tcp.dial(target, congestion_control)
        except OSError:
            time.sleep(0.05)
    return None


def _replace_first_field(body: bytes, value: bytes) -> bytes:
    (size,) = struct.unpack_from("!I", body)
    return struct.pack("!I", len(value)) + value + body[4 + size :]


def _read(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
