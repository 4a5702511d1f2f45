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
from typing import Unpack

import torch
from torch import nn

from rs_core.checks import check_options
from rs_core.models.device import Autocast
from rs_core.smoothing.noises import check_noise, get_noise
from rs_core.smoothing.results import ABSTAIN, Bound, Certificate, Prediction, Snapshot, StopReason
from rs_core.smoothing.sampling import SamplingOptions
from rs_core.smoothing.smooth import LogRow, Smooth
from rs_core.smoothing.stream import CertifyStream


def _smooth(model: nn.Module, sigma: float, batch_size: int, options: SamplingOptions,
            norm: str | None = None) -> tuple[Smooth, dict]:
    """The ``Smooth`` these options describe, and the options left for its method (seed, generator). ``norm`` None
    (PREDICT, which has no radius): the first norm the noise certifies, so that any noise is accepted."""
    options = check_options(options, SamplingOptions)
    noise = check_noise(options.pop("noise", "gaussian"))
    if norm is None:
        norm = get_noise(noise, sigma).norms[0] if isinstance(sigma, (int, float)) and sigma > 0 else "l2"
    return Smooth(model, sigma, batch_size, autocast=options.pop("autocast", None), noise=noise, norm=norm), options


def certify_many(model: nn.Module, xs: torch.Tensor, sigma: float, n0: int = 100, n: int = 100_000,
                 alpha: float = 0.001, batch_size: int = 1000, *, norm: str = "l2",
                 **options: Unpack[SamplingOptions]) -> list[Certificate]:
    """CERTIFY for several inputs [N, C, H, W], their samples packed into shared batches.

    See :meth:`Smooth.certify_many <rs_core.smoothing.smooth.Smooth.certify_many>`; options:
    :class:`SamplingOptions`; ``norm``: the radius's norm, as in :func:`certify`.
    """
    smooth, draw = _smooth(model, sigma, batch_size, options, norm)
    return smooth.certify_many(xs, n0, n, alpha, **draw)


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

    Example i uses seed ``seed + i`` (a data set's rows are re-run one by one), so there is no generator option.
    See :meth:`Smooth.certify_examples <rs_core.smoothing.smooth.Smooth.certify_examples>`.
    """
    return Smooth(model, sigma, batch_size, autocast=autocast).certify_examples(examples, n0, n, alpha, seed=seed)


def certify(model: nn.Module, x: torch.Tensor, sigma: float, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
            batch_size: int = 1000, *, norm: str = "l2", **options: Unpack[SamplingOptions]) -> Certificate:
    """CERTIFY (Cohen et al. Algorithm 2): the smoothed class of x [C, H, W] and a certified radius in ``norm``.

    1. c_A = argmax of the votes of n0 noisy samples (selection);
    2. p_lower = one-sided (1 − α) Clopper–Pearson bound on pA from n fresh samples;
    3. abstain if p_lower < ½, else return c_A with radius σΦ⁻¹(p_lower).

    Guarantee: with probability ≥ 1 − α, if a class is returned, the smoothed
    classifier returns it everywhere within the radius. See :class:`Certificate`; options (seed, generator,
    autocast, noise): :class:`SamplingOptions`. With ``noise="gaussian"`` (default) and ``norm="l2"`` (default) the
    radius is σΦ⁻¹(p_lower); other noises and norms (``"l1"``, ``"linf"``, each one the noise certifies) use the
    radii of :mod:`rs_core.smoothing.noises` (Yang et al. 2020; Teng et al. 2020).
    """
    smooth, draw = _smooth(model, sigma, batch_size, options, norm)
    return smooth.certify(x, n0, n, alpha, **draw)


def predict_result(model: nn.Module, x: torch.Tensor, sigma: float, n: int = 1000, alpha: float = 0.001,
                   batch_size: int = 1000, **options: Unpack[SamplingOptions]) -> Prediction:
    """PREDICT (Cohen et al. Algorithm 1) with its votes and p-value; see :func:`predict`."""
    smooth, draw = _smooth(model, sigma, batch_size, options)
    return smooth.predict_result(x, n, alpha, **draw)


def predict(model: nn.Module, x: torch.Tensor, sigma: float, n: int = 1000, alpha: float = 0.001,
            batch_size: int = 1000, **options: Unpack[SamplingOptions]) -> int:
    """PREDICT (Cohen et al. Algorithm 1): the smoothed class of x [C, H, W], or ``ABSTAIN``.

    Counts n votes; returns the top class when the two-sided binomial test of
    the top two counts at p = ½ has p-value ≤ α. Guarantee: returns a class
    other than g(x) with probability at most α (Hung & Fithian 2019). Options: :class:`SamplingOptions`.
    """
    smooth, draw = _smooth(model, sigma, batch_size, options)
    return smooth.predict(x, n, alpha, **draw)


__all__ = ["ABSTAIN", "Bound", "Certificate", "CertifyStream", "Prediction", "SamplingOptions", "Snapshot",
           "StopReason", "certify", "certify_examples", "certify_many", "predict", "predict_result"]
