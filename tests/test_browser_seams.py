"""Issue 27's small seams, in a real headless Chromium: what the browser draws and sends, which AppTest cannot see —
the Compare σ plot's log axis labels (Plotly draws them in the browser) and what a number box sends for "abc"."""

from __future__ import annotations

import pytest
from browser_kit import NEEDS_CHROMIUM, shot, wait_text
from oracles import digit_png

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM


def test_compare_sigma_axis_reads_the_sigma_values(app_url, page, tmp_path_factory):
    png = tmp_path_factory.mktemp("upload") / "one.png"
    png.write_bytes(digit_png())
    page.goto(f"{app_url}/Compare_sigma?n_max=500&batch=500")
    wait_text(page, "Compare σ on one input")
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(str(png))
    box = page.get_by_role("textbox", name="σ values (comma-separated)")
    box.fill("0.12, 0.25, 0.5, 1")
    box.press("Enter")
    wait_text(page, "4 σ · α = 0.001")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_text(page, "Best σ =", timeout=120_000)
    chart = page.locator("[data-testid='stPlotlyChart']").filter(has_text="Certified radius against σ")
    chart.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)  # let Plotly lay out the ticks
    labels = [t.strip() for t in chart.locator(".xtick text").all_text_contents()]
    # Only the σ compared, as typed: Plotly's own log ticks would add minor ticks labelled "2", "5" (σ = 0.5 as "5").
    assert labels == ["0.12", "0.25", "0.5", "1"], labels
    chart.scroll_into_view_if_needed()
    path = shot(page, "compare_sigma_axis.png", tmp_path_factory)
    assert path.stat().st_size > 20_000
    # Switching the mode marks the result outdated in words.
    page.get_by_text("Each σ on its own: α on each").click()
    wait_text(page, "best-σ mode (was on, now off)")
    assert page.get_by_text("True → False").count() == 0


def test_letters_typed_for_sigma_are_not_reported_as_zero(app_url, page):
    page.goto(app_url)
    box = page.get_by_role("spinbutton", name="σ (noise level)")
    box.wait_for(timeout=60_000)
    box.click()
    box.press("Control+a")
    page.keyboard.type("abc")
    box.press("Enter")
    wait_text(page, "σ is empty (a number box keeps only a number: text that is not one is dropped)")
    assert page.get_by_text("got 0").count() == 0
    assert box.input_value() == ""  # the box shows what the message says: nothing, not a 0 nobody typed
