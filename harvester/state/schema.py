"""The state DB's schema and migrations, how a new DB file is made, and how every connection to
it is opened.

Every connection runs in autocommit mode with explicit transactions: Python's implicit BEGIN
would otherwise hold a write transaction open across a capture's awaits.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from harvester.errors import StateError
from harvester.state.failures import sqlite_failure

# Writes wait this long for a commit in progress (a first snapshot of millions of records).
BUSY_TIMEOUT_MS = 600_000
WAL_LIMIT_BYTES = 64 * 1024 * 1024

# What a record's search index holds: its key text, then its value's string and number leaves
# (unescaped, each cut at SEARCH_LEAF characters), joined by U+001F. Property names, JSON
# punctuation, booleans and nulls are left out: they would double the index for text nobody
# looks for. Deterministic, so a trigger can remove exactly what it once added (contentless).
SEARCH_LEAF = 256
_SEARCH_TEXT = (
    "{row}.key || char(31) || CASE WHEN json_valid({row}.value) THEN coalesce(("
    f"SELECT group_concat(substr(atom, 1, {SEARCH_LEAF}), char(31)) FROM json_tree({{row}}.value) "
    "WHERE type IN ('text', 'integer', 'real')), '') "
    f"ELSE substr({{row}}.value, 1, {SEARCH_LEAF}) END"
)


def search_index(options: str = "") -> str:
    """The SQL that makes `snapshot_search` (FTS5 `options` added) and its triggers, and indexes
    the snapshot's records in it."""
    new_text, old_text = _SEARCH_TEXT.format(row="new"), _SEARCH_TEXT.format(row="old")
    return f"""
    CREATE VIRTUAL TABLE snapshot_search USING fts5(
        text, content='', tokenize='trigram', detail=none{options});
    CREATE TRIGGER snapshot_search_insert AFTER INSERT ON snapshot BEGIN
        INSERT INTO snapshot_search (rowid, text) VALUES (new.id, {new_text});
    END;
    CREATE TRIGGER snapshot_search_update AFTER UPDATE OF key, value ON snapshot BEGIN
        INSERT INTO snapshot_search (snapshot_search, rowid, text)
            VALUES ('delete', old.id, {old_text});
        INSERT INTO snapshot_search (rowid, text) VALUES (new.id, {new_text});
    END;
    CREATE TRIGGER snapshot_search_delete AFTER DELETE ON snapshot BEGIN
        INSERT INTO snapshot_search (snapshot_search, rowid, text)
            VALUES ('delete', old.id, {old_text});
    END;
    INSERT INTO snapshot_search (rowid, text)
        SELECT s.id, {_SEARCH_TEXT.format(row="s")} FROM snapshot s;
    -- One segment: a lookup then reads one b-tree per trigram, not one per batch inserted.
    INSERT INTO snapshot_search (snapshot_search) VALUES ('optimize');
    """


