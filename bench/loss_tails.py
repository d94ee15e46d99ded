"""Where a lossy link's slow TCP flows come from (issue 18): single flows through the netns fabric, each one
sorted by what the kernel's TCP counters say happened to it.

A lossy cell's mean completion time is made by a few slow flows (docs/network-validation.md): at a gigabit and
1 % loss a 64 KiB flow takes ~0.3 ms, but one in a few dozen takes 5-7 ms and one in a few hundred 200 ms or
more. This bench says which TCP mechanism each slow flow met, so the model can be given the ones that matter.
On the bench's star (bench/net_fidelity.py ``star``: host ``s`` sends to ``r0`` across the switch, every link at
``--rate-mbit`` with loss ``--loss`` per frame per direction), ``--trials`` messages of ``--size`` bytes, each
timed until the receiver has it all, then answered with a byte (the next starts on an idle connection). They
go on one kept connection, as the twin's nodes keep theirs, or with ``--new-connections`` each on its own,
opened just before it (as bench/net_fidelity.py's flows are). Each namespace's TCP counters (``nstat``: the
kernel's SNMP MIB) are read before the connection (or the message), before the message and after it, and each
message is put in the first class that fits:

- ``set-up``: a retransmission timeout while its connection was being opened (a lost SYN, SYN-ACK or ACK);
  with a kept connection, a timeout between two messages (the answer byte lost)
- ``rto``: a retransmission timeout during the message (the kernel's minimum ``tcp_rto_min_us``, 200 ms here);
- ``probe``: a tail loss probe (RACK-TLP) during the message, without a timeout;
- ``sack``: lost packets recovered by SACK fast retransmit alone;
- ``clean``: no retransmission during the message.

Per class: trials, their share, completion time median / mean / max, and the class's part of the overall mean.
Then the same message in the simulator (``--sim-runs`` seeds, the fabric's hop latency and bucket and the sending
kernel's rate, as bench/net_fidelity.py simulates its cells) and the error of its mean. The JSON keeps every
message's time and class. The machine's load average is recorded at the start and end. Needs root
(namespaces); refused in one line. A high loss takes long: TCP backs its timer off (20 % loss: minutes).

Run: python bench/loss_tails.py [--rate-mbit 1000] [--loss 0.01] [--size 65536] [--trials 300]
     [--new-connections] [--sim-runs 400] [--host-rate-bps BPS] [--json FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from net_fidelity import ANSWER_S, connect, simulate, star, transport_of

from hw.netns import Fabric, NetnsUnavailable, kernel_rate_bps, probe, unavailable
from sim.loading import in_range, out_json
from sim.scenario import Transport

# the counters read (nstat names); a trial's class comes from their differences
COUNTERS = ("TcpRetransSegs", "TcpExtTCPTimeouts", "TcpExtTCPLossProbes", "TcpExtTCPSackRecovery")
CLASSES = ("set-up", "rto", "probe", "sack", "clean")
SLOW_S = 0.15  # a message over this waited a timer (TCP's minimum timeout is 0.2 s here)
SIM_RUNS = 400  # the same message simulated (--sim-runs), each run its own seed (the model's losses are random)


def counters(ns: str) -> dict[str, int]:
    """The namespace's TCP counters now (``nstat -az``: absolute values, every counter even at zero)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "nstat", "-az", *COUNTERS], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    found = {p[0]: int(p[1]) for p in (line.split() for line in out.splitlines()) if len(p) >= 2 and p[0] in COUNTERS}
    return {name: found.get(name, 0) for name in COUNTERS}


def grew(before: list[dict[str, int]], after: list[dict[str, int]]) -> dict[str, int]:
    """How much each counter grew, summed over the namespaces."""
    return {name: sum(a[name] - b[name] for b, a in zip(before, after, strict=True)) for name in COUNTERS}


def classify(setup: dict[str, int], flow: dict[str, int]) -> str:
    """A trial's class (module docstring) from its counters' growth while opening and while the message went."""
    if setup["TcpExtTCPTimeouts"]:
        return "set-up"
    if flow["TcpExtTCPTimeouts"]:
        return "rto"
    if flow["TcpExtTCPLossProbes"]:
        return "probe"
    if flow["TcpRetransSegs"]:
        return "sack"
    return "clean"


