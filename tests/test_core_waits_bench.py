"""bench/core_waits.py: the simulator's cores sampled per round, without changing what the model computes."""

from __future__ import annotations

import sys

import pandas as pd

from sim.runner import simulate, write_run
from sim.scenario import load_scenario

from .conftest import ROOT, SCENARIOS

sys.path.insert(0, str(ROOT / "bench"))
import core_waits

SMALL = ["workload.fl.model_parameters=50000", "workload.fl.samples_per_client=300", "workload.fl.rounds=3"]


def test_sampling_the_cores_reads_them_and_changes_no_result(tmp_path):
    """A localhost cell (cores placed as Linux places them) simulated with its cores sampled: the same spans as
    unsampled, a sample list per replication, and per round the busy core-time within what two cores give, waits
    that are never negative, and the part beside an idle core never more than all of them."""
    s = load_scenario(SCENARIOS / "localhost.yaml", SMALL)
    d = tmp_path / "sim-localhost-concurrent-cell"
    plain = simulate(s, "concurrent", replications=2)
    write_run(plain, d, s)
    with core_waits.sampled_cores() as samples:
        sampled = simulate(s, "concurrent", replications=2)
    assert len(samples) == 2 and all(len(rows) > 10 for rows in samples)
    cols = ["replication", "round", "pod", "phase", "op", "start_s", "end_s"]
    pd.testing.assert_frame_equal(plain.spans[cols], sampled.spans[cols])
    made = core_waits.hosts.PlacedCores.__init__
    rounds = core_waits.simulated(d, "concurrent", 2)
    assert core_waits.hosts.PlacedCores.__init__ is made  # put back as it was
    marks = plain.spans.query("op == 'round' and round > 0").sort_values(["replication", "round"])
    lengths = (marks.end_s - marks.start_s).to_numpy()
    assert rounds is not None and len(rounds) == len(lengths) == 6
    for (busy, waiting, beside_idle), length in zip(rounds, lengths, strict=True):  # two cores at most
        assert 0 < busy <= 2 * (length + core_waits.SAMPLE_S) and 0 <= beside_idle <= waiting


def test_a_directory_without_both_runs_is_one_line(tmp_path):
    import subprocess

    got = subprocess.run([sys.executable, str(ROOT / "bench" / "core_waits.py"), str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert got.returncode == 2 and "no --mode both twin run" in got.stderr and "Traceback" not in got.stderr
