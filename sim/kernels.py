"""Compiled per-frame kernels of the vectorized telemetry engine (sim/telemetry.py), with numba.

Each kernel is the event model's recursion for one kind of server, run over a time window in one loop:

- ``link_stage``: one link direction (or a bank of access links), a FIFO server (Lindley: start =
  max(arrival, free), free = start + service), frames merged in arrival order with the foreground's own
  transmissions (FL and handshake segments replayed from the SimPy run), lost frames queued again after
  2 x latency + service.
- ``shared_cores``: a host's cores under processor sharing, the virtual-time algorithm of
  ``sim.hosts.SharedCores`` step for step (same arithmetic, same completion tolerance), frames merged with the
  foreground's jobs on that host.
- ``fifo_cores``: a host's cores as a run-to-completion FIFO (``cpu_sharing: fifo``): earliest free core.
- ``waiting_at``: the frames due at a server before the window's cut, in arrival order (``order_by_time``).
- ``emit``: frame emission times of device sessions by repeated addition of the period, as SimPy's clock does.
- ``finished_frames``: the frames a window completed, sorted out for the statistics and the table's compaction.

Every kernel stops at ``cut``: items arriving at or after it stay for the next window, so a window never
serves an item before one that arrived earlier (exact across windows). Foreground items come with the time
SimPy served them; a kernel reports how far from that time it would serve them beside the frames
(``perturbation``): later, telemetry delays the foreground; earlier, the pass's SimPy run served a frame where the
kernels no longer put it. Zero means the foreground did not feel telemetry and the run is exact.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from numba import njit


def _array_support_without_blas() -> None:
    """Load numba's array support (``numba.np.arraymath``, which its CPU target loads on the first call of any
    compiled function) without the BLAS it looks for there: it imports ``scipy.linalg`` (0.17 s of a run) to see
    whether ``np.dot`` may use it, and these kernels use no linear algebra. The name is blocked only meanwhile."""
    blas = "scipy.linalg.cython_blas"
    if "numba.np.arraymath" in sys.modules or blas in sys.modules:
        return
    sys.modules[blas] = None  # type: ignore[assignment]  # an import of None raises ImportError: no BLAS
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules[blas]


_array_support_without_blas()

# A compiled kernel's signature is inferred on first call and cached beside this file (numba's cache).


@njit(cache=True)
def emit(next_t, end_t, period_s, t0, t1, out_t, out_session):  # type: ignore[no-untyped-def]
    """Emissions of sessions in [t0, t1): each session's next time, then + period while < its end and < t1.

    Cycle-major (every session's first frame, then every second...), so the output is sorted when every
    session's next time lies within one period of t0; the caller sorts otherwise. Returns the count.
    A cycle visits only the sessions that can emit in it: the started ones (a prefix of the sessions in order
    of their next time, as all share one period) up to the first that starts later; a session is dropped once
    it has nothing left to emit, so many short sessions (a rekey every frame) cost their frames, not
    sessions x cycles."""
    n = 0
    order = np.argsort(next_t, kind="mergesort")
    live = np.empty(order.size, dtype=np.int64)
    m = 0
    for j in order:
        if next_t[j] < t1 and next_t[j] < end_t[j]:
            live[m] = j
            m += 1
    cycle_end = t0 + period_s
    while m > 0:
        k = 0
        i = 0
        while i < m:
            j = live[i]
            t = next_t[j]
            if t >= cycle_end:  # this one, and every later one, starts in a later cycle
                break
            out_t[n] = t
            out_session[n] = j
            n += 1
            next_t[j] = t + period_s
            if next_t[j] < t1 and next_t[j] < end_t[j]:
                live[k] = j
                k += 1
            i += 1
        while i < m:
            live[k] = live[i]
            k += 1
            i += 1
        m = k
        cycle_end = cycle_end + period_s
    return n


@njit(cache=True)
def _keep(out, n, t, size, ref):  # type: ignore[no-untyped-def]
    """Append (t, size, frame) to a growable (rows, 3) array holding n rows; returns the array."""
    if n == out.shape[0]:
        out = np.concatenate((out, np.empty_like(out)))
    out[n, 0], out[n, 1], out[n, 2] = t, size, ref
    return out


@njit(cache=True)
def _delayed(counters, delay_s, at_s):  # type: ignore[no-untyped-def]
    """Count a foreground item served ``delay_s`` away from when SimPy served it, at about ``at_s``
    (counters[3:5]: largest, how many); callers pass the absolute difference. Differences within rounding
    (1 ps, or a few ulps of the time) are none."""
    if delay_s > 1e-12 + 4e-16 * abs(at_s):
        counters[3] = max(counters[3], delay_s)
        counters[4] += 1


LOSS_GAP = 5  # counters[LOSS_GAP]: a lossy link's transmissions up to and with its next loss (0: to draw)


@njit(cache=True)
def _is_lost(counters, loss, rng):  # type: ignore[no-untyped-def]
    """Whether a lossy link loses this transmission: each is lost independently with probability ``loss``, drawn
    as the count of transmissions up to the next loss (geometric: the same law as a draw per transmission, with
    one draw per loss; the count carries over between windows). Callers test ``counters[LOSS_GAP] > 1`` first
    (not lost, counted down in place): a call that passes the generator costs ~20 ns, more than the loop's work."""
    if counters[LOSS_GAP] <= 0:
        counters[LOSS_GAP] = rng.geometric(loss)
    counters[LOSS_GAP] -= 1
    return counters[LOSS_GAP] == 0


@njit(cache=True)
def _bin(series, bin_s, t, busy_s):  # type: ignore[no-untyped-def]
    """Add busy seconds to the series bin of time t (the last bin takes what lies beyond). A store per item: the
    open bin summed in a local instead (stop 37, faster on one captured window) made the whole 10,000-device hour's
    link stages 1.6x and processor sharing 1.4x slower (docs/scale.md, "Stop 76")."""
    series[min(int(t / bin_s), series.size - 1)] += busy_s


@njit(cache=True)
def _new_period(kept, period_first, period_fg):  # type: ignore[no-untyped-def]
    """A busy period begins: the last one's rows of ``near`` go unless it served foreground. Returns the rows
    kept, where the new period's rows begin, and that it has served no foreground yet."""
    kept = kept if period_fg else period_first
    return kept, kept, False


@njit(cache=True)
def _leave(f, p, end_s, fr_t, fr_srv, after, latency_s, jitter_s, rng):  # type: ignore[no-untyped-def]
    """Frame f (of population p) leaves a link at end_s: it reaches the next server of its route (``after[p]``)
    after latency and jitter."""
    fr_t[f] = end_s + (latency_s + (rng.exponential(jitter_s) if jitter_s > 0.0 else 0.0))
    fr_srv[f] = after[p]


@njit(cache=True)
def _push(tags, refs, h, tag, ref):  # type: ignore[no-untyped-def]
    q = h
    while q > 0:
        par = (q - 1) // 2
        if tags[par] < tag or (tags[par] == tag and refs[par] <= ref):
            break
        tags[q], refs[q] = tags[par], refs[par]
        q = par
    tags[q], refs[q] = tag, ref


@njit(cache=True)
def _pop(tags, refs, h):  # type: ignore[no-untyped-def]
    """Remove the top of a heap of size h (h >= 1); the caller decrements h."""
    h -= 1
    lt, lr = tags[h], refs[h]
    p = 0
    while True:
        c = 2 * p + 1
        if c >= h:
            break
        if c + 1 < h and (tags[c + 1] < tags[c] or (tags[c + 1] == tags[c] and refs[c + 1] < refs[c])):
            c += 1
        if tags[c] > lt or (tags[c] == lt and refs[c] >= lr):
            break
        tags[p], refs[p] = tags[c], refs[c]
        p = c
    if h > 0:
        tags[p], refs[p] = lt, lr


@njit(cache=True)
def _shared_frames(fr_t, fr_work, o, cores, state, tags, refs, h, cut, end_s, done_t,  # type: ignore[no-untyped-def]
                   counters, near, track, series, bin_s, fg_done):  # fmt: skip
    """``shared_cores`` with no foreground asked before ``cut``: the same arithmetic (a rate of 1 while the jobs fit
    the cores: its products and quotients are exact, so left out) without the foreground's arrivals. Foreground
    jobs asked before may still be running (a long training): their completions are compared with SimPy's, as
    ``shared_cores`` does, and write no frame's done time (a job's reference is negative: as an index it would
    write a frame's row counted from the table's end)."""
    v, last = state[0], state[1]
    offered = counters[2]  # summed here, written back at the end
    n = o.size
    i = 0
    kept = period_first = 0
    period_fg = False
    while True:
        if h > 0:
            if h <= cores:
                rate = 1.0
                tc = last + max(0.0, tags[0] - v)
            else:
                rate = cores / h
                tc = last + max(0.0, tags[0] - v) / rate
        else:
            rate = 1.0
            tc = math.inf
        ta = fr_t[o[i]] if i < n else math.inf
        if tc <= ta:
            if tc >= cut:
                break
            v += (tc - last) * rate
            last = tc
            due = v + 1e-12 + 8 * np.spacing(abs(v))
            while h > 0 and tags[0] <= due:
                r = refs[0]
                _pop(tags, refs, h)
                h -= 1
                if r >= 0:
                    done_t[r] = tc
                else:
                    _delayed(counters, abs(tc - fg_done[-r - 1]), tc)  # done off either way
            continue
        t = ta
        if t >= cut:
            break
        v += (t - last) * rate
        last = t
        w = fr_work[o[i]]
        offered += min(w, end_s - t)
        _bin(series, bin_s, t, w)
        if h == 0:
            kept, period_first, period_fg = _new_period(kept, period_first, period_fg)
        if track:
            near = _keep(near, kept, t, w, o[i])
            kept += 1
        if h == 0:
            tag = v + w
            tc = last + max(0.0, tag - v)
            if tc < cut and (i + 1 >= n or tc <= fr_t[o[i + 1]]):
                v += tc - last
                last = tc
                done_t[o[i]] = tc
                i += 1
                continue
        if h == tags.size:
            tags = np.concatenate((tags, np.empty(h)))
            refs = np.concatenate((refs, np.empty(h, dtype=np.int64)))
        _push(tags, refs, h, v + w, o[i])
        h += 1
        i += 1
    counters[2] = offered
    state[0], state[1] = v, last
    return h, tags, refs, near, kept


@njit(cache=True)
def shared_cores(  # type: ignore[no-untyped-def]
    fr_t,
    fr_work,
    o,
    fg_asked,
    fg_work,
    fg_done,
    k0,
    cores,
    state,
    tags,
    refs,
    h,
    cut,
    end_s,
    done_t,
    counters,
    near,
    series,
    bin_s,
):
    """Processor sharing of frames ``o`` (table rows in arrival order: their times ``fr_t[o]``, their work
    ``fr_work[o]``; read in place, not gathered) and foreground jobs k0..
    up to ``cut``. ``state`` is [v, last]; the heap (tags, refs, size h) carries running jobs between windows
    (a frame's reference is >= 0, a foreground job k is -(k + 1)). A frame's completion goes to
    done_t[ref]. ``near`` collects frames in busy periods with foreground (as ``link_stage``). Returns (h, next
    foreground index, tags, refs, near, its rows) (the heap grows when full)."""
    m = fg_asked.size
    track = k0 < m  # with no foreground left to serve, no busy period will serve any: none is kept
    if k0 >= m or fg_asked[k0] >= cut:
        h, tags, refs, near, kept = _shared_frames(fr_t, fr_work, o, cores, state, tags, refs, h, cut, end_s, done_t,
                                                   counters, near, track, series, bin_s, fg_done)  # fmt: skip
        return h, k0, tags, refs, near, kept
    v, last = state[0], state[1]
    n = o.size
    i = 0
    k = k0
    kept = period_first = 0
    period_fg = False
    while True:
        rate = min(1.0, cores / h) if h > 0 else 1.0
        tc = last + max(0.0, tags[0] - v) / rate if h > 0 else math.inf
        ta = fr_t[o[i]] if i < n else math.inf
        tf = fg_asked[k] if k < m else math.inf
        t = min(tc, ta, tf)
        if t >= cut:
            break
        v += (t - last) * rate
        last = t
        if tc <= ta and tc <= tf:  # completions first at a tie (the timer was set earlier)
            due = v + 1e-12 + 8 * np.spacing(abs(v))
            while h > 0 and tags[0] <= due:
                r = refs[0]
                _pop(tags, refs, h)
                h -= 1
                if r >= 0:
                    done_t[r] = t
                else:
                    _delayed(counters, abs(t - fg_done[-r - 1]), t)  # done off either way
            continue
        if h == tags.size:
            tags = np.concatenate((tags, np.empty(h)))
            refs = np.concatenate((refs, np.empty(h, dtype=np.int64)))
        if h == 0:  # a new busy period
            kept, period_first, period_fg = _new_period(kept, period_first, period_fg)
        if tf <= ta:
            _push(tags, refs, h, v + fg_work[k], -(k + 1))
            period_fg = True
            k += 1
        else:
            w = fr_work[o[i]]
            counters[2] += min(w, end_s - t)  # offered: what one core could do by the end
            _bin(series, bin_s, t, w)
            if track:
                near = _keep(near, kept, t, w, o[i])
                kept += 1
            if h == 0:  # alone on the cores: if nothing arrives before it ends, end it here (as the loop would)
                tag = v + w
                tc = last + max(0.0, tag - v)
                if tc < cut and tc <= tf and (i + 1 >= n or tc <= fr_t[o[i + 1]]):
                    v += tc - last
                    last = tc
                    done_t[o[i]] = tc
                    i += 1
                    continue
            _push(tags, refs, h, v + w, o[i])
            i += 1
        h += 1
    state[0], state[1] = v, last
    return h, k, tags, refs, near, kept


@njit(cache=True)
def fifo_cores(  # type: ignore[no-untyped-def]
    fr_t,
    fr_work,
    o,
    fg_asked,
    fg_work,
    fg_done,
    k0,
    free,
    cut,
    end_s,
    done_t,
    counters,
    near,
    series,
    bin_s,
):
    """Run-to-completion cores: each job, in arrival order, takes the earliest free core (``free`` holds each
    core's free time). Frames write done_t[ref]; items at or after ``cut`` wait. ``near`` as in
    ``shared_cores``. Returns (next foreground index, frames served, near, its rows)."""
    n = o.size
    m = fg_asked.size
    i = 0
    k = k0
    kept = period_first = 0
    period_fg = False
    track = k0 < m  # (as ``shared_cores``)
    while True:
        ta = fr_t[o[i]] if i < n else math.inf
        tf = fg_asked[k] if k < m else math.inf
        t = min(ta, tf)
        if t >= cut:
            break
        if t >= free.max():  # every core idle: a new busy period
            kept, period_first, period_fg = _new_period(kept, period_first, period_fg)
        c = np.argmin(free)
        start = t if t > free[c] else free[c]
        if tf <= ta:
            period_fg = True
            free[c] = start + fg_work[k]
            _delayed(counters, abs(free[c] - fg_done[k]), free[c])
            k += 1
        else:
            free[c] = start + fr_work[o[i]]
            done_t[o[i]] = free[c]
            counters[2] += min(fr_work[o[i]], end_s - t)  # offered: what one core could do by the end
            _bin(series, bin_s, t, fr_work[o[i]])
            if track:
                near = _keep(near, kept, t, fr_work[o[i]], o[i])
                kept += 1
            i += 1
    return k, i, near, kept


@njit(cache=True)
def finished_frames(done, emit, pop, wire, t1, horizon, pops):  # type: ignore[no-untyped-def]
    """The frames decrypted before ``t1`` (a window's cut), in two passes over the table: how many and their
    bytes; of those done before ``horizon``, their rows in table order and their latencies grouped by
    population (population p's at first[p]:first[p + 1], each in table order); the rows left, in order, and
    each row's place among them (-1: finished)."""
    n = done.size
    count = np.zeros(pops + 1, dtype=np.int64)
    finished = 0
    nbytes = 0.0  # whole bytes: exact in any order of summation
    for i in range(n):
        if done[i] < t1:
            finished += 1
            nbytes += wire[pop[i]]
            if done[i] < horizon:
                count[pop[i] + 1] += 1
    first = np.cumsum(count)
    at = first[:-1].copy()
    lat = np.empty(first[-1])
    ok = np.empty(first[-1], dtype=np.int64)
    left = np.empty(n - finished, dtype=np.int64)
    place = np.empty(n, dtype=np.int64)
    k = j = 0
    for i in range(n):
        d = done[i]
        if d < t1:
            place[i] = -1
            if d < horizon:
                lat[at[pop[i]]] = d - emit[i]
                at[pop[i]] += 1
                ok[k] = i
                k += 1
        else:
            place[i] = j
            left[j] = i
            j += 1
    return finished, nbytes, ok, lat, first, left, place


@njit(cache=True)
def _pairwise(a, lo, n, square):  # type: ignore[no-untyped-def]
    """The sum of a[lo:lo + n] (of their squares if ``square``) added in numpy's order (``np.add.reduce`` of a
    contiguous float64 array: pairwise halves down to blocks of at most 128, each summed in eight lanes), so
    that a sketch's sums are numpy's to the bit (a test holds it to ``np.sum``)."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i] * a[i] if square else a[i]
        return res
    if n <= 128:
        r = np.empty(8)
        for k in range(8):
            r[k] = a[lo + k] * a[lo + k] if square else a[lo + k]
        i = 8
        while i < n - n % 8:
            for k in range(8):
                r[k] += a[lo + i + k] * a[lo + i + k] if square else a[lo + i + k]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += a[lo + i] * a[lo + i] if square else a[lo + i]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return _pairwise(a, lo, half, square) + _pairwise(a, lo + half, n - half, square)


@njit(cache=True)
def latency_stats(lat, first):  # type: ignore[no-untyped-def]
    """Per population p (``lat[first[p]:first[p + 1]]``, from ``finished_frames``): the sum of its latencies, of
    their squares (numpy's ``sum`` and ``square(...).sum()``, to the bit), their least and largest."""
    pops = first.size - 1
    out = np.empty((pops, 4))
    for p in range(pops):
        a, b = first[p], first[p + 1]
        lo, hi = math.inf, -math.inf
        for i in range(a, b):
            lo = min(lo, lat[i])
            hi = max(hi, lat[i])
        out[p, 0] = _pairwise(lat, a, b - a, False)
        out[p, 1] = _pairwise(lat, a, b - a, True)
        out[p, 2], out[p, 3] = lo, hi
    return out


@njit(cache=True)
def sketch_counts(logs, a, b, counts, log_gamma, offset):  # type: ignore[no-untyped-def]
    """Count ``logs[a:b]`` (natural logs of latencies, clipped as ``LatencySketch.add`` clips them) into a
    sketch's buckets, as it does: ceil(log / log_gamma) - offset, clipped to the buckets."""
    last = counts.size - 1
    for i in range(a, b):
        k = np.int64(math.ceil(logs[i] / log_gamma)) - offset
        counts[min(max(k, 0), last)] += 1


def load() -> None:
    """Load the compiled kernels' runtime (numba's array support: ~0.15 s the first time any kernel runs in a
    process) by running the smallest kernel."""
    grid_after(0.0, 1.0, 0.5)


@njit(cache=True)
def grid_after(start_s, period_s, end_s):  # type: ignore[no-untyped-def]
    """The first emission time at or after end_s of a session started at start_s (repeated addition)."""
    t = start_s
    while t < end_s:
        t = t + period_s
    return t


@njit(cache=True)
def waiting_at(srv_of, sid, t, cut, rows):  # type: ignore[no-untyped-def]
    """Indices of the frames whose next server is ``sid`` and that arrive before ``cut``, in arrival order
    (ties in index order), and whether that order needs a stable sort still (``order_by_time`` gave up). Only
    the table's rows ``rows[r, 0]..rows[r, 1]`` (increasing, disjoint) are looked at: those that can hold such
    frames (the caller's ``_Rows``). The span of their times is found in the same pass."""
    size = 0
    for r in range(rows.shape[0]):
        size += rows[r, 1] - rows[r, 0]
    idx = np.empty(size, dtype=np.int64)  # one pass; the caller gets the first n
    n = 0
    ordered = True
    last = -math.inf
    lo, hi = math.inf, -math.inf
    for r in range(rows.shape[0]):
        for i in range(rows[r, 0], rows[r, 1]):
            if srv_of[i] == sid and t[i] < cut:
                ti = t[i]
                if ti < last:
                    ordered = False
                last = ti
                lo = min(lo, ti)
                hi = max(hi, ti)
                idx[n] = i
                n += 1
    if ordered:
        return idx[:n], True
    return _bucket_order(idx[:n], t, lo, hi)


@njit(cache=True)
def order_by_time(idx, t):  # type: ignore[no-untyped-def]
    """``idx`` stably sorted by ``t[idx]`` (finite times), and whether it is: a bucket per item over the span of
    the times, filled in index order, then an insertion pass over the buckets in order. Linear where the
    times are spread evenly, as frames are after a hop's jitter (2.6x faster than numpy's stable sort on 125 k
    frames displaced by ~9 places, 10,000 devices); gives up (returns ``idx``, False) past ~32 moves an item,
    where a few buckets hold most items, for the caller's ``np.argsort``."""
    lo, hi = math.inf, -math.inf
    for i in idx:
        lo = min(lo, t[i])
        hi = max(hi, t[i])
    return _bucket_order(idx, t, lo, hi)


@njit(cache=True)
def _bucket_order(idx, t, lo, hi):  # type: ignore[no-untyped-def]
    """``order_by_time`` given the span [lo, hi] of the times (int32 buckets: a window's frames are far fewer
    than 2**31; half the memory of int64 ones, ~10 % of the sort)."""
    n = idx.size
    if n < 2 or not hi > lo:
        return idx, True
    scale = (n - 1) / (hi - lo)
    first = np.zeros(n + 1, dtype=np.int32)  # bucket b's items start at first[b]
    bucket = np.empty(n, dtype=np.int32)
    for j in range(n):
        b = min(int((t[idx[j]] - lo) * scale), n - 1)
        bucket[j] = b
        first[b + 1] += 1
    for b in range(n):
        first[b + 1] += first[b]
    o = np.empty(n, dtype=np.int64)
    for j in range(n):
        b = bucket[j]
        o[first[b]] = idx[j]
        first[b] += 1
    budget = 32 * n
    for j in range(1, n):
        x = o[j]
        v = t[x]
        k = j
        while k > 0 and t[o[k - 1]] > v:  # strictly later: equal times keep their (index) order
            o[k] = o[k - 1]
            k -= 1
        o[k] = x
        budget -= j - k
        if budget < 0:
            return idx, False
    return o, True


@njit(cache=True)
def _clear_link(  # type: ignore[no-untyped-def]
    o,
    fr_t,
    fr_wait,
    fr_pop,
    fr_srv,
    after,
    wire_by_pop,
    bandwidth_bps,
    free,
    busy_s,
    demand_s,
    sent,
    horizon,
    latency_s,
    jitter_s,
    rng,
    series,
    bin_s,
):
    """``link_stage`` on one lossless link with no foreground in the window: its state in locals, each
    population's serialisation time computed once (the same quotient), sums in the same order."""
    svc = wire_by_pop * 8 / bandwidth_bps
    free_s, busy, demand, nbytes = free[0], busy_s[0], demand_s[0], sent[0]
    for j in range(o.size):
        f = o[j]
        t = fr_t[f]
        p = fr_pop[f]
        s = svc[p]
        demand += min(s, horizon - t)  # offered: what the link could serialise by the end
        start = t if t > free_s else free_s
        fr_wait[f] += start - t
        free_s = start + s
        _bin(series, bin_s, start, s)
        if free_s <= horizon:
            busy += s
            nbytes += wire_by_pop[p]
        _leave(f, p, free_s, fr_t, fr_srv, after, latency_s, jitter_s, rng)
    free[0], busy_s[0], demand_s[0], sent[0] = free_s, busy, demand, nbytes


@njit(cache=True)
def _frames_stage(o, fr_t, fr_wait, fr_pop, fr_dev, fr_srv, after, wire_by_pop,  # type: ignore[no-untyped-def]
                  bandwidth_bps, bank, free, busy_s, demand_s, sent, lost, cut, horizon, loss, latency_s, jitter_s, rng,
                  counters, series, bin_s):  # fmt: skip
    """``link_stage`` with no foreground before ``cut``: the frames ``o`` merged with their own resends (a heap,
    on a lossy link), the same arithmetic and draws in the same order, without the foreground's bookkeeping. (A
    frame's service is written out here and there, not shared: a helper taking the counters' arrays, even inlined,
    cost a bank ~27 ns a frame, three times its work.) One link (not a bank) keeps its state in locals
    (``_lossy_link``); each population's serialisation time is computed once (the same quotient), and the count
    of transmissions to the next loss is kept in a local between losses."""
    if not bank:
        _lossy_link(o, fr_t, fr_wait, fr_pop, fr_srv, after, wire_by_pop, bandwidth_bps, free, busy_s, demand_s, sent,
                    lost, cut, horizon, loss, latency_s, jitter_s, rng, counters, series, bin_s)  # fmt: skip
        return
    svc = wire_by_pop * 8 / bandwidth_bps
    n = o.size
    heap_t = np.empty(16)
    heap_i = np.empty(16, dtype=np.int64)
    h = 0
    i = 0
    gap = counters[LOSS_GAP]
    while i < n or h > 0:
        if h > 0 and (i >= n or heap_t[0] <= fr_t[o[i]]):
            t = heap_t[0]
            f = heap_i[0]
            _pop(heap_t, heap_i, h)
            h -= 1
        else:
            f = o[i]
            t = fr_t[f]
            i += 1
        if t >= cut:  # a resend due after the cut: it waits here for the next window
            fr_t[f] = t
            continue
        w = fr_dev[f]
        p = fr_pop[f]
        size = wire_by_pop[p]
        s = svc[p]
        demand_s[w] += min(s, horizon - t)
        start = t if t > free[w] else free[w]
        fr_wait[f] += start - t
        end = start + s
        free[w] = end
        if end <= horizon:
            busy_s[w] += s
            sent[w] += size
        if loss > 0.0:
            if gap > 1:  # not lost: counted down here (``_is_lost``)
                gap -= 1
            else:
                counters[LOSS_GAP] = gap
                gone = _is_lost(counters, loss, rng)
                gap = counters[LOSS_GAP]
                if gone:
                    lost[w] += 1
                    if h == heap_t.size:
                        heap_t = np.concatenate((heap_t, np.empty(h)))
                        heap_i = np.concatenate((heap_i, np.empty(h, dtype=np.int64)))
                    _push(heap_t, heap_i, h, end + (2 * latency_s + s), f)
                    h += 1
                    continue
        _leave(f, p, end, fr_t, fr_srv, after, latency_s, jitter_s, rng)
    counters[LOSS_GAP] = gap


@njit(cache=True)
def _lossy_link(o, fr_t, fr_wait, fr_pop, fr_srv, after, wire_by_pop, bandwidth_bps, free,  # type: ignore[no-untyped-def]
                busy_s, demand_s, sent, lost, cut, horizon, loss, latency_s, jitter_s, rng, counters, series,
                bin_s):  # fmt: skip
    """``_frames_stage`` on one link (not a bank): its state in locals, written back at the end (the loop does
    not wait on its own stores to the counters at every frame); the same arithmetic and draws in the same order."""
    svc = wire_by_pop * 8 / bandwidth_bps
    n = o.size
    heap_t = np.empty(16)
    heap_i = np.empty(16, dtype=np.int64)
    h = 0
    i = 0
    free_s, busy, demand, nbytes, nlost = free[0], busy_s[0], demand_s[0], sent[0], lost[0]
    gap = counters[LOSS_GAP]
    while i < n or h > 0:
        if h > 0 and (i >= n or heap_t[0] <= fr_t[o[i]]):
            t = heap_t[0]
            f = heap_i[0]
            _pop(heap_t, heap_i, h)
            h -= 1
        else:
            f = o[i]
            t = fr_t[f]
            i += 1
        if t >= cut:  # a resend due after the cut: it waits here for the next window
            fr_t[f] = t
            continue
        p = fr_pop[f]
        size = wire_by_pop[p]
        s = svc[p]
        demand += min(s, horizon - t)
        start = t if t > free_s else free_s
        fr_wait[f] += start - t
        end = start + s
        free_s = end
        _bin(series, bin_s, start, s)
        if end <= horizon:
            busy += s
            nbytes += size
        if loss > 0.0:
            if gap > 1:  # not lost: counted down here (``_is_lost``)
                gap -= 1
            else:
                counters[LOSS_GAP] = gap
                gone = _is_lost(counters, loss, rng)
                gap = counters[LOSS_GAP]
                if gone:
                    nlost += 1
                    if h == heap_t.size:
                        heap_t = np.concatenate((heap_t, np.empty(h)))
                        heap_i = np.concatenate((heap_i, np.empty(h, dtype=np.int64)))
                    _push(heap_t, heap_i, h, end + (2 * latency_s + s), f)
                    h += 1
                    continue
        _leave(f, p, end, fr_t, fr_srv, after, latency_s, jitter_s, rng)
    free[0], busy_s[0], demand_s[0], sent[0], lost[0] = free_s, busy, demand, nbytes, nlost
    counters[LOSS_GAP] = gap


@njit(cache=True)
def link_stage(  # type: ignore[no-untyped-def]
    o,
    fr_t,
    fr_wait,
    fr_pop,
    fr_dev,
    fr_srv,
    after,
    wire_by_pop,
    bandwidth_bps,
    bank,
    free,
    busy_s,
    demand_s,
    sent,
    lost,
    fg_asked,
    fg_service,
    fg_granted,
    k0,
    cut,
    horizon,
    loss,
    latency_s,
    jitter_s,
    rng,
    counters,
    series,
    bin_s,
):
    """A link direction (one, or a population's bank of access links, ``bank``: server = device) serving the
    frames ``o`` (from ``waiting_at``, in arrival order) and the foreground's transmissions k0.. (on a shared
    link) in arrival order up to ``cut``, reading and writing the frame table in place. A frame served moves
    to the next server of its route (``after``, by population), at its departure + latency + jitter; a lost one
    is queued here again after 2 x latency + service (at or after ``cut``: it waits here for the next window).
    Per server: busy and demand seconds, bytes sent, losses, as the event model counts them (busy and bytes for
    services ended by the horizon; demand when asked, what fits before the horizon). counters[3:5] (every kernel): the
    foreground's largest delay and how many were delayed. ``near``: the frames' transmissions (arrival,
    service, frame index) in busy periods that also serve foreground (the only ones that can delay it; the
    next pass simulates them in SimPy; none once all foreground is served: keeping them took half a shared
    lossy link's time). Returns (next foreground index, near, its rows). ``series``: busy
    seconds per ``bin_s`` bin by service start (a shared link's)."""
    n = o.size
    if loss == 0.0 and not bank and (k0 >= fg_asked.size or fg_asked[k0] >= cut):  # the commonest case
        _clear_link(o, fr_t, fr_wait, fr_pop, fr_srv, after, wire_by_pop, bandwidth_bps, free, busy_s,
                    demand_s, sent, horizon, latency_s, jitter_s, rng, series, bin_s)  # fmt: skip
        return k0, np.empty((0, 3)), 0
    if k0 >= fg_asked.size or fg_asked[k0] >= cut:  # no foreground in the window (a bank, a lossy link)
        _frames_stage(o, fr_t, fr_wait, fr_pop, fr_dev, fr_srv, after, wire_by_pop, bandwidth_bps, bank,
                      free, busy_s, demand_s, sent, lost, cut, horizon, loss, latency_s, jitter_s, rng, counters,
                      series, bin_s)  # fmt: skip
        return k0, np.empty((0, 3)), 0
    k = k0
    m = fg_asked.size
    near = np.empty((16, 3))
    heap_t = np.empty(16)
    heap_i = np.empty(16, dtype=np.int64)
    h = 0
    i = 0
    kept = 0
    period_first = 0  # rows of ``near`` from this busy period on, kept only if it serves foreground
    period_fg = False
    track = not bank and k0 < m  # (as ``shared_cores``)
    while True:
        ta = fr_t[o[i]] if i < n else math.inf
        tf = fg_asked[k] if k < m else math.inf
        th = heap_t[0] if h > 0 else math.inf
        if tf <= ta and tf <= th:  # ties: the foreground first
            if tf >= cut:
                break
            if tf >= free[0]:  # a new busy period
                kept, period_first, period_fg = _new_period(kept, period_first, period_fg)
            period_fg = True
            start = tf if tf > free[0] else free[0]
            _delayed(counters, abs(start - fg_granted[k]), start)  # granted off either way
            free[0] = start + fg_service[k]
            k += 1
            continue
        if th <= ta:
            t = th
            f = heap_i[0]
            _pop(heap_t, heap_i, h)
            h -= 1
        else:
            t = ta
            f = o[i]
            i += 1
        if t >= cut:  # stays for the next window (a re-arrival here, or not yet arrived)
            fr_t[f] = t
            continue
        w = fr_dev[f] if bank else 0
        p = fr_pop[f]
        size = wire_by_pop[p]
        s = size * 8 / bandwidth_bps
        if not bank and t >= free[0]:  # a new busy period of a shared link
            kept, period_first, period_fg = _new_period(kept, period_first, period_fg)
        if track:
            near = _keep(near, kept, t, s, f)
            kept += 1
        demand_s[w] += min(s, horizon - t)
        start = t if t > free[w] else free[w]
        fr_wait[f] += start - t
        end = start + s
        free[w] = end
        if not bank:
            _bin(series, bin_s, start, s)
        if end <= horizon:
            busy_s[w] += s
            sent[w] += size
        if loss > 0.0 and counters[LOSS_GAP] > 1:  # not lost: counted down in place (``_is_lost``)
            counters[LOSS_GAP] -= 1
        elif loss > 0.0 and _is_lost(counters, loss, rng):
            lost[w] += 1
            if h == heap_t.size:
                heap_t = np.concatenate((heap_t, np.empty(h)))
                heap_i = np.concatenate((heap_i, np.empty(h, dtype=np.int64)))
            _push(heap_t, heap_i, h, end + (2 * latency_s + s), f)
            h += 1
            continue
        _leave(f, p, end, fr_t, fr_srv, after, latency_s, jitter_s, rng)
    return k, near, kept  # the open busy period's frames stay: a later window may serve foreground in it
