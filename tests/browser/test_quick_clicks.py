"""Quick clicks on every page: each click starts a script run while the last may still be reading DuckDB.

Each test presses a control ten times 100 ms apart, waits until every run has finished, and checks that the page
shows no error and the numbers clm_core computes for the final setting, and that the server logged no error.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clm_core import clv
from clm_core.clv_calculator import CalculatorInputs, calculate
from clm_core.cohorts import cohort_table
from clm_core.generator import generate_transactions
from clm_core.summary import dataset_summary
from clm_core.workspace import Workspace
from tests.browser.helpers import assert_log_clean, assert_page_ok, metric_value, wait_until_idle

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo_transactions.csv.gz"
CLICKS, GAP_MS = 10, 100


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    """The demo loaded the way the app loads it on a session's first run."""
    folder = tmp_path_factory.mktemp("demo")
    workspace = Workspace(folder / "demo.duckdb")
    workspace.ingest(DEMO, original_name="demo")
    yield workspace
    workspace.close()


def _open(page, url: str, link: str | None = None) -> None:
    page.goto(url)
    page.get_by_text("Rows in the file").first.wait_for()
    if link:
        page.get_by_role("link", name=link).click()
    wait_until_idle(page)


def _settled(page, app_server, log_start: int) -> None:
    wait_until_idle(page)
    log = app_server.log(since=log_start)
    assert_page_ok(page, log)
    assert_log_clean(log)


def test_data_page_load_demo_ten_times(page, app_server, log_start, demo_workspace):
    _open(page, app_server.url)
    button = page.get_by_role("button", name="Load demo data")
    for _ in range(CLICKS):
        button.click()
        page.wait_for_timeout(GAP_MS)
    _settled(page, app_server, log_start)
    report = demo_workspace.dataset.report
    assert metric_value(page, "Rows in the file") == f"{report.rows_in:,}"
    assert metric_value(page, "Rows kept") == f"{report.rows_kept:,}"
    assert metric_value(page, "Customers") == f"{dataset_summary(demo_workspace).customers:,}"


def test_data_page_validate_and_load_ten_times(page, app_server, log_start, tmp_path):
    frame = generate_transactions(5_000, seed=3)  # big enough for a build to overlap the next click
    upload = tmp_path / "shop.csv"
    frame.to_csv(upload, index=False)
    _open(page, app_server.url)
    page.locator('input[type="file"]').set_input_files(str(upload))
    button = page.get_by_role("button", name="Validate and load")
    button.wait_for()
    for _ in range(CLICKS):
        button.click()
        page.wait_for_timeout(GAP_MS)
    _settled(page, app_server, log_start)
    page.get_by_role("heading", name="shop.csv").wait_for()
    assert metric_value(page, "Rows in the file") == f"{len(frame):,}"
    assert metric_value(page, "Customers") == f"{frame['customer_id'].nunique():,}"


def test_cohorts_minimum_size_ten_quick_steps(page, app_server, log_start, demo_workspace):
    _open(page, app_server.url, "Cohorts")
    field = page.get_by_role("spinbutton", name="Minimum cohort size", exact=True)
    field.fill("200")
    field.press("Enter")
    wait_until_idle(page)
    step_up = page.get_by_test_id("stNumberInput").filter(has=field).get_by_test_id("stNumberInputStepUp")
    for _ in range(CLICKS):
        step_up.click()
        page.wait_for_timeout(GAP_MS)
    _settled(page, app_server, log_start)
    min_size = int(field.input_value())
    assert min_size == 200 + 5 * CLICKS
    summary = dataset_summary(demo_workspace)
    table = cohort_table(demo_workspace, period="month", definition="classic", segment=None,
                         start=pd.Timestamp(summary.first_date.date()), end=pd.Timestamp(summary.last_date.date()),
                         min_cohort_size=min_size)
    shown = table.long[["cohort", "segment"]].drop_duplicates().shape[0]
    assert 0 < shown < 12  # the setting hides some of the demo's twelve cohorts
    assert metric_value(page, "Cohorts shown") == f"{shown:,}"


def test_clv_calculator_orders_ten_quick_steps(page, app_server, log_start):
    _open(page, app_server.url, "Customer lifetime value")
    field = page.get_by_role("spinbutton", name="Orders per year", exact=True)
    step_up = page.get_by_test_id("stNumberInput").filter(has=field).get_by_test_id("stNumberInputStepUp")
    for _ in range(CLICKS):
        step_up.click()
        page.wait_for_timeout(GAP_MS)
    _settled(page, app_server, log_start)
    orders = float(field.input_value())
    assert orders == 3.0 + 0.5 * CLICKS
    result = calculate(CalculatorInputs(average_order_value=50.0, orders_per_year=orders, gross_margin=0.3,
                                        annual_retention=0.6, annual_discount_rate=0.1, horizon_years=5,
                                        acquisition_cost=40.0))
    assert metric_value(page, "CLV per customer") == f"{result.clv:,.2f}"


def test_clv_horizon_slider_ten_quick_arrow_keys(page, app_server, log_start, demo_workspace):
    _open(page, app_server.url, "Customer lifetime value")
    page.get_by_role("tab", name="Predictive CLV").click()
    page.get_by_text("Customers scored").first.wait_for()
    wait_until_idle(page)
    slider = page.get_by_role("slider", name="Horizon (months)")
    slider.focus()
    for _ in range(CLICKS):
        slider.press("ArrowRight")
        page.wait_for_timeout(GAP_MS)
    _settled(page, app_server, log_start)
    horizon = int(slider.input_value())
    assert horizon == 12 + CLICKS
    summary = clv.customer_summary(demo_workspace, unit="week", calibration_end=None)
    fitted = clv.fit_clv_models(summary, purchase_model="bgnbd", with_spend=True)
    scores = clv.predict_customers(summary, fitted, horizon_months=horizon, monthly_discount_rate=0.01, margin=1.0)
    assert metric_value(page, f"Expected purchases, next {horizon} months") == \
        f"{scores['expected_purchases'].sum():,.0f}"
    assert metric_value(page, f"Predicted CLV, next {horizon} months") == f"{scores['clv'].sum():,.0f}"


def test_clv_model_check_ten_quick_model_switches(page, app_server, log_start, demo_workspace):
    _open(page, app_server.url, "Customer lifetime value")
    page.get_by_role("tab", name="Model check").click()
    page.get_by_text("Repeat purchases in the check period").first.wait_for()
    wait_until_idle(page)
    models = page.get_by_role("radiogroup", name="Purchase model")
    for index in range(CLICKS):
        models.get_by_text("Pareto/NBD" if index % 2 == 0 else "BG/NBD", exact=True).click()
        page.wait_for_timeout(GAP_MS)
    _settled(page, app_server, log_start)  # ten switches end on BG/NBD
    summary_all = dataset_summary(demo_workspace)
    end = clv.default_calibration_end(summary_all.first_date.date(), summary_all.last_date.date())
    summary = clv.customer_summary(demo_workspace, unit="week", calibration_end=end)
    totals = clv.holdout_totals(summary, clv.fit_clv_models(summary, purchase_model="bgnbd", with_spend=True))
    assert metric_value(page, "Repeat purchases in the check period") == f"{totals['actual']:,.0f}"
    assert metric_value(page, "Predicted") == f"{totals['predicted']:,.0f}"
