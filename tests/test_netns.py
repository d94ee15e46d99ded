"""The netns backend (hw/netns.py, --backend netns): real namespaces, veth pairs and tbf on this machine.

Needs root (our machines and CI run as root); skipped with the reason elsewhere. Timing is only bounded from
below here (a shaped link cannot be faster than its rate; a busy machine only makes it slower): how closely
the simulator matches real TCP is measured in bench/net_fidelity.py."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from hw import netns, tcp
from hw.local import run_local
from hw.node import common
from pqtwin.report import what_numbers_are
from sim import contract
from sim.errors import UserError
from sim.scenario import LinkParams, load_scenario

from .conftest import ROOT
from .test_front_door import _alive
from .test_twin import SMALL

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
PAPER = ROOT / "scenarios" / "paper-3node.yaml"


def pair(rate_bps: float, loss: float = 0.0, latency_s: float = 0.0, jitter_s: float = 0.0) -> nx.Graph:
    g = nx.Graph()
    g.add_node("sw", kind="switch")
    for h in ("a", "b"):
        g.add_node(h, kind="host")
        g.add_edge(h, "sw", params=LinkParams(bandwidth_bps=rate_bps, latency_s=latency_s, jitter_s=jitter_s,
                                              loss=loss))  # fmt: skip
    return g


def udp_delivered(fabric: netns.Fabric, datagrams: int) -> int:
    """Datagrams of 100 bytes sent from host a to host b (paced below the link's rate), how many arrived."""
    with netns.inside(fabric.namespace("b")):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((fabric.address("b"), 0))
    rx.settimeout(1.0)
    with netns.inside(fabric.namespace("a")):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = [0]

    def receive() -> None:  # only the payload counts: warm-up hellos still queued behind ARP arrive late
        with contextlib.suppress(TimeoutError):
            while True:
                got[0] += rx.recv(256) != b"hello"

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # first the neighbours resolve and a hello gets through the loss
        tx.sendto(b"hello", rx.getsockname())
        with contextlib.suppress(TimeoutError):
            rx.settimeout(0.05)
            if rx.recv(256) == b"hello":
                break
    rx.settimeout(1.0)
    reader = threading.Thread(target=receive)
    reader.start()
    for i in range(datagrams):
        tx.sendto(b"x" * 100, rx.getsockname())
        if i % 50 == 49:
            time.sleep(0.002)  # 50 datagrams (~7 kB) per 2 ms: under the 100 Mbit/s rate and tbf's queue
    reader.join()
    tx.close()
    rx.close()
    return got[0]


def namespaces_of(pids: dict[str, int]) -> set[str]:
    """Our namespaces that these processes are in (other tests may build fabrics at the same time)."""
    inodes = set()
    for pid in pids.values():
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
    return {n for n in netns.ours() if os.stat(netns.NETNS_DIR / n).st_ino in inodes}


def test_a_shaped_link_carries_real_tcp_no_faster_than_its_rate_and_nothing_is_left():
    size = 1_000_000
    with netns.Fabric(pair(10e6)) as fabric:
        names = set(fabric.names.values())
        assert names <= set(netns.ours())
        with netns.inside(fabric.namespace("b")):
            ls = socket.create_server((fabric.address("b"), 0))
        port = ls.getsockname()[1]
        got = []

        def receive() -> None:
            c, _ = ls.accept()
            while chunk := c.recv(1 << 16):
                got.append(len(chunk))
            c.close()

        t = threading.Thread(target=receive)
        t.start()
        with netns.inside(fabric.namespace("a")):
            s = socket.create_connection((fabric.address("b"), port))
        t0 = time.monotonic()
        s.sendall(b"\0" * size)
        s.close()
        t.join(30)
        took_s = time.monotonic() - t0
        ls.close()
        assert sum(got) == size
        assert took_s >= size * 8 / 10e6 * 0.95  # tbf shapes it (the bucket's depth lets a little through early)
        with pytest.raises(OSError):  # the root namespace has no route into the fabric
            socket.create_connection((fabric.address("b"), port), timeout=1)
    assert not names & set(netns.ours())


def one_way_delays(fabric: netns.Fabric, datagrams: int, gap_s: float) -> list[tuple[int, float]]:
    """Datagrams from host a to host b, ``gap_s`` apart, each carrying its number and when it left (one clock: the
    same machine); what arrived, as (number, seconds it took), in the order it arrived."""
    with netns.inside(fabric.namespace("b")):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((fabric.address("b"), 0))
    with netns.inside(fabric.namespace("a")):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.settimeout(0.05)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the neighbours resolve first
        tx.sendto(struct.pack("!qd", -1, 0.0), rx.getsockname())
        with contextlib.suppress(TimeoutError):
            if struct.unpack("!qd", rx.recv(64))[0] == -1:
                break
    rx.settimeout(1.0)
    got: list[tuple[int, float]] = []

    def receive() -> None:
        with contextlib.suppress(TimeoutError):
            while len(got) < datagrams:
                number, sent = struct.unpack("!qd", rx.recv(64))
                if number >= 0:
                    got.append((number, time.perf_counter() - sent))

    reader = threading.Thread(target=receive)
    reader.start()
    for i in range(datagrams):
        tx.sendto(struct.pack("!qd", i, time.perf_counter()), rx.getsockname())
        time.sleep(gap_s)
    reader.join()
    tx.close()
    rx.close()
    return got


def test_a_links_latency_and_jitter_delay_each_packet_in_order_and_the_probe_sees_the_fabric_without_them():
    """This kernel has no netem: a link of 2 ms and 1 ms of jitter runs through a delay hop in user space
    (hw/delayline.py). Each datagram from a to b crosses two such links: it takes their 4 ms plus two exponential
    jitters plus the fabric's own hop latency, never (much) less than the 4 ms, and none overtakes another;
    the probe measures the fabric with the hops passing packets on at once (its own latency); a TCP stream still
    gets the link's rate; nothing is left after."""
    with netns.Fabric(pair(20e6, latency_s=2e-3, jitter_s=1e-3), seed=7) as fabric:
        assert len(fabric.delay_lines) == 2 and all(line.poll() is None for line in fabric.delay_lines)
        built = set(netns.ours(f"{netns.PREFIX}{fabric.tag}-"))
        assert len(built) == 5  # two hosts, the switch, a hop for each link
        got = one_way_delays(fabric, 400, 2e-3)
        took = [s for _, s in got]
        assert [n for n, _ in got] == sorted(n for n, _ in got) and len(got) >= 396  # in order; the odd one lost
        assert min(took) >= 4e-3 - 0.6e-3  # a hop may release ~its mean wake-up lateness early, no more
        # 4 ms and two exponentials of mean 1 ms (their sum's median 1.7 ms) and the fabric's own; a median, as
        # beside the suite's two workers a few late wake-ups lifted the mean from ~6.5 to 8.9 ms (CI, 2026-12-07)
        assert 5.0e-3 <= statistics.median(took) <= 8.5e-3, statistics.median(took)
        assert statistics.stdev(took) >= 0.6e-3  # jitter (two exponentials of mean 1 ms, thinned by the order)
        late = fabric.lateness()  # each hop counted the datagrams it delayed, a to b, and how late it passed them on
        assert len(late) == 2 and all(len(ways) == 2 for ways in late.values()), late
        assert all(max(w.packets for w in ways) >= len(got) for ways in late.values()), late
        busiest = [max(ways, key=lambda w: w.packets) for ways in late.values()]
        # on time within a wake-up's usual lateness; read as the kernel stamped them (not counted against the hold)
        assert all(-0.3e-3 <= w.written_p50_s <= 1e-3 and 0 <= w.read_p95_s < 5e-3 for w in busiest), busiest
        p = netns.probe(fabric, "a", "b")
        assert p.latency_s < 0.5e-3 and 0.9 * 20e6 <= p.throughput_bps <= 1.1 * 20e6, p
        assert all(line.poll() is None for line in fabric.delay_lines)  # delaying again after the probe
        # what passed while the hops did not delay (the probe: 200 pings and ~600 packets of streams each way) is
        # not counted; a connection's last few packets may pass once they delay again
        after = fabric.lateness()
        grown = [w1.packets - w0.packets for k in late for w0, w1 in zip(late[k], after[k], strict=True)]
        assert all(0 <= g < 20 for g in grown), grown
        lines = list(fabric.delay_lines)
    assert not built & set(netns.ours()) and all(line.poll() is not None for line in lines)


def test_a_lossy_link_drops_each_frame_with_its_probability_in_each_direction():
    """loss: 0.1 on both links of a -> switch -> b: a datagram crosses two lossy link directions, so it
    arrives with probability 0.9^2 = 0.81 (binomial: 4,000 sent, 0.81 +- 4 sigma); without loss, all arrive."""
    n = 4000
    with netns.Fabric(pair(100e6, loss=0.1)) as lossy:
        delivered = udp_delivered(lossy, n) / n
    sigma = (0.81 * 0.19 / n) ** 0.5
    assert abs(delivered - 0.81) < 4 * sigma, delivered
    with netns.Fabric(pair(100e6)) as clean:
        assert udp_delivered(clean, 1000) == 1000


def resends_per_message(fabric: netns.Fabric, messages: int, size: int) -> list[int]:
    """Segments a sent again for each of ``messages`` messages of ``size`` bytes to b, each the first on a connection
    of its own; the connections are opened side by side first (a lost SYN waits a second: in turn, 30 at 3 % loss took
    ~10 s), and a message's count leaves out its connection's opening."""
    with netns.inside(fabric.namespace("b")):
        ls = socket.create_server((fabric.address("b"), 0), backlog=messages)

    def dial(_: int) -> socket.socket:
        with netns.inside(fabric.namespace("a")):
            return socket.create_connection(ls.getsockname(), timeout=30)

    def total_retrans(sock: socket.socket) -> int:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        return int.from_bytes(info[100:104], sys.byteorder)  # tcpi_total_retrans

    with ls, concurrent.futures.ThreadPoolExecutor(8) as pool:
        senders = list(pool.map(dial, range(messages)))
        accepted = dict(ls.accept()[::-1] for _ in range(messages))  # by the sender's address
    resent = []
    for c in senders:
        with c, accepted[c.getsockname()] as s:
            before = total_retrans(c)
            c.sendall(b"x" * size)
            got = 0
            while got < size:
                got += len(s.recv(1 << 16))
            resent.append(total_retrans(c) - before)
    return resent


def test_a_lossy_gigabit_link_loses_frames_not_whole_gso_packets():
    """At a gigabit the bucket passes GSO packets whole; on a lossy link each must still be lost frame by frame,
    as on a wire. A 64 KiB message is ~46 frames on each of two lossy directions: at 3 % per frame 94 % of
    messages lose one (0.97^92 = 6 % cross whole); lost as GSO packets of up to 45 frames, ~80 % crossed whole
    and the others resent 5-16 segments at once (the rule before, 2026-12-04)."""
    with netns.Fabric(pair(1e9, loss=0.03)) as fabric:
        resent = resends_per_message(fabric, 30, 65536)
    whole = sum(r == 0 for r in resent)
    assert whole <= 9, resent  # binomial(30, 0.06): 9 or more whole is ~1e-4; GSO-whole loss gives ~24


def test_a_framed_gigabit_link_keeps_a_flows_packets_in_order():
    """A framed link (lossy, or ``frames``) steers a flow to one CPU at each end (``hw.netns._steer``): at a gigabit
    tbf hands frames on from the CPU that dequeues them (the sender's, or its timer's), and without steering 1 MB
    messages met 1-4 out-of-order arrivals each, which TCP took for losses (at 1 % loss 18.8 segments resent a message
    for 14.2 frames lost). A lossless GSO link is left unsteered (a hand-over between CPUs at every hop)."""
    with netns.Fabric(pair(1e9)) as plain:
        assert rps_mask(plain.namespace("b")) == 0
    with netns.Fabric(pair(1e9), frames=True) as fabric:
        assert fabric.in_order
        b = fabric.namespace("b")
        assert rps_mask(b) == (1 << (os.cpu_count() or 1)) - 1
        with netns.inside(b):
            ls = socket.create_server((fabric.address("b"), 0))
        with netns.inside(fabric.namespace("a")):
            c = socket.create_connection(ls.getsockname(), timeout=30)
        s, _ = ls.accept()
        ls.close()
        before = out_of_order(b)
        with c, s:
            buf = bytearray(1 << 20)
            for _ in range(60):  # one 1 MB message at a time, read as it comes
                sender, got = threading.Thread(target=c.sendall, args=(b"x" * 1_000_000,)), 0
                sender.start()
                while got < 1_000_000:
                    got += s.recv_into(buf)
                sender.join()
        after = out_of_order(b)
        assert after == before, f"{after - before} segments out of order"  # none came before one sent earlier


def rps_mask(ns: str) -> int:
    """The CPUs the namespace's (first) veth end steers its flows to (``rps_cpus``; 0: not steered)."""
    dev = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "type", "veth"], capture_output=True, text=True,
                         check=True).stdout.split(": ")[1].split("@")[0]  # fmt: skip
    mask = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(mask.strip().replace(",", ""), 16)


