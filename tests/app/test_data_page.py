"""AppTest of the Data page: the demo loads on first run and its summary is shown."""

from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def test_data_page_loads_demo_and_shows_summary():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    demo = pd.read_csv(ROOT / "data" / "demo_transactions.csv.gz", dtype=str)
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Rows in the file"] == f"{len(demo):,}"
    assert metrics["Customers"] == f"{demo['customer_id'].nunique():,}"
    assert metrics["Orders"] == f"{demo['order_id'].nunique():,}"
    assert not at.error


def test_load_demo_button_reloads_without_error():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.button(key="data_load_demo").click().run()
    assert not at.exception, at.exception
    assert any("Demo data loaded" in s.value for s in at.success)
