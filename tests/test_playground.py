"""rs_core/smoothing/playground.py against exact laws: the half-plane's smoothed classifier is Φ of the signed distance over σ,
and its true certified radius is the distance to the line (Cohen et al. App. B, Theorem 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from rs_core.smoothing import playground as pg


class Wrapped(nn.Module):
    """The half-plane hidden behind another module: the code takes its general (Monte Carlo, quadrature) paths."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = pg.HalfPlane()
        self.eval()

    def forward(self, x):
        return self.inner(x)


def _exact_p1(resolution: int, sigma: float) -> np.ndarray:
    xs, ys = pg.grid(resolution)
    X, Y = np.meshgrid(xs, ys)
    a = math.radians(30)
    return stats.norm.cdf((X * math.cos(a) + Y * math.sin(a) - 0.2) / sigma)


@pytest.mark.parametrize("sigma", [0.25, 0.5, 1.0])
def test_the_monte_carlo_smoothed_grid_agrees_with_the_exact_half_plane_within_its_error(sigma):
    n = 400
    p_hat = pg.smoothed_grid(Wrapped(), sigma, resolution=41, n=n, seed=1)[..., 1]
    p = _exact_p1(41, sigma)
    se = np.sqrt(p * (1 - p) / n)
    # 41² points, each a binomial(n, p) proportion: 5 standard errors (plus one count) bounds them all (fixed seed).
    assert np.all(np.abs(p_hat - p) <= 5 * se + 1 / n), float(np.max(np.abs(p_hat - p) - 5 * se))
    # The closed form the page uses for the half-plane is that same law.
    np.testing.assert_allclose(pg.smoothed_grid(pg.HalfPlane(), sigma, resolution=41)[..., 1], p, atol=1e-12)


def test_quadrature_gives_the_exact_half_plane_probability():
    for point, sigma in [((0.5, 0.0), 0.5), ((-1.0, 1.2), 0.3), ((0.2, 0.1), 1.5)]:
        a = math.radians(30)
        exact = stats.norm.cdf((point[0] * math.cos(a) + point[1] * math.sin(a) - 0.2) / sigma)
        q = pg.exact_probabilities(Wrapped(), point, sigma)[1]
        assert abs(q - exact) < 1e-3, (point, sigma, q, exact)
        assert pg.exact_probabilities(pg.HalfPlane(), point, sigma)[1] == pytest.approx(exact, abs=1e-12)


