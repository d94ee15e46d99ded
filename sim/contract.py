"""The contract between the simulator and the hardware twin: the files of a run directory and what they mean.

sim and hw share this module (plus ``Scenario`` and ``Profile``) and nothing else; hw imports it, never
the reverse. Everything that reads or writes a run directory goes through the names here:

- ``SpanRow`` — one timed activity; ``SPAN_SCHEMA`` its Arrow schema, ``PHASES`` the phases it may carry.
- ``RunLayout`` — the file and folder names of a run directory.
- ``Summary`` — ``summary.json``: written from and read into this model, by sim, the twin, compare and the app.
- ``atomic_write`` — every result file appears whole or not at all.
- ``phase_extents``, ``round_segments`` and ``core_utilisation`` — the rules derived from spans that several readers
  need.

Span semantics:

- ``round`` 0 holds set-up work (session handshakes before the first round); telemetry rows carry the
  round that was running when the frame was sent.
- ``phase`` is one of ``PHASES``. Two phases are markers, one row per round: ``round`` spans a whole
  round (model distribution start to aggregated model; op ``failed`` if the quorum was missed),
  ``distribution`` spans distribution start to the last client holding the verified model.
- ``op`` is a profile operation (``ML-DSA-65.sign``), ``transfer`` (a message crossing the network, or
  the host's loopback between pods on one host; ``bytes`` its size) or ``frame`` (a telemetry frame from
  emission to decryption at its pod; ``queue_wait_s`` its waits in link queues).
- ``queue_wait_s`` is time spent waiting for a worker or core (or link) before service started;
  ``end_s - start_s`` includes it.
- A transfer's ``queue_wait_s`` (simulator) is the sum, over its segments and the links each crosses, of the
  time the segment waited while the link served *other* messages (a segment behind its own message's earlier
  segments is part of that message's serialisation, not a wait), plus any wait for its job before it was
  sent. So ``end_s - start_s - queue_wait_s`` is the message's time on an otherwise idle path: serialisation
  (segments pipelined across hops), propagation, jitter and resends. Waits of segments that overlap in time
  can be absorbed by the pipeline (a later, slower hop would have held the segment anyway), so under load
  that difference is at most the idle-path time, equal to it when no wait was absorbed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, get_args

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# --- spans -------------------------------------------------------------------------------------------


class SpanRow(NamedTuple):
    """One timed activity (a row of spans.parquet); field order is the column order."""

    replication: int
    round: int
    pod: str
    host: str
    phase: str
    op: str
    start_s: float
    end_s: float
    queue_wait_s: float
    bytes: int


COLUMNS: tuple[str, ...] = SpanRow._fields


@cache
def span_schema() -> pa.Schema:
    """``SPAN_SCHEMA``: pandas and pyarrow load when spans become a table, not with the model (a run's worker
    processes fork before the parent loads them, sim/runner.py)."""
    import pyarrow as pa

    schema = pa.schema(
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
    assert list(COLUMNS) == schema.names, "SpanRow and SPAN_SCHEMA must list the same columns"
    return schema


def __getattr__(name: str) -> Any:
    if name == "SPAN_SCHEMA":
        return span_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
FL_PHASES = tuple(p for p in PHASES if p not in (*MARKERS, "telemetry"))
WIRE_OPS = ("transfer", "frame")  # rows that are messages (over links or a host's loopback), not CPU work

# The two processing modes a round runs in; a run may alternate them: the twin's ``--mode both`` (hw/modes.py) and
# the simulator's ``alternating`` (sim/runner.py), which simulates such a run as one, its connections aging across
# both modes' rounds as the twin's do.
ROUND_MODES = ("sequential", "concurrent")
ALTERNATING = "alternating"
ALTERNATING_MODES = ("both", ALTERNATING)


def round_mode(mode: str, r: int) -> str:
    """The mode round ``r`` (from 1) runs in: ``mode`` itself, or in a run that alternates them (``ALTERNATING_MODES``)
    sequential and concurrent rounds in ABBA order (S C C S S C ...), so the two modes share the host's state round
    by round and a drift through the run weighs on both alike: paired (``sim.alternating``)."""
    if mode not in ALTERNATING_MODES:
        return mode
    return "concurrent" if (r - 1) % 4 in (1, 2) else "sequential"  # each block of four: S C C S


# The twin's record on the wire (hw/channel.py asserts it): type (1) | sequence (8) | send time (8) | length (4),
# then the body; AEAD nonces are the sequence numbers, so a sealed body adds only the tag to its plaintext.
RECORD_HEADER_BYTES = 21
SIGNATURE_LENGTH_BYTES = 2  # after a variable-size signature (Falcon) in a signed message: its length
# A job for a crypto worker process and its answer (hw/node/delegation.py): a 15-byte head, length-prefixed
# fields; a job carries the client's name, the record's key material (key, nonce prefix, session key) and a
# record header; an answer a record header too (of the client's record, or of the one sealed for the client).
JOB_HEAD_BYTES = 15 + 6 * 4
ANSWER_HEAD_BYTES = 15 + 2 * 4


def to_frame(rows: list[SpanRow] | list[tuple[Any, ...]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=list(COLUMNS))


def spans_bytes(df: pd.DataFrame) -> bytes:
    """Spans as Parquet bytes (what a pod prints to its log, what a file holds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df[list(COLUMNS)], schema=span_schema(), preserve_index=False), sink)
    return bytes(sink.getvalue().to_pybytes())


