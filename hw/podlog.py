"""Reports through a process's log: how a Kubernetes pod's results reach the backend.

With a read-only root filesystem and no shared volume, a pod's result and spans leave it through its
log. A node prints progress lines (``pqtwin-progress {"round": R, "accuracy": A}``) and, at exit, one
block::

    ----- BEGIN PQTWIN RESULT <name> -----
    <base64 of JSON {"result": {...}, "spans": <base64 of the spans parquet>}, 76 characters a line>
    ----- END PQTWIN RESULT <name> -----

Calibration Jobs print their profile YAML the same way (kind ``PROFILE``). The writing side (``emit``,
``emit_result``, ``progress_line``) runs in the pods; the reading side (``extract``, ``results``,
``progress_lines``) in the backend.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from typing import Any, TextIO

PROGRESS = "pqtwin-progress "
_BEGIN = "----- BEGIN PQTWIN {kind} {name} -----"
_END = "----- END PQTWIN {kind} {name} -----"
_BLOCK = re.compile(r"^----- BEGIN PQTWIN (?P<kind>[A-Z]+) (?P<name>\S+) -----\s*$(?P<body>.*?)"
                    r"^----- END PQTWIN (?P=kind) (?P=name) -----\s*$", re.M | re.S)  # fmt: skip


def emit(kind: str, name: str, payload: bytes, out: TextIO | None = None) -> None:
    """Print ``payload`` as one base64 block between markers."""
    out = out or sys.stdout
    text = base64.b64encode(payload).decode()
    lines = [_BEGIN.format(kind=kind, name=name)]
    lines += [text[i : i + 76] for i in range(0, len(text), 76)]
    lines.append(_END.format(kind=kind, name=name))
    out.write("\n".join(lines) + "\n")
    out.flush()


def emit_result(name: str, result: dict[str, Any], spans_parquet: bytes) -> None:
    payload = {"result": result, "spans": base64.b64encode(spans_parquet).decode()}
    emit("RESULT", name, json.dumps(payload).encode())


def emit_progress(round_: int, accuracy: float, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(PROGRESS + json.dumps({"round": round_, "accuracy": accuracy}) + "\n")
    out.flush()


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
