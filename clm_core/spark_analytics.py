"""The analytics on Spark, for data past one machine: CLV, churn scores, RFM segments and lifecycle stages, and
product pair counts, with the numbers the DuckDB path gives and no per-customer row collected to the driver.

Each function takes a :class:`clm_core.spark_engine.SparkEngine` and a Parquet folder ``out`` (replaced), where
Spark's executors write the per-customer (or per-pair) results; what reaches the driver is bounded by something
other than the number of customers:

* **CLV** (:func:`clv_on_spark`). The purchase model (BG/NBD or Pareto/NBD) is fitted on the distinct
  (frequency, recency, T) histories weighted by how many customers share each
  (:meth:`~clm_core.spark_engine.SparkEngine.distinct_histories`: at most days of data squared rows): the rows
  :func:`clm_core.clv.fit_clv_models` compresses the customers to, so the same fit. Gamma-Gamma's likelihood has a
  term log(gamma + m x) per customer that no fixed set of sums summarises, so it is fitted on the distinct
  (repeat spend days x, mean repeat spend m) pairs weighted by their counts: the exact fit again, from at most one
  row of two numbers per repeat spender; past ``spend_rows`` distinct pairs (2 million, 32 MB), on the pairs of a
  fixed sample of customers (by a hash of the id), which a note says. Every customer is then scored on the
  executors (``mapInPandas``) by :func:`clm_core.clv.predict_clv` itself, batch by batch, with the fitted models
  broadcast.
* **Churn** (:func:`train_churn_on_spark`, :func:`score_churn_on_spark`). The models are trained on the driver
  by :func:`clm_core.churn.churn_from_workspace`, on the engine narrowed to a fixed sample of about 150,000
  customers (all of them below that: the training DuckDB does), or come from a result trained on DuckDB. The
  chosen model is broadcast and scores every customer's features (the customer table as of the last day, with
  BG/NBD's probability alive and expected purchases from the fit on the distinct histories) on the executors.
  Past 30,000 customers DuckDB fits that BG/NBD on a random 30,000 of them, Spark on all (its distinct
  histories), so those two features, and the scores, differ by that sample's noise there. The drivers in words
  are not computed: they place each customer among all the others.
* **Segments** (:func:`segments_on_spark`). R, F and M scores are percentile ranks with ties averaged: a
  customer's score depends on their value only through how many customers have a lower value and how many the
  same. Both are counted exactly in Spark: per distinct value its count, and the customers below it by a running
  sum within ranges of values, plus the totals of the ranges before (a few numbers on the driver); the score is
  floor(5 (below + (tied + 1) / 2 - 1/2) / n) + 1 in the floating-point steps of
  :func:`clm_core.segments.rfm_scores`, so the same. Segments (:func:`~clm_core.segments.assign_segments`) and
  lifecycle stages (:func:`~clm_core.segments.lifecycle_stages`) are assigned on the executors, the stage's
  frequency trend and last comeback from the named query ``customer_stage_facts``.
* **Product pairs** (:func:`bought_together_on_spark`): the named query ``bought_together``, with product names.

pyspark is imported inside the functions only. The executors import this package to score: install it on the
cluster (or ship it with ``spark.submit.pyFiles``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clm_core.churn import _EXAMPLE_CUSTOMERS, ChurnResult, churn_from_workspace, risk_band, suggest_horizon
from clm_core.clv import PURCHASE_MODELS, UNITS, FittedCLV, check_scoring_settings
from clm_core.clv_models import BetaGeoModel, GammaGammaModel
from clm_core.customers import data_span
from clm_core.errors import ClmError, DataRangeError, SchemaError
from clm_core.segments import (RETURNS_ONLY, STAGES, StageSettings, _check_date, _segment_order,
                               default_segment_rules, validate_segment_rules)
from clm_core.spark_engine import SparkEngine, _quiet_pyspark, _to_pandas
from clm_core.workspace import DatasetInfo

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "SparkCLV",
    "clv_on_spark",
    "SparkChurn",
    "train_churn_on_spark",
    "score_churn_on_spark",
    "SparkSegments",
    "segments_on_spark",
    "bought_together_on_spark",
]

# Past this many distinct (repeat spend days, mean repeat spend) pairs, Gamma-Gamma is fitted on a sample's.
SPEND_ROWS = 2_000_000
_SCORE_LEVELS = 5


# --- shared ---------------------------------------------------------------------------------------------------

class _Answers:
    """An :class:`~clm_core.engine.Engine` that answers named queries with frames computed beforehand: on an
    executor, the batch of a query's rows Spark computed there. The pandas steps the analytics take after a query
    (renames, types, derived columns: :func:`clm_core.customers.customer_table`, ...) then run on each batch
    unchanged, so they cannot drift from the DuckDB path's."""

    def __init__(self, dataset: DatasetInfo, answers: dict[str, pd.DataFrame]) -> None:
        self._dataset = dataset
        self._answers = answers

    @property
    def dataset(self) -> DatasetInfo:
        return self._dataset

    @property
    def has_dataset(self) -> bool:
        return True

    @property
    def read_only(self) -> bool:
        return True

    def customer_labels_info(self) -> None:
        return None

    def query(self, name: str, *, segment: str | None = None, attributes: list[str] | None = None,
              **params: object) -> pd.DataFrame:
        try:
            return self._answers[name]
        except KeyError:
            raise KeyError(f"No rows of the query {name!r} were computed for this batch") from None


