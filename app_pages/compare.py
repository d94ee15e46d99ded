"""Compare suites: several crypto suites on the same scenario, with key and signature sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import background, explore
from app_pages.common import (
    DEFAULT_REPLICATIONS,
    KEEP,
    SIMULATED_NOTE,
    FileProblem,
    Spec,
    base_data,
    bounded_int,
    kpis,
    load,
    profile_choices,
    run,
    scenario_files,
    scenario_key,
    scenario_label,
    show_problem,
    suite_kind,
)
from pqtwin import charts
from sim import catalogue
from sim.contract import Summary
from sim.cost import estimate
from sim.deltas import deltas, is_paired
from sim.errors import UserError
from sim.runner import RunResult
from sim.units import counted, fmt_bytes, fmt_days, fmt_delta, fmt_fraction, fmt_joules, fmt_seconds

SUITES: dict[str, tuple[str, str, str]] = {  # short name: (KEM, signature, AEAD)
    "Classical": ("X25519", "Ed25519", "AES-256-GCM"),
    "Classical P-256": ("ECDH-P256", "ECDSA-P256", "AES-128-GCM"),
    "Classical RSA": ("X25519", "RSA-2048", "AES-256-GCM"),
    "PQC L1": ("ML-KEM-512", "ML-DSA-44", "AES-128-GCM"),
    "PQC L3": ("ML-KEM-768", "ML-DSA-65", "AES-256-GCM"),
    "PQC L5": ("ML-KEM-1024", "ML-DSA-87", "AES-256-GCM"),
    "PQC Falcon": ("ML-KEM-768", "Falcon-512", "AES-256-GCM"),
    "PQC SLH-DSA": ("ML-KEM-768", "SLH-DSA-SHA2-128s", "AES-256-GCM"),
    "Hybrid L3": ("X25519+ML-KEM-768", "ML-DSA-65", "AES-256-GCM"),
    "PQC L3 ChaCha": ("ML-KEM-768", "ML-DSA-65", "ChaCha20-Poly1305"),
}
DEFAULT = ["Classical", "PQC L3", "PQC L5", "Hybrid L3"]
SIZE_COLUMNS = {
    "KEM public key (B)": "KEM public key",
    "KEM ciphertext (B)": "KEM ciphertext",
    "signature public key (B)": "signature public key",
    "signature (B)": "signature",
}


def suite_label(name: str) -> str:
    return f"{name}: {' + '.join(SUITES[name])}"


def sizes(name: str) -> dict[str, object]:
    kem, sig, aead = SUITES[name]
    k, s = catalogue.get(kem), catalogue.get(sig)
    return {
        "suite": name,
        "kind": suite_kind(kem, sig),
        "KEM": kem,
        "signature": sig,
        "AEAD": aead,
        "KEM public key (B)": k.public_key_bytes,
        "KEM ciphertext (B)": k.ciphertext_bytes,
        "signature public key (B)": s.public_key_bytes,
        "signature (B)": s.signature_bytes,
    }


def render() -> None:
    st.title("Compare crypto suites")
    st.caption(SIMULATED_NOTE + " Sizes are exact wire sizes from sim/catalogue.py (FIPS 203/204/205, RFCs).")
    try:
        file, mode, profile, reps, seed = controls()
    except FileProblem as exc:  # the scenario file itself does not load (a damaged saved what-if)
        show_problem(exc)
        st.info("Pick another scenario under *Scenario*.")
        return
    chosen = st.multiselect(
        "Suites (KEM + signature + AEAD)",
        list(SUITES),
        default=DEFAULT,
        format_func=lambda n: n,  # the short name: a chip never overflows; the table lists the algorithms
        key="cs_suites",
        persist_state=KEEP,
    )
    if not chosen:
        st.info("Pick at least one suite.")
        return
    base = Spec(str(file), profile=profile)
    if not confirmed(chosen, base, mode, seed, reps):
        return
    runs, skipped = suite_runs(chosen, base, mode, seed, reps)
    for name, line in skipped:
        st.warning(f"Not simulated — {name}: {line.split(': ', 1)[-1]}")
    if not runs:
        return
    reference = baseline_choice(list(runs))
    pinned = explore.pinned()
    ref_result = pinned.result if reference == PINNED and pinned is not None else runs[reference]
    df = pd.DataFrame([suite_row(n, r, ref_result) for n, r in runs.items()])
    welch = not is_paired(ref_result.summary, next(iter(runs.values())).summary)
    st.caption(
        f"{scenario_label(file)} · {mode} · {counted(reps, 'replication')} · seed {seed} (same seed for every suite: "
        f"common random numbers, so differences come from the suite) · Δ against **{reference}**, "
        + ("Welch CI (the baseline has another seed or replications)" if welch else "CI paired over replications")
    )
    st.table(display(df), hide_index=True)  # a static table wraps its cells: no value is cut off at any width
    left, right = st.columns(2)
    left.plotly_chart(latency_chart(df), key="cs_latency")
    right.plotly_chart(
        charts.size_bars(df.assign(label=df.suite), SIZE_COLUMNS, "Wire sizes per suite", labels=False), key="cs_sizes"
    )
    if df["energy per round (J)"].notna().any():
        st.plotly_chart(energy_chart(df), key="cs_energy")
    st.dataframe(df[["suite", "KEM", "signature", "AEAD", *SIZE_COLUMNS]], hide_index=True)
    st.download_button(
        "Comparison (CSV)",
        df.to_csv(index=False),
        f"{scenario_key(file)}-{mode}-suites.csv",
        "text/csv",
        on_click="ignore",
    )


PINNED = "the baseline pinned on Explore"


def confirmed(chosen: list[str], base: Spec, mode: str, seed: int, reps: int) -> bool:
    """Ask once for all suites when together they are estimated over the app's threshold."""
    total_s = 0.0
    for name in chosen:
        try:
            total_s += estimate(load(suite_spec(base, name)), reps).wall_s
        except UserError:
            continue  # reported with the runs
    key = ("cs_go", tuple(chosen), base, mode, seed, reps)
    if total_s <= background.confirm_s() or st.session_state.get("cs_go") == key:
        return True
    st.info(f"{len(chosen)} suites are estimated at ~{fmt_seconds(total_s)} of simulation on this machine; long "
            "runs go to the background with a Stop button.", icon=":material/schedule:")  # fmt: skip
    if st.button(f"Run {len(chosen)} suites (~{fmt_seconds(total_s)})", key="cs_go_button", type="primary"):
        st.session_state["cs_go"] = key
        st.rerun()
    return False


