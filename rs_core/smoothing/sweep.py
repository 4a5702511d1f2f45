"""One input certified at several noise levels σ ("σ side by side"), with an honest "best σ" mode.

:class:`SigmaSweepStream` runs one :class:`~rs_core.smoothing.stream.CertifyStream` per σ, one after the
other, each on its own noise (seed ``derive_seed(seed, i)`` for the i-th σ, 0-based) and each
anytime-valid, so the sweep can be stopped at any point.

Two guarantees, chosen by ``best``:

- ``best=False`` (each σ on its own): every certificate is made at level α and holds with
  probability ≥ 1 − α *on its own*. Choosing the largest radius after seeing them is a choice
  from data: "the largest of k certificates" fails whenever any one of them fails, which may
  happen with probability up to k·α. No σ is picked (:attr:`SweepCertificate.best_index` is None).
- ``best=True`` (best σ): every certificate is made at level α/k (Bonferroni). By the union
  bound all k hold together with probability ≥ 1 − α, so the certificate with the largest
  radius, picked after seeing them all (:attr:`SweepCertificate.best_index`), holds with
  probability ≥ 1 − α. No independence between the σ's is needed (they are independent anyway).

Stopping the sweep early, at a time chosen from what was seen, keeps both: each σ's bound is an
anytime-valid confidence sequence, and the union bound runs over all k of them (a σ never started
has no certificate and cannot be picked).

>>> from torch import nn
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
>>> sweep = SigmaSweepStream(model, torch.zeros(1, 2, 2), [0.25, 0.5], n0=100, n_max=1000, alpha=0.002,
...                          batch_size=500, best=True, seed=0)
>>> [(s.label, s.inner.n) for s in sweep]
[('σ = 0.25', 0), ('σ = 0.25', 500), ('σ = 0.25', 1000), ('σ = 0.5', 0), ('σ = 0.5', 500), ('σ = 0.5', 1000)]
>>> cert = sweep.certificate()
>>> cert.alpha_each, [c.alpha for c in cert.certificates]
(0.001, [0.001, 0.001])
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rs_core.checks import check_alpha, check_count, check_images, check_seed, check_sigma
from rs_core.models.device import Autocast, check_autocast, check_model
from rs_core.smoothing.noises import check_noise_norm
from rs_core.smoothing.results import ABSTAIN, Certificate, Snapshot, StopReason
from rs_core.smoothing.seeding import derive_seed, fresh_seed
from rs_core.smoothing.stream import CertifyStream, check_batch_seconds

MAX_SIGMAS = 32
"""At most this many σ in one sweep."""


def _check_sigmas(sigmas: Iterable[float]) -> tuple[float, ...]:
    """1 to ``MAX_SIGMAS`` distinct finite σ > 0, in the order given."""
    # A set has no order to keep, a str is not a list of numbers: both are refused, as is a single number.
    if isinstance(sigmas, (str, bytes, Mapping, AbstractSet)) or not isinstance(sigmas, Iterable):
        raise ValueError(f"sigmas: must be a sequence of noise levels, got {sigmas!r}")  # noqa: TRY004 — house style
    values = tuple(check_sigma(s, "sigmas") for s in sigmas)
    if not values:
        raise ValueError("sigmas: must hold at least one noise level, got none")
    if len(values) > MAX_SIGMAS:
        raise ValueError(f"sigmas: at most {MAX_SIGMAS} noise levels, got {len(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"sigmas: must be distinct, got {values}")
    return values


@dataclass(frozen=True)
class SweepCertificate:
    """Result of :class:`SigmaSweepStream`: one CERTIFY certificate per σ.

    ``certificates[i]`` is the certificate at ``sigmas[i]`` (level ``alpha_each``), or None when
    that σ never started (the sweep was stopped before it). ``alpha`` is the level of the whole
    sweep: ``alpha_each = alpha / k`` in best mode (``best=True``), ``alpha_each = alpha`` otherwise.
    """

    sigmas: tuple[float, ...]
    certificates: tuple[Certificate | None, ...]
    alpha: float
    alpha_each: float
    best: bool
    seed: int

    @property
    def best_index(self) -> int | None:
        """Best mode: the index of the certificate with the largest radius among those that certify a
        class (ties → the smaller index), None when every σ abstained or none ran. Holds with
        probability ≥ 1 − α (Bonferroni). Per-σ mode: always None — no choice is made on the user's behalf.
        """
        if not self.best:
            return None
        chosen: int | None = None
        for i, cert in enumerate(self.certificates):
            if cert is None or cert.prediction == ABSTAIN:
                continue
            if chosen is None or cert.radius > self.certificates[chosen].radius:
                chosen = i
        return chosen

    @property
    def guarantee(self) -> str:
        """What holds, in one sentence."""
        k = len(self.sigmas)
        if self.best:
            return (f"Best σ: each of the k = {k} certificates at α/k = {self.alpha_each:g}; the largest radius "
                    f"among them holds with probability ≥ 1 − α = {1 - self.alpha:g} (union bound).")
        return (f"Each σ on its own: each certificate holds with probability ≥ 1 − α = {1 - self.alpha:g} on its "
                f"own; choosing the largest radius after seeing the {k} of them does not (that needs best σ, "
                f"α/k on each).")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (each certificate by :meth:`Certificate.to_dict`)."""
        return {
            "sigmas": list(self.sigmas),
            "certificates": [None if c is None else c.to_dict() for c in self.certificates],
            "alpha": self.alpha, "alpha_each": self.alpha_each, "best": self.best, "best_index": self.best_index,
            "seed": self.seed, "guarantee": self.guarantee,
        }


