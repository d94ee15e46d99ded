"""Scenario files (scenarios/*.yaml): workload + deployment + run settings, validated with pydantic v2.

(Longer than our ~450-line guide on purpose: the schema, its cross-section checks and the one way in are
one unit that input hardening reworks together; the checks are short functions, one per section.)

``load_scenario(path, overrides)`` is the one way in: it parses YAML, applies ``--set dotted.path=value``
overrides, validates the schema (unknown keys and impossible values rejected), then checks references
between sections (pods on existing hosts, links between known nodes, algorithms in the catalogue,
profiles that price every operation the scenario needs, routes between everything that talks).
Every problem becomes one ``UserError`` line: ``FILE: field.path: message (got VALUE)``.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from sim import catalogue
from sim.contract import WINDOW_OF_ITS_OWN, CongestionControl, RunLayout, atomic_write
from sim.errors import UserError, field_error, load_yaml, shorten, show, validate
from sim.loading import exists, parse_value, read_text, require_utf8
from sim.presets import (
    DEVICE_CLASSES,
    LINK_PRESETS,
    MAX_CONNECTION_INTERVAL_S,
    MAX_PERIPHERAL_LATENCY,
    MAX_SUPERVISION_TIMEOUT_S,
    MIN_CONNECTION_INTERVAL_S,
)
from sim.profile import Profile, load_profile
from sim.strict import StrictModel

if TYPE_CHECKING:  # NetworkX loads with a scenario's first graph: a twin node reads run.json, never one (~0.14 s)
    import networkx as nx

# --- bounds: every number of a scenario is limited to what the model can run --------------------------
# (scenario check then estimates what the run as a whole costs: sim/cost.py)
MAX_BANDWIDTH_BPS = 1e12  # 1 Tbit/s: above any link we model (800G Ethernet is the fastest sold)
MIN_BANDWIDTH_BPS = 1.0  # below 1 bit/s a 64-byte hello takes over 8 minutes a hop
MAX_DELAY_S = 60.0  # one-way latency or jitter: a geostationary hop is 0.25 s; a minute is a broken link
MAX_BURST_BYTES = 1 << 30  # a token bucket deeper than 1 GiB shapes nothing a run sends
MAX_LOSS = 0.5  # a lost segment is resent until it passes (1 / (1 - loss) tries); at 50 % the link is down
MAX_DEVICES = 100_000  # per population: ten times the 10,000-device ward we plan for
MAX_SAMPLE_RATE_HZ = 1e6  # ultrasound front ends; ECG is 250-1,000 Hz
MIN_PERIOD_S = 1e-3  # the shortest BLE connection interval is 7.5 ms
MAX_PERIOD_S = 86_400.0  # a day
MAX_FRAME_BYTES = 16 << 20  # one telemetry frame's plaintext (AEAD records of the twin are framed in memory)
MAX_HEADER_BYTES = 65_536
MAX_ROUNDS = 100_000
MAX_CLIENTS = 10_000  # each is a pod, in the simulator and in the twin
MAX_MODEL_PARAMETERS = 1_000_000_000  # 4 GB of float32: the twin holds several copies; a Pi 4 has 8 GB at most
MAX_EPOCHS = 1_000
MAX_SAMPLES = 10_000_000  # per client; the twin generates them in memory
MAX_ROUND_TIMEOUT_S = 86_400.0  # the twin waits on thread timeouts; an unbounded one overflows them
MAX_WORKERS = 1_024  # crypto worker threads; the twin starts a process per worker
MAX_CORES = 1_024
MAX_SEED = 2**63 - 1  # stored as int64 (summary, run.json, Kubernetes env)
MAX_REPLICATIONS = 10_000
MAX_HORIZON_S = 31_536_000.0  # a year: float seconds still resolve 4 ns there, below any cost we model (µs)
MAX_SERIES_BINS = 100_000  # series.parquet's bins a replication: run.series_bin_s gives at most this many
MAX_SEGMENT_BYTES = 16 << 20
MAX_ITEMS = 10_000  # hosts, nodes, links, pods or device populations of one scenario
MAX_TEXT = 10_000  # description
MAX_REF = 4_096  # a profile name or path (PATH_MAX)

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]  # a DNS label


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


def whole_or_auto(v: Any, lo: int, hi: int, what: str) -> Any:
    """An ``int | 'auto'`` field's value checked with one message for both members of the union (pydantic
    would report each)."""
    if v == "auto":
        return v
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi or v != int(v):
        raise ValueError(f"must be {what} from {lo} to {hi}, or 'auto'")
    return int(v)


class LinkParams(_Strict):
    """A link's parameters: a preset name, with any field overridden."""

    preset: str | None = Field(default=None, max_length=MAX_REF)
    bandwidth_bps: float | None = Field(default=None, ge=MIN_BANDWIDTH_BPS, le=MAX_BANDWIDTH_BPS)
    latency_s: float | None = Field(default=None, ge=0, le=MAX_DELAY_S)
    jitter_s: float | None = Field(default=None, ge=0, le=MAX_DELAY_S)
    loss: float | None = Field(default=None, ge=0, le=MAX_LOSS)
    # a token bucket shaping the link (Linux tbf's ``burst``): up to this many bytes leave at once after the link
    # has been idle long enough to fill it; 0 (the default, a plain link) for none (sim/network.py)
    burst_bytes: int | None = Field(default=None, ge=0, le=MAX_BURST_BYTES)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in LINK_PRESETS:
            raise ValueError(f"unknown link preset (known: {', '.join(LINK_PRESETS)})")
        return v

    @model_validator(mode="after")
    def _complete(self) -> LinkParams:
        if self.preset is None and (self.bandwidth_bps is None or self.latency_s is None):
            raise ValueError("give a preset or both bandwidth_bps and latency_s")
        return self

    def resolved(self) -> tuple[float, float, float, float]:
        """(bandwidth_bps, latency_s, jitter_s, loss) with the preset filled in."""
        p = LINK_PRESETS.get(self.preset or "")

        def pick(value: float | None, field: str) -> float:
            return value if value is not None else (getattr(p, field) if p else 0.0)

        return (
            pick(self.bandwidth_bps, "bandwidth_bps"),
            pick(self.latency_s, "latency_s"),
            pick(self.jitter_s, "jitter_s"),
            pick(self.loss, "loss"),
        )


