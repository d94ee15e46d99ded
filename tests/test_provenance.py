"""Profiles say what they price, the twin runs the provider the scenario names, and the simulator says when the
two differ (sim/provenance.py, sim/catalogue.TWIN_PROVIDERS, hw/crypto/registry.py preference)."""

from __future__ import annotations

import json

import pytest
import yaml

from hw.crypto import registry
from hw.local import run_local
from sim import catalogue, provenance
from sim.errors import UserError
from sim.profile import load_profile
from sim.scenario import load_scenario

from .conftest import SCENARIOS

PROFILES = SCENARIOS / "profiles"
LIBOQS = registry.default().provider("liboqs")


def test_catalogue_names_exactly_the_providers_that_implement_each_algorithm():
    openssl = registry.default().provider("openssl").algorithms()
    for name, providers in catalogue.TWIN_PROVIDERS.items():
        assert ("openssl" in providers) == (name in openssl), name
        if LIBOQS.available:
            assert ("liboqs" in providers) == (name in LIBOQS.algorithms()), name


def test_twin_provider_prefers_the_named_one_where_it_implements_the_algorithm():
    assert provenance.twin_provider("ML-KEM-768") == "openssl"  # auto: the registry's order
    assert provenance.twin_provider("ML-KEM-768", "liboqs") == "liboqs"
    assert provenance.twin_provider("ML-KEM-512") == "liboqs"  # pyca/cryptography has no ML-KEM-512
    assert provenance.twin_provider("AES-256-GCM", "liboqs") == "openssl"  # liboqs has no AEAD


@pytest.mark.skipif(not LIBOQS.available, reason="liboqs not installed here")
def test_registry_preference_changes_and_restores_the_provider():
    reg = registry.default()
    assert reg.find("ML-KEM-768", "kem").provider == "openssl"
    with reg.preferring("liboqs"):
        assert reg.find("ML-KEM-768", "kem").provider == "liboqs"
        assert reg.find("AES-256-GCM", "aead").provider == "openssl"  # the other where it lacks one
    assert reg.find("ML-KEM-768", "kem").provider == "openssl"
    with pytest.raises(ValueError, match="unknown provider 'bogus'"):
        reg.set_preference("bogus")


LIBOQS_PRICED = [f"deployment.hosts.{i}.profile=pi4-liboqs" for i in range(3)]


def test_shipped_scenarios_are_priced_by_the_library_their_twin_runs():
    for name in ("paper-3node.yaml", "ward-200.yaml", "localhost.yaml"):
        s = load_scenario(SCENARIOS / name)
        assert s.workload.crypto.provider == "auto" and provenance.mismatches(s) == [], name


def test_a_suite_priced_by_another_library_is_named_with_both_libraries():
    s = load_scenario(SCENARIOS / "paper-3node.yaml", LIBOQS_PRICED)
    (line,) = provenance.mismatches(s)
    assert "profile 'pi4-liboqs' (hosts pi-1, pi-2, pi-3) prices ML-KEM-768, ML-DSA-65 with liboqs" in line
    assert "the twin would run them with openssl" in line and "set workload.crypto.provider: liboqs" in line
    assert provenance.mismatches(load_scenario(SCENARIOS / "paper-3node.yaml",
                                               [*LIBOQS_PRICED, "workload.crypto.provider=liboqs"])) == []  # fmt: skip
    s = load_scenario(SCENARIOS / "paper-3node.yaml", ["workload.crypto.provider=liboqs"])
    assert "prices ML-KEM-768, ML-DSA-65 with openssl" in provenance.mismatches(s)[0]


def test_every_shipped_profile_states_its_libraries_and_each_crypto_op_its_provider():
    for path in sorted(PROFILES.glob("*.yaml")):
        p = load_profile(path)
        for name, op in p.ops.items():
            if name.rsplit(".", 1)[0] in catalogue.CATALOGUE:
                assert op.provider in p.platform.libraries, (path.name, name)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["ops"]["ML-KEM-768.encaps"].pop("provider"), "ops.ML-KEM-768.encaps: a crypto operation names"),
        (lambda d: d["ops"]["ML-KEM-768.encaps"].update(provider="wolfssl"), "provider 'wolfssl' is not in platform"),
        (lambda d: d["platform"].pop("libraries"), "platform.libraries"),
    ],
)
def test_a_profile_without_provenance_is_a_one_line_error(tmp_path, edit, expected):
    data = yaml.safe_load((PROFILES / "ci-x86.yaml").read_text())
    edit(data)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        load_profile(tmp_path / "p.yaml")
    assert len(info.value.lines) == 1 and expected in info.value.lines[0], info.value.lines


