"""Playground: randomized smoothing in two dimensions — the base classifier, the noise, the smoothed classifier
and the certified ball, checked against the true distance to the smoothed classifier's boundary."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from rs_core.attacks import attack_smoothed
from rs_core.rounding import floor_str
from rs_core.smoothing import playground as pg
from rs_core.smoothing.noises import get_noise
from widgets import entry, playground_story

entry.settings()  # the sidebar (this page has its own settings below; the sidebar's model is not used)
ss = st.session_state
st.title("Playground: randomized smoothing in 2-D")
st.caption("Cohen et al.'s Figure 1, live. Left: the base classifier f and the noise around your point (Gaussian, or "
           "Laplace or uniform below). "
           "Right: the smoothed classifier g (the class f returns most often under the noise), the ball CERTIFY "
           "certifies, and the ball the exact pA would give. Click on the right panel to move the point.")

DEFAULTS = {"pg_preset": "two moons", "pg_sigma": 0.5, "pg_n": 1000, "pg_alpha": 0.001, "pg_x": 0.5, "pg_y": 0.6,
            "pg_seed": 0, "pg_noise": "gaussian", "pg_norm": "l2"}
NOISE_NAMES = {"gaussian": "Gaussian", "laplace": "Laplace", "uniform": "uniform"}
NORM_NAMES = {"l2": "ℓ2 (ball)", "l1": "ℓ1 (diamond)", "linf": "ℓ∞ (square)"}
SHAPES = {"l2": "ball", "l1": "diamond", "linf": "square"}
GAUSS = {"pg_noise": "gaussian", "pg_norm": "l2"}  # the steps 1–4 are about Gaussian noise and ℓ2 balls
for k, v in DEFAULTS.items():
    ss.setdefault(k, v)
NS = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
ALPHAS = [0.1, 0.01, 0.001, 0.0001]

# The guided steps: each sets up the picture, then says what to look for. Each sets its own n and α too: coming
# back to a step must not keep another step's n (step 3's 100,000 certifies where step 1 abstains at n = 1,000).
STEPS = {
    "Free play": (None, "Move the point (click the right panel), change σ, n and α, and watch the balls."),
    "1 · More noise": ({"pg_preset": "checkerboard", "pg_sigma": 0.25, "pg_x": 0.75, "pg_y": 0.75, "pg_n": 1000,
                        "pg_alpha": 0.001, **GAUSS},
                       ("Drag σ from 0.25 up to 1.0. The smoothed regions (right) lose the checkerboard's corners "
                       "and thin squares: near thin regions the smoothed classifier no longer agrees with f.")),
    "2 · More samples": ({"pg_preset": "rings", "pg_sigma": 0.5, "pg_x": 0.0, "pg_y": 0.0, "pg_n": 100,
                          "pg_alpha": 0.001, **GAUSS},
                         ("Slide n from 100 to 100,000. The certified ball (solid) grows towards the exact-pA ball "
                         "(dashed) but never reaches it: the Clopper–Pearson bound at level α is below pA. The chart "
                         "under the picture shows the radius against n for several α: less α costs radius.")),
    "3 · The bound is tight": ({"pg_preset": "half-plane", "pg_sigma": 0.5, "pg_x": 0.9, "pg_y": 0.3,
                                "pg_n": 100_000, "pg_alpha": 0.001, **GAUSS},
                               ("For a half-plane the smoothed classifier is the half-plane itself, and the exact-pA "
                               "ball (dashed) touches its boundary exactly: radius σΦ⁻¹(pA) equals the distance "
                               "(Cohen's Theorem 2 — no larger ball can be certified from pA). With any finite n the "
                               "certified ball (solid) stays inside.")),
    "4 · The certificate holds": ({"pg_preset": "two moons", "pg_sigma": 0.5, "pg_x": 0.5, "pg_y": 0.6, "pg_n": 1000,
                                   "pg_alpha": 0.001, **GAUSS},
                                  ("The ✕ marks the nearest point of the smoothed classifier's true decision "
                                  "boundary (found numerically on the grid). It lies outside the certified ball: "
                                  "no point within the radius changes g's class. Move the point and try to break it.")),
    "5 · The shape of the noise": ({"pg_preset": "half-plane", "pg_sigma": 0.5, "pg_x": 0.9, "pg_y": 0.3,
                                    "pg_n": 100_000, "pg_alpha": 0.001, "pg_noise": "laplace", "pg_norm": "l1"},
                                   ("Laplace noise certifies an ℓ1 diamond, uniform noise an ℓ1 diamond or an ℓ∞ "
                                   "square, Gaussian noise an ℓ2 ball: switch the noise and the norm below and watch "
                                   "the cloud and the certified shape change. For the half-plane the grey dashed shape "
                                   "is the exact answer — the largest one inside g's region, which every symmetric "
                                   "noise leaves where f's boundary is — and the certified shape stays inside it.")),
}


NOISE_STEP = "1 · More noise"
NOISE_SIGMAS = (0.25, 1.0)  # the ends of step 1's drag


def _apply_step() -> None:
    setup = STEPS[ss["pg_step"]][0]
    if setup:
        ss.update(setup)


step = st.radio("Guided tour", list(STEPS), horizontal=True, key="pg_step", on_change=_apply_step)
tour = st.empty()  # filled once the point's numbers are known (step 1 says them)

c = st.columns([2, 2, 2, 1.3, 1, 1])
preset = c[0].selectbox("Base classifier", list(pg.PRESETS), key="pg_preset", help="; ".join(
    f"{k}: {v}" for k, v in pg.PRESETS.items()))
sigma = c[1].slider("σ (noise level)", 0.05, 2.0, step=0.05, key="pg_sigma")
n = c[2].select_slider("n (estimation samples)", NS, key="pg_n", format_func=lambda v: f"{v:,}")
alpha = c[3].selectbox("α", ALPHAS, key="pg_alpha", format_func=lambda v: f"{v:g}")
px = c[4].number_input("x", step=0.1, key="pg_x", format="%.2f")
py = c[5].number_input("y", step=0.1, key="pg_y", format="%.2f")
nc = st.columns([2, 2, 4])
noise = nc[0].selectbox("Noise", list(NOISE_NAMES), key="pg_noise", format_func=NOISE_NAMES.get,
                        help="σ is the standard deviation for every noise: Laplace of scale σ/√2, uniform on ±σ√3")
norms = list(get_noise(noise, 1.0).norms)
if ss.get("pg_norm") not in norms:  # the noise changed: its first norm (the box shows which)
    ss["pg_norm"] = norms[0]
norm = nc[1].selectbox("Certified region", norms, key="pg_norm", format_func=NORM_NAMES.get,
                       help="The norm the radius is in: the shape of the certified region")
shape = SHAPES[norm]
NORM_SHORT = {"l2": "ℓ2", "l1": "ℓ1", "linf": "ℓ∞"}[norm]
bad = [f"{name} must be between −{pg.LIM:g} and {pg.LIM:g}, got {v:g}" for name, v in (("x", px), ("y", py))
       if not (isinstance(v, (int, float)) and -pg.LIM <= v <= pg.LIM)]
if bad:  # shown, not clamped: nothing is computed for a point the user did not choose
    tour.info(STEPS[step][1])
    st.error("; ".join(bad) + ".")
    st.stop()


@st.cache_resource(show_spinner="Training the base classifier (about a second)…")
def _model(name: str):
    return pg.base_classifier(name)


@st.cache_data(show_spinner=False, max_entries=64)
def _base(name: str) -> np.ndarray:
    return pg.base_grid(_model(name))


@st.cache_data(show_spinner=False, max_entries=128)
def _smoothed(name: str, s: float, noise_: str) -> np.ndarray:
    return pg.smoothed_grid(_model(name), s, noise=noise_)


@st.cache_resource(show_spinner="Attacking g (about a second)…", max_entries=32)
def _attack(name: str, point: tuple[float, float], s: float, alpha_: float, seed: int):
    """The attack on g from the point, its path kept: no clipping (the plane is not an image), the plane's diagonal
    as budget. PREDICT confirms with 20,000 samples (cheap in 2-D), so it needs only pA ≈ 0.51 beyond the boundary:
    the point found lies about 0.03σ past it, not 0.1σ as with 2,000."""
    return attack_smoothed(_model(name), torch.tensor([[list(point)]]), s, eps_max=2 * math.sqrt(2) * pg.LIM,
                           steps=120, m=64, alpha=alpha_, n_predict=20_000, batch_size=20_000, seed=seed, clip=None,
                           keep_trajectory=True)


model = _model(preset)


@st.cache_data(show_spinner=False, max_entries=64)
def _noise_story(name: str, point: tuple[float, float], n_: int, alpha_: float, seed: int, noise_: str,
                 norm_: str) -> str:
    return playground_story.noise_story(_model(name), point, NOISE_SIGMAS, n_, alpha_, seed, noise=noise_,
                                        norm=norm_)


# Steps 1–4 speak of Gaussian noise and ℓ2 balls: say so when the boxes below have been switched away from them.
switched = ""
if (STEPS[step][0] or {}).get("pg_noise") == "gaussian" and (noise, norm) != ("gaussian", "l2"):
    switched = (f" (This step is about Gaussian noise and ℓ2 balls; the picture now shows {NOISE_NAMES[noise]} noise "
                f"and {NORM_SHORT} {shape}s.)")
if step == NOISE_STEP:  # what f, the exact g and CERTIFY say here at both ends of the drag: computed, not assumed
    tour.info(STEPS[step][1] + switched + " " + _noise_story(preset, (float(px), float(py)), int(n), float(alpha),
                                                             int(ss["pg_seed"]), noise, norm))
else:
    tour.info(STEPS[step][1] + switched)
base = _base(preset)
smooth = _smoothed(preset, float(sigma), noise)
cert = pg.certify_point(model, (float(px), float(py)), float(sigma), n=int(n), alpha=float(alpha),
                        seed=int(ss["pg_seed"]), noise=noise, norm=norm)
nearest = pg.nearest_boundary(model, (float(px), float(py)), smooth, norm=norm)
attack = None
if (noise, norm) != ("gaussian", "l2"):
    st.caption("The attack searches for the nearest ℓ2 change of the Gaussian-smoothed g: choose Gaussian noise and "
               "the ℓ2 ball to run it here.")
elif st.checkbox("Attack g here: search for the nearest point where g's class changes (the empirical side of the "
                 "certificate)", key="pg_attack"):
    attack = _attack(preset, (float(px), float(py)), float(sigma), float(alpha), int(ss["pg_seed"]))
xs, ys = pg.grid(base.shape[0])
COLORS = [[0, "#c6dbef"], [1, "#fdd0a2"]]  # class 0 blue, class 1 orange


def _outline(r: float) -> tuple[np.ndarray, np.ndarray]:
    return pg.ball_outline((float(px), float(py)), r, norm)


fig = go.Figure()
fig.add_trace(go.Heatmap(x=xs, y=ys, z=base, colorscale=COLORS, showscale=False, hoverinfo="skip", xaxis="x",
                         yaxis="y", zmin=0, zmax=1))
fig.add_trace(go.Scatter(x=cert.noise[:, 0], y=cert.noise[:, 1], mode="markers",
                         name=f"x + ε ({NOISE_NAMES[noise]} noise samples)",
                         marker={"size": 3, "color": "#555"}, xaxis="x", yaxis="y", hoverinfo="skip"))
p1 = smooth[..., 1]
fig.add_trace(go.Heatmap(x=xs, y=ys, z=p1, colorscale=[[0, "#6baed6"], [0.5, "#f7f7f7"], [1, "#fd8d3c"]], zmin=0,
                         zmax=1, showscale=False, xaxis="x2", yaxis="y2", name="P(class 1) under noise",
                         hovertemplate="P(f = 1) = %{z:.2f}<extra></extra>"))
fig.add_trace(go.Contour(x=xs, y=ys, z=p1, contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"},
                         line={"color": "black", "width": 1.5}, showscale=False, xaxis="x2", yaxis="y2",
                         name="g's boundary (P = ½)", hoverinfo="skip", showlegend=True))
balls = [("certified " + ("" if norm == "l2" else f"{shape} ") + "(CERTIFY, Clopper–Pearson)", cert.radius, "solid",
          "#d62728", 3),
         ("exact pA (n → ∞)", cert.radius_exact, "dash", "#111", 2)]
if (noise, norm) == ("gaussian", "l2"):  # Li's and Lecuyer's bounds are Gaussian ℓ2 bounds
    balls += [("Li et al., same counts", cert.radius_li, "dot", "#2ca02c", 2),
              ("Lecuyer et al., same counts", cert.radius_lecuyer, "dot", "#9467bd", 2)]
if isinstance(model, pg.HalfPlane) and nearest is not None and (noise, norm) != ("gaussian", "l2"):
    # The exact region: the largest ℓp shape inside g's region (g is the half-plane itself for symmetric noise).
    balls.append((f"exact: the largest {shape} inside g's region", nearest[1], "dash", "#7f7f7f", 2))
for name, r, dash, color, width in balls:
    if r > 0:
        cx, cy = _outline(r)
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", name=f"{name}: {floor_str(r)}", xaxis="x2", yaxis="y2",
                                 line={"dash": dash, "color": color, "width": width}, hoverinfo="skip"))
if nearest is not None:
    (bx, by), dist = nearest
    fig.add_trace(go.Scatter(x=[px, bx], y=[py, by], mode="lines+markers", xaxis="x2", yaxis="y2",
                             name=f"nearest point of g's boundary: {floor_str(dist)} away",
                             marker={"symbol": ["circle", "x"], "size": [1, 12], "color": "black"},
                             line={"color": "black", "width": 1}))
if attack is not None and attack.trajectory:
    path = np.array([[float(px), float(py)], *[t.reshape(2).tolist() for t in attack.trajectory]])
    fig.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines", xaxis="x2", yaxis="y2",
                             line={"color": "#e377c2", "width": 1.5}, name="the attack's path (PGD on soft g)",
                             hoverinfo="skip"))
if attack is not None and attack.found:
    ax, ay = attack.x_adv.reshape(2).tolist()
    fig.add_trace(go.Scatter(x=[ax], y=[ay], mode="markers", xaxis="x2", yaxis="y2",
                             marker={"symbol": "star", "size": 14, "color": "#e377c2"},
                             name=f"adversarial point found: {attack.distance:.4f} away"))
for axis in ("", "2"):
    fig.add_trace(go.Scatter(x=[px], y=[py], mode="markers", marker={"size": 11, "color": "#d62728",
                                                                     "line": {"color": "white", "width": 2}},
                             xaxis=f"x{axis}", yaxis=f"y{axis}", name="your point", showlegend=axis == "",
                             hoverinfo="skip"))
# Clickable points over the right panel (a click selects one and moves the point there).
cx, cy = np.meshgrid(np.linspace(-pg.LIM, pg.LIM, 41), np.linspace(-pg.LIM, pg.LIM, 41))
fig.add_trace(go.Scatter(x=cx.ravel(), y=cy.ravel(), mode="markers", xaxis="x2", yaxis="y2", showlegend=False,
                         marker={"size": 9, "color": "rgba(0,0,0,0)"}, name="move here",
                         hovertemplate="move the point to (%{x:.2f}, %{y:.2f})<extra></extra>"))
lim = [-pg.LIM, pg.LIM]
fig.update_layout(
    template="plotly_white", height=560, margin={"t": 40, "b": 10, "l": 10, "r": 10},
    xaxis={"domain": [0, 0.48], "range": lim, "title": {"text": "base classifier f and the noise"}},
    yaxis={"range": lim, "scaleanchor": "x"},
    xaxis2={"domain": [0.52, 1], "range": lim,
            "title": {"text": f"smoothed classifier g, {NOISE_NAMES[noise]} noise at σ = {sigma:g}"}},
    yaxis2={"range": lim, "scaleanchor": "x2", "anchor": "x2"},
    legend={"orientation": "h", "y": -0.12}, clickmode="event+select", dragmode=False)
ss["pg_click_trace"] = len(fig.data) - 1  # the clickable grid: the last trace


def _clicked() -> None:
    """A click on the right panel selects one of the clickable points: move the point there (a callback runs
    before the page does, so the x and y boxes may still be set)."""
    selection = (ss.get("pg_figure") or {}).get("selection") or {}
    points = [p for p in selection.get("points", []) if p.get("curve_number") == ss["pg_click_trace"]]
    if points:
        ss["pg_x"], ss["pg_y"] = float(points[0]["x"]), float(points[0]["y"])


st.plotly_chart(fig, width="stretch", key="pg_figure", on_select=_clicked, selection_mode="points")

cls = "abstain" if cert.prediction < 0 else f"class {cert.prediction}"
if norm != "l2":
    st.caption(f"Radii and distances below are {NORM_SHORT} ({shape}: "
               + ("|δx| + |δy|" if norm == "l1" else "max(|δx|, |δy|)") + f"), for {NOISE_NAMES[noise]} noise.")
holds = nearest is None or cert.radius <= nearest[1] + 1e-12
m = st.columns(5)
m[0].metric("g(x) certified", cls)
m[1].metric("certified radius", floor_str(cert.radius),
            help=f"The {NOISE_NAMES[noise]} noise's {NORM_SHORT} radius of the pA lower bound; pA ≥ "
                 f"{floor_str(cert.p_lower)} from n = {n:,} at α = {alpha:g}")
m[2].metric("exact-pA radius", floor_str(cert.radius_exact), help=f"The same formula with pA = {cert.p_exact:.6f} "
            "(quadrature, or closed form for the Gaussian half-plane)")
m[3].metric("distance to boundary", "—" if nearest is None else floor_str(nearest[1]),
            help="The nearest point of the smoothed classifier's decision boundary (exact for the half-plane, on "
                 "the grid otherwise, within half a grid step)")
m[4].metric("certificate holds", "yes" if holds else "NO", help="certified radius ≤ distance to g's boundary")
if isinstance(model, pg.HalfPlane):  # the exact region, in numbers beside the picture
    st.caption(playground_story.half_plane_caption(model, (float(px), float(py)), cert))
if attack is not None:
    st.caption(playground_story.attack_caption(attack, cert.radius, None if nearest is None else nearest[1],
                                               exact=isinstance(model, pg.HalfPlane)))
if not holds:
    st.warning("The certified radius exceeds the distance to the boundary found on the grid. A certificate fails "
               f"with probability ≤ α = {alpha:g}, and the grid boundary is itself estimated (Monte Carlo, "
               "within half a grid step): near a boundary that is within the estimate's error.")

with st.expander("How the ball grows with n, and what α costs", expanded=step == "2 · More samples"):
    ns = np.unique(np.logspace(1, 6, 60).astype(int))
    fig2 = go.Figure()
    for a in ALPHAS:
        fig2.add_trace(go.Scatter(x=ns, y=pg.radius_against_n(cert.p_exact, float(sigma), a, ns, noise, norm),
                                  mode="lines", name=f"α = {a:g}"))
    fig2.add_hline(y=cert.radius_exact, line_dash="dash", annotation_text="exact pA (n → ∞)")
    fig2.add_trace(go.Scatter(x=[n], y=[cert.radius], mode="markers", name="this certificate",
                              marker={"size": 10, "color": "#d62728"}))
    fig2.update_layout(xaxis_type="log", xaxis_title="n", yaxis_title="certified radius", template="plotly_white",
                       height=320, margin={"t": 30, "b": 40, "l": 40, "r": 10})
    st.plotly_chart(fig2, width="stretch", key="pg_n_chart")
    st.caption("Each curve: the radius CERTIFY would give if exactly n·pA of the n votes went to the top class, at "
               "that α. Smaller α (more confidence) needs more samples for the same ball.")
st.caption(f"Counts: selection {cert.counts_selection}, estimation {cert.counts} (n = {n:,}, seed {cert.seed}). "
           "The picture's regions: f on a 61 × 61 grid; g exactly for the half-plane, else 128 noise draws shared "
           "by every grid point.")
