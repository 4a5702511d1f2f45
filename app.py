"""RS Lab's entrypoint: `make run` (streamlit run app.py). Draws the sidebar once, then the chosen page."""

import streamlit as st

from widgets import entry, nav, sidebar

st.set_page_config(page_title="RS Lab", layout="wide")  # no page_icon: emoji icons are fetched from a CDN
page = st.navigation(nav.pages())
sidebar.draw()
with entry.entrypoint():
    page.run()
