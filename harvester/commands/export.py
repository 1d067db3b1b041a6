"""`harvester export`: export a target's current snapshot."""

from __future__ import annotations

import argparse

from harvester.commands._pending import register_pending


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    register_pending(
        subparsers,
        common,
        name="export",
        help="export a target's current snapshot",
        feature="it arrives with QA inspection (issue 7)",
    )
