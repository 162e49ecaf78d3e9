"""Command line over the same package: ``python -m clm_core COMMAND ...``.

Every user error exits with status 2 and one line on stderr; ``--json`` prints
exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from clm_core import schema, use_one_blas_thread
from clm_core.errors import ClmError, MappingError
from clm_core.ingest import REJECT_REASONS, IngestOptions
from clm_core.mapping import ColumnMapping
from clm_core.workspace import Workspace

__all__ = ["main", "build_parser"]


def _parse_map(items: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise MappingError(f"--map takes FIELD=COLUMN, got {item!r}.")
        name, column = (part.strip() for part in item.split("=", 1))
        if name not in schema.FIELD_BY_NAME:
            raise MappingError(f"--map: unknown field {name!r}; the fields are {', '.join(schema.FIELD_BY_NAME)}.")
        fields[name] = column
    return fields


def _building_path(db: Path) -> Path:
    return db.with_name(f".{db.name}.building-{os.getpid()}")


def _remove_database(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _sweep_abandoned_builds(db: Path) -> None:
    """Remove half-built workspaces that a killed ``ingest`` left beside ``db`` (their process is gone)."""
    for leftover in db.parent.glob(f".{db.name}.building-*"):
        pid = leftover.name.rsplit("-", 1)[-1].removesuffix(".wal")
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            leftover.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's live process


@contextmanager
def _atomic_database(db: Path):
    """A new database file beside ``db`` that replaces it only when the block succeeds: a failed, interrupted
    or killed build leaves the previous dataset in ``db`` untouched."""
    _sweep_abandoned_builds(db)
    building = _building_path(db)
    _remove_database(building)
    try:
        yield building
        os.replace(building, db)
        # A log left by an earlier crash belongs to the replaced file, not to this one.
        db.with_name(db.name + ".wal").unlink(missing_ok=True)
    finally:
        _remove_database(building)


def _segment_column(workspace: Workspace, name: str | None) -> str | None:
    """The stored column of a segment attribute named as in the file (``Country``) or as stored; None for none."""
    if not name:
        return None
    labels = {label: column for column, label in workspace.dataset.segment_columns.items()}
    if name not in labels and name not in labels.values():
        raise MappingError(f"No segment attribute {name!r}; the dataset has {', '.join(labels) or 'none'}.")
    return labels.get(name, name)


def _mapping_with_overrides(mapping: ColumnMapping, args: argparse.Namespace) -> ColumnMapping:
    """The guessed mapping with the command line's --map, --segment, --contact and date and number options."""
    overrides = _parse_map(args.map or [])
    fields = {**mapping.fields, **overrides}
    fields = {name: column for name, column in fields.items() if column}
    segments = [c for c in (args.segment or mapping.segments) if c not in fields.values()]
    # A customer known by name may stay a contact column; no other mapped column can.
    other_fields = [column for name, column in fields.items() if name != schema.CUSTOMER_ID]
    contacts = [c for c in (args.contact or mapping.contacts) if c not in other_fields]
    date_format = args.date_format or mapping.date_format
    if args.dayfirst and date_format == "mdy":
        date_format = "dmy"
    return replace(mapping, fields=fields, segments=segments, contacts=contacts, date_format=date_format,
                   number_style="comma" if args.decimal_comma else mapping.number_style)


def _ingest_result(args: argparse.Namespace, source: str, mapping: ColumnMapping, report, summary) -> dict:
    return {
        "file": str(args.file),
        **({"db": str(args.db)} if args.engine == "duckdb" else {}),
        "source": source,
        "mapping": mapping.to_dict(),
        "rows_in": report.rows_in,
        "rows_kept": report.rows_kept,
        "rows_rejected": report.rows_rejected,
        "rows_flagged": report.rows_flagged,
        "duplicates_kept": report.duplicates_kept,
        "duplicate_reason": report.duplicate_reason,
        "customers": summary.customers,
        "orders": summary.orders,
        "revenue": summary.net_revenue,
        "gross_revenue": summary.gross_revenue,
        "first_date": summary.first_date.isoformat(),
        "last_date": summary.last_date.isoformat(),
        "repeat_customer_rate": summary.repeat_customer_rate,
        "average_order_value": summary.average_order_value,
        "notes": report.notes,
        **({"parquet": str(args.parquet)} if args.parquet else {}),
    }


def _options(args: argparse.Namespace) -> IngestOptions:
    return IngestOptions(drop_returns=args.drop_returns, drop_zero_price=args.drop_zero_price,
                         keep_duplicates=args.duplicates)


def _ingest(args: argparse.Namespace) -> dict:
    from clm_core.summary import dataset_summary

    if args.engine == "spark":
        return _ingest_on_spark(args)
    if args.kind or args.encoding:
        raise ClmError("--kind and --encoding are for --engine spark; the DuckDB ingest detects both itself.")
    if not args.db:
        raise ClmError("Give --db PATH, the workspace to write (or --engine spark --parquet DIR).")
    db = Path(args.db)
    if db.is_dir():
        raise ClmError(f"--db {args.db} is a folder; give the path of a workspace file, for example shop.duckdb.")
    if args.header_row is not None and args.header_row < 1:
        raise ClmError("--header-row is a row number of the sheet, 1 or more.")
    with _atomic_database(db) as building, Workspace(building) as workspace:
        staged = workspace.stage_file(args.file, sheets=args.sheet, header_row=args.header_row)
        mapping = _mapping_with_overrides(staged.guess, args)
        report = workspace.build(staged, mapping, _options(args))
        summary = dataset_summary(workspace)
        if args.parquet:
            workspace.write_parquet(args.parquet)
    return _ingest_result(args, staged.info.describe(), mapping, report, summary)


