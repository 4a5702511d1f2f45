import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rs_core.data import (
    EXAMPLE_IMAGES,
    center_digit,
    data_dir,
    dataset_info,
    example_image,
    get_dataset,
    load_image,
    prepare_input,
    preprocess_image,
    read_idx,
)
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint

HAS_DATA = (data_dir() / "mnist" / "MNIST" / "raw").exists()
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"no MNIST under RS_DATA_DIR={data_dir()}")
needs_mnist_model = pytest.mark.skipif(not (CHECKPOINTS_DIR / "mnist").exists(), reason="no shipped MNIST model")


def test_partial_cifar_keeps_original_indices(tmp_path):
    d = tmp_path / "cifar10-partial"
    d.mkdir()
    images = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    np.savez(d / "train_partial.npz", images=images, labels=np.arange(5), index=np.array([3, 9, 14, 20, 41]))
    ds = get_dataset("cifar10-partial", "train", root=tmp_path)
    x, y = ds[2]
    assert len(ds) == 5 and ds.original_index(2) == 14 and y == 2
    assert x.shape == (3, 32, 32) and torch.allclose(x * 255, torch.from_numpy(images[2]).permute(2, 0, 1).float())


def test_missing_data_set_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="^dataset: cifar10 .*not found.*--download"):
        get_dataset("cifar10", "test", root=tmp_path)
    with pytest.raises(ValueError, match="^dataset: unknown"):
        dataset_info("svhn")
    with pytest.raises(ValueError, match="^split:"):
        get_dataset("mnist", "validation", root=tmp_path)


@needs_data
def test_mnist_from_rs_data_dir():
    ds = get_dataset("mnist", "test")
    x, y = ds[0]
    assert len(ds) == 10_000 and x.shape == (1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1 and y == 7


@needs_data
def test_mnist_read_from_its_idx_files_equals_torchvisions_reading():
    from torchvision.datasets import MNIST
    from torchvision.transforms.functional import to_tensor

    ours, theirs = get_dataset("mnist", "test"), MNIST(str(data_dir() / "mnist"), train=False)
    assert len(ours) == len(theirs)
    for i in (0, 1, 4321, 9999):
        img, label = theirs[i]
        x, y = ours[i]
        assert torch.equal(x, to_tensor(img)) and y == label and ours.original_index(i) == i


def test_idx_files_that_are_not_what_they_say_are_refused(tmp_path):
    good = bytes([0, 0, 8, 3]) + np.array([2, 2, 3], ">u4").tobytes() + bytes(range(12))
    (tmp_path / "ok").write_bytes(good)
    assert read_idx(tmp_path / "ok", 3).tolist() == np.arange(12).reshape(2, 2, 3).tolist()
    for name, raw, dims in [("magic", bytes([0, 0, 9, 3]) + good[4:], 3), ("dims", good, 1),
                            ("short", good[:-1], 3), ("long", good + b"x", 3), ("tiny", good[:5], 3)]:
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ValueError, match=f"^{name}: "):
            read_idx(tmp_path / name, dims)
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(good)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + np.array([3], ">u4").tobytes() + bytes(3))
    with pytest.raises(ValueError, match=r"^dataset: .*raw: not readable MNIST files \(2 images but 3 labels\)"):
        get_dataset("mnist", "test", root=tmp_path)


@pytest.mark.skipif(not (data_dir() / "cifar10-partial").exists(), reason="no cifar10-partial under RS_DATA_DIR")
def test_shared_partial_cifar():
    test = get_dataset("cifar10-partial", "test")
    assert len(test) == 1017 and test.original_index(1016) == 1016
    assert len(get_dataset("cifar10-partial", "train")) == 8068


