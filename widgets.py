"""Widgets shared by the RS Lab pages: the sidebar every page calls, cached models, figures.

Every page calls :func:`sidebar` first, so each page file also runs on its own
(``AppTest.from_file("pages/…")``). Settings persist across pages: widgets are
seeded from plain session-state keys (``cfg.*``) that Streamlit does not clean
up when a page without the widget runs, and write back through ``on_change``.
All computation is in ``rs_core``; this module only lays things out.
"""

from __future__ import annotations

import hashlib
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from rs_core import ABSTAIN, Certificate, cohen_radius, lecuyer_radius, li_radius
from rs_core.checkpoints import CHECKPOINTS_DIR, LoadedModel, load_checkpoint, read_index
from rs_core.data import DATASETS, EXAMPLE_IMAGES, dataset_info, example_image, get_dataset, load_image, prepare_input
from rs_core.fmt import floor_str
from rs_core.jobs import CertifyJob
from rs_core.models import ARCHITECTURES

# Sampling runs in worker threads of this process while pages render in others. With the default 5 ms
# switch interval a page rerun (Plotly figures are slow to build) starves a worker at each GIL hand-off;
# 1 ms keeps the workers nearer their solo speed (benchmarks/bench_live.py; see also postScriptGC in
# .streamlit/config.toml).
sys.setswitchinterval(0.001)

LOCAL = "Your checkpoint file…"
CFG = "cfg."


@dataclass
class Settings:
    """What the sidebar chose; ``loaded`` is None when no model could be loaded (``error`` says why)."""

    model_label: str
    loaded: LoadedModel | None
    dataset: str | None
    train_sigma: float | None
    sigma: float
    alpha: float
    n0: int
    n_max: int
    batch_size: int
    seed: int
    device: str
    error: str | None = None

    @property
    def class_names(self) -> list[str]:
        if self.loaded is None:
            return []
        names = self.loaded.meta.get("class_names")
        if not names and self.dataset:
            names = dataset_info(self.dataset).class_names
        return list(names) if names and len(names) == self.loaded.num_classes else self.loaded.class_names


def _save(name: str) -> None:
    st.session_state[CFG + name] = st.session_state["w." + name]


def persisted(name: str, default: Any, options: list | None = None) -> dict[str, Any]:
    """Keyword arguments that make a widget keep its value across pages (see the module docstring)."""
    ss = st.session_state
    if CFG + name not in ss or (options is not None and ss[CFG + name] not in options):
        ss[CFG + name] = default
    ss["w." + name] = ss[CFG + name]
    return {"key": "w." + name, "on_change": _save, "args": (name,)}


def get(name: str, default: Any = None) -> Any:
    return st.session_state.get(CFG + name, default)


def put(name: str, value: Any) -> None:
    st.session_state[CFG + name] = value


@st.cache_data(show_spinner=False)
def shipped_models() -> dict[str, dict]:
    """Index entries of the shipped checkpoints, by a label that names dataset, arch, σ and accuracy."""
    out = {}
    for e in read_index():
        acc = e.get("accuracy") or {}
        noisy = acc.get("test_noisy")
        label = f"{e['dataset']} · {e['arch']} · σ = {e['sigma']:.2f}"
        if noisy is not None:
            label += f" · noisy acc. {noisy:.2f}"
        out[label] = e
    return out


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def load_model(path: str, device: str, arch: str | None = None, dataset: str | None = None,
               name: str | None = None) -> LoadedModel:
    """One model per (file, device), shared by all sessions (inference only; never trained here).
    ``name``: what messages call the file (an upload's own name, never the server's temp file)."""
    return load_checkpoint(path, device, arch=arch, dataset=dataset, name=name)


def _stash_upload(data: bytes) -> str:
    """Write an uploaded checkpoint to a temp file named by its hash (load_checkpoint reads files)."""
    digest = hashlib.sha256(data).hexdigest()
    path = Path(tempfile.gettempdir()) / f"rslab-upload-{digest}.pth"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def available_devices() -> list[str]:
    return (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]


