"""bench/verify_chain.py: a sequential round's closed segment cut at its verification steps; concurrent rounds
(their updates verified on workers as they come) left out."""

from __future__ import annotations

import pandas as pd

from .conftest import bench_module
from .conftest import span_row as span

verify_chain = bench_module("verify_chain")


def test_a_sequential_rounds_chain_and_no_concurrent_one():
    rows = [span(1, "aggregator", "round", "round", 10.0, 10.020),
            span(1, "client-1", "upload", "transfer", 10.010, 10.0120),
            span(1, "client-2", "upload", "transfer", 10.011, 10.0130),
            span(1, "aggregator", "verify", "ML-KEM-768.decaps", 10.0132, 10.0133),
            span(1, "aggregator", "verify", "deserialize", 10.0140, 10.0150),
            span(1, "aggregator", "verify", "ML-KEM-768.decaps", 10.0151, 10.0152),
            span(1, "aggregator", "aggregate", "fl.fedavg", 10.0170, 10.0190),
            span(2, "aggregator", "round", "round", 11.0, 11.020),  # concurrent: a worker verified one before
            span(2, "client-1", "upload", "transfer", 11.010, 11.012),
            span(2, "client-2", "upload", "transfer", 11.011, 11.013),
            span(2, "worker-1", "verify", "ML-KEM-768.decaps", 11.0121, 11.0122),
            span(2, "aggregator", "verify", "ML-KEM-768.decaps", 11.0131, 11.0132),
            span(2, "aggregator", "aggregate", "fl.fedavg", 11.017, 11.019)]  # fmt: skip
    got = verify_chain.round_chain(pd.DataFrame(rows))
    assert list(got["round"]) == [1]
    parts = {k: round(float(got[k].iloc[0]), 7) for k in ("handoff", "update1", "update2", "fedavg")}
    assert parts == {"handoff": 0.0002, "update1": 0.0019, "update2": 0.0019, "fedavg": 0.003}