def _span_frame(span: tuple[date, date]) -> pd.DataFrame:
    """The ``date_span`` query's answer for ``span`` (first and last day)."""
    return pd.DataFrame({"first_ts": [pd.Timestamp(span[0])], "last_ts": [pd.Timestamp(span[1])]})


def _shipped(session: "SparkSession", value: object) -> tuple[Callable[[], object], Callable[[], None]]:
    """(get, release): ``get()`` gives ``value`` on an executor, sent once per executor as a broadcast variable
    (a fitted forest is megabytes; in a task's closure it would travel with every task); ``release()`` frees it.
    Spark Connect has no broadcast variables: there the value travels in the closure."""
    try:
        broadcast = session.sparkContext.broadcast(value)
    except Exception:  # Spark Connect: no SparkContext
        return (lambda: value), (lambda: None)
    return (lambda: broadcast.value), broadcast.unpersist


def _schema(columns: dict[str, str]) -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in columns.items())


def _map(frame: "DataFrame", function: Callable, columns: dict[str, str]) -> "DataFrame":
    """``frame.mapInPandas`` (quietly: PySpark warns about pandas 3 on every call, see
    :func:`clm_core.spark_engine._quiet_pyspark`)."""
    with _quiet_pyspark():
        return frame.mapInPandas(function, _schema(columns))


def _write(frame: "DataFrame", out: str | Path) -> str:
    path = str(out)
    with _quiet_pyspark():
        frame.write.mode("overwrite").parquet(path)
    return path


def _read(session: "SparkSession", path: str) -> "DataFrame":
    return session.read.parquet(path)


def _value(frame: "DataFrame") -> object:
    """The one value of a one-row, one-column result."""
    with _quiet_pyspark():
        return frame.first()[0]


# --- CLV ------------------------------------------------------------------------------------------------------

@dataclass
class SparkCLV:
    """What :func:`clv_on_spark` fitted and wrote.

    ``fitted``: the models, as :func:`clm_core.clv.fit_clv_models` gives them; ``customers``: the customers
    scored, one row each in the Parquet folder ``path`` with the columns of :func:`clm_core.clv.predict_clv`'s
    scores; ``histories``: distinct purchase histories the purchase model was fitted on; ``spend_rows``: distinct
    (repeat spend days, mean repeat spend) pairs the spend model was fitted on; ``total``: the CLV of every
    customer, and ``top_10pct_share`` the share of it the top tenth holds (None without a spend model);
    ``holdout``: with a calibration end, the checks of :func:`clm_core.clv.holdout_totals`
    (``repeat_transactions``) and, with a spend model, :func:`clm_core.clv.holdout_spend`
    (``average_transaction_value``), each ``actual``, ``predicted`` and ``error``.
    """

    fitted: FittedCLV
    observation_end: date
    data_end: date
    calibration_end: date | None
    customers: int
    histories: int
    spend_rows: int
    total: float | None
    top_10pct_share: float | None
    path: str
    holdout: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _observation_end(span: tuple[date, date], calibration_end: date | None) -> date:
    """The end of the calibration period, with :func:`clm_core.clv.customer_summary`'s checks."""
    data_start, data_end = span
    if data_start == data_end:
        raise DataRangeError(
            f"All purchases are on one day ({data_start:%d %b %Y}), so nobody could have bought again. "
            "Predicting lifetime value needs purchases spread over weeks or months."
        )
    if calibration_end is None:
        return data_end
    calibration_end = pd.Timestamp(calibration_end).date()
    if not data_start <= calibration_end < data_end:
        raise DataRangeError(
            f"The calibration end {calibration_end:%d %b %Y} is outside the data ({data_start:%d %b %Y} to "
            f"{data_end:%d %b %Y}). Pick a date inside it, leaving some time after it for the check."
        )
    return calibration_end


