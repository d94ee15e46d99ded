"""Input classes an input hunt found read silently wrong (2026-12-02):

- YAML 1.1 number and boolean forms (``count: 010`` was 8 devices, ``rounds: 1:30`` 90 rounds): a value YAML 1.1
  and YAML 1.2 read differently is refused in one line naming the file (or option), the field and the value, in
  every file the tool reads and in ``--set`` values alike;
- the same run directory given twice to a command that pools runs (``compare``, ``calibrate --from-run``) counted
  twice: refused, however the path is written (``RUN/``, ``../x/RUN``, a link) or when it is a copy;
- a profile op's ``unit`` that is not the one the simulator prices it per was accepted and mislabelled: refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from hw.compare import compare_dirs
from hw.fit import fit_from_run
from pqtwin import cli
from sim.errors import UserError
from sim.loading import parse_yaml
from sim.profile import Profile, load_profile
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS
from .test_fit import PROFILE, planted_run

PAPER = SCENARIOS / "paper-3node.yaml"


def one_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``pqtwin ARGS`` in this process: exit 2 and one stderr line, no traceback; the line."""
    capsys.readouterr()
    code = cli.run(list(args))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, (code, out, err)
    return lines[0]


# --- YAML 1.1 number forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("010", "010 is ambiguous (octal 8 in YAML 1.1, 10 in YAML 1.2): write 10 or 8"),
     ("-010", "write -10 or -8"), ("00", "write 0"),
     ("1:30", "1:30 is a number (90) in YAML 1.1 (base 60)"), ("1:30.5", "(90.5)"),
     ("0b101", "0b101 is a number (5) in YAML 1.1 (binary)"), ("1_000", "'_' between digits"),
     ("1_000.5", "write 1000.5"), ("0x1_0", "write 16"), ("-0x10", "write -16"),
     ("yes", "yes is a boolean (true) in YAML 1.1"), ("No", "write false"), ("on", "write true"),
     ("OFF", "write false"), ("!!int 010", "010 is ambiguous")],
)  # fmt: skip
def test_a_value_yaml_1_1_and_1_2_read_differently_is_refused_naming_the_field(text, expected):
    with pytest.raises(UserError) as info:
        parse_yaml(f"run:\n  x: [1, {{v: {text}}}]\n", "f.yaml")
    (line,) = info.value.lines
    assert line.startswith("f.yaml: run.x[1].v: ") and expected in line and "(line 2)" in line, line


ALIKE = [("10", 10), ("+5", 5), ("-0", 0), ("0", 0), ("0x10", 16), ("1.5", 1.5), ("1.0e-05", 1e-5),
         ("-.inf", -float("inf")), ("true", True), ("False", False), ("'010'", "010"), ('"yes"', "yes"),
         ("'1:30'", "1:30"), ("0:30", "0:30"), ("08", "08"), ("1e5", "1e5")]  # fmt: skip


def test_only_what_yaml_1_1_and_1_2_read_differently_is_refused_and_the_rest_reads_as_before():
    """What YAML 1.1 and 1.2 agree on is unchanged (``08`` and ``1e5`` are text to PyYAML, as ``yaml.safe_dump``
    writes them, and a number field takes them as the number YAML 1.2 reads); files we write (a run's
    scenario.yaml, a calibrated profile) and every file the repository ships read back as before."""
    with pytest.raises(UserError, match="010 is ambiguous"):
        parse_yaml("v: [010, 08, '010']", "f")
    for text, value in ALIKE:
        assert parse_yaml(f"v: {text}", "f") == {"v": value} == yaml.safe_load(f"v: {text}"), text
    data = {"a": ["010", "08", "1:30", "yes", "off", "0b1", "1_0", "1e5"], "b": [10, -3, 1.5, 1e-300, 1e300, True],
            "c": float("inf")}  # fmt: skip
    assert parse_yaml(yaml.safe_dump(data), "f") == data
    files = [p for d in ("scenarios", "sweeps", "docs", "tests") for p in (ROOT / d).rglob("*.y*ml")]
    assert {"paper-3node.yaml", "pi4-openssl.yaml", "paper-suites.yaml"} <= {f.name for f in files}
    for f in files:
        text = f.read_text()
        try:
            expected = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # several documents, or a fixture that is not YAML on purpose
        assert parse_yaml(text, str(f)) == expected, f


