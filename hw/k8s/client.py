"""The Kubernetes client wrappers of the backend (official ``kubernetes`` client): ``Cluster`` (a checked
connection and the preflight of scenario hosts against Ready nodes), ``Objects`` (creating a run's objects
and deleting what was created) and the helpers that turn API errors into one ``UserError`` line each.

Permissions (k8s/rbac/): everything happens in one namespace that an admin created, with the
``pqtwin-operator`` Role bound there. Nothing here creates or deletes a namespace. Listing nodes needs the
optional ``pqtwin-node-reader`` ClusterRole; without it the host preflight is skipped (``NoNodeAccess``).
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
CLEANUP_WAIT_S = 30.0  # how long cleanup waits for deleted pods to go (their names are free again after)
RBAC_HINT = (
    "an admin creates the namespace and binds the operator Role in it: `kubectl apply -f "
    "k8s/rbac/pqtwin-operator.yaml` (namespace pqtwin), or for another namespace and user `python -m hw.k8s rbac "
    "DIR --namespace NS --user NAME`"
)

LEFTOVERS = (  # how to delete what a run left (--keep, or a cleanup cut short); the Role allows it
    "`kubectl -n {ns} delete pods,services,configmaps,secrets,networkpolicies,serviceaccounts,jobs "
    "-l app.kubernetes.io/managed-by=pqtwin`"
)


class NoNodeAccess(Exception):
    """The kubeconfig's user may not list nodes (no ``pqtwin-node-reader``): the message says what to do."""


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
        """Every node; NoNodeAccess when the user may not list them (403)."""
        try:
            return list(_raw(self.core.list_node)["items"])
        except ApiException as exc:
            if exc.status == 403:
                raise NoNodeAccess(
                    "the scenario's hosts were not checked against the cluster's nodes: this user may not list "
                    "nodes (bind the optional ClusterRole in k8s/rbac/pqtwin-node-reader.yaml to check them first)"
                ) from None
            raise api_error(exc, "listing nodes", "") from None

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
    """Creates a run's objects in order, in an existing namespace, and deletes what it created."""

    def __init__(self, cluster: Cluster, namespace: str, selector: dict[str, str] | None = None) -> None:
        self.c, self.ns = cluster, namespace
        self.selector = selector  # the run's pods, waited for at cleanup
        self.created: list[tuple[str, str]] = []  # (kind, name)

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
            if kind == "Namespace":  # never ours to create (k8s/rbac/pqtwin-operator.yaml)
                raise ValueError("the backend does not create namespaces")
            try:
                _raw(self._create_call(kind), self.ns, obj)
            except ApiException as exc:
                if exc.status == 409 and (kind in SHARED or f"{kind}/{name}" in SHARED):
                    continue  # identical shared objects of the namespace (a kept earlier run, a calibration)
                raise api_error(exc, f"creating {kind} {name} in namespace {self.ns}", self.ns) from None
            self.created.append((kind, name))

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

    def cleanup(self, wait_s: float = CLEANUP_WAIT_S) -> list[str]:
        """Delete what was created (the namespace stays: it is the admin's), then wait up to ``wait_s`` for the
        run's pods to be gone, so that the next run can reuse their names. Problems are returned (one line
        each), not raised."""
        try:
            for kind, name in reversed(self.created):
                self.delete(kind, name, grace_s=5 if kind == "Pod" else None)
            self.created.clear()
            if self.selector is not None:
                label = ",".join(f"{k}={v}" for k, v in self.selector.items())
                deadline = time.monotonic() + wait_s
                while _raw(self.c.core.list_namespaced_pod, self.ns, label_selector=label)["items"]:
                    if time.monotonic() > deadline:
                        return [f"pods of the run in namespace {self.ns} still terminating after {wait_s:.0f} s; "
                                f"check `kubectl -n {self.ns} get pods -l {label}`"]  # fmt: skip
                    time.sleep(0.2)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            return [f"cleanup of namespace {self.ns} incomplete ({why(exc)}); delete the run's objects with "
                    f"{LEFTOVERS.format(ns=self.ns)}"]  # fmt: skip
        return []


def api_error(exc: ApiException, doing: str, ns: str) -> UserError:
    """An API error while ``doing`` something in namespace ``ns``, as one line saying what to check."""
    try:
        message = json.loads(exc.body or "{}").get("message", "") if isinstance(exc.body, (str, bytes)) else ""
    except ValueError:
        message = ""
    message = message or str(exc.reason)
    if exc.status == 409:
        return UserError(f"{doing}: it already exists (left by an earlier run with --keep?); delete the run's objects "
                         f"({LEFTOVERS.format(ns=ns)}) or pass another --namespace")  # fmt: skip
    if exc.status == 404 and "namespaces" in message and "not found" in message:
        return UserError(f"{doing}: namespace {ns} does not exist, and pqtwin does not create namespaces: "
                         f"{RBAC_HINT}")  # fmt: skip
    if exc.status == 403 and "being terminated" in message:
        return UserError(f"{doing}: namespace {ns} is being deleted; wait, or pass another --namespace")
    if exc.status in (401, 403):
        return UserError(f"{doing}: {exc.status} {exc.reason}: {message}; check that your kubeconfig user has the "
                         f"pqtwin-operator Role in namespace {ns} -- {RBAC_HINT}")  # fmt: skip
    return UserError(f"{doing}: {exc.status} {exc.reason}: {message}")
