"""What a simulated run will cost before it starts: SimPy events, span rows, peak memory, wall time.

Every number of a scenario is bounded on its own (sim/scenario.py); this bounds their product. The
estimate follows the model (sim/model.py, sim/network.py) with constants measured on this code:

- a telemetry frame is one ``frame`` row plus the receiver's decrypt (plus the device's encrypt when the
  population has a profile), ~6 events plus ~2 per operation and ~1.5 per segment and hop; a device session's
  handshake is 7-10 rows; a device sends from when its session holds (its receiving host serves every device's
  handshake at once at the start: a host that cannot keep up holds them all back, ``_send_windows``) until
  ``run.horizon_s`` (``run.stop_at: last_round``: until FL finishes);
- an FL round is ~32 rows per client (plus 10 per client with ``rekey.fl: per_round``) and ~80 events plus
  ~3 per segment, hop and message; a message of N segments starts N SimPy processes at once;
- a round lasts its critical path of mean operation costs from the hosts' profiles, stretched by the
  telemetry load on the receiving hosts (processor sharing: x / (1 - rho)), at most ``round_timeout_s``;
- memory: ~250 MB of interpreter and libraries plus ~900 bytes per span row while the run builds its
  table (rows of every replication are kept until the end), ~2 KB per live segment process;
- the vectorized engine (``run.engine``, sim/telemetry.py): frames are no events and no rows (a
  ``run.frame_spans`` sample), ~1 µs each in the kernels, ~200 bytes each in a window of at most
  ``WINDOW_FRAMES``; the handshakes stay SimPy events; telemetry runs to ``run.horizon_s``. Frames that reach
  their host while FL work runs on its cores are served again in SimPy in later passes (background, ~6 events
  each): a round's work may outlast the round (a training longer than ``round_timeout_s``: the next round's
  queues behind it), so with long trainings that is most of the run's frames, whether or not a round completes;
- a frame decrypted beside one long foreground job keeps ~1 KB of SimPy timers until that job ends;
- series.parquet: a row per replication, shared link direction or host and time bin (``run.series_bin_s``), ~330
  bytes each at the end of the run (built as one frame, then written) and ~4 µs.

What the peak and the wall time are made of (``Cost.memory``, ``Cost.time``) adds up to them; a refusal shows the
largest parts and names the field with the largest share of the part over budget (``Cost.drivers``).

Measured (2-core x86, this code): paper-3node 6.4 k rows, 92 k events; 6,000 ECG patches for 83 s of
simulated time: 1.03 M rows, 6.6 M events, 1.05 GB peak RSS, 128 s (52 k events/s; up to 190 k/s on
FL-heavy runs). ``tests/test_input_hardening.py`` checks estimates against measured runs.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim import catalogue
from sim.contract import RECORD_HEADER_BYTES
from sim.errors import UserError, field_error
from sim.loading import machine_memory_bytes
from sim.profile import LinearOp, Profile, op_kind, overhead_bytes
from sim.scenario import (
    MAX_SERIES_BINS,
    DevicePopulation,
    LinkParams,
    Scenario,
    lowest_latency_path,
    route_weight,
)
from sim.telemetry import WINDOW_FRAMES, engine_for

GIB = 1 << 30
BASE_BYTES = 250e6  # the simulator's process before the first event
BYTES_PER_ROW = 900.0  # SpanRow tuples, then the DataFrame and Parquet built from them (peak)
FRAME_BYTES_PER_ROW = 120.0  # a finished mode's spans DataFrame kept for --mode both
BYTES_PER_SEGMENT = 2_000.0  # a live SimPy process carrying one segment
# the slower end of what this machine does, one core (2026-12-01): a 10,000-device storm 134 k/s, the paper run
# 170 k/s, ward-200 on the event engine 240 k/s (at the 50 k/s assumed before, its 600 s estimated at 50 s ran in 3.9)
EVENTS_PER_S = 120_000.0
ROWS_PER_CLIENT_ROUND = 32.0
ROWS_PER_HANDSHAKE = 10.0
PS_S_PER_JOB_EVENT = 3e-7  # an arrival or completion on a processor-sharing host, per log2 of its running jobs
EVENTS_PER_OP = 4.0
EVENTS_PER_SEGMENT_HOP = 3.0  # a service and a propagation timeout (links are FIFOs without a queue object)
# a telemetry frame: its process and its period's timer, an operation, a segment's hop (measured, event engine,
# 2026-12-02: 6.0 a frame on paper-3node's one hop, 9.1 on ward-200's four)
EVENTS_PER_FRAME = 4.0
EVENTS_PER_FRAME_OP = 2.0
EVENTS_PER_FRAME_HOP = 1.5
KERNEL_S_PER_FRAME = 1e-6  # the vectorized engine: measured ~0.5 µs a frame here (bench/sim_scale.py)
BYTES_PER_FRAME_IN_WINDOW = 200.0
# frames next to foreground work on their host's cores: served again in SimPy, as background, in each later pass
EVENTS_PER_BACKGROUND_FRAME = 6.0  # measured 5.3-5.9 (ward-200 beside hour-long trainings)
BACKGROUND_PASSES = 2  # the passes that serve them (measured 1-2; sim/runner.py MAX_PASSES bounds them)
S_PER_BACKGROUND_FRAME = 30e-6  # wall seconds a pass spends on one (measured 20-22 µs)
# a frame decrypted while one foreground job runs on its host leaves completion timers in SimPy's queue until that
# job ends (sim/hosts.py SharedCores: each arrival re-arms the next completion); a replication's are freed with its
# other garbage before the next one runs (sim/runner.py COLLECT_AFTER_EVENTS), so one replication's count
BYTES_PER_FRAME_BESIDE_A_JOB = 1_000.0  # measured 870-970

# series.parquet (sim/runner.py series_frame): a row per replication, shared link direction or host, and time bin up
# to the run's end, built as one frame (object columns) and written at the end; each replication keeps its bins'
# arrays (8 bytes a bin, to the horizon) until its mode's run is assembled. Measured (2 vCPUs, 2026-12-02): 285-318
# bytes a row at the peak (ward-200 with 100,000 bins: 9.5 M rows, 2.8 GB RSS), 2.9-4.1 µs a row to build and write
BYTES_PER_SERIES_ROW = 330.0
SERIES_ROW_KEPT_BYTES = 60.0  # a finished mode's series frame kept for --mode both
S_PER_SERIES_ROW = 4e-6
SERIES_BINS = 120  # sim/model.py's: bins of series.parquet when run.series_bin_s is not set
# cpu_sharing: linux (sim/hosts.py PlacedCores): a core running a job longer than a slice re-arms a timer every
# SLICE_S (alone or not), and an idle core next to one with jobs waiting balances at the next tick (TICK_S)
SLICE_S = 0.0033
TICK_S = 0.004
HELLO_BYTES = 64  # sim/model.py's: a handshake's hello
# draws of a device session's work on its receiving host before its frames may go (``_send_windows``): a fixed seed,
# so an estimate is the same every time
KEY_DRAWS = 256

DEFAULT_MAX_MEMORY_GIB = 1.0
DEFAULT_MAX_MINUTES = 10.0  # estimated wall time; estimates run 1.3-3.6x above measured ones here
WARN_WALL_S = 60.0


@dataclass
class Cost:
    """One simulated run (all replications, all modes)."""

    events: float
    rows: float
    peak_bytes: float
    wall_s: float
    sim_time_s: float  # one replication's simulated time
    # (field path, value, its bytes of the peak, its wall seconds): the fields that drive the cost
    drivers: list[tuple[str, Any, float, float]] = field(default_factory=list)
    series_rows: float = 0.0  # series.parquet's rows (one mode's)
    # what the peak and the wall time are made of: (what, bytes or seconds), adding up to ``peak_bytes``, ``wall_s``
    memory: list[tuple[str, float]] = field(default_factory=list)
    time: list[tuple[str, float]] = field(default_factory=list)
    # run.engine auto priced as the event model because the kernels would give up at run time (a frame slower than
    # its period from emission to decryption): why, in a few words ("" otherwise)
    fallback: str = ""

    def describe(self) -> str:
        series = f", {_si(self.series_rows)} series rows" if self.series_rows >= 1e5 else ""
        engine = ""
        if self.fallback:  # the first driver is what makes the frames slow
            engine = f" (the event model: {self.fallback}, so the kernels give up; {self.drivers[0][0]} adds the most)"
        return (
            f"~{_si(self.events)} events, {_si(self.rows)} span rows{series}, {self.peak_bytes / GIB:.2f} GiB peak, "
            f"~{duration(self.wall_s)}{engine}"
        )


def estimate(s: Scenario, replications: int | None = None, modes: int = 1) -> Cost:
    """The cost of simulating ``s`` with ``replications`` (default: the scenario's) in ``modes`` modes."""
    reps = replications or s.run.replications
    k = reps * modes
    routes = _Routes(s)
    fl_rows, fl_events, work, seg_peak = _fl(s, routes)
    rho = _decrypt_load(s)
    backlog_s, backlog_jobs = _session_backlog(s)
    fl = s.workload.fl
    round_len_s = min(work.round_s / max(1e-9, 1 - max(rho.values(), default=0.0)), fl.round_timeout_s)
    rounds_s = fl.rounds * round_len_s + work.session_s
    devices = any(p.count for p in s.workload.devices) and s.run.stop_at == "horizon"
    duration_s = s.run.horizon_s if devices else min(s.run.horizon_s, rounds_s + backlog_s)
    vectorized = engine_for(s) == "vectorized"  # auto: the event model for what the kernels refuse
    busy = _foreground(work.by_host, fl.rounds, round_len_s, duration_s)
    sends = _send_windows(s, duration_s)
    slow = None
    if vectorized and s.run.engine == "auto":  # the kernels give up at run time on a frame slower than its period
        in_run = [p.count * sent * reps for p, sent in zip(s.workload.devices, sends, strict=True)]
        slow = _slow_frames(s, routes, rho, work, in_run)
        vectorized = slow is None
    tele = [_population(s, pop, duration_s, routes, vectorized, busy, sent)
            for pop, sent in zip(s.workload.devices, sends, strict=True)]  # fmt: skip
    slices, ticks, linux_top = _linux_slices(s, work, fl.rounds, round_len_s, duration_s, tele)
    rows_rep = fl_rows + sum(t.rows for t in tele)
    events_rep = fl_events + sum(t.events for t in tele) + slices + ticks
    rows, events = rows_rep * reps, events_rep * k
    ps_s, stuck = _sharing_cost(s, tele, rho, min(1.0, backlog_s / max(duration_s, 1e-9)), backlog_jobs)
    live = sum(t.queued for t in tele) + stuck  # frames waiting for a link or a core: live SimPy processes
    beside = sum(t.beside for t in tele)  # one replication's: the next collects them (sim/runner.py)
    series_rows, series_arrays = _series(s, duration_s)
    memory = [
        ("the simulator itself", BASE_BYTES),
        (f"{_si(rows)} span rows", rows * (BYTES_PER_ROW + (modes - 1) * FRAME_BYTES_PER_ROW)),
        ("FL messages' segments in flight", seg_peak),
        (f"{_si(live)} frames queued in SimPy", live * BYTES_PER_SEGMENT),
        (f"timers of {_si(beside)} frames beside long FL work", beside * BYTES_PER_FRAME_BESIDE_A_JOB),
        (f"{_si(series_rows * reps)} series rows",
         series_rows * reps * (BYTES_PER_SERIES_ROW + (modes - 1) * SERIES_ROW_KEPT_BYTES) + series_arrays * reps),
    ]  # fmt: skip
    background = sum(t.background for t in tele) * k
    simpy_events = events - background * EVENTS_PER_BACKGROUND_FRAME
    frames = sum(t.frames for t in tele)
    time = [
        (f"{_si(simpy_events)} events at {EVENTS_PER_S / 1e3:.0f} k/s", simpy_events / EVENTS_PER_S),
        (f"processor sharing among {_si(backlog_jobs + stuck)} queued jobs", ps_s * k),
        (f"{_si(background)} frames served again", background * BACKGROUND_PASSES * S_PER_BACKGROUND_FRAME),
        (f"{_si(series_rows * reps * modes)} series rows", series_rows * reps * modes * S_PER_SERIES_ROW),
    ]
    if vectorized:
        memory.append((f"{_si(min(frames, WINDOW_FRAMES))} frames in the kernels' window",
                       min(frames, WINDOW_FRAMES) * BYTES_PER_FRAME_IN_WINDOW))  # fmt: skip
        time.append((f"{_si(frames * k)} frames in the kernels", frames * KERNEL_S_PER_FRAME * k))
    peak, wall_s = sum(b for _, b in memory), sum(t for _, t in time)
    drivers = _drivers(s, reps, modes, rows_rep, fl_rows, fl_events, tele, (ps_s * k, stuck), seg_peak, beside,
                       (series_rows, series_arrays), peak, wall_s)  # fmt: skip
    if slices + ticks:  # cpu_sharing: linux: a timer per slice of a long job, a balance per tick: the jobs' length
        drivers.insert(0, (*linux_top, 0.0, (slices + ticks) * k / EVENTS_PER_S))
    if slow is not None:  # what the kernels' giving up costs: every slow population's frames on the event model
        cause, value, why = slow
        slow_pops = [d for d in drivers if d[0].startswith("workload.devices[")]
        drivers.insert(0, (cause, value, sum(d[2] for d in slow_pops), sum(d[3] for d in slow_pops)))
    return Cost(events, rows, peak, wall_s, duration_s, drivers, series_rows * reps, memory, time,
                why if slow is not None else "")  # fmt: skip


def _drivers(s: Scenario, reps: int, modes: int, rows_rep: float, fl_rows: float, fl_events: float, tele: list[_Pop],
             sharing: tuple[float, float], seg_peak: float, beside: float, series: tuple[float, float], peak: float,
             wall_s: float) -> list[tuple[str, Any, float, float]]:  # fmt: skip
    """(field, value, bytes, wall seconds): each field's share of the peak and of the wall time, the part of the cost
    that lowering it (raising it: ``run.segment_bytes``, ``run.series_bin_s``) takes away."""
    fl, k = s.workload.fl, reps * modes
    row_bytes = reps * (BYTES_PER_ROW + (modes - 1) * FRAME_BYTES_PER_ROW)
    ps_s, stuck = sharing
    frames = sum(t.frames for t in tele) or 1.0
    out: list[tuple[str, Any, float, float]] = [
        ("workload.fl.rounds", fl.rounds, fl_rows * row_bytes, fl_events * k / EVENTS_PER_S)
    ]
    for i, (pop, t) in enumerate(zip(s.workload.devices, tele, strict=True)):
        share = t.frames / frames
        t_events = t.events - t.background * EVENTS_PER_BACKGROUND_FRAME
        t_s = t_events * k / EVENTS_PER_S + share * ps_s + (t.frames * k * KERNEL_S_PER_FRAME if t.vectorized else 0.0)
        t_s += t.background * k * BACKGROUND_PASSES * S_PER_BACKGROUND_FRAME
        t_bytes = t.rows * row_bytes + (t.queued + share * stuck) * BYTES_PER_SEGMENT
        out.append((f"workload.devices[{i}].count", pop.count, t_bytes, t_s))
    if beside or any(t.background for t in tele):  # FL work holds a host for much of the run: the training's size
        # drives what its frames cost (as much as their number does)
        out.append(("workload.fl.samples_per_client", fl.samples_per_client, beside * BYTES_PER_FRAME_BESIDE_A_JOB,
                    sum(t.background for t in tele) * k * BACKGROUND_PASSES * S_PER_BACKGROUND_FRAME))  # fmt: skip
    out.append(("run.segment_bytes", s.run.segment_bytes, seg_peak, 0.0))
    rows, arrays = series
    kept = BYTES_PER_SERIES_ROW + (modes - 1) * SERIES_ROW_KEPT_BYTES
    if rows:
        out.append(("run.series_bin_s", s.run.series_bin_s, rows * reps * kept + arrays * reps,
                    rows * reps * modes * S_PER_SERIES_ROW))  # fmt: skip
    if reps > 1:  # every replication's rows are kept; one replication's live state is
        out.append(("run.replications", reps, (rows_rep * row_bytes + series[0] * reps * kept + series[1] * reps)
                    * (1 - 1 / reps), (wall_s - wall_s / reps)))  # fmt: skip
    return out


def budget_problem(s: Scenario, cost: Cost, max_memory_gib: float, max_minutes: float,
                   options: tuple[str, str] = ("--max-memory-gib", "--max-minutes")) -> str | None:  # fmt: skip
    """The one-line refusal of a run over budget, naming the field that drives its cost and the ``options`` that set
    the budget (a command without them names where its budget comes from); None within it. The refusal says what
    the estimate is made of: its largest parts, which add up to it."""
    if cost.peak_bytes > max_memory_gib * GIB:
        why = f"the run needs ~{cost.peak_bytes / GIB:.1f} GiB ({_parts(cost.memory, cost.peak_bytes, _gib)}), over "
        why += f"the {max_memory_gib:g} GiB budget ({options[0]})"
        by = 2
    elif cost.wall_s > max_minutes * 60:
        why = f"the run needs ~{duration(cost.wall_s)} ({_parts(cost.time, cost.wall_s, duration)}), "
        why += f"over the {max_minutes:g} min budget ({options[1]})"
        by = 3
    else:
        return None
    name, value, msg = _advice(cost, by, why)
    if cost.fallback:  # after the advice: a line cut to length keeps what to change
        msg += f"; auto runs the event model: {cost.fallback}"
    return field_error(s.path, name, value, msg)


def within_budget(s: Scenario, replications: int | None, modes: int, max_memory_gib: float, max_minutes: float,
                  fallback: str = "") -> Cost:  # fmt: skip
    """``estimate``, refused over budget (``budget_problem``'s line as a ``UserError``). ``fallback``: why run.engine
    auto runs the event model, where found at run time (the kernels gave up), said with the refusal."""
    cost = estimate(s, replications, modes)
    cost.fallback = fallback or cost.fallback
    if problem := budget_problem(s, cost, max_memory_gib, max_minutes):
        raise UserError(problem)
    return cost


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def _parts(parts: list[tuple[str, float]], total: float, fmt: Callable[[float], str]) -> str:
    """The largest ``parts`` of ``total`` (each with its own amount), the rest summed: '28 M events at 120 k/s: 4 min
    + 12 k series rows: 3 s'."""
    ranked = sorted((p for p in parts if p[1] > 0), key=lambda p: -p[1])
    shown = [p for p in ranked[:3] if p[1] >= 0.05 * total] or ranked[:1]
    rest = total - sum(v for _, v in shown)
    text = " + ".join(f"{what}: {fmt(v)}" for what, v in shown)
    return text + (f" + the rest: {fmt(rest)}" if rest >= 0.01 * total else "")


def large_run_warning(s: Scenario, cost: Cost) -> str | None:
    """A one-line warning when a run within budget will still take a while."""
    if cost.wall_s <= WARN_WALL_S:
        return None
    return field_error(s.path, *_advice(cost, 3, f"a large run: {cost.describe()}"))


def _advice(cost: Cost, by: int, why: str) -> tuple[str, Any, str]:
    """(field, value, message): the field whose share of the cost is largest (``by``: 2 bytes, 3 wall seconds), and
    what to do with it."""
    ranked = sorted(cost.drivers, key=lambda d: -float(d[by]))
    name, value = ranked[0][0], ranked[0][1]
    verb = "raise" if name in RAISE or name.endswith(RAISE_SUFFIXES) else "lower"
    others = [d[0] for d in ranked[1:3] if float(d[by]) > 0] if not cost.fallback else []  # the cause is named
    also = f" (or {' or '.join(others)})" if others else ""
    return name, value, f"{why}; {verb} {name}{also}"


RAISE = ("run.segment_bytes", "run.series_bin_s")  # fields whose larger values cost less
RAISE_SUFFIXES = (".bandwidth_bps", ".cpu_speed", ".frame_period_s")


# --- FL ----------------------------------------------------------------------------------------------


def _fl(s: Scenario, hops: _Routes) -> tuple[float, float, _RoundWork, float]:
    """(rows, events, a round's work, peak bytes of live segment processes) of the FL part."""
    fl, c = s.workload.fl, s.workload.crypto
    agg = s.pods("aggregator")[0]
    clients = s.pods("client")
    sig = catalogue.get(c.signature)
    msg = RECORD_HEADER_BYTES + fl.header_bytes + fl.model_bytes + sig.signature_max_bytes + 2 + 64
    segs = math.ceil(msg / s.run.segment_bytes)
    remote_workers = any(p.host != agg.host for p in s.pods("worker"))
    messages = 2 + (4 if remote_workers else 0)
    max_hops = max((hops.between(agg.host, p.host) for p in clients), default=1) or 1
    rows = fl.rounds * len(clients) * ROWS_PER_CLIENT_ROUND + 4 * fl.rounds
    events = fl.rounds * len(clients) * (20 * EVENTS_PER_OP + messages * segs * max_hops * EVENTS_PER_SEGMENT_HOP)
    handshakes = len(clients) * (fl.rounds if c.rekey.fl == "per_round" else 1)
    rows += handshakes * ROWS_PER_HANDSHAKE
    events += handshakes * (3 * max_hops * EVENTS_PER_SEGMENT_HOP + 7 * EVENTS_PER_OP)
    seg_peak = len(clients) * segs * BYTES_PER_SEGMENT  # concurrent distribution: every client's message at once
    return rows, events, _round_work(s, msg, max_hops), seg_peak


@dataclass
class _RoundWork:
    round_s: float  # a round's mean length (its critical path, with dropouts; at most round_timeout_s)
    by_host: dict[str, float]  # seconds a round's foreground work holds each host's cores (its pods' own)
    session_s: float = 0.0  # the clients' handshake before the first round (rekey.fl other than per_round)
    # core-seconds and number of a round's jobs on each host that outlast a slice of cpu_sharing: linux (SLICE_S)
    long_core_s: dict[str, float] = field(default_factory=dict)
    long_jobs: dict[str, float] = field(default_factory=dict)


def _round_s(s: Scenario, msg_bytes: int, max_hops: int) -> float:
    return _round_work(s, msg_bytes, max_hops).round_s


def _round_work(s: Scenario, msg_bytes: int, max_hops: int) -> _RoundWork:
    """A round's critical path with mean costs: distribute, receive, train, upload, verify, aggregate; and the
    work it gives each host, which may outlast it (a training longer than round_timeout_s)."""
    fl, c = s.workload.fl, s.workload.crypto
    agg = s.pods("aggregator")[0]
    clients = s.pods("client")
    p_agg = _profile(s, agg.host)
    sig = catalogue.get(c.signature)
    model = fl.model_bytes

    def cost(profile: Profile | None, op: str, units: float = 0.0) -> float:
        return mean_cost_s(profile, op, units)

    def protect(p: Profile | None) -> float:
        kem = cost(p, f"{c.kem}.encaps") if c.rekey.fl == "per_message" else 0.0
        return (cost(p, "serialize", model) + cost(p, f"{sig.message_hash}.hash", model * sig.sign_hash_passes)
                + cost(p, f"{c.signature}.sign", model) + kem + cost(p, f"{c.aead}.encrypt", model))  # fmt: skip

    def unprotect(p: Profile | None) -> float:
        kem = cost(p, f"{c.kem}.decaps") if c.rekey.fl == "per_message" else 0.0
        return (kem + cost(p, f"{c.aead}.decrypt", model) + cost(p, f"{sig.message_hash}.hash", model)
                + cost(p, f"{c.signature}.verify", model) + cost(p, "deserialize", model))  # fmt: skip

    wire_s = msg_bytes * 8 / _min_bandwidth_bps(s) + max_hops * _max_latency_s(s)
    parallel = 1 if s.workload.processing.mode == "sequential" else max(1, s.crypto_workers())
    batches = math.ceil(len(clients) / parallel)
    slowest_client = 0.0
    per_host = Counter(q.host for q in clients)
    by_host: dict[str, float] = {}
    long_core_s: dict[str, float] = {}
    long_jobs: dict[str, float] = {}

    def long(host: str, job_s: float, n: float = 1.0) -> None:  # n jobs of job_s; those longer than a slice count
        if job_s > SLICE_S:
            long_core_s[host] = long_core_s.get(host, 0.0) + job_s * n
            long_jobs[host] = long_jobs.get(host, 0.0) + n

    for pod in clients:
        p = _profile(s, pod.host)
        sharing = max(1.0, per_host[pod.host] / _cores(s, pod.host))
        train = cost(p, "fl.train", fl.train_units)
        for job_s in (unprotect(p), train, protect(p)):
            long(pod.host, job_s)
        train *= sharing
        # its clients run side by side (``sharing`` stretches each): the host is held as long as the longest
        by_host[pod.host] = max(by_host.get(pod.host, 0.0), unprotect(p) + train + protect(p))
        slowest_client = max(slowest_client, unprotect(p) + train + protect(p) + wire_s)
    verify = batches * unprotect(p_agg) + cost(p_agg, "fl.fedavg", fl.model_parameters * fl.quorum_clients)
    handshake = (
        3 * wire_s
        + sum(cost(p_agg, f"{c.kem}.{op}") for op in catalogue.OPS["kem"])
        + 3 * cost(p_agg, f"{c.signature}.sign")
    )
    session_s = 0.0
    if c.rekey.fl != "per_round":  # one session for the run, before its first round
        session_s, handshake = handshake, 0.0
    work = handshake + batches * (protect(p_agg) + wire_s) + slowest_client + verify
    by_host[agg.host] = by_host.get(agg.host, 0.0) + handshake + batches * protect(p_agg) + verify
    for job_s, n in ((handshake, 1), (protect(p_agg), batches), (unprotect(p_agg), len(clients)),
                     (cost(p_agg, "fl.fedavg", fl.model_parameters * fl.quorum_clients), 1)):  # fmt: skip
        long(agg.host, job_s, n)
    return _RoundWork(_with_dropouts(s, work), by_host, min(session_s, s.run.horizon_s), long_core_s, long_jobs)


def _foreground(
    work: dict[str, float], rounds: int, round_s: float, duration_s: float
) -> dict[str, tuple[float, float]]:
    """{host: (share of the run its cores hold FL work, how long one stretch of it lasts)}. A round starts every
    ``round_s``; a pod's work that outlasts it (a training longer than round_timeout_s) holds the pod's thread,
    so the next round's queues behind it and the host stays busy to the end of the run, rounds completed or not."""
    out = {}
    for host, w in work.items():
        if w > 0 and duration_s > 0:
            busy_s = min(duration_s, w * min(rounds, duration_s / max(round_s, w)))
            out[host] = (busy_s / duration_s, min(w, duration_s))
    return out


def _with_dropouts(s: Scenario, work_s: float) -> float:
    """Mean round length when a round fails (at round_timeout_s) unless a quorum of clients stays."""
    fl = s.workload.fl
    n, q, p = fl.clients, fl.quorum_clients, fl.dropout_probability
    if work_s >= fl.round_timeout_s:
        return fl.round_timeout_s
    if p == 0:
        return work_s
    stay = 1 - p
    p_ok = sum(math.comb(n, k) * stay**k * p ** (n - k) for k in range(q, n + 1)) if n <= 1000 else 1.0 - p
    return p_ok * work_s + (1 - p_ok) * fl.round_timeout_s


def mean_cost_s(profile: Profile | None, op: str, units: float = 0.0) -> float:
    """Mean cost of one call (the simulator samples around it); 0 when the profile does not price ``op``."""
    if profile is None or op not in profile.ops:
        return 0.0
    model = profile.ops[op]
    base = model.base_s(units) if isinstance(model, LinearOp) else model.distribution.mean_s
    extra = profile.overheads.get(op_kind(op))
    if extra is None:
        return base * profile.time_scale
    return extra.apply(base, overhead_bytes(model, units)) * profile.time_scale


# --- telemetry ---------------------------------------------------------------------------------------


@dataclass
class _Pop:
    """One device population over the run: its rows, events, frames, and frames queued on a full link."""

    host: str
    rows: float
    events: float
    frames: float
    queued: float
    background: float = 0.0  # frames the vectorized engine serves again in SimPy (next to foreground work)
    beside: float = 0.0  # frames that reach the host while one foreground job runs (their timers wait for it)
    vectorized: bool = False  # its frames are computed by the kernels


def _decrypt_load(s: Scenario) -> dict[str, float]:
    """Offered load of frame decryption on each receiving host (core-seconds per second per core)."""
    host_of = _host_of(s)
    load: dict[str, float] = {}
    for pop in s.workload.devices:
        host = host_of[pop.report_to]
        p = _profile(s, host)
        per_s = pop.count / pop.period_s() * mean_cost_s(p, f"{s.workload.crypto.aead}.decrypt", pop.frame_bytes())
        load[host] = load.get(host, 0.0) + per_s / _cores(s, host)
    return load


def _session_backlog(s: Scenario) -> tuple[float, float]:
    """(simulated seconds, mean jobs) of the backlog when every device opens its session in its first frame
    period and the receiving host cannot keep up (the handshakes queue as processor-sharing jobs)."""
    host_of = _host_of(s)
    c = s.workload.crypto
    work: dict[str, tuple[float, float, float]] = {}  # host -> (core-seconds, devices, core-seconds x period)
    for pop in s.workload.devices:
        host = host_of[pop.report_to]
        p = _profile(s, host)
        ops = (f"{c.kem}.keygen", f"{c.signature}.sign", f"{c.kem}.decaps", f"{c.signature}.verify")
        w_pop = pop.count * sum(mean_cost_s(p, op) for op in ops)
        w, n, wp = work.get(host, (0.0, 0.0, 0.0))
        work[host] = (w + w_pop, n + pop.count, wp + w_pop * pop.period_s())
    backlog_s, jobs = 0.0, 0.0
    for host, (w, n, wp) in work.items():
        busy_s, window_s = w / _cores(s, host), wp / w if w > 0 else 0.0  # sessions arrive over ~one period
        if busy_s > window_s:
            backlog_s, jobs = max(backlog_s, busy_s), max(jobs, n / 3)  # the queue builds up, then drains
    return backlog_s, jobs


def _send_windows(s: Scenario, duration_s: float) -> list[float]:
    """Per device population, the frames one of its devices sends in ``duration_s`` (a mean over its devices). A
    device sends once its session holds (``first_frame: with_keys``: once the pod has signed its key; else the whole
    handshake), and every device opens its session in its first frame period, so a receiving host whose cores
    cannot keep up serves all those handshakes at once: with processor sharing (``cpu_sharing``: also ``linux``, a
    queue per core) a device's part of x seconds is done when each session's part has had min(its own, x) of the
    cores, at about sum_j min(x_j, x) / cores (the smaller the part, the earlier); with ``fifo``, in turn. A
    device's frames go from then on: none before its session holds (a burst that takes longer than the run sends
    none). The parts are drawn from the host's profile (``KEY_DRAWS``, a fixed seed): with a heavy-tailed cost, the
    mean says nothing of when most sessions hold. The device's own side of the handshake (and FL work on the same
    cores) is left out: the frames come out no fewer than the run sends."""
    host_of, c = _host_of(s), s.workload.crypto
    drawn: dict[tuple[int, str], np.ndarray] = {}  # (id of the host's profile, first_frame) -> a session's parts
    kinds: dict[tuple[str, str], np.ndarray] = {}  # (host, first_frame) -> its sessions' parts, drawn
    pools: dict[str, list[tuple[np.ndarray, int]]] = {}  # host -> (parts, devices) of every population it serves
    for pop in s.workload.devices:
        host = host_of[pop.report_to]
        if pop.count and (host, pop.first_frame) not in kinds:
            profile = _profile(s, host)
            if (id(profile), pop.first_frame) not in drawn:  # hosts of one profile: the same draws
                ops = [f"{c.kem}.keygen", f"{c.signature}.sign"]
                if pop.first_frame == "after_handshake":
                    ops += [f"{c.kem}.decaps", f"{c.signature}.verify"]
                drawn[id(profile), pop.first_frame] = _draws(profile, ops)
            kinds[host, pop.first_frame] = drawn[id(profile), pop.first_frame]
        if pop.count:
            pools.setdefault(host, []).append((kinds[host, pop.first_frame], pop.count))
    sharing = {h.name: h.cpu_sharing for h in s.deployment.hosts}
    held_at: dict[tuple[Any, ...], np.ndarray] = {}  # hosts alike (their pools, cores, sharing): computed once
    out = []
    for pop in s.workload.devices:
        if not pop.count:
            out.append(0.0)
            continue
        host = host_of[pop.report_to]
        mine = kinds[host, pop.first_frame]
        alike = (tuple((id(d), n) for d, n in pools[host]), _cores(s, host), sharing.get(host, ""), id(mine))
        if alike not in held_at:
            held_at[alike] = _served(pools[host], _cores(s, host), sharing.get(host, ""))(mine)
        left = np.maximum(0.0, duration_s - held_at[alike])
        sent = np.where(left > 0, left / pop.period_s() + 1, 0.0)
        # the run draws its own devices' costs: a few may be luckier than the mean (2 standard errors)
        out.append(min(duration_s / pop.period_s() + 1, float(sent.mean() + 2 * sent.std() / math.sqrt(pop.count))))
    return out


def _served(pool: list[tuple[np.ndarray, int]], cores: int, sharing: str) -> Callable[[np.ndarray], np.ndarray]:
    """When each of some sessions' parts (drawn) is done on a host that serves the ``pool``'s sessions (its
    populations' drawn parts and device counts), all asked at once."""
    values = np.concatenate([parts for parts, _ in pool])
    weights = np.concatenate([np.full(parts.size, n / parts.size) for parts, n in pool])  # devices each draw stands for
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    below = np.concatenate([[0.0], np.cumsum(v * w)])  # work of the draws up to i
    count = np.concatenate([[0.0], np.cumsum(w)])
    total_n, total_work = float(count[-1]), float(below[-1])

    def shared(x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(v, x, side="right")
        done: np.ndarray = np.maximum(x, (below[i] + x * (total_n - count[i])) / cores)  # sum_j min(x_j, x) / cores
        return done

    def in_turn(x: np.ndarray) -> np.ndarray:  # a device's turn: spread evenly over the queue
        turn = ((np.arange(x.size) * 0.6180339887498949) % 1.0) * max(0.0, total_work / cores)
        done: np.ndarray = x + turn
        return done

    return in_turn if sharing == "fifo" else shared


def _draws(profile: Profile | None, ops: list[str]) -> np.ndarray:
    """KEY_DRAWS draws of the summed cost of ``ops`` on ``profile`` (0 where it prices none), from a fixed seed."""
    total = np.zeros(KEY_DRAWS)
    if profile is None:
        return total
    rng = np.random.default_rng(KEY_DRAWS)
    for op in ops:
        if op in profile.ops:
            total += profile.costs_s(op, rng, 0.0, KEY_DRAWS)
    return np.nan_to_num(total, nan=0.0, posinf=np.finfo(float).max / 4)


def _series(s: Scenario, duration_s: float) -> tuple[float, float]:
    """(rows, bytes of its arrays) of one replication's series (sim/model.py, sim/runner.py ``series_frame``): a row
    per shared link direction (devices' access links are not tracked) and host, and per bin up to the run's end;
    the arrays run to the horizon."""
    run = s.run
    bin_s = run.series_bin_s or run.horizon_s / SERIES_BINS
    bins = min(MAX_SERIES_BINS, math.ceil(run.horizon_s / bin_s))
    resources = 2 * len(s.deployment.network.links) + len(s.deployment.hosts)
    used = min(bins, max(1, math.ceil(min(duration_s, run.horizon_s) / bin_s)))
    return float(resources * used), float(resources * bins * 8)


def _sharing_cost(s: Scenario, tele: list[_Pop], rho: dict[str, float], backlog_share: float,
                  backlog_jobs: float) -> tuple[float, float]:  # fmt: skip
    """(wall seconds, jobs left) of processor sharing under a backlog: every arrival and completion on a
    host is a heap operation among its running jobs (sim/hosts.py ``SharedCores``: log2 of their number). A
    host whose frames need more than its cores keeps (1 - 1/rho) of them as jobs that never finish; the
    session burst queues handshakes for a while."""
    wall_s, stuck = 0.0, 0.0
    frames_to: dict[str, float] = {}
    for t in tele:
        frames_to[t.host] = frames_to.get(t.host, 0.0) + t.frames
    for host, load in rho.items():
        frames = frames_to.get(host, 0.0)
        if load > 1:
            left = frames * (1 - 1 / load)
            wall_s += frames * math.log2(1 + left / 2) * PS_S_PER_JOB_EVENT
            stuck += left
        wall_s += 8 * frames * backlog_share * math.log2(1 + backlog_jobs) * PS_S_PER_JOB_EVENT
    return wall_s, stuck


def _population(s: Scenario, pop: DevicePopulation, duration_s: float, routes: _Routes, vectorized: bool,
                busy: dict[str, tuple[float, float]], sent: float) -> _Pop:  # fmt: skip
    """Rows, events and queued frames of one device population over ``duration_s``; ``busy``: ``_foreground``;
    ``sent``: the frames one of its devices sends (``_send_windows``)."""
    host = _host_of(s)[pop.report_to]
    if pop.count == 0:
        return _Pop(host, 0.0, 0.0, 0.0, 0.0)
    path = routes.path(pop.gateway, host)
    n_hops = 1 + len(path)
    frames = pop.count * sent
    record = RECORD_HEADER_BYTES + pop.frame_bytes() + 16
    segs = math.ceil(record / s.run.segment_bytes)
    interval = s.workload.crypto.rekey.device_interval_s
    sessions = pop.count * (1 + (duration_s / interval if interval else 0))
    rows = frames * (3 if pop.profile else 2) + sessions * ROWS_PER_HANDSHAKE
    ops = 1 + (1 if pop.profile else 0) + (2 if pop.key_establishment == "gateway" else 0)  # decrypt, encrypt...
    hop_events = n_hops * (EVENTS_PER_FRAME_HOP + (segs - 1) * EVENTS_PER_SEGMENT_HOP)  # more: a process each
    events = frames * (EVENTS_PER_FRAME + ops * EVENTS_PER_FRAME_OP + hop_events)
    if vectorized:  # frames in the kernels: a sample of rows, no events, nothing queued in SimPy
        rows, events = frames * s.run.frame_spans + sessions * ROWS_PER_HANDSHAKE, 0.0
    events += sessions * (3 * n_hops * EVENTS_PER_SEGMENT_HOP + 7 * EVENTS_PER_OP)
    bits_per_s = record * 8 / pop.period_s()
    utilisation = bits_per_s / pop.access_link.resolved()[0]  # each device has its own access link
    for link in path:
        utilisation = max(utilisation, routes.offered_bps(s, link) / link.resolved()[0])
    queued = frames * segs * max(0.0, 1 - 1 / utilisation) if utilisation > 0 and not vectorized else 0.0
    share, stretch_s = busy.get(host, (0.0, 0.0))
    background = frames * share if vectorized else 0.0
    events += background * EVENTS_PER_BACKGROUND_FRAME
    beside = min(frames, pop.count / pop.period_s() * stretch_s)
    return _Pop(host, rows, events, frames, queued, background, beside, vectorized)


def _linux_slices(s: Scenario, work: _RoundWork, rounds: int, round_s: float, duration_s: float,
                  tele: list[_Pop]) -> tuple[float, float, tuple[str, Any]]:  # fmt: skip
    """(slice events, tick events, (field, value) of the host with most) of one replication on ``cpu_sharing:
    linux`` hosts (sim/hosts.py ``PlacedCores``): a core running a job longer than a slice fires a timer every
    ``SLICE_S`` until the job ends, alone or not, so the jobs' core-seconds beyond a slice, at most every core the
    host's threads can hold for the whole run (a job that outlasts the run: a host at ``cpu_speed`` 1e-300 makes
    ~600 a simulated second on 2 cores); an idle core takes a waiting job at the next tick (``TICK_S``), about once
    per long job, at most a tick's worth of the run."""
    linux = {i: h for i, h in enumerate(s.deployment.hosts) if h.cpu_sharing == "linux"}
    if not linux or duration_s <= 0:
        return 0.0, 0.0, ("", None)
    c = s.workload.crypto
    aead = c.aead
    host_of = _host_of(s)
    threads = Counter(p.host for p in s.deployment.pods)
    core_s = {h: w * min(rounds, max(1.0, duration_s / max(round_s, 1e-9))) for h, w in work.long_core_s.items()}
    jobs = {h: n * min(rounds, max(1.0, duration_s / max(round_s, 1e-9))) for h, n in work.long_jobs.items()}

    def add(host: str, job_s: float, n: float, devices: int) -> None:
        if job_s > SLICE_S and n > 0:
            core_s[host] = core_s.get(host, 0.0) + job_s * n
            jobs[host] = jobs.get(host, 0.0) + n
            threads[host] += devices  # a receiver thread per device (telemetry_receiver: per-device)

    interval = c.rekey.device_interval_s
    for pop, t in zip(s.workload.devices, tele, strict=True):
        if not pop.count:
            continue
        host = host_of[pop.report_to]
        p = _profile(s, host)
        add(host, mean_cost_s(p, f"{aead}.decrypt", pop.frame_bytes()), t.frames, pop.count)
        sessions = pop.count * (1 + (duration_s / interval if interval else 0))
        for op in (f"{c.kem}.keygen", f"{c.signature}.sign", f"{c.kem}.decaps", f"{c.signature}.verify"):
            add(host, mean_cost_s(p, op), sessions, pop.count)
        if pop.key_establishment == "gateway":
            g = _profile(s, pop.gateway)
            add(pop.gateway, mean_cost_s(g, f"{aead}.decrypt", pop.frame_bytes())
                + mean_cost_s(g, f"{aead}.encrypt", pop.frame_bytes()), t.frames, pop.count)  # fmt: skip
    slices = ticks = 0.0
    top: tuple[float, str, Any] = (-1.0, "", None)
    for i, h in linux.items():
        busy = min(core_s.get(h.name, 0.0), duration_s * min(h.cores, max(1, threads[h.name])))
        mine = busy / SLICE_S
        tick = min(jobs.get(h.name, 0.0), duration_s / TICK_S) if h.cores > 1 else 0.0
        slices, ticks = slices + mine, ticks + tick
        if mine + tick > top[0]:
            top = (mine + tick, f"deployment.hosts[{i}].cpu_speed", h.cpu_speed)
    return slices, ticks, top[1:]


def _slow_frames(s: Scenario, routes: _Routes, rho: dict[str, float], work: _RoundWork,
                 frames: list[float]) -> tuple[str, Any, str] | None:  # fmt: skip
    """(field, value, why) when some population's frames may take their period or longer from emission to
    decryption, so the vectorized engine gives up at run time (sim/telemetry.py ``_within_period``) and
    ``run.engine: auto`` runs the event model; None when none may. ``frames``: each population's frames in the
    whole run (the slowest of them decides). A frame's time (``_frame_parts``): its encryption, on each hop its
    serialisation, latency and jitter (exponential: the slowest of n frames draws about ln n means; ln n + 3, beyond
    which 5 % of runs draw one), a lost transmission's resends (2 latencies and a serialisation each, as many as the
    unluckiest of n frames meets, again with ln n + 3), the wait when every device crossing a link or decrypting on
    a host sends at once (a session burst ends for all of them together), FL messages ahead of it on a link
    (transport fifo: the whole message; fair: a window of segments), the session storm's messages with the frames a
    link cannot pass while they come, FL jobs and the storm's handshakes on its host's cores (processor sharing:
    stretched by them; fifo: behind them), then the gateway's and the pod's host's work. A link or host that cannot
    keep up (offered load at or above 1) makes the wait grow without bound. Checked against runs of ward-200 with
    one gateway uplink's latency, jitter, loss or bandwidth, or the hosts' cpu_speed, changed (horizon 60 s)."""
    c, fl = s.workload.crypto, s.workload.fl
    aead = catalogue.get(c.aead)
    host_of = _host_of(s)
    transport = s.deployment.network.transport
    sig = catalogue.get(c.signature)
    msg = RECORD_HEADER_BYTES + fl.header_bytes + fl.model_bytes + sig.signature_max_bytes
    if transport.sharing == "fair":
        msg = min(msg, transport.window_segments * s.run.segment_bytes)
    agg = s.pods("aggregator")[0]
    ctx = _FrameContext(routes, rho, work, msg)
    for pod in s.pods("client") + s.pods("worker"):
        for link in routes.path(agg.host, pod.host):
            ctx.fl_links[id(link)] = ctx.fl_links.get(id(link), 0) + 1
    kem = catalogue.get(c.kem)
    hello = HELLO_BYTES + kem.ciphertext_bytes + sig.signature_bytes + sig.public_key_bytes  # toward the pod
    answer = kem.public_key_bytes + sig.signature_bytes + sig.public_key_bytes  # toward the device
    session_ops = (f"{c.kem}.keygen", f"{c.signature}.sign", f"{c.kem}.decaps", f"{c.signature}.verify")
    for pop in s.workload.devices:
        if pop.count:
            wire = RECORD_HEADER_BYTES + pop.frame_bytes() + aead.aead_overhead_bytes
            host = host_of[pop.report_to]
            for link in routes.path(pop.gateway, host):
                ctx.burst_bytes[id(link)] = ctx.burst_bytes.get(id(link), 0.0) + pop.count * wire
                up, down = ctx.storm_bytes.get(id(link), (0.0, 0.0))
                ctx.storm_bytes[id(link)] = (up + pop.count * hello, down + pop.count * answer)
            p = _profile(s, host)
            dec = mean_cost_s(p, f"{c.aead}.decrypt", pop.frame_bytes())
            ctx.burst_core_s[host] = ctx.burst_core_s.get(host, 0.0) + pop.count * dec
            session_s = sum(mean_cost_s(p, op) for op in session_ops) / _cores(s, host)
            ctx.storm_s[host] = ctx.storm_s.get(host, 0.0) + pop.count * session_s
            ctx.devices[host] = ctx.devices.get(host, 0) + pop.count
    for i, (pop, n) in enumerate(zip(s.workload.devices, frames, strict=True)):
        if not pop.count or n <= 0:
            continue
        parts = _frame_parts(s, i, pop, n, ctx)
        total = sum(p[0] for p in parts)
        if total >= pop.period_s():
            top = max(parts, key=lambda p: p[0])
            took = "may wait without bound" if math.isinf(total) else f"may take ~{duration(total)}"
            return top[1], top[2], f"{pop.name}'s frames {took} (period {pop.period_s():g} s)"
    return None


@dataclass
class _FrameContext:
    routes: _Routes
    rho: dict[str, float]
    work: _RoundWork
    fl_msg_bytes: float  # what of an FL message a frame may wait behind on a link
    fl_links: dict[int, int] = field(default_factory=dict)  # link -> FL messages that may cross it at once
    burst_bytes: dict[int, float] = field(default_factory=dict)  # link -> one frame of every device crossing it
    burst_core_s: dict[str, float] = field(default_factory=dict)  # host -> one decryption of every device
    # the session storm (every device's handshake in its first period): its messages toward the pods on each link,
    # its work on each host's cores (seconds, all cores), the devices it serves
    storm_bytes: dict[int, tuple[float, float]] = field(default_factory=dict)  # (toward the pods, back)
    storm_s: dict[str, float] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)


def _frame_parts(s: Scenario, i: int, pop: DevicePopulation, n: float, ctx: _FrameContext
                 ) -> list[tuple[float, str, Any]]:  # fmt: skip
    """(seconds, field, value): the parts of the slowest of ``n`` frames' emission-to-decryption time
    (``_slow_frames``); inf where a link or host cannot keep up."""
    c = s.workload.crypto
    aead = catalogue.get(c.aead)
    payload = pop.frame_bytes()
    wire = RECORD_HEADER_BYTES + payload + aead.aead_overhead_bytes
    host = _host_of(s)[pop.report_to]
    me = f"workload.devices[{i}]"
    parts = [(mean_cost_s(s.device_profile(pop), f"{c.aead}.encrypt", payload), f"{me}.frame_period_s", pop.period_s())]
    index = {id(x): j for j, x in enumerate(s.deployment.network.links)}
    hops: list[tuple[LinkParams, str]] = [(pop.access_link, f"{me}.access_link")]
    hops += [(x, f"deployment.network.links[{index.get(id(x), 0)}]") for x in ctx.routes.path(pop.gateway, host)]
    jitters = []
    for link, name in hops:
        bw, latency, jitter, loss = link.resolved()
        ser = wire * 8 / bw
        shared = id(link) in ctx.burst_bytes  # the access link is the device's own
        wait = ctx.burst_bytes[id(link)] * 8 / bw if shared else ser
        if shared and ctx.routes.offered_bps(s, link) >= bw:
            wait = math.inf
        wait += ctx.fl_links.get(id(link), 0) * ctx.fl_msg_bytes * 8 / bw
        # the session storm: its messages come over a period, or as long as the host or the answers back take;
        # with the frames of sessions already held (half of them on average) the link may fall behind meanwhile
        up_s, down_s = (x * 8 / bw for x in ctx.storm_bytes.get(id(link), (0.0, 0.0)))
        spread_s = max(pop.period_s(), ctx.storm_s.get(host, 0.0), down_s)
        rho = ctx.routes.offered_bps(s, link) / bw if shared else 0.0
        wait += 0.5 * max(0.0, up_s + rho * spread_s - spread_s)
        # a lost frame is sent again 2 latencies and a serialisation later: as often as the unluckiest of n meets
        tries = min(math.ceil((math.log(n) + 3) / -math.log(loss)), 1000) if loss > 0 else 0
        parts += [(wait + tries * ser, f"{name}.bandwidth_bps", bw),
                  (latency * (1 + 2 * tries), f"{name}.latency_s", latency)]  # fmt: skip
        jitters.append((jitter, f"{name}.jitter_s"))
    worst = max(jitters)  # the slowest of n exponential draws: ~ln n means, beyond ln n + 3 in 5 % of runs
    parts.append((sum(j for j, _ in jitters) + worst[0] * (math.log(max(n, 1.0)) + 2), worst[1], worst[0]))
    hosts = {h.name: (j, h) for j, h in enumerate(s.deployment.hosts)}
    if pop.key_establishment == "gateway" and pop.gateway != host:
        g, (j, gw) = _profile(s, pop.gateway), hosts[pop.gateway]
        cost_s = mean_cost_s(g, f"{c.aead}.decrypt", payload) + mean_cost_s(g, f"{c.aead}.encrypt", payload)
        parts.append((cost_s, f"deployment.hosts[{j}].cpu_speed", gw.cpu_speed))
    j, h = hosts[host]
    speed = (f"deployment.hosts[{j}].cpu_speed", h.cpu_speed)
    dec = mean_cost_s(_profile(s, host), f"{c.aead}.decrypt", payload)
    fl_jobs = sum(1 for p in s.deployment.pods if p.host == host and p.role != "worker")
    # the storm's handshakes on the cores at once: all of them when it outlasts the period they arrive over
    storm_jobs = ctx.devices.get(host, 0) * min(1.0, ctx.storm_s.get(host, 0.0) / pop.period_s())
    if h.cpu_sharing == "fifo":  # behind the FL jobs when they hold every core
        storm = ctx.storm_s.get(host, 0.0) * min(1.0, ctx.storm_s.get(host, 0.0) / pop.period_s())
        parts.append((dec + storm + (ctx.work.by_host.get(host, 0.0) if fl_jobs >= h.cores else 0.0), *speed))
    else:
        parts.append((dec * max(1.0, (fl_jobs + storm_jobs + 1) / h.cores), *speed))
    parts.append((math.inf if ctx.rho.get(host, 0.0) >= 1 else ctx.burst_core_s.get(host, 0.0) / h.cores, *speed))
    return parts


# --- the network, without one node per device ---------------------------------------------------------


EXACT_ROUTES_MAX_NODES = 200  # beyond, paths follow the shortest-path tree from the aggregator's host


class _Routes:
    """Paths between hosts and nodes by the model's routing rule (devices excluded: the graph stays small
    however many devices), and the telemetry each link carries. On large networks a path is the one
    through the shortest-path tree of the aggregator's host: one search, not one per pair (an estimate
    needs hop counts and bottlenecks, and the tree path is never shorter)."""

    def __init__(self, s: Scenario):
        import networkx as nx  # with the first estimate, not with sim.energy's import (a twin node's)

        self.g = nx.Graph()
        self.g.add_nodes_from(h.name for h in s.deployment.hosts)
        for link in s.deployment.network.links:
            self.g.add_edge(link.a, link.b, params=link)
        self.root = s.pods("aggregator")[0].host
        self.tree: dict[str, list[str]] | None = None
        self.cache: dict[tuple[str, str], list[LinkParams]] = {}
        self._offered: dict[int, float] | None = None

    def path(self, a: str, b: str) -> list[LinkParams]:
        """The links from ``a`` to ``b`` (none when they are one node or not connected)."""
        if (a, b) not in self.cache:
            self.cache[a, b] = [self.g.edges[u, v]["params"] for u, v in itertools.pairwise(self._nodes(a, b))]
        return self.cache[a, b]

    def _nodes(self, a: str, b: str) -> list[str]:
        if a == b or a not in self.g or b not in self.g:
            return [a]
        import networkx as nx

        if self.g.number_of_nodes() <= EXACT_ROUTES_MAX_NODES:
            try:
                return lowest_latency_path(self.g, a, b)
            except nx.NetworkXNoPath:
                return [a]
        if self.tree is None:
            self.tree = nx.single_source_dijkstra_path(self.g, self.root, weight=lambda u, v, d: route_weight(d))
        pa, pb = self.tree.get(a), self.tree.get(b)
        if pa is None or pb is None:
            return [a]
        shared = next((i for i, (x, y) in enumerate(zip(pa, pb, strict=False)) if x != y), min(len(pa), len(pb)))
        return pa[shared - 1 :][::-1] + pb[shared:]

    def between(self, a: str, b: str) -> int:
        return len(self.path(a, b))

    def offered_bps(self, s: Scenario, link: LinkParams) -> float:
        """Telemetry bits per second every population sends across ``link``."""
        if self._offered is None:
            host_of = _host_of(s)
            self._offered = {}
            for pop in s.workload.devices:
                bps = pop.count * (RECORD_HEADER_BYTES + pop.frame_bytes() + 16) * 8 / pop.period_s()
                for hop in self.path(pop.gateway, host_of[pop.report_to]):
                    self._offered[id(hop)] = self._offered.get(id(hop), 0.0) + bps
        return self._offered.get(id(link), 0.0)


def _min_bandwidth_bps(s: Scenario) -> float:
    """The slowest link's rate, or the sending kernel's where it is slower (``Transport.host_rate_bps`` at the
    slowest host's ``cpu_speed``, as sim/network.py scales it)."""
    speed = min(h.cpu_speed for h in s.deployment.hosts)
    kernel = s.deployment.network.transport.host_rate_bps * speed or math.inf
    return min(kernel, *(link.resolved()[0] for link in s.deployment.network.links))


def _max_latency_s(s: Scenario) -> float:
    return max(link.resolved()[1] + link.resolved()[2] for link in s.deployment.network.links)


def _profile(s: Scenario, host: str) -> Profile | None:
    try:
        return s.host_profile(host)
    except KeyError:  # validated without profiles (e.g. from the app's editor): costs unknown, taken as 0
        return None


def _cores(s: Scenario, host: str) -> int:
    return _lookups(s)[0].get(host, 1)


def _host_of(s: Scenario) -> dict[str, str]:
    return _lookups(s)[1]


_last: tuple[Scenario, dict[str, int], dict[str, str]] | None = None  # the last scenario's lookups


def _lookups(s: Scenario) -> tuple[dict[str, int], dict[str, str]]:
    """{host: cores} and {pod: host}, built once per scenario (estimates ask per pod and per device
    population: a scan each time would be quadratic in a 10,000-pod scenario)."""
    global _last
    if _last is None or _last[0] is not s:
        _last = (s, {h.name: h.cores for h in s.deployment.hosts}, {p.name: p.host for p in s.deployment.pods})
    return _last[1], _last[2]


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f}"


