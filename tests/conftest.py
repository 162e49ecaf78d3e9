"""Shared fixtures: paths to the real datasets beside the checkout, and small workspaces."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from clm_core import use_one_blas_thread  # noqa: E402

use_one_blas_thread()  # as the app and the command line run

ONLINE_RETAIL = SHARED / "online_retail.csv.gz"
CDNOW_MASTER = SHARED / "cdnow_master.txt.gz"
CDNOW_SAMPLE = SHARED / "cdnow_sample.txt.gz"
TELCO = SHARED / "telco_churn.csv.gz"
DEMO_FILE = ROOT / "data" / "demo_transactions.csv.gz"
# CI sets this: there every real dataset must be present, and a missing one fails the run instead of skipping.
REQUIRE_DATA = os.environ.get("CLM_REQUIRE_DATA") == "1"


def need_data(path: Path) -> Path:
    """``path`` if it exists; otherwise the test is skipped, saying which file it needs and where it comes from
    (README, "Test data"), or fails when ``CLM_REQUIRE_DATA=1`` (CI)."""
    if not path.exists():
        message = (f"needs the real dataset {path.name} in {path.parent} (see the README, 'Test data', for where "
                   "to get it)")
        if REQUIRE_DATA:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def online_retail_path() -> Path:
    return need_data(ONLINE_RETAIL)


@pytest.fixture(scope="session")
def cdnow_sample_path() -> Path:
    return need_data(CDNOW_SAMPLE)


@pytest.fixture(scope="session")
def cdnow_master_path() -> Path:
    return need_data(CDNOW_MASTER)


@pytest.fixture(scope="session")
def telco_path() -> Path:
    return need_data(TELCO)


@pytest.fixture(scope="session")
def online_retail_workspace(online_retail_path, tmp_path_factory):
    from clm_core.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("or") / "or.duckdb")
    report = workspace.ingest(online_retail_path)
    yield workspace, report
    workspace.close()


@pytest.fixture(scope="session")
def cdnow_sample_workspace(cdnow_sample_path, tmp_path_factory):
    from clm_core.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("cd") / "cd.duckdb")
    workspace.ingest(cdnow_sample_path)
    yield workspace
    workspace.close()


# Hypothesis profiles for the property-based tests (tests/test_fuzz_ingest.py). "ci", the default, replays one
# fixed set of examples in about two minutes on two cores, and skips the explain phase (a minute per failure);
# `pytest --hypothesis-profile=long` explores further, with fresh examples each run.
from hypothesis import Phase, settings  # noqa: E402

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, database=None, print_blob=True,
                          phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink])
settings.register_profile("long", max_examples=5000, deadline=None, database=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for every Spark test (it takes ~10 s to start); skipped without pyspark or Java,
    except in CI (``CLM_REQUIRE_DATA=1``)."""
    from clm_core.errors import EngineUnavailableError
    from clm_core.spark_engine import spark_session

    try:
        session = spark_session("local[2]")
    except EngineUnavailableError as error:
        if REQUIRE_DATA:
            pytest.fail(f"CI runs the Spark tests: {error}")
        pytest.skip(str(error))
    yield session
    session.stop()


def spark_engine_for(workspace, folder, spark):
    """A SparkEngine over ``workspace``'s dataset, written as Parquet to ``folder``."""
    from clm_core.spark_engine import SparkEngine

    workspace.write_parquet(folder)
    return SparkEngine.from_parquet(folder, session=spark)


@pytest.fixture(scope="session")
def online_retail_spark(spark, online_retail_workspace, tmp_path_factory):
    """(the Online Retail workspace, a SparkEngine over the lake folder it writes): written once for every Spark
    test module."""
    workspace, _ = online_retail_workspace
    return workspace, spark_engine_for(workspace, tmp_path_factory.mktemp("or_lake"), spark)
