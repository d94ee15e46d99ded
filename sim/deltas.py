"""A what-if against a baseline: each KPI's difference (what-if − baseline) with its 95 % CI.

Both runs are reduced to one value per replication and KPI (``replication_values``). When they share the root
seed and the number of replications, replication i of each draws the same random streams (common random
numbers, as ``sim.summary.mode_comparison`` uses them): the CI is the Student-t interval of the paired
differences, which removes the noise both runs share. Otherwise the runs are independent samples and the CI is
Welch's. With fewer than two values on a side there is no CI (``method`` "none"), never a made-up one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from sim.contract import Summary
from sim.stats import t_ppf
from sim.summary import application_bytes, ci95, crypto_share

Method = Literal["paired", "welch", "none", "mean"]
METHOD_TEXT = {
    "paired": "paired over replications (same seed: common random numbers)",
    "welch": "Welch, independent runs (different seeds or replications)",
    "none": "no CI: fewer than two replications",
    "mean": "no CI: the model gives one value per run (a mean over its replications)",
}
# key, label, unit (base SI unit, as the app's and the report's KPI tables), True when lower is better
KPIS: tuple[tuple[str, str, str, bool], ...] = (
    ("round_latency_s", "round latency", "s", True),
    ("model_distribution_s", "model distribution", "s", True),
    ("crypto_share", "crypto share of FL CPU time", "fraction", True),
    ("application_bytes", "application bytes per replication", "B", True),
    ("energy_per_round_j", "energy per FL round (priced hosts)", "J", True),
)


@dataclass(frozen=True)
class Delta:
    key: str
    label: str
    unit: str
    baseline: float | None
    whatif: float | None
    delta: float | None  # what-if − baseline
    ci95: tuple[float | None, float | None]
    method: Method
    lower_is_better: bool = True

    @property
    def relative(self) -> float | None:
        """delta / baseline (None when the baseline is missing or zero)."""
        if self.delta is None or not self.baseline:
            return None
        return self.delta / self.baseline

    @property
    def significant(self) -> bool:
        """The CI excludes 0: the difference is more than the runs' noise."""
        lo, hi = self.ci95
        return lo is not None and hi is not None and (lo > 0 or hi < 0)


def replication_values(summary: Summary, spans: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per KPI of ``KPIS``: one value per replication (a single value when the run only has the total)."""
    out = {
        "round_latency_s": np.array(summary.round_latency_s.replication_means, float),
        "model_distribution_s": np.array(summary.model_distribution_s.replication_means, float),
    }
    reps = spans.groupby("replication") if len(spans) else []
    out["crypto_share"] = np.array([crypto_share(df) for _, df in reps], float)
    vectorized = summary.engine is not None and summary.engine.name == "vectorized"
    if vectorized:  # its spans hold a sample of the frames: only the summary's total is exact
        out["application_bytes"] = np.array([summary.application_bytes.total])
    else:
        out["application_bytes"] = np.array([application_bytes(df).total for _, df in reps], float)
    e = summary.energy
    if e is not None and e.per_round_j is not None and e.per_round_j.mean is not None:
        means = e.per_round_j.replication_means or [e.per_round_j.mean]
        out["energy_per_round_j"] = np.array(means, float)
    return out


def is_paired(baseline: Summary, whatif: Summary) -> bool:
    """Replication i of both runs shares its random streams: same root seed, same number of replications."""
    return baseline.seed is not None and baseline.seed == whatif.seed and baseline.replications == whatif.replications


def difference(base: np.ndarray, whatif: np.ndarray, paired: bool) -> tuple[float, tuple[float | None, float | None],
                                                                              Method]:  # fmt: skip
    """(mean difference, its 95 % CI, the method) of what-if − baseline."""
    d = float(whatif.mean() - base.mean())
    if paired and base.size == whatif.size and base.size >= 2:
        lo, hi = ci95(whatif - base)
        return d, (lo, hi), "paired"
    if base.size >= 2 and whatif.size >= 2:
        va, vb = base.var(ddof=1) / base.size, whatif.var(ddof=1) / whatif.size
        se = math.sqrt(va + vb)
        if se == 0:
            return d, (d, d), "welch"
        dof = (va + vb) ** 2 / (va**2 / (base.size - 1) + vb**2 / (whatif.size - 1))
        half = t_ppf(0.975, dof) * se
        return d, (d - half, d + half), "welch"
    return d, (None, None), "none"


def deltas(baseline: tuple[Summary, pd.DataFrame], whatif: tuple[Summary, pd.DataFrame]) -> list[Delta]:
    """Every KPI both runs have, what-if − baseline, with its 95 % CI (module docstring); then each device
    population both runs price, its battery life (a mean over replications: no CI)."""
    (bs, bspans), (ws, wspans) = baseline, whatif
    bv, wv = replication_values(bs, bspans), replication_values(ws, wspans)
    paired = is_paired(bs, ws)
    out: list[Delta] = []
    for key, label, unit, lower in KPIS:
        a, b = bv.get(key), wv.get(key)
        if a is None or b is None or a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
            continue
        d, ci, method = difference(a, b, paired)
        out.append(Delta(key, label, unit, float(a.mean()), float(b.mean()), d, ci, method, lower))
    be, we = bs.energy, ws.energy
    for pop in sorted(set(be.devices if be else ()) & set(we.devices if we else ())):
        assert be is not None and we is not None
        x, y = be.devices[pop].battery_life_days, we.devices[pop].battery_life_days
        if x is not None and y is not None:
            out.append(Delta(f"battery_life_days:{pop}", f"battery life {pop}", "days", x, y, y - x, (None, None),
                             "mean", lower_is_better=False))  # fmt: skip
    return out
