"""What ships in ``checkpoints/``: models (from ``index.json``), their certify logs, and dual-RS σ-estimators.

Every shipped thing has a stable ``id`` (its folder below ``checkpoints/``, e.g. ``mnist/mnist_cnn/noise_0.50``)
that user interfaces store and put in links; ``label`` is only for display and is never parsed back.

>>> m = find_model("mnist/mnist_cnn/noise_0.50")
>>> (m.dataset, m.arch, m.sigma)
('mnist', 'mnist_cnn', 0.5)
>>> default_model().id
'mnist/mnist_cnn/noise_0.50'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import CHECKPOINTS_DIR, read_index

SHIPPED_LOG_ALPHA = 0.001  # every shipped log was certified with α = 0.001 (checkpoints/README.md)


@dataclass(frozen=True)
class ShippedModel:
    """One checkpoint of ``checkpoints/index.json``."""

    id: str
    path: Path
    dataset: str
    arch: str
    sigma: float
    num_classes: int
    input_shape: tuple[int, ...]
    noisy_accuracy: float | None
    sha256: str | None

    @property
    def label(self) -> str:
        text = f"{self.dataset} · {self.arch} · σ = {self.sigma:.2f}"
        return text if self.noisy_accuracy is None else f"{text} · noisy acc. {self.noisy_accuracy:.2f}"

    @property
    def short_label(self) -> str:
        return f"{self.dataset} · {self.arch} · σ = {self.sigma:.2f}"


@dataclass(frozen=True)
class ShippedLog:
    """A certify log in Cohen et al.'s format shipped next to a model (``kind="single"``, certified at the
    model's σ) or a σ-estimator (``kind="dual"``)."""

    id: str
    path: Path
    dataset: str
    kind: str
    label: str
    alpha: float = SHIPPED_LOG_ALPHA
    model_id: str | None = None
    sigma: float | None = None


@dataclass(frozen=True)
class ShippedEstimator:
    """A dual-RS σ-estimator (``checkpoints/<dataset>/dual/sigma_estimator.pth.tar``) and the experts it names."""

    id: str
    path: Path
    dataset: str

    @property
    def label(self) -> str:
        return f"{self.dataset} · σ-estimator"


@functools.lru_cache(maxsize=4)
def _models(root: Path) -> tuple[ShippedModel, ...]:
    out = []
    for e in read_index(root):
        path = Path(e["path"])
        out.append(ShippedModel(
            id=str(path.parent.as_posix()), path=root / path, dataset=str(e["dataset"]), arch=str(e["arch"]),
            sigma=float(e["sigma"]), num_classes=int(e["num_classes"]), input_shape=tuple(e["input_shape"]),
            noisy_accuracy=(e.get("accuracy") or {}).get("test_noisy"), sha256=e.get("sha256")))
    return tuple(out)


def shipped_models(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedModel, ...]:
    """The shipped models, in the index's order."""
    return _models(Path(root))


def find_model(model_id: str, root: Path = CHECKPOINTS_DIR) -> ShippedModel | None:
    """The shipped model with this id, or None."""
    return next((m for m in shipped_models(root) if m.id == model_id), None)


def default_model(root: Path = CHECKPOINTS_DIR) -> ShippedModel | None:
    """The model the app opens with: MNIST's CNN at σ = 0.5 if shipped, else the first one."""
    models = shipped_models(root)
    return next((m for m in models if (m.dataset, m.arch, m.sigma) == ("mnist", "mnist_cnn", 0.5)),
                models[0] if models else None)


def shipped_logs(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedLog, ...]:
    """Each shipped model's log (``<model folder>/sigma_<σ>``) and each data set's dual-RS log."""
    root = Path(root)
    logs = []
    for m in shipped_models(root):
        path = m.path.parent / f"sigma_{m.sigma:.2f}"
        if path.is_file():
            logs.append(ShippedLog(id=f"{m.id}/sigma_{m.sigma:.2f}", path=path, dataset=m.dataset, kind="single",
                                   label=m.short_label, model_id=m.id, sigma=m.sigma))
    for est in shipped_estimators(root):
        path = est.path.parent / "certify_dual"
        if path.is_file():
            # Dual randomized smoothing (per-input σ), certified on the same images as the single-σ logs.
            logs.append(ShippedLog(id=f"{est.dataset}/dual/certify_dual", path=path, dataset=est.dataset,
                                   kind="dual", label=f"{est.dataset} · dual RS"))
    return tuple(logs)


def shipped_estimators(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedEstimator, ...]:
    """The shipped σ-estimators, one per data set folder that has one."""
    root = Path(root)
    return tuple(ShippedEstimator(id=f"{p.parent.parent.name}/dual", path=p, dataset=p.parent.parent.name)
                 for p in sorted(root.glob("*/dual/sigma_estimator.pth.tar")))


__all__ = ["SHIPPED_LOG_ALPHA", "ShippedEstimator", "ShippedLog", "ShippedModel", "default_model", "find_model",
           "shipped_estimators", "shipped_logs", "shipped_models"]
