"""Hosts and CPU work: every CPU operation holds one core for a cost sampled from the host's profile.

A ``Cpu`` is a SimPy resource with one slot per core. An ``Endpoint`` is where work runs and messages
start or end: a pod on a host (optionally serialised on the pod's own thread) or a device. Each
operation is recorded as a span whose ``queue_wait_s`` is the time spent waiting for the thread and core.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from sim.contract import SpanRow
from sim.profile import Profile


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes."""

    def __init__(self) -> None:
        super().__init__()
        self.events = 0

    def step(self) -> None:
        self.events += 1
        super().step()


class Recorder:
    """Collects span rows of one replication; ``round`` is the FL round now running."""

    def __init__(self, replication: int):
        self.replication = replication
        self.round = 0
        self.rows: list[SpanRow] = []

    def add(
        self, pod: str, host: str, phase: str, op: str, *times: float, nbytes: int = 0, rnd: int | None = None
    ) -> None:
        """Record a span; ``times`` is (start_s, end_s, queue_wait_s)."""
        r = self.round if rnd is None else rnd
        start_s, end_s, wait_s = times
        self.rows.append(SpanRow(self.replication, r, pod, host, phase, op, start_s, end_s, wait_s, nbytes))


class Cpu:
    """The cores of one host (or one device) and the profile that prices its operations."""

    def __init__(
        self, env: simpy.Environment, name: str, cores: int, profile: Profile | None, rng: np.random.Generator
    ):
        self.env, self.name, self.cores, self.profile, self.rng = env, name, cores, profile, rng
        self.resource = simpy.Resource(env, cores)
        self.demand_s = 0.0  # core-seconds asked for, including work still queued at the end


@dataclass(eq=False)
class Endpoint:
    """A pod on a host, or a device: its network node, its CPU and an optional thread serialising its work."""

    pod: str
    node: str
    cpu: Cpu
    thread: simpy.Resource | None = None

    def run(
        self, rec: Recorder, phase: str, op: str, units: float = 0.0, since: float | None = None
    ) -> Generator[Any, Any, None]:
        """Run one operation; the span starts at ``since`` (e.g. when the job was queued) or now."""
        cpu, env = self.cpu, self.cpu.env
        if cpu.profile is None:  # a device whose compute is not modelled
            return
        model = cpu.profile.op(op)
        cost = model.cost_s(cpu.rng, units)
        nbytes = int(units) if getattr(model, "unit", None) == "byte" else 0
        cpu.demand_s += cost
        start = env.now if since is None else since
        thread = self.thread.request() if self.thread is not None else None
        if thread is not None:
            yield thread
        with cpu.resource.request() as core:
            yield core
            served = env.now
            yield env.timeout(cost)
        if thread is not None:
            self.thread.release(thread)  # type: ignore[union-attr]
        rec.add(self.pod, cpu.name, phase, op, start, env.now, served - start, nbytes=nbytes)
