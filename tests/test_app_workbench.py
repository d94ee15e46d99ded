"""The app as a workbench (AppTest): a pinned baseline and deltas, saved and uploaded what-ifs, long runs that ask
first and run in the background with a Stop that really stops, and the insights next to the numbers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from app_pages import background, insights, library
from pqtwin import report
from sim.scenario import load_scenario
from tests.test_app import ROOT, assert_clean, figures, metrics, seconds, start

PAPER = ROOT / "scenarios" / "paper-3node.yaml"


pytestmark = pytest.mark.usefixtures("app_isolated")  # tests/conftest.py


def test_pinned_baseline_gives_every_kpi_its_delta_and_the_charts_both_runs():
    at = start()
    before = metrics(at)["Round latency"]
    at.button(key="ex_pin").click().run()
    assert_clean(at)
    assert at.session_state["baseline"].label.startswith("paper-3node")
    same = [m for m in at.metric if m.delta]
    assert same and all(m.delta.startswith("±0") and m.proto.color == 2 for m in same)  # no change: grey ("off")
    at.selectbox(key="ex_aead_paper-3node").set_value("ChaCha20-Poly1305").run()
    assert_clean(at)
    m = {x.label: x for x in at.metric}
    # ChaCha20 on the Pi 4 profile: faster rounds; the delta is the difference of the two shown values
    assert m["Round latency"].delta.startswith("-")  # ASCII: Streamlit colours it as a fall (green: lower is better)
    shown = seconds(before) - seconds(m["Round latency"].value)
    assert seconds(m["Round latency"].delta.split(" (")[0].lstrip("-")) == pytest.approx(shown, rel=0.02)
    assert any("Δ 95 % CI [" in c.value and "beyond noise" in c.value for c in at.caption)
    assert any("ChaCha20 needs none" in i.value for i in at.info), [i.value for i in at.info]
    table = at.dataframe[0].value.set_index("KPI")
    assert table.loc["round latency", "beyond noise"] == "yes"
    assert any("paired over replications" in c.value for c in at.caption)
    phases, hist, _, gantt_base = figures(at)[:4]
    assert [t["name"] for t in phases["data"]] == ["baseline", "what-if"]
    assert any(t["name"].endswith(", baseline") for t in hist["data"])
    assert gantt_base["layout"]["title"]["text"].startswith("Baseline")
    at.button(key="ex_unpin").click().run()
    assert at.session_state["baseline"] is None and all(not x.delta for x in at.metric)


def test_the_report_button_makes_the_report_of_the_what_if_and_its_baseline():
    at = start()
    at.button(key="ex_pin").click().run()
    at.select_slider(key="ex_model_paper-3node").set_value(100_000).run()
    at.button(key="ex_report_make").click().run()
    assert_clean(at)
    _, html = at.session_state["ex_report"]
    assert html.startswith("<!DOCTYPE html>") and "What-if against the baseline" in html
    assert "pqtwin sim scenarios/paper-3node.yaml" in html and "workload.fl.model_parameters=100000" in html
    assert "/tmp/" not in html and "pqtwin-report-" not in html  # no temporary directory named
    assert "baseline: baseline" not in html.lower() and "what-if: what-if" not in html.lower()
    assert "run.replications" not in html  # both ran 3 replications (the file says 10): no made-up difference
    assert [b.label for b in at.get("download_button")][-1] == "Download report"
    at.button(key="ex_pdf_make").click().run()  # Chromium prints it (tests/test_report.py reads such PDFs back)
    assert_clean(at)
    _, pdf = at.session_state["ex_report_pdf"]
    assert pdf.startswith(b"%PDF") and report.pdf_pages(pdf) >= 2
    assert [b.label for b in at.get("download_button")][-2:] == ["Download report", "Download PDF"]


def test_a_saved_what_if_reloads_as_the_same_run_and_can_be_deleted():
    at = start()
    at.select_slider(key="ex_model_paper-3node").set_value(100_000).run()
    at.radio(key="ex_mode_paper-3node").set_value("concurrent").run()
    value = metrics(at)["Round latency"]
    at.text_input(key="ex_save_name").input("bad name!").run()
    at.button(key="ex_save").click().run()
    assert_clean(at, errors=1)
    assert "what-if name" in at.error[0].value
    at.text_input(key="ex_save_name").input("ward-small-model").run()
    at.button(key="ex_save").click().run()
    saved = Path(os.environ["PQTWIN_WHATIFS_DIR"]) / "ward-small-model"
    assert (saved / "scenario.yaml").is_file() and list((saved / "profiles").glob("*.yaml"))
    data = yaml.safe_load((saved / "scenario.yaml").read_text())
    assert data["name"] == "ward-small-model" and data["workload"]["processing"]["mode"] == "concurrent"
    at.selectbox(key="ex_scenario").set_value(saved / "scenario.yaml").run()
    assert_clean(at)
    assert metrics(at)["Round latency"] == value  # same scenario, mode, seed and replications: the same run
    assert any("**ward-small-model** ·" in x.value for x in at.markdown)  # its downloads carry its name
    at.button(key="ex_delete").click().run()
    assert_clean(at)
    assert not saved.exists() and at.selectbox(key="ex_scenario").value == PAPER


def test_distinct_what_ifs_download_under_distinct_names():
    """The name the downloads carry (the browser test checks the real download's file name)."""
    from app_pages.common import Spec
    from app_pages.explore import whatif_name

    s = load_scenario(PAPER)
    plain = Spec(str(PAPER))
    small = plain._replace(overrides=("workload.fl.model_parameters=100000",))
    big = plain._replace(overrides=("workload.fl.model_parameters=500000",))
    names = [whatif_name(x, s, "sequential", 1, 3) for x in (plain, small, big, small)]
    assert names[0] == "paper-3node" and len(set(names[:3])) == 3 and names[1] == names[3]


def test_uploads_are_validated_with_one_line_errors_and_saved_when_valid():
    at = start()
    text = PAPER.read_text().replace("name: paper-3node", "name: uploaded-ward")
    at.file_uploader(key="ex_upload").upload("mine.yaml", text.encode(), "application/yaml").run()
    assert_clean(at)
    assert at.selectbox(key="ex_scenario").value == library.root() / "uploaded-ward" / "scenario.yaml"
    assert metrics(at)["Round latency"]
    bad = text.replace("rounds: 10", "rounds: -3")
    secret = Path(os.environ["PQTWIN_WHATIFS_DIR"]).parent / "secret.yaml"
    secret.write_text("password: hunter2\n")
    peek = text.replace("profile: pi4-openssl", f"profile: {secret}", 1)
    again = text  # the same name as the what-if saved above: refused, as Save refuses it
    for name, data, words in (("broken.yaml", b"a: [", "not valid YAML"),
                              ("neg.yaml", bad.encode(), "workload.fl.rounds"),
                              ("bin.yaml", b"\xff\xfe", "not UTF-8"),
                              ("peek.yaml", peek.encode(), "by its name, not a path"),
                              ("again.yaml", again.encode(), "already saved")):  # fmt: skip
        at.file_uploader(key="ex_upload").upload(name, data, "application/yaml").run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and name in errors[0] and words in errors[0], errors
        # named as uploaded, every line: not as a file of scenarios/ that does not exist
        assert all(line.startswith(f"{name} (uploaded): ") for line in errors[0].splitlines()), errors
        assert "Traceback" not in errors[0] and len(errors[0].splitlines()) == 1 and "hunter2" not in errors[0]


def test_unpriced_algorithms_are_offered_with_the_reason(tmp_path, monkeypatch):
    from tests.test_app import LOCAL, partial_profile

    monkeypatch.setenv("PQTWIN_RUNS_DIR", str(partial_profile(tmp_path / "runs", ("Falcon-512",))))
    at = start()
    at.selectbox(key="ex_scenario").set_value(ROOT / "scenarios" / "localhost.yaml").run()
    at.selectbox(key="ex_profile_localhost").set_value(LOCAL).run()
    options = at.selectbox(key="ex_signature_localhost").options
    assert "Falcon-512 (PQC) — not priced by local-profile" in options
    assert "ML-DSA-65 (PQC)" in options


def test_a_long_run_asks_first_then_runs_in_the_background_and_is_reused(monkeypatch):
    monkeypatch.setenv("PQTWIN_APP_INLINE_S", "0")
    monkeypatch.setenv("PQTWIN_APP_CONFIRM_S", "0")
    at = start()
    assert not at.metric and any("is estimated at" in i.value for i in at.info)
    go = next(b for b in at.button if b.key.startswith("go_"))
    assert go.label.startswith("Run (~")
    go.click().run()
    assert_clean(at)
    assert metrics(at)["Round latency"].endswith("ms")  # read back from the background run's directory
    done = list((Path(os.environ["PQTWIN_RUNS_DIR"]) / background.APP_RUNS).glob("*/*/run/summary.json"))
    assert len(done) == 1
    again = start()  # another session: the finished run is on disk, no question asked
    assert metrics(again)["Round latency"] == metrics(at)["Round latency"]


def _long_job(tmp_path: Path, session: str) -> background.Job:
    s = load_scenario(ROOT / "scenarios" / "ward-200.yaml", ["run.horizon_s=3600"])
    return background.start(tmp_path / "runs", s, "sequential", 1, 3, 60.0, "ward", session)


def _gone(job: background.Job, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(job.proc.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_stop_ends_the_simulation_process_group_at_once(tmp_path):
    job = _long_job(tmp_path, "s-stop")
    time.sleep(1.5)
    assert job.running()
    t0 = time.monotonic()
    background.stop("s-stop")
    assert _gone(job, 2.0) and time.monotonic() - t0 < 2.0
    assert background.outcome(job) is None and not (job.out / "summary.json").exists()


def test_a_closed_session_kills_its_run(tmp_path, monkeypatch):
    job = _long_job(tmp_path, "s-closed")
    time.sleep(1.0)
    monkeypatch.setattr(background, "_session_connected", lambda session: False)
    assert _gone(job, 2.0)
    assert job.stopped


def test_insights_hold_only_where_the_numbers_say_so():
    from sim.runner import simulate

    s = load_scenario(PAPER, ["workload.fl.rounds=3"])
    aes = simulate(s, "sequential", 1, 2)
    chacha = simulate(load_scenario(PAPER, ["workload.fl.rounds=3", "workload.crypto.aead=ChaCha20-Poly1305"]),
                      "sequential", 1, 2)  # fmt: skip
    lines = insights.explain(aes, s)
    kinds = insights.crypto_time_by_kind(aes.spans)
    assert kinds["aead"] > 0.5 * sum(kinds.values())
    assert any(line.startswith("Bulk encryption (AES-256-GCM)") for line in lines)
    assert not insights.explain(chacha, s, chacha) or all(
        "instead of" not in x for x in insights.explain(chacha, s, chacha)
    )
    against = insights.explain(chacha, s, aes)
    assert any("ChaCha20-Poly1305 instead of AES-256-GCM" in x for x in against)


def test_a_saved_what_if_keeps_the_host_profile_it_was_priced_with():
    liboqs = ROOT / "scenarios" / "profiles" / "pi4-liboqs.yaml"
    s = load_scenario(PAPER, None, liboqs)
    path = library.save(s, "on-liboqs", "sequential", 1, 2)
    again = load_scenario(path)
    assert again.host_profile("pi-1").ops == s.host_profile("pi-1").ops
    assert [p.name for p in (path.parent / "profiles").iterdir()] == ["pi4-liboqs.yaml"]
