"""The twin's front door and its faults, on real runs: strangers and fuzzed frames change nothing but the
counters; kill -9 of any process keeps every finished round; no node outlives the run.

CI size here; ``bench/fuzz_twin.py`` fires the full barrage (>= 100,000 frames, 1,000 stray connections).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hw.channel import Suite
from hw.fuzz import Barrage
from hw.lifecycle import Stopped, held_stops, stop_signals
from hw.local import run_local
from hw.runconfig import RunConfig
from sim import contract

from .conftest import ROOT
from .test_twin import SMALL, scenario

QUIET = ["workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]


def _wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _signal_at(run_dir: Path, process: str, at_round: int, sig: int = signal.SIGKILL) -> Callable[[int], None]:
    """A progress callback that sends ``sig`` to ``process`` of the run (by its pid in pids.json) once, at
    ``at_round``."""
    sent = []

    def progress(r: int) -> None:
        if r >= at_round and not sent:
            os.kill(json.loads((run_dir / "pids.json").read_text())[process], sig)
            sent.append(r)

    return progress


def test_strangers_and_fuzzed_frames_change_nothing_but_the_counters(tmp_path):
    """A barrage of fuzzed frames and stray connections at the aggregator changes the run's counters only. The clients
    are stopped (SIGSTOP) as soon as they are spawned, until the whole barrage is in: the aggregator waits for them,
    so the barrage lands on a live aggregator however slow the machine. (Held instead at the first round the
    orchestrator's poll saw, a CI run's poll saw none before the last: the run ended under the barrage, 2,223 of
    3,000 frames sent; before that, a run of 10 rounds once ended with 49 of 150 strays fired.)"""
    s = scenario(*QUIET)
    reference = run_local(s, tmp_path / "ref", "sequential", rounds=6, seed=5)
    out = tmp_path / "fuzzed"
    sent: dict[str, int] = {}
    clients = [p.name for p in s.pods("client")]

    def spawned() -> dict[str, int]:
        try:
            return json.loads(contract.RunLayout(out).pids.read_text())
        except (OSError, ValueError):  # not written yet
            return {}

    def fire() -> None:
        while not set(clients) <= set(pids := spawned()):
            time.sleep(0.005)
        held = [pids[c] for c in clients]
        for pid in held:
            os.kill(pid, signal.SIGSTOP)
        try:  # within the aggregator's wait for its clients (connect_timeout_s, 30 s)
            sent.update(Barrage.at_run(out, seed=1).run(frames=3000, strays=150, threads=4))
        finally:
            for pid in held:
                os.kill(pid, signal.SIGCONT)

    attacker = threading.Thread(target=fire)
    attacker.start()
    fuzzed = run_local(s, out, "sequential", rounds=6, seed=5)
    attacker.join(120)
    assert fuzzed.state == "completed", fuzzed.reason
    assert fuzzed.rounds_completed == 6 and not fuzzed.dropouts
    assert fuzzed.accuracy_per_round == reference.accuracy_per_round  # the same model, bit for bit
    assert sent.get("frames_sent", 0) >= 3000 and sent.get("silent", 0) + sent.get("garbage", 0) >= 150, sent
    rejected = sum(fuzzed.security.values())
    assert rejected >= 50, fuzzed.security  # each connection the node read from is counted (by its first fault)
    assert {"identity", "oversize"} & set(fuzzed.security), fuzzed.security


def test_a_siege_of_trickling_connections_and_spammed_hellos_keeps_no_pod_or_device_out(tmp_path):
    """Sixty-four connections trickling a byte a second, opened before the pods connect and again whenever closed,
    held every pending slot of the aggregator under a per-read timeout: the run failed with no client
    authenticated. The same at a client's telemetry port kept its devices out all run, and HELLOs under a device's
    public name made the client sign for strangers, recorded as its telemetry work (hw.node.gate)."""
    s = scenario("workload.devices.ecg-a.frame_period_s=0.05", "workload.devices.ecg-b.frame_period_s=0.05",
                 "workload.fl.local_epochs=80")  # fmt: skip
    out, stop = tmp_path / "run", threading.Event()
    attacks: list[threading.Thread] = []

    def besiege() -> None:
        barrage = Barrage.at_run(out, seed=2, stop=stop)
        cfg = RunConfig.read(out)
        agg, tel = cfg.pods[cfg.aggregator].port, cfg.pods["client-1"].telemetry_port
        assert agg is not None and tel is not None
        for target, args in ((barrage.siege, (agg, 64, 60.0)), (barrage.siege, (tel, 4 + 16 + 4, 60.0)),
                             (barrage.hello_spam, (tel, "ecg-a#0", 60.0))):  # fmt: skip
            attacks.append(threading.Thread(target=target, args=args))
            attacks[-1].start()

    starter = threading.Thread(target=besiege)
    starter.start()
    try:
        summary = run_local(s, out, "sequential", rounds=20, seed=5)
    finally:
        stop.set()
        starter.join(30)
        for t in attacks:
            t.join(30)
    assert summary.state == "completed" and summary.rounds_completed == 20, summary.reason
    spans = contract.read_spans(out / "spans.parquet")
    frames = spans[spans.op == "frame"].groupby("pod").size().to_dict()
    assert frames.get("client-1", 0) > 20 and frames.get("client-2", 0) > 20, frames  # every pod's devices got in
    by_device = spans[spans.op == "frame"].groupby("host").size().to_dict()  # a frame's host: its device
    assert all(by_device.get(f"ecg-{g}#{i}", 0) > 0 for g in "ab" for i in range(4)), by_device  # ecg-a#0 too
    keygens = spans[(spans.phase == "telemetry") & spans.op.str.endswith(".keygen")].groupby("pod").size().to_dict()
    assert keygens.get("client-1", 0) <= 8, keygens  # its devices' sessions, not the strangers' half-handshakes
    assert summary.security.get("evicted", 0) + summary.security.get("timeout", 0) > 0, summary.security
    assert summary.security.get("unfinished", 0) > 0, summary.security


def test_a_stranger_pouring_into_the_device_links_takes_no_link_time(tmp_path):
    """A stranger writing 64 KiB into each device path's shaping proxy (its address is in run.json) every half
    second: the bytes were queued on the link ahead of the devices' own, each write held a 262 kbit/s link for 2 s,
    the devices' HELLOs missed their pods' deadline, and a 40-round run "completed" with no frame from any of its 8
    devices and no warning. The links now carry only connections that open with the run's key (hw/proxy.py)."""
    import socket

    s = scenario("workload.devices.ecg-a.frame_period_s=0.05", "workload.devices.ecg-b.frame_period_s=0.05",
                 "workload.fl.local_epochs=80")  # fmt: skip
    out, stop, poured = tmp_path / "run", threading.Event(), [0]

    def pour() -> None:
        _wait_for(out / "run.json")
        ports = [g.address[1] for g in RunConfig.read(out).devices]
        blob = os.urandom(65536)
        while not stop.wait(0.5):
            for port in ports:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.sendall(blob)
                        poured[0] += 1
                except OSError:
                    pass

    stranger = threading.Thread(target=pour)
    stranger.start()
    try:
        summary = run_local(s, out, "sequential", rounds=20, seed=5)
    finally:
        stop.set()
        stranger.join(30)
    assert summary.state == "completed" and summary.rounds_completed == 20, summary.reason
    assert poured[0] >= 4, poured
    spans = contract.read_spans(out / "spans.parquet")
    by_device = spans[spans.op == "frame"].groupby("host").size().to_dict()
    assert all(by_device.get(f"ecg-{g}#{i}", 0) > 0 for g in "ab" for i in range(4)), by_device
    latency_s = summary.telemetry.latency_s
    assert latency_s is not None and latency_s.p95 < 0.5, latency_s  # 2.5 s on average under the pour, before
    assert any("did not open with the run's key" in w for w in summary.warnings), summary.warnings


