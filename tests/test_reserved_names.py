"""Pod names the twin uses for processes of its own: ``devices`` (the device emulator, and its devices' key in every
trust table), ``<worker pod>.<k>`` (a concurrent run's crypto processes), a backend's device emulators
(``devices-<host>`` on Kubernetes). A pod so named is refused before anything starts, in one line naming the pod's
field and value: before, a client ``devices`` ended in "internal error: KeyError: 'aggregator'" (provisioning), a
client ``worker-1.1`` in "internal error: AssertionError" or, sharing one process's config, keys, logs and spans
with worker-1's first crypto process, in "quorum lost" (an attack hunt found each). The simulator gives these
names no meaning and accepts them."""

from __future__ import annotations

import pytest

from hw.k8s.planning import ClusterAddressing
from hw.local import LocalAddressing
from hw.runconfig import RunConfig, build
from pqtwin import cli
from sim.errors import UserError
from sim.runner import simulate
from sim.scenario import load_scenario

from .conftest import SCENARIOS

LOCALHOST = SCENARIOS / "localhost.yaml"  # pods: aggregator, client-1, client-2 (ecg-b reports to it), worker-1
AS_DEVICES = ["deployment.pods.2.name=devices", "workload.devices.1.report_to=devices"]
AS_WORKER = ["deployment.pods.2.name=worker-1.1", "workload.devices.1.report_to=worker-1.1"]
RESERVED = "'devices' is reserved by the twin for its device emulator"
FIRST = "'worker-1.1' is the name of worker-1's 1st crypto process"


def _local(overrides: list[str], mode: str) -> RunConfig:
    """The run configuration as ``pqtwin hw run`` builds it (hw/local.py: separate crypto processes)."""
    s = load_scenario(LOCALHOST, overrides, priced=False)
    where = LocalAddressing(s, 1)
    try:
        return build(s, mode, 1, 1, where, separate_workers=True, epoch=0.0)
    finally:
        where.stop()


def _refused(overrides: list[str], mode: str) -> str:
    with pytest.raises(UserError) as exc:
        _local(overrides, mode)
    assert len(exc.value.lines) == 1, exc.value.lines
    return exc.value.lines[0]


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [(AS_DEVICES, f"deployment.pods[2].name: {RESERVED}"),
     (AS_WORKER, f"deployment.pods[2].name: {FIRST}"),
     (["deployment.pods.0.name=devices"], f"deployment.pods[0].name: {RESERVED}"),
     (["deployment.pods.1.name=worker-1.1", "workload.devices.0.report_to=worker-1.1", "workload.devices.1.count=0"],
      f"deployment.pods[1].name: {FIRST}"),
     # a second worker pod named as the first one's 2nd process (4 processes: worker-1.1, w.1, worker-1.2, w.2)
     (["deployment.pods.-={name: worker-1.2, role: worker, host: local}", "workload.processing.workers=4"],
      "deployment.pods[4].name: 'worker-1.2' is the name of worker-1's 2nd crypto process")],
)  # fmt: skip
def test_a_pod_named_as_a_process_of_the_twin_is_one_line_naming_it(overrides, mode, expected):
    line = _refused(overrides, mode)
    assert line.startswith(f"{LOCALHOST}: {expected}"), line


def test_the_simulator_accepts_those_names():
    for overrides in (AS_DEVICES, AS_WORKER):
        s = load_scenario(LOCALHOST, [*overrides, "workload.fl.rounds=1"])
        assert simulate(s, "concurrent", 1, 1).summary.rounds_completed == 1


def test_names_near_the_reserved_ones_still_run():
    near = ["deployment.pods.2.name=devices-2", "workload.devices.1.report_to=devices-2",
            "deployment.pods.1.name=worker-1.x", "workload.devices.0.report_to=worker-1.x"]  # fmt: skip
    cfg = _local(near, "concurrent")
    assert {"devices-2", "worker-1.x", "worker-1.1"} <= set(cfg.pods)
    assert cfg.pods["worker-1.x"].role == "client" and cfg.pods["worker-1.1"].role == "worker"


def test_a_pod_named_as_a_kubernetes_device_emulator_is_refused():
    """On Kubernetes the devices of each host run in an emulator ``devices-<host>``."""
    s = load_scenario(LOCALHOST, ["deployment.pods.2.name=devices-local", "workload.devices.1.report_to=devices-local"],
                      priced=False)  # fmt: skip
    with pytest.raises(UserError) as exc:
        build(s, "sequential", 1, 1, ClusterAddressing(s, 1), epoch=0.0)
    assert exc.value.lines == [f"{LOCALHOST}: deployment.pods[2].name: 'devices-local' is the name of one of the "
                               "run's device emulators; rename the pod"]  # fmt: skip


@pytest.mark.parametrize("backend", [["--backend", "local"], ["--backend", "k8s", "--dry-run"]])
@pytest.mark.parametrize(("overrides", "expected"), [(AS_DEVICES, RESERVED), (AS_WORKER, FIRST)])
def test_hw_run_refuses_it_in_one_line_and_leaves_nothing(capsys, tmp_path, backend, overrides, expected):
    out = tmp_path / "run"
    sets = [a for o in overrides for a in ("--set", o)]
    capsys.readouterr()
    code = cli.run(["hw", "run", str(LOCALHOST), *backend, "--mode", "concurrent", "--rounds", "1", "--out", str(out),
                    *sets])  # fmt: skip
    stdout, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in stdout + err and "internal error" not in err, (code, stdout, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not out.exists()  # nothing started, nothing written
