"""Prometheus metrics, readiness and liveness of a node (Kubernetes probes and scrapes).

- ``/readyz``: 200 while the process serves (readiness: a Service may route to it).
- ``/healthz``: liveness -- 200 while the node's main loop makes progress, 503 once it has made none for
  ``stale_after_s``. Progress is what the roles already record on their ``Node`` -- a round begun, a span
  recorded, a security event counted -- or a ``heartbeat()`` call. The limit defaults to the longest wait a
  healthy node has between two of those (its peers' connect timeout + a round timeout + a minute), so only a
  hung node is declared dead; ``$PQTWIN_STALE_AFTER_S`` overrides it. A role that records nothing (the
  device emulator) counts as live while it serves, until it calls ``heartbeat()`` once.
- ``/metrics``: ``pqtwin_up``, ``pqtwin_round``, ``pqtwin_spans_recorded``, ``pqtwin_security_events_total``,
  ``pqtwin_seconds_since_progress``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hw.node.common import Node

STALE_ENV = "PQTWIN_STALE_AFTER_S"
GRACE_S = 60.0
RECORDING_ROLES = ("aggregator", "client", "worker")  # roles whose progress shows on their Node by itself

log = logging.getLogger("pqtwin.node")


class _Heart:
    """The process's last ``heartbeat()`` (one node program per process)."""

    last: float | None = None


_HEART = _Heart()


def heartbeat() -> None:
    """Tell the liveness probe the main loop is alive (for loops that record no spans while they work)."""
    _HEART.last = time.monotonic()


def default_stale_after_s(node: Node) -> float:
    """The longest quiet spell of a healthy node, plus a minute: waiting for peers to connect, then a round."""
    cfg = node.cfg
    return cfg.connect_timeout_s + cfg.fl.round_timeout_s + GRACE_S


def stale_after_s_from_env(node: Node) -> float:
    """``$PQTWIN_STALE_AFTER_S`` if set to a positive number, else ``default_stale_after_s``."""
    text = os.environ.get(STALE_ENV, "")
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = 0.0
        log.warning("%s: ignoring %s=%r (not a number of seconds)", node.name, STALE_ENV, text)
    return value if value > 0 else default_stale_after_s(node)


class Liveness:
    """Whether a node's main loop still makes progress (module docstring). Progress is noticed when checked,
    so its resolution is the probe period."""

    def __init__(self, node: Node, role: str, stale_after_s: float, clock: Callable[[], float] = time.monotonic):
        self.node, self.stale_after_s, self.clock = node, stale_after_s, clock
        self.watching = role in RECORDING_ROLES
        self.since = clock()
        self._seen = self._progress()
        self._lock = threading.Lock()  # probes and scrapes may arrive together

    def _progress(self) -> tuple[int, int, int]:
        n = self.node
        return n.round, len(n.rows), sum(dict(n.counters).values())

    def idle_s(self) -> float:
        """Seconds since the last progress seen (or since start)."""
        with self._lock:
            now, seen = self.clock(), self._progress()
            if seen != self._seen:
                self._seen, self.since = seen, now
            beat = _HEART.last
            if beat is not None and beat >= self.since:  # only beats after this node started count
                self.since, self.watching = beat, True
            return max(0.0, now - self.since)

    def check(self) -> tuple[bool, float]:
        """(live, idle seconds)."""
        idle = self.idle_s()
        return (not self.watching or idle <= self.stale_after_s), idle


def metrics_text(node: Node, role: str, liveness: Liveness | None = None) -> str:
    labels = f'pod="{node.name}",role="{role}"'
    lines = [
        "# HELP pqtwin_up 1 while the node program runs.",
        "# TYPE pqtwin_up gauge",
        f"pqtwin_up{{{labels}}} 1",
        "# HELP pqtwin_round The FL round this node is in (0: session set-up).",
        "# TYPE pqtwin_round gauge",
        f"pqtwin_round{{{labels}}} {node.round}",
        "# HELP pqtwin_spans_recorded Spans recorded so far.",
        "# TYPE pqtwin_spans_recorded gauge",
        f"pqtwin_spans_recorded{{{labels}}} {len(node.rows)}",
        "# HELP pqtwin_security_events_total Rejected records and handshakes, by kind.",
        "# TYPE pqtwin_security_events_total counter",
    ]
    lines += [
        f'pqtwin_security_events_total{{{labels},kind="{k}"}} {v}' for k, v in sorted(dict(node.counters).items())
    ]
    if liveness is not None:
        lines += [
            "# HELP pqtwin_seconds_since_progress Seconds since the node last made progress (liveness).",
            "# TYPE pqtwin_seconds_since_progress gauge",
            f"pqtwin_seconds_since_progress{{{labels}}} {liveness.idle_s():.3f}",
        ]
    return "\n".join(lines) + "\n"


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    liveness: Liveness


def serve_metrics(node: Node, role: str, port: int, host: str, *, stale_after_s: float | None = None) -> MetricsServer:
    """Serve ``/metrics``, ``/readyz`` and ``/healthz`` on a daemon thread for as long as the process lives (in a
    pod, the cluster network reaches it through the pod's IP only). ``stale_after_s``: the liveness limit
    (default: ``$PQTWIN_STALE_AFTER_S``, else ``default_stale_after_s``)."""
    liveness = Liveness(node, role, stale_after_s if stale_after_s is not None else stale_after_s_from_env(node))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200
            if self.path.startswith("/metrics"):
                body, ctype = metrics_text(node, role, liveness).encode(), "text/plain; version=0.0.4"
            elif self.path.startswith("/readyz"):
                body, ctype = b"ok\n", "text/plain"
            elif self.path.startswith("/healthz"):
                live, idle = liveness.check()
                code = 200 if live else 503
                text = "ok" if live else f"stale: no progress for {idle:.1f} s (limit {liveness.stale_after_s:g} s)"
                body, ctype = f"{text}\n".encode(), "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # probes every few seconds: keep the log for results
            return

    server = MetricsServer((host, port), Handler)
    server.liveness = liveness
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
