"""Sweep files (sim/sweep/spec.py) and their plans (sim/sweep/plan.py), without running a point.

Every mistake in a sweep file is one line on stderr naming the file, the field and the value, exit code 2
(``pqtwin sweep check``); the constraint language accepts exactly its small grammar and fails only with
ValueError (when checked) or UserError (when evaluated); ranges, designs and seeds keep their promises
(property-based); and a plan counts what its constraints skip and its design drew twice, hashes what a point's
results depend on and nothing else, and records overrides that rebuild each point's scenario.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pqtwin import cli
from sim.errors import UserError
from sim.loading import parse_value
from sim.scenario import MAX_SEED, load_scenario
from sim.sweep.plan import Plan, design, plan, point_seeds
from sim.sweep.spec import (
    MAX_CONSTRAINT_CHARS,
    MAX_POINTS,
    RESERVED,
    Range,
    SweepSpec,
    check_constraint,
    holds,
    load_sweep,
)

from .conftest import SCENARIOS

PAPER = (SCENARIOS / "paper-3node.yaml").resolve()
EXAMPLE = Path(__file__).resolve().parents[1] / "sweeps" / "paper-suites.yaml"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ROUNDS = {"path": "workload.fl.rounds", "values": [1, 2]}
MODE = {"path": "workload.processing.mode", "values": ["sequential", "concurrent"]}


def doc(**fields: Any) -> dict[str, Any]:
    """A valid sweep file's content (two points), with ``fields`` replaced (None: removed)."""
    out: dict[str, Any] = {"sweep": "t", "scenario": str(PAPER), "replications": 1, "axes": [ROUNDS]}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def spec_of(**fields: Any) -> SweepSpec:
    return SweepSpec.model_validate(doc(**fields))


def write(tmp_path: Path, content: dict[str, Any] | str | bytes, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, dict):
        content = yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    """``pqtwin sweep check PATH`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = cli.run(["sweep", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, out: str, err: str, *names: str) -> str:
    """Exit 2, exactly one stderr line, an error naming every one of ``names``, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def point_errors(code: int, out: str, err: str, path: Path) -> list[str]:
    """Exit 2, no traceback, every line an error naming the file; the lines after the header."""
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert all(line.startswith(f"error: {path}: ") for line in lines), err
    assert "points cannot be simulated (skip them with a constraint):" in lines[0], err
    return [line.removeprefix(f"error: {path}: ") for line in lines[1:]]


def planned(tmp_path: Path, **fields: Any) -> Plan:
    spec, scenario = load_sweep(write(tmp_path, doc(**fields)))
    return plan(spec, scenario, estimate=False)


# --- 1. a mistake in a sweep file is one line, exit code 2 ----------------------------------------------

