"""The local backend of the hardware twin: every pod of a scenario as a process on this machine.

``run_local`` writes ``run.json`` (ports, routes, suite, seed, the run's clock epoch), starts shaping
proxies for traffic that crosses a link between different scenario hosts, starts one ``hw.node``
process per aggregator/client pod plus one for the devices, follows the aggregator's progress, and stops
every child on exit, on Ctrl-C and on failure. It then merges the nodes' spans into ``spans.parquet``,
writes ``summary.json`` with the simulator's keys (``sim.summary.summarise``) and ``status.json``
saying how the run ended.

What differs from the simulator's world, by construction: all pods share this machine's cores (the
scenario's hosts are not separate machines here); device emulation runs on this machine too. A concurrent
run's crypto workers are processes of their own (one per worker thread of the scenario's worker pods,
``RunConfig.worker_processes``), pinned to their pod's host's CPUs and fed over secure channels.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from hw import rundir, tcp
from hw.attack import INSIDERS, AttackRelay
from hw.journal import journal_result, recover_journals
from hw.lifecycle import (
    PARENT_ENV,
    Stopped,
    alive,
    held_stops,
    node_alive,
    node_pids,
    process_start,
    raise_held,
    stop_signals,
    stopped,
)
from hw.machine import LoadMonitor
from hw.netns import Fabric, delays, probe_clean
from hw.provision import provision
from hw.proxy import LinkShape, ShapingProxy, open_path
from hw.runconfig import (
    DEVICE_EMULATOR,
    Address,
    RunConfig,
    Service,
    access_link,
    build,
    check_supported,
    name_problems,
    runner_host,
)
from hw.rundir import RunOutcome, RunStatus
from hw.runtime import LINK_KEY_ENV, LISTEN_FDS_ENV, NODE_ENV, new_link_key
from hw.sendcpu import kernel_rate_clean
from hw.speed import KEPT_FILE as SPEED_SAMPLES
from hw.trainprobe import training_probe
from sim.contract import MAX_RUN_JSON_BYTES, FabricProbe, LinkDelay, RunLayout, Summary, write_json
from sim.errors import UserError, shorten
from sim.loading import exists, read_bytes
from sim.scenario import DevicePopulation, Scenario, load_scenario, write_scenario

log = logging.getLogger(__name__)


def check_runnable(s: Scenario, backend: str = "local") -> None:
    """What the local and netns backends refuse (one line each), checked before anything is claimed or started:
    ``pqtwin hw run`` calls it before it claims --out, as --force removed the earlier run there first (a scenario
    the twin cannot run cost the user that run). On netns, a pod named as one of its device emulators
    (``devices-<host>``) too, which ``build`` found only once the run had started."""
    check_supported(s)
    problems = name_problems(s, netns_runners(s)) if backend == "netns" else []
    if (why := tcp.problem(s.deployment.network.transport.congestion_control)) is not None:  # this machine's kernel
        problems.append(f"{s.path}: deployment.network.transport.congestion_control: {why}")
    if problems:
        raise UserError(problems)


def netns_runners(s: Scenario) -> set[str]:
    """The device emulator processes of a netns run (``NetnsAddressing.devices``): one per runner host."""
    hosts = {p.name: p.host for p in s.deployment.pods}
    return {f"devices-{runner_host(s, pop, hosts[pop.report_to])}" for pop in s.workload.devices
            if pop.count and pop.report_to in hosts}  # fmt: skip


def pin_cpus(s: Scenario) -> dict[str, list[int]]:
    """This machine's CPUs for each scenario host, in scenario order, as many as the host has cores (wrapping
    around when the scenario has more cores than the machine), so every run places its pods alike."""
    try:
        machine = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux: no pinning
        return {}
    out, at = {}, 0
    for h in s.deployment.hosts:
        n = min(h.cores, len(machine))
        out[h.name] = sorted({machine[(at + i) % len(machine)] for i in range(n)})
        at += n
    return out


SCHED_TRACE = RunLayout.SCHED_TRACE  # the run's scheduler events, kept for a later analysis (hw/schedtrace.py)
LISTEN_PORT_MIN = 20000
PORT_DRAWS = 1000
LISTEN_BACKLOG = 256  # as a node's own listener (hw/node/common.py ``listen``)


def free_port(taken: set[int] | None = None) -> int:
    """A loopback port free now, and not one already handed out in this run (``taken``, which it joins)."""
    with listening_socket(taken) as s:
        return int(s.getsockname()[1])


def listening_socket(taken: set[int] | None = None) -> socket.socket:
    """A loopback socket listening on a port drawn as below, held: the orchestrator binds a node's port and hands
    the node the socket itself (``Children.start``), so no other process can take the port between the draw and
    the node's start (a stranger reading run.json bound all three of a run's ports before its nodes did, and the
    run failed with "Address already in use", 2026-12-05). The port is not one already handed out in this run
    (``taken``, which it joins). Ports were ``bind(0)`` picks, released at once: the kernel draws those at random
    from its ephemeral range with no memory of what it gave out, so two picks of one run can coincide -- in a fidelity
    matrix of ~50 runs the aggregator and a client's telemetry listener were once given one port, and the
    second node to start failed with "Address already in use" (2026-11-29). Drawn below that range where there
    is room, a port is also out of reach of what the kernel gives a shaping proxy's ``bind(0)`` or an outgoing
    connection between the draw and the node's own bind."""
    taken = set() if taken is None else taken
    low, _ = _ephemeral_range()
    draws = random.Random()  # noqa: S311 - not a run's seed stream: ports are not part of any result
    for _ in range(PORT_DRAWS):
        port = draws.randrange(LISTEN_PORT_MIN, low) if low - LISTEN_PORT_MIN >= 1000 else 0
        if port in taken:
            continue
        try:
            s = _listen_on(port, taken)
        except OSError:  # in use (the draw is random: the next one is likely free)
            continue
        if s is not None:
            return s
    if port:  # every draw below the ephemeral range taken (another process holding them): any port the kernel has
        return listening_socket_any(taken)
    raise UserError(f"no free loopback port to listen on after {PORT_DRAWS} draws: free some (other processes hold "
                    "them) and run again")  # fmt: skip


