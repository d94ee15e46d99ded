"""Streaming statistics of a latency population: count, mean, standard deviation and quantiles in fixed memory.

Quantiles come from logarithmic buckets of relative width 2·ALPHA (the DDSketch construction: Masson,
Rim and Lee, "DDSketch: A Fast and Fully-Mergeable Quantile Sketch with Relative-Error Guarantees",
PVLDB 12(12), 2019): a bucket's representative is within ALPHA (0.1 %) of every value in it, so a quantile
is within 0.1 % of the true order statistic of the same rank. Mean and deviation are exact (sums).
Sketches merge by adding counts, so replications and windows combine exactly.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 1e-3
GAMMA = (1 + ALPHA) / (1 - ALPHA)
MIN_S, MAX_S = 1e-9, 1e6  # values outside are clamped into the end buckets (1 ns .. 11 days)
LOG_GAMMA = math.log(GAMMA)
# a value v's bucket: ceil(log(clip(v, MIN_S, MAX_S)) / LOG_GAMMA) - OFFSET, in 0 .. BUCKETS - 1
OFFSET = math.floor(math.log(MIN_S) / LOG_GAMMA)
BUCKETS = math.ceil(math.log(MAX_S) / LOG_GAMMA) - OFFSET + 1


class LatencySketch:
    """Count, sum, sum of squares, min, max and bucket counts of the values added.

    ``add`` takes values. A caller that summarises them itself (sim/telemetry.py: compiled passes over a
    window of frames) gives their moments to ``add_moments`` and adds their bucket counts to ``counts`` by the
    bucket rule above (``LOG_GAMMA``, ``OFFSET``); the two together must add what ``add`` would, to the bit."""

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, 0.0, 0.0
        self.low, self.high = math.inf, -math.inf
        self.counts = np.zeros(BUCKETS, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=float)
        if v.size == 0:
            return
        self.n += int(v.size)
        self.total += float(v.sum())
        self.squares += float(np.square(v).sum())
        self.low, self.high = min(self.low, float(v.min())), max(self.high, float(v.max()))
        keys = np.ceil(np.log(np.clip(v, MIN_S, MAX_S)) / LOG_GAMMA).astype(np.int64) - OFFSET
        self.counts += np.bincount(np.clip(keys, 0, BUCKETS - 1), minlength=BUCKETS)

    def add_moments(self, n: int, total: float, squares: float, low: float, high: float) -> None:
        """``n`` values summarised elsewhere: their sum, sum of squares (each summed as numpy sums, for ``add``'s
        floats), least and most. Their buckets are the caller's to add (see the class)."""
        if n < 0 or (n and not low <= high):
            raise ValueError(f"LatencySketch.add_moments: {n} values from {low} to {high}")
        if not n:
            return
        self.n += n
        self.total += total
        self.squares += squares
        self.low, self.high = min(self.low, low), max(self.high, high)

    def merge(self, other: LatencySketch) -> None:
        self.n += other.n
        self.total += other.total
        self.squares += other.squares
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self.counts += other.counts

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def quantile(self, q: float) -> float | None:
        """The value of rank ceil(q·n) (lowest rank 1), within ALPHA relative error; min and max exact."""
        if not self.n:
            return None
        rank = max(1, math.ceil(q * self.n))
        if rank >= self.n:
            return self.high
        key = int(np.searchsorted(np.cumsum(self.counts), rank))
        value = 2 * GAMMA ** (key + OFFSET) / (GAMMA + 1)
        return min(max(value, self.low), self.high)
