"""Measured power of the cluster's nodes (an INA219 board, a USB meter) against a twin run's estimated energy.

A power log is a CSV file, one reading per row, with a header naming its columns::

    time_s,node,power_w          # Unix seconds, the scenario host's name (the Kubernetes node), watts
    1764352800.125,pi-1,3.12

or ``time_s,node,volts,amps`` (what USB meters and INA219 scripts log; power = volts x amps). `measured` integrates
each node's readings over the run's window (trapezoids; the power at the window's edges interpolated) and over each
round, so `pqtwin hw energy` can set them beside the energy the twin estimated from its spans (sim/energy.py).
The run must have wall-clock spans (``clock: wall``: the Kubernetes backend); a local run's monotonic clock cannot be
lined up with a meter's.

Every reading is checked against the log and the run, each problem refused in one line naming the file, the reading
(its place among the readings) and its values, or, where the energy can still be computed honestly, left out with
a one-line warning saying what was left out (``Measured.warnings``, also in energy_measured.json). Refused: a time
or power that is not a number, a negative power (volts, amps), an empty node, a node's readings going back in time,
two different powers of one node at one instant, a log with no host of the run in it, or none whose readings cover
the run. Left out: an exact repeat of a reading; the readings of a node that is not a host of the run (its
scenario's hosts, and those its pods ran on); a host with one reading, or readings that do not cover the run's
window. Said: a host of the run with no measured energy (the per-round sums are then of the others), and a gap in a
host's readings around the run ten times its usual interval (its power there is interpolated).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sim.contract import RunLayout, read_spans
from sim.errors import UserError, show
from sim.loading import exists, load_yaml_file, require_regular

MAX_ROWS = 10_000_000
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measured:
    """Joules each node used over the run's window, and all nodes per FL round (None: a round the log misses);
    ``warnings``: what of the log is not in them and why, and what else a reader of them should know, one line
    each (each also said when it was found)."""

    window_s: tuple[float, float]  # Unix seconds
    by_node_j: dict[str, float]
    per_round_j: dict[int, float | None]
    warnings: list[str] = field(default_factory=list)


def _say_warning(line: str) -> None:
    _log.warning("warning: %s", line)  # without a handler configured: logging's last resort, one line on stderr


def _shown(v: object) -> str:
    return show(v.item() if isinstance(v, np.generic) else v, 30)  # not np.int64(3)


def read_power_log(path: Path, warn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The log as (time_s, node, power_w) rows sorted by node and time, indexed by their reading number (1: the
    first reading; comment and blank lines are not one); UserError naming the reading that is wrong. A reading
    repeated exactly (same node, time and power) is left out with a warning; two different readings of one node
    at one instant, or a node's readings going back in time, are refused (which is right cannot be told)."""
    df, given, parts_ok = _read_table(path)
    out = pd.DataFrame({"time_s": pd.to_numeric(df.time_s, errors="coerce"), "node": df.node.str.strip(),
                        "power_w": pd.to_numeric(df.power_w, errors="coerce")})  # fmt: skip
    out.index = pd.RangeIndex(1, len(out) + 1, name="reading")  # its place among the readings
    df.index = out.index

    def values(i: int, node: bool = True) -> str:  # the reading as the log has it
        return ", ".join(f"{c} {_shown(df.at[i, c])}" for c in (["node"] if node else []) + given)

    bad = out[~np.isfinite(out.time_s) | ~np.isfinite(out.power_w) | (out.power_w < 0) | ~parts_ok.to_numpy()]
    if len(bad):
        parts = "" if given[-1] == "power_w" else " (volts and amps >= 0)"
        raise UserError(f"{path}: reading {bad.index[0]} ({values(bad.index[0], node=False)}): time_s and power_w "
                        f"must be numbers, power_w >= 0{parts}")  # fmt: skip
    if len(empty := out[out.node.isna() | (out.node == "")]):
        raise UserError(f"{path}: reading {empty.index[0]} ({values(empty.index[0])}): node is empty (the "
                        "scenario host the reading is of)")  # fmt: skip
    out, said = _one_reading_an_instant(path, out, values, warn or _say_warning)
    out = out.sort_values(["node", "time_s"], kind="stable")
    out.attrs.update(source=str(path), warnings=said)  # what measured names and reports
    return out


