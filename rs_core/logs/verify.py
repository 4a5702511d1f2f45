"""Verify a certificate document: re-run what it records and say whether the counts and the certificate are identical.

A certificate (:func:`rs_core.logs.document.certificate_document`, the app's download and ``certify-image --out``) is a
function of the model, the input, σ, n0, n at the stop, α, the seed and the device type — not of batch sizes, timing
or other users (the noise is drawn in library-fixed blocks, the bound is read at the stopping point). So anyone with
the model file and the input can re-run it and get the same counts bit for bit on the same software and device type.
:func:`verify_document` does that and reports the first difference with its likely cause::

    model file  → the model's sha256 (a byte differs) and its preprocessing
    input       → the input tensor's sha256 (a pixel differs, or other image options)
    document    → σ against its own radius (σΦ⁻¹(p_lower) must be the recorded radius)
    re-run      → selection votes, estimation votes, bound, radius, class (seed, n0, n, σ; torch or rs_core
                  version; device type)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import radius_from_p_lower
from rs_core.smoothing.noises import get_noise
from rs_core.smoothing.results import Certificate
from rs_core.smoothing.stream import CertifyStream


def software_record(device: str | torch.device) -> dict[str, str]:
    """The software and device type a certificate was made with: re-runs agree bit for bit when these are equal."""
    from rs_core import __version__

    return {"rs_core": __version__, "torch": torch.__version__, "device_type": torch.device(device).type}


def tensor_sha256(x: torch.Tensor) -> str:
    """sha256 of an input tensor as float32 bytes (C-contiguous, on the CPU): what a certificate names its input by."""
    return hashlib.sha256(x.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def combined_sha256(*hashes: str) -> str:
    """One sha256 for a model made of several files (a denoiser in front of a classifier): of their hashes, in order."""
    return hashlib.sha256("+".join(hashes).encode()).hexdigest()


@dataclass(frozen=True)
class Difference:
    """One field whose recorded value differs from the re-run's, and its likely cause in words."""

    field: str
    recorded: Any
    recomputed: Any
    cause: str

    def __str__(self) -> str:
        return f"{self.field}: recorded {self.recorded!r}, re-run {self.recomputed!r} — {self.cause}"


@dataclass
class Verification:
    """The outcome of :func:`verify_document`: identical, or the differences in the order they were checked."""

    differences: list[Difference] = field(default_factory=list)
    certificate: Certificate | None = None  # the re-run's, when it got that far

    @property
    def identical(self) -> bool:
        return not self.differences

    def first(self) -> Difference | None:
        return self.differences[0] if self.differences else None


def input_from_image(image, preprocess, options: dict[str, Any]) -> torch.Tensor:
    """A decoded image → the model input, with the image options a certificate records (``input.options``:
    :func:`rs_core.data.prepare_input`'s ``invert`` and ``frame_digit``, and ``model_preprocess`` = whether the
    model's declared resize/crop policy ``preprocess`` was passed); what certify-image, the app and verify use."""
    from rs_core.data import prepare_input

    return prepare_input(image, tuple(preprocess.input_shape), invert=options.get("invert", False),
                         frame_digit=bool(options.get("frame_digit", False)),
                         preprocess=preprocess if options.get("model_preprocess", True) else None)


def read_document(doc: Any) -> dict[str, Any]:
    """``doc`` checked to be a certificate document (the fields a re-run reads); ``ValueError`` naming what is
    missing otherwise."""
    if not isinstance(doc, dict) or not isinstance(doc.get("certificate"), dict) \
            or not isinstance(doc.get("model"), dict) or not isinstance(doc.get("input"), dict):
        raise ValueError("certificate: not an RS Lab certificate document")  # noqa: TRY004 (the CLI's error contract)
    cert = doc["certificate"]
    for key in ("sigma", "alpha", "n0", "n", "seed", "counts", "counts_selection", "prediction", "p_lower", "radius"):
        if key not in cert:
            raise ValueError(f"certificate: not an RS Lab certificate document (no certificate.{key})")
    return doc


