"""The Kubernetes backend (hw/k8s) against ``FakeApiServer`` (tests/fakes) -- a stand-in, not Kubernetes.

No API server can be installed here. The stand-in serves the API subset the backend uses over HTTP with the
real status codes and chunked ``?watch=true`` streams, schedules pods by node affinity and resources, and
*runs the pods' real programs*: each pod's ConfigMap and Secret are materialised to a temp dir and
``python -m hw.node ...`` starts as its own process with its own loopback address, so run.json from the
ConfigMap, provisioned keys, Service DNS names, log reports and the metrics/probe endpoint are exercised
end to end. It authorises every request against the operator's RBAC as an admin applies it
(k8s/rbac: a Role in the run's namespace, the optional node reader), and the namespace exists beforehand,
created as the admin would. What it does not do (NetworkPolicy enforcement, Pod Security admission, cgroup
limits, liveness probes, image content) is checked statically in tests/test_k8s_render.py, or needs the
``cluster`` test.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from hw.k8s import render
from hw.k8s.backend import calibrate_k8s, run_k8s
from sim import contract
from sim.errors import UserError
from sim.profile import Profile
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS
from .fakes.fake_api import FakeApiServer, FakeNode, rbac_allows
from .fakes.fake_pod import DNS_AGENT
from .test_cli import REQUIRED_KEYS

SMALL = ["workload.fl.model_parameters=50000", "workload.fl.samples_per_client=300"]
QUIET = ["workload.devices.ecg-a.count=0", "workload.devices.ecg-b.count=0"]


def scenario(*overrides: str):
    return load_scenario(SCENARIOS / "paper-3node.yaml", [*SMALL, *overrides])


def pis(**changes) -> list[FakeNode]:
    nodes = {n: FakeNode(n) for n in ("pi-1", "pi-2", "pi-3")}
    for name, node in changes.items():
        nodes[name.replace("_", "-")] = node
    return list(nodes.values())


def admin_rbac(namespaces=("pqtwin",), node_reader=True) -> list[dict]:
    """What k8s/rbac grants the operator, as an admin applies it per namespace: the Roles (and the reader)."""
    committed = [d for path in sorted((ROOT / "k8s/rbac").glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())]
    role = next(d for d in committed if d["kind"] == "Role")
    roles = [role | {"metadata": role["metadata"] | {"namespace": ns}} for ns in namespaces]
    return roles + ([next(d for d in committed if d["kind"] == "ClusterRole")] if node_reader else [])


@pytest.fixture
def fake(tmp_path):
    """``fake(nodes, namespaces=("pqtwin",), node_reader=True, **options)`` -> (server, kubeconfig path): the
    namespaces exist (created by "the admin") and the kubeconfig's user holds the operator Role in each;
    ``rbac=`` overrides what the user holds. Every server is stopped afterwards."""
    servers = []

    def start(nodes=None, namespaces=("pqtwin",), node_reader=True, **kw):
        kw.setdefault("rbac", admin_rbac(namespaces, node_reader))
        api = FakeApiServer(pis() if nodes is None else nodes, **kw).start()
        for ns in namespaces:
            api.create("namespaces", "", render.namespace_object(ns))
        servers.append(api)
        return api, api.kubeconfig(tmp_path / f"kubeconfig-{len(servers)}")

    yield start
    for api in servers:
        api.stop()


def _nothing_left(api: FakeApiServer, namespace: str) -> None:
    """The run's objects are gone (at once: cleanup waits for its pods) and the namespace stays."""
    ns = api.get("namespaces", "", namespace)
    assert ns is not None and ns["status"]["phase"] == "Active", "the admin's namespace must stay"
    left = [f"{pl}/{name}" for pl, ons, name in list(api.store) if ons == namespace]
    assert not left, f"left in namespace {namespace}: {left}"
    assert all(p.poll() is not None for p in api.procs.values()), "a pod's process outlived its pod"


def _backend_requests(api: FakeApiServer) -> set[tuple[str, str, str, str]]:
    return {(v, r, sub, ns) for v, r, sub, ns, agent in api.audit if agent != DNS_AGENT}


