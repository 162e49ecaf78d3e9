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

from clm_core.engine import Engine
from clm_core.errors import ClmError

__all__ = ["CalculatorInputs", "CalculatorResult", "calculate", "clv_value", "yearly_table", "sensitivity",
           "prefill_from_workspace", "ObservedInput", "FORMULA",
           "sensitivity_axes"]

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


def sensitivity_axes(inputs: CalculatorInputs) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the sensitivity grid: retention 30 % to 95 % in steps of 5 points and discount rates
    0 % to 20 % in steps of 2.5 points, each with the current input added where it falls between steps, so the
    grid always has a cell for the inputs on screen."""
    retentions = np.union1d(np.round(np.arange(0.3, 0.951, 0.05), 4), [round(inputs.annual_retention, 4)])
    rates = np.union1d(np.round(np.arange(0.0, 0.201, 0.025), 4), [round(inputs.annual_discount_rate, 4)])
    return retentions, rates


@dataclass(frozen=True)
class ObservedInput:
    """One calculator input measured in a dataset, or why it could not be.

    ``value`` is None when it could not be filled (``definition`` then says why); ``basis`` is how many
    customers (or orders, for the order value) the figure rests on, named by ``basis_label``; ``source`` is
    ``observed`` (counted in the data), ``model`` (a BG/NBD forecast) or ``not filled``.
    """

    name: str
    label: str
    value: float | None
    definition: str
    basis: int | None = None
    basis_label: str = "customers"
    source: str = "observed"


def _window_dates(end: pd.Timestamp, days: int) -> str:
    return f"{end - timedelta(days=days):%d %b %Y} to {end - timedelta(days=1):%d %b %Y}"


def _forecast_window_retention(workspace: Engine, days: int) -> tuple[float, int, str]:
    """BG/NBD forecast of annual retention: of the customers who bought in the last ``days`` days of the data,
    the expected share who buy again in the next 365 days; with the number of those customers and a caution
    when the fit sees no drop-out.

    For a customer with history (x, t_x, T) the chance of a purchase in the next t is
    P(alive | x, t_x, T) x (1 - ((alpha + T) / (alpha + T + t))^(r + x)): while alive, purchases follow a
    Poisson process whose rate has the posterior Gamma(r + x, alpha + T) (Fader, Hardie and Lee 2005,
    section 5), and in BG/NBD a customer can only drop out right after a purchase, so the first one counts.
    """
    from clm_core.clv import UNITS, customer_summary, fit_clv_models

    summary = customer_summary(workspace, unit="week")
    fitted = fit_clv_models(summary, purchase_model="bgnbd", with_spend=False)
    frame = summary.frame
    recent = frame[(frame["T_days"] - frame["recency_days"]) < days]
    unit_days = UNITS[summary.unit]
    x = recent["frequency"].to_numpy(dtype=float)
    t_x = recent["recency_days"].to_numpy() / unit_days
    T = recent["T_days"].to_numpy() / unit_days
    params = fitted.purchase.params_
    alive = fitted.purchase.probability_alive(x, t_x, T)
    later = 365 / unit_days
    buys = alive * (1 - ((params["alpha"] + T) / (params["alpha"] + T + later)) ** (params["r"] + x))
    caution = ""
    if params["a"] / (params["a"] + params["b"]) < 1e-4:
        caution = (" The model sees almost no customers dropping out in your data, so it counts only how often "
                   "customers buy: read this figure as an upper bound.")
    return float(buys.mean()), len(recent), caution


def prefill_from_workspace(workspace: Engine) -> list[ObservedInput]:
    """Calculator inputs measured in a dataset: average order value, orders per year and annual retention, each
    with its definition and the number of customers (or orders) behind it.

    The definitions do not depend on how long the data are:

    * average order value: purchase revenue before returns / purchase orders, over all the data;
    * orders per year: purchase orders in the last 365 days / customers who bought in them (needs a year);
    * annual retention: of the customers who bought in the 365 days before the last 365, the share who bought
      again in the last 365 days (needs two years). With less than two years of data, the BG/NBD model fitted on
      all of it forecasts the same share for the customers of the last 365 days (or of all the data, if shorter)
      over the next 365 days, and the figure says so.
    """
    from clm_core.summary import dataset_summary

    summary = dataset_summary(workspace)
    start, end = summary.first_date.normalize(), summary.last_date.normalize() + timedelta(days=1)
    span_days = (end - start).days
    figures = []
    if summary.average_order_value is None:
        figures.append(ObservedInput(
            "average_order_value", "Average order value", None,
            "Not filled: your file has no amount column, so the order value stays the one you enter, and CLV is "
            "only as good as that figure.", source="not filled"))
    else:
        figures.append(ObservedInput(
            "average_order_value", "Average order value", summary.average_order_value,
            f"Revenue of purchases (before returns) divided by purchase orders, from {start:%d %b %Y} to "
            f"{summary.last_date:%d %b %Y}.", basis=summary.orders, basis_label="orders"))

    year = timedelta(days=365)
    row = workspace.query("window_retention", base_start=end - 2 * year, base_end=end - year, next_end=end).iloc[0]
    active, orders = int(row["next_customers"]), int(row["next_orders"])
    if span_days < 365:
        figures.append(ObservedInput(
            "orders_per_year", "Orders per year", None,
            f"Not filled: your data cover {span_days} days, less than a year, and scaling a shorter period up to a "
            "year would depend on the period chosen. Enter it by hand.", source="not filled"))
    else:
        figures.append(ObservedInput(
            "orders_per_year", "Orders per year", orders / active if active else 0.0,
            f"Purchase orders from {_window_dates(end, 365)} ({orders:,}) divided by the customers who bought in "
            "that time.", basis=active))

    if span_days >= 730:
        base, retained = int(row["base_customers"]), int(row["retained_customers"])
        figures.append(ObservedInput(
            "annual_retention", "Annual retention", retained / base if base else 0.0,
            f"Of the customers who bought from {_window_dates(end - year, 365)}, the share who bought again from "
            f"{_window_dates(end, 365)} ({retained:,} customers).", basis=base))
    else:
        days = min(365, span_days)
        try:
            value, customers, caution = _forecast_window_retention(workspace, days)
        except ClmError as error:
            figures.append(ObservedInput(
                "annual_retention", "Annual retention", None,
                f"Not filled: your data cover less than two years, so retention cannot be counted, and the BG/NBD "
                f"model that would forecast it could not be fitted ({error}) Enter it by hand.",
                source="not filled"))
        else:
            who = "in the last 365 days" if days == 365 else f"in your data ({span_days} days)"
            figures.append(ObservedInput(
                "annual_retention", "Annual retention", value,
                f"BG/NBD model forecast, since your data cover {span_days} days, less than the two years a count "
                f"needs: of the customers who bought {who} (to {summary.last_date:%d %b %Y}), the share expected to "
                f"buy again in the next 365 days.{caution}", basis=customers, source="model"))
    return figures
