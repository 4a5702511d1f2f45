"""The Bounds page's counts mode and both ceilings in a real headless Chromium (issue 27 items 5 and 7)."""

import pytest
from browser_kit import NEEDS_CHROMIUM, set_number, shot, wait_chart, wait_text

from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import radii_from_counts

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM


def test_bounds_page_counts_mode_in_chromium(app_url, page, tmp_path_factory):
    page.goto(f"{app_url}/Bounds")
    wait_text(page, "Why Cohen's bound is tight")
    set_number(page, "σ (noise level)", "1.000")
    page.get_by_text("your counts (nA of n)").click()
    wait_text(page, "The three bounds on your counts")
    set_number(page, "nA (votes for class A)", "990")
    set_number(page, "n (estimation samples)", "1,000")
    set_number(page, "α (for these counts)", "0.001")
    wait_text(page, "nA = 990 of n = 1,000")
    table = page.locator("[data-testid='stTable']").first
    text = table.inner_text()
    cp = radii_from_counts(990, 1000, 0.001, 1.0)
    anytime = radii_from_counts(990, 1000, 0.001, 1.0, bound="anytime-beta-mixture")
    assert floor_str(cp.cohen) == "1.9780" and "1.9780" in text  # σΦ⁻¹ of Beta(990, 11)'s 0.001-quantile
    assert all(floor_str(v) in text for v in (cp.li, cp.lecuyer, anytime.cohen, anytime.li, anytime.lecuyer))
    # Both ceilings at the sidebar's n max and α, each named.
    wait_text(page, "Clopper–Pearson, n fixed in advance")
    wait_text(page, "anytime-valid, stop whenever you like")

    # A value that is not a whole number is named, and nothing is computed on it.
    set_number(page, "nA (votes for class A)", "1.5")
    wait_text(page, "nA must be a whole number")
    assert "Cohen et al. (tight)" not in page.locator("[data-testid='stTable']").first.inner_text()
    shot(page, "bounds_counts_invalid.png", tmp_path_factory)

    # With the runner-up's count: α split in two, said on the page.
    set_number(page, "nA (votes for class A)", "990")
    page.get_by_text("I have nB (the runner-up's votes)").click()
    set_number(page, "nB (votes for the runner-up)", "4")
    wait_text(page, "α/2 = 0.0005")
    with_b = radii_from_counts(990, 1000, 0.001, 1.0, n_b=4)
    wait_text(page, floor_str(with_b.cohen))
    page.wait_for_timeout(1500)  # let the chart draw before the screenshot
    shot(page, "bounds_counts.png", tmp_path_factory)


def test_bounds_page_each_noise_in_chromium(app_url, page, tmp_path_factory):
    """Issue 30: each noise's radius against pA at the same σ, from rs_core.smoothing.noises, both charts drawn."""
    import numpy as np

    from rs_core.smoothing.noises import get_noise

    page.goto(f"{app_url}/Bounds")
    wait_text(page, "Why Cohen's bound is tight")
    set_number(page, "σ (noise level)", "1.000")
    page.get_by_text("probabilities (pA, pB)").click()
    wait_text(page, "Each noise's radius against pA")
    wait_text(page, "not numbers to rank")
    l1 = wait_chart(page, "Laplace, ℓ1").inner_text()
    assert "Gaussian, ℓ2 (= its derived ℓ1)" in l1 and "uniform, ℓ1" in l1
    linf = wait_chart(page, "uniform, ℓ∞").inner_text()
    assert "Gaussian, ℓ∞ (derived: ℓ2 / √d)" in linf
    text = page.locator("[data-testid='stTable']").filter(has_text="Laplace, ℓ1").first.inner_text()
    d = 784  # the sidebar's default model is an MNIST model; without one the page says it takes MNIST's d
    wait_text(page, f"d = {d}")
    for noise, norm in (("laplace", "l1"), ("uniform", "l1"), ("uniform", "linf"), ("gaussian", "linf")):
        assert all(floor_str(float(r)) in text for r in get_noise(noise, 1.0).radius(np.array([0.9, 0.999]), norm, d))
    shot(page, "bounds_noises.png", tmp_path_factory)
