"""Plotly figures for the pages: built here so they can be tested without a browser."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly import colors as px_colors

__all__ = [
    "revenue_by_month_figure",
    "cohort_heatmap_figure",
    "retention_curves_figure",
    "cumulative_revenue_figure",
    "calculator_years_figure",
    "sensitivity_figure",
    "clv_distribution_figure",
    "value_concentration_figure",
    "clv_interval_figure",
    "probability_alive_figure",
    "holdout_by_frequency_figure",
    "tracking_figure",
    "churn_gap_figure",
    "roc_figure",
    "calibration_figure",
    "gains_figure",
    "importance_figure",
    "risk_distribution_figure",
    "campaign_figure",
    "action_summary_figure",
    "customer_timeline_figure",
    "segment_treemap_figure",
    "silhouette_figure",
    "stage_history_figure",
    "stage_flow_figure",
]

_LEGEND_LINES = 12  # more lines than this: no legend (hover names them)
# Every chart is drawn on Plotly's white template, made the default: a figure takes the default as it is, where a
# template named in its layout is validated and deep-copied again (the four charts of the churn model check: made
# in 0.056 s with it named, 0.024 s with the default).
pio.templates.default = "plotly_white"
_LAYOUT = dict(margin=dict(l=10, r=10, t=50, b=10), hovermode="x unified")


def _plain(text: object) -> str:
    """Text from the user's file as Plotly shows it: Plotly renders tags (links among them) in labels and
    hover text, so ``<``, ``>`` and ``&`` are escaped, and ``%{`` cannot start a template field."""
    return html.escape(str(text), quote=False).replace("%{", "%\u200b{")


def revenue_by_month_figure(monthly: pd.DataFrame, *, currency: str = "", has_money: bool = True,
                            first_date: pd.Timestamp | None = None, last_date: pd.Timestamp | None = None) -> go.Figure:
    """Bars of net revenue per month (or active customers when there is no money column).

    With the data's ``first_date`` and ``last_date``, a first or last month the data cover only in part is drawn
    pale and named as such (a month with 9 days of data is no drop in sales).
    """
    months = pd.to_datetime(monthly["month"])
    partial = pd.Series(False, index=monthly.index)
    covered = {}
    if first_date is not None and len(monthly):
        first_date = pd.Timestamp(first_date)
        if first_date.normalize() > months.iloc[0]:
            partial.iloc[0] = True
            covered[monthly.index[0]] = (first_date, months.iloc[0] + pd.offsets.MonthEnd(0))
    if last_date is not None and len(monthly):
        last_date = pd.Timestamp(last_date)
        month_end = months.iloc[-1] + pd.offsets.MonthEnd(0)
        if last_date.normalize() < month_end:
            partial.iloc[-1] = True
            start = covered.get(monthly.index[-1], (months.iloc[-1],))[0]
            covered[monthly.index[-1]] = (start, last_date)
    if has_money:
        column, name, unit = "net_revenue", "Net revenue", ""
        title, axis = "Revenue by month (net of returns)", f"Net revenue{f' ({currency})' if currency else ''}"
        value_format = "%{y:,.0f}"
    else:
        column, name, unit = "customers", "Active customers", " customers"
        title, axis = "Active customers by month", "Customers who bought"
        value_format = "%{y:,}"
    figure = go.Figure()
    figure.add_bar(x=months[~partial], y=monthly.loc[~partial, column], name=name,
                   hovertemplate=f"%{{x|%b %Y}}: {value_format}{unit}<extra></extra>")
    if partial.any():
        spans = [f"data from {covered[i][0]:%d %b} to {covered[i][1]:%d %b %Y}" for i in monthly.index[partial]]
        figure.add_bar(x=months[partial], y=monthly.loc[partial, column], name=f"{name}, month not complete",
                       customdata=spans, marker=dict(color="rgba(31,119,180,0.3)", line=dict(color="#1f77b4", width=1)),
                       text=["partial month"] * int(partial.sum()), textposition="outside",
                       hovertemplate=f"%{{x|%b %Y}} (partial, %{{customdata}}): {value_format}{unit}<extra></extra>")
    figure.update_layout(title=title, xaxis_title="Month", yaxis_title=axis, barmode="overlay", **_LAYOUT)
    figure.update_xaxes(tickformat="%b %Y", dtick="M1" if len(monthly) <= 24 else None)
    return figure


def cohort_heatmap_figure(table, metric: str = "retention", *, max_cohorts: int | None = None) -> go.Figure:
    """The triangle: cohorts down, periods since first purchase across, values as %; hover shows counts.

    Only the ``max_cohorts`` most recent rows are drawn (all when None; the exports keep every row). The
    left-censored first cohort is flagged with ⚠ and a dashed frame; censored rolling cells read '≥' (churn '≤').
    """
    from clm_core.cohorts import PERIODS

    wide = table.wide(metric)
    total_rows = len(wide)
    if max_cohorts is not None and total_rows > max_cohorts:
        wide = wide.iloc[-max_cohorts:]
    active = table.wide("active").reindex(index=wide.index, columns=wide.columns)
    censored = table.wide("censored").reindex(index=wide.index, columns=wide.columns) == 1
    labelled = table.long.assign(row=table.row_labels())
    left_rows = set(labelled.loc[labelled["left_censored"], "row"])
    unit = PERIODS[table.period].lower()
    values = wide.to_numpy(dtype=float)
    bound = {"retention": "≥", "churn_rate": "≤"}.get(metric, "")
    marks = censored.to_numpy() if bound else np.zeros(values.shape, dtype=bool)
    text = [[("" if value != value else f"{bound if mark else ''}{value:.0%}") for value, mark in zip(row, mark_row)]
            for row, mark_row in zip(values, marks)]
    notes = np.where(marks, ("<br>A lower bound" if bound == "≥" else "<br>An upper bound")
                     + ": customers who buy again after the end of the data are not counted", "")
    notes = notes.astype(object)
    for i, row in enumerate(wide.index):
        if row in left_rows:
            notes[i] = [note + "<br>First cohort: may include customers who bought before the data start"
                        for note in notes[i]]
    counts = active.to_numpy(dtype=float)
    customdata = np.dstack([np.where(np.isnan(counts), 0, counts), notes])
    labels = {"retention": "Customer retention", "revenue_retention": "Revenue retention",
              "churn_rate": "Churn rate"}
    y = [("⚠ " if row in left_rows else "") + _plain(row) for row in wide.index]
    figure = go.Figure(go.Heatmap(
        z=values, x=[str(c) for c in wide.columns], y=y, text=text,
        texttemplate="%{text}", hoverongaps=False,
        customdata=customdata, colorscale="Blues", zmin=0, zmax=1 if metric != "revenue_retention" else None,
        colorbar=dict(title="%", tickformat=".0%"),
        hovertemplate=(f"Cohort %{{y}}<br>{unit.title()} %{{x}} after first purchase<br>"
                       f"{labels.get(metric, metric)}: %{{z:.1%}}<br>Customers who bought: %{{customdata[0]:,}}"
                       "%{customdata[1]}<extra></extra>"),
    ))
    for i, row in enumerate(wide.index):
        if row in left_rows:
            figure.add_shape(type="rect", x0=-0.5, x1=len(wide.columns) - 0.5, y0=i - 0.5, y1=i + 0.5,
                             line=dict(color="#d62728", width=2, dash="dash"))
    shown = f" (most recent {len(wide):,} of {total_rows:,} cohorts)" if len(wide) < total_rows else ""
    figure.update_layout(
        title=f"{labels.get(metric, metric)} by cohort{shown}",
        xaxis_title=f"{unit.title()}s since first purchase", yaxis_title="Cohort (first purchase)",
        height=max(400, 22 * len(wide) + 150), **{**_LAYOUT, "hovermode": "closest"},
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return figure


def _cohort_line_name(table, cohort, segment, left_censored: bool) -> str:
    from clm_core.cohorts import period_label

    name = period_label(cohort, table.period) + (f" {segment}" if table.segment_label else "")
    return _plain(name) + (" (first cohort, may include earlier buyers)" if left_censored else "")


def retention_curves_figure(table, metric: str = "retention", *, include_left_censored: bool = False) -> go.Figure:
    """One thin line per cohort and the size-weighted average in bold; average points resting on fewer than
    ``FEW_COHORTS`` cohorts are faded and say how many. The left-censored first cohort is dashed and, unless
    ``include_left_censored``, left out of the average."""
    from clm_core.cohorts import FEW_COHORTS, PERIODS

    unit = PERIODS[table.period].lower()
    figure = go.Figure()
    for (cohort, segment), rows in table.long.groupby(["cohort", "segment"]):
        rows = rows[rows["complete"]]
        left = bool(rows["left_censored"].any())
        name = _cohort_line_name(table, cohort, segment, left)
        figure.add_scatter(x=rows["offset"], y=rows[metric], mode="lines", name=name,
                           line=dict(width=1.5 if left else 1, color="rgba(120,140,170,0.35)",
                                     dash="dash" if left else "solid"),
                           showlegend=False, hovertemplate=f"{name}: %{{y:.1%}}<extra></extra>")
    value = metric if metric in ("retention", "revenue_retention") else "retention"
    average = table.average_curve(value, include_left_censored=include_left_censored)
    basis = [f"{cohorts:,} cohort{'s' if cohorts != 1 else ''}, {customers:,} customers"
             for cohorts, customers in zip(average["cohorts"], average["customers"])]
    hover = f"Average cohort, {unit} %{{x}}: %{{y:.1%}}<br>Based on %{{customdata}}<extra></extra>"
    solid = (average["cohorts"] >= FEW_COHORTS).to_numpy()
    # The well-supported part is one line; the tail resting on few cohorts is dotted, faded and labelled.
    figure.add_scatter(x=average["offset"][solid], y=average[value][solid], mode="lines+markers",
                       name="Average cohort", customdata=np.array(basis, dtype=object)[solid],
                       line=dict(width=4, color="#d62728"), hovertemplate=hover)
    if (~solid).any():
        tail = np.flatnonzero(~solid)
        joined = np.r_[tail[0] - 1, tail] if tail[0] > 0 and solid[tail[0] - 1] else tail
        figure.add_scatter(x=average["offset"].iloc[joined], y=average[value].iloc[joined], mode="lines",
                           line=dict(width=3, color="rgba(214,39,40,0.35)", dash="dot"), hoverinfo="skip",
                           showlegend=False)
        figure.add_scatter(x=average["offset"].iloc[tail], y=average[value].iloc[tail], mode="markers+text",
                           name=f"Average, fewer than {FEW_COHORTS} cohorts", customdata=np.array(basis, dtype=object)[tail],
                           text=[f"{n} cohort{'s' if n != 1 else ''}" for n in average["cohorts"].iloc[tail]],
                           textposition="top center", textfont=dict(color="rgba(214,39,40,0.7)", size=11),
                           marker=dict(size=8, color="rgba(214,39,40,0.35)"), hovertemplate=hover)
    label = "Customer retention" if metric == "retention" else "Revenue retention"
    left_out = "" if include_left_censored or not table.long["left_censored"].any() else ", first cohort left out"
    figure.update_layout(title=f"{label} curves<br><sup>the average is weighted by cohort size{left_out}</sup>",
                         xaxis_title=f"{unit.title()}s since first purchase", yaxis_title=f"{label} (%)",
                         legend=dict(orientation="h", yanchor="top", y=-0.2),
                         **{**_LAYOUT, "hovermode": "closest"})
    figure.update_yaxes(tickformat=".0%", rangemode="tozero")
    return figure


def cumulative_revenue_figure(table, *, currency: str = "") -> go.Figure:
    """Cumulative net revenue per acquired customer by cohort (the empirical LTV curve)."""
    from clm_core.cohorts import PERIODS

    unit = PERIODS[table.period].lower()
    figure = go.Figure()
    for (cohort, segment), rows in table.long.groupby(["cohort", "segment"]):
        rows = rows[rows["complete"]]
        left = bool(rows["left_censored"].any())
        name = _cohort_line_name(table, cohort, segment, left)
        figure.add_scatter(x=rows["offset"], y=rows["cumulative_revenue_per_customer"], mode="lines", name=name,
                           line=dict(dash="dash" if left else "solid"),
                           hovertemplate=f"{name}: %{{y:,.2f}}<extra></extra>")
    axis = "Cumulative revenue per customer" + (f" ({currency})" if currency else " (your currency)")
    many = len(figure.data) > _LEGEND_LINES  # a legend of dozens of cohorts would squeeze the plot away
    figure.update_layout(title="Cumulative net revenue per acquired customer" + (
                             "<br><sup>one line per cohort: hover a line for its name</sup>" if many else ""),
                         xaxis_title=f"{unit.title()}s since first purchase", yaxis_title=axis,
                         showlegend=not many, legend=dict(orientation="h", yanchor="top", y=-0.2),
                         **{**_LAYOUT, "hovermode": "closest"})
    return figure


def calculator_years_figure(table: pd.DataFrame, acquisition_cost: float = 0.0) -> go.Figure:
    """Discounted margin per year (bars) and its running total (line) against the acquisition cost."""
    figure = go.Figure()
    figure.add_bar(x=table["year"], y=table["discounted_margin"], name="Discounted margin that year",
                   hovertemplate="Year %{x}: %{y:,.2f}<extra></extra>")
    figure.add_scatter(x=table["year"], y=table["cumulative_discounted_margin"], mode="lines+markers",
                       name="Cumulative (CLV so far)", hovertemplate="By year %{x}: %{y:,.2f}<extra></extra>")
    if acquisition_cost > 0:
        figure.add_hline(y=acquisition_cost, line_dash="dash", line_color="#d62728",
                         annotation_text=f"Acquisition cost {acquisition_cost:,.2f}")
    figure.update_layout(title="Value of one acquired customer, year by year", xaxis_title="Year after acquisition",
                         yaxis_title="Margin per acquired customer (currency)", **_LAYOUT)
    return figure


def _percent(share: float) -> str:
    """A share as a percentage label with at most one decimal: 0.3 -> '30%', 0.025 -> '2.5%', 0.791 -> '79.1%'."""
    return f"{100 * share:.1f}".rstrip("0").rstrip(".") + "%"


def sensitivity_figure(grid: pd.DataFrame, *, current: tuple[float, float] | None = None) -> go.Figure:
    """CLV over annual retention (rows) x annual discount rate (columns); the current inputs are marked."""
    x = [_percent(rate) for rate in grid.columns]
    y = [_percent(retention) for retention in grid.index]
    values = grid.to_numpy(dtype=float)
    text = [["" if np.isnan(value) else f"{value:,.0f}" for value in row] for row in values]
    figure = go.Figure(go.Heatmap(
        z=values, x=x, y=y, text=text, texttemplate="%{text}", colorscale="Greens",
        colorbar=dict(title="CLV"),
        hovertemplate="Retention %{y}, discount rate %{x}: CLV %{z:,.2f}<extra></extra>",
    ))
    if current is not None:
        # The grid has a row and a column for the inputs (clv_calculator.sensitivity_axes): the box sits on them.
        figure.add_scatter(x=[_percent(current[1])], y=[_percent(current[0])], mode="markers", name="Your inputs",
                           marker=dict(symbol="square-open", size=28, color="#d62728", line=dict(width=3)),
                           hoverinfo="skip")
    figure.update_layout(title="CLV by annual retention and discount rate", xaxis_title="Annual discount rate (%)",
                         yaxis_title="Annual retention rate (%)", **{**_LAYOUT, "hovermode": "closest"})
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


def _histogram(values: np.ndarray, bins: int, *, color: str, what: str, value_format: str) -> go.Bar:
    """A histogram binned here, not in the browser: one bar per bin instead of every customer's value (a page
    with tens of thousands of customers sends and draws 50 numbers, not 50,000)."""
    counts, edges = np.histogram(values, bins=bins) if len(values) else (np.zeros(0, int), np.zeros(1))
    return go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color=color,
                  customdata=np.c_[edges[:-1], edges[1:]],
                  hovertemplate=f"{what} %{{customdata[0]:{value_format}}} to %{{customdata[1]:{value_format}}}: "
                                "%{y:,} customers<extra></extra>")


def clv_distribution_figure(clv: pd.Series, *, horizon_months: int) -> go.Figure:
    """Histogram of predicted CLV per customer; the top 1 % are grouped in the last bar so the bulk stays readable."""
    values = clv.dropna().to_numpy()
    cap = float(np.quantile(values, 0.99)) if len(values) else 0.0
    figure = go.Figure(_histogram(np.minimum(values, cap), 50, color="#2c7fb8", what="CLV", value_format=",.0f"))
    figure.update_layout(title=f"Predicted CLV per customer, next {horizon_months} months",
                         xaxis_title=f"Predicted CLV (currency; the last bar holds all above {cap:,.0f})",
                         yaxis_title="Customers", bargap=0.05, **_LAYOUT)
    return figure


def value_concentration_figure(clv: pd.Series) -> go.Figure:
    """Share of total predicted CLV held by the top x % of customers (a Lorenz curve, ranked high to low)."""
    values = np.sort(clv.dropna().to_numpy())[::-1]
    customers = np.arange(1, len(values) + 1) / max(len(values), 1)
    share = np.cumsum(values) / values.sum() if values.sum() > 0 else np.zeros_like(values)
    step = max(1, len(values) // 500)  # 500 points draw the same curve as a million
    figure = go.Figure()
    figure.add_scatter(x=np.r_[0, customers[::step], 1], y=np.r_[0, share[::step], 1], mode="lines",
                       name="Your customers", line=dict(width=3),
                       hovertemplate="Top %{x:.0%} of customers hold %{y:.0%} of CLV<extra></extra>")
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="Everyone equal", line=dict(dash="dot", color="grey"),
                       hoverinfo="skip")
    for top in (0.1, 0.2):
        index = max(0, int(np.ceil(top * len(values))) - 1)
        if len(values):
            figure.add_scatter(x=[top], y=[share[index]], mode="markers+text", text=[f"top {top:.0%}: {share[index]:.0%}"],
                               textposition="middle right", marker=dict(size=10, color="#d62728"), showlegend=False,
                               hoverinfo="skip")
    figure.update_layout(title="How concentrated is future value?", xaxis_title="Customers, highest CLV first (%)",
                         yaxis_title="Share of total predicted CLV (%)", **{**_LAYOUT, "hovermode": "closest"})
    figure.update_xaxes(tickformat=".0%")
    figure.update_yaxes(tickformat=".0%")
    return figure


def clv_interval_figure(scores: pd.DataFrame, *, horizon_months: int, level: float = 0.9, top: int = 200) -> go.Figure:
    """Predicted CLV of the ``top`` customers ranked by it, with the band of their ``level`` intervals
    (``clv_low`` to ``clv_high``: the uncertainty of the fitted parameters)."""
    ranked = scores.sort_values("clv", ascending=False).head(top)
    rank = np.arange(1, len(ranked) + 1)
    figure = go.Figure()
    figure.add_scatter(x=np.r_[rank, rank[::-1]], y=np.r_[ranked["clv_high"], ranked["clv_low"].to_numpy()[::-1]],
                       fill="toself", fillcolor="rgba(44,127,184,0.25)", line=dict(width=0), hoverinfo="skip",
                       name=f"{level:.0%} interval")
    figure.add_scatter(x=rank, y=ranked["clv"], mode="lines", line=dict(color="#2c7fb8", width=2), name="Predicted CLV",
                       customdata=np.c_[ranked["clv_low"], ranked["clv_high"]],
                       hovertemplate="Customer ranked %{x}: %{y:,.0f} (%{customdata[0]:,.0f} to "
                                     "%{customdata[1]:,.0f})<extra></extra>")
    figure.update_layout(title=f"Top {len(ranked)} customers' CLV, next {horizon_months} months, with its {level:.0%} "
                               "interval", xaxis_title="Customers ranked by predicted CLV",
                         yaxis_title="Predicted CLV (currency)", **{**_LAYOUT, "hovermode": "closest"})
    return figure


def probability_alive_figure(matrix: pd.DataFrame, *, unit: str) -> go.Figure:
    """P(alive) over repeat purchases (rows) x time of the last purchase (columns) for the longest-observed customer."""
    figure = go.Figure(go.Heatmap(
        z=matrix.to_numpy(), x=matrix.columns.to_numpy(), y=matrix.index.to_numpy(), colorscale="RdYlGn",
        zmin=0, zmax=1, colorbar=dict(title="P(alive)", tickformat=".0%"),
        hovertemplate=(f"%{{y}} repeat purchases, last one in {unit} %{{x:.0f}}: "
                       "%{z:.0%} likely still a customer<extra></extra>"),
    ))
    figure.update_layout(title="Probability a customer is still active",
                         xaxis_title=f"Time of the last purchase ({unit}s after the first; right = recent)",
                         yaxis_title="Repeat purchases", **{**_LAYOUT, "hovermode": "closest"})
    return figure


def holdout_by_frequency_figure(table: pd.DataFrame, *, holdout_label: str) -> go.Figure:
    """Mean holdout purchases per customer, actual vs predicted, by purchases made in the calibration period."""
    figure = go.Figure()
    figure.add_bar(x=table["frequency"], y=table["actual"], name="Actual", marker_color="#7f7f7f",
                   customdata=table["customers"],
                   hovertemplate="%{x} repeat purchases before: %{y:.2f} actual (%{customdata:,} customers)<extra></extra>")
    figure.add_bar(x=table["frequency"], y=table["predicted"], name="Predicted", marker_color="#2c7fb8",
                   hovertemplate="%{x} repeat purchases before: %{y:.2f} predicted<extra></extra>")
    # The dates on a second line: on one line the title ran past a half-width chart and was cut off.
    figure.update_layout(title=f"Purchases per customer in the check period<br><sup>{_plain(holdout_label)}</sup>",
                         barmode="group", xaxis_title="Repeat purchases in the calibration period",
                         yaxis_title="Purchases per customer, check period", **{**_LAYOUT, "margin": dict(
                             l=10, r=10, t=70, b=10)})
    figure.update_xaxes(type="category")
    return figure


def tracking_figure(tracking: pd.DataFrame, calibration_end) -> go.Figure:
    """Cumulative repeat purchases, actual vs model, with the calibration end marked."""
    figure = go.Figure()
    figure.add_scatter(x=tracking["date"], y=tracking["actual"], mode="lines", name="Actual",
                       line=dict(color="#7f7f7f", width=3), hovertemplate="%{x|%d %b %Y}: %{y:,.0f}<extra></extra>")
    figure.add_scatter(x=tracking["date"], y=tracking["predicted"], mode="lines", name="Model",
                       line=dict(color="#2c7fb8", width=3, dash="dash"),
                       hovertemplate="%{x|%d %b %Y}: %{y:,.0f}<extra></extra>")
    if calibration_end is not None:
        figure.add_vline(x=pd.Timestamp(calibration_end).timestamp() * 1000, line_dash="dot",
                         annotation_text="calibration end")
    figure.update_layout(title="Cumulative repeat purchases: actual vs model", xaxis_title="Date",
                         yaxis_title="Repeat purchases (cumulative)", **_LAYOUT)
    figure.update_xaxes(tickformat="%b %Y")
    return figure


# --- churn ---------------------------------------------------------------------------------------------------------

def churn_gap_figure(gaps: pd.Series, horizon_days: int) -> go.Figure:
    """Histogram of repeat customers' usual days between purchases, with the chosen horizon marked."""
    values = gaps.dropna().to_numpy()
    cap = float(np.quantile(values, 0.99)) if len(values) else float(horizon_days)
    within = float((values <= horizon_days).mean()) if len(values) else 0.0
    figure = go.Figure(_histogram(np.minimum(values, cap), 40, color="#2c7fb8", what="Every", value_format=",.0f")
                       .update(hovertemplate="Every %{customdata[0]:,.0f} to %{customdata[1]:,.0f} days: %{y:,} "
                                             "customers<extra></extra>"))
    figure.add_vline(x=horizon_days, line=dict(color="#d62728", width=3, dash="dash"),
                     annotation_text=f"horizon {horizon_days} days ({within:.0%} of usual gaps are shorter)",
                     annotation_position="top right")
    figure.update_layout(title="How long do repeat customers usually wait between purchases?",
                         xaxis_title=f"Usual days between purchases (the last bar holds all above {cap:,.0f})",
                         yaxis_title="Repeat customers", bargap=0.05, height=300, **_LAYOUT)
    return figure