def _ingest_on_spark(args: argparse.Namespace) -> dict:
    """The ingest on Spark (:mod:`clm_core.spark_ingest`): the same rules, the lake folder of --parquet written
    by the executors."""
    from clm_core.spark_engine import running_session, spark_session
    from clm_core.spark_ingest import build_on_spark, stage_on_spark
    from clm_core.summary import dataset_summary

    if not args.parquet:
        raise ClmError("--engine spark writes the dataset as a Parquet folder for the other commands' --source: "
                       "give --parquet DIR.")
    if args.db or args.sheet or args.header_row is not None:
        raise ClmError("--db, --sheet and --header-row are for the DuckDB ingest; with --engine spark give "
                       "--parquet DIR (Excel files are read by the DuckDB ingest only).")
    kind = args.kind or ("parquet" if str(args.file).rstrip("/").endswith(".parquet") else "csv")
    running = running_session()
    session = running or spark_session(args.spark_master, _parse_settings(args.spark_conf or []))
    try:
        staged = stage_on_spark(session, args.file, kind=kind, encoding=args.encoding or "utf-8")
        mapping = _mapping_with_overrides(staged.guess, args)
        result = build_on_spark(staged, mapping, _options(args))
        summary = dataset_summary(result.engine)
        result.write_parquet(args.parquet)
        result.unpersist()
    finally:
        if running is None:
            session.stop()
    return _ingest_result(args, staged.description, mapping, result.report, summary)


def _print_ingest(result: dict) -> None:
    print(f"Read {result['file']} ({result['source']})")
    print("Mapping: " + ", ".join(f"{k}={v}" for k, v in result["mapping"]["fields"].items()))
    print(f"Rows in: {result['rows_in']:,}   kept: {result['rows_kept']:,}   "
          f"rejected: {sum(result['rows_rejected'].values()):,}")
    for reason, count in result["rows_rejected"].items():
        if count:
            print(f"  rejected  {count:>10,}  {REJECT_REASONS[reason]}")
    for flag, count in result["rows_flagged"].items():
        if count:
            print(f"  flagged   {count:>10,}  {flag} (kept)")
    verdict = "kept as purchases" if result["duplicates_kept"] else "rejected as double exports"
    print(f"Identical rows: {verdict}. {result['duplicate_reason']}")
    revenue = "n/a (no amount column)" if result["revenue"] is None else f"{result['revenue']:,.2f}"
    print(f"Customers: {result['customers']:,}   orders: {result['orders']:,}   net revenue: {revenue}")
    print(f"Dates: {result['first_date'][:10]} to {result['last_date'][:10]}")
    for note in result["notes"]:
        print(f"Note: {note}")
    if "db" in result:
        print(f"Workspace written to {result['db']}")
    if "parquet" in result:
        print(f"Dataset written as Parquet to {result['parquet']}")


def _demo(args: argparse.Namespace) -> dict:
    from clm_core.generator import write_demo_file

    rows = write_demo_file(args.customers, args.out, seed=args.seed)
    return {"out": str(args.out), "customers": args.customers, "rows": rows, "seed": args.seed}


def _cohorts(args: argparse.Namespace) -> dict:
    from clm_core.cohorts import cohort_table
    from clm_core.export import write_table

    with _engine(args) as engine:
        segment = _segment_column(engine, args.segment)
        table = cohort_table(engine, period=args.period, definition=args.definition, segment=segment,
                             min_cohort_size=args.min_cohort_size)
    frame = table.export_long()
    if args.out:
        write_table(frame, args.out)
    retention = "retention" if args.metric == "customers" else "revenue_retention"
    rows = [
        {
            "cohort": row.cohort_label,
            "segment": row.segment,
            "offset": int(row.offset),
            "cohort_size": int(row.cohort_size),
            "active": None if pd.isna(row.active) else int(row.active),
            "retention": _number_or_none(getattr(row, retention)),
            "customer_retention": _number_or_none(row.retention),
            "revenue": _number_or_none(row.revenue),
            "complete": bool(row.complete),
            "censored": bool(row.censored),
            "left_censored": bool(row.left_censored),
        }
        for row in frame.itertuples()
    ]
    include_first = args.include_first_cohort
    average = table.headline(include_left_censored=include_first)
    return {"period": args.period, "definition": args.definition, "metric": args.metric,
            "notes": table.notes, "average": {str(k): v for k, v in average.items()},
            "average_includes_first_cohort": include_first, "rows": rows}


def _number_or_none(value: float) -> float | None:
    """JSON has no NaN: a censored (missing) value becomes null."""
    return None if pd.isna(value) else float(value)


def _print_cohorts(result: dict) -> None:
    for note in result["notes"]:
        print(f"Note: {note}")
    print(f"{'cohort':<12} {'offset':>6} {'size':>7} {'active':>7} {'retention':>9} {'revenue':>14}")
    for row in result["rows"]:
        retention = "" if row["retention"] is None else ("≥" if row["censored"] else "") + f"{row['retention']:.1%}"
        active = "" if row["active"] is None else f"{row['active']:,}"
        revenue = "" if row["revenue"] is None else f"{row['revenue']:,.2f}"
        cohort = row["cohort"] + ("*" if row["left_censored"] else "")
        print(f"{cohort:<12} {row['offset']:>6} {row['cohort_size']:>7,} {active:>7} {retention:>9} {revenue:>14}")


def _date_argument(text: str | None, option: str = "--calibration-end") -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ClmError(f"{option} takes a date like 1997-09-30, got {text!r}.") from None