# --- the whole flow ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_run_end_to_end_against_the_stand_in(fake, tmp_path, mode):
    api, kubeconfig = fake()
    # fast frames on a fast access link and longer training, so telemetry flows while the rounds run
    s = scenario("workload.devices.ecg-a.frame_period_s=0.01", "workload.fl.local_epochs=150",
                 "workload.devices.ecg-a.access_link.preset=gigabit-ethernet")  # fmt: skip
    rounds: list[int] = []
    out = tmp_path / "run"
    summary = run_k8s(
        s, out, mode, 3, 5, kubeconfig=kubeconfig, progress=rounds.append, start_timeout_s=60
    ).model_dump()
    assert summary["state"] == "completed", summary["reason"]
    assert set(summary) >= REQUIRED_KEYS and summary["backend"] == "k8s" and summary["mode"] == mode
    assert summary["rounds_completed"] == 3 and summary["round_latency_s"]["mean"] > 0
    assert rounds and rounds[-1] == 3 and rounds == sorted(rounds)
    acc = summary["accuracy_per_round"]
    assert len(acc) == 3 and acc[-1] > summary["initial_accuracy"] + 0.15  # FL learned across pods
    df = contract.read_spans(out / "spans.parquet")
    assert contract.validate_spans(df) == []
    fl = df[df["round"] > 0]
    assert set(fl[fl.op == "fl.train"].pod) == {"client-1", "client-2"}
    assert set(df.host) >= {"pi-1", "pi-2", "pi-3"}
    assert {"distribute", "receive", "train", "upload", "verify", "aggregate", "distribution"} <= set(fl.phase)
    sizes = set(fl[(fl.op == "transfer") & (fl.phase == "upload")]["bytes"])
    assert len(sizes) == 1 and sizes.pop() > 50000 * 4
    assert (df.op == "frame").sum() > 0  # devices in their emulator pod reached client-1 through its Service
    status = json.loads((out / "status.json").read_text())
    codes = status["exit_codes"]
    assert set(codes) == {"aggregator", "client-1", "client-2", "devices-pi-2", "devices-pi-3"}
    logs = {p.stem for p in (out / "logs").glob("*.log")}
    # every pod that ran ended cleanly; a device emulator still starting when the rounds were over (a loaded
    # machine starts pods slowly, the devices are not needed by the rounds) is deleted before it reports: no
    # exit code, a log only if it printed before the deletion (CI, 2026-12-01: one had), and without one the
    # warning that it had not started; nothing else is missing
    unstarted = {pod for pod, code in codes.items() if code is None}
    assert status["state"] == "completed" and all(codes[pod] == 0 for pod in set(codes) - unstarted), status
    assert unstarted <= {"devices-pi-2", "devices-pi-3"}, status
    assert set(codes) - unstarted <= logs <= set(codes), (status, logs)
    silent = unstarted - logs
    assert all(any(w.startswith(f"{pod} had not started") for w in summary["warnings"]) for pod in silent)
    assert json.loads((out / "run.json").read_text())["clock"] == "wall"
    manifests = (out / "manifests.yaml").read_text()
    kept = [d for d in yaml.safe_load_all(manifests) if d and d["kind"] == "Secret"]  # no private keys kept
    assert len(kept) == 5 and all(v.startswith("<redacted: ") for d in kept for v in d["data"].values())
    assert summary["warnings"] == [f"image {render.DEFAULT_IMAGE} is a tag, not a digest: nodes that pulled it at "
                                   "different times may run different builds; pass --image NAME@sha256:DIGEST "
                                   "(k8s/README.md says how to get it)"]  # fmt: skip
    # every pod was Guaranteed QoS (the API server's classification of what the backend created)
    qos = {o["metadata"]["name"]: o["status"]["qosClass"] for _, pl, _, kind, o in api.events
           if pl == "pods" and kind == "ADDED"}  # fmt: skip
    assert set(qos) == set(status["exit_codes"]) and set(qos.values()) == {"Guaranteed"}
    # cleaned up object by object; the namespace is the admin's and stays
    _nothing_left(api, "pqtwin")
    made = _backend_requests(api)
    deleted = {r for v, r, _, _ in made if v == "delete"}
    assert deleted == {
        "pods",
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "networking.k8s.io/networkpolicies",
    }
    # all of it inside the run's namespace (RBAC enforced by the stand-in), but the optional read-only node list
    assert {(v, r, ns) for v, r, _, ns in made if ns != "pqtwin"} == {("list", "nodes", "")}
    assert not [m for m in made if m[1] == "namespaces"]  # never created, read or deleted a namespace


