"""`harvester report`: write the self-contained HTML report of the state DB."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harvester.inspect.options import state_options, state_path, write_atomically
from harvester.inspect.report import render_report


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "report",
        parents=[common, state_options()],
        help="write an HTML report of runs, stores, changes and records",
        description=(
            "Write one self-contained HTML file (no network needed to view it): runs over time "
            "per target, each store's schema and counts, its latest changes, and searchable "
            "record tables."
        ),
    )
    parser.add_argument(
        "--out", metavar="FILE", type=Path, default=Path("report.html"), help="(report.html)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    html = render_report(state_path(args))
    write_atomically(args.out, lambda out: out.write(html))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
