"""Predictive customer lifetime value from the transactions of a workspace.

The customer summary follows the literature (Fader, Hardie and Lee 2005):
purchases on one day are one transaction; ``frequency`` is the number of repeat
purchase days after the first; ``recency`` (first to last purchase) and ``T``
(first purchase to the end of observation) are measured in whole days and
expressed in the chosen unit (a week is 7 days, so 9 days is 1.2857 weeks);
``monetary_value`` is the mean value of the repeat transactions. A calibration
end date (inclusive) splits calibration from holdout; without one, the whole
history is calibration and the observation ends on the last day of the data.

CLV of a customer over ``H`` months, with monthly discount rate ``d`` and
margin ``m`` (the convention of lifetimes' ``customer_lifetime_value``)::

    CLV = m * E[spend] * sum_{k=1..H} (E[Y(t_k)] - E[Y(t_{k-1})]) / (1 + d)^k,   t_k = k months

where ``E[Y(t)]`` is the purchase model's conditional expectation and
``E[spend]`` the Gamma-Gamma conditional mean spend. A month is 365.25 / 12 days.

Returns are netted first (:mod:`clm_core.customers`): a purchase day its returns
cancel in full is no purchase at all, so a customer whose every repeat purchase
was sent back is a one-time buyer. The spend model learns from the repeat
purchase days worth more than nothing (``spend_frequency`` of them, mean value
``monetary_value``). Customers who bought again but only at no charge (repeat
value zero) are outside it, as it describes positive order values: their
expected order value, and so their CLV, is 0, not the average spender's; their
purchase predictions are kept. Customers with no repeat purchase get the
Gamma-Gamma population mean spend (the model knows nothing of theirs).

Intervals (``clv_low``, ``clv_high`` and the total's) cover the uncertainty of
the fitted parameters: the log-parameters are asymptotically normal with the
fit's ``covariance_``; each customer's log CLV and the log of the total are
linearised around the estimate (the delta method, with the derivatives of the
purchase factor by central differences), which is what drawing parameter sets
and rescoring gives for small parameter uncertainty, at the cost of about eight
rescorings instead of hundreds. They do not include the customers' own chance
(a customer expected to buy 2.3 times buys 0, 1, 2, 3 ... times).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import date

import numpy as np
import pandas as pd

from clm_core.customers import customer_table, data_span, purchase_history, window_activity
from scipy.stats import norm

from clm_core.clv_models import BetaGeoModel, GammaGammaModel, ParetoNBDModel, compress_rows
from clm_core.engine import Engine
from clm_core.errors import DataRangeError

__all__ = [
    "MODELS",
    "PURCHASE_MODELS",
    "UNITS",
    "DAYS_PER_MONTH",
    "CustomerSummary",
    "FittedCLV",
    "customer_summary",
    "customer_summary_from_table",
    "default_calibration_end",
    "CLVForecast",
    "fit_clv_models",
    "predict_clv",
    "predict_customers",
    "spend_outside_model",
    "holdout_by_frequency",
    "holdout_totals",
    "holdout_spend",
    "tracking_curve",
    "probability_alive_matrix",
    "value_concentration",
    "EXPORT_COLUMNS",
    "export_table",
    "customer_export",
    "export_customers",
]

MODELS = {"bgnbd": "BG/NBD", "pareto": "Pareto/NBD", "gg": "Gamma-Gamma"}
PURCHASE_MODELS = {"bgnbd": BetaGeoModel, "pareto": ParetoNBDModel}
UNITS = {"day": 1.0, "week": 7.0}
DAYS_PER_MONTH = 365.25 / 12


@dataclass
class CustomerSummary:
    """One row per customer (``frame``) and the dates that define it.

    ``frame`` columns: ``customer_id``, ``first_day``, ``frequency``,
    ``recency_days``, ``T_days``, ``recency``, ``T`` (in ``unit``),
    ``monetary_value`` (mean net value of the repeat purchase days worth more than nothing; NaN for customers
    with none), ``spend_frequency`` (how many such days),
    ``holdout_purchases``, ``holdout_value``.
    """

    frame: pd.DataFrame
    unit: str
    observation_end: date
    data_start: date
    data_end: date
    calibration_end: date | None

    @property
    def holdout_days(self) -> int:
        return (self.data_end - self.calibration_end).days if self.calibration_end else 0

    @property
    def holdout_length(self) -> float:
        """Holdout length in the summary's unit."""
        return self.holdout_days / UNITS[self.unit]

    @property
    def repeat_customers(self) -> int:
        return int((self.frame["frequency"] > 0).sum())

    @cached_property
    def compressed(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """Unique (frequency, recency, T) rows in the unit, their counts and the map back to customers;
        computed once, as fitting, scoring and the checks all evaluate the models on these rows."""
        (x, recency_days, t_days), counts, inverse = compress_rows(
            self.frame["frequency"].to_numpy(), self.frame["recency_days"].to_numpy(), self.frame["T_days"].to_numpy())
        unit_days = UNITS[self.unit]
        return (x.astype(float), recency_days / unit_days, t_days / unit_days), counts, inverse


def _day(value) -> date:
    return pd.Timestamp(value).date()


def default_calibration_end(data_start: date, data_end: date) -> date:
    """The middle of the data, as in the CDNOW studies (39 of 78 weeks)."""
    return data_start + (data_end - data_start) // 2


def customer_summary(workspace: Engine, *, unit: str = "week", calibration_end: date | None = None) -> CustomerSummary:
    """Frequency, recency, T and monetary value per customer; :class:`DataRangeError` when the data cannot support it."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}")
    data_start, data_end = data_span(workspace)
    if data_start == data_end:
        raise DataRangeError(
            f"All purchases are on one day ({data_start:%d %b %Y}), so nobody could have bought again. "
            "Predicting lifetime value needs purchases spread over weeks or months."
        )
    if calibration_end is not None:
        calibration_end = _day(calibration_end)
        if not data_start <= calibration_end < data_end:
            raise DataRangeError(
                f"The calibration end {calibration_end:%d %b %Y} is outside the data ({data_start:%d %b %Y} to "
                f"{data_end:%d %b %Y}). Pick a date inside it, leaving some time after it for the check."
            )
    observation_end = calibration_end or data_end
    table = purchase_history(workspace, observation_end)
    holdout = window_activity(workspace, observation_end, data_end) if calibration_end else None
    return customer_summary_from_table(table, unit=unit, observation_end=observation_end, holdout=holdout,
                                       data_start=data_start, data_end=data_end, calibration_end=calibration_end)


def customer_summary_from_table(table: pd.DataFrame, *, unit: str, observation_end: date,
                                holdout: pd.DataFrame | None = None, data_start: date | None = None,
                                data_end: date | None = None, calibration_end: date | None = None) -> CustomerSummary:
    """The summary of the customers of a customer table (:func:`clm_core.customers.customer_table`, or its
    :func:`~clm_core.customers.purchase_history` columns, as of
    ``observation_end``) who have bought, with ``holdout`` (window activity after it) when given."""
    frame = table[table["purchase_days"] > 0]
    if holdout is not None:
        frame = frame.merge(holdout.add_prefix("holdout_"), how="left", left_on="customer_id",
                            right_on="holdout_customer_id")
    else:
        frame = frame.assign(holdout_purchase_days=0, holdout_value=0.0)
    first, last = frame["first_purchase"], frame["last_purchase"]
    end = pd.Timestamp(observation_end)
    frequency = frame["purchase_days"] - 1
    unit_days = UNITS[unit]
    summary = pd.DataFrame({
        "customer_id": frame["customer_id"],
        "first_day": first,
        "frequency": frequency,
        "recency_days": (last - first).dt.days.astype(np.int64),
        "T_days": (end - first).dt.days.astype(np.int64),
    })
    summary["recency"] = summary["recency_days"] / unit_days
    summary["T"] = summary["T_days"] / unit_days
    # The spend model learns from the repeat purchase days worth more than nothing, net of their returns.
    spend_days = frame["repeat_spend_days"]
    summary["spend_frequency"] = spend_days.astype(np.int64)
    summary["monetary_value"] = (frame["repeat_spend_value"] / spend_days.where(spend_days > 0)).astype(float)
    summary["holdout_purchases"] = frame["holdout_purchase_days"].fillna(0).astype(np.int64)
    summary["holdout_value"] = frame["holdout_value"].fillna(0.0).astype(float)
    if not summary["customer_id"].is_monotonic_increasing:
        summary = summary.sort_values("customer_id", ignore_index=True)
    return CustomerSummary(frame=summary, unit=unit, observation_end=observation_end,
                           data_start=data_start or first.min().date(), data_end=data_end or observation_end,
                           calibration_end=calibration_end)


@dataclass
class FittedCLV:
    """A fitted purchase model, the optional spend model, and what was fitted on."""

    purchase_key: str
    purchase: BetaGeoModel | ParetoNBDModel
    spend: GammaGammaModel | None
    unit: str
    notes: list[str] = field(default_factory=list)

    @property
    def purchase_label(self) -> str:
        return MODELS[self.purchase_key]


def fit_clv_models(summary: CustomerSummary, *, purchase_model: str = "bgnbd", with_spend: bool = True) -> FittedCLV:
    """Fit the purchase model (``bgnbd`` or ``pareto``) and, with money, Gamma-Gamma on repeat customers."""
    if purchase_model not in PURCHASE_MODELS:
        raise ValueError(f"purchase_model must be one of {', '.join(PURCHASE_MODELS)}")
    (x, recency, T), counts, _ = summary.compressed
    notes = []
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two fits are numpy work on large arrays, run side by side
        purchase_fit = pool.submit(PURCHASE_MODELS[purchase_model]().fit, x, recency, T, weights=counts)
        spend_fit = None
        if with_spend:
            frame = summary.frame
            # The spend model sees each customer's repeat purchase days worth more than nothing (after returns).
            spenders = frame[frame["spend_frequency"] > 0]
            # Order values are continuous, so rows hardly repeat: no compression.
            spend_fit = pool.submit(GammaGammaModel().fit, spenders["spend_frequency"].to_numpy(),
                                    spenders["monetary_value"].to_numpy())
        purchase = purchase_fit.result()
        spend = spend_fit.result() if spend_fit else None
    if with_spend:
        left_out = int(spend_outside_model(frame["frequency"], frame["monetary_value"]).sum())
        if left_out:
            notes.append(f"{left_out:,} customers bought again but only at no charge (repeat purchases worth "
                         "nothing after returns): they are outside the spend model, and their expected order value "
                         "and CLV are 0, not an average customer's.")
    return FittedCLV(purchase_key=purchase_model, purchase=purchase, spend=spend, unit=summary.unit, notes=notes)


def in_time_unit(fitted: FittedCLV, summary: CustomerSummary) -> FittedCLV:
    """``fitted`` (fitted on a summary in another time unit, of the same customers and dates) in ``summary``'s
    unit, without a new search: the purchase model's time scales converted
    (:meth:`~clm_core.clv_models._PurchaseModel.in_time_unit`); the spend model does not depend on time."""
    (x, recency, T), counts, _ = summary.compressed
    factor = UNITS[fitted.unit] / UNITS[summary.unit]
    purchase = fitted.purchase.in_time_unit(factor, x, recency, T, weights=counts)
    return replace(fitted, purchase=purchase, unit=summary.unit, notes=list(fitted.notes))


def spend_outside_model(frequency, monetary_value) -> np.ndarray:
    """True for customers with repeat purchases whose repeat value is zero or less, or missing: the spend model
    does not describe them, and their expected order value is 0."""
    frequency = np.asarray(frequency, dtype=float)
    monetary_value = np.asarray(monetary_value, dtype=float)
    return (frequency > 0) & ~(monetary_value > 0)


def expected_order_value(spend: GammaGammaModel, frame: pd.DataFrame) -> np.ndarray:
    """Per customer of a summary ``frame``: Gamma-Gamma's conditional mean spend given their repeat purchase days
    worth more than nothing, and 0 for the customers of :func:`spend_outside_model`."""
    value = spend.expected_spend(frame["spend_frequency"], frame["monetary_value"])
    return np.where(spend_outside_model(frame["frequency"], frame["monetary_value"]), 0.0, value)


@dataclass
class CLVForecast:
    """Per-customer predictions (``scores``, highest CLV first) and the total CLV with its interval.

    ``total`` and ``total_interval`` (low, high) are in the file's currency; ``level`` is the interval's
    coverage (0.9). Without a spend model they are None.
    """

    scores: pd.DataFrame
    total: float | None
    total_interval: tuple[float, float] | None
    level: float


def _log_covariance(model) -> np.ndarray:
    """The model's log-parameter covariance with parameters that have none (on a bound, or set by hand) held
    fixed: their rows and columns are 0."""
    covariance = getattr(model, "covariance_", None)
    if covariance is None:
        return np.zeros((len(model.param_names),) * 2)
    return np.nan_to_num(covariance.to_numpy(), nan=0.0)


def _discounted_purchases(model, x, recency, T, *, month: float, horizon_months: int, monthly_discount_rate: float,
                          pairs=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected purchases over the horizon, discounted expected purchases, P(alive)) per row of (x, recency, T).

    Purchases if still alive depend on (x, T) only, so the hypergeometric work is done once per distinct pair
    (``pairs``: :func:`compress_rows` of (x, T), when the caller has it).
    """
    (pair_x, pair_T), _, pair = pairs or compress_rows(x, T)
    months = np.arange(horizon_months + 1)
    with np.errstate(all="ignore"):
        cumulative = model.expected_purchases_if_alive(months[:, None] * month, pair_x, pair_T)  # (H + 1) x pairs
        cumulative[0] = 0.0
        discount = 1.0 / (1.0 + monthly_discount_rate) ** months[1:]
        discounted = discount @ np.diff(cumulative, axis=0)
        alive = model.probability_alive(x, recency, T)
    return cumulative[-1][pair] * alive, discounted[pair] * alive, alive


def _log_gradient_purchases(model, x, recency, T, **horizon) -> np.ndarray:
    """d log(discounted purchases) / d log(parameters), rows x parameters, by central differences (step 1e-4)."""
    params = model.params_.to_numpy()
    horizon = {"pairs": compress_rows(x, T), **horizon}
    step = 1e-4
    columns = []
    for j in range(len(params)):
        values = []
        for sign in (1, -1):
            moved = params.copy()
            moved[j] *= np.exp(sign * step)
            shifted = type(model).from_params(dict(zip(model.param_names, moved)))
            values.append(np.log(_discounted_purchases(shifted, x, recency, T, **horizon)[1]))
        columns.append((values[0] - values[1]) / (2 * step))
    return np.column_stack(columns)


def _log_gradient_spend(spend: GammaGammaModel, frequency, monetary_value) -> np.ndarray:
    """d log E[spend] / d log(p, q, gamma) of equation (5) of Fader and Hardie (2013), customers x 3."""
    p, q, gamma = spend.params_.to_numpy()
    x = np.asarray(frequency, dtype=float)
    m = np.where(x > 0, np.nan_to_num(np.asarray(monetary_value, dtype=float)), 0.0)
    denominator = p * x + q - 1
    return np.column_stack([1 - p * x / denominator, -q / denominator, gamma / (gamma + m * x)])


def check_scoring_settings(horizon_months: int, monthly_discount_rate: float, level: float) -> None:
    """:class:`ValueError` for a horizon, discount rate or interval level :func:`predict_clv` cannot use."""
    if horizon_months < 1:
        raise ValueError("horizon_months must be at least 1")
    if not 0 <= monthly_discount_rate < 1:
        raise ValueError("monthly_discount_rate must be in [0, 1)")
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")


def predict_clv(
    summary: CustomerSummary,
    fitted: FittedCLV,
    *,
    horizon_months: int = 12,
    monthly_discount_rate: float = 0.01,
    margin: float = 1.0,
    level: float = 0.9,
) -> CLVForecast:
    """Per-customer predictions with ``level`` intervals of CLV, and the total with its interval.

    Columns of ``scores``: ``customer_id, frequency, recency, T, monetary_value,
    probability_alive, expected_purchases`` (over the horizon),
    ``expected_order_value``, ``clv`` (margin-weighted, discounted, in the
    file's currency), ``clv_low`` and ``clv_high`` (absent without a spend model;
    NaN when the models have no standard errors).
    """
    check_scoring_settings(horizon_months, monthly_discount_rate, level)
    (x, recency, T), _, inverse = summary.compressed
    horizon = dict(month=DAYS_PER_MONTH / UNITS[summary.unit], horizon_months=horizon_months,
                   monthly_discount_rate=monthly_discount_rate)
    expected, discounted, alive = _discounted_purchases(fitted.purchase, x, recency, T, **horizon)
    frame = summary.frame
    result = pd.DataFrame({
        "customer_id": frame["customer_id"],
        "frequency": frame["frequency"],
        "recency": frame["recency"],
        "T": frame["T"],
        "monetary_value": frame["monetary_value"],
        "probability_alive": alive[inverse],
        "expected_purchases": expected[inverse],
    })
    if fitted.spend is None:
        return CLVForecast(result.sort_values("expected_purchases", ascending=False, ignore_index=True), None, None,
                           level)
    frequency, money = frame["spend_frequency"].to_numpy(), frame["monetary_value"].to_numpy()
    order_value = expected_order_value(fitted.spend, frame)
    clv = margin * order_value * discounted[inverse]
    result["expected_order_value"] = order_value
    result["clv"] = clv
    total = float(clv.sum())
    purchase_cov, spend_cov = _log_covariance(fitted.purchase), _log_covariance(fitted.spend)
    if not (purchase_cov.any() or spend_cov.any()):
        result["clv_low"] = result["clv_high"] = np.nan
        interval = None
    else:
        purchase_gradient = _log_gradient_purchases(fitted.purchase, x, recency, T, **horizon)   # unique rows x k
        spend_gradient = _log_gradient_spend(fitted.spend, frequency, money)                      # customers x 3
        spend_gradient[spend_outside_model(frame["frequency"], money)] = 0.0  # their CLV is 0 whatever the parameters
        with np.errstate(all="ignore"):
            row_variance = np.einsum("ij,jk,ik->i", purchase_gradient, purchase_cov, purchase_gradient)
            variance = row_variance[inverse] + np.einsum("ij,jk,ik->i", spend_gradient, spend_cov, spend_gradient)
            z = norm.ppf(0.5 + level / 2)
            spread = np.exp(z * np.sqrt(np.maximum(variance, 0.0)))
            result["clv_low"] = clv / spread
            result["clv_high"] = clv * spread
            # The total's log-gradient is the CLV-weighted sum of the customers' (purchase and spend parts apart).
            by_row = np.bincount(inverse, weights=clv, minlength=len(x))
            total_purchase = by_row @ np.nan_to_num(purchase_gradient) / total
            total_spend = clv @ spend_gradient / total
            total_sd = np.sqrt(total_purchase @ purchase_cov @ total_purchase + total_spend @ spend_cov @ total_spend)
        interval = (total * float(np.exp(-z * total_sd)), total * float(np.exp(z * total_sd))) if total > 0 else None
    result = result.sort_values("clv", ascending=False, ignore_index=True)
    return CLVForecast(result, total, interval, level)


def predict_customers(
    summary: CustomerSummary,
    fitted: FittedCLV,
    *,
    horizon_months: int = 12,
    monthly_discount_rate: float = 0.01,
    margin: float = 1.0,
) -> pd.DataFrame:
    """The ``scores`` of :func:`predict_clv`: per-customer predictions, highest CLV first."""
    return predict_clv(summary, fitted, horizon_months=horizon_months, monthly_discount_rate=monthly_discount_rate,
                       margin=margin).scores


def _holdout_predictions(summary: CustomerSummary, fitted: FittedCLV) -> np.ndarray:
    if summary.calibration_end is None:
        raise DataRangeError("The model check needs a calibration end date, so that there is a holdout to compare.")
    (x, recency, T), _, inverse = summary.compressed
    with np.errstate(all="ignore"):
        return fitted.purchase.expected_purchases(summary.holdout_length, x, recency, T)[inverse]


def holdout_totals(summary: CustomerSummary, fitted: FittedCLV) -> dict[str, float]:
    """Actual and predicted holdout repeat transactions of the calibration customers, and the relative error."""
    predicted = float(_holdout_predictions(summary, fitted).sum())
    actual = float(summary.frame["holdout_purchases"].sum())
    return {"actual": actual, "predicted": predicted,
            "error": (predicted - actual) / actual if actual else float("nan")}


def holdout_spend(summary: CustomerSummary, fitted: FittedCLV) -> dict[str, float]:
    """Mean value of a holdout transaction, actual vs Gamma-Gamma's expected spend of the customers who made them."""
    if fitted.spend is None:
        raise DataRangeError("The spend check needs an amount column.")
    if summary.calibration_end is None:
        raise DataRangeError("The model check needs a calibration end date, so that there is a holdout to compare.")
    frame = summary.frame
    purchases = frame["holdout_purchases"].to_numpy()
    if purchases.sum() == 0:
        raise DataRangeError("Nobody bought in the holdout period, so spend cannot be checked.")
    expected = expected_order_value(fitted.spend, frame)
    actual = float(frame["holdout_value"].sum() / purchases.sum())
    predicted = float((expected * purchases).sum() / purchases.sum())
    return {"actual": actual, "predicted": predicted, "error": (predicted - actual) / actual if actual else float("nan")}


def holdout_by_frequency(summary: CustomerSummary, fitted: FittedCLV, *, top: int = 7) -> pd.DataFrame:
    """Mean holdout transactions, actual vs predicted, by calibration repeat purchases 0, 1, ..., ``top``+.

    Columns: ``frequency`` (label), ``customers``, ``actual``, ``predicted``.
    """
    frame = summary.frame
    bucket = np.minimum(frame["frequency"].to_numpy(), top)
    grouped = pd.DataFrame({
        "bucket": bucket, "actual": frame["holdout_purchases"].to_numpy(),
        "predicted": _holdout_predictions(summary, fitted),
    }).groupby("bucket")
    table = grouped.agg(customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean"))
    table = table.reindex(range(top + 1), fill_value=0).reset_index()
    table["frequency"] = table["bucket"].map(lambda b: f"{b}+" if b == top else str(b))
    return table[["frequency", "customers", "actual", "predicted"]]


def tracking_curve(workspace: Engine, summary: CustomerSummary, fitted: FittedCLV) -> pd.DataFrame:
    """Cumulative repeat transactions by week, actual vs the model, over calibration and holdout.

    The model's curve sums E[X(t - first purchase)] over the customers who
    first bought by the calibration end. Columns: ``date`` (end of each
    7-day step from the first day of data), ``actual``, ``predicted``.
    """
    end = summary.calibration_end or summary.observation_end
    daily = workspace.query("daily_repeat_purchases", calibration_end=end)
    days = (pd.to_datetime(daily["day"]) - pd.Timestamp(summary.data_start)).dt.days.to_numpy()
    total_days = (summary.data_end - summary.data_start).days
    grid = np.arange(0, total_days + 1, 7)
    if grid[-1] != total_days:
        grid = np.append(grid, total_days)
    actual_daily = np.zeros(total_days + 1)
    np.add.at(actual_daily, days, daily["repeat_purchases"].to_numpy())
    new = daily["new_customers"].to_numpy()
    starts = days[new > 0]
    elapsed = np.clip(grid[None, :] - starts[:, None], 0, None) / UNITS[summary.unit]
    expected = fitted.purchase.expected_purchases_new_customer(elapsed)
    return pd.DataFrame({
        "date": pd.Timestamp(summary.data_start) + pd.to_timedelta(grid, unit="D"),
        "actual": np.cumsum(actual_daily)[grid],
        "predicted": new[new > 0] @ expected,
    })


def probability_alive_matrix(summary: CustomerSummary, fitted: FittedCLV, *, max_frequency: int | None = None,
                             steps: int = 40) -> pd.DataFrame:
    """P(alive) for a customer observed for the longest T, over frequency (rows) x recency (columns, in units)."""
    T = float(summary.frame["T"].max())
    if max_frequency is None:
        max_frequency = int(max(1, min(40, np.quantile(summary.frame["frequency"], 0.99))))
    frequency = np.arange(max_frequency + 1)
    recency = np.linspace(0, T, steps)
    x, r = np.meshgrid(frequency, recency, indexing="ij")
    alive = fitted.purchase.probability_alive(x.ravel(), np.where(x.ravel() > 0, r.ravel(), 0.0), np.full(x.size, T))
    return pd.DataFrame(alive.reshape(x.shape), index=pd.Index(frequency, name="frequency"),
                        columns=pd.Index(np.round(recency, 2), name="recency"))


def value_concentration(clv: pd.Series, shares: tuple[float, ...] = (0.1, 0.2)) -> dict[float, float]:
    """Share of total CLV held by the top ``share`` of customers (customers ranked by CLV)."""
    values = np.sort(clv.dropna().to_numpy())[::-1]
    total = values.sum()
    result = {}
    for share in shares:
        count = max(1, int(np.ceil(share * len(values))))
        result[share] = float(values[:count].sum() / total) if total > 0 else float("nan")
    return result


# --- the per-customer export ---------------------------------------------------------------------------------
def _model_columns(unit: str) -> dict[str, str]:
    """The model's inputs under names that say what they measure (``recency`` reads as "since the last
    purchase", which it is not: it runs from the first purchase to the last)."""
    return {
        "frequency": "model_repeat_purchase_days",
        "recency": f"model_{unit}s_first_to_last_purchase",
        "T": f"model_{unit}s_first_purchase_to_end",
        "monetary_value": "model_average_repeat_order_value",
    }


FACT_COLUMNS = ["customer_id", "first_purchase", "last_purchase", "recency_days", "orders", "revenue"]
EXPORT_COLUMNS = {
    "first_purchase_date": "Day of the customer's first purchase (purchases cancelled in full by returns do not "
                           "count).",
    "last_purchase_date": "Day of the customer's last purchase, on the same rule.",
    "days_since_last_purchase": "Days from the last purchase to the last day of the data the model saw.",
    "orders": "Purchase orders, on the purchase days kept after returns.",
    "revenue": "Net revenue: every purchase less every return, in the file's currency.",
    "probability_alive": "Probability the customer has not silently left (0 to 1).",
    "expected_purchases": "Purchase days the model expects over the horizon.",
    "expected_order_value": "Expected value of one purchase day (Gamma-Gamma).",
    "clv": "Predicted lifetime value over the horizon: margin x expected order value x discounted purchases.",
    "clv_low": "Low end of the CLV interval (uncertainty of the model's parameters).",
    "clv_high": "High end of the CLV interval.",
    "model_repeat_purchase_days": "The model's frequency: purchase days after the first.",
    "model_<unit>s_first_to_last_purchase": "The model's recency: time from the first purchase to the last, in "
                                            "the time unit (NOT the time since the last purchase).",
    "model_<unit>s_first_purchase_to_end": "The model's T: time from the first purchase to the end of the data "
                                           "the model saw, in the time unit.",
    "model_average_repeat_order_value": "Mean value of the repeat purchase days worth more than nothing (the "
                                        "spend model's input); empty for customers with none.",
}


def export_table(scores: pd.DataFrame, customers: pd.DataFrame, *, unit: str, with_revenue: bool = True
                 ) -> pd.DataFrame:
    """The per-customer CLV table for campaigns, highest CLV first: ``customer_id``, the plain columns
    (``first_purchase_date``, ``last_purchase_date`` as dates, ``days_since_last_purchase``, ``orders``,
    ``revenue`` when ``with_revenue``), the predictions, then the model's inputs renamed so they cannot be
    misread (see :data:`EXPORT_COLUMNS`; ``<unit>`` is ``week`` or ``day``).

    ``scores`` are :func:`predict_clv`'s; ``customers`` holds :data:`FACT_COLUMNS` of the customer table
    (:func:`clm_core.customers.customer_table`) as of the summary's observation end, whose ``recency_days`` is
    the days since the last purchase; any other column of it (contact, segment) is carried after the id.
    """
    missing = [column for column in FACT_COLUMNS if column not in customers.columns]
    if missing:
        raise ValueError(f"Required column {missing[0]} missing")
    carried = [column for column in customers.columns if column not in FACT_COLUMNS]  # contacts, segments
    facts = pd.DataFrame({
        "customer_id": customers["customer_id"],
        **{column: customers[column] for column in carried},
        "first_purchase_date": customers["first_purchase"].dt.date,
        "last_purchase_date": customers["last_purchase"].dt.date,
        "days_since_last_purchase": customers["recency_days"].astype("Int64"),
        "orders": customers["orders"],
    })
    if with_revenue:
        facts["revenue"] = customers["revenue"]
    model = _model_columns(unit)
    predictions = [column for column in scores.columns if column != "customer_id" and column not in model]
    table = scores[["customer_id", *predictions, *[c for c in model if c in scores.columns]]].rename(columns=model)
    merged = table.merge(facts, on="customer_id", how="left", validate="one_to_one")
    plain = [column for column in facts.columns if column != "customer_id"]
    return merged[["customer_id", *plain, *[c for c in table.columns if c != "customer_id"]]]


def customer_export(workspace: Engine, summary: CustomerSummary, scores: pd.DataFrame,
                    customers: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`export_table` for the customers of ``summary``, with the contact and segment columns of the file
    after the id; ``customers`` is :func:`export_customers` as of the summary's observation end (read when
    None)."""
    if customers is None:
        customers = export_customers(workspace, summary.observation_end)
    return export_table(scores, customers, unit=summary.unit, with_revenue=workspace.dataset.has_money)


def export_customers(workspace: Engine, as_of: date | None = None) -> pd.DataFrame:
    """:data:`FACT_COLUMNS` of the customer table as of ``as_of`` with the file's contact and segment columns
    after the id: what :func:`export_table` adds to the predictions (the same for every CLV setting)."""
    from clm_core.summary import with_customer_attributes

    return with_customer_attributes(workspace, customer_table(workspace, as_of, attributes=False)[FACT_COLUMNS])
