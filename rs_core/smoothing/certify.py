"""Cohen et al.'s PREDICT and CERTIFY (2019, §3.2, Algorithms 1–2) as functions.

Each function is a thin wrapper: it builds a :class:`~rs_core.smoothing.smooth.Smooth` from
``(model, sigma, batch_size, autocast)`` and calls one of its methods, where the
algorithms, their guarantees and their checks live. Use ``Smooth`` directly to
certify many inputs with one model and σ.

- :func:`certify`: with probability ≥ 1 − α over the sampling, if it returns a
  class c_A with radius R, then g(x + δ) = c_A for every ‖δ‖₂ < R.
- :func:`predict`: returns a class other than g(x) with probability ≤ α.
- :class:`CertifyStream` (from :mod:`rs_core.smoothing.stream`): CERTIFY whose estimation
  samples arrive in batches, bounded by an anytime-valid confidence sequence, so it
  may be stopped at any point and keep the 1 − α guarantee.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from rs_core.models.device import Autocast
from rs_core.smoothing.results import ABSTAIN, Bound, Certificate, Prediction, Snapshot, StopReason
from rs_core.smoothing.smooth import LogRow, Smooth
from rs_core.smoothing.stream import CertifyStream


def certify_many(
    model: nn.Module,
    xs: torch.Tensor,
    sigma: float,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    autocast: Autocast = None,
) -> list[Certificate]:
    """CERTIFY for several inputs [N, C, H, W], their samples packed into shared batches.

    See :meth:`Smooth.certify_many <rs_core.smoothing.smooth.Smooth.certify_many>`.
    """
    return Smooth(model, sigma, batch_size, autocast=autocast).certify_many(
        xs, n0, n, alpha, seed=seed, generator=generator)


def certify_examples(
    model: nn.Module,
    examples: Iterable[tuple[int, torch.Tensor, int]],
    sigma: float,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    *,
    seed: int = 0,
    autocast: Autocast = None,
) -> Iterator[LogRow]:
    """CERTIFY each labelled example; yields log rows ``(idx, label, predict, radius, correct, seconds)``.

    See :meth:`Smooth.certify_examples <rs_core.smoothing.smooth.Smooth.certify_examples>`.
    """
    return Smooth(model, sigma, batch_size, autocast=autocast).certify_examples(examples, n0, n, alpha, seed=seed)


def certify(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    autocast: Autocast = None,
) -> Certificate:
    """CERTIFY (Cohen et al. Algorithm 2): the smoothed class of x [C, H, W] and a certified ℓ2 radius.

    1. c_A = argmax of the votes of n0 noisy samples (selection);
    2. p_lower = one-sided (1 − α) Clopper–Pearson bound on pA from n fresh samples;
    3. abstain if p_lower < ½, else return c_A with radius σΦ⁻¹(p_lower).

    Guarantee: with probability ≥ 1 − α, if a class is returned, the smoothed
    classifier returns it everywhere within the radius. See :class:`Certificate`.
    """
    return Smooth(model, sigma, batch_size, autocast=autocast).certify(x, n0, n, alpha, seed=seed,
                                                                       generator=generator)


def predict_result(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    autocast: Autocast = None,
) -> Prediction:
    """PREDICT (Cohen et al. Algorithm 1) with its votes and p-value; see :func:`predict`."""
    return Smooth(model, sigma, batch_size, autocast=autocast).predict_result(x, n, alpha, seed=seed,
                                                                              generator=generator)


def predict(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    autocast: Autocast = None,
) -> int:
    """PREDICT (Cohen et al. Algorithm 1): the smoothed class of x [C, H, W], or ``ABSTAIN``.

    Counts n votes; returns the top class when the two-sided binomial test of
    the top two counts at p = ½ has p-value ≤ α. Guarantee: returns a class
    other than g(x) with probability at most α (Hung & Fithian 2019).
    """
    return Smooth(model, sigma, batch_size, autocast=autocast).predict(x, n, alpha, seed=seed, generator=generator)


__all__ = ["ABSTAIN", "Bound", "Certificate", "CertifyStream", "Prediction", "Snapshot", "StopReason", "certify",
           "certify_examples", "certify_many", "predict", "predict_result"]
