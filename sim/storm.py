"""The start-up storm's arithmetic (``Summary.telemetry.storm``, assembled by sim/summary.py ``with_handshakes``).

A gateway reboot (or a ward switched on) makes every device open its first session within its first period: the
responding pods' receivers queue the handshakes, and the last device's session comes up long after the first.
From a replication's device handshakes, (population, start, done, first), this computes when each device's
first session was up, when the last was (the storm's end), and the backlog of handshakes under way,
n(t) = #{sessions with start <= t < done} (rekeys inside the storm too): its peak, in all and per pod, and its
mean over time bins, from the integral I(t) = sum over sessions of the part of [start, done) before t, so a bin's
mean is exact however short the sessions are against the bin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

UNDER_WAY_BINS = 40  # the backlog's time bins over the storm (``Storm.under_way``)

Handshake = tuple[str, float, float, bool]  # (population, started_s, done_s, first session)


def peak(starts: np.ndarray, dones: np.ndarray) -> int:
    """The most sessions under way at once, max over t of #{start <= t < done}: a session done at t is no
    longer under way when another starts at t."""
    times = np.concatenate([starts, dones])
    steps = np.concatenate([np.ones(starts.size), -np.ones(dones.size)])
    order = np.lexsort((steps, times))  # by time; at one time the ends (-1) first
    return int(np.cumsum(steps[order]).max(initial=0.0))


def integral(starts: np.ndarray, dones: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """I(t) at each t of ``at_s``: session-seconds under way before t, sum of (min(t, done) - start)+, as
    sum over starts before t of (t - start) less sum over dones before t of (t - done) (done >= start)."""
    s, d = np.sort(starts), np.sort(dones)
    cs, cd = np.concatenate([[0.0], np.cumsum(s)]), np.concatenate([[0.0], np.cumsum(d)])
    ks, kd = np.searchsorted(s, at_s, side="right"), np.searchsorted(d, at_s, side="right")
    out: np.ndarray = (at_s * ks - cs[ks]) - (at_s * kd - cd[kd])
    return out


@dataclass(frozen=True)
class ReplicationStorm:
    """One replication's storm: its first sessions' up times, its end, its backlog's peak in all and per pod, and
    every session it had (``under_way`` counts them over the latest replication's storm)."""

    up_s: np.ndarray
    end_s: float
    peak: int
    peak_by_pod: dict[str, int]
    starts: np.ndarray
    dones: np.ndarray


def of_replication(handshakes: Sequence[Handshake], pod_of: Mapping[str, str]) -> ReplicationStorm | None:
    """The storm of one replication's handshakes (``pod_of``: population -> the pod its devices report to);
    None where no device had a first session (no devices, or none before the run ended). Its peak counts the
    sessions under way up to its end (n(t) only falls after it: no first session starts later)."""
    up = np.array([done for _, _, done, first in handshakes if first], dtype=float)
    if not up.size:
        return None
    end = float(up.max())
    starts = np.array([start for _, start, _, _ in handshakes], dtype=float)
    dones = np.array([done for _, _, done, _ in handshakes], dtype=float)
    pods = np.array([pod_of[pop] for pop, *_ in handshakes])
    inside = starts <= end
    by_pod = {
        str(p): peak(starts[inside & (pods == p)], dones[inside & (pods == p)]) for p in sorted(set(pods.tolist()))
    }
    return ReplicationStorm(up, end, peak(starts[inside], dones[inside]), by_pod, starts, dones)


def under_way(
    storms: Sequence[ReplicationStorm], replications: int, bins: int = UNDER_WAY_BINS
) -> list[tuple[float, float]]:
    """(bin start s, handshakes under way: the bin's mean, averaged over ``replications``, those without a storm
    counting none) over [0, the latest replication's end] in ``bins`` equal bins; empty where that end is 0."""
    end = max(s.end_s for s in storms)
    if not end > 0:
        return []
    edges = np.linspace(0.0, end, bins + 1)
    width = edges[1] - edges[0]
    total = np.sum([np.diff(integral(s.starts, s.dones, edges)) / width for s in storms], axis=0)
    return [(float(a), max(0.0, float(m) / replications)) for a, m in zip(edges[:-1], total, strict=True)]
