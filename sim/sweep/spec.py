"""Sweep files (``sweeps/*.yaml``): a base scenario, axes over any of its fields, a design, replications, a seed.

An axis is one of three kinds, each giving its points a *value* (a Parquet column named after the axis):

- ``path`` + ``values``: the listed values of one scenario field (``workload.crypto.kem: [ML-KEM-512, …]``);
- ``path`` + ``range``: numbers from ``low`` to ``high`` (``num`` evenly spaced for a grid, log-spaced with
  ``log: true``, whole numbers with ``integer: true``; random and Latin-hypercube designs draw from the range);
- ``levels``: named sets of ``--set`` overrides, for choices that touch several fields (a suite, a worker layout).

``design`` is ``grid`` (every combination), ``random`` (``size`` points, each axis drawn uniformly) or ``lhs``
(a Latin hypercube of ``size`` points: every axis' range cut into ``size`` strata, each used once).
``constraints`` are expressions over the axis names (``clients >= 4 or mode == 'sequential'``); a point runs
only where all of them are true. ``kpis`` are patterns (``round_latency_s.*``) over the flattened columns of
``summary.json``; by default every numeric KPI is kept. ``seeds: common`` (default) gives every point the root
seed, so replication *r* of every point shares its random streams (common random numbers: differences between
points are not drowned in noise); ``independent`` spawns one seed per point from the root
(``SeedSequence(root).spawn``). Every point's seed is recorded beside its results.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, JsonValue, ValidationInfo, field_validator, model_validator

from sim.errors import UserError, load_yaml, show, validate
from sim.scenario import MAX_REPLICATIONS, MAX_SEED, base_scenario
from sim.strict import StrictModel

MAX_AXES = 32
MAX_VALUES = 1_000  # of one axis
MAX_POINTS = 1_000_000  # of a sweep (a design, before constraints)
AXIS_NAME = r"^[a-z][a-z0-9_]{0,39}$"
# columns every row has; an axis may not take these names (nor a KPI's first part)
RESERVED = frozenset({"point", "replication", "seed", "hash", "error", "error_kind", "replications", "events",
                      "sim_time_s", "rounds_completed", "rounds_failed", "crypto_share", "retransmissions",
                      "initial_accuracy", "true", "false"})  # fmt: skip


_Strict = StrictModel


class Range(_Strict):
    low: float
    high: float
    num: int | None = Field(default=None, ge=2, le=MAX_VALUES)  # grid: how many values
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low must be below high (got low {self.low:g}, high {self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g})")
        if self.integer and math.floor(self.high) < math.ceil(self.low):
            raise ValueError(f"no whole number between {self.low:g} and {self.high:g}")
        return self

    def grid(self) -> list[float | int]:
        """``num`` values from low to high, both ends included (log-spaced with ``log``)."""
        assert self.num is not None
        values = [self._value(i / (self.num - 1)) for i in range(self.num)]
        values[0], values[-1] = self.low, self.high  # exact ends, not 10**log10(x)
        return _dedupe([self.whole(v) for v in values]) if self.integer else values

    def at(self, u: float) -> float | int:
        """The value at quantile ``u`` in [0, 1) of the range (uniform, or log-uniform with ``log``)."""
        v = self._value(u)
        return self.whole(v) if self.integer else v

    def _value(self, t: float) -> float:
        """The value a fraction ``t`` in [0, 1] along the range, within [low, high] (no overflow where the range
        spans most of the floats: high - low or 10**x past 1.8e308)."""
        if not self.log:
            return _between(self.low, self.high, t)
        try:
            v = 10 ** _between(math.log10(self.low), math.log10(self.high), t)
        except OverflowError:
            v = self.high
        return min(max(v, self.low), self.high)

    def whole(self, v: float) -> int:
        return int(min(max(round(v), math.ceil(self.low)), math.floor(self.high)))


def _between(lo: float, hi: float, t: float) -> float:
    """lo + t (hi - lo) within [lo, hi], also where hi - lo overflows."""
    v = lo + (hi - lo) * t if math.isfinite(hi - lo) else lo * (1 - t) + hi * t
    return min(max(v, lo), hi)


def _dedupe(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


class Level(_Strict):
    label: str = Field(min_length=1, max_length=80)
    set: list[str] = Field(default=[], max_length=64)  # --set overrides; [] = the base scenario's choice
    value: float | None = None  # a numeric position (main-effect plots, constraints); default: the label


class Axis(_Strict):
    name: str | None = Field(default=None, pattern=AXIS_NAME)  # default: the path's last part
    title: str | None = Field(default=None, max_length=80)
    path: str | None = Field(default=None, min_length=1, max_length=300)
    values: list[JsonValue] | None = Field(default=None, min_length=1, max_length=MAX_VALUES)
    range: Range | None = None
    levels: list[Level] | None = Field(default=None, min_length=1, max_length=MAX_VALUES)

    @model_validator(mode="after")
    def _one_kind(self, info: ValidationInfo) -> Axis:
        kinds = [k for k in ("values", "range", "levels") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give one of values, range or levels (got {', '.join(kinds) or 'none'})")
        if (self.path is None) != (self.levels is not None):
            raise ValueError("values and range need a path; levels carry their own --set overrides, not a path")
        if self.name is None and self.path is not None and not _is_name(self.path.split(".")[-1]):
            raise ValueError(f"give the axis a name (the path's last part {self.path.split('.')[-1]!r} is not one)")
        if self.name is None and self.path is None:
            raise ValueError("a levels axis needs a name")
        for text in ([self.path] if self.path else []) + [s for lv in self.levels or [] for s in lv.set]:
            if (field := _sweeps_own(text)) is not None and not _stored(info):
                raise ValueError(f"{field} is the sweep's own (its seed, seeds and replications set it for every "
                                 "point): a sweep cannot vary it")  # fmt: skip
        for items, what in ((self.values, "values"), ([lv.label for lv in self.levels or []], "level labels")):
            keys = [json.dumps(v, sort_keys=True) for v in items or []]
            if len(set(keys)) != len(keys):
                raise ValueError(f"duplicate {what}: {show(items)}")
        return self

    @property
    def key(self) -> str:
        """The axis' column name."""
        return self.name or (self.path or "").split(".")[-1]

    @property
    def label(self) -> str:
        return self.title or self.path or self.key

    @property
    def numeric(self) -> bool:
        """Whether its values are numbers (a continuous main-effect plot, arithmetic in constraints)."""
        if self.range is not None:
            return True
        if self.levels is not None:
            return all(lv.value is not None for lv in self.levels)
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values or [])

    def choices(self, grid: bool) -> list[Any] | None:
        """The discrete values of the axis (None: a range drawn continuously by random and LHS designs)."""
        if self.values is not None:
            return list(self.values)
        if self.levels is not None:
            return [lv.label for lv in self.levels]
        assert self.range is not None
        return self.range.grid() if grid or self.range.num is not None else None

    def overrides(self, value: Any) -> list[str]:
        """The --set overrides that give a point this axis' value."""
        if self.levels is not None:
            return list(next(lv for lv in self.levels if lv.label == value).set)
        return [f"{self.path}={_literal(value)}"]

    def column(self, value: Any) -> Any:
        """The value as its result column stores it: one type per column (text where the values mix types)."""
        if self.levels is not None or isinstance(value, str):
            return value
        kinds = {type(v) if not isinstance(v, int | float) or isinstance(v, bool) else float for v in self.values or []}
        if self.range is not None or (len(kinds) == 1 and kinds <= {float, bool}):
            return value
        return json.dumps(value, sort_keys=True)

    def position(self, value: Any) -> Any:
        """The value as constraints and plots see it: a level's ``value`` where it has one, else the value."""
        if self.levels is not None:
            lv = next(lv for lv in self.levels if lv.label == value)
            return lv.value if lv.value is not None else lv.label
        return value


