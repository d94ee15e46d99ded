"""The ``pqtwin`` command: the simulator's commands (sim/cli.py) plus the hardware twin's.

hw may import sim, never the reverse, so the full command line is assembled here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hw.attack import ATTACKS
from hw.calibrate import calibrate, write_profile
from hw.compare import compare_cmd
from sim import cli as sim_cli
from sim import scenario as scn
from sim.errors import UserError
from sim.runner import MODES

app = sim_cli.app


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
) -> None:
    """Measure this machine's crypto, serialisation and FL compute costs into a calibration profile
    (--backend k8s: every node of a Kubernetes cluster, one profile per node in the --out directory)."""
    if backend == "k8s":
        _calibrate_k8s(out, provider, algorithms, quick, nodes, kubeconfig, context, namespace, image, keep, dry_run)
        return
    if backend != "local":
        raise UserError(f"--backend: must be local or k8s (got {backend!r})")
    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out: profile files end in .yaml (got {str(out)!r})")
    names = [a.strip() for a in algorithms.split(",") if a.strip()] if algorithms else None
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=sim_cli.err, transient=True) as bar:
        task = bar.add_task("calibrating", total=1)

        def step(op: str, done: int, total: int) -> None:
            bar.update(task, description=op, completed=done, total=total)

        data = calibrate(names, provider, quick, progress=step)
    if name:
        data["profile"] = name
    write_profile(data, out)
    sim_cli.out.print(f"profile: {out} ({len(data['ops'])} operations, {data['platform']['cpu']})")


def _calibrate_k8s(out: Path, provider: str | None, algorithms: str | None, quick: bool, nodes: str | None,
                   kubeconfig: Path | None, context: str | None, namespace: str | None, image: str | None,
                   keep: bool, dry_run: bool) -> None:  # fmt: skip
    from hw.k8s import calibrate_k8s

    if out.suffix in (".yaml", ".yml"):
        raise UserError(f"--out: with --backend k8s, a directory for one profile per node (got {str(out)!r})")
    names = [a.strip() for a in algorithms.split(",") if a.strip()] if algorithms else None
    node_list = [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None
    options = dict(nodes=node_list, quick=quick, provider=provider, algorithms=names, kubeconfig=kubeconfig,
                   context=context, namespace=namespace, image=image, keep=keep)  # fmt: skip
    if dry_run:
        typer.echo(calibrate_k8s(out, dry_run=True, **options)["manifests"], nl=False)  # type: ignore[arg-type]
        return
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=sim_cli.err, transient=True) as bar:
        task = bar.add_task("calibration Jobs", total=len(node_list) if node_list else None)

        def step(node: str, done: int, total: int) -> None:
            bar.update(task, description=f"calibrated {node}", completed=done, total=total)

        written = calibrate_k8s(out, progress=step, **options)  # type: ignore[arg-type]
    for node, path in written.items():
        sim_cli.out.print(f"profile: {path} (node {node})")


def main() -> None:
    sim_cli.main()


hw_app = typer.Typer(no_args_is_help=True, help="The hardware twin: run a scenario for real.")
app.add_typer(hw_app, name="hw")


@hw_app.command("run")
def hw_run_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    backend: Annotated[str, typer.Option(help="local (processes here) | k8s (pods on a Kubernetes cluster)")] = "local",
    out: Annotated[Path | None, typer.Option("--out", help="run directory (default runs/<name>-hw)")] = None,
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
    s = scn.load_scenario(scenario, set_)
    out = out or Path("runs") / f"{s.name}-hw"
    attack_on = None
    if attack is not None:
        kind, _, pod = attack.partition(":")
        if kind not in ATTACKS:
            raise UserError(f"--attack: must be one of {', '.join(ATTACKS)}[:POD] (got {attack!r})")
        attack_on = (kind, pod or s.pods("client")[0].name)
    n = rounds or s.workload.fl.rounds
    run_mode, run_seed = mode or s.workload.processing.mode, s.run.seed if seed is None else seed
    k8s = dict(kubeconfig=kubeconfig, context=context, namespace=namespace, image=image, keep=keep,
               start_timeout_s=start_timeout)  # fmt: skip
    if backend == "k8s" and dry_run:
        from hw.k8s import run_k8s

        typer.echo(run_k8s(s, out, run_mode, n, run_seed, dry_run=True, **k8s)["manifests"], nl=False)  # type: ignore[arg-type]
        return
    columns = (TextColumn(f"{s.name} [hw {backend}, {run_mode}]"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=sim_cli.err, transient=True) as bar:
        task = bar.add_task("rounds", total=n)
        if backend == "k8s":
            from hw.k8s import run_k8s

            summary = run_k8s(s, out, run_mode, n, run_seed, progress=lambda r: bar.update(task, completed=r),
                              **k8s)  # type: ignore[arg-type]  # fmt: skip
        else:
            summary = run_local(s, out, run_mode, n, run_seed, progress=lambda r: bar.update(task, completed=r),
                                attack=attack_on)  # fmt: skip
    sim_cli.out.print(sim_cli._summary_table(summary))
    acc = ", ".join(f"{a:.3f}" for a in summary["accuracy_per_round"])
    if summary.get("initial_accuracy") is not None:
        sim_cli.out.print(f"accuracy: initial {summary['initial_accuracy']:.3f}; after each round {acc}")
    if summary["security"]:
        sim_cli.out.print(f"security events: {summary['security']}")
    for d in summary["dropouts"]:
        sim_cli.err.print(f"[yellow]dropout:[/] {d['pod']} in round {d['round']}: {d['reason']}")
    if summary["state"] != "completed":
        raise UserError(f"{out}: run {summary['state']}: {summary['reason']}")
    sim_cli.out.print(f"results: {out}/")


app.command("compare")(compare_cmd)


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
