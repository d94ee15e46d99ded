"""The pod network of `FakeApiServer` (tests/fakes/fake_api.py; a test double, not Kubernetes): runs a pod's
``python -m MODULE ARGS`` in this process after giving it what a pod's network namespace and cluster DNS would.

    python -m tests.fakes.fake_pod POD_IP API_URL NAMESPACE TOKEN -- -m MODULE ARG...

(with the repository root on PYTHONPATH, which the stand-in's kubelet sets for the pods it starts)

- Binding ``0.0.0.0`` (all addresses *of the pod*) binds the pod's own loopback address (127.x.y.z), so
  several pods can listen on the same port on one machine.
- Service names resolve as cluster DNS would (``svc``, ``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local``):
  the shim asks the fake API server for the Service's ``clusterIP`` (a loopback address where the stand-in's
  kube-proxy forwards to a ready endpoint).
"""

from __future__ import annotations

import json
import runpy
import socket
import sys
import urllib.request
from typing import Any

DNS_AGENT = "fake-pod-dns"  # how the stand-in's audit log tells these lookups from the backend's requests
_real_getaddrinfo = socket.getaddrinfo
_real_bind = socket.socket.bind


def install(pod_ip: str, api: str, namespace: str, token: str) -> None:
    cache: dict[str, str | None] = {}

    def service_ip(host: str) -> str | None:
        parts = host.rstrip(".").split(".")
        if parts[-2:] == ["cluster", "local"]:
            parts = parts[:-2]
        if parts[-1:] == ["svc"]:
            parts = parts[:-1]
        if not 1 <= len(parts) <= 2 or not all(parts):
            return None
        name, ns = parts[0], parts[1] if len(parts) == 2 else namespace
        key = f"{ns}/{name}"
        if key not in cache:
            headers = {"Authorization": f"Bearer {token}", "User-Agent": DNS_AGENT}
            req = urllib.request.Request(f"{api}/api/v1/namespaces/{ns}/services/{name}", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    cache[key] = json.loads(resp.read())["spec"].get("clusterIP")
            except OSError:
                return None  # NXDOMAIN (not cached: the Service may be created later)
        return cache[key]

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host not in ("localhost",) and not _is_ip(host):
            ip = service_ip(host)
            if ip is None:
                raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {host}")
            host = ip
        return _real_getaddrinfo(host, *args, **kwargs)

    def bind(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address and address[0] in ("0.0.0.0", ""):
            address = (pod_ip, *address[1:])
        _real_bind(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.bind = bind  # type: ignore[method-assign]


def _is_ip(host: str) -> bool:
    try:
        socket.inet_aton(host)
        return host.count(".") == 3
    except OSError:
        return ":" in host


def main(argv: list[str]) -> None:
    pod_ip, api, namespace, token, sep, *command = argv
    assert sep == "--" and command[:1] == ["-m"], "usage: fake_pod POD_IP API NAMESPACE TOKEN -- -m MODULE ARGS"
    install(pod_ip, api, namespace, token)
    module = command[1]
    sys.argv = [module, *command[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
