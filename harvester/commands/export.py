"""`harvester export`: write a target's committed snapshot to a JSON-lines or CSV file."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from harvester.errors import UsageError
from harvester.inspect.options import open_state, state_options, write_atomically
from harvester.inspect.queries import StateReader
from harvester.inspect.render import csv_cell
from harvester.inspect.schema import top_level_fields
from harvester.state import Store
from harvester.surrogates import escape_surrogates

BASE_FIELDS = ("target", "origin", "db", "store", "key")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "export",
        parents=[common, state_options()],
        help="export a target's current snapshot",
        description=(
            "Write the committed records of a target to FILE: JSON lines (one record per line, "
            "key and value as typed JSON) or CSV (one column per top-level field of the values, "
            "strings as they are, dates as ISO-8601 text, anything else as compact one-line "
            "typed JSON). FILE - writes to stdout."
        ),
    )
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("--db", action="append", default=[], help="only this database (repeatable)")
    parser.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="[DB/]STORE",
        help="only this store, named alone or as DB/STORE like the config's globs (repeatable)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        required=True,
        help="output file; - writes to stdout (./- names a file called -)",
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        default=None,
        help="file format (default: csv for a .csv file, else jsonl)",
    )
    parser.set_defaults(func=run)


def _cell(node: Any) -> str:
    # CSV is UTF-8, which cannot hold a lone surrogate: it is written as its JSON escape.
    return escape_surrogates(csv_cell(node))


def _store_names(store: Store) -> tuple[str, str]:
    """What `--store` may call `store`: its name, or `db/store` as the config's globs do."""
    return store.store, f"{store.db}/{store.store}"


def _check_known(args: argparse.Namespace, stores: list[Store]) -> None:
    dbs = sorted({s.db for s in stores})
    unknown = [n for n in args.db if n not in dbs]
    if unknown:
        raise UsageError(
            f"unknown database {unknown[0]!r} for target {args.target!r}; "
            f"known: {', '.join(dbs) or '(none)'}"
        )
    names = {name for s in stores for name in _store_names(s)}
    unknown = [n for n in args.store if n not in names]
    if unknown:
        known = sorted(_store_names(s)[1] for s in stores)
        raise UsageError(
            f"unknown store {unknown[0]!r} for target {args.target!r}; "
            f"known (as DB/STORE, or the store name alone): {', '.join(known) or '(none)'}"
        )


def run(args: argparse.Namespace) -> int:
    to_stdout = args.out == Path("-")
    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "jsonl")
    with open_state(args) as reader:
        stores = reader.stores(target=args.target)
        _check_known(args, stores)
        stores = [
            s
            for s in stores
            if (not args.db or s.db in args.db)
            and (not args.store or any(n in args.store for n in _store_names(s)))
        ]
        writer = _write_jsonl if fmt == "jsonl" else _write_csv
        if to_stdout:
            count = writer(sys.stdout, reader, stores)
        else:
            count = write_atomically(args.out, lambda out: writer(out, reader, stores))
    print(f"exported {count:,} records to {'stdout' if to_stdout else args.out}", file=sys.stderr)
    return 0


def _write_jsonl(out: TextIO, reader: StateReader, stores: list[Store]) -> int:
    count = 0
    for store in stores:
        for record in reader.records(store):
            row = {
                "target": store.target,
                "origin": store.origin,
                "db": store.db,
                "store": store.store,
                "key": json.loads(record.key),
                "value": json.loads(record.value or "null"),
                "value_hash": record.value_hash,
                "first_seen_run": record.first_seen_run,
                "last_changed_run": record.last_changed_run,
            }
            out.write(json.dumps(row, ensure_ascii=True) + "\n")
            count += 1
    return count


def _write_csv(out: TextIO, reader: StateReader, stores: list[Store]) -> int:
    # The header comes first, so one pass collects the union of top-level fields. Field columns
    # are `value.<field>` (never clashing with the base columns) and a value that is not an
    # object goes to `value`.
    columns: dict[str, None] = {}
    for store in stores:
        for value in reader.parsed_values(store):
            fields = top_level_fields(value)
            names = ["value"] if fields is None else [f"value.{name}" for name in fields]
            columns.update(dict.fromkeys(names))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*BASE_FIELDS, *map(escape_surrogates, columns)])
    count = 0
    for store in stores:
        for record in reader.records(store):
            value = json.loads(record.value or "null")
            fields = top_level_fields(value)
            cells = (
                {"value": value} if fields is None else {f"value.{k}": v for k, v in fields.items()}
            )
            base = [
                store.target,
                store.origin,
                store.db,
                store.store,
                _cell(json.loads(record.key)),
            ]
            writer.writerow(base + [_cell(cells[c]) if c in cells else "" for c in columns])
            count += 1
    return count
