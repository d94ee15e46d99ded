"""The FL model: determinism, seeds, confidence intervals, modes, quorum, faults, accounting."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import stats

from sim import catalogue
from sim.contract import RECORD_HEADER_BYTES, Summary
from sim.errors import UserError
from sim.runner import simulate, simulate_modes
from sim.scenario import load_scenario
from sim.summary import mode_comparison

from .conftest import SCENARIOS

PAPER = SCENARIOS / "paper-3node.yaml"
LOCAL = SCENARIOS / "localhost.yaml"


def paper(*overrides: str):
    return load_scenario(PAPER, ["workload.fl.rounds=3", *overrides])


def without_wall(summary: Summary) -> dict:
    return summary.model_dump(exclude={"wall_s", "peak_rss_bytes"})  # facts of the process, not of the model


def test_same_seed_same_summary_other_seed_differs():
    s = paper()
    a, b = simulate(s, seed=5, replications=2), simulate(s, seed=5, replications=2)
    assert without_wall(a.summary) == without_wall(b.summary)
    assert a.spans.equals(b.spans)
    c = simulate(s, seed=6, replications=2)
    assert c.summary.round_latency_s.mean != a.summary.round_latency_s.mean
    assert a.summary.seed == 5 and "spawn" in (a.summary.seed_streams or "")


@pytest.mark.parametrize("workers", [1, 2])
def test_modes_in_one_pool_are_each_mode_alone(workers):
    """Both modes share a pool (and, in one process, the replications' seeds): each still gets its own."""
    s = paper()
    together = dict(simulate_modes(s, ["sequential", "concurrent"], seed=5, replications=3, workers=workers))
    for mode in ("sequential", "concurrent"):
        alone = simulate(s, mode, seed=5, replications=3)
        assert without_wall(together[mode].summary) == without_wall(alone.summary), mode
        assert together[mode].spans.equals(alone.spans), mode


def test_ci_width_shrinks_as_one_over_sqrt_replications():
    s = paper("workload.fl.rounds=2")
    se = {}
    for n in (10, 90):
        ci = simulate(s, "sequential", seed=1, replications=n).summary.round_latency_s.ci95
        se[n] = (ci[1] - ci[0]) / stats.t.ppf(0.975, n - 1)  # the standard error, t-quantile taken out
    ratio = se[10] / se[90]  # expect sqrt(90 / 10) = 3
    assert 2.0 < ratio < 4.5, ratio


def test_concurrent_beats_sequential_from_the_model():
    s = paper()
    seq = simulate(s, "sequential", replications=3).summary
    conc = simulate(s, "concurrent", replications=3).summary
    cmp = mode_comparison(seq, conc)  # paired over replications (common random numbers)
    assert cmp["round_latency_s"]["reduction_ci95"][0] > 0
    assert cmp["model_distribution_s"]["reduction_ci95"][0] > 0.1


def test_every_round_has_each_client_train_and_all_phases():
    s = paper()
    df = simulate(s, "sequential", replications=1).spans
    fl = df[df["round"] > 0]
    trains = fl[fl.op == "fl.train"].groupby("round").pod.nunique()
    assert (trains == 2).all() and len(trains) == 3
    assert {"distribute", "receive", "train", "upload", "verify", "aggregate"} <= set(fl.phase)
    assert (df.end_s >= df.start_s).all() and (df.queue_wait_s >= 0).all()


def test_message_sizes_follow_the_catalogue():
    s = paper()
    df = simulate(s, "sequential", replications=1).spans
    fl = s.workload.fl
    kem, sig, aead = (catalogue.get(x) for x in ("ML-KEM-768", "ML-DSA-65", "AES-256-GCM"))
    body = fl.header_bytes + fl.model_bytes + sig.signature_bytes + aead.aead_overhead_bytes + kem.ciphertext_bytes
    expected = RECORD_HEADER_BYTES + body  # the twin's record header; the AEAD nonce is implicit
    sizes = set(df[(df.op == "transfer") & df.phase.isin(["distribute", "upload"])]["bytes"])
    assert sizes == {expected}
    hs = df[(df.op == "transfer") & (df.phase == "handshake")]
    assert set(hs["round"]) == {0}  # per_message: one session handshake before the rounds
    hs = simulate(paper("workload.crypto.rekey.fl=per_round"), replications=1).spans
    sizes = set(hs[(hs.op == "transfer") & (hs.phase == "handshake")]["bytes"])
    assert kem.public_key_bytes + sig.signature_bytes + sig.public_key_bytes in sizes


def test_bigger_signatures_cost_more_wire_and_time():
    small = simulate(paper("workload.crypto.signature=ML-DSA-44"), replications=2).summary
    big = simulate(paper("workload.crypto.signature=SLH-DSA-SHA2-128s"), replications=2).summary
    assert big.application_bytes.total > small.application_bytes.total
    assert (big.round_latency_s.mean or 0) > (small.round_latency_s.mean or 0) + 1.0  # 1.5 s signing each


def test_quorum_lets_rounds_finish_without_dropouts():
    s = paper("workload.fl.quorum=0.5", "workload.fl.dropout_probability=0.6", "workload.fl.rounds=12",
              "workload.fl.round_timeout_s=5")  # fmt: skip
    summ = simulate(s, "concurrent", replications=2).summary
    assert summ.rounds_completed + summ.rounds_failed == 24
    assert summ.rounds_completed > summ.rounds_failed > 0  # failed: both clients dropped out
    strict = simulate(paper("workload.fl.dropout_probability=0.5", "workload.fl.round_timeout_s=5"), replications=2)
    assert strict.summary.rounds_failed > 0


def test_overload_is_flagged():
    # training asks pi-2 for ~375 core-seconds within a 20 s horizon: one call runs on one of 4 cores, so it
    # offers at most 20 core-seconds of the 80: the run is too short, not the host overloaded
    s = paper("workload.fl.samples_per_client=1000000", "run.horizon_s=20")
    summ = simulate(s, "sequential", replications=1).summary.model_dump()
    assert not summ["host_utilization"]["pi-2"]["overloaded"]
    assert 0.2 < summ["host_utilization"]["pi-2"]["offered"] < 0.26
    assert any("completed no round" in w for w in summ["warnings"])
    assert not any("overloaded" in w for w in summ["warnings"]), summ["warnings"]
    # concurrent distribution of two 1 MB models over a 1 kbit/s uplink: two messages ask the link the whole run
    s = paper("deployment.network.links.0.bandwidth_bps=1000", "run.horizon_s=20")
    summ = simulate(s, "concurrent", replications=1).summary.model_dump()
    assert summ["link_utilization"]["pi-1->switch"]["overloaded"]
    assert any("link pi-1->switch is overloaded" in w for w in summ["warnings"]), summ["warnings"]


def test_host_utilisation_and_crypto_share_are_fractions():
    summ = simulate(
        load_scenario(SCENARIOS / "ward-200.yaml", ["workload.fl.rounds=2"]), replications=1
    ).summary.model_dump()
    assert 0 < summ["crypto_share"] < 1
    assert all(0 < h["offered"] < 1 for h in summ["host_utilization"].values())
    assert summ["telemetry"]["frames"] > 0 and summ["application_bytes"]["by_phase"]["telemetry"] > 0


def test_replications_are_independent_streams():
    df = simulate(paper(), replications=2).spans
    r = df[df.phase == "round"]
    a, b = (r[r.replication == i].end_s.to_numpy() - r[r.replication == i].start_s.to_numpy() for i in (0, 1))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_distribution_is_part_of_the_round(mode):
    summ = simulate(paper(), mode, replications=2).summary.model_dump()
    assert 0 < summ["model_distribution_s"]["mean"] < summ["round_latency_s"]["mean"]


def test_a_host_at_another_cpu_speed_divides_every_cost_by_it(tmp_path):
    """deployment.hosts[].cpu_speed: the same profile on slower (or faster) cores; the same seed draws the same
    samples, so a CPU step is 1 / speed as long. A training step of fixed cost (no spread: the order in which
    a host's steps draw from its stream moves with the unscaled network), on run-to-completion cores (fifo),
    without contention between trainings: its span minus its wait is its cost, whatever ran beside it."""
    data = yaml.safe_load((SCENARIOS / "profiles" / "ci-x86.yaml").read_text())
    data["ops"]["fl.train"].pop("pair_slowdown", None)
    data["ops"]["fl.train"]["cv"] = 0.0
    profile = tmp_path / "no-contention.yaml"
    profile.write_text(yaml.safe_dump(data))
    fifo = ["workload.fl.rounds=2", "deployment.hosts.*.cpu_sharing=fifo"]
    base = load_scenario(LOCAL, fifo, profile)
    slow = load_scenario(LOCAL, [*fifo, "deployment.hosts.*.cpu_speed=0.5"], profile)
    prof = slow.host_profile(slow.deployment.hosts[0].name)
    assert prof.time_scale == 2.0 and base.host_profile(base.deployment.hosts[0].name).time_scale == 1.0
    op = "ML-DSA-65.sign"
    assert prof.cost_s(op, np.random.default_rng(4)) == pytest.approx(
        2 * base.host_profile(base.deployment.hosts[0].name).cost_s(op, np.random.default_rng(4))
    )
    rng = np.random.default_rng(1)
    assert np.allclose(prof.at_speed(2.0).costs_s(op, rng, 0, 5), prof.op(op).costs_s(np.random.default_rng(1), 0, 5))
    a, b = simulate(base, "sequential", 7, 1).spans, simulate(slow, "sequential", 7, 1).spans
    work = lambda df: df[df.op == "fl.train"].pipe(lambda t: (t.end_s - t.start_s - t.queue_wait_s).to_numpy())  # noqa: E731
    assert np.allclose(work(b) / work(a), 2.0, rtol=1e-9), work(b) / work(a)


def test_cpu_speed_must_be_positive():
    with pytest.raises(UserError, match=r"cpu_speed"):
        load_scenario(LOCAL, ["deployment.hosts.*.cpu_speed=0"])


def test_ed25519_hashes_the_message_twice_when_signing():
    """PureEdDSA (RFC 8032 5.1.6) hashes the message for the nonce and for the challenge; verifying, once."""
    s = load_scenario(LOCAL, ["workload.fl.rounds=1", "workload.crypto.signature=Ed25519"])
    df = simulate(s, "sequential", 1, 1).spans
    hashed = df[df.op == "SHA-512.hash"]
    sign = hashed[hashed.phase == "distribute"]["bytes"].iloc[0]
    verify = hashed[hashed.phase == "receive"]["bytes"].iloc[0]
    assert sign == 2 * verify == 2 * s.workload.fl.model_parameters * s.workload.fl.bytes_per_parameter


def test_a_profile_file_cannot_set_a_host_speed(tmp_path):
    """Speed is the scenario's (cpu_speed), never written into a profile file, nor read from one."""

    from sim.profile import load_profile

    src = SCENARIOS / "profiles" / "ci-x86.yaml"
    prof = load_profile(src)
    assert "time_scale" not in prof.at_speed(0.5).model_dump()
    data = yaml.safe_load(src.read_text()) | {"time_scale": 2.0}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"p.yaml: time_scale: not a profile field"):
        load_profile(tmp_path / "p.yaml")


