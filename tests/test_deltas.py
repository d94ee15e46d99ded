"""sim/deltas.py: a what-if's KPI differences against a baseline, and their 95 % CIs (checked against scipy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sim.deltas import deltas, difference, is_paired
from sim.runner import simulate
from sim.scenario import load_scenario

PAPER = Path(__file__).resolve().parents[1] / "scenarios" / "paper-3node.yaml"


def test_paired_ci_is_the_t_interval_of_the_differences():
    rng = np.random.default_rng(7)
    a = rng.normal(1.0, 0.1, 8)
    b = a - 0.05 + rng.normal(0, 0.01, 8)
    d, (lo, hi), method = difference(a, b, paired=True)
    ref = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert method == "paired" and d == pytest.approx(float(np.mean(b - a)))
    assert (lo, hi) == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_independent_runs_get_welchs_interval():
    rng = np.random.default_rng(8)
    a, b = rng.normal(1.0, 0.1, 5), rng.normal(1.2, 0.3, 9)
    _, (lo, hi), method = difference(a, b, paired=False)
    ref = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert method == "welch" and (lo, hi) == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_one_replication_has_no_interval():
    assert difference(np.array([1.0]), np.array([2.0]), paired=True) == (1.0, (None, None), "none")


def test_runs_of_one_seed_pair_and_find_a_real_difference():
    s = load_scenario(PAPER, ["workload.fl.rounds=3"])
    seq, conc, other = simulate(s, "sequential", 1, 3), simulate(s, "concurrent", 1, 3), simulate(s, "concurrent", 2, 3)
    assert is_paired(seq.summary, conc.summary) and not is_paired(seq.summary, other.summary)
    found = {d.key: d for d in deltas((seq.summary, seq.spans), (conc.summary, conc.spans))}
    r = found["round_latency_s"]
    assert r.method == "paired" and r.significant and r.delta < 0  # concurrent is faster here
    assert r.delta == pytest.approx(conc.summary.round_latency_s.mean - seq.summary.round_latency_s.mean)
    assert found["round_latency_s"].relative == pytest.approx(r.delta / seq.summary.round_latency_s.mean)
    same = {d.key: d for d in deltas((seq.summary, seq.spans), (seq.summary, seq.spans))}
    assert all(d.delta == 0 and not d.significant for d in same.values())
    methods = {d.key: d.method for d in deltas((seq.summary, seq.spans), (other.summary, other.spans))}
    assert methods["round_latency_s"] == "welch" and methods["battery_life_days:ecg-a"] == "mean"
