"""One training loop, :func:`fit`, behind every model rs_core trains: base classifiers
(:mod:`rs_core.training.classifier`), denoisers (:mod:`rs_core.training.denoiser`), and dual RS's σ-estimator and
expert fine-tuning (:mod:`rs_core.dual.estimator`).

What the loop does, epoch after epoch: a permutation of the training examples from the seeded shuffle generator,
batches in that order, the caller's loss on each (it draws its noise from the seeded noise generator, and its
augmentation from the augment generator), an optimizer step and a scheduler step per batch, then — when the caller
asks for it — an evaluation, one CSV row and a checkpoint. Mid-run checkpoints hold the optimizer, scheduler and
generator states, so a run resumed after epoch k continues exactly as if it had not stopped; the last checkpoint is
weights and metadata only. The σ-estimator and fine-tuning train in memory: no checkpoint, no CSV.

The generators' seeds are derived from the recipe's seed by :mod:`rs_core.smoothing.seeding`
(:attr:`~rs_core.smoothing.seeding.SeedPath.TRAIN_SHUFFLE`, ``TRAIN_NOISE``, ``TRAIN_AUGMENT``).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rs_core.checks import check_count
from rs_core.models.checkpoints import save_checkpoint
from rs_core.smoothing.seeding import SeedPath, derive_seed, make_generator


@dataclass
class Streams:
    """The seeded random streams of a training run.

    >>> a, b = Streams.seeded(0, "cpu"), Streams.seeded(0, "cpu")
    >>> bool(torch.equal(torch.randperm(5, generator=a.shuffle), torch.randperm(5, generator=b.shuffle)))
    True
    """

    shuffle: torch.Generator  # CPU: the order of the examples, one permutation per epoch
    noise: torch.Generator    # the training device: Gaussian noise of the batches
    augment: torch.Generator  # CPU: random crops and flips

    @classmethod
    def seeded(cls, seed: int, device: str | torch.device = "cpu") -> Streams:
        """The three streams of a run seeded with ``seed`` (``derive_seed(seed, SeedPath.TRAIN_*)``)."""
        return cls(shuffle=make_generator(derive_seed(seed, SeedPath.TRAIN_SHUFFLE)),
                   noise=make_generator(derive_seed(seed, SeedPath.TRAIN_NOISE), device),
                   augment=make_generator(derive_seed(seed, SeedPath.TRAIN_AUGMENT)))

    def state(self) -> dict[str, torch.Tensor]:
        """The generators' states (CPU tensors), as a checkpoint stores them under ``rng``."""
        return {"shuffle": self.shuffle.get_state(), "noise": self.noise.get_state().cpu(),
                "augment": self.augment.get_state()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the states saved by :meth:`state` (those present: older checkpoints may lack ``augment``)."""
        for name, value in state.items():
            if name in ("shuffle", "noise", "augment"):
                getattr(self, name).set_state(value.cpu())


@dataclass
class EpochReport:
    """What the caller's per-epoch evaluation reports to :func:`fit`.

    ``row``: the CSV cells after ``epoch`` and before ``seconds`` (the loop writes those two); ``message``: printed
    after ``epoch k:`` (the loop appends the epoch's seconds); ``meta``: the checkpoint's metadata (the loop adds
    ``train_seconds`` and ``epochs_done``).
    """

    row: list[Any] = field(default_factory=list)
    message: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Checkpointing:
    """Where and how :func:`fit` writes its files: the checkpoint ``path`` (architecture name ``arch``), and
    ``train_log.csv`` beside it with the columns ``header``. ``recipe`` is stored in the metadata; ``resume=True``
    continues from ``path`` if it exists, and refuses one written with another recipe."""

    path: Path
    arch: str
    header: Sequence[str]
    recipe: dict[str, Any]
    resume: bool = False
    # Applied to a stored recipe before it is compared with ``recipe``: fills in fields added since it was written,
    # at the values that run used, so an older mid-run checkpoint still resumes.
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def csv_path(self) -> Path:
        return Path(self.path).with_name("train_log.csv")


@dataclass
class FitResult:
    """What :func:`fit` did: the last epoch's metadata (as written in the checkpoint), the mean training loss of
    each epoch run in this call, the epochs done in all (resumed ones included) and the training seconds in all."""

    meta: dict[str, Any]
    losses: list[float]
    epochs_done: int
    seconds: float


def progress_bar(total: int, desc: str, enabled: bool, log=sys.stderr):
    """A tqdm bar of ``total`` steps on ``log`` that disappears when done; silent when not ``enabled``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=log, leave=False, mininterval=1.0, disable=not enabled)


Batch = tuple[torch.Tensor, ...]


def fit(model: nn.Module, data: Sequence[torch.Tensor], loss: Callable[[Batch, Streams], torch.Tensor],
        optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
        epochs: int, batch_size: int, seed: int, device: str | torch.device = "cpu",
        report: Callable[[int, float], EpochReport] | None = None, checkpoint: Checkpointing | None = None,
        stop_after: int | None = None, progress: bool = True, log=sys.stderr, desc: str = "epoch") -> FitResult:
    """Train ``model`` for ``epochs`` epochs over ``data`` (tensors of equal length, indexed together, on the CPU).

    Each epoch: ``model.train()``, a permutation from the shuffle stream, then for each batch (a tuple with the
    rows of every tensor of ``data``, on the CPU) ``loss(batch, streams)``, ``optimizer.zero_grad``,
    ``backward``, ``optimizer.step`` and ``scheduler.step``. After the batches, ``report(epoch, mean_loss)`` (epoch
    counted from 1) evaluates; it is printed, and with ``checkpoint`` written as a CSV row and a checkpoint —
    mid-run with the optimizer, scheduler and generator states, after the last epoch weights and metadata only.

    ``stop_after=k`` ends this call after epoch k; a later call with ``checkpoint.resume=True`` continues exactly
    as if it had not stopped (same weights, same CSV). Without ``checkpoint`` nothing is written.
    """
    epochs = check_count(epochs, "epochs")
    batch_size = check_count(batch_size, "batch_size")
    last = epochs if stop_after is None else min(epochs, check_count(stop_after, "stop_after"))
    if checkpoint is not None and report is None:
        raise ValueError("report: a checkpointed run needs a per-epoch report (its metadata and CSV row)")
    dev = torch.device(device)
    streams = Streams.seeded(seed, dev)
    n = len(data[0])
    steps = math.ceil(n / batch_size)
    start_epoch, elapsed, meta = 0, 0.0, {}
    if checkpoint is not None:
        out = Path(checkpoint.path)
        if checkpoint.resume and out.exists():
            state = torch.load(out, map_location=dev, weights_only=True)
            stored = state.get("meta", {}).get("recipe")
            if stored is not None and checkpoint.upgrade is not None:
                stored = checkpoint.upgrade(stored)
            if stored != checkpoint.recipe:
                raise ValueError(f"resume: {out} was trained with another recipe; remove it or drop --resume")
            if int(state["epoch"]) >= epochs:
                print(f"{out} has finished all {epochs} epochs; nothing to resume", file=log)
                return FitResult(state["meta"], [], int(state["epoch"]), float(state["meta"].get("train_seconds", 0)))
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            streams.load_state(state["rng"])
            start_epoch, elapsed, meta = int(state["epoch"]), float(state["meta"]["train_seconds"]), state["meta"]
            print(f"resuming {out} after epoch {start_epoch}", file=log)
        else:
            # Not resuming from a checkpoint: this run starts at epoch 1, so a CSV already beside it belongs to an
            # earlier run (even with resume=True when its checkpoint is gone) and is started afresh; appending to it
            # would mix two runs' rows under one checkpoint.
            checkpoint.csv_path.parent.mkdir(parents=True, exist_ok=True)
            with open(checkpoint.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(["epoch", *checkpoint.header, "seconds"])
    losses: list[float] = []
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=streams.shuffle)
        total, seen = 0.0, 0
        bar = progress_bar(steps, f"{desc} {epoch + 1}/{epochs}", progress, log)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            value = loss(tuple(t[idx] for t in data), streams)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += float(value.detach()) * len(idx)
            seen += len(idx)
            bar.update(1)
        bar.close()
        losses.append(total / seen)
        epoch_report = report(epoch + 1, total / seen) if report is not None else None
        elapsed += time.perf_counter() - t0
        if epoch_report is None:
            continue
        meta = {**epoch_report.meta, "train_seconds": round(elapsed, 1), "epochs_done": epoch + 1}
        if checkpoint is not None:
            with open(checkpoint.csv_path, "a", newline="") as f:
                csv.writer(f).writerow([epoch + 1, *epoch_report.row, f"{time.perf_counter() - t0:.1f}"])
        print(f"epoch {epoch + 1}: {epoch_report.message}, {time.perf_counter() - t0:.0f}s", file=log, flush=True)
        if checkpoint is None:
            continue
        if epoch + 1 < epochs:  # mid-run: keep what resuming needs
            save_checkpoint(checkpoint.path, model, checkpoint.arch, epoch=epoch + 1,
                            optimizer=optimizer.state_dict(), meta=meta,
                            extra={"scheduler": scheduler.state_dict() if scheduler is not None else None,
                                   "rng": streams.state()})
        else:  # finished: weights and metadata only, half the size
            save_checkpoint(checkpoint.path, model, checkpoint.arch, epoch=epoch + 1, meta=meta)
    return FitResult(meta, losses, max(start_epoch, last), round(elapsed, 1))