def _fit_spend(purchases: "DataFrame", limit: int) -> tuple[GammaGammaModel, int, list[str]]:
    """Gamma-Gamma fitted on the distinct (repeat spend days, mean repeat spend) pairs of ``purchases`` (the
    ``customer_purchases`` query) weighted by their counts; past ``limit`` pairs, on those of a fixed sample of
    customers expected to hold about ``limit`` (the share ``limit`` is of all, by a hash of the id). Returns the
    model, the pairs fitted on and notes."""
    from pyspark.sql import functions as F

    spenders = purchases.where(F.col("repeat_spend_days") > 0)

    def pairs(frame: "DataFrame") -> "DataFrame":
        # The mean as clm_core.clv computes it: total over days, one IEEE division, so the same number.
        return frame.groupBy(F.col("repeat_spend_days").alias("spend_frequency"),
                             (F.col("repeat_spend_value") / F.col("repeat_spend_days")).alias("monetary_value")) \
            .agg(F.count(F.lit(1)).alias("customers"))

    rows = _to_pandas(pairs(spenders).limit(limit + 1))  # no count first: one pass when they fit
    notes = []
    if len(rows) > limit:
        count = int(pairs(spenders).count())
        per_mille = max(1, limit * 1000 // count)
        rows = _to_pandas(pairs(spenders.where(F.pmod(F.hash("customer_id"), F.lit(1000)) < per_mille)))
        notes.append(f"The spend model was fitted on a fixed sample of about {per_mille / 10:g} % of the customers "
                     f"who bought again ({count:,} distinct spend histories in all); the purchase model and the "
                     "scores cover every customer.")
    rows = rows.sort_values(["spend_frequency", "monetary_value"], ignore_index=True)  # the same fit every run
    spend = GammaGammaModel().fit(rows["spend_frequency"].to_numpy(dtype=float),
                                  rows["monetary_value"].to_numpy(dtype=float),
                                  weights=rows["customers"].to_numpy(dtype=float))
    return spend, len(rows), notes


def _clv_columns(with_spend: bool) -> dict[str, str]:
    columns = {"customer_id": "string", "frequency": "bigint", "recency": "double", "T": "double",
               "monetary_value": "double", "probability_alive": "double", "expected_purchases": "double"}
    if with_spend:
        columns.update({"expected_order_value": "double", "clv": "double", "clv_low": "double",
                        "clv_high": "double"})
    return columns


def _clv_scorer(dataset: DatasetInfo, observation_end: date, unit: str, fitted: Callable[[], object],
                horizon: dict, columns: list[str]) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The executors' part: each batch of ``customer_purchases`` rows scored by :func:`clm_core.clv.predict_clv`."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from clm_core.clv import customer_summary_from_table, predict_clv
        from clm_core.customers import purchase_history

        models = fitted()
        for rows in batches:
            table = purchase_history(_Answers(dataset, {"customer_purchases": rows}), observation_end)
            summary = customer_summary_from_table(table, unit=unit, observation_end=observation_end)
            if len(summary.frame):
                yield predict_clv(summary, models, **horizon).scores[columns]

    return score


def clv_on_spark(engine: SparkEngine, out: str | Path, *, purchase_model: str = "bgnbd", unit: str = "week",
                 calibration_end: date | None = None, with_spend: bool | None = None, horizon_months: int = 12,
                 monthly_discount_rate: float = 0.01, margin: float = 1.0, level: float = 0.9,
                 spend_rows: int = SPEND_ROWS) -> SparkCLV:
    """Fit the CLV models on Spark's data and write every customer's predictions to the Parquet folder ``out``:
    the columns of :func:`clm_core.clv.predict_clv`'s scores (``clv``, ``clv_low``, ``clv_high`` with a spend
    model). The settings are :func:`clm_core.clv.customer_summary`'s, :func:`~clm_core.clv.fit_clv_models`'
    (``with_spend``: default, when the data have amounts) and :func:`~clm_core.clv.predict_clv`'s; see the module
    docstring for how the models are fitted without the customers' rows."""
    from pyspark.sql import functions as F

    if purchase_model not in PURCHASE_MODELS:
        raise ValueError(f"purchase_model must be one of {', '.join(PURCHASE_MODELS)}")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}")
    check_scoring_settings(horizon_months, monthly_discount_rate, level)  # before any Spark work
    dataset = engine.dataset
    with_spend = dataset.has_money if with_spend is None else with_spend
    span = data_span(engine)
    observation_end = _observation_end(span, calibration_end)
    calibration_end = observation_end if calibration_end is not None else None
    unit_days = UNITS[unit]
    # Read three times (histories, spend pairs, scores): kept on the executors, not recomputed.
    purchases = engine.frame("customer_purchases", cutoff=observation_end).persist()
    release = None
    try:
        histories = engine.distinct_histories(observation_end, purchases=purchases)
        x = histories["frequency"].to_numpy(dtype=float)
        recency, T = histories["recency_days"].to_numpy() / unit_days, histories["T_days"].to_numpy() / unit_days
        counts = histories["customers"].to_numpy(dtype=float)
        purchase = PURCHASE_MODELS[purchase_model]().fit(x, recency, T, weights=counts)
        spend, pairs, notes = None, 0, []
        if with_spend:
            spend, pairs, notes = _fit_spend(purchases, spend_rows)
        fitted = FittedCLV(purchase_key=purchase_model, purchase=purchase, spend=spend, unit=unit, notes=notes)
        columns = _clv_columns(with_spend)
        get, release = _shipped(engine.session, fitted)
        horizon = dict(horizon_months=horizon_months, monthly_discount_rate=monthly_discount_rate, margin=margin,
                       level=level)
        scores = _map(purchases, _clv_scorer(dataset, observation_end, unit, get, horizon, list(columns)), columns)
        path = _write(scores, out)
    finally:
        if release is not None:
            release()
        purchases.unpersist()
    holdout = {} if calibration_end is None else _clv_holdout(engine, path, fitted, span, calibration_end,
                                                               (x, recency, T, counts))
    written = _read(engine.session, path)
    total = share = None
    if not with_spend:
        customers = int(written.count())
    else:
        # clm_core.clv.spend_outside_model: bought again, but the repeat purchases were worth nothing.
        outside = (F.col("frequency") > 0) & ~F.coalesce(F.col("monetary_value") > 0, F.lit(False))
        with _quiet_pyspark():
            sums = written.agg(F.count(F.lit(1)), F.count("clv"), F.sum("clv"),
                               F.sum(outside.cast("bigint"))).first()
        customers, valued, total, left_out = int(sums[0]), int(sums[1]), float(sums[2] or 0.0), int(sums[3] or 0)
        top = max(1, int(np.ceil(0.1 * valued)))  # clm_core.clv.value_concentration's top tenth
        top_sum = float(_value(written.where(F.col("clv").isNotNull()).orderBy(F.desc("clv")).limit(top)
                               .agg(F.sum("clv"))) or 0.0)
        share = top_sum / total if total > 0 else float("nan")
        if left_out:
            fitted.notes.append(f"{left_out:,} customers bought again but only at no charge (repeat purchases worth "
                                "nothing after returns): they are outside the spend model, and their expected order "
                                "value and CLV are 0, not an average customer's.")
    return SparkCLV(fitted=fitted, observation_end=observation_end, data_end=span[1],
                    calibration_end=calibration_end, customers=customers, histories=len(histories),
                    spend_rows=pairs, total=total, top_10pct_share=share, path=path, holdout=holdout,
                    notes=list(fitted.notes))


