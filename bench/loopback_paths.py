"""A message over TCP loopback, timed as ``pqtwin calibrate`` times it and as the twin's nodes carry it (issue 9).

The profile's ``net.loopback`` (hw/calibrate.py ``Loopback``) sends to a reader *thread of the same process*
that reads into a reused buffer. The twin's pods on one host are *separate processes*, and a node reads each
record into a fresh buffer of the record's size (hw/channel.py ``_read_exact``: a zeroed ``bytearray`` whose
pages fault in as the kernel copies into them). This bench times both paths at the calibration's sizes, from
the send to the last byte in the reader's hands, alternating the two so the host's state hits both alike:

- ``calibrate``: hw/calibrate.py's ``Loopback.send`` itself;
- ``node``: a forked reader process that reads the length-prefixed body as ``_read_exact`` does and stamps the
  time it had it all (``time.perf_counter`` is the same clock in both processes).

Each size's median and p90 over ``--samples`` sends, the node's over the calibration's as a ratio, and the
machine's load before and after. Run: python bench/loopback_paths.py [--samples N]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from hw import tcp
from hw.calibrate import Loopback
from sim.loading import in_range

SIZES_BYTES = (64, 1024, 16384, 131072, 262144, 524288, 1048576, 4194304)  # hw/calibrate.py's sizes
LENGTH = struct.Struct("!Q")
STAMP = struct.Struct("!d")


class NodePath:
    """A sender here and a reader in a forked process, reading each body as a node does."""

    def __init__(self) -> None:
        srv = tcp.listener(("127.0.0.1", 0), tcp.CALIBRATED)
        self.stamps, stamp_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the reader: one connection, until it closes
            conn, _ = srv.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while head := conn.recv(LENGTH.size, socket.MSG_WAITALL):
                (n,) = LENGTH.unpack(head)
                view, got = memoryview(bytearray(n)), 0  # hw/channel.py ``_read_exact``
                while got < n:
                    got += conn.recv_into(view[got:], n - got)
                os.write(stamp_w, STAMP.pack(time.perf_counter()))
            os._exit(0)
        os.close(stamp_w)
        self.tx = tcp.dial(srv.getsockname(), tcp.CALIBRATED)
        self.tx.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        srv.close()

    def send(self, body: bytes) -> float:
        """Seconds from the send to the reader holding the whole body."""
        t0 = time.perf_counter()
        self.tx.sendmsg([LENGTH.pack(len(body)), body])
        (t1,) = STAMP.unpack(os.read(self.stamps, STAMP.size))
        return t1 - t0

    def close(self) -> None:
        self.tx.close()
        os.waitpid(self.pid, 0)
        os.close(self.stamps)


def timed(fn: object, body: bytes) -> float:
    t0 = time.perf_counter()
    fn(body)  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=in_range(1, 100_000), default=40, help="sends per size and path (default 40)")
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
    calib, node = Loopback(), NodePath()
    print(f"{'bytes':>9} {'calibrate p50':>14} {'p90':>9} {'node p50':>10} {'p90':>9} {'node/calibrate':>15}")
    try:
        for n in SIZES_BYTES:
            body = os.urandom(n)
            a, b = [], []
            for _ in range(args.samples):  # alternate: drift hits both alike
                time.sleep(0.002)  # each send from idle, as a node's messages come
                a.append(timed(calib.send, body))
                time.sleep(0.002)
                b.append(node.send(body))
            pa, pb = np.percentile(a, [50, 90]) * 1e6, np.percentile(b, [50, 90]) * 1e6
            row = f"{n:>9} {pa[0]:>11.1f} us {pa[1]:>6.1f} us {pb[0]:>7.1f} us {pb[1]:>6.1f} us"
            print(f"{row} {pb[0] / pa[0]:>14.2f}x")
    finally:
        node.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
