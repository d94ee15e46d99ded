"""Random streams: a bank of children (``sim.streams.Streams``) is numpy's SeedSequence children, draw for draw."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.streams import Streams, child, stream

KEY = st.lists(st.integers(0, 2**40), max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(entropy=st.integers(0, 2**128), spawned=KEY, key=KEY, n=st.integers(1, 40))
def test_a_bank_makes_the_children_seedsequence_makes(entropy, spawned, key, n):
    """Every child ``key + (i,)`` of a parent with any entropy (one to five words) and spawn key (words of 0 to
    2**40, so some take two words) is seeded as numpy's own SeedSequence seeds it, and draws the same numbers."""
    parent = np.random.SeedSequence(entropy, spawn_key=spawned)
    bank = Streams(parent, key, n)
    for i in {0, n // 2, n - 1}:
        ref = child(parent, *key, i)
        assert np.array_equal(bank._state[i], ref.generate_state(4, np.uint64))
        assert np.array_equal(bank[i].random(4), stream(parent, *key, i).random(4))
    assert bank[0] is bank[0]  # made once: its draws go on where they left off


def test_a_bank_refuses_what_it_cannot_reproduce():
    with pytest.raises(ValueError, match="pool"):
        Streams(np.random.SeedSequence(1, pool_size=8), (), 4)
    with pytest.raises(ValueError, match="entropy"):
        Streams(np.random.SeedSequence([1, 2]), (), 4)


def test_the_network_and_the_devices_draw_from_the_same_streams_with_or_without_a_bank(monkeypatch):
    """A network of many links (and a population of many devices) takes its streams from a bank; below BANK_MIN
    one by one: the same streams either way, so a run does not depend on the threshold."""
    from sim import streams
    from sim.runner import simulate
    from sim.scenario import load_scenario

    from .conftest import SCENARIOS

    s = load_scenario(SCENARIOS / "ward-200.yaml", ["run.horizon_s=20", "run.replications=1"])
    banked = simulate(s, "concurrent", 5, 1).spans
    monkeypatch.setattr(streams, "BANK_MIN", 10**9)
    single = simulate(s, "concurrent", 5, 1).spans
    assert banked.equals(single)
