"""Certify: one input, live Monte Carlo votes, a certificate you can stop for at any time."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import widgets
from rs_core import ABSTAIN, CertifyStream, predict_result
from rs_core.fmt import floor_str
from rs_core.jobs import CertifyJob, inference_lock
from rs_core.sampling import noisy_views

st.set_page_config(page_title="Certify · RS Lab", layout="wide")
s = widgets.sidebar()
st.title("Certify an input")
st.caption("Cohen et al.'s CERTIFY: n0 noisy copies pick the class c_A, then up to n max more bound its "
           "probability pA from below. The bound shown live is anytime-valid, so Stop (or a target radius) "
           "keeps the 1 − α guarantee.")
if s.loaded is None:
    st.info("Choose a model in the sidebar to certify an input.")
    st.stop()

ss = st.session_state
C = s.loaded.input_shape[0]
names = s.class_names


def _start(x: torch.Tensor, source: str, true_label: int | None, target: float | None, predict_n: int) -> None:
    old: widgets.Run | None = ss.get("run")
    if old is not None:
        old.job.stop()
    model, device = s.loaded.model, s.device
    x = x.to(device)
    with inference_lock(device):  # the stream's constructor probes the model once
        stream = CertifyStream(model, x, s.sigma, n0=s.n0, n_max=s.n_max, alpha=s.alpha, batch_size=s.batch_size,
                               seed=s.seed, target_radius=target)
    # PREDICT's own samples (seed + 1): independent of CERTIFY's, reproducible with it.
    job = CertifyJob(stream, predict=lambda: predict_result(model, x, s.sigma, n=predict_n, alpha=s.alpha,
                                                            batch_size=s.batch_size, seed=s.seed + 1))
    job.start().wait_for_votes(timeout=0.5)  # so the first frame after Start already shows votes
    ss["run"] = widgets.Run(job=job, model=model, x=x.cpu(), source=source, true_label=true_label,
                            class_names=list(names), model_label=s.model_label, model_sha256=s.loaded.sha256,
                            model_arch=s.loaded.arch, predict_n=predict_n)


def _live(run: widgets.Run) -> None:
    """Votes, progress and the running bound from the job's latest snapshot (read-only)."""
    snap = run.job.snapshot
    if snap is None:
        st.progress(0.0, text="drawing the n0 selection samples…")
        return
    if snap.phase == "selection" or snap.n == 0:
        counts, title = snap.counts_selection, f"Selection votes (n0 = {int(snap.counts_selection.sum()):,})"
    else:
        counts, title = snap.counts, f"Votes after n = {snap.n:,} of {snap.n_max:,} estimation samples"
    st.progress(min(1.0, snap.n / snap.n_max), text=f"{snap.n:,} / {snap.n_max:,} estimation samples")
    m = st.columns(4)
    m[0].metric("c_A (from the n0 selection samples)", widgets.class_label(run, snap.top_class))
    m[1].metric("pA ≥ (anytime bound)", f"{floor_str(snap.p_lower)}")
    m[2].metric("radius (anytime)", f"{floor_str(snap.radius)}" if snap.p_lower > 0.5 else "— (abstain so far)")
    m[3].metric("samples/s", f"{snap.samples_per_s:,.0f}")
    st.plotly_chart(widgets.vote_figure(counts, run.class_names, top_class=snap.top_class, title=title),
                    width="stretch", key="votes")


def _trace(run: widgets.Run) -> None:
    """How the anytime-valid radius grew with n (drawn once the run has ended: cheap live updates)."""
    hist = run.job.history
    if not hist:
        return
    fig = go.Figure(go.Scatter(x=[h.n for h in hist], y=[h.radius for h in hist], mode="lines"))
    if run.job.stream.target_radius:
        fig.add_hline(y=run.job.stream.target_radius, line_dash="dot", annotation_text="target")
    fig.update_layout(title="Certified radius against n (anytime-valid: any point was a valid place to stop)",
                      xaxis_title="n", yaxis_title="radius", template="plotly_white", height=300,
                      margin={"t": 50, "b": 40, "l": 40, "r": 10})
    st.plotly_chart(fig, width="stretch", key="trace")


@st.fragment(run_every=0.5)
def _poll() -> None:
    run: widgets.Run | None = ss.get("run")
    if run is None:
        return
    if st.button("Stop", key="stop", type="primary", disabled=run.job.done):
        run.job.stop()
    _live(run)
    if run.job.done:
        st.rerun()  # the whole page: show the certificate, stop polling


def _headline(run: widgets.Run) -> bool:
    """The certificate in one sentence; False when the run failed."""
    job = run.job
    if job.error is not None:
        st.error(f"Certification failed: {type(job.error).__name__}: {job.error}")
        return False
    cert = job.certificate
    reason = {"n_max": "all n max samples drawn", "stopped": "stopped by you",
              "target_certified": "target radius certified", "target_unreachable": "target radius out of reach"}
    if cert.prediction == ABSTAIN:
        st.warning(f"**Abstain** — the lower bound on pA is {floor_str(cert.p_lower)} ≤ 1/2 after n = {cert.n:,} samples, "
                   "so no class is certified (even at radius 0).")
        st.caption(widgets.ABSTAIN_ADVICE)
    else:
        truth = ""
        if run.true_label is not None:
            truth = " ✓ (the true label)" if cert.prediction == run.true_label else \
                f" ✗ (true label: {widgets.class_label(run, run.true_label)})"
        st.success(f"**{widgets.class_label(run, cert.prediction)}**{truth} is certified within ℓ2 radius "
                   f"**{floor_str(cert.radius)}**, with probability ≥ {1 - cert.alpha:g} over the sampling.")
        st.caption(widgets.radius_in_words(cert.radius, tuple(run.x.shape)))
    st.caption(f"Ended: {reason.get(cert.stop_reason, cert.stop_reason)}. The bound is the anytime-valid "
               "confidence sequence (valid at any stopping time), not Clopper–Pearson at a chosen n.")
    return True


