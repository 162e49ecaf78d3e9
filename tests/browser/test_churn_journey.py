"""The user's main job in a real browser: upload Online Retail, open Churn risk, download the at-risk list with
the defaults, and find the same customers as the command line's ``at-risk``."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests.browser.helpers import assert_log_clean, assert_page_ok, wait_until_idle
from tests.conftest import ONLINE_RETAIL, ROOT, need_data


def test_upload_to_at_risk_download_in_five_clicks(page, app_server, log_start, tmp_path: Path):
    need_data(ONLINE_RETAIL)
    page.goto(app_server.url)
    page.get_by_text("Rows in the file").first.wait_for()
    clicks = 0
    started = time.perf_counter()

    page.locator('input[type="file"]').set_input_files(str(ONLINE_RETAIL))  # choosing the file
    clicks += 1
    page.get_by_role("button", name="Validate and load").click(timeout=120_000)
    clicks += 1
    page.get_by_role("heading", name="online_retail.csv.gz").wait_for(timeout=120_000)
    page.get_by_role("link", name="Churn risk").click()
    clicks += 1
    button = page.get_by_role("button", name="Download the at-risk list (CSV)")
    button.wait_for(timeout=180_000)
    wait_until_idle(page)
    with page.expect_download(timeout=120_000) as download:
        button.click()
    clicks += 1
    seconds = time.perf_counter() - started
    horizon = page.get_by_role("slider", name="Horizon (days)").get_attribute("aria-valuetext").split()[0]
    listed = pd.read_csv(io.BytesIO(Path(download.value.path()).read_bytes()), encoding="utf-8-sig",
                         dtype={"customer_id": str})
    print(f"\nUpload to at-risk download: {clicks} clicks, {seconds:.1f} s, {len(listed):,} customers listed "
          f"(horizon {horizon} days)")
    assert clicks <= 5
    assert_page_ok(page)
    assert_log_clean(app_server.log(since=log_start))

    db = tmp_path / "or.duckdb"
    for args in (["ingest", str(ONLINE_RETAIL), "--db", str(db)],
                 ["at-risk", "--db", str(db), "--horizon-days", horizon, "--out", str(tmp_path / "all.csv")]):
        result = subprocess.run([sys.executable, "-m", "clm_core", *args], cwd=ROOT, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr
    everyone = pd.read_csv(tmp_path / "all.csv", encoding="utf-8-sig", dtype={"customer_id": str})
    assert 0 < len(listed) <= len(everyone)  # the best net benefit may well be to contact everyone
    # The page's list is the command line's riskiest customers, in the same order, with the same figures.
    head = everyone.head(len(listed))
    assert listed["customer_id"].tolist() == head["customer_id"].tolist()
    pd.testing.assert_series_equal(listed["risk"], head["risk"], rtol=1e-9)
    assert listed.columns.tolist() == everyone.columns.tolist()