BAD_FILES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "unknown-key": (doc(bogus=1), ["bogus: unknown key (got 1)"]),
    # the sweep sets every point's seed and replications: an axis or a set over them changed nothing, silently
    "axis-over-the-seed": (
        doc(axes=[{"path": "run.seed", "values": [1, 2]}]),
        ["axes[0]: axis seed: path run.seed sets run.seed, the sweep's own"],
    ),
    "level-sets-replications": (
        doc(axes=[{"name": "x", "levels": [{"label": "a", "set": ["run.replications=5"]}]}]),
        ["axes[0]: axis x: level 'a': set 'run.replications=5' sets run.replications, the sweep's own"],
    ),
    "set-seed": (doc(set=["run.seed=3"]), ["set: item 0, 'run.seed=3', sets run.seed, the sweep's own"]),
    # a KPI pattern matching no column: the sweep ran and kept none
    "kpi-matching-nothing": (doc(kpis=["round_latency_s.*", "nope.*"]), ["kpis: item 1, 'nope.*', matches no summary"]),
    "kpi-unclosed-bracket": (doc(kpis=["["]), ["kpis: item 0, '[', matches no summary column"]),
    "unknown-axis-key": (doc(axes=[{**ROUNDS, "colour": "red"}]), ["axes[0].colour: unknown key", "red"]),
    "unknown-range-key": (
        doc(axes=[{"path": "workload.fl.rounds", "range": {"low": 1, "high": 3, "num": 3, "step": 1}}]),
        ["axes[0].range.step: unknown key"],
    ),
    "unknown-level-key": (doc(axes=[{"name": "x", "levels": [{"label": "a", "sets": []}]}]), ["levels[0].sets"]),
    "missing-scenario": (doc(scenario="nope.yaml"), ["scenario: file not found", "nope.yaml"]),
    "scenario-is-a-directory": (doc(scenario="."), ["scenario: file not found", "(got '.')"]),
    "axis-of-no-kind": (
        doc(axes=[{"path": "workload.fl.rounds"}]),
        ["axes[0]: give one of values, range or levels (got none)"],
    ),
    "axis-values-and-range": (
        doc(axes=[{**ROUNDS, "range": {"low": 1, "high": 3, "num": 2}}]),
        ["axes[0]: give one of values, range or levels (got values, range)"],
    ),
    "axis-values-and-levels": (
        doc(axes=[{"name": "x", "values": [1], "levels": [{"label": "a"}]}]),
        ["axes[0]: give one of values, range or levels (got values, levels)"],
    ),
    "path-axis-ending-in-an-index": (
        doc(axes=[{"path": "deployment.hosts.0", "values": [{"name": "pi-1", "cores": 4, "profile": "x"}]}]),
        ["axes[0]: give the axis a name", "'0' is not one"],
    ),
    "path-axis-ending-in-capitals": (
        doc(axes=[{"path": "workload.fl.Rounds", "values": [1]}]),
        ["axes[0]: give the axis a name", "'Rounds'"],
    ),
    "bad-axis-name": (doc(axes=[{**ROUNDS, "name": "Rounds!"}]), ["axes[0].name", "Rounds!"]),
    "levels-without-a-name": (doc(axes=[{"levels": [{"label": "a"}]}]), ["axes[0]: a levels axis needs a name"]),
    "levels-with-a-path": (
        doc(axes=[{"name": "x", "path": "workload.fl.rounds", "levels": [{"label": "a"}]}]),
        ["axes[0]: values and range need a path"],
    ),
    "duplicate-values": (doc(axes=[{**ROUNDS, "values": [1, 2, 1]}]), ["axes[0]: duplicate values: [1, 2, 1]"]),
    "duplicate-level-labels": (
        doc(axes=[{"name": "x", "levels": [{"label": "a"}, {"label": "a"}]}]),
        ["axes[0]: duplicate level labels: ['a', 'a']"],
    ),
    "no-axes": (doc(axes=[]), ["axes: List should have at least 1 item"]),
    "duplicate-axis-names": (
        doc(axes=[ROUNDS, {"path": "run.rounds", "values": [1]}]),
        ["duplicate axis names: rounds (give each axis its own name)"],
    ),
    "reserved-by-its-path": (
        doc(axes=[{"path": "workload.fl.error", "values": [1, 2]}]),
        ["axis names error are reserved"],
    ),
    "grid-with-size": (doc(size=3), ["size is for random and lhs designs"]),
    "random-without-size": (doc(design="random"), ["a random design needs size"]),
    "lhs-without-size": (doc(design="lhs"), ["a lhs design needs size"]),
    "unknown-design": (doc(design="factorial"), ["design", "factorial"]),
    "size-0": (doc(design="random", size=0), ["size: Input should be greater than or equal to 1 (got 0)"]),
    "negative-seed": (doc(seed=-1), ["seed: Input should be greater than or equal to 0 (got -1)"]),
    "replications-0": (doc(replications=0), ["replications", "(got 0)"]),
    "unknown-seeds": (doc(seeds="shared"), ["seeds", "shared"]),
    "constraints-not-a-list": (doc(constraints="rounds > 1"), ["constraints: Input should be a valid list"]),
    "bad-sweep-name": (doc(sweep="my sweep"), ["sweep: String should match pattern", "my sweep"]),
    "range-low-equals-high": (
        doc(axes=[{"path": "workload.fl.rounds", "range": {"low": 3, "high": 3, "num": 2}}]),
        ["axes[0].range: low must be below high (got low 3, high 3)"],
    ),
    "range-low-above-high": (
        doc(axes=[{"path": "workload.fl.rounds", "range": {"low": 9, "high": 3, "num": 2}}]),
        ["axes[0].range: low must be below high (got low 9, high 3)"],
    ),
    "log-range-from-0": (
        doc(axes=[{"path": "run.horizon_s", "range": {"low": 0, "high": 3, "num": 2, "log": True}}]),
        ["axes[0].range: a log range needs low > 0 (got 0)"],
    ),
    "log-range-from-negative": (
        doc(axes=[{"path": "run.horizon_s", "range": {"low": -2, "high": 3, "num": 2, "log": True}}]),
        ["axes[0].range: a log range needs low > 0 (got -2)"],
    ),
    "integer-range-without-a-whole-number": (
        doc(axes=[{"path": "workload.fl.rounds", "range": {"low": 1.2, "high": 1.8, "num": 2, "integer": True}}]),
        ["axes[0].range: no whole number between 1.2 and 1.8"],
    ),
    "nan-range": (
        doc(axes=[{"path": "run.horizon_s", "range": {"low": float("nan"), "high": 3, "num": 2}}]),
        ["axes[0].range.low: Input should be a finite number (got nan)"],
    ),
    "range-num-1": (
        doc(axes=[{"path": "run.horizon_s", "range": {"low": 1, "high": 3, "num": 1}}]),
        ["axes[0].range.num: Input should be greater than or equal to 2 (got 1)"],
    ),
    "grid-range-without-num": (
        doc(axes=[{"path": "workload.fl.rounds", "range": {"low": 1, "high": 3}}]),
        ["a grid needs range.num (how many values) for axis rounds"],
    ),
    "grid-of-10-million-points": (
        doc(axes=[{"name": f"a{i}", "path": "workload.fl.rounds", "values": list(range(1, 11))} for i in range(7)]),
        ["the grid has 10,000,000 points; at most 1,000,000 per sweep"],
    ),
    "constraint-syntax-error": (doc(constraints=["rounds >"]), ["constraint 'rounds >': not an expression"]),
    "constraint-unknown-name": (
        doc(constraints=["clients > 1"]),
        ["constraint 'clients > 1': no axis named 'clients' (axes: rounds)"],
    ),
    "constraint-too-long": (
        doc(constraints=["rounds > 1" + " " * MAX_CONSTRAINT_CHARS]),
        [f"constraint of {MAX_CONSTRAINT_CHARS + 10} characters; at most {MAX_CONSTRAINT_CHARS}"],
    ),
    "constraint-nul": (doc(constraints=["rounds\0"]), ["constraints: a control character ('\\x00')"]),
}

