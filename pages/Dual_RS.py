"""Dual RS: σ chosen per input by a certified σ-estimator, then CERTIFY with the expert for that σ."""

from __future__ import annotations

import json

import streamlit as st

from rs_core.dual.estimator import describe_estimator
from rs_core.dual.smooth import DualStream
from rs_core.models.shipped import shipped_estimators
from rs_core.rounding import floor_str
from rs_core.smoothing.sampling import noisy_views
from rs_core.smoothing.sweep import SigmaSweepStream
from widgets import dual_measured, entry, figures, inputs, live, report, sidebar, state

KEY = "dual_run"
COMPARE = "dual_compare"
s = entry.settings()
st.title("Dual randomized smoothing")
if (note := sidebar.gaussian_l2_note(s.noise, s.norm, " (dual RS chooses among Gaussian σ)")) is not None:
    st.info(note)
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


@st.cache_resource(show_spinner="Loading the σ-estimator and its experts…", max_entries=4)
def _load_dual(path: str, device: str):
    """(estimator, {σ: expert}) as LoadedModels, shared by all sessions."""
    from rs_core.dual.estimator import load_dual

    return load_dual(path, device)


estimators = {e.id: e for e in shipped_estimators()}
if not estimators:
    st.info("No σ-estimator found under checkpoints/*/dual/. Train one with `python -m rs_core train-sigma …` "
            "(see checkpoints/README.md).")
    st.stop()
c1, c2 = st.columns([2, 1])
ids = list(estimators)
default = next((k for k in ids if estimators[k].dataset == "mnist"), ids[0])
choice = c1.selectbox("σ-estimator", ids, format_func=lambda k: estimators[k].label,
                      **state.kept("dual_estimator", default, ids))
split = c2.number_input("Share of α for stage 1 (σ)", step=0.05, **state.kept("dual_split", 0.5))
split_problem = None if isinstance(split, (int, float)) and 0 < split < 1 else \
    f"Share of α for stage 1 must be strictly between 0 and 1, got {split:g}"
if split_problem:
    c2.error(split_problem)
try:
    est, experts = _load_dual(str(estimators[choice].path), s.device)
except ValueError as err:
    st.error(f"{estimators[choice].label}: {err}")
    st.stop()
sigmas = sorted(experts)
sigma_e = float(est.meta["sigma_e"])
first = experts[sigmas[0]]
names = first.class_names
sigma_names = [f"σ = {v:g}" for v in sigmas]
alpha_text = "" if s.alpha is None or split_problem else \
    f" · α = {s.alpha:g} → {s.alpha * split:.3g} (σ) + {s.alpha * (1 - split):.3g} (class)"
st.caption(f"Σ = {{{', '.join(f'{v:g}' for v in sigmas)}}} · σ_e = {sigma_e:g} · estimator `{est.arch}` "
           f"(sha256 `{est.sha256[:12]}…`; {describe_estimator(est.meta)}) · experts: " + ", ".join(
               f"σ = {v:g}: `{experts[v].arch}` (`{experts[v].sha256[:12]}…`)" for v in sigmas) + alpha_text)
# What the shipped dual RS measured against each single σ, from the shipped logs (the README's and the model card's
# numbers): a learner must not leave thinking dual RS beats a well-chosen single σ here.
found = dual_measured.measured(estimators[choice].path, est.meta)
if found is None:
    st.caption("No certify-dual log beside this σ-estimator to compare with each single σ. The shipped estimators' "
               "comparison (README.md, “Dual randomized smoothing against every single σ”) finds dual RS below the "
               "best single σ.")
else:
    st.info(dual_measured.summary(found) + " Why, and the commands: README.md, “Dual randomized smoothing against "
            "every single σ”, and checkpoints/README.md.")
    with st.expander("Dual RS against every single σ, measured on the shipped logs"):
        st.table(dual_measured.table(found))
        st.caption("Certified accuracy (correct and radius ≥ r) on the same test images; the best single σ is "
                   "chosen per radius in hindsight; ± is the paired standard error.")

left, right = st.columns([2, 3])
with left:
    chosen = inputs.choose_input(first.input_shape, est.meta.get("dataset"), names)
with right:
    if chosen is not None:
        seed = s.seed if s.seed is not None else 0
        views = noisy_views(chosen.x, sigma_e, k=3, seed=seed)
        st.markdown(f"**{chosen.source}** — as the estimator sees it (σ_e = {sigma_e:g}) and at each σ in Σ")
        imgs = [figures.to_display(chosen.x)] + [figures.to_display(v) for v in views] + [
            figures.to_display(noisy_views(chosen.x, v, k=1, seed=seed)[0]) for v in sigmas]
        st.image(imgs, caption=["input"] + [f"σ_e #{i + 1}" for i in range(3)] + sigma_names, width=84)


def _params() -> dict:
    return {"estimator": choice, "alpha_split": split, "alpha": s.alpha, "n0": s.n0, "n_max": s.n_max, "seed": s.seed}