class Link(LinkParams):
    a: Name
    b: Name


class DevicePopulation(_Strict):
    name: Name
    device_class: str = Field(alias="class", max_length=MAX_REF)
    count: int = Field(ge=0, le=MAX_DEVICES)
    sample_rate_hz: float | None = Field(default=None, gt=0, le=MAX_SAMPLE_RATE_HZ)
    bits_per_sample: int | None = Field(default=None, ge=1, le=64)
    frame_period_s: float | None = Field(default=None, ge=MIN_PERIOD_S, le=MAX_PERIOD_S)
    header_bytes: int = Field(default=16, ge=0, le=MAX_HEADER_BYTES)
    gateway: Name
    access_link: LinkParams = LinkParams(preset="ble")
    report_to: Name
    profile: str | None = Field(default=None, min_length=1, max_length=MAX_REF)  # None: device compute not modelled
    battery_j: float | None = Field(default=None, gt=0, le=1e9)  # None: the device class's battery (sim/presets.py)
    # the part of the battery's rated energy the sensor gets out of it: coin cells under a radio's pulsed load
    # gave from about half to all of their rating, by vendor (TI SWRA349; README "Energy")
    battery_usable: float = Field(default=1.0, gt=0, le=1)
    # who runs the device's post-quantum session with its pod: the device itself, or its gateway host on its
    # behalf (the sensor keeps a provisioned symmetric key with the gateway, which re-encrypts each frame)
    key_establishment: Literal["device", "gateway"] = "device"
    # when a session's frames start: once the handshake is complete (the pod verified the device's last
    # message), or as soon as the device has its keys (it signed and handed over that message), as a sensor
    # does and the twin's device emulator does: the first frame then queues behind that message on the
    # device's link and behind the pod's handshake work (with key_establishment: gateway, the gateway forwards
    # frames once it has the keys). The vectorized engine runs the frames sent before the handshake ends in
    # SimPy (sim/model.py).
    first_frame: Literal["after_handshake", "with_keys"] = "after_handshake"
    # the sensor's BLE connection, for its energy (sim/energy.py): the central's connection interval (None: the
    # access link's latency_s, which the BLE presets take to be it, held within 7.5 ms..4 s) and the peripheral
    # latency, how many connection events in a row the sensor may sleep through with nothing to send (auto: as
    # many as its frame period and the longest supervision timeout allow)
    connection_interval_s: float | None = Field(
        default=None, ge=MIN_CONNECTION_INTERVAL_S, le=MAX_CONNECTION_INTERVAL_S
    )
    peripheral_latency: int | Literal["auto"] = "auto"

    @field_validator("device_class")
    @classmethod
    def _known_class(cls, v: str) -> str:
        if v not in DEVICE_CLASSES:
            raise ValueError(f"unknown device class (known: {', '.join(DEVICE_CLASSES)})")
        return v

    @model_validator(mode="after")
    def _frame_fits(self) -> DevicePopulation:
        if self.frame_bytes() > MAX_FRAME_BYTES:
            raise ValueError(
                f"a frame of {self.frame_bytes():,} bytes (sample_rate_hz x frame_period_s x bits_per_sample / 8) "
                f"exceeds {MAX_FRAME_BYTES:,}; lower sample_rate_hz, frame_period_s or bits_per_sample"
            )
        return self

    def frame_bytes(self) -> int:
        """Plaintext bytes per frame: header + samples of one frame period."""
        dc = DEVICE_CLASSES[self.device_class]
        rate = self.sample_rate_hz or dc.sample_rate_hz
        bits = self.bits_per_sample or dc.bits_per_sample
        return self.header_bytes + math.ceil(rate * self.period_s() * bits / 8)

    @field_validator("peripheral_latency", mode="before")
    @classmethod
    def _events_or_auto(cls, v: Any) -> Any:
        return whole_or_auto(v, 0, MAX_PERIPHERAL_LATENCY, "a whole number of events")

    @model_validator(mode="after")
    def _supervised(self) -> DevicePopulation:
        if self.peripheral_latency != "auto":
            wake = (1 + self.peripheral_latency) * self.connection_interval()
            if wake >= MAX_SUPERVISION_TIMEOUT_S / 2:
                raise ValueError(
                    f"peripheral_latency {self.peripheral_latency}: the sensor would wake every {wake:g} s; BLE needs "
                    f"(1 + peripheral_latency) x connection interval under {MAX_SUPERVISION_TIMEOUT_S / 2:g} s (half "
                    "the longest supervision timeout)"
                )
        return self

    def period_s(self) -> float:
        return self.frame_period_s or DEVICE_CLASSES[self.device_class].frame_period_s

    def connection_interval(self) -> float:
        """The BLE connection interval, seconds: ``connection_interval_s`` or the access link's latency."""
        if self.connection_interval_s is not None:
            return self.connection_interval_s
        latency_s = self.access_link.resolved()[1]
        return min(MAX_CONNECTION_INTERVAL_S, max(MIN_CONNECTION_INTERVAL_S, latency_s))

    def wake_interval_s(self) -> float:
        """How often the sensor's radio wakes for a connection event with nothing to send: (1 + peripheral
        latency) x the connection interval; ``auto`` takes the largest latency that still wakes it by its next
        frame and within half the longest supervision timeout."""
        interval = self.connection_interval()
        if self.peripheral_latency != "auto":
            return (1 + self.peripheral_latency) * interval
        limit = min(self.period_s(), math.nextafter(MAX_SUPERVISION_TIMEOUT_S / 2, 0.0))
        return (1 + min(MAX_PERIPHERAL_LATENCY, max(0, math.floor(limit / interval) - 1))) * interval


class FL(_Strict):
    rounds: int = Field(ge=1, le=MAX_ROUNDS)
    clients: int = Field(ge=1, le=MAX_CLIENTS)
    model_parameters: int = Field(ge=1, le=MAX_MODEL_PARAMETERS)
    bytes_per_parameter: int = Field(default=4, ge=1, le=8)
    local_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    samples_per_client: int = Field(ge=1, le=MAX_SAMPLES)
    aggregation: Literal["fedavg"] = "fedavg"
    quorum: float = Field(default=1.0, gt=0, le=1)  # fraction of clients whose updates a round needs
    dropout_probability: float = Field(default=0.0, ge=0, lt=1)
    round_timeout_s: float = Field(default=600.0, gt=0, le=MAX_ROUND_TIMEOUT_S)
    header_bytes: int = Field(default=8, ge=0, le=MAX_HEADER_BYTES)  # a model message's serialisation header

    @property
    def model_bytes(self) -> int:
        return self.model_parameters * self.bytes_per_parameter

    @property
    def train_units(self) -> int:
        """A client's local training in ``fl.train``'s units: samples x parameters x epochs."""
        return self.samples_per_client * self.model_parameters * self.local_epochs

    @property
    def quorum_clients(self) -> int:
        return max(1, math.ceil(self.quorum * self.clients - 1e-9))


