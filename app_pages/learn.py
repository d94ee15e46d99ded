"""Learn: a guided story in eight steps, each a short plain explanation and one control to play with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pydantic import BaseModel, Field

from app_pages.common import (
    KEEP,
    ROOT,
    SCENARIOS,
    Spec,
    algorithm_label,
    per_round,
    run,
    show_path,
    show_problem,
)
from app_pages.explore import MODEL_SIZES, model_label
from pqtwin import charts
from sim import catalogue
from sim.contract import RECORD_HEADER_BYTES, SIGNATURE_LENGTH_BYTES
from sim.errors import UserError
from sim.model import HELLO_BYTES
from sim.runner import RunResult
from sim.units import fmt_bytes, fmt_fraction, fmt_seconds

if TYPE_CHECKING:
    from sim.study import StudySpec

STEPS = [
    "1 · The quantum threat",
    "2 · KEM, signature, AEAD",
    "3 · Key and signature sizes",
    "4 · One FL round",
    "5 · Sequential vs concurrent",
    "6 · Reproducing the study",
    "7 · What PQC costs a battery",
    "8 · A ward switched on",
]
PAPER = str(SCENARIOS / "paper-3node.yaml")
QUANTUM_YEARS = 15  # default of z, the user's assumption (not a forecast)
MIGRATION_YEARS = 5  # default of y: an assumption for illustration
SUITES = {  # name: (KEM, signature)
    "classical (X25519 + Ed25519)": ("X25519", "Ed25519"),
    "post-quantum (ML-KEM-768 + ML-DSA-65)": ("ML-KEM-768", "ML-DSA-65"),
    "hybrid (X25519+ML-KEM-768 + ML-DSA-65)": ("X25519+ML-KEM-768", "ML-DSA-65"),
}


def _go(delta: int) -> None:
    i = STEPS.index(st.session_state.get("learn_step", STEPS[0]))
    st.session_state["learn_step"] = STEPS[min(len(STEPS) - 1, max(0, i + delta))]


def render() -> None:
    st.title("Learn: post-quantum security for medical FL")
    step = st.radio("Step", STEPS, horizontal=True, key="learn_step", persist_state=KEEP, label_visibility="collapsed")
    STEP_PAGES[STEPS.index(step)]()
    prev, nxt, _ = st.columns([1, 1, 6])
    prev.button("← Previous", on_click=_go, args=(-1,), disabled=step == STEPS[0], key="learn_prev")
    nxt.button("Next →", on_click=_go, args=(1,), disabled=step == STEPS[-1], key="learn_next")


def _years(n: int) -> str:
    return f"{n} year{'s' * (n != 1)}"


def mosca(shelf_years: int, migration_years: int, quantum_years: int) -> int:
    """Years of exposure by Mosca's inequality: data sent until the migration ends must stay secret x years
    more, so if x + y > z it is readable for x + y − z years while still meant to be secret (0: safe)."""
    return max(0, shelf_years + migration_years - quantum_years)


def threat() -> None:
    st.markdown(
        "Today's public-key cryptography rests on two hard problems: **factoring** (RSA) and **discrete "
        "logarithms on elliptic curves** (ECDH, X25519, ECDSA, Ed25519). A large quantum computer running "
        "**Shor's algorithm** solves both, so it could recover the keys of any session it recorded. "
        "That is **harvest now, decrypt later**: an attacker records encrypted medical traffic today and "
        "reads it once the machine exists. Symmetric ciphers are only weakened (Grover's algorithm roughly "
        "halves the key length), so AES-256 stays safe. NIST's replacements (2024): **ML-KEM** (FIPS 203) "
        "for key establishment, **ML-DSA** (FIPS 204) and **SLH-DSA** (FIPS 205) for signatures.\n\n"
        "**Mosca's inequality** says when to worry: if the data's shelf life *x* plus the time *y* to migrate "
        "the system to post-quantum crypto exceeds the time *z* until a quantum computer can break it, data "
        "sent before the migration ends is exposed for *x + y − z* years."
    )
    c1, c2, c3 = st.columns(3)
    x = c1.slider(
        "x · data shelf life (years)",
        0,
        60,
        25,
        help="Years a medical record sent today must stay confidential.",
        key="learn_years",  # the name saved sessions use for the shelf life
        persist_state=KEEP,
    )
    y = c2.slider(
        "y · migration time (years)",
        0,
        20,
        MIGRATION_YEARS,
        help="Years to move this system to post-quantum crypto; until then it sends classically protected data.",
        key="learn_migration",
        persist_state=KEEP,
    )
    z = c3.slider(
        "z · years to a quantum computer (your assumption)",
        1,
        50,
        QUANTUM_YEARS,
        help="Years until a cryptographically relevant quantum computer exists: an assumption, not a forecast.",
        key="learn_quantum",
        persist_state=KEEP,
    )
    exposed = mosca(x, y, z)
    end = max(x + y, z) + 5
    rows = [  # (label, start, length, colour), years from today
        ("y · migration to PQC", 0, y, "#ff7f0e"),
        ("x · shelf life of the last<br>classically protected record", y, x, "#1f77b4"),
        ("z · until a quantum computer<br>(your assumption)", 0, z, "#9467bd"),
        ("exposed: readable while<br>still meant to be secret", z, exposed, "#d62728"),
    ]
    fig = go.Figure()
    for label, base, length, color in rows:
        hover = f"{label.replace('<br>', ' ')}: years {base} to {base + length}<extra></extra>"
        bar = go.Bar(
            y=[label],
            x=[length],
            base=[base],
            orientation="h",
            marker_color=color,
            text=[_years(length) if length else ""],
            hovertemplate=hover,
        )
        fig.add_trace(bar)
    # the quantum computer's arrival on the shared axis: what lies right of it on the x and y bars is readable
    fig.add_vline(x=z, line_dash="dash", line_color="#9467bd")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="years from today", range=[0, end])
    title = "Mosca's inequality: x + y against z"
    st.plotly_chart(charts.layout(fig, title, height=340, showlegend=False), key="learn_threat")
    if exposed:
        st.warning(
            f"x + y = {x + y} > z = {z}: records sent until the migration ends stay readable for {_years(exposed)} "
            "while still meant to be secret — start the migration now.",
            icon=":material/lock_open:",
        )
    else:
        st.success(
            f"x + y = {x + y} ≤ z = {z}: safe under your assumption, with {_years(z - x - y)} to spare.",
            icon=":material/lock:",
        )
    st.caption(
        "z is your assumption, not a forecast: nobody knows when a cryptographically relevant quantum computer "
        'will exist. After M. Mosca, "Cybersecurity in an era with quantum computers: will we be ready?", '
        "IEEE Security & Privacy 16(5), 2018."
    )


PER_MESSAGE = "per message (as FL messages with rekey.fl: per_message)"
PER_SESSION = "per session, rekey every hour (as devices do)"
SESSION_S = 3600.0  # devices rekey hourly (the battery step's default); the text says "every hour"
FRAME_PERIODS_S = [0.1, 0.25, 1.0, 5.0, 30.0, 60.0]
PQ_SUITE = "post-quantum (ML-KEM-768 + ML-DSA-65)"


def record_overhead_bytes(aead: catalogue.Algorithm) -> int:
    """What sealing adds to every record the channel sends (hw/channel.py): the 21-byte header (type, sequence,
    send time, length) and the AEAD tag; the nonce is the sequence number, never sent."""
    return RECORD_HEADER_BYTES + aead.aead_overhead_bytes


def signature_wire_bytes(sig: catalogue.Algorithm) -> int:
    """A signature in a signed message (sim/model.py message_bytes): + its length when the size varies."""
    return sig.signature_bytes + (0 if sig.signature_bytes == sig.signature_max_bytes else SIGNATURE_LENGTH_BYTES)


def message_crypto_bytes(kem: catalogue.Algorithm, sig: catalogue.Algorithm) -> int:
    """A per-message record's body beyond the sealed payload: the signature and a fresh KEM ciphertext."""
    return signature_wire_bytes(sig) + kem.ciphertext_bytes


