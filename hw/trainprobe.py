"""A reference training step timed alone: the host's memory state, which the speed probe (hw/speed.py, a hash in a
core's L1) does not see.

On this host a 1 M-parameter step alone took 64.5-78.7 ms between passes of a matrix minutes apart, and the 1 M
cells' error at the measured speed was their training steps (docs/twin-validation.md, stop 65). A finished twin run
(local, netns) records this step right after its rounds (``MachineLoad.training_probe``), whatever its own model's
size; a calibration records it beside the training price it measures, a fit from runs the runs' median
(``Platform.training_probe_s``: the state the price holds); ``pqtwin compare --at-speed`` prices training by the
ratio of the two (hw/at_speed.py) for models of about the probe's size (``PRICED_MIN_PARAMETERS``). The step is of a
model past the caches, where the state shows: one reference, so a fit from small models and a run of a large one are
read on the same scale; a small model's own step does not follow it. Not the calibration module: a backend
(hw/local.py) may not import that one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from hw import data, fl
from sim.contract import TrainingProbe

# the training probe (``training_probe``): a model past the caches, where the host's memory state shows (the 1 M
# cells of bench/twin_fidelity.py missed by their steps: docs/twin-validation.md, stop 65), at a client's samples
PROBE_PARAMETERS = 1_000_000
PROBE_SAMPLES = 500
PROBE_STEPS = 3
# the models whose training the probe's ratio prices (hw/at_speed.py): within 2x of the probe's size. A smaller
# model's step stays in the caches and does not follow it: make run's 250 k steps ran at 0.90x their fitted price
# while the probe read 1.46x its own (2026-12-04 21:48), and pricing them by it made "at speed" overshoot +41 %
PRICED_MIN_PARAMETERS = PROBE_PARAMETERS // 2


def training_probe(steps: int = PROBE_STEPS) -> TrainingProbe | None:
    """The reference training step (``PROBE_PARAMETERS`` at ``PROBE_SAMPLES``) alone on one core, the fastest of
    ``steps`` after one to warm up (as a calibration prices training by its fastest batches): the memory state the
    host is in now, which a twin run records after its rounds and a calibration or a fit beside the training price
    (``Platform.training_probe_s``). None where it cannot be taken (this process cannot be pinned, or the step
    fails: out of memory): a run's results and a calibration's measurements come first, so it never raises. ~0.3 s."""
    try:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if not cpus:
            return None
        _, step = training_job(PROBE_SAMPLES, PROBE_PARAMETERS, np.random.default_rng(0))
        return TrainingProbe(parameters=PROBE_PARAMETERS, samples=PROBE_SAMPLES, alone_s=_fastest(step, steps, cpus),
                             steps=steps)  # fmt: skip
    except (OSError, ValueError, MemoryError):
        return None


def _fastest(step: Callable[[], Any], steps: int, cpus: list[int]) -> float:
    """The fastest of ``steps`` calls of ``step`` after a warm-up, pinned to ``cpus[0]`` (then back to ``cpus``)."""
    times = []
    os.sched_setaffinity(0, {cpus[0]})
    try:
        with threadpool_limits(1):
            for k in range(steps + 1):
                t0 = time.perf_counter()
                step()
                if k:  # the first warms the caches and the allocator
                    times.append(time.perf_counter() - t0)
    finally:
        os.sched_setaffinity(0, set(cpus))
    return min(times)


def training_facts(probe: TrainingProbe | None) -> dict[str, Any]:
    """``Platform``'s training probe fields for ``probe`` (none for None)."""
    if probe is None:
        return {}
    return {"training_probe_s": probe.alone_s, "training_probe_parameters": probe.parameters,
            "training_probe_samples": probe.samples}  # fmt: skip


def training_job(samples: int, params: int, rng: np.random.Generator) -> tuple[int, Callable[[], Any]]:
    """(units, one training step) of the twin's model at this size, as a client runs it (hw/fl.py)."""
    shape = fl.Shape.for_parameters(params, data.FEATURES)
    theta = fl.init(shape, rng)
    x = rng.normal(size=(samples, data.FEATURES)).astype(fl.DTYPE)
    y = (x[:, 0] > 0).astype(fl.DTYPE)
    return samples * shape.parameters, lambda: fl.train(shape, theta, x, y, 1, rng)
