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
  veth the kernel's work for a packet, the receiving end's included, can run in the context that sends it;
- the bytes not yet sent when ``sendall`` returned (``TIOCOUTQ``) and the socket's ``SO_SNDBUF``.

``--bandwidth-bps`` gives every link another rate: where the sender is held depends on it (docs/twin-validation.md,
"Stop 82"). It prints each one's median, min and max over the messages (the first two left out: the window
opening), and the machine's load before and after. Needs root (namespaces); says so in one line without it.
Run: python bench/send_hold.py [--messages 30] [--gap-s 0.08] [--bytes 1004382] [--bandwidth-bps 1e8]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import statistics
import struct
import sys
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from hw.netns import Fabric, inside, unavailable
from sim.errors import UserError
from sim.loading import in_range
from sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "paper-3node.yaml"
MESSAGE_BYTES = 1_004_382  # a 250 k-parameter model's record as the twin sends it (the netns cells' size)
WARM_UP = 2  # messages left out of the statistics
STAMP = struct.Struct("dd")  # when the reader had the message, and its CPU time for it
COLUMNS = ("sendall held, ms", "arrived after, ms", "sender's CPU, ms", "reader's CPU, ms", "unsent at return, B",
           "SO_SNDBUF, B")  # fmt: skip
TIMES = 4  # the columns in seconds (printed in ms)


def _reader(conn: socket.socket, messages: int, nbytes: int, stamps: int) -> None:
    """In the forked reader: read each message whole, stamp when it had it."""
    buf = bytearray(1 << 20)
    for _ in range(messages):
        got, cpu0 = 0, time.thread_time()
        while got < nbytes:
            n = conn.recv_into(buf, min(len(buf), nbytes - got))
            if not n:
                return
            got += n
        os.write(stamps, STAMP.pack(time.perf_counter(), time.thread_time() - cpu0))


def _unsent_bytes(sock: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])


Row = tuple[float, float, float, float, int, int]


def measure(messages: int, gap_s: float, nbytes: int, bandwidth_bps: float | None = None) -> list[Row]:
    """One row per message: (held s, arrived s, sender CPU s, reader CPU s, unsent bytes, SO_SNDBUF bytes), over
    paper-3node's links or, with ``bandwidth_bps``, links of that rate."""
    sets = [f"deployment.network.links.*.bandwidth_bps={bandwidth_bps:g}"] if bandwidth_bps else []
    s = load_scenario(SCENARIO, sets)
    rows = []
    with Fabric(s.graph()) as fabric:
        with inside(fabric.namespace("pi-2")):
            listener = socket.create_server((fabric.address("pi-2"), 0))
        with inside(fabric.namespace("pi-1")):
            sender = socket.create_connection(listener.getsockname(), timeout=10)
        receiver, _ = listener.accept()
        listener.close()
        for c in (sender, receiver):
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stamps_r, stamps_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                sender.close()
                _reader(receiver, messages, nbytes, stamps_w)
            finally:
                os._exit(0)
        os.close(stamps_w)
        receiver.close()
        body = bytes(nbytes)
        try:
            for _ in range(messages):
                time.sleep(gap_s)
                cpu0, t0 = time.thread_time(), time.perf_counter()
                sender.sendall(body)
                t1, cpu1 = time.perf_counter(), time.thread_time()
                unsent, sndbuf = _unsent_bytes(sender), sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                stamp = os.read(stamps_r, STAMP.size)
                if len(stamp) < STAMP.size:
                    raise OSError("the reader process ended before the message arrived")
                arrived, reader_cpu = STAMP.unpack(stamp)
                rows.append((t1 - t0, arrived - t0, cpu1 - cpu0, reader_cpu, unsent, sndbuf))
        finally:
            sender.close()
            os.waitpid(pid, 0)
            os.close(stamps_r)
    return rows


def summary(rows: list[Row]) -> list[tuple[str, float, float, float]]:
    """(column, median, min, max) over the rows past the warm-up; times in ms."""
    kept = rows[WARM_UP:] or rows
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
    args = ap.parse_args()
    if (why := unavailable()) is not None:
        ap.error(f"needs network namespaces: {why}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
    try:
        rows = measure(args.messages, args.gap_s, args.bytes, args.bandwidth_bps)
    except (OSError, UserError) as exc:  # a namespace that would not build, a reader gone, a send that timed out
        raise SystemExit(f"send_hold.py: {exc}") from None
    sent = f"{len(rows) - WARM_UP} messages of {args.bytes:,} bytes"
    rate = f"{args.bandwidth_bps / 1e6:g} Mbit/s links" if args.bandwidth_bps else "its gigabit links"
    print(f"{sent}, pi-1 -> pi-2 of paper-3node ({rate}), {args.gap_s:g} s apart:")
    for name, median, lo, hi in summary(rows):
        print(f"  {name:22s} median {median:12.2f}   min {lo:12.2f}   max {hi:12.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
