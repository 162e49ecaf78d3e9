"""Cohort retention: customers grouped by the period of their first purchase, followed period by period.

Definitions (shown in the app too):

* cohort: the week, month or quarter of a customer's first purchase (returns are not purchases);
* offset k: periods since the cohort's period (0 = the acquisition period);
* classic retention: share of the cohort that bought in period k;
* rolling (unbounded) retention: share that bought in period k or later;
* churn rate: 1 - retention at offset k (for rolling, the share that never bought again after k);
* revenue retention: net revenue in period k / net revenue in period 0;
* cumulative revenue per customer: net revenue of periods 0..k / cohort size (the empirical LTV curve).

Weeks start on Monday (ISO weeks, as DuckDB's ``date_trunc('week')``); a weekly cohort is labelled with its Monday.

Censoring, what the data cannot know:

* right, incomplete periods: offsets a cohort has not reached are absent, and the last period of the data, when it
  is not complete, is flagged (``complete`` False) and its counts and metrics are missing (NaN), never zero;
* right, rolling retention: "bought then or later" only sees purchases up to the data end, so every rolling cell is
  a lower bound (``censored`` True);
* left, the first cohort: the period the data start in holds customers who had bought before the data start, so it
  is no cohort of new customers (``left_censored`` True) and the average leaves it out unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clm_core.engine import Engine
from clm_core.errors import DataRangeError

__all__ = ["PERIODS", "DEFINITIONS", "WEEK_START", "FEW_COHORTS", "CohortTable", "cohort_table", "period_offsets",
           "period_label"]

PERIODS = {"week": "Week", "month": "Month", "quarter": "Quarter"}
DEFINITIONS = {
    "classic": "Classic: the share of the cohort that bought in that period.",
    "rolling": "Rolling (unbounded): the share of the cohort that bought in that period or any later one.",
}
WEEK_START = "Weeks start on Monday; a weekly cohort is named by the date of its Monday."
# Average-curve points resting on fewer cohorts than this are shown faded: one or two cohorts are anecdotes.
FEW_COHORTS = 3
# pandas period frequencies; DuckDB's date_trunc('week') starts weeks on Monday, as W-SUN does.
_PANDAS_PERIOD = {"week": "W-SUN", "month": "M", "quarter": "Q"}
_METRIC_COLUMNS = ["retention", "churn_rate", "revenue_retention", "cumulative_revenue_per_customer",
                   "orders_per_customer"]


def period_offsets(cohort: pd.Series, period: pd.Series, unit: str) -> pd.Series:
    """Whole periods from ``cohort`` to ``period`` (both period starts)."""
    if unit == "week":
        return ((period - cohort).dt.days // 7).astype(int)
    months = (period.dt.year - cohort.dt.year) * 12 + (period.dt.month - cohort.dt.month)
    return (months // 3 if unit == "quarter" else months).astype(int)


def _shift(start: pd.Timestamp, periods: int, unit: str) -> pd.Timestamp:
    """The start of the period ``periods`` after the one starting at ``start``."""
    if unit == "week":
        return start + pd.Timedelta(days=7 * periods)
    return start + pd.DateOffset(months=periods * (3 if unit == "quarter" else 1))


def period_label(start: pd.Timestamp, unit: str) -> str:
    """'2010-12' for months, '2011-Q1' for quarters, '2011-01-03' (the Monday) for weeks."""
    if unit == "month":
        return start.strftime("%Y-%m")
    if unit == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return start.strftime("%Y-%m-%d")


@dataclass
class CohortTable:
    """The long cohort table and what it was computed with.

    ``long`` has one row per cohort (and segment) and offset: ``cohort``,
    ``segment``, ``offset``, ``period_start``, ``cohort_size``, ``active``,
    ``revenue``, ``orders`` (all three missing where ``complete`` is False),
    ``complete``, ``censored`` (the value can still rise with more data: every
    rolling cell), ``left_censored`` (the first cohort of the data, which holds
    customers who bought before it) and the metrics of ``_METRIC_COLUMNS``.
    """

    long: pd.DataFrame
    period: str
    definition: str
    partial_last_period: pd.Timestamp | None
    segment_label: str | None = None
    notes: list[str] = field(default_factory=list)

    def average_curve(self, metric: str = "retention", *, include_left_censored: bool = False) -> pd.DataFrame:
        """Size-weighted average over cohorts that completed each offset: ``offset``, value, ``cohorts`` and
        ``customers`` (how many the point rests on). The left-censored first cohort is left out unless
        ``include_left_censored``; the frame is empty when no other cohort is shown."""
        done = self.long[self.long["complete"]]
        if not include_left_censored:
            done = done[~done["left_censored"]]
        grouped = done.groupby("offset")
        if metric == "retention":
            value = grouped["active"].sum() / grouped["cohort_size"].sum()
        elif metric == "revenue_retention":
            value = grouped["revenue"].sum() / grouped["revenue_0"].sum()
        else:
            weights = done["cohort_size"]
            value = (done[metric] * weights).groupby(done["offset"]).sum() / weights.groupby(done["offset"]).sum()
        return pd.DataFrame({
            "offset": value.index,
            metric: value.to_numpy(dtype=float),
            "cohorts": grouped.size().to_numpy(),
            "customers": grouped["cohort_size"].sum().to_numpy(),
        })

    def headline(self, *, include_left_censored: bool = False) -> dict[int, float | None]:
        """Average-cohort retention at offsets 1, 3 and 12 (None where no cohort got that far)."""
        curve = self.average_curve(include_left_censored=include_left_censored).set_index("offset")["retention"]
        return {offset: (float(curve[offset]) if offset in curve.index else None) for offset in (1, 3, 12)}

    def row_labels(self) -> pd.Series:
        """The wide table's row label of each row of ``long``: '2010-12 (948 customers)', segment first if split."""
        label = self.long["cohort"].map(lambda c: period_label(c, self.period))
        if self.segment_label:
            label = self.long["segment"].astype(str) + " | " + label
        return label + " (" + self.long["cohort_size"].map("{:,}".format) + " customers)"

    def wide(self, metric: str = "retention") -> pd.DataFrame:
        """Cohort x offset table of one metric, rows in cohort order, labelled as :meth:`row_labels`."""
        frame = self.long.assign(row=self.row_labels())
        if frame[metric].dtype != object:
            frame[metric] = frame[metric].astype(float)  # counts blank in the partial period: NaN, not pd.NA
        wide = frame.pivot_table(index="row", columns="offset", values=metric, aggfunc="first", dropna=False,
                                 sort=False)
        wide.columns.name = f"{PERIODS[self.period]}s since first purchase"
        return wide

    def export_long(self) -> pd.DataFrame:
        """The long table with readable cohort labels, for CSV and Excel."""
        frame = self.long.drop(columns=["revenue_0"]).copy()
        frame.insert(0, "cohort_label", frame["cohort"].map(lambda c: period_label(c, self.period)))
        return frame


