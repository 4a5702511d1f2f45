"""pages/Compare_sigma.py with Streamlit's AppTest, through the app's entrypoint: the radius-against-σ plot's axis
reads the σ values compared, and the outdated-result warning says what changed in words."""

from __future__ import annotations

import json
from pathlib import Path

from oracles import digit_png
from streamlit.testing.v1 import AppTest

from widgets import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/Compare_sigma.py"


def _finished_sweep(sigmas: str = "0.25, 0.5, 1") -> AppTest:
    """Compare σ with the digit uploaded, ``sigmas`` typed, and a finished best-σ run (small n: a page check)."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    at.number_input(key="n_max").set_value(300)
    at.number_input(key="batch").set_value(300)
    at.run()
    at.file_uploader(key="upload").set_value([("one.png", digit_png(), "image/png")]).run()
    at.text_input(key="sweep_sigmas").set_value(sigmas).run()
    assert at.radio(key="sweep_mode").value == "best"
    at.button(key="sweep_start").click().run()
    assert at.session_state["sweep_run"].job.wait(120)
    at.run()
    assert not at.exception, at.exception
    return at


def _sweep_figure(at: AppTest) -> dict:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(f for f in charts if "against σ" in f["layout"]["title"]["text"])


def test_the_sigma_axis_is_labelled_with_the_sigma_values_compared():
    at = _finished_sweep("0.25, 0.5, 1, 0.12")
    axis = _sweep_figure(at)["layout"]["xaxis"]
    # Log-scaled (σ spans a factor of 8), but each tick is one of the σ compared, written as typed: Plotly's own
    # minor log ticks would label σ = 0.5 "5".
    assert axis["type"] == "log"
    assert axis["tickvals"] == [0.12, 0.25, 0.5, 1.0]
    assert axis["ticktext"] == ["0.12", "0.25", "0.5", "1"]
    assert axis["title"]["text"] == "σ"


def test_sigma_axis_ticks_are_the_sigmas_sorted_and_written_as_typed():
    axis = figures.sigma_axis([1.0, 0.5, 0.25, 2.0, 0.5])
    assert axis["tickvals"] == [0.25, 0.5, 1.0, 2.0] and axis["ticktext"] == ["0.25", "0.5", "1", "2"]
    assert axis["tickmode"] == "array" and axis["type"] == "log"


def test_an_outdated_result_says_in_words_that_best_sigma_mode_was_switched_off():
    at = _finished_sweep()
    assert not at.warning
    at.radio(key="sweep_mode").set_value("each").run()
    assert not at.exception
    warned = [w.value for w in at.warning if "earlier choice" in w.value]
    assert warned and "best-σ mode (was on, now off)" in warned[0], warned
    assert "True" not in warned[0] and "False" not in warned[0]
    # A changed σ list reads as the lists, not as Python tuples.
    at.text_input(key="sweep_sigmas").set_value("0.25, 0.5").run()
    warned = [w.value for w in at.warning if "earlier choice" in w.value]
    assert "σ list ({0.25, 0.5, 1} → {0.25, 0.5})" in warned[0], warned
