"""Node journals (hw/journal.py): every finished round survives a kill, torn lines are dropped, and a checkpoint
inside a round is one write to a file opened once."""

from __future__ import annotations

import os

from hw.journal import journal_result, recover_journals
from hw.node.report import FileReporter
from hw.rundir import NodeResult, node_results
from sim.contract import RunLayout, SpanRow, read_spans


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
    rep.finish("client-1", NodeResult(state="completed", rounds=5), [_row(1, "fl.train")])
    assert not RunLayout(tmp_path).node_journal("client-1").exists()


def test_a_disk_full_for_a_moment_loses_no_round_and_leaves_whole_lines(tmp_path, monkeypatch, caplog):
    """One failed write (a disk full for a second) stopped the node's journal for good: the rounds it finished
    after, with room on the disk again, were lost when it was then killed. A write the disk took only part of
    must not leave a torn line that would make every later line unreadable either."""
    import errno
    import json
    import logging

    from hw.journal import read_journal

    rep = FileReporter(tmp_path)
    real_write = os.write
    full = {"on": False, "calls": 0}

    def write(fd, data):
        if not full["on"]:
            return real_write(fd, data)
        full["calls"] += 1
        if full["calls"] == 1:  # the disk takes part of the line, then is full
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)
    journal = RunLayout(tmp_path).node_journal("client-1")
    with caplog.at_level(logging.INFO, logger="pqtwin.node"):
        for r in range(1, 6):
            full["on"] = r in (2, 3)
            rep.checkpoint("client-1", NodeResult(state="failed", reason=f"ended after round {r}", rounds=r),
                           [_row(r, "fl.train"), _row(r, "fl.upload")])  # fmt: skip
            if r == 2:
                assert journal.read_text().endswith("\n")  # the part written was cut off again
    text = journal.read_text()
    assert [json.loads(line)["result"]["rounds"] for line in text.splitlines()] == [1, 4, 5]
    rows, result = read_journal(journal)
    assert sorted(r.round for r in rows) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5] and result["rounds"] == 5
    assert caplog.text.count("cannot write") == 1 and "No space left on device" in caplog.text  # said once
    assert caplog.text.count("wrote ") == 1
    assert recover_journals(tmp_path) == ["client-1"]
    assert sorted(read_spans(RunLayout(tmp_path).node_spans("client-1"))["round"]) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert node_results(tmp_path)["client-1"].reason == "ended after round 5"


def test_a_journal_that_could_not_be_opened_keeps_the_rounds_for_its_first_line(tmp_path, caplog):
    """A journal that cannot be opened yet (its directory not writable for a moment) is opened at the next
    round, and its first line carries the spans of the rounds before."""
    import logging
    import shutil

    rep = FileReporter(tmp_path)
    journal = RunLayout(tmp_path).node_journal("client-1")
    journal.mkdir(parents=True)  # in the way for rounds 1-2
    with caplog.at_level(logging.WARNING, logger="pqtwin.node"):
        for r in (1, 2, 3):
            if r == 3:
                shutil.rmtree(journal)
            rep.checkpoint("client-1", NodeResult(state="failed", rounds=r), [_row(r, "fl.train")])
    assert caplog.text.count("cannot write") == 1
    assert recover_journals(tmp_path) == ["client-1"]
    assert list(read_spans(RunLayout(tmp_path).node_spans("client-1"))["round"]) == [1, 2, 3]
    assert node_results(tmp_path)["client-1"].rounds == 3
