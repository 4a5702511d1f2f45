"""Cohen et al.'s PREDICT and CERTIFY (2019, §3.2, Algorithms 1–2; proofs in App. C).

Guarantees, for a smoothed classifier g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I):

- :func:`certify`: with probability ≥ 1 − α over the sampling, if it returns a
  class c_A with radius R, then g(x + δ) = c_A for every ‖δ‖₂ < R. The n0
  selection samples that choose c_A are independent of the n estimation samples
  that bound pA (one-sided Clopper–Pearson), and R = σΦ⁻¹(p_lower).
- :func:`predict`: returns a class other than g(x) with probability ≤ α.
- :class:`CertifyStream`: CERTIFY whose estimation samples arrive in batches,
  bounded by an anytime-valid confidence sequence, so it may be stopped at any
  point — by a user, at n_max, or once a target radius is certified or out of
  reach — and the certificate of the stopped stream keeps the 1 − α guarantee.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from scipy import stats
from torch import nn

from ._checks import check_alpha, check_count, check_images, check_sigma
from .bounds import radius_from_p_lower
from .sampling import Autocast, NoiseSampler
from .stats import (
    DEFAULT_MIXTURE,
    BetaMixture,
    anytime_lower_bound_complement,
    binomial_pvalue,
    clopper_pearson_lower_complement,
)

ABSTAIN = -1
"""Returned as the class when PREDICT or CERTIFY abstains."""

Bound = Literal["clopper-pearson", "anytime-beta-mixture"]
StopReason = Literal["n_max", "target_certified", "target_unreachable", "stopped"]


@dataclass
class Certificate:
    """Result of CERTIFY for one input.

    ``prediction`` is a class index or ``ABSTAIN``; ``radius`` is 0.0 when
    abstaining. ``p_lower`` is the (1 − α) lower confidence bound on pA that the
    radius comes from, by the method named in ``bound``; ``counts`` holds the
    votes of the ``n`` estimation samples and ``counts_selection`` those of the
    ``n0`` selection samples. ``seed`` reproduces the run.
    """

    prediction: int
    radius: float
    p_lower: float
    counts: np.ndarray
    counts_selection: np.ndarray
    sigma: float
    alpha: float
    n0: int
    n: int
    seed: int
    device: str
    batch_size: int
    elapsed_s: float
    bound: Bound = "clopper-pearson"
    autocast: str | None = None
    n_max: int | None = None
    target_radius: float | None = None
    stop_reason: StopReason | None = None

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = [int(c) for c in self.counts]
        d["counts_selection"] = [int(c) for c in self.counts_selection]
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Certificate:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"certificate: unknown fields {sorted(unknown)}")
        d = dict(d)
        d["counts"] = np.asarray(d["counts"], dtype=np.int64)
        d["counts_selection"] = np.asarray(d["counts_selection"], dtype=np.int64)
        return cls(**d)


@dataclass
class Prediction:
    """Result of PREDICT: the class (or ``ABSTAIN``), the votes and the test's p-value."""

    prediction: int
    counts: np.ndarray
    p_value: float
    sigma: float
    alpha: float
    n: int
    seed: int
    device: str
    batch_size: int
    elapsed_s: float
    autocast: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = [int(c) for c in self.counts]
        return d


def _decide(q_lower: float, sigma: float) -> tuple[float, float, bool]:
    """p_lower, radius and whether to certify, from q_lower = 1 − p_lower."""
    p_lower = 1.0 - q_lower
    if q_lower > 0.5:  # p_lower < ½: CERTIFY abstains (Cohen et al. Algorithm 2)
        return p_lower, 0.0, False
    return p_lower, radius_from_p_lower(p_lower, sigma, complement=q_lower), True