def _against_diagonal(x, y, *, name: str, hover: str, diagonal: str, title: str, xaxis: str, yaxis: str,
                      markers: bool = False) -> go.Figure:
    """A curve of shares (0 to 1 on both axes) against the diagonal that chance or perfection would draw."""
    figure = go.Figure()
    figure.add_scatter(x=x, y=y, mode="lines+markers" if markers else "lines", name=name, line=dict(width=3),
                       hovertemplate=hover + "<extra></extra>")
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name=diagonal, line=dict(dash="dot", color="grey"),
                       hoverinfo="skip")
    figure.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis,
                         legend=dict(orientation="h", yanchor="top", y=-0.25),
                         **{**_LAYOUT, "hovermode": "closest"})
    figure.update_xaxes(tickformat=".0%", range=[0, 1])
    figure.update_yaxes(tickformat=".0%", range=[0, 1])
    return figure


def roc_figure(curve: pd.DataFrame, auc: float) -> go.Figure:
    return _against_diagonal(curve["false_positive_rate"], curve["true_positive_rate"],
                             name=f"Best model (ROC AUC {auc:.2f})", diagonal="Chance",
                             hover="%{x:.0%} of stayers flagged, %{y:.0%} of leavers caught",
                             title="Leavers caught vs<br>stayers flagged (check period)",
                             xaxis="Stayers flagged (%)",
                             yaxis="Leavers flagged (%)")