class Rekey(_Strict):
    fl: Literal["per_message", "per_round", "per_session"] = "per_round"
    device_interval_s: float | None = Field(default=3600.0, ge=1, le=MAX_HORIZON_S)  # None: one handshake


class Crypto(_Strict):
    kem: str = Field(max_length=MAX_REF)
    signature: str = Field(max_length=MAX_REF)
    aead: str = Field(max_length=MAX_REF)
    rekey: Rekey = Rekey()
    # the hardware twin's crypto provider for the KEM and signature: auto = OpenSSL where it implements the
    # algorithm, else liboqs (the registry's order); a named one is preferred, the other used where it lacks one.
    # The simulator warns when a host's profile priced the suite with another provider (sim/provenance.py).
    provider: Literal["auto", "openssl", "liboqs"] = "auto"

    @field_validator("kem", "signature", "aead")
    @classmethod
    def _catalogued(cls, v: str, info: Any) -> str:
        kinds: dict[str, catalogue.Kind] = {"kem": "kem", "signature": "signature", "aead": "aead"}
        catalogue.get(v, kinds[info.field_name])  # raises ValueError naming the known algorithms
        return v


class Processing(_Strict):
    mode: Literal["sequential", "concurrent"]
    workers: int | Literal["auto"] = "auto"  # concurrent crypto worker threads; auto = cores of worker hosts

    @field_validator("workers", mode="before")
    @classmethod
    def _count_or_auto(cls, v: Any) -> Any:
        return whole_or_auto(v, 1, MAX_WORKERS, "a whole number")


class Workload(_Strict):
    devices: list[DevicePopulation] = Field(default=[], max_length=MAX_ITEMS)
    fl: FL
    crypto: Crypto
    processing: Processing
    # how a pod receives its devices' sessions: per-device = a thread per device session runs the pod's side of
    # its handshakes, then decrypts its frames in order (the hardware twin, hw/node/client.py); one-thread = one
    # receiver thread per pod does so for all its devices in arrival order (an event loop; run.engine: events)
    telemetry_receiver: Literal["per-device", "one-thread"] = "per-device"


class Host(_Strict):
    name: Name
    cores: int = Field(ge=1, le=MAX_CORES)
    profile: str = Field(min_length=1, max_length=MAX_REF)
    # processor-sharing: the OS time-slices runnable threads over the cores; linux: each core its own run queue,
    # threads placed on cores as Linux places them (not work-conserving); fifo: run to completion (sim/hosts.py)
    cpu_sharing: Literal["processor-sharing", "linux", "fifo"] = "processor-sharing"
    # how fast the cores run against when the profile was measured: every cost on this host is divided by it
    # (0.8: a throttled or shared CPU; 1.5: a faster part of the same family)
    cpu_speed: float = Field(default=1.0, gt=0, le=100)


class Node(_Strict):
    name: Name
    kind: Literal["switch", "gateway", "router"]


