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


@dataclass(frozen=True)
class DeviceClass:
    sample_rate_hz: float
    bits_per_sample: int
    frame_period_s: float
    source: str


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
