"""What ships in ``checkpoints/``: models (from ``index.json``), their certify logs, and dual-RS σ-estimators.

Every shipped thing has a stable ``id`` (its folder below ``checkpoints/``, e.g. ``mnist/mnist_cnn/noise_0.50``)
that user interfaces store and put in links; ``label`` is only for display and is never parsed back.

>>> m = find_model("mnist/mnist_cnn/noise_0.50")
>>> (m.dataset, m.arch, m.sigma)
('mnist', 'mnist_cnn', 0.5)
>>> default_model().id
'mnist/mnist_cnn/smoothadv_0.50'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from rs_core.models.checkpoints import CHECKPOINTS_DIR, read_index

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
    noise: str = "gaussian"  # the noise it was trained under (rs_core.smoothing.noises), and certifies best with
    recipe: str | None = None  # how it was trained, in words (rs_core.models.checkpoints.recipe_summary)
    default: bool = False  # the index marks it as its σ's model where several share (data set, arch, noise, σ)

    @property
    def label(self) -> str:
        """The model menu's text: data set, architecture, σ, the training recipe and the card's noisy accuracy."""
        text = self.short_label
        if self.recipe and self.sigma != 0:
            text = f"{text} · {self.recipe}"
        return text if self.noisy_accuracy is None or self.sigma == 0 else f"{text} · noisy acc. {self.noisy_accuracy:.2f}"

    @property
    def short_label(self) -> str:
        if self.sigma == 0:
            return f"{self.dataset} · {self.arch} · clean (no noise in training)"
        noise = "" if self.noise == "gaussian" else f"{self.noise} "
        return f"{self.dataset} · {self.arch} · {noise}σ = {self.sigma:.2f}"


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
    noise: str = "gaussian"  # the smoothing noise and the norm of the radii (the log's .meta.json says both)
    norm: str = "l2"


@dataclass(frozen=True)
class ShippedEstimator:
    """A dual-RS σ-estimator (``checkpoints/<dataset>/dual/sigma_estimator.pth.tar``) and the experts it names."""

    id: str
    path: Path
    dataset: str

    @property
    def label(self) -> str:
        return f"{self.dataset} · σ-estimator"


@dataclass(frozen=True)
class ShippedDenoiser:
    """A denoiser of ``checkpoints/index.json`` (``kind: denoiser``), for denoised smoothing (rs_core.models.denoisers)."""

    id: str
    path: Path
    dataset: str
    arch: str
    sigma: float
    objective: str
    input_shape: tuple[int, ...]
    sha256: str | None
    started_from: str | None = None  # the denoiser it was trained on from (Salman et al.'s stability after MSE)

    @property
    def label(self) -> str:
        start = f" after {self.started_from}" if self.started_from else ""
        return f"{self.arch} · σ = {self.sigma:.2f} · {self.objective}{start}"


@functools.lru_cache(maxsize=4)
def _denoisers(root: Path) -> tuple[ShippedDenoiser, ...]:
    return tuple(
        ShippedDenoiser(id=Path(e["path"]).parent.as_posix(), path=root / e["path"], dataset=str(e["dataset"]),
                        arch=str(e["arch"]), sigma=float(e["sigma"]), objective=str(e.get("objective")),
                        input_shape=tuple(e["input_shape"]), sha256=e.get("sha256"),
                        started_from=e.get("started_from"))
        for e in read_index(root) if e.get("kind") == "denoiser")


def shipped_denoisers(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedDenoiser, ...]:
    """The shipped denoisers, in the index's order."""
    return _denoisers(Path(root))


def find_denoiser(denoiser_id: str, root: Path = CHECKPOINTS_DIR) -> ShippedDenoiser | None:
    return next((d for d in shipped_denoisers(root) if d.id == denoiser_id), None)


@functools.lru_cache(maxsize=4)
def _models(root: Path) -> tuple[ShippedModel, ...]:
    out = []
    for e in read_index(root):
        if e.get("kind") == "denoiser":
            continue
        path = Path(e["path"])
        out.append(ShippedModel(
            id=str(path.parent.as_posix()), path=root / path, dataset=str(e["dataset"]), arch=str(e["arch"]),
            sigma=float(e["sigma"]), num_classes=int(e["num_classes"]), input_shape=tuple(e["input_shape"]),
            noisy_accuracy=(e.get("accuracy") or {}).get("test_noisy"), sha256=e.get("sha256"),
            noise=str(e.get("noise", "gaussian")), recipe=e.get("recipe"), default=bool(e.get("default"))))
    return tuple(out)


def shipped_models(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedModel, ...]:
    """The shipped models, in the index's order."""
    return _models(Path(root))


def find_model(model_id: str, root: Path = CHECKPOINTS_DIR) -> ShippedModel | None:
    """The shipped model with this id, or None."""
    return next((m for m in shipped_models(root) if m.id == model_id), None)


def _slot(m: ShippedModel) -> tuple[str, str, str, float]:
    return (m.dataset, m.arch, m.noise, m.sigma)


