"""What the Chromium tests (``tests/test_browser*.py``) share: the app in its own process, the browser's settings,
screenshots, and the small steps every page test takes.

The fixtures ``app_url`` (one server per test module) and ``page`` (one Chromium page per module) are in
``tests/conftest.py``; every ``test_browser*.py`` file shares one xdist worker (marker ``browser``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# For a browser test module: ``pytestmark = browser_kit.NEEDS_CHROMIUM`` (skipped, with the reason, without it).
NEEDS_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")

SERVER: dict[str, int] = {}  # the module server's process id, for tests that check what the server does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(env: dict[str, str] | None = None, args: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """The app in its own process (streamlit run app.py), with ``env`` added to the environment and ``args`` to the
    command line; yields (url, pid)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", *(args or [])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
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
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def shot(page, name: str, tmp_path_factory) -> Path:
    """A full-page screenshot into $RS_SCREENSHOT_DIR (``RS_SCREENSHOT_DIR=docs make test`` refreshes the README's),
    else a temp dir."""
    out = Path(os.environ.get("RS_SCREENSHOT_DIR") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_text(page, text: str, timeout: float = 60_000) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)


def wait_chart(page, text: str, timeout: float = 60_000):
    """The first Plotly chart whose drawn text contains `text`, once Plotly has drawn it.

    A chart's element exists before Plotly lays out its SVG (and later still on a loaded machine), so a fixed pause
    before reading a legend is a race: wait for the text itself.
    """
    chart = page.locator("[data-testid='stPlotlyChart']").filter(has_text=text).first
    chart.scroll_into_view_if_needed(timeout=timeout)
    chart.wait_for(timeout=timeout)
    return chart


def set_number(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(400)


def draw_one(page, canvas) -> None:
    """Draw a "1" with the mouse on the drawing canvas (a slightly slanted stroke from the top down)."""
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(x0 + k * 0.3, y0 + k * box["height"] * 0.035)
    page.mouse.up()
