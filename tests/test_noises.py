"""Smoothing noises (rs_core.smoothing.noises): radii against independent Neyman–Pearson computations, and the
samples' law (Yang et al. 2020; Teng et al. 2020)."""

import math

import numpy as np
import pytest
import torch
from oracles import devices, noise_marginal
from scipy import optimize, stats

from rs_core.smoothing.bounds import radius_from_p_lower
from rs_core.smoothing.noises import NOISES, NORMS, Gaussian, Laplace, Uniform, get_noise
from rs_core.smoothing.sampling import NoiseStream
from rs_core.smoothing.seeding import make_generator

PS = [0.5 + 1e-6, 0.55, 0.7, 0.9, 0.99, 0.999999]


def np_radius_1d(noise: str, sigma: float, p: float) -> float:
    """The largest shift t of a 1-D smoothing noise P after which the worst-case set of P-mass p keeps P_t-mass ≥ ½.

    Neyman–Pearson: the worst set is {dP_t/dP ≤ κ}; each marginal here has a likelihood ratio nondecreasing in x
    (checked in test_likelihood_ratios_are_monotone), so it is the half-line {x ≤ a} with F(a) = p, whose mass under
    P_t is F(a − t). Both equations are solved with brentq over the exact CDF.
    """
    dist = noise_marginal(noise, sigma)
    lo, hi = dist.ppf(1e-12) - 1.0, dist.ppf(1 - 1e-12) + 1.0
    a = optimize.brentq(lambda s: dist.cdf(s) - p, lo, hi, xtol=1e-14, rtol=1e-14)
    return optimize.brentq(lambda t: dist.cdf(a - t) - 0.5, 0.0, hi - lo, xtol=1e-14, rtol=1e-14)


@pytest.mark.parametrize("noise", NOISES)
def test_likelihood_ratios_are_monotone(noise):
    dist = noise_marginal(noise, 0.7)
    x = np.linspace(-4, 4, 4001)
    for t in (0.1, 0.5, 1.5):
        f0, ft = dist.pdf(x), dist.pdf(x - t)
        # Compare cross-products (no 0/0): ft[i]·f0[j] ≤ ft[j]·f0[i] for i < j ⇔ the ratio does not decrease.
        assert np.all(ft[:-1] * f0[1:] <= ft[1:] * f0[:-1] + 1e-15)


@pytest.mark.parametrize("noise, norms", [("gaussian", ("l2", "l1", "linf")), ("laplace", ("l1",)),
                                          ("uniform", ("l1", "linf"))])
@pytest.mark.parametrize("sigma", [0.12, 1.0, 3.0])
def test_radius_in_1d_is_the_neyman_pearson_shift(noise, norms, sigma):
    """In 1-D every norm is |t|: each radius formula must equal the exact worst-case shift (tight, never above)."""
    g = get_noise(noise, sigma)
    for p in PS:
        expected = np_radius_1d(noise, sigma, p)
        for norm in norms:
            assert g.radius(p, norm, 1) == pytest.approx(expected, rel=1e-8, abs=1e-12), (noise, norm, p)


def test_gaussian_l2_is_todays_radius_bit_for_bit():
    p = np.array([0.3, 0.5, 0.5 + 1e-9, 0.6, 0.9, 0.999, 1 - 1e-12])
    for sigma in (0.12, 0.25, 0.5, 1.0):
        assert np.array_equal(Gaussian(sigma).radius(p, "l2", 784), radius_from_p_lower(p, sigma))
        assert np.array_equal(Gaussian(sigma).radius(p, "l1", 784), radius_from_p_lower(p, sigma))
        assert np.array_equal(Gaussian(sigma).radius(p, "linf", 784), radius_from_p_lower(p, sigma) / 28.0)
    q = 1e-200  # the complement path stays finite where p_lower rounds to 1
    assert Gaussian(1.0).radius(1.0, "l2", complement=q) == radius_from_p_lower(1.0, 1.0, complement=q)
    assert math.isfinite(Laplace(1.0).radius(1.0, "l1", complement=q))


def tv_uniform(delta: np.ndarray, lam: float) -> np.ndarray:
    """Total variation between U[−λ, λ]^d and its shift by δ [..., d]: 1 − the product of the 1-D overlaps."""
    return 1.0 - np.prod(np.clip(1.0 - np.abs(delta) / (2.0 * lam), 0.0, None), axis=-1)


