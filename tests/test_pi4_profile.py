"""The shipped Raspberry Pi 4 reference profiles (liboqs NEON and OpenSSL 3.6 PQC): complete, well fitted, and
faithful to the reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.catalogue import CATALOGUE, OPS
from sim.profile import LinearOp, PerCallOp, Profile, load_profile

PROFILES = Path(__file__).resolve().parents[1] / "scenarios" / "profiles"
NAMES = ("pi4-liboqs", "pi4-openssl")
NON_CRYPTO = {"serialize": "byte", "deserialize": "byte", "fl.train": "sample_param", "fl.fedavg": "param"}


@pytest.fixture(scope="module", params=NAMES)
def profile(request: pytest.FixtureRequest) -> Profile:
    return load_profile(PROFILES / f"{request.param}.yaml")


@pytest.fixture(scope="module")
def liboqs() -> Profile:
    return load_profile(PROFILES / "pi4-liboqs.yaml")


@pytest.fixture(scope="module")
def openssl() -> Profile:
    return load_profile(PROFILES / "pi4-openssl.yaml")


def expected_ops() -> set[str]:
    crypto = {f"{alg.name}.{op}" for alg in CATALOGUE.values() for op in OPS[alg.kind]}
    return crypto | set(NON_CRYPTO)


def test_loads_and_names_the_platform(profile: Profile) -> None:
    assert profile.profile in NAMES
    assert profile.platform.cores == 4
    assert profile.platform.clock_hz == pytest.approx(1.8e9)
    assert "1.2" in profile.platform.how_measured and "pi4-crypto-costs.md" in profile.platform.how_measured
    assert {"openssl", "liboqs", "numpy"} <= set(profile.platform.libraries)


def test_prices_every_operation_of_every_catalogue_algorithm(profile: Profile) -> None:
    expected = expected_ops()
    assert not expected - set(profile.ops), f"missing: {sorted(expected - set(profile.ops))}"
    assert not set(profile.ops) - expected, f"unknown operations: {sorted(set(profile.ops) - expected)}"
    assert len(profile.ops) == 65
    for alg in CATALOGUE.values():
        if alg.kind == "signature":
            assert f"{alg.message_hash}.hash" in profile.ops, alg.name


def test_cost_model_kind_matches_the_operation(profile: Profile) -> None:
    for alg in CATALOGUE.values():
        for op in OPS[alg.kind]:
            cost = profile.op(f"{alg.name}.{op}")
            if alg.kind in ("kem", "signature"):
                assert isinstance(cost, PerCallOp), f"{alg.name}.{op}"
            else:
                assert isinstance(cost, LinearOp) and cost.unit == "byte", f"{alg.name}.{op}"
    for name, unit in NON_CRYPTO.items():
        cost = profile.op(name)
        assert isinstance(cost, LinearOp) and cost.unit == unit, name


def test_fitted_distributions_match_the_stated_means(profile: Profile) -> None:
    for name, cost in profile.ops.items():
        if isinstance(cost, PerCallOp):
            assert cost.distribution.mean_s == pytest.approx(cost.mean_s, rel=0.01), name


def test_every_value_has_a_source_and_a_tag(profile: Profile) -> None:
    for name, cost in profile.ops.items():
        assert cost.source.strip(), name
        assert cost.tag in ("M", "D", "E"), name
        if cost.tag == "E":
            assert "estimate" in cost.source or "[E]" in cost.source or "assumed" in cost.source, name


@pytest.mark.parametrize("name", NAMES)
def test_file_is_ascii_and_numbers_are_yaml_floats(name: str) -> None:
    # ASCII: read_text() decodes with the locale's encoding. Floats: PyYAML reads "1e-9" (no dot) as a string.
    text = (PROFILES / f"{name}.yaml").read_bytes().decode("ascii")
    raw = yaml.safe_load(text)
    for name, op in raw["ops"].items():
        fields = {**op, **(op.get("distribution") or {})}
        for key in ("mean_s", "stdev_s", "per_call_s", "per_unit_s", "cv", "mu", "sigma"):
            if key in fields:
                assert isinstance(fields[key], float), f"{name}.{key} = {fields[key]!r}"


def test_spot_values_against_the_reference(liboqs: Profile) -> None:
    profile, us, ms = liboqs, 1e-6, 1e-3
    assert profile.op("ML-KEM-768.encaps").provider == "liboqs"
    assert profile.op("ML-KEM-768.encaps").mean_s == pytest.approx(67 * us, abs=1 * us)
    assert profile.op("ML-KEM-768.encaps").tag == "M"
    assert profile.op("ML-KEM-1024.decaps").mean_s == pytest.approx(203_909 / 1.8e9, rel=1e-3)
    assert profile.op("ML-KEM-1024.decaps").tag == "D"
    sign = profile.op("ML-DSA-65.sign")
    assert sign.mean_s == pytest.approx(1.609 * ms, rel=1e-6)
    assert sign.stdev_s == pytest.approx(1.097 * ms, rel=1e-6)
    assert profile.op("ML-DSA-44.sign").stdev_s == pytest.approx(612 * us, rel=1e-6)
    assert profile.op("ML-DSA-87.sign").tag == "E"
    assert profile.op("Falcon-512.verify").mean_s == pytest.approx(93.4 * us, rel=1e-3)
    assert profile.op("SLH-DSA-SHA2-128s.sign").mean_s == pytest.approx(1.468, rel=1e-3)
    assert profile.op("ECDSA-P256.verify").mean_s == pytest.approx(292.3 * us, rel=1e-3)
    assert profile.op("RSA-2048.keygen").mean_s == pytest.approx(2.29, rel=1e-6)
    # RSA sign/verify from one source (rsabench): RSA-3072 / RSA-2048 sign as that source measured it, 2.35x
    assert profile.op("RSA-2048.sign").mean_s == pytest.approx(9108.87 * us, rel=1e-5)
    assert profile.op("RSA-3072.sign").mean_s / profile.op("RSA-2048.sign").mean_s == pytest.approx(2.349, rel=1e-3)
    assert profile.op("RSA-2048.keygen").tag == "M"
    assert profile.op("RSA-3072.keygen").tag == "E"
    assert profile.op("AES-256-GCM.encrypt").per_unit_s == pytest.approx(1 / 28.9e6, rel=2e-3)
    assert profile.op("AES-128-GCM.encrypt").per_unit_s == pytest.approx(1 / 37.3e6, rel=2e-3)
    assert profile.op("SHA-256.hash").per_unit_s == pytest.approx(1 / 100.5e6, rel=1e-3)
    assert profile.op("SHAKE-256.hash").per_unit_s == profile.op("SHA3-256.hash").per_unit_s
    assert profile.op("SHAKE-256.hash").tag == "E"
    for op in ("keygen", "encaps", "decaps"):
        parts = profile.op(f"X25519.{op}").mean_s + profile.op(f"ML-KEM-768.{op}").mean_s + 2 * us
        hybrid = profile.op(f"X25519+ML-KEM-768.{op}")
        assert hybrid.mean_s == pytest.approx(parts, rel=1e-6) and hybrid.tag == "E"


def test_ml_dsa_sign_is_sampled_heavy_tailed(profile: Profile) -> None:
    sign = profile.op("ML-DSA-65.sign")
    rng = np.random.default_rng(1)
    samples = np.array([sign.cost_s(rng) for _ in range(20_000)])
    assert samples.mean() == pytest.approx(sign.mean_s, rel=0.03)
    assert np.percentile(samples, 99) > 2 * np.median(samples)


def test_openssl_profile_prices_pqc_with_openssl_3_6(openssl: Profile, liboqs: Profile) -> None:
    us, ms = 1e-6, 1e-3
    # the anchor figures (lelegard/pqcbench, OpenSSL 3.6.0 on a Pi 4)
    assert openssl.op("ML-KEM-768.encaps").mean_s == pytest.approx(133.91 * us, rel=1e-4)
    assert openssl.op("ML-KEM-768.decaps").mean_s == pytest.approx(160.25 * us, rel=1e-4)
    assert openssl.op("ML-DSA-65.sign").mean_s == pytest.approx(5.2863 * ms, rel=1e-4)
    assert openssl.op("ML-DSA-65.verify").mean_s == pytest.approx(1.0312 * ms, rel=1e-4)
    assert openssl.op("SLH-DSA-SHA2-128f.sign").mean_s == pytest.approx(168.67 * ms, rel=1e-4)
    for op in ("ML-KEM-768.encaps", "ML-DSA-65.sign", "SLH-DSA-SHA2-128f.sign", "X25519+ML-KEM-768.decaps"):
        assert openssl.op(op).provider == "openssl" and liboqs.op(op).provider == "liboqs", op
        assert openssl.op(op).mean_s > liboqs.op(op).mean_s, op  # NEON liboqs is faster on the A72
    assert openssl.op("ML-DSA-65.keygen").tag == "E"  # pqcbench never times keygen
    # ML-DSA sign keeps its rejection-sampling spread (cv of the liboqs measurement)
    cv = liboqs.op("ML-DSA-65.sign").stdev_s / liboqs.op("ML-DSA-65.sign").mean_s
    assert openssl.op("ML-DSA-65.sign").stdev_s / openssl.op("ML-DSA-65.sign").mean_s == pytest.approx(cv, rel=1e-3)
    # what OpenSSL does not implement, and classical/symmetric rows, are the liboqs profile's
    assert openssl.op("Falcon-512.sign") == liboqs.op("Falcon-512.sign")
    assert openssl.op("AES-256-GCM.encrypt") == liboqs.op("AES-256-GCM.encrypt")
    assert openssl.op("RSA-2048.sign") == liboqs.op("RSA-2048.sign")
