"""Instructions the start-up storm's SimPy run executes (issue 11): a count that does not move with the host.

The wall time of bench/sim_scale.py's 10,000-device case moves by ±10-20 % with this VM's hour (its bare SimPy
loop ran 2 M frames in 2.18 s one morning and 2.99 s the same day), more than most single changes to the model
save. The number of instructions a run executes does not: the same code on the same inputs counts the same to a
few parts in a million. This bench runs the case's first pass (ECG patches on ward-200, ``--devices``, one
replication, the vectorized engine) under valgrind's callgrind, counting only from the storm's start to its end
(the model's build, SimPy's run up to ``Fork.take``: the storm's handshakes and the frames sent during them),
switched on and off from inside with ``callgrind_control``. ``--against TREE`` counts another checkout the same
way (its modules first on the path), and prints the ratio: a change's effect, measured in one run.

Instructions are not time: a cache miss costs many, an instruction of numpy's vector loops little; wall time
decides (bench/sim_scale.py, alternated runs on one core), the count tells which way a small change goes and by
how much, where a few runs of wall time cannot. About 30 s for 2,000 devices (callgrind runs ~50x slower).
Needs valgrind (Debian package ``valgrind``); says so and exits 2 without it.
Run: python bench/sim_instructions.py [--devices 2000] [--against TREE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
if "--child" not in sys.argv:  # the counted process imports the tree its PYTHONPATH names, not this one
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from sim_scale import ROOT, SCENARIO, USER_ENV, overrides

COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(devices: int) -> None:
    """Under callgrind: build the case and run its storm, counting only that; print the storm's SimPy events."""
    from sim import checkpoint, kernels
    from sim.runner import simulate
    from sim.scenario import load_scenario

    def count(on: bool) -> None:
        subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], capture_output=True,
                       check=False)  # fmt: skip

    class StormEnd(Exception):
        pass

    def at_storm_end(_fork: checkpoint.Fork, rep: object) -> None:
        count(False)
        print(f"events {rep.env.events}", flush=True)  # type: ignore[attr-defined]
        raise StormEnd

    checkpoint.Fork.take = at_storm_end  # type: ignore[method-assign,assignment]
    kernels.load()  # numba's runtime: loaded before counting, as a run loads it before its storm's end
    scenario = load_scenario(SCENARIO, overrides(devices, 3600.0, "vectorized"))
    count(True)
    try:
        simulate(scenario)
    except StormEnd:
        return
    count(False)
    raise SystemExit("the run had no storm to count (no device handshakes?)")


def measure(tree: Path, devices: int) -> tuple[int, int]:
    """(instructions, events) of the storm with ``tree``'s modules first on the path."""
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null",
            sys.executable, str(Path(__file__).resolve()), "--child", "--devices", str(devices)]  # fmt: skip
    env = USER_ENV | {"PYTHONPATH": str(tree)}
    res = subprocess.run(argv, cwd=tree, capture_output=True, text=True, env=env, timeout=3600, check=False)
    found = COLLECTED.search(res.stderr)
    events = re.search(r"events (\d+)", res.stdout)
    if res.returncode != 0 or found is None or events is None:
        raise SystemExit(f"{tree}: the counted run failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return int(found.group(1)), int(events.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2_000, help="ECG patches (default 2,000: ~30 s)")
    ap.add_argument("--against", type=Path, help="another checkout, counted the same way (the baseline)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.devices < 2:
        ap.error(f"--devices {args.devices}: at least 2 (a storm needs devices)")
    if args.child:
        child(args.devices)
        return
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"sim_instructions: {', '.join(missing)} not found (Debian: apt-get install valgrind)", file=sys.stderr)
        raise SystemExit(2)
    if args.against is not None and not (args.against / "sim" / "model.py").is_file():
        ap.error(f"--against {args.against}: not a checkout of this project (no sim/model.py)")
    trees = [("this tree", ROOT)] + ([("against", args.against.resolve())] if args.against else [])
    counted = {label: measure(tree, args.devices) for label, tree in trees}
    print(f"the start-up storm of {args.devices:,} devices (ward-200, vectorized), its SimPy run counted alone:")
    for label, (instructions, events) in counted.items():
        print(f"  {label:<10} {instructions / 1e9:8.3f} G instructions, {events:,} events, "
              f"{instructions / events / 1e3:6.1f} k a event")  # fmt: skip
    if args.against:
        ratio = counted["this tree"][0] / counted["against"][0]
        print(f"  ratio this tree / against: {ratio:.4f} ({(ratio - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