def sidebar() -> Settings:
    """The shared sidebar: model, σ and sampling settings. Call it first on every page."""
    sb = st.sidebar
    sb.header("Settings")
    models = shipped_models()
    options = list(models) + [LOCAL]
    default = next((k for k in models if k.startswith("mnist · mnist_cnn · σ = 0.50")), options[0])
    label = sb.selectbox("Model", options, help="Shipped checkpoints (see checkpoints/README.md for their cards) "
                         "or a checkpoint file of your own", **persisted("model", default, options))
    devices = available_devices()
    device = sb.selectbox("Device", devices, **persisted("device", devices[0], devices))

    loaded, error, dataset, train_sigma = None, None, None, None
    if label == LOCAL:
        dataset_opts = ["from the file"] + list(DATASETS)
        arch_opts = ["from the file"] + list(ARCHITECTURES)
        upload = sb.file_uploader("Checkpoint (.pth, .pth.tar, .pt)", type=["pth", "tar", "pt"], key="w.ckpt_upload",
                                  help="Loaded with torch.load(weights_only=True): a state dict, never arbitrary "
                                       "pickled objects")
        if upload is not None:
            put("ckpt_path", _stash_upload(upload.getvalue()))
            put("ckpt_name", upload.name)
        ds = sb.selectbox("Data set (class names, input size)", dataset_opts,
                          **persisted("ckpt_dataset", "from the file", dataset_opts))
        arch = sb.selectbox("Architecture (for a bare state dict)", arch_opts,
                            **persisted("ckpt_arch", "from the file", arch_opts))
        path = get("ckpt_path")
        if path is None:
            error = "Upload a checkpoint file, or pick a shipped model."
        else:
            try:
                loaded = load_model(path, device, None if arch == "from the file" else arch,
                                    None if ds == "from the file" else ds, name=get("ckpt_name"))
            except ValueError as err:  # the loader's contract: every bad file is a ValueError
                error = str(err)  # names the upload (name=…), never the server's temp file
            else:
                dataset = loaded.meta.get("dataset") if ds == "from the file" else ds
                train_sigma = loaded.sigma
    else:
        entry = models[label]
        dataset, train_sigma = entry["dataset"], float(entry["sigma"])
        try:
            loaded = load_model(str(CHECKPOINTS_DIR / entry["path"]), device)
        except ValueError as err:
            error = f"{label}: {err}"
    if dataset not in DATASETS:
        dataset = None
    if error:
        sb.error(error)
    elif loaded is not None:
        card = f"`{loaded.arch}` · {loaded.num_classes} classes · input {tuple(loaded.input_shape)}"
        if train_sigma is not None:
            card += f" · trained at σ = {train_sigma:g}"
        sb.caption(card + f" · sha256 `{loaded.sha256[:12]}…`")

    # σ follows the model: choosing another model resets it to that model's training σ.
    model_key = (label, get("ckpt_path") if label == LOCAL else None)
    if get("sigma_for") != model_key:
        put("sigma_for", model_key)
        put("sigma", float(train_sigma) if train_sigma else 0.25)
    sigma = sb.number_input("σ (noise level)", min_value=0.01, max_value=10.0, step=0.05, format="%.3f",
                            help="The standard deviation of the Gaussian noise added to every pixel value, in the "
                                 "model's input units: pixels scaled to [0, 1] (σ = 0.25 ≈ 64 of 255 grey levels). "
                                 "More noise: larger radii where the model stays sure, more abstentions elsewhere.",
                            **persisted("sigma", float(train_sigma) if train_sigma else 0.25))
    if train_sigma is not None and not math.isclose(sigma, train_sigma, rel_tol=1e-6):
        sb.warning(f"The model was trained with σ = {train_sigma:g}. Certifying at σ = {sigma:g} is sound but "
                   "pessimistic: a model certifies best at the σ it was trained for (Cohen et al. App. H.3).")
    elif train_sigma is None and loaded is not None:
        sb.info("The file does not say which σ the model was trained with.")
    alpha = sb.number_input("α (certificate fails with probability ≤ α)", min_value=1e-9, max_value=0.5,
                            format="%.4g", **persisted("alpha", 0.001))
    c1, c2 = sb.columns(2)
    n0 = c1.number_input("n0 (selection)", min_value=1, max_value=1_000_000, step=10, **persisted("n0", 100))
    n_max = c2.number_input("n max (estimation)", min_value=10, max_value=100_000_000, step=10_000,
                            **persisted("n_max", 100_000))
    batch = c1.number_input("Batch size", min_value=1, max_value=100_000, step=100, **persisted("batch", 1000))
    seed = c2.number_input("Seed", min_value=0, max_value=2**53 - 1, step=1, **persisted("seed", 0),
                           help="The same seed, input and settings reproduce a certificate exactly")
    return Settings(model_label=label, loaded=loaded, dataset=dataset, train_sigma=train_sigma, sigma=float(sigma),
                    alpha=float(alpha), n0=int(n0), n_max=int(n_max), batch_size=int(batch), seed=int(seed),
                    device=device, error=error)


