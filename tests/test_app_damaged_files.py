"""Files the app reads back from disk, damaged (AppTest): a saved what-if, a study result, a sweep directory and a
run directory. Each gives one error line naming the file and what is wrong (never "<Page> failed: KeyError"), the
rest of the page keeps working, and the file is left as it was."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app_pages import learn, sweep
from sim.contract import read_summary, write_summary
from sim.sweep import store
from sim.sweep.plan import plan
from sim.sweep.spec import load_sweep
from tests.test_app import ROOT, make_runs, metrics, start

PAPER = ROOT / "scenarios" / "paper-3node.yaml"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test its own runs/ and what-if library."""
    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PQTWIN_WHATIFS_DIR", str(tmp_path / "whatifs"))


def one_line_about(at, *words: str) -> str:
    """The page's only error: one line, with each of ``words``, and no exception class or traceback."""
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    line = errors[0]
    assert len(line.splitlines()) == 1 and " failed: " not in line and "Traceback" not in line, line
    assert all(w in line for w in words), (words, line)
    return line


def paper_with(*edits: tuple[str, str]) -> str:
    text = PAPER.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    return text


def damaged_whatifs() -> dict[str, Path]:
    """Saved what-ifs damaged as a hand edit or a full disk leaves them: {what is wrong: its scenario file}."""
    lib = Path(os.environ["PQTWIN_WHATIFS_DIR"])
    texts = {
        "no-workload": "name: no-workload\n",
        "unknown-kem": paper_with(("name: paper-3node", "name: unknown-kem"), ("kem: ML-KEM-768", "kem: NOPE")),
        "count-text": paper_with(("name: paper-3node", "name: count-text"), ("count: 4,", "count: many,")),
        "not-yaml": "a: [",
        "a-list": "- 1\n- 2\n",
        "hosts-text": paper_with(("name: paper-3node", "name: hosts-text"), ("hosts:", "hosts: pi\n  old_hosts:")),
    }
    out = {}
    for name, text in texts.items():
        (lib / name).mkdir(parents=True)
        (lib / name / "scenario.yaml").write_text(text)
        out[name] = lib / name / "scenario.yaml"
    (lib / "a-folder").mkdir()
    (lib / "a-folder" / "scenario.yaml").mkdir()  # a folder where its file should be
    out["a-folder"] = lib / "a-folder" / "scenario.yaml"
    return out


def snapshot(files: dict[str, Path]) -> dict[str, bytes | None]:
    return {n: p.read_bytes() if p.is_file() else None for n, p in files.items()}


def test_a_damaged_saved_what_if_is_one_line_on_explore_and_the_page_keeps_working():
    files = damaged_whatifs()
    before = snapshot(files)
    at = start()  # the library lists every one of them without failing
    options = at.selectbox(key="ex_scenario").options
    assert all(any(name in o for o in options) for name in files), options
    for name, file in files.items():
        at.selectbox(key="ex_scenario").set_value(file).run()
        one_line_about(at, name, "scenario.yaml")
        assert not at.metric  # no KPIs of another scenario under its name
        assert at.button(key="ex_delete")  # the sidebar still offers to delete it
    at.selectbox(key="ex_scenario").set_value(PAPER).run()
    assert not at.exception and not at.error
    assert metrics(at)["Round latency"]
    assert snapshot(files) == before  # nothing the user saved was changed


@pytest.mark.parametrize(("page", "key"), [("Compare suites", "cs_scenario"), ("Sweep", "sw_scenario")])
def test_a_damaged_saved_what_if_is_one_line_on_compare_and_sweep(page, key):
    files = damaged_whatifs()
    at = start(page)
    for name in ("no-workload", "unknown-kem", "count-text"):
        at.selectbox(key=key).set_value(files[name]).run()
        one_line_about(at, name, "scenario.yaml")
    at.selectbox(key=key).set_value(PAPER).run()
    assert not at.exception and not at.error


# ----------------------------------------------------------------------------------------- study.json


def study_texts() -> dict[str, tuple[str, str]]:
    """{case: (study.json text, what the line says)}, from the shipped result."""
    good = json.loads((ROOT / "docs" / "study" / "study.json").read_text())
    other = {**good, "plane": {"x": "samp", "y": "model"}}
    renamed = {**good, "study": "seedlvl"}
    foreign_base = {**good, "base": {"samp": "500", "model": "250k"}}
    point = {**good, "points": [{**good["points"][0], "settings": {"knobs": "none"}}]}
    short_ci = {**good, "points": [{**good["points"][0], "reduction_ci95": [0.1]}]}
    return {
        "empty object": ("{}", "Field required"),
        "other plane": (json.dumps(other), "plane.x: 'samp' is not an axis"),
        "other study": (json.dumps(renamed), "study 'seedlvl'"),
        "other base": (json.dumps(foreign_base), "base.clients"),
        "other settings": (json.dumps(point), "points[0].settings"),
        "short CI": (json.dumps(short_ci), "points[0].reduction_ci95"),
        "not JSON": ("{'study':", "not JSON"),
        "a list": ("[1, 2]", "JSON object expected"),
        "binary": ("\udcff", "UTF-8"),
    }


