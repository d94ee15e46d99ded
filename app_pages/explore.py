"""Explore: start from a shipped scenario, change what architects ask about, see KPIs with 95 % CIs."""

from __future__ import annotations

import hashlib
import shlex
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app_pages import insights, library
from app_pages.common import (
    DEFAULT_REPLICATIONS,
    KEEP,
    PAPER_LINE_S,
    SCENARIOS,
    SIMULATED_NOTE,
    FileProblem,
    Spec,
    algorithm_label,
    base_data,
    bounded_int,
    kpis,
    load,
    per_round,
    phase_extents,
    profile_choices,
    run,
    scenario_files,
    scenario_key,
    scenario_label,
    show_errors,
    show_path,
    show_problem,
)
from app_pages.scenario_edit import build_data, device_totals
from pqtwin import charts
from sim import catalogue
from sim.deltas import METHOD_TEXT, Delta, deltas
from sim.errors import UserError
from sim.presets import DEVICE_CLASSES, LINK_PRESETS
from sim.profile import load_profile
from sim.runner import RunResult, write_run
from sim.scenario import Scenario, profile_file
from sim.units import counted, fmt, fmt_bytes, fmt_days, fmt_delta, fmt_fraction, fmt_joules, fmt_seconds, fmt_watts

MAX_ROUNDS, MAX_REPLICATIONS, MAX_DEVICES_PER_CLASS = 1_000, 50, 10_000  # the cost estimate guards long runs
MIN_HORIZON_S, MAX_APP_HORIZON_S = 1.0, 86_400.0
MAX_NODES = 6
MODEL_SIZES = [10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000]
AS_IS = "as in the scenario"
SUITE_PARTS: tuple[tuple[catalogue.Kind, str], ...] = (
    ("kem", "Key exchange (KEM)"),
    ("signature", "Signature"),
    ("aead", "Payload encryption (AEAD)"),
)


def model_label(n: int) -> str:
    return f"{n / 1e6:g} M" if n >= 1_000_000 else f"{n / 1e3:g} k"


def link_overrides(data: dict[str, Any], preset: str) -> list[str]:
    """Give every link that touches a host the preset (other links, e.g. gateway Wi-Fi, stay)."""
    hosts = {h["name"] for h in data["deployment"]["hosts"]}
    out = []
    for i, link in enumerate(data["deployment"]["network"].get("links") or []):
        if link["a"] in hosts or link["b"] in hosts:
            out.append(f"deployment.network.links.{i}.preset={preset}")
            out += [
                f"deployment.network.links.{i}.{f}=null" for f in ("bandwidth_bps", "latency_s", "jitter_s", "loss")
            ]
    return out


def controls() -> tuple[Spec, str, int, int]:
    """Sidebar controls → (spec, mode, seed, replications); only changed settings become edits."""
    sb = st.sidebar
    file: Path = sb.selectbox(
        "Scenario", scenario_files(), format_func=scenario_label, key="ex_scenario", persist_state=KEEP
    )
    library_controls(file)
    base = base_data(str(file))
    k = scenario_key(file)  # every other control's key carries the scenario
    devices = device_controls(base, k)
    profiles = profile_choices()
    sb.markdown("**Crypto suite**")
    prof = sb.selectbox("Host profile (CPU costs)", list(profiles), key=f"ex_profile_{k}", persist_state=KEEP)
    overrides = crypto_controls(base["workload"]["crypto"], k, unpriced(file, base, profiles[prof]))
    sb.markdown("**Deployment**")
    n0 = len(base["deployment"]["hosts"])
    nodes = sb.slider(
        "Number of nodes (hosts)",
        1,
        max(MAX_NODES, n0),  # a scenario of more hosts keeps them until the user moves the slider
        n0,
        key=f"ex_nodes_{k}",
        persist_state=KEEP,
        help="One FL client per node besides the aggregator's, one crypto worker per node",
    )
    net = sb.selectbox("Node network links", [AS_IS, *LINK_PRESETS], key=f"ex_net_{k}", persist_state=KEEP)
    access = sb.selectbox(
        "Device access link", [AS_IS, "ble", "ble-2m", "wifi-5ghz"], key=f"ex_access_{k}", persist_state=KEEP
    )
    mode, seed, reps, run_overrides = workload_controls(base, k)
    overrides += run_overrides
    edited_nodes = nodes if nodes != n0 else None
    edited = build_data(file, (), edited_nodes, devices)
    overrides += network_overrides(edited, net, access)
    profile = profiles[prof]
    spec = Spec(str(file), tuple(overrides), edited_nodes, devices, str(profile) if profile else None)
    return spec, mode, seed, reps


