"""Scenario files: shipped ones validate; bad ones fail with one line naming file, field and value."""

from __future__ import annotations

import json

import pytest
import yaml

from sim.errors import UserError
from sim.scenario import apply_override, load_scenario, load_scenario_data, required_ops

from .conftest import SCENARIOS

SHIPPED = sorted(SCENARIOS.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_validate(path):
    s = load_scenario(path)
    for host in s.deployment.hosts:
        assert required_ops(s) <= set(s.host_profile(host.name).ops)


def test_at_least_the_three_named_scenarios_ship():
    assert {"paper-3node.yaml", "ward-200.yaml", "localhost.yaml"} <= {p.name for p in SHIPPED}


def test_ward_has_about_200_devices():
    s = load_scenario(SCENARIOS / "ward-200.yaml")
    assert 180 <= sum(p.count for p in s.workload.devices) <= 220


BAD = [
    ("workload.fl.epochs=3", "workload.fl.epochs: unknown key"),
    ("deployment.network.links.0.bandwidth_bps=-1e6", "deployment.network.links[0].bandwidth_bps"),
    ("deployment.pods.client-1.host=pi-9", "deployment.pods[1].host: no such host"),
    ("workload.crypto.signature=Dilithium9", "workload.crypto.signature: unknown signature"),
    ("workload.crypto.kem=ML-DSA-65", "workload.crypto.kem: unknown kem"),
    (
        "deployment.network.links.1.preset=carrier-pigeon",
        "deployment.network.links[1].preset: unknown link preset",
    ),
    ("workload.fl.clients=5", "workload.fl.clients"),
    ("workload.devices.0.report_to=nobody", "workload.devices[0].report_to"),
    ("deployment.hosts.0.profile=missing", "deployment.hosts[0].profile: profile file not found"),
    ("workload.fl.quorum=1.5", "workload.fl.quorum"),
    ("deployment.network.links.0.loss=1", "deployment.network.links[0].loss"),
    ("deployment.network.links.0.burst_bytes=-1", "deployment.network.links[0].burst_bytes"),
    ("deployment.network.links.0.burst_bytes=2e12", "deployment.network.links[0].burst_bytes"),
    ("run.series_bin_s=0.00001", "run.series_bin_s: "),  # more bins than series.parquet keeps: was cut silently
]


@pytest.mark.parametrize(("override", "expected"), BAD)
def test_bad_scenario_names_file_field_and_value(override, expected):
    with pytest.raises(UserError) as info:
        load_scenario(SCENARIOS / "paper-3node.yaml", [override])
    lines = info.value.lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(str(SCENARIOS / "paper-3node.yaml") + ": ")
    assert expected in lines[0]
    assert "(got " in lines[0]


@pytest.mark.parametrize("ends", [("pi-1", "switch"), ("switch", "pi-1")], ids=["same", "reversed"])
def test_a_second_link_between_the_same_two_ends_is_refused(ends):
    """The graph keeps one edge per pair: a second link between the same ends (a copy-paste, or the pair written
    the other way round) silently replaced the first, and `scenario check` said ok."""
    sets = [f"deployment.network.links.1.a={ends[0]}", f"deployment.network.links.1.b={ends[1]}"]
    with pytest.raises(UserError) as info:
        load_scenario(SCENARIOS / "paper-3node.yaml", sets)
    (line,) = info.value.lines
    assert "deployment.network.links[1]: links[0] already joins these two" in line, line


def test_algorithm_the_profile_cannot_price_is_rejected(tmp_path):
    prof = yaml.safe_load((SCENARIOS / "profiles" / "pi4-liboqs.yaml").read_text())
    del prof["ops"]["ML-KEM-768.decaps"]
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "thin.yaml").write_text(yaml.safe_dump(prof))
    data = yaml.safe_load((SCENARIOS / "paper-3node.yaml").read_text())
    for h in data["deployment"]["hosts"]:
        h["profile"] = "thin"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        load_scenario(tmp_path / "s.yaml")
    assert "has no cost for ML-KEM-768.decaps" in info.value.lines[0]


