"""Explore: start from a shipped scenario, change what architects ask about, see KPIs with 95 % CIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app_pages.common import (
    DEFAULT_REPLICATIONS,
    KEEP,
    PAPER_LINE_S,
    SIMULATED_NOTE,
    Spec,
    algorithm_label,
    base_data,
    ci_text,
    kpis,
    load,
    ms,
    per_round,
    phase_extents,
    profile_choices,
    run,
    scenario_files,
    show_errors,
    show_path,
)
from app_pages.scenario_edit import build_data, device_totals
from pqtwin import charts
from sim import catalogue
from sim.errors import UserError
from sim.presets import DEVICE_CLASSES, LINK_PRESETS
from sim.runner import RunResult
from sim.scenario import Scenario

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
    for i, link in enumerate(data["deployment"]["network"]["links"]):
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
        "Scenario", scenario_files(), format_func=lambda p: p.name, key="ex_scenario", persist_state=KEEP
    )
    base = base_data(str(file))
    k = file.stem  # every other control's key carries the scenario
    devices = device_controls(base, k)
    overrides = crypto_controls(base["workload"]["crypto"], k)
    sb.markdown("**Deployment**")
    n0 = len(base["deployment"]["hosts"])
    nodes = sb.slider(
        "Number of nodes (hosts)",
        1,
        6,
        n0,
        key=f"ex_nodes_{k}",
        persist_state=KEEP,
        help="One FL client per node besides the aggregator's, one crypto worker per node",
    )
    net = sb.selectbox("Node network links", [AS_IS, *LINK_PRESETS], key=f"ex_net_{k}", persist_state=KEEP)
    access = sb.selectbox(
        "Device access link", [AS_IS, "ble", "ble-2m", "wifi-5ghz"], key=f"ex_access_{k}", persist_state=KEEP
    )
    profiles = profile_choices()
    prof = sb.selectbox("Host profile (CPU costs)", list(profiles), key=f"ex_profile_{k}", persist_state=KEEP)
    mode, seed, reps, run_overrides = workload_controls(base, k)
    overrides += run_overrides
    edited_nodes = nodes if nodes != n0 else None
    edited = build_data(file, (), edited_nodes, devices)
    overrides += network_overrides(edited, net, access)
    profile = profiles[prof]
    spec = Spec(str(file), tuple(overrides), edited_nodes, devices, str(profile) if profile else None)
    return spec, mode, seed, reps


def device_controls(base: dict[str, Any], k: str) -> tuple[tuple[str, int], ...]:
    """Devices per class (an expander of the sidebar) → the classes whose total changed, with that total."""
    totals = device_totals(base)
    with st.sidebar.expander("Devices per class", expanded=False):
        counts = {
            c: int(st.number_input(c, 0, 2000, totals.get(c, 0), key=f"ex_dev_{c}_{k}", persist_state=KEEP))
            for c in DEVICE_CLASSES
        }
    return tuple((c, n) for c, n in counts.items() if n != totals.get(c, 0))


def crypto_controls(crypto: dict[str, Any], k: str) -> list[str]:
    """One algorithm choice per suite part → overrides of those that differ from the scenario's."""
    sb = st.sidebar
    sb.markdown("**Crypto suite**")
    overrides: list[str] = []
    for kind, label in SUITE_PARTS:
        names = catalogue.names(kind)
        v = sb.selectbox(
            label,
            names,
            index=names.index(crypto[kind]),
            format_func=algorithm_label,
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
    rounds = int(sb.number_input("FL rounds per replication", 1, 50, r0, key=f"ex_rounds_{k}", persist_state=KEEP))
    reps = int(sb.number_input("Replications", 1, 20, DEFAULT_REPLICATIONS, key=f"ex_reps_{k}", persist_state=KEEP))
    seed = int(
        sb.number_input(
            "Seed", 0, 2**31 - 1, int(base.get("run", {}).get("seed", 1)), key=f"ex_seed_{k}", persist_state=KEEP
        )
    )
    overrides: list[str] = []
    if params != p0:
        overrides.append(f"workload.fl.model_parameters={params}")
    if rounds != r0:
        overrides.append(f"workload.fl.rounds={rounds}")
    return mode, seed, reps, overrides


def network_overrides(edited: dict[str, Any], net: str, access: str) -> list[str]:
    """Overrides for the node links' and the device access links' presets (of the structurally edited dict)."""
    overrides: list[str] = []
    if net != AS_IS:
        overrides += link_overrides(edited, net)
    if access != AS_IS:
        overrides += [
            f"workload.devices.{p['name']}.access_link={{preset: {access}}}"
            for p in edited["workload"].get("devices") or []
        ]
    return overrides


def kpi_row(result: RunResult) -> None:
    table = kpis(result).set_index("kpi")
    cols = st.columns(5)
    r, d = table.loc["round latency"], table.loc["model distribution"]
    cols[0].metric("Round latency (mean)", ms(r["mean"]), help="Distribution start → aggregated model, per round")
    cols[0].caption(ci_text(r.ci95_low, r.ci95_high))
    cols[1].metric(
        "Model distribution (mean)",
        ms(d["mean"]),
        delta=f"{(d['mean'] - PAPER_LINE_S) * 1e3:+,.0f} ms vs 1.5 s" if np.isfinite(d["mean"]) else None,
        delta_color="inverse",
        help="Distribution start → last client holding the verified model; the paper reports under 1.5 s",
    )
    cols[1].caption(ci_text(d.ci95_low, d.ci95_high))
    c = table.loc["crypto share of FL CPU time"]
    cols[2].metric(
        "Crypto share of FL CPU time",
        f"{c['mean']:.1%}",
        help="KEM, signature, AEAD and hashing time over all CPU time of the FL rounds",
    )
    cols[2].caption(ci_text(c.ci95_low, c.ci95_high, 100, "%"))
    b = table.loc["application bytes per replication"]
    cols[3].metric(
        "Application bytes",
        f"{b['mean'] / 1e6:,.2f} MB",
        help="Per replication: every message the pods and devices sent (rounds, handshakes, telemetry frames), "
        "each counted once at its size, including those between pods on one host. The caption's link bytes count "
        "every hop a message crossed and every resend.",
    )
    links = result.summary.link_bytes
    carried = f"; links carried {links.total / 1e6:,.2f} MB" if links is not None else ""
    cols[3].caption(ci_text(b.ci95_low, b.ci95_high, 1e-6, "MB", 2) + carried)
    util = {k.split(" ")[2]: v for k, v in table["mean"].items() if k.startswith("host utilisation")}
    host = max(util, key=lambda h: util[h])
    cols[4].metric(
        "Busiest host (offered load)",
        f"{util[host]:.0%}",
        help="Work asked of the host's cores that they could have done by the end of the run (an operation on one "
        "core from when it was asked), over their capacity, mean over replications; ≥ 100 % means overloaded",
    )
    others = ", ".join(f"{h} {u:.0%}" for h, u in util.items() if h != host)
    cols[4].caption(f"on {host}" + (f"; {others}" if others else ""))


def fmt_joules(j: float) -> str:
    """Energy in the unit that reads best, µJ to kJ."""
    for scale, unit in ((1e3, "kJ"), (1.0, "J"), (1e-3, "mJ")):
        if abs(j) >= scale:
            return f"{j / scale:,.2f} {unit}"
    return f"{j * 1e6:,.1f} µJ"


def energy_row(result: RunResult) -> None:
    """Energy per FL round on the priced hosts, and each device population's battery life (sim/energy.py)."""
    from pqtwin.tables import fmt_days

    e = result.summary.energy
    if e is None or (e.per_round_j is None and not e.devices):
        st.caption("Energy: no power model for these hosts or devices (a profile's `power`, a device class's power).")
        return
    cols = st.columns(4)
    if e.per_round_j is not None and e.per_round_j.mean is not None:
        lo, hi = e.per_round_j.ci95
        cols[0].metric("Energy per FL round", fmt_joules(e.per_round_j.mean),
                       help="Every host with a power model: idle power for the round's length plus each busy "
                       "core's power for the round's work (sim/energy.py)")  # fmt: skip
        cols[0].caption(f"95 % CI {fmt_joules(lo or 0)} – {fmt_joules(hi or 0)}")
    for col, (pop, d) in zip(cols[1:], e.devices.items(), strict=False):
        col.metric(f"Battery life, {pop}", fmt_days(d.battery_life_days),
                   help="The battery's energy over the device's average power at this run's duty cycle: frames, "
                   "sessions (MCU and radio) and sleep")  # fmt: skip
        how = "" if d.compute_modelled else "; MCU crypto not modelled (no device profile)"
        col.caption(f"{d.average_power_w * 1e6:,.1f} µW on a {d.battery}{how}")


def render() -> None:
    st.title("Explore a what-if")
    st.caption(SIMULATED_NOTE)
    try:
        spec, mode, seed, reps = controls()
        scenario = load(spec)
        result = run(spec, mode, seed, reps, label=f"{scenario.name} ({mode})")
    except UserError as exc:
        show_errors(exc)
        hint = "change the setting named above"
        if any("has no cost for" in line for line in exc.lines):
            hint = ("the host profile has no cost for an algorithm of the suite: pick another algorithm, or a "
                    "profile that prices it under *Host profile* (the Pi 4 profiles price every one)")  # fmt: skip
        st.info(f"This combination cannot be simulated as set: {hint}.")
        return
    s = result.summary
    st.markdown(
        f"**{scenario.name}** · {mode} · {s.suite['kem']} + {s.suite['signature']} + "
        f"{s.suite['aead']} · {reps} replications × {scenario.workload.fl.rounds} rounds · seed {seed} · "
        f"simulated in {s.wall_s:.2f} s"
    )
    kpi_row(result)
    energy_row(result)
    for w in s.warnings:
        st.warning(w)
    left, right = st.columns(2)
    left.plotly_chart(charts.phase_bars(phase_extents(result.spans)), key="ex_phases")
    right.plotly_chart(charts.latency_histogram(per_round(result.spans)), key="ex_hist")
    c1, c2, _ = st.columns([1, 2, 3])
    rounds = scenario.workload.fl.rounds  # keys carry the ranges: a stored choice never falls outside them
    rep = c1.selectbox("Replication", list(range(reps)), key=f"ex_tl_rep_{reps}", persist_state=KEEP)
    rnd = c2.slider("Round", 1, rounds, 1, key=f"ex_tl_round_{rounds}", persist_state=KEEP) if rounds > 1 else 1
    st.plotly_chart(charts.gantt(result.spans, rep, rnd), key="ex_gantt")
    st.plotly_chart(charts.topology(scenario), key="ex_topology")
    st.caption(
        "Same run from the command line"
        + (" (node and device edits: use the YAML below)" if spec.nodes or spec.devices else "")
        + ":"
    )
    st.code(cli_command(spec, mode, seed, reps), language="bash")
    downloads(spec, scenario, mode, result)


def cli_command(spec: Spec, mode: str, seed: int, reps: int) -> str:
    """The ``pqtwin sim`` command of the same run (structural edits have no command-line form)."""
    cli = f"pqtwin sim {show_path(spec.file)} --mode {mode} --seed {seed} --replications {reps}"
    return (
        cli
        + "".join(f" --set '{o}'" for o in spec.overrides)
        + (f" --profile {show_path(spec.profile)}" if spec.profile else "")
    )


def downloads(spec: Spec, scenario: Scenario, mode: str, result: RunResult) -> None:
    """The what-if scenario as YAML, the KPIs and the spans as CSV."""
    d1, d2, d3, _ = st.columns([1, 1, 1, 3])
    header = (
        f"# what-if of {show_path(spec.file)} from the PQ-IoMT Twin app; save under scenarios/ so profiles resolve\n"
    )
    name = f"{scenario.name}-{mode}"
    d1.download_button(
        "Scenario (YAML)", header + scenario.to_yaml(), f"{scenario.name}-whatif.yaml", on_click="ignore"
    )
    d2.download_button(
        "KPIs (CSV)", kpis(result).to_csv(index=False), f"{name}-kpis.csv", "text/csv", on_click="ignore"
    )
    d3.download_button(
        "Spans (CSV)", result.spans.to_csv(index=False), f"{name}-spans.csv", "text/csv", on_click="ignore"
    )
