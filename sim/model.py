"""The SimPy model of one replication: devices, sessions, and FL rounds in either processing mode.

FL round r (both modes do the same work; only who does it, and when, differs):

1. distribute: for each client the aggregator serialises the global model into that client's message,
   signs it (hash of the message + signature), encapsulates a fresh key if rekeying per message,
   encrypts and sends it.
2. receive / train / upload (client pod): decapsulate, decrypt, verify, deserialise; train locally; then
   serialise, sign, encapsulate, encrypt and send the update to the aggregator's host.
3. verify / aggregate (aggregator side): decapsulate, decrypt, verify, deserialise each update; FedAvg.

``sequential``: all aggregator-side security work runs on the aggregator's single thread; updates are
processed only after the quorum has arrived; distribution goes one client at a time (next client after
the previous message was delivered).
``concurrent``: security work is a job queue served by a pool of worker threads on the worker pods'
hosts; updates are verified and folded into FedAvg as they arrive; distribution jobs run in parallel.
A job for a worker pod (a process apart from the aggregator's) takes a hop each way over their secure
channel: the sender encrypts it, the network (or the host's loopback) carries it, the receiver decrypts
it — the job's input from the aggregator, its output back to it (a sealed model then goes from the
aggregator to the client). Without worker pods the aggregator's own threads do the jobs, with no hop.

Sessions: a handshake (responder: ephemeral KEM key signed with its identity key; initiator: verify,
encapsulate, sign the transcript; responder: decapsulate, verify) runs for each FL client at start
(``per_session``, ``per_message``) or every round (``per_round``), and for every device at start and every
``device_interval_s``. With ``per_message`` every FL message also carries a fresh encapsulation to the
recipient's static KEM key, and its record key mixes that secret in. Devices send AEAD-protected frames
at their rate to the pod they report to.

Telemetry receivers (``workload.telemetry_receiver``): ``per-device``, the default, is the hardware twin's
(hw/node/client.py): the pod serves each device's session on a thread of its own, which runs the pod's side
of the device's handshakes and then decrypts its frames one after the other (devices in parallel on the
host's cores). ``one-thread``: one receiver thread per pod does that for all its devices in arrival order
(an event loop); the event model only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import simpy

from sim import catalogue
from sim.contract import (
    ANSWER_HEAD_BYTES,
    JOB_HEAD_BYTES,
    RECORD_HEADER_BYTES,
    SIGNATURE_LENGTH_BYTES,
    SpanRow,
    round_mode,
)
from sim.hosts import CountingEnvironment, Cpu, Endpoint, Recorder, Thread
from sim.network import LinkServer, Network
from sim.profile import INBOX_HANDOFF, RECEIVE_HANDOFF, LinearOp
from sim.scenario import MAX_SERIES_BINS, DevicePopulation, Scenario, device_node
from sim.streams import Streams, stream

if TYPE_CHECKING:
    from sim.telemetry import Outcome

NO_DRAWS = np.random.default_rng(0)  # a device whose compute is not modelled draws nothing
SERIES_BINS = 120  # time bins of series.parquet when run.series_bin_s is not set
HELLO_BYTES = 64  # handshake hello: random + suite identifiers
Gen = Generator[Any, Any, Any]


class LinkStats(NamedTuple):
    """One link direction over a replication (sim/network.py ``LinkServer``)."""

    busy_s: float  # serialisation completed by the end
    offered_s: float  # serialisation asked that the link could have done by the end (LinkServer.offered_s)
    bytes: int  # bytes carried, resends included
    retransmissions: int
    bytes_by_phase: dict[str, int]


@dataclass
class ReplicationResult:
    rows: list[SpanRow]
    events: int
    sim_time_s: float
    rounds_completed: int
    host_offered_s: dict[str, tuple[int, float]]  # host -> (cores, core-seconds offered: Cpu.offered_s)
    link_stats: dict[str, LinkStats]
    frames: Outcome | None = None  # the vectorized engine's telemetry (None: frames are span rows)
    # (population, start, done, whether it is the device's first session: the start-up storm's)
    device_handshakes: list[tuple[str, float, float, bool]] = field(default_factory=list)
    # busy seconds per time bin: (kind "link" | "host", capacity in cores or 1, bin_s, values) per resource
    series: dict[str, tuple[str, int, float, np.ndarray]] = field(default_factory=dict)
    peak_rss_bytes: int = 0  # of the process that computed it, and of the processes it forked (sim/runner.py)


class Replication:
    """Builds the model of one replication from a scenario and runs it."""

    def __init__(
        self, scenario: Scenario, mode: str, index: int, seed: np.random.SeedSequence, engine: str = "events",
        background: dict[str, np.ndarray] | None = None, final: bool = True, hot: np.ndarray | None = None,
        at_storm_end: Callable[[Replication], None] | None = None,
    ):  # fmt: skip
        self.s, self.mode, self.vectorized = scenario, mode, engine == "vectorized"
        self.env = env = CountingEnvironment()
        net_ss, cpu_ss, dev_ss, fl_ss = seed.spawn(4)
        self.frame_ss = seed.spawn(1)[0] if self.vectorized else None
        self.rng_dev = np.random.default_rng(dev_ss)
        self.rng_fl = np.random.default_rng(fl_ss)
        self.rec = Recorder(index)
        w = scenario.workload
        self.fl, self.crypto = w.fl, w.crypto
        self.kem = catalogue.get(w.crypto.kem)
        self.sig = catalogue.get(w.crypto.signature)
        self.aead = catalogue.get(w.crypto.aead)
        d = scenario.deployment
        on_machine = frozenset(h.name for h in d.hosts) if d.machine is not None else frozenset()  # one kernel
        speeds = {h.name: h.cpu_speed for h in d.hosts}  # the kernels' rates scale with their cores
        self.net = Network(
            env, scenario.graph(), net_ss, scenario.run.segment_bytes, d.network.transport, on_machine, speeds
        )
        self._held_routes: dict[tuple[str, str], bool] = {}  # ``_held``, by (src, dst) host
        # every host and device draws its costs from its own stream (the cpu seed's children: hosts in order,
        # then devices in order), so a change of timing elsewhere does not reshuffle its draws
        self.cpu_ss = cpu_ss
        self.cpus = self._host_cpus(cpu_ss)
        self.device_base = {}  # population -> index of its first device's stream
        k = len(scenario.deployment.hosts)
        for pop in scenario.workload.devices:
            self.device_base[pop.name], k = k, k + pop.count
        self.device_streams = Streams(cpu_ss, (), k)  # the devices' own (a bank, when many)
        self.eps = {p.name: Endpoint(p.name, p.host, self.cpus[p.host], Thread(env)) for p in scenario.deployment.pods}
        self.agg = self.eps[scenario.pods("aggregator")[0].name]
        self.clients = [self.eps[p.name] for p in scenario.pods("client")]
        # ``alternating``: the rounds in both modes in turn (``round_mode``), as the twin's ``--mode both`` runs them,
        # its worker processes there through the sequential rounds too
        self.pool = self._build_pool() if mode != "sequential" else None
        # concurrent with worker pods: a client's reader thread hands its update to a worker process itself;
        # without, through the main thread, which submits it to a job thread (hw/node/aggregator.py ``_serve``)
        self.delegates = bool(scenario.pods("worker"))
        # the aggregator's job threads, one per worker (hw/node/aggregator.py: "with worker processes: one job thread
        # each"): each seals its worker's jobs and opens its answers, side by side with the others
        self.agg_threads: dict[int, Endpoint] = {}
        self.handing: int | None = None  # the job thread that took this round's last job (``_hand_on``)
        self.round_starts: list[float] = []
        self.receivers: dict[str, Thread] = {}  # pod -> its one receiver thread (telemetry_receiver: one-thread)
        self.populations = {pop.name: i for i, pop in enumerate(scenario.workload.devices)}
        self.sessions: dict[int, list[tuple[int, float, float]]] = {}  # population -> (device, start, end)
        self.device_handshakes: list[tuple[str, float, float, bool]] = []  # (population, started_s, done_s, first)
        self.background, self.final = background or {}, final
        # vectorized: frames emitted in these [start, end] intervals are SimPy's (sim/telemetry.py, "hot")
        self.hot = np.empty((0, 2)) if hot is None else hot
        # their starts and ends as floats, looked up at every frame the kernels do not compute (bisect on a list:
        # a tenth of numpy's searchsorted on so few items)
        self.hot_starts: list[float] = self.hot[:, 0].tolist()
        self.hot_ends: list[float] = self.hot[:, 1].tolist()
        self.hot_frames: list[tuple[int, int, float, float, float]] = []  # (population, device, emit, done, wait)
        self.hot_started = 0
        self.hot_rngs: dict[int, np.random.Generator] = {}
        # (population, device) -> the emission of its frame under way in SimPy: one at a time, in its own process
        self.hot_carrying: dict[tuple[int, int], float] = {}
        # the first pass also gives SimPy the frames of the start-up storm, emitted while device handshakes are
        # under way and some device has yet to finish its first (up to the hot budget): where frames and
        # handshakes meet, known early. The storm ends there when every device has its first keys, or at its
        # first lull: the first frame that finds no handshake under way, the budget not spent (every frame before
        # it was SimPy's; devices that start later handshake beside the kernels' frames, as after the storm)
        self.storm_left = sum(p.count for p in w.devices) if self.vectorized and hot is None else 0
        self.handshakes_now = 0  # device handshakes under way
        self.storm_emits: list[float] = []  # emission times of the frames the storm gave SimPy
        # the storm's end (first pass only), and what happens then: the runner may keep the run's state there
        # (sim/checkpoint.py) or go on as the next pass (``resume``)
        self.storm_end_s: float | None = None
        self.at_storm_end = at_storm_end
        self.hot_budget = 0
        if self.storm_left:
            from sim.telemetry import STORM_FRAMES_MAX

            self.hot_budget = STORM_FRAMES_MAX
        self.bin_s = scenario.run.series_bin_s or scenario.run.horizon_s / SERIES_BINS
        bins = min(MAX_SERIES_BINS, math.ceil(scenario.run.horizon_s / self.bin_s))
        self.net.track(self.bin_s, bins)
        for cpu in self.cpus.values():
            cpu.series, cpu.bin_s = np.zeros(bins), self.bin_s
        if self.vectorized:  # the frames' kernels replay what SimPy serves
            for link in self.net.links.values():
                link.log = []
            for cpu in self.cpus.values():
                cpu.log = []

    def _host_cpus(self, cpu_ss: np.random.SeedSequence) -> dict[str, Cpu]:
        """Each host's cores; on ``deployment.machine``, all hosts on the machine's cores (the first host's
        Cpu holds them; the others share them)."""
        s, machine = self.s, self.s.deployment.machine
        cpus: dict[str, Cpu] = {}
        for k, h in enumerate(s.deployment.hosts):
            first = next(iter(cpus.values()), None) if machine is not None else None
            cores = machine.cores if machine is not None else h.cores
            placement = stream(cpu_ss, k, 1) if h.cpu_sharing == "linux" else None  # wake-affine choices
            cpus[h.name] = Cpu(self.env, h.name, cores, s.host_profile(h.name), stream(cpu_ss, k), h.cpu_sharing, first,
                               placement)  # fmt: skip
        return cpus

    def _build_pool(self) -> simpy.PriorityStore:
        """Worker threads, spread round-robin over the worker pods (or on the aggregator's host if none). A job
        takes the nearest free one: on the aggregator's host first (no network hop), then in pod order."""
        workers = self.s.pods("worker")
        pods = [self.eps[p.name] for p in workers] or [self.agg]
        pool = simpy.PriorityStore(self.env)
        for i in range(self.s.crypto_workers()):
            pod = pods[i % len(pods)]
            thread = Endpoint(pod.pod, pod.node, pod.cpu)  # exclusive while taken from the pool
            pool.put(simpy.PriorityItem((pod.node != self.agg.node, i), thread))
        return pool

    # --- running -----------------------------------------------------------------------------------

    def run(self) -> ReplicationResult:
        """Run to the horizon; or until the last round when ``run.stop_at`` says so or no device sends frames."""
        env = self.env
        for pop in self.s.workload.devices:
            for i in range(pop.count):
                env.process(self._device(pop, i))
        fl = env.process(self._fl())
        self._serve_background(self.background)
        horizon = env.timeout(self.s.run.horizon_s)
        to_horizon = self.s.run.stop_at == "horizon" and any(p.count for p in self.s.workload.devices)
        env.run(until=horizon if to_horizon else fl | horizon)
        frames = None
        if self.vectorized:
            from sim.telemetry import simulate_frames

            assert self.frame_ss is not None
            frames = simulate_frames(self, self.frame_ss, self.s.run.frame_spans, self.final)
            self.rec.rows.extend(frames.rows)
        end = env.now
        self.net.settle()  # transmissions done by the end count as served
        link_stats = {ls.name: LinkStats(ls.busy_s, ls.offered_s(end), ls.bytes_sent, ls.retransmissions,
                                         ls.bytes_by_phase) for ls in self.net.links.values()}  # fmt: skip
        return ReplicationResult(
            self.rec.rows,
            env.events,
            end,
            self.rounds_completed,
            {name: (c.cores, c.offered_s(end)) for name, c in self.cpus.items()},
            link_stats,
            frames,
            self.device_handshakes,
            self._series(),
        )

    def _lull(self) -> None:
        """A frame found no handshake under way, or the storm's frames' budget spent, while devices have yet to
        start: the storm's end, unless the budget was spent (the kernels then had frames beside handshakes; once
        spent it stays spent, and the storm ends with its last device)."""
        if self.hot_started < self.hot_budget:
            self._end_storm()

    def _end_storm(self) -> None:
        self.storm_end_s, self.storm_left = self.env.now, 0
        if self.at_storm_end is not None:
            self.at_storm_end(self)

    def resume(self, background: dict[str, np.ndarray], final: bool) -> None:
        """Go on as the vectorized engine's next pass from here (the storm's end): serve ``background``, frames
        the last pass found beside the foreground, all arriving from now on (sim/runner.py ``replicate``)."""
        self.final = final
        self._serve_background(background)

    def _serve_background(self, background: dict[str, np.ndarray]) -> None:
        links = {link.name: link for link in self.net.links.values()}
        for name, items in background.items():
            self.env.process(self._background(items, links.get(name), self.cpus.get(name)))

    def _series(self) -> dict[str, tuple[str, int, float, np.ndarray]]:
        out = {ls.name: ("link", 1, self.bin_s, ls.series) for ls in self.net.links.values() if ls.series is not None}
        out.update(
            {c.name: ("host", c.cores, self.bin_s, c.series) for c in self.cpus.values() if c.series is not None}
        )
        return out

    # --- messages and crypto ------------------------------------------------------------------------

    def send(self, src: Endpoint, dst: Endpoint, nbytes: int, phase: str, since: float | None = None,
             taken: tuple[float, simpy.Event] | None = None) -> Gen:  # fmt: skip
        """Carry a message; the span starts at ``since`` (when its job was queued) or now. ``taken``: (payload bytes,
        event) succeeded once those are acknowledged, or the message is in (``Network.transfer``)."""
        start = self.env.now if since is None else since
        wait = self.env.now - start
        if src.node == dst.node:
            wait += yield from self._loopback(src, nbytes)
            if dst.cpu.placed:
                dst.woken_by = src.key
        elif self._held(src.node, dst.node):
            wait += yield from self._held_transfer(src, dst, nbytes, phase)
        else:
            wait += yield from self._transfer(src.node, dst.node, nbytes, phase, taken)
            taken = None
        if taken is not None and not taken[1].triggered:
            taken[1].succeed()
        src.active_s = self.env.now  # its thread sent it (``Endpoint``'s bursts)
        self.rec.add(src.pod, src.node, phase, "transfer", start, self.env.now, wait, nbytes=nbytes)

    def _transfer(self, src: str, dst: str, nbytes: int, phase: str,
                  taken: tuple[float, simpy.Event] | None = None) -> Gen:  # fmt: skip
        """Pods talk TCP: headers on every packet, packets forwarded as they come (``Transport``). A device's
        messages (its handshakes) keep their own framing, as its frames do: its radio link is not TCP/IP."""
        if src in self.net.devices or dst in self.net.devices:
            return (yield from self.net.transfer(src, dst, nbytes, phase, taken=taken))
        return (yield from self.net.transfer_tcp(src, dst, nbytes, phase, taken=taken))

    def _held(self, src: str, dst: str) -> bool:
        """Whether a TCP send from host ``src`` to ``dst`` holds its sender, its core busy, until the message has
        arrived: hosts emulated on one machine, over links at least ``Machine.send_held_from_bps`` fast."""
        machine = self.s.deployment.machine
        if machine is None or src not in self.net.machine_hosts or dst not in self.net.machine_hosts:
            return False
        held = self._held_routes.get((src, dst))
        if held is None:
            rate = min(link.bandwidth_bps for link in self.net.route(src, dst))
            held = self._held_routes[src, dst] = rate >= machine.send_held_from_bps
        return held

    def _held_transfer(self, src: Endpoint, dst: Endpoint, nbytes: int, phase: str) -> Gen:
        """A held send (``_held``): the message carried as any other; meanwhile the sender's thread keeps a core
        busy ``Machine.send_busy_share`` of the time its message takes at the route's slowest stage, the machine's
        kernel included (the kernel's work for it). Returns the message's queue wait."""
        machine = self.s.deployment.machine
        assert machine is not None
        transfer = self.env.process(self._transfer(src.node, dst.node, nbytes, phase))
        rate = min(link.bandwidth_bps for link in self.net.tcp_route(src.node, dst.node))
        busy_s = machine.send_busy_share * self.net.transport.wire_bytes(nbytes) * 8 / rate
        yield from src.cpu.work(busy_s, thread=src.key)
        return (yield transfer)

    def _loopback(self, src: Endpoint, nbytes: int) -> Gen:
        """Pods on one host still copy messages through the kernel: the sender's thread on a core for the
        profile's ``net.loopback`` cost, when the profile measured one (else free). Returns the wait for a core."""
        cpu = src.cpu
        if cpu.profile is None or "net.loopback" not in cpu.profile.ops:
            return 0.0
        return (yield from cpu.work(cpu.profile.cost_s("net.loopback", cpu.rng, nbytes), thread=src.key))

    def hop(self, src: Endpoint, dst: Endpoint, plaintext: int, phase: str, since: float | None = None) -> Gen:
        """A job or its answer between the aggregator and a worker process, over their secure channel: packed
        (one copy), encrypted, carried, the receiving thread woken (``RECEIVE_HANDOFF``, as a client is for its
        model), decrypted (the receiver reads its fields in place); and at each end the code path around those
        steps, where the profile measured it (``job.glue``, hw/hopcal.py)."""
        yield from src.run(self.rec, phase, "serialize", plaintext, since)
        yield from src.run(self.rec, phase, f"{self.aead.name}.encrypt", plaintext)
        yield from self._glue(src, phase, plaintext)
        yield from self.send(src, dst, RECORD_HEADER_BYTES + plaintext + self.aead.aead_overhead_bytes, phase)
        yield from self._handoff(dst, RECEIVE_HANDOFF)  # the receiver's thread, blocked on its socket, wakes
        yield from dst.run(self.rec, phase, f"{self.aead.name}.decrypt", plaintext)
        yield from self._glue(dst, phase, plaintext)

    def _handoff(self, ep: Endpoint, kind: str, woken: bool = True) -> Gen:
        """The step between a message's last byte and the receiving thread's first operation, where the profile
        has it (fitted from twin runs, hw/fit.py: the record parsed, a queue between two threads, Python in
        between): work on the receiving thread's core, which waits for it like any other, since the kernel's
        traces show the thread running for 53-100 % of it (sim/profile.py). A step of the endpoint's thread, as
        its operations are (``Endpoint.work``)."""
        profile = ep.cpu.profile
        if profile is not None and kind in profile.overheads:  # none: no event, runs as without hand-offs
            yield from ep.work(profile.handoff_s(kind, ep.cpu.rng), woken=woken)

    def _glue(self, ep: Endpoint, phase: str, plaintext: int) -> Gen:
        if ep.cpu.profile is not None and "job.glue" in ep.cpu.profile.ops:
            yield from ep.run(self.rec, phase, "job.glue", plaintext)

    def job_bytes(self, client: Endpoint, payload: int) -> int:
        """A job's plaintext: its head, the client's name and the record's key material, then ``payload``."""
        return JOB_HEAD_BYTES + len(client.pod) + 3 * self.aead.key_bytes + 4 + payload

    def message_bytes(self, payload: int) -> int:
        kem_ct = self.kem.ciphertext_bytes if self.crypto.rekey.fl == "per_message" else 0
        sig = self.sig.signature_bytes + (0 if self.sig.signature_bytes == self.sig.signature_max_bytes
                                          else SIGNATURE_LENGTH_BYTES)  # fmt: skip
        body = self.fl.header_bytes + payload + sig + self.aead.aead_overhead_bytes + kem_ct
        return RECORD_HEADER_BYTES + body

    def protect(self, ep: Endpoint, phase: str, payload: int, since: float | None = None) -> Gen:
        """Sign (hash the message, as often as the scheme does; sign the digest), encapsulate if per message,
        encrypt."""
        hashed = payload * self.sig.sign_hash_passes
        yield from ep.run(self.rec, phase, f"{self.sig.message_hash}.hash", hashed, since)
        yield from ep.run(self.rec, phase, f"{self.sig.name}.sign", payload)  # size: for a fitted overhead only
        if self.crypto.rekey.fl == "per_message":
            yield from ep.run(self.rec, phase, f"{self.kem.name}.encaps")
        yield from ep.run(self.rec, phase, f"{self.aead.name}.encrypt", payload + self.sig.signature_bytes)

    def unprotect(self, ep: Endpoint, phase: str, payload: int, since: float | None = None) -> Gen:
        """Decapsulate if per message, decrypt, verify (hash + verify), deserialise."""
        if self.crypto.rekey.fl == "per_message":
            yield from ep.run(self.rec, phase, f"{self.kem.name}.decaps", since=since)
            since = None
        yield from ep.run(self.rec, phase, f"{self.aead.name}.decrypt", payload + self.sig.signature_bytes, since)
        yield from ep.run(self.rec, phase, f"{self.sig.message_hash}.hash", payload)
        yield from ep.run(self.rec, phase, f"{self.sig.name}.verify", payload)
        yield from ep.run(self.rec, phase, "deserialize", payload)

    def handshake(self, ini: Endpoint, resp: Endpoint, ph: str = "handshake", keys: simpy.Event | None = None) -> Gen:
        """Responder's signed ephemeral KEM key; initiator encapsulates and signs the transcript. ``keys``
        succeeds when the initiator has its keys, before its last message leaves (``first_frame: with_keys``)."""
        kem, sig, rec = self.kem, self.sig, self.rec
        yield from self.send(ini, resp, HELLO_BYTES, ph)
        yield from resp.run(rec, ph, f"{kem.name}.keygen")
        yield from resp.run(rec, ph, f"{sig.name}.sign")
        yield from self.send(resp, ini, kem.public_key_bytes + sig.signature_bytes + sig.public_key_bytes, ph)
        yield from ini.run(rec, ph, f"{sig.name}.verify")
        yield from ini.run(rec, ph, f"{kem.name}.encaps")
        yield from ini.run(rec, ph, f"{sig.name}.sign")
        if keys is not None:
            keys.succeed()
        yield from self.send(ini, resp, kem.ciphertext_bytes + sig.signature_bytes + sig.public_key_bytes, ph)
        yield from resp.run(rec, ph, f"{kem.name}.decaps")
        yield from resp.run(rec, ph, f"{sig.name}.verify")

    def _handshake_all(self) -> Gen:
        yield self.env.all_of([self.env.process(self.handshake(c, self.agg)) for c in self.clients])

    # --- FL --------------------------------------------------------------------------------------------

    rounds_completed = 0

    def _fl(self) -> Gen:
        env, fl = self.env, self.fl
        if self.crypto.rekey.fl != "per_round":  # per_message also authenticates the session once
            yield from self._handshake_all()
        for r in range(1, fl.rounds + 1):
            self.rec.round = r
            start = env.now
            self.round_starts.append(start)
            if self.crypto.rekey.fl == "per_round":
                yield from self._handshake_all()
            received = [env.event() for _ in self.clients]
            env.process(self._mark_distribution(r, start, received))
            arrivals = simpy.Store(env)
            dropped = self.rng_fl.random(len(self.clients)) < fl.dropout_probability
            ctx = (r, received, arrivals, dropped)
            if round_mode(self.mode, r) == "sequential":
                env.process(self._distribute_sequential(ctx))
                ok = yield from self._aggregate_sequential(arrivals, start + fl.round_timeout_s)
            else:
                env.process(self._distribute_concurrent(ctx))
                ok = yield from self._aggregate_concurrent(arrivals, start + fl.round_timeout_s)
            self.rec.add(self.agg.pod, self.agg.node, "round", "round" if ok else "failed", start, env.now, 0.0)
            self.rounds_completed += ok

    def _mark_distribution(self, r: int, start: float, received: list[simpy.Event]) -> Gen:
        yield self.env.all_of(received)
        self.rec.add(self.agg.pod, self.agg.node, "distribution", "distribution", start, self.env.now, 0.0, rnd=r)

    def _distribute_sequential(self, ctx: tuple[Any, ...]) -> Gen:
        """One thread prepares each client's message in turn. It goes on to the next once the kernel has a
        message (``Transport.send_buffer_bytes``): the twin's aggregator, as any blocking socket's writer, returns
        from its send once the bytes are buffered, so client 2's message is signed while client 1's crosses the
        network (measured on the netns backend: the two transfers overlap). Over loopback the send is the copy."""
        model = self.fl.model_bytes
        nbytes = self.message_bytes(model)
        for c, client in enumerate(self.clients):
            yield from self.agg.run(self.rec, "distribute", "serialize", model)  # each client's own message
            yield from self.protect(self.agg, "distribute", model)
            if (
                client.node == self.agg.node
                or nbytes > self.net.transport.send_buffer_bytes
                or self._held(self.agg.node, client.node)
            ):
                yield from self._deliver(c, client, nbytes, ctx)
                continue
            buffer = self.net.send_buffer_bytes(self.agg.node, client.node)
            if nbytes <= buffer:
                self.env.process(self._deliver(c, client, nbytes, ctx))
                continue
            taken = self.env.event()  # its send returns once all but a buffer's worth are acknowledged
            self.env.process(self._deliver(c, client, nbytes, ctx, (nbytes - buffer, taken)))
            yield taken

    def _deliver(self, c: int, client: Endpoint, nbytes: int, ctx: tuple[Any, ...],
                 taken: tuple[float, simpy.Event] | None = None) -> Gen:  # fmt: skip
        yield from self.send(self.agg, client, nbytes, "distribute", taken=taken)
        self.env.process(self._client(c, ctx))

    def _distribute_concurrent(self, ctx: tuple[Any, ...]) -> Gen:
        self.handing = None  # a new round: its first job's thread is woken by the main thread
        for c in range(len(self.clients)):
            self.env.process(self._distribute_job(c, ctx))
        yield self.env.timeout(0)

    def _hand_on(self, worker: Endpoint) -> None:
        """A round's jobs are submitted at once, to the pool's queue: the thread that takes one wakes the next
        (hw/node/aggregator.py), which Linux queues on its waker's core, busy with its job (``PlacedCores.HAND_ON``).
        Modelled where the aggregator's own job threads do the whole job (no worker pods): the first then keeps its
        core through the job's long steps (a signature), and the second waits for the core or the scheduler's tick
        (docs/twin-validation.md, stop 84). Where jobs go to worker processes, the job threads' steps are short and
        take turns on the core under the interpreter lock, which the model's steps are too coarse to follow: there
        the hand-on made the model's 50 k rounds dear (stop 72), and it is left out."""
        if self.handing is not None and self.handing != worker.key:
            worker.woken_by, worker.handed = self.handing, True
        self.handing = worker.key

    def _agg_thread(self, worker: Endpoint) -> Endpoint:
        """The aggregator's job thread for ``worker``: a thread of its own, placed on the cores as one
        (``PlacedCores``), so two workers' jobs are sealed and opened side by side as the twin's are (one thread
        for all made them queue on one core: the model's concurrent 50 k distributions ran a quarter wholly serial,
        the twin's almost none; docs/twin-validation.md, stop 37)."""
        thread = self.agg_threads.get(worker.key)
        if thread is None:
            thread = self.agg_threads[worker.key] = Endpoint(self.agg.pod, self.agg.node, self.agg.cpu)
        return thread

    def _distribute_job(self, c: int, ctx: tuple[Any, ...]) -> Gen:
        assert self.pool is not None
        queued: float | None = self.env.now  # the pool wait is charged to the job's first span
        model, sealed = self.fl.model_bytes, self.message_bytes(self.fl.model_bytes)
        taken = yield self.pool.get()
        worker = taken.item
        apart = worker.pod != self.agg.pod
        if not apart and self.agg.cpu.placed:
            self._hand_on(worker)
        # the main thread only submits the job (hw/node/aggregator.py ``_round``: microseconds, for every client at
        # once); the job thread that takes it wakes, as a reader thread wakes the main one, side by side with the others
        yield from self._handoff(self._agg_thread(worker) if apart else worker, INBOX_HANDOFF)
        if apart:
            job = self.job_bytes(self.clients[c], model)  # the model, no record header
            yield from self.hop(self._agg_thread(worker), worker, job, "distribute", since=queued)
            queued = None
        yield from worker.run(self.rec, "distribute", "serialize", model, since=queued)
        yield from self.protect(worker, "distribute", model)
        if apart:
            answer = ANSWER_HEAD_BYTES + sealed  # the record sealed for the client, header and body
            yield from self.hop(worker, self._agg_thread(worker), answer, "distribute")
        self.pool.put(taken)
        yield from self.send(self.agg if apart else worker, self.clients[c], sealed, "distribute")
        self.env.process(self._client(c, ctx))

    def train(self, ep: Endpoint) -> Gen:
        """A local training step; it slows down, and is slowed down by, the trainings on the host's other cores
        (memory bandwidth: ``LinearOp.pair_slowdown``, ``Cpu.work``)."""
        fl = self.fl
        units = fl.train_units
        model = ep.cpu.profile.op("fl.train") if ep.cpu.profile is not None else None
        contention = (model, units) if isinstance(model, LinearOp) and model.pair_slowdown else None
        yield from ep.run(self.rec, "train", "fl.train", units, contention=contention)

    def _client(self, c: int, ctx: tuple[Any, ...]) -> Gen:
        _, received, arrivals, dropped = ctx
        ep, fl, rec = self.clients[c], self.fl, self.rec
        yield from self._handoff(ep, RECEIVE_HANDOFF)
        yield from self.unprotect(ep, "receive", fl.model_bytes)
        received[c].succeed()
        yield from self.train(ep)
        if dropped[c]:
            return
        yield from ep.run(rec, "upload", "serialize", fl.model_bytes)
        yield from self.protect(ep, "upload", fl.model_bytes)
        yield from self.send(ep, self.agg, self.message_bytes(fl.model_bytes), "upload")
        # its reader thread passes it to the main thread
        if round_mode(self.mode, ctx[0]) == "sequential" or not self.delegates:
            yield from self._handoff(self.agg, INBOX_HANDOFF)
        arrivals.put(c)

    def _collect(self, store: simpy.Store, deadline: float) -> Gen:
        """Next item of store, or None once the round's deadline has passed."""
        get = store.get()
        res = yield get | self.env.timeout(max(0.0, deadline - self.env.now))
        if get in res:
            return get.value
        get.cancel()
        return None

    def _aggregate_sequential(self, arrivals: simpy.Store, deadline: float) -> Gen:
        got: list[int] = []
        while len(got) < self.fl.quorum_clients:
            c = yield from self._collect(arrivals, deadline)
            if c is None:
                return False
            got.append(c)
        for _ in got:
            yield from self.unprotect(self.agg, "verify", self.fl.model_bytes)
        yield from self.agg.run(self.rec, "aggregate", "fl.fedavg", self.fl.model_parameters * len(got))
        return True

    def _aggregate_concurrent(self, arrivals: simpy.Store, deadline: float) -> Gen:
        verified = simpy.Store(self.env)
        dispatcher = self.env.process(self._dispatch(arrivals, verified))
        for _ in range(self.fl.quorum_clients):
            c = yield from self._collect(verified, deadline)
            if c is None:
                dispatcher.interrupt()
                return False
            yield from self.agg.run(self.rec, "aggregate", "fl.fedavg", self.fl.model_parameters)
        dispatcher.interrupt()
        return True

    def _dispatch(self, arrivals: simpy.Store, verified: simpy.Store) -> Gen:
        try:
            while True:
                c = yield arrivals.get()
                self.env.process(self._verify_job(c, verified))
        except simpy.Interrupt:
            return

    def _verify_job(self, c: int, verified: simpy.Store) -> Gen:
        assert self.pool is not None
        queued: float | None = self.env.now  # the pool wait is charged to the job's first span
        fl = self.fl
        taken = yield self.pool.get()
        worker = taken.item
        apart = worker.pod != self.agg.pod
        if not apart and self.agg.cpu.placed:
            self._hand_on(worker)
        if not self.delegates:  # the main thread submits it (``_distribute_job``): the job thread wakes
            yield from self._handoff(self._agg_thread(worker) if apart else worker, INBOX_HANDOFF)
        if apart:
            job = self.job_bytes(self.clients[c], self.message_bytes(fl.model_bytes))  # the client's whole record
            yield from self.hop(self._agg_thread(worker), worker, job, "verify", since=queued)
            queued = None
        yield from self.unprotect(worker, "verify", fl.model_bytes, since=queued)
        if apart:
            yield from self.hop(worker, self._agg_thread(worker), fl.model_bytes + ANSWER_HEAD_BYTES, "verify")
        self.pool.put(taken)
        yield from self._handoff(self.agg, INBOX_HANDOFF, woken=False)  # a job thread hands the update on
        verified.put(c)

    # --- devices -----------------------------------------------------------------------------------

    def _device(self, pop: DevicePopulation, i: int) -> Gen:
        """A device: a session (handshake) at a random phase, then a frame every period until the session ends
        (the next handshake starts at the first frame time at or after it). The vectorized engine records the
        session instead and jumps to that time: sim/telemetry.py computes its frames, on the same clock."""
        env, rng = self.env, self.rng_dev
        dev, receiver = self._device_endpoints(pop, i)
        gateway = self._gateway_endpoint(pop) if pop.key_establishment == "gateway" else None
        period, interval = pop.period_s(), self.crypto.rekey.device_interval_s
        payload = pop.frame_bytes()
        sessions = self.sessions.setdefault(self.populations[pop.name], [])
        yield env.timeout(rng.uniform(0, period))
        first = True
        while True:
            asked = env.now
            self.handshakes_now += 1
            done: simpy.Process | None = None
            if pop.first_frame == "with_keys":  # frames go once the device (or its gateway) has its keys
                keys = env.event()
                done = env.process(self.handshake(gateway or dev, receiver, "telemetry", keys))
                done.callbacks.append(partial(self._handshake_done, pop.name, asked, first))
                yield keys
            else:
                yield from self.handshake(gateway or dev, receiver, "telemetry")  # device sessions: telemetry work
                self._handshake_done(pop.name, asked, first)
            start = env.now
            session_end = start + interval if interval else float("inf")
            if first and self.storm_left:
                self.storm_left -= 1
                if not self.storm_left:
                    self._end_storm()
            first = False
            if self.vectorized:
                # frames sent before the handshake ends share the device's link and receiver thread with it,
                # which the kernels do not model: SimPy's
                while done is not None and not done.processed and env.now < session_end:
                    yield from self._hot_frame(self.populations[pop.name], i, dev, receiver, payload, gateway, period)
                if env.now >= session_end:
                    continue
                if not (yield from self._vector_session(pop, i, dev, receiver, sessions, session_end, gateway)):
                    return
                continue
            while env.now < session_end:
                env.process(self._frame(dev, receiver, payload, gateway))
                yield env.timeout(period)

    def _vector_session(self, pop: DevicePopulation, i: int, dev: Endpoint, receiver: Endpoint,
                        sessions: list[tuple[int, float, float]], session_end: float,
                        gateway: Endpoint | None) -> Gen:  # fmt: skip
        """A session's frames for the vectorized engine: recorded as pieces (device, first emission, end) for
        the kernels, except frames emitted in a hot interval, which run here. Returns True at the session's
        end (the next handshake's time); False at once when the kernels have the rest up to the horizon."""
        from sim.kernels import grid_after  # numba: only the vectorized engine pays for it

        env, period, horizon = self.env, pop.period_s(), self.s.run.horizon_s
        k, payload = self.populations[pop.name], pop.frame_bytes()
        starts = self.hot_starts
        while env.now < session_end:
            t = env.now
            j = bisect.bisect_right(starts, t) - 1
            storm = self.storm_left > 0 and self.handshakes_now > 0 and self.hot_started < self.hot_budget
            if self.storm_left and not storm:
                self._lull()
            if storm or (j >= 0 and t <= self.hot_ends[j]):
                if storm:
                    self.storm_emits.append(t)
                yield from self._hot_frame(k, i, dev, receiver, payload, gateway, period)
                continue
            end = min(session_end, starts[j + 1] if j + 1 < len(starts) else math.inf)
            sessions.append((i, t, end))
            if end >= horizon:
                return False
            yield env.timeout(grid_after(t, period, end) - t)
        return True

    def _hot_frame(self, k: int, i: int, dev: Endpoint, receiver: Endpoint, payload: int,
                   gateway: Endpoint | None, period_s: float) -> Gen:  # fmt: skip
        """A frame of the vectorized engine in SimPy (a hot interval), then the rest of its period: the event
        model's ``_frame``, drawing from its population's own stream and keeping no span (the kernels count it
        with theirs). Carried by its device's own process, not one of its own (two events a frame fewer): the
        period's timer is set first, so the next frame goes when it would; a frame that outlasts its period,
        which would hold it, makes the run the event model's anyway (``telemetry._within_period``; one still under
        way at the end: ``hot_carrying``)."""
        if k not in self.hot_rngs:
            assert self.frame_ss is not None
            self.hot_rngs[k] = stream(self.frame_ss, 3, k)
        env = self.env
        tick = env.timeout(period_s)
        start = env.now
        self.hot_started += 1
        self.hot_carrying[k, i] = start
        wait = yield from self._carry_frame(dev, receiver, payload, gateway, None, self.hot_rngs[k])
        del self.hot_carrying[k, i]
        self.hot_frames.append((k, i, start, env.now, wait))
        yield tick

    def _background(self, items: np.ndarray, link: LinkServer | None, cpu: Cpu | None) -> Gen:
        """Frames the last pass of the vectorized engine found sharing busy periods with this foreground:
        served here too (not logged, not counted: the kernels count frames), so the foreground waits for
        them as the event model would make it wait."""
        for arrival_s, size_s in items.tolist():  # Python floats: numpy scalars would make the clock one
            if arrival_s > self.env.now:
                yield self.env.timeout(arrival_s - self.env.now)
            self.env.process(self._occupy(size_s, link, cpu))

    def _occupy(self, size_s: float, link: LinkServer | None, cpu: Cpu | None) -> Gen:
        if link is not None:  # takes its turn on the link (sim/network.py: FIFO by the time asked)
            link.free_s = max(self.env.now, link.free_s) + size_s
        elif cpu is not None and cpu.shared is not None:
            yield cpu.shared.run(size_s)
        elif cpu is not None and cpu.resource is not None:
            with cpu.resource.request() as core:
                yield core
                yield self.env.timeout(size_s)

    def _handshake_done(self, population: str, asked: float, first: bool, _event: Any = None) -> None:
        self.handshakes_now -= 1
        self.device_handshakes.append((population, asked, self.env.now, first))

    def _device_endpoints(self, pop: DevicePopulation, i: int) -> tuple[Endpoint, Endpoint]:
        node = device_node(pop, i)
        profile = self.s.device_profile(pop)
        rng = self.device_streams[self.device_base[pop.name] + i] if profile is not None else NO_DRAWS
        dev = Endpoint(pop.name, node, Cpu(self.env, node, 1, profile, rng))
        pod = self.eps[pop.report_to]
        # the pod's receiver thread for this device (not the pod's own: frames do not wait for training)
        if self.s.workload.telemetry_receiver == "per-device":
            thread = Thread(self.env)
        else:  # one-thread
            thread = self.receivers.get(pod.pod) or self.receivers.setdefault(pod.pod, Thread(self.env))
        return dev, Endpoint(pod.pod, pod.node, pod.cpu, thread)

    def _gateway_endpoint(self, pop: DevicePopulation) -> Endpoint:
        """The gateway host acting for one device (key_establishment: gateway): its session's initiator, and
        the thread that re-encrypts its frames."""
        return Endpoint(pop.gateway, pop.gateway, self.cpus[pop.gateway], Thread(self.env))

    def _frame(self, dev: Endpoint, receiver: Endpoint, payload: int, gateway: Endpoint | None = None) -> Gen:
        start = self.env.now
        wait = yield from self._carry_frame(dev, receiver, payload, gateway, self.rec, None)
        nbytes = RECORD_HEADER_BYTES + payload + self.aead.aead_overhead_bytes
        self.rec.add(receiver.pod, dev.node, "telemetry", "frame", start, self.env.now, wait, nbytes=nbytes)

    def _carry_frame(self, dev: Endpoint, receiver: Endpoint, payload: int, gateway: Endpoint | None,
                     rec: Recorder | None, rng: np.random.Generator | None) -> Generator[Any, Any, float]:  # fmt: skip
        """A frame from its device to its pod's decryption (spans in ``rec`` if given; draws from ``rng`` if
        given, else from each CPU's and link's own stream); returns its network queue wait."""
        aead = self.aead.name
        yield from dev.run(rec, "telemetry", f"{aead}.encrypt", payload, rng=rng)
        nbytes = RECORD_HEADER_BYTES + payload + self.aead.aead_overhead_bytes
        wait, src = 0.0, dev
        if gateway is not None:  # the device's symmetric key ends at its gateway, which seals it for the pod
            wait += yield from self.net.transfer(dev.node, gateway.node, nbytes, "telemetry", rng=rng)
            yield from gateway.run(rec, "telemetry", f"{aead}.decrypt", payload, rng=rng)
            yield from gateway.run(rec, "telemetry", f"{aead}.encrypt", payload, rng=rng)
            src = gateway
        wait += yield from self.net.transfer(src.node, receiver.node, nbytes, "telemetry", rng=rng)
        yield from receiver.run(rec, "telemetry", f"{aead}.decrypt", payload, rng=rng)
        return wait
