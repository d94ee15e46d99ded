"""Simulator scale (issue 11): wall time and peak memory of the vectorized and the event engine as devices grow.

The layout is the issue's: ECG patches (one frame per second each) on the ward-200 network, split over two
gateways, one FL round, one replication, run to ``--horizon-s`` (10,000 devices x 3,600 s = 36 M frames).
A tiny vectorized run first compiles (or loads from numba's cache) the kernels, so no case's time includes
compilation. Each case (devices x engine) runs in a child process of its own (this file with ``--child``), so
its peak RSS is its own; every case and the baseline run on one core (``--cpu``: the goal is one core's). A case
still running after ``--cap-s`` is killed and reported "over cap". An event-engine case whose cost, scaled
linearly in devices from the largest smaller case that finished, is over twice the cap is not started
(reported "over cap (predicted)"; ``--run-over-cap`` starts it anyway, to be
killed at the cap). For an over-cap case the wall time, CPU time and peak RSS are *extrapolated*, linearly in
the horizon, from two runs of the same case at the short horizons of ``--extrapolate-from-s``; the table marks
such figures with "~" (on a busy machine trust the CPU figure more: a load spike in one short run skews both).

How to read it:
- wall s is ``simulate()`` alone (not the child's interpreter start-up or imports); frames/s = frames / wall.
  cpu s is the child's CPU time in the same span (with its forks'): well below wall s means the machine was busy
  (each case's load average at start and end is in the progress lines and the JSON).
- x bare: the case's wall time over that of a bare SimPy loop measured in this run with the same number of
  processes (one per device, each ``yield env.timeout(period)``) and the same number of frames; above
  ``--baseline-frames`` frames the loop runs that many and its time is scaled linearly (the table says so).
  The ratio holds across machines of different speed: < 1 means faster than SimPy can merely tick the frames.
- peak MiB is the child's ``ru_maxrss``, or that of a process it forked (a resumed pass) if larger; summary MiB
  is ``summary.peak_rss_bytes`` (the same process, read when the run ended, before the result was turned into
  the table row).
- exact/perturbation: ``summary.engine.exact`` and the largest delay telemetry would have caused the
  foreground (FL, handshakes) at one place, in seconds (the vectorized engine's approximation; events: exact).
- growth: the log-log slope of wall time against devices per engine, over the cases that finished (1 = linear).
- goals (issue 11): 10,000 devices x 1 h in <= 10 s and <= 2 GB (2e9 bytes) peak; 1,000 devices x 1 h >= 50x
  faster than the event engine's 221-232 s that the issue measured (the ratio against the event engine
  measured in this run is printed beside it when that case finished).
Run: python bench/sim_scale.py [--quick] [--devices 100 1000 10000] [--horizon-s 3600] [--cap-s 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from sim.loading import JSON_FILE, SVG_FILE, in_range, output_problem

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "ward-200.yaml"
ENGINES = ("vectorized", "events")
POPULATIONS = 8  # ward-200's device populations; the first two (ECG patches) carry the issue's devices
GOAL_10K_WALL_S = 10.0
GOAL_10K_RSS_BYTES = 2_000_000_000
GOAL_1K_SPEEDUP = 50.0
ISSUE_EVENTS_1K_S = (221.0, 232.0)  # the issue's measurement of the event engine, 1,000 devices x 1 h
MIB = 1024 * 1024


# --- the case, in its own process --------------------------------------------------------------------


def overrides(devices: int, horizon_s: float, engine: str) -> list[str]:
    """The issue's layout: ECG patches only, half on each of the two ECG populations, one round, one replication."""
    sets = [f"workload.devices.{j}.count=0" for j in range(2, POPULATIONS)]
    half = devices // 2
    ecg = [f"workload.devices.0.count={half}", f"workload.devices.1.count={devices - half}"]
    run = [f"run.horizon_s={horizon_s!r}", "run.replications=1", f"run.engine={engine}"]
    return [*sets, *ecg, "workload.fl.rounds=1", *run]


def frame_period_s() -> float:
    from sim.scenario import load_scenario

    return load_scenario(SCENARIO, overrides(2, 60, "events")).workload.devices[0].period_s()


