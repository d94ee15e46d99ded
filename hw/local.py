"""The local backend of the hardware twin: every pod of a scenario as a process on this machine.

``run_local`` writes ``run.json`` (ports, routes, suite, seed, the run's clock epoch), starts shaping
proxies for traffic that crosses a link between different scenario hosts, starts one ``hw.node``
process per aggregator/client pod plus one for the devices, follows the aggregator's progress, and stops
every child on exit, on Ctrl-C and on failure. It then merges the nodes' spans into ``spans.parquet``,
writes ``summary.json`` with the simulator's keys (``sim.summary.summarise``) and ``status.json``
saying how the run ended.

What differs from the simulator's world, by construction: all pods share this machine's cores (the
scenario's hosts are not separate machines here); crypto worker pods run as threads of the aggregator
process (no transfer to a worker on another host); device emulation runs on this machine too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from hw.attack import AttackRelay
from hw.crypto import registry
from hw.node import atomic_write
from sim import catalogue
from sim import spans as span_io
from sim.errors import UserError
from sim.scenario import Scenario
from sim.summary import summarise, write_summary

RESULT_FILES = ("spans.parquet", "summary.json", "status.json", "run.json", "scenario.yaml", "progress.json")
RESULT_DIRS = ("spans", "nodes", "keys", "logs", "compare")


def check_supported(s: Scenario) -> None:
    """What the local twin cannot run, as one-line errors naming the field."""
    w, f = s.workload, s.path
    problems = []
    for field, kind in (("kem", "kem"), ("signature", "signature"), ("aead", "aead")):
        name = getattr(w.crypto, field)
        try:
            registry.find(name, kind)  # type: ignore[call-overload]
        except ValueError as exc:
            problems.append(f"{f}: workload.crypto.{field}: {exc}")
    sig = catalogue.get(w.crypto.signature)
    if sig.signature_bytes != sig.signature_max_bytes:
        problems.append(f"{f}: workload.crypto.signature: variable-size signatures are not supported by the twin "
                        f"(got {w.crypto.signature!r})")  # fmt: skip
    if w.fl.bytes_per_parameter != 4:
        problems.append(
            f"{f}: workload.fl.bytes_per_parameter: the twin trains float32 models (got {w.fl.bytes_per_parameter})"
        )
    if w.crypto.rekey.fl == "per_round":
        problems.append(f"{f}: workload.crypto.rekey.fl: per_round rekeying is not implemented in the twin yet "
                        "(use per_session or per_message) (got 'per_round')")  # fmt: skip
    if problems:
        raise UserError(problems)


def prepare_dir(out: Path) -> None:
    """Use a new or empty directory, or replace an earlier run directory; refuse anything else."""
    if out.exists() and any(out.iterdir()):
        if not ((out / "run.json").exists() or (out / "status.json").exists()):
            raise UserError(f"--out: {out} exists, is not empty and is not a run directory")
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)
        for name in RESULT_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workers(s: Scenario) -> int:
    wanted = s.workload.processing.workers
    if wanted != "auto":
        return int(wanted)
    hosts = {p.host for p in s.pods("worker")} or {s.pods("aggregator")[0].host}
    return sum(h.cores for h in s.deployment.hosts if h.name in hosts)


class Proxies:
    """Shaping proxies for paths that cross links; started lazily, all stopped by ``stop``."""

    def __init__(self, s: Scenario, seed: int):
        self.graph = s.graph()
        for _, _, d in self.graph.edges(data=True):
            d["latency_s"] = d["params"].resolved()[1] + 1e-9
        self.seeds = iter(np.random.SeedSequence(seed).spawn(1000))
        self.running: list[Any] = []

    def address(self, src: str, dst: str, target_port: int) -> list[Any]:
        """Where ``src`` connects to reach a server on ``dst``: direct, or through a shaping proxy."""
        if src == dst:
            return ["127.0.0.1", target_port]
        from hw.proxy import LinkShape, open_path

        path = nx.shortest_path(self.graph, src, dst, weight="latency_s")
        links = []
        for a, b in itertools.pairwise(path):
            bw, lat, jit, loss = self.graph.edges[a, b]["params"].resolved()
            links.append(LinkShape(bandwidth_bps=bw, latency_s=lat, jitter_s=jit, loss=loss))
        seed = int(next(self.seeds).generate_state(1)[0])
        proxy = open_path("127.0.0.1", target_port, LinkShape.from_path(links), seed)
        self.running.append(proxy)
        return ["127.0.0.1", proxy.port]

    def retransmissions(self) -> int:
        total = 0
        for p in self.running:
            for stats in p.stats().values() if hasattr(p, "stats") else []:
                total += int(stats.get("retransmissions", 0)) if isinstance(stats, dict) else 0
        return total

    def stop(self) -> None:
        for p in self.running:
            p.close() if isinstance(p, AttackRelay) else p.stop()


def run_config(s: Scenario, mode: str, rounds: int, seed: int, proxies: Proxies,
               attack: tuple[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    agg = s.pods("aggregator")[0]
    clients = [p.name for p in s.pods("client")]
    fl = s.workload.fl
    pods: dict[str, dict[str, Any]] = {agg.name: {"role": "aggregator", "host": agg.host, "port": free_port()}}
    reporting = {pop.report_to for pop in s.workload.devices if pop.count}
    for p in s.pods("client"):
        pods[p.name] = {
            "role": "client",
            "host": p.host,
            "telemetry_port": free_port() if p.name in reporting else None,
        }
    if agg.name in reporting:
        raise UserError(
            f"{s.path}: workload.devices: the twin streams telemetry to client pods only (got {agg.name!r})"
        )
    routes = {c: {agg.name: proxies.address(pods[c]["host"], agg.host, pods[agg.name]["port"])} for c in clients}
    if attack is not None:  # an on-path attacker between one client and the aggregator
        kind, victim = attack
        if victim not in routes:
            raise UserError(f"--attack: no client pod {victim!r} (clients: {', '.join(clients)})")
        relay = AttackRelay(tuple(routes[victim][agg.name]), kind)  # type: ignore[arg-type]
        proxies.running.append(relay)
        routes[victim][agg.name] = ["127.0.0.1", relay.port]
    devices = []
    for pop in s.workload.devices:
        if pop.count:
            target = pods[pop.report_to]
            devices.append({
                "population": pop.name, "count": pop.count, "pod": pop.report_to,
                "frame_bytes": pop.frame_bytes(), "period_s": pop.period_s(),
                "address": proxies.address(f"{pop.name}#0", target["host"], target["telemetry_port"]),
            })  # fmt: skip
    return {
        "scenario": s.name, "mode": mode, "seed": seed, "epoch": time.monotonic(),
        "suite": s.workload.crypto.model_dump(include={"kem", "signature", "aead"}),
        "rekey": s.workload.crypto.rekey.fl, "workers": workers(s), "aggregator": agg.name,
        "fl": {"rounds": rounds, "clients": clients, "model_parameters": fl.model_parameters,
               "samples_per_client": fl.samples_per_client, "local_epochs": fl.local_epochs,
               "quorum_clients": fl.quorum_clients, "round_timeout_s": fl.round_timeout_s},
        "pods": pods, "routes": routes, "devices": devices,
    }  # fmt: skip


class Children:
    """The node processes of one run; every one is stopped on exit."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.procs, self.logs = run_dir, {}, []  # type: ignore[var-annotated]
        env = dict(os.environ)
        env.update({v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        self.env = env  # one core per training step, as the simulator's model assumes

    def start(self, name: str, role: str) -> None:
        (self.run_dir / "logs").mkdir(exist_ok=True)
        log = open(self.run_dir / "logs" / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        cmd = [sys.executable, "-m", "hw.node", str(self.run_dir), name, role]
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)

    def stop(self, grace_s: float = 3.0) -> dict[str, int | None]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()
        return {n: p.returncode for n, p in self.procs.items()}


def run_local(
    s: Scenario, out: Path, mode: str, rounds: int, seed: int, progress: Callable[[int], None] | None = None,
    crash: dict[str, int] | None = None, attack: tuple[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``crash`` {pod: round} kills a client mid-round (fault injection); ``attack`` (kind, client pod)
    puts an on-path attacker between that client and the aggregator (hw/attack.py)."""
    check_supported(s)
    prepare_dir(out)
    proxies = Proxies(s, seed)
    children = Children(out)
    state, reason = "failed", ""
    started = time.monotonic()
    try:
        cfg = run_config(s, mode, rounds, seed, proxies, attack)
        cfg["crash"] = crash or {}
        cfg["attack"] = attack
        atomic_write(out / "run.json", json.dumps(cfg, indent=2))
        (out / "scenario.yaml").write_text(s.to_yaml())
        children.start(cfg["aggregator"], "aggregator")
        for c in cfg["fl"]["clients"]:
            children.start(c, "client")
        if cfg["devices"]:
            children.start("devices", "devices")
        state, reason = _follow(out, children, cfg, progress)
    except KeyboardInterrupt:
        state, reason = "interrupted", "stopped by Ctrl-C"
        raise
    finally:
        codes = children.stop()
        retransmissions = proxies.retransmissions()
        proxies.stop()
        run = cfg if "cfg" in locals() else {}
        summary = _collect(s, out, run, state, reason, codes, time.monotonic() - started, retransmissions)
    return summary


def _follow(
    out: Path, children: Children, cfg: dict[str, Any], progress: Callable[[int], None] | None
) -> tuple[str, str]:
    fl = cfg["fl"]
    deadline = time.monotonic() + fl["rounds"] * fl["round_timeout_s"] + 120
    agg = children.procs[cfg["aggregator"]]
    last = 0
    while agg.poll() is None:
        if time.monotonic() > deadline:
            return "failed", "timed out waiting for the aggregator"
        try:
            r = json.loads((out / "progress.json").read_text())["round"]
        except (OSError, ValueError, KeyError):
            r = last
        if r != last and progress:
            progress(r)
        last = r
        time.sleep(0.05)
    if progress:
        progress(last)
    for c in fl["clients"]:  # clients end after the aggregator's DONE
        with contextlib.suppress(subprocess.TimeoutExpired):
            children.procs[c].wait(10)
    if agg.returncode == 0:
        return "completed", ""
    node = out / "nodes" / f"{cfg['aggregator']}.json"
    why = json.loads(node.read_text()).get("reason", "") if node.exists() else ""
    return "failed", why or f"aggregator exited with code {agg.returncode} (see logs/{cfg['aggregator']}.log)"


def merge_spans(out: Path) -> pd.DataFrame:
    frames = [span_io.read(p) for p in sorted((out / "spans").glob("*.parquet"))]
    df = pd.concat(frames, ignore_index=True) if frames else span_io.to_frame([])
    rounds = df[(df.phase == "round")]
    markers = []
    for _, r in rounds.iterrows():
        recv = df[(df.phase == "receive") & (df["round"] == r["round"])]
        if len(recv):
            markers.append((0, int(r["round"]), r.pod, r.host, "distribution", "distribution", r.start_s,
                            float(recv.end_s.max()), 0.0, 0))  # fmt: skip
    if markers:
        df = pd.concat([df, span_io.to_frame(markers)], ignore_index=True)
    return df.sort_values(["start_s", "end_s"], kind="stable").reset_index(drop=True)


def _collect(s: Scenario, out: Path, cfg: dict[str, Any], state: str, reason: str,
             codes: dict[str, int | None], wall_s: float, retransmissions: int) -> dict[str, Any]:  # fmt: skip
    nodes = (
        {p.stem: json.loads(p.read_text()) for p in (out / "nodes").glob("*.json")} if (out / "nodes").exists() else {}
    )
    extra = {"backend": "local", "mode": cfg.get("mode"), "seed": cfg.get("seed"), "retransmissions": retransmissions,
             "attack": list(cfg["attack"]) if cfg.get("attack") else None}  # fmt: skip
    return write_results(s, out, nodes, cfg.get("aggregator", ""), state, reason, codes, wall_s, _utilisation, extra)


def write_results(
    s: Scenario, out: Path, nodes: dict[str, dict[str, Any]], aggregator: str, state: str, reason: str,
    codes: dict[str, int | None], wall_s: float, utilisation: Callable[[pd.DataFrame, float], dict[str, Any]],
    extra: dict[str, Any], status_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A twin run's result files (every backend): merged spans.parquet, summary.json with the simulator's keys
    plus the nodes' reports (accuracy, dropouts, security events), and status.json. ``extra`` adds to the
    summary (backend, mode, seed, ...), ``status_extra`` to status.json."""
    agg = nodes.get(aggregator, {})
    security: Counter[str] = Counter()
    for n in nodes.values():
        security.update(n.get("security", {}))
    df = merge_spans(out) if (out / "spans").exists() else span_io.to_frame([])
    span_io.write(df, out / "spans.parquet")
    duration = float(df.end_s.max()) if len(df) else wall_s
    meta: dict[str, Any] = {
        "scenario": s.name, "scenario_file": str(s.path), "replications": 1, "suite": s.workload.crypto.model_dump(),
        "events": len(df), "sim_time_s": duration, "host_utilization": utilisation(df, duration),
        "link_utilization": {}, "warnings": [], "state": state, "reason": reason,
        "initial_accuracy": agg.get("initial_accuracy"), "accuracy_per_round": agg.get("accuracy_per_round", []),
        "dropouts": agg.get("dropouts", []), "security": dict(security), **extra,
    }  # fmt: skip
    summary = summarise(df, meta)
    summary["wall_s"] = wall_s
    write_summary(summary, out)
    status = {"state": state, "reason": reason, "exit_codes": codes, **(status_extra or {})}
    atomic_write(out / "status.json", json.dumps(status, indent=2))
    return summary


def _utilisation(df: pd.DataFrame, duration_s: float) -> dict[str, dict[str, float | bool]]:
    """Busy fraction of this machine's cores, from the CPU spans (all pods share them)."""
    cpu = df[~df.op.isin(("transfer", "frame")) & ~df.phase.isin(span_io.MARKERS)]
    busy = float((cpu.end_s - cpu.start_s - cpu.queue_wait_s).sum())
    cores = os.cpu_count() or 1
    frac = busy / (cores * duration_s) if duration_s > 0 else 0.0
    return {"this-machine": {"offered": frac, "overloaded": bool(frac >= 1)}}
