"""``run.json``: what a backend tells the nodes of a twin run, built once from a Scenario for both backends.

The backend builds a ``RunConfig`` with ``build`` and writes it; every node reads it back validated with
``RunConfig.read`` (a malformed run.json is one line naming the field, never a silent default). What
differs between backends is only *where things are* — which port a pod listens on and which address a
peer dials (a shaping proxy here, a Service name on a cluster) — and that comes from the backend's
``Addressing``. Everything else (pods, routes, worker count, FL settings, suite, devices) follows from
the scenario here, in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hw.crypto import registry
from sim.contract import RunLayout, atomic_write, read_model
from sim.errors import UserError
from sim.scenario import DevicePopulation, Scenario

Address = tuple[str, int]
Service = Literal["fl", "telemetry"]
Mode = Literal["sequential", "concurrent", "both"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteConfig(_Model):
    kem: str
    signature: str
    aead: str
    provider: Literal["auto", "openssl", "liboqs"] = "auto"  # the scenario's workload.crypto.provider


class FLConfig(_Model):
    rounds: int = Field(ge=1)
    clients: list[str] = Field(min_length=1)
    model_parameters: int = Field(ge=1)
    samples_per_client: int = Field(ge=1)
    local_epochs: int = Field(ge=1)
    quorum_clients: int = Field(ge=1)
    round_timeout_s: float = Field(gt=0)


class PodConfig(_Model):
    role: Literal["aggregator", "client", "worker"]
    host: str
    port: int | None = None  # the aggregator's FL port
    telemetry_port: int | None = None  # a client that receives device telemetry
    pod: str | None = None  # a crypto worker process: the scenario's worker pod it belongs to


class LinkShapeConfig(_Model):
    """A device access path emulated inside the device emulator (Kubernetes: no real BLE on a cluster)."""

    bandwidth_bps: float
    latency_s: float
    jitter_s: float
    loss: float
    segment_bytes: int
    burst_bytes: int = 0


class DeviceGroup(_Model):
    """One device population: ``count`` devices sending ``frame_bytes`` every ``period_s`` to ``pod``."""

    population: str
    count: int = Field(ge=1)
    pod: str
    frame_bytes: int = Field(ge=1)
    period_s: float = Field(gt=0)
    address: Address
    runner: str | None = None  # the emulator that runs them (Kubernetes: one per host); None: "devices"
    link: LinkShapeConfig | None = None
    link_seed: int | None = None

    def device_names(self) -> list[str]:
        return [f"{self.population}#{i}" for i in range(self.count)]


class ProvisionedKeys(_Model):
    """Where a pod finds its private keys and its peers' public keys (mounted by the backend)."""

    identity: str
    trust: str


class RunConfig(_Model):
    scenario: str
    mode: Mode  # validated here: ``build`` passes the caller's string through
    seed: int
    epoch: float  # the run's clock origin (monotonic, or wall-clock with ``clock: wall``)
    clock: Literal["monotonic", "wall"] = "monotonic"
    bind: str = "127.0.0.1"
    suite: SuiteConfig
    rekey: Literal["per_message", "per_session", "per_round"]
    workers: int = Field(ge=1)
    aggregator: str
    fl: FLConfig
    pods: dict[str, PodConfig]
    routes: dict[str, dict[str, Address]]  # client or worker process -> {aggregator: where to dial}
    devices: list[DeviceGroup] = Field(default_factory=list)
    paired: list[Address] = Field(default_factory=list)  # addresses that take a connection opening with the run's key
    crash: dict[str, int] = Field(default_factory=dict)  # fault injection: client -> round it dies in
    attack: tuple[str, str] | None = None
    keys: ProvisionedKeys | None = None  # None: each node generates its keys and publishes them in keys/
    report: Literal["files", "log"] = "files"  # log: results also printed to stdout (Kubernetes)
    metrics_port: int | None = None
    connect_timeout_s: float = Field(default=30.0, gt=0)
    cpus: dict[str, list[int]] = Field(default_factory=dict)  # scenario host -> CPUs its pods are pinned to
    # every connection's TCP congestion control, the scenario's (``Transport.congestion_control``, ``hw.tcp``); "":
    # the machine's default (run.json written before the twin set it)
    congestion_control: str = Field(default="", max_length=15)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.pods.get(self.aggregator, None) is None or self.pods[self.aggregator].role != "aggregator":
            raise ValueError(f"aggregator {self.aggregator!r} is not an aggregator pod")
        if missing := [c for c in self.fl.clients if c not in self.pods or c not in self.routes]:
            raise ValueError(f"clients without a pod or a route: {', '.join(missing)}")
        if bad := [d.pod for d in self.devices if d.pod not in self.pods or self.pods[d.pod].telemetry_port is None]:
            raise ValueError(f"devices report to pods that receive no telemetry: {', '.join(bad)}")
        return self

    @property
    def worker_processes(self) -> list[str]:
        """The crypto worker processes of a concurrent run (none: the aggregator's own threads do the work)."""
        return [name for name, p in self.pods.items() if p.role == "worker"]

    def pod_of(self, process: str) -> str:
        """The scenario pod a process is (a crypto worker process: its worker pod), as spans name it."""
        pod = self.pods.get(process)
        return pod.pod if pod is not None and pod.pod else process

    def host_of(self, pod: str) -> str:
        return self.pods[pod].host if pod in self.pods else pod

    def devices_for(self, pod: str) -> list[DeviceGroup]:
        return [d for d in self.devices if d.pod == pod]

    def write(self, run_dir: Path) -> None:
        atomic_write(RunLayout(run_dir).run_config, self.to_json())

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def read(cls, run_dir: Path) -> RunConfig:
        """run.json of ``run_dir``, validated; ValueError with one line naming the file and field."""
        return read_model(cls, RunLayout(run_dir).run_config)


