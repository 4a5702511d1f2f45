"""One entry point for a user's model file: :func:`load_model`, for every format that cannot run code when loaded.

Formats (detected from the file, not trusted from its name alone):

- **ONNX** (``.onnx``): run by onnxruntime (CPU, or CUDA where its provider is installed), wrapped as an
  ``nn.Module`` (:class:`OnnxModule`) so that sampling, streaming and jobs work unchanged; the noise is still drawn
  by torch. Exactly one float input of rank 4 (``[B, C, H, W]``) is accepted; a fixed batch size is served in chunks.
- **torch.export programs** (``.pt2``). ``torch.export.load`` itself unpickles payloads marked as pickled, evaluates
  symbolic-shape strings with sympy and compiles "guard" code into a Python function, so a ``.pt2`` is *checked
  first* (:func:`check_pt2`): only the members ``torch.export.save`` writes, no pickled weights or constants, no
  custom objects, no guard code, graph nodes that call ``torch.ops.aten`` operators only, and symbolic sizes that
  are plain symbols. What passes can only run aten operators.
- **Weights for a named architecture**: ``torchvision:<name>`` or ``timm:<name>`` (timm optional), or one of ours,
  from ``.safetensors`` or a state dict read with ``torch.load(weights_only=True)``; prefixes such as ``module.``
  (DataParallel), ``model.``, ``_orig_mod.`` (torch.compile) are removed; a mismatch names the keys.
- **Our and Cohen et al.'s checkpoints** (:func:`rs_core.models.checkpoints.load_checkpoint`).
- **TorchScript** is code (its graph may call any registered op, and its file holds Python source): loaded only
  with ``trust_code=True`` (``--trust-code``), never from the app. Pickled modules are never loaded at all.

What the file declares — an ``"rslab"`` JSON entry in ONNX metadata, safetensors metadata or a ``.pt2``'s extra
files (written by :func:`export_model`), or our checkpoints' ``meta`` — and what the weights or graph reveal
(input channels, a fixed input size, the number of classes) are used; the rest is given by the caller. Every
problem raises ``ValueError`` naming the file or the parameter.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rs_core.models.architectures import ARCHITECTURES, get_architecture
from rs_core.models.checkpoints import (
    LoadedModel,
    check_meta,
    check_state_dict,
    check_torch_container,
    file_sha256,
    load_checkpoint,
    read_weights_only,
)
from rs_core.models.preprocess import (
    DECLARED_NORMALIZATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    parse_floats,
    parse_input_size,
)
from rs_core.untrusted import MAX_CHECKPOINT_BYTES, MAX_CLASSES, check_size, first_line, reading

FORMATS = ("onnx", "pt2", "safetensors", "checkpoint", "state dict", "torchscript")
EXTENSIONS = (".onnx", ".pt2", ".safetensors", ".pth", ".pt", ".tar", ".bin", ".ckpt")
META_KEY = "rslab"  # the JSON entry our exports write into a file's own metadata
EXPORT_TO = ("export it to ONNX (torch.onnx.export(model, x, 'model.onnx', dynamo=True, external_data=False)) or "
             "to .pt2 (torch.export.save(torch.export.export(model, (x,)), 'model.pt2')), or save its weights "
             "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors')) and name the architecture "
             "(e.g. torchvision:resnet18)")
_PREFIXES = ("module.", "model.", "_orig_mod.", "1.module.", "1.", "net.", "base_classifier.")
_STATE_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "net")


# --------------------------------------------------------------------------------------------- architectures


def parse_arch(arch: str | None) -> tuple[str, str] | None:
    """``"torchvision:resnet18"`` → ("torchvision", "resnet18"); one of ours → ("builtin", name); None → None."""
    if arch is None or (isinstance(arch, str) and not arch.strip()):
        return None
    if not isinstance(arch, str):
        raise ValueError(f"arch: must be a string such as torchvision:resnet18, got {type(arch).__name__}")
    arch = arch.strip()
    if ":" in arch:
        lib, _, name = arch.partition(":")
        lib = lib.lower()
        if lib not in ("torchvision", "timm") or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,100}", name):
            raise ValueError(f"arch: {arch[:80]!r} is not torchvision:<name>, timm:<name> or one of ours "
                             f"({', '.join(ARCHITECTURES)})")
        return lib, name
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch[:80]!r}; use torchvision:<name>, timm:<name> or one of "
                         f"ours ({', '.join(ARCHITECTURES)})")
    return "builtin", arch


def _timm():
    try:
        import timm
    except ImportError:
        raise ValueError("arch: timm is not installed here; pip install timm (RS Lab never downloads weights: the "
                         "file gives them), or export the model to ONNX") from None
    return timm


def _named_defaults(lib: str, name: str, channels: int) -> dict[str, Any]:
    """What a named architecture's reference weights declare (offline): input size, resize, mean/std, classes."""
    if lib == "torchvision":
        import torchvision.models as tvm

        try:
            weights = tvm.get_model_weights(name).DEFAULT
            tf = weights.transforms()
            return {"input_size": (int(tf.crop_size[0]),) * 2, "resize": int(tf.resize_size[0]),
                    "crop_ratio": tf.resize_size[0] / tf.crop_size[0],
                    "mean": tuple(tf.mean), "std": tuple(tf.std), "imagenet": len(weights.meta["categories"]) == 1000}
        except Exception:  # noqa: BLE001 — an architecture without reference weights: ImageNet conventions
            return {"input_size": (224, 224), "resize": 256, "crop_ratio": 256 / 224, "mean": IMAGENET_MEAN,
                    "std": IMAGENET_STD, "imagenet": True}
    timm = _timm()
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=timm.create_model(name, pretrained=False, num_classes=2, in_chans=channels))
    _, h, w = cfg["input_size"]
    crop = float(cfg.get("crop_pct") or 1.0)
    return {"input_size": (h, w), "resize": int(math.floor(min(h, w) / crop)), "crop_ratio": 1 / crop,
            "mean": tuple(cfg["mean"]),
            "std": tuple(cfg["std"]), "imagenet": True}