def test_runs_follow_each_other_in_one_namespace_and_keep_leaves_the_run(fake, tmp_path):
    digest = "pq-iomt-twin@sha256:" + "0123456789abcdef" * 4
    api, kubeconfig = fake(namespaces=("lab",), termination_delay_s=1.5)  # deleted pods linger, as on a cluster
    for i in range(2):  # cleanup waits until the pods are gone, so the next run can reuse their names at once
        summary = run_k8s(scenario(*QUIET), tmp_path / f"run{i}", "sequential", 1, 1, kubeconfig=kubeconfig,
                          namespace="lab", image=digest).model_dump()  # fmt: skip
        assert summary["state"] == "completed", summary["reason"]
        assert summary["warnings"] == []  # pinned by digest: no warning
        _nothing_left(api, "lab")
    summary = run_k8s(scenario(*QUIET), tmp_path / "kept", "sequential", 1, 1, kubeconfig=kubeconfig,
                      namespace="lab", keep=True).model_dump()  # fmt: skip
    assert summary["state"] == "completed", summary["reason"]
    assert {p["metadata"]["name"] for p in api.list("pods", "lab", {})} == {"aggregator", "client-1", "client-2"}
    # the next run into the same namespace is refused with what to do, before touching anything
    with pytest.raises(UserError, match=r"already exists \(left by an earlier run with --keep\?\).*`kubectl -n lab "
                                        r"delete pods,services,configmaps,secrets,.* -l app.kubernetes.io/managed-by="
                                        r"pqtwin`"):  # fmt: skip
        run_k8s(scenario(*QUIET), tmp_path / "run2", "sequential", 1, 1, kubeconfig=kubeconfig, namespace="lab")
    assert json.loads((tmp_path / "run2" / "status.json").read_text())["state"] == "failed"
    # and that command is allowed by the operator Role: it lists each kind by label, then deletes
    held = admin_rbac(("lab",), node_reader=False)
    kinds = [("", "pods"), ("", "services"), ("", "configmaps"), ("", "secrets"), ("", "serviceaccounts"),
             ("networking.k8s.io", "networkpolicies"), ("batch", "jobs")]  # fmt: skip
    for group, plural in kinds:
        for verb in ("list", "delete"):
            assert rbac_allows(held, verb, group, plural, "", "lab"), (verb, plural)


def test_the_namespace_is_an_admins_and_the_operator_is_confined_to_it(fake, tmp_path):
    # a namespace the operator holds no Role in (none yet, or another's): refused, saying who does what
    for existing in ((), ("lab",)):
        _, kubeconfig = fake(namespaces=("pqtwin", *existing), rbac=admin_rbac(("pqtwin",)))
        with pytest.raises(UserError) as exc:
            run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig, namespace="lab")
        line = exc.value.lines[0]
        assert line.startswith(
            "creating ServiceAccount pqtwin-runner in namespace lab: 403 Forbidden: serviceaccounts "
            'is forbidden: User "fake" cannot create resource "serviceaccounts" in API group "" in '
            'the namespace "lab"; check that your kubeconfig user has the pqtwin-operator Role in '
            "namespace lab -- an admin creates the namespace and binds the operator Role in it"
        )
        assert "kubectl apply -f k8s/rbac/pqtwin-operator.yaml" in line and "python -m hw.k8s rbac" in line
    # a user with wider rights (RBAC allows, the namespace is missing): pqtwin still does not create it
    _, kubeconfig = fake(namespaces=(), rbac=None)
    with pytest.raises(UserError, match="namespace lab does not exist, and pqtwin does not create namespaces: an "
                                        "admin creates the namespace"):  # fmt: skip
        run_k8s(scenario(*QUIET), tmp_path / "run2", "sequential", 1, 1, kubeconfig=kubeconfig, namespace="lab")
    # and the Role is no way to delete or create namespaces, nor to act cluster-wide
    held = admin_rbac(("pqtwin",))
    for verb, plural, ns in (("delete", "namespaces", "pqtwin"), ("delete", "namespaces", "kube-system"),
                             ("create", "namespaces", ""), ("create", "pods", "kube-system"),
                             ("create", "secrets", "default"), ("list", "pods", "")):  # fmt: skip
        assert not rbac_allows(held, verb, "", plural, "", ns), (verb, plural, ns)


