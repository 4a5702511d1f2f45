"""pages/Playground.py through the entrypoint with AppTest: the point moved, σ changed, the guided steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from rs_core.rounding import floor_str
from rs_core.smoothing import playground as pg

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/Playground.py").run()
    assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _figure(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_the_page_shows_both_panels_and_a_certificate_that_holds():
    at = _page()
    m = _metrics(at)
    cert = pg.certify_point(pg.base_classifier("two moons"), (0.5, 0.6), 0.5, n=1000, alpha=0.001, seed=0)
    assert m["certified radius"] == floor_str(cert.radius) and m["exact-pA radius"] == floor_str(cert.radius_exact)
    assert m["certificate holds"] == "yes"
    names = [t.get("name", "") for t in _figure(at)["data"]]
    assert any(n.startswith("certified (CERTIFY") for n in names) and any(n.startswith("exact pA") for n in names)
    assert any(n.startswith("nearest point of g's boundary") for n in names)


def test_moving_the_point_recertifies_there():
    at = _page()
    at.number_input(key="pg_x").set_value(-1.5)
    at.number_input(key="pg_y").set_value(-0.4)
    at.run()
    assert not at.exception
    cert = pg.certify_point(pg.base_classifier("two moons"), (-1.5, -0.4), 0.5, n=1000, alpha=0.001, seed=0)
    assert _metrics(at)["certified radius"] == floor_str(cert.radius)
    point = next(t for t in _figure(at)["data"] if t.get("name") == "your point")
    assert point["x"] == [-1.5] and point["y"] == [-0.4]


def test_a_point_outside_the_plane_is_shown_as_invalid_not_clamped():
    at = _page()
    at.number_input(key="pg_x").set_value(7.0).run()
    assert at.number_input(key="pg_x").value == 7.0
    assert any("x must be between −3 and 3, got 7" in e.value for e in at.error)
    assert not at.metric


def test_changing_sigma_redraws_the_smoothed_classifier():
    at = _page()
    before = _metrics(at)["certified radius"]
    at.slider(key="pg_sigma").set_value(1.0).run()
    fig = _figure(at)
    assert "σ = 1" in fig["layout"]["xaxis2"]["title"]["text"]
    cert = pg.certify_point(pg.base_classifier("two moons"), (0.5, 0.6), 1.0, n=1000, alpha=0.001, seed=0)
    assert _metrics(at)["certified radius"] == floor_str(cert.radius) != before


def test_guided_step_three_shows_the_tight_ball_of_the_half_plane():
    at = _page()
    at.radio(key="pg_step").set_value("3 · The bound is tight").run()
    assert not at.exception
    assert at.selectbox(key="pg_preset").value == "half-plane" and at.select_slider(key="pg_n").value == 100_000
    m = _metrics(at)
    assert m["exact-pA radius"] == m["distance to boundary"]  # Theorem 2: the exact ball touches the line
    assert float(m["certified radius"]) < float(m["exact-pA radius"]) and m["certificate holds"] == "yes"
    assert "touches its boundary exactly" in at.info[0].value


def test_every_guided_step_sets_up_its_picture():
    at = _page()
    for step in ["1 · More noise", "2 · More samples", "4 · The certificate holds", "Free play"]:
        at.radio(key="pg_step").set_value(step).run()
        assert not at.exception, step
        assert at.info and at.metric, step
    at.radio(key="pg_step").set_value("1 · More noise").run()
    assert at.selectbox(key="pg_preset").value == "checkerboard" and at.slider(key="pg_sigma").value == 0.25


def test_step_one_says_what_the_exact_g_and_certify_compute_at_its_point():
    """Step 1's text is the page's numbers at σ = 0.25 and σ = 1 (the exact g and CERTIFY at n = 1,000), computed
    here independently: no claim about the trained checkerboard written in advance."""
    at = _page()
    at.radio(key="pg_step").set_value("1 · More noise").run()
    assert not at.exception
    text = at.info[0].value
    model = pg.base_classifier("checkerboard")
    point = (0.75, 0.75)
    f = int(model(torch.tensor(point).reshape(1, 1, 1, 2)).argmax(1))
    assert f"f says **class {f}**" in text, text
    for sigma in (0.25, 1.0):
        probs = pg.exact_probabilities(model, point, sigma)
        g = int(np.argmax(probs))
        cert = pg.certify_point(model, point, sigma, n=1000, alpha=0.001, seed=0)
        said = f"At σ = {sigma:g} the exact g says **class {g}** ({'f' if g == f else 'no longer f'}'s class; " \
               f"P = {probs[g]:.4f}"
        assert said in text, (said, text)
        if cert.prediction < 0:
            assert f"P = {probs[g]:.4f} under the noise), and CERTIFY with n = 1,000 at α = 0.001 **abstains** " \
                   f"(its pA lower bound {floor_str(cert.p_lower)} is not above ½)" in text, text
        else:
            assert f"certifies **class {cert.prediction}** within radius {floor_str(cert.radius)}" in text, text
    # The page's own metrics at σ = 0.25 (where the step starts) agree with the text.
    cert = pg.certify_point(model, point, 0.25, n=1000, alpha=0.001, seed=0)
    assert _metrics(at)["certified radius"] == floor_str(cert.radius) and f"within radius {floor_str(cert.radius)}" \
        in text


def test_each_guided_step_brings_its_own_n():
    at = _page()
    at.radio(key="pg_step").set_value("3 · The bound is tight").run()
    assert at.select_slider(key="pg_n").value == 100_000
    at.radio(key="pg_step").set_value("1 · More noise").run()
    assert at.select_slider(key="pg_n").value == 1_000  # not step 3's 100,000
    assert "CERTIFY with n = 1,000" in at.info[0].value
    at.select_slider(key="pg_n").set_value(30_000).run()
    assert "CERTIFY with n = 30,000" in at.info[0].value  # the text follows the n on screen
    at.radio(key="pg_step").set_value("2 · More samples").run()
    assert at.select_slider(key="pg_n").value == 100
    at.radio(key="pg_step").set_value("4 · The certificate holds").run()
    assert at.select_slider(key="pg_n").value == 1_000
    at.select_slider(key="pg_n").set_value(3_000).run()
    at.radio(key="pg_step").set_value("Free play").run()
    assert at.select_slider(key="pg_n").value == 3_000  # free play keeps what is on screen


def test_the_attack_on_g_draws_its_path_and_lands_beyond_the_certified_ball_near_the_exact_boundary():
    """On the half-plane (step 3) g's boundary is exactly known: the attack's point lies beyond the certified radius
    and within 5 % of the exact distance, and its path is drawn on the smoothed panel."""
    at = _page()
    at.radio(key="pg_step").set_value("3 · The bound is tight").run()
    at.checkbox(key="pg_attack").check().run()
    assert not at.exception
    m = _metrics(at)
    exact, certified = float(m["distance to boundary"]), float(m["certified radius"])
    names = [t.get("name", "") for t in _figure(at)["data"]]
    assert "the attack's path (PGD on soft g)" in names
    [found] = [n for n in names if n.startswith("adversarial point found: ")]
    distance = float(found.rsplit(": ", 1)[1].split()[0])
    assert certified <= distance <= exact * 1.05
    caption = next(c.value for c in at.caption if c.value.startswith("Attack: g changes"))
    assert "the exact distance" in caption and "soundness alarm" not in caption


def test_step_five_draws_the_laplace_diamond_inside_the_exact_diamond_and_uniform_offers_a_square():
    """Issue 30: the noise and the norm of the picture; the certified region is drawn in the norm's shape, with the
    exact region of the half-plane (the largest such shape inside g's half-plane) beside it."""
    at = _page()
    at.radio(key="pg_step").set_value("5 · The shape of the noise").run()
    assert not at.exception
    assert (at.selectbox(key="pg_noise").value, at.selectbox(key="pg_norm").value) == ("laplace", "l1")
    assert at.selectbox(key="pg_norm").options == ["ℓ1 (diamond)"]  # Laplace certifies ℓ1 only
    cert = pg.certify_point(pg.base_classifier("half-plane"), (0.9, 0.3), 0.5, n=100_000, alpha=0.001, seed=0,
                            noise="laplace", norm="l1")
    m = _metrics(at)
    (_, _), exact = pg.nearest_boundary(pg.base_classifier("half-plane"), (0.9, 0.3), None, norm="l1")
    assert m["certified radius"] == floor_str(cert.radius) and m["distance to boundary"] == floor_str(exact)
    assert m["certificate holds"] == "yes" and float(m["certified radius"]) < exact
    traces = {t.get("name", "").split(":")[0]: t for t in _figure(at)["data"]}
    diamond = traces["certified diamond (CERTIFY, Clopper–Pearson)"]

    def values(v) -> np.ndarray:  # plotly writes arrays as typed base64 ({"dtype", "bdata"}) or as lists
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]) if isinstance(v, dict) else np.array(v)

    x, y = values(diamond["x"]), values(diamond["y"])
    assert len(x) == 5  # four corners, closed
    assert np.allclose(np.abs(x - 0.9) + np.abs(y - 0.3), float(diamond["name"].split(": ")[1]), atol=1e-3)
    assert any(t.get("name", "").startswith("exact: the largest diamond inside g's region") for t in traces.values())
    assert "x + ε (Laplace noise samples)" in traces
    assert any("ℓ1" in c.value for c in at.caption)
    at.selectbox(key="pg_noise").set_value("uniform").run()
    assert at.selectbox(key="pg_norm").options == ["ℓ1 (diamond)", "ℓ∞ (square)"]
    at.selectbox(key="pg_norm").set_value("linf").run()
    names = [t.get("name", "") for t in _figure(at)["data"]]
    assert any(n.startswith("certified square") for n in names) and not at.exception
    at.selectbox(key="pg_noise").set_value("gaussian").run()
    assert at.selectbox(key="pg_norm").options == ["ℓ2 (ball)", "ℓ1 (diamond)", "ℓ∞ (square)"]
    assert at.selectbox(key="pg_norm").value == "linf" and not at.exception  # ℓ∞ is still certified: kept


