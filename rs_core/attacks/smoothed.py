"""An ℓ2 attack on the smoothed classifier g (not on the base classifier f): the empirical side of a certificate.

CERTIFY says no perturbation with ‖δ‖₂ < R changes g's class (with probability ≥ 1 − α); this module searches for
the smallest δ that does, so a user sees the interval [R, D] in which g's true robustness lies.

Every search attacks the *soft* smoothed classifier (Salman et al. 2019, "SmoothAdv"): the loss at x' is −log of
the mean over ``m`` noise draws of softmax(f(x' + ε_i)) at the clean class. Three searches for a small δ at which
the soft classifier's top class changes:

- ``"pgd"``: projected normalised-gradient steps inside the ℓ2 ball of radius ε (and inside ``clip``), with a
  bisection on ε between 0 and ``eps_max`` that warm-starts each PGD from the best perturbation so far;
- ``"ddn"``: decoupled direction and norm (Rony et al. 2019): gradient steps on the direction while the norm ε
  shrinks by 5 % after a step that changed the class and grows by 5 % after one that did not;
- ``"boundary"``, for models without gradients (an ONNX file run by onnxruntime): the direction from x to a point
  the soft classifier puts in another class (its zeroth-order gradient, or the best of random directions), a
  bisection on the distance along it, then the boundary's normal estimated there by antithetic finite differences
  (Nesterov & Spokoiny 2017) as the next direction — the nearest point of a locally flat boundary lies along it.

**The claim is decided by PREDICT**, not by the soft classifier: the candidate is scaled up along its direction until
PREDICT (Cohen et al. Algorithm 1, ``n_predict`` fresh samples) returns a class that is neither the clean one nor
abstain. So "the class changed" is wrong with probability ≤ α, like a certificate, and the reported distance is
never below g's true boundary distance except with that probability.

Noise: every draw comes from this call's own generators on x's device — the optimisation's from
``attack_seed(seed)``, each PREDICT's from a child of it (``derive_seed``) — never from a certificate's stream
(``certify`` uses ``seed``, its PREDICT ``predict_seed(seed)``).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from rs_core.checks import check_alpha, check_count, check_sigma
from rs_core.smoothing.certify import ABSTAIN, predict
from rs_core.smoothing.seeding import attack_seed, derive_seed, make_generator

METHODS = ("auto", "pgd", "ddn", "boundary")
LEVELS = 10  # bisection halvings of [0, eps_max]: the budget (or distance) is found to eps_max / 1024
# PREDICT confirmation: after a refusal the candidate is scaled up by the least overshoot PREDICT can confirm (see
# _least_overshoot), then by steps growing 25 % a try, until PREDICT agrees it changed class (or eps_max): still
# reaching eps_max from ½·eps_max in about 20 tries when the soft classifier's boundary was far off g's.
GROWTH = 0.01
GROWTH_RATE = 1.25
CONFIRM_TRIES = 40
REFINE = 4  # then halvings between the last refused and the first confirmed scale, each by PREDICT too
# Every confirmation is a PREDICT at α / (CONFIRM_TRIES + REFINE) (Bonferroni over all that may run), so the claim
# "some confirmed point changed g's class" is wrong with probability ≤ α in all, whichever point is reported.
CONFIRMATIONS = CONFIRM_TRIES + REFINE
STOPPED_TRIES = 2  # after Stop: the candidate and one larger scale only, so Stop returns within ~2 PREDICTs
ZO_DIRECTIONS = 16  # random directions per zeroth-order gradient estimate
DDN_GAMMA = 0.05  # Rony et al.'s norm factor
PREDICT_PATH = 1  # derive_seed(attack_seed(seed), PREDICT_PATH, k): the k-th PREDICT's samples
NO_GRADIENTS = "the model gives no gradients (e.g. an ONNX file): a gradient-free boundary search on g"


@dataclass(frozen=True)
class AttackProgress:
    """Where a running attack is: after ``step`` of at most ``steps`` optimisation steps."""

    step: int
    steps: int
    distance: float  # ℓ2 norm of the current iterate's perturbation
    # Smallest perturbation at which the *soft* smoothed classifier changed class so far (inf if none): PREDICT
    # confirms only at the end, so a running attack has no confirmed distance yet.
    best: float
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
    stopped: bool
    path: list[float] = field(default_factory=list)
    trajectory: list[torch.Tensor] | None = None
    elapsed_s: float = 0.0
    alpha: float = 0.001
    n_predict: int = 1000
    predictions: int = 0  # PREDICT calls made (each n_predict forward passes), the clean one included

    def record(self) -> dict:
        """JSON-ready summary (no tensors) for logs and certificates."""
        return {"clean_prediction": self.clean_prediction, "found": self.found,
                "distance": None if math.isinf(self.distance) else self.distance,
                "adv_prediction": self.adv_prediction, "steps": self.steps, "method": self.method,
                "reason": self.reason, "eps_max": self.eps_max, "m": self.m, "seed": self.seed, "alpha": self.alpha,
                "n_predict": self.n_predict, "stopped": self.stopped, "elapsed_s": round(self.elapsed_s, 3),
                "predictions": self.predictions}


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
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    ok = clip is None
    if not ok:
        try:
            ok = len(clip) == 2 and all(math.isfinite(float(c)) for c in clip) and float(clip[0]) < float(clip[1])
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise ValueError(f"clip: must be None or (low, high) with finite low < high, got {clip!r}")


def _least_overshoot(sigma: float, n: int, level: float) -> float:
    """How far beyond g's boundary a point must lie at least before PREDICT (n samples, level) can name the new class.

    PREDICT needs a vote share of about ½ + z/(2√n) (z the two-sided normal quantile at ``level``); by Salman et
    al.'s Lipschitz property Φ⁻¹(p(x')) moves at most ‖x' − x‖/σ, so from p = ½ that takes σ·Φ⁻¹(½ + z/(2√n)).
    """
    normal = statistics.NormalDist()
    share = min(0.5 + normal.inv_cdf(1 - level / 2) / (2 * math.sqrt(n)), 1 - 1e-9)
    return sigma * normal.inv_cdf(share)


def _project(x: torch.Tensor, delta: torch.Tensor, eps: float, clip: tuple[float, float] | None) -> torch.Tensor:
    norm = float(delta.norm())
    if norm > eps:
        delta = delta * (eps / norm)
    if clip is not None:
        delta = (x + delta).clamp(*clip) - x
    return delta


def _unit(v: torch.Tensor) -> torch.Tensor | None:
    norm = float(v.norm())
    return v / norm if math.isfinite(norm) and norm > 0 else None


class _Soft:
    """The soft smoothed classifier at the clean class, with this attack's noise."""

    def __init__(self, model: nn.Module, x: torch.Tensor, sigma: float, m: int, batch_size: int, label: int,
                 gen: torch.Generator) -> None:
        self.model, self.x, self.sigma, self.m, self.batch = model, x, sigma, m, batch_size
        self.label, self.gen = label, gen

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

    def changed(self, probs: torch.Tensor) -> torch.Tensor:
        """Per point: the soft classifier's top class is not the clean one."""
        return probs.argmax(1) != self.label

    def gradient(self, point: torch.Tensor) -> tuple[bool, torch.Tensor]:
        """Whether the soft class at ``point`` changed, and the loss gradient there (one fresh noise draw for both)."""
        p = point.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            probs = self.probs(p.unsqueeze(0), self.noise())
            (grad,) = torch.autograd.grad(self.loss(probs).sum(), p)
        return bool(self.changed(probs.detach())[0]), grad

    def zo_gradient(self, point: torch.Tensor) -> torch.Tensor:
        """The loss gradient estimated from forward passes only: antithetic finite differences along random unit
        directions, both sides with the same noise (common random numbers cancel most of the Monte Carlo error).
        The directions are orthonormal (QR of a Gaussian matrix): in d ≤ 16 dimensions they span the space, so a
        linear loss's gradient comes out exact, and in more they waste no query on overlapping directions."""
        h = 0.05 * self.sigma
        d = point.numel()
        k = min(ZO_DIRECTIONS, d)
        with torch.inference_mode():
            basis = torch.randn((d, k), generator=self.gen, device=point.device, dtype=torch.float32)
            u = torch.linalg.qr(basis)[0].T.reshape(k, *point.shape).to(point.dtype)
            both = self.loss(self.probs(torch.cat([point + h * u, point - h * u]), self.noise()))
            slope = (both[:k] - both[k:]) / (2 * h)
            return slope.view(-1, *[1] * point.dim()).mul(u).sum(0) * d / k


