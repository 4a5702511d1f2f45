"""The Verify page's parts: read an uploaded certificate JSON, pick the input it names, re-run it live, compare.

The re-run is an ordinary scheduled job (progress, Stop, a fair turn on the device) of the stream that
:func:`rs_core.logs.verify.rerun_stream` builds from the document; the comparison is
:func:`rs_core.logs.verify.compare`, as ``python -m rs_core verify`` does it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import streamlit as st

from rs_core.data import load_image
from rs_core.logs.verify import Difference, compare, input_from_image, precheck, read_document, rerun_stream
from rs_core.rounding import floor_str
from rs_core.untrusted import MAX_IMAGE_BYTES

from . import inputs, live, report, sidebar

KEY = "verify_run"
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024  # a certificate JSON is a few kB; anything this big is not one
_TEST_IMAGE = re.compile(r"^(?P<dataset>[\w-]+) test image (?P<index>\d+)$")


def uploaded_document() -> dict[str, Any] | None:
    """The uploaded certificate, checked; a message on the page (and None) when there is none or it is not one."""
    up = st.file_uploader("Certificate (JSON, as downloaded from the Certify page or written by certify-image)",
                          type=["json"], key="verify_doc", max_upload_size=MAX_DOCUMENT_BYTES // 2**20)
    if up is None:
        return None
    data = up.getvalue()
    try:
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"{len(data):,} bytes; a certificate is a few kB")
        return read_document(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        st.error(f"{up.name} is not JSON: {err}")
    except ValueError as err:
        st.error(f"{up.name}: {err}")
    return None


def summary(doc: dict[str, Any], settings) -> None:
    """What the certificate names, and whether the sidebar's model is the one it was made with."""
    cert, model, inp = doc["certificate"], doc["model"], doc["input"]
    software = doc.get("software") or {}
    noise, norm = _noise_norm(doc)
    st.table({"": ["class", "radius (rounded down)", "noise", "norm", "σ", "α", "n0", "n", "seed", "model",
                   "model sha256", "input", "made with"],
              "value": [str(cert.get("class_name", cert["prediction"])), floor_str(cert["radius"]),
                        sidebar.NOISE_LABELS.get(noise, noise), sidebar.NORM_LABELS.get(norm, norm),
                        f"{cert['sigma']:g}", f"{cert['alpha']:g}", f"{cert['n0']:,}", f"{cert['n']:,}",
                        str(cert["seed"]), str(model.get("label") or model.get("file")),
                        str(model.get("sha256"))[:16] + "…", str(inp.get("source")),
                        ", ".join(f"{k} {v}" for k, v in software.items()) or "not recorded (an older certificate)"]})
    if settings.model_sha256 == model.get("sha256"):
        st.success(f"The sidebar's model is the one it names ({settings.model_label}).")
    else:
        st.warning(f"The sidebar's model ({settings.model_label or 'none'}) is not the one this certificate names "
                   f"({model.get('file') or model.get('label')}): choose that model in the sidebar (upload it if it "
                   "is your own) — verifying with another model names the difference and re-runs nothing.")
    if (noise, norm) != (settings.noise, settings.norm):
        # The re-run must draw the certificate's noise (it reproduces that certificate), not the sidebar's: say so,
        # so that nothing here reads as a certificate under the noise the sidebar shows.
        st.info(f"This certificate was made with {sidebar.NOISE_LABELS.get(noise, noise)} noise and the "
                f"{sidebar.NORM_LABELS.get(norm, norm)} norm; the sidebar shows "
                f"{sidebar.NOISE_LABELS.get(settings.noise, settings.noise)} noise and "
                f"{sidebar.NORM_LABELS.get(settings.norm, settings.norm)}. Verify re-runs the certificate's own noise "
                "and norm (the sidebar's apply on the Certify page).")


def _noise_norm(doc: dict[str, Any]) -> tuple[str, str]:
    """The certificate's noise and norm (older certificates, made before other noises, are Gaussian ℓ2)."""
    cert = doc["certificate"]
    return str(cert.get("noise", "gaussian")), str(cert.get("norm", "l2"))


