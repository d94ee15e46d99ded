"""sim/units.py: every quantity in the unit that reads best, three significant figures, "—" for a missing one."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sim.units import (
    FORMATTERS,
    MISSING,
    fmt,
    fmt_bytes,
    fmt_days,
    fmt_delta,
    fmt_joules,
    fmt_mean_count,
    fmt_seconds,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0 s"), (3e-7, "300 ns"), (8.5e-4, "850 µs"), (0.0123, "12.3 ms"), (0.4991, "499 ms"), (1.25, "1.25 s"),
     (75.0, "75.0 s"), (300.0, "5.00 min"), (9000.0, "2.50 h"), (400_000.0, "4.63 days"),
     (0.9996, "1.00 s"), (7199.9, "2.00 h"), (119.96, "2.00 min")],
)  # fmt: skip
def test_seconds(value, text):
    assert fmt_seconds(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(12, "12 B"), (980, "980 B"), (999.6, "1.00 kB"), (12_500, "12.5 kB"), (3.4e6, "3.40 MB"), (1.2e9, "1.20 GB")],
)
def test_bytes_are_si(value, text):
    assert fmt_bytes(value) == text


def test_energy_days_and_deltas():
    assert (fmt_joules(1.2e-5), fmt_joules(4500)) == ("12.0 µJ", "4.50 kJ")
    assert (fmt_days(1.0), fmt_days(56.7), fmt_days(1000)) == ("24.0 h", "56.7 days", "2.7 years")
    assert (fmt_delta(-0.00125, "s"), fmt_delta(0.03, "fraction"), fmt_delta(0.0, "B")) == ("−1.25 ms", "+3.0 pp", "±0")


def test_a_mean_count_reads_whole_or_to_a_tenth():
    """A count per replication is a mean: the paper run's concurrent frames read 31.166666666666668."""
    assert (fmt_mean_count(35_943_062), fmt_mean_count(20.0), fmt_mean_count(187 / 6)) == ("35,943,062", "20", "31.2")
    assert fmt_mean_count(None) == fmt_mean_count(math.nan) == MISSING


@pytest.mark.parametrize("unit", [*FORMATTERS, "x", ""])
@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_missing_values_never_read_nan(unit, value):
    assert fmt(value, unit) == MISSING and fmt_delta(value, unit) == MISSING


@example(1233046.0)  # found by hypothesis: rounding to 3 figures in seconds, then again in days, compounded
@example(0.9996)
@given(st.floats(min_value=1e-9, max_value=1e7, allow_nan=False))
def test_seconds_round_trip_within_three_significant_figures(x):
    value, unit = fmt_seconds(x).split()
    scale = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "days": 86_400.0}[unit]
    back = float(value.replace(",", "")) * scale
    assert back == pytest.approx(x, rel=5e-3)
    assert len(value.replace(",", "").replace(".", "").lstrip("0")) <= 4  # no long tails of digits
