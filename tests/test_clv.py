"""Predictive CLV from raw transactions: the published CDNOW results, an independent summary, Online Retail,
parameter recovery on generated data, and the errors bad data get."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from clm_core.clv import (
    CustomerSummary,
    FittedCLV,
    customer_summary,
    fit_clv_models,
    holdout_by_frequency,
    holdout_totals,
    in_time_unit,
    predict_clv,
    predict_customers,
    probability_alive_matrix,
    tracking_curve,
    value_concentration,
)
from clm_core.clv_models import BetaGeoModel, GammaGammaModel
from clm_core.errors import DataRangeError
from clm_core.generator import GeneratorParams, generate_transactions, write_demo_file
from clm_core.ingest import IngestOptions
from clm_core.workspace import Workspace
from tests.test_customers import _netted_purchase_days

CALIBRATION_END = date(1997, 9, 30)
PUBLISHED_BGNBD = dict(r=0.243, alpha=4.414, a=0.793, b=2.426)  # Fader, Hardie and Lee (2005)
PUBLISHED_PARETO = dict(r=0.553, alpha=10.578, s=0.606, beta=11.669)
PUBLISHED_GAMMA_GAMMA = dict(p=6.25, q=3.74, gamma=15.44)  # Fader and Hardie, gamma-gamma note
# lifetimes' BetaGeoFitter(...).summary on the CDNOW sample, column se(coef) (its Hessian, natural parameters).
LIFETIMES_BGNBD_SE = dict(r=0.012557, alpha=0.378221, a=0.185719, b=0.705345)


@pytest.fixture(scope="module")
def cdnow(cdnow_sample_path, tmp_path_factory):
    """The CDNOW sample as the published studies read it: each of its lines is a purchase, identical ones too."""
    workspace = Workspace(tmp_path_factory.mktemp("cdnow") / "cdnow.duckdb")
    workspace.ingest(cdnow_sample_path, options=IngestOptions(keep_duplicates=True))
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def cdnow_summary(cdnow):
    return customer_summary(cdnow, unit="week", calibration_end=CALIBRATION_END)


def _assert_published(params: pd.Series, published: dict) -> None:
    assert_allclose(params[list(published)].to_numpy(), list(published.values()), rtol=0.005)


def test_summary_matches_an_independent_pandas_computation(cdnow_summary, cdnow_sample_path):
    raw = pd.read_csv(cdnow_sample_path, sep=r"\s+", header=None, names=["id", "sample_id", "date", "cds", "usd"],
                      dtype={"id": str, "date": str})
    raw["day"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    daily = raw.groupby(["id", "day"], as_index=False)["usd"].sum()
    calibration = daily[daily["day"] <= pd.Timestamp(CALIBRATION_END)]
    per_customer = calibration.groupby("id").agg(first=("day", "min"), last=("day", "max"), days=("day", "size"),
                                                 total=("usd", "sum"))
    first_value = calibration.sort_values("day").groupby("id")["usd"].first()
    expected = pd.DataFrame({
        "frequency": per_customer["days"] - 1,
        "recency": (per_customer["last"] - per_customer["first"]).dt.days / 7,
        "T": (pd.Timestamp(CALIBRATION_END) - per_customer["first"]).dt.days / 7,
        "repeat_total": per_customer["total"] - first_value,
    })
    ours = cdnow_summary.frame.set_index("customer_id").loc[expected.index]
    assert len(cdnow_summary.frame) == 2_357
    assert (ours["frequency"] == expected["frequency"]).all()
    assert_allclose(ours["recency"], expected["recency"], rtol=1e-12)
    assert_allclose(ours["T"], expected["T"], rtol=1e-12)
    repeaters = expected["frequency"] > 0
    assert_allclose(ours.loc[repeaters, "monetary_value"] * ours.loc[repeaters, "frequency"],
                    expected.loc[repeaters, "repeat_total"], rtol=1e-9)
    assert ours.loc[~repeaters, "monetary_value"].isna().all()
    assert cdnow_summary.repeat_customers == 946
    assert cdnow_summary.holdout_length == 39.0


def test_bgnbd_reproduces_the_published_cdnow_fit(cdnow_summary):
    fitted = fit_clv_models(cdnow_summary, purchase_model="bgnbd")
    _assert_published(fitted.purchase.params_, PUBLISHED_BGNBD)
    assert fitted.purchase.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)  # FHL (2005), Table 1
    _assert_published(fitted.spend.params_, PUBLISHED_GAMMA_GAMMA)
    totals = holdout_totals(cdnow_summary, fitted)
    assert totals["actual"] == 1_882
    assert totals["predicted"] == pytest.approx(1_653.4, abs=0.05)  # lifetimes' reference implementation


def test_published_bgnbd_parameters_predict_the_holdout(cdnow_summary):
    from clm_core.clv import FittedCLV

    published = FittedCLV("bgnbd", BetaGeoModel.from_params(**PUBLISHED_BGNBD), None, "week")
    assert holdout_totals(cdnow_summary, published)["predicted"] == pytest.approx(1_653, abs=1.5)


def test_pareto_nbd_reproduces_the_published_cdnow_fit(cdnow_summary):
    fitted = fit_clv_models(cdnow_summary, purchase_model="pareto", with_spend=False)
    _assert_published(fitted.purchase.params_, PUBLISHED_PARETO)
    assert fitted.spend is None


@pytest.mark.parametrize("model", ["bgnbd", "pareto"])
def test_a_fit_in_weeks_converted_to_days_is_the_fit_in_days(cdnow, model):
    weeks = fit_clv_models(customer_summary(cdnow, unit="week", calibration_end=CALIBRATION_END),
                           purchase_model=model)
    in_days = customer_summary(cdnow, unit="day", calibration_end=CALIBRATION_END)
    searched = fit_clv_models(in_days, purchase_model=model)  # the optimiser, in days
    converted = in_time_unit(weeks, in_days)
    assert converted.unit == "day"
    assert_allclose(converted.purchase.params_, searched.purchase.params_, rtol=2e-4)
    assert_allclose(converted.purchase.params_se_, searched.purchase.params_se_, rtol=2e-3)
    assert converted.purchase.log_likelihood_ == pytest.approx(searched.purchase.log_likelihood_, abs=1e-4)
    assert converted.purchase.log_likelihood_ != pytest.approx(weeks.purchase.log_likelihood_)  # days' data
    assert converted.spend is weeks.spend
    ours, theirs = predict_clv(in_days, converted).scores, predict_clv(in_days, searched).scores
    assert_allclose(ours["clv"], theirs["clv"], rtol=1e-4)
    assert_allclose(ours["probability_alive"], theirs["probability_alive"], rtol=1e-4)


def test_validation_tables_add_up(cdnow, cdnow_summary):
    fitted = fit_clv_models(cdnow_summary, purchase_model="bgnbd", with_spend=False)
    by_frequency = holdout_by_frequency(cdnow_summary, fitted)
    assert by_frequency["frequency"].tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert by_frequency["customers"].sum() == 2_357
    assert (by_frequency["actual"] * by_frequency["customers"]).sum() == pytest.approx(1_882)
    assert (by_frequency["predicted"] * by_frequency["customers"]).sum() == pytest.approx(
        holdout_totals(cdnow_summary, fitted)["predicted"])
    tracking = tracking_curve(cdnow, cdnow_summary, fitted)
    assert tracking["date"].iloc[0] == pd.Timestamp("1997-01-01")
    assert tracking["date"].iloc[-1] == pd.Timestamp("1998-06-30")
    assert tracking["actual"].is_monotonic_increasing and tracking["predicted"].is_monotonic_increasing
    # Repeat purchases in calibration (946 repeaters' frequencies) plus the holdout's 1,882.
    calibration_repeats = cdnow_summary.frame["frequency"].sum()
    assert tracking["actual"].iloc[-1] == calibration_repeats + 1_882
    at_end = tracking.set_index("date")["actual"].asof(pd.Timestamp(CALIBRATION_END))
    assert at_end <= calibration_repeats
    # The model's cumulative curve at the end equals the calibration expectation plus the holdout prediction
    # only in expectation; it must be close to the actual (the published tracking plot is within ~5 %).
    assert tracking["predicted"].iloc[-1] == pytest.approx(tracking["actual"].iloc[-1], rel=0.06)


def test_per_customer_predictions(cdnow_summary):
    fitted = fit_clv_models(cdnow_summary, purchase_model="bgnbd")
    scores = predict_customers(cdnow_summary, fitted, horizon_months=12, monthly_discount_rate=0.01, margin=0.3)
    assert len(scores) == 2_357 and scores["customer_id"].is_unique
    assert scores["clv"].is_monotonic_decreasing
    assert np.isfinite(scores[["probability_alive", "expected_purchases", "expected_order_value", "clv"]]).all().all()
    assert scores["probability_alive"].between(0, 1).all()
    # Without discounting, CLV = margin x spend x expected purchases over the horizon.
    flat = predict_customers(cdnow_summary, fitted, horizon_months=12, monthly_discount_rate=0.0, margin=0.3)
    assert_allclose(flat["clv"], 0.3 * flat["expected_order_value"] * flat["expected_purchases"], rtol=1e-9)
    discounted, undiscounted = (frame.set_index("customer_id")["clv"].sort_index() for frame in (scores, flat))
    assert (discounted <= undiscounted + 1e-12).all()
    # A year's purchases of a new-looking customer: frequency 0 customers have P(alive) = 1 under BG/NBD.
    assert (scores.loc[scores["frequency"] == 0, "probability_alive"] == 1).all()
    shares = value_concentration(scores["clv"])
    assert 0.1 < shares[0.1] < shares[0.2] < 1


def test_probability_alive_matrix_shape(cdnow_summary):
    fitted = fit_clv_models(cdnow_summary, purchase_model="bgnbd", with_spend=False)
    matrix = probability_alive_matrix(cdnow_summary, fitted, max_frequency=10, steps=20)
    assert matrix.shape == (11, 20)
    assert (matrix.iloc[0] == 1).all()  # no repeat purchase: alive under BG/NBD
    assert (matrix.iloc[5].diff().dropna() >= 0).all()  # more recent last purchase, more likely alive


def _online_retail_lines(path) -> pd.DataFrame:
    """Online Retail's lines read with pandas as the ingest cleans them (no customer: out; exact duplicates: out;
    a negative quantity or price, or a C invoice, is a return with a negative amount), in the canonical columns."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).drop_duplicates()
    raw = raw[raw["CustomerID"] != ""]
    quantity, price = raw["Quantity"].astype(float), raw["UnitPrice"].astype(float)
    is_return = (quantity < 0) | (price < 0) | raw["InvoiceNo"].str.match(r"^[Cc][0-9]")
    sign = np.where(is_return, -1, 1)
    return pd.DataFrame({"customer_id": raw["CustomerID"], "order_id": raw["InvoiceNo"],
                         "order_ts": pd.to_datetime(raw["InvoiceDate"]), "product_id": raw["StockCode"],
                         "product_name": raw["Description"], "quantity": quantity.abs() * sign,
                         "amount": (quantity * price).abs() * sign, "is_return": is_return})


