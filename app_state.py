"""App-side glue: the per-session workspace and files, and the cached wrappers around clm_core calls.

Every browser session gets its own folder under one root (``CLM_SESSION_ROOT``, default
``<tempdir>/clm-sessions``) holding its uploads and its DuckDB workspace, so one session never sees another's
upload. The folder is removed when the session ends, when the server shuts down, and, if a server died without
cleaning up, by the first session of the next server once it is older than ``CLM_SESSION_MAX_AGE_HOURS``
(default 24). Cached results are keyed by the dataset fingerprint (a hash of the file's bytes, mapping and
options) plus the settings; the workspace argument is underscored so it stays out of the cache key.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import Iterator, NamedTuple

import duckdb
import pandas as pd
import streamlit as st

from clm_core import summary as summary_module
from clm_core.ingest import IngestOptions
from clm_core.mapping import ColumnMapping
from clm_core.workspace import StagedFile, Workspace

DEMO_FILE = Path(__file__).parent / "data" / "demo_transactions.csv.gz"
DEMO_NAME = "Demo shop (generated, 3,000 customers)"

SESSION_ROOT_ENV = "CLM_SESSION_ROOT"
MAX_AGE_ENV = "CLM_SESSION_MAX_AGE_HOURS"
DEFAULT_MAX_AGE_HOURS = 24.0
UPLOAD_SUFFIXES = frozenset({".csv", ".txt", ".tsv", ".gz", ".zip", ".xlsx", ".parquet"})
_CLOSE_TIMEOUT_SECONDS = 10.0

_LOGGER = logging.getLogger(__name__)


# --- start-up ---------------------------------------------------------------------------------------------------
# The model pages need scikit-learn and SciPy, which take a second or more to import: a background thread
# imports them once per server process while the user is still on the first page.
_MODEL_MODULES = ("clm_core.churn", "clm_core.clv", "clm_core.clv_diagnostics", "clm_core.charts",
                  "clm_core.recommend", "clm_core.actions", "clm_core.segments", "clm_core.customer_view")


def _import_model_modules() -> None:
    import importlib

    for name in _MODEL_MODULES:
        importlib.import_module(name)


@st.cache_resource(show_spinner=False)
def warm_up_imports() -> threading.Thread:
    """Start importing the model modules in the background (once per process); the thread.

    Two threads importing the same package at once can see it half-initialised (scikit-learn's circular imports
    then fail with "cannot import name"), so nothing else may import these modules while the thread runs: the
    Data page's one (the charts) is imported here first, and every other page waits (:func:`wait_for_imports`)."""
    import clm_core.charts  # noqa: F401  (the Data page's, before the thread starts)

    thread = threading.Thread(target=_import_model_modules, name="clm-import-warm-up", daemon=True)
    thread.start()
    return thread


def wait_for_imports() -> None:
    """Block until the background imports are done (a page that imports the model modules runs after them)."""
    warm_up_imports().join()


# --- text from users ------------------------------------------------------------------------------------------
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=^\"'@%/])")
# Streamlit turns some plain words into links or images after Markdown is parsed, so escaping cannot stop them:
# "http://...", "www....", "name@domain" and ":streamlit:". An invisible word joiner breaks each pattern.
_LINKIFIED = re.compile(r"(?<=:)|(?=@)|(?i:(?<=www)(?=\.))")
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """``text`` shown as written by an element that renders Markdown (header, caption, success, error, labels...):
    a file named ``**x** [link](http://evil.example).csv`` stays those characters, not bold text and a link.

    Markdown and HTML special characters are backslash-escaped; an invisible word joiner (U+2060) follows each
    colon and precedes each @ so no web or mail address is linked; line breaks become spaces.
    """
    joined = _LINKIFIED.sub(WORD_JOINER, str(text).replace("\n", " "))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", joined)


# --- session folders ------------------------------------------------------------------------------------------
def session_root() -> Path:
    """The folder that holds every session's folder (created if missing)."""
    root = Path(os.environ.get(SESSION_ROOT_ENV) or Path(tempfile.gettempdir()) / "clm-sessions")
    root.mkdir(parents=True, exist_ok=True)
    return root


def max_age_hours() -> float:
    """How old a session folder left behind by an earlier server may get before it is swept, in hours."""
    value = os.environ.get(MAX_AGE_ENV, "")
    try:
        return float(value) if value.strip() else DEFAULT_MAX_AGE_HOURS
    except ValueError:
        _LOGGER.warning("%s=%r is not a number of hours; using %s", MAX_AGE_ENV, value, DEFAULT_MAX_AGE_HOURS)
        return DEFAULT_MAX_AGE_HOURS


def _last_change(folder: Path) -> float:
    """The newest modification time of a folder and its direct entries (a workspace file written in place does
    not touch its folder's own time), in seconds since the epoch."""
    times = [folder.stat().st_mtime]
    for entry in folder.iterdir():
        try:
            times.append(entry.stat().st_mtime)
        except OSError:  # removed meanwhile
            pass
    return max(times)


def sweep_session_folders(root: Path, max_age_hours: float) -> list[Path]:
    """Remove the session folders in ``root`` unchanged for more than ``max_age_hours``; returns them."""
    cutoff = time.time() - max_age_hours * 3600
    removed = []
    for folder in sorted(root.iterdir()):
        try:
            if not folder.is_dir() or folder.is_symlink() or _last_change(folder) >= cutoff:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def close_workspace(workspace: Workspace, timeout: float = _CLOSE_TIMEOUT_SECONDS) -> None:
    """Stop whatever ``workspace`` is computing and close it (see :meth:`Workspace.close`); a workspace still
    busy after ``timeout`` seconds is left open, with a warning in the server log."""
    workspace.interrupt()
    try:
        workspace.close(timeout=timeout)
    except duckdb.ResourceInUseException:
        _LOGGER.warning("A workspace was still busy after %.0f s; it is left open.", timeout)


def _release_session(folder: Path, workspace: Workspace) -> None:
    close_workspace(workspace)
    shutil.rmtree(folder, ignore_errors=True)