def listening_socket_any(taken: set[int]) -> socket.socket:
    """``listening_socket`` on a port the kernel picks (its ephemeral range), not one of ``taken``."""
    for _ in range(PORT_DRAWS):
        try:
            s = _listen_on(0, taken)
        except OSError as exc:
            raise UserError(f"no free loopback port to listen on: {exc.strerror or exc}") from None
        if s is not None:
            return s
    raise UserError(f"no free loopback port to listen on after {PORT_DRAWS} draws")


def _listen_on(port: int, taken: set[int]) -> socket.socket | None:
    """A loopback socket listening on ``port`` (0: the kernel's pick), which joins ``taken``; None where the port
    bound is one of ``taken`` already. OSError where it cannot be bound."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        s.listen(LISTEN_BACKLOG)
    except OSError:
        s.close()
        raise
    got = int(s.getsockname()[1])
    if got in taken:
        s.close()
        return None
    taken.add(got)
    return s


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="utf-8").split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


class LocalAddressing:
    """Addressing on one machine: free loopback ports; a path that crosses links gets a shaping proxy with
    the path's link model (started here, all stopped by ``stop``)."""

    def __init__(self, s: Scenario, seed: int):
        self.scenario = s
        self.seeds = iter(np.random.SeedSequence(seed).spawn(1000))
        self.running: list[ShapingProxy | AttackRelay] = []
        self.ports: set[int] = set()  # handed out to this run's listeners
        self.held: dict[str, list[socket.socket]] = {}  # by pod: its listening sockets, until its node has them
        self.key = new_link_key()  # what a connection to one of the run's links opens with (hw/proxy.py)
        self.paired: list[Address] = []  # those links

    bind = "127.0.0.1"  # nodes listen on loopback
    probe: FabricProbe | None = None  # no fabric of its own to measure: its links are the proxies' model

    def start(self) -> None:
        """Nothing to set up: proxies start as routes are dialled."""

    def exec_prefix(self, cfg: RunConfig, process: str) -> list[str]:
        return []

    def listen_port(self, pod: str, service: Service) -> int:
        sock = listening_socket(self.ports)
        # its connections take its congestion control from their handshake on (``hw.tcp.dial``): a node that
        # connected before the pod's process set it ran the machine's default's pacing (bbr here)
        tcp.use(sock, self.scenario.deployment.network.transport.congestion_control)
        self.held.setdefault(pod, []).append(sock)
        return int(sock.getsockname()[1])

    def listeners(self, process: str) -> list[socket.socket]:
        """The listening sockets bound for ``process``'s pod, handed over once (``Children.start`` passes them on)."""
        return self.held.pop(process, [])

    def dial(self, src: str, pod: str, host: str, service: Service, port: int) -> Address:
        if src == host:
            return ("127.0.0.1", port)
        hops = [LinkShape.of(params) for _, _, params in self.scenario.route_links(src, host)]
        seed = int(next(self.seeds).generate_state(1)[0])
        proxy = open_path(
            "127.0.0.1",
            port,
            LinkShape.from_path(hops),
            seed,
            key=self.key,
            congestion_control=self.scenario.deployment.network.transport.congestion_control,
        )
        self.running.append(proxy)
        self.paired.append(("127.0.0.1", proxy.port))
        return ("127.0.0.1", proxy.port)

    def pair(self, cfg: RunConfig, children: Children) -> RunConfig:
        """The run's nodes given its key (in their environment) and told which addresses want it (run.json)."""
        children.env[LINK_KEY_ENV] = self.key.hex()
        return cfg.model_copy(update={"paired": list(self.paired)})

    def devices(self, pop: DevicePopulation, host: str) -> dict[str, Any]:
        return {}

    def attack(self, cfg: RunConfig, kind: str, victim: str) -> RunConfig:
        """An on-path attacker between one client and the aggregator, or that client compromised (hw/attack.py)."""
        if victim not in cfg.routes:
            raise UserError(f"--attack: no client pod {victim!r} (clients: {', '.join(cfg.fl.clients)})")
        if kind in INSIDERS:  # the client itself attacks: no relay
            return cfg.model_copy(update={"attack": (kind, victim)})
        target = cfg.routes[victim][cfg.aggregator]
        relay = AttackRelay(
            target,
            kind,
            key=self.key,
            present=self.key if target in self.paired else b"",
            congestion_control=self.scenario.deployment.network.transport.congestion_control,
        )
        self.running.append(relay)
        self.paired.append(("127.0.0.1", relay.port))
        routes = {**cfg.routes, victim: {cfg.aggregator: ("127.0.0.1", relay.port)}}
        return cfg.model_copy(update={"routes": routes, "attack": (kind, victim)})

    def retransmissions(self) -> int:
        return sum(
            int(stats.get("retransmissions", 0))
            for p in self.running
            if isinstance(p, ShapingProxy)
            for stats in p.stats().values()
        )

    def unpaired(self) -> int:
        """Connections the run's links closed for not opening with its key."""
        return sum(p.unpaired for p in self.running if isinstance(p, ShapingProxy))

    def stop(self) -> None:
        for p in self.running:
            p.close() if isinstance(p, AttackRelay) else p.stop()
        for socks in self.held.values():  # a node that never started
            for sock in socks:
                sock.close()
        self.held.clear()


REORDERING_WARNING = (
    "--backend netns: this kernel has no receive packet steering (rps_cpus): a lossy link of 300 "
    "Mbit/s or more may reorder a flow's frames, which TCP resends as if lost (hw/netns.py _steer)"
)