def _clv_holdout(engine: SparkEngine, path: str, fitted: FittedCLV, span: tuple[date, date],
                 calibration_end: date, histories: tuple) -> dict[str, dict[str, float]]:
    """The holdout checks of :func:`clm_core.clv.holdout_totals` and :func:`~clm_core.clv.holdout_spend`: the
    predicted purchases from the distinct histories, the rest as sums over the customers scored (those who bought
    by the calibration end) on Spark, in one pass."""
    from pyspark.sql import functions as F

    x, recency, T, counts = histories
    length = (span[1] - calibration_end).days / UNITS[fitted.unit]
    with np.errstate(all="ignore"):
        predicted = float(counts @ fitted.purchase.expected_purchases(length, x, recency, T))
    later = engine.frame("customer_window_activity", start=calibration_end, end=span[1])
    sums = [F.sum("purchase_days"), F.sum("value")]
    if fitted.spend is not None:
        sums.append(F.sum(F.col("expected_order_value") * F.col("purchase_days")))
    with _quiet_pyspark():
        totals = _read(engine.session, path).join(later, "customer_id").agg(*sums).first()
    actual = float(totals[0] or 0)
    checks = {"repeat_transactions": {"actual": actual, "predicted": predicted,
                                      "error": (predicted - actual) / actual if actual else float("nan")}}
    if fitted.spend is not None and actual > 0:
        mean, expected = float(totals[1] or 0.0) / actual, float(totals[2] or 0.0) / actual
        checks["average_transaction_value"] = {"actual": mean, "predicted": expected,
                                               "error": (expected - mean) / mean if mean else float("nan")}
    return checks


# --- churn ----------------------------------------------------------------------------------------------------

@dataclass
class SparkChurn:
    """Churn models trained from Spark's data: ``result`` (the models, their checks and the scores of the
    customers trained on, as :func:`clm_core.churn.churn_from_workspace` gives them; :func:`score_churn_on_spark`
    scores everyone with it), ``sample_per_mille`` (the share of customers, in 1000, the training read; 1000: all)
    and ``notes``."""

    result: ChurnResult
    sample_per_mille: int
    notes: list[str] = field(default_factory=list)


def train_churn_on_spark(engine: SparkEngine, *, horizon_days: int | None = None, cutoff: date | None = None,
                         model: str | None = None, seed: int = 0,
                         sample_customers: int = _EXAMPLE_CUSTOMERS) -> SparkChurn:
    """The churn models of :func:`clm_core.churn.churn_from_workspace`, trained on the driver from a fixed sample
    of about ``sample_customers`` customers who have bought (every one when there are fewer; the sample is drawn
    by a hash of the id, so other customers than DuckDB's sample above that size). The horizon, when not given,
    is suggested from every customer's usual gap (:func:`clm_core.churn.suggest_horizon`)."""
    from pyspark.sql import functions as F

    span = data_span(engine)
    table = engine.frame("customer_table", cutoff=span[1], sample_per_mille=1000)
    with _quiet_pyspark():
        facts = table.agg(F.sum((F.col("purchase_days") > 0).cast("bigint")).alias("buyers"),
                          F.percentile("mean_gap_days", 0.8).alias("gap_80")).first()
    buyers = int(facts["buyers"] or 0)
    if horizon_days is None:
        # The rule reads the gaps' 80th percentile only: given that one number, it gives what all gaps give.
        gaps = pd.DataFrame({"mean_gap_days": [np.nan if facts["gap_80"] is None else float(facts["gap_80"])]})
        horizon_days, _ = suggest_horizon(_Answers(engine.dataset, {"date_span": _span_frame(span)}), gaps)
    share = min(1.0, sample_customers / max(buyers, 1))
    per_mille = int(np.clip(np.ceil(share * 1000), 1, 1000))
    result = churn_from_workspace(engine.customer_sample(per_mille), horizon_days=horizon_days, cutoff=cutoff,
                                  model=model, seed=seed)
    notes = [] if per_mille == 1000 else [
        f"Trained on a fixed sample of about {per_mille / 10:g} % of the {buyers:,} customers (by a hash of the "
        "id); every customer is scored."]
    return SparkChurn(result=result, sample_per_mille=per_mille, notes=notes)


