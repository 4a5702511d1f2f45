"""The entrypoint (st.navigation, the sidebar drawn once, the link) and the home page, with Streamlit's AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rs_core import cohen_radius, lecuyer_radius, li_radius, max_certifiable_radius
from rs_core.models.shipped import default_model
from rs_core.rounding import floor_str

DEFAULT_MODEL = default_model().id  # MNIST's σ = 0.5 model marked "default" in checkpoints/index.json

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = ["pages/Home.py", "pages/Certify.py", "pages/Compare_sigma.py", "pages/Bounds.py",
         "pages/Certified_accuracy.py", "pages/Dual_RS.py", "pages/Playground.py", "pages/Verify.py"]


def _run(**values):
    at = AppTest.from_file(APP, default_timeout=30).run()
    for key, value in values.items():
        at.number_input(key=key).set_value(value)
    return at.run()


def test_home_page_renders_and_computes_radii_at_the_sidebars_sigma():
    at = _run(p_a=0.99, p_b=0.01, sigma=0.5)
    assert not at.exception
    cells = at.table[0].value["certified radius"].tolist()
    assert cells == [floor_str(cohen_radius(0.99, 0.01, 0.5)), floor_str(li_radius(0.99, 0.01, 0.5)),
                     floor_str(lecuyer_radius(0.99, 0.01, 0.5))]
    assert cells[0] == "1.1631"  # 1.16317…, rounded down
    # One σ box in the whole app: the sidebar's.
    assert [n.label for n in at.number_input if "σ" in n.label] == ["σ (noise level)"]


def test_home_page_max_certifiable_radius_uses_the_sidebars_n_and_alpha():
    at = _run(n_max=1000, alpha=0.001, sigma=1.0)
    assert at.metric[0].value == floor_str(max_certifiable_radius(1000, 0.001, 1.0)) == "2.4632"  # 2.46329…, rounded down


def test_home_page_links_every_page_and_the_navigation_names_them():
    at = _run()
    assert sorted(link.proto.page for link in at.get("page_link")) == sorted(
        ["Certify", "Compare_sigma", "Bounds", "Certified_accuracy", "Dual_RS", "Playground"])  # the url paths app.py names
    files = sorted(p.name for p in (ROOT / "pages").glob("*.py"))
    assert files == sorted(p.split("/")[1] for p in PAGES), "every page file is in the navigation"


def test_every_url_path_is_the_one_the_pages_folder_mode_derives_from_the_file_name():
    """A fresh server runs a page file alone under the url path Streamlit derives from its name (before any session
    ran st.navigation); the navigation's url path must be the same, so a link finds its page either way."""
    from streamlit.source_util import page_icon_and_name

    from widgets import nav

    assert [file for file, _, _ in nav.PAGES] == PAGES
    for file, _, url in nav.PAGES[1:]:  # Home is the default page: its url path is ""
        assert page_icon_and_name(ROOT / file)[1] == url, file
    assert [url for _, _, url in nav.PAGES[1:]] == [
        "Certify", "Compare_sigma", "Bounds", "Certified_accuracy", "Dual_RS", "Playground", "Verify"], \
        "old links keep working"


def test_home_page_rejects_probabilities_summing_above_one():
    at = _run(p_a=0.8, p_b=0.5)
    assert not at.exception
    assert "at most 1" in at.error[0].value
    assert len(at.table) == 0


@pytest.mark.parametrize("text", ["probability at least 1 − α", "Settings stay as you move between pages",
                                  "a copied link opens RS Lab with the same settings"])
def test_home_page_states_the_promise_and_how_to_use_it(text):
    at = _run()
    assert any(text in " ".join(m.value.split()) for m in at.markdown)


def test_every_page_runs_through_the_entrypoint():
    at = AppTest.from_file(APP, default_timeout=60).run()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert at.selectbox(key="model").value == DEFAULT_MODEL, page  # the sidebar is there


def test_sidebar_settings_persist_across_pages():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_1.00").run()
    at.number_input(key="sigma").set_value(0.75)
    at.number_input(key="alpha").set_value(0.01)
    at.number_input(key="n_max").set_value(12_345)
    at.run()
    assert any("App. H.3" in w.value for w in at.sidebar.warning)
    for page in ["pages/Bounds.py", "pages/Certify.py", "pages/Certified_accuracy.py", "pages/Home.py"]:
        at.switch_page(page).run()
        assert not at.exception, page
        assert at.selectbox(key="model").value == "mnist/mnist_cnn/noise_1.00", page
        assert (at.number_input(key="sigma").value, at.number_input(key="alpha").value,
                at.number_input(key="n_max").value) == (0.75, 0.01, 12_345), page
        s = at.session_state["settings"]
        assert (s.sigma, s.alpha, s.n_max, s.model_id) == (0.75, 0.01, 12_345, "mnist/mnist_cnn/noise_1.00")
    at.switch_page("pages/Bounds.py").run()
    assert "σ = 0.75" in at.markdown[0].value  # the Bounds page draws at the sidebar's σ
    assert at.table[0].value["Cohen"].tolist()[0] == floor_str(cohen_radius(0.6, 0.4, 0.75))


@pytest.mark.parametrize("key, value, words", [
    ("sigma", 0.0, "σ must be > 0"), ("sigma", 11.0, "σ must be > 0 and ≤ 10"), ("alpha", 0.7, "α must be"),
    ("n0", 0, "n0 must be"), ("n_max", -5, "n max must be"), ("batch", 0, "batch size must be"),
    ("seed", -1, "seed must be")])