def test_sim_warns_once_before_running(pqtwin, tmp_path):
    sets = [x for item in LIBOQS_PRICED for x in ("--set", item)]
    res = pqtwin("sim", "scenarios/paper-3node.yaml", "--replications", "1", "--set", "workload.fl.rounds=1", *sets,
                 "--mode", "both", "--out", str(tmp_path / "run"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("prices ML-KEM-768, ML-DSA-65 with liboqs") == 1, res.stderr
    summary = json.loads((tmp_path / "run" / "concurrent" / "summary.json").read_text())
    assert any("prices ML-KEM-768, ML-DSA-65 with liboqs" in w for w in summary["warnings"])  # the app shows it


@pytest.mark.skipif(not LIBOQS.available, reason="liboqs not installed here")
def test_the_twin_runs_the_scenarios_provider(tmp_path):
    quick = ["workload.fl.model_parameters=20000", "workload.fl.samples_per_client=100",
             "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]  # fmt: skip
    for provider, expected in (("liboqs", "liboqs"), ("auto", "openssl")):
        s = load_scenario(SCENARIOS / "localhost.yaml", [*quick, f"workload.crypto.provider={provider}"], priced=False)
        out = tmp_path / provider
        summary = run_local(s, out, "sequential", rounds=1, seed=3)
        assert summary.state == "completed", summary.reason
        for node in (out / "nodes").glob("*.json"):
            used = json.loads(node.read_text())["providers"]
            assert used[s.workload.crypto.kem] == expected and used[s.workload.crypto.aead] == "openssl", node.name


def test_k8s_run_checks_calibrated_node_profiles_against_the_reference(pqtwin, tmp_path):
    """No cluster here: the check runs before anything touches one, so a dry run shows it."""
    for host in ("pi-1", "pi-2", "pi-3"):  # "calibrated" Pis that ran liboqs's ML-DSA: the reference prices OpenSSL
        (tmp_path / f"{host}.yaml").write_text((PROFILES / "pi4-liboqs.yaml").read_text())
    res = pqtwin(
        "hw", "run", "scenarios/paper-3node.yaml", "--backend", "k8s", "--dry-run", "--calibrated", str(tmp_path)
    )
    assert res.returncode == 0, res.stderr
    assert "kind: Pod" in res.stdout or "kind: Job" in res.stdout  # the manifests still go to stdout
    assert "ML-DSA-65.sign" in res.stderr and "×0.30" in res.stderr  # 1.609 ms / 5.286 ms
    assert "host pi-1: calibrated costs differ from profile 'pi4-openssl'" in res.stderr
    assert "priced by different providers (liboqs vs openssl)" in res.stderr
    (tmp_path / "pi-3.yaml").unlink()
    res = pqtwin(
        "hw", "run", "scenarios/paper-3node.yaml", "--backend", "k8s", "--dry-run", "--calibrated", str(tmp_path)
    )
    assert (
        res.returncode == 2 and "no profile for host pi-3 (pi-3.yaml)" in res.stderr and "Traceback" not in res.stderr
    )


def test_a_check_of_identical_profiles_has_ratio_one_and_no_warning(tmp_path):
    from hw import profilecheck

    s = load_scenario(SCENARIOS / "paper-3node.yaml")
    for host in ("pi-1", "pi-2", "pi-3"):
        (tmp_path / f"{host}.yaml").write_text((PROFILES / "pi4-openssl.yaml").read_text())
    checks = profilecheck.check_profiles(s, tmp_path)
    assert [c.host for c in checks] == ["pi-1", "pi-2", "pi-3"]
    assert {o.op for o in checks[0].ops} >= {"ML-KEM-768.encaps", "ML-DSA-65.sign", "fl.train", "AES-256-GCM.encrypt"}
    assert all(o.ratio == pytest.approx(1.0) for c in checks for o in c.ops) and profilecheck.warnings(checks) == []


def test_a_named_provider_that_is_not_available_is_refused_not_replaced(pqtwin, tmp_path):
    no_liboqs = {"OQS_INSTALL_PATH": "/nonexistent", "HOME": "/nonexistent"}
    res = pqtwin("hw", "run", "scenarios/localhost.yaml", "--set", "workload.crypto.provider=liboqs",
                 "--out", str(tmp_path / "r"), env=no_liboqs)  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "workload.crypto.provider: liboqs is not available here: liboqs shared library not found" in res.stderr
