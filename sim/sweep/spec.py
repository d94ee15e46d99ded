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
import difflib
import fnmatch
import functools
import json
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, JsonValue, ValidationInfo, field_validator, model_validator

from sim.errors import UserError, load_yaml, shorten, show, validate
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
        if not _stored(info):
            self._not_the_sweeps_own()
        for items, what in ((self.values, "values"), ([lv.label for lv in self.levels or []], "level labels")):
            keys = [json.dumps(v, sort_keys=True) for v in items or []]
            if len(set(keys)) != len(keys):
                raise ValueError(f"duplicate {what}: {show(items)}")
        return self

    def _not_the_sweeps_own(self) -> None:
        """ValueError naming the axis, its path or level and the field, where it sets one the sweep sets itself."""
        where, field = "", None
        if self.path is not None:
            field = _sweeps_own(self.path)
            where = f"path {self.path.strip()}"
            for v in self.values or []:
                if field is None and (field := _sweeps_own(self.path, v)) is not None:
                    where += f", value {show(v)},"
        for lv in self.levels or []:
            for text in lv.set:
                if field is None and (field := _set_owns(text)) is not None:
                    where = f"level {show(lv.label)}: set {show(text)}"
        if field is not None:
            raise ValueError(f"axis {self.key}: {where} sets {field}, {_OWN_WHY}")

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


# fields every point's run gets from the sweep itself (``sim.sweep.point.run_point`` passes the sweep's seed and
# replications to ``simulate``, over the scenario's): an axis or a set over them was silently overridden
SWEEPS_OWN = ("run.seed", "run.replications")
_UNSEEN = object()  # an override's value not known (a range axis': numbers)


def _sweeps_own(path: str, value: Any = _UNSEEN) -> str | None:
    """The sweep-controlled field an override of ``path`` with ``value`` sets, or None: one whose path is an owned
    field, or inside one, or a section holding one (``run``) whose value gives that field (``{seed: 5}``)."""
    parts = path.strip().split(".")
    for field in SWEEPS_OWN:
        own = field.split(".")
        if parts[: len(own)] == own:
            return field
        if own[: len(parts)] == parts:  # a section above the field: does the value reach down to it?
            node = value
            for part in own[len(parts) :]:
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
            else:
                return field
    return None


def _set_owns(text: str) -> str | None:
    """The sweep-controlled field a ``--set`` text (``path=value``) sets, or None (a value that does not parse is
    the point's problem, named where the plan applies it)."""
    from sim.loading import parse_value

    path, _, raw = text.partition("=")
    if (field := _sweeps_own(path)) is not None or not any(f.startswith(f"{path.strip()}.") for f in SWEEPS_OWN):
        return field  # (only a section above an owned field needs its value read)
    try:
        value = parse_value(raw, "--set")
    except UserError:
        return None
    return _sweeps_own(path, value)


_OWN_WHY = "the sweep's own (its seed, seeds and replications set it for every point): a sweep cannot vary it"


STORED = {"stored": True}  # validation context of a sweep.json this or an older version wrote (``_stored``)


def _stored(info: ValidationInfo) -> bool:
    """Whether the spec being validated is a stored one: checks added later refuse new sweep files, not the result
    directories of sweeps that ran before them (their report and resume must still read them)."""
    return bool(info.context and info.context.get("stored"))


# --- KPI patterns against the summary's columns ----------------------------------------------------------

MAX_KPI_CHARS = 200


def _kpi_problem(pattern: str) -> str | None:
    """Why a KPI pattern keeps no column of any summary, or None: it matches no column the summary's model has
    (``round_latency_s.mena``), or only some that are not numbers (``warnings``, ``engine.name``)."""
    schema = _kpi_schema()
    glob = _tokens(pattern)
    if any(numeric and _meet(glob, _tokens(name)) for name, numeric in schema):
        return None
    if text := [name for name, numeric in schema if not numeric and _meet(glob, _tokens(name))]:
        return f"matches only summary fields that are not numbers ({shorten(', '.join(text), 120)}): a KPI is a number"
    numbers = [name for name, numeric in schema if numeric]
    close = difflib.get_close_matches(pattern, numbers, n=3, cutoff=0.6)
    if not close:  # a mistyped first part: the closest first parts, or the first few
        heads = list(dict.fromkeys(n.split(".", 1)[0] for n in numbers))
        close = difflib.get_close_matches(pattern.split(".", 1)[0], heads, n=3, cutoff=0.6) or heads[:8]
        return f"matches no summary column (its KPIs start {', '.join(close)}, ...)"
    return f"matches no summary column (did you mean {' or '.join(close)}?)"


