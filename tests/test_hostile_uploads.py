"""Every upload point of the app, pushed a handful of hostile files in one session (AppTest): each is
answered with a message naming the file (no traceback, no server path), and afterwards a good
file still loads and the page still works. The app is opened through its entrypoint (app.py draws the sidebar)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_data import _png_claiming
from test_fuzz_checkpoints import MEMO_LOOKUP, _legacy_file_declaring

from rs_core.data import load_image
from rs_core.logs.certify_logs import CertifyLog, format_certify_log
from rs_core.models.architectures import mnist_cnn
from rs_core.models.checkpoints import CHECKPOINTS_DIR
from widgets.sidebar import LOCAL

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _digit_png() -> bytes:
    img = Image.new("L", (120, 120), 255)
    img.paste(0, (55, 15, 68, 105))  # a dark "1" on white paper
    return _png(img)


def _app(page: str) -> AppTest:
    """The app through its entrypoint, switched to ``page`` (relative to the entrypoint's folder)."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    return at.switch_page(page).run()


def _page(model_id: str = "mnist/mnist_cnn/noise_0.50") -> AppTest:
    """The Certify page with the shipped model ``model_id`` (a registry id) chosen in the sidebar."""
    at = _app("pages/Certify.py")
    at.selectbox(key="model").set_value(model_id)
    return at.run()


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="source").set_value("upload").run()  # Certify opens on an input that needs no upload
    at.file_uploader(key="upload").set_value([(name, data, "application/octet-stream")])
    return at.run()