def rows_bytes(rows: list[SpanRow]) -> bytes:
    """``spans_bytes(to_frame(rows))`` straight from the rows, without pandas: a twin node's spans at its end.
    Its columns are built from their buffers: ``pyarrow.array`` imports pandas wherever it is installed (its pandas
    check), ~0.3 s of a fast core and ~0.8 s of a busy one, in every process of a run."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = span_schema()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    arrays = []
    for values, f in zip(columns, schema, strict=True):
        if pa.types.is_string(f.type):
            data = [str(v).encode() for v in values]
            offsets = np.zeros(len(data) + 1, np.int32)
            np.cumsum([len(d) for d in data], out=offsets[1:])
            buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
        else:
            buffers = [None, pa.py_buffer(np.asarray(values, dtype=_NUMPY_TYPES[str(f.type)]))]
        arrays.append(pa.Array.from_buffers(f.type, len(values), buffers))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink)
    return bytes(sink.getvalue().to_pybytes())


_NUMPY_TYPES = {"int32": "int32", "int64": "int64", "double": "float64"}  # ``rows_bytes``: SPAN_SCHEMA's numbers


def write_spans(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, spans_bytes(df))


def read_spans(path: Path) -> pd.DataFrame:
    """A spans file as a table of ``SPAN_SCHEMA``; ValueError with one line naming the file and its first
    problem (like ``read_model``): not readable as Parquet, a column missing, of a type that does not cast or
    with empty values, a time not finite, or what ``validate_spans`` refuses. Every reader of a run directory
    (compare, report, calibrate --from-run, hw energy, the app) turns it into the user's one-line error."""
    import pyarrow.compute as pc

    table = _span_table(path)
    for c, rows_bad in _not_text(table).items():
        raise ValueError(f"{path}: column {c!r} has values that are not text (UTF-8), {int(rows_bad.sum())} of them")
    for c in ("start_s", "end_s", "queue_wait_s"):
        times = table.column(c)
        if len(times) and (times.null_count or not pc.all(pc.is_finite(times)).as_py()):
            raise ValueError(f"{path}: {_NOT_FINITE[c]}")
    if empty := [c for c in COLUMNS if table.column(c).null_count]:
        raise ValueError(f"{path}: column {empty[0]!r} has empty values")
    df = table.to_pandas()
    if problems := validate_spans(df):
        raise ValueError(f"{path}: {problems[0]}")
    return df


_NOT_FINITE = {"start_s": "start_s or end_s is missing or not finite",
               "end_s": "start_s or end_s is missing or not finite",
               "queue_wait_s": "queue_wait_s is missing or not finite"}  # fmt: skip