def library_controls(file: Path) -> None:
    """Delete the saved what-if shown; upload a scenario YAML into the library (validated, then selected)."""
    sb = st.sidebar
    if library.is_saved(file):
        sb.button("Delete this saved what-if", key="ex_delete", on_click=_delete, args=(file,),
                  icon=":material/delete:")  # fmt: skip
    with sb.expander("Upload a scenario (YAML)", icon=":material/upload:"):
        st.file_uploader("Scenario file", type=["yaml", "yml"], key="ex_upload", on_change=_upload,
                         help=f"Validated like `pqtwin scenario check`, then saved in {show_path(library.root())} "
                         "under its name; profiles resolve against scenarios/profiles/")  # fmt: skip
        error = st.session_state.get("ex_upload_error")
        if error:
            show_errors(error)


def _upload() -> None:
    """The uploader's callback: save a valid file in the library and select it; keep the errors to show."""
    st.session_state["ex_upload_error"] = None
    up = st.session_state.get("ex_upload")
    if up is None:
        return
    try:
        path = library.upload(up.name, up.getvalue(), SCENARIOS / "uploaded.yaml")
    except UserError as exc:
        st.session_state["ex_upload_error"] = exc
        return
    st.session_state["ex_scenario"] = path


def _delete(file: Path) -> None:
    library.delete(file)
    st.session_state["ex_scenario"] = scenario_files()[0]


def device_controls(base: dict[str, Any], k: str) -> tuple[tuple[str, int], ...]:
    """Devices per class (an expander of the sidebar) → the classes whose total changed, with that total."""
    totals = device_totals(base)
    with st.sidebar.expander("Devices per class", expanded=False):
        counts = {
            c: bounded_int(st, c, 0, MAX_DEVICES_PER_CLASS, totals.get(c, 0), f"ex_dev_{c}_{k}", own=True)
            for c in DEVICE_CLASSES
        }
    return tuple((c, n) for c, n in counts.items() if n != totals.get(c, 0))


def unpriced(file: Path, base: dict[str, Any], override: Path | None) -> dict[str, str]:
    """{algorithm: the profile that has no cost for it} over the hosts' profiles in effect ({} if unreadable)."""
    refs = [str(override)] if override else [str(h.get("profile", "")) for h in base["deployment"]["hosts"]]
    out: dict[str, str] = {}
    for ref in dict.fromkeys(refs):
        ops = profile_ops(str(profile_file(file.parent, ref)))
        for alg in catalogue.CATALOGUE.values():
            if ops is not None and any(f"{alg.name}.{op}" not in ops for op in catalogue.OPS[alg.kind]):
                out.setdefault(alg.name, Path(ref).stem)
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def _profile_ops(path: str, mtime: float) -> frozenset[str] | None:
    try:
        return frozenset(load_profile(Path(path)).ops)
    except (UserError, OSError, ValueError):
        return None


def profile_ops(path: str) -> frozenset[str] | None:
    p = Path(path)
    return _profile_ops(path, p.stat().st_mtime) if p.is_file() else None


def crypto_controls(crypto: dict[str, Any], k: str, missing: dict[str, str]) -> list[str]:
    """One algorithm choice per suite part → overrides of those that differ from the scenario's. Algorithms the
    host profile cannot price stay listed, with the reason (picking one gives the profile's one-line error)."""
    sb = st.sidebar
    overrides: list[str] = []

    def label_of(name: str) -> str:
        return algorithm_label(name) + (f" — not priced by {missing[name]}" if name in missing else "")

    for kind, label in SUITE_PARTS:
        names = catalogue.names(kind)
        v = sb.selectbox(
            label,
            names,
            index=names.index(crypto[kind]),
            format_func=label_of,
            key=f"ex_{kind}_{k}",
            persist_state=KEEP,
        )
        if v != crypto[kind]:
            overrides.append(f"workload.crypto.{kind}={v}")
    return overrides


