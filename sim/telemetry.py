"""The vectorized engine's telemetry: every device frame computed in compiled per-server kernels.

The event model gives each frame a SimPy process (encrypt on the device, a FIFO wait and a service on every
link of its route, decrypt on its pod's host); ~25 events per frame make a hospital's hour (36 M frames)
take an hour. Here SimPy runs everything else (FL, every handshake, the device sessions), logging each
transmission and CPU job it serves; the frames then follow in time windows: the emission times of each
session (its start plus the period, added as the clock adds it), then each server in route order: a device's
access link, the shared links, the pod's cores (``sim.kernels``), each merging the frames with the logged
foreground work in arrival order. A window never serves an item before one that arrived earlier, so the
frames are exact against the event model given the foreground's times.

What is exact, and what is checked (``Outcome.perturbation``): the foreground ran without the frames, so it
is exact only if the frames would not have delayed it. Each kernel replays the foreground's transmissions
and jobs beside the frames and reports any it would serve later than SimPy did (the largest delay, and
how many). Zero means the whole run is what the event model computes (to float rounding); otherwise the run
says by how much its foreground is optimistic (``summary.engine``). The device side is checked when the
route is planned: a frame's encryption and its service on the device's access link must each take less than its
period, so a device's frames do not share its core or link with each other or with its next handshake (which
starts a period after its last frame; a frame lost and resent just then is the case this does not cover).

The pod's receiver (``workload.telemetry_receiver``): with a thread per device (``per-device``, the default,
as the twin does it) a frame waits for its device's thread only while the device's previous frame is being
decrypted, and a device's handshake (a period after its last frame) only for that frame. Neither happens while
every frame reaches its pod and is decrypted within its period, so the kernels serve frames on the cores
directly and check that per window; a frame that takes its period or longer raises ``NotVectorizable`` (the
event model then computes the run). One receiver thread per pod (``one-thread``) is the event model's only.

Counters: the frames' link bytes go to phase ``telemetry``; their offered work (a link's serialisation, a
host's decryption) is clipped at the end of the run when asked, min(work, end − asked), as the event model's
``offered_s`` clips it.

Randomness: a fifth stream per replication ("frames"), split into one child per server (jitter, loss) and per
population and operation (costs that vary), and one for the span sample: each draws for its own items in time
order, so the window cuts do not change a run.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sim import catalogue
from sim import sketch as sketch_mod
from sim.contract import RECORD_HEADER_BYTES, SpanRow
from sim.scenario import Scenario, device_node
from sim.sketch import LatencySketch
from sim.streams import stream

if TYPE_CHECKING:
    from sim.hosts import Cpu
    from sim.model import Replication
    from sim.network import LinkServer

# frames per window: bounds memory (~60 B a frame in flight) whatever the horizon; smaller windows keep the frame
# table in the caches (2026-11-29, 10,000 devices x 20 min: 250 k a window 3.5-3.8 s of kernels, 2 M 4.0-4.1 s)
WINDOW_FRAMES = 250_000
# frames the hot intervals may give SimPy (estimated from their length at the devices' rate): beyond, the frames
# near foreground are only replayed as background (each a SimPy event, not a frame's ~25)
HOT_FRAMES_MAX = 100_000
STORM_FRAMES_MAX = HOT_FRAMES_MAX  # of them, the start-up storm's in the first pass (sim/model.py)
DONE = -2  # the end of a route (``_routes``)


def in_service(sid: int) -> int:
    """The server column's mark of a frame on host ``sid``'s cores (carried in its kernel's heap between windows)."""
    return -3 - sid


class NotVectorizable(Exception):
    """The scenario has a feature the vectorized engine does not compute exactly (the message says which)."""


def refusal(s: Scenario) -> str | None:
    """Why the kernels cannot compute a scenario's frames, known before it runs (None: they may)."""
    receiver = s.workload.telemetry_receiver
    if receiver != "per-device" and any(p.count for p in s.workload.devices):
        return f"workload.telemetry_receiver: {receiver} is computed by the event model only (run.engine: events)"
    if s.deployment.machine is not None and any(p.count for p in s.workload.devices):
        return "deployment.machine is computed by the event model only (run.engine: events)"
    shaped = [f"{x.a}-{x.b}" for x in s.deployment.network.links if x.burst_bytes]
    shaped += [f"{p.name} access_link" for p in s.workload.devices if p.access_link.burst_bytes]
    if shaped and any(p.count for p in s.workload.devices):
        why = "burst_bytes (a token bucket) is computed by the event model only (run.engine: events)"
        return f"link {shaped[0]}: {why}"
    hosts = {h.name: h for h in s.deployment.hosts}
    placed = [h.name for h in hosts.values() if h.cpu_sharing == "linux"]
    if placed and any(p.count for p in s.workload.devices):
        return f"host {placed[0]}: cpu_sharing: linux is computed by the event model only (run.engine: events)"
    for p in s.workload.devices:
        if p.count and p.key_establishment == "gateway" and hosts[p.gateway].cpu_sharing != "processor-sharing":
            sharing = hosts[p.gateway].cpu_sharing
            return (f"workload.devices key_establishment: gateway on a host with cpu_sharing: {sharing} is "
                    "computed by the event model only (run.engine: events)")  # fmt: skip
    aead = catalogue.get(s.workload.crypto.aead)
    for p in s.workload.devices:
        if p.count and (frame := frame_refusal(s, p, aead)) is not None:
            return frame
    return None


def frame_refusal(s: Scenario, pop: Any, aead: Any) -> str | None:
    """Why the kernels cannot compute one population's frames, from the scenario alone (None: they may): a frame
    in more than one segment, or one that takes its period or longer to encrypt or to cross its access link.
    ``refusal`` (before a run: its cost estimate and engine) and ``plan`` (at its start) ask the same."""
    payload = pop.frame_bytes()
    wire = RECORD_HEADER_BYTES + payload + aead.aead_overhead_bytes
    if wire > s.run.segment_bytes:
        return f"a frame of {pop.name} spans segments ({wire} > run.segment_bytes)"
    device = s.device_profile(pop)
    enc = _constant(device, f"{aead.name}.encrypt", payload)
    if device is not None and (enc if enc is not None else _max_cost(device, aead.name, payload)) >= pop.period_s():
        return f"a frame of {pop.name} takes longer to encrypt than its period"
    if wire * 8 / pop.access_link.resolved()[0] >= pop.period_s():
        return f"a frame of {pop.name} takes longer on its access link than its period"
    return None


def engine_problem(s: Scenario) -> str | None:
    """The one-line refusal of a scenario that asks for the kernels (``run.engine: vectorized``) they cannot
    compute, known from the scenario alone: ``scenario check`` and ``pqtwin sim`` say it before a run's --out
    is claimed (found only once the run started, ``sim --force`` had already cleared the earlier run)."""
    if s.run.engine == "vectorized" and s.engine() == "vectorized" and (why := refusal(s)):
        return f"{s.path}: run.engine: vectorized: {why}"
    return None


def engine_for(s: Scenario) -> str:
    """``Scenario.engine()``, except that ``auto`` takes the event model for a scenario the kernels refuse."""
    engine = s.engine()
    return "events" if engine == "vectorized" and s.run.engine == "auto" and refusal(s) else engine


@dataclass
class Population:
    """What the kernels need of one device population."""

    index: int
    name: str
    count: int
    period_s: float
    payload_bytes: int
    wire_bytes: int
    pod: str
    servers: list[int]  # server ids along the route: access bank, links..., host
    enc_s: float | None  # constant cost, None: sampled per frame (or 0.0: device compute not modelled)
    dec_s: float | None
    device_profile: Any  # prices the encryption (None: device compute not modelled)
    host_profile: Any  # prices the decryption
    enc_rng: np.random.Generator | None = None  # the costs' streams (simulate_frames)
    dec_rng: np.random.Generator | None = None
    # key_establishment: gateway: the gateway host decrypts and re-encrypts each frame (one job: under
    # processor sharing two back-to-back jobs of one frame are one job of their sum); on the pod's own host
    # that work joins the pod's decryption, else it is a stage of its own before the links to the pod
    gateway_profile: Any = None
    gateway_stage: bool = False
    gw_rng: np.random.Generator | None = None


@dataclass
class Outcome:
    """Frames of one replication: statistics per population, a span sample, and the foreground check."""

    sketches: dict[str, LatencySketch]
    rows: list[SpanRow]
    frames: int
    frame_bytes: int  # bytes of the frames completed, per transmission counted once per message
    in_flight: int  # frames emitted but not decrypted by the horizon
    perturbation: dict[str, tuple[float, int]]  # resource -> (largest delay s, items delayed)
    windows: int
    # resource -> frames' (arrival_s, service_s) that share busy periods with foreground: the next pass's SimPy
    # run serves them beside the foreground (a host's by its name, a link's by "a->b")
    background: dict[str, np.ndarray] = field(default_factory=dict)
    passes: int = 1
    complete: bool = True  # False: stopped once the foreground was found delayed (simulate_frames ``final``)
    # emission intervals [start, end] whose frames the next pass runs in SimPy (``hot_intervals``)
    hot: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    hot_frames: int = 0  # frames of this pass computed in SimPy (in hot intervals), completed or not
    # the next pass may be this one's run up to its storm's end that then serves ``background`` (all arriving after
    # it): nothing it found calls for more frames in SimPy than the storm's (sim/runner.py ``replicate``)
    resumable: bool = False


class _Server:
    """A link direction (or a population's bank of access links) or a host's cores, with its kernel state."""

    def __init__(self, sid: int, name: str, kind: str, links: list[LinkServer] | None = None, cpu: Cpu | None = None):
        self.sid, self.name, self.kind, self.links, self.cpu = sid, name, kind, links or [], cpu
        self.bin_s = 1.0  # the run's series bin (Network.track)
        self.rng = np.random.default_rng(0)  # its own stream (simulate_frames)
        n = max(1, len(self.links)) if kind != "host" else 1
        self.free = np.zeros(n)
        self.busy_s, self.demand_s = np.zeros(n), np.zeros(n)
        self.sent, self.lost = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.counters = np.zeros(6)
        self.k = 0
        # frames' (arrival_s, service_s, emission_s, period_s) in busy periods with foreground
        self.near: list[np.ndarray] = []
        self.gateway_stage = False  # a host where some population's frames stop on their way (``_move_on``)
        log = (self.links[0].log if kind == "link" else cpu.log if cpu is not None else None) or []
        fg = np.fromiter(itertools.chain.from_iterable(log), float, 3 * len(log)).reshape(-1, 3)  # (np.array: 4x)
        fg = fg[np.argsort(fg[:, 0], kind="stable")]  # logs are in the order asked: ties keep it
        self.fg_asked, self.fg_size, self.fg_done = (np.ascontiguousarray(fg[:, c]) for c in range(3))
        if kind == "host":
            assert cpu is not None
            self.state = np.zeros(2)
            self.tags, self.refs, self.h = np.empty(64), np.empty(64, dtype=np.int64), 0
            self.core_free = np.zeros(cpu.cores)


def _constant(profile: Any, op: str, units: float) -> float | None:
    if profile is None:
        return 0.0
    return float(profile.cost_s(op, np.random.default_rng(0), units)) if profile.is_deterministic(op) else None


def plan(rep: Replication) -> tuple[list[Population], list[_Server]]:
    """Populations and servers in route order (topological: a server after every server before it)."""
    import networkx as nx  # here, not with the module: sim.cost imports it, and a twin node imports sim.cost

    s, net, aead = rep.s, rep.net, rep.aead
    servers: dict[Any, _Server] = {}
    pops: list[Population] = []
    dag = nx.DiGraph()
    for p, pop in enumerate(s.workload.devices):
        if pop.count == 0:
            continue
        ep = rep.eps[pop.report_to]
        payload = pop.frame_bytes()
        wire = RECORD_HEADER_BYTES + payload + aead.aead_overhead_bytes
        if (why := frame_refusal(s, pop, aead)) is not None:
            raise NotVectorizable(why)
        route = net.route(device_node(pop, 0), ep.node)
        access = [net.links[device_node(pop, i), pop.gateway] for i in range(pop.count)]
        if not route or route[0] is not access[0]:
            raise NotVectorizable(f"devices of {pop.name} do not reach their pod through their gateway")
        servers[("bank", p)] = _Server(len(servers), f"{pop.gateway} access ({pop.name})", "bank", access)
        gw_cpu = rep.cpus[pop.gateway] if pop.key_establishment == "gateway" else None
        keys = [("bank", p), *_route_servers(servers, gw_cpu if gw_cpu is not ep.cpu else None, route[1:], ep.cpu)]
        nx.add_path(dag, [servers[k].sid for k in keys])
        device = s.device_profile(pop)
        enc = _constant(device, f"{aead.name}.encrypt", payload)
        dec = _constant(ep.cpu.profile, f"{aead.name}.decrypt", payload)
        pops.append(Population(p, pop.name, pop.count, pop.period_s(), payload, wire, ep.pod,
                               [servers[k].sid for k in keys], enc, dec, device, ep.cpu.profile,
                               gateway_profile=gw_cpu.profile if gw_cpu else None,
                               gateway_stage=gw_cpu is not None and gw_cpu is not ep.cpu))  # fmt: skip
    try:
        order = list(nx.topological_sort(dag))
    except nx.NetworkXUnfeasible:
        raise NotVectorizable("frames cross one link in both directions") from None
    by_id = {srv.sid: srv for srv in servers.values()}
    for srv in servers.values():
        srv.bin_s = net.bin_s
    return pops, [by_id[i] for i in order]


def _route_servers(servers: dict[Any, _Server], gateway: Cpu | None, links: list[LinkServer], host: Cpu) -> list[Any]:
    """Keys of a route's servers after the access bank (made as first met): a gateway stage if any, the links
    from the gateway to the pod's host, the host."""
    keys: list[Any] = []
    if gateway is not None:
        keys.append(("host", gateway.name))
        if keys[-1] not in servers:
            servers[keys[-1]] = _Server(len(servers), gateway.name, "host", cpu=gateway)
        servers[keys[-1]].gateway_stage = True
    for link in links:
        if link.name not in servers:
            servers[link.name] = _Server(len(servers), link.name, "link", [link])
        keys.append(link.name)
    if ("host", host.name) not in servers:
        servers["host", host.name] = _Server(len(servers), host.name, "host", cpu=host)
    return [*keys, ("host", host.name)]


def _max_cost(profile: Any, aead: str, payload: int) -> float:
    return float(np.max(profile.costs_s(f"{aead}.encrypt", np.random.default_rng(0), payload, 1000)))


class _Frames:
    """Frames in flight (struct of arrays): population, device, emission, time at the next server, its id (or
    ``in_service``), queue wait so far, decryption time."""

    NAMES = ("pop", "dev", "emit", "t", "srv", "wait", "done", "work", "work2")

    def __init__(self) -> None:
        self.pop = np.empty(0, dtype=np.int32)
        self.dev = np.empty(0, dtype=np.int32)
        self.emit, self.t = np.empty(0), np.empty(0)
        self.srv = np.empty(0, dtype=np.int32)
        self.wait, self.done, self.work = np.empty(0), np.empty(0), np.empty(0)
        self.work2 = np.empty(0)  # the work at the frame's second host (a gateway stage's frames), else 0

    def append(self, parts: list[dict[str, Any]]) -> None:
        """Add the rows of ``parts`` (each: ``n`` and every column, an array of n or one value for all), one
        copy a column: a window's frames are most of the table, and copying them twice cost ~0.7 s an hour."""
        if not parts:
            return
        old = self.t.size
        total = old + sum(part["n"] for part in parts)
        for name in self.NAMES:
            col = getattr(self, name)
            new = np.empty(total, dtype=col.dtype)
            new[:old] = col
            at = old
            for part in parts:
                new[at : at + part["n"]] = part[name]
                at += part["n"]
            setattr(self, name, new)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (few: the frames still in flight)."""
        for name in self.NAMES:
            setattr(self, name, getattr(self, name)[rows])


def _streams(seed: np.random.SeedSequence, pops: list[Population], servers: list[_Server]) -> np.random.Generator:
    """Give each server (jitter, loss) and population and operation (costs) its own stream, so draws follow
    each one's own items in time order whatever the window cuts; returns the span sample's."""
    for srv in servers:
        srv.rng = stream(seed, 0, srv.sid)
    for p in pops:
        p.enc_rng, p.dec_rng = stream(seed, 1, p.index, 0), stream(seed, 1, p.index, 1)
        p.gw_rng = stream(seed, 1, p.index, 2) if p.gateway_profile is not None else None
    return stream(seed, 2)


def simulate_frames(
    rep: Replication, seed: np.random.SeedSequence, keep_fraction: float, final: bool = True
) -> Outcome:
    """Compute every frame of a replication whose SimPy part (with logs on) has run; see the module doc.

    Unless ``final``, stop at the foreground's last instant if the frames delayed it by then (the outcome is
    then incomplete: only its perturbation and background are for use); after that instant the foreground
    has nothing left to be delayed, so a pass that gets there unperturbed is the last one."""
    from sim import kernels  # numba: compiled on first use, cached beside the module

    if why := refusal(rep.s):
        raise NotVectorizable(why)
    pops, servers = plan(rep)
    if not pops:  # no device sends frames: nothing to compute
        return Outcome({}, [], 0, 0, 0, {}, 0)
    horizon = rep.env.now  # run.horizon_s, or the last round's end (run.stop_at)
    route_table = _routes(pops, servers)
    sketches = {p.name: LatencySketch() for p in pops}
    sample = _Sample(_streams(seed, pops, servers), keep_fraction)
    rows: list[SpanRow] = []
    rate = sum(p.count / p.period_s for p in pops)
    window = min(horizon, max(1e-3, WINDOW_FRAMES / max(rate, 1e-9)))
    # sessions per population: device, next emission, end (the next handshake starts at the first time >= end)
    sess = {p.index: np.array(rep.sessions.get(p.index, []), dtype=float).reshape(-1, 3) for p in pops}
    nxt = {i: a[:, 1].copy() for i, a in sess.items()}
    fr = _Frames()
    done_frames = frame_bytes = windows = 0
    wire = np.zeros(route_table.shape[0])  # bytes of a frame on the wire, by population
    period = np.zeros(route_table.shape[0])  # and its period
    after = {srv.sid: np.ascontiguousarray(route_table[:, srv.sid]) for srv in servers}  # the next, by population
    through = {srv.sid: [p.index for p in pops if srv.sid in p.servers] for srv in servers}  # whose frames it serves
    for p in pops:
        wire[p.index], period[p.index] = p.wire_bytes, p.period_s
    # the foreground's last instant (a job still running at the end has no done time: its ask counts)
    last_fg = max((float(np.nanmax(np.r_[srv.fg_asked, srv.fg_done])) for srv in servers if srv.fg_asked.size),
                  default=0.0)  # fmt: skip
    checked = final or last_fg >= horizon
    t0 = 0.0
    while t0 < horizon:
        t1 = min(t0 + window, horizon)
        if not checked and t1 > last_fg:
            t1 = math.nextafter(last_fg, math.inf)  # every foreground item is asked and done before this cut
        windows += 1
        parts = [part for p in pops if (part := _emit(p, sess[p.index], nxt[p.index], t0, t1, rep, kernels))]
        where = _Rows(fr.t.size, parts, through)
        fr.append(parts)
        for srv in servers:
            _serve(srv, fr, t1, horizon, wire, period, after[srv.sid], where[srv.sid], kernels)
        finished, nbytes, ok, lat, first, left, place = kernels.finished_frames(
            fr.done, fr.emit, fr.pop, wire, t1, horizon, route_table.shape[0])  # fmt: skip
        if finished:
            done_frames += finished
            frame_bytes += int(nbytes)
            _record(rep, pops, fr, ok, lat, first, sketches, rows, sample)
            _compact(fr, left, place, servers)
        t0 = t1
        if not checked and t1 > last_fg:
            checked = True
            if any(srv.counters[4] > 0 or _pending_foreground(srv) for srv in servers):
                return _outcome(rep, pops, servers, sketches, rows, done_frames, frame_bytes, fr, windows, False)
    _in_flight_within_period(pops, fr, horizon)
    _book_counters(servers)
    done, nbytes = _hot_frames(rep, pops, sketches, rows, sample.rng, keep_fraction)
    return _outcome(rep, pops, servers, sketches, rows, done_frames + done, frame_bytes + nbytes, fr, windows, True)


def _hot_frames(rep: Replication, pops: list[Population], sketches: dict[str, LatencySketch], rows: list[SpanRow],
                rng: np.random.Generator, keep_fraction: float) -> tuple[int, int]:  # fmt: skip
    """The frames SimPy computed (hot intervals) into the statistics and the span sample, as ``_record`` puts
    the kernels'; returns how many completed by the end, and their bytes. A frame still under way at the end has
    taken at least that long: over its period, it held its device's next frames back, as the event model's
    devices are not (``_within_period``)."""
    for p in pops:
        under_way = [start for (k, _), start in rep.hot_carrying.items() if k == p.index]
        if under_way:
            _within_period(p, rep.env.now - np.asarray(under_way))
    if not rep.hot_frames:
        return 0, 0
    hot = np.array(rep.hot_frames, dtype=float)
    done = hot[hot[:, 3] < rep.env.now]
    count = nbytes = 0
    for p in pops:
        mine = done[done[:, 0] == p.index]
        if mine.size:
            lat = mine[:, 3] - mine[:, 2]
            _within_period(p, lat)
            sketches[p.name].add(lat)
            count, nbytes = count + len(mine), nbytes + len(mine) * p.wire_bytes
    if keep_fraction > 0:
        names = {p.index: (p.name, p.pod, p.wire_bytes) for p in pops}
        starts = np.asarray(rep.round_starts)
        for k, dev, emit, end, wait in done[rng.random(len(done)) < keep_fraction]:
            name, pod, wire = names[int(k)]
            rnd = int(np.searchsorted(starts, end, side="right"))
            rows.append(SpanRow(rep.rec.replication, rnd, pod, f"{name}#{int(dev)}", "telemetry", "frame",
                                float(emit), float(end), float(wait), wire))  # fmt: skip
    return count, nbytes


def _in_flight_within_period(pops: list[Population], fr: _Frames, end_s: float) -> None:
    """``_within_period`` for the frames not decrypted by the end: their latency is at least that long."""
    for p in pops:
        _within_period(p, end_s - fr.emit[fr.pop == p.index])


def _within_period(p: Population, latency_s: np.ndarray) -> None:
    """A population's frames' emission-to-decryption times against its period: a frame that takes its period
    or longer would hold its device's receiver thread when the next frame arrives (see the module doc)."""
    if latency_s.size and (slowest := float(latency_s.max())) >= p.period_s:
        raise NotVectorizable(
            f"a frame of {p.name} took {slowest:.3g} s, not less than its period, to reach its pod and be "
            "decrypted: its device's receiver thread would hold the next (workload.telemetry_receiver: per-device)"
        )