def handshake_bytes(kem: catalogue.Algorithm, sig: catalogue.Algorithm) -> int:
    """One session's handshake, both directions (sim/model.py handshake): hello; the responder's signed
    ephemeral KEM key with its identity key; the initiator's ciphertext, signature and identity key."""
    server = kem.public_key_bytes + sig.signature_bytes + sig.public_key_bytes
    finish = kem.ciphertext_bytes + sig.signature_bytes + sig.public_key_bytes
    return HELLO_BYTES + server + finish


def primitives() -> None:
    st.markdown(
        "Three tools secure every FL message and telemetry frame:\n"
        "- **KEM** (key encapsulation, e.g. ML-KEM): two parties agree on a fresh secret key over an open network; "
        "the sender ships a *ciphertext* that only the receiver can open.\n"
        "- **Signature** (e.g. ML-DSA): proves who sent a model or an update and that nobody changed it.\n"
        "- **AEAD** (authenticated encryption, e.g. AES-256-GCM): encrypts the bulk data with the agreed key and "
        "detects any tampering (a 16-byte tag); its 12-byte nonce is the record's sequence number, so it is "
        "never sent.\n\n"
        "How often keys are established decides the cost. Our FL messages can carry a fresh encapsulation and a "
        "signature each (`rekey.fl: per_message`); a sensor instead runs one signed KEM handshake per session, "
        "rekeys every hour, and seals each frame in between with the AEAD alone. Choose, slide the message size "
        "and watch what the crypto adds on the wire."
    )
    size = st.select_slider(
        "Message size",
        [100, 1_000, 10_000, 100_000, 1_000_000],
        value=1_000,
        key="learn_size",
        persist_state=KEEP,
        format_func=lambda b: (
            fmt_bytes(b) + (" (telemetry frame)" if b == 100 else " (1 MB model update)" if b == 1_000_000 else "")
        ),
    )
    c1, c2 = st.columns([2, 1])
    keying = c1.radio("Keys are established", [PER_SESSION, PER_MESSAGE], key="learn_keying", persist_state=KEEP)
    session = keying == PER_SESSION
    period_s = c2.select_slider(
        "Frame period",
        FRAME_PERIODS_S,
        value=1.0,
        key="learn_period",
        persist_state=KEEP,
        format_func=fmt_seconds,
        disabled=not session,  # per message there is no session to share
    )
    frames = max(1, round(SESSION_S / period_s))
    aead = catalogue.get("AES-256-GCM")
    record = record_overhead_bytes(aead)
    rows = []
    for name, (kem_name, sig_name) in SUITES.items():
        kem, sig = catalogue.get(kem_name), catalogue.get(sig_name)
        row = {"suite": name, "payload": size, "record header + AEAD tag": record}
        if session:
            row["handshake, amortised"] = handshake_bytes(kem, sig) / frames
        else:
            row["signature"] = signature_wire_bytes(sig)
            row["KEM ciphertext"] = kem.ciphertext_bytes
        rows.append(row)
    df = pd.DataFrame(rows).set_index("suite")
    total = df.sum(axis=1)
    colors = {
        "payload": "#c7c7c7",
        "record header + AEAD tag": "#2ca02c",
        "handshake, amortised": "#9467bd",
        "signature": "#ff7f0e",
        "KEM ciphertext": "#1f77b4",
    }
    fig = go.Figure()
    for col in df.columns:
        hover = "%{y:,.1f} B<extra>" + col + "</extra>"
        fig.add_trace(go.Bar(x=df.index, y=df[col], name=col, marker_color=colors[col], hovertemplate=hover))
    for x, t in total.items():
        fig.add_annotation(
            x=x, y=t, text=f"{fmt_bytes(t)} (+{fmt_fraction((t - size) / size)})", showarrow=False, yshift=10
        )
    what = "frame in an hourly session" if session else "message with a fresh KEM + signature"
    fig.update_yaxes(title=f"bytes on the wire per {'frame' if session else 'message'}")
    title = f"One {fmt_bytes(size)} {what}, sealed"
    st.plotly_chart(charts.layout(fig, title, height=380, barmode="stack"), key="learn_primitives")
    kem, sig = (catalogue.get(n) for n in SUITES[PQ_SUITE])
    per_message = record + message_crypto_bytes(kem, sig)
    handshake = handshake_bytes(kem, sig)
    cols = st.columns(3)
    if session:
        cols[0].metric(
            "Per-frame overhead (record header + AEAD tag)",
            fmt_bytes(record),
            help=f"{RECORD_HEADER_BYTES} B header + {aead.aead_overhead_bytes} B tag, any suite",
        )
        cols[1].metric("Handshake, amortised per frame (post-quantum)", fmt_bytes(handshake / frames))
        st.markdown(
            f"Per session the post-quantum handshake moves {fmt_bytes(handshake)} once; with a frame every "
            f"{fmt_seconds(period_s)} and a new session every hour that is spread over "
            f"{frames:,} frames, {fmt_bytes(handshake / frames)} each on top of the frame's own "
            f"{fmt_bytes(record)}."
        )
    else:
        cols[0].metric("Record header + AEAD tag", fmt_bytes(record))
        cols[1].metric("Signature + KEM ciphertext (post-quantum)", fmt_bytes(message_crypto_bytes(kem, sig)))
    cols[2].metric(
        "Per-message overhead, fresh KEM + signature (post-quantum)",
        fmt_bytes(per_message),
        help="record header + AEAD tag + ML-DSA-65 signature + ML-KEM-768 ciphertext",
    )
    st.caption(
        "Sizes from sim/catalogue.py; the record header is the one hw/channel.py sends (sim/contract.py "
        "RECORD_HEADER_BYTES), the handshake that of sim/model.py (both directions). FL messages also carry "
        "their serialisation header (workload.fl.header_bytes), counted here as payload."
    )


