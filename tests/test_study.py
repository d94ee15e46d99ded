"""`pqtwin study` (sim/study.py, pqtwin/studyreport.py): the designs, the KPIs each point records, the plane and
the reproduction table, on a small study of the paper scenario."""

from __future__ import annotations

import itertools
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from pqtwin import studyreport
from sim import study
from sim.errors import UserError
from sim.runner import simulate
from sim.scenario import apply_override, load_scenario
from sim.summary import mode_comparison

from .conftest import SCENARIOS

SMALL = {
    "study": "small",
    "scenario": str(SCENARIOS / "paper-3node.yaml"),
    "targets": {"round_latency_reduction": 0.3, "distribution_s": 0.2},
    "replications": 2,
    "rounds": 2,
    "seed": 11,
    "random_points": 3,
    "axes": [
        {"name": "clients", "title": "clients", "base": "2", "levels": [
            {"label": "2", "value": 2},
            {"label": "4", "value": 4, "set": ["workload.fl.clients=4",
                                               "deployment.pods.-={name: client-3, role: client, host: pi-2}",
                                               "deployment.pods.-={name: client-4, role: client, host: pi-3}"]}]},
        {"name": "model", "title": "model parameters", "log": True, "base": "250k", "levels": [
            {"label": "50k", "value": 5e4, "set": ["workload.fl.model_parameters=50000"]},
            {"label": "250k", "value": 2.5e5},
            {"label": "1M", "value": 1e6, "set": ["workload.fl.model_parameters=1000000"]}]},
        {"name": "samples", "title": "samples", "base": "500", "levels": [
            {"label": "100", "value": 100, "set": ["workload.fl.samples_per_client=100"]},
            {"label": "500", "value": 500}]},
        {"name": "aead", "title": "AEAD", "base": "AES-256-GCM", "levels": [
            {"label": "AES-256-GCM"},
            {"label": "ChaCha20-Poly1305", "set": ["workload.crypto.aead=ChaCha20-Poly1305"]}]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[study.StudySpec, Path, dict]:
    path = tmp_path_factory.mktemp("study") / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    spec, scenario = study.load_study(path)
    return spec, scenario, study.run_study(spec, scenario, workers=1)


def test_one_point_is_both_modes_of_the_overridden_scenario(small):
    spec, scenario, result = small
    point = next(p for p in result["points"] if study.changed(result, p) == {"clients": "4"})
    s = load_scenario(scenario, study.overrides(spec, point["settings"]))
    assert s.workload.fl.clients == 4 and len(s.pods("client")) == 4 and s.workload.fl.rounds == 2
    seq, conc = simulate(s, "sequential", 11).summary, simulate(s, "concurrent", 11).summary
    assert point["reduction"] == pytest.approx(mode_comparison(seq, conc)["round_latency_s"]["reduction"], rel=1e-12)
    assert point["distribution_s"] == pytest.approx(conc.model_distribution_s.mean, rel=1e-12)
    lo, hi = point["reduction_ci95"]
    assert lo < point["reduction"] < hi


def test_designs_cover_the_base_each_level_the_plane_and_random_points(small):
    _spec, _, result = small
    designs = [d for p in result["points"] for d in p["design"]]
    assert designs.count("one_at_a_time") == 1 + 1 + 2 + 1 + 1  # base + the other levels of each axis
    # clients moves the reduction most; model moves the distribution time most: the plane shows both targets
    assert result["plane"] == {"x": "clients", "y": "model"}
    assert designs.count("grid") == 2 * 3
    assert len({json.dumps(p["settings"], sort_keys=True) for p in result["points"]}) == len(result["points"])
    assert result["ranking"][0]["axis"] == "clients" and result["seed"] == 11


def test_more_clients_raise_the_reduction_and_a_bigger_model_the_distribution_time(small):
    spec, _, result = small
    _, _, red, dist = study.plane(result, spec)
    assert np.all(red[:, 1] > red[:, 0])  # 4 clients > 2 clients, at every model size
    assert np.all(np.diff(dist, axis=0) > 0)  # distribution grows with the model


def test_reproductions_meet_both_targets_and_the_table_says_so(small):
    _, _, result = small
    ok = study.reproductions(result)
    assert ok and all(p["reduction"] >= 0.3 and p["distribution_s"] < 0.2 for p in ok)
    others = [p for p in result["points"] if p not in ok and "error" not in p]
    assert all(p["reduction"] < 0.3 or p["distribution_s"] >= 0.2 for p in others)
    rows = studyreport.reproduction_rows(result)
    assert len(rows) == len(ok) and "clients 4" in rows[0]["combination (vs the base scenario)"]
    assert rows[0]["both CIs clear"] in ("yes", "no")


def test_the_svg_draws_both_target_lines(small):
    spec, _, result = small
    svg = studyreport.svg(result, spec)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    # beside the legend's sample of each line, segments: 0.3 lies between 2 and 4 clients, 0.2 s between 250k and 1M
    assert svg.count('stroke="#c0392b"') >= 2 and svg.count('stroke-dasharray="7,4"') >= 2
    assert "30 % reduction" in svg and "0.2 s distribution" in svg


def test_marching_squares_finds_a_straight_contour():
    xs, ys = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0])
    z = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    segs = studyreport._segments(xs, ys, z, 0.5)
    assert segs == [(0.5, 0.0, 0.5, 1.0)] or segs == [(0.5, 1.0, 0.5, 0.0)]


def test_the_same_study_gives_the_same_result(small, tmp_path):
    spec, scenario, result = small
    again = study.run_study(spec, scenario, workers=2)  # processes: the same numbers as in-process
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["axes"][0].update(base="7"), "base '7' is not a level of axis clients"),
        (lambda d: d["axes"][1]["levels"][0].update(value=None), "give every level a value, or none"),
        (lambda d: d.update(scenario="nowhere.yaml"), "scenario: file not found"),
        (lambda d: d.update(replications=1), "replications"),
        (lambda d: d.update(axes=d["axes"][2:]), "at least two axes need numeric values"),
        # two levels at one value: the plane divided by zero after every point was simulated, and lost the study
        (lambda d: d["axes"][2]["levels"][0].update(value=500), "levels '100', '500' have the same value"),
        # what the study sets itself on every point: a level setting it was silently overridden
        (lambda d: d["axes"][3]["levels"][1]["set"].append("run.seed=7"), "sets 'run.seed', which the study sets"),
        (lambda d: d["axes"][3]["levels"][1]["set"].append("run={seed: 5}"), "sets 'run', which the study sets"),
        (lambda d: d["axes"][3]["levels"][1]["set"].append("workload.fl.rounds=9"), "sets 'workload.fl.rounds'"),
        (lambda d: d["axes"][3]["levels"][1]["set"].append("run.replications=9"), "sets 'run.replications'"),
        (
            lambda d: d["axes"][3]["levels"][1]["set"].append("workload.processing.mode=concurrent"),
            "sets 'workload.processing.mode'",
        ),
    ],
)
def test_a_bad_study_file_is_a_one_line_error(tmp_path, edit, expected):
    data = json.loads(json.dumps(SMALL))
    edit(data)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        study.load_study(tmp_path / "s.yaml")
    assert len(info.value.lines) == 1 and expected in info.value.lines[0], info.value.lines


