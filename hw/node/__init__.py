"""``pqtwin node``: the one program every pod runs (aggregator, client, crypto worker) plus the device emulator.

A node reads the run directory's ``run.json`` (``hw.runconfig.RunConfig``, validated), gets its keys from
a ``KeySource`` (generated and published here, or mounted by Kubernetes: ``keys.py``), plays its role
(``aggregator.py``, ``client.py``, ``devices.py``), records spans in the simulator's format on the run's
clock (``common.py``) and hands its result to a ``Reporter`` (files, plus the pod's log on Kubernetes:
``report.py``). The roles know nothing of backends: they are given their collaborators.

The FL round follows sim/model.py: the aggregator serialises the global model, then per client signs it,
encapsulates (per-message rekeying) and encrypts it; clients decrypt, verify, train, sign, encrypt and
upload; the aggregator decrypts and verifies updates and runs FedAvg.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from hw.channel import ConnectionClosed, SecurityError, suite_from
from hw.crypto import registry
from hw.lifecycle import die_with_parent
from hw.node.common import Node, RunFailed
from hw.node.keys import GeneratedKeys, KeySource, KeysUnavailable, MountedKeys
from hw.node.report import FileReporter, LogReporter, Reporter
from hw.runconfig import RunConfig
from hw.rundir import NodeResult
from hw.runtime import tune_allocator, tune_threads

ROLES = ("aggregator", "client", "worker", "devices")
log = logging.getLogger("pqtwin.node")


def make_node(run_dir: Path, name: str, cfg: RunConfig) -> Node:
    """A node with the collaborators its run.json asks for."""
    suite = suite_from(cfg.suite)
    registry.default().set_preference(suite.provider)  # this process runs one suite, with the scenario's provider
    keys: KeySource = MountedKeys(run_dir, cfg.keys, suite, name) if cfg.keys else GeneratedKeys(run_dir, suite)
    reporter: Reporter = LogReporter(run_dir) if cfg.report == "log" else FileReporter(run_dir)
    return Node(run_dir, name, cfg, keys, reporter)


def play(node: Node, role: str) -> NodeResult:
    from hw.node.aggregator import Aggregator
    from hw.node.client import run_client
    from hw.node.devices import run_devices
    from hw.node.worker import run_worker

    if role == "aggregator":
        return Aggregator(node).run()
    if role == "client":
        return run_client(node)
    if role == "devices":
        return run_devices(node)
    if role == "worker":
        return run_worker(node)
    raise RunFailed(f"role {role!r} has no process in the twin (one of {', '.join(ROLES)})")


def main(run_dir: Path, name: str, role: str) -> int:
    """Run one node; 0 when its role completed, 3 when the run failed for it, 2 for an unusable run.json."""
    tune_allocator()  # before any thread of its own (die_with_parent's watcher): as calibrate does, so measured costs
    # and the run see the same allocator (each backend also starts it with hw.runtime.NODE_ENV)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    end_quietly_on_stops(name)
    die_with_parent()
    try:
        cfg = RunConfig.read(run_dir)
    except ValueError as exc:
        log.error("%s: %s", name, exc)
        return 2
    if (wrong := not_in_run(cfg, name, role)) is not None:  # a typo must not wait for peers that never come
        log.error("error: %s", wrong)
        return 2
    tune_threads()
    node = make_node(run_dir, name, cfg)
    if (missing := unavailable_provider(cfg.suite.provider)) is not None:  # never run another library silently
        node.finish(NodeResult(state="failed", reason=f"{name}: {missing}"))
        log.error("%s: %s", name, missing)
        return 3
    pinned = pin(cfg.cpus.get(node.host))
    if cfg.metrics_port:
        from hw.node.metrics import serve_metrics

        serve_metrics(node, role, cfg.metrics_port, cfg.bind)
    try:
        result = play(node, role)
    except (RunFailed, SecurityError, ConnectionClosed, KeysUnavailable) as exc:
        reason = f"{name}: {exc}" if isinstance(exc, KeysUnavailable) else str(exc)
        so_far = exc.result if isinstance(exc, RunFailed) else None  # what it finished stays in its report
        failed = (so_far or NodeResult(state="failed")).model_copy(update={"reason": reason, "cpus": pinned})
        return _finish(node, failed, f"{name}: {exc}")
    result.cpus = pinned
    result.providers = {a: registry.find(a).provider for a in (node.suite.kem, node.suite.signature, node.suite.aead)}
    return _finish(node, result)


STOPS = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM (kill)", signal.SIGHUP: "SIGHUP"}


def end_quietly_on_stops(name: str) -> None:
    """A node stopped by Ctrl-C (the terminal's SIGINT reaches every node of a run), kill or a closed terminal
    ends with one line in its log, then by the signal as before (its exit status unchanged; what it finished is
    in its journal for the run to recover): Ctrl-C had left a raw ``KeyboardInterrupt`` traceback in every node's
    log. A signal ignored when the node started (``nohup``) stays ignored; a role may handle one itself (the
    device emulator ends on SIGTERM)."""

    def stopped(signum: int, _frame: object) -> None:
        with contextlib.suppress(Exception):  # nothing may keep it from stopping
            log.warning("%s: stopped by %s", name, STOPS.get(signal.Signals(signum), f"signal {signum}"))
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # not reached: the signal ends the process

    for sig in STOPS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, stopped)


def _finish(node: Node, result: NodeResult, failed: str | None = None) -> int:
    """Report the node's end (``failed``: why it failed, logged); 0 when it completed, else 3 -- also when its
    report cannot be written (a full disk), which is then said in one line, not a traceback."""
    if failed is not None:
        log.error("%s", failed)
    try:
        node.finish(result)
    except OSError as exc:
        log.error("%s: cannot write its report: %s", node.name, exc.strerror or exc)
        return 3
    return 3 if failed is not None else 0


def not_in_run(cfg: RunConfig, name: str, role: str) -> str | None:
    """Why ``name`` cannot play ``role`` in this run (None: it can): each pod process plays its own role, and a
    device emulator runs under its group's runner name."""
    if role == "devices":
        names = sorted({d.runner or "devices" for d in cfg.devices})
    else:
        names = [pod for pod, p in cfg.pods.items() if p.role == role]
    if name in names:
        return None
    if role not in ROLES:
        return f"--role: {role!r} is not a role of the twin (one of {', '.join(ROLES)})"
    known = ", ".join(names) if names else "none"
    return f"--name: {name!r} plays no {role} in this run (its {role} processes: {known})"


def unavailable_provider(provider: str) -> str | None:
    """Why the scenario's named crypto provider cannot run here (None: it can, or ``auto``)."""
    if provider == "auto":
        return None
    p = registry.default().provider(provider)
    return None if p.available else f"workload.crypto.provider: {provider} is not available here: {p.reason}"


def pin(cpus: list[int] | None) -> list[int] | None:
    """Pin this process to its host's CPUs where the OS allows (repeatable placement); the CPUs it runs on."""
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except (AttributeError, OSError) as exc:
            log.warning("could not pin to CPUs %s: %s", cpus, exc)
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