@pytest.mark.parametrize("d", [1, 2, 5, 784, 3072])
def test_uniform_radii_against_product_of_overlaps(d):
    """A uniform-smoothed class keeps pA − TV(δ) ≥ ½ under a shift δ (the set where the shifted cube has no mass
    is the worst case). The ℓ∞ radius is where the corner δ = r·1 brings that to exactly ½; every δ in the ℓ∞ ball
    and every δ in the ℓ1 ball of the ℓ1 radius stays at or above ½."""
    rng = np.random.default_rng(d)
    sigma = 0.5
    g = Uniform(sigma)
    lam = sigma * math.sqrt(3.0)
    for p in (0.51, 0.75, 0.99, 0.9999):
        r_inf, r_1 = g.radius(p, "linf", d), g.radius(p, "l1", d)
        assert p - tv_uniform(np.full(d, r_inf), lam) == pytest.approx(0.5, abs=1e-9)
        assert p - tv_uniform(np.full(d, r_inf * (1 + 1e-6) + 1e-12), lam) < 0.5  # no larger radius holds
        box = rng.uniform(-r_inf, r_inf, size=(200, d))
        assert np.all(p - tv_uniform(box, lam) >= 0.5 - 1e-12)
        # ℓ1: the worst direction is one coordinate (∏(1 − a_i) ≥ 1 − Σ a_i), where TV = r/2λ exactly.
        e1 = np.zeros(d)
        e1[0] = r_1
        assert p - tv_uniform(e1, lam) == pytest.approx(0.5, abs=1e-12)
        w = rng.exponential(size=(200, d))
        sphere = w / w.sum(axis=1, keepdims=True) * r_1 * rng.choice([-1, 1], size=(200, d))
        assert np.all(p - tv_uniform(sphere, lam) >= 0.5 - 1e-12)


def test_radius_is_vectorised_zero_at_or_below_half_and_monotone():
    p = np.linspace(0.0, 1 - 1e-9, 1001)
    for noise, norms in (("gaussian", NORMS), ("laplace", ("l1",)), ("uniform", ("l1", "linf"))):
        for norm in norms:
            r = get_noise(noise, 0.5).radius(p, norm, 10)
            assert r.shape == p.shape and r.dtype == np.float64
            assert np.all(r[p <= 0.5] == 0.0) and np.all(r[p > 0.5] > 0)
            assert np.all(np.diff(r) >= 0)
            assert isinstance(get_noise(noise, 0.5).radius(0.8, norm, 10), float)


@pytest.mark.parametrize("noise, norm", [("laplace", "linf"), ("laplace", "l2"), ("uniform", "l2")])
def test_uncertified_norms_raise(noise, norm):
    with pytest.raises(ValueError, match="^norm:"):
        get_noise(noise, 1.0).radius(0.9, norm, 4)


def test_invalid_parameters_raise_naming_them():
    with pytest.raises(ValueError, match="^noise:"):
        get_noise("cauchy", 1.0)
    with pytest.raises(ValueError, match="^sigma:"):
        get_noise("laplace", 0.0)
    with pytest.raises(ValueError, match="^norm:"):
        Gaussian(1.0).radius(0.9, "l3")
    with pytest.raises(ValueError, match="^d:"):
        Uniform(1.0).radius(0.9, "linf", 0)
    with pytest.raises(ValueError, match="^p_lower:"):
        Laplace(1.0).radius(1.5, "l1")


def test_scales():
    assert Gaussian(2.0).lam == 2.0
    assert Laplace(2.0).lam == pytest.approx(2.0 / math.sqrt(2.0))
    assert Uniform(2.0).lam == pytest.approx(2.0 * math.sqrt(3.0))
    with pytest.raises(AttributeError):
        Gaussian(1.0).sigma = 2.0  # frozen


