"""What the page tests share: opening a page of the app in AppTest, and reading its metrics."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def open_page(page: str | None, *, timeout: float, session: dict | None = None) -> AppTest:
    """The app run once (the Data page, which loads the demo on first visit), then ``page`` (``"pages/clv.py"``;
    None stays on the Data page), with ``session`` set in its session state first; no exception on the way."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def page_metrics(at: AppTest) -> dict[str, str]:
    """Every metric on the page: label -> value as shown."""
    return {metric.label: metric.value for metric in at.metric}
