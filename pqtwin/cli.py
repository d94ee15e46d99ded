"""The ``pqtwin`` command: simulate, validate scenarios, run the hardware twin, calibrate, compare.

The one module that owns the command line; it calls sim and hw through their public functions (hw may
import sim, never the reverse, so the command is assembled here, outside both). User mistakes surface as
one line per problem on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hw.attack import ATTACKS
from hw.calibrate import calibrate, write_profile
from hw.compare import compare_dirs, write_outputs
from hw.fit import fit_from_run
from pqtwin.tables import fidelity_line, modes_table, render_table, summary_table
from sim import scenario as scn
from sim.contract import RunLayout, Summary, write_json
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
STDOUT = Console()
STDERR = Console(stderr=True)


@scenario_app.command("schema")
def scenario_schema() -> None:
    """Print the JSON Schema of scenario files."""
    typer.echo(json.dumps(scn.schema(), indent=2))


@scenario_app.command("check")
def scenario_check(file: Path, set_: Annotated[list[str] | None, typer.Option("--set")] = None) -> None:
    """Validate a scenario file (schema, references, profiles, routes)."""
    s = scn.load_scenario(file, set_)
    n_dev = sum(p.count for p in s.workload.devices)
    STDOUT.print(f"{file}: ok — {len(s.deployment.hosts)} hosts, {len(s.deployment.pods)} pods, {n_dev} devices")


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
        write_json(RunLayout(out_dir).modes, comparison)
        STDOUT.print(modes_table(runs["sequential"].summary, runs["concurrent"].summary, comparison))
    else:
        STDOUT.print(summary_table(runs[modes[0]].summary))
    for m, r in runs.items():
        for w in r.summary.warnings:
            STDERR.print(f"[yellow]warning ({m}):[/] {w}")
    STDOUT.print(f"results: {out_dir}/")


def _start_profiler() -> Any:
    from pyinstrument import Profiler

    p = Profiler()
    p.start()
    return p


def _run_with_progress(s: scn.Scenario, mode: str, seed: int | None, reps: int | None) -> RunResult:
    total = reps or s.run.replications
    columns = (TextColumn(f"{s.name} [{mode}]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=STDERR, transient=True) as bar:
        task = bar.add_task("replications", total=total)
        return simulate(s, mode, seed, reps, progress=lambda done: bar.update(task, completed=done))


@app.command("calibrate")
def calibrate_cmd(
    out: Annotated[Path, typer.Option("--out", help="profile file to write (YAML)")],
    provider: Annotated[str | None, typer.Option(help="only this provider (openssl | liboqs)")] = None,
    algorithms: Annotated[str | None, typer.Option(help="comma-separated algorithm names")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="short time budgets: under a minute")] = False,
    name: Annotated[str | None, typer.Option(help="profile name (default: calibrated-<hostname>)")] = None,
    backend: Annotated[str, typer.Option(help="local (this machine) | k8s (a Job on every cluster node)")] = "local",
    nodes: Annotated[str | None, typer.Option(help="k8s: comma-separated nodes (default: all Ready)")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="k8s: kubeconfig file (default: $KUBECONFIG)")] = None,
    context: Annotated[str | None, typer.Option(help="k8s: kubeconfig context")] = None,
    namespace: Annotated[str | None, typer.Option(help="k8s: namespace (default pqtwin)")] = None,
    image: Annotated[str | None, typer.Option(help="k8s: image (default pq-iomt-twin:<version>)")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="k8s: leave the Jobs in the cluster")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="k8s: print the manifests, touch no cluster")] = False,
    from_run: Annotated[Path | None, typer.Option("--from-run", help="fit overheads from this twin run")] = None,
    base: Annotated[Path | None, typer.Option(help="--from-run: the profile to extend (default: the run's)")] = None,
) -> None:
    """Measure this machine's crypto, serialisation and FL compute costs into a calibration profile
    (--backend k8s: every node of a Kubernetes cluster, one profile per node in the --out directory;
    --from-run HW_DIR: the run's profile plus the overheads of the twin's code paths, fitted from its spans)."""
    if from_run is not None:
        _calibrate_from_run(from_run, base, out, name)
        return
    if backend == "k8s":
        _calibrate_k8s(out, provider, algorithms, quick, nodes, kubeconfig, context, namespace, image, keep, dry_run)
        return
    if backend != "local":
        raise UserError(f"--backend: must be local or k8s (got {backend!r})")
    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out: profile files end in .yaml (got {str(out)!r})")
    names = [a.strip() for a in algorithms.split(",") if a.strip()] if algorithms else None
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=STDERR, transient=True) as bar:
        task = bar.add_task("calibrating", total=1)

        def step(op: str, done: int, total: int) -> None:
            bar.update(task, description=op, completed=done, total=total)

        data = calibrate(names, provider, quick, progress=step)
    if name:
        data["profile"] = name
    write_profile(data, out)
    STDOUT.print(f"profile: {out} ({len(data['ops'])} operations, {data['platform']['cpu']})")


def _calibrate_from_run(run_dir: Path, base: Path | None, out: Path, name: str | None) -> None:
    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out: profile files end in .yaml (got {str(out)!r})")
    if base is not None and not base.is_file():
        raise UserError(f"--base: file not found (got {str(base)!r})")
    fit = fit_from_run(run_dir, base)
    if name:
        fit.profile["profile"] = name
    write_profile(fit.profile, out)
    kinds = ", ".join(fit.profile["overheads"]) or "none"
    STDOUT.print(f"profile: {out} (overheads fitted from {fit.rows} spans of {run_dir}: {kinds})", highlight=False)


def _calibrate_k8s(out: Path, provider: str | None, algorithms: str | None, quick: bool, nodes: str | None,
                   kubeconfig: Path | None, context: str | None, namespace: str | None, image: str | None,
                   keep: bool, dry_run: bool) -> None:  # fmt: skip
    from hw.k8s import calibrate_k8s

    if out.suffix in (".yaml", ".yml"):
        raise UserError(f"--out: with --backend k8s, a directory for one profile per node (got {str(out)!r})")
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
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=STDERR, transient=True) as bar:
        task = bar.add_task("calibration Jobs", total=len(node_list) if node_list else None)

        def step(node: str, done: int, total: int) -> None:
            bar.update(task, description=f"calibrated {node}", completed=done, total=total)

        written = calibrate_k8s(out, progress=step, **options)
    for node, path in written.items():
        STDOUT.print(f"profile: {path} (node {node})")


hw_app = typer.Typer(no_args_is_help=True, help="The hardware twin: run a scenario for real.")
app.add_typer(hw_app, name="hw")


@hw_app.command("run")
def hw_run_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    backend: Annotated[str, typer.Option(help="local (processes here) | k8s (pods on a Kubernetes cluster)")] = "local",
    out_dir: Annotated[Path | None, typer.Option("--out", help="run directory (default runs/<name>-hw)")] = None,
    mode: Annotated[str | None, typer.Option(help="sequential | concurrent (default: the scenario's)")] = None,
    rounds: Annotated[int | None, typer.Option(min=1, help="FL rounds (default: the scenario's)")] = None,
    seed: Annotated[int | None, typer.Option(help="root seed (default: run.seed)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: dotted.path=value")] = None,
    attack: Annotated[
        str | None, typer.Option(help="demo an on-path attack: tamper|replay|truncate|downgrade[:POD]")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="k8s: kubeconfig file (default: $KUBECONFIG)")] = None,
    context: Annotated[str | None, typer.Option(help="k8s: kubeconfig context")] = None,
    namespace: Annotated[str | None, typer.Option(help="k8s: namespace (default pqtwin)")] = None,
    image: Annotated[str | None, typer.Option(help="k8s: image (default pq-iomt-twin:<version>)")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="k8s: leave the run's objects in the cluster")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="k8s: print the manifests, touch no cluster")] = False,
    start_timeout: Annotated[float, typer.Option(help="k8s: seconds the pods may take to start")] = 600.0,
) -> None:
    """Run a scenario on the hardware twin; writes spans.parquet, summary.json and status.json."""
    from hw.local import run_local

    if backend not in ("local", "k8s"):
        raise UserError(f"--backend: must be local or k8s (got {backend!r})")
    if backend == "k8s" and attack is not None:
        raise UserError(f"--attack: only with --backend local (got {attack!r})")
    if mode is not None and mode not in MODES:
        raise UserError(f"--mode: must be sequential or concurrent (got {mode!r})")
    s = scn.load_scenario(scenario, set_, priced=False)  # the twin measures: any suite the providers implement
    out_dir = out_dir or Path("runs") / f"{s.name}-hw"
    attack_on = None
    if attack is not None:
        kind, _, pod = attack.partition(":")
        if kind not in ATTACKS:
            raise UserError(f"--attack: must be one of {', '.join(ATTACKS)}[:POD] (got {attack!r})")
        attack_on = (kind, pod or s.pods("client")[0].name)
    n = rounds or s.workload.fl.rounds
    run_mode, run_seed = mode or s.workload.processing.mode, s.run.seed if seed is None else seed
    k8s: dict[str, Any] = dict(kubeconfig=kubeconfig, context=context, namespace=namespace, image=image, keep=keep,
                               start_timeout_s=start_timeout)  # fmt: skip
    if backend == "k8s" and dry_run:
        from hw.k8s import render_run

        typer.echo(render_run(s, run_mode, n, run_seed, namespace=namespace, image=image).manifests, nl=False)
        return
    columns = (TextColumn(f"{s.name} [hw {backend}, {run_mode}]"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=STDERR, transient=True) as bar:
        task = bar.add_task("rounds", total=n)
        if backend == "k8s":
            from hw.k8s import run_k8s

            summary = run_k8s(s, out_dir, run_mode, n, run_seed, progress=lambda r: bar.update(task, completed=r),
                              **k8s)  # fmt: skip
        else:
            summary = run_local(s, out_dir, run_mode, n, run_seed, progress=lambda r: bar.update(task, completed=r),
                                attack=attack_on)  # fmt: skip
    _report_twin_run(summary, out_dir)
    STDOUT.print(f"results: {out_dir}/")


def _report_twin_run(summary: Summary, out_dir: Path) -> None:
    """What a twin run printed: its KPIs, accuracy, security events, dropouts and the machine's load; a run that did
    not complete is a one-line error."""
    STDOUT.print(summary_table(summary))
    acc = ", ".join(f"{a:.3f}" for a in summary.accuracy_per_round)
    if summary.initial_accuracy is not None:
        STDOUT.print(f"accuracy: initial {summary.initial_accuracy:.3f}; after each round {acc}")
    if summary.security:
        STDOUT.print(f"security events: {summary.security}")
    if summary.machine_load is not None:
        style = "" if summary.machine_load.quiet else "[yellow]"
        STDERR.print(f"{style}{summary.machine_load.describe()}", highlight=False)
    for d in summary.dropouts:
        STDERR.print(f"[yellow]dropout:[/] {d.pod} in round {d.round}: {d.reason}")
    if summary.state != "completed":
        raise UserError(f"{out_dir}: run {summary.state}: {summary.reason}")


@app.command("node")
def node_cmd(
    role: Annotated[str, typer.Option(help="aggregator | client | devices")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="the run directory holding run.json")],
    name: Annotated[str, typer.Option(help="this pod's name in the scenario")],
) -> None:
    """Run one pod of a twin run (the backends start these; the same program runs in Kubernetes pods)."""
    from hw.node import main as node_main

    if not (run_dir / "run.json").exists():
        raise UserError(f"--run-dir: no run.json in {run_dir} (start runs with `pqtwin hw run`)")
    raise typer.Exit(node_main(run_dir, name, role))


@app.command("compare")
def compare_cmd(
    sim_dir: Annotated[Path, typer.Argument(help="simulated run directory (pqtwin sim --out)")],
    hw_dir: Annotated[Path, typer.Argument(help="measured run directory (hardware twin)")],
    json_: Annotated[bool, typer.Option("--json", help="print compare.json instead of the table")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="output dir (default HW_DIR/compare)")] = None,
) -> None:
    """Simulated vs measured: per metric, the error in % with its 95 % bootstrap CI (table, JSON, PNG)."""
    result = compare_dirs(sim_dir, hw_dir)
    paths = write_outputs(result, out_dir or Path(hw_dir) / RunLayout.COMPARE)
    if json_:
        typer.echo(json.dumps(result, indent=2))
    else:
        STDOUT.print(render_table(result))
        STDOUT.print(f"results: {paths['json']}, {paths['png']}", highlight=False, soft_wrap=True)
    for w in result["warnings"]:
        STDERR.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    if not json_:  # last: the one line to read (and whether the measurement was clean)
        STDOUT.print(fidelity_line(result), highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()  # typer reports usage errors itself; our own input errors arrive here
    except UserError as exc:
        for line in exc.lines:
            STDERR.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        STDERR.print("interrupted")
        sys.exit(130)
