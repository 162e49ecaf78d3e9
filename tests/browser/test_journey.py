"""The user's journey in a real browser: upload a CSV and see the customer count."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
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
    wait_until_idle(page)
    assert page.locator(".js-plotly-plot").count() == 2  # only the open tab is drawn
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))
    if SCREENSHOTS:
        page.get_by_role("tab", name="Predictive CLV").click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(SCREENSHOTS) / "clv_page.png"), full_page=True)


def test_churn_page_horizon_and_check_date_move_in_steps(page, app_server, log_start):
    """The horizon slider moves 15 days per key press and the check date 30 days, and the page follows."""
    page.goto(app_server.url)
    page.get_by_text("Rows in the file").first.wait_for()
    page.get_by_role("link", name="Churn risk").click()
    horizon = page.get_by_role("slider", name="Horizon (days)")
    horizon.wait_for(timeout=180_000)
    page.get_by_text("Customers scored").first.wait_for(timeout=180_000)
    wait_until_idle(page)
    start = int(horizon.get_attribute("aria-valuetext").split()[0])  # the suggestion, in steps of 30 days
    horizon.focus()
    horizon.press("ArrowRight")
    page.get_by_text(f"Why {start + 15} days?").wait_for(timeout=60_000)
    wait_until_idle(page)
    page.get_by_text("Choose the check date", exact=True).click()
    check = page.get_by_role("slider", name="Check the model from")
    check.wait_for()
    latest = check.get_attribute("aria-valuetext")
    check.focus()
    check.press("ArrowLeft")
    wait_until_idle(page)
    earlier = check.get_attribute("aria-valuetext")
    assert datetime.strptime(latest, "%d %b %Y") - datetime.strptime(earlier, "%d %b %Y") == timedelta(days=30)
    page.get_by_text("Customers scored").first.wait_for()
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))
    if SCREENSHOTS:
        page.get_by_text("Choose the check date", exact=True).click()
        horizon.focus()
        horizon.press("ArrowLeft")
        wait_until_idle(page)
        page.mouse.move(0, 0)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(SCREENSHOTS) / "churn_page.png"), full_page=True)


def test_customer_lookup_and_their_recommendations_download(page, app_server, log_start):
    """Look one demo customer up by typing their id, see their figures and download their recommendations."""
    import io

    import pandas as pd

    demo = pd.read_csv(Path(__file__).resolve().parents[2] / "data" / "demo_transactions.csv.gz",
                       dtype={"customer_id": str})
    customer = demo["customer_id"].value_counts().index[0]
    page.goto(app_server.url)
    page.get_by_text("Rows in the file").first.wait_for()
    page.get_by_role("link", name="Customer", exact=True).click()
    page.get_by_role("heading", name="Customer", exact=True).wait_for()
    page.get_by_role("combobox", name="Customer id").click()
    page.keyboard.type(customer)
    page.keyboard.press("Enter")
    page.get_by_text("Next best action").first.wait_for(timeout=120_000)
    wait_until_idle(page)
    assert metric_value(page, "Orders") == f"{demo.loc[demo['customer_id'] == customer, 'order_id'].nunique():,}"
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Download this customer's recommendations (CSV)").click()
    picks = pd.read_csv(io.BytesIO(Path(download.value.path()).read_bytes()), encoding="utf-8-sig",
                        dtype={"customer_id": str})
    assert set(picks["customer_id"]) == {customer}
    assert len(picks) == 10 and picks["rank"].tolist() == list(range(1, 11))
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "customer_page.png"), full_page=True)


def test_recommendations_page_opens_with_the_method_and_actions(page, app_server, log_start):
    page.goto(app_server.url)
    page.get_by_text("Rows in the file").first.wait_for()
    page.get_by_role("link", name="Recommendations").click()
    page.get_by_role("heading", name="Recommendations").wait_for()
    page.get_by_text("Method used").first.wait_for(timeout=120_000)
    wait_until_idle(page)
    assert metric_value(page, "Customers") == "3,000"
    assert_page_ok(page)
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "recommendations_page.png"), full_page=True)
    page.get_by_text("Next best action", exact=True).first.click()
    page.get_by_text("Customers per action").first.wait_for(timeout=120_000)
    wait_until_idle(page)
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "next_best_action.png"), full_page=True)
