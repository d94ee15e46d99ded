"""bench/sim_scale.py and bench/sim_breakdown.py record the core's speed beside each case: this host's cores run in
two states, and a case's seconds say as much about that as about the engine."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import bench_module


@pytest.fixture(scope="module")
def scale() -> Any:
    return bench_module("sim_scale")


def test_the_core_probe_is_a_speed_probe_reading_and_the_goals_line_shows_it(scale: Any, capsys: Any) -> None:
    from hw.speed import probe_us

    got = scale.core_probe_us()
    here = sorted(probe_us() for _ in range(15))[7]
    assert 0 < got < 10_000 and here / 4 < got < 4 * here  # the same kernel, within the host's two states
    goals = {"judged": True, "10k_wall_s": 10.09, "10k_peak_rss_bytes": 5e8, "10k_wall_met": False,
             "10k_rss_met": True, "10k_core_probe_us": [33.2, 34.0]}  # fmt: skip
    scale.print_goals(goals)
    out = capsys.readouterr().out
    assert "wall 10.09 s <= 10 s NOT met" in out and "its core's speed probe 33 -> 34 µs" in out
    scale.print_goals(goals | {"10k_core_probe_us": [None, None]})  # a report from before the probe
    assert "speed probe" not in capsys.readouterr().out
