"""Link presets and IoMT device classes, from ../shared/reference (tags: M measured, D derived, E estimate).

A scenario names a preset and may override any of its fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkPreset:
    bandwidth_bps: float
    latency_s: float  # one way
    jitter_s: float  # mean of the extra exponential delay per packet
    loss: float
    source: str
    radio: Radio | None = None  # a device's radio on this link, where energy is modelled


@dataclass(frozen=True)
class Radio:
    """A device's radio on a link (sim/energy.py): power while sending and receiving, the PHY's bit rate, and
    what each packet adds on air; air time = (payload + packets x overhead) x 8 / phy_bps."""

    tx_w: float
    rx_w: float
    phy_bps: float
    max_payload_bytes: int  # per packet
    overhead_bytes: int  # per packet on air (preamble, address, header, MIC, CRC)
    source: str

    def __post_init__(self) -> None:
        if min(self.tx_w, self.rx_w) < 0 or self.phy_bps <= 0 or self.max_payload_bytes < 1 or self.overhead_bytes < 0:
            raise ValueError(f"radio: powers must be >= 0 W, phy_bps and max_payload_bytes > 0 (got {self})")

    def air_time_s(self, nbytes: int) -> float:
        packets = max(1, -(-nbytes // self.max_payload_bytes))
        return (nbytes + packets * self.overhead_bytes) * 8 / self.phy_bps


@dataclass(frozen=True)
class DevicePower:
    """A sensor's power: its MCU running (crypto), everything asleep between frames, and its battery."""

    active_w: float
    sleep_w: float
    battery_j: float
    battery: str  # which battery, e.g. "CR2032, 225 mAh at 3.0 V"
    source: str

    def __post_init__(self) -> None:
        if self.active_w < 0 or self.sleep_w < 0 or self.battery_j <= 0:
            raise ValueError(f"device power: watts must be >= 0 and battery_j > 0 (got {self})")


@dataclass(frozen=True)
class DeviceClass:
    sample_rate_hz: float
    bits_per_sample: int
    frame_period_s: float
    source: str
    power: DevicePower | None = None


LINK_PRESETS: dict[str, LinkPreset] = {
    "gigabit-ethernet": LinkPreset(
        940e6, 0.0001, 0.00002, 0.0,
        "Pi 4 iperf3 940 Mbit/s [M] (pi4-crypto-costs.md §5); RTT 0.2 ms [E]; jitter, loss [E]",
    ),
    "wifi-5ghz": LinkPreset(
        77e6, 0.003, 0.001, 0.001,
        "Pi 4 802.11ac 77 Mbit/s [M], RTT ≈ 6 ms with power save off [M] (§5); jitter, loss [E]",
    ),
    "ble": LinkPreset(
        262e3, 0.0075, 0.002, 0.001,
        "BLE 1M PHY, Nordic example, 262 kbit/s at 7.5 ms connection interval [M] (§5); loss [E]",
    ),
    "ble-2m": LinkPreset(
        1.376e6, 0.0075, 0.002, 0.001,
        "BLE 2M PHY + DLE, 172 KB/s nRF52840 pair [M] (§5); latency = connection interval [E]",
    ),
}  # fmt: skip

DEVICE_CLASSES: dict[str, DeviceClass] = {
    "ecg-patch": DeviceClass(250, 12, 1.0, "1-lead ECG patch, 250 Hz, 12 bit (iomt-devices.md)"),
    "ecg-3lead": DeviceClass(1500, 12, 1.0, "3-lead ECG, 500 samples/s/lead, 12 bit (iomt-devices.md)"),
    "spo2": DeviceClass(3, 10, 1.0, "SpO2, 3 samples/s, 10 bit (iomt-devices.md)"),
    "blood-pressure": DeviceClass(
        1 / 300, 32, 300.0, "one 32-bit reading per period (iomt-devices.md); every 5 min [E]"
    ),
    "infusion-pump": DeviceClass(1, 256, 1.0, "[E] 32-byte status record per second; no published figure"),
    "wearable-vitals": DeviceClass(
        1, 160, 1.0, "vitals {HR, SpO2, BP, glucose, temp} as 5 × 32 bit every 1 s (iomt-devices.md)"
    ),
}