def sizes() -> None:
    st.markdown(
        "Post-quantum keys and signatures are **tens of times larger** than elliptic-curve ones: an ML-DSA-65 "
        "signature is 3,309 bytes against Ed25519's 64. On gigabit Ethernet that is nothing; on a Bluetooth Low "
        "Energy sensor link (≈ 260 kbit/s) a handshake's few kilobytes take a noticeable time — which is why key "
        "establishment belongs on the gateway or edge node, not on the sensor."
    )
    kind = st.radio("Show", ["key exchange (KEM)", "signatures"], horizontal=True, key="learn_kind", persist_state=KEEP)
    k: catalogue.Kind = "kem" if kind.startswith("key") else "signature"
    algs = [catalogue.get(n) for n in catalogue.names(k)]
    df = pd.DataFrame(
        {
            "label": [algorithm_label(a.name) for a in algs],
            "public key": [a.public_key_bytes for a in algs],
            "second": [a.ciphertext_bytes if k == "kem" else a.signature_bytes for a in algs],
        }
    )
    second = "ciphertext" if k == "kem" else "signature"
    fig = charts.size_bars(df, {"public key": "public key", "second": second}, f"Wire sizes: public key and {second}")
    st.plotly_chart(fig, key="learn_sizes")
    st.caption("Exact sizes from sim/catalogue.py (FIPS 203/204/205, Falcon round 3, RFC 7748/8032, SEC1).")


