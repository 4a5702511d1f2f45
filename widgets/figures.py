"""Pictures shared by the pages: tensors as images, vote bars."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


def to_display(x: torch.Tensor, size: int = 140) -> np.ndarray:
    """[C, H, W] tensor (any range) → uint8 H×W(×3) image, clipped to [0, 1], upscaled by pixel repetition."""
    arr = x.detach().float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    k = max(1, size // max(arr.shape[:2]))
    return np.repeat(np.repeat(arr, k, axis=0), k, axis=1)


def vote_figure(counts: np.ndarray, class_names: list[str], *, top_class: int | None, title: str,
                max_bars: int = 20, top_k: int = 10) -> dict[str, Any]:
    """Bar chart of votes per class (c_A in red) as a Plotly figure dict. Up to ``max_bars`` classes show every class;
    more (an ImageNet model's 1,000) show the ``top_k`` most voted, c_A always among them, and one grey bar "all
    others" with the rest of the votes. A dict, not a ``go.Figure``: it is redrawn twice a second while sampling
    runs, and building a validated Figure costs ~25 ms of the GIL that the sampling thread needs. With no votes yet
    the axis runs from 0 to 1 (Plotly's default for an empty range would be −1…1)."""
    counts = np.asarray(counts)
    rest = None
    if len(counts) <= max_bars:
        order = np.arange(len(counts))
    else:
        order = np.argsort(-counts, kind="stable")[:top_k]
        if top_class is not None and 0 <= top_class < len(counts) and top_class not in order:
            order = np.append(order[:-1], top_class)
        rest = int(counts.sum() - counts[order].sum())
    names = [class_names[i] if i < len(class_names) else str(i) for i in order]
    colors = ["#d62728" if top_class is not None and i == top_class else "#1f77b4" for i in order]
    values = [int(v) for v in counts[order]]
    if rest is not None:
        names.append(f"all others ({len(counts) - len(order):,} classes)")
        colors.append("#9e9e9e")
        values.append(rest)
    yaxis: dict[str, Any] = {"title": {"text": "votes"}, "rangemode": "tozero"}
    if not any(values):
        yaxis["range"] = [0, 1]
    return {
        "data": [{"type": "bar", "x": names, "y": values, "marker": {"color": colors}, "text": values,
                  "textposition": "outside", "cliponaxis": False}],
        "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "class"}, "type": "category"},
                   "yaxis": yaxis, "template": "plotly_white", "height": 340,
                   "margin": {"t": 50, "b": 40, "l": 40, "r": 10}},
    }


def sigma_axis(sigmas: Iterable[float]) -> dict[str, Any]:
    """A log-scaled x axis whose ticks are exactly the σ values compared, labelled as typed (0.25, 0.5, 1). Plotly's
    own log ticks label the minor ticks by their leading digit only, so σ = 0.5 read "5"."""
    values = sorted({float(v) for v in sigmas})
    return {"type": "log", "title": {"text": "σ"}, "tickmode": "array", "tickvals": values,
            "ticktext": [f"{v:g}" for v in values]}