def test_a_run_whose_devices_could_not_reach_their_pods_says_so(tmp_path, monkeypatch):
    """Devices kept out of their pods all run (here: their emulator holds a key the run's links do not take) made a
    run that "completed" with no frame and no word of it. The summary now names the population and how many of its
    devices were silent, and that connections without the run's key were refused."""
    from hw import local

    monkeypatch.setattr(local, "SILENT_GRACE_S", 1.0)
    pair = local.LocalAddressing.pair

    def wrong_key(self, cfg, children):
        paired = pair(self, cfg, children)
        children.env[local.LINK_KEY_ENV] = bytes(16).hex()  # not the links' key
        return paired

    monkeypatch.setattr(local.LocalAddressing, "pair", wrong_key)
    s = scenario("workload.devices.ecg-a.frame_period_s=0.05", "workload.devices.ecg-b.count=0",
                 "workload.fl.local_epochs=80")  # fmt: skip
    summary = run_local(s, tmp_path / "run", "sequential", rounds=12, seed=5)
    assert summary.state == "completed" and summary.telemetry.frames == 0, summary.telemetry
    silent = [w for w in summary.warnings if w.startswith("population ecg-a: 4 of 4 devices delivered no")]
    assert len(silent) == 1, summary.warnings
    assert any("did not open with the run's key" in w for w in summary.warnings), summary.warnings


