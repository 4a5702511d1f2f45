"""Confidence bounds and tests on Monte Carlo vote counts.

Cohen, Rosenfeld & Kolter (2019), §3.2 and Appendix C: CERTIFY lower-bounds
pA with a one-sided Clopper–Pearson interval; PREDICT tests the two top counts
with a binomial test. Both are valid for a sample size fixed in advance. For a
live view where the user may stop whenever they like, :func:`anytime_lower_bound`
gives a confidence *sequence* that is valid uniformly over time.

Bounds near 1 are also available as their complement ``1 − p_lower`` (the
``*_complement`` functions), computed directly so that the radius
σΦ⁻¹(p_lower) = σ·Φ⁻¹ᶜ(1 − p_lower) stays accurate when p_lower rounds to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
# scipy.special only at import: scipy.stats and scipy.optimize take ~0.4 s more to import, paid by every command
# line start; the few calls that need them import them where they are used.
from scipy import special

from rs_core.checks import check_alpha


def _check_kn(k, n) -> tuple[np.ndarray, np.ndarray]:
    k_arr, n_arr = np.asarray(k), np.asarray(n)
    if not (np.issubdtype(k_arr.dtype, np.integer) and np.issubdtype(n_arr.dtype, np.integer)):
        raise ValueError(f"k, n: must be integers, got {k!r}, {n!r}")
    if np.any(n_arr < 1):
        raise ValueError(f"n: must be >= 1, got {n!r}")
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError(f"k: must satisfy 0 <= k <= n, got k={k!r}, n={n!r}")
    return k_arr.astype(float), n_arr.astype(float)


def _scalar_or_array(a: np.ndarray):
    return float(a) if a.ndim == 0 else a


def clopper_pearson_lower(k, n, alpha: float):
    """One-sided (1 − α) Clopper–Pearson lower bound on a binomial proportion.

    ``P(p < bound) <= alpha`` for a sample size ``n`` fixed in advance. Identical
    to Cohen et al.'s ``proportion_confint(k, n, alpha=2*alpha, method="beta")[0]``
    and to ``scipy.stats.beta.ppf(alpha, k, n - k + 1)`` (computed as the same
    ``scipy.special.betaincinv``, bit for bit; tests/test_stats.py checks it); 0 when
    ``k == 0``. Vectorized over ``k`` and ``n``.

    >>> round(clopper_pearson_lower(100, 100, 0.001), 6)
    0.933254
    """
    alpha = check_alpha(alpha)
    kf, nf = _check_kn(k, n)
    with np.errstate(invalid="ignore"):
        out = np.where(kf > 0, special.betaincinv(np.maximum(kf, 1), nf - kf + 1, alpha), 0.0)
    return _scalar_or_array(out)


def clopper_pearson_lower_complement(k, n, alpha: float):
    """``1 − clopper_pearson_lower(k, n, alpha)``, accurate when the bound is near 1.

    By the symmetry ``1 − Beta(k, n−k+1) ~ Beta(n−k+1, k)`` this is the upper
    α-quantile of Beta(n−k+1, k), which scipy computes without cancellation
    (``scipy.special.betainccinv``: ``scipy.stats.beta.isf`` bit for bit).
    """
    alpha = check_alpha(alpha)
    kf, nf = _check_kn(k, n)
    with np.errstate(invalid="ignore"):
        out = np.where(kf > 0, special.betainccinv(nf - kf + 1, np.maximum(kf, 1), alpha), 1.0)
    return _scalar_or_array(out)


def binomial_pvalue(n_a: int, n_b: int) -> float:
    """Two-sided binomial test p-value of ``n_a`` successes in ``n_a + n_b`` at p = ½.

    PREDICT (Cohen et al. Algorithm 1) returns the top class only when this is
    at most α; ``scipy.stats.binomtest`` replaces the removed ``binom_test``.
    """
    n_a, n_b = int(n_a), int(n_b)
    if n_a < 0 or n_b < 0:
        raise ValueError(f"n_a, n_b: must be >= 0, got {n_a}, {n_b}")
    if n_a + n_b == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(n_a, n_a + n_b, p=0.5).pvalue)


@dataclass(frozen=True)
class BetaMixture:
    """Mixing distribution of the anytime bound: Beta(a, b) restricted to [floor, 1].

    The defaults put most mass near pA = 1, where certificates are large, and
    none below ½, where CERTIFY abstains anyway; with them the radius at a fixed
    n = 10⁵, α = 0.001 is within about 1.5 % of Clopper–Pearson's for observed
    pA between 0.75 and 0.999 (see the README for the measured table).
    """

    a: float = 1.0
    b: float = 0.1
    floor: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and self.a > 0):
            raise ValueError(f"a: must be finite and > 0, got {self.a!r}")
        if not (math.isfinite(self.b) and self.b > 0):
            raise ValueError(f"b: must be finite and > 0, got {self.b!r}")
        if not (0.0 <= self.floor < 1.0):
            raise ValueError(f"floor: must be in [0, 1), got {self.floor!r}")


DEFAULT_MIXTURE = BetaMixture()


_FLOAT_MAX = float(np.finfo(np.float64).max)


def _nan_to_minus_inf(x):
    """``np.nan_to_num(x, nan=-inf)`` (NaN → −inf, ±inf → ±largest float), with a plain-float path for one value:
    the anytime bound's root finder calls this tens of times per bound, and nan_to_num costs ~8 µs a call."""
    if np.ndim(x) == 0:
        v = float(x)
        return -math.inf if math.isnan(v) else min(max(v, -_FLOAT_MAX), _FLOAT_MAX)
    return np.nan_to_num(x, nan=-np.inf)


