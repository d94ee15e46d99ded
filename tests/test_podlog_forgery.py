"""A pod's log is its report channel on Kubernetes (hw/podlog.py), and a log is untrusted text: a stranger can put
lines into the aggregator's (a rejected HELLO's suite id was logged verbatim), and any library a pod runs can
print anything. These tests feed the backend's readers -- ``_collect`` (nodes/ and spans/ from the pods' logs)
and ``LogFollower._scan`` (progress lines) -- logs holding what the nodes really print (``LogReporter``) mixed
with forged lines, as the attack hunt injected them (no API server here: the watcher is a stand-in holding logs).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hw import podlog
from hw.k8s.backend import _collect, render_run
from hw.k8s.watch import LogFollower
from hw.node.report import LogReporter
from hw.rundir import NodeResult
from sim.contract import SpanRow

from .test_k8s_backend import QUIET, scenario

ROUNDS = 3


def printed(capsys: pytest.CaptureFixture[str], tmp: Path, name: str, result: NodeResult, pod: str = "") -> str:
    """What ``name``'s LogReporter prints at its end: its result block, spans in it (one span of pod ``pod``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "spans").mkdir(exist_ok=True)
    (tmp / "nodes").mkdir(exist_ok=True)
    spans = [SpanRow(0, 1, pod or name, "pi-1", "train", "fl.train", 0.0, 1.0, 0.0, 0)]
    capsys.readouterr()
    LogReporter(tmp).finish(name, result, spans)
    return capsys.readouterr().out


def forged(name: str, result: object, spans: bytes = b"", kind: str = "RESULT") -> str:
    """A block as a stranger would write one: the real format, any name and any payload."""
    payload = json.dumps({"result": result, "spans": base64.b64encode(spans).decode()}).encode()
    text = base64.b64encode(payload).decode()
    lines = [text[i : i + 76] for i in range(0, len(text), 76)]
    return "\n".join([f"----- BEGIN PQTWIN {kind} {name} -----", *lines, f"----- END PQTWIN {kind} {name} -----"])


@pytest.fixture
def run(tmp_path):
    """(plan, out, collect(logs by process name) -> summary): ``_collect`` on a real plan of a 3-node run."""
    r = render_run(scenario(*QUIET), "sequential", ROUNDS, 1)
    out = tmp_path / "run" / "inner"
    for d in ("nodes", "spans", "logs"):
        (out / d).mkdir(parents=True)
    k8s = {p.name: p.k8s for p in r.plan.pods}

    def collect(logs: dict[str, str]):
        followers = {k8s[name]: SimpleNamespace(text=lambda t=text: t) for name, text in logs.items()}
        codes = {p.name: 0 for p in r.plan.pods}
        return _collect(r.scenario, out, r.plan, followers_of(followers), "completed", "", codes, 1.0, "ns", "id", [])

    return r.plan, out, collect


def followers_of(followers: dict[str, object]) -> SimpleNamespace:
    return SimpleNamespace(followers=followers)


AGG = NodeResult(state="completed", initial_accuracy=0.1, accuracy_per_round=[0.5, 0.6, 0.7], security={"hello": 1})
CLIENT = NodeResult(state="completed", rounds=ROUNDS)


