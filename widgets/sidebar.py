"""The sidebar, drawn once per run by the entrypoint: model, device, σ and the sampling settings; and the link.

Every number is checked by :mod:`widgets.fields`; an invalid one stays on screen with its reason under
it and in ``Settings.problems`` (pages disable Start), never clamped. The settings (and the page's input
choice, see :mod:`widgets.inputs`) are mirrored into the URL's query string, so a link reproduces a run;
a link's values are read once, when a session starts.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import streamlit as st
import torch

from rs_core.data import DATASETS
from rs_core.models.checkpoints import LoadedModel, load_checkpoint
from rs_core.models.server_folder import PREFIX, find_folder_model, folder_models
from rs_core.models.shipped import default_model, find_model, menu_models, shipped_denoisers
from rs_core.smoothing.noises import NOISES, get_noise

from . import fields, own_model, state

LOCAL = "local"  # the model choice "your own file" (shipped models are chosen by registry id)
_LINK_READ = "link_read"
LINK_SEEN = "link_seen"  # the addresses this app wrote into the address bar in this session, oldest first
LINKS_KEPT = 64
_SIGMA_FOR = "sigma_for"
_NOISE_FOR = "noise_for"

NUMBERS = {  # widget key → (field, label, step, format, help)
    "sigma": ("sigma", "σ (noise level)", 0.05, "%.3f",
              ("The standard deviation of the noise added to every pixel value, for every noise (Gaussian "
               "N(0, σ²); Laplace of scale λ = σ/√2; uniform on [−λ, λ] with λ = σ√3), in the model's input "
               "units: pixels scaled to [0, 1] (σ = 0.25 ≈ 64 of 255 grey levels). More noise: larger radii where "
               "the model stays sure, more abstentions elsewhere.")),
    "alpha": ("alpha", "α (certificate fails with probability ≤ α)", None, "%.4g", None),
    "n0": ("n0", "n0 (selection)", 10, None, None),
    "n_max": ("n_max", "n max (estimation)", 10_000, None, None),
    "batch": ("batch", "Batch size (largest)", 100, None,
              ("The most samples per forward pass. Certify sizes its batches to take about 0.5 s each within this, "
               "so Stop answers within about a second on a big model; the size used is in the certificate.")),
    "seed": ("seed", "Seed", 1, None, "The same seed, input and settings reproduce a certificate exactly"),
}
DEFAULTS = {"sigma": 0.25, "alpha": 0.001, "n0": 100, "n_max": 100_000, "batch": 1000, "seed": 0}
NOISE_LABELS = {"gaussian": "Gaussian", "laplace": "Laplace", "uniform": "uniform"}
NORM_LABELS = {"l2": "ℓ2", "l1": "ℓ1", "linf": "ℓ∞"}
_LINK_NOISE = "link_noise"  # a link's noise/norm pair, kept until the user changes either (shown if invalid)


def norm_label(noise: str, norm: str) -> str:
    """How the sidebar names a norm for a noise: Gaussian's ℓ1 and ℓ∞ radii are derived from its ℓ2 radius."""
    if noise == "gaussian" and norm == "l1":
        return "ℓ1 (the ℓ2 radius: an ℓ1 ball lies in the ℓ2 ball)"
    if noise == "gaussian" and norm == "linf":
        return "ℓ∞ (derived from ℓ2: radius / √d)"
    return NORM_LABELS[norm]


def gaussian_l2_note(noise: str, norm: str, why: str = "") -> str | None:
    """What a Gaussian-ℓ2-only page (Compare σ, Dual RS) says when the sidebar shows another noise or norm: that it
    does not use them, and what they would change; None for Gaussian ℓ2. ``why``: the page's reason, if any."""
    if (noise, norm) == ("gaussian", "l2"):
        return None
    return (f"This page smooths with Gaussian noise and certifies ℓ2 radii{why}: its results are Gaussian ℓ2 "
            f"certificates, not {NOISE_LABELS.get(noise, noise)}-noise {NORM_LABELS.get(norm, norm)} ones. The "
            f"sidebar's {NOISE_LABELS.get(noise, noise)} noise and {NORM_LABELS.get(norm, norm)} norm would draw "
            "other noise and measure the radius in another norm; they apply on the Certify page.")


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


