"""The twin's front door under fire: strangers and garbage aimed at a live run's listening ports.

``Barrage(ports, seed).run(frames, strays)`` opens connections to the given (loopback) ports from several
threads and, per connection, does one of:

- ``silent``: connect and say nothing (until the node's handshake deadline closes it, or ours);
- ``garbage``: random bytes;
- ``frames``: well-framed records (the channel's 21-byte header) of random type, sequence and length —
  lengths up to 64 MiB announced, never sent —, bodies of random bytes;
- ``hello``: a HELLO for the run's suite from a name that is not in the trust store, or from a pod's name
  with a garbage FINISH after the SERVER reply;
- ``alert``: an ALERT record, then close.

It counts what it sent. The node must reject all of it, count it by kind (``summary.json`` ``security``),
and finish its run with the accuracy of an undisturbed one. Used by ``tests/test_front_door.py`` (CI size)
and ``bench/fuzz_twin.py`` (full size).

``siege(port, n, seconds)`` holds ``n`` connections to one port for a while, each trickling a HELLO's header a
byte a second, and connects again at once whenever the node closes one (the slow-loris that held every pending
slot of a node); ``hello_spam(port, name, seconds)`` sends HELLOs under a peer's public name and hangs up after the
SERVER reply (a stranger making the node sign for it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.channel import ALERT, FINISH, HEADER, HELLO, Suite, suite_from
from hw.runconfig import RunConfig
from sim.contract import RunLayout

KINDS = ("silent", "garbage", "frames", "hello", "alert")


def _field(b: bytes) -> bytes:
    return struct.pack("!I", len(b)) + b


@dataclass
class Barrage:
    ports: list[int]
    suite: Suite
    pods: list[str]
    seed: int = 0
    host: str = "127.0.0.1"
    hold: int = 4  # silent connections each thread keeps open at once
    stop: threading.Event = field(default_factory=threading.Event)  # set: stop firing (the run ended)
    patience_s: float = 60.0  # how long to keep trying a port that refuses connections
    sent: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def at_run(cls, run_dir: Path, seed: int, stop: threading.Event | None = None) -> Barrage:
        """A barrage at the aggregator of the twin run in ``run_dir``, once its run.json exists (from then on:
        before, while and after the pods connect)."""
        while not RunLayout(run_dir).run_config.exists():
            time.sleep(0.02)
        cfg = RunConfig.read(run_dir)
        port = cfg.pods[cfg.aggregator].port
        assert port is not None, "RunConfig gives the aggregator a port"
        return cls([port], suite_from(cfg.suite), list(cfg.pods), seed=seed, stop=stop or threading.Event())

    def run(self, frames: int, strays: int, threads: int = 8) -> Counter[str]:
        """At least ``frames`` fuzzed frames and ``strays`` stray (silent or garbage) connections."""
        seeds = np.random.SeedSequence(self.seed).spawn(threads)
        per_frames, per_strays = -(-frames // threads), -(-strays // threads)
        workers = [threading.Thread(target=self._worker, args=(s, per_frames, per_strays)) for s in seeds]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        return self.sent

    def _count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.sent[kind] += n

    def _worker(self, ss: np.random.SeedSequence, frames: int, strays: int) -> None:
        rng = np.random.default_rng(ss)
        held: list[socket.socket] = []
        deadline = time.monotonic() + self.patience_s
        while (frames > 0 or strays > 0) and not self.stop.is_set():
            port = int(rng.choice(self.ports))
            kind = str(rng.choice(KINDS)) if frames > 0 and strays > 0 else ("frames" if frames > 0 else "silent")
            sock = self._connect(port)
            if sock is None:  # not listening yet (or any more): try again a little later, until the deadline
                self._count("refused")
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
                continue
            if kind == "silent":
                held.append(sock)  # held open a while: they occupy the node's pending-handshake slots
                if len(held) > self.hold:
                    held.pop(0).close()
                strays -= 1
                self._count("silent")
                continue
            with contextlib.suppress(OSError):
                if kind == "garbage":
                    sock.sendall(rng.bytes(int(rng.integers(1, 4096))))
                    strays -= 1
                elif kind == "frames":
                    frames -= self._frames(sock, rng, min(frames, 50))
                elif kind == "hello":
                    self._hello(sock, rng)
                    frames -= 2
                    self._count("frames_sent", 2)
                else:
                    sock.sendall(HEADER.pack(ALERT, 0, 0.0, 5) + b"fuzz!")
                    frames -= 1
                    self._count("frames_sent")
            self._count(kind)
            sock.close()
        for s in held:
            s.close()

    def _connect(self, port: int) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, port), timeout=2)
        except OSError:
            return None
        sock.settimeout(2)
        return sock

    def _frames(self, sock: socket.socket, rng: np.random.Generator, n: int) -> int:
        sent = 0
        for _ in range(n):
            rtype, seq = int(rng.integers(0, 9)), int(rng.integers(0, 2**63))
            length = int(rng.integers(0, 4096)) if rng.random() < 0.8 else int(rng.integers(0, 64 << 20))
            body = rng.bytes(min(length, 4096))
            try:
                sock.sendall(HEADER.pack(rtype, seq, float(rng.normal()), length) + body)
            except OSError:
                break  # the node closed it: the rest of this connection's frames are moot
            sent += 1
        self._count("frames_sent", max(sent, 1))
        return max(sent, 1)

    def _hello(self, sock: socket.socket, rng: np.random.Generator) -> None:
        name = str(rng.choice(self.pods)) if rng.random() < 0.5 else f"mallory-{int(rng.integers(1000))}"
        hello = _field(self.suite.id) + _field(name.encode()) + _field(os.urandom(32))
        sock.sendall(HEADER.pack(HELLO, 0, 0.0, len(hello)) + hello)
        with contextlib.suppress(OSError):
            sock.recv(1 << 16)  # the SERVER reply (or an alert)
            finish = _field(rng.bytes(64)) + _field(rng.bytes(64)) + _field(rng.bytes(64))
            sock.sendall(HEADER.pack(FINISH, 0, 0.0, len(finish)) + finish)

    def siege(self, port: int, n: int, seconds: float, every_s: float = 1.0) -> None:
        """``n`` connections held to ``port`` for ``seconds``, each sending one more byte of a HELLO header every
        ``every_s``; one the node closes is opened again at once (counted as ``siege_reconnects``)."""
        end = time.monotonic() + seconds
        header = HEADER.pack(HELLO, 0, 0.0, 64)
        held: list[tuple[socket.socket, int]] = []
        while time.monotonic() < end and not self.stop.is_set():
            tick = time.monotonic() + every_s
            while len(held) < n and time.monotonic() < tick:  # not listening yet: try again at once, till the tick
                sock = self._connect(port)
                if sock is None:
                    self.stop.wait(0.01)
                    continue
                held.append((sock, 0))
                self._count("siege_reconnects")
            alive = []
            for sock, sent in held:
                try:
                    sock.sendall(header[sent : sent + 1])
                    alive.append((sock, sent + 1))
                except OSError:
                    sock.close()
            held = alive
            self.stop.wait(max(0.0, tick - time.monotonic()))
        for sock, _ in held:
            sock.close()

    def hello_spam(self, port: int, name: str, seconds: float) -> None:
        """HELLOs naming ``name`` to ``port`` for ``seconds``, each connection closed once the SERVER reply (or an
        alert) has come: counted as ``spam_hellos``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop.is_set():
            sock = self._connect(port)
            if sock is None:
                self.stop.wait(0.05)
                continue
            hello = _field(self.suite.id) + _field(name.encode()) + _field(os.urandom(32))
            with contextlib.suppress(OSError):
                sock.sendall(HEADER.pack(HELLO, 0, 0.0, len(hello)) + hello)
                sock.recv(HEADER.size)
            self._count("spam_hellos")
            sock.close()
