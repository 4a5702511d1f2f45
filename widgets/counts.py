"""The Bounds page's counts mode: your own vote counts in, Cohen's, Li's and Lecuyer's radii out, under both bounds.

The counts are typed as text, not in number boxes: a browser's number box drops text that is not a number and
Streamlit's whole-number box truncates "1.5" to 1, so either would compute on a value the user never typed. Here
every entry is parsed exactly (:func:`parse_counts`, Streamlit-free) and an invalid one is named and nothing is
computed, as the sidebar's fields do (widgets/fields.py).

>>> values, problems = parse_counts("99,000", "100000", "0.001", "1.5")
>>> values
{'n_a': 99000, 'n': 100000, 'alpha': 0.001}
>>> problems["n_b"]
"nB must be a whole number (digits, optionally grouped as 100,000), got '1.5'"
"""

from __future__ import annotations

import math
import re
from typing import Any

import streamlit as st

from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import BOUND_KINDS, radii_from_counts
from widgets import ceilings, state

MAX_N = 10**15  # counts stay exact as floats (2^53 ≈ 9·10^15), where the bounds compute
LABELS = {"n_a": "nA", "n": "n", "n_b": "nB", "alpha": "α"}
# Digits, or digits grouped in threes by commas ("100,000"); "1,5" (a decimal comma) is refused, never read as 15.
_WHOLE = re.compile(r"[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+")
P_DECIMALS = 5


def _whole(name: str, text: str) -> int:
    label = LABELS[name]
    text = text.strip()
    if not text:
        raise ValueError(f"{label} is empty: type a whole number")
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{label} must be a whole number (digits, optionally grouped as 100,000), got {text!r}")
    value = int(text.replace(",", ""))
    if value > MAX_N:
        raise ValueError(f"{label} must be at most {MAX_N:,}, got {value:,}")
    return value


