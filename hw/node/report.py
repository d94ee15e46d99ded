"""Where a node's results go: ``Reporter`` and its two kinds.

- ``FileReporter`` (every backend): ``progress.json``, ``spans/<pod>.parquet`` and ``nodes/<pod>.json`` in
  the run directory, each written atomically; after every finished round, a line in the node's journal
  (``checkpoint``, hw/journal.py), so a node killed mid-run leaves every round it finished.
- ``LogReporter`` (Kubernetes, where the run directory is the pod's own): the same files, plus progress
  lines and the result block on stdout for the backend to read from the pod's log (hw/podlog.py).

A progress or journal file that cannot be written (a full disk, the run directory tampered with) is said once in
the node's log and the node goes on: its rounds are still in its memory, and each later round tries the file
again; the journal's next line then carries the spans the failed ones did not (a disk full for a moment loses
no round; a failed journal write leaves no part of a line behind: hw/journal.py). Its end's report is the one
write a node cannot do without (``hw.node.main`` ends in one line if it fails).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

from hw import podlog
from hw.journal import Journal
from hw.rundir import NodeResult
from sim.contract import RunLayout, SpanRow, atomic_write, rows_bytes

log = logging.getLogger("pqtwin.node")


class Reporter(Protocol):
    def progress(self, r: int, accuracy: float) -> None:
        """The aggregator finished round ``r``."""
        ...

    def finish(self, name: str, result: NodeResult, spans: list[SpanRow]) -> None:
        """The node's end: its result and every span it recorded."""
        ...

    def checkpoint(self, name: str, result: NodeResult, new_rows: list[SpanRow]) -> None:
        """What the node has finished so far (a round), kept should it never reach ``finish`` (kill -9):
        the spans recorded since the last checkpoint, and the result so far."""
        ...


class FileReporter:
    def __init__(self, run_dir: Path):
        self.layout = RunLayout(run_dir)
        self.journals: dict[str, Journal] = {}
        self.failed: set[str] = set()  # files already said to be unwritable
        self.owed: dict[str, list[SpanRow]] = {}  # spans for a journal not open yet (could not be), by node
        self.caught_up: set[str] = set()  # journals already said to be written again

    def _unwritable(self, what: str, exc: OSError) -> None:
        if what not in self.failed:
            self.failed.add(what)
            log.warning("cannot write %s (%s): going on, trying again at the next round", what, exc.strerror or exc)

    def progress(self, r: int, accuracy: float) -> None:
        try:
            atomic_write(self.layout.progress, json.dumps({"round": r, "accuracy": accuracy}))
        except OSError as exc:
            self._unwritable(str(self.layout.progress), exc)

    def finish(self, name: str, result: NodeResult, spans: list[SpanRow]) -> None:
        atomic_write(self.layout.node_spans(name), rows_bytes(spans))  # no pandas in a node: rows_bytes
        result.write(self.layout.root, name)
        if (journal := self.journals.pop(name, None)) is not None:
            journal.close()
        self.layout.node_journal(name).unlink(missing_ok=True)

    def checkpoint(self, name: str, result: NodeResult, new_rows: list[SpanRow]) -> None:
        journal = self.layout.node_journal(name)
        try:
            if name not in self.journals:
                self.journals[name] = Journal(journal)
        except OSError as exc:
            self.owed.setdefault(name, []).extend(new_rows)  # for the first line it can write
            self._unwritable(str(journal), exc)
            return
        try:  # tens of µs: it may fall inside a round; a line that failed goes with the next (hw/journal.py)
            self.journals[name].append(self.owed.pop(name, []) + new_rows, result)
        except OSError as exc:
            self._unwritable(str(journal), exc)
            return
        if str(journal) in self.failed and str(journal) not in self.caught_up:  # once, as its failure was said
            self.caught_up.add(str(journal))
            log.info("wrote %s again: it holds every round finished so far", journal)


class LogReporter(FileReporter):
    def progress(self, r: int, accuracy: float) -> None:
        super().progress(r, accuracy)
        podlog.emit_progress(r, accuracy)

    def finish(self, name: str, result: NodeResult, spans: list[SpanRow]) -> None:
        super().finish(name, result, spans)
        podlog.emit_result(name, result.model_dump(mode="json"), self.layout.node_spans(name).read_bytes())