def _pending_foreground(srv: _Server) -> bool:
    """A foreground item not yet served (or still on the cores) after SimPy had it done: it was delayed."""
    if srv.k < srv.fg_asked.size:
        return True
    return srv.kind == "host" and bool(np.any(srv.refs[: srv.h] < 0))


def _outcome(rep: Replication, pops: list[Population], servers: list[_Server], sketches: dict[str, LatencySketch],
             rows: list[SpanRow], done_frames: int, frame_bytes: int, fr: _Frames, windows: int,
             complete: bool) -> Outcome:  # fmt: skip
    perturbation = {srv.name: (float(srv.counters[3]), int(srv.counters[4])) for srv in servers if srv.counters[4] > 0}
    near = {srv.name: np.concatenate(srv.near) for srv in servers if srv.near and sum(map(len, srv.near))}
    if not complete and not perturbation:  # delayed past the check: count them as delayed
        perturbation = {srv.name: (0.0, 1) for srv in servers if _pending_foreground(srv)}
    hot = rep.hot
    if rep.storm_emits:  # the first pass's storm frames: SimPy's in the next pass too
        hot = hot_intervals(*_spans(np.array(rep.storm_emits), min(p.period_s for p in pops)), hot)
    # all found after the storm's end: the next pass is this one resumed there, serving them all as background (hot
    # intervals instead, around late devices' handshakes, would have every later pass run the storm again)
    resumable = _after(near, rep.storm_end_s)
    if perturbation and near and not resumable:
        rows_ = np.concatenate(list(near.values()))
        grown = hot_intervals(rows_[:, 2], rows_[:, 3], hot)
        rate = sum(p.count / p.period_s for p in pops)
        span_s = float(np.sum(np.minimum(grown[:, 1], rep.env.now) - np.minimum(grown[:, 0], rep.env.now)))
        hot = grown if span_s * rate <= HOT_FRAMES_MAX else hot
    # the rest (frames near foreground outside the hot intervals) is the next pass's background
    background = {name: r[~_within(hot, r[:, 2]), :2] for name, r in near.items()}
    background = {name: b for name, b in background.items() if len(b)}
    in_flight = int(fr.t.size) + rep.hot_started - len(rep.hot_frames)
    return Outcome(sketches, rows, done_frames, frame_bytes, in_flight, perturbation, windows, background,
                   complete=complete, hot=hot, hot_frames=rep.hot_started, resumable=resumable)  # fmt: skip