class Addressing(Protocol):
    """Where things are, as one backend arranges it."""

    def listen_port(self, pod: str, service: Service) -> int:
        """The port ``pod`` listens on for ``service``."""
        ...

    def dial(self, src: str, pod: str, host: str, service: Service, port: int) -> Address:
        """The address a peer on scenario node ``src`` dials to reach ``service`` of ``pod`` on ``host``."""
        ...

    def devices(self, pop: DevicePopulation, host: str) -> dict[str, Any]:
        """Extra ``DeviceGroup`` fields for a population whose pod is on ``host`` (runner, link)."""
        ...


def check_supported(s: Scenario) -> None:
    """What the twin cannot run, as one-line errors naming the field (every backend)."""
    w, f = s.workload, s.path
    problems = []
    for field, kind in (("kem", "kem"), ("signature", "signature"), ("aead", "aead")):
        name = getattr(w.crypto, field)
        try:
            registry.find(name, kind)  # type: ignore[call-overload]
        except ValueError as exc:
            problems.append(f"{f}: workload.crypto.{field}: {exc}")
    if w.fl.bytes_per_parameter != 4:
        problems.append(
            f"{f}: workload.fl.bytes_per_parameter: the twin trains float32 models (got {w.fl.bytes_per_parameter})"
        )
    if w.crypto.provider != "auto" and not (named := registry.default().provider(w.crypto.provider)).available:
        problems.append(f"{f}: workload.crypto.provider: {w.crypto.provider} is not available here: {named.reason}")
    if any(p.count and p.key_establishment != "device" for p in w.devices):
        problems.append(f"{f}: workload.devices: the twin's devices run their own sessions (key_establishment: "
                        "device)")  # fmt: skip
    if w.telemetry_receiver != "per-device" and any(p.count for p in w.devices):
        problems.append(f"{f}: workload.telemetry_receiver: the twin serves each device on a thread of its own "
                        f"(per-device) (got {w.telemetry_receiver!r})")  # fmt: skip
    agg = s.pods("aggregator")[0].name
    if any(p.report_to == agg for p in w.devices if p.count):
        problems.append(f"{f}: workload.devices: the twin streams telemetry to client pods only (got {agg!r})")
    problems += name_problems(s)
    if problems:
        raise UserError(problems)


DEVICE_EMULATOR = "devices"  # the device emulator's process, and the key of its devices in a trust table