def workload_controls(base: dict[str, Any], k: str) -> tuple[str, int, int, list[str]]:
    """Mode, model size, rounds, replications and seed → (mode, seed, replications, workload overrides)."""
    sb = st.sidebar
    wl = base["workload"]
    sb.markdown("**Workload and run**")
    mode = sb.radio(
        "Processing mode",
        ["sequential", "concurrent"],
        horizontal=True,
        index=["sequential", "concurrent"].index(wl["processing"]["mode"]),
        key=f"ex_mode_{k}",
        persist_state=KEEP,
    )
    p0 = int(wl["fl"]["model_parameters"])
    sizes = sorted({*MODEL_SIZES, p0})
    params = sb.select_slider(
        "Model size (parameters, float32)",
        sizes,
        value=p0,
        key=f"ex_model_{k}",
        persist_state=KEEP,
        format_func=model_label,
    )
    r0 = int(wl["fl"]["rounds"])
    rounds = bounded_int(sb, "FL rounds per replication", 1, MAX_ROUNDS, r0, f"ex_rounds_{k}", own=True)
    reps = bounded_int(sb, "Replications", 1, MAX_REPLICATIONS, DEFAULT_REPLICATIONS, f"ex_reps_{k}")
    seed0 = int(base.get("run", {}).get("seed", 1))
    seed = bounded_int(sb, "Seed", 0, 2**31 - 1, seed0, f"ex_seed_{k}", own=True)
    h0 = float(base.get("run", {}).get("horizon_s", 3600.0))
    lo, hi = min(MIN_HORIZON_S, h0), max(MAX_APP_HORIZON_S, h0)  # the file's own shown as it is (as bounded_int)
    horizon = float(sb.number_input(
        f"Horizon, s ({lo:g}–{hi:,.0f})", lo, hi, h0, step=60.0, key=f"ex_horizon_{k}", persist_state=KEEP,
        help="run.horizon_s: devices send until then (FL may end earlier); a longer horizon costs more"))  # fmt: skip
    overrides: list[str] = []
    if params != p0:
        overrides.append(f"workload.fl.model_parameters={params}")
    if rounds != r0:
        overrides.append(f"workload.fl.rounds={rounds}")
    if horizon != h0:
        overrides.append(f"run.horizon_s={horizon:g}")
    return mode, seed, reps, overrides


def network_overrides(edited: dict[str, Any], net: str, access: str) -> list[str]:
    """Overrides for the node links' and the device access links' presets (of the structurally edited dict)."""
    overrides: list[str] = []
    if net != AS_IS:
        overrides += link_overrides(edited, net)
    if access != AS_IS and edited["workload"].get("devices"):
        # every population at once: addressed by name, "ecg.a" (a valid name) was read as the path ecg → a
        overrides.append(f"workload.devices.*.access_link={{preset: {access}}}")
    return overrides


@dataclass(frozen=True)
class Pinned:
    """The baseline pinned on Explore (``st.session_state["baseline"]``), shown on every page beside a what-if."""

    label: str
    spec: Spec
    mode: str
    seed: int
    replications: int
    result: RunResult


def pinned() -> Pinned | None:
    b = st.session_state.get("baseline")
    return b if isinstance(b, Pinned) else None


def kpi_deltas(result: RunResult, base: Pinned | None) -> dict[str, Delta]:
    if base is None:
        return {}
    found = deltas((base.result.summary, base.result.spans), (result.summary, result.spans))
    return {d.key: d for d in found}


