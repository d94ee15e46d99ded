"""Input classes a fuzzing hunt found (2026-12-02), fixed as classes:

- a ``run.frame_spans`` fraction the schema accepts but so small (under ~1e-16) that the vectorized engine's span
  sampler summed its gaps past 2**63: an internal error (garbage places). Any fraction in [0, 1] now runs, and one
  that small keeps no frame, as its law says;
- ``--set`` paths into a list whose items have all-digit names: ``hosts.0`` was item 0 even when a host was named
  ``0``. A part that is an index and another item's name is refused in one line saying how to address either;
- per-replication frame and session counts were floored (27 frames over 10 replications reported as 2): exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim import telemetry
from sim.runner import simulate
from sim.scenario import load_scenario

from .conftest import ROOT

WARD = ROOT / "scenarios" / "ward-200.yaml"


# --- run.frame_spans under ~1e-16 ----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [1e-16, 1e-18, 1e-300, 5e-324])
def test_a_span_fraction_too_small_to_keep_any_frame_keeps_none(fraction):
    """The sampler's gaps are near 1 / fraction (int64 max under ~1e-19): their sum must not wrap to negative
    places, whatever the window cuts. No run has 2**53 frames, so none is kept (the chance that one of these
    10 M frames is kept is under 1e-9)."""
    sample = telemetry._Sample(np.random.default_rng(5), fraction)
    for n in (1, 1000, 10_000_000, 0, 7):
        kept = sample.pick(n)
        assert kept.dtype == np.int64 and kept.size == 0, (fraction, n, kept[:5])


def test_a_run_with_a_tiny_span_fraction_is_the_run_without_frame_spans():
    """End to end in the vectorized engine: ``run.frame_spans`` 1e-18 runs (it was an internal error) and gives
    what 0 gives: no frame span, the same statistics (the sample draws from its own stream)."""
    base = ["run.replications=1", "run.horizon_s=20", "run.engine=vectorized"]
    tiny, none = (simulate(load_scenario(WARD, [*base, f"run.frame_spans={f}"])) for f in ("1e-18", "0"))
    assert not (tiny.spans.op == "frame").any()
    assert tiny.summary.telemetry == none.summary.telemetry
    assert tiny.summary.telemetry.frames > 0