def _stage_names(snap) -> list[str]:
    return sigma_names if snap.stage == 1 else names


def _start() -> None:
    x = chosen.x.to(s.device)
    live.start(KEY, lambda: DualStream(est.model, {v: m.model for v, m in experts.items()}, x, sigma_e, n0=s.n0,
                                       n_max=s.n_max, alpha=s.alpha, batch_size=s.batch_size, alpha_split=split,
                                       seed=s.seed),
               s.device, chosen, class_names=names, params=_params(),
               model={"label": estimators[choice].label, "id": choice, "file": f"{choice}/sigma_estimator.pth.tar",
                      "arch": est.arch, "sha256": est.sha256,
                      "experts_sha256": {str(v): experts[v].sha256 for v in sigmas}},
               extra={"sigmas": sigmas})


# The sidebar's σ (and model) are not used here: only the sampling settings must be valid.
used = {k: v for k, v in s.problems.items() if k not in ("sigma", "normalization")}
blocked = "Fix the sidebar first: " + "; ".join(used.values()) + "." if used else None
blocked = blocked or split_problem or (None if chosen is not None else "Choose an input first.")
live.start_button("dual_start", blocked, _start, explain=chosen is not None)


def _result(run: live.Run) -> None:
    cert = run.job.certificate
    lab = report.class_label
    if cert.abstained:
        why = {"sigma-abstained": "stage 1 could not certify a σ (its lower bound on the top σ's probability is "
                                  "≤ 1/2)",
               "class-abstained": f"stage 2 (σ_c = {cert.sigma:g}) could not certify a class",
               "not-run": "sampling was stopped before stage 2 ran"}[cert.limited_by]
        st.warning(f"**Abstain** — {why}.")
    else:
        truth = ""
        if run.true_label is not None:
            truth = " ✓ (the true label)" if cert.prediction == run.true_label else \
                f" ✗ (true label: {lab(run.class_names, run.true_label)})"
        limiter = "the σ certificate (R_σ < R_c)" if cert.limited_by == "sigma" else "the class certificate (R_c ≤ R_σ)"
        st.success(f"**{lab(run.class_names, cert.prediction)}**{truth} is certified within ℓ2 radius "
                   f"**{floor_str(cert.radius)}** = min(R_σ = {floor_str(cert.radius_sigma)}, R_c = "
                   f"{floor_str(cert.radius_class)}) at σ_c = {cert.sigma:g}, with probability ≥ {1 - cert.alpha:g}. "
                   f"Limited by {limiter}.")
    rows = ["prediction", "radius", "p lower bound", "counts (n)", "counts (n0)", "n", "α", "σ", "seed", "stop"]
    seed = run.job.stream.seed

    def col(c, names_, stage):
        if c is None:
            return ["not run"] + [""] * (len(rows) - 1)
        # The stage's own seed is a 64-bit derivation of the run's seed (in the JSON): show where it comes from.
        return [lab(names_, c.prediction), floor_str(c.radius), floor_str(c.p_lower, 5),
                report.votes_text(names_, c.counts), report.votes_text(names_, c.counts_selection), f"{c.n:,}",
                f"{c.alpha:g}", f"{c.sigma:g}", f"stage {stage} of seed {seed}", str(c.stop_reason)]

    st.table({"": rows, "stage 1: σ-estimator (σ_e)": col(cert.stage1, [f"σ = {v:g}" for v in run.extra["sigmas"]], 1),
              "stage 2: expert (σ_c)": col(cert.stage2, run.class_names, 2)})
    caveat = report.repeat_caveat(live.repeat_count(run), cert.alpha)
    if caveat:
        st.info(caveat)
    out = {"dual_certificate": cert.to_dict(), "model": report.model_record(run), "input": report.input_record(run),
           "certifications_of_this_input_in_the_session": live.repeat_count(run)}
    st.download_button("Download the certificate (JSON)", json.dumps(out, indent=2, default=float),
                       file_name="dual_certificate.json", mime="application/json", key="dual_download")


def _stage1_votes(run: live.Run) -> None:
    """Stage 1's final votes (the σ-estimator's, under σ_e): the evidence σ_c and R_σ came from."""
    cert = run.job.certificate
    c = cert.stage1
    chose = "abstained" if c.prediction < 0 else f"σ_c = {cert.sigmas[c.prediction]:g}, R_σ = {floor_str(c.radius)}"
    st.markdown(f"**Stage 1: the σ-estimator** (σ_e = {cert.sigma_e:g}) → {chose}")
    st.plotly_chart(figures.vote_figure(c.counts, [f"σ = {v:g}" for v in cert.sigmas],
                                        top_class=c.prediction if c.prediction >= 0 else None,
                                        title=f"stage 1 votes (n = {c.n:,})"),
                    width="stretch", key=f"{KEY}_stage1_votes")
    st.caption(f"Selection votes (n0): {report.votes_text([f'σ = {v:g}' for v in cert.sigmas], c.counts_selection)}")