WITH_KEYS = [f"workload.devices.{p}.first_frame=with_keys" for p in ("ecg-a", "ecg-b")]
AFTER = [f"workload.devices.{p}.first_frame=after_handshake" for p in ("ecg-a", "ecg-b")]


def test_with_keys_a_sessions_first_frame_queues_behind_the_handshakes_last_message():
    """first_frame: with_keys (what the twin's devices do): the first frame of a session leaves right after the
    device hands over its last handshake message, so it waits for that message on the device's link and for
    the pod's decapsulation and verification; the frames after it do not wait. The handshake itself is the
    same in both semantics."""
    run = ["run.stop_at=horizon", "run.horizon_s=20", "run.engine=events", "workload.fl.rounds=1"]
    after = simulate(load_scenario(LOCAL, [*run, *AFTER]), "sequential", 3, 1)
    keys = simulate(load_scenario(LOCAL, [*run, *WITH_KEYS]), "sequential", 3, 1)
    lat = lambda r: (lambda f: (f.end_s - f.start_s).to_numpy())(r.spans[r.spans.op == "frame"])  # noqa: E731
    sessions = len(keys.spans[(keys.spans.phase == "telemetry") & keys.spans.op.str.endswith(".decaps")])
    slow = lat(keys) > 3 * np.median(lat(after))
    assert slow.sum() == sessions == 8  # one first frame per device session, and only those
    assert not (lat(after) > 3 * np.median(lat(after))).any()
    msg3_s = 4400 * 8 / 1e6  # ~4.4 kB (ciphertext, signature, public key) at BLE's 1 Mbit/s, at least
    assert np.min(lat(keys)[slow]) > msg3_s
    assert np.allclose(np.sort(lat(keys)[~slow])[:5], np.sort(lat(after))[:5], rtol=0.2)
    hs = lambda r: r.summary.telemetry.handshake_s  # noqa: E731 - request to completion, as before
    assert hs(keys) is not None and hs(keys).p50 == pytest.approx(hs(after).p50, rel=0.02)


