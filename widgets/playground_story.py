"""The Playground's guided steps in computed words: what f, the exact smoothed classifier g and CERTIFY say at the
point, so a step's text is what the page's numbers show (never a claim written in advance about a trained MLP)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rs_core.rounding import floor_str
from rs_core.smoothing import playground as pg


@dataclass(frozen=True)
class AtSigma:
    """At one σ: the exact g's class and its probability under the noise, and CERTIFY's result for (n, α, seed)."""

    sigma: float
    g_class: int
    g_p: float
    cert: pg.PointCertificate


def base_class(model: nn.Module, point: tuple[float, float]) -> int:
    """f's class at the point (the page's models take points as [B, 1, 1, 2] images)."""
    with torch.inference_mode():
        return int(model(torch.tensor(point, dtype=torch.float32).reshape(1, 1, 1, 2)).argmax(1))


def at_sigma(model: nn.Module, point: tuple[float, float], sigma: float, n: int, alpha: float, seed: int, *,
             noise: str = "gaussian", norm: str = "l2") -> AtSigma:
    """The page's own computations at ``sigma`` for ``noise`` (σ its standard deviation) and the radius in ``norm``:
    ``exact_probabilities`` (the exact g) and ``certify_point``."""
    probs = pg.exact_probabilities(model, point, sigma, noise=noise)
    g = int(np.argmax(probs))
    return AtSigma(sigma=float(sigma), g_class=g, g_p=float(probs[g]),
                   cert=pg.certify_point(model, point, sigma, n=n, alpha=alpha, seed=seed, noise=noise, norm=norm))


def noise_story(model: nn.Module, point: tuple[float, float], sigmas: tuple[float, ...], n: int, alpha: float,
                seed: int, *, noise: str = "gaussian", norm: str = "l2") -> str:
    """What happens at ``point`` as σ grows through ``sigmas``, in the numbers the page shows at each σ."""
    f = base_class(model, point)
    parts = [f"Here, at ({point[0]:g}, {point[1]:g}), f says **class {f}**."]
    for s in sigmas:
        a = at_sigma(model, point, s, n, alpha, seed, noise=noise, norm=norm)
        same = "f's class" if a.g_class == f else "no longer f's class"
        c = a.cert
        if c.prediction < 0:
            sampled = (f"CERTIFY with n = {n:,} at α = {alpha:g} **abstains** (its pA lower bound "
                       f"{floor_str(c.p_lower)} is not above ½)")
        else:
            sampled = (f"CERTIFY with n = {n:,} at α = {alpha:g} certifies **class {c.prediction}** within radius "
                       f"{floor_str(c.radius)}")
        parts.append(f"At σ = {s:g} the exact g says **class {a.g_class}** ({same}; P = {a.g_p:.4f} under the "
                     f"noise), and {sampled}.")
    return " ".join(parts)


def attack_caption(attack, certified: float, boundary: float | None, exact: bool) -> str:
    """What the attack found, against the certificate and the distance to g's boundary, in one sentence."""
    from rs_core.rounding import floor_str

    if attack.clean_prediction < 0:
        return "Attack: PREDICT abstains at the point, so g has no class to change here."
    where = "the exact distance" if exact else "the grid's distance (within half a grid step)"
    truth = "" if boundary is None else f"; {where} to g's boundary is {floor_str(boundary)}"
    if not attack.found:
        return (f"Attack: no point with another class of g found within {attack.eps_max:.2f} ({attack.steps} steps)"
                f"{truth}. Certified radius {floor_str(certified)}.")
    alarm = " — below the certified radius: a soundness alarm (probability ≤ 2α)" \
        if attack.distance < certified else ""
    return (f"Attack: g changes to class {attack.adv_prediction} at distance {attack.distance:.4f} (PREDICT with "
            f"{attack.n_predict:,} fresh samples at α = {attack.alpha:g}){alarm}{truth}; certified radius "
            f"{floor_str(certified)}. The truth lies between the certified radius (a lower bound) and the attack's "
            f"distance (an upper bound).")


NORM_SYMBOLS = {"l2": "ℓ2", "l1": "ℓ1", "linf": "ℓ∞"}
DUAL_SYMBOLS = {"l2": "‖w‖₂", "l1": "‖w‖∞", "linf": "‖w‖₁"}


def half_plane_caption(model: pg.HalfPlane, point: tuple[float, float], cert: pg.PointCertificate) -> str:
    """The half-plane's exact certified radius in the certificate's norm, against CERTIFY's, in numbers.

    Every symmetric noise leaves g's boundary on f's line w·x = b (P(w·ε > 0) = ½ there), so g is the half-plane
    and the largest ℓp ball inside it has radius |w·x − b| / ‖w‖_q, q the dual norm (Hölder):
    :func:`rs_core.smoothing.playground.dual_norm`. A sound certificate is at most that; the exact-pA radius sits
    between (it is a bound for every classifier with that pA, not only for the half-plane)."""
    w = model.w.numpy()
    margin = float(w @ np.asarray(point, dtype=float)) - model.offset
    q = pg.dual_norm(w, cert.norm)
    exact = abs(margin) / q
    p = NORM_SYMBOLS[cert.norm]

    def rel(a: float, b: float) -> str:  # the order the numbers are in, never assumed
        return "≤" if a <= b + 1e-12 else ">"

    alarm = "" if cert.radius <= exact else " The certified radius exceeds the exact one: a failed certificate " \
        "(probability ≤ α)."
    return (f"Exact for the half-plane: every symmetric noise leaves g's boundary on f's line w·x = b, so the largest "
            f"{p} region inside g's half-plane has radius |w·x − b| / {DUAL_SYMBOLS[cert.norm]} = {abs(margin):.4f} / "
            f"{q:.4f} = {floor_str(exact)}. Certified {p} radius {floor_str(cert.radius)} "
            f"{rel(cert.radius, cert.radius_exact)} exact-pA radius {floor_str(cert.radius_exact)} "
            f"{rel(cert.radius_exact, exact)} exact {floor_str(exact)}.{alarm}")


__all__ = ["DUAL_SYMBOLS", "NORM_SYMBOLS", "AtSigma", "at_sigma", "attack_caption", "base_class",
           "half_plane_caption", "noise_story"]
