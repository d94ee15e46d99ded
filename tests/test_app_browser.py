"""The app in a real browser: `streamlit run app.py` as a subprocess, Debian's Chromium driven by Playwright.

For every page: click it in the sidebar, wait until its Plotly charts have rendered, check that no exception
and no error box is shown, and save a screenshot to runs/test-artifacts/app-<page>.png (and the test's tmp
dir). Needs /usr/bin/chromium (`apt-get install -y --no-install-recommends chromium`); nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_app import LOCAL, make_runs, partial_profile

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


def screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1500, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(400)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1500, "height": 1000})


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


def intended_error(page, tmp_path: Path) -> None:
    """An algorithm the host profile cannot price: one error line in the page, no exception."""
    page.locator('[data-testid="stSidebar"] label').filter(has_text="Explore").first.click()
    settle(page, *PAGES["Explore"])
    sidebar = page.locator('[data-testid="stSidebar"]')
    steps = (("Scenario", "localhost.yaml", "localhost · sequential"),
             ("Host profile", LOCAL, "localhost · sequential"),
             ("Signature", "Falcon-512 (PQC)", "no cost for"))  # fmt: skip
    for label, option, shown in steps:  # the scenario, a profile without Falcon (runs/), then the signature
        choose(page, sidebar.locator('[data-testid="stSelectbox"]').filter(has_text=label).first, option)
        page.wait_for_function(
            f"() => document.querySelector('[data-testid=\"stMain\"]').innerText.includes({shown!r})",
            timeout=WAIT_MS,
            polling=100,
        )
        page.wait_for_function(SETTLED, arg=0, timeout=WAIT_MS, polling=100)
    error = page.locator('[data-testid="stAlertContentError"]')
    assert error.count() == 1 and "no cost for Falcon-512.keygen" in error.inner_text()
    assert page.locator('[data-testid="stException"]').count() == 0
    shot = tmp_path / "app-explore-error.png"
    screenshot(page, shot)
    shutil.copy(shot, ARTIFACTS / shot.name)


def sweep_in_browser(page, tmp_path: Path) -> None:
    """Press Run on the Sweep page: the engine runs in the background, the page follows it to the charts."""
    page.locator('[data-testid="stSidebar"] label').filter(has_text="Sweep").first.click()
    settle(page, *PAGES["Sweep"])
    page.get_by_role("button", name="Run").click()
    page.wait_for_function(SETTLED, arg=4, timeout=180_000, polling=250)  # heatmap, effects, sensitivity, Pareto
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    shot = tmp_path / "app-sweep-results.png"
    screenshot(page, shot)
    shutil.copy(shot, ARTIFACTS / shot.name)


def test_every_page_in_chromium(tmp_path):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y --no-install-recommends "
                    "chromium); this test never downloads a browser")  # fmt: skip
    from playwright.sync_api import sync_playwright

    runs = partial_profile(make_runs(tmp_path / "runs"), ("Falcon-512",))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    env = {**os.environ, "PQTWIN_RUNS_DIR": str(runs)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, server, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(url, timeout=WAIT_MS)
                settle(page, *PAGES["Explore"])
                for name, (title, charts) in PAGES.items():
                    page.locator('[data-testid="stSidebar"] label').filter(has_text=name).first.click()
                    settle(page, title, charts)
                    assert page.locator('[data-testid="stException"]').count() == 0, name
                    errors = page.locator('[data-testid="stAlertContentError"]')
                    assert errors.count() == 0, f"{name}: {errors.all_inner_texts()}"
                    shot = tmp_path / f"app-{name.split()[0].lower()}.png"
                    screenshot(page, shot)
                    shutil.copy(shot, ARTIFACTS / shot.name)
                sweep_in_browser(page, tmp_path)
                intended_error(page, tmp_path)
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    logged = log.read_text()
    assert "Traceback" not in logged, logged[-3000:]
