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


# A patch's radio: Nordic nRF52840 at 0 dBm with its DC/DC converter, at 3.0 V (Nordic's characterisation voltage);
# air time counts application bytes: 244 per packet with LE Data Length Extension, 21 (1M) / 22 (2M) bytes of
# preamble, access address, header, L2CAP+ATT headers, MIC and CRC per packet. Not counted (no sourced figure):
# ramp-up and the 150 us inter-frame spaces. Figures and sources: README "Energy".
NRF52840_SRC = (
    "nRF52840 Product Specification, radio current table: TX 0 dBm 1 Mbps DC/DC 6.40 mA, RX 1 Mbps 6.26 mA [M], "
    "x 3.0 V [D]; BLE packet layout (nigh.github.io bluetooth-le-packet; novelbits 'Bluetooth 5 speed') [M]"
)
BLE_1M = Radio(0.0192, 0.0188, 1e6, 244, 21, NRF52840_SRC)
RX_2M = "; RX on the 2M PHY 6.9 mA [E]: 1M x the 2M/1M ratio of nRF5340/nRF54L15 (1.06-1.15)"
BLE_2M = Radio(0.0192, 0.0207, 2e6, 244, 22, NRF52840_SRC + RX_2M)
# The patch's MCU (nRF52840's Cortex-M4F at 64 MHz) and batteries (README "Energy").
NRF52840_POWER = ("nRF52840 PS: CPU running CoreMark from flash at 64 MHz, DC/DC 3.3 mA [M]; System ON, full RAM, "
                  "wake on RTC 3.16 uA [M] (quoted in jnsbyr/nrf52-ble-test fa5a1fa0); x 3.0 V [D]; crypto assumed to "
                  "draw CoreMark-like current [E]")  # fmt: skip
CR2032 = ("CR2032, 225 mAh at 3.0 V", 225e-3 * 3600 * 3.0)  # IEC typical (Wikipedia table) [M] -> 2,430 J [D]
LIPO_200 = ("Li-Po 200 mAh at 3.7 V", 0.2 * 3600 * 3.7)  # capacity assumed [E], 3.7 V nominal [M] -> 2,664 J [D]
PATCH = DevicePower(0.0099, 9.5e-6, CR2032[1], CR2032[0], NRF52840_POWER)
WEARABLE = DevicePower(0.0099, 9.5e-6, LIPO_200[1], LIPO_200[0],
                       NRF52840_POWER + "; the same SoC assumed for this class [E]")  # fmt: skip

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
        "BLE 1M PHY, Nordic example, 262 kbit/s at 7.5 ms connection interval [M] (§5); loss [E]", BLE_1M,
    ),
    "ble-2m": LinkPreset(
        1.376e6, 0.0075, 0.002, 0.001,
        "BLE 2M PHY + DLE, 172 KB/s nRF52840 pair [M] (§5); latency = connection interval [E]", BLE_2M,
    ),
}  # fmt: skip

DEVICE_CLASSES: dict[str, DeviceClass] = {
    "ecg-patch": DeviceClass(250, 12, 1.0, "1-lead ECG patch, 250 Hz, 12 bit (iomt-devices.md)", PATCH),
    "ecg-3lead": DeviceClass(1500, 12, 1.0, "3-lead ECG, 500 samples/s/lead, 12 bit (iomt-devices.md)", WEARABLE),
    "spo2": DeviceClass(3, 10, 1.0, "SpO2, 3 samples/s, 10 bit (iomt-devices.md)", PATCH),
    "blood-pressure": DeviceClass(
        1 / 300, 32, 300.0, "one 32-bit reading per period (iomt-devices.md); every 5 min [E]"
    ),
    "infusion-pump": DeviceClass(1, 256, 1.0, "[E] 32-byte status record per second; no published figure"),
    "wearable-vitals": DeviceClass(
        1, 160, 1.0, "vitals {HR, SpO2, BP, glucose, temp} as 5 × 32 bit every 1 s (iomt-devices.md)", WEARABLE
    ),
}
