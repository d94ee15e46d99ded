"""Which of a study's unpublished choices reproduce its headline figures (``pqtwin study``).

The study we twin reports two numbers (concurrent crypto processing cuts round latency 35 %; a new global model
reaches every node in < 1.5 s) and publishes almost none of the choices they depend on. A *study file*
(``scenarios/study-*.yaml``, `StudySpec`) names a base scenario, the axes of those choices (model size, samples
per client, suite, rekey policy, provider, AEAD, worker layout, clients, link: each level a set of ``--set``
overrides) and the targets. `run_study` then

1. simulates the base and every level of every axis one at a time (both modes, paired by common random numbers),
   and ranks the axes by how far they move the latency reduction (`Ranking`);
2. simulates the full grid of two numeric axes, the one that moves the reduction most and the one that moves
   the distribution time most (`plane_axes`): the plane on which the report draws the reduction's target contour
   and the distribution time's target line;
3. simulates ``random_points`` combinations of every axis (each axis' level drawn uniformly), so combinations the
   one-at-a-time design cannot see are tried;

and every point records the round-latency reduction and the concurrent model distribution time with their 95 %
CIs over replications. `reproductions` lists the points that meet both targets. Every point uses the study's root
seed (common random numbers across points, as across the two modes), recorded in the result; identical scenarios
are simulated once.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from sim.errors import UserError, load_yaml, validate
from sim.scenario import Scenario, base_scenario
from sim.strict import StrictModel

MAX_LEVELS = 20
MAX_AXES = 16


_Strict = StrictModel


# what the study sets on every point itself (``overrides``, ``evaluate``): a level that set one would be overridden
STUDY_OWNS = ("run.seed", "run.replications", "workload.fl.rounds", "workload.processing.mode")


def _owned(sets: list[str]) -> str | None:
    """The first override in ``sets`` that sets a field the study owns, or a section holding one; None if none."""
    for item in sets:
        path = item.partition("=")[0].strip()
        if any(own == path or own.startswith(path + ".") for own in STUDY_OWNS):
            return repr(path)
    return None


class Level(_Strict):
    label: str = Field(min_length=1, max_length=60)
    value: float | None = None  # where the axis is numeric: the level's position on a plot
    set: list[str] = Field(default=[], max_length=64)  # --set overrides; [] = the base scenario's choice


class Axis(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    title: str = Field(min_length=1, max_length=80)
    log: bool = False  # numeric axis drawn on a log scale
    levels: list[Level] = Field(min_length=2, max_length=MAX_LEVELS)
    base: str  # the label of the level the base scenario has

    @model_validator(mode="after")
    def _consistent(self) -> Axis:
        labels = [lv.label for lv in self.levels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate level labels in axis {self.name}: {labels}")
        if self.base not in labels:
            raise ValueError(f"base {self.base!r} is not a level of axis {self.name} ({', '.join(labels)})")
        if any(lv.value is None for lv in self.levels) and any(lv.value is not None for lv in self.levels):
            raise ValueError(f"axis {self.name}: give every level a value, or none")
        if self.log and any((lv.value or 0) <= 0 for lv in self.levels):
            raise ValueError(f"axis {self.name}: a log axis needs positive values")
        values = [lv.value for lv in self.levels if lv.value is not None]
        if any(not math.isfinite(v) for v in values):
            raise ValueError(f"axis {self.name}: a level's value must be a finite number")
        if len(set(values)) != len(values):  # the plane's cells are between distinct values
            same = [lv.label for lv in self.levels if values.count(lv.value) > 1]  # type: ignore[arg-type]
            raise ValueError(f"axis {self.name}: levels {', '.join(map(repr, same))} have the same value; a numeric "
                             "axis needs a distinct value per level")  # fmt: skip
        for lv in self.levels:
            if (owned := _owned(lv.set)) is not None:
                raise ValueError(f"axis {self.name}, level {lv.label!r}: sets {owned}, which the study sets itself "
                                 "(its seed:, replications: and rounds:, and both modes)")  # fmt: skip
        return self

    @property
    def numeric(self) -> bool:
        return self.levels[0].value is not None

    def level(self, label: str) -> Level:
        return next(lv for lv in self.levels if lv.label == label)


class Targets(_Strict):
    round_latency_reduction: float = Field(default=0.35, gt=0, lt=1)  # concurrent vs sequential, at least
    distribution_s: float = Field(default=1.5, gt=0)  # concurrent mode's model distribution, below


class StudySpec(_Strict):
    study: str = Field(min_length=1, max_length=80)
    description: str = ""
    scenario: str = Field(min_length=1)  # the base scenario, relative to the study file
    targets: Targets = Targets()
    replications: int = Field(default=5, ge=2, le=100)
    rounds: int = Field(default=5, ge=1, le=100)
    seed: int = Field(default=1, ge=0, le=2**63 - 1)
    random_points: int = Field(default=40, ge=0, le=10_000)
    axes: list[Axis] = Field(min_length=2, max_length=MAX_AXES)

    @model_validator(mode="after")
    def _unique_axes(self) -> StudySpec:
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate axis names: {names}")
        if sum(a.numeric for a in self.axes) < 2:
            raise ValueError("at least two axes need numeric values (the contour plane)")
        return self

    def axis(self, name: str) -> Axis:
        return next(a for a in self.axes if a.name == name)

    def base(self) -> dict[str, str]:
        return {a.name: a.base for a in self.axes}


def load_study(path: Path, check: bool = True) -> tuple[StudySpec, Path]:
    """The study file and its base scenario's path; UserError lines on any problem, with ``check`` a level that
    cannot run among them (``check_levels``: ~1 s; a reader of a study's results need not)."""
    spec = validate(StudySpec, load_yaml(path), path)
    scenario = base_scenario(path, spec.scenario)
    if check:
        check_levels(path, spec, scenario)
    return spec, scenario


def check_levels(path: Path, spec: StudySpec, scenario: Path) -> dict[tuple[str, str], float]:
    """Every level of every axis, set alone on the base, makes a scenario that validates and fits the simulator's
    budget (``point_problem``); else UserError naming the axis and level. A level no point can run with only
    warned per point, and the study went on to exit 0 with every point failed, the base's too (a combination of
    levels that cannot run is still a point's error: each level alone can). Returns each (axis, level)'s estimated
    wall time of a point, both modes (``sim.cost``), the base's under each axis' base level."""
    base = spec.base()
    problem, base_s = _point(scenario, overrides(spec, base))
    if problem is not None:
        raise UserError(f"{path}: the base point (every axis at its base level): {problem}")
    costs = {}
    for i, a in enumerate(spec.axes):
        for lv in a.levels:
            point = base | {a.name: lv.label}
            problem, wall_s = (None, base_s) if lv.label == a.base else _point(scenario, overrides(spec, point))
            if problem is not None:
                raise UserError(f"{path}: axes[{i}] ({a.name}), level {lv.label!r}: {problem}")
            costs[a.name, lv.label] = wall_s
    return costs


def point_problem(scenario: Path, sets: list[str]) -> str | None:
    """Why a point cannot be simulated: its scenario does not validate, or both its modes would take more memory
    or time than ``pqtwin sim`` allows by default (a level of 100,000 devices on the event engine started a
    simulation of hours); None if it can."""
    return _point(scenario, sets)[0]


def _point(scenario: Path, sets: list[str]) -> tuple[str | None, float]:
    """``point_problem`` and the point's estimated wall time, both modes (0 when it cannot run)."""
    from sim import cost as costs
    from sim.scenario import load_scenario

    try:
        s = load_scenario(scenario, sets)
    except UserError as exc:
        return exc.lines[0], 0.0
    cost = costs.estimate(s, None, 2)
    return _over_budget(s, cost), cost.wall_s


def over_budget(s: Scenario) -> str | None:
    """``pqtwin sim``'s default budget for both modes of a point (``sim.cost``)."""
    from sim import cost as costs

    return _over_budget(s, costs.estimate(s, None, 2))


def _over_budget(s: Scenario, cost: Any) -> str | None:
    from sim import cost as costs

    default = ("pqtwin sim's default, per point", "pqtwin sim's default, per point")
    return costs.budget_problem(s, cost, costs.DEFAULT_MAX_MEMORY_GIB, costs.DEFAULT_MAX_MINUTES, default)


def planned_cost(spec: StudySpec, level_s: dict[tuple[str, str], float]) -> tuple[int, float]:
    """How many points the study will simulate at most and their estimated wall time in all (one worker): the
    one-at-a-time points as estimated, and for a combination the base's time scaled by each of its levels' own
    factor (devices and horizon multiply); the grid counted for the costliest pair of numeric axes, as the plane is
    chosen only once the first design has run. Identical points count once, as the study runs them once. An
    estimate, to refuse a study of days before it starts, not a promise."""
    base = spec.base()
    base_s = max(level_s[a.name, a.base] for a in spec.axes)

    def cost(point: dict[str, str]) -> float:
        factors = [level_s[a, lv] / base_s for a, lv in point.items() if lv != base[a]] if base_s > 0 else []
        return base_s * math.prod(factors)

    first = {key(p): p for p in one_at_a_time(spec)}
    numeric = [a.name for a in spec.axes if a.numeric]
    grids = [{key(p): p for p in grid(spec, x, y)} for x, y in itertools.combinations(numeric, 2)]  # either order
    worst = max(grids, key=lambda g: sum(cost(p) for k, p in g.items() if k not in first))
    points = first | worst | {key(p): p for p in random_design(spec)}
    return len(points), sum(cost(p) for p in points.values())


# --- one point ------------------------------------------------------------------------------------------


def overrides(spec: StudySpec, settings: dict[str, str]) -> list[str]:
    """The --set overrides of a point: each axis' level (base levels add nothing) plus rounds/replications."""
    sets = [s for a in spec.axes for s in a.level(settings[a.name]).set]
    return [*sets, f"workload.fl.rounds={spec.rounds}", f"run.replications={spec.replications}"]


def evaluate(scenario: Path, sets: list[str], seed: int) -> dict[str, Any]:
    """Simulate one point in both modes (same seed: paired); its KPIs, or ``error`` for a point that cannot run."""
    from sim.runner import simulate
    from sim.scenario import load_scenario
    from sim.summary import mode_comparison

    try:
        s = load_scenario(scenario, sets)
        if (problem := over_budget(s)) is not None:
            return {"error": problem}
        seq, conc = simulate(s, "sequential", seed).summary, simulate(s, "concurrent", seed).summary
    except UserError as exc:
        return {"error": exc.lines[0]}
    cmp = mode_comparison(seq, conc)
    dist = conc.model_distribution_s
    return {
        "reduction": cmp["round_latency_s"]["reduction"],
        "reduction_ci95": cmp["round_latency_s"]["reduction_ci95"],
        "distribution_s": dist.mean,
        "distribution_ci95": list(dist.ci95),
        "distribution_reduction": cmp["model_distribution_s"]["reduction"],
        "sequential_round_s": seq.round_latency_s.mean,
        "concurrent_round_s": conc.round_latency_s.mean,
    }


def _evaluate_job(job: tuple[str, list[str], int]) -> dict[str, Any]:
    return evaluate(Path(job[0]), job[1], job[2])


class _InProcess:
    """``ProcessPoolExecutor``'s ``map`` in this process (one worker: no fork, tracebacks where they happen)."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterable[Any]:
        return map(fn, items)


# --- the design ----------------------------------------------------------------------------------------


def one_at_a_time(spec: StudySpec) -> list[dict[str, str]]:
    base = spec.base()
    points = [base]
    for a in spec.axes:
        points += [base | {a.name: lv.label} for lv in a.levels if lv.label != a.base]
    return points


def grid(spec: StudySpec, x: str, y: str) -> list[dict[str, str]]:
    base = spec.base()
    return [base | {x: lx.label, y: ly.label} for lx in spec.axis(x).levels for ly in spec.axis(y).levels]


def random_design(spec: StudySpec) -> list[dict[str, str]]:
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(1)[0])  # its own stream of the root seed
    return [{a.name: a.levels[int(rng.integers(len(a.levels)))].label for a in spec.axes}
            for _ in range(spec.random_points)]  # fmt: skip


def rank(spec: StudySpec, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Axes by the range of the latency reduction over their levels, one at a time from the base."""
    base = spec.base()
    rows = []
    for a in spec.axes:
        kpis = [results[key(base | {a.name: lv.label})] for lv in a.levels]
        red = [k["reduction"] for k in kpis if k.get("reduction") is not None]
        dist = [k["distribution_s"] for k in kpis if k.get("distribution_s")]
        rows.append({
            "axis": a.name, "title": a.title, "numeric": a.numeric,
            "reduction_range": (max(red) - min(red)) if red else 0.0,
            "distribution_ratio": (max(dist) / min(dist)) if dist else 1.0,
        })  # fmt: skip
    return sorted(rows, key=lambda r: (-r["reduction_range"], -r["distribution_ratio"]))


def plane_axes(ranking: list[dict[str, Any]]) -> tuple[str, str]:
    """The contour plane: the numeric axis that moves the reduction most (x) and, of the others, the one that
    moves the distribution time most (y), so both targets can show on it."""
    numeric = [r for r in ranking if r["numeric"]]
    x = numeric[0]["axis"]
    y = max((r for r in numeric if r["axis"] != x), key=lambda r: r["distribution_ratio"])["axis"]
    return x, y


def key(settings: dict[str, str]) -> str:
    return json.dumps(settings, sort_keys=True)


def run_study(
    spec: StudySpec, scenario: Path, workers: int = 1, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Run the three designs (module docstring); the result as JSON-ready data."""
    results: dict[str, dict[str, Any]] = {}
    designs: dict[str, list[dict[str, str]]] = {}

    def run(points: Iterable[dict[str, str]]) -> None:
        todo = {key(p): p for p in points if key(p) not in results}
        jobs = [(str(scenario), overrides(spec, p), spec.seed) for p in todo.values()]
        with ProcessPoolExecutor(workers) if workers > 1 else _InProcess() as pool:
            for i, (k, kpis) in enumerate(zip(todo, pool.map(_evaluate_job, jobs), strict=True)):
                results[k] = kpis
                if progress:
                    progress(i + 1, len(todo))

    designs["one_at_a_time"] = one_at_a_time(spec)
    run(designs["one_at_a_time"])
    ranking = rank(spec, results)
    x, y = plane_axes(ranking)
    designs["grid"] = grid(spec, x, y)
    designs["random"] = random_design(spec)
    run(designs["grid"] + designs["random"])
    points = [{"settings": json.loads(k), "design": [d for d, ps in designs.items() if any(key(p) == k for p in ps)],
               **v} for k, v in results.items()]  # fmt: skip
    return {
        "study": spec.study,
        "scenario": str(scenario),
        "seed": spec.seed,
        "replications": spec.replications,
        "rounds": spec.rounds,
        "targets": spec.targets.model_dump(),
        "base": spec.base(),
        "ranking": ranking,
        "plane": {"x": x, "y": y},
        "points": points,
    }


# --- reading the result -----------------------------------------------------------------------------------


def meets(point: dict[str, Any], targets: dict[str, float], robust: bool = False) -> bool:
    """Both targets met by the point estimates (``robust``: by the whole 95 % CIs)."""
    if point.get("reduction") is None or point.get("distribution_s") is None:
        return False
    red = point["reduction_ci95"][0] if robust else point["reduction"]
    dist = point["distribution_ci95"][1] if robust else point["distribution_s"]
    return bool(red is not None and dist is not None and red >= targets["round_latency_reduction"]
                and dist < targets["distribution_s"])  # fmt: skip


def reproductions(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The points meeting both targets, the highest reduction first."""
    ok = [p for p in result["points"] if meets(p, result["targets"])]
    return sorted(ok, key=lambda p: -p["reduction"])


def changed(result: dict[str, Any], point: dict[str, Any]) -> dict[str, str]:
    """A point's settings that differ from the base scenario's."""
    return {a: v for a, v in point["settings"].items() if v != result["base"][a]}


def plane(result: dict[str, Any], spec: StudySpec) -> tuple[Axis, Axis, np.ndarray, np.ndarray]:
    """The contour plane: its two axes and the reduction and distribution time on the grid (rows = y levels)."""
    ax, ay = spec.axis(result["plane"]["x"]), spec.axis(result["plane"]["y"])
    by_key = {key(p["settings"]): p for p in result["points"]}
    red = np.full((len(ay.levels), len(ax.levels)), np.nan)
    dist = np.full_like(red, np.nan)
    for (j, ly), (i, lx) in itertools.product(enumerate(ay.levels), enumerate(ax.levels)):
        p = by_key.get(key(result["base"] | {ax.name: lx.label, ay.name: ly.label}), {})
        red[j, i] = p.get("reduction") if p.get("reduction") is not None else np.nan
        dist[j, i] = p.get("distribution_s") if p.get("distribution_s") is not None else np.nan
    return ax, ay, red, dist


def fmt_ci(value: float | None, ci: list[float | None], scale: float, unit: str, digits: int) -> str:
    if value is None:
        return "—"
    lo, hi = ci
    band = f" [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]" if lo is not None and hi is not None else ""
    return f"{value * scale:.{digits}f}{unit}{band}"


def log_or_linear(axis: Axis) -> Callable[[float], float]:
    return (lambda v: math.log10(v)) if axis.log else (lambda v: v)