class Transport(_Strict):
    """How a message between pods crosses links: TCP/IPv4 over Ethernet as Linux sends it (validated against
    real TCP over network namespaces and tbf: bench/net_fidelity.py, docs/network-validation.md).

    ``fair``: concurrent messages share a link; each keeps at most ``window_segments`` segments in flight
    (more when the path's bandwidth-delay product needs it) and asks for the next when the oldest arrives,
    so flows interleave as TCP flows do behind one queue; segments grow from TCP's initial window. Flows that
    start together do not share equally at first (each congestion window starts and probes on its own) and
    converge to equal shares as they go on: a message's segments are ``run.segment_bytes`` times a weight
    drawn per message, lognormal of median 1 and spread ``share_sigma / (1 + d / share_converge_s)``, d being
    its bytes' time at its path's slowest link, so its share of a busy link goes as its weight once its
    segments have grown past slow start (from ~100 kB); short flows share unequally, long ones almost equally
    (fitted on the measured matrix of bench/net_fidelity.py, docs/network-validation.md; ``share_sigma: 0``: equal
    shares). Where segments arriving over different links converge on one (a switch's egress toward the
    receiver: clients uploading at once), ``fan_in: packets`` serves their packets in the order they arrived, so
    flows of equal size fanned in end together, as measured; ``segments`` serves whole segments in turn (the model
    settles this on a route's last link only: flows merging at a middle hop are served segment by segment).
    ``fifo``: a message's segments all queue at once, so messages cross a link whole, one after another (with
    ``fan_in: segments`` and ``header_bytes: 0``, the model before the validation). Each ``mss_bytes`` of
    payload carries ``header_bytes`` of headers on the wire (Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12 = 66
    at Linux's 1448-byte MSS); device frames are priced
    by their own framing only.
    """

    sharing: Literal["fair", "fifo"] = "fair"
    window_segments: int = Field(default=2, ge=1, le=1024)
    # fair: a message's first segment is this many packets, each next one twice the last up to
    # run.segment_bytes (slow start from Linux's initial window of 10 packets, RFC 6928); 0: all full segments
    initial_window_packets: int = Field(default=10, ge=0, le=10_000)
    mss_bytes: int = Field(default=1448, ge=64, le=65536)
    header_bytes: int = Field(default=66, ge=0, le=1024)
    # a sender hands a message to its kernel and goes on while the kernel carries it, when the message fits the
    # socket's send buffer; Linux grows it with the connection's window up to net.ipv4.tcp_wmem's maximum, this
    # (4 MiB by default): a connection a loss has cut keeps the buffer of its largest window, and a send larger than
    # that returns once the rest is acknowledged (sim/network.py ``send_buffer_bytes``); a message larger than this
    # holds the sender until it has arrived (an upper bound); 0: every sender waits for its message to arrive
    send_buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=0, le=2**31)
    share_sigma: float = Field(default=0.35, ge=0, le=3)  # fair: the spread of a short flow's share weight
    share_converge_s: float = Field(default=0.2, gt=0, le=3600)  # fair: how long flows take to converge
    # where flows from different input links converge on a link (a switch's egress), how it serves them:
    # packets -- packet by packet in the order they arrived, as a switch's queue does, so a segment's last packet
    # leaves only once the bytes that arrived before it have (``sim.network.LinkServer.merged_end``); segments --
    # each segment in turn, whole (the model before fan-in was measured)
    fan_in: Literal["packets", "segments"] = "packets"
    # a host's kernel sends at most this many bits/s of TCP messages, whatever its links' rates: a FIFO stage before
    # a message's first link, shared by every message the host sends -- by every host emulated on one machine
    # (``deployment.machine``: one kernel). A CPU-bound stack, so at a host's ``cpu_speed`` it moves that many times
    # this rate. On our 2-vCPU VM one TCP stream between network namespaces whose links limit nothing moves ~2-3
    # Gbit/s, so a 64 KiB message takes ~0.2 ms on any link of a gigabit or more (bench/net_fidelity.py measures it
    # so); over gigabit tbf links the kernel spends about twice the CPU per byte (9-10 ms per 1 MB message against
    # 4.75 over 10 Gbit/s ones: hw/sendcpu.py, which bench/twin_fidelity.py's netns cells use); 0: no limit (the
    # model before it was measured). It counts as the route's slowest element where it is (``share_spread``, the
    # window); time queued there counts as network queue wait.
    host_rate_bps: float = Field(default=0.0, ge=0, le=MAX_BANDWIDTH_BPS)
    # on a lossy link, a message whose last packet is lost has no later packet to reveal the loss: the sender
    # resends it when its loss probe fires, which with that one packet out waits the minimum retransmission
    # timeout as well (Linux's tcp_schedule_loss_probe adds TCP_RTO_MIN, 200 ms) -- doubled for each time the
    # resend is lost again. Measured (bench/loss_tails.py, 1 % loss per link): 1-3 % of messages wait ~200 ms and
    # make 40-70 % of the mean; 0: no such wait (the model before it was measured)
    rto_min_s: float = Field(default=0.2, ge=0, le=60)
    # the hosts' TCP congestion control, Linux's name: cubic (stock Linux's and Raspberry Pi OS's default), reno or
    # bbr. The twin sets it on every connection its nodes and links open (``hw.tcp``), whatever the machine's
    # default. The model is TCP's standard window (slow start, restart after idle: sim/congestion.py); bbr sets its
    # own window, so the model does not restart it after idle
    congestion_control: CongestionControl = "cubic"
    # a connection that sent nothing for longer than its retransmission timeout (``rto_min_s`` plus the round trip)
    # restarts its window from the initial one, halved once a timeout (Linux's net.ipv4.tcp_slow_start_after_idle,
    # on by default), where its congestion control leaves the window to TCP (``restarts_after_idle``)
    restart_after_idle: bool = True
    # CUBIC's HyStart (Linux's tcp_cubic hystart=1, on by default): slow start ends where a round trip's
    # acknowledgements come back as a train longer than half the path's minimum round trip (sim/congestion.py
    # ``hystart_exit_packets``); false: slow start runs to the path's window or a loss (the model before stop 89)
    hystart: bool = True

    @field_validator("host_rate_bps")
    @classmethod
    def _a_rate_or_none(cls, v: float) -> float:
        if 0 < v < MIN_BANDWIDTH_BPS:
            raise ValueError(f"must be 0 (no limit) or at least {MIN_BANDWIDTH_BPS:g} bit/s")
        return v

    def share_spread(self, duration_s: float) -> float:
        """The spread (sigma of its log) of the share weight of a message whose bytes take ``duration_s`` at
        its path's slowest link: ``share_sigma`` for a short one, towards 0 (equal shares) for a long one."""
        return self.share_sigma / (1.0 + duration_s / self.share_converge_s) if self.sharing == "fair" else 0.0

    def wire_bytes(self, payload_bytes: int) -> int:
        """Bytes on the wire for a message of ``payload_bytes`` (headers of every packet included)."""
        return payload_bytes + -(-payload_bytes // self.mss_bytes) * self.header_bytes

    @property
    def restarts_after_idle(self) -> bool:
        """An idle connection's window restarts (``restart_after_idle``, skipped by a congestion control with a
        window of its own, as Linux's ``tcp_slow_start_after_idle_check`` skips it)."""
        return self.restart_after_idle and self.congestion_control not in WINDOW_OF_ITS_OWN

    @property
    def packet_bytes(self) -> int:
        """A full packet on the wire: the unit switches forward and TCP's window counts."""
        return self.mss_bytes + self.header_bytes


class Network(_Strict):
    nodes: list[Node] = Field(default=[], max_length=MAX_ITEMS)
    links: list[Link] = Field(min_length=1, max_length=MAX_ITEMS)
    transport: Transport = Transport()


class Pod(_Strict):
    name: Name
    role: Literal["aggregator", "client", "worker"]
    host: Name


class Machine(_Strict):
    """The one machine the scenario's hosts are emulated on (the twin's netns backend puts each host in a
    namespace of this machine): every host's work shares its ``cores``, whatever each host declares, scheduled
    one way (every host's ``cpu_sharing`` as the first host's: processor sharing, or ``linux``), and trainings slow
    each other down across hosts as on one (``pair_slowdown``: they share its memory bus)."""

    cores: int = Field(ge=1, le=MAX_CORES)
    # A TCP send between two of its hosts over links of at least this rate holds the sending thread until the
    # message has arrived, its core busy ``send_busy_share`` of that time: the link takes packets as fast as the
    # kernel makes them, so the kernel moves the whole message in the sender's context. Over slower links packets
    # queue at the link, and the send returns once the message is queued (``Transport.send_buffer_bytes``).
    # Measured on our 2-vCPU VM (bench/send_hold.py, 1 MB messages, 2026-12-06): held 97 % of the transfer at 800
    # Mbit/s and up, its core busy 79-97 % of it; at 700 Mbit/s and below held 8-40 % of it, back with 0.6-1 MB
    # unsent (2026-12-06 23:00, cores slower: held 65-95 % of it at a gigabit). Its rescore on kept netns runs:
    # docs/twin-validation.md "Stop 83". 0: every send held
    send_held_from_bps: float = Field(default=8e8, ge=0, le=MAX_BANDWIDTH_BPS)
    send_busy_share: float = Field(default=0.85, ge=0, le=1)


class Deployment(_Strict):
    hosts: list[Host] = Field(min_length=1, max_length=MAX_ITEMS)
    network: Network
    pods: list[Pod] = Field(min_length=2, max_length=MAX_ITEMS)
    machine: Machine | None = None  # unset: each host has its own cores


class Run(_Strict):
    seed: int = Field(default=1, ge=0, le=MAX_SEED)
    replications: int = Field(default=5, ge=1, le=MAX_REPLICATIONS)
    horizon_s: float = Field(default=3600.0, gt=0, le=MAX_HORIZON_S)
    # network segment: large messages pipeline across hops
    segment_bytes: int = Field(default=65536, ge=64, le=MAX_SEGMENT_BYTES)
    # horizon: devices send until horizon_s (FL may end earlier); last_round: the run ends with the last FL
    # round (or at horizon_s), as the hardware twin's runs do
    stop_at: Literal["horizon", "last_round"] = "horizon"
    # events: every frame a SimPy process (the reference); vectorized: frames in compiled per-server kernels
    # beside the SimPy run of everything else (sim/telemetry.py); auto: vectorized when devices send frames
    engine: Literal["auto", "events", "vectorized"] = "auto"
    # busy time of every shared link and host per bin of this width (series.parquet); default horizon_s / 120
    series_bin_s: float | None = Field(default=None, gt=0, le=MAX_HORIZON_S)
    # the vectorized engine keeps this fraction of frames as spans (a uniform sample); statistics use all
    frame_spans: float = Field(default=0.001, ge=0, le=1)

    @field_validator("series_bin_s")
    @classmethod
    def _bins_within_the_cap(cls, v: float | None, info: ValidationInfo) -> float | None:
        """More than ``MAX_SERIES_BINS`` bins were cut to the first ones: the series covered 0.1 s of an hour and
        every later second's busy time piled into its last bin (a utilisation of 198,336 there), without a word."""
        horizon = info.data.get("horizon_s")
        if v is not None and horizon is not None and horizon / v > MAX_SERIES_BINS * (1 + 1e-9):  # not for rounding
            raise ValueError(f"{horizon / v:,.0f} bins over run.horizon_s ({horizon:g} s); at most "
                             f"{MAX_SERIES_BINS:,}: give at least {horizon / MAX_SERIES_BINS:.3g} s")  # fmt: skip
        return v


class Scenario(_Strict):
    name: Name
    description: str = Field(default="", max_length=MAX_TEXT)
    workload: Workload
    deployment: Deployment
    run: Run = Run()
    _path: Path = PrivateAttr(default=Path("<memory>"))
    _profiles: dict[str, Profile] = PrivateAttr(default_factory=dict)
    _profile_files: dict[str, Path] = PrivateAttr(default_factory=dict)  # the file each _profiles entry came from
    _profile_bytes: dict[Path, bytes] = PrivateAttr(default_factory=dict)  # those files as read: a run writes them
    _graph: nx.Graph | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path:
        return self._path

    def host_profile(self, host: str) -> Profile:
        return self._profiles[host]

    def device_profile(self, population: DevicePopulation) -> Profile | None:
        return self._profiles.get(f"device:{population.name}")

    def pods(self, role: str) -> list[Pod]:
        return [p for p in self.deployment.pods if p.role == role]

    def graph(self) -> nx.Graph:
        """The network as a NetworkX graph (hosts, nodes and one node per device; links as edges carrying
        ``params`` and the routing weight ``latency_s``). Built once per scenario; treat it as read-only."""
        if self._graph is None:
            import networkx as nx

            g = nx.Graph()
            for h in self.deployment.hosts:
                g.add_node(h.name, kind="host")
            for n in self.deployment.network.nodes:
                g.add_node(n.name, kind=n.kind)
            for link in self.deployment.network.links:
                g.add_edge(link.a, link.b, params=link)
            for pop in self.workload.devices:
                for i in range(pop.count):
                    g.add_node(device_node(pop, i), kind="device")
                    g.add_edge(device_node(pop, i), pop.gateway, params=pop.access_link)
            for _, _, d in g.edges(data=True):
                d["latency_s"] = route_weight(d)
            self._graph = g
        return self._graph

    def route(self, src: str, dst: str) -> list[str]:
        """The nodes on the path a message from ``src`` to ``dst`` takes: the lowest-latency path, fewest hops
        on ties. The one routing rule of the simulator and of both twin backends."""
        return lowest_latency_path(self.graph(), src, dst)

    def route_links(self, src: str, dst: str) -> list[tuple[str, str, LinkParams]]:
        """The hops of ``route(src, dst)`` with their link parameters."""
        g, path = self.graph(), self.route(src, dst)
        return [(a, b, g.edges[a, b]["params"]) for a, b in itertools.pairwise(path)]

    def engine(self) -> str:
        """The simulator's engine for this scenario: ``run.engine``, where ``auto`` is ``vectorized`` when the
        devices send until the horizon and may send more than AUTO_VECTORIZED_FRAMES frames in a replication
        (below, the event model is as fast as the compiled kernels' start-up; a run that ends with its last
        round is as long as FL) and ``events`` otherwise."""
        if self.run.engine != "auto":
            return self.run.engine
        frames = sum(p.count * self.run.horizon_s / p.period_s() for p in self.workload.devices)
        return "vectorized" if frames > AUTO_VECTORIZED_FRAMES and self.run.stop_at == "horizon" else "events"

    def crypto_workers(self) -> int:
        """Concurrent crypto worker threads: ``processing.workers``, or with ``auto`` the cores of the hosts
        of the worker pods (of the aggregator's host when there are no worker pods)."""
        wanted = self.workload.processing.workers
        if wanted != "auto":
            return int(wanted)
        hosts = {p.host for p in self.pods("worker")} or {self.pods("aggregator")[0].host}
        return sum(h.cores for h in self.deployment.hosts if h.name in hosts)

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False))

    def portable(self) -> tuple[str, dict[str, bytes]]:
        """(this scenario as YAML whose profile references name ``profiles/<name>.yaml`` beside it, {name: the
        bytes of the profile file it was priced with, as read when it loaded}): a run directory holding both
        reruns exactly, wherever it is moved, also when ``--profile`` overrode the scenario's references (and
        when the run replaces the very directory it was loaded from)."""
        data, names = self._with_profiles(lambda file, names: _portable_name(file, names))
        text = str(yaml.safe_dump(data, sort_keys=False))
        return text, {name: self._profile_bytes[file] for file, name in names.items()}

    def pinned_data(self) -> dict[str, Any]:
        """This scenario as a dict whose profile references are the files it was priced with (absolute paths):
        edits of it load with the same profiles, a ``--profile`` override included."""
        return self._with_profiles(lambda file, names: str(file.resolve()))[0]

    def _with_profiles(self, ref: Callable[[Path, dict[Path, str]], str]) -> tuple[dict[str, Any], dict[Path, str]]:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        names: dict[Path, str] = {}
        for i, host in enumerate(self.deployment.hosts):
            if host.name in self._profile_files:
                data["deployment"]["hosts"][i]["profile"] = ref(self._profile_files[host.name], names)
        for i, pop in enumerate(self.workload.devices):
            if f"device:{pop.name}" in self._profile_files:
                data["workload"]["devices"][i]["profile"] = ref(self._profile_files[f"device:{pop.name}"], names)
        return data, names