def one_round() -> None:
    st.markdown(
        "One federated-learning round on the paper's three Raspberry Pi 4 nodes (simulated): the **aggregator** "
        "serialises, signs, encapsulates and encrypts the global model for each client (*distribute*); each "
        "**client** decrypts and verifies it (*receive*), trains on its own patients' data (*train*), then signs, "
        "encrypts and sends its update (*upload*); the aggregator decrypts and verifies every update (*verify*) "
        "and averages them (*aggregate*, FedAvg). No patient data leaves the client — only model updates do."
    )
    params = st.select_slider(
        "Model size (parameters)",
        MODEL_SIZES,
        value=250_000,
        format_func=model_label,
        key="learn_params",
        persist_state=KEEP,
    )
    spec = Spec(PAPER, (f"workload.fl.model_parameters={params}",))
    try:
        result = run(spec, "sequential", 2026, 1, label="one round")
    except UserError as exc:
        st.error("\n\n".join(exc.lines))
        return
    if result is None:  # a long run waits for the user's go or runs in the background: the page said so
        return
    s = result.summary
    c1, c2, c3 = st.columns(3)
    c1.metric("Round latency (mean of 10 rounds)", fmt_seconds(s.round_latency_s.mean))
    c2.metric("Model distribution", fmt_seconds(s.model_distribution_s.mean))
    c3.metric("Crypto share of CPU time", f"{s.crypto_share:.0%}")
    st.plotly_chart(charts.gantt(result.spans, 0, 1, "Round 1, sequential: who does what, when"), key="learn_round")
    st.caption(
        "Simulated with the Pi 4 profile; the layout, algorithms (ML-KEM-768, ML-DSA-65, AES-256-GCM) and "
        "model size are our assumptions — the paper does not publish them."
    )


