"""A sweep's results (sim/sweep/analysis.py) as Plotly figures and one self-contained HTML file.

The figures are shared with the app's Sweep page: the sensitivity heatmap (axes × KPIs), a KPI's main effect
per axis, a KPI over two axes (heatmap) and the Pareto front of round latency, bytes and energy.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from sim.contract import atomic_write
from sim.sweep import analysis as an
from sim.sweep.spec import SweepSpec

COLS = 4


def sensitivity_figure(table: pd.DataFrame) -> go.Figure:
    kpis = [c for c in table.columns if c != "axis"]
    z = table[kpis].to_numpy(float)
    fig = go.Figure(go.Heatmap(z=z, x=kpis, y=list(table["axis"]), zmin=0, zmax=1, colorscale="Blues",
                               text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
                               colorbar={"title": "η²"}))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Sensitivity: share of each KPI's variance over the points that an axis' levels explain",
                   120 + 40 * len(table))  # fmt: skip


def main_effects_figure(spec: SweepSpec, pm: pd.DataFrame, kpi: str) -> go.Figure:
    axes = spec.axes
    rows = math.ceil(len(axes) / COLS)
    fig = make_subplots(rows=rows, cols=min(COLS, len(axes)), subplot_titles=[a.label for a in axes],
                        shared_yaxes=True, horizontal_spacing=0.04, vertical_spacing=0.25 / rows)  # fmt: skip
    for i, a in enumerate(axes):
        me = an.main_effect(spec, pm, a.key, kpi)
        err = {"type": "data", "symmetric": False, "array": me["ci95_hi"] - me["mean"],
               "arrayminus": me["mean"] - me["ci95_lo"]}  # fmt: skip
        x = me["level"] if a.numeric else me["level"].astype(str)
        fig.add_trace(go.Scatter(x=x, y=me["mean"], error_y=err, mode="lines+markers", name=a.key, showlegend=False,
                                 customdata=me["points"], hovertemplate="%{x}: %{y:.4g} (%{customdata} points)"),
                      row=i // COLS + 1, col=i % COLS + 1)  # fmt: skip
        if a.range is not None and a.range.log:
            fig.update_xaxes(type="log", row=i // COLS + 1, col=i % COLS + 1)
    return _layout(fig, f"Main effects on {kpi}: its mean over the points at each level, 95 % CI", 300 * rows)


def heatmap_figure(spec: SweepSpec, pm: pd.DataFrame, x: str, y: str, kpi: str) -> go.Figure:
    """The KPI over two axes, averaged over the other axes' points."""
    data = pd.DataFrame({"x": an.groups(spec, pm, x), "y": an.groups(spec, pm, y), "z": pm[kpi]}).dropna()
    grid = data.pivot_table(index="y", columns="x", values="z", aggfunc="mean")
    xs, ys = an.order(spec, x, list(grid.columns)), an.order(spec, y, list(grid.index))
    grid = grid.loc[ys, xs]
    z = grid.to_numpy(float)
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], colorscale="Viridis",
                               text=[[f"{v:.4g}" for v in row] for row in z], texttemplate="%{text}",
                               colorbar={"title": kpi}))  # fmt: skip
    fig.update_xaxes(title=spec.axis(x).label, type="category")
    fig.update_yaxes(title=spec.axis(y).label, type="category")
    return _layout(fig, f"{kpi} over {x} × {y} (mean over the other axes)", 460)


def pareto_figure(spec: SweepSpec, pm: pd.DataFrame) -> go.Figure | None:
    objs = an.objectives(pm)
    if len(objs) < 2:
        return None
    front = an.pareto(pm, objs)
    hover = [", ".join(f"{a.key}={row[a.key]}" for a in spec.axes) for _, row in pm.iterrows()]
    marker: dict[str, Any] = {"size": 9}
    if len(objs) > 2:
        marker |= {"color": pm[objs[2]], "colorscale": "Viridis", "colorbar": {"title": objs[2]}, "showscale": True}
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=pm[objs[0]], y=pm[objs[1]], mode="markers", marker=marker, name="points",
                             text=hover, hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}"))  # fmt: skip
    fp = pm[front].sort_values(objs[0])
    fig.add_trace(go.Scatter(x=fp[objs[0]], y=fp[objs[1]], mode="markers", name="Pareto front",
                             marker={"size": 15, "symbol": "circle-open", "color": "#d62728", "line": {"width": 2}},
                             hoverinfo="skip"))  # fmt: skip
    fig.update_xaxes(title=objs[0])
    fig.update_yaxes(title=objs[1])
    fig.update_layout(legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    what = " vs ".join(objs)
    return _layout(fig, f"Pareto front of {what}: {int(front.sum())} of {len(pm)} points (all minimised)", 460)


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0, "xanchor": "left"}, height=max(height, 260),
                      margin={"l": 60, "r": 20, "t": 60, "b": 50}, template="plotly_white")  # fmt: skip
    return fig


def write(path: Path, manifest: dict[str, Any], df: pd.DataFrame) -> None:
    """The whole report, Plotly's script inlined once (no network needed to open it)."""
    spec = an.spec_of(manifest)
    pm = an.point_means(manifest, df)
    kpis = an.headline_kpis(df)
    figures: list[go.Figure] = []
    if kpis and len(pm):
        figures.append(sensitivity_figure(an.sensitivity(manifest, df, kpis)))
        figures += [main_effects_figure(spec, pm, k) for k in kpis[:4]]
        if (fig := pareto_figure(spec, pm)) is not None:
            figures.append(fig)
    parts = [pio.to_html(f, include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figures)]
    if len(objs := an.objectives(pm)) >= 2:
        front = pm[an.pareto(pm, objs)].sort_values(objs[0])
        parts.append("<h2>Points on the Pareto front</h2>" + front[["point", *[a.key for a in spec.axes], *objs]]
                     .to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))  # fmt: skip
    failed = int(df.loc[df["error"].notna(), "point"].nunique()) if "error" in df else 0
    head = (f"<h1>Sweep {escape(spec.sweep)}</h1><p>{escape(spec.description)}</p>"
            f"<p>{len(pm)} points simulated of {len(manifest['points'])} planned ({spec.design} design, "
            f"{spec.replications} replications each, root seed {spec.seed}, seeds {spec.seeds}); "
            f"{failed} points failed. Base scenario: {escape(manifest['scenario_file'])}.</p>")  # fmt: skip
    if not figures and not len(pm):
        head += "<p>No point has finished yet: nothing to plot.</p>"
    elif not figures:
        head += f"<p>No KPI the sweep kept varies across its {len(pm)} points: nothing to rank or plot.</p>"
    html = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Sweep {escape(spec.sweep)}</title></head>"
            f"<body style='font-family: sans-serif'>{head}{''.join(parts)}</body></html>")  # fmt: skip
    atomic_write(path, html)
