"""Bounds: the certified radius of Cohen, Lecuyer and Li against pA or for your own counts, and CERTIFY's ceiling
against n and α under both bounds on pA (Clopper–Pearson and anytime)."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from rs_core import cohen_radius, lecuyer_radius, li_radius
from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import ANYTIME, BOUND_KINDS, CLOPPER_PEARSON, largest_radius
from rs_core.smoothing.noises import get_noise
from widgets import ceilings, counts, entry, state

settings = entry.settings()
sigma = settings.sigma
last = st.session_state.get("last_certificate")
if last and (last.get("noise", "gaussian"), last.get("norm", "l2")) != ("gaussian", "l2"):
    last = None  # the ◆ sits on the Gaussian ℓ2 curves: another noise's or norm's radius has no place there
st.title("Certified radius bounds")
if sigma is None:
    st.info("Fix σ in the sidebar to see the bounds: " + settings.problems.get("sigma", ""))
    st.stop()
# Only the Certify page stores a last certificate, and its radii use the anytime bound.
last_bound = ceilings.NAMES.get(last.get("bound", ANYTIME), "anytime") if last else ""
st.markdown(f"At **σ = {sigma:g}** (set in the sidebar)." + (
    f" ◆ marks your last certificate: class {last['class']}, pA ≥ {floor_str(last['p_lower'])} from n = {last['n']:,} "
    f"samples at α = {last['alpha']:g}, σ = {last['sigma']:g}, radius {floor_str(last['radius'])} "
    f"({last_bound} bound)." if last else ""))


def nines(p):
    """The x axis: −log10(1 − pA), so 0.9, 0.99, 0.999 … are evenly spaced (the radius grows there, and a linear
    axis piles every certificate of a confident model into the last pixel before pA = 1)."""
    return -np.log10(np.clip(1.0 - np.asarray(p, dtype=float), 1e-12, None))


TICKS = [0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 0.99999]


def against_pa() -> None:
    """The three bounds' radius against pA (pB = 1 − pA or fixed), and a table at a few pA."""
    st.subheader("Radius against pA")
    mode = st.radio("Runner-up probability pB", ["pB = 1 − pA", "fixed pB"], horizontal=True, key="bounds_mode")
    p_b = None
    if mode == "fixed pB":
        p_b = st.number_input("pB", min_value=0.0, max_value=0.49, value=0.05, step=0.01, format="%.4f",
                              key="bounds_pb", help="From 0 to 0.49 (pA > pB is needed for any radius)")
        p_a = np.linspace(p_b, 1.0 - p_b, 400)[1:]
        p_b_arr = np.full_like(p_a, p_b)
    else:
        # Dense near pA = 1, where the radius grows fastest.
        p_a = np.unique(np.concatenate([np.linspace(0.5, 0.99, 200), 1.0 - np.logspace(-2, -5, 200)]))
        p_b_arr = 1.0 - p_a
    curves = {"Cohen et al. (tight)": cohen_radius(p_a, p_b_arr, sigma),
              "Li et al. (Rényi)": li_radius(p_a, p_b_arr, sigma),
              "Lecuyer et al. (PixelDP)": lecuyer_radius(p_a, p_b_arr, sigma)}
    fig = go.Figure([go.Scatter(x=nines(p_a), y=r, mode="lines", name=name, customdata=p_a,
                                hovertemplate="pA = %{customdata:.6f}<br>radius = %{y:.4f}")
                     for name, r in curves.items()])
    if last and mode == "pB = 1 − pA" and last["p_lower"] > 0.5 and abs(last["sigma"] - sigma) < 1e-9:
        pl = last["p_lower"]
        fig.add_trace(go.Scatter(
            x=[float(nines(pl))] * 3,
            y=[float(f(pl, 1 - pl, sigma)) for f in (cohen_radius, li_radius, lecuyer_radius)],
            mode="markers", marker={"symbol": "diamond", "size": 11, "color": "black"},
            name=f"last certificate (pA ≥ {floor_str(pl)})"))
    fig.update_layout(xaxis_title="pA (axis spaced by −log10(1 − pA): 0.9, 0.99, 0.999 … evenly)",
                      yaxis_title="certified ℓ2 radius", template="plotly_white",
                      legend={"orientation": "h", "y": -0.2},
                      xaxis={"tickvals": [float(nines(t)) for t in TICKS], "ticktext": [f"{t:g}" for t in TICKS],
                             "range": [float(nines(p_a.min())) - 0.02, float(nines(p_a.max())) + 0.1]})
    st.plotly_chart(fig, width="stretch")

    points = np.array([0.6, 0.9, 0.99, 0.999])
    points_b = 1.0 - points if p_b is None else np.full_like(points, p_b)
    keep = (points > points_b) & (points + points_b <= 1.0)
    st.table({
        "pA": [f"{p:g}" for p in points[keep]],
        "pB": [f"{p:.4g}" for p in points_b[keep]],
        "Cohen": [floor_str(r) for r in cohen_radius(points[keep], points_b[keep], sigma)],
        "Li": [floor_str(r) for r in li_radius(points[keep], points_b[keep], sigma)],
        "Lecuyer": [floor_str(r) for r in lecuyer_radius(points[keep], points_b[keep], sigma)],
    })