def _purchase_model_at(engine: SparkEngine, cutoff: date, buyers: "DataFrame") -> BetaGeoModel | None:
    """BG/NBD fitted on the distinct histories of ``buyers`` (customer-table rows as of ``cutoff`` of customers
    who bought), the churn features' model; None when the data do not support a fit, as :mod:`clm_core.churn`
    leaves those features empty then."""
    histories = engine.distinct_histories(cutoff, purchases=buyers)
    try:
        return BetaGeoModel().fit(histories["frequency"].to_numpy(dtype=float),
                                  histories["recency_days"].to_numpy() / 7.0, histories["T_days"].to_numpy() / 7.0,
                                  weights=histories["customers"].to_numpy(dtype=float))
    except (ClmError, ValueError, FloatingPointError):
        return None


def _with_purchase_model(current: pd.DataFrame, model: BetaGeoModel | None, cutoff: date,
                         horizon_days: int) -> pd.DataFrame:
    """``current`` with ``probability_alive`` and ``expected_purchases`` in the horizon from ``model``, as
    :mod:`clm_core.churn` adds them (empty without a model)."""
    from clm_core.clv import customer_summary_from_table

    current["probability_alive"] = np.nan
    current["expected_purchases"] = np.nan
    if model is None:
        return current
    summary = customer_summary_from_table(current, unit="week", observation_end=cutoff)
    (x, recency, t), _, inverse = summary.compressed
    with np.errstate(all="ignore"):
        alive = model.probability_alive(x, recency, t)[inverse]
        expected = model.expected_purchases(horizon_days / 7.0, x, recency, t)[inverse]
    position = pd.Series(np.arange(len(inverse)), index=summary.frame["customer_id"].to_numpy())
    order = position.reindex(current["customer_id"]).to_numpy()
    current["probability_alive"] = alive[order]
    current["expected_purchases"] = expected[order]
    return current


def _churn_columns(dataset: DatasetInfo) -> dict[str, str]:
    """The at-risk list's columns (:func:`clm_core.churn.at_risk_list`) but the drivers in words and CLV."""
    labels = [*dataset.contact_columns.values(), *dataset.segment_columns.values()]
    columns = {"customer_id": "string", **{label: "string" for label in labels}, "risk": "double",
               "risk_band": "string", "last_purchase": "date", "days_since_last_purchase": "bigint",
               "orders": "bigint"}
    if dataset.has_money:
        columns["revenue"] = "double"
    return columns


def _churn_scorer(dataset: DatasetInfo, span: tuple[date, date], horizon_days: int, shipped: Callable[[], tuple],
                  columns: list[str]) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The executors' part: each batch of customer-table rows as of the last day of ``span`` made into the churn
    features and scored by the broadcast model (``shipped()``: (model or None, its columns, BG/NBD or None, the
    usual gap of the descriptive risk))."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from clm_core.customers import customer_table

        model, features, purchase_model, typical_gap = shipped()
        as_of = span[1]
        for rows in batches:
            table = customer_table(_Answers(dataset, {"date_span": _span_frame(span), "customer_table": rows}), as_of)
            current = table[table["purchase_days"] > 0].reset_index(drop=True)
            if current.empty:
                continue
            current = _with_purchase_model(current, purchase_model, as_of, horizon_days)
            if model is not None:
                risk = pd.Series(model.predict_proba(current[features])[:, 1], index=current.index)
            else:  # clm_core.churn.descriptive_risk, with the usual gap of every customer
                gap = current["mean_gap_days"].where(current["mean_gap_days"] > 0, typical_gap)
                risk = current["recency_days"] / gap
            current["risk"] = risk
            current["risk_band"] = risk_band(risk, predictive=model is not None)
            current["last_purchase"] = current["last_purchase"].dt.date
            current["days_since_last_purchase"] = current["recency_days"].astype("Int64")
            yield current[columns]

    return score


