"""The sidebar's σ box through the app's entrypoint with AppTest: an entry that is not a number is never reported as
a value the user did not type ("got 0")."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_no_sidebar_number_box_has_a_default_for_the_browser_to_put_in_place_of_text():
    """Streamlit's frontend commits ``entry ?? default`` when a number box holds no number (Chromium empties it on
    "abc"): with a default of 0 that read "got 0". No sidebar box may have one, so such an entry arrives as None."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    for key in ("sigma", "alpha", "n0", "n_max", "batch", "seed"):
        box = at.number_input(key=key)
        assert not box.proto.HasField("default"), (key, box.proto.default)
    assert at.number_input(key="sigma").value == at.session_state["settings"].train_sigma  # still filled in
    assert at.number_input(key="n0").value == 100 and isinstance(at.number_input(key="seed").value, int)


def test_an_entry_that_is_not_a_number_names_sigma_and_never_claims_a_value():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.number_input(key="sigma").set_value(None).run()  # what the frontend sends for "abc" (or an emptied box)
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert errors and errors[0].startswith("σ is empty"), errors
    assert "text that is not one is dropped" in errors[0] and "σ must be > 0 and ≤ 10" in errors[0]
    assert not any("got" in e for e in errors), errors
    assert "sigma" in at.session_state["settings"].problems
    at.number_input(key="sigma").set_value(0.5).run()
    assert not at.sidebar.error and at.session_state["settings"].sigma == 0.5
    at.number_input(key="n0").set_value(None).run()
    errors = [e.value for e in at.sidebar.error]
    assert errors and errors[0].startswith("n0") and "empty" in errors[0] and "got" not in errors[0], errors
