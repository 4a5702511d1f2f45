"""Certified-training objectives for base classifiers of randomized smoothing: the loss of one batch.

- ``"gaussian"``: cross-entropy of f on x + ε, ε ~ N(0, σ²I) (Cohen et al. 2019, §3.3);
- ``"consistency"``: two noisy copies, mean cross-entropy + λ·mean_i KL(p̄ ‖ p_i) + η·H(p̄) (Jeong & Shin 2020, §3);
- ``"smoothadv"``: an ℓ2 PGD attack on the *soft* smoothed classifier, then cross-entropy of f at the adversarial
  point under each noise draw (Salman et al. 2019, "Provably robust deep learning via adversarially trained
  smoothed classifiers", §3 and App. A, SmoothAdv_PGD);
- ``"macer"``: cross-entropy of the soft smoothed classifier ĝ plus a hinge on its soft certified radius
  (Zhai et al. 2020, "MACER: attack-free and scalable robust training via maximizing certified radius", §3–4).

Every random number (noise draws, the attack's random restarts of a zero gradient) comes from the generator the
caller passes, on the model's device, so a seeded run is reproducible and a resumed one continues bit for bit.
Images are [B, C, H, W] in [0, 1] (the models normalize inside).

These are *training* losses: nothing here is a certificate, and nothing here changes how one is computed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rs_core.smoothing.noises import check_noise, get_noise

OBJECTIVES = ("gaussian", "consistency", "smoothadv", "macer")


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return float(value)


def _nonnegative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
    return float(value)


def _count(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ObjectiveSpec:
    """An objective and all its hyper-parameters (those of the other objectives are ignored but still checked).

    ``consistency`` λ and ``entropy`` η: Jeong & Shin; ``smoothadv_m`` noise draws per image, ``smoothadv_eps`` the
    ℓ2 budget, ``smoothadv_steps`` PGD steps (step size 2ε/steps, as Salman et al.'s code), ``smoothadv_warmup``
    epochs over which ε grows linearly from ε/warmup to ε (1 = no warm-up); ``macer_k`` noise draws, ``macer_lambda``
    the weight of the radius term, ``macer_gamma`` the hinge's γ, ``macer_beta`` the inverse temperature β of the
    logits in the radius term, ``macer_deferred`` the first epochs trained with λ = 0 (the soft smoothed classifier's
    cross-entropy alone) before the radius term starts: from a random initialization the hinge pushes every image's
    radius at once and the network collapses to one class, which is why Jeong & Shin's released MNIST MACER runs
    defer it ("deferred"). Defaults: Salman et al.'s ε = 1.0 for σ = 0.5 with m = 2 and one step (cheap on a
    CPU), Zhai et al.'s k = 16, λ = 16, γ = 8, β = 16. Invalid values raise ``ValueError`` naming the field.
    """

    name: str = "gaussian"
    noise: str = "gaussian"
    consistency: float = 0.0
    entropy: float = 0.5
    smoothadv_m: int = 2
    smoothadv_eps: float = 1.0
    smoothadv_steps: int = 1
    smoothadv_warmup: int = 10
    macer_k: int = 16
    macer_lambda: float = 16.0
    macer_gamma: float = 8.0
    macer_beta: float = 16.0
    macer_deferred: int = 0

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ValueError(f"objective: must be one of {', '.join(OBJECTIVES)}, got {self.name!r}")
        check_noise(self.noise)
        if self.name == "macer" and self.noise != "gaussian":
            # MACER's radius term is the Gaussian one, σ/2·(Φ⁻¹(p1) − Φ⁻¹(p2)); it means nothing for other noises.
            raise ValueError(f"noise: objective 'macer' maximizes the Gaussian ℓ2 radius; it takes noise "
                             f"'gaussian', not {self.noise!r}")
        _nonnegative(self.consistency, "consistency")
        _nonnegative(self.entropy, "entropy")
        _count(self.smoothadv_m, "smoothadv_m")
        _positive(self.smoothadv_eps, "smoothadv_eps")
        _count(self.smoothadv_steps, "smoothadv_steps")
        _count(self.smoothadv_warmup, "smoothadv_warmup")
        _count(self.macer_k, "macer_k")
        _nonnegative(self.macer_lambda, "macer_lambda")
        _positive(self.macer_gamma, "macer_gamma")
        _positive(self.macer_beta, "macer_beta")
        _count(self.macer_deferred, "macer_deferred", minimum=0)
        if self.name == "consistency" and self.consistency <= 0:
            raise ValueError("consistency: objective 'consistency' needs λ > 0 (--consistency)")
        if self.name in ("smoothadv", "macer") and self.consistency > 0:
            raise ValueError(f"consistency: λ applies to objective 'consistency' only, not {self.name!r}")

    def epsilon(self, epoch: int) -> float:
        """SmoothAdv's budget in 0-based ``epoch``: min(ε, (epoch + 1)·ε / warmup) (Salman et al.'s code)."""
        return min(self.smoothadv_eps, (epoch + 1) * self.smoothadv_eps / self.smoothadv_warmup)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, gen: torch.Generator,
             epoch: int = 0) -> torch.Tensor:
        """This objective's scalar loss on the batch ``x`` [B, C, H, W], ``y`` [B] at noise σ (0-based ``epoch``
        for SmoothAdv's warm-up and MACER's deferral)."""
        if self.name == "gaussian" or sigma == 0:
            # σ = 0 (a clean classifier): every objective reduces to plain cross-entropy.
            return gaussian_loss(model, x, y, sigma, gen, noise=self.noise)
        if self.name == "consistency":
            return consistency_loss(model, x, y, sigma, gen, consistency=self.consistency, entropy=self.entropy,
                                    noise=self.noise)
        if self.name == "smoothadv":
            return smoothadv_loss(model, x, y, sigma, gen, eps=self.epsilon(epoch), steps=self.smoothadv_steps,
                                  m=self.smoothadv_m, noise=self.noise)
        lam = 0.0 if epoch < self.macer_deferred else self.macer_lambda
        return macer_terms(model, x, y, sigma, gen, k=self.macer_k, gamma=self.macer_gamma,
                           beta=self.macer_beta).loss(lam)


def draw_noise(shape: torch.Size, sigma: float, gen: torch.Generator, device: torch.device,
               noise: str = "gaussian") -> torch.Tensor:
    """Training noise of standard deviation σ: ``noise`` "gaussian" | "laplace" | "uniform" made from standard
    normals by the same map as certification's (:meth:`rs_core.smoothing.noises.Gaussian.transform` etc.), so a
    model is trained on exactly the law it will be smoothed with. Gaussian: randn·σ, the stream it always was."""
    z = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    if sigma == 0:
        return z * 0.0
    return get_noise(noise, sigma).transform(z)


def gaussian_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float,
                  gen: torch.Generator, noise: str = "gaussian") -> torch.Tensor:
    """Cross-entropy of f on x + ε, one draw ε ~ N(0, σ²I) per image (Cohen et al. 2019, §3.3). With σ = 0 the draw
    is still made (and multiplied by 0), so that a σ = 0 run's stream is the one it always was."""
    return F.cross_entropy(model(x + draw_noise(x.shape, sigma, gen, x.device, noise)), y)


