"""CERTIFY's largest radius under both bounds on pA, said the same way on every page that shows it.

A certificate from n estimation samples can say no more than when all n vote for the top class. How much that is
depends on how pA is bounded from below: Clopper–Pearson (the command line and Cohen et al.'s logs: n fixed in
advance) or the anytime-valid bound of the Certify page's live stream (valid however the sampling is stopped).
The two ceilings differ, and a page that shows one without the other left users comparing numbers from different
bounds (issue 27 item 5): :func:`show` always draws both and says which one the page's own results used.
"""

from __future__ import annotations

import streamlit as st

from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import ANYTIME, BOUND_KINDS, CLOPPER_PEARSON, largest_radius

NAMES = {CLOPPER_PEARSON: "Clopper–Pearson", ANYTIME: "anytime"}
"""Short names of the bounds, for table columns and legends."""

LABELS = {CLOPPER_PEARSON: "Clopper–Pearson, n fixed in advance (CLI, Cohen et al.)",
          ANYTIME: "anytime-valid, stop whenever you like (Certify page)"}
"""Long names, for the metrics and the counts table's columns."""

WHY = ("Clopper–Pearson is valid only for a sample size fixed before sampling, as CERTIFY on the command line and "
       "Cohen et al.'s logs fix n. The anytime bound stays valid however the sampling is stopped — by you, after "
       "watching the bound, or at a target radius — and pays for that with a slightly lower bound on pA. So the "
       "Certify page's live radii are slightly smaller than CLI radii for the same votes and are not directly "
       "comparable with CLI logs.")
"""Why the two bounds differ, in the words every page uses."""


def ceiling_values(sigma: float, n: int, alpha: float) -> dict[str, float]:
    """The largest radius under each bound (exact floats; print them rounded down)."""
    return {bound: float(largest_radius(sigma, n, alpha, bound)) for bound in BOUND_KINDS}


def show(sigma: float, n: int, alpha: float, used: str | None = None) -> None:
    """Both ceilings at (σ, n, α) as two metrics, Clopper–Pearson first, and why they differ.

    ``used``: the bound the calling page's own results used (a Certificate's ``bound``), said first; None for a
    page that makes no certificates.
    """
    if used is not None and used not in BOUND_KINDS:
        raise ValueError(f"used: must be None or one of {', '.join(BOUND_KINDS)}, got {used!r}")
    values = ceiling_values(sigma, n, alpha)
    columns = st.columns(len(values))
    for column, (bound, radius) in zip(columns, values.items(), strict=True):
        column.metric(LABELS[bound], floor_str(radius),
                      help="σ·Φ⁻¹(α^(1/n)): the Clopper–Pearson bound when every sample votes for the top class"
                      if bound == CLOPPER_PEARSON else
                      "σ·Φ⁻¹ of the anytime-valid lower bound (rs_core.smoothing.stats.anytime_lower_bound) at "
                      "n of n votes")
    said = "" if used is None else f"This page's radii use the **{NAMES[used]}** bound. "
    st.caption(f"{said}The largest radius any certificate can have when all n = {n:,} samples vote for the top "
               f"class, at σ = {sigma:g} and α = {alpha:g} (rounded down). {WHY}")


__all__ = ["LABELS", "NAMES", "WHY", "ceiling_values", "show"]