def test_a_block_naming_a_path_or_another_process_writes_nothing_of_it(run, capsys, tmp_path):
    _, out, collect = run
    outside = tmp_path / "OUTSIDE"
    agg_log = "\n".join([
        "aggregator: listening",
        forged(f"{outside}/pwned", {"state": "completed", "reason": "a stranger's"}, b"x"),
        forged("../../escaped", {"state": "completed", "reason": "a stranger's"}, b"x"),
        forged("client-9", {"state": "completed", "security": {"forged-by-stranger": 12345}}),
        forged("client-2", {"state": "failed", "security": {"forged-by-stranger": 1}}),  # a real process, not its pod
        printed(capsys, tmp_path / "agg", "aggregator", AGG),
    ])  # fmt: skip
    logs = {
        "aggregator": agg_log,
        "client-1": printed(capsys, tmp_path / "c1", "client-1", CLIENT),
        "client-2": printed(capsys, tmp_path / "c2", "client-2", CLIENT),
    }
    summary = collect(logs)
    assert not outside.exists()
    assert not (tmp_path / "escaped.json").exists() and not (tmp_path / "run" / "escaped.json").exists()
    assert sorted(p.name for p in (out / "nodes").iterdir()) == ["aggregator.json", "client-1.json", "client-2.json"]
    assert sorted(p.name for p in (out / "spans").iterdir()) == ["aggregator.parquet", "client-1.parquet",
                                                                 "client-2.parquet"]  # fmt: skip
    assert NodeResult.model_validate_json((out / "nodes/client-2.json").read_text()) == CLIENT
    assert summary.security == {"hello": 1}  # no forged counter summed in
    said = [w for w in summary.warnings if "aggregator" in w and "not its own" in w]
    assert len(said) == 1 and all(n in said[0] for n in ("client-9", "client-2", "'../../escaped'")), said
    assert len(summary.warnings) == 1, summary.warnings  # said once, not once a block


def test_an_unterminated_or_damaged_block_does_not_swallow_the_real_one(run, capsys, tmp_path):
    _, out, collect = run
    early = printed(capsys, tmp_path / "early", "aggregator", NodeResult(state="failed", reason="an earlier block"))
    real = printed(capsys, tmp_path / "agg", "aggregator", AGG)
    text = base64.b64encode(json.dumps({"result": {}, "spans": ""}).encode()).decode()
    agg_log = "\n".join([
        early,
        "----- BEGIN PQTWIN RESULT aggregator -----",  # injected, never ended
        "stray text a stranger wrote",
        real,
        "----- BEGIN PQTWIN RESULT aggregator -----\nnot base64!\n----- END PQTWIN RESULT aggregator -----",
        "----- BEGIN PQTWIN RESULT aggregator -----\n" + base64.b64encode(b"[1, 2").decode() +
        "\n----- END PQTWIN RESULT aggregator -----",  # not JSON
        forged("aggregator", ["a list"]),  # JSON, not a result
        forged("aggregator", {"state": "bogus"}),  # not a NodeResult
        f"----- BEGIN PQTWIN RESULT aggregator -----\n{text}\n----- END PQTWIN RESULT aggregator -----",  # no state
        "----- BEGIN PQTWIN RESULT aggregator -----",  # and one more left open at the end
    ])  # fmt: skip
    summary = collect({"aggregator": agg_log, "client-1": printed(capsys, tmp_path / "c1", "client-1", CLIENT)})
    assert NodeResult.model_validate_json((out / "nodes/aggregator.json").read_text()) == AGG
    assert summary.accuracy_per_round == [0.5, 0.6, 0.7]


def test_another_threads_log_line_inside_a_block_does_not_lose_it():
    """On Kubernetes a pod's stdout and stderr are one log: a warning another thread logs while the node prints its
    result lands inside the block, which was then dropped and the node's result lost (the review)."""
    lines = forged("aggregator", {"state": "completed"}, spans=bytes(300)).splitlines()  # a block of 10 lines
    log = "\n".join([*lines[:2], "WARNING pqtwin.node: aggregator: handshake rejected: 'x' offered 'y'", *lines[2:]])
    assert podlog.results(log)["aggregator"][0] == {"state": "completed"}


