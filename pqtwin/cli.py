"""The ``pqtwin`` command: simulate, validate scenarios, run the hardware twin, calibrate, compare.

The one module that owns the command line; it calls sim and hw through their public functions (hw may
import sim, never the reverse, so the command is assembled here, outside both). User mistakes surface as
one line per problem on stderr and exit code 2, never a traceback: our own checks raise ``UserError``,
typer's (a bad option value) are flattened to one line too, and anything unexpected is one line
``internal error: ...`` with exit code 1 and the traceback saved to a file.

Commands that write a directory (``sim``, ``hw run``, ``compare``, ``calibrate --backend k8s``) claim it first
(hw/rundir.py): one run at a time, and a non-empty one only with ``--force``.

Start-up: this module imports typer and rich only; every command imports what it needs (pandas, pydantic,
networkx, simpy, the twin...) when it runs, so ``pqtwin --help``, a command's ``--help`` and a mistake in an
option cost no more than typer (bench/startup.py; tests/test_cli_imports.py keeps it so).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

if TYPE_CHECKING:
    from rich.progress import Progress

    from sim import cost as costs
    from sim import scenario as scn
    from sim.contract import Summary
    from sim.runner import RunResult

# Limits the options show in --help, copied so that building the command imports no model (sim.scenario and
# sim.cost pull pydantic, networkx and pandas: 0.5 s); tests/test_cli_imports.py checks they equal the originals.
MAX_SEED = 2**63 - 1  # sim.scenario.MAX_SEED
MAX_REPLICATIONS = 10_000  # sim.scenario.MAX_REPLICATIONS
MAX_ROUNDS = 100_000  # sim.scenario.MAX_ROUNDS
DEFAULT_MAX_MEMORY_GIB = 1.0  # sim.cost.DEFAULT_MAX_MEMORY_GIB
DEFAULT_MAX_MINUTES = 10.0  # sim.cost.DEFAULT_MAX_MINUTES


class _Group(TyperGroup):
    """A command group whose --help flag is False when not given. typer (0.29) leaves it None and converts that
    to a bool through pydantic, imported for it: 0.1 s of every ``pqtwin sim --help`` (a bool is let through)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="PQ-IoMT Twin: simulate post-quantum secured federated learning for IoMT.",
)
scenario_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Scenario files: JSON Schema and validation.")
app.add_typer(scenario_app, name="scenario")
# a log or a pipe (make run | tee, CI) is not a terminal: rich would wrap the tables at 80 columns, splitting every
# confidence interval over two lines; COLUMNS still rules where it is set
_WIDTH = None if os.environ.get("COLUMNS") or (sys.stdout is not None and sys.stdout.isatty()) else 132
STDOUT = Console(width=_WIDTH)
STDERR = Console(stderr=True, width=_WIDTH)
# typer's usage errors (it vendors click in recent versions): found through its public BadParameter
_CLICK = {c.__name__: c for c in typer.BadParameter.__mro__}
ClickException: type[Exception] = _CLICK["ClickException"]
UsageError: type[Exception] = _CLICK["UsageError"]


def _say(text: str) -> None:
    """A line on stdout, printed as is (a path may hold '[', which rich would read as markup)."""
    STDOUT.print(Text(text), soft_wrap=True, highlight=False)


def _warn(text: str) -> None:
    from sim.errors import shorten

    STDERR.print(Text.assemble(("warning:", "yellow"), " ", shorten(text, 2000)), soft_wrap=True, highlight=False)


def _text(value: str | None) -> str | None:
    """A text option: UTF-8 (argv keeps other bytes as lone surrogates, which no YAML or API takes), short."""
    if value is None:
        return value
    from sim.errors import shorten

    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise typer.BadParameter(f"not UTF-8 text (got {shorten(repr(value))})") from None
    if len(value) > 1000:
        raise typer.BadParameter(f"at most 1,000 characters (got {len(value):,})")
    return value


def _profile_name(value: str | None) -> str | None:
    """``calibrate --name``: '' was ignored (the default name written instead), a newline or a '/' went into the
    profile as its name and broke the one-line messages and tables that name it; refused as the options are read."""
    from sim.errors import UserError, shorten
    from sim.profile import PROFILE_NAME

    if (value := _text(value)) is not None and not re.fullmatch(PROFILE_NAME, value):
        raise UserError(f"--name: a profile name is 1 to 100 letters, digits, '.', '_', '+' or '-', starting with a "
                        f"letter or digit (got {shorten(repr(value))})")  # fmt: skip
    return value


def _names(option: str, value: str | None) -> list[str] | None:
    """A comma-separated list option as its names: at least one, none empty, none twice (``--algorithms ''``, an
    unset shell variable, measured every algorithm; ``A,,B`` and ``A,A`` are typing slips). None: not given."""
    from sim.errors import UserError, shorten

    if (value := _text(value)) is None:
        return None
    names = [n.strip() for n in value.split(",")]
    if not any(names):
        raise UserError(f"--{option}: give at least one name, comma-separated (got {shorten(repr(value))})")
    if "" in names:
        raise UserError(f"--{option}: an empty name in the list (got {shorten(repr(value))})")
    if twice := next((n for i, n in enumerate(names) if n in names[:i]), None):
        raise UserError(f"--{option}: {shorten(repr(twice))} is named twice (got {shorten(repr(value))})")
    return names


def _algorithms(value: str | None) -> str | None:
    """``--algorithms``: names of the catalogue (a Job on a cluster found a typo only once its pod ran)."""
    from sim.catalogue import unknown_problem
    from sim.errors import UserError

    if (names := _names("algorithms", value)) is None:
        return None
    if problem := unknown_problem("--algorithms", names):
        raise UserError(problem)
    return ",".join(names)


def _nodes(value: str | None) -> str | None:
    """``--nodes``: '' calibrated every Ready node of the cluster instead of the ones meant; a name no node can have
    left its Job pending until the start timeout (or wrote its profile outside --out: ``../x``)."""
    if (names := _names("nodes", value)) is None:
        return None
    from hw.k8s.names import check_nodes

    check_nodes(names)
    return ",".join(names)


def _namespace(value: str | None) -> str | None:
    """``--namespace``: what Kubernetes takes as one ('' was the default namespace; ``Bad_NS`` was rendered, and
    refused by the API server once a run's first objects were created)."""
    if (value := _text(value)) is None:
        return None
    from hw.k8s.names import check_namespace

    return check_namespace(value)


def _image(value: str | None) -> str | None:
    """``--image``: a container image reference ('' was the default image; a malformed one failed every pod)."""
    if (value := _text(value)) is None:
        return None
    from hw.k8s.names import check_image

    return check_image(value)


def _given(option: str) -> Any:
    """A text option that may not be empty or blank where leaving it out means a default (``--provider ''`` measured
    every provider on a cluster)."""

    def check(value: str | None) -> str | None:
        from sim.errors import UserError

        if (value := _text(value)) is not None and not value.strip():
            raise UserError(f"--{option}: give a value or leave the option out (got {value!r})")
        return value

    return check


def path_arg(raw: str) -> Path:
    """A file or directory argument: typer made '' (an unset shell variable) the current directory, and the error
    then named '.' ("is a directory, not a file")."""
    if not str(raw).strip():
        raise typer.BadParameter(f"give a file or directory name (got {str(raw)!r})")
    return Path(raw)


