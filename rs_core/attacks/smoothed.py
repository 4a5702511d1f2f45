"""An ℓ2 attack on the smoothed classifier g (not on the base classifier f): the empirical side of a certificate.

CERTIFY says no perturbation with ‖δ‖₂ < R changes g's class (with probability ≥ 1 − α); this module searches for
the smallest δ that does, so a user sees the interval [R, D] in which g's true robustness lies.

The search (Salman et al. 2019, "SmoothAdv", attack the *soft* smoothed classifier):

- the loss at x' is −log of the mean over ``m`` noise draws of softmax(f(x' + ε_i)) at the clean class;
- for a budget ε, projected normalised-gradient steps (PGD) inside the ℓ2 ball of radius ε (and inside ``clip``);
- a bisection on ε between 0 and ``eps_max`` keeps the smallest budget at which the soft smoothed classifier's top
  class changes, warm-starting each PGD from the best perturbation so far;
- **the claim is decided by PREDICT**, not by the soft classifier: the candidate is scaled up along its direction in
  small steps until PREDICT (Cohen et al. Algorithm 1, ``n_predict`` fresh samples at the user's α) returns a class
  that is neither the clean one nor abstain. So "the class changed" is wrong with probability ≤ α, like a
  certificate, and the reported distance is never below g's true boundary distance except with that probability.

Models without gradients (an ONNX file run by onnxruntime) get the same search with the gradient replaced by a
zeroth-order estimate (antithetic finite differences along random directions, Nesterov & Spokoiny 2017), with the
reason recorded.

Noise: every draw comes from this call's own generators on x's device — the optimisation's from
``attack_seed(seed)``, PREDICT's from a child of it — never from a certificate's stream (``certify`` uses ``seed``,
its PREDICT ``predict_seed(seed)``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from rs_core.checks import check_alpha, check_count, check_sigma
from rs_core.smoothing.certify import ABSTAIN, predict
from rs_core.smoothing.seeding import attack_seed, derive_seed, make_generator

METHODS = ("auto", "pgd", "zeroth-order")
LEVELS = 10  # bisection halvings of [0, eps_max]: the budget is found to eps_max / 1024
# PREDICT confirmation: the candidate is scaled up by 1 %, then by steps growing 25 % a try, until PREDICT agrees it
# changed class (or eps_max): fine near the soft classifier's boundary, which its m-draw noise can misplace, and
# still reaching eps_max (from ½·eps_max in about 20 tries) when it was far off.
GROWTH = 0.01
GROWTH_RATE = 1.25
CONFIRM_TRIES = 40
REFINE = 4  # then halvings between the last refused and the first confirmed scale, each by PREDICT too
# Every confirmation is a PREDICT at α / (CONFIRM_TRIES + REFINE) (Bonferroni over all that may run), so the claim
# "some confirmed point changed g's class" is wrong with probability ≤ α in all, whichever point is reported.
CONFIRMATIONS = CONFIRM_TRIES + REFINE
ZO_DIRECTIONS = 16  # random directions per zeroth-order gradient estimate
PREDICT_PATH = 1  # derive_seed(attack_seed(seed), PREDICT_PATH, k): the k-th PREDICT's samples


@dataclass(frozen=True)
class AttackProgress:
    """Where a running attack is: after ``step`` of at most ``steps`` optimisation steps."""

    step: int
    steps: int
    distance: float  # ℓ2 norm of the current iterate's perturbation
    best: float  # smallest budget at which the soft smoothed classifier changed class so far (inf if none)
    elapsed_s: float


@dataclass(frozen=True)
class AttackResult:
    """The smallest perturbation found that changes g's prediction, decided by PREDICT with fresh samples.

    ``distance`` is ‖x_adv − x‖₂ when ``found``, else ``math.inf`` ("none found up to eps_max"); an empirical
    distance is an upper bound on g's true robustness at x (up to PREDICT's α), as CERTIFY's radius is a lower one.
    """

    clean_prediction: int
    found: bool
    distance: float
    x_adv: torch.Tensor | None
    adv_prediction: int | None
    steps: int
    method: str
    reason: str | None
    eps_max: float
    m: int
    seed: int
    alpha: float
    n_predict: int
    stopped: bool
    path: list[float] = field(default_factory=list)
    trajectory: list[torch.Tensor] | None = None
    elapsed_s: float = 0.0

    def record(self) -> dict:
        """JSON-ready summary (no tensors) for logs and certificates."""
        return {"clean_prediction": self.clean_prediction, "found": self.found,
                "distance": None if math.isinf(self.distance) else self.distance,
                "adv_prediction": self.adv_prediction, "steps": self.steps, "method": self.method,
                "reason": self.reason, "eps_max": self.eps_max, "m": self.m, "seed": self.seed, "alpha": self.alpha,
                "n_predict": self.n_predict, "stopped": self.stopped, "elapsed_s": round(self.elapsed_s, 3)}


def has_gradients(model: nn.Module, x: torch.Tensor) -> bool:
    """True when the model's output depends differentiably on its input (one forward pass on x)."""
    probe = x.detach().clone().unsqueeze(0).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model(probe)
    except RuntimeError:  # e.g. an exported program or runtime that refuses inputs requiring grad
        return False
    return isinstance(out, torch.Tensor) and out.requires_grad


