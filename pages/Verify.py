"""Verify a certificate: re-run a certificate JSON with the sidebar's model on its input and say whether it is
identical (the app's form of `python -m rs_core verify`)."""

import streamlit as st

from widgets import entry, live, verify

s = entry.settings()
st.title("Verify a certificate")
st.markdown("A certificate is a function of the model, the input, σ, n0, n, α, the seed and the device type — "
            "not of batch sizes, timing or other users. Upload one (the Certify page's download or "
            "`certify-image`'s JSON), choose the model it names in the sidebar and give it its input: RS Lab "
            "re-runs it and says whether the votes and the certificate are identical, or names the first "
            "difference and its likely cause.")
doc = verify.uploaded_document()
if doc is None:
    st.stop()
verify.summary(doc, s)
if s.loaded is None:
    st.info(s.why_not_ready or "Choose a model in the sidebar.")
    st.stop()
chosen = verify.choose_input(doc, s)
blocked = None if chosen is not None else "Give the input it certified first."
live.start_button("verify_start", blocked, lambda: verify.start(doc, chosen, s), label="Verify")

if st.session_state.get("verify_doc_seen") == doc:  # results for this certificate only, not an earlier upload
    differences = st.session_state.get("verify_precheck") or []
    run = st.session_state.get(verify.KEY)
    if differences:
        verify.show_differences(differences)
    elif run is not None and live.show(run, verify.KEY, lambda _snap: s.class_names):
        verify.result(doc, run)