def send_timed(snd: socket.socket, rcv: socket.socket, size: int) -> float:
    """One message of ``size`` bytes; seconds until the receiver has every byte. The receiver then answers one
    byte, which the sender waits for: the next message starts on an idle connection."""
    done = [0.0]

    def receive() -> None:
        buf, got = bytearray(1 << 20), 0
        while got < size:
            n = rcv.recv_into(buf)
            if not n:
                break
            got += n
        done[0] = time.monotonic()

    reader = threading.Thread(target=receive)
    reader.start()
    t0 = time.monotonic()
    snd.sendall(b"\0" * size)
    reader.join(600)
    rcv.sendall(b"k")
    timeout = snd.gettimeout()
    snd.settimeout(ANSWER_S)
    snd.recv(1)
    snd.settimeout(timeout)
    return done[0] - t0


def measure(fabric: Fabric, size: int, trials: int, new_connections: bool) -> list[tuple[float, str, int]]:
    """``trials`` messages, each (completion time s, class, segments resent while it went): on one kept
    connection, or each on a new one."""
    spaces = [fabric.namespace("s"), fabric.namespace("r0")]
    ports = itertools.count(41001)
    kept = None if new_connections else connect(fabric, "s", "r0", next(ports))
    results = []
    try:
        for _ in range(trials):
            c0 = [counters(ns) for ns in spaces]
            pair = kept or connect(fabric, "s", "r0", next(ports))
            c1 = [counters(ns) for ns in spaces]
            try:
                t = send_timed(*pair, size)
            finally:
                if kept is None:
                    for sock in pair:
                        sock.close()
            c2 = [counters(ns) for ns in spaces]
            flow = grew(c1, c2)
            results.append((t, classify(grew(c0, c1), flow), flow["TcpRetransSegs"]))
    finally:
        for sock in kept or ():
            sock.close()
    return results


def summarize(results: list[tuple[float, str, int]]) -> dict[str, Any]:
    """Per class: trials, share, median / mean / max ms and its part of the overall mean (ms); and what a resent
    segment costs where no timer ran (``per_resent``)."""
    times = [t for t, _, _ in results]
    out: dict[str, Any] = {"trials": len(results), "median_ms": statistics.median(times) * 1e3,
                           "mean_ms": statistics.fmean(times) * 1e3,
                           "p95_ms": sorted(times)[min(len(times) - 1, int(0.95 * len(times)))] * 1e3, "classes": {},
                           "messages": [[round(t * 1e3, 4), c, r] for t, c, r in results],
                           "per_resent": per_resent(results)}  # fmt: skip
    for name in CLASSES:
        mine = [t for t, c, _ in results if c == name]
        if mine:
            out["classes"][name] = {
                "trials": len(mine), "share": len(mine) / len(results), "median_ms": statistics.median(mine) * 1e3,
                "mean_ms": statistics.fmean(mine) * 1e3, "max_ms": max(mine) * 1e3,
                "part_of_mean_ms": sum(mine) / len(results) * 1e3,
            }  # fmt: skip
    return out


def per_resent(results: list[tuple[float, str, int]]) -> dict[str, float] | None:
    """The messages recovered by SACK alone or clean (no timer): completion time against the segments resent
    while each went, fitted by least squares -- ``clean_ms`` (none resent) and ``slope_ms`` (each one more);
    ``mean_resent`` a message. None without two different counts."""
    pts = [(r, t * 1e3) for t, c, r in results if c in ("sack", "clean")]
    if len({r for r, _ in pts}) < 2:
        return None
    slope, clean = statistics.linear_regression([float(r) for r, _ in pts], [t for _, t in pts])
    return {"messages": len(pts), "clean_ms": clean, "slope_ms": slope,
            "mean_resent": statistics.fmean(r for r, _ in pts)}  # fmt: skip