def precheck(doc: dict[str, Any], *, model_sha256: str, x: torch.Tensor,
             preprocess: dict[str, Any] | None = None) -> list[Difference]:
    """What can be checked without sampling: the model's sha256 and preprocessing, the input's sha256, and σ
    against the recorded radius. A re-run is worth doing only when this is empty."""
    cert, model_rec, input_rec = doc["certificate"], doc["model"], doc["input"]
    out: list[Difference] = []
    if model_rec.get("sha256") != model_sha256:
        out.append(Difference("model.sha256", model_rec.get("sha256"), model_sha256,
                              "another model file: at least one byte differs"))
    if preprocess is not None and model_rec.get("preprocess") not in (None, preprocess):
        out.append(Difference("model.preprocess", model_rec.get("preprocess"), preprocess,
                              "the model is read with other preprocessing (input size, resize, normalization)"))
    x_sha = tensor_sha256(x)
    if input_rec.get("sha256_float32") != x_sha:
        out.append(Difference("input.sha256_float32", input_rec.get("sha256_float32"), x_sha,
                              "another input: at least one pixel differs (or other image options: invert, frame "
                              "like MNIST, resize/crop)"))
    sigma, p_lower, radius = float(cert["sigma"]), float(cert["p_lower"]), float(cert["radius"])
    if cert["prediction"] >= 0 and p_lower > 0.5:
        # p_lower is stored as 1 − q: near 1 it carries q to ~1e-16 only, hence the loose tolerance (an edited σ
        # moves the radius by its own factor, e.g. 2× for 0.5 → 0.25).
        noise, norm = cert.get("noise", "gaussian"), cert.get("norm", "l2")  # older documents: Gaussian ℓ2
        if (noise, norm) == ("gaussian", "l2"):
            expected = float(radius_from_p_lower(p_lower, sigma, complement=1.0 - p_lower))
            formula = "σ·Φ⁻¹(p_lower)"
        else:
            expected = float(get_noise(noise, sigma).radius(p_lower, norm, x.numel(), complement=1.0 - p_lower))
            formula = f"the {noise} {norm} radius of p_lower"
        if not math.isclose(expected, radius, rel_tol=1e-3, abs_tol=1e-6):
            out.append(Difference("sigma", sigma, None, f"{formula} = {expected:.6f} is not the recorded "
                                                        f"radius {radius:.6f}: σ (or the noise, or the norm) was "
                                                        "changed"))
    return out


def rerun_stream(model: nn.Module, x: torch.Tensor, doc: dict[str, Any], *, batch_size: int = 1000,
                 batch_seconds: float | None = None) -> CertifyStream:
    """The stream that re-runs ``doc``'s certificate: its σ, n0, α and seed, to its recorded n (at least 1). Any
    batch size and ``batch_seconds`` give the same votes; the app runs it live, :func:`verify_document` at once."""
    cert = doc["certificate"]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return CertifyStream(model, x.to(device), float(cert["sigma"]), n0=int(cert["n0"]), n_max=max(1, int(cert["n"])),
                         alpha=float(cert["alpha"]), batch_size=batch_size, seed=int(cert["seed"]),
                         batch_seconds=batch_seconds, noise=str(cert.get("noise", "gaussian")),
                         norm=str(cert.get("norm", "l2")))


def compare(doc: dict[str, Any], again: Certificate) -> list[Difference]:
    """The re-run's votes and certificate against the recorded ones (a run stopped during selection: its selection
    votes only), each difference with the likely cause (other software or device type, or the recorded settings)."""
    cert = doc["certificate"]
    cause = _version_cause(doc.get("software") or {}, software_record(again.device))
    checks = [("certificate.counts_selection", list(cert["counts_selection"]), again.counts_selection.tolist())]
    if int(cert["n"]) > 0:
        checks += [("certificate.counts", list(cert["counts"]), again.counts.tolist()),
                   ("certificate.prediction", cert["prediction"], again.prediction),
                   ("certificate.p_lower", float(cert["p_lower"]), again.p_lower),
                   ("certificate.radius", float(cert["radius"]), again.radius)]
    return [Difference(name, recorded, recomputed, cause) for name, recorded, recomputed in checks
            if not np.array_equal(np.asarray(recorded), np.asarray(recomputed))]


def _version_cause(recorded: dict[str, Any], here: dict[str, str]) -> str:
    changed = [f"{k} {recorded.get(k)} (re-run {here[k]})" for k in ("device_type", "torch", "rs_core")
               if k in recorded and recorded.get(k) != here[k]]
    if changed:
        return "made with other software or another device type: " + ", ".join(changed)
    return ("the seed, σ, n0 or n recorded are not those the counts were drawn with (same software and device type, "
            "same model and input)")


def verify_document(doc: dict[str, Any], model: nn.Module, x: torch.Tensor, *, model_sha256: str,
                    preprocess: dict[str, Any] | None = None) -> Verification:
    """Re-run the certificate in ``doc`` with ``model`` (whose file(s) hash to ``model_sha256``) on input ``x``
    [C, H, W] and compare, field by field; the first difference is the one to read.

    ``preprocess``: the loaded model's declared preprocessing (compared with the recorded one when both are given).
    """
    doc = read_document(doc)
    out = Verification(precheck(doc, model_sha256=model_sha256, x=x, preprocess=preprocess))
    if out.differences:  # a re-run on another model or input would only repeat the difference
        return out
    stream = rerun_stream(model, x, doc)
    n0, n = int(doc["certificate"]["n0"]), int(doc["certificate"]["n"])
    for _ in stream:
        if n == 0 and stream.n0_drawn == n0:
            break  # the recorded run stopped after its selection samples
    out.certificate = stream.certificate()
    out.differences = compare(doc, out.certificate)
    return out


def rounded_strings(cert: Certificate) -> dict[str, str]:
    """The certificate's radius and bound as strings rounded down (the README's rule): what a reader may quote."""
    return {"radius": floor_str(cert.radius), "p_lower": floor_str(cert.p_lower, 6)}


__all__ = ["Difference", "Verification", "combined_sha256", "compare", "input_from_image", "precheck", "read_document",
           "rerun_stream", "rounded_strings", "software_record", "tensor_sha256", "verify_document"]
