"""Inputs at the app's front door (AppTest): scenarios whose values lie outside a control's range or whose names
are valid but unusual, a sweep left running while another page is shown or whose files go away, links where the
app writes or removes its own files, relative folders, and the command the page shows. Each is a class of input
that once gave a wrong run, a silent stop, a traceback or a user's file changed or removed."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from app_pages import background, explore, library
from app_pages.scenario_edit import build_data
from sim.scenario import load_scenario
from tests.test_app import PAPER, TIMEOUT, assert_clean, metrics, start

pytestmark = pytest.mark.usefixtures("app_isolated")  # tests/conftest.py


def saved(name: str, edit=lambda d: None) -> Path:
    """A what-if uploaded into the library: the paper's scenario under ``name``, edited by ``edit(dict)``."""
    data = build_data(PAPER)
    data["name"] = name
    edit(data)
    return library.upload(f"{name}.yaml", yaml.safe_dump(data).encode(), PAPER)


def headline(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**"))


# ------------------------------------------------------------------------------------- names and ranges


def test_a_population_named_with_a_dot_takes_the_access_link_choice():
    """A device population may be named ``ecg.a`` (a DNS label): the access-link choice addressed it by name, read
    as the path ecg → a ("--set workload.devices.ecg.a.access_link: no list item 'ecg'")."""

    def dotted(d):
        for pop in d["workload"]["devices"]:
            pop["name"] = pop["name"].replace("-", ".")

    file = saved("dotted", dotted)
    at = start()
    at.selectbox(key="ex_scenario").set_value(file).run()
    assert_clean(at)
    at.selectbox(key="ex_access_saved-dotted").set_value("wifi-5ghz").run()
    assert_clean(at)
    assert metrics(at)["Application bytes"]
    (code,) = [c.value for c in at.code]
    assert "'workload.devices.*.access_link={preset: wifi-5ghz}'" in code, code


def test_scenario_values_beyond_a_control_run_as_the_file_says(monkeypatch):
    """A what-if's rounds, devices per class and seed outside the controls' ranges were clamped into them, so the
    page ran (and would save) another what-if than the file, without a word: its own values widen the ranges."""
    monkeypatch.setattr(explore, "MAX_ROUNDS", 5)
    monkeypatch.setattr(explore, "MAX_DEVICES_PER_CLASS", 5)

    def big(d):
        d["workload"]["fl"]["rounds"] = 8
        d.setdefault("run", {})["seed"] = 2**40

    file = saved("big", big)
    at = start()
    at.selectbox(key="ex_scenario").set_value(file).run()
    assert_clean(at)
    assert at.number_input(key="ex_rounds_saved-big").value == 8
    assert at.number_input(key="ex_seed_saved-big").value == 2**40
    assert at.number_input(key="ex_dev_ecg-patch_saved-big").value == 8  # 4 + 4 patches
    assert "× 8 rounds" in headline(at) and f"seed {2**40} ·" in headline(at)
    (code,) = [c.value for c in at.code]
    assert "--set" not in code and "--seed 1099511627776" in code, code  # the file's run, no edit
    assert not at.warning
    for page, key in (("Compare suites", "cs_seed_saved-big"), ("Sweep", "sw_seed_saved-big")):
        at.sidebar.radio(key="page").set_value(page).run()
        at.selectbox(key="cs_scenario" if page.startswith("Compare") else "sw_scenario").set_value(file).run()
        assert at.number_input(key=key).value == 2**40, page


def test_a_seed_beyond_what_a_browser_holds_is_said_in_one_line():
    file = saved("huge-seed", lambda d: d.setdefault("run", {}).update(seed=2**60))
    at = start()
    at.selectbox(key="ex_scenario").set_value(file).run()
    assert not at.exception and not at.error
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith("Seed") and f"{2**60:,}" in warning and len(warning.splitlines()) == 1, warning


def test_the_command_shown_runs_a_what_if_saved_under_a_path_with_a_space(tmp_path, monkeypatch):
    """The "same run from the command line" named a saved what-if's file unquoted: pasted, a home with a space ran
    something else."""
    monkeypatch.setenv("PQTWIN_WHATIFS_DIR", str(tmp_path / "my what-ifs $HOME"))
    file = saved("spaced")
    at = start()
    at.selectbox(key="ex_scenario").set_value(file).run()
    at.selectbox(key="ex_net_saved-spaced").set_value("wifi-5ghz").run()
    assert_clean(at)
    (code,) = [c.value for c in at.code]
    words = shlex.split(code)
    assert words[2] == str(file), words
    assert "deployment.network.links.0.preset=wifi-5ghz" in words, words


# ------------------------------------------------------------------------------------- a sweep running


def sweep_started() -> tuple[AppTest, dict]:
    """The Sweep page running a sweep of minutes (36 points × 10 replications) in the background."""
    at = start("Sweep")
    at.select_slider(key="sw_Model size (parameters)_paper-3node").set_value((10_000, 5_000_000)).run()
    at.number_input(key="sw_reps").set_value(10).run()
    at.button(key="sw_run").click().run()
    job = at.session_state["sw_job"]
    assert job is not None and job["proc"].poll() is None
    return at, job


def end(job: dict) -> None:
    proc = job["proc"]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_a_running_sweep_keeps_running_while_another_page_is_shown():
    """Only the Sweep page's progress kept the sweep's heartbeat fresh: 15 s on another page and the sweep stopped
    itself (exit 0: back on the page, nothing said so)."""
    at, job = sweep_started()
    try:
        at.sidebar.radio(key="page").set_value("Learn").run()
        time.sleep(4 * poll_s())
        age = time.time() - job["heartbeat"].stat().st_mtime
        assert age < 2.5 * poll_s(), age  # kept fresh with no page of Sweep's shown
        assert job["proc"].poll() is None
        at.sidebar.radio(key="page").set_value("Sweep").run()
        at.button(key="sw_stop").click().run()
        assert_clean(at)
        assert job["proc"].returncode == 130 and not job["heartbeat"].exists()
        time.sleep(2 * poll_s())
        assert not job["heartbeat"].exists()  # Stop's removal stands: nothing makes it again
    finally:
        end(job)


def poll_s() -> float:
    from app_pages import sweep

    return sweep.POLL_S


def test_a_sweep_that_stopped_itself_says_so():
    """A sweep whose heartbeat went away (runs/ cleaned up under it) stops itself with exit 0: the page said
    nothing, as if it had finished."""
    at, job = sweep_started()
    try:
        job["heartbeat"].unlink()
        deadline = time.monotonic() + 90
        while job["proc"].poll() is None:
            assert time.monotonic() < deadline, "the sweep did not stop within 90 s of losing its heartbeat"
            time.sleep(0.5)
        assert job["proc"].returncode == 0, job["log"].read_text()
        at.run()  # the progress sees the end and reruns the page, which says why
        assert not at.exception
        warnings = [w.value for w in at.warning if "The sweep ended with" in w.value]
        assert len(warnings) == 1 and "of 36 runs finished" in warnings[0], [w.value for w in at.warning]
    finally:
        end(job)


def _progress_alone() -> None:
    """The sweep's progress fragment as Streamlit reruns it every second: alone, outside app.py's guard."""
    from app_pages import sweep

    sweep.progress()


def test_the_sweep_progress_raises_nothing_when_its_folder_is_gone(tmp_path):
    """The progress fragment touched the heartbeat itself: with runs/app-sweeps/ removed under a running sweep, each
    of its reruns (alone, outside app.py's guard) was a FileNotFoundError traceback."""
    gone = tmp_path / "gone"
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    at = AppTest.from_function(_progress_alone, default_timeout=TIMEOUT)
    at.session_state["sw_job"] = {"proc": proc, "out": gone / "id", "heartbeat": gone / "id.heartbeat",
                                  "total": 4, "started": time.time(), "log": gone / "id.log"}  # fmt: skip
    try:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert any("0 of 4 runs done" in str(p.proto) for p in at.get("progress"))
    finally:
        proc.kill()
        proc.wait()


def test_run_writes_the_sweep_log_anew_never_through_a_link_there(tmp_path):
    """The sweep's log (runs/app-sweeps/<id>.log) was opened for writing where it stood: a link left there (a
    copied runs/, a stranger's) had Run truncate the file it points to."""
    at = start("Sweep")
    (sweep_file,) = (Path(os.environ["PQTWIN_RUNS_DIR"]) / "app-sweeps").glob("*.yaml")
    victim = tmp_path / "thesis.tex"
    victim.write_text("three years of work\n")
    log = sweep_file.with_suffix(".log")
    log.symlink_to(victim)
    at.button(key="sw_run").click().run()
    job = at.session_state["sw_job"]
    try:
        assert_clean(at)
        assert victim.read_text() == "three years of work\n"
        assert not log.is_symlink() and job["log"] == log
    finally:
        end(job)


# ------------------------------------------------------------------------------------- background runs' folders


def a_users_run(tmp_path: Path) -> tuple[Path, dict[Path, bytes]]:
    """A folder of the user's holding a run directory (a damaged one: a summary of another version), and its files."""
    mine = tmp_path / "mine"
    (mine / "run").mkdir(parents=True)
    (mine / "run" / "summary.json").write_text("{}")
    (mine / "notes.txt").write_text("keep me\n")
    return mine, {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}


def files_of(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_link_among_the_finished_background_runs_is_not_followed_to_remove(tmp_path, monkeypatch):
    """A finished run that does not read back is removed, to be run again: one reached through a link there had
    the run directory it points to removed."""
    monkeypatch.setenv("PQTWIN_APP_INLINE_S", "0")
    monkeypatch.setenv("PQTWIN_APP_CONFIRM_S", "0")
    at = start()  # waits for its go: the key of its run is on the button
    (go,) = [b for b in at.button if b.key.startswith("go_")]
    key = go.key.removeprefix("go_")
    mine, before = a_users_run(tmp_path)
    attempts = Path(os.environ["PQTWIN_RUNS_DIR"]) / background.APP_RUNS / key
    attempts.mkdir(parents=True)
    (attempts / "linked").symlink_to(mine)
    at.run()
    assert not at.exception and not at.error
    assert files_of(mine) == before


def test_a_link_where_a_background_run_goes_is_replaced_not_written_through(tmp_path):
    """The session's attempt folder is cleared before a run: a link there was left (rmtree refuses links), and the
    run written with --force into the folder it points to."""
    mine, before = a_users_run(tmp_path)
    scenario = load_scenario(PAPER)
    key = background.run_key(scenario, "sequential", 1, 1)
    folder = background.folder_of(tmp_path / "runs", key, "s-link")
    folder.parent.mkdir(parents=True)
    folder.symlink_to(mine)
    job = background.start(tmp_path / "runs", scenario, "sequential", 1, 1, 1.0, "paper", "s-link")
    try:
        assert not folder.is_symlink() and (folder / "input" / "scenario.yaml").is_file()
        job.proc.wait(timeout=120)
        assert files_of(mine) == before
    finally:
        background.stop("s-link")


def test_relative_runs_and_library_folders_work_from_any_directory(tmp_path, monkeypatch):
    """PQTWIN_RUNS_DIR and PQTWIN_WHATIFS_DIR given relative, the app started elsewhere than the repository: a long
    run was written where the app stood and looked for where its process stood ("input/scenario.yaml: cannot read
    file"), and a saved what-if's sweep named its scenario relative to the sweep file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PQTWIN_RUNS_DIR", "my-runs")
    monkeypatch.setenv("PQTWIN_WHATIFS_DIR", "my-whatifs")
    monkeypatch.setenv("PQTWIN_APP_INLINE_S", "0")
    monkeypatch.setenv("PQTWIN_APP_CONFIRM_S", "0")
    at = start()
    next(b for b in at.button if b.key.startswith("go_")).click().run()
    assert_clean(at)
    assert metrics(at)["Round latency"]
    assert list((tmp_path / "my-runs" / background.APP_RUNS).glob("*/*/run/summary.json"))
    file = saved("mine")
    at.sidebar.radio(key="page").set_value("Sweep").run()
    at.selectbox(key="sw_scenario").set_value(file).run()
    assert_clean(at)
    assert any("runs ×" in m.value for m in at.markdown)  # planned: its scenario found from the sweep file


def test_a_horizon_outside_the_control_is_shown_as_the_file_says():
    """run.horizon_s below the control's 1 s (or over its day) was shown as 1 s while the run used the file's."""
    file = saved("short", lambda d: d.setdefault("run", {}).update(horizon_s=0.5))
    at = start()
    at.selectbox(key="ex_scenario").set_value(file).run()
    assert not at.exception and not at.error
    assert at.number_input(key="ex_horizon_saved-short").value == 0.5
    (code,) = [c.value for c in at.code]
    assert "run.horizon_s" not in code, code


def test_deleting_a_what_if_linked_into_the_library_removes_the_link_only(tmp_path):
    """A what-if folder linked into the library (kept elsewhere): Delete did nothing (rmtree refuses a link) and
    said nothing; now the link goes and the folder it names stays as it was."""
    kept = tmp_path / "elsewhere" / "linked"
    kept.parent.mkdir()
    os.rename(saved("linked").parent, kept)
    link = library.root() / "linked"
    link.symlink_to(kept)
    before = files_of(kept)
    at = start()
    at.selectbox(key="ex_scenario").set_value(link / "scenario.yaml").run()
    assert_clean(at)
    at.button(key="ex_delete").click().run()
    assert_clean(at)
    assert not link.exists() and not link.is_symlink()
    assert files_of(kept) == before
    assert at.selectbox(key="ex_scenario").value == PAPER
