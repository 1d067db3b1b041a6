"""What a state DB file must be before it is used: a file, SQLite, undamaged, ours, and at a
schema version this harvester knows. Anything else is refused (`failures.refused`).

Only a missing file means a new DB (`schema.create_db` never leaves a half-made one under the
DB's name). A writable open checks every page (`PRAGMA quick_check`, about 0.6 s per GB when the
file is in the page cache), once per process, before anything writes to a damaged b-tree and
spreads the damage. A read-only open, which `runs` and the daemon's report make often, checks
the small tables only; a damaged page elsewhere is refused when a read meets it
(`failures.sqlite_failure`), with the same message.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from harvester.errors import StateError, UnusableStateError
from harvester.state.failures import is_damage, refused
from harvester.state.paths import JOURNAL_SUFFIXES
from harvester.state.schema import SCHEMA_VERSION, TABLES, connect, schema_version

SQLITE_HEADER = b"SQLite format 3\x00"
# Bounded by retention (runs) and by the stores of a target: cheap to check at every open.
SMALL_TABLES = ("runs", "run_stores", "stores")
PROBLEMS_SHOWN = 3


def check_missing(path: Path) -> None:
    """Refuse to make a new DB at `path` beside a journal of the one that was there.

    SQLite would apply that journal's pages to the new file, mixing the old DB into it.
    """
    for suffix in JOURNAL_SUFFIXES:
        journal = path.with_name(path.name + suffix)
        if os.path.lexists(journal):
            raise refused(
                path,
                f"is missing but its journal {journal.name} is there (was the database deleted "
                "or moved?)",
            )


def check_file(path: Path) -> None:
    """Refuse what is not a SQLite file, before SQLite opens it (which may write to it)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise refused(path, "is not a file")
        if info.st_size == 0:
            raise refused(path, "is empty (0 bytes)")
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UnusableStateError(
            f"cannot read the state database {path}: {exc.strerror or exc}; check the file's "
            "owner and mode, and that of its folder"
        ) from exc
    if header != SQLITE_HEADER:
        raise refused(path, "is not a SQLite database")


def check_db(path: Path, *, every_page: bool) -> int:
    """Refuse the SQLite file `path` unless it is an undamaged state DB not newer than this
    harvester; its schema version.

    It reads through a read-only connection of its own: refusing a file never changes it.
    """
    conn = connect(path, readonly=True)
    try:
        version = _check_schema(conn, path)
        checks = ["quick_check"] if every_page else [f"quick_check({t})" for t in SMALL_TABLES]
        for check in checks:
            found = [row[0] for row in conn.execute(f"PRAGMA {check}")]
            if found != ["ok"]:
                raise refused(path, f"is damaged ({_listed(found, '; ')})")
    except sqlite3.Error as exc:
        if is_damage(exc):
            raise refused(path, f"is damaged ({exc})") from exc
        raise UnusableStateError(f"cannot read the state database {path}: {exc}") from exc
    finally:
        conn.close()
    return version


def _check_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Refuse a DB that is not ours, or newer; its schema version."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise refused(
            path,
            f"has schema version {version}, newer than this harvester's {SCHEMA_VERSION} "
            "(a newer idb-harvester wrote it)",
            first="upgrade idb-harvester to use it, or ",
        )
    sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    tables = [row[0] for row in conn.execute(sql)]
    if not tables:
        raise refused(path, "holds no tables (an empty SQLite database)")
    missing = [name for name in TABLES if name not in tables]
    if version == 0 or missing:
        raise refused(
            path,
            f"is not an idb-harvester state database (schema version {version}, tables "
            f"{_listed(tables, ', ')}; missing {', '.join(missing) or 'none'})",
        )
    return version


def _listed(items: list[str], sep: str) -> str:
    """The first few of `items`, and how many more there are."""
    more = len(items) - PROBLEMS_SHOWN
    return sep.join(items[:PROBLEMS_SHOWN]) + (f"{sep}… {more} more" if more > 0 else "")


def check_readable(path: Path, version: int) -> None:
    """Refuse to read a DB at an older schema version: its columns may differ.

    Not a refusal of the DB: it is sound, and the next harvest migrates it.
    """
    if version != SCHEMA_VERSION:
        raise StateError(
            f"the state database {path} has schema version {version}, this harvester "
            f"reads {SCHEMA_VERSION}: run `harvester harvest` once to migrate it"
        )
