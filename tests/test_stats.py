"""sim/stats.py against scipy (a test-only dependency): the Student-t quantile behind every 95 % CI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim import stats as st
from sim.summary import ci95

PS = (0.6, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 1 - 1e-6, 1 - 1e-10)
LARGE_DF = (201, 250, 500, 999, 999.5, 1000, 1001, 2000, 10_000, 1e5, 1e6, 1e9, 1e15)


@pytest.mark.parametrize("df", range(1, 201))
def test_t_ppf_matches_scipy_for_df_1_to_200(df: int) -> None:
    for p in PS:
        expected = float(stats.t.ppf(p, df))
        assert st.t_ppf(p, df) == pytest.approx(expected, rel=1e-10, abs=1e-10), p
        assert st.t_ppf(1 - p, df) == pytest.approx(-expected, rel=1e-10, abs=1e-10), p


@pytest.mark.parametrize("df", LARGE_DF)
def test_t_ppf_matches_scipy_for_large_df(df: float) -> None:
    for p in PS:
        assert st.t_ppf(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-10, abs=1e-10), p


@pytest.mark.parametrize("df", (0.5, 1.5, 2.5, 7.25))
def test_t_ppf_takes_fractional_df(df: float) -> None:
    for p in PS:
        assert st.t_ppf(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-10, abs=1e-10), p


def test_t_ppf_975_to_1e_10_absolute() -> None:
    """The quantile ci95 uses: absolute error, not only relative (df 1's is 12.7)."""
    for df in [*range(1, 201), *LARGE_DF]:
        assert abs(st.t_ppf(0.975, df) - float(stats.t.ppf(0.975, df))) < 1e-10, df


def test_t_ppf_limits_and_median() -> None:
    assert st.t_ppf(0.5, 3) == 0.0
    assert st.t_ppf(0.975, math.inf) == pytest.approx(1.959963984540054, abs=1e-14)
    assert st.t_ppf(0.975, 1) == pytest.approx(12.706204736174707, abs=1e-10)


@pytest.mark.parametrize("bad", [(0.0, 3), (1.0, 3), (-0.1, 3), (math.nan, 3), (0.9, 0), (0.9, -1), (0.9, math.nan)])
def test_t_ppf_rejects_what_has_no_quantile(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        st.t_ppf(*bad)


def test_norm_ppf_matches_scipy() -> None:
    for p in (1e-12, 1e-6, 0.025, 0.3, 0.5, 0.7, 0.975, 1 - 1e-9):
        assert st.norm_ppf(p) == pytest.approx(float(stats.norm.ppf(p)), rel=1e-12, abs=1e-12), p


def test_t_sf_matches_scipy() -> None:
    for df in (1, 2, 5, 29, 200, 999):
        for t in (-3.0, -0.5, 0.0, 0.1, 1.0, 2.0, 10.0, 1e4):
            assert st.t_sf(t, df) == pytest.approx(float(stats.t.sf(t, df)), rel=1e-10, abs=1e-15), (t, df)


def test_ci95_is_the_student_t_interval() -> None:
    rng = np.random.default_rng(7)
    for n in (2, 3, 30, 1500):
        x = rng.normal(1.0, 0.2, n)
        half = stats.t.ppf(0.975, n - 1) * np.std(x, ddof=1) / math.sqrt(n)
        lo, hi = ci95(x)
        assert lo == pytest.approx(x.mean() - half, rel=1e-12)
        assert hi == pytest.approx(x.mean() + half, rel=1e-12)
    assert ci95(np.array([4.0])) == (4.0, 4.0)