def test_the_exact_ball_touches_the_half_planes_boundary_and_the_grid_finds_it():
    model = pg.HalfPlane()
    for point in [(0.9, 0.3), (-1.0, -0.5), (2.0, -2.0)]:
        cert = pg.certify_point(model, point, 0.5, n=100_000, alpha=0.001, seed=0)
        (bx, by), dist = pg.nearest_boundary(model, point, pg.smoothed_grid(model, 0.5))
        assert float(model.margin(torch.tensor([bx, by], dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)
        assert cert.radius_exact == pytest.approx(dist, rel=1e-9)  # Theorem 2: the exact ball is tight
        assert cert.radius < cert.radius_exact  # finite n: strictly inside
        assert cert.radius_li < cert.radius and cert.radius_lecuyer < cert.radius
        # The general path (boundary on the grid, from Monte Carlo) finds the same distance within a grid step.
        found = pg.nearest_boundary(Wrapped(), point, pg.smoothed_grid(Wrapped(), 0.5, n=1000, seed=2))
        assert abs(found[1] - dist) <= pg.LIM * 2 / 60 + 0.05


def test_the_certified_ball_exceeds_the_true_distance_no_more_often_than_its_exact_law():
    """CERTIFY's radius exceeds the half-plane's true radius exactly when the Clopper–Pearson bound exceeds pA:
    K ≥ k*, with K ~ Binomial(n, pA). Many seeds; the observed rate must match that exact law, which is ≤ α."""
    model, sigma, n, alpha = pg.HalfPlane(), 0.5, 60, 0.1
    point = (0.5, 0.4)
    margin = float(model.margin(torch.tensor(point)))
    p_a = stats.norm.cdf(margin / sigma)
    # k*: the smallest count whose one-sided (1 − α) Clopper–Pearson bound exceeds pA.
    from rs_core.smoothing.stats import clopper_pearson_lower

    k_star = next(k for k in range(n + 1) if clopper_pearson_lower(k, n, alpha) > p_a)
    law = float(stats.binom.sf(k_star - 1, n, p_a))
    assert law <= alpha
    runs = 1500
    wrong = sum(pg.certify_point(model, point, sigma, n0=10, n=n, alpha=alpha, seed=s, show=0).radius > margin
                for s in range(runs))
    assert stats.binomtest(wrong, runs, law).pvalue > 1e-4, (wrong / runs, law)
    assert stats.binomtest(wrong, runs, alpha, alternative="greater").pvalue > 1e-4, (wrong / runs, alpha)


def test_radius_against_n_grows_towards_the_exact_radius():
    ns = np.array([100, 1000, 10_000, 100_000, 1_000_000])
    p = 0.95
    r = pg.radius_against_n(p, 0.5, 0.001, ns)
    assert np.all(np.diff(r) >= 0) and r[-1] < 0.5 * stats.norm.ppf(p)
    assert pg.radius_against_n(p, 0.5, 0.1, ns)[1] > r[1]  # less confidence, bigger ball at the same n


@pytest.mark.parametrize("preset", ["two moons", "rings", "checkerboard"])
def test_trained_presets_are_seeded_and_fit_their_shape(preset):
    a = pg.base_grid(pg.base_classifier(preset))
    pg.base_classifier.cache_clear()
    b = pg.base_grid(pg.base_classifier(preset))
    np.testing.assert_array_equal(a, b)
    xs, ys = pg.grid(61)
    X, Y = np.meshgrid(xs, ys)
    truth = pg._labels(preset, np.stack([X.ravel(), Y.ravel()], 1)).reshape(a.shape)
    assert (a == truth).mean() > 0.85


@pytest.mark.parametrize("call, prefix", [
    (lambda: pg.base_classifier("spiral"), "preset"),
    (lambda: pg.grid(1), "resolution"),
    (lambda: pg.grid(1000), "resolution"),
    (lambda: pg.smoothed_grid(pg.HalfPlane(), 0.0), "sigma"),
    (lambda: pg.certify_point(pg.HalfPlane(), (0, 0), 0.5, alpha=0.0), "alpha"),
])
def test_bad_parameters_name_themselves(call, prefix):
    with pytest.raises(ValueError, match=f"^{prefix}"):
        call()


# --- Issue 30: other noises and norms in the plane ---

@pytest.mark.parametrize("norm", ["l2", "l1", "linf"])
def test_half_plane_distance_in_each_norm_is_the_brute_force_minimum(norm):
    """|w·x − b| / ‖w‖_q (q the dual norm), against the smallest norm over a fine sweep of the boundary line."""
    clf = pg.base_classifier("half-plane")
    w, point = clf.w.numpy(), np.array([0.9, 0.3])
    m = float(w @ point) - clf.offset
    delta, dist = pg.half_plane_distance(w, m, norm)
    assert abs(float(w @ (point + delta)) - clf.offset) < 1e-12  # on the line
    t = np.linspace(-20, 20, 400_001)
    line = np.stack([clf.offset * w[0] - t * w[1], clf.offset * w[1] + t * w[0]], 1) - point  # points of the line
    brute = {"l2": np.hypot(*line.T), "l1": np.abs(line).sum(1), "linf": np.abs(line).max(1)}[norm].min()
    assert dist == pytest.approx(brute, abs=1e-4) and dist <= brute + 1e-12


def test_ball_outlines_are_a_circle_a_diamond_and_a_square():
    for norm, value in (("l2", lambda v: np.hypot(*v)), ("l1", lambda v: np.abs(v).sum(0)),
                        ("linf", lambda v: np.abs(v).max(0))):
        x, y = pg.ball_outline((1.0, -0.5), 0.7, norm)
        assert np.allclose(value(np.stack([x - 1.0, y + 0.5])), 0.7)  # every vertex (and point) at norm 0.7
    assert len(pg.ball_outline((0, 0), 1, "l1")[0]) == 5 and len(pg.ball_outline((0, 0), 1, "linf")[0]) == 5
    with pytest.raises(ValueError, match="^norm:"):
        pg.ball_outline((0, 0), 1, "l3")


@pytest.mark.parametrize(("noise", "norm"), [("laplace", "l1"), ("uniform", "l1"), ("uniform", "linf"),
                                             ("gaussian", "l1")])
def test_each_noise_certifies_inside_the_exact_half_plane_region(noise, norm):
    """For the half-plane g is the half-plane itself under any symmetric noise; the certified and the exact-pA
    radii of each noise stay within the exact distance in that norm, and the smoothed grid crosses ½ on the line."""
    clf = pg.base_classifier("half-plane")
    cert = pg.certify_point(clf, (0.9, 0.3), 0.5, n=20_000, alpha=0.001, seed=0, noise=noise, norm=norm)
    (_, _), exact = pg.nearest_boundary(clf, (0.9, 0.3), None, norm=norm)
    assert cert.prediction == 1 and 0 < cert.radius <= cert.radius_exact <= exact + 1e-9
    assert (cert.noise_name, cert.norm) == (noise, norm) and cert.radius_li == cert.radius_lecuyer == 0.0
    lam = {"laplace": 0.5 / np.sqrt(2), "uniform": 0.5 * np.sqrt(3), "gaussian": None}[noise]
    if noise == "uniform":
        assert np.abs(cert.noise - np.array([0.9, 0.3])).max() <= lam  # the cloud is the square of side 2λ
    p1 = pg.half_plane_p1(clf, np.array([-0.3, 0.0, 0.3]), 0.5, noise)
    assert p1[1] == 0.5 and p1[0] < 0.5 < p1[2] and p1[0] + p1[2] == pytest.approx(1.0, abs=1e-3)  # symmetric noise


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("norm", ["l2", "l1", "linf"])
def test_dual_norm_distance_is_the_linear_programs_minimum(norm, d):
    """min ‖δ‖_p subject to w·δ = −m (a linear program for ℓ1 and ℓ∞: δ = u − v, or |δ_i| ≤ t) equals
    |m| / ‖w‖_q with q the dual norm, and half_plane_distance's δ attains it."""
    from scipy.optimize import linprog

    w = np.random.default_rng(d).normal(size=d)
    m = 0.7
    delta, dist = pg.half_plane_distance(w, m, norm)
    assert float(w @ delta) == pytest.approx(-m, abs=1e-12) and dist == pytest.approx(m / pg.dual_norm(w, norm))
    if norm == "l1":  # δ = u − v, u, v ≥ 0: min Σu + Σv
        lp = linprog(np.ones(2 * d), A_eq=np.concatenate([w, -w])[None], b_eq=[-m], bounds=(0, None))
    elif norm == "linf":  # variables (δ, t): min t with −t ≤ δ_i ≤ t
        eye = np.eye(d)
        lp = linprog(np.r_[np.zeros(d), 1.0], A_ub=np.block([[eye, -np.ones((d, 1))], [-eye, -np.ones((d, 1))]]),
                     b_ub=np.zeros(2 * d), A_eq=np.r_[w, 0.0][None], b_eq=[-m], bounds=(None, None))
    else:  # ℓ2 is no LP: the projection, checked against the closed form
        assert dist == pytest.approx(m / np.linalg.norm(w))
        return
    assert lp.status == 0 and dist == pytest.approx(lp.fun, rel=1e-7)


def test_dual_norm_pairs_l1_with_linf_and_names_a_bad_norm():
    w = np.array([3.0, -4.0])
    assert (pg.dual_norm(w, "l2"), pg.dual_norm(w, "l1"), pg.dual_norm(w, "linf")) == (5.0, 4.0, 7.0)
    with pytest.raises(ValueError, match="^norm:"):
        pg.dual_norm(w, "l3")
    with pytest.raises(ValueError, match="^norm:"):
        pg.half_plane_distance(w, 1.0, "l0")
