"""Reports through a process's log: how a Kubernetes pod's results reach the backend.

With a read-only root filesystem and no shared volume, a pod's result and spans leave it through its
log. A node prints progress lines (``pqtwin-progress {"round": R, "accuracy": A}``) and, at exit, one
block::

    ----- BEGIN PQTWIN RESULT <name> -----
    <base64 of JSON {"result": {...}, "spans": <base64 of the spans parquet>}, 76 characters a line>
    ----- END PQTWIN RESULT <name> -----

Calibration Jobs print their profile YAML the same way (kind ``PROFILE``). The writing side (``emit``,
``emit_result``, ``emit_progress``) runs in the pods; the reading side (``blocks``, ``extract``, ``results``,
``progress_round``) in the backend.

A log is untrusted text: anything a pod's code or a library prints, and what a stranger gets logged (a
rejected handshake's fields), lands in it, newlines included. So the reader never raises on what it reads, a
BEGIN line always starts a new block (one left open cannot swallow the real block after it), a damaged block
is skipped without costing the blocks after it, and a block's name is only a label: the backend decides which
names a pod may report for (hw/k8s/backend.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

PROGRESS = "pqtwin-progress "
_BEGIN = "----- BEGIN PQTWIN {kind} {name} -----"
_END = "----- END PQTWIN {kind} {name} -----"
_MARK = re.compile(r"----- (?P<edge>BEGIN|END) PQTWIN (?P<kind>[A-Z]+) (?P<name>\S+) -----")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/=]*")
Check = Callable[[dict[str, Any]], object]  # raises ValueError for a result that does not count


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


def blocks(log: str, kind: str) -> Iterator[tuple[str, bytes]]:
    """Every complete ``kind`` block of a log whose base64 decodes, in order: ``(name, payload)``.

    Line by line: a BEGIN line opens a block (dropping any block still open: its END never came), its END
    line (same kind and name) closes it, and any other line inside it that is not base64 is passed over: on
    Kubernetes a pod's stdout and stderr are one log, so another thread's log line may land inside a block (the
    block's base64, JSON and schema still have to hold for it to count)."""
    current: tuple[str, str, list[str]] | None = None  # kind, name, base64 lines of the open block
    for line in log.split("\n"):  # "\n" only: the splitlines() breaks (\x1c, \u2028 ...) are no line ends in a log
        line = line.rstrip()
        mark = _MARK.fullmatch(line)
        if mark is not None and mark["edge"] == "BEGIN":
            current = (mark["kind"], mark["name"], [])
        elif current is None:
            continue
        elif mark is not None:  # an END: the open block's completes it, any other leaves it unfinished
            ended = current[:2] == (mark["kind"], mark["name"])
            if ended and current[0] == kind and (payload := _decoded(current[2])) is not None:
                yield current[1], payload
            current = None
        elif _BASE64_LINE.fullmatch(line) is not None:
            current[2].append(line)


def _decoded(lines: list[str]) -> bytes | None:
    try:
        return base64.b64decode("".join(lines), validate=True)
    except binascii.Error:
        return None


def extract(log: str, kind: str) -> dict[str, bytes]:
    """Every complete ``kind`` block in a log, by name (the last one wins); damaged blocks are skipped."""
    return dict(blocks(log, kind))


def results(log: str, check: Check | None = None) -> dict[str, tuple[dict[str, Any], bytes]]:
    """``{name: (result, spans parquet bytes)}`` from a pod's log: each name's last well-formed RESULT block.

    ``check(result)`` raising ValueError (a pydantic ValidationError is one) makes a block not count, so a
    later invalid block cannot replace an earlier valid one."""
    out = {}
    for name, payload in blocks(log, "RESULT"):
        if (report := _report(payload, check)) is not None:
            out[name] = report
    return out


def _report(payload: bytes, check: Check | None) -> tuple[dict[str, Any], bytes] | None:
    try:
        data = json.loads(payload)
        if not isinstance(data, dict) or not isinstance(data.get("result"), dict):
            return None
        if not isinstance(spans := data.get("spans"), str):
            return None
        parquet = base64.b64decode(spans, validate=True)
        if check is not None:
            check(data["result"])
    except (ValueError, RecursionError):  # bad JSON, UTF-8 or base64 (all ValueErrors), JSON nested too deep
        return None
    return data["result"], parquet


def progress_round(line: str, rounds: int) -> int | None:
    """The round a progress line reports, if it is one and an int in [0, rounds]; None for any other line.
    Never raises, whatever the line holds (a forged line must not kill the thread following the log)."""
    if not line.startswith(PROGRESS):
        return None
    try:
        data = json.loads(line[len(PROGRESS) :])
    except (ValueError, RecursionError):  # not JSON (an int too long is a ValueError too), or nested too deep
        return None
    r = data.get("round") if isinstance(data, dict) else None
    if type(r) is not int or not 0 <= r <= rounds:  # type(): a JSON true is an int to isinstance
        return None
    return r
