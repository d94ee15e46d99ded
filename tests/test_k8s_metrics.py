"""The probes' endpoints of a node (hw/node/metrics.py), through real HTTP requests to the real metrics server
on 127.0.0.1: ``/readyz`` while it serves, ``/healthz`` 503 once the main loop has made no progress for the
configured time, 200 again when it does; the limit's default and its override by the environment."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter
from types import SimpleNamespace

import pytest

from hw.node import metrics
from hw.node.metrics import STALE_ENV, default_stale_after_s, heartbeat, serve_metrics, stale_after_s_from_env

STALE_S = 0.4


def _node(name: str = "client-1") -> SimpleNamespace:
    """What the metrics server reads of a ``Node``: its name, round, spans and security counters."""
    cfg = SimpleNamespace(connect_timeout_s=600.0, fl=SimpleNamespace(round_timeout_s=300.0))
    return SimpleNamespace(name=name, round=0, rows=[], counters=Counter(), cfg=cfg)


def _get(server, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def serve():
    servers = []

    def start(node, role, **kw):
        server = serve_metrics(node, role, 0, "127.0.0.1", **kw)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _wait_stale(server) -> tuple[int, str]:
    deadline = time.monotonic() + 10 * STALE_S
    while time.monotonic() < deadline:
        code, body = _get(server, "/healthz")
        if code != 200:
            return code, body
        time.sleep(STALE_S / 4)
    return _get(server, "/healthz")


def test_healthz_turns_503_when_the_main_loop_stalls_and_200_when_it_moves(serve):
    node = _node()
    server = serve(node, "client", stale_after_s=STALE_S)
    assert _get(server, "/healthz") == (200, "ok\n")
    assert _get(server, "/readyz") == (200, "ok\n")
    code, body = _wait_stale(server)
    assert code == 503 and body.startswith("stale: no progress for ") and f"(limit {STALE_S:g} s)" in body
    assert _get(server, "/readyz")[0] == 200  # still serving: readiness is not liveness
    metrics_text = _get(server, "/metrics")[1]
    idle = float(
        next(ln for ln in metrics_text.splitlines() if ln.startswith("pqtwin_seconds_since_progress")).split()[-1]
    )
    assert idle > STALE_S
    # each kind of progress the roles record on their Node revives it: a span, a round, a security event
    for move in (lambda: node.rows.append("span"), lambda: setattr(node, "round", 1),
                 lambda: node.counters.update(["tampered"])):  # fmt: skip
        move()
        assert _get(server, "/healthz") == (200, "ok\n")
        assert _wait_stale(server)[0] == 503
    heartbeat()  # and so does an explicit heartbeat from a loop that records nothing
    assert _get(server, "/healthz") == (200, "ok\n")
    assert _get(server, "/nope")[0] == 404


def test_a_role_that_records_nothing_is_live_until_it_beats_once(serve, monkeypatch):
    monkeypatch.setattr(metrics._HEART, "last", None)
    node = _node("devices-pi-2")
    server = serve(node, "devices", stale_after_s=STALE_S)
    time.sleep(2 * STALE_S)
    assert _get(server, "/healthz") == (200, "ok\n")  # no progress signal: serving is all we know
    heartbeat()  # from now on its heartbeats are watched
    assert _get(server, "/healthz") == (200, "ok\n")
    assert _wait_stale(server)[0] == 503


def test_a_heartbeat_before_a_node_started_does_not_count(serve):
    heartbeat()
    time.sleep(0.01)
    server = serve(_node(), "client", stale_after_s=STALE_S)
    assert _wait_stale(server)[0] == 503


def test_the_limit_defaults_to_a_healthy_nodes_longest_wait_and_the_environment_overrides_it(monkeypatch, serve):
    node = _node()
    assert default_stale_after_s(node) == 600.0 + 300.0 + 60.0  # connect, then a round, plus a minute
    monkeypatch.delenv(STALE_ENV, raising=False)
    assert stale_after_s_from_env(node) == 960.0
    monkeypatch.setenv(STALE_ENV, "45")
    assert stale_after_s_from_env(node) == 45.0
    assert serve(node, "client").liveness.stale_after_s == 45.0
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv(STALE_ENV, bad)
        assert stale_after_s_from_env(node) == 960.0