NOISE_CURVES = [("gaussian", "l2", "Gaussian, ℓ2 (= its derived ℓ1)"), ("laplace", "l1", "Laplace, ℓ1"),
                ("uniform", "l1", "uniform, ℓ1")]
LINF_CURVES = [("gaussian", "linf", "Gaussian, ℓ∞ (derived: ℓ2 / √d)"), ("uniform", "linf", "uniform, ℓ∞")]


def per_noise() -> None:
    """Each noise's certified radius against pA (pB = 1 − pA) at the sidebar's σ (its standard deviation for every
    noise): the radii of rs_core.smoothing.noises, ℓ1 and ℓ∞ apart."""
    st.subheader("Each noise's radius against pA")
    # ℓ∞ radii depend on the dimension d: the sidebar model's input, else MNIST's (the shipped models' data set).
    d, source = 784, "MNIST's 1×28×28: no model chosen"
    if settings.loaded is not None:
        shape = tuple(int(v) for v in settings.loaded.input_shape)
        d, source = int(np.prod(shape)), "the sidebar model's input, " + "×".join(map(str, shape))
    st.caption(f"At σ = {sigma:g} for every noise (Gaussian N(0, σ²); Laplace of scale σ/√2; uniform on ±σ√3), "
               f"pB = 1 − pA, inputs of dimension d = {d:,} ({source}). Radii in different norms are "
               "different shapes, not numbers to rank: an ℓ1 ball of radius r lies inside the ℓ2 ball of r (so "
               "Gaussian's ℓ2 radius is an ℓ1 radius too), and the ℓ∞ ball of r contains the ℓ2 ball of r (its "
               "corners are r√d away in ℓ2; Gaussian's derived ℓ∞ radius is its ℓ2 radius over √d). "
               "The sidebar's noise and norm are what the Certify page uses.")
    p_a = np.unique(np.concatenate([np.linspace(0.5, 0.99, 200), 1.0 - np.logspace(-2, -5, 200)]))
    for title, curves in (("ℓ1 (and ℓ2)", NOISE_CURVES), ("ℓ∞", LINF_CURVES)):
        fig = go.Figure([go.Scatter(x=nines(p_a), y=get_noise(noise, sigma).radius(p_a, norm, d), mode="lines",
                                    name=name, customdata=p_a,
                                    hovertemplate="pA = %{customdata:.6f}<br>radius = %{y:.5f}")
                         for noise, norm, name in curves])
        fig.update_layout(title=f"Certified {title} radius", xaxis_title="pA (spaced by −log10(1 − pA))",
                          yaxis_title="radius", template="plotly_white", legend={"orientation": "h", "y": -0.3},
                          height=380, xaxis={"tickvals": [float(nines(t)) for t in TICKS],
                                             "ticktext": [f"{t:g}" for t in TICKS]})
        st.plotly_chart(fig, width="stretch", key=f"noise_curves_{title}")
    points = np.array([0.6, 0.9, 0.99, 0.999])
    st.table({"pA": [f"{p:g}" for p in points],
              **{name: [floor_str(float(r)) for r in get_noise(noise, sigma).radius(points, norm, d)]
                 for noise, norm, name in NOISE_CURVES + LINF_CURVES}})


