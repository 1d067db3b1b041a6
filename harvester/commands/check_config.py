"""`harvester check-config`: validate the config and print it with secrets masked."""

from __future__ import annotations

import argparse

from harvester.commands._pending import register_pending


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    register_pending(
        subparsers,
        common,
        name="check-config",
        help="validate the config and print it with secrets masked",
        feature="it arrives with the config loader (issue 2)",
    )
