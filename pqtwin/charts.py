"""Plotly figures shared by the app's pages and `pqtwin report` (times in ms on the axes, sizes in bytes).

No Streamlit here: the report command draws the same figures without the app."""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sim import contract
from sim.contract import PHASES
from sim.presets import LINK_PRESETS
from sim.scenario import LinkParams, Scenario
from sim.summary import ci95

PAPER_LINE_S = 1.5  # the paper: a new global model reached every node in under 1.5 s
# the line is drawn only where the data reach this share of it: it must not stretch an axis of small values
PAPER_LINE_SHOWN = 0.6

PHASE_COLORS = {
    "handshake": "#8c564b",
    "distribute": "#1f77b4",
    "receive": "#17becf",
    "train": "#2ca02c",
    "upload": "#ff7f0e",
    "verify": "#d62728",
    "aggregate": "#9467bd",
    "telemetry": "#7f7f7f",
}
SIM_COLOR, HW_COLOR = "#1f77b4", "#ff7f0e"
BASELINE_COLOR = "#9e9e9e"
KIND_STYLE = {  # node kind: (symbol, colour)
    "host": ("square", "#1f77b4"),
    "switch": ("diamond", "#7f7f7f"),
    "router": ("diamond-wide", "#9467bd"),
    "gateway": ("triangle-up", "#ff7f0e"),
    "device": ("circle", "#2ca02c"),
}


def layout(fig: go.Figure, title: str, height: int = 380, **kw: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        **kw,
    )
    return fig


def paper_line(fig: go.Figure, data_max_s: float, axis: str = "x") -> None:
    """The paper's 1.5 s model-distribution line (ms axes); a note instead when the data are far below it."""
    if data_max_s < PAPER_LINE_SHOWN * PAPER_LINE_S:
        fig.add_annotation(
            text=f"paper's 1.5 s line off scale: every value < {data_max_s * 1e3:,.1f} ms",
            xref="paper",
            yref="paper",
            x=1,
            y=1.0,
            xanchor="right",
            yanchor="bottom",
            showarrow=False,
            font={"color": "#d62728"},
        )
        return
    kw = {"line_dash": "dash", "line_color": "#d62728", "annotation_text": "paper: < 1.5 s to every node"}
    if axis == "x":
        fig.add_vline(x=PAPER_LINE_S * 1e3, annotation_position="top left", **kw)
    else:
        fig.add_hline(y=PAPER_LINE_S * 1e3, annotation_position="top left", **kw)


def phase_extents(spans: pd.DataFrame) -> pd.DataFrame:
    """Per phase: mean extent per round (s) and its 95 % CI over replication means (summary's definition)."""
    ext = contract.phase_extents(spans).rename(columns={"extent_s": "s"})
    rows = []
    for phase, g in ext.groupby("phase"):
        means = g.groupby("replication").s.mean().to_numpy()
        lo, hi = ci95(means)
        rows.append({"phase": phase, "mean_s": float(g.s.mean()), "ci_low_s": lo, "ci_high_s": hi})
    return pd.DataFrame(rows, columns=["phase", "mean_s", "ci_low_s", "ci_high_s"])


def per_round(spans: pd.DataFrame) -> pd.DataFrame:
    """Round latency and model distribution time of every completed round (s)."""
    r = spans[(spans.phase == "round") & (spans.op == "round")]
    d = spans[spans.phase == "distribution"]
    a = r.assign(round_s=r.end_s - r.start_s)[["replication", "round", "round_s"]]
    b = d.assign(distribution_s=d.end_s - d.start_s)[["replication", "round", "distribution_s"]]
    return a.merge(b, on=["replication", "round"], how="outer")


def _phase_bar(ext: pd.DataFrame, name: str, colors: list[str] | str, opacity: float = 1.0) -> go.Bar:
    return go.Bar(
        x=ext.mean_s * 1e3,
        y=ext.phase,
        name=name,
        orientation="h",
        marker_color=colors,
        opacity=opacity,
        error_x={
            "type": "data",
            "symmetric": False,
            "array": (ext.ci_high_s - ext.mean_s) * 1e3,
            "arrayminus": (ext.mean_s - ext.ci_low_s) * 1e3,
        },
        hovertemplate="%{y}: %{x:.2f} ms<extra>" + name + "</extra>",
    )