def test_silent_devices_are_counted_per_population_even_in_a_run_that_recorded_nothing():
    """Some devices heard and some not: the silent ones counted; no span at all (a run that failed at once, whose
    merged spans have no columns): every device silent, and no error while the results are written."""
    from types import SimpleNamespace

    import pandas as pd

    from hw.local import silent_devices
    from hw.runconfig import DeviceGroup

    g = DeviceGroup(population="ecg-a", count=3, pod="client-1", frame_bytes=10, period_s=0.05,
                    address=("127.0.0.1", 1))  # fmt: skip
    ran = SimpleNamespace(started={"devices": 0.0}, ended={}, stopped_at=20.0)
    cfg = SimpleNamespace(devices=[g])
    heard = pd.DataFrame({"phase": ["telemetry", "telemetry"], "op": ["frame", "handshake"],
                          "host": ["ecg-a#1", "ecg-a#2"]})  # fmt: skip
    assert silent_devices(heard, cfg, ran) == [
        "population ecg-a: 2 of 3 devices delivered no telemetry frame in the 20.0 s their emulator ran (one was due "
        "every 0.05 s): see logs/devices.log and the security counts"]  # fmt: skip
    assert silent_devices(pd.DataFrame(), cfg, ran)[0].startswith("population ecg-a: 3 of 3 devices")
    short = SimpleNamespace(started={"devices": 0.0}, ended={}, stopped_at=5.0)
    assert silent_devices(pd.DataFrame(), cfg, short) == []  # not judged: too short for them to have connected
    ended = SimpleNamespace(started={"devices": 0.0}, ended={"devices": -9}, stopped_at=20.0)
    assert silent_devices(pd.DataFrame(), cfg, ended) == []  # its end is said by node_warnings


def test_a_short_run_does_not_call_its_late_devices_silent(tmp_path):
    """The emulator starts last: in a run of a second or two its devices may not have connected yet, and that is
    not news (``SILENT_GRACE_S``)."""
    summary = run_local(scenario(), tmp_path / "run", "sequential", rounds=2, seed=5)
    assert summary.state == "completed", summary.reason
    assert not [w for w in summary.warnings if w.startswith("population ")], summary.warnings


def test_a_stopped_aggregator_ends_the_run_and_keeps_its_finished_rounds(tmp_path, monkeypatch):
    """SIGSTOP of the aggregator (a debugger, a stranger with the same uid) held the run until its deadline, rounds x
    round_timeout_s: 10 hours for 60 rounds by default. Stopped for ``STOPPED_LIMIT_S``, it ends the run as failed,
    saying so; its finished rounds are kept and no node outlives the run."""
    from hw import local

    monkeypatch.setattr(local, "STOPPED_LIMIT_S", 1.0)
    started = time.monotonic()
    summary = run_local(scenario(*QUIET), tmp_path, "sequential", rounds=200, seed=5,
                        progress=_signal_at(tmp_path, "aggregator", 2, signal.SIGSTOP))  # fmt: skip
    assert time.monotonic() - started < 120
    assert summary.state == "failed" and "aggregator was stopped (SIGSTOP" in summary.reason, summary.reason
    assert 2 <= summary.rounds_completed < 200
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert not [n for n, p in pids.items() if _alive(p)], "a node outlived its run"


