"""Twin: measured (hardware twin) vs simulated per phase, with the fidelity figures of `pqtwin compare`."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import KEEP, runs_dir, show_path, show_problem
from hw.at_speed import at_measured_speed, off_speed, speed_of, training_of
from hw.compare import BOOTSTRAP_SEED, RESAMPLES, compare_dirs
from pqtwin import charts
from sim.contract import ALTERNATING_MODES, RunLayout, Summary, read_summary
from sim.errors import UserError
from sim.modes_json import paired, read_modes, reduction_text
from sim.units import MISSING, fmt


def run_dirs(root: Path, problems: list[str] | None = None) -> dict[str, Summary]:
    """Run directories under root (spans + a valid summary, up to three levels deep) → their summary. One whose
    summary.json does not read as this version's is not offered; ``problems`` gets its one line (the file, what is
    wrong). A run of both modes' rounds in turn (a twin's ``--mode both``, a simulation's ``--rounds-in-turn``) is
    offered as its two halves (``DIR/sequential``, ``DIR/concurrent``), not as the whole (sim/alternating.py)."""
    out: dict[str, Summary] = {}
    if not root.is_dir():
        return out
    for spans in sorted(p for depth in ("*", "*/*", "*/*/*") for p in root.glob(f"{depth}/{RunLayout.SPANS}")):
        d = spans.parent
        try:
            summary = read_summary(RunLayout(d).summary)
        except ValueError as exc:  # sim.contract.read_model: one line naming the file
            if problems is not None:
                problems.append(str(exc))
            continue
        if summary.mode not in ALTERNATING_MODES:
            out[str(d)] = summary
    return out


MAX_SHOWN = 3  # lines about run directories left out; then how many more


def left_out(problems: list[str]) -> None:
    """One line per run directory that is not offered (at most MAX_SHOWN, then a count)."""
    for line in problems[:MAX_SHOWN]:
        st.warning(f"Not offered: {show_path(line)}", icon=":material/warning:")
    if len(problems) > MAX_SHOWN:
        st.caption(f"… and {len(problems) - MAX_SHOWN} more run directories not offered.")


def describe(d: str, s: Summary) -> str:
    kind = f"measured ({s.backend} twin)" if s.backend else "simulated"
    n = s.replications
    where = Path(d).relative_to(runs_dir()) if Path(d).is_relative_to(runs_dir()) else show_path(d)
    return f"{where} — {kind}: {s.scenario}, {s.mode}, {n} replication{'s' * (n != 1)}"


@st.cache_data(show_spinner="Comparing (bootstrap)…", max_entries=32)
def compare(sim_dir: str, hw_dir: str, mtimes: tuple[float, float]) -> dict[str, Any]:
    """hw.compare.compare_dirs, cached per pair of directories and their files' modification times."""
    return compare_dirs(Path(sim_dir), Path(hw_dir))


def _mtime(d: str) -> float:
    return max((Path(d) / f).stat().st_mtime for f in (RunLayout.SPANS, RunLayout.SUMMARY))