def test_with_keys_holds_for_a_gateway_that_runs_the_session():
    """key_establishment: gateway with first_frame: with_keys -- the gateway forwards the device's frames once it
    has the session's keys, before the pod has checked its last message: every device's first frame leaves
    earlier than when the gateway waits for the handshake to complete."""
    run = ["run.stop_at=horizon", "run.horizon_s=5", "run.engine=events", "workload.fl.rounds=1"]
    gw = [f"workload.devices.{p}.key_establishment=gateway" for p in ("ecg-a", "ecg-b")]
    first = {}
    for name, sets in (("after", AFTER), ("keys", WITH_KEYS)):
        spans = simulate(load_scenario(LOCAL, [*run, *gw, *sets]), "sequential", 1, 1).spans
        frames = spans[spans.op == "frame"]
        first[name] = frames.groupby("host").start_s.min()
    assert len(first["keys"]) == 8 and (first["keys"] < first["after"]).all()


def _distribution_round(s, rnd: int = 2):
    df = simulate(s, "sequential", seed=3, replications=1).spans
    d = df[(df["round"] == rnd) & (df.pod == "aggregator") & (df.phase == "distribute")].sort_values("start_s")
    transfers = d[d.op == "transfer"]
    signs = d[d.op.str.endswith(".sign")]
    return transfers, signs


