import math

import numpy as np
import pytest

from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import (
    cohen_radius,
    largest_radius,
    lecuyer_radius,
    li_radius,
    max_certifiable_radius,
    radii_from_counts,
    radius_from_p_lower,
)
from rs_core.smoothing.stats import clopper_pearson_lower_complement

P_A = np.array([0.6, 0.9, 0.99, 0.999])
# Reference values (σ = 1, pB = 1 − pA) restated in the issue from Cohen et al. Fig. 5 / App. I.
COHEN = [0.2533, 1.2816, 2.3263, 3.0902]
LI = [0.2022, 1.0319, 1.9080, 2.5757]
LECUYER = [0.0592, 0.3903, 0.5549, 0.5689]


@pytest.mark.parametrize("fn, expected", [(cohen_radius, COHEN), (li_radius, LI), (lecuyer_radius, LECUYER)])
def test_reference_values_to_four_decimals(fn, expected):
    got = fn(P_A, 1 - P_A, 1.0)
    np.testing.assert_array_equal(np.round(got, 4), expected)
    for p, e in zip(P_A, expected):  # the scalar path agrees with the vector path
        assert round(fn(float(p), 1 - float(p), 1.0), 4) == e


@pytest.mark.parametrize("fn", [cohen_radius, li_radius, lecuyer_radius])
def test_radius_scales_linearly_with_sigma(fn):
    np.testing.assert_allclose(fn(P_A, 1 - P_A, 0.25), 0.25 * fn(P_A, 1 - P_A, 1.0), rtol=1e-9)


def _grid(pa_min: float):
    pa, pb = np.meshgrid(np.linspace(pa_min, 0.9999, 80), np.linspace(1e-5, 0.99, 80))
    keep = pa + pb <= 1
    return pa[keep], pb[keep]


def test_cohen_dominates_li_dominates_lecuyer_on_a_grid():
    # pB = 1 − pA (Cohen et al. Fig. 5 left), and any pB <= 1 − pA once pA >= 0.1.
    p = np.linspace(0.5001, 0.99999, 400)
    for pa, pb in [(p, 1 - p), _grid(0.1)]:
        c, li, le = cohen_radius(pa, pb, 1.0), li_radius(pa, pb, 1.0), lecuyer_radius(pa, pb, 1.0)
        assert np.all(c >= li - 1e-9)
        assert np.all(li >= le - 1e-9)
        assert np.all(le >= 0) and np.any(le > 0)


def test_li_can_fall_below_lecuyer_for_tiny_pa_and_pb():
    # Not an optimizer failure: Li's objective at pA = 0.01, pB = 0.0005 peaks at
    # 0.1111 (order ≈ 0.74), while Lecuyer's, a function of pA/pB, reaches 0.2752.
    # Cohen's tight bound still dominates both.
    assert li_radius(0.01, 0.0005, 1.0) == pytest.approx(0.11109, abs=1e-4)
    assert lecuyer_radius(0.01, 0.0005, 1.0) == pytest.approx(0.27518, abs=1e-4)
    assert cohen_radius(0.01, 0.0005, 1.0) > lecuyer_radius(0.01, 0.0005, 1.0)


def test_no_certificate_where_pa_not_above_pb():
    pa, pb = _grid(0.01)
    none = pa <= pb
    assert none.any()
    for fn in (cohen_radius, li_radius, lecuyer_radius):
        assert np.all(fn(pa, pb, 1.0)[none] == 0)


def test_shapes_broadcast():
    pa = np.full((3, 2), 0.8)
    for fn in (cohen_radius, li_radius, lecuyer_radius):
        assert fn(pa, 0.1, 0.5).shape == (3, 2)


@pytest.mark.parametrize("n, expected", [(100, 1.500), (1_000, 2.463), (10_000, 3.199), (100_000, 3.811)])
def test_max_certifiable_radius(n, expected):
    assert round(max_certifiable_radius(n, 0.001, 1.0), 3) == expected
    np.testing.assert_allclose(max_certifiable_radius(np.array([n]), 0.001, 2.0), [2 * max_certifiable_radius(n, 0.001, 1.0)])


def test_max_certifiable_radius_stays_finite_and_grows_for_huge_n():
    r = max_certifiable_radius(np.array([10**8, 10**12, 10**15]), 0.001, 1.0)
    assert np.all(np.isfinite(r)) and np.all(np.diff(r) > 0)


