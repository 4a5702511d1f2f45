"""The app's pages, for ``st.navigation`` (the entrypoint) and for :func:`widgets.entry.settings`'s recovery."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]

# Each url path is the one Streamlit derives from the page's file name (pages/Certify.py → /Certify): it reads the
# pages/ folder before st.navigation first runs, and a link straight to a page then runs that file alone, so old
# links and first visits find their page either way. Keep the two equal when adding or renaming a page. The
# files carry no number: the order is this list's.
PAGES = [  # file, title, url path
    ("pages/Home.py", "Home", "home"),
    ("pages/Certify.py", "Certify", "Certify"),
    ("pages/Compare_sigma.py", "Compare σ", "Compare_sigma"),
    ("pages/Bounds.py", "Bounds", "Bounds"),
    ("pages/Certified_accuracy.py", "Certified accuracy", "Certified_accuracy"),
    ("pages/Dual_RS.py", "Dual RS", "Dual_RS"),
    ("pages/Playground.py", "Playground (2-D)", "Playground"),
    ("pages/Verify.py", "Verify a certificate", "Verify"),
]


def pages() -> list[st.Page]:
    return [st.Page(ROOT / file, title=title, url_path=url, default=i == 0)
            for i, (file, title, url) in enumerate(PAGES)]
