"""Streamlit components shared by RS Lab's pages (``rs_core`` holds all computation; this package lays it out).

- :mod:`widgets.sidebar` — the sidebar the entrypoint draws once per run, and the link (URL query state);
- :mod:`widgets.state` — the typed :class:`~widgets.state.Settings` pages read, page choices kept across pages;
- :mod:`widgets.entry` — how a page gets those settings (:func:`~widgets.entry.settings`), with or without the
  entrypoint; :mod:`widgets.nav` — the pages and their url paths;
- :mod:`widgets.fields` — one rule per setting, for the sidebar and for links (Streamlit-free);
- :mod:`widgets.inputs` — the input picker; :mod:`widgets.live` — the live-run component;
- :mod:`widgets.figures`, :mod:`widgets.report` — pictures, words and tables about results.
"""

import sys

# Sampling runs in worker threads of this process while pages render in others. With the default 5 ms
# switch interval a page rerun (Plotly figures are slow to build) starves a worker at each GIL hand-off;
# 1 ms keeps the workers nearer their solo speed (benchmarks/bench_live.py; see also postScriptGC in
# .streamlit/config.toml).
sys.setswitchinterval(0.001)
