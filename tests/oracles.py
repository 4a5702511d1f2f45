"""Exact oracles and device parametrization shared by the tests."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn


class LinearOracle(nn.Module):
    """f(x) = 1[w·x + b > 0] as scores [0, w·x + b]: the smoothed classifier equals f,
    pA = Φ(|w·x+b| / (σ‖w‖)) and the true certified radius is |w·x+b| / ‖w‖ (Cohen et al. App. B)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.register_buffer("w", w.flatten().double())
        self.b = float(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = x.flatten(1).double() @ self.w + self.b
        return torch.stack([torch.zeros_like(margin), margin], dim=1)

    def margin(self, x: torch.Tensor) -> float:
        return float(x.flatten().double() @ self.w.cpu() + self.b)

    def true_class(self, x: torch.Tensor) -> int:
        return int(self.margin(x) > 0)

    def true_radius(self, x: torch.Tensor) -> float:
        return abs(self.margin(x)) / float(self.w.norm())

    def p_a(self, x: torch.Tensor, sigma: float) -> float:
        return float(stats.norm.cdf(abs(self.margin(x)) / (sigma * float(self.w.norm()))))


class RecordingModel(nn.Module):
    """Keeps every input batch; predicts class 0 (tests the noise, not the votes)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.zeros(x.shape[0], 2, device=x.device)


def make_oracle(p_a: float, sigma: float, shape=(1, 4, 4), seed: int = 0):
    """A linear oracle and an input x whose smoothed top-class probability is exactly ``p_a``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(math.prod(shape), generator=g).double()
    x = torch.rand(shape, generator=g)
    # Choose b so that w·x + b = σ‖w‖Φ⁻¹(pA)  ⇒  pA exactly as asked, class 1 on top.
    b = sigma * float(w.norm()) * float(stats.norm.ppf(p_a)) - float(w.double() @ x.flatten().double())
    return LinearOracle(w, b).eval(), x


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none found")


def devices():
    """CPU always, CUDA where present (the CUDA cases show as skipped elsewhere, with the reason)."""
    return ["cpu", pytest.param("cuda", marks=[cuda, pytest.mark.cuda])]