def phase_bars(
    ext: pd.DataFrame,
    title: str = "Phase breakdown: mean extent per round",
    baseline: pd.DataFrame | None = None,
    names: tuple[str, str] = ("what-if", "baseline"),
) -> go.Figure:
    """Mean extent per round of each phase (``phase_extents``); with ``baseline``, its bars beside them (grey)."""
    order = [p for p in PHASES if p in set(ext.phase) | set(() if baseline is None else baseline.phase)]
    ext = ext.set_index("phase").reindex(order).reset_index()
    fig = go.Figure()
    if baseline is not None:
        base = baseline.set_index("phase").reindex(order).reset_index()
        fig.add_trace(_phase_bar(base, names[1], BASELINE_COLOR, 0.8))
    fig.add_trace(_phase_bar(ext, names[0], [PHASE_COLORS.get(p, "#999") for p in ext.phase]))
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(title="ms per round (95 % CI over replications)")
    legend = {"orientation": "h", "y": -0.25} if baseline is not None else None
    return layout(fig, title, barmode="group", showlegend=baseline is not None, legend=legend)


def latency_histogram(
    rounds: pd.DataFrame, title: str = "Latency distribution over rounds", baseline: pd.DataFrame | None = None
) -> go.Figure:
    """Round latency and model distribution of every round (``per_round``); with ``baseline``, its rounds as
    outlined bars of the same bins."""
    fig = go.Figure()
    both = rounds if baseline is None else pd.concat([rounds, baseline])
    top = float(np.nanmax(both[["round_s", "distribution_s"]].to_numpy(dtype=float), initial=0.0))
    size = max(top, PAPER_LINE_S if top >= PAPER_LINE_SHOWN * PAPER_LINE_S else 0.0) / 80 or 1e-3  # one bin width
    for col, name, color in (
        ("round_s", "round latency", "#1f77b4"),
        ("distribution_s", "model distribution", "#2ca02c"),
    ):
        v = rounds[col].dropna() * 1e3
        fig.add_trace(go.Histogram(x=v, name=name, marker_color=color, opacity=0.75, xbins={"size": size * 1e3}))
        if baseline is not None:
            outline = {"color": "rgba(0,0,0,0)", "line": {"color": color, "width": 1.5}}
            fig.add_trace(go.Histogram(x=baseline[col].dropna() * 1e3, name=f"{name}, baseline",
                                       xbins={"size": size * 1e3}, marker=outline))  # fmt: skip
    paper_line(fig, top)
    fig.update_xaxes(title="ms (one value per round)", rangemode="tozero")
    fig.update_yaxes(title="rounds")
    return layout(fig, title, barmode="overlay", legend={"orientation": "h", "y": -0.25})


def _lanes(df: pd.DataFrame) -> list[int]:
    """Greedy interval partitioning: overlapping spans of one pod go to separate lanes."""
    ends: list[float] = []
    out = []
    for s, e in zip(df.start_s, df.end_s, strict=True):
        lane = next((i for i, end in enumerate(ends) if end <= s + 1e-12), len(ends))
        if lane == len(ends):
            ends.append(e)
        else:
            ends[lane] = e
        out.append(lane)
    return out


def _pod_order(pod: str) -> tuple[int, str]:
    rank = next((i for i, p in enumerate(("aggregator", "client", "worker")) if pod.startswith(p)), 3)
    return rank, pod


def _with_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """rows with the timeline row of each: its pod, or "pod ·2", "pod ·3", … for overlapping activities."""
    parts = []
    for pod, g in rows.groupby("pod"):
        g = g.assign(lane=_lanes(g))
        g["row"] = [pod if lane == 0 else f"{pod} ·{lane + 1}" for lane in g.lane]
        parts.append(g)
    return pd.concat(parts) if parts else rows.assign(row=[])


