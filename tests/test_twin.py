"""The local hardware twin end to end: real processes, sockets, PQC and training on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hw.local import run_local
from sim import contract
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS
from .test_cli import REQUIRED_KEYS

SMALL = ["workload.fl.model_parameters=50000", "workload.fl.samples_per_client=300"]


def scenario(*overrides: str):
    return load_scenario(SCENARIOS / "localhost.yaml", [*SMALL, *overrides])


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_two_clients_two_rounds_for_real(tmp_path, mode):
    # fast frames on a fast access link, and longer training, so telemetry flows while the rounds run
    s = scenario("workload.devices.ecg-a.frame_period_s=0.01", "workload.fl.local_epochs=60",
                 "workload.devices.ecg-a.access_link.preset=gigabit-ethernet")  # fmt: skip
    summary = run_local(s, tmp_path, mode, rounds=3, seed=3).model_dump()
    assert summary["state"] == "completed", summary["reason"]
    assert set(summary) >= REQUIRED_KEYS and summary["mode"] == mode
    assert summary["rounds_completed"] == 3 and summary["round_latency_s"]["mean"] > 0
    probe = summary["machine_load"]["training_probe"]  # the reference step alone after the rounds, whatever the model
    assert probe["parameters"] == 1_000_000 and 1e-3 < probe["alone_s"] < 5.0
    if mode == "sequential":  # a fit from the run prices training in the state the run met: its probe beside it
        from hw.fit import fit_from_run

        assert fit_from_run(tmp_path).profile["platform"]["training_probe_s"] == probe["alone_s"]
    acc = summary["accuracy_per_round"]
    assert len(acc) == 3 and acc[-1] > summary["initial_accuracy"] + 0.15  # FL learns
    df = contract.read_spans(tmp_path / "spans.parquet")
    assert contract.validate_spans(df) == []
    fl = df[df["round"] > 0]
    assert set(fl[fl.op == "fl.train"].pod) == {"client-1", "client-2"}
    assert {"distribute", "receive", "train", "upload", "verify", "aggregate", "distribution"} <= set(fl.phase)
    sizes = set(fl[(fl.op == "transfer") & (fl.phase == "upload")]["bytes"])
    assert len(sizes) == 1 and sizes.pop() > 50000 * 4  # the model's float32 payload plus crypto overhead
    assert (df.op == "frame").sum() > 0  # device telemetry crossed the secure channel
    # each session's handshake records that were waited for: the aggregator's SERVER, the client's FINISH
    hs = df[(df.op == "transfer") & (df.phase == "handshake")]
    peers = ["client-1", "client-2"] + (["worker-1"] * 2 if mode == "concurrent" else [])  # a worker per process
    senders = ["aggregator"] * len(peers) + peers
    assert sorted(hs.pod) == sorted(senders) and (hs["bytes"] > 1000).all() and (hs.end_s > hs.start_s).all()
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "completed" and set(status["exit_codes"].values()) <= {0, -15}
    nodes = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "nodes").glob("*.json")}
    machine = sorted(os.sched_getaffinity(0))
    wanted = machine[: min(len(machine), s.deployment.hosts[0].cores)]
    assert all(nodes[pod]["cpus"] == wanted for pod in ("aggregator", "client-1", "client-2"))  # pinned to its host
    workers = {n for n in nodes if n.startswith("worker-1.")}
    if mode == "concurrent":  # the worker pod's two threads are two processes doing the security work
        assert workers == {"worker-1.1", "worker-1.2"} and all(nodes[w]["state"] == "completed" for w in workers)
        assert {"ML-DSA-65.verify", "ML-DSA-65.sign"} <= set(fl[fl.pod == "worker-1"].op)
        assert not set(fl[(fl.pod == "aggregator") & fl.op.str.endswith((".verify", ".sign"))].op)
    else:
        assert not workers and "worker-1" not in set(fl.pod)


@pytest.mark.parametrize("attack", ["tamper", "replay", "truncate", "downgrade"])
def test_attacks_are_rejected_and_reported(tmp_path, attack):
    s = scenario("workload.fl.quorum=0.5", "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0")
    summary = run_local(s, tmp_path, "sequential", rounds=2, seed=3, attack=(attack, "client-1")).model_dump()
    kind = {"tamper": "tampered", "truncate": "truncated"}.get(attack, attack)
    assert summary["security"].get(kind, 0) >= 1, summary["security"]
    assert any(d["pod"] in ("client-1", "unknown") for d in summary["dropouts"])
    assert summary["state"] == "completed" and summary["rounds_completed"] == 2  # the honest client carries on


@pytest.mark.parametrize(("attack", "mode"), [("poison", "sequential"), ("malform", "sequential"),
                                            ("poison", "concurrent"), ("malform", "concurrent")])  # fmt: skip
def test_a_compromised_clients_update_is_refused_and_the_model_stays_whole(tmp_path, attack, mode):
    """A client that authenticates and signs an update of another size, or with a NaN: before, the size ended
    FedAvg (sequential) or killed both crypto worker processes and the aggregator's reader thread (concurrent: the
    round then waited out its deadline), and the NaN was averaged into the global model for good."""
    s = scenario("workload.fl.quorum=0.5", "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0",
                 "workload.fl.round_timeout_s=20")  # fmt: skip
    summary = run_local(s, tmp_path, mode, rounds=3, seed=3, attack=(attack, "client-1")).model_dump()
    assert summary["state"] == "completed", summary["reason"]
    assert summary["rounds_completed"] == 3 and summary["security"].get("malformed", 0) == 1, summary["security"]
    assert [d["pod"] for d in summary["dropouts"]] == ["client-1"] and "malformed" in summary["dropouts"][0]["reason"]
    assert all(a == a for a in summary["accuracy_per_round"])  # no NaN: the poisoned update was not averaged in
    status = json.loads((tmp_path / "status.json").read_text())
    codes = status["exit_codes"]  # no node, no crypto worker ended in an error but the client cut off
    assert codes.pop("client-1") != 0 and set(codes.values()) <= {0, -15}, status["exit_codes"]


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_a_client_that_stops_reading_is_cut_off_at_the_rounds_deadline(tmp_path, mode):
    """A client that stops reading (stopped here; equally a box that keeps its connection open and reads nothing)
    held every round for good: the sequential aggregator's main thread, or the concurrent one's model senders,
    blocked in a write with no deadline (an attack hunt: no round for 35 s; after SIGCONT the client then got its
    aggregator's records out of order)."""
    s = scenario("workload.fl.quorum=0.5", "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0",
                 "workload.fl.model_parameters=2000000", "workload.fl.round_timeout_s=3")  # fmt: skip
    layout, stopped = contract.RunLayout(tmp_path), []

    # Stopped from round 1, client-2 is sent 7 more 8 MB models (56 MB): more than the buffers between can hold,
    # at most 41 MB here (its own receive buffer autotuned up to tcp_rmem's 32 MB, the aggregator's 4 MB send
    # buffer, the proxy's 4 MB backlog and its fixed socket buffers). With 4 MB models from round 2 (24 MB), CI once
    # completed all 8 rounds with the client stopped and never cut; here the cut comes in round 4 or 5.
    def stop_client_2() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not stopped:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(layout.progress.read_text())["round"] >= 1:
                    pid = json.loads(layout.pids.read_text())["client-2"]
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_client_2, daemon=True)
    stopper.start()
    try:
        summary = run_local(s, tmp_path, mode, rounds=8, seed=3).model_dump()
    finally:
        stopper.join(1)
        for pid in stopped:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
    assert stopped and summary["state"] == "completed", summary["reason"]
    assert summary["rounds_completed"] + summary["rounds_failed"] == 8 and summary["rounds_failed"] <= 2
    cut = [d for d in summary["dropouts"] if d["pod"] == "client-2"]
    assert cut and "took no record for 3 s" in cut[0]["reason"], summary["dropouts"]
    assert not summary["security"].get("reorder")


