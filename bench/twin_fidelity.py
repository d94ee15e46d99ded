"""Twin fidelity, held out: fit on one configuration, predict a matrix of others without refitting.

1. Calibrate this machine (``pqtwin calibrate``; ``--profile`` uses a given one instead).
2. Training runs (``--train-runs`` at each size, 2 by default, pooled): localhost.yaml, sequential, ML-KEM-768 +
   ML-DSA-65, 250 k parameters and 12.5 k (a code path's per-call cost and its per-size cost, which one size cannot
   tell apart; neither size is held out: the 250 k one is measured again with the matrix as its control, not
   counted in the goals, ``CONTROLS``), on the local twin; and as many at 2 M parameters (``TRAIN_LARGE_PARAMETERS``,
   ``work/wide-N``) whose messages alone (8 MB) widen the sizes the message code paths are fitted over, past the
   matrix's 4 MB (hw/fit.py ``messages_from``: not their training steps);
   ``pqtwin calibrate --from-run`` fits the twin's code-path overheads from their spans (hw/fit.py).
3. Matrix: 2 modes x suites (PQC L3, PQC L5 = ML-KEM-1024 + ML-DSA-87, classical X25519 + Ed25519, hybrid
   X25519+ML-KEM-768 + ML-DSA-65 unless --quick) x model sizes (50 k, 1 M): simulate with the fitted profile, run the
   twin ``--repeat`` times (passes over the whole matrix, every other one in reverse, so a cell's runs are minutes
   apart and, over two passes, at the same mean place in the bench as every other cell's; by default a suite and
   size's two modes in one ``--mode both`` run, their rounds in turn, ``--pairing rounds``: two runs of one cell back
   to back read up to 40 % apart on this host, so the modes share its state round by round, hw/modes.py), compare
   with the runs pooled (round latency p50 and p95 error, bootstrap 95 % CIs that resample runs, then rounds:
   hw/compare.py). Each run records the machine's load and how fast its cores ran against the calibration
   (hw/speed.py); ``--retries N`` adds up to N passes over the cells with no quiet run yet (``--min-quiet M``: fewer
   than M; the host's slow state lasts minutes at a time; the base calibration, too, is taken again up to N times while
   its cores changed speed as it measured, and the fit's training runs while not quiet), every run kept, and each cell
   is also scored on its quiet runs alone, the machine the goal is set on ("alone" in the table;
   ``error_p50_quiet_pct``, and the reductions' ``measured_quiet_pct`` in the JSON); the table shows how many runs were
   quiet and how far apart the runs' medians were, and "at speed": the median error of the same model simulated on cores
   as fast as the probe measured them (``deployment.hosts.*.cpu_speed``): what is left when the host's state is taken
   out. The fit, too, brings its training runs to the profile's speed (hw/fit.py). As root, each run also traces the
   kernel's scheduler (hw/schedtrace.py): the table shows how long the twin's threads waited for a core while one sat
   idle, per second of rounds -- waits processor-sharing cores never make (localhost.yaml's ``cpu_sharing: linux``
   models how threads are placed on cores, sim/hosts.py ``PlacedCores``). Before each pass, how much two trainings of
   the 1 M model slow each other now (``hw.calibrate.training_now``, ~5 s): the speed probe (16 KiB, in a core's L1)
   does not see the host's memory state, which moved the twin's 1 M steps by a fifth within an hour
   (docs/twin-validation.md, stop 36); the 1 M cells are also simulated at those passes' median ("at pair"). The same
   probe times a 1 M step alone, before the training runs and before each pass (``hw.calibrate.training_now``): the 1 M
   cells "at state" are the model at speed, at pair, its training as much dearer than fitted as the step alone was
   during the matrix than before the fit (``at_state``; a measurement of the host, not of the runs scored). Each twin
   run also times that step alone right after its rounds (``MachineLoad.training_probe``, hw/trainprobe.py), the fit's
   training runs too: the 1 M cells "at probe" are the model at speed with training as much dearer as their runs' probe
   read against the fit's, which is what ``pqtwin compare --at-speed`` shows.
4. Per suite and size, the concurrent-vs-sequential reduction of the median round latency, simulated and
   measured; then per cell and phase of the round (the model's distribution, distribute, receive, train,
   upload, verify, aggregate), the median's error and the difference of the medians in ms (in the JSON:
   ``phases``): which part of the round a cell's error comes from; and per cell the median training step,
   simulated and measured, the share of a step beside the other client's training, and "at pair" (``training``).
   Last, the goals line (``tally``; ``goals`` in the JSON): how many cells meet each goal, and the same for the
   model "at speed" apart, which judges the model where no run was quiet.
5. ``--netns`` (root): the paper's layout, paper-3node.yaml (three hosts on one switch), PQC L3, 250 k parameters,
   both modes, run on the netns backend (real TCP over kernel-shaped links, hw/netns.py) and simulated with the
   same fitted profile and the fabric's links as each run measured them before it started (hw/netns.py
   ``probe``: the latency of a hop, and one TCP stream's throughput, which the kernel's CPU work holds below a
   gigabit on this 2-vCPU machine; no netem here, so the gigabit links' 0.1 ms is not added), behind the machine's
   sending kernel as
   measured once before the matrix: the cells' messages over the cells' links, per second of the machine's CPU,
   at the calibration's speed (hw/sendcpu.py ``kernel_cpu_rate_bps``: ``Transport.host_rate_bps``; the model scales
   it with each run's ``cpu_speed`` "at speed", as it does the profile's costs). And the same layout on Wi-Fi
   (``paper-wifi netns``: 77 Mbit/s links of 3 ms, jitter and loss), whose latency and jitter the fabric applies by
   delay hops in user space (hw/delayline.py) and the simulation adds on top of the fabric's own.

Run: python bench/twin_fidelity.py [--quick] [--netns] [--repeat N] [--rounds N] [--json FILE] [--profile PROFILE]
     [--keep DIR] [--pairing rounds|runs] [--retries N [--min-quiet M]] [--sim-replications N]
     python bench/twin_fidelity.py --rescore DIR [--json FILE] [--sim-replications N]
     python bench/twin_fidelity.py --markdown FILE.json (the README's table of a matrix)
Goal: |median error| <= 5 % and |p95 error| <= 10 % in every cell on a quiet machine; measured reduction within
5 points of the simulated one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hw.at_speed import training_ratio
from hw.calibrate import calibrate, training_now
from hw.compare import AT_SPEED, ON_QUIET, compare_dirs, quiet_run
from hw.fit import fit_from_run, memory_at_price
from hw.local import run_local
from hw.netns import unavailable
from hw.runconfig import RunConfig
from hw.schedtrace import union_s
from hw.sendcpu import kernel_cpu_rate_bps
from hw.speed import run_slow_flags
from hw.trainprobe import PRICED_MIN_PARAMETERS
from sim.alternating import pair_reductions, split
from sim.contract import FL_PHASES, ROUND_SEGMENTS, RunLayout, Summary, read_spans, read_summary
from sim.errors import UserError
from sim.loading import in_range, out_json, read_json_object
from sim.profile import load_profile, write_profile
from sim.runner import ALTERNATING, simulate, write_run
from sim.scenario import Scenario, Transport, load_scenario
from sim.summary import ci95

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "localhost.yaml"
TRAIN: dict[str, Any] = {"suite": "PQC L3", "model_parameters": 250_000, "mode": "sequential"}
# the training runs' second model size, 20x smaller: with two sizes the fit tells a code path's per-call cost from
# its per-size one (hw/fit.py), which one size cannot; neither size is held out (the matrix: SIZES; CONTROLS)
TRAIN_SMALL_PARAMETERS = 12_500
# a third size whose messages (8 MB, not its training) the fit sees: with 53 KB and 1 MB alone, a message overhead's
# line carried the cache-warm 1 MB price's step on top of the memory-bound 4 MB price (docs/twin-validation.md,
# stop 70); 2 M is no size of the matrix (SIZES)
TRAIN_LARGE_PARAMETERS = 2_000_000
SUITES = {
    "PQC L3": ("ML-KEM-768", "ML-DSA-65"),
    "PQC L5": ("ML-KEM-1024", "ML-DSA-87"),
    "classical": ("X25519", "Ed25519"),
    "hybrid": ("X25519+ML-KEM-768", "ML-DSA-65"),
}
SIZES = (50_000, 1_000_000)
# simulated per cell: a 50 k concurrent cell's median moves ~1 % from seed to seed at 5 (its replications' own
# medians 13.6-15.5 ms), ~0.6 % at 20 (docs/twin-validation.md, stop 77)
SIM_REPLICATIONS = 5
PAIR_STATE_S = 4.0  # each pass's measurement of two trainings at once (as ``pqtwin calibrate`` measures a size)
PAIR_MAX = 10.0  # the most a profile's pair slowdown may say (sim/profile.py): a reading above it is kept at it
PAIR_FILE = "pair_states.json"  # in the work (--keep) directory: the passes' pair slowdowns and steps alone
MAX_STEP_S = 60.0  # a training step alone longer than this is not one this bench measured
FIT_STATE_FILE = "fit_state.json"  # in the work directory: the largest model's step alone before the training runs
PASSES_FILE = "passes.json"  # in the work directory: the passes over the matrix and the retry passes allowed
MODES = ("sequential", "concurrent")
PAPER = ROOT / "scenarios" / "paper-3node.yaml"
FABRIC_LATENCY_S = 7e-6  # per hop, a 1-byte TCP ping-pong across the fabric's switch (bench/net_fidelity.py)
LAYOUTS = {  # layout -> (scenario, extra overrides, backend)
    "localhost": (SCENARIO, [], "local"),
    "paper-3node netns": (PAPER, [], "netns"),  # its links: as the runs' fabrics measured them (``fabric``)
    # the paper's three hosts on 802.11ac instead (77 Mbit/s, 3 ms and 1 ms of jitter, 0.1 % loss a link): the links'
    # latency and jitter applied by delay hops (hw/delayline.py), slow start over a real round trip
    "paper-wifi netns": (PAPER, ["deployment.network.links.*.preset=wifi-5ghz"], "netns"),
}
NETNS_LAYOUTS = tuple(name for name, (_, _, backend) in LAYOUTS.items() if backend == "netns")


def overrides(suite: str, params: int, rounds: int) -> list[str]:
    kem, sig = SUITES[suite]
    return [f"workload.crypto.kem={kem}", f"workload.crypto.signature={sig}",
            f"workload.fl.model_parameters={params}", f"workload.fl.rounds={rounds}"]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    layout: str
    mode: str
    suite: str
    params: int

    @property
    def name(self) -> str:
        return f"{self.layout.replace(' ', '-')}-{self.mode}-{self.suite.replace(' ', '')}-{self.params}"

    def scenario(self, profile: Path, rounds: int, more: tuple[str, ...] = ()) -> Scenario:
        path, extra, _ = LAYOUTS[self.layout]
        return load_scenario(path, [*overrides(self.suite, self.params, rounds), *extra, *more], profile)


# the fit's own configuration, measured again with the matrix, each pass, as the matrix measures its cells (with the
# default --pairing rounds, the sequential half of a --mode both run, its rounds alternating with the concurrent
# ones: so it holds that pairing's effect too, which a plain run of the fit does not): not held out, so not in the
# goals, but its error says how far the host moved since the fit's runs -- a state neither probe sees moved every
# cell 10-25 % at 23:45 on 2026-12-04 (docs/twin-validation.md, stop 67) -- and a cell's error beyond the
# control's is the model's
CONTROLS = tuple(Cell("localhost", m, TRAIN["suite"], TRAIN["model_parameters"]) for m in MODES)


def is_control(c: Cell) -> bool:
    return c in CONTROLS


def largest_step() -> tuple[int, float]:
    """A training step of the largest model in the matrix's scenario: (a client's samples, the step's work in
    samples x parameters x epochs, sim/model.py's units of ``fl.train`` and its pair slowdown)."""
    fl = load_scenario(SCENARIO).workload.fl
    return fl.samples_per_client, float(fl.samples_per_client * max(SIZES) * fl.local_epochs)


