"""The CLV figures: the data they draw and titled axes (units and dates on every axis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clm_core import charts
from clm_core.clv_calculator import CalculatorInputs, calculate, sensitivity


def _titled(figure) -> None:
    assert figure.layout.title.text
    assert figure.layout.xaxis.title.text and figure.layout.yaxis.title.text


def test_value_concentration_marks_the_top_shares():
    clv = pd.Series([10.0, 5.0, 3.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # total 20
    figure = charts.value_concentration_figure(clv)
    _titled(figure)
    markers = [trace for trace in figure.data if trace.mode == "markers+text"]
    # top 10 % = one customer = 10 / 20; top 20 % = two customers = 15 / 20
    assert [round(trace.y[0], 6) for trace in markers] == [0.5, 0.75]
    curve = figure.data[0]
    assert curve.x[0] == 0 and curve.y[-1] == 1


def test_clv_distribution_groups_the_top_percent():
    clv = pd.Series(np.r_[np.arange(99, dtype=float), 1e6])
    figure = charts.clv_distribution_figure(clv, horizon_months=12)
    _titled(figure)
    assert max(figure.data[0].x) < 1e6  # the outlier sits in the last bar, not at a million
    assert len(figure.data[0].x) == 100


def test_calculator_figures():
    inputs = CalculatorInputs(50, 4, 0.3, 0.7, 0.1, 5, 100)
    result = calculate(inputs)
    years = charts.calculator_years_figure(result.table, 100)
    _titled(years)
    assert list(years.data[0].y) == pytest.approx(result.table["discounted_margin"].tolist())
    grid = sensitivity(inputs, np.array([0.5, 0.7]), np.array([0.0, 0.1]))
    heat = charts.sensitivity_figure(grid, current=(0.7, 0.1))
    _titled(heat)
    assert np.asarray(heat.data[0].z).shape == (2, 2)
    assert heat.data[1].x == ("10%",) and heat.data[1].y == ("70%",)


def test_check_figures():
    by_frequency = pd.DataFrame({"frequency": ["0", "1", "2+"], "customers": [5, 3, 2],
                                 "actual": [0.2, 1.0, 3.0], "predicted": [0.25, 0.9, 2.8]})
    bars = charts.holdout_by_frequency_figure(by_frequency, holdout_label="01 Oct 1997 to 30 Jun 1998")
    _titled(bars)
    assert [trace.name for trace in bars.data] == ["Actual", "Predicted"]
    tracking = pd.DataFrame({"date": pd.date_range("2021-01-01", periods=4, freq="7D"),
                             "actual": [0, 2, 5, 9], "predicted": [0, 2.5, 5.1, 8.0]})
    lines = charts.tracking_figure(tracking, pd.Timestamp("2021-01-10"))
    _titled(lines)
    assert list(lines.data[0].y) == [0, 2, 5, 9]
    matrix = pd.DataFrame([[1.0, 1.0], [0.2, 0.8]], index=pd.Index([0, 1], name="frequency"),
                          columns=pd.Index([0.0, 10.0], name="recency"))
    alive = charts.probability_alive_figure(matrix, unit="week")
    _titled(alive)
    assert "weeks" in alive.layout.xaxis.title.text


def test_segment_values_from_the_file_are_shown_as_text_not_html(tmp_path):
    from clm_core.charts import cohort_heatmap_figure, retention_curves_figure
    from clm_core.cohorts import cohort_table
    from clm_core.workspace import Workspace

    hostile = '<a href="http://evil.example">win</a> %{y}'
    path = tmp_path / "shop.csv"
    path.write_text("customer_id,order_date,amount,channel\n" + "".join(
        f"c{i},2021-{month:02d}-0{1 + i % 5},10,{hostile if i % 2 else 'web'}\n"
        for i in range(40) for month in (1, 2, 3)))
    with Workspace(tmp_path / "ws.duckdb") as workspace:
        workspace.ingest(path)
        table = cohort_table(workspace, period="month", segment="seg_channel")
    texts = [str(label) for label in cohort_heatmap_figure(table).data[0].y]
    texts += [trace.name + trace.hovertemplate for trace in retention_curves_figure(table).data]
    assert any("&lt;a href" in text for text in texts)
    assert not any("<a href" in text or "%{y}" in text.replace("%{y:", "") for text in texts)
