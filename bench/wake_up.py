"""How slow a core runs just after it idled (issue 9): the speed probe over the first milliseconds of work.

The calibration times its ops back to back, on a core that never idles; the twin's rounds are bursts of work
with gaps between them (a client waits for its model, the aggregator for the updates). On our 2-vCPU VM a
core that has idled runs its next work slower for a while: the hypervisor's, not our code's. This bench
measures that, pinned to each allowed core: a gap of ``--gaps-ms`` (sleeping; 0: spinning on probes, the
control), then ``--busy-ms`` of back-to-back probes (``hw.speed.probe_us``), each probe filed by when it started
after the gap, in windows of ``WINDOWS_S``. The gaps come in a shuffled order within each cycle for
``--seconds``, so every gap sees the host's speed states alike (the host also changes state every few seconds,
whatever we do).

It prints, per gap and window, the probe's median (µs), the median relative to the control's (the slowdown) and
the share of slow probes (``hw.speed.SLOW`` x the control's median or slower), with the host's load average
before and after: a busy neighbour makes it meaningless.

Run: python bench/wake_up.py [--gaps-ms 0 1 5 20 100] [--busy-ms 50] [--seconds 40] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.speed import SLOW, probe_us
from sim.loading import in_range, out_json

WINDOWS_S = ((0.0, 0.001), (0.001, 0.005), (0.005, 0.02), (0.02, 0.05), (0.05, 0.2), (0.2, 1.0))


def after_gap(gap_s: float, busy_s: float) -> list[tuple[float, float]]:
    """(seconds since the gap ended, probe µs) over ``busy_s`` of back-to-back probes after a gap of ``gap_s``
    (slept; 0: ``busy_s`` of probes first, so the core has not idled)."""
    if gap_s > 0:
        time.sleep(gap_s)
    else:
        end = time.perf_counter() + busy_s
        while time.perf_counter() < end:
            probe_us()
    t0, out = time.perf_counter(), []
    while (t := time.perf_counter() - t0) < busy_s:
        out.append((t, probe_us()))
    return out


def curve(samples: dict[float, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    """Per gap and window: the probes' count, median, median / the control's (gap 0, all windows) and the share
    at least ``SLOW`` x the control's median. Windows without probes are left out."""
    control = float(np.median([x for _, x in samples[0.0]]))
    rows = []
    for gap, got in samples.items():
        t, x = (np.array(v) for v in zip(*got, strict=True)) if got else (np.empty(0), np.empty(0))
        for lo, hi in WINDOWS_S:
            w = x[(t >= lo) & (t < hi)]
            if w.size:
                rows.append({"gap_s": gap, "from_s": lo, "to_s": hi, "n": int(w.size), "p50_us": float(np.median(w)),
                             "slowdown": float(np.median(w)) / control,
                             "slow_share": float(np.mean(w >= SLOW * control))})  # fmt: skip
    return rows


def measure(cpu: int, gaps_s: list[float], busy_s: float, seconds: float, rng: random.Random) -> list[dict[str, Any]]:
    """``curve`` rows of one core: every gap in a shuffled order per cycle, for ``seconds``, pinned to ``cpu``."""
    os.sched_setaffinity(0, {cpu})
    samples: dict[float, list[tuple[float, float]]] = {g: [] for g in gaps_s}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        order = list(gaps_s)
        rng.shuffle(order)
        for g in order:
            samples[g] += after_gap(g, busy_s)
    return [{"cpu": cpu, **r} for r in curve(samples)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaps-ms", type=in_range(0, 10_000, float), nargs="+", default=[0, 1, 5, 20, 100])
    ap.add_argument("--busy-ms", type=in_range(1, 10_000, float), default=50.0, help="probes after each gap")
    ap.add_argument("--seconds", type=in_range(0.01, 3600, float), default=40.0, help="per core")
    ap.add_argument("--json", type=out_json, default=None)
    args = ap.parse_args()
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("wake_up: needs sched_setaffinity (Linux)")
    gaps_s = sorted({0.0, *(g / 1e3 for g in args.gaps_ms)})  # the control always runs
    cpus, before, rng = sorted(os.sched_getaffinity(0)), os.getloadavg(), random.Random(1)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = [r for cpu in cpus for r in measure(cpu, gaps_s, args.busy_ms / 1e3, args.seconds, rng)]
    os.sched_setaffinity(0, set(cpus))
    after = os.getloadavg()
    print(f"load average before {before[0]:.2f}, after {after[0]:.2f}; slow: >= {SLOW} x the control's median")
    print(f"{'core':>4s} {'gap ms':>7s} {'window ms':>10s} {'n':>6s} {'p50 µs':>7s} {'x ctrl':>7s} {'slow':>5s}")
    for r in rows:
        window = f"{r['from_s'] * 1e3:g}-{r['to_s'] * 1e3:g}"
        print(f"{r['cpu']:4d} {r['gap_s'] * 1e3:7g} {window:>10s} {r['n']:6d} {r['p50_us']:7.1f} "
              f"{r['slowdown']:7.2f} {r['slow_share']:5.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "argv": sys.argv[1:],
                    "started": started,
                    "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "loadavg_before": before,
                    "loadavg_after": after,
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
