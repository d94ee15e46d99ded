"""The TCP options of the twin's connections (hw/tcp.py): no Nagle delay, and on the local backend's loopback the
kernel's long-standing congestion control instead of the host's (this machine's BBR paced a loopback transfer over
8-34 ms now and then)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from hw import tcp
from hw.local import run_local
from hw.runconfig import RunConfig
from sim.scenario import load_scenario

from .conftest import SCENARIOS

HOST_DEFAULT = Path("/proc/sys/net/ipv4/tcp_congestion_control")


def _pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    return srv, a, srv.accept()[0]


def _congestion(sock: socket.socket) -> str:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()


def test_a_tuned_connection_has_no_nagle_delay_and_the_congestion_control_named():
    if tcp.loopback_congestion() is None:
        pytest.skip("this kernel has no cubic congestion control")
    srv, a, b = _pair()
    try:
        tcp.tune(a, "cubic")
        tcp.tune(b, None)
        assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) and b.getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        assert _congestion(a) == "cubic"
        assert _congestion(b) == HOST_DEFAULT.read_text().strip()  # None: the host's
        tcp.tune(a, "no-such-algorithm")  # refused by the kernel: the connection keeps what it had
        assert _congestion(a) == "cubic"
    finally:
        for s in (a, b, srv):
            s.close()


def test_the_loopback_congestion_control_is_named_only_where_the_kernel_has_it(tmp_path, monkeypatch):
    listed = tmp_path / "available"
    monkeypatch.setattr(tcp, "AVAILABLE", listed)
    assert tcp.loopback_congestion() is None  # no such file: the host's default
    listed.write_text("reno bbr\n")
    assert tcp.loopback_congestion() is None
    listed.write_text("reno cubic bbr\n")
    assert tcp.loopback_congestion() == "cubic"


def test_a_run_configuration_takes_a_congestion_control_name_only():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tcp_congestion"):
        RunConfig.model_validate({"tcp_congestion": "cubic; rm -rf /"})


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read a live connection's options")
def test_a_local_runs_connections_use_the_loopback_congestion_control(tmp_path):
    """A real concurrent run on the local backend: run.json names the congestion control, and every connection to
    and from the aggregator (clients' and crypto workers') uses it while the rounds run, where the host's default
    is another (here BBR)."""
    want = tcp.loopback_congestion()
    if want is None:
        pytest.skip("this kernel has no cubic congestion control")
    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.model_parameters=50000",
                                                     "workload.fl.samples_per_client=300"])  # fmt: skip
    seen: list[str] = []

    def look(round_: int) -> None:
        if seen:  # the first report of a round done: every connection is open
            return
        cfg = json.loads((tmp_path / "run.json").read_text())
        port = cfg["pods"][cfg["aggregator"]]["port"]
        out = subprocess.run(["ss", "-Htin", "state", "established", f"( sport = :{port} or dport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        seen.extend(re.findall(r"^\s+(?:ts\s+)?(?:sack\s+)?(\w+)\s+wscale", out, re.M) or ["unparsed: " + out[:300]])

    summary = run_local(s, tmp_path, "concurrent", rounds=3, seed=3, progress=look)
    assert summary.state == "completed", summary.reason
    assert json.loads((tmp_path / "run.json").read_text())["tcp_congestion"] == want
    assert len(seen) >= 6 and set(seen) == {want}, seen  # 2 clients + 1 worker process or more, both ends each
