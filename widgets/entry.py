"""How a page gets the sidebar's :class:`~widgets.state.Settings`: from the entrypoint, or without it.

``app.py`` draws the sidebar once per run and runs the chosen page inside :func:`entrypoint`; pages call
:func:`settings`. This module sits above :mod:`widgets.sidebar` and :mod:`widgets.state` (neither imports it),
so the recovery below may draw the sidebar without an import circle.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import streamlit as st

from . import nav, sidebar, state

_RETRIED = "entrypoint_retried"
_ENTRY = threading.local()  # set while the entrypoint runs a page, in that session's script thread


@contextlib.contextmanager
def entrypoint() -> Iterator[None]:
    """``app.py`` runs the chosen page inside this: pages then know the sidebar was drawn in this run."""
    _ENTRY.active = True
    try:
        yield
    finally:
        _ENTRY.active = False


def settings() -> state.Settings:
    """The settings the entrypoint's sidebar stored for this run (see :func:`_without_the_entrypoint` otherwise)."""
    if not getattr(_ENTRY, "active", False):
        return _without_the_entrypoint()
    st.session_state[_RETRIED] = False
    return state.current()


def _without_the_entrypoint() -> state.Settings:
    """A page runs without ``app.py``. Streamlit does that while a server has not yet run ``st.navigation``: with
    a ``pages/`` folder it starts in its older multipage mode, where a link straight to a page runs that file alone
    (the page's url path is its file's name, so that link finds it). The page registers the app's navigation —
    which ends that mode for the server — and switches to itself, keeping the link's query, so the run that
    follows goes through ``app.py`` (widget state then stays put from the first interaction). Where the request
    names no page of the app (a page file run as the main script) or even that rerun comes back here, the page
    draws the sidebar itself."""
    ss = st.session_state
    # The page the request names, resolved by the app's navigation: in that older mode a page's url path is its
    # file's name (see widgets/nav.py), which is also its url path here. The default page (Home) is not switched
    # to: a request that names no page resolves to it (a page file run as the main script).
    target = st.navigation(nav.pages(), position="hidden")
    if not ss.get(_RETRIED):
        ss[_RETRIED] = True
        if target.url_path:
            st.switch_page(target, query_params=st.query_params.to_dict())
    return sidebar.draw()
