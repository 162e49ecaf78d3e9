"""Command line over the same package: ``python -m clm_core COMMAND ...``.

Every user error exits with status 2 and one line on stderr; ``--json`` prints
exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from clm_core import schema
from clm_core.errors import ClmError, MappingError
from clm_core.ingest import REJECT_REASONS, IngestOptions
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


def _ingest(args: argparse.Namespace) -> dict:
    from clm_core.summary import dataset_summary

    db = Path(args.db)
    if db.exists():
        db.unlink()
    with Workspace(db) as workspace:
        staged = workspace.stage_file(args.file)
        mapping = staged.guess
        overrides = _parse_map(args.map or [])
        fields = {**mapping.fields, **overrides}
        fields = {name: column for name, column in fields.items() if column}
        segments = [c for c in (args.segment or mapping.segments) if c not in fields.values()]
        contacts = [c for c in (args.contact or mapping.contacts) if c not in fields.values()]
        date_format = args.date_format or mapping.date_format
        if args.dayfirst and date_format == "mdy":
            date_format = "dmy"
        mapping = replace(mapping, fields=fields, segments=segments, contacts=contacts, date_format=date_format,
                          number_style="comma" if args.decimal_comma else mapping.number_style)
        options = IngestOptions(drop_returns=args.drop_returns, drop_zero_price=args.drop_zero_price)
        report = workspace.build(staged, mapping, options)
        summary = dataset_summary(workspace)
    return {
        "file": str(args.file),
        "db": str(db),
        "source": staged.info.describe(),
        "mapping": mapping.to_dict(),
        "rows_in": report.rows_in,
        "rows_kept": report.rows_kept,
        "rows_rejected": report.rows_rejected,
        "rows_flagged": report.rows_flagged,
        "customers": summary.customers,
        "orders": summary.orders,
        "revenue": summary.net_revenue,
        "gross_revenue": summary.gross_revenue,
        "first_date": summary.first_date.isoformat(),
        "last_date": summary.last_date.isoformat(),
        "repeat_customer_rate": summary.repeat_customer_rate,
        "average_order_value": summary.average_order_value,
        "notes": report.notes,
    }


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
    revenue = "n/a (no amount column)" if result["revenue"] is None else f"{result['revenue']:,.2f}"
    print(f"Customers: {result['customers']:,}   orders: {result['orders']:,}   net revenue: {revenue}")
    print(f"Dates: {result['first_date'][:10]} to {result['last_date'][:10]}")
    for note in result["notes"]:
        print(f"Note: {note}")
    print(f"Workspace written to {result['db']}")


def _demo(args: argparse.Namespace) -> dict:
    from clm_core.generator import write_demo_file

    rows = write_demo_file(args.customers, args.out, seed=args.seed)
    return {"out": str(args.out), "customers": args.customers, "rows": rows, "seed": args.seed}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clm_core", description="Customer-lifecycle analytics.")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="Validate a transaction file and write a workspace database.")
    ingest.add_argument("file", help="CSV (any delimiter, .gz or .zip), Excel .xlsx or Parquet file")
    ingest.add_argument("--db", required=True, help="workspace database to write (replaced if it exists)")
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
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    ingest.set_defaults(run=_ingest, show=_print_ingest)

    demo = commands.add_parser("demo", help="Write seeded synthetic transactions.")
    demo.add_argument("--customers", type=int, required=True)
    demo.add_argument("--out", required=True, help=".csv, .csv.gz or .parquet")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(run=_demo, show=lambda r: print(f"Wrote {r['rows']:,} rows for {r['customers']:,} customers to {r['out']}"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except ClmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
        print(f"error: cannot open {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, default=str))
    else:
        args.show(result)
    return 0