def _finite(value: float | None) -> float | None:
    """typer's FloatRange lets nan through (every comparison with nan is false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number (got {value})")
    return value


def _finite_in(lo: float, hi: float) -> Callable[[float | None], float | None]:
    """A finite number in [lo, hi]: the range checked here, after ``_finite``, not by typer's FloatRange, which
    runs first and said of nan "should be less than or equal to 86400"."""

    def check(value: float | None) -> float | None:
        if _finite(value) is not None and not lo <= value <= hi:  # type: ignore[operator]
            raise typer.BadParameter(f"must be in [{lo:g}, {hi:g}] (got {value:g})")
        return value

    return check


def _only_with(condition: str, holds: bool, **given: object) -> None:
    """Refuse (one line) an option given where it does nothing: ``--dry-run`` without ``--backend k8s`` ran the
    twin, or a calibration, for real."""
    from sim.errors import UserError

    if not holds and (used := [name for name, value in given.items() if value not in (None, False, [])]):
        raise UserError(f"--{used[0].replace('_', '-')}: only with {condition}")


# Options shared by the commands that simulate or write a directory
Out = Annotated[
    str | None, typer.Option("--out", help="run directory, new or empty (default runs/<name>, hw: runs/<name>-hw)")
]
Force = Annotated[bool, typer.Option("--force", help="replace an earlier run in --out (its outputs only)")]
Seed = Annotated[int | None, typer.Option(min=0, max=MAX_SEED, help="root seed (default: run.seed)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override: dotted.path=value")]
MaxMemory = Annotated[
    float,
    typer.Option("--max-memory-gib", callback=_finite_in(0.01, 1e6),
                 help="refuse a simulation whose estimated peak memory is larger"),
]  # fmt: skip
MaxMinutes = Annotated[
    float,
    typer.Option("--max-minutes", callback=_finite_in(0.01, 1e6),
                 help="refuse a simulation estimated to take longer (wall time)"),
]  # fmt: skip

TwinMemory = Annotated[
    float | None,
    typer.Option("--max-memory-gib", callback=_finite_in(0.01, 1e6),
                 help="local: refuse a run estimated to need more (default: half of this machine's memory)"),
]  # fmt: skip


def _out_path(raw: str | None) -> Path | None:
    """--out as a path, checked before any work starts (None: not given)."""
    if raw is None:
        return None
    from hw import rundir
    from sim.errors import UserError

    if not raw.strip():
        raise UserError(f"--out: give a directory (got {raw!r})")
    out = Path(raw)
    rundir.check_out(out)
    return out


@scenario_app.command("schema")
def scenario_schema() -> None:
    """Print the JSON Schema of scenario files."""
    from sim import scenario as scn

    typer.echo(json.dumps(scn.schema(), indent=2))


@scenario_app.command("check")
def scenario_check(
    file: Annotated[Path, typer.Argument(parser=path_arg, help="scenario YAML file")],
    set_: SetOpt = None,
    replications: Annotated[int | None, typer.Option(min=1, max=MAX_REPLICATIONS)] = None,
    max_memory_gib: MaxMemory = DEFAULT_MAX_MEMORY_GIB,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
) -> None:
    """Validate a scenario file (schema, references, profiles, routes) and estimate what simulating it costs."""
    from sim import scenario as scn

    s = scn.load_scenario(file, set_)
    cost = _check_cost(s, replications, 1, max_memory_gib, max_minutes)
    _warn_provenance(s)
    n_dev = sum(p.count for p in s.workload.devices)
    _say(f"{file}: ok — {len(s.deployment.hosts)} hosts, {len(s.deployment.pods)} pods, {n_dev} devices; "
         f"simulating it: {cost.describe()}")  # fmt: skip


def _check_cost(s: scn.Scenario, reps: int | None, modes: int, max_memory_gib: float,
                max_minutes: float) -> costs.Cost:  # fmt: skip
    """Refuse a simulation over budget before it starts; warn about a long one."""
    from sim import cost as costs
    from sim.errors import UserError
    from sim.telemetry import engine_problem

    if problem := engine_problem(s):
        raise UserError(problem)
    cost = costs.estimate(s, reps, modes)
    problem = costs.budget_problem(s, cost, max_memory_gib, max_minutes)
    if problem:
        raise UserError(problem)
    if warning := costs.large_run_warning(s, cost):
        _warn(warning)
    return cost


@app.command("sim")
def sim_cmd(
    scenario: Annotated[Path, typer.Argument(parser=path_arg, help="scenario YAML file")],
    out_dir: Out = None,
    seed: Seed = None,
    replications: Annotated[
        int | None, typer.Option(min=1, max=MAX_REPLICATIONS, help="default: run.replications")
    ] = None,
    mode: Annotated[str | None, typer.Option(callback=_text, help="sequential | concurrent | both")] = None,
    set_: SetOpt = None,
    profile: Annotated[Path | None, typer.Option(help="profile file for every host")] = None,
    profile_run: Annotated[bool, typer.Option("--profile-run", help="write a pyinstrument HTML profile")] = False,
    force: Force = False,
    max_memory_gib: MaxMemory = DEFAULT_MAX_MEMORY_GIB,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            max=256,
            help="processes for the replications (0: one per core, memory allowing; 1: this one alone, no forks)",
        ),
    ] = 0,
    heartbeat: Annotated[
        Path | None, typer.Option(hidden=True, help="stop as Ctrl-C when this file goes stale (the app's runs)")
    ] = None,
    fabric_of: Annotated[
        Path | None,
        typer.Option(
            "--fabric-of", parser=path_arg, help="a netns twin run: simulate the links and the machine it measured"
        ),
    ] = None,
    rounds_in_turn: Annotated[
        bool,
        typer.Option(
            "--rounds-in-turn",
            help="with --mode both: one run whose rounds alternate the modes (S C C S ...) as `pqtwin hw run --mode "
            "both` runs them, split into DIR/sequential and DIR/concurrent, to compare with such a run; "
            "workload.fl.rounds counts both modes' rounds",
        ),
    ] = False,
) -> None:
    """Simulate a scenario; write spans.parquet and summary.json and print a table."""
    from hw import rundir
    from pqtwin.tables import modes_table, summary_table
    from sim import scenario as scn
    from sim.contract import ALTERNATING
    from sim.errors import UserError, shorten
    from sim.loading import exists
    from sim.runner import MODES

    if mode is not None and mode not in (*MODES, "both"):
        raise UserError(f"--mode: must be sequential, concurrent or both (got {shorten(repr(mode))})")
    if profile is not None and not exists(profile):
        raise UserError(f"--profile: file not found (got {shorten(repr(str(profile)), 200)})")
    if profile is not None and profile.is_dir():
        raise UserError(f"--profile: {profile} is a directory; give a profile file")
    given = _out_path(out_dir)
    if fabric_of is not None:  # first: the user's own --set options win
        set_ = [*_fabric_overrides(fabric_of), *(set_ or [])]
    s = scn.load_scenario(scenario, set_, profile)
    out = given or Path("runs") / s.name
    modes = list(MODES) if mode == "both" else [mode or s.workload.processing.mode]
    if rounds_in_turn:
        modes = [_in_turn(s, mode)]
    cost = _check_cost(s, replications, len(modes), max_memory_gib, max_minutes)
    procs = 1 if profile_run else _workers(workers, replications or s.run.replications, cost, max_memory_gib)
    told = _warn_provenance(s)
    if heartbeat is not None:
        watch_heartbeat(heartbeat, SIM_HEARTBEAT_STALE_S)
    with rundir.claimed(out, force, discard=True, keep_measured=True), _writing(out):
        runs, comparison = _simulate_into(s, modes, out, seed, replications, profile_run, procs, workers == 1)
    if comparison is not None:
        STDOUT.print(modes_table(runs["sequential"].summary, runs["concurrent"].summary, comparison))
    else:
        STDOUT.print(summary_table(runs[modes[0]].summary))
    whole = {m: r for m, r in runs.items() if m == ALTERNATING}  # its halves repeat its warnings
    for m, r in (whole or runs).items():
        for w in r.summary.warnings:
            if w not in told:
                _warn(f"({m}) {w}")
    if whole:
        _say(f"each mode: {out / 'sequential'}/, {out / 'concurrent'}/ (rounds in turn, S C C S ...)")
    _say(f"results: {out}/")


def _in_turn(s: scn.Scenario, mode: str | None) -> str:
    """The simulator's mode of ``--rounds-in-turn`` (``sim.contract.ALTERNATING``); a UserError where the command
    cannot run so."""
    from sim.contract import ALTERNATING
    from sim.errors import UserError

    if mode != "both":
        raise UserError("--rounds-in-turn: with --mode both (the rounds alternate the two modes)")
    if s.workload.fl.rounds < 2:
        raise UserError(f"{s.path}: --rounds-in-turn runs a round of each mode at least: set workload.fl.rounds to 2 "
                        f"or more (got {s.workload.fl.rounds})")  # fmt: skip
    return ALTERNATING


def _fabric_overrides(run_dir: Path) -> list[str]:
    """The ``--set`` options that simulate the fabric and machine a netns run measured (``Summary.fabric``). Its
    values are checked as its summary.json is read (``read_summary``: finite, within what a link takes), so a bad
    one names RUN/summary.json and its field, not the scenario the options are then applied to."""
    from sim.contract import RunLayout, read_summary
    from sim.errors import UserError

    path = RunLayout(run_dir).summary
    try:
        summary = read_summary(path)
    except (OSError, ValueError) as exc:
        line = (str(exc).splitlines() or [type(exc).__name__])[0]
        if not path.is_file():
            raise UserError(f"--fabric-of: {run_dir}: not a run directory ({line})") from None
        raise UserError(f"--fabric-of: {line if line.startswith(f'{path}: ') else f'{path}: {line}'}") from None
    if summary.fabric is None:
        raise UserError(f"--fabric-of: {run_dir} is not a netns twin run (its summary.json has no fabric)")
    return summary.fabric_overrides()


SIM_HEARTBEAT_STALE_S = 5.0  # the app touches it every 0.5 s while the page that started the run is open


def watch_heartbeat(heartbeat: Path, stale_s: float) -> None:
    """Interrupt this process as Ctrl-C would once ``heartbeat`` is older than ``stale_s`` or gone: a run the
    app started ends when the app (or the server) that watched it is gone, and leaves no partial output."""
    import signal
    import threading

    def watch() -> None:
        while True:
            time.sleep(0.25)
            try:
                age_s = time.time() - heartbeat.stat().st_mtime
            except OSError:
                age_s = math.inf  # removed: stop
            if age_s > stale_s:
                os.kill(os.getpid(), signal.SIGINT)
                return

    threading.Thread(target=watch, name="heartbeat", daemon=True).start()


def _warn_provenance(s: scn.Scenario) -> list[str]:
    """Warn (once, before running) about hosts whose profile prices the suite with another library than the
    twin's; returns the lines."""
    from sim import provenance

    lines = provenance.mismatches(s)
    for line in lines:
        _warn(line)
    return lines


