"""Shared helpers: scenario specs, cached runs through the simulator's Python API, KPIs and messages.

The app calls the simulator exactly as the CLI does: ``sim.scenario`` loads (with ``--set``-style
overrides) and ``sim.runner.simulate`` runs; nothing parses printed output. Runs are cached with
``st.cache_data`` keyed on the scenario file, the overrides tuple, the app's structural edits, the host
profile, the mode, the seed and the replications.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NamedTuple

import pandas as pd
import streamlit as st

from app_pages import background, library
from app_pages.scenario_edit import build_data
from pqtwin.charts import PAPER_LINE_S, per_round, phase_extents  # noqa: F401  (the pages import them from here)
from sim import catalogue
from sim.contract import Stats, Summary
from sim.cost import DEFAULT_MAX_MEMORY_GIB, DEFAULT_MAX_MINUTES, Cost, budget_problem, estimate
from sim.errors import UserError
from sim.runner import RunResult, simulate
from sim.scenario import Scenario, load_scenario_data
from sim.summary import application_bytes, ci95, crypto_share
from sim.units import fmt_bytes, fmt_seconds

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

DEFAULT_REPLICATIONS = 3
KEEP: Final = "session"  # persist_state of every control: values survive switching pages and back
log = logging.getLogger("pqtwin.app")

SIMULATED_NOTE = (
    "Simulated: the SimPy model of sim/, priced with the hosts' calibration profiles (pi4-liboqs and pi4-openssl "
    "are compiled from published Raspberry Pi 4 measurements, tagged measured/derived/estimate per value, each "
    "naming the library it prices: liboqs NEON or OpenSSL 3.6 for post-quantum crypto). The paper's layout, "
    "algorithms and model size are not published: the values in scenarios/paper-3node.yaml are our assumptions."
)


def runs_dir() -> Path:
    """Where run directories live (``PQTWIN_RUNS_DIR``, default ``runs/`` of the repository). Absolute: the runs the
    app starts work in the repository, and a relative one named other folders to them than to the app."""
    return Path(os.environ.get("PQTWIN_RUNS_DIR") or ROOT / "runs").absolute()


def show_path(p: Path | str) -> str:
    """A path relative to the repository when it is inside it."""
    s = str(p)
    return s.removeprefix(f"{ROOT}/")


def scenario_files() -> list[Path]:
    """The shipped scenarios (the paper's first), then the saved what-ifs (app_pages/library.py)."""
    shipped = sorted(SCENARIOS.glob("*.yaml"), key=lambda p: (p.stem != "paper-3node", p.stem))
    return shipped + library.entries()


def scenario_label(p: Path) -> str:
    return f"★ {p.parent.name} (saved what-if)" if library.is_saved(p) else p.name


def scenario_key(p: Path) -> str:
    """What the controls' keys carry for a scenario: a saved what-if's folder name, else the file's stem."""
    return f"saved-{p.parent.name}" if library.is_saved(p) else p.stem


def profile_choices() -> dict[str, Path | None]:
    """Host profile options: the scenario's own, each shipped profile, this machine's if calibrated."""
    out: dict[str, Path | None] = {"as in the scenario": None}
    for p in sorted((SCENARIOS / "profiles").glob("*.yaml")):
        out[f"{p.stem} (every host)"] = p
    local = runs_dir() / "local-profile.yaml"
    if local.is_file():
        out["this machine, runs/local-profile.yaml (every host)"] = local
    return out


class Spec(NamedTuple):
    """What to simulate, hashable for the cache: scenario file + edits."""

    file: str
    overrides: tuple[str, ...] = ()
    nodes: int | None = None
    devices: tuple[tuple[str, int], ...] = ()
    profile: str | None = None


class FileProblem(UserError):
    """A file the app reads back (a saved what-if, a scenario, a run directory, a study or sweep result) that does
    not load as what it should be: the page shows one line naming the file and what is wrong (``show_problem``),
    and its other controls keep working."""


def one_line(lines: list[str]) -> str:
    """The first of a loader's lines (each names the file and a problem), saying how many more there are."""
    more = len(lines) - 1
    return lines[0] + (f" (and {more} more problem{'s' * (more != 1)})" if more > 0 else "")


def show_problem(exc: UserError | ValueError) -> None:
    """A file's problem in one line (repository paths shortened): a loader's UserError, or a contract reader's
    ValueError (sim/contract.py names the file too)."""
    lines = exc.lines if isinstance(exc, UserError) else str(exc).splitlines() or [type(exc).__name__]
    st.error(one_line(lines).replace(f"{ROOT}/", ""), icon=":material/error:")


def base_data(file: str) -> dict[str, Any]:
    """The scenario file as the simulator reads it (every default filled in), for the defaults of the controls.

    The file is loaded with sim.scenario's checks first (its references and profiles included): a damaged one (a
    saved what-if edited by hand, a profile of it gone) is a FileProblem naming the file and what is wrong, before
    any control reads a key of it (was "Explore failed: KeyError: 'workload'")."""
    try:
        scenario = load(Spec(file))
    except UserError as exc:
        raise FileProblem(exc.lines) from None
    return scenario.model_dump(mode="json", by_alias=True, exclude_none=True)


def stamp(spec: Spec) -> tuple[float, ...]:
    """Modification times of the files a spec reads: edited scenarios or profiles are never served stale."""
    files = [Path(spec.file), *(Path(spec.file).parent / "profiles").glob("*.yaml")]
    files += [Path(spec.profile)] if spec.profile else []
    return tuple(f.stat().st_mtime if f.exists() else 0.0 for f in files)


def load(spec: Spec) -> Scenario:
    """The validated scenario of a spec; UserError lines on any problem (never cached)."""
    return _load(spec, stamp(spec))


@st.cache_resource(show_spinner=False, max_entries=128)
def _load(spec: Spec, mtimes: tuple[float, ...]) -> Scenario:
    path = Path(spec.file)
    data = build_data(path, spec.overrides, spec.nodes, spec.devices)
    return load_scenario_data(data, path, Path(spec.profile) if spec.profile else None)


@st.cache_data(show_spinner=False, max_entries=200)
def _run(
    spec: Spec,
    mtimes: tuple[float, ...],
    mode: str,
    seed: int,
    replications: int,
    _progress: Callable[[int], None] | None = None,
) -> RunResult:
    """The cached run: keyed on the spec (scenario file, overrides, edits, profile), the files' modification
    times, mode, seed and replications."""
    return simulate(load(spec), mode, seed, replications, progress=_progress)


JS_MAX_INT: Final = (1 << 53) - 1  # the largest integer a browser's number input holds exactly


def bounded_int(where: Any, label: str, lo: int, hi: int, value: int, key: str, own: bool = False) -> int:
    """An integer input whose label says its bounds (a value typed outside them is refused, not kept silently).

    ``own``: ``value`` is the scenario's, and one outside the bounds widens them, so the run is the file's (a saved
    what-if of 2,000 rounds ran 1,000 and seed 2**40 ran 2**31 - 1, unsaid); beyond what a browser holds, it says
    so. Otherwise ``value`` is a default, kept within the bounds."""
    if own:
        lo, hi = min(lo, value), min(max(hi, value), JS_MAX_INT)
        if value > hi:
            where.warning(f"{label}: the scenario's {value:,} is more than this control holds; the run uses {hi:,}",
                          icon=":material/warning:")  # fmt: skip
    value = min(max(value, lo), hi)
    return int(where.number_input(f"{label} ({lo:,}–{hi:,})", lo, hi, value, key=key, persist_state=KEEP,
                                  help=f"from {lo:,} to {hi:,}"))  # fmt: skip


def session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def run(spec: Spec, mode: str, seed: int, replications: int, label: str = "", ask: bool = True) -> RunResult | None:
    """Simulate a spec; raises UserError for invalid specs and runs over the CLI's budget.

    Runs estimated within ``background.inline_s()`` run here (cached, with a progress bar over replications);
    longer ones run in the background with a Stop button (app_pages/background.py), after the user's go when
    over ``background.confirm_s()`` and ``ask``. None while there is no result (the page has said why)."""
    scenario = load(spec)  # validation errors before any progress bar appears
    cost = estimate(scenario, replications)
    if problem := budget_problem(scenario, cost, DEFAULT_MAX_MEMORY_GIB, DEFAULT_MAX_MINUTES):
        raise UserError(problem)
    if cost.wall_s <= background.inline_s():
        return run_here(spec, mode, seed, replications, label)
    key = background.run_key(scenario, mode, seed, replications)
    if (done := background.result(runs_dir(), key, _read_finished)) is not None:
        return done
    sid = session_id()
    job = background.current(sid)
    if job is not None and job.key == key and (job.running() or not job.stopped):
        return follow(job)
    background.stop(sid)  # the settings changed: the page no longer shows that run
    stopped = job is not None and job.key == key
    if ((ask and cost.wall_s > background.confirm_s()) or stopped) and not go_button(cost, key, label, stopped):
        return None
    return follow(background.start(runs_dir(), scenario, mode, seed, replications, cost.wall_s, label, sid))


@st.cache_data(show_spinner=False, max_entries=16)
def _read_finished(folder: Path, mtime_ns: int) -> RunResult | None:
    """A finished background run, read once per file version (pages ask for it on every rerun)."""
    return background.read_run(folder, mtime_ns)


def go_button(cost: Cost, key: str, label: str, stopped: bool) -> bool:
    """Ask before a long run: its estimated cost and a button (True once pressed)."""
    what = "Stopped. " if stopped else ""
    st.info(f"{what}{label or 'This run'} is estimated at {cost_text(cost)}: it runs in the background, with a "
            "Stop button, once you start it.", icon=":material/schedule:")  # fmt: skip
    return st.button(f"{'Run again' if stopped else 'Run'} (~{fmt_seconds(cost.wall_s)})", key=f"go_{key}",
                     type="primary")  # fmt: skip


def cost_text(cost: Cost) -> str:
    return (f"~{fmt_seconds(cost.wall_s)} on this machine, {cost.events:,.0f} events, "
            f"{fmt_bytes(cost.peak_bytes)} of memory")  # fmt: skip


def follow(job: background.Job) -> RunResult | None:
    """Show a background run's progress until it ends; its result (None when it was stopped)."""
    left, right = st.columns([6, 1])
    bar = left.progress(0.0, text=f"Simulating {job.label}…")
    right.button("Stop", key=f"stop_{job.key}", on_click=background.stop, args=(job.session,), type="primary",
                 help="End the simulation now: the server's CPU is free within a second")  # fmt: skip
    while job.running():  # each progress update is where Streamlit ends this script run on a rerun or a closed tab
        elapsed_s = time.monotonic() - job.started
        text = (f"Simulating {job.label} in the background: {fmt_seconds(elapsed_s)} of "
                f"~{fmt_seconds(job.estimate_s)} estimated")  # fmt: skip
        bar.progress(min(elapsed_s / max(job.estimate_s, 1e-9), 0.99), text=text)
        time.sleep(background.WATCH_S)
    bar.empty()
    found = background.outcome(job)
    if found is None:  # stopped or killed: the rerun shows "Stopped." with Run again
        st.rerun()
    return found


def run_here(spec: Spec, mode: str, seed: int, replications: int, label: str) -> RunResult:
    """The cached run in this process, with a progress bar over replications."""
    bar = st.progress(0.0, text=f"Simulating {label}…")
    ctx = contextvars.copy_context()  # progress updates from inside the cached function are not replayed

    def progress(i: int) -> None:
        ctx.run(bar.progress, i / replications, text=f"Simulating {label}: replication {i} of {replications}")

    try:
        return _run(spec, stamp(spec), mode, seed, replications, _progress=progress)
    finally:
        bar.empty()


def run_quiet(spec: Spec, mode: str, seed: int, replications: int) -> RunResult:
    """Simulate (cached) without a progress bar of its own (callers show progress over many runs)."""
    return _run(spec, stamp(spec), mode, seed, replications)


def show_errors(exc: UserError) -> None:
    """The one-line messages of a UserError, repository paths shortened."""
    st.error("\n\n".join(line.replace(f"{ROOT}/", "") for line in exc.lines), icon=":material/error:")


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Any exception below becomes one message; Streamlit's own control flow passes through."""
    try:
        yield
    except UserError as exc:
        show_errors(exc)
    except Exception as exc:
        log.exception("page %s failed", what)
        st.error(f"{what} failed: {type(exc).__name__}: {exc}", icon=":material/error:")


# ------------------------------------------------------------------------------------------ KPIs


def per_replication(result: RunResult) -> pd.DataFrame:
    """crypto share and application bytes of each replication, by the summary's own definitions."""
    rows: list[dict[str, Any]] = []
    for rep, df in result.spans.groupby("replication"):
        rows.append({"replication": rep, "crypto_share": crypto_share(df), "bytes": application_bytes(df).total})
    return pd.DataFrame(rows)


def kpis(result: RunResult) -> pd.DataFrame:
    """One row per KPI: mean and 95 % CI (over replication means where the run has ≥ 2 replications)."""
    s = result.summary
    reps = per_replication(result)
    rows: list[dict[str, Any]] = []
    for key, label in (("round_latency_s", "round latency"), ("model_distribution_s", "model distribution")):
        d: Stats = getattr(s, key)
        lo, hi = d.ci95
        rows.append(
            {
                "kpi": label,
                "unit": "s",
                "mean": d.mean,
                "ci95_low": lo,
                "ci95_high": hi,
                "p50": d.p50,
                "p95": d.p95,
                "n": d.n,
                "ci_method": d.ci_method,
            }
        )
    for col, label, unit in (
        ("crypto_share", "crypto share of FL CPU time", "fraction"),
        ("bytes", "application bytes per replication", "B"),  # app_pages/compare.py and explore.py read the name
    ):
        v = reps[col].to_numpy(dtype=float)
        lo, hi = ci95(v) if v.size >= 2 else (None, None)
        mean, method = float(v.mean()), "replications" if v.size >= 2 else "none"
        if col == "bytes" and s.engine is not None and s.engine.name == "vectorized":
            # its spans hold a sample of the frames; the summary counted every frame (no per-replication values)
            mean, lo, hi, method = s.application_bytes.total, None, None, "mean over replications"
        rows.append(
            {
                "kpi": label,
                "unit": unit,
                "mean": mean,
                "ci95_low": lo,
                "ci95_high": hi,
                "n": int(v.size),
                "ci_method": method,
            }
        )
    for host, u in s.host_utilization.items():
        rows.append(
            {
                "kpi": f"host utilisation {host} (offered)",
                "unit": "fraction",
                "mean": u.offered,
                "n": s.replications,
                "ci_method": "mean over replications",
            }
        )
    for phase, v in s.phase_s.items():
        rows.append({"kpi": f"phase {phase} (extent per round)", "unit": "s", "mean": v, "ci_method": "mean"})
    return pd.DataFrame(rows + energy_rows(s))


def energy_rows(s: Summary) -> list[dict[str, Any]]:
    """Energy KPIs (sim/energy.py): per FL round over the priced hosts, each host per replication, and each
    device population's average power and battery life."""
    e = s.energy
    if e is None:
        return []
    rows: list[dict[str, Any]] = []
    stats = [("energy per FL round (priced hosts)", e.per_round_j)] if e.per_round_j is not None else []
    stats += [(f"energy of host {h} per replication", v.total_j) for h, v in e.hosts.items()]
    for label, st_ in stats:
        lo, hi = st_.ci95
        rows.append({"kpi": label, "unit": "J", "mean": st_.mean, "ci95_low": lo, "ci95_high": hi, "n": st_.n,
                     "ci_method": st_.ci_method})  # fmt: skip
    for pop, d in e.devices.items():
        note = "" if d.compute_modelled else " (radio + sleep: no device profile)"
        rows.append({"kpi": f"device power {pop}{note}", "unit": "W", "mean": d.average_power_w, "ci_method": "mean"})
        rows.append({"kpi": f"battery life {pop}, {d.battery}", "unit": "days", "mean": d.battery_life_days,
                     "ci_method": "mean"})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------ suites


def suite_kind(kem: str, signature: str) -> str:
    k, s = catalogue.get(kem), catalogue.get(signature)
    if "+" in kem:
        return "hybrid"
    if k.quantum_safe and s.quantum_safe:
        return "PQC"
    return "classical" if not (k.quantum_safe or s.quantum_safe) else "mixed"


def algorithm_label(name: str) -> str:
    a = catalogue.get(name)
    if a.kind == "aead":
        return f"{name} (symmetric)"
    if "+" in name:
        return f"{name} (hybrid)"
    return f"{name} ({'PQC' if a.quantum_safe else 'classical'})"
