"""The Kubernetes backend's orchestration: ``run_k8s`` (``pqtwin hw run --backend k8s``) and ``calibrate_k8s``
(``pqtwin calibrate --backend k8s``). The client wrappers are in hw/k8s/client.py (``Cluster``, ``Objects``),
following pods and their logs in hw/k8s/watch.py (``Watcher``, ``LogFollower``).

``run_k8s`` renders the scenario (hw/k8s/render.py) with fresh identity keys, checks the cluster (API server
reachable, every scenario host a Ready node -- when the user may list nodes), creates the objects in the
run's namespace (which an admin created with the operator's Role: k8s/rbac/), watches the run's pods (``?watch=true``
on a label selector, re-opened every second) and follows every started pod's log: the aggregator prints
``pqtwin-progress`` lines (the progress callback), and each node prints its result and spans at exit
(hw/k8s/pod.py). When the aggregator has finished, the clients end on their own; the device emulators are
deleted (SIGTERM), which makes them report. The run directory gets what the local backend writes --
``spans.parquet``, ``summary.json`` (``sim.summary.summarise``, ``backend: k8s``), ``status.json``,
``run.json``, ``scenario.yaml``, ``logs/``, ``spans/``, ``nodes/`` -- plus ``manifests.yaml`` (Secrets
redacted). Everything created is deleted at the end unless ``keep``, object by object: the namespace stays.
``render_run`` (``--dry-run``) prints the same objects with the Secrets redacted unless ``reveal_secrets``.

Problems users meet become one ``UserError`` line each, saying what to check: no kubeconfig, an API server
that cannot be reached or refuses the credentials, no operator Role in the namespace (or no namespace), a
scenario host that is not a (Ready) node, an image
that cannot be pulled, a pod that cannot be scheduled, objects left by an earlier run, and timeouts
(pods not started within ``start_timeout_s``; the run not finished within rounds x round timeout + 2 min).
The run directory is written in every case (``status.json`` says why it failed).

Clocks: pods record spans on wall-clock time relative to the run's epoch (``clock: wall``); the nodes'
clocks must be NTP-synchronised (K3s nodes are, by default, through systemd-timesyncd).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw import podlog, rundir
from hw.k8s import render
from hw.k8s.client import Cluster, NoNodeAccess, Objects, node_ready
from hw.k8s.watch import Watcher, problem, started, terminated
from hw.rundir import NodeResult
from sim.contract import RunLayout, Summary, atomic_write
from sim.errors import UserError
from sim.scenario import Scenario, load_scenario, write_scenario

MANIFESTS = RunLayout.MANIFESTS  # the run's objects, Secrets redacted
REDACTED_HEAD = (
    '# pqtwin --dry-run: Secret values are redacted ("<redacted: N bytes>"), so this does not apply as is; the\n'
    "# public keys in the trust ConfigMaps belong to private keys that were never shown or kept.\n"
)

# --- run ----------------------------------------------------------------------------------------------


def _run_id(name: str) -> str:
    return f"{render.label_value(name)[:30].rstrip('-._')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


@dataclass
class Rendered:
    """A run's objects as they would be created (fresh keys in the Secrets), and their YAML."""

    scenario: Scenario
    plan: render.Plan
    namespace: str
    run_id: str
    objects: list[dict[str, Any]]
    reveal_secrets: bool = False
    image: str = render.DEFAULT_IMAGE

    @property
    def manifests(self) -> str:
        """The objects as YAML; Secret values redacted unless ``reveal_secrets`` (then `kubectl apply -f` runs it)."""
        if self.reveal_secrets:
            return render.to_yaml(self.objects)
        return REDACTED_HEAD + render.to_yaml(render.redact(self.objects))


def render_run(scenario: Scenario | str | Path, mode: str, rounds: int, seed: int, *, namespace: str | None = None,
               image: str | None = None, reveal_secrets: bool = False) -> Rendered:  # fmt: skip
    """Every object of a run on the cluster, touching no cluster (``--dry-run`` prints ``manifests``: private
    keys redacted unless ``reveal_secrets``)."""
    ns, image = _target(namespace, image)
    s = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    run_id = _run_id(s.name)
    epoch = time.time()
    plan = render.plan(s, mode, rounds, seed, epoch)
    objects = render.render(s, mode, rounds, seed, namespace=ns, image=image, run_id=run_id, epoch=epoch,
                            keys=render.make_keys(plan), the_plan=plan)  # fmt: skip
    return Rendered(s, plan, ns, run_id, objects, reveal_secrets, image)


