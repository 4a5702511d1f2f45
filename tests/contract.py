"""The error contract as a test helper: an input either loads or raises ``ValueError`` naming it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def loads_or_refuses(call: Callable[[], T], prefix: str | tuple[str, ...]) -> T | None:
    """Run ``call``; return its value, or ``None`` when it raised ``ValueError`` whose message starts
    with ``prefix`` and is one readable line (no traceback, no server path of a temp file).
    Any other exception — or a ValueError without the input's name — fails the test."""
    try:
        return call()
    except ValueError as err:
        msg = str(err)
        assert msg.startswith(prefix), f"message does not name the input ({prefix!r}): {msg!r}"
        assert "Traceback" not in msg and len(msg) < 2000, msg
        return None


def refuses(call: Callable[[], Any], prefix: str | tuple[str, ...], match: str = "") -> str:
    """``call`` must raise ``ValueError`` starting with ``prefix`` (and containing ``match``); the message."""
    try:
        call()
    except ValueError as err:
        msg = str(err)
        assert msg.startswith(prefix) and re.search(match, msg), msg
        return msg
    raise AssertionError(f"accepted an input that should be refused ({prefix} {match})")
