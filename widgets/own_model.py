"""The sidebar's "your model" part: a file (uploaded, or from the server's model folder), what the file does not
declare, and a card of what was understood — before anything runs.

Formats are :func:`rs_core.models.formats.load_model`'s, less TorchScript (code: never loaded from a browser, nor from
the folder). Every typed value is parsed by rs_core's own parsers; an invalid one is shown under its field, and
no model is loaded until it is fixed (nothing runs on a silently different value).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from rs_core.models.checkpoints import LoadedModel
from rs_core.models.formats import EXTENSIONS
from rs_core.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, parse_floats, parse_input_size
from rs_core.models.server_folder import ENV, find_folder_model

NORMS = {"declared": "as the file or architecture declares", "self": "the model normalizes itself",
         "imagenet": "ImageNet mean/std", "custom": "custom mean/std"}
CLASSES = {"declared": "from the file or architecture", "imagenet": "ImageNet-1k (1,000 names)",
           "file": "a file of names (.txt, .json)"}


UPLOAD_ENV = "RS_MODEL_UPLOAD_MB"
DEFAULT_UPLOAD_MB = 200  # a ResNet-50 state dict is ~100 MB, a ViT-B/16 ~330 MB (images keep server.maxUploadSize)


def upload_limit_mb() -> int:
    """The model uploader's limit in MB: $RS_MODEL_UPLOAD_MB, else 200 (an invalid value falls back, said in the
    caption's number)."""
    try:
        value = int(os.environ.get(UPLOAD_ENV, "") or DEFAULT_UPLOAD_MB)
    except ValueError:
        value = DEFAULT_UPLOAD_MB
    return value if value >= 1 else DEFAULT_UPLOAD_MB


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _load(path: str, device: str, options: str, name: str, external_data: bool) -> LoadedModel:
    """One model per (file, device, options), shared by all sessions; a failed load is not cached."""
    from rs_core.models.formats import load_model

    return load_model(path, device=device, name=name, allow_external_data=external_data, trust_code=False,
                      **json.loads(options))


def stash(data: bytes, suffix: str) -> str:
    """An upload as a temp file named by its hash, keeping its extension (the format is read from both)."""
    digest = hashlib.sha256(data).hexdigest()
    path = Path(tempfile.gettempdir()) / f"rslab-upload-{digest}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def _suffix(name: str) -> str:
    low = name.lower()
    return next((ext for ext in EXTENSIONS if low.endswith(ext)), ".pth")


