"""A run on the cluster, planned: which pods run where, their run.json, resources and keys.

One pod per aggregator and client pod of the scenario, and one device emulator pod (``devices-<host>``)
per host where the scenario's devices attach. Crypto worker pods of the scenario run as threads of the
aggregator, as in the local twin (``workers`` in run.json); they are not separate pods. run.json is the
same ``RunConfig`` the local backend writes (hw/runconfig.py), addressed by ``ClusterAddressing``.

Resources, from the scenario, with requests = limits for CPU and memory (QoS class Guaranteed: these are
timing runs, so no pod may be squeezed or evicted before best-effort neighbours, and under the kubelet's
static CPU manager policy a whole-core pod gets cores of its own). CPU wanted = 1 core per client (+0.25
when it receives telemetry), 1 core for a sequential aggregator or ``min(workers, host cores)`` for a
concurrent one, 0.1 core + 5 m per emulated device; on a host they are scaled down together to at most
75 % of its cores (room for the cluster's own pods). The limit is that same amount: a pod's CPU is capped
where the scenario says it gets. Memory = twice an estimate of a base (Python, NumPy, pandas, pyarrow,
cryptography) + model copies -- aggregator 384 Mi + (4 + 3 x clients) x model size, client 320 Mi + 8 x
model size, emulator 192 Mi + 0.25 Mi a device -- as the limit is also the OOM-kill line.

Device access links (BLE, Wi-Fi ...) are not real on a cluster: each population's path from its devices
to the first cluster host on the way to its pod is emulated by a shaping proxy inside the emulator pod
(``link`` in run.json, hw/proxy.py), which runs on that host; links between cluster hosts are the real
network.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw.k8s.names import (
    CONNECT_TIMEOUT_S,
    FL_PORT,
    MAX_OBJECT_BYTES,
    METRICS_PORT,
    TELEMETRY_PORT,
    k8s_name,
    node_problem,
)
from hw.runconfig import Address, ProvisionedKeys, RunConfig, Service, access_link, build, runner_host
from sim.errors import UserError, field_error
from sim.scenario import DevicePopulation, Scenario

# --- plan: the run's pods, config and resources -------------------------------------------------------


@dataclass
class PodPlan:
    name: str  # the node program's NAME (scenario pod name, or devices-<host>)
    k8s: str  # object name
    role: str  # aggregator | client | devices
    host: str  # scenario host = cluster node name
    ports: dict[str, int]
    trusts: list[str]  # whose public keys it needs (scenario names; "devices" = its devices)
    holds: list[str]  # whose private keys it holds
    service: bool = False
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    scenario: Scenario
    config: RunConfig  # run.json
    pods: list[PodPlan]
    devices_of: dict[str, list[str]]  # receiving pod -> device identity names

    def pod(self, name: str) -> PodPlan:
        return next(p for p in self.pods if p.name == name)


class ClusterAddressing:
    """Addressing on a cluster: fixed container ports, Service names, device emulators per host."""

    def __init__(self, s: Scenario, seed: int):
        self.scenario = s
        self.seeds = iter(np.random.SeedSequence(seed).spawn(1000))

    def listen_port(self, pod: str, service: Service) -> int:
        return FL_PORT if service == "fl" else TELEMETRY_PORT

    def dial(self, src: str, pod: str, host: str, service: Service, port: int) -> Address:
        return (k8s_name(pod), port)

    def devices(self, pop: DevicePopulation, host: str) -> dict[str, Any]:
        runner = runner_host(self.scenario, pop, host)
        link = access_link(self.scenario, pop, runner)
        extra: dict[str, Any] = {"runner": f"devices-{runner}"}
        if link:
            extra |= {"link": link, "link_seed": int(next(self.seeds).generate_state(1)[0])}
        return extra


def plan(s: Scenario, mode: str, rounds: int, seed: int, epoch: float = 0.0) -> Plan:
    """Pods, run.json and resources of a run; UserError lines for what cannot run (as the local twin)."""
    config = build(s, mode, rounds, seed, ClusterAddressing(s, seed), epoch=epoch, clock="wall",
                   bind="0.0.0.0",  # noqa: S104 - a pod serves the cluster network on its own IP
                   keys=ProvisionedKeys(identity="identity/identity.json", trust="trust/trust.json"), report="log",
                   metrics_port=METRICS_PORT, connect_timeout_s=CONNECT_TIMEOUT_S)  # fmt: skip
    agg = s.pods("aggregator")[0]
    clients = s.pods("client")
    pops = [p for p in s.workload.devices if p.count]
    reporting = {p.report_to for p in pops}
    pods = [PodPlan(agg.name, k8s_name(agg.name), "aggregator", agg.host, {"fl": FL_PORT}, [c.name for c in clients],
                    [agg.name], service=True)]  # fmt: skip
    devices_of: dict[str, list[str]] = {}
    for g in config.devices:
        devices_of.setdefault(g.pod, []).extend(g.device_names())
    for c in clients:
        telemetry = c.name in reporting
        ports = {"telemetry": TELEMETRY_PORT} if telemetry else {}
        trusts = [agg.name] + (["devices"] if telemetry else [])
        pods.append(PodPlan(c.name, k8s_name(c.name), "client", c.host, ports, trusts, [c.name], service=telemetry))
    for runner in sorted({g.runner for g in config.devices if g.runner}):
        mine = [g for g in config.devices if g.runner == runner]
        holds = [name for g in mine for name in g.device_names()]
        host = runner.removeprefix("devices-")
        pods.append(PodPlan(runner, k8s_name(runner), "devices", host, {}, sorted({g.pod for g in mine}), holds))
    for p in pods:
        p.ports["metrics"] = METRICS_PORT
    index = {h.name: i for i, h in enumerate(s.deployment.hosts)}
    for host in sorted({p.host for p in pods}, key=lambda h: index.get(h, -1)):
        if (problem := node_problem(host)) is not None:  # pinned to it: the node's kubernetes.io/hostname label
            where = f"deployment.hosts[{index[host]}].name" if host in index else "deployment.hosts"
            raise UserError(field_error(s.path, where, host, f"on Kubernetes a host is the node its pods run on: "
                                        f"{problem}"))  # fmt: skip
    _check_names(s, pods)
    _resources(s, pods, config.workers, mode)
    return Plan(s, config, pods, devices_of)


# What a kustomize base (``render.base_files``, k8s/base) holds beside one ``<pod>.yaml`` per pod: a pod whose
# file had one of these names overwrote a generated file (run-config, network-policies, kustomization) or was
# overwritten by it. tests/test_names_and_force.py checks that the base generates exactly these.
BASE_FILES = frozenset({"kustomization.yaml", "network-policies.yaml", "run-config.yaml", "shared", "keys"})


def pod_file(pod: PodPlan) -> str:
    """The file of a pod's objects in a kustomize base."""
    return f"{pod.k8s}.yaml"


