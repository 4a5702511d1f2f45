"""The sidebar's "your model" part: a file (uploaded, or from the server's model folder), what the file does not
declare, and a card of what was understood — before anything runs.

Formats are :func:`rs_core.models.formats.load_model`'s, less TorchScript (code: never loaded from a browser, nor from
the folder). Every typed value is parsed by rs_core's own parsers; an invalid one is shown under its field, and
no model is loaded until it is fixed (nothing runs on a silently different value). A file that declares no
normalization is not taken to normalize itself: the sidebar asks (with no answer preselected), and nothing runs until
the user answers; the answer is in the certificate's model record (``preprocess`` and ``normalization``).
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
from rs_core.models.formats import EXTENSIONS, normalization_declared, with_normalization
from rs_core.models.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATION_SOURCES,
    Preprocess,
    parse_floats,
    parse_input_size,
)
from rs_core.models.server_folder import ENV, find_folder_model

from . import state

NORMS = {"declared": "as the file declares", "self": "the model normalizes itself",
         "imagenet": "ImageNet mean/std", "custom": "custom mean/std"}
# The question asked when the file declares no normalization: no answer is preselected (nothing is assumed).
ASK = {"self": "the model normalizes itself (it takes [0, 1] pixels)",
       "imagenet": "ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)",
       "custom": "custom mean and std per channel"}
CLASSES = {"declared": "from the file or architecture", "imagenet": "ImageNet-1k (1,000 names)",
           "file": "a file of names (.txt, .json)"}


UPLOAD_ENV = "RS_MODEL_UPLOAD_MB"
# `make run` passes $RS_MODEL_UPLOAD_MB (default this) to the server as --server.maxUploadSize, and
# .streamlit/config.toml sets the same default for a plain `streamlit run app.py`. A ResNet-50 state dict is
# ~100 MB, a ViT-B/16 ~330 MB; bigger models belong in the server's model folder.
DEFAULT_UPLOAD_MB = 200
UPLOAD_OPTION = "server.maxUploadSize"


def upload_limit() -> tuple[int, str | None]:
    """The model uploader's limit in MB, and a note when it is not what $RS_MODEL_UPLOAD_MB asks for.

    The server refuses every upload above ``server.maxUploadSize`` (HTTP 413, checked per request), whatever a
    widget states; the browser refuses a file above the widget's ``max_upload_size`` before sending it, with a
    message next to the file. So the limit stated and passed to the widget is $RS_MODEL_UPLOAD_MB but never more
    than the server's option ($RS_MODEL_UPLOAD_MB unset: the server's option): a file the page says it takes is
    never refused by the server."""
    server = int(st.get_option(UPLOAD_OPTION))
    raw = os.environ.get(UPLOAD_ENV, "").strip()
    if not raw:
        return server, None
    try:
        wanted = int(raw)
        if wanted < 1:
            raise ValueError
    except ValueError:
        return server, (f"{UPLOAD_ENV}={raw[:20]!r} is not a whole number of MB (≥ 1), so the server's limit "
                        f"({server:,} MB) is used.")
    if wanted > server:
        return server, (f"{UPLOAD_ENV} asks for {wanted:,} MB, but this server accepts uploads up to {server:,} MB "
                        f"({UPLOAD_OPTION}): start it with `make run`, which passes {UPLOAD_ENV} to it.")
    return wanted, None


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _load(path: str, device: str, options: str, name: str, external_data: bool) -> LoadedModel:
    """One model per (file, device, options), shared by all sessions; a failed load is not cached."""
    from rs_core.models.formats import load_model

    return load_model(path, device=device, name=name, allow_external_data=external_data, trust_code=False,
                      **json.loads(options))


@st.cache_resource(show_spinner=False, max_entries=16)
def _normalized(path: str, device: str, options: str, name: str, external_data: bool, normalization: str) -> LoadedModel:
    """The model of :func:`_load` with the normalization the user chose (``normalization``: JSON of mean, std and
    source) in front of the same network: choosing another one never loads the file again."""
    norm = json.loads(normalization)
    return with_normalization(_load(path, device, options, name, external_data), norm["mean"], norm["std"],
                              source=norm["source"])


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


def _options(sb, preset: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], Any]:
    """The form for what a file may not declare, less the normalization (asked once the file is read); returns
    (load_model options, problems by field, the place in the form for the normalization)."""
    problems: dict[str, str] = {}
    opts: dict[str, Any] = dict(preset)
    box = sb.expander("How to read this model", expanded=False)
    # Every field is kept (widgets.state.kept): a visit to a shipped model and back finds it as it was.
    arch = box.text_input("Architecture (weights-only files)", placeholder="from the file", **state.kept("own_arch", ""),
                          help="torchvision:<name> (e.g. torchvision:resnet50), timm:<name>, or one of RS Lab's "
                               "(mnist_cnn, cifar_resnet110, …). ONNX and .pt2 files carry their own graph.")
    size = box.text_input("Input size (H, H×W or C×H×W)", placeholder="from the model",
                          **state.kept("own_input_size", ""),
                          help="Needed only when the file does not fix it (e.g. 224, or 1×28×28 for a grey model)")
    resize = box.text_input("Resize the shorter side to (then center crop)", placeholder="from the file / architecture",
                            help="e.g. 256 for a 224×224 ImageNet model", **state.kept("own_resize", ""))
    norm_slot = box.container()  # filled once the file is read: what it declares decides what is asked
    classes = box.selectbox("Class names", list(CLASSES), format_func=CLASSES.get,
                            **state.kept("own_classes", "declared", list(CLASSES)))
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
    return opts, problems, norm_slot


def _mean_std(where) -> tuple[str, str, str | None]:
    """Custom mean and std, one number per channel (or one for all): (mean, std, why they cannot be used yet)."""
    c1, c2 = where.columns(2)
    mean = c1.text_input("mean", placeholder="0.5,0.5,0.5", **state.kept("own_mean", ""))
    std = c2.text_input("std", placeholder="0.25,0.25,0.25", **state.kept("own_std", ""))
    if not mean.strip() or not std.strip():
        missing = "mean" if not mean.strip() else "std"
        return mean, std, f"{missing}: give both mean and std (one number per channel, or one for all)"
    return mean, std, None


def _normalization(sb, slot, probe: LoadedModel) -> tuple[dict[str, Any] | None, str | None]:
    """What the user says about the normalization: None (keep what the file declares) or {mean, std, source}, and
    why nothing can load yet. A file that declares none is asked, with no answer preselected, each time another
    file comes (an answer belongs to the file it was given for)."""
    ss = st.session_state
    name = probe.name or "the file"
    if normalization_declared(probe):
        where = slot
        choice = slot.selectbox("Normalization (after the noise)", list(NORMS), format_func=NORMS.get,
                                help="σ is always in units of the [0, 1] image before normalization",
                                **state.kept("own_norm", "declared", list(NORMS)))
        if choice == "declared":
            return None, None
        source = "given"
    else:
        if ss.get("own_norm_for") != probe.sha256:
            ss["own_norm_for"] = probe.sha256
            state.remember("own_norm_ask", None)
        named = probe.meta.get("normalization_source") == "architecture"
        offered = [k for k in ASK if k != "imagenet" or probe.input_shape[0] == 3]  # ImageNet's is for RGB
        where = sb
        choice = sb.radio(
            f"Normalization: {name} does not declare one. What does the model expect?", offered,
            format_func=ASK.get, index=None, **state.kept("own_norm_ask", None, [None, *offered]),
            help="The normalization (x − mean) / std is the smoothed classifier's first layer, after the noise: σ is "
                 "always in units of the [0, 1] image. Nothing runs until you choose"
                 + (f". {probe.arch}'s reference weights were trained with ImageNet mean/std; weights trained "
                    "elsewhere may use others." if named else "."))
        if choice is None:
            why = (f"normalization: {name} does not declare how its input is normalized; choose one in the sidebar "
                   "(nothing runs until then)")
            return None, why
        source = "chosen"
    if choice == "self":
        return {"mean": None, "std": None, "source": source}, None
    if choice == "imagenet":
        return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "source": source}, None
    mean, std, why = _mean_std(where)
    if why is None:
        try:  # checked here, each value by name, so that an invalid one is shown under the fields
            m, s_ = parse_floats(mean, "mean"), parse_floats(std, "std")
            Preprocess(probe.input_shape, probe.preprocessing.resize, m, s_)
            return {"mean": list(m), "std": list(s_), "source": source}, None
        except ValueError as err:
            why = str(err)
    where.error(why)
    return None, why


def draw(sb, model_id: str, device: str) -> tuple[LoadedModel | None, str | None, str, str | None, dict[str, str]]:
    """(the loaded model or None, the error to show, its label, the file's own name, settings problems) for an own
    or folder model. The problems (Settings.problems) name a question the user has yet to answer."""
    ss = st.session_state
    preset: dict[str, Any] = {}
    refused = ""
    if model_id.startswith("server:"):
        entry = find_folder_model(model_id)
        if entry is None:
            return None, f"{model_id[7:]} is no longer in the server's model folder", model_id, None, {}
        if entry.problem:
            return None, f"{entry.label}: {entry.problem}", entry.label, None, {}
        path, name, preset, external = str(entry.path), entry.path.name, dict(entry.options), True
        label = entry.label
    else:
        limit, note = upload_limit()
        up = sb.file_uploader(f"Model file (up to {limit:,} MB)", type=[e[1:] for e in EXTENSIONS], key="ckpt_upload",
                              max_upload_size=limit,
                              help="ONNX, torch.export (.pt2), safetensors, or a state dict / checkpoint (.pth, .pt). "
                                   "Read without running code: state dicts with torch.load(weights_only=True), .pt2 "
                                   "programs checked to call aten operators only. TorchScript and pickled models are "
                                   "code and are refused: export to ONNX or .pt2 instead.")
        sb.caption(f"Model uploads are limited to {limit:,} MB ({UPLOAD_ENV}; `make run` gives the server the same "
                   "limit): your browser refuses a bigger file, with a red icon next to it. A bigger model goes in the "
                   f"server's model folder ({ENV}), which the Model menu lists: no upload needed."
                   + (f"  \n{note}" if note else ""))
        # Streamlit's browser side refuses a file over the limit with only a red icon next to it (its words are
        # for screen readers) and never sends it, so the server cannot react: the limit and what to do instead are
        # said in words in the caption above and wherever the page says that no file is in use.
        refused = (f"; a file over {limit:,} MB is refused by your browser (a red icon next to it): put it in the "
                   f"server's model folder ({ENV}) instead")
        if up is not None:  # the last upload is kept while the widget is redrawn empty (a visit to another page)
            ss["ckpt_path"], ss["ckpt_name"] = stash(up.getvalue(), _suffix(up.name)), up.name
        elif ss.get("ckpt_name"):
            sb.caption(f"In use: {ss['ckpt_name']}, the file uploaded last (upload another to replace it).")
        path, name, external = ss.get("ckpt_path"), ss.get("ckpt_name"), False
        label = f"your file {name}" if name else "your file"
    opts, problems, norm_slot = _options(sb, preset)
    if path is None:
        return None, f"Upload a model file, or pick one from the menu{refused}.", label, None, {}
    if problems:
        return None, "Fix how to read the model: " + "; ".join(problems.values()), label, name, {}
    options = json.dumps(opts, sort_keys=True)
    try:
        loaded = _load(path, device, options, name, external)
        norm, why = _normalization(sb, norm_slot, loaded)
        if why is not None:
            understood(sb, loaded, loaded.sigma, normalization=False)  # what is known so far; nothing runs
            return None, why, label, name, {"normalization": why}
        if norm is not None:
            loaded = _normalized(path, device, options, name, external, json.dumps(norm, sort_keys=True))
    except ValueError as err:  # load_model's contract: every bad file or option is a ValueError naming it
        return None, str(err), label, name, {}  # names the upload (name=…), never the server's temp file
    understood(sb, loaded, loaded.sigma)  # right under the form, before anything runs
    return loaded, None, label, name, {}


def understood(sb, loaded: LoadedModel, train_sigma: float | None, *, own: bool = True,
               normalization: bool = True) -> None:
    """What RS Lab understood about the model, shown before anything runs (``normalization`` False: not known yet,
    the sidebar asks)."""
    pre = loaded.preprocessing
    names = loaded.meta.get("class_names") or []
    source = loaded.meta.get("class_names_source", "from the file")
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    kind = loaded.fmt if loaded.arch == loaded.fmt or loaded.arch in ("onnx", "torch.export") \
        else f"{loaded.fmt} · `{loaded.arch}`"
    norm_source = loaded.meta.get("normalization_source")
    norm = ("" if norm_source in (None, "file", "network") else f" — {NORMALIZATION_SOURCES[norm_source]}") \
        if normalization else " · normalization: not declared (choose it above)"
    lines = [("**Understood:** " if own else "") + f"{kind} · sha256 `{loaded.sha256[:12]}…`",
             f"input {pre.describe(normalization)}{norm}",
             f"{loaded.num_classes:,} classes · names: {source}" + (f" ({shown})" if source != "indices" else "")]
    if train_sigma is not None:
        lines.append(f"trained at σ = {train_sigma:g}")
    providers = loaded.meta.get("onnx_providers")
    if providers:
        lines.append("onnxruntime: " + ", ".join(p if isinstance(p, str) else p[0] for p in providers))
    sb.caption("  \n".join(lines))
