"""A sweep's points: the design drawn, the constraints applied, each point's scenario validated and hashed.

`plan(spec, scenario_path)` is what ``pqtwin sweep check`` prints and what ``pqtwin sweep`` runs. Every point is
built and validated here, in the calling process, before anything runs: a point that cannot be simulated is a
mistake in the sweep file (or a missing constraint) and is reported, with the first point it stops, at once.

A point's *hash* names its results (``points/<hash>.parquet``): the validated scenario, the profiles that price it,
its seed, the replications, the KPI patterns and the simulator's source. Rerunning a sweep skips the points whose
file is there, and a point whose scenario or seed changed is run again.

Random streams: the root seed's first spawned child draws random and Latin-hypercube designs; its second spawns
one seed per point for ``seeds: independent`` (``seeds: common`` gives every point the root seed itself).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import itertools
import json
import multiprocessing as mp
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim import cost as costs
from sim.errors import UserError, load_yaml, shorten
from sim.loading import machine_memory_bytes
from sim.profile import Profile
from sim.scenario import MAX_SEED, ProfileCache, Scenario, apply_override, load_scenario_data, set_path
from sim.sweep.point import kpi_keys
from sim.sweep.spec import SweepSpec, check_constraint, holds, kpi_keys_problem, kpi_mappings
from sim.telemetry import refusal

_GOT = re.compile(r" \(got .*\)$")  # the value a problem names, which varies over the points it stops
PARALLEL_FROM = 2_000  # points: fewer are validated in one process (forking costs ~0.1 s)
ESTIMATED = 2_000  # points whose cost is estimated; a larger sweep estimates a uniform sample of this many
PROGRESS_EVERY = 1_000  # points checked between two progress reports (a point takes ~1 ms)
Checked = Callable[[int, int], None]  # progress: (points checked, of all drawn)


@dataclass(frozen=True)
class Point:
    index: int  # its place in the design (before constraints)
    values: dict[str, Any]  # axis name: value (a level's label for a levels axis)
    overrides: tuple[str, ...]  # the sweep's --set, then each axis'
    seed: int
    hash: str = ""
    scenario: Scenario | None = field(default=None, compare=False, repr=False)
    est_wall_s: float | None = None  # estimated simulation time of its replications (sim/cost.py); None: not
    # estimated (a sweep of more than ESTIMATED points estimates a uniform sample of them)


@dataclass
class Plan:
    spec: SweepSpec
    scenario_path: Path
    points: list[Point]  # valid points to run, in design order
    designed: int  # points the design drew
    skipped: int  # by the constraints
    duplicates: int  # the scenario and seed of an earlier point (drawn twice, or equivalent levels): run once
    # a problem (its message without the value, which varies over the points it stops): those points, and the
    # message of the first of them in full
    invalid: dict[str, list[Point]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    # the keys the valid points' summaries can give each mapping (``sim.sweep.point.kpi_keys``): gathered only
    # where a KPI pattern's columns depend on them (``sim.sweep.spec.kpi_mappings``)
    kpi_keys: dict[str, set[str]] = field(default_factory=dict)
    # each point's budget (GiB of memory, minutes), which a point's run is held to where run.engine auto's kernels
    # give up at run time and the event model would run it instead (``sim.sweep.point.run_point``)
    budget: tuple[float, float] = (costs.DEFAULT_MAX_MEMORY_GIB, costs.DEFAULT_MAX_MINUTES)

    @property
    def estimated(self) -> int:
        return sum(p.est_wall_s is not None for p in self.points)

    @property
    def est_wall_s(self) -> float:
        """Estimated simulation time of every point: the estimated points' mean times their number."""
        known = [p.est_wall_s for p in self.points if p.est_wall_s is not None]
        return sum(known) / len(known) * len(self.points) if known else 0.0

    def problems(self, limit: int = 10) -> list[str]:
        """One line per distinct problem: how many points it stops and the first of them."""
        lines = []
        for key, pts in list(self.invalid.items())[:limit]:
            lines.append(f"{len(pts)} point(s), e.g. #{pts[0].index} {describe(pts[0].values)}: {self.messages[key]}")
        if len(self.invalid) > limit:
            lines.append(f"... and {len(self.invalid) - limit} more distinct problems")
        return lines


