"""pages/Bounds.py with Streamlit's AppTest, through the app's entrypoint: values come from rs_core."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rs_core import cohen_radius, lecuyer_radius, li_radius, max_certifiable_radius
from rs_core.rounding import floor_str
from rs_core.smoothing.bounds import largest_radius, radii_from_counts
from widgets.counts import ceil_str, parse_counts

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
    assert len(at.get("plotly_chart")) == 4  # the three bounds, the ceilings, each noise's ℓ1 and ℓ∞ radii


def test_each_noise_radius_against_pa_is_the_noises_own():
    """Issue 30: Gaussian, Laplace and uniform radii at the same σ (the standard deviation), from
    rs_core.smoothing.noises, at the sidebar model's dimension (MNIST: 784)."""
    from rs_core.smoothing.noises import get_noise

    at = _run(sigma=0.5)
    assert not at.exception
    table = at.table[2].value
    p = np.array([0.6, 0.9, 0.99, 0.999])
    assert table["pA"].tolist() == ["0.6", "0.9", "0.99", "0.999"]
    for column, noise, norm in (("Laplace, ℓ1", "laplace", "l1"), ("uniform, ℓ1", "uniform", "l1"),
                                ("uniform, ℓ∞", "uniform", "linf"),
                                ("Gaussian, ℓ∞ (derived: ℓ2 / √d)", "gaussian", "linf")):
        assert table[column].tolist() == [floor_str(float(r)) for r in get_noise(noise, 0.5).radius(p, norm, 784)]
    assert table["Gaussian, ℓ2 (= its derived ℓ1)"].tolist() == [floor_str(r) for r in cohen_radius(p, 1 - p, 0.5)]
    assert table["Laplace, ℓ1"].tolist()[3] == floor_str(-0.5 / np.sqrt(2) * np.log(2 * 0.001))  # −λ ln 2(1 − p)
    assert any("d = 784" in c.value for c in at.caption)


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
    ns = [100, 1_000, 10_000, 100_000, 1_000_000]
    cp = ceiling["α = 0.001, Clopper–Pearson"].tolist()
    assert cp == [floor_str(max_certifiable_radius(n, 0.001, 1.0)) for n in ns]
    assert cp[:4] == ["1.5004", "2.4632", "3.1985", "3.8114"]  # rounded down, never up
    anytime = ceiling["α = 0.001, anytime"].tolist()
    assert anytime == [floor_str(largest_radius(1.0, n, 0.001, "anytime-beta-mixture")) for n in ns]
    assert all(float(a) < float(c) for a, c in zip(anytime, cp, strict=True))
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
    assert any(t["name"] == "last certificate (anytime bound)" and t["x"] == [10_000] for t in fig2["data"])
    # The last certificate came from the Certify page: its bound is named.
    assert any("radius 1.1631 (anytime bound)" in m.value for m in at.markdown)


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



# --- issue 27 item 5: both ceilings, and item 7: counts in, the three radii out ---

def test_bounds_page_shows_both_ceilings_at_the_sidebars_settings():
    """σ = 0.5, n max = 100,000, α = 0.001: 1.9057 with Clopper–Pearson (CLI) and 1.8868 with the anytime bound (the
    Certify page), each named, and why they differ."""
    at = _run(sigma=0.5, n_max=100_000, alpha=0.001)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Clopper–Pearson, n fixed in advance (CLI, Cohen et al.)": "1.9057",
                       "anytime-valid, stop whenever you like (Certify page)": "1.8868"}
    text = " ".join(c.value for c in at.caption)
    assert "valid only for a sample size fixed before sampling" in text and "not directly comparable" in text
    fig2 = json.loads(at.get("plotly_chart")[1].proto.spec)
    names = [t["name"] for t in fig2["data"]]
    assert "α = 0.001, Clopper–Pearson" in names and "α = 0.001, anytime" in names


