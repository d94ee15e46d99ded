"""A twin run directory, for every backend: prepare it, gather what the nodes left, write the result files.

Nodes leave ``spans/<pod>.parquet`` and ``nodes/<pod>.json`` (a ``NodeResult``); the backend then merges
the spans (adding the ``distribution`` markers only the whole run can give), writes ``spans.parquet``,
``summary.json`` (``sim.summary.summarise``, the simulator's code) and ``status.json``.

Every command that writes an output directory first ``claim``s it: one run at a time (an ``flock`` on
``.lock`` inside it, held until ``release``), an empty or new directory unless ``force`` replaces an
earlier run's outputs, and a path that is a directory we can write to. Otherwise one ``UserError`` line.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sim.contract import (
    MAX_RUN_JSON_BYTES,
    Dropout,
    Energy,
    RunLayout,
    SpanRow,
    Summary,
    atomic_write,
    core_utilisation,
    read_valid_spans,
    to_frame,
    write_json,
    write_spans,
    write_summary,
)
from sim.dirlock import open_lock, take, write_pid
from sim.errors import UserError
from sim.loading import exists, read_bytes
from sim.scenario import Scenario
from sim.summary import summarise

if TYPE_CHECKING:
    import pandas as pd


class RunOutcome(BaseModel):
    """How a twin run ended: ``status.json``'s own fields, and what a run whose results the disk refused kept of it."""

    model_config = ConfigDict(extra="allow", strict=True)  # a finished run's status adds its machine load

    state: Literal["running", "completed", "failed", "interrupted"]
    reason: str = ""
    exit_codes: dict[str, int | None] = Field(default_factory=dict)


class RunStatus(RunOutcome):
    """``status.json`` as a local or netns run writes it from its start (``hw.local.running_status``): which process
    runs it (``pid`` and when that process started: a pid alone may be another's later), and, where its results
    could not be written, how it ended (``outcome``) and why not (``unwritten``): what ``pqtwin hw recover`` reads."""

    pid: int | None = Field(default=None, gt=0, lt=1 << 31)
    pid_start: str | None = None
    backend: str | None = None
    mode: str | None = None
    seed: int | None = None
    started: float | None = None
    outcome: RunOutcome | None = None
    unwritten: str | None = None


Accuracy = Annotated[float, Field(ge=0.0, le=1.0)]  # a share of the test set classified right


class NodeResult(BaseModel):
    """``nodes/<pod>.json``: what one node process reports at its end."""

    # no NaN or infinity anywhere: a damaged report is left out (``node_results``) rather than written into a summary
    # its own reader refuses (``pqtwin hw recover`` on a report with a NaN accuracy was an internal error)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    state: Literal["completed", "failed"]
    reason: str = ""
    rounds: int | None = None  # client: rounds it trained
    devices: int | None = None  # device emulator: devices it ran
    initial_accuracy: Accuracy | None = None  # aggregator
    accuracy_per_round: list[Accuracy] = Field(default_factory=list)
    dropouts: list[Dropout] = Field(default_factory=list)
    rounds_failed: int = 0
    security: dict[str, int] = Field(default_factory=dict)  # rejected records/handshakes by kind
    cpus: list[int] | None = None  # the CPUs the process was pinned to (run.json ``cpus``)
    providers: dict[str, str] | None = None  # suite algorithm -> the crypto provider this process ran it with

    def write(self, run_dir: Path, pod: str) -> None:
        atomic_write(RunLayout(run_dir).node_result(pod), self.model_dump_json(indent=2) + "\n")


LOCK = ".lock"
# What a run directory may hold that a new run replaces (--force): the twin's files, the simulator's
# (``--mode both`` writes one directory per mode) and pqtwin compare's report.
SIM_OUTPUTS = ("sequential", "concurrent", "profile.html")
RUN_MARKERS = (RunLayout.RUN_CONFIG, RunLayout.STATUS, RunLayout.SUMMARY, RunLayout.MODES)
_held: dict[Path, int] = {}  # run directory -> descriptor of its locked .lock file, held by this process
_fresh: set[Path] = set()  # claimed, checked and cleared for a run that has not started yet