def test_without_the_node_reader_the_host_check_is_skipped_with_a_warning(fake, tmp_path):
    api, kubeconfig = fake(node_reader=False)
    summary = run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig).model_dump()
    assert summary["state"] == "completed", summary["reason"]
    assert any("hosts were not checked" in w and "pqtwin-node-reader.yaml" in w for w in summary["warnings"])
    assert ("list", "nodes", "", "") in _backend_requests(api)  # it asked, was refused (403), went on
    _nothing_left(api, "pqtwin")
    # calibration cannot find the nodes by itself then: it says to name them
    with pytest.raises(UserError, match="--nodes: this user may not list the cluster's nodes, so name the nodes"):
        calibrate_k8s(tmp_path / "profiles", quick=True, kubeconfig=kubeconfig)


def test_calibration_jobs_write_one_profile_per_node(fake, tmp_path):
    api, kubeconfig = fake([FakeNode("pi-1"), FakeNode("pi-2"), FakeNode("pi-3", ready=False)])
    seen = []
    written = calibrate_k8s(tmp_path / "profiles", quick=True, algorithms=["ML-KEM-768"], kubeconfig=kubeconfig,
                            progress=lambda node, done, total: seen.append((node, done, total)))  # fmt: skip
    assert set(written) == {"pi-1", "pi-2"}  # every Ready node
    for node, path in written.items():
        data = yaml.safe_load(path.read_text())
        Profile.model_validate(data)
        assert data["profile"] == node and "ML-KEM-768.decaps" in data["ops"] and "fl.train" in data["ops"]
    assert sorted(n for n, _, _ in seen) == ["pi-1", "pi-2"] and seen[-1][1:] == (2, 2)
    jobs = [e for e in api.audit if e[1] == "batch/jobs"]
    assert [e[0] for e in jobs].count("create") == 2 and [e[0] for e in jobs].count("delete") == 2
    qos = {o["status"]["qosClass"] for _, pl, _, kind, o in api.events if pl == "pods" and kind == "ADDED"}
    assert qos == {"Guaranteed"}
    _nothing_left(api, "pqtwin")


@pytest.mark.parametrize("node_reader", [True, False])
def test_a_k8s_calibration_the_cluster_cannot_serve_keeps_the_earlier_profiles(fake, tmp_path, capsys, node_reader):
    """No Ready node (or no right to list nodes, without --nodes): refused in one line before --force cleared the
    earlier calibration's logs (the backend found it only after --out was claimed)."""
    from pqtwin import cli

    _, kubeconfig = fake([FakeNode("pi-1", ready=False)], node_reader=node_reader)
    out = tmp_path / "profiles"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "calibrate-pi-1.log").write_text("the earlier calibration's log\n")
    (out / "pi-1.yaml").write_text("profile: pi-1\nops: {}\n")
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    capsys.readouterr()
    code = cli.run(["calibrate", "--backend", "k8s", "--out", str(out), "--force", "--kubeconfig", str(kubeconfig)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert ("no Ready node in the cluster" if node_reader else "may not list the cluster's nodes") in lines[0], lines
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


# --- the stand-in speaks the API faithfully enough for the official client -------------------------------


def test_stand_in_status_codes_and_watch_events(fake):
    api, kubeconfig = fake(rbac=None)  # an admin: creates namespaces
    cfg = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=cfg)
    core = client.CoreV1Api(client.ApiClient(cfg))
    core.create_namespace({"metadata": {"name": "t"}})
    with pytest.raises(ApiException) as exc:
        core.create_namespace({"metadata": {"name": "t"}})
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("nope", "t")
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("missing", {"metadata": {"name": "x"}})
    assert exc.value.status == 404 and 'namespaces "missing" not found' in json.loads(exc.value.body)["message"]
    container = {"name": "c", "image": "i", "command": ["python", "-m", "hw.k8s.pod"]}  # exits 2: no subcommand
    pod = {"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": [container]}}
    created = core.create_namespaced_pod("t", pod)
    assert created.metadata.uid and created.status.phase == "Pending"
    events = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_pod, "t", label_selector="a=b", timeout_seconds=10):
        events.append((ev["type"], ev["object"].status.phase))
        if ev["object"].status.phase in ("Succeeded", "Failed") and not ev["object"].metadata.deletion_timestamp:
            core.delete_namespaced_pod("p", "t")
        if ev["type"] == "DELETED":
            w.stop()
    assert events[0][0] == "ADDED" and ("MODIFIED", "Failed") in events and events[-1][0] == "DELETED"
    log = core.read_namespaced_pod_log  # the pod ran (and failed: no subcommand); its log was served
    with pytest.raises(ApiException) as exc:
        log("p", "t")
    assert exc.value.status == 404  # deleted
    assert [n.metadata.name for n in core.list_node().items] == ["pi-1", "pi-2", "pi-3"]  # typed models load
    kubeconfig.write_text(kubeconfig.read_text().replace(api.token, "wrong"))
    bad = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=bad)
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(client.ApiClient(bad)).list_node()
    assert exc.value.status == 401


