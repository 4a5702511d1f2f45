"""Training base classifiers with noise augmentation (Cohen et al. §3.3, App. F).

Every batch gets fresh noise at the σ the model will be certified at: N(0, σ²I),
or with ``Recipe.noise`` Laplace or uniform noise of standard deviation σ
(:mod:`rs_core.smoothing.noises`, the same law as at certification).
``Recipe.objective`` chooses the loss (:mod:`rs_core.training.objectives`):
``gaussian`` (cross-entropy under noise), ``consistency`` (Jeong & Shin 2020:
two noisy copies, cross-entropy on both, plus λ·KL(p̄ ‖ p_i) and η·H(p̄)),
``smoothadv`` (Salman et al. 2019: PGD on the soft smoothed classifier, then
cross-entropy at the adversarial point) or ``macer`` (Zhai et al. 2020:
cross-entropy of the soft smoothed classifier plus a hinge on its soft radius).
``consistency`` λ > 0 with the default objective selects ``consistency``, as
before objectives existed.

Seeded (initialization, shuffling, noise, augmentation), one CSV row per epoch
beside the checkpoint, and resumable: the checkpoint written after each epoch
holds the optimizer, schedule and generator states (the loop of
:func:`rs_core.training.loop.fit`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rs_core.checks import check_count, check_sigma
from rs_core.data import dataset_info, dataset_tensors, get_dataset
from rs_core.models.architectures import ARCHITECTURES, ROUTERS, get_architecture
from rs_core.smoothing.seeding import make_generator
from rs_core.training.loop import Checkpointing, EpochReport, Streams, fit
from rs_core.training.objectives import ObjectiveSpec, consistency_loss, draw_noise, gaussian_loss


@dataclass
class Recipe:
    dataset: str
    arch: str
    sigma: float
    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seed: int = 0
    augment: bool = False
    noise: str = "gaussian"  # the smoothing noise of σ (rs_core.smoothing.noises): train on the law you certify with
    consistency: float = 0.0  # λ of Jeong & Shin (2020); 0 = plain Gaussian augmentation
    entropy: float = 0.5      # η, used only with consistency > 0
    max_train: int | None = None
    max_eval: int = 2000  # training and test images scored after each epoch (the CSV's accuracy columns)
    # The objective and its hyper-parameters (rs_core.training.objectives.ObjectiveSpec has their meaning). All of
    # them are in the checkpoint's recipe, so a rerun with any of them changed refuses to resume.
    objective: str = "gaussian"
    smoothadv_m: int = 2
    smoothadv_eps: float = 1.0
    smoothadv_steps: int = 1
    smoothadv_warmup: int = 10
    macer_k: int = 16
    macer_lambda: float = 16.0
    macer_gamma: float = 8.0
    macer_beta: float = 16.0
    macer_deferred: int = 0

    def objective_spec(self) -> ObjectiveSpec:
        """The checked objective (``ValueError`` naming a bad hyper-parameter); ``consistency`` λ > 0 with the
        default ``gaussian`` objective means ``consistency``."""
        name = "consistency" if self.objective == "gaussian" and self.consistency > 0 else self.objective
        # Every field of ObjectiveSpec but its name is a field of the recipe of the same name and meaning.
        return ObjectiveSpec(name=name, **{f.name: getattr(self, f.name) for f in fields(ObjectiveSpec)
                                           if f.name != "name"})


def upgrade_recipe(stored: dict[str, Any]) -> dict[str, Any]:
    """A recipe stored before objectives existed, with the fields it lacks at the values it trained with (the
    dataclass defaults; ``objective`` "gaussian", which λ > 0 read as consistency then as now), so that such a mid-run
    checkpoint still resumes."""
    defaults = asdict(Recipe(dataset="", arch="", sigma=0.0, epochs=1))
    return {**{k: v for k, v in defaults.items() if k not in stored}, **stored}


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded batch and random horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for k in range(n):
        i, j = int(offsets[k, 0]), int(offsets[k, 1])
        crop = padded[k, :, i:i + h, j:j + w]
        out[k] = crop.flip(2) if flips[k] else crop
    return out


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, device: torch.device,
             seed: int = 1, batch_size: int = 1000, noise: str = "gaussian") -> tuple[float, float]:
    """Clean accuracy and accuracy under one draw of the noise (standard deviation σ) per image."""
    model.eval()
    gen = make_generator(seed, device)
    clean = noisy = 0
    for s in range(0, len(y), batch_size):
        xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)
        clean += int((model(xb).argmax(1) == yb).sum())
        noisy += int((model(xb + draw_noise(xb.shape, sigma, gen, device, noise)).argmax(1) == yb).sum())
    return clean / len(y), noisy / len(y)


def noisy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, gen: torch.Generator, *,
               consistency: float = 0.0, entropy: float = 0.5) -> torch.Tensor:
    """The training loss under Gaussian noise N(0, σ²I) drawn from ``gen``: cross-entropy on x + ε, or with
    ``consistency`` λ > 0 Jeong & Shin's (2020) objective over two noisy copies — mean cross-entropy
    + λ · mean_i KL(p̄ ‖ p_i) + ``entropy`` η · H(p̄). The other objectives: :class:`ObjectiveSpec`."""
    if consistency <= 0:
        return gaussian_loss(model, x, y, sigma, gen)
    return consistency_loss(model, x, y, sigma, gen, consistency=consistency, entropy=entropy)


def train(recipe: Recipe, out: str | Path, *, device: str = "cpu", resume: bool = False,
          progress: bool = True, log=sys.stderr, download: bool = False,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train ``recipe.arch`` on ``recipe.dataset`` with noise σ and write ``out`` (+ ``train_log.csv`` beside it).

    Resumable after any epoch with ``resume=True``; ``stop_after=k`` ends this run after epoch k. Returns the
    metadata stored in the checkpoint.
    """
    # σ = 0: a clean (noise-free) classifier, e.g. the "off-the-shelf" model of denoised smoothing.
    recipe.sigma = 0.0 if recipe.sigma == 0 and not isinstance(recipe.sigma, bool) else check_sigma(recipe.sigma)
    check_count(recipe.epochs, "epochs")
    check_count(recipe.batch_size, "batch_size")
    info = dataset_info(recipe.dataset)
    if recipe.arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {recipe.arch!r}; known: {', '.join(ARCHITECTURES)}")
    if recipe.arch in ROUTERS:
        raise ValueError(f"arch: {recipe.arch} is a σ-router of dual RS; it is fitted with train-sigma --router "
                         "confidence, not trained")
    if tuple(ARCHITECTURES[recipe.arch][1]) != info.input_shape:
        raise ValueError(f"arch: {recipe.arch} takes {ARCHITECTURES[recipe.arch][1]} inputs, "
                         f"{recipe.dataset} has {info.input_shape}")
    dev = torch.device(device)
    check_count(recipe.max_eval, "max_eval")
    objective = recipe.objective_spec()  # before any data is read: a bad hyper-parameter fails at once
    x_train, y_train = dataset_tensors(get_dataset(recipe.dataset, "train", download=download), recipe.max_train)
    x_test, y_test = dataset_tensors(get_dataset(recipe.dataset, "test", download=download), recipe.max_eval)

    torch.manual_seed(recipe.seed)  # weight initialization: the global generator, seeded with the seed itself
    model = get_architecture(recipe.arch, info.num_classes).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total_steps,
                                                    pct_start=0.15, anneal_strategy="cos")
    elif recipe.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, recipe.epochs // 3) * steps_per_epoch, gamma=0.1)
    else:
        raise ValueError(f"schedule: must be 'cosine' or 'step', got {recipe.schedule!r}")

    def loss(batch: tuple[torch.Tensor, ...], streams: Streams) -> torch.Tensor:
        xb, yb = batch
        if recipe.augment:
            xb = _augment(xb, streams.augment)
        # The 0-based epoch, for SmoothAdv's warm-up of ε, from the scheduler's step count: it is in the checkpoint,
        # so a resumed run warms up exactly as a straight one.
        epoch = sched.last_epoch // steps_per_epoch if sched.last_epoch > 0 else 0
        return objective.loss(model, xb.to(dev), yb.to(dev), recipe.sigma, streams.noise, epoch)

    def report(epoch: int, train_loss: float) -> EpochReport:
        _, noisy_train = evaluate(model, x_train[:recipe.max_eval], y_train[:recipe.max_eval], recipe.sigma, dev,
                                  noise=recipe.noise)
        clean, noisy = evaluate(model, x_test, y_test, recipe.sigma, dev, noise=recipe.noise)
        lr = opt.param_groups[0]["lr"]
        return EpochReport(
            row=[f"{lr:.5f}", f"{train_loss:.4f}", f"{noisy_train:.4f}", f"{clean:.4f}", f"{noisy:.4f}"],
            message=f"loss {train_loss:.4f}, test clean {clean:.4f}, noisy({recipe.noise}, σ={recipe.sigma}) "
                    f"{noisy:.4f}",
            meta={"dataset": recipe.dataset, "class_names": list(info.class_names), "num_classes": info.num_classes,
                  "input_shape": list(info.input_shape), "sigma": recipe.sigma, "noise": recipe.noise,
                  "normalization": {"mean": list(info.mean), "std": list(info.std)}, "recipe": asdict(recipe),
                  "accuracy": {"test_clean": clean, "test_noisy": noisy, "n_eval": len(y_test),
                               "note": f"first {len(y_test)} test images; noisy = one {recipe.noise} noise draw "
                                       f"(standard deviation σ) each"},
                  "torch": str(torch.__version__), "device": str(dev)})

    header = ["lr", "train_loss", "train_acc_noisy", "test_acc_clean", f"test_acc_noise_{recipe.sigma}"]
    result = fit(model, (x_train, y_train), loss, opt, sched, epochs=recipe.epochs, batch_size=recipe.batch_size,
                 seed=recipe.seed, device=dev, report=report,
                 checkpoint=Checkpointing(Path(out), recipe.arch, header, asdict(recipe), resume=resume,
                                            upgrade=upgrade_recipe),
                 stop_after=stop_after, progress=progress, log=log)
    return result.meta

