"""Summary of a run: KPIs with confidence intervals, computed from spans (shared with the hardware twin).

Confidence intervals are Student-t 95 % intervals over replication means (the replication is the
independent unit); with one replication they are computed over rounds and ``ci_method`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sim import catalogue, storm
from sim.contract import FL_PHASES, WIRE_OPS, ApplicationBytes, Engine, Stats, Summary, Telemetry, phase_extents
from sim.contract import Storm as StormStats
from sim.sketch import LatencySketch
from sim.storm import Handshake

if TYPE_CHECKING:
    import pandas as pd

    from sim.telemetry import Outcome
from sim.stats import t_ppf


def describe(values: pd.Series, groups: pd.Series) -> Stats:
    """mean, p50, p95, n and ci95 of values; CI over group means when there are ≥ 2 groups."""
    v = values.to_numpy(dtype=float)
    if v.size == 0:
        return Stats(mean=None, p50=None, p95=None, ci95=(None, None), n=0, ci_method="none")
    means = values.groupby(groups).mean().to_numpy()
    basis, method = (means, "replication means") if means.size >= 2 else (v, "rounds of one replication")
    return Stats(
        mean=float(v.mean()),
        p50=float(np.percentile(v, 50)),
        p95=float(np.percentile(v, 95)),
        ci95=ci95(basis),
        n=int(v.size),
        ci_method=method,
        replication_means=[float(m) for m in means],
    )


def ci95(x: np.ndarray) -> tuple[float, float]:
    """Student-t 95 % interval of the mean of x (degenerate when fewer than two values)."""
    m = float(np.mean(x))
    if x.size < 2:
        return (m, m)
    half = float(t_ppf(0.975, x.size - 1) * np.std(x, ddof=1) / math.sqrt(x.size))
    return (m - half, m + half)


def is_crypto(op: str) -> bool:
    return op.split(".", 1)[0] in catalogue.CATALOGUE


def fl_cpu_work(spans: pd.DataFrame) -> pd.DataFrame:
    """The FL rounds' CPU work (FL phases, rounds > 0, no messages) with its service time ``work_s``."""
    rows = spans[(spans["round"] > 0) & spans.phase.isin(FL_PHASES) & ~spans.op.isin(WIRE_OPS)]
    return rows.assign(work_s=rows.end_s - rows.start_s - rows.queue_wait_s)


def crypto_share(spans: pd.DataFrame) -> float:
    """Crypto share of the FL CPU time (service time of FL phases' CPU work in rounds > 0)."""
    fl_cpu = fl_cpu_work(spans)
    total = float(fl_cpu.work_s.sum())
    return float(fl_cpu.work_s[fl_cpu.op.map(is_crypto)].sum()) / total if total > 0 else 0.0


def application_bytes(spans: pd.DataFrame, replications: int = 1) -> ApplicationBytes:
    """Bytes the application sent per replication, total and by phase: each message (``transfer`` and
    ``frame`` rows) once at its size, loopback messages included (``ApplicationBytes``)."""
    rows = spans[spans.op.isin(WIRE_OPS)]
    by_phase = rows.groupby("phase")["bytes"].sum()
    return ApplicationBytes(total=float(rows["bytes"].sum()) / replications,
                            by_phase={str(k): float(v) / replications for k, v in by_phase.items()})  # fmt: skip


def mean_count(total: int, replications: int) -> int | float:
    """A count over all replications as its exact mean per replication: the int when the replications divide it
    (a table shows 2,700 as before), else the float (27 frames over 10 replications is 2.7; ``//`` said 2)."""
    total, reps = int(total), max(1, replications)
    return total // reps if total % reps == 0 else total / reps