def _alpha(text: str) -> float:
    text = text.strip()
    if not text:
        raise ValueError("α is empty: type a number > 0 and < 1, e.g. 0.001")
    try:
        if not text.isascii():
            raise ValueError
        value = float(text)
    except ValueError:
        raise ValueError(f"α must be a number > 0 and < 1, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value < 1):
        raise ValueError(f"α must be > 0 and < 1, got {text!r}")
    return value


def parse_counts(n_a: str, n: str, alpha: str, n_b: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The counts as numbers, and what is wrong with the rest, by field (``n_a``, ``n``, ``n_b``, ``alpha``).

    Rules: nA, n and nB are whole numbers, n ≥ 1, 0 ≤ nA ≤ n, nA + nB ≤ n; 0 < α < 1. ``n_b`` None: no nB. A value
    is returned only when it is valid on its own; a rule between fields (nA ≤ n, nA + nB ≤ n) marks the field
    that breaks it (nA, nB) and leaves that one out.
    """
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, text in (("n_a", n_a), ("n", n), ("alpha", alpha), ("n_b", n_b)):
        if text is None:
            continue
        if not isinstance(text, str):
            problems[name] = f"{LABELS[name]} must be text, got {type(text).__name__}"
            continue
        try:
            values[name] = _alpha(text) if name == "alpha" else _whole(name, text)
        except ValueError as err:
            problems[name] = str(err)
    if "n" in values and values["n"] < 1:
        problems["n"] = f"n must be at least 1, got {values['n']}"
        del values["n"]
    if "n_a" in values and "n" in values and values["n_a"] > values["n"]:
        problems["n_a"] = f"nA must be at most n, got nA = {values['n_a']:,} > n = {values['n']:,}"
        del values["n_a"]
    if "n_b" in values and "n_a" in values and "n" in values and values["n_a"] + values["n_b"] > values["n"]:
        problems["n_b"] = (f"nA + nB must be at most n, got nA + nB = {values['n_a'] + values['n_b']:,} > "
                           f"n = {values['n']:,}")
        del values["n_b"]
    return values, problems


def ceil_str(value: float, decimals: int = P_DECIMALS) -> str:
    """``value`` rounded up, exactly: an upper bound printed is never below the bound (floor_str of −value)."""
    text = floor_str(-value, decimals)
    return text.removeprefix("-")


def radius_cell(radius: float | None) -> str:
    """A radius rounded down, or "abstain" (never a negative number or a zero that looks like a certificate)."""
    return "abstain" if radius is None else floor_str(radius)


def draw(sigma: float, default_alpha: float) -> dict[str, Any] | None:
    """The counts form and, when every entry is valid, the three radii under both bounds. Returns the
    :class:`~rs_core.smoothing.bounds.CountRadii` by bound (None when something is invalid)."""
    st.subheader("The three bounds on your counts")
    st.caption("Votes from a run of your own: nA of n estimation samples for the top class A (chosen beforehand, "
               "as CERTIFY chooses it from n0 separate samples), and optionally nB for the runner-up, the most "
               "frequent other class. The radii are for exactly these counts, under each bound on pA.")
    c1, c2, c3 = st.columns(3)
    n_a = c1.text_input("nA (votes for class A)", **state.kept("bounds_n_a", "99,000"))
    n = c2.text_input("n (estimation samples)", **state.kept("bounds_n", "100,000"))
    alpha = c3.text_input("α (for these counts)", **state.kept("bounds_count_alpha", f"{default_alpha:g}"))
    c1, c2 = st.columns([1, 2])
    use_b = c1.checkbox("I have nB (the runner-up's votes)", **state.kept("bounds_use_nb", False),
                        help="Without nB, pB is bounded by 1 − pA's lower bound, as CERTIFY does, and all of α "
                             "goes to pA. With nB, pA and pB are bounded separately at α/2 each.")
    n_b = c2.text_input("nB (votes for the runner-up)", disabled=not use_b, **state.kept("bounds_n_b", "600"))
    values, problems = parse_counts(n_a, n, alpha, n_b if use_b else None)
    for why in problems.values():
        st.error(why)
    if problems:
        st.caption("Nothing is computed until every entry is valid.")
        return None
    results = {bound: radii_from_counts(values["n_a"], values["n"], values["alpha"], sigma, n_b=values.get("n_b"),
                                        bound=bound) for bound in BOUND_KINDS}
    a = values["alpha"]
    st.markdown(f"**nA = {values['n_a']:,} of n = {values['n']:,}**" + (
        f", **nB = {values['n_b']:,}**" if "n_b" in values else "") + f", α = {a:g}, σ = {sigma:g} (sidebar)")
    st.table({"bound": ["Cohen et al. (tight)", "Li et al. (Rényi)", "Lecuyer et al. (PixelDP)"],
              **{ceilings.LABELS[b]: [radius_cell(r.cohen), radius_cell(r.li), radius_cell(r.lecuyer)]
                 for b, r in results.items()}})
    st.table({"": ["pA ≥ (lower bound, rounded down)", "pB ≤ (upper bound, rounded up)"],
              **{ceilings.LABELS[b]: [floor_str(r.p_a_lower, P_DECIMALS), ceil_str(r.p_b_upper)]
                 for b, r in results.items()}})
    if "n_b" in values:
        st.caption(f"α split (union bound): pA's lower bound at α/2 = {a / 2:g} and pB's upper bound at α/2 = "
                   f"{a / 2:g}, so both hold together with probability ≥ 1 − α = {1 - a:g}. One bound from the "
                   "runner-up's votes covers every other class: the likeliest of them has at most nB votes.")
    else:
        st.caption(f"pA's lower bound at α = {a:g}; pB = 1 − that bound (CERTIFY's rule: no α is spent on pB). "
                   "Give nB to bound pB from its own votes (α is then split in two).")
    if not any(r.certified for r in results.values()):
        st.warning("**Abstain** under both bounds: pA's lower bound is ≤ 1/2, so CERTIFY certifies nothing for "
                   "these counts (not even radius 0).")
    else:
        for bound, r in results.items():
            if not r.certified:
                st.info(f"The {ceilings.NAMES[bound]} bound abstains here (its lower bound on pA is ≤ 1/2); "
                        "the other certifies.")
    st.caption("Which column applies: **Clopper–Pearson** if n was fixed before sampling (CERTIFY on the command "
               "line, Cohen et al.'s logs); **anytime** if the run could stop whenever (the Certify page: Stop, a "
               "target radius). The anytime bound pays for that freedom with a slightly lower bound on pA, so its "
               "radii are a little smaller (more on this below).")
    return results


__all__ = ["LABELS", "MAX_N", "ceil_str", "draw", "parse_counts", "radius_cell"]