def score_churn_on_spark(engine: SparkEngine, result: ChurnResult, out: str | Path, *, top: int | None = None,
                         min_risk: float | None = None) -> int:
    """Score every customer who has bought, as of the last day of the data, with ``result``'s model (trained in
    transactions mode: :func:`train_churn_on_spark`, or :func:`clm_core.churn.churn_from_workspace` on DuckDB),
    as :func:`clm_core.churn.churn_from_workspace` scores them: its risk (the descriptive risk when the model is
    not predictive) and risk band. Writes the Parquet folder ``out`` with the columns of
    :func:`clm_core.churn.at_risk_list` but the drivers and CLV: only those at ``min_risk`` or above, when given;
    the ``top`` riskiest (riskiest first, equal risks by id), when given, else in no particular order. Returns how
    many customers were written."""
    from pyspark.sql import functions as F

    if result.mode != "transactions" or result.horizon_days is None:
        raise ValueError("score_churn_on_spark scores with a model trained on transactions, not on a labelled table")
    dataset = engine.dataset
    span = data_span(engine)
    last = span[1]
    labels = {**dataset.segment_columns, **dataset.contact_columns}
    # Read twice (the purchase model's histories or the usual gap, then the scores): kept on the executors.
    table = engine.frame("customer_table", attributes=list(labels), cutoff=last, sample_per_mille=1000).persist()
    fit = result.fit
    model = fit.fitted[fit.best] if result.predictive and fit is not None else None
    features = fit.columns if fit is not None else []
    release = None
    try:
        buyers = table.where(F.col("purchase_days") > 0)
        purchase_model = typical_gap = None
        if model is not None:
            purchase_model = _purchase_model_at(engine, last, buyers)
        else:  # clm_core.churn.descriptive_risk's usual gap, of every customer who bought
            with _quiet_pyspark():
                medians = buyers.agg(F.median("mean_gap_days").alias("gap"),
                                     F.median("recency_days").alias("recency")).first()
            typical_gap = medians["gap"]
            if typical_gap is None or not typical_gap > 0:
                typical_gap = max(float(medians["recency"] or 0.0), 1.0)
        columns = _churn_columns(dataset)
        get, release = _shipped(engine.session, (model, features, purchase_model, typical_gap))
        scores = _map(table, _churn_scorer(dataset, span, result.horizon_days, get, list(columns)), columns)
        if min_risk is not None:
            scores = scores.where(F.col("risk") >= min_risk)
        if top is not None:  # a global sort scores everyone twice (once to sample the ranges): only for the top
            scores = scores.orderBy(F.desc("risk"), "customer_id").limit(top)
        path = _write(scores, out)
    finally:
        if release is not None:
            release()
        table.unpersist()
    return int(_read(engine.session, path).count())


# --- segments -------------------------------------------------------------------------------------------------

@dataclass
class SparkSegments:
    """RFM segments and lifecycle stages as of ``as_of``, every customer's in the Parquet folder ``path`` (the
    columns of :class:`clm_core.segments.SegmentResult`'s ``customers``). ``profiles``: per segment, as
    :func:`clm_core.segments.segment_profiles`; ``stages``: per stage, customers and share."""

    as_of: date
    customers: int
    profiles: pd.DataFrame
    stages: pd.DataFrame
    has_money: bool
    path: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain numbers for JSON, as :meth:`clm_core.segments.SegmentResult.to_dict` gives them (without the score
        rules and stage settings)."""
        def plain(value):
            if isinstance(value, np.integer):
                return int(value)
            if isinstance(value, (float, np.floating)):
                return None if pd.isna(value) else float(value)
            return value

        return {
            "as_of": self.as_of.isoformat(),
            "customers": self.customers,
            "has_money": self.has_money,
            "segments": {row["rfm_segment"]: {key: plain(value) for key, value in row.items() if key != "rfm_segment"}
                         for row in self.profiles.to_dict("records")},
            "stages": {row["lifecycle_stage"]: {key: plain(value) for key, value in row.items()
                                                if key != "lifecycle_stage"}
                       for row in self.stages.to_dict("records")},
            "notes": self.notes,
        }


def _percentile_scores(buyers: "DataFrame", values: list[str]) -> tuple[int, dict[str, "DataFrame"]]:
    """(customers, scores): the rows of ``buyers`` (one per customer who bought) and, per column of ``values``,
    each distinct value's score: floor(5 p) + 1 with p = (average rank - 1/2) / n, the average rank of a value
    being the customers below it plus (those tied with it + 1) / 2, in the steps of
    :func:`clm_core.segments.rfm_scores`. The customers below a value are a running sum of the counts within a
    range of values (ranges split at approximate quantiles, as many as shuffle partitions) plus the customers of
    the ranges before: two passes over the customers, whatever their number."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    parts = max(1, int(buyers.sparkSession.conf.get("spark.sql.shuffle.partitions")))
    probabilities = [i / parts for i in range(1, parts)]
    cuts = buyers.approxQuantile(values, probabilities, 0.01) if probabilities else [[] for _ in values]
    ranges = {value: sum(((F.col(value) > bound).cast("int") for bound in sorted(set(bounds))), F.lit(0))
              for value, bounds in zip(values, cuts)}
    per_range = buyers.select(F.explode(F.array(*(F.struct(F.lit(value).alias("value"), part.alias("part"))
                                                  for value, part in ranges.items()))).alias("range"))
    sizes = _to_pandas(per_range.groupBy("range.value", "range.part").count())
    customers = int(sizes.loc[sizes["value"] == values[0], "count"].sum())
    scores = {}
    for value, part in ranges.items():
        own = sizes[sizes["value"] == value].sort_values("part")
        before = np.concatenate([[0], np.cumsum(own["count"].to_numpy(dtype=np.int64))[:-1]])
        offsets = F.create_map(*(F.lit(item) for pair in zip(own["part"].tolist(), before.tolist()) for item in pair))
        counts = buyers.groupBy(value).agg(F.count(F.lit(1)).alias("tied")).withColumn("part", part)
        running = F.sum("tied").over(Window.partitionBy("part").orderBy(value))  # distinct values: a running sum
        average_rank = running - F.col("tied") + offsets[F.col("part")] + (F.col("tied") + 1) / 2
        score = F.floor(F.lit(_SCORE_LEVELS) * ((average_rank - 0.5) / F.lit(max(customers, 1)))) + 1
        scores[value] = counts.select(value, score.cast("bigint").alias("score"))
    return customers, scores