def _model_label(model_id: str) -> str:
    if model_id == LOCAL:
        return "Your model file…"
    if model_id.startswith(PREFIX):
        m = find_folder_model(model_id)
        return model_id[len(PREFIX):] if m is None else m.label
    m = find_model(model_id)
    return model_id if m is None else m.label


def _read_link(model_ids: list[str], devices: list[str]) -> dict[str, str]:
    """Once per session: put the link's settings into the widgets; returns what was wrong with it."""
    ss = st.session_state
    ss[_LINK_READ] = True
    # The link itself counts as seen: the browser may send it again before this app's own address reaches it.
    ss[LINK_SEEN] = [*ss.get(LINK_SEEN, [])[-(LINKS_KEPT - 1):], st.query_params.to_dict()]
    values, problems = fields.parse_query(st.query_params.to_dict())
    if "model" in values:
        if values["model"] in model_ids:
            ss["model"] = values["model"]
        else:
            problems["model"] = (f"model in the link: {values['model'][:60]!r} is not a shipped model nor one in the "
                                 "server's model folder")
    if "device" in values:
        if values["device"] in devices:
            ss["device"] = values["device"]
        else:
            problems["device"] = f"device in the link: {values['device'][:20]!r} is not available here"
    for key in NUMBERS:
        if key in values:
            ss[key] = values[key]  # kept as given, even out of range: shown as invalid, never replaced
    if "noise" in values or "norm" in values:
        # Kept as given (None: not in the link) and checked by _noise_and_norm once the model's noise is known: a
        # valid pair is put into the widgets, an impossible one is shown as invalid, never replaced.
        ss[_LINK_NOISE] = (values.get("noise"), values.get("norm"))
        ss.setdefault("model", default_model().id if default_model() else LOCAL)
        ss[_NOISE_FOR] = ("link", ss["model"])  # the link's noise, not the model's training noise, for this model
        if values.get("noise") in NOISES:
            ss["noise"] = values["noise"]
    else:
        ss.pop(_LINK_NOISE, None)  # an earlier link's pair does not outlive a link that names none
    if "sigma" in values:
        ss.setdefault("model", default_model().id if default_model() else LOCAL)
        ss[_SIGMA_FOR] = (ss["model"], None, None)  # the link's σ, not the model's training σ
    for key in ("source", "test_index", "example"):
        if key in values:
            state.remember(key, values[key])
    return problems