def test_online_retail_end_to_end(online_retail_workspace, online_retail_path):
    workspace, _ = online_retail_workspace
    summary = customer_summary(workspace, unit="week")
    lines = _online_retail_lines(online_retail_path)
    days = _netted_purchase_days(lines)
    assert len(summary.frame) == days["customer_id"].nunique()
    assert summary.frame["frequency"].sum() + len(summary.frame) == len(days)
    fitted = fit_clv_models(summary, purchase_model="bgnbd")
    assert np.isfinite(fitted.purchase.params_).all() and np.isfinite(fitted.spend.params_).all()
    scores = predict_customers(summary, fitted)
    assert np.isfinite(scores["clv"]).all() and (scores["clv"] >= 0).all()


def test_parameters_recovered_from_generated_data(tmp_path):
    truth = GeneratorParams()
    path = tmp_path / "generated.csv"
    write_demo_file(20_000, path, seed=3, params=truth)
    with Workspace() as workspace:
        workspace.ingest(path)
        summary = customer_summary(workspace, unit="week")
        fitted = fit_clv_models(summary)
    # 20,000 customers: sampling error of each estimate is a few per cent.
    assert_allclose(fitted.purchase.params_[["r", "alpha", "a", "b"]].to_numpy(),
                    [truth.r, truth.alpha, truth.a, truth.b], rtol=0.08)
    p, q, gamma = fitted.spend.params_
    assert_allclose([p, q, gamma], [truth.p, truth.q, truth.gamma], rtol=0.15)
    assert p * gamma / (q - 1) == pytest.approx(truth.p * truth.gamma / (truth.q - 1), rel=0.04)


