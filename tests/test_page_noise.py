"""The sidebar's noise and norm (issue 30) through the entrypoint with AppTest: the noise follows the model, the
norms offered are the noise's, a link carries both (an impossible pair is shown and nothing runs), the Certify page
certifies with them and says which norm its radius is in, and the pages that are Gaussian ℓ2 say so."""

from __future__ import annotations

import json
import math

import numpy as np
from streamlit.testing.v1 import AppTest
from test_page_certify import APP, _digit_png, _finish, _page, _table, _upload

from rs_core import CertifyStream
from rs_core.data import load_image, prepare_input
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint
from rs_core.rounding import floor_str
from rs_core.smoothing.noises import get_noise

LAPLACE = "mnist/mnist_cnn/laplace_0.50"
UNIFORM = "mnist/mnist_cnn/uniform_0.50"


def test_the_noise_follows_the_model_and_offers_only_the_norms_it_certifies():
    at = _page(LAPLACE)
    assert at.selectbox(key="noise").value == "laplace" and at.selectbox(key="norm").options == ["ℓ1"]
    at.selectbox(key="model").set_value(UNIFORM).run()
    assert at.selectbox(key="noise").value == "uniform" and at.selectbox(key="norm").value == "l1"
    assert at.selectbox(key="norm").options == ["ℓ1", "ℓ∞"]
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_0.50").run()
    assert (at.selectbox(key="noise").value, at.selectbox(key="norm").value) == ("gaussian", "l2")
    assert "noise" not in at.query_params  # Gaussian ℓ2 links stay what they were before noises existed
    # Another noise than the model's is used, with a warning (never silently switched back).
    at.selectbox(key="noise").set_value("laplace").run()
    assert at.selectbox(key="norm").value == "l1" and not at.exception
    assert any("trained under Gaussian noise" in w.value for w in at.sidebar.warning)
    assert at.query_params["noise"] == "laplace" and at.query_params["norm"] == "l1"


def test_certify_with_laplace_noise_gives_the_laplace_l1_radius_and_says_so():
    at = _page(LAPLACE, n_max=2000, batch=1000, seed=3)
    at = _upload(at, "one.png", _digit_png())
    at.button(key="start").click().run()
    run = _finish(at)
    cert = run.job.certificate
    assert (cert.noise, cert.norm) == ("laplace", "l1") and cert.prediction == 1
    loaded = load_checkpoint(CHECKPOINTS_DIR / LAPLACE / "checkpoint.pth.tar")
    x = prepare_input(load_image(_digit_png()), loaded.input_shape, invert=None, frame_digit=True)
    ref = CertifyStream(loaded.model, x, 0.5, n0=100, n_max=2000, alpha=0.001, batch_size=1000, seed=3,
                        noise="laplace", norm="l1").run()
    np.testing.assert_array_equal(cert.counts, ref.counts)
    expected = get_noise("laplace", 0.5).radius(cert.p_lower, "l1", complement=1 - cert.p_lower)
    assert math.isclose(cert.radius, expected, rel_tol=1e-9) and cert.radius == ref.radius
    assert any(f"within ℓ1 radius **{floor_str(cert.radius)}**" in s.value for s in at.success)
    rows = _table(at, 0)
    assert rows["noise"] == "Laplace" and rows["radius (ℓ1)"] == floor_str(cert.radius)
    # Another noise chosen after the run: the result says it is for the earlier one.
    at.selectbox(key="noise").set_value("uniform").run()
    assert any("noise (laplace → uniform)" in w.value for w in at.warning), [w.value for w in at.warning]
    at.selectbox(key="noise").set_value("laplace").run()
    # The ℓ2 attack does not pretend to test an ℓ1 certificate.
    assert any("Not available for this certificate (laplace noise, l1 radius)" in i.value for i in at.info)
    assert at.button(key="attack_start").disabled if "attack_start" in [b.key for b in at.button] else True


