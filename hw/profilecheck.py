"""Calibrated per-node profiles against the scenario's reference profiles: how far the simulator's prices are.

Before a cluster run (``pqtwin hw run --backend k8s --calibrated DIR``) each scenario host's calibrated profile
(``DIR/<host>.yaml``, as ``pqtwin calibrate --backend k8s --out DIR`` writes them) is set beside the profile the
scenario prices that host with, operation by operation over what the run will ask for (the suite, serialisation,
training and FedAvg at the scenario's sizes). The ratio calibrated / reference says how wrong a simulation with
the reference would be on that node: a Pi 4 measured with OpenSSL 3.6 against the liboqs-NEON reference shows
ML-DSA-65 sign at about 3.3x. Each op also shows which provider priced it on each side, so a library mismatch is
told apart from a slow node. Ratios beyond ``TOLERANCE`` become warnings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from sim.contract import RunLayout, atomic_write
from sim.cost import mean_cost_s
from sim.errors import UserError, shorten
from sim.loading import exists
from sim.profile import load_profile
from sim.scenario import Scenario, required_ops

FILE = RunLayout.PROFILE_CHECK  # in the run directory
TOLERANCE = 1.5  # a ratio above this (or below its inverse) is worth a warning: beyond a node's run-to-run noise


@dataclass(frozen=True)
class OpRatio:
    op: str
    reference_s: float
    calibrated_s: float
    reference_provider: str | None
    calibrated_provider: str | None

    @property
    def ratio(self) -> float:
        return self.calibrated_s / self.reference_s


@dataclass(frozen=True)
class HostCheck:
    host: str
    reference: str  # profile name
    calibrated: str  # profile file
    ops: list[OpRatio]

    @property
    def geomean(self) -> float:
        return math.exp(sum(math.log(o.ratio) for o in self.ops) / len(self.ops)) if self.ops else 1.0

    def outliers(self) -> list[OpRatio]:
        return [o for o in self.ops if not 1 / TOLERANCE <= o.ratio <= TOLERANCE]


def op_units(s: Scenario, op: str) -> float:
    """The units the run asks ``op`` for: a model message's bytes, a client's training, FedAvg of all updates."""
    fl = s.workload.fl
    if op == "fl.train":
        return float(fl.train_units)
    if op == "fl.fedavg":
        return float(fl.model_parameters * fl.clients)
    return float(fl.model_bytes + fl.header_bytes)


def check_profiles(s: Scenario, directory: Path) -> list[HostCheck]:
    """One check per scenario host; UserError naming the first host without a calibrated profile."""
    checks = []
    wanted = sorted(required_ops(s))
    for host in s.deployment.hosts:
        path = directory / f"{host.name}.yaml"
        if not exists(path):
            raise UserError(f"--calibrated {shorten(str(directory), 200)}: no profile for host {host.name} "
                            f"({path.name}); write them with pqtwin calibrate --backend k8s --out DIR")  # fmt: skip
        calibrated, reference = load_profile(path), s.host_profile(host.name)
        ops = []
        for op in wanted:
            if op in calibrated.ops and op in reference.ops:
                units = op_units(s, op)
                ops.append(OpRatio(op, mean_cost_s(reference, op, units), mean_cost_s(calibrated, op, units),
                                   reference.ops[op].provider, calibrated.ops[op].provider))  # fmt: skip
        checks.append(HostCheck(host.name, reference.profile, str(path), ops))
    return checks


def warnings(checks: list[HostCheck]) -> list[str]:
    """One line per host with ops outside the tolerance, naming the worst and any provider mismatch."""
    lines = []
    for c in checks:
        off = sorted(c.outliers(), key=lambda o: -abs(math.log(o.ratio)))
        if not off:
            continue
        worst = ", ".join(f"{o.op} ×{o.ratio:.2f}" for o in off[:3])
        mixed = sorted({f"{o.calibrated_provider} vs {o.reference_provider}" for o in off
                        if o.calibrated_provider != o.reference_provider})  # fmt: skip
        why = f"; priced by different providers ({', '.join(mixed)})" if mixed else ""
        lines.append(f"host {c.host}: calibrated costs differ from profile {c.reference!r} by more than "
                     f"×{TOLERANCE} on {len(off)} of {len(c.ops)} operations ({worst}){why}; simulate with "
                     f"--profile {c.calibrated} to predict this node")  # fmt: skip
    return lines


def write(checks: list[HostCheck], run_dir: Path) -> None:
    rows = [asdict(c) | {"geomean_ratio": c.geomean, "tolerance": TOLERANCE} for c in checks]
    atomic_write(run_dir / FILE, json.dumps(rows, indent=1))
