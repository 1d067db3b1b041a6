"""Options and helpers shared by the inspection commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeVar

from harvester.config import load_settings
from harvester.errors import UnusableStateError, UsageError, file_in_the_way
from harvester.inspect.queries import StateReader
from harvester.inspect.render import FORMATS, default_format

T = TypeVar("T")


def state_options() -> argparse.ArgumentParser:
    """A parent parser with `--state`, which bypasses the config to read a given state DB."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--state",
        metavar="PATH",
        type=Path,
        help="state database file, or the state folder holding it (default: from the config)",
    )
    return parser


def format_options() -> argparse.ArgumentParser:
    """A parent parser with `--format table|json|csv`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: table on a terminal, else json)",
    )
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def output_format(args: argparse.Namespace) -> str:
    return args.format or default_format(sys.stdout)


def state_path(args: argparse.Namespace) -> Path:
    """`--state` (the state DB file or its folder), else the configured state folder."""
    if args.state is not None:
        return Path(args.state)
    folder = Path(load_settings(Path(args.config) if args.config else None).state.dir)
    # `--state` may name the DB file itself; the configured state.dir is always a folder.
    if (blocked := file_in_the_way(folder)) is not None:
        raise UnusableStateError(f"state.dir {folder} {blocked}")
    return folder


def open_state(args: argparse.Namespace) -> StateReader:
    return StateReader(state_path(args))


def write_atomically(path: Path, write: Callable[[TextIO], T]) -> T:
    """Run `write` on `path.part`, then rename it to `path`: a failed write leaves no half file."""
    part = path.with_name(path.name + ".part")
    try:
        with part.open("w", encoding="utf-8", newline="") as out:
            result = write(out)
        part.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        part.unlink(missing_ok=True)
    return result
