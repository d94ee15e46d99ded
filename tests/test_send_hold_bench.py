"""bench/send_hold.py: a blocking send over paper-3node's namespaces, timed against its message's arrival, with
the sender's CPU time, its unsent bytes and send buffer; bad arguments are one line (issue 18)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hw import netns

from .conftest import ROOT

BENCH = [sys.executable, "bench/send_hold.py"]
ROW = re.compile(r"^  (.+?)\s+median\s+(\S+)\s+min\s+(\S+)\s+max\s+(\S+)$")


@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
@pytest.mark.parametrize(("rate", "slowest_ms"), [([], 0.5), (["--bandwidth-bps", "1e8"], 14.0)], ids=["paper", "100M"])
def test_the_bench_times_each_send_against_its_arrival(rate, slowest_ms):
    """200 kB take ~1.7 ms over paper-3node's gigabit links, ~16.6 ms over 100 Mbit/s ones (``--bandwidth-bps``)."""
    r = subprocess.run([*BENCH, "--messages", "6", "--gap-s", "0.01", "--bytes", "200000", *rate], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "4 messages of 200,000 bytes" in r.stdout and "load average after" in r.stdout, r.stdout
    assert re.search(r"the machine's CPU per message: \d+\.\d\d ms .* stage: \d+\.\d{3} Gbit/s", r.stdout), r.stdout
    assert ("100 Mbit/s links" if rate else "its gigabit links") in r.stdout, r.stdout
    rows = {m[1]: [float(x) for x in m.groups()[1:]] for line in r.stdout.splitlines() if (m := ROW.match(line))}
    assert list(rows) == ["sendall held, ms", "arrived after, ms", "sender's CPU, ms", "reader's CPU, ms",
                          "unsent at return, B", "SO_SNDBUF, B"], r.stdout  # fmt: skip
    for median, lo, hi in rows.values():
        assert 0 <= lo <= median <= hi, r.stdout
    # milliseconds, not seconds: 200 kB over a gigabit link takes ~1.7 ms; and the sender is back by the time the
    # reader has the last byte, give or take a scheduling delay
    held_ms, arrived_ms = rows["sendall held, ms"][0], rows["arrived after, ms"][0]
    assert slowest_ms < rows["arrived after, ms"][1] and arrived_ms < 1_000 and held_ms <= arrived_ms + 50, r.stdout
    assert rows["unsent at return, B"][2] <= 200_000 and rows["SO_SNDBUF, B"][1] > 0


@pytest.mark.parametrize(("args", "named"), [(["--messages", "1"], "--messages"), (["--gap-s", "x"], "--gap-s"),
                                             (["--bytes", "0"], "--bytes"),
                                             (["--bandwidth-bps", "1e3"], "--bandwidth-bps")])  # fmt: skip
def test_a_bad_argument_is_one_line(args, named):
    r = subprocess.run([*BENCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("send_hold.py: error: argument " + named), r.stderr


def test_the_kernels_rate_is_wire_bytes_per_second_of_the_machines_cpu_summed_over_the_sends():
    """hw/sendcpu.py ``cpu_rate_bps``: busy ticks of 10 ms do not add up to one message's time, their sum over the
    sends does (two sends that read 0 and 20 ms took 10 ms each); a message's bytes count with their headers."""
    from hw.sendcpu import Send, cpu_rate_bps
    from sim.scenario import Transport

    sends = [Send(0.008, 0.009, 0.004, 0.001, 0, 1 << 20, 40.0, busy) for busy in (0.0, 0.02)]
    wire = Transport().wire_bytes(1_000_000)
    assert wire > 1_000_000
    assert cpu_rate_bps(sends, 1_000_000) == pytest.approx(8 * wire / 0.01)
