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
    what each packet adds on air; air time = (payload + packets x overhead) x 8 / phy_bps.

    The link layer (BLE): packets alternate, each after the inter-frame space ``ifs_s`` (T_IFS) -- a data
    packet the sensor sends is acknowledged by the central's next packet (an empty one of
    ``empty_packet_bytes`` when the central has nothing to say), one it receives by the sensor's; and every
    connection event begins with the central's packet, so a sensor with nothing to send still receives one and
    answers it with an empty one. A message of n packets is 2n packets on air, 2n - 1 T_IFS between them and a
    ramp-up before the first: the radio switches 2n times, ``switch_w`` while it does (a T_IFS each).
    ``Exchange`` holds the seconds in each state.
    """

    tx_w: float
    rx_w: float
    phy_bps: float
    max_payload_bytes: int  # per packet
    overhead_bytes: int  # per packet on air (preamble, address, header, MIC, CRC)
    source: str
    empty_packet_bytes: int = 0  # an empty link-layer packet on air (preamble, address, header, CRC)
    ifs_s: float = 0.0  # between two packets of a connection event
    switch_w: float = 0.0  # while the radio ramps up between packets

    def __post_init__(self) -> None:
        if (min(self.tx_w, self.rx_w, self.switch_w, self.ifs_s) < 0 or self.phy_bps <= 0
                or self.max_payload_bytes < 1 or min(self.overhead_bytes, self.empty_packet_bytes) < 0):  # fmt: skip
            raise ValueError(f"radio: powers and times must be >= 0, phy_bps and max_payload_bytes > 0 (got {self})")

    def packets(self, nbytes: int) -> int:
        return max(1, -(-nbytes // self.max_payload_bytes))

    def air_time_s(self, nbytes: int) -> float:
        return (nbytes + self.packets(nbytes) * self.overhead_bytes) * 8 / self.phy_bps

    @property
    def empty_s(self) -> float:
        return self.empty_packet_bytes * 8 / self.phy_bps

    def send(self, nbytes: int) -> Exchange:
        """The sensor sends a message in one connection event: its packets, each acknowledged by the central."""
        n = self.packets(nbytes)
        return Exchange(self.air_time_s(nbytes), n * self.empty_s, 2 * n * self.ifs_s)

    def receive(self, nbytes: int) -> Exchange:
        """The sensor receives a message in one connection event, acknowledging each packet."""
        n = self.packets(nbytes)
        return Exchange(n * self.empty_s, self.air_time_s(nbytes), 2 * n * self.ifs_s)

    def idle_event(self) -> Exchange:
        """A connection event with nothing to send either way: the central's empty packet, the sensor's."""
        return Exchange(self.empty_s, self.empty_s, 2 * self.ifs_s)

    def joules(self, x: Exchange) -> float:
        return x.tx_s * self.tx_w + x.rx_s * self.rx_w + x.switch_s * self.switch_w


@dataclass(frozen=True)
class Exchange:
    """Seconds a sensor's radio spends sending, receiving and switching between packets."""

    tx_s: float
    rx_s: float
    switch_s: float

    def __add__(self, other: Exchange) -> Exchange:
        return Exchange(self.tx_s + other.tx_s, self.rx_s + other.rx_s, self.switch_s + other.switch_s)

    def __mul__(self, k: float) -> Exchange:
        return Exchange(self.tx_s * k, self.rx_s * k, self.switch_s * k)


NO_EXCHANGE = Exchange(0.0, 0.0, 0.0)


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
# preamble, access address, header, L2CAP+ATT headers, MIC and CRC per packet; an empty packet is preamble, access
# address, header and CRC: 10 bytes (1M) / 11 (2M, a 2-byte preamble); T_IFS 150 us (Bluetooth Core Specification,
# Vol 6 Part B 4.1.1). While it switches, the radio is taken to draw the mean of its TX and RX power [E] (no
# sourced ramp-up current). Figures and sources: README "Energy".
NRF52840_SRC = (
    "nRF52840 Product Specification, radio current table: TX 0 dBm 1 Mbps DC/DC 6.40 mA, RX 1 Mbps 6.26 mA [M], "
    "x 3.0 V [D]; BLE packet layout (nigh.github.io bluetooth-le-packet; novelbits 'Bluetooth 5 speed') [M]; "
    "T_IFS 150 us (Bluetooth Core Specification Vol 6 Part B 4.1.1) [M]; power while switching [E]"
)
T_IFS_S = 150e-6
BLE_1M = Radio(0.0192, 0.0188, 1e6, 244, 21, NRF52840_SRC, 10, T_IFS_S, (0.0192 + 0.0188) / 2)
RX_2M = "; RX on the 2M PHY 6.9 mA [E]: 1M x the 2M/1M ratio of nRF5340/nRF54L15 (1.06-1.15)"
BLE_2M = Radio(0.0192, 0.0207, 2e6, 244, 22, NRF52840_SRC + RX_2M, 11, T_IFS_S, (0.0192 + 0.0207) / 2)
# BLE connection parameters (Bluetooth Core Specification Vol 6 Part B 4.5.1-4.5.2): a connection interval of
# 7.5 ms to 4 s; a peripheral latency (events the sensor may skip with nothing to send) of at most 499, with
# (1 + latency) x interval under half the supervision timeout, itself at most 32 s.
MIN_CONNECTION_INTERVAL_S, MAX_CONNECTION_INTERVAL_S = 7.5e-3, 4.0
MAX_PERIPHERAL_LATENCY = 499
MAX_SUPERVISION_TIMEOUT_S = 32.0
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