def test_client_killed_mid_round_quorum_finishes_the_round(tmp_path):
    s = scenario("workload.fl.quorum=0.5", "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0")
    summary = run_local(s, tmp_path, "concurrent", rounds=3, seed=3, crash={"client-2": 2}).model_dump()
    assert summary["state"] == "completed", summary["reason"]
    assert summary["rounds_completed"] == 3
    # recorded when the aggregator notices: in round 2, or in round 3 if round 2 reached its quorum first
    assert [d["pod"] for d in summary["dropouts"]] == ["client-2"] and summary["dropouts"][0]["round"] >= 2
    # every round folds an update trained in that round: a straggler's verdict on round r's update, arriving
    # after round r reached its quorum, is not round r + 1's (it once completed round 2 with no training)
    spans = contract.read_spans(tmp_path / "spans.parquet")
    for r in (1, 2, 3):
        trained = spans[(spans.op == "fl.train") & (spans["round"] == r)]
        folded = spans[(spans.op == "fl.fedavg") & (spans["round"] == r)]
        assert len(trained) and trained.end_s.min() < folded.start_s.min(), f"round {r}"


def test_quorum_lost_fails_with_a_clear_message_and_whole_files(tmp_path):
    s = scenario("workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0")
    summary = run_local(s, tmp_path, "sequential", rounds=3, seed=3, crash={"client-2": 2}).model_dump()
    assert summary["state"] == "failed"
    assert "round 2: quorum lost: 1 of 2 clients left, quorum needs 2" in summary["reason"]
    assert summary["machine_load"]["training_probe"] is None  # a run that did not finish: not worth its time
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "quorum lost" in status["reason"]
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written
    contract.read_spans(tmp_path / "spans.parquet")  # what was measured is readable