def fabric_warnings(addressing: LocalAddressing | NetnsAddressing) -> list[str]:
    """What a run's summary says about the fabric it ran on: a netns fabric whose lossy links could not be steered;
    strangers that dialled the local backend's links (closed unread, hw/proxy.py: their bytes took no link time)."""
    if isinstance(addressing, NetnsAddressing):
        return [] if addressing.fabric.in_order else [REORDERING_WARNING]
    if not (strangers := addressing.unpaired()):
        return []
    return [f"{strangers} connection(s) to the run's links did not open with the run's key and were closed unread "
            "(another process on this machine dialled addresses in run.json); they took no link time"]  # fmt: skip


class NetnsAddressing:
    """Addressing on a ``hw.netns.Fabric``: each pod listens on its host namespace's address and peers dial
    it there, so traffic between hosts crosses the kernel's shaped veth links (no proxies). A population's
    devices are emulated in the namespace of the first host on their path (``runner``), which shapes their
    access links in-process, as on Kubernetes."""

    bind = "0.0.0.0"  # noqa: S104 - nodes listen on their namespace's own address

    def __init__(self, s: Scenario, seed: int, fabric: Fabric):
        self.scenario, self.fabric = s, fabric
        self.seeds = iter(np.random.SeedSequence(seed).spawn(1000))
        # the delay hops' jitter: a stream of the run's seed none of the 1,000 above is (spawn keys are indices)
        fabric.seed = int(np.random.SeedSequence(seed, spawn_key=(1000,)).generate_state(1)[0])
        self.ports = iter(range(31000, 32000))
        self.probe: FabricProbe | None = None

    def start(self) -> None:
        """Build the namespaces and links (removed by ``stop``, or by the reaper if this process dies), and
        measure them between the aggregator's host and a client's on another host (``hw.netns.probe_clean``; again
        after the run, ``measure_again``), and the machine's kernel as a stage of them (hw/sendcpu.py
        ``kernel_rate_clean``, ~1 s): the simulator is given what the fabric does on this machine
        (``Summary.fabric``)."""
        self.fabric.build()
        s = self.scenario
        agg = s.pods("aggregator")[0].host
        others = [p.host for p in s.pods("client") if p.host != agg]
        if others:
            probe = probe_clean(self.fabric, agg, others[0])
            try:  # an extra: a failure leaves it unmeasured (0), as in runs before it, not the run failed
                calibrated = s.host_profile(agg).platform.speed_probe_us
                kernel_bps = kernel_rate_clean(self.fabric, agg, others[0], calibrated)
            except (OSError, UserError) as exc:
                log.warning("the machine's kernel could not be measured over the fabric: %s", exc)
                kernel_bps = 0.0
            self.probe = probe.model_copy(update={"kernel_rate_bps": kernel_bps, "delays": delays(s)})

    def measure_again(self) -> None:
        """After a completed run (its nodes stopped), measure the fabric again: one stream's throughput moves with
        the machine's state over a run (0.72 to 0.85 Gbit/s between probes seconds apart here); ``probe`` becomes
        the mean of the two. A probe that fails now keeps the first."""
        if self.probe is None:
            return
        self.probe = self.probe.model_copy(update={"delays": self._late_delays(self.probe.delays)})
        try:
            again = probe_clean(self.fabric, *self.probe.hosts)
        except (OSError, UserError):
            return
        first = self.probe
        latency_s = (first.latency_s + again.latency_s) / 2
        throughput_bps = (first.throughput_bps + again.throughput_bps) / 2
        self.probe = first.model_copy(update={"latency_s": latency_s, "throughput_bps": throughput_bps})

    def _late_delays(self, delays: list[LinkDelay]) -> list[LinkDelay]:
        """The delayed links with how late their hops passed packets on over the run (``Fabric.lateness``)."""
        links, late = self.scenario.deployment.network.links, self.fabric.lateness()
        out = []
        for d in delays:
            a, b = links[d.link].a, links[d.link].b
            ways = late.get((a, b)) or late.get((b, a), [])[::-1]
            out.append(d.model_copy(update={"lateness": ways}))
        return out

    def exec_prefix(self, cfg: RunConfig, process: str) -> list[str]:
        """The command a node process runs under: in its pod's host's namespace, or its runner host's."""
        host = process.removeprefix("devices-") if process.startswith("devices-") else cfg.pods[process].host
        return ["ip", "netns", "exec", self.fabric.namespace(host)]

    def listen_port(self, pod: str, service: Service) -> int:
        return next(self.ports)

    def dial(self, src: str, pod: str, host: str, service: Service, port: int) -> Address:
        if src not in self.fabric.addresses:  # a device: dialled from its population's runner host
            pop = next(p for p in self.scenario.workload.devices if p.name == src.partition("#")[0])
            src = runner_host(self.scenario, pop, host)
        return ("127.0.0.1", port) if src == host else (self.fabric.address(host), port)

    def devices(self, pop: DevicePopulation, host: str) -> dict[str, Any]:
        runner = runner_host(self.scenario, pop, host)
        extra: dict[str, Any] = {"runner": f"devices-{runner}"}
        if link := access_link(self.scenario, pop, runner):
            extra |= {"link": link, "link_seed": int(next(self.seeds).generate_state(1)[0])}
        return extra

    def retransmissions(self) -> int:
        return self.fabric.retransmissions()

    def stop(self) -> None:
        self.fabric.close()


GRACE_S = 3.0  # how long a node may take to end after SIGTERM at the run's end


