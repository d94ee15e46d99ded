"""The Kubernetes backend of the hardware twin (issue 5): the scenario's pods on a real cluster.

- `render` (hw/k8s/render.py): scenario -> Kubernetes objects (the same objects as k8s/base), and what an
  admin applies once per namespace (``operator_rbac``: the namespace and the operator's Role; k8s/rbac).
- `backend` (hw/k8s/backend.py): ``run_k8s``, ``render_run`` (``--dry-run``) and ``calibrate_k8s``: the
  orchestration of a run or calibration.
- `client` (hw/k8s/client.py): the official ``kubernetes`` client wrapped -- ``Cluster`` (connection and
  preflight), ``Objects`` (create and clean up, in an existing namespace) and API errors as one line each.
- `watch` (hw/k8s/watch.py): ``Watcher`` and ``LogFollower``, following a run's pods and their logs.
- `pod` (hw/k8s/pod.py): the calibration Job's program. Pods run ``hw.node`` (mounted keys, log reports and
  metrics live there: hw/node/keys.py, report.py, metrics.py; the log protocol in hw/podlog.py).

The tests run the backend against ``FakeApiServer`` (in tests/fakes), a loopback stand-in for the
API subset it uses -- not Kubernetes, and not part of this package.

Attributes are imported lazily, so pods importing ``hw.k8s.pod`` do not load the Kubernetes client.
"""

from __future__ import annotations

from typing import Any

__all__ = ["calibrate_k8s", "render", "render_run", "run_k8s"]


def __getattr__(name: str) -> Any:
    if name in ("run_k8s", "render_run", "calibrate_k8s"):
        from hw.k8s import backend

        return getattr(backend, name)
    if name == "render":
        from hw.k8s.render import render

        return render
    raise AttributeError(name)