class SessionSpace:
    """One session's folder, its uploads folder and its workspace; all removed when the session ends.

    Kept in ``st.session_state``: when Streamlit drops an ended session's state, this object is garbage
    collected and its finalizer closes the workspace and removes the folder. ``release()`` does it at once.
    """

    def __init__(self, root: Path) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.uploads = self.folder / "uploads"
        self.uploads.mkdir()
        self.workspace = Workspace(self.folder / "workspace.duckdb", folder=self.folder)
        # Quick clicks start a new script run while the last one still loads: one load (stage, build) at a time.
        # What is staged lives here, not in st.session_state: touching session state is where Streamlit stops an
        # outdated run, which must not happen between building a staged file and noting that it is built.
        self.loading = threading.RLock()
        self.staged: tuple[set[tuple], StagedFile] | None = None  # the reading choices it answers, the file
        self.detected_header_rows: dict[tuple, int] = {}  # (path, sheets) -> the row detection chose
        # The finalizer must not reference self, or the object would never be collected.
        self.release = weakref.finalize(self, _release_session, self.folder, self.workspace)


class SessionRegistry:
    """The live sessions of this server process, held weakly, so a shutdown can close them all."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[SessionSpace] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, space: SessionSpace) -> None:
        with self._lock:
            self._sessions.add(space)

    def shut_down(self) -> None:
        """Interrupt every session's running computation, then close each workspace and remove its folder.

        Runs at interpreter exit (after a SIGTERM, Streamlit stops its server and returns from main), while the
        script threads, which are daemons, may still be inside a DuckDB call: left there, they would be killed
        in the middle of C++ code and abort the process.
        """
        with self._lock:
            sessions = list(self._sessions)
        for space in sessions:
            space.workspace.interrupt()
        for space in sessions:
            space.release()


@st.cache_resource(show_spinner=False)
def session_registry() -> SessionRegistry:
    """Once per server process: sweep folders left by earlier servers and register the shutdown hook."""
    registry = SessionRegistry()
    removed = sweep_session_folders(session_root(), max_age_hours())
    if removed:
        _LOGGER.info("Removed %d abandoned session folder(s) from %s", len(removed), session_root())
    atexit.register(registry.shut_down)
    return registry


_NEW_SESSION = threading.Lock()


def session_space() -> SessionSpace:
    """This session's folder and workspace, created on first use."""
    if "session_space" not in st.session_state:
        # Two quick first runs of one session must not both create one: the loser's would be closed under it.
        with _NEW_SESSION:
            if "session_space" not in st.session_state:
                space = SessionSpace(session_root())
                session_registry().add(space)
                st.session_state["session_space"] = space
    return st.session_state["session_space"]


def workspace() -> Workspace:
    """This session's workspace."""
    return session_space().workspace


def upload_suffix(name: str) -> str:
    """The extension an upload is stored with: the browser's file name's, if it is one the app reads, else none."""
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix if suffix in UPLOAD_SUFFIXES else ""


def save_upload(name: str, data: bytes | memoryview, *, folder: Path | None = None) -> Path:
    """Store an upload in this session's uploads folder (or ``folder``) and return its path.

    The path never contains the browser-sent ``name`` (it could be ``../../x``): the file gets a generated name
    plus an allowed extension. The Data page reads one file at a time, so earlier uploads are deleted.
    """
    folder = folder or session_space().uploads
    for earlier in folder.iterdir():
        earlier.unlink(missing_ok=True)
    path = folder / (uuid.uuid4().hex + upload_suffix(name))
    with open(path, "xb") as handle:
        handle.write(data)
    return path


def load_demo() -> None:
    """Load the bundled demo file into this session's workspace."""
    space = session_space()
    with space.loading:  # stage and build together: another run must not stage in between
        space.workspace.ingest(DEMO_FILE, original_name=DEMO_NAME)
        space.staged = None  # loading replaced the staged upload's rows


def ensure_first_run_demo() -> None:
    """On a session's first run, load the demo so every page has data to show."""
    if not st.session_state.get("demo_checked"):
        st.session_state["demo_checked"] = True
        if not workspace().has_dataset:
            with st.spinner("Loading the demo data..."):
                load_demo()


def require_dataset():
    """The loaded dataset, or a friendly stop on pages that need one."""
    ws = workspace()
    if not ws.has_dataset:
        st.info("No data loaded yet. Go to the **Data** page to load the demo data or upload a file.")
        st.stop()
    return ws.dataset


def stage_upload(path: str | Path, name: str, *, sheets: list[str] | None = None,
                 header_row: int | None = None) -> StagedFile:
    """The upload read into this session's workspace; read again only when the file, the sheets or the header
    row (None: detect it) change, or once it has been loaded."""
    key = (str(path), tuple(sheets or ()), header_row)
    space = session_space()
    with space.loading:
        if space.staged is None or key not in space.staged[0]:
            with st.spinner(f"Reading {plain(name)}..."):
                staged = space.workspace.stage_file(path, original_name=name, sheets=sheets, header_row=header_row)
                # Choosing the row that was detected is the same reading: the file is not read again.
                space.staged = ({key, key[:2] + (staged.info.header_row,)}, staged)
                if header_row is None and staged.info.header_row is not None:
                    space.detected_header_rows[key[:2]] = staged.info.header_row
        return space.staged[1]


def detected_header_row(path: str | Path, sheets: list[str] | None) -> int | None:
    """The sheet row that holds the column names, as detected when ``sheets`` of the upload were first read."""
    return session_space().detected_header_rows.get((str(path), tuple(sheets or ())))


def build_upload(staged: StagedFile, mapping: ColumnMapping, options: IngestOptions) -> bool:
    """Validate the staged upload into the session's dataset; False when an overlapping run (a double click)
    already did: the staged rows are gone once built."""
    space = session_space()
    with space.loading:
        if space.staged is None or space.staged[1] is not staged:
            return False
        space.workspace.build(staged, mapping, options)
        space.staged = None
        return True