AUTO_VECTORIZED_FRAMES = 10_000


def route_weight(edge: dict[str, Any]) -> float:
    """A link's routing weight: its latency; the epsilon prefers fewer hops on ties."""
    return float(edge["params"].resolved()[1]) + 1e-9


def lowest_latency_path(graph: nx.Graph, src: str, dst: str) -> list[str]:
    """The routing rule of the simulator and of both twin backends: the lowest-latency path, fewest hops on
    ties, over a graph whose edges carry ``params: LinkParams``."""
    import networkx as nx

    return list(nx.shortest_path(graph, src, dst, weight=lambda u, v, d: d.get("latency_s") or route_weight(d)))


def device_node(pop: DevicePopulation, i: int) -> str:
    return f"{pop.name}#{i}"


# --- loading -----------------------------------------------------------------------------------------


def load_scenario(
    path: Path | str,
    overrides: list[str] | None = None,
    profile_override: Path | None = None,
    priced: bool = True,
    profiles: ProfileCache | None = None,
) -> Scenario:
    """Read, override, validate and cross-check a scenario file; UserError lines on any problem.

    ``priced=False`` skips the check that each host's profile prices every operation: the hardware twin
    measures, it does not price, so it runs any suite the providers implement (compare then says which
    operations the simulator could not price). ``profiles`` is a cache of profile files already read (by path),
    shared by the callers that load many variants of one scenario (a sweep)."""
    path = Path(path)
    data = load_yaml(path)
    for item in overrides or []:
        apply_override(data, item)
    return load_scenario_data(data, path, profile_override, priced, profiles)


