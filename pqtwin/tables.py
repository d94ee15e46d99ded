"""Terminal tables of run summaries and comparisons (rich); what ``pqtwin`` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from sim.units import counted, fmt_days, fmt_mean_count

if TYPE_CHECKING:
    from sim.contract import Stats, Storm, Summary


def fmt_kpi(k: Stats | None, scale: float = 1e3, unit: str = "ms") -> str:
    if k is None or k.mean is None:
        return "—"
    lo, hi = k.ci95
    return f"{k.mean * scale:.1f} {unit} [{(lo or 0) * scale:.1f}, {(hi or 0) * scale:.1f}]"


def kpi_rows(s: Summary) -> list[tuple[str, str]]:
    hosts = s.host_utilization
    busiest = max(hosts, key=lambda h: hosts[h].offered) if hosts else None
    p95 = s.round_latency_s.p95
    link_mb = f"{s.link_bytes.total / 1e6:.2f} MB" if s.link_bytes is not None else "—"  # the twin: not measured
    return [
        ("round latency, mean [95% CI]", fmt_kpi(s.round_latency_s)),
        ("round latency p95", f"{p95 * 1e3:.1f} ms" if p95 else "—"),
        ("model distribution, mean [95% CI]", fmt_kpi(s.model_distribution_s)),
        ("crypto share of FL CPU time", f"{s.crypto_share * 100:.1f} %"),
        ("application bytes / replication", f"{s.application_bytes.total / 1e6:.2f} MB"),
        ("link bytes / replication (every hop, resends)", link_mb),
        ("busiest host (offered utilisation)", f"{busiest} {hosts[busiest].offered * 100:.1f} %" if busiest else "—"),
        ("rounds completed / failed", f"{s.rounds_completed} / {s.rounds_failed}"),
        *telemetry_rows(s),
        *energy_rows(s),
        ("events / wall time", f"{s.events:,} / {s.wall_s:.2f} s"),
    ]


def storm_text(storm: Storm | None) -> str:
    """When the last device's first session was up, the median device's, and the most device handshakes under way
    at once, per pod where several: "8.99 s [8.71, 9.20]; median 4.41 s; peak 4,937 under way (client-1 2,470, ...)"
    ("—" without device sessions; "9,998 of 10,000 devices; ..." where some were not up by the run's end)."""
    if storm is None or storm.all_up_s.mean is None:
        return "—"
    short = (
        ""
        if storm.devices >= storm.of_devices
        else f"{fmt_mean_count(storm.devices)} of {storm.of_devices:,} devices; "
    )
    pods = ", ".join(f"{pod} {k.mean:,.0f}" for pod, k in storm.peak_by_pod.items() if k.mean is not None)
    peak = storm.peak_under_way.mean or 0.0
    by_pod = f" ({pods})" if len(storm.peak_by_pod) > 1 else ""
    lo, hi = storm.all_up_s.ci95
    up = f"{storm.all_up_s.mean:.2f} s [{lo or 0:.2f}, {hi or 0:.2f}]"
    return f"{short}{up}; median {storm.up_s.p50 or 0:.2f} s; peak {peak:,.0f} under way{by_pod}"


def energy_rows(s: Summary) -> list[tuple[str, str]]:
    """Energy per FL round (every priced host) and each device population's battery life ("—" where absent)."""
    e = s.energy
    per_round = fmt_kpi(e.per_round_j, 1.0, "J") if e is not None and e.per_round_j is not None else "—"
    rows = [("energy per FL round, hosts [95% CI]", per_round)]
    for name, d in (e.devices if e is not None else {}).items():
        how = "" if d.compute_modelled else ", radio + sleep only"
        life = f"{fmt_days(d.battery_life_days)} at {d.average_power_w * 1e3:.3f} mW ({d.battery}{how})"
        rows.append((f"battery life, {name}", life))
    return rows


def telemetry_rows(s: Summary) -> list[tuple[str, str]]:
    """Device telemetry and the simulator's engine (the same rows for every summary: "—" where absent)."""
    tele, engine = s.telemetry, s.engine
    frames = fmt_mean_count(tele.frames) + (f", latency {fmt_kpi(tele.latency_s)}" if tele.latency_s else "")
    hs = tele.handshake_s
    handshake = (
        f"{fmt_kpi(hs)}, p95 {(hs.p95 or 0) * 1e3:.1f} ms, n {fmt_mean_count(tele.sessions)}" if hs and hs.mean else "—"
    )
    if engine is None:
        how = "—"
    elif engine.name == "events":
        how = "events (every frame a SimPy process)"
    else:
        worst = max((d for d, _ in engine.perturbation.values()), default=0.0)
        hot = f"{engine.hot_frames:,} frames in SimPy, " if engine.hot_frames else ""
        how = f"vectorized, {engine.passes} passes, {hot}" + (
            "exact" if engine.exact else f"foreground ≤ {worst * 1e6:.1f} µs early"
        )
    peak = f"{s.peak_rss_bytes / 2**30:.2f} GiB" if s.peak_rss_bytes else "—"
    return [
        ("telemetry frames / replication", frames),
        ("device handshake [95% CI]", handshake),
        ("start-up storm: all devices up [95% CI]", storm_text(tele.storm)),
        ("engine", how),
        ("peak memory", peak),
    ]


def summary_table(s: Summary) -> Table:
    t = Table(title=f"{s.scenario} — {s.mode}, {counted(s.replications, 'replication')}, seed {s.seed}")
    t.add_column("KPI")
    t.add_column("value", justify="right")
    for name, value in kpi_rows(s):
        t.add_row(name, value)
    phases = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in s.phase_s.items())
    t.caption = f"phase extent per round (ms): {phases}"
    return t


