"""``pqtwin hw run | recover | energy`` and ``pqtwin node``: the hardware twin's commands (hw/).

Like the rest of the command line, this module imports typer and rich only; the command imports the model
and the twin when it runs (pqtwin/cli.py: start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sim import scenario as scn
    from sim.contract import Summary


from pqtwin.calibratecli import _cluster_preflight
from pqtwin.cli import (
    MAX_ROUNDS,
    STDERR,
    STDOUT,
    Context,
    DryRun,
    Force,
    Image,
    Kubeconfig,
    Namespace,
    Out,
    Seed,
    SetOpt,
    TwinMemory,
    _finite_in,
    _Group,
    _only_with,
    _out_path,
    _progress,
    _say,
    _text,
    _warn,
    _writing,
    app,
    path_arg,
)

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
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = None,
    image: Image = None,
    keep: Annotated[bool, typer.Option("--keep", help="k8s: leave the run's objects in the cluster")] = False,
    dry_run: DryRun = False,
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
