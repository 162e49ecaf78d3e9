"""The CLV calculator against hand-computed values, and its pre-fill against an independent pandas count."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from clm_core.clv_calculator import (
    CalculatorInputs,
    calculate,
    clv_value,
    prefill_from_workspace,
    sensitivity,
    sensitivity_axes,
)
from clm_core.workspace import Workspace
from tests.conftest import DEMO_FILE as DEMO_PATH

# AOV 50, 4 orders a year, 30 % margin: m = 60 a year per active customer.
INPUTS = CalculatorInputs(average_order_value=50, orders_per_year=4, gross_margin=0.3, annual_retention=0.7,
                          annual_discount_rate=0.1, horizon_years=5, acquisition_cost=100)


def _by_loop(m, r, d, years):
    return sum(m * r ** (t - 1) / (1 + d) ** t for t in range(1, years + 1))


def test_finite_horizon_by_hand():
    result = calculate(INPUTS)
    assert result.clv == pytest.approx(_by_loop(60, 0.7, 0.1, 5), rel=1e-12)
    assert result.clv == pytest.approx(134.3462629850, rel=1e-10)
    assert result.clv_to_cac == pytest.approx(result.clv / 100)
    assert result.table["discounted_margin"].sum() == pytest.approx(result.clv)
    assert result.table["share_active"].tolist() == pytest.approx([1, 0.7, 0.49, 0.343, 0.2401])
    # Cumulative discounted margin: 54.55, 89.26, 111.34 -> 100 is reached 48.6 % into year 3.
    y1, y2, y3 = 60 / 1.1, 60 * 0.7 / 1.1 ** 2, 60 * 0.49 / 1.1 ** 3
    assert result.payback_years == pytest.approx(2 + (100 - y1 - y2) / y3, rel=1e-12)


def test_unlimited_horizon_closed_form():
    unlimited = replace(INPUTS, horizon_years=None)
    assert clv_value(unlimited) == pytest.approx(60 / (1 + 0.1 - 0.7))
    assert clv_value(unlimited) == pytest.approx(_by_loop(60, 0.7, 0.1, 400), rel=1e-9)
    assert clv_value(replace(INPUTS, horizon_years=400)) == pytest.approx(clv_value(unlimited), rel=1e-9)


def test_payback_beyond_the_listed_years_and_never():
    slow = replace(INPUTS, horizon_years=None, annual_retention=0.99, annual_discount_rate=0.02,
                   acquisition_cost=1400)
    result = calculate(slow)
    cumulative = np.cumsum([60 * 0.99 ** (t - 1) / 1.02 ** t for t in range(1, 200)])
    year = int(np.argmax(cumulative >= 1400))
    assert result.payback_years == pytest.approx(year + (1400 - cumulative[year - 1]) / (
        cumulative[year] - cumulative[year - 1]), abs=0.05)
    assert calculate(replace(INPUTS, acquisition_cost=10_000)).payback_years is None
    assert calculate(replace(INPUTS, acquisition_cost=0)).clv_to_cac is None


def test_sensitivity_grid():
    grid = sensitivity(INPUTS, np.array([0.5, 0.7]), np.array([0.0, 0.1]))
    assert grid.loc[0.7, 0.1] == pytest.approx(calculate(INPUTS).clv)
    assert grid.loc[0.5, 0.0] == pytest.approx(_by_loop(60, 0.5, 0.0, 5))
    assert grid.loc[0.7, 0.0] > grid.loc[0.7, 0.1] > grid.loc[0.5, 0.1]


@pytest.mark.parametrize("bad", [dict(annual_retention=1.2), dict(average_order_value=-1), dict(horizon_years=0),
                                 dict(horizon_years=None, annual_retention=1.0, annual_discount_rate=0.0)])
def test_impossible_inputs_are_refused(bad):
    with pytest.raises(ValueError):
        replace(INPUTS, **bad)


def _figures(workspace) -> dict:
    return {figure.name: figure for figure in prefill_from_workspace(workspace)}


@pytest.fixture(scope="module")
def online_retail_purchases(online_retail_path) -> pd.DataFrame:
    """Online Retail's purchase lines as ingest keeps them: customer id present, exact copies dropped, returns
    (negative quantity or price, invoice numbers like C536379) left out."""
    raw = pd.read_csv(online_retail_path, dtype=str, keep_default_na=False).drop_duplicates()
    raw = raw[raw["CustomerID"] != ""]
    returns = (raw["Quantity"].astype(float) < 0) | (raw["UnitPrice"].astype(float) < 0) | raw["InvoiceNo"].str.match(
        r"^[Cc][0-9]")
    purchases = raw[~returns]
    return purchases.assign(ts=pd.to_datetime(purchases["InvoiceDate"]),
                            value=purchases["Quantity"].astype(float) * purchases["UnitPrice"].astype(float))


def test_prefill_on_online_retail_against_an_independent_count(online_retail_workspace, online_retail_purchases):
    workspace, _ = online_retail_workspace
    figures = _figures(workspace)
    purchases = online_retail_purchases
    end = purchases["ts"].max().normalize() + pd.Timedelta(days=1)
    # Order value: purchase revenue before returns per purchase order, over all the data.
    orders = purchases["InvoiceNo"].nunique()
    assert figures["average_order_value"].value == pytest.approx(purchases["value"].sum() / orders, rel=1e-9)
    assert figures["average_order_value"].basis == orders
    # Orders per year: orders of the last 365 days per customer who bought in them (no scaling).
    last_year = purchases[purchases["ts"] >= end - pd.Timedelta(days=365)]
    assert figures["orders_per_year"].value == pytest.approx(
        last_year["InvoiceNo"].nunique() / last_year["CustomerID"].nunique(), rel=1e-12)
    assert figures["orders_per_year"].basis == last_year["CustomerID"].nunique()
    assert figures["orders_per_year"].value < 4.5  # the old half-year scaling said 6.07

    # 374 days of data: retention is the BG/NBD forecast for the customers of the last 365 days, recomputed here
    # from the customer summary with equation (A10) of Fader, Hardie and Lee for P(alive) and the Poisson chance
    # of at least one purchase in 52.14 weeks under the rate's posterior Gamma(r + x, alpha + T).
    from clm_core.clv import customer_summary, fit_clv_models

    retention = figures["annual_retention"]
    assert retention.source == "model" and "BG/NBD" in retention.definition
    summary = customer_summary(workspace, unit="week")
    r, alpha, a, b = fit_clv_models(summary, with_spend=False).purchase.params_[["r", "alpha", "a", "b"]]
    frame = summary.frame[summary.frame["T_days"] - summary.frame["recency_days"] < 365]
    x, t_x, T = frame["frequency"].to_numpy(float), frame["recency_days"] / 7, frame["T_days"] / 7
    odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-300) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    buys = 1 / (1 + odds) * (1 - ((alpha + T) / (alpha + T + 365 / 7)) ** (r + x))
    assert retention.value == pytest.approx(buys.mean(), rel=1e-9)
    assert retention.basis == len(frame)
    assert abs(retention.basis - last_year["CustomerID"].nunique()) < 0.01 * retention.basis
    assert "upper bound" in retention.definition  # the fit finds no drop-out on Online Retail


def _demo_purchases() -> pd.DataFrame:
    return pd.read_csv(DEMO_PATH, dtype={"customer_id": str}, parse_dates=["order_date"])


def _share_who_buy_again(frame: pd.DataFrame, end: pd.Timestamp) -> tuple[float, int]:
    """Of the customers who bought in the 365 days before ``end``, the share who bought in the 365 days after."""
    year = pd.Timedelta(days=365)
    base = set(frame.loc[(frame["order_date"] >= end - year) & (frame["order_date"] < end), "customer_id"])
    later = set(frame.loc[(frame["order_date"] >= end) & (frame["order_date"] < end + year), "customer_id"])
    return len(base & later) / len(base), len(base)


def test_prefill_counts_retention_with_two_years_of_data(tmp_path):
    demo = _demo_purchases()
    end = demo["order_date"].max().normalize() + pd.Timedelta(days=1)
    share, base = _share_who_buy_again(demo, end - pd.Timedelta(days=365))
    with Workspace(tmp_path / "demo.duckdb") as workspace:
        workspace.ingest(DEMO_PATH)
        retention = _figures(workspace)["annual_retention"]
    assert retention.source == "observed"
    assert retention.value == pytest.approx(share, rel=1e-12) and retention.basis == base


def test_forecast_from_one_year_matches_the_year_that_followed(tmp_path):
    """Fitted on the demo's first year only, the BG/NBD forecast of the share of that year's customers who buy
    again in the next 365 days is checked against what the second year shows."""
    demo = _demo_purchases()
    first_year = demo[demo["order_date"] < pd.Timestamp("2024-01-01")]
    path = tmp_path / "first_year.csv"
    first_year.to_csv(path, index=False)
    end = first_year["order_date"].max().normalize() + pd.Timedelta(days=1)
    share, base = _share_who_buy_again(demo, end)
    with Workspace(tmp_path / "year.duckdb") as workspace:
        workspace.ingest(path)
        retention = _figures(workspace)["annual_retention"]
    assert retention.source == "model" and retention.basis == base
    # 3,000 customers: a sampling standard error near one point; the model is allowed two.
    assert retention.value == pytest.approx(share, abs=0.02), (retention.value, share)


def test_what_cannot_be_filled_says_why(tmp_path):
    demo = _demo_purchases()
    short = demo[demo["order_date"] < pd.Timestamp("2023-07-01")]
    path = tmp_path / "no_money_half_year.csv"
    short[["customer_id", "order_id", "order_date"]].to_csv(path, index=False)
    with Workspace(tmp_path / "short.duckdb") as workspace:
        workspace.ingest(path)
        figures = _figures(workspace)
    assert figures["average_order_value"].value is None
    assert "no amount column" in figures["average_order_value"].definition
    assert figures["orders_per_year"].value is None and "less than a year" in figures["orders_per_year"].definition
    assert figures["annual_retention"].source == "model" and 0 < figures["annual_retention"].value < 1


@pytest.mark.parametrize("retention", [0.53, 0.88, 0.3, 0.999])
def test_sensitivity_grid_has_a_row_for_the_inputs(retention):
    inputs = replace(INPUTS, annual_retention=retention, annual_discount_rate=0.085)
    retentions, rates = sensitivity_axes(inputs)
    assert np.sum(np.isclose(retentions, retention)) == 1 and np.sum(np.isclose(rates, 0.085)) == 1
    assert np.all(np.diff(retentions) > 0) and np.all(np.diff(rates) > 0)
    grid = sensitivity(inputs, retentions, rates)
    assert grid.loc[retention, 0.085] == pytest.approx(clv_value(inputs))