@st.cache_data(max_entries=32, show_spinner=False)
def cached_summary(fingerprint: str, _ws: Workspace) -> summary_module.DatasetSummary:
    return summary_module.dataset_summary(_ws)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_revenue_by_month(fingerprint: str, _ws: Workspace) -> pd.DataFrame:
    return summary_module.revenue_by_month(_ws)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_cohorts(fingerprint: str, _ws: Workspace, period: str, definition: str, segment: str | None,
                   label: str | None, labels_version: str | None, start: pd.Timestamp, end: pd.Timestamp,
                   min_cohort_size: int):
    """The cohort table; split by ``label``, keyed by the version of the stored labels too."""
    from clm_core.cohorts import cohort_table

    return cohort_table(_ws, period=period, definition=definition, segment=segment, label=label, start=start,
                        end=end, min_cohort_size=min_cohort_size)


class FitAttempt(NamedTuple):
    """A CLV fit as the page met it: (summary, fitted models) or the user-facing error, and how long it took."""

    result: tuple | None
    error: Exception | None
    seconds: float


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clv_fit_attempt(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str,
                           calibration_end) -> FitAttempt:
    """The fit of :func:`cached_clv_fit`, with a failure kept too: a model that does not converge is not tried
    again on every rerun (a failed Pareto/NBD fit can take many seconds)."""
    from clm_core import clv
    from clm_core.errors import ClmError

    started = time.perf_counter()
    try:
        summary = clv.customer_summary(_ws, unit=unit, calibration_end=calibration_end)
        weeks = (cached_clv_fit_attempt(fingerprint, _ws, purchase_model, "week", calibration_end) if unit != "week"
                 else None)
        if weeks is not None and weeks.error is None:  # the same estimate, converted: no new search
            fitted = clv.in_time_unit(weeks.result[1], summary)
        else:
            fitted = clv.fit_clv_models(summary, purchase_model=purchase_model, with_spend=_ws.dataset.has_money)
    except ClmError as error:
        return FitAttempt(None, error, time.perf_counter() - started)
    return FitAttempt((summary, fitted), None, time.perf_counter() - started)


def cached_clv_fit(fingerprint: str, ws: Workspace, purchase_model: str, unit: str, calibration_end):
    """(customer summary, fitted models) for a dataset and settings; fitted once, shared by the page's views.
    Raises the fit's :class:`ClmError` (kept in the cache, so a failure is not refitted)."""
    attempt = cached_clv_fit_attempt(fingerprint, ws, purchase_model, unit, calibration_end)
    if attempt.error is not None:
        raise type(attempt.error)(*attempt.error.args)
    return attempt.result


@st.cache_data(max_entries=8, show_spinner=False)
def cached_customer_table(fingerprint: str, _ws: Workspace) -> pd.DataFrame:
    """The customer table at the end of the data, without attributes (first and last purchase, orders...): the
    full table's other columns, so one read of the data serves the pages that want either."""
    dataset = _ws.dataset
    attributes = [*dataset.segment_columns.values(), *dataset.contact_columns.values()]
    return cached_full_customer_table(fingerprint, _ws).drop(columns=attributes)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_export_customers(fingerprint: str, _ws: Workspace) -> pd.DataFrame:
    """What the CLV export adds to the predictions (dates, orders, revenue, contact columns): one read per
    dataset, so a new horizon or margin only re-scores."""
    from clm_core.clv import export_customers

    return export_customers(_ws)


# The Predictive CLV tab's settings until changed: horizon in months, monthly discount rate and margin in percent.
CLV_HORIZON_MONTHS = 12
CLV_MONTHLY_DISCOUNT_PCT = 1.0
CLV_MARGIN_PCT = 100.0


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clv_scores(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str, horizon_months: int,
                      monthly_discount_rate: float, margin: float):
    """The CLV forecast over the whole history (total, its interval); its ``scores`` are the per-customer
    export table (:func:`clm_core.clv.customer_export`: contact columns, plain dates and counts, predictions,
    model columns), highest CLV first."""
    from clm_core import clv

    summary, fitted = cached_clv_fit(fingerprint, _ws, purchase_model, unit, None)
    forecast = clv.predict_clv(summary, fitted, horizon_months=horizon_months,
                               monthly_discount_rate=monthly_discount_rate, margin=margin)
    forecast.scores = clv.customer_export(_ws, summary, forecast.scores, cached_export_customers(fingerprint, _ws))
    return forecast


@st.cache_data(max_entries=16, show_spinner=False)
def cached_labelled_clv_scores(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str, horizon_months: int,
                               monthly_discount_rate: float, margin: float, choice: LabelChoice) -> pd.DataFrame:
    """:func:`cached_clv_scores`' per-customer table with segment and stage columns, of the customers ``choice``
    keeps."""
    scores = cached_clv_scores(fingerprint, _ws, purchase_model, unit, horizon_months, monthly_discount_rate,
                               margin).scores
    return with_customer_labels(fingerprint, _ws, scores, choice)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_clv_download(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str, horizon_months: int,
                        monthly_discount_rate: float, margin: float, choice: LabelChoice, file_format: str) -> bytes:
    """The per-customer CLV file (``csv`` or ``xlsx``) of the customers ``choice`` keeps, built when first asked
    for and kept per dataset and settings (the Excel file of 23,570 customers takes seconds)."""
    from clm_core.export import to_csv_bytes, to_excel_bytes

    scores = cached_labelled_clv_scores(fingerprint, _ws, purchase_model, unit, horizon_months, monthly_discount_rate,
                                        margin, choice)
    return to_csv_bytes(scores) if file_format == "csv" else to_excel_bytes({"customer_clv": scores})