class _Search:
    """One call's bookkeeping: the step budget, Stop, the path, the trajectory and progress reports."""

    def __init__(self, x: torch.Tensor, steps: int, stop: threading.Event | None,
                 progress: Callable[[AttackProgress], None] | None, keep_trajectory: bool, t0: float) -> None:
        self.x, self.steps, self.stop, self.report, self.t0 = x, steps, stop, progress, t0
        self.taken, self.stopped, self.best = 0, False, math.inf
        self.path: list[float] = []
        self.trajectory: list[torch.Tensor] | None = [] if keep_trajectory else None

    def halt(self) -> bool:
        """Whether the search must end now (Stop requested, or the step budget spent)."""
        if self.stop is not None and self.stop.is_set():
            self.stopped = True
        return self.stopped or self.taken >= self.steps

    def step(self, delta: torch.Tensor, changed: bool = False) -> None:
        """Count one step whose iterate is x + delta; ``changed``: the soft class changed there."""
        self.taken += 1
        dist = float(delta.norm())
        if changed and 0 < dist < self.best:
            self.best = dist
        self.path.append(dist)
        if self.trajectory is not None:
            self.trajectory.append((self.x + delta).detach().cpu())
        if self.report is not None:
            self.report(AttackProgress(self.taken, self.steps, dist, self.best, time.perf_counter() - self.t0))


