"""`harvester diff`: what changed between two runs of a target, field by field."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harvester.errors import UsageError
from harvester.inspect.diff import field_row
from harvester.inspect.options import (
    format_options,
    open_state,
    output_format,
    positive_int,
    state_options,
)
from harvester.inspect.render import Column, safe_text, to_json, write_rows
from harvester.inspect.schema_history import change_dict, summary_lines
from harvester.state import SchemaChange

COLUMNS = (
    Column("db", "db"),
    Column("store", "store"),
    Column("op", "op"),
    Column("key_text", "key", typed="key"),
    Column("field", "field"),
    Column("old_text", "old", typed="old"),
    Column("new_text", "new", typed="new"),
)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "diff",
        parents=[common, state_options(), format_options()],
        help="show what changed between two runs",
        description=(
            "Show the records added, changed (field by field) and removed between two runs of "
            "one target: `diff RUN_A RUN_B`, or `diff --target T --last N` for the N-th last "
            "committed run against the last one (`--last 2`: what the last run changed). "
            "Changes of the IndexedDB schema (versions, stores, key paths, indexes) come first."
        ),
    )
    parser.add_argument("runs", metavar="RUN", nargs="*", help="RUN_A RUN_B")
    parser.add_argument("--target", metavar="T", help="with --last: the target")
    parser.add_argument("--last", metavar="N", type=positive_int, help="with --target: N ≥ 2")
    parser.set_defaults(func=run)


def _flat_rows(stores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table/CSV row per changed field (or per added/removed record): `old_text` and
    `new_text` pretty for tables, `old` and `new` the typed-JSON nodes CSV writes flat."""
    rows: list[dict[str, Any]] = []
    for store in stores:
        base = {"db": store["db"], "store": store["store"]}
        for op in ("added", "changed", "removed"):
            for record in store[op]:
                row = {**base, "op": op, "key": record["key"], "key_text": record["key_text"]}
                if op == "changed" and record["fields"] is not None:
                    rows += [{**row, **field_row(record, f)} for f in record["fields"]]
                elif op == "changed":
                    new = record["new_text"] or f"hash {record['new_hash']}"
                    rows.append(
                        {
                            **row,
                            "old_text": "(value before not kept)",
                            "new_text": new,
                            "new": record["new_value"],
                        }
                    )
                else:
                    rows.append({**row, **_whole(record, op)})
    return rows


def _schema_rows(changes: list[SchemaChange]) -> list[dict[str, Any]]:
    """CSV rows of the schema changes: `op` is the kind, `field` the index, `old`/`new` JSON."""
    return [
        {
            "db": c.db,
            "store": c.store,
            "op": c.kind,
            "field": c.index_name,
            "old_text": None if c.old is None else _compact(c.old),
            "new_text": None if c.new is None else _compact(c.new),
        }
        for c in changes
    ]


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _whole(record: dict[str, Any], op: str) -> dict[str, Any]:
    side = "new" if op == "added" else "old"
    text = record[f"{side}_text"]
    shown = text if text is not None else f"hash {record[f'{side}_hash']}"
    return {f"{side}_text": shown, side: record[f"{side}_value"]}


def run(args: argparse.Namespace) -> int:
    if args.last is not None or args.target is not None:
        if args.runs or args.last is None or args.target is None:
            raise UsageError("give either RUN_A RUN_B, or --target T --last N")
        if args.last < 2:
            raise UsageError("--last wants 2 or more: the N-th last committed run is the base")
    elif len(args.runs) != 2:
        raise UsageError("give either RUN_A RUN_B, or --target T --last N")
    with open_state(args) as reader:
        if args.last is not None and args.target is not None:
            run_a, run_b = reader.last_runs(args.target, args.last)
        else:
            run_a, run_b = reader.run(args.runs[0]), reader.run(args.runs[1])
        stores = reader.diff_runs(run_a, run_b)
        schema = reader.schema_diff(run_a, run_b)
    diffs = [s.as_dict() for s in stores]
    payload = {
        "target": run_b.target,
        "from_run": run_a.id,
        "to_run": run_b.id,
        "schema": [change_dict(c) for c in schema],
        "stores": diffs,
    }
    fmt = output_format(args)
    if fmt == "json":
        sys.stdout.write(to_json(payload) + "\n")
    elif fmt == "csv":
        write_rows(_schema_rows(schema) + _flat_rows(diffs), COLUMNS, fmt, sys.stdout)
    else:
        # Whole lines, unwrapped: each names a database and reads as one sentence.
        for line in summary_lines(schema):
            sys.stdout.write(safe_text(f"schema: {line}") + "\n")
        title = f"{run_b.target}: {run_a.id} → {run_b.id}"
        write_rows(_flat_rows(diffs), COLUMNS, fmt, sys.stdout, title=title)
    return 0
