"""``pqtwin report``: one run (and optionally a baseline) as one self-contained HTML file to hand over, and PDF.

The report says what the numbers are (simulated or measured on the twin), the scenario's settings and where
every profile value the run priced comes from (M/D/E/F tags and sources, as the profile files record them),
the KPIs with their 95 % CIs, with a baseline the KPI differences with the CI of each difference and what
differs between the two scenarios, the phase and latency charts (Plotly inlined once: opens offline), and
the commands that reproduce it all. ``load_run`` + ``report_html`` serve the app too (it writes its run with
``sim.runner.write_run`` first); ``write_pdf`` prints the HTML with headless Chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from hw.rundir import unwritten_hint
from pqtwin import charts
from sim import deltas as dl
from sim.contract import (
    ALTERNATING_MODES,
    MARKERS,
    MAX_RUN_JSON_BYTES,
    WIRE_OPS,
    RunLayout,
    Stats,
    Summary,
    atomic_write,
    read_spans,
    read_summary,
    without_duplicate_spans,
)
from sim.errors import UserError, load_yaml, shorten, validate
from sim.loading import exists, out_file_problem, read_bytes
from sim.modes_json import HALVES, paired, read_modes, reduction_text
from sim.profile import LinearOp, PerCallOp, Profile, op_kind
from sim.scenario import LinkParams, Scenario, load_scenario, required_ops
from sim.summary import ci95
from sim.units import (
    MISSING,
    counted,
    fmt,
    fmt_bps,
    fmt_bytes,
    fmt_days,
    fmt_delta,
    fmt_fraction,
    fmt_mean_count,
    fmt_seconds,
    fmt_watts,
)

TAGS = {"M": "measured", "D": "derived from a measurement", "E": "estimate", "F": "fitted from a twin run"}
CHART_WIDTH_PX = 700  # fits an A4 page at scale 1 (the PDF), and reads well on a screen
CHROMIUM = Path("/usr/bin/chromium")
PDF_TIMEOUT_S = 180.0  # a 2-core machine under load parses the 4.6 MB of plotly.js slowly
PDF_BUDGET_MS = 10_000  # virtual time Chromium gives the page's scripts (Plotly) before it prints
STYLE = """
body { font-family: sans-serif; max-width: 1000px; margin: 1.5em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.src { font-size: 0.85em; color: #555; overflow-wrap: anywhere; }
pre { background: #f6f6f6; padding: 0.6em; white-space: pre-wrap; overflow-wrap: anywhere; }
.warn { color: #a04000; }
@page { size: A4; margin: 10mm; }
@media print { body { max-width: none; margin: 0; padding: 0; } tr, .chart { break-inside: avoid; }
               h2, h3 { break-after: avoid; } }
"""


@dataclass(frozen=True)
class ReportRun:
    """A run as the report reads it: its scenario (profiles loaded where they could be), summary and spans."""

    scenario: Scenario
    summary: Summary
    spans: pd.DataFrame
    dir: Path | None = None  # the run directory (None: a run held in memory only)
    label: str = ""  # how the report names the run (default: the directory's name or the scenario's)
    notes: tuple[str, ...] = ()  # what could not be read (e.g. the profile copies of an older run directory)
    left_out: tuple[str, ...] = ()  # spans read and not counted (a measured run's rows written twice)

    @property
    def name(self) -> str:
        return self.label or (self.dir.name if self.dir is not None else self.summary.scenario)


# --- reading a run directory ----------------------------------------------------------------------------


BOTH_HINT = (
    "a --mode both run; give {d}/sequential or {d}/concurrent (alone as RUN_DIR, without --baseline, it "
    "is reported as its concurrent rounds against its sequential ones)"
)


def load_run(run_dir: Path, option: str = "RUN_DIR", label: str = "") -> ReportRun:
    """A run directory (``pqtwin sim`` or ``pqtwin hw run`` wrote it) for the report; a UserError line naming
    ``option`` and the directory when it is none."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    _require_run_dir(run_dir, option)
    try:
        summary = read_summary(layout.summary)
    except (OSError, ValueError) as exc:
        raise UserError(f"{option}: {shorten(str(exc).splitlines()[0], 300)}") from None
    if summary.mode in ALTERNATING_MODES:  # `hw run --mode both`, `sim --rounds-in-turn`: both modes' rounds
        raise UserError(f"{option}: {run_dir}: {BOTH_HINT.format(d=run_dir)}")
    scenario, notes = _load_scenario(layout.scenario, option)
    spans, left_out = _load_spans(layout.spans, option), tuple[str, ...]()
    if summary.backend is not None:  # a measured run times each activity once: a row twice counted twice
        spans, note = without_duplicate_spans(spans, layout.spans)
        left_out = (note,) if note else ()
    return ReportRun(scenario, summary, spans, run_dir, label, notes, left_out)


def _require_run_dir(run_dir: Path, option: str) -> None:
    layout = RunLayout(run_dir)
    if not exists(run_dir):
        raise UserError(f"{option}: no such directory (got {shorten(repr(str(run_dir)), 200)})")
    if not run_dir.is_dir():
        raise UserError(f"{option}: {run_dir} is a file, not a run directory (give the directory `pqtwin sim` wrote)")
    if not exists(layout.summary):
        both = exists(layout.modes)  # `pqtwin sim --mode both` writes one run per mode below it
        hint = f": {BOTH_HINT.format(d=run_dir)}" if both else ""
        if unwritten := unwritten_hint(run_dir):
            hint = f": {unwritten}"
        raise UserError(f"{option}: {run_dir} is not a run directory (no {RunLayout.SUMMARY}){hint}")
    for path in (layout.scenario, layout.spans):
        if not exists(path):
            raise UserError(f"{option}: {run_dir} is not a complete run directory (no {path.name})")


def _load_scenario(path: Path, option: str) -> tuple[Scenario, tuple[str, ...]]:
    """The run's scenario with its profiles; without them (named in a note) when the directory has no copies
    of the profile files (written before runs kept them) — the settings still read, the provenance cannot."""
    try:
        return load_scenario(path, priced=False), ()
    except UserError as exc:
        first = exc.lines[0]
    try:
        return validate(Scenario, load_yaml(path), path), (first,)
    except UserError as exc:
        raise UserError(f"{option}: {exc.lines[0]}") from None


def _load_spans(path: Path, option: str) -> pd.DataFrame:
    try:
        return read_spans(path)
    except ValueError as exc:  # the file named, and its first problem
        raise UserError(f"{option}: {shorten(str(exc), 300)}") from None


def check_out(path: Path, option: str) -> None:
    """A file the report can be written to: not a directory, in a directory that exists and is writable."""
    if (problem := out_file_problem(path, "report.html")) is not None:
        raise UserError(f"{option}: {problem}")


# --- small HTML pieces ------------------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], row_attrs: Sequence[str] | None = None,
           src_col: int | None = None) -> str:  # fmt: skip
    """A table of text cells (escaped); ``row_attrs`` raw attributes per row, ``src_col`` a source column."""
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        attrs = f" {row_attrs[i]}" if row_attrs else ""
        cells = "".join(f"<td{' class=src' if j == src_col else ''}>{escape(str(c))}</td>" for j, c in enumerate(row))
        out.append(f"<tr{attrs}>{cells}</tr>")
    return "".join(out) + "</table>"


def _p(text: str, cls: str = "") -> str:
    return f"<p{f' class={cls}' if cls else ''}>{escape(text)}</p>"


def _ci(lo: float | None, hi: float | None, unit: str) -> str:
    if lo is None or hi is None:
        return MISSING
    return f"[{fmt(lo, unit)}, {fmt(hi, unit)}]"


def _suite(summary: Summary) -> str:
    s = summary.suite
    return " + ".join(str(s[k]) for k in ("kem", "signature", "aead") if s.get(k)) or MISSING


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def rounds_per_replication(summary: Summary) -> int:
    return (summary.rounds_completed + summary.rounds_failed) // max(1, summary.replications)


# --- 1. title and what the numbers are --------------------------------------------------------------------


def _title(run: ReportRun) -> str:
    s = run.summary
    head = (f"{s.scenario} — {s.mode or MISSING} mode, {_suite(s)}, {_n(s.replications, 'replication')} × "
            f"{_n(rounds_per_replication(s), 'round')}, seed {s.seed if s.seed is not None else MISSING}")  # fmt: skip
    when = f"Report written {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    if run.dir is not None and exists(summary := RunLayout(run.dir).summary):
        written = datetime.fromtimestamp(summary.stat().st_mtime).astimezone()
        when += f"; run written {written:%Y-%m-%d %H:%M %Z} into {run.dir}"
    return f"<h1>{escape(head)}</h1>{_p(when + '.')}{_p(what_numbers_are(s))}"


def what_numbers_are(s: Summary) -> str:
    """One sentence: simulated by the model, or measured on which backend of the hardware twin."""
    if s.backend is None:
        engine = s.engine.name if s.engine is not None else "events"
        return (f"Simulated: every number below comes from the discrete-event model ({engine} engine), priced "
                f"with the profile values listed under Provenance; nothing here was measured on hardware.")  # fmt: skip
    where = {"local": "as processes on one machine (local backend)",
             "netns": "as processes on one machine, each host a network namespace on kernel-shaped links (netns "
                      "backend)",
             "k8s": "as pods on a Kubernetes cluster (k8s backend)"}[s.backend]  # fmt: skip
    load = f" {s.machine_load.describe().capitalize()}." if s.machine_load is not None else ""
    if s.fabric is not None:
        load += f" Its {s.fabric.describe()}."
    return (f"Measured on the hardware twin {where}: real crypto, sockets and training; the run "
            f"{s.state or 'ended'}{f' ({s.reason})' if s.reason else ''}. Energy is estimated from the measured "
            f"spans with the profiles' power models, not measured.{load}")  # fmt: skip


# --- 2. settings and provenance ---------------------------------------------------------------------------


def _link(params: LinkParams) -> str:
    bw, lat, jitter, loss = params.resolved()
    name = params.preset or "custom"
    extra = f", jitter {fmt_seconds(jitter)}" if jitter else ""
    return f"{name}: {fmt_bps(bw)}, {fmt_seconds(lat)} one way{extra}, loss {fmt_fraction(loss)}"


def _settings(run: ReportRun) -> str:
    s = run.scenario
    d, w = s.deployment, s.workload
    pods_on: dict[str, list[str]] = {}
    for p in d.pods:
        pods_on.setdefault(p.host, []).append(f"{p.name} ({p.role})")
    parts = [f"<h2>Scenario settings and assumptions</h2>{_p(s.description.strip() or 'No description.')}",
             "<h3>Hosts and pods</h3>",
             _table(("host", "cores", "profile", "CPU sharing", "pods"),
                    [(h.name, h.cores, h.profile, h.cpu_sharing, ", ".join(pods_on.get(h.name, []))) for h in d.hosts]),
             "<h3>Network</h3>",
             _table(("link", "parameters"), [(f"{k.a} — {k.b}", _link(k)) for k in d.network.links])]  # fmt: skip
    if w.devices:
        rows = [(f"{p.name}: {p.count} × {p.device_class}", f"{p.gateway} → {p.report_to}", _link(p.access_link),
                 f"{fmt_bytes(p.frame_bytes())} every {fmt_seconds(p.period_s())}", p.profile or MISSING,
                 p.key_establishment) for p in w.devices]  # fmt: skip
        parts += ["<h3>Device populations</h3>",
                  _table(("population", "gateway → pod", "access link", "frame", "profile", "key establishment"),
                         rows)]  # fmt: skip
    parts += ["<h3>Workload and run</h3>", _table(("setting", "value"), _workload_rows(run))]
    return "".join(parts)


def _workload_rows(run: ReportRun) -> list[tuple[str, str]]:
    s, sm = run.scenario, run.summary
    fl, c, r = s.workload.fl, s.workload.crypto, s.run
    engine = f"{r.engine} (this run: {sm.engine.name})" if sm.engine is not None else r.engine
    return [
        ("FL model", f"{fl.model_parameters:,} parameters × {fl.bytes_per_parameter} B = {fmt_bytes(fl.model_bytes)}"),
        ("FL rounds, clients", f"{fl.rounds} rounds, {fl.clients} clients, quorum {fmt_fraction(fl.quorum)}"),
        ("FL training", f"local epochs {fl.local_epochs}, {fl.samples_per_client:,} samples per client"),
        ("FL dropouts, timeout", f"{fmt_fraction(fl.dropout_probability)}, {fmt_seconds(fl.round_timeout_s)}"),
        ("crypto suite", f"{c.kem} + {c.signature} + {c.aead} (twin provider: {c.provider})"),
        ("rekey policy", f"FL {c.rekey.fl}; devices every {fmt_seconds(c.rekey.device_interval_s)}"
         if c.rekey.device_interval_s else f"FL {c.rekey.fl}; devices: one handshake"),
        ("processing", f"this run {sm.mode} (scenario's {s.workload.processing.mode}), "
                       f"workers {s.workload.processing.workers}"),
        ("telemetry receiver", s.workload.telemetry_receiver),
        ("horizon, stop at", f"{fmt_seconds(r.horizon_s)}, {r.stop_at}"),
        ("engine", engine),
        ("network segment", fmt_bytes(r.segment_bytes)),
        ("seed, replications", f"this run {sm.seed}, {sm.replications} (scenario's {r.seed}, {r.replications})"),
    ]  # fmt: skip


def profiles_used(s: Scenario) -> list[tuple[Profile, list[str], bool]]:
    """(profile, the span hosts it priced, whether it prices devices) for every profile the scenario uses;
    a device population's hosts are its devices' span hosts, ``<population>#<i>``."""
    by_name: dict[str, tuple[Profile, list[str], bool]] = {}
    for h in s.deployment.hosts:
        try:
            prof = s.host_profile(h.name)
        except KeyError:  # not loaded: the run directory has no copy of the file
            continue
        by_name.setdefault(prof.profile, (prof, [], False))[1].append(h.name)
    for pop in s.workload.devices:
        if (dprof := s.device_profile(pop)) is not None:
            by_name.setdefault(f"device:{dprof.profile}", (dprof, [], True))[1].append(f"{pop.name}#")
    return list(by_name.values())


def _cost(model: PerCallOp | LinearOp) -> str:
    if isinstance(model, PerCallOp):
        dist = model.distribution
        spread = (
            f"lognormal, σ {dist.sigma:.3g}"
            if dist.kind == "lognormal"
            else f"empirical, {len(dist.quantiles_s)} quantiles"
        )
        return f"mean {fmt_seconds(model.mean_s)} per call ({spread})"
    text = f"{fmt_seconds(model.per_call_s)} + {fmt_seconds(model.per_unit_s)} per {model.unit.replace('_', '-')}"
    if model.points:
        text += f"; interpolated over {len(model.points)} measured sizes"
    return text + (f"; cv {model.cv:.3g}" if model.cv else "")


def _priced_rows(spans: pd.DataFrame, hosts: list[str]) -> pd.DataFrame:
    """CPU rows (no messages, no markers) of the given span hosts (``name#`` = a population's devices)."""
    cpu = spans[~spans.op.isin(WIRE_OPS) & ~spans.phase.isin(MARKERS)]
    exact = [h for h in hosts if not h.endswith("#")]
    prefixes = tuple(h for h in hosts if h.endswith("#"))
    mask = cpu.host.isin(exact)
    if prefixes:
        mask |= cpu.host.str.startswith(prefixes)
    return cpu[mask]


def _signed_seconds(x: float) -> str:
    """``fmt_seconds`` of a fitted value that may be negative."""
    return fmt_seconds(x) if x >= 0 else "−" + fmt_seconds(-x)


def provenance_rows(run: ReportRun, prof: Profile, hosts: list[str], device: bool) -> list[tuple[str, ...]]:
    """(operation, cost, this run's mean per call, tag, provider, source) of each op the run priced with
    ``prof`` (the ops in its spans; the scenario's required ones when it has none), then the overheads."""
    rows = _priced_rows(run.spans, hosts)
    seen = set(rows.op) & set(prof.ops) or (required_ops(run.scenario, device) & set(prof.ops))
    per_call = (rows.end_s - rows.start_s - rows.queue_wait_s).groupby(rows.op).mean()
    out: list[tuple[str, ...]] = []
    for op in sorted(seen):
        m = prof.ops[op]
        out.append((op, _cost(m), fmt_seconds(per_call.get(op)), m.tag, m.provider or MISSING, m.source))
    for kind in sorted({op_kind(op) for op in seen} & set(prof.overheads)):
        o = prof.overheads[kind]
        cost = f"×{o.factor:.4g} + {fmt_seconds(o.per_call_s)} + {fmt_seconds(o.per_byte_s)} per byte, σ {o.sigma:.3g}"
        if o.extra_by_bytes:  # in place of the line for calls with bytes (sim/profile.py ``Overhead``)
            extra = ", ".join(f"{_signed_seconds(y)} at {x:,.0f} B"
                              for x, y in o.extra_by_bytes)  # fmt: skip
            cost = f"×{o.factor:.4g} + {extra} (linear between), σ {o.sigma:.3g}"
        if o.per_call_by_parameters:  # the constant at this run's model size, of a table by size
            sizes = ", ".join(f"{_signed_seconds(y)} at {x:,.0f}"
                              for x, y in o.per_call_by_parameters)  # fmt: skip
            cost += f" (the constant at this model's size, of {sizes} parameters)"
        if (pair := o.linear_between_parameters) is not None:  # the factor as ``Profile.at_model`` resolved it
            cost += f" (between {pair[0]:,.0f} and {pair[1]:,.0f} parameters on the line between their prices)"
        if o.cold_per_call_s or o.cold_per_byte_s:  # a burst's first call (sim/profile.py ``Overhead.cold_s``)
            cost += (f"; a burst's first call {fmt_seconds(o.cold_per_call_s)} + {fmt_seconds(o.cold_per_byte_s)} "
                     "per byte more")  # fmt: skip
        by_size = [*(f"{sd:.3g} at {x:,.0f} B" for x, sd in o.sigma_by_bytes or ()),
                   *(f"{sd:.3g} at {fmt_seconds(x)}" for x, sd in o.sigma_by_cost_s or ())]  # fmt: skip
        if by_size:
            cost += f" ({', '.join(by_size)})"
        out.append((f"overhead: every {kind}", cost, MISSING, o.tag, MISSING, o.source))
    if prof.power is not None:
        p = prof.power
        cost = f"idle {fmt_watts(p.idle_w)} + {fmt_watts(p.busy_core_w)} per busy core"
        out.append(("power model", cost, MISSING, p.tag, MISSING, p.source))
    return out


def _provenance(run: ReportRun) -> str:
    parts = ["<h2>Provenance of the profile values</h2>",
             _p("Every cost the run priced, as its profile file records it: tag M measured, D derived from a "
                "measurement (unit conversion), E estimate, F fitted from a hardware-twin run; the source says "
                "where each value comes from. 'This run' is the mean time per call in the run's spans (end − "
                "start − queue wait: it includes CPU sharing).")]  # fmt: skip
    parts += [_p(f"Not available: {note}", "warn") for note in run.notes]
    parts += [_p(note, "warn") for note in run.left_out]
    for prof, hosts, device in profiles_used(run.scenario):
        rows = provenance_rows(run, prof, hosts, device)
        tags = [r[3] for r in rows]
        counts = ", ".join(f"{tags.count(t)} {TAGS[t]} ({t})" for t in TAGS if t in tags)
        who = ", ".join(h.rstrip("#") for h in hosts)
        libs = [(k, v.library, v.version, v.build) for k, v in prof.platform.libraries.items()]
        parts.append(f"<h3>{escape(prof.profile)} ({'devices' if device else 'hosts'} {escape(who)})</h3>")
        parts.append(_p(f"{prof.platform.cpu}. Dated {prof.platform.date}. How measured: "
                        f"{prof.platform.how_measured} Values used: {counts}."))  # fmt: skip
        parts.append(_table(("provider", "library", "version", "build"), libs, src_col=3))
        parts.append(_table(("operation", "cost (profile)", "this run, per call", "tag", "provider", "source"),
                            rows, src_col=5))  # fmt: skip
    return "".join(parts)


# --- 3. KPIs ----------------------------------------------------------------------------------------------

KPI_HEAD = ("KPI", "mean", "95 % CI", "p50", "p95", "n, CI over")


def _stats_row(label: str, st: Stats | None, unit: str) -> tuple[str, ...]:
    if st is None or st.mean is None:
        return (label, MISSING, MISSING, MISSING, MISSING, MISSING)
    return (label, fmt(st.mean, unit), _ci(*st.ci95, unit), fmt(st.p50, unit), fmt(st.p95, unit),
            f"{st.n:,}, {st.ci_method}")  # fmt: skip


def _values_row(label: str, mean: float | None, values: np.ndarray | None, unit: str) -> tuple[str, ...]:
    """A KPI the summary holds as one number: its CI from the per-replication values (sim.deltas')."""
    ok = values is not None and values.size >= 2 and bool(np.isfinite(values).all())
    lo, hi = ci95(values) if ok and values is not None else (None, None)
    n = f"{values.size}, replication values" if ok and values is not None else MISSING
    return (label, fmt(mean, unit), _ci(lo, hi, unit), MISSING, MISSING, n)


def kpi_rows(run: ReportRun) -> list[tuple[str, ...]]:
    """Every KPI row of the report: label, mean, 95 % CI, p50, p95, n (all through sim.units; "—" missing)."""
    s = run.summary
    values = dl.replication_values(s, run.spans) if len(run.spans) else {}
    e, link_b = s.energy, s.link_bytes.total if s.link_bytes else None  # the twin counts no bytes per hop
    rows = [
        _stats_row("round latency", s.round_latency_s, "s"),
        _stats_row("model distribution", s.model_distribution_s, "s"),
        _values_row("crypto share of FL CPU time", s.crypto_share, values.get("crypto_share"), "fraction"),
        _values_row(
            "application bytes per replication", s.application_bytes.total, values.get("application_bytes"), "B"
        ),
        _values_row("link bytes per replication (every hop, resends)", link_b, None, "B"),
        _stats_row("energy per FL round (priced hosts)", e.per_round_j if e else None, "J"),
        _stats_row("telemetry frame latency", s.telemetry.latency_s, "s"),
    ]
    if (storm := s.telemetry.storm) is not None:  # every device's first session (sim/storm.py)
        up = f"{fmt_mean_count(storm.devices)} of {storm.of_devices:,}"
        rows += [
            ("start-up storm: devices up by the run's end", up, MISSING, MISSING, MISSING, "per replication"),
            _stats_row("start-up storm: all devices up", storm.all_up_s, "s"),
            _stats_row("start-up storm: a device up", storm.up_s, "s"),
            _stats_row("start-up storm: most handshakes under way at once", storm.peak_under_way, ""),
        ]
    for pop, d in (e.devices if e else {}).items():
        how = "" if d.compute_modelled else ", radio + sleep only"
        note = f"at {fmt_watts(d.average_power_w)} ({d.battery}{how})"
        rows.append((f"battery life, {pop}", fmt_days(d.battery_life_days), MISSING, MISSING, MISSING, note))
    for host, u in s.host_utilization.items():
        rows.append((f"host utilisation, {host}", fmt_fraction(u.offered), MISSING, MISSING, MISSING,
                     "OVERLOADED (offered ≥ 100 %)" if u.overloaded else "offered load over the run"))  # fmt: skip
    if s.accuracy_per_round:
        rows.append(("model accuracy after the last round", fmt_fraction(s.accuracy_per_round[-1]), MISSING,
                     MISSING, MISSING, f"initial {fmt_fraction(s.initial_accuracy)}"))  # fmt: skip
    return rows


def _kpis(run: ReportRun) -> str:
    s = run.summary
    reps = _n(s.replications, "replication")
    done = f"{_n(s.rounds_completed, 'round')} completed, {s.rounds_failed} failed over {reps}."
    return f"<h2>KPIs (95 % confidence intervals)</h2>{_p(done)}{_table(KPI_HEAD, kpi_rows(run))}"


# --- 4. against a baseline --------------------------------------------------------------------------------

DELTA_HEAD = ("KPI", "baseline", "what-if", "Δ", "relative Δ", "95 % CI of Δ", "method", "beyond noise")


def _relative(r: float | None) -> str:
    return MISSING if r is None else ("+" if r > 0 else "−" if r < 0 else "±") + fmt_fraction(abs(r))


def delta_rows(base: ReportRun, run: ReportRun) -> tuple[list[tuple[str, ...]], list[str]]:
    """The deltas table's rows (sim.deltas: what-if − baseline) and each row's attributes (key, raw Δ)."""
    rows: list[tuple[str, ...]] = []
    attrs: list[str] = []
    for d in dl.deltas((base.summary, base.spans), (run.summary, run.spans)):
        lo, hi = d.ci95
        ci = MISSING if lo is None or hi is None else f"[{fmt_delta(lo, d.unit)}, {fmt_delta(hi, d.unit)}]"
        beyond = MISSING if d.method in ("none", "mean") else ("yes" if d.significant else "no")
        method = dl.METHOD_TEXT[d.method]
        rows.append((d.label, fmt(d.baseline, d.unit), fmt(d.whatif, d.unit), fmt_delta(d.delta, d.unit),
                     _relative(d.relative), ci, method, beyond))  # fmt: skip
        attrs.append(f'data-key="{escape(d.key)}" data-delta="{d.delta!r}"')
    return rows, attrs


_ABSENT = object()


def _items(value: Any) -> dict[Any, Any] | None:
    """A section's fields, a list's items by ``name`` when they all have one (as ``--set`` addresses them) or
    by index; None for a plain value."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        names = [x.get("name") if isinstance(x, dict) else None for x in value]
        keyed = all(isinstance(n, str) for n in names) and len(set(names)) == len(names)
        return dict(zip(names, value, strict=True)) if keyed else dict(enumerate(value))
    return None


def _diff(a: Any, b: Any, path: str) -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) of every leaf that differs; an item only one side has is one row."""
    ia, ib = _items(a), _items(b)
    if ia is None or ib is None or type(a) is not type(b):
        return [] if a == b else [(path, a, b)]
    keys = list(ia) + [k for k in ib if k not in ia]
    return [
        row for k in keys for row in _diff(ia.get(k, _ABSENT), ib.get(k, _ABSENT), f"{path}.{k}" if path else str(k))
    ]


def _shown(value: Any) -> str:
    if value is _ABSENT or value is None:
        return MISSING
    return shorten(value if isinstance(value, str) else json.dumps(value), 80)


def scenario_diff(base: Scenario, run: Scenario) -> list[tuple[str, str, str]]:
    """(dotted path, baseline value, what-if value) of every scenario setting that differs ("—": absent)."""
    a, b = (s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in (base, run))
    return [(path, _shown(old), _shown(new)) for path, old, new in _diff(a, b, "")]


def run_diff(base: Summary, run: Summary) -> list[tuple[str, str, str]]:
    """The run's own settings (command-line options, not in the scenario) that differ."""
    keys = ("mode", "seed", "replications", "backend")
    return [(f"(run) {k}", _shown(getattr(base, k)), _shown(getattr(run, k)))
            for k in keys if getattr(base, k) != getattr(run, k)]  # fmt: skip


def _against(base: ReportRun, run: ReportRun) -> str:
    parts = ["<h2>What-if against the baseline</h2>",
             _p(f"Baseline: {base.name} ({base.summary.scenario}, {base.summary.mode} mode, "
                f"{counted(base.summary.replications, 'replication')}, seed {base.summary.seed}); what-if: {run.name}. "
                f"Δ = what-if − baseline.")]  # fmt: skip
    if (line := one_run_in_both_modes(base, run)) is not None:
        parts.append(_p(line))
    rows, attrs = delta_rows(base, run)
    parts.append(_table(DELTA_HEAD, rows, attrs) if rows else _p("No KPI both runs have."))
    diff = run_diff(base.summary, run.summary) + scenario_diff(base.scenario, run.scenario)
    parts.append("<h3>What differs between the two</h3>")
    parts.append(_table(("setting", "baseline", "what-if"), diff) if diff else _p("Nothing: the same settings."))
    return "".join(parts)


def one_run_in_both_modes(base: ReportRun, run: ReportRun) -> str | None:
    """Where the baseline and the what-if are the sequential and concurrent halves of one ``--mode both`` run, the
    reduction that run's modes.json holds: a twin run's over pairs of its rounds (both modes met the machine in
    the same state, a narrower CI than the deltas' below, which treat the halves as two runs)."""
    if base.dir is None or run.dir is None or base.dir.parent != run.dir.parent:
        return None
    if (base.dir.name, run.dir.name) != HALVES or (modes := read_modes(run.dir.parent)) is None:
        return None
    line = (f"One --mode both run ({run.dir.parent}): round latency reduction concurrent vs sequential "
            f"{reduction_text(modes)}")  # fmt: skip
    if paired(modes):
        return line + " (its rounds alternate S C C S …: each pair met the machine in the same state)."
    return line + "."


def name_warning(base: ReportRun, run: ReportRun) -> str | None:
    if base.summary.scenario == run.summary.scenario:
        return None
    return (f"The baseline is another scenario ({base.summary.scenario!r}; the what-if is {run.summary.scenario!r}): "
            "the differences mix every setting listed under what differs.")  # fmt: skip


# --- 5. charts --------------------------------------------------------------------------------------------


def figures(run: ReportRun, base: ReportRun | None = None) -> list[go.Figure]:
    """The phase breakdown, the latency distribution and the start-up storm where devices had one, the baseline
    beside the what-if when given."""
    names = (f"what-if: {run.name}", f"baseline: {base.name}") if base is not None else ("run", "baseline")
    out = []
    ext = charts.phase_extents(run.spans)
    if len(ext):
        base_ext = charts.phase_extents(base.spans) if base is not None else None
        out.append(charts.phase_bars(ext, baseline=base_ext, names=names))
    rounds = charts.per_round(run.spans)
    if len(rounds):
        out.append(charts.latency_histogram(rounds, baseline=charts.per_round(base.spans) if base else None))
    if (storm := run.summary.telemetry.storm) is not None and storm.under_way:
        out.append(charts.storm_backlog(storm, base.summary.telemetry.storm if base is not None else None))
    for fig in out:
        fig.update_layout(width=CHART_WIDTH_PX, autosize=False)
    return out


def _charts(run: ReportRun, base: ReportRun | None) -> str:
    figs = figures(run, base)
    if not figs:
        return "<h2>Charts</h2>" + _p("The run has no completed round: nothing to plot.")
    config = {"displaylogo": False, "responsive": False}  # fixed width: the PDF prints what the screen shows
    html = [pio.to_html(f, include_plotlyjs=(i == 0), full_html=False, config=config) for i, f in enumerate(figs)]
    return "<h2>Charts</h2>" + "".join(f"<div class=chart>{h}</div>" for h in html)


# --- 6. reproduce ------------------------------------------------------------------------------------------


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def rerun_command(run: ReportRun) -> str | None:
    """The command that runs ``run`` again from its directory: `pqtwin sim` reproduces a simulation exactly;
    `pqtwin hw run` measures again (None: a run held in memory only)."""
    if run.dir is None:
        return None
    s = run.summary
    scenario, out = RunLayout(run.dir).scenario, f"{run.dir}-rerun"
    seed = f" --seed {s.seed}" if s.seed is not None else ""
    if s.backend is None:
        return f"pqtwin sim {_q(scenario)} --mode {s.mode}{seed} --replications {s.replications} --out {_q(out)}"
    rounds = _twin_rounds(run)
    return f"pqtwin hw run {_q(scenario)} --backend {s.backend} --mode {s.mode}{seed} --rounds {rounds} --out {_q(out)}"


def _twin_rounds(run: ReportRun) -> int:
    """The rounds the twin was asked for (run.json), else the scenario's."""
    try:
        config = json.loads(read_bytes(RunLayout(run.dir or Path()).run_config, MAX_RUN_JSON_BYTES, "a JSON file"))
        return int(config["fl"]["rounds"])
    except (UserError, ValueError, KeyError, TypeError):
        return run.scenario.workload.fl.rounds


def report_line(run: ReportRun, base: ReportRun | None, placeholders: tuple[bool, bool] = (False, False)) -> str:
    """The `pqtwin report` line for these runs; a run whose command was given (the app's: its directory is a
    temporary one) is named by a placeholder instead of its directory."""
    where = "RUN_DIR" if placeholders[0] or run.dir is None else _q(run.dir)
    if base is not None:
        where += " --baseline " + ("BASELINE_DIR" if placeholders[1] or base.dir is None else _q(base.dir))
    return f"pqtwin report {where} --out report.html"


def _reproduce(run: ReportRun, base: ReportRun | None, command: str | None, baseline_command: str | None,
               report: str | None) -> str:  # fmt: skip
    lines = [("what-if" if base is not None else "the run", command or rerun_command(run), "reproduce-run")]
    if base is not None:
        lines.append(("baseline", baseline_command or rerun_command(base), "reproduce-baseline"))
    derived = report_line(run, base, (command is not None, baseline_command is not None))
    lines.append(("this report", report or derived, "reproduce-report"))
    parts = ["<h2>Reproduce</h2>",
             _p("A simulation reruns exactly from its directory (scenario.yaml with copies of its profiles): the "
                "same seed and replications give the same summary.json, wall time and memory aside. A twin run "
                "measures again: its numbers vary with the machine's load.")]  # fmt: skip
    if run.notes or (base is not None and base.notes):
        parts.append(
            _p(
                "A directory without copies of its profiles (written by an older pqtwin) cannot rerun as "
                "is: copy the profile files named in its scenario.yaml into its profiles/ folder.",
                "warn",
            )
        )
    for what, cmd, role in lines:
        text = cmd or "(a run held in memory: write it with sim.runner.write_run to get a command)"
        parts.append(f"<h3>{escape(what)}</h3><pre><code data-role={role}>{escape(text)}</code></pre>")
    if report is None and "_DIR" in derived:
        parts.append(_p("RUN_DIR, BASELINE_DIR: the directories the commands above write into (give them --out)."))
    return "".join(parts)


# --- the report -------------------------------------------------------------------------------------------


def report_html(run: ReportRun, baseline: ReportRun | None = None, command: str | None = None, *,
                baseline_command: str | None = None, report_command: str | None = None) -> str:  # fmt: skip
    """The whole report, one self-contained HTML document. ``command`` replaces the derived command that
    reproduces ``run`` (the app passes its own `pqtwin sim ... --set ...` line), ``baseline_command`` the
    baseline's, ``report_command`` the `pqtwin report` line shown."""
    warnings = "".join(f"<li>{escape(w)}</li>" for w in run.summary.warnings)
    body = [
        _title(run),
        _p(warning, "warn") if baseline is not None and (warning := name_warning(baseline, run)) else "",
        f"<h2>Warnings of the run</h2><ul>{warnings}</ul>" if warnings else "",
        _settings(run),
        _provenance(run),
        _kpis(run),
        _against(baseline, run) if baseline is not None else "",
        _charts(run, baseline),
        _reproduce(run, baseline, command, baseline_command, report_command),
    ]
    title = escape(f"PQ-IoMT Twin report: {run.summary.scenario} ({run.summary.mode})")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>")  # fmt: skip


# --- 7. PDF -----------------------------------------------------------------------------------------------


def chromium() -> Path:
    """The Chromium to print with: $PQTWIN_CHROMIUM, else /usr/bin/chromium, else one on PATH."""
    if env := os.environ.get("PQTWIN_CHROMIUM"):
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise UserError(f"--pdf: PQTWIN_CHROMIUM is not an executable file (got {shorten(repr(env), 200)})")
        return Path(env)
    for candidate in (str(CHROMIUM), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise UserError("--pdf: no Chromium found (set PQTWIN_CHROMIUM or install Debian's chromium); the HTML is written")


def pdf_pages(data: bytes) -> int:
    """Page objects in a PDF (Chromium writes them uncompressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))


def write_pdf(html_path: Path, pdf_path: Path, timeout_s: float = PDF_TIMEOUT_S) -> int:
    """Print an HTML report to PDF with headless Chromium once its scripts (Plotly) have run; returns the page
    count. UserError (one line) when there is no Chromium or it fails."""
    exe = chromium()
    with tempfile.TemporaryDirectory(prefix="pqtwin-pdf-") as tmp:
        out = Path(tmp) / "report.pdf"
        args = [str(exe), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp}/profile", f"--virtual-time-budget={PDF_BUDGET_MS}",
                "--run-all-compositor-stages-before-draw", f"--print-to-pdf={out}",
                Path(html_path).resolve().as_uri()]  # fmt: skip
        code, stderr = _run_chromium(exe, args, timeout_s)
        data = out.read_bytes() if out.is_file() else b""
        pages = pdf_pages(data)
        if code != 0 or not data.startswith(b"%PDF") or pages < 2:  # one page is an error page, not the report
            last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "no message")
            raise UserError(f"--pdf: {exe} printed no report (exit code {code}, {pages} pages): {shorten(last, 300)}")
        write_file(pdf_path, data, "--pdf")
    return pages


def _run_chromium(exe: Path, args: list[str], timeout_s: float) -> tuple[int, str]:
    """Run Chromium in a process group of its own, so that a timeout ends its renderers too."""
    try:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,  # noqa: S603
                                start_new_session=True)  # fmt: skip
    except OSError as exc:
        raise UserError(f"--pdf: cannot start {exe}: {exc.strerror or exc}") from None
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise UserError(f"--pdf: {exe} did not finish printing in {timeout_s:.0f} s") from None
    return proc.returncode, stderr


def write_file(path: Path, data: str | bytes, option: str) -> None:
    """Write the report whole or not at all; a failure (read-only, full disk) is one line naming the option."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise UserError(f"{option}: cannot write {path}: {exc.strerror or exc}") from None