run: live.Run | None = st.session_state.get(KEY)
if run is None:
    live.empty_chart(sigma_names, KEY, "Votes appear here while sampling runs")
else:
    st.divider()
    st.markdown(f"**Run:** {run.source} · {report.model_name(run.model)}")
    live.stale_warning(run, chosen, est.sha256, _params())
    if live.show(run, KEY, _stage_names):
        _result(run)
        done = run.job.certificate
        if done.stage2 is None:  # the last votes drawn are stage 1's: the live view shows them
            live.live_view(run, KEY, _stage_names)
        else:  # the live view ends on stage 2's votes: keep stage 1's (how σ_c was chosen) beside them
            v1, v2 = st.columns([2, 3])
            with v1:
                _stage1_votes(run)
            with v2:
                live.live_view(run, KEY, _stage_names)


def _class_names(_snap) -> list[str]:
    return names


def _compare(run: live.Run) -> None:
    """The same input certified by each expert alone, next to the dual certificate: a comparison for the lesson,
    labelled so that nobody picks from it (choosing the best of k after seeing them is not covered by α)."""
    st.markdown("#### The same input, each expert alone — a comparison, not a certificate to pick from")
    st.caption(f"Each expert certifies this input at its own σ with α = {run.job.certificate.alpha:g} and its own "
               "samples. Each line holds on its own; the largest of them, picked after seeing them, does not hold at "
               "1 − α (it would need α/k each, as Compare σ's best-σ mode spends). Dual RS chose σ_c from the "
               "σ-estimator alone, before any class vote, which is why its one certificate keeps 1 − α.")
    other: live.Run | None = st.session_state.get(COMPARE)
    same = other is not None and other.extra.get("dual_run") is run

    def start() -> None:
        x = run.x.to(s.device)
        cert = run.job.certificate
        live.start(COMPARE, lambda: SigmaSweepStream(
            first.model, x, sigmas, n0=s.n0, n_max=s.n_max, alpha=cert.alpha,
            batch_size=s.batch_size, best=False, seed=(s.seed or 0) + 1, batch_seconds=0.5,
            models={v: m.model for v, m in experts.items()}),
            s.device, inputs.Chosen(run.x, run.source, run.true_label, run.file_sha256, run.options), class_names=names,
            params=_params(), extra={"dual_run": run},
            model={"label": "each expert alone", "sha256": "+".join(experts[v].sha256 for v in sigmas)})

    if not same:
        st.button("Certify with each expert alone", key="dual_compare_start", on_click=start,
                  help="One CERTIFY per σ in Σ with that σ's expert, n0 and n max as the sidebar says")
        return
    if not live.show(other, COMPARE, _class_names):
        return
    dual = run.job.certificate
    certs = other.job.certificate.certificates
    lab = report.class_label
    rows = {"": [], "class": [], "radius": [], "pA lower bound": [], "n": []}
    for v, c in zip(sigmas, certs):
        chosen_mark = " ← σ_c of dual RS" if not dual.abstained and v == dual.sigma else ""
        rows[""].append(f"expert σ = {v:g} alone{chosen_mark}")
        rows["class"].append("not run" if c is None else lab(names, c.prediction))
        rows["radius"].append("" if c is None else floor_str(c.radius))
        rows["pA lower bound"].append("" if c is None else floor_str(c.p_lower, 4))
        rows["n"].append("" if c is None else f"{c.n:,}")
    rows[""].append("dual RS (one certificate, holds at 1 − α)")
    rows["class"].append(lab(names, dual.prediction))
    rows["radius"].append(floor_str(dual.radius))
    rows["pA lower bound"].append("")
    rows["n"].append("")
    st.table(rows)
    done = [(v, c) for v, c in zip(sigmas, certs) if c is not None and not c.abstained]
    if done:
        v_best, c_best = max(done, key=lambda t: t[1].radius)
        if dual.abstained or c_best.radius > dual.radius:
            limit = (f" The σ certificate limited dual RS here (R_σ = {floor_str(dual.radius_sigma)} < R_c = "
                     f"{floor_str(dual.radius_class)}): a σ-estimator whose votes under σ_e are more concentrated "
                     "gives a larger R_σ." if not dual.abstained and dual.limited_by == "sigma" else "")
            st.info(f"In hindsight the expert at σ = {v_best:g} certifies the larger radius "
                    f"({floor_str(c_best.radius)} against dual RS's {floor_str(dual.radius)}) — but that σ was "
                    f"picked after seeing every result, so it is not a certificate at 1 − α.{limit}")
        else:
            st.success(f"Dual RS certifies at least the radius of every expert alone here ({floor_str(dual.radius)}), "
                       "with one certificate chosen before seeing any class vote.")


if run is not None and run.job.done and run.job.error is None and run.job.started_at is not None:
    _compare(run)