def _workers(asked: int, reps: int, cost: costs.Cost, max_memory_gib: float) -> int:
    """Processes for the replications: as asked (0: one per core), at most one per replication, and no more
    than the memory budget holds beside this process (each runs its share of the rows, then hands them over)."""
    from sim.cost import BASE_BYTES, GIB

    n = min(asked or os.cpu_count() or 1, reps)
    each = BASE_BYTES + max(0.0, cost.peak_bytes - BASE_BYTES) / max(1, reps) * 2
    while n > 1 and cost.peak_bytes + n * each > max_memory_gib * GIB:
        n -= 1
    return n


def _simulate_into(s: scn.Scenario, modes: list[str], out: Path, seed: int | None, reps: int | None,
                   profile_run: bool, workers: int = 1, alone: bool = False,
                   ) -> tuple[dict[str, RunResult], dict[str, Any] | None]:  # fmt: skip
    from dataclasses import replace

    from sim.alternating import split
    from sim.checkpoint import Fork
    from sim.contract import ALTERNATING, RunLayout, write_json
    from sim.loading import read_json_object
    from sim.modes_json import MODES_LIMIT_BYTES
    from sim.runner import write_run
    from sim.summary import mode_comparison

    # every pass computed here: a profile sees this process only; ``--workers 1`` (the app's runs, which Stop kills
    # as a process group) leaves no forked process to linger until the system reaps it
    Fork.enabled = not (profile_run or alone)
    profiler = _start_profiler() if profile_run else None
    runs: dict[str, RunResult] = {}
    try:
        for m, run in _run_with_progress(s, modes, seed, reps, workers):  # one mode written while the next runs
            runs[m] = run
            write_run(run, out / m if len(modes) > 1 else out, s)
    finally:
        Fork.enabled = True
    if profiler is not None:
        profiler.stop()
        (out / "profile.html").write_text(profiler.output_html())
    if modes == [ALTERNATING]:  # each mode's rounds a run of its own, and their reduction paired round by round
        runs |= {m: replace(runs[ALTERNATING], summary=summary) for m, summary in split(out).items()}
        return runs, read_json_object(RunLayout(out).modes, MODES_LIMIT_BYTES, "a modes.json")
    if len(modes) == 1:
        return runs, None
    comparison = mode_comparison(runs["sequential"].summary, runs["concurrent"].summary)
    write_json(RunLayout(out).modes, comparison)
    return runs, comparison


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


@contextmanager
def _writing(out: Path) -> Iterator[None]:
    """An OSError writing into ``out`` (a read-only or full disk) is one line naming the file; the first
    error of a chain is the one reported (a clean-up in a ``finally`` that fails again must not hide it)."""
    try:
        yield
    except OSError as exc:
        first = _first_oserror(exc)
        inside = first.filename is not None and _within(Path(str(first.filename)), out)
        if first.errno not in WRITE_ERRORS and not inside:
            raise  # not about the output: a bug or the machine, for the safety net
        from sim.errors import UserError

        raise UserError(f"{first.filename or out}: cannot write: {first.strerror or first}") from None


