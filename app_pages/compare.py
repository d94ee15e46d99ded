"""Compare suites: several crypto suites on the same scenario, with key and signature sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import (
    DEFAULT_REPLICATIONS,
    KEEP,
    SIMULATED_NOTE,
    Spec,
    base_data,
    kpis,
    load,
    profile_choices,
    run,
    scenario_files,
    suite_kind,
)
from pqtwin import charts
from sim import catalogue
from sim.contract import Summary
from sim.errors import UserError

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
    file, mode, profile, reps, seed = controls()
    chosen = st.multiselect(
        "Suites (KEM + signature + AEAD)",
        list(SUITES),
        default=DEFAULT,
        format_func=suite_label,
        key="cs_suites",
        persist_state=KEEP,
    )
    if not chosen:
        st.info("Pick at least one suite.")
        return
    rows, skipped = suite_rows(chosen, Spec(str(file), profile=profile), mode, seed, reps)
    for name, line in skipped:
        st.warning(f"Not simulated — {name}: {line.split(': ', 1)[-1]}")
    if not rows:
        return
    df = pd.DataFrame(rows)
    base = df["round latency (ms)"].iloc[0]
    df["Δ round vs first (%)"] = (df["round latency (ms)"] / base - 1) * 100
    st.caption(
        f"{file.stem} · {mode} · {reps} replications · seed {seed} (same seed for every suite: common "
        "random numbers, so differences come from the suite)"
    )
    perf = ["suite", "KEM", "signature", "AEAD", "kind", "round latency (ms)", "distribution (ms)",
            "crypto share (%)", "application MB", "energy per round (J)", "battery life (days)",
            "Δ round vs first (%)"]  # fmt: skip
    number = st.column_config.NumberColumn(format="%.1f")
    st.dataframe(df[perf], hide_index=True, column_config={c: number for c in perf[5:]})
    left, right = st.columns(2)
    left.plotly_chart(latency_chart(df), key="cs_latency")
    right.plotly_chart(
        charts.size_bars(df.assign(label=df.suite), SIZE_COLUMNS, "Wire sizes per suite", labels=False), key="cs_sizes"
    )
    if df["energy per round (J)"].notna().any():
        st.plotly_chart(energy_chart(df), key="cs_energy")
    st.dataframe(df[["suite", "KEM", "signature", *SIZE_COLUMNS]], hide_index=True)
    st.download_button(
        "Comparison (CSV)", df.to_csv(index=False), f"{file.stem}-{mode}-suites.csv", "text/csv", on_click="ignore"
    )


def controls() -> tuple[Path, str, str | None, int, int]:
    """Sidebar controls → (scenario file, mode, host profile file or None, replications, seed)."""
    sb = st.sidebar
    file: Path = sb.selectbox(
        "Scenario", scenario_files(), format_func=lambda p: p.name, key="cs_scenario", persist_state=KEEP
    )
    mode = sb.radio("Processing mode", ["sequential", "concurrent"], horizontal=True, key="cs_mode", persist_state=KEEP)
    profiles = profile_choices()
    prof = sb.selectbox("Host profile (CPU costs)", list(profiles), key="cs_profile", persist_state=KEEP)
    reps = int(sb.number_input("Replications", 1, 20, DEFAULT_REPLICATIONS, key="cs_reps", persist_state=KEEP))
    seed = int(
        sb.number_input(
            "Seed",
            0,
            2**31 - 1,
            int(base_data(str(file)).get("run", {}).get("seed", 1)),
            key=f"cs_seed_{file.stem}",
            persist_state=KEEP,
        )
    )
    profile = str(profiles[prof]) if profiles[prof] else None
    return file, mode, profile, reps, seed


def suite_rows(
    chosen: list[str], base: Spec, mode: str, seed: int, reps: int
) -> tuple[list[dict[str, object]], list[tuple[str, str]]]:
    """Simulate base with each chosen suite → (one row of sizes and KPIs per suite, (suite, first error line)
    of each suite that cannot be simulated)."""
    rows: list[dict[str, object]] = []
    skipped: list[tuple[str, str]] = []
    for name in chosen:
        kem, sig, aead = SUITES[name]
        ov = (f"workload.crypto.kem={kem}", f"workload.crypto.signature={sig}", f"workload.crypto.aead={aead}")
        spec = base._replace(overrides=ov)
        try:
            load(spec)
            result = run(spec, mode, seed, reps, label=name)
        except UserError as exc:
            skipped.append((name, exc.lines[0]))
            continue
        k = kpis(result).set_index("kpi")
        r, d = k.loc["round latency"], k.loc["model distribution"]
        rows.append(
            {
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
            }
        )
    return rows, skipped


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
