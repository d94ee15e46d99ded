"""The Kubernetes backend on a real cluster (marker ``cluster``): runs when KUBECONFIG is set, skipped otherwise.

    KUBECONFIG=~/pi-cluster.yaml PQTWIN_K8S_IMAGE=registry.lab:5000/pq-iomt-twin:0.1.0 \\
        .venv/bin/python -m pytest -m cluster tests/test_k8s_cluster.py

- ``PQTWIN_K8S_IMAGE``: the image built from k8s/Dockerfile and pushed where the nodes can pull it
  (default ``pq-iomt-twin:<version>``, e.g. imported with ``k3s ctr images import``).
- ``PQTWIN_K8S_SCENARIO``: default scenarios/paper-3node.yaml, whose hosts pi-1..pi-3 must be node names.
- ``PQTWIN_K8S_NAMESPACE``: default ``pqtwin-test``. It must exist with the operator Role bound to the
  kubeconfig's user (pqtwin creates no namespace): an admin runs
  ``python -m hw.k8s rbac /tmp/rbac --namespace pqtwin-test --user NAME && kubectl apply -f /tmp/rbac``.
  The tests check that every run leaves the namespace as it found it: empty of pqtwin objects. Calibration of
  every node needs the optional node reader too (k8s/rbac/pqtwin-node-reader.yaml, bound to the same user).
"""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from hw.k8s import render
from hw.k8s.backend import calibrate_k8s, run_k8s
from hw.k8s.client import Cluster
from sim import contract
from sim.profile import Profile
from sim.scenario import load_scenario

from .conftest import ROOT
from .test_cli import REQUIRED_KEYS

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster_env():
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("no KUBECONFIG: point it at a cluster (and set PQTWIN_K8S_IMAGE) to run the cluster tests")
    return {
        "image": os.environ.get("PQTWIN_K8S_IMAGE", render.DEFAULT_IMAGE),
        "namespace": os.environ.get("PQTWIN_K8S_NAMESPACE", "pqtwin-test"),
        "scenario": os.environ.get("PQTWIN_K8S_SCENARIO", str(ROOT / "scenarios" / "paper-3node.yaml")),
    }


def _nothing_left(namespace: str, timeout_s: float = 60.0) -> bool:
    """No pqtwin object is left in the namespace (the Role may list each kind there)."""
    c = Cluster()
    label = "app.kubernetes.io/managed-by=pqtwin"
    lists = (c.core.list_namespaced_pod, c.core.list_namespaced_config_map, c.core.list_namespaced_secret,
             c.core.list_namespaced_service, c.core.list_namespaced_service_account,
             c.net.list_namespaced_network_policy, c.batch.list_namespaced_job)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(call(namespace, label_selector=label).items for call in lists):
            return True
        time.sleep(2)
    return False


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_scenario_runs_on_the_cluster(cluster_env, tmp_path, mode):
    s = load_scenario(cluster_env["scenario"], ["workload.fl.model_parameters=50000"])
    summary = run_k8s(s, tmp_path, mode, 2, 1, namespace=cluster_env["namespace"], image=cluster_env["image"],
                      start_timeout_s=900).model_dump()  # fmt: skip
    assert summary["state"] == "completed", summary["reason"]
    assert set(summary) >= REQUIRED_KEYS and summary["backend"] == "k8s" and summary["rounds_completed"] == 2
    df = contract.read_spans(tmp_path / "spans.parquet")
    assert contract.validate_spans(df) == [] and set(df.host) >= {h.name for h in s.deployment.hosts}
    status = json.loads((tmp_path / "status.json").read_text())
    assert set(status["exit_codes"].values()) == {0}
    assert _nothing_left(cluster_env["namespace"])


def test_calibration_on_every_node(cluster_env, tmp_path):
    written = calibrate_k8s(tmp_path, quick=True, namespace=cluster_env["namespace"], image=cluster_env["image"])
    assert written
    for node, path in written.items():
        data = yaml.safe_load(path.read_text())
        Profile.model_validate(data)
        assert data["profile"] == node
    assert _nothing_left(cluster_env["namespace"])