def _counts(n_a: str, n: str, alpha: str | None = None, n_b: str | None = None, sigma: float = 1.0) -> AppTest:
    at = _page()
    at.number_input(key="sigma").set_value(sigma)
    at.radio(key="bounds_view").set_value("your counts (nA of n)").run()
    at.text_input(key="bounds_n_a").set_value(n_a)
    at.text_input(key="bounds_n").set_value(n)
    if alpha is not None:
        at.text_input(key="bounds_count_alpha").set_value(alpha)
    if n_b is not None:
        at.checkbox(key="bounds_use_nb").check().run()
        at.text_input(key="bounds_n_b").set_value(n_b)
    return at.run()


CP_COLUMN = "Clopper–Pearson, n fixed in advance (CLI, Cohen et al.)"
ANYTIME_COLUMN = "anytime-valid, stop whenever you like (Certify page)"


def test_counts_mode_gives_the_three_radii_for_exactly_those_counts():
    at = _counts("990", "1,000", alpha="0.001")
    assert not at.exception and not at.error
    radii = at.table[0].value
    assert radii["bound"].tolist() == ["Cohen et al. (tight)", "Li et al. (Rényi)", "Lecuyer et al. (PixelDP)"]
    for column, bound in ((CP_COLUMN, "clopper-pearson"), (ANYTIME_COLUMN, "anytime-beta-mixture")):
        r = radii_from_counts(990, 1000, 0.001, 1.0, bound=bound)
        assert radii[column].tolist() == [floor_str(r.cohen), floor_str(r.li), floor_str(r.lecuyer)]
        assert at.table[1].value[column].tolist() == [floor_str(r.p_a_lower, 5), ceil_str(r.p_b_upper)]
    # Independently of rs_core: Clopper–Pearson's lower bound is the α-quantile of Beta(nA, n − nA + 1), and
    # Cohen's radius with pB = 1 − pA is σΦ⁻¹(pA) — 1.97800…, shown rounded down.
    from scipy import stats

    p = stats.beta.ppf(0.001, 990, 11)
    assert radii[CP_COLUMN][0] == floor_str(float(stats.norm.ppf(p))) == "1.9780"
    assert float(radii[ANYTIME_COLUMN][0]) < float(radii[CP_COLUMN][0])
    assert any("pA's lower bound at α = 0.001; pB = 1 − that bound" in c.value for c in at.caption)


def test_counts_mode_with_nb_splits_alpha_and_says_so():
    at = _counts("9,800", "10000", alpha="0.01", n_b="150", sigma=0.25)
    assert not at.exception and not at.error
    radii = at.table[0].value
    for column, bound in ((CP_COLUMN, "clopper-pearson"), (ANYTIME_COLUMN, "anytime-beta-mixture")):
        r = radii_from_counts(9800, 10000, 0.01, 0.25, n_b=150, bound=bound)
        assert r.alpha_a == r.alpha_b == 0.005
        assert radii[column].tolist() == [floor_str(r.cohen), floor_str(r.li), floor_str(r.lecuyer)]
    assert any("pA's lower bound at α/2 = 0.005 and pB's upper bound at α/2 = 0.005" in c.value for c in at.caption)
    assert any("nB = 150" in m.value for m in at.markdown)


def test_counts_mode_abstains_rather_than_printing_a_radius():
    at = _counts("520", "1000")
    assert not at.exception
    radii = at.table[0].value
    assert radii[CP_COLUMN].tolist() == radii[ANYTIME_COLUMN].tolist() == ["abstain"] * 3
    assert "Abstain" in at.warning[0].value