def _options(sb, preset: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form for what a file may not declare; returns (load_model options, problems by field)."""
    problems: dict[str, str] = {}
    opts: dict[str, Any] = dict(preset)
    box = sb.expander("How to read this model", expanded=False)
    arch = box.text_input("Architecture (weights-only files)", key="own_arch", placeholder="from the file",
                          help="torchvision:<name> (e.g. torchvision:resnet50), timm:<name>, or one of RS Lab's "
                               "(mnist_cnn, cifar_resnet110, …). ONNX and .pt2 files carry their own graph.")
    size = box.text_input("Input size (H, H×W or C×H×W)", key="own_input_size", placeholder="from the model",
                          help="Needed only when the file does not fix it (e.g. 224, or 1×28×28 for a grey model)")
    resize = box.text_input("Resize the shorter side to (then center crop)", key="own_resize",
                            placeholder="from the file / architecture", help="e.g. 256 for a 224×224 ImageNet model")
    norm = box.selectbox("Normalization (after the noise)", list(NORMS), format_func=NORMS.get, key="own_norm",
                         help="σ is always in units of the [0, 1] image before normalization")
    classes = box.selectbox("Class names", list(CLASSES), format_func=CLASSES.get, key="own_classes")
    if arch.strip():
        opts["arch"] = arch.strip()
    try:
        if parse_input_size(size) is not None:
            opts["input_size"] = size
    except ValueError as err:
        problems["input_size"] = str(err)
    if resize.strip():
        try:
            opts["resize"] = int(resize.strip())
            if opts["resize"] < 1:
                raise ValueError
        except ValueError:
            problems["resize"] = f"resize: must be a whole number of pixels, got {resize[:20]!r}"
    if norm == "self":
        opts.update(normalize=False, mean=None, std=None)
    elif norm == "imagenet":
        opts.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), normalize=True)
    elif norm == "custom":
        c1, c2 = box.columns(2)
        mean = c1.text_input("mean", key="own_mean", placeholder="0.5,0.5,0.5")
        std = c2.text_input("std", key="own_std", placeholder="0.25,0.25,0.25")
        try:
            m, s_ = parse_floats(mean, "mean"), parse_floats(std, "std")
            if m is None or s_ is None:
                problems["mean"] = "mean: give both mean and std (one number per channel, or one for all)"
            else:
                opts.update(mean=list(m), std=list(s_), normalize=True)
        except ValueError as err:
            problems["mean"] = str(err)
    if classes == "imagenet":
        opts["class_names"] = "imagenet"
    elif classes == "file":
        up = box.file_uploader("Class names file", type=["txt", "json"], key="own_classes_file",
                               help="One name per line, a JSON list, or a JSON object {index: name}")
        if up is None:
            problems["class_names"] = "class_names: upload the file of names (or choose another option)"
        else:
            opts["class_names"] = stash(up.getvalue(), "-" + Path(up.name).name[-60:])
    for why in problems.values():
        box.error(why)
    return opts, problems


def draw(sb, model_id: str, device: str) -> tuple[LoadedModel | None, str | None, str, str | None]:
    """(the loaded model or None, the error to show, its label, the file's own name) for an own or folder model."""
    ss = st.session_state
    preset: dict[str, Any] = {}
    if model_id.startswith("server:"):
        entry = find_folder_model(model_id)
        if entry is None:
            return None, f"{model_id[7:]} is no longer in the server's model folder", model_id, None
        if entry.problem:
            return None, f"{entry.label}: {entry.problem}", entry.label, None
        path, name, preset, external = str(entry.path), entry.path.name, dict(entry.options), True
        label = entry.label
    else:
        limit = upload_limit_mb()
        up = sb.file_uploader(f"Model file (up to {limit:,} MB)", type=[e[1:] for e in EXTENSIONS], key="ckpt_upload",
                              max_upload_size=limit,
                              help="ONNX, torch.export (.pt2), safetensors, or a state dict / checkpoint (.pth, .pt). "
                                   "Read without running code: state dicts with torch.load(weights_only=True), .pt2 "
                                   "programs checked to call aten operators only. TorchScript and pickled models are "
                                   "code and are refused: export to ONNX or .pt2 instead.")
        sb.caption(f"Model uploads are limited to {limit:,} MB (set {UPLOAD_ENV} to change it). A bigger model goes "
                   f"in the server's model folder ({ENV}), which the Model menu lists: no upload needed.")
        if up is not None:  # the last upload is kept while the widget is redrawn empty (a visit to another page)
            ss["ckpt_path"], ss["ckpt_name"] = stash(up.getvalue(), _suffix(up.name)), up.name
        path, name, external = ss.get("ckpt_path"), ss.get("ckpt_name"), False
        label = f"your file {name}" if name else "your file"
    opts, problems = _options(sb, preset)
    if path is None:
        return None, "Upload a model file, or pick one from the menu.", label, None
    if problems:
        return None, "Fix how to read the model: " + "; ".join(problems.values()), label, name
    try:
        loaded = _load(path, device, json.dumps(opts, sort_keys=True), name, external)
    except ValueError as err:  # load_model's contract: every bad file or option is a ValueError naming it
        return None, str(err), label, name  # names the upload (name=…), never the server's temp file
    understood(sb, loaded, loaded.sigma)  # right under the form, before anything runs
    return loaded, None, label, name


def understood(sb, loaded: LoadedModel, train_sigma: float | None, *, own: bool = True) -> None:
    """What RS Lab understood about the model, shown before anything runs."""
    pre = loaded.preprocessing
    names = loaded.meta.get("class_names") or []
    source = loaded.meta.get("class_names_source", "from the file")
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    kind = loaded.fmt if loaded.arch == loaded.fmt or loaded.arch in ("onnx", "torch.export") \
        else f"{loaded.fmt} · `{loaded.arch}`"
    lines = [("**Understood:** " if own else "") + f"{kind} · sha256 `{loaded.sha256[:12]}…`",
             f"input {pre.describe()}",
             f"{loaded.num_classes:,} classes · names: {source}" + (f" ({shown})" if source != "indices" else "")]
    if train_sigma is not None:
        lines.append(f"trained at σ = {train_sigma:g}")
    providers = loaded.meta.get("onnx_providers")
    if providers:
        lines.append("onnxruntime: " + ", ".join(p if isinstance(p, str) else p[0] for p in providers))
    sb.caption("  \n".join(lines))
