"""Plotly figures for the pages: built here so they can be tested without a browser."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["revenue_by_month_figure"]

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