def _left_censored_note(long: pd.DataFrame, period: str, first_ts: pd.Timestamp) -> str:
    """Why the first cohort is set apart, with its period-1 retention against the other cohorts' where known."""
    first = long[long["left_censored"]]
    note = (f"The first cohort ({period_label(first['cohort'].iloc[0], period)}) may include customers who bought "
            f"before your data start ({first_ts:%d %b %Y}): they are not new customers")
    at_one = long[(long["offset"] == 1) & long["complete"]]
    mine, others = at_one[at_one["left_censored"]], at_one[~at_one["left_censored"]]
    if len(mine) and len(others):
        note += (f" ({period} 1 retention {mine['active'].sum() / mine['cohort_size'].sum():.1%} against "
                 f"{others['active'].sum() / others['cohort_size'].sum():.1%} for the other cohorts)")
    return note + ". It is marked on the heatmap and left out of the average cohort unless you include it."


def _period_count(first: pd.Timestamp, last: pd.Timestamp, unit: str) -> int:
    starts = pd.Series([first, last]).dt.to_period(_PANDAS_PERIOD[unit])
    return int((starts.iloc[1] - starts.iloc[0]).n) + 1


def cohort_table(
    workspace: Engine,
    *,
    period: str = "month",
    definition: str = "classic",
    segment: str | None = None,
    label: str | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    min_cohort_size: int = 1,
) -> CohortTable:
    """Compute the cohort table, split by ``segment`` (a segment column of the file) or ``label`` (a kind of
    stored customer label: ``rfm_segment``, ``lifecycle_stage``); :class:`DataRangeError` when the data or
    filters leave nothing to show."""
    if segment is not None and label is not None:
        raise ValueError("Split by a segment column or by a customer label, not both.")
    split = {"label_kind": label} if label is not None else {}
    prefix = "labelled_" if label is not None else ""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {', '.join(DEFINITIONS)}")
    span = workspace.query("date_span").iloc[0]
    first_ts, last_ts = pd.Timestamp(span["first_ts"]), pd.Timestamp(span["last_ts"])
    periods = _period_count(first_ts, last_ts, period)
    if periods < 2:
        suggestion = " Try weeks instead." if period != "week" else ""
        raise DataRangeError(
            f"Your data covers only one {period} ({first_ts:%d %b %Y} to {last_ts:%d %b %Y}); cohorts need at "
            f"least two {period}s to compare.{suggestion}"
        )

    activity = workspace.query(prefix + "cohort_activity", segment=segment, period=period, **split)
    for column in ("cohort", "period"):
        activity[column] = pd.to_datetime(activity[column])
    activity["offset"] = period_offsets(activity["cohort"], activity["period"], period)
    last_period = activity["period"].max()
    partial = last_ts + pd.Timedelta(days=1) < _shift(last_period, 1, period)

    keys = ["cohort", "segment"]
    sizes = activity[activity["offset"] == 0].set_index(keys)[["active", "revenue"]].rename(
        columns={"active": "cohort_size", "revenue": "revenue_0"})
    # Every offset a cohort has reached gets a row; zero when nobody bought (a real, observed zero).
    grid = sizes.reset_index()
    grid["max_offset"] = period_offsets(grid["cohort"], pd.Series(last_period, index=grid.index), period)
    grid = grid.loc[grid.index.repeat(grid["max_offset"] + 1)]
    grid["offset"] = grid.groupby(keys).cumcount()
    long = grid.drop(columns="max_offset").merge(
        activity[keys + ["offset", "active", "revenue", "orders"]], on=keys + ["offset"], how="left")
    long[["active", "revenue", "orders"]] = long[["active", "revenue", "orders"]].fillna(0)
    long["period_start"] = [_shift(cohort, offset, period) for cohort, offset in zip(long["cohort"], long["offset"])]

    if definition == "rolling":
        last = workspace.query(prefix + "cohort_last_purchase", segment=segment, period=period, **split)
        for column in ("cohort", "last_period"):
            last[column] = pd.to_datetime(last[column])
        last["offset"] = period_offsets(last["cohort"], last["last_period"], period)
        counts = last.groupby(keys + ["offset"])["customers"].sum()
        still = (counts.groupby(level=[0, 1]).transform(lambda s: s[::-1].cumsum()[::-1]) if len(counts) else counts)
        long = long.merge(still.rename("rolling_active").reset_index(), on=keys + ["offset"], how="left")
        # Offsets with no last purchase inherit the count of the next offset that has one.
        long = long.sort_values(keys + ["offset"])
        long["rolling_active"] = long.groupby(keys)["rolling_active"].transform(lambda s: s.bfill()).fillna(0)
        long["active"] = long["rolling_active"].astype(int)
        long = long.drop(columns="rolling_active")

    long["complete"] = ~(partial & (long["period_start"] == last_period))
    # Offset 0 is everyone by definition; every later rolling cell misses purchases made after the data end.
    long["censored"] = (definition == "rolling") & (long["offset"] > 0)
    long["left_censored"] = long["cohort"] == first_ts.to_period(_PANDAS_PERIOD[period]).start_time
    long["cohort_size"] = long["cohort_size"].astype(int)
    long["active"] = long["active"].astype(int)
    long["orders"] = long["orders"].astype(int)

    if start is not None:
        # A start date inside a period keeps that period's cohort.
        long = long[long["cohort"] >= pd.Timestamp(start).to_period(_PANDAS_PERIOD[period]).start_time]
    if end is not None:
        long = long[long["cohort"] <= pd.Timestamp(end)]
    long = long[long["cohort_size"] >= min_cohort_size]
    if long.empty:
        raise DataRangeError(
            "No cohort matches these filters. Widen the date range or lower the minimum cohort size."
        )

    long = long.sort_values(keys + ["offset"]).reset_index(drop=True)
    size = long["cohort_size"]
    long["retention"] = long["active"] / size
    long["churn_rate"] = 1 - long["retention"]
    long["revenue_retention"] = long["revenue"] / long["revenue_0"].where(long["revenue_0"] > 0)
    long["cumulative_revenue_per_customer"] = long.groupby(keys)["revenue"].cumsum() / size
    long["orders_per_customer"] = long["orders"] / size
    long.loc[~long["complete"], _METRIC_COLUMNS] = np.nan
    # The partial period's counts are as unknown as its rates: blank in every export too, never a low number.
    for column in ("active", "orders"):
        long[column] = long[column].astype("Int64").mask(~long["complete"])
    long["revenue"] = long["revenue"].mask(~long["complete"])

    notes = []
    if long["left_censored"].any():
        notes.append(_left_censored_note(long, period, first_ts))
    if definition == "rolling":
        notes.append(
            f"Rolling retention only sees purchases up to the end of the data ({last_ts:%d %b %Y}): a customer who "
            "buys again after it is not counted, so every value is a lower bound (marked ≥), the more so for "
            f"{period}s close to the end."
        )
    if partial:
        notes.append(
            f"The last {period} ({period_label(last_period, period)}) is not complete (data end on "
            f"{last_ts:%d %b %Y}); its values are left blank."
        )
    return CohortTable(long=long, period=period, definition=definition,
                       partial_last_period=last_period if partial else None,
                       segment_label=segment or label, notes=notes)