def _check_common(sigma: float, n0: int, n: int, alpha: float, batch_size: int, n_name: str = "n"):
    return (check_sigma(sigma), check_count(n0, "n0"), check_count(n, n_name),
            check_alpha(alpha), check_count(batch_size, "batch_size"))


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

    Each certificate carries the 1 − α guarantee of :func:`certify` on its own
    (not jointly). ``elapsed_s`` is the total time divided by N; ``seed`` is
    the seed of the whole call (repeating it needs the same inputs in the same order).
    """
    sigma, n0, n, alpha, batch_size = _check_common(sigma, n0, n, alpha, batch_size)
    check_images(xs, 4, "xs")
    start = time.perf_counter()
    sampler = NoiseSampler(model, xs, sigma, batch_size, seed=seed, generator=generator, autocast=autocast)
    # Selection and estimation votes come from disjoint noise draws, so the
    # class chosen from the first is independent of the counts in the second.
    selection = sampler.sample(n0)
    estimation = sampler.sample(n)
    selection, estimation = selection.cpu().numpy(), estimation.cpu().numpy()
    c_a = selection.argmax(axis=1)
    q_lower = np.atleast_1d(clopper_pearson_lower_complement(estimation[np.arange(len(c_a)), c_a], n, alpha))
    per_input = (time.perf_counter() - start) / len(c_a)
    certs = []
    for i, c in enumerate(c_a):
        p_lower, radius, ok = _decide(float(q_lower[i]), sigma)
        certs.append(Certificate(
            prediction=int(c) if ok else ABSTAIN, radius=radius, p_lower=p_lower,
            counts=estimation[i], counts_selection=selection[i], sigma=sigma, alpha=alpha,
            n0=n0, n=n, seed=sampler.seed, device=str(sampler.device),
            batch_size=sampler.batch_size, elapsed_s=per_input, autocast=autocast,
        ))
    return certs


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
) -> Iterator[tuple[int, int, int, float, int, float]]:
    """CERTIFY each labelled example; yields log rows ``(idx, label, predict, radius, correct, seconds)``.

    ``examples`` yields ``(idx, x [C,H,W], label)``. Example ``idx`` uses seed
    ``seed + idx``, so a row can be re-run alone; when n0 + n is small
    (≤ batch_size / 2), consecutive examples are packed into shared forward
    batches and share the seed of the first (the rows of Cohen et al.'s log format).
    """
    sigma, n0, n, alpha, batch_size = _check_common(sigma, n0, n, alpha, batch_size)
    per_group = max(1, batch_size // (2 * (n0 + n)))
    group: list[tuple[int, torch.Tensor, int]] = []

    def flush() -> Iterator[tuple[int, int, int, float, int, float]]:
        start = time.perf_counter()
        certs = certify_many(model, torch.stack([x for _, x, _ in group]), sigma, n0, n, alpha, batch_size,
                             seed=seed + group[0][0], autocast=autocast)
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
    check_images(x, 3)
    return certify_many(model, x[None], sigma, n0, n, alpha, batch_size,
                        seed=seed, generator=generator, autocast=autocast)[0]


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
    sigma = check_sigma(sigma)
    n, alpha = check_count(n, "n"), check_alpha(alpha)
    batch_size = check_count(batch_size, "batch_size")
    check_images(x, 3)
    start = time.perf_counter()
    sampler = NoiseSampler(model, x, sigma, batch_size, seed=seed, generator=generator, autocast=autocast)
    counts = sampler.sample(n)[0].cpu().numpy()
    order = np.argsort(-counts, kind="stable")
    n_a, n_b = int(counts[order[0]]), int(counts[order[1]])
    p_value = binomial_pvalue(n_a, n_b)
    return Prediction(
        prediction=int(order[0]) if p_value <= alpha else ABSTAIN, counts=counts, p_value=p_value,
        sigma=sigma, alpha=alpha, n=n, seed=sampler.seed, device=str(sampler.device),
        batch_size=sampler.batch_size, elapsed_s=time.perf_counter() - start, autocast=autocast,
    )


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
    return predict_result(model, x, sigma, n, alpha, batch_size, seed=seed,
                          generator=generator, autocast=autocast).prediction


@dataclass
class Snapshot:
    """State of a :class:`CertifyStream` after a batch.

    ``p_lower`` and ``radius`` are anytime-valid (the running maximum of the
    confidence sequence): reading them at any snapshot, and stopping there,
    keeps the 1 − α guarantee. ``top_class`` is c_A from the selection samples
    (``ABSTAIN`` before selection is done).
    """

    phase: Literal["selection", "estimation"]
    n: int
    n_max: int
    counts: np.ndarray
    counts_selection: np.ndarray | None
    top_class: int
    p_lower: float
    radius: float
    elapsed_s: float
    samples_per_s: float
    done: bool = False
    stop_reason: StopReason | None = None


class CertifyStream:
    """CERTIFY with streamed estimation samples and an anytime-valid bound; stoppable.

    Iterate to run it: the first snapshot follows the n0 selection samples,
    then one follows each estimation batch (one host synchronization each).
    The stream ends at ``n_max`` samples; when ``target_radius`` is given, as
    soon as the bound certifies it or it is out of reach even if every
    remaining sample voted c_A; or within one batch of :meth:`stop`, which any
    thread may call. :meth:`certificate` is valid at any point: it uses the
    anytime bound (never Clopper–Pearson at a data-dependent n).

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    >>> stream = CertifyStream(model, torch.zeros(1, 2, 2), sigma=0.25, n_max=2000, batch_size=500, seed=0)
    >>> [s.n for s in stream]
    [0, 500, 1000, 1500, 2000]
    >>> stream.certificate().stop_reason
    'n_max'
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        sigma: float,
        n0: int = 100,
        n_max: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        autocast: Autocast = None,
        target_radius: float | None = None,
        mixture: BetaMixture = DEFAULT_MIXTURE,
    ) -> None:
        self.sigma, self.n0, self.n_max, self.alpha, batch_size = _check_common(
            sigma, n0, n_max, alpha, batch_size, n_name="n_max")
        check_images(x, 3)
        if target_radius is not None:
            if isinstance(target_radius, bool) or not isinstance(target_radius, (int, float)) \
                    or not math.isfinite(target_radius) or target_radius <= 0:
                raise ValueError(f"target_radius: must be None or finite and > 0, got {target_radius!r}")
            target_radius = float(target_radius)
        self.target_radius = target_radius
        # Radius >= r  ⟺  p_lower >= Φ(r/σ)  ⟺  1 − p_lower <= Φ̄(r/σ).
        self._q_target = None if target_radius is None else float(stats.norm.sf(target_radius / self.sigma))
        self.mixture = mixture
        self.autocast = autocast
        self._sampler = NoiseSampler(model, x, self.sigma, batch_size, seed=seed,
                                     generator=generator, autocast=autocast)
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._elapsed = 0.0
        self.n = 0
        self.counts = np.zeros(self._sampler.num_classes, dtype=np.int64)
        self.counts_selection: np.ndarray | None = None
        self.top_class = ABSTAIN
        self._q_lower = 1.0  # running minimum of 1 − L_t, i.e. running maximum of L_t
        self.stop_reason: StopReason | None = None
        self._started = False

    @property
    def seed(self) -> int:
        return self._sampler.seed

    @property
    def device(self) -> torch.device:
        return self._sampler.device

    @property
    def num_classes(self) -> int:
        return self._sampler.num_classes

    def stop(self) -> None:
        """Ask the stream to end; it does so after the batch in flight (thread-safe)."""
        self._stop.set()

    def _snapshot(self, phase: Literal["selection", "estimation"]) -> Snapshot:
        self._elapsed = time.perf_counter() - self._start
        p_lower, radius, _ = _decide(self._q_lower, self.sigma)
        drawn = self.n + (self.n0 if self.counts_selection is not None else 0)
        return Snapshot(
            phase=phase, n=self.n, n_max=self.n_max, counts=self.counts.copy(),
            counts_selection=None if self.counts_selection is None else self.counts_selection.copy(),
            top_class=self.top_class, p_lower=p_lower, radius=radius, elapsed_s=self._elapsed,
            samples_per_s=drawn / self._elapsed if self._elapsed > 0 else 0.0,
            done=self.stop_reason is not None, stop_reason=self.stop_reason,
        )

    def _target_reached(self) -> StopReason | None:
        if self._q_target is None:
            return None
        if self._q_lower <= self._q_target:
            return "target_certified"
        # Best case: every remaining sample votes c_A. If even then the bound at
        # n_max stays short of the target, more sampling cannot certify it.
        k_best = int(self.counts[self.top_class]) + (self.n_max - self.n)
        if anytime_lower_bound_complement(k_best, self.n_max, self.alpha, self.mixture) > self._q_target:
            return "target_unreachable"
        return None

    def __iter__(self) -> Iterator[Snapshot]:
        if self._started:
            raise RuntimeError("CertifyStream: can be iterated only once")
        self._started = True
        self._start = time.perf_counter()
        sampler = self._sampler
        selection = sampler.sample(self.n0)[0].cpu().numpy()
        self.counts_selection = selection
        self.top_class = int(selection.argmax())
        if self._stop.is_set():
            self.stop_reason = "stopped"
        yield self._snapshot("selection")
        if self.stop_reason is not None:
            return
        acc = torch.zeros(sampler.num_classes, dtype=torch.int64, device=sampler.device)
        while True:
            step = min(sampler.batch_size, self.n_max - self.n)
            acc += sampler.sample(step)[0]
            self.counts = acc.cpu().numpy()  # the one host sync of this batch
            self.n += step
            q = anytime_lower_bound_complement(int(self.counts[self.top_class]), self.n, self.alpha, self.mixture)
            self._q_lower = min(self._q_lower, q)
            if self._stop.is_set():
                self.stop_reason = "stopped"
            else:
                self.stop_reason = self._target_reached() or ("n_max" if self.n >= self.n_max else None)
            yield self._snapshot("estimation")
            if self.stop_reason is not None:
                return

    def run(self) -> Certificate:
        """Runs the stream to its end and returns the certificate."""
        for _ in self:
            pass
        return self.certificate()

    def certificate(self) -> Certificate:
        """The certificate from the samples so far: valid whenever the stream was stopped."""
        p_lower, radius, ok = _decide(self._q_lower, self.sigma)
        selection = self.counts_selection
        return Certificate(
            prediction=self.top_class if ok else ABSTAIN, radius=radius, p_lower=p_lower,
            counts=self.counts.copy(),
            counts_selection=np.zeros_like(self.counts) if selection is None else selection.copy(),
            sigma=self.sigma, alpha=self.alpha, n0=self.n0, n=self.n, seed=self.seed,
            device=str(self._sampler.device), batch_size=self._sampler.batch_size,
            elapsed_s=self._elapsed, bound="anytime-beta-mixture", autocast=self.autocast,
            n_max=self.n_max, target_radius=self.target_radius, stop_reason=self.stop_reason,
        )
