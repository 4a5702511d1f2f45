"""The Certify page's search for an adversarial example in a real Chromium: certify a drawn-style "1", search, and
see the interval [R, D], the line picture, the adversarial image with its amplified perturbation, the adversarial
input's own certificate, and the attack in the downloaded JSON."""

import json
from pathlib import Path

import pytest
from browser_kit import NEEDS_CHROMIUM, set_number, shot, wait_text
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM


def test_certify_then_search_shows_the_interval_the_images_and_the_perturbation(app_url, page, tmp_path_factory):
    png = tmp_path_factory.mktemp("upload") / "one.png"
    img = Image.new("L", (120, 120), 255)
    img.paste(0, (55, 15, 68, 105))  # a dark "1" on white paper
    img.save(png)
    page.goto(f"{app_url}/Certify")
    wait_text(page, "Certify an input")
    page.locator("[data-testid='stMain'] [data-testid='stRadio']").first.get_by_text("Upload", exact=True).click()
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(str(png))
    wait_text(page, "What the model sees")
    set_number(page, "n max (estimation)", "10000")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_text(page, "is certified within", timeout=120_000)
    search = page.get_by_role("button", name="Search for an adversarial example", exact=True)
    search.wait_for(timeout=30_000)
    search.click()
    wait_text(page, "The adversarial input certified too", timeout=180_000)
    main = page.locator("[data-testid='stMain']")
    text = main.inner_text()
    assert "the attack found an adversarial example at D = " in text and "Soundness alarm" not in text
    assert "perturbation δ ×" in text and "adversarial x + δ" in text
    page.set_viewport_size({"width": 1280, "height": 4200})  # Streamlit scrolls inside the page: a tall window
    page.wait_for_timeout(2000)  # let the charts and images draw
    line = page.locator("[data-testid='stPlotlyChart']").last.inner_text()
    assert "R = " in line and "D = " in line
    path = shot(page, "certify_attack.png", tmp_path_factory)
    assert path.stat().st_size > 10_000
    page.set_viewport_size({"width": 1280, "height": 1300})
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the certificate (JSON)").click()
    doc = json.loads(Path(info.value.path()).read_text())
    sec = doc["attack"]
    assert sec["result"]["found"] and sec["soundness_alarm"] is False
    assert sec["interval"]["adversarial_at"] >= doc["certificate"]["radius"]
    assert sec["adversarial_certificate"]["prediction"] != doc["certificate"]["prediction"]
