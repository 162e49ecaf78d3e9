"""One customer's view: figures checked against the raw Online Retail rows in pandas, the two ways of getting
them agree, search by id and by contact, and an unknown id names close matches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from clm_core.customer_view import UnknownCustomerError, close_matches, customer_profile, find_customers
from clm_core.customers import customer_table
from clm_core.workspace import Workspace
from tests.conftest import DEMO_FILE


@pytest.fixture(scope="module")
def raw_rows(online_retail_path) -> pd.DataFrame:
    """The file's rows with a customer, as pandas reads them; identical lines once (the loader's reading of
    this file, which has an invoice column: a repeated line is the same line twice)."""
    rows = pd.read_csv(online_retail_path, dtype={"CustomerID": str, "StockCode": str, "InvoiceNo": str},
                       parse_dates=["InvoiceDate"])
    rows = rows.dropna(subset=["CustomerID"]).drop_duplicates()
    rows["is_return"] = rows["InvoiceNo"].str.startswith("C")
    rows["amount"] = rows["Quantity"] * rows["UnitPrice"]
    rows["day"] = rows["InvoiceDate"].dt.normalize()
    return rows


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("demo") / "demo.duckdb")
    workspace.ingest(DEMO_FILE)
    yield workspace
    workspace.close()


def _top_product(rows: pd.DataFrame) -> str:
    """The product bought on most days, then most units and value net of returns (never one returned in full)."""
    bought = rows[~rows["is_return"]]
    products = pd.DataFrame({"days": bought.groupby("StockCode")["day"].nunique(),
                             "quantity": rows.groupby("StockCode")["Quantity"].sum(),
                             "value": rows.groupby("StockCode")["amount"].sum()}).dropna()
    products = products[products["quantity"] > 0].reset_index()
    return products.sort_values(["days", "quantity", "value", "StockCode"],
                                ascending=[False, False, False, True])["StockCode"].iloc[0]


def test_profile_figures_match_the_raw_file(online_retail_workspace, raw_rows):
    workspace, _ = online_retail_workspace
    per_customer = raw_rows.groupby("CustomerID")["is_return"].any()
    # Customers without returns (their orders and purchase days are the file's as they stand) and the two
    # biggest customers, who returned goods (their revenue and top product are net of returns).
    plain = per_customer[~per_customer].index[:5].tolist()
    customers = [*plain, "14911", "14646"]
    last_day = raw_rows["day"].max()
    for customer in customers:
        rows = raw_rows[raw_rows["CustomerID"] == customer]
        purchases = rows[~rows["is_return"]]
        profile = customer_profile(workspace, customer)
        figures = profile.figures
        assert_allclose(figures["revenue"], rows["amount"].sum(), rtol=1e-9)
        assert profile.top_products["product_id"].iloc[0] == _top_product(rows)
        assert_allclose(profile.timeline["bought_value"].sum(), purchases["amount"].sum(), rtol=1e-9)
        assert profile.timeline["return_lines"].sum() == rows["is_return"].sum()
        assert profile.segments == {"Country": rows["Country"].iloc[0]}
        if customer in plain:
            assert figures["orders"] == purchases["InvoiceNo"].nunique()
            assert figures["purchase_days"] == purchases["day"].nunique()
            assert figures["first_purchase"] == purchases["day"].min().date()
            assert figures["last_purchase"] == purchases["day"].max().date()
            assert figures["days_since_last_purchase"] == (last_day - purchases["day"].max()).days
            assert_allclose(figures["average_order_value"],
                            purchases["amount"].sum() / purchases["InvoiceNo"].nunique())


def test_profile_from_the_cached_table_matches_the_one_read_per_customer(online_retail_workspace):
    workspace, _ = online_retail_workspace
    table = customer_table(workspace)
    # A customer with only returns, and customers spread over the table.
    picks = [*table.loc[table["purchase_days"] == 0, "customer_id"].head(1), *table["customer_id"].iloc[::400]]
    for customer in picks:
        cached = customer_profile(workspace, customer, table=table)
        read = customer_profile(workspace, customer)
        assert cached.segments == read.segments
        for key, value in cached.figures.items():
            if isinstance(value, float):
                assert_allclose(read.figures[key], value, rtol=1e-9, err_msg=f"{customer} {key}")
            else:
                assert read.figures[key] == value, (customer, key)


def test_timeline_keeps_days_with_only_returns_apart_from_purchase_days(online_retail_workspace, raw_rows):
    workspace, _ = online_retail_workspace
    returners = raw_rows.groupby("CustomerID")["is_return"].agg(["any", "all"])
    customer = returners[returners["any"] & ~returners["all"]].index[0]
    rows = raw_rows[raw_rows["CustomerID"] == customer]
    timeline = customer_profile(workspace, customer).timeline
    assert timeline["day"].tolist() == sorted(rows["day"].unique().tolist())
    return_only_days = set(rows.groupby("day")["is_return"].all().loc[lambda all_returns: all_returns].index)
    assert not timeline.loc[timeline["day"].isin(return_only_days), "purchase_day"].any()


def test_unknown_customer_names_close_matches(online_retail_workspace):
    workspace, _ = online_retail_workspace
    with pytest.raises(UnknownCustomerError, match=r"No customer '1785' in this dataset; did you mean 17850, "):
        customer_profile(workspace, "1785")
    table = customer_table(workspace)
    with pytest.raises(UnknownCustomerError, match="did you mean 17805"):
        customer_profile(workspace, "17805x", table=table)


def test_close_matches_prefers_ids_starting_with_the_text():
    ids = ["ALPHA-1", "ALPHA-10", "ALPHA-2", "BETA-1", "ALHPA-1"]
    assert close_matches(ids, "ALPHA-") == ["ALPHA-1", "ALPHA-2", "ALPHA-10"]
    assert close_matches(ids, "ALPA-1", limit=2) == ["ALPHA-1", "ALHPA-1"]
    assert close_matches(ids, "zzz") == []


def test_search_finds_customers_by_id_prefix(online_retail_workspace, raw_rows):
    workspace, _ = online_retail_workspace
    found = find_customers(workspace, "1785", limit=50)
    expected = sorted(raw_rows.loc[raw_rows["CustomerID"].str.contains("1785"), "CustomerID"].unique(),
                      key=lambda customer: (not customer.startswith("1785"), len(customer), customer))
    assert found["customer_id"].tolist() == expected
    assert (found["matched_on"] == "customer id").all()
    orders = raw_rows[~raw_rows["is_return"]].groupby("CustomerID")["InvoiceNo"].nunique()
    assert found["orders"].tolist() == orders.reindex(expected, fill_value=0).tolist()
    assert len(find_customers(workspace, "1785", limit=3)) == 3


def test_search_text_is_plain_text_not_a_pattern(online_retail_workspace):
    workspace, _ = online_retail_workspace
    for text in ("1_85", "17%", "'; DROP TABLE transactions; --", ""):
        assert find_customers(workspace, text).empty
    assert not find_customers(workspace, "17850").empty


def test_search_finds_customers_by_contact_in_any_case(demo_workspace):
    rows = pd.read_csv(DEMO_FILE, dtype=str)
    email = rows["email"].dropna().iloc[0]
    owner = rows.loc[rows["email"] == email, "customer_id"].iloc[0]
    found = find_customers(demo_workspace, email.upper())
    assert found["customer_id"].tolist() == [owner]
    assert found[["matched_on", "email"]].iloc[0].tolist() == ["email", email]
    profile = customer_profile(demo_workspace, owner)
    assert profile.contacts == {"email": email}
    # Part of an address finds every customer whose address holds it.
    part = email.split("@")[0][:-1]
    holders = rows.loc[rows["email"].str.contains(part, regex=False, na=False), "customer_id"].unique()
    assert set(find_customers(demo_workspace, part, limit=len(holders) + 5)["customer_id"]) == set(holders)


def test_profile_without_amounts_counts_orders_only(tmp_path):
    rows = pd.DataFrame({"customer_id": ["A", "A", "B"], "order_id": ["1", "2", "3"],
                         "order_date": ["2024-01-01", "2024-02-01", "2024-02-10"],
                         "product_id": ["P1", "P1", "P2"]})
    path = tmp_path / "orders.csv"
    rows.to_csv(path, index=False)
    with Workspace(tmp_path / "ws.duckdb") as workspace:
        workspace.ingest(path)
        profile = customer_profile(workspace, "A")
    assert not profile.has_money
    assert profile.figures["orders"] == 2 and profile.figures["revenue"] is None
    assert profile.figures["days_since_last_purchase"] == 9
    assert profile.top_products[["product_id", "purchase_days"]].iloc[0].tolist() == ["P1", 2]
    assert np.isnan(profile.top_products["value"]).all()
