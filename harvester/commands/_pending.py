"""Registration for commands whose feature has not been built yet."""

from __future__ import annotations

import argparse

from harvester.errors import NotYetAvailableError


def register_pending(
    subparsers: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    *,
    name: str,
    help: str,
    feature: str,
) -> None:
    parser = subparsers.add_parser(name, parents=[common], help=help, description=help)

    def run(_args: argparse.Namespace) -> int:
        raise NotYetAvailableError(f"`harvester {name}` is not available yet: {feature}.")

    parser.set_defaults(func=run)
