import math

import numpy as np
import pytest
from oracles import mixture_log_m
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from rs_core.smoothing.stats import (
    BetaMixture,
    anytime_lower_bound,
    anytime_lower_bound_complement,
    binomial_pvalue,
    clopper_pearson_lower,
    clopper_pearson_lower_complement,
    log_mixture_martingale,
)


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (7, 10), (10, 10), (512, 1000), (99_990, 100_000), (100_000, 100_000)])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_matches_cohen_statsmodels_and_scipy(k, n, alpha):
    cohen = proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]
    got = clopper_pearson_lower(k, n, alpha)
    assert got == pytest.approx(cohen, rel=1e-10, abs=1e-15)
    if k > 0:
        assert got == pytest.approx(stats.beta.ppf(alpha, k, n - k + 1), rel=1e-12)
    assert clopper_pearson_lower_complement(k, n, alpha) == pytest.approx(1 - got, rel=1e-9, abs=1e-15)


def test_clopper_pearson_vectorized():
    k = np.array([0, 50, 100])
    np.testing.assert_allclose(clopper_pearson_lower(k, 100, 0.01),
                               [clopper_pearson_lower(int(i), 100, 0.01) for i in k])


def test_clopper_pearson_complement_keeps_precision_near_one():
    # All of 10^9 samples agree: 1 − α^{1/n} ≈ 6.9e-9, well resolved by the complement.
    q = clopper_pearson_lower_complement(10**9, 10**9, 0.001)
    assert q == pytest.approx(-math.expm1(math.log(0.001) / 1e9), rel=1e-9)


def test_clopper_pearson_is_exact_at_fixed_n():
    # P(bound > p) = P(Binomial(n, p) >= k*) <= α, computed exactly over all k.
    n, p, alpha = 200, 0.83, 0.01
    k = np.arange(n + 1)
    over = clopper_pearson_lower(k, n, alpha) > p
    assert stats.binom.pmf(k[over], n, p).sum() <= alpha


def test_binomial_pvalue_matches_scipy_binomtest():
    for a, b in [(60, 40), (990, 5), (50, 50), (3, 0)]:
        assert binomial_pvalue(a, b) == pytest.approx(stats.binomtest(a, a + b, 0.5).pvalue)
    assert binomial_pvalue(0, 0) == 1.0