def cpu_s() -> float:
    """CPU time of this process and of the processes it forked and reaped (a resumed pass: sim/checkpoint.py)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_child(devices: int, horizon_s: float, engine: str) -> dict[str, Any]:
    from sim.runner import peak_rss_bytes, simulate
    from sim.scenario import load_scenario

    scenario = load_scenario(SCENARIO, overrides(devices, horizon_s, engine))
    t0, c0 = time.perf_counter(), cpu_s()
    summary = simulate(scenario).summary
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    maxrss = peak_rss_bytes()  # its forks' too: a resumed pass runs in one (sim/checkpoint.py)
    eng = summary.engine
    where, (worst, count) = largest_perturbation(eng.perturbation if eng else {})
    lat, storm = summary.telemetry.latency_s, summary.telemetry.storm
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "summary_wall_s": summary.wall_s,
        "frames": summary.telemetry.frames,
        "events": summary.events,
        "peak_rss_bytes": maxrss,
        "summary_peak_rss_bytes": summary.peak_rss_bytes,
        "engine": eng.name if eng else None,
        "exact": eng.exact if eng else None,
        "perturbation_s": worst,
        "perturbation_at": where,
        "perturbation_count": count,
        "frames_in_flight": eng.frames_in_flight if eng else None,
        "windows": getattr(eng, "windows", None),  # vectorized: kernel windows, summed over replications
        "passes": getattr(eng, "passes", None),  # vectorized: SimPy passes of the foreground (newer sim/contract.py)
        "latency_mean_s": lat.mean if lat else None,
        "latency_p95_s": lat.p95 if lat else None,
        "quantiles": summary.telemetry.quantiles,
        # the start-up storm (sim/storm.py): the last device's first session up, the median's, most under way at once
        "storm_all_up_s": storm.all_up_s.mean if storm else None,
        "storm_median_up_s": storm.up_s.p50 if storm else None,
        "storm_peak_under_way": storm.peak_under_way.mean if storm else None,
        "rounds_completed": summary.rounds_completed,
        "sim_time_s": summary.sim_time_s,
        "warnings": summary.warnings,
    }


def largest_perturbation(perturbation: dict[str, tuple[float, int]]) -> tuple[str | None, tuple[float, int]]:
    """The place where telemetry would have delayed the foreground most: (place, (seconds, how many))."""
    if not perturbation:
        return None, (0.0, 0)
    return max(perturbation.items(), key=lambda kv: kv[1][0])


# a case's process as a user's shell starts it: caching bytecode (a sandbox may set PYTHONDONTWRITEBYTECODE, and the
# modules a run loads on the way, the kernels' among them, would then be compiled again inside the timed part)
NO_BYTECODE = "PYTHONDONTWRITEBYTECODE"
USER_ENV = {k: v for k, v in os.environ.items() if k != NO_BYTECODE}


def spawn(devices: int, horizon_s: float, engine: str, cap_s: float) -> dict[str, Any]:
    """One case in a child process; status "ok", "over cap" (killed at the cap) or "error" (with its stderr)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--devices", str(devices),
            "--horizon-s", repr(horizon_s), "--engine", engine]  # fmt: skip
    t0 = time.perf_counter()
    try:
        res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=cap_s, env=USER_ENV)
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child (only it: it starts no processes)
        return {"status": "over cap", "child_wall_s": time.perf_counter() - t0}
    child_wall = time.perf_counter() - t0
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        return {"status": "error", "returncode": res.returncode, "stderr": res.stderr[-6000:],
                "child_wall_s": child_wall}  # fmt: skip
    return {"status": "ok", "child_wall_s": child_wall, **json.loads(lines[-1])}


# --- the baseline ------------------------------------------------------------------------------------


def bare_loop(devices: int, period_s: float, frames: int, max_frames: int) -> dict[str, Any]:
    """Wall time of a bare SimPy model of the same frames: one process per device, each only timeouts.

    Runs min(frames, max_frames) frames; the wall time is scaled linearly to ``frames`` when it ran fewer."""
    ran = max(min(frames, max_frames), devices)
    per, extra = divmod(ran, devices)
    t0, c0 = time.perf_counter(), time.process_time()
    env = simpy.Environment()

    def device(k: int):
        for _ in range(k):
            yield env.timeout(period_s)

    for i in range(devices):
        env.process(device(per + (i < extra)))
    env.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"devices": devices, "frames": frames, "frames_run": ran, "wall_run_s": wall, "wall_s": wall * frames / ran,
            "cpu_s": cpu * frames / ran, "scaled": ran < frames}  # fmt: skip