def draw() -> state.Settings:
    """Draw the sidebar (entrypoint only) and store the :class:`~widgets.state.Settings` it chose."""
    ss = st.session_state
    sb = st.sidebar
    models = [m.id for m in menu_models()] + [m.id for m in folder_models()]
    devices = available_devices()
    # A link is read when a session starts, and again whenever the address is none this app wrote into it (a link
    # pasted into a tab whose session Streamlit resumed). Not merely "differs from the last one written": a run
    # interrupted by the user's next edit may never have put its address into the browser, whose next rerun then
    # carries an older address of this session — re-reading that would undo the edits since.
    now = st.query_params.to_dict()
    if not ss.get(_LINK_READ) or (now and now not in ss.get(LINK_SEEN, [])):
        ss["link_problems"] = _read_link(models, devices)
    options = models + [LOCAL]
    if ss.get("model") not in options:
        ss["model"] = default_model().id if default_model() else LOCAL
    if ss.get("device") not in devices:
        ss["device"] = devices[0]
    for key, value in DEFAULTS.items():
        ss.setdefault(key, value)

    sb.header("Settings")
    if ss.get("link_problems"):
        sb.warning("Parts of the link were not used: " + "; ".join(ss["link_problems"].values()) + ".")
    model_id = sb.selectbox("Model", options, format_func=_model_label, key="model",
                            help="Shipped checkpoints (see checkpoints/README.md for their cards), models in the "
                                 "server's model folder (RS_MODELS_DIR), or a model file of your own: ONNX, "
                                 "torch.export (.pt2), safetensors or a state dict")
    device = sb.selectbox("Device", devices, key="device")

    loaded, error, dataset, train_sigma, label, file_name = None, None, None, None, _model_label(model_id), None
    own_problems: dict[str, str] = {}  # a question about the own model still unanswered (its normalization)
    if model_id == LOCAL or model_id.startswith(PREFIX):
        loaded, error, label, file_name, own_problems = own_model.draw(sb, model_id, device)
        ds = sb.selectbox("Data set (test images, class names)", ["from the file"] + list(DATASETS),
                          key="ckpt_dataset")
        if loaded is not None:
            dataset = loaded.meta.get("dataset") if ds == "from the file" else ds
            train_sigma = loaded.sigma
    else:
        entry = find_model(model_id)
        dataset, train_sigma, file_name = entry.dataset, entry.sigma, f"{entry.id}/{entry.path.name}"
        label = entry.short_label  # results are labelled without the card's accuracy
        try:
            loaded = load_model(str(entry.path), device)
        except ValueError as err:
            error = f"{label}: {err}"
    if dataset not in DATASETS:
        dataset = None
    if error:
        sb.error(error)
    elif loaded is not None and model_id != LOCAL and not model_id.startswith(PREFIX):
        own_model.understood(sb, loaded, train_sigma, own=False)

    denoiser, denoiser_label, denoiser_file = _denoiser(sb, loaded, device)

    # σ follows the model: choosing another model, file or denoiser resets it to the σ they were trained for (the
    # denoiser's when there is one: a clean classifier has none).
    model_key = (model_id, None if loaded is None or model_id != LOCAL else loaded.sha256,
                 None if denoiser is None else denoiser.sha256)
    if ss.get(_SIGMA_FOR) != model_key and (model_id != LOCAL or loaded is not None):
        ss[_SIGMA_FOR] = model_key
        target = denoiser.sigma if denoiser is not None and denoiser.sigma else train_sigma
        ss["sigma"] = float(target) if target else DEFAULTS["sigma"]

    problems: dict[str, str] = dict(own_problems)

    def number(where, key: str) -> float | int | None:
        name, text, step, fmt, help_ = NUMBERS[key]
        kw = {"step": step} if step is not None else {}
        if fmt is not None:
            kw["format"] = fmt
        # No default in any box: Streamlit's frontend commits a number box's default in place of an empty or
        # non-numeric entry (Chromium empties a number box on "abc"), and number_input's implicit default 0 then
        # read "σ … got 0", a value nobody typed. Without one such an entry arrives as None ("σ is empty"). The
        # values themselves come from session state (DEFAULTS, a link).
        kw["value"] = None
        value = where.number_input(text, key=key, help=help_, **kw)
        why = fields.problem(name, value)
        if why is not None:
            problems[key] = why
            where.error(why)
        return value

    sigma = number(sb, "sigma")
    if "sigma" not in problems and denoiser is not None:
        if denoiser.sigma is not None and not math.isclose(sigma, denoiser.sigma, rel_tol=1e-6):
            sb.warning(f"The denoiser was trained for σ = {denoiser.sigma:g}. At σ = {sigma:g} the certificate is "
                       "still valid for f∘D, but the denoiser may not remove this much (or this little) noise.")
    elif "sigma" not in problems:
        if train_sigma == 0:
            sb.info("This model was trained without noise: smoothed directly it certifies little. Choose a "
                    "denoiser below σ (denoised smoothing), or a noise-trained model.")
        elif train_sigma is not None and not math.isclose(sigma, train_sigma, rel_tol=1e-6):
            sb.warning(f"The model was trained with σ = {train_sigma:g}. Certifying at σ = {sigma:g} is sound but "
                       "pessimistic: a model certifies best at the σ it was trained for (Cohen et al. App. H.3).")
        elif train_sigma is None and loaded is not None:
            sb.info("The file does not say which σ the model was trained with.")
    noise, norm, usual = _noise_and_norm(sb, model_id, loaded, problems)
    alpha = number(sb, "alpha")
    c1, c2 = sb.columns(2)
    n0, n_max = number(c1, "n0"), number(c2, "n_max")
    batch, seed = number(c1, "batch"), number(c2, "seed")

    s = state.Settings(
        model_id=None if model_id == LOCAL else model_id, model_label=label, model_file=file_name, loaded=loaded,
        dataset=dataset, train_sigma=train_sigma, device=device, error=error, problems=problems,
        sigma=None if "sigma" in problems else float(sigma), alpha=None if "alpha" in problems else float(alpha),
        n0=None if "n0" in problems else int(n0), n_max=None if "n_max" in problems else int(n_max),
        batch_size=None if "batch" in problems else int(batch), seed=None if "seed" in problems else int(seed),
        denoiser=denoiser, denoiser_label=denoiser_label, denoiser_file=denoiser_file, noise=noise, norm=norm)
    state.store(s)
    # The link: what is on screen (invalid values too, so a shared link shows the same problem). The model's own
    # noise and its first norm (what a link without them opens with) are left out, so that links made before other
    # noises existed stay what they were; any other pair, Gaussian ℓ2 for a Laplace model too, is written.
    link_noise, link_norm = ss.get(_LINK_NOISE) or (noise, norm)
    write_link(fields.to_query(
        {"model": None if model_id == LOCAL else model_id, "device": device,
         **{k: ss.get(k) for k in NUMBERS if isinstance(ss.get(k), (int, float))},
         **({} if (link_noise, link_norm) == usual else {"noise": link_noise, "norm": link_norm})}),
        replace=True)
    return s


