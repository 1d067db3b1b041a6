"""The `harvester` command line: a thin dispatcher over `harvester.commands`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from harvester import __version__
from harvester.commands import COMMANDS
from harvester.errors import ConfigError, HarvesterError
from harvester.redaction import redact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harvester",
        description="Harvest IndexedDB from web apps into Apache Flink as a changelog.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $HARVESTER_CONFIG, else ./harvester.toml)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        # Within the try: output still buffered would otherwise fail at exit, past our handler.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader of our output went away (`… | head`): stop quietly, as pipelines expect.
        # Python flushes stdout again at exit; pointing it at /dev/null keeps that quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # what a shell shows for a process ended by SIGPIPE
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return exc.exit_code
    except HarvesterError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
