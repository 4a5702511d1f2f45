"""The smoothed classifier as one object: Cohen et al.'s ``Smooth`` (2019, §3.2, Algorithms 1–2).

:class:`Smooth` holds the base classifier f, the noise level σ, the forward batch
size and the autocast setting, validated once, and offers the paper's algorithms as
methods on g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I):

- :meth:`Smooth.certify` / :meth:`Smooth.certify_many`: CERTIFY. With probability
  ≥ 1 − α over the sampling, a returned class c_A with radius R satisfies
  g(x + δ) = c_A for every ‖δ‖₂ < R (Theorem 1, App. C). The n0 selection samples
  that choose c_A are independent of the n estimation samples that bound pA
  (one-sided Clopper–Pearson), and R = σΦ⁻¹(p_lower).
- :meth:`Smooth.predict` / :meth:`Smooth.predict_result`: PREDICT; returns a class
  other than g(x) with probability ≤ α.
- :meth:`Smooth.stream`: CERTIFY with streamed, anytime-valid estimation
  (:class:`~rs_core.smoothing.stream.CertifyStream`), stoppable at any time.

The module-level functions :func:`rs_core.certify`, :func:`rs_core.predict`, … are
thin wrappers that build a ``Smooth`` and call one method.

>>> from torch import nn
>>> g = Smooth(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval(), sigma=0.5, batch_size=500)
>>> cert = g.certify(torch.zeros(1, 2, 2), n0=50, n=1000, alpha=0.01, seed=0)
>>> cert.n, cert.sigma, cert.seed
(1000, 0.5, 0)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from rs_core.checks import check_alpha, check_count, check_images, check_sigma
from rs_core.models.device import Autocast, check_autocast, check_model, model_device
from rs_core.smoothing.noises import check_noise_norm, get_noise
from rs_core.smoothing.results import ABSTAIN, Certificate, Prediction, decide
from rs_core.smoothing.sampling import NoiseSampler
from rs_core.smoothing.seeding import example_seed
from rs_core.smoothing.stats import DEFAULT_MIXTURE, BetaMixture, binomial_pvalue, clopper_pearson_lower_complement
from rs_core.smoothing.stream import CertifyStream

if TYPE_CHECKING:
    from rs_core.smoothing.adaptive import RadiusCertificate

LogRow = tuple[int, int, int, float, int, float]
"""A row of Cohen et al.'s certify log: (idx, label, predict, radius, correct, seconds)."""


