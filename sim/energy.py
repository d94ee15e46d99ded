"""Energy of a run, priced from its spans and counts with power models that carry their units and sources.

Hosts (LEAF's linear model, ``Profile.power``): ``idle_w`` for the whole run, plus ``busy_core_w`` for each
core-second of work. A span's work is its service time, ``end_s - start_s - queue_wait_s`` (one operation runs on
one core); a host's work in a replication is capped at its cores x the run's length, since processor sharing
stretches the service of operations that share a core. Energy per FL round: each round's span on the clock times
every priced host's idle power, plus the work of that round's spans. With the vectorized engine the frames'
decryptions are not span rows: each population's frames are priced at the receiving profile's mean cost.

Devices (``DeviceClass.power`` and the access link's ``Radio``, sim/presets.py): per device and replication,
the run's frames and sessions, each priced at its mean cost -- MCU time of the device profile's operations x
``active_w`` (0 when the population has no ``profile``: device compute not modelled), radio air time of what it
sends x ``tx_w`` and of what it receives x ``rx_w`` -- and ``sleep_w`` for the rest of the run. Average power is
that of the device's steady duty cycle: the run's energy over its length, except that a run shorter than one rekey
interval (``rekey.device_interval_s``; a scenario that stops with its last FL round lasts seconds) counts a frame
per period and a session per interval rather than what it saw -- otherwise a faster FL round would shorten a
sensor's battery life (``steady_counts``). Battery life = the battery's energy / average power.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sim import catalogue
from sim.contract import MARKERS, RECORD_HEADER_BYTES, WIRE_OPS, DeviceEnergy, Energy, HostEnergy, Stats
from sim.cost import mean_cost_s
from sim.model import HELLO_BYTES
from sim.presets import DEVICE_CLASSES, LINK_PRESETS, NO_EXCHANGE, DevicePower, Radio
from sim.scenario import DevicePopulation, Scenario
from sim.summary import describe

if TYPE_CHECKING:
    import pandas as pd

SECONDS_PER_DAY = 86_400.0


def work_spans(spans: pd.DataFrame) -> pd.DataFrame:
    """Rows that are CPU work (not messages, frames or round markers), with their service time ``work_s``."""
    rows = spans[~spans.op.isin(WIRE_OPS) & ~spans.phase.isin(MARKERS)]
    return rows.assign(work_s=(rows.end_s - rows.start_s - rows.queue_wait_s).clip(lower=0.0))


def host_energy(s: Scenario, spans: pd.DataFrame, sim_times_s: Sequence[float],
                frame_work_s: dict[str, float] | None = None) -> dict[str, HostEnergy]:  # fmt: skip
    """Each priced host's energy per replication (``frame_work_s``: extra telemetry work per replication)."""
    work = work_spans(spans)
    reps = len(sim_times_s)
    out = {}
    for h in s.deployment.hosts:
        power = s.host_profile(h.name).power
        if power is None:
            continue
        mine = work[work.host == h.name]
        by_rep = mine.groupby("replication").work_s.sum().reindex(range(reps), fill_value=0.0).to_numpy()
        by_rep = by_rep + (frame_work_s or {}).get(h.name, 0.0)
        busy = np.minimum(by_rep, h.cores * np.asarray(sim_times_s))
        total = power.idle_w * np.asarray(sim_times_s) + power.busy_core_w * busy
        scale = busy.sum() / by_rep.sum() if by_rep.sum() > 0 else 0.0  # the cap, spread over phases
        phases = mine.groupby("phase").work_s.sum() / reps * scale * power.busy_core_w
        extra = (frame_work_s or {}).get(h.name, 0.0) * scale * power.busy_core_w
        by_phase = {str(k): float(v) for k, v in phases.items()}
        if extra:
            by_phase["telemetry"] = by_phase.get("telemetry", 0.0) + extra
        out[h.name] = HostEnergy(
            total_j=_stats(total), idle_j=float(power.idle_w * np.mean(sim_times_s)),
            busy_j=float(power.busy_core_w * busy.mean()), by_phase_j=by_phase,
        )  # fmt: skip
    return out


def round_energy(s: Scenario, spans: pd.DataFrame) -> Stats | None:
    """Joules per FL round over every priced host: idle power for the round's length, plus its spans' work."""
    import pandas as pd

    powers = {h.name: s.host_profile(h.name).power for h in s.deployment.hosts}
    priced = {h: p for h, p in powers.items() if p is not None}
    rounds = spans[(spans.phase == "round") & (spans.op == "round")]
    if not priced or rounds.empty:
        return None
    work = work_spans(spans[(spans["round"] > 0) & spans.host.isin(priced)])
    busy_w = work.host.map({h: p.busy_core_w for h, p in priced.items()})
    dynamic = (work.work_s * busy_w).groupby([work.replication, work["round"]]).sum()
    idle_w = sum(p.idle_w for p in priced.values())
    per_round = (rounds.end_s - rounds.start_s) * idle_w
    keys = pd.MultiIndex.from_arrays([rounds.replication, rounds["round"]])
    values = per_round.to_numpy() + dynamic.reindex(keys, fill_value=0.0).to_numpy()
    return describe(pd.Series(values), rounds.replication.reset_index(drop=True))


