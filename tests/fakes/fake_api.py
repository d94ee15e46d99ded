"""``FakeApiServer``: a loopback HTTP server implementing the subset of the Kubernetes API that the backend
(hw/k8s) uses -- a test double, a stand-in, not Kubernetes. No API server can be installed on our machines,
so the backend's create / watch / log / delete logic is tested against this. It lives in tests/ and is not
part of the package or the image.

What it implements, as the real API server does on the wire:

- ``/version``; bearer-token authentication (401 otherwise); JSON ``Status`` errors with the real codes and
  reasons (404 NotFound, 409 AlreadyExists, 403 Forbidden in a terminating namespace, 400, 401).
- RBAC, when given ``rbac`` (Role and ClusterRole objects, as if bound to the token's user): each resource
  request is authorised as the real RBAC authoriser does -- a Role's rules hold in its namespace only, a
  ClusterRole's everywhere; a request on ``namespaces/NAME`` is in namespace NAME, creating or listing
  namespaces in none -- else 403 Forbidden with the real message. Without ``rbac`` the user is an admin.
  The pods' DNS look-ups (fake_pod.py) stand for cluster DNS and are not authorised.
- namespaces, nodes, pods (+ ``/log`` with ``follow``), services, configmaps, secrets, serviceaccounts,
  networkpolicies (networking.k8s.io/v1) and jobs (batch/v1): create (201), get, list with
  ``labelSelector`` (equality-based), delete (200; graceful for pods; namespaces go Terminating first; jobs
  orphan their pods unless ``propagationPolicy`` is Background or Foreground) and ``?watch=true``: a
  chunked stream of JSON lines ``{"type": ADDED|MODIFIED|DELETED, "object": ...}``, starting with synthetic
  ADDED events for what exists, ending after ``timeoutSeconds``.

And a small cluster behind it, so the pods' programs actually run:

- **scheduler**: required node affinity / nodeSelector against the nodes' labels and CPU / memory requests
  against allocatable; otherwise the pod stays Pending with ``PodScheduled=False, reason=Unschedulable``
  and the scheduler's message.
- **kubelet**: images not in ``images`` fail with ``ErrImagePull`` then ``ImagePullBackOff``; ``pull_delay_s``
  keeps containers in ``ContainerCreating``; ``termination_delay_s`` keeps a deleted pod (Terminating, its name
  taken) that long after its container ended, as a real kubelet's tear-down does. A started container is a
  real process: the pod's volumes are materialised in a temp dir (emptyDir, configMap, secret, with subPath
  and items), paths in its command and env are mapped there, env ``fieldRef``s are resolved, and
  ``python -m MODULE`` runs through
  `tests.fakes.fake_pod` (the pod's own loopback IP instead of a network namespace; Service names resolve to
  their cluster IP). Readiness probes (httpGet) set the Ready condition; stdout+stderr are the pod's log;
  exit codes become ``terminated`` states and phase Succeeded/Failed; deleting a pod sends SIGTERM, then
  SIGKILL after the grace period.
- **kube-proxy**: each Service gets a loopback cluster IP; its ports forward to a ready endpoint.
- **job controller**: a Job gets one pod from its template (``job-name`` labels, owner reference) and
  Complete / Failed conditions from it.

Not implemented: NetworkPolicy enforcement, Pod Security admission, resource limits (cgroups), restarts,
liveness probes, field selectors, PATCH/PUT, and everything else. Objects are stored as sent, plus the
metadata and status fields above (``status.qosClass`` computed from the containers' requests and limits, as
the real API server does).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from .fake_pod import DNS_AGENT

# (group, version, plural) -> (kind, namespaced)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("", "v1", "namespaces"): ("Namespace", False),
    ("", "v1", "nodes"): ("Node", False),
    ("", "v1", "pods"): ("Pod", True),
    ("", "v1", "services"): ("Service", True),
    ("", "v1", "configmaps"): ("ConfigMap", True),
    ("", "v1", "secrets"): ("Secret", True),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True),
    ("networking.k8s.io", "v1", "networkpolicies"): ("NetworkPolicy", True),
    ("batch", "v1", "jobs"): ("Job", True),
}
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")
ROOT = Path(__file__).resolve().parents[2]  # the repository root: the pods' PYTHONPATH (hw, sim, tests.fakes)
POD_SHIM = "tests.fakes.fake_pod"  # run as ``python -m``: a pod's network and cluster DNS (fake_pod.py)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(q: str | int | float) -> float:
    """CPU in cores or memory in bytes from a Kubernetes quantity."""
    s = str(q)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for u, f in units.items():
        if s.endswith(u):
            return float(s[: -len(u)]) * f
    return float(s)


@dataclass
class FakeNode:
    name: str
    arch: str = "arm64"
    cpu: str = "4"
    memory: str = "3800Mi"
    ready: bool = True
    labels: dict[str, str] = field(default_factory=dict)

    def object(self) -> dict[str, Any]:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/arch": self.arch, "kubernetes.io/os": "linux"}
        alloc = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels | self.labels},
            "status": {
                "capacity": alloc,
                "allocatable": alloc,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if self.ready else "Unknown",
                        "reason": "KubeletReady" if self.ready else "NodeStatusUnknown",
                    }
                ],
                "nodeInfo": {
                    "architecture": self.arch,
                    "operatingSystem": "linux",
                    "kubeletVersion": "v1.33.4+k3s1",
                    "osImage": "Debian GNU/Linux 12 (bookworm) (stand-in)",
                    "kernelVersion": "6.12.25+rpt-rpi-v8",
                    "containerRuntimeVersion": "containerd://2.0.5-k3s1",
                    "kubeProxyVersion": "",
                    "bootID": "",
                    "machineID": "",
                    "systemUUID": "",
                },
            },
        }


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


class FakeApiServer:
    """See the module docstring. ``with FakeApiServer(nodes) as api: api.kubeconfig(path)``."""

    def __init__(
        self,
        nodes: list[FakeNode] | None = None,
        *,
        images: set[str] | None = None,
        pull_delay_s: float = 0.0,
        termination_delay_s: float = 0.0,
        token: str | None = None,
        workdir: Path | None = None,
        rbac: list[dict[str, Any]] | None = None,
    ) -> None:
        self.token = token or secrets.token_hex(16)
        self.rbac = rbac  # Role / ClusterRole objects the token's user holds; None: an admin
        self.images = images  # None: every image is available
        self.pull_delay_s = pull_delay_s
        self.termination_delay_s = termination_delay_s
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> object
        self.events: list[tuple[int, str, str, str, dict[str, Any]]] = []  # (rv, plural, namespace, type, obj)
        self.rv = itertools.count(1000)
        self.cond = threading.Condition()
        # every API request: (verb, group/resource, subresource, namespace, User-Agent)
        self.audit: list[tuple[str, str, str, str, str]] = []
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.pod_dirs: dict[tuple[str, str], Path] = {}
        self.proxies: dict[tuple[str, str], list[socket.socket]] = {}
        # addresses on the loopback net, random per server so that servers in parallel test processes differ
        self.net = (20 + secrets.randbelow(200), secrets.randbelow(250))
        self.ips = itertools.count(2)
        self.vips = itertools.count(2)
        self.stopping = threading.Event()
        self.workdir = Path(tempfile.mkdtemp(prefix="fake-k8s-", dir=workdir))
        for n in nodes or []:
            self._put("nodes", "", n.name, n.object(), "ADDED")
        self.http = _Server(self)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        threading.Thread(target=self.http.serve_forever, name="fake-api", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.http.shutdown()
        self.http.server_close()
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for socks in self.proxies.values():
            for s in socks:
                with contextlib.suppress(OSError):
                    s.close()
        with self.cond:
            self.cond.notify_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig file pointing at this server with its bearer token."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(cfg))
        return path

    # --- store ---------------------------------------------------------------------------------------

    def _put(self, plural: str, ns: str, name: str, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        with self.cond:
            rv = next(self.rv)
            obj["metadata"]["resourceVersion"] = str(rv)
            if kind == "DELETED":
                self.store.pop((plural, ns, name), None)
            else:
                self.store[(plural, ns, name)] = obj
            self.events.append((rv, plural, ns, kind, copy.deepcopy(obj)))
            self.cond.notify_all()
            return copy.deepcopy(obj)

    def get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.store.get((plural, ns, name))
            return copy.deepcopy(obj) if obj else None

    def _update(self, plural: str, ns: str, name: str, fn: Any) -> dict[str, Any] | None:
        """Apply ``fn(obj)`` under the lock and record a MODIFIED event (None if the object is gone)."""
        with self.cond:
            obj = self.store.get((plural, ns, name))
            if obj is None:
                return None
            fn(obj)
            return self._put(plural, ns, name, obj, "MODIFIED")

    def create(self, plural: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        kind, namespaced = next(v for k, v in RESOURCES.items() if k[2] == plural)
        if body.get("kind") not in (None, kind):
            raise ApiError(400, "BadRequest", f"the kind {body.get('kind')!r} does not match {kind!r}")
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta["name"]
        if namespaced:
            if meta.get("namespace") not in (None, ns):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the request")
            meta["namespace"] = ns
            space = self.get("namespaces", "", ns)
            if space is None:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
            if space["status"].get("phase") == "Terminating":
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{plural} "{name}" is forbidden: unable to create new content in '
                    f"namespace {ns} because it is being terminated",
                )
        with self.cond:
            if (plural, ns if namespaced else "", name) in self.store:
                raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists')
            meta.update({"uid": str(uuid.uuid4()), "creationTimestamp": _now()})
            if plural == "namespaces":
                body["status"] = {"phase": "Active"}
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            if plural == "pods":
                body["status"] = {"phase": "Pending", "conditions": [], "qosClass": _qos_class(body)}
            if plural == "services":
                body["spec"]["clusterIP"] = f"127.{self.net[0]}.{self.net[1] + 1}.{next(self.vips)}"
            if plural == "jobs":
                body["status"] = {}
                meta.setdefault("labels", {})
            out = self._put(plural, ns if namespaced else "", name, body, "ADDED")
        if plural == "pods":
            threading.Thread(target=self._run_pod, args=(ns, name), name=f"kubelet-{name}", daemon=True).start()
        elif plural == "services":
            self._start_proxy(ns, name)
        elif plural == "jobs":
            self._start_job(ns, name)
        return out

    def delete(self, plural: str, ns: str, name: str, grace_s: float | None, propagation: str | None) -> dict[str, Any]:
        obj = self.get(plural, ns, name)
        if obj is None:
            raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
        if plural == "pods":
            return self._delete_pod(ns, name, grace_s)
        if plural == "namespaces":
            out = self._update(plural, "", name, lambda o: o["status"].update(phase="Terminating"))
            threading.Thread(target=self._finalise_namespace, args=(name,), daemon=True).start()
            return out or obj
        if plural == "services":
            for s in self.proxies.pop((ns, name), []):
                with contextlib.suppress(OSError):
                    s.close()
        if plural == "jobs" and propagation in ("Background", "Foreground"):
            for (pl, pns, pname), pod in list(self.store.items()):
                owners = pod["metadata"].get("ownerReferences", [])
                if pl == "pods" and pns == ns and any(o.get("uid") == obj["metadata"]["uid"] for o in owners):
                    self._delete_pod(ns, pname, None)
        return self._put(plural, ns, name, obj, "DELETED")

    def _finalise_namespace(self, name: str) -> None:
        for pl, pns, pname in list(self.store):
            if pns == name and pl == "pods":
                with contextlib.suppress(ApiError):
                    self._delete_pod(name, pname, None)
        deadline = time.monotonic() + 60
        while any(k[0] == "pods" and k[1] == name for k in self.store) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pl, pns, pname in list(self.store):
            if pns == name:
                obj = self.get(pl, pns, pname)
                if obj is not None:
                    if pl == "services":
                        for s in self.proxies.pop((pns, pname), []):
                            with contextlib.suppress(OSError):
                                s.close()
                    self._put(pl, pns, pname, obj, "DELETED")
        obj = self.get("namespaces", "", name)
        if obj is not None:
            self._put("namespaces", "", name, obj, "DELETED")

    def list(self, plural: str, ns: str | None, selector: dict[str, str]) -> list[dict[str, Any]]:
        with self.cond:
            return [
                copy.deepcopy(o)
                for (pl, ons, _), o in sorted(self.store.items())
                if pl == plural and (ns is None or ons == ns) and _matches(o, selector)
            ]

    def authorise(self, verb: str, group: str, plural: str, sub: str, namespace: str) -> bool:
        """Whether the token's user may ``verb`` ``plural[/sub]`` of ``group`` in ``namespace`` ("": none)."""
        return self.rbac is None or rbac_allows(self.rbac, verb, group, plural, sub, namespace)

    # --- pods: scheduler and kubelet -----------------------------------------------------------------

    def _schedule(self, pod: dict[str, Any]) -> tuple[str | None, str]:
        nodes = self.list("nodes", None, {})
        spec = pod["spec"]
        fits, reasons = [], []
        for n in nodes:
            labels = n["metadata"]["labels"]
            if spec.get("nodeName") and spec["nodeName"] != n["metadata"]["name"]:
                reasons.append("didn't match Pod's node name")
                continue
            if not _affinity_ok(spec, labels):
                reasons.append("didn't match Pod's node affinity/selector")
                continue
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]):
                reasons.append("had untolerated taint {node.kubernetes.io/unreachable: }")
                continue
            alloc = n["status"]["allocatable"]
            used_cpu, used_mem = self._requested(n["metadata"]["name"])
            want_cpu, want_mem = _requests(pod)
            if used_cpu + want_cpu > _quantity(alloc["cpu"]) + 1e-9:
                reasons.append("Insufficient cpu")
                continue
            if used_mem + want_mem > _quantity(alloc["memory"]):
                reasons.append("Insufficient memory")
                continue
            fits.append(n["metadata"]["name"])
        if fits:
            return fits[0], ""
        counts: dict[str, int] = {}
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
        detail = ", ".join(
            f"{c} node(s) {r}" if not r.startswith("Insufficient") else f"{c} {r}" for r, c in sorted(counts.items())
        )
        return None, f"0/{len(nodes)} nodes are available: {detail}. preemption: not eligible due to preemptionPolicy."

    def _requested(self, node: str) -> tuple[float, float]:
        cpu = mem = 0.0
        for p in self.list("pods", None, {}):
            if p["spec"].get("nodeName") == node and p["status"].get("phase") in ("Pending", "Running"):
                c, m = _requests(p)
                cpu, mem = cpu + c, mem + m
        return cpu, mem

    def _set_status(self, ns: str, name: str, **changes: Any) -> dict[str, Any] | None:
        def fn(o: dict[str, Any]) -> None:
            st = o["status"]
            for k, v in changes.items():
                if k == "condition":
                    st["conditions"] = [c for c in st.get("conditions", []) if c["type"] != v["type"]] + [v]
                elif k == "nodeName":
                    o["spec"]["nodeName"] = v
                else:
                    st[k] = v

        return self._update("pods", ns, name, fn)

    def _container_status(self, pod: dict[str, Any], state: dict[str, Any], ready: bool = False) -> list[Any]:
        c = pod["spec"]["containers"][0]
        return [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": "running" in state,
                "state": state,
            }
        ]

    def _gone(self, ns: str, name: str) -> bool:
        pod = self.get("pods", ns, name)
        return pod is None or "deletionTimestamp" in pod["metadata"] or self.stopping.is_set()

    def _run_pod(self, ns: str, name: str) -> None:
        pod = self.get("pods", ns, name)
        assert pod is not None
        node, message = self._schedule(pod)
        cond = lambda t, s, **kw: {"type": t, "status": s, "lastTransitionTime": _now(), **kw}  # noqa: E731
        if node is None:
            self._set_status(ns, name, condition=cond("PodScheduled", "False", reason="Unschedulable", message=message))
            return
        image = pod["spec"]["containers"][0]["image"]
        waiting = {"waiting": {"reason": "ContainerCreating"}}
        self._set_status(
            ns,
            name,
            nodeName=node,
            condition=cond("PodScheduled", "True"),
            hostIP="127.0.0.1",
            containerStatuses=self._container_status(pod, waiting),
        )
        if self.images is not None and image not in self.images:
            reason, i = PULL_FAILURES[0], 0
            while not self._gone(ns, name):
                msg = (
                    f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found'
                    if reason == "ErrImagePull"
                    else f'Back-off pulling image "{image}"'
                )
                state = {"waiting": {"reason": reason, "message": msg}}
                self._set_status(ns, name, containerStatuses=self._container_status(pod, state))
                i += 1
                reason = PULL_FAILURES[i % 2]
                time.sleep(0.5)
            self._remove_if_deleting(ns, name)
            return
        deadline = time.monotonic() + self.pull_delay_s
        while time.monotonic() < deadline:
            if self._gone(ns, name):
                self._remove_if_deleting(ns, name)
                return
            time.sleep(0.05)
        if self._gone(ns, name):
            self._remove_if_deleting(ns, name)
            return
        ip = f"127.{self.net[0]}.{self.net[1]}.{next(self.ips)}"
        try:
            proc = self._start_container(pod, ns, ip, node)
        except (OSError, ValueError) as exc:
            state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            self._set_status(ns, name, containerStatuses=self._container_status(pod, state))
            return
        started = _now()
        self._set_status(
            ns,
            name,
            phase="Running",
            podIP=ip,
            podIPs=[{"ip": ip}],
            startTime=started,
            containerStatuses=self._container_status(pod, {"running": {"startedAt": started}}),
            condition=cond("Ready", "False", reason="ContainersNotReady"),
        )
        self._monitor(pod, ns, name, ip, proc, started)

    def _monitor(
        self, pod: dict[str, Any], ns: str, name: str, ip: str, proc: subprocess.Popen[bytes], started: str
    ) -> None:
        probe = pod["spec"]["containers"][0].get("readinessProbe")
        ready, next_probe = probe is None, 0.0
        if ready:
            self._set_ready(pod, ns, name, True, started)
        while proc.poll() is None and not self.stopping.is_set():
            if probe and time.monotonic() >= next_probe:
                ok = _probe(probe, pod, ip)
                if ok != ready:
                    ready = ok
                    self._set_ready(pod, ns, name, ok, started)
                next_probe = time.monotonic() + 0.3
            time.sleep(0.05)
        code = proc.wait()
        term = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": _now(),
            }
        }
        if code < 0:  # killed by a signal: the runtime reports 128 + signal
            term["terminated"]["exitCode"] = 128 - code
        cond = {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": _now()}
        self._set_status(
            ns,
            name,
            phase="Succeeded" if code == 0 else "Failed",
            containerStatuses=self._container_status(pod, term),
            condition=cond,
        )
        self._job_pod_done(pod, code == 0)
        self._remove_if_deleting(ns, name)

    def _set_ready(self, pod: dict[str, Any], ns: str, name: str, ready: bool, started: str) -> None:
        cond = {"type": "Ready", "status": str(ready), "lastTransitionTime": _now()}
        state = {"running": {"startedAt": started}}
        self._set_status(ns, name, condition=cond, containerStatuses=self._container_status(pod, state, ready))

    def _remove_if_deleting(self, ns: str, name: str) -> None:
        pod = self.get("pods", ns, name)
        if pod is not None and "deletionTimestamp" in pod["metadata"]:
            self._remove(ns, name)

    def _remove(self, ns: str, name: str) -> None:
        """The pod object goes once the kubelet has torn it down (after ``termination_delay_s``)."""

        def remove() -> None:
            time.sleep(self.termination_delay_s)
            pod = self.get("pods", ns, name)
            if pod is not None:
                self._put("pods", ns, name, pod, "DELETED")

        if self.termination_delay_s > 0:
            threading.Thread(target=remove, daemon=True).start()
        else:
            remove()

    def _delete_pod(self, ns: str, name: str, grace_s: float | None) -> dict[str, Any]:
        pod = self.get("pods", ns, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace_s is None else grace_s
        out = (
            self._update(
                "pods",
                ns,
                name,
                lambda o: o["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=int(grace)),
            )
            or pod
        )
        proc = self.procs.get((ns, name))
        if proc is None or proc.poll() is not None:
            if pod["status"].get("phase") != "Running":  # never started, or its monitor has finished
                self._remove(ns, name)
            return out

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(max(0.0, float(grace)))
            except subprocess.TimeoutExpired:
                proc.kill()

        threading.Thread(target=stop, daemon=True).start()  # the pod's monitor records the exit and removes it
        return out

    def _start_container(self, pod: dict[str, Any], ns: str, ip: str, node: str) -> subprocess.Popen[bytes]:
        name = pod["metadata"]["name"]
        c = pod["spec"]["containers"][0]
        root = self.workdir / ns / name
        mounts = _materialise(pod, self, ns, root)
        command = [_map_path(a, mounts) for a in c.get("command", []) + c.get("args", [])]
        if command[:2] != ["python", "-m"]:
            raise ValueError(f"the stand-in runs only `python -m MODULE ...` (got {command[:3]})")
        fields = {"metadata.name": name, "metadata.namespace": ns, "spec.nodeName": node, "status.podIP": ip}
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = _map_path(e["value"], mounts)
            elif "fieldRef" in e.get("valueFrom", {}):
                env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        cwd = _map_path(c.get("workingDir", "/tmp"), mounts)
        cwd = cwd if Path(cwd).is_dir() else str(root)
        log = open(root / "container.log", "wb")  # noqa: SIM115 - owned by the process
        cmd = [sys.executable, "-m", POD_SHIM, ip, self.url, ns, self.token, "--", *command[1:]]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
                                preexec_fn=_die_with_parent)  # fmt: skip
        log.close()
        self.procs[(ns, name)] = proc
        self.pod_dirs[(ns, name)] = root
        return proc

    def log_path(self, ns: str, name: str) -> Path | None:
        root = self.pod_dirs.get((ns, name))
        return root / "container.log" if root else None

    # --- services (kube-proxy) -----------------------------------------------------------------------

    def _start_proxy(self, ns: str, name: str) -> None:
        self.proxies[(ns, name)] = []
        threading.Thread(target=self._proxy_control, args=(ns, name), daemon=True).start()

    def _proxy_control(self, ns: str, name: str) -> None:
        """Listen on the Service's cluster IP only while it has a ready endpoint: without one, connections
        are refused, as kube-proxy's REJECT rule for a Service without endpoints does."""
        while (ns, name) in self.proxies and not self.stopping.is_set():
            svc = self.get("services", ns, name)
            if svc is None:
                break
            ports = svc["spec"].get("ports", [])
            serving = bool(self.proxies.get((ns, name)))
            has = all(self._endpoint(ns, name, p) is not None for p in ports)
            if has and not serving:
                socks = []
                for port in ports:
                    srv = socket.create_server((svc["spec"]["clusterIP"], port["port"]))
                    socks.append(srv)
                    threading.Thread(target=self._proxy_loop, args=(srv, ns, name, port), daemon=True).start()
                self.proxies[(ns, name)] = socks
            elif not has and serving:
                for sock in self.proxies.get((ns, name), []):
                    with contextlib.suppress(OSError):
                        sock.close()
                self.proxies[(ns, name)] = []
            time.sleep(0.05)

    def _endpoint(self, ns: str, name: str, port: dict[str, Any]) -> tuple[str, int] | None:
        svc = self.get("services", ns, name)
        if svc is None:
            return None
        for pod in self.list("pods", ns, svc["spec"].get("selector", {})):
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
            if pod["status"].get("phase") == "Running" and ready and "deletionTimestamp" not in pod["metadata"]:
                target = port.get("targetPort", port["port"])
                if isinstance(target, str):
                    named = [
                        p for c in pod["spec"]["containers"] for p in c.get("ports", []) if p.get("name") == target
                    ]
                    if not named:
                        continue
                    target = named[0]["containerPort"]
                return pod["status"]["podIP"], int(target)
        return None

    def _proxy_loop(self, srv: socket.socket, ns: str, name: str, port: dict[str, Any]) -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            ep = self._endpoint(ns, name, port)
            if ep is None:  # no ready endpoint: connection refused, as kube-proxy's REJECT rule does
                conn.close()
                continue
            try:
                upstream = socket.create_connection(ep, timeout=5)
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    # --- jobs ----------------------------------------------------------------------------------------

    def _start_job(self, ns: str, name: str) -> None:
        job = self.get("jobs", ns, name)
        assert job is not None
        uid = job["metadata"]["uid"]
        tmpl = copy.deepcopy(job["spec"]["template"])
        meta = tmpl.setdefault("metadata", {})
        meta["labels"] = meta.get("labels", {}) | {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        meta["generateName"] = f"{name}-"
        meta["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        self._update("jobs", ns, name, lambda o: o["status"].update(active=1, startTime=_now()))
        self.create("pods", ns, {"apiVersion": "v1", "kind": "Pod", **tmpl})

    def _job_pod_done(self, pod: dict[str, Any], ok: bool) -> None:
        for owner in pod["metadata"].get("ownerReferences", []):
            if owner.get("kind") == "Job":
                ns = pod["metadata"]["namespace"]

                def fn(o: dict[str, Any], ok: bool = ok) -> None:
                    st = o["status"]
                    st.pop("active", None)
                    st["succeeded" if ok else "failed"] = 1
                    kind = "Complete" if ok else "Failed"
                    st["conditions"] = [{"type": kind, "status": "True", "lastTransitionTime": _now()}]
                    if ok:
                        st["completionTime"] = _now()

                self._update("jobs", ns, owner["name"], fn)


# --- helpers -------------------------------------------------------------------------------------------


def _matches(obj: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _parse_selector(text: str) -> dict[str, str]:
    out = {}
    for term in filter(None, text.split(",")):
        key, sep, value = term.partition("=")
        if not sep:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r} (the stand-in knows only a=b)")
        out[key.strip()] = value.lstrip("=").strip()
    return out


def rbac_allows(roles: list[dict[str, Any]], verb: str, group: str, plural: str, sub: str, namespace: str) -> bool:
    """The RBAC authoriser's answer for a user bound to ``roles``: a Role's rules hold in its own namespace
    only, a ClusterRole's everywhere (``namespace`` "": a cluster-scoped request)."""
    resource = f"{plural}/{sub}" if sub else plural

    def grants(rule: dict[str, Any]) -> bool:
        return (
            bool({group, "*"} & set(rule.get("apiGroups", [])))
            and bool({resource, "*"} & set(rule.get("resources", [])))
            and bool({verb, "*"} & set(rule.get("verbs", [])))
        )

    for role in roles:
        if role["kind"] == "Role" and (not namespace or role["metadata"]["namespace"] != namespace):
            continue
        if any(grants(rule) for rule in role.get("rules", [])):
            return True
    return False


def _qos_class(pod: dict[str, Any]) -> str:
    """Guaranteed (every container: CPU and memory limits, requests equal to them), BestEffort (no requests or
    limits at all) or Burstable -- the API server's rule; requests default to limits when only those are set."""
    res = [c.get("resources", {}) for c in pod.get("spec", {}).get("containers", [])]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    for r in res:
        limits, requests = r.get("limits", {}), r.get("requests", {})
        for k in ("cpu", "memory"):
            if k not in limits or _quantity(requests.get(k, limits[k])) != _quantity(limits[k]):
                return "Burstable"
    return "Guaranteed"


def _requests(pod: dict[str, Any]) -> tuple[float, float]:
    cpu = mem = 0.0
    for c in pod["spec"].get("containers", []):
        req = c.get("resources", {}).get("requests", {})
        cpu += _quantity(req.get("cpu", 0))
        mem += _quantity(req.get("memory", 0))
    return cpu, mem


def _affinity_ok(spec: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    req = spec.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if not req:
        return True

    def term_ok(term: dict[str, Any]) -> bool:
        for e in term.get("matchExpressions", []):
            value, op = labels.get(e["key"]), e["operator"]
            ok = {
                "In": value in e.get("values", []),
                "NotIn": value not in e.get("values", []),
                "Exists": value is not None,
                "DoesNotExist": value is None,
            }.get(op, False)
            if not ok:
                return False
        return True

    return any(term_ok(t) for t in req.get("nodeSelectorTerms", []))


def _probe(probe: dict[str, Any], pod: dict[str, Any], ip: str) -> bool:
    get = probe.get("httpGet")
    if not get:
        return True
    port = get["port"]
    if isinstance(port, str):
        port = next(
            p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", []) if p.get("name") == port
        )
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}{get.get('path', '/')}", timeout=1) as resp:
            return 200 <= resp.status < 400
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before exec: a pod's process must not outlive the stand-in (Linux PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _materialise(pod: dict[str, Any], api: FakeApiServer, ns: str, root: Path) -> list[tuple[str, Path]]:
    """Create the pod's volumes under ``root``; (mount path, host path) pairs, longest first."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    c = pod["spec"]["containers"][0]
    mounts = sorted(c.get("volumeMounts", []), key=lambda m: len(m["mountPath"]))
    placed: list[tuple[str, Path]] = []
    root.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(mounts):
        vol = volumes.get(m["name"])
        if vol is None:
            raise ValueError(f"volumeMount {m['name']!r} has no volume")
        parent = next(
            (
                (mp, hp)
                for mp, hp in sorted(placed, key=lambda x: -len(x[0]))
                if m["mountPath"].startswith(mp.rstrip("/") + "/")
            ),
            None,
        )
        host = parent[1] / m["mountPath"][len(parent[0]) :].lstrip("/") if parent else root / f"vol-{i}"
        files = _volume_files(vol, api, ns)
        if "subPath" in m:
            if m["subPath"] not in files:
                raise ValueError(f"subPath {m['subPath']!r} not found in volume {m['name']!r}")
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(files[m["subPath"]])
        else:
            host.mkdir(parents=True, exist_ok=True)
            for rel, data in files.items():
                (host / rel).parent.mkdir(parents=True, exist_ok=True)
                (host / rel).write_bytes(data)
                if "secret" in vol:
                    os.chmod(host / rel, vol["secret"].get("defaultMode", 0o644))
        placed.append((m["mountPath"], host))
    return sorted(placed, key=lambda x: -len(x[0]))


def _volume_files(vol: dict[str, Any], api: FakeApiServer, ns: str) -> dict[str, bytes]:
    import base64

    if "emptyDir" in vol:
        return {}
    if "configMap" in vol:
        src, plural, key = vol["configMap"], "configmaps", "name"
    elif "secret" in vol:
        src, plural, key = vol["secret"], "secrets", "secretName"
    else:
        raise ValueError(f"volume type of {vol['name']!r} is not implemented by the stand-in")
    obj = api.get(plural, ns, src[key])
    if obj is None:  # the kubelet reports this as a mount failure and keeps retrying
        raise ValueError(f'{plural} "{src[key]}" not found')
    if plural == "secrets":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    if src.get("items"):
        return {i["path"]: data[i["key"]] for i in src["items"]}
    return data


def _map_path(value: str, mounts: list[tuple[str, Path]]) -> str:
    for mount, host in mounts:
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(host) + value[len(mount) :]
    return value


# --- HTTP ----------------------------------------------------------------------------------------------
#
# One route table: (method, path pattern, handler). Resource paths are /api/VERSION/... and
# /apis/GROUP/VERSION/..., then [/namespaces/NS]/PLURAL[/NAME[/SUB]], as the real API server's. Every request
# needs the bearer token; a resource path is checked against RESOURCES (404) and recorded in ``audit``, and
# a resource path no route serves is a 405.

_PREFIX = r"^/(?:api/[^/]+|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>"
VERSION = re.compile(r"^/version/?$")
COLLECTION = re.compile(_PREFIX + r"[^/]+)/?$")
OBJECT = re.compile(_PREFIX + r"[^/]+)/(?P<name>[^/]+)/?$")
POD_LOG = re.compile(_PREFIX + r"pods)/(?P<name>[^/]+)/(?P<sub>log)/?$")
ANY_RESOURCE = re.compile(_PREFIX + r"[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?/?$")


@dataclass(frozen=True)
class Request:
    """What a handler gets: the server and the request's method, path parts and query."""

    api: FakeApiServer
    method: str
    query: dict[str, list[str]]
    group: str = ""
    plural: str = ""
    ns: str | None = None  # the namespace in the path
    name: str | None = None
    sub: str | None = None

    def arg(self, key: str, default: str | None = None) -> str | None:
        """The query parameter's (first) value."""
        return self.query.get(key, [default])[0]

    @property
    def namespaced(self) -> bool:
        return next(v[1] for k, v in RESOURCES.items() if k[2] == self.plural)

    @property
    def key_ns(self) -> str:
        """The namespace the object is stored under ("" for cluster-scoped resources)."""
        return (self.ns or "") if self.namespaced else ""

    @property
    def scope(self) -> str | None:
        """The namespace to list or watch in; None for all (or a cluster-scoped resource)."""
        return self.ns if self.namespaced else None

    @property
    def watching(self) -> bool:
        return self.arg("watch", "false") in ("true", "1")

    def verb(self) -> str:
        """The Kubernetes verb, as RBAC and the audit log name it."""
        if self.method == "GET" and self.name is None:
            return "watch" if self.watching else "list"
        return {"POST": "create", "DELETE": "delete"}.get(self.method, "get")


def _version(h: _Handler, r: Request) -> None:
    h.send_json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.4+k3s1 (stand-in)", "platform": "linux/arm64"})


def _create(h: _Handler, r: Request) -> None:
    h.send_json(201, r.api.create(r.plural, r.key_ns, h.body()))


def _list_or_watch(h: _Handler, r: Request) -> None:
    selector = _parse_selector(r.arg("labelSelector", "") or "")
    if r.watching:
        _watch(h, r, selector)
        return
    kind = next(v[0] for k, v in RESOURCES.items() if k[2] == r.plural)
    items = r.api.list(r.plural, r.scope, selector)
    h.send_json(200, {"kind": f"{kind}List", "apiVersion": "v1", "items": items,
                      "metadata": {"resourceVersion": str(next(r.api.rv))}})  # fmt: skip


def _get(h: _Handler, r: Request) -> None:
    obj = r.api.get(r.plural, r.key_ns, r.name or "")
    if obj is None:
        raise ApiError(404, "NotFound", f'{r.plural} "{r.name}" not found')
    h.send_json(200, obj)


def _delete(h: _Handler, r: Request) -> None:
    body = h.body()
    grace = body.get("gracePeriodSeconds", r.arg("gracePeriodSeconds"))
    prop = body.get("propagationPolicy", r.arg("propagationPolicy"))
    h.send_json(200, r.api.delete(r.plural, r.key_ns, r.name or "", None if grace is None else float(grace), prop))


def _not_allowed(h: _Handler, r: Request) -> None:
    raise ApiError(405, "MethodNotAllowed", f"the stand-in does not implement {r.method} here")


def _watch(h: _Handler, r: Request, selector: dict[str, str]) -> None:
    """A chunked stream of JSON watch events until ``timeoutSeconds``."""
    api, plural, ns = r.api, r.plural, r.scope
    deadline = time.monotonic() + float(r.arg("timeoutSeconds") or 1800)
    version = r.arg("resourceVersion")
    since = int(version) if version else None
    with api.cond:
        if since is None:  # "get state and start at most recent": synthetic ADDED events first
            first = [("ADDED", o) for o in api.list(plural, ns, selector)]
            since = api.events[-1][0] if api.events else 0
        else:
            first = []
    h.start_stream("application/json")
    try:
        for kind, obj in first:
            h.chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        while not api.stopping.is_set():
            with api.cond:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                new = [e for e in api.events if e[0] > since]
                if not new:
                    api.cond.wait(min(remaining, 0.5))
                    continue
            for rv, pl, ons, kind, obj in new:
                since = rv
                if pl == plural and (ns is None or ons == ns) and _matches(obj, selector):
                    h.chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        h.chunk(b"")
    except (BrokenPipeError, ConnectionResetError):
        return


def _log(h: _Handler, r: Request) -> None:
    """The container's output (stdout+stderr), chunked; ``follow``: until the container ends."""
    api, ns, name = r.api, r.key_ns, r.name or ""
    pod = api.get("pods", ns, name)
    if pod is None:
        raise ApiError(404, "NotFound", f'pods "{name}" not found')
    path = api.log_path(ns, name)
    if path is None:
        c = pod["spec"]["containers"][0]["name"]
        raise ApiError(400, "BadRequest", f'container "{c}" in pod "{name}" is waiting to start: ContainerCreating')
    follow = r.arg("follow", "false") in ("true", "1")
    proc = api.procs[(ns, name)]
    h.start_stream("text/plain")
    try:
        with open(path, "rb") as f:
            while True:
                data = f.read(65536)
                if data:
                    h.chunk(data)
                    continue
                if not follow or (proc.poll() is not None) or api.stopping.is_set():
                    rest = f.read()
                    if rest:
                        h.chunk(rest)
                    break
                time.sleep(0.05)
        h.chunk(b"")
    except (BrokenPipeError, ConnectionResetError):
        return


Handle = Callable[["_Handler", Request], None]
ROUTES: list[tuple[str, re.Pattern[str], Handle]] = [
    ("GET", VERSION, _version),
    ("GET", COLLECTION, _list_or_watch),  # list, or watch with ?watch=true
    ("POST", COLLECTION, _create),
    ("GET", OBJECT, _get),
    ("DELETE", OBJECT, _delete),
    ("GET", POD_LOG, _log),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: FakeApiServer) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        try:
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            url = urlsplit(self.path)
            serve: Handle = _not_allowed
            match = ANY_RESOURCE.match(url.path)
            for verb, pattern, fn in ROUTES:
                if verb == method and (m := pattern.match(url.path)):
                    serve, match = fn, m
                    break
            if match is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            r = Request(api, method, parse_qs(url.query), **{k: v for k, v in match.groupdict().items() if v})
            if r.plural:  # a resource path
                if not any(k[0] == r.group and k[2] == r.plural for k in RESOURCES):
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                agent = self.headers.get("User-Agent", "")
                api.audit.append((r.verb(), f"{r.group}/{r.plural}" if r.group else r.plural, r.sub or "",
                                  r.ns or "", agent))  # fmt: skip
                # a request on namespaces/NAME is in namespace NAME (the API server's request info does this)
                space = (r.name or "") if r.plural == "namespaces" else (r.ns or "")
                if agent != DNS_AGENT and not api.authorise(r.verb(), r.group, r.plural, r.sub or "", space):
                    what = f'resource "{r.plural}"' + (f' subresource "{r.sub}"' if r.sub else "")
                    where = f' in the namespace "{space}"' if space else " at the cluster scope"
                    raise ApiError(403, "Forbidden", f'{r.plural} is forbidden: User "fake" cannot {r.verb()} {what} '
                                   f'in API group "{r.group}"{where}')  # fmt: skip
            serve(self, r)
        except ApiError as exc:
            self.send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # a bug in the stand-in: say so, as a 500 Status
            self.send_json(500, ApiError(500, "InternalError", f"stand-in error: {type(exc).__name__}: {exc}").status())

    def body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