# --- the parent --------------------------------------------------------------------------------------


def predicted_wall(done: list[dict[str, Any]], engine: str, devices: int, horizon_s: float) -> float | None:
    """Linear-in-devices estimate from the largest smaller case of the engine that finished (a lower bound
    when the engine grows faster than linearly)."""
    prior = [c for c in done if c["engine_asked"] == engine and c["status"] == "ok" and c["devices"] < devices
             and c["horizon_s"] == horizon_s]  # fmt: skip
    if not prior:
        return None
    last = max(prior, key=lambda c: c["devices"])
    return last["wall_s"] * devices / last["devices"]


def extrapolate(devices: int, engine: str, horizon_s: float, short: list[float], cap_s: float) -> dict[str, Any]:
    """Wall time and peak RSS at ``horizon_s`` from two shorter runs, each linear in the horizon (a + b*h)."""
    hs = sorted(h for h in short if h < horizon_s)[:2]
    if len(hs) < 2:
        return {"status": "none", "why": "needs two --extrapolate-from-s horizons below --horizon-s"}
    runs = []
    for h in hs:
        r = spawn(devices, h, engine, cap_s)
        print(f"  extrapolation run {engine} {devices:,} devices x {h:g} s: {describe(r)}", flush=True)
        if r["status"] != "ok":
            return {"status": "none", "why": f"the {h:g} s run: {r['status']}", "runs": [*runs, r]}
        runs.append({"horizon_s": h, **r})

    def line(key: str) -> float:
        (h1, y1), (h2, y2) = ((r["horizon_s"], r[key]) for r in runs)
        return y1 + (y2 - y1) * (horizon_s - h1) / (h2 - h1)

    return {"status": "ok", "from_horizons_s": hs, "wall_s": line("wall_s"), "cpu_s": line("cpu_s"),
            "peak_rss_bytes": line("peak_rss_bytes"), "frames": line("frames"), "runs": runs}  # fmt: skip


def describe(r: dict[str, Any]) -> str:
    if r["status"] == "ok":
        passes = f", {r['passes']} SimPy passes" if r.get("passes") is not None else ""
        return f"{r['wall_s']:.2f} s wall, {r['frames']:,} frames, peak {r['peak_rss_bytes'] / MIB:,.0f} MiB{passes}"
    if r["status"] == "over cap" and "child_wall_s" in r:
        return f"over cap (killed after {r['child_wall_s']:.0f} s)"
    return r["status"]


def run_case(args: argparse.Namespace, done: list[dict[str, Any]], devices: int, engine: str) -> dict[str, Any]:
    case: dict[str, Any] = {"engine_asked": engine, "devices": devices, "horizon_s": args.horizon_s}
    guess = predicted_wall(done, engine, devices, args.horizon_s)
    case["loadavg_start"], case["host_state_start"] = loadavg(), host_state()
    if guess is not None and guess > 2 * args.cap_s and not args.run_over_cap:
        case.update(status="over cap", predicted=True, predicted_wall_s=guess)
    else:
        case.update(spawn(devices, args.horizon_s, engine, args.cap_s), predicted=False)
    case["loadavg_end"], case["host_state_end"] = loadavg(), host_state()
    note = f" (predicted ~{guess:,.0f} s > 2 x cap; not started)" if case["predicted"] else ""
    print(f"{engine:<10} {devices:>7,} devices x {args.horizon_s:g} s: {describe(case)}{note} "
          f"[load {case['loadavg_start'].split()[0]} -> {case['loadavg_end'].split()[0]}, "
          f"{state_line(case['host_state_start'], case['host_state_end'])}]", flush=True)  # fmt: skip
    if case["status"] == "over cap":
        case["extrapolation"] = extrapolate(devices, engine, args.horizon_s, args.extrapolate_from_s, args.cap_s)
    return case


def growth(cases: list[dict[str, Any]]) -> dict[str, float | None]:
    """Least-squares slope of log(wall) on log(devices) per engine, over cases that finished."""
    out: dict[str, float | None] = {}
    for engine in ENGINES:
        pts = [(math.log(c["devices"]), math.log(c["wall_s"])) for c in cases
               if c["engine_asked"] == engine and c["status"] == "ok"]  # fmt: skip
        if len(pts) < 2 or len({x for x, _ in pts}) < 2:
            out[engine] = None
            continue
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        out[engine] = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return out


