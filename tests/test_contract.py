"""The contract between sim and hw: span rows, the run directory, summary.json and run.json.

Each rule lives in one place (sim/contract.py, Scenario.route/crypto_workers, hw/runconfig.py); these tests
pin the rule once, and pin that both sides (simulator, local backend, Kubernetes backend) use it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simpy

from hw.k8s.render import ClusterAddressing
from hw.local import LocalAddressing
from hw.proxy import LinkShape
from hw.runconfig import RunConfig, build
from sim import contract
from sim.contract import SpanRow, Summary, read_summary, write_summary
from sim.network import Network
from sim.runner import simulate
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS


def rows() -> list[SpanRow]:
    return [
        SpanRow(0, 1, "agg", "h1", "distribute", "ML-DSA-65.sign", 0.0, 1.0, 0.25, 0),
        SpanRow(0, 1, "agg", "h1", "distribute", "transfer", 1.0, 3.0, 0.0, 100),
        SpanRow(0, 1, "c1", "h2", "train", "fl.train", 3.0, 7.0, 0.0, 0),
        SpanRow(0, 1, "agg", "h1", "round", "round", 0.0, 9.0, 0.0, 0),
        SpanRow(1, 1, "agg", "h1", "distribute", "serialize", 0.5, 2.5, 0.5, 0),
        SpanRow(0, 0, "agg", "h1", "handshake", "ML-KEM-768.encaps", 0.0, 0.1, 0.0, 0),
    ]


def test_span_rows_round_trip_through_parquet_with_the_schema(tmp_path):
    df = contract.to_frame(rows())
    contract.write_spans(df, tmp_path / "spans.parquet")
    assert pq.read_schema(tmp_path / "spans.parquet").equals(contract.SPAN_SCHEMA, check_metadata=False)
    back = contract.read_spans(tmp_path / "spans.parquet")
    assert list(back.itertuples(index=False, name=None)) == [tuple(r) for r in rows()]
    assert list(tmp_path.iterdir()) == [tmp_path / "spans.parquet"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("damage", "problem"),
    [(lambda df: df.drop(columns=["op"]), "missing column 'op'"),
     (lambda df: df.assign(op=None), "column 'op' has empty values"),
     (lambda df: df.assign(host=[[1]] * len(df)), "cannot read spans (Unsupported cast"),
     (lambda df: df.assign(replication=1.5), "cannot read spans (Float value 1.5"),
     (lambda df: df.assign(end_s=float("inf")), "start_s or end_s is missing or not finite"),
     (lambda df: df.assign(queue_wait_s=float("nan")), "queue_wait_s is missing or not finite"),
     (lambda df: df.assign(phase="lunch"), "unknown phases ['lunch']"),
     (lambda df: df.assign(end_s=-1.0), "a span ends before it starts"),
     (lambda df: df.assign(end_s=1e308), "a time beyond 1e+09 s"),
     (lambda df: df.assign(bytes=-1), "negative bytes")],
)  # fmt: skip
def test_a_damaged_spans_file_is_one_value_error_naming_it(tmp_path, damage, problem):
    """Every reader of a run directory (compare, report, calibrate --from-run, hw energy, the app) reads spans
    here: a column missing came back as empty values (calibrate --from-run: AttributeError; report: 'float' object
    has no attribute 'split'), a list column raised ArrowNotImplementedError, which no caller caught."""
    path = tmp_path / "spans.parquet"
    pq.write_table(pa.Table.from_pandas(damage(contract.to_frame(rows())), preserve_index=False), path)
    with pytest.raises(ValueError) as exc:
        contract.read_spans(path)
    assert str(exc.value).startswith(f"{path}: {problem}") and "\n" not in str(exc.value)
    path.unlink()
    with pytest.raises(ValueError, match="cannot read spans"):
        contract.read_spans(path)


def test_a_rounds_segments_cut_it_at_its_milestones_and_add_up_to_it():
    """Milestones: the distribution marker's end, the last training step's end, the last upload's arrival, the
    round's end. One a round lacks is the one before (a zero segment); one beyond the round's end is its end; a
    failed round has none."""
    r = [
        SpanRow(0, 1, "agg", "h1", "round", "round", 1.0, 10.0, 0.0, 0),
        SpanRow(0, 1, "agg", "h1", "distribution", "distribution", 1.0, 3.0, 0.0, 0),
        SpanRow(0, 1, "c1", "h2", "train", "fl.train", 3.0, 5.0, 0.0, 0),
        SpanRow(0, 1, "c2", "h3", "train", "fl.train", 3.5, 6.0, 0.0, 0),
        SpanRow(0, 1, "c1", "h2", "upload", "transfer", 5.5, 7.0, 0.0, 10),
        SpanRow(0, 1, "c2", "h3", "upload", "transfer", 6.5, 8.5, 0.0, 10),
        SpanRow(0, 1, "c2", "h3", "upload", "ML-DSA-65.sign", 6.0, 9.5, 0.0, 0),  # not an arrival
        SpanRow(0, 2, "agg", "h1", "round", "round", 10.0, 14.0, 0.0, 0),  # no training: dropped
        SpanRow(0, 2, "agg", "h1", "distribution", "distribution", 10.0, 11.0, 0.0, 0),
        SpanRow(0, 2, "c1", "h2", "upload", "transfer", 12.0, 15.0, 0.0, 10),  # past its end: quorum without it
        SpanRow(1, 1, "agg", "h1", "round", "failed", 0.0, 4.0, 0.0, 0),
        SpanRow(1, 1, "c1", "h2", "train", "fl.train", 0.5, 2.0, 0.0, 0),
    ]
    df = contract.round_segments(contract.to_frame(r))
    seg = {k: list(zip(g.segment, g.segment_s, strict=True)) for k, g in df.groupby(["replication", "round"])}
    assert seg[0, 1] == list(zip(contract.ROUND_SEGMENTS, [2.0, 3.0, 2.5, 1.5], strict=True))
    assert seg[0, 2] == list(zip(contract.ROUND_SEGMENTS, [1.0, 0.0, 3.0, 0.0], strict=True))
    assert set(seg) == {(0, 1), (0, 2)}  # the failed round has none
    assert contract.round_segments(contract.to_frame(r[-2:])).empty


def test_phase_extents_are_max_end_minus_min_start_per_round_and_replication():
    ext = contract.phase_extents(contract.to_frame(rows())).set_index(["replication", "round", "phase"])
    assert ext.loc[(0, 1, "distribute"), "extent_s"] == 3.0  # 0.0 .. 3.0 over the sign and the transfer
    assert ext.loc[(1, 1, "distribute"), "extent_s"] == 2.0
    assert ext.loc[(0, 1, "train"), "extent_s"] == 4.0
    assert "round" not in set(ext.index.get_level_values("phase"))  # markers are not phases
    assert 0 not in set(ext.index.get_level_values("round"))  # set-up is not a round


def test_core_utilisation_counts_service_time_of_cpu_rows_only():
    df = contract.to_frame(rows())
    u = contract.core_utilisation(df, {"h1": 2, "h2": 1}, duration_s=10.0)
    # h1: sign 1.0 - 0.25 wait + serialize 2.0 - 0.5 + encaps 0.1 = 2.35 core-s of 20; the transfer and markers not
    assert u["h1"].offered == pytest.approx(2.35 / 20) and u["h2"].offered == pytest.approx(0.4)
    pooled = contract.core_utilisation(df, {"box": 1}, 10.0, pd.Series("box", index=df.index))
    assert pooled["box"].offered == pytest.approx((2.35 + 4.0) / 10) and not pooled["box"].overloaded


def test_summary_is_written_from_and_read_into_the_model(tmp_path):
    s = load_scenario(SCENARIOS / "paper-3node.yaml", ["workload.fl.rounds=2"])
    summary = simulate(s, "sequential", 1, 2).summary
    write_summary(summary, tmp_path)
    assert read_summary(tmp_path / "summary.json") == summary
    data = json.loads((tmp_path / "summary.json").read_text())
    data["round_latency_s"]["n"] = "many"
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(ValueError) as exc:
        read_summary(tmp_path / "summary.json")
    assert str(exc.value).startswith(f"{tmp_path / 'summary.json'}: round_latency_s.n: ")
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="extra_field"):
        Summary.model_validate({**summary.model_dump(), "extra_field": 1})  # the format is closed


def test_one_routing_rule_for_the_simulator_and_the_twin():
    s = load_scenario(SCENARIOS / "ward-200.yaml")
    device, host = "ecg-patch-1#0", s.pods("client")[0].host
    path = s.route(device, host)
    net = Network(simpy.Environment(), s.graph(), np.random.SeedSequence(0), 65536)
    assert [link.name for link in net.route(device, host)] == [f"{a}->{b}" for a, b in itertools.pairwise(path)]
    hops = [LinkShape(*p.resolved()) for _, _, p in s.route_links(device, host)]
    assert len(hops) == len(path) - 1 >= 2


@pytest.mark.parametrize("scenario", ["localhost.yaml", "paper-3node.yaml", "ward-200.yaml"])
def test_one_run_config_for_both_backends(scenario):
    s = load_scenario(SCENARIOS / scenario)
    local = LocalAddressing(s, 1)
    try:
        here = build(s, "concurrent", 3, 1, local, epoch=5.0)
    finally:
        local.stop()
    there = build(s, "concurrent", 3, 1, ClusterAddressing(s, 1), epoch=5.0, clock="wall")
    assert here.workers == there.workers == s.crypto_workers()
    same = ("scenario", "mode", "seed", "suite", "rekey", "aggregator", "fl")
    assert here.model_dump(include=set(same)) == there.model_dump(include=set(same))
    assert {n: (p.role, p.host) for n, p in here.pods.items()} == {n: (p.role, p.host) for n, p in there.pods.items()}
    assert [(d.population, d.pod, d.count) for d in here.devices] == [(d.population, d.pod, d.count)
                                                                     for d in there.devices]  # fmt: skip
    assert all(d.runner is None for d in here.devices) and all(d.runner for d in there.devices)


@pytest.mark.parametrize(
    ("role", "name", "expected"),
    [
        ("x", "aggregator", "--role: 'x' is not a role of the twin (one of aggregator, client, worker, devices)"),
        ("client", "nosuch", "--name: 'nosuch' plays no client in this run (its client processes: client-1, client-2)"),
        ("aggregator", "client-1", "--name: 'client-1' plays no aggregator in this run"),
        ("devices", "x", "--name: 'x' plays no devices in this run"),
    ],
)
def test_a_node_asked_for_a_role_or_name_the_run_lacks_is_one_line_and_exit_2(tmp_path, role, name, expected):
    """Before, such a node started, found no keys or peers and failed the run with exit 3."""
    s = load_scenario(SCENARIOS / "localhost.yaml")
    build(s, "sequential", 1, 1, ClusterAddressing(s, 1), epoch=0.0).write(tmp_path)
    node = subprocess.run([sys.executable, "-m", "pqtwin", "node", "--role", role, "--run-dir", str(tmp_path),
                           "--name", name], capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert node.returncode == 2, node.stderr
    assert len(node.stderr.strip().splitlines()) == 1 and node.stderr.startswith(f"error: {expected}"), node.stderr
    assert not (tmp_path / "nodes").exists()  # nothing started, nothing recorded as the pod's result


def test_a_malformed_run_json_is_one_line_from_the_node_program(tmp_path):
    s = load_scenario(SCENARIOS / "paper-3node.yaml")
    cfg = build(s, "sequential", 1, 1, ClusterAddressing(s, 1), epoch=0.0)
    data = json.loads(cfg.to_json())
    data["fl"]["rounds"] = 0
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"run\.json: fl\.rounds: "):
        RunConfig.read(tmp_path)
    node = subprocess.run([sys.executable, "-m", "hw.node", str(tmp_path), "aggregator", "aggregator"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert node.returncode == 2 and "Traceback" not in node.stderr
    assert node.stderr.strip().splitlines() == [f"aggregator: {tmp_path / 'run.json'}: fl.rounds: "
                                                "Input should be greater than or equal to 1"]  # fmt: skip


def test_local_pods_are_pinned_to_their_hosts_cpus(monkeypatch, tmp_path):
    import os

    from hw.local import pin_cpus

    s = load_scenario(SCENARIOS / "paper-3node.yaml", ["deployment.hosts.pi-1.cores=1",
                      "deployment.hosts.pi-2.cores=1", "deployment.hosts.pi-3.cores=2"])  # fmt: skip
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert pin_cpus(s) == {"pi-1": [0], "pi-2": [1], "pi-3": [0, 1]}  # in order, wrapping round the machine
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert pin_cpus(s) == {"pi-1": [3], "pi-2": [3], "pi-3": [3]}


@contextlib.contextmanager
def within_s(seconds: int) -> Iterator[None]:
    """TimeoutError in this (the main) thread if the block is still running after ``seconds``."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dir"])
