"""`harvester runs`: list harvest runs, newest first."""

from __future__ import annotations

import argparse
import sys

from harvester.inspect.options import (
    format_options,
    open_state,
    output_format,
    positive_int,
    state_options,
)
from harvester.inspect.queries import run_dict
from harvester.inspect.render import Column, write_rows

# The default table fits a run on one line of 80 columns: the id (which holds the target and
# the start time) whole, the counts in one cell, the error cut to the width left.
COLUMNS = (
    Column("id", "run", fit="keep"),
    Column("status", "status", fit="keep"),
    Column("duration_s", "seconds", "right", fit="keep"),
    Column("changes", "+I/+U/-D", "right", fit="keep"),
    Column("error", "error", fit="cut"),
)

# `--wide`, and CSV, which has no width to keep to: every field.
WIDE_COLUMNS = (
    Column("id", "run", fit="keep"),
    Column("target", "target"),
    Column("status", "status"),
    Column("full", "full"),
    Column("origin", "origin"),
    Column("started_at", "started"),
    Column("read_at", "read"),
    Column("finished_at", "finished"),
    Column("duration_s", "seconds", "right"),
    Column("seq", "seq", "right"),
    Column("pending", "pending"),
    Column("records", "records", "right"),
    Column("bytes", "bytes", "right"),
    Column("rows", "rows", "right"),
    Column("inserted", "+I", "right"),
    Column("updated", "+U", "right"),
    Column("deleted", "-D", "right"),
    Column("unchanged", "unchanged", "right"),
    Column("incomplete_stores", "incomplete stores", "right"),
    Column("problems", "problems"),
    Column("error", "error"),
)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "runs",
        parents=[common, state_options(), format_options()],
        help="list harvest runs",
        description="List harvest runs, newest first, with their status, timings and counts.",
    )
    parser.add_argument("--target", metavar="T", help="only runs of this target")
    parser.add_argument("--status", metavar="S", help="only runs with this status")
    parser.add_argument(
        "--limit", metavar="N", type=positive_int, default=50, help="at most N runs (default 50)"
    )
    parser.add_argument(
        "--wide", action="store_true", help="a table of every field (csv always has them all)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_state(args) as reader:
        runs = reader.runs(target=args.target, status=args.status, limit=args.limit)
    rows = [run_dict(r) for r in runs]
    fmt = output_format(args)
    columns: tuple[Column, ...] = WIDE_COLUMNS
    if fmt == "table" and not args.wide:
        columns = COLUMNS
        for row in rows:
            row["changes"] = f"{row['inserted']}/{row['updated']}/{row['deleted']}"
    write_rows(rows, columns, fmt, sys.stdout, title="runs", wide=args.wide)
    return 0