def test_a_stopped_client_is_taken_for_gone_and_the_run_goes_on(tmp_path, monkeypatch):
    """A stopped client held each round until its timeout (600 s by default); now it is killed after
    ``STOPPED_LIMIT_S``, drops out as a crashed client does, and the summary says what happened to it."""
    from hw import local

    monkeypatch.setattr(local, "STOPPED_LIMIT_S", 1.0)
    s = scenario("workload.fl.quorum=0.5", *QUIET)
    summary = run_local(
        s, tmp_path, "sequential", rounds=40, seed=5, progress=_signal_at(tmp_path, "client-2", 2, signal.SIGSTOP)
    )
    assert summary.state == "completed" and summary.rounds_completed == 40, summary.reason
    assert [d.pod for d in summary.dropouts] == ["client-2"], summary.dropouts
    said = [w for w in summary.warnings if w.startswith("client-2 (client) was stopped (SIGSTOP or a debugger)")]
    assert len(said) == 1, summary.warnings


def test_kill_9_of_the_aggregator_keeps_every_finished_round(tmp_path):
    s = scenario(*QUIET)
    summary = run_local(s, tmp_path, "sequential", rounds=8, seed=5, progress=_signal_at(tmp_path, "aggregator", 2))
    assert summary.state == "failed" and "aggregator ended after round" in summary.reason, summary.reason
    assert summary.rounds_completed >= 2 and len(summary.accuracy_per_round) >= 2
    spans = contract.read_spans(tmp_path / "spans.parquet")
    assert set(spans[spans.phase == "round"]["round"]) >= {1, 2}
    assert {"client-1", "client-2"} <= set(spans[spans.op == "fl.train"].pod)  # the clients' finished rounds too
    assert not list((tmp_path / "spans").glob("*.journal"))
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert not [n for n, p in pids.items() if _alive(p)], "a node outlived its run"


