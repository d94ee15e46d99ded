"""``pqtwin`` simulator commands: ``sim``, ``scenario schema``, ``scenario check``.

User mistakes surface as one line per problem on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sim import scenario as scn
from sim.errors import UserError
from sim.runner import MODES, RunResult, simulate, write_run
from sim.summary import mode_comparison

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="PQ-IoMT Twin: simulate post-quantum secured federated learning for IoMT.",
)
scenario_app = typer.Typer(no_args_is_help=True, help="Scenario files: JSON Schema and validation.")
app.add_typer(scenario_app, name="scenario")
out = Console()
err = Console(stderr=True)


@scenario_app.command("schema")
def scenario_schema() -> None:
    """Print the JSON Schema of scenario files."""
    print(json.dumps(scn.schema(), indent=2))


@scenario_app.command("check")
def scenario_check(file: Path, set_: Annotated[list[str] | None, typer.Option("--set")] = None) -> None:
    """Validate a scenario file (schema, references, profiles, routes)."""
    s = scn.load_scenario(file, set_)
    n_dev = sum(p.count for p in s.workload.devices)
    out.print(f"{file}: ok — {len(s.deployment.hosts)} hosts, {len(s.deployment.pods)} pods, {n_dev} devices")


@app.command("sim")
def sim_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="run directory (default runs/<name>)")] = None,
    seed: Annotated[int | None, typer.Option(help="root seed (default: run.seed)")] = None,
    replications: Annotated[int | None, typer.Option(min=1, help="default: run.replications")] = None,
    mode: Annotated[str | None, typer.Option(help="sequential | concurrent | both")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: dotted.path=value")] = None,
    profile: Annotated[Path | None, typer.Option(help="profile file for every host")] = None,
    profile_run: Annotated[bool, typer.Option("--profile-run", help="write a pyinstrument HTML profile")] = False,
) -> None:
    """Simulate a scenario; write spans.parquet and summary.json and print a table."""
    if mode is not None and mode not in (*MODES, "both"):
        raise UserError(f"--mode: must be sequential, concurrent or both (got {mode!r})")
    if profile is not None and not profile.exists():
        raise UserError(f"--profile: file not found (got {str(profile)!r})")
    s = scn.load_scenario(scenario, set_, profile)
    out_dir = out_dir or Path("runs") / s.name
    modes = list(MODES) if mode == "both" else [mode or s.workload.processing.mode]
    profiler = _start_profiler() if profile_run else None
    runs: dict[str, RunResult] = {}
    for m in modes:
        where = out_dir / m if len(modes) > 1 else out_dir
        runs[m] = _run_with_progress(s, m, seed, replications)
        write_run(runs[m], where, s)
    if profiler is not None:
        profiler.stop()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "profile.html").write_text(profiler.output_html())
    if len(modes) > 1:
        comparison = mode_comparison(runs["sequential"].summary, runs["concurrent"].summary)
        (out_dir / "modes.json").write_text(json.dumps(comparison, indent=2) + "\n")
        out.print(_modes_table(runs, comparison))
    else:
        out.print(_summary_table(runs[modes[0]].summary))
    for m, r in runs.items():
        for w in r.summary["warnings"]:
            err.print(f"[yellow]warning ({m}):[/] {w}")
    out.print(f"results: {out_dir}/")


def _start_profiler() -> Any:
    from pyinstrument import Profiler

    p = Profiler()
    p.start()
    return p


def _run_with_progress(s: scn.Scenario, mode: str, seed: int | None, reps: int | None) -> RunResult:
    total = reps or s.run.replications
    columns = (TextColumn(f"{s.name} [{mode}]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("replications", total=total)
        return simulate(s, mode, seed, reps, progress=lambda done: bar.update(task, completed=done))


def _fmt_kpi(k: dict[str, Any] | None, scale: float = 1e3, unit: str = "ms") -> str:
    if not k or k["mean"] is None:
        return "—"
    lo, hi = k["ci95"]
    return f"{k['mean'] * scale:.1f} {unit} [{lo * scale:.1f}, {hi * scale:.1f}]"


def _kpi_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    hosts = s["host_utilization"]
    busiest = max(hosts, key=lambda h: hosts[h]["offered"])
    return [
        ("round latency, mean [95% CI]", _fmt_kpi(s["round_latency_s"])),
        (
            "round latency p95",
            f"{s['round_latency_s']['p95'] * 1e3:.1f} ms" if s["round_latency_s"]["p95"] else "—",
        ),
        ("model distribution, mean [95% CI]", _fmt_kpi(s["model_distribution_s"])),
        ("crypto share of FL CPU time", f"{s['crypto_share'] * 100:.1f} %"),
        ("bytes on the wire / replication", f"{s['bytes_on_wire']['total'] / 1e6:.2f} MB"),
        ("busiest host (offered utilisation)", f"{busiest} {hosts[busiest]['offered'] * 100:.1f} %"),
        ("rounds completed / failed", f"{s['rounds_completed']} / {s['rounds_failed']}"),
        ("events / wall time", f"{s['events']:,} / {s['wall_s']:.2f} s"),
    ]


def _summary_table(s: dict[str, Any]) -> Table:
    t = Table(title=f"{s['scenario']} — {s['mode']}, {s['replications']} replications, seed {s['seed']}")
    t.add_column("KPI")
    t.add_column("value", justify="right")
    for name, value in _kpi_rows(s):
        t.add_row(name, value)
    phases = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in s["phase_s"].items())
    t.caption = f"phase extent per round (ms): {phases}"
    return t


def _modes_table(runs: dict[str, RunResult], cmp: dict[str, Any]) -> Table:
    seq, conc = runs["sequential"].summary, runs["concurrent"].summary
    t = Table(title=f"{seq['scenario']} — sequential vs concurrent ({seq['replications']} replications)")
    t.add_column("KPI")
    t.add_column("sequential", justify="right")
    t.add_column("concurrent", justify="right")
    for (name, a), (_, b) in zip(_kpi_rows(seq), _kpi_rows(conc), strict=True):
        t.add_row(name, a, b)
    for key, label in (("round_latency_s", "round latency"), ("model_distribution_s", "model distribution")):
        c = cmp[key]
        if c["reduction"] is not None:
            lo, hi = c["reduction_ci95"]
            t.add_row(
                f"{label} reduction [95% CI]",
                "",
                f"{c['reduction'] * 100:.1f} % [{lo * 100:.1f}, {hi * 100:.1f}]",
            )
    return t


def main() -> None:
    try:
        app()  # typer reports usage errors itself; our own input errors arrive here
    except UserError as exc:
        for line in exc.lines:
            err.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
