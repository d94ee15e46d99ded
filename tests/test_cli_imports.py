"""The command line starts light: ``--help`` and option mistakes import no model, no data frame, no twin.

Which modules load is checked, not how long it takes (machines are noisy: bench/startup.py times it).
"""

from __future__ import annotations

import json
import subprocess
import sys

from pqtwin import cli
from sim import cost as costs
from sim import scenario as scn

from .conftest import ROOT, SCENARIOS

# What a command imports when it runs, never before (pydantic: typer's own, for the values of a command's options)
HEAVY = ("pandas", "numpy", "pyarrow", "scipy", "simpy", "networkx", "yaml", "kubernetes", "cryptography", "hw")


def loaded_after(*args: str) -> tuple[int, set[str]]:
    """Run ``pqtwin ARGS`` in a fresh interpreter; its exit code and which of HEAVY (and pydantic) it loaded."""
    code = (
        "import json, sys\n"
        "from pqtwin.cli import run\n"
        f"rc = run({list(args)!r})\n"
        f"names = {[*HEAVY, 'pydantic']!r}\n"
        "print(json.dumps([rc, [n for n in names if n in sys.modules]]), file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    rc, names = json.loads(res.stderr.strip().splitlines()[-1])
    return rc, set(names)


def test_the_help_limits_are_the_models_own() -> None:
    assert cli.MAX_SEED == scn.MAX_SEED
    assert cli.MAX_REPLICATIONS == scn.MAX_REPLICATIONS
    assert cli.MAX_ROUNDS == scn.MAX_ROUNDS
    assert cli.DEFAULT_MAX_MEMORY_GIB == costs.DEFAULT_MAX_MEMORY_GIB
    assert cli.DEFAULT_MAX_MINUTES == costs.DEFAULT_MAX_MINUTES


def test_importing_the_cli_loads_no_model() -> None:
    code = f"import sys, pqtwin.cli; print([m for m in {[*HEAVY, 'pydantic', 'sim']!r} if m in sys.modules])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_help_loads_no_model() -> None:
    assert loaded_after("--help") == (0, set())
    for command in (["sim"], ["scenario"], ["scenario", "check"], ["calibrate"], ["hw"], ["hw", "run"], ["node"],
                    ["compare"]):  # fmt: skip
        assert loaded_after(*command, "--help") == (0, set()), command


def test_an_option_mistake_loads_no_model() -> None:
    rc, names = loaded_after("sim", str(SCENARIOS / "paper-3node.yaml"), "--seed", "-1")
    assert rc == 2 and names <= {"pydantic"}, names


def test_summaries_need_no_scipy() -> None:
    """scipy is a test-only dependency: the confidence intervals of every summary come from sim/stats.py."""
    out = printed(
        "import sys\n"
        "import numpy as np\n"
        "from sim.summary import ci95\n"
        "print(ci95(np.arange(5.0)), 'scipy' in sys.modules)\n"
    )
    assert out.split()[-1] == "False", out


def test_the_model_and_its_workers_load_no_data_frames() -> None:
    """The simulation's code needs no pandas or pyarrow: ``pqtwin sim`` forks its replication workers without
    them, and loads them while the workers compute (sim/runner.py ``_load_tables``)."""
    out = printed("import sys, sim.runner, hw.rundir; print([m for m in ('pandas', 'pyarrow') if m in sys.modules])")
    assert out.strip() == "[]"


def test_the_kernels_run_without_importing_scipy_linalg_which_stays_importable() -> None:
    """numba's array support looks for BLAS by importing scipy.linalg (0.17 s): the kernels need none, so it is
    loaded without; scipy.linalg itself still imports afterwards (another user's code in the same process)."""
    out = printed(
        "import sys\n"
        "from sim import kernels\n"
        "kernels.load()\n"
        "assert kernels.grid_after(0.0, 0.5, 1.2) == 1.5\n"
        "print('scipy.linalg' in sys.modules)\n"
        "import scipy.linalg\n"
        "print(scipy.linalg.cython_blas is not None)\n"
    )
    assert out.split() == ["False", "True"]


def printed(code: str) -> str:
    """What ``python -c CODE`` printed in a fresh interpreter (it must exit 0)."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


NODE = """
import json, sys
import hw.node, hw.node.aggregator, hw.node.client, hw.node.devices, hw.node.worker
from sim.contract import SpanRow, rows_bytes
started = [n for n in NAMES if n in sys.modules]
rows_bytes([SpanRow(0, 1, "client-1", "pi-2", "train", "fl.train", 1.0, 2.0, 0.0, 0)])  # what a node's end writes
print(json.dumps([started, [n for n in NAMES if n in sys.modules]]))
"""


def test_a_twin_node_runs_without_pandas_networkx_or_the_model():
    """Every process of a twin run imports the node program: pandas (with pyarrow's pandas check at a node's end,
    writing its spans), NetworkX and the simulator's model came with it, ~0.4 s of a fast core a process."""
    names = ["pandas", "networkx", "simpy", "sim.model", "sim.network", "scipy"]
    code = f"NAMES = {names!r}\n{NODE}"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    started, ended = json.loads(res.stdout.strip().splitlines()[-1])
    assert started == [] and ended == [], (started, ended)