def summarise(spans: pd.DataFrame, meta: dict[str, Any]) -> Summary:
    """KPIs from spans; ``meta`` carries the run's facts (the ``Summary`` fields that spans cannot give)."""
    rounds = spans[(spans.phase == "round") & (spans.op == "round")]
    dist = spans[spans.phase == "distribution"]
    reps = max(1, int(meta.get("replications", 1)))
    frames = spans[spans.op == "frame"]
    return Summary.model_validate(
        {
            **meta,
            "round_latency_s": describe(rounds.end_s - rounds.start_s, rounds.replication),
            "model_distribution_s": describe(dist.end_s - dist.start_s, dist.replication),
            "rounds_completed": len(rounds),
            "rounds_failed": int(((spans.phase == "round") & (spans.op == "failed")).sum()),
            "phase_s": {str(k): float(v) for k, v in phase_extents(spans).groupby("phase").extent_s.mean().items()},
            "crypto_share": crypto_share(spans),
            "application_bytes": application_bytes(spans, reps),
            "telemetry": Telemetry(
                frames=mean_count(len(frames), reps),
                latency_s=describe(frames.end_s - frames.start_s, frames.replication) if len(frames) else None,
            ),
        }
    )


WARN_PERTURBATION_S = 1e-3  # the vectorized engine's foreground delay worth a warning (it is always recorded)


def sketch_stats(per_replication: list[LatencySketch]) -> Stats:
    """Stats of a streamed population: exact mean and CI (over replication means, or over the values of one
    replication from their sums), p50/p95 from the merged sketch."""
    whole = LatencySketch()
    for sk in per_replication:
        whole.merge(sk)
    if whole.n == 0:
        return Stats(mean=None, p50=None, p95=None, ci95=(None, None), n=0, ci_method="none")
    means = [sk.mean for sk in per_replication if sk.mean is not None]
    if len(means) >= 2:
        interval, method = ci95(np.array(means)), "replication means"
    else:
        m = whole.total / whole.n
        sd = math.sqrt(max(0.0, (whole.squares - whole.n * m * m) / (whole.n - 1))) if whole.n > 1 else 0.0
        half = float(t_ppf(0.975, whole.n - 1) * sd / math.sqrt(whole.n)) if whole.n > 1 else 0.0
        interval, method = (m - half, m + half), "frames of one replication"
    return Stats(mean=whole.mean, p50=whole.quantile(0.5), p95=whole.quantile(0.95), ci95=interval, n=whole.n,
                 ci_method=method, replication_means=[float(m) for m in means])  # fmt: skip


def with_frames(summary: Summary, outcomes: list[Outcome]) -> Engine:
    """Put the vectorized engine's frames into a summary computed from the other spans (telemetry KPIs and
    application bytes; their link bytes are in the links' counters); returns the engine's record (exact or
    how the foreground was perturbed)."""
    reps = len(outcomes)
    names = list(outcomes[0].sketches)
    by_pop = {name: sketch_stats([o.sketches[name] for o in outcomes]) for name in names}
    per_rep = []
    for o in outcomes:
        sk = LatencySketch()
        for part in o.sketches.values():
            sk.merge(part)
        per_rep.append(sk)
    frames = sum(o.frames for o in outcomes)
    summary.telemetry = Telemetry(frames=mean_count(frames, reps), by_population=by_pop, quantiles="sketch",
                                  latency_s=sketch_stats(per_rep) if frames else None)  # fmt: skip
    frame_bytes = sum(o.frame_bytes for o in outcomes) / reps
    sent = summary.application_bytes
    sent.total += frame_bytes
    sent.by_phase["telemetry"] = sent.by_phase.get("telemetry", 0.0) + frame_bytes
    perturbation: dict[str, tuple[float, int]] = {}
    for o in outcomes:
        for name, (delay, count) in o.perturbation.items():
            old = perturbation.get(name, (0.0, 0))
            perturbation[name] = (max(old[0], delay), old[1] + count)
    worst = max((d for d, _ in perturbation.values()), default=0.0)
    if worst >= WARN_PERTURBATION_S:
        summary.warnings.append(
            f"vectorized engine: telemetry would have delayed the FL/handshake traffic by up to {worst:.3g} s "
            f"({sum(c for _, c in perturbation.values())} transmissions or jobs, at "
            f"{', '.join(sorted(perturbation))}); that part is optimistic (run.engine: events is the reference)"
        )
    return Engine(name="vectorized", exact=not perturbation, perturbation=perturbation,
                  frames_in_flight=mean_count(sum(o.in_flight for o in outcomes), reps),
                  passes=max(o.passes for o in outcomes),
                  hot_frames=mean_count(sum(o.hot_frames for o in outcomes), reps),
                  windows=sum(o.windows for o in outcomes))  # fmt: skip


