"""The Kubernetes client wrappers of the backend (official ``kubernetes`` client): ``Cluster`` (a checked
connection and the preflight of scenario hosts against Ready nodes), ``Objects`` (creating a run's objects
and deleting what was created) and the helpers that turn API errors into one ``UserError`` line each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from hw.k8s import render
from sim.errors import UserError

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
            # With _preload_content=False the client returns the raw urllib3 response, not the typed VersionInfo.
            resp = cast(
                urllib3.HTTPResponse,
                client.VersionApi(self.api).get_code(_preload_content=False, _request_timeout=10),
            )
        except ApiException as exc:
            if exc.status in (401, 403):
                raise UserError(
                    f"the Kubernetes API server at {self.host} refused the kubeconfig's credentials "
                    f"({exc.status} {exc.reason}); check the user and token or certificates of the current context"
                ) from None
            raise UserError(f"cannot reach the Kubernetes API server at {self.host}: {why(exc)}; "
                            f"{REACH_HINT}") from None  # fmt: skip
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UserError(f"cannot reach the Kubernetes API server at {self.host}: {why(exc)}; "
                            f"{REACH_HINT}") from None  # fmt: skip
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
        if down := [h for h in hosts if not node_ready(by[h])]:
            raise UserError(
                f"node {', '.join(down)} is not Ready; check `kubectl describe node {down[0]}` (is k3s-agent running "
                "there, and can it reach the server?)"
            )
        return {h: by[h] for h in hosts}


REACH_HINT = (
    "check that the cluster is up (`sudo systemctl status k3s` on the server node), that this machine can reach "
    "the server: address of the kubeconfig (port 6443), and that --context names the right cluster"
)


def why(exc: BaseException) -> str:
    """What went wrong with a request, in one short line."""
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


def node_ready(node: dict[str, Any]) -> bool:
    """Whether a Node object's Ready condition is True."""
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
        calls: dict[str, Callable[..., Any]] = {
            "ServiceAccount": c.core.create_namespaced_service_account,
            "ConfigMap": c.core.create_namespaced_config_map,
            "Secret": c.core.create_namespaced_secret,
            "Service": c.core.create_namespaced_service,
            "Pod": c.core.create_namespaced_pod,
            "NetworkPolicy": c.net.create_namespaced_network_policy,
            "Job": c.batch.create_namespaced_job,
        }
        return calls[kind]

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
                raise api_error(exc, f"creating {kind} {name} in namespace {self.ns}", self.ns) from None
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
                    raise api_error(exc, f"creating namespace {self.ns}", self.ns) from None
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
            problems.append(f"cleanup of namespace {self.ns} incomplete ({why(exc)}); "
                            f"delete its pqtwin objects with `kubectl -n {self.ns} delete all,cm,secret,netpol,sa "
                            "-l app.kubernetes.io/managed-by=pqtwin`")  # fmt: skip
        return problems


def api_error(exc: ApiException, doing: str, ns: str) -> UserError:
    """An API error while ``doing`` something in namespace ``ns``, as one line saying what to check."""
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