def _target(namespace: str | None, image: str | None) -> tuple[str, str]:
    """The namespace and image (None: the defaults), checked before anything is rendered or sent: '' was taken
    for the default, and a name Kubernetes refuses failed only once the run's first objects were created."""
    ns = render.DEFAULT_NAMESPACE if namespace is None else namespace
    return render.check_namespace(ns), render.check_image(render.DEFAULT_IMAGE if image is None else image)


def run_k8s(
    scenario: Scenario | str | Path, out_dir: str | Path, mode: str, rounds: int, seed: int, *,
    kubeconfig: str | Path | None = None, context: str | None = None, namespace: str | None = None,
    image: str | None = None, keep: bool = False, progress: Callable[[int], None] | None = None,
    start_timeout_s: float = 600.0, finish_timeout_s: float | None = None, rendered: Rendered | None = None,
) -> Summary:  # fmt: skip
    """Run ``scenario`` on a Kubernetes cluster; returns the summary (written to ``out_dir``).

    ``start_timeout_s``: how long pods may take to start (image pulls); ``finish_timeout_s``: how long the
    run may take once started (default: rounds x the scenario's round timeout + 120 s). ``rendered``: the run as
    ``render_run`` rendered it already (the CLI renders first, so what cannot run is refused before it claims
    ``out_dir``); else it is rendered here from the arguments.
    """
    r = rendered or render_run(scenario, mode, rounds, seed, namespace=namespace, image=image)
    s, plan, ns, run_id, objects = r.scenario, r.plan, r.namespace, r.run_id, r.objects
    cluster = Cluster(kubeconfig, context)
    notes = [] if render.pinned(r.image) else [_unpinned(r.image)]
    try:
        cluster.check_hosts(sorted({p.host for p in plan.pods}), f"{s.path}: deployment.hosts")
    except NoNodeAccess as exc:
        notes.append(str(exc))
    out = Path(out_dir)
    rundir.prepare(out)
    plan.config.write(out)
    write_scenario(s, out)
    atomic_write(out / MANIFESTS, render.to_yaml(render.redact(objects)))
    names = {p.k8s: p.name for p in plan.pods}
    watcher = Watcher(cluster, ns, render.selector(s.name, run_id), out / "logs",
                      lambda pod: names.get(pod["metadata"]["name"]), rounds=plan.config.fl.rounds)  # fmt: skip
    objs = Objects(cluster, ns, render.selector(s.name, run_id))
    state, reason, error = "failed", "", None
    started_at = time.monotonic()
    try:
        objs.create(objects)
        state, reason = _follow(watcher, objs, plan, start_timeout_s, finish_timeout_s, progress)
    except UserError as exc:
        state, reason, error = "failed", exc.lines[0], exc
    except KeyboardInterrupt:
        state, reason = "interrupted", "stopped by Ctrl-C"
        raise
    finally:
        if state == "completed":
            watcher.finish_logs(timeout_s=15.0)
        codes = {names[n]: (terminated(p) or {}).get("exitCode") for n, p in watcher.pods.items() if n in names}
        notes += _never_started(plan, watcher.pods) if state == "completed" else []
        problems = [] if keep else objs.cleanup()
        if state != "completed":  # deleted pods end their log streams; keep what they printed
            watcher.finish_logs(timeout_s=0.5 if keep else 3.0)
        summary = _collect(s, out, plan, watcher, state, reason, codes, time.monotonic() - started_at, ns, run_id,
                           notes + problems)  # fmt: skip
    if error is not None:
        raise error
    return summary


def _unpinned(image: str) -> str:
    return (f"image {image} is a tag, not a digest: nodes that pulled it at different times may run different "
            "builds; pass --image NAME@sha256:DIGEST (k8s/README.md says how to get it)")  # fmt: skip


