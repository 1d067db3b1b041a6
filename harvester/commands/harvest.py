"""`harvester harvest`: harvest targets once now and forward their changes."""

from __future__ import annotations

import argparse

from harvester.commands._pending import register_pending


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    register_pending(
        subparsers,
        common,
        name="harvest",
        help="harvest targets once now and forward their changes",
        feature="it arrives with change capture (issue 4)",
    )