def calibration_figure(curve: pd.DataFrame) -> go.Figure:
    return _against_diagonal(curve["predicted"], curve["observed"], name="Best model", diagonal="Perfect",
                             hover="Predicted %{x:.0%}, actually left %{y:.0%}", markers=True,
                             title="Is a 70 % risk really 70 %? (check period, deciles)",
                             xaxis="Predicted risk (%)", yaxis="Share who actually left (%)")


def gains_figure(curve: pd.DataFrame) -> go.Figure:
    return _against_diagonal(curve["share_contacted"], curve["share_of_churners"], name="Best model",
                             diagonal="Random list", hover="Contact the riskiest %{x:.0%}: reach %{y:.0%} of leavers",
                             title="Leavers reached by contacting the riskiest customers first",
                             xaxis="Customers contacted, riskiest first (%)", yaxis="Leavers reached (%)")


def importance_figure(importance: pd.DataFrame, labels: dict[str, str]) -> go.Figure:
    top = importance.head(12).iloc[::-1]
    names = [_plain(labels.get(feature, feature)) for feature in top["feature"]]
    figure = go.Figure(go.Bar(x=top["importance"], y=names, orientation="h", marker_color="#2c7fb8",
                              error_x=dict(type="data", array=top["spread"]),
                              hovertemplate="%{y}: ROC AUC drops by %{x:.3f} when shuffled<extra></extra>"))
    figure.update_layout(title="What drives the risk score (check period)",
                         xaxis_title="Drop in ROC AUC when the feature is shuffled", yaxis_title="",
                         height=max(300, 28 * len(top) + 120), **{**_LAYOUT, "hovermode": "closest"})
    return figure


