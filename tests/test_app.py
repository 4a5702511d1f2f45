"""The home page, run with Streamlit's AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rs_core import cohen_radius, lecuyer_radius, li_radius, max_certifiable_radius
from rs_core.fmt import floor_str

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _run(**values):
    at = AppTest.from_file(APP, default_timeout=30).run()
    for key, value in values.items():
        at.number_input(key=key).set_value(value)
    return at.run()


def test_home_page_renders_and_computes_radii_with_rs_core():
    at = _run(p_a=0.99, p_b=0.01, sigma=0.5)
    assert not at.exception
    cells = at.table[0].value["certified radius"].tolist()
    assert cells == [floor_str(cohen_radius(0.99, 0.01, 0.5)), floor_str(li_radius(0.99, 0.01, 0.5)),
                     floor_str(lecuyer_radius(0.99, 0.01, 0.5))]
    assert cells[0] == "1.1631"  # 1.16317…, rounded down


def test_home_page_max_certifiable_radius():
    at = _run(n=1000, alpha=0.001, sigma=1.0)
    assert at.metric[0].value == floor_str(max_certifiable_radius(1000, 0.001, 1.0)) == "2.4632"  # 2.46329…, rounded down


def test_home_page_links_every_page():
    at = _run()
    # Streamlit names a page after its file without the number prefix: pages/2_Bounds.py → "Bounds".
    pages = sorted(p.stem.split("_", 1)[1] for p in (Path(APP).parent / "pages").glob("*.py"))
    assert len(pages) >= 2
    assert sorted(link.proto.page for link in at.get("page_link")) == pages


def test_home_page_rejects_probabilities_summing_above_one():
    at = _run(p_a=0.8, p_b=0.5)
    assert not at.exception
    assert "at most 1" in at.error[0].value
    assert len(at.table) == 0


@pytest.mark.parametrize("text", ["probability at least 1 − α", "Settings stay as you move between pages"])
def test_home_page_states_the_promise_and_how_to_use_it(text):
    at = _run()
    assert any(text in " ".join(m.value.split()) for m in at.markdown)


def test_sidebar_settings_persist_across_pages():
    at = AppTest.from_file(APP, default_timeout=60).run()
    model = next(o for o in at.selectbox(key="w.model").options if o.startswith("mnist · mnist_cnn · σ = 1.00"))
    at.selectbox(key="w.model").set_value(model).run()
    at.number_input(key="w.sigma").set_value(0.75)
    at.number_input(key="w.alpha").set_value(0.01)
    at.number_input(key="w.n_max").set_value(12_345)
    at.run()
    assert any("App. H.3" in w.value for w in at.sidebar.warning)
    for page in ["pages/2_Bounds.py", "pages/1_Certify.py", "pages/3_Certified_accuracy.py", "app.py"]:
        at.switch_page(page).run()
        assert not at.exception, page
        assert at.selectbox(key="w.model").value == model, page
        assert (at.number_input(key="w.sigma").value, at.number_input(key="w.alpha").value,
                at.number_input(key="w.n_max").value) == (0.75, 0.01, 12_345), page
    at.switch_page("pages/2_Bounds.py").run()
    assert "σ = 0.75" in at.markdown[0].value  # the Bounds page draws at the sidebar's σ
    assert at.table[0].value["Cohen"].tolist()[0] == floor_str(cohen_radius(0.6, 0.4, 0.75))
