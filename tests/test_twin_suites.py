"""Every suite the providers implement runs in the twin: real 2-round runs, one per KEM (with ML-DSA-65), one
per signature (with ML-KEM-768), each rekey mode the twin implements. The full KEM × signature × rekey
product runs under the ``slow`` and ``suites`` markers (``make test-suites``). A suite that crashes shows up
here as a failed run with its reason.
"""

from __future__ import annotations

import itertools

import pytest

from hw import data, fl
from hw.crypto import registry
from hw.local import run_local
from sim import catalogue, contract
from sim.runner import simulate
from sim.scenario import load_scenario

from .conftest import SCENARIOS

# small and quick: no devices (their sessions are covered by test_twin), a 20 k-parameter model
QUICK = ["workload.fl.model_parameters=20000", "workload.fl.samples_per_client=100",
         "workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]  # fmt: skip
REKEY = ("per_message", "per_session", "per_round")


SLOW_SIGNERS = ("SLH-DSA-SHA2-128s",)  # ~0.5 s a signature: only in the full product


def _available(kind: str, slow: bool = False) -> list[str]:
    """Every catalogued algorithm of ``kind`` an available provider implements (liboqs's too, where present)."""
    names: set[str] = set()
    for p in registry.default().providers():
        if p.available:
            names |= p.algorithms(kind)
    return sorted(n for n in names if n in catalogue.CATALOGUE and (slow or n not in SLOW_SIGNERS))


def _run(tmp_path, kem: str, signature: str, rekey: str, mode: str = "sequential") -> None:
    suite = [
        f"workload.crypto.kem={kem}",
        f"workload.crypto.signature={signature}",
        f"workload.crypto.rekey.fl={rekey}",
    ]
    s = load_scenario(SCENARIOS / "localhost.yaml", [*QUICK, *suite])
    summary = run_local(s, tmp_path, mode, rounds=2, seed=7)
    assert summary.state == "completed", f"{kem} + {signature} ({rekey}): {summary.reason}"
    assert summary.rounds_completed == 2 and not summary.dropouts and not summary.security
    spans = contract.read_spans(tmp_path / "spans.parquet")
    ops = set(spans.op)
    assert f"{signature}.sign" in ops and f"{signature}.verify" in ops
    assert (f"{kem}.encaps" in ops) and (f"{kem}.decaps" in ops)
    handshakes = spans[spans.phase == "handshake"]
    # sessions before the first round; per-round rekeying: a fresh one in every round too
    assert set(handshakes["round"]) == ({0, 1, 2} if rekey == "per_round" else {0})
    if rekey == "per_message":  # every model and update carries its own encapsulation
        assert len(spans[(spans["round"] > 0) & (spans.op == f"{kem}.encaps")]) == 2 * 2 * 2
    # the simulator prices exactly the bytes the twin sends (record header, message header, signature, tag, KEM)
    params = fl.Shape.for_parameters(20000, data.FEATURES).parameters  # the twin's model, to the parameter
    same = load_scenario(SCENARIOS / "localhost.yaml", [*QUICK, *suite, f"workload.fl.model_parameters={params}"])
    sim = simulate(same, mode, seed=7, replications=1).spans
    alg = catalogue.get(signature)
    if alg.signature_bytes == alg.signature_max_bytes:
        assert _message_bytes(spans) == _message_bytes(sim)
    else:  # Falcon: each signature its own length; the simulator prices the typical one (plus its 2-byte length)
        (typical,) = _message_bytes(sim, uploads_only=True)  # (no hops to worker processes among them)
        assert all(-alg.signature_bytes < b - typical <= alg.signature_max_bytes - alg.signature_bytes
                   for b in _message_bytes(spans, uploads_only=True))  # fmt: skip


def _message_bytes(spans, uploads_only: bool = False) -> set[int]:
    phases = ["upload"] if uploads_only else ["distribute", "upload"]
    fl_msgs = spans[(spans["round"] > 0) & (spans.op == "transfer") & spans.phase.isin(phases)]
    return set(fl_msgs["bytes"])


@pytest.mark.parametrize("kem", _available("kem"))
def test_every_kem_in_the_twin(tmp_path, kem):
    _run(tmp_path, kem, "ML-DSA-65", "per_message")


@pytest.mark.parametrize("signature", _available("signature"))
def test_every_signature_in_the_twin(tmp_path, signature):
    _run(tmp_path, "ML-KEM-768", signature, "per_session", mode="concurrent")


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_per_round_rekeying_in_the_twin(tmp_path, mode):
    _run(tmp_path, "ML-KEM-768", "ML-DSA-65", "per_round", mode=mode)


PRODUCT = list(itertools.product(_available("kem"), _available("signature", slow=True), REKEY))


@pytest.mark.slow
@pytest.mark.suites  # ~120 twin runs with liboqs, ~7 minutes on 2 cores: `make test-suites`, not in `make test`
@pytest.mark.parametrize(("kem", "signature", "rekey"), PRODUCT)
def test_every_suite_in_the_twin(tmp_path, kem, signature, rekey):
    _run(tmp_path, kem, signature, rekey)