def _fit_report(args: argparse.Namespace, reported) -> dict:
    """The fitted model's part of ``clv``'s result, the same on both engines."""
    return {
        "model": args.model,
        "unit": args.unit,
        "params": {name: float(value) for name, value in reported.params_.items()},
        "params_se": {name: _number_or_none(value) for name, value in reported.params_se_.items()},
        "converged": reported.converged_,
        "params_at_bound": list(reported.at_bound_),
        "log_likelihood": reported.log_likelihood_,
        "customers_fitted": reported.n_customers_,
    }


def _clv(args: argparse.Namespace) -> dict:
    from clm_core import clv
    from clm_core.clv_diagnostics import diagnose
    from clm_core.errors import DataRangeError
    from clm_core.export import write_table

    if args.horizon_months < 1:
        raise ClmError("--horizon-months must be at least 1.")
    if not 0 <= args.discount_rate < 1:
        raise ClmError("--discount-rate is a monthly rate between 0 and 1, for example 0.01 for 1 % a month.")
    if not 0 < args.margin <= 1:
        raise ClmError("--margin is a fraction between 0 and 1, for example 0.3 for a 30 % gross margin.")
    calibration_end = _date_argument(args.calibration_end)
    if args.engine == "spark":
        return _clv_on_spark(args, calibration_end)
    with Workspace(_existing_db(_db_argument(args)), read_only=True) as workspace:
        has_money = workspace.dataset.has_money
        if args.model == "gg" and not has_money:
            raise DataRangeError("The Gamma-Gamma spend model needs an amount column; this dataset has none.")
        summary = clv.customer_summary(workspace, unit=args.unit, calibration_end=calibration_end)
        purchase_model = "bgnbd" if args.model == "gg" else args.model
        fitted = clv.fit_clv_models(summary, purchase_model=purchase_model, with_spend=has_money)
        reported = fitted.spend if args.model == "gg" else fitted.purchase
        result = {**_fit_report(args, reported), "customers": len(summary.frame),
                  "observation_end": summary.observation_end.isoformat(), "notes": fitted.notes}
        if calibration_end is not None:
            check = clv.holdout_spend(summary, fitted) if args.model == "gg" else clv.holdout_totals(summary, fitted)
            result.update({
                "holdout_measure": "average_transaction_value" if args.model == "gg" else "repeat_transactions",
                "holdout_start": (calibration_end + timedelta(days=1)).isoformat(),
                "holdout_end": summary.data_end.isoformat(),
                "holdout_actual": check["actual"],
                "holdout_predicted": check["predicted"],
                "holdout_error": check["error"],
            })
        forecast = clv.predict_clv(summary, fitted, horizon_months=args.horizon_months,
                                   monthly_discount_rate=args.discount_rate, margin=args.margin)
        scores = forecast.scores
        result["diagnostics"] = [finding.to_dict() for finding in diagnose(summary, fitted)]
        if "clv" in scores:
            result["clv_total"] = forecast.total
            result["clv_total_interval"] = list(forecast.total_interval) if forecast.total_interval else None
            result["clv_interval_level"] = forecast.level
            result["clv_top_10pct_share"] = clv.value_concentration(scores["clv"])[0.1]
        if args.out:
            write_table(_labelled(workspace, clv.customer_export(workspace, summary, scores), args), args.out)
            result["out"] = str(args.out)
    return result


def _clv_on_spark(args: argparse.Namespace, calibration_end: date | None) -> dict:
    """``clv`` with ``--engine spark``: the same fit, every customer's predictions written as Parquet to ``--out``."""
    from clm_core.errors import DataRangeError
    from clm_core.spark_analytics import clv_on_spark

    _refuse_labels_on_spark(args)
    out = _spark_out(args, "every customer's predictions")
    with _engine(args) as engine:
        has_money = engine.dataset.has_money
        if args.model == "gg" and not has_money:
            raise DataRangeError("The Gamma-Gamma spend model needs an amount column; this dataset has none.")
        run = clv_on_spark(engine, out, purchase_model="bgnbd" if args.model == "gg" else args.model, unit=args.unit,
                           calibration_end=calibration_end, with_spend=has_money, horizon_months=args.horizon_months,
                           monthly_discount_rate=args.discount_rate, margin=args.margin)
    reported = run.fitted.spend if args.model == "gg" else run.fitted.purchase
    result = {
        **_fit_report(args, reported),
        "customers": run.customers,
        "observation_end": run.observation_end.isoformat(),
        "notes": run.notes,
        "engine": "spark",
        "rows_fitted": run.spend_rows if args.model == "gg" else run.histories,
    }
    measure = "average_transaction_value" if args.model == "gg" else "repeat_transactions"
    if measure in run.holdout:
        check = run.holdout[measure]
        result.update({
            "holdout_measure": measure,
            "holdout_start": (run.calibration_end + timedelta(days=1)).isoformat(),
            "holdout_end": run.data_end.isoformat(),
            "holdout_actual": check["actual"],
            "holdout_predicted": check["predicted"],
            "holdout_error": check["error"],
        })
    if run.total is not None:
        result.update({"clv_total": run.total, "clv_total_interval": None, "clv_interval_level": 0.9,
                       "clv_top_10pct_share": run.top_10pct_share})
        result["notes"] = result["notes"] + ["On Spark the total has no interval; each customer's clv_low and "
                                             "clv_high are in the output."]
    result["out"] = run.path
    return result