def gantt(spans: pd.DataFrame, replication: int, rnd: int, title: str = "", x_max_ms: float | None = None) -> go.Figure:
    """One round as a timeline per pod (overlapping activities of a pod on separate lanes)."""
    sel = spans[(spans.replication == replication) & (spans["round"] == rnd)]
    marker = sel[(sel.phase == "round") & (sel.op == "round")]
    dist = sel[sel.phase == "distribution"]
    rows = sel[~sel.phase.isin(("round", "distribution", "telemetry"))].sort_values("start_s")
    t0 = float(marker.start_s.min()) if len(marker) else float(rows.start_s.min() if len(rows) else 0.0)
    df = _with_rows(rows)
    order = sorted(set(df.row), key=lambda r: (_pod_order(r.split(" ·")[0]), r))
    fig = go.Figure()
    for phase in [p for p in PHASES if p in set(df.phase)]:
        g = df[df.phase == phase]
        fig.add_trace(
            go.Bar(
                base=(g.start_s - t0) * 1e3,
                x=(g.end_s - g.start_s) * 1e3,
                y=g.row,
                orientation="h",
                name=phase,
                marker={"color": PHASE_COLORS.get(phase, "#999"), "line": {"width": 0.5, "color": "white"}},
                customdata=np.stack([g.op, g.host, (g.queue_wait_s * 1e3), g["bytes"]], axis=-1),
                hovertemplate="%{customdata[0]} on %{customdata[1]}<br>start %{base:.2f} ms, %{x:.2f} ms"
                "<br>waited %{customdata[2]:.2f} ms, %{customdata[3]:,} B<extra>" + phase + "</extra>",
            )
        )
    if len(dist):
        end = (float(dist.end_s.max()) - t0) * 1e3
        fig.add_vline(x=end, line_dash="dot", line_color="#2ca02c", annotation_text="model at every client",
                      annotation_position="top right", annotation_bgcolor="rgba(255,255,255,0.8)")  # fmt: skip
    if len(marker):
        end = (float(marker.end_s.max()) - t0) * 1e3
        fig.add_vline(
            x=end,
            line_dash="dot",
            line_color="#444",
            annotation_text="round done",
            annotation_position="top left",
            annotation_bgcolor="rgba(255,255,255,0.8)",
        )
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], title=None)
    fig.update_xaxes(title="ms since the round started", range=[0, x_max_ms] if x_max_ms else None)
    height = 200 + 26 * max(3, len(order))
    fig = layout(fig, title or f"Round {rnd} timeline per pod (replication {replication})", height=height)
    legend = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left"}
    return fig.update_layout(barmode="overlay", bargap=0.25, legend=legend, margin={"b": 95})


def _link_text(params: LinkParams) -> str:
    bw, lat, _, loss = params.resolved()
    name = params.preset if params.preset in LINK_PRESETS else "custom"
    return f"{name}: {bw / 1e6:,.3g} Mbit/s, {lat * 1e3:.3g} ms one way, loss {loss:.1%}"


def _topology_graph(s: Scenario) -> tuple[nx.Graph, dict[str, str]]:
    """Hosts, network nodes and device populations with their links (hover text on each) → (graph, the
    label shown under each host)."""
    g = nx.Graph()
    pods_on: dict[str, list[str]] = {}
    for p in s.deployment.pods:
        pods_on.setdefault(p.host, []).append(p.name)
    label: dict[str, str] = {
        h.name: f"<b>{h.name}</b><br>{', '.join(pods_on.get(h.name, []))}" for h in s.deployment.hosts
    }
    for h in s.deployment.hosts:
        g.add_node(
            h.name,
            kind="host",
            text=f"{h.name}<br>{h.cores} cores, profile {h.profile}<br>" + ", ".join(pods_on.get(h.name, [])),
        )
    for n in s.deployment.network.nodes:
        g.add_node(n.name, kind=n.kind, text=f"{n.name} ({n.kind})")
    for link in s.deployment.network.links:
        g.add_edge(link.a, link.b, text=_link_text(link))
    for pop in s.workload.devices:
        name = f"{pop.name} ×{pop.count}"
        g.add_node(name, kind="device", text=f"{pop.count} × {pop.device_class} → {pop.report_to}")
        g.add_edge(name, pop.gateway, text=_link_text(pop.access_link))
    return g, label


def _edge_traces(g: nx.Graph, pos: dict[Any, Any]) -> list[go.Scatter]:
    """The links as lines, and a marker at each link's middle that carries its hover text."""
    ex: list[float | None] = []
    ey: list[float | None] = []
    mx, my, mt = [], [], []
    for a, b, d in g.edges(data=True):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ex += [x0, x1, None]
        ey += [y0, y1, None]
        mx.append((x0 + x1) / 2)
        my.append((y0 + y1) / 2)
        mt.append(d["text"])
    return [
        go.Scatter(x=ex, y=ey, mode="lines", line={"color": "#bbb", "width": 2}, hoverinfo="skip", showlegend=False),
        go.Scatter(
            x=mx,
            y=my,
            mode="markers",
            marker={"size": 6, "color": "#bbb"},
            text=mt,
            hovertemplate="%{text}<extra>link</extra>",
            showlegend=False,
        ),
    ]