def test_radius_from_p_lower_uses_complement_near_one():
    # p_lower = 1 − 1e-20 rounds to 1.0 as a float; the complement keeps the radius finite.
    r = radius_from_p_lower(1.0, 1.0, complement=1e-20)
    assert r == pytest.approx(9.262340, rel=1e-6)
    assert radius_from_p_lower(0.4, 1.0) == 0.0
    assert radius_from_p_lower(0.9, 0.5) == pytest.approx(0.5 * 1.2815516, rel=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    ({"p_a": 1.2, "p_b": 0.1, "sigma": 1.0}, "p_a"),
    ({"p_a": 0.7, "p_b": -0.1, "sigma": 1.0}, "p_b"),
    ({"p_a": 0.7, "p_b": 0.5, "sigma": 1.0}, "p_b"),
    ({"p_a": 0.7, "p_b": 0.2, "sigma": 0.0}, "sigma"),
    ({"p_a": 0.7, "p_b": 0.2, "sigma": float("nan")}, "sigma"),
    ({"p_a": float("nan"), "p_b": 0.2, "sigma": 1.0}, "p_a"),
])
@pytest.mark.parametrize("fn", [cohen_radius, li_radius, lecuyer_radius])
def test_invalid_parameters_name_the_parameter(fn, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        fn(**kwargs)


@pytest.mark.parametrize("args, name", [((0, 0.001, 1.0), "n"), ((10, 1.0, 1.0), "alpha"), ((10, 0.001, -1.0), "sigma")])
def test_max_certifiable_radius_invalid(args, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        max_certifiable_radius(*args)


# --- largest_radius and radii_from_counts (issue 27 items 5 and 7), against computations that do not use them ---

def _cp_lower(k, n, level):
    """One-sided Clopper–Pearson lower bound, from scipy.stats directly."""
    from scipy import stats

    return 0.0 if k == 0 else float(stats.beta.ppf(level, k, n - k + 1))


def _cp_upper(k, n, level):
    from scipy import stats

    return 1.0 if k == n else float(stats.beta.ppf(1.0 - level, k + 1, n - k))


def _anytime_ceiling_by_quadrature(n, alpha, a=1.0, b=0.1, c=0.5):
    """The anytime bound at n of n votes from its definition, by numerical integration and root finding (not the
    incomplete-beta closed form rs_core uses): L = inf{p : M(p) < 1/α} with
    M(p) = ∫_{max(p,c)}^1 (q/p)^n π(q) dq, π the Beta(1, b) density b(1 − q)^(b−1) restricted to [c, 1].
    Substituting u = (1 − q)^b makes π(q) dq = du / (1 − c)^b, so
    M(p) = ∫_0^{(1 − max(p, c))^b} ((1 − u^{1/b}) / p)^n du / (1 − c)^b (a = 1 only)."""
    from scipy import integrate, optimize

    assert a == 1.0

    def log_m(p):
        top = (1.0 - max(p, c)) ** b
        peak = -n * math.log(p)  # the integrand's largest value (at u = 0), factored out
        val, _ = integrate.quad(lambda u: math.exp(n * (math.log1p(-u ** (1 / b)) - math.log(p)) - peak), 0.0, top,
                                epsabs=0, epsrel=1e-10, limit=200)
        return peak + math.log(val) - b * math.log(1.0 - c)

    return optimize.brentq(lambda p: log_m(p) - math.log(1 / alpha), 0.5 + 1e-12, 1 - 1e-15, xtol=1e-16, rtol=1e-15)


def test_largest_radius_reproduces_both_numbers_the_pages_show():
    """Home and Bounds (Clopper–Pearson) and the Certify page's live stream (anytime): n = 100,000, σ = 0.5,
    α = 0.001."""
    assert floor_str(largest_radius(0.5, 100_000, 0.001, "clopper-pearson")) == "1.9057"
    assert floor_str(largest_radius(0.5, 100_000, 0.001, "anytime-beta-mixture")) == "1.8868"
    assert largest_radius(0.5, 100_000, 0.001) == max_certifiable_radius(100_000, 0.001, 0.5)  # the default is CP


@pytest.mark.parametrize("n", [10, 1_000, 100_000, 10**7])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_largest_radius_clopper_pearson_is_sigma_times_ppf_of_alpha_to_the_one_over_n(n, alpha):
    from scipy import stats

    expected = max(0.0, 0.7 * float(stats.norm.ppf(alpha ** (1.0 / n))))  # CP at k = n is α^(1/n) exactly
    assert largest_radius(0.7, n, alpha, "clopper-pearson") == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert _cp_lower(n, n, alpha) == pytest.approx(alpha ** (1.0 / n), rel=1e-12)


@pytest.mark.parametrize("n, alpha", [(1_000, 0.001), (100_000, 0.001), (100_000, 0.05), (10**6, 1e-6)])
def test_largest_radius_anytime_matches_its_definition_by_quadrature(n, alpha):
    from scipy import stats

    p = _anytime_ceiling_by_quadrature(n, alpha)
    got = largest_radius(0.5, n, alpha, "anytime-beta-mixture")
    assert got == pytest.approx(0.5 * float(stats.norm.ppf(p)), rel=1e-6)
    assert got < largest_radius(0.5, n, alpha, "clopper-pearson")  # the price of stopping whenever you like


def test_largest_radius_is_the_certify_streams_radius_when_every_vote_agrees():
    """The same number a CertifyStream would report at n of n votes (its decide() on the anytime complement)."""
    from rs_core.smoothing.results import decide
    from rs_core.smoothing.stats import DEFAULT_MIXTURE, anytime_lower_bound_complement

    for n in (100, 5_000, 100_000):
        _, radius, ok = decide(anytime_lower_bound_complement(n, n, 0.001, DEFAULT_MIXTURE), 0.25)
        assert ok and largest_radius(0.25, n, 0.001, "anytime-beta-mixture") == radius


def test_largest_radius_vectorized_and_abstains_where_nothing_can_be_certified():
    n = np.array([10, 100, 10_000])
    got = largest_radius(1.0, n, 0.001, "anytime-beta-mixture")
    assert got.shape == (3,) and got[0] == 0.0 and 0 < got[1] < got[2]  # 10 votes of 10 do not reach pA > ½ here
    np.testing.assert_array_equal(got, [largest_radius(1.0, int(v), 0.001, "anytime-beta-mixture") for v in n])


@pytest.mark.parametrize("args, kwargs, name", [
    ((1.0, 0, 0.001), {}, "n"), ((1.0, 10, 1.0), {}, "alpha"), ((0.0, 10, 0.001), {}, "sigma"),
    ((1.0, 10, 0.001), {"bound": "cp"}, "bound"),
    ((1.0, np.array([5, 0]), 0.001), {"bound": "anytime-beta-mixture"}, "n"),
    ((1.0, 10, 0.001), {"bound": "anytime-beta-mixture", "mixture": "beta"}, "mixture"),
])
def test_largest_radius_invalid(args, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        largest_radius(*args, **kwargs)


@pytest.mark.parametrize("bound", ["clopper-pearson", "anytime-beta-mixture"])
@pytest.mark.parametrize("n", [1, 100, 100_000])
def test_radii_from_counts_at_n_of_n_is_the_ceiling(bound, n):
    r = radii_from_counts(n, n, 0.01, 0.5, bound=bound)
    ceiling = largest_radius(0.5, n, 0.01, bound)
    if ceiling == 0.0:
        assert not r.certified and r.cohen is None
    else:
        assert r.certified and r.cohen == pytest.approx(ceiling, rel=1e-12)
        assert r.alpha_a == 0.01 and r.alpha_b is None and r.p_b_upper == pytest.approx(1 - r.p_a_lower, abs=1e-15)


@pytest.mark.parametrize("n_a, n", [(990, 1000), (9_000, 10_000), (600, 1_000), (99_990, 100_000)])
def test_radii_from_counts_clopper_pearson_against_scipy(n_a, n):
    from scipy import stats

    r = radii_from_counts(n_a, n, 0.001, 0.5)
    p = _cp_lower(n_a, n, 0.001)
    assert r.p_a_lower == pytest.approx(p, rel=1e-12) and r.p_a_lower <= 1 - (1 - p) * (1 - 1e-12)
    assert r.cohen == pytest.approx(0.5 * float(stats.norm.ppf(p)), rel=1e-9)
    # Li and Lecuyer at the same pA and pB = 1 − pA.
    assert r.li == li_radius(r.p_a_lower, r.p_b_upper, 0.5)
    assert r.lecuyer == lecuyer_radius(r.p_a_lower, r.p_b_upper, 0.5)
    assert r.cohen >= r.li >= r.lecuyer > 0


def test_radii_from_counts_with_nb_splits_alpha_and_matches_scipy():
    from scipy import stats

    n_a, n_b, n, alpha, sigma = 9_800, 150, 10_000, 0.01, 0.25
    r = radii_from_counts(n_a, n, alpha, sigma, n_b=n_b)
    assert r.alpha_a == r.alpha_b == alpha / 2  # union bound: each at α/2
    p_a, p_b = _cp_lower(n_a, n, alpha / 2), _cp_upper(n_b, n, alpha / 2)
    assert r.p_a_lower == pytest.approx(p_a, rel=1e-12) and r.p_b_upper == pytest.approx(p_b, rel=1e-9)
    assert r.cohen == pytest.approx(sigma / 2 * (stats.norm.ppf(p_a) - stats.norm.ppf(p_b)), rel=1e-9)
    assert r.li == li_radius(r.p_a_lower, r.p_b_upper, sigma)
    assert r.lecuyer == lecuyer_radius(r.p_a_lower, r.p_b_upper, sigma)
    # A small nB bounds pB well below 1 − pA: more radius than CERTIFY's pB = 1 − pA (at the full α) here.
    assert r.cohen > radii_from_counts(n_a, n, alpha, sigma).cohen


@pytest.mark.parametrize("bound", ["clopper-pearson", "anytime-beta-mixture"])
def test_radii_from_counts_pb_bound_never_exceeds_one_minus_pa_bound(bound):
    """n − nB ≥ nA, so pB's upper bound is at most 1 − pA's lower bound; equal when every other vote is B's."""
    r = radii_from_counts(900, 1_000, 0.01, 1.0, n_b=100, bound=bound)
    assert r.p_b_upper == pytest.approx(1 - r.p_a_lower, rel=1e-12)
    for n_b in (0, 1, 50, 99):
        r = radii_from_counts(900, 1_000, 0.01, 1.0, n_b=n_b, bound=bound)
        assert r.p_a_lower + r.p_b_upper <= 1.0


@pytest.mark.parametrize("bound", ["clopper-pearson", "anytime-beta-mixture"])
def test_radii_from_counts_anytime_uses_the_streams_bound(bound):
    from rs_core.smoothing.stats import DEFAULT_MIXTURE, anytime_lower_bound, clopper_pearson_lower

    r = radii_from_counts(9_500, 10_000, 0.001, 1.0, n_b=300, bound=bound)
    lower = clopper_pearson_lower if bound == "clopper-pearson" else (
        lambda k, n, a: anytime_lower_bound(k, n, a, DEFAULT_MIXTURE))
    assert r.p_a_lower == pytest.approx(lower(9_500, 10_000, 0.0005), rel=1e-12)
    assert r.p_b_upper == pytest.approx(1 - lower(9_700, 10_000, 0.0005), rel=1e-9)
    assert r.bound == bound


def test_anytime_radii_are_below_clopper_pearsons():
    cp = radii_from_counts(990, 1_000, 0.001, 1.0)
    at = radii_from_counts(990, 1_000, 0.001, 1.0, bound="anytime-beta-mixture")
    assert at.p_a_lower < cp.p_a_lower and at.cohen < cp.cohen and at.li < cp.li and at.lecuyer <= cp.lecuyer


@pytest.mark.parametrize("n_a, n", [(500, 1_000), (0, 10), (520, 1_000), (1, 1)])
def test_radii_from_counts_abstain_when_the_lower_bound_is_at_most_a_half(n_a, n):
    for bound in ("clopper-pearson", "anytime-beta-mixture"):
        r = radii_from_counts(n_a, n, 0.001, 1.0, bound=bound)
        assert r.p_a_lower <= 0.5 and not r.certified and (r.cohen, r.li, r.lecuyer) == (None, None, None)


def test_radii_from_counts_abstains_at_exactly_a_half():
    """1 of 1 at α = ½: Clopper–Pearson's bound is α^(1/n) = ½ exactly — not > ½, so no certificate."""
    r = radii_from_counts(1, 1, 0.5, 1.0)
    assert r.p_a_lower == 0.5 and not r.certified


def test_radii_from_counts_lower_bound_is_never_rounded_up_near_one():
    # At these n the float 1 − q rounds up (above the bound it stands for) for 1,000, 10,000 and 10^7, not for 10^6.
    ns = (1_000, 10_000, 10**6, 10**7)
    assert sum(1.0 - (1.0 - float(clopper_pearson_lower_complement(n, n, 0.001))) <
               float(clopper_pearson_lower_complement(n, n, 0.001)) for n in ns) == 3
    for n in ns:
        r = radii_from_counts(n, n, 0.001, 1.0)
        q = float(clopper_pearson_lower_complement(n, n, 0.001))
        assert 1.0 - r.p_a_lower >= q  # the float p_a_lower never exceeds 1 − q


@pytest.mark.parametrize("kwargs, name", [
    ({"n_a": 11, "n": 10}, "n_a"), ({"n_a": -1, "n": 10}, "n_a"), ({"n_a": 1.5, "n": 10}, "n_a"),
    ({"n_a": 1, "n": 0}, "n"), ({"n_a": 5, "n": 10, "n_b": 6}, "n_b"), ({"n_a": 5, "n": 10, "n_b": -1}, "n_b"),
    ({"n_a": 5, "n": 10, "alpha": 0.0}, "alpha"),
    ({"n_a": 5, "n": 10, "alpha": 1.0}, "alpha"), ({"n_a": 5, "n": 10, "sigma": -1.0}, "sigma"),
    ({"n_a": 5, "n": 10, "bound": "anytime"}, "bound"), ({"n_a": True, "n": 10}, "n_a"),
])
def test_radii_from_counts_invalid_parameters_name_the_parameter(kwargs, name):
    args = {"alpha": 0.001, "sigma": 1.0, **kwargs}
    with pytest.raises(ValueError, match=f"^{name}:"):
        radii_from_counts(**args)
