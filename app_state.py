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


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clv_fit(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str, calibration_end):
    """(customer summary, fitted models) for a dataset and settings; fitted once, shared by the page's views."""
    from clm_core import clv

    summary = clv.customer_summary(_ws, unit=unit, calibration_end=calibration_end)
    fitted = clv.fit_clv_models(summary, purchase_model=purchase_model, with_spend=_ws.dataset.has_money)
    return summary, fitted


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clv_scores(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str, horizon_months: int,
                      monthly_discount_rate: float, margin: float) -> pd.DataFrame:
    """Per-customer predictions over the whole history, with contact and segment columns."""
    from clm_core import clv
    from clm_core.summary import with_customer_attributes

    summary, fitted = cached_clv_fit(fingerprint, _ws, purchase_model, unit, None)
    scores = clv.predict_customers(summary, fitted, horizon_months=horizon_months,
                                   monthly_discount_rate=monthly_discount_rate, margin=margin)
    return with_customer_attributes(_ws, scores)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clv_check(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str, calibration_end) -> dict:
    """The holdout check of a calibration fit: totals, by-frequency table, tracking curve, spend check."""
    from clm_core import clv

    summary, fitted = cached_clv_fit(fingerprint, _ws, purchase_model, unit, calibration_end)
    check = {
        "summary": summary,
        "fitted": fitted,
        "totals": clv.holdout_totals(summary, fitted),
        "by_frequency": clv.holdout_by_frequency(summary, fitted),
        "tracking": clv.tracking_curve(_ws, summary, fitted),
        "spend": None,
    }
    if fitted.spend is not None and summary.frame["holdout_purchases"].sum() > 0:
        check["spend"] = clv.holdout_spend(summary, fitted)
    return check


@st.cache_data(max_entries=32, show_spinner=False)
def cached_calculator_prefill(fingerprint: str, _ws: Workspace) -> dict:
    from clm_core.clv_calculator import prefill_from_workspace

    return prefill_from_workspace(_ws)


def money(value: float | None, digits: int = 0) -> str:
    """A money figure for people: '8,278,519' or 'n/a'."""
    return "n/a" if value is None else f"{value:,.{digits}f}"
