"""pages/Bounds.py with Streamlit's AppTest, through the app's entrypoint: values come from rs_core."""

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from rs_core import cohen_radius, lecuyer_radius, li_radius, max_certifiable_radius
from rs_core.rounding import floor_str

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGE = "pages/Bounds.py"  # relative to the entrypoint's folder


def _page(session_state: dict | None = None) -> AppTest:
    """The app, switched to the Bounds page (the sidebar is drawn by app.py on every run)."""
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (session_state or {}).items():
        at.session_state[key] = value
    at.run()
    return at.switch_page(PAGE).run()


def _run(**values) -> AppTest:
    at = _page()
    for key, value in values.items():
        widget = at.radio(key=key) if key == "bounds_mode" else (
            at.multiselect(key=key) if key == "bounds_alphas" else at.number_input(key=key))
        widget.set_value(value)
    return at.run()


def test_bounds_page_reference_values_at_sigma_one():
    at = _run(sigma=1.0)
    assert not at.exception
    assert at.session_state["settings"].sigma == 1.0
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


def _nines(p):
    return -np.log10(1.0 - np.asarray(p, dtype=float))


def _array(value) -> np.ndarray:
    """A figure's array as Plotly's JSON holds it: a list, or ``{"dtype": …, "bdata": base64}`` for numpy arrays."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    return np.asarray(value, dtype=float)


def test_bounds_page_marks_the_last_certificate():
    last = {"p_lower": 0.99, "radius": float(cohen_radius(0.99, 0.01, 0.5)), "sigma": 0.5, "n": 10_000,
            "alpha": 0.001, "class": "7"}
    at = _page({"last_certificate": last})
    at.number_input(key="sigma").set_value(0.5).run()
    assert not at.exception
    # The float 0.99 is 0.98999…, printed rounded down.
    assert any("◆ marks your last certificate: class 7, pA ≥ 0.9899" in m.value for m in at.markdown)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    marker = next(t for t in fig["data"] if t["name"].startswith("last certificate"))
    # The x axis is −log10(1 − pA); hover and tick labels still say pA.
    assert np.allclose(marker["x"], [_nines(0.99)] * 3)
    assert marker["y"] == [float(f(0.99, 0.01, 0.5)) for f in (cohen_radius, li_radius, lecuyer_radius)]
    fig2 = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert any(t["name"] == "last certificate" and t["x"] == [10_000] for t in fig2["data"])


def test_radius_against_pa_axis_is_spaced_by_nines():
    """0.9, 0.99, 0.999 … are evenly spaced (−log10(1 − pA)), so certificates near pA = 1 spread out instead of
    piling into the last pixel of a linear axis."""
    at = _run(sigma=0.5)
    assert not at.exception
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    xaxis = fig["layout"]["xaxis"]
    ticks = dict(zip(xaxis["ticktext"], xaxis["tickvals"], strict=True))
    for label in ("0.9", "0.99", "0.999"):
        assert label in ticks, xaxis["ticktext"]
    assert np.allclose([ticks["0.9"], ticks["0.99"], ticks["0.999"]], [1.0, 2.0, 3.0])
    assert np.allclose(np.diff([ticks["0.9"], ticks["0.99"], ticks["0.999"]]), 1.0)  # evenly spaced
    assert np.isclose(ticks["0.5"], _nines(0.5))
    # The curves' x values are the same transform of pA (carried in customdata for the hover text).
    cohen = next(t for t in fig["data"] if t["name"].startswith("Cohen"))
    p_a = _array(cohen["customdata"])
    assert len(p_a) > 100 and p_a.max() > 0.9999
    assert np.allclose(_array(cohen["x"]), _nines(p_a))
    # Markers near pA → 1 spread out: 0.99 → 0.999 takes over a tenth of the axis (under 2% on a linear pA axis).
    span = xaxis["range"][1] - xaxis["range"][0]
    assert (_nines(0.999) - _nines(0.99)) / span > 0.1
    assert xaxis["range"][0] <= _nines(p_a.min()) and xaxis["range"][1] >= _nines(p_a.max())
    assert "−log10(1 − pA)" in fig["layout"]["xaxis"]["title"]["text"]