def prepare(out: Path) -> None:
    """Use a new or empty directory, or replace an earlier run directory; refuse anything else, and a
    directory another run holds. A backend's call: the CLI ``claim``ed the directory already (checked,
    cleared, and locked for the run's life); a caller without a claim gets the checks, not the lock."""
    if _key(out) in _fresh:
        _fresh.discard(_key(out))
        return
    held = _key(out) in _held
    claim(out, force=True)
    _fresh.discard(_key(out))
    if not held:
        release(out)


def claim(out: Path, force: bool = False, outputs: tuple[str, ...] = (), markers: tuple[str, ...] = (),
          aside: bool = False, keep_measured: bool = False) -> None:  # fmt: skip
    """Take ``out`` for one run of this process: a new or empty directory, or with ``force`` one holding an
    earlier run (a file of ``markers``, default a run directory's), whose outputs are removed first (the
    run directory's and ``outputs``; with ``aside``, moved into ``ASIDE`` until ``settle`` says whether the new
    run replaced them). ``keep_measured`` (``sim``'s): refuse to replace a hardware twin run, whose measurements
    cannot be computed again as a simulation's can. UserError if another run holds it, or it cannot be used."""
    check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out: cannot create {out}: {exc.strerror}") from None
    _lock(out)
    try:
        _take(out, force, outputs, markers or RUN_MARKERS, aside, keep_measured)
    except BaseException:
        release(out)
        raise
    _fresh.add(_key(out))


def _take(out: Path, force: bool, outputs: tuple[str, ...], markers: tuple[str, ...], aside: bool = False,
          keep_measured: bool = False) -> None:  # fmt: skip
    present = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    if not present:
        return
    if not force:
        raise UserError(
            f"--out: {out} is not empty (holds {', '.join(present[:3])}{', ...' if len(present) > 3 else ''}); "
            "give a new or empty directory, or --force to replace an earlier run"
        )
    run = markers == RUN_MARKERS
    if not any(_ours(out / m) for m in (*markers, *(_LEFT_BY_A_KILLED_RUN if run else ()))):
        raise UserError(f"--out: {out} is not empty and holds no earlier run: --force replaces only runs")
    if keep_measured and holds_twin_run(out):  # first: recovering it would not let a simulation replace it
        raise UserError(f"--out: {out} holds a hardware twin run, whose measurements --force would remove; a "
                        "simulation replaces only a simulation: give another directory")  # fmt: skip
    if run and (rounds := unrecovered_rounds(out)):
        raise UserError(
            f"--out: {out} holds a twin run whose results were never written, with {rounds} finished round"
            f"{'s' * (rounds > 1)} kept by its nodes that --force would remove: `pqtwin hw recover {out}` "
            "writes them first (then --force replaces the run), or move the directory away"
        )
    if aside:
        _set_aside(out, outputs, run)
    else:  # an earlier run a killed one had set aside goes too: --force replaces it
        _remove_outputs(out, outputs, run)
        shutil.rmtree(out / ASIDE, ignore_errors=True)


# where --force keeps the earlier run's outputs while the new run computes (``claim(aside=True)``): put back if it
# fails or is stopped (Ctrl-C: the earlier run was gone and the new one discarded, nothing left), removed once it
# has written its own; a process killed meanwhile leaves them there, named so
ASIDE = ".replaced-by-a-run"


def _owned(out: Path, outputs: tuple[str, ...], run: bool) -> list[Path]:
    own = (*RunLayout.result_files(), *RunLayout.extra_files(), *RunLayout.result_dirs(), *SIM_OUTPUTS) if run else ()
    return [out / name for name in dict.fromkeys((*own, *outputs))]