def modes() -> None:
    st.markdown(
        "**Sequential**: the aggregator does all security work on one thread — it waits for every update, then "
        "decrypts and verifies them one by one, then prepares the model for one client after another. "
        "**Concurrent** (the paper's design, as we read it): crypto worker threads of the aggregator (one per "
        "core) take these jobs in parallel, updates are verified as they arrive and the model goes to all clients "
        "at once. The paper reports 35 % lower latency; in our model the gain comes out of the simulation, it is "
        "not written in (step 6 shows which assumptions give 35 %)."
    )
    nodes = st.slider(
        "Number of nodes (one aggregator, a client on each other node)", 2, 6, 3, key="learn_nodes", persist_state=KEEP
    )
    spec = Spec(PAPER, (), None if nodes == 3 else nodes)
    res: dict[str, RunResult] = {}
    try:
        for m in ("sequential", "concurrent"):
            r = run(spec, m, 2026, 2, label=m)
            if r is None:  # a long run waits for the user's go or runs in the background: the page said so
                return
            res[m] = r
    except UserError as exc:
        st.error("\n\n".join(exc.lines))
        return
    seq, conc = (res[m].summary for m in ("sequential", "concurrent"))
    cols = st.columns(4)
    for i, key, label in ((0, "round_latency_s", "round latency"), (2, "model_distribution_s", "model distribution")):
        a, b = getattr(seq, key).mean or 0.0, getattr(conc, key).mean or 0.0
        cols[i].metric(f"Sequential {label}", fmt_seconds(a))
        cols[i + 1].metric(f"Concurrent {label}", fmt_seconds(b), delta=f"{(b - a) / a:+.0%}", delta_color="inverse")
    rounds = {m: per_round(r.spans).set_index(["replication", "round"]) for m, r in res.items()}
    end = max(float(r.loc[(0, 1), "round_s"]) for r in rounds.values()) * 1e3
    left, right = st.columns(2)
    for col, m in ((left, "sequential"), (right, "concurrent")):
        fig = charts.gantt(res[m].spans, 0, 1, f"{m.capitalize()}: round 1", x_max_ms=end * 1.05)
        col.plotly_chart(fig, key=f"learn_{m}")
    st.caption(
        "Simulated, paper-3node with our assumptions, 2 replications; the round includes local training, "
        "which concurrency does not shorten — so the round gains less than model distribution does."
    )


STUDY = ROOT / "docs" / "study"  # written by: pqtwin study scenarios/studies/paper-3node.yaml --out docs/study --force


STUDY_SPEC = SCENARIOS / "studies" / "paper-3node.yaml"  # the study whose result the step shows (its labels)
MAX_STUDY_JSON_BYTES = 64 << 20  # a study of 10,000 random points is ~10 MB


