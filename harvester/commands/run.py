"""`harvester run`: run the scheduling daemon until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from harvester.commands.harvest import make_sink
from harvester.daemon import Daemon, HarvestBackend
from harvester.lock import StateLock
from harvester.logs import setup_logging
from harvester.settings import load_settings, secret_values
from harvester.state import StateDB

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "run",
        parents=[common],
        help="run the scheduling daemon",
        description="Harvest every enabled target on its schedule until SIGTERM or SIGINT; "
        "SIGHUP reloads the config. See docs/daemon.md.",
    )
    parser.add_argument(
        "--sink",
        metavar="SINK",
        help="where the changes go, as for `harvester harvest`: `flink`, or `jsonl[:DIR]` "
        "(JSON lines appended to DIR/changes.jsonl; no Java needed)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    setup_logging(settings.log, secret_values(settings))
    if settings.log.level != "debug":
        # Its per-fire INFO lines repeat the daemon's own run events.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    with StateLock(settings.state.dir):
        sink, where = make_sink(args.sink, settings)
        log.info("changes go to %s", where)
        state = StateDB.open(
            settings.state.dir,
            keep_runs=settings.state.keep_runs,
            secrets=secret_values(settings),
        )
        daemon = Daemon(
            settings,
            HarvestBackend(settings, state, sink),
            config_path=settings.config_path,
            load=load_settings,
            secrets=secret_values,
        )
        return asyncio.run(daemon.run())
