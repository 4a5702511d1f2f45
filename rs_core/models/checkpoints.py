"""Checkpoint files: safe loading, our metadata, and `checkpoints/index.json` (read by :mod:`rs_core.models.shipped`).

Format (Cohen et al.'s, which loads unmodified): ``{'arch': str, 'state_dict': {...},
'epoch': int, 'optimizer': {...}}``; ours adds ``'meta'``, a dict of plain
types (dataset, class names, input shape, training σ, normalization, recipe,
training time, measured accuracy). Files are read with
``torch.load(..., weights_only=True)`` only: a file that holds arbitrary
pickled objects is refused, never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rs_core.data import dataset_info
from rs_core.models.architectures import ANY_INPUT_SIZE, ARCHITECTURES, get_architecture
from rs_core.untrusted import MAX_CHECKPOINT_BYTES, MAX_CLASSES, MAX_INPUT_SIDE, check_size, first_line, reading

CHECKPOINTS_DIR = Path(__file__).resolve().parents[2] / "checkpoints"
INDEX_NAME = "index.json"


@dataclass
class LoadedModel:
    """A model ready for certification (eval mode) with what its file says about it."""

    model: nn.Module
    arch: str
    num_classes: int
    input_shape: tuple[int, int, int]
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: str = ""
    fmt: str = "checkpoint"  # checkpoint, onnx, pt2, safetensors, state dict, torchscript (rs_core.models.formats)
    preprocess: Any = None  # rs_core.models.preprocess.Preprocess: resize/crop policy and normalization (None: as input_shape)
    name: str = ""  # what the user calls the file (an upload's own name)

    @property
    def preprocessing(self):
        """The declared :class:`~rs_core.models.preprocess.Preprocess` (for a checkpoint of ours: its input shape, and the
        model normalizes itself)."""
        from rs_core.models.preprocess import Preprocess

        return self.preprocess if self.preprocess is not None else Preprocess(tuple(self.input_shape))

    def record(self) -> dict[str, Any]:
        """How a certificate names this model: format, file, sha256, architecture, preprocessing, classes."""
        from rs_core.models.preprocess import NORMALIZATION_SOURCES

        names = self.meta.get("class_names")
        return {"format": self.fmt, "file": self.name or Path(self.path).name, "sha256": self.sha256,
                "arch": self.arch, "num_classes": self.num_classes, "preprocess": self.preprocessing.to_dict(),
                # Whether preprocess's mean/std were declared, chosen by the user or assumed (formats.load_model).
                "normalization": NORMALIZATION_SOURCES.get(self.meta.get("normalization_source", "network")),
                "class_names": self.meta.get("class_names_source") or ("from the file" if names else "indices"),
                "sigma_trained": self.sigma, "noise_trained": self.noise}

    @property
    def sigma(self) -> float | None:
        s = self.meta.get("sigma")
        return None if s is None else float(s)

    @property
    def noise(self) -> str | None:
        """The noise the model was trained under ("gaussian" | "laplace" | "uniform"): the file's own word, else
        "gaussian" where the file names a σ (every σ-trained file before noises existed was Gaussian), else None."""
        n = self.meta.get("noise")
        if isinstance(n, str):
            return n
        return "gaussian" if self.sigma is not None else None

    @property
    def class_names(self) -> list[str]:
        names = self.meta.get("class_names")
        return list(names) if names else [str(i) for i in range(self.num_classes)]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unpickler_detail(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    hits = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
    return (hits or lines or [type(err).__name__])[0][:300]


def check_torch_container(path: Path, max_bytes: int, name: str) -> None:
    """Sizes first: the file, and for the zip format every member's declared size.

    ``torch.load`` inflates a deflated zip member completely before comparing it with the
    tensor it should hold, so a few-MB file could claim gigabytes; ``torch.save`` never
    compresses, so only stored members are accepted, and their declared sizes must fit in the
    file. (The legacy format declares storage sizes inside the pickle; torch reserves them
    lazily and checks each against the bytes in the file before touching it, which a test pins.)
    """
    size = path.stat().st_size
    check_size(size, max_bytes, f"checkpoint: {name}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        return
    with reading(f"checkpoint: {name}", "corrupt or truncated zip archive"), zipfile.ZipFile(path) as z:
        members = z.infolist()
    if len(members) > 1_000_000:
        raise ValueError(f"checkpoint: {name} has {len(members):,} archive members")
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED or m.file_size != m.compress_size]
    if packed:
        raise ValueError(f"checkpoint: {name} holds compressed members ({packed[0]!r}), which torch.save never "
                         "writes and which could inflate without limit; re-save it with torch.save")
    if sum(m.file_size for m in members) > size:
        raise ValueError(f"checkpoint: {name} declares more data than the file holds (corrupt or truncated)")


def read_weights_only(path: Path, map_location, max_bytes: int = MAX_CHECKPOINT_BYTES, name: str | None = None) -> Any:
    name = name or path.name
    check_torch_container(path, max_bytes, name)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        if "GLOBAL" in detail.upper():
            raise ValueError(f"checkpoint: refused {name}: it holds Python objects other than tensors and "
                             f"plain containers, which are never unpickled here (only state dicts load): "
                             f"{detail}") from err
        raise ValueError(f"checkpoint: refused {name}: not a readable PyTorch checkpoint (corrupt, truncated, "
                         f"or an arbitrary pickle, which is never unpickled here): {detail}") from err
    except Exception as err:  # KeyError, IndexError, RuntimeError, … from hostile bytes
        raise ValueError(f"checkpoint: {name} is corrupt or truncated, or not a PyTorch file: "
                         f"{first_line(err)}") from err


def _short(value: Any) -> str:
    """A file's key or value as it may appear in a message: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _final_layer_classes(state: dict[str, torch.Tensor]) -> int | None:
    weights = [k for k in state if k.endswith(".weight") and state[k].ndim == 2]
    return int(state[weights[-1]].shape[0]) if weights else None