def test_a_sequential_sender_goes_on_once_the_kernel_holds_its_message():
    """The aggregator signs client 2's model while client 1's crosses the network (a blocking socket returns
    once the bytes are buffered: on the netns backend the twin's two transfers overlap); with no send buffer,
    or over loopback (the send is the copy), it waits for each."""
    transfers, signs = _distribution_round(paper())
    assert len(transfers) == 2 and len(signs) == 2
    first_arrives = transfers.end_s.iloc[0]
    assert signs.start_s.iloc[1] < first_arrives  # preparing the second while the first is on the wire
    transfers, signs = _distribution_round(paper("deployment.network.transport.send_buffer_bytes=0"))
    assert signs.start_s.iloc[1] >= transfers.end_s.iloc[0]
    big = paper("workload.fl.model_parameters=2000000")  # 8 MB: more than the 4 MiB buffer
    transfers, signs = _distribution_round(big)
    assert signs.start_s.iloc[1] >= transfers.end_s.iloc[0]
    local = load_scenario(LOCAL, ["workload.fl.rounds=3", "workload.devices.0.count=0", "workload.devices.1.count=0"])
    transfers, signs = _distribution_round(local)
    assert signs.start_s.iloc[1] >= transfers.end_s.iloc[0]


def test_a_machine_puts_every_host_on_its_cores_and_is_checked(tmp_path):
    """paper-3node on one 2-core machine (as the netns backend runs it): the clients' concurrent trainings share
    its cores with everything else, so rounds take longer than on three 4-core hosts; a fifo host is refused by
    field; the kernels leave such a scenario to the event model."""
    apart = simulate(paper(), "concurrent", seed=2, replications=2).summary.round_latency_s.mean
    one = simulate(paper("deployment.machine.cores=2"), "concurrent", seed=2, replications=2).summary
    assert one.round_latency_s.mean > apart
    with pytest.raises(UserError) as err:
        paper("deployment.machine.cores=2", "deployment.hosts.0.cpu_sharing=fifo")
    assert "deployment.hosts[0].cpu_sharing" in str(err.value)
    # one scheduler for the machine: every host Linux's (threads placed on its cores, as netns runs are
    # simulated), or every host processor sharing; a mix is refused by the field of the host that differs
    placed = simulate(paper("deployment.machine.cores=2", "deployment.hosts.*.cpu_sharing=linux"), "concurrent",
                      seed=2, replications=2).summary  # fmt: skip
    assert placed.round_latency_s.mean > apart and placed.round_latency_s.mean != one.round_latency_s.mean
    with pytest.raises(UserError) as err:
        paper("deployment.machine.cores=2", "deployment.hosts.0.cpu_sharing=linux")
    assert "deployment.hosts[1].cpu_sharing" in str(err.value) and "linux, as its first host's" in str(err.value)
    from sim.telemetry import engine_for

    ward = load_scenario(SCENARIOS / "ward-200.yaml", ["deployment.machine.cores=2", "run.engine=auto"])
    assert engine_for(ward) == "events"