def load_scenario_data(
    data: dict[str, Any],
    path: Path,
    profile_override: Path | None = None,
    priced: bool = True,
    profiles: ProfileCache | None = None,
) -> Scenario:
    """Validate and cross-check scenario data already in memory (e.g. edited by the app); ``path`` names it
    in errors and anchors relative profile references."""
    scenario = validate(Scenario, data, path)
    scenario._path = path
    errors = check_references(scenario)
    if not errors:
        errors = _load_profiles(scenario, profile_override, priced, profiles)
    if errors:
        raise UserError([field_error(path, loc, value, msg) for loc, value, msg in errors])
    return scenario


def base_scenario(path: Path, ref: str) -> Path:
    """The scenario a study or sweep file names (``scenario:``, relative to that file); UserError if missing."""
    scenario = (path.parent / ref).resolve()
    if not scenario.is_file():
        raise UserError(f"{path}: scenario: file not found: {scenario} (got {ref!r})")
    return scenario


MAX_PATH_PARTS = 16  # a scenario nests 5 levels; deeper paths only build structures no model has


def apply_override(data: dict[str, Any], item: str, parsed: dict[str, Any] | None = None) -> None:
    """Apply ``dotted.path=value``; list items are addressed by index or by their ``name`` (``hosts[N]``: by
    index alone), and ``-`` as the last part appends one (``deployment.pods.-={name: client-3, role: client,
    host: pi-2}``). ``parsed`` caches values already parsed (a sweep applies the same few overrides to thousands
    of points)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set {show(item)}: expected dotted.path=value")
    require_utf8(item, f"--set {shorten(key, 120)}")
    if parsed is not None and raw in parsed:
        value = copy.deepcopy(parsed[raw])  # a section or list is the point's own: later overrides edit it
    else:
        try:
            value = parse_value(raw, f"--set {shorten(key, 120)}") if raw else ""
        except UserError as exc:
            raise UserError(f"{exc.lines[0]} (got {show(raw)})") from None
        if parsed is not None:
            parsed[raw] = copy.deepcopy(value)
    set_path(data, key, value)


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the field at a dotted path (apply_override's addressing) to a value already parsed; a ``*`` part
    stands for every item of a list (``deployment.hosts.*.profile=pi4-liboqs``: every host's)."""
    parts = key.split(".")
    key = shorten(key, 120)
    if len(parts) > MAX_PATH_PARTS:
        raise UserError(f"--set {key}: path of {len(parts)} parts; scenario fields are at most {MAX_PATH_PARTS} deep")
    if "" in parts:
        raise UserError(f"--set {key}: empty part in the dotted path")
    _set_parts(data, _indexed(parts), 0, key, value)


_INDEXED = re.compile(r"(.*)(\[[0-9]{1,9}\])")  # hosts[0]: a list's item by its index, never by a name
_INDEX = re.compile(r"\[([0-9]{1,9})\]")


def _indexed(parts: list[str]) -> list[str]:
    """The parts with ``field[N]`` split into ``field`` and ``[N]`` (as errors print a list item's path; no name
    starts with ``[``, so ``[N]`` is the index N whatever the items are named)."""
    out: list[str] = []
    for part in parts:
        m = _INDEXED.fullmatch(part)
        out += [p for p in m.groups() if p] if m else [part]
    return out


