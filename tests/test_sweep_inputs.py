"""Sweep inputs that used to run and give a silently wrong result, or a raw library warning.

- An axis or ``set`` over the fields the sweep sets itself (``run.seed``, ``run.replications``), however it is
  spelled (the section ``run`` with a value holding them, a path inside them, a level's or the sweep's ``set``), is
  one line naming the axis, its path and the field: every point got the sweep's seed, and came out identical.
- A KPI pattern that can keep no numeric column of a summary (a mistyped sub-field, a text or list field) is one
  line naming it, with the closest names: the sweep ran and stored no KPI. What exists is read from the summary's
  model, and every column a real summary flattens to is accepted. A mapping's keys (hosts, links, populations,
  phases) are checked against the points' scenarios: a key none of them has is one line with the closest columns.
- A report never takes an axis for a KPI; a sweep that kept no KPI is one line saying so.
- A second sweep into an --out another sweep is running in is one line naming it and the holder's pid; after the
  first has ended, the directory resumes as before.
- Anything on port 8787 (Dask's dashboard default) makes no raw warning.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from pqtwin import cli
from sim.errors import UserError
from sim.runner import simulate
from sim.scenario import load_scenario
from sim.sweep import engine, store
from sim.sweep.plan import plan
from sim.sweep.point import kpis
from sim.sweep.spec import load_sweep

from .conftest import ROOT, SCENARIOS

PAPER = (SCENARIOS / "paper-3node.yaml").resolve()
ROUNDS = {"path": "workload.fl.rounds", "values": [1, 2]}


def doc(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"sweep": "t", "scenario": str(PAPER), "replications": 1, "axes": [ROUNDS]}
    return out | fields


def write(tmp_path: Path, content: dict[str, Any]) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.run(["sweep", "check", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in err, err
    return code, err


def one_error(capsys: pytest.CaptureFixture[str], path: Path, *names: str) -> str:
    code, err = check(capsys, path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), (code, err)
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# --- 1. the sweep's own fields, however an override reaches them -----------------------------------------

OWN = "the sweep's own"
OWNED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "section-axis-seed": (
        doc(axes=[{"name": "runsec", "path": "run", "values": [{"horizon_s": 60}, {"seed": 99, "horizon_s": 60}]}]),
        ["axes[0]: axis runsec: path run, value {'horizon_s': 60, 'seed': 99}", "sets run.seed", OWN],
    ),
    "section-axis-replications": (
        doc(axes=[{"name": "runsec", "path": "run", "values": [{"replications": 7}]}]),
        ["axes[0]: axis runsec: path run", "sets run.replications", OWN],
    ),
    "path-inside-the-seed": (
        doc(axes=[{"name": "s", "path": "run.seed.x", "values": [1, 2]}]),
        ["axes[0]: axis s: path run.seed.x sets run.seed", OWN],
    ),
    "path-with-spaces": (
        doc(axes=[{"name": "s", "path": " run.replications ", "values": [1, 2]}]),
        ["axes[0]: axis s: path run.replications sets run.replications", OWN],
    ),
    "level-sets-the-section": (
        doc(
            axes=[
                {
                    "name": "x",
                    "levels": [
                        {"label": "a", "set": ["run={horizon_s: 60}"]},
                        {"label": "b", "set": ["run={seed: 5}"]},
                    ],
                }
            ]
        ),
        ["axes[0]: axis x: level 'b': set 'run={seed: 5}' sets run.seed", OWN],
    ),
    "set-the-section": (
        doc(set=["workload.fl.rounds=1", "run={seed: 5, horizon_s: 60}"]),
        ["set: item 1, 'run={seed: 5, horizon_s: 60}', sets run.seed", OWN, "give it as the sweep's seed"],
    ),
    "set-the-section-replications": (
        doc(set=["run={replications: 9}"]),
        ["set: item 0", "sets run.replications", "give it as the sweep's replications"],
    ),
}


@pytest.mark.parametrize(("content", "expected"), list(OWNED.values()), ids=list(OWNED))
def test_an_override_reaching_the_sweeps_own_fields_is_one_line(capsys, tmp_path, content, expected):
    path = write(tmp_path, content)
    one_error(capsys, path, *expected)


def test_the_run_section_is_an_axis_refused_only_where_a_value_sets_the_sweeps_fields(capsys, tmp_path):
    """The section's other fields can vary (each point gets its value); one value that sets the seed is refused."""
    values: list[dict[str, Any]] = [{"horizon_s": 60}, {"horizon_s": 120, "stop_at": "horizon"}]
    path = write(tmp_path, doc(axes=[{"name": "runsec", "path": "run", "values": values}], set=["run.horizon_s=30"]))
    code, err = check(capsys, path)
    assert code == 0, err
    spec, scenario = load_sweep(path)
    assert [p.scenario.run.horizon_s for p in plan(spec, scenario, estimate=False).points] == [60, 120]
    path = write(tmp_path, doc(axes=[{"name": "runsec", "path": "run", "values": [*values, {"seed": 1}]}]))
    one_error(capsys, path, "axis runsec: path run, value {'seed': 1}, sets run.seed", OWN)


# --- 2. KPI patterns that keep no column ------------------------------------------------------------------

BAD_KPIS = {
    "round_latency_s.mena": "matches no summary column (did you mean round_latency_s.mean",
    "application_bytes.totl": "matches no summary column (did you mean application_bytes.total",
    "roud_latency_s.p95": "did you mean round_latency_s.p95",
    "warnings": "matches only summary fields that are not numbers (warnings): a KPI is a number",
    "engine.name": "matches only summary fields that are not numbers (engine.name)",
    "round_latency_s.ci_method": "not numbers (round_latency_s.ci_method)",
    "host_utilization.*.name": "matches no summary column",
}


@pytest.mark.parametrize(("pattern", "expected"), list(BAD_KPIS.items()), ids=list(BAD_KPIS))
def test_a_kpi_pattern_keeping_no_column_is_one_line(capsys, tmp_path, pattern, expected):
    path = write(tmp_path, doc(kpis=["round_latency_s.mean", pattern]))
    one_error(capsys, path, f"kpis: item 1, {pattern!r}, ", expected)


def test_a_kpi_pattern_of_thousands_of_characters_is_one_line(capsys, tmp_path):
    path = write(tmp_path, doc(kpis=["*a" * 5_000]))
    one_error(capsys, path, "kpis: item 0", "a pattern of 10,000 characters; at most 200")


@pytest.fixture(scope="module")
def columns() -> dict[str, float]:
    """Every column a real summary flattens to (devices' entries and energy included)."""
    s = load_scenario(PAPER)
    return kpis(simulate(s, None, 1, 1).summary, ("*",))


def test_the_check_accepts_every_column_of_a_real_summary_and_refuses_them_misspelt(capsys, tmp_path, columns):
    """What the check thinks exists, read from the summary's model, covers what a run stores (no pattern naming a
    real column is refused; wildcards across and within parts are accepted), and a field of a section misspelt
    (``round_latency_s.mean_x``) is refused: before, only the first part was checked."""
    assert len(columns) > 50
    patterns = [*columns, "*", "round_latency_s.*", "*.ci95_[lh]?", "energy*j", "host_utilization.*.offered"]
    for i in range(0, len(patterns), 256):
        code, err = check(capsys, write(tmp_path, doc(kpis=patterns[i : i + 256])))
        assert code == 0, err
    from sim.sweep.point import kpi_schema

    fixed = {name for name, _ in kpi_schema() if "*" not in name}  # (a mapping's key could be any text)
    misspelt = [f"{c}_x" for c in columns if c in fixed and "." in c]
    assert len(misspelt) > 20
    for pattern in misspelt:
        one_error(capsys, write(tmp_path, doc(kpis=[pattern])), f"kpis: item 0, {pattern!r}, matches no summary")


@pytest.mark.parametrize("pattern", ["machine_load.*", "security.*", "fabric.*", "initial_accuracy"])
def test_a_kpi_only_a_twin_run_has_is_refused(capsys, tmp_path, pattern):
    """A sweep's points are simulations: a pattern matching only fields a twin's run fills in (how busy the
    machine was, the security counters, the netns fabric) passed the check and then stored no column."""
    one_error(capsys, write(tmp_path, doc(kpis=[pattern])), f"kpis: item 0, {pattern!r}, matches no summary")


KEY_TYPOS = {  # a key the scenario's points do not have: the closest columns, or the keys there are
    "host_utilization.pi-9.offered": "did you mean host_utilization.pi-",
    "link_utilization.pi-2->pi1.busy": "did you mean link_utilization.",
    "link_bytes.by_link.ecg-c#0->pi-2": "did you mean link_bytes.by_link.ecg-",
    "phase_s.trian": "did you mean phase_s.train",
    "energy.hosts.*.by_phase_j.trian": "did you mean energy.hosts.pi-",
    "energy.devices.ecg-*.by_part_j.radio": "did you mean energy.devices.ecg-",
    "telemetry.by_population.ecg-a.mean": "telemetry.by_population has none at any point: only the vectorized",
}


