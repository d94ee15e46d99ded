"""`pqtwin report`: one self-contained HTML report of a run (and a baseline), its reproduce commands, PDF."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import zlib
from html import escape, unescape
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plotly.offline import get_plotlyjs

from pqtwin import cli, report
from sim import deltas
from sim.contract import RunLayout, read_spans, read_summary
from sim.errors import UserError
from sim.profile import load_profile
from sim.runner import simulate
from sim.scenario import load_scenario
from sim.units import fmt_delta

from .conftest import SCENARIOS

PAPER = SCENARIOS / "paper-3node.yaml"
SMALL = ["--set", "workload.fl.rounds=3", "--replications", "2", "--seed", "7"]
KPI_LABELS = (
    "round latency", "model distribution", "crypto share of FL CPU time", "application bytes per replication",
    "energy per FL round (priced hosts)", "battery life, ecg-a", "battery life, ecg-b", "host utilisation, pi-1",
    "host utilisation, pi-3",
)  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = cli.run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small simulated runs: the paper's scenario (baseline), a what-if with a smaller model, and localhost."""
    root = tmp_path_factory.mktemp("runs")
    out = {"base": root / "base", "whatif": root / "whatif", "other": root / "other"}
    args = {"base": [PAPER], "whatif": [PAPER, "--set", "workload.fl.model_parameters=100000"],
            "other": [SCENARIOS / "localhost.yaml"]}  # fmt: skip
    for name, extra in args.items():
        mode = "concurrent" if name == "other" else "sequential"  # not the scenario's: the command must say it
        code = cli.run(["sim", *map(str, extra), *SMALL, "--mode", mode, "--out", str(out[name])])
        assert code == 0, name
    return out


def write_report(capsys: pytest.CaptureFixture[str], run: Path, out: Path, *extra: str) -> str:
    code, _, err = run_cli(capsys, "report", run, "--out", out, *extra)
    assert code == 0, err
    return out.read_text()


def visible(html: str) -> str:
    """The report without its scripts (Plotly's code and the figures' data)."""
    return re.sub(r"<script.*?</script>", "", html, flags=re.S)


def row(html: str, first_cell: str) -> str:
    found = re.search(rf"<tr[^>]*><td>{re.escape(escape(first_cell))}</td>.*?</tr>", html)
    assert found, first_cell
    return found.group(0)


def code_of(html: str, role: str) -> str:
    found = re.search(rf"<code data-role={role}>(.*?)</code>", html, re.S)
    assert found, role
    return unescape(found.group(1))


def test_report_holds_the_run(runs, tmp_path, capsys):
    html = write_report(capsys, runs["whatif"], tmp_path / "r.html")
    text = visible(html)
    assert "<h1>paper-3node — sequential mode, ML-KEM-768 + ML-DSA-65 + AES-256-GCM, 2 replications × 3 rounds, " \
           "seed 7</h1>" in text  # fmt: skip
    assert "Simulated: every number below comes from the discrete-event model" in text
    for label in KPI_LABELS:
        assert f"<td>{escape(label)}</td>" in text, label
    assert not re.search(r">\s*(nan|None|inf)\s*<", text)
    # settings: hosts, links, devices, FL workload (the what-if's 100k-parameter model), suite, rekey, run
    for setting in ("pi4-openssl", "gigabit-ethernet: 940 Mbit/s", "ecg-a: 4 × ecg-patch", "100,000 parameters",
                    "FL per_message", "60.0 min, last_round"):  # fmt: skip
        assert escape(setting) in text, setting
    # provenance: the op's tag, provider and source exactly as the profile file records them
    prof = load_profile(SCENARIOS / "profiles" / "pi4-openssl.yaml")
    for op in ("ML-DSA-65.sign", "fl.train"):
        m = prof.ops[op]
        assert f"<td>{m.tag}</td><td>{m.provider}</td><td class=src>{escape(m.source)}</td>" in row(text, op), op
    assert prof.power is not None and escape(prof.power.source) in row(text, "power model")
    assert "ML-KEM-1024.encaps" not in text  # priced by the profile, not used by the run
    rerun = code_of(html, "reproduce-run")
    assert rerun == (f"pqtwin sim {runs['whatif']}/scenario.yaml --mode sequential --seed 7 --replications 2 "
                     f"--out {runs['whatif']}-rerun")  # fmt: skip
    assert code_of(html, "reproduce-report") == f"pqtwin report {runs['whatif']} --out {tmp_path / 'r.html'}"