# --- what users meet: one clear line each -------------------------------------------------------------


def test_no_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError) as exc:
        run_k8s(scenario(), tmp_path / "run", "sequential", 1, 1)
    assert len(exc.value.lines) == 1 and exc.value.lines[0].startswith("kubeconfig: cannot load")
    assert "KUBECONFIG" in exc.value.lines[0] and "k3s.yaml" in exc.value.lines[0]
    with pytest.raises(UserError, match="kubeconfig: cannot load context 'lab'"):
        run_k8s(scenario(), tmp_path / "run", "sequential", 1, 1, kubeconfig=_dead_kubeconfig(tmp_path), context="lab")


def _dead_kubeconfig(tmp_path: Path) -> Path:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    api = FakeApiServer.__new__(FakeApiServer)
    api.url, api.token = f"http://127.0.0.1:{port}", "t"
    return FakeApiServer.kubeconfig(api, tmp_path / "dead-kubeconfig")


def test_unreachable_api_server(tmp_path):
    with pytest.raises(UserError) as exc:
        run_k8s(scenario(), tmp_path / "run", "sequential", 1, 1, kubeconfig=_dead_kubeconfig(tmp_path))
    line = exc.value.lines[0]
    assert len(exc.value.lines) == 1 and line.startswith("cannot reach the Kubernetes API server at http://127.0.0.1:")
    assert "systemctl status k3s" in line and not (tmp_path / "run").exists()


def test_credentials_refused(fake, tmp_path):
    api, kubeconfig = fake()
    kubeconfig.write_text(kubeconfig.read_text().replace(api.token, "stale"))
    with pytest.raises(UserError, match="refused the kubeconfig's credentials \\(401 Unauthorized\\)"):
        run_k8s(scenario(), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig)


def test_scenario_host_missing_from_the_cluster(fake, tmp_path):
    _, kubeconfig = fake([FakeNode("pi-1"), FakeNode("pi-2"), FakeNode("raspberrypi")])
    with pytest.raises(UserError) as exc:
        run_k8s(scenario(), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig)
    assert exc.value.lines == [
        f"{SCENARIOS / 'paper-3node.yaml'}: deployment.hosts: no cluster node named pi-3 (nodes: pi-1, pi-2, "
        "raspberrypi); scenario host names must match `kubectl get nodes` -- rename the hosts in the scenario, "
        "or the nodes"
    ]
    _, kubeconfig = fake(pis(pi_3=FakeNode("pi-3", ready=False)))
    with pytest.raises(UserError, match=r"node pi-3 is not Ready; check `kubectl describe node pi-3`"):
        run_k8s(scenario(), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig)


def test_image_pull_failure(fake, tmp_path):
    api, kubeconfig = fake(images={"some-other-image:1"})
    with pytest.raises(UserError) as exc:
        run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig,
                image="registry.lab:5000/pq-iomt-twin:typo")  # fmt: skip
    line = exc.value.lines[0]
    assert len(exc.value.lines) == 1 and "cannot pull image registry.lab:5000/pq-iomt-twin:typo" in line
    assert ("ErrImagePull" in line or "ImagePullBackOff" in line) and "linux/arm64" in line
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and status["reason"] == line
    _nothing_left(api, "pqtwin")


