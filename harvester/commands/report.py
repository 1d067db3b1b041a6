"""`harvester report`: write a self-contained HTML report."""

from __future__ import annotations

import argparse

from harvester.commands._pending import register_pending


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    register_pending(
        subparsers,
        common,
        name="report",
        help="write a self-contained HTML report",
        feature="it arrives with QA inspection (issue 7)",
    )
