"""The input picker of the sampling pages: upload, draw (digit models), an example image or a test image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch
from PIL import Image

from rs_core.data import EXAMPLE_IMAGES, example_image, get_dataset, load_image, prepare_input
from rs_core.untrusted import MAX_IMAGE_BYTES

from . import state

SOURCES = {"upload": "Upload", "draw": "Draw", "example": "Example image", "test": "Test image"}  # link → screen


@dataclass(frozen=True)
class Chosen:
    """An input as the model gets it: ``x`` [C, H, W] in [0, 1], where it came from, its true label if known,
    and the sha256 of the uploaded file's bytes (None for other sources)."""

    x: torch.Tensor
    source: str
    true_label: int | None = None
    file_sha256: str | None = None
    options: dict | None = None  # how an image became x: prepare_input's invert/frame_digit, model_preprocess
    hint: str | None = None  # a plain caveat about this input for this model (digit_hint's), shown with the result


@st.cache_resource(show_spinner="Reading the test set…")
def test_set(name: str):
    return get_dataset(name, "test")


def test_set_available(dataset: str | None) -> bool:
    """Whether this server can read ``dataset``'s test images (its files are under RS_DATA_DIR)."""
    if dataset is None:
        return False
    try:
        test_set(dataset)
    except (FileNotFoundError, ValueError):
        return False
    return True


def opening_source(dataset: str | None) -> str:
    """The input a page opens on: one that works without an upload — a test image where the data set is here (it has
    a true label), else an example image."""
    return "test" if test_set_available(dataset) else "example"


_PROBLEM = "input_problem"


def missing_reason() -> str:
    """Why the last :func:`choose_input` of this run returned None, in words for a disabled Start."""
    return st.session_state.get(_PROBLEM) or "choose an input first."


def _none(reason: str) -> None:
    st.session_state[_PROBLEM] = reason


def _link(**values) -> None:
    """Mirror the page's input choice into the URL (the sidebar writes the settings)."""
    from .sidebar import write_link

    write_link({key: str(value) for key, value in values.items()})


# How :func:`digit_hint` tells a digit from a photo. A digit is grey ink on plain paper: little colour, a frame of
# nearly one grey (the ink does not touch the edges) and ink on at most half of the picture. Measured on the shipped
# example images (every one but the horse silhouette is caught) and on drawn and photographed-style digits (none is).
COLOUR_LIMIT = 0.15  # mean of max(R, G, B) − min(R, G, B), in [0, 1]: a grey scan is ~0, the examples 0.16–0.42
PAPER_SHARE = 0.9  # at least this share of the edge pixels within PAPER_TOLERANCE of the edge's median grey
PAPER_TOLERANCE = 0.2
INK_SHARE = 0.5  # at most this share of all pixels farther than PAPER_TOLERANCE from the paper's grey


def digit_hint(image: Image.Image) -> str | None:
    """A plain caveat when ``image`` (decoded, before graying) does not look like a handwritten digit, for a digit
    (1×28×28) model; None when it does. A heuristic, documented by the constants above: a hint, never a refusal."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    edge = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = float(np.median(edge))
    why = []
    if float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean()) > COLOUR_LIMIT:
        why.append("it is in colour")
    if float((np.abs(edge - paper) < PAPER_TOLERANCE).mean()) < PAPER_SHARE:
        why.append("it has no plain background around it")
    if float((np.abs(grey - paper) >= PAPER_TOLERANCE).mean()) > INK_SHARE:
        why.append("it is mostly not background")
    if not why:
        return None
    return ("This model was trained on handwritten digits (MNIST), and this image does not look like one ("
            + ", ".join(why) + "). The model still answers with a digit: the certificate is about this model's "
            "answer — that it does not change within the radius — not about what the image shows.")


def _clear_upload() -> None:
    state.forget("upload")
    # A new uploader key: Streamlit cannot empty a file uploader, and the old one would still hold the file.
    state.remember("upload_round", state.recall("upload_round", 0) + 1)


def _uploader_key() -> str:
    n = state.recall("upload_round", 0)
    return "upload" if n == 0 else f"upload.{n}"


def _kept_upload() -> dict | None:
    """The image upload in use: the uploader's file when it holds one, else the last one kept. Streamlit redraws the
    uploader empty after a page switch or a model menu round trip (or, after the latter, still sending the old file
    while showing none), so an empty uploader never drops the kept file: the page's Remove does."""
    up = st.file_uploader("Image (PNG, JPEG, WebP, BMP, GIF first frame)", key=_uploader_key(),
                          type=["png", "jpg", "jpeg", "webp", "bmp", "gif"],
                          max_upload_size=MAX_IMAGE_BYTES // 2**20,  # the limit load_image enforces, stated as such
                          help="The last image you upload is kept when you switch pages or models; upload another "
                               "to replace it")
    kept = state.recall("upload")
    if up is not None:
        data = up.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        if kept is None or (kept["sha256"], kept["name"]) != (digest, up.name):
            kept = {"name": up.name, "data": data, "sha256": digest}
            state.remember("upload", kept)
    return kept


def _drawing(digit: bool, input_shape: tuple[int, int, int]) -> Chosen | None:
    """The canvas, restored from the kept drawing when it comes back (after a page switch or model round trip)."""
    from streamlit_drawable_canvas import st_canvas

    st.caption("Draw a digit with the mouse (white on black, like MNIST). The drawing is kept when you switch "
               "pages; the canvas's bin clears it.")
    kept = state.recall("drawing")
    if "canvas" not in st.session_state:  # the canvas is (re)mounted: it starts from the kept strokes
        state.remember("canvas_initial", None if kept is None else kept["json"])
    result = st_canvas(stroke_width=16, stroke_color="#ffffff", background_color="#000000", height=224,
                       width=224, drawing_mode="freedraw", key="canvas", return_image_data=True,
                       initial_drawing=state.recall("canvas_initial"))
    data = result.image_data if result is not None else None
    if data is not None:  # the canvas sent what it shows: a drawing, or nothing after its bin
        if data[..., :3].max() == 0:
            state.forget("drawing")
            kept = None
        else:
            kept = {"rgba": np.asarray(data, dtype=np.uint8), "json": result.json_data}
            state.remember("drawing", kept)
    if kept is None:
        return _none("draw a digit on the canvas (or choose another input above).")
    img = Image.fromarray(kept["rgba"], "RGBA")
    return Chosen(prepare_input(img, input_shape, frame_digit=digit), "drawing",
                  options={"invert": False, "frame_digit": digit, "model_preprocess": False})


def choose_input(input_shape: tuple[int, int, int], dataset: str | None, names: list[str], *,
                 preprocess=None, default_source: str | None = None) -> Chosen | None:
    """Returns the chosen input, or None (with a message on the page when something was wrong; the reason for a
    disabled Start in :func:`missing_reason`). ``preprocess``: the model's declared resize/crop policy for images
    (uploads, examples). ``default_source``: the source shown before the user chose one (else Upload).

    Every choice — the source, the uploaded file, the drawing, the example, the test index, invert and framing — is
    kept in the session and comes back after a visit to another page or another model."""
    st.session_state.pop(_PROBLEM, None)
    C = input_shape[0]
    sources = [k for k in SOURCES if C == 1 or k != "draw"]
    first = default_source if default_source in sources else sources[0]
    source = st.radio("Input", sources, format_func=SOURCES.get, horizontal=True, **state.kept("source", first,
                                                                                                  sources))
    _link(source=source)
    digit = C == 1 and input_shape[1:] == (28, 28)
    if source in ("upload", "example") and C == 1:
        c1, c2 = st.columns(2)
        invert = c1.radio("Invert", ["auto", "no", "yes"], horizontal=True,
                          help="Digit models expect light ink on a dark background; 'auto' inverts mostly light "
                               "images", **state.kept("invert", "auto", ["auto", "no", "yes"]))
        frame = c2.checkbox("Frame like MNIST", help="Crop to the ink, scale into 20×20 and center by mass, as MNIST "
                                                     "was made", **state.kept("frame", digit))
        opts = {"invert": {"auto": None, "no": False, "yes": True}[invert], "frame_digit": frame}
    else:
        opts = {}
    record = {"invert": opts.get("invert", False), "frame_digit": opts.get("frame_digit", False),
              "model_preprocess": preprocess is not None}  # what a certificate records (verify re-makes x with it)
    opts["preprocess"] = preprocess

    if source == "upload":
        kept = _kept_upload()
        if kept is None:
            st.caption("A link cannot carry an uploaded file; its sha256 is in the certificate.")
            return _none("upload an image (or choose Draw, Example image or Test image above).")
        card = st.container(border=True)
        thumb, words = card.columns([1, 3])
        words.caption(f"In use: **{kept['name']}** · sha256 `{kept['sha256'][:12]}…` · kept when you switch pages "
                      "or models (the uploader above may then show empty)")
        words.button("Remove image", key="upload_clear", on_click=_clear_upload)
        try:
            img = load_image(kept["data"])
            x = prepare_input(img, input_shape, **opts)
        except ValueError as err:  # load_image's contract: whatever the decoder raised
            st.error(f"{kept['name']}: {err}")
            return _none(f"{kept['name']} cannot be used (see the message above): upload another image.")
        thumb.image(img, width="stretch")
        return Chosen(x, f"upload {kept['name']}", None, kept["sha256"], record,
                      digit_hint(img) if digit else None)
    if source == "draw":
        return _drawing(digit, input_shape)
    if source == "example":
        examples = list(EXAMPLE_IMAGES)
        choice = st.selectbox("Example (bundled with scikit-image)", examples,
                              format_func=lambda k: f"{k}: {EXAMPLE_IMAGES[k][1]}",
                              **state.kept("example", examples[0], examples))
        _link(example=choice)
        try:
            img = example_image(choice)
            return Chosen(prepare_input(img, input_shape, **opts), f"example {choice}", options=record,
                          hint=digit_hint(img) if digit else None)
        except ValueError as err:
            st.error(str(err))
            return _none("this example image cannot be read here (see the message above).")
    # Test image
    if dataset is None:
        st.info("The model does not name its data set; choose one in the sidebar to pick test images.")
        return _none("the model names no data set: choose one in the sidebar, or another input.")
    try:
        data = test_set(dataset)
    except (FileNotFoundError, ValueError) as err:
        st.info(f"{err}. Set RS_DATA_DIR to a folder holding it to pick test images.")
        return _none(f"{dataset}'s test images are not on this server: choose another input.")
    i = st.number_input(f"Test image (0 … {len(data) - 1} of {dataset})", step=1, **state.kept("test_index", 0))
    _link(test_index=i)
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(data):
        st.error(f"Test image must be a whole number from 0 to {len(data) - 1}, got {i}")
        return _none("the test image number is out of range (see the message above).")
    x, label = data[i]
    st.caption(f"True label: **{names[label] if label < len(names) else label}** "
               f"(original index {data.original_index(i)})")
    return Chosen(x, f"{dataset} test image {data.original_index(i)}", int(label))
