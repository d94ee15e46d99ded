"""pqtwin calibrate --from-run: known overheads planted in a run's spans are recovered, per op kind, and the
simulator prices them for other algorithms and sizes; bad inputs are one-line errors."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from hw.fit import _trainings_beside, base_s, fit_from_run
from sim import catalogue
from sim.contract import SpanRow, read_spans, read_summary, to_frame, write_spans, write_summary
from sim.errors import UserError
from sim.profile import Profile, load_profile
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS

PROFILE = ROOT / "scenarios" / "profiles" / "ci-x86.yaml"
PLANTED = {"encaps": 50e-6, "decaps": 30e-6, "sign_per_call": 100e-6, "sign_per_byte": 2e-9, "train": 1.25}


def planted_run(tmp_path, rounds: int = 8, seed: int = 3, params: int | None = None):
    """A twin-shaped run directory whose spans cost the profile's medians plus the planted overheads (jittered
    from ``seed``: two runs of one seed are one measurement, which a fit refuses to pool); ``params``: the model's
    size (default: the scenario's)."""
    sized = [f"workload.fl.model_parameters={params}"] if params else []
    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=2", *sized], PROFILE)
    write_run(simulate(s, "sequential", 1, 1), tmp_path, s)  # scenario.yaml, spans and summary to overwrite
    prof = load_profile(PROFILE)
    fl, sig, kem = s.workload.fl, s.workload.crypto.signature, s.workload.crypto.kem
    hash_op = f"{catalogue.get(sig).message_hash}.hash"
    med = lambda op, units=0.0: base_s(prof, op, units)  # noqa: E731 - the profile's median, as the fit reads it
    rows, t = [], 0.0
    rng = np.random.default_rng(seed)

    def add(rnd: int, phase: str, op: str, cost: float, nbytes: int = 0) -> None:
        nonlocal t
        cost *= float(rng.lognormal(0, 0.05))
        rows.append(SpanRow(0, rnd, "aggregator", "local", phase, op, t, t + cost, 0.0, nbytes))
        t += cost + 0.01  # steps far apart: no glue

    msg = fl.model_parameters * 4
    for _ in range(4):  # handshakes: signatures of small transcripts
        add(0, "handshake", f"{sig}.sign", med(f"{sig}.sign") + PLANTED["sign_per_call"])
    for r in range(1, rounds + 1):
        signed = med(hash_op, msg) + med(f"{sig}.sign") + PLANTED["sign_per_call"] + PLANTED["sign_per_byte"] * msg
        add(r, "distribute", f"{sig}.sign", signed, msg)
        add(r, "distribute", f"{kem}.encaps", med(f"{kem}.encaps") + PLANTED["encaps"])
        add(r, "verify", f"{kem}.decaps", med(f"{kem}.decaps") + PLANTED["decaps"])
        units = fl.samples_per_client * fl.model_parameters * fl.local_epochs
        add(r, "train", "fl.train", med("fl.train", units) * PLANTED["train"])
        rows.append(SpanRow(0, r, "aggregator", "local", "round", "round", t - 1, t, 0.0, 0))
    write_spans(to_frame(rows), tmp_path / "spans.parquet")
    summary = read_summary(tmp_path / "summary.json")
    write_summary(summary.model_copy(update={"backend": "local", "state": "completed", "rounds_completed": rounds}),
                  tmp_path)  # fmt: skip
    return s


def test_planted_overheads_are_recovered_per_kind(tmp_path):
    planted_run(tmp_path)
    fit = fit_from_run(tmp_path, PROFILE)
    over = Profile.model_validate(fit.profile).overheads
    assert over["encaps"].per_call_s == pytest.approx(PLANTED["encaps"], abs=10e-6)
    assert over["decaps"].per_call_s == pytest.approx(PLANTED["decaps"], abs=10e-6)
    assert over["sign"].per_byte_s == pytest.approx(PLANTED["sign_per_byte"], rel=0.2)
    assert over["sign"].per_call_s == pytest.approx(PLANTED["sign_per_call"], abs=60e-6)
    assert over["train"].factor == pytest.approx(PLANTED["train"], rel=0.05)
    assert all(o.tag == "F" and str(tmp_path) in o.source for o in over.values())
    assert 0 < over["train"].sigma < 0.2  # the planted 5 % jitter, seen


def test_several_runs_pool_into_one_fit(tmp_path):
    """Two runs of 3 rounds fit what one run of 6 does: every span of both counts, both are named."""
    a, b = tmp_path / "a", tmp_path / "b"
    planted_run(a, rounds=3)
    planted_run(b, rounds=3, seed=4)
    fit = fit_from_run([a, b], PROFILE)
    over = Profile.model_validate(fit.profile).overheads
    assert fit.rows == fit_from_run(a, PROFILE).rows + fit_from_run(b, PROFILE).rows
    assert over["encaps"].n == 6 and over["train"].factor == pytest.approx(PLANTED["train"], rel=0.05)
    assert str(a) in over["encaps"].source and str(b) in over["encaps"].source


def test_a_fitted_profile_prices_other_algorithms_and_sizes(tmp_path):
    planted_run(tmp_path)
    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(yaml.safe_dump(fit_from_run(tmp_path, PROFILE).profile))
    profile = load_profile(fitted)
    base = load_profile(PROFILE)
    rng = np.random.default_rng(0)
    # the encaps overhead carries over to another KEM; the per-byte signing overhead to another message size
    extra = (
        np.mean([profile.cost_s("ML-KEM-1024.encaps", rng) for _ in range(400)])
        - base.ops["ML-KEM-1024.encaps"].distribution.mean_s
    )
    assert extra == pytest.approx(PLANTED["encaps"], abs=15e-6)
    big = np.median([profile.cost_s("ML-DSA-87.sign", rng, 4_000_000) for _ in range(200)])
    small = np.median([profile.cost_s("ML-DSA-87.sign", rng, 0) for _ in range(200)])
    assert (big - small) / 4_000_000 == pytest.approx(PLANTED["sign_per_byte"], rel=0.35)
    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=2"], fitted)
    slower = simulate(s, "sequential", 1, 1).summary.round_latency_s.mean or 0
    plain = simulate(load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=2"], PROFILE), "sequential", 1, 1)
    assert slower > (plain.summary.round_latency_s.mean or 0)  # the overheads reach the model


def test_from_run_refuses_what_is_not_a_finished_twin_run(tmp_path, pqtwin):
    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=2"])
    write_run(simulate(s, "sequential", 1, 1), tmp_path / "sim", s)
    with pytest.raises(UserError, match="need a completed hardware-twin run"):
        fit_from_run(tmp_path / "sim", PROFILE)
    res = pqtwin("calibrate", "--from-run", str(tmp_path / "nope"), "--out", str(tmp_path / "p.yaml"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "--from-run" in res.stderr and "not a twin run directory" in res.stderr


@pytest.mark.parametrize(
    ("damage", "expected"),
    [("missing", "cannot read file"), ("garbage", "not valid YAML"), ("list", "expected a mapping"),
     ("no-deployment", "deployment.hosts[0].profile: not a profile name"), ("fifo", "not a regular file (a FIFO)"),
     ("directory", "is a directory"), ("not-utf8", "not UTF-8 text")],
)  # fmt: skip
def test_a_damaged_scenario_in_the_run_is_one_line(tmp_path, damage, expected):
    """Without --base the fit reads the profile the run's scenario.yaml names: it read that file unbounded and
    indexed it blindly (FileNotFoundError, KeyError, a FIFO hung the command)."""
    planted_run(tmp_path)
    scenario = tmp_path / "scenario.yaml"
    scenario.unlink()
    if damage == "garbage":
        scenario.write_text("::: [\n")
    elif damage == "list":
        scenario.write_text("- 1\n")
    elif damage == "no-deployment":
        scenario.write_text("name: x\n")
    elif damage == "fifo":
        os.mkfifo(scenario)
    elif damage == "directory":
        scenario.mkdir()
    elif damage == "not-utf8":
        scenario.write_bytes(b"name: \xff\n")
    with pytest.raises(UserError) as exc:
        fit_from_run(tmp_path)
    assert len(exc.value.lines) == 1 and expected in exc.value.lines[0], exc.value.lines


def test_the_run_is_fitted_on_its_own_copy_of_its_profile_wherever_it_is_read_from(tmp_path, monkeypatch):
    """A run keeps copies of its profiles (profiles/); the fit looked for the profile beside the scenario the run was
    started from, relative to the directory it is read from: elsewhere it was not found, or another one was."""
    run = tmp_path / "run"
    run.mkdir()
    s = planted_run(run)
    name = s.deployment.hosts[0].profile
    (run / "profiles").mkdir(exist_ok=True)
    (run / "profiles" / f"{name}.yaml").write_text(PROFILE.read_text())
    summary = read_summary(run / "summary.json")
    write_summary(summary.model_copy(update={"scenario_file": "scenarios/localhost.yaml"}), run)  # relative, as typed
    decoy = tmp_path / "elsewhere" / "scenarios" / "profiles"
    decoy.mkdir(parents=True)
    data = yaml.safe_load(PROFILE.read_text())
    (decoy / f"{name}.yaml").write_text(yaml.safe_dump({**data, "profile": "decoy"}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert Profile.model_validate(fit_from_run(run).profile).profile.startswith(f"{data['profile']}+")


def test_a_fit_outside_the_profiles_bounds_is_one_line_naming_the_field(tmp_path):
    """Spans that no base profile of the same machine could have priced (every operation 10^5 times as long) fit a
    factor beyond the profile's bounds: a pydantic ValidationError escaped as an internal error."""
    planted_run(tmp_path)
    spans = read_spans(tmp_path / "spans.parquet")
    write_spans(spans.assign(end_s=spans.start_s + (spans.end_s - spans.start_s) * 1e5), tmp_path / "spans.parquet")
    with pytest.raises(UserError) as exc:
        fit_from_run(tmp_path, PROFILE)
    (line,) = exc.value.lines
    assert line.startswith("--from-run: the fitted overheads.") and "--base" in line, line


def test_a_run_whose_spans_hold_no_round_is_one_line(tmp_path):
    planted_run(tmp_path)
    write_spans(to_frame([]), tmp_path / "spans.parquet")
    with pytest.raises(UserError, match="no span of a finished round"):
        fit_from_run(tmp_path, PROFILE)


def test_a_run_on_slower_cores_is_fitted_at_the_profile_speed_its_training_as_measured(tmp_path):
    """A run whose cores ran at 0.8x the profile's calibrated speed (hw/speed.py) took 1 / 0.8 as long for the
    same code: the fit brings it back, so the host's state that day does not become an overhead. Not its training:
    the probe does not see the state training runs in (two fits of equal training runs, the probe at 1.00x and
    0.67x, priced training 0.77x apart), so its steps are fitted as they were measured."""
    from sim.contract import CpuSpeed, MachineLoad

    planted_run(tmp_path)
    summary = read_summary(tmp_path / "summary.json")
    spans = pd.read_parquet(tmp_path / "spans.parquet")
    slow = spans.assign(end_s=spans.start_s + (spans.end_s - spans.start_s) / 0.8)
    write_spans(slow, tmp_path / "spans.parquet")
    speed = CpuSpeed(probe_us_p10=75.0, probe_us_p50=80.0, probe_us_p90=85.0, samples=30)
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0,
                       foreign_cpu_cores=0.0, steal_fraction=0.0, quiet=False, unsteady=True, cpu_speed=speed,
                       calibrated_probe_us=64.0)  # fmt: skip
    write_summary(summary.model_copy(update={"machine_load": load}), tmp_path)
    over = Profile.model_validate(fit_from_run(tmp_path, PROFILE).profile).overheads
    assert over["train"].factor == pytest.approx(PLANTED["train"] / 0.8, rel=0.05)
    assert over["encaps"].per_call_s == pytest.approx(PLANTED["encaps"], abs=10e-6)
    assert "cores at 0.80x" in over["train"].source


def test_a_fit_names_the_runs_measured_on_a_busy_machine_and_the_cli_warns(tmp_path, pqtwin):
    """A run measured while another process took most of a core (``MachineLoad.busy``) is fitted as it is -- no
    probe reading takes a neighbour's share out -- but the fit names it (``Fit.busy_runs``) and ``calibrate
    --from-run`` says so in a warning; a quiet run is not named."""
    from sim.contract import MachineLoad

    busy, quiet = tmp_path / "busy", tmp_path / "quiet"
    planted_run(busy)
    planted_run(quiet, seed=4)
    load = MachineLoad(cores=2, loadavg_1m_start=1.2, loadavg_1m_end=1.3, twin_cpu_cores=1.0, foreign_cpu_cores=0.62,
                       steal_fraction=0.01, quiet=False, busy=True)  # fmt: skip
    write_summary(read_summary(busy / "summary.json").model_copy(update={"machine_load": load}), busy)
    assert fit_from_run(quiet, PROFILE).busy_runs == ()
    old = load.model_copy(update={"busy": False, "unsteady": False})  # recorded before the split: quiet False only
    write_summary(read_summary(busy / "summary.json").model_copy(update={"machine_load": old}), busy)
    assert len(fit_from_run(busy, PROFILE).busy_runs) == 1
    write_summary(read_summary(busy / "summary.json").model_copy(update={"machine_load": load}), busy)
    assert fit_from_run([busy, quiet], PROFILE).busy_runs == (f"{busy} (other processes used 0.62 cores, steal 1 %)",)
    res = pqtwin("calibrate", "--from-run", str(busy), "--from-run", str(quiet), "--base", str(PROFILE), "--out",
                 str(tmp_path / "fitted.yaml"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "fitted from 1 of 2 run(s) measured on a busy machine" in " ".join(res.stderr.split()), res.stderr
    res = pqtwin("calibrate", "--from-run", str(quiet), "--base", str(PROFILE), "--out", str(tmp_path / "q.yaml"))
    assert res.returncode == 0 and "busy" not in res.stderr


def test_glue_before_a_scaling_step_is_fitted_as_a_constant():
    """Python between two steps does not grow with the message: a factor fitted at one size would carry it
    to other sizes in proportion, so it is kept apart as per_call_s."""
    from hw.fit import _overhead

    predicted = np.full(9, 1e-3)
    glue = np.full(9, 50e-6)
    over = _overhead("train", predicted * 1.2 + glue, predicted, np.full(9, 1000.0), "test", glue)
    assert over.factor == pytest.approx(1.2) and over.per_call_s == pytest.approx(50e-6)
    assert over.apply(0.1e-3, 0) == pytest.approx(0.1e-3 * 1.2 + 50e-6)  # a 10x smaller step keeps its glue


def test_training_runs_of_two_model_sizes_separate_a_per_call_cost_from_a_factor():
    """Steps of two sizes 20x apart (training runs at 12.5 k and 250 k parameters, pooled) that cost 0.8 ms a call
    plus 1.1x the profile: the fit charges both, so a step of another size costs what it would; one size alone
    cannot tell them apart. Its spread is the jitter around what it charges (5 %), not the sizes' differences in
    ratio (a spread around the profile's price would be ~0.5 here: p95s far too wide)."""
    from hw.fit import _overhead

    rng = np.random.default_rng(5)
    predicted = np.r_[np.full(40, 2e-3), np.full(40, 40e-3)]
    measured = (0.8e-3 + 1.1 * predicted) * rng.lognormal(0, 0.05, predicted.size)
    over = _overhead("train", measured, predicted, np.zeros(predicted.size), "test")
    assert over.factor == pytest.approx(1.1, rel=0.05) and over.per_call_s == pytest.approx(0.8e-3, rel=0.2)
    assert over.apply(10e-3, 0) == pytest.approx(0.8e-3 + 11e-3, rel=0.03)  # a size in between
    assert 0.03 < over.sigma < 0.08
    one = _overhead("train", measured[40:], predicted[40:], np.zeros(40), "test")  # the large size alone: a factor
    assert one.apply(2e-3, 0) < 0.9 * (0.8e-3 + 1.1 * 2e-3)  # ... that undercharges the small one


def test_messages_of_two_model_sizes_set_their_line_apart_from_the_small_records():
    """Decryptions of handshake records and frames (~0 over the profile: another code path) and of models at two
    sizes (+80 us at 50 kB, +110 us at 1 MB: the rounds' path): the line goes through the two model sizes, so a
    4 MB model costs what that path's trend says (+200 us), not what a line from the small records would (+440)."""
    from hw.fit import _overhead

    rng = np.random.default_rng(11)
    nbytes = np.r_[np.full(30, 200.0), np.full(20, 5_000.0), np.full(40, 50_000.0), np.full(40, 1_000_000.0)]
    extra = np.r_[np.zeros(50), np.full(40, 80e-6), np.full(40, 110e-6)]
    predicted = 1e-6 + nbytes * 5e-11
    measured = (predicted + extra) * rng.lognormal(0, 0.02, nbytes.size)
    over = _overhead("decrypt", measured, predicted, nbytes, "test")
    charged = over.apply(0.0, 4e6)  # the overhead alone, at 4 MB
    assert charged == pytest.approx(80e-6 + 30e-6 / 950_000 * 3_950_000, rel=0.1)
    one = _overhead("decrypt", measured[nbytes != 50_000.0], predicted[nbytes != 50_000.0],
                    nbytes[nbytes != 50_000.0], "test")  # fmt: skip
    assert one.apply(0.0, 4e6) > 2 * charged  # one model size: the line from the small records


def test_an_extra_per_size_prices_each_size_as_measured_and_interpolates_between():
    """Past 1 MB the profile's price turns memory-bound (x8 for x4 the bytes) where the twin's does not: a line
    through 53 KB and 1 MB carried the cache-warm step on top at 4 MB. With a third, larger size the extra is
    per size: each fitted size as measured, linear in bytes between, the end segments' lines beyond."""
    from hw.fit import _overhead

    rng = np.random.default_rng(12)
    sizes = (53_000.0, 1_000_000.0, 8_000_000.0)
    added = {53_000.0: 40e-6, 1_000_000.0: 220e-6, 8_000_000.0: 300e-6}  # what the code path adds at each
    nbytes = np.r_[np.full(30, 400.0), *(np.full(30, x) for x in sizes)]
    extra = np.r_[np.zeros(30), *(np.full(30, added[x]) for x in sizes)]
    predicted = 1e-6 + nbytes * 1e-10
    measured = (predicted + extra) * rng.lognormal(0, 0.01, nbytes.size)
    rounds = nbytes > 1000
    over = _overhead("decrypt", measured, predicted, nbytes, "test", rounds=rounds)
    assert over.extra_by_bytes is not None and [x for x, _ in over.extra_by_bytes] == list(sizes)
    for x in sizes:
        assert over.extra_s(x) == pytest.approx(added[x], rel=0.05)
    assert over.extra_s(4_000_000.0) == pytest.approx(220e-6 + 80e-6 * 3 / 7, rel=0.05)  # between 1 and 8 MB
    assert over.extra_s(16_000_000.0) == pytest.approx(300e-6 + 80e-6 * 8 / 7, rel=0.05)  # beyond: the last line
    assert over.extra_s(0.0) == over.per_call_s  # a call without bytes: the constant
    assert over.apply(1e-3, 4_000_000.0) == pytest.approx(1e-3 + over.extra_s(4_000_000.0))
    two = _overhead("decrypt", measured[nbytes < 5e6], predicted[nbytes < 5e6], nbytes[nbytes < 5e6], "test",
                    rounds=rounds[nbytes < 5e6])  # fmt: skip
    assert two.extra_by_bytes is None  # two model sizes: the line, as before
    assert two.apply(0.0, 4_000_000.0) > 1.5 * over.extra_s(4_000_000.0)


def test_a_larger_models_messages_widen_the_message_overheads_and_nothing_else(tmp_path):
    """``messages_from``: runs whose messages alone enter the fit; within the sizes the other runs had, every
    price is as without them, the training factor is untouched, and past them the sign overhead follows the
    larger run's messages."""
    runs = [tmp_path / "a", tmp_path / "b"]
    planted_run(runs[0], seed=3)
    s = planted_run(runs[1], seed=4)
    small = tmp_path / "small"
    assert _planted_at(small, 12_500, seed=5).workload.fl.model_parameters * 20 == s.workload.fl.model_parameters
    large = tmp_path / "large"
    _planted_at(large, 2_000_000, seed=6, train=3.0, per_byte=0.0)  # its messages add no per-byte cost
    plain = Profile.model_validate(fit_from_run([*runs, small], PROFILE).profile)
    wide = Profile.model_validate(fit_from_run([*runs, small], PROFILE, messages_from=[large]).profile)

    def fitted(o: Any) -> dict[str, Any]:
        return o.model_dump(exclude={"source"})  # (the source names every run, the larger one's too)

    assert fitted(wide.overheads["train"]) == fitted(plain.overheads["train"])  # its steps (x3) did not enter
    # a fixed-size constant: as without them, its table by model size one point longer (``_by_model_size``)
    encaps, by_size = fitted(wide.overheads["encaps"]), wide.overheads["encaps"].per_call_by_parameters
    assert encaps | {"per_call_by_parameters": by_size[:-1]} == fitted(plain.overheads["encaps"])
    assert by_size[-1][0] == 2_000_000
    assert "its messages only: " in wide.overheads["sign"].source and str(large) in wide.overheads["sign"].source
    sign = wide.overheads["sign"]
    assert sign.extra_by_bytes is not None and sign.extra_by_bytes[-1][0] == 8_000_000
    for x, _ in sign.extra_by_bytes[:-1]:
        assert sign.extra_s(x) == pytest.approx(plain.overheads["sign"].extra_s(x), rel=1e-9)
    assert sign.extra_s(8e6) < 0.5 * plain.overheads["sign"].extra_s(8e6)  # not the line's +2 ns a byte


def _planted_at(d, params: int, seed: int, train: float = PLANTED["train"], per_byte: float = PLANTED["sign_per_byte"]):
    """``planted_run`` at another model size (its own scenario), with the training and per-byte signing
    overheads given."""
    saved = dict(PLANTED)
    PLANTED.update(train=train, sign_per_byte=per_byte)
    try:
        s = planted_run(d, seed=seed, params=params)
    finally:
        PLANTED.clear()
        PLANTED.update(saved)
    return s


def test_a_fixed_size_code_path_is_fitted_per_model_size_and_priced_at_the_scenarios(tmp_path, pqtwin):
    """A KEM operation that costs the twin more in rounds of a larger model (the model's buffers pass through the
    caches between two calls): fitted per model size as well as pooled, and a scenario is priced at its own size,
    interpolated in log size between two fitted sizes and clamped beyond them -- in the simulator's spans too. A fit
    of one size has no table; a code path priced by bytes keeps its line."""
    from pydantic import ValidationError

    from sim.profile import Overhead

    saved = dict(PLANTED)
    runs = []
    try:
        for params, decaps, seed in ((12_500, 20e-6, 3), (200_000, 80e-6, 5)):
            PLANTED.update(decaps=decaps)
            planted_run(tmp_path / str(params), seed=seed, params=params)
            runs.append(tmp_path / str(params))
    finally:
        PLANTED.clear()
        PLANTED.update(saved)
    fit = Profile.model_validate(fit_from_run(runs, PROFILE).profile)
    decaps = fit.overheads["decaps"]
    assert decaps.per_call_by_parameters is not None
    (small, at_small), (large, at_large) = decaps.per_call_by_parameters
    assert (small, large) == (12_500, 200_000)
    assert at_small == pytest.approx(20e-6, abs=6e-6) and at_large == pytest.approx(80e-6, abs=6e-6)
    assert fit.overheads["encaps"].per_call_by_parameters is not None  # the same at both sizes: a table all the same
    assert fit.overheads["sign"].per_call_by_parameters is None  # a line in bytes
    assert fit_from_run(runs[0], PROFILE).profile["overheads"]["decaps"].get("per_call_by_parameters") is None
    fitted = tmp_path / "fitted.yaml"
    res = pqtwin("calibrate", *(x for r in runs for x in ("--from-run", str(r))), "--base", str(PROFILE), "--out",
                 str(fitted))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "by model size (12,500, 200,000 parameters): decaps" in res.stdout
    assert "training steps between 12,500 and 200,000 parameters: on the line between them" in res.stdout
    assert load_profile(fitted).overheads["decaps"].per_call_by_parameters == decaps.per_call_by_parameters
    middle = 50_000  # a quarter of the way from 12.5 k to 200 k in log size is 25 k; 50 k is half
    expected = {12_500: at_small, middle: (at_small + at_large) / 2, 200_000: at_large, 1_000_000: at_large,
                1_000: at_small}  # fmt: skip
    for params, want in expected.items():
        sets = ["workload.fl.rounds=2", f"workload.fl.model_parameters={params}"]
        s = load_scenario(SCENARIOS / "localhost.yaml", sets, fitted)
        assert s.host_profile("local").overheads["decaps"].per_call_s == pytest.approx(want, rel=1e-9)
    base = load_profile(PROFILE)
    for params in (12_500, 200_000):  # the simulator charges it: a decapsulation's span is the op and its constant
        sets = ["workload.fl.rounds=3", f"workload.fl.model_parameters={params}", "deployment.hosts.0.cores=8"]
        s = load_scenario(SCENARIOS / "localhost.yaml", sets, fitted)
        spans = simulate(s, "sequential", 1, 1).spans
        kem = s.workload.crypto.kem
        took = spans[spans.op == f"{kem}.decaps"].eval("end_s - start_s - queue_wait_s")
        added = float(took.median()) - base_s(base, f"{kem}.decaps", 0)
        assert added == pytest.approx(expected[params], abs=0.35 * (at_large - at_small))
    with pytest.raises(ValidationError, match="per_call_by_parameters: sizes must increase"):
        Overhead(per_call_by_parameters=[(2e5, 1e-5), (1e4, 2e-5)], source="t", tag="F")
    with pytest.raises(ValidationError, match="per_call_by_parameters"):  # one size is per_call_s
        Overhead(per_call_by_parameters=[(2e5, 1e-5)], source="t", tag="F")


def test_a_size_whose_calls_cannot_be_fitted_alone_leaves_the_pooled_constant(tmp_path, monkeypatch):
    """Where one size's calls alone fit out of a profile's bounds (a UserError from ``_overhead``), that kind gets no
    table by size, and the fit goes on with its pooled constant."""
    import hw.fit as fit

    runs = [tmp_path / "a", tmp_path / "b"]
    planted_run(runs[0], seed=3, params=12_500)
    planted_run(runs[1], seed=5, params=200_000)
    whole = fit._overhead

    def strict(kind: str, measured: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        if kind == "decaps" and len(measured) < 16:  # one size's 8 calls, not the pooled 16
            raise UserError("--from-run: the fitted overheads.decaps.sigma is 9: out of bounds")
        return whole(kind, measured, *args, **kwargs)

    monkeypatch.setattr(fit, "_overhead", strict)
    over = Profile.model_validate(fit_from_run(runs, PROFILE).profile).overheads
    assert over["decaps"].per_call_by_parameters is None and over["decaps"].per_call_s > 0
    assert over["encaps"].per_call_by_parameters is not None


def test_a_training_step_carries_the_contention_of_the_steps_beside_it():
    # two steps on one host overlapping for half of the first's duration, one alone on another host
    cpu = pd.DataFrame({"op": ["fl.train", "fl.train", "fl.train", "AES-256-GCM.encrypt"],
                        "host": ["a", "a", "b", "a"], "start_s": [0.0, 1.0, 0.0, 0.0],
                        "end_s": [2.0, 4.0, 2.0, 5.0]})  # fmt: skip
    assert _trainings_beside(cpu) == {0: pytest.approx(0.5), 1: pytest.approx(1 / 3), 2: 0.0}


def test_a_constant_the_run_cannot_tell_from_noise_is_not_fitted():
    """A randomised op (ML-DSA signing loops a random number of times) measured at a few small sizes: the
    median of 14 draws misses the profile's median by chance; the line then goes through zero there and the
    per-byte slope comes from the large messages alone. A real constant, as large, is kept."""
    from hw.fit import _overhead

    rng = np.random.default_rng(7)
    steps = 0.12e-3 * rng.geometric(0.25, 100_000)
    typical = float(np.median(steps))
    small = 0.12e-3 * rng.geometric(0.25, 14)
    while abs(float(np.median(small)) - typical) < 0.1e-3:  # a sample as unlucky as the one seen in a real run
        small = 0.12e-3 * rng.geometric(0.25, 14)
    big = 0.12e-3 * rng.geometric(0.25, 40) + 1e-3  # 1 ms of per-byte work at 1 MB
    measured = np.concatenate([small, big])
    predicted = np.full(len(measured), typical)
    nbytes = np.concatenate([np.zeros(14), np.full(40, 1e6)])
    over = _overhead("sign", measured, predicted, nbytes, "test")
    assert over.per_call_s == 0.0
    assert over.per_byte_s == pytest.approx(np.median(big - typical) / 1e6)
    shifted = _overhead("sign", measured + np.where(nbytes == 0, 0.5e-3, 0.0), predicted, nbytes, "test")
    assert shifted.per_call_s == pytest.approx(float(np.median(small - typical)) + 0.5e-3)


def test_a_transfer_counts_from_when_its_record_was_sealed():
    """The twin stamps a record before encrypting it; the simulator charges the encryption apart and carries
    the record once sealed: the fit measures a transfer from the end of the sender's encryption inside it."""
    from hw.fit import _after_sealing

    rows = [SpanRow(0, 1, "aggregator", "local", "distribute", "transfer", 1.0, 1.5, 0.0, 1000),
            SpanRow(0, 1, "aggregator", "local", "distribute", "AES-256-GCM.encrypt", 1.01, 1.2, 0.0, 1000),
            SpanRow(0, 1, "client-1", "local", "upload", "AES-256-GCM.encrypt", 1.1, 1.3, 0.0, 1000),  # another's
            SpanRow(0, 0, "client-1", "local", "handshake", "transfer", 0.5, 0.6, 0.0, 6000)]  # fmt: skip
    spans = to_frame(rows)
    out = _after_sealing(spans[spans.op == "transfer"], spans)
    assert list(out.start_s) == [1.2, 0.5] and list(out.end_s) == [1.5, 0.6]


def test_the_hand_offs_are_fitted_from_the_gaps_no_span_holds():
    """A model's last byte to the client's first step, the last update's last byte to the aggregator's first
    (sequential): their medians; a gap of GLUE_MAX_S or more is not a hand-off."""
    from hw.fit import GLUE_MAX_S, _handoffs
    from sim.profile import INBOX_HANDOFF, RECEIVE_HANDOFF

    rows = []
    for r in range(1, 6):
        t = r * 1.0
        rows += [(r, "aggregator", "distribute", "transfer", t, t + 0.001),
                 (r, "client-1", "receive", "X25519.decaps", t + 0.001 + 80e-6, t + 0.0015),
                 (r, "aggregator", "distribute", "transfer", t + 0.002, t + 0.003),
                 (r, "client-2", "receive", "X25519.decaps", t + 0.003 + 60e-6 * r, t + 0.0035),
                 (r, "client-1", "upload", "transfer", t + 0.01, t + 0.011),
                 (r, "aggregator", "verify", "X25519.decaps", t + 0.011 + 150e-6, t + 0.012)]  # fmt: skip
    rows.append((6, "client-1", "receive", "X25519.decaps", 6.5, 6.6))  # its model never arrived: no wait
    late = 7.001 + 1.5 * GLUE_MAX_S  # not a hand-off
    rows += [(7, "aggregator", "distribute", "transfer", 7.0, 7.001), (7, "client-1", "receive", "X", late, 7.01)]
    spans = pd.DataFrame(rows, columns=["round", "pod", "phase", "op", "start_s", "end_s"])
    spans["slow"] = np.where(spans["round"] == 2, 1.0, 0.0)  # a core ran slow near round 2's steps
    waits = _handoffs(spans, sequential=True)
    assert len(waits[RECEIVE_HANDOFF]) == 10 and np.median(waits[RECEIVE_HANDOFF][:, 0]) == pytest.approx(80e-6)
    assert waits[INBOX_HANDOFF][:, 0] == pytest.approx([150e-6] * 5)
    assert waits[INBOX_HANDOFF][:, 1].tolist() == [0, 1, 0, 0, 0]  # each wait with its step's speed
    assert len(_handoffs(spans, sequential=False)[INBOX_HANDOFF]) == 0  # concurrent: workers take the updates


def test_the_simulator_waits_the_hand_offs_a_profile_has(tmp_path):
    """With the hand-offs in the profile, a client's first step on its model starts that long after the model's
    last byte, and the sequential aggregator's first verification that long after the last update's."""
    from hw.fit import _handoffs
    from sim.profile import INBOX_HANDOFF, RECEIVE_HANDOFF

    data = yaml.safe_load(PROFILE.read_text())
    data["overheads"] = {RECEIVE_HANDOFF: {"per_call_s": 0.001, "source": "test", "tag": "F"},
                         INBOX_HANDOFF: {"per_call_s": 0.0015, "source": "test", "tag": "F"}}  # fmt: skip
    profile = tmp_path / "handoffs.yaml"
    profile.write_text(yaml.safe_dump(data))
    distributions = {}
    for path, floor in ((profile, (0.001, 0.0015)), (PROFILE, (0.0, 0.0))):
        # processor sharing: with Linux's placement a job may wait for a tick's balance, which a hand-off shifts
        sets = ["workload.fl.rounds=3", "deployment.hosts.0.cpu_sharing=processor-sharing"]
        s = load_scenario(SCENARIOS / "localhost.yaml", sets, path)
        spans = simulate(s, "sequential", 1, 1).spans
        waits = _handoffs(spans[spans["round"] > 0], sequential=True)
        assert len(waits[RECEIVE_HANDOFF]) == 6 and len(waits[INBOX_HANDOFF]) == 3
        assert waits[RECEIVE_HANDOFF][:, 0].min() == pytest.approx(floor[0], abs=1e-9)
        assert waits[INBOX_HANDOFF][:, 0].min() == pytest.approx(floor[1], abs=1e-9)
        # concurrent: the main thread submits each distribution job, the job thread that takes it wakes: the job's
        # first span waits for that
        spans = simulate(s, "concurrent", 1, 1).spans
        jobs = spans[(spans.phase == "distribute") & (spans.pod == "aggregator") & (spans.op == "serialize")]
        first = jobs.groupby("round").queue_wait_s.min()
        assert len(first) == 3 and first.min() >= floor[1] - 1e-9
        assert path != profile or first.min() < floor[1] + 0.001  # the hand-off, not a wait for a worker
        # the two clients' job threads wake side by side (the twin's main thread submits both at once): the second
        # does not wait for the first one's hand-off, as it did when the model put both on the main thread
        assert path != profile or jobs.groupby("round").queue_wait_s.max().max() < 2 * floor[1]
        distributions[path] = spans[spans.op == "distribution"].set_index("round").eval("end_s - start_s")
    # concurrent: every message between the aggregator and its worker wakes its receiver as a client's model does.
    # A model reaches a client after the job's queue (1.5 ms), the job's and the answer's hops and its own receipt
    # (1 ms each): 4.5 ms later a round here (two clients' jobs overlap on one worker); with the queue and the
    # receipt alone, 2.5 ms
    extra = distributions[profile] - distributions[PROFILE]
    assert extra.min() >= 0.0035


def test_a_hand_off_is_work_on_the_receiving_hosts_cores(tmp_path):
    """The kernel's traces show a receiving thread running for most of a hand-off (sim/profile.py): the simulator
    runs it on the host's cores. With a core for every thread it lasts what the profile draws; on one core, shared
    with the aggregator sealing the next client's model (sequential), a client's takes longer. A wait would not."""
    from hw.fit import _handoffs
    from sim.profile import RECEIVE_HANDOFF

    data = yaml.safe_load(PROFILE.read_text())
    data["overheads"] = {RECEIVE_HANDOFF: {"per_call_s": 0.0005, "source": "test", "tag": "F"}}
    profile = tmp_path / "handoffs.yaml"
    profile.write_text(yaml.safe_dump(data))
    gaps = {}
    for cores in (16, 1):
        sets = ["workload.fl.rounds=3", "deployment.hosts.0.cpu_sharing=processor-sharing",
                f"deployment.hosts.0.cores={cores}"]  # fmt: skip
        spans = simulate(load_scenario(SCENARIOS / "localhost.yaml", sets, profile), "sequential", 1, 1).spans
        gaps[cores] = _handoffs(spans[spans["round"] > 0], sequential=True)[RECEIVE_HANDOFF][:, 0]
        assert len(gaps[cores]) == 6
    assert gaps[16] == pytest.approx([0.0005] * 6, abs=1e-9)
    assert gaps[1].min() >= 0.0005 - 1e-9 and gaps[1].max() > 0.0008


def test_without_worker_pods_an_update_reaches_a_job_thread_through_the_main_thread(tmp_path):
    """paper-3node has no worker pods: in concurrent mode a client's update goes from its reader thread to the
    main thread, which queues it for a job thread (hw/node/aggregator.py ``_serve``, ``_collect``): an inbox
    hand-off before the job is queued (its first span starts after it) and one in its first span's wait, both on
    the main thread, one at a time. With worker pods (localhost) the reader thread hands the update to a worker
    process itself, at once."""
    from sim.profile import INBOX_HANDOFF

    data = yaml.safe_load(PROFILE.read_text())
    data["overheads"] = {INBOX_HANDOFF: {"per_call_s": 0.0015, "source": "test", "tag": "F"}}
    profile = tmp_path / "inbox.yaml"
    profile.write_text(yaml.safe_dump(data))
    for layout, first_op, handoffs in (
        ("paper-3node.yaml", "ML-KEM-768.decaps", 1),
        ("localhost.yaml", "serialize", 0),
    ):
        s = load_scenario(SCENARIOS / layout, ["workload.fl.rounds=2", "run.replications=1"], profile)
        spans = simulate(s, "concurrent", 1, 1).spans
        for _, rnd in spans[spans["round"] > 0].groupby("round"):
            sent = np.sort(rnd[(rnd.phase == "upload") & (rnd.op == "transfer")].end_s.to_numpy())
            jobs = rnd[(rnd.phase == "verify") & (rnd.pod == "aggregator") & (rnd.op == first_op)].sort_values(
                "start_s"
            )
            assert len(jobs) == len(sent) == 2
            # the first update's hand-offs take 1.5 ms each; the second's may wait for the main thread, which
            # hands updates on one at a time
            for waited in (jobs.start_s.to_numpy() - sent, jobs.queue_wait_s.to_numpy()):
                assert waited[0] == pytest.approx(0.0015 * handoffs, abs=1e-9)
                assert waited[1] >= 0.0015 * handoffs - 1e-9 and (handoffs or waited[1] == pytest.approx(0.0))


@pytest.mark.parametrize("spread", [0.2, 0.5, 0.8])
def test_the_simulator_draws_a_fitted_cost_around_the_twins_median(spread):
    """A code path whose twin durations are lognormal around 2 ms plus the profile's price, with a real spread:
    the fit charges their median and their spread, and the simulator's draws have the twin's median and mean
    (a mean-preserving factor put both exp(-spread²/2) lower: 12 % at 0.5). A hand-off's wait the same."""
    from hw.fit import _overhead, _wait

    rng = np.random.default_rng(3)
    predicted = np.full(4000, 1e-3)
    measured = (predicted + 2e-3) * rng.lognormal(0, spread, predicted.size)
    over = _overhead("serialize", measured, predicted, np.zeros(predicted.size), "test")
    drawn = over.apply_all(np.full(20_000, 1e-3), 0.0, np.random.default_rng(4))
    assert np.median(drawn) == pytest.approx(np.median(measured), rel=0.03)
    assert np.mean(drawn) == pytest.approx(np.mean(measured), rel=0.04)
    one = [over.apply(1e-3, 0.0, np.random.default_rng(k)) for k in range(2000)]  # the event engine's draws
    assert np.median(one) == pytest.approx(np.median(measured), rel=0.05)
    waits = 0.1e-3 * rng.lognormal(0, spread, 4000)
    handoff = _wait(waits, "test")
    drawn = [handoff.apply(0.0, 0.0, np.random.default_rng(k)) for k in range(4000)]
    assert np.median(drawn) == pytest.approx(np.median(waits), rel=0.05)
    assert np.mean(drawn) == pytest.approx(np.mean(waits), rel=0.06)


def _unsteady_load(tmp_path, p90_us: float) -> None:
    """The run's summary says its median probe was the calibrated one (64 µs), its p90 ``p90_us``: unsteady."""
    from sim.contract import CpuSpeed, MachineLoad

    speed = CpuSpeed(probe_us_p10=64.0, probe_us_p50=64.0, probe_us_p90=p90_us, samples=30)
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0,
                       foreign_cpu_cores=0.0, steal_fraction=0.0, quiet=False, unsteady=True, cpu_speed=speed,
                       calibrated_probe_us=64.0)  # fmt: skip
    write_summary(read_summary(tmp_path / "summary.json").model_copy(update={"machine_load": load}), tmp_path)


def _keep_samples(tmp_path, slow_from_s: float, probe_us: float = 64.0, slow_us: float = 100.0) -> None:
    """A speed probe's kept samples (hw/speed.py), both cores every 50 ms: at ``probe_us`` before ``slow_from_s``,
    at ``slow_us`` after."""
    from hw.speed import KEPT_FILE, KEPT_HEADER

    t = np.arange(0.0, 400.0, 0.05)
    rows = [f"{x:.3f},{cpu},{slow_us if x >= slow_from_s else probe_us}\n" for x in t for cpu in (0, 1)]
    (tmp_path / KEPT_FILE).write_text(KEPT_HEADER + "".join(rows))


def test_spans_measured_while_a_core_ran_slow_are_left_out_of_the_fit(tmp_path):
    """A run whose host switched to its slow state halfway (its median probe still at the calibrated speed): the
    spans near a slow probe are left out, so the slow half's 1.6x longer steps do not become overheads. Without
    the kept samples the same spans are fitted whole, and the overheads are off."""
    planted_run(tmp_path, rounds=16)
    spans = pd.read_parquet(tmp_path / "spans.parquet")
    half = float(spans.start_s.median())
    late = spans.start_s >= half
    spans.loc[late, "end_s"] = spans.start_s + (spans.end_s - spans.start_s) * np.where(late, 1.6, 1.0)
    write_spans(spans, tmp_path / "spans.parquet")
    _unsteady_load(tmp_path, p90_us=100.0)

    whole = Profile.model_validate(fit_from_run(tmp_path, PROFILE).profile).overheads
    assert whole["encaps"].per_call_s > 1.4 * PLANTED["encaps"]  # the slow half counts: the test can tell
    _keep_samples(tmp_path, slow_from_s=half - 0.01)  # the probe saw the switch just before the spans did
    over = Profile.model_validate(fit_from_run(tmp_path, PROFILE).profile).overheads
    assert over["encaps"].per_call_s == pytest.approx(PLANTED["encaps"], abs=10e-6)
    assert over["decaps"].per_call_s == pytest.approx(PLANTED["decaps"], abs=10e-6)
    assert over["sign"].per_byte_s == pytest.approx(PLANTED["sign_per_byte"], rel=0.15)
    assert "spans at it (speed probe)" in over["encaps"].source
    # training as measured, whatever the probe saw (``MEMORY_KINDS``): its slow half counts in both fits
    assert over["train"].factor == pytest.approx(whole["train"].factor)
    assert over["train"].factor > 1.3 * PLANTED["train"]


def test_spans_the_probe_saw_slow_are_brought_to_the_profile_speed_by_the_slow_samples(tmp_path):
    """A run that spent all its rounds in the slow state (1.6x) while its median probe, over the whole run, says
    1.0x its calibrated speed (the fast state before the rounds): no span is at speed, so all are fitted, each
    brought back by the slow samples' own median (1/1.6), not by the run's median (1/1.0, which made the slow state
    an overhead: a fitted training factor of 1.43 on 2026-12-01, the two states' ratio)."""
    planted_run(tmp_path, rounds=16)
    spans = pd.read_parquet(tmp_path / "spans.parquet")
    spans["end_s"] = spans.start_s + (spans.end_s - spans.start_s) * 1.6
    write_spans(spans, tmp_path / "spans.parquet")
    _unsteady_load(tmp_path, p90_us=102.4)
    _keep_samples(tmp_path, slow_from_s=-1.0, slow_us=64.0 * 1.6)  # every sample near a span slow
    over = Profile.model_validate(fit_from_run(tmp_path, PROFILE).profile).overheads
    assert over["encaps"].per_call_s == pytest.approx(PLANTED["encaps"], abs=10e-6)
    assert over["decaps"].per_call_s == pytest.approx(PLANTED["decaps"], abs=10e-6)
    assert "the others at 0.62x" in over["encaps"].source
    assert over["train"].factor == pytest.approx(1.6 * PLANTED["train"], rel=0.05)  # training as measured
    _keep_samples(tmp_path, slow_from_s=1e9)  # the same spans where the probe saw none slow: taken as they are
    whole = Profile.model_validate(fit_from_run(tmp_path, PROFILE).profile).overheads
    assert whole["encaps"].per_call_s > 1.4 * PLANTED["encaps"]  # the test can tell


def test_a_kind_whose_only_spans_of_a_size_ran_slow_keeps_them_all(tmp_path):
    """Leaving slow spans out must not change a kind's fit into another form: when a size would keep fewer than
    MIN_ROWS spans at speed (here: every handshake signature ran slow), the kind is fitted from all its spans."""
    from hw.fit import MIN_ROWS, at_speed

    rows = pd.DataFrame({"bytes": [100] * 4 + [10**6] * 8, "slow": [1.0] * 4 + [0.0] * 4 + [1.0] * 4})
    assert len(at_speed(rows, rows["bytes"].to_numpy(dtype=float))) == len(rows)
    rows.loc[:2, "slow"] = 0.0  # three small ones at speed: both sizes keep MIN_ROWS
    assert MIN_ROWS == 3 and len(at_speed(rows, rows["bytes"].to_numpy(dtype=float))) == 3 + 4
    rows["slow"] = np.nan  # unknown (no probe near): kept
    assert len(at_speed(rows, rows["bytes"].to_numpy(dtype=float))) == len(rows)
    few = pd.DataFrame({"bytes": [100] * 2 + [10**6] * 8, "slow": [1.0] * 2 + [0.0] * 4 + [1.0] * 4})
    assert len(at_speed(few, few["bytes"].to_numpy(dtype=float))) == len(few)  # a size of two, both slow: kept


def test_a_code_paths_spread_is_fitted_per_size_and_the_simulator_draws_it_at_the_calls_size():
    """Training steps of two sizes that jitter differently (ln-spread 0.30 at 2 ms, 0.10 at 40 ms, as the twin's
    12.5 k and 250 k steps did, 2026-12-01): the fit keeps each size's spread, and the simulator draws a step's
    jitter at its size -- at the large size, and beyond it, the large one's, not the pooled ~0.2 that put the
    simulated 1 M steps of a round twice as far apart as the twin's."""
    from hw.fit import _overhead

    rng = np.random.default_rng(8)
    predicted = np.r_[np.full(200, 2e-3), np.full(200, 40e-3)]
    measured = predicted * 1.1 * np.r_[rng.lognormal(0, 0.30, 200), rng.lognormal(0, 0.10, 200)]
    over = _overhead("train", measured, predicted, np.zeros(predicted.size), "test")
    assert over.sigma_by_bytes is None and over.sigma_by_cost_s is not None and len(over.sigma_by_cost_s) == 2
    (small, sd_small), (large, sd_large) = over.sigma_by_cost_s
    assert small == pytest.approx(2e-3) and large == pytest.approx(40e-3)
    assert sd_small == pytest.approx(0.30, rel=0.2) and sd_large == pytest.approx(0.10, rel=0.2)
    assert over.sigma_at(0, 160e-3) == sd_large and over.sigma_at(0, 1e-3) == sd_small  # the nearest beyond the ends
    assert over.sigma_at(0, (2e-3 * 40e-3) ** 0.5) == pytest.approx((sd_small + sd_large) / 2)  # halfway in log size
    for engine_draws in (False, True):  # the event model's one call at a time, the vectorized engine's at once
        r = np.random.default_rng(1)
        base = np.full(4000, 160e-3)
        costs = over.apply_all(base, 0.0, r) if engine_draws else np.array([over.apply(b, 0.0, r) for b in base])
        assert np.std(np.log(costs)) == pytest.approx(sd_large, rel=0.1)
    one = _overhead("train", measured[200:], predicted[200:], np.zeros(200), "test")
    assert one.sigma_by_cost_s is None and one.sigma == pytest.approx(0.10, rel=0.2)  # one size: its spread alone


def test_calls_with_bytes_get_their_spread_by_bytes_and_calls_without_by_their_price():
    """Decryptions of small records (no bytes recorded: by price, spread 0.4) and of models at 50 kB and 1 MB
    (spread 0.3 and 0.1): two tables, each looked up on its own axis, never a byte count against seconds."""
    from hw.fit import _overhead

    rng = np.random.default_rng(9)
    nbytes = np.r_[np.zeros(60), np.full(60, 50_000.0), np.full(60, 1_000_000.0)]
    predicted = np.r_[np.full(30, 1e-6), np.full(30, 1e-5), np.full(60, 5e-5), np.full(60, 1e-3)]
    jitter = np.r_[np.full(60, 0.4), np.full(60, 0.3), np.full(60, 0.1)]
    measured = predicted * np.exp(jitter * rng.standard_normal(180))
    over = _overhead("decrypt", measured, predicted, nbytes, "test")
    assert [x for x, _ in over.sigma_by_bytes] == pytest.approx([50_000.0, 1_000_000.0])
    assert [x for x, _ in over.sigma_by_cost_s] == pytest.approx([1e-6, 1e-5])
    assert over.sigma_at(4e6, 0.0) == over.sigma_by_bytes[-1][1] == pytest.approx(0.1, rel=0.3)
    assert over.sigma_at(0, 3e-6) == pytest.approx(0.4, rel=0.3)


def test_a_spread_by_size_draws_what_a_pooled_spread_draws_from_the_stream():
    """A call draws one normal either way, so a profile with spreads by size shifts no later draw of the stream;
    sizes that do not increase are refused with the field named; no spread at any size is deterministic."""
    from pydantic import ValidationError

    from sim.profile import Overhead

    pooled = Overhead(sigma=0.2, source="t", tag="F")
    sized = Overhead(sigma=0.2, sigma_by_cost_s=[(1e-3, 0.3), (1e-2, 0.1)], source="t", tag="F")
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    pooled.apply(5e-3, 0.0, a), sized.apply(5e-3, 0.0, b)
    assert a.random() == b.random()
    with pytest.raises(ValidationError, match="sigma_by_bytes: sizes must increase"):
        Overhead(sigma_by_bytes=[(1e4, 0.1), (1e3, 0.3)], source="t", tag="F")
    with pytest.raises(ValidationError, match="extra_by_bytes: sizes must increase"):
        Overhead(extra_by_bytes=[(1e4, 1e-5), (1e6, 1e-4), (1e5, 2e-4)], source="t", tag="F")
    with pytest.raises(ValidationError, match="extra_by_bytes"):  # two sizes are a line: per_call_s, per_byte_s
        Overhead(extra_by_bytes=[(1e4, 1e-5), (1e6, 1e-4)], source="t", tag="F")
    assert not Overhead(sigma_by_cost_s=[(1e-3, 0.0), (1e-2, 0.0)], source="t", tag="F").varies
    assert Overhead(sigma_by_cost_s=[(1e-3, 0.0), (1e-2, 0.1)], source="t", tag="F").varies


def test_a_fitted_spread_by_size_survives_the_profile_file_and_prices_each_call_at_its_size(tmp_path):
    """A profile with spreads by size written as YAML loads with them (tables of [size, spread]); the vectorized
    engine's draws for calls of mixed prices are the event model's one by one, to the ulp, from the same stream."""
    from sim.profile import Overhead, write_profile

    data = yaml.safe_load(PROFILE.read_text())
    data["overheads"] = {"train": {"factor": 1.2, "sigma": 0.2, "sigma_by_cost_s": [(2e-3, 0.3), (40e-3, 0.1)],
                                   "source": "test", "tag": "F"}}  # fmt: skip
    write_profile(data, tmp_path / "p.yaml")
    over = load_profile(tmp_path / "p.yaml").overheads["train"]
    assert over.sigma_by_cost_s == [(2e-3, 0.3), (40e-3, 0.1)]
    base = np.array([1e-3, 5e-3, 9e-3, 40e-3, 0.2])
    at_once = over.apply_all(base, 0.0, np.random.default_rng(7))
    one_by_one = np.array([over.apply(b, 0.0, r) for r in [np.random.default_rng(7)] for b in base])
    assert np.allclose(at_once, one_by_one, rtol=1e-12, atol=0)
    assert isinstance(over, Overhead) and over.varies


def test_a_runs_duplicated_spans_are_fitted_once_and_said(tmp_path, capsys):
    """Every row of the run's spans.parquet written twice: calibrate --from-run fitted from twice the spans (each
    overhead's n doubled, its spread understated) without a word. The copies are left out, in one warning."""
    planted_run(tmp_path)
    once = fit_from_run(tmp_path, PROFILE)
    capsys.readouterr()
    spans = read_spans(tmp_path / "spans.parquet")
    write_spans(pd.concat([spans, spans], ignore_index=True), tmp_path / "spans.parquet")
    twice = fit_from_run(tmp_path, PROFILE)
    assert (twice.rows, twice.profile) == (once.rows, once.profile)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"warning: --from-run: {tmp_path / 'spans.parquet'}: {len(spans)} of {2 * len(spans)} ")


def test_a_fit_carries_the_training_probe_of_the_runs_its_training_price_came_from():
    """``with_training_probe``: the runs' median step alone where they recorded one of the same reference step;
    none (not the calibration's) where they did not or probed different steps -- the fitted price holds their state."""
    from hw.fit import with_training_probe
    from sim.contract import TrainingProbe

    base = {"cpu": "x", "training_probe_s": 0.05, "training_probe_parameters": 1_000_000, "training_probe_samples": 500}
    probes = [TrainingProbe(parameters=1_000_000, samples=500, alone_s=x, steps=3) for x in (0.07, 0.06, 0.09)]
    got = with_training_probe(base, probes)
    assert got == base | {"training_probe_s": pytest.approx(0.07)}
    assert with_training_probe(base, []) == {"cpu": "x"}
    other = [*probes, TrainingProbe(parameters=2_000_000, samples=500, alone_s=0.2, steps=3)]
    assert with_training_probe(base, other) == {"cpu": "x"}
    assert with_training_probe(base, [*probes, None]) == {"cpu": "x"}  # a run from before the probe pooled in


def test_between_the_training_runs_sizes_a_step_is_priced_on_their_line_not_the_calibrations_bend(tmp_path):
    """Training runs at 12.5 k and 250 k parameters fitted against a calibration whose 50 k point ran 15 % slow (a
    fastest-of-5 caught in a slow moment): a 50 k step is priced on the line between the two sizes' prices, as the
    twin's steps grow, not through the bent point -- in the simulator's spans too; the training sizes themselves and
    sizes beyond them keep the fit's factor and constant; a fit of one size has no range."""
    from pydantic import ValidationError

    from sim.profile import Overhead

    bent = yaml.safe_load(PROFILE.read_text())
    points = bent["ops"]["fl.train"]["points"]
    at_50k = next(i for i, (units, _) in enumerate(points) if abs(units - 500 * 50_000) < 1e4)
    points[at_50k][1] *= 1.15
    (base := tmp_path / "bent.yaml").write_text(yaml.safe_dump(bent))
    runs = [tmp_path / "small", tmp_path / "large"]
    smalls, larges = (_planted_at(runs[0], 12_500, 3), _planted_at(runs[1], 250_000, 5))
    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(yaml.safe_dump(fit_from_run(runs, base).profile))
    train = load_profile(fitted).overheads["train"]
    assert train.linear_between_parameters == (12_500, 250_000)
    assert fit_from_run(runs[1], base).profile["overheads"]["train"].get("linear_between_parameters") is None

    def measured_s(d) -> float:
        spans = read_spans(d / "spans.parquet")
        return float(spans[spans.op == "fl.train"].eval("end_s - start_s").median())

    def charged_s(params: int, rounds: int = 0) -> float:
        sets = [f"workload.fl.model_parameters={params}", "deployment.hosts.0.cores=8"]
        s = load_scenario(SCENARIOS / "localhost.yaml", [f"workload.fl.rounds={rounds or 2}", *sets], fitted)
        if rounds:  # the simulator's steps
            spans = simulate(s, "sequential", 1, 1).spans
            return float(spans[spans.op == "fl.train"].eval("end_s - start_s - queue_wait_s").median())
        fl, prof = s.workload.fl, s.host_profile("local")
        return prof.overheads["train"].apply(
            base_s(prof, "fl.train", fl.samples_per_client * params * fl.local_epochs), 0
        )

    small_s, large_s = measured_s(runs[0]), measured_s(runs[1])
    on_line = small_s + (large_s - small_s) * (50_000 - 12_500) / (250_000 - 12_500)
    assert charged_s(50_000) == pytest.approx(on_line, rel=0.03)
    assert charged_s(50_000, rounds=6) == pytest.approx(on_line, rel=0.06)
    through_bend = train.apply(base_s(load_profile(base), "fl.train", 500 * 50_000), 0)
    assert through_bend > 1.08 * on_line  # what the fit's line alone charged
    for params, d in ((12_500, runs[0]), (250_000, runs[1])):
        assert charged_s(params) == pytest.approx(measured_s(d), rel=0.05)
        assert load_scenario(SCENARIOS / "localhost.yaml", [f"workload.fl.model_parameters={params}"],
                             fitted).host_profile("local").overheads["train"].factor == train.factor  # fmt: skip
    wide = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.model_parameters=1000000"], fitted)
    assert wide.host_profile("local").overheads["train"].factor == train.factor
    assert smalls.workload.fl.samples_per_client == larges.workload.fl.samples_per_client == 500
    with pytest.raises(ValidationError, match="linear_between_parameters: the largest size must exceed"):
        Overhead(linear_between_parameters=(2e5, 1e4), source="t", tag="F")
    data = yaml.safe_load(fitted.read_text())
    data["overheads"]["decaps"] = {"per_call_s": 1e-5, "source": "t", "tag": "F", "linear_between_parameters": [1, 5]}
    with pytest.raises(ValidationError, match=r"overheads\.decaps\.linear_between_parameters: only the train overhead"):
        Profile.model_validate(data)


# --- a burst's first call (sim/profile.py ``Overhead.cold_s``) ---------------------------------------------------


def cold_profile(tmp_path, **decrypt: float):
    """The CI profile with a fitted ``decrypt`` overhead of ``decrypt``'s fields."""
    data = yaml.safe_load(PROFILE.read_text())
    data["overheads"] = {"decrypt": {**decrypt, "source": "test", "tag": "F"}}
    path = tmp_path / "cold.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_bursts_first_call_of_a_kind_pays_its_cold_extra_and_later_ones_do_not(tmp_path):
    """The sequential aggregator decrypts its two updates of a round back to back: the first 2 ms dearer with a
    cold extra of 2 ms, the second as without it; each client's decryption of its model (the first of its burst)
    dearer too."""
    sets = ["workload.fl.rounds=3", "deployment.hosts.0.cpu_sharing=processor-sharing"]
    runs = {}
    for name, path in (("cold", cold_profile(tmp_path, cold_per_call_s=0.002)), ("warm", PROFILE)):
        spans = simulate(load_scenario(SCENARIOS / "localhost.yaml", sets, path), "sequential", 1, 1).spans
        runs[name] = spans[spans.op.str.endswith(".decrypt")].assign(took=lambda d: d.end_s - d.start_s)
    cold, warm = runs["cold"], runs["warm"]
    for rnd in (1, 2, 3):
        agg = [
            r[(r["round"] == rnd) & (r.phase == "verify")].sort_values("start_s").took.to_numpy() for r in (cold, warm)
        ]
        assert agg[0][0] - agg[1][0] == pytest.approx(0.002, abs=2e-4)  # the burst's first
        assert agg[0][1] - agg[1][1] == pytest.approx(0.0, abs=2e-4)  # its second: warm
        got = [r[(r["round"] == rnd) & (r.phase == "receive")].took.sort_values().to_numpy() for r in (cold, warm)]
        assert np.allclose(got[0] - got[1], 0.002, atol=2e-4)  # each client's first


def cold_run(tmp_path, cold_s: float, overhead_s: float, rounds: int = 8) -> None:
    """A twin-shaped sequential run: per round the aggregator decrypts two updates back to back (its burst),
    the first ``cold_s`` dearer, each ``overhead_s`` above the profile's price, then waits 20 ms."""
    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=2"], PROFILE)
    write_run(simulate(s, "sequential", 1, 1), tmp_path, s)
    aead, msg = s.workload.crypto.aead, s.workload.fl.model_parameters * 4
    price = base_s(load_profile(PROFILE), f"{aead}.decrypt", msg) + overhead_s
    rng, rows, t = np.random.default_rng(5), [], 0.0
    for r in range(1, rounds + 1):
        for cost in (price + cold_s, price):
            cost *= float(rng.lognormal(0, 0.02))
            rows.append(SpanRow(0, r, "aggregator", "local", "verify", f"{aead}.decrypt", t, t + cost, 0.0, msg))
            t += cost + 1e-7  # back to back: one burst, no glue to speak of
        rows.append(SpanRow(0, r, "aggregator", "local", "round", "round", t - 0.01, t, 0.0, 0))
        t += 0.02
    write_spans(to_frame(rows), tmp_path / "spans.parquet")
    summary = read_summary(tmp_path / "summary.json")
    write_summary(summary.model_copy(update={"backend": "local", "state": "completed", "rounds_completed": rounds}),
                  tmp_path)  # fmt: skip


def test_the_fit_finds_a_bursts_first_call_extra_and_fits_the_overhead_net_of_it(tmp_path):
    cold_run(tmp_path, cold_s=300e-6, overhead_s=100e-6)
    over = Profile.model_validate(fit_from_run(tmp_path, PROFILE).profile).overheads["decrypt"]
    assert over.cold_per_call_s == pytest.approx(300e-6, abs=30e-6) and over.cold_per_byte_s == 0
    base = base_s(load_profile(PROFILE), "AES-256-GCM.decrypt", 1_000_000)
    assert over.apply(base, 1_000_000) - base == pytest.approx(100e-6, abs=30e-6)  # net of the cold extra
    # without a cold extra the fit says none
    plain = tmp_path / "plain"
    cold_run(plain, cold_s=0.0, overhead_s=100e-6)
    assert Profile.model_validate(fit_from_run(plain, PROFILE).profile).overheads["decrypt"].cold_s(1e6) == 0


def test_a_cold_extra_by_size_is_a_line_through_each_sizes_median():
    from hw.fit import _cold

    rng = np.random.default_rng(1)
    sizes = np.repeat([50_000.0, 1_000_000.0, 8_000_000.0], 12)
    diffs = 10e-6 + 80e-12 * sizes + rng.normal(0, 3e-6, sizes.size)
    pairs = pd.DataFrame({"kind": "decrypt", "bytes": sizes, "diff_s": diffs})
    per_call, per_byte = _cold(pairs)["decrypt"]
    assert per_byte == pytest.approx(80e-12, rel=0.05) and per_call == pytest.approx(10e-6, abs=8e-6)
    # a later call dearer than the first: nothing the simulator could carry, none fitted
    assert _cold(pairs.assign(diff_s=-diffs)) == {}
    assert _cold(pairs.head(2)) == {}  # too few pairs


def test_bursts_split_at_a_gap_and_a_senders_transfer_is_its_work():
    from hw.fit import _bursts

    def row(pod, phase, op, a, b):
        return SpanRow(0, 1, pod, "local", phase, op, a, b, 0.0, 10)

    spans = to_frame([
        row("aggregator", "distribute", "serialize", 0.0, 0.001),
        row("aggregator", "distribute", "transfer", 0.001, 0.004),  # the thread sends: no gap
        row("aggregator", "distribute", "serialize", 0.0041, 0.005),  # warm
        row("aggregator", "verify", "AES-256-GCM.decrypt", 0.050, 0.051),  # after a wait: a new burst
        row("aggregator", "verify", "AES-256-GCM.decrypt", 0.0512, 0.052),
        row("client-1", "receive", "AES-256-GCM.decrypt", 0.0511, 0.0515),  # another pod: its own burst
    ])  # fmt: skip
    got = _bursts(spans).reindex(spans.index)
    assert got["first"].tolist() == [True, False, False, True, False, True]
    assert got.burst.nunique() == 3
