"""The certificate document: what the app's download button serves and ``certify-image --out`` writes.

One function, :func:`certificate_document`, so that a certificate from the browser and one from the command line
have the same fields: the certificate itself (and its radius and bound as rounded-down strings), PREDICT's answer
when it ran, the radius each bound gives for the same counts, the model (file, sha256, format, architecture,
declared preprocessing — σ is in [0, 1] pixel units before normalization), the input (its sha256 as the model got
it, the image options used), the software and device type, warnings, and the guarantee in words. ``python -m
rs_core verify`` re-runs one (:mod:`rs_core.logs.verify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rs_core.logs.certify_logs import NORM_TITLES
from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import cohen_radius, lecuyer_radius, li_radius
from rs_core.smoothing.results import ABSTAIN, Certificate


def class_label(names: Sequence[str], c: int) -> str:
    return "abstain" if c == ABSTAIN else (names[c] if 0 <= c < len(names) else str(c))


def radii_table(cert: Certificate) -> dict[str, list[str]]:
    """The radius each bound gives for a certificate's counts: its pA lower bound, pB = 1 − pA (rounded down)."""
    p = cert.p_lower
    ok = cert.prediction != ABSTAIN
    if (cert.noise, cert.norm) != ("gaussian", "l2"):
        # The ℓ2 bounds of Lecuyer et al. and Li et al. are for Gaussian noise: another noise or norm has its own.
        name = f"{cert.noise} noise, {NORM_TITLES[cert.norm]} radius"
        return {"bound": [name], "radius for these counts": [floor_str(cert.radius) if ok else "— (abstain)"]}
    rows = {"Cohen et al. (tight)": cohen_radius(p, 1 - p, cert.sigma),
            "Li et al. (Rényi)": li_radius(p, 1 - p, cert.sigma),
            "Lecuyer et al. (PixelDP)": lecuyer_radius(p, 1 - p, cert.sigma)}
    return {"bound": list(rows), "radius for these counts": [floor_str(float(r)) if ok else "— (abstain)"
                                                             for r in rows.values()]}


def certificate_document(cert: Certificate, *, class_names: Sequence[str], model: dict[str, Any],
                         input: dict[str, Any], prediction: Any = None, repeat: int = 1,
                         warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Everything needed to check or reproduce a certificate, as plain JSON types."""
    from rs_core.logs.verify import rounded_strings, software_record

    return {
        "certificate": {**cert.to_dict(), "class_name": class_label(class_names, cert.prediction)},
        "rounded_down": rounded_strings(cert),
        "software": software_record(cert.device),
        "predict": None if prediction is None else {**prediction.to_dict(),
                                                    "class_name": class_label(class_names, prediction.prediction)},
        "radii_other_bounds": dict(zip(*radii_table(cert).values())),
        "model": dict(model),
        "input": dict(input),
        "certifications_of_this_input_in_the_session": int(repeat),
        "warnings": list(warnings),
        "guarantee": f"with probability ≥ 1 − {cert.alpha:g} over the sampling, the smoothed classifier "
                     f"({cert.noise} noise of standard deviation σ) returns the certified class for every "
                     f"{NORM_TITLES[cert.norm]} perturbation of norm below the radius (σ and the radius in units of "
                     "the [0, 1] image before normalization)",
    }