def test_an_invalid_setting_stays_on_screen_with_its_reason_and_start_is_disabled(key, value, words):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/Certify.py").run()
    at.radio(key="source").set_value("example").run()
    assert at.button(key="start").disabled is False
    at.number_input(key=key).set_value(value).run()
    assert at.number_input(key=key).value == value, "never clamped or replaced"
    assert any(words in e.value for e in at.sidebar.error), [e.value for e in at.sidebar.error]
    assert at.button(key="start").disabled is True
    assert any("Start is disabled" in c.value and words in c.value for c in at.caption)
    assert at.query_params[key] == (str(float(value)) if key in ("sigma", "alpha") else str(value))
    for page in ("pages/Compare_sigma.py",):
        at.switch_page(page).run()
        assert at.button(key="sweep_start").disabled is True
    at.switch_page("pages/Dual_RS.py").run()  # σ is the sidebar's one setting Dual RS does not use
    assert at.button(key="dual_start").disabled is (key != "sigma")


def test_a_link_restores_the_settings_and_the_test_image():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"model": "mnist/mnist_cnn/noise_1.00", "sigma": "0.8", "alpha": "0.01", "n0": "50",
                            "n_max": "2000", "batch": "500", "seed": "42", "source": "example", "example": "rocket"})
    at.run()
    at.switch_page("pages/Certify.py").run()
    assert not at.exception
    s = at.session_state["settings"]
    assert (s.model_id, s.sigma, s.alpha, s.n0, s.n_max, s.batch_size, s.seed) == \
        ("mnist/mnist_cnn/noise_1.00", 0.8, 0.01, 50, 2000, 500, 42), "the link's σ wins over the model's training σ"
    assert at.radio(key="source").value == "example" and at.selectbox(key="example").value == "rocket"
    # … and the page writes the same link back.
    q = dict(at.query_params.items())
    assert {k: q[k] for k in ("model", "sigma", "n0", "seed", "source", "example")} == {
        "model": "mnist/mnist_cnn/noise_1.00", "sigma": "0.8", "n0": "50", "seed": "42", "source": "example",
        "example": "rocket"}


def test_a_bad_link_is_reported_and_its_invalid_numbers_are_shown_not_replaced():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"model": "../../etc/passwd", "sigma": "-1", "n0": "many", "colour": "red"})
    at.run()
    assert not at.exception
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert "not a shipped model" in warning and "n0 in the link: not a whole number" in warning
    assert "colour in the link: not a setting" in warning
    assert at.selectbox(key="model").value == DEFAULT_MODEL  # the default, and the warning says so
    assert at.number_input(key="sigma").value == -1.0
    assert at.session_state["settings"].problems["sigma"].startswith("σ must be > 0")


def test_a_new_link_in_a_running_session_is_read_but_the_apps_own_link_is_not_reread():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.number_input(key="sigma").set_value(0.3).run()
    at.run()
    assert at.session_state["settings"].sigma == 0.3  # its own link (sigma=0.3) changes nothing
    at.query_params["sigma"] = "0.7"  # the user pastes another link into the tab
    at.query_params["seed"] = "9"
    at.run()
    s = at.session_state["settings"]
    assert (s.sigma, s.seed) == (0.7, 9)


def test_an_older_address_of_this_session_arriving_late_does_not_undo_edits():
    """Under load a run can be interrupted by the user's next edit before its address reaches the browser, whose
    next rerun then carries an older address this app wrote: the edits since must stay (CI saw n max and seed
    revert to the link's when they were typed quickly one after another)."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    stale = dict(at.query_params.items())  # the address after the first run (n_max=100000, seed=0)
    at.number_input(key="n_max").set_value(60_000).run()
    at.number_input(key="seed").set_value(3).run()
    at.query_params.clear()
    at.query_params.update(stale)  # the browser still shows the first address and sends it with the next rerun
    at.run()
    s = at.session_state["settings"]
    assert (s.n_max, s.seed) == (60_000, 3)
    assert at.query_params["n_max"] == "60000" and at.query_params["seed"] == "3"


@pytest.mark.parametrize("page", PAGES[1:])
def test_a_page_run_without_the_entrypoint_draws_the_sidebar_itself(page):
    """What a server does with a link straight to a page before its first st.navigation: run the file alone."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="model").value == DEFAULT_MODEL
    assert at.session_state["settings"].sigma == 0.5


def test_home_page_shows_both_ceilings_and_says_which_bound_each_is():
    """Issue 27 item 5: one story for the largest radius — Clopper–Pearson at a fixed n (the CLI) and the anytime
    bound (the Certify page), side by side, with why they differ."""
    at = _run(n_max=100_000, alpha=0.001, sigma=0.5)
    assert not at.exception
    assert [(m.label, m.value) for m in at.metric] == [
        ("Clopper–Pearson, n fixed in advance (CLI, Cohen et al.)", "1.9057"),
        ("anytime-valid, stop whenever you like (Certify page)", "1.8868")]
    text = " ".join(" ".join(c.value.split()) for c in at.caption)
    assert "valid only for a sample size fixed before sampling" in text
    assert "stays valid however the sampling is stopped" in text and "not directly comparable with CLI logs" in text