@dataclass
class ConsistencyTerms:
    """Jeong & Shin's three terms on one batch (scalars): mean cross-entropy over the two noisy copies, the mean
    KL(p̄ ‖ p_i) and the entropy H(p̄) of the mean softmax p̄."""

    ce: torch.Tensor
    kl: torch.Tensor
    entropy: torch.Tensor


def consistency_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, gen: torch.Generator,
                      m: int = 2, noise: str = "gaussian") -> ConsistencyTerms:
    """The terms of Jeong & Shin (2020, §3, eq. 6) over ``m`` noisy copies of ``x`` [B, C, H, W]."""
    noisy = x.repeat(m, 1, 1, 1)
    noisy = noisy + draw_noise(noisy.shape, sigma, gen, x.device, noise)
    logits = model(noisy).view(m, x.shape[0], -1)
    ce = sum(F.cross_entropy(logits[i], y) for i in range(m)) / m
    log_p = F.log_softmax(logits, dim=2)
    p_mean = log_p.exp().mean(0).clamp_min(1e-12)
    kl = sum(F.kl_div(log_p[i], p_mean, reduction="batchmean") for i in range(m)) / m
    ent = -(p_mean * p_mean.log()).sum(1).mean()
    return ConsistencyTerms(ce, kl, ent)


def consistency_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, gen: torch.Generator, *,
                     consistency: float, entropy: float = 0.5, noise: str = "gaussian") -> torch.Tensor:
    """ce + λ·KL + η·H (Jeong & Shin 2020, eq. 6) over two noisy copies."""
    t = consistency_terms(model, x, y, sigma, gen, noise=noise)
    return t.ce + consistency * t.kl + entropy * t.entropy