FORBIDDEN = {  # constraint: the construct the error names
    "abs(rounds) > 1": "Call",
    "rounds.real > 1": "Attribute",
    "rounds ** 2 > 4": "Pow",
    "rounds // 2 == 1": "FloorDiv",
    "(lambda: rounds)": "Lambda",
    "[r for r in [rounds]] == [1]": "ListComp",
    "{r for r in [rounds]} == {1}": "SetComp",
    "{r: 1 for r in [rounds]} == {}": "DictComp",
    "any(r for r in [rounds])": "Call",
    "(r for r in [rounds])": "GeneratorExp",
    "[rounds][0] > 1": "Subscript",
    "rounds if rounds else 1": "IfExp",
    "(y := rounds) > 1": "NamedExpr",
    "rounds is None": "Is",
    "~rounds < 0": "Invert",
    "rounds << 2 > 1": "LShift",
    "rounds in {1, 2}": "Set",
    "rounds in {1: 2}": "Dict",
    "f'{rounds}' == '1'": "JoinedStr",
    "__import__('os').system('true')": "Call",
}


@pytest.mark.parametrize(("content", "expected"), list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_a_mistake_in_a_sweep_file_is_one_line(capsys, tmp_path, content, expected):
    path = write(tmp_path, content)
    one_error(*check(capsys, path), str(path), *expected)


@pytest.mark.parametrize(("text", "node"), list(FORBIDDEN.items()), ids=list(FORBIDDEN.values()))
def test_a_construct_outside_the_constraint_language_is_one_line(capsys, tmp_path, text, node):
    path = write(tmp_path, doc(constraints=["rounds > 0", text]))
    one_error(*check(capsys, path), str(path), f"{node} is not allowed", text)


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_reserved_axis_names_are_refused(capsys, tmp_path, name):
    path = write(tmp_path, doc(axes=[{"name": name, "path": "workload.fl.rounds", "values": [1, 2]}]))
    one_error(*check(capsys, path), str(path), f"axis names {name} are reserved for the result columns")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty (expected a YAML mapping)"),
        (b"# only a comment\n", "the file is empty"),
        (b"- sweep: t\n", "expected a mapping at the top level (got list)"),
        (b"just text\n", "expected a mapping at the top level (got str)"),
        (b"sweep: [\n", "not valid YAML"),
        (bytes(range(256)) * 8, "not UTF-8 text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "not UTF-8 text"),
        (b"sweep: a\x00b\n", "character U+0000 is not allowed"),
    ],
    ids=["empty", "comment-only", "list", "scalar", "unclosed", "binary", "png", "nul"],
)
def test_a_file_that_is_no_sweep_mapping_is_one_line(capsys, tmp_path, content, expected):
    path = write(tmp_path, content)
    one_error(*check(capsys, path), str(path), expected)


def test_a_directory_or_a_missing_file_is_one_line(capsys, tmp_path):
    one_error(*check(capsys, tmp_path), str(tmp_path), "is a directory, not a file")
    one_error(*check(capsys, tmp_path / "nope.yaml"), "nope.yaml: cannot read file")


def test_the_example_and_a_relative_scenario_check(capsys, tmp_path):
    code, out, err = check(capsys, EXAMPLE)
    assert code == 0, err
    assert "ok — 28 points of 28 designed (grid); 3 replications each" in out
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", doc(scenario="../" * len(tmp_path.parts) + str(PAPER).lstrip("/")))
    code, out, err = check(capsys, path)
    assert code == 0 and "ok — 2 points of 2 designed (grid)" in out, err


def test_a_grid_of_a_million_points_is_allowed_and_one_more_value_is_not():
    axis = {"path": "workload.fl.rounds", "range": {"low": 1, "high": 1000, "num": 1000}}
    ok = spec_of(axes=[{**axis, "name": "a"}, {**axis, "name": "b"}])
    assert math.prod(len(a.choices(True) or []) for a in ok.axes) == MAX_POINTS
    with pytest.raises(ValueError, match="the grid has 2,000,000 points"):
        spec_of(axes=[{**axis, "name": "a"}, {**axis, "name": "b"}, {**ROUNDS, "name": "c"}])


# --- constraints that fail at a point, points that cannot be simulated ------------------------------------