def _within(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def _first_oserror(exc: BaseException) -> OSError:
    """The earliest OSError in the exception's context chain (the cause, not a follow-up failure)."""
    found = exc if isinstance(exc, OSError) else OSError(str(exc))
    for ctx in _context_chain(exc):
        if isinstance(ctx, OSError):
            found = ctx
    return found


def _context_chain(exc: BaseException, limit: int = 20) -> Iterator[BaseException]:
    """The exception, then the one it was raised while handling, and so on (at most ``limit``)."""
    ctx: BaseException | None = exc
    for _ in range(limit):
        if ctx is None:
            return
        yield ctx
        ctx = ctx.__context__


def _start_profiler() -> Any:
    from pyinstrument import Profiler

    p = Profiler()
    p.start()
    return p


def _progress(label: str | None) -> Progress:
    """A progress bar on stderr that disappears when done; ``label``: a fixed description (None: the task's). In a
    log or a pipe, where a bar draws nothing, a plain line now and then instead (pqtwin/progress.py)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not STDERR.is_terminal:
        from pqtwin.progress import LogProgress

        return LogProgress(STDERR, label=label)  # type: ignore[return-value]  # the calls the commands make of one
    text = TextColumn("{task.description:<28}") if label is None else TextColumn(label)
    return Progress(text, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=STDERR, transient=True)


def _run_with_progress(s: scn.Scenario, modes: list[str], seed: int | None, reps: int | None, workers: int = 1,
                       ) -> Iterator[tuple[str, RunResult]]:  # fmt: skip
    from sim.runner import simulate_modes

    total = reps or s.run.replications
    with _progress(None) as bar:
        tasks = {m: bar.add_task(f"{s.name} [{m}]", total=total) for m in modes}
        yield from simulate_modes(s, modes, seed, reps, lambda m, done: bar.update(tasks[m], completed=done),
                                  workers=workers)  # fmt: skip


@app.command("calibrate")
def calibrate_cmd(
    out: Annotated[Path, typer.Option("--out", parser=path_arg, help="profile file to write (YAML)")],
    provider: Annotated[
        str | None, typer.Option(callback=_given("provider"), help="only this provider (openssl | liboqs)")
    ] = None,
    algorithms: Annotated[
        str | None, typer.Option(callback=_algorithms, help="comma-separated algorithm names")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="short time budgets: under a minute")] = False,
    name: Annotated[
        str | None, typer.Option(callback=_profile_name, help="profile name (default: calibrated-<hostname>)")
    ] = None,
    backend: Annotated[
        str, typer.Option(callback=_text, help="local (this machine) | k8s (a Job on every cluster node)")
    ] = "local",
    nodes: Annotated[
        str | None, typer.Option(callback=_nodes, help="k8s: comma-separated nodes (default: all Ready)")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="k8s: kubeconfig file (default: $KUBECONFIG)")] = None,
    context: Annotated[str | None, typer.Option(callback=_given("context"), help="k8s: kubeconfig context")] = None,
    namespace: Annotated[str | None, typer.Option(callback=_namespace, help="k8s: namespace (default pqtwin)")] = None,
    image: Annotated[
        str | None, typer.Option(callback=_image, help="k8s: image (default pq-iomt-twin:<version>)")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="k8s: leave the Jobs in the cluster")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="k8s: print the manifests, touch no cluster")] = False,
    from_run: Annotated[
        list[Path] | None,
        typer.Option("--from-run", parser=path_arg, help="fit overheads from this twin run (repeat: pooled)"),
    ] = None,
    base: Annotated[
        Path | None, typer.Option(parser=path_arg, help="--from-run: the profile to extend (default: the run's)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="k8s: replace earlier profiles in --out")] = False,
) -> None:
    """Measure this machine's crypto, serialisation and FL compute costs into a calibration profile
    (--backend k8s: every node of a Kubernetes cluster, one profile per node in the --out directory;
    --from-run HW_DIR: the run's profile plus the overheads of the twin's code paths, fitted from its spans)."""
    from sim.errors import UserError, shorten

    _only_with("--from-run", bool(from_run), base=base)
    k8s_only = dict(nodes=nodes, kubeconfig=kubeconfig, context=context, namespace=namespace, image=image, keep=keep,
                    dry_run=dry_run)  # fmt: skip
    if from_run:  # fits the run's spans: measures nothing, here or on a cluster
        _only_with("a calibration that measures (not --from-run)", False, provider=provider, algorithms=algorithms,
                   quick=quick, backend=None if backend == "local" else backend, **k8s_only)  # fmt: skip
        _calibrate_from_run(from_run, base, out, name)
        return
    if backend == "k8s":
        _calibrate_k8s(out, provider, algorithms, quick, nodes, kubeconfig, context, namespace, image, keep, dry_run,
                       force)  # fmt: skip
        return
    if backend != "local":
        raise UserError(f"--backend: must be local or k8s (got {shorten(repr(backend))})")
    _only_with("--backend k8s", False, **k8s_only)
    _check_profile_out(out)
    from hw.calibrate import calibrate
    from sim.loading import refuse_foreign_file
    from sim.profile import write_profile

    refuse_foreign_file(out, "--out", "a calibration profile", _is_profile)

    names = [a.strip() for a in algorithms.split(",") if a.strip()] if algorithms else None
    with _progress(None) as bar:
        task = bar.add_task("calibrating", total=1)

        def step(op: str, done: int, total: int) -> None:
            bar.update(task, description=op, completed=done, total=total)

        data = calibrate(names, provider, quick, progress=step)
    if name is not None:
        data["profile"] = name
    with _writing(out.parent):
        write_profile(data, out)
    _say(f"profile: {out} ({len(data['ops'])} operations, {data['platform']['cpu']})")
    from hw.machine import STEADY_SPREAD, calibrated_unsteady

    if calibrated_unsteady(spread := data["platform"].get("speed_probe_spread")):
        _warn(f"the cores changed speed during the calibration (speed probe spread {spread:.2f}x > "
              f"{STEADY_SPREAD}x): it prices their fast state (platform.speed_probe_us), so a later run in the slow "
              "state reads slower than simulated; calibrate on a steady machine to price what it runs")  # fmt: skip


def _check_profile_out(out: Path) -> None:
    """A profile file we can write: a .yaml name, not a directory, in a directory that exists."""
    from hw import rundir
    from sim.errors import UserError, shorten
    from sim.loading import exists

    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out: profile files end in .yaml (got {shorten(repr(str(out)), 200)})")
    rundir.check_out(out.parent)
    if not exists(out.parent):
        raise UserError(f"--out: no directory {out.parent} to write {out.name} in")
    if exists(out) and Path(out).is_dir():
        raise UserError(f"--out: {out} is a directory; give a .yaml file")


def _is_profile(path: Path) -> bool:
    """An earlier profile, one ``--out`` may replace: a YAML mapping with a profile's name and operations, loading or
    not (make run calibrates again over a profile an older version wrote, which no longer loads)."""
    from sim.errors import UserError
    from sim.loading import load_yaml_file

    try:
        data = load_yaml_file(path)
    except UserError:
        return False
    return {"profile", "ops"} <= set(data)


def _calibrate_from_run(run_dirs: list[Path], base: Path | None, out: Path, name: str | None) -> None:
    _check_profile_out(out)
    from hw.fit import fit_from_run
    from sim.errors import UserError, shorten
    from sim.loading import check_not_a_run_file, exists, refuse_foreign_file

    check_not_a_run_file(out, "--out", run_dirs, "fitted.yaml")
    refuse_foreign_file(out, "--out", "a calibration profile", _is_profile)
    from sim.profile import write_profile

    if base is not None and not exists(base):
        raise UserError(f"--base: file not found (got {shorten(repr(str(base)), 200)})")
    fit = fit_from_run(run_dirs, base)
    run_dir = ", ".join(str(r) for r in run_dirs)
    if name is not None:
        fit.profile["profile"] = name
    with _writing(out.parent):
        write_profile(fit.profile, out)
    kinds = ", ".join(fit.profile["overheads"]) or "none"
    _say(f"profile: {out} (overheads fitted from {fit.rows} spans of {run_dir}: {kinds})")
    sized = {
        k: o["per_call_by_parameters"] for k, o in fit.profile["overheads"].items() if o.get("per_call_by_parameters")
    }
    if sized:  # a scenario is priced at its own model's size (sim/profile.py ``Overhead.per_call_by_parameters``)
        sizes = sorted({int(x) for pts in sized.values() for x, _ in pts})
        _say(f"  by model size ({', '.join(f'{x:,}' for x in sizes)} parameters): {', '.join(sized)}")
    if cold := [k for k, o in fit.profile["overheads"].items() if o.get("cold_per_call_s") or o.get("cold_per_byte_s")]:
        _say(f"  a burst's first call dearer (sim/profile.py Overhead.cold_s): {', '.join(cold)}")
    if between := fit.profile["overheads"].get("train", {}).get("linear_between_parameters"):
        _say(f"  training steps between {between[0]:,.0f} and {between[1]:,.0f} parameters: on the line between them")
    if fit.busy_runs:
        _warn(f"fitted from {len(fit.busy_runs)} of {len(run_dirs)} run(s) measured on a busy machine: "
              f"{'; '.join(fit.busy_runs)}: their overheads carry the neighbours' load, so the profile prices "
              "this machine dearer than it is; fit from runs on a quiet machine")  # fmt: skip


def _calibrate_k8s(out: Path, provider: str | None, algorithms: str | None, quick: bool, nodes: str | None,
                   kubeconfig: Path | None, context: str | None, namespace: str | None, image: str | None,
                   keep: bool, dry_run: bool, force: bool) -> None:  # fmt: skip
    from hw import rundir
    from hw.k8s import calibrate_k8s
    from sim.errors import UserError

    if out.suffix in (".yaml", ".yml"):
        raise UserError(f"--out: with --backend k8s, a directory for one profile per node (got {str(out)!r})")
    rundir.check_out(out)
    names = [a.strip() for a in algorithms.split(",") if a.strip()] if algorithms else None
    node_list = [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None
    options: dict[str, Any] = dict(
        nodes=node_list,
        quick=quick,
        provider=provider,
        algorithms=names,
        kubeconfig=kubeconfig,
        context=context,
        namespace=namespace,
        image=image,
        keep=keep,
    )
    if dry_run:
        typer.echo(calibrate_k8s(out, dry_run=True, **options)["manifests"], nl=False)
        return
    # before --out is claimed (--force removes the earlier logs): what calibrate_k8s would refuse first
    from hw.k8s.names import DEFAULT_IMAGE, DEFAULT_NAMESPACE, check_image, check_namespace, check_nodes

    check_namespace(DEFAULT_NAMESPACE if namespace is None else namespace)
    check_image(DEFAULT_IMAGE if image is None else image)
    if node_list:
        check_nodes(node_list)
    _calibration_preflight(kubeconfig, context, node_list)
    with _progress(None) as bar:
        task = bar.add_task("calibration Jobs", total=len(node_list) if node_list else None)

        def step(node: str, done: int, total: int) -> None:
            bar.update(task, description=f"calibrated {node}", completed=done, total=total)

        with rundir.claimed(out, force, outputs=("logs",), markers=("logs",)), _writing(out):
            written = calibrate_k8s(out, progress=step, **options)
    for node, path in written.items():
        _say(f"profile: {path} (node {node})")


@app.command("study")
def study_cmd(
    study: Annotated[
        Path, typer.Argument(parser=path_arg, help="study file (default scenarios/studies/paper-3node.yaml)")
    ] = Path("scenarios/studies/paper-3node.yaml"),
    out_given: Annotated[
        str, typer.Option("--out", help="directory for study.json, study.svg, study.md")
    ] = "runs/study",  # text, not a Path: typer makes '' the current directory
    workers: Annotated[int, typer.Option(min=0, max=256, help="processes (0: one per core of this machine)")] = 0,
    force: Annotated[bool, typer.Option("--force", help="replace an earlier study's files in --out")] = False,
    max_minutes: Annotated[
        float, typer.Option(min=0.01, max=1e6, help="refuse a study estimated to take longer (all its points)")
    ] = 60.0,
) -> None:
    """Which of a study's unpublished choices reproduce its headline figures: one axis at a time, the grid of the
    two most influential numeric axes, random combinations; the contour plot and the reproduction table."""
    import json
    import os

    from rich.table import Table

    from hw import rundir
    from pqtwin import studyreport as rep
    from sim.contract import atomic_write
    from sim.cost import duration
    from sim.errors import UserError
    from sim.study import check_levels, fmt_ci, load_study, planned_cost, reproductions, run_study

    out = _out_path(out_given) or Path("runs/study")
    spec, scenario = load_study(study, check=False)
    n_points, total_s = planned_cost(spec, check_levels(study, spec, scenario))
    workers = workers or os.cpu_count() or 1
    wall_s = total_s / min(workers, n_points)
    if wall_s > max_minutes * 60:  # before --out is claimed
        raise UserError(f"{study}: the study's {n_points:,} points need ~{duration(wall_s)} on {workers} worker(s) "
                        f"(~{duration(total_s)} of simulation), over the {max_minutes:g} min budget (--max-minutes); "
                        "fewer random_points, replications or levels make it shorter")  # fmt: skip
    _say(f"{spec.study} study: up to {n_points:,} points, ~{duration(wall_s)} estimated on {workers} worker(s)")
    outputs = ("study.json", "study.svg", "study.md")  # a directory of the user's is claimed as a run's is (rundir)
    with rundir.claimed(out, force, outputs, outputs[:1], discard=True), _writing(out), _progress(None) as bar:
        task = bar.add_task(f"{spec.study} study", total=None)
        result = run_study(spec, scenario, workers,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))  # fmt: skip
        atomic_write(out / "study.json", json.dumps(result, indent=1))
        atomic_write(out / "study.svg", rep.svg(result, spec))
        md = "## Axes by influence\n\n" + rep.markdown(rep.ranking_rows(result))
        md += "\n## Combinations that reproduce both figures\n\n" + rep.markdown(rep.reproduction_rows(result, 1000))
        atomic_write(out / "study.md", md)
    base = rep.base_point(result)
    t = result["targets"]
    none = [None, None]
    red = fmt_ci(base.get("reduction"), base.get("reduction_ci95", none), 100, " %", 1)
    dist = fmt_ci(base.get("distribution_s"), base.get("distribution_ci95", none), 1, " s", 3)
    _say(f"base scenario: reduction {red}, distribution {dist} "
         f"(targets: ≥ {t['round_latency_reduction'] * 100:.0f} %, < {t['distribution_s']:g} s)")  # fmt: skip
    for title, rows in (("axes by influence", rep.ranking_rows(result)),
                        ("combinations that reproduce both figures", rep.reproduction_rows(result))):  # fmt: skip
        table = Table(title=title, title_justify="left")
        for col in rows[0] if rows else ["(none)"]:
            table.add_column(col)
        for row in rows:
            table.add_row(*row.values())
        STDOUT.print(table)
    n_ok, n = len(reproductions(result)), len(result["points"])
    failed = [p for p in result["points"] if "error" in p]
    _say(f"{n_ok} of {n} points reproduce both figures; plane: {result['plane']['x']} x {result['plane']['y']}")
    for p in failed[:5]:
        _warn(f"point {rep.describe(result, p)}: {p['error']}")
    _say(f"results: {out}/ (study.json, study.svg, study.md)")


hw_app = typer.Typer(cls=_Group, no_args_is_help=True, help="The hardware twin: run a scenario for real.")
app.add_typer(hw_app, name="hw")


def _check_backend(s: Any, backend: str, attack: str | None) -> None:
    """Refuse (one line) what the backend cannot run here; warn what the netns backend does not apply."""
    from sim.errors import UserError, shorten

    if backend != "local" and attack is not None:
        raise UserError(f"--attack: only with --backend local (got {shorten(repr(attack))})")
    if backend != "netns":
        return
    from hw.netns import not_applied, unavailable, unsupported

    if (why := unavailable() or unsupported(s)) is not None:
        raise UserError(f"--backend netns: {why}")
    if (warning := not_applied(s)) is not None:
        _warn(f"--backend netns: {warning}")


def _attack_on(s: Any, attack: str | None) -> tuple[str, str] | None:
    """``--attack KIND[:POD]`` as (kind, client pod); a pod that is no client is refused before the run (the twin
    found it only once its nodes had started, leaving a failed run in --out)."""
    from hw.attack import ATTACKS
    from sim.errors import UserError, shorten

    if attack is None:
        return None
    kind, colon, pod = attack.partition(":")
    if kind not in ATTACKS:
        raise UserError(f"--attack: must be one of {', '.join(ATTACKS)}[:POD] (got {shorten(repr(attack))})")
    if colon and not pod:  # "tamper:" ran against the first client
        raise UserError(f"--attack: no pod after ':' (give {kind} or {kind}:POD)")
    clients = [p.name for p in s.pods("client")]
    if pod and pod not in clients:
        raise UserError(f"--attack: no client pod {shorten(repr(pod))} (clients: {', '.join(clients)})")
    return kind, pod or clients[0]


def _cluster_preflight(kubeconfig: Path | None, context: str | None, nodes: list[str] | None, where: str) -> None:
    """The cluster answers with this kubeconfig and context, and has ``nodes`` Ready (when the user may list nodes):
    checked before --out is claimed, as --force removed the earlier results there first and a missing kubeconfig,
    an unreachable server or a missing node then cost the user them. The backend connects again for the run."""
    from hw.k8s.client import Cluster, NoNodeAccess

    cluster = Cluster(kubeconfig, context)
    if nodes:
        with contextlib.suppress(NoNodeAccess):  # the backend goes on unchecked, and says so
            cluster.check_hosts(nodes, where)


def _calibration_preflight(kubeconfig: Path | None, context: str | None, nodes: list[str] | None) -> None:
    """``_cluster_preflight`` for a calibration: without --nodes, that the cluster has a Ready node to calibrate
    and that this user may list them, which the backend refused only after --out was claimed."""
    from hw.k8s.backend import nodes_to_calibrate
    from hw.k8s.client import Cluster

    nodes_to_calibrate(Cluster(kubeconfig, context), nodes)


@hw_app.command("run")
def hw_run_cmd(
    scenario: Annotated[Path, typer.Argument(parser=path_arg, help="scenario YAML file")],
    backend: Annotated[
        str,
        typer.Option(
            callback=_text,
            help="local (processes here) | netns (processes here, each host a network namespace: real TCP over "
            "shaped veth links; root) | k8s (pods on a Kubernetes cluster)",
        ),
    ] = "local",
    out_dir: Out = None,
    mode: Annotated[
        str | None,
        typer.Option(
            callback=_text,
            help="sequential | concurrent | both (local, netns: rounds in turn, S C C S ..., split into DIR/sequential "
            "and DIR/concurrent; the reduction paired round by round) (default: the scenario's)",
        ),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(min=1, max=MAX_ROUNDS, help="FL rounds (default: the scenario's)")
    ] = None,
    seed: Seed = None,
    set_: SetOpt = None,
    attack: Annotated[
        str | None,
        typer.Option(
            callback=_text,
            help="demo an attack: tamper|replay|truncate|downgrade (on-path) or "
            "poison|malform (a compromised client), [:POD]",
        ),
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="k8s: kubeconfig file (default: $KUBECONFIG)")] = None,
    context: Annotated[str | None, typer.Option(callback=_given("context"), help="k8s: kubeconfig context")] = None,
    namespace: Annotated[str | None, typer.Option(callback=_namespace, help="k8s: namespace (default pqtwin)")] = None,
    image: Annotated[
        str | None, typer.Option(callback=_image, help="k8s: image (default pq-iomt-twin:<version>)")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="k8s: leave the run's objects in the cluster")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="k8s: print the manifests, touch no cluster")] = False,
    reveal_secrets: Annotated[
        bool, typer.Option("--reveal-secrets", help="k8s --dry-run: print the private keys in the Secrets")
    ] = False,
    start_timeout: Annotated[
        float, typer.Option(callback=_finite_in(1, 86_400), help="k8s: seconds the pods may take to start")
    ] = 600.0,
    calibrated: Annotated[
        Path | None,
        typer.Option(
            parser=path_arg,
            help="k8s: per-node profiles (pqtwin calibrate --backend k8s --out DIR) to check against the scenario's",
        ),
    ] = None,
    force: Force = False,
    max_memory_gib: TwinMemory = None,
) -> None:
    """Run a scenario on the hardware twin; writes spans.parquet, summary.json and status.json."""
    from hw import rundir
    from sim import cost as costs
    from sim import scenario as scn
    from sim.errors import UserError, shorten

    if backend not in ("local", "netns", "k8s"):
        raise UserError(f"--backend: must be local, netns or k8s (got {shorten(repr(backend))})")
    _check_twin_mode(mode, backend)
    given = _out_path(out_dir)
    s = scn.load_scenario(scenario, set_, priced=False)  # the twin measures: any suite the providers implement
    out = given or Path("runs") / f"{s.name}-hw"
    attack_on = _attack_on(s, attack)
    _check_backend(s, backend, attack)
    _only_with("--backend k8s", backend == "k8s", kubeconfig=kubeconfig, context=context, namespace=namespace,
               image=image, keep=keep, dry_run=dry_run)  # fmt: skip
    _only_with("--dry-run", dry_run, reveal_secrets=reveal_secrets)
    from hw.runconfig import first_frame_warning

    if (late := first_frame_warning(s)) is not None:  # what every backend's devices do otherwise
        _warn(late)
    if backend != "k8s" and (problem := costs.twin_problem(s, max_memory_gib or costs.twin_memory_budget_gib())):
        raise UserError(problem)
    n = rounds or s.workload.fl.rounds
    _check_both_rounds(mode, n, s.path)
    if not dry_run and (warning := costs.twin_warning(s, n)):
        _warn(warning)
    run_mode, run_seed = mode or s.workload.processing.mode, s.run.seed if seed is None else seed
    k8s: dict[str, Any] = dict(kubeconfig=kubeconfig, context=context, namespace=namespace, image=image, keep=keep,
                               start_timeout_s=start_timeout)  # fmt: skip
    if calibrated is not None and backend != "k8s":
        raise UserError(f"--calibrated: only with --backend k8s (got --backend {backend})")
    checks = _check_calibrated(s, calibrated) if calibrated is not None else None
    if backend == "k8s":  # before --out is claimed (--force removes the earlier run): what cannot run is refused first
        from hw.k8s import render_run

        k8s["rendered"] = rendered = render_run(s, run_mode, n, run_seed, namespace=namespace, image=image,
                                                reveal_secrets=reveal_secrets)  # fmt: skip
        if dry_run:
            typer.echo(rendered.manifests, nl=False)
            return
        _cluster_preflight(kubeconfig, context, sorted({p.host for p in rendered.plan.pods}),
                           f"{s.path}: deployment.hosts")  # fmt: skip
    from hw.local import check_runnable, run_local  # after the CLI's checks: the twin's modules only to run it

    if backend != "k8s":  # as k8s's render_run: what the twin cannot run, before --force removes the earlier run
        check_runnable(s, backend)

    with rundir.claimed(out, force), _writing(out), _progress(f"{s.name} [hw {backend}, {run_mode}]") as bar:
        task = bar.add_task("rounds", total=n)
        if backend == "k8s":
            from hw.k8s import run_k8s

            if checks is not None:
                from hw import profilecheck

                profilecheck.write(checks, out)
            summary = run_k8s(s, out, run_mode, n, run_seed, progress=lambda r: bar.update(task, completed=r),
                              **k8s)  # fmt: skip
        else:
            summary = run_local(s, out, run_mode, n, run_seed, progress=lambda r: bar.update(task, completed=r),
                                attack=attack_on, backend=backend)  # fmt: skip
            modes = _split_modes(out) if run_mode == "both" else None
    _report_both(summary, modes, out) if modes else _report_twin_run(summary, out)
    _say(f"results: {out}/")


def _check_twin_mode(mode: str | None, backend: str) -> None:
    from sim.errors import UserError, shorten
    from sim.runner import MODES

    if mode is not None and mode not in (*MODES, "both"):
        raise UserError(f"--mode: must be sequential, concurrent or both (got {shorten(repr(mode))})")
    if mode == "both" and backend == "k8s":
        raise UserError("--mode both: with --backend local or netns (a Kubernetes run has one mode)")


def _check_both_rounds(mode: str | None, rounds: int, path: Path) -> None:
    from sim.errors import UserError

    if mode == "both" and rounds < 2:
        raise UserError(f"{path}: --mode both runs a round of each mode at least: give --rounds 2 or more "
                        f"(got {rounds})")  # fmt: skip


def _split_modes(out: Path) -> dict[str, Summary]:
    from hw.modes import split

    return split(out)


def _report_both(whole: Summary, modes: dict[str, Summary], out_dir: Path) -> None:
    """A ``--mode both`` twin run: both modes' KPIs side by side, the paired reduction, then the whole run's facts."""
    import json

    from pqtwin.tables import modes_table
    from sim.contract import RunLayout

    cmp = json.loads(RunLayout(out_dir).modes.read_text())
    STDOUT.print(modes_table(modes["sequential"], modes["concurrent"], cmp))
    _report_twin_run(whole, out_dir, table=False)
    _say(f"each mode: {out_dir / 'sequential'}/, {out_dir / 'concurrent'}/ (rounds in turn, S C C S ...)")


@hw_app.command("recover")
def hw_recover_cmd(
    run_dir: Annotated[Path, typer.Argument(parser=path_arg, help="the run directory of a local or netns twin run")],
) -> None:
    """Write the results of a twin run whose `hw run` ended without them (killed: SIGKILL, the out-of-memory killer;
    or a full disk): the rounds its nodes finished become spans.parquet, summary.json and status.json, which
    compare, report and calibrate --from-run read."""
    from hw.local import recover_run

    with _writing(run_dir):
        summary = recover_run(run_dir)
        if summary.mode == "both":  # its rounds in each mode, as a run that ended would have them
            _split_modes(run_dir)
    _say(f"recovered: {run_dir}/ (run {summary.state}, {summary.rounds_completed} rounds)")
    for w in summary.warnings:
        _warn(w)


@hw_app.command("energy")
def hw_energy_cmd(
    run_dir: Annotated[
        Path, typer.Argument(parser=path_arg, help="a twin run directory (--backend k8s: wall-clock spans)")
    ],
    power_log: Annotated[
        Path, typer.Option("--power-log", parser=path_arg, help="CSV: time_s,node,power_w (or volts,amps)")
    ],
) -> None:
    """Measured node energy (a power meter's log) beside the energy the twin estimated from its spans; writes
    energy_measured.json into the run directory."""
    import dataclasses
    import json

    from rich.table import Table

    from hw.powerlog import measured, read_power_log
    from sim.contract import RunLayout, atomic_write, read_summary
    from sim.errors import UserError

    m = measured(run_dir, read_power_log(power_log, warn=_warn), warn=_warn)
    try:
        estimate = read_summary(RunLayout(run_dir).summary).energy
    except (OSError, ValueError) as exc:
        raise UserError(f"{run_dir}: no readable summary.json: {str(exc).splitlines()[0]}") from None
    table = Table(title=f"energy over the run ({m.window_s[1] - m.window_s[0]:.1f} s): measured vs estimated")
    for col in ("node", "measured", "estimated from spans", "estimated / measured"):
        table.add_column(col, justify="left" if col == "node" else "right")
    hosts = estimate.hosts if estimate is not None else {}
    for node, joules in sorted(m.by_node_j.items()):
        est = hosts[node].total_j.mean if node in hosts else None
        ratio = f"×{est / joules:.2f}" if est is not None and joules > 0 else "—"
        table.add_row(node, f"{joules:.2f} J", f"{est:.2f} J" if est is not None else "—", ratio)
    STDOUT.print(table)
    rounds = [j for j in m.per_round_j.values() if j is not None]
    if rounds and estimate is not None and estimate.per_round_j is not None and estimate.per_round_j.mean:
        _say(f"per FL round: measured {sum(rounds) / len(rounds):.3f} J (the run's measured hosts, "
             f"{len(rounds)} rounds), estimated {estimate.per_round_j.mean:.3f} J")  # fmt: skip
    with _writing(run_dir):
        atomic_write(run_dir / RunLayout.ENERGY_MEASURED, json.dumps(dataclasses.asdict(m), indent=1))
    _say(f"written: {run_dir / RunLayout.ENERGY_MEASURED}")


def _check_calibrated(s: scn.Scenario, directory: Path) -> list[Any]:
    """Print each host's calibrated / reference cost ratios (to stderr: a dry run's stdout is the manifests)."""
    from rich.table import Table

    from hw import profilecheck

    checks = profilecheck.check_profiles(s, directory)
    table = Table(title="calibrated / reference cost per operation (the run's sizes)", title_justify="left")
    for col in ("host", "operation", "reference", "calibrated", "ratio"):
        table.add_column(col, justify="right" if col in ("reference", "calibrated", "ratio") else "left")
    for c in checks:
        for o in c.ops:
            ref = f"{o.reference_s * 1e3:.4g} ms ({o.reference_provider or '—'})"
            cal = f"{o.calibrated_s * 1e3:.4g} ms ({o.calibrated_provider or '—'})"
            table.add_row(c.host, o.op, ref, cal, f"×{o.ratio:.2f}")
        table.add_row(c.host, f"geometric mean vs {c.reference}", "", "", f"×{c.geomean:.2f}", end_section=True)
    STDERR.print(table)
    for line in profilecheck.warnings(checks):
        _warn(line)
    return checks


def _report_twin_run(summary: Summary, out_dir: Path, table: bool = True) -> None:
    """What a twin run printed: its KPIs, accuracy, security events, dropouts and the machine's load; a run that did
    not complete is a one-line error."""
    from pqtwin.tables import summary_table
    from sim.errors import UserError

    if table:
        STDOUT.print(summary_table(summary))
    acc = ", ".join(f"{a:.3f}" for a in summary.accuracy_per_round)
    if summary.initial_accuracy is not None:
        STDOUT.print(f"accuracy: initial {summary.initial_accuracy:.3f}; after each round {acc}")
    if summary.security:
        STDOUT.print(f"security events: {summary.security}")
    if summary.machine_load is not None:
        style = "" if summary.machine_load.quiet else "[yellow]"
        STDERR.print(f"{style}{summary.machine_load.describe()}", highlight=False)
    if summary.fabric is not None:
        sets = " ".join(f"--set '{o}'" for o in summary.fabric_overrides())
        STDERR.print(f"{summary.fabric.describe()}; to simulate this fabric: pqtwin sim ... --fabric-of "
                     f"{out_dir} (or {sets})", highlight=False)  # fmt: skip
    for d in summary.dropouts:
        _warn(f"dropout: {d.pod} in round {d.round}: {d.reason}")
    for w in summary.warnings:  # a stray or damaged file left out of the results, a device emulator that never ran
        _warn(w)
    if summary.state != "completed":
        raise UserError(f"{out_dir}: run {summary.state}: {summary.reason}")


@app.command("node")
def node_cmd(
    role: Annotated[str, typer.Option(callback=_text, help="aggregator | client | devices")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="the run directory holding run.json")],
    name: Annotated[str, typer.Option(callback=_text, help="this pod's name in the scenario")],
) -> None:
    """Run one pod of a twin run (the backends start these; the same program runs in Kubernetes pods)."""
    from hw.node import main as node_main
    from sim.errors import UserError
    from sim.loading import exists

    if not exists(run_dir / "run.json"):
        raise UserError(f"--run-dir: no run.json in {run_dir} (start runs with `pqtwin hw run`)")
    raise typer.Exit(node_main(run_dir, name, role))


@app.command("compare")
def compare_cmd(
    sim_dir: Annotated[Path, typer.Argument(parser=path_arg, help="simulated run directory (pqtwin sim --out)")],
    hw_dir: Annotated[Path, typer.Argument(parser=path_arg, help="measured run directory (hardware twin)")],
    repeats: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="MORE_HW_DIRS",
            help="more measured runs of the same configuration: pooled, and the CI also holds the spread between runs",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="print compare.json instead of the table")] = False,
    out_dir: Annotated[str | None, typer.Option("--out", help="output dir (default HW_DIR/compare)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an earlier report in the output dir")] = False,
    at_speed: Annotated[
        bool,
        typer.Option(
            "--at-speed",
            help="also simulate SIM_DIR again on cores as fast as the measured runs' speed probe read them (seconds): "
            "what is left of the error is the model's, not the host's state (hw/at_speed.py)",
        ),
    ] = False,
) -> None:
    """Simulated vs measured: per metric, the error in % with its 95 % bootstrap CI (table, JSON, PNG)."""
    from hw import rundir
    from hw.compare import COMPARE_JSON, COMPARE_PNG, write_outputs
    from pqtwin.tables import fidelity_line, render_table
    from sim.contract import RunLayout

    out = _out_path(out_dir) or Path(hw_dir) / RunLayout.COMPARE
    if _both_runs(sim_dir, hw_dir, repeats or []):
        _compare_both(sim_dir, hw_dir, repeats or [], json_, out, force, at_speed)
        return
    result = _compared(sim_dir, hw_dir, repeats or [], at_speed)
    report = (COMPARE_JSON, COMPARE_PNG)
    with rundir.claimed(out, force, outputs=report, markers=report, discard=True), _writing(out):
        paths = write_outputs(result, out)
    if json_:
        typer.echo(json.dumps(result, indent=2))
    else:
        STDOUT.print(render_table(result))
        _say(f"results: {paths['json']}, {paths['png']}")
    for w in result["warnings"]:
        _warn(w)
    if not json_:  # last: the one line to read (and whether the measurement was clean)
        STDOUT.print(fidelity_line(result), highlight=False, soft_wrap=True)


def _compared(sim_dir: Path, hw_dir: Path, repeats: list[Path], at_speed: bool = False) -> dict[str, Any]:
    """compare.json's content (``at_speed``: with the model simulated at the measured speed,
    ``model_at_measured_speed``); a UserError when no metric has values in both runs (an empty report and exit 0
    would say the runs were compared)."""
    from hw.compare import compare_dirs
    from sim.errors import UserError

    result = compare_dirs(sim_dir, hw_dir, repeats)
    if not result["metrics"]:
        why = "; ".join(f"{k}: {v}" for k, v in list(result["not_compared"].items())[:2])
        raise UserError(f"{hw_dir}: nothing to compare with {sim_dir}: no metric has values in both runs ({why})")
    if at_speed:
        from hw.at_speed import at_measured_speed

        result["model_at_measured_speed"] = at_measured_speed(Path(sim_dir), [Path(hw_dir), *map(Path, repeats)])
    return result


def _both_runs(sim_dir: Path, hw_dir: Path, repeats: list[Path]) -> bool:
    """Whether compare is given a `pqtwin sim --mode both` run and `hw run --mode both` runs (each mode compared,
    and the reduction); a UserError where the measured runs are of both kinds."""
    from sim.errors import UserError
    from sim.modes_json import both_halves

    if both_halves(Path(sim_dir)) is None or both_halves(Path(hw_dir)) is None:
        return False
    if odd := [str(r) for r in repeats if both_halves(Path(r)) is None]:
        raise UserError(f"MORE_HW_DIRS: {odd[0]} is not a --mode both run, as {hw_dir} is: pool runs of one kind")
    return True


def _compare_both(sim_dir: Path, hw_dir: Path, repeats: list[Path], json_: bool, out: Path, force: bool,
                  at_speed: bool = False) -> None:  # fmt: skip
    """Each mode's halves compared (``out/sequential``, ``out/concurrent``), and the concurrent-vs-sequential
    round latency reduction the simulation predicts beside the one the twin measured over its pairs of rounds
    (``out/reduction.json``)."""
    from hw import rundir
    from hw.compare import write_outputs
    from hw.modes import REDUCTION_JSON, pooled_reduction, reduction_facts
    from pqtwin.tables import fidelity_line, reduction_line, render_table
    from sim.contract import RunLayout, write_json
    from sim.errors import UserError
    from sim.modes_json import HALVES, read_modes

    results = {m: _compared(Path(sim_dir) / m, Path(hw_dir) / m, [Path(r) / m for r in repeats], at_speed)
               for m in HALVES}  # fmt: skip
    simulated = read_modes(Path(sim_dir))
    if simulated is None:
        raise UserError(f"{sim_dir}: its {RunLayout.MODES} holds no round latency reduction (damaged?): run it again")
    reduction = reduction_facts(simulated, pooled_reduction([Path(hw_dir), *map(Path, repeats)]))
    outputs = (*HALVES, REDUCTION_JSON)
    with rundir.claimed(out, force, outputs=outputs, markers=(REDUCTION_JSON,), discard=True), _writing(out):
        paths = {m: write_outputs(results[m], out / m) for m in HALVES}
        write_json(out / REDUCTION_JSON, reduction)
    if json_:
        typer.echo(json.dumps({**results, "reduction": reduction}, indent=2))
    else:
        for m in HALVES:
            STDOUT.print(render_table(results[m]))
        _say(f"results: {', '.join(str(p['json']) for p in paths.values())}, {out / REDUCTION_JSON}")
    both = set(results[HALVES[0]]["warnings"]) & set(results[HALVES[1]]["warnings"])  # the run's, said once
    for w in results[HALVES[0]]["warnings"]:
        _warn(w if w in both else f"{HALVES[0]}: {w}")
    for w in results[HALVES[1]]["warnings"]:
        if w not in both:
            _warn(f"{HALVES[1]}: {w}")
    if not json_:  # last: the lines to read, the fidelity (and whether the machine was quiet) at the end
        STDOUT.print(reduction_line(reduction), highlight=False, soft_wrap=True)
        for m in HALVES:
            STDOUT.print(f"{m}: {fidelity_line(results[m])}", highlight=False, soft_wrap=True)


@app.command("report")
def report_cmd(
    run_dir: Annotated[
        Path,
        typer.Argument(
            parser=path_arg, metavar="RUN_DIR", help="a run directory (pqtwin sim --out, pqtwin hw run --out)"
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", parser=path_arg, help="the HTML file to write (self-contained: opens offline)")
    ],
    baseline: Annotated[
        Path | None, typer.Option(parser=path_arg, help="a run directory to compare with: KPI deltas with 95 % CIs")
    ] = None,
    pdf: Annotated[
        Path | None, typer.Option("--pdf", parser=path_arg, help="also print the report to this PDF (Chromium)")
    ] = None,
) -> None:
    """A run as one self-contained HTML report to hand over: settings, provenance of every profile value,
    KPIs with 95 % CIs, charts, deltas against a baseline, and the commands that reproduce it."""
    import shlex

    from pqtwin import report as rep
    from sim.errors import UserError
    from sim.loading import HTML_FILE, PDF_FILE, check_not_a_run_file, refuse_foreign_file
    from sim.modes_json import both_halves

    rep.check_out(out, "--out")
    check_not_a_run_file(out, "--out", [run_dir, baseline], "report.html", (".html", ".htm"))
    refuse_foreign_file(out, "--out", "an HTML report", HTML_FILE)
    if pdf is not None:
        rep.check_out(pdf, "--pdf")
        check_not_a_run_file(pdf, "--pdf", [run_dir, baseline], "report.pdf", (".pdf",))
        refuse_foreign_file(pdf, "--pdf", "a PDF", PDF_FILE)
        if os.path.abspath(pdf) == os.path.abspath(out):
            raise UserError(f"--pdf: the same file as --out (got {str(pdf)!r})")
    halves = both_halves(run_dir) if baseline is None else None
    base: rep.ReportRun | None = None
    if halves is not None:  # a --mode both run: its concurrent rounds against its sequential ones
        run, base = rep.load_run(halves[1]), rep.load_run(halves[0])
    else:
        run = rep.load_run(run_dir)
        base = rep.load_run(baseline, "--baseline") if baseline is not None else None
    if base is not None and (warning := rep.name_warning(base, run)):
        _warn(f"--baseline {baseline}: {warning}")
    args = [str(run_dir), *(["--baseline", str(baseline)] if baseline else []), "--out", str(out)]
    line = "pqtwin report " + shlex.join([*args, *(["--pdf", str(pdf)] if pdf else [])])
    rep.write_file(out, rep.report_html(run, base, report_command=line), "--out")
    _say(
        f"report: {out}" + (" (a --mode both run: its concurrent rounds against its sequential ones)" if halves else "")
    )
    if pdf is not None:
        pages = rep.write_pdf(out, pdf)
        _say(f"pdf: {pdf} ({pages} pages)")


def main(argv: list[str] | None = None) -> None:
    """The console entry point: every outcome is an exit code, every problem one line on stderr."""
    _printable_anywhere()
    code = run(argv)
    # the outcome is decided and said: a late Ctrl-C (pressed a third time) must not turn it into a kill by SIGINT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # what the command made dies with the process: the collector need not scan it while the interpreter ends
    # (the paper run: ~0.1 s of its ~1.4 s; files are written and closed by then, stdout is flushed at exit)
    gc.freeze()
    sys.exit(code)


def _printable_anywhere() -> None:
    """Standard output and error that take any text: under a locale whose encoding cannot write what we print
    (`LC_ALL=C` without Python's UTF-8 mode: ASCII), a character such as an em dash is escaped, not an error raised
    after the run's files were written."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


# open files a command may need at once: a twin run's processes, sockets and logs, a sweep's Dask cluster (a fault
# hunt: a sweep hung with library tracebacks at 12, Dask's nanny failed at 16-32, a twin run at 16; 48 and up ran)
MIN_OPEN_FILES = 64
WANT_OPEN_FILES = 4096


def _enough_open_files() -> None:
    """Raise this process's soft limit of open files towards ``WANT_OPEN_FILES`` (up to its hard limit: anyone may),
    as a shell's low ``ulimit -n`` made commands fail half-way; UserError if the hard limit is below what a command
    needs (it is what an administrator set)."""
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return
    cap = WANT_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, WANT_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < cap:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (cap, hard))
            soft = cap
    if soft != resource.RLIM_INFINITY and soft < MIN_OPEN_FILES:
        from sim.errors import UserError

        raise UserError(f"this process may open at most {soft} files (ulimit -n; hard limit {hard}); pqtwin needs "
                        f"{MIN_OPEN_FILES}: raise the limit (ulimit -n {MIN_OPEN_FILES})")  # fmt: skip


