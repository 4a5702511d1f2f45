"""CERTIFY at the radii that matter: sample each input only until the largest listed radius it can certify is decided.

A data-set evaluation asks one question per image: which of the radii r₁ < … < r_K (the columns of the certified
accuracy table) does CERTIFY reach? Fixed-N CERTIFY spends N = 100,000 samples on every image even when 300
already settle it. Here each input gets

1. **selection**: n0 noisy samples, c_A = their argmax (independent of everything after, as in CERTIFY);
2. **estimation in growing chunks**: after each chunk, L_n, the anytime-valid (1 − α) lower confidence sequence for
   p_A = P(f(x + ε) = c_A) (:func:`rs_core.smoothing.stats.anytime_lower_bound`: a beta-binomial mixture martingale and
   Ville's inequality; Robbins 1970, Howard et al. 2021), and its running maximum. The input is certified at level
   j when max L ≥ Φ(r_j / σ) (level 0: the class alone, max L > ½). Because the sequence holds at every n
   simultaneously with probability ≥ 1 − α, the level read at a data-dependent stopping time is still a valid
   certificate: P(a false certificate at any listed radius) ≤ α.
3. **stopping**, only to save samples (these rules cannot make a certificate unsound, only smaller):
   ``top_radius`` when r_K is certified; ``futile`` when the next level cannot be reached by n_max — an
   anytime upper bound on p_A (uniform mixture, level ``futility_alpha``) is below its threshold, or even a p_A
   at that upper bound
   would leave the lower bound at n_max short of it; ``n_max`` when the budget is spent.

Many inputs are certified at once and their chunks share forward batches (:meth:`RadiusCertifier.certify_stream`):
when an input stops, the next one takes its place in the batch, so batches stay full. Every input draws its noise
from its own generator (seeded per input) in whole-chunk draws, so its votes — and its certificate — are the same
whatever the batch size and whichever inputs share its batches.

>>> from torch import nn
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
>>> c = RadiusCertifier(model, 0.5, radii=[0.25, 0.5], n_max=5000).certify(torch.zeros(1, 2, 2), seed=0)
>>> c.stop_reason in ("top_radius", "futile", "n_max") and c.samples <= 100 + 5000
True
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy import special
from torch import nn

from rs_core.checks import check_alpha, check_count, check_images, check_seed, check_sigma
from rs_core.models.device import (
    AUTOCAST_DTYPES as _AUTOCAST_DTYPES,
)
from rs_core.models.device import (
    Autocast,
    check_autocast,
    check_model,
    model_device,
    model_dtype,
)
from rs_core.smoothing.bounds import radius_from_p_lower
from rs_core.smoothing.results import ABSTAIN
from rs_core.smoothing.seeding import fresh_seed, make_generator
from rs_core.smoothing.stats import DEFAULT_MIXTURE, BetaMixture, anytime_lower_bound_complement

AdaptiveStop = Literal["top_radius", "futile", "n_max"]

# The futility rule's upper bound on p_A must work for any p_A (the lower bound's mixture has no mass below ½).
UPPER_MIXTURE = BetaMixture(a=1.0, b=1.0, floor=0.0)


@functools.lru_cache(maxsize=1 << 16)
def _complement(k: int, n: int, alpha: float, mixture: BetaMixture) -> float:
    """1 − (anytime lower bound) for k of n, cached: on easy inputs every chunk ends with k = n, so the same few
    (k, n) come back for input after input."""
    return anytime_lower_bound_complement(k, n, alpha, mixture)


def check_radii(radii: Iterable[float]) -> tuple[float, ...]:
    """Listed radii: finite, > 0, strictly increasing; ``ValueError`` naming ``radii`` otherwise."""
    try:
        out = tuple(float(r) for r in radii)
    except (TypeError, ValueError):
        raise ValueError(f"radii: must be numbers, got {radii!r}") from None
    if not out:
        raise ValueError("radii: give at least one radius")
    if not all(math.isfinite(r) and r > 0 for r in out):
        raise ValueError(f"radii: must be finite and > 0, got {list(out)}")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"radii: must be strictly increasing, got {list(out)}")
    return out


@dataclass
class RadiusCertificate:
    """Result of adaptive CERTIFY for one input.

    ``level``: −1 abstain; 0 the class c_A is certified (p_A > ½) but not r₁; j ≥ 1 certified at
    ``radii[j − 1]``. ``radius`` is that listed radius (0.0 below r₁). ``radius_anytime`` = σΦ⁻¹(max L) is the
    radius the same bound gives at the stop — also valid, and ≥ ``radius``. ``n`` estimation samples were drawn, ``samples`` = n0 + n.
    ``p_upper``: the futility rule's anytime upper bound on p_A after the last chunk, at level ``futility_alpha``
    (it holds with probability ≥ 1 − futility_alpha and only decides when to stop).
    Guarantee: with probability ≥ 1 − α, if ``prediction`` is not ABSTAIN, the smoothed classifier returns it
    everywhere within ``radius_anytime`` (so within ``radius``).
    """

    prediction: int
    level: int
    radius: float
    radius_anytime: float
    p_lower: float
    p_upper: float
    counts: np.ndarray
    counts_selection: np.ndarray
    n0: int
    n: int
    stop_reason: AdaptiveStop
    radii: tuple[float, ...]
    sigma: float
    alpha: float
    n_max: int
    seed: int
    autocast: Autocast = None
    bound: str = "anytime-beta-mixture"
    elapsed_s: float = 0.0

    @property
    def samples(self) -> int:
        return self.n0 + self.n


@dataclass(eq=False)
class _Input:
    key: Hashable
    x: torch.Tensor
    seed: int
    gen: torch.Generator
    start: float
    chunk: int  # samples of the chunk being drawn
    pending: int  # of which still to draw
    selection: bool = True
    staging: torch.Tensor | None = None  # a chunk split over batches: drawn whole, served piece by piece
    served: int = 0
    votes: np.ndarray | None = None  # of the current chunk
    counts_selection: np.ndarray | None = None
    counts: np.ndarray | None = None
    top: int = ABSTAIN
    n: int = 0
    q_lower: float = 1.0  # running min of 1 − L
    p_upper: float = 1.0  # the upper bound after the last chunk (futility rule only)
    level: int = -1
    done: RadiusCertificate | None = field(default=None, repr=False)


class RadiusCertifier:
    """Adaptive CERTIFY of one or many inputs at the listed ``radii`` (see the module docstring).

    Args:
        model: base classifier in eval mode, [B, C, H, W] in [0, 1] → [B, K] scores.
        sigma: noise level. radii: r₁ < … < r_K, > 0. n0: selection samples. n_max: most estimation samples.
        alpha: failure probability of each certificate. batch_size: forward batch (shared by inputs).
        first_chunk, growth, max_chunk: the estimation chunks — ``first_chunk``, then ``growth`` × the samples so
            far (at least ``first_chunk``, at most ``max_chunk``): the bound is read after each.
        futility_alpha: level of the upper bound the futility rule reads. It only decides when to give up on the
            next level, never what is certified: a larger value stops sooner and, for inputs whose p_A is just
            above a threshold, gives up a little more often.
        autocast: ``"bf16"``/``"fp16"`` forward pass (recorded in the certificate).
    """

    def __init__(self, model: nn.Module, sigma: float, radii: Sequence[float], n0: int = 100,
                 n_max: int = 100_000, alpha: float = 0.001, batch_size: int = 1000, *, first_chunk: int = 64,
                 growth: float = 0.25, max_chunk: int = 4096, futility_alpha: float = 0.01,
                 autocast: Autocast = None, mixture: BetaMixture = DEFAULT_MIXTURE) -> None:
        self.model = check_model(model)
        self.sigma = check_sigma(sigma)
        self.radii = check_radii(radii)
        self.n0, self.n_max = check_count(n0, "n0"), check_count(n_max, "n_max")
        self.alpha = check_alpha(alpha)
        self.batch_size = check_count(batch_size, "batch_size")
        self.first_chunk, self.max_chunk = check_count(first_chunk, "first_chunk"), check_count(max_chunk, "max_chunk")
        if not (math.isfinite(growth) and growth > 0):
            raise ValueError(f"growth: must be finite and > 0, got {growth!r}")
        self.growth = float(growth)
        self.futility_alpha = check_alpha(futility_alpha, "futility_alpha")
        self.autocast = check_autocast(autocast)
        self.mixture = mixture
        self.device = model_device(self.model)
        self.model_dtype = model_dtype(self.model)
        self.noise_dtype = torch.promote_types(torch.float32, self.model_dtype)
        # 1 − Φ(r/σ) for level 0 (the class: p_A > ½) and each listed radius, decreasing.
        self._q_levels = np.array([0.5, *special.ndtr(-np.array(self.radii) / self.sigma)])  # Φ̄(r/σ)
        self.num_classes: int | None = None
        self.batches_run = 0  # forward batches so far, and the samples in them (batch fill = samples / batches)
        self.samples_run = 0

    # -- one input ---------------------------------------------------------------------------------------------
    def certify(self, x: torch.Tensor, *, seed: int | None = None) -> RadiusCertificate:
        """Adaptive CERTIFY of x [C, H, W]; ``seed=None`` draws a fresh one (recorded in the certificate)."""
        check_images(x, 3)
        seed = fresh_seed() if check_seed(seed) is None else seed
        return next(iter(self.certify_stream([(0, x, seed)])))[1]

    # -- many inputs, batches refilled -----------------------------------------------------------------------
    def certify_stream(self, inputs: Iterable[tuple[Hashable, torch.Tensor, int]], *,
                       refill: bool = True) -> Iterator[tuple[Hashable, RadiusCertificate]]:
        """Certify ``(key, x [C, H, W], seed)`` inputs; yields ``(key, certificate)`` as each finishes (not in
        input order). With ``refill`` (default) a finished input's batch slots go to the next input at once;
        ``refill=False`` certifies one input at a time (for comparison: the same certificates, emptier batches)."""
        source = iter(inputs)
        active: list[_Input] = []
        exhausted = False
        buf: torch.Tensor | None = None
        with torch.inference_mode():
            while True:
                plan: list[tuple[_Input, int, int]] = []
                free = self.batch_size
                for item in active:
                    if free == 0:
                        break
                    take = min(item.pending, free)
                    plan.append((item, self.batch_size - free, take))
                    free -= take
                while free > 0 and not exhausted and (refill or not active):
                    try:
                        key, x, seed = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    item = self._admit(key, x, seed)
                    active.append(item)
                    take = min(item.pending, free)
                    plan.append((item, self.batch_size - free, take))
                    free -= take
                if not plan:
                    return
                if buf is None or buf.shape[1:] != plan[0][0].x.shape:
                    buf = torch.empty((self.batch_size, *plan[0][0].x.shape), device=self.device,
                                      dtype=self.noise_dtype)
                used = self.batch_size - free
                for item, start, size in plan:
                    self._fill(item, buf[start:start + size], size)
                preds = self._predict(buf[:used])
                self.batches_run += 1
                self.samples_run += used
                k = self.num_classes
                owner = torch.repeat_interleave(torch.arange(len(plan), device=self.device),
                                                torch.tensor([s for _, _, s in plan], device=self.device))
                votes = torch.zeros(len(plan) * k, dtype=torch.int64, device=self.device)
                votes.index_add_(0, preds + owner * k, torch.ones_like(preds))
                votes_host = votes.view(len(plan), k).cpu().numpy()  # the one host sync of this batch
                for (item, _, size), v in zip(plan, votes_host, strict=True):
                    item.votes = v if item.votes is None else item.votes + v
                    item.pending -= size
                    if item.pending == 0:
                        self._chunk_done(item)
                        if item.done is not None:
                            yield item.key, item.done
                active = [a for a in active if a.done is None]

    # -- internals -----------------------------------------------------------------------------------------------
    def _admit(self, key: Hashable, x: torch.Tensor, seed: int) -> _Input:
        check_images(x, 3)
        seed = check_seed(seed)
        if seed is None:
            raise ValueError("seed: each input needs an integer seed")
        x = x.detach().to(self.device, dtype=self.noise_dtype)
        if self.num_classes is None:
            self.num_classes = self._probe(x)
        return _Input(key=key, x=x, seed=seed, gen=make_generator(seed, self.device), start=time.perf_counter(),
                      chunk=self.n0, pending=self.n0)

    def _probe(self, x: torch.Tensor) -> int:
        try:
            scores = self.model(x[None].to(self.model_dtype))
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"x: the model cannot process an input of shape {tuple(x.shape)}: {err}") from err
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[0] != 1 or scores.shape[1] < 2:
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(f"model: output must have shape [B, K] with K >= 2, got {got} for B=1")
        return int(scores.shape[1])

    def _fill(self, item: _Input, out: torch.Tensor, size: int) -> None:
        """x + σε for ``size`` samples of the input's current chunk, into ``out``. A chunk is always drawn by one
        ``randn`` of its full size (straight into the batch when it fits, else into a staging tensor served piece
        by piece), so the input's noise does not depend on how the batches were packed."""
        if item.staging is None and size == item.chunk:
            torch.randn(out.shape, generator=item.gen, out=out)
        else:
            if item.staging is None:
                item.staging = torch.randn((item.chunk, *item.x.shape), generator=item.gen, device=self.device,
                                           dtype=self.noise_dtype)
                item.served = 0
            out.copy_(item.staging[item.served:item.served + size])
            item.served += size
            if item.served == item.chunk:
                item.staging = None
        out.mul_(self.sigma).add_(item.x)

    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != self.model_dtype:
            batch = batch.to(self.model_dtype)  # x + ε formed in float32 or wider, cast after adding
        ctx = (torch.autocast(device_type=self.device.type, dtype=_AUTOCAST_DTYPES[self.autocast])
               if self.autocast else contextlib.nullcontext())
        with ctx:
            scores = self.model(batch)
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[0] != batch.shape[0]:
            raise ValueError(f"model: output must have shape [B, K] for a batch of B={batch.shape[0]}")
        return scores.argmax(dim=1)

    def _next_chunk(self, item: _Input) -> None:
        size = max(self.first_chunk, math.ceil(self.growth * item.n))
        item.chunk = item.pending = min(size, self.max_chunk, self.n_max - item.n)
        item.votes = None

    def _chunk_done(self, item: _Input) -> None:
        votes, item.votes = item.votes, None
        if item.selection:
            item.selection = False
            item.counts_selection = votes
            item.top = int(votes.argmax())
            item.counts = np.zeros_like(votes)
            self._next_chunk(item)
            return
        item.counts = item.counts + votes
        item.n += item.chunk
        k, n = int(item.counts[item.top]), item.n
        item.q_lower = min(item.q_lower, _complement(k, n, self.alpha, self.mixture))
        # The futility rule reads the current upper bound (a running minimum would also do; this keeps the
        # procedure a function of (votes, samples, level) so that its exact law can be computed in the tests).
        item.p_upper = _complement(n - k, n, self.futility_alpha, UPPER_MIXTURE)
        item.level = int(np.sum(item.q_lower <= self._q_levels)) - 1
        top = len(self._q_levels) - 1
        if item.level == top:
            return self._finish(item, "top_radius")
        q_next = self._q_levels[item.level + 1]
        if n >= self.n_max:
            return self._finish(item, "n_max")
        # p_A is below the next level's threshold, with probability ≥ 1 − futility_alpha (the upper bound's own
        # level, not α: a wrong call here only gives up early, it certifies nothing).
        if item.p_upper < 1.0 - q_next:
            return self._finish(item, "futile")
        # Even a p_A as high as its upper bound (and every remaining vote for c_A at most) would leave the bound
        # at n_max short of the next level.
        k_best = min(k + (self.n_max - n), math.floor(item.p_upper * self.n_max))
        if _complement(k_best, self.n_max, self.alpha, self.mixture) > q_next:
            return self._finish(item, "futile")
        self._next_chunk(item)
        return None

    def _finish(self, item: _Input, reason: AdaptiveStop) -> None:
        level = item.level
        p_lower = 1.0 - item.q_lower
        certified = level >= 0
        item.done = RadiusCertificate(
            prediction=item.top if certified else ABSTAIN, level=level,
            radius=self.radii[level - 1] if level >= 1 else 0.0,
            radius_anytime=radius_from_p_lower(p_lower, self.sigma, complement=item.q_lower) if certified else 0.0,
            p_lower=p_lower, p_upper=item.p_upper, counts=item.counts.copy(),
            counts_selection=item.counts_selection.copy(), n0=self.n0, n=item.n, stop_reason=reason,
            radii=self.radii, sigma=self.sigma, alpha=self.alpha, n_max=self.n_max, seed=item.seed,
            autocast=self.autocast, elapsed_s=time.perf_counter() - item.start)
        item.staging = None


__all__ = ["RadiusCertificate", "RadiusCertifier", "check_radii"]
