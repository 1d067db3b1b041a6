"""`harvester run`: run the scheduling daemon until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
from pathlib import Path

from harvester.commands._inspector import inspector_handler
from harvester.commands._sinks import make_sink
from harvester.commands._state import add_reset_option, reset_if_asked
from harvester.config import load_settings, secret_values
from harvester.daemon import Daemon, DaemonMetrics, DeliveryWatch, HarvestBackend
from harvester.inspect.report import render_report
from harvester.lock import StateLock
from harvester.logs import setup_logging
from harvester.state import StateDB, state_db_path

log = logging.getLogger(__name__)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
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
    add_reset_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    setup_logging(settings.log, secret_values(settings))
    if settings.log.level != "debug":
        # Its per-fire INFO lines repeat the daemon's own run events.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    reset_if_asked(args, settings.state.dir, log.warning)
    # The daemon closes the sink and the state DB when it stops; `with` covers a failed start.
    with StateLock(settings.state.dir), make_sink(args.sink, settings) as sink:
        log.info("changes go to %s", sink.description)
        state = StateDB.open(
            settings.state.dir,
            keep_runs=settings.state.keep_runs,
            keep_failed_runs=settings.state.keep_failed_runs,
            secrets=secret_values(settings),
        )
        metrics = DaemonMetrics()
        delivery = None
        if sink.changelog is not None:
            delivery = DeliveryWatch(
                state=state,
                sink=sink,
                max_lag=settings.flink.max_lag,
                retention=settings.flink.log_retention,
                metrics=metrics,
            )
        daemon = Daemon(
            settings,
            HarvestBackend(settings, state, sink),
            metrics=metrics,
            delivery=delivery,
            config_path=settings.config_path,
            load=load_settings,
            secrets=secret_values,
            # A `[state]` change waits for a restart, so the inspector (on `/`) and the
            # single-file report (on `/report`) read this folder's DB.
            inspector=inspector_handler(
                state_db_path(settings.state.dir),
                bind=settings.http.bind,
                token=settings.http.token.get_secret_value() if settings.http.token else None,
                cors_origins=settings.http.cors_origins,
            ),
            report=functools.partial(render_report, state_db_path(settings.state.dir)),
        )
        return asyncio.run(daemon.run())
