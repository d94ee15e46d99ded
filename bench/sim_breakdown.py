"""Where a vectorized run's time goes (issue 11): bench/sim_scale.py's case, its CPU time split by part.

One run of the issue's layout (ECG patches on ward-200, one FL round, one replication; ``--devices`` x
``--horizon-s``), pinned to one core as bench/sim_scale.py pins its cases, with timers around the functions that
make up a run. A vectorized run forks at its start-up storm's end and computes its second pass in the fork
(sim/checkpoint.py); the fork's timers come back through a file. Each part is CPU seconds of the process that ran
it (``time.process_time``): on one core the parts add up to about the wall time; its wall seconds beside it.

Parts: the model's build; the storm's SimPy run (the first pass up to the fork); loading the kernels' runtime and
forking; the first pass after the storm (SimPy, then kernels up to its last foreground); in the fork, the resumed
pass's SimPy and its kernels (by kernel: link stages, processor sharing, finding and sorting each server's
waiting frames, emission, statistics ...) and sending its result back; in the parent, loading pandas meanwhile,
the summary. The timers cost a little (the total is a few % above an untimed run's).

Run: python bench/sim_breakdown.py [--devices 10000] [--horizon-s 3600] [--cpu N] [--json FILE] [--storm-frames N]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from sim_scale import SCENARIO, cpu_s, host_state, overrides, pin, state_line

from sim.loading import out_json

KERNELS = ("link_stage", "shared_cores", "fifo_cores", "waiting_at", "emit", "finished_frames")
TELEMETRY = ("_emit", "_record", "_compact", "_hot_frames")
SPENT: dict[str, list[float]] = {}  # part -> [cpu s, wall s], this process's
MARKS: dict[str, float] = {}


def timed(owner: Any, name: str, part: str) -> None:
    """Replace ``owner.name`` by a wrapper adding its CPU and wall time to ``part``."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*a: Any, **k: Any) -> Any:
        c, w = time.process_time(), time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent = SPENT.setdefault(part, [0.0, 0.0])
            spent[0] += time.process_time() - c
            spent[1] += time.perf_counter() - w

    setattr(owner, name, wrapper)


