"""`harvester run`: run the scheduling daemon."""

from __future__ import annotations

import argparse

from harvester.commands._pending import register_pending


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    register_pending(
        subparsers,
        common,
        name="run",
        help="run the scheduling daemon",
        feature="it arrives with the daemon (issue 6)",
    )
