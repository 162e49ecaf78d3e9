"""Headline numbers of a loaded dataset, from the named queries."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from clm_core.engine import Engine

__all__ = ["DatasetSummary", "dataset_summary", "revenue_by_month", "customer_attributes", "with_customer_attributes"]


@dataclass(frozen=True)
class DatasetSummary:
    """Customers, orders and money of a dataset; money fields are None without an amount column.

    ``repeat_customer_rate`` is the share of buying customers with two or more
    orders; ``average_order_value`` is purchase revenue (before returns) per order.
    """

    customers: int
    orders: int
    rows: int
    first_date: pd.Timestamp
    last_date: pd.Timestamp
    repeat_customer_rate: float
    orders_per_customer: float
    return_orders: int
    net_revenue: float | None
    gross_revenue: float | None
    average_order_value: float | None

    def to_dict(self) -> dict:
        values = asdict(self)
        values["first_date"] = self.first_date.isoformat()
        values["last_date"] = self.last_date.isoformat()
        return values


def dataset_summary(workspace: Engine) -> DatasetSummary:
    """The summary the Data page and ``ingest --json`` show."""
    totals = workspace.query("dataset_totals").iloc[0]
    has_money = workspace.dataset.has_money
    buying = int(totals["buying_customers"])
    orders = int(totals["orders"])
    gross = float(totals["gross_revenue"]) if has_money and pd.notna(totals["gross_revenue"]) else None
    return DatasetSummary(
        customers=int(totals["customers"]),
        orders=orders,
        rows=int(totals["rows"]),
        first_date=pd.Timestamp(totals["first_ts"]),
        last_date=pd.Timestamp(totals["last_ts"]),
        repeat_customer_rate=int(totals["repeat_customers"]) / buying if buying else 0.0,
        orders_per_customer=orders / buying if buying else 0.0,
        return_orders=int(totals["return_orders"]),
        net_revenue=float(totals["net_revenue"]) if has_money and pd.notna(totals["net_revenue"]) else None,
        gross_revenue=gross,
        average_order_value=gross / orders if gross is not None and orders else None,
    )


def revenue_by_month(workspace: Engine) -> pd.DataFrame:
    """Per calendar month: ``month`` (first day), ``gross_revenue``, ``net_revenue``, ``orders``, ``customers``."""
    frame = workspace.query("revenue_by_month")
    frame["month"] = pd.to_datetime(frame["month"])
    return frame


def customer_attributes(workspace: Engine) -> pd.DataFrame:
    """One row per customer: ``customer_id`` and the kept contact and segment columns, named as in the file."""
    dataset = workspace.dataset
    labels = {**dataset.contact_columns, **dataset.segment_columns}
    return workspace.query("customer_attributes", attributes=list(labels)).rename(columns=labels)


def with_customer_attributes(workspace: Engine, customers: pd.DataFrame) -> pd.DataFrame:
    """``customers`` (with a ``customer_id`` column) with contact and segment columns added after the id,
    so exported lists can go straight into a campaign tool."""
    attributes = customer_attributes(workspace)
    clashes = [column for column in attributes.columns if column != "customer_id" and column in customers.columns]
    attributes = attributes.rename(columns={column: f"{column} (file)" for column in clashes})
    merged = customers.merge(attributes, on="customer_id", how="left", validate="one_to_one")
    extra = [column for column in attributes.columns if column != "customer_id"]
    return merged[["customer_id", *extra, *[c for c in customers.columns if c != "customer_id"]]]