def metric(col: Any, label: str, value: str, d: Delta | None, help: str, caption: str = "") -> None:
    """A KPI with, against a pinned baseline, its delta (green when better) and the delta's 95 % CI."""
    delta = None
    if d is not None and d.delta is not None:
        rel = f" ({d.relative:+.1%})" if d.relative is not None and d.unit != "fraction" else ""
        # Streamlit reads the direction from an ASCII "-": the typographic minus would read as a rise
        delta = (fmt_delta(d.delta, d.unit) + rel).replace("−", "-")
    color = "off" if d is not None and d.delta == 0 else "inverse" if d is None or d.lower_is_better else "normal"
    col.metric(label, value, delta=delta, delta_color=color, help=help)  # no change: grey, not a red "rise"
    if d is not None:
        ci = f"Δ 95 % CI {ci_delta(d)}" if d.ci95[0] is not None else "Δ: no CI"
        caption = f"{ci}, {'beyond' if d.significant else 'within'} noise; " + caption
    col.caption(caption)


def kpi_row(result: RunResult, dd: dict[str, Delta]) -> None:
    table = kpis(result).set_index("kpi")
    cols = st.columns(5)
    r, d = table.loc["round latency"], table.loc["model distribution"]
    metric(cols[0], "Round latency", fmt_seconds(r["mean"]), dd.get("round_latency_s"),
           "Mean: distribution start → aggregated model, per round",
           ci_range(r.ci95_low, r.ci95_high, "s"))  # fmt: skip
    under = "under" if d["mean"] < PAPER_LINE_S else "over"
    paper = "" if not np.isfinite(d["mean"]) else f"; {under} the paper's 1.5 s"
    metric(cols[1], "Model distribution", fmt_seconds(d["mean"]), dd.get("model_distribution_s"),
           "Mean: distribution start → last client holding the verified model; the paper reports under 1.5 s",
           ci_range(d.ci95_low, d.ci95_high, "s") + paper)  # fmt: skip
    c = table.loc["crypto share of FL CPU time"]
    metric(cols[2], "Crypto share", fmt_fraction(c["mean"]), dd.get("crypto_share"),
           "Of the FL rounds' CPU time: KEM, signature, AEAD and hashing over all CPU work",
           ci_range(c.ci95_low, c.ci95_high, "fraction"))  # fmt: skip
    b = table.loc["application bytes per replication"]
    links = result.summary.link_bytes
    carried = f"; links carried {fmt_bytes(links.total)}" if links is not None else ""
    metric(cols[3], "Application bytes", fmt_bytes(b["mean"]), dd.get("application_bytes"),
           "Per replication: every message the pods and devices sent (rounds, handshakes, telemetry frames), each "
           "counted once at its size, including those between pods on one host. Link bytes count every hop a "
           "message crossed and every resend.", ci_range(b.ci95_low, b.ci95_high, "B") + carried)  # fmt: skip
    util = {k.split(" ")[2]: v for k, v in table["mean"].items() if k.startswith("host utilisation")}
    host = max(util, key=lambda h: util[h])
    others = ", ".join(f"{h} {u:.0%}" for h, u in util.items() if h != host)
    cols[4].metric("Busiest host", f"{util[host]:.0%}",
                   help="Offered load: work asked of the host's cores that they could have done by the end of the run "
                   "(an operation on one core from when it was asked), over their capacity, mean over replications; "
                   "≥ 100 % means overloaded")  # fmt: skip
    cols[4].caption(f"on {host}" + (f"; {others}" if others else ""))


def ci_range(lo: float | None, hi: float | None, unit: str) -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "95 % CI —"
    return f"95 % CI [{fmt(lo, unit)}, {fmt(hi, unit)}]"


