"""`harvester demo`: serve (and, once the pipeline lands, harvest) the bundled demo site."""

from __future__ import annotations

import argparse
import threading

from harvester.demo import DEFAULT_PORT, serve_demo
from harvester.errors import NotYetAvailableError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    summary = "serve the bundled demo app and harvest it end to end"
    parser = subparsers.add_parser("demo", parents=[common], help=summary, description=summary)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="only serve the demo app on 127.0.0.1 until Ctrl-C",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"port to serve on (default {DEFAULT_PORT}; keep it stable, as IndexedDB's origin "
        "includes the port; 0 picks a free one)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with serve_demo(args.port) as server:
        print(f"demo app: {server.url}", flush=True)
        if not args.serve:
            raise NotYetAvailableError(
                "the demo app was served, but `harvester demo` does not harvest it yet: the "
                "end-to-end demo arrives with the Flink forwarder (issue 5); meanwhile run "
                "`harvester demo --serve` and, in another shell, "
                "`harvester harvest demo --config config/demo.toml`"
            )
        print("serving until Ctrl-C", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            # Ctrl-C is how a served demo ends, not an error.
            print("stopped", flush=True)
    return 0
