"""AppTest sessions keep their folders under a private root, so tests can see what a session wrote."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def session_root(tmp_path_factory, monkeypatch):
    """The CLM_SESSION_ROOT every session of this test creates its folder in."""
    root = tmp_path_factory.mktemp("sessions")
    monkeypatch.setenv("CLM_SESSION_ROOT", str(root))
    return root