def energy_row(result: RunResult, dd: dict[str, Delta]) -> None:
    """Energy per FL round on the priced hosts, and each device population's battery life (sim/energy.py)."""
    e = result.summary.energy
    if e is None or (e.per_round_j is None and not e.devices):
        st.caption("Energy: no power model for these hosts or devices (a profile's `power`, a device class's power).")
        return
    cols = st.columns(4)
    if e.per_round_j is not None and e.per_round_j.mean is not None:
        lo, hi = e.per_round_j.ci95
        metric(cols[0], "Energy per FL round", fmt_joules(e.per_round_j.mean), dd.get("energy_per_round_j"),
               "Every host with a power model: idle power for the round's length plus each busy core's power for the "
               "round's work (sim/energy.py)", ci_range(lo, hi, "J"))  # fmt: skip
    for col, (pop, dev) in zip(cols[1:], e.devices.items(), strict=False):
        how = "" if dev.compute_modelled else "; MCU crypto not modelled (no device profile)"
        metric(col, f"Battery life, {pop}", fmt_days(dev.battery_life_days), dd.get(f"battery_life_days:{pop}"),
               "The battery's energy over the device's average power at this run's duty cycle: frames, sessions (MCU "
               "and radio) and sleep", f"{fmt_watts(dev.average_power_w)} on a {dev.battery}{how}")  # fmt: skip


def storm_row(result: RunResult, base: Pinned | None) -> None:
    """The start-up storm (every device's first session, as after a gateway reboot), where devices have one:
    when the last was up, and the handshakes under way over time (a baseline's beside it)."""
    storm = result.summary.telemetry.storm
    if storm is None or storm.all_up_s.mean is None:
        return
    other = base.result.summary.telemetry.storm if base is not None else None
    left, right = st.columns([1, 3])
    short = (
        ""
        if storm.devices >= storm.of_devices
        else f"; only {fmt(storm.devices, '')} of {storm.of_devices} up by the end"
    )
    metric(left, "All devices up after a start", fmt_seconds(storm.all_up_s.mean), None,
           "Every device opens its first session within its first period, as after a gateway reboot; a session is "
           "up once its pod has checked the device's last handshake message. The last device's, mean over "
           "replications", ci_range(*storm.all_up_s.ci95, "s") + short)  # fmt: skip
    left.caption(f"median device up at {fmt_seconds(storm.up_s.p50 or 0.0)}; at most "
                 f"{storm.peak_under_way.mean or 0:,.0f} handshakes under way at once")  # fmt: skip
    right.plotly_chart(charts.storm_backlog(storm, other), key="ex_storm")


def deltas_table(dd: dict[str, Delta]) -> None:
    """Every KPI against the baseline: values, Δ, relative Δ, its 95 % CI and how it was computed."""
    rows = [{"KPI": d.label, "baseline": fmt(d.baseline, d.unit), "what-if": fmt(d.whatif, d.unit),
             "Δ": fmt_delta(d.delta, d.unit), "Δ %": "—" if d.relative is None else f"{d.relative:+.1%}",
             "Δ 95 % CI": ci_delta(d),
             "beyond noise": "yes" if d.significant else "no" if d.ci95[0] is not None else "—"}
            for d in dd.values()]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    methods = {d.method for d in dd.values() if d.method != "none"}
    st.caption("Δ = what-if − baseline; CI " + "; ".join(METHOD_TEXT[m] for m in sorted(methods)) + "."
               if methods else "Δ = what-if − baseline; one replication: no CIs (raise Replications).")  # fmt: skip


def ci_delta(d: Delta) -> str:
    lo, hi = d.ci95
    return "—" if lo is None or hi is None else f"[{fmt_delta(lo, d.unit)}, {fmt_delta(hi, d.unit)}]"


def baseline_bar(spec: Spec, mode: str, seed: int, reps: int, label: str, result: RunResult) -> Pinned | None:
    """Pin the current what-if as the baseline, or clear it; the pinned baseline (None when none)."""
    base = pinned()
    row = st.container(horizontal=True, vertical_alignment="center")
    if row.button("Pin as baseline", icon=":material/push_pin:", key="ex_pin",
                   help="Keep this what-if as the reference: every KPI then shows its difference from it"):  # fmt: skip
        st.session_state["baseline"] = base = Pinned(label, spec, mode, seed, reps, result)
    if base is not None and row.button("Clear baseline", key="ex_unpin"):
        st.session_state["baseline"] = base = None
    if base is not None:
        same = base.spec == spec and (base.mode, base.seed, base.replications) == (mode, seed, reps)
        row.caption(f"Baseline: **{base.label}**" + (" (this what-if)" if same else ""))
    return base


