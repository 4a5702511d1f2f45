"""rs_core.dual.router and models.ConfidenceRouter: a σ-estimator that reads the largest σ's expert's confidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from rs_core.dual.estimator import load_dual, save_sigma_estimator
from rs_core.dual.router import (
    RADII,
    build_router,
    certified_curve,
    expert_confidences,
    fit_router,
    level_shares,
    project,
    projected_radius,
    survival,
)
from rs_core.dual.smooth import certify_dual
from rs_core.models.architectures import ConfidenceRouter, get_architecture
from rs_core.models.checkpoints import save_checkpoint


class FixedLogits(nn.Module):
    """Logits [a, 0, …, 0] for every input, whatever it is: softmax confidence e^a / (e^a + K − 1)."""

    def __init__(self, a: float, k: int = 10) -> None:
        super().__init__()
        self.a, self.k = a, k
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.k) + self.w
        out[:, 0] += self.a
        return out


def _confidence(a: float, k: int = 10) -> float:
    return float(np.exp(a) / (np.exp(a) + k - 1))


@pytest.mark.parametrize("a, level", [(0.0, 0), (2.0, 1), (5.0, 2)])
def test_the_router_picks_the_level_of_the_highest_threshold_its_confidence_reaches(a, level):
    router = ConfidenceRouter(FixedLogits(a), 3)
    with torch.no_grad():
        router.route.weight.copy_(torch.tensor([[0.0], [0.3], [0.9]]))  # confidences: 0.1, 0.45, 0.94
    out = router(torch.zeros(4, 1, 2, 2))
    assert out.shape == (4, 3) and out.argmax(1).tolist() == [level] * 4 and out.sum(1).tolist() == [1.0] * 4


def test_a_threshold_exactly_reached_counts_as_reached():
    expert = FixedLogits(2.0)
    router = ConfidenceRouter(expert, 2)
    with torch.no_grad():  # the confidence as the router computes it (float32), used as the threshold itself
        own = torch.softmax(expert(torch.zeros(1, 1, 2, 2)), 1).amax(1)
        assert own.item() == pytest.approx(_confidence(2.0))
        router.route.weight.copy_(torch.tensor([[0.0], [own.item()]]))
    assert router(torch.zeros(1, 1, 2, 2)).argmax(1).item() == 1


def test_projected_radius_is_cohens_radius_at_the_projected_count():
    # k = 10,000 of 10,000 at α = 0.001: p_lower = 0.001^(1/10,000) (Clopper–Pearson with k = n), radius σ Φ⁻¹(p).
    expected = 0.5 * stats.norm.ppf(0.001 ** (1 / 10_000))
    assert projected_radius(np.array([1.0]), 0.5, 10_000, 0.001)[0] == pytest.approx(expected, rel=1e-9)
    r = projected_radius(np.array([0.3, 0.5, 0.6, 0.995]), 1.0, 10_000, 0.001)
    assert r[0] == r[1] == -1.0 and 0 < r[2] < r[3]  # ≤ ½ abstains; 0.995 · 10⁴ is counted as 9,950, not 9,949
    k = np.floor(0.995 * 10_000 + 1e-9)
    assert r[3] == pytest.approx(stats.norm.ppf(stats.beta.ppf(0.001, k, 10_000 - k + 1)), rel=1e-9)


def test_level_shares_split_the_copies_between_thresholds():
    conf = np.array([[0.1, 0.5, 0.5, 0.95]])
    surv = survival(conf, np.array([0.2, 0.5, 0.9]))
    assert level_shares(surv, (0, 2)).tolist() == [[0.25, 0.5, 0.25]]  # τ = 0.2, 0.9
    assert level_shares(surv, (1, 1)).tolist() == [[0.25, 0.0, 0.75]]  # τ = 0.5, 0.5: level 1 empty


def test_certified_curve_counts_radius_at_least_r():
    assert certified_curve(np.array([-1.0, 0.0, 0.5, 1.0]), (0.0, 0.5, 1.0, 1.5)).tolist() == [0.75, 0.5, 0.25, 0.0]


def _two_kinds(n: int = 40, samples: int = 100):
    """Half the images are 'robust' (the σ = 1 expert is confident on every copy; both experts always right), half
    'fragile' (confidence 0.3; only the σ = 0.5 expert right). The best router sends each half to its own σ."""
    rng = np.random.default_rng(0)
    robust = np.arange(n) < n // 2
    conf = np.where(robust[:, None], rng.uniform(0.9, 1.0, (n, samples)), rng.uniform(0.2, 0.4, (n, samples)))
    shares = np.stack([np.ones(n), np.where(robust, 1.0, 0.3)], 1)
    return conf, shares, robust


def test_the_fit_separates_the_kinds_and_beats_both_constant_routers():
    conf, shares, robust = _two_kinds()
    fit = fit_router(conf, shares, [0.5, 1.0], 1.0)
    assert 0.4 < fit.thresholds[1] <= conf[robust].min()
    assert fit.projection.routed_share == [0.5, 0.5]
    # Projected: σ = 0.5 certifies everything up to its ceiling, σ = 1.0 only the robust half but further; the
    # routed dual keeps both (minus the α split), so it beats the best single σ beyond σ = 0.5's ceiling.
    single = {s: np.array(c) for s, c in fit.projection.single.items()}
    assert single["0.5"][0] == 1.0 and single["1"][0] == 0.5
    dual = np.array(fit.projection.dual)
    assert dual[RADII.index(2.0)] == 0.5 > single["0.5"][RADII.index(2.0)]
    assert fit.objective == pytest.approx(float((dual - np.maximum(single["0.5"], single["1"])).min()))
    # Either constant router loses half the images somewhere (−0.5); the fitted one loses only the α split's bit.
    assert fit.objective > -0.05


def test_the_fit_checks_shapes():
    conf, shares, _ = _two_kinds()
    with pytest.raises(ValueError, match="shares"):
        fit_router(conf, shares[:, :1], [0.5, 1.0], 1.0)


def test_expert_confidences_follow_the_seed_and_stay_in_range():
    torch.manual_seed(0)
    expert = nn.Sequential(nn.Flatten(), nn.Linear(4, 10)).eval()
    xs = torch.rand(3, 1, 2, 2)
    a = expert_confidences(expert, xs, 0.5, 50, batch_size=64, seed=1)
    assert a.shape == (3, 50) and a.dtype == np.float32 and (a >= 0.1 - 1e-6).all() and (a <= 1).all()
    assert np.array_equal(a, expert_confidences(expert, xs, 0.5, 50, batch_size=64, seed=1))
    assert not np.array_equal(a, expert_confidences(expert, xs, 0.5, 50, batch_size=64, seed=2))
    with pytest.raises(ValueError, match="sigma_e"):
        expert_confidences(expert, xs, -1.0, 50)


def test_build_router_checks_thresholds_and_architecture():
    expert = get_architecture("mnist_cnn")
    with pytest.raises(ValueError, match="thresholds"):
        build_router(expert, "mnist_cnn", [0.0, 0.9, 0.5])
    with pytest.raises(ValueError, match="thresholds"):
        build_router(expert, "mnist_cnn", [0.2, 0.9])
    with pytest.raises(ValueError, match="arch"):
        build_router(expert, "resnet50", [0.0, 0.5])


def test_a_saved_router_loads_as_a_sigma_estimator_and_certifies(tmp_path):
    """The router is stored like any σ-estimator (its copy of the expert inside); load_dual checks the experts'
    hashes, the number of levels comes from the routing weight, and dual RS certifies with it."""
    torch.manual_seed(0)
    paths = {}
    for s in (0.5, 1.0):
        paths[s] = tmp_path / f"noise_{s}" / "checkpoint.pth.tar"
        save_checkpoint(paths[s], get_architecture("mnist_cnn"), "mnist_cnn", epoch=0,
                        meta={"dataset": "mnist", "sigma": s})
    from rs_core.models.checkpoints import load_checkpoint

    top = load_checkpoint(paths[1.0]).model
    router, arch = build_router(top, "mnist_cnn", [0.0, 0.15])
    est_path = tmp_path / "dual" / "sigma_estimator.pth.tar"
    save_sigma_estimator(est_path, router, arch, dataset="mnist", sigma_e=1.0, expert_paths=paths,
                         summary={"epochs": 0, "router": "confidence"}, label_n=10)
    est, experts = load_dual(est_path)
    assert est.arch == "router_mnist_cnn" and est.num_classes == 2 and sorted(experts) == [0.5, 1.0]
    x = torch.rand(1, 28, 28)
    with torch.no_grad():
        direct = router(x[None]), est.model(x[None])
        assert torch.equal(direct[0], direct[1])
    cert = certify_dual(est.model, {s: m.model for s, m in experts.items()}, x, 1.0, n0=20, n=200, alpha=0.01, seed=0)
    assert cert.sigmas == (0.5, 1.0) and cert.alpha_sigma + cert.alpha_class == pytest.approx(0.01)


def test_training_a_router_architecture_is_refused(tmp_path):
    from rs_core.training.classifier import Recipe, train

    with pytest.raises(ValueError, match="arch: router_mnist_cnn is a σ-router"):
        train(Recipe(dataset="mnist", arch="router_mnist_cnn", sigma=0.5, epochs=1), tmp_path / "x.pth.tar")


def test_projecting_a_constant_estimator_gives_its_experts_curve_at_its_share_of_alpha():
    conf, shares, _ = _two_kinds()
    votes = np.zeros_like(shares)
    votes[:, 1] = 1.0  # every copy votes σ = 1.0: R_σ = σ_e Φ⁻¹(p_lower(10⁴ of 10⁴)) ≈ 3.2 never binds below r = 2
    proj = project(votes, shares, [0.5, 1.0], 1.0, alpha=0.001, alpha_split=0.5)
    assert proj.dual == certified_curve(projected_radius(shares[:, 1], 1.0, 10_000, 0.0005), RADII).round(4).tolist()
    assert proj.routed_share == [0.0, 1.0]
    assert proj.difference.tolist() == pytest.approx(
        (np.array(proj.dual) - np.maximum(proj.single["0.5"], proj.single["1"])).tolist())
    with pytest.raises(ValueError, match="votes"):
        project(votes[:, :1], shares, [0.5, 1.0], 1.0)
