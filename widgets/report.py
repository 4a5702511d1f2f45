"""Words and tables about a result: class labels, the radius in pixels, abstentions, other bounds, the JSON."""

from __future__ import annotations

import math
from typing import Any

from rs_core.logs.document import certificate_document, class_label, radii_table  # noqa: F401 — the pages' names for them
from rs_core.rounding import floor_str

ABSTAIN_ADVICE = ("Abstaining is not an error: under noise of this σ the model's votes for its top class were not "
                  "shown to exceed one half with the required confidence, so the smoothed classifier makes no claim "
                  "about this input. To try: more samples (n max) if the votes lean clearly one way; a smaller σ (the "
                  "model may be unsure under this much noise, at the price of smaller radii); a model trained with "
                  "this noise at this σ (a model trained without noise abstains almost everywhere).")


def votes_text(names: list[str], counts) -> str:
    return ", ".join(f"{class_label(names, i)}: {int(v)}" for i, v in enumerate(counts) if v)


def radius_in_words(radius: float, input_shape: tuple[int, ...]) -> str:
    """What an ℓ2 radius allows, in pixels: the same change spread over every value, in grey levels (all rounded
    down, like the radius itself)."""
    d = math.prod(input_shape)
    per_value = radius / math.sqrt(d)
    return (f"Radius {floor_str(radius)} is an ℓ2 distance in the same units as σ (pixels in [0, 1]): no change of "
            f"the image with ℓ2 norm below it changes the certified class. Spread evenly over all {d:,} values that is "
            f"{floor_str(per_value)} per value ≈ {math.floor(per_value * 255)} of 255 grey levels; concentrated, one "
            f"value may change by up to {floor_str(min(radius, 1.0))}.")


def repeat_caveat(k: int, alpha: float) -> str | None:
    """The multiple-testing warning once one input has been certified k > 1 times in a session."""
    if k <= 1:
        return None
    return (f"You have certified this input {k} times in this session (other seeds, σ or settings). Each certificate "
            f"holds with probability ≥ 1 − α on its own; reporting the best of them is valid only at 1 − {k}·α "
            f"= {max(0.0, 1 - k * alpha):g} (union bound). To choose among σ honestly, use Compare σ's "
            "\"best σ\" mode, which spends α/k on each.")


def input_record(run) -> dict[str, Any]:
    """How a certificate names its input: enough to check that a file is the one that was certified."""
    return {"source": run.source, "true_label": run.true_label, "shape": list(run.x.shape),
            "sha256_float32": run.input_sha256, "file_sha256": run.file_sha256, "options": run.options}


def model_name(model: dict[str, Any]) -> str:
    """How a run names what it smoothed: the classifier, or with a denoiser both (classifier ∘ denoiser, the order
    of f∘D)."""
    label = str(model.get("label") or model.get("file") or "model")
    den = model.get("denoiser")
    if not den:
        return label
    return f"{label} ∘ {den.get('label') or den.get('file') or 'denoiser'} (classifier ∘ denoiser)"


def model_record(run) -> dict[str, Any]:
    return dict(run.model)


def certificate_report(run) -> dict[str, Any]:
    """Everything needed to check or reproduce a certificate: what the download button serves. An attack run on this
    certificate (widgets/attack.py keeps its record in ``run.extra["attack"]``) is added as its own section, found or
    not — and a soundness alarm (an adversarial example inside the certified radius) with it."""
    doc = certificate_document(run.job.certificate, class_names=run.class_names, model=model_record(run),
                               input=input_record(run), prediction=run.job.prediction,
                               repeat=int(run.extra.get("repeat", 1)), warnings=run.extra.get("warnings", ()))
    if run.extra.get("attack") is not None:
        doc["attack"] = run.extra["attack"]
    return doc
