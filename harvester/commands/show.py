"""`harvester show`: the records of one store, now or as of a run, values pretty-printed."""

from __future__ import annotations

import argparse
import json
import sys

from harvester.inspect.filters import Where, key_texts, matches_all
from harvester.inspect.options import (
    format_options,
    open_state,
    output_format,
    positive_int,
    state_options,
)
from harvester.inspect.pretty import pretty_text
from harvester.inspect.render import Column, write_rows

COLUMNS = (
    Column("key_text", "key", typed="key"),
    Column("value_text", "value", typed="value"),
    Column("last_changed_run", "last changed run"),
)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "show",
        parents=[common, state_options(), format_options()],
        help="show the records of one store",
        description=(
            "Show the records of one object store (first-seen order), as committed now or as of a "
            "run, with values decoded and pretty-printed."
        ),
    )
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("db", metavar="DB")
    parser.add_argument("store", metavar="STORE")
    parser.add_argument(
        "--key",
        metavar="K",
        action="append",
        default=[],
        help='only this key: JSON (42, [1,"a"]) or a plain string; may be repeated',
    )
    parser.add_argument(
        "--where",
        metavar="FIELD=VALUE",
        action="append",
        default=[],
        help="only records whose FIELD (dotted for nested) equals VALUE (JSON or a string)",
    )
    parser.add_argument(
        "--limit", metavar="N", type=positive_int, default=100, help="at most N records (100)"
    )
    parser.add_argument("--run", metavar="RUN", help="the records as they were after this run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    wheres = [Where.parse(w) for w in args.where]
    keys = [text for k in args.key for text in key_texts(k)] or None
    fmt = output_format(args)
    rows = []
    with open_state(args) as reader:
        store = reader.store(args.target, args.db, args.store)
        records = reader.records(store, keys=keys, as_of=args.run)
        for record in records:
            value = None if record.value is None else json.loads(record.value)
            if wheres and (value is None or not matches_all(value, wheres)):
                continue
            rows.append(
                {
                    "key": json.loads(record.key),
                    "key_text": pretty_text(record.key),
                    "value": value,
                    "value_text": (
                        pretty_text(record.value, indent=2)
                        if record.value is not None
                        else f"(value not kept; hash {record.value_hash})"
                    ),
                    "value_hash": record.value_hash,
                    "first_seen_run": record.first_seen_run,
                    "last_changed_run": record.last_changed_run,
                }
            )
            if len(rows) >= args.limit:
                break
    title = f"{args.target} / {args.db} / {args.store}" + (f" as of {args.run}" if args.run else "")
    write_rows(rows, COLUMNS, fmt, sys.stdout, title=title)
    return 0
