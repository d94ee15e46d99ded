"""The Kubernetes backend: ``run_k8s`` (``pqtwin hw run --backend k8s``) and ``calibrate_k8s``
(``pqtwin calibrate --backend k8s``), with the official ``kubernetes`` client.

``run_k8s`` renders the scenario (hw/k8s/render.py) with fresh identity keys, checks the cluster (API server
reachable, every scenario host a Ready node), creates the objects, watches the run's pods (``?watch=true``
on a label selector, re-opened every second) and follows every started pod's log: the aggregator prints
``pqtwin-progress`` lines (the progress callback), and each node prints its result and spans at exit
(hw/k8s/pod.py). When the aggregator has finished, the clients end on their own; the device emulators are
deleted (SIGTERM), which makes them report. The run directory gets what the local backend writes --
``spans.parquet``, ``summary.json`` (``sim.summary.summarise``, ``backend: k8s``), ``status.json``,
``run.json``, ``scenario.yaml``, ``logs/``, ``spans/``, ``nodes/`` -- plus ``manifests.yaml`` (Secrets
redacted). Everything created is deleted at the end unless ``keep``; a namespace the run created is deleted
whole.

Problems users meet become one ``UserError`` line each, saying what to check: no kubeconfig, an API server
that cannot be reached or refuses the credentials, a scenario host that is not a (Ready) node, an image
that cannot be pulled, a pod that cannot be scheduled, objects left by an earlier run, and timeouts
(pods not started within ``start_timeout_s``; the run not finished within rounds x round timeout + 2 min).
The run directory is written in every case (``status.json`` says why it failed).

Clocks: pods record spans on wall-clock time relative to the run's epoch (``clock: wall``); the nodes'
clocks must be NTP-synchronised (K3s nodes are, by default, through systemd-timesyncd).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from hw.k8s import pod as podside
from hw.k8s import render
from sim import spans as span_io
from sim.errors import UserError
from sim.scenario import Scenario, load_scenario

PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
LOST_S = 60.0  # how long the API server may be unreachable during a run
WATCH_S = 1  # each watch is re-opened after this long, so timeouts and progress are checked every second
SHARED = ("ServiceAccount", "NetworkPolicy/pqtwin-default-deny")  # may pre-exist in a namespace we reuse


# --- connection and preflight -------------------------------------------------------------------------


class Cluster:
    """An API client for one kubeconfig context, checked to answer."""

    def __init__(self, kubeconfig: str | Path | None = None, context: str | None = None) -> None:
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, context=context,
                                    client_configuration=cfg, persist_config=False)  # fmt: skip
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            where = str(kubeconfig) if kubeconfig else "$KUBECONFIG or ~/.kube/config"
            what = f"context {context!r} " if context else ""
            raise UserError(
                f"kubeconfig: cannot load {what}from {where} ({str(exc).strip() or type(exc).__name__}); set "
                "KUBECONFIG or pass --kubeconfig (on K3s: copy /etc/rancher/k3s/k3s.yaml from the server node and "
                "replace 127.0.0.1 in its server: line with the server's address)"
            ) from None
        cfg.retries = 1
        self.host = cfg.host
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.version = self._version()

    def _version(self) -> str:
        try:
            resp = client.VersionApi(self.api).get_code(_preload_content=False, _request_timeout=10)
        except ApiException as exc:
            if exc.status in (401, 403):
                raise UserError(
                    f"the Kubernetes API server at {self.host} refused the kubeconfig's credentials "
                    f"({exc.status} {exc.reason}); check the user and token or certificates of the current context"
                ) from None
            raise UserError(f"cannot reach the Kubernetes API server at {self.host}: {_why(exc)}; "
                            f"{_REACH_HINT}") from None  # fmt: skip
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UserError(f"cannot reach the Kubernetes API server at {self.host}: {_why(exc)}; "
                            f"{_REACH_HINT}") from None  # fmt: skip
        return str(json.loads(resp.data).get("gitVersion", "?"))

    def nodes(self) -> list[dict[str, Any]]:
        return list(_raw(self.core.list_node)["items"])

    def check_hosts(self, hosts: list[str], where: str) -> dict[str, dict[str, Any]]:
        """Each scenario host's node (by name or kubernetes.io/hostname); UserError if missing or not Ready."""
        nodes = self.nodes()
        by: dict[str, dict[str, Any]] = {}
        for n in nodes:
            by[n["metadata"]["name"]] = n
            by.setdefault(n["metadata"].get("labels", {}).get(render.HOSTNAME_LABEL, ""), n)
        names = sorted(n["metadata"]["name"] for n in nodes)
        if missing := [h for h in hosts if h not in by]:
            raise UserError(
                f"{where}: no cluster node named {', '.join(missing)} (nodes: {', '.join(names) or 'none'}); "
                "scenario host names must match `kubectl get nodes` -- rename the hosts in the scenario, or the nodes"
            )
        if down := [h for h in hosts if not _node_ready(by[h])]:
            raise UserError(
                f"node {', '.join(down)} is not Ready; check `kubectl describe node {down[0]}` (is k3s-agent running "
                "there, and can it reach the server?)"
            )
        return {h: by[h] for h in hosts}


