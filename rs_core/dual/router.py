"""A σ-estimator that reads an expert's own output, and how its thresholds are chosen (dual RS, issue 14).

Stage 1 of dual randomized smoothing may smooth *any* fixed base classifier over Σ at σ_e (Sun, Mao & Vechev,
Theorem 4.1 needs only that σ(·) be the smoothed classifier's prediction). :class:`~rs_core.models.architectures.ConfidenceRouter`
routes a noisy input x + δ to a larger σ when the largest σ's expert is confident on it: with thresholds
0 = τ_0 ≤ τ_1 ≤ … ≤ τ_{m−1} on its top softmax probability, the level is the number of thresholds reached, − 1.

The thresholds are chosen on training images, never on the images later certified, by *projecting* each
candidate's certified accuracy: for each image, the share of the router's votes per level under σ_e
(``samples`` noisy copies) and each expert's share of votes for the true class (``n`` copies at its σ) are
turned into the radii CERTIFY would give at N samples with those shares (Clopper–Pearson at the stage's α). The
projection is a selection heuristic only; the certificates are those certify-dual computes afterwards.

>>> import numpy as np
>>> conf = np.array([[0.2, 0.3], [0.9, 0.95]])          # 2 images × 2 noisy copies
>>> level_shares(survival(conf, np.array([0.5])), (0,)).round(2).tolist()   # one threshold: levels 0 and 1
[[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import special
from torch import nn

from rs_core.checks import check_alpha, check_count, check_images, check_sigma
from rs_core.models.architectures import ARCHITECTURES, ConfidenceRouter
from rs_core.models.device import model_device
from rs_core.smoothing.sampling import sample_counts_many
from rs_core.smoothing.seeding import SeedPath, derive_seed, make_generator
from rs_core.smoothing.stats import clopper_pearson_lower

RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


@torch.inference_mode()
def expert_confidences(expert: nn.Module, xs: torch.Tensor, sigma_e: float, samples: int = 200,
                       batch_size: int = 1000, *, seed: int = 0) -> np.ndarray:
    """[N, samples] the expert's top softmax probability on ``samples`` noisy copies x + N(0, σ_e²I) of each input
    (float32 noise from one generator, as in sampling)."""
    check_images(xs, 4, "xs")
    sigma_e, samples = check_sigma(sigma_e, "sigma_e"), check_count(samples, "samples")
    device = model_device(expert)
    gen = make_generator(seed, device)
    per = max(1, batch_size // samples)
    out = np.empty((len(xs), samples), dtype=np.float32)
    for s in range(0, len(xs), per):
        x = xs[s:s + per].to(device, torch.float32).repeat_interleave(samples, 0)
        x = x + sigma_e * torch.randn(x.shape, generator=gen, device=device, dtype=torch.float32)
        conf = torch.softmax(expert(x).float(), dim=1).amax(1)
        out[s:s + per] = conf.view(-1, samples).cpu().numpy()
    return out


def true_class_shares(experts: Mapping[float, nn.Module], xs: torch.Tensor, ys: torch.Tensor, n: int = 1000,
                      batch_size: int = 1000, *, seed: int = 0) -> np.ndarray:
    """[N, m] each expert's (σ ascending) share of votes for the true class out of ``n`` noisy copies at its σ;
    expert j's noise comes from ``derive_seed(seed, SeedPath.EXPERT_VOTES, j)`` (as the σ-estimator's labels)."""
    n = check_count(n, "n")
    ys = torch.as_tensor(ys).long().numpy()
    out = np.zeros((len(xs), len(experts)))
    for j, sigma in enumerate(sorted(experts)):
        counts = sample_counts_many(experts[sigma], xs, sigma, n, batch_size,
                                    seed=derive_seed(seed, SeedPath.EXPERT_VOTES, j))
        out[:, j] = counts[np.arange(len(ys)), ys] / n
    return out


def projected_radius(share: np.ndarray, sigma: float, n: int, alpha: float) -> np.ndarray:
    """σ Φ⁻¹(p_lower) for a top-class share observed as ``share``, were CERTIFY to see it among n samples at level
    α; −1 where p_lower ≤ ½ (abstain). Used to choose thresholds, never as a certificate."""
    k = np.floor(np.asarray(share, dtype=np.float64) * n + 1e-9).astype(np.int64)  # 1e-9: 0.995 · 10⁴ is 9949.99…
    p_low = np.asarray(clopper_pearson_lower(k, n, alpha), dtype=np.float64)
    return np.where(p_low > 0.5, sigma * special.ndtri(np.clip(p_low, 0.5, 1.0)), -1.0)


def survival(conf: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """[N, C] the share of each image's noisy copies whose confidence reaches each candidate threshold."""
    return (conf[:, :, None] >= np.asarray(candidates)[None, None, :]).mean(1)