def _read_table(path: Path) -> tuple[pd.DataFrame, list[str], pd.Series]:
    """The log's rows with a power_w column, the columns a reading's values are shown by, and whether the
    volts and amps a power was computed from are >= 0."""
    if not exists(path):
        raise UserError(f"--power-log: file not found (got {str(path)!r})")
    require_regular(path, "a CSV power log")  # pandas' reader blocks on a FIFO
    try:
        with warnings.catch_warnings():
            # index_col=False: a first row with more fields than the header is not read as a row index (its
            # readings' line numbers were then whatever that column held: 'x' or 1e400 crashed the error message)
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, comment="#", skipinitialspace=True, nrows=MAX_ROWS + 1, index_col=False,
                             dtype={"node": str})  # fmt: skip
    except pd.errors.ParserWarning:
        raise UserError(f"{path}: a line has more fields than the header") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a CSV power log: {str(exc).splitlines()[0]}") from None
    df.columns = [str(c).strip() for c in df.columns]
    given = ["time_s", "power_w"] if "power_w" in df.columns else ["time_s", "volts", "amps"]  # as the log has them
    parts_ok = pd.Series(True, index=df.index)
    if "power_w" not in df.columns and {"volts", "amps"} <= set(df.columns):
        volts, amps = pd.to_numeric(df.volts, errors="coerce"), pd.to_numeric(df.amps, errors="coerce")
        df = df.assign(power_w=volts * amps)
        parts_ok = (volts >= 0) & (amps >= 0)  # -5 V x -1 A is no 5 W reading
    missing = {"time_s", "node", "power_w"} - set(df.columns)
    if missing:
        raise UserError(f"{path}: columns time_s, node and power_w (or volts and amps) needed; missing "
                        f"{', '.join(sorted(missing))} (got {', '.join(map(str, df.columns))})")  # fmt: skip
    if len(df) > MAX_ROWS:
        raise UserError(f"{path}: more than {MAX_ROWS:,} readings")
    if df.empty:
        raise UserError(f"{path}: no readings (only a header)")
    return df, given, parts_ok


def _one_reading_an_instant(
    path: Path, out: pd.DataFrame, values: Callable[[int], str], warn: Callable[[str], None]
) -> tuple[pd.DataFrame, list[str]]:
    """``out`` without exact repeats of a node's reading (and the line saying so); UserError for a node's readings
    going back in time or two different readings of one node at one instant."""
    by_node = out.groupby("node", sort=False)
    numbers = pd.Series(out.index, index=out.index)
    prev = pd.DataFrame({"time_s": by_node.time_s.shift(), "power_w": by_node.power_w.shift(),  # a node's last
                         "reading": numbers.groupby(out.node, sort=False).shift()})  # fmt: skip
    back = out.index[(out.time_s < prev.time_s).to_numpy()]
    if len(back):
        i, j = back[0], int(prev.at[back[0], "reading"])
        raise UserError(f"{path}: reading {i} ({values(i)}) is earlier than reading {j} of the same node (time_s "
                        f"{_shown(out.at[j, 'time_s'])}): a node's readings must go forward in time (a clock "
                        "step? logs joined out of order?)")  # fmt: skip
    same = (out.time_s == prev.time_s).to_numpy()
    clash = out.index[same & (out.power_w != prev.power_w).to_numpy()]
    if len(clash):
        i, j = clash[0], int(prev.at[clash[0], "reading"])
        raise UserError(f"{path}: reading {i} ({values(i)}) and reading {j} (power_w "
                        f"{_shown(out.at[j, 'power_w'])}) are of the same node at the same instant with different "
                        "power: which is right cannot be told")  # fmt: skip
    if n := int(same.sum()):
        first = out.index[same][0]
        line = (f"{path}: {n:,} reading{'s' if n > 1 else ''} repeating the node's previous reading exactly (same "
                f"time and power) left out, first reading {first} ({values(first)})")  # fmt: skip
        warn(line)
        return out[~same], [line]
    return out, []


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
    t0, t1, rounds, _ = _run(run_dir)
    return t0, t1, rounds


def _run(run_dir: Path) -> tuple[float, float, pd.DataFrame, list[str]]:
    """run_window's answer, and the run's hosts (its scenario's, and every host its pods ran on)."""
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
    hosts = {p.host for p in cfg.pods.values()}
    try:  # the scenario's hosts: a host with no pod of the run still draws power
        listed = load_yaml_file(RunLayout(run_dir).scenario)["deployment"]["hosts"]
        hosts |= {str(h["name"]) for h in listed}
    except (UserError, OSError, KeyError, TypeError):  # no readable scenario.yaml: the hosts run.json names
        pass
    return float(spans.start_s.min() + cfg.epoch), float(spans.end_s.max() + cfg.epoch), rounds, sorted(hosts)


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(show(n, 40) for n in names[:limit])
    return shown + (f" and {len(names) - limit:,} more" if len(names) > limit else "")