@pytest.mark.parametrize("entries, message", [
    ({"n_a": "1.5", "n": "100"}, "nA must be a whole number"),
    ({"n_a": "abc", "n": "100"}, "nA must be a whole number"),
    ({"n_a": "1,5", "n": "100"}, "nA must be a whole number"),  # a decimal comma is never read as 15
    ({"n_a": "", "n": "100"}, "nA is empty"),
    ({"n_a": "101", "n": "100"}, "nA must be at most n, got nA = 101 > n = 100"),
    ({"n_a": "0", "n": "0"}, "n must be at least 1"),
    ({"n_a": "5", "n": "-3"}, "n must be a whole number"),
    ({"n_a": "90", "n": "100", "n_b": "11"}, "nA + nB must be at most n"),
    ({"n_a": "90", "n": "100", "n_b": "2.0"}, "nB must be a whole number"),
    ({"n_a": "90", "n": "100", "alpha": "1"}, "α must be > 0 and < 1, got '1'"),
    ({"n_a": "90", "n": "100", "alpha": "0"}, "α must be > 0 and < 1"),
    ({"n_a": "90", "n": "100", "alpha": "0,01"}, "α must be a number > 0 and < 1"),
    ({"n_a": "90", "n": "100", "alpha": "nan"}, "α must be > 0 and < 1"),
])
def test_counts_mode_refuses_invalid_counts_by_name_and_computes_nothing(entries, message):
    at = _counts(**entries)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert len(at.table) == 1  # only the ceiling table: no radii for values the user did not type
    assert any("Nothing is computed until every entry is valid" in c.value for c in at.caption)


def test_counts_survive_a_visit_to_another_page():
    at = _counts("9,990", "10,000")
    at.switch_page("pages/Home.py").run()
    at.switch_page(PAGE).run()
    assert at.radio(key="bounds_view").value == "your counts (nA of n)"
    assert at.text_input(key="bounds_n_a").value == "9,990"
    assert at.table[0].value[CP_COLUMN][0] == floor_str(radii_from_counts(9990, 10000, 0.001, 1.0).cohen)


@pytest.mark.parametrize("texts, values, problems", [
    (("99,000", "100000", "0.001", None), {"n_a": 99000, "n": 100000, "alpha": 0.001}, set()),
    (("0", "1", "0.5", "0"), {"n_a": 0, "n": 1, "alpha": 0.5, "n_b": 0}, set()),
    ((" 7 ", "10", "1e-3", "3"), {"n_a": 7, "n": 10, "alpha": 0.001, "n_b": 3}, set()),
    (("7", "10", "0.001", "4"), {"n_a": 7, "n": 10, "alpha": 0.001}, {"n_b"}),
    (("10,00", "10", "0.001", None), {"n": 10, "alpha": 0.001}, {"n_a"}),
    (("5", "1" + "0" * 16, "0.001", None), {"n_a": 5, "alpha": 0.001}, {"n"}),
    (("٣", "10", "0.001", None), {"n": 10, "alpha": 0.001}, {"n_a"}),  # non-ASCII digits are refused
    (("3", "10", "inf", None), {"n_a": 3, "n": 10}, {"alpha"}),
])
def test_parse_counts(texts, values, problems):
    got, why = parse_counts(*texts)
    assert got == values and set(why) == problems


def test_ceil_str_rounds_upper_bounds_up():
    assert ceil_str(0.012341) == "0.01235" and ceil_str(0.25) == "0.25000" and ceil_str(0.0) == "0.00000"
    assert ceil_str(0.01234) == "0.01235"  # the float 0.01234 is 0.01234000000000000027…: rounded up


def _ceilings_script(used):
    from widgets import ceilings

    ceilings.show(0.5, 100_000, 0.001, used=used)


def test_ceilings_widget_says_which_bound_the_page_used():
    """What the Certify page calls with its certificate's bound; a bound it does not know is refused by name."""
    at = AppTest.from_function(_ceilings_script, args=("anytime-beta-mixture",), default_timeout=60).run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["1.9057", "1.8868"]
    assert at.caption[0].value.startswith("This page's radii use the **anytime** bound.")
    from widgets import ceilings

    with pytest.raises(ValueError, match="^used: must be None or one of"):
        ceilings.show(0.5, 100_000, 0.001, used="cp")