def train(work: Path, base: Path, rounds: int, runs: int, retries: int = 0) -> tuple[list[Path], list[Path]]:
    """The training runs (``TRAIN`` at two sizes, ``runs`` each: ``work/train-N``), the fit's data, and as many at
    ``TRAIN_LARGE_PARAMETERS`` (``work/wide-N``), whose messages alone the fit takes; before them,
    the largest model's step alone and beside a copy (``FIT_STATE_FILE``): the memory state the fit meets.
    ``retries``: a run that was not quiet is run again, up to that many times (the one it replaces kept as
    ``work/noisy-train-N-A``, out of the fit: a busy run's overheads carry its neighbours' load)."""
    samples = largest_step()[0]
    if (now := training_now(samples, max(SIZES), PAIR_STATE_S)) is not None:
        state = {"model_parameters": max(SIZES), "samples": samples, "alone_step_s": [now.alone_s],
                 "pair_slowdown": [now.pair_slowdown]}  # fmt: skip
        (work / FIT_STATE_FILE).write_text(json.dumps(state) + "\n")
    trained: list[Path] = []
    wider: list[Path] = []
    for params in (TRAIN["model_parameters"], TRAIN_SMALL_PARAMETERS, TRAIN_LARGE_PARAMETERS):
        s = load_scenario(SCENARIO, overrides(TRAIN["suite"], params, rounds), base)
        into = wider if params == TRAIN_LARGE_PARAMETERS else trained
        for i in range(runs):
            out = work / (f"wide-{len(wider)}" if into is wider else f"train-{len(trained)}")
            for attempt in range(retries + 1):
                if attempt:
                    out.rename(work / f"noisy-{out.name}-{attempt}")
                got = run_local(s, out, "sequential", rounds, s.run.seed + i + runs * attempt)
                if quiet_run(got):
                    break
            into.append(out)
    return trained, wider


def measure(cells: list[Cell], work: Path, profile: Path, rounds: int, repeat: int, pairing: str = "rounds",
            retries: int = 0, min_quiet: int = 1,
            ) -> tuple[dict[Cell, list[Summary]], list[float], dict[Cell, list[int]]]:  # fmt: skip
    """Every cell's twin runs, ``repeat`` passes over the whole matrix: a cell's repeats are spread over the
    bench's duration, so they sample the host's speed states as the calibration did, not one moment's. Every other
    pass runs the cells in reverse (``pass_order``). Before each pass, how much two trainings of the largest model
    slow each other now, and how long one step takes alone (``PAIR_FILE``; ``kept_alone``): the slowdowns are the
    second value returned, one per pass (none on a host of one core). ``pairing`` rounds: a suite and size's two
    modes in one ``--mode both`` run of twice the rounds, their rounds in turn (hw/modes.py), each mode's cell
    scored on its half (``work/hw-CELL-k``, linked to it); runs: a run per cell. ``retries``: up to that many more
    passes, each over the cells with fewer than ``min_quiet`` quiet runs so far (hw/machine.py: busy, or cores at
    another speed than calibrated or changing speed), until every cell has them: later, not right away, because the
    host's slow state lasts minutes at a time (and a cell's runs spread 20-30 %: one quiet run judges it by one
    draw). Every run is kept and returned; the third value: each cell's pass numbers,
    in the order of its runs."""
    runs: dict[Cell, list[Summary]] = {c: [] for c in cells}
    numbers: dict[Cell, list[int]] = {c: [] for c in cells}
    passes = {"repeat": repeat, "retries": retries, "min_quiet": min_quiet}
    (work / PASSES_FILE).write_text(json.dumps(passes) + "\n")  # for --rescore
    states: list[float] = []
    alone: list[float] = []
    samples, _ = largest_step()
    for k in range(repeat + retries):
        if k >= repeat:  # a retry pass: only the cells with too few quiet runs yet
            todo = [c for c in cells if sum(quiet_run(r) for r in runs[c]) < min_quiet]
            if not todo:
                break
        else:
            todo = cells
            if (now := training_now(samples, max(SIZES), PAIR_STATE_S)) is not None:
                states.append(min(now.pair_slowdown, PAIR_MAX))
                alone.append(now.alone_s)
                kept = {"model_parameters": max(SIZES), "samples": samples, "pair_slowdown": states,
                        "alone_step_s": alone}  # fmt: skip
                (work / PAIR_FILE).write_text(json.dumps(kept) + "\n")
        done: set[Cell] = set()  # the run units run this pass (pairing rounds: a suite and size as mode both)
        for c in pass_order(todo, k):
            unit = c if pairing == "runs" else replace(c, mode="both")
            if unit in done:
                continue
            done.add(unit)
            for cell, summary in _run_unit(unit, work, profile, rounds, k).items():
                runs[cell].append(summary)
                numbers[cell].append(k)
    return runs, states, numbers


def _run_unit(unit: Cell, work: Path, profile: Path, rounds: int, n: int) -> dict[Cell, Summary]:
    """Run ``n`` of a run unit: a cell's run (``work/hw-CELL-n``), or (mode ``both``) its suite and size's two modes
    in one run (``_both_run``); each cell's run by cell."""
    if unit.mode == "both":
        return {replace(unit, mode=mode): s for mode, s in _both_run(unit, work, profile, rounds, n).items()}
    s = unit.scenario(profile, rounds)
    return {unit: run_local(s, work / f"hw-{unit.name}-{n}", unit.mode, rounds, s.run.seed + n,
                            backend=LAYOUTS[unit.layout][2])}  # fmt: skip


def paired_rounds(params: int, rounds: int) -> int:
    """Rounds of each mode in a ``--mode both`` run of a model of ``params``: ``rounds``, times SMALL_PAIRS for a
    small model, whose rounds are a tenth as long (~15 ms) and vary as much: its pairs' reductions spread ~±25
    points, so ten pairs left a CI of ±17 points (2026-12-04 13:42); fifty cost a second more."""
    return rounds * (SMALL_PAIRS if params < TRAIN["model_parameters"] else 1)


SMALL_PAIRS = 5


def _both_run(c: Cell, work: Path, profile: Path, rounds: int, k: int) -> dict[str, Summary]:
    """A ``--mode both`` run of the cell's (mode ``both``) suite and size (``paired_rounds`` of each mode): each
    mode's half, as its own run (``hw/modes.py``), linked as that mode's cell's run of pass ``k``."""
    n = 2 * paired_rounds(c.params, rounds)
    s = c.scenario(profile, n)
    out = work / f"hw-{c.name}-{k}"
    run_local(s, out, "both", n, s.run.seed + k, backend=LAYOUTS[c.layout][2])
    halves = split(out)
    for mode in MODES:
        (work / f"hw-{replace(c, mode=mode).name}-{k}").symlink_to(out / mode, target_is_directory=True)
    return halves


def pass_order(cells: list[Cell], k: int) -> list[Cell]:
    """The cells in pass ``k``'s order: as listed in even passes, reversed in odd ones (ABBA), so over two passes
    every cell's runs sit at the same mean place in the bench, and a mode's runs as often before the other mode's
    of the same suite and size as after: a host whose speed drifts through the bench moves every cell and both
    sides of a reduction alike, not the cells run last (or the concurrent ones, listed second) more."""
    return list(cells) if k % 2 == 0 else list(reversed(cells))


def fabric(c: Cell, hw: list[Summary], kernel_bps: float | None = None) -> tuple[str, ...]:
    """A netns cell's links as its runs' fabrics measured them before each run (``Summary.fabric``: latency, and
    one stream's throughput where the CPU holds it below the rate; the median over the runs), on the machine
    whose cores its hosts' namespaces share (``deployment.machine``), behind that machine's sending kernel as
    the bench measured it once (``kernel_bps``, ``kernel_rate``: ``Transport.host_rate_bps``; over each run's own
    measure of it, ``FabricProbe.kernel_rate_bps``, so that every cell of a matrix has the same); runs recorded
    before the probe get the latency bench/net_fidelity.py measured (``FABRIC_LATENCY_S``), nominal rates and a
    host's cores each."""
    if LAYOUTS[c.layout][2] != "netns":
        return ()
    kernel = (f"deployment.network.transport.host_rate_bps={kernel_bps:.6g}",) if kernel_bps else ()
    probes = [h.fabric for h in hw if h.state == "completed" and h.fabric is not None]
    if not probes:
        return (f"deployment.network.links.*.latency_s={FABRIC_LATENCY_S}", "deployment.network.links.*.jitter_s=0",
                *kernel)  # fmt: skip
    latency_s = float(np.median([p.latency_s for p in probes]))
    throughput_bps = float(np.median([p.throughput_bps for p in probes]))
    median = probes[0].model_copy(update={"latency_s": latency_s, "throughput_bps": throughput_bps})
    cores = next((h.machine_load.cores for h in hw if h.machine_load is not None), None)
    return (*median.overrides(cores), *kernel)


def at_pair(profile: Path, states: list[float], out: Path) -> Path | None:
    """``profile`` with ``fl.train``'s pair slowdown at the largest model set to the median of ``states`` (how much
    two such trainings slowed each other before each pass of the matrix), written to ``out``; None without
    states. The same model on the host's memory state of the hour, as ``cpu_speed`` puts it on its cores' speed:
    an explanation beside the error, not a fit."""
    if not states:
        return None
    data = yaml.safe_load(profile.read_text())
    train = data["ops"]["fl.train"]
    units, factor = largest_step()[1], min(float(np.median(states)), PAIR_MAX)
    points = [p for p in train.get("pair_slowdown") or [] if abs(p[0] / units - 1) > 0.01]
    train["pair_slowdown"] = sorted([*points, [units, factor]])
    write_profile(data, out)
    return out


def train_state(alone: list[float], fit_alone: float | None) -> float | None:
    """How much dearer the largest model's training step alone was before the matrix's passes (their median) than
    before the training runs the fit priced training from; None without both."""
    return float(np.median(alone)) / fit_alone if alone and fit_alone else None


def at_state(c: Cell, work: Path, pair_profile: Path, speed: float, state: float, rounds: int, reps: int,
             links: tuple[str, ...], done: list[Path]) -> dict[str, Any]:  # fmt: skip
    """The largest model's cell "at state": on cores as fast as the runs' probe measured them (``cpu_speed``), its
    training ``state`` x as dear as the fit priced it (``train_state``: the host's memory state then and during
    the matrix, measured by a step alone) and slowed beside another as much as two did during the matrix
    (``pair_profile``): every price the host's state moves set from a measurement of the host, none from the
    runs scored. What is left of the error there is the model's (an explanation beside the error, not a fit)."""
    mine = memory_as_measured(pair_profile, speed, work / f"profile-{c.name}-at-state.yaml", state)
    m = scored(c, work, mine, "at-state", rounds, reps, links, done, speed)
    return {"error_p50_at_state_pct": m["error_p50_pct"], "sim_p50_at_state_s": m["sim_p50"],
            "training_at_state": training_steps([work / f"sim-{c.name}-at-state"])}  # fmt: skip


