"""What the model's KPIs mean, pinned where a review found them ambiguous: application vs link bytes, offered
utilisation near the end of a run, a transfer's queue wait, the pod's telemetry receiver threads."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import simpy

from sim.contract import Summary
from sim.errors import UserError
from sim.hosts import Cpu
from sim.model import LinkStats, Replication, ReplicationResult
from sim.network import Network
from sim.runner import simulate, utilisation
from sim.scenario import LinkParams, load_scenario
from sim.telemetry import engine_for

from .conftest import SCENARIOS

PAPER, WARD = SCENARIOS / "paper-3node.yaml", SCENARIOS / "ward-200.yaml"


def result(end_s: float, host_offered_s: float = 0.0, link_offered_s: float = 0.0) -> ReplicationResult:
    """A replication of length end_s with one 1-core host and one link offered that much work."""
    link = LinkStats(busy_s=0.0, offered_s=link_offered_s, bytes=0, retransmissions=0, bytes_by_phase={})
    return ReplicationResult([], 0, end_s, 1, {"h": (1, host_offered_s)}, {"a->b": link})


def cpu_asked(jobs: list[tuple[float, float]], end_s: float) -> Cpu:
    """One core given (asked_s, work_s) jobs, run to end_s."""
    env = simpy.Environment()
    cpu = Cpu(env, "h", 1, None, np.random.default_rng(0))

    def job(at: float, work: float):
        yield env.timeout(at)
        yield from cpu.work(work)

    for at, work in jobs:
        env.process(job(at, work))
    env.run(until=end_s)
    return cpu


def test_work_asked_just_before_the_end_is_not_an_overload():
    """One job asked at T - 1 s needing 100 s of CPU offers 1 core-second of the run's T: not overloaded (it
    used to count all 100 s). A core asked for 1 s every 0.5 s is offered twice what it can do: overloaded."""
    end = 10.0
    late = cpu_asked([(end - 1, 100.0)], end)
    assert late.demand_s == 100.0 and late.offered_s(end) == pytest.approx(1.0)
    host = utilisation([result(end, late.offered_s(end))])["host_utilization"]["h"]
    assert host.offered == pytest.approx(0.1) and not host.overloaded

    end = 100.0
    busy = cpu_asked([(k * 0.5, 1.0) for k in range(200)], end)
    verdict = utilisation([result(end, busy.offered_s(end))])
    assert verdict["host_utilization"]["h"].offered == pytest.approx(2.0, abs=0.01)
    assert verdict["host_utilization"]["h"].overloaded and "host h is overloaded" in verdict["warnings"][0]


def one_link(bandwidth_bps: float, segment_bytes: int) -> tuple[simpy.Environment, Network]:
    env = simpy.Environment()
    g = nx.Graph()
    g.add_edge("a", "b", params=LinkParams(bandwidth_bps=bandwidth_bps, latency_s=0.0, jitter_s=0, loss=0))
    return env, Network(env, g, np.random.SeedSequence(0), segment_bytes)


def test_a_long_transfer_cut_off_by_the_end_is_not_an_overload():
    """A message needing 100 s of a link, asked 1 s before the end, offers 1 s (its segments back to back from
    its ask); two messages asking the link for the whole run offer it twice its capacity."""
    env, net = one_link(8000.0, 1000)  # 1000 B/s, 1 s a segment

    def late():
        yield env.timeout(9.0)
        yield from net.transfer("a", "b", 100_000)

    env.process(late())
    env.run(until=10.0)
    link = net.links["a", "b"]
    assert link.demand_s == pytest.approx(100.0) and link.offered_s(10.0) == pytest.approx(1.0)

    env, net = one_link(8000.0, 1000)
    for _ in range(2):
        env.process(net.transfer("a", "b", 100_000))
    env.run(until=10.0)
    offered = net.links["a", "b"].offered_s(10.0)
    assert offered == pytest.approx(20.0)
    link_use = utilisation([result(10.0, link_offered_s=offered)])["link_utilization"]["a->b"]
    assert link_use.overloaded


def test_a_transfer_waits_for_every_segment_it_queued_behind_other_traffic():
    """Two hops a -> s -> b at 1000 B/s, 1000-byte segments, no latency. A 2-segment message a -> b starts at 0;
    another message s -> b asks the second hop at 1.5 s, while the first segment is on it, before the second
    segment arrives (2 s): the second segment waits 1 s behind it. The message's queue wait is that 1 s (the
    head segment waited for nothing; waiting behind its own first segment is its own serialisation), and
    end - start - queue wait = 3 s, its time on an idle path (two segments pipelined over two hops)."""
    env = simpy.Environment()
    g = nx.Graph()
    p = LinkParams(bandwidth_bps=8000.0, latency_s=0.0, jitter_s=0, loss=0)
    g.add_edge("a", "s", params=p)
    g.add_edge("s", "b", params=p)
    net = Network(env, g, np.random.SeedSequence(0), segment_bytes=1000)
    out: dict[str, float] = {}

    def message():
        out["wait"] = yield from net.transfer("a", "b", 2000, "upload")
        out["end"] = env.now

    def competitor():
        yield env.timeout(1.5)
        yield from net.transfer("s", "b", 1000, "handshake")

    env.process(message())
    env.process(competitor())
    env.run()
    assert out["end"] == pytest.approx(4.0) and out["wait"] == pytest.approx(1.0)
    assert out["end"] - 0.0 - out["wait"] == pytest.approx(3.0)
    # link bytes are hop-counted and labelled by phase: 2000 bytes on each hop of the message, 1000 of the other
    net.settle()
    assert net.links["a", "s"].bytes_by_phase == {"upload": 2000}
    assert net.links["s", "b"].bytes_by_phase == {"upload": 2000, "handshake": 1000}


def test_application_bytes_count_messages_once_link_bytes_every_hop():
    """paper-3node: an FL message crosses two links (pi-1 -> switch -> pi-2): application bytes count it once,
    link bytes on both hops; a frame crosses its access link only (its pod is on the gateway's host)."""
    s = load_scenario(PAPER, ["workload.fl.rounds=1", "run.replications=1"])
    result = simulate(s, "concurrent")
    summary, spans = result.summary, result.spans
    app, links = summary.application_bytes, summary.link_bytes
    assert links is not None
    tcp = s.deployment.network.transport  # on the wire each message carries its packets' headers
    transfers = spans[(spans.op == "transfer") & (spans.bytes > 0)]
    wire = {ph: sum(tcp.wire_bytes(int(n)) for n in g.bytes) for ph, g in transfers.groupby("phase")}
    for phase in ("handshake", "distribute", "upload"):
        assert app.by_phase[phase] == transfers[transfers.phase == phase].bytes.sum(), phase
        assert links.by_phase[phase] == 2 * wire[phase] > 2 * app.by_phase[phase], phase
    fl = sum(wire[phase] for phase in ("handshake", "distribute", "upload"))
    assert links.by_link["pi-1->switch"] + links.by_link["switch->pi-1"] == fl  # each leaves or enters pi-1 once
    assert links.by_phase["telemetry"] >= app.by_phase["telemetry"] > 0  # frames on a link, not yet decrypted
    assert links.total == sum(links.by_link.values()) == sum(links.by_phase.values())


def test_old_summaries_are_read_with_the_new_name():
    """A summary.json written before the rename (bytes_on_wire) still reads; the twin leaves link_bytes empty."""
    s = load_scenario(PAPER, ["workload.fl.rounds=1", "run.replications=1", "workload.devices.0.count=0",
                              "workload.devices.1.count=0"])  # fmt: skip
    data = simulate(s).summary.model_dump()
    data["bytes_on_wire"] = data.pop("application_bytes")
    data["link_bytes"] = None
    old = Summary.model_validate(data)
    assert old.application_bytes.total > 0 and old.link_bytes is None


def two_frames_at_once(receiver: str) -> list[tuple[float, float, float]]:
    """Two devices of one population send a frame at the same instant over identical access links to one pod;
    the (start_s, end_s, queue_wait_s) of the pod's two decryptions."""
    sets = ["workload.fl.rounds=1", "workload.devices.1.count=0", "workload.devices.0.count=2",
            "workload.devices.0.access_link.jitter_s=0", "workload.devices.0.access_link.loss=0",
            f"workload.telemetry_receiver={receiver}"]  # fmt: skip
    s = load_scenario(PAPER, sets)
    rep = Replication(s, "sequential", 0, np.random.SeedSequence(1))
    pop = s.workload.devices[0]
    for i in range(2):
        dev, receiver_ep = rep._device_endpoints(pop, i)
        rep.env.process(rep._frame(dev, receiver_ep, pop.frame_bytes()))
    rep.env.run()
    rows = sorted(r for r in rep.rec.rows if r.op.endswith(".decrypt"))
    return [(r.start_s, r.end_s, r.queue_wait_s) for r in rows]


def test_one_receiver_thread_decrypts_frames_one_after_the_other():
    """one-thread: two frames arriving together are decrypted in turn (the second waits for the first); the
    default, a thread per device as the twin serves them, decrypts them side by side on the host's cores."""
    (s1, e1, w1), (s2, e2, w2) = two_frames_at_once("one-thread")
    assert s1 == s2 and w1 == 0 and w2 == pytest.approx(e1 - s1) and s2 + w2 == pytest.approx(e1) and e2 > e1
    (s1, e1, w1), (s2, e2, w2) = two_frames_at_once("per-device")
    assert s1 == s2 and w1 == w2 == 0 and s2 < e1  # side by side


def test_the_kernels_leave_one_receiver_thread_to_the_event_model():
    """auto takes the event model for one-thread receivers; an explicit vectorized engine says why, in a line."""
    sets = ["workload.telemetry_receiver=one-thread", "run.horizon_s=600"]
    assert load_scenario(WARD, ["run.horizon_s=600"]).engine() == "vectorized"
    assert engine_for(load_scenario(WARD, sets)) == "events"
    with pytest.raises(UserError, match=r"run.engine: vectorized: workload.telemetry_receiver: one-thread"):
        simulate(load_scenario(WARD, [*sets, "run.engine=vectorized"]))


def test_the_kernels_refuse_a_frame_slower_than_its_period():
    """With a thread per device a frame that takes its period or longer would hold the device's next one: the
    kernels do not compute that (they serve frames on the cores directly) and say so."""
    sets = ["run.horizon_s=30", "run.replications=1", "run.engine=vectorized", "workload.fl.rounds=1",
            "deployment.network.links.4.bandwidth_bps=40000"]  # fmt: skip
    # gw-1 -> ap (link 4) carries less than its 45 devices' frames
    sets += [f"workload.devices.{j}.count=0" for j in (1, 2, 3, 4, 5, 7)]
    with pytest.raises(UserError, match=r"run.engine: vectorized: a frame of .* receiver thread"):
        simulate(load_scenario(WARD, sets))