def out_of_order(ns: str) -> int:
    """Segments the namespace's TCP queued out of order so far (``TcpExtTCPOFOQueue``)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "nstat", "-az", "TcpExtTCPOFOQueue"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return sum(int(p[1]) for p in (line.split() for line in out.splitlines()) if p and p[0] == "TcpExtTCPOFOQueue")


def test_address_resolution_crosses_even_a_link_that_loses_nearly_everything():
    """ARP is not lost (the model has none): at 99 % loss per link direction (more than a scenario may ask, so
    set on the fabric's veths here) a's kernel still learns b's address. Dropped like data, three requests
    would all fail and the neighbour be given up ("No route to host")."""
    from hw.nftloss import drop_at_random

    with netns.Fabric(pair(100e6)) as fabric:
        for ns in fabric.names.values():
            links = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "type", "veth"],
                                   capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
            for line in links:
                drop_at_random(ns, line.split(": ")[1].split("@")[0], 0.99)
        with netns.inside(fabric.namespace("a")):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        deadline = time.monotonic() + 5
        state = ""
        while "REACHABLE" not in state and time.monotonic() < deadline:
            tx.sendto(b"hello", (fabric.address("b"), 9))  # queued behind the neighbour's resolution
            time.sleep(0.05)
            state = subprocess.run(["ip", "-n", fabric.namespace("a"), "neigh", "show", fabric.address("b")],
                                   capture_output=True, text=True, check=True).stdout  # fmt: skip
        tx.close()
    assert "REACHABLE" in state, state


def test_the_loss_threshold_is_the_probability_of_32_random_bits():
    from hw.nftloss import threshold

    assert threshold(0.0) == 0 and threshold(0.25) == 2**30 and threshold(0.5) == 2**31
    with pytest.raises(ValueError, match="loss probability"):
        threshold(1.0)


def test_loops_are_refused_before_anything_is_built():
    g = pair(10e6)
    g.add_edge("a", "b", params=LinkParams(bandwidth_bps=1e6, latency_s=0, jitter_s=0, loss=0))
    fabric = netns.Fabric(g)
    with pytest.raises(netns.NetnsUnavailable, match="tree"):
        fabric.build()
    assert not fabric.names and not netns.ours(f"{netns.PREFIX}{fabric.tag}-")


def test_the_reaper_removes_the_fabric_of_a_killed_process(tmp_path):
    code = ("import time\nfrom hw.netns import Fabric\nfrom tests.test_netns import pair\n"
            "f = Fabric(pair(1e6))\nf.build()\nprint(*f.names.values(), flush=True)\ntime.sleep(600)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    names = proc.stdout.readline().split() if proc.stdout else []
    assert len(names) == 3 and set(names) <= set(netns.ours())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while set(names) & set(netns.ours()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(names) & set(netns.ours()), "namespaces left by a killed orchestrator"


def test_paper_3node_runs_on_namespaces_each_host_its_own(tmp_path, monkeypatch):
    """The paper's layout on three namespaces and a switch: every pod in its host's namespace (not this
    process's), devices emulated on their gateway hosts, the run completes and leaves nothing behind; its
    fabric is measured before and after the run (the summary has the mean). pi-3 is on Wi-Fi here: its link's
    3 ms and jitter are applied (hw/delayline.py), the summary says so and ``--fabric-of`` simulates it."""
    import hw.local

    probes: list[Any] = []

    def probe(*args: Any) -> Any:
        probes.append(netns.probe_clean(*args))
        return probes[-1]

    monkeypatch.setattr(hw.local, "probe_clean", probe)
    s = load_scenario(PAPER, [*SMALL, "workload.devices.ecg-a.count=2", "workload.devices.ecg-b.count=1",
                              "deployment.network.links.2.preset=wifi-5ghz"])  # fmt: skip
    seen: dict[str, str] = {}
    built: set[str] = set()
    hops: dict[str, str] = {}  # the fabric's delay hops in the run, and the processes in each

    def look(round_: int) -> None:
        if round_ >= 1 and not seen:
            pids = json.loads((tmp_path / "pids.json").read_text())
            for name, pid in pids.items():
                seen[name] = os.readlink(f"/proc/{pid}/ns/net")
            built.update(namespaces_of(pids))
            fabric_prefix = next(iter(built)).rsplit("-", 1)[0] + "-"
            for ns in netns.ours(fabric_prefix + "d"):
                hops[ns.removeprefix(fabric_prefix)] = subprocess.run(["ip", "netns", "pids", ns], text=True,
                                                                      capture_output=True).stdout.strip()  # fmt: skip

    summary = run_local(s, tmp_path, "sequential", rounds=2, seed=3, progress=look, backend="netns")
    assert summary.state == "completed" and summary.rounds_completed == 2, summary.reason
    assert summary.backend == "netns" and not any("steering" in w for w in summary.warnings), summary.warnings
    assert "netns backend" in what_numbers_are(summary)  # reports say where the numbers come from
    mine = os.readlink("/proc/self/ns/net")
    assert set(seen) == {"aggregator", "client-1", "client-2", "devices-pi-2", "devices-pi-3"}
    assert mine not in seen.values()
    assert seen["client-1"] == seen["devices-pi-2"] and seen["client-2"] == seen["devices-pi-3"]
    assert len({seen["aggregator"], seen["client-1"], seen["client-2"]}) == 3
    status = json.loads((tmp_path / "status.json").read_text())
    assert set(status["exit_codes"].values()) == {0}, status["exit_codes"]
    assert len(built) == 3 and not built & set(netns.ours()), "namespaces left after the run"
    fabric = summary.fabric  # measured between the aggregator's host and a client's before the nodes started
    assert fabric is not None and fabric.hosts == ("pi-1", "pi-2") and fabric.hops == 2
    assert len(probes) == 2 and fabric.throughput_bps == pytest.approx(sum(p.throughput_bps for p in probes) / 2)
    assert fabric.describe() in what_numbers_are(summary)  # the report says what links the numbers came over
    assert 0 < fabric.latency_s < 5e-3 and 0 < fabric.throughput_bps <= 1.2 * fabric.rate_bps
    # the machine's kernel as a stage of these links (hw/sendcpu.py), which ``sim --fabric-of`` puts before them
    assert fabric.kernel_rate_bps > 0 and "per second of the machine's CPU" in fabric.describe()
    assert f"deployment.network.transport.host_rate_bps={fabric.kernel_rate_bps:.6g}" in summary.fabric_overrides()
    # the Wi-Fi link: delayed in user space, recorded, simulated on top of the fabric's own latency
    assert [(d.link, d.latency_s, d.jitter_s) for d in fabric.delays] == [(2, 0.003, 0.001)]
    assert f"deployment.network.links.2.latency_s={fabric.latency_s + 0.003:.6g}" in summary.fabric_overrides()
    assert list(hops) == ["d2"] and hops["d2"], hops  # the Wi-Fi link's hop, its forwarder running through the run
    spans = contract.read_spans(tmp_path / "spans.parquet")
    models = spans[(spans["round"] > 0) & (spans.phase == "distribute") & (spans.op == "transfer")]
    over_wifi_s = models["bytes"].max() * 8 / 77e6  # the bytes' time at Wi-Fi's 77 Mbit/s (the delay: tested above)
    took = (models.end_s - models.start_s).groupby(models["round"])  # a round: one model to each client
    assert (took.max() >= over_wifi_s).all() and (took.min() < over_wifi_s).all(), (took.min(), took.max())


def test_the_probe_measures_a_fabric_at_its_rate_where_the_cpu_keeps_up():
    """At 100 Mbit/s the kernel keeps up: one stream's wire throughput is the link's rate; the simulator is then
    given the fabric's latency only. A throughput below the rate (a CPU-bound gigabit here) is given as the
    links' bandwidth. The best of up to three probes: a rate is a capacity, and a busy moment of the other core (a
    test beside it, CI 2026-12-04: 67 Mbit/s, "CPU-bound") can only lower one stream's throughput."""
    with netns.Fabric(pair(100e6), congestion_control="reno") as fabric:  # the twin's: the scenario's, not the default
        probes = [netns.probe(fabric, "a", "b")]
        while len(probes) < 3 and probes[-1].throughput_bps < 0.9 * 100e6:
            probes.append(netns.probe(fabric, "a", "b"))
    p = max(probes, key=lambda x: x.throughput_bps)
    assert p.hosts == ("a", "b") and p.hops == 2 and p.rate_bps == 100e6
    assert 0.9 * 100e6 < p.throughput_bps < 1.1 * 100e6, p.describe()
    assert 0 < p.latency_s < 1e-3
    assert p.congestion_control == "reno" and "TCP reno" in p.describe()  # as its connection ran it
    assert "deployment.network.transport.congestion_control=reno" in p.overrides()
    at_rate = p.model_copy(update={"throughput_bps": 100e6})
    assert not any("bandwidth_bps" in o for o in at_rate.overrides())
    assert "deployment.network.links.*.jitter_s=0" in at_rate.overrides()
    slow = p.model_copy(update={"throughput_bps": 60e6})
    assert "deployment.network.links.*.bandwidth_bps=6e+07" in slow.overrides()
    assert "CPU-bound" in slow.describe() and "CPU-bound" not in at_rate.describe()
    assert p.burst_bytes == 2 * (netns.MTU_BYTES + 14)  # its links' bucket, for the simulator
    assert f"deployment.network.links.*.burst_bytes={p.burst_bytes}" in p.overrides()


def best_probe(fabric: netns.Fabric, bar_bps: float, probes: int = 6) -> Any:
    """The fastest of up to ``probes`` probes from a to b, stopping at the first above ``bar_bps``: a busy machine's
    late timers slow a probe (98.2 % of 10 Mbit/s once in CI, beside the other test worker), never speed one up."""
    best = netns.probe(fabric, "a", "b")
    for _ in range(probes - 1):
        if best.throughput_bps > bar_bps:
            break
        best = max(best, netns.probe(fabric, "a", "b"), key=lambda x: x.throughput_bps)
    return best


def test_a_lossy_fabric_on_a_kernel_that_cannot_steer_flows_is_said_in_the_runs_warnings(monkeypatch):
    """Where the kernel has no receive packet steering, a lossy link may reorder frames (``hw.netns._steer``): the
    fabric says so (``in_order``) and the run's summary carries it as a warning (a lossless one is steered by no
    kernel: nothing to say)."""
    import hw.local

    s = load_scenario(PAPER, [*SMALL, "deployment.network.links.1.loss=0.001"])
    monkeypatch.setattr(netns, "_steer", lambda ns, dev: False)
    with netns.Fabric(s.graph()) as lossy, netns.Fabric(pair(1e9)) as clean:
        assert not lossy.in_order and clean.in_order
        said = hw.local.fabric_warnings(hw.local.NetnsAddressing(s, 3, lossy))
        assert len(said) == 1 and "no receive packet steering" in said[0], said
        assert hw.local.fabric_warnings(hw.local.NetnsAddressing(s, 3, clean)) == []
    assert hw.local.fabric_warnings(hw.local.LocalAddressing(s, 3)) == []


def test_a_lossy_fabric_is_probed_without_its_loss_on_links_framed_alike(monkeypatch):
    """The twin measures its fabric for ``--fabric-of``; on its lossy links themselves one stream read 396 of 940
    Mbit/s at 10 % loss, "CPU-bound", which the simulator would have taken as the links' rate on top of the loss.
    ``probe_clean`` probes a copy whose links drop nothing (framed as the lossy ones: ``gso_max_segs`` 1), built
    and removed around the probe; on a lossless fabric, the fabric itself."""
    probed: list[netns.Fabric] = []
    spaces: list[str] = []  # the probed fabric's namespaces, while it stands
    real = netns.probe

    def spy(fabric: netns.Fabric, a: str, b: str) -> Any:
        probed.append(fabric)
        spaces[:] = fabric.names.values()
        return real(fabric, a, b)

    monkeypatch.setattr(netns, "probe", spy)
    with netns.Fabric(pair(100e6, loss=0.1)) as lossy:
        p = netns.probe_clean(lossy, "a", "b")
        copy = probed[-1]
        assert copy is not lossy and not copy.drop and not copy.lossy and lossy.lossy and copy.in_order
        assert spaces and not set(spaces) & set(netns.ours())  # removed after the probe
        gso = netns._run("ip", "-n", lossy.namespace("a"), "-d", "link", "show")
        assert "gso_max_segs 1 " in gso  # the lossy link's veth carries frames
    assert p.throughput_bps > 0.9 * 100e6, p.describe()  # at 10 % loss one stream gets far less
    with netns.Fabric(pair(100e6)) as clean:
        netns.probe_clean(clean, "a", "b")
        assert probed[-1] is clean


def test_a_slow_link_runs_at_its_rate_not_behind_its_timers():
    """Where a frame takes a millisecond on the wire, a one-frame bucket makes tbf release every frame by a timer
    that fires late, and the link never makes the lateness up: 97.2 % of 10 Mbit/s here (2026-12-01; the network
    model, which has the link at its rate, read single 1-4 MB flows there 2.5-3 % fast). Two frames absorb it."""
    with netns.Fabric(pair(10e6)) as fabric:
        p = best_probe(fabric, 0.985 * 10e6)
    assert p.burst_bytes == 2 * (netns.MTU_BYTES + 14)
    assert p.throughput_bps > 0.985 * 10e6, p.describe()  # 99.8-100.3 % here; one frame 97.2 %


def test_a_gigabit_fabric_passes_gso_packets_whole_and_is_not_cpu_bound():
    """From 300 Mbit/s the links' buckets hold a 64 KiB GSO packet, which tbf then passes whole instead of frame
    by frame: one stream at a gigabit got 1,000 of 1,000 Mbit/s here (0.6-0.9 with a 50 us bucket, one vCPU
    busy with the kernel's work for it). The bound leaves room for a CI run's two test workers beside it."""
    with netns.Fabric(pair(1e9)) as fabric:
        p = best_probe(fabric, 0.75 * 1e9)
    assert p.burst_bytes == 65536
    assert p.throughput_bps > 0.75 * 1e9, p.describe()


def test_no_namespace_or_node_outlives_a_killed_orchestrator(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", "hw", "run", str(PAPER), "--backend", "netns",
           "--rounds", "500", "--out", str(out)] + [a for o in SMALL for a in ("--set", o)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while not (out / "progress.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = json.loads((out / "pids.json").read_text())
    built = namespaces_of(pids)
    assert len(built) == 3
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while (built & set(netns.ours()) or [p for p in pids.values() if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not built & set(netns.ours()), "namespaces left by a killed orchestrator"
    assert not [n for n, p in pids.items() if _alive(p)], "nodes orphaned by a killed orchestrator"


def test_cli_refuses_what_netns_cannot_run_in_one_line(pqtwin, tmp_path):
    looped = pqtwin("hw", "run", str(PAPER), "--backend", "netns", "--out", str(tmp_path / "x"),
                    "--set", "deployment.network.links.-={a: pi-1, b: pi-2, preset: gigabit-ethernet}")  # fmt: skip
    assert looped.returncode == 2 and "tree" in looped.stderr and "Traceback" not in looped.stderr
    attack = pqtwin("hw", "run", str(PAPER), "--backend", "netns", "--attack", "tamper", "--out", str(tmp_path / "y"))
    assert attack.returncode == 2 and "--attack: only with --backend local" in attack.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_fabric_that_cannot_be_built_fails_the_run_in_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """A kernel that refuses a qdisc half-way through building: the run fails with the command's one-line
    error (a user error: no traceback), status.json says so, and the namespaces made so far are gone."""
    real, made = netns._run, []

    def refusing_tc(*cmd: str, check: bool = True) -> str:
        if cmd[:3] == ("ip", "netns", "add"):
            made.append(cmd[3])
        if cmd[0] == "tc":
            raise netns.NetnsUnavailable(f"`{' '.join(cmd[:4])}` failed: Specified qdisc kind is unknown.")
        return real(*cmd, check=check)

    monkeypatch.setattr(netns, "_run", refusing_tc)
    s = load_scenario(PAPER, [*SMALL, "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"])
    with pytest.raises(UserError, match="qdisc kind is unknown"):
        run_local(s, tmp_path, "sequential", rounds=1, seed=1, backend="netns")
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "qdisc" in status["reason"]
    assert len(made) == 4 and not set(made) & set(netns.ours())


def test_the_fabrics_softirq_work_is_the_twins_not_a_neighbours():
    """Streaming across a gigabit fabric keeps the kernel busy in softirq that no process of ours is charged for
    (on an idle host more than QUIET_FOREIGN_CORES: counted as foreign it would flag the machine busy); the netns
    backend's monitor counts it as the twin's. Checked against /proc/stat's own softirq count for the window, not
    as a rate: beside a busy neighbour (CI's other workers) the same streams spread over a longer wall time."""
    from hw.machine import _HZ, LoadMonitor, _cpu_jiffies

    with netns.Fabric(pair(1e9)) as fabric:
        wall0, softirq0 = time.monotonic(), _cpu_jiffies()[3]
        plain, netns_own = LoadMonitor().start(), LoadMonitor(softirq_is_own=True).start()
        for _ in range(4):
            netns.probe(fabric, "a", "b")
        seen, ours = plain.stop(), netns_own.stop()
        softirq_s, wall_s = (_cpu_jiffies()[3] - softirq0) / _HZ, time.monotonic() - wall0
    assert softirq_s >= 0.05, softirq_s  # the streams made the kernel work (5 ticks or more)
    # what other tests running beside this one use counts in both alike: the fabric's softirq is the difference
    softirq_cores = seen.foreign_cpu_cores - ours.foreign_cpu_cores
    assert softirq_cores >= 0.5 * softirq_s / wall_s, (softirq_s, wall_s, seen.describe(), ours.describe())
    assert ours.twin_cpu_cores > seen.twin_cpu_cores  # where it went


def test_the_bucket_is_two_frames_and_a_gso_packet_from_300_mbit():
    """tbf's bucket lets its depth through at once: two frames below 300 Mbit/s (one made the kernel fall behind
    the rate: test below), and a whole 64 KiB GSO packet from 300 Mbit/s on (frame by frame a gigabit stream was
    CPU-bound). A scenario's own ``burst_bytes`` wins."""
    frame = netns.MTU_BYTES + 14
    assert netns.tbf_burst_bytes(5e6) == netns.tbf_burst_bytes(10e6) == 2 * frame
    assert netns.tbf_burst_bytes(100e6) == netns.tbf_burst_bytes(250e6) == 2 * frame
    assert netns.tbf_burst_bytes(1e9) == netns.tbf_burst_bytes(300e6) == 65536
    assert netns.bucket_bytes(LinkParams(bandwidth_bps=1e9, latency_s=0)) == 65536
    assert netns.bucket_bytes(LinkParams(bandwidth_bps=1e9, latency_s=0, burst_bytes=9000)) == 9000


def test_a_probe_stream_its_reader_could_not_time_is_left_out(monkeypatch: pytest.MonkeyPatch):
    """A stream whose reader was descheduled past its first quarter (its first read there took the rest: CI on a
    busy 2-vCPU host, 2026-12-01) measures nothing: the probe takes another, up to twice PROBE_STREAMS, and fails
    in one line only when none could be timed."""
    real, calls = netns._stream, []

    def away_twice(*args: Any) -> tuple[int, float] | None:
        calls.append(1)
        return None if len(calls) <= 2 else real(*args)

    monkeypatch.setattr(netns, "_stream", away_twice)
    with netns.Fabric(pair(100e6)) as fabric:
        p = netns.probe(fabric, "a", "b")
        assert len(calls) >= netns.PROBE_STREAMS + 2  # two left out, PROBE_STREAMS timed (more if real ones fail)
        # never above the link's rate; below it where the CPU was short (83 % once in CI, the probe says CPU-bound)
        assert 0.5 * 100e6 < p.throughput_bps < 1.1 * 100e6, p.describe()
        monkeypatch.setattr(netns, "_stream", lambda *_: None)
        with pytest.raises(netns.NetnsUnavailable, match="could not be timed"):
            netns.probe(fabric, "a", "b")


def test_a_probe_stream_that_cannot_be_sent_ends_its_reader_and_raises():
    """The probe's reader process waits for the whole stream: when sending fails, it is ended, not waited for
    (the run would hang before its nodes start). Needs no namespaces: a socket pair."""
    a, b = socket.socketpair()
    sender = a.dup()
    sender.close()  # sending on it fails at once
    started = time.monotonic()

    def hung(*_: Any) -> None:  # end the reader it waits for (else it outlives the suite), and fail
        for kids in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
            for kid in kids.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(kid), signal.SIGKILL)
        raise TimeoutError("the probe waited for its reader")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)  # a hang fails the test instead of the suite
    try:
        with pytest.raises(OSError) as raised:
            netns._stream(sender, b, 1 << 20)
        assert not isinstance(raised.value, TimeoutError)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
        a.close()
        b.close()
    assert time.monotonic() - started < 5


def test_a_probe_reading_no_link_can_give_is_left_out():
    """Over a stream a token bucket adds at most its depth: a reading far above the rate is a late timestamp on a
    busy machine, not the link; where every reading is such, the most the link can give (it kept up)."""
    assert netns._possible([0.9e9, 1.0e9, 2.3e9, 1.4e9], 1e9) == [0.9e9, 1.0e9]
    assert netns._possible([1.5e9, 2e9], 1e9) == [pytest.approx(1.1e9)]


def test_the_kernel_rate_is_one_stream_across_a_fabric_that_limits_nothing(monkeypatch):
    """``kernel_rate_bps``: what the machine's kernel moves between two namespaces when no link limits it, the
    simulated ``Transport.host_rate_bps``: a real rate, well below the 40 Gbit/s fabric on any machine we run
    (2.78-3.04 Gbit/s on our 2-vCPU VM), and its namespaces gone afterwards (its own, by its fabric's tag: another
    test's fabric may come and go meanwhile, as in CI)."""
    tags: list[str] = []
    enter = netns.Fabric.__enter__
    monkeypatch.setattr(netns.Fabric, "__enter__", lambda self: tags.append(self.tag) or enter(self))
    probes: list[float] = []
    real_probe = netns.probe

    def counted(*a: Any) -> Any:
        probes.append((p := real_probe(*a)).throughput_bps)
        return p

    monkeypatch.setattr(netns, "probe", counted)
    rate = netns.kernel_rate_bps()
    assert 1e8 < rate < netns.KERNEL_PROBE_BPS
    assert len(probes) == netns.KERNEL_PROBES and rate == statistics.median(probes)  # one reading moves by half
    assert tags and not netns.ours(f"{netns.PREFIX}{tags[0]}-")


TRACEFS = Path("/sys/kernel/tracing")


@contextlib.contextmanager
def hrtimer_expiries() -> Any:
    """The names of the hrtimer functions the kernel ran meanwhile (a list filled at the end), from a tracefs
    instance of this test's own; skipped where there is no tracefs to write."""
    inst = TRACEFS / "instances" / f"pqtwin-pacing-{os.getpid()}"
    try:
        inst.mkdir()
    except OSError as exc:
        pytest.skip(f"no tracefs instance here ({exc.strerror})")
    names: list[str] = []
    try:
        (inst / "events/timer/hrtimer_expire_entry/enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        yield names
        (inst / "tracing_on").write_text("0")
        trace = (inst / "trace").read_text()
        names += [line.rsplit("function=", 1)[1].split()[0] for line in trace.splitlines() if "function=" in line]
    finally:
        inst.rmdir()


def paced_sends(fabric: netns.Fabric, dial: Any, nbytes: int = 2 << 20) -> int:
    """Kernel pacing timers fired while ``nbytes`` went from host a to b over a connection ``dial(address)`` opened
    in a's namespace (to a listener with the same congestion control, in b's)."""
    with netns.inside(fabric.namespace("b")):
        srv = common.listen(0, fabric.address("b"), congestion_control="cubic")
    got = [0]

    def drain() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                got[0] += len(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    with netns.inside(fabric.namespace("a")):
        sock = dial(srv.getsockname())
    with hrtimer_expiries() as fired, sock:
        sock.sendall(b"\0" * nbytes)
    reader.join(30)
    srv.close()
    assert got[0] == nbytes and fired, (got, len(fired))  # it all arrived; the trace saw the host's timers
    return fired.count("tcp_pace_kick")


def test_a_nodes_connection_runs_its_congestion_control_from_the_handshake_unpaced_as_the_model_is():
    """A connection given its congestion control after the handshake keeps the mark of the machine's default: bbr
    (ours) asks the kernel to pace it, and it stays paced as "cubic" (1.2-2 x its window per smoothed round trip: on
    the local twin a worker's 200 KB answer left in 64 KB bursts up to 1 ms apart). A node dials with it set before
    the handshake (``hw.tcp.dial``): a 2 MB send over a 10 ms round trip runs no pacing timer at all. The kernel's
    pacing timers, counted in a trace: bbr's own are many, so the trace would see pacing if there were any."""
    with netns.Fabric(pair(100e6, latency_s=2.5e-3), seed=3) as fabric:
        assert paced_sends(fabric, lambda a: common.connect(a, timeout_s=10, congestion_control="cubic")) == 0
        assert paced_sends(fabric, lambda a: common.connect(a, timeout_s=10, congestion_control="bbr")) > 10
        with netns.inside(fabric.namespace("a")):
            default = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
        if default == "bbr":  # as the nodes dialled before: the default's mark stays

            def late(address: Any) -> socket.socket:
                s = socket.create_connection(address, timeout=10)
                tcp.use(s, "cubic")
                return s

            assert paced_sends(fabric, late) > 10