def test_unreachable_pod_is_rejected(tmp_path):
    data = yaml.safe_load((SCENARIOS / "paper-3node.yaml").read_text())
    data["deployment"]["network"]["links"] = data["deployment"]["network"]["links"][:2]  # pi-3 cut off
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "pi4-liboqs.yaml").write_text((SCENARIOS / "profiles" / "pi4-liboqs.yaml").read_text())
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        load_scenario(tmp_path / "s.yaml")
    assert any("no network route" in line for line in info.value.lines)


def test_override_by_index_and_name():
    data = {"hosts": [{"name": "a", "cores": 1}, {"name": "b", "cores": 1}]}
    apply_override(data, "hosts.1.cores=4")
    apply_override(data, "hosts.a.cores=8")
    assert [h["cores"] for h in data["hosts"]] == [8, 4]
    with pytest.raises(UserError, match="no list item 'zz'"):
        apply_override(data, "hosts.zz.cores=1")
    with pytest.raises(UserError, match=r"expected dotted\.path=value"):
        apply_override(data, "nonsense")


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml: not valid YAML at line"):
        load_scenario(bad)
    with pytest.raises(UserError, match="cannot read file"):
        load_scenario(tmp_path / "nope.yaml")


def test_cli_check_and_schema(pqtwin):
    ok = pqtwin("scenario", "check", "scenarios/ward-200.yaml")
    assert ok.returncode == 0 and "ok" in ok.stdout
    schema = json.loads(pqtwin("scenario", "schema").stdout)
    assert {"workload", "deployment", "run"} <= set(schema["properties"])


@pytest.mark.parametrize(("override", "expected"), BAD[:4])
def test_cli_bad_scenario_one_line_no_traceback(pqtwin, override, expected):
    res = pqtwin("sim", "scenarios/paper-3node.yaml", "--set", override, "--out", "/nonexistent/never")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr


def test_a_run_directory_carries_its_profiles_and_reruns_exactly(tmp_path):
    """write_run: scenario.yaml names profiles/<name>.yaml copies, also of a --profile override, so the directory
    reruns as the same run wherever it is moved."""
    import shutil

    from sim.runner import simulate, write_run

    paper = SCENARIOS / "paper-3node.yaml"
    other = tmp_path / "elsewhere" / "pi4-openssl.yaml"  # another file with the same stem as the scenario's
    other.parent.mkdir()
    shutil.copy(SCENARIOS / "profiles" / "pi4-liboqs.yaml", other)
    s = load_scenario(paper, ["workload.fl.rounds=2", "workload.devices.0.profile=pi4-openssl"])
    data = yaml.safe_load(s.to_yaml())
    data["deployment"]["hosts"][0]["profile"] = str(other)
    s = load_scenario_data(data, paper)
    first = simulate(s, "sequential", 3, 2)
    write_run(first, tmp_path / "run", s)
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "run", moved)
    written = yaml.safe_load((moved / "scenario.yaml").read_text())
    refs = [h["profile"] for h in written["deployment"]["hosts"]]
    assert refs[0] != refs[1] == refs[2] and set(refs) == {"pi4-openssl", "pi4-openssl-2"}
    assert sorted(p.name for p in (moved / "profiles").iterdir()) == ["pi4-openssl-2.yaml", "pi4-openssl.yaml"]
    again = load_scenario(moved / "scenario.yaml")
    assert again.host_profile("pi-1").ops == s.host_profile("pi-1").ops
    assert again.host_profile("pi-2").ops == s.host_profile("pi-2").ops
    second = simulate(again, "sequential", 3, 2)
    assert second.summary.round_latency_s == first.summary.round_latency_s


def test_a_run_directory_reruns_into_itself(tmp_path):
    """`pqtwin sim DIR/scenario.yaml --out DIR --force`: the profiles are copied from what was read at load, not
    from the files --force has just cleared."""
    from pqtwin.cli import run

    out = tmp_path / "run"
    assert run(["sim", str(SCENARIOS / "paper-3node.yaml"), "--out", str(out), "--replications", "2"]) == 0
    before = json.loads((out / "summary.json").read_text())["round_latency_s"]
    assert run(["sim", str(out / "scenario.yaml"), "--out", str(out), "--force", "--replications", "2"]) == 0
    assert json.loads((out / "summary.json").read_text())["round_latency_s"] == before
    assert (out / "profiles" / "pi4-openssl.yaml").is_file()