def family_models(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedModel, ...]:
    """The shipped models a σ family is made of (one curve per σ, as Cohen et al.'s figures): for each data set,
    architecture, noise and σ, the model the index marks ``default`` where one is marked, else every model there.
    Models trained by an older recipe stay shipped and selectable; they just do not crowd the default curves."""
    models = shipped_models(root)
    marked = {_slot(m) for m in models if m.default}
    return tuple(m for m in models if m.default or _slot(m) not in marked)


@functools.lru_cache(maxsize=4)
def _menu(root: Path) -> tuple[ShippedModel, ...]:
    return tuple(sorted(_models(root), key=lambda m: (m.dataset, m.arch, m.noise != "gaussian", m.noise, m.sigma,
                                                      not m.default, m.id)))


def menu_models(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedModel, ...]:
    """The shipped models in the order a model menu lists them: by data set and architecture, Gaussian before other
    noises, by σ, and at one σ the model the index marks ``default`` first."""
    return _menu(Path(root))


def default_model(root: Path = CHECKPOINTS_DIR) -> ShippedModel | None:
    """The model the app opens with: MNIST's Gaussian CNN at σ = 0.5 (the one marked ``default`` if several are
    shipped) if there is one, else the first model."""
    models = family_models(root)
    return next((m for m in models if _slot(m) == ("mnist", "mnist_cnn", "gaussian", 0.5)),
                models[0] if models else None)


def shipped_logs(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedLog, ...]:
    """Each shipped model's log (``<model folder>/sigma_<σ>``) and each data set's dual-RS log."""
    root = Path(root)
    logs = []
    models = shipped_models(root)
    for m in models:
        # Where several models share a data set, architecture, noise and σ, their logs' labels say the recipe.
        name = m.short_label
        if m.recipe and sum(_slot(o) == _slot(m) for o in models) > 1:
            name = f"{name} · {m.recipe}"
        for path in sorted(m.path.parent.glob("sigma_*")):
            sigma = _log_sigma(path)
            if sigma is None or not path.is_file():
                continue
            label = name if sigma == m.sigma else f"{name}, smoothed at σ = {sigma:.2f}"
            noise, norm = _log_noise_norm(path)
            if (noise, norm) != ("gaussian", "l2"):
                label = f"{label} · {NORM_NAMES.get(norm, norm)} radius"
            logs.append(ShippedLog(id=f"{m.id}/{path.name}", path=path, dataset=m.dataset, kind="single",
                                   label=label, model_id=m.id, sigma=sigma, noise=noise, norm=norm))
    for d in shipped_denoisers(root):
        for path in sorted(d.path.parent.glob("sigma_*")):
            sigma = _log_sigma(path)
            if sigma is not None and path.is_file():
                logs.append(ShippedLog(id=f"{d.id}/{path.name}", path=path, dataset=d.dataset, kind="denoised",
                                       label=f"{d.dataset} · clean classifier + {d.label} at σ = {sigma:.2f}",
                                       sigma=sigma))
    for est in shipped_estimators(root):
        path = est.path.parent / "certify_dual"
        if path.is_file():
            # Dual randomized smoothing (per-input σ), certified on the same images as the single-σ logs.
            logs.append(ShippedLog(id=f"{est.dataset}/dual/certify_dual", path=path, dataset=est.dataset,
                                   kind="dual", label=f"{est.dataset} · dual RS"))
    return tuple(logs)


NORM_NAMES = {"l2": "ℓ2", "l1": "ℓ1", "linf": "ℓ∞"}


def _log_sigma(path: Path) -> float | None:
    """σ of a log named ``sigma_<σ>`` (our naming, as Cohen et al.'s) or ``sigma_<σ>_<norm>`` (the same noise's
    radii in another norm, e.g. ``sigma_0.50_linf``), None for other files (sidecars such as ``.meta.json``)."""
    if not path.name.startswith("sigma_"):
        return None
    value, _, norm = path.name.removeprefix("sigma_").partition("_")
    if norm and norm not in NORM_NAMES:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _log_noise_norm(path: Path) -> tuple[str, str]:
    """The noise and norm a log's ``.meta.json`` records; a log without them (written before noises existed) is
    Gaussian ℓ2."""
    import json

    meta_path = path.with_name(path.name + ".meta.json")
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (OSError, ValueError):
        meta = {}
    return str(meta.get("noise", "gaussian")), str(meta.get("norm", "l2"))


def shipped_estimators(root: Path = CHECKPOINTS_DIR) -> tuple[ShippedEstimator, ...]:
    """The shipped σ-estimators, one per data set folder that has one."""
    root = Path(root)
    return tuple(ShippedEstimator(id=f"{p.parent.parent.name}/dual", path=p, dataset=p.parent.parent.name)
                 for p in sorted(root.glob("*/dual/sigma_estimator.pth.tar")))


__all__ = ["NORM_NAMES", "SHIPPED_LOG_ALPHA", "ShippedDenoiser", "ShippedEstimator", "ShippedLog", "ShippedModel", "default_model",
           "find_denoiser", "find_model", "menu_models", "shipped_denoisers", "shipped_estimators", "shipped_logs", "shipped_models"]
