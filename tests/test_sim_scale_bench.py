"""bench/sim_scale.py and bench/sim_breakdown.py record the core's speed beside each case: this host's cores run in
two states, and a case's seconds say as much about that as about the engine."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import bench_module


@pytest.fixture(scope="module")
def scale() -> Any:
    return bench_module("sim_scale")


def test_the_host_state_is_both_probes_and_the_goals_line_shows_it(scale: Any, capsys: Any) -> None:
    from hw.speed import probe_us

    got = scale.host_state()
    here = sorted(probe_us() for _ in range(15))[7]
    assert here / 4 < got["speed_probe_us"] < 4 * here  # the same kernel, within the host's two states
    assert 1e-3 < got["training_step_s"] < 5.0
    before = {"speed_probe_us": 33.2, "training_step_s": 0.0614}
    goals = {"judged": True, "10k_wall_s": 10.09, "10k_peak_rss_bytes": 5e8, "10k_wall_met": False,
             "10k_rss_met": True, "10k_host_state": [before, before | {"training_step_s": None}]}  # fmt: skip
    scale.print_goals(goals)
    out = capsys.readouterr().out
    assert "wall 10.09 s <= 10 s NOT met" in out
    assert "(host: speed probe 33 -> 33 µs, 1 M step 61 -> - ms)" in out
    scale.print_goals(goals | {"10k_host_state": [None, None]})  # a report from before the probe
    assert "host:" not in capsys.readouterr().out


def test_each_case_reports_its_start_up_storm_and_the_engines_agree_on_it(scale: Any, capsys: Any) -> None:
    """A case's record holds its storm (sim/storm.py), and the report prints it per case. (The ward's links and
    costs draw: the engines' frames draw from streams of their own, so the storms agree closely, not to the bit;
    tests/test_engines.py has them exact on a deterministic ward.)"""
    cases = [scale.run_child(200, 20.0, engine) | {"devices": 200} for engine in ("events", "vectorized")]
    events, vectorized = cases
    assert events["storm_all_up_s"] == pytest.approx(vectorized["storm_all_up_s"], rel=0.1)
    assert events["storm_peak_under_way"] == pytest.approx(vectorized["storm_peak_under_way"], rel=0.2)
    assert events["storm_peak_under_way"] >= 1
    assert 0 < events["storm_median_up_s"] <= events["storm_all_up_s"] < 20.0
    report = {"cases": cases, "baselines": [], "growth": {}, "goals": {"judged": False, "why": "a test"}}
    scale.print_report(report | {"cases": [c | {"engine_asked": c["engine"], "horizon_s": 20.0, "status": "x"}
                                           for c in cases]})  # fmt: skip
    out = capsys.readouterr().out
    assert f"start-up storm, vectorized    200 devices: every device up by {events['storm_all_up_s']:.2f} s" in out
