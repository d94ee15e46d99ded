"""Does an idle core take waiting work at once? Read from twin runs' kernel scheduler traces (root runs keep them).

For every moment within a run's rounds that a core went idle while another core had runnable threads queued,
what came next (hw/schedtrace.py ``idle_pulls``): the idle core ran one of them (pulled: within ``PROMPT_S``,
as Linux's new-idle balance would, or later, at a tick's balance), their own core ran one first, or the idle
core ran another thread first (one woken onto it). And where the kernel queued a thread woken by another
(``wake_placements``): on the core it last ran on, or moved to its waker's, by whether that core was busy. And how
a core's run queue takes turns between the twin's threads (``preemptions``): how often a thread woken onto a busy
core preempts the one running there at once, and how long a thread keeps its core while another waits. All of it
decides what ``PlacedCores`` and its ``SlicedCore`` (sim/hosts.py) do.

Run: python bench/sched_idle.py DIR [DIR ...]   (run directories with sched_trace.txt.gz, or directories of
     them, e.g. bench/twin_fidelity.py --keep's); runs named <cell>-<k> are pooled by cell.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from hw.schedtrace import PROMPT_S, IdlePull, idle_pulls, preemptions, read_kept, sibling_waits, wake_placements

TRACE = "sched_trace.txt.gz"


def traces(dirs: list[Path]) -> dict[str, list[Path]]:
    """{cell: its runs' kept traces}: a run directory <cell>-<k> counts under <cell>."""
    found: dict[str, list[Path]] = defaultdict(list)
    for d in dirs:
        for path in sorted([d / TRACE] if (d / TRACE).is_file() else d.glob(f"*/{TRACE}")):
            found[re.sub(r"-\d+$", "", path.parent.name)].append(path)
    return dict(found)


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
    busy = preempted = 0
    slices: list[float] = []
    workers: dict[str, list[float]] = {}  # cell -> seconds together, behind one (other core idle, busy), of rounds
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
                turns = preemptions(text, window, nodes)
                busy += turns.busy_wakeups
                preempted += turns.preempted
                slices += turns.slices_s
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

    together = {cell: w for cell, w in workers.items() if w[0] + w[1] + w[2] > 0}
    if together:
        print("\nthe crypto workers (threads of the worker-* nodes), per second of rounds: side by side / one queued "
              "behind another, the other core idle / busy (ms)")  # fmt: skip
        for cell, (both, idle, busy_s, span) in sorted(together.items()):
            print(f"  {cell:<46} {1e3 * both / span:6.1f} / {1e3 * idle / span:6.1f} / {1e3 * busy_s / span:6.1f}")


if __name__ == "__main__":
    main()