def _shown(parts: list[str]) -> str:
    """Parts as the path the user wrote: dotted, an index ``[N]`` attached to its list (``deployment.hosts[0]``)."""
    return "".join(p if i == 0 or _INDEX.fullmatch(p) else f".{p}" for i, p in enumerate(parts))


def _set_parts(node: Any, parts: list[str], start: int, key: str, value: Any) -> None:
    for i in range(start, len(parts)):
        part = parts[i]
        last = i == len(parts) - 1
        where = _shown(parts[: i + 1])
        if isinstance(node, list) and part == "*":  # every item: each gets its own copy of a section value
            for j in range(len(node)):
                if last:
                    node[j] = copy.deepcopy(value)
                else:
                    _set_parts(node[j], parts, i + 1, key, value)
            return
        if isinstance(node, list) and part == "-" and last:  # JSON Pointer's "-": append an item
            node.append(value)
        elif isinstance(node, list):
            idx = _list_index(node, part, key, parts[:i])
            if idx is None:
                raise UserError(f"--set {key}: no list item {part!r} at {where}")
            if last:
                node[idx] = value
            node = node[idx]
        elif isinstance(node, dict) and _INDEX.fullmatch(part):
            raise UserError(f"--set {key}: {_shown(parts[:i]) or 'the scenario'} is a section, not a list")
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--set {key}: {_shown(parts[:i])} is a value, not a section")


def _list_index(items: list[Any], part: str, key: str, above: list[str]) -> int | None:
    """The item a part addresses: ``[N]`` item N; else an index in range, or the item of that ``name``. A name
    may be all digits (host ``0``), so a part that is an index and another item's name is refused: either
    reading would be silently wrong for someone; the line says how to address each item alone."""
    if m := _INDEX.fullmatch(part):  # [N] (from field[N]; a name never starts with '[')
        return int(m[1]) if int(m[1]) < len(items) else None
    named = next((i for i, item in enumerate(items) if isinstance(item, dict) and item.get("name") == part), None)
    if not (part.isascii() and part.isdigit() and len(part) <= 9 and int(part) < len(items)):  # not '²', 10⁵⁰⁰⁰
        return named
    index, where = int(part), _shown(above)
    if named is not None and named != index:
        raise UserError(
            f"--set {key}: {where}.{part} is ambiguous: item {index} (named {_name(items[index])}) or "
            f"the item named {show(part)} (item {named}); write {where}[{index}] or {where}[{named}]"
        )
    return index


def _name(item: Any) -> str:
    """An item's name as a message shows it ('none' for an item without one)."""
    return show(item.get("name")) if isinstance(item, dict) and "name" in item else "none"


Problem = tuple[str, Any, str]  # (field path, value, message)


def _unique(items: list[Any], section: str) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        if item.name in seen:
            out.append((f"{section}[{i}].name", item.name, "duplicate name"))
        seen.add(item.name)
    return out


def check_references(s: Scenario) -> list[Problem]:
    """Cross-section checks pydantic cannot express; returns (path, value, message) problems."""
    d, w = s.deployment, s.workload
    problems: list[Problem] = []
    problems += _unique(d.hosts, "deployment.hosts")
    problems += _unique(d.network.nodes, "deployment.network.nodes")
    problems += _unique(d.pods, "deployment.pods")
    problems += _unique(w.devices, "workload.devices")
    problems += _check_network(s) + _check_pods(s) + _check_devices(s)
    return problems or _check_routes(s)


def _check_network(s: Scenario) -> list[Problem]:
    d = s.deployment
    hosts, nodes = {h.name for h in d.hosts}, {n.name for n in d.network.nodes}
    places = hosts | nodes
    problems: list[Problem] = []
    if clash := hosts & nodes:
        problems.append(("deployment.network.nodes", sorted(clash), "node names clash with host names"))
    for i, link in enumerate(d.network.links):
        for end in ("a", "b"):
            if getattr(link, end) not in places:
                problems.append((f"deployment.network.links[{i}].{end}", getattr(link, end), "no such host or node"))
        if link.a == link.b:
            problems.append((f"deployment.network.links[{i}].b", link.b, "a link needs two different ends"))
    first: dict[frozenset[str], int] = {}  # one link per pair of ends: the graph keeps one, the second replaced it
    for i, link in enumerate(d.network.links):
        if (j := first.setdefault(frozenset((link.a, link.b)), i)) != i:
            problems.append((f"deployment.network.links[{i}]", f"{link.a}-{link.b}",
                             f"links[{j}] already joins these two; give one link per pair"))  # fmt: skip
    return problems


def _check_pods(s: Scenario) -> list[Problem]:
    d, w = s.deployment, s.workload
    hosts = {h.name for h in d.hosts}
    problems: list[Problem] = [
        (f"deployment.pods[{i}].host", pod.host, f"no such host (hosts: {', '.join(sorted(hosts))})")
        for i, pod in enumerate(d.pods)
        if pod.host not in hosts
    ]
    if d.machine is not None:  # one machine, one scheduler: as its first host's (fifo has no shared cores)
        first = d.hosts[0].cpu_sharing
        shared = first if first != "fifo" else "processor-sharing"
        problems += [(f"deployment.hosts[{i}].cpu_sharing", h.cpu_sharing,
                      f"deployment.machine shares its cores one way for every host: {shared}, as its first host's")
                     for i, h in enumerate(d.hosts) if h.cpu_sharing != shared]  # fmt: skip
    aggs = s.pods("aggregator")
    if len(aggs) != 1:
        problems.append(("deployment.pods", len(aggs), "need exactly one pod with role aggregator"))
    if len(s.pods("client")) != w.fl.clients:
        problems.append(
            ("workload.fl.clients", w.fl.clients, f"but deployment has {len(s.pods('client'))} client pods")
        )
    return problems


def _check_devices(s: Scenario) -> list[Problem]:
    d = s.deployment
    places = {h.name for h in d.hosts} | {n.name for n in d.network.nodes}
    receivers = {p.name for p in d.pods if p.role in ("client", "aggregator")}
    problems: list[Problem] = []
    for i, pop in enumerate(s.workload.devices):
        if pop.gateway not in places:
            problems.append((f"workload.devices[{i}].gateway", pop.gateway, "no such node or host"))
        if pop.report_to not in receivers:
            problems.append((f"workload.devices[{i}].report_to", pop.report_to, "no such client or aggregator pod"))
        if pop.key_establishment == "gateway" and pop.gateway not in {h.name for h in d.hosts}:
            problems.append((f"workload.devices[{i}].key_establishment", pop.key_establishment,
                             f"the gateway {pop.gateway!r} must be a host (its CPU runs the sessions)"))  # fmt: skip
    return problems


