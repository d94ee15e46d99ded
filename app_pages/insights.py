"""One-sentence explanations of what the model finds, shown next to the numbers they explain.

Each sentence is computed from the run's spans and summary (and the pinned baseline's), never written for a
particular scenario: it appears only when its condition holds in the numbers on the page.
"""

from __future__ import annotations

import pandas as pd

from sim import catalogue
from sim.deltas import Delta, deltas
from sim.runner import RunResult
from sim.scenario import Scenario
from sim.summary import fl_cpu_work, is_crypto
from sim.units import fmt_bytes, fmt_delta

AEAD_DOMINATES = 0.5  # share of the crypto time above which bulk encryption is "what decides"


def crypto_time_by_kind(spans: pd.DataFrame) -> dict[str, float]:
    """Service seconds of the FL rounds' crypto work by algorithm kind (kem, signature, aead, hash)."""
    cpu = fl_cpu_work(spans)
    cpu = cpu[cpu.op.map(is_crypto)]
    kind = cpu.op.str.split(".", n=1).str[0].map(lambda a: catalogue.get(a).kind)
    return {str(k): float(v) for k, v in cpu.work_s.groupby(kind).sum().items()}


def _share_sentence(result: RunResult) -> str | None:
    t = crypto_time_by_kind(result.spans)
    total = sum(t.values())
    if total <= 0:
        return None
    aead, public = t.get("aead", 0.0) / total, (t.get("kem", 0.0) + t.get("signature", 0.0)) / total
    if aead < AEAD_DOMINATES:
        return None
    return (f"Bulk encryption ({result.summary.suite['aead']}) is {aead:.0%} of the crypto time and the KEM and "
            f"signatures only {public:.0%}: the AEAD over the model decides the crypto cost, so the crypto share "
            "hardly moves between classical and post-quantum suites.")  # fmt: skip


def _links_sentence(result: RunResult, scenario: Scenario, mode: str) -> str | None:
    links, app = result.summary.link_bytes, result.summary.application_bytes.total
    if links is None or app <= 0 or links.total < 1.5 * app:
        return None
    agg = {p.host for p in scenario.pods("aggregator")}
    remote_workers = mode == "concurrent" and any(w.host not in agg for w in scenario.pods("worker"))
    why = "each message is counted on every link it crosses (host → switch → host is two)"
    if remote_workers:
        why += ", and in concurrent mode the crypto jobs of each message also travel to worker pods on other hosts"
    ratio = links.total / app
    return f"Links carry {fmt_bytes(links.total)}, {ratio:.1f}× the {fmt_bytes(app)} the application sent: {why}."


def _against_baseline(result: RunResult, base: RunResult, found: dict[str, Delta] | None) -> list[str]:
    if found is None:
        found = {d.key: d for d in deltas((base.summary, base.spans), (result.summary, result.spans))}
    r = found.get("round_latency_s")
    if r is None or r.relative is None:
        return []
    change = f"round latency {fmt_delta(r.delta, 's')} ({r.relative:+.0%}{'' if r.significant else ', within noise'})"
    a, b = base.summary.suite, result.summary.suite
    out: list[str] = []
    if base.summary.mode != result.summary.mode:
        out.append(f"{result.summary.mode.capitalize() if result.summary.mode else 'This mode'} vs "
                   f"{base.summary.mode}: {change}. Concurrent mode hands each message's crypto to worker pods, so "
                   "verification and decryption overlap instead of queueing on the aggregator.")  # fmt: skip
    chacha_faster = r.significant and (b["aead"] == "ChaCha20-Poly1305") == ((r.delta or 0.0) < 0)
    if a["aead"] != b["aead"] and {a["aead"], b["aead"]} & {"ChaCha20-Poly1305"} and chacha_faster:
        out.append(f"{b['aead']} instead of {a['aead']}: {change}. AES-GCM is slow in software on CPUs without AES "
                   "instructions (the Raspberry Pi 4's Cortex-A72 has none); ChaCha20 needs none.")  # fmt: skip
    if (a["kem"], a["signature"]) != (b["kem"], b["signature"]) and abs(r.relative) < 0.1:
        out.append(f"{b['kem']} + {b['signature']} instead of {a['kem']} + {a['signature']}: {change} only: key "
                   "establishment and signatures are a small part of a round next to training and bulk "
                   "encryption.")  # fmt: skip
    return out


def explain(result: RunResult, scenario: Scenario, baseline: RunResult | None = None,
            found: dict[str, Delta] | None = None) -> list[str]:  # fmt: skip
    """The sentences that hold for this run (and its baseline, whose deltas ``found`` the page may have already),
    most specific first."""
    mode = result.summary.mode or scenario.workload.processing.mode
    out = _against_baseline(result, baseline, found) if baseline is not None else []
    out += [s for s in (_share_sentence(result), _links_sentence(result, scenario, mode)) if s]
    return out[:3]
