"""Span journals: a node's spans appended round by round (``spans/<pod>.journal``, one JSON line each), so
that a node killed mid-run leaves every round it finished; its end replaces the journal by
``spans/<pod>.parquet``, and a backend turns the journals of nodes that never ended into the same files."""

from __future__ import annotations

import json
from pathlib import Path

from sim.contract import RunLayout, SpanRow, atomic_write, spans_bytes, to_frame


def append_journal(layout: RunLayout, pod: str, rows: list[SpanRow]) -> None:
    journal = layout.node_journal(pod)
    journal.parent.mkdir(exist_ok=True)
    with open(journal, "a") as f:
        f.write(json.dumps([list(r) for r in rows]) + "\n")


def recover_journals(run_dir: Path) -> list[str]:
    """The spans of nodes that never finished (killed), from their journals: ``spans/<pod>.parquet``. A torn
    last line (killed mid-append) is dropped. The pods recovered."""
    layout = RunLayout(run_dir)
    recovered = []
    for journal in sorted((run_dir / RunLayout.NODE_SPANS).glob("*.journal")):
        rows: list[SpanRow] = []
        for line in journal.read_text().splitlines():
            try:
                rows += [SpanRow(*r) for r in json.loads(line)]
            except (ValueError, TypeError):
                break
        atomic_write(layout.node_spans(journal.stem), spans_bytes(to_frame(rows)))
        journal.unlink()
        recovered.append(journal.stem)
    return recovered