def test_the_report_is_self_contained(runs, tmp_path, capsys):
    html = write_report(capsys, runs["base"], tmp_path / "r.html")
    assert not re.search(r"<script[^>]*\bsrc=", html, re.I)  # every script inline: nothing fetched
    assert not re.search(r"<link[^>]*href=[\"']?(https?:)?//", html, re.I)
    js = get_plotlyjs()
    assert html.count(js[len(js) // 2 : len(js) // 2 + 400]) == 1  # plotly.js once, for every figure
    assert html.count('class="plotly-graph-div"') == 3  # phases, round latency, the patches' start-up storm
    assert "Start-up storm: device handshakes under way" in html
    assert "<td>start-up storm: all devices up</td>" in html
    assert "<td>start-up storm: devices up by the run&#x27;s end</td><td>8 of 8</td>" in html


def test_baseline_deltas_and_differences(runs, tmp_path, capsys):
    html = write_report(capsys, runs["whatif"], tmp_path / "r.html", "--baseline", runs["base"])
    pairs = [
        (read_summary(RunLayout(d).summary), read_spans(RunLayout(d).spans)) for d in (runs["base"], runs["whatif"])
    ]
    expected = {d.key: d for d in deltas.deltas(*pairs)}
    latency = expected["round_latency_s"]
    found = re.search(r'<tr data-key="round_latency_s" data-delta="([^"]+)">.*?</tr>', html)
    assert found
    assert float(found.group(1)) == pytest.approx(latency.delta, rel=1e-12)
    cells = found.group(0)
    assert f"<td>{fmt_delta(latency.delta, 's')}</td>" in cells
    assert escape(deltas.METHOD_TEXT["paired"]) in cells and latency.method == "paired"
    assert f"<td>{'yes' if latency.significant else 'no'}</td></tr>" in cells
    assert "<td>workload.fl.model_parameters</td><td>250000</td><td>100000</td>" in html
    assert "The baseline is another scenario" not in html
    assert '"name":"baseline: base"' in html and '"name":"round latency, baseline"' in html  # charts: both runs


def test_a_sim_both_run_is_its_concurrent_half_against_its_sequential_one(tmp_path, capsys):
    """`pqtwin report DIR` of a `pqtwin sim --mode both` run (no run of its own there, two below it): the
    concurrent half against the sequential half, with the reduction its modes.json holds; with --baseline the
    whole is refused in one line naming the halves, and a damaged modes.json leaves only the reduction's line out."""
    both = tmp_path / "both"
    assert cli.run(["sim", str(PAPER), *SMALL, "--mode", "both", "--out", str(both)]) == 0
    page = write_report(capsys, both, tmp_path / "r.html")
    modes = json.loads(RunLayout(both).modes.read_text())
    red = modes["round_latency_s"]["reduction"] * 100
    assert f"reduction concurrent vs sequential {red:+.1f} %" in page and "2 replications." in page
    assert "Baseline: sequential (paper-3node, sequential mode, 2 replications" in page
    assert "paired over replications (same seed" in page  # the deltas: one seed, common random numbers
    code, _, err = run_cli(capsys, "report", both, "--out", tmp_path / "x.html", "--baseline", both / "sequential")
    assert code == 2 and err.count("\n") == 1 and f"give {both}/sequential or {both}/concurrent" in err
    RunLayout(both).modes.write_text('{"round_latency_s": {"reduction": NaN}}')
    page = write_report(capsys, both, tmp_path / "r.html")
    assert "reduction concurrent vs sequential" not in page and "what-if: concurrent" in page


def test_a_baseline_of_another_scenario_is_named(runs, tmp_path, capsys):
    code, _, err = run_cli(capsys, "report", runs["base"], "--baseline", runs["other"], "--out", tmp_path / "r.html")
    assert code == 0, err
    assert err.startswith("warning:") and "'localhost'" in err
    html = (tmp_path / "r.html").read_text()
    assert "The baseline is another scenario (&#x27;localhost&#x27;; the what-if is &#x27;paper-3node&#x27;)" in html
    assert "<td>deployment.hosts.local</td>" in html and "<td>name</td><td>localhost</td><td>paper-3node</td>" in html


def test_the_reproduce_command_reproduces(runs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["other"], run_dir)
    html = write_report(capsys, run_dir, tmp_path / "r.html")
    argv = shlex.split(code_of(html, "reproduce-run"))
    assert argv[:2] == ["pqtwin", "sim"] and "concurrent" in argv
    code, _, err = run_cli(capsys, *argv[1:])
    assert code == 0, err
    a, b = (read_summary(RunLayout(d).summary) for d in (run_dir, tmp_path / "run-rerun"))
    assert a.round_latency_s.mean == b.round_latency_s.mean and a.crypto_share == b.crypto_share
    machine = {"wall_s", "peak_rss_bytes", "scenario_file"}  # this machine's, and where the scenario was read
    assert a.model_dump(exclude=machine) == b.model_dump(exclude=machine)


def broken(tmp_path: Path, runs: dict[str, Path], what: str) -> Path:
    """A copy of the baseline run with one file damaged."""
    d = tmp_path / f"broken-{what}"
    shutil.copytree(runs["base"], d)
    {"summary": RunLayout(d).summary, "spans": RunLayout(d).spans}[what].write_text('{"scenario": ')
    return d


@pytest.mark.parametrize(
    ("case", "named"),
    [("missing", "RUN_DIR: no such directory"), ("file", "is a file, not a run directory"),
     ("empty", "is not a run directory (no summary.json)"), ("summary", "summary.json: (top): Invalid JSON"),
     ("spans", "spans.parquet: cannot read spans"), ("baseline", "--baseline: no such directory"),
     ("out", "--out: no directory"), ("out-dir", "--out:")],
)  # fmt: skip
def test_mistakes_are_one_line(runs, tmp_path, capsys, case, named):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    run_dir, out, extra = runs["base"], tmp_path / "r.html", []
    if case in ("missing", "file", "empty"):
        run_dir = {"missing": tmp_path / "nope", "file": tmp_path / "a-file", "empty": tmp_path / "empty"}[case]
    elif case in ("summary", "spans"):
        run_dir = broken(tmp_path, runs, case)
    elif case == "baseline":
        extra = ["--baseline", str(tmp_path / "nope")]
    else:
        out = tmp_path / "no-such-dir" / "r.html" if case == "out" else tmp_path
    code, stdout, err = run_cli(capsys, "report", run_dir, "--out", out, *extra)
    lines = err.strip().splitlines()
    assert code == 2, (code, stdout, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert "Traceback" not in stdout + err and not out.is_file()


@pytest.mark.parametrize(("option", "name"), [("--out", "summary.json"), ("--pdf", "spans.parquet"),
                                              ("--out", "scenario.yaml")])  # fmt: skip
def test_the_report_never_replaces_a_file_of_a_run_it_reads(runs, tmp_path, capsys, option, name):
    """`--out RUN/summary.json` wrote the report over the run's summary (a slip of tab completion lost the run);
    a file of the run or of the baseline is refused, an earlier report in the run directory is replaced."""
    d = tmp_path / "run"
    shutil.copytree(runs["base"], d)
    before = (d / name).read_bytes()
    target = {"--out": ["--out", d / name], "--pdf": ["--out", tmp_path / "r.html", "--pdf", d / name]}[option]
    for args in (["report", d, *target], ["report", runs["whatif"], "--baseline", d, *target]):
        code, _, err = run_cli(capsys, *args)
        assert (code, err) == (
            2,
            f"error: {option}: {d / name} is a file of the run directory {d}: give a new file "
            f"name, e.g. {d / ('report.html' if option == '--out' else 'report.pdf')}\n",
        )
        assert (d / name).read_bytes() == before
    write_report(capsys, d, d / "report.html")
    assert "<html" in write_report(capsys, d, d / "report.html")


def test_spans_with_empty_values_are_one_line(runs, tmp_path, capsys):
    """A spans file whose op column is empty read as a table: the report's crypto share failed ('float' object has
    no attribute 'split', an internal error)."""
    d = tmp_path / "empty-ops"
    shutil.copytree(runs["base"], d)
    spans = read_spans(RunLayout(d).spans)
    pq.write_table(pa.Table.from_pandas(spans.assign(op=None), preserve_index=False), RunLayout(d).spans)
    code, _, err = run_cli(capsys, "report", d, "--out", tmp_path / "r.html")
    assert (code, err) == (2, f"error: RUN_DIR: {RunLayout(d).spans}: column 'op' has empty values\n")
    assert not (tmp_path / "r.html").exists()


def test_the_app_builds_the_report_from_a_run_in_memory(runs, tmp_path):
    s = load_scenario(PAPER, ["workload.fl.rounds=2"])
    result = simulate(s, "concurrent", 3, 2)
    run = report.ReportRun(s, result.summary, result.spans, label="in memory")
    base = report.load_run(runs["base"])
    command = "pqtwin sim scenarios/paper-3node.yaml --set workload.fl.rounds=2 --mode concurrent --seed 3"
    html = report.report_html(run, base, command)
    assert code_of(html, "reproduce-run") == command
    assert code_of(html, "reproduce-baseline").startswith(f"pqtwin sim {runs['base']}/scenario.yaml")
    assert code_of(html, "reproduce-report") == f"pqtwin report RUN_DIR --baseline {runs['base']} --out report.html"
    assert '"name":"what-if: in memory"' in html and "<td>(run) mode</td><td>sequential</td><td>concurrent</td>" in html
    with pytest.raises(AttributeError):
        run.label = "x"  # type: ignore[misc]


def test_a_twin_run_says_it_was_measured(runs, tmp_path, capsys):
    d = tmp_path / "twin"
    shutil.copytree(runs["other"], d)
    summary = json.loads(RunLayout(d).summary.read_text())
    summary |= {"backend": "local", "state": "completed", "engine": None}
    RunLayout(d).summary.write_text(json.dumps(summary))
    shutil.rmtree(d / RunLayout.PROFILES)  # as an older run directory: no copies of its profiles
    html = write_report(capsys, d, tmp_path / "r.html")
    assert "Measured on the hardware twin as processes on one machine (local backend)" in html
    assert code_of(html, "reproduce-run").startswith(f"pqtwin hw run {d}/scenario.yaml --backend local --mode ")
    assert "Not available: " in html and "profile file not found" in html  # the settings still read


# --- PDF ----------------------------------------------------------------------------------------------------


def pdf_page_texts(data: bytes) -> list[str]:
    """Each page's text (spaces removed, ligatures undone), decoded through the fonts' ToUnicode maps: Chromium
    writes uncompressed objects with Flate-compressed streams and Identity-H fonts."""
    objs = {}
    for m in re.finditer(rb"(\d+) 0 obj\s*(.*?)endobj", data, re.S):
        head, sep, rest = m.group(2).partition(b"stream")
        raw = rest.lstrip(b"\r\n")[: rest.lstrip(b"\r\n").rfind(b"endstream")] if sep else b""
        objs[int(m.group(1))] = (head, zlib.decompress(raw) if b"/FlateDecode" in head else raw)
    maps = {
        n: _cmap(objs[int(ref)][1]) for n, (h, _) in objs.items() for ref in re.findall(rb"/ToUnicode (\d+) 0 R", h)
    }
    pages = []
    for head, _ in objs.values():
        if re.search(rb"/Type\s*/Page(?![a-zA-Z])", head):
            fonts = {k: maps.get(int(v), {}) for k, v in re.findall(rb"/(F\d+) (\d+) 0 R", head)}
            text, font = [], {}
            for c in re.findall(rb"/Contents (\d+) 0 R", head):
                for tok in re.finditer(rb"/(F\d+) [\d.]+ Tf|<([0-9A-Fa-f]*)>", objs[int(c)][1]):
                    if tok.group(1):
                        font = fonts.get(tok.group(1), {})
                    else:
                        hx = tok.group(2)
                        text.append("".join(font.get(int(hx[i : i + 4], 16), "") for i in range(0, len(hx), 4)))
            pages.append(re.sub(r"\s", "", "".join(text)).replace("ﬁ", "fi").replace("ﬂ", "fl"))
    return pages


def _cmap(stream: bytes) -> dict[int, str]:
    table = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", stream, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            table[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be", "replace")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", stream, re.S):
        for lo, hi, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            for i, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                table[code] = chr(int(dst, 16) + i)
    return table


def have_chromium() -> bool:
    return report.CHROMIUM.is_file() or bool(os.environ.get("PQTWIN_CHROMIUM"))


@pytest.mark.skipif(not have_chromium(), reason=f"{report.CHROMIUM} is missing (apt-get install chromium)")
def test_pdf_shows_the_rendered_report(runs, tmp_path, capsys):
    pdf = tmp_path / "r.pdf"
    code, out, err = run_cli(capsys, "report", runs["whatif"], "--baseline", runs["base"], "--out", tmp_path / "r.html",
                             "--pdf", pdf)  # fmt: skip
    assert code == 0, err
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    pages = pdf_page_texts(data)
    assert len(pages) >= 3 and f"({len(pages)} pages)" in out
    text = "".join(pages)
    for words in ("paper-3node—sequentialmode", "Provenanceoftheprofilevalues", "ML-DSA-65.sign", "roundlatency",
                  "What-ifagainstthebaseline", "Reproduce"):  # fmt: skip
        assert words in text, words
    # the charts were drawn before printing: Plotly's titles and axis labels are text in the PDF
    assert "Phasebreakdown:meanextentperround" in text and "msperround(95%CIoverreplications)" in text


def test_pdf_without_chromium_is_one_line(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PQTWIN_CHROMIUM", str(tmp_path / "no-chromium"))
    code, _, err = run_cli(capsys, "report", runs["base"], "--out", tmp_path / "r.html", "--pdf", tmp_path / "r.pdf")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --pdf: PQTWIN_CHROMIUM"), err
    assert (tmp_path / "r.html").is_file() and not (tmp_path / "r.pdf").exists()


@pytest.mark.parametrize(("script", "message"), [("echo 'GPU process crashed' >&2; exit 3", "exit code 3"),
                                                 ("sleep 60", "did not finish printing in 1 s")])  # fmt: skip
def test_a_failing_chromium_is_one_line(tmp_path, monkeypatch, script, message):
    fake = tmp_path / "chromium"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PQTWIN_CHROMIUM", str(fake))
    (tmp_path / "r.html").write_text("<html></html>")
    with pytest.raises(UserError) as exc:
        report.write_pdf(tmp_path / "r.html", tmp_path / "r.pdf", timeout_s=1)
    assert len(exc.value.lines) == 1 and exc.value.lines[0].startswith("--pdf: ") and message in exc.value.lines[0]
    assert not (tmp_path / "r.pdf").exists()


def test_a_measured_runs_duplicated_spans_are_counted_once_in_the_report_and_said(runs, tmp_path, capsys):
    """Every row of a measured run's spans.parquet written twice: compare and calibrate counted each once (and said
    so), the report counted each twice (each round's latency pooled twice) without a word."""
    import pandas as pd

    from sim import contract

    hw = tmp_path / "hw"
    shutil.copytree(runs["base"], hw)
    summary = json.loads((hw / "summary.json").read_text())
    (hw / "summary.json").write_text(json.dumps({**summary, "backend": "local", "state": "completed"}))
    once = report.load_run(hw)
    df = read_spans(hw / "spans.parquet")
    contract.write_spans(pd.concat([df, df], ignore_index=True), hw / "spans.parquet")
    twice = report.load_run(hw)
    assert len(twice.spans) == len(once.spans) == len(df) and not once.left_out
    (note,) = twice.left_out
    assert note.startswith(f"{hw / 'spans.parquet'}: {len(df):,} of {2 * len(df):,} spans left out")
    html = write_report(capsys, hw, tmp_path / "r.html")
    assert escape(note) in html or note in unescape(html)


def _fitted_provenance(tmp_path, overheads: dict, sets: tuple[str, ...] = ()) -> dict[str, str]:
    """The report's provenance rows (op -> cost shown) of a one-round run priced by ci-x86 with ``overheads``."""
    from sim.profile import write_profile

    data = load_profile(SCENARIOS / "profiles" / "ci-x86.yaml").model_dump(mode="json", exclude_none=True)
    data["overheads"] = overheads
    write_profile(data, tmp_path / "p.yaml")
    s = load_scenario(SCENARIOS / "localhost.yaml", ["workload.fl.rounds=1", *sets], tmp_path / "p.yaml")
    result = simulate(s, "sequential", 1, 1)
    run = report.ReportRun(s, result.summary, result.spans, label="fitted")
    prof = s.host_profile(s.deployment.hosts[0].name)
    return {r[0]: r[1] for r in report.provenance_rows(run, prof, [h.name for h in s.deployment.hosts], False)}


def test_a_fitted_extra_per_size_is_shown_per_size(tmp_path):
    """A profile whose message overhead has an extra per size (``Overhead.extra_by_bytes``) is shown as that table
    in the report's provenance, not as the line it replaces."""
    extra = [[53_000, 4e-5], [1_000_000, 2.2e-4], [8_000_000, -1e-4]]
    rows = _fitted_provenance(tmp_path, {"decrypt": {"per_call_s": 4e-5, "per_byte_s": 2e-10, "source": "test",
                                                     "tag": "F", "extra_by_bytes": extra}})  # fmt: skip
    shown = rows["overhead: every decrypt"]
    assert "40.0 µs at 53,000 B" in shown and "220 µs at 1,000,000 B" in shown and "−100 µs at 8,000,000 B" in shown
    assert "per byte" not in shown


def test_a_bursts_first_call_extra_is_shown_beside_the_overhead(tmp_path):
    """A fitted cold extra (``Overhead.cold_s``) is in the provenance: what a burst's first call costs more."""
    rows = _fitted_provenance(tmp_path, {"decrypt": {"per_call_s": 4e-5, "source": "test", "tag": "F",
                                                     "cold_per_call_s": 2e-5, "cold_per_byte_s": 7e-11}})  # fmt: skip
    assert "a burst's first call 20.0 µs + " in rows["overhead: every decrypt"]
    assert (
        "first call"
        not in _fitted_provenance(tmp_path / "plain", {"decrypt": {"per_call_s": 4e-5, "source": "t", "tag": "F"}})[
            "overhead: every decrypt"
        ]
    )


def test_a_constant_fitted_per_model_size_is_shown_at_the_runs_size_with_its_table(tmp_path):
    """A fixed-size code path's constant by model size (``Overhead.per_call_by_parameters``): the report shows the
    constant the run was priced with, at its model's size, and the table it came from."""
    by_size = [[12_500, 2e-5], [200_000, 8e-5]]
    rows = _fitted_provenance(tmp_path, {"decaps": {"per_call_s": 5e-5, "source": "test", "tag": "F",
                                                    "per_call_by_parameters": by_size}},
                              ("workload.fl.model_parameters=200000",))  # fmt: skip
    shown = rows["overhead: every decaps"]
    assert "+ 80.0 µs +" in shown and "20.0 µs at 12,500" in shown and "80.0 µs at 200,000 parameters" in shown


def test_a_training_price_on_the_line_between_two_sizes_shows_the_factor_it_resolved_and_its_range(tmp_path):
    """A training overhead fitted between two model sizes (``Overhead.linear_between_parameters``): the report
    shows the factor the run was priced with at its model's size (the fitted one at either end), and the range."""
    train = {"factor": 1.2, "per_call_s": 3e-4, "source": "test", "tag": "F",
             "linear_between_parameters": [12_500, 250_000]}  # fmt: skip
    inside = _fitted_provenance(tmp_path, {"train": train}, ("workload.fl.model_parameters=50000",))
    at_end = _fitted_provenance(tmp_path, {"train": train}, ("workload.fl.model_parameters=250000",))
    assert "×1.2 +" in at_end["overhead: every train"]
    shown = inside["overhead: every train"]
    assert "between 12,500 and 250,000 parameters on the line between their prices" in shown
    assert "×1.2 +" not in shown  # ci-x86's points bend at 50 k: the line's factor differs
