"""Certified accuracy against radius: from the logs shipped with our checkpoints, uploaded logs, or computed here."""

import time

import numpy as np
import streamlit as st

from rs_core.data import DATASETS, get_dataset
from rs_core.logs.certify_logs import (
    CertifyLog,
    accuracy_lower_bound,
    common_images,
    default_label,
    distinct_labels,
    figure,
    format_certify_log,
    parse_certify_log,
    parse_radii,
    read_certify_log,
)
from rs_core.models.shipped import find_model, shipped_logs
from rs_core.rounding import floor_str
from rs_core.smoothing.certify import certify_examples
from rs_core.smoothing.jobs import default_scheduler
from widgets import entry, fields

settings = entry.settings()
st.title("Certified accuracy")
st.markdown("Certified accuracy at radius r is the fraction of test images that CERTIFY classifies correctly "
            "with radius ≥ r; abstentions count as wrong. Dotted curves: the lower bound on the *true* certified "
            "accuracy that holds with probability ≥ 1 − ρ over CERTIFY's sampling (Cohen et al. App. D).")


NOT_STATED = "not stated"


@st.cache_data(show_spinner=False)
def _read_log(path: str, label: str, dataset: str, alpha: float) -> CertifyLog:
    return read_certify_log(path, label, dataset=dataset, alpha=alpha)


def _arch(log) -> tuple[str, str] | None:
    model = find_model(log.model_id) if log.model_id else None
    return None if model is None else (model.dataset, model.arch)


available = {log.id: log for log in shipped_logs()}
first = next(iter(available.values()), None)
# By default: every σ of the first shipped model family (one data set, one architecture).
default = [k for k, log in available.items() if first is not None and log.kind == "single"
           and _arch(log) == _arch(first)]
chosen = st.multiselect("Logs shipped with our checkpoints", list(available), format_func=lambda k: available[k].label,
                        default=default, key="acc_shipped")
c1, c2 = st.columns([3, 1])
uploads = c1.file_uploader("Upload certify logs (Cohen et al.'s format: idx label predict radius correct time)",
                           accept_multiple_files=True, key="acc_uploads")
upload_dataset = c2.selectbox("Data set of the uploaded logs", [NOT_STATED, *DATASETS], key="acc_upload_dataset",
                              help="Logs are compared only with logs of the same data set: their idx columns "
                                   "number different images otherwise")

with st.expander("Compute certified accuracy here, on k test images"):
    st.caption(f"CERTIFY with the sidebar's model ({settings.model_label}), σ, n0, α, batch size and seed; each test "
               "image i uses seed + i (so a row can be re-run alone). Results join the plot and table below, and can "
               "be downloaded as a Cohen-format log. The device is shared with other users' runs image by image.")
    c1, c2 = st.columns(2)
    k = c1.number_input("k test images (evenly spaced)", value=20, step=1, key="live_k")
    n = c2.number_input("N (estimation samples)", value=1000, step=100, key="live_n")
    here_problems = [p for p in (
        None if isinstance(k, int) and 1 <= k <= 10_000 else f"k must be a whole number from 1 to 10,000, got {k}",
        None if isinstance(n, int) and 1 <= n <= 1_000_000 else f"N must be a whole number from 1 to 1,000,000, got {n}",
    ) if p]
    for p in here_problems:
        st.error(p)
    blocked = settings.why_not_ready or ("; ".join(here_problems) if here_problems else None)
    if blocked:
        st.caption(f"Certify is disabled: {blocked}")
    if st.button("Certify", key="live_run", disabled=blocked is not None):
        try:
            if settings.dataset is None:
                raise ValueError("the model does not name its data set; choose one in the sidebar")
            dataset = get_dataset(settings.dataset, "test")
        except (FileNotFoundError, ValueError) as err:
            st.error(f"{err} — set RS_DATA_DIR to a folder holding the data set.")
        else:
            picks = np.unique(np.linspace(0, len(dataset) - 1, int(k)).astype(int))
            bar = st.progress(0.0, text="certifying…")
            rows, t0, scheduler = [], time.monotonic(), default_scheduler()
            for i in picks:
                example = (dataset.original_index(int(i)), *dataset[int(i)])
                # One image at a time under the scheduler's device lock, so other sessions' runs interleave.
                rows.append(scheduler.exclusive(settings.device, lambda ex=example: next(certify_examples(
                    settings.base_model, [ex], settings.sigma, settings.n0, int(n), settings.alpha,
                    settings.batch_size, seed=settings.seed))))
                left = (time.monotonic() - t0) / len(rows) * (len(picks) - len(rows))
                bar.progress(len(rows) / len(picks), text=f"certified {len(rows)} of {len(picks)} · ≈ {left:,.0f} s left")
            st.session_state.setdefault("live_logs", []).append(
                CertifyLog.from_rows(f"{settings.model_label}"
                                     + (f" + {settings.denoiser_label}" if settings.denoiser is not None else "")
                                     + f" at σ = {settings.sigma:g} · here, k = {len(picks)}, "
                                     f"N = {int(n)}", rows, dataset=settings.dataset, alpha=settings.alpha))
    for j, live in enumerate(st.session_state.get("live_logs", [])):
        st.download_button(f"Download log: {live.label}", format_certify_log(live), file_name=f"certify_log_{j}.tsv",
                           key=f"live_download_{j}")

