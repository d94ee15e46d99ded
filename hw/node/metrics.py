"""Prometheus metrics and the health endpoint of a node (Kubernetes probes and scrapes)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hw.node.common import Node


def metrics_text(node: Node, role: str) -> str:
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
    lines += [f'pqtwin_security_events_total{{{labels},kind="{k}"}} {v}' for k, v in sorted(node.counters.items())]
    return "\n".join(lines) + "\n"


def serve_metrics(node: Node, role: str, port: int, host: str) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` on a daemon thread for as long as the process lives (in a pod,
    the cluster network reaches it through the pod's IP only)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype = metrics_text(node, role).encode(), "text/plain; version=0.0.4"
            elif self.path.startswith("/healthz"):
                body, ctype = b"ok\n", "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # probes every few seconds: keep the log for results
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
