"""The app's pages, for ``st.navigation`` (the entrypoint) and for :func:`widgets.state.settings`'s recovery."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]

# url paths as Streamlit derives them from the file names in pages/ (it reads that folder before st.navigation
# first runs, and a link straight to a page then runs that file): old links and first visits find their page.
PAGES = [  # file, title, url path
    ("pages/0_Home.py", "Home", "home"),
    ("pages/1_Certify.py", "Certify", "Certify"),
    ("pages/5_Compare_sigma.py", "Compare σ", "Compare_sigma"),
    ("pages/2_Bounds.py", "Bounds", "Bounds"),
    ("pages/3_Certified_accuracy.py", "Certified accuracy", "Certified_accuracy"),
    ("pages/4_Dual_RS.py", "Dual RS", "Dual_RS"),
    ("pages/6_Playground.py", "Playground (2-D)", "Playground"),
]


def pages() -> list[st.Page]:
    return [st.Page(ROOT / file, title=title, url_path=url, default=i == 0)
            for i, (file, title, url) in enumerate(PAGES)]
