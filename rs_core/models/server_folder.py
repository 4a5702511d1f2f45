"""The server's model folder (``RS_MODELS_DIR``): big models an administrator puts where the app can list them.

Uploads are limited in size (Streamlit's ``server.maxUploadSize``); a folder on the server is not. Every file
with a model extension (:data:`rs_core.models.formats.EXTENSIONS`) up to two folders deep is listed; a sidecar
``<file>.json`` may declare what the file does not (the keyword arguments of :func:`rs_core.models.formats.load_model`:
``arch``, ``input_size``, ``resize``, ``mean``, ``std``, ``normalize``, ``class_names`` — a list, ``"imagenet"``
or a file name in the same folder — and a ``label``). TorchScript is not loaded from the folder either: the app
never runs code from a model file.

>>> import tempfile, pathlib, json
>>> d = pathlib.Path(tempfile.mkdtemp()); (d / "r50.onnx").write_bytes(b"")
0
>>> _ = (d / "r50.onnx.json").write_text(json.dumps({"label": "ResNet-50", "input_size": 224}))
>>> [(m.id, m.label, m.options) for m in folder_models(d)]
[('server:r50.onnx', 'ResNet-50 (server)', {'input_size': 224})]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rs_core.models.formats import EXTENSIONS

ENV = "RS_MODELS_DIR"
PREFIX = "server:"
OPTION_KEYS = ("arch", "num_classes", "input_size", "resize", "mean", "std", "normalize", "class_names")


@dataclass(frozen=True)
class FolderModel:
    id: str  # "server:<path relative to the folder>"
    path: Path
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # an unreadable sidecar: shown, and the file is not loaded


def models_dir() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else None


def folder_models(root: str | os.PathLike | None = None) -> list[FolderModel]:
    """The folder's model files (sorted), each with its sidecar's options; [] when there is no folder."""
    root = Path(root) if root is not None else models_dir()
    if root is None or not root.is_dir():
        return []
    found = []
    for path in sorted(p for depth in ("*", "*/*", "*/*/*") for p in root.glob(depth)):
        if not path.is_file() or not path.name.lower().endswith(EXTENSIONS) or path.name.endswith(".json"):
            continue
        rel = path.relative_to(root).as_posix()
        options, problem, label = {}, None, rel
        sidecar = path.with_name(path.name + ".json")
        if sidecar.is_file():
            try:
                raw = json.loads(sidecar.read_text(encoding="utf-8"))
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
                label = str(raw.get("label") or rel)[:120]
                options = {k: raw[k] for k in OPTION_KEYS if k in raw}
                names = options.get("class_names")
                if isinstance(names, str) and names.lower() != "imagenet":
                    options["class_names"] = str(path.parent / Path(names).name)  # only files beside the model
            except (OSError, ValueError) as err:
                problem = f"{sidecar.name}: {str(err)[:200]}"
        found.append(FolderModel(PREFIX + rel, path, f"{label} (server)", options, problem))
    return found


def find_folder_model(model_id: str) -> FolderModel | None:
    return next((m for m in folder_models() if m.id == model_id), None)
