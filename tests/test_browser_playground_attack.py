"""The Playground's attack on g in a real Chromium: the path to g's boundary next to the certified ball (other
noises' shapes: tests/test_browser_playground_noise.py)."""

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

