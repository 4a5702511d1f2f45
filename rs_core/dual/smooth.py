"""Dual randomized smoothing: a per-input σ chosen by a certified σ-estimator (Sun, Mao & Vechev).

Two smoothed classifiers, certified one after the other:

1. the σ-estimator h_e — a base classifier over the noise levels Σ = (σ_1 < … < σ_m),
   smoothed at a fixed σ_e — is certified by CERTIFY at level α_σ: it returns σ_c(x) ∈ Σ
   and a radius R_σ within which the smoothed estimator keeps returning σ_c;
2. the expert for σ_c (a base classifier trained at that noise; the "routing" view) is
   certified by CERTIFY at σ_c at level α_c: class c and radius R_c.

Theorem 4.1 (locally constant σ): σ(·) is constant on B(x, R_σ), so within
min(R_σ, R_c) every point is classified by the same smoothed classifier g(·, σ_c), which
is constant there. Theorem 4.2: the two certificates fail with probability ≤ α_σ and ≤ α_c,
so the final one holds with probability ≥ 1 − α_σ − α_c by the union bound (no
independence needed). Abstaining in either stage abstains.

>>> from torch import nn
>>> est = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
>>> experts = {0.25: nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval(),
...            0.5: nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()}
>>> cert = certify_dual(est, experts, torch.zeros(1, 2, 2), sigma_e=0.5, n0=50, n=500, alpha=0.002, seed=0)
>>> cert.alpha_sigma + cert.alpha_class == cert.alpha == 0.002
True
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from rs_core.checks import check_alpha, check_count, check_images, check_options, check_seed, check_sigma
from rs_core.models.device import Autocast
from rs_core.smoothing.results import ABSTAIN, Certificate, Prediction, Snapshot
from rs_core.smoothing.seeding import derive_seed, fresh_seed
from rs_core.smoothing.smooth import Smooth
from rs_core.smoothing.stream import CertifyStream

LimitedBy = Literal["sigma", "class", "sigma-abstained", "class-abstained", "not-run"]


@dataclass
class DualCertificate:
    """Result of :func:`certify_dual` for one input.

    ``prediction`` is the class or ``ABSTAIN``; ``radius`` = min(``radius_sigma``,
    ``radius_class``), 0.0 when abstaining; ``limited_by`` says which stage set it
    (or which abstained). ``sigma`` is σ_c (None when stage 1 abstained).
    ``stage1`` is CERTIFY on the σ-estimator (its classes index ``sigmas``),
    ``stage2`` CERTIFY on the expert for σ_c (None when not run).
    """

    prediction: int
    radius: float
    sigma: float | None
    radius_sigma: float
    radius_class: float
    limited_by: LimitedBy
    alpha: float
    alpha_sigma: float
    alpha_class: float
    sigmas: tuple[float, ...]
    sigma_e: float
    stage1: Certificate
    stage2: Certificate | None
    seed: int
    elapsed_s: float

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in ("prediction", "radius", "sigma", "radius_sigma", "radius_class",
                                           "limited_by", "alpha", "alpha_sigma", "alpha_class", "sigma_e",
                                           "seed", "elapsed_s")}
        d["sigmas"] = list(self.sigmas)
        d["stage1"] = self.stage1.to_dict()
        d["stage2"] = None if self.stage2 is None else self.stage2.to_dict()
        return d


@dataclass
class DualPrediction:
    """Result of :func:`predict_dual`: σ_c (None if stage 1 abstained) and the class (or ``ABSTAIN``)."""

    prediction: int
    sigma: float | None
    stage1: Prediction
    stage2: Prediction | None

    def to_dict(self) -> dict[str, Any]:
        return {"prediction": self.prediction, "sigma": self.sigma, "stage1": self.stage1.to_dict(),
                "stage2": None if self.stage2 is None else self.stage2.to_dict()}


def _check_alpha_split(alpha: float, alpha_split: float) -> tuple[float, float, float]:
    alpha = check_alpha(alpha)
    split = check_alpha(alpha_split, "alpha_split")
    return alpha, alpha * split, alpha - alpha * split


def _combine(stage1: Certificate, stage2: Certificate | None, sigmas: tuple[float, ...], sigma_e: float,
             alpha: float, alpha_sigma: float, alpha_class: float, seed: int, elapsed: float) -> DualCertificate:
    sigma_c = None if stage1.prediction == ABSTAIN else sigmas[stage1.prediction]
    r_sigma = stage1.radius
    r_class = 0.0 if stage2 is None else stage2.radius
    if sigma_c is None:
        prediction, radius, limited = ABSTAIN, 0.0, "sigma-abstained"
    elif stage2 is None:
        prediction, radius, limited = ABSTAIN, 0.0, "not-run"
    elif stage2.prediction == ABSTAIN:
        prediction, radius, limited = ABSTAIN, 0.0, "class-abstained"
    else:
        # Theorem 4.1: σ is constant on B(x, R_σ), g(·, σ_c) is constant on B(x, R_c).
        prediction, radius = stage2.prediction, min(r_sigma, r_class)
        limited = "sigma" if r_sigma < r_class else "class"
    return DualCertificate(
        prediction=prediction, radius=radius, sigma=sigma_c, radius_sigma=r_sigma, radius_class=r_class,
        limited_by=limited, alpha=alpha, alpha_sigma=alpha_sigma, alpha_class=alpha_class, sigmas=sigmas,
        sigma_e=sigma_e, stage1=stage1, stage2=stage2, seed=seed, elapsed_s=elapsed)


def stage_seed(seed: int, stage: int, expert: int = 0) -> int:
    """The seed of stage 1 (the σ-estimator) or stage 2 on expert ``expert`` (index into Σ ascending).

    One derivation for every path — :meth:`DualSmooth.certify_many`, :meth:`DualSmooth.predict` and
    :class:`DualStream` — so the same seed draws the same noise in the CLI and in the app.
    """
    if stage not in (1, 2):
        raise ValueError(f"stage: must be 1 or 2, got {stage!r}")
    return derive_seed(seed, stage, expert)


class DualSmooth:
    """Dual randomized smoothing as one object: the σ-estimator smoothed at σ_e and one expert per σ ∈ Σ.

    Holds a :class:`~rs_core.smoothing.smooth.Smooth` for the estimator (at ``sigma_e``) and one per expert
    (at its σ), validated once. Class i of the estimator means the i-th smallest σ.
    """

    def __init__(self, estimator: nn.Module, experts: Mapping[float, nn.Module], sigma_e: float,
                 batch_size: int = 1000, *, autocast: Autocast = None) -> None:
        if not isinstance(experts, Mapping) or not experts:
            raise ValueError("experts: must be a non-empty dict {σ: model}")
        sigmas = tuple(sorted(check_sigma(s, "experts") for s in experts))
        if len(set(sigmas)) != len(sigmas):
            raise ValueError(f"experts: noise levels must be distinct, got {sigmas}")
        self.estimator = Smooth(estimator, check_sigma(sigma_e, "sigma_e"), batch_size, autocast=autocast)
        by_value = {float(s): m for s, m in experts.items()}
        self.experts = {s: Smooth(by_value[s], s, batch_size, autocast=autocast) for s in sigmas}
        self.sigmas, self.sigma_e, self.autocast = sigmas, self.estimator.sigma, autocast

    @property
    def batch_size(self) -> int:
        return self.estimator.batch_size

    @property
    def device(self) -> torch.device:
        return self.estimator.device

    def _check_classes(self, k: int) -> None:
        if k != len(self.sigmas):
            raise ValueError(f"estimator: scores {k} classes, but there are {len(self.sigmas)} experts "
                             f"{self.sigmas}; class i of the estimator must mean the i-th smallest σ")

    def certify_many(self, xs: torch.Tensor, n0: int = 100, n: int = 10_000, alpha: float = 0.001, *,
                     alpha_split: float = 0.5, seed: int | None = None) -> list[DualCertificate]:
        """Dual-RS CERTIFY for inputs [N, C, H, W]: stage 1 on the estimator at level ``alpha · alpha_split``,
        stage 2 on each input's expert at level ``alpha · (1 − alpha_split)``.

        Each certificate holds with probability ≥ 1 − α (Theorem 4.2), each stage using CERTIFY's
        Clopper–Pearson bound at a fixed n (Cohen et al. Algorithm 2). Inputs routed to the same σ
        share forward batches (and the seed of that expert's stage 2).
        """
        alpha, alpha_sigma, alpha_class = _check_alpha_split(alpha, alpha_split)
        n0, n = check_count(n0, "n0"), check_count(n, "n")
        check_images(xs, 4, "xs")
        seed = fresh_seed() if check_seed(seed) is None else seed
        start = time.perf_counter()
        stage1 = self.estimator.certify_many(xs, n0, n, alpha_sigma, seed=stage_seed(seed, 1))
        self._check_classes(len(stage1[0].counts))
        stage2: list[Certificate | None] = [None] * len(xs)
        for k, sigma in enumerate(self.sigmas):
            routed = [i for i, c in enumerate(stage1) if c.prediction == k]
            if routed:
                certs = self.experts[sigma].certify_many(xs[routed], n0, n, alpha_class, seed=stage_seed(seed, 2, k))
                for i, cert in zip(routed, certs, strict=True):
                    stage2[i] = cert
        per_input = (time.perf_counter() - start) / len(xs)
        return [_combine(c1, c2, self.sigmas, self.sigma_e, alpha, alpha_sigma, alpha_class, seed, per_input)
                for c1, c2 in zip(stage1, stage2, strict=True)]

    def certify(self, x: torch.Tensor, n0: int = 100, n: int = 10_000, alpha: float = 0.001, *,
                alpha_split: float = 0.5, seed: int | None = None) -> DualCertificate:
        """Dual-RS CERTIFY for one input x [C, H, W]; see :meth:`certify_many`."""
        check_images(x, 3)
        return self.certify_many(x.unsqueeze(0), n0, n, alpha, alpha_split=alpha_split, seed=seed)[0]

    def predict(self, x: torch.Tensor, n: int = 1000, alpha: float = 0.001, *, alpha_split: float = 0.5,
                seed: int | None = None) -> DualPrediction:
        """Dual-RS PREDICT: PREDICT on the estimator (level α·split) picks σ_c, PREDICT on its expert
        (level α·(1 − split)) gives the class; returns a class other than the dual smoothed classifier's
        with probability ≤ α (union bound). Abstains when either stage does."""
        alpha, alpha_sigma, alpha_class = _check_alpha_split(alpha, alpha_split)
        check_images(x, 3)
        seed = fresh_seed() if check_seed(seed) is None else seed
        p1 = self.estimator.predict_result(x, n, alpha_sigma, seed=stage_seed(seed, 1))
        self._check_classes(len(p1.counts))
        if p1.prediction == ABSTAIN:
            return DualPrediction(ABSTAIN, None, p1, None)
        sigma = self.sigmas[p1.prediction]
        p2 = self.experts[sigma].predict_result(x, n, alpha_class, seed=stage_seed(seed, 2, p1.prediction))
        return DualPrediction(p2.prediction, sigma, p1, p2)

    def stream(self, x: torch.Tensor, n0: int = 100, n_max: int = 10_000, alpha: float = 0.001, *,
               alpha_split: float = 0.5, seed: int | None = None) -> DualStream:
        """Both stages streamed and anytime-valid: a :class:`DualStream`."""
        return DualStream._from_dual(self, x, n0, n_max, alpha, alpha_split=alpha_split, seed=seed)


class DualOptions(TypedDict, total=False):
    """The keyword-only options of the dual-RS functions, passed through to :class:`DualSmooth` and its methods.

    - ``alpha_split``: the share of α spent on stage 1 (the σ certificate); stage 2 gets the rest (default ½).
    - ``seed``: int or None (a fresh seed, recorded); each stage and expert derives its own from it.
    - ``autocast``: ``"bf16"``, ``"fp16"`` or None, for both stages' forward passes.
    """

    alpha_split: float
    seed: int | None
    autocast: Autocast


def _dual(estimator: nn.Module, experts: Mapping[float, nn.Module], sigma_e: float, batch_size: int,
          options: DualOptions) -> tuple[DualSmooth, dict]:
    """The ``DualSmooth`` these options describe, and the options left for its method (alpha_split, seed)."""
    options = check_options(options, DualOptions)
    return DualSmooth(estimator, experts, sigma_e, batch_size, autocast=options.pop("autocast", None)), options


def certify_dual_many(estimator: nn.Module, experts: Mapping[float, nn.Module], xs: torch.Tensor, sigma_e: float,
                      n0: int = 100, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000,
                      **options: Unpack[DualOptions]) -> list[DualCertificate]:
    """Dual-RS CERTIFY for inputs [N, C, H, W]; see :meth:`DualSmooth.certify_many` (options: :class:`DualOptions`)."""
    dual, rest = _dual(estimator, experts, sigma_e, batch_size, options)
    return dual.certify_many(xs, n0, n, alpha, **rest)


def certify_dual(estimator: nn.Module, experts: Mapping[float, nn.Module], x: torch.Tensor, sigma_e: float,
                 n0: int = 100, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000,
                 **options: Unpack[DualOptions]) -> DualCertificate:
    """Dual-RS CERTIFY for one input x [C, H, W]; see :meth:`DualSmooth.certify_many` and the module docstring.

    The paper's setting: N0 = 100, N = 10,000 per stage, α = 0.001 split equally (0.0005 each). Options:
    :class:`DualOptions`.
    """
    dual, rest = _dual(estimator, experts, sigma_e, batch_size, options)
    return dual.certify(x, n0, n, alpha, **rest)


def predict_dual(estimator: nn.Module, experts: Mapping[float, nn.Module], x: torch.Tensor, sigma_e: float,
                 n: int = 1000, alpha: float = 0.001, batch_size: int = 1000,
                 **options: Unpack[DualOptions]) -> DualPrediction:
    """Dual-RS PREDICT; see :meth:`DualSmooth.predict` (options: :class:`DualOptions`)."""
    dual, rest = _dual(estimator, experts, sigma_e, batch_size, options)
    return dual.predict(x, n, alpha, **rest)


@dataclass
class DualSnapshot:
    """State of a :class:`DualStream` after a batch: the stage (1 = σ-estimator, 2 = expert at σ_c)
    and that stage's :class:`~rs_core.smoothing.certify.Snapshot` (its fields are repeated for convenience)."""

    stage: int
    inner: Snapshot
    sigma_c: float | None
    phase: str
    n: int
    p_lower: float
    radius: float
    elapsed_s: float

    stages = 2  # the live-stream protocol (rs_core.smoothing.jobs.LiveSnapshot)

    @property
    def label(self) -> str:
        return "σ-estimator" if self.stage == 1 else f"expert at σ_c = {self.sigma_c:g}"


class DualStream:
    """Dual-RS CERTIFY with both stages streamed and anytime-valid, for live views; stoppable.

    Stage 1 runs up to ``n_max`` samples on the estimator; if it certifies σ_c, stage 2 runs
    up to ``n_max`` on the expert for σ_c. :meth:`stop` ends sampling within one batch; a
    stop during stage 1 abstains (no class certified). :meth:`certificate` is valid at any
    point: each stage uses the anytime-valid bound at its level (α split as in
    :func:`certify_dual`).
    """

    def __init__(self, estimator: nn.Module, experts: Mapping[float, nn.Module], x: torch.Tensor, sigma_e: float,
                 n0: int = 100, n_max: int = 10_000, alpha: float = 0.001, batch_size: int = 1000, *,
                 alpha_split: float = 0.5, seed: int | None = None, autocast: Autocast = None) -> None:
        self._setup(DualSmooth(estimator, experts, sigma_e, batch_size, autocast=autocast), x, n0, n_max, alpha,
                    alpha_split=alpha_split, seed=seed)

    @classmethod
    def _from_dual(cls, dual: DualSmooth, x: torch.Tensor, n0: int, n_max: int, alpha: float, *,
                   alpha_split: float, seed: int | None) -> DualStream:
        self = cls.__new__(cls)
        self._setup(dual, x, n0, n_max, alpha, alpha_split=alpha_split, seed=seed)
        return self

    def _setup(self, dual: DualSmooth, x: torch.Tensor, n0: int, n_max: int, alpha: float, *,
               alpha_split: float, seed: int | None) -> None:
        self.dual = dual
        self.sigmas, self.sigma_e, self.autocast = dual.sigmas, dual.sigma_e, dual.autocast
        self.alpha, self.alpha_sigma, self.alpha_class = _check_alpha_split(alpha, alpha_split)
        self.n0, self.n_max = check_count(n0, "n0"), check_count(n_max, "n_max")
        check_images(x, 3)
        self.x = x
        self.seed = fresh_seed() if check_seed(seed) is None else seed
        self.stage1 = dual.estimator.stream(x, self.n0, self.n_max, self.alpha_sigma, seed=stage_seed(self.seed, 1))
        dual._check_classes(self.stage1.num_classes)
        self.stage2: CertifyStream | None = None
        self._stopped = threading.Event()
        self._start = time.perf_counter()

    @property
    def batch_size(self) -> int:
        return self.dual.batch_size

    @property
    def device(self) -> torch.device:
        return self.stage1.device

    @property
    def stop_reason(self) -> str | None:
        current = self.stage2 or self.stage1
        return current.stop_reason

    def stop(self) -> None:
        self._stopped.set()
        self.stage1.stop()
        if self.stage2 is not None:
            self.stage2.stop()

    def __iter__(self) -> Iterator[DualSnapshot]:
        self._start = time.perf_counter()
        for snap in self.stage1:
            yield DualSnapshot(1, snap, None, snap.phase, snap.n, snap.p_lower, snap.radius, snap.elapsed_s)
        cert1 = self.stage1.certificate()
        if self._stopped.is_set() or cert1.prediction == ABSTAIN:
            return
        sigma_c = self.sigmas[cert1.prediction]
        self.stage2 = self.dual.experts[sigma_c].stream(self.x, self.n0, self.n_max, self.alpha_class,
                                                        seed=stage_seed(self.seed, 2, cert1.prediction))
        if self._stopped.is_set():  # stop() raced with the start of stage 2
            self.stage2.stop()
        for snap in self.stage2:
            yield DualSnapshot(2, snap, sigma_c, snap.phase, snap.n, snap.p_lower, snap.radius, snap.elapsed_s)

    def certificate(self) -> DualCertificate:
        stage2 = None if self.stage2 is None or self.stage2.counts_selection is None else self.stage2.certificate()
        return _combine(self.stage1.certificate(), stage2, self.sigmas, self.sigma_e, self.alpha, self.alpha_sigma,
                        self.alpha_class, self.seed, time.perf_counter() - self._start)


def sigma_label_radii(radii: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Soft labels for training the σ-estimator: softmax over Σ of the experts' radii [N, m] / temperature.

    An input no expert classifies correctly (all radii 0) gets the uniform label.

    >>> sigma_label_radii(np.array([[0.0, 0.0], [1.0, 0.0]])).round(3).tolist()
    [[0.5, 0.5], [0.731, 0.269]]
    """
    radii = np.asarray(radii, dtype=np.float64)
    if radii.ndim != 2 or not np.all(np.isfinite(radii)):
        raise ValueError(f"radii: must be a finite [N, m] array, got shape {radii.shape}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: must be finite and > 0, got {temperature!r}")
    z = radii / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


__all__ = ["DualCertificate", "DualOptions", "DualPrediction", "DualSmooth", "DualSnapshot", "DualStream",
           "certify_dual", "certify_dual_many", "predict_dual", "sigma_label_radii", "stage_seed"]
