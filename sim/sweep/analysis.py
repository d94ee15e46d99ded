"""Reading a sweep's results: main effects per axis, a sensitivity ranking of the axes, the Pareto front.

All of it works on *point means*: each point's KPI averaged over its replications (the replications' noise is
the points' CI, not a difference between points). Failed points are left out.

- **Main effect** of an axis on a KPI: the KPI's mean and 95 % CI over the points at each of the axis' levels
  (a continuous axis of a random or Latin-hypercube design is cut into at most ``BINS`` quantile bins).
- **Sensitivity**: the share of the KPI's variance over the points that the axis' levels explain,
  η² = Σ_g n_g (ȳ_g − ȳ)² / Σ_i (y_i − ȳ)² (the correlation ratio). On a full grid it is the first-order
  (main-effect) variance share of a variance-based analysis; the shares of all axes sum to 1 less the
  interactions' share. With few points per level it is biased upwards (a level of one point explains itself),
  so the report shows the points per level beside it.
- **Pareto front**: the points no other point beats on every objective present (lower round latency, fewer
  application bytes, less energy per round) and beats on one.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import UserError
from sim.sweep.spec import STORED, SweepSpec

BINS = 8
# KPIs a report leads with, when the sweep kept them and they vary
HEADLINE = ("round_latency_s.mean", "model_distribution_s.mean", "application_bytes.total", "link_bytes.total",
            "energy.per_round_j.mean", "crypto_share", "telemetry.latency_s.p95",
            "telemetry.handshake_s.mean")  # fmt: skip
OBJECTIVES = ("round_latency_s.mean", "application_bytes.total", "energy.per_round_j.mean")
META = frozenset({"point", "replication", "seed", "hash", "error", "error_kind"})


def spec_of(manifest: dict[str, Any]) -> SweepSpec:
    return SweepSpec.model_validate(manifest["sweep"], context=STORED)


def kpi_columns(df: pd.DataFrame, spec: SweepSpec) -> list[str]:
    axes = {a.key for a in spec.axes}
    return [c for c in df.columns if c not in META and c not in axes and pd.api.types.is_numeric_dtype(df[c])]


def point_means(manifest: dict[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """One row per point that ran: its axis values and each KPI's mean over its replications."""
    spec = spec_of(manifest)
    ok = df[df["error"].isna()] if "error" in df else df
    if ok.empty:
        return pd.DataFrame(columns=["point", *[a.key for a in spec.axes]])
    keys = [a.key for a in spec.axes]
    kpis = kpi_columns(ok, spec)
    means = ok.groupby("point", sort=True)[kpis].mean()
    firsts = ok.groupby("point", sort=True)[keys].first()
    return firsts.join(means).reset_index()


def headline_kpis(df: pd.DataFrame) -> list[str]:
    """The report's KPIs: the headline ones the sweep kept and that vary, else every varying KPI (a column a
    summary makes: an axis, or any other input column, is never one). UserError where points ran and the sweep
    kept no KPI column at all: its report would rank and plot nothing, and say nothing of why."""
    present = [k for k in HEADLINE if k in df and df[k].nunique(dropna=True) > 1]
    if present:
        return present
    kept = [c for c in df.columns if c not in META and is_kpi(c) and pd.api.types.is_numeric_dtype(df[c])]
    ran = int(df["error"].isna().sum()) if "error" in df else len(df)
    if not kept and ran:
        raise UserError(f"the sweep kept no KPI: its {ran} results rows hold only the axes and the bookkeeping "
                        "columns (its kpis patterns matched no column of its points' summaries), so there is "
                        "nothing to rank or plot; `pqtwin sweep check` names such patterns")  # fmt: skip
    return [c for c in kept if df[c].nunique(dropna=True) > 1]


def is_kpi(column: str) -> bool:
    """Whether a results column is one a summary makes (a numeric name of ``sim.sweep.point.kpi_schema``, any key
    where it has a ``*``), not an axis nor another column the sweep adds."""
    return _kpi_names().fullmatch(column) is not None


