"""The transport model (sim.scenario.Transport, sim/network.py): TCP headers, fair sharing by an ACK-clocked
window, cut-through at packet size -- each pinned against its closed-form answer."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import simpy

from sim.network import Network
from sim.scenario import LinkParams, Transport

RATE_BPS = 100e6
SEG = 65536


def star(hosts: int, latency_s: float = 0.0) -> nx.Graph:
    g = nx.Graph()
    for i in range(hosts):
        g.add_edge(f"h{i}", "sw", params=LinkParams(bandwidth_bps=RATE_BPS, latency_s=latency_s, jitter_s=0, loss=0))
    return g


def carried(graph: nx.Graph, transport: Transport | None, flows: list[tuple], tcp: bool = True,
            machine: frozenset[str] = frozenset()):  # fmt: skip
    """Messages (src, dst, bytes[, start time]) carried at once: (each one's end, its reported wait, the network);
    ``machine``: hosts emulated on one machine (one kernel)."""
    env = simpy.Environment()
    net = Network(env, graph, np.random.SeedSequence(0), SEG, transport, machine)
    done, waits = [0.0] * len(flows), [0.0] * len(flows)

    def flow(i: int, src: str, dst: str, size: int, at_s: float = 0.0):
        if at_s:
            yield env.timeout(at_s)
        tcp_message = tcp and transport is not None
        waits[i] = yield from net.transfer_tcp(src, dst, size) if tcp_message else net.transfer(src, dst, size)
        done[i] = env.now

    for i, f in enumerate(flows):
        env.process(flow(i, *f))
    env.run()
    return done, waits, net


def finish(graph: nx.Graph, transport: Transport | None, flows: list[tuple[str, str, int]], tcp: bool = True,
           machine: frozenset[str] = frozenset()):  # fmt: skip
    done, _, net = carried(graph, transport, flows, tcp, machine)
    return done, net


@pytest.mark.parametrize("payload, packets", [(1, 1), (1448, 1), (1449, 2), (1_000_000, 691)])
def test_every_packet_carries_the_headers(payload, packets):
    assert Transport().wire_bytes(payload) == payload + packets * 66
    assert Transport(header_bytes=0).wire_bytes(payload) == payload


def test_one_message_over_a_switch_pipelines_by_packet_not_by_segment():
    """Two hops at one rate: the last byte leaves one packet time after it left the first hop
    (stored and forwarded in 64 KiB segments it would be one segment time)."""
    t = Transport()
    (end,), _ = finish(star(2), t, [("h0", "h1", 1_000_000)])
    wire, packet = t.wire_bytes(1_000_000), t.mss_bytes + t.header_bytes
    assert end == pytest.approx((wire + packet) * 8 / RATE_BPS, rel=1e-9)
    (old,), _ = finish(star(2), None, [("h0", "h1", 1_000_000)])
    assert old == pytest.approx((1_000_000 + SEG) * 8 / RATE_BPS, rel=1e-9)  # a full segment behind


def test_cut_through_waits_for_the_bytes_on_a_faster_next_hop():
    """A slow first hop then a fast one: the message cannot leave the fast hop before its last byte came in."""
    g = nx.Graph()
    g.add_edge("a", "sw", params=LinkParams(bandwidth_bps=10e6, latency_s=0.0, jitter_s=0, loss=0))
    g.add_edge("sw", "b", params=LinkParams(bandwidth_bps=1e9, latency_s=0.0, jitter_s=0, loss=0))
    t = Transport()
    (end,), net = finish(g, t, [("a", "b", 200_000)])
    packet = t.mss_bytes + t.header_bytes
    assert end == pytest.approx(t.wire_bytes(200_000) * 8 / 10e6 + packet * 8 / 1e9, rel=1e-9)
    net.settle()
    assert net.links["sw", "b"].bytes_sent == net.links["a", "sw"].bytes_sent == t.wire_bytes(200_000)


@pytest.mark.parametrize("flows", [2, 4, 8])
def test_fair_flows_share_the_link_and_fifo_flows_take_turns(flows):
    """k messages from one host at once: all finish together (within k windows) under fair sharing, one after
    another under fifo; the link is busy throughout either way, so the last ends at the same instant."""
    size = 1_000_000
    equal = Transport(share_sigma=0)  # equal shares (the weights are pinned below)
    fair, _ = finish(star(flows + 1), equal, [("h0", f"h{i + 1}", size) for i in range(flows)])
    fifo, _ = finish(star(flows + 1), Transport(sharing="fifo"), [("h0", f"h{i + 1}", size) for i in range(flows)])
    window_s = Transport().window_segments * SEG * 8 / RATE_BPS
    assert max(fair) - min(fair) <= flows * window_s
    assert max(fair) == pytest.approx(max(fifo), rel=1e-9)
    assert sorted(fifo)[0] == pytest.approx(max(fifo) / flows, rel=0.02)  # the first is done after its own turn
    assert np.mean(fair) > 1.5 * np.mean(fifo) if flows >= 4 else np.mean(fair) > np.mean(fifo)


def test_a_flows_share_of_a_busy_link_goes_as_its_weight(monkeypatch):
    """Two 1 MB flows from one host, weighted 2 and 1: the first gets two thirds of the link until it is done
    (weighted sharing: 1.5 message times), the other ends when the link has carried both (2 message times)."""
    weights = iter([2.0, 1.0])
    monkeypatch.setattr(Network, "share_weight", lambda self, src, dst, links, nbytes: next(weights))
    t = Transport()
    (a, b), _ = finish(star(3), t, [("h0", "h1", 1_000_000), ("h0", "h2", 1_000_000)])
    one_s = t.wire_bytes(1_000_000) * 8 / RATE_BPS
    window_s = 2 * t.window_segments * SEG * 8 / RATE_BPS  # the heavier flow's segments are twice as big
    assert a == pytest.approx(1.5 * one_s, abs=window_s)
    assert b == pytest.approx(2 * one_s, rel=0.01)


@pytest.mark.parametrize("weight", [0.125, 0.3, 1.0, 3.0])
def test_a_weighted_flow_alone_on_a_long_path_still_goes_at_its_rate(monkeypatch, weight):
    """A weight sizes a message's share of a busy link, not its pace alone: the window covers the round trip in
    segments of the weighted size, so one message still crosses at the link's rate plus the latency (past slow
    start: ``initial_window_packets=0`` starts at the path's steady window)."""
    monkeypatch.setattr(Network, "share_weight", lambda self, src, dst, links, nbytes: weight)
    t = Transport(initial_window_packets=0)
    (end,), _ = finish(star(2, latency_s=0.05), t, [("h0", "h1", 4_000_000)])
    wire, packet = t.wire_bytes(4_000_000), t.mss_bytes + t.header_bytes
    assert end == pytest.approx((wire + packet) * 8 / RATE_BPS + 2 * 0.05, rel=1e-9)


def test_share_weights_come_from_each_routes_own_stream_and_move_no_links_draws():
    """A route's n-th message gets the same weight whatever other routes send meanwhile, weights stay within
    [1/8, 8], and a link's own stream (loss, jitter) draws the same whether or not weights were drawn."""

    def net() -> Network:
        return Network(simpy.Environment(), star(3), np.random.SeedSequence(7), SEG, Transport(share_sigma=3.0))

    alone, mixed = net(), net()
    links_a, links_b = alone.route("h0", "h1"), alone.route("h2", "h1")
    a = [alone.share_weight("h0", "h1", links_a, 10_000) for _ in range(200)]
    b = []
    for _ in range(200):
        mixed.share_weight("h2", "h1", links_b, 10_000)  # another route's message in between
        b.append(mixed.share_weight("h0", "h1", links_a, 10_000))
    assert a == b and min(a) == 0.125 and max(a) == 8.0 and len(set(a)) > 50  # sigma 3: the clip is reached
    untouched = net()
    assert mixed.rng(links_a[0]).random() == untouched.rng(untouched.route("h0", "h1")[0]).random()


def test_short_flows_share_unequally_and_long_ones_converge():
    """Share weights spread as ``share_sigma`` for short flows and towards equal shares for long ones: 4 flows
    of 1 MB at 100 Mbit/s end spread out, 4 of 40 MB almost together; the link stays busy, so the last flow ends
    when equal shares would have ended it, and the mean is earlier."""
    t, equal = Transport(), Transport(share_sigma=0)
    assert t.share_spread(0.0) == t.share_sigma and t.share_spread(t.share_converge_s) == t.share_sigma / 2
    assert Transport(sharing="fifo").share_spread(0.0) == 0.0
    spread: dict[int, float] = {}
    for size in (1_000_000, 40_000_000):
        flows = [("h0", f"h{i + 1}", size) for i in range(4)]
        ends, _ = finish(star(5), t, flows)
        same, _ = finish(star(5), equal, flows)
        assert max(ends) == pytest.approx(max(same), rel=0.01)
        assert np.mean(ends) < np.mean(same)
        spread[size] = (max(ends) - min(ends)) / max(ends)
    assert spread[1_000_000] > 0.1 and spread[40_000_000] < spread[1_000_000] / 3, spread
    again, _ = finish(star(5), t, [("h0", f"h{i + 1}", 1_000_000) for i in range(4)])
    assert again == finish(star(5), t, [("h0", f"h{i + 1}", 1_000_000) for i in range(4)])[0]  # one seed, one run


def test_the_window_covers_the_path_round_trip():
    """On a long path a window of two segments would idle the link; it grows to the bandwidth-delay product
    and one message past slow start (``initial_window_packets=0``) still crosses at the link's rate plus the
    latency."""
    t = Transport(initial_window_packets=0)
    (end,), net = finish(star(2, latency_s=0.05), t, [("h0", "h1", 4_000_000)])
    wire, packet = t.wire_bytes(4_000_000), t.mss_bytes + t.header_bytes
    assert end == pytest.approx((wire + packet) * 8 / RATE_BPS + 2 * 0.05, rel=1e-9)
    assert net.window(net.route("h0", "h1")) > t.window_segments


def test_scenarios_default_to_the_validated_transport_and_can_go_back(tmp_path):
    from sim.runner import simulate
    from sim.scenario import load_scenario

    from .conftest import ROOT

    base = ["run.replications=1", "workload.fl.rounds=2", "workload.devices.0.count=0", "workload.devices.1.count=0"]
    s = load_scenario(ROOT / "scenarios" / "paper-3node.yaml", base)
    assert s.deployment.network.transport == Transport()
    old = load_scenario(ROOT / "scenarios" / "paper-3node.yaml",
                        [*base, "deployment.network.transport.sharing=fifo",
                         "deployment.network.transport.header_bytes=0",
                         "deployment.network.transport.fan_in=segments"])  # fmt: skip
    assert old.deployment.network.transport.sharing == "fifo"
    new_spans, old_spans = simulate(s, mode="concurrent").spans, simulate(old, mode="concurrent").spans
    moved = lambda spans: spans[spans.op == "transfer"].bytes.sum()  # noqa: E731 - payload bytes: the same
    assert moved(new_spans) == moved(old_spans)
    assert not new_spans.end_s.equals(old_spans.end_s)  # but the messages took other times: the model is in use


def test_messages_start_with_tcps_initial_window_and_interleave_from_the_first_flight():
    """Segments grow from 10 packets, doubling (slow start), so two 64 KiB messages sent at once finish within
    one flight of each other -- as the kernel interleaves them -- where fifo serves one whole, then the other."""
    t = Transport()
    packet = t.mss_bytes + t.header_bytes
    wire = t.wire_bytes(65536)
    env = simpy.Environment()
    net = Network(env, star(3), np.random.SeedSequence(0), SEG, t)
    assert net.segments(wire, packet) == [10 * packet, 20 * packet, wire - 30 * packet]
    assert net.segments(wire, None) == [SEG, wire - SEG]  # device traffic: full segments, as before
    fifo_net = Network(env, star(3), np.random.SeedSequence(0), SEG, Transport(sharing="fifo"))
    assert fifo_net.segments(wire, packet) == [SEG, wire - SEG]
    flows = [("h0", "h1", 65536), ("h0", "h2", 65536)]
    fair, _ = finish(star(3), t, flows)
    fifo, _ = finish(star(3), Transport(sharing="fifo"), flows)
    assert max(fair) - min(fair) < 20 * packet * 8 / RATE_BPS
    assert max(fifo) - min(fifo) == pytest.approx(wire * 8 / RATE_BPS, rel=1e-9)


def test_tcp_resends_the_packets_it_lost_and_keeps_them_flowing():
    """loss 0.05 on a single hop: each packet (and each resend) is lost with that probability, so resends are
    0.05 / 0.95 of the packets (binomial: +- 4 sigma); the link carries every resent packet's bytes, and the
    message takes its lossless time plus their serialisation and one round trip, not a segment per loss (BBR: a
    loss does not cut its window, tests/test_congestion.py)."""
    t, payload = Transport(congestion_control="bbr"), 4_000_000
    g = nx.Graph()
    g.add_edge("a", "b", params=LinkParams(bandwidth_bps=RATE_BPS, latency_s=1e-4, jitter_s=0, loss=0.05))
    (end,), net = finish(g, t, [("a", "b", payload)])
    net.settle()
    link = net.links["a", "b"]
    packets = -(-payload // t.mss_bytes)
    expected, sigma = packets * 0.05 / 0.95, (packets * 0.05) ** 0.5 / 0.95
    assert abs(link.retransmissions - expected) < 4 * sigma, link.retransmissions
    assert link.bytes_sent == t.wire_bytes(payload) + link.retransmissions * t.packet_bytes
    lossless = t.wire_bytes(payload) * 8 / RATE_BPS + 1e-4
    resent = link.retransmissions * t.packet_bytes * 8 / RATE_BPS
    assert lossless + resent < end <= lossless + resent + 2e-4 + 1e-9  # one round trip more, at most


def test_the_default_transport_beats_equal_shares_on_the_committed_netns_matrix(tmp_path):
    """bench/net_fidelity.py --rescore: the measured cells of the matrix committed after the share weights were
    fitted, simulated again; the default transport meets the goal in more of them than equal shares, and a bad
    --transport or file is one line."""
    import json
    import subprocess
    import sys

    from .conftest import ROOT

    matrix = ROOT / "docs" / "net_fidelity_2026-11-30_shares.json"

    def met(*transport: str) -> int:
        out = tmp_path / "rescored.json"
        cmd = [sys.executable, "bench/net_fidelity.py", "--rescore", str(matrix), "--json", str(out)]
        subprocess.run([*cmd, *(["--transport", *transport] if transport else [])], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        cells = json.loads(out.read_text())["cells"]
        assert len(cells) == 72
        return sum(abs(c["error_mean_pct"]) <= 5 and abs(c["error_p95_pct"]) <= 10 for c in cells)

    weighted, equal = met(), met("share_sigma=0")
    assert weighted >= equal + 8, (weighted, equal)
    for bad, named in ((["--transport", "share_sigma=-1"], "share_sigma"), (["--transport", "nope"], "nope"),
                       (["--transport", "windows=3"], "windows")):  # fmt: skip
        r = subprocess.run([sys.executable, "bench/net_fidelity.py", "--rescore", str(matrix), *bad], cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"--transport {named}" in r.stderr, r.stderr
    first = json.loads(matrix.read_text())["cells"][0]
    kernels = (("a string", "fast", "transport is not a mapping"), ("a truth value", {"host_rate_bps": True},
               "transport.host_rate_bps True"), ("a tiny rate", {"host_rate_bps": 1e-300}, "host_rate_bps 1e-300"),
               ("a negative rate", {"host_rate_bps": -1}, "host_rate_bps -1"))  # fmt: skip
    for name, cells, named, *transport in (("empty", [], "no cells"), ("crowd", [{**first, "flows": 10**9}], "flows"),
                                           ("none", [{**first, "measured_s": []}], "measured_s"),
                                           ("deep", [{**first, "burst_bytes": 2**31}], "burst_bytes"),
                                           ("starts", [{**first, "started_s": [0.0]}], "started_s"),
                                           ("late", [{**first, "started_s": [1e9] * len(first["measured_s"])}],
                                            "started_s"),
                                           *((what, [first], why, t) for what, t, why in kernels)):  # fmt: skip
        bad_file = tmp_path / f"{name}.json"
        bad_file.write_text(json.dumps({"cells": cells, **({"transport": transport[0]} if transport else {})}))
        r = subprocess.run([sys.executable, "bench/net_fidelity.py", "--rescore", str(bad_file)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and named in r.stderr, r.stderr


def test_a_rescored_cell_is_simulated_with_the_bucket_its_fabric_had(tmp_path):
    """bench/net_fidelity.py cells record their fabric's bucket, and --rescore simulates each with it: a 10 Mbit/s
    cell measured with two frames (2026-12-01 17:35 on) gets two, one without the field (measured before, when the
    fabric had one frame there) gets one; the head start of a frame more is its time on the wire, 1.2 ms."""
    import json
    import subprocess
    import sys

    from .conftest import ROOT

    matrix = json.loads((ROOT / "docs" / "net_fidelity_2026-12-01_2frame.json").read_text())
    cell = next(c for c in matrix["cells"] if c["rate_bps"] == 10e6 and c["flows"] == 1 and c["pattern"] == "fan-out"
                and c["size_bytes"] == 1_000_000)  # fmt: skip
    older = {k: v for k, v in cell.items() if k != "burst_bytes"}
    src, out = tmp_path / "cells.json", tmp_path / "rescored.json"
    src.write_text(json.dumps({"cells": [cell, older], "transport": matrix["transport"]}))
    cmd = [sys.executable, "bench/net_fidelity.py", "--rescore", str(src), "--json", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    now, before = json.loads(out.read_text())["cells"]
    from hw.netns import MTU_BYTES

    frame = MTU_BYTES + 14
    assert (now["burst_bytes"], before["burst_bytes"]) == (2 * frame, frame)
    assert before["sim_mean_s"] - now["sim_mean_s"] == pytest.approx(frame * 8 / 10e6, rel=1e-6)


def fan_star(hosts: int, burst_bytes: int) -> nx.Graph:
    g = nx.Graph()
    params = LinkParams(bandwidth_bps=RATE_BPS, latency_s=0.0, jitter_s=0, loss=0, burst_bytes=burst_bytes)
    for i in range(hosts):
        g.add_edge(f"h{i}", "sw", params=params)
    return g


def started(graph: nx.Graph, transport: Transport, flows: list[tuple[str, str, int, float]]) -> list[float]:
    """Completion times of TCP messages (src, dst, bytes, start time)."""
    return carried(graph, transport, flows)[0]


# burst 0: the lossless TCP path (``_carry_flow``); a one-packet bucket: the general one (``_carry``, ``_merged``)
@pytest.mark.parametrize("burst_bytes", [0, 1514])
def test_flows_converging_from_other_links_share_a_switch_egress_packet_by_packet(burst_bytes):
    """fan_in: packets. Two 64 KiB messages from two hosts into a third at the links' rate: the switch's egress
    interleaves their packets as they come, so both end when it has carried both (measured on netns: 110 ms and
    110 ms at 10 Mbit/s, 55 ms alone), where whole segments in turn let the first end ~15 packets sooner."""
    equal = dict(share_sigma=0)
    packets, segments = Transport(**equal), Transport(fan_in="segments", **equal)
    both = packets.wire_bytes(65536) * 8 / RATE_BPS * 2
    pair = [("h1", "h0", 65536, 0.0), ("h2", "h0", 65536, 0.0)]
    a, b = started(fan_star(3, burst_bytes), packets, pair)
    assert a == b == pytest.approx(both, rel=0.03)
    first, second = sorted(started(fan_star(3, burst_bytes), segments, pair))
    assert second == pytest.approx(b, rel=1e-9) and first < 0.9 * second


def test_a_segments_last_packet_waits_for_the_bytes_other_links_brought_before_it():
    """``merged_end`` by hand: E arrives over [0, 1] (served from 0 for 0.5); J from another link over [0.5, 1.5]
    brought half its bytes (0.25 of service) before E's last: E leaves at 0.75. A segment from E's own link, one
    asked after E's last byte and one wholly arrived before it count nothing, nothing and all of its service."""
    from sim.network import Arriving, LinkServer

    link, a, b, c = (LinkServer(name, RATE_BPS, 0.0, 0.0, 0.0) for name in ("egress", "a", "b", "c"))

    def arriving(asked: float, arrived: float, service: float, source: LinkServer, settles: bool = False):
        seg = Arriving(asked_s=asked, arrived_s=arrived, floor_s=arrived, start_s=asked, service_s=service,
                       end_s=arrived, base_s=asked, source=source, settles=settles, own=[-math.inf])  # fmt: skip
        return link.joined(seg)

    e = arriving(0.0, 1.0, 0.5, a, settles=True)
    arriving(0.5, 1.5, 0.5, b)
    assert link.merged_end(e) == pytest.approx(0.75, rel=1e-12)
    e = arriving(2.0, 3.0, 0.5, a, settles=True)
    arriving(2.2, 2.8, 0.5, a)  # its own link's: FIFO there, none of its bytes came first
    arriving(2.3, 2.9, 0.25, c)  # arrived whole before E's last byte
    arriving(3.0, 3.5, 0.5, b)  # its first packet came with E's last byte
    assert link.merged_end(e) == pytest.approx(2.0 + 0.5 + 0.25, rel=1e-12)
    assert link.arrivals is not None and link.head == len(link.arrivals)  # all settled: none kept for later ones


@pytest.mark.parametrize("burst_bytes", [0, 1514])
def test_a_wait_is_counted_once_whether_the_fifo_or_the_merge_imposed_it(burst_bytes):
    """Two 1 MB flows fanned in: each ends ~one message time later than alone, and each reports that as its
    queue wait (end - start - wait is the idle path's time), as under fan_in: segments; counting the merge's
    delay on top of the FIFO wait it also shows would report 1.5x."""
    flows = [("h1", "h0", 1_000_000, 0.0), ("h2", "h0", 1_000_000, 0.0)]

    for fan_in in ("packets", "segments"):
        t = Transport(share_sigma=0, fan_in=fan_in)
        ends, waits, _ = carried(fan_star(3, burst_bytes), t, flows)
        (alone,) = started(fan_star(3, burst_bytes), t, flows[:1])
        for end, wait in zip(ends, waits, strict=True):
            assert wait == pytest.approx(end - alone, rel=0.03), (fan_in, ends, waits, alone)


def test_flows_merging_at_a_middle_hop_are_served_segment_by_segment():
    """The merge is settled on a route's last link only: two flows from one gateway's hosts meet on its uplink (a
    middle hop) and are served as under fan_in: segments, while flows from two gateways meet on the server's link
    and end together (docs/network-validation.md: the shipped layouts are stars)."""
    g = nx.Graph()
    for a, b in (("d1", "gw1"), ("d3", "gw1"), ("d2", "gw2"), ("gw1", "core"), ("gw2", "core"), ("core", "srv")):
        g.add_edge(a, b, params=LinkParams(bandwidth_bps=RATE_BPS, latency_s=0.0, jitter_s=0, loss=0))
    packets, segments = Transport(share_sigma=0), Transport(share_sigma=0, fan_in="segments")
    same_gw = [("d1", "srv", 65536, 0.0), ("d3", "srv", 65536, 0.0)]
    assert started(g, packets, same_gw) == started(g, segments, same_gw)
    a, b = started(g, packets, [("d1", "srv", 65536, 0.0), ("d2", "srv", 65536, 0.0)])
    assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("burst_bytes, jitter_s", [(0, 0.0), (1514, 0.0), (0, 5e-4), (1514, 5e-4)])
def test_fan_in_changes_only_flows_that_meet_from_other_links(burst_bytes, jitter_s):
    """One message alone, two from one host (fan-out) and two on the same route (one input link: FIFO there
    already orders their packets) end at the very same instants either way; with jitter, within a tenth of a
    percent (a message's segments draw their jitter apart, so one may arrive before the one sent before it, which
    packet by packet merges as it arrived)."""
    g = fan_star(3, burst_bytes)
    for _, _, data in g.edges(data=True):
        data["params"] = data["params"].model_copy(update={"latency_s": 1e-3, "jitter_s": jitter_s})
    cases = [
        [("h1", "h0", 1_000_000, 0.0)],
        [("h0", "h1", 1_000_000, 0.0), ("h0", "h2", 65536, 0.0)],
        [("h1", "h0", 1_000_000, 0.0), ("h1", "h0", 300_000, 0.001)],
    ]
    for flows in cases:
        packets = started(g, Transport(), flows)
        assert packets == pytest.approx(started(g, Transport(fan_in="segments"), flows), rel=1e-3 if jitter_s else 0)


def test_fan_in_keeps_no_entries_once_its_segments_settled():
    """The egress's account of arriving segments is pruned as they settle: nothing is left after the run."""
    env = simpy.Environment()
    net = Network(env, fan_star(5, 0), np.random.SeedSequence(0), SEG, Transport())
    for i in range(1, 5):
        env.process(net.transfer_tcp(f"h{i}", "h0", 500_000))
    env.run()
    egress = net.links["sw", "h0"]
    assert egress.arrivals is not None and egress.head == len(egress.arrivals) < 64  # all settled, pruned


def _kernel_star(hosts: int, rate_bps: float, burst_bytes: int = 0) -> nx.Graph:
    """A star whose nodes say what they are (``kind``), as a scenario's graph does: hosts behind their kernel."""
    g = nx.Graph()
    g.add_node("sw", kind="switch")
    for i in range(hosts):
        g.add_node(f"h{i}", kind="host")
        params = LinkParams(bandwidth_bps=rate_bps, latency_s=0.0, jitter_s=0, loss=0, burst_bytes=burst_bytes)
        g.add_edge(f"h{i}", "sw", params=params)
    return g


def test_a_hosts_kernel_rate_holds_a_message_that_its_links_would_pass_at_once():
    """``Transport.host_rate_bps``: a 64 KiB message on an idle gigabit link whose bucket holds it leaves as fast as
    the sending kernel gives it (~0.18 ms at 3 Gbit/s), not at once; links, stats and routes of messages that are
    not TCP, or that start at a node that is not a host, are as without it."""
    rate, kernel = 1e9, 3e9
    g = _kernel_star(2, rate, burst_bytes=70_000)
    size = 65536
    wire = Transport().wire_bytes(size)
    free, _ = finish(g, Transport(), [("h0", "h1", size)])
    held, net = finish(g, Transport(host_rate_bps=kernel), [("h0", "h1", size)])
    assert free[0] < 0.2 * wire * 8 / kernel  # the bucket passes it: little more than a packet's time
    packet_s = Transport().packet_bytes * 8 / rate  # cut-through: the last packet still crosses each link
    assert wire * 8 / kernel <= held[0] <= wire * 8 / kernel + 2 * packet_s
    assert list(net.stacks) == ["h0"] and net.stacks["h0"].name not in {ls.name for ls in net.links.values()}
    assert net.tcp_route("sw", "h1") == net.route("sw", "h1")  # a switch has no kernel stage


def test_hosts_on_one_machine_share_its_kernel():
    """Two hosts sending at once: each behind its own kernel, both messages leave their kernels together; emulated on
    one machine (``deployment.machine``), one kernel sends both, one after the other."""
    kernel = 3e9
    g = _kernel_star(3, 40e9)  # links that limit nothing
    size = 1_000_000
    flows = [("h0", "h2", size), ("h1", "h2", size)]
    one_each, _ = finish(g, Transport(host_rate_bps=kernel, share_sigma=0), flows)
    shared, net = finish(
        g, Transport(host_rate_bps=kernel, share_sigma=0), flows, machine=frozenset({"h0", "h1", "h2"})
    )
    alone_s = Transport().wire_bytes(size) * 8 / kernel
    assert max(one_each) < 1.2 * alone_s  # in parallel
    assert max(shared) >= 2 * alone_s * 0.99  # in turn, through one kernel
    assert list(net.stacks) == [None] and net.stacks[None].name == "machine stack"  # None: the machine's kernel


@pytest.mark.parametrize("rate, ok", [(0, True), (1.0, True), (3e9, True), (0.5, False), (1e-320, False), (-1, False),
                                      (2e12, False)])  # fmt: skip
def test_the_kernels_rate_is_none_or_a_link_rate(rate, ok):
    """``host_rate_bps``: 0 (no limit) or a rate a link could have; a tiny one would make every TCP message take
    forever and the run end with no round."""
    from pydantic import ValidationError

    if ok:
        assert Transport(host_rate_bps=rate).host_rate_bps == rate
    else:
        with pytest.raises(ValidationError, match="host_rate_bps"):
            Transport(host_rate_bps=rate)


@pytest.mark.parametrize(("rate_bps", "cc", "one_weight"), [(10e6, "cubic", True), (10e6, "reno", True),
                                                           (10e6, "bbr", False), (100e6, "cubic", False)])  # fmt: skip
def test_a_senders_flows_share_one_weight_where_small_queues_serve_them_in_turn(rate_bps, cc, one_weight):
    """Four messages from one host at once: at 10 Mbit/s an unpaced sender's flows are served in turn by its link
    (TCP small queues, each flow's TSO packets at their two-packet floor), so the later ones take the first one's share
    weight (traced: four 1 MB CUBIC flows ended within 40 ms, docs/network-validation.md "Stop 91"); BBR paces each
    flow at its own rate, and at 100 Mbit/s a flow's TSO packets grow with its window: each draws its own."""
    g = nx.Graph()
    for i in range(5):
        g.add_edge(f"h{i}", "sw", params=LinkParams(bandwidth_bps=rate_bps, latency_s=0.0015, jitter_s=0, loss=0))
    env = simpy.Environment()
    net = Network(env, g, np.random.SeedSequence(0), SEG, Transport(congestion_control=cc))
    drawn = []
    draw = net.share_weight

    def recorded(*args):
        drawn.append(draw(*args))
        return drawn[-1]

    net.share_weight = recorded
    for i in range(1, 5):
        env.process(net.transfer_tcp("h0", f"h{i}", SEG))
    env.run()
    assert len(drawn) == 4 and (len(set(drawn)) == 1) == one_weight, drawn
    assert all(link.tcp_flows == 0 for link in net.links.values())  # every message counted out at its end
