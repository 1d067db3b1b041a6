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

COLUMNS = (
    Column("id", "run"),
    Column("target", "target"),
    Column("status", "status"),
    Column("started_at", "started"),
    Column("duration_s", "seconds", "right"),
    Column("inserted", "+I", "right"),
    Column("updated", "+U", "right"),
    Column("deleted", "-D", "right"),
    Column("unchanged", "unchanged", "right"),
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_state(args) as reader:
        runs = reader.runs(target=args.target, status=args.status, limit=args.limit)
    rows = [run_dict(r) for r in runs]
    write_rows(rows, COLUMNS, output_format(args), sys.stdout, title="runs")
    return 0
