"""The customer table: checked against an independent pandas computation on Online Retail, and by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from clm_core.customers import customer_table, purchase_history, window_activity
from clm_core.summary import customer_attributes
from clm_core.workspace import Workspace

AS_OF = date(2011, 9, 10)


def _transactions(workspace: Workspace) -> pd.DataFrame:
    with workspace._cursor() as cursor:
        return cursor.execute("SELECT * FROM transactions").df()


def _netted_purchase_days(rows: pd.DataFrame) -> pd.DataFrame:
    """Purchase days netted of returns, one return line at a time (the rule of the customer table, written out
    plainly): a return cancels the same customer's purchase of the product in the same order if there is one,
    else their latest purchase of it on or before the return, up to what that purchase was worth; a day whose
    purchases are all cancelled is dropped. Columns customer_id, day, value, orders."""
    rows = rows.assign(product=rows["product_id"].fillna(rows["product_name"]).fillna(""), day=rows["order_ts"].dt.normalize(),
                       measure=rows["amount"].fillna(rows["quantity"]))
    purchases = rows[~rows["is_return"]]
    bought = purchases.groupby(["customer_id", "day", "product"])[["amount", "measure"]].sum()
    positions = purchases.groupby(["customer_id", "product"]).indices
    purchase_days, purchase_orders = purchases["day"].to_numpy(), purchases["order_id"].to_numpy()
    returned: dict[tuple, list[float]] = {}
    for line in rows[rows["is_return"]].itertuples():
        candidates = positions.get((line.customer_id, line.product))
        if candidates is None:
            continue
        candidates = candidates[purchase_days[candidates] <= np.datetime64(line.day)]
        if not len(candidates):
            continue
        same_order = candidates[purchase_orders[candidates] == line.order_id]
        day = pd.Timestamp(purchase_days[same_order if len(same_order) else candidates].max())
        total = returned.setdefault((line.customer_id, day, line.product), [0.0, 0.0])
        total[0] -= line.amount
        total[1] -= line.measure
    cancelled: dict[tuple, list[float]] = {}
    for (customer, day, product), (value, measure) in returned.items():
        worth = bought.loc[(customer, day, product)]
        total = cancelled.setdefault((customer, day), [0.0, 0.0])
        total[0] += min(value, worth["amount"])
        total[1] += min(measure, worth["measure"])
    days = purchases.groupby(["customer_id", "day"]).agg(value=("amount", "sum"), measure=("measure", "sum"),
                                                         orders=("order_id", "nunique")).reset_index()
    lost = pd.DataFrame([(c, d, v, m) for (c, d), (v, m) in cancelled.items()],
                        columns=["customer_id", "day", "lost_value", "lost_measure"])
    days = days.merge(lost, how="left", on=["customer_id", "day"])
    kept = days["lost_measure"].isna() | (days["lost_measure"] < days["measure"] * (1 - 1e-9))
    days = days[kept].copy()
    days["value"] -= days["lost_value"].fillna(0.0)
    return days[["customer_id", "day", "value", "orders"]].reset_index(drop=True)


def test_online_retail_customer_table_and_purchase_history_match_pandas(online_retail_workspace):
    workspace, _ = online_retail_workspace
    table = customer_table(workspace, AS_OF).set_index("customer_id")
    rows = _transactions(workspace)
    rows = rows[rows["order_ts"].dt.date <= AS_OF]
    purchases = rows[~rows["is_return"]]
    days = _netted_purchase_days(rows)
    days["gap"] = days.groupby("customer_id")["day"].diff().dt.days
    per_customer = days.groupby("customer_id").agg(first=("day", "min"), last=("day", "max"),
                                                  purchase_days=("day", "size"), mean_gap=("gap", "mean"),
                                                  gap_spread=("gap", "std"), value=("value", "sum"),
                                                  orders=("orders", "sum"))
    cutoff = pd.Timestamp(AS_OF)
    last_90 = days[days["day"] > cutoff - pd.Timedelta(days=90)].groupby("customer_id")["value"].sum()
    repeat = days[days.groupby("customer_id").cumcount() > 0]
    repeat = repeat[repeat["value"] > 0].groupby("customer_id")["value"].agg(["size", "sum"])

    assert len(table) == rows["customer_id"].nunique()
    assert (table["purchase_days"] > 0).sum() == len(per_customer)
    buying = table.loc[per_customer.index]
    assert (buying["purchase_days"] == per_customer["purchase_days"]).all()
    assert (buying["orders"] == per_customer["orders"]).all()
    assert (buying["recency_days"] == (cutoff - per_customer["last"]).dt.days).all()
    assert (buying["tenure_days"] == (cutoff - per_customer["first"]).dt.days).all()
    assert_allclose(buying["mean_gap_days"], per_customer["mean_gap"], rtol=1e-12)
    assert_allclose(buying["gap_spread_days"], per_customer["gap_spread"], rtol=1e-9)
    assert_allclose(buying["purchase_value"], per_customer["value"], rtol=1e-9, atol=1e-6)
    assert_allclose(buying["spend_last_90"], last_90.reindex(buying.index, fill_value=0.0), rtol=1e-9, atol=1e-6)
    assert (buying["repeat_spend_days"] == repeat["size"].reindex(buying.index, fill_value=0)).all()
    assert_allclose(buying["repeat_spend_value"], repeat["sum"].reindex(buying.index, fill_value=0.0), rtol=1e-9,
                    atol=1e-6)
    assert (buying["products"] == purchases.groupby("customer_id")["product_id"].nunique()
            .reindex(buying.index)).all()
    # Sums in another order differ by rounding only (1e-14 on customers whose returns cancel their purchases).
    assert_allclose(table["revenue"], rows.groupby("customer_id")["amount"].sum().reindex(table.index), rtol=1e-9,
                    atol=1e-9)
    assert_allclose(table["return_rate"], rows.groupby("customer_id")["is_return"].mean().reindex(table.index))
    only_returns = table[table["purchase_days"] == 0]
    assert only_returns["first_purchase"].isna().all()
    # The CLV models' lighter query: the same purchase history, by another SQL route.
    history = purchase_history(workspace, AS_OF)
    assert history["customer_id"].tolist() == sorted(per_customer.index)
    history = history.set_index("customer_id")
    assert (history["first_purchase"] == per_customer["first"]).all()
    assert (history["last_purchase"] == per_customer["last"]).all()
    assert (history["purchase_days"] == per_customer["purchase_days"]).all()
    assert (history["repeat_spend_days"] == repeat["size"].reindex(history.index, fill_value=0)).all()
    assert_allclose(history["repeat_spend_value"], repeat["sum"].reindex(history.index, fill_value=0.0), rtol=1e-9,
                    atol=1e-6)
    # Netting matters on this file: some customers lose purchase days to their returns.
    gross_days = purchases.groupby("customer_id")["order_ts"].apply(lambda ts: ts.dt.normalize().nunique())
    assert (gross_days.reindex(buying.index) > buying["purchase_days"]).sum() > 0


def test_window_activity_counts_netted_purchase_days_after_the_start(online_retail_workspace):
    workspace, _ = online_retail_workspace
    end = date(2011, 12, 9)
    activity = window_activity(workspace, AS_OF, end).set_index("customer_id")
    days = _netted_purchase_days(_transactions(workspace))
    days = days[days["day"] > pd.Timestamp(AS_OF)]
    expected = days.groupby("customer_id").agg(purchase_days=("day", "size"), value=("value", "sum"))
    assert len(activity) == len(expected)
    assert (activity["purchase_days"] == expected["purchase_days"].reindex(activity.index)).all()
    assert_allclose(activity["value"], expected["value"].reindex(activity.index), rtol=1e-9, atol=1e-6)


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
    # b's return of 4 (no products in this file) cancels part of their latest purchase before it, of 10.
    assert (b["purchase_days"], b["revenue"], b["purchase_value"]) == (2, 13.0, 13.0)
    assert b["return_rate"] == pytest.approx(1 / 3)
    early = customer_table(moved_customer, date(2021, 1, 6)).set_index("customer_id")
    assert list(early.index) == ["a"]  # b had not bought yet


def _workspace_of(tmp_path, text: str, **mapping) -> Workspace:
    path = tmp_path / "orders.csv"
    path.write_text(text)
    workspace = Workspace(tmp_path / "netting.duckdb")
    staged = workspace.stage_file(path)
    workspace.build(staged, replace(staged.guess, **mapping) if mapping else staged.guess)
    return workspace


def test_an_order_cancelled_in_full_is_no_purchase(tmp_path):
    # Customer 16446's story on Online Retail, by hand: a small first order, then a huge one cancelled minutes
    # later (a cancellation invoice of its own, as that file writes them).
    workspace = _workspace_of(tmp_path, (
        "invoice,customer,date,product,quantity,price\n"
        "A1,c,2011-05-18 09:52,P1,1,2.10\n"
        "A1,c,2011-05-18 09:52,P2,2,1.65\n"
        "A2,c,2011-12-09 09:15,P3,80995,2.08\n"
        "C3,c,2011-12-09 09:27,P3,-80995,2.08\n"
        "A4,d,2011-12-01 10:00,P3,5,2.08\n"))
    with workspace:
        table = customer_table(workspace).set_index("customer_id")
        c = table.loc["c"]
        assert (c["purchase_days"], c["orders"], c["repeat_spend_days"]) == (1, 1, 0)
        assert c["purchase_value"] == pytest.approx(2.10 + 3.30)
        assert c["last_purchase"] == pd.Timestamp("2011-05-18")
        assert c["revenue"] == pytest.approx(2.10 + 3.30)
        assert table.loc["d", "purchase_days"] == 1  # another customer's purchase of the product is untouched
        assert window_activity(workspace, date(2011, 11, 30), date(2011, 12, 9))["customer_id"].tolist() == ["d"]


def test_partial_returns_net_the_purchase_they_match(tmp_path):
    workspace = _workspace_of(tmp_path, (
        "invoice,customer,date,product,quantity,price\n"
        "A1,c,2021-01-04,P1,4,10\n"       # bought P1 twice: the return goes to the later purchase
        "A2,c,2021-02-01,P1,2,10\n"
        "A2,c,2021-02-01,P2,1,5\n"
        "C1,c,2021-02-10,P1,-3,10\n"      # 30 back: caps at the 20 of 1 Feb; P2 keeps that day a purchase
        "C2,c,2021-03-01,P9,-1,50\n"      # P9 was bought before the data: cancels nothing
        "A3,e,2021-01-04,P1,1,10\n"
        "A3,e,2021-01-04,P2,1,0\n"))      # a zero-price line: a purchase with no value
    with workspace:
        table = customer_table(workspace).set_index("customer_id")
        c = table.loc["c"]
        assert c["purchase_days"] == 2
        assert c["purchase_value"] == pytest.approx(40 + 5)
        assert (c["repeat_spend_days"], c["repeat_spend_value"]) == (1, pytest.approx(5.0))
        assert c["revenue"] == pytest.approx(40 + 20 + 5 - 30 - 50)
        assert table.loc["e", "purchase_days"] == 1


def test_a_return_in_the_same_order_cancels_that_order(tmp_path):
    # Files that write refunds under the order they refund link them: the return goes to that order's day even
    # when the same product was bought again later.
    workspace = _workspace_of(tmp_path, (
        "order,customer,date,product,quantity,price\n"
        "O1,c,2021-01-04,P1,1,10\n"
        "O2,c,2021-01-20,P1,1,10\n"
        "O1,c,2021-01-25,P1,-1,10\n"))
    with workspace:
        c = customer_table(workspace).set_index("customer_id").loc["c"]
        assert c["purchase_days"] == 1 and c["first_purchase"] == pd.Timestamp("2021-01-20")