def soft_smoothed_loss(model: nn.Module, points: torch.Tensor, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-image −log of the soft smoothed classifier at ``y``: −log mean_i softmax(f(x' + δ_i))_y, for
    ``points`` x' [B, C, H, W] and ``noise`` [m, B, C, H, W] (Salman et al. 2019, eq. 4). Shape [B]."""
    m, b = noise.shape[0], points.shape[0]
    probs = F.softmax(model((points.unsqueeze(0) + noise).flatten(0, 1)), dim=1).view(m, b, -1).mean(0)
    return -probs.gather(1, y[:, None]).squeeze(1).clamp_min(1e-20).log()


def smoothadv_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, *, eps: float,
                     steps: int, gen: torch.Generator) -> torch.Tensor:
    """SmoothAdv's inner attack (Salman et al. 2019, §3, Algorithm 1 "SmoothAdv_PGD"): ``steps`` normalized-gradient
    ascent steps of size 2ε/steps on :func:`soft_smoothed_loss` with the fixed ``noise`` [m, B, C, H, W], each
    followed by clipping x + δ to [0, 1] and projecting δ onto the ℓ2 ball of radius ``eps``. Returns δ [B, C, H, W]
    (detached). A zero gradient is replaced by a random direction drawn from ``gen``. The model is put in eval mode
    for the attack (its batch-norm statistics untouched) and its parameters' ``.grad`` are left alone."""
    was_training = model.training
    model.eval()
    delta = torch.zeros_like(x)
    step = 2 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = soft_smoothed_loss(model, x + delta, y, noise).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            norms = grad.flatten(1).norm(dim=1)
            zero = norms == 0
            if bool(zero.any()):
                grad[zero] = torch.randn(grad[zero].shape, generator=gen, device=x.device, dtype=grad.dtype)
                norms = grad.flatten(1).norm(dim=1)
            delta = delta.detach() + step * grad / norms.view(-1, *([1] * (x.dim() - 1)))
            delta = (x + delta).clamp(0, 1) - x
            delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(eps)).view(-1, *([1] * (x.dim() - 1)))
    model.train(was_training)
    return delta.detach()


def smoothadv_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, gen: torch.Generator, *,
                   eps: float, steps: int = 1, m: int = 2, noise: str = "gaussian") -> torch.Tensor:
    """SmoothAdv's training loss (Salman et al. 2019, §3): ``m`` noise draws δ_i per image, the attack
    :func:`smoothadv_attack` with them, then the mean cross-entropy of f on x' + δ_i over all draws — the same draws
    as the attack, as in their code."""
    draws = draw_noise(torch.Size((m, *x.shape)), sigma, gen, x.device, noise)
    adv = x + smoothadv_attack(model, x, y, draws, eps=eps, steps=steps, gen=gen)
    logits = model((adv.unsqueeze(0) + draws).flatten(0, 1))
    return F.cross_entropy(logits, y.repeat(m))


@dataclass
class MacerTerms:
    """MACER's terms on one batch of B images (Zhai et al. 2020, §4, Algorithm 1).

    ``ce``: mean over the batch of −log ĝ_y (ĝ the mean softmax over the k draws); ``hinge``: sum over the active
    images of σ/2·(γ − ξ), ξ = Φ⁻¹(ĝ^β_y) − Φ⁻¹(max_{c≠y} ĝ^β_c) on the β-tempered mean softmax ĝ^β, divided by B;
    ``radius`` [B]: σ/2·ξ for the images ĝ^β classifies correctly, NaN for the others; ``active`` [B]: those
    with 0 ≤ ξ ≤ γ and ξ finite (the hinge's support)."""

    ce: torch.Tensor
    hinge: torch.Tensor
    radius: torch.Tensor
    active: torch.Tensor

    def loss(self, lam: float) -> torch.Tensor:
        """ce + λ·hinge (Zhai et al., eq. 9)."""
        return self.ce + lam * self.hinge


def macer_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, gen: torch.Generator, *,
                k: int = 16, gamma: float = 8.0, beta: float = 16.0) -> MacerTerms:
    """MACER's terms (Zhai et al. 2020, §4) with ``k`` noise draws per image of ``x`` [B, C, H, W]."""
    b = x.shape[0]
    noise = draw_noise(torch.Size((k, *x.shape)), sigma, gen, x.device)
    logits = model((x.unsqueeze(0) + noise).flatten(0, 1)).view(k, b, -1)
    g = F.softmax(logits, dim=2).mean(0)
    ce = F.nll_loss((g + 1e-10).log(), y)
    g_beta = F.softmax(beta * logits, dim=2).mean(0)
    top2, idx = g_beta.topk(2, dim=1)
    correct = idx[:, 0] == y
    normal = torch.distributions.Normal(torch.zeros((), device=x.device), torch.ones((), device=x.device))
    # Φ⁻¹ of a probability that rounds to 1 (or 0) is ±inf: such images are left out of the hinge, as Zhai et al.'s
    # code does (their ξ is past γ anyway). The support is chosen without gradients and Φ⁻¹ recomputed on the chosen
    # images only: through a mask, the infinite derivative of Φ⁻¹ at 0 or 1 times a zero would make every gradient NaN.
    with torch.no_grad():
        xi = normal.icdf(top2[:, 0]) - normal.icdf(top2[:, 1])
        active = correct & torch.isfinite(xi) & (xi <= gamma)
    p1, p2 = top2[active, 0], top2[active, 1]
    hinge = (gamma - (normal.icdf(p1) - normal.icdf(p2))).sum() * sigma / 2 / b
    radius = torch.where(correct, sigma / 2 * xi, torch.full_like(xi, float("nan")))
    return MacerTerms(ce, hinge, radius, active)
