"""App-side glue: the per-session workspace and the cached wrappers around clm_core calls.

Every browser session gets its own DuckDB workspace in its own temporary
folder, so one session never sees another's upload. Cached results are keyed
by the dataset fingerprint (a hash of the file's bytes, mapping and options)
plus the settings; the workspace argument is underscored so it stays out of
the cache key.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from clm_core import summary as summary_module
from clm_core.workspace import Workspace

DEMO_FILE = Path(__file__).parent / "data" / "demo_transactions.csv.gz"
DEMO_NAME = "Demo shop (generated, 3,000 customers)"


def session_folder() -> Path:
    """This session's private temporary folder (uploads and the workspace live here)."""
    if "session_folder" not in st.session_state:
        st.session_state["session_folder"] = tempfile.mkdtemp(prefix="clm-session-")
    return Path(st.session_state["session_folder"])


def workspace() -> Workspace:
    """This session's workspace, created on first use."""
    if "workspace" not in st.session_state:
        st.session_state["workspace"] = Workspace(session_folder() / "workspace.duckdb")
    return st.session_state["workspace"]


def load_demo() -> None:
    """Load the bundled demo file into this session's workspace."""
    workspace().ingest(DEMO_FILE, original_name=DEMO_NAME)
    st.session_state["dataset_version"] = st.session_state.get("dataset_version", 0) + 1


def ensure_first_run_demo() -> None:
    """On a session's first run, load the demo so every page has data to show."""
    if not st.session_state.get("demo_checked"):
        st.session_state["demo_checked"] = True
        if not workspace().has_dataset:
            with st.spinner("Loading the demo data..."):
                load_demo()


def require_dataset():
    """The loaded dataset, or a friendly stop on pages that need one."""
    ws = workspace()
    if not ws.has_dataset:
        st.info("No data loaded yet. Go to the **Data** page to load the demo data or upload a file.")
        st.stop()
    return ws.dataset


@st.cache_data(max_entries=32, show_spinner=False)
def cached_summary(fingerprint: str, _ws: Workspace) -> summary_module.DatasetSummary:
    return summary_module.dataset_summary(_ws)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_revenue_by_month(fingerprint: str, _ws: Workspace) -> pd.DataFrame:
    return summary_module.revenue_by_month(_ws)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_cohorts(fingerprint: str, _ws: Workspace, period: str, definition: str, segment: str | None,
                   start: pd.Timestamp, end: pd.Timestamp, min_cohort_size: int):
    from clm_core.cohorts import cohort_table

    return cohort_table(_ws, period=period, definition=definition, segment=segment, start=start, end=end,
                        min_cohort_size=min_cohort_size)


def money(value: float | None, digits: int = 0) -> str:
    """A money figure for people: '8,278,519' or 'n/a'."""
    return "n/a" if value is None else f"{value:,.{digits}f}"
