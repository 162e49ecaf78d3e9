"""AppTest of the Recommendations page (products to offer, next best action, bought together) on the demo data."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import app_state
from clm_core import recommend
from clm_core.actions import ACTIONS
from clm_core.workspace import Workspace
from tests.app.helpers import open_page, page_metrics

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo_transactions.csv.gz"


def _page(session: dict | None = None) -> AppTest:
    return open_page("pages/recommendations.py", timeout=180, session=session)


@pytest.fixture(scope="module")
def demo_recommendations(tmp_path_factory) -> pd.DataFrame:
    """What clm_core recommends on the demo data, computed apart from the app."""
    with Workspace(tmp_path_factory.mktemp("rec") / "demo.duckdb") as workspace:
        workspace.ingest(DEMO)
        return recommend.build_recommender(workspace).recommend(top=10)


def test_products_to_offer_are_those_of_the_chosen_method(demo_recommendations):
    at = _page()
    assert not at.error
    assert any(info.value.startswith("Method used") for info in at.info)
    metrics = page_metrics(at)
    assert metrics["Customers"] == f"{demo_recommendations['customer_id'].nunique():,}"
    assert metrics["Distinct products recommended"] == f"{demo_recommendations['product_id'].nunique():,}"
    shown = next(frame.value for frame in at.dataframe if "Why" in frame.value)
    first = demo_recommendations.head(len(shown))
    assert shown["Customer"].tolist() == first["customer_id"].tolist()
    assert shown["Product id"].astype(str).tolist() == first["product_id"].astype(str).tolist()
    labels = [button.label for button in at.get("download_button")]
    assert labels[:2] == ["Download recommendations (CSV)", "Download recommendations (Excel)"]
    check = next(frame.value for frame in at.dataframe if "Hit rate @10" in frame.value)
    labels = recommend.METHOD_LABELS
    assert sorted(check["Method"]) == sorted([labels["cf"], labels["popularity"]] * 2)


def test_fewer_products_per_customer_and_a_segment_list(demo_recommendations):
    at = _page()
    at.number_input(key="rec_top").set_value(3).run()
    shown = next(frame.value for frame in at.dataframe if "Why" in frame.value)
    assert shown.groupby("Customer")["Rank"].max().max() == 3
    at.selectbox(key="rec_scope").set_value("segment").run()
    assert not at.exception
    attribute = at.selectbox(key="rec_scope_attribute").value
    value = at.selectbox(key=f"rec_scope_value_{attribute}").value
    demo = pd.read_csv(DEMO, dtype=str)
    column = next(c for c in demo.columns if c == attribute)
    members = set(demo.loc[demo[column] == value, "customer_id"])
    shown = next(frame.value for frame in at.dataframe if "Why" in frame.value)
    assert set(shown["Customer"]) <= members


def test_next_best_action_gives_every_customer_one_action():
    at = _page()
    at.radio(key="rec_view").set_value("Next best action").run()
    assert not at.exception and not at.error
    summary = next(frame.value for frame in at.dataframe if "Expected net value" in frame.value)
    demo = pd.read_csv(DEMO, dtype=str)
    assert summary["Customers"].sum() == demo["customer_id"].nunique()
    assert set(summary["Action"]) <= set(ACTIONS)
    at.toggle(key="nba_use_churn").set_value(False).run()
    assert not at.exception
    summary_without = next(frame.value for frame in at.dataframe if "Expected net value" in frame.value)
    assert summary_without["Customers"].sum() == demo["customer_id"].nunique()


def test_bought_together_for_one_product(tmp_path):
    at = _page()
    at.radio(key="rec_view").set_value("Bought together").run()
    at.selectbox(key="rec_together_product").set_value("P00082").run()
    assert not at.exception
    shown = next(frame.value for frame in at.dataframe if "Bought with" in frame.value)
    with Workspace(tmp_path / "demo.duckdb") as workspace:
        workspace.ingest(DEMO)
        expected = recommend.bought_together(workspace, "P00082", min_orders=5, top=10)
    assert shown["Bought with"].tolist() == expected["other_product_name"].tolist()
    assert shown["Orders with both"].tolist() == expected["orders_both"].tolist()


def test_a_file_without_products_explains_and_keeps_the_next_best_action(tmp_path):
    path = tmp_path / "no_products.csv"
    pd.read_csv(DEMO, dtype=str)[["customer_id", "order_id", "order_date", "amount"]].to_csv(path, index=False)
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(path)
    at = _page({"session_space": space, "demo_checked": True})
    assert any("no product column" in info.value for info in at.info)
    at.radio(key="rec_view").set_value("Next best action").run()
    assert not at.exception and not at.error
    summary = next(frame.value for frame in at.dataframe if "Expected net value" in frame.value)
    assert summary["Customers"].sum() == pd.read_csv(path, dtype=str)["customer_id"].nunique()
