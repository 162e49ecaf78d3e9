"""The command line: JSON output, exit codes and one-line errors, in a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clm_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_ingest_online_retail_json(online_retail_path, online_retail_workspace, tmp_path):
    _, report = online_retail_workspace
    result = run("ingest", str(online_retail_path), "--db", str(tmp_path / "or.duckdb"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["rows_in"] == 541_909
    assert payload["rows_kept"] == report.rows_kept
    assert payload["rows_rejected"] == report.rows_rejected
    assert payload["rows_in"] == payload["rows_kept"] + sum(payload["rows_rejected"].values())
    assert payload["customers"] == 4_372
    assert payload["first_date"].startswith("2010-12-01") and payload["last_date"].startswith("2011-12-09")
    assert {"orders", "revenue"} <= payload.keys()


def test_ingest_cdnow_sample_and_master(cdnow_sample_path, cdnow_master_path, tmp_path):
    for path, customers in ((cdnow_sample_path, 2_357), (cdnow_master_path, 23_570)):
        result = run("ingest", str(path), "--db", str(tmp_path / "cd.duckdb"), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["customers"] == customers


def test_map_override_dayfirst_and_drop_returns(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("buyer,when,total,ref\na,03/04/2021,10,C1\nb,05/04/2021,-2,C2\nc,13/04/2021,5,3\n")
    result = run("ingest", str(path), "--db", str(tmp_path / "w.duckdb"), "--map", "customer_id=buyer",
                 "--map", "order_ts=when", "--map", "amount=total", "--map", "order_id=ref", "--dayfirst",
                 "--drop-returns", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["rows_rejected"]["return_dropped"] == 2
    assert payload["rows_kept"] == 1 and payload["first_date"].startswith("2021-04-13")


@pytest.mark.parametrize(
    "content, extra, message",
    [
        (b"", [], "empty"),
        (b"customer_id,order_date,amount\n", [], "no data rows"),
        (bytes(range(256)) * 20, [], "binary"),
        (b"customer_id,colour,size\na,red,1\nb,blue,2\n", [], "Order date"),
        (b"customer_id,order_date,amount\na,2021-01-01,1\n", ["--map", "order_id=customer_id"], "both point"),
        (b"customer_id,order_date,amount\na,2021-01-01,many\nb,2021-01-02,few\n", [], "holds no numbers"),
        (b"customer_id\n1\n2\n", [], "only one column"),
        (b"customer_id,order_date,amount\na,2021-01-01,1\n", ["--map", "colour=amount"], "unknown field"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(tmp_path, content, extra, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = run("ingest", str(path), "--db", str(tmp_path / "w.duckdb"), *extra)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_file(tmp_path):
    result = run("ingest", str(tmp_path / "nope.csv"), "--db", str(tmp_path / "w.duckdb"))
    assert result.returncode == 2 and "not found" in result.stderr


def test_demo_writes_a_file_that_ingests(tmp_path):
    out = tmp_path / "demo.csv"
    result = run("demo", "--customers", "200", "--out", str(out), "--seed", "3", "--json")
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out)
    assert json.loads(result.stdout)["rows"] == len(frame)
    assert frame["customer_id"].nunique() == 200
    ingest = run("ingest", str(out), "--db", str(tmp_path / "d.duckdb"), "--json")
    payload = json.loads(ingest.stdout)
    assert payload["rows_kept"] == len(frame) and payload["customers"] == 200
    assert payload["mapping"]["segments"] == ["country"] and payload["mapping"]["contacts"] == ["email"]


def test_cohorts_json_on_online_retail(online_retail_path, tmp_path):
    db = tmp_path / "or.duckdb"
    assert run("ingest", str(online_retail_path), "--db", str(db)).returncode == 0
    result = run("cohorts", "--db", str(db), "--period", "month", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    first = [row for row in payload["rows"] if row["cohort"] == "2010-12"]
    assert first[0]["offset"] == 0 and first[0]["retention"] == 1.0
    assert first[1]["retention"] == pytest.approx(first[1]["active"] / first[1]["cohort_size"])
    assert {"cohort", "offset", "cohort_size", "active", "retention", "revenue"} <= first[0].keys()
    assert first[-1]["retention"] is None and not first[-1]["complete"]  # December 2011 is partial
    assert first[-1]["active"] is None and first[-1]["revenue"] is None  # blank, not 9 days of purchases
    assert all(row["left_censored"] for row in first) and not any(row["censored"] for row in first)
    others = [row for row in payload["rows"] if row["offset"] == 1 and row["complete"] and not row["left_censored"]]
    assert payload["average"]["1"] == pytest.approx(sum(r["active"] for r in others) / sum(r["cohort_size"] for r in others))
    revenue = json.loads(run("cohorts", "--db", str(db), "--metric", "revenue", "--definition", "rolling",
                             "--json").stdout)
    row = [r for r in revenue["rows"] if r["cohort"] == "2010-12" and r["offset"] == 1][0]
    assert row["retention"] == pytest.approx(row["revenue"] / first[0]["revenue"])
    assert row["censored"]  # rolling: customers who buy after the data end are not counted
    by_country = json.loads(run("cohorts", "--db", str(db), "--segment", "Country", "--json").stdout)
    assert {"United Kingdom", "France"} <= {r["segment"] for r in by_country["rows"]}


def test_cohorts_errors(tmp_path):
    result = run("cohorts", "--db", str(tmp_path / "missing.duckdb"))
    assert result.returncode == 2 and "No workspace" in result.stderr
    short = tmp_path / "short.csv"
    short.write_text("customer_id,order_date,amount\na,2021-01-05,1\nb,2021-01-20,2\n")
    db = tmp_path / "short.duckdb"
    run("ingest", str(short), "--db", str(db))
    result = run("cohorts", "--db", str(db))
    assert result.returncode == 2 and "Try weeks" in result.stderr


@pytest.fixture(scope="module")
def cdnow_db(cdnow_sample_path, tmp_path_factory):
    db = tmp_path_factory.mktemp("clv") / "cdnow.duckdb"
    result = run("ingest", str(cdnow_sample_path), "--db", str(db), "--keep-duplicates", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows_flagged"]["duplicate"] == 21
    return db


def test_clv_bgnbd_with_holdout_json(cdnow_db, tmp_path):
    out = tmp_path / "clv.csv"
    result = run("clv", "--db", str(cdnow_db), "--model", "bgnbd", "--unit", "week", "--calibration-end",
                 "1997-09-30", "--horizon-months", "12", "--discount-rate", "0.01", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["params"] == pytest.approx({"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, rel=0.005)
    assert payload["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert payload["customers"] == 2_357
    assert payload["holdout_actual"] == 1_882
    assert payload["holdout_predicted"] == pytest.approx(1_653.4, abs=0.05)
    scores = pd.read_csv(out, dtype={"customer_id": str}, encoding="utf-8-sig")
    assert len(scores) == 2_357 and scores["customer_id"].is_unique
    assert {"probability_alive", "expected_purchases", "expected_order_value", "clv"} <= set(scores.columns)
    assert scores["clv"].sum() == pytest.approx(payload["clv_total"], rel=1e-9)
    # Standard errors as lifetimes' summary publishes them for this fit; the total's interval and per-customer ones.
    assert payload["params_se"] == pytest.approx({"r": 0.012557, "alpha": 0.378221, "a": 0.185719, "b": 0.705345},
                                                 rel=1e-3)
    low, high = payload["clv_total_interval"]
    assert low < payload["clv_total"] < high and payload["clv_interval_level"] == 0.9
    assert ((scores["clv_low"] <= scores["clv"] + 1e-9) & (scores["clv"] <= scores["clv_high"] + 1e-9)).all()
    assert {finding["check"]: finding["ok"] for finding in payload["diagnostics"]}["dropout"] is True


def test_clv_pareto_and_gamma_gamma_json(cdnow_db):
    pareto = run("clv", "--db", str(cdnow_db), "--model", "pareto", "--calibration-end", "1997-09-30", "--json")
    assert pareto.returncode == 0, pareto.stderr
    assert json.loads(pareto.stdout)["params"] == pytest.approx(
        {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}, rel=0.005)
    spend = run("clv", "--db", str(cdnow_db), "--model", "gg", "--calibration-end", "1997-09-30", "--json")
    assert spend.returncode == 0, spend.stderr
    payload = json.loads(spend.stdout)
    assert payload["params"] == pytest.approx({"p": 6.25, "q": 3.74, "gamma": 15.44}, rel=0.005)
    assert payload["customers_fitted"] == 946
    assert payload["holdout_measure"] == "average_transaction_value"


def test_clv_export_carries_contact_columns(tmp_path):
    data = tmp_path / "shop.csv.gz"
    assert run("demo", "--customers", "400", "--out", str(data), "--seed", "4").returncode == 0
    db = tmp_path / "shop.duckdb"
    assert run("ingest", str(data), "--db", str(db)).returncode == 0
    out = tmp_path / "clv.xlsx"
    result = run("clv", "--db", str(db), "--out", str(out))
    assert result.returncode == 0, result.stderr
    scores = pd.read_excel(out, dtype={"customer_id": str})
    demo = pd.read_csv(data, dtype=str).drop_duplicates("customer_id").set_index("customer_id")
    assert list(scores.columns[:5]) == ["customer_id", "rfm_segment", "lifecycle_stage", "email", "country"]
    assert (scores.set_index("customer_id")["email"] == demo.loc[scores["customer_id"], "email"].to_numpy()).all()


def test_exports_carry_segments_and_stages_and_filter_by_them(loaded_demo_db, tmp_path):
    from clm_core.segments import segment_customers
    from clm_core.workspace import Workspace

    with Workspace(loaded_demo_db, read_only=True) as workspace:
        expected = segment_customers(workspace).customers.set_index("customer_id")
    champions = set(expected.index[expected["rfm_segment"] == "Champions"])
    out = tmp_path / "at_risk.csv"
    result = run("at-risk", "--db", str(loaded_demo_db), "--out", str(out), "--only-segment", "Champions",
                 "--only-segment", "Loyal", "--top", "50")
    assert result.returncode == 0, result.stderr
    listed = pd.read_csv(out, dtype={"customer_id": str}, encoding="utf-8-sig")
    assert len(listed) == 50 and set(listed["rfm_segment"]) <= {"Champions", "Loyal"}
    assert (listed["lifecycle_stage"] == expected.loc[listed["customer_id"], "lifecycle_stage"].astype(str)
            .to_numpy()).all()
    assert listed["risk"].is_monotonic_decreasing  # the 50 riskiest of those segments
    clv_out = tmp_path / "clv.csv"
    assert run("clv", "--db", str(loaded_demo_db), "--out", str(clv_out), "--only-segment", "Champions").returncode == 0
    assert set(pd.read_csv(clv_out, dtype={"customer_id": str}, encoding="utf-8-sig")["customer_id"]) == champions
    rec_out = tmp_path / "recommendations.csv"
    assert run("recommend", "--db", str(loaded_demo_db), "--out", str(rec_out), "--only-stage", "Churned",
               "--top", "3").returncode == 0
    recommended = pd.read_csv(rec_out, dtype={"customer_id": str}, encoding="utf-8-sig")
    assert set(recommended["lifecycle_stage"]) == {"Churned"}
    assert set(recommended["customer_id"]) <= set(expected.index[expected["lifecycle_stage"] == "Churned"])
    failed = run("at-risk", "--db", str(loaded_demo_db), "--out", str(out), "--only-segment", "Champs")
    assert failed.returncode != 0 and "Unknown RFM segment 'Champs'" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--calibration-end", "2030-01-01"], "outside the data"),
    (["--calibration-end", "30/09/1997"], "takes a date like"),
    (["--discount-rate", "5"], "monthly rate"),
    (["--horizon-months", "0"], "at least 1"),
])
def test_clv_bad_arguments_exit_with_one_line(cdnow_db, args, message):
    result = run("clv", "--db", str(cdnow_db), *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_clv_without_money_or_repeats(tmp_path):
    path = tmp_path / "no_money.csv"
    path.write_text("customer_id,order_date\na,2021-01-01\na,2021-02-01\nb,2021-01-05\n")
    db = tmp_path / "nm.duckdb"
    assert run("ingest", str(path), "--db", str(db)).returncode == 0
    result = run("clv", "--db", str(db), "--model", "gg")
    assert result.returncode == 2 and "needs an amount column" in result.stderr
    path.write_text("customer_id,order_date,amount\na,2021-01-01,3\nb,2021-02-01,4\n")
    assert run("ingest", str(path), "--db", str(db)).returncode == 0
    result = run("clv", "--db", str(db))
    assert result.returncode == 2 and "No customer bought more than once" in result.stderr


# --- a failed or interrupted ingest keeps the workspace it was asked to replace -----------------------------

def _dataset_of(db: Path) -> tuple[str, int]:
    result = run("cohorts", "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    from clm_core.workspace import Workspace

    with Workspace(db, read_only=True) as workspace:
        return workspace.dataset.name, workspace.dataset.report.rows_kept


@pytest.fixture(scope="module")
def loaded_demo_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("kept") / "shop.duckdb"
    result = run("ingest", str(ROOT / "data" / "demo_transactions.csv.gz"), "--db", str(db))
    assert result.returncode == 0, result.stderr
    return db


@pytest.fixture(scope="module")
def large_file(tmp_path_factory) -> Path:
    """About 700,000 rows: its load takes a few seconds, long enough to be interrupted."""
    path = tmp_path_factory.mktemp("large") / "large.csv"
    result = run("demo", "--customers", "80000", "--out", str(path), "--seed", "5")
    assert result.returncode == 0, result.stderr
    return path


def test_a_failed_ingest_keeps_the_previous_dataset(loaded_demo_db, tmp_path):
    before = _dataset_of(loaded_demo_db)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = run("ingest", str(empty), "--db", str(loaded_demo_db))
    assert result.returncode == 2 and "empty" in result.stderr
    assert _dataset_of(loaded_demo_db) == before
    assert sorted(p.name for p in loaded_demo_db.parent.iterdir()) == [loaded_demo_db.name]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["INT", "TERM", "KILL"])
def test_a_signal_mid_ingest_keeps_the_previous_dataset(loaded_demo_db, large_file, sig):
    before = _dataset_of(loaded_demo_db)
    process = subprocess.Popen([sys.executable, "-m", "clm_core", "ingest", str(large_file), "--db",
                                str(loaded_demo_db)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    building = loaded_demo_db.with_name(f".{loaded_demo_db.name}.building-{process.pid}")
    deadline = time.time() + 60
    while not building.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.5)  # well inside the read of the file
    assert process.poll() is None, "the load finished before it could be interrupted"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130
        assert stderr.strip() == "error: interrupted; nothing was changed."
        assert not building.exists()
    assert _dataset_of(loaded_demo_db) == before
    # A half-built file left by a killed run is swept by the next run.
    run("ingest", str(loaded_demo_db.parent / "missing.csv"), "--db", str(loaded_demo_db))
    assert sorted(p.name for p in loaded_demo_db.parent.iterdir()) == [loaded_demo_db.name]


def test_non_finite_amounts_are_rejected_and_json_stays_valid(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("customer_id,order_date,amount\na,2021-01-05,10\na,2021-02-05,NaN\nb,2021-01-07,inf\n"
                    "b,2021-03-07,1e400\nc,2021-01-09,-Infinity\nc,2021-04-01,5\n")
    db = tmp_path / "w.duckdb"
    result = run("ingest", str(path), "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr

    def no_constants(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    payload = json.loads(result.stdout, parse_constant=no_constants)
    assert payload["rows_rejected"]["non_finite_amount"] == 4
    assert payload["rows_kept"] == 2 and payload["revenue"] == 15.0
    for command in (["cohorts"], ["clv", "--model", "gg"]):
        result = run(*command, "--db", str(db), "--json")
        if result.returncode == 0:
            json.loads(result.stdout, parse_constant=no_constants)
        else:
            assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_excel_title_row_sheet_and_header_row_options(tmp_path):
    import openpyxl

    workbook = openpyxl.Workbook()
    notes = workbook.active
    notes.title = "Notes"
    notes["A1"] = "This workbook holds the orders"
    orders = workbook.create_sheet("Orders")
    orders.append(["Sales report, year 2021"])
    orders.append([])
    orders.append(["customer_id", "order_date", "amount"])
    for day in range(1, 11):
        orders.append([f"c{day % 4}", datetime(2021, 1, day), 10.0 * day])
    path = tmp_path / "report.xlsx"
    workbook.save(path)

    result = run("ingest", str(path), "--db", str(tmp_path / "a.duckdb"), "--sheet", "Orders", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["rows_in"] == 10 and payload["rows_kept"] == 10 and payload["revenue"] == 550.0
    assert "column names in row 3" in payload["source"]

    # Told the title row, the real header becomes a data row: counted and rejected, never silently dropped.
    result = run("ingest", str(path), "--db", str(tmp_path / "b.duckdb"), "--sheet", "Orders", "--header-row", "1",
                 "--map", "customer_id=Sales report, year 2021", "--map", "order_ts=column_2", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["rows_in"] == 12 and payload["rows_kept"] == 10  # the blank row 2 and the header row 3
    assert payload["rows_rejected"]["missing_customer_id"] == 1
    assert payload["rows_rejected"]["unparseable_date"] == 1
    result = run("ingest", str(path), "--db", str(tmp_path / "c.duckdb"), "--sheet", "Nope")
    assert result.returncode == 2 and "no sheet named 'Nope'" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["clv"], "Give --db PATH (a workspace written by ingest), or --engine spark --source DIR."),
    (["segments", "--engine", "spark", "--out", "{tmp}/x"], "--engine spark needs --source DIR"),
    (["recommend", "--engine", "spark", "--source", "{tmp}/nowhere", "--out", "{tmp}/x"], "holds no dataset.json"),
    (["at-risk", "--engine", "spark", "--source", "{tmp}/nowhere", "--out", "{tmp}/x"], "holds no dataset.json"),
    (["churn", "--engine", "spark", "--table", "{tmp}/t.csv", "--label", "left"], "leave out --engine spark"),
], ids=["no --db", "spark without --source", "recommend: no dataset", "at-risk: no dataset", "churn --table"])
def test_analytics_commands_name_the_missing_source_in_one_line(tmp_path, args, message):
    # Before any Spark starts (the commands on Spark themselves: tests/test_spark_analytics.py).
    result = run(*(arg.format(tmp=tmp_path) for arg in args))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
