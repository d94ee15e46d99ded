"""Energy what-ifs (issue 13's goal), from simulator runs: battery life of an ECG patch on BLE per suite and rekey
interval, and the Pi 4 cluster's joules per FL round, sequential vs concurrent.

Battery: one ecg-patch (nRF52840: scenarios/profiles/cortex-m4.yaml prices its crypto; sim/presets.py its radio,
MCU, sleep power and CR2032) streaming to paper-3node's client-1 over BLE for a day, per suite x rekey interval:
"per frame" = a session every frame period (1 s), hourly, daily; and with the gateway (pi-2) running the sessions
for it (key_establishment: gateway). Pi: paper-3node as shipped (pi4-openssl).
Run: python bench/energy_table.py [--out docs/energy.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sim.loading import out_json
from sim.runner import simulate
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "scenarios" / "paper-3node.yaml"
SUITES = {  # KEM: (KEM, signature), each KEM with the signature of its security level
    "X25519 + Ed25519 (classical)": ("X25519", "Ed25519"),
    "ML-KEM-512 + ML-DSA-44": ("ML-KEM-512", "ML-DSA-44"),
    "ML-KEM-768 + ML-DSA-65": ("ML-KEM-768", "ML-DSA-65"),
}
REKEY_S = {"per frame": 1.0, "hourly": 3600.0, "daily": 86_400.0}
DAY_S = 86_400.0


def patch(kem: str, sig: str, interval_s: float, where: str = "device") -> dict:
    sets = [f"workload.crypto.kem={kem}", f"workload.crypto.signature={sig}",
            f"workload.devices.ecg-a.key_establishment={where}",
            f"workload.crypto.rekey.device_interval_s={interval_s}", "workload.devices.ecg-a.count=1",
            "workload.devices.ecg-b.count=0", "workload.devices.ecg-a.profile=cortex-m4",
            f"run.horizon_s={DAY_S}", "run.stop_at=horizon", "run.replications=1", "workload.fl.rounds=1"]  # fmt: skip
    s = load_scenario(PAPER, sets)
    t0 = time.perf_counter()
    summary = simulate(s, "sequential").summary
    d = summary.energy.devices["ecg-a"]
    return {"battery_life_days": d.battery_life_days, "average_power_w": d.average_power_w,
            "by_part_j": d.by_part_j, "sessions": d.sessions, "frames": d.frames, "battery": d.battery,
            "wall_s": time.perf_counter() - t0, "engine": summary.engine.name if summary.engine else None}  # fmt: skip


def rounds() -> dict:
    s = load_scenario(PAPER)
    out = {}
    for mode in ("sequential", "concurrent"):
        e = simulate(s, mode).summary.energy
        out[mode] = {"mean_j": e.per_round_j.mean, "ci95_j": list(e.per_round_j.ci95),
                     "hosts_total_j": {h: v.total_j.mean for h, v in e.hosts.items()}}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=out_json, default=None, help="write the results as JSON")
    args = ap.parse_args()
    battery = {suite: {rk: patch(kem, sig, s) for rk, s in REKEY_S.items()} for suite, (kem, sig) in SUITES.items()}
    battery["ML-KEM-768 + ML-DSA-65 at the gateway"] = {rk: patch("ML-KEM-768", "ML-DSA-65", s, "gateway")
                                                        for rk, s in REKEY_S.items()}  # fmt: skip
    print("ecg-patch on BLE, battery life (CR2032), one day simulated per cell:")
    print(f"| suite | {' | '.join(REKEY_S)} |")
    print("|---|" + "---|" * len(REKEY_S))
    for suite, row in battery.items():
        cells = [f"{r['battery_life_days']:.1f} days ({r['average_power_w'] * 1e6:.1f} µW)" for r in row.values()]
        print(f"| {suite} | {' | '.join(cells)} |")
    fl = rounds()
    for mode, r in fl.items():
        lo, hi = r["ci95_j"]
        print(f"paper-3node {mode}: {r['mean_j']:.3f} J per FL round [{lo:.3f}, {hi:.3f}] (three Pi 4, pi4-openssl)")
    if args.out:
        args.out.write_text(json.dumps({"battery": battery, "fl_round": fl}, indent=1))


if __name__ == "__main__":
    main()