class _StudyPoint(BaseModel):
    """What the page reads of a point of study.json (sim/study.py run_study)."""

    settings: dict[str, str]
    reduction: float | None = None
    reduction_ci95: tuple[float | None, float | None] = (None, None)
    distribution_s: float | None = None
    distribution_ci95: tuple[float | None, float | None] = (None, None)


class _Plane(BaseModel):
    x: str
    y: str


class _StudyResult(BaseModel):
    """What the page reads of study.json (the rest is for people and for `pqtwin study`'s report)."""

    study: str
    replications: int = Field(ge=1)
    rounds: int = Field(ge=1)
    targets: dict[str, float]
    base: dict[str, str]
    plane: _Plane
    points: list[_StudyPoint]


def read_study(path: Path, spec: StudySpec) -> dict[str, Any]:
    """study.json as the page reads it, checked against the study file it is drawn with (``spec``): UserError
    naming the file and what is wrong for a file that is not JSON, of another shape or of another study (was
    "Learn failed: StopIteration" or "KeyError: 'plane'")."""
    from sim.errors import validate
    from sim.loading import read_json_object

    found = validate(_StudyResult, read_json_object(path, MAX_STUDY_JSON_BYTES, "a study result"), path)
    axes = {a.name: [lv.label for lv in a.levels] for a in spec.axes}
    if found.study != spec.study:
        raise UserError(f"{path}: the result of study {found.study!r}, not of {spec.study!r} "
                        f"({STUDY_SPEC.relative_to(ROOT)})")  # fmt: skip
    for where, name in (("plane.x", found.plane.x), ("plane.y", found.plane.y)):
        if name not in axes:
            raise UserError(f"{path}: {where}: {name!r} is not an axis of {STUDY_SPEC.relative_to(ROOT)} "
                            f"({', '.join(axes)})")  # fmt: skip
    for name, labels in axes.items():
        if found.base.get(name) not in labels:
            raise UserError(f"{path}: base.{name}: {found.base.get(name)!r} is not a level of that axis "
                            f"({', '.join(labels)})")  # fmt: skip
    for i, p in enumerate(found.points):
        if other := sorted(set(p.settings) - set(found.base)):
            raise UserError(f"{path}: points[{i}].settings: {other[0]!r} is not an axis of this study")
    if missing := {"round_latency_reduction", "distribution_s"} - set(found.targets):
        raise UserError(f"{path}: targets: {sorted(missing)[0]!r} is missing")
    return found.model_dump()


