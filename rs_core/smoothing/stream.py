"""CERTIFY with streamed estimation samples and an anytime-valid bound (for live views); stoppable.

Cohen et al.'s CERTIFY (2019, Algorithm 2) bounds pA with Clopper–Pearson at a
sample size n fixed in advance; a user who watches the bound and stops when it
looks good would void that guarantee. :class:`CertifyStream` bounds pA with the
confidence sequence of :func:`rs_core.smoothing.stats.anytime_lower_bound` instead, which
holds at every n at once, so the certificate of a stream stopped at any time — by a
user, at ``n_max``, or by a target-radius rule — keeps the 1 − α guarantee. The class
c_A comes from n0 selection samples drawn before, and independent of, every estimation
sample.

The certificate is the bound at the stopping point n, never a maximum over the bounds
read after each batch: batch sizes follow the machine's load (``batch_seconds``), so a
maximum over batch boundaries would make the certificate depend on who else was using
the server. Votes do not depend on the batch sizes either (noise in fixed blocks,
:class:`~rs_core.smoothing.sampling.NoiseStream`), so a certificate is a function of the
model, the input, σ, n0, n, α, the seed and the device type. What this costs: against a
running maximum read every 1,000 samples, the radius at n = 100,000 (σ = 0.5, α = 0.001)
is on average 0.0005 (pA = 0.9) to 0.0026 (pA = 0.999) smaller (benchmarks/bench_stream_bound.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
from scipy import special
from torch import nn

from rs_core.checks import check_alpha, check_count, check_images
from rs_core.models.device import Autocast
from rs_core.smoothing.noises import check_noise_norm
from rs_core.smoothing.results import ABSTAIN, Certificate, Snapshot, StopReason, decide
from rs_core.smoothing.sampling import NoiseSampler, time_batch_size
from rs_core.smoothing.stats import DEFAULT_MIXTURE, BetaMixture, anytime_lower_bound_complement


def check_batch_seconds(batch_seconds: float | None) -> float | None:
    """None (batches of exactly ``batch_size``) or a number of seconds in (0, 3600]."""
    if batch_seconds is not None and (isinstance(batch_seconds, bool) or not isinstance(batch_seconds, (int, float))
                                      or not 0 < batch_seconds <= 3600):
        raise ValueError(f"batch_seconds: must be None or a number of seconds in (0, 3600], got {batch_seconds!r}")
    return None if batch_seconds is None else float(batch_seconds)


class CertifyStream:
    """CERTIFY with streamed estimation samples and an anytime-valid bound; stoppable.

    Iterate to run it: the first snapshot follows the n0 selection samples,
    then one follows each estimation batch (one host synchronization each).
    The stream ends at ``n_max`` samples; when ``target_radius`` is given, as
    soon as the bound certifies it or it is out of reach even if every
    remaining sample voted c_A; or within one batch of :meth:`stop`, which any
    thread may call. :meth:`certificate` is valid at any point: it uses the
    anytime bound at the current n (never Clopper–Pearson at a data-dependent n,
    never a maximum over batch boundaries).

    With ``batch_seconds``, batches are sized by time and re-timed after every
    full batch (at most doubled or halved at a time, never above ``batch_size``):
    a run started under load speeds up when the load goes, and Stop is answered
    within about ``batch_seconds``. The result does not change with the sizes.
    ``clock`` (seconds, default ``time.perf_counter``) is what the timing reads.

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
        batch_seconds: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        noise: str = "gaussian",
        norm: str = "l2",
    ) -> None:
        check_images(x, 3)
        noise, norm = check_noise_norm(noise, norm)
        self._setup(NoiseSampler(model, x, sigma, batch_size, seed=seed, generator=generator, autocast=autocast,
                                 noise=noise),
                    n0, n_max, alpha, target_radius=target_radius, mixture=mixture, batch_seconds=batch_seconds,
                    clock=clock, norm=norm)

    @classmethod
    def from_sampler(cls, sampler: NoiseSampler, n0: int, n_max: int, alpha: float, *,
                     target_radius: float | None, mixture: BetaMixture,
                     batch_seconds: float | None = None, norm: str = "l2") -> CertifyStream:
        """A stream drawing from ``sampler`` (one input, checked by its maker), as
        :meth:`Smooth.stream <rs_core.smoothing.smooth.Smooth.stream>` builds it; the other arguments as in the class."""
        self = cls.__new__(cls)
        self._setup(sampler, n0, n_max, alpha, target_radius=target_radius, mixture=mixture,
                    batch_seconds=batch_seconds, norm=norm)
        return self

    def _setup(self, sampler: NoiseSampler, n0: int, n_max: int, alpha: float, *,
               target_radius: float | None, mixture: BetaMixture, batch_seconds: float | None = None,
               clock: Callable[[], float] = time.perf_counter, norm: str = "l2") -> None:
        self.noise, self.norm = check_noise_norm(sampler.noise_name, norm)
        self._noise_dist = sampler.noise_dist
        self._d = int(np.prod(sampler.inputs.shape[1:]))  # the input's dimension (ℓ∞ radii depend on it)
        self.batch_seconds = check_batch_seconds(batch_seconds)
        if not callable(clock):
            raise ValueError(f"clock: must be a function returning seconds, got {type(clock).__name__}")
        self._clock = clock
        self._sampler = sampler
        self.max_batch_size = sampler.batch_size  # what time-sized batches never exceed
        self.sigma, self.autocast = sampler.sigma, sampler.autocast
        self.n0, self.n_max, self.alpha = check_count(n0, "n0"), check_count(n_max, "n_max"), check_alpha(alpha)
        if target_radius is not None:
            if isinstance(target_radius, bool) or not isinstance(target_radius, (int, float)) \
                    or not math.isfinite(target_radius) or target_radius <= 0:
                raise ValueError(f"target_radius: must be None or finite and > 0, got {target_radius!r}")
            target_radius = float(target_radius)
        if not isinstance(mixture, BetaMixture):
            raise ValueError(f"mixture: must be a BetaMixture, got {type(mixture).__name__}")
        self.target_radius = target_radius
        # Radius >= r  ⟺  p_lower >= Φ(r/σ)  ⟺  1 − p_lower <= Φ̄(r/σ) (Gaussian ℓ2; other noises and norms invert
        # their own radius formula, rs_core.smoothing.noises).
        if target_radius is None:
            self._q_target = None
        elif (self.noise, self.norm) == ("gaussian", "l2"):
            self._q_target = float(special.ndtr(-target_radius / self.sigma))  # Φ̄(r/σ)
        else:
            self._q_target = self._noise_dist.q_for_radius(target_radius, self.norm, self._d)
        self.mixture = mixture
        self._stop = threading.Event()
        self._start = clock()
        self._elapsed = 0.0
        self.n = 0
        self.counts = np.zeros(self._sampler.num_classes, dtype=np.int64)
        self.counts_selection: np.ndarray | None = None
        self.n0_drawn = 0
        self.top_class = ABSTAIN
        self._q_lower = 1.0  # 1 − L_n: the complement of the anytime bound at the current n
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

    @property
    def batch_size(self) -> int:
        """Samples per forward pass: the one given, or with ``batch_seconds`` the size of the time-sized batch in
        use (it changes during the run); halved when CUDA runs out of memory."""
        return self._sampler.batch_size

    def stop(self) -> None:
        """Ask the stream to end; it does so after the batch in flight (thread-safe)."""
        self._stop.set()

    def _snapshot(self, phase: Literal["selection", "estimation"]) -> Snapshot:
        self._elapsed = self._clock() - self._start
        p_lower, radius, _ = decide(self._q_lower, self.sigma, self._noise_dist, self.norm, self._d)
        drawn = self.n + self.n0_drawn
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
        self._start = self._clock()
        sampler = self._sampler
        if self.batch_seconds is not None:
            # A first size from the clean input (no noise drawn), so that the first batch is short on a slow model;
            # re-timed after every full batch from then on.
            sampler.batch_size = time_batch_size(sampler.model, sampler.inputs[0], sampler.batch_size,
                                                 self.batch_seconds, autocast=sampler.autocast)
        # Selection in batches, each followed by a snapshot: Stop is answered here too, and the votes show at once.
        # The noise is the same as one sample(n0) call's, whatever the batch sizes.
        selection = np.zeros(sampler.num_classes, dtype=np.int64)
        drawn = 0
        while drawn < self.n0:
            step = min(sampler.batch_size, self.n0 - drawn)
            t0 = self._clock()
            selection += sampler.sample(step)[0].cpu().numpy()
            self._retime(step, self._clock() - t0)
            drawn += step
            self.counts_selection = selection
            self.n0_drawn = drawn
            if self._stop.is_set():
                break
            if drawn < self.n0:
                yield self._snapshot("selection")
        if drawn < self.n0:  # stopped during selection: no class was chosen, the certificate abstains
            self.counts_selection = selection
            self.stop_reason = "stopped"
            yield self._snapshot("selection")
            return
        self.top_class = int(selection.argmax())
        if self._stop.is_set():
            self.stop_reason = "stopped"
        yield self._snapshot("selection")
        if self.stop_reason is not None:
            return
        acc = torch.zeros(sampler.num_classes, dtype=torch.int64, device=sampler.device)
        while True:
            step = min(sampler.batch_size, self.n_max - self.n)
            t0 = self._clock()
            acc += sampler.sample(step)[0]
            self.counts = acc.cpu().numpy()  # the one host sync of this batch
            self._retime(step, self._clock() - t0)
            self.n += step
            # The bound at this n only: a maximum over the batch boundaries would depend on the batch sizes.
            self._q_lower = anytime_lower_bound_complement(int(self.counts[self.top_class]), self.n, self.alpha,
                                                           self.mixture)
            if self._stop.is_set():
                self.stop_reason = "stopped"
            else:
                self.stop_reason = self._target_reached() or ("n_max" if self.n >= self.n_max else None)
            yield self._snapshot("estimation")
            if self.stop_reason is not None:
                return

    def _retime(self, step: int, seconds: float) -> None:
        """After a full batch of a time-sized run: the size that would take ``batch_seconds`` at the speed just
        measured, at most twice or half the last one (one slow or fast batch does not swing it) and at most the
        ``batch_size`` given. Changes only the speed: the votes do not depend on the batch sizes."""
        sampler = self._sampler
        if self.batch_seconds is None or step != sampler.batch_size:
            return
        size = step * self.batch_seconds / seconds if seconds > 0 else 2.0 * step
        sampler.batch_size = int(min(self.max_batch_size, 2 * step, max(1, step // 2, math.floor(size))))

    def run(self) -> Certificate:
        """Runs the stream to its end and returns the certificate."""
        for _ in self:
            pass
        return self.certificate()

    def certificate(self) -> Certificate:
        """The certificate from the samples so far: valid whenever the stream was stopped."""
        p_lower, radius, ok = decide(self._q_lower, self.sigma, self._noise_dist, self.norm, self._d)
        selection = self.counts_selection
        return Certificate(
            prediction=self.top_class if ok else ABSTAIN, radius=radius, p_lower=p_lower,
            counts=self.counts.copy(),
            counts_selection=np.zeros_like(self.counts) if selection is None else selection.copy(),
            sigma=self.sigma, alpha=self.alpha, n=self.n, n0=min(self.n0, self.n0_drawn),
            seed=self.seed,
            device=str(self._sampler.device), batch_size=self._sampler.batch_size,
            elapsed_s=self._elapsed, bound="anytime-beta-mixture", autocast=self.autocast,
            n_max=self.n_max, target_radius=self.target_radius, stop_reason=self.stop_reason,
            batch_seconds=self.batch_seconds, noise=self.noise, norm=self.norm,
        )


__all__ = ["CertifyStream"]
