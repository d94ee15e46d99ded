"""Sweep: any number of parameters over ranges, run by the sweep engine (``pqtwin sweep``, Dask) in the background.

The page writes a sweep file (sim/sweep/spec.py) from its controls, shows how many runs it is and how long the
engine estimates before anything starts, and runs it as ``pqtwin sweep run`` in a process of its own into
``runs/app-sweeps/<id>/`` (the id is a hash of the sweep file: the same settings reuse their results, and a
stopped sweep resumes). Stop sends that process Ctrl-C, which cancels every task; a closed tab stops touching the
heartbeat file, and the sweep stops itself 15 s later. Two of the axes go on the heatmap (the others averaged),
every axis gets a main-effect plot, and the sensitivity ranking and Pareto front come from the same analysis as
``pqtwin sweep report``. Any sweep directory under runs/ (one made by the CLI too) can be opened instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import streamlit as st
import yaml

from app_pages import background, explore
from app_pages.common import (
    KEEP,
    PAPER_LINE_S,
    ROOT,
    SIMULATED_NOTE,
    FileProblem,
    base_data,
    bounded_int,
    guarded,
    profile_choices,
    runs_dir,
    scenario_files,
    scenario_key,
    scenario_label,
    session_id,
    show_path,
    show_problem,
)
from app_pages.explore import MODEL_SIZES, model_label
from app_pages.scenario_edit import build_data
from pqtwin import sweepreport
from sim import catalogue
from sim.contract import atomic_write
from sim.cost import duration
from sim.errors import UserError
from sim.loading import require_regular
from sim.sweep import analysis, engine, point, store
from sim.sweep.plan import Plan, plan
from sim.sweep.spec import load_sweep

MAX_POINTS = 400  # the page's cap (the CLI has none): longer grids are thinned evenly, axis by axis
DEFAULT_REPLICATIONS = 2
POLL_S = 1.0
NODES = "Number of nodes"


class Param(NamedTuple):
    values: list[Any]
    default: list[Any]  # numeric: (low, high) of the range; categorical: the preselected values
    numeric: bool
    fmt: Callable[[Any], str] = str


PARAMS: dict[str, Param] = {
    "Model size (parameters)": Param(MODEL_SIZES, [50_000, 1_000_000], True, model_label),
    NODES: Param([1, 2, 3, 4, 5, 6], [2, 5], True),
    "Devices per population": Param([0, 1, 2, 4, 8, 16, 32, 64], [0, 16], True),
    "Link bandwidth, every network link (Mbit/s)": Param([1, 5, 10, 25, 50, 100, 250, 500, 940], [10, 940], True),
    "Crypto worker threads (concurrent)": Param([1, 2, 3, 4, 6, 8, 12], [1, 8], True),
    "KEM": Param(catalogue.names("kem"), ["X25519", "ML-KEM-768", "ML-KEM-1024", "X25519+ML-KEM-768"], False),
    "Signature": Param(catalogue.names("signature"), ["Ed25519", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87"], False),
    "FL rekeying": Param(["per_message", "per_round", "per_session"], ["per_message", "per_round"], False),
    "Processing mode": Param(["sequential", "concurrent"], ["sequential", "concurrent"], False),
}
KPIS: dict[str, tuple[str, float, str]] = {  # label: (results column, scale, format)
    "Round latency, mean (ms)": ("round_latency_s.mean", 1e3, ",.1f"),
    "Round latency, p95 (ms)": ("round_latency_s.p95", 1e3, ",.1f"),
    "Model distribution, mean (ms)": ("model_distribution_s.mean", 1e3, ",.1f"),
    "Crypto share of FL CPU time (%)": ("crypto_share", 100, ".1f"),
    "Application bytes (MB per replication)": ("application_bytes.total", 1e-6, ",.1f"),
    "Link bytes, every hop (MB per replication)": ("link_bytes.total", 1e-6, ",.1f"),
    "Energy per FL round (J)": ("energy.per_round_j.mean", 1, ",.2f"),
    "Telemetry latency, p95 (ms)": ("telemetry.latency_s.p95", 1e3, ",.1f"),
}
KEPT = [*(c for c, _, _ in KPIS.values()), "round_latency_s.*", "model_distribution_s.*", "host_utilization.*",
        "energy.devices.*.battery_life_days", "rounds_*"]  # fmt: skip


# --- the sweep file the controls describe ---------------------------------------------------------------


def thin(values: list[Any], k: int) -> list[Any]:
    """k values spread evenly over the list, both ends kept."""
    if k >= len(values):
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, max(k, 1))).astype(int))
    return [values[i] for i in idx]


def thin_grid(lists: list[list[Any]], cap: int) -> list[list[Any]]:
    """Each axis' values thinned once, from its own full list, so that the grid has at most ``cap`` points: the
    longest axis loses a value at a time (sizes first, then one even pick per axis, never a pick of a pick)."""
    sizes = [len(v) for v in lists]
    while int(np.prod(sizes)) > cap and max(sizes) > 1:
        sizes[sizes.index(max(sizes))] -= 1
    return [thin(v, k) for v, k in zip(lists, sizes, strict=True)]


def axis_entry(name: str, values: list[Any], file: Path, pre: list[str]) -> dict[str, Any]:
    """One axis of the sweep file. Structural edits (number of nodes) become levels that set the whole
    deployment and workload as the app's Explore page builds them (with the sweep's own overrides ``pre``)."""
    title = name
    if name == NODES:
        levels = []
        for n in values:
            data = build_data(file, tuple(pre), n)
            sets = [f"deployment={json.dumps(data['deployment'])}", f"workload={json.dumps(data['workload'])}"]
            levels.append({"label": str(n), "value": n, "set": sets})
        return {"name": "nodes", "title": title, "levels": levels}
    if name.startswith("Link bandwidth"):
        bands = [{"label": f"{v:g}", "value": v, "set": [f"deployment.network.links.*.bandwidth_bps={v * 1e6:g}"]}
                 for v in values]  # fmt: skip
        return {"name": "link_mbps", "title": title, "levels": bands}
    path = {
        "Model size (parameters)": ("model_parameters", "workload.fl.model_parameters"),
        "Devices per population": ("devices", "workload.devices.*.count"),
        "Crypto worker threads (concurrent)": ("workers", "workload.processing.workers"),
        "KEM": ("kem", "workload.crypto.kem"),
        "Signature": ("signature", "workload.crypto.signature"),
        "FL rekeying": ("rekey", "workload.crypto.rekey.fl"),
        "Processing mode": ("mode", "workload.processing.mode"),
    }[name]
    return {"name": path[0], "title": title, "path": path[1], "values": values}


def sweep_yaml(file: Path, profile: Path | None, axes: dict[str, list[Any]], reps: int, seed: int) -> str:
    pre = [f"deployment.hosts.*.profile={profile}"] if profile else []
    ordered = sorted(axes, key=lambda a: a != NODES)  # the whole-section levels first: the other axes edit them
    doc = {
        "sweep": f"app-{scenario_key(file)}",
        "description": f"made by the app's Sweep page from {show_path(file)}",
        "scenario": str(file),
        "set": pre,
        "replications": reps,
        "seed": seed,
        "axes": [axis_entry(a, axes[a], file, pre) for a in ordered],
        "kpis": KEPT,
    }
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def sweep_paths(text: str) -> tuple[Path, Path]:
    """(sweep file, result directory) of a sweep text: named by its hash, so equal settings share results."""
    sid = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = runs_dir() / "app-sweeps"
    return folder / f"{sid}.yaml", folder / sid


def sweep_plan(text: str) -> Plan:
    """The plan of the sweep file of ``text``, written first where it is missing or not that text (the file is
    the app's own, named by the text's hash; the run reads it from disk, so a plan is never served for a file that
    is not there: another runs/ directory, or one cleaned up while the app ran)."""
    path, _ = sweep_paths(text)
    try:
        if not path.is_file() or path.read_text(errors="replace") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text)
        mtime_ns = path.stat().st_mtime_ns
    except OSError as exc:
        raise UserError(f"{path}: cannot write the sweep file: {exc.strerror or exc} (set PQTWIN_RUNS_DIR to a "
                        "writable directory)") from None  # fmt: skip
    return cached_plan(str(path), mtime_ns)


@st.cache_resource(show_spinner=False, max_entries=16)
def cached_plan(path: str, mtime_ns: int) -> Plan:
    """The plan of a sweep file, per file version."""
    spec, scenario = load_sweep(Path(path))
    return plan(spec, scenario)


# --- the page ----------------------------------------------------------------------------------------------


def render() -> None:
    st.title("Sweep many what-ifs")
    st.caption(SIMULATED_NOTE)
    file, profile, kpi, reps, seed, workers, problem = controls()
    opened = open_existing()
    if opened is not None:
        results(opened, kpi)
        return
    if problem is not None:  # the scenario file itself does not load (a damaged saved what-if)
        show_problem(problem)
        st.info("Pick another scenario under *Scenario*, or open a sweep directory above.")
        return
    axes = pick_axes(file)
    if not axes:
        st.info("Pick at least one parameter to sweep.")
        return
    text = sweep_yaml(file, profile, axes, reps, seed)
    path, out = sweep_paths(text)
    try:
        p = sweep_plan(text)
    except UserError as exc:
        st.error("\n\n".join(exc.lines), icon=":material/error:")
        return
    for line in p.problems():
        st.warning(f"Not simulated: {line}")
    running = st.session_state.get("sw_job")
    est = duration(p.est_wall_s / max(workers, 1))
    st.markdown(f"**{len(p.points)} runs × {reps} replications**, estimated ~{est} on {workers} local worker "
                f"processes (estimates run 1.3–3.6× above measured times). Results: `{show_path(out)}/`.")  # fmt: skip
    c1, c2, c3 = st.columns([1, 1, 4])
    if c1.button("Run", type="primary", key="sw_run", disabled=running is not None or not p.points):
        start(path, out, workers, len(p.points))
        st.rerun()
    if c2.button("Stop", key="sw_stop", disabled=running is None):
        stop()
        st.rerun()
    c3.download_button("Sweep file (YAML)", text, f"{p.spec.sweep}.yaml", "text/yaml", on_click="ignore")
    if st.session_state.get("sw_job") is not None:
        progress()
    if (out / store.MANIFEST).exists():
        results(out, kpi)


def controls() -> tuple[Path, Path | None, str, int, int, int, FileProblem | None]:
    """Sidebar → (scenario, host profile for every host or None, KPI, replications, seed, workers, why the scenario
    file does not load or None)."""
    sb = st.sidebar
    file: Path = sb.selectbox(
        "Scenario", scenario_files(), format_func=scenario_label, key="sw_scenario", persist_state=KEEP
    )
    profiles = profile_choices()
    prof = sb.selectbox(
        "Host profile (CPU costs)", list(profiles), key=f"sw_profile_{scenario_key(file)}", persist_state=KEEP
    )
    kpi = sb.selectbox("KPI", list(KPIS), key="sw_kpi", persist_state=KEEP)
    reps = bounded_int(sb, "Replications per run", 1, 10, DEFAULT_REPLICATIONS, "sw_reps")
    problem = None
    try:
        seed0 = int(base_data(str(file)).get("run", {}).get("seed", 1))
    except FileProblem as exc:
        problem, seed0 = exc, 1
    seed = bounded_int(sb, "Seed", 0, 2**31 - 1, seed0, f"sw_seed_{scenario_key(file)}", own=True)
    workers = bounded_int(sb, "Worker processes", 1, engine.max_local_workers(), os.cpu_count() or 1, "sw_workers")
    return file, profiles[prof], kpi, reps, seed, workers, problem


def pick_axes(file: Path) -> dict[str, list[Any]]:
    """The parameters and their values, thinned to at most MAX_POINTS grid points (with a note)."""
    names = st.multiselect("Parameters to sweep (axes)", list(PARAMS), default=["Model size (parameters)", NODES],
                           key="sw_axes", persist_state=KEEP)  # fmt: skip
    cols = st.columns(max(len(names), 1))
    picked = [pick(n, cols[i % len(cols)], file) for i, n in enumerate(names)]
    asked = int(np.prod([len(v) for v in picked])) if picked else 0
    thinned = thin_grid(picked, MAX_POINTS)
    if asked > MAX_POINTS:
        shape = " × ".join(str(len(v)) for v in thinned)
        st.info(f"{asked:,} grid points asked; the page runs at most {MAX_POINTS}, so each axis was thinned "
                f"evenly (from its own list) to {shape}. For more, download the sweep file and run `pqtwin sweep` "
                "on it.")  # fmt: skip
    return dict(zip(names, thinned, strict=True))


def pick(name: str, where: Any, file: Path) -> list[Any]:
    p = PARAMS[name]
    key = f"sw_{name}_{scenario_key(file)}"
    if p.numeric:
        lo, hi = where.select_slider(
            f"{name}: range", p.values, value=tuple(p.default), format_func=p.fmt, key=key, persist_state=KEEP
        )
        return p.values[p.values.index(lo) : p.values.index(hi) + 1]
    return (
        where.multiselect(f"{name}: values", p.values, default=p.default, key=key, persist_state=KEEP) or p.default[:1]
    )


def open_existing() -> Path | None:
    """A sweep directory under runs/ chosen to be shown instead of the controls' sweep (None: the controls')."""
    # two levels (runs/sweep-x/, runs/app-sweeps/<id>/), not **: runs/ also holds twin runs of many files, and this
    # runs on every rerun of the page
    manifests = [*runs_dir().glob(f"*/{store.MANIFEST}"), *runs_dir().glob(f"*/*/{store.MANIFEST}")]
    found = sorted((m.parent for m in manifests), key=lambda d: -d.stat().st_mtime)
    choices = ["(the sweep set up below)", *[show_path(d) for d in found]]
    chosen = st.selectbox("Open a sweep directory", choices, key="sw_open",
                          help="Any `pqtwin sweep --out DIR` under runs/, or one this page ran")  # fmt: skip
    return None if chosen == choices[0] else found[choices.index(chosen) - 1]


# --- the background run ------------------------------------------------------------------------------------


def start(path: Path, out: Path, workers: int, total: int) -> None:
    heartbeat, log_file = out.parent / f"{out.name}.heartbeat", out.parent / f"{out.name}.log"
    new_file(heartbeat).close()
    log = new_file(log_file)
    cmd = [sys.executable, "-m", "pqtwin", "sweep", "run", str(path), "--out", str(out), "--workers", str(workers),
           "--heartbeat", str(heartbeat)]  # fmt: skip
    # our own interpreter and arguments (paths this page made): no shell, no user text in the command
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
    log.close()  # the child has its own copy
    st.session_state["sw_job"] = {"proc": proc, "out": out, "heartbeat": heartbeat, "total": total,
                                  "started": time.time(), "log": log_file}  # fmt: skip
    threading.Thread(target=keep_alive, args=(proc, heartbeat, session_id()), name=f"sweep-{out.name}",
                     daemon=True).start()  # fmt: skip


def new_file(path: Path) -> BinaryIO:
    """A file of the sweep's own made anew at ``path``: what was there is removed first, never written through (a
    link there had the log truncate the file it points to); UserError naming the path when it cannot be."""
    try:
        path.unlink(missing_ok=True)
        return path.open("xb")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the sweep's file there: {exc.strerror or exc} (move it away, or set "
                        "PQTWIN_RUNS_DIR to a writable directory)") from None  # fmt: skip


def keep_alive(proc: subprocess.Popen[bytes], heartbeat: Path, session: str | None) -> None:
    """Keep the sweep's heartbeat fresh while it runs and the browser session that started it is connected, on
    whichever page it shows: the Sweep page's progress alone kept it, so 15 s on another page stopped the sweep,
    unsaid. A removed heartbeat (Stop, the run's end) is not made again."""
    while proc.poll() is None and background._session_connected(session):
        with contextlib.suppress(OSError):
            os.utime(heartbeat)
        time.sleep(POLL_S)


def stop() -> None:
    """Ctrl-C to the sweep's process group: the engine cancels every task and writes what finished."""
    job = st.session_state.get("sw_job")
    if job is None:
        return
    proc: subprocess.Popen[bytes] = job["proc"]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    job["heartbeat"].unlink(missing_ok=True)
    st.session_state["sw_job"] = None
    st.session_state["sw_last"] = f"Stopped: {len(finished(job['out']))} of {job['total']} runs had finished."


def finished(out: Path) -> set[str]:
    """The points done so far (none counted while a part file cannot be read: the results say which, and why)."""
    try:
        return store.finished(out) if (out / store.POINTS).exists() else set()
    except UserError:
        return set()


@st.fragment(run_every=POLL_S)
def progress() -> None:
    """While the sweep runs: its progress (``keep_alive`` keeps it running). Streamlit reruns a fragment alone,
    outside app.py's guard: its errors are guarded here."""
    with guarded("Sweep"):
        show_progress()


def show_progress() -> None:
    job = st.session_state.get("sw_job")
    if job is None:
        return
    done, total = len(finished(job["out"])), job["total"]
    elapsed = time.time() - job["started"]
    eta = f", ~{duration(elapsed / done * (total - done))} left" if 0 < done < total else ""
    st.progress(min(done / max(total, 1), 1.0), text=f"Sweeping: {done} of {total} runs done ({elapsed:.0f} s{eta})")
    if job["proc"].poll() is not None:
        code = job["proc"].returncode
        job["heartbeat"].unlink(missing_ok=True)
        st.session_state["sw_job"] = None
        tail = job["log"].read_text(errors="replace").strip().splitlines()[-3:] if job["log"].exists() else []
        st.session_state["sw_last"] = ended(code, len(finished(job["out"])), total, tail)
        st.rerun()


def ended(code: int, done: int, total: int, tail: list[str]) -> str:
    """What the page says of a sweep that ended by itself: nothing when every run finished."""
    if code != 0:
        return f"The sweep ended with exit code {code}: " + " ".join(tail)
    if done < total:  # it stopped itself (its heartbeat gone stale or removed), or runs crashed: Run resumes it
        return f"The sweep ended with {done} of {total} runs finished; Run runs the others."
    return ""


# --- the results ---------------------------------------------------------------------------------------


def read_results(out: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(sweep.json, the rows) of a sweep directory, read with the sweep store's checks; UserError naming the file
    and what is wrong for a directory this version cannot show (a damaged or foreign sweep.json or result file)."""
    manifest = store.manifest(out)
    axes = [a.key for a in analysis.spec_of(manifest).axes]
    for file, need in result_files(out, axes):
        try:
            require_regular(file, "a Parquet file")  # pyarrow's reader blocks on a FIFO
            names, rows = set(pq.read_schema(file).names), pq.read_metadata(file).num_rows
        except (UserError, OSError, pa.ArrowException):
            continue  # the store's reader says what is wrong with it, naming it
        if missing := [c for c in need if c not in names and rows]:
            raise UserError(f"{file}: not a result file of this sweep (no column {missing[0]!r}): move it away, and "
                            "a rerun computes its points again")  # fmt: skip
    return manifest, store.results(out)


def result_files(out: Path, axes: list[str]) -> list[tuple[Path, list[str]]]:
    """The files ``store.results`` reads (results.parquet when no part is newer, else every part file), each with
    the columns the page needs of its rows (a part's missing axis columns come from sweep.json)."""
    final = out / store.RESULTS
    parts = sorted((out / store.POINTS).glob("part-*.parquet"))
    meta = ["point", "replication", "hash", "error_kind"]
    try:
        fresh = final.exists() and all(p.stat().st_mtime_ns <= final.stat().st_mtime_ns for p in parts)
    except OSError:
        fresh = False
    return [(final, meta + axes)] if fresh else [(p, meta) for p in parts]


def results(out: Path, kpi: str) -> None:
    if msg := st.session_state.pop("sw_last", ""):
        st.warning(msg)
    try:
        manifest, df = read_results(out)
    except UserError as exc:
        show_problem(exc)
        return
    spec = analysis.spec_of(manifest)
    pm = analysis.point_means(manifest, df)
    failed = df.loc[df["error"].notna()] if "error" in df else df.iloc[0:0]
    for msg, group in failed.groupby("error"):
        st.warning(f"Not simulated ({group['point'].nunique()} runs): {msg}")
    if pm.empty:
        st.info(f"No run of `{show_path(out)}` has finished yet.")
        return
    col, scale, fmt = KPIS[kpi]
    if col not in pm:
        st.info(f"This sweep did not keep {kpi} (`{col}`).")
        return
    shown = pm.copy()
    shown[col] = shown[col] * scale
    keys = [a.key for a in spec.axes]
    st.caption(f"{len(pm)} of {len(manifest['points'])} runs done, {spec.replications} replications each, seed "
               f"{spec.seed} for every run (common random numbers). `{show_path(out)}/results.parquet`")  # fmt: skip
    if len(keys) >= 2:
        c1, c2 = st.columns(2)
        x = c1.selectbox("Heatmap X", keys, index=0, key="sw_hx")
        y = c2.selectbox("Heatmap Y", [k for k in keys if k != x], index=0, key="sw_hy")
        fig = sweepreport.heatmap_figure(spec, shown, x, y, col)
        over = "distribution" in col
        fig.update_traces(texttemplate="%{text}", text=cell_text(fig.data[0].z, fmt, over))
        fig.update_layout(title={"text": f"{kpi}: {len(pm)} runs ({spec.sweep}); other axes averaged"})
        st.plotly_chart(fig, key="sw_heatmap")
    effects = sweepreport.main_effects_figure(spec, shown, col)
    base = explore.pinned()
    if base is not None and (ref := point.kpis(base.result.summary).get(col)) is not None:  # a line in every panel
        effects.add_hline(y=ref * scale, line_dash="dot", line_color="#555", row="all", col="all")
        st.caption(f"Dotted line: the baseline pinned on Explore ({base.label}), {kpi} = {format(ref * scale, fmt)}")
    st.plotly_chart(effects, key="sw_effects")
    kpis = [c for c, _, _ in KPIS.values() if c in pm and pm[c].nunique() > 1]
    if kpis:
        st.plotly_chart(sweepreport.sensitivity_figure(analysis.sensitivity(manifest, df, kpis)), key="sw_sens")
    if (fig := sweepreport.pareto_figure(spec, pm)) is not None:
        st.plotly_chart(fig, key="sw_pareto")
    st.download_button("Sweep results (CSV)", df.to_csv(index=False), f"{spec.sweep}.csv", "text/csv",
                       on_click="ignore")  # fmt: skip


def cell_text(z: Any, fmt: str, over: bool) -> list[list[str]]:
    """The label of each heatmap cell; ▲ marks a point over the paper's line (distribution KPIs, in ms)."""
    return [
        ["—" if not np.isfinite(v) else format(v, fmt) + (" ▲" if over and v > PAPER_LINE_S * 1e3 else "") for v in row]
        for row in np.asarray(z, dtype=float)
    ]
