"""Training base classifiers with Gaussian noise augmentation (Cohen et al. §3.3, App. F).

Every batch gets fresh noise N(0, σ²I) at the σ the model will be certified
at. Optional consistency regularization (Jeong & Shin 2020): two noisy copies
per image, cross-entropy on both, plus λ·KL(p̄ ‖ p_i) and η·H(p̄) on their
softmax outputs p_i and mean p̄.

Seeded (initialization, shuffling, noise), one CSV row per epoch beside the
checkpoint, and resumable: the checkpoint written after each epoch holds the
optimizer, schedule and generator states.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rs_core.checks import check_count, check_sigma
from rs_core.data import dataset_info, get_dataset
from rs_core.models.architectures import ARCHITECTURES, ROUTERS, get_architecture
from rs_core.models.checkpoints import save_checkpoint


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
    consistency: float = 0.0  # λ of Jeong & Shin (2020); 0 = plain Gaussian augmentation
    entropy: float = 0.5      # η, used only with consistency > 0
    max_train: int | None = None


def _tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole data set as uint8-range float tensors, read once (fast batches afterwards)."""
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


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
             seed: int = 1, batch_size: int = 1000) -> tuple[float, float]:
    """Clean accuracy and accuracy under one draw of N(0, σ²I) noise per image."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    clean = noisy = 0
    for s in range(0, len(y), batch_size):
        xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)
        clean += int((model(xb).argmax(1) == yb).sum())
        noise = torch.randn(xb.shape, generator=gen, device=device) * sigma
        noisy += int((model(xb + noise).argmax(1) == yb).sum())
    return clean / len(y), noisy / len(y)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    if recipe.consistency <= 0:
        noise = torch.randn(x.shape, generator=gen, device=x.device) * recipe.sigma
        return F.cross_entropy(model(x + noise), y)
    m = 2
    noisy = x.repeat(m, 1, 1, 1)
    noisy = noisy + torch.randn(noisy.shape, generator=gen, device=x.device) * recipe.sigma
    logits = model(noisy).view(m, x.shape[0], -1)
    ce = sum(F.cross_entropy(logits[i], y) for i in range(m)) / m
    log_p = F.log_softmax(logits, dim=2)
    p_mean = log_p.exp().mean(0).clamp_min(1e-12)
    kl = sum(F.kl_div(log_p[i], p_mean, reduction="batchmean") for i in range(m)) / m
    ent = -(p_mean * p_mean.log()).sum(1).mean()
    return ce + recipe.consistency * kl + recipe.entropy * ent


def train(recipe: Recipe, out: str | Path, *, device: str = "cpu", resume: bool = False,
          progress: bool = True, log=sys.stderr, download: bool = False) -> dict[str, Any]:
    """Train ``recipe.arch`` on ``recipe.dataset`` with noise σ and write ``out`` (+ ``out``'s CSV log).

    Returns the metadata stored in the checkpoint.
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
    out = Path(out)
    csv_path = out.with_name("train_log.csv")
    dev = torch.device(device)

    x_train, y_train = _tensors(get_dataset(recipe.dataset, "train", download=download))
    if recipe.max_train:
        x_train, y_train = x_train[:recipe.max_train], y_train[:recipe.max_train]
    x_test, y_test = _tensors(get_dataset(recipe.dataset, "test", download=download))
    x_test, y_test = x_test[:2000], y_test[:2000]

    torch.manual_seed(recipe.seed)
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
    shuffle_gen = torch.Generator().manual_seed(recipe.seed + 1)
    noise_gen = torch.Generator(device=dev).manual_seed(recipe.seed + 2)
    aug_gen = torch.Generator().manual_seed(recipe.seed + 3)
    start_epoch, elapsed = 0, 0.0

    if resume and out.exists():
        state = torch.load(out, map_location=dev, weights_only=True)
        if state.get("meta", {}).get("recipe") != asdict(recipe):
            raise ValueError(f"resume: {out} was trained with another recipe; remove it or drop --resume")
        if int(state["epoch"]) >= recipe.epochs:
            print(f"{out} has finished all {recipe.epochs} epochs; nothing to resume", file=log)
            return state["meta"]
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        shuffle_gen.set_state(state["rng"]["shuffle"])
        noise_gen.set_state(state["rng"]["noise"].to(noise_gen.get_state().device))
        aug_gen.set_state(state["rng"]["augment"])
        start_epoch, elapsed = int(state["epoch"]), float(state["meta"]["train_seconds"])
        print(f"resuming {out} after epoch {start_epoch}", file=log)
    elif not resume or not csv_path.exists():
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(["epoch", "lr", "train_loss", "train_acc_noisy", "test_acc_clean",
                                    f"test_acc_noise_{recipe.sigma}", "seconds"])

    meta: dict[str, Any] = {}
    for epoch in range(start_epoch, recipe.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(y_train), generator=shuffle_gen)
        total_loss, seen = 0.0, 0
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{recipe.epochs}", progress, log)
        for s in range(0, len(order), recipe.batch_size):
            idx = order[s:s + recipe.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if recipe.augment:
                xb = _augment(xb, aug_gen)
            xb, yb = xb.to(dev), yb.to(dev)
            loss = _loss(model, xb, yb, recipe, noise_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(yb)
            seen += len(yb)
            bar.update(1)
        bar.close()
        _, noisy_train = evaluate(model, x_train[:2000], y_train[:2000], recipe.sigma, dev)
        clean, noisy = evaluate(model, x_test, y_test, recipe.sigma, dev)
        elapsed += time.perf_counter() - t0
        lr = opt.param_groups[0]["lr"]
        with open(csv_path, "a", newline="") as f:
            csv.writer(f).writerow([epoch + 1, f"{lr:.5f}", f"{total_loss / seen:.4f}", f"{noisy_train:.4f}",
                                    f"{clean:.4f}", f"{noisy:.4f}", f"{time.perf_counter() - t0:.1f}"])
        print(f"epoch {epoch + 1}: loss {total_loss / seen:.4f}, test clean {clean:.4f}, "
              f"noisy(σ={recipe.sigma}) {noisy:.4f}, {time.perf_counter() - t0:.0f}s", file=log, flush=True)
        meta = {
            "dataset": recipe.dataset, "class_names": list(info.class_names), "num_classes": info.num_classes,
            "input_shape": list(info.input_shape), "sigma": recipe.sigma,
            "normalization": {"mean": list(info.mean), "std": list(info.std)},
            "recipe": asdict(recipe), "train_seconds": round(elapsed, 1), "epochs_done": epoch + 1,
            "accuracy": {"test_clean": clean, "test_noisy": noisy, "n_eval": len(y_test),
                         "note": f"first {len(y_test)} test images; noisy = one N(0, σ²I) draw each"},
            "torch": str(torch.__version__), "device": str(dev),
        }
        if epoch + 1 < recipe.epochs:  # mid-run: keep what --resume needs
            save_checkpoint(out, model, recipe.arch, epoch=epoch + 1, optimizer=opt.state_dict(), meta=meta,
                            extra={"scheduler": sched.state_dict(),
                                   "rng": {"shuffle": shuffle_gen.get_state(), "noise": noise_gen.get_state().cpu(),
                                           "augment": aug_gen.get_state()}})
        else:  # finished: weights and metadata only, half the size
            save_checkpoint(out, model, recipe.arch, epoch=epoch + 1, meta=meta)
    return meta


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool, log):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=log, leave=False, mininterval=1.0)