def render() -> None:
    st.title("Explore a what-if")
    st.caption(SIMULATED_NOTE)
    try:
        spec, mode, seed, reps = controls()
        scenario = load(spec)
        result = run(spec, mode, seed, reps, label=f"{scenario.name} ({mode})")
    except FileProblem as exc:  # the scenario file itself does not load (a damaged saved what-if)
        show_problem(exc)
        st.info("This scenario file cannot be loaded as it is: pick another under *Scenario* (a saved what-if can "
                "be deleted there), or fix the file.")  # fmt: skip
        return
    except UserError as exc:
        show_errors(exc)
        hint = "change the setting named above"
        if any("has no cost for" in line for line in exc.lines):
            hint = ("the host profile has no cost for an algorithm of the suite: pick another algorithm, or a "
                    "profile that prices it under *Host profile* (the Pi 4 profiles price every one)")  # fmt: skip
        st.info(f"This combination cannot be simulated as set: {hint}.")
        return
    if result is None:  # a long run waiting for its go, or stopped: run() said so
        return
    s = result.summary
    label = f"{whatif_name(spec, scenario, mode, seed, reps)} · {mode} · {s.suite['kem']} + {s.suite['signature']}"
    st.markdown(
        f"**{scenario.name}** · {mode} · {s.suite['kem']} + {s.suite['signature']} + "
        f"{s.suite['aead']} · {counted(reps, 'replication')} × {counted(scenario.workload.fl.rounds, 'round')} · "
        f"seed {seed} · "
        f"simulated in {fmt_seconds(s.wall_s)}"
    )
    base = baseline_bar(spec, mode, seed, reps, label, result)
    dd = kpi_deltas(result, base)  # once: each KPI, the table and the insights read them
    kpi_row(result, dd)
    energy_row(result, dd)
    for line in insights.explain(result, scenario, base.result if base else None, dd):
        st.info(line, icon=":material/lightbulb:")
    if base is not None:
        with st.expander(f"Every KPI against the baseline ({base.label})", expanded=False):
            deltas_table(dd)
    for w in s.warnings:
        st.warning(w)
    charts_block(result, scenario, reps, base)
    storm_row(result, base)
    st.caption(
        "Same run from the command line"
        + (" (node and device edits: use the YAML below)" if spec.nodes or spec.devices else "")
        + ":"
    )
    st.code(cli_command(spec, mode, seed, reps), language="bash")
    save_block(scenario, mode, seed, reps)
    downloads(spec, scenario, mode, seed, reps, result, base)


def charts_block(result: RunResult, scenario: Scenario, reps: int, base: Pinned | None) -> None:
    """Phase breakdown, latency distribution and the timeline of one round; with a baseline, beside it."""
    beside = base is not None and st.toggle("Show the baseline beside", value=True, key="ex_beside")
    other = base.result if beside and base is not None else None
    left, right = st.columns(2)
    ext, hist = phase_extents(result.spans), per_round(result.spans)
    base_ext, base_hist = (phase_extents(other.spans), per_round(other.spans)) if other else (None, None)
    left.plotly_chart(charts.phase_bars(ext, baseline=base_ext), key="ex_phases")
    right.plotly_chart(charts.latency_histogram(hist, baseline=base_hist), key="ex_hist")
    c1, c2, _ = st.columns([1, 2, 3])
    rounds = scenario.workload.fl.rounds  # keys carry the ranges: a stored choice never falls outside them
    rep = c1.selectbox("Replication", list(range(reps)), key=f"ex_tl_rep_{reps}", persist_state=KEEP)
    rnd = c2.slider("Round", 1, rounds, 1, key=f"ex_tl_round_{rounds}", persist_state=KEEP) if rounds > 1 else 1
    if other is None:
        st.plotly_chart(charts.gantt(result.spans, rep, rnd), key="ex_gantt")
    else:  # one time axis for both, so lengths compare by eye
        ends = [round_end_ms(x.spans, rep, rnd) for x in (result, other)]
        top = max((e for e in ends if e is not None), default=None)
        g1, g2 = st.columns(2)
        g1.plotly_chart(charts.gantt(result.spans, rep, rnd, "What-if", x_max_ms=top), key="ex_gantt")
        g2.plotly_chart(charts.gantt(other.spans, rep, rnd, "Baseline", x_max_ms=top), key="ex_gantt_base")
    st.plotly_chart(charts.topology(scenario), key="ex_topology")