@pytest.mark.parametrize("name", ["summary.json", "spans.parquet"])
def test_a_run_file_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind, name):
    """A FIFO as a run's summary or spans made report, calibrate --from-run and sim --fabric-of wait forever (open
    blocks until a writer comes), /dev/zero read until memory ran out: refused from its metadata, one line."""
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    read = contract.read_summary if name == "summary.json" else contract.read_spans
    with pytest.raises(ValueError) as exc, within_s(20):  # a read that blocks fails the test, not hangs the suite
        read(path)
    assert str(exc.value).startswith(f"{path}: ") and "\n" not in str(exc.value)
    assert ("a directory" if kind == "dir" else "not a regular file") in str(exc.value)


def _twin_shaped(summary: Summary) -> Summary:
    """A summary as the twin writes it: its run's facts after ``wall_s`` filled in."""
    speed = contract.CpuSpeed(probe_us_p10=60.0, probe_us_p50=64.0, probe_us_p90=70.0, samples=30)
    waits = contract.SchedWaits(window_s=2.0, runnable_wait_s=0.5, idle_core_wait_s=0.1,
                                by_node_wait_s={"aggregator": 0.2}, by_cause_wait_s={"woken": 0.3})  # fmt: skip
    load = contract.MachineLoad(cores=2, loadavg_1m_start=0.5, loadavg_1m_end=None, twin_cpu_cores=1.2,
                                foreign_cpu_cores=0.1, steal_fraction=0.0, quiet=True, package_energy_j=12.5,
                                cpu_speed=speed, calibrated_probe_us=64.0, sched=waits)  # fmt: skip
    probe = contract.FabricProbe(hosts=("pi-1", "pi-2"), hops=2, latency_s=6e-6, throughput_bps=7e8,
                                 rate_bps=9.4e8, congestion_control="bbr", burst_bytes=4096)  # fmt: skip
    return summary.model_copy(update={
        "backend": "netns", "state": "completed", "initial_accuracy": 0.1, "accuracy_per_round": [0.5, 0.75],
        "dropouts": [contract.Dropout(round=1, pod="client-2", reason="timeout")], "security": {"rejected": 0},
        "attack": ("replay", "client-1"), "run_id": "r1", "machine_load": load, "fabric": probe, "link_bytes": None,
    })  # fmt: skip


