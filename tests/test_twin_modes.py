"""``pqtwin hw run --mode both``: sequential and concurrent rounds in turn in one real twin run, split per mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from hw.compare import compare_dirs
from hw.fit import fit_from_run
from hw.modes import pooled_reduction
from sim import contract
from sim.alternating import paired_reduction, rounds_of
from sim.contract import round_mode
from sim.errors import UserError
from sim.runner import simulate, write_run
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS

sys.path.insert(0, str(ROOT / "bench"))
import fuzz_rundirs

SMALL = ["--set", "workload.fl.model_parameters=50000", "--set", "workload.fl.samples_per_client=300"]


def test_rounds_alternate_abba_and_pair_one_of_each_mode():
    """S C C S S C C S: each pair of rounds holds one of each mode, and over four rounds both modes sit at the
    same mean place (a drift through the run weighs on both alike)."""
    assert "".join(round_mode("both", r)[0] for r in range(1, 9)) == "sccssccs"
    assert all(round_mode(m, r) == m for m in ("sequential", "concurrent") for r in range(1, 5))
    seq, conc = rounds_of("sequential", 8), rounds_of("concurrent", 8)
    assert (seq, conc) == ([1, 4, 5, 8], [2, 3, 6, 7]) and sum(seq) == sum(conc)


def _round(r: int, start: float, length: float) -> tuple:
    return (0, r, "aggregator", "agg", "round", "round", start, start + length, 0.0, 0)


def test_the_paired_reduction_takes_each_pair_of_rounds_apart():
    """Rounds 1 (S) and 2 (C) slow together, 3 (C) and 4 (S) fast: the pairs' reductions are both 25 %, however
    far the host's speed moved between the pairs; a pair missing a round (a failed one) is left out."""
    rows = [_round(1, 0.0, 0.040), _round(2, 1.0, 0.030), _round(3, 2.0, 0.0075), _round(4, 3.0, 0.010)]
    df = pd.DataFrame(rows, columns=list(contract.COLUMNS))
    red = paired_reduction(df, 4)["round_latency_s"]
    assert red["pairs"] == 2 and red["reduction_ci95"] == pytest.approx([0.25, 0.25])
    assert red["sequential_mean"] == pytest.approx(0.025) and red["concurrent_mean"] == pytest.approx(0.01875)
    odd = paired_reduction(df.iloc[[0, 1, 2]], 4)["round_latency_s"]  # round 4 failed: its pair is out
    assert odd["pairs"] == 1 and odd["reduction_ci95"] == pytest.approx([0.25, 0.25])


def test_the_paired_reduction_pairs_rounds_within_each_replication():
    """A simulated run of rounds in turn has replications, each with rounds 1..n: a pair is two rounds of one
    replication (25 % in the first, 0 % in the second), never one replication's rounds summed with another's."""
    rows = [_round(1, 0.0, 0.040), _round(2, 1.0, 0.030), _round(1, 0.0, 0.010), _round(2, 1.0, 0.010)]
    df = pd.DataFrame(rows, columns=list(contract.COLUMNS)).assign(replication=[0, 0, 1, 1])
    out = paired_reduction(df, 2)
    red = out["round_latency_s"]
    assert out["replications"] == 2 and red["pairs"] == 2
    assert red["sequential_mean"] == pytest.approx(0.025) and red["concurrent_mean"] == pytest.approx(0.02)
    assert red["reduction_ci95"][0] < 0 < 0.25 < red["reduction_ci95"][1]  # over 0.25 and 0.0: no one value