def duration(seconds: float) -> str:
    """A time for people: 45 s, 12 min, 3.5 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- the hardware twin (local backend): real processes, threads and arrays on this machine ----------------

TWIN_PROCESS_BYTES = 80e6  # one node process's own memory (~200 MB resident, half of it shared libraries)
TWIN_DEVICE_BYTES = 256e3  # one emulated device: a thread, its session and its frame buffers
TWIN_SAMPLE_BYTES = 30 * 4 * 3  # one training sample: 30 float32 features, with the batch copies training makes
MAX_TWIN_DEVICES = 5_000  # a thread and a real handshake each; past this the emulator measures itself


def twin_memory_budget_gib() -> float:
    """The twin's default budget: half of this machine's memory (its processes are real, and share it)."""
    memory = machine_memory_bytes()
    return 4.0 if memory is None else max(1.0, memory / GIB / 2)


def twin_problem(s: Scenario, max_memory_gib: float) -> str | None:
    """Why the local twin cannot run ``s`` here (one line naming the field), or None."""
    w = s.workload
    devices = sum(p.count for p in w.devices)
    if devices > MAX_TWIN_DEVICES:
        i, pop = max(enumerate(w.devices), key=lambda ip: ip[1].count)
        msg = f"the twin runs a thread and a secure session per device: at most {MAX_TWIN_DEVICES:,} in all"
        return field_error(s.path, f"workload.devices[{i}].count", pop.count, f"{msg} (the scenario has {devices:,})")
    need, field_name, value = _twin_bytes(s)
    if need > max_memory_gib * GIB:
        why = f"the twin needs ~{need / GIB:.1f} GiB on this machine, over the {max_memory_gib:g} GiB budget "
        return field_error(s.path, field_name, value, why + f"(--max-memory-gib); lower {field_name}")
    return None


def twin_warning(s: Scenario, rounds: int) -> str | None:
    """A one-line warning when the twin will run for long: ``rounds`` rounds at the simulated round length
    (a real round takes at least that: its costs come from the same profiles)."""
    routes = _Routes(s)
    max_hops = max((routes.between(s.pods("aggregator")[0].host, p.host) for p in s.pods("client")), default=1)
    sig = catalogue.get(s.workload.crypto.signature)
    msg = RECORD_HEADER_BYTES + s.workload.fl.header_bytes + s.workload.fl.model_bytes + sig.signature_max_bytes
    duration_s = rounds * _round_s(s, msg, max_hops or 1)
    if duration_s <= WARN_WALL_S * 10:
        return None
    why = f"the twin will run for ~{duration(duration_s)} of real time; lower the rounds (--rounds)"
    return field_error(s.path, "workload.fl.rounds", rounds, why)


def _twin_bytes(s: Scenario) -> tuple[float, str, Any]:
    """(bytes, the field driving them, its value): every node process with its model copies and data."""
    fl = s.workload.fl
    model = fl.model_parameters * 4  # the twin trains float32
    workers = s.crypto_workers() if s.workload.processing.mode == "concurrent" and s.pods("worker") else 0
    processes = 1 + fl.clients + workers + (1 if s.workload.devices else 0)
    parts = {
        "workload.fl.model_parameters": model * (2 * fl.clients + 4) + model * 6 * fl.clients,
        "workload.fl.samples_per_client": fl.samples_per_client * TWIN_SAMPLE_BYTES * fl.clients,
        "workload.fl.clients": processes * TWIN_PROCESS_BYTES,
        "workload.devices": sum(p.count for p in s.workload.devices) * TWIN_DEVICE_BYTES,
    }
    values = {"workload.fl.model_parameters": fl.model_parameters, "workload.fl.samples_per_client":
              fl.samples_per_client, "workload.fl.clients": fl.clients,
              "workload.devices": sum(p.count for p in s.workload.devices)}  # fmt: skip
    top = max(parts, key=lambda k: parts[k])
    return sum(parts.values()), top, values[top]