def _build_named(lib: str, name: str, num_classes: int, channels: int) -> nn.Module:
    if lib == "torchvision":
        import torchvision.models as tvm

        if name not in tvm.list_models(module=tvm):
            raise ValueError(f"arch: torchvision has no classification model {name!r} (e.g. resnet18, resnet50, "
                             "vit_b_16, convnext_tiny, efficientnet_b0, mobilenet_v3_small)")
        return tvm.get_model(name, weights=None, num_classes=num_classes)
    timm = _timm()
    if not timm.is_model(name):
        raise ValueError(f"arch: timm has no model {name!r}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=channels)


def _strip_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    """Drop a prefix every key shares (``module.`` from DataParallel, ``_orig_mod.`` from torch.compile, …)."""
    for _ in range(4):
        if set(state) <= own or not state:
            break
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                break
        else:
            break
    return state


def _weights_into(model: nn.Module, state: dict[str, torch.Tensor], arch: str, name: str) -> None:
    own = model.state_dict()
    state = _strip_prefixes(state, set(own))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"checkpoint: {name}: the weights do not fit {arch}: missing keys "
                         f"{missing[:5]}{'…' if len(missing) > 5 else ''} (of {len(missing)}), unexpected keys "
                         f"{[k[:80] for k in unexpected[:5]]}{'…' if len(unexpected) > 5 else ''} "
                         f"(of {len(unexpected)})")
    bad = [f"{k}: file {tuple(state[k].shape)} vs {arch} {tuple(own[k].shape)}" for k in own
           if state[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"checkpoint: {name}: tensor shapes do not fit {arch}: {'; '.join(bad[:3])}")
    model.load_state_dict(state)


def _first_conv_channels(state: dict[str, torch.Tensor]) -> int | None:
    for k, t in state.items():
        if k.endswith("weight") and t.ndim == 4:
            return int(t.shape[1])
    return None


def _final_classes(state: dict[str, torch.Tensor]) -> int | None:
    weights = [k for k, t in state.items() if k.endswith("weight") and t.ndim == 2]
    return int(state[weights[-1]].shape[0]) if weights else None


# -------------------------------------------------------------------------------------------------- ONNX


class OnnxModule(nn.Module):
    """An onnxruntime session as a module: [B, C, H, W] float tensors in, [B, K] scores out, on the input's device.

    The inputs go to the host and back (onnxruntime owns its memory); the noise is drawn by torch on the module's
    device (an empty buffer marks it, so :func:`rs_core.models.device.model_device` finds it). A graph with a fixed batch
    size is run in chunks of that size (the last one padded)."""

    def __init__(self, session, input_name: str, fixed_batch: int | None, device: torch.device) -> None:
        super().__init__()
        self.session, self.input_name, self.fixed_batch = session, input_name, fixed_batch
        self.register_buffer("device_marker", torch.empty(0, device=device), persistent=False)
        self.eval()

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        if self.fixed_batch is None:
            out = self.session.run(None, {self.input_name: arr})[0]
        else:
            b, parts = self.fixed_batch, []
            for i in range(0, arr.shape[0], b):
                chunk = arr[i:i + b]
                n = chunk.shape[0]
                if n < b:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
                parts.append(self.session.run(None, {self.input_name: chunk})[0][:n])
            out = np.concatenate(parts)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)


def _onnx_declared(model_proto) -> dict[str, Any]:
    for prop in model_proto.metadata_props:
        if prop.key == META_KEY:
            return _declared_json(prop.value, "ONNX metadata")
    return {}


