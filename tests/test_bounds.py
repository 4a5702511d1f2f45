import numpy as np
import pytest

from rs_core.smoothing.bounds import (
    cohen_radius,
    lecuyer_radius,
    li_radius,
    max_certifiable_radius,
    radius_from_p_lower,
)

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
    (dict(p_a=1.2, p_b=0.1, sigma=1.0), "p_a"),
    (dict(p_a=0.7, p_b=-0.1, sigma=1.0), "p_b"),
    (dict(p_a=0.7, p_b=0.5, sigma=1.0), "p_b"),
    (dict(p_a=0.7, p_b=0.2, sigma=0.0), "sigma"),
    (dict(p_a=0.7, p_b=0.2, sigma=float("nan")), "sigma"),
    (dict(p_a=float("nan"), p_b=0.2, sigma=1.0), "p_a"),
])
@pytest.mark.parametrize("fn", [cohen_radius, li_radius, lecuyer_radius])
def test_invalid_parameters_name_the_parameter(fn, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        fn(**kwargs)


@pytest.mark.parametrize("args, name", [((0, 0.001, 1.0), "n"), ((10, 1.0, 1.0), "alpha"), ((10, 0.001, -1.0), "sigma")])
def test_max_certifiable_radius_invalid(args, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        max_certifiable_radius(*args)