def _forget_link_noise() -> None:
    st.session_state.pop(_LINK_NOISE, None)


def _noise_and_norm(sb, model_id: str, loaded: LoadedModel | None,
                    problems: dict[str, str]) -> tuple[str, str, tuple[str, str]]:
    """The sidebar's noise and norm, and the model's usual pair (its training noise, that noise's first norm). The
    noise follows the model (its training noise) like σ; the norms offered are those the noise certifies. A link's
    impossible pair is shown as a problem (nothing runs) until either is changed."""
    ss = st.session_state
    trained = None if loaded is None else loaded.noise
    if model_id not in (LOCAL,) and not model_id.startswith(PREFIX) and find_model(model_id) is not None:
        trained = find_model(model_id).noise
    follow = (model_id, None if loaded is None else loaded.sha256)
    from_link = ss.get(_NOISE_FOR) == ("link", model_id)  # the first run after a link for this model
    if loaded is not None and (from_link or ss.get(_NOISE_FOR) != follow):
        link_noise = (ss.get(_LINK_NOISE) or (None, None))[0]
        if not (from_link and link_noise in NOISES):  # a link's valid noise stays; otherwise the model's
            ss["noise"] = trained if trained in NOISES else "gaussian"
            ss["norm"] = get_noise(ss["noise"], 1.0).norms[0]  # the norm that noise certifies first (Gaussian: ℓ2)
        if not from_link:
            # Another model chosen since the link: its noise replaces the link's pair, as its σ replaces the link's σ
            # (the link then says what is on screen).
            ss.pop(_LINK_NOISE, None)
        ss[_NOISE_FOR] = follow
    if ss.get("noise") not in NOISES:
        ss["noise"] = "gaussian"
    noise = sb.selectbox("Noise", list(NOISES), format_func=NOISE_LABELS.get, key="noise", on_change=_forget_link_noise,
                         help="The noise added to every pixel value; σ is its standard deviation for every noise "
                              "(Gaussian N(0, σ²); Laplace of scale λ = σ/√2; uniform on [−λ, λ], λ = σ√3). Each "
                              "certifies its own shape of region: Gaussian ℓ2 balls, Laplace ℓ1, uniform ℓ1 and ℓ∞ "
                              "(Yang et al. 2020; Teng et al. 2020).")
    offered = list(get_noise(noise, 1.0).norms)
    why = None
    if ss.get(_LINK_NOISE) is not None:
        l_noise, l_norm = ss[_LINK_NOISE]
        if l_noise is None:  # a link with a norm only: the norm of the noise on screen (the model's)
            l_noise = noise
        if l_noise not in NOISES:
            why = f"noise in the link: {str(l_noise)[:20]!r} is not one of {', '.join(NOISES)}"
        elif l_norm is not None and l_norm not in get_noise(l_noise, 1.0).norms:
            why = (f"norm in the link: {l_noise} noise certifies {', '.join(get_noise(l_noise, 1.0).norms)}, "
                   f"not {str(l_norm)[:20]!r}")
        else:  # a valid pair: into the widgets, and nothing more to keep (the link is written from the widgets)
            if l_norm is not None:
                ss["norm"] = l_norm
            ss.pop(_LINK_NOISE, None)
    if why:
        ss["norm"] = None  # nothing chosen until the user chooses: the link's norm is not silently replaced
    elif ss.get("norm") not in offered:  # another noise was chosen: its first norm (the list shows which)
        ss["norm"] = offered[0]
    norm = sb.selectbox("Norm of the radius", offered, format_func=lambda n: norm_label(noise, n), key="norm",
                        on_change=_forget_link_noise, placeholder="choose a norm",
                        help="The norm the certified radius is measured in: one the noise certifies.")
    if why:
        problems["norm"] = why
        sb.error(why + " — choose a norm here.")
        norm = offered[0]  # for captions only: nothing runs while the problem stands
    sigma_now = ss.get("sigma")
    if trained is not None and noise != trained and isinstance(sigma_now, (int, float)) and sigma_now > 0:
        sb.warning(f"The model was trained under {NOISE_LABELS.get(trained, trained)} noise. Smoothing it with "
                   f"{NOISE_LABELS[noise]} noise is sound, but a model certifies best under the noise it was trained "
                   "with.")
    if norm == "linf" and noise == "uniform":
        sb.caption("Uniform noise's ℓ∞ radius shrinks like 1/d with the input's dimension d: tiny on images.")
    usual_noise = trained if trained in NOISES else "gaussian"
    return noise, norm, (usual_noise, get_noise(usual_noise, 1.0).norms[0])


