"""`harvester demo`: serve and harvest the bundled demo site."""

from __future__ import annotations

import argparse

from harvester.commands._pending import register_pending


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    register_pending(
        subparsers,
        common,
        name="demo",
        help="serve and harvest the bundled demo site",
        feature="it arrives with the demo site (issue 2)",
    )