def _load_onnx(path: Path, name: str, device: torch.device, allow_external_data: bool):
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise ValueError("model: ONNX files need onnxruntime and onnx (pip install onnxruntime onnx)") from None
    from onnx.external_data_helper import uses_external_data

    data = path.read_bytes()
    with reading(f"onnx: {name}", "not a readable ONNX model (corrupt or truncated)"):
        proto = onnx.load_model_from_string(data)
    if not proto.graph.node:
        raise ValueError(f"onnx: {name}: not a readable ONNX model (the graph is empty: corrupt or truncated)")
    external = [t.name for t in proto.graph.initializer if uses_external_data(t)]
    if external and not allow_external_data:
        raise ValueError(f"onnx: {name}: its weights live in separate files ({external[0]!r} …), which an upload "
                         "cannot bring; export with external_data=False, or put both files in the server's model "
                         "folder (RS_MODELS_DIR)")
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"onnx: {name}: the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)[:120]});"
                         " an image classifier takes one, [B, C, H, W]")
    inp = inputs[0]
    tt = inp.type.tensor_type if inp.type.HasField("tensor_type") else None
    if tt is None or tt.elem_type != onnx.TensorProto.FLOAT:
        raise ValueError(f"onnx: {name}: input {inp.name!r} is not a float32 tensor (an image is [B, C, H, W] "
                         "float32)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"onnx: {name}: input {inp.name!r} has rank {len(dims)}; an image input is [B, C, H, W]")
    if dims[1] is not None and dims[1] not in (1, 3):
        raise ValueError(f"onnx: {name}: input {inp.name!r} has {dims[1]} channels; RS Lab certifies grey (1) or RGB "
                         "(3) images")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()  # as many threads as torch uses (and no more)
    try:
        with reading(f"onnx: {name}", "onnxruntime cannot run this graph"):
            session = ort.InferenceSession(str(path) if external else data, options, providers=providers)
    except ValueError as err:  # onnxruntime names the file by its path: never show a server path
        raise ValueError(str(err).replace(str(path.parent), "…").replace(str(path), name)) from None
    module = OnnxModule(session, inp.name, dims[0] if dims[0] and dims[0] > 0 else None, device)
    declared = _onnx_declared(proto)
    found = {"channels": dims[1], "size": tuple(dims[2:]) if all(dims[2:]) else None,
             "onnx_providers": module.providers, "opset": max((o.version for o in proto.opset_import), default=None)}
    return module, declared, found


# --------------------------------------------------------------------------------------------------- .pt2

_PT2_MEMBER = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/model\.json"
    r"|data/weights/(weight_\d+|model_weights_config\.json)|data/constants/(tensor_\d+|model_constants_config\.json)"
    r"|data/sample_inputs/model\.pt|extra/[A-Za-z0-9_.\-]{1,100})")
_SAFE_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+|_operator\.getitem")
_SAFE_EXPR = re.compile(r"-?\d+|Symbol\('[a-z]\d+'(, (positive|integer)=True)*\)")


def _walk(obj: Any, key: str | None = None):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, key)


def check_pt2(path: Path, name: str) -> None:
    """Refuse a ``.pt2`` archive that could make ``torch.export.load`` (or the loaded module) run anything but aten
    operators: unknown members, pickled payloads, custom objects, guard code, non-aten call targets, symbolic
    expressions other than plain symbols. Sizes are checked first (no compressed members)."""
    check_torch_container(path, MAX_CHECKPOINT_BYTES, name)
    with reading(f"pt2: {name}", "not a readable .pt2 archive (corrupt or truncated)"), zipfile.ZipFile(path) as z:
        names = z.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1:
            raise ValueError("several top-level folders")
        root = roots.pop() + "/"
        odd = [n for n in names if not n.endswith("/") and not _PT2_MEMBER.fullmatch(n[len(root):])]
        program = z.read(root + "models/model.json")
        configs = [z.read(n) for n in names if n.endswith("_config.json")]
        samples = z.read(root + "data/sample_inputs/model.pt")
    if odd:
        raise ValueError(f"pt2: {name}: refused: it holds {odd[0][len(root):][:80]!r}, which torch.export.save does "
                         "not write for a plain program (compiled code, pickled or custom objects are never loaded)")
    with reading(f"pt2: {name}", "the program is not valid JSON"):
        program_json = json.loads(program)
        config_json = [json.loads(c) for c in configs]
    for cfg in config_json:
        for fqn, payload in (cfg.get("config") or {}).items():
            if not isinstance(payload, dict) or payload.get("use_pickle") or \
                    not str(payload.get("path_name", "")).startswith(("weight_", "tensor_")):
                raise ValueError(f"pt2: {name}: refused: tensor {str(fqn)[:80]!r} is stored as a pickled or custom "
                                 "object, which is never unpickled here")
    targets, exprs = set(), set()
    for key, value in _walk(program_json):
        if key == "target" and isinstance(value, str):
            targets.add(value)
        elif key == "expr_str" and isinstance(value, str):
            exprs.add(value)
        elif key == "guards_code" and value:
            raise ValueError(f"pt2: {name}: refused: it carries guard code (Python that torch would compile and run)")
        elif key in ("as_custom_obj", "custom_obj_values") and value:
            raise ValueError(f"pt2: {name}: refused: it holds custom (script) objects")
    bad = sorted(t for t in targets if not _SAFE_TARGET.fullmatch(t))
    if bad:
        raise ValueError(f"pt2: {name}: refused: the graph calls {bad[0][:80]!r}; only torch.ops.aten operators are "
                         "run from a .pt2 file here")
    bad = sorted(e for e in exprs if not _SAFE_EXPR.fullmatch(e))
    if bad:
        raise ValueError(f"pt2: {name}: refused: a symbolic size {bad[0][:60]!r} is not a plain symbol (torch would "
                         "evaluate it as Python)")
    with reading(f"pt2: {name}", "its sample inputs are not plain tensors"):
        torch.load(io.BytesIO(samples), map_location="cpu", weights_only=True)


