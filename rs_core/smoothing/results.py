"""Results of PREDICT and CERTIFY: the dataclasses every caller (API, CLI, app) reads.

Radii are kept as exact floats here; anything that prints one uses
:func:`rs_core.rounding.floor_str`, which never rounds a radius up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rs_core.smoothing.bounds import radius_from_p_lower

if TYPE_CHECKING:
    from rs_core.smoothing.noises import Noise

ABSTAIN = -1
"""Returned as the class when PREDICT or CERTIFY abstains."""

Bound = Literal["clopper-pearson", "anytime-beta-mixture"]
StopReason = Literal["n_max", "target_certified", "target_unreachable", "stopped"]


@dataclass
class Certificate:
    """Result of CERTIFY for one input.

    ``prediction`` is a class index or ``ABSTAIN``; ``radius`` is 0.0 when
    abstaining. ``p_lower`` is the (1 − α) lower confidence bound on pA that the
    radius comes from, by the method named in ``bound``; ``counts`` holds the
    votes of the ``n`` estimation samples and ``counts_selection`` those of the
    ``n0`` selection samples. ``seed`` reproduces the run. ``noise`` is the smoothing noise (σ its standard
    deviation, :mod:`rs_core.smoothing.noises`) and ``norm`` the norm the radius is in ("l2", "l1" or "linf").
    """

    prediction: int
    radius: float
    p_lower: float
    counts: np.ndarray
    counts_selection: np.ndarray
    sigma: float
    alpha: float
    n0: int
    n: int
    seed: int
    device: str
    batch_size: int
    elapsed_s: float
    bound: Bound = "clopper-pearson"
    autocast: str | None = None
    n_max: int | None = None
    target_radius: float | None = None
    stop_reason: StopReason | None = None
    batch_seconds: float | None = None  # batches sized and re-timed by time (CertifyStream); None: by count
    noise: str = "gaussian"
    norm: str = "l2"

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = [int(c) for c in self.counts]
        d["counts_selection"] = [int(c) for c in self.counts_selection]
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Certificate:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"certificate: unknown fields {sorted(unknown)}")
        d = dict(d)
        d["counts"] = np.asarray(d["counts"], dtype=np.int64)
        d["counts_selection"] = np.asarray(d["counts_selection"], dtype=np.int64)
        return cls(**d)


@dataclass
class Prediction:
    """Result of PREDICT: the class (or ``ABSTAIN``), the votes and the test's p-value."""

    prediction: int
    counts: np.ndarray
    p_value: float
    sigma: float
    alpha: float
    n: int
    seed: int
    device: str
    batch_size: int
    elapsed_s: float
    autocast: str | None = None
    noise: str = "gaussian"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = [int(c) for c in self.counts]
        return d


@dataclass
class Snapshot:
    """State of a :class:`~rs_core.smoothing.stream.CertifyStream` after a batch.

    ``p_lower`` and ``radius`` are anytime-valid (the confidence sequence at
    this n, not a maximum over earlier batches, so they may go down as well as
    up): reading them at any snapshot, and stopping there, keeps the 1 − α
    guarantee, and they are the certificate a stop here gives. ``top_class`` is c_A from the selection samples
    (``ABSTAIN`` before selection is done).
    """

    phase: Literal["selection", "estimation"]
    n: int
    n_max: int
    counts: np.ndarray
    counts_selection: np.ndarray | None
    top_class: int
    p_lower: float
    radius: float
    elapsed_s: float
    samples_per_s: float
    done: bool = False
    stop_reason: StopReason | None = None

    # The live-stream protocol (rs_core.smoothing.jobs.LiveSnapshot): a plain CERTIFY is stage 1 of 1, its own inner snapshot.
    @property
    def stage(self) -> int:
        return 1

    @property
    def stages(self) -> int:
        return 1

    @property
    def inner(self) -> Snapshot:
        return self

    @property
    def label(self) -> str:
        return ""


def decide(q_lower: float, sigma: float, noise: Noise | None = None, norm: str = "l2",
           d: int = 1) -> tuple[float, float, bool]:
    """p_lower, radius and whether to certify, from q_lower = 1 − p_lower (CERTIFY's last step).

    ``noise`` (None: Gaussian with this σ) and ``norm`` choose the radius formula (:mod:`rs_core.smoothing.noises`);
    d is the input's dimension (used by the ℓ∞ radii).
    """
    p_lower = 1.0 - q_lower
    if q_lower > 0.5:  # p_lower < ½: CERTIFY abstains (Cohen et al. Algorithm 2)
        return p_lower, 0.0, False
    if noise is None or (noise.name == "gaussian" and norm == "l2"):  # Cohen et al.'s radius, exactly as always
        return p_lower, radius_from_p_lower(p_lower, sigma, complement=q_lower), True
    return p_lower, float(noise.radius(p_lower, norm, d, complement=q_lower)), True


__all__ = ["ABSTAIN", "Bound", "Certificate", "Prediction", "Snapshot", "StopReason", "decide"]
