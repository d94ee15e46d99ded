"""The ``pqtwin`` command: simulate, validate scenarios, run the hardware twin, calibrate, compare.

The command line's entry point (``main``, ``run``), its shared options and checks, and the ``scenario`` and ``sim``
commands; the other commands live beside it and register on ``app`` when imported at the end of this module
(``calibratecli``, ``studycli``, ``hwcli``: ``hw ...`` and ``node``, ``comparecli``: ``compare`` and ``report``,
``sweepcli``). They call sim and hw through their public functions (hw may import sim, never the reverse, so the
command is assembled here, outside both). User mistakes surface as
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

# Options of the commands that reach a Kubernetes cluster (calibrate --backend k8s, hw run --backend k8s)
Kubeconfig = Annotated[Path | None, typer.Option(help="k8s: kubeconfig file (default: $KUBECONFIG)")]
Context = Annotated[str | None, typer.Option(callback=_given("context"), help="k8s: kubeconfig context")]
Namespace = Annotated[str | None, typer.Option(callback=_namespace, help="k8s: namespace (default pqtwin)")]
Image = Annotated[str | None, typer.Option(callback=_image, help="k8s: image (default pq-iomt-twin:<version>)")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="k8s: print the manifests, touch no cluster")]

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
                max_minutes: float, fallback: str = "") -> costs.Cost:  # fmt: skip
    """Refuse a simulation over budget before it starts; warn about a long one. ``fallback``: why run.engine auto
    runs the event model instead of the kernels found at run time (said with the refusal)."""
    from sim import cost as costs
    from sim.errors import UserError
    from sim.telemetry import engine_problem

    if problem := engine_problem(s):
        raise UserError(problem)
    cost = costs.within_budget(s, reps, modes, max_memory_gib, max_minutes, fallback)
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
        runs, comparison = _simulate_into(s, modes, out, seed, replications, profile_run, procs, workers == 1,
                                          (max_memory_gib, max_minutes))  # fmt: skip
    if comparison is not None:
        STDOUT.print(modes_table(runs["sequential"].summary, runs["concurrent"].summary, comparison))
    else:
        STDOUT.print(summary_table(runs[modes[0]].summary))
    whole = {m: r for m, r in runs.items() if m == ALTERNATING}  # its halves repeat its warnings
    for m, r in (whole or runs).items():
        for w in r.summary.warnings:
            if w not in told:
                _warn(f"({'both modes, rounds in turn' if m == ALTERNATING else m}) {w}")
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
                   budget: tuple[float, float] = (DEFAULT_MAX_MEMORY_GIB, DEFAULT_MAX_MINUTES),
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
        for m, run in _run_with_progress(s, modes, seed, reps, workers, budget):  # written while the next runs
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
                       budget: tuple[float, float] = (DEFAULT_MAX_MEMORY_GIB, DEFAULT_MAX_MINUTES),
                       ) -> Iterator[tuple[str, RunResult]]:  # fmt: skip
    """The modes' runs with a progress bar; where auto's kernels give up at run time, the event model's run of that
    mode is held to the budget (memory GiB, minutes) as the estimate was before the start: refused in one line."""
    from sim.runner import simulate_modes

    def within_budget(events: scn.Scenario, why: str) -> None:
        _check_cost(events, reps, 1, *budget, fallback=why)

    total = reps or s.run.replications
    with _progress(None) as bar:
        tasks = {m: bar.add_task(f"{s.name} [{m}]", total=total) for m in modes}
        yield from simulate_modes(s, modes, seed, reps, lambda m, done: bar.update(tasks[m], completed=done),
                                  workers=workers, before_events=within_budget)  # fmt: skip


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


# the commands kept in modules of their own register on ``app`` when imported, in the order --help lists them
from pqtwin import calibratecli, studycli, hwcli, comparecli, sweepcli  # noqa: E402, F401, I001