def _print_clv(result: dict) -> None:
    from clm_core.clv import MODELS

    params = ", ".join(f"{name} = {value:.4g}" + ("" if result["params_se"][name] is None
                                                   else f" (se {result['params_se'][name]:.2g})")
                       for name, value in result["params"].items())
    print(f"{MODELS[result['model']]} fitted on {result['customers_fitted']:,} customers "
          f"(unit: {result['unit']}): {params}")
    print(f"Log-likelihood: {result['log_likelihood']:,.2f}")
    if "holdout_actual" in result:
        what = ("average transaction value" if result["holdout_measure"] == "average_transaction_value"
                else "repeat transactions")
        print(f"Holdout {result['holdout_start']} to {result['holdout_end']}, {what}: actual "
              f"{result['holdout_actual']:,.2f}, predicted {result['holdout_predicted']:,.2f} "
              f"({result['holdout_error']:+.1%})")
    if "clv_total" in result:
        interval = result["clv_total_interval"]
        between = "" if interval is None else (f" ({result['clv_interval_level']:.0%} interval {interval[0]:,.2f} to "
                                               f"{interval[1]:,.2f})")
        print(f"Total CLV of {result['customers']:,} customers: {result['clv_total']:,.2f}{between}; the top 10 % "
              f"hold {result['clv_top_10pct_share']:.0%}")
    for finding in result.get("diagnostics", []):  # not computed on Spark
        if not finding["ok"]:
            print(f"Warning: {finding['title']}. {finding['message']}")
    for note in result["notes"]:
        print(f"Note: {note}")
    if "out" in result:
        print(f"Per-customer predictions written to {result['out']}")


@contextmanager
def _churn_result(args: argparse.Namespace):
    """(workspace or None, churn result) for ``--db`` (transactions) or ``--table`` with ``--label``; the
    workspace stays open inside the block."""
    from clm_core import churn

    if args.table:
        if args.engine == "spark":
            raise ClmError("--table reads a customer table on this machine: leave out --engine spark.")
        if not args.label:
            raise ClmError("--table needs --label COLUMN: the column that says whether the customer left.")
        table = churn.read_customer_table(Path(args.table).read_bytes(), name=Path(args.table).name)
        yield None, churn.churn_from_table(table, args.label, seed=args.seed)
        return
    if args.engine != "spark" and not args.db:
        raise ClmError("Give --db PATH (a workspace written by ingest) or --table FILE --label COLUMN.")
    cutoff = _date_argument(args.cutoff, "--cutoff")
    if args.engine == "spark":
        from clm_core.spark_analytics import train_churn_on_spark

        with _engine(args) as engine:
            trained = train_churn_on_spark(engine, horizon_days=args.horizon_days, cutoff=cutoff, seed=args.seed)
            yield engine, replace(trained.result, notes=trained.notes + trained.result.notes)
        return
    with Workspace(_existing_db(args.db), read_only=True) as workspace:
        yield workspace, churn.churn_from_workspace(workspace, horizon_days=args.horizon_days, cutoff=cutoff,
                                                    seed=args.seed)


def _churn(args: argparse.Namespace) -> dict:
    with _churn_result(args) as (_, result):
        return result.to_dict()


def _print_churn(result: dict) -> None:
    if result["horizon_days"]:
        print(f"Churn = no purchase in the next {result['horizon_days']} days; trained on {result['train_rows']:,} "
              f"customers, checked on {result['test_rows']:,} at {result['cutoff']} "
              f"({result['base_rate']:.1%} left).")
    elif result["test_rows"]:
        print(f"Trained on {result['train_rows']:,} rows, checked on {result['test_rows']:,} "
              f"({result['base_rate']:.1%} left).")
    from clm_core.churn import BASELINE, MODEL_NAMES

    for name, metrics in result["models"].items():
        low, high = metrics["roc_auc_interval"]
        label = "Recency only (baseline)" if name == BASELINE else MODEL_NAMES[name]
        mark = "  <- best" if name == result["best_model"] else ""
        print(f"  {label:<26} ROC AUC {metrics['roc_auc']:.3f} ({low:.3f}-{high:.3f})  PR AUC {metrics['pr_auc']:.3f}"
              f"  Brier {metrics['brier']:.3f}  top-decile lift {metrics['lift_top_decile']:.2f}{mark}")
    print("Predictive: " + ("yes" if result["predictive"] else "no, ranked by days since last purchase against "
                                                                  "the usual gap"))
    for note in result["notes"]:
        print(f"Note: {note}")


def _at_risk(args: argparse.Namespace) -> dict:
    from clm_core import churn
    from clm_core.export import EXCEL_MAX_ROWS, write_table

    if args.top is not None and args.top < 1:
        raise ClmError("--top must be at least 1.")
    if args.engine == "spark":
        return _at_risk_on_spark(args)
    if args.table and (args.only_segment or args.only_stage):
        raise ClmError("--only-segment and --only-stage need --db: a customer table has no segments or stages.")
    with _churn_result(args) as (workspace, result):
        value, basis = churn.customer_value(workspace) if workspace is not None else (None, "")
        table = churn.at_risk_list(workspace, result, min_risk=args.min_risk, value=value)
        if workspace is not None:
            table = _labelled(workspace, table, args)
        if args.top is not None:
            table = table.head(args.top)
    write_table(table, args.out)
    written = min(len(table), EXCEL_MAX_ROWS) if args.out.lower().endswith(".xlsx") else len(table)
    notes = result.notes + ([f"Value: {basis}."] if basis else [])
    if written < len(table):
        notes.append(f"Excel holds {EXCEL_MAX_ROWS:,} rows: the {len(table) - written:,} lowest-risk customers "
                     "were left out; use a .csv file for all of them.")
    return {"out": args.out, "customers": written, "predictive": result.predictive, "best_model": result.best_model,
            "notes": notes}