def _literal(value: Any) -> str:
    """``value`` as ``--set`` text that reads back as the same value: JSON, except where the ``--set`` reader
    (YAML 1.1) reads JSON otherwise: ``1e-05`` is text to it, and ``\\ud83d\\ude00`` pairs are no character."""
    text = json.dumps(value)
    if not re.search(r"\de[-+]|\\ud[89ab]", text):
        return text
    import yaml

    dumped: str = yaml.safe_dump(value, default_flow_style=True, allow_unicode=False, width=1 << 30, sort_keys=False)
    return dumped.removesuffix("\n...\n").removesuffix("\n")


# fields every point's run gets from the sweep itself: an axis or a set over them was silently overridden
SWEEPS_OWN = ("run.seed", "run.replications")


def _sweeps_own(override: str) -> str | None:
    """The sweep-controlled field an override (``path`` or ``path=value``) sets, or None."""
    path = override.split("=", 1)[0].strip()
    return path if path in SWEEPS_OWN else None


STORED = {"stored": True}  # validation context of a sweep.json this or an older version wrote (``_stored``)


def _stored(info: ValidationInfo) -> bool:
    """Whether the spec being validated is a stored one: checks added later refuse new sweep files, not the result
    directories of sweeps that ran before them (their report and resume must still read them)."""
    return bool(info.context and info.context.get("stored"))