def modelled(rate_bps: float, loss: float, size: int, runs: int, host_rate_bps: float | None = None) -> dict[str, Any]:
    """The same message in the simulator (``sim.network``, the default ``Transport``), as bench/net_fidelity.py
    simulates its cells: the fabric's measured hop latency and bucket, and the sending kernel's rate
    (``host_rate_bps``, else measured: ``hw.netns.kernel_rate_bps``, ~8 s); ``runs`` seeds. The fabric is probed
    without its loss (a lost ping backs TCP's timer off past the probe's timeout; latency and bucket do not depend
    on it)."""
    with Fabric(star(rate_bps)) as fabric:
        fab = probe(fabric, "s", "r0")
    transport = Transport().model_copy(update={"host_rate_bps": host_rate_bps or kernel_rate_bps()})
    return simulated(transport, rate_bps, fab.latency_s, fab.burst_bytes, loss, size, runs)


def simulated(transport: Transport, rate_bps: float, latency_s: float, burst_bytes: int, loss: float, size: int,
              runs: int) -> dict[str, Any]:  # fmt: skip
    """``runs`` seeds of one message from ``s`` to ``r0`` on the star: median, mean and p95 ms and the share over
    ``SLOW_S``, with what they were simulated on (for ``--rescore``)."""
    graph = star(rate_bps, latency_s, loss, burst_bytes)
    times = sorted(t for seed in range(runs) for t in simulate(graph, transport, "fan-out", 1, size, seed))
    return {"runs": runs, "median_ms": statistics.median(times) * 1e3, "mean_ms": statistics.fmean(times) * 1e3,
            "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))] * 1e3,
            "slow_share": sum(t > SLOW_S for t in times) / len(times), "latency_s": latency_s,
            "burst_bytes": burst_bytes, "host_rate_bps": transport.host_rate_bps,
            "transport": transport.model_dump()}  # fmt: skip


def rescore(path: Path, fields: list[str], runs: int) -> int:
    """``--rescore``: a JSON of this bench's, its messages against the model as the code has it now (with
    ``--transport``), on the fabric it recorded."""
    try:
        doc = json.loads(path.read_text())
        m = doc["model"]
        recorded = Transport(**m.get("transport", {"host_rate_bps": m["host_rate_bps"]}))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a recorded transport out of range: a ValueError
        print(f"loss_tails: --rescore {path}: not a JSON this bench wrote ({str(exc).splitlines()[0]})",
              file=sys.stderr)  # fmt: skip
        return 2
    if (transport := transport_of(fields, "loss_tails", recorded)) is None:
        return 2
    try:
        model = simulated(transport, doc["rate_bps"], m["latency_s"], m["burst_bytes"], doc["loss"],
                          doc["size_bytes"], runs)  # fmt: skip
        slow = sum(m[0] > SLOW_S * 1e3 for m in doc["messages"]) / len(doc["messages"])
        line = comparison(doc, model, slow, len(doc["messages"]))  # its recorded mean: a number above 0
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        print(f"loss_tails: --rescore {path}: not a JSON this bench wrote ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else 'no messages'})", file=sys.stderr)  # fmt: skip
        return 2
    print(line)
    return 0


def comparison(summary: dict[str, Any], model: dict[str, Any], slow_share: float, trials: int) -> str:
    """The model's line: its median, mean and p95, the error of its mean, how many waited a timer, and how likely
    so many or fewer-or-more (two-sided) measured messages would wait one at the simulated share (``binomial_p``):
    a few timers in a few hundred messages, the count judges the share where the mean cannot."""
    error = (model["mean_ms"] - summary["mean_ms"]) / summary["mean_ms"] * 100
    slow = round(slow_share * trials)
    return (f"the model, {model['runs']} runs: median {model['median_ms']:.2f} ms, mean {model['mean_ms']:.2f} ms, "
            f"p95 {model['p95_ms']:.2f} ms; error of the mean {error:+.1f} %; over {SLOW_S * 1e3:.0f} ms: "
            f"{model['slow_share']:.2%} simulated, {slow_share:.2%} measured ({slow} of {trials}; p = "
            f"{binomial_p(slow, trials, model['slow_share']):.2f} at the simulated share)")  # fmt: skip


def binomial_p(k: int, n: int, share: float) -> float:
    """Two-sided exact binomial test: the probability, at ``share``, of a count no more likely than ``k`` of ``n``."""
    if share <= 0 or share >= 1:
        return 1.0 if k == round(share * n) else 0.0
    log = lambda j: (math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)  # noqa: E731
                     + j * math.log(share) + (n - j) * math.log1p(-share))  # fmt: skip
    logs = [log(j) for j in range(n + 1)]
    return min(1.0, sum(math.exp(x) for x in logs if x <= logs[k] + 1e-9))


