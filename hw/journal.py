"""Node journals: a node's finished rounds, kept as it goes (``spans/<pod>.journal``), so that a node killed
mid-run leaves every round it finished.

Each finished round is one JSON line, ``{"rows": [...], "result": {...}}``: the spans recorded since the last
line and the node's result so far. ``Journal`` keeps the file open for the node's whole run and hands each line
to the kernel with one ``write`` (a killed process loses nothing the kernel has): a checkpoint inside a round
costs tens of microseconds of CPU, not the few hundred that opening, writing and renaming two files took -- CPU
the twin's measured rounds would otherwise carry and the modelled deployment does not run. A node's end
replaces its journal by ``spans/<pod>.parquet`` and ``nodes/<pod>.json``; a backend turns the journals of nodes
that never ended into the same files (``recover_journals``).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from hw.rundir import NodeResult
from sim.contract import RunLayout, SpanRow, atomic_write, spans_bytes, to_frame


class Journal:
    """One node's journal, open until ``close``. A line the disk did not take whole (full) is cut off again, so
    the journal holds whole lines only, and its spans go with the next line: a disk full for a moment loses no
    round (a torn line had made every later line unreadable: ``read_journal`` stops at the first damaged one)."""

    def __init__(self, path: Path):
        path.parent.mkdir(exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._whole = os.lseek(self._fd, 0, os.SEEK_END)  # bytes of whole lines
        self._torn = False  # a failed write's part may follow them (its cutting failed too)
        self._owed = ""  # the spans of lines that could not be written, as JSON (serialised once)

    def append(self, rows: list[SpanRow], result: NodeResult) -> None:
        """One line: the spans recorded since the last line written, and the result so far. OSError: nothing of it
        is in the file (its spans go with the next line)."""
        new = json.dumps([list(r) for r in rows])[1:-1]
        spans = ", ".join(part for part in (self._owed, new) if part)
        data = f'{{"rows": [{spans}], "result": {json.dumps(result.model_dump(mode="json"))}}}\n'.encode()
        try:
            if self._torn:  # nothing may follow a torn line: cut it first
                os.ftruncate(self._fd, self._whole)
                self._torn = False
            view = memoryview(data)
            while view:  # a regular file takes it whole unless the disk is full (then OSError)
                self._torn = True
                view = view[os.write(self._fd, view) :]
        except OSError:
            self._owed = spans
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._whole)
                self._torn = False
            raise
        self._torn, self._owed = False, ""
        self._whole += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: Path) -> tuple[list[SpanRow], dict[str, Any] | None]:
    """The spans of a journal's whole lines and the last result; a torn last line (killed mid-write) is dropped."""
    rows: list[SpanRow] = []
    result = None
    text = path.read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():  # a damaged line ends the journal, not the run
        try:
            entry = json.loads(line)
            new = [SpanRow(*r) for r in entry["rows"]]
        except (ValueError, TypeError, KeyError):
            break
        rows += new
        result = entry.get("result")
    return rows, result


def journal_result(run_dir: Path, pod: str) -> NodeResult | None:
    """The result a node had when it last journaled (for a node that never wrote its own)."""
    path = RunLayout(run_dir).node_journal(pod)
    if not path.exists():
        return None
    _, result = read_journal(path)
    return None if result is None else NodeResult.model_validate(result)


def recover_journals(run_dir: Path) -> list[str]:
    """The spans and last result of nodes that never finished (killed), from their journals:
    ``spans/<pod>.parquet`` and ``nodes/<pod>.json``, each where the node wrote none. The pods recovered.

    A node writes its spans first at its end, so spans of its own beside a journal mean it ended and was stopped
    before it removed the journal: the journal holds fewer rounds (up to its last checkpoint), and is not the
    node's last word (nor is a journal a stranger put there)."""
    layout = RunLayout(run_dir)
    recovered = []
    for journal in sorted((run_dir / RunLayout.NODE_SPANS).glob("*.journal")):
        pod = journal.stem
        rows, result = read_journal(journal)
        if not layout.node_spans(pod).exists():
            try:
                table = spans_bytes(to_frame(rows))
            except (ValueError, TypeError):  # rows of the wrong types: not a node's journal
                table = spans_bytes(to_frame([]))
            atomic_write(layout.node_spans(pod), table)
        if result is not None and not layout.node_result(pod).exists():
            with contextlib.suppress(ValueError):  # a journal line the node did not write: no result from it
                NodeResult.model_validate(result).write(run_dir, pod)
        journal.unlink()
        recovered.append(pod)
    return recovered
