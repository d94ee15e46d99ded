"""How this machine's cores change speed (issue 9): the speed probe (hw/speed.py) per core, idle and busy.

The twin's fit and compare judge spans and rounds by the speed probe's samples near them (hw/speed.py
``slow_spans``); this bench shows what those samples see. Per core and per condition, ``--seconds`` of probes
(``hw.speed.probe_us``, pinned to the core), alternating the conditions ``--passes`` times, each pass starting
with the next condition, so each sees the host's states alike:

- idle: one probe every 50 ms (``hw.speed.INTERVAL_S``), the core otherwise idle, as during a twin run's gaps;
- busy: the same while a spinning process (pure Python arithmetic) holds the same core;
- back to back: probes one after another, nothing else on the core.

It prints, per core and condition, the probe's 10th/50th/90th percentile (µs) and the share of samples
``hw.speed.SLOW`` times the fastest condition's median or slower (the fit's test for "slow"). The host's load
average before and after is printed beside it: a busy neighbour makes this meaningless.

Run: python bench/speed_states.py [--seconds 3] [--passes 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.speed import INTERVAL_S, SLOW, probe_us
from sim.loading import in_range, out_json

CONDITIONS = ("idle", "busy", "back to back")


def _spin(cpu: int, stop: Any) -> None:
    os.sched_setaffinity(0, {cpu})
    x = 0
    while not stop.is_set():
        for i in range(10_000):
            x += i * i


def _samples(cpu: int, condition: str, seconds: float) -> list[float]:
    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(cpu, stop), daemon=True) if condition == "busy" else None
    if spinner:
        spinner.start()
        time.sleep(0.2)
    os.sched_setaffinity(0, {cpu})
    out, end = [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            out.append(probe_us())
            if condition != "back to back":
                time.sleep(INTERVAL_S)
    finally:
        stop.set()
        if spinner:
            spinner.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=in_range(1e-3, 3600, float), default=3.0, help="per core, condition and pass")
    ap.add_argument("--passes", type=in_range(1, 1000), default=2)
    ap.add_argument("--json", type=out_json, default=None)
    args = ap.parse_args()
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("speed_states: needs sched_setaffinity (Linux)")
    cpus = sorted(os.sched_getaffinity(0))
    before = os.getloadavg()
    got: dict[tuple[int, str], list[float]] = {(c, k): [] for c in cpus for k in CONDITIONS}
    for i in range(args.passes):
        for cpu in cpus:
            for k in CONDITIONS[i % 3 :] + CONDITIONS[: i % 3]:  # each pass starts with another condition
                got[(cpu, k)] += _samples(cpu, k, args.seconds)
    os.sched_setaffinity(0, set(cpus))
    fastest = min(float(np.median(v)) for v in got.values())
    rows = []
    print(f"load average before {before[0]:.2f}, after {os.getloadavg()[0]:.2f}; slow: >= {SLOW} x {fastest:.1f} µs")
    print(f"{'core':>4s}  {'condition':12s} {'n':>5s} {'p10 µs':>7s} {'p50 µs':>7s} {'p90 µs':>7s} {'slow':>6s}")
    for (cpu, k), v in got.items():
        a = np.array(v)
        p10, p50, p90 = np.percentile(a, [10, 50, 90])
        slow = float(np.mean(a >= SLOW * fastest))
        rows.append({"cpu": cpu, "condition": k, "n": len(a), "p10_us": p10, "p50_us": p50, "p90_us": p90,
                     "slow_share": slow})  # fmt: skip
        print(f"{cpu:4d}  {k:12s} {len(a):5d} {p10:7.1f} {p50:7.1f} {p90:7.1f} {slow:6.2f}")
    if args.json:
        args.json.write_text(json.dumps({"loadavg_before": before, "loadavg_after": os.getloadavg(),
                                         "fastest_p50_us": fastest, "rows": rows}, indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
