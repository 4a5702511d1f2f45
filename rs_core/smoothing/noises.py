"""Smoothing noises and the norms they certify: Gaussian, Laplace and uniform (Yang et al. 2020, "Randomized
smoothing of all shapes and sizes", §4 and Table 1; Teng et al. 2020, "ℓ1 adversarial robustness certificates: a
randomized smoothing approach", Theorem 1).

Every noise is parameterised by its per-coordinate standard deviation σ, so that σ means the same thing for all of
them; ``lam`` is the noise's own scale (Gaussian σ, Laplace σ/√2, uniform half-width σ√3).

Samples are made from the standard normals of :class:`~rs_core.smoothing.sampling.NoiseStream` by a per-coordinate
inverse-CDF map (:meth:`transform`): exact in distribution, and the stream, hence a certificate, stays independent
of the batch size.

Radii (``p_lower`` = the (1 − α) lower bound on pA, pB bounded by 1 − p_lower; 0 where p_lower ≤ ½):

==========  =====================================  ======================================
noise       ℓ1                                     ℓ∞ (d = input dimension)
==========  =====================================  ======================================
Gaussian    σΦ⁻¹(p) (the ℓ2 radius: ℓ1 ball ⊂ ℓ2)  σΦ⁻¹(p)/√d (derived from ℓ2)
Laplace     −λ ln(2(1 − p))                        not certified
uniform     2λ(p − ½)                              2λ(1 − (3/2 − p)^{1/d})
==========  =====================================  ======================================

Gaussian ℓ2 is Cohen et al.'s σΦ⁻¹(p) (:func:`~rs_core.smoothing.bounds.radius_from_p_lower`, bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rs_core.checks import check_count, check_probability, check_sigma
from rs_core.smoothing.bounds import radius_from_p_lower

NORMS = ("l2", "l1", "linf")
NOISES = ("gaussian", "laplace", "uniform")


def check_norm(norm: str) -> str:
    """One of :data:`NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"norm: must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def _complement(p_lower, complement) -> np.ndarray:
    """q = 1 − p_lower, from ``complement`` when the caller knows it more precisely."""
    if complement is None:
        return 1.0 - np.asarray(check_probability(p_lower, "p_lower"), dtype=float)
    return np.asarray(check_probability(complement, "complement"), dtype=float)


def _out(r: np.ndarray):
    r = np.asarray(r, dtype=float)
    return float(r) if r.ndim == 0 else r


@dataclass(frozen=True)
class _Noise:
    sigma: float
    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_sigma(self.sigma))

    @property
    def lam(self) -> float:
        raise NotImplementedError

    def _norm(self, norm: str) -> str:
        check_norm(norm)
        if norm not in self.norms:
            raise ValueError(f"norm: {self.name} noise certifies {', '.join(self.norms)}, not {norm!r}")
        return norm

    def radius(self, p_lower, norm: str = "l2", d: int = 1, *, complement=None):
        """Certified radius in ``norm`` for p_lower (float or array; 0 where p_lower ≤ ½) on inputs of dimension d.

        ``complement`` = 1 − p_lower, when known more precisely than p_lower (CERTIFY knows it).
        """
        norm, d = self._norm(norm), check_count(d, "d")
        q = _complement(p_lower, complement)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self._radius(q, norm, d)
        return _out(np.where(q < 0.5, r, 0.0))

    def q_for_radius(self, radius: float, norm: str = "l2", d: int = 1) -> float:
        """The largest 1 − p_lower whose radius is still ≥ ``radius`` (what a target radius asks of the bound)."""
        norm, d = self._norm(norm), check_count(d, "d")
        return float(self._q_for_radius(float(radius), norm, d))

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """This noise's samples from standard normals z (any shape, float32 or wider), in place (returns z)."""
        raise NotImplementedError

    def _radius(self, q: np.ndarray, norm: str, d: int) -> np.ndarray:
        raise NotImplementedError

    def _q_for_radius(self, r: float, norm: str, d: int) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Gaussian(_Noise):
    """N(0, σ²I): ℓ2 radius σΦ⁻¹(p) (Cohen et al. 2019, Theorem 1), ℓ1 the same (an ℓ1 ball lies inside the ℓ2 ball
    of the same radius), ℓ∞ derived as the ℓ2 radius / √d (the ℓ∞ ball of radius r lies in the ℓ2 ball of r√d)."""

    name: ClassVar[str] = "gaussian"
    norms: ClassVar[tuple[str, ...]] = ("l2", "l1", "linf")

    @property
    def lam(self) -> float:
        return self.sigma

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        return z.mul_(self.sigma)  # the same operation NoiseSampler always did: today's votes bit for bit

    def _radius(self, q: np.ndarray, norm: str, d: int) -> np.ndarray:
        r = np.asarray(radius_from_p_lower(None, self.sigma, complement=q), dtype=float)
        return r / math.sqrt(d) if norm == "linf" else r

    def _q_for_radius(self, r: float, norm: str, d: int) -> float:
        from scipy import special

        r2 = r * math.sqrt(d) if norm == "linf" else r
        return float(special.ndtr(-r2 / self.sigma))  # Φ̄(r/σ)


@dataclass(frozen=True)
class Laplace(_Noise):
    """i.i.d. Laplace(0, λ), λ = σ/√2: ℓ1 radius −λ ln(2(1 − p)) (Teng et al. 2020, Theorem 1 with pB = 1 − pA;
    Yang et al. 2020, Table 1). It certifies no ℓ2 or ℓ∞ radius here."""

    name: ClassVar[str] = "laplace"
    norms: ClassVar[tuple[str, ...]] = ("l1",)

    @property
    def lam(self) -> float:
        return self.sigma / math.sqrt(2.0)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        # Inverse CDF of |X| through the upper tail: 2(1 − Φ(|z|)) = erfc(|z|/√2) is uniform on (0, 1], so
        # −λ ln(erfc(|z|/√2)) is Exp(1/λ). erfc keeps full relative precision in the tail, where 1 − Φ(|z|) in
        # float32 is 0 for |z| > 5.4 (the tail would be cut off and ln(0) = −inf).
        tail = torch.special.erfc(z.abs() * (1.0 / math.sqrt(2.0))).clamp_min_(torch.finfo(z.dtype).tiny)
        return z.sign_().mul_(tail.log_()).mul_(-self.lam)

    def _radius(self, q: np.ndarray, norm: str, d: int) -> np.ndarray:
        return -self.lam * np.log(2.0 * q)

    def _q_for_radius(self, r: float, norm: str, d: int) -> float:
        return 0.5 * math.exp(-r / self.lam)


@dataclass(frozen=True)
class Uniform(_Noise):
    """i.i.d. uniform on [−λ, λ], λ = σ√3: ℓ1 radius 2λ(p − ½), ℓ∞ radius 2λ(1 − (3/2 − p)^{1/d}) (Yang et al.
    2020, Table 1 and App.: total variation between the cube and its shift, 1 − ∏(1 − |δ_i|/2λ)). No ℓ2."""

    name: ClassVar[str] = "uniform"
    norms: ClassVar[tuple[str, ...]] = ("l1", "linf")

    @property
    def lam(self) -> float:
        return self.sigma * math.sqrt(3.0)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        # λ(2Φ(z) − 1) = λ·erf(z/√2): the same map, without the cancellation of 2Φ(z) − 1 near 0.
        return torch.special.erf(z.mul_(1.0 / math.sqrt(2.0)), out=z).mul_(self.lam)

    def _radius(self, q: np.ndarray, norm: str, d: int) -> np.ndarray:
        if norm == "l1":
            return 2.0 * self.lam * (0.5 - q)
        # 1 − (½ + q)^{1/d} = −expm1(ln(½ + q)/d): accurate for large d, where (…)^{1/d} is close to 1.
        return 2.0 * self.lam * -np.expm1(np.log(0.5 + q) / d)

    def _q_for_radius(self, r: float, norm: str, d: int) -> float:
        if norm == "l1":
            return max(0.0, 0.5 - r / (2.0 * self.lam))
        return max(0.0, (1.0 - min(1.0, r / (2.0 * self.lam))) ** d - 0.5)


Noise = Gaussian | Laplace | Uniform
_KINDS: dict[str, type[_Noise]] = {"gaussian": Gaussian, "laplace": Laplace, "uniform": Uniform}


def check_noise(noise: str) -> str:
    """One of :data:`NOISES`."""
    if noise not in _KINDS:
        raise ValueError(f"noise: must be one of {', '.join(NOISES)}, got {noise!r}")
    return noise


def get_noise(name: str, sigma: float) -> Noise:
    """The noise called ``name`` ("gaussian" | "laplace" | "uniform") with standard deviation σ.

    >>> get_noise("laplace", 1.0).radius(0.9, "l1") > 0
    True
    """
    return _KINDS[check_noise(name)](sigma)  # type: ignore[return-value]


def check_noise_norm(noise: str, norm: str) -> tuple[str, str]:
    """A (noise, norm) pair the noise certifies; ValueError naming ``noise`` or ``norm`` otherwise."""
    kind = _KINDS[check_noise(noise)]
    check_norm(norm)
    if norm not in kind.norms:
        raise ValueError(f"norm: {noise} noise certifies {', '.join(kind.norms)}, not {norm!r}")
    return noise, norm


__all__ = ["NOISES", "NORMS", "Gaussian", "Laplace", "Noise", "Uniform", "check_noise", "check_noise_norm",
           "check_norm", "get_noise"]