def check_state_dict(state: Any, name: str) -> dict[str, torch.Tensor]:
    """A state dict: string keys, dense tensors of a real dtype with finite values."""
    if not isinstance(state, dict) or not state:
        raise ValueError(f"checkpoint: {name}: 'state_dict' must be a non-empty dict of tensors")
    for key, t in state.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            raise ValueError(f"checkpoint: {name}: 'state_dict' must map names to tensors, got {_short(key)}: "
                             f"{type(t).__name__}")
        if t.layout != torch.strided or t.is_complex() or t.dtype == torch.bool or t.is_quantized:
            raise ValueError(f"checkpoint: {name}: tensor {_short(key)} has an unsupported kind ({t.dtype}, {t.layout})")
        if t.numel() * t.element_size() > t.untyped_storage().nbytes():
            # An expanded (stride-0) view declares more values than the file holds: refused before any
            # pass over it, since the sizes it declares (and a layer built from them) are unbounded.
            raise ValueError(f"checkpoint: {name}: tensor {_short(key)} declares {tuple(t.shape)} but stores "
                             f"{t.untyped_storage().nbytes():,} bytes")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"checkpoint: {name}: tensor {_short(key)} holds NaN or infinite values")
    return state


def check_meta(meta: Any, name: str) -> dict[str, Any]:
    """The fields of ``meta`` that the tool uses, checked for type and range (the rest is shown as it is)."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint: {name}: 'meta' must be a dict, got {type(meta).__name__}")
    sigma = meta.get("sigma")
    if sigma is not None and (isinstance(sigma, bool) or not isinstance(sigma, (int, float))
                              or not math.isfinite(sigma) or sigma < 0):
        raise ValueError(f"checkpoint: {name}: meta 'sigma' must be a finite number >= 0, got {sigma!r}")
    shape = meta.get("input_shape")
    if shape is not None and (not isinstance(shape, (list, tuple)) or len(shape) != 3
                              or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
                              or shape[0] not in (1, 3) or not all(1 <= v <= MAX_INPUT_SIDE for v in shape[1:])):
        raise ValueError(f"checkpoint: {name}: meta 'input_shape' must be [1 or 3, H, W] with 1 <= H, W <= "
                         f"{MAX_INPUT_SIDE}, got {str(shape)[:80]}")
    k = meta.get("num_classes")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_CLASSES):
        raise ValueError(f"checkpoint: {name}: meta 'num_classes' must be an integer in [1, {MAX_CLASSES}], "
                         f"got {str(k)[:40]}")
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) > MAX_CLASSES
                              or not all(isinstance(c, str) and len(c) <= 200 for c in names)):
        raise ValueError(f"checkpoint: {name}: meta 'class_names' must be a list of strings (at most 200 characters "
                         "each)")
    for key in ("dataset", "kind"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise ValueError(f"checkpoint: {name}: meta {_short(key)} must be a string, got {type(meta[key]).__name__}")
    return meta


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                    arch: str | None = None, num_classes: int | None = None,
                    dataset: str | None = None, max_bytes: int = MAX_CHECKPOINT_BYTES,
                    name: str | None = None) -> LoadedModel:
    """Load a checkpoint safely into a model in eval mode on ``device``.

    ``arch`` is needed only for a bare state dict. When ``num_classes`` or
    ``dataset`` is given, a final layer of another size is refused. Every
    problem with the file raises ``ValueError`` starting ``checkpoint:`` (or
    ``arch:``): sizes are checked before loading, the number of classes before
    a model is built, and every tensor for kind, shape and finite values.
    ``name`` is what messages call the file (default: its file name), e.g. an upload's own name
    rather than the server's temporary file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: no such file: {path}")
    name = name or path.name
    obj = read_weights_only(path, map_location="cpu", max_bytes=max_bytes, name=name)
    if isinstance(obj, dict) and "state_dict" in obj:
        state, arch = obj["state_dict"], obj.get("arch", arch)
        meta = obj.get("meta")
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise ValueError("checkpoint: expected {'arch', 'state_dict', ...} or a bare state dict of tensors, "
                         f"got {type(obj).__name__}")
    state = check_state_dict(state, name)
    meta = check_meta(meta, name)
    if arch is None:
        raise ValueError("arch: the file does not name its architecture; pass arch=…")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {str(arch)[:80]!r} in {name}; known: "
                         f"{', '.join(ARCHITECTURES)}")
    stored = _final_layer_classes(state)
    if stored is not None and not 1 <= stored <= MAX_CLASSES:  # before a layer of that size is built
        raise ValueError(f"checkpoint: {name}: the final layer scores {stored:,} classes (limit {MAX_CLASSES:,})")
    expected = num_classes or (dataset_info(dataset).num_classes if dataset else None) or meta.get("num_classes")
    if expected is not None and stored is not None and stored != expected:
        raise ValueError(f"checkpoint: the model scores {stored} classes, but {expected} are expected"
                         + (f" for {dataset}" if dataset else ""))
    model = get_architecture(arch, stored or expected or 10)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"checkpoint: keys do not match {arch}: missing {missing[:5]}{'…' if len(missing) > 5 else ''}"
                         f", unexpected {[k[:80] for k in unexpected[:5]]}{'…' if len(unexpected) > 5 else ''}")
    bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in own if state[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"checkpoint: tensor shapes do not match {arch}: {'; '.join(bad[:3])}")
    kinds = [k for k in own if state[k].is_floating_point() != own[k].is_floating_point()]
    if kinds:
        raise ValueError(f"checkpoint: tensor {_short(kinds[0])} is {state[kinds[0]].dtype}, the model needs "
                         f"{own[kinds[0]].dtype}")
    model.load_state_dict(state)
    model.to(device).eval()
    input_shape = tuple(meta.get("input_shape") or ARCHITECTURES[arch][1])
    native = ARCHITECTURES[arch][1]
    if input_shape[0] != native[0] or (arch not in ANY_INPUT_SIZE and input_shape != native):
        raise ValueError(f"checkpoint: {name}: meta 'input_shape' {input_shape} does not fit {arch}, which takes "
                         f"{native}")
    return LoadedModel(model=model, arch=arch, num_classes=stored or expected or 10, input_shape=input_shape,
                       meta=meta, sha256=file_sha256(path), path=str(path))


