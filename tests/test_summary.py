"""Dataset summary against an independent pandas computation on the demo file."""

from __future__ import annotations

import pandas as pd
import pytest

from clm_core.summary import dataset_summary, revenue_by_month
from clm_core.workspace import Workspace
from tests.conftest import DEMO_FILE


def test_demo_summary_matches_pandas():
    frame = pd.read_csv(DEMO_FILE, parse_dates=["order_date"], dtype={"customer_id": str})
    with Workspace() as workspace:
        workspace.ingest(DEMO_FILE)
        summary = dataset_summary(workspace)
        monthly = revenue_by_month(workspace)
    orders_per_customer = frame.groupby("customer_id")["order_id"].nunique()
    assert summary.customers == frame["customer_id"].nunique()
    assert summary.orders == frame["order_id"].nunique()
    assert summary.net_revenue == pytest.approx(frame["amount"].sum())
    assert summary.repeat_customer_rate == pytest.approx((orders_per_customer >= 2).mean())
    assert summary.average_order_value == pytest.approx(frame["amount"].sum() / frame["order_id"].nunique())
    assert summary.first_date == frame["order_date"].min() and summary.last_date == frame["order_date"].max()
    by_month = frame.groupby(frame["order_date"].dt.to_period("M"))["amount"].sum()
    assert monthly["net_revenue"].to_numpy() == pytest.approx(by_month.to_numpy())
    assert len(monthly) == 24


def test_online_retail_summary(online_retail_workspace):
    workspace, _ = online_retail_workspace
    summary = dataset_summary(workspace)
    assert summary.customers == 4_372
    assert summary.first_date == pd.Timestamp("2010-12-01 08:26:00")
    assert summary.return_orders > 0 and summary.net_revenue < summary.gross_revenue