class Children:
    """The node processes of one run; every one is stopped on exit. ``prefix(name)`` is a command to run a
    node's program under (``ip netns exec NS``), or none."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.prefix: Callable[[str], list[str]] = lambda name: []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[int] = []  # the nodes' log files, open for writing
        self.roles: dict[str, str] = {}  # process -> its role
        self.ended: dict[str, int] = {}  # process -> its exit code, for those that had ended when ``stop`` came
        self.killed: list[str] = []  # processes that did not end within the grace time after SIGTERM
        self.started: dict[str, float] = {}  # process -> when it was started (monotonic)
        self.stopped_at: float | None = None  # when ``stop`` came
        self.frozen: list[str] = []  # processes killed for having stayed stopped (``Frozen``)
        env = dict(os.environ)
        env.update({v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        env.update(NODE_ENV)  # one malloc arena from the start (hw/runtime.py)
        env[PARENT_ENV] = str(os.getpid())  # a node exits when this process dies (hw/node: die_with_parent)
        self.env = env  # one core per training step, as the simulator's model assumes

    def start(self, name: str, role: str, listeners: Sequence[socket.socket] = ()) -> None:
        """Start node ``name``; ``listeners``: its listening sockets, already bound (``LocalAddressing``), which it
        inherits (``LISTEN_FDS_ENV``) and this process closes."""
        fd = open_log(RunLayout(self.run_dir).log(name))
        self.logs.append(fd)
        cmd = [*self.prefix(name), sys.executable, "-m", "hw.node", str(self.run_dir), name, role]
        env = self.env
        if listeners:
            held = ",".join(f"{s.getsockname()[1]}={s.fileno()}" for s in listeners)
            env = {**self.env, LISTEN_FDS_ENV: held}
        # our own interpreter and module, a name and a role from the validated scenario: no shell, no user string
        try:
            self.procs[name] = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT, env=env,  # noqa: S603
                                                pass_fds=[s.fileno() for s in listeners])  # fmt: skip
        finally:
            for sock in listeners:  # the node holds them now (or nobody: its port is free again)
                sock.close()
        self.roles[name] = role
        self.started[name] = time.monotonic()
        write_json(RunLayout(self.run_dir).pids, {n: p.pid for n, p in self.procs.items()})

    def stop(self, grace_s: float = GRACE_S) -> dict[str, int | None]:
        """SIGTERM to every node still running, SIGKILL to any that has not ended ``grace_s`` later; their exit
        codes. Which had ended before (``ended``) and which had to be killed (``killed``) is kept for the summary's
        warnings (``node_warnings``): a node process that died mid-run showed only as an exit code in status.json."""
        self.stopped_at = time.monotonic()
        self.ended = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.send_signal(signal.SIGCONT)  # a stopped one (SIGSTOP) handles its SIGTERM only once continued
        deadline = time.monotonic() + grace_s
        for n, p in self.procs.items():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.killed.append(n)
        for fd in self.logs:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.logs.clear()
        return {n: p.returncode for n, p in self.procs.items()}


_REMOVE_IT = "remove it (the twin writes no file of a run through a link)"


def open_log(path: Path) -> int:
    """``path`` (``logs/<process>.log`` of a run) created or emptied for writing, as a descriptor; never opened
    through a link, neither the file nor its ``logs`` directory (``O_NOFOLLOW``: a ``logs/client-1.log`` link
    planted in a shared run directory had its target truncated and overwritten with the node's output), nor a
    FIFO (``O_NONBLOCK``: it hung the run's start), nor a file with other names (truncated through all of them).
    Anything else there is one line naming it."""
    folder = path.parent
    try:
        folder.mkdir(exist_ok=True)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(folder):
            raise UserError(f"{folder} is a symbolic link, not this run's logs directory; {_REMOVE_IT}") from None
        raise UserError(f"{folder}: cannot open this run's logs directory: {exc.strerror or exc}") from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path.name, flags, 0o644, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link, not a log of this run; {_REMOVE_IT}") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO nobody reads, a directory
            raise UserError(f"{path} is not a regular file, not a log of this run; remove it") from None
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            what = "a file with other names (a hard link)" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise UserError(f"{path} is {what}, not a log of this run; {_REMOVE_IT}")
        os.ftruncate(fd, 0)  # only now: a hard link's other names keep their contents
        os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def writable(path: Path) -> Path | None:
    """``path``, a file of the run directory that a helper writes by name (the scheduler trace, the speed samples,
    and a ``.tmp`` beside it), when it is missing or a regular file of one name; None, said in the log, when it is
    a link or anything else planted there (written through, it overwrote the link's target)."""
    for p in (path, path.with_name(path.name + ".tmp")):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("not keeping %s: %s", path, exc.strerror)
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            log.warning("not keeping %s: %s is not a regular file of this run (a link?); remove it", path, p)
            return None
    return path


def calibrated_probe_us(s: Scenario) -> float | None:
    """The speed probe of the profile the hosts were calibrated with (one machine runs them all here)."""
    probes = {s.host_profile(h.name).platform.speed_probe_us for h in s.deployment.hosts}
    return probes.pop() if len(probes) == 1 else None


def run_local(
    s: Scenario, out: Path, mode: str, rounds: int, seed: int, progress: Callable[[int], None] | None = None,
    crash: dict[str, int] | None = None, attack: tuple[str, str] | None = None, backend: str = "local",
) -> Summary:  # fmt: skip
    """``crash`` {pod: round} kills a client mid-round (fault injection); ``attack`` (kind, client pod)
    puts an on-path attacker between that client and the aggregator (hw/attack.py). ``backend`` netns: each
    scenario host a network namespace, links real veths shaped by the kernel (``hw.netns``). Stopped by Ctrl-C,
    kill (SIGTERM) or a closed terminal (SIGHUP), it still writes what it finished (``hw.lifecycle``)."""
    check_runnable(s, backend)  # the CLI checked before it claimed ``out``: a caller of its own gets it here
    rundir.prepare(out)
    addressing: LocalAddressing | NetnsAddressing = (
        NetnsAddressing(
            s, seed, Fabric(s.graph(), congestion_control=s.deployment.network.transport.congestion_control)
        )
        if backend == "netns"
        else LocalAddressing(s, seed)
    )
    run = _Run(s, out, mode, seed, backend, attack, addressing, Children(out))
    run.running = running_status(out, backend, mode, seed)
    _write_status(out, run.running)  # before anything else: a run directory always says whose it is
    with stop_signals():
        try:
            run.state, run.reason = _start_and_follow(run, rounds, crash, progress)
        except BaseException as exc:
            run.pending = exc
            run.state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run.reason = _why_ended(exc)
            raise
        finally:
            with held_stops() as came:  # a second Ctrl-C here skipped writing what the run had finished
                summary = run.finish()
            if came and run.pending is None:  # asked to stop while finishing: the results are written, now stop
                raise_held(came[-1])
    assert summary is not None
    return summary


def _why_ended(exc: BaseException) -> str:
    """A run's ``reason`` when ``exc`` ended it early."""
    if isinstance(exc, Stopped):
        return f"stopped by {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by Ctrl-C"
    return f"{type(exc).__name__}: {exc}"


class _Run:
    """One local run's parts and outcome, between its start and ``finish``."""

    def __init__(self, s: Scenario, out: Path, mode: str, seed: int, backend: str, attack: tuple[str, str] | None,
                 addressing: LocalAddressing | NetnsAddressing, children: Children):  # fmt: skip
        self.s, self.out, self.mode, self.seed, self.backend, self.attack = s, out, mode, seed, backend, attack
        self.addressing, self.children = addressing, children
        self.state, self.reason = "failed", ""
        self.pending: BaseException | None = None  # what ended the run early: never hidden by a failure to write
        self.started = time.monotonic()
        self.load = LoadMonitor(calibrated_probe_us(s), softirq_is_own=backend == "netns").start()
        self.allowed: dict[str, set[int]] = {}  # node -> the CPUs it is pinned to (its host's), for the trace
        self.epoch = time.monotonic()  # the nodes' clock origin
        self.cfg: RunConfig | None = None  # once built
        self.running: RunStatus | None = None  # status.json while the run runs (``running_status``)

    def finish(self) -> Summary | None:
        """Stop the nodes and the run's helpers, recover the finished rounds of killed nodes, write the results
        (None: they could not be written while another error is on its way)."""
        s, out, addressing, children = self.s, self.out, self.addressing, self.children
        codes = children.stop()
        retransmissions = addressing.retransmissions()
        if self.state == "completed" and isinstance(addressing, NetnsAddressing):
            addressing.measure_again()
        addressing.stop()
        pids = {n: p.pid for n, p in children.procs.items()}
        speed = writable(out / SPEED_SAMPLES)
        machine_load = self.load.stop(
            rounds_window(out, s, self.epoch),
            pids,
            self.allowed,
            keep_trace=writable(out / SCHED_TRACE),
            keep_speed=(speed, self.epoch) if speed is not None else None,
        )
        elapsed_s = time.monotonic() - self.started  # the run's, not the probe's
        if self.state == "completed":  # the memory state the trainings met, read at once (it moves within minutes)
            machine_load = machine_load.model_copy(update={"training_probe": training_probe()})
        aggregator = s.pods("aggregator")[0].name
        try:
            recover_node_journals(out)  # the finished rounds of nodes that were killed
            warnings = node_warnings(out, children, self.state, aggregator, self.cfg)
            warnings += fabric_warnings(addressing)
            extra = {"backend": self.backend, "mode": self.mode, "seed": self.seed,
                     "retransmissions": retransmissions, "attack": self.attack, "machine_load": machine_load,
                     "fabric": addressing.probe, "warnings": warnings}  # fmt: skip
            return write_run_results(s, out, aggregator, self.state, self.reason, codes,
                                     elapsed_s, extra,
                                     status_extra={"machine_load": machine_load.model_dump()},
                                     warn=partial(silent_devices, cfg=self.cfg, children=children))  # fmt: skip
        except Exception as exc:
            self._keep_outcome(codes, exc)
            if self.pending is None:
                if (error := cannot_finish(exc, out)) is exc:
                    raise  # nothing else went wrong: this is the error to report
                raise error from None
            return None

    def _keep_outcome(self, codes: dict[str, int | None], exc: Exception) -> None:
        """How the run ended, kept in status.json (still ``running``) when its results could not be written (a full
        disk): ``pqtwin hw recover`` writes them later with it. Nothing if even that cannot be written."""
        if self.running is None:
            return
        outcome = RunOutcome.model_validate({"state": self.state, "reason": self.reason, "exit_codes": codes})
        unwritten = f"{exc.filename}: {exc.strerror or exc}" if isinstance(exc, OSError) else f"{type(exc).__name__}"
        kept = self.running.model_copy(update={"outcome": outcome, "unwritten": unwritten})
        with contextlib.suppress(OSError):
            write_json(RunLayout(self.out).status, kept.model_dump())


def _start_and_follow(run: _Run, rounds: int, crash: dict[str, int] | None,
                      progress: Callable[[int], None] | None) -> tuple[str, str]:  # fmt: skip
    """Build the run's config, provision its keys, start its nodes and follow them to the end."""
    s, out, addressing, children = run.s, run.out, run.addressing, run.children
    addressing.start()  # inside the clean-up's reach
    cfg = build(s, run.mode, rounds, run.seed, addressing, separate_workers=True, epoch=run.epoch,
                crash=crash or {}, cpus=pin_cpus(s), bind=addressing.bind)  # fmt: skip
    children.prefix = partial(addressing.exec_prefix, cfg)
    if run.attack is not None:
        if not isinstance(addressing, LocalAddressing):
            raise UserError("--attack: only with --backend local")
        cfg = addressing.attack(cfg, *run.attack)
    if isinstance(addressing, LocalAddressing):
        cfg = addressing.pair(cfg, children)
    run.allowed = {name: set(cfg.cpus[pod.host]) for name, pod in cfg.pods.items() if cfg.cpus.get(pod.host)}
    cfg = provision(cfg, out)  # every key, before any node starts
    run.cfg = cfg
    cfg.write(out)
    write_scenario(s, out)
    held = addressing.listeners if isinstance(addressing, LocalAddressing) else lambda name: []
    children.start(cfg.aggregator, "aggregator", held(cfg.aggregator))
    for c in cfg.fl.clients:
        children.start(c, "client", held(c))
    for w in cfg.worker_processes:
        children.start(w, "worker")
    for runner in sorted({d.runner or "devices" for d in cfg.devices}):
        children.start(runner, "devices")
    return _follow(out, children, cfg, progress)


def rounds_window(out: Path, s: Scenario, epoch: float) -> tuple[float, float] | None:
    """When the run's FL rounds ran (monotonic seconds), from the aggregator's spans; None if it has none."""
    path = out / "spans" / f"{s.pods('aggregator')[0].name}.parquet"
    try:
        rounds = pd.read_parquet(path, columns=["op", "start_s", "end_s"]).query("op == 'round'")
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None
    return None if rounds.empty else (epoch + float(rounds.start_s.min()), epoch + float(rounds.end_s.max()))


STOPPED_LIMIT_S = 10.0  # a node process stopped (SIGSTOP, a debugger) this long is taken for gone
FROZEN_CHECK_S = 0.5  # how often the node processes' states are read


class Frozen:
    """The node processes that have stayed stopped (SIGSTOP, a debugger) for ``STOPPED_LIMIT_S``, as this process saw
    them while awake: a gap in its own watch (it was stopped itself: Ctrl-Z stops the whole process group, and
    ``fg`` continues it first) starts every count anew. A stopped aggregator held a run until its deadline
    (rounds x round_timeout_s: 10 hours for 60 rounds by default); a stopped client, a round timeout."""

    def __init__(self) -> None:
        self.since: dict[str, float] = {}
        self.seen = time.monotonic()

    def over(self, children: Children) -> list[str]:
        now = time.monotonic()
        if now - self.seen < FROZEN_CHECK_S:
            return []
        if now - self.seen > 4 * FROZEN_CHECK_S:
            self.since.clear()
        self.seen = now
        over = []
        for name, p in children.procs.items():
            if p.poll() is None and stopped(p.pid):
                if now - self.since.setdefault(name, now) >= STOPPED_LIMIT_S:
                    over.append(name)
            else:
                self.since.pop(name, None)
        return over


def _follow(out: Path, children: Children, cfg: RunConfig, progress: Callable[[int], None] | None) -> tuple[str, str]:
    deadline = time.monotonic() + cfg.fl.rounds * cfg.fl.round_timeout_s + 120
    agg = children.procs[cfg.aggregator]
    last = 0
    frozen = Frozen()
    while agg.poll() is None:
        if time.monotonic() > deadline:
            return "failed", "timed out waiting for the aggregator"
        for name in frozen.over(children):
            if name == cfg.aggregator:
                return "failed", (f"the aggregator was stopped (SIGSTOP or a debugger) for {STOPPED_LIMIT_S:g} s; the "
                                  "run cannot go on without it (its finished rounds are kept)")  # fmt: skip
            children.procs[name].kill()  # gone, as after a crash: a client drops out, a worker's jobs move on
            children.frozen.append(name)
        try:
            r = int(json.loads(RunLayout(out).progress.read_text())["round"])
        except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError):  # being replaced, or not
            # the aggregator's (a damaged file): read it again next time
            r = last
        if r != last and progress:
            progress(r)
        last = r
        time.sleep(0.05)
    if progress:
        progress(last)
    _let_nodes_end([children.procs[c] for c in [*cfg.fl.clients, *cfg.worker_processes]])
    if agg.returncode == 0:
        return "completed", ""
    result = rundir.node_results(out).get(cfg.aggregator) or journal_result(out, cfg.aggregator)
    why = result.reason if result else ""
    return "failed", why or f"aggregator {_how_it_ended(agg.returncode)} (see logs/{cfg.aggregator}.log)"


NODES_END_S = 10.0  # how long clients and workers are given to end after the aggregator, together


def _let_nodes_end(procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait until the clients and workers have ended after the aggregator (its DONE, or its closed connections), up
    to NODES_END_S for all of them, and not for one that is stopped (SIGSTOP: it would hold the run NODES_END_S for
    nothing; ``Children.stop`` ends it). Each waited its own 10 s before: two frozen nodes cost 20 s."""
    deadline = time.monotonic() + NODES_END_S
    for p in procs:
        while p.poll() is None and not stopped(p.pid) and time.monotonic() < deadline:
            time.sleep(0.02)


# --- what a run's end says about its node processes -----------------------------------------------------------------

_STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_CODES = {0, *(-s for s in _STOPS), *(128 + s for s in _STOPS)}  # how a node stopped with the run ends


def node_warnings(out: Path, children: Children, state: str, aggregator: str, cfg: RunConfig | None) -> list[str]:
    """A line for each node process (the aggregator aside: its end is the run's state and reason) that ended on its
    own before the run stopped it and not as it should -- killed, crashed, or failed while the run went on -- and for
    each that had to be killed at the end. A device emulator runs until stopped: any end of its own is one. A run
    whose devices process was SIGKILLed mid-run ended "completed" with no word of it (its telemetry silently gone).
    Not said: a node's end that the run's own end explains (a stop that reached the whole process group, a client
    that failed with the failed run: its reason is the run's)."""
    reports = rundir.node_results(out)
    unfinished = sum(r.security.get("unfinished", 0) for r in reports.values())
    lines = []
    for name, code in children.ended.items():
        role = children.roles.get(name, "")
        if name == aggregator or (state == "interrupted" and code in STOP_CODES):
            continue
        if role != "devices" and (code == 0 or (code == 3 and state != "completed")):
            continue
        how = _how_it_ended(code)
        if name in children.frozen:
            how = f"was stopped (SIGSTOP or a debugger) for {STOPPED_LIMIT_S:g} s, then killed"
        if role == "devices":
            lines.append(f"the device emulator {name} {how} before the run ended (see logs/{name}.log): its devices "
                         f"sent no telemetry after that{_cut_handshakes(name, cfg, unfinished)}")  # fmt: skip
        else:
            report = reports.get(name)
            why = f": {report.reason}" if report is not None and report.reason else ""
            lines.append(f"{name} ({role}) {how} before the run ended (see logs/{name}.log){why}")
    lines += [f"{name} did not end within {GRACE_S:g} s of SIGTERM at the run's end and was killed "
              f"(see logs/{name}.log)" for name in children.killed]  # fmt: skip
    return lines


SILENT_GRACE_S = 10.0  # beyond two frame periods, how long a device may take to connect before its silence is said


def silent_devices(spans: pd.DataFrame, cfg: RunConfig | None, children: Children) -> list[str]:
    """A line for each device population some of whose devices delivered no frame although their emulator ran long
    enough for every one to (two frame periods and ``SILENT_GRACE_S``): whatever kept them out -- a stranger
    flooding their links or their pod, an emulator that could not reach its pod -- a run that "completed" with a
    population's telemetry missing said nothing of it. Short runs (the emulator starts last) are not judged."""
    if cfg is None or children.stopped_at is None:
        return []
    heard: set[str] = set()  # the devices a frame came from (a frame's host: its device)
    if len(spans) and {"phase", "op", "host"} <= set(spans.columns):  # a run that recorded nothing has no columns
        heard = set(spans.host[(spans.phase == "telemetry") & (spans.op == "frame")].unique())
    lines = []
    for g in cfg.devices:
        runner = g.runner or DEVICE_EMULATOR
        if runner not in children.started or runner in children.ended:  # an emulator's own end is said already
            continue
        ran_s = children.stopped_at - children.started[runner]
        if ran_s < 2 * g.period_s + SILENT_GRACE_S:
            continue
        if silent := [d for d in g.device_names() if d not in heard]:
            lines.append(f"population {g.population}: {len(silent)} of {g.count} devices delivered no telemetry frame "
                         f"in the {ran_s:.1f} s their emulator ran (one was due every {g.period_s:g} s): see "
                         f"logs/{runner}.log and the security counts")  # fmt: skip
    return lines


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return "ended" if code == 0 else f"exited with code {code}"


def _cut_handshakes(runner: str, cfg: RunConfig | None, unfinished: int) -> str:
    """What a device emulator's death does to the security counts: a device's handshake it cut half-way is counted
    by its pod as ``unfinished``, which is also what a stranger's half-handshake is (nothing a pod sees tells them
    apart); at most one per device of the emulator."""
    if not unfinished:
        return ""
    groups = [d for d in (cfg.devices if cfg is not None else []) if (d.runner or "devices") == runner]
    devices = sum(len(d.device_names()) for d in groups)
    own = f"up to {min(devices, unfinished)}" if devices else "some"
    return (f"; {own} of the {unfinished} security events counted 'unfinished' may be handshakes of its own devices "
            "that its end cut half-way, not strangers'")  # fmt: skip


# --- a run directory's status while it runs, its results written, and a dead run's results recovered ---------------

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)  # writes the machine refused


def running_status(out: Path, backend: str, mode: str, seed: int) -> RunStatus:
    """status.json as a run starts: ``running``, and which process runs it (its pid, and when that process started:
    a pid alone may be another process's later). A run whose orchestrator dies (SIGKILL, the out-of-memory killer)
    keeps saying so, and ``pqtwin hw recover`` knows it may finish the directory once that process is gone."""
    pid = os.getpid()
    why = f"running, or its orchestrator (process {pid}) ended without writing the results: `pqtwin hw recover {out}` "
    return RunStatus(state="running", reason=why + "writes what the run finished", pid=pid, seed=seed,
                     pid_start=process_start(pid), backend=backend, mode=mode, started=time.time())  # fmt: skip


def _write_status(out: Path, status: RunStatus) -> None:
    path = RunLayout(out).status
    try:
        write_json(path, status.model_dump())  # whole or not at all (sim.contract.atomic_write)
    except OSError as exc:
        _name(exc, path)
        raise


def recover_node_journals(out: Path) -> list[str]:
    """``hw.journal.recover_journals``; a write it could not make names its file (a full disk's error named no file:
    the user was told only the run directory)."""
    try:
        return recover_journals(out)
    except OSError as exc:
        layout = RunLayout(out)
        left = sorted((out / RunLayout.NODE_SPANS).glob("*.journal"))  # each is removed once recovered: the first
        if left:  # left is the one it was writing, its spans first, then its result
            pod = left[0].stem
            _name(exc, layout.node_result(pod) if layout.node_spans(pod).exists() else layout.node_spans(pod))
        raise


def write_run_results(s: Scenario, out: Path, aggregator: str, state: str, reason: str, codes: dict[str, int | None],
                      wall_s: float, extra: dict[str, Any], status_extra: dict[str, Any],
                      warn: Callable[[pd.DataFrame], list[str]] | None = None) -> Summary:  # fmt: skip
    """``rundir.write_results`` for a run on this machine (every pod on its cores); a file it could not write is
    named in the error (it writes spans.parquet, summary.json and status.json in turn, each whole or not at all:
    the first not replaced is the one)."""
    layout = RunLayout(out)
    files = (layout.spans, layout.summary, layout.status)
    before = {p: _identity(p) for p in files}
    try:
        return rundir.write_results(s, out, aggregator, state, reason, codes, wall_s,
                                    {"this-machine": os.cpu_count() or 1}, extra, machine="this-machine",
                                    status_extra=status_extra, warn=warn)  # fmt: skip
    except OSError as exc:
        _name(exc, next((p for p in files if _identity(p) is None or _identity(p) == before[p]), None))
        raise


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _name(exc: OSError, path: Path | None) -> None:
    """Name ``path`` in ``exc`` where it names no file, or only the temporary it was being written to."""
    if path is not None and (exc.filename is None or str(exc.filename).endswith(".tmp")):
        exc.filename = str(path)


def cannot_finish(exc: Exception, out: Path) -> Exception:
    """The error for results that could not be written: for a disk that took no more (full, read-only), the file and
    how to get the results once it does -- the nodes' files are kept, and status.json says the run is unfinished."""
    if not isinstance(exc, OSError) or exc.errno not in NO_ROOM:
        return exc
    return UserError([f"{exc.filename or out}: cannot write: {exc.strerror or exc}",
                      f"{out}: what the run finished is kept; once the disk takes it, `pqtwin hw recover {out}` "
                      "writes the results"])  # fmt: skip


def recover_run(out: Path) -> Summary:
    """Finish the run directory of a local or netns run whose orchestrator (``pqtwin hw run``) ended without writing
    its results: killed (SIGKILL, the out-of-memory killer) or refused by the disk (full). What its nodes left --
    their reports, spans and the journals of the rounds they finished -- becomes spans.parquet, summary.json and
    status.json as the run's own end would have written them; the state is the one the orchestrator had come to if
    it kept it (status.json ``outcome``, a full disk), else ``interrupted``, with a reason saying the orchestrator
    ended. UserError, and nothing written, while the run or any of its nodes still runs, or where there is nothing to
    recover."""
    layout = RunLayout(out)
    if not out.is_dir():
        raise UserError(f"RUN_DIR: {out} is not a directory")
    if exists(out / RunLayout.MANIFESTS):
        raise UserError(f"RUN_DIR: {out} is a Kubernetes run: its nodes' results are in its pods' logs, not here")
    status = _read_status(out)
    if status is not None and status.state != "running" and exists(layout.summary):
        raise UserError(f"RUN_DIR: {out}: nothing to recover: its run ended ({status.state}) and wrote its "
                        "results")  # fmt: skip
    try:
        cfg = RunConfig.read(out)
    except ValueError as exc:
        raise UserError(f"RUN_DIR: {out}: nothing to recover: not a twin run that started its nodes "
                        f"({str(exc).splitlines()[0]})") from None  # fmt: skip
    try:
        rundir._lock(out)  # the orchestrator holds it for the run's life (as any pqtwin hw run does)
    except UserError:
        raise UserError(f"RUN_DIR: {out}: its run is still going (another process holds {out / rundir.LOCK}): "
                        "nothing to recover while it runs") from None  # fmt: skip
    try:
        status = status or RunStatus(state="running")  # none readable: nothing known of how it ran
        _check_ended(out, status)
        # a write cut short by the kill (a node's progress.json, say) left its temporary file: nobody will finish it
        rundir.remove_partial(out, created=False)
        s = load_scenario(layout.scenario, priced=False)
        return _recover(out, s, cfg, status)
    finally:
        rundir.release(out)


def _read_status(out: Path) -> RunStatus | None:
    """status.json, or None where it is missing or is not one (pydantic's ValidationError is a ValueError)."""
    try:
        return RunStatus.model_validate_json(read_bytes(RunLayout(out).status, MAX_RUN_JSON_BYTES, "a JSON file"))
    except (UserError, ValueError):
        return None


def _check_ended(out: Path, status: RunStatus) -> None:
    """UserError while the run's orchestrator, or one of its node processes, still runs."""
    pid = status.pid
    if pid is not None and alive(pid, status.pid_start):
        raise UserError(
            f"RUN_DIR: {out}: its orchestrator (process {pid}) is still running: it writes the results itself when "
            f"the run ends (Ctrl-C or kill {pid} stops it and keeps what it finished)"
        )
    busy = [name for name, pid in node_pids(out).items() if node_alive(pid, name)]
    if busy:
        raise UserError(f"RUN_DIR: {out}: its node processes are still ending ({', '.join(sorted(busy))}); "
                        "try again in a few seconds")  # fmt: skip


def _recover(out: Path, s: Scenario, cfg: RunConfig, status: RunStatus) -> Summary:
    outcome, pid = status.outcome, status.pid
    if outcome is not None and outcome.state != "running":
        state, reason, codes = outcome.state, outcome.reason, outcome.exit_codes
        why = f"the run's end could not write them ({shorten(status.unwritten or 'an error', 200)})"
    else:
        state, codes = "interrupted", {name: None for name in node_pids(out) or cfg.pods}
        who = f"its orchestrator (process {pid})" if pid is not None else "its orchestrator"
        reached = _progress_round(out)
        after = f" after round {reached} of {cfg.fl.rounds}" if reached is not None else ""
        reason = (f"{who} ended without writing the results{after} (killed: SIGKILL, the out-of-memory killer; or a "
                  "full disk); pqtwin hw recover wrote the rounds its nodes finished")  # fmt: skip
        why = "the run's end never came"
    wall_s = _wall_s(out, status)  # before the recovery writes files of its own
    recover_node_journals(out)
    backend = status.backend if status.backend in ("local", "netns") else "local"
    lost = "machine load or retransmission count" + ("" if codes and any(v is not None for v in codes.values())
                                                     else ", nor the nodes' exit codes")  # fmt: skip
    note = f"results written by pqtwin hw recover from what the nodes left, as {why}: no {lost}"
    extra = {"backend": backend, "mode": cfg.mode, "seed": cfg.seed, "attack": cfg.attack, "warnings": [note]}
    return write_run_results(s, out, cfg.aggregator, state, reason, codes, wall_s, extra,
                             status_extra={"recovered": True, **({"pid": pid} if pid is not None else {})})  # fmt: skip


def _progress_round(out: Path) -> int | None:
    try:
        r = json.loads(read_bytes(RunLayout(out).progress, MAX_RUN_JSON_BYTES, "a JSON file"))["round"]
    except (UserError, ValueError, KeyError, TypeError):
        return None
    return r if isinstance(r, int) and not isinstance(r, bool) and r >= 0 else None


def _wall_s(out: Path, status: RunStatus) -> float:
    """From the run's start (status.json) to the last file its nodes wrote; 0 where unknown."""
    started = status.started
    if started is None:
        return 0.0
    files = [*(out / RunLayout.NODE_SPANS).glob("*"), *(out / RunLayout.NODES).glob("*"), RunLayout(out).progress]
    times = []
    for f in files:
        with contextlib.suppress(OSError):
            times.append(os.lstat(f).st_mtime)
    last = max(times, default=started)
    return max(0.0, float(last - started)) if math.isfinite(last - started) else 0.0
