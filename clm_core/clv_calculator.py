"""The simple CLV calculator: lifetime value from a handful of assumptions, no data needed.

Convention (shown in the app): a customer brings margin ``m = AOV x orders per
year x gross margin`` at the end of each year they are still active; a
customer active in year ``t`` is still active in year ``t + 1`` with
probability ``r`` (annual retention), and money is discounted at ``d`` a year::

    CLV = sum_{t=1..H} m r^(t-1) / (1 + d)^t
        = m / (1 + d) * (1 - q^H) / (1 - q),   q = r / (1 + d)
    CLV (unlimited horizon) = m / (1 + d - r)

CLV/CAC compares that value with the acquisition cost; the payback period is
when the cumulative discounted margin first covers the acquisition cost,
interpolated linearly within the year.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import pandas as pd

from clm_core.errors import DataRangeError
from clm_core.workspace import Workspace

__all__ = ["CalculatorInputs", "CalculatorResult", "calculate", "clv_value", "yearly_table", "sensitivity",
           "prefill_from_workspace", "FORMULA"]

FORMULA = r"CLV = \sum_{t=1}^{H} \frac{m\, r^{t-1}}{(1+d)^{t}} \qquad CLV_{H=\infty} = \frac{m}{1 + d - r}"
_TABLE_YEARS_UNLIMITED = 50


@dataclass(frozen=True)
class CalculatorInputs:
    """Rates are fractions (0.3 for 30 %); ``horizon_years`` None means unlimited."""

    average_order_value: float
    orders_per_year: float
    gross_margin: float
    annual_retention: float
    annual_discount_rate: float
    horizon_years: int | None
    acquisition_cost: float = 0.0

    def __post_init__(self) -> None:
        if self.average_order_value < 0 or self.orders_per_year < 0 or self.acquisition_cost < 0:
            raise ValueError("order value, orders per year and acquisition cost cannot be negative")
        if not 0 <= self.annual_retention <= 1:
            raise ValueError("annual retention must be between 0 and 1")
        if not -1 < self.annual_discount_rate:
            raise ValueError("the discount rate must be above -100 %")
        if self.horizon_years is not None and self.horizon_years < 1:
            raise ValueError("the horizon must be at least one year")
        if self.horizon_years is None and self.annual_retention >= 1 + self.annual_discount_rate:
            raise ValueError("with an unlimited horizon, retention must be below 1 + discount rate "
                             "(otherwise the value never stops growing)")

    @property
    def annual_margin(self) -> float:
        """m: margin a still-active customer brings in a year."""
        return self.average_order_value * self.orders_per_year * self.gross_margin


@dataclass
class CalculatorResult:
    clv: float
    clv_to_cac: float | None
    payback_years: float | None
    table: pd.DataFrame


def clv_value(inputs: CalculatorInputs) -> float:
    """CLV per acquired customer (before acquisition cost), by the closed forms in the module docstring."""
    m, r, d = inputs.annual_margin, inputs.annual_retention, inputs.annual_discount_rate
    if inputs.horizon_years is None:
        return m / (1 + d - r)
    q = r / (1 + d)
    horizon = inputs.horizon_years
    factor = horizon if np.isclose(q, 1.0) else (1 - q ** horizon) / (1 - q)
    return m / (1 + d) * factor


def yearly_table(inputs: CalculatorInputs) -> pd.DataFrame:
    """Year by year per acquired customer: ``year``, ``share_active`` (r^(t-1)), ``margin``, ``discounted_margin``
    and ``cumulative_discounted_margin``. An unlimited horizon is listed for 50 years."""
    years = np.arange(1, (inputs.horizon_years or _TABLE_YEARS_UNLIMITED) + 1)
    share = inputs.annual_retention ** (years - 1)
    margin = inputs.annual_margin * share
    discounted = margin / (1 + inputs.annual_discount_rate) ** years
    return pd.DataFrame({
        "year": years,
        "share_active": share,
        "margin": margin,
        "discounted_margin": discounted,
        "cumulative_discounted_margin": np.cumsum(discounted),
    })


def _payback(table: pd.DataFrame, cost: float) -> float | None:
    if cost <= 0:
        return 0.0
    cumulative = table["cumulative_discounted_margin"].to_numpy()
    reached = np.flatnonzero(cumulative >= cost)
    if len(reached) == 0:
        return None
    year = reached[0]
    before = cumulative[year - 1] if year > 0 else 0.0
    return float(year + (cost - before) / (cumulative[year] - before))


def calculate(inputs: CalculatorInputs) -> CalculatorResult:
    """CLV, CLV / acquisition cost (None without a cost), payback in years (None if never) and the yearly table."""
    clv = clv_value(inputs)
    table = yearly_table(inputs)
    if inputs.horizon_years is None and inputs.acquisition_cost > table["cumulative_discounted_margin"].iloc[-1]:
        # Beyond the listed years: solve m/(1+d) (1 - q^n)/(1 - q) = cost for n.
        m, r, d = inputs.annual_margin, inputs.annual_retention, inputs.annual_discount_rate
        q = r / (1 + d)
        remaining = 1 - inputs.acquisition_cost * (1 - q) * (1 + d) / m if m > 0 else -1
        payback = float(np.log(remaining) / np.log(q)) if 0 < remaining and 0 < q < 1 else None
    else:
        payback = _payback(table, inputs.acquisition_cost)
    ratio = clv / inputs.acquisition_cost if inputs.acquisition_cost > 0 else None
    return CalculatorResult(clv=clv, clv_to_cac=ratio, payback_years=payback, table=table)


def sensitivity(inputs: CalculatorInputs, retentions: np.ndarray, discount_rates: np.ndarray) -> pd.DataFrame:
    """CLV over a grid: rows are annual retention rates, columns annual discount rates (NaN where undefined)."""
    values = np.full((len(retentions), len(discount_rates)), np.nan)
    for i, retention in enumerate(retentions):
        for j, rate in enumerate(discount_rates):
            try:
                values[i, j] = clv_value(replace(inputs, annual_retention=float(retention),
                                                 annual_discount_rate=float(rate)))
            except ValueError:
                pass
    return pd.DataFrame(values, index=pd.Index(retentions, name="annual_retention"),
                        columns=pd.Index(discount_rates, name="annual_discount_rate"))


def prefill_from_workspace(workspace: Workspace) -> dict:
    """Calculator inputs observed in a dataset: ``average_order_value``, ``orders_per_year``, ``annual_retention``
    and ``note`` (how they were measured).

    Retention is the share of customers active in one window who buy again in
    the next; with two years of data the windows are the last two years,
    otherwise two halves of the data, annualised (r_year = r_window^(365 / days)).
    Orders per year are the next window's orders per active customer, scaled the same way.
    """
    from clm_core.summary import dataset_summary

    summary = dataset_summary(workspace)
    start, end = summary.first_date.normalize(), summary.last_date.normalize() + timedelta(days=1)
    span_days = (end - start).days
    window_days = 365 if span_days >= 730 else span_days // 2
    if window_days < 7:
        raise DataRangeError(f"Your data cover only {span_days} days: too short to observe retention. "
                             "Enter the inputs by hand.")
    base_start = end - timedelta(days=2 * window_days)
    base_end = end - timedelta(days=window_days)
    row = workspace.query("window_retention", base_start=base_start, base_end=base_end, next_end=end).iloc[0]
    base, retained = int(row["base_customers"]), int(row["retained_customers"])
    active, orders = int(row["next_customers"]), int(row["next_orders"])
    scale = 365 / window_days
    window_retention = retained / base if base else 0.0
    if window_days == 365:
        note = (f"Retention: {retained:,} of the {base:,} customers who bought from {base_start:%d %b %Y} to "
                f"{base_end - timedelta(days=1):%d %b %Y} bought again in the following year.")
    else:
        note = (f"Your data cover less than two years, so retention is measured over {window_days} days: "
                f"{retained:,} of {base:,} customers active in the first half bought again in the second half "
                f"({window_retention:.1%}), annualised to {window_retention ** scale:.1%}.")
    return {
        "average_order_value": summary.average_order_value,
        "orders_per_year": orders / active * scale if active else 0.0,
        "annual_retention": window_retention ** scale,
        "note": note,
    }
