"""Data sets and image preprocessing shared by the CLI, training and the app.

Data sets are read from ``$RS_DATA_DIR`` (default ``./data``); nothing is
downloaded unless the caller passes ``download=True``. Images come as float
tensors [C, H, W] in [0, 1] — the space where smoothing noise is added — and
the model's first layer normalizes.

Layout under ``$RS_DATA_DIR``: ``mnist/MNIST/raw/…`` (torchvision),
``cifar10/cifar-10-batches-py/…`` (torchvision), ``cifar10-partial/{train,test}_partial.npz``
and ``imagenet/{train,val}/<class>/…`` (ImageFolder).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from rs_core.untrusted import MAX_IMAGE_BYTES, check_size, first_line, reading

DATASETS = ("mnist", "cifar10", "cifar10-partial", "imagenet")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


INFO = {
    "mnist": DatasetInfo("mnist", 10, (1, 28, 28), tuple(str(i) for i in range(10)), (0.1307,), (0.3081,)),
    "cifar10": DatasetInfo("cifar10", 10, (3, 32, 32), CIFAR10_CLASSES,
                           (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar10-partial": DatasetInfo("cifar10-partial", 10, (3, 32, 32), CIFAR10_CLASSES,
                                   (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": DatasetInfo("imagenet", 1000, (3, 224, 224), tuple(f"class {i}" for i in range(1000)),
                            (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def data_dir() -> Path:
    """``$RS_DATA_DIR``, or ``./data``."""
    return Path(os.environ.get("RS_DATA_DIR") or "./data")


def dataset_info(name: str) -> DatasetInfo:
    if name not in INFO:
        raise ValueError(f"dataset: unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return INFO[name]


class TensorImages(Dataset):
    """Images held as uint8 [N, H, W, C] with labels and their indices in the original data set."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # N, C, H, W uint8
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float().div_(255.0), int(self.labels[i])

    def original_index(self, i: int) -> int:
        return int(self.index[i])

    def position_of(self, original: int) -> int | None:
        """The position of the image whose index in the original data set is ``original`` (None if not held)."""
        hits = np.flatnonzero(self.index == original)
        return int(hits[0]) if hits.size else None


class _Torchvision(Dataset):
    """A torchvision data set returning [0, 1] tensors, with identity original indices."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.functional import to_tensor

        img, label = self.inner[i]
        return (img if isinstance(img, torch.Tensor) else to_tensor(img)), int(label)

    def original_index(self, i: int) -> int:
        return i

    def position_of(self, original: int) -> int | None:
        return original if 0 <= original < len(self) else None


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An MNIST IDX file of unsigned bytes (LeCun's format: magic 0x0000080D, D big-endian sizes, the data), as a
    uint8 array of D dimensions. Read with NumPy, so that a data-set command need not import torchvision
    (1.3 s of every ``python -m rs_core`` process here); the values are those torchvision's ``MNIST`` returns.
    """
    raw = bytearray(path.read_bytes())  # writable: torch.from_numpy warns on a read-only buffer
    head = 4 + 4 * dims
    if len(raw) < head or raw[:4] != bytes([0, 0, 8, dims]):
        raise ValueError(f"{path.name}: not an IDX file of {dims}-dimensional unsigned bytes")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    if len(raw) != head + int(np.prod(shape)):
        raise ValueError(f"{path.name}: {len(raw) - head:,} data bytes for a {shape} array")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(shape)


def _mnist(folder: Path, train: bool) -> TensorImages | None:
    """MNIST from its raw IDX files under ``folder/MNIST/raw`` (torchvision's layout), or None when they are missing."""
    prefix = folder / "MNIST" / "raw" / ("train" if train else "t10k")
    images, labels = Path(f"{prefix}-images-idx3-ubyte"), Path(f"{prefix}-labels-idx1-ubyte")
    if not (images.exists() and labels.exists()):
        return None
    with reading(f"dataset: {prefix.parent}", "not readable MNIST files"):
        x, y = read_idx(images, 3), read_idx(labels, 1)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
    return TensorImages(x[..., None], y, np.arange(len(y)))