@functools.cache
def _kpi_schema() -> list[tuple[str, bool]]:
    from sim.sweep.point import kpi_schema

    return kpi_schema()


Keys = dict[str, set[str]]  # a mapping of the summary (``kpi_schema``'s name before a ``*``): its keys at the points


def needs_keys(pattern: str) -> bool:
    """Whether a pattern matches numeric summary columns only through a mapping's keys (``host_utilization.*``):
    whether it keeps one depends on the points' hosts, links, populations (``kpi_keys_problem``)."""
    glob = _tokens(pattern)
    return not any(numeric and "*" not in name and _meet(glob, _tokens(name)) for name, numeric in _kpi_schema())


def kpi_mappings(patterns: list[str]) -> frozenset[str]:
    """The mappings (``kpi_schema``'s names before a ``*``) whose keys decide what the patterns that
    ``needs_keys`` keep: the keys ``kpi_keys_problem`` needs of the points (none: no pattern depends on them)."""
    out: set[str] = set()
    for pattern in (p for p in patterns if needs_keys(p)):
        glob = _tokens(pattern)
        for name, numeric in _kpi_schema():
            if numeric and "*" in name and _meet(glob, _tokens(name)):
                parts = name.split(".*")
                out.update(".*".join(parts[:j]) for j in range(1, len(parts)))
    return frozenset(out)


def kpi_keys_problem(patterns: list[str], keys: Keys) -> str | None:
    """Why the KPI patterns keep no column of a sweep whose points' summaries have these ``keys``
    (``sim.sweep.point.kpi_keys``, over every point), or None: a pattern naming a key no point has
    (``host_utilization.pi-9.offered``), or patterns that all match only mappings no point fills. A ``*`` over a
    mapping that no point fills matches none of its (no) keys: such a pattern alone is no mistake (a list kept for
    any scenario: ``energy.devices.*.battery_life_days`` where no device has a power model)."""
    kept_any, empty = not patterns, []
    for i, pattern in enumerate(patterns):
        if not needs_keys(pattern):  # (the schema's check: it matches a column every summary has)
            kept_any = True
            continue
        kept, near, mappings = _at_points(pattern, keys)
        if kept is None:
            close = difflib.get_close_matches(pattern, near, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}?" if close else "; ".join(_has(m, keys) for m in mappings)
            return f"kpis: item {i}, {show(pattern)}, matches no column of this sweep's points ({shorten(hint, 300)})"
        kept_any = kept_any or kept
        empty += [] if kept else mappings
    if kept_any:
        return None
    what = "; ".join(_has(m, keys) for m in dict.fromkeys(empty))
    return f"kpis: {shorten(show(patterns), 120)} keep no column of this sweep's points ({shorten(what, 300)})"


def _at_points(pattern: str, keys: Keys) -> tuple[bool | None, list[str], list[str]]:
    """Whether the pattern keeps a column at the points (True), only matches mappings they leave empty (False) or
    none of their columns (None); the columns it might have meant and the mappings it reaches."""
    glob = _tokens(pattern)
    near: list[str] = []
    mappings: list[str] = []
    kept: bool | None = None
    for name, numeric in _kpi_schema():
        if not numeric or not _meet(glob, _tokens(name)):
            continue
        mappings.append(name.split(".*", 1)[0])
        for column, vacuous in _columns(name, keys):
            if _meet(glob, _tokens(column)):
                if not vacuous:
                    return True, [], []
                kept = False
            elif not vacuous:
                near.append(column)
    return kept, near, list(dict.fromkeys(mappings))


def _columns(name: str, keys: Keys) -> list[tuple[str, bool]]:
    """A schema name's columns at the points: each ``*`` replaced by each of its mapping's keys (left a ``*``
    where ``keys`` does not know the mapping); a mapping no point fills gives an empty key, which only a ``*``
    matches, and marks the column vacuous."""
    parts = name.split(".*")
    out = [(parts[0], False)]
    for j in range(1, len(parts)):
        given = keys.get(".*".join(parts[:j]))
        empty = given is not None and not given
        choices = ["*"] if given is None else [""] if empty else sorted(given)
        out = [(f"{text}.{k}{parts[j]}", vacuous or empty) for text, vacuous in out for k in choices]
    return out