def _torch_bytes(obj, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _zip_bomb() -> bytes:
    """The shipped MNIST checkpoint with one member deflated and inflated to 64 MB (the file stays small)."""
    src = zipfile.ZipFile(MNIST_050)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            payload = src.read(info.filename)
            z.writestr(info.filename, bytes(64 * 2**20) if info.filename.endswith("/data/0") else payload)
    return out.getvalue()


def _state(**changes) -> dict:
    torch.manual_seed(0)
    state = mnist_cnn().state_dict()
    state.update(changes)
    return state


class _Payload:
    def __reduce__(self):
        return (exec, ("open('/tmp/rslab-pwned', 'w').write('x')",))


HOSTILE_CHECKPOINTS = [
    ("memo.pth", MEMO_LOOKUP, "corrupt or truncated"),  # KeyError escaped to the page before
    ("bomb.pth", _zip_bomb(), "compressed members"),
    ("legacy_8gb.pth", _legacy_file_declaring(2 * 10**9), "corrupt or truncated"),
    ("code.pth", _torch_bytes({"arch": "mnist_cnn", "state_dict": _state(), "x": _Payload()}), "refused"),
    ("wide.pth", _torch_bytes({"arch": "mnist_cnn", "state_dict": _state(**{
        "1.classifier.3.weight": torch.zeros(1, 256).expand(10**8, 256),
        "1.classifier.3.bias": torch.zeros(1).expand(10**8)})}), "declares"),
    ("nan.pth", _torch_bytes({"arch": "mnist_cnn", "state_dict": _state(**{
        "1.classifier.3.bias": torch.full((10,), float("nan"))})}), "NaN"),
    ("shape.pth", _torch_bytes({"arch": "mnist_cnn", "state_dict": _state(), "meta": {"input_shape": [1, 10**9, 2]}}),
     "input_shape"),
    ("half.pth", MNIST_050.read_bytes()[:5000], "corrupt or truncated"),
]


def test_sidebar_checkpoint_upload_answers_every_hostile_file_then_loads_a_good_one():
    Path("/tmp/rslab-pwned").unlink(missing_ok=True)
    at = _page("mnist/mnist_cnn/noise_1.00")  # σ = 1.0 until a file of its own is loaded
    at.selectbox(key="model").set_value(LOCAL).run()
    for name, data, message in HOSTILE_CHECKPOINTS:
        at.sidebar.file_uploader(key="ckpt_upload").set_value([(name, data, "application/octet-stream")])
        at.run()
        assert not at.exception, (name, at.exception)
        errors = [e.value for e in at.sidebar.error]
        assert any(e.startswith(f"checkpoint: {name}") or f"checkpoint: refused {name}" in e for e in errors), \
            (name, errors)
        assert any(message in e for e in errors), (name, errors)
        assert not any("rslab-upload" in e or "/tmp" in e for e in errors), errors  # no server path
        assert at.button(key="start").disabled if at.button else True
        assert at.session_state["settings"].loaded is None and not at.session_state["settings"].ready
    assert not Path("/tmp/rslab-pwned").exists()
    assert at.number_input(key="sigma").value == 1.0  # still the shipped model's: no file has loaded
    at.sidebar.file_uploader(key="ckpt_upload").set_value([("good.pth.tar", MNIST_050.read_bytes(),
                                                             "application/octet-stream")])
    at.run()
    assert not at.exception and not at.sidebar.error
    assert at.session_state["settings"].model_file == "good.pth.tar"  # the upload's own name, not the temp file
    assert at.number_input(key="sigma").value == 0.5  # σ follows the loaded file's training σ
    at = _upload(at, "one.png", _digit_png())
    assert not at.exception and not at.button(key="start").disabled


def _flipped(data: bytes, start: int) -> bytes:
    """``data`` with the first byte from ``start`` on whose flip makes it unreadable flipped (many flips
    decode to other pixels; the page's handling of the ones that do not is what is tested here)."""
    for pos in range(start, len(data)):
        b = bytearray(data)
        b[pos] ^= 0xFF
        try:
            load_image(bytes(b))
        except ValueError:
            return bytes(b)
    raise AssertionError("no refused flip")


def test_image_upload_answers_every_hostile_file_then_takes_a_good_one():
    photo = _png(Image.effect_noise((64, 64), 60).convert("RGB"))
    webp = _png(Image.effect_noise((64, 64), 60).convert("RGB"), "WEBP")
    gif = _png(Image.effect_noise((64, 64), 60).convert("L"), "GIF")
    hostile = [
        ("empty.png", b"", "empty"),
        ("noise.png", bytes(range(256)) * 4, "not an image"),
        ("bomb.png", _png_claiming(30_000, 30_000), "decompression bomb"),
        ("flip.png", _flipped(photo, 40), "image:"),
        ("flip.webp", _flipped(webp, 20), "image:"),
        ("flip.gif", _flipped(gif, 12), "image:"),
        ("cut.webp", webp[: len(webp) // 3], "image:"),
        ("exif.jpg", _png(Image.new("RGB", (8, 8)), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"), None),
    ]
    at = _page()
    for name, data, message in hostile:
        at = _upload(at, name, data)
        assert not at.exception, (name, at.exception)
        errors = [e.value for e in at.error]
        if message is None:  # a corrupt EXIF block is ignored: the pixels are still a usable image
            assert not errors and not at.button(key="start").disabled, errors
        else:
            assert any(e.startswith(f"{name}: image:") and message in e for e in errors), (name, errors)
            assert at.button(key="start").disabled
    at = _upload(at, "one.png", _digit_png())
    assert not at.exception and not at.error and not at.button(key="start").disabled


def test_log_upload_answers_every_hostile_file_and_keeps_the_good_ones():
    good = format_certify_log(CertifyLog.from_rows("mine", [(0, 1, 1, 0.5, 1, 0.1), (1, 2, -1, 0.0, 0, 0.1)]))
    header = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
    hostile = [
        ("nul.tsv", (header + "0\t1\t1\t0.5\t1\t0.1\x00\n").encode(), "line 2: time"),
        ("wide.tsv", (header + "0\t1\t1\t" + "9" * 200_000 + "\t1\t0.1\n").encode(), "tab-separated"),
        ("nan.tsv", (header + "0\t1\t1\tnan\t1\t0.1\n").encode(), "radius"),
        ("dup.tsv", (header + "0\t1\t1\t0.5\t1\t0.1\n" * 2).encode(), "appears twice"),
        ("days.tsv", (header + "0\t1\t1\t0.5\t1\t" + "1" * 400 + " days, 0:00:00\n").encode(), "time"),
        ("binary.tsv", bytes(range(256)), "not UTF-8"),
    ]
    at = _app("pages/Certified_accuracy.py")
    files = [(n, d, "application/octet-stream") for n, d, _ in hostile] + [("mine", good.encode(), "text/plain")]
    at.file_uploader(key="acc_uploads").set_value(files)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    for name, _, message in hostile:
        assert any(e.startswith(f"log: {name}") and message in e for e in errors), (name, errors)
    assert "mine" in at.table[0].value["log"].tolist()  # one label per curve, not "mine (mine)"
