"""Sweep: two parameters over ranges → a heatmap of one KPI; the number of runs is capped and shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app_pages import charts
from app_pages.common import KEEP, PAPER_LINE_S, SIMULATED_NOTE, Spec, base_data, run_quiet, scenario_files
from app_pages.explore import model_label
from app_pages.scenario_edit import build_data
from sim import catalogue
from sim.contract import Stats, Summary
from sim.errors import UserError

MAX_RUNS = 30
DEFAULT_REPLICATIONS = 2


class Param(NamedTuple):
    values: list[Any]
    default: list[Any]  # numeric: (low, high) of the range; categorical: the preselected values
    numeric: bool
    fmt: Callable[[Any], str] = str


PARAMS: dict[str, Param] = {
    "Model size (parameters)": Param(
        [10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000],
        [50_000, 1_000_000],
        True,
        model_label,
    ),
    "Number of nodes": Param([1, 2, 3, 4, 5, 6], [2, 5], True),
    "Devices per population": Param([0, 1, 2, 4, 8, 16, 32, 64], [0, 16], True),
    "Node link bandwidth (Mbit/s)": Param([1, 5, 10, 25, 50, 100, 250, 500, 940], [10, 940], True),
    "Crypto worker threads (concurrent)": Param([1, 2, 3, 4, 6, 8, 12], [1, 8], True),
    "KEM": Param(catalogue.names("kem"), ["X25519", "ML-KEM-768", "ML-KEM-1024", "X25519+ML-KEM-768"], False),
    "Signature": Param(catalogue.names("signature"), ["Ed25519", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87"], False),
    "Processing mode": Param(["sequential", "concurrent"], ["sequential", "concurrent"], False),
}


def _ms(stat: Stats, key: str) -> float:
    value = getattr(stat, key)
    return float("nan") if value is None else float(value) * 1e3


def _link_mb(s: Summary) -> float:
    """MB the links carried per replication (every hop, resends included)."""
    return s.link_bytes.total / 1e6 if s.link_bytes is not None else float("nan")


def _round_j(s: Summary) -> float:
    """Joules per FL round over the hosts with a power model (sim/energy.py)."""
    e = s.energy
    return e.per_round_j.mean if e is not None and e.per_round_j is not None and e.per_round_j.mean else float("nan")


def _battery_days(s: Summary) -> float:
    """The first device population's battery life at the run's duty cycle (days)."""
    days = next((d.battery_life_days for d in s.energy.devices.values()), None) if s.energy is not None else None
    return float("nan") if days is None else days


KPIS: dict[str, tuple[Callable[[Summary], float], str]] = {  # label: (value from summary, format)
    "Round latency, mean (ms)": (lambda s: _ms(s.round_latency_s, "mean"), ",.1f"),
    "Round latency, p95 (ms)": (lambda s: _ms(s.round_latency_s, "p95"), ",.1f"),
    "Model distribution, mean (ms)": (lambda s: _ms(s.model_distribution_s, "mean"), ",.1f"),
    "Crypto share of FL CPU time (%)": (lambda s: s.crypto_share * 100, ".1f"),
    "Application bytes (MB per replication)": (lambda s: s.application_bytes.total / 1e6, ",.1f"),
    "Link bytes, every hop (MB per replication)": (lambda s: _link_mb(s), ",.1f"),
    "Busiest host, offered load (%)": (lambda s: max(u.offered for u in s.host_utilization.values()) * 100, ".0f"),
    "Energy per FL round (J)": (_round_j, ",.2f"),
    "Battery life, first device population (days)": (_battery_days, ",.0f"),
}


def thin(values: list[Any], k: int) -> list[Any]:
    """k values spread evenly over the list, both ends kept."""
    if k >= len(values):
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, max(k, 1))).astype(int))
    return [values[i] for i in idx]


def pick(name: str, where: DeltaGenerator, file: Path) -> list[Any]:
    p = PARAMS[name]
    key = f"sw_{name}_{file.stem}"
    if p.numeric:
        lo, hi = where.select_slider(
            f"{name}: range", p.values, value=tuple(p.default), format_func=p.fmt, key=key, persist_state=KEEP
        )
        return p.values[p.values.index(lo) : p.values.index(hi) + 1]
    return (
        where.multiselect(f"{name}: values", p.values, default=p.default, key=key, persist_state=KEEP) or p.default[:1]
    )


def cell(file: Path, n0: int, point: dict[str, Any], mode: str) -> tuple[Spec, str]:
    """The spec (and mode) of one grid point."""
    nodes = point.get("Number of nodes")
    nodes = None if nodes in (None, n0) else nodes
    data = build_data(file, (), nodes)
    hosts = {h["name"] for h in data["deployment"]["hosts"]}
    ov: list[str] = []
    for name, v in point.items():
        if name == "Model size (parameters)":
            ov.append(f"workload.fl.model_parameters={v}")
        elif name == "Devices per population":
            ov += [f"workload.devices.{p['name']}.count={v}" for p in data["workload"].get("devices") or []]
        elif name == "Node link bandwidth (Mbit/s)":
            links = data["deployment"]["network"]["links"]
            ov += [
                f"deployment.network.links.{i}.bandwidth_bps={v * 1e6:g}"
                for i, lk in enumerate(links)
                if lk["a"] in hosts or lk["b"] in hosts
            ]
        elif name == "Crypto worker threads (concurrent)":
            ov.append(f"workload.processing.workers={v}")
        elif name in ("KEM", "Signature"):
            ov.append(f"workload.crypto.{'kem' if name == 'KEM' else 'signature'}={v}")
        elif name == "Processing mode":
            mode = v
    return Spec(str(file), tuple(ov), nodes), mode


def render() -> None:
    st.title("Sweep two parameters")
    st.caption(SIMULATED_NOTE)
    file, n0, kpi, mode, reps, seed = controls()
    xname, yname, xs, ys = axes(file)
    z, rows = run_grid(file, n0, (xname, xs), (yname, ys), mode, seed, reps, kpi)
    over = "distribution" in kpi
    runs = len(rows)
    shown_mode = "mode by axis" if "Processing mode" in (xname, yname) else mode
    title = f"{kpi}: {runs} runs × {reps} replications ({file.stem}, {shown_mode})"
    fig = charts.heatmap(
        z,
        cell_text(z, KPIS[kpi][1], over),
        [PARAMS[xname].fmt(v) for v in xs],
        [PARAMS[yname].fmt(v) for v in ys],
        xname,
        yname,
        kpi,
        title,
    )
    st.plotly_chart(fig, key="sw_heatmap")
    note = " ▲ marks points over the paper's 1.5 s." if over else ""
    st.caption(
        f"{runs} simulated runs of {reps} replications each (seed {seed} for every point, so neighbouring "
        f"points share random streams); at most {MAX_RUNS} runs per sweep.{note}"
    )
    st.download_button(
        "Sweep results (CSV)",
        pd.DataFrame(rows).to_csv(index=False),
        f"{file.stem}-sweep.csv",
        "text/csv",
        on_click="ignore",
    )


def controls() -> tuple[Path, int, str, str, int, int]:
    """Sidebar controls → (scenario file, its number of hosts, KPI, mode, replications, seed)."""
    sb = st.sidebar
    file: Path = sb.selectbox(
        "Scenario", scenario_files(), format_func=lambda p: p.name, key="sw_scenario", persist_state=KEEP
    )
    base = base_data(str(file))
    kpi = sb.selectbox("KPI", list(KPIS), key="sw_kpi", persist_state=KEEP)
    mode = sb.radio(
        "Processing mode",
        ["sequential", "concurrent"],
        horizontal=True,
        key="sw_mode",
        persist_state=KEEP,
        help="Ignored when a sweep axis is the processing mode",
    )
    reps = int(sb.number_input("Replications per run", 1, 10, DEFAULT_REPLICATIONS, key="sw_reps", persist_state=KEEP))
    seed = int(
        sb.number_input(
            "Seed",
            0,
            2**31 - 1,
            int(base.get("run", {}).get("seed", 1)),
            key=f"sw_seed_{file.stem}",
            persist_state=KEEP,
        )
    )
    return file, len(base["deployment"]["hosts"]), kpi, mode, reps, seed


def axes(file: Path) -> tuple[str, str, list[Any], list[Any]]:
    """The two parameters and their values (x, y); the grid thinned to at most MAX_RUNS points, with a note."""
    c1, c2 = st.columns(2)
    xname = c1.selectbox("X axis", list(PARAMS), index=0, key="sw_x", persist_state=KEEP)
    yname = c2.selectbox("Y axis", [p for p in PARAMS if p != xname], index=0, key="sw_y", persist_state=KEEP)
    xs, ys = pick(xname, c1, file), pick(yname, c2, file)
    asked = len(xs) * len(ys)
    while len(xs) * len(ys) > MAX_RUNS:
        xs, ys = (thin(xs, len(xs) - 1), ys) if len(xs) >= len(ys) else (xs, thin(ys, len(ys) - 1))
    if asked > MAX_RUNS:
        st.info(
            f"{asked} grid points asked; the app runs at most {MAX_RUNS}, so the longer axis was thinned "
            f"evenly to {len(xs)} × {len(ys)}. Narrow a range for every point, or use `pqtwin sim` in a loop."
        )
    return xname, yname, xs, ys


def run_grid(
    file: Path,
    n0: int,
    x: tuple[str, list[Any]],
    y: tuple[str, list[Any]],
    mode: str,
    seed: int,
    reps: int,
    kpi: str,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Simulate every grid point (with a progress bar) → (the KPI per point, NaN where not simulated; one row
    of every KPI per simulated point); points that cannot be simulated are reported per message."""
    (xname, xs), (yname, ys) = x, y
    value = KPIS[kpi][0]
    z = np.full((len(ys), len(xs)), np.nan)
    rows: list[dict[str, Any]] = []
    problems: dict[str, list[str]] = {}  # message: the points it stopped
    bar = st.progress(0.0, text="Sweeping…")
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            spec, m = cell(file, n0, {xname: xv, yname: yv}, mode)
            try:
                s = run_quiet(spec, m, seed, reps).summary
            except UserError as exc:
                problems.setdefault(exc.lines[0].split(": ", 1)[-1], []).append(f"{xv} × {yv}")
            else:
                z[j, i] = value(s)
                rows.append({xname: xv, yname: yv, "mode": m, **{k: f(s) for k, (f, _) in KPIS.items()}})
            bar.progress(
                (j * len(xs) + i + 1) / (len(xs) * len(ys)),
                text=f"Sweeping: run {j * len(xs) + i + 1} of {len(xs) * len(ys)}",
            )
    bar.empty()
    for msg, cells in problems.items():
        st.warning(f"Not simulated ({len(cells)} points, e.g. {cells[0]}): {msg}")
    return z, rows


def cell_text(z: np.ndarray, fmt: str, over: bool) -> list[list[str]]:
    """The label of each heatmap cell; ▲ marks a point over the paper's line (distribution KPIs, in ms)."""
    return [
        ["—" if not np.isfinite(v) else format(v, fmt) + (" ▲" if over and v > PAPER_LINE_S * 1e3 else "") for v in row]
        for row in z
    ]
