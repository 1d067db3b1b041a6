"""`harvester serve`: the live inspector and the REST API on a state folder, without a daemon."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

from harvester.commands._inspector import serve
from harvester.config import load_settings
from harvester.config.models.service import TOKEN_MIN_LENGTH
from harvester.errors import UsageError
from harvester.inspect.options import state_options
from harvester.state import state_db_path

TOKEN_ENV = "HARVESTER_API_TOKEN"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[common, state_options()],
        help="serve the REST API (changes feed, records, schema) and the inspector on a state DB",
        description=(
            "Serve the REST API (/api/v1/: the changes feed, current records, schema; "
            "docs/api.md) and the live inspector on a state DB, read-only, without a daemon, "
            "until Ctrl-C. Address, port and token come from the config's [http] section "
            f"unless given here; the token may also come from ${TOKEN_ENV}. Beyond loopback "
            "the API answers only with a token."
        ),
    )
    parser.add_argument("--bind", help="address to listen on (default: http.bind, 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port to listen on (default: http.port, 8787; 0 picks a free one)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    bind, port, token = "127.0.0.1", 8787, os.environ.get(TOKEN_ENV) or None
    cors_origins: list[str] = []
    if args.state is not None:
        path = args.state
    else:
        settings = load_settings(Path(args.config) if args.config else None)
        path = state_db_path(settings.state.dir)
        bind, port = settings.http.bind, settings.http.port
        cors_origins = settings.http.cors_origins
        if settings.http.token is not None:
            token = settings.http.token.get_secret_value()
    bind = args.bind or bind
    port = port if args.port is None else args.port
    if token is not None and len(token) < TOKEN_MIN_LENGTH:
        raise UsageError(f"${TOKEN_ENV} must be at least {TOKEN_MIN_LENGTH} characters")
    return serve(path, bind=bind, port=port, token=token, cors_origins=cors_origins, stop=stop)