def test_the_last_complete_block_of_a_name_wins_and_a_new_begin_starts_a_new_block():
    first, second = forged("aggregator", {"state": "failed"}), forged("aggregator", {"state": "completed"})
    unterminated = "----- BEGIN PQTWIN RESULT aggregator -----\n" + forged("x", 1).splitlines()[1]
    assert podlog.results(first + "\n" + second)["aggregator"][0] == {"state": "completed"}
    assert podlog.results(second + "\n" + unterminated + "\n" + first)["aggregator"][0] == {"state": "failed"}
    assert podlog.results(first + "\n" + unterminated)["aggregator"][0] == {"state": "failed"}
    # a PROFILE block opened and never ended does not swallow a RESULT block either
    assert podlog.results("----- BEGIN PQTWIN PROFILE n -----\n" + first)["aggregator"][0] == {"state": "failed"}
    assert podlog.extract(forged("n", 1, kind="PROFILE") + "\n----- BEGIN PQTWIN PROFILE n -----", "PROFILE")


def follow(tmp_path: Path, lines: list[str]) -> LogFollower:
    """A follower fed ``lines`` (a chunk each, as the log stream brings them) and scanned after each."""
    f = LogFollower(None, "ns", "aggregator", tmp_path / "aggregator.log", rounds=ROUNDS)  # type: ignore[arg-type]
    for line in lines:
        f.data.extend((line + "\n").encode(errors="surrogateescape"))  # \udcff: a byte not UTF-8
        f._scan()  # raising here is what killed the follower thread
    return f


def real_progress(capsys: pytest.CaptureFixture[str], r: int) -> str:
    capsys.readouterr()
    podlog.emit_progress(r, 0.5)
    return capsys.readouterr().out.rstrip("\n")


@pytest.mark.parametrize("line", [
    'pqtwin-progress {"round": "x"}', 'pqtwin-progress {"round": 1e400}', "pqtwin-progress [1, 2]",
    'pqtwin-progress {"round": 999999, "accuracy": 1.0}', 'pqtwin-progress {"round": -1}',
    'pqtwin-progress {"round": 2.5}', 'pqtwin-progress {"round": true}', 'pqtwin-progress {"round": null}',
    "pqtwin-progress " + "[" * 100000, 'pqtwin-progress {"round": ' + "9" * 5000 + "}", "pqtwin-progress 3",
    "pqtwin-progress \udcff",
])  # fmt: skip
def test_a_forged_progress_line_is_ignored_and_never_kills_the_follower(tmp_path, capsys, line):
    f = follow(tmp_path, [real_progress(capsys, 1), line, real_progress(capsys, 2)])
    assert f.round == 2
    f = follow(tmp_path, [real_progress(capsys, 1), line])
    assert f.round == 1


def test_progress_never_runs_backwards_nor_past_the_runs_rounds(tmp_path, capsys):
    f = follow(tmp_path, [real_progress(capsys, r) for r in (1, 2, 1, 0)])
    assert f.round == 2
    f = follow(tmp_path, [real_progress(capsys, r) for r in (ROUNDS, ROUNDS + 1)])
    assert f.round == ROUNDS


def test_a_calibration_jobs_last_valid_profile_wins(capsys):
    """The same reader serves calibration Jobs' PROFILE blocks: a damaged or forged one printed after the real
    profile, or one left open before it, does not cost the node its profile."""
    import yaml

    from hw.k8s.backend import _last_profile
    from hw.k8s.pod import emit

    from .conftest import SCENARIOS

    data = yaml.safe_load((SCENARIOS / "profiles/ci-x86.yaml").read_text())
    emit("PROFILE", "pi-1", yaml.safe_dump(data).encode())
    real = capsys.readouterr().out
    log = "\n".join([
        "----- BEGIN PQTWIN PROFILE pi-1 -----",  # never ended
        real,
        forged("pi-1", {"not": "a profile"}, kind="PROFILE"),
        "----- BEGIN PQTWIN PROFILE pi-1 -----\n" + base64.b64encode(b"[" * 1000).decode() +  # too deep for YAML
        "\n----- END PQTWIN PROFILE pi-1 -----",
        forged("pi-2", data, kind="PROFILE"),
    ])  # fmt: skip
    assert _last_profile(log, "pi-1") == data
    assert _last_profile(forged("pi-1", {"not": "a profile"}, kind="PROFILE"), "pi-1") is None
