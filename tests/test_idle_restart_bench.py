"""bench/idle_restart.py's model side: a kept connection's next message after an idle spell (sim/congestion.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import idle_restart  # noqa: E402


def test_a_kept_connection_restarts_its_window_after_a_timeout_idle_unless_told_not_to():
    """Over two 5 ms links: back to back a 64 KiB message goes in one flight (its wire time and one way, ~15.5 ms);
    after 3 s idle it starts over from the initial window (two round trips more, as measured with CUBIC: 53.0 against
    56.9 ms, docs/idle_restart_cubic_2026-12-07.json); without the restart (BBR's way) it goes in one flight again."""
    warm = idle_restart.simulated(0.005, 65536, 0.05, 2, restart=True)
    cold = idle_restart.simulated(0.005, 65536, 3.0, 2, restart=True)
    kept = idle_restart.simulated(0.005, 65536, 3.0, 2, restart=False)
    assert warm == pytest.approx([0.0155] * 2, rel=0.02)
    assert kept == pytest.approx(warm, rel=1e-9)
    assert all(c > warm[0] + 1.5 * 0.02 for c in cold)  # two more round trips of 20 ms (less the first flight's time)