def _set_aside(out: Path, outputs: tuple[str, ...], run: bool) -> None:
    """``_remove_outputs``, except that the outputs move into ``out/ASIDE`` (one rename each, on one file system)."""
    keep = out / ASIDE
    if keep.is_symlink() or (keep.exists() and not keep.is_dir()):
        raise UserError(f"--out: {keep} is not a directory of ours; remove it")
    if keep.exists():  # a run killed while it replaced one: what it kept aside is the last whole run, put back
        _remove_outputs(out, outputs, run)
        try:
            settle(out, replaced=False)
        except OSError:
            raise UserError(f"--out: {keep} holds an earlier run that could not be put back; move it away") from None
    keep.mkdir()
    for path in _owned(out, outputs, run):
        if path.is_symlink() or path.exists():
            os.rename(path, keep / path.name)


def settle(out: Path, replaced: bool) -> None:
    """The end of a run that set its directory's earlier run aside: removed for good once the new run ``replaced``
    it, else put back (the new run's own outputs removed first by the caller)."""
    keep = out / ASIDE
    if not keep.is_dir() or keep.is_symlink():
        return
    if replaced:
        shutil.rmtree(keep, ignore_errors=True)
        return
    for path in keep.iterdir():
        target = out / path.name
        if not (target.is_symlink() or target.exists()):
            os.rename(path, target)
    keep.rmdir()  # OSError if something could not go back: then it stays there, under its name


def holds_twin_run(out: Path) -> bool:
    """Whether ``out`` holds a twin run: ``hw run``'s ``status.json`` or ``run.json`` (``--mode both``'s in a mode's
    folder too)."""
    twin = (RunLayout.STATUS, RunLayout.RUN_CONFIG)
    folders = (out, *(out / m for m in ("sequential", "concurrent") if _plain_dir(out / m)))
    return any(_ours(d / m) for d in folders for m in twin)