def render() -> None:
    st.title("Twin: measured vs simulated")
    st.caption(
        "Measured: the hardware twin (`pqtwin hw run`) — real processes, real ML-KEM/ML-DSA/AES-GCM, real "
        "sockets and FL training on this machine. Simulated: the SimPy model (`pqtwin sim`) priced with a "
        "calibration profile. The figures are those of `pqtwin compare` (hw/compare.py)."
    )
    root = runs_dir()
    problems: list[str] = []
    dirs = run_dirs(root, problems)
    left_out(problems)
    measured = [d for d, s in dirs.items() if s.backend]
    if len(dirs) < 2 or not measured:
        st.info(
            f"Twin needs a simulated and a measured run directory under {show_path(root)}/ (found "
            f"{len(dirs)} runs, {len(measured)} measured). `make run` creates runs/localhost-sim and "
            "runs/localhost-hw."
        )
        return
    st.caption(f"{len(dirs)} run directories under {show_path(root)}/ ({len(measured)} measured).")
    picked = pick_runs(dirs, measured)
    if picked is None:  # no simulated run of the same scenario and mode: nothing to score against
        return
    sim, hw = picked
    try:
        result = compare(sim, hw, (_mtime(sim), _mtime(hw)))
    except (UserError, ValueError) as exc:  # a damaged spans or summary file: the readers name it
        show_problem(exc)
        return
    except OSError as exc:  # a file gone since the list was made
        st.error(f"{show_path(exc.filename or sim)}: cannot be read ({exc.strerror or exc})", icon=":material/error:")
        return
    for w in result["warnings"]:
        st.warning(w)
    load = dirs[hw].machine_load
    if load is not None and load.quiet:  # a busy machine is one of the warnings above
        st.caption(f"Measured on a quiet machine: {load.describe()}.")
    if (fabric := dirs[hw].fabric) is not None:  # a netns run: the links it measured before it started
        st.caption(f"Netns {fabric.describe()}.")
    m = {k: v for k, v in result["metrics"].items() if v["error_pct"] is not None and None not in v["error_ci95"]}
    if not m:
        st.info("No metric could be compared (see the warnings above).")
        return
    headline(m)
    at_speed_section(sim, hw, dirs[hw])
    if (line := paired_line(sim, hw)) is not None:
        st.caption(line)
    left, right = st.columns(2)
    left.plotly_chart(means_chart(m), key="tw_means")
    right.plotly_chart(error_chart(m), key="tw_errors")
    st.dataframe(table(m), hide_index=True)
    st.caption(
        f"error = (sim − hw) / hw × 100; 95 % percentile bootstrap over rounds ({RESAMPLES} resamples, "
        f"seed {BOOTSTRAP_SEED}), resampled within each replication. Not compared: "
        + (", ".join(f"{k} ({v})" for k, v in result["not_compared"].items()) or "none")
    )
    st.download_button(
        "compare.json", json.dumps(result, indent=2), "compare.json", "application/json", on_click="ignore"
    )


@st.cache_data(show_spinner="Simulating again at the measured speed…", max_entries=16)
def simulated_at_speed(sim_dir: str, hw_dir: str, mtimes: tuple[float, float]) -> dict[str, Any]:
    """hw.at_speed.at_measured_speed, cached as ``compare`` is."""
    return at_measured_speed(Path(sim_dir), [Path(hw_dir)])


def at_speed_section(sim: str, hw: str, summary: Summary) -> None:
    """Where the measured run's cores ran off their calibrated speed: on request, the model simulated again at that
    speed (``pqtwin compare --at-speed``), what is left of the error with the host's speed taken out."""
    speed = speed_of([summary])
    train = training_of(Path(sim), [summary]) if speed is not None else None
    if speed is None or not (off_speed(speed) or off_speed(train)):
        return
    state = f" and its training step {train:.2f}× its price (training probe)" if train is not None else ""
    ask = (f"The measured run's cores ran at {speed:.2f}× their calibrated speed (speed probe){state}. Simulate the "
           "model again on cores that fast (seconds; training and FedAvg keep their price unless the training probe "
           "read them dearer: the speed probe does not see the state they run in)")  # fmt: skip
    if not st.toggle(f"Simulate again at the measured speed ({speed:.2f}×)", key="tw_at_speed", help=ask):
        return
    try:
        got = simulated_at_speed(sim, hw, (_mtime(sim), _mtime(hw)))
    except (UserError, ValueError) as exc:
        show_problem(exc)
        return
    except OSError as exc:  # a file gone since the page was drawn
        st.error(f"{show_path(exc.filename or sim)}: cannot be read ({exc.strerror or exc})", icon=":material/error:")
        return
    if "not_simulated" in got:
        st.warning(f"Not simulated at the measured speed: {got['not_simulated']}", icon=":material/warning:")
        return
    cols = st.columns(4)
    cols[0].metric(
        f"Round latency p50: error at {speed:.2f}×",
        pct(got["error_p50_pct"]),
        help="the same simulation on cores as fast as the measured run's (median of its speed probe)",
    )
    priced = (
        f"; training at {got['training_ratio']:.2f}× its price (training probe)" if got.get("training_ratio") else ""
    )
    cols[0].caption(f"95 % CI {ci(got['error_p50_ci95'])}; p95 {pct(got['error_p95_pct'])}{priced}")
    st.caption(
        "An explanation beside the error, not a correction: the host's slow state slows compute-bound code more than "
        "memory-bound code, so at the measured speed the model can overshoot."
    )