def _workspace_from(tmp_path, text: str) -> Workspace:
    path = tmp_path / "tiny.csv"
    path.write_text(text)
    workspace = Workspace()
    workspace.ingest(path)
    return workspace


def test_one_day_of_data_is_explained(tmp_path):
    workspace = _workspace_from(tmp_path, "customer_id,order_date,amount\na,2021-03-01,5\nb,2021-03-01,7\n")
    with pytest.raises(DataRangeError, match="All purchases are on one day"):
        customer_summary(workspace)


def test_calibration_end_outside_the_data_is_explained(cdnow):
    with pytest.raises(DataRangeError, match="outside the data"):
        customer_summary(cdnow, calibration_end=date(2030, 1, 1))
    with pytest.raises(DataRangeError, match="outside the data"):
        customer_summary(cdnow, calibration_end=date(1998, 6, 30))  # nothing left for the holdout


def test_no_repeat_customers_is_explained(tmp_path):
    workspace = _workspace_from(tmp_path, "customer_id,order_date,amount\na,2021-03-01,5\nb,2021-03-09,7\n")
    summary = customer_summary(workspace)
    with pytest.raises(DataRangeError, match="No customer bought more than once"):
        fit_clv_models(summary)


def test_a_cancelled_order_is_not_repeat_value(online_retail_workspace):
    """Customer 16446 ordered 80,995 units (GBP 168,469.60) and cancelled them twelve minutes later: netted, they
    are a one-time buyer of GBP 5.40 (their first order), nowhere near the top customers."""
    workspace, _ = online_retail_workspace
    summary = customer_summary(workspace, unit="week")
    customer = summary.frame.set_index("customer_id").loc["16446"]
    assert customer["frequency"] == 0 and np.isnan(customer["monetary_value"])
    scores = predict_customers(summary, fit_clv_models(summary, purchase_model="bgnbd"))
    rank = scores["clv"].rank(ascending=False).to_numpy()[scores["customer_id"].to_numpy() == "16446"][0]
    assert rank > len(scores) / 2


