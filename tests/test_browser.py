"""The app in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Skipped, with the reason shown, where Chromium or Playwright is absent; `.ci/run`
installs Chromium so CI runs it. Screenshots go to $RS_SCREENSHOT_DIR when set
(``RS_SCREENSHOT_DIR=docs make test`` refreshes the README's), else to a temp dir.
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

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"streamlit did not start: {proc.stdout.read().decode()[-2000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1300})
        yield pg
        browser.close()


def _shot(page, name: str, tmp_path_factory) -> Path:
    out = Path(os.environ.get("RS_SCREENSHOT_DIR") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_home_page_in_chromium(app_url, page, tmp_path_factory):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(app_url)
    page.get_by_text("Radius calculator").wait_for(timeout=30_000)
    table = page.locator("[data-testid='stTable']")
    table.wait_for()
    assert "Cohen et al. (tight)" in table.inner_text()
    # Changing pA reruns the page with the engine's radius: pA = 0.8, pB = 0.1, σ = 0.25.
    box = page.get_by_label("pA (top-class probability)")
    box.fill("0.8000")
    box.press("Enter")
    page.get_by_text("0.2654").wait_for(timeout=15_000)  # 0.25/2 · (Φ⁻¹(0.8) − Φ⁻¹(0.1))
    path = _shot(page, "home.png", tmp_path_factory)
    assert path.stat().st_size > 20_000
    # Nothing fetched from anywhere but the app itself (no fonts, icons or telemetry).
    assert requests and all(u.startswith(app_url) or u.startswith("data:") or u.startswith("blob:") for u in requests), \
        [u for u in requests if not u.startswith(app_url)]


def test_bounds_page_in_chromium(app_url, page, tmp_path_factory):
    page.goto(app_url)
    page.get_by_role("link", name="Bounds").first.click()
    page.get_by_text("Why Cohen's bound is tight").wait_for(timeout=30_000)
    box = page.get_by_label("σ (noise level)")
    box.fill("1.000")
    box.press("Enter")
    page.get_by_text("2.3263").wait_for(timeout=15_000)  # Cohen's radius at pA = 0.99, σ = 1
    page.locator("[data-testid='stPlotlyChart']").first.wait_for()
    page.wait_for_timeout(1500)  # let the charts draw before the screenshot
    assert page.locator("[data-testid='stPlotlyChart']").count() == 2
    _shot(page, "bounds.png", tmp_path_factory)


def test_certified_accuracy_page_in_chromium(app_url, page, tmp_path_factory):
    page.goto(f"{app_url}/Certified_accuracy")
    page.get_by_text("Lower bound on the true certified accuracy").wait_for(timeout=30_000)
    table = page.locator("[data-testid='stTable']").first
    assert "cifar10-partial · cifar_cnn · σ = 0.50" in table.inner_text()  # the first indexed model
    # Upload Cohen et al.'s log through the real file input.
    ref = ROOT.parent / "shared" / "reference" / "cohen2019" / "data" / "certify" / "cifar10" / "resnet110"
    if ref.exists():
        page.locator("input[type='file']").set_input_files(str(ref / "noise_0.50" / "test" / "sigma_0.50"))
        page.get_by_text("σ = 0.50 (sigma_0.50)").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    _shot(page, "certified_accuracy.png", tmp_path_factory)