def matching_sims(dirs: dict[str, Summary], hw: str) -> list[str]:
    """Simulated runs of the measured run's scenario and mode: other scenarios or modes would score the model
    on a different workload, so they are not offered."""
    s = dirs[hw]
    return [d for d, o in dirs.items() if o.backend is None and o.scenario == s.scenario and o.mode == s.mode]


def sim_command(hw: str, s: Summary) -> str:
    """The `pqtwin sim` command that makes the simulated counterpart of a measured run."""
    root = runs_dir()
    name = Path(hw).name.removesuffix("-hw")
    out = root / f"{name}-sim"
    if out.exists():  # taken by a run of another mode or scenario: a name of its own
        out = root / f"{name}-{s.mode or 'sim'}-sim"
    mode = f" --mode {s.mode}" if s.mode else ""
    return f"pqtwin sim {shlex.quote(show_path(s.scenario_file))}{mode} --out {shlex.quote(show_path(out))}"


def pick_runs(dirs: dict[str, Summary], measured: list[str]) -> tuple[str, str] | None:
    """The measured run and a simulated run of the same scenario and mode to compare (None: there is none)."""
    c1, c2 = st.columns(2)
    hw = c1.selectbox(
        "Measured run (hardware twin)",
        measured,
        format_func=lambda d: describe(d, dirs[d]),
        key="tw_hw",
        persist_state=KEEP,
    )
    sims = matching_sims(dirs, hw)
    if not sims:
        s = dirs[hw]
        mode = f"{s.mode} mode" if s.mode else "an unrecorded mode"
        st.info(
            f"No simulated run of scenario {s.scenario!r} in {mode} under {show_path(runs_dir())}/, "
            f"and runs of other scenarios or modes are not compared. Make one with `{sim_command(hw, s)}`.",
            icon=":material/info:",
        )
        return None
    sim = c2.selectbox(
        "Simulated run (same scenario and mode)",
        sims,
        format_func=lambda d: describe(d, dirs[d]),
        key=f"tw_sim_{hw}",  # per measured run: the choices depend on it
        persist_state=KEEP,
    )
    return sim, hw


def paired_line(sim: str, hw: str) -> str | None:
    """Where the measured run is a half of a ``--mode both`` twin run (hw/modes.py), the reduction concurrent vs
    sequential it measured with its pairs' CI, beside the simulator's where the simulated run is a half of a
    ``pqtwin sim --mode both`` run (its CI over replications); None for a run of one mode."""
    measured = read_modes(Path(hw).parent)
    if measured is None or not paired(measured):
        return None
    line = "Concurrent vs sequential, round latency reduction: measured " + reduction_text(measured)
    simulated = read_modes(Path(sim).parent)
    if simulated is not None and not paired(simulated):
        line += "; simulated " + reduction_text(simulated)
    return line + " (the measured run's rounds alternate S C C S …: both modes met the machine in the same state)."


def headline(m: dict[str, Any]) -> None:
    """Errors of the two latencies, how many metrics are within noise, and how many rounds were compared."""
    cols = st.columns(4)
    for col, key in zip(cols[:2], ("round_latency_s", "model_distribution_s"), strict=True):
        if key in m:
            v = m[key]
            col.metric(
                f"{v['label'].capitalize()}: error",
                pct(v["error_pct"]),
                help="(simulated − measured) / measured, of the means",
            )
            col.caption(f"95 % CI {ci(v['error_ci95'])}; sim {value(v, 'sim_mean')}, hw {value(v, 'hw_mean')}")
    within = sum(bool(v["within_ci"]) for v in m.values())
    cols[2].metric("Metrics within resampling noise", f"{within} of {len(m)}", help="0 inside the error's 95 % CI")
    cols[3].metric(
        "Rounds compared (sim / hw)",
        f"{m['round_latency_s']['n_sim']} / {m['round_latency_s']['n_hw']}" if "round_latency_s" in m else "—",
    )