def _who(s: Scenario, pod: PodPlan) -> str:
    """A pod of the plan as the user knows it: its scenario field, or the device emulator the twin adds."""
    if pod.role == "devices":
        return f"the device emulator {pod.name} (of host {pod.host})"
    return f"{_field(s, pod)} {pod.name!r}"


def _field(s: Scenario, pod: PodPlan) -> str:
    return next(f"deployment.pods[{i}].name" for i, p in enumerate(s.deployment.pods) if p.name == pod.name)


def _check_names(s: Scenario, pods: list[PodPlan]) -> None:
    """Each pod's Kubernetes name is its own (object names, Service DNS names, its file in a kustomize base), and
    its base file is not one the base generates; one line naming the pod's field and what it collided with."""
    by: dict[str, list[PodPlan]] = {}
    for p in pods:
        by.setdefault(p.k8s, []).append(p)
    for name, same in sorted(by.items()):
        if len(same) > 1:
            # named at the field of the last scenario pod (an emulator is the twin's: it is the pod to rename)
            why = f"map to the same Kubernetes name {name!r} (Kubernetes names are lower case, punctuation becomes '-')"
            if not (ours := [p for p in same if p.role != "devices"]):  # hosts pi.1 and pi-1: two emulators
                raise UserError(f"{s.path}: deployment.hosts: {' and '.join(_who(s, p) for p in same)} {why}; "
                                "rename a host")  # fmt: skip
            at = ours[-1]
            others = " and ".join(_who(s, p) for p in same if p is not at)
            raise UserError(f"{s.path}: {_field(s, at)}: {at.name!r} and {others} {why}; rename the pod")
    for p in pods:
        if pod_file(p) in BASE_FILES:
            where = _field(s, p) if p.role != "devices" else "deployment.hosts"
            raise UserError(
                f"{s.path}: {where}: {p.name!r} has the Kubernetes name {p.k8s!r}, and its manifest file "
                f"{pod_file(p)} is one the kustomize base (k8s/base) generates itself; rename the pod"
            )