def _roundtrip(img: Image.Image, fmt: str, **kw) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    buf.seek(0)
    return Image.open(buf)


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGB", (64, 48), (255, 0, 0)),
    lambda: Image.new("RGBA", (40, 40), (0, 0, 0, 0)),                 # transparent → white
    lambda: Image.new("P", (30, 30)),
    lambda: Image.new("CMYK", (30, 30), (0, 255, 255, 0)),
    lambda: Image.fromarray(np.full((30, 30), 65535, dtype=np.uint16)),  # 16-bit
    lambda: Image.new("LA", (30, 30), (0, 0)),
    lambda: Image.new("1", (30, 30), 1),
])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_preprocess_any_mode_to_model_input(make, shape):
    x = preprocess_image(make(), shape)
    assert x.shape == shape and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_transparent_and_16_bit_images_convert_correctly():
    assert float(preprocess_image(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), (1, 28, 28)).min()) == 1.0
    white16 = Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16))
    assert float(preprocess_image(white16, (1, 28, 28)).min()) == 1.0


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 30, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    rotated = _roundtrip(img, "JPEG", exif=exif.tobytes())
    x = preprocess_image(rotated, (1, 28, 28))
    # After the 90° turn the white half is on top.
    assert float(x[0, :10].mean()) > 0.8 and float(x[0, -10:].mean()) < 0.2


def test_aspect_ratio_kept_by_center_crop():
    img = Image.new("L", (100, 50), 0)
    img.paste(255, (25, 0, 75, 50))  # white center square
    x = preprocess_image(img, (1, 28, 28))
    assert float(x.mean()) > 0.95


def test_bad_input_shape():
    with pytest.raises(ValueError, match="^input_shape:"):
        preprocess_image(Image.new("RGB", (8, 8)), (2, 8, 8))





# --- uploads ------------------------------------------------------------------------------------

def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_allowed_formats_load_and_preprocess(fmt):
    img = load_image(_bytes(Image.new("RGB", (40, 30), (10, 200, 30)), fmt))
    assert img.size == (40, 30)
    assert preprocess_image(img, (3, 32, 32)).shape == (3, 32, 32)


def test_gif_uses_the_first_frame():
    frames = [Image.new("L", (20, 20), v) for v in (255, 0, 0)]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    x = preprocess_image(load_image(data), (1, 28, 28))
    assert float(x.mean()) > 0.9


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is text, not a picture", "not an image"),
    (b"%PDF-1.4\n" + b"0" * 100, "not an image"),
])
def test_not_an_image(data, message):
    with pytest.raises(ValueError, match=f"^image: .*{message}"):
        load_image(data)


def test_disallowed_format_is_not_decoded():
    tiff = _bytes(Image.new("RGB", (8, 8)), "TIFF")
    with pytest.raises(ValueError, match="^image: not an image in a supported format"):
        load_image(tiff)


