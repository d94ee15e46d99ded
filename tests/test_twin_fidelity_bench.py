"""bench/twin_fidelity.py's per-phase breakdown: which phases of the round a matrix cell's error comes from."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml

from .conftest import ROOT, LoopbackAddressing, bench_module


@pytest.fixture(scope="module")
def bench() -> Any:
    return bench_module("twin_fidelity")


def _metric(sim_p50: float, hw_p50: float) -> dict[str, Any]:
    err = 100 * (sim_p50 - hw_p50) / hw_p50
    return {"sim_p50": sim_p50, "hw_p50": hw_p50, "error_p50_pct": err, "error_p50_ci95": [err - 3, err + 3]}


def test_phase_errors_take_each_phase_compare_measured(bench: Any) -> None:
    metrics = {
        "round_latency_s": _metric(0.150, 0.140),
        "model_distribution_s": _metric(0.040, 0.035),
        "phase_s.train": _metric(0.074, 0.071),
        "phase_s.verify": _metric(0.030, 0.024),
        "phase_s.upload": {"sim_p50": 0.02, "hw_p50": 0.0, "error_p50_pct": None},  # a zero median: no error
    }
    got = bench.phase_errors(metrics)
    assert list(got) == ["distribution", "train", "verify"]  # the round's order; upload has no error, receive none
    assert got["verify"]["sim_p50_s"] == 0.030 and got["verify"]["hw_p50_s"] == 0.024
    assert got["verify"]["error_p50_pct"] == pytest.approx(25.0)
    assert got["distribution"]["error_p50_ci95"] == pytest.approx([11.29, 17.29], abs=0.01)


def test_print_phases_names_the_phase_furthest_off(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    head = {"layout": "localhost", "suite": "PQC L3", "model_parameters": 1_000_000}
    phases = bench.phase_errors({
        "model_distribution_s": _metric(0.040, 0.030),  # the most ms off, but it spans the others: not named
        "phase_s.train": _metric(0.074, 0.071),
        "phase_s.verify": _metric(0.018, 0.024),
    })  # fmt: skip
    cells = [head | {"mode": "concurrent", "phases": phases}, head | {"mode": "sequential", "error": "failed"}]
    bench.print_phases(cells)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("per phase") and "furthest off" in out[1]
    assert len(out) == 3  # the failed cell has no phases: no row
    row = out[2]
    assert "+33% (+10.0)" in row and "+4% (+3.0)" in row and "-25% (-6.0)" in row
    assert row.endswith("verify -6.00 ms")
    assert row.count(" - ") >= 4  # receive, upload, aggregate, distribute: not measured


def test_the_wifi_layout_is_the_papers_on_delayed_links_and_a_kept_run_says_its_layout(bench: Any) -> None:
    """``--netns`` adds the paper's layout on Wi-Fi (hw/delayline.py applies its latency and jitter); a kept run's
    directory name says its layout, checked against the backend it ran on."""
    assert bench.NETNS_LAYOUTS == ("paper-3node netns", "paper-wifi netns")
    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    wifi = bench.Cell("paper-wifi netns", "concurrent", "PQC L3", 250_000).scenario(profile, 2)
    assert {link.resolved()[1:] for link in wifi.deployment.network.links} == {(0.003, 0.001, 0.001)}
    for name, backend, layout in (("hw-paper-wifi-netns-concurrent-PQCL3-250000-0", "netns", "paper-wifi netns"),
                                  ("hw-paper-3node-netns-sequential-PQCL3-250000-1", "netns", "paper-3node netns"),
                                  ("hw-localhost-sequential-PQCL3-50000-0", "local", "localhost")):  # fmt: skip
        assert bench._layout_of(name, backend) == layout
    for name, backend in (("hw-paper-wifi-netns-concurrent-PQCL3-250000-0", "local"), ("hw-elsewhere-x-0", "netns")):
        with pytest.raises(ValueError, match="named as none of the layouts"):
            bench._layout_of(name, backend)


def test_a_netns_cell_is_simulated_behind_the_machines_sending_kernel(bench: Any) -> None:
    """``--netns``: the kernel rate measured once before the matrix reaches the netns cells' scenario as
    ``Transport.host_rate_bps`` (bench/net_fidelity.py's model of the machine's kernel), and only theirs."""
    netns_cell = bench.Cell("paper-3node netns", "sequential", "PQC L3", 250_000)
    local_cell = bench.Cell("localhost", "sequential", "PQC L3", 50_000)
    assert bench.fabric(local_cell, [], 3e9) == ()
    sets = bench.fabric(netns_cell, [], 2.9e9)
    assert "deployment.network.transport.host_rate_bps=2.9e+09" in sets
    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    assert netns_cell.scenario(profile, 2, sets).deployment.network.transport.host_rate_bps == 2.9e9
    assert netns_cell.scenario(profile, 2, bench.fabric(netns_cell, [])).deployment.network.transport.host_rate_bps == 0


def test_rescore_takes_the_kernel_rate_its_matrix_kept(bench: Any, tmp_path: Path) -> None:
    assert bench.kept_kernel(tmp_path) is None  # kept before the rate, or no netns cells
    (tmp_path / bench.KERNEL_FILE).write_text('{"host_rate_bps": 2.9e9}\n')
    assert bench.kept_kernel(tmp_path) == 2.9e9
    for bad in ('{"host_rate_bps": -1}', '{"host_rate_bps": "fast"}', "[1, 2]", "{", '{"rate": 1e9}', "\udcff"):
        (tmp_path / bench.KERNEL_FILE).write_text(bad, errors="surrogateescape")
        with pytest.raises(SystemExit) as e:
            bench.kept_kernel(tmp_path)
        assert str(e.value).startswith(f"--rescore: {tmp_path / bench.KERNEL_FILE}: host_rate_bps")
        assert "\n" not in str(e.value)


def test_training_steps_say_how_long_and_how_much_beside_the_other_training(bench: Any, tmp_path: Path) -> None:
    """Per run: each ``fl.train`` span's duration and the share of it another pod's training overlapped, on the
    same replication's clock only; the medians over the runs."""
    from sim.contract import RunLayout, to_frame, write_spans

    rows = [  # client-1 alone for 10 ms of its 40, client-2 beside it for 30 of its 30; replication 1 is apart
        (0, 1, "client-1", "local", "train", "fl.train", 0.000, 0.040, 0.0, 0),
        (0, 1, "client-2", "local", "train", "fl.train", 0.010, 0.040, 0.0, 0),
        (0, 1, "aggregator", "local", "aggregate", "fl.fedavg", 0.040, 0.041, 0.0, 0),
        (1, 1, "client-1", "local", "train", "fl.train", 0.000, 0.050, 0.0, 0),
    ]
    d = tmp_path / "run"
    d.mkdir()
    write_spans(to_frame(rows), RunLayout(d).spans)
    got = bench.training_steps([d])
    assert got["steps"] == 3
    assert got["step_p50_s"] == pytest.approx(0.040)
    assert got["beside_training_p50"] == pytest.approx(0.75)  # shares 0.75, 1.0 and 0 (alone on its clock)
    assert got["ends_apart_p50_s"] == 0.0  # round 1 of replication 0 ends both at 40 ms; replication 1 has one step
    empty = tmp_path / "none"
    empty.mkdir()
    write_spans(to_frame(rows[2:3]), RunLayout(empty).spans)
    assert bench.training_steps([empty]) is None
    apart = tmp_path / "apart"  # two rounds whose steps end 5 and 15 ms apart: the median, 10 ms
    apart.mkdir()
    write_spans(to_frame([(0, r, f"client-{k}", "local", "train", "fl.train", 0.1 * r, 0.1 * r + 0.02 + k * gap, 0.0, 0)
                          for r, gap in ((1, 0.005), (2, 0.015)) for k in (0, 1)]), RunLayout(apart).spans)  # fmt: skip
    assert bench.training_steps([apart])["ends_apart_p50_s"] == pytest.approx(0.010)