def round_end_ms(spans: pd.DataFrame, rep: int, rnd: int) -> float | None:
    """The length of a round's timeline (ms from its start), None when the run has no such round."""
    sel = spans[(spans.replication == rep) & (spans["round"] == rnd)]
    return float((sel.end_s.max() - sel.start_s.min()) * 1e3) if len(sel) else None


def whatif_name(spec: Spec, scenario: Scenario, mode: str, seed: int, reps: int) -> str:
    """The what-if's name for files: a saved one's name; the scenario's, as is; else with a short hash of the
    edits, so distinct what-ifs download to distinct file names."""
    if not (spec.overrides or spec.nodes or spec.devices or spec.profile):
        return scenario.name
    h = hashlib.sha256(repr((spec.overrides, spec.nodes, spec.devices, spec.profile)).encode()).hexdigest()[:8]
    return f"{scenario.name}-{h}"


def save_block(scenario: Scenario, mode: str, seed: int, reps: int) -> None:
    """Name and save the what-if in the library (app_pages/library.py); it then loads from the Scenario list."""
    saved = st.session_state.pop("ex_saved", None)
    with st.expander("Save this what-if", expanded=saved is not None, icon=":material/bookmark_add:"):
        c1, c2 = st.columns([3, 1])
        name = c1.text_input("Name (letters, digits, . _ -)", key="ex_save_name", max_chars=63,
                             placeholder="e.g. ward-ml-kem-1024")  # fmt: skip
        c2.write("")
        if c2.button("Save", key="ex_save", type="primary"):
            try:
                path = library.save(scenario, name, mode, seed, reps)
            except UserError as exc:
                show_errors(exc)
            else:  # rerun: the Scenario list in the sidebar, drawn before this, gains the new entry
                st.session_state["ex_saved"] = (f"Saved as {path.parent.name} in {show_path(library.root())}: pick "
                                                f"★ {path.parent.name} under Scenario to load it.")  # fmt: skip
                st.rerun()
        if saved is not None:
            st.success(saved)


def cli_command(spec: Spec, mode: str, seed: int, reps: int) -> str:
    """The ``pqtwin sim`` command of the same run (structural edits have no command-line form). Every path and
    override quoted for the shell: a what-if under a home with a space (or a ``$``) pasted as shown runs it."""
    cli = f"pqtwin sim {shlex.quote(show_path(spec.file))} --mode {mode} --seed {seed} --replications {reps}"
    return (
        cli
        + "".join(f" --set {quoted(o)}" for o in spec.overrides)
        + (f" --profile {shlex.quote(show_path(spec.profile))}" if spec.profile else "")
    )


