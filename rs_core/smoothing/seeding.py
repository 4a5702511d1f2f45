"""Seeds: every accepted seed is honoured in full, and one derivation serves every path.

A seed is any integer in [0, 2**64). The noise generator's *whole state* is derived
from the whole seed through :class:`numpy.random.SeedSequence` (the hashing NumPy
itself uses to seed its generators), because ``torch.Generator.manual_seed``
keeps only the low 32 bits on the CPU: seeds 7 and 7 + 2**32 would otherwise draw
the same noise.

- CPU (Mersenne Twister, 19,937 bits of state): the 624 state words come from
  ``SeedSequence(seed).generate_state(624)``, written with ``set_state``; the
  state layout is checked once against a plain ``manual_seed`` (see
  :func:`cpu_state_layout_ok`).
- CUDA / MPS (Philox, a 64-bit key): the key is ``SeedSequence(seed)``'s first 64 bits.

Seeds of sub-runs (the two stages of dual RS, expert k of stage 2, PREDICT after
CERTIFY, the streams of a training run, …) are derived by :func:`derive_seed` from
the parent seed and a path of small integers (SeedSequence's spawn key), so every
caller that runs the same sub-run draws the same noise. Index paths use small
integers: σ i of a sweep is ``(i,)``, dual RS's stages ``(1, k)`` and ``(2, k)``;
the named paths of :class:`SeedPath` start at 1000, so they meet none of them. The
one exception is example i of a data set, which keeps ``seed + i``
(:func:`example_seed`): Cohen et al.'s scripts and the shipped logs use it.

>>> derive_seed(7, 2, 0) == derive_seed(7, 2, 0) != derive_seed(7, 2, 1)
True
>>> a = make_generator(7, "cpu"); b = make_generator(7 + 2**32, "cpu")
>>> bool(torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b)))
False
"""

from __future__ import annotations

import enum
import functools
import numbers
import secrets
import warnings

import numpy as np
import torch

from rs_core.checks import check_seed

SEED_LIMIT = 2**64
"""Seeds are integers in [0, SEED_LIMIT)."""

_MT_WORDS = 624
# Byte layout of the CPU generator's state (ATen CPUGeneratorImpl, "legacy" THGeneratorState):
# uint64 initial seed | int32 left | int32 seeded | uint64 next | uint64 state[624] | normal cache … (5056 bytes).
_OFF_LEFT, _OFF_SEEDED, _OFF_NEXT, _OFF_STATE = 8, 12, 16, 24
_STATE_BYTES = 5056


def fresh_seed() -> int:
    """A new random seed from the OS (63 bits, so it fits the signed 64-bit integers of JSON readers and UIs)."""
    return secrets.randbits(63)


def derive_seed(seed: int, *path: int) -> int:
    """A child seed in [0, 2**64) for the sub-run named by ``path`` (e.g. stage 2, expert k).

    Distinct paths give independent streams (SeedSequence spawn keys); the child
    depends on every bit of ``seed``.
    """
    seed = check_seed(seed)
    if seed is None:
        raise ValueError("seed: a child seed needs a parent seed, got None")
    words = np.random.SeedSequence(seed, spawn_key=tuple(int(p) for p in path)).generate_state(2, np.uint32)
    return int(words[0]) | (int(words[1]) << 32)


class SeedPath(enum.IntEnum):
    """What a sub-seed is for: the first word of a named :func:`derive_seed` path, ``derive_seed(seed, path, *index)``.

    Changing a path (or what is drawn from it) changes the noise of every later run that uses it; caches keyed by
    such seeds must then change their key (e.g. ``rs_core.dual.estimator``'s label format).
    """

    PREDICT = 1001
    """PREDICT's own samples after CERTIFY on the same input (the app's Certify page, ``certify-image --predict``)."""
    NOISY_VIEWS = 1002
    """The noisy copies x + ε shown next to an input (display only, :func:`~rs_core.smoothing.sampling.noisy_views`)."""
    PLAYGROUND_NOISE = 1003
    """The noise points drawn around the playground's point (display only)."""
    ATTACK = 1004
    """The attack on the smoothed classifier (:mod:`rs_core.attacks`): its optimisation noise, and under it the
    samples of its PREDICT confirmations — never a certificate's stream."""
    TRAIN_SHUFFLE = 1101
    """Training: the order of the training examples, one permutation per epoch (a CPU generator)."""
    TRAIN_NOISE = 1102
    """Training: the Gaussian noise added to the batches (a generator on the training device)."""
    TRAIN_AUGMENT = 1103
    """Training: random crops and flips of the batches (a CPU generator)."""
    EXPERT_VOTES = 1201
    """Dual RS training: expert j's (σ ascending) votes for the labels, path ``(EXPERT_VOTES, j)``."""
    ROUTE = 1202
    """Dual RS training rounds: routing the training inputs with the estimator of round k, ``(ROUTE, k)``."""
    FINETUNE = 1203
    """Dual RS training rounds: fine-tuning expert j (σ ascending) in round k, ``(FINETUNE, k, j)``."""


