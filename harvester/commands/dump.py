"""`harvester dump`: read a page's IndexedDB and write it as JSON lines."""

from __future__ import annotations

import argparse

from harvester.commands._pending import register_pending


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    register_pending(
        subparsers,
        common,
        name="dump",
        help="read a page's IndexedDB and write it as JSON lines",
        feature="it arrives with the IndexedDB reader (issue 3)",
    )