def _follow(w: Watcher, objs: Objects, plan: render.Plan, start_timeout_s: float, finish_timeout_s: float | None,
            progress: Callable[[int], None] | None) -> tuple[str, str]:  # fmt: skip
    fl = plan.config.fl
    agg = plan.pod(plan.config.aggregator).k8s
    hosts = {p.k8s: p.host for p in plan.pods}
    begin = time.monotonic()
    running_since: float | None = None
    budget = finish_timeout_s if finish_timeout_s is not None else fl.rounds * fl.round_timeout_s + 120
    last = 0

    def agg_done() -> bool:
        return terminated(w.pods.get(agg, {})) is not None

    while not agg_done():
        w.poll(until=agg_done)
        w.check(hosts)
        f = w.followers.get(agg)
        if f is not None and f.round != last and progress is not None:
            last = f.round
            progress(last)
        if last == 0 and (early := _failed_before_start(w, plan)) is not None:
            return "failed", early  # the aggregator would wait for it until its connect timeout
        now = time.monotonic()
        waiting = w.not_started(list(hosts))
        if running_since is None and not waiting:
            running_since = now
        if not agg_done():
            running_s = None if running_since is None else now - running_since
            _check_timeouts(w, objs.ns, agg, waiting, now - begin, start_timeout_s, running_s, budget, last + 1,
                            fl.rounds)  # fmt: skip
    # the aggregator is done: clients end after its DONE message; device emulators report when stopped
    clients = [p.k8s for p in plan.pods if p.role == "client"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(terminated(w.pods.get(c, {})) is None for c in clients):
        w.poll(until=lambda: all(terminated(w.pods.get(c, {})) is not None for c in clients))
    emulators = [p.k8s for p in plan.pods if p.role == "devices"]
    for name in emulators:
        w.expect_deleted.add(name)
        objs.delete("Pod", name, grace_s=10)
    deadline = time.monotonic() + 20
    gone = lambda: all(n in w.deleted or terminated(w.pods.get(n, {})) for n in emulators)  # noqa: E731
    while emulators and time.monotonic() < deadline and not gone():
        w.poll(until=gone)
    f = w.followers.get(agg)
    if f is not None and progress is not None:
        w.finish_logs()
        progress(f.round)
    code = (terminated(w.pods[agg]) or {}).get("exitCode")
    if code == 0:
        return "completed", ""
    w.finish_logs()
    node = _report(w.followers[agg].text(), plan.config.aggregator) if agg in w.followers else None
    why = node[0].reason if node else ""
    return "failed", why or f"aggregator exited with code {code} (see logs/{plan.config.aggregator}.log)"


def _check_timeouts(w: Watcher, ns: str, agg: str, waiting: list[str], since_begin_s: float, start_timeout_s: float,
                    running_s: float | None, budget_s: float, round_: int, rounds: int) -> None:  # fmt: skip
    """UserError when the pods took too long to start, or the started run too long to finish."""
    if running_s is None and since_begin_s > start_timeout_s:
        states = "; ".join(w.describe(n) for n in waiting)
        raise UserError(f"timed out after {start_timeout_s:.0f} s waiting for pods to start ({states}) -- check "
                        f"`kubectl -n {ns} describe pod {waiting[0]}`; first image pulls on a Pi can take "
                        "minutes (raise the start timeout, or pre-pull the image)")  # fmt: skip
    if running_s is not None and running_s > budget_s:
        raise UserError(f"timed out after {budget_s:.0f} s waiting for the aggregator to finish round {round_} of "
                        f"{rounds} -- check `kubectl -n {ns} logs {agg}` and the clients' logs "
                        f"(logs/ in the run directory)")  # fmt: skip


def _failed_before_start(w: Watcher, plan: render.Plan) -> str | None:
    for p in plan.pods:
        end = terminated(w.pods.get(p.k8s, {})) if p.role == "client" else None
        if end is not None and end.get("exitCode") != 0:
            f = w.followers.get(p.k8s)
            if f is not None:
                f.join(5)
            result = _report(f.text(), p.name) if f is not None else None
            why = (result[0].reason if result else "") or f"see logs/{p.name}.log"
            return f"{p.name} exited with code {end.get('exitCode')} before the first round: {why}"
    return None


def _never_started(plan: render.Plan, pods: dict[str, dict[str, Any]]) -> list[str]:
    """A warning per device emulator that had not started when the rounds ended (the rounds do not wait for
    device emulators; a slow image pull or a busy node can leave one pending): its devices sent nothing."""
    return [f"{p.name} had not started when the rounds ended (a slow image pull or a busy node): its devices sent "
            "no frames, so telemetry figures leave them out; run again (its image is cached then) or with more rounds"
            for p in plan.pods if p.role == "devices" and not started(pods.get(p.k8s, {}))]  # fmt: skip


def _collect(s: Scenario, out: Path, plan: render.Plan, w: Watcher, state: str, reason: str,
             codes: dict[str, int | None], wall_s: float, ns: str, run_id: str,
             warnings: list[str]) -> Summary:  # fmt: skip
    """The pods' reports (read from their logs) into the run directory, then the result files."""
    layout = RunLayout(out)
    process = {p.k8s: p.name for p in plan.pods}  # one process a pod on Kubernetes (workers are threads)
    for pod, f in w.followers.items():
        if (name := process.get(pod)) is None:
            continue  # not a pod of the plan: nothing it printed becomes a file
        text = f.text()
        if (report := _report(text, name)) is not None:
            result, parquet = report
            result.write(out, name)  # the plan's name, never the log's: no '/' or '..' reaches a path
            atomic_write(layout.node_spans(name), parquet)
        if (strays := _strays(text, name)) is not None:
            warnings = [*warnings, strays]
    cfg = plan.config
    extra = {"backend": "k8s", "mode": cfg.mode, "seed": cfg.seed, "warnings": warnings, "retransmissions": 0,
             "attack": None, "namespace": ns, "run_id": run_id}  # fmt: skip
    cores = {h.name: h.cores for h in s.deployment.hosts}
    return rundir.write_results(s, out, cfg.aggregator, state, reason, codes, wall_s, cores, extra,
                                status_extra={"backend": "k8s", "namespace": ns, "run_id": run_id})  # fmt: skip


def _report(log: str, name: str) -> tuple[NodeResult, bytes] | None:
    """The last valid result block a pod's log holds for its own process ``name`` (any other name in it is
    not that pod's to report: a log is anyone's text, hw/podlog.py)."""
    found = podlog.results(log, NodeResult.model_validate).get(name)
    return None if found is None else (NodeResult.model_validate(found[0]), found[1])


def _strays(log: str, name: str) -> str | None:
    """A warning for the result blocks in ``name``'s log that name another process (forged, or printed by
    something else in the pod): left out, and said once a pod. Names quoted and cut: they are the log's text."""
    others = sorted({n for n, _ in podlog.blocks(log, "RESULT")} - {name})
    if not others:
        return None
    shown = ", ".join(repr(n[:40]) for n in others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    return (
        f"the log of {name} holds result blocks for {shown}, not its own process: left out (something in "
        "the pod printed them, or someone got them logged)"
    )


# --- calibration --------------------------------------------------------------------------------------


def calibrate_k8s(
    out_dir: str | Path, *, nodes: list[str] | None = None, quick: bool = False, provider: str | None = None,
    algorithms: list[str] | None = None, kubeconfig: str | Path | None = None, context: str | None = None,
    namespace: str | None = None, image: str | None = None, keep: bool = False, dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None, timeout_s: float = 3600.0,
    start_timeout_s: float = 600.0,
) -> dict[str, Any]:  # fmt: skip
    """Run the calibration Job on every node (or ``nodes``) and write ``out_dir/<node>.yaml`` per node.

    Returns ``{node: profile path}`` (``dry_run``: ``{"dry_run": True, "manifests": YAML, "objects": [...]}``;
    then ``nodes`` must be given, as no cluster is asked). ``progress(node, done, total)`` after each node.
    """
    ns, image = _target(namespace, image)
    if nodes is not None:
        render.check_nodes(nodes)
    run_id = _run_id("calibration")
    if dry_run:
        if not nodes:
            raise UserError("--nodes: a dry run asks no cluster, so name the nodes to calibrate")
        objects = render.shared_objects(ns, "calibration", run_id) + render.calibration_jobs(
            dict.fromkeys(nodes, 4), namespace=ns, image=image, run_id=run_id, quick=quick, provider=provider,
            algorithms=algorithms)  # fmt: skip
        return {"dry_run": True, "manifests": render.to_yaml(objects), "objects": objects}
    cluster = Cluster(kubeconfig, context)
    found = nodes_to_calibrate(cluster, nodes)
    render.check_nodes(found, "a node of the cluster")  # the nodes found, when no --nodes named them
    cores = {name: _cores(n) for name, n in found.items()}
    jobs = render.calibration_jobs(cores, namespace=ns, image=image, run_id=run_id, quick=quick, provider=provider,
                                   algorithms=algorithms)  # fmt: skip
    objects = render.shared_objects(ns, "calibration", run_id) + jobs
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objs = Objects(cluster, ns, {render.RUN_LABEL: run_id})
    node_of = lambda pod: pod["metadata"].get("labels", {}).get(render.NODE_LABEL)  # noqa: E731
    label_to_node = {render.label_value(n): n for n in found}
    w = Watcher(cluster, ns, {render.RUN_LABEL: run_id}, out / "logs",
                lambda pod: f"calibrate-{label_to_node.get(node_of(pod), node_of(pod))}", rounds=0)  # fmt: skip
    written: dict[str, Any] = {}
    try:
        objs.create(objects)
        begin = time.monotonic()
        while len(written) < len(found):
            w.poll()
            pods = {label_to_node.get(node_of(p)): (n, p) for n, p in w.pods.items()}
            for node in sorted(set(found) - set(written)):
                name, pod = pods.get(node, ("", {}))
                if name and (why := problem(pod, node)) is not None:
                    raise UserError(why)
                end = terminated(pod) if name else None
                if end is not None:
                    written[node] = _profile(w, name, node, end, out)
                    if progress is not None:
                        progress(node, len(written), len(found))
            elapsed = time.monotonic() - begin
            waiting = sorted(n for n in found if n not in written and not started(pods.get(n, ("", {}))[1]))
            if waiting and elapsed > start_timeout_s:
                raise UserError(f"timed out after {start_timeout_s:.0f} s waiting for the calibration Jobs on "
                                f"{', '.join(waiting)} to start -- check `kubectl -n {ns} describe pods "
                                f"-l {render.RUN_LABEL}={run_id}`")  # fmt: skip
            if len(written) < len(found) and elapsed > timeout_s:
                left = ", ".join(sorted(set(found) - set(written)))
                raise UserError(f"timed out after {timeout_s:.0f} s waiting for calibration on {left} -- check "
                                f"`kubectl -n {ns} logs -l {render.RUN_LABEL}={run_id}`")  # fmt: skip
    finally:
        w.finish_logs(timeout_s=1.0)
        if not keep:
            objs.cleanup()
    return written


def nodes_to_calibrate(cluster: Cluster, nodes: list[str] | None) -> dict[str, dict[str, Any]]:
    """The named nodes (each checked, when the user may list nodes), or every Ready node of the cluster."""
    if nodes:
        try:
            return cluster.check_hosts(nodes, "--nodes")
        except NoNodeAccess:
            return {n: {} for n in nodes}  # unchecked: a missing node shows as an unschedulable Job pod
    try:
        listed = cluster.nodes()
    except NoNodeAccess:
        raise UserError("--nodes: this user may not list the cluster's nodes, so name the nodes to calibrate (or "
                        "bind the ClusterRole in k8s/rbac/pqtwin-node-reader.yaml)") from None  # fmt: skip
    found = {n["metadata"]["name"]: n for n in listed if node_ready(n)}
    if not found:
        raise UserError("no Ready node in the cluster; check `kubectl get nodes`")
    return found


def _cores(node: dict[str, Any]) -> int:
    """A node's allocatable whole cores (2 when unknown: enough for a calibration Job, render.calibration_jobs)."""
    cpu = str(node.get("status", {}).get("allocatable", {}).get("cpu", "2"))
    return max(1, int(float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)))


def _profile(w: Watcher, pod: str, node: str, end: dict[str, Any], out: Path) -> Path:
    """Write the profile a finished calibration pod printed."""
    from sim.profile import write_profile

    f = w.followers.get(pod)
    if f is not None:
        f.join(15)
        f.refresh()
    text = f.text() if f is not None else ""
    data = _last_profile(text, node)
    if end.get("exitCode") != 0 or data is None:
        tail = " | ".join(text.strip().splitlines()[-3:])[:300]
        raise UserError(f"calibration on node {node} failed (exit code {end.get('exitCode')}): {tail or 'no output'} "
                        f"-- see {out / 'logs' / f'calibrate-{node}.log'}")  # fmt: skip
    write_profile(data, out / f"{node}.yaml")
    return out / f"{node}.yaml"


def _last_profile(log: str, node: str) -> dict[str, Any] | None:
    """The last PROFILE block for ``node`` in its Job's log that is a valid profile: a damaged block printed
    after it (a log is anyone's text, hw/podlog.py) must not cost the real one."""
    import yaml

    from sim.profile import Profile

    for name, payload in reversed(list(podlog.blocks(log, "PROFILE"))):
        try:
            data = yaml.safe_load(payload) if name == node else None
            if data is not None:
                Profile.model_validate(data)
                return dict(data)
        except (yaml.YAMLError, ValueError, RecursionError):  # not YAML (or nested too deep), or not a profile
            continue
    return None