class _Pt2Module(nn.Module):
    """An exported program's module in a plain holder: exported modules refuse ``.eval()``, and have no train mode
    to leave (the graph was traced in the mode it was exported in)."""

    def __init__(self, gm: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "gm", gm)  # not a submodule: Module.eval() would recurse into it and raise
        buffers = [t for t in (*gm.parameters(), *gm.buffers())]
        device = buffers[0].device if buffers else torch.device("cpu")
        self.register_buffer("device_marker", torch.empty(0, device=device), persistent=False)
        self.training = False

    def train(self, mode: bool = True) -> _Pt2Module:
        if mode:
            raise ValueError("model: an exported (.pt2) program runs as exported (eval mode) and cannot train")
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gm(x)


def _load_pt2(path: Path, name: str, device: torch.device):
    check_pt2(path, name)
    extra = {f"{META_KEY}.json": ""}
    with reading(f"pt2: {name}", "torch.export.load could not read it"):
        ep = torch.export.load(str(path), extra_files=extra)
        gm = ep.module().to(device)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"pt2: {name}: the program takes {len(placeholders)} inputs; an image classifier takes one, "
                         "[B, C, H, W]")
    val = placeholders[0].meta.get("val")
    shape = list(getattr(val, "shape", []))
    if len(shape) != 4:
        raise ValueError(f"pt2: {name}: the input has rank {len(shape)}; an image input is [B, C, H, W]")
    static = [int(d) if isinstance(d, int) else None for d in shape]
    if static[0] is not None:
        raise ValueError(f"pt2: {name}: the program was exported for batches of exactly {static[0]}; export it with "
                         "a dynamic batch: dynamic_shapes=({0: torch.export.Dim('batch')},)")
    if static[1] is not None and static[1] not in (1, 3):
        raise ValueError(f"pt2: {name}: the input has {static[1]} channels; RS Lab certifies grey (1) or RGB (3) images")
    declared = _declared_json(extra[f"{META_KEY}.json"], ".pt2 extra file") if extra[f"{META_KEY}.json"] else {}
    found = {"channels": static[1], "size": tuple(static[2:]) if all(static[2:]) else None}
    return _Pt2Module(gm), declared, found


# -------------------------------------------------------------------------------------------- weight files


def _declared_json(text: str, where: str) -> dict[str, Any]:
    with reading(f"model: the {where} entry {META_KEY!r}", "is not valid JSON"):
        d = json.loads(text)
    if not isinstance(d, dict):
        raise ValueError(f"model: the {where} entry {META_KEY!r} must be a JSON object")
    return d


def _load_safetensors(path: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ValueError("model: .safetensors files need the safetensors package (pip install safetensors)") from None
    check_size(path.stat().st_size, MAX_CHECKPOINT_BYTES, f"checkpoint: {name}")
    with reading(f"safetensors: {name}", "not a readable safetensors file (corrupt or truncated)"):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 — safe_open has keys(), not iteration
    declared = _declared_json(meta[META_KEY], "safetensors metadata") if META_KEY in meta else {}
    return state, declared


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.endswith("/constants.pkl") for n in names)


