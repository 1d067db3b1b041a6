"""`harvester harvest`: harvest targets once now and forward their changes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harvester.commands._once import harvest_once
from harvester.commands._sinks import DEFAULT_JSONL
from harvester.commands._state import add_reset_option, reset_if_asked
from harvester.config import Settings, TargetSettings, load_settings, secret_values
from harvester.errors import UsageError
from harvester.logs import setup_logging


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    help = "harvest targets once now and forward their changes"
    parser = subparsers.add_parser(
        "harvest",
        parents=[common],
        help=help,
        description=(
            f"{help}. Pending runs of earlier harvests are sent first. Exits 0 when every run "
            "was committed with every store read whole, 1 otherwise, 2 on bad arguments or "
            "when another process owns the state folder."
        ),
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="target names from the config")
    parser.add_argument("--all", action="store_true", help="harvest every enabled target")
    parser.add_argument(
        "--full",
        action="store_true",
        help="send every record again as +I (a re-snapshot; -D still for records gone); "
        "the diff state stays exact",
    )
    parser.add_argument(
        "--sink",
        metavar="SINK",
        help=f"where the changes go: `flink` (the default: the pipeline of the config's "
        f"[flink] section), or `jsonl[:DIR]` (JSON lines appended to DIR/changes.jsonl; DIR "
        f"defaults to <state.data_dir>/{DEFAULT_JSONL}; no Java needed)",
    )
    add_reset_option(parser)
    parser.set_defaults(func=run)


def _targets(args: argparse.Namespace, settings: Settings) -> list[TargetSettings]:
    if args.all and args.targets:
        raise UsageError("give target names or --all, not both")
    if args.all:
        targets = [target for target in settings.targets if target.enabled]
        if not targets:
            raise UsageError("--all: the config has no enabled targets")
        return targets
    if not args.targets:
        raise UsageError("name at least one target, or give --all")
    return [settings.target(name) for name in dict.fromkeys(args.targets)]


def run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    setup_logging(settings.log, secret_values(settings))
    targets = _targets(args, settings)
    reset_if_asked(args, settings.state.dir, lambda line: print(line, file=sys.stderr))
    return harvest_once(settings, targets, sink_spec=args.sink, full=args.full)