def _at_risk_on_spark(args: argparse.Namespace) -> dict:
    """``at-risk`` with ``--engine spark``: trained on the driver (a sample past 150,000 customers), every customer
    scored on the executors, the list written as Parquet to ``--out``."""
    from clm_core.spark_analytics import score_churn_on_spark

    _refuse_labels_on_spark(args)
    with _churn_result(args) as (engine, result):
        written = score_churn_on_spark(engine, result, args.out, top=args.top, min_risk=args.min_risk)
    notes = result.notes + ["On Spark the list has no drivers in words and no value (CLV): join clv --engine spark's "
                            "output on customer_id for it."]
    return {"out": args.out, "customers": written, "predictive": result.predictive, "best_model": result.best_model,
            "notes": notes}


def _recommend(args: argparse.Namespace) -> dict:
    from clm_core import recommend
    from clm_core.export import EXCEL_MAX_ROWS, write_table

    if args.top < 1:
        raise ClmError("--top must be at least 1.")
    if args.engine == "spark":
        return _recommend_on_spark(args)
    if args.customer is None and not args.out and not args.evaluate:
        raise ClmError("Say what to compute: --customer ID (one customer), --out FILE (every customer) or --evaluate "
                       "(how well the recommendations would have done).")
    result: dict = {}
    with Workspace(_existing_db(_db_argument(args)), read_only=True) as workspace:
        segment = _segment_column(workspace, args.segment)
        evaluation = None
        if args.evaluate:
            evaluation = recommend.evaluate(workspace, top=args.top, segment=segment)
            result.update(evaluation.to_dict())
        if args.customer is None and not args.out:
            return result
        model = recommend.build_recommender(workspace, segment=segment, include_repeats=args.repeats,
                                            method=args.method, evaluation=evaluation)
        if args.out:
            table = _labelled(workspace, model.recommend(top=args.top), args)
    result.update({"method": model.method, "method_reason": model.method_reason,
                   "include_repeats": model.include_repeats_, "as_of": model.as_of_.isoformat()})
    if args.customer is not None:
        picks = model.for_customer(args.customer, top=args.top)
        result["customer_id"] = args.customer
        result["recommendations"] = picks.drop(columns="customer_id").astype(
            {"product_id": str, "product_name": str, "reason": str, "method": str}).to_dict("records")
    if args.out:
        write_table(table, args.out)
        written = min(len(table), EXCEL_MAX_ROWS) if args.out.lower().endswith(".xlsx") else len(table)
        result.update({"out": args.out, "customers": int((table["rank"] == 1).sum()), "rows": written})
        if written < len(table):
            result["notes"] = result.get("notes", []) + [
                f"Excel holds {EXCEL_MAX_ROWS:,} rows: the last {len(table) - written:,} recommendations were left "
                "out; use a .csv file for all of them."]
    return result


def _recommend_on_spark(args: argparse.Namespace) -> dict:
    """``recommend`` with ``--engine spark``: the products bought together (per product its ``--top`` partners in at
    least 5 orders together), counted on Spark and written as Parquet to ``--out``."""
    from clm_core.spark_analytics import bought_together_on_spark

    asked = [option for option, given in (("--customer", args.customer is not None), ("--evaluate", args.evaluate),
                                          ("--method", args.method), ("--segment", args.segment),
                                          ("--repeats", args.repeats is not None)) if given]
    if asked:
        raise ClmError(f"{asked[0]} is for the per-customer recommendations, which run on --db; --engine spark counts "
                       "the products bought together (--out DIR).")
    _refuse_labels_on_spark(args)
    out = _spark_out(args, "the product pairs")
    with _engine(args) as engine:
        pairs = bought_together_on_spark(engine, out, min_orders=_SPARK_MIN_ORDERS, top=args.top)
    return {"out": out, "pairs": pairs, "min_orders": _SPARK_MIN_ORDERS, "top": args.top, "engine": "spark"}


# Products bought together in fewer orders say little: the threshold of recommend.bought_together.
_SPARK_MIN_ORDERS = 5


def _print_recommend(result: dict) -> None:
    from clm_core.recommend import METHOD_LABELS

    if "table" in result:
        print(f"Recommendations from purchases up to {result['cutoff']}, checked against what "
              f"{result['evaluated_customers']:,} customers bought up to {result['end']} (top {result['top']}):")
        for row in result["table"]:
            print(f"  {METHOD_LABELS[row['method']]:<52} {row['items']:<12} hit rate {row['hit_rate']:.1%} "
                  f"({row['hit_rate_low']:.1%}-{row['hit_rate_high']:.1%})  recall {row['recall']:.1%} "
                  f"({row['recall_low']:.1%}-{row['recall_high']:.1%})  precision {row['precision']:.1%}  "
                  f"coverage {row['coverage']:.1%}")
        print(f"Chosen: {result['chosen']}. {result['reason']}")
    if "recommendations" in result:
        print(f"Top {len(result['recommendations'])} for customer {result['customer_id']} "
              f"({METHOD_LABELS[result['method']]}):")
        for row in result["recommendations"]:
            print(f"  {row['rank']:>2}. {row['product_name']} ({row['product_id']}): {row['reason']}")
    if "pairs" in result:
        print(f"Wrote {result['pairs']:,} product pairs (per product its top {result['top']} partners bought with it "
              f"in at least {result['min_orders']} orders) to {result['out']}.")
    elif "out" in result:
        print(f"Wrote {result['rows']:,} recommendations for {result['customers']:,} customers to {result['out']} "
              f"({METHOD_LABELS[result['method']]}).")
    for note in result.get("notes", []):
        print(f"Note: {note}")


