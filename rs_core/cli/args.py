"""Argument types for the command line: every number and device is parsed and checked at the door.

argparse calls these on the raw text; an ``argparse.ArgumentTypeError`` becomes
``error: argument --sigma: must be finite and > 0, got 'nan'`` and exit status 2, before any
file is opened or any work starts. Ranges match the library's own checks (``rs_core.checks``).

>>> positive_float("0.25"), probability("1e-3"), count("100_000"), seed("0")
(0.25, 0.001, 100000, 0)
>>> positive_float("inf")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be finite and > 0, got 'inf'
"""

from __future__ import annotations

import argparse
import math
import re

_INT = re.compile(r"[0-9][0-9_]{0,24}")


def _number(text: str, ok, rule: str) -> float:
    """``float(text)`` when ``ok`` holds for it, else the argparse error ``must be {rule}``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text[:40]!r}")
    return value


def _int(text: str) -> int:
    t = text.strip()
    neg = t.startswith("-")
    if not _INT.fullmatch(t[1:] if neg else t):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}")
    return -int(t[1:]) if neg else int(t)


def positive_float(text: str) -> float:
    """A finite number > 0 (σ, learning rates, temperatures)."""
    return _number(text, lambda v: math.isfinite(v) and v > 0, "finite and > 0")


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (radii, weights of regularizers)."""
    return _number(text, lambda v: math.isfinite(v) and v >= 0, "finite and >= 0")


def probability(text: str) -> float:
    """A failure probability in (0, 1) (α, ρ, an α split)."""
    return _number(text, lambda v: 0.0 < v < 1.0, "in (0, 1)")


def count(text: str) -> int:
    """An integer >= 1 (sample sizes, batch sizes, epochs), at most 10**12."""
    value = _int(text)
    if not 1 <= value <= 10**12:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 10**12], got {text[:40]!r}")
    return value


def count0(text: str) -> int:
    """An integer >= 0 (a number of epochs that may be none), at most 10**12."""
    value = _int(text)
    if not 0 <= value <= 10**12:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 10**12], got {text[:40]!r}")
    return value


def limit(text: str) -> int:
    """``--max``: -1 (no limit) or an integer >= 0."""
    value = _int(text)
    if value < -1:
        raise argparse.ArgumentTypeError(f"must be -1 (no limit) or >= 0, got {text[:40]!r}")
    return value


def seed(text: str) -> int:
    """A seed in [0, 2**63): example i of a data set uses seed + i, which must still fit."""
    value = _int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63), got {text[:40]!r}")
    return value


def device(text: str) -> str:
    """A torch device string this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"not a device: {text[:40]!r} (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index is not None and dev.index >= torch.cuda.device_count())):
        raise argparse.ArgumentTypeError(f"{text!r} is not available on this machine")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and (mps is None or not mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r} is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device type {dev.type!r} (cpu, cuda, mps)")
    return text


def radius_or_auto(text: str) -> float | str:
    """``auto`` or a finite radius > 0 (train-sigma's --label-cap)."""
    return "auto" if text.strip().lower() == "auto" else positive_float(text)