@pytest.mark.parametrize(("threshold", "left"), [(0, 1), (10**12, 4)])
def test_replications_in_one_process_do_not_keep_each_others_garbage(monkeypatch, threshold, left):
    """Each replication freezes the objects alive when it is built (sim/runner.py ``_built``), the last one's
    garbage among them: without a collection in between, a process running replications one after another keeps
    every one it ran (ward-200 with long trainings: 0.24, 0.31, 0.37 GB for three; here all four, where none is
    big enough). After one of at least ``COLLECT_AFTER_EVENTS`` events, the next collects first: only the last
    one's is left."""
    import gc

    from sim import runner
    from sim.model import Replication

    monkeypatch.setattr(runner, "COLLECT_AFTER_EVENTS", threshold)  # 0: every replication counts as big
    monkeypatch.setattr(runner, "_last_events", 0)
    gc.collect()
    simulate(load_scenario(SCENARIOS / "paper-3node.yaml", ["run.replications=4", "workload.fl.rounds=1"]), workers=1)
    assert sum(isinstance(o, Replication) for o in gc.get_objects()) == left
    gc.collect()


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
@pytest.mark.parametrize(
    ("name", "sets"),
    [
        ("paper-3node.yaml", ["run.replications=1", "workload.fl.rounds=2"]),
        ("localhost.yaml", ["run.replications=1", "workload.fl.rounds=2"]),
        ("ward-200.yaml", ["run.replications=1", "run.horizon_s=30", "run.engine=events"]),
        ("ward-200.yaml", ["run.replications=1", "run.horizon_s=30", "run.engine=vectorized",
                           "workload.devices.0.count=400"]),
    ],
)  # fmt: skip
def test_no_event_of_the_model_wakes_two_processes(monkeypatch, name, sets, mode):
    """The fast paths that take a step without an event (``Network._carry_flow``, ``SharedCores.alone_s``) look at
    SimPy's queue: nothing scheduled comes first. A second process woken by the same event as the one taking them
    would run after them at the current instant, unseen (two processes waiting on one event, each asking a core:
    2 s each with the fast path, 3 s without). No event of the model wakes two processes; this pins it."""
    import simpy

    from sim import model
    from sim.checkpoint import Fork

    most = [0]

    class Watched(model.CountingEnvironment):
        def step(self) -> None:
            if self._queue:
                callbacks = self._queue[0][3].callbacks or []
                resumes = sum(isinstance(getattr(cb, "__self__", None), simpy.Process) for cb in callbacks)
                most[0] = max(most[0], resumes)
            super().step()

    monkeypatch.setattr(model, "CountingEnvironment", Watched)
    monkeypatch.setattr(Fork, "enabled", False)  # every pass in this process, where it is watched
    simulate(load_scenario(SCENARIOS / name, [*sets, f"workload.processing.mode={mode}"]), mode, workers=1)
    assert most[0] == 1


def test_on_one_machine_a_send_over_fast_links_holds_its_sender_until_it_arrives():
    """Hosts emulated on one machine (the netns backend): over links of ``Machine.send_held_from_bps`` and up the
    kernel moves the whole message in the sending thread (bench/send_hold.py), so the aggregator signs client 2's
    model only once client 1's has arrived; over slower links it goes on as on separate hosts."""
    held = paper("deployment.machine.cores=2")
    transfers, signs = _distribution_round(held)
    assert signs.start_s.iloc[1] >= transfers.end_s.iloc[0]
    slower = paper("deployment.machine.cores=2", "deployment.network.links.*.bandwidth_bps=7e8")
    transfers, signs = _distribution_round(slower)
    assert signs.start_s.iloc[1] < transfers.end_s.iloc[0]
    never = paper("deployment.machine.cores=2", "deployment.machine.send_held_from_bps=1e12")
    transfers, signs = _distribution_round(never)
    assert signs.start_s.iloc[1] < transfers.end_s.iloc[0]
