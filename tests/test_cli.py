"""The command line: JSON output, exit codes and one-line errors, in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
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
    revenue = json.loads(run("cohorts", "--db", str(db), "--metric", "revenue", "--definition", "rolling",
                             "--json").stdout)
    row = [r for r in revenue["rows"] if r["cohort"] == "2010-12" and r["offset"] == 1][0]
    assert row["retention"] == pytest.approx(row["revenue"] / first[0]["revenue"])
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
