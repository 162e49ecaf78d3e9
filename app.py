"""Streamlit entry point: page config, the shared sidebar, and navigation between working pages."""

import streamlit as st

import app_state
from clm_core import use_one_blas_thread

use_one_blas_thread()  # small BLAS calls (the models') on one thread: see its docstring
st.set_page_config(page_title="Customer Lifecycle Analytics", page_icon="📈", layout="wide")

app_state.warm_up_imports()
app_state.ensure_first_run_demo()

pages = [
    st.Page("pages/data.py", title="Data", icon="📂", default=True),
    st.Page("pages/cohorts.py", title="Cohorts", icon="📊"),
    st.Page("pages/clv.py", title="Customer lifetime value", icon="💰", url_path="clv"),
    st.Page("pages/churn.py", title="Churn risk", icon="🚨", url_path="churn"),
    st.Page("pages/recommendations.py", title="Recommendations", icon="🎁", url_path="recommendations"),
    st.Page("pages/customer.py", title="Customer", icon="👤", url_path="customer"),
    st.Page("pages/segments.py", title="Segments", icon="🧩", url_path="segments"),
]
navigation = st.navigation(pages)
navigation.run()

# After the page ran, so a dataset loaded on this run is already shown.
with st.sidebar:
    ws = app_state.workspace()
    if ws.has_dataset:
        dataset = ws.dataset
        st.caption("Dataset in use")
        st.markdown(f"**{app_state.plain(dataset.name)}**  \n{dataset.report.rows_kept:,} rows")
        app_state.prepare_ahead(dataset.fingerprint, ws)  # the other pages' first computations, in the background
    else:
        st.caption("No dataset loaded")