def ceiling() -> None:
    """CERTIFY's largest radius under both bounds on pA: at the sidebar's n max and α, then against n and α."""
    st.subheader("Largest radius CERTIFY can return")
    if settings.alpha is not None and settings.n_max is not None:
        ceilings.show(sigma, settings.n_max, settings.alpha)
    st.caption("When all n estimation samples vote for the top class, the one-sided Clopper–Pearson bound is "
               "α^(1/n), so no input can be certified beyond σ·Φ⁻¹(α^(1/n)) (Cohen et al. Fig. 5, right); the "
               "anytime bound (dashed) is a little lower at every n.")
    alphas = st.multiselect("α", [0.1, 0.01, 0.001, 0.0001, 1e-6], default=[0.01, 0.001], key="bounds_alphas")
    n = np.unique(np.logspace(1, 7, 200).astype(np.int64))
    n_anytime = np.unique(np.logspace(1, 7, 61).astype(np.int64))  # fewer: each value is a root search
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    fig2 = go.Figure()
    for a, colour in zip(alphas, colours, strict=False):
        fig2.add_trace(go.Scatter(x=n, y=largest_radius(sigma, n, a, CLOPPER_PEARSON), mode="lines",
                                  name=f"α = {a:g}, {ceilings.NAMES[CLOPPER_PEARSON]}", line={"color": colour}))
        fig2.add_trace(go.Scatter(x=n_anytime, y=largest_radius(sigma, n_anytime, a, ANYTIME), mode="lines",
                                  name=f"α = {a:g}, {ceilings.NAMES[ANYTIME]}",
                                  line={"color": colour, "dash": "dash"}))
    if last and last["p_lower"] > 0.5 and abs(last["sigma"] - sigma) < 1e-9:
        fig2.add_trace(go.Scatter(x=[last["n"]], y=[last["radius"]], mode="markers",
                                  name=f"last certificate ({last_bound} bound)",
                                  marker={"symbol": "diamond", "size": 11, "color": "black"}))
    fig2.update_layout(xaxis_type="log", xaxis_title="n (estimation samples)", yaxis_title="largest radius",
                       template="plotly_white")
    st.plotly_chart(fig2, width="stretch")
    if alphas:
        ns = [100, 1_000, 10_000, 100_000, 1_000_000]
        st.table({"n": [f"{v:,}" for v in ns],
                  **{f"α = {a:g}, {ceilings.NAMES[b]}": [floor_str(largest_radius(sigma, v, a, b)) for v in ns]
                     for a in alphas for b in BOUND_KINDS}})


VIEWS = ["probabilities (pA, pB)", "your counts (nA of n)"]
view = st.radio("Bounds from", VIEWS, horizontal=True, **state.kept("bounds_view", VIEWS[0], VIEWS),
                help="Curves against pA, or the three radii for the vote counts of a run of your own")
if view == VIEWS[1]:
    counts.draw(sigma, settings.alpha if settings.alpha is not None else 0.001)
else:
    against_pa()
ceiling()
if view == VIEWS[0]:
    per_noise()

st.subheader("Why Cohen's bound is tight")
st.markdown(
    """
Theorem 2 of Cohen et al.: if all we know about the base classifier at x is that the top class has
probability at least pA and the runner-up at most pB under noise, then **no ball larger than
R = σ/2·(Φ⁻¹(pA) − Φ⁻¹(pB)) can be certified**. The worst case is a *linear* base classifier: one
that predicts the top class on a half-space at distance σΦ⁻¹(pA) from x and the runner-up on a
half-space pB away. Shifting x by any δ with ‖δ‖ > R along the normal of those half-spaces makes
the runner-up more likely than the top class, so the smoothed prediction changes. Lecuyer's and
Li's bounds are valid too, but smaller: they leave radius on the table that Cohen's does not.
"""
)
