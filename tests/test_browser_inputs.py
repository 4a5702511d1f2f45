"""Issue 27: an input choice survives page switches and model menu round trips in a real Chromium — an uploaded
image through Certify → Bounds → Certify and through the Model menu's "Your model file…" and back, with no outdated
mark, and the certificate after the round trip is for the same image (the same sha256s in the downloaded JSON)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from browser_kit import NEEDS_CHROMIUM, draw_one, set_number, shot, wait_text

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM

OUTDATED = "This result is for an earlier choice"


def _digit_png(path: Path) -> Path:
    from PIL import Image

    img = Image.new("L", (160, 160), 255)
    img.paste(0, (72, 20, 90, 140))  # a dark "1" on white paper
    img.save(path)
    return path


def _main(page):
    return page.locator("[data-testid='stMain']")


def _certify_and_download(page) -> dict:
    """Press Start, wait for the result, and return the downloaded certificate."""
    page.get_by_role("button", name="Start", exact=True).click()
    _main(page).get_by_text("is certified within", exact=False).first.wait_for(timeout=120_000)
    page.wait_for_timeout(1500)  # a few more reruns: an outdated mark would show by now
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the certificate (JSON)").click()
    return json.loads(Path(info.value.path()).read_text())


def _current(page) -> None:
    """The page shows the kept upload, its result is not marked outdated, and Start is enabled."""
    wait_text(page, "What the model sees — upload one.png", timeout=30_000)
    page.wait_for_timeout(1500)
    text = _main(page).inner_text()
    assert OUTDATED not in text, text
    assert "In use: one.png" in text, text
    assert page.get_by_role("button", name="Start", exact=True).is_enabled()


def test_an_uploaded_image_survives_a_page_switch_and_a_model_menu_round_trip(app_url, page, tmp_path_factory):
    png = _digit_png(tmp_path_factory.mktemp("inputs") / "one.png")
    file_sha = hashlib.sha256(png.read_bytes()).hexdigest()
    page.goto(f"{app_url}/Certify")
    wait_text(page, "Certify an input")
    main, sidebar = _main(page), page.locator("[data-testid='stSidebar']")
    main.locator("[data-testid='stRadio']").first.get_by_text("Upload", exact=True).click()
    wait_text(page, "Start is disabled: upload an image")  # a disabled Start says why
    main.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(str(png))
    wait_text(page, "What the model sees — upload one.png")
    set_number(page, "n max (estimation)", "2000")
    first = _certify_and_download(page)
    assert first["input"]["file_sha256"] == file_sha

    # Certify → Bounds → Certify through the navigation links.
    page.get_by_role("link", name="Bounds").first.click()
    wait_text(page, "Why Cohen's bound is tight")
    page.get_by_role("link", name="Certify").first.click()
    wait_text(page, "Certify an input")
    _current(page)

    # The Model menu through "Your model file…" and back to the shipped model.
    menu = sidebar.get_by_role("combobox", name="Model", exact=True)
    shipped = menu.inner_text().strip() or menu.input_value()
    menu.click()
    page.get_by_role("option", name="Your model file…", exact=True).click()
    wait_text(page, "Upload a model file, or pick one from the menu")
    menu.click()
    page.get_by_role("option", name=shipped, exact=True).click()
    _current(page)
    shot(page, "inputs_after_round_trip.png", tmp_path_factory)
    again = _certify_and_download(page)
    assert OUTDATED not in _main(page).inner_text()
    # The certificate after the round trip is for the same image: the same file and the same tensor.
    assert again["input"]["file_sha256"] == file_sha
    assert again["input"]["sha256_float32"] == first["input"]["sha256_float32"]
    assert again["input"]["source"] == "upload one.png"
    shot(page, "inputs_certified_again.png", tmp_path_factory)


def test_a_drawing_survives_a_page_switch(app_url, page, tmp_path_factory):
    page.goto(f"{app_url}/Certify")
    wait_text(page, "Certify an input")
    main = _main(page)
    main.locator("[data-testid='stRadio']").first.get_by_text("Draw", exact=True).click()
    wait_text(page, "Start is disabled: draw a digit")
    canvas = main.locator("canvas").last
    canvas.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # the canvas takes strokes once its drawing library has started
    draw_one(page, canvas)
    wait_text(page, "What the model sees — drawing", timeout=30_000)
    page.get_by_role("link", name="Bounds").first.click()
    wait_text(page, "Why Cohen's bound is tight")
    page.get_by_role("link", name="Certify").first.click()
    wait_text(page, "What the model sees — drawing", timeout=30_000)
    page.wait_for_timeout(2000)  # the canvas mounts and reports: the drawing must stay
    assert "What the model sees — drawing" in main.inner_text()
    assert page.get_by_role("button", name="Start", exact=True).is_enabled()
    shot(page, "inputs_drawing_back.png", tmp_path_factory)