def test_truncated_file():
    data = _bytes(Image.effect_noise((200, 200), 50).convert("RGB"), "PNG")
    with pytest.raises(ValueError, match="^image: the file is truncated or corrupt"):
        load_image(data[: len(data) // 2])


def _png_claiming(w: int, h: int) -> bytes:
    """A small PNG whose header claims w×h grey pixels (only a few rows of data follow)."""
    import zlib

    def chunk(tag, payload):
        return len(payload).to_bytes(4, "big") + tag + payload + zlib.crc32(tag + payload).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    raw = zlib.compress(b"\x00" * (w + 1) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize("w, h, message", [
    (20_000, 20_000, "refused as a decompression bomb"),   # past Pillow's error threshold
    (10_000, 10_000, "(refused as a decompression bomb|10000×10000 pixels is too large)"),  # Pillow only warns
    (8_000, 8_000, "8000×8000 pixels is too large"),        # under Pillow's threshold, over our cap
])
def test_decompression_bomb_is_refused_before_decoding(w, h, message):
    data = _png_claiming(w, h)
    assert len(data) < 100_000
    with pytest.raises(ValueError, match=f"^image: {message}"):
        load_image(data)


def test_bomb_warning_is_an_error_in_a_real_process():
    """Outside pytest (which resets warning filters per test) the module's filter turns Pillow's warning into an error."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, 'tests'); from test_data import _png_claiming; "
            "from rs_core.data import load_image\n"
            "try:\n    load_image(_png_claiming(10_000, 10_000))\nexcept ValueError as e:\n    print(e)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout.startswith("image: refused as a decompression bomb"), proc.stdout + proc.stderr
    assert "DecompressionBombWarning" not in proc.stderr


def test_pixel_cap_is_configurable():
    with pytest.raises(ValueError, match="too large"):
        load_image(_bytes(Image.new("L", (300, 300)), "PNG"), max_pixels=10_000)


def test_oversized_file():
    with pytest.raises(ValueError, match="^image: the file: 2.0 MB is over the limit of 1.0 MB"):
        load_image(b"\x00" * (2 * 2**20), max_bytes=2**20)


@pytest.mark.parametrize("make, fmt", [
    (lambda: Image.fromarray(np.full((30, 30), 40000, dtype=np.uint16)), "PNG"),   # 16-bit
    (lambda: Image.new("CMYK", (30, 30), (0, 255, 255, 0)), "JPEG"),
    (lambda: Image.new("RGBA", (30, 30), (255, 0, 0, 128)), "PNG"),
    (lambda: Image.new("P", (30, 30), 3), "PNG"),
    (lambda: Image.new("LA", (30, 30), (128, 255)), "PNG"),
])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_odd_modes_through_upload_path(make, fmt, shape):
    img = make()
    kw = {"transparency": 3} if img.mode == "P" else {}
    x = preprocess_image(load_image(_bytes(img, fmt, **kw)), shape)
    assert x.shape == shape and 0 <= float(x.min()) <= float(x.max()) <= 1


# --- digits, inversion, examples -----------------------------------------------------------------

def _drawn_one(size=224, dark_on_light=False) -> Image.Image:
    """A vertical stroke drawn off-centre on a canvas, as a user would draw a "1"."""
    img = Image.new("L", (size, size), 255 if dark_on_light else 0)
    img.paste(0 if dark_on_light else 255, (30, 20, 50, 170))
    return img


def test_center_digit_frames_like_mnist():
    out = center_digit(_drawn_one())
    arr = np.asarray(out, dtype=np.float64)
    rows, cols = np.indices(arr.shape)
    cy, cx = (rows * arr).sum() / arr.sum(), (cols * arr).sum() / arr.sum()
    assert out.size == (28, 28) and abs(cy - 14) <= 1 and abs(cx - 14) <= 1  # centre of mass at the centre
    left, top, right, bottom = out.getbbox()
    assert bottom - top == 20 and right - left < 20  # the longer side scaled to 20
    assert center_digit(Image.new("L", (50, 50))).getbbox() is None  # an empty drawing stays empty


@pytest.mark.parametrize("invert, expected_corner", [(None, 0.0), (True, 0.0), (False, 1.0)])
def test_prepare_input_inverts_dark_ink_on_light(invert, expected_corner):
    x = prepare_input(_drawn_one(dark_on_light=True), (1, 28, 28), invert=invert)
    assert float(x[0, 0, 0]) == expected_corner


def test_prepare_input_refuses_framing_for_colour_models():
    with pytest.raises(ValueError, match="^frame_digit:"):
        prepare_input(_drawn_one(), (3, 32, 32), frame_digit=True)


@needs_mnist_model
def test_a_drawn_one_is_read_as_a_one_by_the_shipped_mnist_model():
    loaded = load_checkpoint(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.25/checkpoint.pth.tar")
    x = prepare_input(_drawn_one(), loaded.input_shape, frame_digit=True)
    with torch.inference_mode():
        assert int(loaded.model(x[None]).argmax()) == 1


@pytest.mark.parametrize("name", list(EXAMPLE_IMAGES))
def test_example_images_ship_with_scikit_image(name):
    pytest.importorskip("skimage", reason="scikit-image is not installed")
    img = example_image(name)
    assert min(img.size) >= 200
    assert prepare_input(img, (3, 32, 32)).shape == (3, 32, 32)


def test_unknown_example_image():
    with pytest.raises(ValueError, match="^name: unknown example image"):
        example_image("nope")
