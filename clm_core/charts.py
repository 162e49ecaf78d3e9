"""Plotly figures for the pages: built here so they can be tested without a browser."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["revenue_by_month_figure", "cohort_heatmap_figure", "retention_curves_figure", "cumulative_revenue_figure"]

_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=10), hovermode="x unified")


def revenue_by_month_figure(monthly: pd.DataFrame, *, currency: str = "", has_money: bool = True) -> go.Figure:
    """Bars of net revenue per month (or active customers when there is no money column)."""
    figure = go.Figure()
    if has_money:
        figure.add_bar(x=monthly["month"], y=monthly["net_revenue"], name="Net revenue",
                       hovertemplate="%{x|%b %Y}: %{y:,.0f}<extra></extra>")
        title, axis = "Revenue by month (net of returns)", f"Net revenue{f' ({currency})' if currency else ''}"
    else:
        figure.add_bar(x=monthly["month"], y=monthly["customers"], name="Active customers",
                       hovertemplate="%{x|%b %Y}: %{y:,} customers<extra></extra>")
        title, axis = "Active customers by month", "Customers who bought"
    figure.update_layout(title=title, xaxis_title="Month", yaxis_title=axis, **_LAYOUT)
    figure.update_xaxes(tickformat="%b %Y", dtick="M1" if len(monthly) <= 24 else None)
    return figure


def cohort_heatmap_figure(table, metric: str = "retention") -> go.Figure:
    """The triangle: cohorts down, periods since first purchase across, values as %; hover shows counts."""
    from clm_core.cohorts import PERIODS

    wide = table.wide(metric)
    active = table.wide("active").reindex(index=wide.index, columns=wide.columns)
    unit = PERIODS[table.period].lower()
    values = wide.to_numpy(dtype=float)
    text = [[("" if value != value else f"{value:.0%}") for value in row] for row in values]
    customdata = active.to_numpy()
    labels = {"retention": "Customer retention", "revenue_retention": "Revenue retention",
              "churn_rate": "Churn rate"}
    figure = go.Figure(go.Heatmap(
        z=values, x=[str(c) for c in wide.columns], y=list(wide.index), text=text, texttemplate="%{text}",
        customdata=customdata, colorscale="Blues", zmin=0, zmax=1 if metric != "revenue_retention" else None,
        colorbar=dict(title="%", tickformat=".0%"),
        hovertemplate=(f"Cohort %{{y}}<br>{unit.title()} %{{x}} after first purchase<br>"
                       f"{labels.get(metric, metric)}: %{{z:.1%}}<br>Customers who bought: %{{customdata:,}}<extra></extra>"),
    ))
    figure.update_layout(
        title=f"{labels.get(metric, metric)} by cohort",
        xaxis_title=f"{unit.title()}s since first purchase", yaxis_title="Cohort (first purchase)",
        height=max(400, 22 * len(wide) + 150), **{**_LAYOUT, "hovermode": "closest"},
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return figure


def retention_curves_figure(table, metric: str = "retention") -> go.Figure:
    """One thin line per cohort and the size-weighted average in bold."""
    from clm_core.cohorts import PERIODS, period_label

    unit = PERIODS[table.period].lower()
    figure = go.Figure()
    for (cohort, segment), rows in table.long.groupby(["cohort", "segment"]):
        rows = rows[rows["complete"]]
        name = period_label(cohort, table.period) + (f" {segment}" if table.segment_label else "")
        figure.add_scatter(x=rows["offset"], y=rows[metric], mode="lines", name=name,
                           line=dict(width=1, color="rgba(120,140,170,0.35)"), showlegend=False,
                           hovertemplate=f"{name}: %{{y:.1%}}<extra></extra>")
    average = table.average_curve(metric if metric in ("retention", "revenue_retention") else "retention")
    figure.add_scatter(x=average["offset"], y=average.iloc[:, 1], mode="lines+markers", name="Average cohort",
                       line=dict(width=4, color="#d62728"),
                       hovertemplate="Average cohort: %{y:.1%}<extra></extra>")
    label = "Customer retention" if metric == "retention" else "Revenue retention"
    figure.update_layout(title=f"{label} curves (average weighted by cohort size)",
                         xaxis_title=f"{unit.title()}s since first purchase", yaxis_title=f"{label} (%)",
                         **{**_LAYOUT, "hovermode": "closest"})
    figure.update_yaxes(tickformat=".0%", rangemode="tozero")
    return figure


def cumulative_revenue_figure(table, *, currency: str = "") -> go.Figure:
    """Cumulative net revenue per acquired customer by cohort (the empirical LTV curve)."""
    from clm_core.cohorts import PERIODS, period_label

    unit = PERIODS[table.period].lower()
    figure = go.Figure()
    for (cohort, segment), rows in table.long.groupby(["cohort", "segment"]):
        rows = rows[rows["complete"]]
        name = period_label(cohort, table.period) + (f" {segment}" if table.segment_label else "")
        figure.add_scatter(x=rows["offset"], y=rows["cumulative_revenue_per_customer"], mode="lines", name=name,
                           hovertemplate=f"{name}: %{{y:,.2f}}<extra></extra>")
    axis = "Cumulative revenue per customer" + (f" ({currency})" if currency else "")
    figure.update_layout(title="Cumulative net revenue per acquired customer",
                         xaxis_title=f"{unit.title()}s since first purchase", yaxis_title=axis,
                         **{**_LAYOUT, "hovermode": "closest"})
    return figure
