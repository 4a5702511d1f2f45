"""Randomized smoothing in two dimensions, for teaching (the app's Playground page; Streamlit-free).

In 2-D everything is cheap enough to compute live and exactly where it matters:

* :func:`base_classifier` — preset base classifiers on the plane: a half-plane (an exact linear rule, where
  Cohen's bound is tight), two moons, concentric rings and a checkerboard (small MLPs trained in about a second,
  seeded, on points labelled by the exact shape);
* :func:`smoothed_grid` — the smoothed classifier's class probabilities on a grid, by Monte Carlo (vectorized;
  one noise draw shared by all grid points, so the picture is smooth in the point), or exactly for the half-plane
  (Φ of the signed distance over σ);
* :func:`exact_probabilities` — the smoothed probabilities at one point by Gauss–Hermite quadrature
  (deterministic; the limit of CERTIFY's estimate as n → ∞), exact in closed form for the half-plane;
* :func:`certify_point` — Cohen et al.'s CERTIFY at a point (``rs_core.Smooth``: Clopper–Pearson at level α),
  with the radius of the exact pA beside it and Lecuyer's and Li's radii for the same counts;
* :func:`nearest_boundary` — the nearest point of the smoothed classifier's decision boundary found on the grid
  (exact for the half-plane), to check a certificate against the true distance.

Points are ``(x, y)`` in the square [−LIM, LIM]²; a point is given to the models as a [1, 1, 2] "image".

>>> clf = base_classifier("half-plane")
>>> cert = certify_point(clf, (0.5, 0.0), sigma=0.5, n=1000, alpha=0.001, seed=0)
>>> cert.prediction, cert.radius <= cert.radius_exact <= 0.5 + 1e-9
(1, True)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

from rs_core.checks import check_alpha, check_count, check_sigma
from rs_core.smoothing.bounds import cohen_radius, lecuyer_radius, li_radius
from rs_core.smoothing.noises import get_noise
from rs_core.smoothing.results import ABSTAIN
from rs_core.smoothing.seeding import SeedPath, derive_seed, make_generator
from rs_core.smoothing.smooth import Smooth

LIM = 3.0
PRESETS = {
    "half-plane": "a straight boundary: x·cos 30° + y·sin 30° > 0.2 (the exact linear rule; Cohen's bound is tight)",
    "two moons": "two interleaved half-circles (an MLP trained on them)",
    "rings": "a disc inside a ring (an MLP trained on them)",
    "checkerboard": "squares of side 1.5 (an MLP trained on them): thin regions that large σ washes out",
}
_HALF_PLANE_ANGLE = math.radians(30.0)
_HALF_PLANE_OFFSET = 0.2


class HalfPlane(nn.Module):
    """f(x) = 1[w·x > b] with ‖w‖ = 1: scores [0, w·x − b]. Its smoothed classifier is f itself, with
    pA = Φ(|w·x − b| / σ) and true certified radius |w·x − b| (Cohen et al. App. B)."""

    def __init__(self, angle: float = _HALF_PLANE_ANGLE, offset: float = _HALF_PLANE_OFFSET) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64))
        self.offset = float(offset)
        self.eval()  # no layer behaves differently in training; CERTIFY wants eval mode

    def margin(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance to the boundary of points [..., 2]."""
        return points.to(torch.float64) @ self.w - self.offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.margin(x.reshape(x.shape[0], 2))
        return torch.stack([torch.zeros_like(m), m], dim=1)