def level_shares(surv: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """[N, m] vote shares per level for ascending thresholds given as indices ``chosen`` (m − 1) into the
    candidates of ``surv``: level i gets the copies reaching τ_i but not τ_{i+1}."""
    reach = np.concatenate([np.ones((len(surv), 1)), surv[:, list(chosen)], np.zeros((len(surv), 1))], axis=1)
    return reach[:, :-1] - reach[:, 1:]


def certified_curve(radius: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """Certified accuracy at each radius: the share of images with a correct certificate of radius ≥ r
    (radius −1: abstained or wrong)."""
    return np.array([(radius >= r).mean() for r in radii])


def _dual_radius(shares_lv: np.ndarray, class_radius: np.ndarray, sigma_e: float, n: int, alpha_sigma: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    level = shares_lv.argmax(1)  # the first (smallest σ) on ties, as CERTIFY's selection would favour none
    r_sigma = projected_radius(shares_lv[np.arange(len(level)), level], sigma_e, n, alpha_sigma)
    r_class = class_radius[np.arange(len(level)), level]
    return np.where((r_sigma >= 0) & (r_class >= 0), np.minimum(r_sigma, r_class), -1.0), level


@dataclass
class Projection:
    """Projected certified accuracies at ``radii`` (training images; a selection heuristic, not certificates):
    ``dual`` for one σ-estimator, ``single`` per σ (CERTIFY at the full α), ``routed_share`` per σ."""

    radii: list[float]
    dual: list[float]
    single: dict[str, list[float]]
    routed_share: list[float]

    @property
    def difference(self) -> np.ndarray:
        """dual − the best single σ at each radius."""
        return np.array(self.dual) - np.max(np.array(list(self.single.values())), axis=0)


def _setup(shares: np.ndarray, sigmas: Sequence[float], n: int, alpha: float, alpha_split: float,
           radii: Sequence[float]) -> tuple[list[float], np.ndarray, dict[str, list[float]], float]:
    sigmas = sorted(float(s) for s in sigmas)
    alpha = check_alpha(alpha)
    if shares.ndim != 2 or shares.shape[1] != len(sigmas):
        raise ValueError(f"shares: expected [images, {len(sigmas)}], got {shares.shape}")
    class_radius = np.stack([projected_radius(shares[:, i], s, n, alpha * (1 - alpha_split))
                             for i, s in enumerate(sigmas)], 1)
    single = {f"{s:g}": certified_curve(projected_radius(shares[:, i], s, n, alpha), radii).round(4).tolist()
              for i, s in enumerate(sigmas)}
    return sigmas, class_radius, single, alpha * alpha_split


def project(votes: np.ndarray, shares: np.ndarray, sigmas: Sequence[float], sigma_e: float, *, n: int = 10_000,
            alpha: float = 0.001, alpha_split: float = 0.5, radii: Sequence[float] = RADII) -> Projection:
    """Dual RS projected for any σ-estimator from its vote shares ``votes`` [N, m] under σ_e (e.g. counts / copies
    from ``sampling.sample_counts_many``) and the experts' true-class shares [N, m]."""
    sigmas, class_radius, single, alpha_sigma = _setup(shares, sigmas, n, alpha, alpha_split, radii)
    if votes.shape != shares.shape:
        raise ValueError(f"votes: expected shape {shares.shape}, got {votes.shape}")
    radius, level = _dual_radius(votes, class_radius, sigma_e, n, alpha_sigma)
    return Projection(list(radii), certified_curve(radius, radii).round(4).tolist(), single,
                      [float((level == i).mean()) for i in range(len(sigmas))])


@dataclass
class RouterFit:
    """The chosen thresholds and the projection they were chosen by (training images; not certificates).

    ``thresholds`` [m]: the least confidence routing to σ_i or above (``thresholds[0]`` = 0); ``objective`` = min
    over the projection's radii of dual − best single σ (ties broken by ``mean_difference``)."""

    thresholds: list[float]
    objective: float
    mean_difference: float
    projection: Projection
    images: int
    samples: int
    n: int
    candidates: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def fit_router(conf: np.ndarray, shares: np.ndarray, sigmas: Sequence[float], sigma_e: float, *, n: int = 10_000,
               alpha: float = 0.001, alpha_split: float = 0.5, radii: Sequence[float] = RADII,
               candidates: int = 40) -> RouterFit:
    """Thresholds maximizing the projected min over ``radii`` of (dual RS − the best single σ), then the mean.

    ``conf`` [N, samples] from :func:`expert_confidences` (the largest σ's expert at σ_e), ``shares`` [N, m] from
    :func:`true_class_shares`; candidates are ``candidates`` + 1 quantiles of ``conf`` and "never" (above 1), and
    every ascending choice of m − 1 of them is scored."""
    start = time.perf_counter()
    if len(shares) != len(conf):
        raise ValueError(f"shares: one row per image of conf ({len(conf)}), got {len(shares)}")
    sigmas, class_radius, single, alpha_sigma = _setup(shares, sigmas, n, alpha, alpha_split, radii)
    check_count(candidates, "candidates")
    best_single = np.max(np.array(list(single.values())), axis=0)
    cand = np.unique(np.append(np.quantile(conf, np.linspace(0.0, 1.0, candidates + 1)), 1.01))
    surv = survival(conf, cand)
    best = None
    for chosen in itertools.combinations_with_replacement(range(len(cand)), len(sigmas) - 1):
        radius, level = _dual_radius(level_shares(surv, chosen), class_radius, sigma_e, n, alpha_sigma)
        diff = certified_curve(radius, radii) - best_single
        key = (round(float(diff.min()), 9), round(float(diff.mean()), 9))
        if best is None or key > best[0]:
            best = (key, chosen, diff, level)
    (objective, mean_diff), chosen, diff, level = best
    return RouterFit(
        thresholds=[0.0] + [float(cand[j]) for j in chosen], objective=objective, mean_difference=mean_diff,
        projection=Projection(list(radii), (diff + best_single).round(4).tolist(), single,
                              [float((level == i).mean()) for i in range(len(sigmas))]),
        images=len(conf), samples=conf.shape[1], n=n, candidates=len(cand),
        seconds=round(time.perf_counter() - start, 1))


def build_router(expert: nn.Module, expert_arch: str, thresholds: Sequence[float]) -> tuple[ConfidenceRouter, str]:
    """A :class:`ConfidenceRouter` holding a copy of ``expert``'s weights and the thresholds; returns it with its
    architecture name (``router_<expert_arch>``)."""
    arch = f"router_{expert_arch}"
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: no confidence router for experts of architecture {expert_arch!r} "
                         f"(known: {', '.join(a for a in ARCHITECTURES if a.startswith('router_'))})")
    t = [float(v) for v in thresholds]
    if not t or t[0] != 0.0 or any(b < a for a, b in itertools.pairwise(t)):
        raise ValueError(f"thresholds: must start at 0 and ascend, got {t}")
    router = ARCHITECTURES[arch][0](len(t))
    router.expert.load_state_dict(expert.state_dict())
    with torch.no_grad():
        router.route.weight.copy_(torch.tensor(t).view(-1, 1))
    return router.eval(), arch