def find(cases: list[dict[str, Any]], engine: str, devices: int) -> dict[str, Any] | None:
    return next((c for c in cases if c["engine_asked"] == engine and c["devices"] == devices), None)


def goals(cases: list[dict[str, Any]], horizon_s: float) -> dict[str, Any]:
    """The issue's goals, judged on the vectorized engine (what ``run.engine: auto`` picks with devices)."""
    out: dict[str, Any] = {}
    big, mid, ev = find(cases, "vectorized", 10_000), find(cases, "vectorized", 1_000), find(cases, "events", 1_000)
    if horizon_s != 3600:
        return {"judged": False, "why": "the goals are for a 3,600 s horizon"}
    if big and big["status"] == "ok":
        out["10k_wall_s"], out["10k_peak_rss_bytes"] = big["wall_s"], big["peak_rss_bytes"]
        out["10k_wall_met"] = big["wall_s"] <= GOAL_10K_WALL_S
        out["10k_host_state"] = [big.get("host_state_start"), big.get("host_state_end")]
        out["10k_rss_met"] = big["peak_rss_bytes"] <= GOAL_10K_RSS_BYTES
    if mid and mid["status"] == "ok":
        out["1k_wall_s"] = mid["wall_s"]
        out["1k_speedup_vs_issue"] = [ref / mid["wall_s"] for ref in ISSUE_EVENTS_1K_S]
        out["1k_speedup_met"] = min(ISSUE_EVENTS_1K_S) / mid["wall_s"] >= GOAL_1K_SPEEDUP
        if ev and ev["status"] == "ok":
            out["1k_speedup_vs_events_this_run"] = ev["wall_s"] / mid["wall_s"]
    return {"judged": True, **out}


# --- printing ----------------------------------------------------------------------------------------


def fmt_row(c: dict[str, Any], base: dict[str, Any] | None) -> str:
    head = f"{c['engine_asked']:<10} {c['devices']:>7,} {c['horizon_s']:>6g}"
    if c["status"] != "ok":
        ex = c.get("extrapolation", {})
        label = "over cap (predicted)" if c.get("predicted") else c["status"]
        if ex.get("status") == "ok":
            ratio = f"{'~' + format(ex['wall_s'] / base['wall_s'], '.2f'):>8}" if base else f"{'-':>8}"
            cpu = "~" + format(ex["cpu_s"], ",.0f")
            return (f"{head} {'~' + format(ex['wall_s'], ',.0f'):>9} {cpu:>8} {'~' + format(ex['frames'], ',.0f'):>12} "
                    f"{'-':>11} {'-':>12} {'~' + format(ex['peak_rss_bytes'] / MIB, ',.0f'):>9} {'-':>9} "
                    f"{'-':>22} {'-':>8} {'-':>8} {ratio}  {label}; ~ extrapolated from "
                    f"{' and '.join(f'{h:g}' for h in ex['from_horizons_s'])} s runs")  # fmt: skip
        return f"{head} {label}"
    exact = "yes" if c["exact"] else f"no {c['perturbation_s']:.1e}s@{c['perturbation_at']}"
    mean = f"{c['latency_mean_s'] * 1e3:.2f}" if c["latency_mean_s"] is not None else "-"
    p95 = f"{c['latency_p95_s'] * 1e3:.2f}" if c["latency_p95_s"] is not None else "-"
    ratio = f"{c['wall_s'] / (base['wall_s'] * c['frames'] / base['frames']):>8.2f}" if base else f"{'-':>8}"
    summ = c["summary_peak_rss_bytes"] / MIB if c["summary_peak_rss_bytes"] else float("nan")
    speed = f"{c['wall_s']:>9.2f} {c['cpu_s']:>8.2f} {c['frames']:>12,} {c['frames'] / c['wall_s']:>11,.0f}"
    return (f"{head} {speed} {c['events']:>12,} {c['peak_rss_bytes'] / MIB:>9,.0f} {summ:>9,.0f} {exact:>22} "
            f"{mean:>8} {p95:>8} {ratio}")  # fmt: skip