def with_handshakes(summary: Summary, per_replication: list[list[Handshake]], pod_of: Mapping[str, str],
                    devices: int) -> None:  # fmt: skip
    """Device handshake times (done - started) into ``summary.telemetry``, all and per population, and the
    start-up storm of the scenario's ``devices``' first sessions (sim/storm.py; ``pod_of``: population -> its pod)."""
    import pandas as pd

    rows = [(rep, pop, done - start) for rep, hs in enumerate(per_replication) for pop, start, done, _ in hs]
    if not rows:
        return
    df = pd.DataFrame(rows, columns=["replication", "population", "duration_s"])
    tele = summary.telemetry
    tele.handshake_s = describe(df.duration_s, df.replication)
    tele.handshake_by_population = {str(p): describe(g.duration_s, g.replication) for p, g in df.groupby("population")}
    tele.sessions = mean_count(len(df), len(per_replication))
    tele.storm = _storm(per_replication, pod_of, devices)


def _storm(per_replication: list[list[Handshake]], pod_of: Mapping[str, str], devices: int) -> StormStats | None:
    import pandas as pd

    storms = [storm.of_replication(hs, pod_of) for hs in per_replication]
    had = [s for s in storms if s is not None]
    if not had:
        return None
    reps = pd.Series(np.arange(len(storms)))  # a replication without a storm had no backlog: its peaks count 0
    up = pd.Series(np.concatenate([s.up_s for s in had]))
    up_reps = pd.Series(np.repeat(np.arange(len(had)), [s.up_s.size for s in had]))
    pods = sorted({p for s in had for p in s.peak_by_pod})

    def peaks(pod: str | None) -> Stats:  # in all, or at one pod
        return describe(pd.Series([0.0 if s is None else float(s.peak if pod is None else s.peak_by_pod.get(pod, 0))
                                   for s in storms]), reps)  # fmt: skip

    return StormStats(
        devices=mean_count(int(up.size), len(per_replication)),
        of_devices=devices,
        up_s=describe(up, up_reps),
        all_up_s=describe(pd.Series([s.end_s for s in had]), pd.Series(np.arange(len(had)))),
        peak_under_way=peaks(None),
        peak_by_pod={p: peaks(p) for p in pods},
        under_way=storm.under_way(had, len(per_replication)),
    )


def mode_comparison(seq: Summary, conc: Summary) -> dict[str, Any]:
    """Relative reduction concurrent vs sequential, with a paired 95 % CI over replications.

    Both runs use the same root seed, so replication i of each mode shares its random streams (common
    random numbers); the CI is over the per-replication reductions (seq_i - conc_i) / seq_i.
    """
    out: dict[str, Any] = {
        "scenario": seq.scenario,
        "seed": seq.seed,
        "replications": seq.replications,
    }
    for key in ("round_latency_s", "model_distribution_s"):
        a = np.array(getattr(seq, key).replication_means)
        b = np.array(getattr(conc, key).replication_means)
        if a.size == 0 or a.size != b.size or not np.all(a > 0):
            out[key] = {"reduction": None, "reduction_ci95": [None, None]}
            continue
        per_rep = (a - b) / a
        out[key] = {
            "sequential_mean": float(a.mean()),
            "concurrent_mean": float(b.mean()),
            "reduction": float(1 - b.mean() / a.mean()),
            "reduction_ci95": list(ci95(per_rep)),
        }
    return out