def test_a_point_that_cannot_run_is_recorded_not_fatal(tmp_path):
    sets = ["workload.crypto.signature=Falcon-1024", "deployment.hosts.0.profile=nowhere"]
    out = study.evaluate(SCENARIOS / "paper-3node.yaml", sets, 1)
    assert "profile file not found" in out["error"]


def test_set_appends_list_items_with_a_dash():
    data = {"pods": [{"name": "a"}]}
    apply_override(data, "pods.-={name: b, role: worker}")
    apply_override(data, "pods.-={name: c, role: worker}")
    assert [p["name"] for p in data["pods"]] == ["a", "b", "c"]
    with pytest.raises(UserError, match="no list item '-'"):
        apply_override(data, "pods.-.role=client")


def test_cli_writes_the_outputs(pqtwin, tmp_path):
    data = json.loads(json.dumps(SMALL)) | {"random_points": 0}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    res = pqtwin("study", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--workers", "1")
    assert res.returncode == 0, res.stderr
    assert {f.name for f in (tmp_path / "out").iterdir()} == {"study.json", "study.svg", "study.md"}
    assert "points reproduce both figures; plane: clients x model" in res.stdout
    assert "| axis | reduction range (points) |" in (tmp_path / "out" / "study.md").read_text()


def test_a_second_study_into_the_same_directory_needs_force(pqtwin, tmp_path):
    """`study --out` wrote into any directory, over the user's files of the same names; it now claims its directory
    as every run does (new or empty, or --force over an earlier study, whose files alone it replaces)."""
    data = json.loads(json.dumps(SMALL)) | {"random_points": 0}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.md").write_text("my notes")
    args = ("study", str(tmp_path / "s.yaml"), "--out", str(out), "--workers", "1")
    res = pqtwin(*args)
    assert res.returncode == 2 and "is not empty" in res.stderr and (out / "study.md").read_text() == "my notes"
    res = pqtwin(*args, "--force")  # the notes are not an earlier study: refused still
    assert res.returncode == 2 and "holds no earlier run" in res.stderr, res.stderr
    (out / "study.md").unlink()
    assert pqtwin(*args).returncode == 0
    for name in ("mine.txt", "scenario.yaml", "summary.json", "profiles/pi.yaml", "logs/a.log"):  # run-named too
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_text("keep")
    assert pqtwin(*args, "--force").returncode == 0
    assert (out / "study.json").is_file()
    kept = ("mine.txt", "scenario.yaml", "summary.json", "profiles/pi.yaml", "logs/a.log")
    assert [n for n in kept if not (out / n).is_file() or (out / n).read_text() != "keep"] == []


@pytest.mark.parametrize(
    ("level", "expected"),
    [(["nope=1"], "axes[2] (samples), level '100': "), (["workload.fl.samples_per_client=-5"], "samples_per_client"),
     (["workload.devices.0.count=100000", "run.stop_at=horizon", "run.horizon_s=3600", "run.engine=events"],
      "over the 1 GiB budget (pqtwin sim's default, per point)")],
    ids=["unknown-key", "invalid-value", "over-budget"],
)  # fmt: skip
def test_a_level_that_cannot_run_is_refused_before_the_study_starts(tmp_path, level, expected):
    """A level no point could run was a warning per point and the study ended with exit 0, every point failed; a
    level of 100,000 devices on the event engine started a simulation of hours (pqtwin sim refused it at once)."""
    data = json.loads(json.dumps(SMALL))
    data["axes"][2]["levels"][0]["set"] = level
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as exc:
        study.load_study(tmp_path / "s.yaml")
    (line,) = exc.value.lines
    assert line.startswith(f"{tmp_path / 's.yaml'}: axes[2] (samples), level '100': ") and expected in line, line


def test_a_markdown_cell_cannot_split_its_row():
    """A study's titles and labels are free text: a | or a line break in one broke study.md's tables silently."""
    table = studyreport.markdown([{"axis": "a | b", "level": "two\nlines"}, {"axis": "x", "level": "y"}])
    lines = table.splitlines()
    assert len(lines) == 4 and all(len(re.split(r"(?<!\\)\|", line)) == 4 for line in lines), table  # 2 cells


def test_a_study_over_its_total_budget_is_refused_before_its_out_is_claimed(pqtwin, tmp_path):
    """Each point within pqtwin sim's budget, the study as a whole had none: thousands of random points of a point
    that takes a minute ran for a day. Now its points are estimated together first (``planned_cost``; identical
    points once, as the study runs them) and a study over --max-minutes is one line, its --out untouched."""
    data = json.loads(json.dumps(SMALL)) | {"random_points": 10_000, "replications": 50, "rounds": 50}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    res = pqtwin("study", str(tmp_path / "s.yaml"), "--out", str(out), "--workers", "2", "--max-minutes", "5")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert re.search(r"the study's 24 points need ~.+ on 2 worker\(s\) .* over the 5 min budget \(--max-minutes\)",
                     res.stderr), res.stderr  # fmt: skip
    assert not out.exists()
    data["random_points"] = 0
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    res = pqtwin("study", str(tmp_path / "s.yaml"), "--out", str(out), "--workers", "1", "--max-minutes", "0.01")
    assert res.returncode == 2 and "over the 0.01 min budget" in res.stderr and not out.exists(), res.stderr


def test_the_planned_cost_counts_every_design_and_scales_combinations_by_their_levels(small):
    spec, _, _ = small
    levels = {(a.name, lv.label): 10.0 for a in spec.axes for lv in a.levels}
    levels["model", "1M"] = 40.0  # four times the base
    n, total_s = study.planned_cost(spec, levels)
    first = study.one_at_a_time(spec)
    assert n >= len(first) and n <= len(first) + 6 + spec.random_points  # the largest numeric grid: 2 x 3
    assert total_s >= 10.0 * n  # no point cheaper than the base
    one = {**{(a.name, lv.label): 10.0 for a in spec.axes for lv in a.levels}}
    n1, t1 = study.planned_cost(spec, one)
    assert n1 == n and t1 == 10.0 * n  # every level as the base: every point the base's time


def _svg_geometry(text: str) -> list[tuple[float, float, float, float]]:
    """Check study.svg's geometry (parses as XML; every coordinate finite and in the picture, no negative size)
    and return its cells (the filled rects of the plane: x0, x1, y0, y1)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(text)
    cells = []
    for el in root.iter():
        nums = {k: float(v) for k, v in el.attrib.items() if k in ("x", "y", "x1", "y1", "x2", "y2", "width", "height")}
        assert all(np.isfinite(v) for v in nums.values()), el.attrib
        assert nums.get("width", 0) >= 0 and nums.get("height", 0) >= 0, el.attrib
        assert all(0 <= v <= (680 if k.startswith(("x", "w")) else 440) for k, v in nums.items()), el.attrib
        if el.tag.endswith("rect") and el.get("fill") not in ("none", "white"):
            cells.append((nums["x"], nums["x"] + nums["width"], nums["y"], nums["y"] + nums["height"]))
    return cells


def _plane_spec(spec: study.StudySpec, clients: list[float], model: list[float]) -> study.StudySpec:
    data = spec.model_dump()
    for lv, v in zip(data["axes"][0]["levels"], clients, strict=True):
        lv["value"] = v
    for lv, v in zip(data["axes"][1]["levels"], model, strict=True):
        lv["value"] = v
    return study.StudySpec.model_validate(data)


@pytest.mark.parametrize(
    ("clients", "model", "even"),
    [([-1e308, 1e308], [5e4, 2.5e5, 1e6], False),  # their difference overflows
     ([-1.7976931348623157e308, 1.7976931348623157e308], [2.2250738585072014e-308, 1e-10, 1.7e308], False),
     ([4.0, 2.0], [1e6, 5e4, 2.5e5], False),  # not in order
     ([-1e308, 1e308], [1.0, 1.0000001, 1e300], True)],  # two levels no pixel apart: spaced evenly, and said
    ids=["huge", "extremes", "unordered", "crowded"],
)  # fmt: skip
def test_the_svg_places_any_finite_distinct_level_values(small, clients, model, even):
    """Levels at ±1e308 (finite, distinct, accepted) drew study.svg with NaN coordinates behind raw numpy overflow
    warnings on stderr, as did a distribution target of 1e308; levels out of order drew overlapping cells, levels
    closer than a pixel cells of negative width. Now positions are scaled without overflow, cells follow the
    values' order, and an axis whose cells cannot all show is spaced evenly and says so."""
    spec, _, result = small
    result = result | {"targets": result["targets"] | {"distribution_s": 1e308}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = studyreport.svg(result, _plane_spec(spec, clients, model))
    cells = _svg_geometry(text)
    assert len(cells) == 6
    for a, b in itertools.combinations(cells, 2):  # the plane's cells do not overlap, none is empty
        assert min(a[1], b[1]) <= max(a[0], b[0]) + 1e-9 or min(a[3], b[3]) <= max(a[2], b[2]) + 1e-9, (a, b)
    assert all(c[1] - c[0] >= 4 and c[3] - c[2] >= 4 for c in cells), cells
    assert ("evenly spaced" in text) == even
    assert text.count('stroke="#c0392b"') >= 2  # the reduction contour is still drawn
