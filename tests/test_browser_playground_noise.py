"""The Playground's noise and norm in a real Chromium (issue 30): Laplace noise draws its ℓ1 diamond."""

import pytest
from browser_kit import NEEDS_CHROMIUM, shot, wait_chart, wait_text

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM

# The certified trace's points as Plotly drew them (its full data: the typed arrays decoded from the JSON's base64).
DIAMOND_JS = """el => el._fullData.filter(t => (t.name || '').startsWith('certified diamond'))
                              .map(t => [Array.from(t.x), Array.from(t.y), t.name])"""


def test_switching_to_laplace_draws_the_certified_l1_diamond(app_url, page, tmp_path_factory):
    page.goto(f"{app_url}/Playground")
    wait_text(page, "Playground: randomized smoothing in 2-D")
    page.get_by_text("3 · The bound is tight", exact=True).click()  # the half-plane: its exact region is drawn too
    wait_text(page, "touches its boundary exactly", timeout=60_000)
    # The page's own noise box (the sidebar has one for the Certify page).
    box = page.locator("[data-testid='stMain'] [data-testid='stSelectbox']").filter(has_text="Noise").first
    box.get_by_role("combobox").click()
    page.get_by_role("option", name="Laplace", exact=True).click()
    # Laplace certifies ℓ1 only: the norm box follows, and the legend names the diamond and its exact twin.
    chart = wait_chart(page, "certified diamond", timeout=60_000)
    legend = chart.inner_text()
    assert "Laplace noise samples" in legend and "exact: the largest diamond inside g's region" in legend
    assert "certified (CERTIFY" not in legend  # no ℓ2 ball left over from Gaussian noise
    [(xs, ys, name)] = chart.locator(".js-plotly-plot").first.evaluate(DIAMOND_JS)
    radius = float(name.split(": ")[1])
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    assert len(xs) == 5 and xs[0] == xs[-1] and ys[0] == ys[-1]  # four corners, closed
    assert all(abs(abs(x - cx) + abs(y - cy) - radius) < 1e-3 for x, y in zip(xs, ys, strict=True))  # |δx|+|δy| = r
    offsets = sorted({round(abs(x - cx), 6) for x in xs})  # corners on the axes (a diamond, not a square)
    assert len(offsets) == 2 and offsets[0] == 0.0 and radius <= offsets[1] < radius + 1e-4  # the name rounds down
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "Radii and distances below are ℓ1" in text
    assert "the picture now shows Laplace noise and ℓ1 diamonds" in text  # step 3 says it is about Gaussian noise
    wait_text(page, "Exact for the half-plane")  # the exact ℓ1 radius |w·x − b| / ‖w‖∞ in numbers
    shot(page, "playground_noise.png", tmp_path_factory)
