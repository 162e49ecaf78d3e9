"""The customer table: one row per customer as of a date, the one place customer-level features come from.

CLV, churn, segments and recommendations all read it. Purchases are rows that are not returns; purchases on
one day are one *purchase day* (as in the CLV literature); money is in the file's currency.

Returns are netted into the purchase days they cancel (the rule is in :mod:`clm_core.queries`): a return
cancels the same product bought by the same customer in the same order when the file links them, else at the
latest purchase of that product on or before the return, up to what that purchase was worth. A purchase day
cancelled in full is no purchase at all; any other counts with its value net of what was cancelled.

Columns of :func:`customer_table`:

- ``customer_id``; ``first_purchase``, ``last_purchase`` (dates; empty for customers with only returns)
- ``recency_days`` (days from the last purchase to the date), ``tenure_days`` (from the first purchase)
- ``purchase_days``, ``orders`` (purchase orders on them), ``products`` (distinct products bought)
- ``purchase_value`` (of the purchase days, net of the returns that cancel them), ``first_day_value`` (the
  first purchase day's), ``repeat_spend_days`` and ``repeat_spend_value`` (the later purchase days worth more
  than nothing, and their value: what a spend model learns from), ``revenue`` (every row's amount, net of all
  returns), ``average_order_value`` (purchase value per order)
- ``mean_gap_days``, ``gap_spread_days`` (mean and standard deviation of the days between purchase days;
  empty with fewer than two, resp. three, purchase days), ``recency_gap_ratio`` (recency over the mean gap:
  above 1, the customer is later than usual)
- ``spend_last_90``, ``spend_prior_90`` (purchase value in the 90 days up to the date and the 90 before),
  ``spend_trend`` (their difference over their sum: -1 stopped, 0 steady, +1 new)
- ``return_rate`` (share of the customer's lines that are returns)
- the dataset's segment and contact columns, under their names in the file, as on the customer's first row.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from clm_core.engine import Engine
from clm_core.errors import DataRangeError

__all__ = ["data_span", "customer_table", "purchase_history", "window_activity"]


def data_span(workspace: Engine) -> tuple[date, date]:
    """First and last day of the data."""
    span = workspace.query("date_span").iloc[0]
    return pd.Timestamp(span["first_ts"]).date(), pd.Timestamp(span["last_ts"]).date()


def customer_table(workspace: Engine, as_of: date | None = None, *, attributes: bool = True,
                   contacts: bool = True, sample_share: float = 1.0) -> pd.DataFrame:
    """The customer table as of ``as_of`` (inclusive; default: the last day of the data), by customer id (a set
    order keeps every sample drawn from it, and so every model, the same from run to run). ``attributes``
    adds the segment columns and, with ``contacts``, the contact columns. ``sample_share`` below 1 keeps about
    that share of customers, the same ones from run to run (by a hash of the id)."""
    first_day, last_day = data_span(workspace)
    as_of = as_of or last_day
    if as_of < first_day:
        raise DataRangeError(f"{as_of:%d %b %Y} is before the data start ({first_day:%d %b %Y}); pick a later date.")
    dataset = workspace.dataset
    labels = {**dataset.segment_columns, **(dataset.contact_columns if contacts else {})} if attributes else {}
    per_mille = int(np.clip(np.ceil(sample_share * 1000), 1, 1000))
    frame = workspace.query("customer_table", attributes=list(labels), cutoff=as_of, sample_per_mille=per_mille)
    frame = frame.rename(columns={"first_day": "first_purchase", "last_day": "last_purchase",
                                  "net_revenue": "revenue", **labels})
    for column in ("first_purchase", "last_purchase"):
        frame[column] = pd.to_datetime(frame[column])
    counts = ["purchase_days", "orders", "products", "repeat_spend_days", "return_lines", "lines"]
    frame[counts] = frame[counts].fillna(0).astype(np.int64)
    # Plain floats (NaN where empty), not nullable types: models and numpy read them directly.
    days = ["recency_days", "tenure_days", "mean_gap_days", "gap_spread_days"]
    frame[days] = frame[days].astype("float64")
    money = dataset.has_money
    for column in ("purchase_value", "first_day_value", "repeat_spend_value", "revenue", "spend_last_90",
                   "spend_prior_90"):
        frame[column] = frame[column].astype(float) if money else np.nan
    frame["average_order_value"] = frame["purchase_value"] / frame["orders"].where(frame["orders"] > 0)
    frame["recency_gap_ratio"] = frame["recency_days"] / frame["mean_gap_days"].where(frame["mean_gap_days"] > 0)
    recent = frame["spend_last_90"] + frame["spend_prior_90"]
    frame["spend_trend"] = ((frame["spend_last_90"] - frame["spend_prior_90"]) / recent.where(recent > 0)).fillna(0.0)
    frame["return_rate"] = frame["return_lines"] / frame["lines"]
    return frame


def purchase_history(workspace: Engine, as_of: date) -> pd.DataFrame:
    """The purchase-history columns of :func:`customer_table` as of ``as_of`` (``customer_id``,
    ``first_purchase``, ``last_purchase``, ``purchase_days``, ``repeat_spend_days``, ``repeat_spend_value``) for
    the customers who bought by then, by customer id: all the CLV models need, without the rest of the table."""
    frame = workspace.query("customer_purchases", cutoff=as_of)
    frame = frame.rename(columns={"first_day": "first_purchase", "last_day": "last_purchase"})
    for column in ("first_purchase", "last_purchase"):
        frame[column] = pd.to_datetime(frame[column])
    frame[["purchase_days", "repeat_spend_days"]] = frame[["purchase_days", "repeat_spend_days"]].astype(np.int64)
    frame["repeat_spend_value"] = frame["repeat_spend_value"].astype(float) if workspace.dataset.has_money else np.nan
    return frame


def window_activity(workspace: Engine, start: date, end: date) -> pd.DataFrame:
    """Per customer who bought in the window after ``start`` up to ``end`` (inclusive): ``purchase_days``,
    ``orders`` and purchase ``value`` in it."""
    frame = workspace.query("customer_window_activity", start=start, end=end)
    frame[["purchase_days", "orders"]] = frame[["purchase_days", "orders"]].astype(np.int64)
    frame["value"] = frame["value"].astype(float)
    return frame
