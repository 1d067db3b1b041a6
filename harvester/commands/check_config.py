"""`harvester check-config`: validate the config and print it with secrets masked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flink_jobs.statements import validate_statements
from harvester.config import load_settings, to_toml


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help = "validate the config and print it with secrets masked"
    parser = subparsers.add_parser("check-config", parents=[common], help=help, description=help)
    parser.add_argument(
        "--format",
        choices=("toml", "json"),
        default="toml",
        help="how to print the effective config (default: toml)",
    )
    parser.add_argument(
        "--no-flink",
        action="store_true",
        help="skip having Flink parse and plan `flink.statements` (which starts a JVM)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the effective config; a bad one, or a `flink.statements` entry that Flink cannot
    parse or plan, raises ConfigError (exit 2, one line per problem)."""
    settings = load_settings(Path(args.config) if args.config else None)
    if not args.no_flink:
        validate_statements(settings)
    data = settings.masked_dump()
    if args.format == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        # A comment keeps the output valid TOML, so it can be saved and edited.
        print(f"# effective config of {settings.config_path}, secrets masked")
        print(to_toml(data), end="")
    return 0
