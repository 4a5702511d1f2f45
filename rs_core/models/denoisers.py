"""Denoised smoothing (Salman, Sun, Yang, Kapoor & Kolter, NeurIPS 2020): certify an off-the-shelf classifier f
by smoothing f∘D, where D is a denoiser trained for the noise level σ.

The certificate is Cohen et al.'s, unchanged, for the smoothed classifier of the base classifier f∘D: nothing in
CERTIFY or its guarantee depends on how the base classifier is built, so :func:`denoised` returns an ``nn.Module``
usable everywhere a base classifier is (``certify``, ``predict``, streams, jobs, the data-set CLI, dual-RS experts).
σ stays in the units of the [0, 1] image: D sees x + ε, exactly what f would have seen.

* :class:`DnCNN` — a small residual denoiser (Zhang et al. 2017, as Salman et al. use): D(x) = x − body(x);
  registered as ``dncnn_mnist`` (1×28×28) and ``dncnn_cifar`` (3×32×32) in the checkpoint layout of the
  classifiers, with ``meta = {"kind": "denoiser", "sigma": …}``;
* :func:`train_denoiser` — the MSE objective ‖D(x + ε) − x‖² or Salman et al.'s classification ("stability")
  objective CE(f(D(x + ε)), f(x)) through a frozen classifier; seeded, resumable, per-epoch CSV;
* :func:`load_denoiser` — safe loading (``weights_only=True``) that refuses classifiers and other files.

>>> f = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
>>> g = denoised(f, Identity((1, 2, 2)))
>>> x = torch.rand(5, 1, 2, 2)
>>> torch.equal(g(x), f(x))
True
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rs_core.models.architectures import ARCHITECTURES, DENOISERS, DnCNN, dncnn_cifar, dncnn_mnist
from rs_core.models.checkpoints import LoadedModel, load_checkpoint

DENOISER_KIND = "denoiser"


DENOISER_ARCHITECTURES = {k: ARCHITECTURES[k] for k in DENOISERS}


class Identity(nn.Module):
    """The identity denoiser (for tests and as a baseline): smoothing f∘Identity is smoothing f."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Denoised(nn.Module):
    """f∘D as one base classifier: ``forward(x) = classifier(denoiser(x))`` for x [B, C, H, W]."""

    def __init__(self, classifier: nn.Module, denoiser: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.denoiser = denoiser

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.denoiser(x))


def denoised(classifier: nn.Module, denoiser: nn.Module, input_shape: tuple[int, ...] | None = None) -> Denoised:
    """The base classifier f∘D (in eval mode). With ``input_shape`` ([C, H, W]) the denoiser is probed once: it
    must return images of that same shape (a denoiser for other images is refused, naming the shapes)."""
    for name, m in (("classifier", classifier), ("denoiser", denoiser)):
        if not isinstance(m, nn.Module):
            raise ValueError(f"{name}: must be a torch.nn.Module, got {type(m).__name__}")
        if m.training:
            raise ValueError(f"{name}: is in training mode; call .eval() first")
    if input_shape is not None:
        shape = tuple(int(v) for v in input_shape)
        probe = next((p for p in denoiser.parameters()), None)
        x = torch.zeros((1, *shape), device=probe.device if probe is not None else "cpu")
        with torch.inference_mode():
            try:
                out = denoiser(x)
            except RuntimeError as err:
                raise ValueError(f"denoiser: does not take images of shape {shape} "
                                 f"({str(err).splitlines()[0][:200]})") from None
        if tuple(out.shape[1:]) != shape:
            raise ValueError(f"denoiser: returns images of shape {tuple(out.shape[1:])} for inputs of shape {shape}")
    return Denoised(classifier, denoiser).eval()


def load_denoiser(path: str | Path, device: str | torch.device = "cpu", *, name: str | None = None) -> LoadedModel:
    """A denoiser checkpoint (``weights_only=True``); ``ValueError`` naming the file for anything else."""
    name = name or Path(path).name
    loaded = load_checkpoint(path, device, name=name)
    if loaded.meta.get("kind") != DENOISER_KIND or loaded.arch not in DENOISER_ARCHITECTURES:
        raise ValueError(f"denoiser: {name} is not a denoiser (its metadata says kind "
                         f"{loaded.meta.get('kind')!r}, architecture {loaded.arch!r})")
    return loaded


def denoise_experts(experts: dict[float, nn.Module], denoisers: list[LoadedModel],
                    input_shape: tuple[int, ...]) -> tuple[dict[float, nn.Module], list[dict[str, Any]]]:
    """Dual-RS experts with denoisers in front: each denoiser goes before the expert of the σ it was trained for.

    ``experts`` {σ: base classifier}; ``denoisers`` loaded denoisers (:func:`load_denoiser`), at most one per σ.
    Experts without a denoiser stay as they are. Returns the new experts and one record per denoiser (file name,
    sha256, σ) for the log. A denoiser without a trained σ, for a σ no expert has, or two for one σ: ``ValueError``
    naming ``denoisers``.
    """
    out = dict(experts)
    records: list[dict[str, Any]] = []
    for den in denoisers:
        if den.sigma is None:
            raise ValueError(f"denoisers: {Path(den.path).name} records no σ it was trained for; it cannot be "
                             "matched to an expert")
        match = [s for s in experts if math.isclose(s, den.sigma, rel_tol=1e-6)]
        if not match:
            raise ValueError(f"denoisers: {Path(den.path).name} was trained for σ = {den.sigma:g}; the experts' "
                             "noise levels are "
                             f"{', '.join(f'{s:g}' for s in sorted(experts))}")
        if any(r["sigma"] == match[0] for r in records):
            raise ValueError(f"denoisers: two denoisers for σ = {match[0]:g}")
        out[match[0]] = denoised(experts[match[0]], den.model, input_shape)
        records.append({"sigma": match[0], "file": Path(den.path).name, "sha256": den.sha256, "arch": den.arch,
                        "objective": den.meta.get("objective")})
    return out, records


__all__ = [
    "DENOISER_ARCHITECTURES",
    "DENOISER_KIND",
    "Denoised",
    "DnCNN",
    "Identity",
    "denoise_experts",
    "denoised",
    "dncnn_cifar",
    "dncnn_mnist",
    "load_denoiser",
]