class _Flat(nn.Module):
    """An MLP on points, taking them as [B, 1, 1, 2] images like every rs_core model."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], 2).float())


def _labels(preset: str, p: np.ndarray) -> np.ndarray:
    """The exact shape behind each trained preset (its ground truth)."""
    x, y = p[:, 0], p[:, 1]
    if preset == "two moons":
        upper = (np.hypot(x + 0.5, y + 0.25) < 1.5) & (np.hypot(x + 0.5, y + 0.25) > 0.7) & (y > -0.25)
        lower = (np.hypot(x - 0.5, y - 0.25) < 1.5) & (np.hypot(x - 0.5, y - 0.25) > 0.7) & (y < 0.25)
        return np.where(upper, 0, np.where(lower, 1, (y < 0.5 * x).astype(int)))
    if preset == "rings":
        r = np.hypot(x, y)
        return ((r > 1.0) & (r < 2.0)).astype(int)
    if preset == "checkerboard":
        return ((np.floor(x / 1.5) + np.floor(y / 1.5)) % 2).astype(int)
    raise ValueError(f"preset: must be one of {sorted(PRESETS)}, got {preset!r}")


@functools.lru_cache(maxsize=8)
def base_classifier(preset: str, seed: int = 0) -> nn.Module:
    """The base classifier of a preset (cached): the exact half-plane, or an MLP fitted to the shape in ~1 s."""
    if preset not in PRESETS:
        raise ValueError(f"preset: must be one of {sorted(PRESETS)}, got {preset!r}")
    if preset == "half-plane":
        return HalfPlane().eval()
    g = make_generator(derive_seed(seed, SeedPath.TRAIN_SHUFFLE))  # which points each step's batch takes
    rng = np.random.default_rng(seed)
    points = rng.uniform(-LIM, LIM, size=(6000, 2))
    labels = torch.from_numpy(_labels(preset, points))
    xs = torch.from_numpy(points).float()
    net = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for layer in net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    with torch.enable_grad():
        for _ in range(400):
            idx = torch.randint(0, len(xs), (512,), generator=g)
            loss = nn.functional.cross_entropy(net(xs[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return _Flat(net).eval()


def grid(resolution: int = 61) -> tuple[np.ndarray, np.ndarray]:
    """The plane's sample points: ``(xs, ys)``, each [resolution] on [−LIM, LIM]."""
    check_count(resolution, "resolution", minimum=2)
    if resolution > 401:
        raise ValueError(f"resolution: at most 401, got {resolution}")
    axis = np.linspace(-LIM, LIM, resolution)
    return axis, axis.copy()


