"""Cohen et al.'s CERTIFY over labelled test images, run as a live stream: a certify log built row by row, stoppable.

:class:`ExamplesStream` certifies examples one after the other exactly as
:meth:`Smooth.certify_examples <rs_core.smoothing.smooth.Smooth.certify_examples>` (and so the CLI's ``certify``)
does — n0 selection samples, then n estimation samples bounded by Clopper–Pearson at that fixed n, example
``idx`` on seed ``seed + idx`` — so each row is the one the CLI writes for that image. It follows the
:class:`~rs_core.smoothing.jobs.LiveStream` protocol, so a :class:`~rs_core.smoothing.jobs.Scheduler` runs it in
the background, batch by batch under the device's lock, and a page can show progress and a Stop.

:meth:`ExamplesStream.stop` ends the run within one batch. The rows of the images finished before are kept
(:meth:`ExamplesStream.certificate`); the image in flight is dropped: a Clopper–Pearson bound at an n chosen by
pressing Stop would not be the fixed-n CERTIFY that a certify log stands for.

>>> from torch import nn
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
>>> examples = [(i, torch.zeros(1, 2, 2), 0) for i in (3, 7)]
>>> stream = ExamplesStream(model, examples, sigma=0.25, n0=10, n=100, alpha=0.001, batch_size=500, seed=0)
>>> [s.images_done for s in stream][-1], [row[0] for row in stream.certificate()]
(2, [3, 7])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rs_core.checks import check_alpha, check_count, check_images, check_seed
from rs_core.models.device import Autocast
from rs_core.smoothing.results import ABSTAIN, Snapshot, StopReason, decide
from rs_core.smoothing.sampling import time_batch_size
from rs_core.smoothing.seeding import example_seed
from rs_core.smoothing.smooth import LogRow, Smooth
from rs_core.smoothing.stats import clopper_pearson_lower_complement
from rs_core.smoothing.stream import check_batch_seconds

MAX_EXAMPLES = 100_000
"""At most this many examples in one stream."""


@dataclass
class ExamplesSnapshot:
    """State of an :class:`ExamplesStream` after a batch: image number ``stage`` (1-based, the one being certified
    or the last one finished) of ``stages``, ``images_done`` finished, and the samples drawn of all to draw."""

    stage: int
    stages: int
    inner: Snapshot
    idx: int
    images_done: int
    samples_drawn: int
    samples_total: int
    elapsed_s: float

    @property
    def label(self) -> str:
        return f"test image {self.idx}"

    @property
    def seconds_left(self) -> float | None:
        """The time left at the speed so far (None before the first sample)."""
        if self.samples_drawn <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s / self.samples_drawn * (self.samples_total - self.samples_drawn)


class ExamplesStream:
    """CERTIFY (Cohen et al. Algorithm 2, fixed n) of each ``(idx, x [C, H, W], label)`` in ``examples``, in order.

    Iterate for :class:`ExamplesSnapshot`\\ s, one after each forward batch (each image's samples are drawn in
    batches, or, when n0 + n fits twice in a batch, several images share one, as in ``certify_examples``).
    :meth:`certificate` is the log rows ``(idx, label, predict, radius, correct, seconds)`` of the images finished
    so far, at any time. ``batch_seconds`` sizes the batches (at most ``batch_size``) to take about that long on
    the first image, so that Stop is answered promptly on a slow model; the rows do not depend on it.
    """

    def __init__(self, model: nn.Module, examples: Iterable[tuple[int, torch.Tensor, int]], sigma: float,
                 n0: int = 100, n: int = 100_000, alpha: float = 0.001, batch_size: int = 1000, *, seed: int = 0,
                 autocast: Autocast = None, batch_seconds: float | None = None) -> None:
        self.smooth = Smooth(model, sigma, batch_size, autocast=autocast)
        self.n0, self.n_max = check_count(n0, "n0"), check_count(n, "n")
        self.alpha = check_alpha(alpha)
        checked = check_seed(seed)
        if checked is None:
            raise ValueError("seed: example i is certified with seed + i, so a seed is needed, got None")
        self._seed = checked
        self.batch_seconds = check_batch_seconds(batch_seconds)
        # A Sequence is read one example at a time (a data set's images load as they are certified).
        self.examples = examples if isinstance(examples, Sequence) else list(examples)
        if not 1 <= len(self.examples) <= MAX_EXAMPLES:
            raise ValueError(f"examples: need 1 to {MAX_EXAMPLES:,} examples, got {len(self.examples):,}")
        self.rows: list[LogRow] = []
        self._stop = threading.Event()
        self._started = False
        self._drawn = 0  # samples drawn so far, over all images (for the time left)
        self.stop_reason: StopReason | None = None

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def device(self) -> torch.device:
        return self.smooth.device

    def stop(self) -> None:
        """Ask the run to end after the batch in flight (any thread); finished rows are kept."""
        self._stop.set()

    def _example(self, i: int) -> tuple[int, torch.Tensor, int]:
        example = self.examples[i]
        if not (isinstance(example, tuple) and len(example) == 3):
            raise ValueError(f"examples: item {i} must be (idx, x, label), got {type(example).__name__}")
        idx, x, label = example
        check_images(x, 3, f"examples[{i}]")
        example_seed(self._seed, idx)  # refuses a negative idx, or seed + idx out of range
        return int(idx), x, int(label)

    def certificate(self) -> list[LogRow]:
        """The rows of the images certified so far (each a full fixed-n CERTIFY)."""
        return list(self.rows)

    def __iter__(self) -> Iterator[ExamplesSnapshot]:
        if self._started:
            raise RuntimeError("ExamplesStream: can be iterated only once")
        self._started = True
        start, smooth = time.perf_counter(), self.smooth
        if self.batch_seconds is not None:
            smooth.batch_size = time_batch_size(smooth.model, self._example(0)[1].to(smooth.device),
                                                smooth.batch_size, self.batch_seconds, autocast=smooth.autocast)
        k, per_image = len(self.examples), self.n0 + self.n_max
        self._drawn = 0
        current = [-1]  # the idx of the image being certified (read by snap)

        def snap(i: int, phase: str, n: int, counts: np.ndarray, selection: np.ndarray | None, top: int,
                 p_lower: float = 0.0, radius: float = 0.0) -> ExamplesSnapshot:
            elapsed, drawn = time.perf_counter() - start, self._drawn
            inner = Snapshot(phase=phase, n=n, n_max=self.n_max, counts=counts, counts_selection=selection,
                             top_class=top, p_lower=p_lower, radius=radius, elapsed_s=elapsed,
                             samples_per_s=drawn / elapsed if elapsed > 0 else 0.0,
                             done=self.stop_reason is not None, stop_reason=self.stop_reason)
            return ExamplesSnapshot(stage=min(i + 1, k), stages=k, inner=inner, idx=current[0],
                                    images_done=len(self.rows), samples_drawn=drawn, samples_total=k * per_image,
                                    elapsed_s=elapsed)

        group = smooth.examples_per_group(self.n0, self.n_max)
        i = 0
        while i < k:
            if self._stop.is_set():
                self.stop_reason = "stopped"
                break
            if group > 1:
                # Several images' samples fit in one batch: certify_many with each image's own seed, as
                # certify_examples packs them (a stop waits for this one batch).
                chunk = [self._example(j) for j in range(i, min(i + group, k))]
                current[0] = chunk[-1][0]
                t0 = time.perf_counter()
                certs = smooth.certify_many(torch.stack([x for _, x, _ in chunk]), self.n0, self.n_max, self.alpha,
                                            seeds=[example_seed(self._seed, idx) for idx, _, _ in chunk])
                seconds = (time.perf_counter() - t0) / len(chunk)
                for (idx, _, label), cert in zip(chunk, certs, strict=True):
                    self.rows.append(_row(idx, label, cert.prediction, cert.radius, seconds))
                self._drawn += len(chunk) * per_image
                i += len(chunk)
                last = certs[-1]
                yield snap(i - 1, "estimation", self.n_max, last.counts, last.counts_selection,
                           last.prediction, last.p_lower, last.radius)
                continue
            example = self._example(i)
            current[0] = example[0]
            done = yield from self._one(i, example, snap)
            if not done:
                self.stop_reason = "stopped"
                break
            i += 1
        if self.stop_reason is None:
            self.stop_reason = "n_max"
        yield snap(k - 1, "estimation", self.n_max if self.rows else 0,
                   np.zeros(1, dtype=np.int64), None, ABSTAIN)

    def _one(self, i: int, example: tuple[int, torch.Tensor, int], snap) -> Iterator[ExamplesSnapshot]:
        """Certify example i batch by batch (a snapshot after each); returns False when stopped before its end.
        The noise is that of one ``sample(n0)`` and one ``sample(n)`` call: votes do not depend on batch sizes."""
        idx, x, label = example
        t0 = time.perf_counter()
        sampler = self.smooth.sampler(x, seed=example_seed(self._seed, idx))
        selection = np.zeros(sampler.num_classes, dtype=np.int64)
        estimation = np.zeros(sampler.num_classes, dtype=np.int64)
        for phase, total, acc in (("selection", self.n0, selection), ("estimation", self.n_max, estimation)):
            got = 0
            while got < total:
                if self._stop.is_set():
                    return False
                step = min(sampler.batch_size, total - got)
                acc += sampler.sample(step)[0].cpu().numpy()
                got += step
                self._drawn += step
                top = int(selection.argmax()) if phase == "estimation" else ABSTAIN
                yield snap(i, phase, got if phase == "estimation" else 0, estimation.copy(), selection.copy(), top)
        self.smooth.batch_size = min(self.smooth.batch_size, sampler.batch_size)  # keep a size that fitted
        c_a = int(selection.argmax())
        _, radius, ok = decide(float(clopper_pearson_lower_complement(int(estimation[c_a]), self.n_max,
                                                                     self.alpha)), self.smooth.sigma)
        self.rows.append(_row(idx, label, c_a if ok else ABSTAIN, radius, time.perf_counter() - t0))
        return True


def _row(idx: int, label: int, prediction: int, radius: float, seconds: float) -> LogRow:
    correct = int(prediction == label and prediction != ABSTAIN)
    return int(idx), int(label), int(prediction), float(radius), correct, float(seconds)


__all__ = ["MAX_EXAMPLES", "ExamplesSnapshot", "ExamplesStream"]
