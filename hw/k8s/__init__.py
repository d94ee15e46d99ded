"""The Kubernetes backend of the hardware twin (issue 5): the scenario's pods on a real cluster.

- `render` (hw/k8s/render.py): scenario -> Kubernetes objects (the same objects as k8s/base).
- `backend` (hw/k8s/backend.py): ``run_k8s`` and ``calibrate_k8s`` with the official ``kubernetes`` client.
- `pod` (hw/k8s/pod.py): what runs in the pods next to ``hw.node`` (provisioned keys, log reports, metrics).
- `fake_api` (hw/k8s/fake_api.py): ``FakeApiServer``, a loopback stand-in for the API subset the backend
  uses, for tests. It is not Kubernetes.

Attributes are imported lazily, so pods importing ``hw.k8s.pod`` do not load the Kubernetes client.
"""

from __future__ import annotations

from typing import Any

__all__ = ["calibrate_k8s", "render", "run_k8s"]


def __getattr__(name: str) -> Any:
    if name in ("run_k8s", "calibrate_k8s"):
        from hw.k8s import backend

        return getattr(backend, name)
    if name == "render":
        from hw.k8s.render import render

        return render
    raise AttributeError(name)
