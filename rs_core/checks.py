"""Parameter checks shared by the public functions.

Every check raises ``ValueError`` whose message starts with the parameter's name,
so a caller (the app, the CLI, a user's script) can show it as it is. Nothing is
clamped or coerced silently. The one exception, :func:`check_options`, raises ``TypeError`` for an
unknown keyword, as Python itself does.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """A finite noise level σ > 0."""
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise ValueError(f"{name}: must be a real number, got {sigma!r}")
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{name}: must be finite and > 0, got {sigma!r}")
    return sigma


def check_count(value: int, name: str, minimum: int = 1) -> int:
    """An integer ≥ ``minimum`` (sample sizes, batch sizes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """A failure probability strictly inside (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"{name}: must be a real number, got {alpha!r}")
    alpha = float(alpha)
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"{name}: must be in (0, 1), got {alpha!r}")
    return alpha


def check_seed(seed: int | None) -> int | None:
    """``None`` or a non-negative integer that fits a torch generator seed."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed: must be an integer or None, got {seed!r}")
    seed = int(seed)
    if not (0 <= seed < 2**64):
        raise ValueError(f"seed: must be in [0, 2**64), got {seed}")
    return seed


def check_options(options: Mapping[str, Any], declared: type) -> dict[str, Any]:
    """``**options`` as a plain dict, when every name in it is a key of the ``TypedDict`` ``declared``.

    An unknown name raises ``TypeError`` (as an unknown keyword argument does), before anything is built or run.
    """
    allowed = declared.__required_keys__ | declared.__optional_keys__
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"unexpected keyword argument {', '.join(map(repr, unknown))}; "
                        f"the options are {', '.join(sorted(allowed))}")
    return dict(options)


def check_images(x: torch.Tensor, ndim: int, name: str = "x") -> torch.Tensor:
    """A finite floating tensor with ``ndim`` dimensions ([C,H,W] or [N,C,H,W])."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        shape = "[C, H, W]" if ndim == 3 else "[N, C, H, W]"
        raise ValueError(f"{name}: must have shape {shape}, got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name}: is empty, shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: must be a floating tensor with values in [0, 1], got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def check_probability(p, name: str):
    """Array-like of probabilities in [0, 1]."""
    import numpy as np

    arr = np.asarray(p, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"{name}: must be probabilities in [0, 1], got {p!r}")
    return arr
