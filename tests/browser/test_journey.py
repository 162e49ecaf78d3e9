"""The user's journey in a real browser: upload a CSV and see the customer count."""

from __future__ import annotations

import os
from pathlib import Path

from clm_core.generator import generate_transactions
from tests.browser.helpers import assert_log_clean, assert_page_ok, metric_value, wait_until_idle

SCREENSHOTS = os.environ.get("CLM_SCREENSHOTS")


def test_upload_csv_shows_customer_count(page, app_server, log_start, tmp_path: Path):
    frame = generate_transactions(150, seed=42)
    frame = (frame.groupby(["customer_id", "order_id", "order_date"], as_index=False)["amount"].sum()
             .sort_values("order_date", ignore_index=True))
    frame.loc[frame.index[:3], "customer_id"] = ""  # three rows the report must reject
    upload = tmp_path / "my_shop.csv"
    frame.to_csv(upload, index=False)
    expected_customers = frame.loc[frame["customer_id"] != "", "customer_id"].nunique()

    page.goto(app_server.url)
    page.get_by_text("Rows in the file").first.wait_for()
    page.locator('input[type="file"]').set_input_files(str(upload))
    page.get_by_role("button", name="Validate and load").click()
    page.get_by_text("Loaded my_shop.csv").wait_for()
    page.get_by_role("heading", name="my_shop.csv").wait_for()
    wait_until_idle(page)
    assert metric_value(page, "Customers") == f"{expected_customers:,}"
    assert metric_value(page, "Rows rejected") == "3"
    assert metric_value(page, "Rows in the file") == f"{len(frame):,}"
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "data_page.png"), full_page=True)


def test_cohorts_page_opens_with_heatmap(page, app_server, log_start):
    page.goto(app_server.url)
    page.get_by_text("Rows in the file").first.wait_for()
    page.get_by_role("link", name="Cohorts").click()
    page.get_by_role("heading", name="Cohorts").wait_for()
    page.get_by_text("Month 1 retention").first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 3
    assert "12" == metric_value(page, "Cohorts shown")
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "cohorts_page.png"), full_page=True)


def test_clv_page_calculator_and_prediction(page, app_server, log_start):
    page.goto(app_server.url)
    page.get_by_text("Rows in the file").first.wait_for()
    page.get_by_role("link", name="Customer lifetime value").click()
    page.get_by_role("heading", name="Customer lifetime value").wait_for()
    # Calculator defaults: AOV 50, 3 orders, 30 % margin, 60 % retention, 10 % discount, 5 years.
    m = 50 * 3 * 0.3
    expected = sum(m * 0.6 ** (t - 1) / 1.1 ** t for t in range(1, 6))
    page.get_by_text("CLV per customer").first.wait_for()
    assert metric_value(page, "CLV per customer") == f"{expected:,.2f}"
    page.get_by_role("tab", name="Predictive CLV").click()
    page.get_by_text("Customers scored").first.wait_for()
    assert metric_value(page, "Customers scored") == "3,000"
    page.get_by_role("tab", name="Model check").click()
    page.get_by_text("Repeat purchases in the check period").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 4
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))
    if SCREENSHOTS:
        page.get_by_role("tab", name="Predictive CLV").click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(SCREENSHOTS) / "clv_page.png"), full_page=True)