def get_dataset(name: str, split: str = "test", *, download: bool = False,
                root: str | os.PathLike | None = None) -> Dataset:
    """A data set of (x [C,H,W] in [0,1], label) pairs; ``original_index(i)`` maps to the original numbering.

    ``split`` is ``"train"`` or ``"test"`` (ImageNet: ``"train"`` or ``"val"``/``"test"`` for the
    validation set, as in Cohen et al.). Training augmentation lives in :mod:`rs_core.training.classifier`.
    """
    dataset_info(name)
    if split not in ("train", "test", "val"):
        raise ValueError(f"split: must be 'train' or 'test', got {split!r}")
    base = Path(root) if root is not None else data_dir()
    train = split == "train"
    try:
        if name == "mnist":
            found = _mnist(base / "mnist", train)
            if found is not None:
                return found
            from torchvision.datasets import MNIST  # missing files: torchvision says so, or downloads them

            return _Torchvision(MNIST(str(base / "mnist"), train=train, download=download))
        if name == "cifar10":
            from torchvision.datasets import CIFAR10

            return _Torchvision(CIFAR10(str(base / "cifar10"), train=train, download=download))
        if name == "cifar10-partial":
            path = base / "cifar10-partial" / ("train_partial.npz" if train else "test_partial.npz")
            if not path.exists():
                raise FileNotFoundError(path)
            with reading(f"dataset: {path}", "not a readable cifar10-partial archive"), \
                    np.load(path, allow_pickle=False) as d:
                images, labels, index = d["images"], d["labels"], d["index"]
                if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or not len(images) == len(labels) == len(index):
                    raise ValueError(f"shapes {images.shape}, {labels.shape}, {index.shape}")
                return TensorImages(images, labels, index)
        # imagenet
        from torchvision import transforms
        from torchvision.datasets import ImageFolder

        folder = base / "imagenet" / ("train" if train else "val")
        tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
        return _Torchvision(ImageFolder(str(folder), transform=tf))
    except (FileNotFoundError, RuntimeError) as err:
        hint = "" if name in ("cifar10-partial", "imagenet") else " (or pass --download to fetch it)"
        raise FileNotFoundError(f"dataset: {name} ({split}) not found under {base}{hint}: {err}") from err


def dataset_tensors(dataset: Dataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The data set's first ``limit`` examples (all when None) as one image tensor [N, C, H, W] (values in [0, 1])
    and one int64 label tensor [N], read once, so that training batches are plain indexing afterwards. Only those
    examples are read (decoding all 60,000 MNIST images to keep 512 costs seconds).

    >>> xs, ys = dataset_tensors(TensorImages(np.zeros((2, 4, 4, 1), np.uint8), np.array([3, 1]), np.arange(2)))
    >>> tuple(xs.shape), ys.tolist()
    ((2, 1, 4, 4), [3, 1])
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    xs, ys = zip(*(dataset[i] for i in range(n)), strict=True)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def center_digit(image: Image.Image, size: int = 28, box: int = 20) -> Image.Image:
    """A drawn digit (light on dark) → MNIST's framing: the ink's bounding box scaled to fit
    ``box``×``box`` (aspect kept), placed on a ``size``×``size`` black square with its centre of
    mass at the centre (LeCun et al.'s preprocessing of MNIST). An empty drawing stays empty.

    >>> img = Image.new("L", (200, 200)); img.paste(255, (20, 30, 60, 150))
    >>> out = center_digit(img); out.size, out.getbbox()
    ((28, 28), (11, 4, 18, 24))
    """
    gray = ImageOps.exif_transpose(image).convert("L")
    bbox = gray.point(lambda v: 255 if v > 20 else 0).getbbox()
    if bbox is None:
        return Image.new("L", (size, size))
    ink = gray.crop(bbox)
    scale = box / max(ink.size)
    ink = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.LANCZOS)
    arr = np.asarray(ink, dtype=np.float64)
    total = arr.sum()
    rows, cols = np.indices(arr.shape)
    cy, cx = ((rows * arr).sum() / total, (cols * arr).sum() / total) if total > 0 else (arr.shape[0] / 2,
                                                                                            arr.shape[1] / 2)
    out = Image.new("L", (size, size))
    left = int(round(size / 2 - cx))
    top = int(round(size / 2 - cy))
    out.paste(ink, (min(max(left, 0), size - ink.width), min(max(top, 0), size - ink.height)))
    return out


