"""The app's config keeps the details of an unexpected error (traceback, message, server paths) off the page."""

from __future__ import annotations

import tomllib
from pathlib import Path

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

ROOT = Path(__file__).resolve().parents[2]
CRASH = """
raise RuntimeError("could not open /srv/clm/sessions/secret.duckdb")
"""


def _client_options() -> dict[str, object]:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    return {f"client.{name}": value for name, value in config["client"].items()}


def test_an_unexpected_error_shows_no_details():
    with patch_config_options(_client_options()):
        at = AppTest.from_string(CRASH).run()
    (error,) = at.exception
    assert "/srv/clm" not in error.message
    assert "RuntimeError" not in repr(error.proto)
    assert list(error.stack_trace) == []
    assert "has encountered an error" in error.message


def test_an_error_box_offers_no_search_links():
    from streamlit.proto.NewSession_pb2 import Config
    from streamlit.runtime.app_session import _get_show_error_links  # what the browser is told at session start

    with patch_config_options(_client_options()):
        assert _get_show_error_links() == Config.ShowErrorLinks.SHOW_ERROR_LINKS_FALSE