def modes_table(seq: Summary, conc: Summary, cmp: dict[str, Any]) -> Table:
    how = "one run, rounds in turn" if cmp.get("paired") == "rounds" else counted(seq.replications, "replication")
    t = Table(title=f"{seq.scenario} — sequential vs concurrent ({how})")
    t.add_column("KPI")
    t.add_column("sequential", justify="right")
    t.add_column("concurrent", justify="right")
    for (name, a), (_, b) in zip(kpi_rows(seq), kpi_rows(conc), strict=True):
        t.add_row(name, a, b)
    for key, label in (("round_latency_s", "round latency"), ("model_distribution_s", "model distribution")):
        c = cmp[key]
        if c["reduction"] is not None:
            lo, hi = c["reduction_ci95"]
            value = f"{c['reduction'] * 100:.1f} % [{lo * 100:.1f}, {hi * 100:.1f}]"
            t.add_row(f"{label} reduction [95% CI]", "", value)
    return t


def _ms(x: float | None) -> str:
    if x is None:
        return "—"
    v = x * 1e3
    return f"{v:.2f} ms" if abs(v) < 10 else f"{v:.1f} ms"


def _pct(v: float | None, ci: list[float | None]) -> str:
    if v is None:
        return "—"
    lo, hi = ci
    return f"{v:+.1f} [{lo:+.1f}, {hi:+.1f}]" if lo is not None and hi is not None else f"{v:+.1f}"


def render_table(result: dict[str, Any]) -> Table:
    """metric | simulated mean | measured mean | error % [95 % CI] | p95 error % | n sim/hw."""
    from hw.compare import BOOTSTRAP_SEED, RESAMPLES  # numpy, pandas, pyarrow: only the compare command needs them

    sim, hw = result["runs"]["sim"], result["runs"]["hw"]
    t = Table(
        title=f"{sim['scenario']} — simulated ({sim['mode']}, {counted(sim['replications'], 'replication')}) vs "
        f"measured ({hw['mode']}, {counted(hw['replications'], 'replication')})"
    )
    t.add_column("metric", no_wrap=True)
    for col in ("simulated mean", "measured mean", "error % [95 % CI]", "p95 error %", "n sim/hw"):
        t.add_column(col, justify="right")
    for m in result["metrics"].values():
        style = "green" if m["within_ci"] else "yellow"
        t.add_row(
            m["label"],
            _ms(m["sim_mean"]),
            _ms(m["hw_mean"]),
            f"[{style}]{_pct(m['error_pct'], m['error_ci95'])}[/]",
            _pct(m["error_p95_pct"], [None, None]),
            f"{m['n_sim']} / {m['n_hw']}",
        )
    caption = (
        f"error = (sim − hw) / hw; 95 % bootstrap CI over rounds ({RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}); green: 0 inside the CI"
    )
    if anatomy := segments_line(result):
        caption += "\n" + anatomy
    if result["not_compared"]:
        caption += "\nnot compared: " + ", ".join(f"{k} ({v})" for k, v in result["not_compared"].items())
    t.caption = caption
    return t


def segments_line(result: dict[str, Any]) -> str | None:
    """Where in the round the model gains or loses time: each segment's difference of means (simulated −
    measured, ms), which add up to the round's (``sim.contract.round_segments``); None without them."""
    from sim.contract import ROUND_SEGMENTS

    seg = [result["metrics"].get(f"segment_s.{name}") for name in ROUND_SEGMENTS]
    if any(m is None for m in seg):
        return None
    diffs = [(m["sim_mean"] - m["hw_mean"]) * 1e3 for m in seg]
    parts = ", ".join(f"{name} {d:+.2f}" for name, d in zip(ROUND_SEGMENTS, diffs, strict=True))
    return f"where the round's mean differs (sim − hw, ms; segments add up): {parts} = {sum(diffs):+.2f}"