def test_pod_that_cannot_be_scheduled(fake, tmp_path):
    _, kubeconfig = fake(pis(pi_2=FakeNode("pi-2", cpu="500m")))  # a client needs a whole core
    with pytest.raises(UserError) as exc:
        run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig)
    line = exc.value.lines[0]
    assert line.startswith("pod client-1 cannot be scheduled on node pi-2: 0/3 nodes are available:")
    assert "Insufficient cpu" in line and "kubectl describe node pi-2" in line
    # a node whose hostname label differs from its name: the affinity cannot match
    _, kubeconfig = fake(pis(pi_3=FakeNode("pi-3", labels={"kubernetes.io/hostname": "pi-3.lan"})))
    with pytest.raises(UserError, match=r"pod client-2 cannot be scheduled on node pi-3: .*node affinity/selector"):
        run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig)


def test_pods_not_starting_in_time(fake, tmp_path):
    api, kubeconfig = fake(pull_delay_s=60)
    t0 = time.monotonic()
    with pytest.raises(UserError) as exc:
        run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 1, 1, kubeconfig=kubeconfig, start_timeout_s=1.5)
    line = exc.value.lines[0]
    assert line.startswith("timed out after 2 s waiting for pods to start (aggregator: Pending (ContainerCreating);")
    assert "kubectl -n pqtwin describe pod aggregator" in line and time.monotonic() - t0 < 15
    _nothing_left(api, "pqtwin")


def test_run_not_finishing_in_time(fake, tmp_path):
    api, kubeconfig = fake()
    with pytest.raises(UserError) as exc:
        run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 5000, 1, kubeconfig=kubeconfig, finish_timeout_s=1)
    line = exc.value.lines[0]
    assert line.startswith("timed out after 1 s waiting for the aggregator to finish round ") and "of 5000" in line
    assert "kubectl -n pqtwin logs aggregator" in line
    assert (tmp_path / "run" / "logs" / "aggregator.log").exists()  # what it printed is kept
    _nothing_left(api, "pqtwin")


def test_api_server_lost_during_the_run(fake, tmp_path, monkeypatch):
    from hw.k8s import watch as k8s_watch

    monkeypatch.setattr(k8s_watch, "LOST_S", 1.0)
    api, kubeconfig = fake()

    def lose_it(r: int) -> None:
        if r >= 1 and not api.stopping.is_set():
            api.stop()  # the server goes away (and, here, its pods with it)

    with pytest.raises(UserError) as exc:
        run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 500, 1, kubeconfig=kubeconfig, progress=lose_it)
    assert exc.value.lines[0].startswith("lost the Kubernetes API server at http://127.0.0.1:")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert status["state"] == "failed"
    assert any("cleanup of namespace pqtwin incomplete" in w for w in summary["warnings"])  # and how to finish it


def test_a_client_failing_before_the_first_round_ends_the_run_at_once(fake, tmp_path, monkeypatch):
    from hw.k8s import render

    real = render.make_keys

    def broken(plan):  # client-1's Secret holds no key for it
        keys = real(plan)
        keys.identity["client-1"] = "{}"
        return keys

    monkeypatch.setattr(render, "make_keys", broken)
    api, kubeconfig = fake()
    t0 = time.monotonic()
    summary = run_k8s(scenario(*QUIET), tmp_path / "run", "sequential", 2, 1, kubeconfig=kubeconfig).model_dump()
    assert summary["state"] == "failed" and time.monotonic() - t0 < 30  # not the aggregator's 600 s wait
    assert summary["reason"].startswith(
        "client-1 exited with code 3 before the first round: client-1: provisioned keys: no provisioned private "
        "keys for client-1 in "
    )
    assert summary["reason"].endswith("/identity/identity.json")
    _nothing_left(api, "pqtwin")


def test_a_device_emulator_that_never_started_is_named_in_the_warnings():
    """The rounds do not wait for device emulators: one still pending when they end sent nothing, and the
    summary says so rather than leaving telemetry figures silently short."""
    from hw.k8s.backend import _never_started, render_run

    plan = render_run(scenario(), "sequential", 2, 1).plan
    emulators = [p for p in plan.pods if p.role == "devices"]
    running = {"status": {"containerStatuses": [{"state": {"running": {"startedAt": "now"}}}]}}
    pending = {"status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "x"}}}]}}
    pods = {p.k8s: running for p in plan.pods} | {emulators[-1].k8s: pending}
    warnings = _never_started(plan, pods)
    assert len(warnings) == 1 and warnings[0].startswith(f"{emulators[-1].name} had not started"), warnings
    assert _never_started(plan, {p.k8s: running for p in plan.pods}) == []
    assert len(_never_started(plan, {})) == len(emulators)  # never seen at all: not started either
