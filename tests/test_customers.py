"""The customer table: checked against an independent pandas computation on Online Retail, and by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from clm_core.customers import customer_table, window_activity
from clm_core.summary import customer_attributes
from clm_core.workspace import Workspace

AS_OF = date(2011, 9, 10)


def _transactions(workspace: Workspace) -> pd.DataFrame:
    with workspace._cursor() as cursor:
        return cursor.execute("SELECT * FROM transactions").df()


def test_online_retail_customer_table_matches_pandas(online_retail_workspace):
    workspace, _ = online_retail_workspace
    table = customer_table(workspace, AS_OF).set_index("customer_id")
    rows = _transactions(workspace)
    rows = rows[rows["order_ts"].dt.date <= AS_OF]
    rows["day"] = rows["order_ts"].dt.normalize()
    purchases = rows[~rows["is_return"]]
    days = purchases.groupby(["customer_id", "day"])["amount"].sum().reset_index()
    days["gap"] = days.groupby("customer_id")["day"].diff().dt.days
    per_customer = days.groupby("customer_id").agg(first=("day", "min"), last=("day", "max"),
                                                  purchase_days=("day", "size"), mean_gap=("gap", "mean"),
                                                  gap_spread=("gap", "std"))
    cutoff = pd.Timestamp(AS_OF)
    last_90 = days[days["day"] > cutoff - pd.Timedelta(days=90)].groupby("customer_id")["amount"].sum()

    assert len(table) == rows["customer_id"].nunique()
    assert (table["purchase_days"] > 0).sum() == len(per_customer)
    buying = table.loc[per_customer.index]
    assert (buying["purchase_days"] == per_customer["purchase_days"]).all()
    assert (buying["recency_days"] == (cutoff - per_customer["last"]).dt.days).all()
    assert (buying["tenure_days"] == (cutoff - per_customer["first"]).dt.days).all()
    assert_allclose(buying["mean_gap_days"], per_customer["mean_gap"], rtol=1e-12)
    assert_allclose(buying["gap_spread_days"], per_customer["gap_spread"], rtol=1e-9)
    assert_allclose(buying["spend_last_90"], last_90.reindex(buying.index, fill_value=0.0), rtol=1e-9, atol=1e-9)
    assert (buying["orders"] == purchases.groupby("customer_id")["order_id"].nunique()).all()
    assert (buying["products"] == purchases.groupby("customer_id")["product_id"].nunique()).all()
    # Sums in another order differ by rounding only (1e-14 on customers whose returns cancel their purchases).
    assert_allclose(table["revenue"], rows.groupby("customer_id")["amount"].sum().reindex(table.index), rtol=1e-9,
                    atol=1e-9)
    assert_allclose(table["return_rate"], rows.groupby("customer_id")["is_return"].mean().reindex(table.index))
    only_returns = table[table["purchase_days"] == 0]
    assert only_returns["first_purchase"].isna().all() and (only_returns["return_rate"] == 1).all()


def test_window_activity_counts_purchase_days_after_the_start(online_retail_workspace):
    workspace, _ = online_retail_workspace
    activity = window_activity(workspace, AS_OF, date(2011, 12, 9)).set_index("customer_id")
    rows = _transactions(workspace)
    rows = rows[~rows["is_return"] & (rows["order_ts"].dt.date > AS_OF)]
    expected = rows.groupby("customer_id")["order_ts"].apply(lambda ts: ts.dt.date.nunique())
    assert (activity["purchase_days"] == expected.reindex(activity.index)).all()
    assert len(activity) == len(expected)


@pytest.fixture
def moved_customer(tmp_path):
    """Customer a bought from Zambia first, then from Austria; b the other way round."""
    path = tmp_path / "moved.csv"
    path.write_text("customer_id,order_date,amount,country\n"
                    "a,2021-01-05,10,Zambia\na,2021-03-05,20,Austria\na,2021-04-05,5,Austria\n"
                    "b,2021-01-07,10,Austria\nb,2021-02-07,-4,Zambia\nb,2021-02-20,7,Austria\n")
    workspace = Workspace(tmp_path / "ws.duckdb")
    staged = workspace.stage_file(path)
    workspace.build(staged, replace(staged.guess, segments=["country"]))
    yield workspace
    workspace.close()


def test_attributes_are_those_of_the_first_purchase(moved_customer):
    table = customer_table(moved_customer).set_index("customer_id")
    assert table.loc["a", "country"] == "Zambia" and table.loc["b", "country"] == "Austria"
    exported = customer_attributes(moved_customer).set_index("customer_id")
    assert exported.loc["a", "country"] == "Zambia"


def test_a_customer_by_hand(moved_customer):
    table = customer_table(moved_customer, date(2021, 4, 30)).set_index("customer_id")
    a = table.loc["a"]
    assert (a["purchase_days"], a["recency_days"], a["tenure_days"]) == (3, 25, 115)
    assert a["mean_gap_days"] == pytest.approx((59 + 31) / 2)
    assert a["gap_spread_days"] == pytest.approx(np.std([59, 31], ddof=1))
    assert a["recency_gap_ratio"] == pytest.approx(25 / 45)
    assert a["spend_last_90"] == 25 and a["spend_prior_90"] == 10
    assert a["spend_trend"] == pytest.approx((25 - 10) / 35)
    b = table.loc["b"]
    assert (b["purchase_days"], b["revenue"], b["purchase_value"]) == (2, 13.0, 17.0)
    assert b["return_rate"] == pytest.approx(1 / 3)
    early = customer_table(moved_customer, date(2021, 1, 6)).set_index("customer_id")
    assert list(early.index) == ["a"]  # b had not bought yet