def predict_seed(seed: int) -> int:
    """The seed of PREDICT's own samples after CERTIFY ran with ``seed`` on the same input: independent of
    CERTIFY's noise, reproducible with it.

    >>> predict_seed(5) == derive_seed(5, SeedPath.PREDICT) != 5
    True
    """
    return derive_seed(seed, SeedPath.PREDICT)


def attack_seed(seed: int) -> int:
    """The seed of an attack's noise (:func:`rs_core.attacks.attack_smoothed`) run with ``seed``: independent of
    CERTIFY's (``seed``) and PREDICT's (:func:`predict_seed`) noise for the same seed, reproducible with it.

    >>> attack_seed(5) == derive_seed(5, SeedPath.ATTACK) not in (5, predict_seed(5))
    True
    """
    return derive_seed(seed, SeedPath.ATTACK)


def example_seed(seed: int, index: int) -> int:
    """The seed of example ``index`` of a data set: ``seed + index`` (Cohen et al.'s scripts, the shipped logs and
    merged ``torchrun`` logs depend on this value), refused when it leaves [0, 2**64).

    >>> example_seed(7, 3)
    10
    """
    seed = check_seed(seed)
    if seed is None:
        raise ValueError("seed: an example's seed needs a parent seed, got None")
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
        raise ValueError(f"index: must be an integer >= 0, got {index!r}")
    child = seed + int(index)
    if child >= SEED_LIMIT:
        raise ValueError(f"seed: example {int(index)} uses seed + {int(index)} = {child}, outside [0, 2**64); "
                         f"use a seed below {SEED_LIMIT - int(index)}")
    return child


def _mt_init(seed32: int) -> np.ndarray:
    """The Mersenne Twister's own seeding (init_genrand), as a reference for the layout check."""
    state = np.empty(_MT_WORDS, dtype=np.uint64)
    state[0] = seed32 & 0xFFFFFFFF
    for i in range(1, _MT_WORDS):
        prev = int(state[i - 1])
        state[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
    return state


@functools.cache
def cpu_state_layout_ok() -> bool:
    """Whether this PyTorch's CPU generator state has the layout :func:`make_generator` writes.

    Checked against ``manual_seed``: after it, the state words must be init_genrand(seed),
    with left = 1, seeded = 1, next = 0.
    """
    g = torch.Generator(device="cpu")
    g.manual_seed(123456789)
    raw = g.get_state().numpy().tobytes()
    if len(raw) != _STATE_BYTES:
        return False
    left, seeded = np.frombuffer(raw[_OFF_LEFT:_OFF_NEXT], dtype=np.int32)
    nxt = np.frombuffer(raw[_OFF_NEXT:_OFF_STATE], dtype=np.uint64)[0]
    words = np.frombuffer(raw[_OFF_STATE:_OFF_STATE + 8 * _MT_WORDS], dtype=np.uint64)
    return bool(left == 1 and seeded == 1 and nxt == 0 and np.array_equal(words, _mt_init(123456789)))


def _seed_cpu(g: torch.Generator, seed: int) -> None:
    words = np.random.SeedSequence(seed).generate_state(_MT_WORDS, np.uint32)
    # As NumPy's MT19937 does: only the top bit of word 0 is used; never an all-zero state.
    if not (words[0] & 0x80000000) and not words[1:].any():
        words[0] = 0x80000000
    g.manual_seed(0)  # a clean state (normal-sample caches invalid) to overwrite
    raw = bytearray(g.get_state().numpy().tobytes())
    raw[0:8] = np.uint64(seed).tobytes()  # initial_seed() reports the caller's seed
    raw[_OFF_LEFT:_OFF_NEXT] = np.array([1, 1], dtype=np.int32).tobytes()  # twist before the first draw
    raw[_OFF_NEXT:_OFF_STATE] = np.uint64(0).tobytes()
    raw[_OFF_STATE:_OFF_STATE + 8 * _MT_WORDS] = words.astype(np.uint64).tobytes()
    g.set_state(torch.frombuffer(raw, dtype=torch.uint8).clone())


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` whose state is derived from all the bits of ``seed``.

    ``initial_seed()`` of a CPU generator returns ``seed``; on other devices it returns the
    derived 64-bit Philox key.
    """
    seed = check_seed(seed)
    if seed is None:
        raise ValueError("seed: must be an integer, got None")
    device = torch.device(device)
    g = torch.Generator(device=device)
    if device.type == "cpu":
        if cpu_state_layout_ok():
            _seed_cpu(g, seed)
            return g
        warnings.warn("rs_core: this PyTorch's CPU generator state has an unknown layout; seeding with a 64-bit "
                      "hash of the seed, of which the CPU generator keeps 32 bits", RuntimeWarning, stacklevel=2)
    g.manual_seed(derive_seed(seed))
    return g


__all__ = [
    "SEED_LIMIT",
    "SeedPath",
    "attack_seed",
    "cpu_state_layout_ok",
    "derive_seed",
    "example_seed",
    "fresh_seed",
    "make_generator",
    "predict_seed",
]