def _has(mapping: str, keys: Keys) -> str:
    from sim.sweep.point import EMPTY_WHY

    if given := sorted(keys.get(mapping) or []):
        return f"{mapping} has {shorten(', '.join(given), 200)}"
    return f"{mapping} has none at any point" + (f": {EMPTY_WHY[mapping]}" if mapping in EMPTY_WHY else "")


Token = tuple[str, str]  # ("*", ""), ("?", ""), ("[", a bracket expression), ("c", a character)


def _tokens(glob: str) -> tuple[Token, ...]:
    """An fnmatch pattern's parts (as ``fnmatch.translate`` reads it: an unclosed ``[`` is a character)."""
    out: list[Token] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1][0] != "*":
                out.append(("*", ""))
        elif c == "?":
            out.append(("?", ""))
        elif c == "[":
            j = i + (i < n and glob[i] == "!")
            j += j < n and glob[j] == "]"
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(("c", "["))
            else:
                out.append(("[", glob[i - 1 : j + 1]))
                i = j + 1
        else:
            out.append(("c", c))
    return tuple(out)


def _one_char(a: Token, b: Token) -> bool:
    """Whether some character matches both ``a`` and ``b`` (neither a ``*``)."""
    if a[0] == "?" or b[0] == "?":
        return True
    if a[0] == "c" and b[0] == "c":
        return a[1] == b[1]
    if a[0] == "c" or b[0] == "c":
        char, cls = (a[1], b[1]) if a[0] == "c" else (b[1], a[1])
        return fnmatch.fnmatchcase(char, cls)
    chars = {chr(c) for c in range(32, 127)} | set(a[1] + b[1])
    return any(fnmatch.fnmatchcase(c, a[1]) and fnmatch.fnmatchcase(c, b[1]) for c in chars)


def _meet(a: tuple[Token, ...], b: tuple[Token, ...]) -> bool:
    """Whether some text matches both patterns (``*`` matches any text, dots too, as in fnmatch)."""
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        star_a = i < len(a) and a[i][0] == "*"
        star_b = j < len(b) and b[j][0] == "*"
        if star_a:
            todo.append((i + 1, j))  # it matches nothing more
            if j < len(b) and not star_b:
                todo.append((i, j + 1))  # it matches b's next character
        if star_b:
            todo.append((i, j + 1))
            if i < len(a) and not star_a:
                todo.append((i + 1, j))
        if i < len(a) and j < len(b) and not star_a and not star_b and _one_char(a[i], b[j]):
            todo.append((i + 1, j + 1))
    return False


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
            if (n := self.designed()) > MAX_POINTS:
                raise ValueError(f"the grid has {n:,} points; at most {MAX_POINTS:,} per sweep")
        elif self.size is None:
            raise ValueError(f"a {self.design} design needs size (how many points)")
        for text in self.constraints:
            check_constraint(text, {a.key for a in self.axes})
        return self

    @field_validator("set")
    @classmethod
    def _not_the_sweeps_own(cls, sets: list[str], info: ValidationInfo) -> list[str]:
        for i, text in enumerate([] if _stored(info) else sets):
            if (field := _set_owns(text)) is not None:
                raise ValueError(f"item {i}, {show(text)}, sets {field}, the sweep's own: give it as the sweep's "
                                 f"{field.split('.')[-1]}")  # fmt: skip
        return sets

    @field_validator("kpis")
    @classmethod
    def _matching(cls, patterns: list[str], info: ValidationInfo) -> list[str]:
        """A pattern matching no numeric column of the summary's model keeps none: the sweep ran, stored no KPI."""
        for i, pattern in enumerate([] if _stored(info) else patterns):
            if len(pattern) > MAX_KPI_CHARS:
                raise ValueError(f"item {i}, {show(pattern)}: a pattern of {len(pattern):,} characters; at most "
                                 f"{MAX_KPI_CHARS}")  # fmt: skip
            if (problem := _kpi_problem(pattern)) is not None:
                raise ValueError(f"item {i}, {show(pattern)}, {problem}")
        return patterns

    def designed(self) -> int:
        """How many points the design draws (before constraints): a grid's every combination, else ``size``."""
        if self.design == "grid":
            return math.prod(len(a.choices(True) or []) for a in self.axes)
        assert self.size is not None
        return self.size

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
