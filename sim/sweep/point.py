"""One sweep point on a worker: its replications simulated, each summary flattened into one result row.

This is the only code a Dask worker runs (``run_point``): it gets the point's validated scenario (profiles
included, so a remote worker needs no files) and returns plain rows; the client writes them. A point whose run
fails for a reason the user can fix (``UserError``) becomes rows carrying that one-line ``error``
(``error_kind: input``); any other failure is ``error_kind: crash`` and is tried again when the sweep is resumed.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import time
import traceback
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel

from sim.contract import Summary
from sim.errors import UserError, shorten
from sim.scenario import Scenario

# summary.json fields that describe the run or the machine, not the modelled system (wall time and memory are
# in the sweep's log.jsonl, so that results are the same on any machine and any number of workers)
# (``suite`` is the scenario's input, already in the axis columns where it varies)
NOT_KPIS = frozenset({"seed", "replications", "wall_s", "peak_rss_bytes", "suite"})
# fields only a twin's run fills in (sim/contract.py ``Summary``): a sweep's points are simulations, so a KPI
# pattern that matches only these (``machine_load.*``) would keep no column; the schema leaves them out
TWIN_ONLY = frozenset({"backend", "state", "reason", "initial_accuracy", "accuracy_per_round", "dropouts",
                       "security", "attack", "namespace", "run_id", "machine_load", "fabric"})  # fmt: skip


@dataclass(frozen=True)
class Task:
    index: int
    hash: str
    values: dict[str, Any]  # axis columns
    scenario: Scenario
    seed: int
    replications: int
    kpis: tuple[str, ...]
    priority: int = 0  # Dask runs higher first: the estimated milliseconds of simulation
    budget: tuple[float, float] | None = None  # the plan's per point (GiB, minutes), for a fallback found at run time


@dataclass(frozen=True)
class Outcome:
    rows: list[dict[str, Any]]
    wall_s: float  # simulating all replications
    error: str | None = None
    error_kind: str | None = None  # "input" | "crash"


def run_point(task: Task) -> Outcome:
    """Simulate every replication of the point (each with the streams it has in ``pqtwin sim --seed SEED``)."""
    from sim.runner import simulate

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    held = None if task.budget is None else functools.partial(_within_budget, task)
    try:
        for r in range(task.replications):
            summary = simulate(task.scenario, None, task.seed, task.replications, only=r, before_events=held).summary
            rows.append(_row(task, r) | kpis(summary, task.kpis))
    except UserError as exc:
        return failed(task, exc.lines[0], "input", time.perf_counter() - started)
    except Exception as exc:  # a bug or the machine: recorded, and retried on resume
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return failed(task, f"{type(exc).__name__}: {shorten(str(exc), 200)} ({where.filename}:{where.lineno})",
                      "crash", time.perf_counter() - started)  # fmt: skip
    return Outcome(rows, time.perf_counter() - started)


def _within_budget(task: Task, events: Scenario, why: str) -> None:
    """A point whose kernels gave up at run time (``why``): the event model's run of it held to the point's budget,
    as the plan held its estimate (a ``UserError``: the point's one-line error, kind input)."""
    from sim import cost as costs

    assert task.budget is not None
    costs.within_budget(events, task.replications, 1, *task.budget, fallback=why)


def _row(task: Task, replication: int) -> dict[str, Any]:
    return {"point": task.index, "replication": replication, "seed": task.seed, "hash": task.hash,
            **task.values, "error": None, "error_kind": None}  # fmt: skip


def failed(task: Task, message: str, kind: str, wall_s: float = 0.0) -> Outcome:
    """The point's rows carrying its one-line error (``kind``: input | crash), one per replication."""
    rows = [_row(task, r) | {"error": message, "error_kind": kind} for r in range(task.replications)]
    return Outcome(rows, wall_s, message, kind)


def kpis(summary: Summary, patterns: tuple[str, ...] = ()) -> dict[str, float]:
    """Every numeric field of the summary, flattened with dots (``round_latency_s.p95``,
    ``host_utilization.pi-1.offered``); a CI as ``….ci95_lo`` and ``….ci95_hi``; lists are left out.
    ``patterns`` (fnmatch) keep only the matching columns. Entries of single devices (a ``#`` in the name:
    each device's access link) are left out unless a pattern asks for them: a ward has thousands."""
    flat: dict[str, float] = {}
    _flatten(json.loads(summary.model_dump_json()), "", flat)
    if patterns:
        return {k: v for k, v in flat.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    return {k: v for k, v in flat.items() if "#" not in k}


def _flatten(node: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if prefix or k not in NOT_KPIS:
                _flatten(v, f"{prefix}{k}" if not prefix else f"{prefix}.{k}", out)
    elif isinstance(node, list) and prefix.endswith(".ci95") and len(node) == 2:
        out[f"{prefix}_lo"], out[f"{prefix}_hi"] = (_num(node[0]), _num(node[1]))
    elif isinstance(node, int | float):  # bools too: 0.0 or 1.0
        out[prefix] = float(node)
    elif node is None and prefix.rsplit(".", 1)[-1] in _OPTIONAL_NUMBERS:
        out[prefix] = float("nan")


# numeric fields that are None where they do not apply (no rounds finished, no battery): kept as NaN so a
# column does not vanish for the points where it has no value
_OPTIONAL_NUMBERS = frozenset({"mean", "p50", "p95", "battery_life_days", "busy"})


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def kpi_schema(model: type[BaseModel] = Summary) -> list[tuple[str, bool]]:
    """Every column ``kpis`` can make of a summary, read from its model (not a list kept by hand): the flattened
    name, with ``*`` for a key of a mapping (a host's, a phase's), and whether it is a number (a column) or not
    (text, a list: left out). A pattern matching none of the numeric names keeps no column."""
    out: list[tuple[str, bool]] = []
    for name, f in model.model_fields.items():
        if name not in NOT_KPIS and not (model is Summary and name in TWIN_ONLY):
            _schema(f.annotation, name, out)
    return list(dict.fromkeys(out))


def kpi_keys(s: Scenario, wanted: Collection[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The keys a summary of ``s`` can give each of its mappings (``kpi_schema``'s ``*``, by the name before it;
    only those ``wanted``), as sim/runner.py, sim/summary.py and sim/energy.py make them: every host; every link in
    both directions (``a->b``; a device's access link as ``pop#[0-9]*->gateway``: one per device); the phases; the
    populations with devices (their frames' latency only from the vectorized engine; energy only where the device
    class has a power model and the access link a radio); the hosts whose profile has a power model. A mapping not
    named here may have any key. (~10-40 us: ``pqtwin sweep check`` gathers them for every point.)"""
    from sim.contract import PHASES

    want = KEYED if wanted is None else set(wanted) & KEYED
    out: dict[str, tuple[str, ...]] = {}
    for mapping in want & {"phase_s", "application_bytes.by_phase", "link_bytes.by_phase", "energy.hosts.*.by_phase_j"}:
        out[mapping] = PHASES
    d, w = s.deployment, s.workload
    hosts = tuple(h.name for h in d.hosts)
    pops = [p for p in w.devices if p.count] if want & _BY_POPULATION else []
    if want & _DEVICE_ENERGY:  # (sim.energy loads the model: 60 ms, where no pattern needs it)
        from sim.energy import ACTIVITIES, PARTS, device_radio
        from sim.presets import DEVICE_CLASSES

        out |= {m: PARTS for m in want & {"energy.devices.*.by_part_j"}}
        out |= {m: ACTIVITIES for m in want & {"energy.devices.*.by_activity_j"}}
        if "energy.devices" in want:
            out["energy.devices"] = tuple(p.name for p in pops if DEVICE_CLASSES[p.device_class].power is not None
                                          and device_radio(p) is not None)  # fmt: skip
    if "host_utilization" in want:
        out["host_utilization"] = hosts
    if "energy.hosts" in want:
        profiles = s._profiles
        out["energy.hosts"] = tuple(h for h in hosts if profiles[h].power is not None)
    if want & {"link_utilization", "link_bytes.by_link"}:
        links = [f"{a}->{b}" for link in d.network.links for a, b in ((link.a, link.b), (link.b, link.a))]
        for p in w.devices:
            if p.count:
                links += [f"{p.name}#[0-9]*->{p.gateway}", f"{p.gateway}->{p.name}#[0-9]*"]
        out |= {m: tuple(links) for m in want & {"link_utilization", "link_bytes.by_link"}}
    if "telemetry.by_population" in want:
        out["telemetry.by_population"] = tuple(p.name for p in pops) if s.engine() == "vectorized" else ()
    if "telemetry.handshake_by_population" in want:
        out["telemetry.handshake_by_population"] = tuple(p.name for p in pops)
    if "telemetry.storm.peak_by_pod" in want:  # the pods the devices report to (sim/storm.py)
        out["telemetry.storm.peak_by_pod"] = tuple(sorted({p.report_to for p in pops}))
    return out


_DEVICE_ENERGY = frozenset({"energy.devices", "energy.devices.*.by_part_j", "energy.devices.*.by_activity_j"})
_BY_POPULATION = frozenset({"telemetry.by_population", "telemetry.handshake_by_population", "energy.devices",
                            "telemetry.storm.peak_by_pod"})  # fmt: skip
KEYED = frozenset({"phase_s", "application_bytes.by_phase", "link_bytes.by_phase", "energy.hosts.*.by_phase_j",
                   "energy.devices.*.by_part_j", "energy.devices.*.by_activity_j", "host_utilization", "energy.hosts",
                   "link_utilization", "link_bytes.by_link", *_BY_POPULATION})  # fmt: skip


# why a mapping of ``kpi_keys`` can be empty at every point of a sweep (a KPI check's message says it)
EMPTY_WHY = {
    "telemetry.by_population": "only the vectorized engine (run.engine) keeps frames per population",
    "telemetry.handshake_by_population": "no population has devices",
    "telemetry.storm.peak_by_pod": "no population has devices",
    "energy.hosts": "no host's profile has a power model",
    "energy.devices": "no population has devices whose class has a power model and whose access link a radio",
}


def _schema(tp: Any, prefix: str, out: list[tuple[str, bool]]) -> None:
    """``_flatten``'s columns of a value of type ``tp`` at ``prefix``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for a in args:
            if a is not type(None):
                _schema(a, prefix, out)
    elif origin is Literal:
        out.append((prefix, all(isinstance(a, int | float) for a in args)))
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            _schema(f.annotation, f"{prefix}.{name}", out)
    elif origin is dict or tp is dict:
        _schema(args[1] if args else Any, f"{prefix}.*", out)
    elif origin in (list, tuple) or tp in (list, tuple):
        if prefix.endswith(".ci95"):
            out += [(f"{prefix}_lo", True), (f"{prefix}_hi", True)]
        else:
            out.append((prefix, False))
    elif tp is Any:  # whatever it holds: a number, or a mapping of them
        out += [(prefix, True), (f"{prefix}.*", True)]
    else:
        out.append((prefix, isinstance(tp, type) and issubclass(tp, int | float)))