# Each entry moves the schema one version up (`PRAGMA user_version`); never edit a released one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        target      TEXT NOT NULL,
        status      TEXT NOT NULL
                    CHECK (status IN ('running', 'read', 'committed', 'failed')),
        full        INTEGER NOT NULL DEFAULT 0,
        origin      TEXT,
        started_at  TEXT NOT NULL,
        read_at     TEXT,
        finished_at TEXT,
        seq         INTEGER UNIQUE,
        pending     INTEGER NOT NULL DEFAULT 0,
        records     INTEGER NOT NULL DEFAULT 0,
        bytes       INTEGER NOT NULL DEFAULT 0,
        rows        INTEGER NOT NULL DEFAULT 0,
        inserted    INTEGER NOT NULL DEFAULT 0,
        updated     INTEGER NOT NULL DEFAULT 0,
        deleted     INTEGER NOT NULL DEFAULT 0,
        unchanged   INTEGER NOT NULL DEFAULT 0,
        incomplete_stores INTEGER NOT NULL DEFAULT 0,
        problems    TEXT NOT NULL DEFAULT '[]',
        error       TEXT
    );
    CREATE INDEX runs_by_target ON runs (target, started_at);
    CREATE TABLE run_stores (
        run_id         TEXT NOT NULL,
        db             TEXT NOT NULL,
        store          TEXT NOT NULL,
        db_version     INTEGER NOT NULL,
        key_path       TEXT NOT NULL,
        auto_increment INTEGER NOT NULL,
        indexes        TEXT NOT NULL,
        records        INTEGER NOT NULL,
        bytes          INTEGER NOT NULL,
        rows           INTEGER NOT NULL,
        inserted       INTEGER NOT NULL,
        updated        INTEGER NOT NULL,
        deleted        INTEGER NOT NULL,
        unchanged      INTEGER NOT NULL,
        complete       INTEGER NOT NULL,
        problems       TEXT NOT NULL,
        seconds        REAL NOT NULL,
        PRIMARY KEY (run_id, db, store)
    );
    CREATE TABLE stores (
        target           TEXT NOT NULL,
        origin           TEXT NOT NULL,
        db               TEXT NOT NULL,
        store            TEXT NOT NULL,
        db_version       INTEGER NOT NULL,
        key_path         TEXT NOT NULL,
        auto_increment   INTEGER NOT NULL,
        indexes          TEXT NOT NULL,
        records          INTEGER NOT NULL,
        bytes            INTEGER NOT NULL,
        first_run        TEXT NOT NULL,
        last_run         TEXT NOT NULL,
        last_changed_run TEXT,
        last_complete    INTEGER NOT NULL,
        PRIMARY KEY (target, origin, db, store)
    );
    CREATE TABLE snapshot (
        id               INTEGER PRIMARY KEY,
        target           TEXT NOT NULL,
        origin           TEXT NOT NULL,
        db               TEXT NOT NULL,
        store            TEXT NOT NULL,
        key              TEXT NOT NULL,
        value            TEXT NOT NULL,
        value_hash       TEXT NOT NULL,
        first_seen_run   TEXT NOT NULL,
        last_changed_run TEXT NOT NULL,
        UNIQUE (target, origin, db, store, key)
    );
    CREATE TABLE changes (
        run_id   TEXT NOT NULL,
        target   TEXT NOT NULL,
        origin   TEXT NOT NULL,
        db       TEXT NOT NULL,
        store    TEXT NOT NULL,
        key      TEXT NOT NULL,
        op       TEXT NOT NULL CHECK (op IN ('+I', '+U', '-D')),
        old_hash TEXT,
        new_hash TEXT
    );
    CREATE INDEX changes_by_run ON changes (run_id);
    """,
    # 2: the value a +U or -D replaced, so that diffs and `as_of` show values, not just hashes.
    "ALTER TABLE changes ADD COLUMN old_value TEXT",
    # 3: delivery, for sinks whose send only hands a run off to a log that a consumer acknowledges
    # later. Every run committed before it was delivered by its send: it counts as consumed.
    """
    ALTER TABLE runs ADD COLUMN log_seq INTEGER;
    CREATE UNIQUE INDEX runs_by_log_seq ON runs (log_seq);
    ALTER TABLE runs ADD COLUMN handed_off_at TEXT;
    ALTER TABLE runs ADD COLUMN consumed_at TEXT;
    ALTER TABLE runs ADD COLUMN consumed_rows INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET consumed_at = finished_at, consumed_rows = rows WHERE status = 'committed';
    """,
    # 4: IndexedDB schema history: what each run looked at (`scope`), the schema now known per
    # target, and every change of it. The baseline is what `stores` knew: its last schemas.
    """
    ALTER TABLE runs ADD COLUMN scope TEXT;
    CREATE TABLE schema_dbs (
        target    TEXT NOT NULL,
        origin    TEXT NOT NULL,
        db        TEXT NOT NULL,
        version   INTEGER NOT NULL,
        first_run TEXT NOT NULL,
        last_run  TEXT NOT NULL,
        PRIMARY KEY (target, origin, db)
    );
    CREATE TABLE schema_stores (
        target         TEXT NOT NULL,
        origin         TEXT NOT NULL,
        db             TEXT NOT NULL,
        store          TEXT NOT NULL,
        key_path       TEXT NOT NULL,
        auto_increment INTEGER NOT NULL,
        indexes        TEXT NOT NULL,
        first_run      TEXT NOT NULL,
        last_run       TEXT NOT NULL,
        PRIMARY KEY (target, origin, db, store)
    );
    CREATE TABLE schema_changes (
        run_id     TEXT NOT NULL,
        target     TEXT NOT NULL,
        origin     TEXT NOT NULL,
        db         TEXT NOT NULL,
        store      TEXT,
        index_name TEXT,
        kind       TEXT NOT NULL CHECK (kind IN (
            'database_added', 'database_removed', 'version_changed', 'store_created',
            'store_deleted', 'key_path_changed', 'auto_increment_changed', 'index_added',
            'index_removed', 'index_changed')),
        old        TEXT,
        new        TEXT,
        at         TEXT NOT NULL
    );
    CREATE INDEX schema_changes_by_target ON schema_changes (target);
    INSERT INTO schema_stores
        SELECT target, origin, db, store, key_path, auto_increment, indexes, first_run, last_run
        FROM stores;
    INSERT INTO schema_dbs
        SELECT target, origin, db,
            (SELECT s.db_version FROM stores s WHERE s.target = g.target AND s.origin = g.origin
             AND s.db = g.db ORDER BY s.last_run DESC LIMIT 1),
            min(first_run), max(last_run)
        FROM stores g GROUP BY target, origin, db;
    """,
    # 5: a key's history (`harvester history`) looks up its changes without walking the target's.
    "CREATE INDEX changes_by_key ON changes (target, db, store, key)",
    # 6: the inspector's record search (`search.py`): a trigram index of each record's key and
    # value leaves, kept in step with the snapshot by triggers.
    search_index(),
    # 7: the search index again, without the per-record sizes nothing ranks by (1% of the DB);
    # the records changed since first seen in the order of that change (`search.py`'s
    # last_changed order: the others are in first-seen order, walked by id); a key's history
    # found by its key alone (a third of the size: the key is rarely in more than a few stores).
    """
    DROP INDEX changes_by_key;
    CREATE INDEX changes_by_key ON changes (key);
    DROP TRIGGER snapshot_search_insert;
    DROP TRIGGER snapshot_search_update;
    DROP TRIGGER snapshot_search_delete;
    DROP TABLE snapshot_search;
    """
    + search_index(", columnsize=0")
    + """
    CREATE INDEX snapshot_changed ON snapshot (target, origin, db, store, last_changed_run)
        WHERE last_changed_run <> first_seen_run
    """,
    # 8: what started a run: NULL for a scheduled or one-shot harvest, 'event' for one that
    # IndexedDB change events triggered (watch mode), with how many events its batch held. The
    # stores it read are its run_stores.
    """
    ALTER TABLE runs ADD COLUMN trigger TEXT;
    ALTER TABLE runs ADD COLUMN trigger_events INTEGER
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
# Tables every version has: a DB lacking one is not a state DB (or lost part of its schema).
TABLES = ("runs", "run_stores", "stores", "snapshot", "changes")