def draw(noise: str, sigma: float, n: int, device: str, seed: int = 0) -> torch.Tensor:
    """n samples of the noise, from the sampler's own stream of standard normals."""
    z = torch.empty(n, 16, device=device)
    NoiseStream(make_generator(seed, torch.device(device)), (16,), torch.float32).fill(z)
    out = get_noise(noise, sigma).transform(z)
    assert out.dtype == torch.float32 and out.device.type == device
    return out.flatten()


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("noise, kurtosis", [("gaussian", 3.0), ("laplace", 6.0), ("uniform", 1.8)])
def test_samples_have_mean_zero_variance_sigma2_and_the_right_kurtosis(device, noise, kurtosis):
    sigma = 0.7
    x = draw(noise, sigma, 1 << 16, device).double().cpu()  # 2**20 samples
    n = x.numel()
    m2, m4 = float((x**2).mean()), float((x**4).mean())
    # Tolerances: 6 standard errors, from the moments of the law being tested (Laplace: μ4 = 6σ⁴, μ8 = 2520σ⁸).
    mu8 = {"gaussian": 105.0, "laplace": 2520.0, "uniform": 9.0**4 / 9.0}[noise] * sigma**8
    assert abs(float(x.mean())) < 6 * sigma / math.sqrt(n)
    assert abs(m2 - sigma**2) < 6 * math.sqrt((kurtosis - 1) * sigma**4 / n)
    assert abs(m4 / m2**2 - kurtosis) < 6 * math.sqrt(mu8 - (kurtosis * sigma**4) ** 2) / sigma**4 / math.sqrt(n) + 0.02
    if noise == "uniform":
        lam = sigma * math.sqrt(3.0)
        assert float(x.abs().max()) <= lam and float(x.abs().max()) > 0.999 * lam
    # The whole law, not only moments: a Kolmogorov–Smirnov test against the marginal.
    assert stats.kstest(x[:20000].numpy(), noise_marginal(noise, sigma).cdf).pvalue > 1e-4


def test_laplace_tail_is_exact_in_float32():
    """The inverse CDF goes through erfc: for |z| past 5.4, 1 − Φ(z) is 0 in float32 and log(1 − Φ) would give
    inf; the float32 map must match the float64 quantile there."""
    z = torch.tensor([-9.0, -6.5, -5.5, 0.0, 1e-3, 3.0, 5.5, 6.5, 9.0], dtype=torch.float32)
    got = Laplace(1.0).transform(z.clone()).double().numpy()
    lam = 1.0 / math.sqrt(2.0)
    # The quantile of the same uniform, Φ(z), in float64 from scipy's Laplace.
    zd = z.double().numpy()
    expected = np.sign(zd) * stats.laplace(scale=lam).isf(stats.norm.sf(np.abs(zd)))  # P(X > x) = P(Z > |z|)
    assert np.all(np.isfinite(got))
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_uniform_map_is_exact():
    z = torch.linspace(-8, 8, 101)
    got = Uniform(1.0).transform(z.clone()).double().numpy()
    expected = math.sqrt(3.0) * (2 * stats.norm.cdf(z.double().numpy()) - 1)
    assert got == pytest.approx(expected, abs=1e-6)


def test_target_radius_inverse():
    """q_for_radius inverts radius: the radius at p = 1 − q_for_radius(r) is r."""
    for noise, norms in (("gaussian", NORMS), ("laplace", ("l1",)), ("uniform", ("l1", "linf"))):
        g = get_noise(noise, 0.5)
        for norm in norms:
            for r in (0.01, 0.1, 0.3):
                q = g.q_for_radius(r, norm, 8)
                if q > 0:
                    assert g.radius(1 - q, norm, 8) == pytest.approx(r, rel=1e-6)
                else:  # beyond what any p certifies (uniform's radii are bounded)
                    assert g.radius(1.0, norm, 8) <= r


@pytest.mark.parametrize("noise", NOISES)
def test_sampler_noise_is_float32_on_the_generators_device_and_in_range(noise):
    from oracles import RecordingModel

    from rs_core.smoothing.sampling import NoiseSampler

    model = RecordingModel().eval()
    x = torch.zeros(1, 4, 4)
    sampler = NoiseSampler(model, x, 0.5, 300, seed=0, noise=noise)
    sampler.sample(1000)
    seen = torch.cat(model.seen[1:])  # [0] is the clean probe
    assert seen.dtype == torch.float32 and seen.shape == (1000, 1, 4, 4) and seen.device == sampler.device
    assert abs(float(seen.var()) - 0.25) < 0.02
    if noise == "uniform":
        assert float(seen.abs().max()) <= 0.5 * math.sqrt(3.0)
    # Batch-size invariance of the noise itself: the same draws with another batch size.
    again = RecordingModel().eval()
    NoiseSampler(again, x, 0.5, 77, seed=0, noise=noise).sample(1000)
    assert torch.equal(torch.cat(again.seen[1:]), seen)
