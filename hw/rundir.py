"""A twin run directory, for every backend: prepare it, gather what the nodes left, write the result files.

Nodes leave ``spans/<pod>.parquet`` and ``nodes/<pod>.json`` (a ``NodeResult``); the backend then merges
the spans (adding the ``distribution`` markers only the whole run can give), writes ``spans.parquet``,
``summary.json`` (``sim.summary.summarise``, the simulator's code) and ``status.json``.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from sim.contract import (
    Dropout,
    RunLayout,
    SpanRow,
    Summary,
    atomic_write,
    core_utilisation,
    read_spans,
    to_frame,
    write_json,
    write_spans,
    write_summary,
)
from sim.errors import UserError
from sim.scenario import Scenario
from sim.summary import summarise


class NodeResult(BaseModel):
    """``nodes/<pod>.json``: what one node process reports at its end."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["completed", "failed"]
    reason: str = ""
    rounds: int | None = None  # client: rounds it trained
    devices: int | None = None  # device emulator: devices it ran
    initial_accuracy: float | None = None  # aggregator
    accuracy_per_round: list[float] = Field(default_factory=list)
    dropouts: list[Dropout] = Field(default_factory=list)
    rounds_failed: int = 0
    security: dict[str, int] = Field(default_factory=dict)  # rejected records/handshakes by kind
    cpus: list[int] | None = None  # the CPUs the process was pinned to (run.json ``cpus``)

    def write(self, run_dir: Path, pod: str) -> None:
        atomic_write(RunLayout(run_dir).node_result(pod), self.model_dump_json(indent=2) + "\n")


def prepare(out: Path) -> None:
    """Use a new or empty directory, or replace an earlier run directory; refuse anything else."""
    layout = RunLayout(out)
    if out.exists() and any(out.iterdir()):
        if not (layout.run_config.exists() or layout.status.exists()):
            raise UserError(f"--out: {out} exists, is not empty and is not a run directory")
        for name in layout.result_files():
            (out / name).unlink(missing_ok=True)
        for name in layout.result_dirs():
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def node_results(out: Path) -> dict[str, NodeResult]:
    nodes = out / RunLayout.NODES
    if not nodes.exists():
        return {}
    return {p.stem: NodeResult.model_validate_json(p.read_bytes()) for p in sorted(nodes.glob("*.json"))}


def merge_spans(out: Path) -> pd.DataFrame:
    """Every node's spans, plus a ``distribution`` marker per round (its start to the last client's receipt)."""
    frames = [read_spans(p) for p in sorted((out / RunLayout.NODE_SPANS).glob("*.parquet"))]
    df = pd.concat(frames, ignore_index=True) if frames else to_frame([])
    markers = []
    for r in df[df.phase == "round"].itertuples():
        recv = df[(df.phase == "receive") & (df["round"] == r.round)]
        if len(recv):
            end = float(recv.end_s.max())
            markers.append(SpanRow(0, int(r.round), str(r.pod), str(r.host), "distribution", "distribution",
                                   float(r.start_s), end, 0.0, 0))  # fmt: skip
    if markers:
        df = pd.concat([df, to_frame(markers)], ignore_index=True)
    return df.sort_values(["start_s", "end_s"], kind="stable").reset_index(drop=True)


def write_results(
    s: Scenario, out: Path, aggregator: str, state: str, reason: str, codes: dict[str, int | None], wall_s: float,
    cores: dict[str, int], extra: dict[str, Any], machine: str | None = None,
    status_extra: dict[str, Any] | None = None,
) -> Summary:  # fmt: skip
    """A twin run's result files: merged spans.parquet, summary.json with the simulator's keys plus the
    nodes' reports (accuracy, dropouts, security events), and status.json.

    Utilisation is of ``cores`` ({host: cores}); with ``machine`` every pod counts against that one host
    (the local backend: all pods share this machine). ``extra`` adds to the summary, ``status_extra`` to
    status.json.
    """
    nodes = node_results(out)
    agg = nodes.get(aggregator, NodeResult(state="failed"))
    security: Counter[str] = Counter()
    for n in nodes.values():
        security.update(n.security)
    df = merge_spans(out)
    layout = RunLayout(out)
    write_spans(df, layout.spans)
    duration = float(df.end_s.max()) if len(df) else wall_s
    host_key = pd.Series(machine, index=df.index) if machine else None
    meta: dict[str, Any] = {
        "scenario": s.name, "scenario_file": str(s.path), "replications": 1, "suite": s.workload.crypto.model_dump(),
        "events": len(df), "sim_time_s": duration, "link_utilization": {}, "warnings": [],
        "host_utilization": core_utilisation(df, cores, duration, host_key),
        "state": state, "reason": reason, "initial_accuracy": agg.initial_accuracy,
        "accuracy_per_round": agg.accuracy_per_round, "dropouts": agg.dropouts, "security": dict(security),
        "wall_s": wall_s, **extra,
    }  # fmt: skip
    summary = summarise(df, meta)
    write_summary(summary, out)
    write_json(layout.status, {"state": state, "reason": reason, "exit_codes": codes, **(status_extra or {})})
    return summary
