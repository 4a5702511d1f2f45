"""pages/2_Bounds.py with Streamlit's AppTest: values come from rs_core."""

import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from rs_core import cohen_radius, lecuyer_radius, li_radius, max_certifiable_radius
from rs_core.fmt import floor_str

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "2_Bounds.py")


def _run(**values) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    for key, value in values.items():
        widget = at.radio(key=key) if key == "bounds_mode" else (
            at.multiselect(key=key) if key == "bounds_alphas" else at.number_input(key="w.sigma" if key == "sigma" else key))
        widget.set_value(value)
    return at.run()


def test_bounds_page_reference_values_at_sigma_one():
    at = _run(sigma=1.0)
    assert not at.exception
    table = at.table[0].value
    assert table["Cohen"].tolist() == ["0.2533", "1.2815", "2.3263", "3.0902"]  # Φ⁻¹(0.9) = 1.28155…: rounded down
    assert table["Li"].tolist() == ["0.2022", "1.0319", "1.9080", "2.5757"]
    assert table["Lecuyer"].tolist() == ["0.0592", "0.3902", "0.5548", "0.5689"]  # rounded down
    assert len(at.get("plotly_chart")) == 2


def test_bounds_page_fixed_pb_and_sigma():
    at = _run(sigma=0.5, bounds_mode="fixed pB")
    at.number_input(key="bounds_pb").set_value(0.05)
    at.run()
    assert not at.exception
    table = at.table[0].value
    p = np.array([0.6, 0.9])
    assert table["pA"].tolist()[:2] == ["0.6", "0.9"] and table["pB"].tolist()[0] == "0.05"
    assert table["Cohen"].tolist()[:2] == [floor_str(r) for r in cohen_radius(p, 0.05, 0.5)]
    assert table["Li"].tolist()[:2] == [floor_str(r) for r in li_radius(p, 0.05, 0.5)]
    assert table["Lecuyer"].tolist()[:2] == [floor_str(r) for r in lecuyer_radius(p, 0.05, 0.5)]


def test_bounds_page_ceiling_table():
    at = _run(sigma=1.0, bounds_alphas=[0.001])
    ceiling = at.table[1].value
    assert ceiling["α = 0.001"].tolist() == [floor_str(max_certifiable_radius(n, 0.001, 1.0))
                                             for n in [100, 1_000, 10_000, 100_000, 1_000_000]]
    assert ceiling["α = 0.001"].tolist()[:4] == ["1.5004", "2.4632", "3.1985", "3.8114"]  # rounded down, never up
    assert any("Theorem 2" in m.value for m in at.markdown)


def test_bounds_page_marks_the_last_certificate():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["cfg.last_certificate"] = {"p_lower": 0.99, "radius": float(cohen_radius(0.99, 0.01, 0.5)),
                                                "sigma": 0.5, "n": 10_000, "alpha": 0.001, "class": "7"}
    at.run()
    at.number_input(key="w.sigma").set_value(0.5).run()
    assert not at.exception
    assert "◆ marks your last certificate: class 7, pA ≥ 0.9899"  # the float 0.99 is 0.98999…, printed rounded down in at.markdown[0].value
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    marker = next(t for t in fig["data"] if t["name"].startswith("last certificate"))
    assert marker["x"] == [0.99] * 3
    assert marker["y"] == [float(f(0.99, 0.01, 0.5)) for f in (cohen_radius, li_radius, lecuyer_radius)]
    fig2 = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert any(t["name"] == "last certificate" and t["x"] == [10_000] for t in fig2["data"])