def baseline_choice(names: list[str]) -> str:
    options = ([PINNED] if explore.pinned() is not None else []) + names
    label = "Δ against"
    return str(st.selectbox(label, options, key="cs_reference", help="The suite (or the pinned baseline) Δ is "
                            "measured from"))  # fmt: skip


def suite_spec(base: Spec, name: str) -> Spec:
    kem, sig, aead = SUITES[name]
    ov = (f"workload.crypto.kem={kem}", f"workload.crypto.signature={sig}", f"workload.crypto.aead={aead}")
    return base._replace(overrides=ov)


def display(df: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: each value in its best unit, "—" where missing."""
    return pd.DataFrame({
        "suite": df.suite, "kind": df.kind,
        "round latency": [fmt_seconds(v / 1e3) for v in df["round latency (ms)"]],
        "distribution": [fmt_seconds(v / 1e3) for v in df["distribution (ms)"]],
        "crypto share": [fmt_fraction(v / 100) for v in df["crypto share (%)"]],
        "app. bytes": [fmt_bytes(v * 1e6) for v in df["application MB"]],
        "energy / round": [fmt_joules(v) for v in df["energy per round (J)"]],
        "battery": [fmt_days(v) for v in df["battery life (days)"]],
        "Δ round": [fmt_delta(None if pd.isna(d) else d / 1e3, "s") + ("" if pd.isna(r) or d == 0 else f" ({r:+.1%})")
                    for d, r in zip(df["Δ round (ms)"], df["Δ round (rel)"], strict=True)],
        "Δ 95 % CI": df["Δ round CI"],
    })  # fmt: skip


def controls() -> tuple[Path, str, str | None, int, int]:
    """Sidebar controls → (scenario file, mode, host profile file or None, replications, seed)."""
    sb = st.sidebar
    file: Path = sb.selectbox(
        "Scenario", scenario_files(), format_func=scenario_label, key="cs_scenario", persist_state=KEEP
    )
    mode = sb.radio("Processing mode", ["sequential", "concurrent"], horizontal=True, key="cs_mode", persist_state=KEEP)
    profiles = profile_choices()
    prof = sb.selectbox("Host profile (CPU costs)", list(profiles), key="cs_profile", persist_state=KEEP)
    reps = bounded_int(sb, "Replications", 1, 20, DEFAULT_REPLICATIONS, "cs_reps")
    seed0 = int(base_data(str(file)).get("run", {}).get("seed", 1))
    seed = bounded_int(sb, "Seed", 0, 2**31 - 1, seed0, f"cs_seed_{scenario_key(file)}", own=True)
    profile = str(profiles[prof]) if profiles[prof] else None
    return file, mode, profile, reps, seed


def suite_runs(
    chosen: list[str], base: Spec, mode: str, seed: int, reps: int
) -> tuple[dict[str, RunResult], list[tuple[str, str]]]:
    """Simulate base with each chosen suite → ({suite: its run}, (suite, first error line) of each suite that cannot
    be simulated); a suite stopped in the background is left out."""
    runs: dict[str, RunResult] = {}
    skipped: list[tuple[str, str]] = []
    for name in chosen:
        try:
            result = run(suite_spec(base, name), mode, seed, reps, label=name, ask=False)
        except UserError as exc:
            skipped.append((name, exc.lines[0]))
            continue
        if result is None:  # waiting for Run again after a Stop: the suites after it wait too
            break
        runs[name] = result
    return runs, skipped


def suite_row(name: str, result: RunResult, reference: RunResult) -> dict[str, object]:
    """Sizes, KPIs and the round latency's Δ against the reference run (paired over replications)."""
    k = kpis(result).set_index("kpi")
    r, d = k.loc["round latency"], k.loc["model distribution"]
    found = {x.key: x for x in deltas((reference.summary, reference.spans), (result.summary, result.spans))}
    dr = found.get("round_latency_s")
    lo, hi = dr.ci95 if dr is not None else (None, None)
    return {
        **sizes(name),
        "round latency (ms)": r["mean"] * 1e3,
        "round CI low (ms)": r.ci95_low * 1e3,
        "round CI high (ms)": r.ci95_high * 1e3,
        "distribution (ms)": d["mean"] * 1e3,
        "distribution CI low (ms)": d.ci95_low * 1e3,
        "distribution CI high (ms)": d.ci95_high * 1e3,
        "crypto share (%)": k.loc["crypto share of FL CPU time", "mean"] * 100,
        "application MB": k.loc["application bytes per replication", "mean"] / 1e6,
        **energy_columns(result.summary),
        "Δ round (ms)": dr.delta * 1e3 if dr is not None and dr.delta is not None else None,
        "Δ round (rel)": dr.relative if dr is not None else None,
        "Δ round CI": "—" if lo is None or hi is None else f"[{fmt_delta(lo, 's')}, {fmt_delta(hi, 's')}]",
    }


def energy_columns(summary: Summary) -> dict[str, float | None]:
    """Energy per FL round over the priced hosts (J) and the first device population's battery life (days)."""
    e = summary.energy
    per_round = e.per_round_j.mean if e is not None and e.per_round_j is not None else None
    life = next((d.battery_life_days for d in e.devices.values()), None) if e is not None else None
    return {"energy per round (J)": per_round, "battery life (days)": life}


def energy_chart(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=df.suite, y=df["energy per round (J)"], marker_color="#8c564b",
                           hovertemplate="%{x}: %{y:.3f} J<extra>energy per FL round</extra>"))  # fmt: skip
    fig.update_yaxes(title="J per FL round (hosts with a power model)", rangemode="tozero")
    return charts.layout(fig, "Energy per suite", height=360)


def latency_chart(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    x = df.suite
    for col, name, color in (("round", "round latency", "#1f77b4"), ("distribution", "model distribution", "#2ca02c")):
        mean = df[f"{col} latency (ms)" if col == "round" else f"{col} (ms)"]
        fig.add_trace(
            go.Bar(
                x=x,
                y=mean,
                name=name,
                marker_color=color,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": df[f"{col} CI high (ms)"] - mean,
                    "arrayminus": mean - df[f"{col} CI low (ms)"],
                },
                hovertemplate="%{x}: %{y:.1f} ms<extra>" + name + "</extra>",
            )
        )
    charts.paper_line(fig, float(df[["round CI high (ms)", "distribution CI high (ms)"]].max().max()) / 1e3, "y")
    fig.update_yaxes(title="ms (mean, 95 % CI over replications)", rangemode="tozero")
    return charts.layout(
        fig,
        "Latency per suite",
        height=440,
        barmode="group",
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )
