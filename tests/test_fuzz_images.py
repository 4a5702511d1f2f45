"""Property-based tests of the image reader: any upload decodes to a usable image or is a ValueError.

An accepted image must then go through every preprocessing the app offers (1- and 3-channel
models, inversion, MNIST framing) without another error type.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from contract import loads_or_refuses, refuses
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from rs_core.data import load_image, prepare_input

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP"]
MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "CMYK"]


def _encode(arr: np.ndarray, mode: str, fmt: str, exif: bool) -> bytes | None:
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    try:
        img = img.convert(mode) if mode not in ("I;16", "I") else Image.fromarray(
            (arr[..., 0].astype(np.uint16) * 257), "I;16").convert(mode)
        kw = {}
        if exif:
            e = Image.Exif()
            e[0x0112] = 6  # orientation: rotate
            kw["exif"] = e.tobytes()
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # this writer does not take this mode; not a file a user could have
    return buf.getvalue()


valid_images = st.builds(
    _encode,
    arr=st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 3, 4]), st.integers(0, 2**32 - 1)).map(
        lambda t: np.random.default_rng(t[3]).integers(0, 256, size=t[:3], dtype=np.uint8)),
    mode=st.sampled_from(MODES), fmt=st.sampled_from(FORMATS), exif=st.booleans(),
).filter(lambda b: b is not None)


def _check_usable(img: Image.Image) -> None:
    assert img.mode in ("L", "RGB", "RGBA") and img.width >= 1 and img.height >= 1
    assert "exif" not in img.info  # nothing later parses the file's metadata again
    for shape, kw in [((1, 28, 28), {"invert": None, "frame_digit": True}), ((1, 28, 28), {}),
                      ((3, 32, 32), {"invert": True}), ((3, 32, 32), {})]:
        x = prepare_input(img, shape, **kw)
        assert x.shape == shape and torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


def _decode(data: bytes) -> None:
    img = loads_or_refuses(lambda: load_image(data), "image:")
    if img is not None:
        _check_usable(img)


@given(st.binary(max_size=2048))
@example(b"GIF89a" + bytes(20))
@example(b"\xff\xd8\xff\xdb" + bytes(20))
def test_random_bytes_decode_or_refuse(data):
    _decode(data)


@given(valid_images)
def test_valid_images_of_every_format_and_mode_are_usable(data):
    img = load_image(data)
    _check_usable(img)


@given(data=valid_images, cut=st.integers(0, 10**6))
def test_truncations_decode_or_refuse(data, cut):
    _decode(data[: cut % len(data)])


@given(data=valid_images, flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_byte_flips_decode_or_refuse(data, flips):
    b = bytearray(data)
    for pos, value in flips:
        b[pos % len(b)] = value
    _decode(bytes(b))


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header (with a correct CRC) declares width × height, and one tiny data chunk."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1))
@example(width=100_000, height=100_000)
@example(width=1, height=2_876_031)  # found by the long profile: MemoryError in the resize before the crop
def test_declared_sizes_are_checked_before_decoding(width, height):
    data = _png_declaring(width, height)
    if width * height > 40_000_000:
        refuses(lambda: load_image(data), "image:", "too large|decompression bomb")
    else:
        _decode(data)


@pytest.mark.parametrize("size", [(1, 3_000_000), (3_000_000, 1), (2, 7), (7, 2)])
def test_extreme_aspect_ratios_are_preprocessed_within_the_models_size(size):
    """The central region is cut before resizing (before: a 1×2,876,031 image became 32×92,032,992 pixels)."""
    buf = io.BytesIO()
    Image.new("L", size, 90).save(buf, "PNG")
    _check_usable(load_image(buf.getvalue()))


def test_a_corrupt_exif_block_is_ignored_not_trusted():
    img = Image.new("RGB", (8, 4), (200, 10, 10))
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\xff")
    out = load_image(buf.getvalue())
    assert out.size == (8, 4)
    _check_usable(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_flipped_header_byte_per_format_is_a_value_error(fmt):
    """Deterministic companions of the property: the decoder errors of the issue (OSError 'could not create
    decoder object' and friends) arrive as ValueError."""
    data = bytearray(_encode(np.full((16, 16, 3), 120, np.uint8), "RGB", fmt, exif=False))
    for pos in range(8, min(64, len(data))):
        b = bytearray(data)
        b[pos] ^= 0xFF
        _decode(bytes(b))
