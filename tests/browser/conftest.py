"""Start the app on a free localhost port and drive it with Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CLM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppServer:
    """A running `streamlit run app.py`: its address, its log file and the folder its sessions live in."""

    url: str
    log_path: Path
    session_root: Path
    process: subprocess.Popen

    def log(self, since: int = 0) -> str:
        """The server's output, from byte ``since`` on (see :meth:`log_size`)."""
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            return handle.read().decode(errors="replace")

    def log_size(self) -> int:
        """Where the log ends now: pass it to :meth:`log` to read what a test made the server write."""
        return self.log_path.stat().st_size


@contextmanager
def start_app(folder: Path, *options: str) -> Iterator[AppServer]:
    """Run the app with its sessions in ``folder/sessions`` and its output in ``folder/streamlit.log``;
    ``options`` are extra `streamlit run` flags. Stopped (SIGTERM) on exit unless the test stopped it."""
    port = _free_port()
    session_root = folder / "sessions"
    session_root.mkdir(exist_ok=True)
    log_path = folder / "streamlit.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             *options],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CLM_SESSION_ROOT": str(session_root)},
        )
    server = AppServer(url=f"http://127.0.0.1:{port}", log_path=log_path, session_root=session_root, process=process)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(server.url + "/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    pytest.fail(f"the app did not start within 60 s:\n{server.log()}")
                time.sleep(0.3)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> Iterator[AppServer]:
    """The app shared by the browser tests (each test opens its own browser session)."""
    with start_app(tmp_path_factory.mktemp("app")) as server:
        yield server


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    return app_server.url


@pytest.fixture
def log_start(app_server) -> int:
    """Where the shared server's log stood when the test began: ``app_server.log(since=log_start)`` is what the
    test made the server write."""
    return app_server.log_size()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()
