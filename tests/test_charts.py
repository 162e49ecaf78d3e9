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
    bars = figure.data[0]
    assert max(bars.customdata[:, 1]) < 1e6  # the outlier sits in the last bar, not at a million
    assert sum(bars.y) == 100 and len(bars.y) == 50  # every customer in one of 50 bars binned on the server
    assert bars.y[0] == 99 and bars.y[-1] == 1  # the cap (99th percentile) is far above 98: one bar each


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


# Five monthly cohorts of two customers each (January to May 2021); data end on 10 June, so June is partial.
_COHORTS = "customer_id,order_date,amount\n" + "".join(
    f"m{month}{who},2021-{month:02d}-0{2 + who},10\n" for month in range(1, 6) for who in range(2)) + "".join(
    f"m{month}0,2021-{month + 1:02d}-15,5\n" for month in range(1, 5)) + "m10,2021-06-10,5\n"


@pytest.fixture(scope="module")
def five_cohorts(tmp_path_factory):
    from clm_core.cohorts import cohort_table
    from clm_core.workspace import Workspace

    folder = tmp_path_factory.mktemp("cohorts")
    path = folder / "five.csv"
    path.write_text(_COHORTS)
    with Workspace(folder / "ws.duckdb") as workspace:
        workspace.ingest(path)
        yield {definition: cohort_table(workspace, definition=definition) for definition in ("classic", "rolling")}


def test_cohort_heatmap_marks_the_first_cohort_and_censored_cells(five_cohorts):
    classic = charts.cohort_heatmap_figure(five_cohorts["classic"])
    _titled(classic)
    rows = list(classic.data[0].y)
    assert rows[0].startswith("⚠ 2021-01") and not any(row.startswith("⚠") for row in rows[1:])
    frame = [shape for shape in classic.layout.shapes if shape.type == "rect"]
    assert len(frame) == 1 and (frame[0].y0, frame[0].y1) == (-0.5, 0.5)
    assert not any("≥" in cell for row in classic.data[0].text for cell in row)
    rolling = charts.cohort_heatmap_figure(five_cohorts["rolling"])
    texts = rolling.data[0].text
    # Every filled cell after month 0 is a lower bound; month 0 (everyone) is not.
    assert all(cell.startswith("≥") for row in texts for cell in row[1:] if cell)
    assert all(row[0] == "100%" for row in texts if row[0])
    churn = charts.cohort_heatmap_figure(five_cohorts["rolling"], "churn_rate")
    assert churn.data[0].text[0][1].startswith("≤")


def test_cohort_heatmap_shows_the_most_recent_cohorts(five_cohorts):
    capped = charts.cohort_heatmap_figure(five_cohorts["classic"], max_cohorts=3)
    assert [row.split(" ")[0] for row in capped.data[0].y] == ["2021-03", "2021-04", "2021-05"]
    assert "most recent 3 of 5 cohorts" in capped.layout.title.text
    assert not capped.layout.shapes  # the first cohort is not drawn, so not framed
    assert len(charts.cohort_heatmap_figure(five_cohorts["classic"], max_cohorts=50).data[0].y) == 5


def test_average_curve_says_how_many_cohorts_each_point_rests_on(five_cohorts):
    table = five_cohorts["classic"]
    figure = charts.retention_curves_figure(table)
    _titled(figure)
    average = figure.data[[trace.name for trace in figure.data].index("Average cohort")]
    tail = [trace for trace in figure.data if trace.name and trace.name.startswith("Average, fewer")][0]
    # Without January: month 1 rests on Feb, Mar, Apr (3 cohorts), month 2 on Feb and Mar, month 3 on Feb.
    assert list(average.x) == [0, 1] and list(tail.x) == [2, 3]
    assert list(tail.text) == ["2 cohorts", "1 cohort"]
    assert average.customdata[1] == "3 cohorts, 6 customers"
    assert "first cohort left out" in figure.layout.title.text
    # February customer 0 bought in March, March's in April, April's in May: 3 of 6 at month 1.
    assert average.y[1] == pytest.approx(3 / 6)
    with_first = charts.retention_curves_figure(table, include_left_censored=True)
    solid = with_first.data[[trace.name for trace in with_first.data].index("Average cohort")]
    assert list(solid.x) == [0, 1, 2] and solid.y[1] == pytest.approx(4 / 8)


def test_revenue_by_month_marks_partial_months():
    monthly = pd.DataFrame({"month": pd.to_datetime(["2010-12-01", "2011-01-01", "2011-02-01"]),
                            "net_revenue": [500.0, 800.0, 90.0], "customers": [5, 8, 1]})
    figure = charts.revenue_by_month_figure(monthly, first_date=pd.Timestamp("2010-12-01 08:26"),
                                            last_date=pd.Timestamp("2011-02-09 12:50"))
    _titled(figure)
    full, partial = figure.data
    assert list(full.y) == [500.0, 800.0] and list(partial.y) == [90.0]
    assert partial.customdata == ("data from 01 Feb to 09 Feb 2011",)
    started_late = charts.revenue_by_month_figure(monthly, has_money=False, first_date=pd.Timestamp("2010-12-04"),
                                                  last_date=pd.Timestamp("2011-02-28 23:00"))
    assert list(started_late.data[1].y) == [5] and "month not complete" in started_late.data[1].name
    assert len(charts.revenue_by_month_figure(monthly).data) == 1  # without dates nothing is guessed


