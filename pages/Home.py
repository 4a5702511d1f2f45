"""RS Lab home: what randomized smoothing certifies, the pages, and a radius calculator at the sidebar's σ."""

import streamlit as st

from rs_core import cohen_radius, lecuyer_radius, li_radius
from rs_core.rounding import floor_str
from widgets import ceilings, entry

st.title("RS Lab")
st.markdown(
    """
A workbench for **randomized smoothing** (Cohen, Rosenfeld & Kolter, ICML 2019).

Given a base classifier *f*, the smoothed classifier *g* returns the class that *f* predicts most
often on the input plus Gaussian noise N(0, σ²I). If the top class has probability pA and the
runner-up pB, then *g* provably returns the same class for every perturbation of ℓ2 norm below
**R = σ/2 · (Φ⁻¹(pA) − Φ⁻¹(pB))** (Theorem 1), and no larger ℓ2 ball can be certified from pA and
pB alone (Theorem 2).

**What a certificate promises.** pA is estimated by Monte Carlo sampling, so a certificate holds
with probability at least 1 − α over that sampling (α is yours to choose, e.g. 0.001): with that
probability, *g* truly returns the certified class everywhere within the radius. It says nothing
about the base classifier *f* itself, about other inputs, or about perturbations outside the
ℓ2 ball.

**How to use it.** The sidebar holds what every page shares: the model (a shipped checkpoint or
your own file), σ (defaults to the σ the model was trained with), α, the sample sizes n0 and
n max, the batch size, the seed and the device. Settings stay as you move between pages, and the
address bar carries them: a copied link opens RS Lab with the same settings (and the same test
image or example), so a run can be reproduced by anyone.
"""
)

st.subheader("Pages")
st.page_link("pages/Certify.py", label="Certify",
             help="Upload, draw or pick an image; watch the votes; get a certificate")
st.caption("Upload an image, draw a digit, or pick an example or test image; see the noisy copies the classifier "
           "votes on; watch the votes and the anytime-valid radius grow; stop whenever you like or at a target "
           "radius; download the certificate. Also PREDICT, and the radius Lecuyer's and Li's bounds give for the "
           "same counts.")
st.page_link("pages/Compare_sigma.py", label="Compare σ",
             help="One input certified at several σ side by side; the best σ with α split honestly")
st.caption("Certify one input at several noise levels, each certificate kept, radius against σ. Choosing the best σ "
           "after seeing the results spends α/k on each of the k σ (Bonferroni), so the chosen one keeps 1 − α.")
st.page_link("pages/Bounds.py", label="Bounds",
             help="Cohen vs Lecuyer vs Li radius against pA or for your own vote counts; CERTIFY's largest radius "
                  "against n and α under both bounds on pA")
st.caption("Radius against pA for the three bounds at your σ, or the three radii for vote counts of your own (nA of n, "
           "optionally nB) under Clopper–Pearson and the anytime bound; the ceiling that n and α put on any "
           "certificate; and why Cohen's bound cannot be improved from pA and pB alone.")
st.page_link("pages/Certified_accuracy.py", label="Certified accuracy",
             help="Curves and tables from our models' logs or your own Cohen-format logs")
st.caption("Certified accuracy against radius for our shipped models or logs you upload (Cohen et al.'s own "
           "logs show their published numbers), with the high-probability lower bound of Cohen et al. App. D.")
st.page_link("pages/Dual_RS.py", label="Dual RS",
             help="σ chosen per input by a certified σ-estimator, then CERTIFY with the expert for that σ")
st.caption("Dual randomized smoothing: watch stage 1 certify a noise level σ for your input and stage 2 certify "
           "the class with the model trained at that σ; the final radius is the smaller of the two, and why.")

st.page_link("pages/Playground.py", label="Playground (2-D)",
             help="Randomized smoothing in the plane: base classifier, noise, smoothed classifier, certified ball")
st.caption("Cohen et al.'s Figure 1, live: pick a base classifier in the plane, move a point, change σ and n, and see "
           "the smoothed regions, the certified ball, the exact ball and the true distance to the boundary — with a "
           "guided tour for a class.")

st.subheader("Radius calculator")
s = entry.settings()
if s.sigma is None or s.alpha is None or s.n_max is None:
    st.info("Fix σ, α and n max in the sidebar to use the calculator.")
    st.stop()
st.caption(f"At the sidebar's σ = {s.sigma:g}, α = {s.alpha:g} and n max = {s.n_max:,}.")
col1, col2 = st.columns(2)
p_a = col1.number_input("pA (top-class probability)", min_value=0.0, max_value=1.0, value=0.9,
                        step=0.01, format="%.4f", key="p_a")
p_b = col2.number_input("pB (runner-up probability)", min_value=0.0, max_value=1.0, value=0.1,
                        step=0.01, format="%.4f", key="p_b")
if p_a + p_b > 1.0 + 1e-12:
    st.error("pA + pB must be at most 1.")
else:
    st.table({
        "bound": ["Cohen et al. (tight)", "Li et al. (Rényi)", "Lecuyer et al. (PixelDP)"],
        "certified radius": [floor_str(cohen_radius(p_a, p_b, s.sigma)), floor_str(li_radius(p_a, p_b, s.sigma)),
                             floor_str(lecuyer_radius(p_a, p_b, s.sigma))],
    })

st.subheader("Largest radius CERTIFY can return")
ceilings.show(s.sigma, s.n_max, s.alpha)