def test_bgnbd_standard_errors_match_lifetimes_on_cdnow(cdnow_summary):
    fitted = fit_clv_models(cdnow_summary, purchase_model="bgnbd", with_spend=False)
    se = fitted.purchase.params_se_
    assert_allclose(se[list(LIFETIMES_BGNBD_SE)].to_numpy(), list(LIFETIMES_BGNBD_SE.values()), rtol=1e-3)


def test_intervals_contain_the_prediction_and_add_up(cdnow_summary):
    fitted = fit_clv_models(cdnow_summary, purchase_model="bgnbd")
    forecast = predict_clv(cdnow_summary, fitted, horizon_months=12, monthly_discount_rate=0.01, margin=0.3)
    scores = forecast.scores
    assert forecast.total == pytest.approx(scores["clv"].sum())
    assert ((scores["clv_low"] <= scores["clv"]) & (scores["clv"] <= scores["clv_high"])).all()
    low, high = forecast.total_interval
    assert low < forecast.total < high
    # The total's interval is narrower, relative to it, than a single customer's: errors are shared, not summed.
    assert (high - low) / forecast.total < ((scores["clv_high"] - scores["clv_low"]) / scores["clv"]).median()
    # Parameters known exactly (set, not fitted): no interval.
    exact = FittedCLV("bgnbd", BetaGeoModel.from_params(fitted.purchase.params_),
                      GammaGammaModel.from_params(fitted.spend.params_), "week")
    assert predict_clv(cdnow_summary, exact).total_interval is None


def test_customers_who_bought_again_only_at_no_charge_get_no_spend():
    # "free" bought again twice, both times zero-price lines only: no repeat day worth anything.
    frame = pd.DataFrame({
        "customer_id": ["new", "buyer", "free", "free_too"], "first_day": pd.Timestamp("2021-01-01"),
        "frequency": [0, 2, 1, 3], "spend_frequency": [0, 2, 0, 0], "recency_days": [0, 70, 35, 90],
        "T_days": [140, 140, 140, 140], "monetary_value": [np.nan, 40.0, np.nan, np.nan], "holdout_purchases": 0,
        "holdout_value": 0.0})
    frame["recency"], frame["T"] = frame["recency_days"] / 7, frame["T_days"] / 7
    summary = CustomerSummary(frame, "week", date(2021, 5, 21), date(2021, 1, 1), date(2021, 5, 21), None)
    spend = GammaGammaModel.from_params(p=6.0, q=4.0, gamma=15.0)
    fitted = FittedCLV("bgnbd", BetaGeoModel.from_params(r=0.5, alpha=5.0, a=0.8, b=2.5), spend, "week")
    scores = predict_customers(summary, fitted).set_index("customer_id")
    assert scores.loc["new", "expected_order_value"] == pytest.approx(6.0 * 15.0 / 3.0)  # population mean
    assert scores.loc["buyer", "expected_order_value"] == pytest.approx((15.0 + 80.0) * 6.0 / (12.0 + 3.0))
    assert (scores.loc[["free", "free_too"], ["expected_order_value", "clv"]] == 0).all().all()
    assert (scores.loc[["free", "free_too"], "expected_purchases"] > 0).all()  # still expected to buy