def reproduce() -> None:
    from pqtwin import studyreport
    from sim import study

    st.markdown(
        "The paper reports **35 %** lower round latency with concurrent crypto and a new model at every node in "
        "**under 1.5 s**, but not the model size, the data per client, the suite, the number of clients or where "
        "the crypto workers run. `pqtwin study` simulates each of these choices one at a time, the grid of the two "
        "that matter most, and random combinations of all of them. Below: the reduction on that grid, the target "
        "contour (solid) and the 1.5 s line (dashed)."
    )
    again = "run `pqtwin study scenarios/studies/paper-3node.yaml --out docs/study --force`"
    path = STUDY / "study.json"
    if not path.exists() and not path.is_symlink():
        st.info(f"No study result in {show_path(STUDY)}/: {again}.")
        return
    try:
        spec, _ = study.load_study(STUDY_SPEC, check=False)  # the figure's labels
        result = read_study(path, spec)
    except UserError as exc:
        show_problem(exc)
        st.info(f"To make it again, {again} (it replaces the study's own files there only).")
        return
    target = st.slider("Reduction to reproduce (%)", 20, 50, 35, key="learn_target", persist_state=KEEP) / 100
    ax, ay, red, dist = study.plane(result, spec)
    xs, ys = [lv.label for lv in ax.levels], [lv.label for lv in ay.levels]
    heat = go.Heatmap(z=red * 100, x=xs, y=ys, colorscale="Teal", colorbar={"title": "reduction %"},
                      texttemplate="%{z:.0f} %")  # fmt: skip
    fig = go.Figure(heat)
    lines = ((red * 100, target * 100, "solid", f"{target:.0%} reduction"),
             (dist, result["targets"]["distribution_s"], "dash", "1.5 s distribution"))  # fmt: skip
    for z, level, dash, name in lines:
        at = {"start": level, "end": level, "size": 1, "coloring": "none"}
        fig.add_trace(go.Contour(z=z, x=xs, y=ys, contours=at, line={"width": 3, "dash": dash}, showscale=False,
                                 name=name, showlegend=True))  # fmt: skip
    fig.update_layout(xaxis_title=ax.title, yaxis_title=ay.title, height=420, legend={"orientation": "h"})
    st.plotly_chart(fig, key="learn_study")
    targets = result["targets"] | {"round_latency_reduction": target}
    ok = [p for p in result["points"] if study.meets(p, targets)]
    st.markdown(f"**{len(ok)} of {len(result['points'])}** simulated combinations reach {target:.0%} and < "
                f"{targets['distribution_s']:g} s. The closest to the base scenario (fewest changes):")  # fmt: skip
    ok.sort(key=lambda p: (len(study.changed(result, p)), -p["reduction"]))
    st.dataframe(pd.DataFrame([{"changes": studyreport.describe(result, p),
                                "reduction": study.fmt_ci(p["reduction"], p["reduction_ci95"], 100, " %", 1),
                                "distribution": study.fmt_ci(p["distribution_s"], p["distribution_ci95"], 1, " s", 3)}
                               for p in ok[:10]]), hide_index=True)  # fmt: skip
    st.caption(
        f"Simulated with the Pi 4 profiles ({result['replications']} replications x {result['rounds']} rounds a "
        "point, 95 % CIs). The base scenario's 2 clients give about 17 %: the paper's 35 % needs more clients (pods) "
        "than nodes, or much less training per round; crypto worker *pods* make concurrency slower, not faster."
    )


REKEY_EVERY_S = {"frame (1 s)": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86_400.0}
BATTERY_SUITES = {  # label: (KEM, signature, key establishment)
    "classical (X25519 + Ed25519)": ("X25519", "Ed25519", "device"),
    "PQC L1 (ML-KEM-512 + ML-DSA-44)": ("ML-KEM-512", "ML-DSA-44", "device"),
    "PQC L3 (ML-KEM-768 + ML-DSA-65)": ("ML-KEM-768", "ML-DSA-65", "device"),
    "PQC L3, run by the gateway": ("ML-KEM-768", "ML-DSA-65", "gateway"),
}


def battery() -> None:
    from sim import energy
    from sim.scenario import load_scenario

    st.markdown(
        "An ECG patch runs on a coin cell. Each session it sets up costs its small processor (a Cortex-M4 at "
        "64 MHz: ML-KEM-768 and ML-DSA-65 take about 145 ms there, X25519 and Ed25519 about 30 ms) and its BLE "
        "radio (a post-quantum session moves 6.4 KB each way, a classical one 0.2 KB). Between frames it sleeps. "
        "How often it rekeys decides whether PQC matters: pick the interval. The last bar lets its gateway run the "
        "sessions, so the patch only seals its frames with a symmetric key."
    )
    every = st.select_slider("Rekey every", list(REKEY_EVERY_S), value="hour", key="learn_rekey", persist_state=KEEP)
    day_s, rows = 86_400.0, []
    for label, (kem, sig, where) in BATTERY_SUITES.items():
        s = load_scenario(PAPER, [f"workload.crypto.kem={kem}", f"workload.crypto.signature={sig}",
                                  "workload.devices.ecg-a.profile=cortex-m4",
                                  f"workload.devices.ecg-a.key_establishment={where}"])  # fmt: skip
        pop = s.workload.devices[0]
        d = energy.device_energy(s, pop, day_s / pop.period_s(), day_s / REKEY_EVERY_S[every], day_s)
        if d is not None:
            rows.append({"suite": label, **d.by_part_j, "days": d.battery_life_days})
    df = pd.DataFrame(rows)
    fig = go.Figure()
    parts = (("mcu", "#d62728"), ("radio_tx", "#1f77b4"), ("radio_rx", "#9467bd"), ("radio_switch", "#17becf"),
             ("sleep", "#7f7f7f"))  # fmt: skip
    for part, colour in parts:
        fig.add_trace(go.Bar(x=df.suite, y=df[part], name=part.replace("_", " "), marker_color=colour))
    fig.update_layout(barmode="stack", yaxis_title="J per day", height=380, legend={"orientation": "h"})
    st.plotly_chart(fig, key="learn_battery")
    cols = st.columns(len(df))
    for col, row in zip(cols, df.itertuples(), strict=True):
        col.metric(str(row.suite).split(" (")[0], f"{row.days:,.0f} days")
    st.caption(
        "Energy per day of one patch sending a frame a second (sim/energy.py at these rates; the nRF52840's radio "
        "with its link layer's acknowledgements and connection events (peripheral latency auto), MCU and sleep power "
        'and a CR2032, sources in README "Energy"). `python bench/energy_table.py` simulates '
        "the same day, frame by frame."
    )