def _pgd(soft: _Soft, s: _Search, eps_max: float, clip: tuple[float, float] | None) -> torch.Tensor | None:
    """PGD in the ε-ball with a bisection on ε; the smallest perturbation at which the soft class changed, or None."""
    x = soft.x
    per_level = max(2, s.steps // (LEVELS + 1))

    def run(eps: float, start: torch.Tensor | None) -> torch.Tensor | None:
        delta = torch.zeros_like(x) if start is None else _project(x, start.clone(), eps, clip)
        for _ in range(per_level):
            if s.halt():
                return None
            changed, grad = soft.gradient(x + delta)
            if changed and float(delta.norm()) > 0:  # this iterate already changed the soft class
                return delta
            unit = _unit(grad)
            if unit is None:  # a flat loss: a random step
                unit = _unit(torch.randn(x.shape, generator=soft.gen, device=x.device))
            delta = _project(x, delta + unit * (max(eps, 1e-3) / 4), eps, clip)  # quarter-budget steps
            s.step(delta)
        with torch.inference_mode():  # the last iterate, which no gradient evaluation checked (forward passes only)
            changed = bool(soft.changed(soft.probs((x + delta).unsqueeze(0), soft.noise()))[0])
        return delta.clone() if changed else None

    lo, hi = 0.0, eps_max
    best = run(hi, None)  # the whole budget first: if even eps_max changes nothing, there is nothing to halve
    if best is None:
        return None
    hi = float(best.norm())
    s.best = min(s.best, hi)
    for _ in range(LEVELS):
        if s.halt():
            break
        mid = (lo + hi) / 2
        candidate = run(mid, best)
        if candidate is not None:
            best, hi = candidate, float(candidate.norm())
            s.best = min(s.best, hi)
        elif not s.stopped:
            lo = mid
    return best


def _ddn(soft: _Soft, s: _Search, eps_max: float, clip: tuple[float, float] | None) -> torch.Tensor | None:
    """Decoupled direction and norm (Rony et al. 2019) on the soft smoothed classifier: the smallest perturbation
    at which the soft class changed, or None."""
    x = soft.x
    eps = eps_max / 4  # DDN's start, 1.0, at the default eps_max = 4
    delta = torch.zeros_like(x)
    best: torch.Tensor | None = None
    for k in range(s.steps):
        if s.halt():
            break
        changed, grad = soft.gradient(x + delta)
        norm = float(delta.norm())
        if changed and 0 < norm < s.best:
            best, s.best = delta, norm
        eps = eps * (1 - DDN_GAMMA) if changed else min(eps * (1 + DDN_GAMMA), eps_max)
        unit = _unit(grad)
        if unit is None:
            unit = _unit(torch.randn(x.shape, generator=soft.gen, device=x.device))
        # The direction's step shrinks as a cosine from ε to ε/100 (Rony et al. anneal theirs the same way).
        rate = 0.01 + 0.99 * (1 + math.cos(math.pi * k / s.steps)) / 2
        moved = _unit(delta + unit * (eps * rate))
        delta = _project(x, (moved if moved is not None else unit) * eps, math.inf, clip)
        s.step(delta)
    return best


def _boundary(soft: _Soft, s: _Search, eps_max: float, clip: tuple[float, float] | None) -> torch.Tensor | None:
    """Gradient-free: a direction to a point of another soft class, a bisection on the distance along it, then the
    boundary's estimated normal as the next direction. Each query batch (a gradient estimate, a bisection probe)
    is one step. The smallest perturbation at which the soft class changed, or None."""
    x = soft.x

    def along(d: torch.Tensor, t: float) -> torch.Tensor:
        return _project(x, d * t, math.inf, clip)

    def probe(deltas: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The soft class changed at x + each delta (one step, one common noise draw)."""
        with torch.inference_mode():
            probs = soft.probs(x + deltas, noise)
        flags = soft.changed(probs)
        for delta, flag in zip(deltas, flags.tolist(), strict=True):
            if flag and 0 < float(delta.norm()) < s.best:
                s.best = float(delta.norm())
        s.step(deltas[int(flags.float().argmax())] if bool(flags.any()) else deltas[0], bool(flags.any()))
        return flags

    def bisect(d: torch.Tensor, hi: float) -> tuple[float, torch.Tensor] | None:
        """The smallest t ≤ hi (to hi / 1024) with the soft class changed at x + t·d, with one noise draw for every
        probe so the class along the ray is one fixed function; None if not changed at hi."""
        noise = soft.noise()
        if s.halt() or not bool(probe(along(d, hi).unsqueeze(0), noise)[0]):
            return None
        lo = 0.0
        for _ in range(LEVELS):
            if s.halt():
                break
            mid = (lo + hi) / 2
            if bool(probe(along(d, mid).unsqueeze(0), noise)[0]):
                hi = mid
            else:
                lo = mid
        return hi, along(d, hi)

    if s.halt():
        return None
    # Start: the loss gradient's direction and random ones, each at eps_max; the one that lowers the clean class's
    # soft probability most among those that changed it (a zero gradient far from the boundary gives no direction).
    s.step(torch.zeros_like(x))
    candidates = [u for u in [_unit(soft.zo_gradient(x))] if u is not None]
    randoms = torch.randn((ZO_DIRECTIONS, *x.shape), generator=soft.gen, device=x.device)
    candidates += [u for u in (_unit(r) for r in randoms) if u is not None]
    if s.halt() or not candidates:
        return None
    dirs = torch.stack(candidates)
    with torch.inference_mode():
        probs = soft.probs(x + torch.stack([along(d, eps_max) for d in dirs]), soft.noise())
    changed = soft.changed(probs)
    s.step(along(dirs[0], eps_max), bool(changed.any()))
    reach = eps_max
    if bool(changed.any()):
        clean_prob = probs[:, soft.label].masked_fill(~changed, math.inf)
        d = dirs[int(clean_prob.argmin())]
    else:  # in many dimensions no such direction is at hand: climb the loss with estimated gradients until one is
        delta = torch.zeros_like(x)
        while True:
            if s.halt():
                return None
            unit = _unit(soft.zo_gradient(x + delta))
            if unit is None:
                unit = _unit(torch.randn(x.shape, generator=soft.gen, device=x.device))
            delta = _project(x, delta + unit * (eps_max / 8), eps_max, clip)
            with torch.inference_mode():
                hit = bool(soft.changed(soft.probs((x + delta).unsqueeze(0), soft.noise()))[0])
            s.step(delta, hit)
            if hit and _unit(delta) is not None:
                d, reach = _unit(delta), float(delta.norm())
                break
    found = bisect(d, reach)
    if found is None:
        return None
    t, best = found
    while not s.halt():
        # The boundary's normal at the point found: for a flat boundary the nearest point of it lies along it.
        s.step(best, True)
        normal = _unit(-soft.zo_gradient(x + best))  # −∇loss points to the other class
        if normal is None or float((normal * d).sum()) <= 0:
            break
        found = bisect(normal, min(t, eps_max))
        if found is None:  # no nearer along the normal: try halfway between the two directions once
            halfway = _unit(normal + d)
            found = bisect(halfway, t) if halfway is not None else None
            if found is None:
                break
            normal = halfway
        if found[0] >= t * (1 - 1e-3):  # converged
            t, best, d = found[0], found[1], normal
            break
        t, best, d = found[0], found[1], normal
    return best


SEARCHES = {"pgd": _pgd, "ddn": _ddn, "boundary": _boundary}


def attack_smoothed(model: nn.Module, x: torch.Tensor, sigma: float, *, eps_max: float = 4.0, steps: int = 100,
                    m: int = 32, alpha: float = 0.001, n_predict: int = 1000, batch_size: int = 1000, seed: int = 0,
                    method: str = "auto", clip: tuple[float, float] | None = (0.0, 1.0),
                    keep_trajectory: bool = False, stop: threading.Event | None = None,
                    progress: Callable[[AttackProgress], None] | None = None) -> AttackResult:
    """Search for the smallest ℓ2 perturbation of x [C, H, W] (or any shape the model takes as a batch) that changes
    the prediction of g, the smoothed classifier of ``model`` at noise ``sigma``.

    ``method``: "pgd" (bisection on the budget), "ddn" (adaptive norm), "boundary" (gradient-free), or "auto":
    "pgd" when the model gives gradients for x (one probe forward pass), else "boundary" with ``reason`` set.

    Guarantee: when ``found``, PREDICT at ``x_adv`` returned a class other than the clean PREDICT's. The clean PREDICT
    is wrong with probability ≤ α, and all the confirmation PREDICTs together (each at α / 44) ≤ α; so ``distance``
    is ≥ g's true boundary distance at x except with probability ≤ 2α — never below a sound certificate's radius
    but with that probability. ``steps`` bounds the optimisation steps (each costs m forward and backward passes;
    without gradients a step is one batch of queries, up to 2·16·m forward passes); PREDICT costs n_predict forward
    passes per confirmation (``AttackResult.predictions`` counts them). ``stop`` ends the search within one step
    (``stopped``), keeping the best candidate found so far, still confirmed by PREDICT (at most two tries then).

    >>> from rs_core.smoothing.playground import HalfPlane
    >>> f = HalfPlane(angle=0.0, offset=0.0)   # f(x) = 1[x₁ > 0]: g = f, boundary distance |x₁|
    >>> r = attack_smoothed(f, torch.tensor([[[-1.0, 0.0]]]), 0.1, eps_max=3.0, clip=None, n_predict=2000)
    >>> r.found, r.adv_prediction, 1.0 <= r.distance < 1.05
    (True, 1, True)
    """
    _check(sigma, eps_max, steps, m, alpha, n_predict, batch_size, method, clip)
    t0 = time.perf_counter()
    x = x.detach().clone()  # a normal tensor even if made under inference_mode: gradients flow to δ through it
    device = x.device
    clip = None if clip is None else (float(clip[0]), float(clip[1]))
    root = attack_seed(seed)
    predictions = 0

    def predict_at(point: torch.Tensor, level: float) -> int:
        nonlocal predictions
        predictions += 1
        gen = make_generator(derive_seed(root, PREDICT_PATH, predictions), device)
        return predict(model, point, sigma, n_predict, level, batch_size, generator=gen)

    reason = None
    if method in ("auto", "pgd", "ddn") and not has_gradients(model, x):
        if method != "auto":
            raise ValueError(f"method: {method!r} needs a model with gradients; this one gives none (use 'auto' or "
                             "'boundary')")
        method, reason = "boundary", NO_GRADIENTS
    elif method == "auto":
        method = "pgd"
    s = _Search(x, steps, stop, progress, keep_trajectory, t0)

    def result(clean: int, adv: torch.Tensor | None, adv_pred: int | None, distance: float,
               why: str | None) -> AttackResult:
        return AttackResult(clean, adv is not None, distance, adv, adv_pred, s.taken, method, why, float(eps_max), m,
                            seed, s.stopped, s.path, s.trajectory, time.perf_counter() - t0, alpha, n_predict,
                            predictions)

    with torch.inference_mode():
        clean = predict_at(x, alpha)
    if clean == ABSTAIN:  # g has no class at x: there is nothing to change
        why = "PREDICT abstains at the input: g has no class to change"
        return result(clean, None, None, math.inf, why if reason is None else f"{why}; {reason}")
    soft = _Soft(model, x, sigma, m, batch_size, clean, make_generator(root, device))
    best = SEARCHES[method](soft, s, float(eps_max), clip)
    s.halt()  # a Stop that came during the last step still counts as stopped

    adv, adv_pred, distance = None, None, math.inf
    if best is not None and float(best.norm()) > 0:
        direction = best / float(best.norm())
        level = alpha / CONFIRMATIONS
        jump = _least_overshoot(sigma, n_predict, level)
        tries = STOPPED_TRIES if s.stopped else CONFIRM_TRIES

        def confirm(scale: float) -> tuple[torch.Tensor, int | None]:
            point = x + _project(x, direction * scale, math.inf, clip)
            with torch.inference_mode():
                pred = predict_at(point, level)
            return point, (pred if pred not in (clean, ABSTAIN) else None)

        t, growth, refused = float(best.norm()), GROWTH, 0.0
        for _ in range(tries):
            point, pred = confirm(t)
            if pred is not None:
                adv, adv_pred, distance = point, pred, float((point - x).norm())
                break
            if t >= eps_max:
                break
            # The first raise is at least the least overshoot PREDICT can confirm (nothing nearer can pass if the
            # soft boundary was g's), later ones grow geometrically.
            step = max(t * growth, jump) if refused == 0 else t * growth
            refused = t
            t, growth = min(t + step, float(eps_max)), growth * GROWTH_RATE
        if adv is not None and refused > 0 and not s.stopped:  # the raise overshoots by up to one step: halve it
            lo_t, hi_t = refused, t
            for _ in range(REFINE):
                mid = (lo_t + hi_t) / 2
                point, pred = confirm(mid)
                if pred is not None:
                    adv, adv_pred, distance, hi_t = point, pred, float((point - x).norm()), mid
                else:
                    lo_t = mid
    return result(clean, adv, adv_pred, distance, reason)


class AttackRun:
    """:func:`attack_smoothed` as a stoppable object for a page's background thread or scheduler job: ``run()`` in
    the worker, ``stop()`` and ``progress()`` (the latest :class:`AttackProgress`, None before the first step) from
    any thread."""

    def __init__(self, model: nn.Module, x: torch.Tensor, sigma: float, **options) -> None:
        unknown = set(options) - {"eps_max", "steps", "m", "alpha", "n_predict", "batch_size", "seed", "method",
                                  "clip", "keep_trajectory"}
        if unknown:
            raise ValueError(f"options: unknown {', '.join(sorted(unknown))}")
        _check(sigma, options.get("eps_max", 4.0), options.get("steps", 100), options.get("m", 32),
               options.get("alpha", 0.001), options.get("n_predict", 1000), options.get("batch_size", 1000),
               options.get("method", "auto"), options.get("clip", (0.0, 1.0)))
        self.model, self.x, self.sigma, self.options = model, x, sigma, options
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: AttackProgress | None = None
        self.result: AttackResult | None = None

    def _report(self, p: AttackProgress) -> None:
        with self._lock:
            self._latest = p

    def run(self) -> AttackResult:
        result = attack_smoothed(self.model, self.x, self.sigma, stop=self._stop, progress=self._report,
                                 **self.options)
        with self._lock:
            self.result = result
        return result

    def stop(self) -> None:
        self._stop.set()

    def progress(self) -> AttackProgress | None:
        """The latest progress report (None before the first step)."""
        with self._lock:
            return self._latest

    latest = progress  # the name the Certify page's widget uses

    @property
    def done(self) -> bool:
        with self._lock:
            return self.result is not None


__all__ = ["METHODS", "NO_GRADIENTS", "AttackProgress", "AttackResult", "AttackRun", "attack_smoothed",
           "has_gradients"]