def _may_match(pattern: str, fields: list[str]) -> bool:
    """Whether a KPI pattern can match a column: its first part matches a summary field, or, where that part holds a
    ``*`` (which also matches the dots after it: ``energy*j``), a field starts as the part does before it."""
    head = pattern.split(".", 1)[0]
    if "*" in head:
        return any(f.startswith(head.split("*", 1)[0]) for f in fields)
    return any(fnmatch.fnmatchcase(f, head) for f in fields)


def _summary_fields() -> list[str]:
    """The summary's top-level fields a KPI pattern's first part can match (``sim.sweep.point.kpis``)."""
    from sim.contract import Summary
    from sim.sweep.point import NOT_KPIS

    return sorted(set(Summary.model_fields) - NOT_KPIS)


def _is_name(text: str) -> bool:
    return re.fullmatch(AXIS_NAME, text) is not None


class SweepSpec(_Strict):
    sweep: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = Field(default="", max_length=10_000)
    scenario: str = Field(min_length=1, max_length=4_096)  # the base scenario, relative to the sweep file
    set: list[str] = Field(default=[], max_length=256)  # overrides every point gets (before the axes')
    design: Literal["grid", "random", "lhs"] = "grid"
    size: int | None = Field(default=None, ge=1, le=MAX_POINTS)  # random and lhs: how many points
    replications: int = Field(default=3, ge=1, le=MAX_REPLICATIONS)
    seed: int = Field(default=1, ge=0, le=MAX_SEED)
    seeds: Literal["common", "independent"] = "common"
    axes: list[Axis] = Field(min_length=1, max_length=MAX_AXES)
    constraints: list[str] = Field(default=[], max_length=64)
    kpis: list[str] = Field(default=[], max_length=256)  # fnmatch patterns over summary columns; [] = all

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        names = [a.key for a in self.axes]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"duplicate axis names: {', '.join(dup)} (give each axis its own name)")
        if bad := sorted(set(names) & RESERVED):
            raise ValueError(f"axis names {', '.join(bad)} are reserved for the result columns: name the axis")
        if self.design == "grid":
            if self.size is not None:
                raise ValueError("size is for random and lhs designs; a grid has every combination")
            if open_ := [a.key for a in self.axes if a.range is not None and a.range.num is None]:
                raise ValueError(f"a grid needs range.num (how many values) for axis {', '.join(open_)}")
            if (n := math.prod(len(a.choices(True) or []) for a in self.axes)) > MAX_POINTS:
                raise ValueError(f"the grid has {n:,} points; at most {MAX_POINTS:,} per sweep")
        elif self.size is None:
            raise ValueError(f"a {self.design} design needs size (how many points)")
        for text in self.constraints:
            check_constraint(text, {a.key for a in self.axes})
        return self

    @field_validator("set")
    @classmethod
    def _not_the_sweeps_own(cls, sets: list[str], info: ValidationInfo) -> list[str]:
        for text in [] if _stored(info) else sets:
            if (field := _sweeps_own(text)) is not None:
                raise ValueError(f"{field} is the sweep's own: give it as the sweep's seed or replications")
        return sets

    @field_validator("kpis")
    @classmethod
    def _matching(cls, patterns: list[str], info: ValidationInfo) -> list[str]:
        """A pattern whose first part matches no summary field keeps no column: the sweep ran with none."""
        fields = _summary_fields()
        for i, pattern in enumerate([] if _stored(info) else patterns):
            if not _may_match(pattern, fields):
                raise ValueError(f"item {i}, {show(pattern)}, matches no summary column (their first parts: "
                                 f"{', '.join(fields[:10])}, ...)")  # fmt: skip
        return patterns

    def axis(self, name: str) -> Axis:
        return next(a for a in self.axes if a.key == name)