logs: list[CertifyLog] = list(st.session_state.get("live_logs", []))
for log_id in chosen:
    entry = available[log_id]
    logs.append(_read_log(str(entry.path), entry.label, entry.dataset, entry.alpha))
for upload in uploads or []:
    try:
        log = parse_certify_log(upload.getvalue(), f"{default_label(upload.name)} ({upload.name})", upload.name)
        log.dataset = None if upload_dataset == NOT_STATED else upload_dataset
    except ValueError as err:
        st.error(str(err))
        continue
    if len(log) == 0:
        st.warning(f"{upload.name}: the log has a header but no rows.")
        continue
    logs.append(log)
logs = distinct_labels(logs)  # rows and legends are keyed by label: same-named logs must stay apart

col1, col2, col3 = st.columns(3)
radii_text = col1.text_input("Radii for the table", "0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0", key="acc_radii")
alpha = col2.number_input("CERTIFY's α (for uploaded logs)", value=0.001, format="%.4g", key="acc_alpha",
                          help="Shipped logs and logs computed here carry their own α; this one is used for uploads")
rho = col3.number_input("ρ (lower bound fails with probability ≤ ρ)", value=0.001, format="%.4g", key="acc_rho")
for where, name, value in ((col2, "α", alpha), (col3, "ρ", rho)):
    why = fields.problem("alpha", value)
    if why is not None:
        where.error(why.replace("α", name, 1))
        alpha = rho = None
try:
    radii = parse_radii(radii_text)
except ValueError as err:
    st.error(f"{err} — e.g. 0, 0.5, 1.0")
    radii = None

# Logs of different data sets number different images: never compared. Show one data set's logs at a time,
# by default the one the latest upload (or else the latest log) belongs to.
groups: dict[str, list[CertifyLog]] = {}
for log in logs:
    groups.setdefault(log.dataset or NOT_STATED, []).append(log)
if len(groups) > 1:
    latest = upload_dataset if uploads and upload_dataset in groups else (logs[-1].dataset or NOT_STATED)
    st.warning("These logs index different data sets (" + ", ".join(f"{d}: {len(g)}" for d, g in groups.items())
               + "); logs of different data sets are not compared. Showing one data set:")
    shown = st.radio("Data set", list(groups), index=list(groups).index(latest), horizontal=True, key="acc_group")
    logs = groups[shown]

if len(logs) > 1 and st.checkbox("Compare on the same images only (rows present in every log)", value=True,
                                 key="acc_common",
                                 help="Logs certified on different images are not comparable; e.g. the dual-RS "
                                      "logs cover a subset of the single-σ logs' images"):
    most = max(len(log) for log in logs)
    logs, common = common_images(logs)
    if len(common) < most:
        st.caption(f"{len(common)} images are common to all {len(logs)} logs; the curves and tables use those.")

if not logs:
    st.info("Choose shipped logs or upload one to see curves.")
elif radii is not None and alpha is not None:
    st.plotly_chart(figure(logs, alpha, rho), width="stretch")
    columns = [f"r = {r:g}" for r in radii]
    acc = {log.label: log.certified_accuracy(radii) for log in logs}
    st.markdown("**Certified accuracy** (rows = logs)")
    st.table({"log": list(acc), "data set": [log.dataset or NOT_STATED for log in logs],
              "n images": [len(log) for log in logs],
              **{c: [f"{a[j]:.3f}" for a in acc.values()] for j, c in enumerate(columns)}})
    st.markdown(f"**Lower bound on the true certified accuracy** (probability ≥ {1 - rho:g}, App. D; each log's "
                "own CERTIFY α where it is known)")
    st.table({"log": list(acc), "α": [f"{log.alpha:g}" if log.alpha else f"{alpha:g} (box)" for log in logs],
              **{c: [floor_str(accuracy_lower_bound(a[j], len(log), log.alpha or alpha, rho), 3)
                     for a, log in zip(acc.values(), logs, strict=True)]
                 for j, c in enumerate(columns)}})
