"""Certified ℓ2 radii of a Gaussian-smoothed classifier from class probabilities.

All functions take numpy arrays (or scalars) ``p_a``, ``p_b`` with
``p_a + p_b <= 1`` and broadcast them; they return a float for scalar input and
an array otherwise. A radius is 0 where the bound certifies nothing.

- :func:`cohen_radius` — Cohen et al. (2019) Theorem 1, tight (Theorem 2).
- :func:`lecuyer_radius` — Lecuyer et al. (2019), PixelDP; Cohen et al. App. I.1.
- :func:`li_radius` — Li et al. (2018), Rényi divergence; Cohen et al. App. I.2.
- :func:`max_certifiable_radius` — CERTIFY's ceiling when all n samples agree
  (Cohen et al. Fig. 5 right).
- :func:`largest_radius` — that ceiling under either bound on pA: Clopper–Pearson (n fixed in
  advance; CERTIFY, the CLI) or the anytime-valid one of the app's live stream.
- :func:`radii_from_counts` — the three radii for vote counts (nA of n, optionally nB), under either bound.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from rs_core.checks import check_alpha, check_count, check_probability, check_sigma
from rs_core.smoothing.stats import (
    DEFAULT_MIXTURE,
    BetaMixture,
    anytime_lower_bound_complement,
    clopper_pearson_lower_complement,
)

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _probabilities(p_a, p_b) -> tuple[np.ndarray, np.ndarray, bool]:
    pa = check_probability(p_a, "p_a")
    pb = check_probability(p_b, "p_b")
    pa, pb = np.broadcast_arrays(pa, pb)
    if np.any(pa + pb > 1.0 + 1e-12):
        raise ValueError(f"p_b: p_a + p_b must be <= 1, got p_a={p_a!r}, p_b={p_b!r}")
    return pa.astype(float), pb.astype(float), pa.ndim == 0


def _out(r: np.ndarray, scalar: bool):
    return float(r) if scalar else r


def radius_from_p_lower(p_lower, sigma: float, complement=None):
    """σ·Φ⁻¹(p_lower), CERTIFY's radius with pB bounded by 1 − p_lower (0 below ½).

    Pass ``complement = 1 − p_lower`` when it is known more precisely than
    ``p_lower`` itself: Φ⁻¹(p) = Φ̄⁻¹(1 − p) then stays finite and accurate for
    p_lower within 1e-300 of 1, where ``norm.ppf(p_lower)`` would return inf.
    """
    sigma = check_sigma(sigma)
    q = 1.0 - check_probability(p_lower, "p_lower") if complement is None else check_probability(complement, "complement")
    r = np.where(q < 0.5, sigma * -special.ndtri(q), 0.0)  # Φ̄⁻¹(q): scipy's norm.isf is −ndtri, at 1/200 the cost
    return _out(np.asarray(r, dtype=float), np.ndim(r) == 0)


def cohen_radius(p_a, p_b, sigma: float):
    """σ/2 · (Φ⁻¹(pA) − Φ⁻¹(pB)), Cohen et al. Theorem 1; 0 where pA <= pB.

    >>> round(cohen_radius(0.9, 0.1, 1.0), 4)
    1.2816
    """
    sigma = check_sigma(sigma)
    pa, pb, scalar = _probabilities(p_a, p_b)
    with np.errstate(invalid="ignore"):
        r = sigma / 2.0 * (special.ndtri(pa) - special.ndtri(pb))  # Φ⁻¹ (scipy.stats.norm.ppf, bit for bit)
    r = np.where(pa > pb, r, 0.0)
    return _out(r, scalar)


def _feasible(v: np.ndarray) -> np.ndarray:
    """NaN (infeasible) → −inf, keeping +inf (an infinite radius, e.g. pA = 1)."""
    return np.where(np.isnan(v), -np.inf, v)


def _maximize(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
              grid: int = 400, iters: int = 60) -> np.ndarray:
    """Row-wise sup of f over [lo, hi]: a grid, then golden-section search around the best point.

    ``f`` maps an array of shape (N, G) of arguments to values; NaN marks an
    infeasible argument. Used for the one-dimensional sups in Lecuyer's and
    Li's bounds, whose objectives are smooth and unimodal in practice; the grid
    guards against a poor start and the result is never below the best grid value.
    """
    u = np.linspace(0.0, 1.0, grid)
    x = lo[:, None] + (hi - lo)[:, None] * u[None, :]
    v = _feasible(f(x))
    i = np.argmax(v, axis=1)
    rows = np.arange(len(lo))
    best = v[rows, i]
    a = x[rows, np.maximum(i - 1, 0)]
    b = x[rows, np.minimum(i + 1, grid - 1)]
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    fc = _feasible(f(c[:, None])[:, 0])
    fd = _feasible(f(d[:, None])[:, 0])
    for _ in range(iters):
        left = fc > fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        d_new = np.where(left, c, a + _GOLDEN * (b - a))
        c_new = np.where(left, b - _GOLDEN * (b - a), d)
        fd_new = np.where(left, fc, np.nan)
        fc_new = np.where(left, np.nan, fd)
        c, d = c_new, d_new
        need_c = np.isnan(fc_new)
        need_d = np.isnan(fd_new)
        fc = np.where(need_c, _feasible(f(c[:, None])[:, 0]), fc_new)
        fd = np.where(need_d, _feasible(f(d[:, None])[:, 0]), fd_new)
    return np.maximum(best, np.maximum(fc, fd))


def lecuyer_radius(p_a, p_b, sigma: float):
    """Lecuyer et al. (2019) PixelDP radius, in Cohen et al.'s notation (App. I.1).

    sup over 0 < β <= min(1, ½·ln(pA/pB)) of σβ / √(2·ln(1.25·(1+e^β) / (pA − e^{2β}·pB))),
    0 where no β qualifies.

    >>> round(lecuyer_radius(0.9, 0.1, 1.0), 4)
    0.3903
    """
    sigma = check_sigma(sigma)
    pa, pb, scalar = _probabilities(p_a, p_b)
    shape = pa.shape
    pa, pb = pa.ravel(), pb.ravel()
    with np.errstate(divide="ignore"):
        beta_max = np.minimum(1.0, 0.5 * np.log(pa / pb))
    ok = beta_max > 0
    r = np.zeros_like(pa)
    if np.any(ok):
        A, B = pa[ok][:, None], pb[ok][:, None]

        def f(beta: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                gap = A - np.exp(2.0 * beta) * B
                val = beta / np.sqrt(2.0 * np.log(1.25 * (1.0 + np.exp(beta)) / gap))
            return np.where((beta > 0) & (gap > 0), val, np.nan)

        r[ok] = sigma * np.maximum(_maximize(f, np.zeros(ok.sum()), beta_max[ok]), 0.0)
    return _out(r.reshape(shape), scalar)


def li_radius(p_a, p_b, sigma: float):
    """Li et al. (2018) Rényi-divergence radius, in Cohen et al.'s notation (App. I.2).

    sup over orders α' > 0, α' ≠ 1 of
    σ·√(−(2/α')·ln(1 − pA − pB + 2·[½(pA^{1−α'} + pB^{1−α'})]^{1/(1−α')})),
    0 where no order gives a positive value. Searched over log α' ∈ [−12, 12].

    >>> round(li_radius(0.9, 0.1, 1.0), 4)
    1.0319
    """
    sigma = check_sigma(sigma)
    pa, pb, scalar = _probabilities(p_a, p_b)
    shape = pa.shape
    pa, pb = pa.ravel(), pb.ravel()
    ok = pa > pb
    r = np.zeros_like(pa)
    if np.any(ok):
        with np.errstate(divide="ignore"):
            la, lb = np.log(pa[ok])[:, None], np.log(pb[ok])[:, None]
        rest = (1.0 - pa[ok] - pb[ok])[:, None]

        def f(log_order: np.ndarray) -> np.ndarray:
            order = np.exp(log_order)
            e = 1.0 - order
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                # log of the power mean [½(pA^e + pB^e)]^{1/e}, via logaddexp for stability
                log_mean = (np.logaddexp(e * la, e * lb) - math.log(2.0)) / e
                inside = rest + 2.0 * np.exp(log_mean)
                val = np.sqrt(-(2.0 / order) * np.log(inside))
            return np.where((np.abs(e) > 1e-9) & (inside < 1.0), val, np.nan)

        n = int(ok.sum())
        r[ok] = sigma * np.maximum(_maximize(f, np.full(n, -12.0), np.full(n, 12.0)), 0.0)
    return _out(r.reshape(shape), scalar)


def check_sample_sizes(n) -> np.ndarray:
    """``n`` (one sample size or an array of them) as an array, each a whole number ≥ 1, else ValueError naming n."""
    n_arr = np.asarray(n)
    if n_arr.ndim == 0:
        check_count(n_arr.item(), "n")
    elif not np.issubdtype(n_arr.dtype, np.integer) or np.any(n_arr < 1):
        raise ValueError(f"n: must be integers >= 1, got {n!r}")
    return n_arr


def max_certifiable_radius(n, alpha: float, sigma: float):
    """Largest radius CERTIFY can return with n estimation samples: all n agree.

    The Clopper–Pearson bound at k = n is α^{1/n}, so the radius is
    σ·Φ⁻¹(α^{1/n}), computed as σ·Φ̄⁻¹(1 − α^{1/n}) with 1 − α^{1/n} = −expm1(ln α / n)
    so that it stays accurate for large n. Vectorized over ``n``.

    >>> round(max_certifiable_radius(100_000, 0.001, 1.0), 3)
    3.811
    """
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    n_arr = check_sample_sizes(n)
    q = -np.expm1(math.log(alpha) / n_arr.astype(float))
    r = np.where(q < 0.5, sigma * -special.ndtri(q), 0.0)  # Φ̄⁻¹(q): scipy's norm.isf is −ndtri, at 1/200 the cost
    return _out(np.asarray(r, dtype=float), n_arr.ndim == 0)


# The two ways a count becomes a lower bound on pA, named as a Certificate's ``bound`` field names them
# (rs_core.smoothing.results.Bound; not imported from there: results imports this module).
CLOPPER_PEARSON = "clopper-pearson"
ANYTIME = "anytime-beta-mixture"
BOUND_KINDS = (CLOPPER_PEARSON, ANYTIME)


def _check_bound(bound: str) -> str:
    if bound not in BOUND_KINDS:
        raise ValueError(f"bound: must be one of {', '.join(BOUND_KINDS)}, got {bound!r}")
    return bound


def _check_mixture(mixture: BetaMixture) -> BetaMixture:
    if not isinstance(mixture, BetaMixture):
        # ValueError naming the parameter, as every check in rs_core raises (rs_core/checks.py)
        raise ValueError(f"mixture: must be a BetaMixture, got {type(mixture).__name__}")  # noqa: TRY004
    return mixture


@functools.lru_cache(maxsize=1 << 12)
def _anytime_q(k: int, n: int, alpha: float, mixture: BetaMixture) -> float:
    """1 − (anytime lower bound) for k of n, cached: the Bounds page redraws its ceiling curve on every rerun, and
    each value is a root search (~3 ms)."""
    return anytime_lower_bound_complement(k, n, alpha, mixture)


def largest_radius(sigma: float, n, alpha: float, bound: str = CLOPPER_PEARSON,
                   mixture: BetaMixture = DEFAULT_MIXTURE):
    """The largest radius a certificate from n estimation samples can have: all n vote for the top class.

    ``bound`` says how pA is bounded from below, as a Certificate's ``bound`` field does:

    - ``"clopper-pearson"`` (CERTIFY, the command line, Cohen et al.): valid for an n fixed in advance;
      σ·Φ⁻¹(α^{1/n}) (:func:`max_certifiable_radius`).
    - ``"anytime-beta-mixture"`` (the app's live stream, :class:`~rs_core.smoothing.stream.CertifyStream`):
      valid whenever the sampling is stopped, also by a rule that watches the bound; this costs a little, so
      its ceiling is slightly lower (σ = 0.5, n = 100,000, α = 0.001: 1.8868 against 1.9057).

    Vectorized over ``n`` (a float for scalar ``n``).

    >>> from rs_core.rounding import floor_str
    >>> [floor_str(largest_radius(0.5, 100_000, 0.001, b)) for b in ("clopper-pearson", "anytime-beta-mixture")]
    ['1.9057', '1.8868']
    """
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    if _check_bound(bound) == CLOPPER_PEARSON:
        return max_certifiable_radius(n, alpha, sigma)
    mixture = _check_mixture(mixture)
    n_arr = check_sample_sizes(n)
    q = np.array([_anytime_q(int(v), int(v), alpha, mixture) for v in n_arr.ravel()]).reshape(n_arr.shape)
    r = np.where(q < 0.5, sigma * -special.ndtri(q), 0.0)  # Φ̄⁻¹(q), as CERTIFY's decide computes it
    return _out(np.asarray(r, dtype=float), n_arr.ndim == 0)


@dataclass(frozen=True)
class CountRadii:
    """The three radii for one set of counts under one bound (:func:`radii_from_counts`).

    ``p_a_lower`` and ``p_b_upper`` are what the radii come from; ``alpha_a`` and ``alpha_b`` the failure
    probability spent on each (``alpha_b`` is None when pB = 1 − pA's lower bound, which costs nothing more).
    ``certified`` is False (and every radius None) when ``p_a_lower`` <= ½: CERTIFY abstains.
    """

    bound: str
    p_a_lower: float
    p_b_upper: float
    alpha_a: float
    alpha_b: float | None
    certified: bool
    cohen: float | None
    li: float | None
    lecuyer: float | None


def radii_from_counts(n_a: int, n: int, alpha: float, sigma: float, n_b: int | None = None,
                      bound: str = CLOPPER_PEARSON, mixture: BetaMixture = DEFAULT_MIXTURE) -> CountRadii:
    """Cohen's, Li's and Lecuyer's radii for n_a votes of n for the top class (and n_b for the runner-up).

    pA is bounded from below at level α by ``bound`` (see :func:`largest_radius`). Without ``n_b``, pB is
    bounded by 1 − that bound, as CERTIFY does (Cohen et al. Algorithm 2). With ``n_b`` — the votes of the most
    frequent class other than A — pA's lower bound and pB's upper bound each spend α/2 (union bound: both hold
    together with probability ≥ 1 − α, as Cohen et al. App. I's comparison needs). One upper bound from the largest
    of the other counts bounds every other class's probability at once: the class with the largest true
    probability has at most n_b votes, and the bound grows with the count. (As n − n_b ≥ n_a, pB's bound is
    never above 1 − pA's; equal when every other vote is B's.)

    As in CERTIFY, the class A must be chosen before these n samples are drawn (n0 selection samples), and the
    radii are None (abstain) when pA's lower bound is <= ½. Radii are exact floats; print them rounded down.

    >>> r = radii_from_counts(1000, 1000, 0.001, 1.0)
    >>> round(r.cohen, 6) == round(largest_radius(1.0, 1000, 0.001), 6), r.alpha_b
    (True, None)
    """
    n = check_count(n, "n")
    n_a = check_count(n_a, "n_a", minimum=0)
    if n_a > n:
        raise ValueError(f"n_a: must satisfy 0 <= n_a <= n, got n_a={n_a}, n={n}")
    if n_b is not None:
        n_b = check_count(n_b, "n_b", minimum=0)
        if n_a + n_b > n:
            raise ValueError(f"n_b: n_a + n_b must be <= n, got n_a={n_a}, n_b={n_b}, n={n}")
    alpha = check_alpha(alpha)
    sigma = check_sigma(sigma)
    bound = _check_bound(bound)
    mixture = _check_mixture(mixture)

    def q_lower(k: int, level: float) -> float:  # 1 − (lower bound on the probability of k votes of n)
        if bound == CLOPPER_PEARSON:
            return float(clopper_pearson_lower_complement(k, n, level))
        return _anytime_q(k, n, level, mixture)

    alpha_a = alpha if n_b is None else alpha / 2.0
    q_a = q_lower(n_a, alpha_a)
    p_a = 1.0 - q_a
    if 1.0 - p_a < q_a:  # the subtraction rounded up: step down, so p_a never exceeds the bound it stands for
        p_a = math.nextafter(p_a, 0.0)
    # The upper bound on pB is 1 − (lower bound on 1 − pB, from the n − n_b samples that did not vote B). At most
    # q_a in exact arithmetic (n − n_b ≥ n_a); min() keeps p_a + p_b ≤ 1 in floats too, as Li's and Lecuyer's need.
    p_b = q_a if n_b is None else min(q_lower(n - n_b, alpha / 2.0), q_a)
    certified = q_a < 0.5
    if not certified:
        return CountRadii(bound, p_a, p_b, alpha_a, None if n_b is None else alpha / 2.0, False, None, None, None)
    # Cohen's from the complement (accurate when pA's bound is within 1e-16 of 1); equal to σΦ⁻¹(pA) when pB = 1 − pA.
    cohen = sigma / 2.0 * (-special.ndtri(q_a) - special.ndtri(p_b))
    return CountRadii(bound, p_a, p_b, alpha_a, None if n_b is None else alpha / 2.0, True, float(cohen),
                      float(li_radius(p_a, p_b, sigma)), float(lecuyer_radius(p_a, p_b, sigma)))
