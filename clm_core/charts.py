"""Plotly figures for the pages: built here so they can be tested without a browser."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "revenue_by_month_figure",
    "cohort_heatmap_figure",
    "retention_curves_figure",
    "cumulative_revenue_figure",
    "calculator_years_figure",
    "sensitivity_figure",
    "clv_distribution_figure",
    "value_concentration_figure",
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
]

_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=10), hovermode="x unified")


def _plain(text: object) -> str:
    """Text from the user's file as Plotly shows it: Plotly renders tags (links among them) in labels and
    hover text, so ``<``, ``>`` and ``&`` are escaped, and ``%{`` cannot start a template field."""
    return html.escape(str(text), quote=False).replace("%{", "%\u200b{")


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
        z=values, x=[str(c) for c in wide.columns], y=[_plain(row) for row in wide.index], text=text,
        texttemplate="%{text}",
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
        name = _plain(period_label(cohort, table.period) + (f" {segment}" if table.segment_label else ""))
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
        name = _plain(period_label(cohort, table.period) + (f" {segment}" if table.segment_label else ""))
        figure.add_scatter(x=rows["offset"], y=rows["cumulative_revenue_per_customer"], mode="lines", name=name,
                           hovertemplate=f"{name}: %{{y:,.2f}}<extra></extra>")
    axis = "Cumulative revenue per customer" + (f" ({currency})" if currency else "")
    figure.update_layout(title="Cumulative net revenue per acquired customer",
                         xaxis_title=f"{unit.title()}s since first purchase", yaxis_title=axis,
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


def sensitivity_figure(grid: pd.DataFrame, *, current: tuple[float, float] | None = None) -> go.Figure:
    """CLV over annual retention (rows) x annual discount rate (columns); the current inputs are marked."""
    x = [f"{rate:.0%}" for rate in grid.columns]
    y = [f"{retention:.0%}" for retention in grid.index]
    values = grid.to_numpy(dtype=float)
    text = [["" if np.isnan(value) else f"{value:,.0f}" for value in row] for row in values]
    figure = go.Figure(go.Heatmap(
        z=values, x=x, y=y, text=text, texttemplate="%{text}", colorscale="Greens",
        colorbar=dict(title="CLV"),
        hovertemplate="Retention %{y}, discount rate %{x}: CLV %{z:,.2f}<extra></extra>",
    ))
    if current is not None:
        figure.add_scatter(x=[f"{current[1]:.0%}"], y=[f"{current[0]:.0%}"], mode="markers", name="Your inputs",
                           marker=dict(symbol="square-open", size=28, color="#d62728", line=dict(width=3)),
                           hoverinfo="skip")
    figure.update_layout(title="CLV by annual retention and discount rate", xaxis_title="Annual discount rate (%)",
                         yaxis_title="Annual retention rate (%)", **{**_LAYOUT, "hovermode": "closest"})
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


def clv_distribution_figure(clv: pd.Series, *, horizon_months: int) -> go.Figure:
    """Histogram of predicted CLV per customer; the top 1 % are grouped in the last bar so the bulk stays readable."""
    values = clv.dropna().to_numpy()
    cap = float(np.quantile(values, 0.99)) if len(values) else 0.0
    figure = go.Figure(go.Histogram(x=np.minimum(values, cap), nbinsx=50, marker_color="#2c7fb8",
                                    hovertemplate="CLV %{x}: %{y:,} customers<extra></extra>"))
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
    figure.update_layout(title=f"Purchases per customer in the check period ({holdout_label})", barmode="group",
                         xaxis_title="Repeat purchases in the calibration period",
                         yaxis_title="Purchases per customer in the check period", **_LAYOUT)
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
    figure = go.Figure(go.Histogram(x=np.minimum(values, cap), nbinsx=40, marker_color="#2c7fb8",
                                    hovertemplate="%{x} days: %{y:,} customers<extra></extra>"))
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
    figure.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, **{**_LAYOUT, "hovermode": "closest"})
    figure.update_xaxes(tickformat=".0%", range=[0, 1])
    figure.update_yaxes(tickformat=".0%", range=[0, 1])
    return figure


def roc_figure(curve: pd.DataFrame, auc: float) -> go.Figure:
    return _against_diagonal(curve["false_positive_rate"], curve["true_positive_rate"],
                             name=f"Best model (ROC AUC {auc:.2f})", diagonal="Chance",
                             hover="%{x:.0%} of stayers flagged, %{y:.0%} of leavers caught",
                             title="Leavers caught vs stayers flagged (check period)",
                             xaxis="Customers who stayed but were flagged (%)",
                             yaxis="Customers who left and were flagged (%)")


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
    figure = go.Figure(go.Histogram(x=values, nbinsx=40, marker_color="#7f7f7f",
                                    hovertemplate="%{x}: %{y:,} customers<extra></extra>"))
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
                       textposition="top right", marker=dict(size=12, color="#2ca02c"))
    picked = curve[curve["threshold"] >= chosen]
    if len(picked):
        figure.add_vline(x=float(picked["customers"].iloc[-1]), line=dict(color="#d62728", dash="dash"),
                         annotation_text="your threshold")
    figure.update_layout(title="Campaign net benefit by list size (riskiest first)",
                         xaxis_title="Customers contacted", yaxis_title="Net benefit (currency)",
                         **{**_LAYOUT, "hovermode": "closest"})
    return figure
