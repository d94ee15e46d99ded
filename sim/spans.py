"""Spans: one row per timed activity. The simulator and the hardware twin both write this format.

Columns (``SPAN_SCHEMA``): replication, round, pod, host, phase, op, start_s, end_s, queue_wait_s, bytes.

- ``round`` 0 holds set-up work (session handshakes before the first round); telemetry rows carry the
  round that was running when the frame was sent.
- ``phase`` is one of ``PHASES``. Two phases are markers, one row per round: ``round`` spans a whole
  round (model distribution start to aggregated model), ``distribution`` spans distribution start to the
  last client holding the verified model.
- ``op`` is a profile operation (``ML-DSA-65.sign``), ``transfer`` (a message crossing the network;
  ``queue_wait_s`` is its total wait in link queues and ``bytes`` its size) or ``frame`` (a telemetry frame
  from emission to decryption at its pod).
- ``queue_wait_s`` is time spent waiting for a worker or core (or link) before service started;
  ``end_s - start_s`` includes it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SPAN_SCHEMA = pa.schema(
    [
        ("replication", pa.int32()),
        ("round", pa.int32()),
        ("pod", pa.string()),
        ("host", pa.string()),
        ("phase", pa.string()),
        ("op", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("queue_wait_s", pa.float64()),
        ("bytes", pa.int64()),
    ]
)
COLUMNS = SPAN_SCHEMA.names

PHASES = (
    "handshake",  # session establishment (KEM + signatures)
    "distribute",  # aggregator side: serialise, sign, encrypt and send the global model
    "receive",  # client side: decrypt, verify, deserialise the global model
    "train",  # client local training
    "upload",  # client side: serialise, sign, encrypt and send the update
    "verify",  # aggregator side: decrypt, verify, deserialise updates
    "aggregate",  # FedAvg
    "telemetry",  # device frames
    "round",  # marker
    "distribution",  # marker
)
MARKERS = ("round", "distribution")

Row = tuple[int, int, str, str, str, str, float, float, float, int]


def to_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=COLUMNS)


def write(df: pd.DataFrame, path: Path) -> None:
    """Write spans atomically (a partial file never appears under the final name)."""
    table = pa.Table.from_pandas(df[COLUMNS], schema=SPAN_SCHEMA, preserve_index=False)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read(path: Path) -> pd.DataFrame:
    return pq.read_table(path, schema=SPAN_SCHEMA).to_pandas()


def validate_frame(df: pd.DataFrame) -> list[str]:
    """Problems that make a spans table unusable (used on hardware-twin output too)."""
    problems = [f"missing column {c!r}" for c in COLUMNS if c not in df.columns]
    if problems:
        return problems
    if (df.end_s < df.start_s).any():
        problems.append("a span ends before it starts")
    if (df.queue_wait_s < 0).any():
        problems.append("negative queue_wait_s")
    if unknown := set(df.phase) - set(PHASES):
        problems.append(f"unknown phases {sorted(unknown)}")
    return problems
