"""Unit tests of app_state's session files: upload names, Markdown escaping, the sweep and the clean-up."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

import app_state

HOSTILE = "**x** [link](http://evil.example) ![i](x.png) <b>b</b> :red[r] $x$.csv"


# --- save_upload ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../evil.csv", "../../../../../../tmp/evil.csv", "/etc/evil.csv",
                                  "..\\..\\evil.csv", "uploads/../../evil.csv"])
def test_upload_name_never_reaches_the_path(tmp_path, name):
    uploads = tmp_path / "session" / "uploads"
    uploads.mkdir(parents=True)
    path = app_state.save_upload(name, b"customer_id,order_date\na,2021-01-01\n", folder=uploads)
    assert path.parent == uploads
    assert path.suffix == ".csv"
    assert "evil" not in path.name
    assert path.read_bytes().startswith(b"customer_id")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [path]


@pytest.mark.parametrize(("name", "suffix"), [
    ("shop.CSV", ".csv"), ("shop.csv.gz", ".gz"), ("book.xlsx", ".xlsx"), ("data.parquet", ".parquet"),
    ("shop.tsv", ".tsv"), ("a.zip", ".zip"), ("notes.txt", ".txt"),
    ("run.sh", ""), ("shop.csv.php", ""), ("no_extension", ""), (".csv", ""), ("x.csv\x00.sh", ""),
])
def test_upload_keeps_only_a_known_extension(tmp_path, name, suffix):
    path = app_state.save_upload(name, b"a,b\n1,2\n", folder=tmp_path)
    assert path.suffix == suffix
    assert len(path.stem) == 32  # a generated hex name


def test_a_new_upload_replaces_the_earlier_one(tmp_path):
    first = app_state.save_upload("a.csv", b"1", folder=tmp_path)
    second = app_state.save_upload("b.csv", b"2", folder=tmp_path)
    assert not first.exists()
    assert list(tmp_path.iterdir()) == [second]


# --- plain --------------------------------------------------------------------------------------------------------
def test_plain_escapes_markdown_and_html():
    text = app_state.plain(HOSTILE)
    for raw in ("**x**", "[link](", "![i]", "<b>", ":red[", "$x$", "http://"):
        assert raw not in text
    assert text.startswith("\\*\\*x\\*\\* \\[link\\]\\(http\\:\u2060\\/\\/evil\\.example\\)")
    # Without the escapes and the invisible word joiners it is the text again: nothing is lost, only made literal.
    assert text.replace("\\", "").replace(app_state.WORD_JOINER, "") == HOSTILE


@pytest.mark.parametrize("address", ["http://evil.example/a", "https://evil.example", "www.evil.example",
                                     "WWW.evil.example", "me@evil.example", ":streamlit:"])
def test_plain_breaks_what_would_become_a_link_or_image(address):
    assert address not in app_state.plain(f"see {address} now").replace("\\", "")


def test_plain_keeps_ordinary_text_readable():
    assert app_state.plain("Sales 2024") == "Sales 2024"
    assert app_state.plain("a\nb") == "a b"


# --- sweep ----------------------------------------------------------------------------------------------------------
def _aged(folder: Path, hours: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workspace.duckdb").write_bytes(b"x")
    stamp = time.time() - hours * 3600
    for path in (*folder.iterdir(), folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_sweep_removes_only_folders_older_than_the_limit(tmp_path):
    old = _aged(tmp_path / "session-old", 30)
    recent = _aged(tmp_path / "session-recent", 2)
    busy = _aged(tmp_path / "session-busy", 30)
    (busy / "workspace.duckdb").touch()  # an old folder whose workspace was written just now is in use
    removed = app_state.sweep_session_folders(tmp_path, 24)
    assert removed == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session-busy", "session-recent"]
    assert app_state.sweep_session_folders(tmp_path, 1) == [recent]


def test_sweep_age_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_SESSION_MAX_AGE_HOURS", "1.5")
    assert app_state.max_age_hours() == 1.5
    monkeypatch.setenv("CLM_SESSION_MAX_AGE_HOURS", "")
    assert app_state.max_age_hours() == 24
    monkeypatch.setenv("CLM_SESSION_ROOT", str(tmp_path / "root"))
    assert app_state.session_root() == tmp_path / "root"
    assert (tmp_path / "root").is_dir()


def test_default_root_is_one_folder_in_the_temp_dir(monkeypatch):
    import tempfile

    monkeypatch.delenv("CLM_SESSION_ROOT")
    assert app_state.session_root() == Path(tempfile.gettempdir()) / "clm-sessions"


# --- end of a session -----------------------------------------------------------------------------------------------
def test_dropping_a_session_removes_its_folder(tmp_path):
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(app_state.DEMO_FILE)
    app_state.save_upload("shop.csv", b"a,b\n", folder=space.uploads)
    folder, workspace = space.folder, space.workspace
    assert folder.parent == tmp_path and (folder / "workspace.duckdb").exists()
    del space
    gc.collect()
    assert not folder.exists()
    with pytest.raises(Exception, match="closed"):
        workspace.query("preview", limit=1)


def test_shutdown_interrupts_a_running_computation_and_closes_every_workspace(tmp_path):
    registry = app_state.SessionRegistry()
    spaces = [app_state.SessionSpace(tmp_path) for _ in range(2)]
    for space in spaces:
        registry.add(space)
    busy = spaces[0].workspace
    busy.ingest(app_state.DEMO_FILE)
    outcome = {}

    def long_query():
        # A count over billions of generated rows: minutes unless interrupted.
        try:
            with busy._cursor() as cursor:
                cursor.execute("SELECT count(*) FROM range(20000000000) a, range(10) b WHERE (a + b) % 7 = 3").fetchall()
            outcome["result"] = "finished"
        except Exception as error:  # noqa: BLE001 - the interruption is the expected outcome
            outcome["result"] = type(error).__name__

    thread = threading.Thread(target=long_query, daemon=True)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    registry.shut_down()
    thread.join(timeout=10)
    assert time.monotonic() - started < 10
    assert outcome["result"] == "InterruptException"
    assert list(tmp_path.iterdir()) == []


# --- background imports -----------------------------------------------------------------------------------------
def test_model_pages_run_only_after_the_background_imports(tmp_path, monkeypatch):
    """Two threads importing scikit-learn at once can fail ("cannot import name 'clone' from partially
    initialized module"): a page other than Data must not start before the warm-up thread has finished."""
    from streamlit.testing.v1 import AppTest

    from tests.app.helpers import ROOT

    finished = threading.Event()

    def slow_imports() -> None:
        time.sleep(1.5)
        finished.set()

    seen: list[bool] = []
    real_require = app_state.require_dataset

    def require_dataset():
        seen.append(finished.is_set())
        return real_require()

    monkeypatch.setattr(app_state, "_import_model_modules", slow_imports)
    monkeypatch.setattr(app_state, "require_dataset", require_dataset)
    app_state.warm_up_imports.clear()
    try:
        space = app_state.SessionSpace(tmp_path)
        space.workspace.ingest(ROOT / "data" / "demo_transactions.csv.gz")
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["session_space"] = space
        at.session_state["demo_checked"] = True
        at.run()  # the Data page does not wait
        at.switch_page("pages/customer.py").run()
        assert not at.exception, at.exception
        assert seen and seen[-1] is True
    finally:
        app_state.warm_up_imports.clear()


def test_a_money_figure_that_rounds_to_zero_keeps_its_cents():
    # CDNOW master's one-customer campaign list nets -0.49: shown as "-0" before.
    assert [app_state.money(value) for value in (-0.49, 0.0, 8278519.4, None)] == ["-0.49", "0", "8,278,519", "n/a"]