def test_training_steps_tell_a_rounds_first_started_step_from_its_last(bench: Any, tmp_path: Path) -> None:
    """A sequential round starts its clients one after the other: the median step of each round's first-started
    client and of its last-started, whichever pod that is; rounds with one step and round 0 count in neither."""
    from sim.contract import RunLayout, to_frame, write_spans

    rows = [  # round 1: client-2 starts first (50 ms), client-1 10 ms later (30 ms); round 2: client-1 first (60 ms)
        (0, 1, "client-2", "local", "train", "fl.train", 0.000, 0.050, 0.0, 0),
        (0, 1, "client-1", "local", "train", "fl.train", 0.010, 0.040, 0.0, 0),
        (0, 2, "client-1", "local", "train", "fl.train", 1.000, 1.060, 0.0, 0),
        (0, 2, "client-2", "local", "train", "fl.train", 1.012, 1.044, 0.0, 0),
        (0, 3, "client-1", "local", "train", "fl.train", 2.000, 2.500, 0.0, 0),  # alone: neither
        (0, 0, "client-1", "local", "train", "fl.train", 3.000, 3.900, 0.0, 0),  # round 0: neither
        (0, 0, "client-2", "local", "train", "fl.train", 3.100, 3.200, 0.0, 0),
    ]
    d = tmp_path / "run"
    d.mkdir()
    write_spans(to_frame(rows), RunLayout(d).spans)
    got = bench.training_steps([d])
    assert got["first_p50_s"] == pytest.approx(0.055)
    assert got["last_p50_s"] == pytest.approx(0.031)
    line = bench._first_last(None, got)
    assert line == ", first / last-started step - simulated, 55.0 / 31.0 measured"
    single = tmp_path / "single"
    single.mkdir()
    write_spans(to_frame(rows[4:5]), RunLayout(single).spans)
    alone = bench.training_steps([single])
    assert alone["first_p50_s"] is None and alone["last_p50_s"] is None
    assert bench._first_last(got, alone) == ""


def test_at_pair_puts_the_largest_model_at_the_matrix_pair_state(bench: Any, tmp_path: Path) -> None:
    """The fitted profile with fl.train's pair slowdown at the largest model's step (samples x parameters) set to
    the median of the passes' measurements; every other point kept; nothing without measurements."""
    import yaml

    from sim.profile import load_profile

    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    assert bench.at_pair(profile, [], tmp_path / "p.yaml") is None
    out = bench.at_pair(profile, [1.3, 1.1, 1.2], tmp_path / "p.yaml")
    units = bench.largest_step()[1]
    assert units == 500 * max(bench.SIZES)  # localhost.yaml: 500 samples a client, one epoch
    pairs = load_profile(out).ops["fl.train"].pair_slowdown
    assert [u for u, _ in pairs] == sorted(u for u, _ in pairs)
    assert [f for u, f in pairs if abs(u / units - 1) <= 0.01] == [pytest.approx(1.2)]
    before = yaml.safe_load(profile.read_text())["ops"]["fl.train"].get("pair_slowdown") or []
    kept = [p for p in before if abs(p[0] / units - 1) > 0.01]
    assert [list(p) for p in pairs if abs(p[0] / units - 1) > 0.01] == [pytest.approx(p) for p in kept]


def test_memory_as_measured_puts_training_at_the_step_measured_alone(bench: Any, tmp_path: Path) -> None:
    """At speed, the work that runs from memory keeps its price on cores ``speed`` x as fast (``cpu_speed``
    divides it again); at state, ``fl.train``'s whole line is ``train`` x as dear besides; FedAvg stays at its
    price, the other ops as they were."""
    from sim.profile import load_profile

    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    before = load_profile(profile)
    units = bench.largest_step()[1]
    train, fedavg = before.ops["fl.train"], before.ops["fl.fedavg"]
    speed = 0.7
    at_speed = load_profile(bench.memory_as_measured(profile, speed, tmp_path / "speed.yaml"))
    assert at_speed.ops["fl.train"].base_s(units) == pytest.approx(speed * train.base_s(units))
    at_state = load_profile(bench.memory_as_measured(profile, speed, tmp_path / "state.yaml", 1.3))
    for u in (units, units / 10, units * 3):
        assert at_state.ops["fl.train"].base_s(u) == pytest.approx(speed * 1.3 * train.base_s(u))
    assert at_state.ops["fl.fedavg"].base_s(1e6) == pytest.approx(speed * fedavg.base_s(1e6))
    assert at_state.ops["ML-DSA-65.sign"] == before.ops["ML-DSA-65.sign"]


def test_rescore_takes_the_steps_alone_its_matrix_kept(bench: Any, tmp_path: Path) -> None:
    """``alone_step_s`` in the kept pair states and fit state (none before they were kept, then nothing at state:
    ``train_state`` None); one line naming the file where it holds anything but step times."""
    assert bench.kept_alone(tmp_path) == [] and bench.kept_fit(tmp_path) is None
    assert bench.train_state([], None) is None and bench.train_state([0.07], None) is None
    (tmp_path / bench.FIT_STATE_FILE).write_text('{"alone_step_s": [0.05], "pair_slowdown": [1.1]}')
    assert bench.kept_fit(tmp_path) == 0.05
    assert bench.train_state([0.06, 0.07, 0.08], 0.05) == pytest.approx(1.4)
    (tmp_path / bench.FIT_STATE_FILE).write_text('{"alone_step_s": "x"}')
    with pytest.raises(SystemExit, match=r"fit_state\.json: alone_step_s is not a list of step times"):
        bench.kept_fit(tmp_path)
    (tmp_path / bench.PAIR_FILE).write_text('{"pair_slowdown": [1.2]}')
    assert bench.kept_alone(tmp_path) == []
    (tmp_path / bench.PAIR_FILE).write_text('{"pair_slowdown": [1.2, 1.1], "alone_step_s": [0.062, 0.07]}')
    assert bench.kept_alone(tmp_path) == [0.062, 0.07] and bench.kept_pairs(tmp_path) == [1.2, 1.1]
    for bad in ("[0]", "[-0.1]", '"x"', "[true]", "[1e9]", "[null]"):
        (tmp_path / bench.PAIR_FILE).write_text(f'{{"pair_slowdown": [1.2], "alone_step_s": {bad}}}')
        with pytest.raises(SystemExit) as e:
            bench.kept_alone(tmp_path)
        assert str(e.value).startswith(f"--rescore: {tmp_path / bench.PAIR_FILE}: alone_step_s")
        assert "\n" not in str(e.value)


def test_rescore_takes_the_pair_states_its_matrix_kept(bench: Any, tmp_path: Path) -> None:
    assert bench.kept_pairs(tmp_path) == []
    (tmp_path / bench.PAIR_FILE).write_text('{"pair_slowdown": [1.2, 1.05]}')
    assert bench.kept_pairs(tmp_path) == [1.2, 1.05]
    bad_ones = (
        '{"pair_slowdown": [0.5]}',
        '{"pair_slowdown": [12]}',
        '{"pair_slowdown": "x"}',
        '{"pair_slowdown": [true]}',
        "[]",
        "{",
    )  # 12: above what a profile may say (sim/profile.py)
    for bad in bad_ones:
        (tmp_path / bench.PAIR_FILE).write_text(bad)
        with pytest.raises(SystemExit) as e:
            bench.kept_pairs(tmp_path)
        assert str(e.value).startswith(f"--rescore: {tmp_path / bench.PAIR_FILE}: pair_slowdown")
        assert "\n" not in str(e.value)