def at_probe(c: Cell, work: Path, profile: Path, speed: float, hw: list[Summary], rounds: int, reps: int,
             links: tuple[str, ...], done: list[Path]) -> dict[str, Any]:  # fmt: skip
    """The cell "at probe", as ``pqtwin compare --at-speed`` simulates it (hw/at_speed.py): on cores as fast as its
    runs' speed probe read them, training as much dearer than the fit priced it as the runs' own training probe
    (taken right after each run's rounds) read against the fit's (the training runs'). Only where the runs and the
    fitted profile recorded the probe (hw/trainprobe.py), for the largest model (``PRICED_MIN_PARAMETERS``)."""
    if c.params < PRICED_MIN_PARAMETERS:  # its step stays in the caches: as ``compare --at-speed``, at speed only
        return {"error_p50_at_probe_pct": None, "training_ratio": None}
    platform = load_profile(profile).platform
    ratio = training_ratio([h.machine_load.training_probe if h.machine_load else None for h in hw], [platform])
    if ratio is None:
        return {"error_p50_at_probe_pct": None, "training_ratio": None}
    mine = memory_as_measured(profile, speed, work / f"profile-{c.name}-at-probe.yaml", ratio)
    m = scored(c, work, mine, "at-probe", rounds, reps, links, done, speed)
    return {"error_p50_at_probe_pct": m["error_p50_pct"], "training_ratio": ratio}


