"""Keys for a local run, provisioned by the orchestrator before any node starts.

Every identity of the run (each pod process, each emulated device) is generated here; each process gets
``keys/<process>/identity.json`` (its private keys, 0600) and ``keys/<process>/trust.json`` (the public keys
of the peers it may talk to), in directories only this user can open (0700). Nodes read them
(``hw.node.keys.MountedKeys``, as Kubernetes pods read their mounted Secrets) and trust nothing else: no
key file that merely appears in the run directory is ever pinned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hw.channel import Identity, suite_from
from hw.crypto import registry
from hw.runconfig import DEVICE_EMULATOR, ProvisionedKeys, RunConfig
from sim.contract import RunLayout

IDENTITY = "keys/{pod}/identity.json"
TRUST = "keys/{pod}/trust.json"


def peers(cfg: RunConfig) -> dict[str, tuple[list[str], list[str]]]:
    """{process: (identities it holds, peers it trusts)}; ``devices`` as a peer: every device reporting to it."""
    agg, clients, workers = cfg.aggregator, cfg.fl.clients, cfg.worker_processes
    out = {agg: ([agg], clients + workers)}
    for c in clients:
        out[c] = ([c], [agg] + ([DEVICE_EMULATOR] if cfg.devices_for(c) else []))
    for w in workers:
        out[w] = ([w], [agg, *clients])
    for runner in sorted({d.runner or DEVICE_EMULATOR for d in cfg.devices}):  # one emulator, or one per runner host
        groups = [d for d in cfg.devices if (d.runner or DEVICE_EMULATOR) == runner]
        out[runner] = ([n for d in groups for n in d.device_names()], sorted({d.pod for d in groups}))
    return out


def provision(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """Write every process's keys; the configuration that points the nodes at them."""
    with registry.default().preferring(cfg.suite.provider):  # keys in the format the nodes' provider reads
        return _provision(cfg, run_dir)


def _provision(cfg: RunConfig, run_dir: Path) -> RunConfig:
    suite = suite_from(cfg.suite)
    plan = peers(cfg)
    idents = {n: Identity.generate(n, suite) for held, _ in plan.values() for n in held}
    reporting = {c: [n for d in cfg.devices_for(c) for n in d.device_names()] for c in cfg.fl.clients}
    root = RunLayout(run_dir).root / RunLayout.KEYS
    _private_dir(root)
    for proc, (held, trusted) in plan.items():
        table: dict[str, Any] = {}
        for peer in trusted:
            if peer == DEVICE_EMULATOR:  # a name no pod has (hw.runconfig.name_problems)
                table[DEVICE_EMULATOR] = {d: idents[d].public() for d in reporting[proc]}
            else:
                table[peer] = idents[peer].public()
        _private_dir(root / proc)
        _private_file(run_dir / IDENTITY.format(pod=proc), {n: idents[n].export_private() for n in held})
        _private_file(run_dir / TRUST.format(pod=proc), table)
    return cfg.model_copy(update={"keys": ProvisionedKeys(identity=IDENTITY, trust=TRUST)})


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)  # also when it existed (a reused run directory)


def _private_file(path: Path, obj: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)
    os.chmod(path, 0o600)