@pytest.mark.parametrize(
    ("axes", "constraint", "expected"),
    [
        ([{"path": "workload.crypto.kem", "values": ["ML-KEM-512"]}], "kem - 1 > 0",
         "arithmetic needs numbers (got 'ML-KEM-512')"),
        ([ROUNDS], "rounds < 'a'", "'<' not supported between instances of 'int' and 'str'"),
        ([ROUNDS], "rounds / 0 > 1", "division by zero"),
        ([ROUNDS], "rounds in 5", "argument of type 'int' is not iterable"),
        ([ROUNDS], "rounds * 1.0 * " + "9" * 400 + " > 1", "int too large to convert to float"),
    ],
    ids=["string-minus-number", "int-below-string", "division-by-zero", "in-a-number", "overflow"],
)  # fmt: skip
def test_a_constraint_failing_at_a_point_is_one_line(capsys, tmp_path, axes, constraint, expected):
    path = write(tmp_path, doc(axes=axes, constraints=[constraint]))
    line = one_error(*check(capsys, path), expected)
    assert f"constraint {constraint!r} at {{" in line, line


def test_a_constraint_failing_at_a_point_names_the_file_and_field(capsys, tmp_path):
    path = write(tmp_path, doc(axes=[{"path": "workload.crypto.kem", "values": ["ML-KEM-512"]}],
                               constraints=["kem != 'x'", "kem - 1 > 0"]))  # fmt: skip
    one_error(*check(capsys, path), str(path), "constraints[1]")


def test_a_bad_fixed_override_names_the_sweep_file(capsys, tmp_path):
    path = write(tmp_path, doc(set=["workload.fl.rounds=["]))
    one_error(*check(capsys, path), str(path), "set")


def test_invalid_points_are_one_line_per_distinct_problem(capsys, tmp_path):
    kem = {"path": "workload.crypto.kem", "values": ["ML-KEM-512", "NOPE"]}
    path = write(tmp_path, doc(axes=[kem, MODE]))
    code, out, err = check(capsys, path)
    assert f"{path}: 2 of 4 points cannot be simulated" in err
    lines = point_errors(code, out, err, path)
    assert len(lines) == 1, lines
    assert lines[0].startswith("2 point(s), e.g. #2 kem=NOPE, mode=sequential: workload.crypto.kem: unknown kem "
                               "'NOPE' (known: ML-KEM-512, "), lines  # fmt: skip
    assert lines[0].endswith("(got 'NOPE')"), lines
    # two problems; a point with both reports its first (workload.fl comes before workload.crypto)
    clients = {"path": "workload.fl.clients", "values": [0, 2]}
    path = write(tmp_path, doc(axes=[clients, {**kem, "values": ["NOPE", "ML-KEM-512"]}, MODE]))
    code, out, err = check(capsys, path)
    lines = point_errors(code, out, err, path)
    assert f"{path}: 6 of 8 points cannot be simulated" in err
    assert len(lines) == 2, lines
    assert lines[0].startswith("4 point(s), e.g. #0 clients=0, kem=NOPE, mode=sequential: workload.fl.clients: "
                               "Input should be greater than or equal to 1 (got 0)"), lines  # fmt: skip
    assert lines[1].startswith("2 point(s), e.g. #4 clients=2, kem=NOPE, mode=sequential: workload.crypto.kem: "
                               "unknown kem 'NOPE'"), lines  # fmt: skip


def test_a_clients_range_through_0_names_each_problem_and_its_first_point(capsys, tmp_path):
    clients = {"path": "workload.fl.clients", "range": {"low": 0, "high": 2, "num": 3, "integer": True}}
    path = write(tmp_path, doc(axes=[clients, MODE]))
    code, out, err = check(capsys, path)
    assert point_errors(code, out, err, path) == [
        "2 point(s), e.g. #0 clients=0, mode=sequential: workload.fl.clients: Input should be greater than or "
        "equal to 1 (got 0)",
        "2 point(s), e.g. #2 clients=1, mode=sequential: workload.fl.clients: but deployment has 2 client pods (got 1)",
    ]


def test_one_problem_over_many_values_is_one_line(capsys, tmp_path):
    clients = {"path": "workload.fl.clients", "range": {"low": 3, "high": 100, "integer": True}}
    path = write(tmp_path, doc(design="random", size=30, axes=[clients]))
    code, out, err = check(capsys, path)
    lines = point_errors(code, out, err, path)
    assert len(lines) == 1 and lines[0].startswith("30 point(s), e.g. #0 "), lines


def test_a_levels_bad_override_is_named(capsys, tmp_path):
    path = write(tmp_path, doc(axes=[{"name": "x", "levels": [{"label": "a", "set": ["nope"]}]}]))
    code, out, err = check(capsys, path)
    lines = point_errors(code, out, err, path)
    assert len(lines) == 1 and "nope" in lines[0], lines


