"""The workspace: concurrent page re-runs never find it busy, and resource errors are user errors."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from clm_core.errors import ResourceLimitError
from clm_core.workspace import Workspace
from tests.conftest import DEMO_FILE


def test_reads_from_many_threads_while_a_load_runs(tmp_path):
    """Streamlit starts a new run while the last one still reads: every run gets answers, never 'busy'."""
    workspace = Workspace(tmp_path / "ws.duckdb")
    workspace.ingest(DEMO_FILE)
    expected = workspace.query("dataset_totals").iloc[0]["customers"]
    errors: list[BaseException] = []
    answers: list[int] = []

    def page_run() -> None:
        try:
            for _ in range(15):
                assert workspace.has_dataset
                answers.append(int(workspace.query("dataset_totals").iloc[0]["customers"]))
                workspace.query("cohort_activity", period="month")
        except BaseException as error:  # noqa: BLE001 - any failure is the test's answer
            errors.append(error)

    def reload() -> None:
        try:
            workspace.ingest(DEMO_FILE)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=page_run) for _ in range(6)] + [threading.Thread(target=reload)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    workspace.close()
    assert errors == []
    assert answers == [expected] * 90


def test_running_out_of_memory_is_a_user_error(tmp_path, monkeypatch):
    from clm_core import workspace as workspace_module

    monkeypatch.setattr(workspace_module, "_MEMORY_LIMIT", "40MB")
    workspace = Workspace(tmp_path / "ws.duckdb")
    with pytest.raises(ResourceLimitError, match="memory") as caught:
        with workspace._cursor() as cursor:
            cursor.execute("SELECT list(range) FROM range(60000000)").fetchall()
    assert "\n" not in str(caught.value) and str(tmp_path) not in str(caught.value)
    workspace.close()


def test_a_load_waits_while_a_reader_holds_the_dataset(tmp_path, cdnow_sample_path):
    """A background computation kept under the dataset's fingerprint reads one dataset throughout: a load that
    comes meanwhile replaces the dataset only after the reader lets go."""
    workspace = Workspace(tmp_path / "ws.duckdb")
    workspace.ingest(DEMO_FILE)
    demo = workspace.dataset.fingerprint
    seen: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def reader() -> None:
        with workspace.dataset_held():
            holding.set()
            release.wait(timeout=60)
            seen.append(workspace.dataset.fingerprint)  # still the demo: the load below is waiting
            # Storing labels meanwhile, as the background preparation does: no deadlock with the waiting load.
            workspace.store_customer_labels(pd.DataFrame({"customer_id": ["c1"], "rfm_segment": ["Champions"]}),
                                            "a test label")
            seen.append(workspace.customer_labels_info()[0])

    thread = threading.Thread(target=reader)
    thread.start()
    holding.wait(timeout=60)
    loading = threading.Thread(target=workspace.ingest, args=(cdnow_sample_path,))
    loading.start()
    loading.join(timeout=2)
    assert loading.is_alive()  # waiting for the reader
    release.set()
    thread.join(timeout=60)
    loading.join(timeout=120)
    assert not thread.is_alive() and not loading.is_alive()
    assert seen == [demo, "a test label"]
    assert workspace.customer_labels_info() is None  # the new dataset starts without the old one's labels
    assert workspace.dataset.fingerprint != demo  # loaded once the reader let go
    workspace.close()


def test_the_description_read_while_a_load_runs_is_read_again_after_it(tmp_path, monkeypatch):
    """The dataset's description is read from the database once per load and then kept; one read while a load
    runs (here, the old one: the new one is not committed yet) is not kept past the load."""
    workspace = Workspace(tmp_path / "ws.duckdb")
    workspace.ingest(DEMO_FILE)
    first = workspace.dataset.fingerprint
    other = tmp_path / "other.csv"
    other.write_text("customer_id,order_date,amount\na,2021-01-01,10\nb,2021-01-02,20\na,2021-02-01,5\n")
    seen = []
    write = workspace._write_meta

    def write_then_read(dataset) -> None:
        write(dataset)
        reader = threading.Thread(target=lambda: seen.append(workspace.dataset.fingerprint))
        reader.start()
        reader.join(timeout=60)

    monkeypatch.setattr(workspace, "_write_meta", write_then_read)
    workspace.ingest(other)
    assert seen == [first]
    assert workspace.dataset.fingerprint not in (first, None)
    assert workspace.dataset.name == "other.csv"
    workspace.close()
