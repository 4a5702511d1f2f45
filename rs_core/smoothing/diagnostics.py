"""Is the base classifier robust to the noise at all? A warning a user should see before trusting small radii.

A model trained without noise usually changes its answer under Gaussian noise of any useful σ: its votes leave
the clean prediction, or spread over many classes, and smoothing it certifies little. These checks read votes
that were drawn anyway (the certificate's), so they cost nothing.
"""

from __future__ import annotations

import math

import numpy as np

MIN_VOTES = 20  # fewer votes say too little to warn about


def noise_robustness_warning(clean_class: int | None, counts: np.ndarray, sigma: float, *,
                             trained_sigma: float | None = None) -> str | None:
    """A warning when the votes under noise disagree with the clean prediction most of the time, or are close to
    uniform over the classes (normalized entropy ≥ 0.9); None when neither holds or there are too few votes.

    >>> noise_robustness_warning(3, np.array([0, 0, 0, 95, 5]), 0.25) is None
    True
    >>> print(noise_robustness_warning(3, np.array([60, 10, 10, 10, 10]), 0.5)[:68])
    The base classifier is not robust to noise of σ = 0.5 here: its vote
    """
    counts = np.asarray(counts, dtype=np.float64)
    n, k = float(counts.sum()), len(counts)
    if n < MIN_VOTES or k < 2:
        return None
    reasons = []
    if clean_class is not None and 0 <= clean_class < k and counts[clean_class] / n < 0.5:
        reasons.append(f"its votes under noise agree with its prediction on the clean input only "
                       f"{counts[clean_class] / n:.0%} of the time")
    p = counts[counts > 0] / n
    entropy = float(-(p * np.log(p)).sum() / math.log(k))
    if entropy >= 0.9:
        reasons.append(f"its votes are spread almost evenly over the classes (normalized entropy {entropy:.2f})")
    if not reasons:
        return None
    head = f"The base classifier is not robust to noise of σ = {sigma:g} here: {' and '.join(reasons)}. "
    if trained_sigma:
        return head + (f"The model was trained with noise (σ = {trained_sigma:g}), so this input is probably unlike "
                       "its training data, or σ is larger than it learned to tolerate.")
    return head + ("A model trained without noise certifies little under randomized smoothing; use a model trained "
                   "with Gaussian noise at this σ (Cohen et al.), or put a denoiser in front of it (denoised "
                   "smoothing, Salman et al. 2020).")