def to_display(x: torch.Tensor, size: int = 140) -> np.ndarray:
    """[C, H, W] tensor (any range) → uint8 H×W(×3) image, clipped to [0, 1], upscaled by pixel repetition."""
    arr = x.detach().float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    k = max(1, size // max(arr.shape[:2]))
    return np.repeat(np.repeat(arr, k, axis=0), k, axis=1)


def vote_figure(counts: np.ndarray, class_names: list[str], *, top_class: int | None, title: str,
                max_bars: int = 20) -> dict[str, Any]:
    """Bar chart of votes per class (c_A in red) as a Plotly figure dict; large label sets show their top
    ``max_bars``. A dict, not a ``go.Figure``: it is redrawn twice a second while sampling runs, and building
    a validated Figure costs ~25 ms of the GIL that the sampling thread needs."""
    counts = np.asarray(counts)
    order = np.arange(len(counts)) if len(counts) <= max_bars else np.argsort(-counts, kind="stable")[:max_bars]
    names = [class_names[i] if i < len(class_names) else str(i) for i in order]
    colors = ["#d62728" if top_class is not None and i == top_class else "#1f77b4" for i in order]
    values = [int(v) for v in counts[order]]
    return {
        "data": [{"type": "bar", "x": names, "y": values, "marker": {"color": colors}, "text": values,
                  "textposition": "outside", "cliponaxis": False}],
        "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "class"}, "type": "category"},
                   "yaxis": {"title": {"text": "votes"}}, "template": "plotly_white", "height": 340,
                   "margin": {"t": 50, "b": 40, "l": 40, "r": 10}},
    }


@dataclass
class Run:
    """One certification in this session: the job and what it was started with."""

    job: CertifyJob
    model: torch.nn.Module
    x: torch.Tensor
    source: str
    true_label: int | None
    class_names: list[str]
    model_label: str
    model_sha256: str
    model_arch: str
    predict_n: int


def stale_reasons(run: Run, x: torch.Tensor | None, settings: Settings) -> list[str]:
    """What differs between a finished or running certification and what the page now shows: the input,
    the model, or a sampling setting. Empty when the result is for what is on screen."""
    stream = run.job.stream
    reasons = []
    if x is None or tuple(x.shape) != tuple(run.x.shape) or not torch.equal(x.cpu(), run.x):
        reasons.append("the input")
    if settings.loaded is None or settings.loaded.sha256 != run.model_sha256:
        reasons.append("the model")
    for name, now, then in [("σ", settings.sigma, stream.sigma), ("α", settings.alpha, stream.alpha),
                            ("n0", settings.n0, stream.n0), ("n max", settings.n_max, stream.n_max),
                            ("seed", settings.seed, stream.seed)]:
        if now != then:
            reasons.append(f"{name} ({then:g} → {now:g})")
    return reasons


def radius_in_words(radius: float, input_shape: tuple[int, ...]) -> str:
    """What an ℓ2 radius allows, in pixels: the same change spread over every value, in grey levels (all rounded
    down, like the radius itself)."""
    d = math.prod(input_shape)
    per_value = radius / math.sqrt(d)
    return (f"Radius {floor_str(radius)} is an ℓ2 distance in the same units as σ (pixels in [0, 1]): no change of "
            f"the image with ℓ2 norm below it changes the certified class. Spread evenly over all {d:,} values that is "
            f"{floor_str(per_value)} per value ≈ {math.floor(per_value * 255)} of 255 grey levels; concentrated, one "
            f"value may change by up to {floor_str(min(radius, 1.0))}.")


ABSTAIN_ADVICE = ("Abstaining is not an error: under noise of this σ the model's votes for its top class were not "
                  "shown to exceed one half with the required confidence, so the smoothed classifier makes no claim "
                  "about this input. To try: more samples (n max) if the votes lean clearly one way; a smaller σ (the "
                  "model may be unsure under this much noise, at the price of smaller radii); a model trained with "
                  "Gaussian noise at this σ (a model trained without noise abstains almost everywhere).")


def class_label(run: Run, c: int) -> str:
    return "abstain" if c == ABSTAIN else (run.class_names[c] if c < len(run.class_names) else str(c))


def radii_table(cert: Certificate) -> dict[str, list[str]]:
    """The radius each bound gives for a certificate's counts: its pA lower bound, pB = 1 − pA."""
    p = cert.p_lower
    rows = {"Cohen et al. (tight)": cohen_radius(p, 1 - p, cert.sigma),
            "Li et al. (Rényi)": li_radius(p, 1 - p, cert.sigma),
            "Lecuyer et al. (PixelDP)": lecuyer_radius(p, 1 - p, cert.sigma)}
    ok = cert.prediction != ABSTAIN
    return {"bound": list(rows), "radius for these counts": [floor_str(float(r)) if ok else "— (abstain)"
                                                             for r in rows.values()]}


def certificate_report(run: Run) -> dict[str, Any]:
    """Everything needed to check or reproduce a certificate: what the download button serves."""
    cert, pred = run.job.certificate, run.job.prediction
    return {
        "certificate": {**cert.to_dict(), "class_name": class_label(run, cert.prediction)},
        "predict": None if pred is None else {**pred.to_dict(), "class_name": class_label(run, pred.prediction)},
        "radii_other_bounds": dict(zip(*radii_table(cert).values())),
        "model": {"label": run.model_label, "arch": run.model_arch, "sha256": run.model_sha256},
        "input": {"source": run.source, "true_label": run.true_label, "shape": list(run.x.shape),
                  "sha256_float32": hashlib.sha256(run.x.float().numpy().tobytes()).hexdigest()},
        "guarantee": f"with probability ≥ 1 − {cert.alpha:g} over the sampling, the smoothed classifier returns "
                     "the certified class for every ℓ2 perturbation of norm below the radius",
    }