def test_the_ambiguous_forms_are_refused_in_a_scenario_file_and_in_set(capsys, tmp_path):
    """The hunt's repro: ``count: 010`` read as 8 devices, ``--set workload.fl.rounds=1:30`` as 90 rounds."""
    text = PAPER.read_text()
    assert "count: 4," in text
    bad = tmp_path / "scenario.yaml"
    bad.write_text(text.replace("count: 4,", "count: 010,", 1))
    (tmp_path / "profiles").symlink_to(SCENARIOS / "profiles")
    line = one_error(capsys, "scenario", "check", str(bad))
    assert f"{bad}: workload.devices[0].count: 010 is ambiguous" in line and "write 10 or 8" in line, line
    line = one_error(capsys, "scenario", "check", str(PAPER), "--set", "workload.fl.rounds=1:30")
    assert "--set workload.fl.rounds: 1:30 is a number (90) in YAML 1.1" in line, line
    line = one_error(capsys, "scenario", "check", str(PAPER), "--set", "workload.devices.0={count: 010}")
    assert "--set workload.devices.0: count: 010 is ambiguous" in line, line
    assert load_scenario(PAPER, ["workload.fl.rounds=+5"]).workload.fl.rounds == 5


def test_sweep_and_study_files_are_read_by_the_same_rules(tmp_path):
    from sim.study import load_study
    from sim.sweep.spec import load_sweep

    for loader in (load_study, load_sweep):
        f = tmp_path / f"{loader.__name__}.yaml"
        f.write_text("name: x\nscenario: s.yaml\nreplications: 010\n")
        with pytest.raises(UserError, match=r"replications: 010 is ambiguous"):
            loader(f)


# --- the same run given twice -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dups")
    out = {}
    for name, seed in (("sim", 2), ("hw", 3), ("hw2", 4)):
        s = load_scenario(PAPER, ["workload.fl.rounds=2"])
        write_run(simulate(s, None, seed, 2), base / name, s)
        out[name] = base / name
    (base / "link").symlink_to(base / "hw")
    out["link"] = base / "link"
    return out


def _spellings(run: Path) -> list[str]:
    return [f"{run}/", f"{run}/../{run.name}", f"{run}/.", str(run.parent / "link")]


def test_compare_refuses_a_measured_run_given_twice_however_it_is_written(runs, capsys, tmp_path):
    hw = runs["hw"]
    for again in _spellings(hw):
        with pytest.raises(UserError) as info:
            compare_dirs(runs["sim"], hw, [again])
        (line,) = info.value.lines
        assert line.startswith(f"measured run {Path(again)}: given twice") and "counts twice" in line, line
    line = one_error(capsys, "compare", str(runs["sim"]), str(hw), f"{hw}/", "--out", str(tmp_path / "c"))
    assert f"measured run {hw}: given twice" in line and not (tmp_path / "c").exists(), line
    copy = shutil.copytree(hw, tmp_path / "copy")
    with pytest.raises(UserError, match=rf"measured run {copy}: the same measurement as {hw} .*identical"):
        compare_dirs(runs["sim"], hw, [runs["hw2"], copy])
    pooled = compare_dirs(runs["sim"], hw, [runs["hw2"]])  # two runs: pooled as before
    assert len(pooled["runs"]["hw"]["repeats"]) == 2


def test_calibrate_from_run_refuses_a_run_given_twice(capsys, tmp_path):
    run = tmp_path / "run"
    planted_run(run, rounds=3)
    os.symlink(run, tmp_path / "link")
    for again in _spellings(run):
        with pytest.raises(UserError) as info:
            fit_from_run([run, Path(again)], PROFILE)
        assert info.value.lines[0].startswith(f"--from-run {Path(again)}: given twice"), info.value.lines
    copy = shutil.copytree(run, tmp_path / "copy")
    with pytest.raises(UserError, match="the same measurement"):
        fit_from_run([run, copy], PROFILE)
    out = tmp_path / "fit.yaml"
    line = one_error(capsys, "calibrate", "--from-run", str(run), "--from-run", f"{run}/", "--base", str(PROFILE),
                     "--out", str(out))  # fmt: skip
    assert "--from-run" in line and "given twice" in line and not out.exists(), line


