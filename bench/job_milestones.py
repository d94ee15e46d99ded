"""When, in a concurrent round, each delegated job of the model's distribution reaches a crypto worker, when its
answer is back at the aggregator and when each client holds the model: ms from the round's start, median over the
rounds, for twin runs and for a simulation of the same cell side by side. It says where a concurrent round's
``received`` segment (sim.contract.round_segments) gains or loses time. Where the aggregator's own job threads do
the jobs (no worker pods, as paper-3node), each job's pack (``serialize``) ends and its message leaves instead
(``OWN_MILESTONES``).

usage: python bench/job_milestones.py --hw RUN_DIR [RUN_DIR ...] [--sim SIM_DIR]
(a run directory of ``--mode both`` is read for its concurrent rounds; ``bench/twin_fidelity.py --keep DIR`` keeps
both kinds: DIR/hw-CELL-k and DIR/sim-CELL)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from sim.contract import read_spans

MILESTONES = ("job1", "job2", "answer1", "answer2", "received1", "received2")


def _per_round(spans: pd.DataFrame, names: tuple[str, ...],
               times_of: Callable[[pd.DataFrame], list[float] | None]) -> pd.DataFrame:  # fmt: skip
    """One row per round past the handshakes for which ``times_of`` (the round's spans) gives the milestones'
    times: each from the round's start, in s."""
    rows = []
    for (rep, rnd), r in spans.groupby(["replication", "round"]):
        if rnd < 1 or (times := times_of(r)) is None:
            continue
        start = r[r.phase == "round"].start_s.min() if (r.phase == "round").any() else r.start_s.min()
        rows.append(dict(zip(names, (t - start for t in times), strict=True)) | {"run": rep, "round": rnd})
    return pd.DataFrame(rows, columns=[*names, "run", "round"])


def _held(r: pd.DataFrame) -> pd.Series:
    """When each client held the model, earliest first."""
    return r[r.phase == "receive"].groupby("pod").end_s.max().sort_values()


def _delegated(r: pd.DataFrame) -> list[float] | None:
    d = r[r.phase == "distribute"]
    at_worker = d[d.pod.str.startswith("worker") & d.op.str.endswith(".decrypt")].start_s.sort_values()
    back = d[(d.pod != "client") & ~d.pod.str.startswith("worker") & d.op.str.endswith(".decrypt")]
    held = _held(r)
    if len(at_worker) < 2 or len(back) < 2 or len(held) < 2:
        return None  # a sequential round, or one cut short
    return [*at_worker.values[:2], *back.start_s.sort_values().values[:2], *held.values[:2]]


def round_milestones(spans: pd.DataFrame) -> pd.DataFrame:
    """One row per round that delegated two distribute jobs: the milestones' times from the round's start, in s."""
    return _per_round(spans, MILESTONES, _delegated)


OWN_MILESTONES = ("packed1", "packed2", "sent1", "sent2", "received1", "received2")


def _own(r: pd.DataFrame) -> list[float] | None:
    rounds = r[r.phase == "round"]
    if rounds.empty:
        return None
    d = r[(r.phase == "distribute") & (r.pod == rounds.pod.iloc[0])]  # the aggregator's
    packs, sends, held = d[d.op == "serialize"], d[d.op == "transfer"].start_s.sort_values(), _held(r)
    if len(packs) < 2 or len(sends) < 2 or len(held) < 2 or packs.start_s.max() >= sends.iloc[0]:
        return None  # a sequential round (each job packed after the last left), or one cut short
    return [*packs.end_s.sort_values().values[:2], *sends.values[:2], *held.values[:2]]


def own_milestones(spans: pd.DataFrame) -> pd.DataFrame:
    """One row per round whose aggregator prepared two distribute jobs side by side itself (both packs began
    before the first message left: a concurrent round, no worker pods): when each pack ended, each message left
    and each client held the model, from the round's start, in s."""
    return _per_round(spans, OWN_MILESTONES, _own)


def side_by_side(ap: argparse.ArgumentParser, cut: Callable[[pd.DataFrame], pd.DataFrame], hw: list[Path],
                 sim: Path | None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Per-round tables cut from the spans of the twin runs ``hw`` (pooled) and of the simulation ``sim`` (if given),
    by side; a directory whose spans cannot be read is the parser's one-line error naming the file."""
    try:
        table = {"hw": pd.concat([cut(read_spans(d / "spans.parquet")) for d in hw])}
        if sim is not None:
            table["sim"] = cut(read_spans(sim / "spans.parquet"))
    except (OSError, ValueError) as exc:  # not a run directory, or its spans damaged: read_spans names the file
        ap.error(str(exc).splitlines()[0])
    return table


def print_medians(table: dict[str, pd.DataFrame], parts: list[str], scale: float, what: str, digits: int) -> None:
    """The median of each part by side (times ``scale``), and simulated less measured where both are."""
    out = pd.DataFrame({k: v.reindex(columns=parts).median() * scale for k, v in table.items()})
    if "sim" in out:
        out["sim - hw"] = out["sim"] - out["hw"]
    print(f"median {what} ({', '.join(f'{k}: {len(v)} rounds' for k, v in table.items())})")
    print(out.round(digits).to_string())


def arguments(doc: str, runs: str) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser of a script that reads twin runs (``--hw``, described as ``runs``) beside a simulation (``--sim``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--hw", type=Path, nargs="+", required=True, help=runs)
    ap.add_argument("--sim", type=Path, help="a simulation of the same cell (pqtwin sim --out)")
    return ap, ap.parse_args()


def main() -> int:
    ap, args = arguments(__doc__, "twin run directories")
    table = side_by_side(ap, round_milestones, args.hw, args.sim)
    if table["hw"].empty:  # no job went to a worker: the aggregator's own job threads (paper-3node)
        table = side_by_side(ap, own_milestones, args.hw, args.sim)
        print_medians(table, list(OWN_MILESTONES), 1e3, "ms from the round's start, jobs done by the aggregator", 2)
        return 0
    print_medians(table, list(MILESTONES), 1e3, "ms from the round's start", 2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
