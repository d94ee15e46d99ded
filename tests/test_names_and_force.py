"""Names that collide, refusals that came too late, and logs opened through planted links.

- A pod whose Kubernetes name is one of the files a kustomize base generates (``run-config``,
  ``network-policies``, ``kustomization``) overwrote that file in ``python -m hw.k8s base`` (or was overwritten by
  it): refused in one line naming the pod's field, on every path that plans a cluster run. A pod whose Kubernetes
  name is a device emulator's (``Devices_Pi_2`` -> ``devices-pi-2``) was said to "differ only in case or
  punctuation" from another pod; the line now says what it collided with.
- ``pqtwin hw run BAD --out DIR --force`` (local, netns) removed DIR's earlier run before the scenario was refused;
  so did a k8s run or calibration whose kubeconfig could not be loaded. Refused before --out is claimed now: the
  earlier run's files survive, and the error is one line (exit 2).
- A node's ``logs/<name>.log`` was opened with a plain ``open(path, "w")``: a link planted there had its target
  truncated and overwritten with the node's output. Opened without following links now (the file and its logs
  directory); a link, a FIFO or a hard link there is one line naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hw.k8s import render
from hw.k8s.planning import BASE_FILES
from hw.local import Children, check_runnable, open_log, writable
from pqtwin import cli
from sim.errors import UserError
from sim.scenario import load_scenario

from .conftest import SCENARIOS

PAPER = SCENARIOS / "paper-3node.yaml"  # pods: aggregator, client-1, client-2 (ecg-b reports to it, on pi-3)
LOCALHOST = SCENARIOS / "localhost.yaml"


def _renamed(name: str) -> list[str]:
    """Overrides renaming paper-3node's client-2 (and the population reporting to it)."""
    return ["deployment.pods.client-2.name=" + name, "workload.devices.ecg-b.report_to=" + name]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.run(list(args))
    stdout, err = capsys.readouterr()
    assert "Traceback" not in stdout + err and "internal error" not in err, (stdout, err)
    return code, err.strip().splitlines()


# --- A: pod names against the kustomize base's own files ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "k8s"),
    [("run-config", "run-config"), ("Network_Policies", "network-policies"), ("kustomization", "kustomization")],
)
def test_a_pod_named_as_a_generated_base_file_is_refused_in_one_line(capsys, tmp_path, name, k8s):
    """Before, base_files() wrote the pod's Service and Pod over run-config.yaml / network-policies.yaml, or
    kustomization.yaml over the pod: a base that applied without its config, policies or pod."""
    s = load_scenario(PAPER, _renamed(name), priced=False)
    with pytest.raises(UserError) as info:
        render.base_files(s)
    (line,) = info.value.lines
    assert line.startswith(f"{PAPER}: deployment.pods[2].name: {name!r} has the Kubernetes name {k8s!r}"), line
    assert f"{k8s}.yaml" in line and "rename the pod" in line, line
    sets = [a for o in _renamed(name) for a in ("--set", o)]
    code, lines = _cli(capsys, "hw", "run", str(PAPER), "--backend", "k8s", "--dry-run", *sets)
    assert code == 2 and len(lines) == 1 and lines[0] == f"error: {line}", lines
    # the class: BASE_FILES is what base_files() writes beside the pods' files (a generated file added without
    # it fails here), and a name near one of them still renders
    s = load_scenario(PAPER, priced=False)
    files = render.base_files(s)
    pods = {f"{p.k8s}.yaml" for p in render.plan(s, "sequential", 1, 1).pods}
    assert pods <= set(files)
    assert {rel.split("/")[0] for rel in files} - pods == BASE_FILES
    near = load_scenario(PAPER, _renamed("run-config-2"), priced=False)  # a name near one still renders
    assert "run-config-2.yaml" in render.base_files(near)


def test_a_pod_that_maps_to_a_device_emulators_name_says_so(capsys):
    """The line said "pod names that differ only in case or punctuation" when the other name was no pod."""
    sets = [a for o in _renamed("Devices_Pi_3") for a in ("--set", o)]
    code, lines = _cli(capsys, "hw", "run", str(PAPER), "--backend", "k8s", "--dry-run", *sets)
    assert code == 2 and lines == [
        f"error: {PAPER}: deployment.pods[2].name: 'Devices_Pi_3' and the device emulator devices-pi-3 (of host "
        "pi-3) map to the same Kubernetes name 'devices-pi-3' (Kubernetes names are lower case, punctuation "
        "becomes '-'); rename the pod"
    ], lines
    clash = load_scenario(PAPER, _renamed("Client_1"), priced=False)
    with pytest.raises(UserError) as info:
        render.plan(clash, "sequential", 1, 1)
    assert info.value.lines == [
        f"{PAPER}: deployment.pods[2].name: 'Client_1' and deployment.pods[1].name 'client-1' map to the same "
        "Kubernetes name 'client-1' (Kubernetes names are lower case, punctuation becomes '-'); rename the pod"
    ]


# --- B: what is refused is refused before --out is claimed ----------------------------------------------------