def machine_state(load: dict[str, Any]) -> str:
    """A measurement's machine in a few words: quiet, busy (neighbours, steal) or unsteady (core speed), and how
    long the kernel kept its threads waiting while a core was idle, where traced."""
    from sim.contract import MachineLoad

    ml = MachineLoad.model_validate(load)
    sched = ""
    if ml.sched is not None and ml.sched.window_s > 0:
        sched = f"; twin threads waited {ml.sched.idle_core_wait_per_s:.2f} s/s while a core idled"
    if ml.quiet:
        return "quiet machine" + sched
    if ml.unsteady and not ml.busy and ml.cpu_speed is not None:
        return f"UNSTEADY machine: {ml.cores_ran()}{sched}"
    return f"BUSY machine: other processes used {ml.foreign_cpu_cores:.2f} cores{sched}"


def reduction_line(r: dict[str, Any]) -> str:
    """One line: the concurrent-vs-sequential reduction simulated and measured (``hw.modes.reduction_facts``), with
    their CIs, and their difference against the goal."""

    def said(x: dict[str, Any]) -> str:
        if x["reduction"] is None:
            return "none"
        ci = x.get("reduction_ci95")
        band = f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else ""
        return f"{x['reduction'] * 100:+.1f} %{band}"

    m, reps, pairs = r["measured"], r["simulated"].get("replications"), r["simulated"].get("pairs")
    reps_said = counted(reps, "replication") if reps else "its replications"
    if pairs:  # simulated as the twin runs, rounds in turn (``pqtwin sim --rounds-in-turn``)
        reps_said = f"{pairs} pairs of rounds in {reps_said}"
    line = (f"concurrent vs sequential, round latency reduction: simulated {said(r['simulated'])} "
            f"({reps_said}), measured {said(m)} ({m['pairs']} pairs of rounds "
            f"in {m['runs']} run{'s' if m['runs'] > 1 else ''})")  # fmt: skip
    if r["difference_points"] is None:
        return line
    verdict = "within" if r["within_goal"] else "outside"
    return line + f": {r['difference_points']:+.1f} points, {verdict} the goal of ±{r['goal_points']:.0f}"


def fidelity_line(result: dict[str, Any]) -> str:
    """One line: the round-latency error of the median and p95, and whether the measurement was clean."""
    m = result["metrics"].get("round_latency_s")
    load = result["runs"]["hw"].get("machine_load")
    where = "machine load not recorded" if load is None else machine_state(load)
    if repeats := result["runs"]["hw"].get("repeats"):
        quiet = result["runs"]["hw"]["quiet_repeats"]
        where = f"{len(repeats)} measured runs pooled, {quiet} quiet" + ("" if quiet == len(repeats) else f"; {where}")
        if m is not None:
            where += f"; run medians spread {m['hw_run_spread_pct']:.0f} %"
    if m is None:
        return f"fidelity: round latency not compared ({where})"
    alone = result["metrics"].get("round_latency_quiet_s")  # the quiet runs alone, where some were and some not
    if alone is not None and alone["error_p50_pct"] is not None:
        n = len(alone.get("hw_run_p50s") or [None])
        where += (f"; the {n} quiet run{'s' if n > 1 else ''} alone: p50 "
                  f"{_pct(alone['error_p50_pct'], alone['error_p50_ci95'])} %, p95 "
                  f"{_pct(alone['error_p95_pct'], [None, None])} %")  # fmt: skip
    fast = result["metrics"].get("round_latency_at_speed_s")  # the rounds the speed probe saw at speed
    if fast is not None and fast["error_p50_pct"] is not None:
        where += (f"; the {fast['n_hw']} of {m['n_hw']} measured rounds at the calibrated speed: p50 "
                  f"{_pct(fast['error_p50_pct'], fast['error_p50_ci95'])} %")  # fmt: skip
    return (
        f"fidelity: round latency error p50 {_pct(m['error_p50_pct'], m['error_p50_ci95'])} %, "
        f"p95 {_pct(m['error_p95_pct'], [None, None])} % (simulated vs measured; {where})"
        + _at_speed(result.get("model_at_measured_speed"))
    )


def _at_speed(at: dict[str, Any] | None) -> str:
    """The fidelity line's end with ``compare --at-speed`` (hw/at_speed.py): the model's error on cores as fast as
    the measured runs' were; "" where it was not asked for or the runs ran at their calibrated speed."""
    if not at:
        return ""
    if "not_simulated" in at:
        speed = "" if at["speed"] is None else f" ({at['speed']:.2f}x)"
        return f"; not simulated at the measured speed{speed}: {at['not_simulated']}"
    train = f", training {at['training_ratio']:.2f}x its price" if at.get("training_ratio") is not None else ""
    return (
        f"; simulated at the measured speed ({at['speed']:.2f}x{train}): p50 "
        f"{_pct(at['error_p50_pct'], at['error_p50_ci95'])} %, p95 {_pct(at['error_p95_pct'], [None, None])} %"
    )
