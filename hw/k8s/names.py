"""Names, ports and labels of the twin's Kubernetes objects (shared by planning and rendering)."""

from __future__ import annotations

import re
from importlib import metadata

try:
    VERSION = metadata.version("iomt-pq-twin")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    VERSION = "0.1.0"

IMAGE_NAME = "pq-iomt-twin"
DEFAULT_IMAGE = f"{IMAGE_NAME}:{VERSION}"
DEFAULT_NAMESPACE = "pqtwin"
RUN_DIR = "/var/lib/pqtwin"
FL_PORT, TELEMETRY_PORT, METRICS_PORT = 7000, 7100, 9464
RUNNER_SA = "pqtwin-runner"
OPERATOR = "pqtwin-operator"  # the Role (in the run's namespace) and its RoleBinding: what pqtwin may do there
NODE_READER = "pqtwin-node-reader"  # the optional ClusterRole: list nodes (the preflight of scenario hosts)
RUN_CONFIG = "pqtwin-run"
CONNECT_TIMEOUT_S = 600.0  # pods on different nodes may start minutes apart (image pulls on a Pi)
UID = 10001
MAX_OBJECT_BYTES = 1 << 20  # ConfigMap and Secret data limit
PART_OF = "pq-iomt-twin"
RUN_LABEL = "pqtwin.io/run"
POD_LABEL = "pqtwin.io/pod"
NODE_LABEL = "pqtwin.io/node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")  # an image pinned by content (`NAME@sha256:HEX`)


def k8s_name(name: str) -> str:
    """A scenario name as a DNS-1035 label (Service and Pod names): lower case, letters, digits, '-'."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = "p-" + out
    return out[:63].rstrip("-")


def label_value(value: str) -> str:
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63].strip("-._")
    return out or "x"