def quoted(text: str) -> str:
    """Single-quoted for the shell always (as the command has always shown overrides), quotes inside escaped."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def downloads(spec: Spec, scenario: Scenario, mode: str, seed: int, reps: int, result: RunResult,
              base: Pinned | None) -> None:  # fmt: skip
    """The what-if scenario as YAML, the KPIs and the spans as CSV, and the report to hand over."""
    name = whatif_name(spec, scenario, mode, seed, reps)
    row = st.container(horizontal=True)  # buttons as wide as their labels: none is cut off at any width
    header = (
        f"# what-if {name} of {show_path(spec.file)} from the PQ-IoMT Twin app; save under scenarios/ so profiles "
        "resolve\n"
    )
    row.download_button("Scenario (YAML)", header + scenario.to_yaml(), f"{name}.yaml", on_click="ignore")
    row.download_button(
        "KPIs (CSV)", kpis(result).to_csv(index=False), f"{name}-{mode}-kpis.csv", "text/csv", on_click="ignore"
    )
    row.download_button(
        "Spans (CSV)", result.spans.to_csv(index=False), f"{name}-{mode}-spans.csv", "text/csv", on_click="ignore"
    )
    report_button(row, spec, scenario, mode, seed, reps, result, base, name)


def report_button(col: Any, spec: Spec, scenario: Scenario, mode: str, seed: int, reps: int, result: RunResult,
                  base: Pinned | None, name: str) -> None:  # fmt: skip
    """ "Report (HTML)": the same self-contained report as ``pqtwin report``, built when asked (it embeds
    plotly.js, ~4 MB): this what-if, its baseline when pinned, and the command that reproduces it."""
    # the report belongs to these two results exactly (names can repeat: a saved what-if may carry the scenario's)
    key = ("ex_report", summary_hash(result), summary_hash(base.result) if base else None, name)
    made = st.session_state.get("ex_report")
    if made is not None and made[0] == key:
        col.download_button("Download report", made[1], f"{name}-{mode}-report.html", "text/html",
                            on_click="ignore", type="primary", key="ex_report_dl")  # fmt: skip
        pdf_button(col, key, made[1], f"{name}-{mode}-report.pdf")
        return
    if col.button("Report (HTML)", key="ex_report_make", help="A self-contained HTML file to hand over"):
        with st.spinner("Writing the report…"):
            html = make_report(scenario, mode, seed, reps, result, base, cli_command(spec, mode, seed, reps))
        st.session_state["ex_report"] = (key, html)
        st.rerun()


def summary_hash(result: RunResult) -> str:
    return hashlib.sha256(result.summary.model_dump_json(exclude={"wall_s", "peak_rss_bytes"}).encode()).hexdigest()


def pdf_button(col: Any, key: tuple[Any, ...], html: str, file_name: str) -> None:
    """The report as PDF, printed by headless Chromium when this machine has one (pqtwin/report.py write_pdf)."""
    from pqtwin import report

    pdf = st.session_state.get("ex_report_pdf")
    if pdf is not None and pdf[0] == key:
        col.download_button("Download PDF", pdf[1], file_name, "application/pdf", on_click="ignore", key="ex_pdf_dl")
        return
    try:
        report.chromium()
    except UserError:
        col.caption("PDF: no Chromium on this server")
        return
    if col.button("Report (PDF)", key="ex_pdf_make", help="Printed from the HTML report by headless Chromium"):
        with st.spinner("Printing the report…"), tempfile.TemporaryDirectory(prefix="pqtwin-pdf-") as tmp:
            (Path(tmp) / "report.html").write_text(html, encoding="utf-8")
            report.write_pdf(Path(tmp) / "report.html", Path(tmp) / "report.pdf")
            st.session_state["ex_report_pdf"] = (key, (Path(tmp) / "report.pdf").read_bytes())
        st.rerun()


def make_report(scenario: Scenario, mode: str, seed: int, reps: int, result: RunResult, base: Pinned | None,
                command: str) -> str:  # fmt: skip
    """pqtwin/report.py on this run (and the baseline's), written to a temporary run directory first."""
    from pqtwin import report

    with tempfile.TemporaryDirectory(prefix="pqtwin-report-") as tmp:
        # each run with the mode, seed and replications it ran with, so the report's diff shows only real ones
        write_run(result, Path(tmp) / "whatif", library.as_run(scenario, mode, seed, reps))
        baseline, base_command = None, None
        if base is not None:
            base_scenario = library.as_run(load(base.spec), base.mode, base.seed, base.replications)
            write_run(base.result, Path(tmp) / "baseline", base_scenario)
            # dir=None: the report must not name a temporary directory that is gone once it is downloaded
            baseline = replace(report.load_run(Path(tmp) / "baseline", label=base.label), dir=None)
            base_command = cli_command(base.spec, base.mode, base.seed, base.replications)
        run = replace(report.load_run(Path(tmp) / "whatif", label=scenario.name), dir=None)
        return report.report_html(run, baseline, command, baseline_command=base_command)