def _log_betainc(a, b, x):
    """log I_x(a, b), never above the truth and finite where ``betainc`` underflows.

    Where I_x underflows to 0 (counts far below the mixture's floor), the
    first term of the all-positive series I_x(a,b) = xᵃ(1−x)ᵇ/(a·B(a,b))·[1 + Σ…]
    (Abramowitz & Stegun 26.5.4) is used instead: a lower bound, so the
    statistic is underestimated and the confidence bound only gets more
    conservative, never invalid.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.log(special.betainc(a, b, x))
        first_term = special.xlogy(a, x) + special.xlog1py(b, -x) - np.log(a) - special.betaln(a, b)
    return np.maximum(direct, _nan_to_minus_inf(first_term))


def log_mixture_martingale(k, n, p, mixture: BetaMixture = DEFAULT_MIXTURE):
    """log M_n(p), the one-sided beta-binomial mixture statistic (vectorized).

    ``M_n(p) = ∫_{max(p,c)}^1 (q/p)^k ((1−q)/(1−p))^(n−k) π(q) dq`` with π the
    Beta(a, b) density restricted to [c, 1] and renormalized (c = ``floor``).
    Closed form with the regularized incomplete beta function I:
    ``B(a+k, b+n−k)·I_{1−max(p,c)}(b+n−k, a+k) / (B(a,b)·I_{1−c}(b, a)) / (p^k (1−p)^(n−k))``.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    p = np.asarray(p, dtype=float)
    a, b, c = mixture.a, mixture.b, mixture.floor
    f = n - k
    upper = 1.0 - np.maximum(p, c)
    with np.errstate(divide="ignore"):
        return (
            special.betaln(a + k, b + f)
            + _log_betainc(b + f, a + k, upper)
            - special.betaln(a, b)
            - np.log(special.betainc(b, a, 1.0 - c))
            - special.xlogy(k, p)
            - special.xlog1py(f, -p)
        )


def anytime_lower_bound_complement(
    k: int, n: int, alpha: float, mixture: BetaMixture = DEFAULT_MIXTURE
) -> float:
    """``1 − anytime_lower_bound(k, n, alpha)``, accurate when the bound is near 1."""
    alpha = check_alpha(alpha)
    kf, nf = _check_kn(k, n)
    if kf.ndim != 0:
        raise ValueError("k: the anytime bound takes one count at a time")
    k, n = int(kf), int(nf)
    if k == 0:
        return 1.0
    threshold = math.log(1.0 / alpha)

    def g(q: float) -> float:  # increasing in q on [1 − k/n, 1)
        return float(log_mixture_martingale(k, n, 1.0 - q, mixture)) - threshold

    lo = (n - k) / n  # q at p = p̂: M <= 1 < 1/α here
    if g(lo) >= 0:
        # Cannot happen for a valid mixture (M(p̂) <= 1); refuse rather than guess.
        raise ArithmeticError("anytime bound: mixture statistic exceeds 1/α at the MLE")
    hi = lo + (1.0 - lo) / 2.0
    while g(hi) < 0:
        # Walk towards q = 1 (p = 0) geometrically; M → ∞ there since k > 0.
        lo, hi = hi, hi + (1.0 - hi) / 2.0
        if 1.0 - hi < 1e-300:
            return 1.0
    # Brent's method finds the root fast; the loop after it moves the answer
    # to the safe side, so that the reported bound p = 1 − q satisfies
    # M(p) >= 1/α, i.e. lies at or below the exact infimum of the confidence
    # set, never above it.
    from scipy.optimize import brentq

    q = brentq(g, lo, hi, xtol=1e-300, rtol=4e-15, maxiter=200)
    step = 4e-15 * q
    while g(q) < 0:
        q = min(1.0, q + step)
        step *= 2.0
    return q


def anytime_lower_bound(
    k: int, n: int, alpha: float, mixture: BetaMixture = DEFAULT_MIXTURE
) -> float:
    """Anytime-valid one-sided (1 − α) lower confidence sequence for a Bernoulli mean.

    ``P(∃ n ≥ 1: p < L_n) <= alpha``: the bound may be read after every sample
    and the sampling stopped whenever the reader likes (also by a rule that
    looks at the bound), and the bound at the stopping time is still valid; so
    is the running maximum ``max_{m<=n} L_m``. A Clopper–Pearson bound read that
    way is not (tests/test_stats.py measures how far it exceeds α).

    Construction (one-sided beta-binomial mixture; Robbins 1970; Howard,
    Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
    confidence sequences", Ann. Statist. 49(2), §3): for each candidate p,
    ``M_n(p) = ∫_{max(p,c)}^1 Π_i (q/p)^{X_i} ((1−q)/(1−p))^{1−X_i} π(q) dq``
    (:func:`log_mixture_martingale`) mixes likelihood-ratio martingales over
    alternatives q ≥ p with sub-probability weight π([max(p,c), 1]) <= 1, so
    under the true p it is a non-negative supermartingale with M_0 <= 1, and by
    Ville's inequality ``P(∃n: M_n(p) >= 1/α) <= α``. Then
    ``L_n = inf{p : M_n(p) < 1/α}``. Because the weight is not renormalized per
    p, M_n(p) decreases in p on (0, k/n], so L_n is the unique root there,
    found by root finding that errs only downwards.

    >>> 0.0 < anytime_lower_bound(990, 1000, 0.001) < clopper_pearson_lower(990, 1000, 0.001)
    True
    """
    return 1.0 - anytime_lower_bound_complement(k, n, alpha, mixture)
