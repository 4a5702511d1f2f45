"""Certified accuracy against radius: from the logs shipped with our checkpoints, uploaded logs, or computed here."""

import streamlit as st

from rs_core.models.shipped import shipped_logs
from widgets import accuracy, entry

settings = entry.settings()
st.title("Certified accuracy")
st.markdown("Certified accuracy at radius r is the fraction of test images that CERTIFY classifies correctly "
            "with radius ≥ r; abstentions count as wrong. Dotted curves: the lower bound on the *true* certified "
            "accuracy that holds with probability ≥ 1 − ρ over CERTIFY's sampling (Cohen et al. App. D). Dashed "
            "curves: empirical robust accuracy from an attack on the smoothed classifier, where an attack log is "
            "there.")

available = {log.id: log for log in shipped_logs()}
chosen = accuracy.shipped_picker(available, settings)
attacks = accuracy.attack_curves(chosen, available)
uploads, upload_dataset = accuracy.upload_picker()
running = st.session_state.get(accuracy.JOB_KEY) is not None
with st.expander("Compute certified accuracy here, on k test images", expanded=running):
    computed = accuracy.compute_here(settings)

uploaded, new_upload = accuracy.uploaded(uploads, upload_dataset)
logs = [*st.session_state.get(accuracy.LIVE_LOGS, []), *accuracy.shipped(chosen, available), *uploaded]
radii, alpha, rho = accuracy.options()
# A curve just computed, or a file just uploaded, is shown at once, whichever data set the page showed before.
event = (computed.dataset or accuracy.NOT_STATED) if computed is not None else \
    (upload_dataset or accuracy.NOT_STATED) if new_upload else None
accuracy.results(logs, radii, alpha, rho, settings.dataset, event, attacks)
