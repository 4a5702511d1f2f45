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


def perturbation_display(delta: torch.Tensor, size: int = 140) -> tuple[np.ndarray, float]:
    """A perturbation δ [C, H, W] as an image: 0.5 + k·δ (grey = unchanged, lighter = added, darker = removed), with
    k chosen so that the largest change reaches black or white. Returns the image and k, which the caption states:
    an adversarial δ is usually too faint to see at ×1."""
    peak = float(delta.detach().abs().max()) if delta.numel() else 0.0
    factor = 0.5 / peak if peak > 0 else 1.0
    return to_display(0.5 + factor * delta.detach().float().cpu(), size), factor


def interval_figure(radius: float, distance: float | None, eps_max: float) -> dict[str, Any]:
    """The ℓ2 distance from the input as one line: [0, R) certified (no adversarial example can exist there, with
    probability ≥ 1 − α), R to D where g's true robustness lies, and D where the attack found one (``distance`` None:
    none found up to ε max, so the truth lies beyond R, perhaps beyond ε max). A dict, like :func:`vote_figure`."""
    found = distance is not None
    end = max(eps_max, radius, distance if found else 0.0) * 1.08 or 1.0
    upper = distance if found else eps_max
    alarm = found and distance < radius
    bands = [(0.0, radius, "rgba(44,160,44,0.30)", "certified: no adversarial example within R")]
    if not alarm:
        bands.append((radius, upper, "rgba(158,158,158,0.25)",
                      "g's true robustness lies here" if found else "searched: none found up to ε max"))
    if found:
        bands.append((distance, end, "rgba(214,39,40,0.18)", "adversarial example found at D"))
    shapes = [{"type": "rect", "xref": "x", "yref": "y", "x0": a, "x1": b, "y0": -1, "y1": 1, "fillcolor": c,
               "line": {"width": 0}, "layer": "below"} for a, b, c, _ in bands if b > a]
    data: list[dict[str, Any]] = [
        # Invisible markers carry the bands' names into the legend.
        {"type": "scatter", "x": [None], "y": [None], "mode": "markers", "name": name,
         "marker": {"size": 12, "symbol": "square", "color": color}} for a, b, color, name in bands if b > a]
    data.append({"type": "scatter", "x": [0.0], "y": [0.0], "mode": "markers+text", "text": ["x"],
                 "textposition": "top center", "marker": {"size": 10, "color": "black"}, "name": "the input x",
                 "showlegend": False})
    data.append({"type": "scatter", "x": [radius], "y": [0.0], "mode": "markers+text", "text": [f"R = {radius:.4f}"],
                 "textposition": "top center", "marker": {"size": 14, "symbol": "line-ns-open", "color": "#2ca02c",
                                                            "line": {"width": 3}},
                 "name": "certified radius R", "showlegend": False})
    if found:
        data.append({"type": "scatter", "x": [distance], "y": [0.0], "mode": "markers+text",
                     "text": [f"D = {distance:.4f}"], "textposition": "bottom center",
                     "marker": {"size": 12, "symbol": "x", "color": "#d62728"}, "name": "adversarial example D",
                     "showlegend": False})
    else:
        data.append({"type": "scatter", "x": [eps_max], "y": [0.0], "mode": "markers+text",
                     "text": [f"ε max = {eps_max:g}"], "textposition": "bottom center",
                     "marker": {"size": 12, "symbol": "line-ns-open", "color": "#7f7f7f", "line": {"width": 2}},
                     "name": "ε max", "showlegend": False})
    title = ("Soundness alarm: the attack found an adversarial example inside the certified ball" if alarm else
             "ℓ2 distance from the input: certified up to R" + (", adversarial at D" if found else
                                                                 ", none found up to ε max"))
    return {"data": data,
            "layout": {"title": {"text": title}, "shapes": shapes, "template": "plotly_white", "height": 240,
                       "xaxis": {"title": {"text": "ℓ2 distance ‖δ‖₂ from the input"}, "range": [-0.03 * end, end]},
                       "yaxis": {"visible": False, "range": [-1, 1]},
                       "legend": {"orientation": "h", "y": -0.45}, "margin": {"t": 50, "b": 40, "l": 20, "r": 20}}}
