"""``pqtwin sweep``: design-space sweeps on Dask (sim/sweep/), resumable, into a Parquet result set.

    pqtwin sweep SWEEP.yaml --out DIR [--scheduler tcp://HOST:PORT [--worker-wait-s S]] [--workers N]
                                         (``run`` is the default)
    pqtwin sweep check SWEEP.yaml        every point validated, the cost estimated, nothing run
    pqtwin sweep report DIR              DIR/report.html: main effects, sensitivity ranking, Pareto front

Like the rest of the command line, this module imports typer and rich only; the commands import the model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from pqtwin.cli import (
    DEFAULT_MAX_MEMORY_GIB,
    DEFAULT_MAX_MINUTES,
    STDERR,
    STDOUT,
    MaxMemory,
    MaxMinutes,
    _finite_in,
    _Group,
    _out_path,
    _say,
    _text,
    _warn,
    _writing,
    app,
    path_arg,
)


class _DefaultRun(_Group):
    """``pqtwin sweep FILE …`` means ``pqtwin sweep run FILE …``: a first word that is no subcommand is a file."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return list(super().parse_args(ctx, args))


sweep_app = typer.Typer(cls=_DefaultRun, no_args_is_help=True,
                        help="Design-space sweeps: many scenarios on Dask, resumable, into Parquet.")  # fmt: skip
app.add_typer(sweep_app, name="sweep")

SweepFile = Annotated[Path, typer.Argument(parser=path_arg, help="sweep file (YAML, see sweeps/paper-suites.yaml)")]
Workers = Annotated[int, typer.Option(min=0, max=1024, help="local worker processes (0: one per core)")]
HEARTBEAT_STALE_S = 15.0


@sweep_app.command("check")
def check_cmd(
    sweep: SweepFile,
    workers: Workers = 0,
    max_memory_gib: MaxMemory = DEFAULT_MAX_MEMORY_GIB,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
) -> None:
    """Validate every point of a sweep (schema, references, profiles, cost within the per-point budget) and
    estimate what running it costs."""
    import os

    from sim.cost import duration

    started = time.perf_counter()
    plan = _plan(sweep, (max_memory_gib, max_minutes), os.cpu_count() or 1)
    n_workers = workers or os.cpu_count() or 1
    _say(f"{sweep}: ok — {_counts(plan)}; {plan.spec.replications} replications each; "
         f"estimated simulation time {duration(plan.est_wall_s)}{_sampled(plan)} "
         f"(~{duration(plan.est_wall_s / n_workers)} on "
         f"{n_workers} workers; estimates run 1.3-3.6x above measured times); checked in "
         f"{time.perf_counter() - started:.1f} s")  # fmt: skip


def _sampled(plan: Any) -> str:
    n = plan.estimated
    return f" (from a uniform sample of {n:,} points)" if n < len(plan.points) else ""


def _plan(sweep: Path, budget: tuple[float, float], processes: int = 1) -> Any:
    """The sweep's plan; every invalid point is an error (a line per distinct problem)."""
    from sim.errors import UserError
    from sim.sweep.plan import plan
    from sim.sweep.spec import load_sweep

    spec, scenario = load_sweep(sweep)
    with _LazyBar(f"{spec.sweep}: checking points") as bar:  # a design near the cap takes minutes
        p = plan(spec, scenario, budget=budget, source=sweep, processes=processes,
                 progress=lambda done, total: bar.update(done, total, 0))  # fmt: skip
    if p.invalid:
        n = sum(len(v) for v in p.invalid.values())
        raise UserError([f"{sweep}: {n} of {p.designed} points cannot be simulated (skip them with a constraint):",
                         *(f"{sweep}: {line}" for line in p.problems())])  # fmt: skip
    if not p.points:
        raise UserError(f"{sweep}: no point left to run ({_counts(p)})")
    return p


def _counts(plan: Any) -> str:
    dup = f"{plan.duplicates:,} duplicates (the scenario and seed of an earlier point)"
    extra = [f"{plan.skipped:,} skipped by constraints" if plan.skipped else "", dup if plan.duplicates else ""]
    extras = "; ".join(e for e in extra if e)
    return f"{len(plan.points):,} points of {plan.designed:,} designed ({plan.spec.design})" + (
        f", {extras}" if extras else ""
    )


