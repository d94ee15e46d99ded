"""What runs inside the Kubernetes pods besides the node program: key loading, log reports, metrics.

Nothing here imports the Kubernetes client; ``hw/node.py`` imports this module only in Kubernetes mode.

- **Provisioned keys** (`load_identity`): the backend generates every identity and mounts each pod's own
  private keys as a Secret (``identity.json``: ``{name: {"sig": base64, "kem": base64}}``, the providers'
  ``export_private`` encodings; a device emulator pod holds one entry per device it runs).
- **Reports on stdout** (`emit_result`, `extract`): with a read-only root filesystem and no shared volume,
  a pod's result and spans leave it through its log. At exit the node prints one block::

      ----- BEGIN PQTWIN RESULT <name> -----
      <base64 of JSON {"result": {...}, "spans": <base64 of the spans parquet>}, 76 characters a line>
      ----- END PQTWIN RESULT <name> -----

  and calibration Jobs print their profile YAML the same way (kind ``PROFILE``). `extract` reads blocks
  back from a log (the backend's side).
- **Metrics** (`serve_metrics`): Prometheus text on ``/metrics`` (``pqtwin_up``, ``pqtwin_round``,
  ``pqtwin_spans_recorded``, ``pqtwin_security_events_total``) and ``/healthz`` for the probes.
- **Calibration** (``python -m hw.k8s.pod calibrate --name NODE [--quick] ...``): what a calibration Job
  runs: ``hw.calibrate.calibrate`` and the profile on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hw.channel import Identity, Suite
from hw.crypto import find

PROGRESS = "pqtwin-progress "
_BEGIN = "----- BEGIN PQTWIN {kind} {name} -----"
_END = "----- END PQTWIN {kind} {name} -----"
_BLOCK = re.compile(r"^----- BEGIN PQTWIN (?P<kind>[A-Z]+) (?P<name>\S+) -----\s*$(?P<body>.*?)"
                    r"^----- END PQTWIN (?P=kind) (?P=name) -----\s*$", re.M | re.S)  # fmt: skip


# --- keys --------------------------------------------------------------------------------------------


def export_identity(ident: Identity) -> dict[str, str]:
    """One identity's private keys as the Secret holds them."""
    sig = find(ident.sig.algorithm, "signature").export_private(ident.sig)
    kem = find(ident.kem.algorithm, "kem").export_private(ident.kem)
    return {"sig": base64.b64encode(sig).decode(), "kem": base64.b64encode(kem).decode()}


_loaded: dict[Path, dict[str, Any]] = {}


def load_identity(path: Path, name: str, suite: Suite) -> Identity:
    """``name``'s identity from a mounted ``identity.json``; ValueError (or OSError) saying what is wrong."""
    if path not in _loaded:
        _loaded[path] = json.loads(path.read_text())
    entry = _loaded[path].get(name)
    if entry is None:
        raise ValueError(f"no provisioned private keys for {name} in {path}")
    signer, kem = find(suite.signature, "signature"), find(suite.kem, "kem")
    return Identity(
        name,
        signer.import_private(base64.b64decode(entry["sig"])),
        kem.import_private(base64.b64decode(entry["kem"])),
    )


# --- reports on stdout -------------------------------------------------------------------------------


def emit(kind: str, name: str, payload: bytes, out: Any = None) -> None:
    """Print ``payload`` as one base64 block between markers (see the module docstring)."""
    out = out or sys.stdout
    text = base64.b64encode(payload).decode()
    lines = [_BEGIN.format(kind=kind, name=name)]
    lines += [text[i : i + 76] for i in range(0, len(text), 76)]
    lines.append(_END.format(kind=kind, name=name))
    out.write("\n".join(lines) + "\n")
    out.flush()


def emit_result(name: str, result: dict[str, Any], spans: Path) -> None:
    payload = {"result": result, "spans": base64.b64encode(spans.read_bytes()).decode()}
    emit("RESULT", name, json.dumps(payload).encode())


def extract(log: str, kind: str) -> dict[str, bytes]:
    """Every complete ``kind`` block in a log, by name (the last one wins); damaged blocks are skipped."""
    found = {}
    for m in _BLOCK.finditer(log):
        if m["kind"] == kind:
            try:
                found[m["name"]] = base64.b64decode("".join(m["body"].split()), validate=True)
            except ValueError:
                continue
    return found


def results(log: str) -> dict[str, tuple[dict[str, Any], bytes]]:
    """``{node name: (result, spans parquet bytes)}`` from a pod's log."""
    out = {}
    for name, payload in extract(log, "RESULT").items():
        data = json.loads(payload)
        out[name] = (data["result"], base64.b64decode(data["spans"]))
    return out


def progress_lines(log: str) -> list[dict[str, Any]]:
    out = []
    for line in log.splitlines():
        if line.startswith(PROGRESS):
            try:
                out.append(json.loads(line[len(PROGRESS) :]))
            except ValueError:
                continue
    return out


# --- metrics and health ------------------------------------------------------------------------------


def metrics_text(node: Any, role: str) -> str:
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


def serve_metrics(node: Any, role: str, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` on a daemon thread for as long as the process lives."""

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


# --- calibration Job ---------------------------------------------------------------------------------


def calibrate_main(argv: list[str]) -> int:
    import yaml

    from hw.calibrate import calibrate
    from sim.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m hw.k8s.pod calibrate")
    ap.add_argument("--name", required=True, help="profile name (the node's name)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--provider")
    ap.add_argument("--algorithms", help="comma-separated")
    args = ap.parse_args(argv)
    names = [a for a in (args.algorithms or "").split(",") if a] or None
    try:
        data = calibrate(names, args.provider, args.quick)
    except UserError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return 2
    data["profile"] = args.name
    data["description"] = f"Measured by a pqtwin calibration Job on Kubernetes node {args.name}. " + data["description"]
    emit("PROFILE", args.name, yaml.safe_dump(data, sort_keys=False, width=120).encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:
        return calibrate_main(argv[1:])
    print("usage: python -m hw.k8s.pod calibrate --name NODE [--quick] [--provider P] [--algorithms A,B]",
          file=sys.stderr)  # fmt: skip
    return 2


if __name__ == "__main__":
    sys.exit(main())
