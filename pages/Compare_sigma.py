"""Compare σ: one input certified at several noise levels, side by side; the best σ with α split honestly."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import streamlit as st

from rs_core import ABSTAIN
from rs_core.rounding import floor_str
from rs_core.smoothing.sweep import SigmaSweepStream
from widgets import entry, fields, figures, inputs, live, report, sidebar, state

KEY = "sweep_run"
s = entry.settings()
st.title("Compare σ on one input")
if (note := sidebar.gaussian_l2_note(s.noise, s.norm, " (the sweep of σ is Gaussian only)")) is not None:
    st.info(note)
st.markdown(
    """
The same model and input, certified at several noise levels σ one after another, each with its own samples.
A larger σ can certify a larger radius where the model stays sure under noise, and abstain where it does not.

**Choosing σ after seeing the results is a choice from data.** Each certificate holds with probability
1 − α on its own, but "the largest radius of k certificates" fails whenever *any* of them fails. In
**best σ** mode each of the k certificates is made at α/k (Bonferroni), so the best one keeps 1 − α.
"""
)
if s.loaded is None:
    st.info(s.why_not_ready)
    st.stop()
names = s.class_names


def _names(_snap) -> list[str]:
    return names


left, right = st.columns([2, 3])
with left:
    chosen = inputs.choose_input(s.loaded.input_shape, s.dataset, names, preprocess=s.loaded.preprocessing)
with right:
    default = ", ".join(f"{v:g}" for v in sorted({0.25, 0.5, 1.0} | ({s.train_sigma} if s.train_sigma else set())))
    text = st.text_input("σ values (comma-separated)", **state.kept("sweep_sigmas", default),
                         help="Each σ is certified with the sidebar's n0, n max, batch size; seeds are derived from "
                              "the sidebar's seed, one per σ")
    mode = st.radio("Mode", ["best", "each"], horizontal=True, **state.kept("sweep_mode", "best", ["best", "each"]),
                    format_func={"best": "Best σ: α/k on each (Bonferroni)",
                                 "each": "Each σ on its own: α on each"}.get)
    problems = []
    try:
        sigmas = fields.parse_sigma_list(text)
    except ValueError as err:
        sigmas = None
        problems.append(str(err))
        st.error(str(err))
    if sigmas and s.alpha is not None:
        k = len(sigmas)
        st.caption(f"{k} σ · α = {s.alpha:g} → {s.alpha / k:.3g} on each σ (the best σ holds at 1 − {s.alpha:g})"
                   if mode == "best" else f"{k} σ · α = {s.alpha:g} on each σ (each holds on its own; picking the "
                                          "best after seeing them does not)")


def _params() -> dict:
    return {"sigmas": tuple(sigmas or ()), "best": mode == "best", "alpha": s.alpha, "n0": s.n0, "n_max": s.n_max,
            "seed": s.seed}


def _start() -> None:
    model, x = s.base_model, chosen.x.to(s.device)
    params = _params()
    live.start(KEY, lambda: SigmaSweepStream(model, x, list(params["sigmas"]), n0=s.n0, n_max=s.n_max,
                                             alpha=s.alpha, batch_size=s.batch_size, best=params["best"],
                                             seed=s.seed, batch_seconds=0.5),  # Stop answers on big models
               s.device, chosen, class_names=names, params=params,
               model=s.model_record())


blocked = s.why_not_ready or ("; ".join(problems) if problems else None) or \
    (None if chosen is not None else "Choose an input first.")
live.start_button("sweep_start", blocked, _start, explain=chosen is not None)


def _result(run: live.Run) -> None:
    cert = run.job.certificate
    lab = report.class_label
    ran = [(v, c) for v, c in zip(cert.sigmas, cert.certificates, strict=True) if c is not None]
    best = cert.best_index
    if cert.best:
        if best is None:
            st.warning("**Abstain at every σ** — no σ certified a class.")
            st.caption(report.ABSTAIN_ADVICE)
        else:
            c = cert.certificates[best]
            st.success(f"Best σ = **{cert.sigmas[best]:g}**: **{lab(run.class_names, c.prediction)}** certified within "
                       f"ℓ2 radius **{floor_str(c.radius)}**, with probability ≥ {1 - cert.alpha:g} — each of the "
                       f"{len(cert.sigmas)} σ was certified at α/{len(cert.sigmas)} = {cert.alpha_each:.3g}, so "
                       "choosing the largest radius among them keeps the guarantee (union bound).")
    else:
        st.info(f"Each certificate below holds with probability ≥ {1 - cert.alpha_each:g} on its own. Picking the "
                f"largest radius after seeing them holds only at 1 − {len(ran)}·α; run in best σ mode for that.")
    fig = go.Figure()
    ok = [(v, c) for v, c in ran if c.prediction != ABSTAIN]
    no = [(v, c) for v, c in ran if c.prediction == ABSTAIN]
    fig.add_trace(go.Scatter(x=[v for v, _ in ok], y=[c.radius for _, c in ok], mode="lines+markers", name="certified",
                             text=[lab(run.class_names, c.prediction) for _, c in ok], textposition="top center"))
    if no:
        fig.add_trace(go.Scatter(x=[v for v, _ in no], y=[0] * len(no), mode="markers", name="abstained",
                                 marker={"symbol": "x", "size": 11, "color": "#7f7f7f"}))
    if best is not None:
        fig.add_trace(go.Scatter(x=[cert.sigmas[best]], y=[cert.certificates[best].radius], mode="markers",
                                 name="best σ", marker={"symbol": "star", "size": 16, "color": "#d62728"}))
    fig.update_layout(title="Certified radius against σ (this input)", xaxis=figures.sigma_axis(cert.sigmas),
                      yaxis_title="certified radius", yaxis_rangemode="tozero", template="plotly_white", height=340,
                      margin={"t": 50, "b": 40, "l": 40, "r": 10})
    st.plotly_chart(fig, width="stretch", key="sweep_plot")
    st.table({"σ": [f"{v:g}" for v, _ in ran],
              "class": [lab(run.class_names, c.prediction) for _, c in ran],
              "radius": [floor_str(c.radius) if c.prediction != ABSTAIN else "— (abstain)" for _, c in ran],
              "pA lower bound": [floor_str(c.p_lower, 5) for _, c in ran],
              "n": [f"{c.n:,}" for _, c in ran], "α used": [f"{c.alpha:.3g}" for _, c in ran],
              # Each σ's seed is derived from the run's (the full 64-bit value is in the JSON).
              "seed": [f"σ #{i + 1} of seed {cert.seed}" for i in range(len(ran))],
              "ended": [str(c.stop_reason) for _, c in ran]})
    caveat = report.repeat_caveat(live.repeat_count(run), cert.alpha)
    if caveat:
        st.info(caveat)
    out = {"sweep": cert.to_dict(), "model": report.model_record(run), "input": report.input_record(run),
           "certifications_of_this_input_in_the_session": live.repeat_count(run)}
    st.download_button("Download the certificates (JSON)", json.dumps(out, indent=2, default=float),
                       file_name="sigma_sweep.json", mime="application/json", key="sweep_download")


run: live.Run | None = st.session_state.get(KEY)
if run is None:
    live.empty_chart(names, KEY)
else:
    st.divider()
    listed = ", ".join(f"{v:g}" for v in run.params["sigmas"])
    st.markdown(f"**Run:** {run.source} · {report.model_name(run.model)} · σ ∈ {{{listed}}}"
                f" · {'best σ (α/k each)' if run.params['best'] else 'each σ on its own'}")
    live.stale_warning(run, chosen, s.model_sha256, _params(), preprocess_now=s.model_record().get("preprocess"))
    if live.show(run, KEY, _names):
        _result(run)
