"""`harvester inspect`: serve the live inspector over the state DB on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import threading

from harvester.commands._inspector import serve
from harvester.inspect.options import state_options, state_path

DEFAULT_PORT = 8780
BIND = "127.0.0.1"  # loopback only: the pages show harvested data


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "inspect",
        parents=[common, state_options()],
        help="browse the state DB in a web browser (the live inspector)",
        description=(
            "Serve the live inspector (targets, runs, stores, searchable records, diffs, "
            "schema and record history) on 127.0.0.1 without a daemon, read-only, until "
            "Ctrl-C. See docs/inspect.md."
        ),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    return serve(state_path(args), bind=BIND, port=args.port, stop=stop)
