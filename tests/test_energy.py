"""Energy (sim/energy.py): the arithmetic pinned on hand-made spans and counts, and the KPIs of real runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sim import energy
from sim.contract import DeviceEnergy, SpanRow
from sim.errors import UserError
from sim.presets import DEVICE_CLASSES, LINK_PRESETS, DevicePower, Radio
from sim.runner import simulate
from sim.scenario import DevicePopulation, load_scenario

from .conftest import SCENARIOS

PAPER = SCENARIOS / "paper-3node.yaml"
IDLE_W, CORE_W = 2.7, 0.925  # the Pi 4 profiles' power model


def spans(*rows: tuple) -> pd.DataFrame:
    """(replication, round, host, phase, op, start_s, end_s, queue_wait_s) rows as span rows."""
    full = [{"replication": r[0], "round": r[1], "pod": "p", "host": r[2], "phase": r[3], "op": r[4],
             "start_s": r[5], "end_s": r[6], "queue_wait_s": r[7], "bytes": 0} for r in rows]  # fmt: skip
    return pd.DataFrame(full, columns=list(SpanRow._fields))


@pytest.fixture(scope="module")
def paper():
    return load_scenario(PAPER)


def test_an_idle_host_uses_exactly_its_idle_power_for_the_run(paper):
    hosts = energy.host_energy(paper, spans(), [100.0, 100.0])
    assert set(hosts) == {"pi-1", "pi-2", "pi-3"}
    for h in hosts.values():
        assert h.total_j.mean == IDLE_W * 100.0 and h.busy_j == 0.0 and h.by_phase_j == {}


def test_known_spans_give_known_joules(paper):
    rows = spans((0, 1, "pi-1", "train", "fl.train", 0.0, 1.0, 0.0),
                 (0, 1, "pi-1", "verify", "ML-DSA-65.verify", 1.0, 1.5, 0.2),  # waited 0.2 s: 0.3 s of work
                 (0, 1, "pi-1", "upload", "transfer", 1.5, 3.0, 0.0),  # a message: no CPU work
                 (0, 1, "pi-2", "round", "round", 0.0, 3.0, 0.0))  # a marker: no CPU work  # fmt: skip
    h = energy.host_energy(paper, rows, [10.0])["pi-1"]
    assert h.total_j.mean == pytest.approx(IDLE_W * 10 + CORE_W * 1.3, rel=1e-12)
    assert h.by_phase_j == pytest.approx({"train": CORE_W * 1.0, "verify": CORE_W * 0.3})
    assert energy.host_energy(paper, rows, [10.0])["pi-2"].busy_j == 0.0


def test_a_hosts_work_is_capped_at_its_cores_for_the_run(paper):
    rows = spans(*[(0, 1, "pi-1", "train", "fl.train", 0.0, 2.0, 0.0) for _ in range(6)])  # 12 s on 4 cores
    h = energy.host_energy(paper, rows, [2.0])["pi-1"]
    assert h.busy_j == pytest.approx(CORE_W * 4 * 2.0) and sum(h.by_phase_j.values()) == pytest.approx(h.busy_j)


def test_energy_per_round_is_idle_for_its_length_plus_its_work(paper):
    rows = spans(
        (0, 1, "pi-1", "round", "round", 0.0, 2.0, 0.0),
        (0, 2, "pi-1", "round", "round", 2.0, 3.0, 0.0),
        (0, 1, "pi-2", "train", "fl.train", 0.0, 1.0, 0.0),
        (0, 0, "pi-2", "handshake", "x", 0.0, 9.0, 0.0),
    )
    stats = energy.round_energy(paper, rows)  # round 0 (sessions) is not an FL round
    assert stats.replication_means == [pytest.approx(((3 * IDLE_W * 2 + CORE_W) + 3 * IDLE_W * 1) / 2)]


def test_battery_life_is_capacity_over_average_power(paper):
    pop = paper.workload.devices[0]
    power = DEVICE_CLASSES[pop.device_class].power
    asleep = energy.device_energy(paper, pop, frames=0, sessions=0, run_s=3600.0)
    # nothing to send: asleep but for its connection events, one per wake interval
    radio, events = energy.device_radio(pop), 3600.0 / pop.wake_interval_s()
    idle = radio.idle_event()
    awake_s = events * (idle.tx_s + idle.rx_s + idle.switch_s)
    watts = (events * radio.joules(idle) + (3600.0 - awake_s) * power.sleep_w) / 3600.0
    assert asleep.average_power_w == pytest.approx(watts)
    assert asleep.battery_life_days == pytest.approx(power.battery_j / watts / 86_400)
    busy = energy.device_energy(paper, pop, frames=3600, sessions=1, run_s=3600.0)
    assert busy.battery_life_days == pytest.approx(power.battery_j / (busy.per_device_j / 3600) / 86_400)
    assert busy.per_device_j == pytest.approx(math.fsum(busy.by_part_j.values()))
    assert busy.per_device_j == pytest.approx(math.fsum(busy.by_activity_j.values()))  # sessions, frames, ..., sleep
    assert busy.by_activity_j["sessions"] > 0 and asleep.by_activity_j["frames"] == 0
    assert busy.by_part_j["radio_tx"] > 0 and not busy.compute_modelled  # paper's patches name no profile


def test_battery_life_is_that_of_the_steady_duty_cycle_whatever_the_runs_length(paper):
    """A run shorter than one rekey interval counts its session at one per interval: the same device duty cycle
    gives the same battery life in a 5 s run (a scenario that stops with its last FL round) as in an hour."""
    pop = paper.workload.devices[0]
    assert paper.workload.crypto.rekey.device_interval_s == 3600.0
    hour = energy.device_energy(paper, pop, frames=3600, sessions=1, run_s=3600.0)
    short = energy.device_energy(paper, pop, frames=5, sessions=1, run_s=5.0)
    assert short.battery_life_days == pytest.approx(hour.battery_life_days, rel=1e-3)
    assert short.per_device_j > 5 / 3600 * hour.per_device_j  # the run's own energy still holds its whole session
    never = load_scenario(PAPER, ["workload.crypto.rekey.device_interval_s=null"])
    once = energy.device_energy(never, pop, frames=3600, sessions=1, run_s=3600.0)
    no_session = energy.device_energy(never, pop, frames=3600, sessions=0, run_s=3600.0)
    assert once.battery_life_days == pytest.approx(no_session.battery_life_days)  # a first handshake is once a life
    few = energy.device_energy(never, pop, frames=0, sessions=1, run_s=0.5)  # seconds in: no frame sent yet
    assert few.battery_life_days == pytest.approx(once.battery_life_days, rel=1e-3)


def test_a_faster_fl_round_does_not_change_a_sensors_battery_life():
    """The hosts' AEAD changes the FL rounds' length, not what a patch does (its MCU crypto is not modelled here)."""
    base = ["workload.fl.rounds=3"]
    aes = simulate(load_scenario(PAPER, base), "sequential", 1, 2).summary.energy
    chacha = simulate(load_scenario(PAPER, [*base, "workload.crypto.aead=ChaCha20-Poly1305"]), "sequential", 1, 2)
    a, b = aes.devices["ecg-a"], chacha.summary.energy.devices["ecg-a"]
    assert b.battery_life_days == pytest.approx(a.battery_life_days, rel=0.01)


def test_radio_air_time_counts_every_packets_overhead():
    ble = LINK_PRESETS["ble"].radio
    assert isinstance(ble, Radio)
    one = ble.air_time_s(ble.max_payload_bytes)
    assert ble.air_time_s(ble.max_payload_bytes + 1) == pytest.approx(one + (1 + ble.overhead_bytes) * 8 / ble.phy_bps)
    with pytest.raises(ValueError, match="radio"):
        Radio(tx_w=-1, rx_w=0, phy_bps=1e6, max_payload_bytes=10, overhead_bytes=1, source="x")
    with pytest.raises(ValueError, match="battery_j > 0"):
        DevicePower(active_w=0.01, sleep_w=1e-6, battery_j=0, battery="none", source="x")


def test_every_packet_is_acknowledged_after_an_inter_frame_space():
    """BLE link layer: a data packet the sensor sends is answered by the central's empty packet after T_IFS, one it
    receives by its own; the radio switches in each T_IFS between packets and once before the first."""
    ble = LINK_PRESETS["ble"].radio
    assert ble.ifs_s == 150e-6 and ble.empty_s == pytest.approx(80e-6)  # 10 bytes at 1 Mbit/s
    two = ble.max_payload_bytes + 1  # two packets
    sent, received = ble.send(two), ble.receive(two)
    assert sent.tx_s == pytest.approx(ble.air_time_s(two)) and sent.rx_s == pytest.approx(2 * ble.empty_s)
    assert received.rx_s == pytest.approx(ble.air_time_s(two)) and received.tx_s == pytest.approx(2 * ble.empty_s)
    assert sent.switch_s == received.switch_s == pytest.approx(4 * ble.ifs_s)  # 4 packets: 3 T_IFS + a ramp-up
    idle = ble.idle_event()  # the central's empty packet and the sensor's: 1 T_IFS + a ramp-up
    assert idle.switch_s == pytest.approx(2 * ble.ifs_s) and idle.tx_s == idle.rx_s == pytest.approx(ble.empty_s)
    assert ble.joules(sent) == pytest.approx(sent.tx_s * ble.tx_w + sent.rx_s * ble.rx_w + sent.switch_s * ble.switch_w)


def test_connection_events_cost_a_sensor_that_never_sleeps_through_them():
    """With a peripheral latency of 0 the patch wakes every 7.5 ms connection interval: its battery lasts weeks,
    not most of a year; ``auto`` wakes it about once per frame."""

    def patch(*sets: str) -> tuple[DevicePopulation, DeviceEnergy]:
        s = load_scenario(PAPER, [f"workload.devices.ecg-a.{k}" for k in sets])
        pop = s.workload.devices[0]
        return pop, energy.device_energy(s, pop, frames=3600, sessions=1, run_s=3600.0)

    auto_pop, auto = patch()
    zero_pop, zero = patch("peripheral_latency=0")
    _, slow = patch("peripheral_latency=0", "connection_interval_s=0.075")
    assert auto_pop.wake_interval_s() == pytest.approx(0.9975) and zero_pop.wake_interval_s() == 0.0075
    idle = energy.device_radio(zero_pop).idle_event()
    events = 3600 / 0.0075 - 3600  # every interval, less the ones that carry a frame
    assert zero.by_activity_j["connection"] == pytest.approx(events * energy.device_radio(zero_pop).joules(idle))
    assert zero.battery_life_days < slow.battery_life_days < auto.battery_life_days
    assert zero.battery_life_days < auto.battery_life_days / 5
    assert auto.by_activity_j["frames"] == zero.by_activity_j["frames"]  # the same frames either way
    # the longest latency BLE allows still wakes a sensor with a 5-minute period every 500 intervals
    s = load_scenario(PAPER, ["workload.devices.ecg-a.frame_period_s=300"])
    assert s.workload.devices[0].wake_interval_s() == pytest.approx(500 * 0.0075)
    # frames every 5 ms share the 7.5 ms interval's events: none is left idle
    fast = load_scenario(PAPER, ["workload.devices.ecg-a.frame_period_s=0.005"]).workload.devices[0]
    assert energy.idle_events(fast, frames=200.0, run_s=1.0) == 0.0
    assert energy.idle_events(fast, frames=0.0, run_s=1.0) == pytest.approx(1 / 0.0075)


def test_link_layer_settings_are_checked_against_the_spec():
    with pytest.raises(UserError, match="peripheral_latency"):
        load_scenario(PAPER, ["workload.devices.ecg-a.peripheral_latency=499",
                              "workload.devices.ecg-a.connection_interval_s=0.5"])  # fmt: skip
    for bad in ("connection_interval_s=0.001", "peripheral_latency=500", "battery_usable=0", "battery_usable=1.5"):
        with pytest.raises(UserError, match=bad.split("=")[0]):
            load_scenario(PAPER, [f"workload.devices.ecg-a.{bad}"])


def test_a_coin_cell_that_gives_part_of_its_rating_lasts_that_much_less(paper):
    pop = paper.workload.devices[0]
    full = energy.device_energy(paper, pop, frames=3600, sessions=1, run_s=3600.0)
    half_s = load_scenario(PAPER, ["workload.devices.ecg-a.battery_usable=0.5"])
    half = energy.device_energy(half_s, half_s.workload.devices[0], frames=3600, sessions=1, run_s=3600.0)
    assert half.battery_life_days == pytest.approx(full.battery_life_days / 2)
    assert "50% of it usable" in half.battery


def test_classical_sessions_cost_a_sensor_less_than_post_quantum_ones():
    rows = {}
    for kem, sig in (("X25519", "Ed25519"), ("ML-KEM-768", "ML-DSA-65")):
        s = load_scenario(PAPER, [f"workload.crypto.kem={kem}", f"workload.crypto.signature={sig}",
                                  "workload.devices.ecg-a.profile=cortex-m4"])  # fmt: skip
        pop = s.workload.devices[0]
        rows[kem] = energy.device_energy(s, pop, frames=0, sessions=1, run_s=1.0)
    classical, pq = rows["X25519"], rows["ML-KEM-768"]
    radio = {k: v.by_part_j["radio_tx"] + v.by_part_j["radio_rx"] for k, v in rows.items()}
    assert radio["X25519"] < radio["ML-KEM-768"]
    assert classical.per_device_j < pq.per_device_j and pq.compute_modelled


def test_a_run_reports_energy_and_concurrency_saves_energy_per_round(paper):
    seq, conc = (simulate(paper, m, replications=3).summary for m in ("sequential", "concurrent"))
    assert set(seq.energy.hosts) == {"pi-1", "pi-2", "pi-3"} and set(seq.energy.devices) == {"ecg-a", "ecg-b"}
    assert conc.energy.per_round_j.mean < seq.energy.per_round_j.mean  # shorter rounds: less idle power
    lo, hi = seq.energy.per_round_j.ci95
    assert lo <= seq.energy.per_round_j.mean <= hi
    dev = seq.energy.devices["ecg-a"]
    assert dev.sessions == pytest.approx(1.0) and dev.frames > 0 and dev.battery_life_days > 0
    stats = dev.per_device_j_stats  # over the 3 replications
    assert stats.n == 3 and stats.ci95[0] <= dev.per_device_j <= stats.ci95[1] and stats.mean == dev.per_device_j


def test_a_host_without_a_power_model_reports_no_energy():
    s = load_scenario(SCENARIOS / "localhost.yaml")  # ci-x86: a VM, no power model
    assert simulate(s, "sequential", replications=2).summary.energy.hosts == {}


GATEWAY = [f"workload.devices.{p}.key_establishment=gateway" for p in ("ecg-a", "ecg-b")]
M4 = [f"workload.devices.{p}.profile=cortex-m4" for p in ("ecg-a", "ecg-b")]


def test_gateway_side_key_establishment_moves_the_sessions_off_the_sensor():
    runs = {}
    for name, sets in (("device", M4), ("gateway", [*M4, *GATEWAY])):
        runs[name] = simulate(load_scenario(PAPER, [*sets, "run.replications=2"]), "concurrent")
    dev, gw = (runs[k].summary.energy.devices["ecg-a"] for k in ("device", "gateway"))
    assert gw.sessions == 0 and gw.by_activity_j["sessions"] == 0 and gw.per_device_j < dev.per_device_j / 3
    assert gw.by_part_j["radio_rx"] < dev.by_part_j["radio_rx"] / 10  # only the central's acknowledgements
    spans = runs["gateway"].spans
    # the gateway host (pi-2 for ecg-a) runs the device's side of the handshake and re-encrypts every frame
    mine = spans[(spans.pod == "pi-2") & (spans.phase == "telemetry")]
    assert {"ML-KEM-768.encaps", "ML-DSA-65.sign", "AES-256-GCM.decrypt", "AES-256-GCM.encrypt"} <= set(mine.op)
    sensor = spans[spans.host.str.startswith("ecg-a#") & (spans.op != "frame")]
    assert set(sensor.op) == {"AES-256-GCM.encrypt"}  # the sensor only seals its frames
    assert runs["gateway"].summary.telemetry.frames > 0


def test_gateway_side_needs_a_host_and_for_the_kernels_processor_sharing():
    """The vectorized engine prices a gateway's two jobs per frame as one: exact under processor sharing only."""
    with pytest.raises(UserError, match=r"key_establishment: the gateway 'gw-1' must be a host"):
        load_scenario(SCENARIOS / "ward-200.yaml", ["workload.devices.0.key_establishment=gateway"])
    run = ["run.engine=vectorized", "run.stop_at=horizon", "run.horizon_s=5"]
    assert simulate(load_scenario(PAPER, [*GATEWAY, *run]), "sequential", replications=1).summary.engine.exact
    fifo = [f"deployment.hosts.{i}.cpu_sharing=fifo" for i in range(3)]
    s = load_scenario(PAPER, [*GATEWAY, *run, *fifo])
    with pytest.raises(UserError, match="key_establishment: gateway on a host with cpu_sharing: fifo is computed by"):
        simulate(s, "sequential", replications=1)


