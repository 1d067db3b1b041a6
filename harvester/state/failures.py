"""How SQLite's errors become `StateError`s, and the refusal of a state DB that cannot be used.

A state DB that exists but is empty, damaged or not ours is never taken for a new one: a new DB
would re-send every record as new, lose for good the deletes of every record it held, and forget
the pending runs whose spools wait to be sent. The refusal names the file and what to do.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harvester.errors import StateError, UnusableStateError
from harvester.state.paths import ASIDE_INFIX, DB_NAME, RESET_OPTION

# Primary result codes of a file that is not a database, or a database with damaged pages.
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def refused(path: Path, problem: str, *, first: str = "") -> UnusableStateError:
    """The state DB `path` `problem` (a predicate: "is empty (0 bytes)"); `first`, a remedy
    offered before restoring and resetting ("upgrade idb-harvester, or ")."""
    # Only a file called state.db is the DB of its folder; `harvester runs --state copy.db`
    # may name any file, whose folder a reset would not touch.
    folder = f"{path.parent}" if path.name == DB_NAME else "<state.dir>"
    return UnusableStateError(
        f"the state database {path} {problem}; a new one is not started over it, since that "
        f"would lose its pending runs and its deletes: {first}restore it from a backup, or "
        f"start anew with `harvester harvest {RESET_OPTION}` (or `harvester run "
        f"{RESET_OPTION}`), which moves the state folder {folder} aside to "
        f"{folder}{ASIDE_INFIX}<time>, keeping all its files"
    )


def is_damage(exc: sqlite3.Error) -> bool:
    """True when SQLite found the file not a database, or one of its pages damaged."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DAMAGED


def sqlite_failure(path: Path, doing: str, exc: sqlite3.Error) -> StateError:
    """The `StateError` of `exc`, raised while `doing` ("reading") the state DB `path`."""
    if is_damage(exc):
        return refused(path, f"is damaged ({doing} it failed: {exc})")
    return StateError(f"{doing} the state database {path} failed: {exc}")