def test_a_simulation_of_rounds_in_turn_splits_as_a_twins_both_run(pqtwin, tmp_path):
    """``pqtwin sim --mode both --rounds-in-turn``: one run (mode ``alternating``) whose rounds alternate, its halves
    each a run of its mode over every replication, and modes.json paired by rounds within each replication; the
    whole run is no run of one mode to compare. Refused in one line, nothing written, without --mode both or with
    fewer than two rounds."""
    out = tmp_path / "turn"
    res = pqtwin("sim", "scenarios/localhost.yaml", "--mode", "both", "--rounds-in-turn", *SMALL, "--set",
                 "workload.fl.rounds=4", "--replications", "2", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "one run, rounds in turn" in res.stdout and f"each mode: {out / 'sequential'}/" in res.stdout
    assert contract.read_summary(out / "summary.json").mode == "alternating"
    for mode in ("sequential", "concurrent"):
        s = contract.read_summary(out / mode / "summary.json")
        df = contract.read_spans(out / mode / "spans.parquet")
        assert s.mode == mode and s.replications == 2 and s.rounds_completed == 2 * 2
        assert set(df["round"]) - {0} == set(rounds_of(mode, 4)) and set(df["replication"]) == {0, 1}
    modes = json.loads((out / "modes.json").read_text())
    assert modes["paired"] == "rounds" and modes["replications"] == 2 and modes["round_latency_s"]["pairs"] == 4
    with pytest.raises(UserError, match=f"{out}: a --mode both run .*: pass {out / 'sequential'}"):  # the whole run
        compare_dirs(out / "sequential", out)
    refused = [(["--mode", "concurrent"], "--rounds-in-turn: with --mode both"),
               (["--mode", "both", "--set", "workload.fl.rounds=1"], "a round of each mode at least")]  # fmt: skip
    for extra, words in refused:
        res = pqtwin("sim", "scenarios/localhost.yaml", "--rounds-in-turn", *extra, "--out", str(tmp_path / "no"))
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and words in res.stderr, res.stderr
        assert not (tmp_path / "no").exists()
    # a warning of the whole run says which run it is in the user's words, once (not once per half)
    res = pqtwin("sim", "scenarios/localhost.yaml", "--mode", "both", "--rounds-in-turn", *SMALL, "--set",
                 "workload.fl.rounds=4", "--set", "run.horizon_s=0.001", "--out", str(tmp_path / "short"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    said = [line for line in res.stderr.splitlines() if "completed no round" in line]
    assert said == ["warning: (both modes, rounds in turn) a replication completed no round before the horizon (raise "
                    "run.horizon_s)"], res.stderr  # fmt: skip


def test_repeated_both_runs_pool_their_pairs_of_rounds(tmp_path):
    """compare of both runs with repeats: the means over every run's rounds, the CI over all their pairs (a run
    slower throughout moves the means, not the pairs' reductions); a damaged run's spans named in one line."""
    runs = []
    for k, scale in enumerate((1.0, 3.0)):
        rows = [_round(1, 0.0, 0.040 * scale), _round(2, 1.0, 0.030 * scale), _round(3, 2.0, 0.0075 * scale),
                _round(4, 3.0, 0.010 * scale)]  # fmt: skip
        d = tmp_path / f"run{k}"
        d.mkdir()
        contract.write_spans(pd.DataFrame(rows, columns=list(contract.COLUMNS)), contract.RunLayout(d).spans)
        runs.append(d)
    pooled = pooled_reduction(runs)
    assert pooled["pairs"] == 4 and pooled["runs"] == 2 and pooled["reduction_ci95"] == pytest.approx([0.25, 0.25])
    assert pooled["sequential_mean"] == pytest.approx(0.05) and pooled["reduction"] == pytest.approx(0.25)
    contract.RunLayout(runs[1]).spans.write_bytes(b"not parquet")
    with pytest.raises(UserError, match=f"{runs[1]}: .*spans.parquet"):
        pooled_reduction(runs)


def test_a_both_run_for_real_splits_into_a_run_of_each_mode(pqtwin, tmp_path):
    """And damaged copies of it (bench/fuzz_rundirs.py) end in a result or one line."""
    out = tmp_path / "both"
    res = pqtwin("hw", "run", "scenarios/localhost.yaml", "--mode", "both", "--rounds", "4", *SMALL,
                 "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "round latency reduction" in res.stdout and "one run, rounds in turn" in res.stdout
    whole = contract.read_summary(out / "summary.json")
    assert whole.mode == "both" and whole.rounds_completed == 4 and whole.state == "completed"
    spans = contract.read_spans(out / "spans.parquet")
    workers = {p for p in spans.pod if p.startswith("worker")}
    assert workers, "the concurrent rounds' workers ran"
    for mode, rounds in (("sequential", {1, 4}), ("concurrent", {2, 3})):
        d = out / mode
        s = contract.read_summary(d / "summary.json")
        df = contract.read_spans(d / "spans.parquet")
        assert s.mode == mode and s.rounds_completed == 2 and set(df["round"]) - {0} == rounds
        assert s.events == len(df) < whole.events and len(s.accuracy_per_round) == 2  # its own spans, its rounds
        assert (
            "workload:\n" in (d / "scenario.yaml").read_text() and f"mode: {mode}" in (d / "scenario.yaml").read_text()
        )
        by_workers = df[(df["round"] > 0) & df.pod.isin(workers)]
        assert by_workers.empty == (mode == "sequential")  # a sequential round's security work stays on the aggregator
    modes = json.loads((out / "modes.json").read_text())
    assert modes["paired"] == "rounds" and modes["round_latency_s"]["pairs"] == 2
    assert modes["round_latency_s"]["reduction"] is not None
    # the whole run is no run of one mode: compare and the fit name the two that are (in one line, the CLI's)
    s = load_scenario(SCENARIOS / "localhost.yaml", [o for o in SMALL if o != "--set"] + ["workload.fl.rounds=4"])
    sim = tmp_path / "sim"
    write_run(simulate(s, "concurrent", replications=2), sim, s)
    with pytest.raises(UserError, match="a --mode both run") as refused:
        compare_dirs(sim, out)
    assert str(out / "concurrent") in str(refused.value)
    with pytest.raises(UserError, match=r"--from-run: .*a --mode both run"):
        fit_from_run([out], None)
    assert compare_dirs(sim, out / "concurrent")["runs"]["hw"]["mode"] == "concurrent"
    from app_pages.twin import run_dirs  # the app's Twin page offers the halves, not the whole

    offered = {Path(d).relative_to(tmp_path).as_posix() for d in run_dirs(tmp_path)}
    assert {"both/sequential", "both/concurrent", "sim"} <= offered and "both" not in offered
    # the report of the whole: its concurrent rounds against its sequential ones, with the pairs' reduction
    res = pqtwin("report", str(out), "--out", str(tmp_path / "r.html"))
    assert res.returncode == 0 and "its concurrent rounds against its sequential ones" in res.stdout, res.stderr
    page = (tmp_path / "r.html").read_text()
    red = modes["round_latency_s"]["reduction"] * 100
    assert f"reduction concurrent vs sequential {red:+.1f} %" in page and "2 pairs of rounds" in page
    assert "Baseline: sequential (localhost, sequential mode" in page and "what-if: concurrent" in page
    res = pqtwin("report", str(out), "--out", str(tmp_path / "x.html"), "--baseline", str(out / "sequential"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and f"give {out}/sequential or" in res.stderr

    # the commands that read run directories on copies of this run (and of a simulated both run, and of this one
    # as a killed run leaves it) with one file damaged (bench/fuzz_rundirs.py, 2,000 cases there): a result or one
    # line naming what is wrong, never a traceback, a hang or a half-written output
    runs = fuzz_rundirs.make_runs(tmp_path / "fuzz", hw=out)
    results = fuzz_rundirs.run_cases(fuzz_rundirs.generate(48, 11, fuzz_rundirs.tree(runs)), 60, 2)
    failed = [(r.case.kind, r.problems, r.stderr[-300:]) for r in results if r.problems]
    assert len(results) == 48 and not failed, failed
    assert {r.code for r in results} == {0, 2}  # some damage is harmless (a log), some refused
    # compare of the simulated both run with the twin's: each mode, and the reduction simulated and measured
    res = pqtwin("compare", str(runs["sim"]), str(out))
    assert res.returncode == 0, res.stderr
    assert "sequential: fidelity:" in res.stdout and "concurrent: fidelity:" in res.stdout
    assert "round latency reduction: simulated" in res.stdout and "(2 pairs of rounds in 1 run)" in res.stdout
    red = json.loads((out / "compare" / "reduction.json").read_text())
    simulated = json.loads((runs["sim"] / "modes.json").read_text())["round_latency_s"]["reduction"]
    assert red["measured"]["reduction"] == pytest.approx(modes["round_latency_s"]["reduction"])
    assert red["simulated"]["reduction"] == pytest.approx(simulated) and red["simulated"]["replications"] == 2
    assert red["difference_points"] == pytest.approx((simulated - red["measured"]["reduction"]) * 100)
    for mode in ("sequential", "concurrent"):
        half = json.loads((out / "compare" / mode / "compare.json").read_text())
        assert half["runs"]["hw"]["mode"] == half["runs"]["sim"]["mode"] == mode
    turn = tmp_path / "turn"  # simulated as the twin ran it: its reduction paired by rounds too
    res = pqtwin("sim", "scenarios/localhost.yaml", "--mode", "both", "--rounds-in-turn", *SMALL, "--set",
                 "workload.fl.rounds=4", "--replications", "2", "--out", str(turn))  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = pqtwin("compare", str(turn), str(out), "--out", str(tmp_path / "ct"))
    assert res.returncode == 0, res.stderr
    assert "simulated" in res.stdout and "(4 pairs of rounds in 2 replications), measured" in res.stdout
    assert json.loads((tmp_path / "ct" / "reduction.json").read_text())["simulated"]["pairs"] == 4
    res = pqtwin("compare", str(runs["sim"]), str(out))  # an earlier report there: --force to replace it
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--force" in res.stderr
    res = pqtwin("compare", str(runs["sim"]), str(out), str(out / "sequential"), "--out", str(tmp_path / "c"))
    assert res.returncode == 2 and "is not a --mode both run" in res.stderr and not (tmp_path / "c").exists()


def test_a_kubernetes_run_has_one_mode_and_a_both_run_two_rounds_at_least(pqtwin, tmp_path):
    res = pqtwin("hw", "run", "scenarios/localhost.yaml", "--mode", "both", "--backend", "k8s", "--dry-run")
    assert res.returncode == 2 and "--mode both: with --backend local or netns" in res.stderr
    res = pqtwin("hw", "run", "scenarios/localhost.yaml", "--mode", "all", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "sequential, concurrent or both" in res.stderr
    res = pqtwin(
        "hw", "run", "scenarios/localhost.yaml", "--mode", "both", "--rounds", "1", "--out", str(tmp_path / "y")
    )
    assert res.returncode == 2 and "a round of each mode at least" in res.stderr and not (tmp_path / "y").exists()


def test_a_simulated_alternating_run_runs_each_round_in_its_mode_and_splits_as_the_twins_run_does(tmp_path):
    """``simulate(..., "alternating")``: one run whose rounds alternate the modes as a ``--mode both`` twin run's do,
    so its connections age across both modes' rounds; ``sim.alternating.split`` cuts it into a run of each mode, which
    holds that mode's rounds (crypto workers in the concurrent ones only) and reads as a run of its mode."""
    from sim.alternating import split
    from sim.runner import ALTERNATING

    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=8", "run.replications=2"])
    run = simulate(s, ALTERNATING, workers=0)
    write_run(run, tmp_path, s)
    summaries = split(tmp_path)
    for mode in ("sequential", "concurrent"):
        spans = contract.read_spans(contract.RunLayout(tmp_path / mode).spans)
        fl = spans[spans["round"] > 0]
        assert set(fl["round"]) == set(rounds_of(mode, 8)) and set(fl["replication"]) == {0, 1}
        assert fl["pod"].str.startswith("worker").any() == (mode == "concurrent")
        assert summaries[mode].mode == mode and summaries[mode].rounds_completed == 2 * 4  # over both replications
    whole = run.spans[run.spans["round"] > 0]
    assert whole[whole["pod"].str.startswith("worker")]["round"].isin(rounds_of("concurrent", 8)).all()
    assert simulate(s, ALTERNATING, workers=0).spans.equals(run.spans)  # one seed, the same run