def test_no_node_outlives_a_killed_orchestrator(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", "hw", "run", "scenarios/localhost.yaml",
           "--rounds", "500", "--out", str(out)] + [a for o in SMALL for a in ("--set", o)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(out / "progress.json")
    pids = json.loads((out / "pids.json").read_text())
    assert set(pids) >= {"aggregator", "client-1", "client-2", "devices"}
    proc.kill()  # kill -9: no clean-up of its own
    proc.wait()
    deadline = time.monotonic() + 10
    while [p for p in pids.values() if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [n for n, p in pids.items() if _alive(p)], "nodes orphaned by a killed orchestrator"


@pytest.mark.parametrize("signals", [["SIGTERM"], ["SIGINT", "SIGINT", "SIGINT"]], ids=["kill", "ctrl-c-thrice"])
def test_a_run_stopped_by_a_signal_keeps_its_finished_rounds(tmp_path, signals):
    """kill (SIGTERM) ended the orchestrator at once: no status, no summary, the finished rounds left in journals
    nothing reads, a stale lock; a second Ctrl-C during the clean-up skipped writing them too."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", "hw", "run", "scenarios/localhost.yaml",
           "--rounds", "500", "--out", str(out)] + [a for o in SMALL for a in ("--set", o)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "progress.json")
    deadline = time.monotonic() + 60
    while json.loads((out / "progress.json").read_text() or "{}").get("round", 0) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "no round finished"
        time.sleep(0.05)
    pids = json.loads((out / "pids.json").read_text())
    for name in signals:
        proc.send_signal(getattr(signal, name))
        time.sleep(0.3)
    _, err = proc.communicate(timeout=60)
    stop = "SIGTERM (kill)" if signals == ["SIGTERM"] else "Ctrl-C"
    assert proc.returncode == (143 if signals == ["SIGTERM"] else 130), err
    assert err.strip().splitlines()[-1] == (
        "interrupted by SIGTERM (kill)" if signals == ["SIGTERM"] else "interrupted"
    )
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "interrupted" and status["reason"] == f"stopped by {stop}", status
    summary = contract.read_summary(out / "summary.json")
    assert summary.rounds_completed >= 2
    spans = contract.read_spans(out / "spans.parquet")
    assert set(spans[spans.phase == "round"]["round"]) >= {1, 2}
    assert not list((out / "spans").glob("*.journal")) and not (out / ".lock").exists()
    assert not [n for n, p in pids.items() if _alive(p)], "a node outlived its run"


@pytest.fixture
def heeded_hup():
    """SIGHUP at its default: the test must not depend on how pytest was started (under ``nohup`` it is ignored,
    and a run started so rightly leaves it ignored)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, previous)


def test_stop_signals_raise_as_ctrl_c_and_are_held_while_results_are_written(heeded_hup):
    with pytest.raises(Stopped, match="SIGHUP") as caught, stop_signals():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(1)  # the handler runs at the next bytecode; this is never reached in full
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.signum == signal.SIGHUP
    with stop_signals(), held_stops() as came:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert came == ["SIGINT", "SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # every handler restored
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # started under nohup: a closed terminal changes nothing
    try:
        with stop_signals(), held_stops() as came:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
        assert came == [] and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_stop_that_came_while_results_were_written_is_said_as_the_signal_it_was(monkeypatch, capsys, tmp_path):
    """A SIGTERM held while a run wrote its results was raised afterwards as a ``Stopped`` the command's last line
    did not know: it said "interrupted" and exited 130, as for Ctrl-C; now "interrupted by SIGTERM" and 143."""
    from hw import lifecycle
    from pqtwin import cli

    with pytest.raises(KeyboardInterrupt) as ctrl_c:
        lifecycle.raise_held("SIGINT")
    assert not isinstance(ctrl_c.value, Stopped)
    lifecycle.last_stop = None

    def stopped_while_writing(*_args: object, **_kwargs: object) -> None:
        with held_stops() as came:
            came.append("SIGTERM")  # as the handler notes one
        lifecycle.raise_held(came[-1])

    import hw.local

    monkeypatch.setattr(hw.local, "run_local", stopped_while_writing)  # as a run ends: within click's command
    out = tmp_path / "run"
    assert cli.run(["hw", "run", str(ROOT / "scenarios" / "localhost.yaml"), "--out", str(out)]) == 143
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    lifecycle.last_stop = None


def test_a_dropout_says_what_happened(tmp_path):
    s = scenario("workload.fl.quorum=0.5", *QUIET)
    summary = run_local(s, tmp_path, "sequential", rounds=3, seed=3, crash={"client-2": 2})
    (drop,) = summary.dropouts
    said = ("client-2 closed the connection", "client-2: Connection reset by peer")  # as the kernel reports it
    assert drop.pod == "client-2" and drop.reason in said, drop.reason


def test_a_lagging_clients_stale_update_does_not_settle_its_last_round():
    """After the last round (3), client-2, a round behind, sends a stale update (round 1) and dies a moment later:
    the aggregator still waits for its last round's update or its end, and records the dropout."""
    import queue
    import types

    from hw.node.aggregator import Aggregator, Arrival

    agg = Aggregator.__new__(Aggregator)  # the drain alone: no node program, no sockets
    agg.node = types.SimpleNamespace(name="aggregator", round=3)
    agg.alive, agg.updated, agg.rejections, agg.dropouts = {"client-1", "client-2"}, {"client-1"}, {}, []
    agg.inbox = queue.Queue()
    agg._verify = lambda a, r, queued_at: None  # type: ignore[method-assign]  # an earlier round's update: stale
    agg.inbox.put(Arrival("client-2", object()))  # type: ignore[arg-type]  # its round-1 update, late
    threading.Timer(0.3, lambda: agg.inbox.put(Arrival("client-2", None, "client-2 closed the connection"))).start()
    agg._drain(3)
    assert [(d.pod, d.round, d.reason) for d in agg.dropouts] == [("client-2", 3, "client-2 closed the connection")]


def test_the_orchestrator_provisions_every_key_and_nodes_trust_nothing_else(tmp_path):
    """A public key planted in a reused run directory (the old trust-on-first-appearance file) is ignored:
    each process reads only the private keys and trust store the orchestrator wrote for it (0600, 0700)."""
    from hw.channel import Identity

    keys = tmp_path / "keys"
    planted = Identity.generate("client-1", Suite("ML-KEM-768", "ML-DSA-65", "AES-256-GCM"))

    def plant() -> None:  # where trust-on-first-appearance looked, while the nodes start
        _wait_for(tmp_path / "run.json")
        (keys / "client-1.json").write_text(json.dumps(planted.public()))

    planter = threading.Thread(target=plant)
    planter.start()
    summary = run_local(scenario(*QUIET), tmp_path, "sequential", rounds=1, seed=5)
    planter.join()
    assert summary.state == "completed" and not summary.security, summary
    cfg = RunConfig.read(tmp_path)
    assert cfg.keys is not None and "{pod}" in cfg.keys.identity
    for proc in ("aggregator", "client-1", "client-2"):
        d = keys / proc
        assert d.stat().st_mode & 0o777 == 0o700
        modes = {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()}
        assert modes == {"identity.json": 0o600, "trust.json": 0o600}
    trusted = json.loads((keys / "aggregator" / "trust.json").read_text())
    assert trusted["client-1"] != planted.public() and set(trusted) == {"client-1", "client-2"}


def test_kill_9_of_a_crypto_worker_moves_its_jobs_and_the_run_goes_on(tmp_path):
    s = scenario(*QUIET)
    # rounds enough that the kill (progress is polled every 50 ms) lands while jobs are still being handed out
    summary = run_local(s, tmp_path, "concurrent", rounds=40, seed=5, progress=_signal_at(tmp_path, "worker-1.1", 1))
    assert summary.state == "completed" and summary.rounds_completed == 40, summary.reason
    assert summary.security.get("worker_lost") == 1 and not summary.dropouts


def test_a_stranger_binding_the_ports_run_json_names_cannot_take_them(tmp_path):
    """A stranger that reads run.json (world-readable) and binds its listening ports first: each node bound its
    port seconds after the orchestrator had drawn it, so the stranger won all three and the run failed, the nodes
    ending in "Address already in use". The orchestrator now binds them and hands the sockets to the nodes."""
    import socket

    out, taken, refused = tmp_path / "run", [], []

    def squat() -> None:
        _wait_for(out / "run.json")
        cfg = RunConfig.read(out)
        ports = [p for pod in cfg.pods.values() for p in (pod.port, pod.telemetry_port) if p is not None]
        assert len(ports) == 3, ports  # the aggregator's, and each client's telemetry port
        for port in ports:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen(1)
                taken.append(sock)
            except OSError:
                refused.append(port)
                sock.close()

    squatter = threading.Thread(target=squat)
    squatter.start()
    try:
        # telemetry while the rounds run (as tests/test_twin.py's two rounds for real)
        s = scenario("workload.devices.ecg-a.frame_period_s=0.01", "workload.fl.local_epochs=60",
                     "workload.devices.ecg-a.access_link.preset=gigabit-ethernet")  # fmt: skip
        summary = run_local(s, out, "sequential", rounds=2, seed=5)
    finally:
        squatter.join(60)
        for sock in taken:
            sock.close()
    assert not taken and len(refused) == 3, (taken, refused)
    assert summary.state == "completed" and summary.rounds_completed == 2, summary.reason
    frames = contract.read_spans(out / "spans.parquet").op.eq("frame").sum()
    assert frames > 0  # the devices reached the clients' telemetry ports through the handed-over sockets


def test_a_node_port_comes_from_the_kernel_when_a_stranger_holds_every_drawn_one(monkeypatch):
    """A stranger holding all 12,755 ports the twin draws from (20000 up to the ephemeral range) made every run
    fail with "internal error: RuntimeError: no free loopback port"; now the kernel picks one."""
    import socket

    import hw.local

    low = 21_000
    monkeypatch.setattr(hw.local, "LISTEN_PORT_MIN", low)
    monkeypatch.setattr(hw.local, "_ephemeral_range", lambda: (low + 1000, 60999))
    held = []
    try:
        for port in range(low, low + 1000):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
                held.append(sock)
            except OSError:  # someone else's already: held all the same
                sock.close()
        taken: set[int] = set()
        got = hw.local.listening_socket(taken)
        port = got.getsockname()[1]
        got.close()
        assert not low <= port < low + 1000 and taken == {port}
    finally:
        for sock in held:
            sock.close()
