"""The start-up storm (sim/storm.py, ``Summary.telemetry.storm``): every device's first session, when each was up,
when the last was, and the handshakes under way meanwhile; counted from the sessions' intervals, and what the
model's receivers make of a storm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pqtwin.tables import storm_text
from sim import storm
from sim.contract import Telemetry
from sim.runner import simulate
from sim.scenario import load_scenario
from sim.summary import with_handshakes
from sim.units import fmt_mean_count

ROOT = Path(__file__).resolve().parents[1]
WARD = ROOT / "scenarios" / "ward-200.yaml"


def test_peak_counts_sessions_under_way_and_one_ending_as_another_starts_once() -> None:
    starts, dones = np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0, 4.0])
    assert storm.peak(starts, dones) == 2  # at 1.5: the first two; at 2: the first is done as the third starts
    assert storm.peak(np.array([0.0, 2.0]), np.array([2.0, 4.0])) == 1
    assert storm.peak(np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 5.0])) == 3
    assert storm.peak(np.array([]), np.array([])) == 0


def test_integral_is_the_session_seconds_under_way_before_each_instant() -> None:
    starts, dones = np.array([0.0, 1.0]), np.array([2.0, 3.0])
    got = storm.integral(starts, dones, np.array([0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0]))
    assert got.tolist() == pytest.approx([0.0, 0.5, 1.0, 3.0, 3.5, 4.0, 4.0], abs=1e-12)


def test_a_replication_s_storm_ends_with_its_last_first_session_and_counts_rekeys_inside_it() -> None:
    hs = [("a", 0.0, 2.0, True), ("a", 1.0, 3.0, True), ("b", 0.5, 1.5, True),
          ("b", 2.5, 2.8, False),  # a rekey inside the storm: under way too
          ("a", 9.0, 9.5, False)]  # fmt: skip  # after the storm's end: not counted
    r = storm.of_replication(hs, {"a": "client-1", "b": "client-2"})
    assert r is not None
    assert r.end_s == 3.0 and sorted(r.up_s.tolist()) == [1.5, 2.0, 3.0]
    assert r.peak == 3 and r.peak_by_pod == {"client-1": 2, "client-2": 1}
    assert storm.of_replication([("a", 9.0, 9.5, False)], {"a": "client-1"}) is None  # no first session


def test_under_way_is_each_bin_s_mean_count_averaged_over_replications() -> None:
    one = storm.of_replication([("a", 0.0, 2.0, True), ("a", 1.0, 3.0, True)], {"a": "p"})
    two = storm.of_replication([("a", 0.0, 1.0, True)], {"a": "p"})
    assert one is not None and two is not None
    assert np.allclose(storm.under_way([one], 1, bins=3), [(0.0, 1.0), (1.0, 2.0), (2.0, 1.0)], rtol=0, atol=1e-12)
    # over the latest replication's end (3 s); the shorter one has nothing under way after its 1 s
    assert np.allclose(storm.under_way([one, two], 2, bins=3), [(0.0, 1.0), (1.0, 1.0), (2.0, 0.5)], rtol=0, atol=1e-12)
    # a third replication with no storm (no device up by its end) had nothing under way: it counts as none
    assert np.allclose(storm.under_way([one, two], 3, bins=3), [(0.0, 2 / 3), (1.0, 2 / 3), (2.0, 1 / 3)], atol=1e-12)


def test_a_replication_without_a_storm_counts_no_backlog_and_no_up_time() -> None:
    """Replications where no device was up by the run's end had no backlog (peaks 0, none under way) and no time at
    which all were up (``all_up_s`` over the others only); ``devices`` is the mean over every replication."""
    from sim.contract import Summary

    s = Summary.model_construct(telemetry=Telemetry(frames=0, latency_s=None))
    full = [("a", 0.0, 2.0, True), ("a", 1.0, 3.0, True)]
    with_handshakes(s, [full, []], {"a": "client-1"}, 2)
    st_ = s.telemetry.storm
    assert st_ is not None and st_.devices == 1 and st_.of_devices == 2
    assert st_.all_up_s.mean == 3.0 and st_.all_up_s.n == 1
    assert st_.peak_under_way.replication_means == [2.0, 0.0] and st_.peak_by_pod["client-1"].mean == 1.0
    width = st_.under_way[1][0]
    assert sum(n for _, n in st_.under_way) * width == pytest.approx((2.0 + 2.0) / 2)  # session-seconds a replication


def _ward(*sets: str):  # type: ignore[no-untyped-def]
    ecg_only = [f"workload.devices.{j}.count=0" for j in range(2, 8)]
    base = [*ecg_only, "workload.devices.0.count=300", "workload.devices.1.count=300", "workload.fl.rounds=1",
            "run.horizon_s=20", "run.replications=2", "run.engine=events"]  # fmt: skip
    return simulate(load_scenario(WARD, [*base, *sets])).summary


def test_a_ward_s_storm_queues_on_one_receiver_thread_and_spreads_over_per_device_ones() -> None:
    """600 ECG patches opening their sessions within their first period: with one receiver thread per pod the
    pods' handshake steps queue behind each other (every session under way at once, the last up seconds later);
    with a thread per device they share the pods' four cores and the storm ends sooner."""
    one = _ward("workload.telemetry_receiver=one-thread").telemetry.storm
    per = _ward("workload.telemetry_receiver=per-device").telemetry.storm
    assert one is not None and per is not None
    assert one.devices == per.devices == one.of_devices == 600
    assert set(one.peak_by_pod) == {"client-1", "client-2"}
    assert one.all_up_s.mean > 1.5 * per.all_up_s.mean
    assert one.peak_under_way.mean > per.peak_under_way.mean
    text = storm_text(one)
    assert text.startswith(f"{one.all_up_s.mean:.2f} s [") and "under way (client-1 " in text


def test_a_run_cut_before_every_device_is_up_says_so() -> None:
    s = _ward("run.horizon_s=2", "workload.telemetry_receiver=one-thread").telemetry.storm
    assert s is not None and 0 < s.devices < s.of_devices == 600  # the storm outlasts the run: some not up by 2 s
    assert s.all_up_s.mean is not None and s.all_up_s.mean <= 2.0
    assert storm_text(s).startswith(f"{fmt_mean_count(s.devices)} of 600 devices; ")