def test_steps_by_pass_take_the_largest_model_runs_of_each_pass(bench: Any, tmp_path: Path) -> None:
    from sim.contract import RunLayout, to_frame, write_spans

    def run(name: str, step_s: float) -> None:
        d = tmp_path / name
        d.mkdir()
        write_spans(
            to_frame([(0, 1, "client-1", "local", "train", "fl.train", 0.0, step_s, 0.0, 0)]), RunLayout(d).spans
        )

    big = max(bench.SIZES)
    run(f"hw-localhost-sequential-PQCL3-{big}-0", 0.060)
    run(f"hw-localhost-concurrent-PQCL3-{big}-0", 0.062)
    run("hw-localhost-sequential-PQCL3-50000-0", 0.003)  # not the largest model: not counted
    run(f"hw-localhost-sequential-PQCL3-{big}-1", 0.080)
    assert bench.steps_by_pass(tmp_path) == [pytest.approx(0.061), pytest.approx(0.080)]
    assert bench.steps_by_pass(tmp_path / "nothing") == []
    for k in range(3, 12):  # pass 2 ran none of them; 10 and 11 come after 9, not after 1
        run(f"hw-localhost-concurrent-PQCL5-{big}-{k}", 0.001 * (k + 1))
    got = bench.steps_by_pass(tmp_path)
    assert got[2] is None and len(got) == 12
    assert got[3:] == [pytest.approx(0.001 * (k + 1)) for k in range(3, 12)]
    assert len(bench.steps_by_pass(tmp_path, passes=4)) == 4  # the runs numbered 4 on are --retries, not passes


@pytest.mark.parametrize("params", [50_000, 1_000_000])
def test_score_simulates_the_largest_model_at_the_matrix_pair_state(bench: Any, tmp_path: Path, params: int) -> None:
    """``score`` with a pair profile: a 1 M cell is simulated again with it ('at pair') and scored against the same
    runs; a 50 k cell is not. The simulator's own run stands in for the twin's here (its state set to completed),
    so the plain error is 0 and the one at a pair slowdown of 3 is the model's step grown with it."""
    from sim.contract import RunLayout, read_summary
    from sim.runner import simulate, write_run

    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    c = bench.Cell("localhost", "sequential", "PQC L3", params)
    s = c.scenario(profile, 2)
    write_run(simulate(s, c.mode, replications=1), tmp_path / f"hw-{c.name}-0", s)
    run = read_summary(RunLayout(tmp_path / f"hw-{c.name}-0").summary).model_copy(update={"state": "completed"})
    pair = bench.at_pair(profile, [3.0], tmp_path / "at-pair.yaml")
    got = bench.score(c, tmp_path, profile, 2, 1, [run], None, pair)
    assert got["error_p50_pct"] == pytest.approx(0.0, abs=1e-9)
    if params < max(bench.SIZES):
        assert got["error_p50_at_pair_pct"] is None and got["training_at_pair"] is None
        return
    assert got["error_p50_at_pair_pct"] > 10
    assert got["training_at_pair"]["step_p50_s"] > 1.5 * got["training"]["sim"]["step_p50_s"]
    assert "error_p50_at_state_pct" not in got  # no speed measured: no state