def _earlier_run(capsys: pytest.CaptureFixture[str], out: Path) -> dict[str, bytes]:
    code, lines = _cli(capsys, "sim", str(LOCALHOST), "--out", str(out), "--replications", "1", "--workers", "1",
                       "--set", "workload.fl.rounds=1")  # fmt: skip
    assert code == 0, lines
    return _files(out)


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("options", "expected"),
    [(["--set", "workload.fl.bytes_per_parameter=2"], "workload.fl.bytes_per_parameter: the twin trains float32"),
     (["--set", "workload.telemetry_receiver=one-thread"], "workload.telemetry_receiver: the twin serves each device"),
     (["--backend", "k8s", "--kubeconfig", "{missing}"], "kubeconfig: cannot load from {missing}")],
)  # fmt: skip
def test_a_refused_forced_run_keeps_the_earlier_run(capsys, tmp_path, options, expected):
    """`hw run BAD --out DIR --force`: the local backend checked the scenario only inside run_local, after the CLI
    had claimed DIR and removed its earlier run; a k8s run loaded the kubeconfig only then."""
    out = tmp_path / "run"
    before = _earlier_run(capsys, out)
    missing = str(tmp_path / "no-kubeconfig")
    options = [o.replace("{missing}", missing) for o in options]
    code, lines = _cli(capsys, "hw", "run", str(LOCALHOST), "--rounds", "1", "--out", str(out), "--force", *options)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected.replace("{missing}", missing) in lines[0], lines
    assert _files(out) == before  # nothing removed, nothing written


@pytest.mark.parametrize(
    ("sets", "expected"),
    [(["run.engine=vectorized"], "run.engine: vectorized: host local: cpu_sharing: linux is computed by the event"),
     (["run.engine=vectorized", "deployment.hosts.*.cpu_sharing=processor-sharing",
       "workload.devices.*.access_link={bandwidth_bps: 1.0, latency_s: 0}"],
      "run.engine: vectorized: a frame of ecg-a takes longer on its access link than its period")],
    ids=["linux-cores", "slow-access-link"],
)  # fmt: skip
def test_a_scenario_the_kernels_refuse_is_refused_by_check_and_before_a_forced_sim_clears_out(capsys, tmp_path, sets,
                                                                                             expected):  # fmt: skip
    """``run.engine: vectorized`` on a scenario the kernels cannot compute: `scenario check` said ok, and `sim
    --force` refused it only once the run started, after the earlier run in --out had been removed."""
    out = tmp_path / "run"
    before = _earlier_run(capsys, out)
    given = [a for kv in sets for a in ("--set", kv)]
    code, lines = _cli(capsys, "scenario", "check", str(LOCALHOST), *given)
    assert code == 2 and len(lines) == 1 and expected in lines[0], lines
    code, lines = _cli(capsys, "sim", str(LOCALHOST), "--out", str(out), "--force", "--workers", "1", *given)
    assert code == 2 and len(lines) == 1 and expected in lines[0], lines
    assert _files(out) == before


def test_a_refused_forced_k8s_calibration_keeps_the_earlier_logs(capsys, tmp_path):
    out = tmp_path / "profiles"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "calibrate-pi-1.log").write_text("the earlier calibration's log\n")
    (out / "pi-1.yaml").write_text("profile: pi-1\nops: {}\n")
    before = _files(out)
    missing = str(tmp_path / "no-kubeconfig")
    code, lines = _cli(capsys, "calibrate", "--backend", "k8s", "--out", str(out), "--force", "--kubeconfig", missing)
    assert code == 2 and len(lines) == 1 and f"kubeconfig: cannot load from {missing}" in lines[0], lines
    assert _files(out) == before


def test_netns_pods_named_as_its_device_emulators_are_refused_before_the_run():
    """On netns a population's devices run in ``devices-<runner host>``; `build` found a pod of that name only once
    the run had started (its namespaces built, --out cleared)."""
    s = load_scenario(LOCALHOST, ["deployment.pods.2.name=devices-local", "workload.devices.1.report_to=devices-local"],
                      priced=False)  # fmt: skip
    check_runnable(s, "local")  # the local backend's emulator is "devices"
    with pytest.raises(UserError) as info:
        check_runnable(s, "netns")
    assert info.value.lines == [f"{LOCALHOST}: deployment.pods[2].name: 'devices-local' is the name of one of the "
                                "run's device emulators; rename the pod"]  # fmt: skip


# --- C: a node's log is never written through a planted link -----------------------------------------------


def _refused_log(run_dir: Path) -> str:
    children = Children(run_dir)
    try:
        with pytest.raises(UserError) as info:
            children.start("client-1", "client")
    finally:
        children.stop()
    assert not children.procs  # nothing started
    (line,) = info.value.lines
    return line


def test_a_link_planted_as_a_nodes_log_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("the user's file\n")
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "logs" / "client-1.log").symlink_to(target)
    line = _refused_log(run_dir)
    assert line.startswith(f"{run_dir / 'logs' / 'client-1.log'} is a symbolic link, not a log of this run"), line
    assert target.read_text() == "the user's file\n"