def contains(text: str | None, needle: str) -> bool:
    """The SQL function `search_contains(text, needle)` of every connection (`search.py`):
    whether `text` holds `needle` (lower case), in any case. Ours because SQLite's `lower` and
    `LIKE` fold ASCII letters only."""
    return text is not None and needle in text.lower()


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A new connection to the DB file `path` (`mode=ro` when `readonly`: it never creates one)."""
    uri = f"file:{quote(str(path))}?mode={'ro' if readonly else 'rwc'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.create_function("search_contains", 2, contains, deterministic=True)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit survives power loss, so its deleted spool is never needed again.
            conn.execute("PRAGMA synchronous = FULL")
            # A first snapshot grows the WAL to the size of the store; give the disk back after.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    except sqlite3.Error as exc:
        raise sqlite_failure(path, "opening", exc) from exc
    return conn


def create_db(path: Path) -> None:
    """Make the DB file `path` (0600) at this schema version, unless another process just did.

    The DB is built whole under a temporary name and then linked into place, so a `state.db`
    that exists was always complete once: an empty or half-made one is damage, never a DB that
    a crash interrupted in the making.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
    os.close(fd)  # mkstemp made it 0600; SQLite gives the files it adds the same mode.
    made = Path(name)
    try:
        # A rollback journal, not WAL: every page is in the file itself when it is linked.
        conn = sqlite3.connect(made, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            migrate(conn, path)
        finally:
            conn.close()
        # A link, unlike a rename, never replaces a DB another process made meanwhile.
        with contextlib.suppress(FileExistsError):
            os.link(made, path)
    except sqlite3.Error as exc:
        raise sqlite_failure(path, "creating", exc) from exc
    finally:
        made.unlink(missing_ok=True)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make the names just made or moved in `folder` survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction, taken at once so that it never fails halfway for a lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations the DB lacks, each in a transaction of its own.

    The caller checked the DB first (`integrity.check_db`): it is ours, and not newer.
    """
    version = schema_version(conn)
    for number in range(version, SCHEMA_VERSION):
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE; {_MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; "
                "COMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateError(
                f"migrating the state database {path} to version {number + 1} failed: {exc}"
            ) from exc