def test_cli_run_and_ctrl_c_stops_every_child(tmp_path, pqtwin):
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", "hw", "run", "scenarios/localhost.yaml",
           "--rounds", "500", "--out", str(out)] + [a for o in SMALL for a in ("--set", o)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "progress.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _node_pids(out)
    assert children, "no node processes found"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert json.loads((out / "status.json").read_text())["state"] == "interrupted"
    time.sleep(0.2)
    assert not [p for p in children if Path(f"/proc/{p}").exists() and _is_running(p)]


def test_cli_rejects_what_the_twin_cannot_run(pqtwin, tmp_path):
    res = pqtwin("hw", "run", "scenarios/localhost.yaml", "--set", "workload.fl.bytes_per_parameter=8",
                 "--set", "workload.devices.ecg-a.report_to=aggregator",
                 "--set", "workload.telemetry_receiver=one-thread", "--out", str(tmp_path))  # fmt: skip
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 3, res.stderr
    assert "workload.fl.bytes_per_parameter: the twin trains float32 models (got 8)" in lines[0]
    assert "workload.telemetry_receiver: the twin serves each device on a thread of its own" in lines[1]
    assert "workload.devices: the twin streams telemetry to client pods only" in lines[2]
    res = pqtwin("hw", "run", "scenarios/localhost.yaml", "--backend", "cloud")
    assert res.returncode == 2 and "--backend" in res.stderr and "Traceback" not in res.stderr


def _node_pids(run_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"hw.node" in cmdline and str(run_dir).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_os_has_proc():  # the Ctrl-C test inspects /proc; make its precondition explicit
    assert os.path.isdir("/proc/self")


def test_a_runs_listeners_get_distinct_ports_the_kernel_does_not_hand_out():
    """Nodes bind their ports after the orchestrator chose them: two must never share one (two of a run's nodes
    once did), and none may be in the range the kernel gives to proxies' bind(0) and outgoing connections."""
    from hw.local import LISTEN_PORT_MIN, _ephemeral_range, free_port

    taken: set[int] = set()
    ports = [free_port(taken) for _ in range(300)]
    assert len(set(ports)) == 300 and taken == set(ports)
    low, _ = _ephemeral_range()
    if low - LISTEN_PORT_MIN >= 1000:
        assert all(LISTEN_PORT_MIN <= p < low for p in ports)
    import socket

    with socket.socket() as busy:  # a port in use is never handed out
        busy.bind(("127.0.0.1", ports[0]))
        busy.listen()
        assert ports[0] not in {free_port() for _ in range(300)}