def _stage_columns() -> dict[str, str]:
    return {"customer_id": "string", "recency_days": "double", "purchase_days": "bigint",
            "purchase_value": "double", "r_score": "bigint", "f_score": "bigint", "m_score": "bigint",
            "fm_score": "bigint", "rfm_segment": "string", "lifecycle_stage": "string",
            # for the profiles, not written
            "revenue": "double", "orders": "bigint"}


def _segment_scorer(dataset: DatasetInfo, span: tuple[date, date], as_of: date, rules: pd.DataFrame,
                    settings: StageSettings, columns: list[str]
                    ) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The executors' part: each batch of customer-table rows as of ``as_of`` (with their scores and stage facts)
    given its segment and lifecycle stage."""

    def label(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from clm_core.customers import customer_table
        from clm_core.segments import assign_segments, lifecycle_stages

        for rows in batches:
            table = customer_table(_Answers(dataset, {"date_span": _span_frame(span), "customer_table": rows}),
                                   as_of, attributes=False)
            recent = table["recent_purchase_days"].fillna(0).to_numpy(dtype=float)
            prior = table["prior_purchase_days"].fillna(0).to_numpy(dtype=float)
            comeback = pd.to_datetime(table["last_comeback"])
            facts = table.assign(frequency_trend=(recent - prior) / np.maximum(recent + prior, 1),
                                 days_since_comeback=(pd.Timestamp(as_of) - comeback).dt.days.astype(float))
            for score in ("r_score", "f_score", "m_score", "fm_score"):
                table[score] = table[score].astype("Int64")
            table["rfm_segment"] = assign_segments(table, rules).astype(str)
            table["lifecycle_stage"] = lifecycle_stages(facts, settings).astype(str)
            yield table[columns]

    return label


def segments_on_spark(engine: SparkEngine, out: str | Path, *, as_of: date | None = None,
                      rules: pd.DataFrame | None = None, settings: StageSettings | None = None) -> SparkSegments:
    """RFM scores, segments and lifecycle stages of every customer as of ``as_of`` (default: the last day of the
    data), as :func:`clm_core.segments.segment_customers` gives them (``rules``, ``settings`` as there), written
    to the Parquet folder ``out``; with the profile of each segment and the customers per stage."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    settings = (settings or StageSettings()).check()
    rules = validate_segment_rules(default_segment_rules() if rules is None else rules)
    dataset = engine.dataset
    first, last = data_span(engine)
    as_of = _check_date(as_of or last, first, last)
    money = dataset.has_money
    table = engine.frame("customer_table", cutoff=as_of, sample_per_mille=1000).join(
        engine.frame("customer_stage_facts", cutoff=as_of, churn_days=settings.churn_days), "customer_id", "left")
    bought = F.col("purchase_days") > 0
    # The values ranked, as clm_core.segments ranks them (fewer days since the last purchase score higher).
    values = {"r_score": -F.col("recency_days").cast("double"), "f_score": F.col("purchase_days").cast("double")}
    if money:
        values["m_score"] = F.coalesce(F.col("purchase_value").cast("double"), F.lit(0.0))
    # Every customer's row is read by each ranking and by the labelling: computed once, kept on the executors.
    table = table.select("*", *(F.when(bought, value).alias(f"{name}_value") for name, value in values.items()))
    kept = table = table.persist(StorageLevel.MEMORY_AND_DISK)
    labelled = None
    try:
        customers, scores = _percentile_scores(table.where(bought), [f"{name}_value" for name in values])
        if customers == 0:
            raise DataRangeError("No customer had bought anything by this date: RFM scores need purchases. Pick a "
                                 "later date.")
        for name in values:
            table = table.join(scores[f"{name}_value"].withColumnRenamed("score", name), f"{name}_value", "left")
        if not money:
            table = table.withColumn("m_score", F.lit(None).cast("bigint"))
        fm = F.floor((F.col("f_score") + F.col("m_score") + 1) / 2) if money else F.col("f_score")
        table = table.withColumn("fm_score", fm.cast("bigint")).drop(*(f"{name}_value" for name in values))
        columns = _stage_columns()
        labelled = _map(table, _segment_scorer(dataset, (first, last), as_of, rules, settings, list(columns)),
                        columns).persist(StorageLevel.MEMORY_AND_DISK)
        path = _write(labelled.drop("revenue", "orders"), out)
        profiles, stage_counts = _profiles(labelled, _segment_order(rules), money)
    finally:
        if labelled is not None:
            labelled.unpersist()
        kept.unpersist()
    total = int(stage_counts.sum())
    stages = pd.DataFrame({"lifecycle_stage": list(STAGES), "customers": stage_counts.to_numpy(),
                           "share_of_customers": stage_counts.to_numpy() / max(total, 1)})
    notes = [] if money else ["The data have no amounts: customers are scored on recency and frequency only (no M "
                              "score), and the segment rules read F where they say F(M)."]
    returns_only = int(stages.set_index("lifecycle_stage").loc[RETURNS_ONLY, "customers"])
    if returns_only:
        notes.append(f"{returns_only:,} customer{'' if returns_only == 1 else 's'} had no purchase left by then, only "
                     "returns: they have no scores and are in 'Returns only'.")
    return SparkSegments(as_of=as_of, customers=total, profiles=profiles, stages=stages, has_money=money, path=path,
                         notes=notes)