@functools.cache
def _kpi_names() -> re.Pattern[str]:
    from sim.sweep.point import kpi_schema

    names = [re.escape(name).replace(r"\*", ".*") for name, numeric in kpi_schema() if numeric]
    return re.compile("|".join(names), re.DOTALL)


def groups(spec: SweepSpec, pm: pd.DataFrame, axis: str) -> pd.Series:
    """Each point's level of the axis: its value, or its quantile bin for a continuous axis of many values."""
    a = spec.axis(axis)
    col = pm[axis]
    if a.numeric and col.nunique() > BINS and pd.api.types.is_numeric_dtype(col):
        bins = pd.qcut(col, BINS, duplicates="drop")
        return col.groupby(bins, observed=True).transform("median").astype(float)
    return col


def order(spec: SweepSpec, axis: str, levels: list[Any]) -> list[Any]:
    """Levels in the sweep file's order (values and level lists), numerically for ranges."""
    a = spec.axis(axis)
    given = [a.column(v) for v in a.values] if a.values is not None else None
    given = [lv.label for lv in a.levels] if a.levels is not None else given
    if given is None:
        return sorted(levels)
    return sorted(levels, key=lambda v: given.index(v) if v in given else len(given))


def main_effect(spec: SweepSpec, pm: pd.DataFrame, axis: str, kpi: str) -> pd.DataFrame:
    """Per level of the axis: the KPI's mean over the points there, its 95 % CI, and how many points."""
    data = pd.DataFrame({"level": groups(spec, pm, axis), "y": pm[kpi]}).dropna()
    rows = []
    for level in order(spec, axis, list(data["level"].unique())):
        y = data.loc[data["level"] == level, "y"].to_numpy(float)
        half = 1.96 * y.std(ddof=1) / np.sqrt(len(y)) if len(y) > 1 else 0.0
        rows.append({"level": level, "mean": y.mean(), "ci95_lo": y.mean() - half, "ci95_hi": y.mean() + half,
                     "points": len(y)})  # fmt: skip
    return pd.DataFrame(rows, columns=["level", "mean", "ci95_lo", "ci95_hi", "points"])


def eta_squared(spec: SweepSpec, pm: pd.DataFrame, axis: str, kpi: str) -> float:
    data = pd.DataFrame({"level": groups(spec, pm, axis), "y": pm[kpi]}).dropna()
    total = float(((data["y"] - data["y"].mean()) ** 2).sum())
    if total <= 0 or data.empty:
        return 0.0
    g = data.groupby("level", sort=False)["y"].agg(["mean", "size"])
    return float((g["size"] * (g["mean"] - data["y"].mean()) ** 2).sum() / total)


def sensitivity(manifest: dict[str, Any], df: pd.DataFrame, kpis: list[str]) -> pd.DataFrame:
    """Axes (rows, most influential on the first KPI first) × KPIs: η² (module docstring)."""
    spec = spec_of(manifest)
    pm = point_means(manifest, df)
    kpis = [k for k in kpis if k in pm]
    rows = [{"axis": a.key, **{k: eta_squared(spec, pm, a.key, k) for k in kpis}} for a in spec.axes]
    out = pd.DataFrame(rows, columns=["axis", *kpis])
    return out.sort_values(kpis[0], ascending=False, kind="stable").reset_index(drop=True) if kpis else out


def pareto(pm: pd.DataFrame, objectives: list[str]) -> pd.Series:
    """Whether each point is on the Pareto front of the objectives (all minimised)."""
    y = pm[objectives].to_numpy(float)
    ok = np.isfinite(y).all(axis=1)
    front = np.zeros(len(pm), dtype=bool)
    for i in np.flatnonzero(ok):
        others = y[ok]
        dominated = ((others <= y[i]).all(axis=1) & (others < y[i]).any(axis=1)).any()
        front[i] = not dominated
    return pd.Series(front, index=pm.index)


def objectives(pm: pd.DataFrame) -> list[str]:
    return [k for k in OBJECTIVES if k in pm and pm[k].notna().any()]