@pytest.mark.parametrize(("pattern", "expected"), list(KEY_TYPOS.items()), ids=list(KEY_TYPOS))
def test_a_kpi_naming_a_key_no_point_has_is_one_line(capsys, tmp_path, pattern, expected):
    """The schema has a ``*`` for a mapping's key (a host's, a link's, a population's, a phase's): a pattern naming
    one the scenario lacks passed the check, the sweep ran and stored no column for it."""
    path = write(tmp_path, doc(kpis=["round_latency_s.mean", pattern], set=["workload.fl.rounds=1"]))
    line = one_error(capsys, path, f"kpis: item 1, {pattern!r}, matches no column of this sweep's points", expected)
    assert "pi-9" not in line.split("did you mean")[-1]


def test_kpi_keys_are_those_of_every_points_scenario(capsys, tmp_path):
    """What a pattern's keys are checked against is what the points' scenarios have, with the sweep's set and its
    axes: a population's device links only where it has devices; frames per population only from the vectorized
    engine; a mapping's keys at any point count."""
    link = "link_utilization.ecg-a#3->pi-2.busy"
    pops = "telemetry.by_population.ecg-b.p95"
    base = {"set": ["workload.fl.rounds=1", "run.horizon_s=20"]}
    assert check(capsys, write(tmp_path, doc(kpis=[link], **base)))[0] == 0
    gone = base | {"set": [*base["set"], "workload.devices.0.count=0"]}
    one_error(capsys, write(tmp_path, doc(kpis=[link], **gone)), f"item 0, {link!r}, matches no column")
    counts = {"path": "workload.devices.0.count", "values": [0, 4]}
    assert check(capsys, write(tmp_path, doc(kpis=[link], axes=[counts], **gone)))[0] == 0
    one_error(capsys, write(tmp_path, doc(kpis=[pops], **base)), "telemetry.by_population has none at any point")
    vectorized = {"set": [*base["set"], "run.engine=vectorized"]}
    assert check(capsys, write(tmp_path, doc(kpis=[pops], **vectorized)))[0] == 0
    engines = {"name": "engine", "path": "run.engine", "values": ["events", "vectorized"]}
    assert check(capsys, write(tmp_path, doc(kpis=[pops], axes=[engines], **base)))[0] == 0
    storm = "telemetry.storm.peak_by_pod.{}.mean"  # the pods the devices report to
    assert check(capsys, write(tmp_path, doc(kpis=[storm.format("client-2")], **base)))[0] == 0
    one_error(capsys, write(tmp_path, doc(kpis=[storm.format("aggregator")], **base)), "matches no column")


def test_kpis_keeping_no_column_of_the_points_are_one_line_and_a_wildcard_beside_others_is_not(capsys, tmp_path):
    """A ``*`` over a mapping no point fills keeps nothing: alone, the sweep would store no KPI; beside patterns
    that keep columns it is no mistake (a list kept for any scenario, as the app's Sweep page keeps)."""
    base = ["workload.fl.rounds=1", "workload.devices.0.count=0", "workload.devices.1.count=0"]
    empty = ["telemetry.by_population.*.mean", "energy.devices.*.battery_life_days"]
    one_error(capsys, write(tmp_path, doc(kpis=empty, set=base)), "kpis: ", "keep no column of this sweep's points",
              "telemetry.by_population has none at any point", "energy.devices has none at any point")  # fmt: skip
    for kept in ("host_utilization.*.offered", "round_latency_s.mean"):
        code, err = check(capsys, write(tmp_path, doc(kpis=[*empty, kept], set=base)))
        assert code == 0, err


@pytest.fixture(scope="module")
def vectorized_columns() -> dict[str, float]:
    """Every column a vectorized run of paper-3node stores (frames per population)."""
    s = load_scenario(PAPER, overrides=["run.engine=vectorized", "run.horizon_s=30", "workload.fl.rounds=1"])
    return kpis(simulate(s, None, 1, 1).summary, ("*",))


def test_the_points_keys_cover_every_column_of_a_vectorized_run(capsys, tmp_path, vectorized_columns):
    assert any(c.startswith("telemetry.by_population.ecg-b.") for c in vectorized_columns)
    patterns = [c for c in vectorized_columns if "." in c]
    base = ["run.engine=vectorized", "run.horizon_s=30", "workload.fl.rounds=1"]
    for i in range(0, len(patterns), 256):
        code, err = check(capsys, write(tmp_path, doc(kpis=patterns[i : i + 256], set=base)))
        assert code == 0, err