def test_sensitivity_box_sits_on_a_real_row():
    from clm_core.clv_calculator import sensitivity_axes

    inputs = CalculatorInputs(50, 4, 0.3, 0.53, 0.085, 5, 100)
    heat = charts.sensitivity_figure(sensitivity(inputs, *sensitivity_axes(inputs)), current=(0.53, 0.085))
    rows, columns = list(heat.data[0].y), list(heat.data[0].x)
    assert rows.count("53%") == 1 and columns.count("8.5%") == 1 and "2.5%" in columns
    assert heat.data[1].y == ("53%",) and heat.data[1].x == ("8.5%",)
    z = np.asarray(heat.data[0].z)
    assert not np.isnan(z[rows.index("53%"), columns.index("8.5%")])


def test_campaign_best_point_has_headroom_below_the_title():
    curve = pd.DataFrame({"customers": np.arange(1, 101), "threshold": np.linspace(0.99, 0.0, 100)})
    curve["net_benefit"] = 100 * curve["customers"] - curve["customers"] ** 2  # best at 50 customers: 2,500
    figure = charts.campaign_figure(curve, chosen=0.5)
    _titled(figure)
    best = next(trace for trace in figure.data if trace.name == "Best list")
    assert (best.x[0], best.y[0]) == (50, 2500)
    assert figure.layout.yaxis.range[1] >= 2500 * 1.15  # the label above the point stays inside the plot


def test_action_summary_and_customer_timeline_figures():
    summary = pd.DataFrame({"action": ["Win-back offer", "No contact"], "customers": [30, 70], "share": [0.3, 0.7],
                            "contact_cost": [90.0, 0.0], "expected_net_value": [410.0, 0.0],
                            "value_unit": ["money", "money"]})
    figure = charts.action_summary_figure(summary)
    assert list(figure.data[0].x) == [30, 70] and figure.layout.xaxis.title.text == "customers"
    assert figure.data[0].text[0] == f"{figure.data[0].x[0]:,} customers · net 410"  # the bar is customers
    timeline = pd.DataFrame({"day": pd.to_datetime(["2021-01-04", "2021-02-01", "2021-02-10"]),
                             "orders": [1, 2, 0], "bought_value": [30.0, 50.0, 0.0], "return_lines": [0, 1, 1],
                             "returned_value": [0.0, 10.0, 5.0], "purchase_day": [True, True, False],
                             "net_value": [30.0, 40.0, np.nan]})
    figure = charts.customer_timeline_figure(timeline, has_money=True)
    _titled(figure)
    assert list(figure.data[0].y) == [30.0, 40.0]  # purchase days at their net value
    assert list(figure.data[1].y) == [-10.0, -5.0]  # returns below the axis
    orders = charts.customer_timeline_figure(timeline, has_money=False)
    assert list(orders.data[0].y) == [1, 2] and len(orders.data) == 1


def test_segment_figures():
    profiles = pd.DataFrame({"rfm_segment": ["Champions", "Lost", "New"], "customers": [20, 70, 0],
                             "share_of_customers": [0.2, 0.7, 0.0], "revenue": [800.0, 200.0, 0.0],
                             "share_of_revenue": [0.8, 0.2, 0.0]})
    treemap = charts.segment_treemap_figure(profiles)
    assert list(treemap.data[0].labels) == ["Champions", "Lost"] and list(treemap.data[0].values) == [20, 70]
    assert list(charts.segment_treemap_figure(profiles, by_revenue=True).data[0].values) == [800.0, 200.0]
    silhouette = charts.silhouette_figure(pd.DataFrame({"k": [2, 3, 4], "silhouette": [0.3, 0.5, 0.4]}), chosen=3)
    _titled(silhouette)
    assert silhouette.data[1].x[0] == 3
    history = pd.DataFrame({"Acquisition": [5, 3], "Churned": [0, 4]},
                           index=pd.to_datetime(["2021-01-31", "2021-02-28"]))
    area = charts.stage_history_figure(history)
    _titled(area)
    assert [trace.name for trace in area.data] == ["Acquisition", "Churned"]
    flows = pd.DataFrame([[2, 3], [0, 4], [5, 0]], index=["Acquisition", "Churned", "Not yet a customer"],
                         columns=["Acquisition", "Churned"])
    sankey = charts.stage_flow_figure(flows, "2021-01-31", "2021-02-28").data[0]
    assert sum(sankey.link.value) == 14  # every customer once
    assert sankey.node.label[0] == "Acquisition (5)" and sankey.node.label[3] == "Acquisition (7)"
