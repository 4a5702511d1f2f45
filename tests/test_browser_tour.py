"""A scripted tour of every page in a real Chromium: each control of each page is set to an edge or invalid value,
and no page may ever show a traceback, an exception, the guard's "error id" message or a server path.

Each control gets one hostile value (numbers: negative, huge, zero in turn; every radio option; each checkbox; the
first and last option of each menu; each button but downloads), and the sidebar's n is kept small first so that a
Start the tour clicks ends quickly.
"""

# ruff: noqa: B023 — each lambda runs at once inside act(), in the loop turn that made it
from __future__ import annotations

import re

import pytest
from browser_kit import NEEDS_CHROMIUM, ROOT, set_number

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM

PAGES = ["Certify", "home", "Compare_sigma", "Bounds", "Certified_accuracy", "Dual_RS", "Playground", "Verify"]
NUMBERS = ["-1", "1e12", "0"]  # in turn over a page's number boxes
MAX_PER_KIND = 4  # controls of one kind per page: the tour stays near a minute on an idle machine
# What a page must never show: Streamlit's exception element, the guard's message, a traceback, a server path.
BAD_TEXT = re.compile(r"Traceback|error id|Something went wrong|File \"/|" + re.escape(str(ROOT)) + r"|/usr/lib/|"
                      r"site-packages")


def _settle(page) -> None:
    """Until the script run this action started has ended: Streamlit marks the app's root with its script state."""
    page.wait_for_timeout(300)  # the rerun an action causes starts after a round trip to the server
    try:
        page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=20_000)
    except sync_api.TimeoutError:
        pass  # a page that keeps rerunning (a live run's polling): the checks below still apply to what is drawn


def _open(page, app_url: str, path: str) -> None:
    page.goto(f"{app_url}/{path}" if path != "home" else app_url)
    page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=60_000)  # the page's title: its run has begun
    _settle(page)


def _check(page, where: str) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, where
    text = page.locator("[data-testid='stApp']").inner_text()
    bad = BAD_TEXT.search(text)
    assert bad is None, f"{where}: {bad.group(0)!r} in the page: …{text[max(0, bad.start() - 200):bad.end() + 200]}…"


def _tour(page, area, where: str) -> int:
    """Every control kind in ``area`` (a locator: the main area or the sidebar); returns the number of actions."""
    actions = 0

    def act(what: str, fn) -> None:
        nonlocal actions
        try:
            fn()
        except sync_api.Error as err:  # the control went away in the rerun another action caused: nothing to check
            print(f"SKIP {where}: {what}: {str(err).splitlines()[0]}")
            return
        actions += 1
        print(f"{where}: {what}")
        _settle(page)
        _check(page, f"{where}: {what}")

    boxes = area.locator("[data-testid='stNumberInput'] input")
    for i in range(min(boxes.count(), MAX_PER_KIND)):
        box = boxes.nth(i)
        value = NUMBERS[i % len(NUMBERS)]
        act(f"number box {i} = {value}", lambda: (box.fill(value, timeout=3000), box.press("Enter")))
    texts = area.locator("[data-testid='stTextInput'] input, [data-testid='stTextArea'] textarea")
    for i in range(min(texts.count(), MAX_PER_KIND)):
        field = texts.nth(i)
        act(f"text field {i}", lambda: (field.fill("abc ∅ ../../etc/passwd", timeout=3000), field.press("Enter")))
    radios = area.locator("[data-testid='stRadio']")
    for i in range(min(radios.count(), MAX_PER_KIND)):
        options = radios.nth(i).locator("label")
        for j in range(min(options.count(), 3)):
            act(f"radio {i} option {j}", lambda: options.nth(j).click(timeout=3000))
    checks = area.locator("[data-testid='stCheckbox'] label")
    for i in range(min(checks.count(), MAX_PER_KIND)):
        act(f"checkbox {i}", lambda: checks.nth(i).click(timeout=3000))
    menus = area.locator("[data-testid='stSelectbox']")
    for i in range(min(menus.count(), MAX_PER_KIND)):
        for pick in ("first", "last"):
            def choose() -> None:
                menus.nth(i).click(timeout=3000)
                option = page.get_by_role("option")
                (option.first if pick == "first" else option.last).click(timeout=3000)
            act(f"menu {i} {pick}", choose)
    buttons = area.locator("[data-testid='stButton'] button:enabled")
    for i in range(min(buttons.count(), MAX_PER_KIND)):
        act(f"button {i}", lambda: buttons.nth(i).click(timeout=3000))
    return actions


def test_a_tour_of_every_control_shows_no_traceback_on_any_page(app_url, page):
    page.goto(app_url)
    page.get_by_role("heading").first.wait_for(timeout=60_000)
    sidebar = page.locator("[data-testid='stSidebar']")
    set_number(page, "n max (estimation)", "200")  # a Start the tour clicks ends in a moment
    total = 0
    for path in PAGES:
        _open(page, app_url, path)
        _check(page, f"{path}: opened")
        total += _tour(page, page.locator("[data-testid='stMain']"), path)
    total += _tour(page, sidebar, "sidebar")  # last: it may leave settings invalid, which every page must survive
    for path in PAGES:
        _open(page, app_url, path)
        _check(page, f"{path} after the sidebar's tour")
    assert total >= 40  # the tour really touched the pages' controls