def scored(c: Cell, work: Path, profile: Path, label: str, rounds: int, reps: int, links: tuple[str, ...],
           done: list[Path], speed: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The cell simulated with ``profile`` (on cores ``speed`` x as fast, where given) into ``work/sim-CELL-LABEL``,
    its round latency compared with the runs ``done`` (compare's ``round_latency_s``)."""
    more = (*links, f"deployment.hosts.*.cpu_speed={speed:.4f}") if speed is not None else links
    simulate_cell(c, work, profile, rounds, more, reps, work / f"sim-{c.name}-{label}", alternated(done))
    metrics: dict[str, Any] = compare_dirs(work / f"sim-{c.name}-{label}", done[0], done[1:])["metrics"]
    return metrics["round_latency_s"]


def alternated(done: list[Path]) -> bool:
    """Whether a cell's runs ``done`` were halves of ``--mode both`` runs (``--pairing rounds``): a mode's directory
    of a split run keeps the whole run's run.json (hw/modes.py ``split``), which says so."""

    def both(d: Path) -> bool:
        try:
            return RunConfig.read(d).mode == "both"
        except ValueError:  # no run.json to read: not a twin run's half
            return False

    return bool(done) and all(both(d) for d in done)


def simulate_cell(c: Cell, work: Path, profile: Path, rounds: int, more: tuple[str, ...], reps: int, out: Path,
                  alternate: bool) -> None:  # fmt: skip
    """The cell simulated into run directory ``out``, ``rounds`` rounds a replication. ``alternate`` (its runs were
    ``--mode both`` runs: ``alternated``), as the twin ran them: one simulated run of twice the rounds, the two modes
    in turn (``sim.runner.ALTERNATING``), split as the twin's run was (``sim.alternating.split``)
    -- its connections' windows and send buffers age across both modes' rounds as the twin's do, where a run of the
    mode alone starts them fresh (a quick Wi-Fi cell, 10 rounds a mode: 1,535 ms measured against 1,354 in the full
    matrix's runs of 20; docs/twin-validation.md, "Stop 89"). The two cells of a pair simulate it once."""
    if not alternate:
        s = c.scenario(profile, rounds, more)
        write_run(simulate(s, c.mode, replications=reps, workers=0), out, s)
        return
    both = replace(c, mode="both")
    key = (str(work), both.name, str(profile), 2 * rounds, more, reps)
    whole = _ALTERNATED.get(key)
    if whole is None:
        whole = _ALTERNATED[key] = work / f"sim-{both.name}-alternating-{len(_ALTERNATED)}"
        s = c.scenario(profile, 2 * rounds, more)
        shutil.rmtree(whole, ignore_errors=True)
        write_run(simulate(s, ALTERNATING, replications=reps, workers=0), whole, s)
        split(whole)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(whole / c.mode, out)


_ALTERNATED: dict[tuple[Any, ...], Path] = {}  # ``simulate_cell``'s alternating runs in this process, by what they hold


def memory_as_measured(profile: Path, speed: float, out: Path, train: float = 1.0) -> Path:
    """``profile`` with the work that runs from memory priced as measured on cores ``speed`` x as fast
    (``hw.fit.memory_at_price``; "at speed"), ``fl.train`` ``train`` x its price besides ("at state",
    ``at_state``), written to ``out``."""
    data = memory_at_price(yaml.safe_load(profile.read_text()), speed, train)
    write_profile(data, out)
    return out


def score(c: Cell, work: Path, profile: Path, rounds: int, reps: int, hw: list[Summary],
          kernel_bps: float | None = None, pair_profile: Path | None = None,
          passes: list[int] | None = None, state: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Simulate the cell and compare with its pooled twin runs (repeats resampled as clusters; ``work/hw-CELL-k``,
    k each run's pass: ``passes``, by default 0, 1 ...); a cell of the largest model also with ``pair_profile``
    (``at_pair``), where given, and with ``state`` (``train_state``) at the runs' speed too: "at state"
    (``at_state``). Simulated for as many rounds a replication as its runs measured (``rounds`` where none
    finished): a 50 k cell's runs hold 5x the rounds, and its simulated median then rests on as many rounds too --
    and a --rescore simulates what the live bench did."""
    rounds = max((h.rounds_completed for h in hw if h.state == "completed"), default=rounds)
    links = fabric(c, hw, kernel_bps)
    numbers = passes if passes is not None else list(range(len(hw)))
    done = [work / f"hw-{c.name}-{k}" for k, h in zip(numbers, hw, strict=True) if h.state == "completed"]
    simulate_cell(c, work, profile, rounds, links, reps, work / f"sim-{c.name}", alternated(done))
    head = {"layout": c.layout, "mode": c.mode, "suite": c.suite, "model_parameters": c.params,
            "control": is_control(c)}  # fmt: skip
    if not done:
        return head | {"error": f"{hw[0].state}: {hw[0].reason}"}
    metrics = compare_dirs(work / f"sim-{c.name}", done[0], done[1:])["metrics"]
    m, fast = metrics["round_latency_s"], metrics.get(AT_SPEED)
    quiet = sum(quiet_run(h) for h in hw)  # compare scores them alone where some runs were quiet and some not
    loads = [h.machine_load for h in hw if h.machine_load is not None and h.state == "completed"]
    speeds = [x for x in (ld.speed_vs_calibration for ld in loads) if x is not None]
    adjusted: dict[str, Any] = {"error_p50_adjusted_pct": None, "error_p95_adjusted_pct": None,
                                "sim_p50_adjusted_s": None}  # fmt: skip
    if speeds:  # the same model on cores as fast as the twin's were (measured by the probe, not fitted)
        speed = float(np.median(speeds))
        mine = memory_as_measured(profile, speed, work / f"profile-{c.name}-at-speed.yaml")
        a = scored(c, work, mine, "at-speed", rounds, reps, links, done, speed)
        adjusted = {"error_p50_adjusted_pct": a["error_p50_pct"], "error_p95_adjusted_pct": a["error_p95_pct"],
                    "sim_p50_adjusted_s": a["sim_p50"]}  # fmt: skip
        adjusted |= at_probe(c, work, profile, speed, [h for h in hw if h.state == "completed"], rounds, reps, links,
                             done)  # fmt: skip
    paired: dict[str, Any] = {"error_p50_at_pair_pct": None, "training_at_pair": None}
    if pair_profile is not None and c.params == max(SIZES) and LAYOUTS[c.layout][2] == "local":
        p = scored(c, work, pair_profile, "at-pair", rounds, reps, links, done)
        paired = {"error_p50_at_pair_pct": p["error_p50_pct"],
                  "training_at_pair": training_steps([work / f"sim-{c.name}-at-pair"])}  # fmt: skip
        if speeds and state:
            paired |= at_state(c, work, pair_profile, float(np.median(speeds)), state, rounds, reps, links, done)
    return head | adjusted | paired | {
        "links": list(links), "phases": phase_errors(metrics), "segments": segment_means(metrics),
        "training": {"sim": training_steps([work / f"sim-{c.name}"]), "hw": training_steps(done)},
        "worker_parallelism": {"sim": worker_parallelism([work / f"sim-{c.name}"]), "hw": worker_parallelism(done)},
        "job_legs": {"sim": job_legs([work / f"sim-{c.name}"]), "hw": job_legs(done),
                     "hw_at_speed": job_legs(done, at_speed=True)},
        "sim_p50_s": m["sim_p50"], "hw_p50_s": m["hw_p50"], "sim_p95_s": m["sim_p95"], "hw_p95_s": m["hw_p95"],
        "error_p50_pct": m["error_p50_pct"], "error_p50_ci95": m["error_p50_ci95"],
        "error_p95_pct": m["error_p95_pct"], "error_p95_ci95": m["error_p95_ci95"],
        **_at_speed(fast), **_on_quiet(quiet, m if quiet == len(done) else metrics.get(ON_QUIET)),
        "hw_runs": len(done), "hw_runs_failed": [f"{h.state}: {h.reason}" for h in hw if h.state != "completed"],
        "hw_run_spread_pct": m.get("hw_run_spread_pct"),
        "quiet": bool(loads) and all(ld.quiet for ld in loads), "quiet_runs": sum(ld.quiet for ld in loads),
        "speed_vs_calibration": float(np.median(speeds)) if speeds else None,
        "idle_core_wait_per_s": _idle_core_wait(loads),
        "idle_core_wait_after_preemption_per_s": _idle_core_wait(loads, "preempted"),
        "machine_load": [ld.model_dump() for ld in loads],
    }  # fmt: skip


# a round's phases, in their order (compare has no metric for the sessions' handshakes: not every round has one)
PHASES = tuple(p for p in FL_PHASES if p != "handshake")


def phase_errors(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per phase of the round, and the model's distribution to every client: both medians and the median's error
    with its CI, from ``pqtwin compare``'s metrics (a phase with no values on either side is left out). Where a
    cell's round error comes from: in concurrent mode the phases of different clients overlap, so their
    differences need not add up to the round's."""
    out = {}
    for name, key in (("distribution", "model_distribution_s"), *((p, f"phase_s.{p}") for p in PHASES)):
        m = metrics.get(key)
        if m is not None and m.get("error_p50_pct") is not None:
            out[name] = {"sim_p50_s": m["sim_p50"], "hw_p50_s": m["hw_p50"], "error_p50_pct": m["error_p50_pct"],
                         "error_p50_ci95": m["error_p50_ci95"]}  # fmt: skip
    return out


def segment_means(metrics: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """Each segment of a round (``sim.contract.ROUND_SEGMENTS``, compare's ``segment_s.*``): both means (s). They
    add up to the round's means, so their differences say where in the round the cell's error is; None where
    compare has no segments (a side without completed rounds)."""
    seg = {name: metrics.get(f"segment_s.{name}") for name in ROUND_SEGMENTS}
    if any(m is None for m in seg.values()):
        return None
    return {name: {"sim_mean_s": m["sim_mean"], "hw_mean_s": m["hw_mean"]} for name, m in seg.items()}


def print_segments(cells: list[dict[str, Any]]) -> None:
    """Per cell: each round segment's difference of means (ms, simulated − measured) and their sum, the round's
    (means, not the medians the goal is on). Nothing where no cell has segments."""
    if not any(c.get("segments") for c in cells):
        return
    print("where in the round each cell's error is: difference of mean segments, simulated - measured (ms; they add "
          "up to the round's)")  # fmt: skip
    print(f"{'layout':17s} {'mode':11s} {'suite':10s} {'params':>9s} "
          + " ".join(f"{n:>9s}" for n in ROUND_SEGMENTS) + f" {'round':>9s}")  # fmt: skip
    for c in cells:
        seg = c.get("segments")
        if not seg:
            continue
        diffs = [(seg[n]["sim_mean_s"] - seg[n]["hw_mean_s"]) * 1e3 for n in ROUND_SEGMENTS]
        row = " ".join(f"{d:+9.2f}" for d in diffs)
        print(f"{c['layout']:17s} {c['mode']:11s} {c['suite']:10s} {c['model_parameters']:9d} {row} {sum(diffs):+9.2f}")


def print_phases(cells: list[dict[str, Any]]) -> None:
    """Per cell and phase: the median's error (%) and the difference of the medians (ms, simulated − measured);
    last, the phase the model is furthest off in time (of the round's phases: the model's distribution spans
    several of them). Nothing where no cell has phases."""
    names = ("distribution", *PHASES)
    if not any(c.get("phases") for c in cells):
        return
    print("per phase, median error % (simulated - measured, ms):")
    print(f"{'layout':17s} {'mode':11s} {'suite':10s} {'params':>9s} " + " ".join(f"{n:>14s}" for n in names)
          + "  furthest off")  # fmt: skip
    for c in cells:
        phases = c.get("phases")
        if not phases:
            continue
        row = " ".join(f"{_phase_cell(phases.get(n)):>14s}" for n in names)
        off = {n: ph["sim_p50_s"] - ph["hw_p50_s"] for n, ph in phases.items() if n != "distribution"}
        worst = max(off, key=lambda n: abs(off[n])) if off else None
        far = f"{worst} {off[worst] * 1e3:+.2f} ms" if worst else "-"
        print(f"{c['layout']:17s} {c['mode']:11s} {c['suite']:10s} {c['model_parameters']:9d} {row}  {far}")


def training_steps(dirs: list[Path]) -> dict[str, float | int | None] | None:
    """The runs' training steps (``fl.train`` spans): the median step (s) and the median share of a step that ran
    beside another pod's training on the same replication's clock (the pair the profile's ``pair_slowdown``
    prices); None where they have none. The twin's sequential steps ran 3-12 % longer than its concurrent ones in
    every matrix kept on 2026-11-30/12-01, though less of them ran beside the other client's (docs/twin-validation.md,
    stop 36).
    Also how far apart a round's steps ended (the median over rounds with two steps or more of the last end less
    the first, s; None without such rounds): a round waits for its last update, and a model whose steps jitter
    more than the twin's ends them further apart (docs/twin-validation.md, stop 38: 38-46 ms against the
    twin's 13-23 at 1 M).
    And, over rounds with two steps or more, the median step of the round's first-started and of its last-started
    client (``first_p50_s``, ``last_p50_s``; None without such rounds): a sequential round starts its clients one
    model apart, and in the twin the first 1 M step ran a median 12 ms longer than the last (2026-12-04 02:31, 6 of 6
    runs), where the model's first is 2-4 ms longer (docs/twin-validation.md, stop 59)."""
    steps, beside, apart, first, last = [], [], [], [], []
    for d in dirs:
        spans = read_spans(RunLayout(d).spans)
        train = spans[spans["op"] == "fl.train"]
        for _, g in train.groupby("replication"):
            start, end, pod = g["start_s"].to_numpy(), g["end_s"].to_numpy(), g["pod"].to_numpy()
            for i in range(len(g)):
                other = pod != pod[i]
                overlap = np.clip(np.minimum(end[other], end[i]) - np.maximum(start[other], start[i]), 0, None)
                steps.append(end[i] - start[i])
                beside.append(min(1.0, overlap.sum() / (end[i] - start[i])) if end[i] > start[i] else 0.0)
        for _, g in train[train["round"] > 0].groupby(["replication", "round"]):
            if len(g) >= 2:  # a round's steps: how far apart they end, its first- and its last-started
                apart.append(float(g["end_s"].max() - g["end_s"].min()))
                g = g.sort_values("start_s", kind="stable")
                first.append(float(g["end_s"].iloc[0] - g["start_s"].iloc[0]))
                last.append(float(g["end_s"].iloc[-1] - g["start_s"].iloc[-1]))
    if not steps:
        return None
    return {"step_p50_s": float(np.median(steps)), "beside_training_p50": float(np.median(beside)), "steps": len(steps),
            "ends_apart_p50_s": float(np.median(apart)) if apart else None,
            "first_p50_s": float(np.median(first)) if first else None,
            "last_p50_s": float(np.median(last)) if last else None}  # fmt: skip


def worker_parallelism(dirs: list[Path]) -> dict[str, float] | None:
    """How side by side the crypto workers' jobs of a distribution ran (concurrent mode): per round, the workers'
    busy time (the sum of their spans in the ``distribute`` phase) over the time any was busy (their union): 1
    serial, 2 two at once. Median and 25th percentile over the runs' rounds; None where no worker ran. The model
    read 1.29-1.42 (25th 1.00) where the twin read 1.44-1.62 (1.16-1.34) in the kept matrices of 2026-12-01: its
    concurrent 50 k rounds ran long (docs/twin-validation.md, stop 37)."""
    ratios = []
    for d in dirs:
        spans = read_spans(RunLayout(d).spans)
        jobs = spans[(spans["phase"] == "distribute") & spans["pod"].str.startswith("worker") & (spans["round"] > 0)]
        for _, g in jobs.groupby(["replication", "round"]):
            busy = float((g["end_s"] - g["start_s"]).sum())
            union = union_s(list(zip(g["start_s"], g["end_s"], strict=True)))
            if union > 0:
                ratios.append(busy / union)
    if not ratios:
        return None
    return {"p50": float(np.median(ratios)), "p25": float(np.percentile(ratios, 25)), "rounds": len(ratios)}


JOB_PHASES = ("distribute", "verify")  # the phases whose jobs go to a crypto worker (concurrent, worker pods)
LEGS = ("out", "worker", "back")


def job_legs(dirs: list[Path], at_speed: bool = False) -> dict[str, dict[str, float | int]] | None:
    """Where a delegated phase's time goes, by leg, per round (median over the runs' rounds 1..; seconds): ``out``
    from the phase's first span (a job queued) to a worker's first decryption (the job packed, sealed, carried,
    its receiver woken); ``worker`` from there to the worker's last encryption's end (its jobs); ``back`` from
    there to the phase's end (the answer carried and opened; in ``distribute`` the record sent on to its
    client). Per phase in ``JOB_PHASES``; None where no worker ran. ``at_speed``: only the rounds the speed probe
    saw at the calibration's speed (hw/speed.py ``run_slow_flags``; measured runs). The legs of the kept matrix of
    2026-12-02 08:50 put the model's concurrent 50 k error in the answer's way back (docs/twin-validation.md,
    stop 53), which the phases alone did not."""
    legs: dict[str, list[tuple[float, float, float]]] = {p: [] for p in JOB_PHASES}
    for d in dirs:
        spans = read_spans(RunLayout(d).spans)
        fast = _rounds_at_speed(d, spans) if at_speed else None
        if at_speed and fast is None:  # the run kept no probe samples: which rounds ran at speed is unknown
            continue
        for (phase, _, rnd), g in spans[spans["phase"].isin(JOB_PHASES) & (spans["round"] > 0)].groupby(
                ["phase", "replication", "round"]):  # fmt: skip
            if fast is not None and rnd not in fast:
                continue
            worker = g[g["pod"].str.startswith("worker")]
            opened = worker.loc[worker["op"].str.endswith(".decrypt"), "start_s"]
            sealed = worker.loc[worker["op"].str.endswith(".encrypt"), "end_s"]
            if opened.empty or sealed.empty:
                continue
            first, last = float(opened.min()), float(sealed.max())
            legs[str(phase)].append((first - g["start_s"].min(), last - first, g["end_s"].max() - last))
    out = {p: {**dict(zip(LEGS, np.median(np.array(v), axis=0).tolist(), strict=True)), "rounds": len(v)}
           for p, v in legs.items() if v}  # fmt: skip
    return out or None


def _rounds_at_speed(d: Path, spans: Any) -> set[int] | None:
    """The rounds of run ``d`` the speed probe saw at the calibration's speed; None where it kept no samples."""
    rounds = spans[(spans["phase"] == "round") & (spans["op"] == "round")]
    flags = run_slow_flags(d, rounds["start_s"].to_numpy(), rounds["end_s"].to_numpy(), _calibrated_us(d))
    return None if flags is None else {int(r) for r in rounds["round"].to_numpy()[flags == 0]}


def _calibrated_us(d: Path) -> float | None:
    """The speed probe's time at the calibration of measured run ``d`` (its summary's machine load), if known."""
    load = read_summary(RunLayout(d).summary).machine_load
    return load.calibrated_probe_us if load is not None else None


def print_legs(cells: list[dict[str, Any]]) -> None:
    """Per concurrent cell with workers and delegated phase: its legs (``job_legs``), simulated / measured /
    measured at speed (ms). Nothing where no cell has workers."""
    rows = [c for c in cells if (c.get("job_legs") or {}).get("hw")]
    if not rows:
        return
    print("a worker's jobs by leg, median ms (simulated / measured / measured at speed): the job out to a worker, "
          "the worker's jobs, the answer back to the phase's end")  # fmt: skip
    for c in rows:
        legs = c["job_legs"]
        for phase in JOB_PHASES:
            sides = [(legs.get(k) or {}).get(phase) for k in ("sim", "hw", "hw_at_speed")]
            if sides[1] is None:
                continue
            cols = "  ".join(f"{leg} " + " / ".join("-" if x is None else f"{x[leg] * 1e3:.2f}" for x in sides)
                             for leg in LEGS)  # fmt: skip
            fast = f" ({sides[2]['rounds']} rounds at speed)" if sides[2] else ""
            print(f"{c['layout']:17s} {c['mode']:11s} {c['suite']:10s} {c['model_parameters']:9d} {phase:10s} "
                  f"{cols}{fast}")  # fmt: skip


def steps_by_pass(work: Path, passes: int | None = None) -> list[float | None]:
    """Per pass over the matrix (a cell's runs ``hw-CELL-k``): the median training step of the largest model's
    localhost runs in it (s), None where it has none: set beside the pair slowdown measured before that pass.
    ``passes``: how many passes the matrix made (runs numbered from there on are ``--retries``, left out)."""
    by: dict[int, list[Path]] = {}
    for d in work.glob(f"hw-localhost-*-{max(SIZES)}-*"):
        number = d.name.rpartition("-")[2]
        if number.isdigit() and (passes is None or int(number) < passes) and (d / "spans.parquet").exists():
            by.setdefault(int(number), []).append(d)
    out: list[float | None] = []
    for k in range(max(by) + 1 if by else 0):  # a pass that ran none of them: None, the later ones in place
        steps = training_steps(sorted(by[k])) if k in by else None
        out.append(steps["step_p50_s"] if steps else None)
    return out


def print_training(cells: list[dict[str, Any]], states: list[float] | None = None,
                   by_pass: list[float | None] | None = None, alone: list[float] | None = None,
                   fit_alone: float | None = None) -> None:  # fmt: skip
    """Per cell: the median training step, simulated and measured, and the share of a step beside the other
    client's training (measured); with the pair slowdowns measured during the matrix (``states``), the largest
    model's cells simulated at their median too (``at_pair``), and with the steps alone before the passes
    (``alone``) and before the training runs (``fit_alone``) at state (``at_state``). Nothing where no cell trained."""
    rows = [c for c in cells if (c.get("training") or {}).get("hw")]
    if not rows:
        return
    if states:
        print(
            f"two {max(SIZES):,}-parameter trainings at once, before each pass of the matrix: "
            + ", ".join(f"x{x:.2f}" for x in states)
            + " (the cells 'at pair': the model at their median)"
        )
    if alone and fit_alone and (state := train_state(alone, fit_alone)) is not None:
        print(
            f"a {max(SIZES):,}-parameter training step alone, before the training runs: {fit_alone * 1e3:.1f} ms, "
            "before each pass: "
            + ", ".join(f"{x * 1e3:.1f}" for x in alone)
            + f" ms (the cells 'at state': at speed, training x{state:.2f} as dear as fitted, at pair)"
        )
    if by_pass:
        steps = ", ".join("-" if x is None else f"{x * 1e3:.1f}" for x in by_pass)
        print(f"the twin's {max(SIZES):,}-parameter training steps, median of each pass: {steps} ms")
    print(
        "training steps, median (simulated / measured), the share of a step beside another training (measured) and "
        "how far apart a round's steps end (simulated / measured), the round's first- and last-started step (median):"
    )
    for c in rows:
        sim, hw = c["training"]["sim"], c["training"]["hw"]
        simulated = f"{sim['step_p50_s'] * 1e3:7.2f}" if sim else "      -"
        error = f" ({100 * (sim['step_p50_s'] / hw['step_p50_s'] - 1):+.1f} %)" if sim else ""
        at = "".join(
            f"; at {label} {t['step_p50_s'] * 1e3:.2f} ms, round error p50 {c[f'error_p50_at_{label}_pct']:+.1f} %"
            for label in ("pair", "state")
            if (t := c.get(f"training_at_{label}"))
        )
        if c.get("error_p50_at_probe_pct") is not None:
            at += (f"; at probe (training x{c['training_ratio']:.2f}) round error p50 "
                   f"{c['error_p50_at_probe_pct']:+.1f} %")  # fmt: skip
        apart = [None if x is None else x.get("ends_apart_p50_s") for x in (sim, hw)]
        ends = (f", a round's steps end {' / '.join('-' if x is None else f'{x * 1e3:.1f}' for x in apart)} ms apart"
                if any(x is not None for x in apart) else "")  # fmt: skip
        ends += _first_last(sim, hw)
        print(f"{c['layout']:17s} {c['mode']:11s} {c['suite']:10s} {c['model_parameters']:9d} {simulated} / "
              f"{hw['step_p50_s'] * 1e3:7.2f} ms{error}, beside {hw['beside_training_p50']:.2f}{ends}{at}")  # fmt: skip


def _first_last(sim: dict[str, Any] | None, hw: dict[str, Any]) -> str:
    """The table's ", first / last-started step S1 / S2 simulated, M1 / M2 measured" (ms); "" where no run has them."""
    if hw.get("first_p50_s") is None:
        return ""
    pairs = [f"{x['first_p50_s'] * 1e3:.1f} / {x['last_p50_s'] * 1e3:.1f}" if x and x.get("first_p50_s") is not None
             else "-" for x in (sim, hw)]  # fmt: skip
    return f", first / last-started step {pairs[0]} simulated, {pairs[1]} measured"


def print_parallelism(cells: list[dict[str, Any]]) -> None:
    """Per concurrent cell: how side by side the workers' jobs of a distribution ran, simulated and measured
    (``worker_parallelism``). Nothing where no cell has workers."""
    rows = [c for c in cells if (c.get("worker_parallelism") or {}).get("hw")]
    if not rows:
        return
    print("workers' jobs side by side in a distribution (busy / union; 1 serial, 2 both at once), median (25th):")
    for c in rows:
        sim, hw = c["worker_parallelism"]["sim"], c["worker_parallelism"]["hw"]
        simulated = f"{sim['p50']:.2f} ({sim['p25']:.2f})" if sim else "-"
        print(
            f"{c['layout']:17s} {c['mode']:11s} {c['suite']:10s} {c['model_parameters']:9d} simulated {simulated}, "
            f"measured {hw['p50']:.2f} ({hw['p25']:.2f})"
        )


def _phase_cell(ph: dict[str, Any] | None) -> str:
    if ph is None:
        return "-"
    return f"{ph['error_p50_pct']:+.0f}% ({(ph['sim_p50_s'] - ph['hw_p50_s']) * 1e3:+.1f})"


def _at_speed(m: dict[str, Any] | None) -> dict[str, Any]:
    """The cell's error over the measured rounds the speed probe saw at the calibration's speed (hw/compare.py
    ``AT_SPEED``), and how many rounds those were: None where the runs kept no probe samples."""
    if m is None:
        return {"rounds_at_speed": None, "error_p50_at_speed_pct": None, "error_p50_at_speed_ci95": None,
                "error_p95_at_speed_pct": None, "hw_p50_at_speed_s": None}  # fmt: skip
    return {"rounds_at_speed": m["n_hw"], "error_p50_at_speed_pct": m["error_p50_pct"],
            "error_p50_at_speed_ci95": m["error_p50_ci95"], "error_p95_at_speed_pct": m["error_p95_pct"],
            "hw_p50_at_speed_s": m["hw_p50"]}  # fmt: skip


def _on_quiet(runs: int, m: dict[str, Any] | None) -> dict[str, Any]:
    """The cell scored on its ``runs`` quiet runs alone (``m``: compare's round latency over them, hw/compare.py
    ``ON_QUIET``, or over every run where all were quiet): the issue's goal is on a quiet machine, and on this host
    the cores change state for seconds at a time, so the quiet runs are what that goal can be judged on. None where
    no run was quiet."""
    if not runs or m is None:
        return {"quiet_scored_runs": 0, "error_p50_quiet_pct": None, "error_p50_quiet_ci95": None,
                "error_p95_quiet_pct": None, "hw_p50_quiet_s": None}  # fmt: skip
    return {"quiet_scored_runs": runs, "error_p50_quiet_pct": m["error_p50_pct"],
            "error_p50_quiet_ci95": m["error_p50_ci95"], "error_p95_quiet_pct": m["error_p95_pct"],
            "hw_p50_quiet_s": m["hw_p50"]}  # fmt: skip


def _idle_core_wait(loads: list[Any], cause: str | None = None) -> float | None:
    """Seconds per second of rounds the twin's threads waited for a core while one was idle (median over the
    traced runs; hw/schedtrace.py), or the part of it that began with ``cause`` ("preempted", "woken"), None
    where not traced (or not split)."""
    traced = [ld.sched for ld in loads if ld.sched is not None and ld.sched.window_s > 0]
    if cause is None:
        per = [w.idle_core_wait_per_s for w in traced]
    else:
        per = [w.by_cause_idle_core_wait_s[cause] / w.window_s for w in traced if cause in w.by_cause_idle_core_wait_s]
    return float(np.median(per)) if per else None


def reductions(cells: list[dict[str, Any]], runs_in: Path | None = None) -> list[dict[str, Any]]:
    """Concurrent vs sequential, per suite and size: 1 - conc p50 / seq p50, simulated and measured (%); with the
    matrix's ``--mode both`` runs in ``runs_in``, also the mean of the per-pair reductions of their ABBA pairs of
    rounds, pooled over the passes, with its 95 % CI (``measured_pairs_pct``, ``..._ci95_pct``, ``pairs``)."""
    out = []
    by = {(c["layout"], c["mode"], c["suite"], c["model_parameters"]): c for c in cells
          if "error" not in c and not c.get("control")}  # fmt: skip
    for (layout, mode, suite, params), seq in by.items():
        conc = by.get((layout, "concurrent", suite, params))
        if mode != "sequential" or conc is None:
            continue
        sim = 100 * (1 - conc["sim_p50_s"] / seq["sim_p50_s"])
        hw = 100 * (1 - conc["hw_p50_s"] / seq["hw_p50_s"])
        fast = None  # measured from the rounds at the calibration's speed, where both modes have some
        if conc.get("hw_p50_at_speed_s") and seq.get("hw_p50_at_speed_s"):
            fast = 100 * (1 - conc["hw_p50_at_speed_s"] / seq["hw_p50_at_speed_s"])
        on_quiet = None  # measured on the quiet runs alone, where both modes have some (``_on_quiet``)
        if conc.get("hw_p50_quiet_s") and seq.get("hw_p50_quiet_s"):
            on_quiet = 100 * (1 - conc["hw_p50_quiet_s"] / seq["hw_p50_quiet_s"])
        adj = None  # the model at the runs' measured speed (the table's "at speed"), where both modes have it
        if conc.get("sim_p50_adjusted_s") and seq.get("sim_p50_adjusted_s"):
            adj = 100 * (1 - conc["sim_p50_adjusted_s"] / seq["sim_p50_adjusted_s"])
        out.append({"layout": layout, "suite": suite, "model_parameters": params, "simulated_pct": sim,
                    "measured_pct": hw, "difference_points": sim - hw, "measured_at_speed_pct": fast,
                    "difference_at_speed_points": None if fast is None else sim - fast,
                    "simulated_adjusted_pct": adj, "difference_adjusted_points": None if adj is None else adj - hw,
                    "measured_quiet_pct": on_quiet,
                    "difference_quiet_points": None if on_quiet is None else sim - on_quiet,
                    **_pairs(runs_in, Cell(layout, "both", suite, params))})  # fmt: skip
    return out


def _pairs(runs_in: Path | None, both: Cell) -> dict[str, Any]:
    """The per-pair reductions of the cell's ``--mode both`` runs in ``runs_in`` (hw/modes.py), pooled: their mean
    and its 95 % CI, in %; {} where there are none (``--pairing runs``)."""
    spans = [read_spans(RunLayout(d).spans) for d in sorted(runs_in.glob(f"hw-{both.name}-*"))
             if (d / RunLayout.MODES).is_file()] if runs_in is not None else []  # fmt: skip
    values = [pair_reductions(df, int(df["round"].max())) for df in spans if len(df)]
    pooled = np.concatenate(values) if values else np.array([])
    if pooled.size < 2:
        return {}
    lo, hi = ci95(pooled)
    return {"pairs": int(pooled.size), "measured_pairs_pct": 100 * float(pooled.mean()),
            "measured_pairs_ci95_pct": [100 * lo, 100 * hi]}  # fmt: skip


P50_GOAL_PCT, P95_GOAL_PCT, REDUCTION_GOAL_POINTS = 5.0, 10.0, 5.0  # issue 9's goals per cell
FAST_MIN_ROUNDS = 5  # the goals line's "rounds at the calibrated speed": cells with at least this many such rounds


def tally(cells: list[dict[str, Any]], reds: list[dict[str, Any]]) -> dict[str, Any]:
    """The matrix against the goals, in counts: the cells scored, mean |median error|, medians within
    ``P50_GOAL_PCT``, p95s within ``P95_GOAL_PCT``, both, and reductions within ``REDUCTION_GOAL_POINTS``; and the
    same medians of the model at the runs' measured speed (the table's "at speed", ``error_p50_adjusted_pct``:
    ``adjusted_*`` here, not the "fast rounds"), which on a host whose cores changed state is what judges the model.
    An error that could not be computed counts as not met and is left out of the means (None: none). The control
    cells (``CONTROLS``) are not held out: not counted, but the sequential one's errors are reported beside
    (``control_*``)."""
    control = next((c for c in cells if c.get("control") and c["mode"] == "sequential"), None)
    failed_control = control is not None and "error" in control
    control = None if failed_control else control
    cells = [c for c in cells if not c.get("control")]
    ok = [c for c in cells if "error" not in c]
    p50, p95 = _errors(ok, "error_p50_pct"), _errors(ok, "error_p95_pct")
    adjusted = _errors(ok, "error_p50_adjusted_pct")
    state = _errors(ok, "error_p50_at_state_pct")
    probe = _errors(ok, "error_p50_at_probe_pct")
    # the rounds the speed probe saw at the calibrated speed, where a cell has enough of them to have a median
    enough = [c.get("error_p50_at_speed_pct") is not None and (c.get("rounds_at_speed") or 0) >= FAST_MIN_ROUNDS
              for c in ok]  # fmt: skip
    fast = np.array(
        [c["error_p50_at_speed_pct"] if e else np.nan for c, e in zip(ok, enough, strict=True)], dtype=float
    )
    both = (np.abs(p50) <= P50_GOAL_PCT) & (np.abs(p95) <= P95_GOAL_PCT)
    q50, q95 = _errors(ok, "error_p50_quiet_pct"), _errors(ok, "error_p95_quiet_pct")  # the quiet runs alone
    on_quiet = [r["difference_quiet_points"] for r in reds if r.get("difference_quiet_points") is not None]
    quiet = np.array([bool(c["quiet"]) for c in ok], dtype=bool)  # the goal is on a quiet machine
    return {"cells": len(ok), "failed": len(cells) - len(ok), "mean_abs_error_p50_pct": _mean_abs(p50),
            "p50_within_goal": int(np.sum(np.abs(p50) <= P50_GOAL_PCT)),
            "p95_within_goal": int(np.sum(np.abs(p95) <= P95_GOAL_PCT)), "both_goals": int(np.sum(both)),
            "quiet_cells": int(quiet.sum()), "quiet_both_goals": int(np.sum(both & quiet)), "reductions": len(reds),
            "reductions_within_goal": sum(abs(r["difference_points"]) <= REDUCTION_GOAL_POINTS for r in reds),
            "adjusted_cells": int(np.sum(np.isfinite(adjusted))),
            "adjusted_mean_abs_error_p50_pct": _mean_abs(adjusted),
            "adjusted_p50_within_goal": int(np.sum(np.abs(adjusted) <= P50_GOAL_PCT)),
            "adjusted_reductions": sum(r.get("difference_adjusted_points") is not None for r in reds),
            "adjusted_reductions_within_goal": sum(abs(r.get("difference_adjusted_points") or np.inf)
                                                   <= REDUCTION_GOAL_POINTS for r in reds),
            "at_state_cells": int(np.sum(np.isfinite(state))), "at_state_mean_abs_error_p50_pct": _mean_abs(state),
            "at_state_p50_within_goal": int(np.sum(np.abs(state) <= P50_GOAL_PCT)),
            "at_probe_cells": int(np.sum(np.isfinite(probe))), "at_probe_mean_abs_error_p50_pct": _mean_abs(probe),
            "at_probe_p50_within_goal": int(np.sum(np.abs(probe) <= P50_GOAL_PCT)),
            "fast_rounds_cells": int(np.sum(np.isfinite(fast))), "fast_rounds_mean_abs_error_p50_pct": _mean_abs(fast),
            "fast_rounds_p50_within_goal": int(np.sum(np.abs(fast) <= P50_GOAL_PCT)),
            "quiet_scored_cells": int(np.sum(np.isfinite(q50))), "quiet_scored_mean_abs_error_p50_pct": _mean_abs(q50),
            "quiet_scored_both_goals": int(np.sum((np.abs(q50) <= P50_GOAL_PCT) & (np.abs(q95) <= P95_GOAL_PCT))),
            "quiet_scored_reductions": len(on_quiet),
            "quiet_scored_reductions_within_goal": sum(abs(d) <= REDUCTION_GOAL_POINTS for d in on_quiet),
            "control_failed": failed_control, "control_error_p50_pct": control and control["error_p50_pct"],
            "control_error_p50_quiet_pct": control and control.get("error_p50_quiet_pct")}  # fmt: skip


def _errors(cells: list[dict[str, Any]], key: str) -> np.ndarray:
    """Each cell's ``key``, NaN where it is None (an error compare could not compute, or not measured)."""
    return np.array([np.nan if c.get(key) is None else c[key] for c in cells], dtype=float)


def _mean_abs(x: np.ndarray) -> float | None:
    finite = x[np.isfinite(x)]
    return float(np.mean(np.abs(finite))) if finite.size else None


def print_tally(t: dict[str, Any]) -> None:
    """``tally`` as one line after the table (the goals line)."""
    n = t["cells"]
    if not n:
        print(f"goals: no cell scored ({t['failed']} FAILED)")
        return
    mean = "-" if t["mean_abs_error_p50_pct"] is None else f"{t['mean_abs_error_p50_pct']:.1f} %"
    line = (
        f"goals: {t['both_goals']} of {n} cells meet both (median within {P50_GOAL_PCT:.0f} %: "
        f"{t['p50_within_goal']}, p95 within {P95_GOAL_PCT:.0f} %: {t['p95_within_goal']}; mean |median error| "
        f"{mean}), reductions within {REDUCTION_GOAL_POINTS:.0f} points: "
        f"{t['reductions_within_goal']} of {t['reductions']}; {t['quiet_cells']} of {n} cells all quiet"
    )
    if t["quiet_cells"]:
        line += f" ({t['quiet_both_goals']} of them meet both)"
    if t.get("quiet_scored_cells"):
        line += (
            f"; on their quiet runs alone: {t['quiet_scored_both_goals']} of {t['quiet_scored_cells']} cells with one "
            f"meet both (mean |median error| {t['quiet_scored_mean_abs_error_p50_pct']:.1f} %), reductions "
            f"{t['quiet_scored_reductions_within_goal']} of {t['quiet_scored_reductions']} within "
            f"{REDUCTION_GOAL_POINTS:.0f} points"
        )
    if t.get("control_failed"):
        line += "; control (the fit's configuration, measured again) FAILED"
    if t.get("control_error_p50_pct") is not None:
        alone = t.get("control_error_p50_quiet_pct")
        quiet = "" if alone is None else f", {alone:+.1f} % on its quiet runs"
        line += f"; control (the fit's configuration, measured again): median error {t['control_error_p50_pct']:+.1f} %"
        line += quiet
    if t["adjusted_cells"]:
        line += (
            f"; at speed: mean |median error| {t['adjusted_mean_abs_error_p50_pct']:.1f} %, "
            f"{t['adjusted_p50_within_goal']} of {t['adjusted_cells']} within {P50_GOAL_PCT:.0f} %"
        )
    if t.get("adjusted_reductions"):
        line += f", reductions {t['adjusted_reductions_within_goal']} of {t['adjusted_reductions']} within 5 points"
    if t.get("at_state_cells"):
        line += (
            f"; the {max(SIZES):,}-parameter cells at state: mean |median error| "
            f"{t['at_state_mean_abs_error_p50_pct']:.1f} %, {t['at_state_p50_within_goal']} of {t['at_state_cells']} "
            f"within {P50_GOAL_PCT:.0f} %"
        )
    if t.get("at_probe_cells"):
        line += (
            f"; at probe (at speed, training by their runs' training probe): "
            f"{t['at_probe_mean_abs_error_p50_pct']:.1f} %, {t['at_probe_p50_within_goal']} of {t['at_probe_cells']} "
            f"within {P50_GOAL_PCT:.0f} %"
        )
    if t.get("fast_rounds_cells"):
        line += (
            f"; the rounds at the calibrated speed ({FAST_MIN_ROUNDS}+ a cell): "
            f"{t['fast_rounds_mean_abs_error_p50_pct']:.1f} %, {t['fast_rounds_p50_within_goal']} of "
            f"{t['fast_rounds_cells']} within {P50_GOAL_PCT:.0f} %"
        )
    print(line + (f"; {t['failed']} FAILED" if t["failed"] else ""))


def markdown(result: dict[str, Any]) -> str:
    """A matrix written by ``--json`` as the README's table: per cell the model's and the twin's median, the error
    of the median (95 % CI) and of the p95 with all runs pooled, then on the quiet runs alone (the machine the goal
    is set on), each against the goals; the control cells marked; then the reductions and the goals line's counts."""
    rows = ["| mode | suite | params | sim p50 | hw p50 | error p50 [95 % CI] | error p95 | quiet runs | "
            "quiet runs alone: p50 / p95 | runs apart | cores vs calibration | goals: all / quiet |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in result["cells"]:
        name = f"| {c['mode']} | {c['suite']}{' (control)' if c.get('control') else ''} | {_params(c)} |"
        if "error" in c:  # its message in the fourth column, one line, no column break of its own
            said = " ".join(str(c["error"]).split()).replace("|", "\\|")
            rows.append(f"{name} failed: {said} |" + " |" * 8)
            continue
        lo, hi = c.get("error_p50_ci95") or (None, None)  # None where compare could not compute one
        alone = f"{_pct(c.get('error_p50_quiet_pct'))} / {_pct(c.get('error_p95_quiet_pct'))}"
        speed = "-" if c.get("speed_vs_calibration") is None else f"{c['speed_vs_calibration']:.2f}×"
        goals = f"{_met(c, 'error_p50_pct', 'error_p95_pct')} / {_met(c, 'error_p50_quiet_pct', 'error_p95_quiet_pct')}"
        rows.append(f"{name} {_num(_scaled(c.get('sim_p50_s')))} ms | {_num(_scaled(c.get('hw_p50_s')))} ms | "
                    f"{_signed(c.get('error_p50_pct'))} % [{_signed(lo)}, {_signed(hi)}] | "
                    f"{_signed(c.get('error_p95_pct'))} % | "
                    f"{c.get('quiet_runs', '-')}/{c.get('hw_runs', '-')} | {alone} | "
                    f"{c.get('hw_run_spread_pct') or 0:.0f} % | {speed} | {goals} |")  # fmt: skip
    reds = "; ".join(f"{r['suite']} {_params(r)} {r['simulated_pct']:+.1f} / {r['measured_pct']:+.1f} %"
                     for r in result["reductions"])  # fmt: skip
    t = result["goals"]
    lines = [*rows, "", f"Reduction concurrent vs sequential (simulated / measured): {reds}.", "",
             f"Goals (control cells not counted): all runs pooled {t['both_goals']} of {t['cells']} cells meet both, "
             f"mean |median error| {_num(t['mean_abs_error_p50_pct'])} %; on the quiet runs alone "
             f"{t.get('quiet_scored_both_goals', 0)} of {t.get('quiet_scored_cells', 0)}, "
             f"{_num(t.get('quiet_scored_mean_abs_error_p50_pct'))} %; reductions {t['reductions_within_goal']} of "
             f"{t['reductions']} within {REDUCTION_GOAL_POINTS:.0f} points."]  # fmt: skip
    return "\n".join(lines)


def _params(c: dict[str, Any]) -> str:
    n = c["model_parameters"]
    return f"{n / 1e6:g} M" if n >= 1_000_000 else f"{n / 1e3:g} k"


def _met(c: dict[str, Any], p50: str, p95: str) -> str:
    """'yes' where the cell's two errors meet the goals, 'no' where not, '-' where either is unknown."""
    if c.get(p50) is None or c.get(p95) is None:
        return "-"
    return "yes" if abs(c[p50]) <= P50_GOAL_PCT and abs(c[p95]) <= P95_GOAL_PCT else "no"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}"


def _scaled(x: float | None, by: float = 1e3) -> float | None:
    return None if x is None else x * by


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def _ms(x: float) -> str:
    return f"{x * 1e3:8.2f}"


def print_table(cells: list[dict[str, Any]], reds: list[dict[str, Any]]) -> None:
    head = f"{'layout':17s} {'mode':11s} {'suite':10s} {'params':>9s} {'sim p50':>8s} {'hw p50':>8s} "
    head += f"{'err p50 [95% CI]':>24s} "
    print(head + f"{'sim p95':>8s} {'hw p95':>8s} {'err p95':>8s} {'at speed':>9s} {'fast rounds':>17s}  machine")
    for c in cells:
        if "error" in c:
            what = "CONTROL " if c.get("control") else ""
            print(f"{c['layout']:17s} {c['mode']:11s} {c['suite']:10s} {c['model_parameters']:9d}  {what}FAILED "
                  f"{c['error']}")  # fmt: skip
            continue
        lo, hi = c["error_p50_ci95"]
        ci = f"{c['error_p50_pct']:+6.1f} [{lo:+6.1f}, {hi:+6.1f}]"
        quiet = "CONTROL (not held out), " if c.get("control") else ""
        quiet += f"{c['quiet_runs']}/{c['hw_runs']} quiet, runs {c['hw_run_spread_pct'] or 0:.0f} % apart"
        if c.get("hw_runs_failed"):
            quiet += f", {len(c['hw_runs_failed'])} more failed ({c['hw_runs_failed'][0]})"
        if 0 < (c.get("quiet_scored_runs") or 0) < c["hw_runs"]:  # the quiet ones alone: p50 / p95 error
            quiet += f" (alone {_pct(c['error_p50_quiet_pct'])} / {_pct(c['error_p95_quiet_pct'])})"
        if c["speed_vs_calibration"] is not None:
            quiet += f", cores x{c['speed_vs_calibration']:.2f}"
        if c.get("idle_core_wait_per_s") is not None:
            quiet += f", waited {c['idle_core_wait_per_s']:.2f} s/s beside an idle core"
            if c.get("idle_core_wait_after_preemption_per_s") is not None:
                quiet += f" ({c['idle_core_wait_after_preemption_per_s']:.2f} after a preemption)"
        print(f"{c['layout']:17s} {c['mode']:11s} {c['suite']:10s} {c['model_parameters']:9d} {_ms(c['sim_p50_s'])} "
              f"{_ms(c['hw_p50_s'])} {ci:>24s} {_ms(c['sim_p95_s'])} {_ms(c['hw_p95_s'])} "
              f"{c['error_p95_pct']:+7.1f}% {_pct(c['error_p50_adjusted_pct']):>9s} {_fast(c):>17s}  "
              f"{quiet}")  # fmt: skip
    print("concurrent vs sequential, median round latency reduction (simulated / measured):")
    for r in reds:
        fast = r.get("measured_at_speed_pct")
        at = "" if fast is None else f"; fast rounds {fast:+6.1f} % ({r['difference_at_speed_points']:+.1f} points)"
        if r.get("simulated_adjusted_pct") is not None:
            at += f"; the model at speed {r['simulated_adjusted_pct']:+.1f} % ({r['difference_adjusted_points']:+.1f})"
        if "pairs" in r:
            lo, hi = r["measured_pairs_ci95_pct"]
            at += f"; {r['pairs']} pairs of rounds: {r['measured_pairs_pct']:+.1f} % [{lo:+.1f}, {hi:+.1f}]"
        print(f"  {r['layout']:17s} {r['suite']:10s} {r['model_parameters']:9d}  {r['simulated_pct']:+6.1f} % / "
              f"{r['measured_pct']:+6.1f} %  ({r['difference_points']:+.1f} points){at}")  # fmt: skip
    print_tally(tally(cells, reds))


def _fast(c: dict[str, Any]) -> str:
    """'err p50 (rounds)' over the rounds at the calibration's speed, '-' where unknown."""
    if c.get("error_p50_at_speed_pct") is None:
        return "-" if c.get("rounds_at_speed") is None else f"- ({c['rounds_at_speed']})"
    return f"{c['error_p50_at_speed_pct']:+.1f}% ({c['rounds_at_speed']})"


def kernel_rate(profile: Path) -> float:
    """The machine's sending kernel over the netns cells' own links (hw/sendcpu.py ``kernel_cpu_rate_bps``: a 1 MB
    message's wire bytes per second of the machine's CPU, pi-1 to pi-2 of paper-3node), at the speed ``profile``
    was calibrated at."""
    graph = load_scenario(PAPER).graph()
    return kernel_cpu_rate_bps(graph, "pi-1", "pi-2", load_profile(profile).platform.speed_probe_us)


def _probe(profile: Path) -> dict[str, Any]:
    """The calibration's speed probe, and whether its cores held one speed meanwhile (``hw.machine.STEADY_SPREAD``,
    as for a twin run): a calibration that caught another speed state moves every cell
    (docs/twin-validation.md)."""
    from hw.machine import calibrated_unsteady

    prof = load_profile(profile)
    platform = prof.platform
    spread = platform.speed_probe_spread
    train = prof.ops.get("fl.train")
    pair = getattr(train, "pair_slowdown", None)
    return {"speed_probe_us": platform.speed_probe_us, "speed_probe_spread": spread,
            "steady": None if spread is None else not calibrated_unsteady(spread),
            "train_pair_slowdown": pair}  # fmt: skip


def base_calibration(work: Path, base: Path, retries: int = 0) -> None:
    """The full calibration (~70 s: quick medians are too noisy) into ``base``. ``retries``: one whose cores changed
    speed while it measured (``_probe``'s ``steady``) is taken again, up to that many times, as a run that was not
    quiet is: every cell is predicted from it, and an unsteady one moved all 16 by +4 ... +9 % (docs/twin-validation.md,
    stop 73). Each is kept (``work/calibration-N.yaml``); with none steady, the one of least spread is used."""
    tried: list[tuple[float, Path]] = []
    for attempt in range(retries + 1):
        out = work / f"calibration-{attempt}.yaml"
        write_profile(calibrate(), out)
        probe = _probe(out)
        tried.append((probe["speed_probe_spread"] or 0.0, out))
        if probe["steady"] is not False:
            break
        again = f", measured again ({retries - attempt} more at most)" if attempt < retries else ""
        print(f"calibration {attempt + 1}: its speed probe spread {probe['speed_probe_spread']:.2f}x, unsteady{again}",
              flush=True)  # fmt: skip
    shutil.copyfile(min(tried, key=lambda t: t[0])[1], base)


def _say_calibration(profile: Path) -> None:
    probe = _probe(profile)
    if probe["train_pair_slowdown"]:  # the 1 M cells' training follows it (docs/twin-validation.md)
        pairs = ", ".join(f"x{f:.2f} at {u:,.0f}" for u, f in probe["train_pair_slowdown"])
        print(f"calibration: two trainings at once ran {pairs} sample-parameters (fl.train pair_slowdown)")
    if probe["steady"] is False:
        print(f"calibration UNSTEADY: its speed probe spread {probe['speed_probe_spread']:.2f}x: the cores changed "
              "speed while it measured, so every cell below says as much about that as about the model")  # fmt: skip


def rescore(kept: Path, out: Path | None, keep: Path | None, reps: int = SIM_REPLICATIONS) -> None:
    """Model work on fixed measurements: the kept base profile, training runs and twin runs of an earlier
    ``--keep``, fitted and simulated again by the code as it is now (the fitted profile and the simulations go
    to a temporary directory, or to ``keep``)."""
    base, trained, wider = kept / "base.yaml", sorted(kept.glob("train-*")), sorted(kept.glob("wide-*"))
    if not base.is_file() or not trained:
        raise SystemExit(f"--rescore: {kept} has no base.yaml and train-* runs (a --keep directory of this bench)")
    runs: dict[Cell, list[Summary]] = {}
    dirs: dict[Cell, list[Path]] = {}  # each run's kept directory, in the order of ``runs``
    found = _kept_twin_runs(kept)
    passes: dict[Cell, list[int]] = {}  # in pass order (hw-CELL-10 after hw-CELL-9), each keeping its number
    for c, kept_runs in found.items():
        numbers, summaries, places = zip(*sorted(kept_runs, key=lambda x: x[0]), strict=True)
        passes[c], runs[c], dirs[c] = list(numbers), list(summaries), list(places)
    if not runs:
        raise SystemExit(f"--rescore: {kept} has no hw-* twin runs to score")
    try:
        fit = fit_from_run(trained, base, messages_from=wider)  # (none in a --keep of before stop 70)
    except UserError as exc:
        raise SystemExit(f"--rescore: {exc.lines[0]}") from None
    for busy in fit.busy_runs:  # as the live bench and ``pqtwin calibrate --from-run`` warn
        print(f"warning: a training run on a busy machine, its overheads fitted with its neighbours' load: {busy}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        profile = work / "fitted.yaml"
        write_profile(fit.profile, profile)
        for c in runs:  # as ``score`` names them: hw-CELL-PASS, the kept pass numbers
            for k, d in zip(passes[c], dirs[c], strict=True):
                (work / f"hw-{c.name}-{k}").symlink_to(d.resolve())
        rounds = max(r.rounds_completed for rs in runs.values() for r in rs)
        kernel_bps, states, alone, fit_alone = kept_kernel(kept), kept_pairs(kept), kept_alone(kept), kept_fit(kept)
        paired, state = at_pair(profile, states, work / "fitted-at-pair.yaml"), train_state(alone, fit_alone)
        cells = [score(c, work, profile, rounds, reps, runs[c], kernel_bps, paired, passes[c], state)
                 for c in sorted(runs, key=_order)]  # fmt: skip
        by_pass = steps_by_pass(work, kept_passes(kept) or len(states) or None)  # retry passes left out
        if keep:
            shutil.copytree(work, keep, dirs_exist_ok=True, symlinks=True)
    reds = reductions(cells, kept)
    print_table(cells, reds)
    print_phases(cells)
    print_segments(cells)
    print_training(cells, states, by_pass, alone, fit_alone)
    print_parallelism(cells)
    print_legs(cells)
    _say_calibration(base)
    if out:
        out.write_text(json.dumps({"rescored": str(kept), "cells": cells, "reductions": reds,
                                   "goals": tally(cells, reds), "pair_slowdown_during_matrix": states,
                                   "training_alone_s_during_matrix": alone,
                                   "training_alone_s_before_fit": fit_alone,
                                   "training_largest_by_pass_s": by_pass},
                                  indent=2) + "\n")  # fmt: skip


def _layout_of(name: str, backend: str | None) -> str:
    """The layout of a kept twin run (``hw-LAYOUT-...``), checked against the backend it ran on."""
    layout = max((lay for lay in LAYOUTS if name.startswith(f"hw-{lay.replace(' ', '-')}-")), key=len, default=None)
    if layout is None or LAYOUTS[layout][2] != (backend or "local"):
        raise ValueError(f"a run on the {backend} backend, named as none of the layouts {', '.join(LAYOUTS)}")
    return layout


def _kept_twin_runs(kept: Path) -> dict[Cell, list[tuple[int, Summary, Path]]]:
    """A --keep directory's twin runs by cell: (pass, run, its kept directory); a ``--mode both`` run is kept as its
    halves, the two modes' cells' runs (``measure``), so it is not a cell of its own."""
    found: dict[Cell, list[tuple[int, Summary, Path]]] = {}
    for d in sorted(kept.glob("hw-*")):
        try:
            r = read_summary(d / "summary.json")
            run = json.loads((d / "run.json").read_text())
            c = Cell(_layout_of(d.name, r.backend), str(r.mode), _suite_of(run["suite"]),
                     int(run["fl"]["model_parameters"]))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
            raise SystemExit(f"--rescore: {d}: not a twin run of this bench ({str(exc).splitlines()[0]})") from None
        if c.mode == "both":
            continue
        name, _, number = d.name.rpartition("-")
        if name != f"hw-{c.name}" or not number.isdigit():
            raise SystemExit(f"--rescore: {d}: its run is {c.name}, not what its name says (hw-{c.name}-PASS)")
        found.setdefault(c, []).append((int(number), r, d))
    return found


KERNEL_FILE = "kernel_rate.json"  # in a --keep directory: the machine's kernel rate its netns cells were scored with


def _kept(kept: Path, name: str, key: str, parse: Callable[[Any], Any], what: str, optional: bool = False) -> Any:
    """``parse`` of ``key`` in the kept file ``name`` (None where the file is not there, or, ``optional``, holds no
    ``key``); SystemExit with one line naming the file and ``key`` where it is there but says no such thing
    (``what``)."""
    path = kept / name
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if optional and isinstance(data, dict) and key not in data:
            return None
        return parse(data[key])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SystemExit(f"--rescore: {path}: {key} is not {what} ({why[:120]})") from None


def kept_kernel(kept: Path) -> float | None:
    """The kernel rate a kept matrix measured (``KERNEL_FILE``), None where it has none (no netns cells, or kept
    before 2026-12-01); SystemExit with one line where the file is there but says no rate."""
    rate = _kept(
        kept, KERNEL_FILE, "host_rate_bps", lambda x: Transport(host_rate_bps=x).host_rate_bps, "a kernel rate"
    )
    return rate or None


def _slowdowns(states: Any) -> list[float]:
    if not isinstance(states, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) and 1 <= x <= PAIR_MAX for x in states
    ):
        raise ValueError(f"not a list of slowdowns from 1 to {PAIR_MAX:g}: {str(states)[:60]}")
    return [float(x) for x in states]


def _steps(steps: Any) -> list[float]:
    if not isinstance(steps, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < MAX_STEP_S for x in steps
    ):
        raise ValueError(f"not a list of seconds in (0, {MAX_STEP_S:g}): {str(steps)[:60]}")
    return [float(x) for x in steps]


def kept_alone(kept: Path) -> list[float]:
    """The largest model's training step alone, measured before each pass of a matrix (``PAIR_FILE``'s
    ``alone_step_s``; none: kept before 2026-12-04 18:45, or a host of one core); SystemExit with one line where it
    is there but holds no such list."""
    return _kept(kept, PAIR_FILE, "alone_step_s", _steps, "a list of step times", optional=True) or []


def kept_fit(kept: Path) -> float | None:
    """The largest model's training step alone measured before the training runs (``FIT_STATE_FILE``; None: kept
    before 2026-12-04 18:53, or a host of one core); SystemExit with one line where it holds no step time."""
    steps = _kept(kept, FIT_STATE_FILE, "alone_step_s", _steps, "a list of step times", optional=True)
    return float(np.median(steps)) if steps else None


def kept_passes(kept: Path) -> int | None:
    """How many passes a kept matrix made before its retry passes (``PASSES_FILE``; None: kept before stop 67)."""
    return _kept(kept, PASSES_FILE, "repeat", _passes, "a number of passes")


def _passes(x: Any) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= 1000:
        raise ValueError(f"not a number of passes from 1 to 1000: {str(x)[:40]}")
    return x


def markdown_of(path: Path) -> str:
    """``markdown`` of the matrix in ``path``; SystemExit with one line where it is not one ``--json`` wrote."""
    what = "a matrix written by bench/twin_fidelity.py --json"
    try:
        return markdown(read_json_object(path, 64 << 20, what))
    except UserError as exc:
        raise SystemExit(f"--markdown: {exc.lines[0]}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise SystemExit(f"--markdown {path}: not {what} ({type(exc).__name__}: {exc})") from None


def kept_pairs(kept: Path) -> list[float]:
    """The pair slowdowns a matrix measured before its passes (``PAIR_FILE``; none: kept before 2026-12-01 06:40,
    or a host of one core); SystemExit with one line where the file is there but holds no such list."""
    return _kept(kept, PAIR_FILE, "pair_slowdown", _slowdowns, "a list of slowdowns") or []


def _suite_of(suite: dict[str, str]) -> str:
    """The bench's name of a run's suite (StopIteration: not one of the bench's)."""
    return next(k for k, (kem, sig) in SUITES.items() if (kem, sig) == (suite["kem"], suite["signature"]))


def _order(c: Cell) -> tuple[int, int, int, int]:
    return (c.layout != "localhost", list(SUITES).index(c.suite), c.params, MODES.index(c.mode))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="10 rounds a run, no hybrid suite: < 5 minutes without --retries"
    )
    ap.add_argument("--rounds", type=int, default=None, help="rounds per run (default 20; --quick 10)")
    ap.add_argument("--json", type=out_json, default=None, help="write the matrix as JSON")
    ap.add_argument("--profile", type=Path, default=None, help="base profile (default: calibrate this machine)")
    ap.add_argument("--netns", action="store_true", help="also the paper-3node layout on the netns backend (root)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    ap.add_argument("--train-runs", type=int, default=None, help="training runs pooled into the fit (default 2), "
                    "each with its own seed")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=None, help="twin runs per cell, interleaved over the matrix and "
                    "pooled (default 3; --quick 2)")  # fmt: skip
    ap.add_argument("--pairing", choices=("rounds", "runs"), default="rounds", help="rounds (default): a suite and "
                    "size's two modes in one --mode both run, their rounds in turn (the host's state shared, the "
                    "reduction paired); runs: a run per cell")  # fmt: skip
    ap.add_argument("--retries", type=in_range(0, 20), default=0, help="up to N more passes over the cells "
                    "with no quiet run yet, and the base calibration and a training run that were not steady or "
                    "quiet taken again up to N times each (default 0); every run is kept, and each cell is also "
                    "scored on its quiet runs alone")  # fmt: skip
    ap.add_argument("--min-quiet", type=in_range(1, 10), default=1, help="with --retries: retry passes go on "
                    "over the cells with fewer than N quiet runs (default 1)")  # fmt: skip
    ap.add_argument("--markdown", type=Path, default=None, help="a --json matrix: print it as the README's table "
                    "(measures nothing)")  # fmt: skip
    ap.add_argument("--sim-replications", type=in_range(1, 200), default=SIM_REPLICATIONS, help="replications "
                    f"simulated per cell (default {SIM_REPLICATIONS}): more, a median less moved by the simulator's "
                    "own random draws (50 k concurrent: ~1 %% at 5)")  # fmt: skip
    ap.add_argument("--rescore", type=Path, default=None, help="a --keep directory: fit its training runs again and "
                    "score its twin runs against the model as it is now, without running the twin")  # fmt: skip
    args = ap.parse_args()
    if args.netns and args.rescore is None and (why := unavailable()) is not None:
        ap.error(f"--netns: {why}")  # before minutes of calibration and training runs
    if args.profile is not None:
        try:
            load_profile(args.profile)
        except UserError as exc:
            ap.error(f"--profile: {exc.lines[0]}")
    if args.markdown is not None:
        print(markdown_of(args.markdown))
        return
    if args.rescore is not None:
        rescore(args.rescore, args.json, args.keep, args.sim_replications)
        return
    train_runs = args.train_runs or 2
    repeat = args.repeat or (2 if args.quick else 3)
    rounds = args.rounds or (10 if args.quick else 20)
    suites = [s for s in SUITES if not (args.quick and s == "hybrid")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "base.yaml"  # kept with the runs: --rescore fits from it again
        if args.profile is None:
            base_calibration(work, base, args.retries)
        else:
            shutil.copyfile(args.profile, base)
        trained, wider = train(work, base, rounds, train_runs, args.retries)
        fit = fit_from_run(trained, base, messages_from=wider)
        for busy in fit.busy_runs:  # as ``pqtwin calibrate --from-run`` warns
            print(f"warning: a training run on a busy machine, its overheads fitted with its neighbours' load: {busy}")
        profile = work / "fitted.yaml"
        write_profile(fit.profile, profile)
        print(f"fitted on {TRAIN} and {TRAIN_SMALL_PARAMETERS:,} parameters, and the messages of "
              f"{TRAIN_LARGE_PARAMETERS:,} ({train_runs} x {rounds} rounds at each size, pooled, {fit.rows} spans): "
              f"{', '.join(fit.profile['overheads'])}")  # fmt: skip
        matrix = [*(Cell("localhost", m, s, p) for s in suites for p in SIZES for m in MODES), *CONTROLS]
        kernel_bps = None
        if args.netns:
            matrix += [Cell(layout, m, "PQC L3", 250_000) for layout in NETNS_LAYOUTS for m in MODES]
            kernel_bps = kernel_rate(base)  # the machine's sending kernel, once
            (work / KERNEL_FILE).write_text(json.dumps({"host_rate_bps": kernel_bps}) + "\n")
            print(f"the kernel moves {kernel_bps / 1e9:.2f} Gbit/s of the cells' messages over paper-3node's links per "
                  "second of the machine's CPU, at the calibration's speed: the netns cells' Transport.host_rate_bps",
                  flush=True)  # fmt: skip
        runs, states, numbers = measure(matrix, work, profile, rounds, repeat, args.pairing, args.retries,
                                        args.min_quiet)  # fmt: skip
        if args.keep:  # the measurements first: whatever scoring them does, they are kept
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        paired = at_pair(profile, states, work / "fitted-at-pair.yaml")
        alone, fit_alone = kept_alone(work), kept_fit(work)
        state = train_state(alone, fit_alone)
        cells = [score(c, work, profile, rounds, args.sim_replications, runs[c], kernel_bps, paired, numbers[c], state)
                 for c in matrix]  # fmt: skip
        reds = reductions(cells, work)
        print_table(cells, reds)
        print_phases(cells)
        print_segments(cells)
        by_pass = steps_by_pass(work, repeat)
        print_training(cells, states, by_pass, alone, fit_alone)
        print_parallelism(cells)
        print_legs(cells)
        _say_calibration(base)
        result = {"trained_on": {**TRAIN, "model_parameters_also": TRAIN_SMALL_PARAMETERS,
                                 "model_parameters_messages_only": TRAIN_LARGE_PARAMETERS},
                  "train_runs": train_runs, "repeat": repeat, "rounds": rounds, "pairing": args.pairing,
                  "quick": args.quick, "calibrated_speed_probe": _probe(base), "kernel_rate_bps": kernel_bps,
                  "pair_slowdown_during_matrix": states, "training_alone_s_during_matrix": alone,
                  "training_alone_s_before_fit": fit_alone,
                  "training_largest_by_pass_s": by_pass,
                  "cells": cells, "reductions": reds, "goals": tally(cells, reds),
                  "reduction_simulated_pct": [r["simulated_pct"] for r in reds],
                  "reduction_measured_pct": [r["measured_pct"] for r in reds],
                  "wall_s": time.monotonic() - started}  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
    print(f"wall time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