_REACH_HINT = (
    "check that the cluster is up (`sudo systemctl status k3s` on the server node), that this machine can reach "
    "the server: address of the kubeconfig (port 6443), and that --context names the right cluster"
)


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc)
    return text.split("\n")[0][:200] or type(exc).__name__


def _raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a client method and return the JSON body as plain data (no model validation)."""
    resp = call(*args, _preload_content=False, **kwargs)
    try:
        return json.loads(resp.data)
    finally:
        resp.release_conn()


def _node_ready(node: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in node["status"].get("conditions", []))


# --- creating and deleting objects --------------------------------------------------------------------


class Objects:
    """Creates a run's objects in order and deletes what it created (a namespace it created, whole)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.c, self.ns = cluster, namespace
        self.created: list[tuple[str, str]] = []  # (kind, name)
        self.created_namespace = False

    def _create_call(self, kind: str) -> Callable[..., Any]:
        c = self.c
        return {
            "ServiceAccount": c.core.create_namespaced_service_account,
            "ConfigMap": c.core.create_namespaced_config_map,
            "Secret": c.core.create_namespaced_secret,
            "Service": c.core.create_namespaced_service,
            "Pod": c.core.create_namespaced_pod,
            "NetworkPolicy": c.net.create_namespaced_network_policy,
            "Job": c.batch.create_namespaced_job,
        }[kind]

    def _delete_call(self, kind: str) -> Callable[..., Any]:
        c = self.c
        return {
            "ServiceAccount": c.core.delete_namespaced_service_account,
            "ConfigMap": c.core.delete_namespaced_config_map,
            "Secret": c.core.delete_namespaced_secret,
            "Service": c.core.delete_namespaced_service,
            "Pod": c.core.delete_namespaced_pod,
            "NetworkPolicy": c.net.delete_namespaced_network_policy,
            "Job": c.batch.delete_namespaced_job,
        }[kind]

    def create(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind == "Namespace":
                self._namespace(obj)
                continue
            try:
                _raw(self._create_call(kind), self.ns, obj)
            except ApiException as exc:
                if exc.status == 409 and (kind in SHARED or f"{kind}/{name}" in SHARED):
                    continue  # identical shared objects of the namespace (a kept earlier run, a calibration)
                raise _api_error(exc, f"creating {kind} {name} in namespace {self.ns}", self.ns) from None
            self.created.append((kind, name))

    def _namespace(self, obj: dict[str, Any]) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                _raw(self.c.core.create_namespace, obj)
                self.created_namespace = True
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise _api_error(exc, f"creating namespace {self.ns}", self.ns) from None
            existing = _raw(self.c.core.read_namespace, self.ns)
            if existing.get("status", {}).get("phase") != "Terminating":
                return  # reuse it; objects of an earlier run in it make creation fail with a clear line
            if time.monotonic() > deadline:
                raise UserError(f"namespace {self.ns} is still being deleted after 120 s (an earlier run's); "
                                f"check `kubectl get namespace {self.ns}`, or pass --namespace")  # fmt: skip
            time.sleep(1.0)

    def delete(self, kind: str, name: str, grace_s: int | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if kind == "Pod" and grace_s is not None:
            kwargs["grace_period_seconds"] = grace_s
        if kind == "Job":
            kwargs["propagation_policy"] = "Background"  # the API's default for Jobs orphans their pods
        try:
            _raw(self._delete_call(kind), name, self.ns, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def cleanup(self) -> list[str]:
        """Delete what was created; problems are returned (one line each), not raised."""
        problems = []
        try:
            if self.created_namespace:
                _raw(self.c.core.delete_namespace, self.ns, propagation_policy="Background")
                return []
            for kind, name in reversed(self.created):
                self.delete(kind, name, grace_s=5 if kind == "Pod" else None)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            problems.append(f"cleanup of namespace {self.ns} incomplete ({_why(exc)}); "
                            f"delete its pqtwin objects with `kubectl -n {self.ns} delete all,cm,secret,netpol,sa "
                            "-l app.kubernetes.io/managed-by=pqtwin`")  # fmt: skip
        return problems


def _api_error(exc: ApiException, doing: str, ns: str) -> UserError:
    try:
        message = json.loads(exc.body or "{}").get("message", "") if isinstance(exc.body, (str, bytes)) else ""
    except ValueError:
        message = ""
    message = message or str(exc.reason)
    if exc.status == 409:
        return UserError(f"{doing}: it already exists (left by an earlier run with --keep?); delete the run's objects "
                         f"(`kubectl delete namespace {ns}`) or pass another --namespace")  # fmt: skip
    if exc.status in (401, 403):
        return UserError(f"{doing}: {exc.status} {exc.reason}: {message}; check that your kubeconfig user may create "
                         "these objects (k8s/rbac/pqtwin-operator.yaml lists what the backend needs)")  # fmt: skip
    return UserError(f"{doing}: {exc.status} {exc.reason}: {message}")


# --- following pods -----------------------------------------------------------------------------------


class LogFollower(threading.Thread):
    """Follows one pod's log (``follow=true``) into a file and memory, noting progress lines."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, path: Path) -> None:
        super().__init__(name=f"log-{pod}", daemon=True)
        self.c, self.ns, self.pod, self.path = cluster, namespace, pod, path
        self.data = bytearray()
        self.round = 0
        self.error: str | None = None
        self._scanned = 0

    def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            resp = self.c.core.read_namespaced_pod_log(self.pod, self.ns, follow=True, _preload_content=False)
            try:
                with open(self.path, "wb") as f:
                    for chunk in resp.stream(65536, decode_content=False):
                        self.data.extend(chunk)
                        f.write(chunk)
                        f.flush()
                        self._scan()
            finally:
                resp.close()
                resp.release_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self.error = _why(exc)

    def _scan(self) -> None:
        end = self.data.rfind(b"\n") + 1
        for line in bytes(self.data[self._scanned : end]).decode(errors="replace").splitlines():
            for p in podside.progress_lines(line):
                self.round = max(self.round, int(p.get("round", 0)))
        self._scanned = max(self._scanned, end)

    def text(self) -> str:
        return bytes(self.data).decode(errors="replace")

    def refresh(self) -> None:
        """After the container ended: read the whole log once more if following lost some of it."""
        try:
            resp = self.c.core.read_namespaced_pod_log(self.pod, self.ns, _preload_content=False)
            full = resp.data
            resp.release_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            return
        if len(full) > len(self.data):
            self.data = bytearray(full)
            self.path.write_bytes(full)
            self._scan()


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return dict(statuses[0].get("state") or {})


def started(pod: dict[str, Any]) -> bool:
    state = _container(pod)
    return "running" in state or "terminated" in state


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    state = _container(pod)
    if "terminated" in state:
        return dict(state["terminated"])
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return {"exitCode": None, "reason": pod["status"].get("reason", pod["status"]["phase"])}
    return None


def problem(pod: dict[str, Any], host: str | None = None) -> str | None:
    """What keeps a pod from running, as one line with what to check; None if nothing does (yet)."""
    name = pod["metadata"]["name"]
    status = pod.get("status", {})
    node = pod.get("spec", {}).get("nodeName") or host or "?"
    for cond in status.get("conditions") or []:
        unschedulable = cond.get("reason") == "Unschedulable" and cond.get("status") == "False"
        if cond.get("type") == "PodScheduled" and unschedulable:
            want = pod["spec"]["containers"][0].get("resources", {}).get("requests", {})
            return (f"pod {name} cannot be scheduled on node {host or '?'}: {cond.get('message', '').strip()} -- check "
                    f"`kubectl describe node {host}`: is it Ready, untainted, labelled kubernetes.io/hostname={host}, "
                    f"with {want.get('cpu', '?')} CPU and {want.get('memory', '?')} memory free?")  # fmt: skip
    if status.get("phase") == "Failed" and status.get("reason") in ("Evicted", "OutOfmemory", "OutOfcpu"):
        return f"pod {name} on node {node} was {status['reason']}: {status.get('message', '')}"
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in PULL_ERRORS:
            return (f"pod {name} on node {node}: cannot pull image {cs.get('image')} ({reason}: "
                    f"{waiting.get('message', '').strip()[:200]}) -- check the image name and tag (--image), that it "
                    "was pushed for linux/arm64 (docker buildx build -f k8s/Dockerfile --platform linux/arm64,"
                    "linux/amd64 --push), and that the node can reach the registry (an insecure registry needs "
                    "/etc/rancher/k3s/registries.yaml)")  # fmt: skip
        if reason in CONFIG_ERRORS:
            return f"pod {name} on node {node}: {reason}: {waiting.get('message', '').strip()[:300]}"
    return None


class Watcher:
    """Watches the pods of one run (label selector) and follows their logs."""

    def __init__(self, cluster: Cluster, namespace: str, selector: dict[str, str], logs: Path,
                 stem: Callable[[dict[str, Any]], str | None]) -> None:  # fmt: skip
        self.c, self.ns = cluster, namespace
        self.selector = ",".join(f"{k}={v}" for k, v in selector.items())
        self.logs, self.stem = logs, stem  # stem(pod): its log file's name, None for a pod not to follow
        self.pods: dict[str, dict[str, Any]] = {}
        self.followers: dict[str, LogFollower] = {}
        self.deleted: set[str] = set()
        self.expect_deleted: set[str] = set()
        self.lost_since: float | None = None

    def poll(self, until: Callable[[], bool] | None = None) -> None:
        """One watch of up to WATCH_S seconds; returns early when ``until()`` becomes true. A lost connection
        is retried (the next poll re-lists); after LOST_S seconds without the API server, UserError."""
        try:
            resp = self.c.core.list_namespaced_pod(self.ns, label_selector=self.selector, watch=True,
                                                   timeout_seconds=WATCH_S, _preload_content=False,
                                                   _request_timeout=WATCH_S + 10)  # fmt: skip
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, ApiException) and 400 <= exc.status < 500:
                raise _api_error(exc, f"watching pods in namespace {self.ns}", self.ns) from None
            self.lost_since = self.lost_since or time.monotonic()
            if time.monotonic() - self.lost_since > LOST_S:
                raise UserError(f"lost the Kubernetes API server at {self.c.host} for {LOST_S:.0f} s while following "
                                f"the run ({_why(exc)}); {_REACH_HINT}") from None  # fmt: skip
            time.sleep(1.0)
            return
        self.lost_since = None
        try:
            buf = b""
            for chunk in resp.stream(65536, decode_content=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self._event(json.loads(line))
                if until is not None and until():
                    return
        except (urllib3.exceptions.HTTPError, OSError):
            return  # the stream broke off: the next poll starts again from the current state
        finally:
            resp.close()  # an abandoned stream must not go back to the pool: the server is still writing it
            resp.release_conn()

    def _event(self, ev: dict[str, Any]) -> None:
        if ev.get("type") == "ERROR":
            status = ev.get("object", {})
            raise UserError(f"watching pods in namespace {self.ns}: {status.get('code')} {status.get('message')}")
        pod = ev["object"]
        name = pod["metadata"]["name"]
        if ev["type"] == "DELETED":
            self.deleted.add(name)
        self.pods[name] = pod
        if name not in self.followers and started(pod) and (stem := self.stem(pod)) is not None:
            f = LogFollower(self.c, self.ns, name, self.logs / f"{stem}.log")
            f.start()
            self.followers[name] = f

    def check(self, hosts: dict[str, str]) -> None:
        for name, pod in self.pods.items():
            if name in self.deleted and name not in self.expect_deleted:
                raise UserError(f"pod {name} was deleted while the run went on (by someone else, or its node went "
                                f"away); check `kubectl -n {self.ns} get events`")  # fmt: skip
            if (why := problem(pod, hosts.get(name))) is not None:
                raise UserError(why)

    def finish_logs(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        for name, f in self.followers.items():
            f.join(max(0.1, deadline - time.monotonic()))
            if name not in self.deleted and (f.error or not f.is_alive()):
                f.refresh()

    def not_started(self, names: list[str]) -> list[str]:
        return sorted(n for n in names if not started(self.pods.get(n, {})))

    def describe(self, name: str) -> str:
        pod = self.pods.get(name)
        if pod is None:
            return f"{name}: not seen"
        state = _container(pod)
        waiting = state.get("waiting", {})
        return f"{name}: {pod.get('status', {}).get('phase', '?')}" + (
            f" ({waiting.get('reason')})" if waiting.get("reason") else ""
        )


# --- run ----------------------------------------------------------------------------------------------


def _run_id(name: str) -> str:
    return f"{render.label_value(name)[:30].rstrip('-._')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def run_k8s(
    scenario: Scenario | str | Path, out_dir: str | Path, mode: str, rounds: int, seed: int, *,
    kubeconfig: str | Path | None = None, context: str | None = None, namespace: str | None = None,
    image: str | None = None, keep: bool = False, dry_run: bool = False,
    progress: Callable[[int], None] | None = None, start_timeout_s: float = 600.0,
    finish_timeout_s: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run ``scenario`` on a Kubernetes cluster; returns the summary (written to ``out_dir``).

    ``dry_run``: touch no cluster; return ``{"dry_run": True, "manifests": YAML, "objects": [...]}`` -- the
    objects as they would be created, with this run's freshly generated keys in the Secrets.
    ``start_timeout_s``: how long pods may take to start (image pulls); ``finish_timeout_s``: how long the
    run may take once started (default: rounds x the scenario's round timeout + 120 s).
    """
    from hw.local import prepare_dir

    s = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    ns, image = namespace or render.DEFAULT_NAMESPACE, image or render.DEFAULT_IMAGE
    run_id = _run_id(s.name)
    epoch = time.time()
    plan = render.plan(s, mode, rounds, seed, epoch)
    keys = render.make_keys(plan)
    objects = render.render(s, mode, rounds, seed, namespace=ns, image=image, run_id=run_id, epoch=epoch,
                            keys=keys, the_plan=plan)  # fmt: skip
    if dry_run:
        return {"dry_run": True, "namespace": ns, "run_id": run_id, "manifests": render.to_yaml(objects),
                "objects": objects}  # fmt: skip
    cluster = Cluster(kubeconfig, context)
    cluster.check_hosts(sorted({p.host for p in plan.pods}), f"{s.path}: deployment.hosts")
    out = Path(out_dir)
    prepare_dir(out)
    (out / "run.json").write_text(json.dumps(plan.config, indent=2))
    (out / "scenario.yaml").write_text(s.to_yaml())
    (out / "manifests.yaml").write_text(render.to_yaml(render.redact(objects)))
    names = {p.k8s: p.name for p in plan.pods}
    watcher = Watcher(cluster, ns, render.selector(s.name, run_id), out / "logs",
                      lambda pod: names.get(pod["metadata"]["name"]))  # fmt: skip
    objs = Objects(cluster, ns)
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
        problems = [] if keep else objs.cleanup()
        if state != "completed":  # deleted pods end their log streams; keep what they printed
            watcher.finish_logs(timeout_s=0.5 if keep else 3.0)
        summary = _collect(s, out, plan, watcher, state, reason, codes, time.monotonic() - started_at, ns, run_id,
                           problems)  # fmt: skip
    if error is not None:
        raise error
    return summary


def _follow(w: Watcher, objs: Objects, plan: render.Plan, start_timeout_s: float, finish_timeout_s: float | None,
            progress: Callable[[int], None] | None) -> tuple[str, str]:  # fmt: skip
    fl = plan.config["fl"]
    agg = plan.pod(plan.config["aggregator"]).k8s
    hosts = {p.k8s: p.host for p in plan.pods}
    begin = time.monotonic()
    running_since: float | None = None
    budget = finish_timeout_s if finish_timeout_s is not None else fl["rounds"] * fl["round_timeout_s"] + 120
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
        if running_since is None and now - begin > start_timeout_s and not agg_done():
            states = "; ".join(w.describe(n) for n in waiting)
            raise UserError(f"timed out after {start_timeout_s:.0f} s waiting for pods to start ({states}) -- check "
                            f"`kubectl -n {objs.ns} describe pod {waiting[0]}`; first image pulls on a Pi can take "
                            "minutes (raise the start timeout, or pre-pull the image)")  # fmt: skip
        if running_since is not None and now - running_since > budget and not agg_done():
            raise UserError(f"timed out after {budget:.0f} s waiting for the aggregator to finish round {last + 1} of "
                            f"{fl['rounds']} -- check `kubectl -n {objs.ns} logs {agg}` and the clients' logs "
                            f"(logs/ in the run directory)")  # fmt: skip
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
    node = podside.results(w.followers[agg].text()).get(plan.config["aggregator"]) if agg in w.followers else None
    why = node[0].get("reason", "") if node else ""
    return "failed", why or f"aggregator exited with code {code} (see logs/{plan.config['aggregator']}.log)"


def _failed_before_start(w: Watcher, plan: render.Plan) -> str | None:
    for p in plan.pods:
        end = terminated(w.pods.get(p.k8s, {})) if p.role == "client" else None
        if end is not None and end.get("exitCode") != 0:
            f = w.followers.get(p.k8s)
            if f is not None:
                f.join(5)
            result = podside.results(f.text()).get(p.name) if f is not None else None
            why = (result or ({},))[0].get("reason") or f"see logs/{p.name}.log"
            return f"{p.name} exited with code {end.get('exitCode')} before the first round: {why}"
    return None


def _collect(s: Scenario, out: Path, plan: render.Plan, w: Watcher, state: str, reason: str,
             codes: dict[str, int | None], wall_s: float, ns: str, run_id: str,
             warnings: list[str]) -> dict[str, Any]:  # fmt: skip
    from hw.local import write_results
    from hw.node import atomic_write

    nodes: dict[str, dict[str, Any]] = {}
    for f in w.followers.values():
        for name, (result, parquet) in podside.results(f.text()).items():
            nodes[name] = result
            (out / "nodes").mkdir(exist_ok=True)
            (out / "spans").mkdir(exist_ok=True)
            atomic_write(out / "nodes" / f"{name}.json", json.dumps(result, indent=2))
            (out / "spans" / f"{name}.parquet").write_bytes(parquet)
    extra = {"backend": "k8s", "mode": plan.config["mode"], "seed": plan.config["seed"], "warnings": warnings,
             "retransmissions": 0, "attack": None, "namespace": ns, "run_id": run_id}  # fmt: skip
    return write_results(s, out, nodes, plan.config["aggregator"], state, reason, codes, wall_s,
                         lambda df, duration: _utilisation(s, df, duration), extra,
                         {"backend": "k8s", "namespace": ns, "run_id": run_id})  # fmt: skip


def _utilisation(s: Scenario, df: pd.DataFrame, duration_s: float) -> dict[str, dict[str, float | bool]]:
    """Busy fraction of each scenario host's cores, from the CPU spans of the pods on it."""
    cpu = df[~df.op.isin(("transfer", "frame")) & ~df.phase.isin(span_io.MARKERS)]
    out: dict[str, dict[str, float | bool]] = {}
    for h in s.deployment.hosts:
        rows = cpu[cpu.host == h.name]
        busy = float((rows.end_s - rows.start_s - rows.queue_wait_s).sum())
        frac = busy / (h.cores * duration_s) if duration_s > 0 else 0.0
        out[h.name] = {"offered": frac, "overloaded": frac >= 1.0}
    return out


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
    ns, image = namespace or render.DEFAULT_NAMESPACE, image or render.DEFAULT_IMAGE
    run_id = _run_id("calibration")
    if dry_run:
        if not nodes:
            raise UserError("--nodes: a dry run asks no cluster, so name the nodes to calibrate")
        objects = render.namespace_objects(ns, "calibration", run_id) + render.calibration_jobs(
            dict.fromkeys(nodes, 4), namespace=ns, image=image, run_id=run_id, quick=quick, provider=provider,
            algorithms=algorithms)  # fmt: skip
        return {"dry_run": True, "manifests": render.to_yaml(objects), "objects": objects}
    cluster = Cluster(kubeconfig, context)
    all_nodes = cluster.nodes()
    if nodes:
        found = cluster.check_hosts(nodes, "--nodes")
    else:
        found = {n["metadata"]["name"]: n for n in all_nodes if _node_ready(n)}
        if not found:
            raise UserError("no Ready node in the cluster; check `kubectl get nodes`")
    cores = {name: max(1, int(float(str(n["status"]["allocatable"].get("cpu", "1")).rstrip("m")) // 1))
             for name, n in found.items()}  # fmt: skip
    jobs = render.calibration_jobs(cores, namespace=ns, image=image, run_id=run_id, quick=quick, provider=provider,
                                   algorithms=algorithms)  # fmt: skip
    objects = render.namespace_objects(ns, "calibration", run_id) + jobs
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objs = Objects(cluster, ns)
    node_of = lambda pod: pod["metadata"].get("labels", {}).get(render.NODE_LABEL)  # noqa: E731
    label_to_node = {render.label_value(n): n for n in found}
    w = Watcher(cluster, ns, {render.RUN_LABEL: run_id}, out / "logs",
                lambda pod: f"calibrate-{label_to_node.get(node_of(pod), node_of(pod))}")  # fmt: skip
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


def _profile(w: Watcher, pod: str, node: str, end: dict[str, Any], out: Path) -> Path:
    """Validate and write the profile a finished calibration pod printed."""
    import yaml

    from hw.calibrate import write_profile
    from sim.profile import Profile

    f = w.followers.get(pod)
    if f is not None:
        f.join(15)
        f.refresh()
    text = f.text() if f is not None else ""
    profiles = podside.extract(text, "PROFILE")
    if end.get("exitCode") != 0 or node not in profiles:
        tail = " | ".join(text.strip().splitlines()[-3:])[:300]
        raise UserError(f"calibration on node {node} failed (exit code {end.get('exitCode')}): {tail or 'no output'} "
                        f"-- see {out / 'logs' / f'calibrate-{node}.log'}")  # fmt: skip
    data = yaml.safe_load(profiles[node])
    Profile.model_validate(data)
    write_profile(data, out / f"{node}.yaml")
    return out / f"{node}.yaml"
