"""One customer at a glance: find them, then their key figures, purchase timeline and top products.

Everything is read with named queries keyed on the customer (:mod:`clm_core.queries`: ``customer_search``,
``customer_totals``, ``customer_timeline``, ``customer_products``), the customer's id bound as a parameter; DuckDB
reads only that customer's rows, so a profile takes a few hundredths of a second. The figures are those of the
customer table (:mod:`clm_core.customers`) as of the last day of the data: purchase days netted of the returns
that cancel them; a page that holds the table already passes it in (``table=``) and its row is used as it is.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from clm_core.customers import data_span
from clm_core.engine import Engine
from clm_core.errors import ClmError

__all__ = [
    "FIGURES",
    "UnknownCustomerError",
    "CustomerProfile",
    "find_customers",
    "close_matches",
    "customer_profile",
]

# The key figures of a profile, with how a marketer reads each.
FIGURES = {
    "orders": "Orders",
    "purchase_days": "Purchase days",
    "revenue": "Revenue (net of returns)",
    "average_order_value": "Average order value",
    "first_purchase": "First purchase",
    "last_purchase": "Last purchase",
    "days_since_last_purchase": "Days since last purchase",
    "usual_gap_days": "Usual days between purchases",
    "products": "Products bought",
    "return_rate": "Share of lines returned",
}
# Beyond this many known ids, close matches are looked for among ids of about the typed length only (difflib
# compares every candidate).
_MANY_IDS = 50_000


class UnknownCustomerError(ClmError):
    """No customer has this id in the dataset."""


@dataclass
class CustomerProfile:
    """One customer as of ``as_of`` (the last day of the data).

    ``figures``: :data:`FIGURES` (money ones None without amounts; dates as ``datetime.date``; None when the
    customer has only returns). ``segments`` and ``contacts``: the attribute columns of their first row, by
    their names in the file. ``timeline``: per day with any row, ``day``, ``orders`` (purchase orders),
    ``bought_value`` (before returns), ``return_lines``, ``returned_value`` (positive), ``purchase_day`` (False
    when the day's purchases were all returned, or it had only returns) and ``net_value`` (the purchase day's
    value net of the returns that cancel it). ``top_products``: every product they kept some of, best first (by
    purchase days, then units, then value): ``product_id`` (id, else name), ``product_name``, ``purchase_days``,
    ``last_purchase``, ``quantity`` and ``value`` (net of returns), ``returned_quantity``, ``returned_value``.
    """

    customer_id: str
    as_of: date
    has_money: bool
    figures: dict[str, object]
    segments: dict[str, object] = field(default_factory=dict)
    contacts: dict[str, object] = field(default_factory=dict)
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)
    top_products: pd.DataFrame = field(default_factory=pd.DataFrame)

    def key_figures(self) -> pd.DataFrame:
        """The figures as two columns, ``figure`` (in words) and ``value``, for a page to show."""
        return pd.DataFrame({"figure": list(FIGURES.values()),
                             "value": pd.Series([self.figures.get(key) for key in FIGURES], dtype=object)})


# --- finding a customer -----------------------------------------------------------------------------------------

def close_matches(ids: Iterable[str], text: str, *, limit: int = 3) -> list[str]:
    """Up to ``limit`` known ids like ``text``: first those that start with it (shortest first), then the most
    similar by difflib (ratio of at least 0.6), best first."""
    text = str(text).strip()
    known = pd.Series(ids, dtype=object).dropna().astype(str).drop_duplicates()
    starting = known[known.str.startswith(text) & (known != text)] if text else known.iloc[:0]
    starting = starting.iloc[np.lexsort((starting.to_numpy(), starting.str.len().to_numpy()))].head(limit).tolist()
    if len(known) > _MANY_IDS:
        known = known[(known.str.len() - len(text)).abs() <= 2]
    similar = difflib.get_close_matches(text, known.tolist(), n=limit + len(starting), cutoff=0.6)
    return list(dict.fromkeys([*starting, *similar]))[:limit]


def find_customers(workspace: Engine, text: str, *, limit: int = 20) -> pd.DataFrame:
    """Customers whose id, or a contact value (e-mail, phone...), contains ``text`` (any case): ids starting
    with it first, then ids holding it, then contact matches, shorter ids first; at most ``limit``.

    Columns: ``customer_id``, ``matched_on`` ("customer id" or the contact column's name), the contact columns
    (their names in the file; their first row's values), ``orders`` (purchase orders) and ``last_activity``
    (the moment of their last row). Empty text finds no one.
    """
    dataset = workspace.dataset
    labels = dict(dataset.contact_columns)
    columns = ["customer_id", "matched_on", *labels.values(), "orders", "last_activity"]
    # Control characters cannot be typed into a search box; chr(31) separates the values the query searches.
    needle = "".join(character for character in str(text) if character.isprintable()).strip().lower()
    if not needle:
        return pd.DataFrame(columns=columns)
    found = workspace.query("customer_search", attributes=list(labels), text=needle, limit=max(int(limit), 1))
    found = found.rename(columns={**labels, "last_ts": "last_activity"})
    matched_on = np.where(found["match_rank"] < 2, "customer id", "a contact detail")
    for label in labels.values():
        holds = found[label].astype(object).fillna("").astype(str).str.lower().str.contains(needle, regex=False)
        matched_on = np.where((found["match_rank"] == 2) & holds.to_numpy(), label, matched_on)
    found["matched_on"] = matched_on
    found["orders"] = found["orders"].astype(np.int64)
    found["last_activity"] = pd.to_datetime(found["last_activity"])
    return found[columns].reset_index(drop=True)


def _known_ids(workspace: Engine, table: pd.DataFrame | None) -> pd.Series:
    if table is not None:
        return table["customer_id"]
    return workspace.query("customer_attributes")["customer_id"]


def _unknown(workspace: Engine, customer_id: str, table: pd.DataFrame | None) -> UnknownCustomerError:
    close = close_matches(_known_ids(workspace, table), customer_id)
    hint = (f"; did you mean {', '.join(close[:-1])} or {close[-1]}?" if len(close) > 1 else
            f"; did you mean {close[0]}?" if close else ". Search by the start of the id or by a contact detail.")
    return UnknownCustomerError(f"No customer {customer_id!r} in this dataset{hint}")


# --- the profile ------------------------------------------------------------------------------------------------

def _plain(value: object) -> object:
    """A table cell as a plain Python value (None where empty)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value.item() if isinstance(value, np.generic) else value


def _figures_from_table(row: pd.Series) -> dict[str, object]:
    return {
        "orders": row["orders"],
        "purchase_days": row["purchase_days"],
        "revenue": row["revenue"],
        "average_order_value": row["average_order_value"],
        "first_purchase": row["first_purchase"],
        "last_purchase": row["last_purchase"],
        "days_since_last_purchase": int(row["recency_days"]) if pd.notna(row["recency_days"]) else None,
        "usual_gap_days": row["mean_gap_days"],
        "products": row["products"],
        "return_rate": row["return_rate"],
    }


def _figures_from_rows(totals: pd.Series, timeline: pd.DataFrame, as_of: date, money: bool) -> dict[str, object]:
    """The customer table's figures for one customer, from their timeline (purchase days) and totals."""
    days = timeline[timeline["purchase_day"]]
    orders = int(days["orders"].sum())
    value = float(days["net_value"].sum()) if money else np.nan
    first, last = (days["day"].min(), days["day"].max()) if len(days) else (None, None)
    return {
        "orders": orders,
        "purchase_days": len(days),
        "revenue": float(totals["net_revenue"]) if money else np.nan,
        "average_order_value": value / orders if orders else np.nan,
        "first_purchase": first,
        "last_purchase": last,
        "days_since_last_purchase": (pd.Timestamp(as_of) - last).days if last is not None else np.nan,
        "usual_gap_days": days["day"].diff().dt.days.mean() if len(days) > 1 else np.nan,
        "products": int(totals["products"]),
        "return_rate": int(totals["return_lines"]) / int(totals["lines"]),
    }


def _top_products(products: pd.DataFrame, money: bool) -> pd.DataFrame:
    kept = products[products["returned"] < products["bought"]]
    frame = pd.DataFrame({
        "product_id": kept["product"].astype(object),
        "product_name": kept["product_name"].astype(object),
        "purchase_days": kept["purchase_days"].astype(np.int64),
        "last_purchase": pd.to_datetime(kept["last_day"]),
        "quantity": kept["bought_quantity"].astype(float) - kept["returned_quantity"].astype(float).fillna(0.0),
        "value": (kept["bought_value"].astype(float) - kept["returned_value"].astype(float).fillna(0.0))
        if money else np.nan,
        "returned_quantity": kept["returned_quantity"].astype(float).fillna(0.0),
        "returned_value": kept["returned_value"].astype(float).fillna(0.0) if money else np.nan,
    })
    return frame.sort_values(["purchase_days", "quantity", "value", "product_id"],
                             ascending=[False, False, False, True], na_position="last", ignore_index=True)


def customer_profile(workspace: Engine, customer_id: str, *, table: pd.DataFrame | None = None
                     ) -> CustomerProfile:
    """One customer's key figures, segments, contacts, purchase timeline and products, as of the last day of
    the data (see :class:`CustomerProfile`).

    ``table``: the customer table as of the last day of the data (:func:`clm_core.customers.customer_table`,
    with its attribute columns), when the caller holds it: the figures are then its row. Raises
    :class:`UnknownCustomerError`, naming close matches, for an id the data do not have.
    """
    customer_id = str(customer_id).strip()
    dataset = workspace.dataset
    money = dataset.has_money
    as_of = data_span(workspace)[1]
    segments, contacts = dataset.segment_columns, dataset.contact_columns
    row = None
    if table is not None:
        rows = table[table["customer_id"] == customer_id]
        if rows.empty:
            raise _unknown(workspace, customer_id, table)
        row = rows.iloc[0]
    else:
        totals = workspace.query("customer_totals", attributes=[*segments, *contacts], customer_id=customer_id,
                                 cutoff=as_of)
        if totals.empty:
            raise _unknown(workspace, customer_id, None)
        row = totals.iloc[0].rename({**segments, **contacts})
    timeline = workspace.query("customer_timeline", customer_id=customer_id, cutoff=as_of)
    timeline["day"] = pd.to_datetime(timeline["day"])
    timeline["purchase_day"] = timeline["purchase_day"].astype(bool)
    timeline[["orders", "return_lines"]] = timeline[["orders", "return_lines"]].astype(np.int64)
    for column in ("bought_value", "returned_value", "net_value"):
        timeline[column] = timeline[column].astype(float)
    if money:
        timeline[["bought_value", "returned_value"]] = timeline[["bought_value", "returned_value"]].fillna(0.0)
    products = workspace.query("customer_products", customer_id=customer_id, cutoff=as_of)
    figures = _figures_from_table(row) if table is not None else _figures_from_rows(row, timeline, as_of, money)
    if not money:
        figures["revenue"] = figures["average_order_value"] = None
    return CustomerProfile(
        customer_id=customer_id,
        as_of=as_of,
        has_money=money,
        figures={key: _plain(value) for key, value in figures.items()},
        segments={label: _plain(row.get(label)) for label in segments.values()},
        contacts={label: _plain(row.get(label)) for label in contacts.values()},
        timeline=timeline,
        top_products=_top_products(products, money),
    )
