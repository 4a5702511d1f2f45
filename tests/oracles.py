"""Exact oracles and device parametrization shared by the tests."""

from __future__ import annotations

import functools
import math

import numpy as np
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


class Switch(nn.Module):
    """Votes class 1 on its first noisy batch (the selection samples), class 0 on every later one."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = torch.zeros(x.shape[0], 2)
        out[:, 1 if self.calls == 2 else 0] = 1.0  # call 1 is the clean probe
        return out


def noise_marginal(noise: str, sigma: float):
    """The 1-D marginal (a frozen ``scipy.stats`` law) of each smoothing noise with standard deviation σ, written out
    here, independently of rs_core.smoothing.noises: Gaussian N(0, σ²), Laplace of scale σ/√2, uniform on ±σ√3."""
    if noise == "gaussian":
        return stats.norm(scale=sigma)
    if noise == "laplace":
        return stats.laplace(scale=sigma / math.sqrt(2.0))
    return stats.uniform(loc=-sigma * math.sqrt(3.0), scale=2.0 * sigma * math.sqrt(3.0))


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


_DIGITS = 20


def _log_density_dt(a, b):
    """log of Beta(a, b)'s density at q = 1 − e^(−t), times dq/dt = e^(−t)."""
    import mpmath as mp

    log_beta = mp.log(mp.beta(a, b))
    return lambda t: (a - 1) * mp.log1p(-mp.exp(-t)) - (b - 1) * t - log_beta - t


def _integrate(log_g, t0, extra):
    """log ∫_{t0}^∞ exp(log_g), the range cut at the given points (near the integrand's peak)."""
    import mpmath as mp

    points = sorted({t0, *(x for x in extra if x > t0)}) + [mp.inf]
    shift = max(log_g(x) for x in points[:-1])  # integrate a function of order 1 near its peak
    return mp.log(mp.quad(lambda t: mp.exp(log_g(t) - shift), points)) + shift


@functools.cache
def _log_mass(a: float, b: float, c: float):
    """log of Beta(a, b)'s mass on [c, 1]."""
    import mpmath as mp

    with mp.workdps(_DIGITS):
        t_c = -mp.log1p(-mp.mpf(c))
        return _integrate(_log_density_dt(mp.mpf(a), mp.mpf(b)), t_c, [t_c + 1, t_c + 10, t_c + 100])


@functools.cache  # a pure function of its arguments: the law at α and at 2α ask for many of the same points
def mixture_log_m(k: int, n: int, p: float, a: float = 1.0, b: float = 0.1, floor: float = 0.5) -> float:
    """log M_n(p) of the one-sided beta-binomial mixture, by numerical integration of its definition.

    M_n(p) = ∫_{max(p, c)}^1 (q/p)^k ((1−q)/(1−p))^(n−k) π(q) dq with π the Beta(a, b) density
    restricted to [c, 1] and divided by its mass there — computed with mpmath's quadrature at 30
    digits after the change of variable q = 1 − e^(−t) (the density's (1 − q)^(b−1) singularity at
    q = 1 becomes an exponential tail in t), sharing no code or closed form with rs_core.smoothing.stats.
    """
    import mpmath as mp

    with mp.workdps(_DIGITS):
        k, n, p = mp.mpf(k), mp.mpf(n), mp.mpf(p)
        a, b, c = mp.mpf(a), mp.mpf(b), mp.mpf(floor)
        log_density_dt = _log_density_dt(a, b)

        def log_f(t):
            fail = (n - k) * (-t - mp.log1p(-p)) if n > k else 0
            return k * (mp.log1p(-mp.exp(-t)) - mp.log(p)) + fail + log_density_dt(t)

        log_mass = _log_mass(float(a), float(b), float(c))
        t_lo = -mp.log1p(-max(p, c))
        u_mode = (n - k + b) / (n + a + b)  # near the integrand's peak, in u = 1 − q
        t_mode = -mp.log(u_mode)
        spread = 1 / mp.sqrt(n - k + b)  # the peak's width in t
        peak = [t_mode + s * spread for s in (-8, -3, -1, 0, 1, 3, 8)]
        log_int = _integrate(log_f, t_lo, [*peak, t_mode + 30 * spread, t_mode + 100, t_mode + 1000])
        return float(log_int - log_mass)


def crossing_thresholds(p: float, n_looks: int, batch: int, alpha: float, a: float, b: float, floor: float,
                        guess=None) -> list[int]:
    """For looks after batch, 2·batch, …: the smallest count k with M_n(p) ≥ 1/α (n + 1 if none), by the oracle.

    M_n(p) increases with k, so "the bound read at this look exceeds p" ⟺ k ≥ threshold. ``guess(n)``
    may propose a threshold (e.g. from the library); it is used only if the oracle confirms it.
    """
    level = math.log(1.0 / alpha)

    def crosses(k: int, n: int) -> bool:
        return mixture_log_m(k, n, p, a, b, floor) >= level

    out = []
    for t in range(1, n_looks + 1):
        n = t * batch
        k = None if guess is None else guess(n)
        confirmed = k is not None and (k > n or crosses(k, n)) and (k == 0 or not crosses(k - 1, n))
        if not confirmed:  # bisect with the oracle alone
            lo, hi = 0, n + 1  # crosses(hi) is taken as true for hi = n + 1
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if crosses(mid, n) else (mid + 1, hi)
            k = lo
        out.append(k)
    return out


def crossing_probability(p: float, batch: int, thresholds: list[int]) -> float:
    """Exact P(∃t: K_t ≥ thresholds[t]) for K_t the successes after t batches of Bernoulli(p) draws.

    Dynamic programming over the count: propagate the law of K over the paths that have not crossed yet.
    """
    step = stats.binom.pmf(np.arange(batch + 1), batch, p)
    alive, crossed = np.array([1.0]), 0.0
    for c in thresholds:
        alive = np.convolve(alive, step)
        if c < len(alive):
            crossed += alive[c:].sum()
            alive[c:] = 0.0
    return float(crossed)


def digit_png() -> bytes:
    """A dark "1" on white paper as PNG bytes (what a user uploads to the digit models)."""
    import io

    from PIL import Image

    img = Image.new("L", (120, 120), 255)
    img.paste(0, (55, 15, 68, 105))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