def report(args: argparse.Namespace, summary: dict[str, Any]) -> str:
    how = "each on a new connection" if args.new_connections else "one kept connection"
    head = f"{summary['trials']} messages of {args.size:,} B at {args.rate_mbit:g} Mbit/s, loss {args.loss:g}, {how}"
    lines = [f"{head}: median {summary['median_ms']:.2f} ms, mean {summary['mean_ms']:.2f} ms, "
             f"p95 {summary['p95_ms']:.2f} ms",
             "class     flows   share  median ms   mean ms    max ms   of mean"]  # fmt: skip
    for name, c in summary["classes"].items():
        lines.append(f"{name:8} {c['trials']:6d} {c['share']:7.1%} {c['median_ms']:10.2f} {c['mean_ms']:9.2f} "
                     f"{c['max_ms']:9.2f} {c['part_of_mean_ms']:9.3f}")  # fmt: skip
    if (fit := summary["per_resent"]) is not None:
        lines.append(f"no timer ({fit['messages']} messages, {fit['mean_resent']:.2f} segments resent each): "
                     f"{fit['clean_ms']:.2f} ms + {fit['slope_ms']:.3f} ms per segment resent")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate-mbit", type=in_range(0.1, 40_000, float), default=1000.0, help="every link's rate")
    ap.add_argument("--loss", type=in_range(0, 0.49, float), default=0.01,
                    help="each frame's loss probability, per link direction")  # fmt: skip
    ap.add_argument("--size", type=in_range(1, 1 << 30), default=65536, help="each message's bytes")
    ap.add_argument("--trials", type=in_range(1, 100_000), default=300, help="messages")
    ap.add_argument("--sim-runs", type=in_range(1, 100_000), default=SIM_RUNS, help="the message simulated, seeds")
    ap.add_argument(
        "--new-connections",
        action="store_true",
        help="each message on a connection of its own, opened just before (as bench/net_fidelity.py's "
        "flows are); default: every message on one kept connection (as the twin's nodes keep theirs)",
    )
    ap.add_argument("--host-rate-bps", type=in_range(1e6, 1e12, float), metavar="BPS",
                    help="the sending kernel's rate the model is given (default: measured here, ~8 s; a kept JSON's "
                         "model.host_rate_bps)")  # fmt: skip
    ap.add_argument("--json", type=out_json, help="write the summary here (checked before anything is measured)")
    ap.add_argument("--rescore", type=Path, metavar="JSON",
                    help="no measuring: a JSON this bench wrote, its messages against the model as the code has it "
                         "now (with --transport), on the fabric it recorded; no root needed")  # fmt: skip
    ap.add_argument(
        "--transport",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="with --rescore: the simulated transport's fields (sim.scenario.Transport), e.g. rto_min_s=0",
    )
    args = ap.parse_args()
    if args.rescore is not None:
        return rescore(args.rescore, args.transport, args.sim_runs)
    if (why := unavailable()) is not None:
        print(f"loss_tails: {why}", file=sys.stderr)
        return 2
    load_start = os.getloadavg()[0]
    try:
        model = modelled(args.rate_mbit * 1e6, args.loss, args.size, args.sim_runs, args.host_rate_bps)
        with Fabric(star(args.rate_mbit * 1e6, loss=args.loss)) as fabric:
            results = measure(fabric, args.size, args.trials, args.new_connections)
            steered = args.loss > 0 and fabric.in_order  # a lossy link's frames kept in order (``hw.netns._steer``)
    except NetnsUnavailable as exc:  # e.g. a kernel without nf_tables' netdev family, for the loss
        print(f"loss_tails: {exc}", file=sys.stderr)
        return 2
    summary = summarize(results)
    summary["model"] = model
    summary.update({"rate_bps": args.rate_mbit * 1e6, "loss": args.loss, "size_bytes": args.size,
                    "new_connections": args.new_connections, "steered": steered, "load_start": load_start,
                    "load_end": os.getloadavg()[0]})  # fmt: skip
    print(report(args, summary))
    print(comparison(summary, model, sum(t > SLOW_S for t, _, _ in results) / len(results), len(results)))
    print(f"load average {load_start:.2f} -> {summary['load_end']:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
