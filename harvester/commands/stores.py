"""`harvester stores`: every object store seen, with its counts and an inferred schema."""

from __future__ import annotations

import argparse
import sys

from harvester.inspect.options import format_options, open_state, output_format, state_options
from harvester.inspect.queries import store_dict
from harvester.inspect.render import Column, write_rows
from harvester.inspect.schema import infer

SCHEMA_SAMPLE = 10_000  # records per store the schema is inferred from (the first, in key order)

COLUMNS = (
    Column("target", "target"),
    Column("origin", "origin"),
    Column("db_text", "db (version)"),
    Column("store", "store"),
    Column("key_path", "key path"),
    Column("indexes_text", "indexes"),
    Column("records", "records", "right"),
    Column("bytes", "bytes", "right"),
    Column("last_changed_run", "last changed run"),
    Column("schema_text", "schema (field:types frequency)"),
)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "stores",
        parents=[common, state_options(), format_options()],
        help="list object stores with counts and an inferred schema",
        description=(
            "List every object store seen, with key path, indexes, counts, the last run that "
            f"changed it, and the top-level fields of its values (from up to {SCHEMA_SAMPLE:,} "
            "records) with their types and how often they occur."
        ),
    )
    parser.add_argument("--target", metavar="T", help="only stores of this target")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    with open_state(args) as reader:
        for store in reader.stores(target=args.target):
            schema = infer(reader.parsed_values(store, limit=SCHEMA_SAMPLE))
            rows.append(
                {
                    **store_dict(store),
                    "db_text": f"{store.db} ({store.db_version})",
                    "indexes_text": ", ".join(str(ix.get("name")) for ix in store.indexes),
                    "schema": schema.as_dict(),
                    "schema_text": schema.short(),
                }
            )
    fmt = output_format(args)
    if fmt == "json":
        for row in rows:
            del row["db_text"], row["indexes_text"], row["schema_text"]
    write_rows(rows, COLUMNS, fmt, sys.stdout, title="stores")
    return 0
