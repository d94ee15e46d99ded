"""Names, ports and labels of the twin's Kubernetes objects (shared by planning and rendering)."""

from __future__ import annotations

import re
from collections.abc import Iterable
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


# Kubernetes' own name rules (k8s.io/apimachinery validation; the image reference grammar of
# github.com/distribution/reference): what the API server or the kubelet refuses, refused here first
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # RFC 1123 label: namespaces
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # node names
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
MAX_IMAGE_NAME = 255  # characters of the repository name (the reference's name part)
MAX_LABEL = 63  # a label value's length: a node name is also its kubernetes.io/hostname label value


def namespace_problem(namespace: str) -> str | None:
    """The rule ``namespace`` breaks to be a Kubernetes namespace (an RFC 1123 label), or None."""
    if len(namespace) <= MAX_LABEL and DNS_LABEL.fullmatch(namespace):
        return None
    return (f"a Kubernetes namespace is 1 to {MAX_LABEL} lower-case letters, digits or '-', starting and ending with "
            "a letter or digit")  # fmt: skip


def node_problem(node: str) -> str | None:
    """The rule ``node`` breaks to name a node pods are pinned to (a DNS subdomain, and the value of the node's
    ``kubernetes.io/hostname`` label, which node affinity matches), or None."""
    if len(node) <= MAX_LABEL and DNS_SUBDOMAIN.fullmatch(node):
        return None
    return (f"pods are pinned to a node by its kubernetes.io/hostname label, 1 to {MAX_LABEL} lower-case letters, "
            "digits, '-' or '.', each part between dots starting and ending with a letter or digit")  # fmt: skip


def object_name_problem(name: str) -> str | None:
    """The rule ``name`` breaks to name an object such as a ServiceAccount (a DNS subdomain), or None."""
    if len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name):
        return None
    return ("a Kubernetes object name is 1 to 253 lower-case letters, digits, '-' or '.', each part between dots "
            "starting and ending with a letter or digit")  # fmt: skip


def image_problem(image: str) -> str | None:
    """The rule ``image`` breaks to be a container image reference (``[REGISTRY[:PORT]/]NAME[:TAG][@DIGEST]``), or
    None."""
    m = IMAGE_REFERENCE.fullmatch(image)
    if m is not None and len(m["name"]) <= MAX_IMAGE_NAME:
        return None
    return (
        f"a container image is [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], its name lower-case, e.g. {DEFAULT_IMAGE}"
    )


def refusal(option: str, problem: str, value: str) -> str:
    """The one line that refuses ``value`` of ``option``: ``OPTION: PROBLEM (got 'VALUE')``."""
    from sim.errors import shorten

    return f"{option}: {problem} (got {shorten(repr(value))})"


def check_image(image: str) -> str:
    """``image`` as given (a digest is used verbatim); UserError for what is no image reference ('' included: the
    kubelet fails every pod on it, after the run's objects were created) or a malformed digest reference."""
    from sim.errors import UserError

    if "@" in image and not DIGEST.search(image):
        raise UserError(f"--image: a digest reference is NAME@sha256: and 64 lower-case hex digits (got {image!r})")
    if (problem := image_problem(image)) is not None:
        raise UserError(refusal("--image", problem, image))
    return image


def check_namespace(namespace: str) -> str:
    """``namespace`` if it can be one (an RFC 1123 label); else UserError, before any object names it."""
    from sim.errors import UserError

    if (problem := namespace_problem(namespace)) is not None:
        raise UserError(refusal("--namespace", problem, namespace))
    return namespace


def check_nodes(nodes: Iterable[str], where: str = "--nodes") -> None:
    """UserError for a node name pods cannot be pinned to (``kubernetes.io/hostname`` is matched against it)."""
    from sim.errors import UserError

    for node in nodes:
        if (problem := node_problem(node)) is not None:
            raise UserError(refusal(where, problem, node))


def k8s_name(name: str) -> str:
    """A scenario name as a DNS-1035 label (Service and Pod names): lower case, letters, digits, '-'."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = "p-" + out
    return out[:63].rstrip("-")


def label_value(value: str) -> str:
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63].strip("-._")
    return out or "x"
