"""Following a run's pods: ``Watcher`` (a label selector's pods by ``?watch=true``, re-opened every second)
and ``LogFollower`` (one pod's log, followed), plus reading pod states -- ``started``, ``terminated`` and
``problem`` (what keeps a pod from running, as one line saying what to check).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes.client.rest import ApiException

from hw import podlog
from hw.k8s.client import REACH_HINT, Cluster, api_error, why
from sim.errors import UserError

PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
LOST_S = 60.0  # how long the API server may be unreachable during a run
WATCH_S = 1  # each watch is re-opened after this long, so timeouts and progress are checked every second


class LogFollower(threading.Thread):
    """Follows one pod's log (``follow=true``) into a file and memory, noting progress lines."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, path: Path, *, rounds: int) -> None:
        super().__init__(name=f"log-{pod}", daemon=True)
        self.c, self.ns, self.pod, self.path = cluster, namespace, pod, path
        self.data = bytearray()
        self.round = 0  # the highest round a progress line reported, never past ``rounds`` (the run's)
        self.rounds = rounds
        self.error: str | None = None
        self._scanned = 0

    def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            resp = cast(  # _preload_content=False: the raw urllib3 response (the client's annotation says str)
                urllib3.HTTPResponse,
                self.c.core.read_namespaced_pod_log(self.pod, self.ns, follow=True, _preload_content=False),
            )
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
            self.error = why(exc)

    def _scan(self) -> None:
        end = self.data.rfind(b"\n") + 1
        for line in bytes(self.data[self._scanned : end]).decode(errors="replace").split("\n"):
            # the log is anyone's text (podlog): a line that is no valid round is ignored, and none may raise
            if (r := podlog.progress_round(line.rstrip(), self.rounds)) is not None:
                self.round = max(self.round, r)
        self._scanned = max(self._scanned, end)

    def text(self) -> str:
        return bytes(self.data).decode(errors="replace")

    def refresh(self) -> None:
        """After the container ended: read the whole log once more if following lost some of it."""
        try:
            resp = cast(
                urllib3.HTTPResponse, self.c.core.read_namespaced_pod_log(self.pod, self.ns, _preload_content=False)
            )
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
                 stem: Callable[[dict[str, Any]], str | None], *, rounds: int) -> None:  # fmt: skip
        self.c, self.ns, self.rounds = cluster, namespace, rounds  # rounds: the run's (0: no progress lines)
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
            # _preload_content=False: the raw urllib3 response of the watch (the client's annotation says V1PodList)
            resp = cast(urllib3.HTTPResponse,
                        self.c.core.list_namespaced_pod(self.ns, label_selector=self.selector, watch=True,
                                                        timeout_seconds=WATCH_S, _preload_content=False,
                                                        _request_timeout=WATCH_S + 10))  # fmt: skip
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, ApiException) and 400 <= exc.status < 500:
                raise api_error(exc, f"watching pods in namespace {self.ns}", self.ns) from None
            self.lost_since = self.lost_since or time.monotonic()
            if time.monotonic() - self.lost_since > LOST_S:
                raise UserError(f"lost the Kubernetes API server at {self.c.host} for {LOST_S:.0f} s while following "
                                f"the run ({why(exc)}); {REACH_HINT}") from None  # fmt: skip
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
            f = LogFollower(self.c, self.ns, name, self.logs / f"{stem}.log", rounds=self.rounds)
            f.start()
            self.followers[name] = f

    def check(self, hosts: dict[str, str]) -> None:
        for name, pod in self.pods.items():
            if name in self.deleted and name not in self.expect_deleted:
                raise UserError(f"pod {name} was deleted while the run went on (by someone else, or its node went "
                                f"away); check `kubectl -n {self.ns} get events`")  # fmt: skip
            if (trouble := problem(pod, hosts.get(name))) is not None:
                raise UserError(trouble)

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