def _profiles(labelled: "DataFrame", order: list[str], money: bool) -> tuple[pd.DataFrame, pd.Series]:
    """(profiles, stage counts): :func:`clm_core.segments.segment_profiles` of the labelled customers and the
    customers per lifecycle stage, as sums, counts and medians on Spark (one pass)."""
    from pyspark.sql import functions as F

    with _quiet_pyspark():
        grouped = _to_pandas(labelled.groupingSets([["rfm_segment"], ["lifecycle_stage"]], "rfm_segment",
                                                   "lifecycle_stage").agg(
            F.grouping("lifecycle_stage").alias("by_segment"), F.count(F.lit(1)).alias("customers"),
            F.sum("revenue").alias("revenue"), F.sum("purchase_value").alias("purchase_value"),
            F.sum("orders").alias("orders"), F.median("recency_days").alias("median_days_since_last_purchase")))
    by_stage = grouped[grouped["by_segment"] == 0].set_index("lifecycle_stage")["customers"]
    stage_counts = by_stage.reindex(list(STAGES)).fillna(0).astype(np.int64)
    profile = grouped[grouped["by_segment"] == 1].set_index("rfm_segment").reindex(order)
    total = int(stage_counts.sum())
    profile["customers"] = profile["customers"].fillna(0).astype(np.int64)
    profile["orders"] = profile["orders"].fillna(0)
    if money:
        profile[["revenue", "purchase_value"]] = profile[["revenue", "purchase_value"]].astype(float).fillna(0.0)
    else:
        profile["revenue"] = profile["purchase_value"] = np.nan
    profile["share_of_customers"] = profile["customers"] / total if total else np.nan
    revenue = profile["revenue"].sum()
    profile["share_of_revenue"] = profile["revenue"] / revenue if money and revenue > 0 else np.nan
    profile["average_order_value"] = profile["purchase_value"] / profile["orders"].where(profile["orders"] > 0)
    profile["median_days_since_last_purchase"] = profile["median_days_since_last_purchase"].astype(float)
    profile.index.name = "rfm_segment"
    return profile[["customers", "share_of_customers", "revenue", "share_of_revenue", "average_order_value",
                    "median_days_since_last_purchase"]].reset_index(), stage_counts


# --- product pairs --------------------------------------------------------------------------------------------

def bought_together_on_spark(engine: SparkEngine, out: str | Path, *, min_orders: int = 5, top: int = 10) -> int:
    """Products frequently bought together (the named query ``bought_together``: per product its ``top``
    partners in at least ``min_orders`` purchase orders together, by confidence), with the columns of
    :func:`clm_core.recommend.bought_together`, written to the Parquet folder ``out``. Returns the pairs
    written."""
    from pyspark.sql import functions as F

    if not engine.dataset.has_products:
        raise SchemaError("This file has no product column, so there is nothing to recommend; load it again with its "
                          "product ID or product name column mapped to get recommendations.")
    if min_orders < 1 or top < 1:
        raise ValueError("min_orders and top must be at least 1")
    last = data_span(engine)[1]
    rules = engine.frame("bought_together", min_orders=int(min_orders), top=int(top), product=None)
    names = engine.frame("product_names", end=last)
    display = names.select("product", F.coalesce("product_name", "product").alias("name"))
    pairs = (rules.join(display.withColumnRenamed("name", "product_name"), "product", "left")
             .join(display.withColumnRenamed("product", "other_product")
                   .withColumnRenamed("name", "other_product_name"), "other_product", "left")
             .select(F.col("product").alias("product_id"), "product_name",
                     F.col("other_product").alias("other_product_id"), "other_product_name",
                     *(F.col(column).cast("bigint").alias(column)
                       for column in ("orders_both", "product_orders", "other_orders")),
                     *(F.col(column).cast("double").alias(column) for column in ("support", "confidence", "lift"))))
    path = _write(pairs, out)
    return int(_read(engine.session, path).count())