def risk_distribution_figure(risk: pd.Series, threshold: float, *, predictive: bool) -> go.Figure:
    values = risk.dropna().to_numpy()
    if not predictive and len(values):
        values = np.minimum(values, float(np.quantile(values, 0.99)))
    figure = go.Figure(_histogram(values, 40, color="#7f7f7f", what="Risk",
                                  value_format=".0%" if predictive else ".2f"))
    figure.add_vline(x=threshold, line=dict(color="#d62728", width=3), annotation_text="your threshold")
    axis = ("Risk of no purchase in the horizon (%)" if predictive
            else "Days since last purchase / usual gap (1 = as late as usual)")
    figure.update_layout(title="Customers by churn risk", xaxis_title=axis, yaxis_title="Customers", bargap=0.05,
                         height=320, **_LAYOUT)
    if predictive:
        figure.update_xaxes(tickformat=".0%")
    return figure


def campaign_figure(curve: pd.DataFrame, chosen: float) -> go.Figure:
    """Net benefit by list size, the best list marked, and the list of the chosen risk threshold."""
    step = max(1, len(curve) // 400)
    sampled = curve.iloc[::step]
    figure = go.Figure()
    figure.add_scatter(x=sampled["customers"], y=sampled["net_benefit"], mode="lines", name="Net benefit",
                       line=dict(width=3),
                       customdata=sampled["threshold"],
                       hovertemplate="Contact %{x:,} customers (risk from %{customdata:.2f}): net %{y:,.0f}"
                                     "<extra></extra>")
    best = curve.loc[curve["net_benefit"].idxmax()]
    figure.add_scatter(x=[best["customers"]], y=[best["net_benefit"]], mode="markers+text", name="Best list",
                       text=[f"best: {best['customers']:,.0f} customers, net {best['net_benefit']:,.0f}"],
                       textposition="top right" if best["customers"] < curve["customers"].max() / 2 else "top left",
                       marker=dict(size=12, color="#2ca02c"))
    # Headroom above the best point, so its label stays below the title.
    low, high = float(min(curve["net_benefit"].min(), 0.0)), float(curve["net_benefit"].max())
    figure.update_yaxes(range=[low - 0.05 * (high - low or 1.0), high + 0.2 * (high - low or 1.0)])
    picked = curve[curve["threshold"] >= chosen]
    if len(picked):
        figure.add_vline(x=float(picked["customers"].iloc[-1]), line=dict(color="#d62728", dash="dash"),
                         annotation_text="your threshold")
    figure.update_layout(title="Campaign net benefit by list size (riskiest first)",
                         xaxis_title="Customers contacted", yaxis_title="Net benefit (currency)",
                         **{**_LAYOUT, "hovermode": "closest"})
    return figure


def action_summary_figure(summary: pd.DataFrame) -> go.Figure:
    """Customers per next best action (bars) with the expected net value of each (in the hover and the labels),
    from :func:`clm_core.actions.action_summary`."""
    unit = "orders" if (summary["value_unit"] == "orders").all() else ""
    figure = go.Figure(go.Bar(
        x=summary["customers"], y=summary["action"].astype(str), orientation="h", marker_color="#1f77b4",
        text=[f"{customers:,} customers · net {value:,.0f} {unit}".strip()
              for customers, value in zip(summary["customers"], summary["expected_net_value"])], textposition="auto",
        customdata=np.column_stack([summary["expected_net_value"], summary["share"] * 100]),
        hovertemplate="%{y}: %{x:,} customers (%{customdata[1]:.0f} %), expected net value %{customdata[0]:,.0f}"
                      + (f" {unit}" if unit else "") + "<extra></extra>"))
    figure.update_layout(**{**_LAYOUT, "hovermode": "closest"}, height=320,
                         title="Customers per action, with the expected net value of each action")
    figure.update_xaxes(title="customers")
    figure.update_yaxes(autorange="reversed")
    return figure


def customer_timeline_figure(timeline: pd.DataFrame, *, has_money: bool) -> go.Figure:
    """One customer's purchase days (bars: net value, or orders without amounts) and returned value (below zero),
    from :attr:`clm_core.customer_view.CustomerProfile.timeline`."""
    bought = timeline[timeline["purchase_day"]]
    value = bought["net_value"] if has_money else bought["orders"]
    figure = go.Figure(go.Bar(x=bought["day"], y=value, name="purchases" + (" (net of returns)" if has_money else ""),
                              marker_color="#1f77b4",
                              hovertemplate="%{x|%d %b %Y}: %{y:,.2f}<extra>purchases</extra>" if has_money
                              else "%{x|%d %b %Y}: %{y} orders<extra></extra>"))
    if has_money and (timeline["returned_value"] > 0).any():
        returned = timeline[timeline["returned_value"] > 0]
        figure.add_trace(go.Bar(x=returned["day"], y=-returned["returned_value"], name="returned",
                                marker_color="#d62728",
                                hovertemplate="%{x|%d %b %Y}: %{y:,.2f}<extra>returned</extra>"))
    figure.update_layout(**{**_LAYOUT, "hovermode": "closest"}, height=300, barmode="relative",
                         title="Purchases over time" + (" (value per day)" if has_money else " (orders per day)"))
    figure.update_xaxes(title="date", tickformat="%d %b %Y")
    figure.update_yaxes(title="value" if has_money else "orders")
    return figure


def segment_treemap_figure(profiles: pd.DataFrame, *, by_revenue: bool = False) -> go.Figure:
    """Segment sizes as a treemap (area: customers, or revenue), from :func:`clm_core.segments.segment_profiles`;
    the hover gives customers, share of customers and share of revenue."""
    shown = profiles[profiles["customers"] > 0]
    size = shown["revenue"].clip(lower=0) if by_revenue else shown["customers"]
    revenue_share = shown["share_of_revenue"].fillna(0) * 100
    from clm_core.segments import RETURNS_ONLY, SEGMENTS

    palette = px_colors.qualitative.Set3 + px_colors.qualitative.Pastel
    fixed = {name: palette[position] for position, name in enumerate((*SEGMENTS, RETURNS_ONLY))}
    colours = [fixed.get(str(name), palette[(len(fixed) + position) % len(palette)])
               for position, name in enumerate(shown.iloc[:, 0])]
    figure = go.Figure(go.Treemap(
        labels=[_plain(name) for name in shown.iloc[:, 0]], parents=[""] * len(shown), values=size,
        marker=dict(colors=colours),
        customdata=np.column_stack([shown["customers"], shown["share_of_customers"] * 100, revenue_share]),
        texttemplate="%{label}<br>%{customdata[0]:,} customers<br>%{customdata[2]:.0f} % of revenue",
        hovertemplate="%{label}: %{customdata[0]:,} customers (%{customdata[1]:.1f} %), "
                      "%{customdata[2]:.1f} % of revenue<extra></extra>"))
    figure.update_layout(margin=dict(l=10, r=10, t=50, b=10), height=420,
                         title="Segments by " + ("revenue (net of returns)" if by_revenue else "number of customers"))
    return figure


def silhouette_figure(silhouette: pd.DataFrame, chosen: int) -> go.Figure:
    """Mean silhouette per number of clusters tried (higher: better separated), the chosen k marked."""
    figure = go.Figure(go.Scatter(x=silhouette["k"], y=silhouette["silhouette"], mode="lines+markers",
                                  hovertemplate="%{x} clusters: silhouette %{y:.3f}<extra></extra>"))
    picked = silhouette[silhouette["k"] == chosen]
    if len(picked):
        figure.add_scatter(x=picked["k"], y=picked["silhouette"], mode="markers", marker=dict(size=14,
                           color="#2ca02c"), name="chosen", hovertemplate="chosen: %{x} clusters<extra></extra>")
    figure.update_layout(**{**_LAYOUT, "hovermode": "closest"}, height=300, showlegend=False,
                         title="How well separated the clusters are, by their number")
    figure.update_xaxes(title="number of clusters (k)", dtick=1)
    figure.update_yaxes(title="mean silhouette (-1 to 1)")
    return figure


_STAGE_COLOURS = {"Acquisition": "#2ca02c", "Development": "#17becf", "Retention": "#1f77b4",
                  "Reactivated": "#9467bd", "At risk": "#ff7f0e", "Churned": "#d62728", "Returns only": "#7f7f7f"}


def stage_history_figure(history: pd.DataFrame) -> go.Figure:
    """Customers per lifecycle stage at each month end, stacked (from :func:`clm_core.segments.stage_history`)."""
    figure = go.Figure()
    for stage in history.columns:
        figure.add_scatter(x=history.index, y=history[stage], name=str(stage), stackgroup="stages", mode="lines",
                           line=dict(width=0.5, color=_STAGE_COLOURS.get(str(stage))),
                           hovertemplate=f"{stage}: %{{y:,}}<extra></extra>")
    figure.update_layout(**_LAYOUT, height=380, title="Customers by lifecycle stage at each month end")
    figure.update_xaxes(title="month end", tickformat="%b %Y")
    figure.update_yaxes(title="customers")
    return figure


def stage_flow_figure(flows: pd.DataFrame, start, end) -> go.Figure:
    """A Sankey diagram of the customers moving from each stage at ``start`` to each at ``end`` (from
    :func:`clm_core.segments.stage_flows`: rows from, columns to)."""
    sources, targets = list(flows.index), list(flows.columns)
    labels = [f"{name} ({flows.loc[name].sum():,})" for name in sources] + \
        [f"{name} ({flows[name].sum():,})" for name in targets]
    links = [(i, len(sources) + j, int(flows.iat[i, j])) for i in range(len(sources)) for j in range(len(targets))
             if flows.iat[i, j] > 0]
    colours = [_STAGE_COLOURS.get(name, "#bcbd22") for name in sources] + \
        [_STAGE_COLOURS.get(name, "#bcbd22") for name in targets]
    figure = go.Figure(go.Sankey(
        node=dict(label=labels, color=colours, pad=12),
        link=dict(source=[link[0] for link in links], target=[link[1] for link in links],
                  value=[link[2] for link in links],
                  hovertemplate="%{source.label} → %{target.label}: %{value:,} customers<extra></extra>")))
    figure.update_layout(margin=dict(l=10, r=10, t=50, b=10), height=460,
                         title=f"Customers moving between stages, {pd.Timestamp(start):%d %b %Y} (left) to "
                               f"{pd.Timestamp(end):%d %b %Y} (right)")
    return figure