@st.cache_resource(show_spinner="Reading the test set…")
def test_set(name: str):
    return get_dataset(name, "test")


def choose_input(input_shape: tuple[int, int, int], dataset: str | None,
                 names: list[str]) -> tuple[torch.Tensor, str, int | None] | None:
    """The input picker of the Certify and Dual RS pages: upload, draw (digit models), an example image or a
    test image. Returns the input as [C, H, W] in [0, 1], a description and its true label (None if unknown),
    or None (with a message on the page when something was wrong)."""
    C = input_shape[0]
    sources = ["Upload", "Example image", "Test image"]
    if C == 1:
        sources.insert(1, "Draw")
    source = st.radio("Input", sources, horizontal=True, **persisted("source", sources[0], sources))
    digit = C == 1 and input_shape[1:] == (28, 28)
    if source in ("Upload", "Example image") and C == 1:
        c1, c2 = st.columns(2)
        invert = c1.radio("Invert", ["auto", "no", "yes"], horizontal=True, key="invert",
                          help="Digit models expect light ink on a dark background; 'auto' inverts mostly light "
                               "images")
        frame = c2.checkbox("Frame like MNIST", value=digit, key="frame",
                            help="Crop to the ink, scale into 20×20 and center by mass, as MNIST was made")
        opts = {"invert": {"auto": None, "no": False, "yes": True}[invert], "frame_digit": frame}
    else:
        opts = {}

    if source == "Upload":
        up = st.file_uploader("Image (PNG, JPEG, WebP, BMP, GIF first frame)", key="upload",
                              type=["png", "jpg", "jpeg", "webp", "bmp", "gif"])
        if up is None:
            return None
        try:
            img = load_image(up.getvalue())
            return prepare_input(img, input_shape, **opts), f"upload {up.name}", None
        except ValueError as err:  # load_image's contract: whatever the decoder raised
            st.error(f"{up.name}: {err}")
        return None
    if source == "Draw":
        from streamlit_drawable_canvas import st_canvas

        st.caption("Draw a digit with the mouse (white on black, like MNIST).")
        result = st_canvas(stroke_width=16, stroke_color="#ffffff", background_color="#000000", height=224,
                           width=224, drawing_mode="freedraw", key="canvas", return_image_data=True)
        data = result.image_data if result is not None else None
        if data is None or data[..., :3].max() == 0:
            return None
        from PIL import Image

        img = Image.fromarray(np.asarray(data, dtype=np.uint8), "RGBA")
        return prepare_input(img, input_shape, frame_digit=digit), "drawing", None
    if source == "Example image":
        choice = st.selectbox("Example (bundled with scikit-image)", list(EXAMPLE_IMAGES),
                              format_func=lambda k: f"{k}: {EXAMPLE_IMAGES[k][1]}", key="example")
        try:
            return prepare_input(example_image(choice), input_shape, **opts), f"example {choice}", None
        except ValueError as err:
            st.error(str(err))
            return None
    # Test image
    if dataset is None:
        st.info("The model does not name its data set; choose one in the sidebar to pick test images.")
        return None
    try:
        data = test_set(dataset)
    except (FileNotFoundError, ValueError) as err:
        st.info(f"{err}. Set RS_DATA_DIR to a folder holding it to pick test images.")
        return None
    i = st.number_input(f"Test image (0 … {len(data) - 1} of {dataset})", min_value=0, max_value=len(data) - 1,
                        **persisted("test_index", 0))
    x, label = data[int(i)]
    st.caption(f"True label: **{names[label] if label < len(names) else label}** "
               f"(original index {data.original_index(int(i))})")
    return x, f"{dataset} test image {data.original_index(int(i))}", int(label)


def dual_estimators() -> dict[str, Path]:
    """Shipped σ-estimators (``checkpoints/<dataset>/dual/sigma_estimator.pth.tar``) by a readable label."""
    return {f"{p.parent.parent.name} · σ-estimator": p
            for p in sorted(CHECKPOINTS_DIR.glob("*/dual/sigma_estimator.pth.tar"))}


@st.cache_resource(show_spinner="Loading the σ-estimator and its experts…", max_entries=4)
def load_dual_models(path: str, device: str):
    """(estimator, {σ: expert}) as LoadedModels, shared by all sessions."""
    from rs_core.sigma_estimator import load_dual

    return load_dual(path, device)
