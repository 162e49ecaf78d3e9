"""What every browser test checks: the page settled, shows no error box, and the server logged no error."""

from __future__ import annotations

import time

# Streamlit's generic text for an uncaught exception when client.showErrorDetails hides the details.
GENERIC_ERROR = "This app has encountered an error"
# Symptoms of two script runs of one session using DuckDB at once.
RACE_SYMPTOMS = ("connection is busy", "No dataset is loaded yet")
_BUSY_STATES = ("running", "rerunRequested", "stopRequested")


def metric_value(page, label: str) -> str:
    """The value of the first visible metric labelled exactly ``label``."""
    labelled = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    metric = page.get_by_test_id("stMetric").filter(has=labelled).filter(visible=True).first
    return metric.get_by_test_id("stMetricValue").inner_text()


def script_running(page) -> bool:
    """Whether the session is running a script now (or has one asked for)."""
    return page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state") in _BUSY_STATES


def wait_until_idle(page, *, quiet_ms: int = 1500, timeout_s: float = 90) -> None:
    """Wait until the session has run no script for ``quiet_ms`` in a row (every rerun asked for has finished)."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        if script_running(page):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif (time.monotonic() - quiet_since) * 1000 >= quiet_ms:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the page was still running scripts after {timeout_s} s")


def assert_page_ok(page, server_log: str = "") -> None:
    """No exception box (whatever details it shows) and no sign of a DuckDB race on the page; ``server_log``, if
    given, is shown on failure (the page itself hides the details)."""
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{exceptions.first.inner_text()}\n{server_log[-4000:]}"
    text = page.locator('[data-testid="stApp"]').inner_text()
    for symptom in (GENERIC_ERROR, *RACE_SYMPTOMS):
        assert symptom not in text, f"{symptom!r} on the page:\n{text[:3000]}\n{server_log[-4000:]}"


def assert_log_clean(log: str) -> None:
    """The server log holds no DuckDB race, traceback or crash."""
    for symptom in ("ResourceInUse", "connection is busy", "Traceback", "terminate called", "Aborted",
                    "core dumped", "Uncaught app exception"):
        assert symptom not in log, f"{symptom!r} in the server log:\n{log[-4000:]}"
