"""Training the σ-estimator of dual randomized smoothing (Sun, Mao & Vechev, §5).

For each training input x and each noise level σ_i of Σ, the label is the radius R_c(x, σ_i)
that expert σ_i certifies for the *true* class with a small budget (N = 100 in the paper;
0 when it does not certify the true class). The estimator is trained on inputs noised with
σ_e against the soft labels softmax_i(R_c(x, σ_i)), each input weighted by
1 / (share of inputs whose best σ is its best σ), so rare noise levels are not ignored.
Labels are computed in chunks cached on disk, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special
from torch import nn

from rs_core.checks import check_count, check_sigma
from rs_core.dual.smooth import sigma_label_radii
from rs_core.models.architectures import get_architecture
from rs_core.smoothing.sampling import sample_counts_many
from rs_core.smoothing.seeding import SeedPath, derive_seed, example_seed
from rs_core.smoothing.stats import clopper_pearson_lower
from rs_core.training.classifier import noisy_loss
from rs_core.training.loop import Streams, fit


def expert_radii(experts: Mapping[float, nn.Module], xs: torch.Tensor, ys: torch.Tensor, n: int = 100,
                 alpha: float = 0.001, batch_size: int = 1000, *, seed: int = 0) -> np.ndarray:
    """[N, m] radius each expert (σ ascending) certifies for the true class of each input:
    σ Φ⁻¹(p_lower) with p_lower the one-sided Clopper–Pearson bound on the true class's votes
    out of n, or 0 when p_lower ≤ ½. A training label, not a certificate. Expert j's noise comes from
    ``derive_seed(seed, SeedPath.EXPERT_VOTES, j)``."""
    n = check_count(n, "n")
    sigmas = sorted(experts)
    ys = torch.as_tensor(ys).long().numpy()
    out = np.zeros((len(xs), len(sigmas)))
    for j, sigma in enumerate(sigmas):
        counts = sample_counts_many(experts[sigma], xs, sigma, n, batch_size,
                                    seed=derive_seed(seed, SeedPath.EXPERT_VOTES, j))
        p_low = np.atleast_1d(clopper_pearson_lower(counts[np.arange(len(ys)), ys], n, alpha))
        out[:, j] = np.where(p_low > 0.5, sigma * special.ndtri(np.clip(p_low, 0.5, 1.0)), 0.0)
    return out


# Bump when what a label means changes (e.g. the seed derivation of rs_core.smoothing.seeding). 3: expert j's label
# noise is derive_seed(chunk seed, SeedPath.EXPERT_VOTES, j), no longer chunk seed + j.
_LABEL_FORMAT = 3


def module_fingerprint(model: nn.Module) -> str:
    """sha256 of a module's state (names, dtypes, shapes and bytes of every parameter and buffer).

    What lives outside ``state_dict()`` (plain attributes, code) is not seen: two modules of different
    classes with equal states share a fingerprint, as two checkpoints of one architecture would.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tensor_fingerprint(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    t = torch.as_tensor(t).detach().cpu().contiguous()
    return hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode() + t.view(torch.uint8).numpy().tobytes()).hexdigest()


