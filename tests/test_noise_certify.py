"""CERTIFY and PREDICT with Laplace and uniform noise and ℓ1/ℓ∞ radii: exact laws on a half-plane, batch
invariance, the records, and the Gaussian defaults bit for bit."""

import json
import math

import numpy as np
import pytest
import torch
from oracles import devices, make_oracle, noise_marginal
from scipy import stats

from rs_core import ABSTAIN, Certificate, CertifyStream, Smooth, certify, certify_many, predict_result, sample_counts
from rs_core.smoothing.bounds import radius_from_p_lower
from rs_core.smoothing.noises import get_noise
from rs_core.smoothing.playground import HalfPlane
from rs_core.smoothing.sampling import NoiseStream
from rs_core.smoothing.seeding import make_generator
from rs_core.smoothing.stats import clopper_pearson_lower, clopper_pearson_lower_complement


def exact_law(p_a, radius_of, n0, n, alpha, true_radius):
    """Exact law of CERTIFY on a two-class classifier whose smoothed top class (1) has probability p_a.

    Returns (P(false certificate), E[ratio], sd[ratio]): a false certificate is a returned class other than 1, or
    class 1 with a radius above the true distance to the boundary; ratio = radius / true distance (0 unless class 1).
    """
    sel_1 = stats.binom.sf(n0 // 2, n0, p_a)  # argmax picks class 1 only on a strict majority
    k = np.arange(n + 1)
    p_low = clopper_pearson_lower(k, n, alpha)
    pmf_a, pmf_b = stats.binom.pmf(k, n, p_a), stats.binom.pmf(k, n, 1 - p_a)
    certified = p_low >= 0.5
    radius = np.where(certified, radius_of(np.clip(p_low, 0.5, 1 - 1e-16)), 0.0)
    false = sel_1 * pmf_a[radius > true_radius].sum() + (1 - sel_1) * pmf_b[certified].sum()
    ratio = radius / true_radius
    mean = sel_1 * (pmf_a * ratio).sum()
    second = sel_1 * (pmf_a * ratio**2).sum()
    return false, mean, np.sqrt(second - mean**2)


@pytest.mark.parametrize("noise, norm, p_a", [("laplace", "l1", 0.9), ("uniform", "l1", 0.8),
                                              ("uniform", "linf", 0.95), ("gaussian", "linf", 0.9),
                                              ("gaussian", "l1", 0.7)])
def test_certify_on_half_plane_follows_exact_law(noise, norm, p_a):
    """f(x) = 1[x₀ > 0] (HalfPlane along the first axis): g = f, the true ℓ1/ℓ∞/ℓ2 distance from x = (m, 0) to the
    boundary is m, and pA = F(m) for the noise's 1-D marginal F. CERTIFY's false-certificate rate is ≤ α, and the
    observed false certificates and radii follow the exact binomial law (and not the law of a 10 % larger σ)."""
    sigma, n0, n, alpha, repeats = 0.5, 10, 200, 0.05, 2000
    m = float(noise_marginal(noise, sigma).ppf(p_a))
    model = HalfPlane(angle=0.0, offset=0.0)
    x = torch.tensor([m, 0.0]).reshape(1, 1, 2)
    certs = certify_many(model, x.expand(repeats, -1, -1, -1), sigma, n0, n, alpha, batch_size=50_000, seed=0,
                         noise=noise, norm=norm)
    assert all(c.noise == noise and c.norm == norm for c in certs)
    # x is stored in float32: the true distance is that of the point the model sees.
    m = float(x[0, 0, 0])
    p_a = float(noise_marginal(noise, sigma).cdf(m))
    g = get_noise(noise, sigma)
    false = sum(c.prediction not in (ABSTAIN, 1) or (c.prediction == 1 and c.radius > m) for c in certs)
    q, mean, sd = exact_law(p_a, lambda p: g.radius(p, norm, 2), n0, n, alpha, m)
    assert q <= alpha
    assert stats.binomtest(false, repeats, q).pvalue > 1e-4
    ratios = np.array([c.radius / m if c.prediction == 1 else 0.0 for c in certs])
    se = sd / np.sqrt(repeats)
    assert abs(ratios.mean() - mean) < 5 * se
    _, mean_wrong, _ = exact_law(float(noise_marginal(noise, 1.1 * sigma).cdf(m)), lambda p: g.radius(p, norm, 2),
                                 n0, n, alpha, m)
    assert abs(ratios.mean() - mean_wrong) > 5 * se


@pytest.mark.parametrize("noise", ["gaussian", "laplace", "uniform"])
def test_votes_on_half_plane_have_the_marginal_probability(noise):
    """The vote share of class 1 at margin m is F(m), the noise's own marginal CDF (exact binomial test)."""
    sigma, n = 0.5, 20_000
    m = 0.3
    counts = sample_counts(HalfPlane(angle=0.0, offset=0.0), torch.tensor([m, 0.0]).reshape(1, 1, 2), sigma, n,
                           batch_size=5000, seed=1, noise=noise)
    p = float(noise_marginal(noise, sigma).cdf(float(torch.tensor(m))))
    assert stats.binomtest(int(counts[1]), n, p).pvalue > 1e-4
    # … and not the law of the other noises with the same σ (the votes do tell the noises apart)
    for other in {"gaussian", "laplace", "uniform"} - {noise}:
        assert stats.binomtest(int(counts[1]), n, float(noise_marginal(other, sigma).cdf(m))).pvalue < 1e-4


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("noise, norm", [("laplace", "l1"), ("uniform", "linf")])
def test_certificate_does_not_depend_on_batch_size(device, noise, norm):
    model, x = make_oracle(0.8, 0.5)
    model = model.to(device)
    certs = [certify(model, x, 0.5, n0=30, n=700, alpha=0.01, batch_size=b, seed=5, noise=noise, norm=norm)
             for b in (1, 7, 64, 1000)]
    for c in certs[1:]:
        assert np.array_equal(c.counts, certs[0].counts)
        assert np.array_equal(c.counts_selection, certs[0].counts_selection)
        assert c.radius == certs[0].radius
    assert certs[0].device.startswith(device)


def test_defaults_reproduce_the_gaussian_certificate_bit_for_bit():
    """certify() without noise/norm is Cohen et al.'s CERTIFY: the votes of x + σ·ε from the run's own stream of
    standard normals, and the radius σΦ⁻¹(p_lower)."""
    sigma, n0, n, alpha = 0.5, 50, 900, 0.01
    model, x = make_oracle(0.85, sigma)
    default = certify(model, x, sigma, n0, n, alpha, batch_size=128, seed=3)
    explicit = certify(model, x, sigma, n0, n, alpha, batch_size=128, seed=3, noise="gaussian", norm="l2")
    a, b = default.to_dict(), explicit.to_dict()
    a.pop("elapsed_s"), b.pop("elapsed_s")
    assert a == b and default.noise == "gaussian" and default.norm == "l2"
    # By hand: the same stream, ε·σ added to x, the votes of the model.
    # The oracle holds float64 buffers, so its noise is drawn in float64 (float32 or wider, never narrower).
    eps = torch.empty(n0 + n, *x.shape, dtype=torch.float64)
    NoiseStream(make_generator(3, torch.device("cpu")), x.shape, torch.float64).fill(eps)
    votes = model(eps.mul_(sigma).add_(x.double())).argmax(1)
    selection, estimation = np.bincount(votes[:n0], minlength=2), np.bincount(votes[n0:], minlength=2)
    assert np.array_equal(default.counts_selection, selection) and np.array_equal(default.counts, estimation)
    c_a = int(selection.argmax())
    q = float(clopper_pearson_lower_complement(int(estimation[c_a]), n, alpha))
    assert default.prediction == c_a
    assert default.radius == radius_from_p_lower(1 - q, sigma, complement=q)


def test_laplace_l1_radius_in_certificate():
    sigma, n0, n, alpha = 0.5, 20, 500, 0.01
    model, x = make_oracle(0.9, sigma)
    c = certify(model, x, sigma, n0, n, alpha, seed=0, noise="laplace", norm="l1")
    assert c.prediction == 1
    lam = sigma / math.sqrt(2.0)
    assert c.radius == pytest.approx(-lam * math.log(2 * (1 - c.p_lower)), rel=1e-12)
    c_inf = certify(model, x, sigma, n0, n, alpha, seed=0, noise="gaussian", norm="linf")
    assert c_inf.radius == pytest.approx(radius_from_p_lower(c_inf.p_lower, sigma) / 4.0, rel=1e-12)  # d = 16


def test_records_carry_noise_and_norm():
    model, x = make_oracle(0.9, 0.5)
    c = certify(model, x, 0.5, 20, 300, 0.01, seed=0, noise="uniform", norm="l1")
    d = json.loads(c.to_json())
    assert d["noise"] == "uniform" and d["norm"] == "l1"
    back = Certificate.from_dict(d)
    assert back.noise == "uniform" and back.norm == "l1"
    d.pop("noise"), d.pop("norm")  # a record written before noises existed reads as Gaussian ℓ2
    old = Certificate.from_dict(d)
    assert old.noise == "gaussian" and old.norm == "l2"
    p = predict_result(model, x, 0.5, 200, 0.01, seed=0, noise="laplace")
    assert p.noise == "laplace" and p.to_dict()["noise"] == "laplace"


def test_stream_with_laplace_noise_and_target():
    model, x = make_oracle(0.95, 0.5)
    stream = CertifyStream(model, x, 0.5, n0=50, n_max=4000, batch_size=500, seed=0, noise="laplace", norm="l1",
                           target_radius=0.05)
    cert = stream.run()
    assert cert.noise == "laplace" and cert.norm == "l1" and cert.bound == "anytime-beta-mixture"
    assert cert.stop_reason == "target_certified" and cert.radius >= 0.05
    lam = 0.5 / math.sqrt(2.0)
    assert cert.radius == pytest.approx(-lam * math.log(2 * (1 - cert.p_lower)), rel=1e-12)
    same = Smooth(model, 0.5, 500, noise="laplace", norm="l1").stream(x, 50, 4000, seed=0, target_radius=0.05).run()
    assert np.array_equal(same.counts, cert.counts) and same.radius == cert.radius


def test_invalid_noise_and_norm_raise_naming_them():
    model, x = make_oracle(0.9, 0.5)
    with pytest.raises(ValueError, match="^noise:"):
        certify(model, x, 0.5, 10, 100, seed=0, noise="cauchy")
    with pytest.raises(ValueError, match="^norm:"):
        certify(model, x, 0.5, 10, 100, seed=0, norm="l3")
    with pytest.raises(ValueError, match="^norm:"):
        certify(model, x, 0.5, 10, 100, seed=0, noise="laplace")  # ℓ2 (the default) is not certified by Laplace
    with pytest.raises(ValueError, match="^norm:"):
        Smooth(model, 0.5, noise="uniform", norm="l2")
    with pytest.raises(ValueError, match="^noise:"):
        sample_counts(model, x, 0.5, 10, seed=0, noise="gauss")
    with pytest.raises(ValueError, match="^norm:"):
        CertifyStream(model, x, 0.5, n_max=100, seed=0, noise="laplace", norm="linf")
    with pytest.raises(ValueError, match="^noise:"):  # the adaptive engine is Gaussian-only for now
        Smooth(model, 0.5, noise="laplace", norm="l1").certify_radii(x, [0.1], 10, 100, seed=0)


def test_the_sigma_sweep_smooths_every_sigma_with_its_noise_and_norm():
    """Compare σ's engine (SigmaSweepStream) carries the noise and the norm to each σ's stream: each certificate is
    the one a CertifyStream with that noise gives at its derived seed."""
    from rs_core.smoothing.seeding import derive_seed
    from rs_core.smoothing.sweep import SigmaSweepStream

    model, x = make_oracle(0.95, 0.5)
    sweep = SigmaSweepStream(model, x, [0.25, 0.5], n0=50, n_max=2000, batch_size=500, seed=4, noise="uniform",
                             norm="linf")
    result = sweep.run()
    for i, (sigma, cert) in enumerate(zip(result.sigmas, result.certificates, strict=True)):
        alone = CertifyStream(model, x, sigma, 50, 2000, 0.001, 500, seed=derive_seed(4, i), noise="uniform",
                              norm="linf").run()
        assert (cert.noise, cert.norm) == ("uniform", "linf") and np.array_equal(cert.counts, alone.counts)
        assert cert.radius == alone.radius
    with pytest.raises(ValueError, match="^norm: laplace noise certifies l1"):
        SigmaSweepStream(model, x, [0.5], noise="laplace", norm="l2")
