"""Making a σ-estimator for dual RS from its experts, as ``train-sigma`` does: a trained network (labels, training,
optionally Sun et al.'s rounds of expert fine-tuning) or a confidence router (thresholds fitted, nothing trained).

:func:`train_estimator` — label the training inputs with each expert's certified radius (cached, resumable), train
the estimator, then for each of ``rounds`` rounds (Sun, Mao & Vechev, §5): route the training inputs with the
estimator, fine-tune each expert on the inputs routed to it, save the fine-tuned experts next to the estimator
(``experts_round<k>/noise_<σ>/checkpoint.pth.tar``), relabel with them and retrain. The estimator is saved naming
its (last) experts.

:func:`fit_confidence_router` — the largest σ's expert's confidences under σ_e and every expert's true-class shares
on the training inputs; thresholds chosen by the projection of :mod:`rs_core.dual.router`; the router saved.

Both take already-loaded inputs (experts as modules with their files, training images as tensors) and return what
they wrote. Seeds: routing in round k uses ``derive_seed(seed, SeedPath.ROUTE, k)``, fine-tuning expert j (σ
ascending) in round k ``derive_seed(seed, SeedPath.FINETUNE, k, j)``; labels and shares derive theirs per expert
(:data:`~rs_core.smoothing.seeding.SeedPath.EXPERT_VOTES`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rs_core.dual.estimator import (
    cached_expert_radii,
    cap_radii,
    finetune_expert,
    label_ceiling,
    route,
    save_sigma_estimator,
    train_sigma_estimator,
)
from rs_core.dual.router import RouterFit, build_router, expert_confidences, fit_router, true_class_shares
from rs_core.models.checkpoints import load_checkpoint, save_checkpoint
from rs_core.smoothing.seeding import SeedPath, derive_seed


@dataclass
class Written:
    """What :func:`train_estimator` or :func:`fit_confidence_router` wrote: the estimator's file and metadata (as
    saved), the experts it names {σ: file} (fine-tuned ones after rounds) and, for a router, its fit."""

    path: Path
    meta: dict[str, Any]
    expert_paths: dict[float, str | Path]
    fit: RouterFit | None = None


def resolve_label_cap(label_cap: float | str | None, sigmas, label_n: int) -> float | None:
    """The common label ceiling: None (no cap), a radius, or ``"auto"`` — the smallest σ's ceiling at ``label_n``
    samples (:func:`~rs_core.dual.estimator.label_ceiling`), so perfectly classified inputs are not all labelled for
    the largest σ."""
    if label_cap == "auto":
        return label_ceiling(min(sigmas), label_n)
    return label_cap


def train_estimator(experts: Mapping[float, nn.Module], expert_paths: Mapping[float, str | Path], xs: torch.Tensor,
                    ys: torch.Tensor, *, out: str | Path, dataset: str, sigma_e: float, arch: str, label_n: int = 100,
                    cache: str | Path | None = None, epochs: int = 10, batch_size: int = 128, lr: float = 0.05,
                    temperature: float = 1.0, consistency: float = 0.0, copies: int = 2, hard_labels: bool = False,
                    label_cap: float | str | None = None, rounds: int = 0, finetune_epochs: int = 1,
                    finetune_lr: float = 0.01, seed: int = 0, device: str = "cpu", progress: bool = True,
                    log=sys.stderr) -> Written:
    """Label, train (and ``rounds`` times route, fine-tune, relabel, retrain) a σ-estimator; save it as ``out``.

    ``experts`` {σ: model} with their files ``expert_paths`` (fine-tuning starts from the file, whose metadata the
    fine-tuned checkpoint inherits); ``xs``, ``ys`` the training images and classes. Labels are cached in ``cache``
    (default: ``labels_cache`` next to ``out``), so an interrupted run resumes. ``label_cap``: see
    :func:`resolve_label_cap`. The other arguments are :func:`~rs_core.dual.estimator.train_sigma_estimator`'s and
    :func:`~rs_core.dual.estimator.finetune_expert`'s.
    """
    experts, paths = dict(experts), dict(expert_paths)
    out = Path(out)
    cache = Path(cache) if cache else out.parent / "labels_cache"
    cap = resolve_label_cap(label_cap, experts, label_n)

    def labels() -> np.ndarray:
        return cached_expert_radii(cache, experts, xs, ys, label_n, batch_size=1000, seed=seed, progress=progress,
                                   log=log)

    def fit(radii: np.ndarray) -> tuple[nn.Module, dict]:
        return train_sigma_estimator(xs, cap_radii(radii, cap), sigma_e, arch, epochs=epochs, batch_size=batch_size,
                                     lr=lr, temperature=temperature, seed=seed, device=device, progress=progress,
                                     log=log, consistency=consistency, copies=copies, hard_labels=hard_labels)

    radii = labels()
    model, summary = fit(radii)
    history = []
    for k in range(1, rounds + 1):  # Sun et al.'s iterative scheme (their §5)
        sigmas = sorted(experts)
        routed = route(model, xs, sigma_e, sigmas, seed=derive_seed(seed, SeedPath.ROUTE, k))
        for j, s in enumerate(sigmas):
            mine = torch.as_tensor(routed == s)
            src = load_checkpoint(paths[s], device, dataset=dataset)
            tuned = finetune_expert(src.model, xs[mine], ys[mine], s, epochs=finetune_epochs, lr=finetune_lr,
                                    seed=derive_seed(seed, SeedPath.FINETUNE, k, j), device=device)
            path = out.parent / f"experts_round{k}" / f"noise_{s:.2f}" / "checkpoint.pth.tar"
            save_checkpoint(path, tuned, src.arch, epoch=finetune_epochs, meta={
                **{key: v for key, v in src.meta.items() if key != "accuracy"},
                "recipe": {"finetuned_from": str(paths[s]), "from_sha256": src.sha256, "round": k,
                           "routed_images": int(mine.sum()), "epochs": finetune_epochs, "lr": finetune_lr,
                           "noise_sigma": s}})
            experts[s], paths[s] = tuned, path
        history.append({"round": k, "routed_share": [float((routed == s).mean()) for s in sigmas]})
        radii = labels()  # new experts: a new cache key
        model, summary = fit(radii)
    summary["mean_radius_per_sigma"] = cap_radii(radii, cap).mean(0).tolist()
    summary["label_cap"] = cap
    summary["rounds"] = history
    meta = save_sigma_estimator(out, model, arch, dataset=dataset, sigma_e=sigma_e, expert_paths=paths,
                                summary=summary, label_n=label_n)
    return Written(out, meta, paths)


def fit_confidence_router(experts: Mapping[float, nn.Module], expert_paths: Mapping[float, str | Path],
                          xs: torch.Tensor, ys: torch.Tensor, *, out: str | Path, dataset: str, sigma_e: float,
                          arch: str, label_n: int = 100, samples: int = 200, fit_n: int = 10_000,
                          fit_alpha: float = 0.001, seed: int = 0, progress: bool = True, log=sys.stderr) -> Written:
    """Choose a confidence router's thresholds on the training images and save the router as ``out``.

    The largest σ's expert (architecture ``arch``) gives its confidences on ``samples`` noisy copies per image at
    σ_e (seed ``seed``); every expert its true-class share from ``label_n`` samples per image (seeds derived per
    expert from ``seed``); :func:`~rs_core.dual.router.fit_router` picks the thresholds for certify-dual's N =
    ``fit_n`` and α = ``fit_alpha``. Nothing is trained."""
    sigmas = sorted(experts)
    top = sigmas[-1]

    def say(msg: str) -> None:
        if progress:
            print(msg, file=log, flush=True)

    say(f"router: confidences of the σ = {top:g} expert on {len(xs):,} images × {samples} copies at "
        f"σ_e = {sigma_e:g}")
    conf = expert_confidences(experts[top], xs, sigma_e, samples, seed=seed)
    say(f"router: each expert's true-class share from {label_n:,} samples per image")
    shares = true_class_shares(experts, xs, ys, label_n, seed=seed)
    fit = fit_router(conf, shares, sigmas, sigma_e, n=fit_n, alpha=fit_alpha)
    router, router_arch = build_router(experts[top], arch, fit.thresholds)
    summary = {"router": "confidence", "routing_expert_sigma": top, "epochs": 0, "train_images": len(xs),
               "seed": seed, "fit": fit.to_dict()}
    meta = save_sigma_estimator(out, router, router_arch, dataset=dataset, sigma_e=sigma_e,
                                expert_paths=expert_paths, summary=summary, label_n=label_n)
    return Written(Path(out), meta, dict(expert_paths), fit)