def _utf8_arguments(args: list[str]) -> None:
    """Refuse an argument that is not UTF-8 (a path with a Latin-1 byte: Python hands it on as surrogates), naming
    its option (or its place) and the byte: pqtwin writes its arguments (paths, names, the command line) into UTF-8
    JSON, HTML and Parquet, where such a string cannot go, and the first output written failed with an internal
    error."""
    for i, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            from sim.errors import UserError

            raw = os.fsencode(arg)
            option, eq, _ = arg.partition("=")
            if arg.startswith("-") and eq:
                where = option
            elif i and args[i - 1].startswith("-"):
                where = args[i - 1]
            else:
                where = f"argument {i + 1}"
            byte = os.fsencode(arg[exc.start])[0]
            raise UserError(f"{where}: not UTF-8 text: byte 0x{byte:02x} in {repr(raw)[2:-1]}; pqtwin writes its "
                            "arguments into UTF-8 files (JSON, HTML, Parquet): rename the file or directory, or use a "
                            "link to it with a UTF-8 name") from None  # fmt: skip


# numpy's floating-point warnings ("overflow encountered in multiply"): a cost or size too large to compute says so in
# one line where the run's results are written (sim/runner.py ``write_run``), not in numpy's words on stderr
FLOAT_WARNINGS = r"(overflow|underflow|invalid value|divide by zero) encountered"