def test_a_link_with_uniform_linf_is_read_and_an_impossible_pair_is_shown_and_blocks():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"model": UNIFORM, "noise": "uniform", "norm": "linf"})
    at.run()
    at.switch_page("pages/Certify.py").run()
    assert (at.selectbox(key="noise").value, at.selectbox(key="norm").value) == ("uniform", "linf")
    assert not at.sidebar.error
    bad = AppTest.from_file(APP, default_timeout=60)
    bad.query_params.update({"model": LAPLACE, "noise": "laplace", "norm": "l2"})
    bad.run()
    bad.switch_page("pages/Certify.py").run()
    bad.radio(key="source").set_value("example").run()
    assert any("norm in the link: laplace noise certifies l1, not 'l2'" in e.value for e in bad.sidebar.error)
    assert bad.button(key="start").disabled is True
    assert bad.query_params["norm"] == "l2"  # the link still shows what it asked for
    bad.selectbox(key="norm").set_value("l1").run()  # choosing a norm here settles it
    assert not bad.sidebar.error and bad.button(key="start").disabled is False


def _link(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.run()
    return at


def test_a_link_says_exactly_what_is_on_screen_and_gives_way_to_another_model():
    # Gaussian ℓ2 on a Laplace model is not the model's usual pair: the link must say so, or it would open as Laplace.
    at = _page(LAPLACE)
    at.selectbox(key="noise").set_value("gaussian").run()
    assert at.selectbox(key="norm").value == "l1"  # the threat model's norm stays while the noise changes
    at.selectbox(key="norm").set_value("l2").run()
    assert (at.query_params["noise"], at.query_params["norm"]) == ("gaussian", "l2")
    again = _link({"model": LAPLACE, "noise": "gaussian", "norm": "l2"})
    assert (again.selectbox(key="noise").value, again.selectbox(key="norm").value) == ("gaussian", "l2")
    assert not again.sidebar.error
    # A link with a norm only: the norm of the model's noise.
    only = _link({"model": UNIFORM, "norm": "linf"})
    assert (only.selectbox(key="noise").value, only.selectbox(key="norm").value) == ("uniform", "linf")
    # Another model chosen after a link: its noise replaces the link's, in the widgets and in the link.
    linked = _link({"model": LAPLACE, "noise": "uniform", "norm": "linf"})
    assert (linked.selectbox(key="noise").value, linked.selectbox(key="norm").value) == ("uniform", "linf")
    linked.selectbox(key="model").set_value("mnist/mnist_cnn/noise_0.50").run()
    assert (linked.selectbox(key="noise").value, linked.selectbox(key="norm").value) == ("gaussian", "l2")
    assert "noise" not in linked.query_params and "norm" not in linked.query_params
    # An impossible pair, then another model: the problem goes with the link it came from.
    bad = _link({"model": LAPLACE, "noise": "laplace", "norm": "linf"})
    assert bad.sidebar.error
    bad.selectbox(key="model").set_value(UNIFORM).run()
    assert not bad.sidebar.error and bad.selectbox(key="noise").value == "uniform"


def test_gaussian_only_pages_say_so_when_another_noise_is_chosen():
    at = _page(LAPLACE)
    for page in ("pages/Compare_sigma.py", "pages/Dual_RS.py"):
        at.switch_page(page).run()
        assert any("smooths with Gaussian noise and certifies ℓ2 radii" in i.value for i in at.info), page
    at.switch_page("pages/Certified_accuracy.py").run()
    assert not at.exception
    shipped = at.multiselect(key="acc_shipped").value
    assert shipped == [f"{LAPLACE}/sigma_0.50"]  # the Laplace model's own ℓ1 log, no ℓ2 logs beside it


def test_verify_re_runs_a_laplace_certificate_with_its_own_noise_and_says_the_sidebar_differs(tmp_path):
    from test_page_verify import MODEL, _png, _verify

    from rs_core.cli.main import main as cli_main

    (tmp_path / "one.png").write_bytes(_png())
    assert cli_main(["certify-image", str(MODEL), str(tmp_path / "one.png"), "0.5", "--out", str(tmp_path / "c.json"),
                     "--N", "500", "--invert", "auto", "--frame-digit", "--seed", "2", "--device", "cpu",
                     "--noise", "laplace", "--norm", "l1", "--no-progress"]) == 0
    doc = json.loads((tmp_path / "c.json").read_text())
    assert (doc["certificate"]["noise"], doc["certificate"]["norm"]) == ("laplace", "l1")
    at = _verify(doc, _png())  # the sidebar shows the Gaussian model's Gaussian ℓ2
    assert any("Verify re-runs the certificate's own noise and norm" in i.value for i in at.info)
    run = at.session_state["verify_run"]
    assert (run.job.certificate.noise, run.job.certificate.norm) == ("laplace", "l1")
    assert any(m.value.startswith("**Identical.**") and "ℓ1 radius" in m.value for m in at.success)