def load_sweep(path: Path) -> tuple[SweepSpec, Path]:
    """The sweep file and its base scenario's path; UserError lines on any problem."""
    spec = validate(SweepSpec, load_yaml(path), path)
    return spec, base_scenario(path, spec.scenario)


# --- constraints: a small, safe expression language over the axis names ----------------------------------

_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Mod: lambda a, b: a % b,
}
MAX_CONSTRAINT_CHARS = 500


def check_constraint(text: str, names: set[str]) -> ast.Expression:
    """Parse a constraint; ValueError naming what is wrong (syntax, an unknown name, a construct not allowed)."""
    if len(text) > MAX_CONSTRAINT_CHARS:
        raise ValueError(f"constraint of {len(text)} characters; at most {MAX_CONSTRAINT_CHARS}")
    try:
        with warnings.catch_warnings():  # what Python only warns about on stderr ("1and x"): a SyntaxError here
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"constraint {text!r}: not an expression ({exc.msg})") from None
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare,
               ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, *_CMP, *_ARITH)  # fmt: skip
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ValueError(f"constraint {text!r}: {type(node).__name__} is not allowed (comparisons, and/or/not, "
                             "+ - * / % over axis names, numbers and strings)")  # fmt: skip
        if isinstance(node, ast.Name) and node.id not in names and node.id not in ("true", "false"):
            raise ValueError(f"constraint {text!r}: no axis named {node.id!r} (axes: {', '.join(sorted(names))})")
    return tree


def holds(tree: ast.Expression, values: dict[str, Any], text: str) -> bool:
    """Evaluate a checked constraint at a point; UserError for a type mismatch (e.g. a string minus a number)."""
    try:
        return bool(_eval(tree.body, values))
    except (TypeError, ZeroDivisionError, OverflowError) as exc:
        raise UserError(f"constraint {text!r} at {show(values, 200)}: {exc}") from None


def _eval(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return {"true": True, "false": False}.get(node.id, env.get(node.id))
    if isinstance(node, ast.Tuple | ast.List):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        parts = (_eval(v, env) for v in node.values)
        return all(parts) if isinstance(node.op, ast.And) else any(parts)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return not v if isinstance(node.op, ast.Not) else _number(v) * (-1 if isinstance(node.op, ast.USub) else 1)
    if isinstance(node, ast.BinOp):
        return _ARITH[type(node.op)](_number(_eval(node.left, env)), _number(_eval(node.right, env)))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, env)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    raise TypeError(f"{type(node).__name__} is not allowed")


def _number(v: Any) -> float:
    """Arithmetic on numbers only (no 'x' * 10**9 strings)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"arithmetic needs numbers (got {show(v)})")
    return v