NO_DENOISER = "none"


@st.cache_resource(show_spinner="Loading the denoiser…", max_entries=8)
def load_denoiser_file(path: str, device: str, name: str | None = None):
    from rs_core.models.denoisers import load_denoiser

    return load_denoiser(path, device, name=name)


def _denoiser(sb, loaded: LoadedModel | None, device: str):
    """The sidebar's denoiser choice (denoised smoothing): none, a shipped denoiser for this input shape, or a file.
    Returns (LoadedModel | None, label, file name); a bad file is an error under the choice, and no denoiser."""
    ss = st.session_state
    if loaded is None:
        return None, None, None
    fitting = [d for d in shipped_denoisers() if tuple(d.input_shape) == tuple(loaded.input_shape)]
    options = [NO_DENOISER] + [d.id for d in fitting] + [LOCAL]
    if ss.get("denoiser") not in options:
        ss["denoiser"] = NO_DENOISER
    labels = {d.id: d.label for d in fitting} | {NO_DENOISER: "none", LOCAL: "Your denoiser file…"}
    choice = sb.selectbox("Denoiser (denoised smoothing)", options, format_func=labels.get, key="denoiser",
                          help="Certify f∘D: a denoiser D trained for σ in front of the classifier f (Salman et al. "
                               "2020). The certificate is Cohen's, for the smoothed f∘D.")
    if choice == NO_DENOISER:
        return None, None, None
    if choice == LOCAL:
        up = sb.file_uploader("Denoiser checkpoint (.pth, .pth.tar)", type=["pth", "tar", "pt"],
                              key="denoiser_upload", help="Loaded with torch.load(weights_only=True)",
                              max_upload_size=own_model.upload_limit()[0])
        if up is None:
            sb.info("Upload a denoiser file, or choose none.")
            return None, None, None
        path, name = _stash_upload(up.getvalue()), up.name
    else:
        entry = next(d for d in fitting if d.id == choice)
        path, name = str(entry.path), f"{entry.id}/{entry.path.name}"
    try:
        den = load_denoiser_file(path, device, name=name)
        from rs_core.models.denoisers import denoised

        denoised(loaded.model, den.model, tuple(loaded.input_shape))  # refuses a denoiser for other images
    except ValueError as err:
        sb.error(str(err))
        return None, None, None
    return den, labels.get(choice, name), name


def write_link(values: dict[str, str], *, replace: bool = False) -> None:
    """Put ``values`` into the address bar (all of it when ``replace``), remembering what this app wrote."""
    if replace:
        st.query_params.from_dict(values)
    else:
        for key, value in values.items():
            st.query_params[key] = value
    written = [d for d in st.session_state.get(LINK_SEEN, []) if d != st.query_params.to_dict()]
    st.session_state[LINK_SEEN] = [*written[-(LINKS_KEPT - 1):], st.query_params.to_dict()]