@dataclass
class SweepSnapshot:
    """State of a :class:`SigmaSweepStream` after a batch: σ number ``stage`` (1-based) of ``stages``,
    that σ, and its :class:`~rs_core.smoothing.results.Snapshot` (``inner``)."""

    stage: int
    stages: int
    inner: Snapshot
    sigma: float

    @property
    def label(self) -> str:
        return f"σ = {self.sigma:g}"


class SigmaSweepStream:
    """CERTIFY of one input x [C, H, W] at each σ of ``sigmas``, streamed and anytime-valid; stoppable.

    One :class:`~rs_core.smoothing.stream.CertifyStream` per σ, in the order given, each with ``n0`` selection
    samples, up to ``n_max`` estimation samples and level ``alpha_each`` (``alpha / k`` when ``best``,
    else ``alpha``); the stream for σ number i + 1 is created only when the one for σ number i ended.
    Its seed is ``derive_seed(seed, i)`` (0-based i), so the σ's draw independent noise and the sweep
    repeats exactly for a fixed ``seed`` (None: a fresh one, kept in :attr:`seed`).

    Iterate for :class:`SweepSnapshot`\\ s (one after each σ's selection samples, then one per
    estimation batch). :meth:`stop`, from any thread, ends the running σ within one batch and starts
    no later σ. :meth:`certificate` is valid at any time: σ's not started yet are None. See the
    module docstring for what holds in either mode.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        sigmas: Iterable[float],
        n0: int = 100,
        n_max: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        *,
        best: bool = False,
        seed: int | None = None,
        autocast: Autocast = None,
        batch_seconds: float | None = None,
        models: Mapping[float, nn.Module] | None = None,
        noise: str = "gaussian",
        norm: str = "l2",
    ) -> None:
        check_model(model)
        self.noise, self.norm = check_noise_norm(noise, norm)  # every σ's stream smooths with this noise
        check_images(x, 3)
        self.batch_seconds = check_batch_seconds(batch_seconds)  # each σ's stream sizes its batches by time
        self.sigmas = _check_sigmas(sigmas)
        self.n0, self.n_max = check_count(n0, "n0"), check_count(n_max, "n_max")
        self.alpha = check_alpha(alpha)
        self.batch_size = check_count(batch_size, "batch_size")
        if not isinstance(best, bool):
            raise ValueError(f"best: must be True or False, got {best!r}")  # noqa: TRY004 — house style
        self.best = best
        k = len(self.sigmas)
        # Best mode: Bonferroni over the k certificates, so the one picked after seeing them keeps 1 − α.
        self.alpha_each = self.alpha / k if best else self.alpha
        checked = check_seed(seed)
        self.seed: int = fresh_seed() if checked is None else checked
        self.model, self.autocast = model, check_autocast(autocast)
        # Per-σ base classifiers (dual RS's experts, each certified at its own σ); default: ``model`` for every σ.
        if models is not None:
            if not isinstance(models, Mapping) or set(models) != set(self.sigmas):
                raise ValueError(f"models: need one model per σ in {list(self.sigmas)}, got "
                                 f"{sorted(models) if isinstance(models, Mapping) else type(models).__name__}")
            for m in models.values():
                check_model(m)
        self.models = None if models is None else dict(models)
        self.x = x.detach().clone()  # every σ certifies the same input, whatever the caller does to x later
        self._lock = threading.RLock()  # orders stop() against the start of the next σ (re-entrant: the model's
        # shape probe runs under it, and a stop() from inside a forward pass must not deadlock)
        self._stopped = threading.Event()
        self._streams: list[CertifyStream | None] = [None] * k
        self._streams[0] = self._open(0)  # checks the model and autocast now, as DualStream's stage 1 does
        self._started = False
        self._stop_reason: StopReason | None = None

    def _open(self, i: int) -> CertifyStream:
        model = self.model if self.models is None else self.models[self.sigmas[i]]
        return CertifyStream(model, self.x, self.sigmas[i], self.n0, self.n_max, self.alpha_each,
                             self.batch_size, seed=derive_seed(self.seed, i), autocast=self.autocast,
                             batch_seconds=self.batch_seconds, noise=self.noise, norm=self.norm)

    @property
    def device(self) -> torch.device:
        return self._streams[0].device

    @property
    def stop_reason(self) -> StopReason | None:
        """None while running; "stopped" when :meth:`stop` ended the sweep early, else "n_max"."""
        return self._stop_reason

    def stop(self) -> None:
        """Ask the sweep to end: the running σ ends after the batch in flight, no later σ starts (thread-safe)."""
        with self._lock:
            self._stopped.set()
            for stream in self._streams:
                if stream is not None:
                    stream.stop()

    def __iter__(self) -> Iterator[SweepSnapshot]:
        if self._started:
            raise RuntimeError("SigmaSweepStream: can be iterated only once")
        self._started = True
        k = len(self.sigmas)
        reason: StopReason = "n_max"
        for i, sigma in enumerate(self.sigmas):
            with self._lock:  # a stop() either comes first (σ i never starts) or reaches σ i's stream
                if self._stopped.is_set():
                    reason = "stopped"
                    break
                stream = self._streams[i]
                if stream is None:
                    stream = self._streams[i] = self._open(i)
                if self._stopped.is_set():  # stopped by the probe's own forward pass: σ i never starts
                    reason = "stopped"
                    break
            for snap in stream:
                yield SweepSnapshot(i + 1, k, snap, sigma)
            if stream.stop_reason == "stopped":
                reason = "stopped"
                break
        self._stop_reason = reason

    def run(self) -> SweepCertificate:
        """Runs the sweep to its end and returns the certificate."""
        for _ in self:
            pass
        return self.certificate()

    def certificate(self) -> SweepCertificate:
        """The certificates so far (None for each σ not started); each valid whenever the sweep was stopped."""
        certs = tuple(None if s is None or s.counts_selection is None else s.certificate() for s in self._streams)
        return SweepCertificate(sigmas=self.sigmas, certificates=certs, alpha=self.alpha, alpha_each=self.alpha_each,
                                best=self.best, seed=self.seed)


__all__ = ["SigmaSweepStream", "SweepCertificate", "SweepSnapshot"]
