"""The sidebar's numbers and the link's query string: one rule per field, checked the same way for both.

Streamlit-free, so it is tested like ``rs_core`` (tests/test_fields.py, with hypothesis). A value that
breaks its rule is *kept* and reported — the sidebar shows it as invalid and disables Start — never
clamped or replaced: nothing runs on a value the user did not choose.

>>> problem("sigma", 0.0)
'σ must be > 0 and ≤ 10, got 0'
>>> problem("n0", 100) is None
True
>>> values, problems = parse_query({"sigma": "0.5", "n0": "x", "colour": "red"})
>>> values
{'sigma': 0.5}
>>> problems["n0"], problems["colour"]
("n0 in the link: not a whole number ('x')", 'colour in the link: not a setting of RS Lab')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_QUERY_PARAMS = 32
MAX_QUERY_VALUE = 200  # characters: a shipped model id or a number is far shorter


@dataclass(frozen=True)
class Field:
    """One setting: its name on screen, its type, and its rule (a predicate and how to say it)."""

    label: str
    kind: type
    ok: Callable[[Any], bool]
    rule: str


def _finite(v: float) -> bool:
    return math.isfinite(v)


FIELDS: dict[str, Field] = {
    # σ ≤ 10: images live in [0, 1]; beyond that every model votes at random.
    "sigma": Field("σ", float, lambda v: _finite(v) and 0 < v <= 10, "must be > 0 and ≤ 10"),
    "alpha": Field("α", float, lambda v: _finite(v) and 0 < v < 1 and v <= 0.5, "must be > 0 and ≤ 0.5"),
    "n0": Field("n0", int, lambda v: 1 <= v <= 1_000_000, "must be a whole number from 1 to 1,000,000"),
    "n_max": Field("n max", int, lambda v: 1 <= v <= 100_000_000, "must be a whole number from 1 to 100,000,000"),
    "batch": Field("batch size", int, lambda v: 1 <= v <= 100_000, "must be a whole number from 1 to 100,000"),
    # 2^53 − 1: the largest integer a browser's number box holds exactly.
    "seed": Field("seed", int, lambda v: 0 <= v <= 2**53 - 1, "must be a whole number from 0 to 2^53 − 1"),
    "test_index": Field("test image", int, lambda v: 0 <= v <= 10_000_000, "must be a whole number ≥ 0"),
}
TEXT_FIELDS = ("model", "device", "source", "example", "noise", "norm")  # checked against the app's choices by the caller


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for the numeric setting ``name`` (None if it is)."""
    f = FIELDS[name]
    if value is None:
        # A browser's number box sends nothing (not the text) for an entry that is not a number, so this is what
        # "abc" becomes: say so, rather than quote a value the user never typed.
        return f"{f.label} is empty (a number box keeps only a number: text that is not one is dropped); " \
               f"{f.label} {f.rule}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{f.label} must be a number, got {value!r}"
    if f.kind is int and (isinstance(value, float) and not value.is_integer()):
        return f"{f.label} {f.rule}, got {_show(value)}"
    v = f.kind(value) if not (isinstance(value, float) and not math.isfinite(value)) else value
    return None if f.ok(v) else f"{f.label} {f.rule}, got {_show(value)}"


MAX_SIGMAS = 32


def parse_sigma_list(text: str) -> list[float]:
    """The Compare σ page's list: comma- or space-separated, distinct, each valid for σ, at most 32.

    >>> parse_sigma_list("0.25, 0.5 1")
    [0.25, 0.5, 1.0]
    """
    if not isinstance(text, str) or len(text) > 1000:
        raise ValueError("σ list: at most 1,000 characters")
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise ValueError("σ list: give at least one σ, e.g. 0.25, 0.5, 1.0")
    if len(parts) > MAX_SIGMAS:
        raise ValueError(f"σ list: at most {MAX_SIGMAS} values, got {len(parts)}")
    out: list[float] = []
    for p in parts:
        try:
            v = float(p) if p.isascii() else float("nan")
        except ValueError:
            raise ValueError(f"σ list: {p[:20]!r} is not a number") from None
        why = problem("sigma", v)
        if why is not None:
            raise ValueError(f"σ list: {why}")
        if v in out:
            raise ValueError(f"σ list: {v:g} appears twice")
        out.append(v)
    return out


def _parse_number(name: str, text: str) -> Any:
    kind = FIELDS[name].kind
    if kind is int:
        if not text.strip().lstrip("+-").isdigit() or not text.strip().isascii():
            raise ValueError(f"not a whole number ({text!r})")
        return int(text)
    try:
        if not text.isascii():
            raise ValueError
        v = float(text)
    except ValueError:
        raise ValueError(f"not a number ({text!r})") from None
    return v


def parse_query(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Values from a link's query string, and what was wrong with the rest (by parameter).

    Numbers are parsed but not range-checked here: an out-of-range number is returned as it is, so
    the sidebar shows it, says why it is invalid and disables Start. Text fields are returned as
    text for the caller to match against its choices. At most :data:`MAX_QUERY_PARAMS` parameters of
    at most :data:`MAX_QUERY_VALUE` characters are read.
    """
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    items = list(params.items())
    if len(items) > MAX_QUERY_PARAMS:
        problems["link"] = f"the link has {len(items)} parameters; at most {MAX_QUERY_PARAMS} are read"
        items = items[:MAX_QUERY_PARAMS]
    for key, raw in items:
        key = str(key)[:40]
        if isinstance(raw, (list, tuple)):  # ?a=1&a=2: the last one, as browsers' URLSearchParams.get does not
            raw = raw[-1] if raw else ""
        text = str(raw)
        if len(text) > MAX_QUERY_VALUE:
            problems[key] = f"{key} in the link: longer than {MAX_QUERY_VALUE} characters"
        elif key in FIELDS:
            try:
                values[key] = _parse_number(key, text)
            except ValueError as err:
                problems[key] = f"{key} in the link: {err}"
        elif key in TEXT_FIELDS:
            values[key] = text
        else:
            problems[key] = f"{key} in the link: not a setting of RS Lab"
    return values, problems


def to_query(values: Mapping[str, Any]) -> dict[str, str]:
    """The query string for ``values`` (settings that have no place in a link are left out)."""
    out = {}
    for key, v in values.items():
        if v is None or (key not in FIELDS and key not in TEXT_FIELDS):
            continue
        out[key] = repr(float(v)) if FIELDS.get(key, Field("", str, bool, "")).kind is float else str(v)
    return out


__all__ = ["FIELDS", "MAX_QUERY_PARAMS", "MAX_QUERY_VALUE", "MAX_SIGMAS", "TEXT_FIELDS", "Field", "parse_query",
           "parse_sigma_list", "problem", "to_query"]