def test_what_the_simulator_and_the_twin_write_reads_back_strictly(tmp_path):
    """summary.json is now read strictly (no NaN, no ``true`` for a number, nothing beyond ±1e18, no negative
    count): every summary the simulator (both modes, telemetry, energy) and the twin write still reads, equal."""
    s = load_scenario(SCENARIOS / "paper-3node.yaml", ["workload.fl.rounds=2"])
    for mode in ("sequential", "concurrent"):
        summary = simulate(s, mode, 1, 2).summary
        assert summary.telemetry.frames > 0 and summary.energy is not None  # the parts with most numbers
        for written in (summary, _twin_shaped(summary)):
            write_summary(written, tmp_path)
            assert read_summary(tmp_path / "summary.json") == written


@pytest.mark.parametrize(
    ("edit", "where"),
    [(lambda d: d["round_latency_s"].update(mean=float("nan")), "round_latency_s.mean: "),
     (lambda d: d["round_latency_s"].update(ci95=[float("-inf"), 1.0]), "round_latency_s.ci95"),
     (lambda d: d["round_latency_s"].update(mean=True), "round_latency_s.mean: "),  # read as 1.0 s
     (lambda d: d["round_latency_s"].update(n="4"), "round_latency_s.n: "),
     (lambda d: d["round_latency_s"].update(replication_means=[1.0, 1e30]), "round_latency_s.replication_means: "),
     (lambda d: d.update(rounds_completed=-2), "rounds_completed: "),
     (lambda d: d.update(sim_time_s=1e300), "sim_time_s: "),
     (lambda d: d["phase_s"].update(train=float("nan")), "phase_s: "),
     (lambda d: d["host_utilization"]["pi-1"].update(offered=float("inf")), "host_utilization.pi-1.offered: "),
     (lambda d: d["machine_load"].update(cores=1e30), "machine_load.cores: "),
     (lambda d: d["machine_load"].update(cores=10**30), "machine_load.cores: "),
     (lambda d: d["machine_load"].update(quiet=1), "machine_load.quiet: ")],
    ids=["nan", "inf-in-ci", "true", "text", "1e30", "negative-count", "1e300", "nan-in-map", "inf-nested",
         "cores-1e30", "cores-huge-int", "one-for-true"],
)  # fmt: skip
def test_a_summary_number_no_run_writes_is_refused_naming_its_field(tmp_path, edit, where):
    """report, compare and calibrate --from-run read summary.json with pydantic's lax defaults: NaN intervals,
    ``"mean": true`` (1.0 s), replication means of 1e30 and negative counts were taken without a word."""
    s = load_scenario(SCENARIOS / "paper-3node.yaml", ["workload.fl.rounds=1"])
    write_summary(_twin_shaped(simulate(s, "sequential", 1, 2).summary), tmp_path)
    path = tmp_path / "summary.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as exc:
        read_summary(path)
    (line,) = str(exc.value).splitlines()
    assert line.startswith(f"{path}: {where}"), line


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("latency_s", float("inf"), "Input should be a finite number"),
     ("latency_s", 100.0, "less than or equal to 60"),
     ("throughput_bps", 0.5, "greater than or equal to 1"),
     ("rate_bps", 1e13, "less than or equal to 1000000000000"),
     ("burst_bytes", 1 << 31, "less than or equal to 1073741824")],
)  # fmt: skip
def test_a_fabric_no_link_can_have_is_refused_as_the_summary_is_read(tmp_path, field, value, expected):
    """``sim --fabric-of RUN`` makes the run's fabric the scenario's links: a value no link may have (an infinite
    latency) was refused after the fact as the scenario file's deployment.network.links[0], not RUN's."""
    s = load_scenario(SCENARIOS / "paper-3node.yaml", ["workload.fl.rounds=1"])
    write_summary(_twin_shaped(simulate(s, "sequential", 1, 1).summary), tmp_path)
    path = tmp_path / "summary.json"
    data = json.loads(path.read_text())
    data["fabric"][field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as exc:
        read_summary(path)
    assert str(exc.value).startswith(f"{path}: fabric.{field}: ") and expected in str(exc.value), str(exc.value)


def test_the_fabrics_bounds_are_the_links_bounds():
    """A fabric value its summary.json takes is one a link of the scenario takes (the bounds are written twice:
    sim.contract cannot import sim.scenario)."""
    from sim import scenario

    probe = dict(hosts=("a", "b"), hops=1, latency_s=0.0, throughput_bps=1e6, rate_bps=1e6)
    link = dict(latency_s=0.0, bandwidth_bps=1e6)
    values = {
        ("latency_s", "latency_s"): [0.0, -1e-9, scenario.MAX_DELAY_S, scenario.MAX_DELAY_S * 1.001],
        ("throughput_bps", "bandwidth_bps"): [scenario.MIN_BANDWIDTH_BPS, scenario.MIN_BANDWIDTH_BPS * 0.999,
                                              scenario.MAX_BANDWIDTH_BPS, scenario.MAX_BANDWIDTH_BPS * 1.001],
        ("rate_bps", "bandwidth_bps"): [scenario.MIN_BANDWIDTH_BPS * 0.999, scenario.MAX_BANDWIDTH_BPS * 1.001],
        ("burst_bytes", "burst_bytes"): [0, -1, scenario.MAX_BURST_BYTES, scenario.MAX_BURST_BYTES + 1],
    }  # fmt: skip

    def takes(model: type, data: dict) -> bool:
        try:
            model.model_validate(data)
        except ValueError:
            return False
        return True

    for (ours, theirs), vs in values.items():
        for v in vs:
            ok = takes(scenario.LinkParams, link | {theirs: v})
            assert takes(contract.FabricProbe, probe | {ours: v}) == ok, (ours, v)
    # the machine's kernel: what ``Transport.host_rate_bps`` takes (``--fabric-of`` sets it)
    for v in (
        0.0,
        0.5,
        scenario.MIN_BANDWIDTH_BPS,
        -1.0,
        scenario.MAX_BANDWIDTH_BPS,
        scenario.MAX_BANDWIDTH_BPS * 1.001,
    ):
        ok = takes(scenario.Transport, {"host_rate_bps": v})
        assert takes(contract.FabricProbe, probe | {"kernel_rate_bps": v}) == ok, v


def test_a_measured_nodes_duplicated_spans_are_left_out_and_counted(tmp_path):
    """A node's spans file holding its rows twice (written twice over): each row is kept once, and the copies are
    counted among the rows left out, so the twin's merge says how many."""
    df = contract.to_frame(rows())
    path = tmp_path / "aggregator.parquet"
    contract.write_spans(pd.concat([df, df.iloc[:2], df]), path)
    kept, total, left_out = contract.read_valid_spans(path)
    assert kept.to_dict("records") == df.to_dict("records") and total == 2 * len(df) + 2
    assert left_out == {contract.DUPLICATE_SPANS: len(df) + 2}
    other = df.assign(start_s=df.start_s + 1e-9, end_s=df.end_s + 1e-9)  # a nanosecond apart: another activity
    contract.write_spans(pd.concat([df, other]), path)
    assert contract.read_valid_spans(path)[2] == {}


TWO_ROWS = [contract.SpanRow(0, 1, "client-é", "pi-2", "train", "fl.train", 1.0, 2.5, 0.0, 0),
            contract.SpanRow(1, 2**31 - 1, "aggregator", "pi-1", "upload", "transfer", np.float64(3.25), 1e9, 1e-9,
                             np.int64(2**40))]  # fmt: skip


@pytest.mark.parametrize("rows", [[], TWO_ROWS], ids=["none", "two"])
def test_a_nodes_spans_written_from_its_rows_are_the_tables_bytes_read_back(rows):
    """``rows_bytes`` (a node's end, no pandas) reads back as ``spans_bytes`` of the same rows as a table."""
    import io

    ours, theirs = contract.rows_bytes(rows), contract.spans_bytes(contract.to_frame(rows))
    assert pq.read_schema(io.BytesIO(ours)).remove_metadata() == pq.read_schema(io.BytesIO(theirs)).remove_metadata()
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(ours)), pd.read_parquet(io.BytesIO(theirs)))


