"""The error contract for everything a user supplies, and the limits checked before any work.

Every reader of user input in :mod:`rs_core` (checkpoints, σ-estimators, images, certify logs,
command-line arguments) either returns a usable value or raises :class:`ValueError` whose message
starts with the name of the input (``checkpoint:``, ``image:``, ``log:``, ``estimator:``, or the
parameter) and says what is wrong. Third-party decoders (the weights-only unpickler, Pillow, the
csv module) fail in many ways — ``KeyError`` from a pickle memo lookup, ``OSError`` from an image
decoder, ``_csv.Error`` from a NUL byte — so their calls are wrapped by :func:`reading`, which
turns *any* exception into that ``ValueError``. ``KeyboardInterrupt``/``SystemExit`` pass.

Limits (each checked from sizes declared in headers, before anything of that size is allocated):

- files: :data:`MAX_CHECKPOINT_BYTES` (file size), zip members stored uncompressed and their
  declared sizes summing to at most the file size (a deflated member is a zip bomb to
  ``torch.load``: it inflates the whole member before checking it);
- models: at most :data:`MAX_CLASSES` classes and inputs of at most :data:`MAX_INPUT_SIDE` pixels a
  side, checked before a model is built;
- images: :data:`MAX_IMAGE_BYTES` and ``rs_core.data.MAX_PIXELS`` (header, before decoding);
- logs: :data:`MAX_LOG_BYTES` and :data:`MAX_LOG_ROWS`; tables: :data:`MAX_RADII` radii.

Work on an accepted input is bounded by these sizes, so no reader runs unboundedly long.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

MAX_CHECKPOINT_BYTES = 4 * 2**30  # a ViT-L/16 state dict is ~1.2 GB; the app's upload limit is lower
MAX_CLASSES = 100_000  # ImageNet-21k has 21,843
MAX_INPUT_SIDE = 1024  # a 3×1024×1024 input is 12.6 GB of noise per 1,000-sample batch
MAX_IMAGE_BYTES = 20 * 2**20
MAX_LOG_BYTES = 64 * 2**20
MAX_LOG_ROWS = 1_000_000  # ImageNet's full training set would be 1.28 M; test sets are ≤ 100 k
MAX_RADII = 10_000


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name (never a traceback)."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(err).__name__


@contextmanager
def reading(what: str, problem: str) -> Iterator[None]:
    """Turn any exception raised inside into ``ValueError(f"{what}: {problem} ({detail})")``.

    For calls into third-party decoders of user input only; our own checks raise their
    ``ValueError`` directly (with the input's name) and are not wrapped twice.

    >>> with reading("log: x.tsv", "not a readable log"):
    ...     {}["missing"]
    Traceback (most recent call last):
    ValueError: log: x.tsv: not a readable log ('missing')
    """
    try:
        yield
    except Exception as err:  # the contract: one exception type for bad input
        raise ValueError(f"{what}: {problem} ({first_line(err)})") from err


def check_size(nbytes: int, limit: int, what: str) -> None:
    """Refuse more than ``limit`` bytes, with both sizes in the message."""
    if nbytes > limit:
        raise ValueError(f"{what}: {_mb(nbytes)} is over the limit of {_mb(limit)}")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n:,} bytes"