def _resources(s: Scenario, pods: list[PodPlan], n_workers: int, mode: str) -> None:
    """Requests and limits from the scenario (module docstring)."""
    cores = {h.name: h.cores for h in s.deployment.hosts}
    fl = s.workload.fl
    model_mi = fl.model_parameters * 4 / 2**20
    want: dict[str, float] = {}
    memory: dict[str, float] = {}
    for p in pods:
        if p.role == "aggregator":
            want[p.name] = 1000.0 if mode == "sequential" else 1000.0 * min(n_workers, cores[p.host])
            memory[p.name] = 384 + model_mi * (4 + 3 * fl.clients)
        elif p.role == "client":
            want[p.name] = 1000.0 + (250.0 if "telemetry" in p.ports else 0.0)
            memory[p.name] = 320 + model_mi * 8
        else:
            want[p.name] = 100.0 + 5.0 * len(p.holds)
            memory[p.name] = 192 + 0.25 * len(p.holds)
    for host, n in cores.items():
        on_host = [p for p in pods if p.host == host]
        total = sum(want[p.name] for p in on_host)
        scale = min(1.0, 750.0 * n / total) if total else 1.0
        for p in on_host:
            cpu = max(50, int(math.floor(want[p.name] * scale / 10) * 10))
            amount = {"cpu": f"{cpu}m", "memory": f"{2 * math.ceil(memory[p.name])}Mi"}  # 1000m: a whole core
            p.resources = {"requests": amount, "limits": dict(amount)}  # Guaranteed QoS (module docstring)


# --- keys ---------------------------------------------------------------------------------------------


@dataclass
class Keys:
    """Each pod's ``identity.json`` (private: Secret) and ``trust.json`` (public: ConfigMap) contents."""

    identity: dict[str, str]  # k8s pod name -> JSON text
    trust: dict[str, str]


def make_keys(p: Plan) -> Keys:
    """Fresh identities (signature + static KEM) for every pod and device of the run, in the format the pods'
    provider reads."""
    from hw.crypto import registry

    with registry.default().preferring(p.config.suite.provider):
        return _make_keys(p)


def _make_keys(p: Plan) -> Keys:
    from hw.channel import Identity, suite_from

    suite = suite_from(p.config.suite)
    idents = {name: Identity.generate(name, suite) for pod in p.pods for name in pod.holds}
    identity, trust = {}, {}
    for pod in p.pods:
        identity[pod.k8s] = json.dumps({n: idents[n].export_private() for n in pod.holds}, indent=1)
        table: dict[str, Any] = {}
        for peer in pod.trusts:
            if peer == "devices":
                table["devices"] = {d: idents[d].public() for d in p.devices_of.get(pod.name, [])}
            else:
                table[peer] = idents[peer].public()
        trust[pod.k8s] = json.dumps(table, indent=1)
        for what, text in (("public keys (trust ConfigMap)", trust[pod.k8s]),
                           ("private keys (Secret)", identity[pod.k8s])):  # fmt: skip
            size = len(text) * (4 / 3 if "Secret" in what else 1)
            if size > MAX_OBJECT_BYTES - 4096:
                raise UserError(
                    f"{p.scenario.path}: workload.devices: pod {pod.name}'s {what} would be {size / 2**20:.1f} MiB, "
                    f"over Kubernetes' 1 MiB object limit: spread the devices over more pods (got {len(pod.holds)} "
                    "identities)"
                )
    return Keys(identity, trust)