@st.cache_data(max_entries=16, show_spinner=False)
def cached_probability_alive(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str) -> pd.DataFrame:
    """The probability-alive grid (repeat purchases x time of the last purchase) of the whole-history fit."""
    from clm_core.clv import probability_alive_matrix

    summary, fitted = cached_clv_fit(fingerprint, _ws, purchase_model, unit, None)
    return probability_alive_matrix(summary, fitted)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_customer_counts(fingerprint: str, _ws: Workspace) -> dict[str, int]:
    """Customers in the data, those with only returns, and those whose every purchase returns cancelled: why the
    CLV page scores fewer customers than the Data page counts."""
    table = cached_customer_table(fingerprint, _ws)
    bought = table["lines"] > table["return_lines"]
    return {
        "customers": len(table),
        "with_purchases": int((table["purchase_days"] > 0).sum()),
        "only_returns": int((~bought).sum()),
        "all_cancelled": int((bought & (table["purchase_days"] == 0)).sum()),
    }


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clv_diagnostics(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str) -> list:
    """The checks of the whole-history fit (drop-out identified, spend independent of frequency, convergence)."""
    from clm_core.clv_diagnostics import diagnose

    summary, fitted = cached_clv_fit(fingerprint, _ws, purchase_model, unit, None)
    return diagnose(summary, fitted)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clv_check(fingerprint: str, _ws: Workspace, purchase_model: str, unit: str, calibration_end) -> dict:
    """The holdout check of a calibration fit: totals, by-frequency table, tracking curve, spend check."""
    from clm_core import clv

    summary, fitted = cached_clv_fit(fingerprint, _ws, purchase_model, unit, calibration_end)
    check = {
        "summary": summary,
        "fitted": fitted,
        "totals": clv.holdout_totals(summary, fitted),
        "by_frequency": clv.holdout_by_frequency(summary, fitted),
        "tracking": clv.tracking_curve(_ws, summary, fitted),
        "spend": None,
    }
    if fitted.spend is not None and summary.frame["holdout_purchases"].sum() > 0:
        check["spend"] = clv.holdout_spend(summary, fitted)
    return check


@st.cache_data(max_entries=32, show_spinner=False)
def cached_calculator_prefill(fingerprint: str, _ws: Workspace) -> dict:
    from clm_core.clv_calculator import prefill_from_workspace

    return prefill_from_workspace(_ws)


def money(value: float | None, digits: int = 0) -> str:
    """A money figure for people: '8,278,519' or 'n/a'; one that rounds to 0 but is not 0 with its cents
    ('-0.49', not '-0')."""
    if value is None:
        return "n/a"
    if value != 0 and round(value, digits) == 0:
        digits = max(digits, 2)
    return f"{value:,.{digits}f}"


@st.cache_data(max_entries=16, show_spinner=False)
def cached_churn_horizon(fingerprint: str, _ws: Workspace):
    """(suggested horizon in days, each repeat customer's usual gap) for a dataset."""
    from clm_core.churn import suggest_horizon

    return suggest_horizon(_ws, cached_customer_table(fingerprint, _ws))  # the table the CLV page reads too


@st.cache_data(max_entries=32, show_spinner=False)  # every horizon of a dataset the page offers, and a few more
def cached_churn(fingerprint: str, _ws: Workspace, horizon_days: int, cutoff, model: str | None):
    """Churn models trained, checked and every customer scored, for a dataset and settings; another model
    re-scores with the models already trained."""
    from clm_core.churn import churn_from_workspace, with_model

    if model is not None:
        return with_model(cached_churn(fingerprint, _ws, horizon_days, cutoff, None), model)
    return churn_from_workspace(_ws, horizon_days=horizon_days, cutoff=cutoff,
                                table=cached_full_customer_table(fingerprint, _ws))


@st.cache_data(max_entries=16, show_spinner=False)
def cached_customer_value(fingerprint: str, _ws: Workspace):
    """(12-month CLV per customer id or None, how it was made in words): :func:`clm_core.churn.customer_value`,
    from the CLV fit the other pages share."""
    from clm_core.churn import customer_value

    return customer_value(_ws, predictions=lambda: cached_clv_predictions(fingerprint, _ws))


@st.cache_data(max_entries=8, show_spinner=False)
def cached_churn_table(digest: str, _table: pd.DataFrame, label: str, features: tuple[str, ...]):
    """Churn models on a labelled customer table (keyed by the file's digest and the choices)."""
    from clm_core.churn import churn_from_table

    return churn_from_table(_table, label, features=list(features) or None)


def read_customer_table(name: str, data: bytes) -> pd.DataFrame:
    """A labelled customer table uploaded on the Churn page (read from its bytes; the name only picks the format)."""
    from clm_core.churn import read_customer_table as read

    return read(data, name=name)


def digest_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# --- recommendations, next best action, the customer page -------------------------------------------------------

# Products per customer the Recommendations page lists first: that list is made while the offline check runs.
FIRST_TOP = 10


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_recommendation_model(fingerprint: str, _ws: Workspace, segment: str | None):
    """(the offline check, the recommender fitted on all the data with the method the check chose, the page's
    first list or None): the check and the fit are independent until the method is set, so they run side by side,
    and the fit's side goes on to the personalised list of ``FIRST_TOP`` products per customer (as the data
    suggest about repeats) while the check still runs; it is kept when the check chooses personalised
    recommendations (shared: never mutated)."""
    from concurrent.futures import ThreadPoolExecutor

    from clm_core.errors import DataRangeError
    from clm_core.recommend import CF, POPULARITY, build_recommender, evaluate

    def fit_and_list():
        recommender = build_recommender(_ws, segment=segment, method=CF)
        return recommender, recommender.recommend(top=FIRST_TOP)

    with ThreadPoolExecutor(max_workers=2) as pool:
        checking = pool.submit(evaluate, _ws, segment=segment)
        fitting = pool.submit(fit_and_list)
        recommender, first = fitting.result()
        try:
            evaluation = checking.result()
        except DataRangeError as error:  # too little history to check: the simpler list, said why
            return None, recommender.set_params(
                method=POPULARITY, method_reason=f"The most popular products: personalised ones cannot be checked "
                                                 f"on this data. {error}"), None
    return (evaluation, recommender.set_params(method=evaluation.chosen, method_reason=evaluation.reason),
            first if evaluation.chosen == CF else None)


def cached_recommend_evaluation(fingerprint: str, ws: Workspace, segment: str | None):
    """The offline check of recommendations (personalised against popularity, last 3 months held out); None when
    the data are too short to check (the recommender's ``method_reason`` says so)."""
    return cached_recommendation_model(fingerprint, ws, segment)[0]


def cached_recommender(fingerprint: str, ws: Workspace, segment: str | None):
    """The recommender fitted on all the data, its method the one the offline check chose (whether own products
    are included is a choice at ranking time, not a refit)."""
    return cached_recommendation_model(fingerprint, ws, segment)[1]


