"""bench/storm_passes.py: mixed wards' start-up storms, seed by seed, against the event engine in the same run."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_the_bench_reports_every_seed_and_a_ratio_to_the_event_engine(tmp_path):
    """Two seeds of the mixed ward, shortened to 40 s (the cuffs' storm still under way at the end): each row has
    its passes and exactness, the wall-time ratio is against the event-engine run of the same run, and both engines
    count the ward's frames alike."""
    out = tmp_path / "storm.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "storm_passes.py"), "--seeds", "3", "4",
                        "--horizon-s", "40", "--json", str(out)], capture_output=True, text=True, timeout=600,
                       cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    base, cases = doc["baseline"], doc["cases"]
    assert base["engine"] == "events" and base["frames"] > 30_000
    assert [c["case"] for c in cases] == ["mixed ward, seed 3", "mixed ward, seed 4"]
    for c in cases:
        assert c["engine"] == "vectorized" and c["passes"] >= 1 and isinstance(c["exact"], bool)
        assert c["x_events"] == c["wall_s"] / base["wall_s"]
    # the same seed: the same frames sent; completed by the horizon, a few apart (the engines draw differently)
    assert abs(cases[0]["frames"] - base["frames"]) <= 1e-3 * base["frames"]
    assert "exact:" in r.stdout and "x events" in r.stdout and "load average" in r.stdout