@pytest.mark.parametrize("call, name", [
    (lambda: clopper_pearson_lower(5, 4, 0.01), "k"),
    (lambda: clopper_pearson_lower(1, 0, 0.01), "n"),
    (lambda: clopper_pearson_lower(1, 4, 0.0), "alpha"),
    (lambda: clopper_pearson_lower(1, 4, 1.0), "alpha"),
    (lambda: clopper_pearson_lower(1.5, 4, 0.1), "k, n"),
    (lambda: anytime_lower_bound(3, 2, 0.01), "k"),
    (lambda: anytime_lower_bound(1, 2, -1), "alpha"),
    (lambda: BetaMixture(a=0), "a"),
    (lambda: BetaMixture(floor=1.0), "floor"),
])
def test_invalid_parameters(call, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        call()


def test_anytime_bound_is_the_root_of_the_mixture_statistic():
    """L = inf{p : M(p) < 1/α}: M(L) >= 1/α (valid side) and M just above L is below 1/α (tight)."""
    rng = np.random.default_rng(0)
    threshold = math.log(1 / 0.001)
    for _ in range(200):
        n = int(rng.integers(1, 200_000))
        k = int(rng.integers(1, n + 1))
        q = anytime_lower_bound_complement(k, n, 0.001)
        p = 1 - q
        assert 0 <= p <= k / n
        assert log_mixture_martingale(k, n, p) >= threshold
        if p > 1e-6:
            assert log_mixture_martingale(k, n, p + 1e-6 * (1 - p)) < threshold


MIXTURES = [BetaMixture(), BetaMixture(17.0, 3.0, 0.5), BetaMixture(2.0, 2.0, 0.5), BetaMixture(6.0, 4.0, 0.6)]


@pytest.mark.parametrize("mixture", MIXTURES, ids=lambda m: f"Beta({m.a:g},{m.b:g})>={m.floor:g}")
@pytest.mark.parametrize("k, n, alpha", [(9, 10, 0.3), (95, 100, 0.001), (990, 1000, 0.05), (700, 1000, 0.2),
                                         (9_990, 10_000, 0.001), (99_990, 100_000, 0.01)])
def test_anytime_bound_is_the_root_of_an_independently_computed_mixture(mixture, k, n, alpha):
    """L = inf{p : M(p) < 1/α} with M integrated numerically from its definition (tests/oracles.py), at the
    stated α: any α inflation, a mis-normalized or mis-scaled mixture moves L off this root."""
    level = math.log(1 / alpha)
    m = (mixture.a, mixture.b, mixture.floor)
    low = anytime_lower_bound(k, n, alpha, mixture)
    assert 0 < low < k / n
    assert mixture_log_m(k, n, low, *m) >= level - 1e-9  # valid side: L is in the confidence set's closure
    assert mixture_log_m(k, n, low + 1e-6 * (k / n - low), *m) < level  # tight: a hair above L is outside


def test_anytime_bound_monotone_in_successes_and_zero_without_them():
    n = 1000
    bounds = [anytime_lower_bound(k, n, 0.001) for k in range(0, n + 1, 50)]
    assert bounds[0] == 0.0
    assert all(b2 > b1 for b1, b2 in zip(bounds, bounds[1:]))


def _anytime_radius(k, n, alpha):
    return stats.norm.isf(anytime_lower_bound_complement(k, n, alpha))


def _cp_radius(k, n, alpha):
    return stats.norm.isf(clopper_pearson_lower_complement(k, n, alpha))


@pytest.mark.parametrize("p_hat", [0.75, 0.9, 0.99, 0.999, 1.0])
def test_anytime_radius_within_two_percent_of_clopper_pearson_at_1e5(p_hat):
    n = 100_000
    k = round(p_hat * n)
    ratio = _anytime_radius(k, n, 0.001) / _cp_radius(k, n, 0.001)
    assert 0.98 <= ratio < 1.0


def _peeking_false_rates(p, alpha, streams, looks, every, seed):
    """Streams of Bernoulli(p) read every ``every`` samples; a stream counts as a false
    certificate if at any look the bound exceeds the true p (the worst stop-when-good rule)."""
    rng = np.random.default_rng(seed)
    k = np.cumsum(rng.binomial(every, p, size=(streams, looks)), axis=1)
    n = every * np.arange(1, looks + 1)[None, :]
    # Clopper–Pearson bound > p  ⟺  P(Binomial(n, p) >= k) < α  (beta–binomial identity).
    cp_false = np.any(stats.binom.sf(k - 1, n, p) < alpha, axis=1)
    # Anytime bound > p  ⟺  M_n(p) >= 1/α  (tested against the root finder above).
    at_false = np.any(log_mixture_martingale(k, n, p) >= math.log(1 / alpha), axis=1)
    return cp_false.sum(), at_false.sum()


@pytest.mark.slow
@pytest.mark.parametrize("p", [0.9, 0.99])
def test_peeking_breaks_clopper_pearson_but_not_the_anytime_bound(p):
    alpha, streams = 0.01, 2000
    cp, at = _peeking_false_rates(p, alpha, streams, looks=1000, every=100, seed=1)
    # Clopper–Pearson read every 100 samples up to 1e5: far above α (about 10 %).
    assert stats.binomtest(int(cp), streams, alpha, alternative="greater").pvalue < 1e-9
    assert cp / streams > 4 * alpha
    # The anytime sequence: consistent with a false-certificate rate <= α.
    assert stats.binomtest(int(at), streams, alpha, alternative="greater").pvalue > 1e-3


def test_running_maximum_of_anytime_bound_is_valid_at_every_look():
    # The event {∃t: max_{s<=t} L_s > p} equals {∃t: L_t > p}; check on concrete paths.
    rng = np.random.default_rng(3)
    x = rng.random(5000) < 0.8
    k = np.cumsum(x)
    looks = range(99, 5000, 100)
    bounds = [anytime_lower_bound(int(k[t]), t + 1, 0.05) for t in looks]
    running = np.maximum.accumulate(bounds)
    assert np.all(running <= 0.8 + 0.02)  # one path, not a proof: the bound hugs p from below
    assert running[-1] > 0.7


def test_clopper_pearson_is_scipy_stats_beta_bit_for_bit():
    """The bounds are computed with scipy.special (cheaper to import) and must equal scipy.stats' beta quantiles
    exactly, as they did when computed with them."""
    from scipy import special as sp
    from scipy import stats as st

    rng = np.random.default_rng(0)
    for n in (10, 39, 1000, 100_000, 1_000_000):
        k = np.unique(np.concatenate([np.arange(1, min(n, 300) + 1), rng.integers(1, n + 1, 300)]))
        for alpha in (0.1, 0.01, 0.001, 1e-5):
            np.testing.assert_array_equal(clopper_pearson_lower(k, n, alpha), st.beta.ppf(alpha, k, n - k + 1))
            np.testing.assert_array_equal(clopper_pearson_lower_complement(k, n, alpha),
                                          st.beta.isf(alpha, n - k + 1, k))
    p = np.linspace(1e-6, 1 - 1e-6, 1001)
    np.testing.assert_array_equal(sp.ndtri(p), st.norm.ppf(p))
    np.testing.assert_array_equal(sp.ndtr(-p * 5), st.norm.sf(p * 5))