def device_power(pop: DevicePopulation) -> DevicePower | None:
    """The device class's power model, with the scenario's battery and the part of it that is usable."""
    dc = DEVICE_CLASSES[pop.device_class].power
    if dc is None:
        return None
    battery_j, battery = dc.battery_j, dc.battery
    if pop.battery_j is not None:
        battery_j, battery = pop.battery_j, "the scenario's battery_j"
    if pop.battery_usable < 1:
        battery = f"{battery}, {pop.battery_usable:.0%} of it usable"
    return DevicePower(dc.active_w, dc.sleep_w, battery_j * pop.battery_usable, battery, dc.source)


def device_radio(pop: DevicePopulation) -> Radio | None:
    preset = LINK_PRESETS.get(pop.access_link.preset or "")
    return preset.radio if preset is not None else None


def session_costs(s: Scenario, pop: DevicePopulation) -> tuple[float, list[int], list[int]]:
    """A device's side of one session: (MCU seconds, messages sent, messages received, in bytes) -- sim/model.py
    handshake: it sends the hello, receives the pod's signed ephemeral key, sends its encapsulation + signature."""
    kem, sig = catalogue.get(s.workload.crypto.kem), catalogue.get(s.workload.crypto.signature)
    sent = [HELLO_BYTES, kem.ciphertext_bytes + sig.signature_bytes + sig.public_key_bytes]
    received = [kem.public_key_bytes + sig.signature_bytes + sig.public_key_bytes]
    profile = s.device_profile(pop)
    mcu = (
        0.0
        if profile is None
        else sum(mean_cost_s(profile, op) for op in (f"{sig.name}.verify", f"{kem.name}.encaps", f"{sig.name}.sign"))
    )
    return mcu, sent, received


def frame_costs(s: Scenario, pop: DevicePopulation) -> tuple[float, int]:
    """One frame: (MCU seconds to encrypt it, bytes sent)."""
    aead = catalogue.get(s.workload.crypto.aead)
    profile = s.device_profile(pop)
    payload = pop.frame_bytes()
    mcu = 0.0 if profile is None else mean_cost_s(profile, f"{aead.name}.encrypt", payload)
    return mcu, RECORD_HEADER_BYTES + payload + aead.aead_overhead_bytes


def idle_events(pop: DevicePopulation, frames: float, run_s: float) -> float:
    """Connection events in ``run_s`` in which the sensor has nothing to send: it wakes every
    ``wake_interval_s`` (its peripheral latency lets it skip the others), and sends each frame in one -- at most
    one event per connection interval carries frames (a period shorter than the interval: frames share them)."""
    with_frames = min(frames, run_s / pop.connection_interval())
    return max(0.0, run_s / pop.wake_interval_s() - with_frames)


def device_joules(s: Scenario, pop: DevicePopulation, frames: float, sessions: float, run_s: float
                  ) -> dict[str, float] | None:  # fmt: skip
    """One device's joules over ``run_s`` with ``frames`` frames and ``sessions`` handshakes, by part (mcu,
    radio_tx, radio_rx, radio_switch, sleep) and by activity (sessions, frames, connection: the events with
    nothing to send, sleep); None without power or radio models."""
    power, radio = device_power(pop), device_radio(pop)
    if power is None or radio is None or run_s <= 0:
        return None
    if pop.key_establishment == "gateway":  # its gateway runs the sessions; the sensor only encrypts frames
        sessions = 0.0
    s_mcu, s_sent, s_received = session_costs(s, pop)
    f_mcu, f_tx = frame_costs(s, pop)
    session = sum([*map(radio.send, s_sent), *map(radio.receive, s_received)], NO_EXCHANGE)
    frame, idle = radio.send(f_tx), radio.idle_event()
    events = idle_events(pop, frames, run_s)
    air = session * sessions + frame * frames + idle * events
    mcu_s = sessions * s_mcu + frames * f_mcu
    sleep_s = max(0.0, run_s - mcu_s - air.tx_s - air.rx_s - air.switch_s)
    return {
        "mcu": mcu_s * power.active_w, "radio_tx": air.tx_s * radio.tx_w, "radio_rx": air.rx_s * radio.rx_w,
        "radio_switch": air.switch_s * radio.switch_w, "sleep": sleep_s * power.sleep_w,
        "sessions": sessions * (s_mcu * power.active_w + radio.joules(session)),
        "frames": frames * (f_mcu * power.active_w + radio.joules(frame)),
        "connection": events * radio.joules(idle),
    }  # fmt: skip


