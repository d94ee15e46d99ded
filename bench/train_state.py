"""Does the speed probe see the state a training step runs in? (docs/twin-validation.md, stop 58)

Pinned to one core, one BLAS thread, in rounds a few seconds apart: the speed probe's median (hw/speed.py, 16 KiB
hashed in a core's L1), then the median step of the twin's training (hw/fl.py, as ``pqtwin calibrate`` times it) at
each size. Printed per round, then, per size, the range of its medians and their rank correlation with the probe:
a probe that saw the training's state would correlate.

``--batches``: instead, each round times every size in five interleaved batches, as a calibration does, and the
end compares two ways to price a size from its batches -- the fastest and the median -- by how far each puts a
size's ratio to 250 k parameters (what hw/fit.py anchors at) from the ratio of all rounds' batches pooled.

Run: python bench/train_state.py [--rounds 10] [--cpu 0] [--batches] [--sizes 12500 50000 250000 1000000]
     [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from hw.calibrate import BATCHES, time_calls, training_job
from hw.speed import probe_us
from sim.loading import out_json
from sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "localhost.yaml"  # the twin fidelity matrix's
MIN_PARAMETERS, MAX_PARAMETERS = 100, 4_000_000  # the largest size pqtwin calibrate times (hw/calibrate.py)
ANCHOR = 250_000  # the fit's training runs' size (bench/twin_fidelity.py TRAIN)


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (no ties in timings): the Pearson correlation of the ranks."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def step_median_s(step: Callable[[], Any], budget_s: float) -> float:
    """The median seconds of ``step`` as a calibration times it (``hw.calibrate.time_calls``, training's limits)."""
    return float(np.median(time_calls(step, budget_s, 10, 200)))


def side_by_side(steps: dict[int, Callable[[], Any]], rounds: int, pause_s: float) -> dict[str, Any]:
    """Per round the probe's median (µs) and each size's median step (s); per size the rank correlation."""
    rows = []
    for _ in range(rounds):
        row = {"at": time.strftime("%H:%M:%S"), "probe_us": float(np.median([probe_us() for _ in range(20)]))}
        row |= {str(p): step_median_s(step, 0.3) for p, step in steps.items()}
        rows.append(row)
        print(f"{row['at']} probe {row['probe_us']:5.1f} µs | "
              + " | ".join(f"{p // 1000} k {row[str(p)] * 1e3:7.2f} ms" for p in steps), flush=True)  # fmt: skip
        time.sleep(pause_s)
    probe = [r["probe_us"] for r in rows]
    per_size = {}
    for p in steps:
        x = [r[str(p)] for r in rows]
        rho = spearman(probe, x) if len(rows) > 2 else None
        per_size[str(p)] = {"min_s": min(x), "max_s": max(x), "spearman_with_probe": rho}
        print(f"{p:>9,} parameters: {min(x) * 1e3:.2f}-{max(x) * 1e3:.2f} ms, Spearman with the probe "
              + ("-" if rho is None else f"{rho:+.2f}"))  # fmt: skip
    return {"rounds": rows, "sizes": per_size}


def batches(steps: dict[int, Callable[[], Any]], rounds: int) -> dict[str, Any]:
    """Per round, ``BATCHES`` interleaved batch medians a size; how far the fastest and the median batch put each
    size's ratio to ``ANCHOR`` from the pooled ratio (mean and rms, %)."""
    m = np.empty((rounds, len(steps), BATCHES))
    for r in range(rounds):
        for k in range(BATCHES):
            for i, step in enumerate(steps.values()):
                m[r, i, k] = step_median_s(step, 0.4)
        print(time.strftime("%H:%M:%S"), f"round {r + 1} of {rounds}", flush=True)
    pooled = np.median(m.transpose(1, 0, 2).reshape(len(steps), -1), axis=1)
    anchor = list(steps).index(ANCHOR)
    out: dict[str, Any] = {"pooled_s": dict(zip(map(str, steps), pooled.tolist(), strict=True))}
    for name, pick in (("fastest", np.min), ("median", np.median)):
        est = pick(m, axis=2)
        err = (est / est[:, [anchor]]) / (pooled / pooled[anchor]) - 1
        out[name] = {str(p): {"mean_pct": 100 * float(err[:, j].mean()),
                              "rms_pct": 100 * float(np.sqrt((err[:, j] ** 2).mean()))}
                     for j, p in enumerate(steps)}  # fmt: skip
        print(f"{name:>7s} batch, error of the ratio to {ANCHOR:,} (mean / rms): "
              + ", ".join(f"{p:,} {v['mean_pct']:+.1f} / {v['rms_pct']:.1f} %"
                          for p, v in zip(steps, out[name].values(), strict=True)))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--cpu", type=int, default=0, help="the core to pin to (-1: any)")
    ap.add_argument("--batches", action="store_true", help="interleaved batches: fastest against median")
    ap.add_argument("--sizes", type=int, nargs="+", default=[12_500, 50_000, ANCHOR, 1_000_000])
    ap.add_argument("--json", type=out_json, help="write the rounds and the summary here")
    args = ap.parse_args(argv)
    if args.rounds < 1 or any(not MIN_PARAMETERS <= p <= MAX_PARAMETERS for p in args.sizes):
        ap.error(f"--rounds must be at least 1 and every --sizes {MIN_PARAMETERS:,} to {MAX_PARAMETERS:,} parameters")
    if args.batches and ANCHOR not in args.sizes:
        ap.error(f"--batches compares ratios to {ANCHOR:,} parameters: include it in --sizes")
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {args.cpu})
        except (OSError, OverflowError):
            ap.error(f"--cpu {args.cpu}: not a core this process may run on ({sorted(os.sched_getaffinity(0))})")
    rng = np.random.default_rng(0)
    samples = load_scenario(SCENARIO).workload.fl.samples_per_client  # a client's samples, as the twin trains
    steps = {p: training_job(samples, p, rng)[1] for p in args.sizes}
    load = os.getloadavg()[0]
    with threadpool_limits(1):
        result = batches(steps, args.rounds) if args.batches else side_by_side(steps, args.rounds, 2.0)
    given = sys.argv[1:] if argv is None else argv
    result |= {"argv": given, "loadavg_1m_start": load, "loadavg_1m_end": os.getloadavg()[0]}
    print(f"load average {load:.2f} -> {result['loadavg_1m_end']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