@st.cache_data(max_entries=16, show_spinner=False)
def cached_recommendations(fingerprint: str, _ws: Workspace, segment: str | None, include_repeats: bool | None,
                           top: int) -> pd.DataFrame:
    """The ``top`` recommendations of every customer (``include_repeats`` None: as the data suggest). Not a slice
    of a longer list: own products fill at most half of each list, so a shorter list is ranked anew."""
    _, recommender, first = cached_recommendation_model(fingerprint, _ws, segment)
    if first is not None and include_repeats is None and top == FIRST_TOP:
        return first
    return recommender.recommend(top=top, include_repeats=include_repeats)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_bought_together(fingerprint: str, _ws: Workspace, product: str | None, min_orders: int) -> pd.DataFrame:
    """Products bought together with ``product`` (None: every product's top partners)."""
    from clm_core.recommend import bought_together

    return bought_together(_ws, product, min_orders=min_orders, top=10 if product else 3)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_product_names(fingerprint: str, _ws: Workspace) -> pd.Series:
    """Each product's shown name (id -> name), for the product pickers."""
    from clm_core.customers import data_span

    names = _ws.query("product_names", end=data_span(_ws)[1]).set_index("product")["product_name"]
    return names.where(names.notna(), names.index.to_series())


@st.cache_data(max_entries=8, show_spinner=False)
def cached_full_customer_table(fingerprint: str, _ws: Workspace) -> pd.DataFrame:
    """The customer table at the end of the data with its segment and contact columns (the customer page and the
    next best action read it)."""
    from clm_core.customers import customer_table

    return customer_table(_ws)


def churn_for_other_pages(fingerprint: str, ws: Workspace):
    """The churn result at the horizon the Churn risk page uses in this session (its suggestion until changed),
    with the best model: the same cached result that page shows."""
    return cached_churn(fingerprint, ws, churn_horizon_in_use(fingerprint, ws), None, None)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_clv_predictions(fingerprint: str, _ws: Workspace) -> pd.DataFrame:
    """Per customer, BG/NBD and Gamma-Gamma's probability alive, expected order value and 12-month CLV (1 % a month
    discount) over the whole history: what the next best action and the segments read of the CLV models."""
    from clm_core import clv

    summary, fitted = cached_clv_fit(fingerprint, _ws, "bgnbd", "week", None)
    return clv.predict_clv(summary, fitted).scores


@st.cache_data(max_entries=8, show_spinner=False)
def cached_action_customers(fingerprint: str, _ws: Workspace, churn_horizon: int | None) -> tuple[pd.DataFrame,
                                                                                                 list[str]]:
    """The customers the next best action reads: the customer table with the churn risk (at ``churn_horizon``,
    None: none) and the 12-month CLV where the models give them; and notes on what could not be used."""
    from clm_core import actions, churn
    from clm_core.errors import ClmError

    notes = []
    customers = cached_full_customer_table(fingerprint, _ws)
    churn_scores = clv_scores = None
    if churn_horizon is not None:
        try:
            result = cached_churn(fingerprint, _ws, churn_horizon, None, None)
            churn_scores = result.scores[["customer_id"]].assign(
                risk=churn.chance_of_leaving(result.scores["risk"], predictive=result.predictive).to_numpy())
            if not result.predictive:
                notes.append("The churn models did no better than chance here, so risk is read from how overdue "
                             "each customer is against their usual gap.")
        except ClmError as error:
            notes.append(f"Churn risk is not used: {error}")
    try:
        clv_scores = cached_clv_predictions(fingerprint, _ws)
    except ClmError as error:
        notes.append(f"Customer value is not the CLV model's: {error}")
    return actions.with_model_scores(customers, churn=churn_scores, clv=clv_scores), notes


@st.cache_data(max_entries=16, show_spinner=False)
def cached_next_best_actions(fingerprint: str, _ws: Workspace, churn_horizon: int | None,
                             rules: pd.DataFrame) -> pd.DataFrame:
    """One action per customer under ``rules``; cross-sells name each customer's top product they have not
    bought (when the file has products)."""
    from clm_core.actions import next_best_actions

    customers, _ = cached_action_customers(fingerprint, _ws, churn_horizon)
    recommendations = (cached_recommendations(fingerprint, _ws, None, False, 1)
                       if _ws.dataset.has_products else None)
    return next_best_actions(customers, rules, recommendations=recommendations)


def action_rules(fingerprint: str, ws: Workspace) -> pd.DataFrame:
    """The rules of the next best action in this session: as last edited on the Recommendations page, else the
    defaults for this dataset."""
    edited = st.session_state.get(f"nba_rules_{fingerprint}")
    return edited if edited is not None else default_action_rules(fingerprint, ws)


def default_action_rules(fingerprint: str, ws: Workspace) -> pd.DataFrame:
    """The next best action's rules before anyone edits them, for this dataset."""
    from clm_core.actions import default_rules

    return default_rules(cached_action_customers(fingerprint, ws, None)[0])


# The Churn risk page's horizons are every CHURN_HORIZON_STEP days (every 7 on data too short for three such steps)
# and the suggestion: few enough to be trained ahead, and the 30/60/90 days campaigns are planned in.
CHURN_HORIZON_STEP = 15
# A chosen check date moves in steps of this many days.
CHURN_CHECK_STEP = 30
# The horizons (or check dates) trained ahead around the one shown, nearest first: six steps either side, each
# about 10 MB of cache and 1-2 s of a core at CDNOW master's 23,570 customers; above CHURN_PREPARE_FAR_UP_TO
# customers only the one step either side.
CHURN_PREPARED = 12
CHURN_PREPARE_FAR_UP_TO = 50_000


