"""Input classes a fuzzing hunt found (2026-12-02), fixed as classes:

- a ``run.frame_spans`` fraction the schema accepts but so small (under ~1e-16) that the vectorized engine's span
  sampler summed its gaps past 2**63: an internal error (garbage places). Any fraction in [0, 1] now runs, and one
  that small keeps no frame, as its law says;
- ``--set`` paths into a list whose items have all-digit names: ``hosts.0`` was item 0 even when a host was named
  ``0``. A part that is an index and another item's name is refused in one line saying how to address either;
- per-replication frame and session counts were floored (27 frames over 10 replications reported as 2): exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from pqtwin.tables import telemetry_rows
from sim import summary, telemetry
from sim.contract import read_summary
from sim.errors import UserError, load_yaml
from sim.runner import simulate, write_run
from sim.scenario import apply_override, load_scenario, set_path
from sim.sketch import LatencySketch

from .conftest import ROOT

WARD = ROOT / "scenarios" / "ward-200.yaml"
PAPER = ROOT / "scenarios" / "paper-3node.yaml"


# --- run.frame_spans under ~1e-16 ----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [1e-16, 1e-18, 1e-300, 5e-324])
def test_a_span_fraction_too_small_to_keep_any_frame_keeps_none(fraction):
    """The sampler's gaps are near 1 / fraction (int64 max under ~1e-19): their sum must not wrap to negative
    places, whatever the window cuts. No run has 2**53 frames, so none is kept (the chance that one of these
    10 M frames is kept is under 1e-9)."""
    sample = telemetry._Sample(np.random.default_rng(5), fraction)
    for n in (1, 1000, 10_000_000, 0, 7):
        kept = sample.pick(n)
        assert kept.dtype == np.int64 and kept.size == 0, (fraction, n, kept[:5])


def test_a_run_with_a_tiny_span_fraction_is_the_run_without_frame_spans():
    """End to end in the vectorized engine: ``run.frame_spans`` 1e-18 runs (it was an internal error) and gives
    what 0 gives: no frame span, the same statistics (the sample draws from its own stream)."""
    base = ["run.replications=1", "run.horizon_s=20", "run.engine=vectorized"]
    tiny, none = (simulate(load_scenario(WARD, [*base, f"run.frame_spans={f}"])) for f in ("1e-18", "0"))
    assert not (tiny.spans.op == "frame").any()
    assert tiny.summary.telemetry == none.summary.telemetry
    assert tiny.summary.telemetry.frames > 0


# --- --set list addressing with all-digit names ----------------------------------------------------------------


@pytest.fixture
def digits(tmp_path):
    """paper-3node with its hosts named '1', '0', '2' (valid names: a DNS label may be all digits)."""
    text = PAPER.read_text()
    for old, new in (("pi-1", "'1'"), ("pi-2", "'0'"), ("pi-3", "'2'")):
        text = text.replace(old, new)
    (tmp_path / "profiles").symlink_to(ROOT / "scenarios" / "profiles")
    (tmp_path / "digits.yaml").write_text(text)
    return tmp_path / "digits.yaml"


def _cores(path, *sets):
    return {h.name: h.cores for h in load_scenario(path, list(sets)).deployment.hosts}


@pytest.mark.parametrize("part", ["0", "1"])
def test_a_set_part_that_is_an_index_and_another_items_name_is_refused_saying_how_to_address_each(digits, part):
    """``hosts.0`` was item 0 (named '1'), silently, with a host named '0'; now one line names both readings and
    the ``[N]`` form of each."""
    other = {"0": 1, "1": 0}[part]
    with pytest.raises(UserError) as info:
        load_scenario(digits, [f"deployment.hosts.{part}.cores=1"])
    (line,) = info.value.lines
    assert line == (f"--set deployment.hosts.{part}.cores: deployment.hosts.{part} is ambiguous: item {part} (named "
                    f"'{other}') or the item named '{part}' (item {other}); write deployment.hosts[{part}] or "
                    f"deployment.hosts[{other}]")  # fmt: skip


def test_an_index_in_brackets_is_the_index_whatever_the_names_and_unambiguous_parts_read_as_before(digits):
    """``[N]`` is item N (no name starts with '['); a part that is an index and that item's own name, or a name
    that is no index in range, or an index that is no name, addresses its one item as it did."""
    assert _cores(digits, "deployment.hosts[0].cores=1") == {"1": 1, "0": 4, "2": 4}
    assert _cores(digits, "deployment.hosts[1].cores=1", "deployment.hosts.2.cores=2") == {"1": 4, "0": 1, "2": 2}
    assert _cores(digits, "deployment.hosts.*.cores=3") == {"1": 3, "0": 3, "2": 3}
    assert _cores(PAPER, "deployment.hosts.1.cores=1", "deployment.hosts.pi-3.cores=2") == {
        "pi-1": 4, "pi-2": 1, "pi-3": 2}  # fmt: skip
    assert _cores(PAPER, "deployment.network.links[1].latency_s=0.5", "deployment.hosts[2].cores=1")["pi-3"] == 1
    with pytest.raises(UserError, match=r"^--set deployment.hosts\[3\].cores: no list item '\[3\]' at "):
        load_scenario(PAPER, ["deployment.hosts[3].cores=1"])
    with pytest.raises(UserError, match=r"^--set deployment\[0\].x: deployment is a section, not a list$"):
        load_scenario(PAPER, ["deployment[0].x=1"])


def test_sweep_axes_study_levels_and_the_app_address_list_items_by_the_same_rule(digits):
    """A sweep axis's ``path`` (``set_path``) and every ``set`` list or edit (``apply_override``) read paths as
    ``--set`` does: the same refusal, the same ``[N]``."""
    data = load_yaml(digits)
    with pytest.raises(UserError, match=r"deployment.hosts.1 is ambiguous: .*; write deployment.hosts\[1\] or "):
        set_path(data, "deployment.hosts.1.cores", 2)
    set_path(data, "deployment.hosts[0].cores", 2)
    apply_override(data, "deployment.hosts[1].cores=3")
    assert [h["cores"] for h in data["deployment"]["hosts"]] == [2, 3, 4]
    with pytest.raises(UserError, match=r"deployment.hosts.0 is ambiguous"):
        apply_override(data, "deployment.hosts.0.profile=pi4-liboqs")


# --- per-replication counts -----------------------------------------------------------------------------------


def test_frames_and_sessions_per_replication_are_exact_means_in_the_summary_and_its_file(tmp_path):
    """27 frames over 10 replications is 2.7 a replication (``//`` said 2); a whole mean stays an int (20
    sessions over 10 replications: 2), and both read back from summary.json."""
    s = load_scenario(PAPER, ["workload.fl.rounds=3", "run.replications=10", "workload.devices.*.count=1"])
    result = simulate(s)
    frames = int((result.spans.op == "frame").sum())
    tele = result.summary.telemetry
    assert tele.frames == frames / 10 and tele.latency_s is not None and tele.latency_s.n == frames
    assert frames % 10 and isinstance(tele.frames, float), frames  # the scenario makes a mean that is not whole
    write_run(result, tmp_path, s)
    assert read_summary(tmp_path / "summary.json").telemetry == tele
    assert dict(telemetry_rows(result.summary))["telemetry frames / replication"].startswith(f"{frames / 10:,}, ")


def test_handshakes_and_the_vectorized_engines_counts_are_exact_means():
    """Sessions, and the vectorized engine's frames, frames in flight and frames in SimPy, over replications
    the count is no multiple of: the exact mean; a multiple: the int as before."""
    base = simulate(load_scenario(PAPER, ["workload.fl.rounds=1", "run.replications=1"])).summary
    summary.with_handshakes(base, [[("p", 0.0, 1.0, True)] * 3, [("p", 0.0, 2.0, True)] * 2], {"p": "c"}, 3)
    assert base.telemetry.sessions == 2.5
    storm = base.telemetry.storm  # so are the storm's devices up, of the scenario's 3
    assert storm is not None and storm.devices == 2.5 and storm.of_devices == 3
    summary.with_handshakes(base, [[("p", 0.0, 1.0, True)] * 3, [("p", 0.0, 2.0, True)] * 3], {"p": "c"}, 3)
    assert base.telemetry.sessions == 3 and isinstance(base.telemetry.sessions, int)
    assert base.telemetry.storm is not None and base.telemetry.storm.devices == 3
    outcomes = []
    for frames, in_flight, hot in ((5, 1, 2), (6, 0, 0)):
        sketch = LatencySketch()
        sketch.add(np.full(frames, 0.01))
        outcomes.append(telemetry.Outcome({"p": sketch}, [], frames, 0, in_flight, {}, 1, hot_frames=hot))
    engine = summary.with_frames(base, outcomes)
    assert (base.telemetry.frames, engine.frames_in_flight, engine.hot_frames) == (5.5, 0.5, 1)
    assert summary.mean_count(27, 10) == 2.7 and summary.mean_count(30, 10) == 3 and summary.mean_count(3, 0) == 3
