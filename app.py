"""PQ-IoMT Twin app: `streamlit run app.py` (or `make app`) from the repository root.

One script with a sidebar page switch (AppTest drives it reliably); every page module has ``render()``.
Any exception a page raises becomes a one-line message in the page, never a traceback.
"""

from __future__ import annotations

import streamlit as st

from app_pages import compare, explore, learn, sweep, twin
from app_pages.common import guarded

PAGES = {
    "Explore": explore.render,
    "Compare suites": compare.render,
    "Sweep": sweep.render,
    "Twin": twin.render,
    "Learn": learn.render,
}
CAPTIONS = [
    "what-if on one scenario",
    "crypto suites side by side",
    "many what-ifs on the sweep engine",
    "measured vs simulated",
    "guided story for teaching",
]

st.set_page_config(page_title="PQ-IoMT Twin", page_icon="🛡️", layout="wide")
st.sidebar.title("PQ-IoMT Twin")
page = st.sidebar.radio("Page", list(PAGES), captions=CAPTIONS, key="page")
st.sidebar.divider()
with guarded(page):
    PAGES[page]()