def test_a_planted_logs_directory_link_a_hard_link_and_a_fifo_are_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "logs").symlink_to(elsewhere, target_is_directory=True)
    assert _refused_log(run_dir).startswith(f"{run_dir / 'logs'} is a symbolic link, not this run's logs directory")
    assert not list(elsewhere.iterdir())
    (run_dir / "logs").unlink()
    (run_dir / "logs").mkdir()
    kept = tmp_path / "kept.txt"
    kept.write_text("another name's contents\n")
    os.link(kept, run_dir / "logs" / "client-1.log")
    assert "is a file with other names (a hard link)" in _refused_log(run_dir)
    assert kept.read_text() == "another name's contents\n"
    (run_dir / "logs" / "client-1.log").unlink()
    os.mkfifo(run_dir / "logs" / "client-1.log")
    assert "is not a regular file" in _refused_log(run_dir)  # and did not hang


def test_a_log_is_created_or_emptied_and_written(tmp_path):
    path = tmp_path / "logs" / "n.log"
    for _ in range(2):  # created, then an earlier one emptied
        fd = open_log(path)
        os.write(fd, b"line\n")
        os.close(fd)
        assert path.read_bytes() == b"line\n"


def test_files_kept_at_a_runs_end_are_not_written_through_links(tmp_path):
    """The scheduler trace and the speed samples (written by name, with a fixed .tmp beside one) are left out when
    a link or anything else occupies their names."""
    target = tmp_path / "precious.txt"
    target.write_text("x")
    assert writable(tmp_path / "speed_probe.csv") == tmp_path / "speed_probe.csv"  # missing: fine
    (tmp_path / "speed_probe.csv").write_text("earlier")
    assert writable(tmp_path / "speed_probe.csv") == tmp_path / "speed_probe.csv"  # a regular file: replaced
    (tmp_path / "speed_probe.csv").unlink()
    (tmp_path / "speed_probe.csv").symlink_to(target)
    assert writable(tmp_path / "speed_probe.csv") is None
    (tmp_path / "trace.gz.tmp").symlink_to(target)
    assert writable(tmp_path / "trace.gz") is None


def test_a_simulation_does_not_replace_a_twin_run(capsys, tmp_path):
    """`sim --out DIR --force` over `hw run`'s DIR removed the twin's measurements (its nodes' spans, logs, keys,
    speed probe) and wrote a simulation there: a twin run cannot be computed again, a simulation can."""
    out = tmp_path / "measured"
    code, lines = _cli(capsys, "hw", "run", str(LOCALHOST), "--rounds", "1", "--out", str(out),
                       "--set", "workload.fl.model_parameters=12500")  # fmt: skip
    assert code == 0, lines
    before = _files(out)
    assert "status.json" in before and any(name.startswith("nodes/") for name in before)
    code, lines = _cli(capsys, "sim", str(LOCALHOST), "--out", str(out), "--force", "--workers", "1",
                       "--replications", "1", "--set", "workload.fl.rounds=1")  # fmt: skip
    assert code == 2 and len(lines) == 1 and "holds a hardware twin run" in lines[0], lines
    assert _files(out) == before
    code, lines = _cli(capsys, "hw", "run", str(LOCALHOST), "--rounds", "1", "--out", str(out), "--force",
                       "--set", "workload.fl.model_parameters=12500")  # fmt: skip
    assert code == 0, lines  # a new twin run replaces it, as before


@pytest.mark.parametrize("how", ["steep-points", "lognormal-on-slow-cores"])
def test_costs_too_large_to_compute_are_one_line_and_keep_the_earlier_run(capsys, tmp_path, how):
    """A profile the schema takes whose costs overflow (a line of points 1e306 s a parameter steep; every lognormal at
    its largest on cores 1e-300 as fast): `sim` exited 0 with numpy's warnings on stderr and a summary.json holding
    null where report and compare want a number, and --force had already replaced the earlier run with it."""
    profile = yaml.safe_load((LOCALHOST.parent / "profiles" / "ci-x86.yaml").read_text())
    profile["profile"] = "too-large"
    sets = ["--set", "workload.fl.rounds=2", "--set", f"deployment.hosts.0.profile={tmp_path / 'p.yaml'}"]
    if how == "steep-points":
        profile["ops"]["fl.fedavg"]["points"] = [[0, 1.0e-9], [1.0e-300, 1.0e6]]
    else:
        for op in profile["ops"].values():
            if op["kind"] == "per_call":
                op["distribution"] = {"kind": "lognormal", "mu": 13.8, "sigma": 5}
        sets += ["--set", "deployment.hosts.0.cpu_speed=1e-300"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    out = tmp_path / "run"
    before = _earlier_run(capsys, out)
    capsys.readouterr()
    code = cli.run(["sim", str(LOCALHOST), "--out", str(out), "--force", "--workers", "1", "--replications", "1",
                    *sets])  # fmt: skip
    stdout, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "too large to compute" in lines[0], err
    assert "RuntimeWarning" not in err and "Traceback" not in stdout + err
    assert _files(out) == before
