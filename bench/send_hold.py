"""How long a blocking send holds its sender on the netns backend, and how busy it keeps it (issue 18).

The model's sender hands a message to its kernel and goes on at once when the message fits the socket's send
buffer (``Transport.send_buffer_bytes``, sim/model.py ``_distribute_sequential``). In the twin's netns runs the
aggregator's next message started a median 8.5 ms after the last was sealed, for a 9.8 ms transfer
(docs/twin-validation.md, "Stop 81"). This bench isolates that: paper-3node's fabric as namespaces (hw/netns.py
``Fabric``), one kept TCP connection from pi-1 to pi-2, a reader in a process of its own. Every ``--gap-s`` (the
connection idle between messages, as between rounds) the sender ``sendall``s one message of ``--bytes`` and
records:

- how long ``sendall`` held it, and when the reader had the whole message (``time.perf_counter``: one clock in
  both processes);
- the CPU time the sending thread used meanwhile, and the reader's for the message (``time.thread_time``): over
  veth the kernel's work for a packet, the receiving end's included, can run in the context that sends it; and
  the whole machine's busy time (softirq work no thread's CPU time counts), whose rate per byte is the kernel's
  stage in the netns cells (hw/sendcpu.py);
- the bytes not yet sent when ``sendall`` returned (``TIOCOUTQ``) and the socket's ``SO_SNDBUF``.

``--bandwidth-bps`` gives every link another rate: where the sender is held depends on it (docs/twin-validation.md,
"Stop 82"). It prints each one's median, min and max over the messages (the first two left out: the window
opening), and the machine's load before and after. Needs root (namespaces); says so in one line without it.
``--preset`` gives every link a preset's rate, latency, jitter and loss (the twin's Wi-Fi cells: ``wifi-5ghz``).
Run: python bench/send_hold.py [--messages 30] [--gap-s 0.08] [--bytes 1004382] [--bandwidth-bps 1e8] [--preset P]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import astuple
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from hw.netns import unavailable
from hw.sendcpu import MESSAGE_BYTES, WARM_UP, Send, cpu_rate_bps, timed_sends
from sim.errors import UserError
from sim.loading import in_range
from sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "paper-3node.yaml"
COLUMNS = ("sendall held, ms", "arrived after, ms", "sender's CPU, ms", "reader's CPU, ms", "unsent at return, B",
           "SO_SNDBUF, B")  # fmt: skip
TIMES = 4  # the columns in seconds (printed in ms)


def measure(messages: int, gap_s: float, nbytes: int, bandwidth_bps: float | None = None,
            preset: str | None = None) -> list[Send]:  # fmt: skip
    """One ``Send`` per message over paper-3node's links from pi-1 to pi-2 or, with ``preset``, links of that preset
    (their latency, jitter and loss too), and with ``bandwidth_bps`` of that rate."""
    sets = [f"deployment.network.links.*.preset={preset}"] if preset else []
    sets += [f"deployment.network.links.*.bandwidth_bps={bandwidth_bps:g}"] if bandwidth_bps else []
    return timed_sends(load_scenario(SCENARIO, sets).graph(), "pi-1", "pi-2", messages, gap_s, nbytes)


def summary(rows: list[Send]) -> list[tuple[str, float, float, float]]:
    """(column, median, min, max) over the rows past the warm-up; times in ms."""
    kept = [astuple(row) for row in rows[WARM_UP:] or rows]
    out = []
    for k, name in enumerate(COLUMNS):
        scale = 1e3 if k < TIMES else 1.0
        values = [row[k] * scale for row in kept]
        out.append((name, statistics.median(values), min(values), max(values)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=in_range(WARM_UP + 1, 10_000), default=30, help="messages sent (default 30)")
    ap.add_argument("--gap-s", type=in_range(0.0, 10.0, float), default=0.08,
                    help="idle seconds before each message (default 0.08, a round's)")  # fmt: skip
    ap.add_argument("--bytes", type=in_range(1, 1 << 28), default=MESSAGE_BYTES,
                    help=f"a message's bytes (default {MESSAGE_BYTES:,})")  # fmt: skip
    ap.add_argument("--bandwidth-bps", type=in_range(1e6, 1e11, float), default=None,
                    help="every link's rate (default: paper-3node's, a gigabit)")  # fmt: skip
    ap.add_argument("--preset", default=None, help="every link of this preset (sim/presets.py), e.g. wifi-5ghz")
    args = ap.parse_args()
    if (why := unavailable()) is not None:
        ap.error(f"needs network namespaces: {why}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
    try:
        rows = measure(args.messages, args.gap_s, args.bytes, args.bandwidth_bps, args.preset)
    except (OSError, UserError) as exc:  # a namespace that would not build, a reader gone, a send that timed out
        raise SystemExit(f"send_hold.py: {exc}") from None
    sent = f"{len(rows) - WARM_UP} messages of {args.bytes:,} bytes"
    rate = f"{args.bandwidth_bps / 1e6:g} Mbit/s links" if args.bandwidth_bps else "its gigabit links"
    rate += f", preset {args.preset}" if args.preset else ""
    print(f"{sent}, pi-1 -> pi-2 of paper-3node ({rate}), {args.gap_s:g} s apart:")
    for name, median, lo, hi in summary(rows):
        print(f"  {name:22s} median {median:12.2f}   min {lo:12.2f}   max {hi:12.2f}")
    kept = rows[WARM_UP:] or rows
    busy_ms = 1e3 * sum(r.machine_cpu_s for r in kept) / len(kept)
    print(f"the machine's CPU per message: {busy_ms:.2f} ms (every core's busy time, send to arrival); the kernel as a "
          f"stage: {cpu_rate_bps(kept, args.bytes) / 1e9:.3f} Gbit/s of wire bytes per second of it, the cores' speed "
          f"probe {statistics.median(r.probe_us for r in kept):.1f} µs (hw/sendcpu.py; the netns cells' "
          "Transport.host_rate_bps)")  # fmt: skip
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
