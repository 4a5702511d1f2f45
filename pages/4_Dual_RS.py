"""Dual RS: σ chosen per input by a certified σ-estimator, then CERTIFY with the expert for that σ."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

import widgets
from rs_core import ABSTAIN
from rs_core.dual import DualStream
from rs_core.fmt import floor_str
from rs_core.jobs import CertifyJob, inference_lock
from rs_core.sampling import noisy_views

st.set_page_config(page_title="Dual RS · RS Lab", layout="wide")
s = widgets.sidebar()
st.title("Dual randomized smoothing")
st.markdown(
    """
No single σ is best for every input: a small σ certifies small radii accurately, a large σ reaches
large radii but misclassifies more. **Dual RS** (Sun, Mao & Vechev) picks σ per input and stays
certified. *Stage 1*: a σ-estimator, itself smoothed with noise σ_e, is certified like any
classifier — its classes are the noise levels Σ — giving σ_c and a radius **R_σ** within which it
keeps choosing σ_c. *Stage 2*: CERTIFY with the expert trained at σ_c gives the class and **R_c**.

**Why σ must be locally constant.** Cohen's certificate holds for one fixed smoothed classifier.
If σ could change anywhere near x, a perturbed input could be classified by a different smoothed
classifier and R_c would say nothing about it. Within R_σ the estimator provably returns σ_c, so
every point within **min(R_σ, R_c)** is classified by the same g(·, σ_c) (Theorem 4.1). Each
stage may fail with its own probability, so α is split between them (union bound, Theorem 4.2).
"""
)
st.caption("From the sidebar: α (total, split below), n0 and n max (per stage), batch size, seed and device. "
           "The sidebar's model and σ are not used here: the σ-estimator brings its own experts.")

ss = st.session_state
estimators = widgets.dual_estimators()
if not estimators:
    st.info("No σ-estimator found under checkpoints/*/dual/. Train one with `python -m rs_core train-sigma …` "
            "(see checkpoints/README.md).")
    st.stop()
c1, c2 = st.columns([2, 1])
default = next((k for k in estimators if k.startswith("mnist")), next(iter(estimators)))
choice = c1.selectbox("σ-estimator", list(estimators), **widgets.persisted("dual_estimator", default,
                                                                            list(estimators)))
split = c2.number_input("Share of α for stage 1 (σ)", min_value=0.01, max_value=0.99, step=0.05,
                        **widgets.persisted("dual_split", 0.5))
try:
    est, experts = widgets.load_dual_models(str(estimators[choice]), s.device)
except ValueError as err:
    st.error(f"{choice}: {err}")
    st.stop()
sigmas = sorted(experts)
sigma_e = float(est.meta["sigma_e"])
first = experts[sigmas[0]]
names = first.class_names
st.caption(f"Σ = {{{', '.join(f'{v:g}' for v in sigmas)}}} · σ_e = {sigma_e:g} · estimator `{est.arch}` "
           f"(sha256 `{est.sha256[:12]}…`) · experts: " + ", ".join(
               f"σ = {v:g}: `{experts[v].arch}` (`{experts[v].sha256[:12]}…`)" for v in sigmas)
           + f" · α = {s.alpha:g} → {s.alpha * split:.3g} (σ) + {s.alpha * (1 - split):.3g} (class)")

left, right = st.columns([1, 2])
with left:
    chosen = widgets.choose_input(first.input_shape, est.meta.get("dataset"), names)
with right:
    if chosen is not None:
        x = chosen[0]
        views = noisy_views(x, sigma_e, k=3, seed=s.seed)
        st.markdown(f"**{chosen[1]}** — as the estimator sees it (σ_e = {sigma_e:g}) and at each σ in Σ")
        imgs = [widgets.to_display(x)] + [widgets.to_display(v) for v in views] + [
            widgets.to_display(noisy_views(x, v, k=1, seed=s.seed)[0]) for v in sigmas]
        st.image(imgs, caption=["input"] + [f"σ_e #{i + 1}" for i in range(3)] + [f"σ = {v:g}" for v in sigmas],
                 width=84)


def _start(x, source: str, true_label: int | None) -> None:
    old = ss.get("dual_run")
    if old is not None:
        old["job"].stop()
    device = s.device
    with inference_lock(device):
        stream = DualStream(est.model, {v: m.model for v, m in experts.items()}, x.to(device), sigma_e, n0=s.n0,
                            n_max=s.n_max, alpha=s.alpha, batch_size=s.batch_size, alpha_split=split, seed=s.seed)
    job = CertifyJob(stream)
    job.start().wait_for_votes(timeout=0.5)
    ss["dual_run"] = {"job": job, "source": source, "true_label": true_label, "names": list(names),
                      "sigmas": sigmas, "estimator": choice, "estimator_sha256": est.sha256,
                      "experts_sha256": {str(v): experts[v].sha256 for v in sigmas}}


st.button("Start", key="dual_start", type="primary", disabled=chosen is None,
          on_click=(lambda: _start(*chosen)) if chosen is not None else None)


def _label(run: dict, c: int) -> str:
    return "abstain" if c == ABSTAIN else (run["names"][c] if c < len(run["names"]) else str(c))


def _live(run: dict) -> None:
    snap = run["job"].snapshot
    if snap is None:
        st.progress(0.0, text="stage 1: drawing the selection samples…")
        return
    inner = snap.inner
    counts = inner.counts if inner.phase == "estimation" and inner.n > 0 else inner.counts_selection
    if snap.stage == 1:
        names = [f"σ = {v:g}" for v in run["sigmas"]]
        title = f"Stage 1 — σ-estimator votes over Σ (n = {inner.n:,} of {inner.n_max:,})"
        top = names[inner.top_class] if inner.top_class >= 0 else "—"
        labels = ("σ_c (selection)", "R_σ (anytime)")
    else:
        names = run["names"]
        title = f"Stage 2 — class votes at σ_c = {snap.sigma_c:g} (n = {inner.n:,} of {inner.n_max:,})"
        top = names[inner.top_class] if inner.top_class >= 0 else "—"
        labels = ("c_A (selection)", "R_c (anytime)")
    st.progress(min(1.0, inner.n / inner.n_max), text=f"stage {snap.stage} of 2: {inner.n:,} / {inner.n_max:,}")
    m = st.columns(4)
    m[0].metric("stage", f"{snap.stage} of 2")
    m[1].metric(labels[0], top)
    m[2].metric(labels[1], f"{floor_str(inner.radius)}" if inner.p_lower > 0.5 else "— (abstain so far)")
    m[3].metric("samples/s", f"{inner.samples_per_s:,.0f}")
    st.plotly_chart(widgets.vote_figure(counts, names, top_class=inner.top_class, title=title), width="stretch",
                    key="dual_votes")


@st.fragment(run_every=0.5)
def _poll() -> None:
    run = ss.get("dual_run")
    if run is None:
        return
    if st.button("Stop", key="dual_stop", type="primary", disabled=run["job"].done):
        run["job"].stop()
    _live(run)
    if run["job"].done:
        st.rerun()


def _result(run: dict) -> None:
    job = run["job"]
    if job.error is not None:
        st.error(f"Certification failed: {type(job.error).__name__}: {job.error}")
        return
    cert = job.certificate
    if cert.abstained:
        why = {"sigma-abstained": "stage 1 could not certify a σ (its lower bound on the top σ's probability is "
                                  "≤ 1/2)",
               "class-abstained": f"stage 2 (σ_c = {cert.sigma:g}) could not certify a class",
               "not-run": "sampling was stopped before stage 2 ran"}[cert.limited_by]
        st.warning(f"**Abstain** — {why}.")
    else:
        truth = ""
        if run["true_label"] is not None:
            truth = " ✓ (the true label)" if cert.prediction == run["true_label"] else \
                f" ✗ (true label: {_label(run, run['true_label'])})"
        limiter = "the σ certificate (R_σ < R_c)" if cert.limited_by == "sigma" else "the class certificate (R_c ≤ R_σ)"
        st.success(f"**{_label(run, cert.prediction)}**{truth} is certified within ℓ2 radius **{floor_str(cert.radius)}** "
                   f"= min(R_σ = {floor_str(cert.radius_sigma)}, R_c = {floor_str(cert.radius_class)}) at σ_c = {cert.sigma:g}, "
                   f"with probability ≥ {1 - cert.alpha:g}. Limited by {limiter}.")
    rows = ["prediction", "radius", "p lower bound", "counts (n)", "counts (n0)", "n", "α", "σ", "seed", "stop"]
    seed = run["job"].stream.seed

    def col(c, names, stage):
        if c is None:
            return ["not run"] + [""] * (len(rows) - 1)
        votes = lambda v: ", ".join(f"{names[i]}: {int(k)}" for i, k in enumerate(v) if k)  # noqa: E731
        return [names[c.prediction] if c.prediction >= 0 else "abstain", f"{floor_str(c.radius)}", f"{floor_str(c.p_lower, 5)}",
                # The stage's own seed is a 64-bit derivation of the run's seed (in the JSON): show where it comes from.
                votes(c.counts), votes(c.counts_selection), f"{c.n:,}", f"{c.alpha:g}", f"{c.sigma:g}",
                f"stage {stage} of seed {seed}", str(c.stop_reason)]

    st.table({"": rows, "stage 1: σ-estimator (σ_e)": col(cert.stage1, [f"σ = {v:g}" for v in run["sigmas"]], 1),
              "stage 2: expert (σ_c)": col(cert.stage2, run["names"], 2)})
    report = {"dual_certificate": cert.to_dict(), "estimator": run["estimator"],
              "estimator_sha256": run["estimator_sha256"], "experts_sha256": run["experts_sha256"],
              "input": {"source": run["source"], "true_label": run["true_label"]}}
    st.download_button("Download the certificate (JSON)", json.dumps(report, indent=2, default=float),
                       file_name="dual_certificate.json", mime="application/json", key="dual_download")


run = ss.get("dual_run")
if run is not None:
    st.divider()
    st.markdown(f"**Run:** {run['source']} · {run['estimator']}")
    if run["job"].done:
        _result(run)
        _live(run)
    else:
        _poll()
else:
    st.plotly_chart(widgets.vote_figure(np.zeros(len(sigmas), dtype=np.int64), [f"σ = {v:g}" for v in sigmas],
                                        top_class=None, title="Votes appear here while sampling runs"),
                    width="stretch", key="dual_votes_empty")
