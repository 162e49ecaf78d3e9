"""Uploads in a real browser: the browser-sent file name is shown as text and never becomes a path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.browser.helpers import assert_log_clean, assert_page_ok, metric_value, wait_until_idle

SHOP_CSV = (b"customer_id,order_id,order_date,amount\n"
            b"a,1,2021-01-05,10\nb,2,2021-01-09,20\na,3,2021-02-11,15\nc,4,2021-03-02,30\nb,5,2021-03-20,25\n")
HOSTILE_NAME = "**x** [link](http://evil.example) ![i](x.png).csv"


def _upload(page, url: str, name: str, content: bytes = SHOP_CSV) -> None:
    page.goto(url)
    page.get_by_text("Rows in the file").first.wait_for()
    page.locator('input[type="file"]').set_input_files(files=[{"name": name, "mimeType": "text/csv",
                                                                "buffer": content}])
    page.get_by_role("button", name="Validate and load").click()
    page.get_by_text("Every row passed validation").wait_for()
    wait_until_idle(page)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("climb", [2, 12])
def test_an_upload_named_to_climb_out_stays_in_its_session_folder(page, app_server, log_start, tmp_path, climb):
    target = tmp_path / "evil.csv"  # where a name with enough ../ would land
    name = "../" * climb + (str(target).lstrip("/") if climb > 2 else "evil.csv")
    system_temp = Path(tempfile.gettempdir()) / "evil.csv"
    existed = system_temp.exists()
    before = _files(app_server.session_root)

    _upload(page, app_server.url, name)
    assert metric_value(page, "Rows in the file") == "5"
    assert_page_ok(page)
    assert page.get_by_text(f"Loaded {name}.", exact=True).count() == 1  # shown as sent, as text

    assert not target.exists()
    assert system_temp.exists() == existed
    new = _files(app_server.session_root) - before
    uploads = [path for path in new if path.parent.name == "uploads"]
    assert len(uploads) == 1 and uploads[0].suffix == ".csv" and "evil" not in uploads[0].name
    session_folder = uploads[0].parent.parent
    assert session_folder.parent == app_server.session_root
    assert all(session_folder in path.parents for path in new)
    assert_log_clean(app_server.log(since=log_start))


def _shown(locator) -> str:
    """A locator's text as people read it (without the invisible word joiners that keep addresses unlinked)."""
    return locator.inner_text().replace("\u2060", "")


def test_a_file_name_made_of_markdown_is_shown_as_text(page, app_server, log_start):
    _upload(page, app_server.url, HOSTILE_NAME)
    assert_page_ok(page)
    assert _shown(page.locator("h2", has_text="[link]")) == HOSTILE_NAME  # st.header
    assert f"Loaded {HOSTILE_NAME}." in _shown(page.get_by_test_id("stAlert").first)
    assert HOSTILE_NAME in _shown(page.get_by_test_id("stSidebar"))
    assert page.locator('a[href*="evil.example"]').count() == 0
    assert page.locator('img[src*="x.png"]').count() == 0
    assert page.locator("strong", has_text="x").filter(has_not_text="[link]").count() == 0
    assert_log_clean(app_server.log(since=log_start))
