"""RS Lab's entrypoint: `make run` (streamlit run app.py). Draws the sidebar once, then the chosen page."""

import streamlit as st

from widgets import entry, errors, nav, sidebar

st.set_page_config(page_title="RS Lab", layout="wide")  # no page_icon: emoji icons are fetched from a CDN
page = st.navigation(nav.pages())
with errors.guard("the sidebar") as drawn:
    sidebar.draw()
if drawn.failed:  # the pages read the sidebar's settings: none were stored
    st.stop()
with entry.entrypoint(), errors.guard(f"the {page.title} page"):
    page.run()
