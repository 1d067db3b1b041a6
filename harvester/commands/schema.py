"""`harvester schema`: a target's IndexedDB schema now, or every change of it."""

from __future__ import annotations

import argparse
import sys

from harvester.inspect.options import format_options, open_state, output_format, state_options
from harvester.inspect.render import Column, to_json, write_rows
from harvester.inspect.schema_history import (
    change_dict,
    change_text,
    current_json,
    current_rows,
)

COLUMNS = (
    Column("db_text", "db (version)"),
    Column("store", "store"),
    Column("key_text", "key path"),
    Column("indexes_text", "indexes (key path; flags)"),
)
CSV_COLUMNS = (
    Column("origin", "origin"),
    Column("db", "db"),
    Column("version", "version"),
    Column("store", "store"),
    Column("key_path", "key_path"),
    Column("auto_increment", "auto_increment"),
    Column("indexes", "indexes"),
    Column("first_run", "first_run"),
    Column("last_run", "last_run"),
)
HISTORY_COLUMNS = (
    Column("at", "at"),
    Column("run_id", "run", fit="keep"),
    Column("db", "db"),
    Column("change", "change"),
)
HISTORY_CSV = (
    Column("at", "at"),
    Column("run_id", "run_id"),
    Column("origin", "origin"),
    Column("db", "db"),
    Column("store", "store"),
    Column("index", "index"),
    Column("kind", "kind"),
    Column("old", "old"),
    Column("new", "new"),
)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "schema",
        parents=[common, state_options(), format_options()],
        help="show a target's IndexedDB schema, or its history",
        description=(
            "Show the databases (with their versions) and stores (key path, auto-increment, "
            "indexes) of a target as its committed runs left them; with --history, every "
            "schema change with the run that found it and when."
        ),
    )
    parser.add_argument("target", metavar="TARGET", help="the target")
    parser.add_argument("--history", action="store_true", help="every schema change, oldest first")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fmt = output_format(args)
    with open_state(args) as reader:
        if args.history:
            changes = reader.schema_history(args.target)
        else:
            dbs, stores = reader.schema(args.target)
    if not args.history:
        if fmt == "json":
            sys.stdout.write(to_json(current_json(dbs, stores)) + "\n")
        else:
            columns = CSV_COLUMNS if fmt == "csv" else COLUMNS
            rows = current_rows(dbs, stores)
            write_rows(rows, columns, fmt, sys.stdout, title=f"{args.target}: schema")
        return 0
    rows = [{**change_dict(c), "change": change_text(c)} for c in changes]
    if fmt == "json":
        for row in rows:
            del row["change"]
    columns = HISTORY_CSV if fmt == "csv" else HISTORY_COLUMNS
    write_rows(rows, columns, fmt, sys.stdout, title=f"{args.target}: schema history")
    return 0