PARTS = ("mcu", "radio_tx", "radio_rx", "radio_switch", "sleep")
ACTIVITIES = ("sessions", "frames", "connection", "sleep")


def device_energy(s: Scenario, pop: DevicePopulation, frames: float, sessions: float, run_s: float
                  ) -> DeviceEnergy | None:  # fmt: skip
    """One device's energy over a run of ``run_s`` with ``frames`` frames and ``sessions`` handshakes."""
    return device_energy_over(s, pop, [(frames, sessions, run_s)])


def steady_counts(s: Scenario, pop: DevicePopulation, frames: float, sessions: float, run_s: float
                  ) -> tuple[float, float]:  # fmt: skip
    """(frames, sessions) of a device's steady duty cycle in ``run_s``: as counted, unless the run is shorter than
    one rekey interval -- then a frame per period and a session per interval, since a run of seconds holds a
    session start and a frame or two, not their rates. Devices that never rekey pay their first handshake once
    in a battery's life: only the sessions after it (reconnections) recur."""
    interval = s.workload.crypto.rekey.device_interval_s
    if interval is None:  # no session pauses its frames after the first: a frame every period
        return run_s / pop.period_s(), max(0.0, sessions - 1.0)
    if run_s >= interval:
        return frames, sessions
    return run_s / pop.period_s(), run_s / interval


def device_energy_over(s: Scenario, pop: DevicePopulation, reps: Sequence[tuple[float, float, float]]
                       ) -> DeviceEnergy | None:  # fmt: skip
    """A population's device energy from each replication's (frames, sessions, run_s) per device: means, and
    the 95 % CI of the energy over replications."""
    per = [device_joules(s, pop, f, n, t) for f, n, t in reps]
    if not per or any(p is None for p in per):
        return None
    rows = [p for p in per if p is not None]
    power = device_power(pop)
    assert power is not None
    total = np.array([math.fsum(r[k] for k in PARTS) for r in rows])
    run_s = float(np.mean([t for _, _, t in reps]))
    steady = [device_joules(s, pop, *steady_counts(s, pop, f, n, t), t) for f, n, t in reps]
    watts = float(np.mean([math.fsum(r[k] for k in PARTS) for r in steady if r is not None])) / run_s
    mean = {k: float(np.mean([r[k] for r in rows])) for k in (*PARTS, *ACTIVITIES)}
    return DeviceEnergy(
        per_device_j=float(total.mean()), per_device_j_stats=_stats(total),
        by_part_j={k: mean[k] for k in PARTS},
        by_activity_j={k: mean[k] for k in ACTIVITIES},
        average_power_w=watts, frames=float(np.mean([f for f, _, _ in reps])),
        sessions=0.0 if pop.key_establishment == "gateway" else float(np.mean([n for _, n, _ in reps])),
        battery=power.battery, battery_life_days=power.battery_j / watts / SECONDS_PER_DAY if watts > 0 else None,
        compute_modelled=s.device_profile(pop) is not None,
    )  # fmt: skip


def summarise_energy(s: Scenario, spans: pd.DataFrame, sim_times_s: Sequence[float],
                     frames: Sequence[dict[str, float]], sessions: Sequence[dict[str, float]],
                     vectorized: bool = False) -> Energy:  # fmt: skip
    """The run's ``Energy``: hosts, J per FL round, and per device population (``frames`` and ``sessions``:
    each replication's counts per population)."""
    reps = len(sim_times_s)
    frame_work: dict[str, float] = {}
    if vectorized:  # the frames' decryptions are not span rows: price them at the mean cost
        aead = catalogue.get(s.workload.crypto.aead).name
        for pop in s.workload.devices:
            host = next(p.host for p in s.deployment.pods if p.name == pop.report_to)
            cost = mean_cost_s(s.host_profile(host), f"{aead}.decrypt", pop.frame_bytes())
            count = sum(f.get(pop.name, 0.0) for f in frames) / max(1, reps)
            frame_work[host] = frame_work.get(host, 0.0) + count * cost
    devices = {}
    for pop in s.workload.devices:
        if pop.count:
            per_rep = [(frames[i].get(pop.name, 0.0) / pop.count, sessions[i].get(pop.name, 0.0) / pop.count,
                        sim_times_s[i]) for i in range(reps)]  # fmt: skip
            if (d := device_energy_over(s, pop, per_rep)) is not None:
                devices[pop.name] = d
    return Energy(hosts=host_energy(s, spans, sim_times_s, frame_work), per_round_j=round_energy(s, spans),
                  devices=devices)  # fmt: skip


def _stats(per_replication: np.ndarray) -> Stats:
    import pandas as pd

    values = pd.Series(per_replication, dtype=float)
    return describe(values, pd.Series(range(len(values))))
