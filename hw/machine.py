"""How busy this machine was while the twin measured: so a noisy measurement is told from a wrong model.

``LoadMonitor`` reads /proc/stat and /proc/loadavg at the start and the end of a run, and the CPU time this
process and its waited-for children (the twin's nodes) used in between (``os.times``). What the machine
spent beyond that is *foreign* CPU: other processes competing for the cores the twin measures on. Steal is
CPU time the hypervisor gave to other guests. On the netns backend the kernel's softirq time counts as the
twin's own: its fabric's packet work runs on no process of the twin (``LoadMonitor(softirq_is_own=True)``).
A run is *quiet* when foreign work averaged under
``QUIET_FOREIGN_CORES`` cores and steal under ``QUIET_STEAL``; one busy neighbour process (a whole core)
moved our fidelity figure from -17 % to -50 %. Neither shows a shared host's cores changing speed, so the
monitor also runs ``hw.speed.SpeedProbe``: a quiet run's cores were steady (probe p90 / p10 at most
``STEADY_SPREAD``) and, where the profile recorded the probe when it was calibrated, within
``SPEED_TOLERANCE`` of that speed.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from hw.schedtrace import SchedTrace, keep, waits
from hw.speed import SpeedProbe, stat_fields
from sim.contract import MachineLoad

log = logging.getLogger(__name__)

QUIET_FOREIGN_CORES = 0.15
QUIET_STEAL = 0.05
STEADY_SPREAD = 1.25  # the two speeds seen here differ 1.65x; one speed's probes spread ~1.1x
SPEED_TOLERANCE = 0.10
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_jiffies() -> tuple[float, float, float, float]:
    """(busy, steal, total, softirq) jiffies of all CPUs since boot; zeros where /proc is missing."""
    fields = stat_fields("cpu")
    if not fields or len(fields) < 4:
        return (0.0, 0.0, 0.0, 0.0)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0.0
    softirq = fields[6] if len(fields) > 6 else 0.0
    total = sum(fields[:8])  # guest time is already inside user/nice
    return (total - idle - steal, steal, total, softirq)


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


RAPL_ROOT = Path("/sys/class/powercap")  # Linux powercap: intel-rapl:N is CPU package N (intel-rapl:N:M its parts)


def rapl_packages(root: Path = RAPL_ROOT) -> dict[str, tuple[int, int]]:
    """Each readable CPU package counter: {domain: (energy_uj, max_energy_range_uj)}. Unreadable ones (no
    powercap, a VM, or energy_uj readable by root only since Linux 5.10) are left out."""
    out = {}
    for d in sorted(root.glob("intel-rapl:*")):
        if d.name.count(":") != 1:  # a package's sub-domain (core, uncore, dram): inside the package's count
            continue
        try:
            out[d.name] = (int((d / "energy_uj").read_text()), int((d / "max_energy_range_uj").read_text()))
        except (OSError, ValueError):
            continue
    return out


def rapl_energy_j(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float | None:
    """Joules the packages used between two readings (a counter that wrapped around counts on from zero)."""
    common = before.keys() & after.keys()
    if not common:
        return None
    total_uj = 0
    for name in common:
        (e0, _), (e1, span) = before[name], after[name]
        total_uj += e1 - e0 if e1 >= e0 else e1 + span - e0
    return total_uj / 1e6


class LoadMonitor:
    """``start()`` before the run, ``stop()`` after its children were waited for. ``calibrated_probe_us``:
    the speed probe's time when the run's profile was calibrated (``platform.speed_probe_us``: the state it priced
    at, hw/speed.py ``usual_us``), if known."""

    def __init__(self, calibrated_probe_us: float | None = None, softirq_is_own: bool = False):
        """``softirq_is_own`` (the netns backend): the kernel's softirq time is the twin's own network work --
        its fabric's veth, bridge, tbf and TCP processing, which runs on no process of the twin (up to a core
        at a gigabit here) -- not a neighbour's."""
        self.calibrated_probe_us = calibrated_probe_us
        self.softirq_is_own = softirq_is_own

    def start(self) -> LoadMonitor:
        self.wall0, self.own0, self.cpu0 = time.monotonic(), _own_cpu_s(), _cpu_jiffies()
        self.load0 = _loadavg()
        self.rapl0 = rapl_packages()
        self.trace = SchedTrace.start()  # first: it sees the probe's threads start, so they count as the runner's
        self.probe = SpeedProbe().start()
        return self

    def stop(self, window: tuple[float, float] | None = None, nodes: dict[str, int] | None = None,
             allowed: dict[str, set[int]] | None = None, keep_trace: Path | None = None,
             keep_speed: tuple[Path, float] | None = None) -> MachineLoad:  # fmt: skip
        """``window``: the measured part of the run (monotonic seconds), which the speed probe and the scheduler
        trace summarise; ``nodes``: the twin's processes {node: pid}, whose threads' waits for a core count;
        ``allowed``: the CPUs a node is pinned to, where it is; ``keep_trace``: a file to keep the scheduler's
        events in, gzipped, for a later analysis (``hw.schedtrace.read_kept``); ``keep_speed``: (file, the
        nodes' clock origin) to keep the speed probe's samples in, for the fit (``hw.speed.read_kept``)."""
        speed = self.probe.stop(window)
        if keep_speed is not None:
            try:
                self.probe.keep(*keep_speed)
            except OSError as exc:  # only for a later fit: the run's results come first
                log.warning("could not keep the speed probe's samples in %s: %s", keep_speed[0], exc)
        sched = None
        if self.trace is not None:
            text = self.trace.stop()
            if text is not None and keep_trace is not None:
                try:
                    keep(text, window, nodes or {}, keep_trace)
                except OSError as exc:  # only for a later analysis: the run's results come first
                    log.warning("could not keep the scheduler trace in %s: %s", keep_trace, exc)
            if text is not None and window is not None and nodes:
                sched = waits(text, {**nodes, "runner": os.getpid()}, window, allowed)
        wall_s = max(1e-9, time.monotonic() - self.wall0)
        busy1, steal1, total1, softirq1 = _cpu_jiffies()
        busy0, steal0, total0, softirq0 = self.cpu0
        busy_s = (busy1 - busy0) / _HZ
        own_s = _own_cpu_s() - self.own0
        kernel_net_s = (softirq1 - softirq0) / _HZ if self.softirq_is_own else 0.0
        foreign = max(0.0, busy_s - own_s - kernel_net_s) / wall_s
        steal = (steal1 - steal0) / (total1 - total0) if total1 > total0 else 0.0
        load = MachineLoad(
            cores=os.cpu_count() or 1, loadavg_1m_start=self.load0, loadavg_1m_end=_loadavg(),
            twin_cpu_cores=(own_s + kernel_net_s) / wall_s, foreign_cpu_cores=foreign, steal_fraction=steal,
            quiet=False,
            package_energy_j=rapl_energy_j(self.rapl0, rapl_packages()), cpu_speed=speed,
            calibrated_probe_us=self.calibrated_probe_us, sched=sched,
        )  # fmt: skip
        unsteady = is_unsteady(load)
        busy = foreign >= QUIET_FOREIGN_CORES or steal >= QUIET_STEAL
        return load.model_copy(update={"unsteady": unsteady, "busy": busy, "quiet": not (busy or unsteady)})


def calibrated_unsteady(spread: float | None) -> bool:
    """A calibration's cores changed speed while it measured: its speed probe's p90 / p10 (``platform.
    speed_probe_spread``) over ``STEADY_SPREAD``, the bound a twin run is called unsteady by (unknown: no)."""
    return spread is not None and spread > STEADY_SPREAD


def is_unsteady(load: MachineLoad) -> bool:
    """The cores changed speed under the run, or ran at another speed than when calibrated (where known)."""
    ratio = load.speed_vs_calibration
    varied = load.cpu_speed is not None and load.cpu_speed.spread > STEADY_SPREAD
    return varied or (ratio is not None and abs(ratio - 1) > SPEED_TOLERANCE)
