"""Node journals (hw/journal.py): every finished round survives a kill, torn lines are dropped, and a checkpoint
inside a round is one write to a file opened once."""

from __future__ import annotations

import os

from hw.journal import journal_result, recover_journals
from hw.node.report import FileReporter
from hw.rundir import NodeResult, node_results
from sim.contract import RunLayout, SpanRow, read_spans, to_frame


def _row(rnd: int, op: str) -> SpanRow:
    return SpanRow(0, rnd, "client-1", "local", "train", op, float(rnd), rnd + 0.5, 0.0, 0)


def test_a_killed_nodes_rounds_and_last_result_are_recovered(tmp_path):
    rep = FileReporter(tmp_path)
    for r in (1, 2):
        rep.checkpoint("client-1", NodeResult(state="failed", reason=f"ended after round {r}", rounds=r),
                       [_row(r, "fl.train")])  # fmt: skip
    journal = RunLayout(tmp_path).node_journal("client-1")
    with open(journal, "a") as f:
        f.write('{"rows": [[0, 3, "client-1"')  # killed mid-write: a torn line
    assert journal_result(tmp_path, "client-1").rounds == 2
    assert recover_journals(tmp_path) == ["client-1"]
    spans = read_spans(RunLayout(tmp_path).node_spans("client-1"))
    assert list(spans["round"]) == [1, 2]
    assert node_results(tmp_path)["client-1"].reason == "ended after round 2"
    assert not journal.exists()


def test_a_node_that_wrote_its_result_keeps_it(tmp_path):
    rep = FileReporter(tmp_path)
    rep.checkpoint("aggregator", NodeResult(state="failed", reason="ended after round 1"), [_row(1, "round")])
    NodeResult(state="failed", reason="quorum lost").write(tmp_path, "aggregator")
    recover_journals(tmp_path)
    assert node_results(tmp_path)["aggregator"].reason == "quorum lost"


def test_a_checkpoint_is_one_write_to_a_file_opened_once(tmp_path, monkeypatch):
    rep = FileReporter(tmp_path)
    calls = {"open": 0, "write": 0}
    real_open, real_write = os.open, os.write

    def counting_open(*a, **k):
        calls["open"] += 1
        return real_open(*a, **k)

    def counting_write(*a, **k):
        calls["write"] += 1
        return real_write(*a, **k)

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(os, "write", counting_write)
    for r in range(1, 6):
        rep.checkpoint("client-1", NodeResult(state="failed", rounds=r), [_row(r, "fl.train")] * 20)
    assert calls == {"open": 1, "write": 5}
    rep.finish("client-1", NodeResult(state="completed", rounds=5), to_frame([_row(1, "fl.train")]))
    assert not RunLayout(tmp_path).node_journal("client-1").exists()
