"""`--reset-state`, shared by `harvest` and `run`: start anew beside an unusable state folder."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from harvester.state import reset_state


def add_reset_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reset-state",
        action="store_true",
        help="move the state folder aside to <state.dir>.broken-<time> (keeping all its files) "
        "and start a new one: every record is then new to the next harvest",
    )


def reset_if_asked(args: argparse.Namespace, state_dir: Path, say: Callable[[str], None]) -> None:
    """With `--reset-state`, move `state_dir` aside before anything takes its lock."""
    if not args.reset_state:
        return
    moved = reset_state(state_dir)
    if moved is None:
        say(f"no state folder at {state_dir}; starting a new one")
    else:
        say(f"state folder {state_dir} moved aside to {moved}; starting a new one")
