"""Shared fixtures, and what keeps the suite deterministic.

- Every test starts from the same global random state (``torch``, ``numpy``, ``random``), so a test
  that draws without its own generator still draws the same numbers on every run.
- Hypothesis runs derandomized (a fixed sequence of examples, no example database, no deadline,
  which would be a wall-clock threshold) unless ``HYPOTHESIS_PROFILE=long`` asks for a longer,
  randomized search by hand: ``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz_*.py``.
"""

import os
import random

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


@pytest.fixture(autouse=True)
def _same_random_state_for_every_test():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


class _NavigatedPagesManager:
    """AppTest builds a fresh ``PagesManager`` for every run and resets Streamlit's "pages/ folder" mode, so each
    run after the first would run a page file alone, as a server does only before its first ``st.navigation``
    (widgets/state.py handles that case; tests/test_browser.py checks it on a fresh server). Here every run goes
    through the entrypoint, as on a server that has served one page."""

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
