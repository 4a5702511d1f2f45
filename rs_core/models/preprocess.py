"""Declared preprocessing: how an image becomes a model's input, and what the model does to it first.

σ is always in the units of the [0, 1] image *before* normalization: the smoothing noise is added to
the resized, cropped image (a [C, H, W] tensor in [0, 1]), and the mean/std normalization, when the
model does not do it itself, is the first layer of the smoothed base classifier (it is part of f).

A :class:`Preprocess` records the input shape, the resize/crop policy and the normalization; it goes
into every certificate, so the certified input can be rebuilt from the image file.

>>> p = Preprocess((3, 224, 224), resize=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
>>> p.describe()
'3×224×224 · shorter side to 256, center crop 224×224 · normalized by mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)'
>>> from PIL import Image
>>> p.image_to_input(Image.new("L", (640, 480), 128)).shape  # grey image, 3-channel model: converted
torch.Size([3, 224, 224])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageOps
from torch import nn

from rs_core.untrusted import MAX_INPUT_SIDE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Where a loaded model's normalization comes from (``LoadedModel.meta["normalization_source"]``, written by
# rs_core.models.formats), in the words a certificate records. The last two are assumptions: the file says nothing.
NORMALIZATION_SOURCES = {
    "file": "declared by the file",
    "network": "inside the network (its architecture normalizes)",
    "given": "given with the model options",
    "chosen": "chosen by the user (the file declares none)",
    "architecture": "assumed: the named architecture's reference weights (the file declares none)",
    "none": "assumed: the model normalizes itself (the file declares none)",
}
DECLARED_NORMALIZATION = ("file", "network", "given", "chosen")  # known, not assumed


def parse_floats(value: str | Sequence[float] | None, name: str) -> tuple[float, ...] | None:
    """``"0.485,0.456,0.406"`` (or a sequence) → a tuple of finite floats; ``None``/``""`` → None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    try:
        out = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be numbers separated by commas, got {str(value)[:60]!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name}: must be finite numbers, got {str(value)[:60]!r}")
    return out


