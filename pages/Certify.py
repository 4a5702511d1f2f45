"""Certify: one input, live Monte Carlo votes, a certificate you can stop for at any time."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import streamlit as st
import torch

from rs_core import ABSTAIN, CertifyStream, predict_result
from rs_core.rounding import floor_str
from rs_core.smoothing.diagnostics import noise_robustness_warning
from rs_core.smoothing.jobs import default_scheduler
from rs_core.smoothing.sampling import noisy_views
from rs_core.smoothing.seeding import predict_seed
from widgets import attack, ceilings, entry, figures, inputs, live, report, sidebar

KEY = "run"
BATCH_SECONDS = 0.5
s = entry.settings()
st.title("Certify an input")
st.caption("Cohen et al.'s CERTIFY: n0 noisy copies pick the class c_A, then up to n max more bound its "
           "probability pA from below. The bound shown live is anytime-valid, so Stop (or a target radius) "
           "keeps the 1 − α guarantee.")
if s.loaded is None:
    st.info(s.why_not_ready)
    st.stop()

names = s.class_names


def _names(_snap) -> list[str]:
    return names


def _params() -> dict:
    return {"sigma": s.sigma, "alpha": s.alpha, "n0": s.n0, "n_max": s.n_max, "seed": s.seed, "noise": s.noise,
            "norm": s.norm}


def _start(chosen: inputs.Chosen, target: float | None, predict_n: int) -> None:
    model, device, x = s.base_model, s.device, chosen.x.to(s.device)
    sigma, alpha, batch, seed, noise, norm = s.sigma, s.alpha, s.batch_size, s.seed, s.noise, s.norm
    # The model's answer on the clean input, for the noise-robustness warning (one forward pass).
    clean = default_scheduler().exclusive(device, lambda: clean_class(model, x))
    live.start(
        # Batches sized to ~0.5 s each (at most the batch size): Stop is answered promptly on any model.
        KEY, lambda: CertifyStream(model, x, sigma, n0=s.n0, n_max=s.n_max, alpha=alpha, batch_size=batch,
                                   seed=seed, target_radius=target, batch_seconds=BATCH_SECONDS, noise=noise,
                                   norm=norm),
        device, chosen, class_names=names, model=s.model_record(), params=_params(),
        # PREDICT's own samples (predict_seed): independent of CERTIFY's, reproducible with it. Its batch is CERTIFY's
        # time-sized one, read when PREDICT starts.
        predict=lambda: predict_result(model, x, sigma, n=predict_n, alpha=alpha, batch_size=_batch_of(KEY, batch),
                                       seed=predict_seed(seed), noise=noise),
        extra={"predict_n": predict_n, "clean_class": clean, "train_sigma": s.train_sigma, "input_hint": chosen.hint})


def _batch_of(key: str, default: int) -> int:
    run = st.session_state.get(key)
    stream = getattr(getattr(run, "job", None), "stream", None)
    return int(getattr(stream, "batch_size", default))


@torch.inference_mode()
def clean_class(model, x) -> int:
    return int(model(x.unsqueeze(0)).argmax(1).item())


def _trace(run: live.Run) -> None:
    """How the anytime-valid radius grew with n (drawn once the run has ended: cheap live updates)."""
    hist = run.job.history
    if not hist:
        return
    fig = go.Figure(go.Scatter(x=[h.n for h in hist], y=[h.radius for h in hist],
                               mode="lines+markers" if len(hist) < 30 else "lines"))  # one batch is one point
    if run.job.stream.target_radius:
        fig.add_hline(y=run.job.stream.target_radius, line_dash="dot", annotation_text="target")
    fig.update_layout(title="Certified radius against n (anytime-valid: any point was a valid place to stop)",
                      xaxis_title="n", yaxis_title=f"{sidebar.NORM_LABELS[run.job.certificate.norm]} radius", template="plotly_white", height=300,
                      xaxis_rangemode="tozero", yaxis_rangemode="tozero", margin={"t": 50, "b": 40, "l": 40, "r": 10})
    st.plotly_chart(fig, width="stretch", key="trace")


def _headline(run: live.Run) -> None:
    cert = run.job.certificate
    reason = {"n_max": "all n max samples drawn", "stopped": "stopped", "target_certified": "target radius certified",
              "target_unreachable": "target radius out of reach"}
    lab = report.class_label
    if cert.prediction == ABSTAIN:
        st.warning(f"**Abstain** — the lower bound on pA is {floor_str(cert.p_lower)} ≤ 1/2 after n = {cert.n:,} "
                   "samples, so no class is certified (even at radius 0).")
        st.caption(report.ABSTAIN_ADVICE)
    else:
        truth = ""
        if run.true_label is not None:
            truth = " ✓ (the true label)" if cert.prediction == run.true_label else \
                f" ✗ (true label: {lab(run.class_names, run.true_label)})"
        st.success(f"**{lab(run.class_names, cert.prediction)}**{truth} is certified within "
                   f"{sidebar.norm_label(cert.noise, cert.norm)} radius **{floor_str(cert.radius)}**, with "
                   f"probability ≥ {1 - cert.alpha:g} over the sampling"
                   + ("." if cert.noise == "gaussian" else f" ({sidebar.NOISE_LABELS[cert.noise]} noise, σ = "
                                                            f"{cert.sigma:g})."))
        if cert.norm == "l2":
            st.caption(report.radius_in_words(cert.radius, tuple(run.x.shape)))
        else:
            st.caption(f"No input within {sidebar.NORM_LABELS[cert.norm]} distance {floor_str(cert.radius)} of this "
                       f"one — Σ|δᵢ| < r for ℓ1, max|δᵢ| < r for ℓ∞, in units of the [0, 1] image — changes the "
                       "smoothed classifier's answer.")
    st.caption(f"Ended: {reason.get(cert.stop_reason, cert.stop_reason)}. The bound is the anytime-valid "
               "confidence sequence (valid at any stopping time), not Clopper–Pearson at a chosen n.")
    if (cert.noise, cert.norm) == ("gaussian", "l2"):  # the ceilings are those of the Gaussian ℓ2 radius
        ceilings.show(cert.sigma, cert.n_max or max(cert.n, 1), cert.alpha, used=cert.bound)
    caveat = report.repeat_caveat(live.repeat_count(run), cert.alpha)
    if caveat:
        st.info(caveat)
    warning = noise_robustness_warning(run.extra.get("clean_class"), cert.counts if cert.n else cert.counts_selection,
                                       cert.sigma, trained_sigma=run.extra.get("train_sigma"))
    hint = run.extra.get("input_hint")  # e.g. a photo given to a digit model
    run.extra["warnings"] = [w for w in (warning, hint) if w]  # also in the downloaded certificate
    if warning:
        st.warning(warning, icon="⚠️")
    if hint:
        st.warning(hint, icon="⚠️")


def _details(run: live.Run) -> None:
    job, cert = run.job, run.job.certificate
    names_ = run.class_names
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**CERTIFY** (Cohen et al. Algorithm 2)")
        st.table({"": ["class", f"radius ({sidebar.NORM_LABELS[cert.norm]})", "pA lower bound", "counts (n)",
                       "counts (n0)", "n0", "n", "α", "σ", "noise", "seed", "model", "model sha256", "device",
                       "time"],
                  "value": [report.class_label(names_, cert.prediction), floor_str(cert.radius),
                            floor_str(cert.p_lower, 5), report.votes_text(names_, cert.counts),
                            report.votes_text(names_, cert.counts_selection), f"{cert.n0:,}", f"{cert.n:,}",
                            f"{cert.alpha:g}", f"{cert.sigma:g}", sidebar.NOISE_LABELS[cert.noise], str(cert.seed),
                            report.model_name(run.model),
                            run.model["sha256"][:16] + "…",
                            cert.device, f"{cert.elapsed_s:.2f} s"]})
    with c2:
        st.markdown("**PREDICT** (Cohen et al. Algorithm 1)")
        pred = job.prediction
        if pred is None:
            st.caption("Not run: PREDICT draws its own samples after CERTIFY ends on its own, and you stopped. "
                       "Run it here (it draws fresh samples):")
            if st.button("Run PREDICT", key="run_predict"):
                model, x = s.base_model, run.x.to(job.stream.device)
                job.prediction = pred = default_scheduler().exclusive(job.stream.device, lambda: predict_result(
                    model, x, cert.sigma, n=run.extra["predict_n"], alpha=cert.alpha, batch_size=cert.batch_size,
                    seed=predict_seed(cert.seed), noise=cert.noise))
        if pred is not None:
            st.table({"": ["class", "p-value (top two)", "counts", "n", "α", "seed"],
                      "value": [report.class_label(names_, pred.prediction), f"{pred.p_value:.3g}",
                                report.votes_text(names_, pred.counts), f"{pred.n:,}", f"{pred.alpha:g}",
                                str(pred.seed)]})
        st.markdown("**The same counts under each bound** (pA lower bound, pB = 1 − pA)")
        st.table(report.radii_table(cert))
    st.download_button("Download the certificate (JSON)", json.dumps(report.certificate_report(run), indent=2),
                       file_name="certificate.json", mime="application/json", key="download")
    # Remembered for the Bounds page ("where the last certified input sits").
    st.session_state["last_certificate"] = {"p_lower": cert.p_lower, "radius": cert.radius, "sigma": cert.sigma,
                                            "n": cert.n, "alpha": cert.alpha, "bound": cert.bound,
                                            "class": report.class_label(names_, cert.prediction),
                                            "noise": cert.noise, "norm": cert.norm}  # its radius is of this pair


left, right = st.columns([2, 3])
with left:
    chosen = inputs.choose_input(s.loaded.input_shape, s.dataset, names, preprocess=s.loaded.preprocessing,
                                 default_source=inputs.opening_source(s.dataset))
with right:
    if chosen is not None and s.sigma is not None:
        st.markdown(f"**What the model sees** — {chosen.source}, preprocessed to {tuple(chosen.x.shape)}")
        seed = s.seed if s.seed is not None else 0
        views = noisy_views(chosen.x, s.sigma, k=5, seed=seed, noise=s.noise)
        st.image([figures.to_display(chosen.x)] + [figures.to_display(v) for v in views],
                 caption=["input"] + [f"x + ε #{i + 1}" for i in range(len(views))], width=84)
        if s.denoiser is not None:  # what the classifier actually gets: the denoised copies
            with torch.inference_mode():
                cleaned = s.denoiser.model(views.to(s.device)).cpu()
            st.image([figures.to_display(chosen.x)] + [figures.to_display(v) for v in cleaned],
                     caption=["input"] + [f"D(x + ε #{i + 1})" for i in range(len(cleaned))], width=84)
            st.caption(f"Noisy samples at σ = {s.sigma:g}, and below them what the classifier gets: the same samples "
                       f"after the denoiser ({s.denoiser_label}). Shown clipped to [0, 1].")
        else:
            st.caption(f"Noisy samples, {sidebar.NOISE_LABELS[s.noise]} noise at σ = {s.sigma:g} (shown clipped to "
                       "[0, 1]; the classifier gets them unclipped).")
        if chosen.hint:
            st.warning(chosen.hint, icon="⚠️")

with st.expander("Options: target radius, PREDICT"):
    c1, c2 = st.columns(2)
    use_target = c1.checkbox("Stop at a target radius", key="use_target",
                             help="Stop as soon as the radius is certified, or as soon as it is out of reach even "
                                  "if every remaining sample voted c_A")
    # The label stays the same whatever the norm (a changed label would make it another widget, losing the value).
    target = c1.number_input("target radius", value=0.5, step=0.05, key="target", disabled=not use_target,
                             help=f"In the sidebar's norm, now {sidebar.NORM_LABELS.get(s.norm, s.norm)}")
    predict_n = c2.number_input("PREDICT: n", value=1000, step=100, key="predict_n",
                                help="PREDICT runs after CERTIFY ends on its own, with fresh samples")
    page_problems = []
    if use_target and not (isinstance(target, (int, float)) and 0 < target <= 100):
        page_problems.append(f"target radius must be > 0 and ≤ 100, got {target:g}")
    if not (isinstance(predict_n, int) and 10 <= predict_n <= 10_000_000):
        page_problems.append(f"PREDICT n must be a whole number from 10 to 10,000,000, got {predict_n}")
    for p in page_problems:
        st.error(p)

blocked = s.why_not_ready or ("; ".join(page_problems) if page_problems else None) or \
    (None if chosen is not None else inputs.missing_reason())
live.start_button("start", blocked, lambda: _start(chosen, target if use_target else None, int(predict_n)))

run: live.Run | None = st.session_state.get(KEY)
if run is None:
    live.empty_chart(names, "votes")
else:
    st.divider()
    noise_text = "" if run.params.get("noise", "gaussian") == "gaussian" else \
        f"{sidebar.NOISE_LABELS[run.params['noise']]} noise, "
    st.markdown(f"**Run:** {run.source} · {report.model_name(run.model)} · certifying at {noise_text}"
                f"σ = {run.params['sigma']:g}, α = {run.params['alpha']:g}")
    live.stale_warning(run, chosen, s.model_sha256, _params(), preprocess_now=s.model_record().get("preprocess"))
    attack.follow(run)  # a search about a replaced certificate stops (its result stays, marked outdated)
    if live.show(run, KEY, _names):
        _headline(run)
        live.live_view(run, KEY, _names)
        _trace(run)
        _details(run)
        attack.section(run, s, n_predict=int(run.extra.get("predict_n", 1000)))