def run(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2: a mistake in the input, 1: an internal error)."""
    with warnings.catch_warnings():  # this command's: a library caller's filters are as they were after it
        warnings.filterwarnings("ignore", message=FLOAT_WARNINGS, category=RuntimeWarning)
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        _enough_open_files()
        _utf8_arguments(sys.argv[1:] if argv is None else argv)
        rv = app(args=argv, prog_name="pqtwin", standalone_mode=False)
        if rv == 130:  # click turns a Ctrl-C into this exit code (and a blank line) when not standalone
            return _interrupted(getattr(sys.modules.get("hw.lifecycle"), "last_stop", None))
        return rv if isinstance(rv, int) else 0
    except ClickException as exc:  # typer's own checks: a bad option value, a missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer has printed the help
            return int(getattr(exc, "exit_code", 2))
        _error([_usage_line(exc)])
        return 2 if isinstance(exc, UsageError) else int(getattr(exc, "exit_code", 1))
    except (KeyboardInterrupt, typer.Abort) as exc:
        if isinstance(exc, typer.Abort) and isinstance(exc.__cause__, EOFError):  # click's name for any EOFError
            return _failed(exc.__cause__)  # (a file read past its end, a damaged module): not a Ctrl-C
        return _interrupted(next((e for e in _context_chain(exc) if hasattr(e, "signum")), None))
    except BrokenPipeError:  # stdout closed early (`pqtwin scenario schema | head`): nothing left to say
        sys.stdout = None  # no flush of the dead pipe at exit
        return 1
    except OSError as exc:
        return _os_error(exc)
    except Exception as exc:
        return _failed(exc)


def _failed(exc: Exception) -> int:
    """The line and exit code of a command that raised ``exc``: a mistake in the input (2), damaged cached
    bytecode of ours (1, the files removed: pqtwin/bytecode.py) or a bug (1, the traceback saved)."""
    # Ctrl-C inside compiled code (numba) comes back as a SystemError raised while handling it
    if any(isinstance(e, KeyboardInterrupt) for e in _context_chain(exc)):
        STDERR.print("interrupted", highlight=False)
        return 130
    errors = sys.modules.get("sim.errors")  # a UserError comes from there, so whatever raised one loaded it
    if errors is not None and isinstance(exc, errors.UserError):  # a mistake in the input
        _error(exc.lines)
        return 2
    from pqtwin.bytecode import damaged_bytecode

    if (line := damaged_bytecode(exc)) is not None:
        _error([line])
        return 1
    _internal_error(exc)  # a bug: one line and a saved traceback, never a raw traceback
    return 1


def _os_error(exc: OSError) -> int:
    """The line of an OSError that is the machine's, not a bug (a full disk, a closed output, the open-files limit);
    an internal error otherwise."""
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        _error([f"too many open files ({exc.strerror}): raise the limit (ulimit -n) or run fewer at once"])
        return 1
    if exc.errno not in NO_ROOM:
        _internal_error(exc)
        return 1
    where = exc.filename or ("standard output" if _stdout_broken() else "a file")
    if where == "standard output":
        sys.stdout = None  # nothing more can be written there, nor flushed at exit
    _error([f"cannot write {where}: {exc.strerror or exc}"])  # the disk's or the redirection's, not a bug
    return 1


def _interrupted(stop: Any) -> int:
    """The last line of a stopped command, and its exit code: 130 for Ctrl-C, 128 + the signal for a
    ``hw.lifecycle.Stopped`` (SIGTERM 143, SIGHUP 129), as a shell reports a process the signal ended."""
    STDERR.print("interrupted" + (f" by {stop}" if stop is not None else ""), highlight=False)
    return 128 + int(stop.signum) if stop is not None else 130


def _error(lines: list[str]) -> None:
    from sim.errors import shorten

    for line in lines:
        STDERR.print(Text.assemble(("error:", "red"), " ", shorten(line, 2000)), soft_wrap=True, highlight=False)


def _usage_line(exc: Exception) -> str:
    from sim.errors import shorten

    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    message = getattr(exc, "format_message", lambda: str(exc))()
    return shorten(" ".join(str(message).split()), 500) + hint


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)  # writes the machine refused


def _stdout_broken() -> bool:
    """Standard output cannot be written (`> /dev/full`): what could not take a line cannot take a flush either."""
    try:
        sys.stdout.write("\n")
        sys.stdout.flush()
    except OSError:
        return True
    return False


def _internal_error(exc: BaseException) -> None:
    """One line naming the exception, and where its traceback was saved for a bug report."""
    from sim.errors import shorten

    text = "".join(traceback.format_exception(exc))
    where = ""
    try:
        fd, path = tempfile.mkstemp(prefix=f"pqtwin-error-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:  # whatever the locale's encoding
            f.write(text)
        where = f"; traceback saved to {path}"
    except (OSError, ValueError):
        pass
    what = "out of memory" if isinstance(exc, MemoryError) else f"{type(exc).__name__}: {exc}"
    STDERR.print(Text(f"internal error: {shorten(what, 300)}{where} (please report it)"), soft_wrap=True,
                 highlight=False)  # fmt: skip


from pqtwin import sweepcli as _sweepcli  # noqa: E402, F401  (registers `pqtwin sweep` on app)
