"""rs_core: randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019) as a small library.

>>> from rs_core import Smooth, certify, predict, sample_counts, ABSTAIN
"""

from .adaptive import RadiusCertificate, RadiusCertifier
from .bounds import (
    cohen_radius,
    lecuyer_radius,
    li_radius,
    max_certifiable_radius,
    radius_from_p_lower,
)
from .certify import (
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
from .sampling import NoiseSampler, default_device, iter_counts, sample_counts, sample_counts_many
from .smooth import Smooth
from .stats import (
    BetaMixture,
    anytime_lower_bound,
    binomial_pvalue,
    clopper_pearson_lower,
)

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "BetaMixture",
    "Certificate",
    "CertifyStream",
    "NoiseSampler",
    "Prediction",
    "RadiusCertificate",
    "RadiusCertifier",
    "Smooth",
    "Snapshot",
    "anytime_lower_bound",
    "binomial_pvalue",
    "certify",
    "certify_examples",
    "certify_many",
    "clopper_pearson_lower",
    "cohen_radius",
    "default_device",
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