def check_input_fits(loaded: LoadedModel, shape: tuple[int, ...]) -> None:
    """Refuse an input shape the model cannot take, with a clear message."""
    if tuple(shape) != tuple(loaded.input_shape):
        raise ValueError(f"x: the model takes inputs of shape {tuple(loaded.input_shape)}, got {tuple(shape)}")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, arch: str, *, epoch: int,
                    optimizer: dict | None = None, meta: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint that both this tool and Cohen et al.'s code can load (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj: dict[str, Any] = {"arch": arch, "state_dict": model.state_dict(), "epoch": int(epoch)}
    if optimizer is not None:
        obj["optimizer"] = optimizer
    if meta is not None:
        # A JSON round trip leaves plain types only (str subclasses such as
        # torch.__version__ would otherwise pickle as globals that safe loading refuses).
        obj["meta"] = json.loads(json.dumps(meta))
    if extra:
        obj.update(extra)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_index(root: str | os.PathLike = CHECKPOINTS_DIR) -> list[dict[str, Any]]:
    """The shipped checkpoints listed in ``checkpoints/index.json`` (paths relative to it)."""
    index = Path(root) / INDEX_NAME
    if not index.exists():
        return []
    return json.loads(index.read_text())["checkpoints"]


def _number(value: Any) -> str:
    return f"{float(value):g}"


