"""Does an idle core take waiting work at once? Read from twin runs' kernel scheduler traces (root runs keep them).

For every moment within a run's rounds that a core went idle while another core had runnable threads queued,
what came next (hw/schedtrace.py ``idle_pulls``): the idle core ran one of them (pulled: within ``PROMPT_S``,
as Linux's new-idle balance would, or later, at a tick's balance), their own core ran one first, or the idle
core ran another thread first (one woken onto it). And where the kernel queued a thread woken by another
(``wake_placements``): on the core it last ran on, or moved to its waker's, by whether that core was busy. And how
a core's run queue takes turns between the twin's threads (``preemptions``): how often a thread woken onto a busy
core preempts the one running there at once, and how long a thread keeps its core while another waits. All of it
decides what ``PlacedCores`` and its ``SlicedCore`` (sim/hosts.py) do. For a ``--mode both`` run, each mode's
rounds side by side (``round_costs``): the CPU every node used in a round, how long its threads waited for a core,
and how much of that while another core idled -- where a mode's rounds differ from the model's, whether it is
work (CPU) or waiting.

Run: python bench/sched_idle.py DIR [DIR ...]   (run directories with sched_trace.txt.gz, or directories of
     them, e.g. bench/twin_fidelity.py --keep's); runs named <cell>-<k> are pooled by cell.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from hw.schedtrace import (
    PROMPT_S,
    IdlePull,
    handed_on,
    idle_pulls,
    preemptions,
    read_kept,
    sibling_waits,
    wake_placements,
    windows_waits,
)
from sim.contract import read_spans, round_mode

TRACE = "sched_trace.txt.gz"


def traces(dirs: list[Path]) -> dict[str, list[Path]]:
    """{cell: its runs' kept traces}: a run directory <cell>-<k> counts under <cell>."""
    found: dict[str, list[Path]] = defaultdict(list)
    for d in dirs:
        for path in sorted([d / TRACE] if (d / TRACE).is_file() else d.glob(f"*/{TRACE}")):
            found[re.sub(r"-\d+$", "", path.parent.name)].append(path)
    return dict(found)


def trace_rounds(run: Path, window: tuple[float, float]) -> list[tuple[int, float, float]]:
    """A run's rounds as (round, start, end) on the trace's clock, from its spans (the trace's window starts at the
    first round's start); none without spans."""
    if not (run / "spans.parquet").is_file():
        return []
    spans = read_spans(run / "spans.parquet")
    rounds = spans[(spans.phase == "round") & (spans.op == "round") & (spans["round"] > 0)]
    if rounds.empty:
        return []
    epoch = window[0] - float(rounds.start_s.min())
    return [(int(r.round), epoch + r.start_s, epoch + r.end_s) for r in rounds.itertuples()]


def round_costs(run: Path, text: str, window: tuple[float, float], nodes: dict[str, int]) -> dict[str, list[Any]]:
    """A ``--mode both`` run's rounds, by mode: each round's CPU by node, and how long its threads waited for a
    core in all and while another core idled (``waits`` over the round); nothing for a run of one mode."""
    rounds = trace_rounds(run, window) if (run / "modes.json").is_file() else []
    out: dict[str, list[Any]] = defaultdict(list)
    if not rounds:  # (not the trace parsed for nothing)
        return out
    for (r, _, _), w in zip(rounds, windows_waits(text, nodes, [(a, b) for _, a, b in rounds]), strict=True):
        if w is not None:
            out[round_mode("both", r)].append(w)
    return out


def concurrent_starts(run: Path, window: tuple[float, float]) -> list[float]:
    """A run's concurrent rounds' starts on the trace's clock: every round of a concurrent run, every other of a
    ``--mode both`` run (its run.json's mode)."""
    try:
        mode = json.loads((run / "run.json").read_text())["mode"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if mode not in ("concurrent", "both"):
        return []
    return [start for r, start, _ in trace_rounds(run, window) if round_mode(mode, r) == "concurrent"]


def mode_rows(cell: str, rounds: dict[str, list[Any]]) -> list[str]:
    """Median per round of each mode: CPU in all, runnable wait, of it beside an idle core, and each node's CPU and
    wait (ms)."""
    rows = []
    for mode in ("sequential", "concurrent"):
        ws = rounds.get(mode, [])
        if not ws:
            continue
        names = sorted({n for w in ws for n in w.by_node_cpu_s})
        med = {n: 1e3 * float(np.median([w.by_node_cpu_s.get(n, 0.0) for w in ws])) for n in names}
        waited = {n: 1e3 * float(np.median([w.by_node_wait_s.get(n, 0.0) for w in ws])) for n in names}
        cpu = 1e3 * float(np.median([sum(w.by_node_cpu_s.values()) for w in ws]))
        wait = 1e3 * float(np.median([w.runnable_wait_s for w in ws]))
        idle = 1e3 * float(np.median([w.idle_core_wait_s for w in ws]))
        nodes = " ".join(f"{n} {v:.1f}/{waited[n]:.1f}" for n, v in med.items() if v >= 0.05)
        rows.append(f"  {cell:<40} {mode:<10} {len(ws):>4} {cpu:7.1f} {wait:7.1f} {idle:7.1f}   {nodes}")
    return rows


def row(cell: str, pulls: list[IdlePull]) -> str:
    n = len(pulls)
    prompt = [p for p in pulls if p.outcome == "pulled" and p.after_s <= PROMPT_S]
    later = [p for p in pulls if p.outcome == "pulled" and p.after_s > PROMPT_S]
    own = [p.after_s for p in pulls if p.outcome == "own"]
    other = sum(p.outcome == "other" for p in pulls)
    hot = sum(p.hot for p in prompt)
    med = f"{np.median(own) * 1e3:.2f}" if own else "-"
    return (f"{cell:<48} {n:>6} {len(prompt):>7} ({hot} hot) {len(later):>6} {len(own):>6} {med:>9} "
            f"{other:>6}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path)
    args = ap.parse_args()
    cells = traces(args.dirs)
    if not cells:
        ap.error(f"no {TRACE} in {', '.join(map(str, args.dirs))} or their subdirectories (root runs keep one)")
    print(f"{'cell':<48} {'cases':>6} {'pulled <=' + str(round(PROMPT_S * 1e6)) + ' us':>17} {'later':>6} "
          f"{'own':>6} {'own ms p50':>9} {'other':>6}")  # fmt: skip
    total: list[IdlePull] = []
    placed: dict[tuple[str, str], int] = defaultdict(int)
    handed: dict[tuple[str, str], int] = defaultdict(int)  # the second job thread of a concurrent round
    busy = preempted = 0
    slices: list[float] = []
    workers: dict[str, list[float]] = {}  # cell -> seconds together, behind one (other core idle, busy), of rounds
    by_mode: dict[str, dict[str, list[Any]]] = {}  # cell -> mode -> its rounds' waits (--mode both runs)
    for cell, paths in sorted(cells.items()):
        pulls: list[IdlePull] = []
        for path in paths:
            try:
                text, window, nodes = read_kept(path)
            except (OSError, EOFError, ValueError) as exc:  # not gzip, cut short, not text, not ours
                ap.error(f"{path}: not a readable kept scheduler trace ({exc})")
            if window is not None:
                pulls += idle_pulls(text, window)
                for key, n in wake_placements(text, window).items():
                    placed[key] += n
                for key, n in handed_on(text, nodes, concurrent_starts(path.parent, window)).items():
                    handed[key] += n
                turns = preemptions(text, window, nodes)
                busy += turns.busy_wakeups
                preempted += turns.preempted
                slices += turns.slices_s
                for mode, ws in round_costs(path.parent, text, window, nodes).items():
                    by_mode.setdefault(cell, {}).setdefault(mode, []).extend(ws)
                w = sibling_waits(text, window, nodes, "worker")
                workers[cell] = [a + b for a, b in zip(workers.get(cell, [0.0] * 4),
                                                       (w.together_s, w.behind_idle_s, w.behind_busy_s,
                                                        window[1] - window[0]), strict=True)]  # fmt: skip
        total += pulls
        print(row(cell, pulls))
    print(row("all", total))
    print("\nwoken by a running thread, it last ran on ...   queued there / on its waker's core / elsewhere")
    for where in ("waker's cpu", "other cpu, busy", "other cpu, idle"):
        own, waker, other = (placed[where, went] for went in ("its own", "waker's", "elsewhere"))
        n = max(own + waker + other, 1)
        share = f"moved: {other / n:.1%}" if where == "waker's cpu" else f"waker's: {waker / n:.1%}"
        print(f"  {where:<46} {own:>6} / {waker:>6} / {other:>6}   ({share})")
    print_handed(handed)
    print(
        f"\nthe twin's threads woken onto a busy core: {busy}; preempted the thread running there within "
        f"{PROMPT_S * 1e6:.0f} us: {preempted} ({preempted / max(busy, 1):.1%})"
    )
    if slices:
        q = np.quantile(np.array(slices) * 1e3, [0.25, 0.5, 0.75])
        print(
            f"a thread ran while another waited on its core all along, then made way: {len(slices)} times, for "
            f"{q[1]:.2f} ms (median; quartiles {q[0]:.2f}, {q[2]:.2f})"
        )

    print_modes(by_mode)
    print_workers(workers)


def print_handed(handed: dict[tuple[str, str], int]) -> None:
    if handed:
        print("a concurrent round's second job thread, woken by the first (the pool's queue handed on), last ran on"
              " ...   queued on its waker's core / elsewhere")  # fmt: skip
        for where in ("waker's cpu", "other cpu"):
            waker, other = handed[where, "waker's"], handed[where, "elsewhere"]
            print(f"  {where:<46} {waker:>6} / {other:>6}   (waker's: {waker / max(waker + other, 1):.1%})")


def print_modes(by_mode: dict[str, dict[str, list[Any]]]) -> None:
    if by_mode:
        print("\n--mode both runs, per round of each mode, median (ms): rounds, CPU of every node, runnable wait, "
              "of it while another core idled; by node: CPU/wait")  # fmt: skip
        for cell, rounds in sorted(by_mode.items()):
            print("\n".join(mode_rows(cell, rounds)))


def print_workers(workers: dict[str, list[float]]) -> None:
    together = {cell: w for cell, w in workers.items() if w[0] + w[1] + w[2] > 0}
    if together:
        print("\nthe crypto workers (threads of the worker-* nodes), per second of rounds: side by side / one queued "
              "behind another, the other core idle / busy (ms)")  # fmt: skip
        for cell, (both, idle, busy_s, span) in sorted(together.items()):
            print(f"  {cell:<46} {1e3 * both / span:6.1f} / {1e3 * idle / span:6.1f} / {1e3 * busy_s / span:6.1f}")


if __name__ == "__main__":
    main()
