"""A sweep's result directory: a Parquet dataset written as points finish, and what is needed to resume it.

    DIR/sweep.json                 the plan: the sweep file's content, root seed, every point (index, hash, seed,
                                   values, the --set overrides that make it)
    DIR/points/part-<t>-<n>.parquet  points that finished together (within FLUSH_S): a row per point and
                                   replication, axis columns + every KPI; ``hash`` names the point
    DIR/results.parquet            every row of the plan's points, in (point, replication) order: written at the end
    DIR/log.jsonl                  per point: wall time of its simulation, when it finished (machine facts: kept out
                                   of the results, which are the same on any machine and with any number of workers)
    DIR/.lock                      flocked by the process running the sweep (``prepare`` to ``consolidate``): a second
                                   sweep into the directory is refused while the first runs (it rewrote sweep.json and
                                   the first kept none of its points); the file stays, the lock ends with the process

Every file appears whole or not at all (written under a temporary name, then renamed): a sweep killed at any
moment leaves only whole points, and rerunning the same command skips them. A point whose run crashed (not a
user error: ``error_kind: crash``) is not finished; it runs again on resume, and its new rows win.
Points are written in batches because Parquet's cost is per column and file (~5 ms for a point's 200 columns),
which a client writing every point alone would take from the workers on a machine of few cores.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from sim.contract import atomic_write, write_json
from sim.dirlock import open_lock, take, write_pid
from sim.errors import UserError, shorten, show, validate
from sim.loading import read_json_object, require_regular
from sim.sweep.plan import Plan
from sim.sweep.spec import AXIS_NAME, RESERVED, STORED, SweepSpec

MANIFEST = "sweep.json"
POINTS = "points"
RESULTS = "results.parquet"
LOG = "log.jsonl"
MAX_MANIFEST_BYTES = 256 << 20  # a million points' entries


LOCK = ".lock"


def prepare(out: Path, plan: Plan, sweep_file: Path) -> None:
    """Make (or reopen) the directory for this sweep and lock it for this process (``lock``): refuse one that
    holds something else, or that another sweep is running in."""
    _check_reusable(out, plan)  # before the lock file is made: nothing is written into a directory not ours
    out.mkdir(parents=True, exist_ok=True)
    lock(out)
    _check_reusable(out, plan)  # again, now that no other sweep can be writing it
    (out / POINTS).mkdir(parents=True, exist_ok=True)
    for tmp in (out / POINTS).glob("*.tmp"):  # a write cut off by a kill
        tmp.unlink(missing_ok=True)
    write_json(out / MANIFEST, manifest_data(plan, sweep_file))


def _check_reusable(out: Path, plan: Plan) -> None:
    if (out / MANIFEST).exists():
        old = manifest(out)["sweep"]["sweep"]
        if old != plan.spec.sweep:
            raise UserError(f"{out}: holds the results of sweep {old!r}, not {plan.spec.sweep!r}: choose another --out")
    elif out.exists() and any(p.name != LOCK for p in out.iterdir()):
        raise UserError(f"{out}: not empty and not a sweep directory: choose another --out")


_held: dict[str, int] = {}  # the directories this process has locked: their lock file's descriptor


def _key(out: Path) -> str:
    return os.path.realpath(out)


def lock(out: Path) -> None:
    """flock ``out/.lock`` for this process until ``unlock`` (or its end): UserError naming the directory and the
    process that holds it, where another sweep does. Taken again by the same process, nothing happens. The file
    is never opened through a link (``O_NOFOLLOW``) and must be a regular file of one name: anything else there is
    one line naming it (a planted link's target would have been overwritten with our pid)."""
    if _key(out) in _held:
        return
    path = out / LOCK
    fd = open_lock(path, "sweep")
    take(fd, path, lambda pid: f"--out {out} is in use by another sweep{f' (pid {pid})' if pid else ''}: wait for it "
                               "to end (rerunning it then resumes it), or choose another --out")  # fmt: skip
    write_pid(fd)  # who holds it, for the line a second sweep prints
    _held[_key(out)] = fd


def unlock(out: Path) -> None:
    """Release this process' lock of ``out`` (if it holds one)."""
    fd = _held.pop(_key(out), None)
    if fd is not None:
        os.close(fd)  # the flock ends with its last descriptor


def manifest_data(plan: Plan, sweep_file: Path) -> dict[str, Any]:
    from sim.sweep.plan import model_digest

    return {
        "sweep": plan.spec.model_dump(mode="json"),
        "sweep_file": str(sweep_file),
        "scenario_file": str(plan.scenario_path),
        "seed": plan.spec.seed,
        "seeds": plan.spec.seeds,
        "model": model_digest(),
        "designed": plan.designed,
        "skipped": plan.skipped,
        "duplicates": plan.duplicates,
        "points": [{"point": p.index, "hash": p.hash, "seed": p.seed, "overrides": list(p.overrides),
                    "values": {a.key: a.column(p.values[a.key]) for a in plan.spec.axes}} for p in plan.points],
    }  # fmt: skip


def _parts(out: Path) -> list[Path]:
    return sorted((out / POINTS).glob("part-*.parquet"))  # written in time order: later files win


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A part or result file; UserError for one this code did not write (its own are whole: atomic_write)."""
    try:
        require_regular(path, "a Parquet file")  # pyarrow's reader blocks on a FIFO
        table = pq.read_table(path, columns=columns)
        if missing := {"hash", "error_kind"} - set(table.column_names):
            raise KeyError(", ".join(sorted(missing)))
    except (pa.ArrowException, OSError, KeyError, UserError) as exc:
        raise UserError(f"{path}: not a result file of this sweep ({shorten(str(exc), 200)}): move it away, and a "
                        "rerun computes its points again") from None  # fmt: skip
    return table


def finished(out: Path) -> set[str]:
    """Hashes of the points whose results are there (crashed points are not finished: they run again)."""
    done: set[str] = set()
    for part in _parts(out):
        t = _read(part, ["hash", "error_kind"])
        kinds = t.column("error_kind").to_pylist()
        done.update(h for h, k in zip(t.column("hash").to_pylist(), kinds, strict=True) if k != "crash")
    return done


def write_points(out: Path, rows: list[dict[str, Any]]) -> None:
    """One part file of the rows of points that finished (every row of each of them)."""
    columns = dict.fromkeys(k for r in rows for k in r)  # the union: points may keep different KPIs
    table = pa.table({k: [r.get(k) for r in rows] for k in columns})
    buf = io.BytesIO()
    pq.write_table(table, buf, write_statistics=False)
    atomic_write(out / POINTS / f"part-{time.time_ns()}-{len({r['hash'] for r in rows})}.parquet", buf.getvalue())


def log(out: Path, entries: list[dict[str, Any]]) -> None:
    now = round(time.time(), 3)
    with (out / LOG).open("a") as f:
        f.write("".join(json.dumps(e | {"finished_unix_s": now}) + "\n" for e in entries))


def read_log(out: Path) -> list[dict[str, Any]]:
    entries = []
    if (out / LOG).exists():
        for line in (out / LOG).read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut off by a kill
    return entries


class _ManifestPoint(BaseModel):
    point: int
    hash: str
    seed: int
    values: dict[str, Any]


class _Manifest(BaseModel):
    """The fields of sweep.json that readers rely on (the rest is for people)."""

    sweep: SweepSpec
    scenario_file: str
    points: list[_ManifestPoint]


def manifest(out: Path) -> dict[str, Any]:
    """sweep.json, checked: UserError lines for a file that is missing, not JSON or not a sweep's."""
    path = out / MANIFEST
    if not path.is_file():
        raise UserError(f"{out}: not a sweep directory (no {MANIFEST}; `pqtwin sweep SWEEP.yaml --out DIR` makes one)")
    data = read_json_object(path, MAX_MANIFEST_BYTES, "a sweep manifest")
    validate(_Manifest, data, path, STORED)
    return data


def _text_columns(data: dict[str, Any]) -> set[str]:
    """The columns of a result file that are not numbers: the point's hash, its error, and the axes' values."""
    return {
        "hash",
        "error",
        "error_kind",
        *(a.key for a in SweepSpec.model_validate(data["sweep"], context=STORED).axes),
    }


def _numbers(path: Path, df: pd.DataFrame, text: set[str]) -> pd.DataFrame:
    """``df`` with every other column as numbers (one that is all empty: NaN); UserError naming the file for a
    column that holds something else (a KPI of strings reached the report as a KeyError, and a resumed sweep's
    results.parquet as an ArrowTypeError)."""
    for c in df.columns:
        if c in text or pd.api.types.is_numeric_dtype(df[c]):
            continue
        values = pd.to_numeric(df[c], errors="coerce")
        if (other := df[c][values.isna() & df[c].notna()]).size:
            raise UserError(f"{path}: not a result file of this sweep (column {shorten(repr(c), 100)} holds "
                            f"{show(other.iloc[0])}, not a number): move it away, and a rerun computes its points "
                            "again")  # fmt: skip
        df[c] = values.astype(float)
    return df


def collect(out: Path) -> pd.DataFrame:
    """Every row of the manifest's points that are there (finished or crashed), in (point, replication) order;
    a point run again after a crash has its new rows only. A point's number and axis values are the manifest's: a
    changed sweep rerun in its directory reuses the rows of every point it shares with its earlier definition (the
    same scenario: the same hash), which carry that definition's numbers and axes."""
    data = manifest(out)
    points, text = {p["hash"]: p for p in data["points"]}, _text_columns(data)
    frames = [(part, f[f["hash"].isin(points)]) for part in _parts(out) if len(f := _read(part).to_pandas())]
    frames = [_numbers(part, _without_other_axes(f, text), text) for part, f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["point", "replication", "seed", "hash", "error", "error_kind"])
    df = pd.concat(frames, ignore_index=True)
    ok = set(df.loc[df["error_kind"] != "crash", "hash"])
    df = df[(df["error_kind"] != "crash") | ~df["hash"].isin(ok)]
    df = df.drop_duplicates(["hash", "replication"], keep="last").copy()
    df["point"] = df["hash"].map(lambda h: points[h]["point"]).astype(df["point"].dtype)
    for key in sorted(text - {"hash", "error", "error_kind"}):  # an axis the rows' definition did not have: filled
        given = df["hash"].map(lambda h, k=key: points[h]["values"].get(k))
        df[key] = df[key].where(df[key].notna(), given) if key in df.columns else given
    return df.sort_values(["point", "replication"], kind="stable").reset_index(drop=True)


def _without_other_axes(df: pd.DataFrame, text: set[str]) -> pd.DataFrame:
    """``df`` without the text columns of axes this sweep no longer has (an axis' name: no dot, not a result
    column's; a KPI of text is still the foreign file ``_numbers`` refuses)."""
    other = [c for c in df.columns if c not in text and c not in RESERVED and re.fullmatch(AXIS_NAME, str(c))
             and not pd.api.types.is_numeric_dtype(df[c])]  # fmt: skip
    return df.drop(columns=other)


def consolidate(out: Path) -> pd.DataFrame:
    """Write results.parquet from the points there; the rows. The sweep's last write: its lock ends here."""
    lock(out)
    try:
        df = collect(out)
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write(out / RESULTS, buf.getvalue())
    finally:
        unlock(out)
    return df


def results(out: Path) -> pd.DataFrame:
    """The sweep's rows: results.parquet, or, when points were written after it (a sweep running or resumed),
    the points there now."""
    data = manifest(out)
    final = out / RESULTS
    parts = _parts(out)
    if final.exists() and all(p.stat().st_mtime_ns <= final.stat().st_mtime_ns for p in parts):
        return _numbers(final, _read(final).to_pandas(), _text_columns(data))
    return collect(out)