def _is_pt2(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/archive_format") or n.endswith("models/model.json") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def detect_format(path: Path) -> str:
    """The file's format from its contents (and its extension where contents cannot tell: ONNX, safetensors)."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"
    if _is_torchscript(path):
        return "torchscript"
    if suffix == ".pt2" or _is_pt2(path):
        return "pt2"
    return "checkpoint"


def _imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in index order, from torchvision's public weight metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _classes(value: str | os.PathLike | Sequence[str] | None, k: int, *, imagenet_default: bool) -> tuple[list[str], str]:
    """Class names: a list, a text file (one per line) or JSON file (a list, or {index: name}), "imagenet", or
    none (indices; ImageNet-1k's names for a 1000-class model of a named architecture)."""
    if value is None:
        if imagenet_default and k == 1000:
            return _imagenet_class_names(), "ImageNet-1k (torchvision's list; assumed for 1,000 classes)"
        return [str(i) for i in range(k)], "indices"
    if isinstance(value, str) and value.strip().lower() == "imagenet":
        names, source = _imagenet_class_names(), "ImageNet-1k (torchvision's list)"
    elif isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if not p.is_file():
            raise ValueError(f"class_names: no such file: {p.name}")
        check_size(p.stat().st_size, 8 * 2**20, f"class_names: {p.name}")
        with reading(f"class_names: {p.name}", "not a UTF-8 text or JSON file"):
            text = p.read_text(encoding="utf-8")
        names = _parse_class_text(text, p.name)
        source = f"file {p.name}"
    elif isinstance(value, Sequence):
        names, source = [str(v) for v in value], "given"
    else:
        raise ValueError(f"class_names: must be a file, a list or 'imagenet', got {type(value).__name__}")
    if len(names) != k:
        raise ValueError(f"class_names: {len(names):,} names for a model that scores {k:,} classes")
    if any(len(n) > 200 for n in names):
        raise ValueError("class_names: a name is longer than 200 characters")
    return names, source


def _parse_class_text(text: str, name: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        with reading(f"class_names: {name}", "not valid JSON"):
            obj = json.loads(stripped)
        if isinstance(obj, dict):  # {"0": "tench", …} or {"0": ["n01440764", "tench"]} (Keras' index file)
            try:
                items = sorted((int(k), v) for k, v in obj.items())
            except ValueError:
                raise ValueError(f"class_names: {name}: a JSON object must map class indices to names") from None
            if [i for i, _ in items] != list(range(len(items))):
                raise ValueError(f"class_names: {name}: indices must run 0, 1, …, {len(items) - 1}")
            obj = [v[-1] if isinstance(v, list) and v else v for _, v in items]
        if not isinstance(obj, list) or not all(isinstance(v, str) for v in obj):
            raise ValueError(f"class_names: {name}: a JSON file must hold a list of strings")
        return obj
    return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------- loading


def load_model(path: str | os.PathLike, *, arch: str | None = None, num_classes: int | None = None,
               input_size: int | str | Sequence[int] | None = None, resize: int | None = None,
               mean: Sequence[float] | str | None = None, std: Sequence[float] | str | None = None,
               normalize: bool | None = None, class_names: str | os.PathLike | Sequence[str] | None = None,
               trust_code: bool = False, device: str | torch.device | None = None, name: str | None = None,
               allow_external_data: bool = True) -> LoadedModel:
    """Load a user's model file for certification: a :class:`~rs_core.models.checkpoints.LoadedModel` in eval mode whose
    ``model`` maps [B, C, H, W] images in [0, 1] to [B, K] scores (normalization, when declared, is its first layer).

    Args:
        path: an ONNX (``.onnx``), torch.export (``.pt2``), safetensors or PyTorch state-dict/checkpoint file.
        arch: for weights: ``torchvision:<name>``, ``timm:<name>`` or one of ours (``rs_core.models.architectures.ARCHITECTURES``).
        num_classes: checked against the model's output (inferred otherwise).
        input_size: H (square), (H, W) or "C×H×W"; needed only where neither the file nor the graph fixes it (the
            channel count only where nothing reveals it, e.g. TorchScript).
        resize: resize the shorter side to this before center-cropping to ``input_size`` (e.g. 256 → 224).
        mean, std: per-channel normalization the base classifier applies after the noise; ``normalize=False``:
            the model normalizes itself (ignore what a file or a named architecture declares).
        class_names: a list, a text/JSON file, or ``"imagenet"``; checked against the number of classes.
        trust_code: load TorchScript (which is code). Never set for files from a browser.
        device: where the model runs (default: CUDA when present, else CPU).
        name: what messages call the file (an upload's own name, never a server path).
        allow_external_data: ONNX weights in separate files next to the model (off for uploads).

    σ is in the units of the [0, 1] image before normalization, whatever the model's own input convention.
    Every problem raises ``ValueError`` naming the file or the parameter; nothing is kept from a failed load.

    >>> import tempfile, torchvision, safetensors.torch
    >>> f = tempfile.NamedTemporaryFile(suffix=".safetensors")
    >>> safetensors.torch.save_file(torchvision.models.resnet18(num_classes=5).state_dict(), f.name)
    >>> m = load_model(f.name, arch="torchvision:resnet18", input_size=64, resize=73, device="cpu")
    >>> m.num_classes, m.input_shape, m.preprocessing.resize, m.preprocessing.normalizes
    (5, (3, 64, 64), 73, True)
    """
    from rs_core.models.device import default_device

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model: no such file: {name or path}")
    name = name or path.name
    dev = torch.device(device) if device is not None else default_device()
    check_size(path.stat().st_size, MAX_CHECKPOINT_BYTES, f"checkpoint: {name}")
    if not path.stat().st_size:
        raise ValueError(f"checkpoint: {name} is empty")
    spec = parse_arch(arch)
    shape = parse_input_size(input_size)
    size = None if shape is None else shape[1:]
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or not 2 <= num_classes <= MAX_CLASSES):
        raise ValueError(f"num_classes: must be a whole number from 2 to {MAX_CLASSES:,}, got {num_classes!r}")
    fmt = detect_format(path)
    if spec is not None and fmt in ("onnx", "pt2", "torchscript"):
        raise ValueError(f"arch: {name} carries its own graph ({fmt}); arch is for weights-only files")
    declared: dict[str, Any] = {}
    found: dict[str, Any] = {}
    imagenet_default = False
    defaults: dict[str, Any] = {}
    arch_label = arch

    if fmt == "torchscript":
        if not trust_code:
            raise ValueError(f"model: refused {name}: a TorchScript file is code (it holds Python source and its graph "
                             "may call any registered operator), so it is loaded only on request (trust_code=True, "
                             f"--trust-code) and never from a browser upload; {EXPORT_TO}")
        with reading(f"torchscript: {name}", "torch.jit.load could not read it"):
            net = torch.jit.load(str(path), map_location=dev)
        arch_label = arch_label or "torchscript"
    elif fmt == "onnx":
        net, declared, found = _load_onnx(path, name, dev, allow_external_data)
        arch_label = arch_label or "onnx"
    elif fmt == "pt2":
        net, declared, found = _load_pt2(path, name, dev)
        arch_label = arch_label or "torch.export"
    else:
        if fmt == "safetensors":
            state, declared = _load_safetensors(path, name)
        else:
            try:
                obj = read_weights_only(path, map_location="cpu", name=name)
            except ValueError as err:
                if "Python objects" in str(err) or "arbitrary pickle" in str(err):
                    raise ValueError(f"{err}. A pickled model is code and is never loaded; {EXPORT_TO}") from None
                raise
            ours = isinstance(obj, dict) and "state_dict" in obj and (spec is None or spec[0] == "builtin")
            if ours and (spec is not None or obj.get("arch") in ARCHITECTURES):
                # Our and Cohen et al.'s checkpoints: the model normalizes itself (NormalizeLayer inside).
                loaded = load_checkpoint(path, dev, arch=None if spec is None else spec[1], num_classes=num_classes,
                                         name=name)
                if loaded.meta.get("kind") == "denoiser":  # D maps images to images: not a classifier
                    raise ValueError(f"model: {name} is a denoiser; pass it as --denoiser (in the app: the Denoiser "
                                     "choice) with a classifier")
                return _finish(loaded.model, loaded.arch, "checkpoint", path, name, dev, loaded.meta,
                               {"channels": loaded.input_shape[0], "size": tuple(loaded.input_shape[1:])}, {},
                               size, resize, mean, std, normalize, num_classes, class_names, False, inside=True)
            if isinstance(obj, dict):
                if isinstance(obj.get("meta"), dict):
                    declared = dict(obj["meta"])
                for key in _STATE_KEYS:
                    if isinstance(obj.get(key), dict):
                        obj = obj[key]
                        break
            state = check_state_dict(obj, name)
            fmt = "state dict"
        state = check_state_dict(state, name)
        spec = spec or parse_arch(declared.get("arch"))
        if spec is None:
            raise ValueError(f"arch: {name} holds weights only and does not name its architecture; give arch "
                             "(torchvision:<name>, timm:<name>, or one of ours)")
        channels = _first_conv_channels(state) or 3
        stored = _final_classes(state)
        if stored is not None and not 2 <= stored <= MAX_CLASSES:
            raise ValueError(f"checkpoint: {name}: the final layer scores {stored:,} classes (limit {MAX_CLASSES:,})")
        k = num_classes or stored or int(declared.get("num_classes") or 1000)
        if spec[0] == "builtin":
            net = get_architecture(spec[1], k)
            native = ARCHITECTURES[spec[1]][1]
            found = {"channels": native[0], "size": tuple(native[1:])}
            arch_label = spec[1]
        else:
            net = _build_named(spec[0], spec[1], k, channels)
            defaults = _named_defaults(spec[0], spec[1], channels)
            imagenet_default = defaults.pop("imagenet")
            found = {"channels": channels}
            arch_label = f"{spec[0]}:{spec[1]}"
        _weights_into(net, state, arch_label, name)
        net.to(dev).eval()
    if shape is not None and shape[0] is not None:
        if found.get("channels") not in (None, shape[0]):
            raise ValueError(f"input_size: {name} takes {found['channels']}-channel inputs, not {shape[0]}")
        found = {**found, "channels": shape[0]}
    return _finish(net, arch_label, fmt, path, name, dev, declared, found, defaults, size, resize, mean, std,
                   normalize, num_classes, class_names, imagenet_default, inside=spec is not None and spec[0] == "builtin")


def _finish(net: nn.Module, arch: str, fmt: str, path: Path, name: str, dev: torch.device, declared: dict[str, Any],
            found: dict[str, Any], defaults: dict[str, Any], size, resize, mean, std, normalize: bool | None,
            num_classes: int | None, class_names, imagenet_default: bool, *, inside: bool = False) -> LoadedModel:
    """Preprocessing from (in order) the caller, the file's declaration, the graph/weights, a named architecture's
    reference weights; then one clean forward pass checks the input and counts the classes. ``inside``: the network
    normalizes by construction (RS Lab's and Cohen et al.'s architectures: a NormalizeLayer first)."""
    meta = check_meta({k: v for k, v in declared.items() if k not in ("preprocess",)}, name)
    pre = declared.get("preprocess") if isinstance(declared.get("preprocess"), dict) else {}
    channels = found.get("channels") or (pre.get("input_shape") or [None])[0] or 3
    hw = size or (tuple(pre["input_shape"][1:]) if pre.get("input_shape") else None) or found.get("size") \
        or defaults.get("input_size")
    if hw is None and isinstance(meta.get("input_shape"), list):
        hw = tuple(meta["input_shape"][1:])
    if hw is None:
        raise ValueError(f"input_size: {name} does not fix its input size; give input_size (e.g. 224)")
    if found.get("size") and size is not None and tuple(found["size"]) != tuple(size):
        raise ValueError(f"input_size: {name} takes {found['size'][0]}×{found['size'][1]} inputs, not "
                         f"{size[0]}×{size[1]}")
    if resize is None and "resize" in pre:
        resize = pre["resize"]
    elif resize is None and defaults.get("crop_ratio"):
        # A named architecture's reference ratio (e.g. 256/224) kept at the input size in use.
        resize = max(min(hw), int(math.floor(min(hw) * defaults["crop_ratio"])))
    # Where the normalization comes from, recorded with the model (normalization_declared() reads it): the app asks
    # the user whenever it is an assumption ("architecture", "none") instead of taking it silently.
    if normalize is not None or mean is not None or std is not None:
        norm_source = "given"
    elif "mean" in pre or "std" in pre:
        norm_source = "file"
    elif inside:
        norm_source = "network"
    elif defaults.get("mean") is not None:
        norm_source = "architecture"
    else:
        norm_source = "none"
    if normalize is False:
        mean = std = None
    elif mean is None and std is None:
        mean, std = pre.get("mean", defaults.get("mean")), pre.get("std", defaults.get("std"))
    elif mean is None or std is None:
        raise ValueError("mean: give both mean and std, or neither")
    if normalize is True and mean is None:
        raise ValueError("mean: normalize=True needs mean and std (the file declares none)")
    preprocess = Preprocess((int(channels), int(hw[0]), int(hw[1])), resize, mean, std)
    model = preprocess.wrap(net).to(dev)
    model.eval()
    k = _probe(model, preprocess, name, dev)
    if num_classes is not None and num_classes != k:
        raise ValueError(f"num_classes: {name} scores {k:,} classes, not {num_classes:,}")
    names = class_names if class_names is not None else (meta.get("class_names") or None)
    names_list, source = _classes(names, k, imagenet_default=imagenet_default or (fmt in ("onnx", "pt2") and k == 1000))
    if class_names is None and meta.get("class_names"):
        source = "from the file"
    meta = {**meta, "class_names": names_list, "class_names_source": source, "num_classes": k,
            "input_shape": list(preprocess.input_shape), **{k_: v for k_, v in found.items() if k_.startswith("onnx")},
            "normalization_source": norm_source}
    return LoadedModel(model=model, arch=arch, num_classes=k, input_shape=preprocess.input_shape, meta=meta,
                       sha256=file_sha256(path), path=str(path), fmt=fmt, preprocess=preprocess, name=name)


def normalization_declared(loaded: LoadedModel) -> bool:
    """True when ``loaded``'s normalization is known (declared by the file, built into its network, or given/chosen
    by the caller); False when :func:`load_model` had to assume it (the file declares none: a named architecture's
    reference mean/std, or "the model normalizes itself") — the app then asks instead."""
    return loaded.meta.get("normalization_source", "file") in DECLARED_NORMALIZATION


def with_normalization(loaded: LoadedModel, mean: Sequence[float] | str | None, std: Sequence[float] | str | None, *,
                       source: str = "chosen") -> LoadedModel:
    """``loaded`` with another normalization in front of the same network (not loaded again): ``mean``/``std`` per
    channel (1 or C values), or both None for a model that normalizes itself. The new normalization is checked
    (``ValueError`` naming mean or std) and goes into the preprocessing a certificate records, with ``source``
    (a key of :data:`rs_core.models.preprocess.NORMALIZATION_SOURCES`)."""
    import dataclasses

    from rs_core.models.preprocess import NORMALIZATION_SOURCES

    if source not in NORMALIZATION_SOURCES:
        raise ValueError(f"source: must be one of {', '.join(NORMALIZATION_SOURCES)}, got {source!r}")
    old = loaded.preprocessing
    pre = Preprocess(old.input_shape, old.resize, parse_floats(mean, "mean"), parse_floats(std, "std"))
    # A normalizing model is Preprocess.wrap's Sequential(NormalizeLayer, net): the network is its second part.
    net = loaded.model[1] if old.normalizes else loaded.model
    model = pre.wrap(net)
    dev = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    model.to(dev).eval()
    _probe(model, pre, loaded.name or Path(loaded.path).name, dev)  # e.g. a tiny std that overflows the scores
    return dataclasses.replace(loaded, model=model, preprocess=pre,
                               meta={**loaded.meta, "normalization_source": source})


@torch.inference_mode()
def _probe(model: nn.Module, pre: Preprocess, name: str, dev: torch.device) -> int:
    x = torch.full((1, *pre.input_shape), 0.5, device=dev)
    try:
        out = model(x)
    except Exception as err:  # noqa: BLE001 — a graph or network that cannot take this input says so in many ways
        raise ValueError(f"input_size: {name} cannot process a {pre.input_shape[0]}×{pre.input_shape[1]}×"
                         f"{pre.input_shape[2]} input ({first_line(err)[:200]})") from None
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model: {name} must output class scores [B, K]; it gave {got}")
    k = int(out.shape[1])
    if not 2 <= k <= MAX_CLASSES:
        raise ValueError(f"model: {name} scores {k:,} classes; need 2 to {MAX_CLASSES:,}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"model: {name} gives NaN or infinite scores on a grey image")
    return k


# -------------------------------------------------------------------------------------------------- export


def declaration(loaded: LoadedModel) -> dict[str, Any]:
    """What an export declares about the model (the ``"rslab"`` JSON entry)."""
    pre = loaded.preprocessing
    names = None if loaded.meta.get("class_names_source") == "indices" else loaded.meta.get("class_names")
    d = {"arch": loaded.arch if parse_arch_safe(loaded.arch) else None, "num_classes": loaded.num_classes,
         "class_names": names, "sigma": loaded.sigma, "dataset": loaded.meta.get("dataset"),
         # The exported graph includes the normalization layer: the exported model takes [0, 1] pixels.
         "preprocess": {**pre.to_dict(), "mean": None, "std": None}, "exported_from": loaded.sha256}
    return {k: v for k, v in d.items() if v is not None}


def parse_arch_safe(arch: str) -> bool:
    try:
        return parse_arch(arch) is not None
    except ValueError:
        return False


def export_model(loaded: LoadedModel, out: str | os.PathLike) -> Path:
    """Write ``loaded.model`` (normalization included) as ONNX (``.onnx``, one file, dynamic batch) or a torch.export
    program (``.pt2``, dynamic batch), declaring its preprocessing, classes and training σ in the file."""
    out = Path(out)
    model = loaded.model.to("cpu").eval()
    x = torch.rand(2, *loaded.input_shape)
    meta = json.dumps(declaration(loaded))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".onnx":
        import onnx

        torch.onnx.export(model, (x,), str(out), input_names=["image"], output_names=["scores"], dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},),
                          external_data=False, verbose=False)
        proto = onnx.load(str(out))
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, meta
        onnx.save(proto, str(out))
    elif out.suffix == ".pt2":
        ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},))
        torch.export.save(ep, str(out), extra_files={f"{META_KEY}.json": meta})
    elif out.suffix == ".safetensors":
        from safetensors.torch import save_file

        if not parse_arch_safe(loaded.arch):
            raise ValueError(f"out: a .safetensors file holds weights only, and {loaded.arch!r} is not an "
                             "architecture RS Lab can rebuild; export to .onnx or .pt2")
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        decl = declaration(loaded)
        decl["preprocess"] = loaded.preprocessing.to_dict()  # weights only: the normalization is declared, not baked
        net_state = state
        if loaded.preprocessing.normalizes:  # the wrapper's NormalizeLayer is "0." and has no weights: drop "1."
            net_state = {k[2:]: v for k, v in state.items() if k.startswith("1.")}
        save_file(net_state, str(out), metadata={META_KEY: json.dumps(decl)})
    else:
        raise ValueError(f"out: export to .onnx, .pt2 or .safetensors, got {out.suffix or 'no extension'!r}")
    return out
