"""What the shipped dual RS measured against every single σ, read from the shipped logs each time (never typed in),
so the Dual RS page says it in the same numbers as the README and the model card, and follows the logs when they
are rewritten.

The logs: ``<estimator folder>/certify_dual`` (``certify-dual``) and, for each expert in the estimator's
metadata, the single-σ log ``sigma_<σ>`` beside that expert's checkpoint; compared on the images they share
(:func:`rs_core.logs.certify_logs.versus_best`, as ``analyze --common --versus`` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rs_core.logs.certify_logs import common_images, read_certify_log, versus_best

RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # the README's and the model card's columns


@dataclass(frozen=True)
class Measured:
    """Dual RS minus the best single σ at each radius of :data:`RADII` (``rows``, as ``versus_best`` gives them), on
    ``images`` test images of ``dataset``."""

    images: int
    dataset: str | None
    rows: list[dict[str, Any]]


def measured(estimator_path: str | Path, meta: Mapping[str, Any]) -> Measured | None:
    """The comparison for the σ-estimator at ``estimator_path`` (its metadata ``meta`` names the experts); None
    when a log is missing or unreadable (the page then only points to the README)."""
    base = Path(estimator_path).parent
    try:
        dual = read_certify_log(base / "certify_dual", label="dual RS")
        singles = [read_certify_log((base / e["path"]).parent / f"sigma_{float(e['sigma']):.2f}",
                                    label=f"σ = {float(e['sigma']):g}") for e in meta.get("experts", [])]
        if not singles:
            return None
        _, common = common_images([dual, *singles])
        if not common:
            return None
        return Measured(images=len(common), dataset=dual.dataset, rows=versus_best(dual, singles, RADII))
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _points(d: float) -> str:
    return f"{abs(d) * 100:.1f}"


def summary(m: Measured) -> str:
    """One honest paragraph: where dual RS is below, level with or above the best single σ, by how much."""
    below = [r for r in m.rows if r["difference"] < 0]
    head = (f"On the shipped logs ({m.images:,} {m.dataset or ''} test images, certified by dual RS with this "
            "σ-estimator and by each expert alone), ")
    if len(below) == len(m.rows):
        worst = min(below, key=lambda r: r["difference"])
        best = max(below, key=lambda r: r["difference"])
        text = (f"**the shipped dual RS is below the best single σ at every radius from r = {m.rows[0]['radius']:g} "
                f"to {m.rows[-1]['radius']:g}**: its certified accuracy is {_points(best['difference'])} "
                f"(r = {best['radius']:g}) to {_points(worst['difference'])} points (r = {worst['radius']:g}) lower.")
    else:
        level = [f"{r['radius']:g}" for r in m.rows if r["difference"] >= 0]
        text = (f"dual RS is below the best single σ at {len(below)} of {len(m.rows)} radii and level with or above "
                f"it at r = {', '.join(level)}.")
    return head + text


def table(m: Measured) -> dict[str, list[str]]:
    """The rows for ``st.table``: dual RS, the best single σ (which one), the difference ± its paired SE."""
    return {"radius": [f"{r['radius']:g}" for r in m.rows],
            "dual RS": [f"{r['first']:.3f}" for r in m.rows],
            "best single σ": [f"{r['best_accuracy']:.3f} ({r['best']})" for r in m.rows],
            "dual − best single": [f"{r['difference']:+.3f} ± {r['se']:.3f}" for r in m.rows]}


__all__ = ["RADII", "Measured", "measured", "summary", "table"]