def test_a_range_across_the_floats_is_a_points_problem_not_a_crash(capsys, tmp_path):
    # a log grid to 1.8e308 overflowed in 10**x (an internal error, exit 1) before Range clamped its values
    axis = {"path": "run.horizon_s", "range": {"low": 1e-300, "high": 1.7976931348623157e308, "log": True, "num": 50}}
    path = write(tmp_path, doc(axes=[axis]))
    code, out, err = check(capsys, path)
    assert point_errors(code, out, err, path)  # horizons over a year: the points, not the program, are wrong
    assert all(math.isfinite(p["horizon_s"]) for p in design(load_sweep(path)[0]))


def test_all_points_skipped_is_one_line(capsys, tmp_path):
    path = write(tmp_path, doc(constraints=["rounds > 5"]))
    one_error(*check(capsys, path), str(path), "no point left to run (0 points of 2 designed (grid), 2 skipped")


# --- 2a. the constraint language --------------------------------------------------------------------------

ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare,
           ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, ast.Eq, ast.NotEq, ast.Lt, ast.LtE,
           ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod)  # fmt: skip
NAMES = {"x", "y"}
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.lists(st.integers(-3, 3) | st.text(max_size=2), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
constants = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.binary(max_size=3),
    st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False),
    st.just(...),
)
leaves = st.one_of(
    st.sampled_from(["x", "y", "true", "false", "z", "print"]).map(lambda n: ast.Name(n, ast.Load())),
    constants.map(ast.Constant),
)
OPERATORS = [ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Pow, ast.FloorDiv, ast.LShift, ast.BitOr, ast.MatMult]
COMPARISONS = [ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot]