WARD = str(SCENARIOS / "ward-200.yaml")
WARD_PATCHES = (200, 1_000, 2_000)  # ECG patches switched on at once (an interactive run: ~1-3 s)


def switched_on() -> None:
    """The start-up storm (sim/storm.py): every patch opens its session within its first second; the pods'
    four cores serve every waiting handshake a little at a time."""
    st.markdown(
        "A gateway reboots, or a ward is switched on: every ECG patch opens a session with its pod within its "
        "first second of sending, all at once. Each session is a handshake (KEM + signatures) that the pod's Pi "
        "must take its share of, and a post-quantum one costs that Pi far more than a classical one. Pick how many "
        "patches and which suite, and watch how long it takes until **every patch is up** and how many handshakes "
        "wait at once."
    )
    left, right = st.columns(2)
    patches = left.select_slider("ECG patches", WARD_PATCHES, value=1_000, key="learn_patches", persist_state=KEEP)
    suite = right.radio("Suite", list(SUITES), key="learn_storm_suite", persist_state=KEEP)
    kem, sig = SUITES[suite]
    others = tuple(f"workload.devices.{j}.count=0" for j in range(2, 8))  # ward-200: the two ECG patch populations
    half = patches // 2
    sets = (*others, f"workload.devices.0.count={half}", f"workload.devices.1.count={patches - half}",
            f"workload.crypto.kem={kem}", f"workload.crypto.signature={sig}", "workload.fl.rounds=1",
            "run.horizon_s=20")  # fmt: skip
    try:
        result = run(Spec(WARD, sets), "concurrent", 2026, 1, label=f"{patches:,} patches switched on")
    except UserError as exc:
        st.error("\n\n".join(exc.lines))
        return
    if result is None:  # a long run waits for the user's go or runs in the background: the page said so
        return
    storm = result.summary.telemetry.storm
    if storm is None or storm.all_up_s.mean is None:
        st.info("No patch had its session up within the simulated 20 s.")
        return
    c1, c2, c3 = st.columns(3)
    if storm.devices < storm.of_devices:  # the rest were not up by the run's end: "every" would not be true
        c1.metric("Patches up within 20 s", f"{storm.devices:,.0f} of {storm.of_devices:,}")
    else:
        c1.metric("Every patch up after", fmt_seconds(storm.all_up_s.mean))
    c2.metric("Half of them up after", fmt_seconds(storm.up_s.p50 or 0.0))
    c3.metric("Most handshakes waiting at once", f"{storm.peak_under_way.mean or 0:,.0f}")
    st.plotly_chart(charts.storm_backlog(storm), key="learn_storm")
    st.caption(
        "Simulated: ward-200's layout, the patches split between two pods on Raspberry Pi 4s (the Pi 4 profile's "
        'costs), BLE to Wi-Fi gateways, one replication. The same what-if at hospital scale: README, "The '
        'start-up storm".'
    )


STEP_PAGES = [threat, primitives, sizes, one_round, modes, reproduce, battery, switched_on]