def label_key(experts: Mapping[float, nn.Module | str], xs: torch.Tensor, ys: torch.Tensor, n: int, alpha: float,
              batch_size: int, seed: int) -> str:
    """A digest of everything that determines a chunk's labels: the experts (σ and weights), the images and
    their classes, n, α, the batch size (it fixes how noise is drawn), the seed and the label format.
    ``experts`` maps σ to a model or to its :func:`module_fingerprint`."""
    record = {"format": _LABEL_FORMAT, "n": n, "alpha": alpha, "batch_size": batch_size, "seed": seed,
              "experts": [[float(s), m if isinstance(m, str) else module_fingerprint(m)]
                          for s, m in sorted(experts.items())],
              "xs": tensor_fingerprint(xs), "ys": tensor_fingerprint(torch.as_tensor(ys).long())}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def cached_expert_radii(cache: str | Path, experts: Mapping[float, nn.Module], xs: torch.Tensor, ys: torch.Tensor,
                        n: int = 100, *, chunk: int = 500, batch_size: int = 1000, seed: int = 0,
                        alpha: float = 0.001, progress: bool = True, log=sys.stderr) -> np.ndarray:
    """:func:`expert_radii` in chunks saved as ``cache/radii_<start>_<key>.npy``; existing chunks are reused.

    The key (:func:`label_key`) covers everything that determines a chunk's labels, so a cache
    filled with other experts, images, n, α, batch size or seed is never read back. The chunk starting at
    example i is labelled with the example's seed ``example_seed(seed, i)`` (= seed + i).
    """
    from tqdm import tqdm

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    prints = {s: module_fingerprint(m) for s, m in experts.items()}
    parts = []
    bar = tqdm(total=len(xs), desc="σ labels", unit="img", disable=not progress, file=log)
    for start in range(0, len(xs), chunk):
        stop = min(start + chunk, len(xs))
        chunk_seed = example_seed(seed, start)
        key = label_key(prints, xs[start:stop], ys[start:stop], n, alpha, batch_size, chunk_seed)
        path = cache / f"radii_{start:07d}_{key[:32]}.npy"
        if path.exists():
            part = np.load(path, allow_pickle=False)
        else:
            part = expert_radii(experts, xs[start:stop], ys[start:stop], n, alpha, batch_size=batch_size,
                                seed=chunk_seed)
            np.save(path.with_suffix(".tmp.npy"), part)
            path.with_suffix(".tmp.npy").replace(path)
        parts.append(part)
        bar.update(stop - start)
    bar.close()
    return np.concatenate(parts)