def parse_size(value: str | int | Sequence[int] | None, name: str = "input_size") -> tuple[int, int] | None:
    """``224``, ``"224"``, ``"224x192"`` or ``(224, 192)`` → (H, W); ``None``/``""`` → None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name}: must be a whole number or H×W, got {value!r}")
    if isinstance(value, int):
        parts: list[Any] = [value, value]
    elif isinstance(value, str):
        parts = [p for p in value.lower().replace("×", "x").replace(",", "x").split("x")]
        parts = parts * 2 if len(parts) == 1 else parts
    else:
        parts = list(value)
    try:
        hw = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        raise ValueError(f"{name}: must be a whole number or H×W (e.g. 224 or 224x192), got {str(value)[:40]!r}") \
            from None
    if len(hw) != 2 or not all(1 <= v <= MAX_INPUT_SIDE for v in hw):
        raise ValueError(f"{name}: must be one or two whole numbers from 1 to {MAX_INPUT_SIDE}, got {str(value)[:40]!r}")
    return hw  # type: ignore[return-value]


def parse_input_size(value: str | int | Sequence[int] | None) -> tuple[int | None, int, int] | None:
    """``224``, ``"224x192"`` or ``"1x28x28"`` (channels first) → (C or None, H, W); ``None``/``""`` → None."""
    if isinstance(value, str) and len([p for p in value.lower().replace("×", "x").split("x") if p.strip()]) == 3:
        c, _, rest = value.lower().replace("×", "x").partition("x")
        if c.strip() not in ("1", "3"):
            raise ValueError(f"input_size: the channel count must be 1 or 3, got {c.strip()[:10]!r}")
        h, w = parse_size(rest)  # type: ignore[misc]
        return int(c), h, w
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return parse_input_size("x".join(str(v) for v in value))
    hw = parse_size(value)
    return None if hw is None else (None, *hw)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input, and the normalization the base classifier applies first.

    Attributes:
        input_shape: (C, H, W) the model takes; C is 1 or 3 (an image of the other kind is converted).
        resize: resize the shorter side to this many pixels, then center-crop H × W (torchvision's
            ``Resize(256), CenterCrop(224)``); None: the largest central region of the model's aspect ratio,
            resized to H × W.
        mean, std: per-channel normalization applied by the smoothed classifier's first layer, after the noise;
            None: the model normalizes itself (it takes [0, 1] images).
    """

    input_shape: tuple[int, int, int]
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(v) for v in self.input_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or shape[0] not in (1, 3) or not all(1 <= v <= MAX_INPUT_SIDE for v in shape[1:]):
            raise ValueError(f"input_shape: must be (1 or 3, H, W) with 1 <= H, W <= {MAX_INPUT_SIDE}, "
                             f"got {self.input_shape}")
        object.__setattr__(self, "input_shape", shape)
        if self.resize is not None:
            if isinstance(self.resize, bool) or not isinstance(self.resize, int) \
                    or not min(shape[1:]) <= self.resize <= 4 * MAX_INPUT_SIDE:
                raise ValueError(f"resize: must be a whole number from the input's shorter side ({min(shape[1:])}) "
                                 f"to {4 * MAX_INPUT_SIDE}, got {self.resize!r}")
        mean, std = parse_floats(self.mean, "mean"), parse_floats(self.std, "std")
        if (mean is None) != (std is None):
            raise ValueError("mean: give both mean and std, or neither (the model normalizes itself)")
        if mean is not None:
            c = shape[0]
            for name, vals in (("mean", mean), ("std", std)):
                if len(vals) not in (1, c):
                    raise ValueError(f"{name}: need 1 or {c} values (one per input channel), got {len(vals)}")
            if any(v <= 0 for v in std):
                raise ValueError(f"std: must be > 0, got {std}")
            mean, std = (mean * c if len(mean) == 1 else mean), (std * c if len(std) == 1 else std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def normalizes(self) -> bool:
        """True when the smoothed classifier normalizes (mean/std given); False: the model does it itself."""
        return self.mean is not None

    def wrap(self, model: nn.Module) -> nn.Module:
        """The base classifier as smoothed: normalization (if declared) in front of ``model``."""
        if not self.normalizes:
            return model
        from rs_core.models.architectures import NormalizeLayer

        return nn.Sequential(NormalizeLayer(self.mean, self.std), model)

    def image_to_input(self, image: Image.Image) -> torch.Tensor:
        """A decoded image → [C, H, W] float32 in [0, 1]: mode converted, resized and center-cropped in one
        resampling step (work bounded by the model's size, whatever the image's aspect ratio)."""
        from torchvision.transforms.functional import to_tensor

        from rs_core.data import normalize_mode

        c, h, w = self.input_shape
        img = normalize_mode(ImageOps.exif_transpose(image), c)
        if self.resize is None:
            scale = max(w / img.width, h / img.height)  # the factor that makes the image cover h × w
        else:
            scale = self.resize / min(img.width, img.height)
            scale = max(scale, w / img.width, h / img.height)  # a crop larger than the resized image: cover it
        cw, ch = w / scale, h / scale  # the source region that lands on the model's input
        box = ((img.width - cw) / 2, (img.height - ch) / 2, (img.width + cw) / 2, (img.height + ch) / 2)
        return to_tensor(img.resize((w, h), Image.BILINEAR, box=box))

    def describe(self, normalization: bool = True) -> str:
        """Shape, crop policy and (unless ``normalization`` is False: not known yet) the normalization, in words."""
        c, h, w = self.input_shape
        crop = (f"shorter side to {self.resize}, center crop {h}×{w}" if self.resize is not None
                else f"central {h}:{w} region resized to {h}×{w}")
        if not normalization:
            return f"{c}×{h}×{w} · {crop}"
        norm = (f"normalized by mean {tuple(round(v, 4) for v in self.mean)}, std "
                f"{tuple(round(v, 4) for v in self.std)}" if self.normalizes else "the model normalizes itself "
                "(it takes [0, 1] pixels)")
        return f"{c}×{h}×{w} · {crop} · {norm}"

    def to_dict(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "resize": self.resize,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std),
                "sigma_units": "pixels in [0, 1], before normalization"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        if not isinstance(d, dict):
            raise ValueError(f"preprocess: must be a dict, got {type(d).__name__}")
        return cls(tuple(d.get("input_shape") or ()), d.get("resize"), d.get("mean"), d.get("std"))
