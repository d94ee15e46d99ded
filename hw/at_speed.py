"""The model at a measured run's speed: what ``pqtwin compare`` puts beside its fidelity line when the twin's cores
ran at another speed than when the profile was calibrated (the speed probe, hw/speed.py).

On a host whose cores slowed down (this machine runs them at 0.55-1.0x its calibration from hour to hour), every
operation the simulator prices reads too fast, and the fidelity line shows the host's state as the model's error.
The same simulation again -- the simulated run directory's scenario, profiles, seed, mode and replications -- on
cores as fast as the measured runs' probe read them (``deployment.hosts.*.cpu_speed``, the median over the runs;
training and FedAvg at their price, ``hw.fit.memory_at_price``, since the probe does not see the state they run
in), compared with the same runs: what is left is the model's error. The bench's "at speed" column does the same
(bench/twin_fidelity.py). Where the runs also recorded the training probe (hw/trainprobe.py: a 1 M step alone
right after their rounds), the profiles hold the same step in the state their training price was taken in, and the
model is of about the probe's size (``PRICED_MIN_PARAMETERS``), training is priced by their ratio too
(``training_ratio``: the host's memory state, which the speed probe does not see; None where a run or every profile
lacks it, they probed different steps, or the model is smaller: training then keeps its price).

Only for runs of the local and netns backends that carried the probe, where the speed or the training ratio is more
than ``MIN_OFF`` off 1, and a simulation whose hosts ran at their profiles' speed. It is an explanation beside the
error, never a replacement: compare.json keeps the error as simulated.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hw.fit import memory_at_price
from hw.trainprobe import PRICED_MIN_PARAMETERS
from sim.contract import ALTERNATING, ROUND_MODES, RunLayout, Summary, TrainingProbe, read_summary
from sim.errors import UserError
from sim.profile import Platform, load_profile
from sim.scenario import load_scenario

MIN_OFF = 0.05  # a speed within 5 % of the calibration's: the host's state is not what an error says
BACKENDS = ("local", "netns")  # one machine, whose probe the runs carry (a cluster's nodes are not probed)


def measured_speed(hw_dirs: list[Path]) -> float | None:
    """The measured runs' median speed against the calibration (``MachineLoad.speed_vs_calibration``); None
    where a run is of another backend or none was probed."""
    return speed_of([read_summary(RunLayout(d).summary) for d in hw_dirs])


def speed_of(summaries: list[Summary]) -> float | None:
    """``measured_speed`` of runs already read."""
    if any(s.backend not in BACKENDS for s in summaries):
        return None
    speeds = [x for s in summaries if s.machine_load and (x := s.machine_load.speed_vs_calibration)]
    return float(np.median(speeds)) if speeds else None


def measured_training(sim_dir: Path, hw_dirs: list[Path]) -> float | None:
    """How much dearer the measured runs' training probe read than the simulated run's profiles recorded
    (``training_of``)."""
    return training_of(sim_dir, [read_summary(RunLayout(d).summary) for d in hw_dirs])


def training_of(sim_dir: Path, summaries: list[Summary]) -> float | None:
    """``measured_training`` of runs already read (``training_ratio``); None where it cannot say, a profile or the
    scenario cannot be read, or the model is smaller than ``PRICED_MIN_PARAMETERS`` (its step does not follow the
    probe's)."""
    try:
        parameters = load_scenario(RunLayout(sim_dir).scenario).workload.fl.model_parameters
    except (UserError, OSError):  # damaged or gone: simulating again says so (``_simulated_at``)
        return None
    if parameters < PRICED_MIN_PARAMETERS:
        return None
    loads = [s.machine_load for s in summaries]
    platforms = []
    for f in sorted((sim_dir / RunLayout.PROFILES).glob("*.yaml")):
        try:  # bounded: no FIFO or endless file named *.yaml blocks the app's page
            platforms.append(load_profile(f).platform)
        except (UserError, OSError):  # damaged: simulating again says so (``_simulated_at``)
            return None
    return training_ratio([ld.training_probe if ld else None for ld in loads], platforms)


def training_ratio(probes: list[TrainingProbe | None], platforms: list[Platform]) -> float | None:
    """The runs' training probe (their median) against the one step the profiles that recorded one agree on; None
    where a run lacks it, no profile has it, or they probed different steps."""
    known = [p for p in probes if p is not None]
    steps = {(p.parameters, p.samples) for p in known}
    priced = {(f.training_probe_parameters, f.training_probe_samples, f.training_probe_s) for f in platforms
              if f.training_probe_s is not None}  # fmt: skip
    if not known or len(known) < len(probes) or len(steps) != 1 or len(priced) != 1:
        return None
    parameters, samples, alone_s = priced.pop()
    if (parameters, samples) != steps.pop() or not alone_s:
        return None
    return float(np.median([p.alone_s for p in known])) / alone_s


def off_speed(speed: float | None) -> bool:
    """Whether runs at ``speed`` are worth simulating again at it (known, and more than ``MIN_OFF`` off 1)."""
    return speed is not None and abs(speed - 1.0) > MIN_OFF


def at_measured_speed(sim_dir: Path, hw_dirs: list[Path]) -> dict[str, Any]:
    """compare.json's ``model_at_measured_speed``: the speed, the training state (``training_ratio``: the runs' training
    probe against the profile's, None where unknown) and the round latency's p50 error (with its CI) and p95 error of
    the model simulated at them against ``hw_dirs``; else ``not_simulated``, one line saying why: the speed unknown
    (no probe: a cluster's run, a run from before the probe) or both within ``MIN_OFF`` of 1 (nothing to take out),
    or the simulated run cannot run again (its scenario or profiles damaged or gone, its hosts already at another
    speed)."""
    summaries = [read_summary(RunLayout(d).summary) for d in hw_dirs]
    speed = speed_of(summaries)
    if speed is None:
        why = "the measured runs carry no speed probe (a run on a cluster, or from before the probe): nothing to set"
        return {"speed": None, "training_ratio": None, "not_simulated": why}
    train = None
    try:
        train = training_of(sim_dir, summaries)
        if not off_speed(speed) and not off_speed(train):
            step = "" if train is None else f", their training step within {MIN_OFF:.0%} of its price"
            why = f"the measured runs' cores ran within {MIN_OFF:.0%} of their calibrated speed{step}: the model as "
            why += "simulated"
            return {"speed": speed, "training_ratio": train, "not_simulated": why}
        m = _simulated_at(sim_dir, hw_dirs, speed, train or 1.0)
    except UserError as exc:
        return {"speed": speed, "training_ratio": train, "not_simulated": exc.lines[0]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"speed": speed, "training_ratio": train, "not_simulated": f"{sim_dir}: {why[:200]}"}
    if m is None:
        return {"speed": speed, "training_ratio": train, "not_simulated": f"{sim_dir}: no round latency in both runs"}
    return {"speed": speed, "training_ratio": train, "sim_p50_s": m["sim_p50"], "error_p50_pct": m["error_p50_pct"],
            "error_p50_ci95": m["error_p50_ci95"], "error_p95_pct": m["error_p95_pct"]}  # fmt: skip


def _simulated_at(sim_dir: Path, hw_dirs: list[Path], speed: float, train: float) -> dict[str, Any] | None:
    from hw.compare import compare_dirs
    from sim.alternating import split
    from sim.errors import load_yaml
    from sim.profile import write_profile
    from sim.runner import simulate, write_run

    whole = alternating_whole(sim_dir)  # a half of a run of rounds in turn: that run again, split as it was
    layout = RunLayout(whole or sim_dir)
    summary = read_summary(layout.summary)
    if fast := [h.name for h in load_scenario(layout.scenario).deployment.hosts if h.cpu_speed != 1.0]:
        raise UserError(f"{sim_dir}: host {fast[0]} was simulated at another speed already (cpu_speed)")
    with tempfile.TemporaryDirectory(prefix="pqtwin-at-speed-") as tmp:
        work = RunLayout(Path(tmp))
        work.scenario.write_bytes(layout.scenario.read_bytes())
        for f in sorted((layout.root / RunLayout.PROFILES).glob("*.yaml")):
            work.profile(f.stem).parent.mkdir(parents=True, exist_ok=True)
            data = load_yaml(f)  # bounded: a FIFO or an endless file named *.yaml is one line, not a hang
            probed = data.get("platform", {}).get("training_probe_s") is not None  # (``measured_training``)
            write_profile(memory_at_price(data, speed, train if probed else 1.0), work.profile(f.stem))
        s = load_scenario(work.scenario, [f"deployment.hosts.*.cpu_speed={speed:.6g}"])
        run = simulate(s, summary.mode, seed=summary.seed, replications=summary.replications)
        write_run(run, work.root / "run", s)
        if whole is not None:
            split(work.root / "run")
        again = work.root / "run" / (sim_dir.name if whole is not None else "")
        metrics: dict[str, Any] = compare_dirs(again, hw_dirs[0], hw_dirs[1:])["metrics"]
        return metrics.get("round_latency_s")


def alternating_whole(d: Path) -> Path | None:
    """The simulated run of rounds in turn (``pqtwin sim --mode both --rounds-in-turn``) whose half ``d`` is, or
    None."""
    parent = d.parent
    if d.name not in ROUND_MODES or not RunLayout(parent).summary.is_file():
        return None
    try:
        return parent if read_summary(RunLayout(parent).summary).mode == ALTERNATING else None
    except (OSError, ValueError):  # damaged: simulating the half again says what it can
        return None
