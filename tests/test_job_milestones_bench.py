"""bench/job_milestones.py: a concurrent round's milestones read from spans; sequential rounds left out."""

from __future__ import annotations

import pandas as pd

from .conftest import bench_module
from .conftest import span_row as span

job_milestones = bench_module("job_milestones")


def test_a_concurrent_rounds_milestones_and_no_sequential_ones():
    rows = [span(1, "aggregator", "round", "round", 10.0, 10.2),
            span(1, "worker-1", "distribute", "AES-256-GCM.decrypt", 10.004, 10.005),
            span(1, "worker-1", "distribute", "AES-256-GCM.decrypt", 10.007, 10.008),
            span(1, "aggregator", "distribute", "AES-256-GCM.decrypt", 10.021, 10.022),
            span(1, "aggregator", "distribute", "AES-256-GCM.decrypt", 10.025, 10.026),
            span(1, "client-1", "receive", "deserialize", 10.035, 10.038),
            span(1, "client-2", "receive", "deserialize", 10.039, 10.041),
            span(2, "aggregator", "round", "round", 11.0, 11.2),  # sequential: no worker
            span(2, "aggregator", "distribute", "AES-256-GCM.encrypt", 11.001, 11.002),
            span(2, "client-1", "receive", "deserialize", 11.01, 11.02)]  # fmt: skip
    got = job_milestones.round_milestones(pd.DataFrame(rows))
    assert list(got["round"]) == [1]
    expected = [0.004, 0.007, 0.021, 0.025, 0.038, 0.041]
    assert [round(float(got[m].iloc[0]), 6) for m in job_milestones.MILESTONES] == expected


def test_a_round_whose_aggregator_does_its_jobs_has_own_milestones_and_no_sequential_ones():
    """No worker pods (paper-3node): each job's pack ends, its message leaves, each client holds the model; a round
    whose second pack began after the first message left is sequential, left out."""
    rows = [span(1, "aggregator", "round", "round", 10.0, 10.2),
            span(1, "aggregator", "distribute", "serialize", 10.0001, 10.0006),
            span(1, "aggregator", "distribute", "serialize", 10.0002, 10.003),
            span(1, "aggregator", "distribute", "transfer", 10.004, 10.02),
            span(1, "aggregator", "distribute", "transfer", 10.008, 10.024),
            span(1, "client-1", "receive", "deserialize", 10.025, 10.026),
            span(1, "client-2", "receive", "deserialize", 10.027, 10.028),
            span(2, "aggregator", "round", "round", 11.0, 11.2),  # sequential: the second pack after the first left
            span(2, "aggregator", "distribute", "serialize", 11.0001, 11.0006),
            span(2, "aggregator", "distribute", "transfer", 11.004, 11.02),
            span(2, "aggregator", "distribute", "serialize", 11.0045, 11.005),
            span(2, "aggregator", "distribute", "transfer", 11.009, 11.024),
            span(2, "client-1", "receive", "deserialize", 11.025, 11.026),
            span(2, "client-2", "receive", "deserialize", 11.027, 11.028)]  # fmt: skip
    frame = pd.DataFrame(rows)
    assert job_milestones.round_milestones(frame).empty  # nothing delegated
    got = job_milestones.own_milestones(frame)
    assert list(got["round"]) == [1]
    expected = [0.0006, 0.003, 0.004, 0.008, 0.026, 0.028]
    assert [round(float(got[m].iloc[0]), 6) for m in job_milestones.OWN_MILESTONES] == expected
