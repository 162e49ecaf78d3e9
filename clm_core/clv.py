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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import date

import numpy as np
import pandas as pd

from clm_core.customers import customer_table, data_span, window_activity
from clm_core.clv_models import BetaGeoModel, GammaGammaModel, ParetoNBDModel, compress_rows
from clm_core.errors import DataRangeError
from clm_core.workspace import Workspace

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
    "fit_clv_models",
    "predict_customers",
    "holdout_by_frequency",
    "holdout_totals",
    "holdout_spend",
    "tracking_curve",
    "probability_alive_matrix",
    "value_concentration",
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
    ``monetary_value`` (NaN for customers with no repeat purchase),
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


def customer_summary(workspace: Workspace, *, unit: str = "week", calibration_end: date | None = None) -> CustomerSummary:
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
    table = customer_table(workspace, observation_end, attributes=False)
    holdout = window_activity(workspace, observation_end, data_end)
    return customer_summary_from_table(table, unit=unit, observation_end=observation_end, holdout=holdout,
                                       data_start=data_start, data_end=data_end, calibration_end=calibration_end)


def customer_summary_from_table(table: pd.DataFrame, *, unit: str, observation_end: date,
                                holdout: pd.DataFrame | None = None, data_start: date | None = None,
                                data_end: date | None = None, calibration_end: date | None = None) -> CustomerSummary:
    """The summary of the customers of a customer table (:func:`clm_core.customers.customer_table` as of
    ``observation_end``) who have bought, with ``holdout`` (window activity after it) when given."""
    table = table[table["purchase_days"] > 0]
    holdout = holdout if holdout is not None else pd.DataFrame(columns=["customer_id", "purchase_days", "value"])
    frame = table.merge(holdout.add_prefix("holdout_"), how="left", left_on="customer_id",
                        right_on="holdout_customer_id")
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
    repeat_value = frame["purchase_value"] - frame["first_day_value"]
    summary["monetary_value"] = (repeat_value / frequency.where(frequency > 0)).astype(float)
    summary["holdout_purchases"] = frame["holdout_purchase_days"].fillna(0).astype(np.int64)
    summary["holdout_value"] = frame["holdout_value"].fillna(0.0).astype(float)
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
    purchase = PURCHASE_MODELS[purchase_model]().fit(x, recency, T, weights=counts)
    notes = []
    spend = None
    if with_spend:
        frame = summary.frame
        repeaters = frame[frame["frequency"] > 0]
        positive = repeaters["monetary_value"] > 0
        (freq, money), money_counts, _ = compress_rows(repeaters["frequency"].to_numpy(),
                                                       repeaters["monetary_value"].to_numpy())
        spend = GammaGammaModel().fit(freq, money, weights=money_counts)
        left_out = int((~positive).sum())
        if left_out:
            notes.append(f"{left_out:,} repeat customers whose repeat purchases total zero or less were left out "
                         "of the spend model.")
    return FittedCLV(purchase_key=purchase_model, purchase=purchase, spend=spend, unit=summary.unit, notes=notes)


def predict_customers(
    summary: CustomerSummary,
    fitted: FittedCLV,
    *,
    horizon_months: int = 12,
    monthly_discount_rate: float = 0.01,
    margin: float = 1.0,
) -> pd.DataFrame:
    """Per-customer predictions, highest CLV first.

    Columns: ``customer_id, frequency, recency, T, monetary_value,
    probability_alive, expected_purchases`` (over the horizon),
    ``expected_order_value`` and ``clv`` (margin-weighted, discounted, in the
    file's currency; absent without a spend model).
    """
    if horizon_months < 1:
        raise ValueError("horizon_months must be at least 1")
    if not 0 <= monthly_discount_rate < 1:
        raise ValueError("monthly_discount_rate must be in [0, 1)")
    (x, recency, T), _, inverse = summary.compressed
    model = fitted.purchase
    month = DAYS_PER_MONTH / UNITS[summary.unit]
    months = np.arange(horizon_months + 1)
    with np.errstate(all="ignore"):
        cumulative = model.expected_purchases(months[:, None] * month, x, recency, T)  # (H + 1) x unique rows
        cumulative[0] = 0.0
        discount = 1.0 / (1.0 + monthly_discount_rate) ** months[1:]
        discounted_purchases = discount @ np.diff(cumulative, axis=0)
        alive = model.probability_alive(x, recency, T)
    frame = summary.frame
    result = pd.DataFrame({
        "customer_id": frame["customer_id"],
        "frequency": frame["frequency"],
        "recency": frame["recency"],
        "T": frame["T"],
        "monetary_value": frame["monetary_value"],
        "probability_alive": alive[inverse],
        "expected_purchases": cumulative[-1][inverse],
    })
    if fitted.spend is not None:
        result["expected_order_value"] = fitted.spend.expected_spend(frame["frequency"], frame["monetary_value"])
        result["clv"] = margin * result["expected_order_value"] * discounted_purchases[inverse]
        result = result.sort_values("clv", ascending=False, ignore_index=True)
    else:
        result = result.sort_values("expected_purchases", ascending=False, ignore_index=True)
    return result


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
    expected = fitted.spend.expected_spend(frame["frequency"], frame["monetary_value"])
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


def tracking_curve(workspace: Workspace, summary: CustomerSummary, fitted: FittedCLV) -> pd.DataFrame:
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