def _check(sigma: float, eps_max: float, steps: int, m: int, alpha: float, n_predict: int, batch_size: int,
           method: str, clip: tuple[float, float] | None) -> None:
    check_sigma(sigma)
    if isinstance(eps_max, bool) or not isinstance(eps_max, (int, float)) or not 0 < eps_max < math.inf:
        raise ValueError(f"eps_max: must be a finite number > 0, got {eps_max!r}")
    check_count(steps, "steps")
    check_count(m, "m")
    check_alpha(alpha)
    check_count(n_predict, "n_predict")
    check_count(batch_size, "batch_size")
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
        raise ValueError(f"clip: must be None or (low, high) with low < high, got {clip!r}")


class _Soft:
    """The soft smoothed classifier's loss at the clean class, with this attack's noise."""

    def __init__(self, model: nn.Module, x: torch.Tensor, sigma: float, m: int, batch_size: int, label: int,
                 gen: torch.Generator) -> None:
        self.model, self.x, self.sigma, self.m, self.batch, self.label, self.gen = model, x, sigma, m, batch_size, \
            label, gen

    def noise(self) -> torch.Tensor:
        return torch.randn((self.m, *self.x.shape), generator=self.gen, device=self.x.device,
                           dtype=torch.float32) * self.sigma

    def probs(self, points: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Mean softmax over the noise draws for each point [P, *x.shape] → [P, K] (gradients flow if enabled):
        every point with every draw, in forward passes of at most batch_size inputs."""
        P = points.shape[0]
        noisy = (points.unsqueeze(1) + noise.unsqueeze(0)).reshape(P * self.m, *self.x.shape).to(self.x.dtype)
        scores = torch.cat([torch.softmax(self.model(noisy[i:i + self.batch]).float(), dim=1)
                            for i in range(0, noisy.shape[0], self.batch)])
        return scores.view(P, self.m, -1).mean(1)

    def loss(self, probs: torch.Tensor) -> torch.Tensor:
        return -torch.log(probs[:, self.label].clamp_min(1e-12))

    def changed(self, point: torch.Tensor) -> bool:
        with torch.inference_mode():
            return int(self.probs(point.unsqueeze(0), self.noise()).argmax(1)) != self.label

    def gradient(self, point: torch.Tensor, zeroth_order: bool) -> torch.Tensor:
        noise = self.noise()
        if not zeroth_order:
            p = point.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                loss = self.loss(self.probs(p.unsqueeze(0), noise)).sum()
                (grad,) = torch.autograd.grad(loss, p)
            return grad
        # Antithetic finite differences along random unit directions, with common noise for both sides.
        h = 0.05 * self.sigma
        with torch.inference_mode():
            u = torch.randn((ZO_DIRECTIONS, *point.shape), generator=self.gen, device=point.device)
            u = u / u.flatten(1).norm(dim=1).view(-1, *[1] * point.dim())
            plus = self.loss(self.probs(point + h * u, noise))
            minus = self.loss(self.probs(point - h * u, noise))
            return ((plus - minus) / (2 * h)).view(-1, *[1] * point.dim()).mul(u).sum(0) * point.numel() \
                / ZO_DIRECTIONS


def _project(x: torch.Tensor, delta: torch.Tensor, eps: float, clip: tuple[float, float] | None) -> torch.Tensor:
    norm = float(delta.norm())
    if norm > eps:
        delta = delta * (eps / norm)
    if clip is not None:
        delta = (x + delta).clamp(*clip) - x
    return delta


def attack_smoothed(model: nn.Module, x: torch.Tensor, sigma: float, *, eps_max: float = 4.0, steps: int = 100,
                    m: int = 32, alpha: float = 0.001, n_predict: int = 1000, batch_size: int = 1000, seed: int = 0,
                    method: str = "auto", clip: tuple[float, float] | None = (0.0, 1.0),
                    keep_trajectory: bool = False, stop: threading.Event | None = None,
                    progress: Callable[[AttackProgress], None] | None = None) -> AttackResult:
    """Search for the smallest ℓ2 perturbation of x [C, H, W] (or any shape the model takes as a batch) that changes
    the prediction of g, the smoothed classifier of ``model`` at noise ``sigma``.

    Guarantee: when ``found``, PREDICT at ``x_adv`` returned a class other than the clean PREDICT's. The clean PREDICT
    is wrong with probability ≤ α, and all the confirmation PREDICTs together (each at α / 44) ≤ α; so ``distance``
    is ≥ g's true boundary distance at x except with probability ≤ 2α — never below a sound certificate's radius
    but with that probability. ``steps`` bounds the optimisation steps (each
    costs m forward and backward passes, or 2·16·m forward passes without gradients); PREDICT costs n_predict
    forward passes per confirmation. ``stop`` ends the search within one step (``stopped``), keeping the best
    candidate found so far (still confirmed by PREDICT).

    >>> from rs_core.smoothing.playground import HalfPlane
    >>> f = HalfPlane(angle=0.0, offset=0.0)   # f(x) = 1[x₁ > 0]: g = f, boundary distance |x₁|
    >>> r = attack_smoothed(f, torch.tensor([[[-1.0, 0.0]]]), 0.1, eps_max=3.0, clip=None, n_predict=2000)
    >>> r.found, r.adv_prediction, 1.0 <= r.distance < 1.05
    (True, 1, True)
    """
    _check(sigma, eps_max, steps, m, alpha, n_predict, batch_size, method, clip)
    t0 = time.perf_counter()
    x = x.detach()
    device = x.device
    root = attack_seed(seed)
    predictions = 0

    def predict_at(point: torch.Tensor, level: float) -> int:
        nonlocal predictions
        predictions += 1
        gen = make_generator(derive_seed(root, PREDICT_PATH, predictions), device)
        return predict(model, point, sigma, n_predict, level, batch_size, generator=gen)

    reason = None
    if method == "auto":
        method = "pgd" if has_gradients(model, x) else "zeroth-order"
        if method == "zeroth-order":
            reason = "the model gives no gradients (e.g. an ONNX file): gradients estimated from forward passes"
    elif method == "pgd" and not has_gradients(model, x):
        raise ValueError("method: 'pgd' needs a model with gradients; this one gives none (use 'auto' or "
                         "'zeroth-order')")
    common = {"eps_max": float(eps_max), "m": m, "seed": seed, "alpha": alpha, "n_predict": n_predict,
              "method": method, "reason": reason}
    clean = predict_at(x, alpha)
    if clean == ABSTAIN:  # g has no class at x: there is nothing to change
        return AttackResult(clean, False, math.inf, None, None, 0, stopped=False, path=[],
                            trajectory=[] if keep_trajectory else None, elapsed_s=time.perf_counter() - t0,
                            **{**common, "reason": "PREDICT abstains at the input: g has no class to change"})
    soft = _Soft(model, x, sigma, m, batch_size, clean, make_generator(root, device))
    zeroth = method == "zeroth-order"
    per_level = max(2, steps // (LEVELS + 1))
    lo, hi = 0.0, float(eps_max)
    best: torch.Tensor | None = None
    path: list[float] = []
    trajectory: list[torch.Tensor] | None = [] if keep_trajectory else None
    taken, stopped = 0, False

    def pgd(eps: float, start: torch.Tensor | None) -> torch.Tensor | None:
        """At most ``per_level`` steps in the ε-ball; the first iterate whose soft top class changed, or None."""
        nonlocal taken, stopped
        delta = torch.zeros_like(x) if start is None else _project(x, start.clone(), eps, clip)
        for _ in range(per_level):
            if taken >= steps or (stop is not None and stop.is_set()):
                stopped = stop is not None and stop.is_set()
                return None
            grad = soft.gradient(x + delta, zeroth)
            g_norm = float(grad.norm())
            if not math.isfinite(g_norm) or g_norm == 0:
                grad = torch.randn(x.shape, generator=soft.gen, device=device)  # flat loss: a random step
                g_norm = float(grad.norm())
            delta = _project(x, delta + grad * (max(eps, 1e-3) / 4 / g_norm), eps, clip)  # quarter-budget steps
            taken += 1
            dist = float(delta.norm())
            path.append(dist)
            if trajectory is not None:
                trajectory.append((x + delta).detach().cpu())
            if progress is not None:
                progress(AttackProgress(taken, steps, dist, hi if best is not None else math.inf,
                                        time.perf_counter() - t0))
            if soft.changed(x + delta):
                return delta
        return None

    # The whole budget first: if even eps_max changes nothing, the bisection has nothing to halve.
    found_delta = pgd(hi, None)
    if found_delta is not None:
        best, hi = found_delta, float(found_delta.norm())
        for _ in range(LEVELS):
            if stopped or taken >= steps:
                break
            mid = (lo + hi) / 2
            candidate = pgd(mid, best)
            if candidate is not None:
                best, hi = candidate, float(candidate.norm())
            elif not stopped:
                lo = mid

    adv, adv_pred, distance = None, None, math.inf
    if best is not None and float(best.norm()) > 0:
        direction = best / float(best.norm())
        level = alpha / CONFIRMATIONS

        def confirm(scale: float) -> tuple[torch.Tensor, int | None]:
            point = x + _project(x, direction * scale, math.inf, clip)
            pred = predict_at(point, level)
            return point, (pred if pred not in (clean, ABSTAIN) else None)

        t, growth, refused = float(best.norm()), GROWTH, 0.0
        for _ in range(CONFIRM_TRIES):
            point, pred = confirm(t)
            if pred is not None:
                adv, adv_pred, distance = point, pred, float((point - x).norm())
                break
            if t >= eps_max:
                break
            refused = t
            t, growth = min(t * (1 + growth), eps_max), growth * GROWTH_RATE
        if adv is not None and refused > 0:  # the growth overshoots by up to its last step: halve the gap
            lo_t, hi_t = refused, t
            for _ in range(REFINE):
                mid = (lo_t + hi_t) / 2
                point, pred = confirm(mid)
                if pred is not None:
                    adv, adv_pred, distance, hi_t = point, pred, float((point - x).norm()), mid
                else:
                    lo_t = mid
    return AttackResult(clean, adv is not None, distance, adv, adv_pred, taken, stopped=stopped, path=path,
                        trajectory=trajectory, elapsed_s=time.perf_counter() - t0, **common)


class AttackRun:
    """:func:`attack_smoothed` as a stoppable object for a page's background thread: ``run()`` in the worker,
    ``stop()`` and ``latest()`` from any thread."""

    def __init__(self, model: nn.Module, x: torch.Tensor, sigma: float, **options) -> None:
        _check(sigma, options.get("eps_max", 4.0), options.get("steps", 100), options.get("m", 32),
               options.get("alpha", 0.001), options.get("n_predict", 1000), options.get("batch_size", 1000),
               options.get("method", "auto"), options.get("clip", (0.0, 1.0)))
        self.model, self.x, self.sigma, self.options = model, x, sigma, options
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: AttackProgress | None = None
        self.result: AttackResult | None = None

    def _progress(self, p: AttackProgress) -> None:
        with self._lock:
            self._latest = p

    def run(self) -> AttackResult:
        self.result = attack_smoothed(self.model, self.x, self.sigma, stop=self._stop, progress=self._progress,
                                      **self.options)
        return self.result

    def stop(self) -> None:
        self._stop.set()

    def latest(self) -> AttackProgress | None:
        with self._lock:
            return self._latest

    @property
    def done(self) -> bool:
        return self.result is not None


__all__ = ["METHODS", "AttackProgress", "AttackResult", "AttackRun", "attack_smoothed", "has_gradients"]
