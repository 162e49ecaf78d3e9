"""AppTest of the Customer page on the demo data: look-up by id, by e-mail, an unknown id, the figures."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from clm_core import recommend
from clm_core.segments import segment_customers
from clm_core.workspace import Workspace
from tests.app.helpers import open_page, page_metrics

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo_transactions.csv.gz"


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return pd.read_csv(DEMO, dtype={"customer_id": str}, parse_dates=["order_date"])


def _page() -> AppTest:
    return open_page("pages/customer.py", timeout=180)


def test_a_customer_picked_by_id_shows_their_figures_and_recommendations(demo, tmp_path):
    at = _page()
    customer = demo["customer_id"].value_counts().index[0]  # the customer with the most lines
    at.selectbox(key="customer_pick").set_value(customer).run()
    assert not at.exception and not at.error
    rows = demo[demo["customer_id"] == customer]
    bought = rows[rows["quantity"] > 0]
    metrics = page_metrics(at)
    assert metrics["Orders"] == f"{bought['order_id'].nunique():,}"
    assert metrics["Revenue (net of returns)"] == f"{rows['amount'].sum():,.2f}"
    assert metrics["First purchase"] == f"{bought['order_date'].min():%d %b %Y}"
    assert metrics["Last purchase"] == f"{bought['order_date'].max():%d %b %Y}"
    assert "Next best action" in metrics and "Probability still active" in metrics
    with Workspace(tmp_path / "demo.duckdb") as workspace:
        workspace.ingest(DEMO)
        expected = recommend.build_recommender(workspace).for_customer(customer)
        labels = segment_customers(workspace).customers.set_index("customer_id").loc[customer]
    assert any(f"**RFM segment:** {labels['rfm_segment']}" in text.value and
               f"**Lifecycle stage:** {labels['lifecycle_stage']}" in text.value for text in at.markdown)
    shown = next(frame.value for frame in at.dataframe if "Why" in frame.value)
    assert shown["Product"].tolist() == expected["product_name"].astype(str).tolist()
    assert "Download this customer's recommendations (CSV)" in [button.label for button in at.get("download_button")]


def test_search_by_email_finds_the_customer(demo):
    at = _page()
    customer = demo["customer_id"].iloc[10]
    email = demo.loc[demo["customer_id"] == customer, "email"].iloc[0]
    at.text_input(key="customer_search").set_value(email.upper()).run()
    assert at.selectbox(key="customer_found").value == customer
    assert page_metrics(at)["Orders"] == f"{demo.loc[demo['customer_id'] == customer, 'order_id'].nunique():,}"


def test_an_unknown_id_suggests_close_ones(demo):
    at = _page()
    known = demo["customer_id"].iloc[0]
    at.text_input(key="customer_search").set_value(known + "9x").run()
    assert not at.exception
    warning = at.warning[0].value
    assert "No customer matches" in warning
