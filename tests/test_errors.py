"""widgets/errors.py: an unexpected error on a page becomes a plain message with an error id, its traceback goes to
the server's log, and Streamlit's own control flow (rerun, stop) passes through the guard."""

import logging
import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

import rs_core

ROOT = Path(__file__).resolve().parents[1]


def _error_id(text: str) -> str:
    found = re.search(r"error id \*\*([0-9a-f]{8})\*\*", text)
    assert found, text
    return found.group(1)


def _script_that_fails():
    from widgets import errors

    with errors.guard("the test page"):
        raise RuntimeError("/srv/rslab/secret/module.py: exploded")


def _script_that_reruns_inside_the_guard():
    import streamlit as st

    from widgets import errors

    with errors.guard("the test page"):
        if not st.session_state.get("reran"):
            st.session_state.reran = True
            st.rerun()
        st.write("after the rerun")
        st.stop()
    st.write("never drawn: st.stop passes through the guard")


def test_an_error_in_a_page_shows_an_id_and_no_traceback_and_logs_the_traceback(caplog):
    with caplog.at_level(logging.ERROR, logger="rs_lab"):
        at = AppTest.from_function(_script_that_fails).run()
    assert not at.exception  # Streamlit's own exception element (the traceback) is not drawn
    [message] = at.error
    assert "/srv/rslab" not in message.value and "Traceback" not in message.value and "exploded" not in message.value
    error_id = _error_id(message.value)
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info and record.exc_info[0] is RuntimeError  # the details are in the server's log, by the id
    assert "exploded" in record.getMessage()


def test_rerun_and_stop_pass_through_the_guard():
    at = AppTest.from_function(_script_that_reruns_inside_the_guard).run()
    assert not at.exception and not at.error
    assert [m.value for m in at.markdown] == ["after the rerun"]


def test_a_crashing_page_keeps_the_sidebar_and_says_which_page(monkeypatch):
    def boom(*args, **kwargs):
        raise ZeroDivisionError("in " + str(ROOT))

    monkeypatch.setattr(rs_core, "cohen_radius", boom)  # the Home page computes its table with it
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception
    [message] = at.error
    assert "the Home page" in message.value and str(ROOT) not in message.value
    _error_id(message.value)
    assert at.sidebar.number_input(key="sigma").value == 0.5  # the sidebar was drawn and keeps its settings


def test_error_ids_are_eight_hex_digits_and_differ():
    from widgets.errors import new_error_id

    ids = {new_error_id() for _ in range(200)}
    assert len(ids) == 200 and all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)


def test_the_servers_config_shows_no_error_details():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
