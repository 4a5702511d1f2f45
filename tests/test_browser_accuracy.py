"""The Certified accuracy page in Chromium: same-named logs side by side, and "compute here" as a job with Stop."""

import re

import pytest
from browser_kit import NEEDS_CHROMIUM, set_number, shot, wait_chart, wait_text

from rs_core.data import data_dir

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM

HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime"


def _log(k: int) -> bytes:
    body = [f"{i}\t{i % 10}\t{i % 10}\t{0.1 * (i % (3 + k)):.3f}\t1\t0:00:01" for i in range(20)]
    return "\n".join([HEADER, *body]).encode()


def _no_traceback(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "Traceback" not in text and "zip() argument" not in text and "/work/" not in text


def test_four_same_named_logs_are_plotted_side_by_side(app_url, page, tmp_path_factory):
    """Issue 27, item 3: four uploads named sigma_0.25 (Cohen et al.'s naming in every folder; the last one the
    same file as the third) through the real file input: four rows, four legend entries, no traceback."""
    page.goto(f"{app_url}/Certified_accuracy")
    wait_text(page, "Lower bound on the true certified accuracy")
    page.wait_for_timeout(1500)  # a fresh server's first visit reruns through app.py: let that settle
    files = [{"name": "sigma_0.25", "mimeType": "text/plain", "buffer": _log(k)} for k in (0, 1, 2, 2)]
    page.locator("[data-testid='stFileUploader']").filter(has_text="Upload certify logs").locator(
        "input[type='file']").set_input_files(files)
    wait_text(page, "σ = 0.25 (sigma_0.25) #4", timeout=90_000)
    wait_chart(page, "σ = 0.25 (sigma_0.25) #4 (n = 20)")
    _no_traceback(page)
    page.locator("[data-testid='stTable']").first.scroll_into_view_if_needed()
    table = page.locator("[data-testid='stTable']").first.inner_text()
    labels = ["σ = 0.25 (sigma_0.25)", *(f"σ = 0.25 (sigma_0.25) #{j}" for j in (2, 3, 4))]
    for label in labels:
        assert label in table
    legend = page.locator("[data-testid='stPlotlyChart'] .legendtext").all_text_contents()
    assert legend == [f"{x} (n = 20)" for x in labels]
    shot(page, "accuracy_same_named_logs.png", tmp_path_factory)


@pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(), reason=f"no MNIST under {data_dir()}")
def test_compute_here_shows_progress_keeps_the_page_usable_and_stops(app_url, page, tmp_path_factory):
    page.goto(f"{app_url}/Certified_accuracy")
    wait_text(page, "Lower bound on the true certified accuracy")
    page.get_by_text("Compute certified accuracy here, on k test images").click()
    set_number(page, "k test images (evenly spaced)", "50")
    set_number(page, "N (estimation samples)", "10000")  # long enough (~30 s) to be stopped midway
    page.get_by_role("button", name="Certify", exact=True).click()
    wait_text(page, "of 50 test images", timeout=30_000)
    wait_text(page, " left · ", timeout=30_000)  # the time left, once a first batch is timed
    # While it runs only the progress redraws: the rest of the page is not greyed out (stale). A loaded machine may
    # still be drawing the tables below the progress: wait for them rather than read them once.
    tables = page.locator("[data-testid='stElementContainer']:has([data-testid='stTable'])")
    for _ in range(60):
        if tables.count() == 3:
            break
        page.wait_for_timeout(500)
    assert tables.count() == 3  # certified, its lower bound, and the shipped attack log's empirical accuracy
    for _ in range(5):
        assert page.locator("[data-testid='stElementContainer'][data-stale='true']:has([data-testid='stTable'])"
                            ).count() == 0
        page.wait_for_timeout(300)
    page.get_by_role("button", name="Stop", exact=True).scroll_into_view_if_needed()
    shot(page, "accuracy_compute_here_running.png", tmp_path_factory)
    page.get_by_text(re.compile(r"certified [1-9][0-9]* of 50 test images")).first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_text(page, "Stopped after", timeout=15_000)
    _no_traceback(page)
    table = ""
    for _ in range(100):  # the rerun that adds the stopped run's row may land after "Stopped after" (a loaded CI)
        table = page.locator("[data-testid='stTable']").first.inner_text()
        if "· here, k = " in table:
            break
        page.wait_for_timeout(300)
    assert "· here, k = " in table and "of 50, N = 10000" in table
    page.locator("[data-testid='stTable']").first.scroll_into_view_if_needed()
    shot(page, "accuracy_compute_here_stopped.png", tmp_path_factory)


def test_the_shipped_attack_log_draws_a_dashed_empirical_curve_above_the_certified_one(app_url, page, tmp_path_factory):
    """Issue 29, deliverable 3: the MNIST σ = 0.5 attack log is drawn dashed next to its certify log, with the gap
    table, in a real browser."""
    page.goto(f"{app_url}/Certified_accuracy")
    wait_text(page, "Lower bound on the true certified accuracy")
    chart = wait_chart(page, "attack σ = 0.50: empirical (n = 500)")
    dashes = chart.locator(".scatterlayer path.js-line").evaluate_all("ps => ps.map(p => p.style.strokeDasharray || '')")
    # Plotly writes "dash" as 9px,9px and the lower bounds' "dot" as 3px,3px: one dashed curve, the attack's.
    assert sum(d.replace(" ", "") == "9px,9px" for d in dashes) == 1, dashes
    wait_text(page, "Empirical robust accuracy")
    table = page.locator("[data-testid='stTable']").last.inner_text()
    assert "attack σ = 0.50" in table and "gap" in table
    chart.scroll_into_view_if_needed()
    path = shot(page, "certified_accuracy_attack.png", tmp_path_factory)
    assert path.stat().st_size > 20_000