def pct(x: float | None) -> str:
    """A signed error in percent; "—" when missing (None or NaN)."""
    return MISSING if x is None or not math.isfinite(x) else f"{x:+.1f} %"


def ci(bounds: list[float | None] | tuple[float | None, float | None]) -> str:
    """A 95 % CI of an error in percent; "—" when either bound is missing."""
    lo, hi = bounds
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return MISSING
    return f"[{lo:+.1f}, {hi:+.1f}] %"


def value(v: dict[str, Any], key: str) -> str:
    """A metric's value in the unit that reads best (compare.json gives each metric's base unit)."""
    return fmt(v[key], v.get("unit", "s"))


def table(m: dict[str, Any]) -> pd.DataFrame:
    """Text cells: times in the unit that reads best and "—" for anything missing, never "nan"."""
    rows = []
    for v in m.values():
        within = v["within_ci"]
        rows.append(
            {
                "metric": v["label"],
                "simulated mean": value(v, "sim_mean"),
                "measured mean": value(v, "hw_mean"),
                "error": pct(v["error_pct"]),
                "95 % CI of the error": ci(v["error_ci95"]),
                "p95 error": pct(v["error_p95_pct"]),
                "n sim / hw": f"{v['n_sim']} / {v['n_hw']}",
                "within CI": MISSING if within is None else "yes" if within else "no",
            }
        )
    return pd.DataFrame(rows)


def means_chart(m: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    labels = [v["label"] for v in m.values()]
    for side, name, color in (("sim", "simulated", charts.SIM_COLOR), ("hw", "measured", charts.HW_COLOR)):
        mean = [v[f"{side}_mean"] * 1e3 for v in m.values()]
        lo = [(v[f"{side}_mean"] - (v[f"{side}_mean_ci95"][0] or v[f"{side}_mean"])) * 1e3 for v in m.values()]
        hi = [((v[f"{side}_mean_ci95"][1] or v[f"{side}_mean"]) - v[f"{side}_mean"]) * 1e3 for v in m.values()]
        fig.add_trace(
            go.Bar(
                y=labels,
                x=mean,
                name=name,
                orientation="h",
                marker_color=color,
                error_x={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                hovertemplate="%{y}: %{x:.2f} ms<extra>" + name + "</extra>",
            )
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="ms, mean per round (95 % bootstrap CI)")
    return charts.layout(
        fig, "Simulated vs measured, per metric", height=420, barmode="group", legend={"orientation": "h", "y": -0.2}
    )


def error_chart(m: dict[str, Any]) -> go.Figure:
    labels = [v["label"] for v in m.values()]
    err = [v["error_pct"] for v in m.values()]
    lo = [v["error_pct"] - v["error_ci95"][0] if v["error_ci95"][0] is not None else 0 for v in m.values()]
    hi = [v["error_ci95"][1] - v["error_pct"] if v["error_ci95"][1] is not None else 0 for v in m.values()]
    colors = ["#2ca02c" if v["within_ci"] else "#d62728" for v in m.values()]
    fig = go.Figure(
        go.Scatter(
            x=err,
            y=labels,
            mode="markers",
            marker={"size": 12, "color": colors},
            error_x={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            hovertemplate="%{y}: %{x:+.1f} %<extra></extra>",
        )
    )
    fig.add_vline(x=0, line_color="#444")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="error % of the means, 95 % CI (green: 0 inside the CI)")
    return charts.layout(fig, "Fidelity: (sim − hw) / hw", height=420)
