"""The Playground in a real Chromium: the attack's path to g's boundary next to the certified ball, and the shapes
other noises certify (issue 30: Laplace's ℓ1 diamond, uniform's ℓ∞ square, with the exact half-plane region)."""

import pytest
from browser_kit import NEEDS_CHROMIUM, shot, wait_chart, wait_text

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM


def test_the_playground_attack_draws_its_path_and_says_where_the_truth_lies(app_url, page, tmp_path_factory):
    page.goto(f"{app_url}/Playground")
    wait_text(page, "Playground: randomized smoothing in 2-D")
    page.get_by_text("3 · The bound is tight", exact=True).click()
    wait_text(page, "touches its boundary exactly", timeout=60_000)
    page.get_by_text("Attack g here", exact=False).click()
    wait_text(page, "Attack: g changes to class", timeout=60_000)
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "the exact distance to g's boundary" in text and "soundness alarm" not in text
    legend = wait_chart(page, "adversarial point found").inner_text()
    assert "the attack's path" in legend and "adversarial point found" in legend
    shot(page, "playground_attack.png", tmp_path_factory)


def test_the_playground_draws_the_laplace_diamond_and_the_uniform_square(app_url, page, tmp_path_factory):
    page.goto(f"{app_url}/Playground")
    wait_text(page, "Playground: randomized smoothing in 2-D")
    page.get_by_text("5 · The shape of the noise", exact=True).click()
    legend = wait_chart(page, "certified diamond", timeout=90_000).inner_text()
    assert "Laplace noise samples" in legend and "exact: the largest diamond inside g" in legend
    assert "Radii and distances below are ℓ1" in page.locator("[data-testid='stMain']").inner_text()
    shot(page, "playground_noise.png", tmp_path_factory)
    # Uniform noise, ℓ∞: the square, and its cloud.
    main = page.locator("[data-testid='stMain']")  # the page's own choices (the sidebar has a "Noise" too)
    main.get_by_role("combobox", name="Noise", exact=True).click()
    page.get_by_role("option", name="uniform", exact=True).click()
    wait_chart(page, "uniform noise samples", timeout=90_000)
    main.get_by_role("combobox", name="Certified region", exact=True).click()
    page.get_by_role("option", name="ℓ∞ (square)", exact=True).click()
    legend = wait_chart(page, "certified square", timeout=90_000).inner_text()
    assert "exact: the largest square inside g" in legend
