"""bench/loss_tails.py: each lossy message sorted by what the kernel's TCP counters say happened to it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw import netns

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import loss_tails  # noqa: E402

QUIET = dict.fromkeys(loss_tails.COUNTERS, 0)


def grown(**by: int) -> dict[str, int]:
    return {**QUIET, **{name: by.get(name.removeprefix("TcpExt"), 0) for name in loss_tails.COUNTERS}}


@pytest.mark.parametrize(
    ("setup", "flow", "expected"),
    [(grown(TCPTimeouts=1, TcpRetransSegs=1), grown(TCPTimeouts=1, TCPLossProbes=1), "set-up"),
     (QUIET, grown(TCPTimeouts=1, TCPLossProbes=2, TcpRetransSegs=13, TCPSackRecovery=1), "rto"),
     (QUIET, grown(TCPLossProbes=1, TcpRetransSegs=11, TCPSackRecovery=1), "probe"),
     (grown(TCPLossProbes=1, TcpRetransSegs=1), grown(TcpRetransSegs=15, TCPSackRecovery=1), "sack"),
     (grown(TcpRetransSegs=2), QUIET, "clean")],
)  # fmt: skip
def test_a_message_takes_the_first_class_its_counters_fit(setup, flow, expected):
    """The counters of real trials (2026-12-02, a gigabit at 1 % loss): a timeout while opening wins over what the
    message met; a timeout over a loss probe; a probe over SACK recovery; a probe or a resend while opening alone
    leaves the message clean."""
    assert loss_tails.classify(setup, flow) == expected


def test_counters_grow_from_before_to_after_summed_over_namespaces():
    before = [grown(TcpRetransSegs=3, TCPTimeouts=1), grown(TcpRetransSegs=10)]
    after = [grown(TcpRetransSegs=7, TCPTimeouts=1), grown(TcpRetransSegs=12)]
    assert loss_tails.grew(before, after) == grown(TcpRetransSegs=6)


def test_the_summary_splits_the_mean_by_class():
    results = [(0.0004, "clean", 0)] * 6 + [(0.006, "probe", 1)] * 3 + [(0.2, "rto", 2)]
    out = loss_tails.summarize(results)
    assert out["trials"] == 10 and out["median_ms"] == pytest.approx(0.4)
    parts = sum(c["part_of_mean_ms"] for c in out["classes"].values())
    assert parts == pytest.approx(out["mean_ms"]) and list(out["classes"]) == ["rto", "probe", "clean"]
    assert out["classes"]["rto"]["share"] == 0.1 and out["classes"]["probe"]["max_ms"] == pytest.approx(6.0)
    assert out["messages"][-1] == [200.0, "rto", 2] and out["per_resent"] is None  # no resent count among clean


def test_what_a_resent_segment_costs_is_fitted_over_the_messages_no_timer_held():
    """Clean and SACK-recovered messages only: a timer's 200 ms would swamp the slope."""
    results = [(0.0850, "clean", 0), (0.0862, "sack", 4), (0.0874, "sack", 8), (0.29, "rto", 3)]
    fit = loss_tails.summarize(results)["per_resent"]
    assert fit["messages"] == 3 and fit["mean_resent"] == 4
    assert fit["clean_ms"] == pytest.approx(85.0) and fit["slope_ms"] == pytest.approx(0.3)


@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
@pytest.mark.parametrize("new_connections", [False, True])
def test_lossy_messages_through_the_fabric_are_counted_and_sorted(tmp_path, new_connections):
    """A real fabric at 5 % loss: every message lands in one class, some met losses (a lossless fabric would
    leave them all clean), and the JSON holds the run's settings and load."""
    out = tmp_path / "tails.json"
    args = [
        "--rate-mbit",
        "100",
        "--loss",
        "0.05",
        "--size",
        "20000",
        "--trials",
        "10",
        "--sim-runs",
        "5",
        "--host-rate-bps",  # not measured here (~8 s): the model is given it
        "3e9",
        "--json",
        str(out),
    ]
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "loss_tails.py"), *args,
                          *(["--new-connections"] if new_connections else [])],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    classes = data["classes"]
    assert sum(c["trials"] for c in classes.values()) == 10 and set(classes) <= set(loss_tails.CLASSES)
    assert set(classes) - {"clean"}, classes
    assert data["new_connections"] is new_connections and data["loss"] == 0.05 and "load_end" in data
    assert data["steered"] is True  # a lossy link's frames kept in order (this kernel has RPS)
    assert "messages of 20,000 B at 100 Mbit/s, loss 0.05" in run.stdout and len(data["messages"]) == 10
    resent = [r for _, c, r in data["messages"]]
    assert min(resent) >= 0 and any(resent), resent  # counters grow; at 5 % some message resent a segment
    model = data[
        "model"
    ]  # 20,000 B at 100 Mbit/s: ~1.6 ms of serialisation (the bucket lets the first bytes go at once)
    assert model["runs"] == 5 and 1.0 <= model["median_ms"] <= model["p95_ms"] and model["host_rate_bps"] == 3e9
    assert "the model, 5 runs: median" in run.stdout


