"""The CLV calculator against hand-computed values, and its pre-fill against an independent pandas count."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from clm_core.clv_calculator import CalculatorInputs, calculate, clv_value, prefill_from_workspace, sensitivity

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


def test_prefill_matches_an_independent_count(online_retail_workspace, online_retail_path):
    workspace, _ = online_retail_workspace
    values = prefill_from_workspace(workspace)
    raw = pd.read_csv(online_retail_path, dtype=str, keep_default_na=False).drop_duplicates()
    raw = raw[raw["CustomerID"] != ""]
    returns = (raw["Quantity"].astype(float) < 0) | (raw["UnitPrice"].astype(float) < 0) | raw["InvoiceNo"].str.match(
        r"^[Cc][0-9]")
    purchases = raw[~returns].assign(ts=pd.to_datetime(raw["InvoiceDate"]))
    start = purchases["ts"].min().normalize()
    end = purchases["ts"].max().normalize() + pd.Timedelta(days=1)
    # Online Retail spans just over a year: two halves of 187 days, annualised.
    window = (end - start).days // 2
    base = purchases[(purchases["ts"] >= end - pd.Timedelta(days=2 * window))
                     & (purchases["ts"] < end - pd.Timedelta(days=window))]["CustomerID"].unique()
    later = purchases[purchases["ts"] >= end - pd.Timedelta(days=window)]
    retained = len(set(base) & set(later["CustomerID"]))
    assert values["annual_retention"] == pytest.approx((retained / len(base)) ** (365 / window), rel=1e-12)
    orders_per_customer = later["InvoiceNo"].nunique() / later["CustomerID"].nunique()
    assert values["orders_per_year"] == pytest.approx(orders_per_customer * 365 / window, rel=1e-12)
    assert f"{retained:,} of {len(base):,}" in values["note"]