def churn_horizons(fingerprint: str, ws: Workspace) -> tuple[list[int], int]:
    """(the horizons the Churn risk page offers, in days: every :data:`CHURN_HORIZON_STEP` days up to the longest
    the data can train and check (a horizon needs twice its length of data, and one day), and the suggestion; the
    one the page starts with: the suggestion, at most that longest)."""
    suggested, _ = cached_churn_horizon(fingerprint, ws)
    summary = cached_summary(fingerprint, ws)
    longest = max(7, ((summary.last_date - summary.first_date).days - 1) // 2)
    step = CHURN_HORIZON_STEP if longest >= 3 * CHURN_HORIZON_STEP else 7
    start = min(suggested, longest)
    return sorted({*range(step, longest + 1, step), start}), start


def churn_horizon_in_use(fingerprint: str, ws: Workspace) -> int:
    """The churn horizon the Churn risk page uses in this session (where it starts until changed)."""
    return int(st.session_state.get(f"churn_horizon_{fingerprint}", churn_horizons(fingerprint, ws)[1]))


# --- preparing a dataset ahead of the user -------------------------------------------------------------------------
# "0" turns it off (a server with many users and little CPU to spare).
PREPARE_ENV = "CLM_PREPARE_AHEAD"


def prepare_ahead(fingerprint: str, ws: Workspace) -> threading.Thread | None:
    """Once per session and dataset, compute in a background thread what the pages show first, then what their
    few-choice controls show (:func:`_preparations`), so a page or a control reached later is a re-render; the
    thread, or None when nothing was started. Every step is a cached function the pages call with the same
    arguments: a page reached before its step waits for it (one computation per key) instead of doing it twice.
    A step holds the dataset (:meth:`Workspace.dataset_held`): a load waits for it to end, so nothing computed
    from one file is kept under another's fingerprint; the thread stops when another dataset is loaded or the
    session ends."""
    if not _preparing() or st.session_state.get("prepared_fingerprint") == fingerprint:
        return None
    st.session_state["prepared_fingerprint"] = fingerprint
    return _prepare_in_background(fingerprint, ws, lambda: _preparations(fingerprint, ws))


def churn_check_dates(fingerprint: str, ws: Workspace, horizon: int) -> list[date]:
    """The check dates the Churn risk page offers for ``horizon``, oldest first: every
    :data:`CHURN_CHECK_STEP` days back from the latest (the last day of the data less the horizon: a horizon to
    check on after it) to the earliest that leaves a horizon, and a day, to train on before it."""
    summary = cached_summary(fingerprint, ws)
    latest = summary.last_date.date() - timedelta(days=horizon)
    earliest = summary.first_date.date() + timedelta(days=horizon + 1)
    steps = max(0, (latest - earliest).days // CHURN_CHECK_STEP)
    return [latest - timedelta(days=CHURN_CHECK_STEP * back) for back in range(steps, -1, -1)]


@contextmanager
def churn_prepared_around(fingerprint: str, ws: Workspace, horizon: int, check_date: date | None) -> Iterator[None]:
    """Around the Churn risk page's computation of ``horizon`` with the default check date (``check_date`` None):
    the horizons it offers nearest to it (and, third, the check date one step earlier); with a chosen
    ``check_date``, the check dates it offers nearest to that one: trained in the background, nearest first, once
    each per session, so the next move answers at once. The :data:`CHURN_PREPARED` nearest (on more customers
    than :data:`CHURN_PREPARE_FAR_UP_TO`, the one step either side); a setting reached before its turn is trained
    when asked, under a spinner. They replace what was waiting at once, but the background thread takes the first
    of them only once the page has its own result: until then it ends the setting it is on and waits, so the
    page's computation has the cores (a churn setting trained beside another took 40 to 50 % longer)."""
    prepared = _churn_queue(fingerprint, ws, horizon, check_date)
    if prepared is None:
        yield
        return
    queue, wanted = prepared
    with queue.held():
        start = queue.replace(wanted)
        try:
            yield
        finally:
            if start:  # no thread worked through the queue: one is started, and waits for the hold to end
                _prepare_in_background(fingerprint, ws, lambda: queue)


def _churn_queue(fingerprint: str, ws: Workspace, horizon: int, check_date: date | None) -> tuple[_Queue, list] | None:
    """The session's churn preparation queue for the dataset, and the settings to prepare around the one shown
    (None when nothing is to be prepared)."""
    if not _preparing():
        return None
    if check_date is None:
        options, here = churn_horizons(fingerprint, ws)[0], horizon

        def settings(other):
            return other, None
    else:
        options, here = churn_check_dates(fingerprint, ws, horizon), check_date

        def settings(other):  # the latest date is the default check date: the page asks for it as None
            return horizon, None if other == options[-1] else other
    if here not in options:
        return None
    at = options.index(here)
    steps = {other: abs(place - at) for place, other in enumerate(options) if other != here}
    nearest = sorted(steps, key=steps.get)  # stable: of two as near, the smaller first
    nearest = nearest[:CHURN_PREPARED] if cached_summary(fingerprint, ws).customers <= CHURN_PREPARE_FAR_UP_TO \
        else [other for other in nearest if steps[other] == 1]
    wanted = [settings(other) for other in nearest]
    if check_date is None:  # and the check date one step earlier, where the check date's control starts
        dates = churn_check_dates(fingerprint, ws, horizon)
        wanted[2:2] = [(horizon, dates[-2])] if len(dates) > 1 else []
    known = st.session_state.get("churn_preparation")
    if known is None or known[0] != fingerprint:
        known = st.session_state["churn_preparation"] = (fingerprint, _Queue(
            lambda setting: cached_churn(fingerprint, ws, setting[0], setting[1], None)))
    return known[1], wanted


class _Queue:
    """Settings to prepare one after the other by ``prepare(setting)``, the waiting ones replaced by each newer
    wish (what is nearest to the page as shown now comes first), each prepared once; iterated by the one thread
    working through it."""

    def __init__(self, prepare) -> None:
        self._prepare = prepare
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._waiting: list = []
        self._done: set = set()
        self._working = False
        self._holds = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """While held, the thread working through the queue takes no next setting (it ends the one it is on)."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                self._released.notify_all()

    def replace(self, settings: list) -> bool:
        """Wait for ``settings`` (those not prepared yet) instead of what was waiting; True when no thread works
        through the queue and one must be started."""
        with self._lock:
            self._waiting = [setting for setting in settings if setting not in self._done]
            start = bool(self._waiting) and not self._working
            self._working = self._working or start
            return start

    def __iter__(self):
        emptied = False
        try:
            while True:
                with self._lock:
                    while self._holds:
                        self._released.wait()
                    if not self._waiting:
                        self._working, emptied = False, True  # in the lock: a wish after it starts a thread
                        return
                    setting = self._waiting.pop(0)
                    self._done.add(setting)  # a failure is not tried again: the page says why when asked
                yield lambda setting=setting: self._prepare(setting)
        finally:
            if not emptied:  # the thread stopped early (another file loaded, the session ended)
                with self._lock:
                    self._working = False


def _preparing() -> bool:
    return os.environ.get(PREPARE_ENV, "1").strip() != "0"


def _prepare_in_background(fingerprint: str, ws: Workspace, steps) -> threading.Thread:
    thread = threading.Thread(target=_prepare, args=(fingerprint, ws, steps), name="clm-prepare", daemon=True)
    thread.start()
    return thread


def _lower_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux: a thread's own nice value), so preparing ahead
    takes the cores only when the user's own page runs leave them free."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: the thread runs at the usual priority
        pass


def _prepare(fingerprint: str, ws: Workspace, steps) -> None:
    """Run ``steps()``'s steps one after the other (making the list is a step too), each holding the dataset,
    while it is still the one of ``fingerprint``; a step that fails is left to the page that needs it."""
    _lower_priority()
    wait_for_imports()  # never import the model modules beside the warm-up thread
    planned: list = []  # the steps: a list, or a queue that changes while it is worked through (taken in turn)
    if not _prepare_step(fingerprint, ws, lambda: planned.append(steps())):
        return
    for step in planned[0]:
        if not _prepare_step(fingerprint, ws, step):
            return


def _prepare_step(fingerprint: str, ws: Workspace, step) -> bool:
    """Run one step holding the dataset; False when the preparation is to stop: another file was loaded, the
    session ended or the server is stopping. A failure of the step itself is logged, and the next steps run."""
    from clm_core.errors import ClmError

    try:
        with ws.dataset_held():
            if not ws.has_dataset or ws.dataset.fingerprint != fingerprint:
                return False  # another file was loaded
            step()
    except duckdb.ConnectionException:
        return False  # the session ended: its workspace is closed
    except ClmError as error:  # what the data cannot support: the page says so when opened
        _LOGGER.debug("Preparing %s: %s", fingerprint, error)
    except Exception as error:  # noqa: BLE001 - not the user's to see: the page computes it again when opened
        if isinstance(error, RuntimeError) and "interpreter shutdown" in str(error):
            return False  # the server is stopping: a step's thread pool is closed
        _LOGGER.warning("Preparing a page ahead failed", exc_info=True)
    return True


def _preparations(fingerprint: str, ws: Workspace) -> list:
    """The steps, in the order of the pages (CLV, churn, recommendations and the customer page, segments), first
    what each shows when opened, then the results of its controls with few choices: the other purchase model and
    time unit and the default model check (CLV), the importance of the other churn models, the k-means run (which
    scores every k of its range, so a k picked later is quick)."""
    from clm_core.churn import MODEL_NAMES
    from clm_core.clv import default_calibration_end
    from clm_core.customers import data_span
    from clm_core.segments import StageSettings, default_segment_rules, validate_segment_rules

    dataset = ws.dataset
    first, last = data_span(ws)
    discount, margin = CLV_MONTHLY_DISCOUNT_PCT / 100, CLV_MARGIN_PCT / 100

    def clv(model: str, unit: str):
        return lambda: (cached_clv_scores(fingerprint, ws, model, unit, CLV_HORIZON_MONTHS, discount, margin),
                        cached_probability_alive(fingerprint, ws, model, unit))

    def churn(model: str | None):
        return lambda: cached_churn(fingerprint, ws, churn_horizons(fingerprint, ws)[1], None, model)

    def actions():
        horizon = churn_horizons(fingerprint, ws)[1]
        return cached_next_best_actions(fingerprint, ws, horizon, default_action_rules(fingerprint, ws))

    settings = dataclasses.astuple(StageSettings())
    calibration_end = default_calibration_end(first, last)

    def labels():
        if ws.customer_labels_info() is None:  # stored as the pages store them on first use
            ws.store_customer_labels(*_cached_standard_labels(fingerprint, ws))

    steps = [
        lambda: cached_full_customer_table(fingerprint, ws),
        lambda: cached_customer_table(fingerprint, ws),
        labels,
        lambda: cached_customer_counts(fingerprint, ws),
        clv("bgnbd", "week"),
        lambda: cached_clv_diagnostics(fingerprint, ws, "bgnbd", "week"),
        lambda: cached_clv_check(fingerprint, ws, "bgnbd", "week", calibration_end),
        clv("pareto", "week"),
        clv("bgnbd", "day"),
        churn(None),
        lambda: cached_customer_value(fingerprint, ws),
    ]
    if dataset.has_products:
        steps.append(lambda: cached_recommendations(fingerprint, ws, None, None, FIRST_TOP))
    steps += [
        actions,
        lambda: cached_segments(fingerprint, ws, last, validate_segment_rules(default_segment_rules()), settings,
                                False),
        lambda: cached_stage_history(fingerprint, ws, settings),
        *[churn(model) for model in MODEL_NAMES],
        lambda: cached_clusters(fingerprint, ws, last, "kmeans", None, (2, 8), (), 0.5, 10),
    ]
    return steps


# --- segments and lifecycle stages -------------------------------------------------------------------------------

@st.cache_resource(max_entries=8, show_spinner=False)
def cached_purchase_timeline(fingerprint: str, _ws: Workspace):
    """Every purchase day once (netted of returns), what the stage history and flows are evaluated on."""
    from clm_core.segments import purchase_timeline

    return purchase_timeline(_ws)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_customer_table_at(fingerprint: str, _ws: Workspace, as_of) -> pd.DataFrame:
    """The customer table (with attributes) as of a day."""
    from clm_core.customers import customer_table, data_span

    if as_of == data_span(_ws)[1]:
        return cached_full_customer_table(fingerprint, _ws)
    return customer_table(_ws, as_of)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_segments(fingerprint: str, _ws: Workspace, as_of, rules: pd.DataFrame, settings: tuple,
                    with_models: bool):
    """RFM scores, segments and lifecycle stages as of ``as_of``; ``with_models``: the CLV models' probability
    alive and CLV join the stage rules and the profiles (at the end of the data only)."""
    from clm_core.customers import data_span
    from clm_core.errors import ClmError
    from clm_core.segments import StageSettings, segment_customers

    table = cached_customer_table_at(fingerprint, _ws, as_of)
    notes = []
    if with_models:
        try:
            scores = cached_clv_predictions(fingerprint, _ws)
            columns = [column for column in ("probability_alive", "clv") if column in scores]
            table = table.merge(scores[["customer_id", *columns]], on="customer_id", how="left")
        except ClmError as error:
            notes.append(f"The CLV models could not be used: {error}")
    last = data_span(_ws)[1]
    timeline = cached_purchase_timeline(fingerprint, _ws) if as_of == last else None
    result = segment_customers(_ws, as_of=as_of, table=table, rules=rules, settings=StageSettings(*settings),
                               timeline=timeline)
    result.notes = [*notes, *result.notes]
    return result


@st.cache_data(max_entries=16, show_spinner=False)
def cached_stage_history(fingerprint: str, _ws: Workspace, settings: tuple) -> pd.DataFrame:
    from clm_core.segments import StageSettings, stage_history

    return stage_history(_ws, settings=StageSettings(*settings), timeline=cached_purchase_timeline(fingerprint, _ws))


@st.cache_data(max_entries=32, show_spinner=False)
def cached_stage_flows(fingerprint: str, _ws: Workspace, start, end, settings: tuple) -> pd.DataFrame:
    from clm_core.customers import data_span
    from clm_core.segments import StageSettings, stage_flows

    timeline = cached_purchase_timeline(fingerprint, _ws) if end == data_span(_ws)[1] else None
    return stage_flows(_ws, start, end, settings=StageSettings(*settings), timeline=timeline)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_clusters(fingerprint: str, _ws: Workspace, as_of, method: str, k: int | None, k_range: tuple,
                    features: tuple, eps: float, min_samples: int):
    from clm_core.errors import ClmError
    from clm_core.segments import cluster_customers

    known = None
    if method == "kmeans" and k is not None and k_range[0] <= k <= k_range[1]:
        # The page's first run (the best k) scored every k of the range: a chosen one needs no new silhouette.
        try:
            known = cached_clusters(fingerprint, _ws, as_of, method, None, k_range, features, eps,
                                    min_samples).silhouette
        except ClmError:  # that run is refused (too few customers...): the chosen k says why on its own
            pass
    return cluster_customers(cached_customer_table_at(fingerprint, _ws, as_of), method=method, k=k, k_range=k_range,
                             features=list(features), eps=eps, min_samples=min_samples, known_silhouettes=known)


# --- customer labels (segments and stages) on every page --------------------------------------------------------

class LabelChoice(NamedTuple):
    """The segments and stages a page keeps (empty: all) and the version of the labels they refer to."""

    segments: tuple[str, ...]
    stages: tuple[str, ...]
    version: str


@st.cache_data(max_entries=8, show_spinner=False)
def _cached_standard_labels(fingerprint: str, _ws: Workspace) -> tuple[pd.DataFrame, str]:
    from clm_core.segments import standard_labels

    return standard_labels(_ws, cached_full_customer_table(fingerprint, _ws))


@st.cache_data(max_entries=8, show_spinner=False)
def _cached_stored_labels(fingerprint: str, _ws: Workspace, version: str) -> pd.DataFrame:
    from clm_core.segments import stored_labels

    return stored_labels(_ws)


def customer_labels(fingerprint: str, ws: Workspace) -> tuple[pd.DataFrame, str, str]:
    """(labels, note, version): the segments and stages stored in this session's workspace (the Segments page's
    choice); until the user chooses, the standard ones, computed once per dataset and stored in the workspace (so
    its queries see them too)."""
    from clm_core.errors import ClmError

    info = ws.customer_labels_info()
    try:
        if info is None:
            with st.spinner("Sorting customers into RFM segments and lifecycle stages..."):
                labels, note = _cached_standard_labels(fingerprint, ws)
            return labels, note, ws.store_customer_labels(labels, note)
        return _cached_stored_labels(fingerprint, ws, info[1]), info[0], info[1]
    except ClmError as error:  # the pages go on without segments, saying why
        return pd.DataFrame({"customer_id": pd.Series(dtype=str)}), f"no segments on this data ({error})", "none"


def _label_options(values: pd.Series, order: tuple[str, ...]) -> list[str]:
    present = set(values.dropna().astype(str))
    return [name for name in order if name in present] + sorted(present.difference(order))


def label_filters(prefix: str, fingerprint: str, ws: Workspace, container=None) -> LabelChoice:
    """Two filters, RFM segment and lifecycle stage, with a caption saying which labels they are."""
    from clm_core.segments import SEGMENTS, STAGES

    container = container or st
    labels, note, version = customer_labels(fingerprint, ws)
    if "rfm_segment" not in labels:
        container.caption(f"Segments and stages: {plain(note)}.")
        return LabelChoice((), (), version)
    columns = container.columns(2)
    segments = columns[0].multiselect(
        "RFM segments", _label_options(labels["rfm_segment"], tuple(SEGMENTS)), key=f"{prefix}_rfm_segments",
        placeholder="All segments",
        help="Keep only customers in these RFM segments (recency, frequency, money); see the Segments page.")
    stages = columns[1].multiselect(
        "Lifecycle stages", _label_options(labels["lifecycle_stage"], tuple(STAGES)), key=f"{prefix}_stages",
        placeholder="All stages",
        help="Keep only customers in these lifecycle stages (new, active, at risk, churned...); see the Segments "
             "page.")
    container.caption(f"Segments and stages: {plain(note)}. Choose others on the Segments page.")
    return LabelChoice(tuple(segments), tuple(stages), version)


def with_customer_labels(fingerprint: str, ws: Workspace, frame: pd.DataFrame,
                         choice: LabelChoice | None = None) -> pd.DataFrame:
    """``frame`` (per customer, or per customer and product) with the ``rfm_segment`` and ``lifecycle_stage``
    columns after the id, keeping only the customers ``choice`` keeps."""
    from clm_core.segments import with_labels

    labels, _, _ = customer_labels(fingerprint, ws)
    if choice is None:
        return with_labels(frame, labels)
    return with_labels(frame, labels, segments=list(choice.segments), stages=list(choice.stages))
