"""A session's files go when the session ends, and stopping the server in the middle of a load is clean."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from clm_core.generator import generate_transactions
from tests.browser.conftest import start_app
from tests.browser.helpers import wait_until_idle

COPIES = 15  # 15 x 171,140 rows, about 330 MB: several seconds of DuckDB reading


def _big_csv(path: Path) -> Path:
    """About 2.6 million order lines: a generated shop's file with its rows repeated."""
    text = generate_transactions(20_000, seed=1).to_csv(index=False)
    header, body = text.split("\n", 1)
    with open(path, "w") as handle:
        handle.write(header + "\n")
        for _ in range(COPIES):
            handle.write(body)
    return path


def _open_app(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_text("Rows in the file").first.wait_for()
    return context, page


def test_sigterm_while_a_file_loads_exits_cleanly(browser, tmp_path):
    big = _big_csv(tmp_path / "big.csv")
    (tmp_path / "app").mkdir()
    with start_app(tmp_path / "app") as server:
        context, page = _open_app(browser, server.url)
        page.locator('input[type="file"]').set_input_files(str(big))
        page.get_by_text("Reading big.csv").wait_for()  # the spinner: DuckDB is reading the file
        page.wait_for_timeout(1000)
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=30)
        context.close()
    log = server.log()
    for symptom in ("terminate called", "Aborted", "core dumped", "FATAL", "Fatal Python error"):
        assert symptom not in log, log[-3000:]
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (code, log[-3000:])
    assert list(server.session_root.iterdir()) == []  # the shutdown also removed the session's folder


def _folder_aged(folder: Path, hours: float) -> Path:
    (folder / "uploads").mkdir(parents=True)
    stamp = time.time() - hours * 3600
    for path in (folder / "uploads", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_session_folders_are_swept_at_start_and_removed_when_their_session_ends(browser, tmp_path):
    left_over = _folder_aged(tmp_path / "sessions" / "session-left-over", 30)  # by a server that was killed
    recent = _folder_aged(tmp_path / "sessions" / "session-recent", 1)
    ttl = 1  # seconds Streamlit keeps a disconnected session for its browser to come back
    with start_app(tmp_path, "--server.disconnectedSessionTTL", str(ttl)) as server:
        context, page = _open_app(browser, server.url)
        wait_until_idle(page)
        assert not left_over.exists() and recent.exists()
        (folder,) = set(server.session_root.iterdir()) - {recent}
        assert (folder / "workspace.duckdb").exists()
        context.close()
        time.sleep(ttl + 1)
        # Streamlit drops expired sessions when it next stores one: when another visitor leaves.
        context, page = _open_app(browser, server.url)
        wait_until_idle(page)
        context.close()
        deadline = time.monotonic() + 15
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not folder.exists()