def instrument(fork_file: Path) -> None:
    from sim import checkpoint, hosts, kernels, model, runner, telemetry

    for name in KERNELS:
        timed(kernels, name, f"kernels.{name}")
    for name in TELEMETRY:
        timed(telemetry, name, f"telemetry.{name}")
    timed(telemetry, "simulate_frames", "kernels (all)")
    timed(model.Replication, "__init__", "model build")
    run = hosts.CountingEnvironment.run

    def simpy_run(self: Any, until: Any = None) -> Any:  # from its start, or in the fork from the resume
        MARKS.setdefault("run_cpu", time.process_time())
        MARKS.setdefault("run_wall", time.perf_counter())
        c, w = time.process_time(), time.perf_counter()
        try:
            return run(self, until)
        finally:
            c, w = MARKS.pop("resumed_cpu", c), MARKS.pop("resumed_wall", w)
            spent = SPENT.setdefault("SimPy", [0.0, 0.0])
            spent[0] += time.process_time() - c
            spent[1] += time.perf_counter() - w

    hosts.CountingEnvironment.run = simpy_run  # type: ignore[method-assign]
    timed(runner, "_assemble", "summary")
    timed(runner, "_load_tables", "loading pandas")
    take, ship = checkpoint.Fork.take, checkpoint.Fork.ship

    def at_storm_end(self: Any, rep: Any) -> None:
        c, w = time.process_time(), time.perf_counter()
        storm = [c - MARKS.get("run_cpu", c), w - MARKS.get("run_wall", w)]
        take(self, rep)
        if self.in_child:  # the resumed pass: this process counts its own from here on
            SPENT.clear()
            MARKS["resumed_cpu"], MARKS["resumed_wall"] = time.process_time(), time.perf_counter()
            return
        SPENT["SimPy: the storm (up to the fork)"] = storm
        SPENT["loading kernels, forking"] = [time.process_time() - c, time.perf_counter() - w]

    def send_back(self: Any, outcome: Any) -> Any:
        c, w = time.process_time(), time.perf_counter()
        if not isinstance(outcome, BaseException):  # what ``ship`` pickles (it exits): rows past the storm's
            rows, handshakes = self._held
            sent = dataclasses.replace(outcome, rows=outcome.rows[rows:],
                                       device_handshakes=outcome.device_handshakes[handshakes:])  # fmt: skip
            pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)
        SPENT["sending the result (pickling)"] = [time.process_time() - c, time.perf_counter() - w]
        fork_file.write_text(json.dumps(SPENT))
        return ship(self, outcome)

    checkpoint.Fork.take, checkpoint.Fork.ship = at_storm_end, send_back  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--horizon-s", type=float, default=3600.0)
    ap.add_argument("--cpu", type=int, default=None, help="the core to run on (default: the last allowed; -1: any)")
    ap.add_argument("--json", type=out_json, help="write the parts as JSON here")
    ap.add_argument("--storm-frames", type=int, default=None,
                    help="the storm's budget of frames in SimPy (sim.telemetry.STORM_FRAMES_MAX; 0: none, so the "
                         "storm's own cost shows, though the run then takes more passes)")  # fmt: skip
    args = ap.parse_args()
    if args.storm_frames is not None and args.storm_frames < 0:
        ap.error(f"--storm-frames {args.storm_frames}: a count of frames, 0 or more")
    if args.devices < 1 or not 0 < args.horizon_s <= 1e7:
        ap.error(
            f"--devices {args.devices} --horizon-s {args.horizon_s:g}: at least one device, a horizon in (0, 1e7] s"
        )
    core = pin(args.cpu)
    if args.storm_frames is not None:
        from sim import telemetry

        telemetry.STORM_FRAMES_MAX = args.storm_frames
    from sim.runner import simulate
    from sim.scenario import load_scenario

    with tempfile.TemporaryDirectory() as tmp:
        fork_file = Path(tmp) / "fork.json"
        instrument(fork_file)
        scenario = load_scenario(SCENARIO, overrides(args.devices, args.horizon_s, "vectorized"))
        load_before, state_before = os.getloadavg(), host_state()
        c0, w0 = cpu_s(), time.perf_counter()
        summary = simulate(scenario).summary
        cpu, wall = cpu_s() - c0, time.perf_counter() - w0
        state_after = host_state()
        child = json.loads(fork_file.read_text()) if fork_file.is_file() else {}
    parent = dict(SPENT)
    report = {"devices": args.devices, "horizon_s": args.horizon_s, "pinned_to_cpu": core, "wall_s": wall,
              "cpu_s": cpu, "events": summary.events, "frames": summary.telemetry.frames,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "host_state": [state_before, state_after],
              "parent": parent, "resumed_pass": child}  # fmt: skip
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def print_report(r: dict[str, Any]) -> None:
    where = f"core {r['pinned_to_cpu']}" if r["pinned_to_cpu"] is not None else "not pinned"
    print(
        f"{r['devices']:,} devices x {r['horizon_s']:g} s, vectorized, {where}: wall {r['wall_s']:.2f} s, CPU "
        f"{r['cpu_s']:.2f} s (this process and the fork it reaped), {r['events']:,} SimPy events, "
        f"{r['frames']:,} frames; load {r['loadavg_before'][0]:.2f} -> {r['loadavg_after'][0]:.2f}, "
        f"{state_line(*r['host_state'])}"
    )
    for who, parts in (("this process", r["parent"]), ("the resumed pass (fork)", r["resumed_pass"])):
        print(f"\n{who + ':':<52}  CPU s   wall s")
        for part, (c, w) in sorted(parts.items(), key=lambda kv: (not kv[0].startswith(("SimPy", "kernels (")),
                                                                   kv[0])):  # fmt: skip
            print(f"  {part:<50} {c:7.2f}  {w:7.2f}")
    print(
        "\n(this process's SimPy row holds the storm's and the loading and forking within it; kernels (all) "
        "holds the kernels.* and telemetry.* rows)"
    )


if __name__ == "__main__":
    main()