def test_score_simulates_the_largest_model_at_the_host_state(
    bench: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the runs' speed and the steps measured alone, the largest model's cell is simulated at state too: its
    training as much dearer than fitted as the step alone was (4x here: a slower step, a longer round), the pair
    slowdown and speed as measured; the at-pair and at-speed cells as before."""
    from sim.contract import CpuSpeed, MachineLoad, RunLayout, read_summary
    from sim.runner import simulate, write_run

    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    c = bench.Cell("localhost", "sequential", "PQC L3", max(bench.SIZES))
    s = c.scenario(profile, 2)
    write_run(simulate(s, c.mode, replications=1), tmp_path / f"hw-{c.name}-0", s)
    speed = CpuSpeed(probe_us_p10=10.0, probe_us_p50=10.0, probe_us_p90=10.0, samples=9)  # as calibrated: 1x
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0, foreign_cpu_cores=0.0,
                       steal_fraction=0.0, quiet=True, calibrated_probe_us=10.0, cpu_speed=speed)  # fmt: skip
    run = read_summary(RunLayout(tmp_path / f"hw-{c.name}-0").summary).model_copy(
        update={"state": "completed", "machine_load": load}
    )
    pair = bench.at_pair(profile, [1.0], tmp_path / "at-pair.yaml")
    got = bench.score(c, tmp_path, profile, 2, 1, [run], None, pair, state=4.0)
    assert got["error_p50_adjusted_pct"] == pytest.approx(0.0, abs=1e-6)  # at speed 1: the model as run
    assert got["training_at_state"]["step_p50_s"] > 2.5 * got["training"]["sim"]["step_p50_s"]
    assert got["error_p50_at_state_pct"] > 50 and got["sim_p50_at_state_s"] > got["sim_p50_s"]
    capsys.readouterr()
    bench.print_training([got], [1.0], None, [0.08, 0.12], 0.025)
    out = capsys.readouterr().out
    assert "step alone, before the training runs: 25.0 ms, before each pass: 80.0, 120.0 ms" in out
    assert "training x4.00 as dear as fitted" in out
    assert f"round error p50 {got['error_p50_at_state_pct']:+.1f} %" in out


def test_worker_parallelism_says_how_side_by_side_a_distributions_jobs_ran(bench: Any, tmp_path: Path) -> None:
    """Per round: the workers' busy time in ``distribute`` over the time any was busy (1 serial, 2 two at once),
    on each replication's clock; other phases, pods and round 0 do not count. Median and 25th percentile."""
    from sim.contract import RunLayout, to_frame, write_spans

    rows = [
        # round 1: two jobs of 2 ms side by side for 1 ms of each -> 4 / 3
        (0, 1, "worker-1", "local", "distribute", "ML-DSA-65.sign", 0.000, 0.002, 0.0, 0),
        (0, 1, "worker-1", "local", "distribute", "ML-DSA-65.sign", 0.001, 0.003, 0.0, 0),
        (0, 1, "client-1", "local", "distribute", "transfer", 0.000, 0.003, 0.0, 0),  # not a worker
        (0, 1, "worker-1", "local", "verify", "ML-DSA-65.verify", 0.000, 0.003, 0.0, 0),  # not a distribution
        # round 2: one after the other -> 1; replication 1, round 1: fully side by side -> 2
        (0, 2, "worker-1", "local", "distribute", "ML-DSA-65.sign", 0.010, 0.012, 0.0, 0),
        (0, 2, "worker-1", "local", "distribute", "ML-DSA-65.sign", 0.012, 0.014, 0.0, 0),
        (1, 1, "worker-1", "local", "distribute", "ML-DSA-65.sign", 0.000, 0.002, 0.0, 0),
        (1, 1, "worker-1", "local", "distribute", "ML-DSA-65.sign", 0.000, 0.002, 0.0, 0),
        (0, 0, "worker-1", "local", "distribute", "ML-DSA-65.sign", 0.000, 0.002, 0.0, 0),  # round 0: the sessions'
    ]
    d = tmp_path / "run"
    d.mkdir()
    write_spans(to_frame(rows), RunLayout(d).spans)
    got = bench.worker_parallelism([d])
    assert got["rounds"] == 3
    assert got["p50"] == pytest.approx(4 / 3) and got["p25"] == pytest.approx((1 + 4 / 3) / 2)
    none = tmp_path / "none"
    none.mkdir()
    write_spans(to_frame(rows[2:4]), RunLayout(none).spans)
    assert bench.worker_parallelism([none]) is None


def test_job_legs_split_a_delegated_phase_at_the_workers_first_decryption_and_last_encryption(
        bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Per round of ``distribute`` and ``verify``: out (phase start -> a worker's first decryption), worker (-> its
    last encryption's end), back (-> the phase's end); medians over the rounds, round 0 and rounds without a
    worker left out; at speed, only the rounds the probe saw at the calibration's speed."""
    from hw.speed import KEPT_FILE, KEPT_HEADER
    from sim.contract import RunLayout, to_frame, write_spans

    def job(rnd: int, t: float, out: float, work: float, back: float, phase: str = "distribute") -> list[tuple]:
        return [(0, rnd, "aggregator", "local", phase, "serialize", t, t + 0.0001, 0.0, 10),
                (0, rnd, "worker-1", "local", phase, "AES-256-GCM.decrypt", t + out, t + out + 0.0001, 0.0, 10),
                (0, rnd, "worker-1", "local", phase, "AES-256-GCM.encrypt", t + out + work - 0.0001, t + out + work,
                 0.0, 10),
                (0, rnd, "aggregator", "local", phase, "AES-256-GCM.decrypt", t + out + work,
                 t + out + work + back, 0.0, 10)]  # fmt: skip

    def rnd(r: int, t: float) -> tuple:
        return (0, r, "aggregator", "local", "round", "round", t, t + 0.09, 0.0, 0)

    rows = [*job(1, 0.0, 0.001, 0.004, 0.0005), *job(2, 1.0, 0.002, 0.006, 0.0007), *job(3, 2.0, 0.003, 0.008, 0.0009),
            *job(1, 0.05, 0.0004, 0.003, 0.0002, "verify"), *job(0, 5.0, 0.01, 0.01, 0.01),  # round 0: sessions
            (0, 4, "aggregator", "local", "distribute", "serialize", 3.0, 3.01, 0.0, 10),  # no worker: left out
            rnd(1, 0.0), rnd(2, 1.0), rnd(3, 2.0)]  # fmt: skip
    d = tmp_path / "run"
    d.mkdir()
    write_spans(to_frame(rows), RunLayout(d).spans)
    got = bench.job_legs([d])
    assert got["distribute"]["rounds"] == 3 and got["verify"]["rounds"] == 1
    assert [got["distribute"][k] for k in bench.LEGS] == pytest.approx([0.002, 0.006, 0.0007])
    assert [got["verify"][k] for k in bench.LEGS] == pytest.approx([0.0004, 0.003, 0.0002])
    monkeypatch.setattr(bench, "_calibrated_us", lambda run: 40.0)
    assert bench.job_legs([d], at_speed=True) is None  # no probe samples kept: at speed unknown
    # the probe saw round 2 slow (3 x the calibrated 40 us), rounds 1 and 3 at speed
    (d / KEPT_FILE).write_text(KEPT_HEADER + "0.05,0,40.0,1.0\n1.05,0,120.0,1.0\n2.05,1,40.0,1.0\n")
    fast = bench.job_legs([d], at_speed=True)
    assert fast["distribute"]["rounds"] == 2 and fast["distribute"]["out"] == pytest.approx(0.002)  # rounds 1, 3


def test_the_aggregators_job_threads_seal_two_workers_jobs_side_by_side(bench: Any, tmp_path: Path) -> None:
    """The twin's aggregator has a job thread per worker process (hw/node/aggregator.py), so two workers' jobs are
    sealed and opened side by side; the model had one for all, placed on the cores as one thread, and ran a quarter
    of its concurrent 50 k distributions wholly serial (25th percentile of ``worker_parallelism`` 1.00, the twin's
    1.18-1.34 on 2026-12-01). Localhost, concurrent, classical suite, 50 k parameters, 20 rounds x 3."""
    from sim.runner import simulate, write_run
    from sim.scenario import load_scenario

    from .conftest import SCENARIOS

    sets = [
        "workload.fl.rounds=20",
        "workload.fl.model_parameters=50000",
        "workload.processing.mode=concurrent",
        "workload.crypto.kem=X25519",
        "workload.crypto.signature=Ed25519",
    ]
    s = load_scenario(SCENARIOS / "localhost.yaml", sets)
    write_run(simulate(s, "concurrent", replications=3), tmp_path, s)
    got = bench.worker_parallelism([tmp_path])
    assert got["rounds"] == 60 and got["p25"] > 1.3  # before: 1.00


def _cell(mode: str, p50: float | None, p95: float | None, at: float | None, quiet: int = 3) -> dict[str, Any]:
    return {"layout": "localhost", "mode": mode, "suite": "PQC L3", "model_parameters": 50_000, "error_p50_pct": p50,
            "error_p95_pct": p95, "error_p50_adjusted_pct": at, "quiet_runs": quiet, "hw_runs": 3,
            "quiet": quiet == 3}  # fmt: skip


def test_score_simulates_a_cell_at_its_runs_training_probe(bench: Any, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Runs that recorded the training probe (3x the fitted profile's step alone) are simulated "at probe" as
    ``compare --at-speed`` does: at speed, training 3x dearer; a profile without the probe gives no such cell."""
    import yaml

    from sim.contract import CpuSpeed, MachineLoad, RunLayout, TrainingProbe, read_summary
    from sim.runner import simulate, write_run

    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    probed = tmp_path / "probed.yaml"
    data = yaml.safe_load(profile.read_text())
    data["platform"] |= {"training_probe_s": 0.02, "training_probe_parameters": 1_000_000,
                         "training_probe_samples": 500}  # fmt: skip
    probed.write_text(yaml.safe_dump(data))
    c = bench.Cell("localhost", "sequential", "PQC L3", max(bench.SIZES))
    s = c.scenario(probed, 2)
    write_run(simulate(s, c.mode, replications=1), tmp_path / f"hw-{c.name}-0", s)
    speed = CpuSpeed(probe_us_p10=10.0, probe_us_p50=10.0, probe_us_p90=10.0, samples=9)  # as calibrated: 1x
    step = TrainingProbe(parameters=1_000_000, samples=500, alone_s=0.06, steps=3)
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0, foreign_cpu_cores=0.0,
                       steal_fraction=0.0, quiet=True, calibrated_probe_us=10.0, cpu_speed=speed,
                       training_probe=step)  # fmt: skip
    run = read_summary(RunLayout(tmp_path / f"hw-{c.name}-0").summary).model_copy(
        update={"state": "completed", "machine_load": load}
    )
    got = bench.score(c, tmp_path, probed, 2, 1, [run])
    assert got["training_ratio"] == pytest.approx(3.0)
    assert got["error_p50_adjusted_pct"] == pytest.approx(0.0, abs=1e-6) and got["error_p50_at_probe_pct"] > 50
    capsys.readouterr()
    bench.print_training([got])
    assert (
        f"at probe (training x3.00) round error p50 {got['error_p50_at_probe_pct']:+.1f} %" in capsys.readouterr().out
    )
    plain = bench.score(c, tmp_path, profile, 2, 1, [run])
    assert plain["error_p50_at_probe_pct"] is None and plain["training_ratio"] is None
    t = bench.tally([got, plain], [])
    assert (t["at_probe_cells"], t["at_probe_p50_within_goal"]) == (1, 0)
    bench.print_tally(t)
    assert "; at probe (at speed, training by their runs' training probe): " in capsys.readouterr().out


def test_the_tally_counts_goals_and_the_model_at_speed_apart(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The matrix in counts against issue 9's goals (median within 5 %, p95 within 10 %, reductions within 5
    points), and the model at the runs' measured speed on its own: on a host whose cores changed state that is
    what judges the model, so it must not be mixed into the headline's counts. Bounds count as met."""
    cells = [
        _cell("sequential", -5.0, 10.0, 2.0),  # both goals, on their bounds
        _cell("concurrent", -25.0, -9.0, 6.0, quiet=2),  # p95 only; at speed outside
        _cell("sequential", 4.0, -12.0, None),  # median only; no at-speed figure
        {"layout": "localhost", "mode": "concurrent", "suite": "PQC L5", "model_parameters": 50_000, "error": "x"},
    ]
    reds = [{"difference_points": 5.0}, {"difference_points": -5.1}]
    t = bench.tally(cells, reds)
    assert (t["cells"], t["failed"], t["both_goals"], t["p50_within_goal"], t["p95_within_goal"]) == (3, 1, 1, 2, 2)
    assert t["mean_abs_error_p50_pct"] == pytest.approx((5 + 25 + 4) / 3)
    assert (t["quiet_cells"], t["reductions_within_goal"], t["reductions"]) == (2, 1, 2)
    assert t["quiet_both_goals"] == 1  # of the quiet two, the one on its bounds
    assert t["adjusted_cells"] == 2 and t["adjusted_p50_within_goal"] == 1
    assert t["adjusted_mean_abs_error_p50_pct"] == pytest.approx(4.0)
    bench.print_tally(t)
    out = capsys.readouterr().out
    assert "goals: 1 of 3 cells meet both" in out and "at speed: mean |median error| 4.0 %, 1 of 2" in out
    assert "2 of 3 cells all quiet (1 of them meet both)" in out
    fast = [_cell("sequential", -20.0, -20.0, -9.0) | {"error_p50_at_speed_pct": x, "rounds_at_speed": n}
            for x, n in ((-2.0, 12), (8.0, 5), (1.0, 4), (None, 0))]  # fmt: skip
    t = bench.tally(fast, [])
    assert (t["fast_rounds_cells"], t["fast_rounds_p50_within_goal"]) == (2, 1)  # 4 rounds: too few for a median
    assert t["fast_rounds_mean_abs_error_p50_pct"] == pytest.approx(5.0)
    bench.print_tally(t)
    assert "the rounds at the calibrated speed (5+ a cell): 5.0 %, 1 of 2 within 5 %" in capsys.readouterr().out
    assert "1 FAILED" in out
    none = bench.tally([_cell("sequential", 1.0, 1.0, None)], [])
    assert none["adjusted_cells"] == 0 and none["adjusted_mean_abs_error_p50_pct"] is None
    assert none["at_state_cells"] == 0 and "at state" not in (capsys.readouterr().out or "")
    state = [_cell("sequential", -20.0, -20.0, -9.0) | {"error_p50_at_state_pct": s} for s in (-3.0, 7.0)]
    t = bench.tally([*state, _cell("concurrent", -20.0, -20.0, -9.0)], [])
    assert (t["at_state_cells"], t["at_state_p50_within_goal"]) == (2, 1)
    assert t["at_state_mean_abs_error_p50_pct"] == pytest.approx(5.0)
    bench.print_tally(t)
    assert "parameter cells at state: mean |median error| 5.0 %, 1 of 2 within 5 %" in capsys.readouterr().out
    unknown = bench.tally([_cell("sequential", 1.0, 1.0, None), _cell("concurrent", None, None, None)], [])
    assert unknown["mean_abs_error_p50_pct"] == pytest.approx(1.0) and unknown["both_goals"] == 1  # not met, not a nan
    bench.print_tally(bench.tally([cells[3]], []))
    assert "goals: no cell scored (1 FAILED)" in capsys.readouterr().out


def test_the_control_cells_are_reported_beside_the_goals_not_counted(
    bench: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fit's own configuration, measured again with the matrix (``CONTROLS``: localhost, PQC L3, 250 k, its
    sequential half the fit's exact configuration): it is not held out, so neither its cells nor its reduction
    count toward the goals, but the sequential control's error is reported: how far the host moved since the fit."""
    assert bench.is_control(bench.Cell("localhost", "sequential", "PQC L3", 250_000))
    assert not bench.is_control(bench.Cell("paper-3node netns", "sequential", "PQC L3", 250_000))
    assert not bench.is_control(bench.Cell("localhost", "sequential", "PQC L3", 50_000))
    params = bench.TRAIN["model_parameters"]
    held = [_cell("sequential", 1.0, 2.0, None), _cell("concurrent", 2.0, 3.0, None)]
    control = [_cell(m, e, e, None) | {"model_parameters": params, "control": True, "error_p50_quiet_pct": q}
               for m, e, q in (("sequential", 12.0, 11.0), ("concurrent", 30.0, None))]  # fmt: skip
    for c in [*held, *control]:
        c |= {"sim_p50_s": 0.1, "hw_p50_s": 0.1}
    reds = bench.reductions([*held, *control])
    assert [r["model_parameters"] for r in reds] == [50_000]  # the control's pair is not a reduction of the matrix
    t = bench.tally([*held, *control], reds)
    assert (t["cells"], t["failed"], t["both_goals"]) == (2, 0, 2)
    assert t["mean_abs_error_p50_pct"] == pytest.approx(1.5)
    assert (t["control_error_p50_pct"], t["control_error_p50_quiet_pct"]) == (12.0, 11.0)
    bench.print_tally(t)
    out = capsys.readouterr().out
    assert "control (the fit's configuration, measured again): median error +12.0 %, +11.0 % on its quiet runs" in out
    none = bench.tally(held, reds)
    assert none["control_error_p50_pct"] is None
    bench.print_tally(none)
    assert "control" not in capsys.readouterr().out
    assert bench.CONTROLS[0] in [bench.Cell("localhost", m, "PQC L3", params) for m in bench.MODES]
    failed = [*held, control[0] | {"error": "failed: quorum lost"}, control[1]]
    t = bench.tally(failed, bench.reductions(failed))
    assert t["control_failed"] and t["control_error_p50_pct"] is None and (t["cells"], t["failed"]) == (2, 0)
    bench.print_tally(t)
    assert "control (the fit's configuration, measured again) FAILED" in capsys.readouterr().out
    bench.print_table([failed[2]], [])
    assert "CONTROL FAILED failed: quorum lost" in capsys.readouterr().out


def test_rescore_reads_how_many_passes_its_matrix_made(bench: Any, tmp_path: Path) -> None:
    """``measure`` keeps its passes (``PASSES_FILE``), so a rescore leaves the retry passes out as the live bench
    did; a matrix kept before has none; a file that says no number of passes is one line."""
    assert bench.kept_passes(tmp_path) is None
    (tmp_path / bench.PASSES_FILE).write_text('{"repeat": 3, "retries": 2}')
    assert bench.kept_passes(tmp_path) == 3
    (tmp_path / bench.PASSES_FILE).write_text('{"repeat": true}')
    with pytest.raises(SystemExit, match=r"passes\.json: repeat is not a number of passes"):
        bench.kept_passes(tmp_path)


def test_at_speed_slows_crypto_with_the_probe_and_leaves_training_at_its_price(bench: Any, tmp_path: Path) -> None:
    """ "At speed" simulates the fitted profile on cores ``speed`` x as fast (``cpu_speed``), but the speed probe does
    not see the state training and FedAvg run in (hw/fit.py ``MEMORY_KINDS``): their price, overheads included, is
    what it was; an encapsulation's is 1 / speed as long."""
    import numpy as np
    import yaml

    from sim.profile import load_profile, write_profile

    data = yaml.safe_load((ROOT / "scenarios" / "profiles" / "ci-x86.yaml").read_text())
    over = {"per_call_s": 4e-4, "per_byte_s": 0.0, "sigma": 0.1, "sigma_by_cost_s": [[1e-3, 0.2], [2e-2, 0.1]],
            "source": "test", "tag": "F"}  # fmt: skip
    data["overheads"] = {"train": {**over, "factor": 1.2}, "fedavg": {**over, "factor": 1.1},
                         "encaps": {**over, "per_call_s": 5e-5}}  # fmt: skip
    fitted = tmp_path / "fitted.yaml"
    write_profile(data, fitted)
    out = bench.memory_as_measured(fitted, 0.6, tmp_path / "at.yaml")
    before, after = load_profile(fitted), load_profile(out).at_speed(0.6)
    for name, units in (("fl.train", 500 * 50_000.0), ("fl.train", 500 * 1e6), ("fl.fedavg", 2e6),
                        ("ML-KEM-768.encaps", 0.0)):  # fmt: skip
        was = before.cost_s(name, np.random.default_rng(1), units)
        now = after.cost_s(name, np.random.default_rng(1), units)
        assert now == pytest.approx(was if name.startswith("fl.") else was / 0.6, rel=1e-9), name


def test_measure_runs_every_other_pass_in_reverse(bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ABBA: over two passes every cell's runs sit at the same mean place in the bench, and each mode runs as often
    before the other mode of its suite and size as after; each run keeps its pass's number and seed."""
    cells = [bench.Cell("localhost", m, "PQC L3", p) for p in bench.SIZES for m in bench.MODES]
    ran: list[tuple[str, str, int]] = []

    def run_local(s: Any, out: Path, mode: str, rounds: int, seed: int, backend: str) -> str:
        ran.append((out.name, mode, seed))
        return out.name

    monkeypatch.setattr(bench, "run_local", run_local)
    monkeypatch.setattr(bench, "training_now", lambda *a: None)  # no pair probe: one core
    scenario = SimpleNamespace(run=SimpleNamespace(seed=7))
    monkeypatch.setattr(bench.Cell, "scenario", lambda self, profile, rounds: scenario)
    runs, states, numbers = bench.measure(cells, tmp_path, tmp_path / "p.yaml", 3, 3, "runs")
    names = [f"hw-{c.name}" for c in cells]
    passes = [[f"{n}-0" for n in names], [f"{n}-1" for n in reversed(names)], [f"{n}-2" for n in names]]
    assert [r[0] for r in ran] == [name for names_k in passes for name in names_k]
    assert {r[2] for r in ran[: len(cells)]} == {7} and {r[2] for r in ran[len(cells) : 2 * len(cells)]} == {8}
    place = {n: [i for i, r in enumerate(ran[: 2 * len(cells)]) if r[0].startswith(n + "-")] for n in names}
    assert len({sum(p) for p in place.values()}) == 1  # the same mean place over the first two passes
    assert all(runs[c] == [f"hw-{c.name}-{k}" for k in range(3)] for c in cells) and states == []
    assert all(numbers[c] == [0, 1, 2] for c in cells)


def test_measure_pairs_a_suite_and_sizes_modes_in_one_run_of_both(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a suite and size's two modes are one ``--mode both`` run of twice the rounds per pass (in the
    passes' ABBA order), each mode's cell scored on its half, linked as hw-CELL-PASS (what ``score`` and
    ``--rescore`` read)."""
    cells = [bench.Cell("localhost", m, "PQC L3", p) for p in bench.SIZES for m in bench.MODES]
    ran: list[tuple[str, str, int, int]] = []

    def run_local(s: Any, out: Path, mode: str, rounds: int, seed: int, backend: str) -> None:
        ran.append((out.name, mode, rounds, seed))
        for m in bench.MODES:
            (out / m).mkdir(parents=True)

    monkeypatch.setattr(bench, "run_local", run_local)
    monkeypatch.setattr(bench, "split", lambda out: {m: f"{out.name}/{m}" for m in bench.MODES})
    monkeypatch.setattr(bench, "training_now", lambda *a: None)
    scenario = SimpleNamespace(run=SimpleNamespace(seed=7))
    monkeypatch.setattr(bench.Cell, "scenario", lambda self, profile, rounds: scenario)
    runs, _, numbers = bench.measure(cells, tmp_path, tmp_path / "p.yaml", 5, 2)
    both = [f"hw-localhost-both-PQCL3-{p}" for p in bench.SIZES]
    # the small model's rounds are short and vary as much: five times as many pairs
    assert ran == [(f"{both[0]}-0", "both", 50, 7), (f"{both[1]}-0", "both", 10, 7),
                   (f"{both[1]}-1", "both", 10, 8), (f"{both[0]}-1", "both", 50, 8)]  # fmt: skip
    for c in cells:
        whole = f"hw-localhost-both-PQCL3-{c.params}"
        assert runs[c] == [f"{whole}-{k}/{c.mode}" for k in range(2)] and numbers[c] == [0, 1]
        assert all((tmp_path / f"hw-{c.name}-{k}").resolve() == tmp_path / f"{whole}-{k}" / c.mode for k in range(2))


def test_measure_adds_passes_over_the_cells_with_no_quiet_run(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``retries``: after the passes, up to that many more over the cells none of whose runs was quiet (a failed
    run is not quiet), in the passes' ABBA order, each run numbered and seeded by its pass; they stop when every
    cell has a quiet run; every run is kept. Without retries, nothing is run again."""
    cells = [bench.Cell("localhost", "sequential", s, p) for s in ("PQC L3", "PQC L5") for p in bench.SIZES]
    quiet = {f"hw-{cells[0].name}-3", f"hw-{cells[1].name}-1", f"hw-{cells[2].name}-2", f"hw-{cells[3].name}-0"}
    ran: list[tuple[str, int]] = []

    def run_local(s: Any, out: Path, mode: str, rounds: int, seed: int, backend: str) -> Any:
        ran.append((out.name, seed))
        return SimpleNamespace(name=out.name, state="completed", machine_load=SimpleNamespace(quiet=out.name in quiet))

    monkeypatch.setattr(bench, "run_local", run_local)
    monkeypatch.setattr(bench, "training_now", lambda *a: None)
    scenario = SimpleNamespace(run=SimpleNamespace(seed=7))
    monkeypatch.setattr(bench.Cell, "scenario", lambda self, profile, rounds: scenario)
    runs, _, numbers = bench.measure(cells, tmp_path, tmp_path / "p.yaml", 3, 2, "runs", retries=3)
    name = [f"hw-{c.name}" for c in cells]
    # passes 0 and 1 over all; pass 2 (a retry, forward) over cells 0 and 2; pass 3 (reversed) over cell 0 alone
    assert ran == [(f"{n}-0", 7) for n in name] + [(f"{n}-1", 8) for n in reversed(name)] + [
        (f"{name[0]}-2", 9), (f"{name[2]}-2", 9), (f"{name[0]}-3", 10)]  # fmt: skip
    assert numbers == {cells[0]: [0, 1, 2, 3], cells[1]: [0, 1], cells[2]: [0, 1, 2], cells[3]: [0, 1]}
    assert [r.name for r in runs[cells[0]]] == [f"{name[0]}-{k}" for k in range(4)]
    ran.clear()
    runs, _, numbers = bench.measure(cells, tmp_path, tmp_path / "p.yaml", 3, 2, "runs")
    assert len(ran) == 8 and all(n == [0, 1] for n in numbers.values())
    ran.clear()  # --min-quiet 2: retry passes until each cell has two quiet runs (cell 0 at pass 4, cell 3 at 2)
    quiet |= {f"hw-{cells[1].name}-3", f"hw-{cells[2].name}-3", f"hw-{cells[3].name}-2", f"hw-{cells[0].name}-4"}
    runs, _, numbers = bench.measure(cells, tmp_path, tmp_path / "p.yaml", 3, 2, "runs", retries=4, min_quiet=2)
    assert numbers == {cells[0]: [0, 1, 2, 3, 4], cells[1]: [0, 1, 2, 3], cells[2]: [0, 1, 2, 3],
                       cells[3]: [0, 1, 2]}  # fmt: skip
    assert json.loads((tmp_path / bench.PASSES_FILE).read_text()) == {"repeat": 2, "retries": 4, "min_quiet": 2}
    assert bench.quiet_run(SimpleNamespace(state="failed", machine_load=SimpleNamespace(quiet=True))) is False
    assert bench.quiet_run(SimpleNamespace(state="completed", machine_load=None)) is False


def test_a_training_run_that_was_not_quiet_is_run_again_and_kept_out_of_the_fit(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train`` with retries: a training run that was not quiet is run again under its name with another seed, the
    noisy one kept aside (``noisy-train-N-A``, which ``--rescore``'s ``train-*`` does not pool); without retries,
    or with them used up, the run stands."""
    quiet = iter([False, True, True, False, False, True, True, True])
    ran: list[tuple[str, int]] = []

    def run_local(s: Any, out: Path, mode: str, rounds: int, seed: int) -> Any:
        out.mkdir()
        ran.append((out.name, seed))
        return SimpleNamespace(state="completed", machine_load=SimpleNamespace(quiet=next(quiet)))

    monkeypatch.setattr(bench, "run_local", run_local)
    monkeypatch.setattr(bench, "training_now", lambda *a: None)
    monkeypatch.setattr(bench, "largest_step", lambda: (500, 5e8))
    monkeypatch.setattr(bench, "load_scenario", lambda *a: SimpleNamespace(run=SimpleNamespace(seed=7)))
    got = bench.train(tmp_path, tmp_path / "base.yaml", 3, 2, retries=1)
    assert got == ([tmp_path / f"train-{i}" for i in range(4)], [tmp_path / "wide-0", tmp_path / "wide-1"])
    # size 1: run 0 noisy then quiet, run 1 quiet; size 2: run 0 noisy twice (retries used up), run 1 quiet; the
    # large size's messages-only runs (``wide-N``: not ``train-*``, which --rescore pools as training runs) quiet
    assert ran == [("train-0", 7), ("train-0", 9), ("train-1", 8), ("train-2", 7), ("train-2", 9), ("train-3", 8),
                   ("wide-0", 7), ("wide-1", 8)]  # fmt: skip
    assert sorted(d.name for d in tmp_path.iterdir()) == [
        "noisy-train-0-1",
        "noisy-train-2-1",
        *(f"train-{i}" for i in range(4)),
        "wide-0",
        "wide-1",
    ]


def test_score_scores_a_cell_on_its_quiet_runs_alone(
    bench: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell with a quiet run and an unsteady one is scored on both, and on the quiet one alone (the goal's
    machine): here the quiet run is the model's own (error 0) and the unsteady one ran on cores half as fast; the
    table shows the quiet runs' errors beside, the reductions and the goals line count them apart."""
    from sim.contract import CpuSpeed, MachineLoad, RunLayout, read_summary, write_summary
    from sim.runner import simulate, write_run

    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    c = bench.Cell("localhost", "sequential", "PQC L3", 50_000)
    speed = CpuSpeed(probe_us_p10=10.0, probe_us_p50=10.0, probe_us_p90=10.0, samples=9)
    runs = []
    for k, (more, quiet) in enumerate([((), True), (("deployment.hosts.*.cpu_speed=0.5",), False)]):
        s = c.scenario(profile, 2, more)
        write_run(simulate(s, c.mode, replications=1), tmp_path / f"hw-{c.name}-{k}", s)
        load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0,
                           foreign_cpu_cores=0.0, steal_fraction=0.0, quiet=quiet, unsteady=not quiet,
                           calibrated_probe_us=10.0, cpu_speed=speed)  # fmt: skip
        runs.append(read_summary(RunLayout(tmp_path / f"hw-{c.name}-{k}").summary).model_copy(
            update={"state": "completed", "machine_load": load, "backend": "local"}))  # fmt: skip
        write_summary(runs[-1], tmp_path / f"hw-{c.name}-{k}")  # compare reads the runs' summaries
    got = bench.score(c, tmp_path, profile, 2, 1, runs)
    assert got["quiet_scored_runs"] == 1 and got["quiet"] is False and got["quiet_runs"] == 1
    assert got["control"] is False  # a 50 k cell is held out
    assert got["error_p50_quiet_pct"] == pytest.approx(0.0, abs=1e-9) and got["error_p95_quiet_pct"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert got["error_p50_pct"] < -5  # the slow run pooled in
    conc = got | {"mode": "concurrent", "sim_p50_s": 0.9 * got["sim_p50_s"], "hw_p50_s": 0.8 * got["hw_p50_s"],
                  "hw_p50_quiet_s": 0.9 * got["hw_p50_quiet_s"]}  # fmt: skip
    reds = bench.reductions([got, conc])
    assert reds[0]["measured_quiet_pct"] == pytest.approx(10.0) and reds[0]["difference_quiet_points"] == pytest.approx(
        0.0, abs=1e-9
    )
    t = bench.tally([got, conc], reds)
    assert (t["quiet_scored_cells"], t["quiet_scored_both_goals"], t["quiet_cells"]) == (2, 2, 0)
    assert (t["quiet_scored_reductions"], t["quiet_scored_reductions_within_goal"]) == (1, 1)
    capsys.readouterr()
    bench.print_table([got], [])
    assert "1/2 quiet, runs " in (out := capsys.readouterr().out) and "(alone +0.0% / +0.0%)" in out
    bench.print_tally(t)
    assert (
        "on their quiet runs alone: 2 of 2 cells with one meet both (mean |median error| 0.0 %), reductions 1 of 1"
        in capsys.readouterr().out
    )
    none = bench.score(c, tmp_path, profile, 2, 1, runs[1:], passes=[1])
    assert none["quiet_scored_runs"] == 0 and none["error_p50_quiet_pct"] is None
    assert bench.tally([none], [])["quiet_scored_cells"] == 0


def test_reductions_pool_the_both_runs_pairs_of_rounds_with_a_ci(bench: Any, tmp_path: Path) -> None:
    """Beside the medians' reduction, the mean of each ABBA pair's reduction over every pass's --mode both run, with
    its 95 % CI: the pairs share the host's state, two runs do not."""
    from sim import contract

    def run(k: int, pairs: list[tuple[float, float]]) -> None:
        d = tmp_path / f"hw-localhost-both-PQCL3-50000-{k}"
        d.mkdir()
        rows, t = [], 0.0
        for i, (s, c) in enumerate(pairs):  # rounds 2i+1, 2i+2: S C, then C S
            first, second = (s, c) if i % 2 == 0 else (c, s)
            for r, length in ((2 * i + 1, first), (2 * i + 2, second)):
                rows.append((0, r, "aggregator", "agg", "round", "round", t, t + length, 0.0, 0))
                t += 1.0
        contract.write_spans(pd.DataFrame(rows, columns=list(contract.COLUMNS)), d / "spans.parquet")
        (d / "modes.json").write_text("{}")

    run(0, [(0.020, 0.015), (0.020, 0.016)])  # 25 % and 20 %
    run(1, [(0.010, 0.008), (0.010, 0.007)])  # 20 % and 30 %: a slower pass, the same reductions
    cells = [{"layout": "localhost", "mode": m, "suite": "PQC L3", "model_parameters": 50000, "sim_p50_s": 0.02,
              "hw_p50_s": hw} for m, hw in (("sequential", 0.015), ("concurrent", 0.012))]  # fmt: skip
    (red,) = bench.reductions(cells, tmp_path)
    assert red["pairs"] == 4 and red["measured_pairs_pct"] == pytest.approx(23.75)
    lo, hi = red["measured_pairs_ci95_pct"]
    assert lo < 23.75 < hi and hi - lo < 20
    assert "pairs" not in bench.reductions(cells)[0]  # a run per cell (--pairing runs): no pairs


MATRIX = ROOT / "docs" / "twin_fidelity_2026-12-05_0211_full_min_quiet.json"  # a full matrix, as recorded


def test_markdown_prints_a_recorded_matrix_as_the_readme_table(bench: Any) -> None:
    result = json.loads(MATRIX.read_text())
    text = bench.markdown(result)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| mode")]
    assert len(rows) == len(result["cells"])
    # one cell whose two errors meet the goals, on all runs and on its quiet runs alone; one that misses on p95
    assert "| concurrent | PQC L5 | 1 M | 129.7 ms | 133.6 ms | -2.9 % [-6.5, +0.7] | -4.9 % | 3/3 |" in text
    assert next(r for r in rows if "| concurrent | PQC L5 | 1 M |" in r).endswith("| yes / yes |")
    assert next(r for r in rows if "| sequential | hybrid | 50 k |" in r).endswith("| no / yes |")  # p95 -12.3 / -7.0
    assert sum("(control)" in r for r in rows) == 2
    t = result["goals"]
    assert f"all runs pooled {t['both_goals']} of {t['cells']} cells meet both" in text
    assert f"reductions {t['reductions_within_goal']} of {t['reductions']} within 5 points" in text
    assert "classical 50 k -18.3 / -23.1 %" in text


def test_markdown_says_a_failed_cell_and_an_unknown_error(bench: Any) -> None:
    result = json.loads(MATRIX.read_text())
    result["cells"][0] = {
        "mode": "sequential",
        "suite": "PQC L3",
        "model_parameters": 50_000,
        "error": "quorum lost | a\nsecond line",
    }
    result["cells"][1]["error_p95_quiet_pct"] = None  # no quiet run: the quiet goal is unknown
    result["cells"][2].update(error_p50_pct=None, error_p50_ci95=None)  # an error compare could not compute
    text = bench.markdown(result)
    failed = next(line for line in text.splitlines() if "failed:" in line)
    assert failed.startswith("| sequential | PQC L3 | 50 k | failed: quorum lost \\| a second line |")
    assert failed.replace("\\|", "").count("|") == text.splitlines()[0].count("|")  # the table's 12 columns
    row = next(line for line in text.splitlines() if line.startswith("| concurrent | PQC L3 | 50 k |"))
    assert row.endswith("| no / - |")
    unknown = next(line for line in text.splitlines() if line.startswith("| sequential | PQC L3 | 1 M |"))
    assert "| - % [-, -] |" in unknown and unknown.endswith("| - / no |")


@pytest.mark.parametrize("content", ["", "[1, 2]", '{"cells": [{"mode": "sequential"}]}', '{"cells": 3}', "\xff"])
def test_markdown_of_a_file_that_is_no_matrix_is_one_line(bench: Any, tmp_path: Path, content: str) -> None:
    bad = tmp_path / "m.json"
    bad.write_bytes(content.encode("latin-1"))
    with pytest.raises(SystemExit) as exc:
        bench.markdown_of(bad)
    line = str(exc.value)
    assert line.startswith("--markdown") and str(bad) in line and "\n" not in line


def test_the_readme_table_is_what_markdown_prints_of_the_matrix_it_cites(bench: Any) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### How we validate the twin") :]
    cited = re.search(r"--markdown\s+(docs/\S+\.json)", section)  # the command that printed it (lines wrap)
    assert cited is not None
    assert bench.markdown(json.loads((ROOT / cited.group(1)).read_text())) in section


def test_an_unsteady_base_calibration_is_measured_again_and_the_steadiest_kept(
        bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    ci = yaml.safe_load((ROOT / "scenarios" / "profiles" / "ci-x86.yaml").read_text())
    spreads = iter([1.40, 1.31, 1.60])  # each over hw.machine.STEADY_SPREAD: none steady
    calls: list[float] = []

    def calibrate() -> dict[str, Any]:
        calls.append(next(spreads))
        return {**ci, "platform": {**ci["platform"], "speed_probe_spread": calls[-1]}}

    monkeypatch.setattr(bench, "calibrate", calibrate)
    bench.base_calibration(tmp_path, tmp_path / "base.yaml", retries=2)
    assert calls == [1.40, 1.31, 1.60]  # measured again up to the retries, every one kept
    assert sorted(p.name for p in tmp_path.glob("calibration-*.yaml")) == [f"calibration-{i}.yaml" for i in range(3)]
    assert bench.load_profile(tmp_path / "base.yaml").platform.speed_probe_spread == 1.31  # the least spread

    spreads = iter([1.40, 1.10, 1.60])
    calls.clear()
    bench.base_calibration(tmp_path, tmp_path / "base.yaml", retries=5)
    assert calls == [1.40, 1.10]  # a steady one ends the retries
    assert bench.load_profile(tmp_path / "base.yaml").platform.speed_probe_spread == 1.10

    spreads = iter([1.40])
    calls.clear()
    bench.base_calibration(tmp_path, tmp_path / "base.yaml")  # no retries: the one measured, unsteady or not
    assert calls == [1.40] and bench.load_profile(tmp_path / "base.yaml").platform.speed_probe_spread == 1.40


@pytest.mark.skipif(__import__("hw.netns").netns.unavailable() is not None, reason="needs network namespaces")
def test_the_netns_cells_kernel_rate_is_measured_over_their_links_at_the_calibrations_speed(bench: Any, tmp_path,
                                                                                            monkeypatch):  # fmt: skip
    """``kernel_rate``: the machine's kernel as a stage of paper-3node's links (hw/sendcpu.py: real sends over its
    namespaces), scaled to the speed the profile was calibrated at: the same sends read against a profile
    calibrated on cores twice as slow give half the rate."""
    from hw import sendcpu

    graph = bench.load_scenario(bench.PAPER).graph()
    sends = sendcpu.timed_sends(graph, "pi-1", "pi-2", 8, 0.02, sendcpu.MESSAGE_BYTES)  # ~70 ms of 10 ms ticks
    assert len(sends) == 8 and all(s.machine_cpu_s >= 0 and s.probe_us > 0 for s in sends)
    assert sum(s.machine_cpu_s for s in sends) > 0
    monkeypatch.setattr(sendcpu, "timed_sends", lambda *args: sends)
    text = (ROOT / "scenarios" / "profiles" / "ci-x86.yaml").read_text()
    rates = []
    for probe_us in (40.0, 80.0):
        path = tmp_path / f"p{probe_us:g}.yaml"
        path.write_text(re.sub(r"(?m)^(\s*speed_probe_us:).*$", rf"\g<1> {probe_us}", text, count=1))
        rates.append(bench.kernel_rate(path))
    assert 1.0 <= rates[1] < rates[0] <= 1e12
    assert rates[1] / rates[0] == pytest.approx(0.5)


def test_a_cell_measured_as_halves_of_mode_both_runs_is_simulated_as_one_alternating_run(
    bench: Any, tmp_path: Path
) -> None:
    """A cell's runs that were halves of ``--mode both`` runs (their run.json says so) are simulated as the twin ran
    them: one run of twice the rounds, the modes in turn, split as the twin's; the pair's other cell reuses it. Runs
    of one mode (or a directory with no run.json) are simulated alone."""
    from hw.runconfig import build
    from sim.contract import atomic_write, round_mode
    from sim.scenario import load_scenario

    s = load_scenario(ROOT / "scenarios" / "localhost.yaml")
    for mode in ("both", "sequential"):
        (tmp_path / mode).mkdir()
        atomic_write(
            tmp_path / mode / "run.json", build(s, mode, 2, 0, LoopbackAddressing(), epoch=0.0).model_dump_json()
        )
    assert bench.alternated([tmp_path / "both"]) and not bench.alternated([tmp_path / "both", tmp_path / "sequential"])
    assert not bench.alternated([tmp_path / "no-run-json"]) and not bench.alternated([])
    profile = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
    c = bench.Cell("localhost", "concurrent", "PQC L3", 50_000)
    bench.simulate_cell(c, tmp_path, profile, 4, (), 2, tmp_path / "sim-alone", False)
    bench.simulate_cell(c, tmp_path, profile, 4, (), 2, tmp_path / "sim-paired", True)
    alone = pd.read_parquet(tmp_path / "sim-alone" / "spans.parquet")
    paired = pd.read_parquet(tmp_path / "sim-paired" / "spans.parquet")
    assert set(alone.loc[alone["round"] > 0, "round"]) == {1, 2, 3, 4}
    assert set(paired.loc[paired["round"] > 0, "round"]) == {r for r in range(1, 9) if round_mode("both", r) == c.mode}
    assert paired["pod"].str.startswith("worker").any()
    seq = bench.replace(c, mode="sequential")
    bench.simulate_cell(seq, tmp_path, profile, 4, (), 2, tmp_path / "sim-paired-seq", True)
    assert len(list(tmp_path.glob("sim-*-alternating-*"))) == 1  # simulated once for the pair
    seq_spans = pd.read_parquet(tmp_path / "sim-paired-seq" / "spans.parquet")
    assert set(seq_spans.loc[seq_spans["round"] > 0, "round"]) == {1, 4, 5, 8}