def read_valid_spans(path: Path) -> tuple[pd.DataFrame, int, dict[str, int]]:
    """The rows of a *measured* spans file (a twin node's) that ``read_spans`` would accept one by one, each once:
    (those rows, the file's row count, {problem: rows left out for it}). ValueError (``read_spans``' line) only for
    a file that cannot be read as spans at all (not a regular file, not Parquet, a column missing or of a type that
    does not cast): one bad row (a span ending before it starts, a time not finite) cost the twin a node's whole
    spans file, and a run that finished every round reported none. A row the same as an earlier one
    (``duplicate_spans``) is left out too: it was counted twice."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _span_table(path)
    total = table.num_rows
    left_out: dict[str, int] = {}
    bad = pa.array([False] * total, type=pa.bool_())
    for c, rows_bad in _not_text(table).items():  # first: a damaged name cannot be read, nor compared
        row_bad = pa.array(rows_bad)
        _count(left_out, f"column {c!r} has values that are not text (UTF-8)", pc.and_(row_bad, pc.invert(bad)))
        bad = pc.or_(bad, row_bad)
    for c in ("start_s", "end_s", "queue_wait_s"):  # in read_spans' order: the first problem a row has names it
        row_bad = pc.invert(pc.fill_null(pc.is_finite(table.column(c)), False))
        _count(left_out, _NOT_FINITE[c], pc.and_(row_bad, pc.invert(bad)))
        bad = pc.or_(bad, row_bad)
    for c in COLUMNS:
        row_bad = pc.is_null(table.column(c))
        _count(left_out, f"column {c!r} has empty values", pc.and_(row_bad, pc.invert(bad)))
        bad = pc.or_(bad, row_bad)
    df = table.filter(pc.invert(bad)).to_pandas()
    keep = np.ones(len(df), dtype=bool)
    for problem, row_bad in span_row_problems(df):
        row_bad = row_bad & keep
        if n := int(row_bad.sum()):
            left_out[problem] = left_out.get(problem, 0) + n
        keep &= ~row_bad
    df = df[keep].reset_index(drop=True)
    if n := int((twice := duplicate_spans(df)).sum()):
        left_out[DUPLICATE_SPANS] = left_out.get(DUPLICATE_SPANS, 0) + n
        df = df[~twice].reset_index(drop=True)
    return df, total, left_out


SPAN_KEY = ("replication", "round", "pod", "host", "phase", "op", "start_s", "end_s")
DUPLICATE_SPANS = "spans the same as an earlier one (" + ", ".join(SPAN_KEY) + ")"


def duplicate_spans(df: pd.DataFrame) -> Any:
    """A boolean array: the rows whose ``SPAN_KEY`` an earlier row has. A measured run never holds two such rows
    (one activity timed once, to the nanosecond); a file written twice over, or a node's spans appended to a copy
    of themselves, does, and each of its rounds, spans and frames was counted twice by compare and calibrate
    --from-run. (A simulation may: two identical messages sent at one instant on twin links.)"""
    return df.duplicated(subset=list(SPAN_KEY), keep="first").to_numpy()


def without_duplicate_spans(df: pd.DataFrame, path: Path | str) -> tuple[pd.DataFrame, str | None]:
    """A measured run's spans with each ``SPAN_KEY`` once, and the warning that says how many were left out
    (None: none were)."""
    twice = duplicate_spans(df)
    if not (n := int(twice.sum())):
        return df, None
    return (df[~twice].reset_index(drop=True),
            f"{path}: {n:,} of {len(df):,} spans left out, each the same as an earlier one "
            f"({', '.join(SPAN_KEY)}): a measured run times each activity once")  # fmt: skip


def _not_text(table: Any) -> dict[str, Any]:
    """{string column: a boolean array of its rows that are not UTF-8} for the columns that have any: Parquet's
    reader does not check, and a byte flipped in a node's spans file (a pod name, an op) raised an ArrowException
    from deep in pandas when the run was summed up (``pqtwin hw recover``: an internal error)."""
    import numpy as np
    import pyarrow as pa

    found = {}
    for c in table.column_names:
        column = table.column(c)
        if not pa.types.is_string(column.type):
            continue
        try:
            column.validate(full=True)  # checks every string's UTF-8: the cheap answer for an intact column
            continue
        except pa.ArrowInvalid:
            pass
        values = column.cast(pa.binary()).to_pylist()
        rows_bad = np.array([v is not None and not _is_utf8(v) for v in values], dtype=bool)
        if rows_bad.any():
            found[c] = rows_bad
    return found


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _count(left_out: dict[str, int], problem: str, mask: Any) -> None:
    import pyarrow.compute as pc

    if n := int(pc.sum(mask).as_py() or 0):
        left_out[problem] = left_out.get(problem, 0) + n


def _span_table(path: Path) -> Any:
    """A spans file as an Arrow table of ``SPAN_SCHEMA``; ValueError naming the file when it cannot be read as
    spans at all (not a regular file, not Parquet, a column missing or of a type that does not cast)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sim.errors import UserError
    from sim.loading import require_regular

    try:
        require_regular(path, "a spans.parquet file")  # Parquet's reader blocks on a FIFO
    except UserError as exc:
        raise ValueError(f"{path}: cannot read spans ({exc.lines[0].removeprefix(f'{path}: ')})") from None
    try:
        with pq.ParquetFile(path) as footer:  # the columns and the row count, from one read of the footer
            names, rows = footer.schema_arrow.names, footer.metadata.num_rows
        if missing := [c for c in COLUMNS if c not in names]:
            raise ValueError(f"{path}: missing column {missing[0]!r}")
        if problem := _too_many_spans(rows):
            raise ValueError(f"{path}: {problem}")
        return pq.read_table(path, schema=span_schema())
    except (OSError, pa.ArrowException) as exc:  # ArrowNotImplementedError (a list column) is no ValueError
        raise ValueError(f"{path}: cannot read spans ({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None


# a span row read into a table: 210 B measured (read_spans of 2 M rows, peak RSS 116 -> 517 MB, 2026-12-06), and
# what its readers make of it beside (report, compare: ~1.1x); a spans file of a few MB can hold tens of millions
SPAN_READ_BYTES = 250


def _too_many_spans(rows: int) -> str | None:
    """Why a spans file of ``rows`` rows is not read here (reading it would need over half of this machine's
    memory: a small compressed file of one row repeated needed gigabytes), or None."""
    from sim.loading import machine_memory_bytes

    memory = machine_memory_bytes()
    if memory is None or rows * SPAN_READ_BYTES <= memory / 2:
        return None
    return (
        f"{rows:,} spans: reading them needs ~{rows * SPAN_READ_BYTES / 2**30:.1f} GiB, over half of this "
        f"machine's {memory / 2**30:.1f} GiB"
    )


MAX_SPAN_TIME_S = 1e9  # ~32 years: a simulated horizon is at most one (sim.scenario.MAX_HORIZON_S); a sum of such
# times stays finite, where a span at 1e308 s turned a mean into inf and a chart's scale into NaN


def span_row_problems(df: pd.DataFrame) -> list[tuple[str, Any]]:
    """(problem, a boolean array of the rows that have it) for each per-row rule of ``validate_spans``, in its
    order; ``df`` has every column (``validate_spans`` checks that first)."""
    too_far = (
        (df.start_s.abs() > MAX_SPAN_TIME_S) | (df.end_s.abs() > MAX_SPAN_TIME_S) | (df.queue_wait_s > MAX_SPAN_TIME_S)
    )
    unknown = ~df.phase.isin(PHASES)
    return [
        ("a span ends before it starts", (df.end_s < df.start_s).to_numpy()),
        ("negative queue_wait_s", (df.queue_wait_s < 0).to_numpy()),
        (f"a time beyond {MAX_SPAN_TIME_S:g} s (runs last at most a simulated year)", too_far.to_numpy()),
        ("negative bytes", (df["bytes"] < 0).to_numpy()),
        (f"unknown phases {sorted(set(df.phase[unknown]))}", unknown.to_numpy()),
    ]  # fmt: skip


def validate_spans(df: pd.DataFrame) -> list[str]:
    """Problems that make a spans table unusable (used on hardware-twin output too)."""
    problems = [f"missing column {c!r}" for c in COLUMNS if c not in df.columns]
    if problems:
        return problems
    return [problem for problem, rows in span_row_problems(df) if rows.any()]


def phase_extents(spans: pd.DataFrame) -> pd.DataFrame:
    """The extent of each FL phase in each round: max(end_s) − min(start_s) of its rows per (replication,
    round, phase), rounds > 0. Columns: replication, round, phase, start_s, end_s, extent_s."""
    fl = spans[(spans["round"] > 0) & spans.phase.isin(FL_PHASES)]
    ext = fl.groupby(["replication", "round", "phase"]).agg(start_s=("start_s", "min"), end_s=("end_s", "max"))
    return ext.assign(extent_s=ext.end_s - ext.start_s).reset_index()


# A round's milestones, in order: every client holds the verified model (the distribution marker's end), the last
# training step has ended, the last update has arrived at the aggregator, the round has ended (``round_segments``).
ROUND_SEGMENTS = ("received", "trained", "arrived", "closed")


def round_segments(spans: pd.DataFrame) -> pd.DataFrame:
    """Each completed round (op ``round``, rounds > 0) cut at its milestones (``ROUND_SEGMENTS``): the segment
    ``received`` runs from the round's start to every client holding its model, ``trained`` from there to the last
    ``train`` span's end, ``arrived`` to the last ``upload`` transfer's end, ``closed`` to the round's end (what the
    aggregator still verifies and aggregates). A milestone a round lacks (no training, a client dropped) is the one
    before it, and each is kept within [the one before, the round's end], so a round's segments are never negative
    and add up to its latency exactly: unlike the phases, which overlap across clients, the differences of their
    means add up to the difference of the rounds' means. Columns: replication, round, segment, segment_s."""
    import pandas as pd  # (lazily, as ``to_frame``: the model loads without it)

    keys = ["replication", "round"]
    rounds = spans[(spans.phase == "round") & (spans.op == "round") & (spans["round"] > 0)]
    rounds = rounds.groupby(keys).agg(start_s=("start_s", "min"), end_s=("end_s", "max"))
    if rounds.empty:
        return pd.DataFrame({"replication": pd.Series(dtype="int64"), "round": pd.Series(dtype="int64"),
                             "segment": pd.Series(dtype=str), "segment_s": pd.Series(dtype=float)})  # fmt: skip
    last = {
        "received": spans[spans.phase == "distribution"],
        "trained": spans[spans.phase == "train"],
        "arrived": spans[(spans.phase == "upload") & (spans.op == "transfer")],
    }
    at = rounds.start_s
    out = []
    for name in ROUND_SEGMENTS:
        if name == "closed":
            end = rounds.end_s
        else:
            ends = last[name].groupby(keys).end_s.max().reindex(rounds.index)
            end = ends.fillna(at).clip(lower=at, upper=rounds.end_s)
        out.append(pd.DataFrame({"segment": name, "segment_s": end - at}, index=rounds.index))
        at = end
    return pd.concat(out).reset_index()


def cpu_rows(spans: pd.DataFrame) -> pd.DataFrame:
    """Rows that are CPU work (not messages, not markers)."""
    return spans[~spans.op.isin(WIRE_OPS) & ~spans.phase.isin(MARKERS)]


def core_utilisation(spans: pd.DataFrame, cores: dict[str, int], duration_s: float,
                     host_of_row: pd.Series | None = None) -> dict[str, Utilisation]:  # fmt: skip
    """Busy fraction of each host's cores from the CPU spans of the pods on it (service time, without waits).

    ``host_of_row`` maps each row to a key of ``cores`` (default: the row's ``host``); a twin whose pods all
    share one machine passes a constant.
    """
    cpu = cpu_rows(spans)
    busy = cpu.end_s - cpu.start_s - cpu.queue_wait_s
    hosts = cpu.host if host_of_row is None else host_of_row.loc[cpu.index]
    by_host = busy.groupby(hosts).sum()
    out = {}
    for host, n in cores.items():
        frac = float(by_host.get(host, 0.0)) / (n * duration_s) if duration_s > 0 else 0.0
        out[host] = Utilisation(offered=frac, overloaded=frac >= 1.0)
    return out


# --- the run directory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLayout:
    """File and folder names of a run directory (the simulator writes the first four; the twin all)."""

    root: Path

    SPANS = "spans.parquet"
    SUMMARY = "summary.json"
    SCENARIO = "scenario.yaml"
    MODES = "modes.json"  # --mode both: concurrent vs sequential
    SERIES = "series.parquet"  # simulator: busy seconds of each shared link and host per time bin
    STATUS = "status.json"  # twin: how the run ended
    RUN_CONFIG = "run.json"  # twin: what the nodes run
    PROGRESS = "progress.json"  # twin: the aggregator's last finished round
    PIDS = "pids.json"  # twin (local): {process: pid} of the run's node processes
    NODE_SPANS = "spans"  # twin: spans/<pod>.parquet, one per process
    NODES = "nodes"  # twin: nodes/<pod>.json, each process's result
    KEYS = "keys"  # twin: keys/<pod>.json, published public keys
    LOGS = "logs"  # twin: logs/<pod>.log
    COMPARE = "compare"  # pqtwin compare's report
    PROFILES = "profiles"  # profiles/<name>.yaml: copies of the profiles scenario.yaml names (a portable run)
    SPEED_PROBE = "speed_probe.csv"  # twin: the cores' speed samples (hw/speed.py)
    SCHED_TRACE = "sched_trace.txt.gz"  # twin, as root: the scheduler's events (hw/schedtrace.py)
    ENERGY_MEASURED = "energy_measured.json"  # pqtwin hw energy: energy from a power log
    PROFILE_CHECK = "profile_check.json"  # twin: each node's calibrated vs the scenario's costs (hw/profilecheck.py)
    MANIFESTS = "manifests.yaml"  # twin on Kubernetes: the run's objects, Secrets redacted (hw/k8s/backend.py)

    @property
    def spans(self) -> Path:
        return self.root / self.SPANS

    @property
    def series(self) -> Path:
        return self.root / self.SERIES

    @property
    def summary(self) -> Path:
        return self.root / self.SUMMARY

    @property
    def scenario(self) -> Path:
        return self.root / self.SCENARIO

    @property
    def modes(self) -> Path:
        return self.root / self.MODES

    @property
    def status(self) -> Path:
        return self.root / self.STATUS

    @property
    def run_config(self) -> Path:
        return self.root / self.RUN_CONFIG

    @property
    def progress(self) -> Path:
        return self.root / self.PROGRESS

    @property
    def pids(self) -> Path:
        return self.root / self.PIDS

    def profile(self, name: str) -> Path:
        return self.root / self.PROFILES / f"{name}.yaml"

    def node_spans(self, pod: str) -> Path:
        return self.root / self.NODE_SPANS / f"{pod}.parquet"

    def node_journal(self, pod: str) -> Path:
        """spans/<pod>.journal: a node's spans as it goes, one JSON line per finished round (gone at its end)."""
        return self.root / self.NODE_SPANS / f"{pod}.journal"

    def node_result(self, pod: str) -> Path:
        return self.root / self.NODES / f"{pod}.json"

    def public_keys(self, pod: str) -> Path:
        return self.root / self.KEYS / f"{pod}.json"

    def log(self, pod: str) -> Path:
        return self.root / self.LOGS / f"{pod}.log"

    @classmethod
    def result_files(cls) -> tuple[str, ...]:
        return (cls.SPANS, cls.SUMMARY, cls.STATUS, cls.RUN_CONFIG, cls.SCENARIO, cls.PROGRESS, cls.MODES, cls.PIDS)

    @classmethod
    def extra_files(cls) -> tuple[str, ...]:
        """Files some runs write besides ``result_files``: a run into a directory replaces these too (a --force run
        that writes none left the earlier run's speed samples, which calibrate --from-run and compare read)."""
        return (cls.SERIES, cls.SPEED_PROBE, cls.SCHED_TRACE, cls.ENERGY_MEASURED, cls.PROFILE_CHECK, cls.MANIFESTS)

    @classmethod
    def result_dirs(cls) -> tuple[str, ...]:
        return (cls.NODE_SPANS, cls.NODES, cls.KEYS, cls.LOGS, cls.COMPARE, cls.PROFILES)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file so that it appears whole or not at all (a reader never sees half of it).

    The temporary file is created new (``O_EXCL``) under a name no one can guess: several processes and threads may
    write the same file (progress), and a name fixed in advance (the process id) was one a stranger could occupy
    beforehand (a directory of that name killed a node at its next progress). Its mode is a plain open's (the
    process's umask applied by the kernel).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f"{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            break
        except FileExistsError:  # 48 random bits taken: another name
            continue
    try:
        with open(fd, "wb", closefd=True) as f:
            f.write(data.encode() if isinstance(data, str) else data)
        tmp.replace(path)
    except BaseException:  # a full disk: leave no half-written temporary behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, default=float) + "\n")


# --- summary.json ------------------------------------------------------------------------------------


MAX_SUMMARY_NUMBER = 1e18  # no KPI of a run comes near (a year is 3e7 s; 1e18 bytes is an exabyte a replication);
# a sum of a million such values stays finite, where a mean of 1e30 or 1e308 did not say it was corrupt
MAX_COUNT = 2**63 - 1  # counts and seeds are int64 where they are stored (sim.scenario.MAX_SEED)
STRICT_READ = "summary.json read"  # the validation context ``read_summary`` gives: the checks of a file read


class _Model(BaseModel):
    """summary.json's parts. Built by the simulator and the twin from their own numbers (lax: numpy values);
    read back (``read_summary``) strictly: ``true`` is no number, no number is NaN, infinite or beyond
    ±MAX_SUMMARY_NUMBER, no count negative -- a damaged or hand-edited summary made report and compare print
    NaN intervals, a mean of 1.0 s from ``true`` and sums of 1e30 without a word."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _numbers_as_written(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(info.context, dict) and info.context.get(STRICT_READ) and (problem := _number_problem(value)):
            raise ValueError(problem)
        return value


def _number_problem(value: Any) -> str | None:
    """What a read summary's number (or a list or mapping of them) may not be; None if fine. Nested models
    check their own fields."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"not a finite number ({value})"
        return f"{value:g} is beyond ±{MAX_SUMMARY_NUMBER:g}" if abs(value) > MAX_SUMMARY_NUMBER else None
    if isinstance(value, int):
        return f"a count cannot be negative ({value})" if value < 0 else (
            f"{value} is beyond {MAX_COUNT}" if value > MAX_COUNT else None)  # fmt: skip
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    for key, item in items:
        if (problem := _number_problem(item)) is not None:
            return f"[{key!r}]: {problem}" if isinstance(key, str) else f"item {key}: {problem}"
    return None


M = TypeVar("M", bound=BaseModel)


class Stats(_Model):
    """A KPI's sample statistics and the 95 % CI of its mean (``ci_method`` says over what)."""

    mean: float | None
    p50: float | None
    p95: float | None
    ci95: tuple[float | None, float | None]
    n: int
    ci_method: str
    replication_means: list[float] = Field(default_factory=list)


class Utilisation(_Model):
    """How loaded a host's cores or a link direction were over a run of length T (``sim_time_s``).

    ``offered`` (simulator) = the work asked of the resource during [0, T) that the resource, serving nothing
    else, could have done by T, over its capacity × T; ``overloaded`` when ≥ 1. "Serving nothing else": an
    operation runs on one core from when it is asked, so it counts min(work, T − asked) core-seconds; a
    message's segments are serialised back to back on each link from when each asks it, so a message asked
    near the end counts only the serialisation that fits before T. Work asked but not yet due at T (a long
    training call or transfer cut off by the end of the run) does not make a resource overloaded; work asked
    faster than the resource serves does, however the run ends. ``busy`` (links) = serialisation completed
    by T over T. The twin measures no queues: its ``offered`` is the busy fraction of the CPU spans
    (``core_utilisation``).
    """

    offered: float
    overloaded: bool
    busy: float | None = None


class ApplicationBytes(_Model):
    """Bytes the application sent, per replication: every message delivered by the end of the run (a model or
    update, a handshake message, a job or answer of a crypto worker, a telemetry frame), counted once at its
    size as sent (record header, body, tag; ``transfer`` and ``frame`` spans), however many links it
    crossed and not counting resends. Messages between pods on one host count too: the application sends
    them, though they go through the host's loopback and on no link (``LinkBytes`` leaves them out)."""

    total: float
    by_phase: dict[str, float]


class LinkBytes(_Model):
    """Bytes the network's links carried, per replication: every segment counted on every link direction it
    crossed (hop-counted) and every time it was sent (resends included), for serialisations completed by the
    end of the run. ``by_link`` per link direction ("a->b", devices' access links included; links that
    carried nothing are left out), ``by_phase`` summed over the links. The simulator's; the twin cannot
    see its messages per hop and leaves ``Summary.link_bytes`` empty (None)."""

    total: float
    by_link: dict[str, float]
    by_phase: dict[str, float]


class Storm(_Model):
    """The start-up storm (sim/storm.py): every device's first session, as after a gateway reboot every device
    opens one within its first period. Times are from the run's start; a session is up when its responder has
    checked the initiator's last message (``handshake_s``'s end). Stats over replications unless said: the times
    over those where some device was up by the run's end, the backlog over all (none in the others)."""

    devices: int | float  # first sessions up by the run's end, per replication (mean; as ``Telemetry.frames``)
    of_devices: int  # the scenario's devices: where more than ``devices``, some were not up by the end
    up_s: Stats  # when each device's first session was up, pooled over the replications' devices
    all_up_s: Stats  # when the last device's first session was up: the storm's end
    peak_under_way: Stats  # most device handshakes (first or not) under way at once during the storm
    peak_by_pod: dict[str, Stats] = Field(default_factory=dict)  # the same per responding pod (``report_to``)
    # handshakes under way over the storm: (bin start s, mean count in the bin, mean over replications), bins of
    # equal width from 0 to the latest replication's end
    under_way: list[tuple[float, float]] = Field(default_factory=list)


class Telemetry(_Model):
    frames: int | float  # mean per replication, exact (sim.summary.mean_count: an int when it is whole)
    latency_s: Stats | None
    by_population: dict[str, Stats] = Field(default_factory=dict)
    # device sessions: handshake time (first message to the pod's last check) per population and in all; a
    # gateway reboot is every device's handshake at once (the start-up storm): its spread shows here
    handshake_s: Stats | None = None
    handshake_by_population: dict[str, Stats] = Field(default_factory=dict)
    sessions: int | float = 0  # mean per replication, as ``frames``
    storm: Storm | None = None  # the devices' first sessions (the simulator's; None without devices, and the twin)
    # "exact" (from every frame's span) or "sketch" (streaming: p50/p95 within 0.1 %, sim/sketch.py)
    quantiles: Literal["exact", "sketch"] = "exact"


class HostEnergy(_Model):
    """A host's energy per replication (sim/energy.py): idle power for the run plus its cores' work."""

    total_j: Stats  # over replications
    idle_j: float
    busy_j: float
    by_phase_j: dict[str, float]  # the busy part, by span phase


class DeviceEnergy(_Model):
    """One device of a population over the run (sim/energy.py), and the battery life at that duty cycle."""

    per_device_j: float  # mean over replications
    per_device_j_stats: Stats  # its 95 % CI over replications
    by_part_j: dict[str, float]  # mcu, radio_tx, radio_rx, sleep
    by_activity_j: dict[str, float]  # sessions (handshakes), frames, sleep
    average_power_w: float
    frames: float  # per device and replication
    sessions: float
    battery: str
    battery_life_days: float | None
    compute_modelled: bool  # False: the population names no profile, so its MCU's crypto costs nothing here


class Energy(_Model):
    # simulated, or (the twin) estimated from its measured spans with the same power models: not measured
    basis: Literal["simulated", "estimated from measured spans"] = "simulated"
    hosts: dict[str, HostEnergy] = Field(default_factory=dict)  # hosts whose profile has a power model
    per_round_j: Stats | None = None  # every priced host, per FL round (idle for the round's length + work)
    devices: dict[str, DeviceEnergy] = Field(default_factory=dict)  # populations with power and radio models


class Engine(_Model):
    """How the simulator computed the run (sim/telemetry.py): ``exact`` is false when telemetry would have
    delayed the foreground (FL, handshakes) somewhere; ``perturbation`` says where, by how much at most (s)
    and how many transmissions or jobs, summed over replications."""

    name: Literal["events", "vectorized"]
    exact: bool = True
    perturbation: dict[str, tuple[float, int]] = Field(default_factory=dict)
    frames_in_flight: int | float = 0  # mean per replication: emitted, not yet decrypted at the horizon
    windows: int = 0
    passes: int = 1  # the most SimPy passes a replication took (sim/runner.py replicate)
    hot_frames: int | float = 0  # mean per replication: frames SimPy computed in hot intervals (sim/telemetry.py)


class Dropout(_Model):
    round: int
    pod: str
    reason: str


class CpuSpeed(_Model):
    """How fast the cores ran during a measurement (hw/speed.py): percentiles of a fixed reference kernel's CPU
    time, sampled on every core. A wide spread (p90 / p10) means the host changed speed under the run."""

    probe_us_p10: float = Field(gt=0)
    probe_us_p50: float = Field(gt=0)
    probe_us_p90: float = Field(gt=0)
    samples: int = Field(ge=1)

    @property
    def spread(self) -> float:
        return self.probe_us_p90 / self.probe_us_p10


class TrainingProbe(_Model):
    """A reference training step timed alone on one core right after a run's rounds (hw/trainprobe.py
    ``training_probe``): the host's memory state the run's trainings met, which the speed probe (in a core's L1)
    does not see. A profile records the same step in the state its training price holds (``platform.
    training_probe_s``); their ratio re-prices training (hw/at_speed.py)."""

    parameters: int = Field(ge=1)
    samples: int = Field(ge=1)
    alone_s: float = Field(gt=0)
    steps: int = Field(ge=1)


class SchedWaits(_Model):
    """How long a twin run's threads waited for a core during its rounds (hw/schedtrace.py: the kernel's own
    scheduler events): runnable but not running, in total over its nodes (the device emulator and the run's own
    process, ``runner``, among them), and the part of it while some core ran nothing -- the waits the
    simulator's processor-sharing cores never make; and the CPU each node used, the harness's included."""

    window_s: float
    runnable_wait_s: float
    idle_core_wait_s: float
    by_node_wait_s: dict[str, float] = Field(default_factory=dict)
    by_node_cpu_s: dict[str, float] = Field(default_factory=dict)  # CPU each node's threads ran for in the window
    # the waits by how they began: "woken" (a wake-up queued the thread) or "preempted" (taken off its core,
    # still runnable); in all, and the part beside an idle core (empty in runs recorded before the split)
    by_cause_wait_s: dict[str, float] = Field(default_factory=dict)
    by_cause_idle_core_wait_s: dict[str, float] = Field(default_factory=dict)

    @property
    def runnable_wait_per_s(self) -> float:
        return self.runnable_wait_s / self.window_s if self.window_s > 0 else 0.0

    @property
    def idle_core_wait_per_s(self) -> float:
        """Seconds waited beside an idle core per second of rounds."""
        return self.idle_core_wait_s / self.window_s if self.window_s > 0 else 0.0


class MachineLoad(_Model):
    """How busy the machine was during a measured run (hw/machine.py): ``foreign_cpu_cores`` is the CPU that
    processes other than the twin's used, on average, in cores; ``cpu_speed`` how fast its cores ran, against
    ``calibrated_probe_us``, the same probe when the run's profile was calibrated; ``quiet`` says the
    measurement is clean (no neighbours, no steal, the cores as fast and as steady as when calibrated)."""

    cores: int
    loadavg_1m_start: float | None
    loadavg_1m_end: float | None
    twin_cpu_cores: float
    foreign_cpu_cores: float
    steal_fraction: float
    quiet: bool
    # measured: the CPU packages' energy over the run (Linux RAPL, /sys/class/powercap), None where unreadable
    package_energy_j: float | None = None
    cpu_speed: CpuSpeed | None = None  # None: not probed (a run before the probe existed, or too short)
    calibrated_probe_us: float | None = None  # None: the profile was not calibrated with the probe
    unsteady: bool = False  # the cores changed speed under the run, or ran at another speed than calibrated
    busy: bool = False  # neighbours or steal took CPU (the stronger reason when a run is both)
    sched: SchedWaits | None = None  # None: not traced (not root, no tracefs, or the trace missed the rounds)
    training_probe: TrainingProbe | None = (
        None  # None: not probed (a cluster, an unfinished run, from before the probe)
    )

    @property
    def speed_vs_calibration(self) -> float | None:
        """How fast the cores ran against when the profile was calibrated (0.6: 40 % slower); None if unknown."""
        if self.cpu_speed is None or self.calibrated_probe_us is None:
            return None
        return self.calibrated_probe_us / self.cpu_speed.probe_us_p50

    def cores_ran(self) -> str:
        """'cores ran at 0.83x their calibrated speed, varying 1.92x', or '' when not probed."""
        if self.cpu_speed is None:
            return ""
        ratio = self.speed_vs_calibration
        vs = "" if ratio is None else f" at {ratio:.2f}x their calibrated speed,"
        return f"cores ran{vs} varying {self.cpu_speed.spread:.2f}x"

    @property
    def state(self) -> str:
        """'quiet', 'UNSTEADY' (only the cores' speed moved) or 'BUSY' (neighbours or steal took CPU; also a run
        recorded before the two were told apart, which says only quiet: False)."""
        return "quiet" if self.quiet else "UNSTEADY" if self.unsteady and not self.busy else "BUSY"

    def describe(self) -> str:
        state = self.state
        energy = (
            f", CPU packages used {self.package_energy_j:.1f} J (RAPL)" if self.package_energy_j is not None else ""
        )
        speed = f", {self.cores_ran()} (p90/p10 of a reference kernel)" if self.cpu_speed is not None else ""
        sched = ""
        if self.sched is not None and self.sched.window_s > 0:
            w = self.sched
            split = ""
            if causes := w.by_cause_idle_core_wait_s:  # (runs recorded before the split have none)
                woken, preempted = (causes.get(k, 0.0) / w.window_s for k in ("woken", "preempted"))
                split = f" ({woken:.2f} after a wake-up, {preempted:.2f} after a preemption)"
            sched = (f"; the twin's threads waited for a core {w.runnable_wait_per_s:.2f} s per s of rounds, "
                     f"{w.idle_core_wait_per_s:.2f} s while a core was idle{split} (scheduler trace)")  # fmt: skip
        return (f"machine {state}: other processes used {self.foreign_cpu_cores:.2f} of {self.cores} cores, "
                f"steal {self.steal_fraction:.1%}, load average {self.loadavg_1m_start} at start"
                f"{speed}{energy}{sched}")  # fmt: skip


class HopLateness(_Model):
    """How late a delay hop (hw/delayline.py) passed on one direction's packets over a run, beyond the latency and
    jitter it drew for them: what the link added on this machine. ``read_p95_s``: how long after the kernel took a
    packet in the hop read it (taken back where the kernel stamped it); ``written_*``: how long after its time it
    left (negative: released early by the hop's usual wake-up lateness)."""

    packets: int = Field(ge=0)
    read_p95_s: float = Field(ge=-60.0, le=60.0, allow_inf_nan=False)
    written_mean_s: float = Field(ge=-60.0, le=60.0, allow_inf_nan=False)
    written_p50_s: float = Field(ge=-60.0, le=60.0, allow_inf_nan=False)
    written_p95_s: float = Field(ge=-60.0, le=60.0, allow_inf_nan=False)
    written_max_s: float = Field(ge=-60.0, le=60.0, allow_inf_nan=False)


class LinkDelay(_Model):
    """A link the netns fabric delays in user space (hw/delayline.py), as the scenario gives it: its index in
    ``deployment.network.links``, its latency and its jitter (within a scenario link's bounds); after a run, how late
    its hop passed packets on, a to b then b to a (``lateness``; none before a run, or in runs before it was kept)."""

    link: int = Field(ge=0, le=MAX_COUNT)
    latency_s: float = Field(ge=0, le=60.0, allow_inf_nan=False)
    jitter_s: float = Field(ge=0, le=60.0, allow_inf_nan=False)
    lateness: list[HopLateness] = Field(default=[], max_length=2)


CongestionControl = Literal["cubic", "reno", "bbr"]  # sim.scenario.Transport.congestion_control: Linux's names
# congestion controls that set the window themselves (Linux's ``cong_control``): its restart of an idle connection's
# window skips them (``tcp_slow_start_after_idle_check``)
WINDOW_OF_ITS_OWN = frozenset({"bbr"})


def modelled_congestion_control(name: str) -> str | None:
    """The ``Transport.congestion_control`` the model gives a congestion control Linux named ``name`` (BBR's later
    versions as BBR: each sets its own window); None where the model has none for it (or it was not recorded)."""
    if name.startswith("bbr"):
        return "bbr"
    return name if name in get_args(CongestionControl) else None


class FabricProbe(_Model):
    """What the netns backend's fabric does on this machine, measured between two hosts before the nodes start
    and after a completed run stopped them (hw/netns.py ``probe``; the mean of the two): the latency of one hop
    (a 1-byte TCP round trip over the path, halved, per hop) and the steady throughput of one TCP stream in wire
    bits/s (headers included) against the links' nominal rate.
    On two vCPUs a gigabit fabric is CPU-bound: the kernel's veth, bridge and tbf work for a byte outlasts the
    byte's time on the wire, so one stream gets less than the rate (README, "Real kernel networking")."""

    # within what a scenario's link takes (sim.scenario MAX_DELAY_S, MIN_/MAX_BANDWIDTH_BPS, MAX_BURST_BYTES; a
    # test holds them equal): ``sim --fabric-of`` makes links of these values, and a value no link may have was
    # refused as the scenario file's (deployment.network.links[0].latency_s), not this summary's
    hosts: tuple[str, str]
    hops: int = Field(ge=1)
    latency_s: float = Field(ge=0, le=60.0, allow_inf_nan=False)
    throughput_bps: float = Field(ge=1.0, le=1e12, allow_inf_nan=False)
    rate_bps: float = Field(ge=1.0, le=1e12, allow_inf_nan=False)  # the slowest nominal rate on the path
    # the hosts' TCP congestion control, as the probe's own connection ran it (the scenario's, ``hw.tcp``; the
    # namespaces' default, the machine's, in runs before the twin set it); it decides which pattern of concurrent
    # flows shares unfairly (docs/network-validation.md)
    congestion_control: str = ""
    # the token bucket of the path's slowest link (tbf's burst; 0: not recorded, runs before it was): the simulator
    # models its head start (sim/network.py ``LinkServer.leaves``)
    burst_bytes: int = Field(default=0, ge=0, le=1 << 30)
    # the machine's kernel as a stage of these links: a model's record's wire bits per second of the machine's
    # CPU (hw/sendcpu.py ``kernel_rate_clean``), at the speed the run's profile was calibrated at (the simulator
    # scales it by a host's ``cpu_speed``); 0: not measured (runs before it was)
    kernel_rate_bps: float = Field(default=0.0, ge=0, le=1e12, allow_inf_nan=False)
    # links delayed by a hop in user space (hw/delayline.py; none in runs before it): the probe measured the fabric
    # with them passing packets on at once, so ``latency_s`` is the fabric's own, theirs added on top
    delays: list[LinkDelay] = Field(default=[], max_length=1 << 16)

    @field_validator("kernel_rate_bps")
    @classmethod
    def _a_rate_or_none(cls, v: float) -> float:
        """As ``Transport.host_rate_bps`` takes it: else ``--fabric-of`` blamed the scenario file for this value."""
        if 0 < v < 1.0:
            raise ValueError("must be 0 (not measured) or at least 1 bit/s")
        return v

    def overrides(self, machine_cores: int | None = None) -> list[str]:
        """``--set`` options that give the simulator this fabric's links: its latency, no jitter (nothing here
        delays packets), and the throughput one stream reached where it is below the nominal rate, behind the
        machine's kernel where measured (``Transport.host_rate_bps``); with ``machine_cores``, the one machine
        whose cores the hosts' namespaces share (``deployment.machine``), its threads placed on cores as Linux
        places them (``cpu_sharing: linux``)."""
        sets = [f"deployment.network.links.*.latency_s={self.latency_s:.3g}", "deployment.network.links.*.jitter_s=0"]
        for d in self.delays:  # the hop's on top of the fabric's own (after the wildcard: the later --set wins)
            sets += [f"deployment.network.links.{d.link}.latency_s={min(self.latency_s + d.latency_s, 60.0):.6g}",
                     f"deployment.network.links.{d.link}.jitter_s={d.jitter_s:.6g}"]  # fmt: skip
        if self.kernel_rate_bps:
            sets.append(f"deployment.network.transport.host_rate_bps={self.kernel_rate_bps:.6g}")
        if (cc := modelled_congestion_control(self.congestion_control)) is not None:  # what the hosts' TCP ran
            sets.append(f"deployment.network.transport.congestion_control={cc}")
        if self.throughput_bps < self.rate_bps:
            sets.append(f"deployment.network.links.*.bandwidth_bps={self.throughput_bps:.4g}")
        if self.burst_bytes:
            sets.append(f"deployment.network.links.*.burst_bytes={self.burst_bytes}")
        if machine_cores is not None:  # scheduled by its Linux, as the local twin's one host is (localhost.yaml)
            sets += [f"deployment.machine.cores={machine_cores}", "deployment.hosts.*.cpu_sharing=linux"]
        return sets

    def describe(self) -> str:
        bound = " (CPU-bound)" if self.throughput_bps < 0.97 * self.rate_bps else ""
        cc = f", TCP {self.congestion_control}" if self.congestion_control else ""
        kernel = (f"; the kernel {self.kernel_rate_bps / 1e6:,.0f} Mbit/s per second of the machine's CPU"
                  if self.kernel_rate_bps else "")  # fmt: skip
        delayed = (f"; {len(self.delays)} link{'s' * (len(self.delays) > 1)} delayed on top in user space "
                   f"(latency {', '.join(f'{d.latency_s * 1e3:g}' for d in self.delays[:3])}"
                   f"{' ...' * (len(self.delays) > 3)} ms)" if self.delays else "")  # fmt: skip
        a, b = self.hosts
        return (f"fabric: {self.latency_s * 1e6:.0f} us a hop, one TCP stream {self.throughput_bps / 1e6:,.0f} of "
                f"{self.rate_bps / 1e6:,.0f} Mbit/s{bound} between {a} and {b}{cc}{kernel}{delayed}")  # fmt: skip


class Summary(_Model):
    """``summary.json``: the KPIs of one run in one processing mode, from its spans (sim/summary.py).

    The twin's runs fill the fields after ``wall_s`` as well; the simulator leaves them at their defaults.
    """

    scenario: str
    scenario_file: str
    mode: str | None
    seed: int | None
    replications: int
    suite: dict[str, Any]
    events: int
    sim_time_s: float
    round_latency_s: Stats
    model_distribution_s: Stats
    rounds_completed: int
    rounds_failed: int
    phase_s: dict[str, float]
    crypto_share: float
    # run directories written before ``bytes_on_wire`` was named ``application_bytes`` still read (an alias, not a
    # "before" validator: one made pydantic hand the fields Python objects, and a strict read refuse JSON arrays)
    application_bytes: ApplicationBytes = Field(validation_alias=AliasChoices("application_bytes", "bytes_on_wire"))
    telemetry: Telemetry
    host_utilization: dict[str, Utilisation]
    link_utilization: dict[str, Utilisation]
    retransmissions: int = 0
    warnings: list[str] = Field(default_factory=list)
    seed_streams: str | None = None
    wall_s: float = 0.0
    engine: Engine | None = None  # the simulator's engine (None: the twin)
    peak_rss_bytes: int | None = None  # the simulating process's peak resident memory when the run ended
    # the hardware twin
    backend: Literal["local", "netns", "k8s"] | None = None
    state: Literal["completed", "failed", "interrupted"] | None = None
    reason: str = ""
    initial_accuracy: float | None = None
    accuracy_per_round: list[float] = Field(default_factory=list)
    dropouts: list[Dropout] = Field(default_factory=list)
    security: dict[str, int] = Field(default_factory=dict)
    attack: tuple[str, str] | None = None
    namespace: str | None = None
    run_id: str | None = None
    machine_load: MachineLoad | None = None  # local backend: how busy this machine was while measuring
    fabric: FabricProbe | None = None  # netns backend: its links as measured before the run
    link_bytes: LinkBytes | None = None  # the simulator's (None: the twin, which cannot count bytes per hop)
    energy: Energy | None = None  # sim/energy.py: from the spans and counts, with the profiles' power models

    def fabric_overrides(self) -> list[str]:
        """The ``--set`` options that simulate the fabric and the machine this netns run measured (none: not one)."""
        if self.fabric is None:
            return []
        return self.fabric.overrides(self.machine_load.cores if self.machine_load is not None else None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=False) + "\n"


def summary_problem(summary: Summary) -> str | None:
    """What ``read_summary`` would refuse in ``summary`` once written ("field.path: message"), or None: a run must not
    write a summary its own readers refuse (a cost that overflowed came out as null)."""
    try:
        Summary.model_validate_json(summary.to_json(), strict=True, context={STRICT_READ: True})
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
    return None


def write_summary(summary: Summary, out_dir: Path) -> Path:
    path = RunLayout(out_dir).summary
    atomic_write(path, summary.to_json())
    return path


MAX_RUN_JSON_BYTES = 256 << 20  # a run directory's JSON file (a big run's summary is ~1 MB)


def read_model(model: type[M], path: Path, strict: bool = False) -> M:
    """A JSON file of the run directory read into its model; ValueError with one line naming the file and
    the first problem (field path and message), never a traceback's worth of pydantic text. ``strict``: pydantic's
    strict mode (no ``true`` for a number, no "5" for one either) and the ``STRICT_READ`` checks of ``_Model``."""
    from sim.errors import UserError
    from sim.loading import read_bytes

    try:
        data = read_bytes(path, MAX_RUN_JSON_BYTES, "a JSON file")
        if strict:
            return model.model_validate_json(data, strict=True, context={STRICT_READ: True})
        return model.model_validate_json(data)
    except UserError as exc:  # not a regular file (a FIFO blocks, /dev/zero never ends), too large, unreadable
        raise ValueError(exc.lines[0]) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        raise ValueError(f"{path}: {where}: {err['msg']}") from None


def read_summary(path: Path) -> Summary:
    """summary.json, strictly (``_Model``): every reader of a run's KPIs (report, compare, calibrate --from-run,
    sim --fabric-of, the app) refuses a damaged one in one line naming the file and the field."""
    return read_model(Summary, path, strict=True)