def describe(values: dict[str, Any]) -> str:
    return shorten(", ".join(f"{k}={v}" for k, v in values.items()), 160)


# --- the design ----------------------------------------------------------------------------------------


def design(spec: SweepSpec) -> list[dict[str, Any]]:
    """The design's points as axis values, in order (before constraints)."""
    if spec.design == "grid":
        choices = [a.choices(True) or [] for a in spec.axes]
        return [dict(zip([a.key for a in spec.axes], combo, strict=True)) for combo in itertools.product(*choices)]
    assert spec.size is not None
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(1)[0])
    n = spec.size
    columns: list[list[Any]] = []
    for a in spec.axes:
        lhs = spec.design == "lhs"
        strata = rng.permutation(n) if lhs else None
        u = (strata + rng.random(n)) / n if strata is not None else rng.random(n)
        levels = a.choices(False)
        if levels is None:
            assert a.range is not None
            columns.append([a.range.at(float(x)) for x in u])
        elif strata is not None:  # the stratum picks the level: each level floor(n/k) or ceil(n/k) times
            columns.append([levels[int(s) * len(levels) // n] for s in strata])
        else:
            columns.append([levels[min(int(x * len(levels)), len(levels) - 1)] for x in u])
    return [{a.key: col[i] for a, col in zip(spec.axes, columns, strict=True)} for i in range(n)]


# a planned point with its scenario kept (what ``pqtwin sweep`` runs): 21.6 KB measured (a 5,000-point lhs design of
# paper-3node, peak RSS over the plan, 2026-12-06), 1.5 ms each to check
PLAN_POINT_BYTES = 22_000


def _too_many_to_plan(n: int) -> str | None:
    """Why a design of ``n`` points is not planned in this process (its points' scenarios would need over half of this
    machine's memory: the schema's 1,000,000 would need ~20 GiB, after half an hour of planning), or None."""
    memory = machine_memory_bytes()
    if memory is None or n * PLAN_POINT_BYTES <= memory / 2:
        return None
    need, most = n * PLAN_POINT_BYTES / 2**30, int(memory / 2 / PLAN_POINT_BYTES)
    return (
        f"{n:,} points: planning them keeps each one's scenario, ~{need:.1f} GiB, over half of this machine's "
        f"{memory / 2**30:.1f} GiB; at most {most:,} points here"
    )


def point_seeds(spec: SweepSpec, n: int) -> list[int]:
    if spec.seeds == "common":
        return [spec.seed] * n
    children = np.random.SeedSequence(spec.seed).spawn(2)[1].spawn(n)
    return [int(c.generate_state(1, np.uint64)[0]) & MAX_SEED for c in children]


# --- building and validating every point ----------------------------------------------------------------


def plan(spec: SweepSpec, scenario_path: Path, estimate: bool = True,
         budget: tuple[float, float] = (costs.DEFAULT_MAX_MEMORY_GIB, costs.DEFAULT_MAX_MINUTES),
         source: Path | None = None, processes: int = 1, progress: Checked | None = None) -> Plan:  # fmt: skip
    """Draw the design, apply the constraints and validate every remaining point (module docstring). A point
    whose estimated cost is over ``budget`` (GiB of memory, minutes: as ``pqtwin sim``'s) is invalid: it would
    take a worker down. Above ESTIMATED points only the sampled ones are estimated, and so checked.
    ``source`` (the sweep file) names where a mistake of the sweep itself is (its ``set``, a constraint).

    ``processes`` > 1 validates a large design in that many forked processes (``pqtwin sweep check``); their
    points come back without their ``scenario`` (a check needs none; a run plans in one process). ``progress``
    is told how many points were checked every ``PROGRESS_EVERY`` or so (a design near its 1,000,000-point cap takes
    many minutes to check)."""
    builder = _Builder(spec, scenario_path, budget, source or Path("<sweep>"))
    designed = spec.designed()
    forked = processes > 1 and designed >= PARALLEL_FROM and "fork" in mp.get_all_start_methods()
    if not forked and (problem := _too_many_to_plan(designed)):  # each point's scenario kept: its memory
        raise UserError(f"{builder.source}: {'size' if spec.size is not None else 'axes'}: {problem}")
    drawn = design(spec)
    seeds = point_seeds(spec, len(drawn))
    sample = _estimate_sample(spec, len(drawn)) if estimate else set()
    jobs = list(zip(range(len(drawn)), drawn, seeds, strict=True))
    if forked:
        out = _merged(builder, jobs, sample, processes, progress)
    else:
        builder.out.designed = len(drawn)
        with _no_gc():
            for index, values, seed in jobs:
                builder.add(index, values, seed, index in sample)
                if progress is not None and (index + 1) % PROGRESS_EVERY == 0:
                    progress(index + 1, len(jobs))
        if progress is not None:
            progress(len(jobs), len(jobs))
        out = builder.out
    if builder.keyed and out.points and (problem := kpi_keys_problem(spec.kpis, out.kpi_keys)):
        raise UserError(f"{builder.source}: {problem}")  # a mistake of the sweep file, whatever its points' problems
    return out


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Thousands of scenarios kept alive: the collector's passes over them were a third of the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_FORKED: tuple[_Builder, set[int]] | None = None  # the builder and sample a forked validator inherits


def _validate_chunk(jobs: list[tuple[int, dict[str, Any], int]]) -> Plan:
    assert _FORKED is not None
    builder, sample = _FORKED
    builder.keep_scenarios = False  # Scenario objects would cost more to send back than to check
    builder.out = Plan(builder.spec, builder.path, [], 0, 0, 0)  # this chunk's: a process checks several in turn
    with _no_gc():
        for index, values, seed in jobs:
            builder.add(index, values, seed, index in sample)
    return builder.out


def _merged(builder: _Builder, jobs: list[tuple[int, dict[str, Any], int]], sample: set[int], n: int,
            progress: Checked | None = None) -> Plan:  # fmt: skip
    """``jobs`` checked in ``n`` forked processes, in chunks of about ``PROGRESS_EVERY`` points (progress after
    each), the parts merged in design order."""
    global _FORKED
    _FORKED = (builder, sample)
    size = max(PROGRESS_EVERY, -(-len(jobs) // (n * 64)))  # enough chunks to balance, few enough to cost nothing
    parts: list[Plan] = []
    try:
        with mp.get_context("fork").Pool(n) as pool:
            for part in pool.imap(_validate_chunk, [jobs[i : i + size] for i in range(0, len(jobs), size)]):
                parts.append(part)
                if progress is not None:
                    progress(min(len(jobs), len(parts) * size), len(jobs))
    finally:
        _FORKED = None
    out = builder.out
    out.designed = len(jobs)
    seen: set[str] = set()
    for part in parts:  # in design order: the first of equal points is kept, as in one process
        out.skipped += part.skipped
        out.duplicates += part.duplicates
        for p in part.points:
            if p.hash in seen:
                out.duplicates += 1
            else:
                seen.add(p.hash)
                out.points.append(p)
        for key, pts in part.invalid.items():
            out.messages.setdefault(key, part.messages[key])
            out.invalid.setdefault(key, []).extend(pts)
        for mapping, keys in part.kpi_keys.items():
            out.kpi_keys.setdefault(mapping, set()).update(keys)
    return out


def _estimate_sample(spec: SweepSpec, n: int) -> set[int]:
    """The design indices whose cost is estimated: all of them, or a uniform sample of ESTIMATED (the third
    stream of the root seed): the estimate is ~0.4 ms a point, half of checking one."""
    if n <= ESTIMATED:
        return set(range(n))
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(3)[2])
    return {int(i) for i in rng.choice(n, ESTIMATED, replace=False)}


class _Builder:
    """Turns drawn points into the plan's valid points, its skipped and duplicate counts and its problems."""

    def __init__(self, spec: SweepSpec, path: Path, budget: tuple[float, float], source: Path):
        self.spec, self.path, self.budget, self.source = spec, path, budget, source
        self.base = load_yaml(path)
        for i, item in enumerate(spec.set):
            try:
                apply_override(self.base, item)  # a bad fixed override stops the sweep: it is in every point
            except UserError as exc:
                raise UserError(f"{source}: set[{i}]: {exc.lines[0]}") from None
        self.trees = [(check_constraint(text, {a.key for a in spec.axes}), text) for text in spec.constraints]
        self.profiles = ProfileCache()
        self.parsed: dict[str, Any] = {}  # override values already parsed
        self.seen: set[str] = set()
        self.out = Plan(spec, path, [], 0, 0, 0, budget=budget)
        self.keep_scenarios = True
        self.keyed = kpi_mappings(spec.kpis)  # the points' kpi_keys to gather (``Plan.kpi_keys``)
        self.shapes: set[tuple[tuple[str, tuple[str, ...]], ...]] = set()

    def add(self, index: int, values: dict[str, Any], seed: int, estimate: bool) -> None:
        """Check one drawn point against the constraints, validate it and add it to the plan or its problems."""
        spec, out = self.spec, self.out
        at = {a.key: a.position(values[a.key]) for a in spec.axes}
        for i, (tree, text) in enumerate(self.trees):
            try:
                ok = holds(tree, at, text)
            except UserError as exc:
                raise UserError(f"{self.source}: constraints[{i}]: {exc.lines[0]}") from None
            if not ok:
                out.skipped += 1
                return
        overrides = tuple(s for a in spec.axes for s in a.overrides(values[a.key]))
        point = Point(index, values, (*spec.set, *overrides), seed)
        try:
            point = self.validated(point, estimate)
        except UserError as exc:
            message = exc.lines[0].removeprefix(f"{self.path}: ")  # the scenario file: the same for every point
            key = _GOT.sub("", message)
            out.messages.setdefault(key, message)
            out.invalid.setdefault(key, []).append(point)
            return
        if point.hash in self.seen:
            out.duplicates += 1
            return
        self.seen.add(point.hash)
        out.points.append(point)

    def validated(self, point: Point, estimate: bool) -> Point:
        data = pickle.loads(pickle.dumps(self.base))  # noqa: S301 (our own dict): a deep copy, 3x faster
        for a in self.spec.axes:
            value = point.values[a.key]
            if a.path is not None:  # the value as is: no YAML round trip (point.overrides says the same as text)
                own = pickle.loads(pickle.dumps(value)) if isinstance(value, dict | list) else value  # noqa: S301
                set_path(data, a.path, own)
            else:
                for item in a.overrides(value):
                    apply_override(data, item, self.parsed)
        identity = json.dumps(data, sort_keys=True, default=str)  # before validation adds its defaults to it
        s = load_scenario_data(data, self.path, profiles=self.profiles)
        if s.run.engine == "vectorized" and (why := refusal(s)):  # what simulate() refuses first, refused here
            raise UserError(f"{self.path}: run.engine: vectorized: {why}")
        wall = None
        if estimate:
            wall = costs.within_budget(s, self.spec.replications, 1, *self.budget).wall_s
        h = point_hash(self.spec, s, identity, point.seed)
        if self.keyed and (keys := kpi_keys(s, self.keyed)) and (shape := tuple(keys.items())) not in self.shapes:
            self.shapes.add(shape)  # (most points have the keys of another)
            for mapping, names in keys.items():
                self.out.kpi_keys.setdefault(mapping, set()).update(names)
        return Point(
            point.index, point.values, point.overrides, point.seed, h, s if self.keep_scenarios else None, wall
        )


def point_hash(spec: SweepSpec, s: Scenario, data: str, seed: int) -> str:
    """What a point's results depend on (module docstring), as 20 hex digits: the scenario as given (its
    defaults come from the simulator's source, which the digest covers) and the profiles it loaded."""
    identity = {
        "scenario": data,
        "profiles": {k: _profile_digest(p) for k, p in sorted(s._profiles.items())},
        "seed": seed,
        "replications": spec.replications,
        "kpis": spec.kpis,
        "model": model_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]


_DIGESTS: dict[int, tuple[Profile, str]] = {}  # id: (the profile, kept alive so its id is not reused; digest)


def _profile_digest(p: Profile) -> str:
    if id(p) not in _DIGESTS:
        _DIGESTS[id(p)] = (p, hashlib.sha256(p.model_dump_json().encode()).hexdigest())
    return _DIGESTS[id(p)][1]


@functools.cache
def model_digest() -> str:
    """The simulator's source (sim/*.py): a point simulated by other code is not the same point."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]
