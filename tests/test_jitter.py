"""A link's jitter is drawn per packet and in order (sim/network.py ``Network._jitter_s``, ``in_order_mean_s``): a
packet never overtakes the one before it, as a wire's queue and the twin's delay hops (hw/delayline.py) deliver."""

import collections
import math

import networkx as nx
import numpy as np
import pytest
import simpy

from hw import delayline
from sim import network
from sim.network import Network, in_order_mean_s
from sim.scenario import LinkParams, Transport

RATE_BPS, LATENCY_S, JITTER_S = 100e6, 3e-3, 1e-3
PACKET_S = Transport().packet_bytes * 8 / RATE_BPS  # 0.12 ms at 100 Mbit/s


def in_order_monte_carlo(jitter_s: float, gap_s: float, packets: int = 200_000) -> float:
    """D = max(J, D' - gap) along a long stream, after a warm-up: its mean."""
    draws = np.random.default_rng(7).exponential(jitter_s, packets)
    d, total = 0.0, 0.0
    for i, j in enumerate(draws):
        d = max(j, d - gap_s)
        if i >= packets // 10:
            total += d
    return total / (packets - packets // 10)


@pytest.mark.parametrize("gap_s", [PACKET_S, 2 * PACKET_S, 10 * PACKET_S])
def test_a_stream_in_order_is_delayed_by_the_stationary_mean_of_its_running_max(gap_s):
    assert in_order_mean_s(JITTER_S, gap_s) == pytest.approx(in_order_monte_carlo(JITTER_S, gap_s), rel=0.02)
    assert in_order_mean_s(JITTER_S, gap_s) > JITTER_S  # more than the jitter's mean: each waits for the last


def test_sparse_packets_keep_the_jitters_mean_and_dense_ones_take_the_gumbel_limit():
    assert in_order_mean_s(0.0, PACKET_S) == 0.0
    assert in_order_mean_s(JITTER_S, 1.0) == pytest.approx(JITTER_S, rel=1e-4)  # a second apart: nothing to wait for
    dense = JITTER_S / (network.IN_ORDER_DENSE * 1.01)  # just past the switch to the limit
    limit = JITTER_S * (math.log(JITTER_S / dense) + network.EULER_GAMMA)
    assert in_order_mean_s(JITTER_S, dense) == pytest.approx(limit)
    product = in_order_mean_s.__wrapped__  # the numeric product, uncached, at the same gap
    old, network.IN_ORDER_DENSE = network.IN_ORDER_DENSE, math.inf
    try:
        assert product(JITTER_S, dense) == pytest.approx(limit, rel=0.015)
    finally:
        network.IN_ORDER_DENSE = old


def one_link(jitter_s: float) -> nx.Graph:
    g = nx.Graph()
    g.add_edge("a", "b", params=LinkParams(bandwidth_bps=RATE_BPS, latency_s=LATENCY_S, jitter_s=jitter_s, loss=0))
    return g


def beyond_latency_s(tcp: bool, nbytes: int, seeds: int = 2000) -> list[float]:
    """A message's time over the jittered link beyond its wire time and latency, one per seed: as TCP sends it (a warm
    window) or as a device's frame, sent whole."""
    t = Transport(initial_window_packets=0)
    out = []
    for seed in range(seeds):
        env = simpy.Environment()
        net = Network(env, one_link(JITTER_S), np.random.SeedSequence(seed), 65536, t)
        env.process(net.transfer_tcp("a", "b", nbytes) if tcp else net.transfer("a", "b", nbytes))
        env.run()
        wire = t.wire_bytes(nbytes) if tcp else nbytes
        out.append(env.now - wire * 8 / RATE_BPS - LATENCY_S)
    return out


def test_a_tcp_segment_arrives_with_its_last_packets_in_order_delay_and_a_frame_with_one_draw():
    """64 KiB in one flight (a warm window) over a jittered link: beyond its wire time and latency it waits, on
    average, the most of its 46 packets' draws less the time of the packets after each (measured over 2,000 seeds
    against the same computed directly); a device's frame sent whole waits one exponential draw."""
    t = Transport()
    n = -(-t.wire_bytes(65536) // t.packet_bytes)
    extra = beyond_latency_s(True, 65536)
    behind = PACKET_S * np.arange(n - 1, -1, -1)
    direct = np.random.default_rng(1).exponential(JITTER_S, (20000, n)) - behind
    assert np.mean(extra) == pytest.approx(direct.max(axis=1).mean(), rel=0.05)
    assert np.mean(extra) > 2 * JITTER_S
    assert np.mean(beyond_latency_s(False, 100)) == pytest.approx(JITTER_S, rel=0.08)


def test_acknowledgements_and_the_steady_window_count_the_round_trip_with_in_order_jitter():
    env = simpy.Environment()
    net = Network(env, one_link(JITTER_S), np.random.SeedSequence(0), 65536, Transport())
    ack_gap_s = 2 * PACKET_S
    assert net.ack_delay_s("a", "b") == pytest.approx(LATENCY_S + in_order_mean_s(JITTER_S, ack_gap_s))
    calm = Network(simpy.Environment(), one_link(0.0), np.random.SeedSequence(0), 65536, Transport())
    links = net.tcp_route("a", "b")
    assert net.window(links) > calm.window(calm.tcp_route("a", "b"))  # a longer round trip: a larger window


def test_a_delay_hop_releases_packets_early_by_its_usual_lateness_at_most_a_fifth_of_a_millisecond():
    """hw/delayline.py releases a packet early by the lateness nearly every recent wake-up had, so a hold is not the
    delay plus the usual wake-up; capped, so that lateness learned on busy cores (ms) does not make a link faster than
    its latency once the cores are free again (a 5 ms hop measured 2.7 ms in a CI run)."""
    usual = collections.deque([0.1e-3 + i * 1e-6 for i in range(64)], maxlen=64)
    assert delayline.early_s(usual) == pytest.approx(0.1e-3 + 6e-6)
    busy = collections.deque([3e-3] * 64, maxlen=64)
    assert delayline.early_s(busy) == delayline.LATE_MAX_S == 0.2e-3


def test_a_delay_hops_lateness_report_reads_back_as_the_summarys_and_a_quiet_direction_as_zeros():
    """hw/delayline.py counts how late it read and wrote the packets it delayed; the fabric turns its answer into a
    summary's ``HopLateness`` (hw/netns.py ``hop_lateness``): the same quantiles, and zeros where it delayed none."""
    from hw.netns import hop_lateness

    late = delayline.Lateness()
    for i in range(100):
        delayline.keep(late.read, i * 1e-6)
        delayline.keep(late.written, (i - 10) * 1e-5)
    late.packets = 100
    got = hop_lateness(late.report())
    assert got.packets == 100 and got.read_p95_s == pytest.approx(94e-6)
    assert got.written_p50_s == pytest.approx(40e-5) and got.written_max_s == pytest.approx(89e-5)
    assert got.written_mean_s == pytest.approx(39.5e-5) and got.written_p95_s == pytest.approx(84e-5)
    quiet = hop_lateness(delayline.Lateness().report())
    assert quiet.packets == 0 and quiet.written_p95_s == quiet.read_p95_s == 0.0