def test_the_half_plane_says_its_exact_region_in_each_norm_and_a_switched_step_says_so():
    """The exact certified radius |w·x − b| / ‖w‖_q (q the dual norm) in numbers, equal to rs_core's, with the
    certified radius below it; a Gaussian step whose noise the user switched says the picture shows another noise."""
    at = _page()
    at.radio(key="pg_step").set_value("3 · The bound is tight").run()
    clf, point = pg.base_classifier("half-plane"), (0.9, 0.3)
    for noise, norm in (("gaussian", "l2"), ("uniform", "linf")):
        if noise != "gaussian":
            at.selectbox(key="pg_noise").set_value(noise).run()
            at.selectbox(key="pg_norm").set_value(norm).run()
        assert not at.exception
        cert = pg.certify_point(clf, point, 0.5, n=100_000, alpha=0.001, seed=0, noise=noise, norm=norm)
        (_, _), exact = pg.nearest_boundary(clf, point, None, norm=norm)
        caption = next(c.value for c in at.caption if c.value.startswith("Exact for the half-plane"))
        assert f"= {floor_str(exact)}." in caption and f"radius {floor_str(cert.radius)} ≤" in caption
        assert f"/ {pg.dual_norm(clf.w.numpy(), norm):.4f}" in caption and cert.radius <= exact
        assert _metrics(at)["certified radius"] == floor_str(cert.radius)
    assert "‖w‖₁" in caption  # ℓ∞ pairs with the ℓ1 norm of w
    assert "the picture now shows uniform noise and ℓ∞ squares" in at.info[0].value