def _after(found: dict[str, np.ndarray], t_s: float | None) -> bool:
    """Every item found arrives at or after t_s (None: no such time)."""
    return t_s is not None and all(float(b[:, 0].min()) >= t_s for b in found.values() if len(b))


def _spans(t_s: np.ndarray, gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Times clustered where less than ``gap_s`` apart: each cluster's first time and its length."""
    t = np.sort(t_s)
    breaks = np.flatnonzero(np.diff(t) > gap_s)
    first, last = t[np.r_[0, breaks + 1]], t[np.r_[breaks, t.size - 1]]
    return first, last - first


def _within(intervals: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Which of the times t lie in one of the sorted, disjoint [start, end] intervals."""
    j = np.searchsorted(intervals[:, 0], t, side="right") - 1
    return (j >= 0) & (t <= intervals[np.maximum(j, 0), 1]) if len(intervals) else np.zeros(t.shape, dtype=bool)


def hot_intervals(emitted_s: np.ndarray, period_s: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Emission intervals [start, end] whose frames the next pass runs in SimPy: ``previous``, and for each
    frame found in a busy period with foreground, [its emission, one period later] (its device's next frame
    can join the same busy period), sorted and merged. They only grow, so the passes converge: at worst
    every frame is SimPy's. A frame emitted within its period after an interval's end shares busy periods
    with that interval's last frames, which SimPy computed: it stays the kernels' (as background), or the
    intervals would creep a period a pass."""
    if len(previous):
        j = np.maximum(np.searchsorted(previous[:, 0], emitted_s, side="right") - 1, 0)
        end = previous[j, 1]
        frontier = (emitted_s >= previous[j, 0]) & (emitted_s > end) & (emitted_s <= end + period_s)
        emitted_s, period_s = emitted_s[~frontier], period_s[~frontier]
    iv = np.concatenate((previous, np.column_stack((emitted_s, emitted_s + period_s))))
    if len(iv) == 0:
        return previous
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    # merged: a new interval starts where a start lies beyond every end before it
    reach = np.maximum.accumulate(iv[:, 1])
    first = np.r_[True, iv[1:, 0] > reach[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(iv)] - 1
    return np.column_stack((iv[starts, 0], reach[ends]))


def _routes(pops: list[Population], servers: list[_Server]) -> np.ndarray:
    """The server after each one on each population's route (population x server: DONE after its last, and where
    the server is not on its route). A route takes a server once (``plan``: the servers form a DAG), so a frame's
    server says where it goes next."""
    table = np.full((max(p.index for p in pops) + 1, max(srv.sid for srv in servers) + 1), DONE, dtype=np.int32)
    for p in pops:
        for a, b in itertools.pairwise([*p.servers, DONE]):
            table[p.index, a] = b
    return table


def _emit(p: Population, sess: np.ndarray, nxt: np.ndarray, t0: float, t1: float,
          rep: Replication, kernels: Any) -> dict[str, Any] | None:  # fmt: skip
    """A population's frames emitted in [t0, t1), as a part for ``_Frames.append`` (None: none)."""
    live = np.flatnonzero((nxt < t1) & (nxt < sess[:, 2]))
    if live.size == 0:
        return None
    sub_next, sub_end = nxt[live].copy(), sess[live, 2].copy()
    # each session's frames in the window, plus one for rounding (not sessions x the window's frames: a rekey
    # every frame makes a session per frame)
    reach = np.minimum(t1, sub_end) - sub_next
    bound = int(np.sum(np.ceil(np.maximum(reach, 0.0) / p.period_s) + 2))
    out_t, out_s = np.empty(bound), np.empty(bound, dtype=np.int64)
    n = kernels.emit(sub_next, sub_end, p.period_s, t0, t1, out_t, out_s)
    nxt[live] = sub_next
    emit, session = out_t[:n], out_s[:n]  # session: its place in ``live``
    if n > 1 and np.any(np.diff(emit) < 0):
        o = np.argsort(emit, kind="stable")
        emit, session = emit[o], session[o]
    aead = rep.aead.name
    if p.enc_s is None:
        t = emit + p.device_profile.costs_s(f"{aead}.encrypt", p.enc_rng, p.payload_bytes, n)
    else:
        t = emit + p.enc_s if p.enc_s else emit  # (append copies)
    work = p.dec_s
    if work is None:
        work = p.host_profile.costs_s(f"{aead}.decrypt", p.dec_rng, p.payload_bytes, n)
    work2: Any = 0.0
    if p.gateway_profile is not None:  # the gateway decrypts the device's record and seals it for the pod
        assert p.gw_rng is not None
        gw = p.gateway_profile.costs_s(f"{aead}.decrypt", p.gw_rng, p.payload_bytes, n)
        gw = gw + p.gateway_profile.costs_s(f"{aead}.encrypt", p.gw_rng, p.payload_bytes, n)
        work, work2 = (gw, work) if p.gateway_stage else (gw + work, work2)
    dev = sess[live, 0].astype(np.int32)[session]
    return {"n": n, "pop": p.index, "dev": dev, "emit": emit, "t": t, "srv": p.servers[0],
            "wait": 0.0, "done": np.inf, "work": work, "work2": work2}  # fmt: skip


class _Rows:
    """The table's rows where a server's frames can be in a window (``kernels.waiting_at`` looks at those only):
    the frames in flight at its start, and those the window emitted of the populations it serves (each
    population's a block of rows), joined where they touch; by server id, as (start, end) rows."""

    def __init__(self, carried: int, parts: list[dict[str, Any]], through: dict[int, list[int]]):
        block, at = {}, carried
        for part in parts:
            block[part["pop"]] = (at, at + part["n"])
            at += part["n"]
        self.by_server: dict[int, np.ndarray] = {}
        for sid, pops in through.items():
            spans = sorted([(0, carried), *(block[p] for p in pops if p in block)])
            joined: list[list[int]] = []
            for a, b in spans:
                if joined and a <= joined[-1][1]:
                    joined[-1][1] = max(joined[-1][1], b)
                elif b > a:
                    joined.append([a, b])
            self.by_server[sid] = np.array(joined, dtype=np.int64).reshape(-1, 2)

    def __getitem__(self, sid: int) -> np.ndarray:
        return self.by_server[sid]


def _serve(srv: _Server, fr: _Frames, cut: float, horizon: float, wire: np.ndarray, period_s: np.ndarray,
           after: np.ndarray, rows: np.ndarray, kernels: Any) -> None:  # fmt: skip
    o, ordered = kernels.waiting_at(fr.srv, srv.sid, fr.t, cut, rows)
    if not ordered:  # the kernel's bucket order gave up (times bunched)
        o = o[np.argsort(fr.t[o], kind="stable")]
    if srv.kind == "host":
        _serve_host(srv, fr, o, cut, horizon, period_s, kernels)
        if srv.gateway_stage:
            _move_on(fr, cut, srv.sid, after)
        return
    link = srv.links[0]
    srv.k, near, kept = kernels.link_stage(
        o, fr.t, fr.wait, fr.pop, fr.dev, fr.srv, after, wire, link.bandwidth_bps, srv.kind == "bank",
        srv.free, srv.busy_s, srv.demand_s, srv.sent, srv.lost, srv.fg_asked, srv.fg_size, srv.fg_done, srv.k,
        cut, horizon, link.loss, link.latency_s, link.jitter_s, srv.rng, srv.counters,
        link.series if link.series is not None else _NO_SERIES, srv.bin_s,
    )  # fmt: skip
    _keep_near(srv, fr, near, kept, period_s)


def _keep_near(srv: _Server, fr: _Frames, near: np.ndarray, kept: int, period_s: np.ndarray) -> None:
    """Keep a kernel's rows of frames near foreground, their frame index turned into their emission time and
    period (indices change when the table is compacted; these do not)."""
    if not kept:  # (most windows: an empty row list a server a window cost ~0.1 s an hour)
        return
    f = near[:kept, 2].astype(np.int64)
    srv.near.append(np.column_stack((near[:kept, :2], fr.emit[f], period_s[fr.pop[f]])))


_NO_SERIES = np.zeros(1)  # a bank's (devices' access links keep no series): written, never read


def _cpu_series(cpu: Cpu) -> np.ndarray:
    return cpu.series if cpu.series is not None else _NO_SERIES


def _serve_host(srv: _Server, fr: _Frames, o: np.ndarray, cut: float, end_s: float, period_s: np.ndarray,
                kernels: Any) -> None:  # fmt: skip
    cpu = srv.cpu
    assert cpu is not None
    o = o.astype(np.int64, copy=False)
    if cpu.shared is not None:
        srv.h, srv.k, srv.tags, srv.refs, near, kept = kernels.shared_cores(
            fr.t, fr.work, o, srv.fg_asked, srv.fg_size, srv.fg_done, srv.k, cpu.cores,
            srv.state, srv.tags, srv.refs, srv.h, cut, end_s, fr.done, srv.counters, np.empty((16, 3)),
            _cpu_series(cpu), cpu.bin_s,
        )  # fmt: skip
        fr.srv[o] = in_service(srv.sid)
    else:
        srv.k, served, near, kept = kernels.fifo_cores(
            fr.t, fr.work, o, srv.fg_asked, srv.fg_size, srv.fg_done, srv.k, srv.core_free, cut,
            end_s, fr.done, srv.counters, np.empty((16, 3)), _cpu_series(cpu), cpu.bin_s,
        )  # fmt: skip
        fr.srv[o[:served]] = in_service(srv.sid)
    _keep_near(srv, fr, near, kept, period_s)


def _move_on(fr: _Frames, cut: float, sid: int, after: np.ndarray) -> None:
    """Frames done at a gateway stage before the cut go on to the next server of their route at once (the
    gateway is a node of the network), with the work of their pod's host."""
    cand = np.flatnonzero((fr.srv == in_service(sid)) & (fr.done < cut))
    nxt = after[fr.pop[cand]]  # the server after this one (``route_table``), by population
    on = nxt != DONE
    m = cand[on]
    fr.t[m], fr.srv[m] = fr.done[m], nxt[on]
    fr.done[m], fr.work[m] = np.inf, fr.work2[m]


class _Sample:
    """Which of the frames done go into the span sample: each independently with probability ``fraction``.

    Under GAPS_BELOW, drawn as the gaps between kept frames (geometric: the same law as a draw per frame, a draw
    per kept frame instead of one per frame, 36 M at 10,000 devices x 1 h), taken from blocks of BLOCK draws;
    the next kept frame's place and the block carry over a window's cut, so the cuts do not change the sample.
    The places are summed as floats: a gap is near 1 / fraction, so under ~1e-16 a block's sum passes 2**63 (an
    int64 sum wrapped to negative places, kept frames that do not exist); a float sum is exact below 2**53 and
    huge beyond, a place no run reaches, so a fraction that small keeps no frame, exactly as its law says."""

    GAPS_BELOW = 0.01
    BLOCK = 1024

    def __init__(self, rng: np.random.Generator, fraction: float):
        self.rng, self.fraction = rng, fraction
        self.gaps = np.empty(0, dtype=np.int64)  # drawn and not yet used
        self.last = -1  # the last kept frame's place, counted from the first frame to come (-1: the one before it)

    def pick(self, n: int) -> np.ndarray:
        """The places kept among the next ``n`` frames done."""
        if self.fraction >= self.GAPS_BELOW:
            return np.flatnonzero(self.rng.random(n) < self.fraction)
        kept = []
        while True:
            if not self.gaps.size:
                self.gaps = self.rng.geometric(self.fraction, self.BLOCK)
            at = self.last + np.cumsum(self.gaps, dtype=float)  # the next kept frames' places, a gap each
            k = int(np.searchsorted(at, n))
            kept.append(at[:k].astype(np.int64))
            self.last = int(at[k - 1]) if k else self.last
            self.gaps = self.gaps[k:]
            if self.gaps.size:  # the next kept frame comes after these n
                break
        self.last -= n
        return np.concatenate(kept)


def _add_latencies(pops: list[Population], lat: np.ndarray, first: np.ndarray, sketches: dict[str, LatencySketch],
                   kernels: Any) -> None:  # fmt: skip
    """Each population's latencies of a window (``lat[first[p]:first[p + 1]]``) into its sketch, as
    ``LatencySketch.add`` adds them (the same sums, to the bit, and the same buckets from numpy's logs), in two
    compiled passes and one numpy log for all instead of a dozen numpy passes a population."""
    stats = kernels.latency_stats(lat, first)
    if not lat.size:
        return
    low, high = float(stats[:, 2].min()), float(stats[:, 3].max())
    logs = np.log(lat if low >= sketch_mod.MIN_S and high <= sketch_mod.MAX_S else
                  np.clip(lat, sketch_mod.MIN_S, sketch_mod.MAX_S))  # fmt: skip
    for p in pops:
        a, b = int(first[p.index]), int(first[p.index + 1])
        if b == a:
            continue
        total, squares, least, most = (float(x) for x in stats[p.index])
        if most >= p.period_s:  # a thread per device: exact only while each frame takes less than its period
            _within_period(p, lat[a:b])
        sk = sketches[p.name]
        sk.add_moments(b - a, total, squares, least, most)
        kernels.sketch_counts(logs, a, b, sk.counts, sketch_mod.LOG_GAMMA, sketch_mod.OFFSET)


def _record(rep: Replication, pops: list[Population], fr: _Frames, ok: np.ndarray, lat: np.ndarray,
            first: np.ndarray, sketches: dict[str, LatencySketch], rows: list[SpanRow],
            sample: _Sample) -> None:  # fmt: skip
    """A window's frames done by the horizon (``kernels.finished_frames``: rows ``ok``, latencies ``lat`` by
    population) into the statistics and the span sample."""
    from sim import kernels

    _add_latencies(pops, lat, first, sketches, kernels)
    if sample.fraction <= 0:
        return
    pick = ok[sample.pick(ok.size)]
    if not pick.size:
        return
    names = {p.index: (p.name, p.pod, p.wire_bytes) for p in pops}
    rnds = np.searchsorted(np.asarray(rep.round_starts), fr.done[pick], side="right")
    replication = rep.rec.replication
    cols = (fr.pop[pick], fr.dev[pick], fr.emit[pick], fr.done[pick], fr.wait[pick])
    for rnd, k, dev, emit, done, wait in zip(rnds.tolist(), *(c.tolist() for c in cols), strict=True):
        name, pod, wire = names[k]
        rows.append(SpanRow(replication, rnd, pod, f"{name}#{dev}", "telemetry", "frame", emit, done, wait, wire))


def _compact(fr: _Frames, left: np.ndarray, place: np.ndarray, servers: list[_Server]) -> None:
    """Keep the table's rows ``left``; frames on a host's cores are renumbered by ``place``."""
    for srv in servers:
        if srv.kind == "host" and srv.h:
            live = srv.refs[: srv.h]
            frames = live >= 0
            live[frames] = place[live[frames]]
    fr.keep(left)


def _book_counters(servers: list[_Server]) -> None:
    """Add the frames' link use to the links' counters (utilisation, bytes in phase ``telemetry``,
    retransmissions) and their CPU demand to the hosts' (both already clipped at the end of the run)."""
    for srv in servers:
        if srv.kind == "host":
            assert srv.cpu is not None
            srv.cpu.demand_s += float(srv.counters[2])
            continue
        for i, link in enumerate(srv.links):
            link.busy_s += float(srv.busy_s[i])
            link.demand_s += float(srv.demand_s[i])
            link.retransmissions += int(srv.lost[i])
            sent = round(float(srv.sent[i]))
            link.bytes_sent += sent
            if sent:
                link.bytes_by_phase["telemetry"] = link.bytes_by_phase.get("telemetry", 0) + sent