def _segments(args: argparse.Namespace) -> dict:
    from clm_core.export import EXCEL_MAX_ROWS, write_table
    from clm_core.segments import segment_customers

    as_of = _date_argument(args.as_of, "--as-of")
    if args.engine == "spark":
        from clm_core.spark_analytics import segments_on_spark

        out = _spark_out(args, "every customer's scores, segment and stage")
        with _engine(args) as engine:
            run = segments_on_spark(engine, out, as_of=as_of)
        return {**run.to_dict(), "out": run.path, "rows": run.customers, "engine": "spark"}
    with Workspace(_existing_db(_db_argument(args)), read_only=True) as workspace:
        segmented = segment_customers(workspace, as_of=as_of)
    result = segmented.to_dict()
    if args.out:
        table = segmented.customers
        write_table(table, args.out)
        written = min(len(table), EXCEL_MAX_ROWS) if args.out.lower().endswith(".xlsx") else len(table)
        result.update({"out": args.out, "rows": written})
        if written < len(table):
            result["notes"].append(f"Excel holds {EXCEL_MAX_ROWS:,} rows: the last {len(table) - written:,} customers "
                                   "were left out; use a .csv file for all of them.")
    return result


def _print_segments(result: dict) -> None:
    print(f"Segments as of {result['as_of']} ({result['customers']:,} customers):")
    for name, row in result["segments"].items():
        revenue = "" if row["revenue"] is None else f"   revenue {row['revenue']:>14,.2f}"
        print(f"  {name:<20} {row['customers']:>9,} ({row['share_of_customers']:.1%}){revenue}")
    print("Lifecycle stages:")
    for name, row in result["stages"].items():
        print(f"  {name:<20} {row['customers']:>9,} ({row['share_of_customers']:.1%})")
    for note in result["notes"]:
        print(f"Note: {note}")
    if "out" in result:
        print(f"Per-customer scores, segments and stages written to {result['out']}")


def _label_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--only-segment", action="append", metavar="NAME",
                         help="keep only customers in this RFM segment, e.g. 'At risk' (repeat for several); the "
                              "file has rfm_segment and lifecycle_stage columns either way")
    command.add_argument("--only-stage", action="append", metavar="NAME",
                         help="keep only customers in this lifecycle stage, e.g. Churned (repeat for several)")


def _labelled(workspace: Workspace, table: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """``table`` with each customer's RFM segment and lifecycle stage (those stored in the workspace, else the
    standard ones as of the last day), keeping the customers of ``--only-segment`` and ``--only-stage``."""
    from clm_core.segments import LABELS, SEGMENTS, STAGES, customer_labels, with_labels

    labels, _, _ = customer_labels(workspace)
    for column, option, known in (("rfm_segment", args.only_segment, SEGMENTS), ("lifecycle_stage", args.only_stage,
                                                                              STAGES)):
        names = list(dict.fromkeys([*known, *labels[column].dropna().astype(str)]))
        unknown = [name for name in option or () if name not in names]
        if unknown:
            raise ClmError(f"Unknown {LABELS[column]} '{unknown[0]}'; known: {', '.join(names)}.")
    return with_labels(table, labels, segments=args.only_segment, stages=args.only_stage)


@contextmanager
def _engine(args: argparse.Namespace):
    """The engine a command reads: the DuckDB workspace of ``--db`` (read only), or with ``--engine spark`` a
    Spark session over the dataset folder of ``--source`` (written by ``ingest --parquet``), stopped afterwards
    (a session already running in this process, a notebook's, is used and left running)."""
    if args.engine == "spark":
        from clm_core.spark_engine import SparkEngine, running_session

        if not args.source:
            raise ClmError("--engine spark needs --source DIR: a dataset folder written by ingest --parquet DIR (a "
                           "local path or a lake URL Spark can read).")
        settings = _parse_settings(args.spark_conf or [])
        running = running_session()
        engine = SparkEngine.from_parquet(args.source, session=running, master=args.spark_master, settings=settings)
        try:
            yield engine
        finally:
            if running is None:
                engine.stop()
        return
    if not args.db:
        raise ClmError("Give --db PATH (a workspace written by ingest), or --engine spark --source DIR.")
    with Workspace(_existing_db(args.db), read_only=True) as workspace:
        yield workspace


def _db_argument(args: argparse.Namespace) -> str:
    if not args.db:
        raise ClmError("Give --db PATH (a workspace written by ingest), or --engine spark --source DIR.")
    return args.db


def _spark_out(args: argparse.Namespace, what: str) -> str:
    """``--out`` of a command on Spark: the Parquet folder its per-customer results are written to."""
    if not args.out:
        raise ClmError(f"--engine spark writes {what} to a Parquet folder (a path or a lake URL): give --out DIR.")
    return args.out


def _refuse_labels_on_spark(args: argparse.Namespace) -> None:
    if getattr(args, "only_segment", None) or getattr(args, "only_stage", None):
        raise ClmError("--only-segment and --only-stage need --db; on Spark, join the folder segments --engine spark "
                       "writes on customer_id.")


def _parse_settings(items: list[str]) -> dict[str, str]:
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ClmError(f"--spark-conf takes KEY=VALUE, for example spark.executor.memory=8g; got {item!r}.")
        settings[key.strip()] = value.strip()
    return settings


def _engine_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                         help="run on the DuckDB workspace of --db (default) or on Spark over --source; with spark, "
                              "--out is a Parquet folder")
    command.add_argument("--source", metavar="DIR",
                         help="with --engine spark: the dataset folder written by ingest --parquet (path or lake URL)")
    command.add_argument("--spark-master", default="local[*]", metavar="URL",
                         help="with --engine spark: local[*] (default), spark://host:7077, yarn or sc://host:15002")
    command.add_argument("--spark-conf", action="append", metavar="KEY=VALUE",
                         help="with --engine spark: a Spark setting, e.g. spark.executor.memory=8g (repeatable)")


