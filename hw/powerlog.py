"""Measured power of the cluster's nodes (an INA219 board, a USB meter) against a twin run's estimated energy.

A power log is a CSV file, one reading per row, with a header naming its columns::

    time_s,node,power_w          # Unix seconds, the scenario host's name (the Kubernetes node), watts
    1764352800.125,pi-1,3.12

or ``time_s,node,volts,amps`` (what USB meters and INA219 scripts log; power = volts x amps). `measured` integrates
each node's readings over the run's window (trapezoids; the power at the window's edges interpolated) and over each
round, so `pqtwin hw energy` can set them beside the energy the twin estimated from its spans (sim/energy.py).
The run must have wall-clock spans (``clock: wall``: the Kubernetes backend); a local run's monotonic clock cannot be
lined up with a meter's.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.contract import read_spans
from sim.errors import UserError, show
from sim.loading import exists, require_regular

MAX_ROWS = 10_000_000


@dataclass(frozen=True)
class Measured:
    """Joules each node used over the run's window, and all nodes per FL round (None: a round the log misses)."""

    window_s: tuple[float, float]  # Unix seconds
    by_node_j: dict[str, float]
    per_round_j: dict[int, float | None]


def read_power_log(path: Path) -> pd.DataFrame:
    """The log as (time_s, node, power_w) rows sorted by node and time; UserError naming what is wrong."""
    if not exists(path):
        raise UserError(f"--power-log: file not found (got {str(path)!r})")
    require_regular(path, "a CSV power log")  # pandas' reader blocks on a FIFO
    try:
        with warnings.catch_warnings():
            # index_col=False: a first row with more fields than the header is not read as a row index (its
            # readings' line numbers were then whatever that column held: 'x' or 1e400 crashed the error message)
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, comment="#", skipinitialspace=True, nrows=MAX_ROWS + 1, index_col=False)
    except pd.errors.ParserWarning:
        raise UserError(f"{path}: a line has more fields than the header") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a CSV power log: {str(exc).splitlines()[0]}") from None
    df.columns = [str(c).strip() for c in df.columns]
    given = ["time_s", "power_w"] if "power_w" in df.columns else ["time_s", "volts", "amps"]  # as the log has them
    if "power_w" not in df.columns and {"volts", "amps"} <= set(df.columns):
        df = df.assign(power_w=pd.to_numeric(df.volts, errors="coerce") * pd.to_numeric(df.amps, errors="coerce"))
    missing = {"time_s", "node", "power_w"} - set(df.columns)
    if missing:
        raise UserError(f"{path}: columns time_s, node and power_w (or volts and amps) needed; missing "
                        f"{', '.join(sorted(missing))} (got {', '.join(map(str, df.columns))})")  # fmt: skip
    if len(df) > MAX_ROWS:
        raise UserError(f"{path}: more than {MAX_ROWS:,} readings")
    out = pd.DataFrame({"time_s": pd.to_numeric(df.time_s, errors="coerce"), "node": df.node.astype(str),
                        "power_w": pd.to_numeric(df.power_w, errors="coerce")})  # fmt: skip
    bad = out[~np.isfinite(out.time_s) | ~np.isfinite(out.power_w) | (out.power_w < 0)]
    if len(bad):  # the reading's values, and its place among the readings (comment and blank lines are not one)
        first = [v.item() if isinstance(v, np.generic) else v for v in df.loc[bad.index[0], given]]  # not np.int64(3)
        values = ", ".join(f"{c} {show(v, 30)}" for c, v in zip(given, first, strict=True))
        raise UserError(f"{path}: reading {bad.index[0] + 1} ({values}): time_s and power_w must be numbers, "
                        "power_w >= 0")  # fmt: skip
    return out.sort_values(["node", "time_s"], kind="stable").reset_index(drop=True)


def energy_between(t: np.ndarray, w: np.ndarray, t0: float, t1: float) -> float | None:
    """Joules from readings (t, w) over [t0, t1]; None when the readings do not cover the window."""
    if t.size < 2 or t[0] > t0 or t[-1] < t1:
        return None
    inside = (t > t0) & (t < t1)
    ts = np.concatenate([[t0], t[inside], [t1]])
    ws = np.concatenate([[np.interp(t0, t, w)], w[inside], [np.interp(t1, t, w)]])
    return float(np.trapezoid(ws, ts))


def run_window(run_dir: Path) -> tuple[float, float, pd.DataFrame]:
    """The run's window in Unix seconds and its round markers (Unix); UserError for a monotonic-clock run."""
    from hw.runconfig import RunConfig

    try:
        cfg = RunConfig.read(run_dir)
        spans = read_spans(run_dir / "spans.parquet")
    except (OSError, ValueError) as exc:
        raise UserError(f"{run_dir}: not a twin run directory: {str(exc).splitlines()[0]}") from None
    if cfg.clock != "wall":
        raise UserError(f"{run_dir}: the run's clock is monotonic (a local run): its spans cannot be lined up with "
                        "a power log in Unix time; use a --backend k8s run")  # fmt: skip
    if spans.empty:
        raise UserError(f"{run_dir}: the run has no spans")
    rounds = spans[(spans.phase == "round") & (spans.op == "round")]
    rounds = rounds.assign(start_s=rounds.start_s + cfg.epoch, end_s=rounds.end_s + cfg.epoch)
    return float(spans.start_s.min() + cfg.epoch), float(spans.end_s.max() + cfg.epoch), rounds


def measured(run_dir: Path, log: pd.DataFrame) -> Measured:
    t0, t1, rounds = run_window(run_dir)
    nodes = {str(n): (g.time_s.to_numpy(), g.power_w.to_numpy()) for n, g in log.groupby("node")}
    by_node = {}
    for node, (t, w) in nodes.items():
        joules = energy_between(t, w, t0, t1)
        if joules is not None:
            by_node[node] = joules
    per_round: dict[int, float | None] = {}
    for r in rounds.itertuples():
        parts = [energy_between(t, w, float(r.start_s), float(r.end_s)) for t, w in nodes.values()]
        per_round[int(r.round)] = (
            None if not parts or any(p is None for p in parts) else math.fsum(p for p in parts if p is not None)
        )
    return Measured((t0, t1), by_node, per_round)