def prepare_input(image: Image.Image, input_shape: tuple[int, int, int], *, invert: bool | None = False,
                  frame_digit: bool = False, preprocess=None) -> torch.Tensor:
    """A user's image → a model input [C, H, W] in [0, 1], for digit models too.

    ``invert``: True flips intensities (dark ink on white → MNIST's light on dark), None does so
    when the image is mostly light. ``frame_digit`` applies :func:`center_digit` (1-channel models).
    ``preprocess``: the model's declared :class:`~rs_core.models.preprocess.Preprocess` (its resize/crop policy);
    by default the central region of the model's aspect ratio, resized.

    >>> img = Image.new("L", (64, 64), 255); img.paste(0, (28, 8, 36, 56))  # a dark "1" on white
    >>> x = prepare_input(img, (1, 28, 28), invert=None, frame_digit=True)
    >>> tuple(x.shape), round(float(x[0, 14, 14]), 2), float(x[0, 0, 0])
    ((1, 28, 28), 1.0, 0.0)
    """
    c, h, w = input_shape
    img = normalize_mode(ImageOps.exif_transpose(image), c)
    if invert is None:
        invert = float(np.asarray(img.convert("L"), dtype=np.float64).mean()) > 127.5
    if invert:
        img = ImageOps.invert(img)
    if frame_digit:
        if c != 1:
            raise ValueError(f"frame_digit: only for 1-channel (digit) models, got input_shape {input_shape}")
        img = center_digit(img, size=h, box=round(h * 20 / 28))
    if preprocess is not None and tuple(preprocess.input_shape) == tuple(input_shape):
        return preprocess.image_to_input(img)
    return preprocess_image(img, input_shape)


EXAMPLE_IMAGES = {  # scikit-image ships these inside its wheel (no download): name → (function, what it shows)
    "chelsea": ("chelsea", "a cat"),
    "horse": ("horse", "a horse silhouette"),
    "rocket": ("rocket", "a rocket on its launch pad"),
    "coffee": ("coffee", "a cup of coffee"),
    "astronaut": ("astronaut", "an astronaut (Eileen Collins)"),
    "camera": ("camera", "a cameraman (grayscale)"),
}


def example_image(name: str) -> Image.Image:
    """One of :data:`EXAMPLE_IMAGES`, from scikit-image's bundled data (``ValueError`` if unavailable)."""
    if name not in EXAMPLE_IMAGES:
        raise ValueError(f"name: unknown example image {name!r}; choose from {', '.join(EXAMPLE_IMAGES)}")
    try:
        import skimage.data
    except ImportError:
        raise ValueError("name: example images need scikit-image (pip install scikit-image)") from None
    arr = np.asarray(getattr(skimage.data, EXAMPLE_IMAGES[name][0])())
    if arr.dtype == bool:
        arr = np.where(arr, 0, 255).astype(np.uint8)  # the horse: black on white, like a photo of one
    return Image.fromarray(arr)