def test_a_delayed_links_latency_and_jitter_go_on_top_of_the_fabrics_own_in_the_simulation():
    """The netns fabric delays a link of 0.5 ms or more in user space (hw/delayline.py) and warns only the
    smaller ones; a run's summary records the delayed links, and ``--fabric-of`` gives each its latency on top
    of the fabric's own and its jitter, every other link the fabric's own and none."""
    from hw.netns import DELAY_FROM_S, delays, not_applied

    paper = SCENARIOS / "paper-3node.yaml"
    s = load_scenario(paper, ["deployment.network.links.2.preset=wifi-5ghz"])
    assert delays(s) == [contract.LinkDelay(link=2, latency_s=0.003, jitter_s=0.001)]
    warned = not_applied(s)
    assert warned is not None and "pi-1-switch, pi-2-switch:" in warned and "pi-3" not in warned
    assert f"under {DELAY_FROM_S * 1e3:g} ms" in warned
    assert not_applied(load_scenario(paper, ["deployment.network.links.*.preset=wifi-5ghz"])) is None
    probe = contract.FabricProbe(hosts=("pi-1", "pi-3"), hops=2, latency_s=8e-5, throughput_bps=7.7e7,
                                 rate_bps=7.7e7, delays=delays(s))  # fmt: skip
    assert contract.FabricProbe.model_validate_json(probe.model_dump_json()) == probe
    assert "1 link delayed on top in user space (latency 3 ms)" in probe.describe()
    simulated = load_scenario(paper, ["deployment.network.links.2.preset=wifi-5ghz", *probe.overrides()])
    links = [link.resolved() for link in simulated.deployment.network.links]
    assert [(lat, jit) for _, lat, jit, _ in links] == [(8e-5, 0.0), (8e-5, 0.0), (pytest.approx(3.08e-3), 0.001)]
    with pytest.raises(ValueError, match="latency_s"):
        contract.FabricProbe.model_validate({**probe.model_dump(), "delays": [{"link": 0, "latency_s": -1,
                                                                               "jitter_s": 0}]})  # fmt: skip


