"""The run-cost estimate (sim/cost.py) against the runs it estimates, for the classes an input hunt found
(2026-12-02): a session burst that holds frames back was priced as if every device sent from the start (and its
processor-sharing term grew without bound with a slow enough signature: "~1723 h" for a 2 s run), series.parquet's
rows were left out of the estimate and of the reported peak memory. Counts, not wall times: the events, rows and
series rows a run reports are deterministic; speed targets are bench/'s."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim import cost as costs
from sim import runner
from sim.contract import RunLayout, read_summary
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

from .conftest import SCENARIOS

PAPER = SCENARIOS / "paper-3node.yaml"
WARD = SCENARIOS / "ward-200.yaml"
LOCAL = SCENARIOS / "localhost.yaml"
SLH = ["run.replications=1", "workload.fl.rounds=2", "workload.crypto.signature=SLH-DSA-SHA2-128s"]


def _within(estimated: float, actual: float, factor: float = 3.0) -> bool:
    return actual <= estimated <= factor * actual


def _slow_signing_profile(tmp_path: Path) -> Path:
    """pi4-openssl with ML-DSA-65 signing drawn from lognormal(13.8, 5): a mean of ~1e11 s, a median of ~11 days,
    and now and then a draw of seconds (the hunt's profile_sign_huge.yaml)."""
    data = yaml.safe_load((SCENARIOS / "profiles" / "pi4-openssl.yaml").read_text())
    data["ops"]["ML-DSA-65.sign"]["distribution"] = {"kind": "lognormal", "mu": 13.8, "sigma": 5}
    path = tmp_path / "sign-huge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_signature_slower_than_the_run_is_no_refusal(tmp_path):
    """Was: "the run needs ~1723.0 h (433.9 k events at 120 k/s) ... lower workload.devices[0].count"; the run takes
    seconds: the handshakes never end, so the devices send (nearly) nothing and FL never starts."""
    s = load_scenario(PAPER, ["run.replications=1", "workload.fl.rounds=2"], _slow_signing_profile(tmp_path))
    c = costs.estimate(s)
    assert costs.budget_problem(s, c, costs.DEFAULT_MAX_MEMORY_GIB, costs.DEFAULT_MAX_MINUTES) is None, c.describe()
    assert c.wall_s < 60, c.describe()
    r = simulate(s)
    assert _within(c.events, r.summary.events), (c.events, r.summary.events)  # 38,600 events, 12,866 rows
    assert _within(c.rows, len(r.spans)), (c.rows, len(r.spans))
    assert c.sim_time_s == pytest.approx(r.summary.sim_time_s, rel=0.05)


def test_a_session_burst_holds_the_frames_back():
    """250 devices a host, each session signing with SLH-DSA-SHA2-128s (3.7 s on a Pi 4): the hosts take ~230 s to
    serve the burst, and the frames go after it (the run ends with FL, soon after)."""
    s = load_scenario(PAPER, [*SLH, "workload.devices.*.count=250"])
    c = costs.estimate(s)
    r = simulate(s)
    frames = int((r.spans.op == "frame").sum())
    assert frames < 0.5 * 500 * r.summary.sim_time_s  # held back: fewer than half of what 500 devices send in the run
    assert _within(c.events, r.summary.events), (c.events, r.summary.events)
    assert _within(c.rows, len(r.spans)), (c.rows, len(r.spans))
    assert c.sim_time_s == pytest.approx(r.summary.sim_time_s, rel=0.1)


def test_the_thousand_device_burst_is_estimated_near_what_it_costs():
    """The hunt's case: refused at "~3.4 GiB (3.8 M span rows)"; run, it made 614,611 events and 185,858 span rows
    (seed 2026, 935 s simulated) in 0.31 GiB. The estimate now admits it, above those counts."""
    s = load_scenario(PAPER, [*SLH, "workload.devices.*.count=1000"])
    c = costs.estimate(s)
    assert costs.budget_problem(s, c, costs.DEFAULT_MAX_MEMORY_GIB, costs.DEFAULT_MAX_MINUTES) is None, c.describe()
    assert _within(c.events, 614_611) and _within(c.rows, 185_858), (c.events, c.rows)
    assert c.peak_bytes < 0.6 * costs.GIB


def test_series_rows_are_counted_and_drive_the_refusal():
    """ward-200 at its finest series bin (100,000 bins): 5 replications x 19 resources x 100,000 = 9.5 M series rows,
    2.8 GB at the peak; estimated at 0.30 GiB and run under a 1 GiB budget before."""
    s = load_scenario(WARD, ["run.series_bin_s=0.036"])
    c = costs.estimate(s)
    assert c.series_rows == 5 * 19 * 100_000
    assert c.peak_bytes >= 2.5 * costs.GIB
    problem = costs.budget_problem(s, c, 1.0, costs.DEFAULT_MAX_MINUTES)
    assert problem is not None and "run.series_bin_s" in problem.split(":")[1], problem
    assert "9.5 M series rows" in problem and "raise run.series_bin_s" in problem, problem
    assert costs.budget_problem(s, c, 4.0, costs.DEFAULT_MAX_MINUTES) is None  # within the budget that holds it
    default = costs.estimate(load_scenario(WARD, []))
    assert default.series_rows == 5 * 19 * 120 and default.peak_bytes < 0.5 * costs.GIB


def test_series_rows_estimated_against_a_run():
    s = load_scenario(PAPER, ["run.replications=2", "workload.fl.rounds=2", "run.series_bin_s=0.05"])
    c = costs.estimate(s)
    r = simulate(s)
    assert r.series is not None
    assert _within(c.series_rows, len(r.series), 2.0), (c.series_rows, len(r.series))


@pytest.mark.parametrize(
    ("path", "sets"),
    [
        (PAPER, []),
        (WARD, []),
        (WARD, ["run.series_bin_s=0.036"]),
        (PAPER, [*SLH, "workload.devices.*.count=1000"]),
        (PAPER, ["workload.devices.0.count=100000"]),
        (WARD, ["run.engine=events", "workload.fl.samples_per_client=200000"]),
    ],
)
def test_the_parts_add_up_and_the_refusal_shows_them(path, sets):
    s = load_scenario(path, sets)
    c = costs.estimate(s)
    assert sum(b for _, b in c.memory) == pytest.approx(c.peak_bytes)
    assert sum(t for _, t in c.time) == pytest.approx(c.wall_s)
    for by, parts, total in ((2, c.memory, c.peak_bytes), (3, c.time, c.wall_s)):
        top = max(parts, key=lambda p: p[1])
        line = costs.budget_problem(s, c, (c.peak_bytes / costs.GIB / 2 if by == 2 else 1e6),
                                    (c.wall_s / 120 if by == 3 else 1e6))  # fmt: skip
        assert line is not None and f"{top[0]}: " in line, line
        if top[1] >= 0.5 * total:  # the field named drives that part
            field = line.split(": ")[1]
            ranked = max(c.drivers, key=lambda d: d[by])
            assert field == ranked[0], (line, c.drivers)
    events_part = next(t for what, t in c.time if "events at" in what)
    assert events_part * costs.EVENTS_PER_S <= c.events + 1  # the events shown are those the part's time is for


def test_a_time_refusal_names_what_takes_the_time():
    """A frames-heavy paper run: most of its time is its events; the line shows them with their own time, and the
    total they add to."""
    s = load_scenario(PAPER, ["workload.devices.0.count=100000"])
    c = costs.estimate(s)
    line = costs.budget_problem(s, c, 1e6, 1.0)
    assert line is not None and "workload.devices[0].count" in line.split(": ")[1], line
    shown = line.split("(", 1)[1].split("), over")[0]
    assert "events at 120 k/s: " in shown, line


def test_the_reported_peak_memory_is_read_after_the_series(monkeypatch, tmp_path):
    """sim/runner.py read the peak before series_frame built the series (9.5 M rows: 0.34 GiB reported, 2.8 GB
    reached) and before the tables were written."""
    s = load_scenario(PAPER, ["run.replications=1", "workload.fl.rounds=1"])
    built = []
    real_frame = runner.series_frame
    monkeypatch.setattr(runner, "series_frame", lambda *a: built.append(1) or real_frame(*a))
    monkeypatch.setattr(runner, "peak_rss_bytes", lambda: 7 * costs.GIB if built else 1)
    r = simulate(s)
    assert r.summary.peak_rss_bytes == 7 * costs.GIB
    r.summary.peak_rss_bytes = 1
    monkeypatch.setattr(runner, "peak_rss_bytes", lambda: 9 * costs.GIB)  # writing the tables reached more
    write_run(r, tmp_path, s)
    assert read_summary(RunLayout(tmp_path).summary).peak_rss_bytes == 9 * costs.GIB


def test_the_estimate_keeps_the_models_series_bins():
    from sim import model

    assert costs.SERIES_BINS == model.SERIES_BINS
    assert math.isfinite(costs.estimate(load_scenario(PAPER, [])).wall_s)


# run.engine auto: the kernels give up at run time on a frame slower than its period from emission to decryption
# (sim/telemetry.py _within_period) and the event model runs; the estimate priced the kernels (the hunt's ward-200
# with a 1 s latency on gw-1's uplink: "~37.2 k events, 0.28 GiB, ~1 s"; the run made 5.5 M events, 1.07 GiB)
SLOW_FRAMES = [
    "deployment.network.links.4.latency_s=1",  # the hunt's
    "deployment.network.links.4.latency_s=60",
    "deployment.network.links.4.jitter_s=1",
    "deployment.network.links.4.bandwidth_bps=1000",  # more frames than the link passes
    "deployment.network.links.4.bandwidth_bps=3e5",  # the frames behind the session storm's handshakes
    "deployment.hosts.*.cpu_speed=1e-3",  # decryption beside the session storm's handshakes on the cores
]


@pytest.mark.parametrize("change", SLOW_FRAMES)
def test_auto_is_priced_as_the_event_model_when_a_frame_may_outlast_its_period(change):
    s = load_scenario(WARD, ["run.replications=1", change])
    auto = costs.estimate(s)
    events = costs.estimate(load_scenario(WARD, ["run.replications=1", change, "run.engine=events"]))
    assert (auto.events, auto.rows, auto.peak_bytes) == pytest.approx((events.events, events.rows, events.peak_bytes))
    assert auto.fallback and "(the event model: " in auto.describe(), auto.describe()


def test_the_hunts_fallback_is_refused_naming_the_link():
    s = load_scenario(WARD, ["run.replications=1", "deployment.network.links.4.latency_s=1"])
    c = costs.estimate(s)
    problem = costs.budget_problem(s, c, costs.DEFAULT_MAX_MEMORY_GIB, costs.DEFAULT_MAX_MINUTES)
    assert problem is not None and problem.split(": ")[1] == "deployment.network.links[4].latency_s", problem
    assert problem.endswith("; auto runs the event model: ecg-patch-1's frames may take ~7 s (period 1 s) (got 1.0)")
    assert "lower deployment.network.links[4].latency_s" in problem, problem
    slow_link = load_scenario(WARD, ["run.replications=1", "deployment.network.links.4.bandwidth_bps=1000"])
    problem = costs.budget_problem(slow_link, costs.estimate(slow_link), 1.0, 10.0)
    assert problem is not None and "raise deployment.network.links[4].bandwidth_bps" in problem, problem


@pytest.mark.parametrize("change", [[], ["deployment.network.links.4.jitter_s=0.05"],
                                    ["deployment.network.links.4.bandwidth_bps=1e6"]])  # fmt: skip
def test_frames_well_within_their_period_stay_with_the_kernels(change):
    c = costs.estimate(load_scenario(WARD, ["run.replications=1", *change]))
    assert not c.fallback and c.events < 1e5, c.describe()


@pytest.mark.parametrize(
    "change",
    [
        "deployment.network.links.4.latency_s=1",
        "deployment.network.links.4.bandwidth_bps=3e5",
        "deployment.network.links.4.bandwidth_bps=1e6",
    ],
)
def test_the_estimated_engine_is_the_one_that_runs(change):
    """A minute of ward-200 (12,000 frames: auto takes the kernels), ~2 s a run."""
    s = load_scenario(WARD, ["run.replications=1", "run.horizon_s=60", change])
    c = costs.estimate(s)
    r = simulate(s)
    assert (r.summary.engine.name == "events") == bool(c.fallback), (r.summary.engine, c.describe())
    if c.fallback:
        assert _within(c.events, r.summary.events), (c.events, r.summary.events)  # 148 k estimated, 95 k made


# cpu_sharing: linux: a core running a job longer than a slice re-arms a timer every slice (sim/hosts.py SlicedCore);
# with jobs that outlast the run that is ~600 events a simulated second on localhost's 2 cores, which the estimate
# left out (a 10-day horizon: "~1 s", an hour of events)
LINUX_SLOW = ["run.replications=1", "deployment.hosts.*.cpu_speed=1e-300"]


@pytest.mark.parametrize(
    ("sets", "made"),
    [
        ([*LINUX_SLOW, "run.horizon_s=60"], 36_401),
        (["run.replications=1", "deployment.hosts.*.cpu_speed=0.01"], 14_469),
    ],
)
def test_linux_slices_are_estimated(sets, made):
    s = load_scenario(LOCAL, sets)
    c = costs.estimate(s)
    r = simulate(s)
    assert r.summary.events == made  # seed 2026: the slices are most of them
    assert _within(c.events, made, 1.5), (c.events, made)


def test_jobs_that_outlast_a_long_run_are_refused_naming_the_hosts_speed():
    s = load_scenario(LOCAL, [*LINUX_SLOW, "run.horizon_s=864000"])
    c = costs.estimate(s)
    assert c.events > 5e8, c.describe()  # 864,000 s x 2 cores / 3.3 ms
    problem = costs.budget_problem(s, c, costs.DEFAULT_MAX_MEMORY_GIB, costs.DEFAULT_MAX_MINUTES)
    assert problem is not None and "raise deployment.hosts[0].cpu_speed" in problem, problem
    shared = load_scenario(
        LOCAL, [*LINUX_SLOW, "run.horizon_s=864000", "deployment.hosts.*.cpu_sharing=processor-sharing"]
    )
    assert costs.estimate(shared).events < 1e6  # no slices: a job's end is one event


def test_the_estimate_keeps_the_models_slices_and_hello():
    from sim import hosts, model

    assert (costs.SLICE_S, costs.TICK_S) == (hosts.PlacedCores.SLICE_S, hosts.PlacedCores.TICK_S)
    assert costs.HELLO_BYTES == model.HELLO_BYTES


# The kernels' giving up found at run time only. A fuzz hunt (2026-12-07, bench/fuzz_inputs.py --seed 4242) ran a
# ward-200 estimated as the kernels compute it (0.85 GiB, 13 s: within --max-minutes 0.5 and 1 GiB) whose kernels
# gave up at run time; auto ran the event model instead, on past both budgets (1.6 GB and 32 s a replication). Its
# giving up was a kernel bug, fixed (tests/test_engines.py), but an estimate can miss a fallback (it prices the
# frames' slowest time from a model of their way: sim.cost._slow_frames), and whatever it misses must be held to the
# budget before the event model runs it. Here the estimate is made to miss one it catches.
SLOW_LINK = ["run.replications=1", "deployment.network.links.4.latency_s=1"]  # frames slower than their period


@pytest.fixture
def estimate_misses_slow_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(costs, "_slow_frames", lambda *a, **k: None)


def test_a_fallback_found_at_run_time_is_held_to_the_budget_before_it_runs(estimate_misses_slow_frames, tmp_path,
                                                                          capsys):  # fmt: skip
    from pqtwin import cli

    s = load_scenario(WARD, SLOW_LINK)
    assert costs.budget_problem(s, costs.estimate(s), 1.0, 0.2) is None  # estimated as the kernels compute it
    out = tmp_path / "w"
    argv = ["sim", str(WARD), *(a for change in SLOW_LINK for a in ("--set", change)), "--out", str(out)]
    code = cli.run([*argv, "--max-minutes", "0.2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {WARD}: "), err
    assert "over the 1 GiB budget (--max-memory-gib)" in err and "auto runs the event model: a frame of" in err, err
    assert not out.exists()  # nothing written, no run left half done


def test_the_event_models_scenario_is_shown_before_a_fallback_and_may_refuse_it():
    s = load_scenario(WARD, [*SLOW_LINK, "run.horizon_s=120"])
    seen: list[tuple[str, Path, str]] = []

    def shown(events: Any, why: str) -> None:
        seen.append((events.run.engine, events.path, why))

    ran = list(runner.simulate_modes(s, ["concurrent"], before_events=shown))
    assert [(m, r.summary.engine.name) for m, r in ran] == [("concurrent", "events")]
    assert seen == [("events", WARD, seen[0][2])] and "a frame of ecg-patch-1 took" in seen[0][2], seen
    assert s.run.engine == "auto"  # the caller's scenario is left as it was

    def refuse(events: Any, why: str) -> None:
        raise RuntimeError(why)

    with pytest.raises(RuntimeError, match="a frame of ecg-patch-1 took"):
        list(runner.simulate_modes(s, ["concurrent"], before_events=refuse))


def test_a_sweep_point_whose_fallback_is_over_its_budget_is_an_input_error_not_a_long_run(estimate_misses_slow_frames):
    from sim.sweep.point import Task, run_point

    s = load_scenario(WARD, SLOW_LINK)
    assert costs.budget_problem(s, costs.estimate(s, 1, 1), 1.0, 0.2) is None  # the plan lets the point through
    out = run_point(Task(0, "h", {}, s, 7, 1, (), budget=(1.0, 0.2)))
    assert out.error_kind == "input" and out.rows[0]["error"] == out.error, out
    assert "over the 1 GiB budget" in out.error and "auto runs the event model: a frame of" in out.error, out.error