def _classes(model: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """Base-classifier classes of points [N, 2] (in chunks)."""
    out = []
    with torch.inference_mode():
        for chunk in torch.split(points, 200_000):
            out.append(model(chunk.reshape(-1, 1, 1, 2)).argmax(1))
    return torch.cat(out)


def base_grid(model: nn.Module, resolution: int = 61) -> np.ndarray:
    """The base classifier's class at each grid point: [resolution (y), resolution (x)]."""
    xs, ys = grid(resolution)
    X, Y = np.meshgrid(xs, ys)
    pts = torch.from_numpy(np.stack([X.ravel(), Y.ravel()], 1))
    return _classes(model, pts).reshape(len(ys), len(xs)).numpy()


def smoothed_grid(model: nn.Module, sigma: float, resolution: int = 61, n: int = 128, seed: int = 0,
                  num_classes: int = 2, noise: str = "gaussian") -> np.ndarray:
    """The smoothed classifier's probability of each class at each grid point: [resolution, resolution, classes].

    Exact (Φ of the signed distance over σ) for :class:`HalfPlane`; otherwise Monte Carlo with ``n`` Gaussian
    offsets shared by every grid point (common random numbers: neighbouring points see the same noise, so the
    estimated regions are smooth and their boundary is where the estimate crosses ½, within ~1/√n).
    """
    sigma = check_sigma(sigma)
    check_count(n, "n")
    dist = get_noise(noise, sigma)
    xs, ys = grid(resolution)
    X, Y = np.meshgrid(xs, ys)
    pts = torch.from_numpy(np.stack([X.ravel(), Y.ravel()], 1))
    if isinstance(model, HalfPlane) and noise == "gaussian":
        p1 = torch.from_numpy(stats.norm.cdf(model.margin(pts).numpy() / sigma))
        probs = torch.stack([1 - p1, p1], 1)
    elif isinstance(model, HalfPlane):
        p1 = torch.from_numpy(half_plane_p1(model, model.margin(pts).numpy(), sigma, noise))
        probs = torch.stack([1 - p1, p1], 1)
    else:
        eps = dist.transform(torch.randn(n, 2, generator=make_generator(seed), dtype=torch.float32))
        pts32 = pts.float()
        counts = torch.zeros(len(pts), num_classes, dtype=torch.float64)
        for chunk in range(0, n, 64):
            e = eps[chunk:chunk + 64]
            noisy = (pts32[:, None, :] + e[None]).reshape(-1, 2)
            cls = _classes(model, noisy).reshape(len(pts), len(e))
            counts += nn.functional.one_hot(cls, num_classes).sum(1).to(torch.float64)
        probs = counts / n
    return probs.reshape(len(ys), len(xs), num_classes).numpy()


@functools.lru_cache(maxsize=1)
def _normal_points() -> torch.Tensor:
    """2^16 scrambled-Sobol points mapped to N(0, I₂): a deterministic quasi-Monte Carlo rule whose error for the
    probability of a region with a smooth boundary is ~1e-4 (plain Monte Carlo would need ~10⁸ samples)."""
    from scipy.stats import qmc

    u = qmc.Sobol(d=2, scramble=True, seed=0).random_base2(m=16)
    return torch.from_numpy(stats.norm.ppf(np.clip(u, 1e-12, 1 - 1e-12)))


def _noise_points(sigma: float, noise: str) -> torch.Tensor:
    """The quasi-Monte Carlo rule of :func:`_normal_points` mapped to ``noise`` (its inverse-CDF map per
    coordinate, as CERTIFY's sampler): [2^16, 2] float64."""
    if noise == "gaussian":
        return sigma * _normal_points()
    return get_noise(noise, sigma).transform(_normal_points().clone())


def half_plane_p1(model: HalfPlane, margin: np.ndarray, sigma: float, noise: str) -> np.ndarray:
    """P(w·(x + ε) > b) = P(w·ε > −m) at signed distances ``margin`` m, for a symmetric ``noise``: the law of w·ε
    by the quasi-Monte Carlo rule (2^16 points, sorted once), within ~1e-4. ½ exactly at m = 0 for every symmetric
    noise, so g's boundary is f's: the smoothed half-plane is the half-plane itself."""
    proj = np.sort((_noise_points(sigma, noise) @ model.w).numpy())
    below = np.searchsorted(proj, -np.asarray(margin, dtype=float), side="right") / len(proj)
    p1 = 1.0 - below
    return np.where(np.asarray(margin) == 0, 0.5, p1)


def exact_probabilities(model: nn.Module, point: tuple[float, float], sigma: float, num_classes: int = 2,
                        noise: str = "gaussian") -> np.ndarray:
    """P(f(x + ε) = c) at one point, ε the ``noise`` of standard deviation σ: closed form for the Gaussian
    half-plane, else quasi-Monte Carlo (2^16 Sobol points mapped to the noise; deterministic, within ~1e-3 of the
    limit n → ∞ that CERTIFY's estimate tends to)."""
    sigma = check_sigma(sigma)
    x = torch.tensor(point, dtype=torch.float64)
    if isinstance(model, HalfPlane):
        m = float(model.margin(x))
        p1 = float(stats.norm.cdf(m / sigma)) if noise == "gaussian" else float(half_plane_p1(model, m, sigma, noise))
        return np.array([1 - p1, p1])
    cls = _classes(model, x + _noise_points(sigma, noise)).numpy()
    return np.bincount(cls, minlength=num_classes) / len(cls)


@dataclass(frozen=True)
class PointCertificate:
    """CERTIFY at a point, and the radii beside it.

    ``radius``: the radius from the Clopper–Pearson bound in ``norm`` for ``noise`` (Cohen's σΦ⁻¹(p) for Gaussian
    ℓ2; holds with probability ≥ 1 − α); ``radius_exact``: the same formula at the exact pA (what CERTIFY tends to
    as n → ∞; 0 when the class differs); ``radius_lecuyer``, ``radius_li``: those Gaussian ℓ2 bounds for the same
    pA lower bound, pB = 1 − pA (0 for other noises and norms).
    """

    prediction: int
    radius: float
    p_lower: float
    p_exact: float
    radius_exact: float
    radius_lecuyer: float
    radius_li: float
    counts: tuple[int, ...]
    counts_selection: tuple[int, ...]
    noise: np.ndarray  # [k, 2]: a few of the noisy points (for the picture)
    sigma: float
    n: int
    alpha: float
    seed: int
    noise_name: str = "gaussian"
    norm: str = "l2"


def certify_point(model: nn.Module, point: tuple[float, float], sigma: float, n0: int = 100, n: int = 1000,
                  alpha: float = 0.001, seed: int = 0, show: int = 300, *, noise: str = "gaussian",
                  norm: str = "l2") -> PointCertificate:
    """CERTIFY (Cohen et al. Algorithm 2, ``rs_core.Smooth``) at a point of the plane, with the exact-pA radius
    and Lecuyer's and Li's radii for the same counts. ``show`` noisy points are returned for the picture (drawn
    from their own generator, so they never influence the certificate)."""
    sigma, alpha = check_sigma(sigma), check_alpha(alpha)
    x = torch.tensor(point, dtype=torch.float32).reshape(1, 1, 2)
    cert = Smooth(model, sigma, batch_size=min(n, 10_000), noise=noise, norm=norm).certify(x, n0=n0, n=n,
                                                                                          alpha=alpha, seed=seed)
    probs = exact_probabilities(model, point, sigma, noise=noise)
    top = int(cert.prediction) if cert.prediction != ABSTAIN else int(np.argmax(cert.counts_selection))
    p_exact = float(probs[top])
    dist = get_noise(noise, sigma)
    gaussian_l2 = (noise, norm) == ("gaussian", "l2")
    if gaussian_l2:
        radius_exact = float(sigma * stats.norm.ppf(p_exact)) if p_exact > 0.5 else 0.0
    else:
        radius_exact = float(dist.radius(min(p_exact, 1.0 - 1e-15), norm, 2)) if p_exact > 0.5 else 0.0
    p = cert.p_lower
    ok = cert.prediction != ABSTAIN
    z = torch.randn(show, 2, generator=make_generator(derive_seed(seed, SeedPath.PLAYGROUND_NOISE)), dtype=torch.float64)
    shown = (dist.transform(z) + torch.tensor(point, dtype=torch.float64)).numpy()
    return PointCertificate(
        prediction=int(cert.prediction), radius=float(cert.radius) if ok else 0.0, p_lower=float(p),
        p_exact=p_exact, radius_exact=radius_exact,
        radius_lecuyer=float(lecuyer_radius(p, 1 - p, sigma)) if ok and gaussian_l2 else 0.0,
        radius_li=float(li_radius(p, 1 - p, sigma)) if ok and gaussian_l2 else 0.0,
        counts=tuple(int(c) for c in cert.counts), counts_selection=tuple(int(c) for c in cert.counts_selection),
        noise=shown, sigma=sigma, n=n, alpha=alpha, seed=seed, noise_name=noise, norm=norm)


def half_plane_distance(w: np.ndarray, margin: float, norm: str = "l2") -> tuple[np.ndarray, float]:
    """The smallest perturbation δ (in ``norm``) that moves a point at signed distance ``margin`` (w·x − b, any w)
    onto the line w·x = b, and its norm |w·x − b| / ‖w‖_q, q the dual norm (ℓ1 ↔ ℓ∞, ℓ2 ↔ ℓ2): along w for ℓ2,
    along the largest |w_i| alone for ℓ1, along sign(w) in every coordinate for ℓ∞.

    >>> half_plane_distance(np.array([3.0, 4.0]), 10.0, "l1")[1], half_plane_distance(np.array([3.0, 4.0]), 7.0, "linf")[1]
    (2.5, 1.0)
    """
    w = np.asarray(w, dtype=float)
    if norm == "l2":
        delta = -margin * w / float(w @ w)
    elif norm == "l1":
        k = int(np.argmax(np.abs(w)))
        delta = np.zeros_like(w)
        delta[k] = -margin / w[k]
    elif norm == "linf":
        delta = -margin * np.sign(w) / float(np.abs(w).sum())
    else:
        raise ValueError(f"norm: must be one of l2, l1, linf, got {norm!r}")
    return delta, float(_norm_of(delta[None], norm)[0])


def dual_norm(w: np.ndarray, norm: str = "l2") -> float:
    """‖w‖_q for q the dual of ``norm`` (ℓ1 ↔ ℓ∞, ℓ2 ↔ ℓ2): the largest w·δ over ‖δ‖_p ≤ 1 (Hölder), so the ℓp
    distance from x to the line w·x = b is |w·x − b| / ‖w‖_q — the half-plane's exact certified radius in ℓp."""
    w = np.asarray(w, dtype=float)
    if norm not in ("l2", "l1", "linf"):
        raise ValueError(f"norm: must be one of l2, l1, linf, got {norm!r}")
    return float(_norm_of(w[None], {"l2": "l2", "l1": "linf", "linf": "l1"}[norm])[0])


def _norm_of(v: np.ndarray, norm: str) -> np.ndarray:
    return {"l2": lambda a: np.sqrt((a * a).sum(-1)), "l1": lambda a: np.abs(a).sum(-1),
            "linf": lambda a: np.abs(a).max(-1)}[norm](np.asarray(v, dtype=float))


def ball_outline(center: tuple[float, float], radius: float, norm: str = "l2",
                 points: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """The boundary of the ``norm`` ball of ``radius`` around ``center`` as a closed polyline (x, y): a circle
    (ℓ2), a diamond (ℓ1, corners on the axes) or a square (ℓ∞, sides parallel to the axes)."""
    cx, cy = center
    if norm == "l2":
        t = np.linspace(0, 2 * math.pi, points)
        return cx + radius * np.cos(t), cy + radius * np.sin(t)
    if norm == "l1":
        xs, ys = np.array([1.0, 0.0, -1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, -1.0, 0.0])
    elif norm == "linf":
        xs, ys = np.array([1.0, -1.0, -1.0, 1.0, 1.0]), np.array([1.0, 1.0, -1.0, -1.0, 1.0])
    else:
        raise ValueError(f"norm: must be one of l2, l1, linf, got {norm!r}")
    return cx + radius * xs, cy + radius * ys


def nearest_boundary(model: nn.Module, point: tuple[float, float], smoothed: np.ndarray,
                     resolution: int | None = None, norm: str = "l2") -> tuple[tuple[float, float], float] | None:
    """The nearest point of the smoothed classifier's decision boundary, and its distance in ``norm``: exact for
    the half-plane with any symmetric noise (its g is the half-plane itself: :func:`half_plane_distance`);
    otherwise the nearest midpoint between neighbouring grid points whose smoothed class differs (within half a
    grid step). None when the grid shows no boundary."""
    px, py = point
    if isinstance(model, HalfPlane):
        w = model.w.numpy()
        m = float(w @ np.array([px, py])) - model.offset
        delta, dist = half_plane_distance(w, m, norm)
        foot = np.array([px, py]) + delta
        return (float(foot[0]), float(foot[1])), dist
    res = resolution or smoothed.shape[0]
    xs, ys = grid(res)
    cls = smoothed.argmax(-1)
    mids = []
    diff_x = cls[:, 1:] != cls[:, :-1]
    iy, ix = np.nonzero(diff_x)
    mids.append(np.stack([(xs[ix] + xs[ix + 1]) / 2, ys[iy]], 1))
    diff_y = cls[1:, :] != cls[:-1, :]
    iy, ix = np.nonzero(diff_y)
    mids.append(np.stack([xs[ix], (ys[iy] + ys[iy + 1]) / 2], 1))
    mids = np.concatenate(mids)
    if len(mids) == 0:
        return None
    d = _norm_of(mids - np.array([px, py]), norm)
    k = int(d.argmin())
    return (float(mids[k, 0]), float(mids[k, 1])), float(d[k])


def radius_against_n(p_exact: float, sigma: float, alpha: float, ns: np.ndarray, noise: str = "gaussian",
                     norm: str = "l2") -> np.ndarray:
    """The radius CERTIFY would give if it counted exactly the expected n·pA votes: how the certified ball
    grows towards the exact one as n grows, at a given α (the cost of confidence)."""
    from rs_core.smoothing.stats import clopper_pearson_lower

    ns = np.asarray(ns, dtype=np.int64)
    k = np.floor(ns * p_exact).astype(np.int64)
    p_low = np.array([clopper_pearson_lower(int(a), int(b), alpha) for a, b in zip(k, ns, strict=True)])
    if (noise, norm) != ("gaussian", "l2"):
        return np.asarray(get_noise(noise, sigma).radius(p_low, norm, 2), dtype=float)
    return np.where(p_low > 0.5, cohen_radius(p_low, 1 - p_low, sigma), 0.0)


__all__ = ["LIM", "PRESETS", "HalfPlane", "PointCertificate", "ball_outline", "base_classifier", "base_grid",
           "certify_point", "dual_norm", "exact_probabilities", "grid", "half_plane_distance", "half_plane_p1",
           "nearest_boundary", "radius_against_n", "smoothed_grid"]