def _check_routes(s: Scenario) -> list[Problem]:
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(h.name for h in s.deployment.hosts)
    g.add_edges_from((link.a, link.b) for link in s.deployment.network.links)
    part = {n: i for i, nodes in enumerate(nx.connected_components(g)) for n in nodes}  # one pass, not a search per pod

    def linked(a: str, b: str) -> bool:
        return a == b or (a in part and part[a] == part.get(b))

    host_of = {p.name: p.host for p in s.deployment.pods}
    agg = s.pods("aggregator")[0]
    problems: list[Problem] = []
    for i, pod in enumerate(s.deployment.pods):
        if not linked(pod.host, agg.host):
            problems.append((f"deployment.pods[{i}].host", pod.host, f"no network route to aggregator host {agg.host}"))
    for i, pop in enumerate(s.workload.devices):
        dst = host_of[pop.report_to]
        if not linked(pop.gateway, dst):
            problems.append((f"workload.devices[{i}].gateway", pop.gateway, f"no network route to host {dst}"))
    return problems


def required_ops(s: Scenario, device: bool = False) -> set[str]:
    """Every operation a host (with ``device``: a device) of the scenario will be asked to price."""
    c = s.workload.crypto
    sig = catalogue.get(c.signature)
    ops = {f"{c.kem}.{op}" for op in catalogue.OPS["kem"]}
    ops |= {f"{c.signature}.{op}" for op in catalogue.OPS["signature"]}
    ops |= {f"{c.aead}.{op}" for op in catalogue.OPS["aead"]}
    ops.add(f"{sig.message_hash}.hash")
    return ops if device else ops | {"serialize", "deserialize", "fl.train", "fl.fedavg"}


def _portable_name(file: Path, names: dict[Path, str]) -> str:
    """The file's stem, made unique among the other files of ``names`` (which it joins)."""
    if file not in names:
        taken, stem, i = set(names.values()), file.stem, 2
        name = stem
        while name in taken:
            name, i = f"{stem}-{i}", i + 1
        names[file] = name
    return names[file]


def profile_file(folder: Path, ref: str) -> Path:
    """The file a profile reference names, for a scenario in ``folder``: a path (.yaml/.yml, relative to the
    folder) or a name under ``folder/profiles/``."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        return p if p.is_absolute() else folder / p
    return folder / "profiles" / f"{ref}.yaml"


def _resolve_profile(s: Scenario, ref: str) -> Path:
    return profile_file(s.path.parent, ref)


def _known_profiles(s: Scenario) -> str:
    """`` (profiles there: a, b)`` for the scenario's profiles/ folder, or nothing."""
    try:
        names = sorted(p.stem for p in (s.path.parent / "profiles").glob("*.yaml"))[:20]
    except OSError:
        return ""
    return f" (profiles there: {', '.join(names)})" if names else ""


@dataclass
class ProfileCache:
    """Profile files already read, by path, and the file each reference names, by (scenario folder, reference):
    a sweep validates thousands of variants of one scenario against the same few profiles."""

    files: dict[Path, Profile] = field(default_factory=dict)
    refs: dict[tuple[Path, str], Path] = field(default_factory=dict)
    raw: dict[Path, bytes] = field(default_factory=dict)  # each file's bytes as read (what a run directory copies)


def _load_profiles(
    s: Scenario, override: Path | None, priced: bool = True, cache: ProfileCache | None = None
) -> list[Problem]:
    """Load each host's (and device population's) profile; check it prices every needed operation."""
    problems: list[Problem] = []
    cache = ProfileCache() if cache is None else cache
    targets = [(f"deployment.hosts[{i}].profile", h.name, h.profile) for i, h in enumerate(s.deployment.hosts)]
    targets += [
        (f"workload.devices[{i}].profile", f"device:{pop.name}", pop.profile)
        for i, pop in enumerate(s.workload.devices)
        if pop.profile
    ]
    needed: dict[bool, list[str]] = {}
    for loc, key, ref in targets:
        device = key.startswith("device:")
        file = override if override is not None and not device else _cached_ref(s, ref, cache)
        if file not in cache.files:
            if not exists(file):
                problems.append((loc, ref, f"profile file not found: {shorten(str(file), 200)}{_known_profiles(s)}"))
                continue
            cache.files[file] = load_profile(file)
            cache.raw[file] = read_text(file).encode()  # bounded, UTF-8: the text load_profile parsed
        prof = s._profiles[key] = cache.files[file]
        s._profile_files[key] = file
        s._profile_bytes[file] = cache.raw[file]
        if device not in needed:
            needed[device] = sorted(required_ops(s, device))
        missing = [op for op in needed[device] if op not in prof.ops]
        if missing and priced:
            problems.append((loc, ref, f"profile {prof.profile!r} ({file}) has no cost for {', '.join(missing)}"))
    for key, prof in s._profiles.items():  # code paths priced for this scenario's model (``Overhead.at_model``)
        s._profiles[key] = prof.at_model(s.workload.fl.model_parameters, s.workload.fl.train_units)
    for h in s.deployment.hosts:
        if h.cpu_speed != 1.0 and h.name in s._profiles:
            s._profiles[h.name] = s._profiles[h.name].at_speed(h.cpu_speed)
    return problems


def _cached_ref(s: Scenario, ref: str, cache: ProfileCache) -> Path:
    at = (s.path.parent, ref)
    if at not in cache.refs:
        cache.refs[at] = _resolve_profile(s, ref)
    return cache.refs[at]


def schema() -> dict[str, Any]:
    """JSON Schema of a scenario file."""
    return Scenario.model_json_schema(by_alias=True)


def write_scenario(scenario: Scenario, out_dir: Path) -> None:
    """scenario.yaml and profiles/<name>.yaml (byte copies of the files it was priced with): out_dir reruns
    as ``pqtwin sim out_dir/scenario.yaml``, the same run wherever the directory is moved."""
    layout = RunLayout(out_dir)
    text, files = scenario.portable()
    for name, data in files.items():
        layout.profile(name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(layout.profile(name), data)
    atomic_write(layout.scenario, text)