def test_a_damaged_study_result_is_one_line_on_learn(tmp_path, monkeypatch):
    monkeypatch.setattr(learn, "STUDY", tmp_path / "study")
    (tmp_path / "study").mkdir()
    target = tmp_path / "study" / "study.json"
    at = start("Learn")
    at.radio(key="learn_step").set_value(learn.STEPS[5]).run()
    assert not at.exception and not at.error  # no result yet: how to make one
    assert any("pqtwin study" in i.value for i in at.info)
    for case, (text, words) in study_texts().items():
        target.write_bytes(text.encode("utf-8", "surrogateescape"))
        at.run()
        one_line_about(at, "study.json", words)
        assert target.read_bytes() == text.encode("utf-8", "surrogateescape"), case  # left as it was
        assert at.radio(key="learn_step").value == learn.STEPS[5]
    shutil.copy(ROOT / "docs" / "study" / "study.json", target)
    at.run()
    assert not at.exception and not at.error
    assert [e for e in at.get("plotly_chart")]  # the contour plane


# ----------------------------------------------------------------------------------------- sweep directory


def a_sweep(out: Path) -> list[str]:
    """A sweep directory prepared as `pqtwin sweep` prepares it (sweep.json, no results yet): its points' hashes."""
    text = sweep.sweep_yaml(PAPER, None, {"KEM": ["X25519", "ML-KEM-768"]}, 1, 1)
    out.mkdir(parents=True)
    file = out.parent / f"{out.name}.yaml"
    file.write_text(text)
    p = plan(*load_sweep(file))
    store.prepare(out, p, file)
    return [json.loads((out / store.MANIFEST).read_text())["points"][i]["hash"] for i in range(len(p.points))]


def test_a_damaged_sweep_directory_is_one_line_on_the_sweep_page():
    out = Path(os.environ["PQTWIN_RUNS_DIR"]) / "sweep-damaged"
    hashes = a_sweep(out)
    part = out / store.POINTS / "part-1-1.parquet"
    part.parent.mkdir(exist_ok=True)
    # rows of this sweep's points without their point numbers (a part of another tool, or of an older version)
    pq.write_table(pa.table({"hash": hashes, "error_kind": [None, None], "round_latency_s.mean": [1.0, 2.0]}), part)
    at = start("Sweep")
    opened = at.selectbox(key="sw_open")
    assert opened.options[1].endswith("sweep-damaged")
    opened.set_value(opened.options[1]).run()
    one_line_about(at, "part-1-1.parquet", "no column 'point'")
    (out / store.MANIFEST).write_text(json.dumps({"sweep": {"sweep": "x"}}))
    at.run()
    one_line_about(at, "sweep.json")
    at.selectbox(key="sw_open").set_value(at.selectbox(key="sw_open").options[0]).run()
    assert not at.exception and not at.error  # the page's own sweep set-up still works


# ----------------------------------------------------------------------------------------- run directories


def test_a_damaged_run_directory_is_named_on_the_twin_page():
    runs = make_runs(Path(os.environ["PQTWIN_RUNS_DIR"]))
    shutil.copytree(runs / "localhost-sim", runs / "older-sim")
    (runs / "older-sim" / "summary.json").write_text("{}")
    at = start("Twin")
    warnings = [w.value for w in at.warning if "Not offered" in w.value]
    assert len(warnings) == 1 and "older-sim/summary.json" in warnings[0], warnings
    assert at.metric  # the runs that read are compared
    spans = runs / "localhost-hw" / "spans.parquet"
    spans.write_bytes(b"not parquet")
    summary = read_summary(runs / "localhost-hw" / "summary.json")
    write_summary(summary, runs / "localhost-hw")  # a new file version: the cached comparison is not served
    at.run()
    one_line_about(at, "localhost-hw/spans.parquet")
    assert spans.read_bytes() == b"not parquet"


def test_the_sweep_file_the_page_runs_is_on_disk_whenever_it_is_offered():
    """The page's own sweep file is read back by `pqtwin sweep run`: one removed (runs/ cleaned up while the app
    ran, or another runs/ directory) or changed on disk is written again before Run is offered, never a cached plan
    of a file that is not there ("Sweep failed: FileNotFoundError" at Run)."""
    at = start("Sweep")
    folder = Path(os.environ["PQTWIN_RUNS_DIR"]) / "app-sweeps"
    (file,) = folder.glob("*.yaml")
    text = file.read_text()
    shutil.rmtree(folder)
    at.run()
    assert not at.exception and not at.error
    assert file.read_text() == text
    file.write_text("sweep: [")  # damaged: the page's text is put back, the run reads what the page shows
    at.run()
    assert not at.exception and not at.error
    assert file.read_text() == text