def _details(run: widgets.Run) -> None:
    job, cert = run.job, run.job.certificate

    def lab(c: int) -> str:
        return widgets.class_label(run, c)

    def votes(counts: np.ndarray) -> str:
        return ", ".join(f"{lab(i)}: {int(v)}" for i, v in enumerate(counts) if v)
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**CERTIFY** (Cohen et al. Algorithm 2)")
        st.table({"": ["class", "radius", "pA lower bound", "counts (n)", "counts (n0)", "n0", "n", "α", "σ",
                       "seed", "model sha256", "device", "time"],
                  "value": [lab(cert.prediction), f"{floor_str(cert.radius)}", f"{floor_str(cert.p_lower, 5)}", votes(cert.counts),
                            votes(cert.counts_selection),
                            f"{cert.n0:,}", f"{cert.n:,}", f"{cert.alpha:g}", f"{cert.sigma:g}", str(cert.seed),
                            run.model_sha256[:16] + "…", cert.device, f"{cert.elapsed_s:.2f} s"]})
    with c2:
        st.markdown("**PREDICT** (Cohen et al. Algorithm 1)")
        pred = job.prediction
        if pred is None:
            st.caption("Not run: PREDICT draws its own samples after CERTIFY ends on its own, and you stopped. "
                       "Run it here (it draws fresh samples):")
            if st.button("Run PREDICT", key="run_predict"):
                device = job.stream.device
                with inference_lock(device):
                    job.prediction = pred = predict_result(
                        run.model, run.x.to(device), cert.sigma, n=run.predict_n, alpha=cert.alpha,
                        batch_size=cert.batch_size, seed=cert.seed + 1)
        if pred is not None:
            st.table({"": ["class", "p-value (top two)", "counts", "n", "α", "seed"],
                      "value": [lab(pred.prediction), f"{pred.p_value:.3g}", votes(pred.counts),
                                f"{pred.n:,}", f"{pred.alpha:g}", str(pred.seed)]})
        st.markdown("**The same counts under each bound** (pA lower bound, pB = 1 − pA)")
        st.table(widgets.radii_table(run.job.certificate))
    report = widgets.certificate_report(run)
    st.download_button("Download the certificate (JSON)", json.dumps(report, indent=2), file_name="certificate.json",
                       mime="application/json", key="download")
    # Remembered for the Bounds page ("where the last certified input sits").
    widgets.put("last_certificate", {"p_lower": cert.p_lower, "radius": cert.radius, "sigma": cert.sigma,
                                     "n": cert.n, "alpha": cert.alpha, "class": lab(cert.prediction)})


left, right = st.columns([1, 2])
with left:
    chosen = widgets.choose_input(s.loaded.input_shape, s.dataset, names)
with right:
    if chosen is not None:
        x, source, true_label = chosen
        st.markdown(f"**What the model sees** — {source}, preprocessed to {tuple(x.shape)}")
        views = noisy_views(x, s.sigma, k=5, seed=s.seed)
        st.image([widgets.to_display(x)] + [widgets.to_display(v) for v in views],
                 caption=["input"] + [f"x + ε #{i + 1}" for i in range(len(views))], width=84)
        st.caption(f"Noisy samples at σ = {s.sigma:g} (shown clipped to [0, 1]; the classifier gets them unclipped).")

with st.expander("Options: target radius, PREDICT"):
    c1, c2 = st.columns(2)
    use_target = c1.checkbox("Stop at a target radius", key="use_target",
                             help="Stop as soon as the radius is certified, or as soon as it is out of reach even "
                                  "if every remaining sample voted c_A")
    target = c1.number_input("target radius", min_value=0.001, max_value=100.0, value=0.5, step=0.05,
                             key="target", disabled=not use_target)
    predict_n = c2.number_input("PREDICT: n", min_value=10, max_value=10_000_000, value=1000, step=100,
                                key="predict_n", help="PREDICT runs after CERTIFY ends on its own, with fresh samples")

st.button("Start", key="start", type="primary", disabled=chosen is None,
          on_click=(lambda: _start(chosen[0], chosen[1], chosen[2], target if use_target else None, int(predict_n)))
          if chosen is not None else None)

run: widgets.Run | None = ss.get("run")
if run is None:
    # An empty chart before the first run: the browser loads Plotly now, so the first votes draw at once.
    st.plotly_chart(widgets.vote_figure(np.zeros(len(names), dtype=np.int64), names, top_class=None,
                                        title="Votes per class appear here while sampling runs"),
                    width="stretch", key="votes_empty")
else:
    st.divider()
    st.markdown(f"**Run:** {run.source} · {run.model_label.split(' · noisy')[0]} · certifying at "
                f"σ = {run.job.stream.sigma:g}, α = {run.job.stream.alpha:g}")
    stale = widgets.stale_reasons(run, chosen[0] if chosen is not None else None, s)
    if stale:  # an old result must never read as the answer for what is chosen now
        st.warning(f"This result is for an earlier choice: {', '.join(stale)} changed since it was started "
                   f"({run.source}). Press Start to certify what is shown above.", icon="⚠️")
    if run.job.done:
        if _headline(run):
            _live(run)
            _trace(run)
            _details(run)
    else:
        _poll()