@sweep_app.command("run")
def run_cmd(
    sweep: SweepFile,
    out_given: Annotated[
        str | None, typer.Option("--out", help="result directory (default runs/sweep-<name>)")
    ] = None,  # text, not a Path: typer makes '' the current directory
    scheduler: Annotated[
        str | None, typer.Option(callback=_text, help="a running Dask scheduler, tcp://HOST:PORT (default: local)")
    ] = None,
    workers: Workers = 0,
    max_memory_gib: MaxMemory = DEFAULT_MAX_MEMORY_GIB,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
    heartbeat: Annotated[
        Path | None, typer.Option(hidden=True, help="stop when this file goes stale (the app's Stop)")
    ] = None,
    worker_wait_s: Annotated[
        float | None,
        typer.Option(
            callback=_finite_in(0.1, 86400),
            help="with --scheduler: how long the sweep waits for a worker, at its start and once the last "
            "one has gone, before it stops (what finished is kept; rerun to resume); default 30",
        ),
    ] = None,
) -> None:
    """Run a sweep's points (those not already in --out) on Dask; Ctrl-C stops it, rerunning resumes it."""
    from sim.cost import duration
    from sim.errors import UserError
    from sim.sweep import engine, store

    given = _out_path(out_given)
    engine.check_workers(scheduler, workers)  # before anything is planned or written
    plan = _plan(sweep, (max_memory_gib, max_minutes))
    out = given or Path("runs") / f"sweep-{plan.spec.sweep}"
    if scheduler is not None and workers:
        _warn("--workers is for the local cluster; a --scheduler has the workers started on it")
    if scheduler is None and worker_wait_s is not None:
        _warn("--worker-wait-s is for a --scheduler's workers; the local cluster starts its own")
    with _writing(out):
        store.prepare(out, plan, sweep)
    _say(f"{plan.spec.sweep}: {_counts(plan)} → {out}/ (estimated {duration(plan.est_wall_s)} of simulation)")
    try:
        with _writing(out), _LazyBar(plan.spec.sweep) as bar:
            report = engine.run(plan, out, scheduler, workers, progress=bar.update,
                                should_stop=_stale(heartbeat) if heartbeat else None,
                                worker_wait_s=worker_wait_s or engine.WORKER_WAIT_S)  # fmt: skip
    except KeyboardInterrupt:
        with _writing(out):
            store.consolidate(out)
        STDERR.print(Text(f"stopped: the points that finished are in {out}/; rerun the same command to resume"),
                     soft_wrap=True, highlight=False)  # fmt: skip
        raise
    with _writing(out):
        df = store.consolidate(out)
    _summary(report, out, len(df))
    if report.lost:  # the engine went away under the sweep: nothing of its points is lost, nothing is failed
        engine_name = f"--scheduler {scheduler}" if scheduler else "the local Dask cluster"
        raise UserError(f"{engine_name}: {report.lost} after {report.already + report.done} of "
                        f"{report.total} points; the points that finished are in {out}/; rerun the same command "
                        "to resume")  # fmt: skip


class _LazyBar:
    """The progress bar, shown from the first point on (not while the engine starts: an error there is one line)."""

    def __init__(self, label: str):
        self.label = label
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _LazyBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, done: int, total: int, failed: int) -> None:
        if self.bar is None:
            self.bar = _bar()
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done)


def _bar() -> Any:
    """rich's bar on a terminal; in a log or a pipe a plain line now and then (pqtwin/progress.py)."""
    from rich import progress as rp

    if not STDERR.is_terminal:
        from pqtwin.progress import LogProgress

        return LogProgress(STDERR)

    return rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                       rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(), console=STDERR,
                       transient=True)  # fmt: skip


def _stale(heartbeat: Path) -> Any:
    def stop() -> bool:
        try:
            return time.time() - heartbeat.stat().st_mtime > HEARTBEAT_STALE_S
        except OSError:
            return True  # the app removed it: stop

    return stop


def _summary(report: Any, out: Path, rows: int) -> None:
    if report.already:
        _say(f"resumed: {report.already} of {report.total} points were already done")
    if report.done or report.failed:
        eff = report.point_wall_s / (report.wall_s * report.workers) if report.wall_s and report.workers else 0
        workers = f"{report.workers} worker" + ("s" if report.workers != 1 else "")
        _say(
            f"ran {report.done + len(report.failed)} points on {workers} in {report.wall_s:.1f} s "
            f"(+{report.engine_s:.1f} s starting the engine; workers busy simulating {eff:.0%} of the time)"
        )
    for point, error in report.failed[:10]:
        _warn(f"point #{point} failed: {error}")
    if len(report.failed) > 10:
        _warn(f"... and {len(report.failed) - 10} more failed points (see the error column)")
    if report.stopped:
        _warn("stopped before the end: rerun the same command to resume")
    _say(f"results: {out}/results.parquet ({rows} rows); report: pqtwin sweep report {out}")


@sweep_app.command("report")
def report_cmd(
    directory: Annotated[Path, typer.Argument(parser=path_arg, help="a sweep's result directory")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default DIR/report.html)")] = None,
) -> None:
    """A self-contained HTML report of a sweep: main effects per axis, sensitivity ranking per KPI, Pareto front."""
    from rich.table import Table

    from pqtwin import sweepreport
    from sim.errors import UserError
    from sim.loading import HTML_FILE, check_not_a_run_file, out_file_problem, refuse_foreign_file
    from sim.sweep import analysis, store

    if out is not None:  # "" arrives as Path("."): a directory; the sweep's own files are its results
        if (problem := out_file_problem(out, "report.html")) is not None:
            raise UserError(f"--out: {problem}")
        check_not_a_run_file(out, "--out", [directory], "report.html", (".html", ".htm"), "sweep directory")
        refuse_foreign_file(out, "--out", "an HTML report", HTML_FILE)
    manifest = store.manifest(directory)
    df = store.results(directory)
    target = out or directory / "report.html"
    with _writing(target.parent):
        sweepreport.write(target, manifest, df)
    ranking = analysis.sensitivity(manifest, df, analysis.headline_kpis(df)[:3])
    table = Table(title="axes by influence (share of the KPI's variance their levels explain)", title_justify="left")
    for col in ranking.columns:
        table.add_column(str(col))
    for row in ranking.itertuples(index=False):
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    STDOUT.print(table)
    _say(f"report: {target}")
