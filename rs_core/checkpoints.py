"""Checkpoint files: safe loading, our metadata, and the registry of shipped checkpoints.

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
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import dataset_info
from .models import ARCHITECTURES, get_architecture

CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
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

    @property
    def sigma(self) -> float | None:
        s = self.meta.get("sigma")
        return None if s is None else float(s)

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
    return (hits or lines or [type(err).__name__])[0]


def _read(path: Path, map_location) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        if "GLOBAL" in detail.upper():
            raise ValueError(f"checkpoint: refused {path.name}: it holds Python objects other than tensors and "
                             f"plain containers, which are never unpickled here (only state dicts load): "
                             f"{detail}") from err
        raise ValueError(f"checkpoint: refused {path.name}: not a readable PyTorch checkpoint (corrupt, truncated, "
                         f"or an arbitrary pickle, which is never unpickled here): {detail}") from err
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError, IndexError) as err:
        raise ValueError(f"checkpoint: {path.name} is corrupt or truncated, or not a PyTorch file: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err


def _final_layer_classes(state: dict[str, torch.Tensor]) -> int | None:
    weights = [k for k in state if k.endswith(".weight") and state[k].ndim == 2]
    return int(state[weights[-1]].shape[0]) if weights else None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                    arch: str | None = None, num_classes: int | None = None,
                    dataset: str | None = None) -> LoadedModel:
    """Load a checkpoint safely into a model in eval mode on ``device``.

    ``arch`` is needed only for a bare state dict. When ``num_classes`` or
    ``dataset`` is given, a final layer of another size is refused. Every
    problem raises ``ValueError`` starting ``checkpoint:`` (or ``arch:``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: no such file: {path}")
    obj = _read(path, map_location="cpu")
    if isinstance(obj, dict) and "state_dict" in obj:
        state, arch = obj["state_dict"], obj.get("arch", arch)
        meta = obj.get("meta") or {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise ValueError("checkpoint: expected {'arch', 'state_dict', ...} or a bare state dict of tensors, "
                         f"got {type(obj).__name__}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("checkpoint: 'state_dict' must map names to tensors")
    if not isinstance(meta, dict):
        raise ValueError("checkpoint: 'meta' must be a dict")
    if arch is None:
        raise ValueError("arch: the file does not name its architecture; pass arch=…")
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r} in {path.name}; known: {', '.join(ARCHITECTURES)}")
    stored = _final_layer_classes(state)
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
                         f", unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in own if state[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"checkpoint: tensor shapes do not match {arch}: {'; '.join(bad[:3])}")
    model.load_state_dict(state)
    model.to(device).eval()
    input_shape = tuple(meta.get("input_shape") or ARCHITECTURES[arch][1])
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


def write_index(root: str | os.PathLike = CHECKPOINTS_DIR) -> list[dict[str, Any]]:
    """Scan ``root`` for ``*/checkpoint.pth.tar`` and write ``index.json`` from their metadata."""
    root = Path(root)
    entries = []
    for path in sorted(root.rglob("checkpoint.pth.tar")):
        loaded = load_checkpoint(path)
        m = loaded.meta
        entries.append({
            "path": str(path.relative_to(root)), "dataset": m.get("dataset"), "arch": loaded.arch,
            "sigma": m.get("sigma"), "num_classes": loaded.num_classes, "input_shape": list(loaded.input_shape),
            "accuracy": m.get("accuracy"), "sha256": loaded.sha256,
        })
    (root / INDEX_NAME).write_text(json.dumps({"checkpoints": entries}, indent=2) + "\n")
    return entries