def test_a_spans_value_that_is_not_utf8_is_one_line_strictly_and_its_row_left_out_of_a_nodes_spans(tmp_path):
    """Parquet's reader does not check that a string is UTF-8: a byte flipped in a node's op name
    ("ML-DSA-\\xff5.verify", bench/fuzz_rundirs.py) reached pandas, whose ArrowException ended ``pqtwin hw recover``
    in an internal error. Read strictly it is one line naming the column; a node's spans leave the row out."""
    df = contract.to_frame(rows())
    path = tmp_path / "client-2.parquet"
    pq.write_table(pa.Table.from_pandas(df, schema=contract.span_schema(), preserve_index=False), path,
                   compression="NONE", use_dictionary=False, write_statistics=False)  # fmt: skip
    data = bytearray(path.read_bytes())
    name = df.op.iloc[1].encode()
    at = [i for i in range(len(data)) if data.startswith(name, i)]
    assert len(at) == df.op.eq(df.op.iloc[1]).sum()  # one copy a row: the data, no statistics to match
    data[at[0] + 1] = 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as exc:
        contract.read_spans(path)
    assert str(exc.value) == f"{path}: column 'op' has values that are not text (UTF-8), 1 of them"
    kept, total, left_out = contract.read_valid_spans(path)
    assert total == len(df) and len(kept) == len(df) - 1
    assert left_out == {"column 'op' has values that are not text (UTF-8)": 1}
    kept.op.map(len)  # the rows kept are text: pandas can work on them