@pytest.fixture(scope="module")
def axis_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep that ran, keeping no headline KPI (only the hosts' offered load): a text and a numeric axis."""
    folder = tmp_path_factory.mktemp("axis")
    axes = [{"name": "rekey", "path": "workload.crypto.rekey.fl", "values": ["per_message", "per_round"]},
            {"name": "samples", "path": "workload.fl.samples_per_client",
             "range": {"low": 50, "high": 500, "num": 2, "integer": True}}]  # fmt: skip
    sweep = write(folder, doc(sweep="tinyaxis", set=["run.horizon_s=20", "workload.fl.rounds=1"], seed=3, axes=axes,
                              kpis=["host_utilization.*.offered"]))  # fmt: skip
    out = folder / "out"
    r = subprocess.run([sys.executable, "-m", "pqtwin", "sweep", str(sweep), "--out", str(out), "--workers", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def test_a_report_never_takes_an_axis_for_a_kpi(capsys, axis_sweep):
    """With no headline KPI kept, the report took every varying numeric column for a KPI, axes too: the axis
    ``samples`` ranked against itself (1.00), first, with its own main-effects figure."""
    from sim.sweep import analysis

    df = store.results(axis_sweep)
    assert "samples" in df and analysis.headline_kpis(df) == [f"host_utilization.pi-{i}.offered" for i in (1, 2, 3)]
    capsys.readouterr()
    assert cli.run(["sweep", "report", str(axis_sweep)]) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if "axis" in line)
    assert "samples" not in header and "host_utilization" in header
    assert any("samples" in line for line in table)  # a row: the axis is ranked, not a KPI
    html = (axis_sweep / "report.html").read_text()
    assert "Main effects on host_utilization.pi-1.offered" in html and "Main effects on samples" not in html


def test_a_report_of_a_sweep_that_kept_no_kpi_says_so(capsys, axis_sweep, tmp_path):
    """A sweep whose points ran but that kept no KPI column (its patterns matched none: a sweep run before its
    check refused them) is one line saying so, not a report ranking its axes or saying no point finished."""
    import pandas as pd

    from sim.sweep import analysis

    out = tmp_path / "out"
    shutil.copytree(axis_sweep, out)
    (out / "report.html").unlink(missing_ok=True)
    df = pd.read_parquet(out / store.RESULTS)
    df[[c for c in df if not c.startswith("host_utilization.")]].to_parquet(out / store.RESULTS)
    capsys.readouterr()
    assert cli.run(["sweep", "report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the sweep kept no KPI"), err
    assert not (out / "report.html").exists()
    failed = store.results(out).assign(error="boom", error_kind="input")
    assert analysis.headline_kpis(failed) == []  # no point ran: the report says none finished


# --- 3. one sweep at a time in an --out --------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sim.sweep import store
    from sim.sweep.plan import plan
    from sim.sweep.spec import load_sweep
    spec, scenario = load_sweep(Path(sys.argv[1]))
    store.prepare(Path(sys.argv[2]), plan(spec, scenario, estimate=False), Path(sys.argv[1]))
    print("prepared", flush=True)
    time.sleep(60)
""")
LOCK = ".lock"


def small_sweep(folder: Path, set_: list[str] | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    return write(folder, doc(sweep="small", set=set_ or ["workload.fl.rounds=1"], axes=[
        {"name": "mode", "path": "workload.processing.mode", "values": ["sequential", "concurrent"]}]))  # fmt: skip


def running(sweep: Path, out: Path) -> subprocess.Popen[str]:
    """Another process that prepared ``out`` for ``sweep`` and is running it (here: sleeping)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(sweep), str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "prepared"
    return proc


def test_a_second_sweep_into_a_running_sweeps_out_is_one_line_and_changes_nothing(capsys, tmp_path):
    first, out = small_sweep(tmp_path), tmp_path / "out"
    second = small_sweep(tmp_path / "b", set_=["workload.fl.rounds=2"])  # the same name: it would reuse the directory
    proc = running(first, out)
    try:
        before = (out / store.MANIFEST).read_bytes()
        capsys.readouterr()
        code = cli.run(["sweep", str(second), "--out", str(out), "--workers", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0] == (f"error: --out {out} is in use by another sweep (pid {proc.pid}): wait for it to end "
                          "(rerunning it then resumes it), or choose another --out")  # fmt: skip
        assert (out / store.MANIFEST).read_bytes() == before
        with pytest.raises(UserError, match="in use by another sweep"):
            store.consolidate(out)  # nor does anything else of the sweep write there
        assert not (out / store.RESULTS).exists()
    finally:
        proc.kill()
        proc.wait()
    # the first has ended: its directory is reused as before
    spec, scenario = load_sweep(second)
    store.prepare(out, plan(spec, scenario, estimate=False), second)
    assert store.consolidate(out).empty


def test_a_sweep_leaves_its_lock_file_which_does_not_stop_it_resuming(tmp_path):
    """The lock ends with the sweep's process (its file stays, naming the pid that held it): a rerun resumes."""
    sweep, out = small_sweep(tmp_path), tmp_path / "out"
    pqtwin = [sys.executable, "-m", "pqtwin", "sweep", str(sweep), "--out", str(out), "--workers", "1"]
    r = subprocess.run(pqtwin, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / LOCK).read_text().strip().isdigit()
    r = subprocess.run(pqtwin, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resumed: 2 of 2 points were already done" in r.stdout and "(2 rows)" in r.stdout, r.stdout


def test_a_directory_holding_only_a_lock_file_is_a_new_sweeps_and_one_with_more_gets_none(tmp_path):
    sweep, out, other = small_sweep(tmp_path), tmp_path / "out", tmp_path / "other"
    out.mkdir()
    (out / LOCK).write_text("123\n")  # a sweep killed before it wrote its manifest
    spec, scenario = load_sweep(sweep)
    store.prepare(out, plan(spec, scenario, estimate=False), sweep)
    store.consolidate(out)  # (which ends this process' lock)
    assert (out / store.MANIFEST).is_file()
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and not a sweep directory"):
        store.prepare(other, plan(spec, scenario, estimate=False), sweep)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]  # no lock file left in a directory not ours


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    sweep, out = small_sweep(tmp_path), tmp_path / "out"
    out.mkdir()
    target = tmp_path / "precious"
    target.write_text("keep me")
    (out / LOCK).symlink_to(target)
    spec, scenario = load_sweep(sweep)
    with pytest.raises(UserError, match=r"\.lock is a symbolic link, not a sweep's lock file"):
        store.prepare(out, plan(spec, scenario, estimate=False), sweep)
    assert target.read_text() == "keep me" and not (out / store.MANIFEST).exists()


# --- 4. Dask's dashboard port -------------------------------------------------------------------------------


def test_something_on_port_8787_makes_no_raw_warning(capfd):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", 8787))  # as a dashboard listens
            s.listen()
        except OSError:
            pass  # something holds it already: the case itself
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with engine.client(None, 1) as c:
                assert len(c.scheduler_info(n_workers=-1)["workers"]) == 1
            time.sleep(0.2)
    out, err = capfd.readouterr()
    assert not [w for w in caught if "already in use" in str(w.message)], [str(w.message) for w in caught]
    assert "already in use" not in out + err and "warnings.warn" not in err, err


def test_a_report_of_kpis_that_never_vary_says_so_not_that_no_point_finished(axis_sweep, tmp_path):
    """Every point finished but no kept KPI varied: the report said "No point has finished yet"."""
    import pandas as pd

    out = tmp_path / "out"
    shutil.copytree(axis_sweep, out)
    (out / "report.html").unlink(missing_ok=True)
    df = pd.read_parquet(out / store.RESULTS)
    for c in [c for c in df if c.startswith("host_utilization.")]:
        df[c] = 0.25
    df.to_parquet(out / store.RESULTS)
    assert cli.run(["sweep", "report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "No point has finished yet" not in html
    assert re.search(r"No KPI the sweep kept varies across its \d+ points: nothing to rank or plot", html)


def test_a_design_too_large_to_plan_here_is_one_line_before_anything_runs(capsys, tmp_path, monkeypatch):
    """`pqtwin sweep` plans in one process and keeps every point's scenario (~22 KB each): the schema's
    1,000,000-point design would need ~20 GiB, after half an hour of planning. A design whose points need over half
    of this machine's memory is refused from its size (here the per-point price is raised so that 10 are too many)."""
    from sim.sweep import plan

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.setattr(plan, "PLAN_POINT_BYTES", memory)
    path = write(tmp_path, doc(design="lhs", size=10, axes=[{"name": "h", "path": "run.horizon_s",
                                                             "range": {"low": 10, "high": 20}}]))  # fmt: skip
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli.run(["sweep", str(path), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: size: 10 points: planning them keeps"), lines
    assert not out.exists()