def print_report(report: dict[str, Any]) -> None:
    cases, bases = report["cases"], {b["devices"]: b for b in report["baselines"]}
    print()
    print(f"{'engine':<10} {'devices':>7} {'hor s':>6} {'wall s':>9} {'cpu s':>8} {'frames':>12} {'frames/s':>11} "
          f"{'SimPy evts':>12} {'peak MiB':>9} {'summ MiB':>9} {'exact / max perturb.':>22} "
          f"{'lat ms':>8} {'p95 ms':>8} {'x bare':>8}")  # fmt: skip
    for c in cases:
        print(fmt_row(c, bases.get(c["devices"])))
    print()
    for c in cases:  # what each case's start-up storm was (the engines agree where both ran)
        if c.get("storm_all_up_s") is not None:
            print(f"start-up storm, {c['engine']:<10} {c['devices']:>6,} devices: every device up by "
                  f"{c['storm_all_up_s']:.2f} s, the median at {c['storm_median_up_s']:.2f} s, at most "
                  f"{c['storm_peak_under_way']:,.0f} handshakes under way at once")  # fmt: skip
    for b in report["baselines"]:
        scaled = (f"; ran {b['frames_run']:,} frames in {b['wall_run_s']:.2f} s, scaled linearly"
                  if b["scaled"] else "")  # fmt: skip
        print(f"bare SimPy loop, {b['devices']:>6,} processes: {b['wall_s']:8.2f} s wall ({b['cpu_s']:.2f} s CPU) "
              f"for {b['frames']:,} frames "
              f"({b['frames'] / b['wall_s']:,.0f} frames/s{scaled})")  # fmt: skip
    for engine, slope in report["growth"].items():
        how = f"exponent {slope:.2f} (log-log slope)" if slope is not None else "fewer than two finished cases"
        print(f"growth of wall time with devices, {engine:<10}: {how}")
    print_goals(report["goals"])
    for c in cases:
        for r in [c, *c.get("extrapolation", {}).get("runs", [])]:
            if r.get("status") == "error":
                where = f"{c['engine_asked']} {c['devices']:,} devices"
                print(f"\nERROR in {where} (exit {r['returncode']}):\n{r['stderr']}")


def print_goals(g: dict[str, Any]) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if not g["judged"]:
        print(f"issue 11 goals: not judged ({g['why']})")
        return
    if "10k_wall_s" in g:
        print(f"goal 10,000 devices x 1 h (vectorized): wall {g['10k_wall_s']:.2f} s <= {GOAL_10K_WALL_S:g} s "
              f"{verdict(g['10k_wall_met'])}; peak {g['10k_peak_rss_bytes'] / 1e9:.2f} GB <= 2 GB "
              f"{verdict(g['10k_rss_met'])}{_probed(g.get('10k_host_state'))}")  # fmt: skip
    else:
        print("goal 10,000 devices x 1 h: not judged (that vectorized case did not run or finish)")
    if "1k_wall_s" in g:
        lo, hi = sorted(g["1k_speedup_vs_issue"])
        this = g.get("1k_speedup_vs_events_this_run")
        vs_this = f"; vs the event engine in this run {this:.1f}x" if this else ""
        print(f"goal 1,000 devices x 1 h (vectorized) >= {GOAL_1K_SPEEDUP:g}x faster than the issue's "
              f"{ISSUE_EVENTS_1K_S[0]:g}-{ISSUE_EVENTS_1K_S[1]:g} s: wall {g['1k_wall_s']:.2f} s, "
              f"{lo:.1f}-{hi:.1f}x {verdict(g['1k_speedup_met'])}{vs_this}")  # fmt: skip
    else:
        print("goal 1,000 devices x 1 h: not judged (that vectorized case did not run or finish)")


def _probed(states: list[dict[str, Any] | None] | None) -> str:
    """The goals line's note of the host's state around the 10,000-device case ("" where not recorded)."""
    line = state_line(*states) if states else ""
    return f" (host: {line})" if line else ""