def choose_input(doc: dict[str, Any], settings) -> inputs.Chosen | None:
    """The input to re-run on: the test image the certificate names, or an uploaded image made into the model's
    input with the image options the certificate records."""
    source = str(doc["input"].get("source") or "")
    options = doc["input"].get("options") or {}
    named = _TEST_IMAGE.match(source)
    if named is not None:
        dataset, index = named["dataset"], int(named["index"])
        try:
            data = inputs.test_set(dataset)
        except (FileNotFoundError, ValueError) as err:
            st.info(f"It certified {source}, which this server cannot read ({err}).")
            return None
        position = data.position_of(index)
        if position is None:
            st.error(f"{dataset} has no test image {index} here.")
            return None
        x, label = data[position]
        st.caption(f"Input: {source}, read from this server's copy of {dataset}.")
        return inputs.Chosen(x, source, int(label), None, options)
    if not options and source != "drawing":
        st.caption("The certificate records no image options (an older certificate): the image is read as the "
                   "model declares, not inverted or framed.")
    if source == "drawing":
        st.info("It certified a drawing, which the certificate cannot carry: a drawing cannot be re-made exactly.")
        return None
    up = st.file_uploader(f"The image it certified ({source})", key="verify_image",
                          type=["png", "jpg", "jpeg", "webp", "bmp", "gif"], max_upload_size=MAX_IMAGE_BYTES // 2**20)
    if up is None:
        return None
    try:
        x = input_from_image(load_image(up.getvalue()), settings.loaded.preprocessing, options)
    except ValueError as err:
        st.error(f"{up.name}: {err}")
        return None
    return inputs.Chosen(x, f"upload {up.name}", None, None, options)


def start(doc: dict[str, Any], chosen: inputs.Chosen, settings) -> None:
    """The checks that need no sampling, then (when they pass) the re-run as a scheduled job."""
    differences = precheck(doc, model_sha256=settings.model_sha256, x=chosen.x,
                           preprocess=settings.loaded.preprocessing.to_dict())
    st.session_state["verify_precheck"] = differences
    st.session_state["verify_doc_seen"] = doc
    if differences:
        st.session_state.pop(KEY, None)
        return
    model, device = settings.base_model, settings.device
    cert = doc["certificate"]
    live.start(KEY, lambda: rerun_stream(model, chosen.x.to(device), doc, batch_size=settings.batch_size or 1000,
                                         batch_seconds=0.5),
               device, chosen, class_names=settings.class_names, model=settings.model_record(),
               params={"sigma": cert["sigma"], "alpha": cert["alpha"], "n0": cert["n0"], "n_max": cert["n"],
                       "seed": cert["seed"], "noise": _noise_norm(doc)[0], "norm": _noise_norm(doc)[1]})


def show_differences(differences: list[Difference]) -> None:
    first = differences[0]
    st.error(f"**Not identical.** First difference — {first.field}: {first.cause}.")
    st.table({"field": [d.field for d in differences], "recorded": [_short(d.recorded) for d in differences],
              "re-run": [_short(d.recomputed) for d in differences], "likely cause": [d.cause for d in differences]})


def result(doc: dict[str, Any], run: live.Run) -> None:
    """Identical, or the first difference, once the re-run has ended."""
    again = run.job.certificate
    if again.stop_reason == "stopped" and again.n < int(doc["certificate"]["n"]):
        st.warning(f"Stopped at n = {again.n:,} of {int(doc['certificate']['n']):,}: nothing to compare yet. Press "
                   "Verify to start again.")
        return
    differences = compare(doc, again)
    if differences:
        show_differences(differences)
        return
    st.success(f"**Identical.** The re-run drew the same {again.n0:,} selection and {again.n:,} estimation votes "
               f"and gives the same certificate: {report.class_label(run.class_names, again.prediction)} within "
               f"{sidebar.norm_label(again.noise, again.norm)} radius {floor_str(again.radius)} (pA ≥ {floor_str(again.p_lower, 6)}), seed {again.seed}.")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 70 else text[:67] + "…"