def recipe_summary(recipe: Any) -> str | None:
    """How a model was trained, in a few words, from the ``recipe`` of its metadata (what ``train`` stores): the
    objective with its main hyper-parameters and the epochs, e.g. ``"consistency λ = 5, 20 epochs"``. None when the
    file does not say. A recipe stored before objectives existed reads as it trained (λ > 0: consistency).

    >>> recipe_summary({"sigma": 0.5, "epochs": 20, "consistency": 5.0})
    'consistency λ = 5, 20 epochs'
    >>> recipe_summary({"sigma": 0.5, "epochs": 30, "objective": "smoothadv", "smoothadv_eps": 1.0,
    ...                 "smoothadv_m": 4, "smoothadv_steps": 2})
    'SmoothAdv ε = 1, m = 4, 2 steps, 30 epochs'
    >>> recipe_summary({"sigma": 0.0, "epochs": 10}), recipe_summary(None)
    ('clean, 10 epochs', None)
    """
    if not isinstance(recipe, dict) or "epochs" not in recipe:
        return None
    objective = recipe.get("objective", "gaussian")
    if objective == "gaussian" and float(recipe.get("consistency") or 0) > 0:
        objective = "consistency"
    if float(recipe.get("sigma") or 0) == 0:
        what = "clean"
    elif objective == "consistency":
        what = f"consistency λ = {_number(recipe['consistency'])}"
    elif objective == "smoothadv":
        steps = int(recipe.get("smoothadv_steps", 1))
        what = (f"SmoothAdv ε = {_number(recipe.get('smoothadv_eps', 1.0))}, m = {int(recipe.get('smoothadv_m', 2))}, "
                f"{steps} step{'s' if steps != 1 else ''}")
    elif objective == "macer":
        what = f"MACER λ = {_number(recipe.get('macer_lambda', 16.0))}, k = {int(recipe.get('macer_k', 16))}"
        deferred = int(recipe.get("macer_deferred") or 0)
        if deferred:
            what += f", deferred {deferred} epoch{'s' if deferred != 1 else ''}"
    else:
        what = "Gaussian augmentation"
    epochs = int(recipe["epochs"])
    return f"{what}, {epochs} epoch{'s' if epochs != 1 else ''}"


def write_index(root: str | os.PathLike = CHECKPOINTS_DIR) -> list[dict[str, Any]]:
    """Scan ``root`` for ``*/checkpoint.pth.tar`` and write ``index.json`` from their metadata. An entry marked
    ``"default": true`` by hand (the model a σ family shows when several share a data set, architecture, noise and σ;
    :func:`rs_core.models.shipped.family_models`) keeps its mark."""
    root = Path(root)
    # "default" is a shipping decision, not something a file says: kept from the index being rewritten.
    defaults = {e["path"] for e in read_index(root) if e.get("default")}
    entries = []
    for path in sorted(root.rglob("checkpoint.pth.tar")):
        loaded = load_checkpoint(path)
        m = loaded.meta
        entry = {
            "path": str(path.relative_to(root)), "dataset": m.get("dataset"), "arch": loaded.arch,
            "sigma": m.get("sigma"), "noise": m.get("noise", "gaussian"), "num_classes": loaded.num_classes, "input_shape": list(loaded.input_shape),
            "accuracy": m.get("accuracy"), "sha256": loaded.sha256, "recipe": recipe_summary(m.get("recipe")),
        }
        if m.get("kind") == "denoiser":  # denoised smoothing's D (rs_core.models.denoisers), not a classifier
            init = (m.get("recipe") or {}).get("init")  # trained on from another denoiser (e.g. stability after MSE)
            entry.update(kind="denoiser", objective=m.get("objective"), accuracy=None, num_classes=None, recipe=None,
                         test=m.get("test"), started_from=Path(init).parent.name if init else None)
        if entry["path"] in defaults:
            entry["default"] = True
        entries.append(entry)
    (root / INDEX_NAME).write_text(json.dumps({"checkpoints": entries}, indent=2) + "\n")
    return entries