def measured(run_dir: Path, log: pd.DataFrame, warn: Callable[[str], None] | None = None) -> Measured:
    """Each of the run's hosts' joules over the run's window and per round, from ``log`` (``read_power_log``).
    The readings of a node that is not a host of the run, and a host whose readings cannot be integrated over the
    whole window (one reading; readings that start after it or end before it), are left out, each said in one
    line (``warn``; by default a log line); UserError when no host of the run is left to measure."""
    warn = warn or _say_warning
    t0, t1, rounds, hosts = _run(run_dir)
    source = str(log.attrs.get("source", "the power log"))
    said: list[str] = []  # this call's lines; said once the result stands (an error says why on its own)
    numbered = log.index.name == "reading"  # read_power_log's: the readings' numbers in the file

    def reading(g: pd.DataFrame, k: int) -> str:
        at = f"at {g.time_s.iloc[k]:.3f}"
        return f"reading {g.index[k]} {at}" if numbered else f"a reading {at}"

    groups = {str(n): g for n, g in log.groupby("node", sort=True)}
    strangers = [n for n in groups if n not in hosts]
    if len(strangers) == len(groups):
        raise UserError(f"{source}: no reading is of a host of the run {run_dir} (the log's nodes: "
                        f"{_names(strangers)}; the run's hosts: {_names(hosts)})")  # fmt: skip
    if strangers:
        what = "; ".join(f"{show(n, 40)}: {len(groups[n]):,} from {reading(groups[n], 0)}" for n in strangers[:5])
        more = f"; and {len(strangers) - 5:,} more nodes" if len(strangers) > 5 else ""
        said.append(f"{source}: readings of nodes that are not hosts of the run left out ({what}{more}); the run's "
                    f"hosts: {_names(hosts)}")  # fmt: skip
    window = f"the run's window {t0:.3f} to {t1:.3f} (Unix s)"
    nodes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    by_node: dict[str, float] = {}
    unusable: list[str] = []  # why a host's readings are left out
    for node in (n for n in groups if n in hosts):
        g = groups[node]
        t, w = g.time_s.to_numpy(dtype=float), g.power_w.to_numpy(dtype=float)
        joules = energy_between(t, w, t0, t1)
        if joules is None:
            unusable.append(f"node {show(node, 40)}: one reading ({reading(g, 0)}); two or more covering {window} "
                            "are needed" if t.size < 2 else f"node {show(node, 40)}: its {t.size:,} readings "
                            f"({reading(g, 0)} to {reading(g, -1)}) do not cover {window}")  # fmt: skip
            continue
        if not math.isfinite(joules):
            raise UserError(f"{source}: node {show(node, 40)}: its energy over the run is not a finite number "
                            f"(power_w up to {float(w.max()):.4g})")  # fmt: skip
        # the readings integrated (one either side of the window): a gap among them is interpolated over
        used = slice(max(int(np.searchsorted(t, t0, "right")) - 1, 0), int(np.searchsorted(t, t1, "left")) + 1)
        gaps, typical = np.diff(t[used]), float(np.median(np.diff(t)))
        if gaps.size and gaps.max() > max(1.0, 10 * typical):
            at = used.start + int(np.argmax(gaps))
            said.append(f"{source}: node {show(node, 40)} has no reading for {gaps.max():.1f} s around {window} "
                        f"({reading(g, at)}, then {reading(g, at + 1)}; its readings are {typical:.3g} s apart "
                        "otherwise): its power there is interpolated")  # fmt: skip
        nodes[node], by_node[node] = (t, w), joules
    if not by_node:
        more = f"; and {len(unusable) - 2:,} more hosts" if len(unusable) > 2 else ""
        raise UserError(f"{source}: no host of the run can be measured: {'; '.join(unusable[:2])}{more}")
    said += [f"{source}: {why}: left out" for why in unusable]
    if unlogged := [h for h in hosts if h not in by_node]:
        said.append(f"{source}: no measured energy for the run's hosts {_names(unlogged)}: the per-round sums are of "
                    f"{_names(sorted(by_node))} only")  # fmt: skip
    per_round: dict[int, float | None] = {}
    for r in rounds.itertuples():
        parts = [energy_between(t, w, float(r.start_s), float(r.end_s)) for t, w in nodes.values()]
        per_round[int(r.round)] = (
            None if not parts or any(p is None for p in parts) else math.fsum(p for p in parts if p is not None)
        )
    for line in said:
        warn(line)
    return Measured((t0, t1), by_node, per_round, [*log.attrs.get("warnings", []), *said])