class Smooth:
    """The smoothed version g of a base classifier f at noise level σ (Gaussian unless ``noise`` says otherwise).

    Args:
        model: f, mapping [B, C, H, W] images in [0, 1] to [B, K] class scores, in eval mode.
        sigma: the noise level σ > 0 (the same as the one f was trained with, usually).
        batch_size: forward batch size; on CUDA out-of-memory the samplers halve it
            (no vote lost) and this object keeps the smaller size for later calls.
        autocast: ``"bf16"`` or ``"fp16"`` to run the forward passes under ``torch.autocast``.
        noise: the smoothing noise, ``"gaussian"`` (default), ``"laplace"`` or ``"uniform"``, with standard
            deviation σ per coordinate (:mod:`rs_core.smoothing.noises`; Yang et al. 2020).
        norm: the norm CERTIFY's radius is in: ``"l2"`` (default), ``"l1"`` or ``"linf"``; it must be one the
            noise certifies (Laplace: ℓ1; uniform: ℓ1, ℓ∞; Gaussian: all, ℓ1 and ℓ∞ derived from ℓ2).

    Every method takes ``seed`` (an integer in [0, 2**64), honoured in full; ``None``
    draws a fresh one, recorded in the result) or ``generator`` (a ``torch.Generator``
    on the model's device).
    """

    def __init__(self, model: nn.Module, sigma: float, batch_size: int = 1000, *, autocast: Autocast = None,
                 noise: str = "gaussian", norm: str = "l2") -> None:
        self.model = check_model(model)
        self.sigma = check_sigma(sigma)
        self.batch_size = check_count(batch_size, "batch_size")
        self.autocast = check_autocast(autocast)
        self.noise, self.norm = check_noise_norm(noise, norm)
        self.noise_dist = get_noise(self.noise, self.sigma)

    def __repr__(self) -> str:
        extra = "" if (self.noise, self.norm) == ("gaussian", "l2") else f", noise={self.noise!r}, norm={self.norm!r}"
        return (f"Smooth({type(self.model).__name__}, sigma={self.sigma:g}, batch_size={self.batch_size}, "
                f"autocast={self.autocast!r}{extra}, device={self.device})")

    def _gaussian_only(self, what: str) -> None:
        if self.noise != "gaussian" or self.norm != "l2":
            raise ValueError(f"noise: {what} supports Gaussian noise and ℓ2 radii only, got noise={self.noise!r}, "
                             f"norm={self.norm!r}")

    @property
    def device(self) -> torch.device:
        """The model's device: noise is drawn and votes are counted there."""
        return model_device(self.model)

    def sampler(self, x: torch.Tensor, *, seed: int | None = None,
                generator: torch.Generator | None = None) -> NoiseSampler:
        """A :class:`~rs_core.smoothing.sampling.NoiseSampler` for x [C, H, W] or [N, C, H, W] with this σ and model."""
        return NoiseSampler.from_checked(self.model, x, self.sigma, self.batch_size, self.autocast, seed, generator,
                                         self.noise_dist)

    def _learn(self, sampler: NoiseSampler) -> None:
        self.batch_size = min(self.batch_size, sampler.batch_size)  # keep a size that fitted

    def sample_counts(self, x: torch.Tensor, num: int, *, seed: int | None = None,
                      generator: torch.Generator | None = None) -> np.ndarray:
        """Votes of ``num`` noisy copies (SampleUnderNoise): int64 [K] for x [C, H, W], [N, K] for [N, C, H, W]."""
        num = check_count(num, "num")
        sampler = self.sampler(x, seed=seed, generator=generator)
        counts = sampler.sample(num).cpu().numpy()
        self._learn(sampler)
        return counts[0] if x.ndim == 3 else counts

    def certify_many(self, xs: torch.Tensor, n0: int = 100, n: int = 100_000, alpha: float = 0.001, *,
                     seed: int | None = None, generator: torch.Generator | None = None,
                     seeds: list[int] | None = None) -> list[Certificate]:
        """CERTIFY (Algorithm 2) for inputs [N, C, H, W], their samples packed into shared batches.

        Each certificate carries the 1 − α guarantee on its own (not jointly). ``elapsed_s``
        is the total time divided by N; ``seed`` is the seed of the whole call (repeating it
        needs the same inputs in the same order). ``seeds`` instead gives each input a seed of
        its own: its certificate is then the one :meth:`certify` gives it alone with that seed,
        whatever it is packed with.
        """
        n0, n, alpha = check_count(n0, "n0"), check_count(n, "n"), check_alpha(alpha)
        check_images(xs, 4, "xs")
        if seeds is not None and (seed is not None or generator is not None):
            raise ValueError("seeds: give seeds, or seed/generator, not both")
        start = time.perf_counter()
        sampler = self.sampler(xs, seed=seed, generator=generator)
        if seeds is not None:
            sampler.use_own_seeds(list(seeds))
        # Selection and estimation votes come from disjoint noise draws, so the
        # class chosen from the first is independent of the counts in the second.
        selection = sampler.sample(n0)
        estimation = sampler.sample(n)
        selection, estimation = selection.cpu().numpy(), estimation.cpu().numpy()
        self._learn(sampler)
        c_a = selection.argmax(axis=1)
        q_lower = np.atleast_1d(clopper_pearson_lower_complement(estimation[np.arange(len(c_a)), c_a], n, alpha))
        per_input = (time.perf_counter() - start) / len(c_a)
        d = int(np.prod(xs.shape[1:]))
        certs = []
        for i, c in enumerate(c_a):
            p_lower, radius, ok = decide(float(q_lower[i]), self.sigma, self.noise_dist, self.norm, d)
            certs.append(Certificate(
                prediction=int(c) if ok else ABSTAIN, radius=radius, p_lower=p_lower,
                counts=estimation[i], counts_selection=selection[i], sigma=self.sigma, alpha=alpha,
                n0=n0, n=n, seed=sampler.seed if seeds is None else int(seeds[i]), device=str(sampler.device),
                batch_size=sampler.batch_size, elapsed_s=per_input, autocast=self.autocast, noise=self.noise,
                norm=self.norm,
            ))
        return certs

    def certify(self, x: torch.Tensor, n0: int = 100, n: int = 100_000, alpha: float = 0.001, *,
                seed: int | None = None, generator: torch.Generator | None = None) -> Certificate:
        """CERTIFY (Cohen et al. Algorithm 2): the smoothed class of x [C, H, W] and a certified ℓ2 radius.

        1. c_A = argmax of the votes of n0 noisy samples (selection);
        2. p_lower = one-sided (1 − α) Clopper–Pearson bound on pA from n fresh samples;
        3. abstain if p_lower < ½, else return c_A with radius σΦ⁻¹(p_lower).

        Guarantee: with probability ≥ 1 − α, if a class is returned, the smoothed
        classifier returns it everywhere within the radius.
        """
        check_images(x, 3)
        return self.certify_many(x[None], n0, n, alpha, seed=seed, generator=generator)[0]

    def predict_result(self, x: torch.Tensor, n: int = 1000, alpha: float = 0.001, *, seed: int | None = None,
                       generator: torch.Generator | None = None) -> Prediction:
        """PREDICT (Cohen et al. Algorithm 1) with its votes and p-value; see :meth:`predict`."""
        n, alpha = check_count(n, "n"), check_alpha(alpha)
        check_images(x, 3)
        start = time.perf_counter()
        sampler = self.sampler(x, seed=seed, generator=generator)
        counts = sampler.sample(n)[0].cpu().numpy()
        self._learn(sampler)
        order = np.argsort(-counts, kind="stable")
        n_a, n_b = int(counts[order[0]]), int(counts[order[1]])
        p_value = binomial_pvalue(n_a, n_b)
        return Prediction(
            prediction=int(order[0]) if p_value <= alpha else ABSTAIN, counts=counts, p_value=p_value,
            sigma=self.sigma, alpha=alpha, n=n, seed=sampler.seed, device=str(sampler.device),
            batch_size=sampler.batch_size, elapsed_s=time.perf_counter() - start, autocast=self.autocast,
            noise=self.noise,
        )

    def predict(self, x: torch.Tensor, n: int = 1000, alpha: float = 0.001, *, seed: int | None = None,
                generator: torch.Generator | None = None) -> int:
        """PREDICT (Cohen et al. Algorithm 1): the smoothed class of x [C, H, W], or ``ABSTAIN``.

        Counts n votes; returns the top class when the two-sided binomial test of the top
        two counts at p = ½ has p-value ≤ α. Guarantee: returns a class other than g(x)
        with probability at most α (Hung & Fithian 2019).
        """
        return self.predict_result(x, n, alpha, seed=seed, generator=generator).prediction

    def stream(self, x: torch.Tensor, n0: int = 100, n_max: int = 100_000, alpha: float = 0.001, *,
               seed: int | None = None, generator: torch.Generator | None = None,
               target_radius: float | None = None, mixture: BetaMixture = DEFAULT_MIXTURE,
               batch_seconds: float | None = None):
        """CERTIFY with streamed estimation and an anytime-valid bound: a :class:`~rs_core.smoothing.stream.CertifyStream`.
        ``batch_seconds``: size the batches (at most ``batch_size``) to take about that long each, so that Stop is
        answered promptly on a slow model (:func:`~rs_core.smoothing.sampling.time_batch_size`)."""
        check_images(x, 3)
        return CertifyStream.from_sampler(self.sampler(x, seed=seed, generator=generator), n0, n_max, alpha,
                                          target_radius=target_radius, mixture=mixture, batch_seconds=batch_seconds,
                                          norm=self.norm)

    def certify_radii(self, x: torch.Tensor, radii: Sequence[float], n0: int = 100, n_max: int = 100_000,
                      alpha: float = 0.001, *, seed: int | None = None) -> RadiusCertificate:
        """Adaptive CERTIFY of x [C, H, W] at the listed radii, sampling only until the largest one it certifies is
        decided (anytime-valid bound; P(a false certificate) ≤ α). See :mod:`rs_core.smoothing.adaptive`; for many inputs in
        shared, refilled batches use :class:`~rs_core.smoothing.adaptive.RadiusCertifier` directly."""
        from rs_core.smoothing.adaptive import RadiusCertifier

        self._gaussian_only("certify_radii (the adaptive engine)")
        return RadiusCertifier(self.model, self.sigma, radii, n0, n_max, alpha, self.batch_size,
                               autocast=self.autocast).certify(x, seed=seed)

    def examples_per_group(self, n0: int, n: int) -> int:
        """How many consecutive examples :meth:`certify_examples` packs into shared forward batches: those whose
        n0 + n samples fit twice in a batch; 1 otherwise. Each keeps its own seed, so rows do not depend on it."""
        return max(1, self.batch_size // (2 * (check_count(n0, "n0") + check_count(n, "n"))))

    def certify_examples(self, examples: Iterable[tuple[int, torch.Tensor, int]], n0: int = 100,
                         n: int = 100_000, alpha: float = 0.001, *, seed: int = 0) -> Iterator[LogRow]:
        """CERTIFY each labelled example; yields log rows ``(idx, label, predict, radius, correct, seconds)``.

        ``examples`` yields ``(idx, x [C,H,W], label)``. Example ``idx`` uses seed
        ``seed + idx`` (:func:`~rs_core.smoothing.seeding.example_seed`), so a row can be re-run alone; when
        n0 + n is small (≤ batch_size / 2), consecutive examples are packed into shared forward batches, each still
        drawing its noise from its own seed: a row does not depend on the batch size or its neighbours.
        """
        n0, n, alpha = check_count(n0, "n0"), check_count(n, "n"), check_alpha(alpha)
        per_group = self.examples_per_group(n0, n)
        group: list[tuple[int, torch.Tensor, int]] = []

        def flush() -> Iterator[LogRow]:
            start = time.perf_counter()
            certs = self.certify_many(torch.stack([x for _, x, _ in group]), n0, n, alpha,
                                      seeds=[example_seed(seed, idx) for idx, _, _ in group])
            seconds = (time.perf_counter() - start) / len(group)
            for (idx, _, label), cert in zip(group, certs, strict=True):
                correct = int(cert.prediction == label and cert.prediction != ABSTAIN)
                yield idx, label, cert.prediction, cert.radius, correct, seconds

        for example in examples:
            group.append(example)
            if len(group) == per_group:
                yield from flush()
                group = []
        if group:
            yield from flush()


__all__ = ["LogRow", "Smooth"]
