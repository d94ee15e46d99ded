"""The device emulator: every device of the run as a thread that opens its own secure session to its pod
and sends AEAD frames at its rate, reconnecting with back-off. On Kubernetes one emulator runs per host
(``runner``) and shapes its devices' access links in-process (``link``), as the local backend's proxies do.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np

from hw.channel import Channel, ConnectionClosed, Identity, Peer, SecurityError
from hw.node.common import Node, RunFailed, connect, key_for, no_timer
from hw.node.metrics import heartbeat
from hw.proxy import LinkShape, open_path
from hw.runconfig import DeviceGroup
from hw.rundir import NodeResult
from hw.runtime import link_key, new_link_key


def run_devices(node: Node) -> NodeResult:
    """Every device of the scenario as a thread: handshake with its pod, then frames at its rate."""
    cfg = node.cfg
    groups = [d for d in cfg.devices if d.runner in (None, node.name)]
    idents = {name: node.identity(name) for g in groups for name in g.device_names()}
    node.keys.publish("devices", list(idents.values()))
    trust = node.trust(sorted({g.pod for g in groups}))
    stop = threading.Event()
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(4)[3])
    threads = []
    for g in groups:
        for i, name in enumerate(g.device_names()):
            offset = float(rng.uniform(0, g.period_s))
            path, key = _shaped(node, g, i)
            t = threading.Thread(target=_device, args=(node, idents[name], trust, path, key, offset, stop),
                                 daemon=True)  # fmt: skip
            t.start()
            threads.append(t)
    # The handler only flips a flag: Event.set takes the lock that the interrupted stop.wait may hold (deadlock).
    terminated: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: terminated.append(signum))
    while not terminated:
        time.sleep(0.2)
    stop.set()
    return NodeResult(state="completed", devices=len(threads))


def _shaped(node: Node, group: DeviceGroup, device: int) -> tuple[DeviceGroup, bytes]:
    """The group as one device dials it, and the key its connections open with. A group that carries its access
    path's ``link``: each device connects through a shaping proxy of its own in this process (every device has its
    own access link, as in the simulator), paired with the run's key (or one of this process's, where the run has
    none: a Kubernetes pod), which opens the connection onward with the run's key where the pod's address is one of
    its links."""
    onward = key_for(node.cfg, group.address)
    if group.link is None:
        return group, onward
    shape = LinkShape(**group.link.model_dump())
    base = node.cfg.seed if group.link_seed is None else group.link_seed
    key = link_key() or new_link_key()
    proxy = open_path(group.address[0], group.address[1], shape, base + device, key=key, present=onward)
    return group.model_copy(update={"address": ("127.0.0.1", proxy.port)}), key


def _device(node: Node, ident: Identity, trust: dict[str, Peer], group: DeviceGroup, key: bytes, offset_s: float,
            stop: threading.Event) -> None:  # fmt: skip
    """One device: (re)connect and handshake with its pod, then send a frame every period until stopped.
    A device whose pod is not listening yet, or whose session breaks, retries after a back-off."""
    backoff_s = 0.05
    if stop.wait(offset_s):
        return
    while not stop.is_set():
        try:
            ch = Channel(
                connect(group.address, key=key, congestion_control=node.cfg.congestion_control),
                ident,
                node.suite,
                trust,
                clock=node.now,
                counters=node.counters,
            )
            ch.initiate(group.pod, no_timer)
            frame = os.urandom(group.frame_bytes)
            next_at = time.monotonic()
            while not stop.is_set():
                ch.write_sealed(ch.seal(frame))
                heartbeat()  # frames flow: the emulator is live (it records no spans)
                next_at += group.period_s
                stop.wait(max(0.0, next_at - time.monotonic()))
        except (RunFailed, SecurityError, ConnectionClosed, OSError):
            stop.wait(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)
