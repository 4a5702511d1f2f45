"""The app's last line of defence: an unexpected error becomes a plain message with an error id on the page, and
its traceback goes to the server's log under that id (``client.showErrorDetails = "none"`` in
``.streamlit/config.toml`` covers anything that escapes this, e.g. a fragment's rerun).

A page must never show a traceback or a server path: they tell a visitor nothing they can act on and tell an
attacker where things are. Whoever runs the server finds the details by the id the visitor reports.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import streamlit as st

LOG = logging.getLogger("rs_lab")
F = TypeVar("F", bound=Callable[..., Any])


def new_error_id() -> str:
    """Eight hex digits: short enough to read out, random so ids from different sessions do not collide in a log."""
    return secrets.token_hex(4)


def report(err: BaseException, where: str) -> str:
    """Log ``err`` with its traceback under a new error id, show the plain message on the page; returns the id."""
    error_id = new_error_id()
    LOG.error("error %s in %s: %s: %s", error_id, where, type(err).__name__, err, exc_info=err)
    st.error(f"Something went wrong here ({where}), error id **{error_id}**. Nothing you chose is lost: change a "
             "setting or reload the page to try again. Whoever runs this server finds the details in its log "
             f"under that id.", icon=":material/error:")
    return error_id


@dataclass
class Outcome:
    """What :func:`guard` saw: the error id when the guarded code failed, else None."""

    error_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_id is not None


@contextlib.contextmanager
def guard(where: str) -> Iterator[Outcome]:
    """Run a page (or the sidebar) so that an unexpected error is reported by :func:`report` instead of reaching the
    page as a traceback. Streamlit's own control flow (rerun, stop, switch page) derives from BaseException, not
    Exception, and so passes through."""
    outcome = Outcome()
    try:
        yield outcome
    except Exception as err:  # noqa: BLE001 — this is the guard: every other error has been handled where it arose
        outcome.error_id = report(err, where)


def guarded(where: str) -> Callable[[F], F]:
    """:func:`guard` as a decorator, for functions Streamlit reruns on their own (fragments)."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with guard(where):
                return fn(*args, **kwargs)
        return run  # type: ignore[return-value]
    return wrap
