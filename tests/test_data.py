import io

import numpy as np
import pytest
import torch
from PIL import Image

from rs_core.data import data_dir, dataset_info, get_dataset, preprocess_image

HAS_DATA = (data_dir() / "mnist" / "MNIST" / "raw").exists()
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"no MNIST under RS_DATA_DIR={data_dir()}")


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