def rapl_tree(root, packages: dict[str, tuple[int, int]]):
    """A /sys/class/powercap tree as Linux lays it out: intel-rapl:N (package) with a core sub-domain."""
    for name, (energy_uj, span) in packages.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(f"package-{name[-1]}\n")
        (d / "energy_uj").write_text(f"{energy_uj}\n")
        (d / "max_energy_range_uj").write_text(f"{span}\n")
        sub = root / f"{name}:0"  # core sub-domain: counted inside its package
        sub.mkdir(exist_ok=True)
        (sub / "energy_uj").write_text("999999999\n")
        (sub / "max_energy_range_uj").write_text(f"{span}\n")


def test_rapl_package_energy_with_a_counter_that_wraps(tmp_path):
    from hw.machine import rapl_energy_j, rapl_packages

    span = 262_143_328_850
    rapl_tree(tmp_path, {"intel-rapl:0": (1_000_000, span), "intel-rapl:1": (262_143_000_000, span)})
    before = rapl_packages(tmp_path)
    assert set(before) == {"intel-rapl:0", "intel-rapl:1"}  # the packages, not their sub-domains
    rapl_tree(tmp_path, {"intel-rapl:0": (6_000_000, span), "intel-rapl:1": (671_150, span)})
    assert rapl_energy_j(before, rapl_packages(tmp_path)) == pytest.approx(5.0 + 1.0)  # 5 J + 1 J across the wrap
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("")  # unreadable as a number: left out, not an error
    assert set(rapl_packages(tmp_path)) == {"intel-rapl:0"}
    assert rapl_energy_j({}, {}) is None and rapl_packages(tmp_path / "absent") == {}
