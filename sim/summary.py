"""Summary of a run: KPIs with confidence intervals, computed from spans (shared with the hardware twin).

Confidence intervals are Student-t 95 % intervals over replication means (the replication is the
independent unit); with one replication they are computed over rounds and ``ci_method`` says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from sim import catalogue
from sim.spans import MARKERS

SUMMARY_FILE = "summary.json"


def describe(values: pd.Series, groups: pd.Series) -> dict[str, Any]:
    """mean, p50, p95, n and ci95 of values; CI over group means when there are ≥ 2 groups."""
    v = values.to_numpy(dtype=float)
    if v.size == 0:
        return {"mean": None, "p50": None, "p95": None, "ci95": [None, None], "n": 0, "ci_method": "none"}
    means = values.groupby(groups).mean().to_numpy()
    basis, method = (means, "replication means") if means.size >= 2 else (v, "rounds of one replication")
    return {
        "mean": float(v.mean()),
        "p50": float(np.percentile(v, 50)),
        "p95": float(np.percentile(v, 95)),
        "ci95": list(ci95(basis)),
        "n": int(v.size),
        "ci_method": method,
        "replication_means": [float(m) for m in means],
    }


def ci95(x: np.ndarray) -> tuple[float, float]:
    """Student-t 95 % interval of the mean of x (degenerate when fewer than two values)."""
    m = float(np.mean(x))
    if x.size < 2:
        return (m, m)
    half = float(stats.t.ppf(0.975, x.size - 1) * np.std(x, ddof=1) / math.sqrt(x.size))
    return (m - half, m + half)


def is_crypto(op: str) -> bool:
    return op.split(".", 1)[0] in catalogue.CATALOGUE


def summarise(spans: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """KPIs from spans; ``meta`` carries run facts (scenario, seed, mode, replications, events, ...)."""
    rounds = spans[(spans.phase == "round") & (spans.op == "round")]
    dist = spans[spans.phase == "distribution"]
    fl_rows = spans[(spans["round"] > 0) & ~spans.phase.isin((*MARKERS, "telemetry"))]
    cpu = fl_rows[~fl_rows.op.isin(("transfer", "frame"))]
    dur = cpu.end_s - cpu.start_s - cpu.queue_wait_s
    crypto_s = float(dur[cpu.op.map(is_crypto)].sum())
    extent = fl_rows.groupby(["replication", "round", "phase"]).agg(start=("start_s", "min"), end=("end_s", "max"))
    phase_s = (extent.end - extent.start).groupby("phase").mean()
    reps = max(1, int(meta.get("replications", 1)))
    wire = spans[spans.op.isin(("transfer", "frame"))]
    frames = spans[spans.op == "frame"]
    out = dict(meta)
    out.update(
        {
            "round_latency_s": describe(rounds.end_s - rounds.start_s, rounds.replication),
            "model_distribution_s": describe(dist.end_s - dist.start_s, dist.replication),
            "rounds_completed": len(rounds),
            "rounds_failed": int(((spans.phase == "round") & (spans.op == "failed")).sum()),
            "phase_s": {k: float(v) for k, v in phase_s.items()},
            "crypto_share": crypto_s / float(dur.sum()) if float(dur.sum()) > 0 else 0.0,
            "bytes_on_wire": {
                "total": float(wire["bytes"].sum()) / reps,
                "by_phase": {k: float(v) / reps for k, v in wire.groupby("phase")["bytes"].sum().items()},
            },
            "telemetry": {
                "frames": len(frames) // reps,
                "latency_s": describe(frames.end_s - frames.start_s, frames.replication) if len(frames) else None,
            },
        }
    )
    return out


def mode_comparison(seq: dict[str, Any], conc: dict[str, Any]) -> dict[str, Any]:
    """Relative reduction concurrent vs sequential, with a paired 95 % CI over replications.

    Both runs use the same root seed, so replication i of each mode shares its random streams (common
    random numbers); the CI is over the per-replication reductions (seq_i - conc_i) / seq_i.
    """
    out: dict[str, Any] = {
        "scenario": seq["scenario"],
        "seed": seq["seed"],
        "replications": seq["replications"],
    }
    for key in ("round_latency_s", "model_distribution_s"):
        a = np.array(seq[key].get("replication_means") or [])
        b = np.array(conc[key].get("replication_means") or [])
        if a.size == 0 or a.size != b.size or not np.all(a > 0):
            out[key] = {"reduction": None, "reduction_ci95": [None, None]}
            continue
        per_rep = (a - b) / a
        out[key] = {
            "sequential_mean": float(a.mean()),
            "concurrent_mean": float(b.mean()),
            "reduction": float(1 - b.mean() / a.mean()),
            "reduction_ci95": list(ci95(per_rep)),
        }
    return out


def write_summary(summary: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / SUMMARY_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    tmp.replace(path)
    return path