def topology(s: Scenario, title: str = "Topology (devices grouped per population)") -> go.Figure:
    g, label = _topology_graph(s)
    pos = nx.kamada_kawai_layout(g) if g.number_of_nodes() > 2 else nx.spring_layout(g, seed=1)
    fig = go.Figure()
    for trace in _edge_traces(g, pos):
        fig.add_trace(trace)
    for kind, (symbol, color) in KIND_STYLE.items():
        names = [n for n, d in g.nodes(data=True) if d["kind"] == kind]
        if not names:
            continue
        fig.add_trace(
            go.Scatter(
                x=[pos[n][0] for n in names],
                y=[pos[n][1] for n in names],
                mode="markers+text",
                name=kind,
                text=[label.get(n, n) for n in names],
                textposition="bottom center",
                textfont={"size": 12},
                marker={"symbol": symbol, "size": 22 if kind == "host" else 16, "color": color},
                customdata=[g.nodes[n]["text"] for n in names],
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return layout(fig, title, height=420, legend={"orientation": "h", "y": -0.05})


def storm_backlog(storm: contract.Storm, baseline: contract.Storm | None = None) -> go.Figure:
    """The start-up storm: device handshakes under way over time (each bin's mean, over the replications), and
    when the last device was up (``Storm``; a baseline's beside it, grey)."""
    fig = go.Figure()
    for st_, name, color in ((baseline, "baseline", BASELINE_COLOR), (storm, "what-if", SIM_COLOR)):
        if st_ is None or not st_.under_way:
            continue
        t, n = (list(x) for x in zip(*st_.under_way, strict=True))
        t, n = [*t, 2 * t[-1] - t[-2] if len(t) > 1 else t[-1]], [*n, n[-1]]  # the last bin drawn to its end
        fig.add_trace(go.Scatter(x=t, y=n, mode="lines", line={"shape": "hv", "color": color},
                                 name=f"{name}: under way"))  # fmt: skip
        if st_.all_up_s.mean is not None:
            fig.add_vline(x=st_.all_up_s.mean, line={"dash": "dot", "color": color},
                          annotation_text=f"all up {st_.all_up_s.mean:.2f} s")  # fmt: skip
    return layout(fig, "Start-up storm: device handshakes under way", xaxis_title="time from the start (s)",
                  yaxis_title="handshakes under way")  # fmt: skip


def heatmap(
    z: np.ndarray,
    text: list[list[str]],
    x: list[str],
    y: list[str],
    x_title: str,
    y_title: str,
    z_title: str,
    title: str,
) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis",
            colorbar={"title": {"text": z_title, "side": "right"}},
            hovertemplate=f"{x_title} %{{x}}<br>{y_title} %{{y}}<br>{z_title}: %{{text}}<extra></extra>",
        )
    )
    fig.update_xaxes(title=x_title, type="category")
    fig.update_yaxes(title=y_title, type="category")
    return layout(fig, title, height=460)


def size_bars(
    df: pd.DataFrame, columns: dict[str, str], title: str, log: bool = True, labels: bool = True
) -> go.Figure:
    """Grouped bars of byte sizes per algorithm; ``columns`` maps a column of df to its legend name."""
    fig = go.Figure()
    for col, name in columns.items():
        fig.add_trace(
            go.Bar(
                x=df["label"],
                y=df[col],
                name=name,
                text=df[col] if labels else None,
                texttemplate="%{text:,}" if labels else None,
                textposition="outside",
                hovertemplate="%{x}: %{y:,} B<extra>" + name + "</extra>",
            )
        )
    if log:
        fig.update_yaxes(title="bytes (log scale)", type="log", dtick=1, tickformat=",")
    else:
        fig.update_yaxes(title="bytes")
    fig.update_xaxes(title=None)
    return layout(
        fig,
        title,
        height=440,
        barmode="group",
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )
