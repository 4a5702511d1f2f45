"""The input picker of the sampling pages: upload, draw (digit models), an example image or a test image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from rs_core.data import EXAMPLE_IMAGES, example_image, get_dataset, load_image, prepare_input

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


@st.cache_resource(show_spinner="Reading the test set…")
def test_set(name: str):
    return get_dataset(name, "test")


def _link(**values) -> None:
    """Mirror the page's input choice into the URL (the sidebar writes the settings)."""
    from .sidebar import write_link

    write_link({key: str(value) for key, value in values.items()})


def choose_input(input_shape: tuple[int, int, int], dataset: str | None, names: list[str], *,
                 preprocess=None) -> Chosen | None:
    """Returns the chosen input, or None (with a message on the page when something was wrong). ``preprocess``: the
    model's declared resize/crop policy for images (uploads, examples)."""
    C = input_shape[0]
    sources = [k for k in SOURCES if C == 1 or k != "draw"]
    if state.recall("source") not in sources:
        state.remember("source", sources[0])
    source = st.radio("Input", sources, format_func=SOURCES.get, horizontal=True, **state.kept("source", sources[0],
                                                                                                  sources))
    _link(source=source)
    digit = C == 1 and input_shape[1:] == (28, 28)
    if source in ("upload", "example") and C == 1:
        c1, c2 = st.columns(2)
        invert = c1.radio("Invert", ["auto", "no", "yes"], horizontal=True, key="invert",
                          help="Digit models expect light ink on a dark background; 'auto' inverts mostly light "
                               "images")
        frame = c2.checkbox("Frame like MNIST", value=digit, key="frame",
                            help="Crop to the ink, scale into 20×20 and center by mass, as MNIST was made")
        opts = {"invert": {"auto": None, "no": False, "yes": True}[invert], "frame_digit": frame}
    else:
        opts = {}
    record = {"invert": opts.get("invert", False), "frame_digit": opts.get("frame_digit", False),
              "model_preprocess": preprocess is not None}  # what a certificate records (verify re-makes x with it)
    opts["preprocess"] = preprocess

    if source == "upload":
        up = st.file_uploader("Image (PNG, JPEG, WebP, BMP, GIF first frame)", key="upload",
                              type=["png", "jpg", "jpeg", "webp", "bmp", "gif"])
        if up is None:
            st.caption("A link cannot carry an uploaded file; its sha256 is in the certificate.")
            return None
        data = up.getvalue()
        try:
            img = load_image(data)
            return Chosen(prepare_input(img, input_shape, **opts), f"upload {up.name}", None,
                          hashlib.sha256(data).hexdigest(), record)
        except ValueError as err:  # load_image's contract: whatever the decoder raised
            st.error(f"{up.name}: {err}")
        return None
    if source == "draw":
        from streamlit_drawable_canvas import st_canvas

        st.caption("Draw a digit with the mouse (white on black, like MNIST).")
        result = st_canvas(stroke_width=16, stroke_color="#ffffff", background_color="#000000", height=224,
                           width=224, drawing_mode="freedraw", key="canvas", return_image_data=True)
        data = result.image_data if result is not None else None
        if data is None or data[..., :3].max() == 0:
            return None
        from PIL import Image

        img = Image.fromarray(np.asarray(data, dtype=np.uint8), "RGBA")
        return Chosen(prepare_input(img, input_shape, frame_digit=digit), "drawing",
                      options={"invert": False, "frame_digit": digit, "model_preprocess": False})
    if source == "example":
        examples = list(EXAMPLE_IMAGES)
        choice = st.selectbox("Example (bundled with scikit-image)", examples,
                              format_func=lambda k: f"{k}: {EXAMPLE_IMAGES[k][1]}",
                              **state.kept("example", examples[0], examples))
        _link(example=choice)
        try:
            return Chosen(prepare_input(example_image(choice), input_shape, **opts), f"example {choice}",
                          options=record)
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
    i = st.number_input(f"Test image (0 … {len(data) - 1} of {dataset})", step=1, **state.kept("test_index", 0))
    _link(test_index=i)
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(data):
        st.error(f"Test image must be a whole number from 0 to {len(data) - 1}, got {i}")
        return None
    x, label = data[i]
    st.caption(f"True label: **{names[label] if label < len(names) else label}** "
               f"(original index {data.original_index(i)})")
    return Chosen(x, f"{dataset} test image {data.original_index(i)}", int(label))
