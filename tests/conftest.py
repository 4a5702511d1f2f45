"""Shared fixtures, and what keeps the suite deterministic.

- Every test starts from the same global random state (``torch``, ``numpy``, ``random``), so a test
  that draws without its own generator still draws the same numbers on every run.
- Hypothesis runs derandomized (a fixed sequence of examples, no example database, no deadline,
  which would be a wall-clock threshold) unless ``HYPOTHESIS_PROFILE=long`` asks for a longer,
  randomized search by hand: ``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz_*.py``.
"""

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", deadline=None, max_examples=3000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each worker's torch (and every process it starts) on one thread, so
    # that the workers do not oversubscribe the cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Markers by file, so that a developer can leave out whole kinds (``make test-fast``): ``browser`` for the
    Chromium tests (``test_browser*.py``), which also share one xdist worker and so one module-scoped Streamlit server (``--dist
    loadgroup``), and ``apptest`` for the pages run through Streamlit's AppTest."""
    for item in items:
        name = item.path.name
        if name.startswith("test_browser"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.xdist_group("browser"))
        elif name == "test_app.py" or name.startswith("test_page_"):
            item.add_marker(pytest.mark.apptest)


@pytest.fixture(autouse=True)
def _same_random_state_for_every_test():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


class _NavigatedPagesManager:
    """AppTest builds a fresh ``PagesManager`` for every run and resets Streamlit's "pages/ folder" mode, so each
    run after the first would run a page file alone, as a server does only before its first ``st.navigation``
    (widgets/entry.py handles that case; tests/test_browser.py checks it on a fresh server). Here every run goes
    through the entrypoint, as on a server that has served one page.

    Streamlit 1.67 offers no cleaner way: ``AppTest._run`` sets ``PagesManager.uses_pages_directory = None`` and
    builds ``PagesManager(...)`` on every run (streamlit/testing/v1/app_test.py, ``_run``), whose constructor
    turns that mode back on whenever ``pages/`` exists next to the main script (runtime/pages_manager.py,
    ``__init__``); the script runner then runs ``_mpa_v1`` (runtime/scriptrunner/script_runner.py), which runs
    the page file alone. Neither ``AppTest`` (``from_file``/``__init__`` take only a timeout, args, kwargs) nor
    any config option (only ``client.showSidebarNavigation``, which just hides the menu) turns that detection
    off. Letting each run recover through widgets/entry.py's fallback works for values and callbacks but loses
    clicks read as ``if st.button(...)`` (Stop, Run PREDICT): the page-alone attempt ends with
    ``st.switch_page``, and ending a run, even for a rerun, resets trigger values
    (``SessionState.on_script_finished`` → ``_reset_triggers``), so the run through app.py sees no click."""

    def __new__(cls, *args, **kwargs):
        from streamlit.runtime.pages_manager import PagesManager

        manager = PagesManager(*args, **kwargs)
        PagesManager.uses_pages_directory = False
        return manager


@pytest.fixture(autouse=True)
def _apptest_runs_through_the_entrypoint(monkeypatch):
    from streamlit.testing.v1 import app_test

    monkeypatch.setattr(app_test, "PagesManager", _NavigatedPagesManager)


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as an IDX file of unsigned bytes (LeCun's format, what rs_core.data.read_idx reads): magic
    bytes 0, 0, 8, D, then D big-endian uint32 sizes, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.write_bytes(bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.tobytes())


@pytest.fixture
def synthetic_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MNIST for ``RS_DATA_DIR`` (CI has no real data set): under ``mnist/MNIST/raw/`` the uncompressed IDX
    files rs_core.data reads, 10 test images (labels 0–9 in order) and 16 training images (labels i % 10), random
    28×28 bytes. Returns the folder to put in ``RS_DATA_DIR``."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("t10k", 10), ("train", 16)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10)
    return root


@pytest.fixture(scope="module")
def app_url():
    """The app in its own process for one browser test module (tests/browser_kit.py); its pid in ``SERVER``."""
    import browser_kit

    with browser_kit.server() as (url, pid):
        browser_kit.SERVER["pid"] = pid
        yield url


@pytest.fixture(scope="module")
def page():
    """One headless Chromium page per browser test module (Debian's Chromium, driven by Playwright)."""
    import browser_kit
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_kit.CHROMIUM, args=browser_kit.CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1300})
        yield pg
        browser.close()
