"""Where a sequential round's ``closed`` segment goes: from the last update's arrival at the aggregator to the
round's end, cut into the inbox hand-off (the arrival to the first verification step), each update's
verification (its decapsulation's start to the next one's, or to FedAvg's; the glue between steps included) and
FedAvg to the round's end; µs, median over the rounds, for twin runs and a simulation of the same cell side by side.

Stop 76 found with it that the twin's aggregator verifies its second update 154-208 µs faster than its first at 50 k
parameters (575-742 µs at 1 M), where the simulator priced both alike; stop 77 found it call by call in the fit's
own training runs (a burst's first call of a kind dearer, growing with the buffer it writes) and modelled it
(sim/profile.py ``Overhead.cold_s``; docs/twin-validation.md, "Stop 76" and "Stop 77").

usage: python bench/verify_chain.py --hw RUN_DIR [RUN_DIR ...] [--sim SIM_DIR]
(``bench/twin_fidelity.py --keep DIR`` keeps both kinds: DIR/hw-CELL-k and DIR/sim-CELL of a sequential cell)
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from job_milestones import arguments, print_medians, side_by_side


def round_chain(spans: pd.DataFrame) -> pd.DataFrame:
    """One row per sequential round whose updates all arrived: its parts in s (``handoff``, ``update1`` ...,
    ``fedavg``); rounds where the aggregator's verification did not start after the last arrival are left out."""
    rows = []
    for (rep, rnd), r in spans.groupby(["replication", "round"]):
        arrivals = r[(r.phase == "upload") & (r.op == "transfer")].end_s
        ends = r[r.phase == "round"].end_s
        if rnd < 1 or arrivals.empty or ends.empty:
            continue
        last = arrivals.max()
        steps = r[(r.pod == "aggregator") & r.phase.isin(["verify", "aggregate"]) & (r.start_s >= last)]
        firsts = steps[steps.op.str.endswith(".decaps")].start_s.sort_values().to_list()
        fedavg = steps[steps.op == "fl.fedavg"].start_s
        if len(firsts) != len(arrivals) or fedavg.empty:
            continue  # not a sequential round's chain (a concurrent one verifies on workers as updates come)
        cuts = [last, *firsts, fedavg.min(), ends.max()]
        names = ["handoff", *(f"update{k + 1}" for k in range(len(firsts))), "fedavg"]
        parts = {name: b - a for name, (a, b) in zip(names, itertools.pairwise(cuts), strict=True)}
        rows.append(parts | {"run": rep, "round": rnd})
    return pd.DataFrame(rows)


def main() -> int:
    ap, args = arguments(__doc__, "twin run directories (sequential)")
    table = side_by_side(ap, round_chain, args.hw, args.sim)
    if empty := [k for k, t in table.items() if t.empty]:
        ap.error(f"no sequential round with every update verified after the last arrival in {', '.join(empty)}")
    parts = [c for c in table["hw"].columns if c not in ("run", "round")]
    print_medians(table, parts, 1e6, "µs from the last update's arrival", 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
