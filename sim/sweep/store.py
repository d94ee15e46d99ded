"""A sweep's result directory: a Parquet dataset written as points finish, and what is needed to resume it.

    DIR/sweep.json              the plan: the sweep file's content, root seed, every point (index, hash, seed, values)
    DIR/points/<hash>.parquet   one finished point: a row per replication (axis columns + every KPI)
    DIR/points/<hash>.crash.parquet   a point whose run crashed (not a user error): run again on resume
    DIR/results.parquet         every row of the plan's points, in (point, replication) order: written at the end
    DIR/log.jsonl               per point: wall time of its simulation, when it finished (machine facts: kept out of
                                the results, which are the same on any machine and with any number of workers)

Every file appears whole or not at all (written under a temporary name, then renamed): a sweep killed at any
moment leaves only whole points, and rerunning the same command skips them.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from sim.contract import atomic_write, write_json
from sim.errors import UserError
from sim.sweep.plan import Plan

MANIFEST = "sweep.json"
POINTS = "points"
RESULTS = "results.parquet"
LOG = "log.jsonl"
CRASH = ".crash"


def prepare(out: Path, plan: Plan, sweep_file: Path) -> None:
    """Make (or reopen) the directory for this sweep: refuse one that holds something else."""
    manifest = out / MANIFEST
    if manifest.exists():
        old = json.loads(manifest.read_text()).get("sweep", {}).get("sweep")
        if old != plan.spec.sweep:
            raise UserError(f"{out}: holds the results of sweep {old!r}, not {plan.spec.sweep!r}: choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: not empty and not a sweep directory: choose another --out")
    (out / POINTS).mkdir(parents=True, exist_ok=True)
    for tmp in (out / POINTS).glob("*.tmp"):  # a write cut off by a kill
        tmp.unlink(missing_ok=True)
    write_json(manifest, manifest_data(plan, sweep_file))


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
        "points": [{"point": p.index, "hash": p.hash, "seed": p.seed,
                    "values": {a.key: a.column(p.values[a.key]) for a in plan.spec.axes}} for p in plan.points],
    }  # fmt: skip


def finished(out: Path) -> set[str]:
    """Hashes of the points whose results are there (crashed points are not finished: they run again)."""
    return {f.name.removesuffix(".parquet") for f in (out / POINTS).glob("*.parquet") if CRASH not in f.name}


def write_point(out: Path, point_hash: str, rows: list[dict[str, Any]], crashed: bool) -> None:
    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf, index=False)
    atomic_write(out / POINTS / f"{point_hash}{CRASH if crashed else ''}.parquet", buf.getvalue())
    if not crashed:
        (out / POINTS / f"{point_hash}{CRASH}.parquet").unlink(missing_ok=True)


def log(out: Path, entry: dict[str, Any]) -> None:
    with (out / LOG).open("a") as f:
        f.write(json.dumps(entry | {"finished_unix_s": round(time.time(), 3)}) + "\n")


def read_log(out: Path) -> list[dict[str, Any]]:
    entries = []
    if (out / LOG).exists():
        for line in (out / LOG).read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut off by a kill
    return entries


def manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    if not path.is_file():
        raise UserError(f"{out}: not a sweep directory (no {MANIFEST}; `pqtwin sweep SWEEP.yaml --out DIR` makes one)")
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a sweep manifest ({exc})") from None
    return data


def collect(out: Path) -> pd.DataFrame:
    """Every row of the manifest's points that are there (finished or crashed), in (point, replication) order."""
    frames = []
    for p in manifest(out)["points"]:
        for name in (f"{p['hash']}.parquet", f"{p['hash']}{CRASH}.parquet"):
            if (out / POINTS / name).exists():
                frames.append(pd.read_parquet(out / POINTS / name))
                break
    if not frames:
        return pd.DataFrame(columns=["point", "replication", "seed", "hash", "error", "error_kind"])
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["point", "replication"], kind="stable").reset_index(drop=True)


def consolidate(out: Path) -> pd.DataFrame:
    """Write results.parquet from the points there; the rows."""
    df = collect(out)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write(out / RESULTS, buf.getvalue())
    return df


def results(out: Path) -> pd.DataFrame:
    """The sweep's rows: results.parquet, or (a sweep still running or cut off) the points there now."""
    manifest(out)
    if (out / RESULTS).exists():
        return pd.read_parquet(out / RESULTS)
    return collect(out)
