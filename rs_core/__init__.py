"""rs_core: randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019) as a small library.

>>> from rs_core import Smooth, certify, predict, sample_counts, ABSTAIN
"""

from rs_core.attacks import AttackResult, attack_smoothed
from rs_core.models.device import default_device
from rs_core.smoothing.adaptive import RadiusCertificate, RadiusCertifier
from rs_core.smoothing.bounds import (
    cohen_radius,
    lecuyer_radius,
    li_radius,
    max_certifiable_radius,
    radius_from_p_lower,
)
from rs_core.smoothing.certify import (
    ABSTAIN,
    Certificate,
    CertifyStream,
    Prediction,
    Snapshot,
    certify,
    certify_examples,
    certify_many,
    predict,
    predict_result,
)
from rs_core.smoothing.noises import NOISES, NORMS, Gaussian, Laplace, Uniform, get_noise
from rs_core.smoothing.sampling import NoiseSampler, iter_counts, sample_counts, sample_counts_many
from rs_core.smoothing.smooth import Smooth
from rs_core.smoothing.stats import BetaMixture, anytime_lower_bound, binomial_pvalue, clopper_pearson_lower

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "NOISES",
    "NORMS",
    "AttackResult",
    "BetaMixture",
    "Certificate",
    "CertifyStream",
    "Gaussian",
    "Laplace",
    "NoiseSampler",
    "Prediction",
    "RadiusCertificate",
    "RadiusCertifier",
    "Smooth",
    "Snapshot",
    "Uniform",
    "anytime_lower_bound",
    "attack_smoothed",
    "binomial_pvalue",
    "certify",
    "certify_examples",
    "certify_many",
    "clopper_pearson_lower",
    "cohen_radius",
    "default_device",
    "get_noise",
    "iter_counts",
    "lecuyer_radius",
    "li_radius",
    "max_certifiable_radius",
    "predict",
    "predict_result",
    "radius_from_p_lower",
    "sample_counts",
    "sample_counts_many",
]
