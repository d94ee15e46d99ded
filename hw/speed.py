"""How fast this machine's cores ran: a fixed reference kernel timed on every core, beside a measurement.

On a shared host (a VM whose physical cores other guests also use) the same code runs at speeds that differ by up
to 1.65x within seconds, and neither the load average nor steal shows it. Measured on our CI machine class
(2026-11-29, a probe as below pinned to each vCPU, every 100 ms, beside twin runs and on an idle machine):
SHAKE-256 over 64 KiB took either ~183 µs or ~305 µs of CPU time, switching every few seconds and per vCPU,
whatever our own processes did; a 10-round twin run lasts a fraction of a second, so it sees one state or the
other, and identical runs' median round latency ranged 17–28 ms. A profile calibrated in one state and a run
measured in the other differ by that much before any model error. During a run the probe also feels the
twin's own processes on its core (cache pressure): it flags a run, it is not a calibration.

``SpeedProbe`` runs one thread per core (pinned with ``sched_setaffinity``) that every ``INTERVAL_S`` hashes
``PROBE_BYTES`` with SHAKE-256 twice and keeps the smaller *thread CPU time* (``time.thread_time_ns``: time
slices given to other threads do not count, a slower core does). hashlib releases the GIL while hashing, so
the threads share a process with the orchestrator without waiting on it. Cost: ~0.3 % of each core.
The samples summarise into a ``CpuSpeed`` (sim/contract.py): median, 10th and 90th percentile probe time, over
the part of the run that was measured (a twin run: its FL rounds, not the nodes' start-up).
``pqtwin calibrate`` records the probe time of the state it priced at in the profile (``platform.speed_probe_us``:
``usual_us``, the fast state, about the median on a steady host); a run compares its own median with it.

A twin run also keeps every sample (``keep``: time on the nodes' clock, core, probe µs, and how busy the core was;
``read_kept``), so a fit can tell the spans measured at the calibration's speed from those measured while a core
ran slower (``slow_spans``): a run's median probe cannot, when the host changed state halfway through it.

An *idle* vCPU reads slow here: ``python bench/speed_states.py`` (2026-12-01 00:48, load 0.75) found 81-91 % of
a probe's samples on an otherwise idle core 1.25x the fastest median or slower, 11-30 % with a spinning process on
the same core, 9-25 % back to back. A probe on a core the twin left idle says nothing about the twin's work on the
other one. So each sample records its core's busy share over the interval before it (``/proc/stat``), and only
samples of cores busy at least ``BUSY_MIN`` of it count (``counted``), wherever the probe's samples are judged:
a run's summary, ``slow_spans``, ``slow_near`` and ``fast_core``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from pathlib import Path

import numpy as np

from sim.contract import CpuSpeed, RunLayout
from sim.errors import UserError
from sim.loading import read_text

PROBE_BYTES = 16 << 10
INTERVAL_S = 0.05
_DATA = bytes(range(256)) * (PROBE_BYTES // 256)


def probe_us() -> float:
    """One probe: the CPU time of hashing ``PROBE_BYTES``, best of two (µs)."""
    best = float("inf")
    for _ in range(2):
        t0 = time.thread_time_ns()
        hashlib.shake_256(_DATA).digest(32)
        best = min(best, time.thread_time_ns() - t0)
    return best / 1e3


class SpeedProbe:
    """``start()`` before a measurement, ``stop()`` after it: the probe times of every core in between."""

    def __init__(self, interval_s: float = INTERVAL_S, cpus: set[int] | None = None):
        self.interval_s = interval_s
        self.cpus = sorted(cpus if cpus is not None else _allowed_cpus())
        self.samples: list[Sample] = []  # (time.monotonic(), core, probe µs, the core's busy share before it)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> SpeedProbe:
        for cpu in self.cpus:
            t = threading.Thread(target=self._run, args=(cpu,), name=f"speed-probe-{cpu}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self, cpu: int) -> None:
        with contextlib.suppress(AttributeError, OSError):  # no affinity: the probe samples whichever core it gets
            os.sched_setaffinity(threading.get_native_id(), {cpu})
        last = _core_jiffies(cpu)
        while not self._stop.wait(self.interval_s):
            now = _core_jiffies(cpu)  # before the probe: its own CPU must not make the core look busy
            busy = (now[0] - last[0]) / (now[1] - last[1]) if last and now and now[1] > last[1] else math.nan
            last = now
            self.samples.append((time.monotonic(), cpu, probe_us(), busy))  # list.append is atomic under the GIL

    def stop(self, window: tuple[float, float] | None = None) -> CpuSpeed | None:
        """The summary of the counted probes (``counted``; every probe where fewer than ``MIN_IN_WINDOW`` count:
        a machine too idle to tell) taken inside ``window`` (monotonic seconds; None: all of them), or of all
        when the window holds fewer than ``MIN_IN_WINDOW``; None when no probe ran."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1.0)
        pool = self._pool()
        inside = [x[2] for x in pool if window is None or window[0] <= x[0] <= window[1]]
        return summarise(inside if len(inside) >= MIN_IN_WINDOW else [x[2] for x in pool])

    def slow_near(self, t0: float, t1: float, cpu: int | None = None) -> float | None:
        """The share of the samples taken from ``NEAR_S`` before ``t0`` to ``t1`` (monotonic seconds), on ``cpu``
        or on every core, that ran ``SLOW`` x the usual probe time or longer (the usual: ``usual_us`` of every
        sample so far, the host's fast state unless it spent nine tenths of the time slow); None before
        ``MIN_IN_WINDOW`` samples, or with none near."""
        usual = self._usual()
        if usual is None:
            return None
        near = [x[2] for x in counted(list(self.samples)) if t0 - NEAR_S <= x[0] <= t1 and cpu in (None, x[1])]
        return sum(us >= SLOW * usual for us in near) / len(near) if near else None

    def _usual(self) -> float | None:
        """While probing: ``usual_us`` of the counted samples so far (None before ``MIN_IN_WINDOW``)."""
        times = counted(list(self.samples))  # a copy: the probe's threads append meanwhile
        return usual_us([x[2] for x in times]) if len(times) >= MIN_IN_WINDOW else None

    def usual_after_stop(self) -> float | None:
        """After ``stop``: ``usual_us`` of the samples ``stop`` summarises (all of them: a calibration has no
        window); None when no probe ran."""
        return usual_us([x[2] for x in self._pool()])

    def _pool(self) -> list[Sample]:
        """The counted samples, or every sample where fewer than ``MIN_IN_WINDOW`` count (a machine too idle)."""
        pool = counted(self.samples)
        return pool if len(pool) >= MIN_IN_WINDOW else list(self.samples)

    def fast_core(self, timeout_s: float) -> int | None:
        """A core whose latest sample (within two intervals) is at the usual speed, the fastest such, waiting up
        to ``timeout_s`` for one: this machine's vCPUs change speed one by one, for seconds, so a measurement
        pinned there is taken at the usual speed. None: no samples yet, or none came to that speed in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            now, usual = time.monotonic(), self._usual()
            if usual is None:
                return None
            latest: dict[int, float] = {}
            for t, c, us, _ in list(self.samples):  # any core's: an idle one is a candidate (it will be busy)
                if t >= now - 2 * self.interval_s:
                    latest[c] = us
            fast = {c: us for c, us in latest.items() if us < SLOW * usual}
            if fast:
                return min(fast, key=lambda c: fast[c])
            if now >= deadline:
                return None
            time.sleep(min(self.interval_s, deadline - now))

    def keep(self, path: Path, epoch: float) -> None:
        """Write every sample (after ``stop``) as CSV: seconds since ``epoch`` (the nodes' clock origin: the spans'
        time), the core, the probe's µs, the core's busy share before it (nan: unknown)."""
        rows = "".join(f"{t - epoch:.6f},{cpu},{us:.3f},{busy:.3f}\n" for t, cpu, us, busy in sorted(self.samples))
        path.write_text(KEPT_HEADER + rows, encoding="utf-8")


MIN_IN_WINDOW = 4


def summarise(samples: list[float]) -> CpuSpeed | None:
    if not samples:
        return None
    p10, p50, p90 = (float(x) for x in np.percentile(samples, [10, 50, 90]))
    return CpuSpeed(probe_us_p10=p10, probe_us_p50=p50, probe_us_p90=p90, samples=len(samples))


def usual_us(times: list[float]) -> float | None:
    """The probe time of the host's usual state: the median of the samples under ``SLOW`` x their 10th percentile.
    This machine class's vCPUs run in two states ~1.5x apart and may spend most of an hour in the slow one (52-93 %
    of 15 s stretches, 2026-12-01), so neither the median of all samples nor their 25th percentile is one state:
    the median of a calibration's samples was 58-62 µs where its fast state took ~41 and its slow one 60-68. The
    fast state is the one ``fast_core`` prices at and the one a profile records (``platform.speed_probe_us``): a
    reference between the two states made every run "at 0.85-1.39x its calibrated speed" and let the fit turn the slow
    state into overheads (a fitted training factor of 1.43, the two states' ratio, 2026-12-01 12:51). On a steady
    host nearly every sample lies under the bound, and this is about their median. It is the fast state's while at
    least a tenth of the samples caught it. None: no sample (or none under the bound: a 10th percentile of 0)."""
    x = np.asarray(times, dtype=float)
    under = x[x < SLOW * np.percentile(x, 10)] if x.size else x
    return float(np.median(under)) if under.size else None


def slow_state_us(samples: np.ndarray, calibrated_us: float) -> float | None:
    """The median probe time of a run's counted samples (``read_kept`` rows) at ``SLOW`` x the calibrated probe or
    slower: how slow the cores were while ``slow_spans`` calls a span slow (None: fewer than ``MIN_IN_WINDOW`` such
    samples, too few to say, e.g. a steady host's outliers)."""
    samples = _busy(samples)
    slow = samples[samples[:, 2] >= SLOW * calibrated_us, 2]
    return float(np.median(slow)) if slow.size >= MIN_IN_WINDOW else None


def _allowed_cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return {0}


Sample = tuple[float, int, float, float]
BUSY_MIN = 0.5  # a sample counts if its core was busy at least this share of the interval before it
KEPT_FILE = RunLayout.SPEED_PROBE  # in a twin run's directory
MAX_KEPT_BYTES = 256 << 20  # a run's kept samples: ~40 B each, 20 a second a core (an hour on 2 cores: ~6 MB)
KEPT_HEADER = "t_s,cpu,probe_us,busy\n"
_KEPT_HEADER_V1 = "t_s,cpu,probe_us\n"  # runs of 2026-12-01 00:00-01:00, before the busy share
NEAR_S = 1.5 * INTERVAL_S  # a span's speed: the samples this close to it, on every core (each core has one or two)
SLOW = 1.25  # a probe this much slower than calibrated is the host's other state (the two differ 1.5-1.65x)


def read_kept(path: Path) -> np.ndarray | None:
    """A run's kept samples as an (n, 4) array (t_s, cpu, probe_us, busy share; NaN: unknown), sorted by time;
    None if it kept none."""
    try:
        text = read_text(path, MAX_KEPT_BYTES)
    except UserError:  # missing, not a regular file, not text: not kept (it only refines a fit or a compare)
        return None
    lines = text.splitlines()[1:]
    if not text.startswith((KEPT_HEADER, _KEPT_HEADER_V1)) or not lines:
        return None
    try:
        rows = np.loadtxt(lines, delimiter=",", ndmin=2)
    except ValueError:
        return None
    if not rows.size or rows.shape[1] not in (3, 4):
        return None
    if rows.shape[1] == 3:
        rows = np.column_stack((rows, np.full(len(rows), np.nan)))
    return rows[np.argsort(rows[:, 0], kind="stable")]


def counted(samples: list[Sample]) -> list[Sample]:
    """The samples of cores busy at least ``BUSY_MIN`` before them, or whose busy share is unknown (module doc)."""
    return [x for x in samples if not x[3] < BUSY_MIN]


def stat_fields(name: str) -> list[float] | None:
    """The counters of /proc/stat's line ``name`` ("cpu": all CPUs; "cpu0": one), None where unreadable."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            for line in f:
                if line.startswith(name + " "):
                    return [float(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        return None
    return None


def _core_jiffies(cpu: int) -> tuple[float, float] | None:
    """(busy, total) jiffies of one CPU since boot, None where unreadable."""
    return jiffies(f"cpu{cpu}")


def jiffies(name: str) -> tuple[float, float] | None:
    """(busy, total) jiffies since boot of /proc/stat's line ``name`` ("cpu": all CPUs), None where unreadable."""
    v = stat_fields(name)
    if v is None or len(v) < 8:
        return None
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle - v[7], sum(v[:8]))  # steal is neither ours nor idle


def run_slow_flags(run_dir: Path, start_s: np.ndarray, end_s: np.ndarray, calibrated_us: float | None
                   ) -> np.ndarray | None:  # fmt: skip
    """``slow_spans`` for spans of the twin run in ``run_dir``, from the samples it kept; None where it kept none
    or the calibrated probe is unknown."""
    samples = read_kept(run_dir / KEPT_FILE)
    if samples is None or not calibrated_us:
        return None
    return slow_spans(start_s, end_s, samples, float(calibrated_us))


def _busy(samples: np.ndarray) -> np.ndarray:
    """``read_kept`` rows that count (``counted``: their core busy at least ``BUSY_MIN``, or unknown)."""
    return samples[~(samples[:, 3] < BUSY_MIN)] if samples.shape[1] > 3 else samples


def slow_spans(start_s: np.ndarray, end_s: np.ndarray, samples: np.ndarray, calibrated_us: float) -> np.ndarray:
    """Per span: 1 when a busy core ran slow near it (a counted sample within ``NEAR_S`` of the span, on any core,
    ``SLOW`` times the calibrated probe or more: the span may have run on that core), 0 when every counted sample
    near it was at the calibrated speed, NaN when none was near (unknown)."""
    samples = _busy(samples)
    t, us = samples[:, 0], samples[:, 2]
    lo = np.searchsorted(t, start_s - NEAR_S, side="left")
    hi = np.searchsorted(t, end_s + NEAR_S, side="right")
    slow = np.concatenate(([0], np.cumsum(us >= SLOW * calibrated_us)))  # slow samples before each index
    out = np.where(slow[hi] - slow[lo] > 0, 1.0, 0.0)
    return np.where(hi > lo, out, np.nan)