def sim_source() -> str:
    """A digest of the simulator's source (sim/*.py) as it is on disk: the working tree may change under a run."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "sim").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def host_state() -> dict[str, float | None]:
    """The host's state now, where this process is pinned: its core's speed (``speed_probe_us``: the median of 15
    speed probes, hw/speed.py, SHAKE-256 over 16 KiB) and its memory state (``training_step_s``: the twin's
    training probe, hw/trainprobe.py, a 1 M-parameter step alone, ~0.3 s). On 2026-12-04 21:31-21:33 runs of the
    10,000-device hour took 11.3-13.9 s with the speed probe at 33 µs before and after each: the kernels wait on
    memory, and the 1 M step read 61-127 ms beside them (127 before the 13.9 s run). Each case records both."""
    from hw.speed import probe_us
    from hw.trainprobe import training_probe

    step = training_probe()
    return {"speed_probe_us": float(sorted(probe_us() for _ in range(15))[7]),
            "training_step_s": step.alone_s if step else None}  # fmt: skip


def state_line(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """ "speed probe 33 -> 34 µs, 1 M step 61 -> 66 ms" ("" where not recorded)."""
    if not before or not after:
        return ""

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1e3:.0f}"

    return (f"speed probe {before['speed_probe_us']:.0f} -> {after['speed_probe_us']:.0f} µs, 1 M step "
            f"{ms(before['training_step_s'])} -> {ms(after['training_step_s'])} ms")  # fmt: skip


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def svg_plot(report: dict[str, Any], width: int = 640, height: int = 400) -> str:
    """Wall time against devices, log-log: each engine (measured: dots; extrapolated: hollow) and the bare SimPy
    loop ticking the same frames; the 10 s goal as a line. Plain SVG: no plotting library needed."""
    series: dict[str, list[tuple[float, float, bool]]] = {}
    for c in report["cases"]:
        wall = c.get("wall_s") if c.get("status") == "ok" else (c.get("extrapolation") or {}).get("wall_s")
        if wall and c.get("status") != "ok":  # a case killed at the cap took at least that long
            wall = max(wall, c.get("child_wall_s") or 0.0)
        if wall:
            series.setdefault(c["engine_asked"], []).append((c["devices"], float(wall), c.get("status") == "ok"))
    series["bare SimPy loop"] = [(b["devices"], float(b["wall_s"]), not b["scaled"]) for b in report["baselines"]]
    points = [p for pts in series.values() for p in pts] + [(1, 10.0, True)]
    xs, ys = [math.log10(p[0]) for p in points], [math.log10(p[1]) for p in points]
    x0, x1, y0, y1 = math.floor(min(xs)), math.ceil(max(xs)), math.floor(min(ys)), math.ceil(max(ys))
    x0 = max(x0, math.floor(min(math.log10(p[0]) for pts in series.values() for p in pts)))
    left, right, top, bottom = 70, width - 170, 20, height - 50

    def at(d: float, w: float) -> tuple[float, float]:
        fx, fy = (math.log10(d) - x0) / max(1, x1 - x0), (math.log10(w) - y0) / max(1, y1 - y0)
        return left + fx * (right - left), bottom - fy * (bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12"><rect width="100%" height="100%" fill="white"/>']  # fmt: skip
    for e in range(x0, x1 + 1):
        x, _ = at(10**e, 10**y0)
        out.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#ddd"/>'
                   f'<text x="{x}" y="{bottom + 16}" text-anchor="middle">{10**e:,}</text>')  # fmt: skip
    for e in range(y0, y1 + 1):
        _, y = at(10**x0, 10**e)
        out.append(f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{10**e:g} s</text>')  # fmt: skip
    _, goal = at(10**x0, 10.0)
    out.append(f'<line x1="{left}" y1="{goal}" x2="{right}" y2="{goal}" stroke="#d62728" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{right + 6}" y="{goal + 4}" fill="#d62728">goal 10 s</text>')
    colours = {"vectorized": "#1f77b4", "events": "#ff7f0e", "bare SimPy loop": "#7f7f7f"}
    for i, (name, pts) in enumerate(series.items()):
        colour = colours.get(name, "#2ca02c")
        xy = [at(d, w) for d, w, _ in sorted(pts)]
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}"/>')  # fmt: skip
        for (x, y), (_, _, measured) in zip(xy, sorted(pts), strict=True):
            fill = colour if measured else "white"
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{colour}"/>')
        out.append(f'<text x="{right + 6}" y="{top + 16 * (i + 2)}" fill="{colour}">{name}</text>')
    out.append(f'<text x="{(left + right) / 2}" y="{height - 10}" text-anchor="middle">devices (1 frame/s each, '
               f'{report["horizon_s"]:g} s simulated; hollow: over the cap)</text></svg>')  # fmt: skip
    return "\n".join(out) + "\n"


def pin(cpu: int | None) -> int | None:
    """Run this process, and the children it starts (which inherit it), on one core: the goal is one core's, and
    a run's own processes (a resumed pass in a fork, the parent loading pandas meanwhile) would use a second
    one. Returns the core (None: not pinned, or the OS cannot)."""
    if cpu == -1 or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[-1] if cpu is None else cpu
    if core not in allowed:
        raise SystemExit(f"--cpu {core}: this process may run on cores {allowed} only")
    os.sched_setaffinity(0, {core})
    return core


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=in_range(1, 10_000_000), nargs="+", default=[100, 1_000, 10_000])
    ap.add_argument("--horizon-s", type=in_range(1e-3, 1e7, float), default=3600.0)
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    ap.add_argument(
        "--cap-s", type=in_range(1, 86_400, float), default=300.0, help="wall-time cap per case (child process)"
    )
    ap.add_argument("--run-over-cap", action="store_true", help="start cases predicted to exceed twice the cap")
    ap.add_argument("--extrapolate-from-s", type=in_range(1e-3, 1e7, float), nargs="*", default=[30.0, 60.0],
                    help="two short horizons to extrapolate an over-cap case from (none: no estimate)")  # fmt: skip
    ap.add_argument(
        "--baseline-frames", type=in_range(1, 10**10), default=2_000_000, help="most frames the bare loop runs"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 100 and 1,000 devices x 60 s")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--plot", type=Path, help="write a log-log SVG of wall time against devices here")
    ap.add_argument("--cpu", type=int, default=None,
                    help="the core every case and the baseline run on (default: the last this process may use; -1: "
                         "not pinned)")  # fmt: skip
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    outputs = (("--out", args.out, "scale.json", "a JSON file", JSON_FILE),
               ("--plot", args.plot, "scale.svg", "an SVG image", SVG_FILE))  # fmt: skip
    for option, path, example, what, ours in outputs:
        if path is not None:  # before the cases (they may take an hour); its directory is made, as when written
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
            if (problem := output_problem(path, example, what, ours)) is not None:
                ap.error(f"{option}: {problem}")
    core = pin(args.cpu)
    if args.child:
        print(json.dumps(run_child(args.devices[0], args.horizon_s, args.engine)))
        return
    if args.quick:
        args.devices, args.horizon_s, args.extrapolate_from_s = [100, 1_000], 60.0, [15.0, 30.0]
    load_before, source_before = loadavg(), sim_source()
    where = f"all on core {core}" if core is not None else "not pinned"
    print(f"load average before: {load_before}; {os.cpu_count()} CPUs, {where}; {platform.python_version()}",
          flush=True)  # fmt: skip
    period = frame_period_s()
    if "vectorized" in args.engines:  # compile (or load) the numba kernels once, so no case pays for it
        warm = spawn(10, 10.0, "vectorized", args.cap_s)
        print(f"warm-up (numba kernels), not counted: {describe(warm)}, child {warm.get('child_wall_s', 0):.1f} s",
              flush=True)  # fmt: skip
    cases: list[dict[str, Any]] = []
    for devices in sorted(args.devices):
        for engine in args.engines:
            cases.append(run_case(args, cases, devices, engine))
    baselines = [bare_loop(n, period, round(n * args.horizon_s / period), args.baseline_frames)
                 for n in sorted(args.devices)]  # fmt: skip
    report = {"command": sys.argv, "python": sys.version, "cpus": os.cpu_count(), "pinned_to_cpu": core,
              "loadavg_before": load_before,
              "frame_period_s": period, "cap_s": args.cap_s, "horizon_s": args.horizon_s, "cases": cases,
              "baselines": baselines, "growth": growth(cases), "goals": goals(cases, args.horizon_s)}  # fmt: skip
    report.update(loadavg_after=loadavg(), sim_source_before=source_before, sim_source_after=sim_source())
    print_report(report)
    after = report["sim_source_after"]
    moved = f" -> {after}: CHANGED during the run (cases may have run different code)" if after != source_before else ""
    print(f"sim/*.py digest {source_before}{moved}")
    print(f"\nload average after: {report['loadavg_after']}")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_text(svg_plot(report))
        print(f"wrote {args.plot}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
