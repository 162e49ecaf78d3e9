"""Every page and control, timed in a real browser as a marketer meets them: a fresh server, nothing cached.

    python benchmarks/bench_pages.py                     # Online Retail and CDNOW master
    python benchmarks/bench_pages.py --data online_retail --pages churn

For each data set: upload it on the Data page, then open each page (its first computation) and change each of
its controls once, timing from the click or keystroke until the app has finished running (the status the page
shows while a script runs). Prints one table: page, step, seconds, and whether it met its target (first
computation of a page under 3 s, a control change under 1 s). Uses Debian's Chromium through Playwright.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, start_app  # noqa: E402
from tests.conftest import CDNOW_MASTER, ONLINE_RETAIL  # noqa: E402

PAGE_TARGET = 3.0
CONTROL_TARGET = 1.0
_BUSY = ("running", "rerunRequested", "stopRequested")


@dataclass
class Step:
    """One thing a user does on a page: ``act`` changes a control (or opens the page: ``opens``)."""

    name: str
    act: Callable
    opens: bool = False


def _state(page) -> str | None:
    return page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")


def settle(page, quiet: float = 1.0, timeout: float = 600.0) -> None:
    """Wait until no script has run for ``quiet`` seconds (the page before a step, not timed)."""
    since, deadline = None, time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if _state(page) in _BUSY:
            since = None
        elif since is None:
            since = time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            return
        page.wait_for_timeout(20)


def timed(page, act: Callable, *, start_within: float = 2.0, timeout: float = 600.0) -> float:
    """Seconds from ``act(page)`` until the scripts it started have finished (none started, as for a tab, which
    the browser switches by itself: the time to act)."""
    settle(page)
    started = time.perf_counter()
    act(page)
    acted = time.perf_counter()
    ran = False
    deadline = started + start_within
    while time.perf_counter() < deadline:
        if _state(page) in _BUSY:
            ran = True
            break
        page.wait_for_timeout(10)
    if not ran:
        return acted - started
    finished = None
    while time.perf_counter() - started < timeout:
        if _state(page) in _BUSY:
            finished = None
        elif finished is None:
            finished = time.perf_counter()
        elif time.perf_counter() - finished > 0.3:  # quiet for 0.3 s: no rerun follows
            return finished - started
        page.wait_for_timeout(10)
    raise TimeoutError("the page kept running")


def _open(name: str) -> Callable:
    def act(page) -> None:
        page.get_by_role("link", name=name).click()
    return act


def _number(label: str, value: str) -> Callable:
    def act(page) -> None:
        field = page.get_by_role("spinbutton", name=label)
        field.fill(value)
        field.press("Enter")
    return act


def _select(label: str, option: str) -> Callable:
    def act(page) -> None:
        page.get_by_role("combobox", name=label).click()
        page.get_by_role("option", name=option).click()
    return act


def _slider_key(label: str, key: str) -> Callable:
    def act(page) -> None:
        slider = page.get_by_role("slider", name=label).first
        slider.focus()
        slider.press(key)
    return act


def _tab(name: str) -> Callable:
    def act(page) -> None:
        page.get_by_role("tab", name=name).click()
    return act


PAGES: dict[str, list[Step]] = {
    "churn": [
        Step("open Churn risk (train, check, score)", _open("Churn risk"), opens=True),
        Step("cost per contact", _number("Cost per contact", "2")),
        Step("success rate", _number("Success rate (%)", "15")),
        Step("risk threshold (one step)", _slider_key("Contact customers with a risk of at least", "ArrowRight")),
        Step("minimum CLV", _number("Only customers with a CLV of at least", "100")),
        Step("model: random forest", _select("Model", "Random forest")),
        Step("model back to automatic", _select("Model", "Best on the check (automatic)")),
        Step("tab: how good is the prediction", _tab("How good is the prediction?")),
        Step("horizon 120 days (retrain)", _number("Horizon (days)", "120")),
    ],
}
DATA = {"online_retail": ONLINE_RETAIL, "cdnow_master": CDNOW_MASTER}


def _load(page, url: str, path: Path) -> float:
    page.goto(url)
    page.get_by_text("Rows in the file").first.wait_for(timeout=120_000)
    started = time.perf_counter()
    page.locator('input[type="file"]').set_input_files(str(path))
    page.get_by_role("button", name="Validate and load").click(timeout=120_000)
    page.get_by_role("heading", name=path.name).wait_for(timeout=300_000)
    timed(page, lambda _: None)
    return time.perf_counter() - started


def run(data: list[str], pages: list[str]) -> list[tuple[str, str, str, float, bool]]:
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as folder, start_app(Path(folder)) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        for name in data:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(120_000)
            seconds = _load(page, server.url, DATA[name])
            print(f"{name}: loaded in {seconds:.1f} s", flush=True)
            for page_name in pages:
                for step in PAGES[page_name]:
                    try:
                        seconds = timed(page, step.act)
                    except Exception as error:  # a control that is not there is reported, not fatal
                        print(f"  {page_name}: {step.name}: could not run ({type(error).__name__})", flush=True)
                        continue
                    target = PAGE_TARGET if step.opens else CONTROL_TARGET
                    rows.append((name, page_name, step.name, seconds, seconds < target))
                    print(f"  {page_name:<8} {step.name:<44} {seconds:6.2f} s  {'ok' if seconds < target else 'SLOW'}",
                          flush=True)
            page.context.close()
        browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=sorted(DATA, reverse=True))
    parser.add_argument("--pages", nargs="+", choices=sorted(PAGES), default=list(PAGES))
    args = parser.parse_args()
    rows = run(args.data, args.pages)
    print("\n| data | page | step | seconds | target met |\n|---|---|---|---:|---|")
    for name, page_name, step, seconds, met in rows:
        print(f"| {name} | {page_name} | {step} | {seconds:.2f} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()
