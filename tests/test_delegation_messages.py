"""The aggregator's job messages to its crypto workers (hw/node/delegation.py): packed and unpacked whole, at the
sizes of a grant and of a model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hw.channel import SecurityError
from hw.node import delegation
from hw.node.delegation import pack, unpack


@pytest.mark.parametrize("payload_bytes", [0, 1000, 4_000_004])
def test_a_packed_message_unpacks_to_its_fields(payload_bytes):
    model = np.frombuffer(os.urandom(payload_bytes), np.uint8).copy()
    floats = memoryview(model.view(np.float32)) if payload_bytes % 4 == 0 else b""  # 4-byte items: sized in bytes
    fields = [b"client-1", bytearray(b"key"), (b"head", model.data.cast("B"), b"tail"), floats, b""]
    buf = pack((1, 2, 3, 4, 5), fields)
    (head, got) = unpack(memoryview(buf), len(fields))
    assert head == (1, 2, 3, 4, 5)
    assert bytes(got[0]) == b"client-1" and bytes(got[1]) == b"key"
    assert bytes(got[2]) == b"head" + model.tobytes() + b"tail"  # a field of parts is one field
    assert bytes(got[3]) == (model.tobytes() if payload_bytes % 4 == 0 else b"") and bytes(got[4]) == b""
    assert len(buf) == delegation._HEAD.size + 4 * len(fields) + sum(len(bytes(g)) for g in got)


def test_a_message_cut_short_is_refused():
    buf = pack((1, 0, 0, 0, 0), [b"abc", os.urandom(4_000_000)])
    with pytest.raises(SecurityError, match="delegation"):
        unpack(memoryview(buf)[:-1], 2)
