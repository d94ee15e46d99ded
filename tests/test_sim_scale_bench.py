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