def _existing_db(path: str) -> str:
    if not Path(path).exists():
        raise ClmError(f"No workspace at {path}. Create one first: python -m clm_core ingest FILE --db {path}")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clm_core", description="Customer-lifecycle analytics.")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="Validate a transaction file and write a workspace database.")
    ingest.add_argument("file", help="CSV (any delimiter, .gz or .zip), Excel .xlsx or Parquet file")
    ingest.add_argument("--db",
                        help="workspace database to write; an existing one is replaced only when the new load succeeds")
    ingest.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                        help=f"override the guessed column for a field ({', '.join(schema.FIELD_BY_NAME)}); "
                             "FIELD= clears it")
    ingest.add_argument("--segment", action="append", metavar="COLUMN", help="keep COLUMN as a segment attribute")
    ingest.add_argument("--contact", action="append", metavar="COLUMN", help="keep COLUMN as a contact column")
    ingest.add_argument("--dayfirst", action="store_true", help="read 01/02/2011 as 1 February")
    ingest.add_argument("--date-format", choices=["iso", "mdy", "dmy", "ymd_compact", "epoch_s", "epoch_ms"])
    ingest.add_argument("--decimal-comma", action="store_true", help="numbers are written 1.234,50")
    ingest.add_argument("--drop-returns", action="store_true", help="reject returns instead of netting them")
    ingest.add_argument("--drop-zero-price", action="store_true", help="reject zero-price lines")
    duplicates = ingest.add_mutually_exclusive_group()
    duplicates.add_argument("--keep-duplicates", dest="duplicates", action="store_const", const=True,
                            help="keep identical rows as separate purchases (flagged); by default this is decided "
                                 "from the file: rejected when it has an order or line id, kept otherwise")
    duplicates.add_argument("--reject-duplicates", dest="duplicates", action="store_const", const=False,
                            help="reject identical rows as double exports")
    ingest.add_argument("--sheet", action="append", metavar="NAME",
                        help="Excel: the sheet to load (repeat to stack sheets with the same columns; default: the "
                             "first)")
    ingest.add_argument("--header-row", type=int, metavar="N",
                        help="Excel: the sheet row that holds the column names (default: detected, skipping title "
                             "rows)")
    ingest.add_argument("--parquet", metavar="DIR",
                        help="also write the canonical table and its description as Parquet into DIR, for a lake "
                             "and --engine spark (with --engine spark: where the dataset is written)")
    ingest.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                        help="validate with DuckDB into --db (default) or on Spark into the --parquet folder; with "
                             "spark, FILE is any path or lake URL Spark reads, or a catalog table with --kind table")
    ingest.add_argument("--kind", choices=["csv", "whitespace", "parquet", "table"],
                        help="with --engine spark: what FILE is (default: parquet for a .parquet name, else csv "
                             "with its delimiter and header detected)")
    ingest.add_argument("--encoding", help="with --engine spark: the text files' encoding (default utf-8)")
    ingest.add_argument("--spark-master", default="local[*]", metavar="URL",
                        help="with --engine spark: local[*] (default), spark://host:7077, yarn or sc://host:15002")
    ingest.add_argument("--spark-conf", action="append", metavar="KEY=VALUE",
                        help="with --engine spark: a Spark setting, e.g. spark.executor.memory=8g (repeatable)")
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    ingest.set_defaults(run=_ingest, show=_print_ingest)

    cohorts = commands.add_parser("cohorts", help="Cohort retention table of a workspace.")
    cohorts.add_argument("--db", help="workspace written by ingest")
    _engine_options(cohorts)
    cohorts.add_argument("--period", choices=["week", "month", "quarter"], default="month")
    cohorts.add_argument("--metric", choices=["customers", "revenue"], default="customers",
                         help="what 'retention' measures: customers who bought, or revenue vs period 0")
    cohorts.add_argument("--definition", choices=["classic", "rolling"], default="classic")
    cohorts.add_argument("--segment", help="split cohorts by this segment attribute (e.g. Country)")
    cohorts.add_argument("--min-cohort-size", type=int, default=1)
    cohorts.add_argument("--include-first-cohort", action="store_true",
                         help="count the first cohort (which may hold customers who bought before the data start) "
                              "in the average retention")
    cohorts.add_argument("--out", help="also write the long table as CSV")
    cohorts.add_argument("--json", action="store_true")
    cohorts.set_defaults(run=_cohorts, show=_print_cohorts)

    clv = commands.add_parser("clv", help="Fit a CLV model and predict per-customer lifetime value.")
    clv.add_argument("--db", help="workspace written by ingest")
    _engine_options(clv)
    clv.add_argument("--model", choices=["bgnbd", "pareto", "gg"], default="bgnbd",
                     help="whose parameters to report: purchase model BG/NBD or Pareto/NBD, or Gamma-Gamma spend "
                          "(CLV then uses BG/NBD purchases)")
    clv.add_argument("--unit", choices=["day", "week"], default="week", help="time unit of recency and T")
    clv.add_argument("--calibration-end", metavar="DATE",
                     help="fit on purchases up to this date (inclusive) and check the prediction on the rest")
    clv.add_argument("--horizon-months", type=int, default=12, help="CLV horizon in months (default 12)")
    clv.add_argument("--discount-rate", type=float, default=0.01, help="monthly discount rate (default 0.01)")
    clv.add_argument("--margin", type=float, default=1.0, help="gross margin as a fraction (default 1: revenue)")
    clv.add_argument("--out", help="write per-customer predictions (.csv or .xlsx): contact columns, first and "
                                   "last purchase date, days since last purchase, orders, revenue, the predictions, "
                                   "and the model's inputs as model_repeat_purchase_days, "
                                   "model_<unit>s_first_to_last_purchase (the model's recency: NOT the time since "
                                   "the last purchase), model_<unit>s_first_purchase_to_end (T) and "
                                   "model_average_repeat_order_value; with --engine spark, a Parquet folder of "
                                   "the predictions and the model's inputs")
    _label_options(clv)
    clv.add_argument("--json", action="store_true")
    clv.set_defaults(run=_clv, show=_print_clv)

    def churn_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--db", help="workspace written by ingest (transactions)")
        command.add_argument("--table", metavar="FILE", help="or a customer table with a churn column (CSV, .xlsx)")
        command.add_argument("--label", metavar="COLUMN", help="with --table: the column saying who left")
        command.add_argument("--horizon-days", type=int, metavar="H",
                             help="churn = no purchase in the next H days (default: suggested from the usual gap)")
        command.add_argument("--cutoff", metavar="DATE",
                             help="check date: trained H days before it, checked on the H days after it "
                                  "(default: H days before the end of the data)")
        command.add_argument("--seed", type=int, default=0, help="random seed of the models (default 0)")
        _engine_options(command)

    churn_command = commands.add_parser("churn", help="Train and check churn models; print how well they predict.")
    churn_options(churn_command)
    churn_command.add_argument("--json", action="store_true")
    churn_command.set_defaults(run=_churn, show=_print_churn)

    at_risk = commands.add_parser("at-risk", help="Write the list of customers most likely to leave.")
    churn_options(at_risk)
    limit = at_risk.add_mutually_exclusive_group()
    limit.add_argument("--top", type=int, metavar="N", help="the N customers at highest risk")
    limit.add_argument("--min-risk", type=float, metavar="P", help="customers with risk P or above")
    at_risk.add_argument("--out", required=True, help="file to write (.csv or .xlsx; with --engine spark, a Parquet "
                                                       "folder)")
    _label_options(at_risk)
    at_risk.add_argument("--json", action="store_true")
    at_risk.set_defaults(run=_at_risk, show=lambda r: print(
        f"Wrote {r['customers']:,} customers to {r['out']}" + "".join(f"\nNote: {n}" for n in r["notes"])))

    recommend_command = commands.add_parser("recommend", help="Product recommendations per customer, and how well "
                                                               "they would have done.")
    recommend_command.add_argument("--db", help="workspace written by ingest")
    _engine_options(recommend_command)
    recommend_command.add_argument("--customer", metavar="ID", help="recommendations for this customer")
    recommend_command.add_argument("--out", help="write recommendations for every customer (.csv or .xlsx); with "
                                                  "--engine spark, the products bought together (a Parquet folder)")
    recommend_command.add_argument("--top", type=int, default=10, help="recommendations per customer (default 10)")
    recommend_command.add_argument("--evaluate", action="store_true",
                                   help="hide the last 3 months, recommend from what came before and measure "
                                        "precision, recall and hit rate against what customers then bought")
    recommend_command.add_argument("--method", choices=["cf", "popularity"],
                                   help="personalised (cf) or most popular; default: the one that did better in the "
                                        "check")
    recommend_command.add_argument("--segment", help="count popularity within this segment attribute (e.g. Country)")
    recommend_command.add_argument("--repeats", action=argparse.BooleanOptionalAction, default=None,
                                   help="put products the customer bought before first (default: decided from how "
                                        "often customers rebuy in this data)")
    _label_options(recommend_command)
    recommend_command.add_argument("--json", action="store_true")
    recommend_command.set_defaults(run=_recommend, show=_print_recommend)

    segments_command = commands.add_parser("segments", help="RFM segments and lifecycle stages of every customer.")
    segments_command.add_argument("--db", help="workspace written by ingest")
    _engine_options(segments_command)
    segments_command.add_argument("--as-of", metavar="DATE", help="as of this day (default: the last day of the data)")
    segments_command.add_argument("--out", help="write per customer: days since last purchase, purchase days, "
                                                "purchase value, R, F, M and F(M) scores, segment and stage (.csv "
                                                "or .xlsx; with --engine spark, a Parquet folder)")
    segments_command.add_argument("--json", action="store_true")
    segments_command.set_defaults(run=_segments, show=_print_segments)

    demo = commands.add_parser("demo", help="Write seeded synthetic transactions.")
    demo.add_argument("--customers", type=int, required=True)
    demo.add_argument("--out", required=True, help=".csv, .csv.gz or .parquet")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(run=_demo, show=lambda r: print(f"Wrote {r['rows']:,} rows for {r['customers']:,} customers to {r['out']}"))
    return parser


def _finite(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by None, so the JSON printed is always valid."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> dict:
    import duckdb

    try:
        return args.run(args)
    except (duckdb.OutOfMemoryException, MemoryError) as error:
        raise ClmError("Out of memory: the file or the computation needs more memory than this machine has free. "
                       "Try a smaller extract.") from error
    except duckdb.InterruptException as error:
        raise KeyboardInterrupt from error
    except RuntimeError as error:
        # DuckDB turns a signal that arrives during a query into this RuntimeError.
        if "interrupted" in str(error).lower():
            raise KeyboardInterrupt from error
        raise


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    use_one_blas_thread()
    # SIGTERM ends a run the way Ctrl-C does: cleanly, leaving every existing workspace as it was.
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if _is_main_thread() else None
    try:
        result = _run(args)
    except ClmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
        print(f"error: cannot open {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was changed.", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    try:
        if getattr(args, "json", False):
            print(json.dumps(_finite(result), default=str, allow_nan=False))
        else:
            args.show(result)
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
    return 0


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