def test_rescore_scores_a_kept_run_against_the_model_now_and_refuses_a_bad_field_in_one_line(tmp_path):
    """--rescore needs no root: the recorded messages against the model with and without the lost last packet's
    timeout (a message at 20 % loss waits it often: the two means must differ), and a bad field is one line."""
    doc = {"rate_bps": 1e8, "loss": 0.2, "size_bytes": 14_480, "mean_ms": 2.0,
           "messages": [[1.2, "sack"], [200.5, "rto"]],
           "model": {"latency_s": 1e-5, "burst_bytes": 3028, "host_rate_bps": 0.0}}  # fmt: skip
    path = tmp_path / "tails.json"
    path.write_text(json.dumps(doc))
    script = [sys.executable, str(ROOT / "bench" / "loss_tails.py"), "--rescore", str(path), "--sim-runs", "60"]
    means = []
    for extra in ([], ["--transport", "rto_min_s=0"]):
        run = subprocess.run([*script, *extra], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert run.returncode == 0, run.stderr
        assert "over 150 ms:" in run.stdout and "50.00% measured" in run.stdout
        means.append(float(run.stdout.split("mean ")[1].split(" ms")[0]))
    assert means[0] > means[1] + 5, means  # the timeouts (0.2 s each) weigh on the mean
    bad = subprocess.run([*script, "--transport", "rto_min_s=-1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "--transport rto_min_s: Input should be greater than or equal to 0 (got '-1')" in bad.stderr, bad.stderr
    path.write_text("{}")
    empty = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "not a JSON this bench wrote" in empty.stderr and "Traceback" not in empty.stderr


def test_the_timer_count_is_judged_by_an_exact_binomial_test():
    """Against scipy's two-sided test (tests only): 1 of 200 at 1.67 % simulated is no evidence (p = 0.27); 0 of
    1,000 at 2 % is."""
    from scipy import stats

    for k, n, share in ((1, 200, 0.0167), (0, 1000, 0.02), (7, 400, 0.021), (40, 400, 0.021)):
        assert loss_tails.binomial_p(k, n, share) == pytest.approx(stats.binomtest(k, n, share).pvalue, rel=1e-6)
    assert loss_tails.binomial_p(0, 50, 0.0) == 1.0 and loss_tails.binomial_p(1, 50, 0.0) == 0.0
    line = loss_tails.comparison({"mean_ms": 9.67}, {"runs": 300, "median_ms": 7.97, "mean_ms": 11.3, "p95_ms": 8.04,
                                                     "slow_share": 0.0167}, 0.005, 200)  # fmt: skip
    assert "0.50% measured (1 of 200; p = 0.27 at the simulated share)" in line, line


@pytest.mark.parametrize("mean_ms", [0, "x", None])
def test_rescore_of_a_json_without_a_usable_mean_is_one_line(tmp_path, mean_ms):
    doc = {"rate_bps": 1e8, "loss": 0.01, "size_bytes": 14_480, "mean_ms": mean_ms, "messages": [[1.2, "sack"]],
           "model": {"latency_s": 1e-5, "burst_bytes": 3028, "host_rate_bps": 0.0}}  # fmt: skip
    path = tmp_path / "tails.json"
    path.write_text(json.dumps(doc))
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "loss_tails.py"), "--rescore", str(path),
                          "--sim-runs", "3"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr and "not a JSON this bench wrote" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
