"""The twin's connections run the scenario's TCP congestion control, not the machine's default (``hw.tcp``).

Real sockets on loopback: a node's listener and dialled connections, a shaping proxy's two sides, and what the local
backends refuse before they start. The netns probe's connection is tested in tests/test_netns.py (root)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from hw import tcp
from hw.local import check_runnable
from hw.node import common
from hw.proxy import LinkShape, ShapingProxy
from hw.runconfig import build
from pqtwin import cli
from sim.errors import UserError
from sim.scenario import load_scenario

from .conftest import SCENARIOS, LoopbackAddressing

AVAILABLE = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
# two the kernel has that differ from the machine's default, so a socket that kept the default is caught
OTHERS = [cc for cc in ("reno", "cubic", "bbr") if cc in AVAILABLE and cc != tcp.of(socket.socket())]


@pytest.fixture(params=OTHERS)
def cc(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_socket_takes_a_congestion_control_and_says_which_it_runs(cc):
    with socket.socket() as s:
        default = tcp.of(s)
        tcp.use(s, "")  # the machine's default, left as it is
        assert tcp.of(s) == default
        tcp.use(s, cc)
        assert tcp.of(s) == cc != default
    assert tcp.problem(cc) is None


def test_one_not_in_the_kernel_is_refused_in_one_line_naming_what_it_has():
    why = tcp.problem("no-such-cc")
    assert why is not None and why.startswith("'no-such-cc' is not in this machine's kernel (available: ")
    assert "\n" not in why and all(name in why for name in AVAILABLE)


def test_one_this_user_may_not_set_is_refused_saying_what_it_may(monkeypatch, tmp_path):
    """An unprivileged user gets only ``tcp_allowed_congestion_control``'s (the kernel's EPERM)."""
    (tmp_path / "tcp_available_congestion_control").write_text("reno cubic bbr\n")
    (tmp_path / "tcp_allowed_congestion_control").write_text("reno cubic\n")
    monkeypatch.setattr(tcp, "SYSCTL", tmp_path)

    def refuse(sock: socket.socket, name: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tcp, "use", refuse)
    assert tcp.problem("bbr") == ("'bbr' cannot be set by this user here (Operation not permitted; allowed without "
                                  "CAP_NET_ADMIN: reno, cubic): run as root, or choose one of those")  # fmt: skip


def test_a_nodes_listener_and_dialled_connections_run_the_runs_congestion_control(cc):
    """An accepted connection takes its listener's (Linux's ``tcp_ca_openreq_child``), a dialled one its own."""
    srv = common.listen(0, congestion_control=cc)
    with srv:
        accepted: list[socket.socket] = []
        t = threading.Thread(target=lambda: accepted.append(srv.accept()[0]))
        t.start()
        dialled = common.connect(srv.getsockname(), timeout_s=5, congestion_control=cc)
        t.join(5)
        with dialled, accepted[0]:
            assert tcp.of(dialled) == tcp.of(accepted[0]) == cc


def test_a_node_whose_kernel_refuses_it_fails_in_one_line_naming_the_field():
    with pytest.raises(common.RunFailed) as info:
        common.listen(0, congestion_control="no-such-cc")
    assert str(info.value).startswith("deployment.network.transport.congestion_control: 'no-such-cc' is not in ")


def test_a_shaping_proxy_gives_both_sides_of_a_connection_the_runs_congestion_control(cc):
    with socket.create_server(("127.0.0.1", 0)) as target:
        shape = LinkShape(bandwidth_bps=1e9, latency_s=0.0, jitter_s=0.0, loss=0.0, segment_bytes=65536)
        proxy = ShapingProxy("127.0.0.1", target.getsockname()[1], shape, congestion_control=cc)
        with proxy, socket.create_connection(("127.0.0.1", proxy.start()), timeout=5) as client:
            client.sendall(b"x")
            served, _ = target.accept()
            with served:
                assert served.recv(1) == b"x"
                (conn,) = proxy._connections
                sides = [side.transport.get_extra_info("socket") for side in (conn.client, conn.target)]
                assert [tcp.of(s) for s in sides] == [cc, cc]


def test_the_runs_configuration_carries_the_scenarios_congestion_control(cc):
    s = load_scenario(SCENARIOS / "localhost.yaml", [f"deployment.network.transport.congestion_control={cc}"])

    assert build(s, "sequential", 1, 0, LoopbackAddressing(), epoch=0.0).congestion_control == cc


def test_a_congestion_control_the_machine_cannot_give_is_refused_before_a_run_claims_its_directory(
    monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(tcp, "problem", lambda name: f"{name!r} cannot be set by this user here (test)")
    s = load_scenario(SCENARIOS / "localhost.yaml")
    with pytest.raises(UserError) as info:
        check_runnable(s, "local")
    assert info.value.lines == [
        f"{s.path}: deployment.network.transport.congestion_control: 'cubic' cannot be set by this user here (test)"
    ]
    out = tmp_path / "run"
    code = cli.run(["hw", "run", str(SCENARIOS / "localhost.yaml"), "--out", str(out), "--rounds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "congestion_control: 'cubic' cannot be set" in err and "Traceback" not in err
    assert not out.exists()


def test_a_scenario_names_only_a_congestion_control_the_model_has(tmp_path):
    with pytest.raises(UserError) as info:
        load_scenario(SCENARIOS / "localhost.yaml", ["deployment.network.transport.congestion_control=vegas"])
    assert "deployment.network.transport.congestion_control" in str(info.value)
    assert "'cubic'" in str(info.value) and "'bbr'" in str(info.value)


def test_a_calibrations_loopback_runs_the_scenarios_default_congestion_control_not_the_machines():
    """A profile prices the copies a run's connections make, so the calibration's connection runs what a scenario
    runs by default (the machine's was bbr here, whose pacing holds part of a large message back)."""
    from hw.calibrate import Loopback
    from sim.scenario import Transport

    lb = Loopback()
    assert tcp.CALIBRATED == Transport().congestion_control == tcp.of(lb.tx) == tcp.of(lb.rx)
    lb.send(b"\0" * 300_000)  # and it carries