def _compound(kids: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
    return st.one_of(
        st.builds(lambda a, op, b: ast.BinOp(a, op(), b), kids, st.sampled_from(OPERATORS), kids),
        st.builds(lambda op, a: ast.UnaryOp(op(), a), st.sampled_from([ast.Not, ast.USub, ast.UAdd, ast.Invert]), kids),
        st.builds(lambda op, xs: ast.BoolOp(op(), xs), st.sampled_from([ast.And, ast.Or]),
                  st.lists(kids, min_size=2, max_size=3)),
        st.builds(lambda a, ops, bs: ast.Compare(a, [o() for o in ops[: len(bs)]], bs[: len(ops)]), kids,
                  st.lists(st.sampled_from(COMPARISONS), min_size=1, max_size=3),
                  st.lists(kids, min_size=1, max_size=3)),
        st.lists(kids, max_size=3).map(lambda xs: ast.List(xs, ast.Load())),
        st.lists(kids, max_size=3).map(lambda xs: ast.Tuple(xs, ast.Load())),
        st.builds(lambda f, a: ast.Call(f, [a], []), leaves, kids),
        st.builds(lambda a: ast.Attribute(a, "real", ast.Load()), kids),
        st.builds(lambda a, i: ast.Subscript(a, i, ast.Load()), kids, kids),
        st.builds(lambda a, b, c: ast.IfExp(a, b, c), kids, kids, kids),
    )  # fmt: skip


expressions = st.recursive(leaves, _compound, max_leaves=12)


def _allowed(text: str) -> bool:
    """Whether the constraint language accepts ``text`` (its grammar, stated independently of spec.py)."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    return len(text) <= MAX_CONSTRAINT_CHARS and all(
        isinstance(n, ALLOWED) and (not isinstance(n, ast.Name) or n.id in NAMES | {"true", "false"})
        for n in ast.walk(tree)
    )


def _evaluate(text: str, env: dict[str, Any]) -> None:
    """Check and evaluate ``text``: ValueError at the check, UserError at the evaluation, or a bool."""
    try:
        tree = check_constraint(text, NAMES)
    except ValueError as exc:
        assert not _allowed(text), (text, exc)
        assert str(exc).startswith("constraint"), exc
        return
    assert _allowed(text), text
    try:
        assert isinstance(holds(tree, env, text), bool)
    except UserError as exc:
        assert len(exc.lines) == 1 and exc.lines[0].startswith(f"constraint {text!r} at "), exc.lines


@FAST
@pytest.mark.filterwarnings("error::SyntaxWarning")  # nothing Python only warns about reaches the user's console
@given(text=st.text(max_size=60) | st.text("xy tfrue 0123456789.e+-*/%<>=!()[],'\"andornotin", max_size=80),
       x=values, y=values)  # fmt: skip
def test_any_text_as_a_constraint_is_a_value_error_or_a_user_error(text, x, y):
    _evaluate(text, {"x": x, "y": y})


def test_a_constraint_python_only_warns_about_is_refused_in_one_line():
    with warnings.catch_warnings(record=True) as caught:  # as a user's console would show them
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"constraint 'x>1and y': not an expression \(invalid decimal literal"):
            check_constraint("x>1and y", {"x", "y"})
    assert not caught, [str(w.message) for w in caught]


@settings(max_examples=100, deadline=None)
@given(node=expressions, x=values, y=values)
def test_any_small_expression_is_accepted_exactly_by_the_grammar(node, x, y):
    text = ast.unparse(ast.fix_missing_locations(ast.Expression(node)))
    _evaluate(text, {"x": x, "y": y})


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("x >= 4 or y == 'sequential'", {"x": 2, "y": "sequential"}, True),
        ("x >= 4 or y == 'sequential'", {"x": 2, "y": "concurrent"}, False),
        ("1 < x <= 3", {"x": 3, "y": 0}, True),
        ("1 < x <= 3", {"x": 4, "y": 0}, False),
        ("x in [1, 2] and y not in ('a', 'b')", {"x": 2, "y": "c"}, True),
        ("x % 2 == 0 and -x < 0 and +x / 4 == 0.5", {"x": 2, "y": 0}, True),
        ("not x", {"x": 0, "y": 0}, True),
        ("true and not false", {"x": 0, "y": 0}, True),
        ("x * 2 - y > 3", {"x": 2.5, "y": 1}, True),
    ],
)
def test_constraints_mean_what_they_say(text, env, expected):
    assert holds(check_constraint(text, NAMES), env, text) is expected


# --- 2b. ranges -------------------------------------------------------------------------------------------

# subnormal numbers are refused by every model users write (sim/strict.py)
finite = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)
positive = st.floats(min_value=2.2250738585072014e-308, max_value=1.7976931348623157e308)


@st.composite
def ranges(draw: st.DrawFn, log: bool | None = None, integer: bool | None = None, num: bool = True) -> Range:
    log = draw(st.booleans()) if log is None else log
    a, b = draw(positive if log else finite), draw(positive if log else finite)
    lo, hi = min(a, b), max(a, b)
    assume(lo < hi)
    whole = math.floor(hi) >= math.ceil(lo)
    integer = (draw(st.booleans()) and whole) if integer is None else integer
    assume(whole or not integer)
    return Range(low=lo, high=hi, num=draw(st.integers(2, 1000)) if num else None, log=log, integer=integer)


@FAST
@given(r=ranges(integer=False))
@example(r=Range(low=0.0, high=8.98846567431158e307, num=4))  # (high - low) * 2 overflowed to inf
@example(r=Range(low=-1e308, high=1e308, num=5))  # high - low overflows
@example(r=Range(low=1e-300, high=1.7976931348623157e308, num=1000, log=True))  # 10**x overflowed
def test_a_grid_spans_its_range_from_end_to_end(r):
    g = r.grid()
    assert len(g) == r.num
    assert g[0] == r.low and g[-1] == r.high
    assert g == sorted(g)
    assert all(r.low <= v <= r.high for v in g)


@FAST
@given(r=ranges(integer=True))
def test_an_integer_grid_is_whole_numbers_from_end_to_end(r):
    g = r.grid()
    assert all(isinstance(v, int) for v in g)
    assert g[0] == math.ceil(r.low) and g[-1] == math.floor(r.high)
    assert g == sorted(set(g))  # strictly increasing: no value twice
    assert len(g) <= r.num


@FAST
@given(r=ranges(num=False), u=st.floats(0, 1, exclude_max=True))
@example(r=Range(low=-9.9792015476736e291, high=1.7976931348623157e308), u=0.0)  # was nan
@example(r=Range(low=1.0, high=1.7976931348623157e308, log=True), u=0.9999999999999999)  # 10**x overflowed
def test_a_value_at_a_quantile_is_in_the_range(r, u):
    v = r.at(u)
    if r.integer:
        assert isinstance(v, int) and math.ceil(r.low) <= v <= math.floor(r.high)
    else:
        assert r.low <= v <= r.high


# --- 2c-d. designs ----------------------------------------------------------------------------------------


def _u(axis_range: Range, v: float) -> float:
    """The quantile a value of a (continuous) range was drawn at."""
    if axis_range.log:
        return math.log(v / axis_range.low) / math.log(axis_range.high / axis_range.low)
    return (v - axis_range.low) / (axis_range.high - axis_range.low)


moderate = st.floats(-1e6, 1e6).map(lambda v: round(v, 3))


@st.composite
def lhs_specs(draw: st.DrawFn) -> SweepSpec:
    n = draw(st.integers(1, 40))
    lo = draw(moderate)
    width = draw(st.floats(1.0, 1e6))
    log_lo = draw(st.floats(1e-6, 1e3))
    log_hi = log_lo * draw(st.floats(1.5, 1e6))
    axes = [
        {"name": "lin", "path": "a.b", "range": {"low": lo, "high": lo + width}},
        {"name": "lg", "path": "a.c", "range": {"low": log_lo, "high": log_hi, "log": True}},
    ]
    return spec_of(design="lhs", size=n, seed=draw(st.integers(0, MAX_SEED)), axes=axes)


@FAST
@given(spec=lhs_specs())
def test_a_latin_hypercube_uses_each_stratum_of_every_range_once(spec):
    points = design(spec)
    n = spec.size
    assert len(points) == n
    for axis in spec.axes:
        assert axis.range is not None
        strata = sorted(min(int(_u(axis.range, p[axis.key]) * n), n - 1) for p in points)
        assert strata == list(range(n)), (axis.key, strata)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(1, 8), seed=st.integers(0, MAX_SEED))
@example(n=5, k=3, seed=10)
def test_a_latin_hypercube_balances_the_levels_of_a_values_axis(n, k, seed):
    spec = spec_of(design="lhs", size=n, seed=seed, axes=[{"name": "v", "path": "a.b", "values": list(range(k))}])
    counts = Counter(p["v"] for p in design(spec))
    assert all(n // k <= counts[level] <= -(-n // k) for level in range(k)), counts


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["random", "lhs"]),
    n=st.integers(2, 30),
    seeds=st.sets(st.integers(0, MAX_SEED), min_size=2, max_size=2),
)
def test_designs_are_reproducible_and_follow_the_seed(kind, n, seeds):
    axes = [{"path": "run.horizon_s", "range": {"low": 1, "high": 100}}, {**MODE, "name": "mode"}]
    a, b = (spec_of(design=kind, size=n, seed=s, axes=axes) for s in sorted(seeds))
    assert design(a) == design(spec_of(design=kind, size=n, seed=a.seed, axes=axes))
    assert [p["horizon_s"] for p in design(a)] != [p["horizon_s"] for p in design(b)]
    assert all(1 <= p["horizon_s"] <= 100 and p["mode"] in ("sequential", "concurrent") for p in design(a))


def test_a_grid_is_every_combination_in_order_whatever_the_seed():
    axes = [ROUNDS, MODE]
    expected = [{"rounds": r, "mode": m} for r in (1, 2) for m in ("sequential", "concurrent")]
    assert design(spec_of(axes=axes, seed=1)) == design(spec_of(axes=axes, seed=99)) == expected


# --- 2e. seeds --------------------------------------------------------------------------------------------


@FAST
@given(seed=st.integers(0, MAX_SEED), n=st.integers(1, 200))
def test_independent_seeds_are_distinct_reproducible_and_by_position(seed, n):
    spec = spec_of(seed=seed, seeds="independent")
    seeds = point_seeds(spec, n)
    assert len(set(seeds)) == n
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert point_seeds(spec_of(seed=seed, seeds="independent"), n) == seeds
    assert point_seeds(spec, n + 3)[:n] == seeds  # a point's seed is its place in the design's
    assert point_seeds(spec_of(seed=seed), n) == [seed] * n


def test_a_plan_records_each_points_seed(tmp_path):
    axes = [{**ROUNDS, "values": [1, 2, 3]}, MODE]
    common = planned(tmp_path, seed=7, axes=axes)
    assert [p.seed for p in common.points] == [7] * 6
    independent = planned(tmp_path, seed=7, seeds="independent", axes=axes)
    seeds = [p.seed for p in independent.points]
    assert len(set(seeds)) == 6 and 7 not in seeds
    assert seeds == point_seeds(independent.spec, 6)
    assert [p.seed for p in planned(tmp_path, seed=7, seeds="independent", axes=axes).points] == seeds
    # a constraint skips points without moving the others' seeds (nor their hashes)
    some = planned(tmp_path, seed=7, seeds="independent", axes=axes, constraints=["rounds != 2"])
    kept = {p.index: (p.seed, p.hash) for p in some.points}
    assert kept == {p.index: (p.seed, p.hash) for p in independent.points if p.values["rounds"] != 2}


# --- 3. plans ---------------------------------------------------------------------------------------------


def test_constraints_skip_exactly_the_points_they_are_false_at(tmp_path):
    axes = [{**ROUNDS, "values": [1, 2, 3, 4]}, MODE]
    p = planned(tmp_path, axes=axes, constraints=["rounds >= 3 or mode == 'sequential'", "rounds != 4"])
    assert (p.designed, p.skipped, len(p.points), p.duplicates, p.invalid) == (8, 4, 4, 0, {})
    assert [(pt.values["rounds"], pt.values["mode"]) for pt in p.points] == [
        (1, "sequential"), (2, "sequential"), (3, "sequential"), (3, "concurrent")]  # fmt: skip
    assert [pt.index for pt in p.points] == [0, 2, 4, 5]
    assert all(pt.scenario is not None and pt.scenario.workload.fl.rounds == pt.values["rounds"] for pt in p.points)


def test_level_values_are_what_constraints_compare(tmp_path):
    levels = {"name": "size", "levels": [
        {"label": "small", "value": 1, "set": ["workload.fl.model_parameters=1000"]},
        {"label": "large", "value": 100, "set": ["workload.fl.model_parameters=100000"]}]}  # fmt: skip
    p = planned(tmp_path, axes=[levels, ROUNDS], constraints=["size * rounds < 100"])
    assert [pt.values for pt in p.points] == [{"size": "small", "rounds": 1}, {"size": "small", "rounds": 2}]
    assert p.skipped == 2
    assert {pt.scenario.workload.fl.model_parameters for pt in p.points if pt.scenario} == {1000}


def test_a_random_design_drawn_twice_with_common_seeds_runs_once(tmp_path):
    axes = [ROUNDS, MODE]  # 4 distinct points
    p = planned(tmp_path, design="random", size=40, axes=axes)
    distinct = {tuple(v.items()) for v in design(p.spec)}
    assert len(p.points) == len(distinct) == 4
    assert p.duplicates == 40 - 4 and p.designed == 40 and p.skipped == 0
    assert len({pt.hash for pt in p.points}) == 4
    assert [pt.index for pt in p.points] == sorted(pt.index for pt in p.points)
    # with a seed each, the same values are different runs
    p = planned(tmp_path, design="random", size=40, axes=axes, seeds="independent")
    assert len(p.points) == 40 and p.duplicates == 0


def _hashes(tmp_path: Path, **fields: Any) -> list[str]:
    return [p.hash for p in planned(tmp_path, **fields).points]


def test_a_points_hash_covers_scenario_seed_replications_and_kpis_only(tmp_path):
    axes = [ROUNDS, MODE]
    base = _hashes(tmp_path, axes=axes)
    assert len(set(base)) == 4 and all(len(h) == 20 for h in base)
    # what the results do not depend on
    assert _hashes(tmp_path, axes=axes) == base
    assert _hashes(tmp_path, axes=axes, sweep="other", description="words") == base
    assert _hashes(tmp_path, axes=[{**ROUNDS, "name": "r", "title": "FL rounds"}, {**MODE, "name": "m"}]) == base
    assert _hashes(tmp_path, axes=axes, constraints=["rounds > 0"]) == base
    assert _hashes(tmp_path, axes=axes, set=["workload.fl.clients=2"]) == base  # the base scenario's own value
    suite = {"name": "mode", "levels": [{"label": "seq", "set": ["workload.processing.mode=sequential"]},
                                        {"label": "conc", "set": ["workload.processing.mode=concurrent"]}]}  # fmt: skip
    assert _hashes(tmp_path, axes=[ROUNDS, suite]) == base  # the same scenarios, reached by levels
    # what they do depend on
    changed = [
        _hashes(tmp_path, axes=axes, set=["workload.fl.model_parameters=1000"]),
        _hashes(tmp_path, axes=axes, set=["deployment.hosts.pi-1.profile=pi4-liboqs"]),
        _hashes(tmp_path, axes=axes, seed=2),
        _hashes(tmp_path, axes=axes, replications=2),
        _hashes(tmp_path, axes=axes, kpis=["round_latency_s.*"]),
        _hashes(tmp_path, axes=axes, kpis=["round_latency_s.*", "crypto_share"]),
    ]
    for hashes in changed:
        assert len(hashes) == 4 and not set(hashes) & set(base), hashes
    assert len({h for hashes in changed for h in hashes}) == 4 * len(changed)


def _same_scenarios(p: Plan) -> None:
    """Every point's overrides, applied as ``pqtwin sim --set`` applies them, give the plan's scenario."""
    assert p.points
    for pt in p.points:
        assert pt.scenario is not None
        assert load_scenario(p.scenario_path, list(pt.overrides)).model_dump() == pt.scenario.model_dump(), pt


def test_a_points_overrides_rebuild_its_scenario(tmp_path):
    spec, scenario = load_sweep(EXAMPLE)
    p = plan(spec, scenario, estimate=False)
    assert len(p.points) == 28
    assert all(pt.overrides[0] == "workload.fl.rounds=5" for pt in p.points)
    _same_scenarios(p)
    liboqs = "pi4-liboqs"
    axes = [
        {"path": "deployment.network.links.0.latency_s", "range": {"low": 1e-6, "high": 1e-3, "log": True}},
        {"path": "workload.fl.model_parameters", "range": {"low": 1e3, "high": 1e6, "integer": True, "log": True}},
        {"name": "host", "path": "deployment.hosts.pi-2", "values": [{"name": "pi-2", "cores": 2, "profile": liboqs}]},
        {"path": "workload.crypto.rekey", "values": [{"fl": "per_session", "device_interval_s": None}]},
    ]
    _same_scenarios(planned(tmp_path, design="lhs", size=12, axes=axes, set=["run.horizon_s=100"]))


# text as a user file may hold it: no control character but line breaks and tabs (sim/strict.py refuses the rest)
PLAIN = st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: c in "\t\n\r" or not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(PLAIN, max_size=12), min_size=1, max_size=3, unique=True),
       horizons=st.lists(st.floats(1e-6, 3e7), min_size=1, max_size=3, unique=True))  # fmt: skip
@example(texts=["ECG 🫀 ward"], horizons=[5e-05])  # JSON's "\ud83e\udec0" and 5e-05 are no such values to --set
def test_any_values_given_by_overrides_rebuild_the_scenario(tmp_path, texts, horizons):
    axes = [{"path": "description", "values": texts}, {"path": "run.horizon_s", "values": horizons}]
    p = planned(tmp_path, axes=axes)
    assert len(p.points) == len(texts) * len(horizons) and not p.invalid
    _same_scenarios(p)
    for pt in p.points:  # each override's text reads back as its value, type included ('5e-05' is text to YAML)
        for item, value in zip(pt.overrides, (pt.values["description"], pt.values["horizon_s"]), strict=True):
            back = parse_value(item.split("=", 1)[1], "--set")
            assert back == value and type(back) is type(value), (item, value, back)
