"""Training the denoisers of denoised smoothing (Salman et al. 2020, §3): MSE or the stability objective."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rs_core.checks import check_count, check_sigma
from rs_core.data import dataset_info, dataset_tensors, get_dataset
from rs_core.models.checkpoints import load_checkpoint
from rs_core.models.denoisers import DENOISER_ARCHITECTURES, DENOISER_KIND, load_denoiser
from rs_core.smoothing.seeding import make_generator
from rs_core.training.loop import Checkpointing, EpochReport, Streams, fit


@dataclass
class DenoiserRecipe:
    dataset: str
    sigma: float
    objective: str  # "mse" or "stability"
    epochs: int
    arch: str = ""
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    classifier: str | None = None  # path of the frozen classifier (stability)
    classifier_sha256: str | None = None
    max_train: int | None = None
    max_eval: int = 1000  # test images scored after each epoch (the CSV's MSE and agreement columns)
    init: str | None = None  # path of a denoiser to start from (Salman et al.'s "Stab+MSE": stability after MSE)
    init_sha256: str | None = None


def _loss(denoiser: nn.Module, classifier: nn.Module | None, x: torch.Tensor, recipe: DenoiserRecipe,
          gen: torch.Generator) -> torch.Tensor:
    noisy = x + torch.randn(x.shape, generator=gen, device=x.device) * recipe.sigma
    out = denoiser(noisy)
    if recipe.objective == "mse":
        return F.mse_loss(out, x, reduction="sum") / len(x)
    with torch.no_grad():
        target = classifier(x).argmax(1)  # f(x): what f says on the clean image
    return F.cross_entropy(classifier(out), target)


def train_denoiser(recipe: DenoiserRecipe, out: str | Path, *, device: str = "cpu", resume: bool = False,
                   progress: bool = True, log=sys.stderr, stop_after: int | None = None) -> dict[str, Any]:
    """Train a DnCNN for ``recipe.sigma`` on ``recipe.dataset`` and write ``out`` (+ ``train_log.csv`` beside it).

    ``objective="mse"``: ‖D(x + ε) − x‖²; ``"stability"``: cross-entropy between f(D(x + ε)) and f's class on the
    clean x, through the frozen classifier ``recipe.classifier`` (Salman et al. 2020, §3). Seeded (shuffling and
    noise generators), resumable after any epoch with ``resume=True``; ``stop_after=k`` ends this run after epoch
    k (a later ``resume=True`` continues exactly as if it had not stopped). Returns the checkpoint's metadata.
    """
    recipe.sigma = check_sigma(recipe.sigma)
    check_count(recipe.epochs, "epochs")
    check_count(recipe.batch_size, "batch_size")
    if recipe.objective not in ("mse", "stability"):
        raise ValueError(f"objective: must be 'mse' or 'stability', got {recipe.objective!r}")
    info = dataset_info(recipe.dataset)
    recipe.arch = recipe.arch or ("dncnn_mnist" if info.input_shape[0] == 1 else "dncnn_cifar")
    if recipe.arch not in DENOISER_ARCHITECTURES:
        raise ValueError(f"arch: unknown denoiser {recipe.arch!r}; known: {', '.join(DENOISER_ARCHITECTURES)}")
    dev = torch.device(device)
    classifier = None
    if recipe.objective == "stability":
        if not recipe.classifier:
            raise ValueError("classifier: the stability objective needs the frozen classifier (--classifier)")
        loaded = load_checkpoint(recipe.classifier, dev)
        if tuple(loaded.input_shape) != tuple(info.input_shape):
            raise ValueError(f"classifier: takes {tuple(loaded.input_shape)} inputs, {recipe.dataset} has "
                             f"{info.input_shape}")
        classifier = loaded.model.eval()
        for p in classifier.parameters():
            p.requires_grad_(False)
        recipe.classifier_sha256 = loaded.sha256
    check_count(recipe.max_eval, "max_eval")
    x_train = dataset_tensors(get_dataset(recipe.dataset, "train"), recipe.max_train)[0]
    x_test = dataset_tensors(get_dataset(recipe.dataset, "test"), recipe.max_eval)[0]

    torch.manual_seed(recipe.seed)  # weight initialization: the global generator, seeded with the seed itself
    model = DENOISER_ARCHITECTURES[recipe.arch][0](0).to(dev)
    if recipe.init:
        try:
            start = load_denoiser(recipe.init, dev)
        except ValueError as e:
            raise ValueError(f"init: {e}") from None
        if start.arch != recipe.arch:
            raise ValueError(f"init: {Path(recipe.init).name} is a {start.arch}, this recipe trains a {recipe.arch}")
        model.load_state_dict(start.model.state_dict())
        recipe.init_sha256 = start.sha256
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = recipe.epochs * math.ceil(len(x_train) / recipe.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    def loss(batch: tuple[torch.Tensor, ...], streams: Streams) -> torch.Tensor:
        return _loss(model, classifier, batch[0].to(dev), recipe, streams.noise)

    def report(epoch: int, train_loss: float) -> EpochReport:
        model.eval()
        noisy_mse, denoised_mse, agreement = evaluate_denoiser(model, x_test, recipe.sigma, dev, classifier)
        return EpochReport(
            row=[f"{opt.param_groups[0]['lr']:.6f}", f"{train_loss:.5f}", f"{noisy_mse:.5f}", f"{denoised_mse:.5f}",
                 "" if agreement is None else f"{agreement:.4f}"],
            message=f"loss {train_loss:.5f}, test MSE per pixel {noisy_mse:.5f} noisy → {denoised_mse:.5f} denoised"
                    + ("" if agreement is None else f", f agrees {agreement:.4f}"),
            meta={"kind": DENOISER_KIND, "dataset": recipe.dataset, "sigma": recipe.sigma,
                  "input_shape": list(info.input_shape), "objective": recipe.objective, "recipe": asdict(recipe),
                  "test": {"mse_noisy": noisy_mse, "mse_denoised": denoised_mse,
                           "classifier_agreement": agreement, "n_eval": len(x_test)},
                  "torch": str(torch.__version__), "device": str(dev)})

    header = ["lr", "train_loss", "test_mse_noisy", "test_mse_denoised", "test_agreement"]
    return fit(model, (x_train,), loss, opt, sched, epochs=recipe.epochs, batch_size=recipe.batch_size,
               seed=recipe.seed, device=dev, report=report,
               checkpoint=Checkpointing(Path(out), recipe.arch, header, asdict(recipe), resume=resume),
               stop_after=stop_after, progress=progress, log=log).meta


@torch.inference_mode()
def evaluate_denoiser(denoiser: nn.Module, x: torch.Tensor, sigma: float, device: torch.device,
                      classifier: nn.Module | None = None, seed: int = 7,
                      batch_size: int = 500) -> tuple[float, float, float | None]:
    """Mean squared error per pixel of x + ε and of D(x + ε) against x (one noise draw each, seeded), and — with a
    classifier — how often f(D(x + ε)) equals f(x)."""
    gen = make_generator(seed, device)
    noisy_se = denoised_se = 0.0
    agree = 0
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size].to(device)
        noisy = xb + torch.randn(xb.shape, generator=gen, device=device) * sigma
        out = denoiser(noisy)
        noisy_se += float(((noisy - xb) ** 2).sum())
        denoised_se += float(((out - xb) ** 2).sum())
        if classifier is not None:
            agree += int((classifier(out).argmax(1) == classifier(xb).argmax(1)).sum())
    n = x.numel()
    return noisy_se / n, denoised_se / n, (agree / len(x) if classifier is not None else None)