def sigma_class_weights(radii: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input weights 1 / (share of inputs whose best σ is this input's best σ), normalized to mean 1,
    and those shares. Inputs that no expert certifies (all radii 0) have no best σ: they are left out of the
    shares and weigh 1 (their soft label is uniform).

    >>> w, share = sigma_class_weights(np.array([[1.0, 0.0], [2.0, 0.5], [0.0, 1.0], [0.0, 0.0]]))
    >>> [round(v, 3) for v in share.tolist()], [round(v, 3) for v in w.tolist()]
    ([0.667, 0.333], [0.75, 0.75, 1.5, 1.0])
    """
    radii = torch.as_tensor(np.asarray(radii), dtype=torch.float64)
    m = radii.shape[1]
    has_best = radii.max(1).values > 0
    best = radii.argmax(1)
    share = torch.bincount(best[has_best], minlength=m).float() / max(int(has_best.sum()), 1)
    weight_of_class = 1.0 / share.clamp_min(1.0 / max(int(has_best.sum()), 1))
    weights = torch.where(has_best, weight_of_class[best].double(), torch.ones(len(radii), dtype=torch.float64))
    weights = weights / weights[has_best].mean() if bool(has_best.any()) else weights
    weights[~has_best] = 1.0
    return weights.float(), share


def cap_radii(radii: np.ndarray, cap: float | None) -> np.ndarray:
    """Labels with one ceiling for every σ: radii clipped at ``cap`` (None: unchanged).

    With N label samples a σ's label cannot exceed σ·Φ⁻¹(CP lower bound at N of N), about 1.5σ at N = 100, so an
    input every expert classifies perfectly is labelled for the largest σ. Clipped at a common cap (e.g. the
    smallest σ's ceiling), such an input gets equal labels for every σ that reaches the cap, and the class
    weights no longer push it to the largest σ.

    >>> cap_radii(np.array([[0.37, 0.74, 1.48], [0.2, 0.1, 0.0]]), 0.37).tolist()
    [[0.37, 0.37, 0.37], [0.2, 0.1, 0.0]]
    """
    radii = np.asarray(radii, dtype=np.float64)
    if cap is None:
        return radii
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not math.isfinite(cap) or cap <= 0:
        raise ValueError(f"label_cap: must be None or a finite radius > 0, got {cap!r}")
    return np.minimum(radii, float(cap))


def label_ceiling(sigma: float, n: int, alpha: float = 0.001) -> float:
    """The largest label radius σ can get from n label samples: σ Φ⁻¹(Clopper–Pearson lower bound at n of n)."""
    return float(sigma * special.ndtri(float(clopper_pearson_lower(n, n, alpha))))


def train_sigma_estimator(xs: torch.Tensor, radii: np.ndarray, sigma_e: float, arch: str, *, epochs: int = 10,
                          batch_size: int = 128, lr: float = 0.05, temperature: float = 1.0, seed: int = 0,
                          device: str = "cpu", progress: bool = True, log=sys.stderr, consistency: float = 0.0,
                          copies: int = 2, hard_labels: bool = False) -> tuple[nn.Module, dict]:
    """Train ``arch`` with len(Σ) outputs on xs + N(0, σ_e²I) against softmax(radii / temperature),
    class-reweighted; returns the model (eval mode) and a summary for its metadata.

    ``consistency`` > 0 adds Jeong & Shin's (2020) consistency regularization, as Sun et al. train their estimator:
    each input is noised ``copies`` times and λ · mean_j KL(p̄ ‖ p_j) pulls the copies' predicted σ-distributions
    p_j towards their mean p̄, so that the smoothed estimator's votes under σ_e concentrate (a larger R_σ).
    ``hard_labels``: one-hot labels for the σ with the largest radius, ties to the smallest σ (with a common
    ``cap_radii`` ceiling: the smallest σ that reaches it); inputs no expert certifies keep the uniform label.
    Trained by :func:`rs_core.training.loop.fit` (shuffling and noise streams derived from ``seed``), in memory."""
    sigma_e = check_sigma(sigma_e, "sigma_e")
    check_count(epochs, "epochs")
    if isinstance(consistency, bool) or not isinstance(consistency, (int, float)) or not math.isfinite(consistency) \
            or consistency < 0:
        raise ValueError(f"consistency: must be a finite weight >= 0, got {consistency!r}")
    copies = check_count(copies, "copies") if consistency > 0 else 1
    if consistency > 0 and copies < 2:
        raise ValueError("copies: consistency regularization needs at least 2 noisy copies per input")
    labels = torch.as_tensor(sigma_label_radii(radii, temperature), dtype=torch.float32)
    if hard_labels:
        r = np.asarray(radii, dtype=np.float64)
        certified = torch.as_tensor(r.max(1) > 0)
        one_hot = F.one_hot(torch.as_tensor(r.argmax(1)), r.shape[1]).float()  # argmax: the first (smallest σ) max
        labels = torch.where(certified[:, None], one_hot, labels)
    weights, share = sigma_class_weights(radii)
    m = labels.shape[1]
    torch.manual_seed(seed)  # weight initialization: the global generator, seeded with the seed itself
    dev = torch.device(device)
    model = get_architecture(arch, m).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * ((len(xs) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = time.perf_counter()

    def loss(batch: tuple[torch.Tensor, ...], streams: Streams) -> torch.Tensor:
        xb, w, y = batch
        x = xb.to(dev).repeat(copies, 1, 1, 1)  # copy-major: rows j·B … (j+1)·B − 1 are copy j
        x = x + sigma_e * torch.randn(x.shape, generator=streams.noise, device=dev)
        logp = F.log_softmax(model(x), dim=1)
        w, y = w.to(dev).repeat(copies), y.to(dev).repeat(copies, 1)
        value = -(w * (y * logp).sum(1)).mean()
        if consistency > 0:
            logp = logp.view(copies, len(xb), -1)
            mean_p = logp.exp().mean(0)
            kl = (mean_p * (mean_p.clamp_min(1e-12).log() - logp)).sum(-1).mean()  # mean_j KL(p̄ ‖ p_j)
            value = value + consistency * kl
        return value

    losses = fit(model, (xs, weights, labels), loss, opt, sched, epochs=epochs, batch_size=batch_size, seed=seed,
                 device=dev, progress=progress, log=log, desc="σ-estimator epoch").losses
    model.eval()
    summary = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "temperature": temperature, "seed": seed,
               "consistency": consistency, "copies": copies, "hard_labels": hard_labels,
               "train_images": len(xs), "final_loss": losses[-1], "losses": losses,
               "best_sigma_share": share.tolist(), "train_seconds": round(time.perf_counter() - start, 1)}
    return model, summary


@torch.inference_mode()
def route(estimator: nn.Module, xs: torch.Tensor, sigma_e: float, sigmas: list[float], *, votes: int = 8,
          batch_size: int = 1000, seed: int = 0) -> np.ndarray:
    """[N] the σ the smoothed estimator picks for each input: the majority of ``votes`` noisy copies (σ_e), as dual
    RS's stage 1 would (ties to the smaller σ). For training only — routing, not a certificate."""
    counts = sample_counts_many(estimator, xs, sigma_e, votes, batch_size, seed=seed)
    return np.asarray(sigmas, dtype=float)[counts.argmax(1)]


def finetune_expert(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, sigma: float, *, epochs: int = 1,
                    batch_size: int = 128, lr: float = 0.01, seed: int = 0, device: str = "cpu") -> nn.Module:
    """Sun et al.'s expert fine-tuning: a copy of ``model`` trained further with Gaussian noise σ on the inputs
    routed to it (SGD with momentum, constant small learning rate); returned in eval mode. Trained by
    :func:`rs_core.training.loop.fit` (shuffling and noise streams derived from ``seed``), in memory."""
    import copy

    check_count(epochs, "epochs")
    model = copy.deepcopy(model).to(device).train()
    if len(xs) == 0:
        return model.eval()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sigma = float(sigma)

    def loss(batch: tuple[torch.Tensor, ...], streams: Streams) -> torch.Tensor:
        return noisy_loss(model, batch[0].to(device), batch[1].to(device), sigma, streams.noise)

    fit(model, (xs, torch.as_tensor(ys)), loss, opt, epochs=epochs, batch_size=batch_size, seed=seed, device=device,
        progress=False)
    return model.eval()


def save_sigma_estimator(path: str | Path, model: nn.Module, arch: str, *, dataset: str, sigma_e: float,
                         expert_paths: Mapping[float, str | Path], summary: dict, label_n: int) -> dict:
    """Write the estimator with what dual RS needs to use it: Σ, σ_e and its experts (paths relative to it)."""
    import os

    from rs_core.data import dataset_info
    from rs_core.models.checkpoints import file_sha256, save_checkpoint

    path = Path(path)
    sigmas = sorted(expert_paths)
    meta = {
        "kind": "sigma-estimator", "dataset": dataset, "sigma": sigma_e, "sigma_e": sigma_e, "sigmas": sigmas,
        "class_names": [f"σ = {s:g}" for s in sigmas], "num_classes": len(sigmas),
        "input_shape": list(dataset_info(dataset).input_shape), "label_n": label_n, "training": summary,
        "experts": [{"sigma": s, "path": os.path.relpath(Path(expert_paths[s]).resolve(), path.parent.resolve()),
                     "sha256": file_sha256(expert_paths[s])} for s in sigmas],
    }
    save_checkpoint(path, model, arch, epoch=summary.get("epochs", 0), meta=meta)
    return meta


def describe_estimator(meta: dict) -> str:
    """One line on what a σ-estimator is, from its metadata: a trained network or a confidence router (thresholds).

    >>> print(describe_estimator({"training": {"router": "confidence", "routing_expert_sigma": 1.0,
    ...                                  "fit": {"thresholds": [0.0, 0.5, 0.9]}}, "sigmas": [0.25, 0.5, 1.0]}))
    routes by the σ = 1 expert's confidence: < 0.5 → σ = 0.25, ≥ 0.5 → σ = 0.5, ≥ 0.9 → σ = 1
    >>> print(describe_estimator({"training": {"router": "confidence", "routing_expert_sigma": 1.0,
    ...                                  "fit": {"thresholds": [0.0, 0.145, 0.145]}}, "sigmas": [0.25, 0.5, 1.0]}))
    routes by the σ = 1 expert's confidence: < 0.145 → σ = 0.25, ≥ 0.145 → σ = 1 (σ = 0.5 never)
    """
    training = meta.get("training") or {}
    if training.get("router") == "confidence":
        t, sigmas = training["fit"]["thresholds"], meta["sigmas"]
        # Level i is reached from t[i] up to t[i + 1]: with t[i] == t[i + 1] it is never chosen.
        ends = [*t[1:], math.inf]
        chosen = [i for i in range(len(t)) if t[i] < ends[i]]
        rules = [f"< {t[1]:.3g} → σ = {sigmas[0]:g}" if i == 0 else f"≥ {t[i]:.3g} → σ = {sigmas[i]:g}"
                 for i in chosen]
        never = [f"σ = {sigmas[i]:g}" for i in range(len(t)) if i not in chosen]
        return (f"routes by the σ = {training['routing_expert_sigma']:g} expert's confidence: " + ", ".join(rules)
                + (f" ({', '.join(never)} never)" if never else ""))
    parts = [f"trained network ({training.get('epochs', '?')} epochs"]
    if training.get("consistency"):
        parts.append(f"consistency λ = {training['consistency']:g}")
    if training.get("rounds"):
        parts.append(f"{len(training['rounds'])} round(s) of expert fine-tuning")
    return ", ".join(parts) + ")"


def _expert_records(meta: dict, name: str) -> list[dict]:
    """The estimator's ``sigmas`` and ``experts`` fields, checked before any file they name is opened."""
    sigmas, records = meta.get("sigmas"), meta.get("experts")
    if (not isinstance(sigmas, list) or not 1 <= len(sigmas) <= 64
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0
                       for s in sigmas)):
        raise ValueError(f"estimator: {name}: meta 'sigmas' must be a list of 1 to 64 finite noise levels > 0")
    if not isinstance(records, list) or len(records) != len(sigmas):
        raise ValueError(f"estimator: {name}: meta 'experts' must list one expert per σ in 'sigmas'")
    for e in records:
        if (not isinstance(e, dict) or not isinstance(e.get("path"), str) or not e["path"]
                or not isinstance(e.get("sha256"), str) or not isinstance(e.get("sigma"), (int, float))
                or isinstance(e.get("sigma"), bool) or not math.isfinite(e["sigma"])):
            raise ValueError(f"estimator: {name}: each entry of meta 'experts' needs 'sigma' (a number), "
                             f"'path' and 'sha256' (strings), got {str(e)[:120]}")
    return records


def load_dual(estimator_path: str | Path, device: str = "cpu", expert_paths: Mapping[float, str | Path] | None = None):
    """The σ-estimator and its experts {σ: LoadedModel}, loaded safely; experts' hashes are checked
    against the estimator's record unless ``expert_paths`` overrides them. Every problem raises
    ``ValueError`` starting ``estimator:``, ``experts:`` or ``checkpoint:``."""
    from rs_core.models.checkpoints import load_checkpoint

    est = load_checkpoint(estimator_path, device)
    meta = est.meta
    name = Path(estimator_path).name
    if meta.get("kind") != "sigma-estimator":
        raise ValueError(f"estimator: {estimator_path} is not a σ-estimator (no 'kind': 'sigma-estimator' in its "
                         "metadata)")
    records = _expert_records(meta, name)
    if est.num_classes != len(meta["sigmas"]):
        raise ValueError(f"estimator: {name} scores {est.num_classes} noise levels but lists {len(meta['sigmas'])}")
    experts = {}
    if expert_paths is None:
        base = Path(estimator_path).parent
        for e in records:
            loaded = load_checkpoint(base / e["path"], device)
            if loaded.sha256 != e["sha256"]:
                raise ValueError(f"experts: {e['path']} has changed since the estimator was trained "
                                 f"(sha256 {loaded.sha256[:12]}…, expected {e['sha256'][:12]}…)")
            experts[float(e["sigma"])] = loaded
    else:
        experts = {float(s): load_checkpoint(p, device) for s, p in expert_paths.items()}
    if sorted(experts) != sorted(float(s) for s in meta["sigmas"]):
        raise ValueError(f"experts: noise levels {sorted(experts)} do not match the estimator's {meta['sigmas']}")
    return est, experts
