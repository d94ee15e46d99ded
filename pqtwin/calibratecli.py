"""``pqtwin calibrate``: this machine, a twin run's code paths (``--from-run``) or a cluster's nodes
(``--backend k8s``) measured into a profile.

Like the rest of the command line, this module imports typer and rich only; the command imports the model
and the twin when it runs (pqtwin/cli.py: start-up).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    pass


from pqtwin.cli import (
    Context,
    DryRun,
    Image,
    Kubeconfig,
    Namespace,
    _algorithms,
    _given,
    _nodes,
    _only_with,
    _profile_name,
    _progress,
    _say,
    _text,
    _warn,
    _writing,
    app,
    path_arg,
)


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
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = None,
    image: Image = None,
    keep: Annotated[bool, typer.Option("--keep", help="k8s: leave the Jobs in the cluster")] = False,
    dry_run: DryRun = False,
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