# --- a profile op's unit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "unit", "want"),
    [("fl.train", "byte", "sample_param"), ("fl.fedavg", "sample_param", "param"), ("serialize", "param", "byte"),
     ("AES-256-GCM.encrypt", "sample_param", "byte"), ("fl.train", "param", "sample_param")],
)  # fmt: skip
def test_a_profile_unit_the_simulator_does_not_price_the_op_by_is_refused(capsys, tmp_path, op, unit, want):
    data = yaml.safe_load((ROOT / "scenarios" / "profiles" / "pi4-openssl.yaml").read_text())
    assert data["ops"][op]["kind"] == "linear" and data["ops"][op]["unit"] == want
    data["ops"][op]["unit"] = unit
    bad = tmp_path / "profile.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(UserError) as info:
        load_profile(bad)
    (line,) = info.value.lines
    assert line.startswith(f"{bad}: ops.{op}.unit: {op} is priced per {want}") and f"got '{unit}'" in line, line
    with pytest.raises(ValueError, match=rf"ops\.{op}\.unit"):  # however a profile is read (calibrate's output)
        Profile.model_validate(data)
    line = one_error(capsys, "sim", str(PAPER), "--profile", str(bad), "--out", str(tmp_path / "run"))
    assert f"ops.{op}.unit" in line and not (tmp_path / "run").exists(), line


def test_the_shipped_profiles_and_a_fitted_one_state_the_units_their_ops_are_priced_per(tmp_path):
    data = load_profile(PROFILE).model_dump(mode="json", exclude_none=True)
    data["ops"]["fl.train"]["unit"] = "byte"
    with pytest.raises(ValueError, match=r"fl\.train is priced per sample_param"):
        Profile.model_validate(data)
    for f in (ROOT / "scenarios" / "profiles").glob("*.yaml"):
        load_profile(f)
    planted_run(tmp_path / "run", rounds=3)
    Profile.model_validate(fit_from_run(tmp_path / "run", PROFILE).profile)


# --- arguments that are not UTF-8 -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["scenario", "out", "set"])
def test_an_argument_that_is_not_utf8_is_refused_naming_it(tmp_path, capsys, where):
    """A path with a Latin-1 byte reaches Python as surrogates, which no UTF-8 file can hold: ``pqtwin sim`` ended in
    an internal error writing summary.json, ``report`` writing its HTML and ``sweep run`` reading its Parquet. Every
    argument is checked once, before any command runs, and nothing is written."""
    odd = os.fsdecode(b"d\xff")
    folder = tmp_path / odd if where == "scenario" else tmp_path
    folder.mkdir(exist_ok=True)
    shutil.copytree(SCENARIOS / "profiles", folder / "profiles", dirs_exist_ok=True)
    shutil.copy(SCENARIOS / "localhost.yaml", folder / "s.yaml")
    out = tmp_path / (odd if where == "out" else "out")
    extra = ["--set", f"name={odd}"] if where == "set" else []
    line = one_error(capsys, "sim", str(folder / "s.yaml"), "--out", str(out), "--replications", "2", *extra)
    option = {"scenario": "argument 2", "out": "--out", "set": "--set"}[where]
    assert line.startswith(f"error: {option}: not UTF-8 text: byte 0xff in "), line
    assert not out.exists()  # nothing written (an internal error is exit 1: ``one_error`` wants 2)


def test_utf8_arguments_beyond_ascii_still_run(tmp_path, capsys):
    """The check refuses what UTF-8 cannot hold, not what is beyond ASCII."""
    folder = tmp_path / "Station Ü 病棟"
    shutil.copytree(SCENARIOS / "profiles", folder / "profiles")
    shutil.copy(SCENARIOS / "localhost.yaml", folder / "s.yaml")
    assert cli.run(["sim", str(folder / "s.yaml"), "--out", str(folder / "out"), "--replications", "2"]) == 0
    assert (folder / "out" / "summary.json").exists() or any((folder / "out").glob("*/summary.json"))