# Pillow's decompression-bomb *warning* is an error in this process: set once here rather than
# per call, because warnings.catch_warnings() is not thread-safe and the app serves sessions in threads.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
MAX_PIXELS = 40_000_000  # well under Pillow's own bomb threshold (≈ 89 M)
_GREY_MODES = ("1", "L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def load_image(data: bytes, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_IMAGE_BYTES) -> Image.Image:
    """Decode an uploaded file safely into a plain "L", "RGB" or "RGBA" image without metadata.

    Only PNG, JPEG, WebP, BMP and GIF decoders are tried (first frame of an
    animation). The pixel count is checked from the header *before* decoding,
    against ``max_pixels`` and Pillow's decompression-bomb threshold (the size at
    which Pillow would warn is an error here), so a small file that would
    decode to a huge image is refused without being decoded; decoding work is
    bounded by that count. The EXIF orientation is applied here (an unreadable
    EXIF block is ignored, not trusted), and the result is a fresh image, so
    nothing later parses the file's metadata again. Anything unusable raises
    ``ValueError`` starting ``image:`` — whatever the decoder raised.
    """
    import io

    from PIL import UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"image: expected the file's bytes, got {type(data).__name__}")
    if not data:
        raise ValueError("image: the file is empty")
    check_size(len(data), max_bytes, "image: the file")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ValueError("image: not an image in a supported format (PNG, JPEG, WebP, BMP, GIF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image: refused as a decompression bomb: {err}") from None
    except Exception as err:  # noqa: BLE001 — hostile headers make decoders raise OSError, SyntaxError, …
        raise ValueError(f"image: the file is corrupt ({first_line(err)})") from None
    w, h = img.size
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    if w < 1 or h < 1 or w * h > limit:
        raise ValueError(f"image: {w}×{h} pixels is too large (limit {limit:,} pixels)")
    with reading("image", "the file is truncated or corrupt"):
        img.seek(0)
        img.load()
        plain = _plain_mode(img)
    try:
        plain = ImageOps.exif_transpose(plain) if "exif" in img.info else plain
    except Exception:  # noqa: BLE001, S110 — a broken EXIF block: keep the pixels as stored
        pass
    with reading("image", "could not convert the decoded pixels"):
        return Image.fromarray(np.asarray(plain), plain.mode)


def _plain_mode(img: Image.Image) -> Image.Image:
    """"L", "RGB" or "RGBA" (16-bit rescaled, palettes expanded, transparency kept as alpha), EXIF kept for
    :func:`load_image` to orient."""
    exif = img.info.get("exif")
    if img.mode in _GREY_MODES:
        if img.mode not in ("1", "L"):
            arr = np.asarray(img, dtype=np.float64)
            top = 65535.0 if arr.size and np.nanmax(arr) > 255 else 255.0
            out = Image.fromarray(np.clip(np.nan_to_num(arr) / top * 255.0, 0, 255).astype(np.uint8), "L")
        else:
            out = img.convert("L")
    elif img.mode in ("P", "PA", "LA", "La", "RGBA", "RGBa") or "transparency" in img.info:
        out = img.convert("RGBA")
    else:
        out = img.convert("RGB")
    if exif is not None:
        out.info["exif"] = exif
    return out


def normalize_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any decoded mode → "L" or "RGB": :func:`_plain_mode` (16-bit rescaled, palettes expanded), then
    transparency composited on white."""
    img = _plain_mode(img)
    if img.mode == "RGBA":
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    return img.convert("L" if channels == 1 else "RGB")


def preprocess_image(image: Image.Image, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """A user's image → a model input [C, H, W] in [0, 1].

    Applies the EXIF orientation, converts the mode (palette and transparency
    are composited on white; 16-bit and CMYK images are converted), and takes the
    central region of the model's aspect ratio, resized to the model's size (aspect
    ratio kept, as torchvision's resize of the shorter side then center crop).

    The region is cut from the source and resampled in one step (Pillow's
    ``resize(box=…)``), so the work is bounded by the model's size: resizing the
    shorter side first turned a 1×2,876,031 image (2.9 Mpx, a valid upload) into
    32×92,032,992 pixels before cropping (found by fuzzing).

    >>> preprocess_image(Image.new("L", (1, 3_000_000), 200), (1, 28, 28)).shape
    torch.Size([1, 28, 28])
    """
    from torchvision.transforms.functional import to_tensor

    c, h, w = input_shape
    if c not in (1, 3):
        raise ValueError(f"input_shape: need 1 or 3 channels, got {input_shape}")
    img = normalize_mode(ImageOps.exif_transpose(image), c)
    scale = max(w / img.width, h / img.height)  # the factor that makes the image cover h × w
    cw, ch = w / scale, h / scale  # the source region that lands on the model's input
    box = ((img.width - cw) / 2, (img.height - ch) / 2, (img.width + cw) / 2, (img.height + ch) / 2)
    return to_tensor(img.resize((w, h), Image.BILINEAR, box=box))