def name_problems(s: Scenario, runners: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """A pod named as a process the twin derives for another (one line each, naming the pod's field): ``devices``
    (the device emulator, and its devices' key in the trust tables: every backend), a crypto process
    ``<worker pod>.<k>`` of a concurrent run (``worker_processes``: refused in every mode, so the scenario runs in
    both), and ``runners`` (a backend's device emulators: Kubernetes runs one per host). Two processes under one
    name shared a config, keys, logs and spans (a client ``worker-1.1``: "quorum lost"), or ended in an internal
    error (a client ``devices``: KeyError in provisioning)."""
    taken = {DEVICE_EMULATOR: "reserved by the twin for its device emulator"}
    for proc, pod in worker_processes(s).items():
        k = int(proc.rsplit(".", 1)[1])
        taken.setdefault(proc, f"the name of {pod}'s {_ordinal(k)} crypto process (a concurrent run's)")
    for runner in sorted(runners):
        taken.setdefault(runner, "the name of one of the run's device emulators")
    return [f"{s.path}: deployment.pods[{i}].name: {p.name!r} is {taken[p.name]}; rename the pod"
            for i, p in enumerate(s.deployment.pods) if p.name in taken]  # fmt: skip


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def worker_processes(s: Scenario) -> dict[str, str]:
    """{process: worker pod}: a concurrent run's crypto workers, one process per worker thread of the scenario
    (``crypto_workers``), spread round-robin over its worker pods as the simulator spreads them; none when
    the scenario has no worker pods (the aggregator's own threads then do the work, as simulated)."""
    pods = [p.name for p in s.pods("worker")]
    if not pods:
        return {}
    n = s.crypto_workers()
    return {f"{pods[i % len(pods)]}.{i // len(pods) + 1}": pods[i % len(pods)] for i in range(n)}


def build(s: Scenario, mode: str, rounds: int, seed: int, where: Addressing, separate_workers: bool = False,
          **fields: Any) -> RunConfig:  # fmt: skip
    """The run's configuration; ``fields`` sets the backend's own (epoch, clock, keys, report, ...).

    ``separate_workers``: a concurrent run's crypto workers are processes of their own (``worker_processes``)
    fed by the aggregator over secure channels; otherwise threads of the aggregator.
    """
    check_supported(s)
    agg = s.pods("aggregator")[0]
    clients = s.pods("client")
    pops = [p for p in s.workload.devices if p.count]
    reporting = {p.report_to for p in pops}
    pods = {agg.name: PodConfig(role="aggregator", host=agg.host, port=where.listen_port(agg.name, "fl"))}
    for c in clients:
        port = where.listen_port(c.name, "telemetry") if c.name in reporting else None
        pods[c.name] = PodConfig(role="client", host=c.host, telemetry_port=port)
    agg_port = pods[agg.name].port
    assert agg_port is not None
    routes = {c.name: {agg.name: where.dial(c.host, agg.name, agg.host, "fl", agg_port)} for c in clients}
    if separate_workers and mode in ("concurrent", "both"):
        hosts = {p.name: p.host for p in s.pods("worker")}
        for proc, pod in worker_processes(s).items():
            pods[proc] = PodConfig(role="worker", host=hosts[pod], pod=pod)
            routes[proc] = {agg.name: where.dial(hosts[pod], agg.name, agg.host, "fl", agg_port)}
    devices = []
    for pop in pops:
        target = pods[pop.report_to]
        assert target.telemetry_port is not None
        devices.append(DeviceGroup(
            population=pop.name, count=pop.count, pod=pop.report_to, frame_bytes=pop.frame_bytes(),
            period_s=pop.period_s(),
            address=where.dial(f"{pop.name}#0", pop.report_to, target.host, "telemetry", target.telemetry_port),
            **where.devices(pop, target.host),
        ))  # fmt: skip
    if problems := name_problems(s, {d.runner for d in devices if d.runner}):  # a backend's own emulators
        raise UserError(problems)
    fl = s.workload.fl
    fl_cfg = FLConfig(rounds=rounds, clients=[c.name for c in clients], model_parameters=fl.model_parameters,
                      samples_per_client=fl.samples_per_client, local_epochs=fl.local_epochs,
                      quorum_clients=fl.quorum_clients, round_timeout_s=fl.round_timeout_s)  # fmt: skip
    crypto = s.workload.crypto
    return RunConfig(
        scenario=s.name, mode=cast(Mode, mode), seed=seed,
        suite=SuiteConfig(kem=crypto.kem, signature=crypto.signature, aead=crypto.aead, provider=crypto.provider),
        rekey=crypto.rekey.fl, workers=s.crypto_workers(), aggregator=agg.name, fl=fl_cfg,
        pods=pods, routes=routes, devices=devices,
        congestion_control=s.deployment.network.transport.congestion_control, **fields,
    )  # fmt: skip


def first_frame_warning(s: Scenario) -> str | None:
    """The twin's devices send a session's first frame once they have their keys (``first_frame: with_keys``);
    a population that says ``after_handshake`` is simulated otherwise, so say so (its telemetry frames differ)."""
    late = [(i, p) for i, p in enumerate(s.workload.devices) if p.count and p.first_frame == "after_handshake"]
    if not late:
        return None
    i, p = late[0]
    more = f" (and {len(late) - 1} more)" if len(late) > 1 else ""
    return (
        f"workload.devices[{i}] ({p.name}){more}: first_frame: after_handshake, but the twin's devices send their "
        "first frame once they have their keys: telemetry frames will not match a simulation of this scenario; "
        "set first_frame: with_keys"
    )


def runner_host(s: Scenario, pop: DevicePopulation, target_host: str) -> str:
    """The scenario host that emulates a population (netns, k8s): the first host on its devices' path to their pod."""
    hosts = {h.name for h in s.deployment.hosts}
    return next(n for n in s.route(f"{pop.name}#0", target_host) if n in hosts)


def access_link(s: Scenario, pop: DevicePopulation, runner: str) -> LinkShapeConfig | None:
    """The emulated part of a population's path (device .. runner host) as one link shape."""
    from hw.proxy import LinkShape

    shapes = [LinkShape.of(params) for _, _, params in s.route_links(f"{pop.name}#0", runner)]
    if not shapes:
        return None
    shape = LinkShape.from_path(shapes)
    return LinkShapeConfig(bandwidth_bps=shape.bandwidth_bps, latency_s=shape.latency_s, jitter_s=shape.jitter_s,
                           loss=shape.loss, segment_bytes=s.run.segment_bytes,
                           burst_bytes=shape.burst_bytes)  # fmt: skip