def _generated_summary(customers: int, seed: int, truth: GeneratorParams) -> CustomerSummary:
    """The customer summary of generated transactions, built here with pandas (one purchase per day)."""
    lines = generate_transactions(customers, seed=seed, params=truth)
    daily = (lines.assign(day=lines["order_date"].dt.normalize()).groupby(["customer_id", "day"], as_index=False)
             ["amount"].sum().sort_values(["customer_id", "day"]))
    by_customer = daily.groupby("customer_id")
    first, last = by_customer["day"].min(), by_customer["day"].max()
    frequency = by_customer.size() - 1
    repeat_value = by_customer["amount"].sum() - by_customer["amount"].first()
    end = pd.Timestamp(truth.end)
    frame = pd.DataFrame({"customer_id": first.index, "first_day": first.to_numpy(), "frequency": frequency.to_numpy(),
                          "recency_days": (last - first).dt.days.to_numpy(), "T_days": (end - first).dt.days.to_numpy()})
    frame["recency"], frame["T"] = frame["recency_days"] / 7, frame["T_days"] / 7
    frame["monetary_value"] = (repeat_value / frequency.where(frequency > 0)).to_numpy()
    frame["spend_frequency"] = frame["frequency"]  # every generated purchase is worth something
    frame["holdout_purchases"], frame["holdout_value"] = 0, 0.0
    return CustomerSummary(frame, "week", end.date(), first.min().date(), end.date(), None)


def test_total_interval_covers_the_true_expected_value_about_90_percent_of_the_time():
    """Repeated datasets from known parameters: the 90 % interval of the total CLV must contain the total
    computed with the true parameters (on the same customers) in about 90 % of them. 40 draws here
    (benchmarks/coverage_clv.py runs 200 and prints the figure)."""
    truth = GeneratorParams()
    true_models = FittedCLV("bgnbd", BetaGeoModel.from_params(r=truth.r, alpha=truth.alpha, a=truth.a, b=truth.b),
                            GammaGammaModel.from_params(p=truth.p, q=truth.q, gamma=truth.gamma), "week")
    covered = []
    for seed in range(40):
        summary = _generated_summary(2_000, seed + 100, truth)
        forecast = predict_clv(summary, fit_clv_models(summary))
        low, high = forecast.total_interval
        covered.append(low <= predict_clv(summary, true_models).total <= high)
    coverage = float(np.mean(covered))
    # Binomial(40, 0.9): 30 or fewer, or all 40, happen less than 2 % of the time each.
    assert 0.75 < coverage < 1.0, coverage


def test_export_has_plain_columns_that_match_the_raw_file(online_retail_workspace, online_retail_path):
    """The per-customer export: first and last purchase dates, days since the last purchase, orders and revenue
    as a marketer reads them, counted here from the raw file (returns netted one at a time); the model's
    recency under a name that says it runs from the first purchase to the last."""
    from clm_core.clv import customer_export

    workspace, _ = online_retail_workspace
    summary = customer_summary(workspace, unit="week")
    scores = predict_customers(summary, fit_clv_models(summary, purchase_model="bgnbd"))
    export = customer_export(workspace, summary, scores).set_index("customer_id")
    lines = _online_retail_lines(online_retail_path)
    days = _netted_purchase_days(lines).groupby("customer_id").agg(first=("day", "min"), last=("day", "max"),
                                                                   orders=("orders", "sum"))
    end = lines["order_ts"].max().normalize()
    assert set(export.index) == set(days.index) and len(export) == 4_327
    days = days.loc[export.index]
    assert (export["days_since_last_purchase"].to_numpy() == (end - days["last"]).dt.days.to_numpy()).all()
    assert (pd.to_datetime(export["last_purchase_date"]) == days["last"]).all()
    assert (pd.to_datetime(export["first_purchase_date"]) == days["first"]).all()
    assert (export["orders"] == days["orders"]).all()
    assert_allclose(export["revenue"], lines.groupby("customer_id")["amount"].sum().loc[export.index], rtol=1e-9,
                    atol=1e-6)
    # The model's recency is first to last purchase, in weeks: not days since the last purchase / 7.
    weeks = export["model_weeks_first_to_last_purchase"]
    assert_allclose(weeks, (days["last"] - days["first"]).dt.days / 7, rtol=1e-12)
    assert not {"recency", "T", "frequency"} & set(export.columns)
    assert list(export.columns[:5]) == ["Country", "first_purchase_date", "last_purchase_date",
                                        "days_since_last_purchase", "orders"]
