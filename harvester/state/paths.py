"""The names of the state folder's files, and of a folder that `--reset-state` moved aside."""

from __future__ import annotations

from pathlib import Path

DB_NAME = "state.db"
SPOOL_DIR = "spool"
# SQLite's files beside the DB: a journal left there belongs to the DB that wrote it.
JOURNAL_SUFFIXES = ("-wal", "-journal")
RESET_OPTION = "--reset-state"
ASIDE_INFIX = ".broken-"


def state_db_path(state_dir: Path) -> Path:
    """Where the state DB of a state folder lives."""
    return state_dir / DB_NAME


def aside_path(state_dir: Path, stamp: str, attempt: int) -> Path:
    """Where `--reset-state` moves `state_dir`: `<dir>.broken-<stamp>`, `-2`, `-3`, … after."""
    suffix = f"-{attempt}" if attempt > 1 else ""
    return state_dir.with_name(f"{state_dir.name}{ASIDE_INFIX}{stamp}{suffix}")