def _ours(path: Path) -> bool:
    """Whether ``path`` is a marker of an earlier run: a run directory's JSON files only when they read as ours (a
    folder of the user's that happened to hold a summary.json was taken for a run, and --force removed its
    logs/, keys/ and profiles/); another command's markers (its own outputs) when they exist."""
    if path.is_symlink():  # a link planted in a shared directory is no run of ours: --force then removed our outputs
        return False
    if path.name in _MARKER_DIRS:  # a folder of the user's that happened to hold a logs/ was taken for one
        return _holds_only(path, _MARKER_DIRS[path.name])
    if path.name in _LEFT_BY_A_KILLED_RUN:
        return _LEFT_BY_A_KILLED_RUN[path.name](path)
    if path.name not in RUN_MARKERS:
        return exists(path)
    try:
        data = json.loads(read_bytes(path, MAX_RUN_JSON_BYTES, "a JSON file"))
    except (UserError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return set(data) >= _MARKER_KEYS[path.name]


# keys each run marker has always had (status.json since the twin's first version, run.json since RunConfig)
# (keys, not the whole model: a run an older version wrote is still one, and make run's --force must take it)
_MARKER_KEYS = {RunLayout.STATUS: {"state", "reason"}, RunLayout.RUN_CONFIG: {"suite", "fl"},
                RunLayout.MODES: {"scenario", "round_latency_s"},
                RunLayout.SUMMARY: {"scenario", "scenario_file", "round_latency_s"}}  # fmt: skip


# marker directories of other commands, with the only files they hold (calibrate --backend k8s: its pods' logs)
_MARKER_DIRS = {"logs": "calibrate-*.log"}


def _killed_keys(path: Path) -> bool:
    """``keys/`` as a twin run writes it before anything else (a folder per process holding its identity and trust
    files, hw/provision.py): what a run killed while it provisioned leaves, with ``.lock``."""
    try:
        return _plain_dir(path) and all(_plain_dir(d) and _only_key_files(d) for d in path.iterdir())
    except OSError:
        return False


def _killed_mode(path: Path) -> bool:
    """``sequential/`` or ``concurrent/`` of ``sim --mode both`` (each a run directory of its own): what a run
    killed between its modes leaves, without the top-level comparison that marks it."""
    return _plain_dir(path) and any(_ours(path / m) for m in (RunLayout.SUMMARY, RunLayout.STATUS))


def _plain_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


KEY_FILES = frozenset({"identity.json", "trust.json"})  # a process's, hw/provision.py IDENTITY and TRUST


def _only_key_files(path: Path) -> bool:
    return all(p.name in KEY_FILES and p.is_file() and not p.is_symlink() for p in path.iterdir())


# what a command killed before it wrote its markers leaves, that --force may still take for an earlier run (a fault
# hunt: the user had to remove them by hand, as --force said there was "no earlier run"); a run's set-aside outputs
_LEFT_BY_A_KILLED_RUN = {"keys": _killed_keys, "sequential": _killed_mode, "concurrent": _killed_mode,
                         ASIDE: _plain_dir}  # fmt: skip


def _holds_only(path: Path, pattern: str) -> bool:
    """A directory (not a link) holding nothing but files named as ``pattern`` says (or nothing)."""
    try:
        return (
            path.is_dir()
            and not path.is_symlink()
            and all(fnmatch.fnmatchcase(p.name, pattern) and p.is_file() for p in path.iterdir())
        )
    except OSError:
        return False


def _remove_outputs(out: Path, outputs: tuple[str, ...], run: bool = True) -> None:
    """What a run writes (with ``run``: the twin's and the simulator's; and ``outputs``); any other file stays. A
    command with outputs of its own (compare, study) removes only those: a study's folder holding its base scenario
    and profiles lost them to a study's --force."""
    for path in _owned(out, outputs, run):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def unrecovered_rounds(d: Path) -> int:
    """Finished rounds a twin run whose results were never written keeps for ``pqtwin hw recover`` (an
    orchestrator killed mid-run, or a full disk at its end): the most any node kept, in its journal (a line per
    finished round, ``hw.journal``) or, had it ended, its report. 0 for any other directory."""
    if unwritten_hint(d) is None:
        return 0
    layout, rounds = RunLayout(d), 0
    for journal in (d / RunLayout.NODE_SPANS).glob("*.journal"):
        with contextlib.suppress(OSError):
            if journal.is_file() and not journal.is_symlink():
                with journal.open("rb") as f:
                    rounds = max(rounds, sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")))
    for report in (d / RunLayout.NODES).glob("*.json"):
        try:
            node = NodeResult.model_validate_json(read_bytes(report, MAX_RUN_JSON_BYTES, "a JSON file"))
        except (UserError, ValueError):
            continue
        if layout.node_spans(report.stem).is_file():  # its spans are there to recover
            rounds = max(rounds, len(node.accuracy_per_round), node.rounds or 0)
    return rounds


def unwritten_hint(d: Path) -> str | None:
    """What to say of a twin run directory whose results were never written (its orchestrator died, or the disk
    refused them): its run.json and nodes' journals are there, its summary.json is not. None for anything else."""
    layout = RunLayout(d)
    if not layout.run_config.is_file() or layout.summary.is_file():
        return None
    return f"a twin run whose results were never written: `pqtwin hw recover {d}` writes them from its nodes' journals"


def check_out(out: Path) -> None:
    """An --out path we can make a directory of, checked before any work starts."""
    text = str(out)
    if "\0" in text:
        raise UserError("--out: not a valid path (contains a NUL byte)")
    try:
        st = out.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"--out: cannot use {out}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"--out: {out} exists and is not a directory")


def _key(out: Path) -> Path:
    return Path(os.path.abspath(out))


def _lock(out: Path) -> None:
    """flock ``out/.lock`` for this process (non-blocking); the file is removed on release, so after locking
    we check the path still names the file we locked (else another run released it in between: retry).

    The lock is never taken through a link: ``.lock`` is opened ``O_NOFOLLOW`` and must be a regular file with no
    other name (a ``.lock`` link planted in an empty --out had its target truncated and overwritten with our pid;
    O_CREAT created a missing one). Anything else there is one line naming it."""
    if _key(out) in _held:
        return
    path = out / LOCK
    while True:
        fd = open_lock(path, "run")
        take(fd, path, lambda pid: f"--out: {out} is in use by another run{f' (process {pid})' if pid else ''}; "
                                   "wait for it or choose another")  # fmt: skip
        if _same_file(path, fd):
            break
        os.close(fd)
    write_pid(fd)  # who holds it, for the message a second run prints
    _held[_key(out)] = fd


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` itself (not a link's target) is the file open as ``fd``."""
    try:
        a, b = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def release(out: Path) -> None:
    """Give up ``out`` (removing its lock file while still holding it); nothing if this process does not hold it."""
    _fresh.discard(_key(out))
    fd = _held.pop(_key(out), None)
    if fd is None:
        return
    if _same_file(out / LOCK, fd):
        with contextlib.suppress(OSError):
            (out / LOCK).unlink()
    os.close(fd)


@contextlib.contextmanager
def claimed(out: Path, force: bool = False, outputs: tuple[str, ...] = (), markers: tuple[str, ...] = (),
            discard: bool = False, keep_measured: bool = False) -> Iterator[Path]:  # fmt: skip
    """``claim`` for the life of a ``with`` block. On failure no temporary files are left, with ``discard``
    nor the outputs the block wrote (``claim`` left none: all of them are this run's, half-written), and a
    directory the block created and left empty is removed. With ``discard`` an earlier run that --force replaces
    is kept aside until the block ends, and put back if it fails (a refusal found once the run started, Ctrl-C):
    a failed replacement loses nothing."""
    created = not exists(out)
    claim(out, force, outputs, markers, aside=discard, keep_measured=keep_measured)
    try:
        yield out
    except BaseException:
        remove_partial(out, created, outputs if discard else None, run=not markers)
        if discard:
            with contextlib.suppress(OSError):
                settle(out, replaced=False)
        raise
    else:
        if discard:
            with contextlib.suppress(OSError):
                settle(out, replaced=True)
    finally:
        release(out)


def remove_partial(out: Path, created: bool, outputs: tuple[str, ...] | None = None, run: bool = True) -> None:
    """Temporary files of writes that failed half-way (with ``outputs`` also every output of a run); the
    directory itself if we made it and it is empty."""
    with contextlib.suppress(OSError):
        for tmp in out.rglob("*.tmp"):
            tmp.unlink(missing_ok=True)
        if outputs is not None:
            _remove_outputs(out, outputs, run)
    if created:
        with contextlib.suppress(OSError):
            leftovers = [p for p in out.iterdir() if p.name != LOCK]
            if not leftovers:
                release(out)
                out.rmdir()


def node_results(out: Path, ignored: list[str] | None = None) -> dict[str, NodeResult]:
    """The nodes' reports (``nodes/<process>.json``). A file there that is not one (a stray file, a damaged one)
    is left out, and said in ``ignored``: one bad file must not cost the run its summary."""
    nodes = out / RunLayout.NODES
    results: dict[str, NodeResult] = {}
    for p in sorted(nodes.glob("*.json")) if nodes.exists() else []:
        try:  # bounded, and a regular file only (a FIFO there blocked the read for good)
            results[p.stem] = NodeResult.model_validate_json(read_bytes(p, MAX_RUN_JSON_BYTES, "a node's report"))
        except (OSError, ValueError, UserError):  # pydantic's ValidationError is a ValueError
            if ignored is not None:
                ignored.append(f"{p.relative_to(out)}: not a node's report (left out)")
    return results


def merge_spans(out: Path, ignored: list[str] | None = None) -> pd.DataFrame:
    """Every node's spans, plus a ``distribution`` marker per round (its start to the last client's receipt). A
    file that is not spans is left out, and said in ``ignored`` (``node_results``); a file of spans keeps its valid
    rows, and the rows left out are said once per file (a span whose header time a stranger rewrote lost the
    aggregator's whole file: a run that finished every round reported none)."""
    import pandas as pd

    frames = []
    for p in sorted((out / RunLayout.NODE_SPANS).glob("*.parquet")):
        try:
            df, total, left_out = read_valid_spans(p)
        except ValueError as exc:  # read_spans' one line: not a spans file at all
            if ignored is not None:
                ignored.append(f"{exc} (left out)")
            continue
        frames.append(df)
        if left_out and ignored is not None:
            why = "; ".join(f"{problem}{f' ({n})' if len(left_out) > 1 else ''}" for problem, n in left_out.items())
            ignored.append(f"{p.relative_to(out)}: {sum(left_out.values())} of {total} spans left out: {why}")
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


def estimated_energy(s: Scenario, df: pd.DataFrame, duration_s: float) -> Energy:
    """The hosts' energy and energy per FL round *estimated* from the measured spans with the scenario's power
    models (sim/energy.py, the simulator's code): this machine's own power is not measured here (no readable
    RAPL counter on our machines). Device energy is the simulator's only: the twin's devices are emulated."""
    from sim.energy import host_energy, round_energy  # here: with it the model and NetworkX, which a node never needs

    return Energy(hosts=host_energy(s, df, [duration_s]), per_round_j=round_energy(s, df),
                  basis="estimated from measured spans")  # fmt: skip


def write_results(
    s: Scenario, out: Path, aggregator: str, state: str, reason: str, codes: dict[str, int | None], wall_s: float,
    cores: dict[str, int], extra: dict[str, Any], machine: str | None = None,
    status_extra: dict[str, Any] | None = None, warn: Callable[[pd.DataFrame], list[str]] | None = None,
) -> Summary:  # fmt: skip
    """A twin run's result files: merged spans.parquet, summary.json with the simulator's keys plus the
    nodes' reports (accuracy, dropouts, security events), and status.json.

    Utilisation is of ``cores`` ({host: cores}); with ``machine`` every pod counts against that one host
    (the local backend: all pods share this machine). ``extra`` adds to the summary, ``status_extra`` to
    status.json; ``warn`` gives warnings read from the merged spans.
    """
    import pandas as pd

    ignored: list[str] = []
    nodes = node_results(out, ignored)
    agg = nodes.get(aggregator, NodeResult(state="failed"))
    security: Counter[str] = Counter()
    for n in nodes.values():
        security.update(n.security)
    df = merge_spans(out, ignored)
    layout = RunLayout(out)
    write_spans(df, layout.spans)
    duration = float(df.end_s.max()) if len(df) else wall_s
    host_key = pd.Series(machine, index=df.index) if machine else None
    meta: dict[str, Any] = {
        "scenario": s.name, "scenario_file": str(s.path), "replications": 1, "suite": s.workload.crypto.model_dump(),
        "events": len(df), "sim_time_s": duration, "link_utilization": {},
        "host_utilization": core_utilisation(df, cores, duration, host_key),
        "state": state, "reason": reason, "initial_accuracy": agg.initial_accuracy,
        "accuracy_per_round": agg.accuracy_per_round, "dropouts": agg.dropouts, "security": dict(security),
        "wall_s": wall_s, **extra, "warnings": [*extra.get("warnings", []), *ignored, *(warn(df) if warn else [])],
    }  # fmt: skip
    summary = summarise(df, meta)
    summary.energy = estimated_energy(s, df, duration)
    write_summary(summary, out)
    write_json(layout.status, {"state": state, "reason": reason, "exit_codes": codes, **(status_extra or {})})
    return summary
