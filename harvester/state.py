"""The state DB: runs, stores, the committed snapshot and the change history (SQLite).

`docs/state.md` documents the schema. The committed snapshot changes only in `commit_run`, in
one transaction per run, so a crash anywhere leaves the last committed state intact. Every
connection runs in autocommit mode with explicit transactions: Python's implicit BEGIN would
otherwise hold a write transaction open across a capture's awaits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

from harvester.errors import StateError
from harvester.redaction import Redactor, redact
from harvester.timefmt import iso_utc

DB_NAME = "state.db"
SPOOL_DIR = "spool"
RunStatus = Literal["running", "read", "committed", "failed"]
RUN_STATUSES: tuple[str, ...] = ("running", "read", "committed", "failed")
# Keys per `IN (…)` lookup: far below SQLite's variable limit, big enough to amortize a query.
LOOKUP_CHUNK = 500
# Problems kept per store and run: a store of bad records must not bloat the run row.
MAX_PROBLEMS = 100
# Writes wait this long for a commit in progress (a first snapshot of millions of records).
BUSY_TIMEOUT_MS = 600_000
COMMIT_CACHE_KB = 64 * 1024
WAL_LIMIT_BYTES = 64 * 1024 * 1024

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
)
SCHEMA_VERSION = len(_MIGRATIONS)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def state_db_path(state_dir: Path) -> Path:
    """Where the state DB of a state folder lives."""
    return state_dir / DB_NAME


def new_run_id(target: str, moment: datetime | None = None) -> str:
    """`<target>-<UTC timestamp>-<random>`, safe as a file name whatever the target is called."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"
    return f"{_UNSAFE.sub('_', target)[:64]}-{stamp}-{secrets.token_hex(3)}"


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _kept(problems: list[Any]) -> list[Any]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = {"key": None, "message": f"{len(problems) - MAX_PROBLEMS} more problems not kept"}
    return [*problems[:MAX_PROBLEMS], more]


def _key_path(text: str) -> str | list[str] | None:
    value = json.loads(text)
    return value if value is None or isinstance(value, str) else list(value)


@dataclass(frozen=True)
class RunStore:
    """One store as read by one run: schema, what was read, the diff counts, the problems."""

    db: str
    db_version: int
    store: str
    key_path: str | list[str] | None
    auto_increment: bool
    indexes: list[dict[str, Any]]  # {"name", "key_path", "unique", "multi_entry"}
    records: int  # records read
    bytes: int  # bytes of the value texts read
    rows: int  # changelog rows spooled (every record when the run is `full`)
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    complete: bool  # False: error or limit cut; then the store emitted no -D
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"key", "message"}
    seconds: float = 0.0


@dataclass(frozen=True)
class Run:
    """One harvest of one target."""

    id: str
    target: str
    status: RunStatus
    full: bool
    origin: str | None
    started_at: datetime
    read_at: datetime | None  # when its spool was complete
    finished_at: datetime | None  # when it was committed or failed
    seq: int | None  # commit order over all targets; None until committed
    pending: bool  # a complete spool waits to be sent and committed
    records: int
    bytes: int
    rows: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    incomplete_stores: int
    problems: list[dict[str, Any]]  # origin-level: {"db", "message"} (a database not opened)
    error: str | None


@dataclass(frozen=True)
class Store:
    """A store as of its last committed run."""

    target: str
    origin: str
    db: str
    store: str
    db_version: int
    key_path: str | list[str] | None
    auto_increment: bool
    indexes: list[dict[str, Any]]
    records: int  # records in the committed snapshot
    bytes: int  # UTF-8 bytes of their value texts
    first_run: str
    last_run: str
    last_changed_run: str | None
    last_complete: bool  # whether the last run read the whole store


@dataclass(frozen=True)
class SnapshotRecord:
    """A committed record (`value` is None only for history written before schema 2)."""

    key: str
    value: str | None
    value_hash: str
    first_seen_run: str | None
    last_changed_run: str | None


@dataclass(frozen=True)
class Change:
    """One row of the change history."""

    run_id: str
    target: str
    origin: str
    db: str
    store: str
    key: str
    op: str
    old_hash: str | None
    new_hash: str | None
    old_value: str | None  # the value a +U or -D replaced; None for +I


_RUN_COLUMNS = (
    "id, target, status, full, origin, started_at, read_at, finished_at, seq, pending, records, "
    "bytes, rows, inserted, updated, deleted, unchanged, incomplete_stores, problems, error"
)


def _run(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0],
        target=row[1],
        status=row[2],
        full=bool(row[3]),
        origin=row[4],
        started_at=datetime.fromisoformat(row[5]),
        read_at=_time(row[6]),
        finished_at=_time(row[7]),
        seq=row[8],
        pending=bool(row[9]),
        records=row[10],
        bytes=row[11],
        rows=row[12],
        inserted=row[13],
        updated=row[14],
        deleted=row[15],
        unchanged=row[16],
        incomplete_stores=row[17],
        problems=json.loads(row[18]),
        error=row[19],
    )


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{quote(str(path))}?mode={'ro' if readonly else 'rwc'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit survives power loss, so its deleted spool is never needed again.
            conn.execute("PRAGMA synchronous = FULL")
            # A first snapshot grows the WAL to the size of the store; give the disk back after.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state database {path}: {exc}") from exc
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StateError(
            f"the state database {path} has schema version {version}, newer than this "
            f"harvester's {SCHEMA_VERSION}: upgrade idb-harvester"
        )
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


class StateDB:
    """One state folder's SQLite database.

    Methods may be called from several threads. Reads use a read-only connection per thread and
    never wait for writes (WAL); small writes share one connection under a lock; a commit,
    a capture and streaming queries use connections of their own. A write may wait for a
    commit in progress: async code makes its writes in a thread (`asyncio.to_thread`).
    """

    def __init__(
        self,
        path: Path,
        *,
        keep_runs: int = 50,
        readonly: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.keep_runs = keep_runs
        self.readonly = readonly
        # Run errors quote URLs, page text and Flink messages, any of which may hold a secret
        # from the config (a login URL, a password a page echoes, a statement's credentials).
        self._secrets = Redactor(secrets)
        self._lock = threading.RLock()
        self._conn = _connect(path, readonly=readonly)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        keep_runs: int = 50,
        readonly: bool = False,
        secrets: Iterable[str] = (),
    ) -> StateDB:
        """Open (and create or migrate, unless `readonly`) the state DB of `state_dir`.

        `secrets`, and those of the process's log (`redaction.redact`), are masked in every run
        error written.
        """
        path = state_db_path(state_dir)
        if readonly:
            if not path.is_file():
                raise StateError(f"no state database at {path}; has a harvest run yet?")
            db = cls(path, keep_runs=keep_runs, readonly=True)
            version = db._conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                db.close()
                raise StateError(
                    f"the state database {path} has schema version {version}, this harvester "
                    f"reads {SCHEMA_VERSION}: run `harvester harvest` once to migrate it"
                )
            return db
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it; SQLite gives its -wal and -shm the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        path.chmod(0o600)
        db = cls(path, keep_runs=keep_runs, secrets=secrets)
        try:
            _migrate(db._conn, path)
        except BaseException:
            db.close()
            raise
        return db

    @property
    def spool_dir(self) -> Path:
        """The folder of this state folder's spool files."""
        return self.path.parent / SPOOL_DIR

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self, *, readonly: bool = True) -> sqlite3.Connection:
        """A new connection to this DB (read-only by default); the caller closes it."""
        return _connect(self.path, readonly=readonly)

    def _write(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        with self._lock:
            try:
                return self._conn.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise StateError(f"writing the state database {self.path} failed: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the shared connection."""
        with self._lock:
            try:
                with _transaction(self._conn) as conn:
                    yield conn
            except sqlite3.Error as exc:
                raise StateError(f"writing the state database {self.path} failed: {exc}") from exc

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = _connect(self.path, readonly=True)
            with self._lock:
                self._readers.append(reader)
        try:
            return reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"reading the state database {self.path} failed: {exc}") from exc

    def writable(self) -> bool:
        """True when the DB takes writes (a commit in progress counts as taking them)."""
        if self.readonly:
            return False
        try:
            conn = _connect(self.path, readonly=False)
        except StateError:
            return False
        try:
            conn.execute("PRAGMA busy_timeout = 1000")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            return getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY"
        finally:
            conn.close()
        return True

    # ---- the life of a run ------------------------------------------------------------------

    def start_run(self, target: str, *, full: bool = False) -> str:
        """Record a new `running` run of `target`; its id."""
        run_id = new_run_id(target)
        self._write(
            "INSERT INTO runs (id, target, status, full, started_at) "
            "VALUES (?, ?, 'running', ?, ?)",
            (run_id, target, int(full), iso_utc()),
        )
        return run_id

    def _store_rows(self, run_id: str, stores: Iterable[RunStore]) -> list[tuple[Any, ...]]:
        return [
            (
                run_id,
                s.db,
                s.store,
                s.db_version,
                json.dumps(s.key_path),
                int(s.auto_increment),
                json.dumps(s.indexes),
                s.records,
                s.bytes,
                s.rows,
                s.inserted,
                s.updated,
                s.deleted,
                s.unchanged,
                int(s.complete),
                json.dumps(_kept(s.problems)),
                s.seconds,
            )
            for s in stores
        ]

    def _save_stores(
        self, conn: sqlite3.Connection, run_id: str, stores: Sequence[RunStore]
    ) -> None:
        conn.execute("DELETE FROM run_stores WHERE run_id = ?", (run_id,))
        conn.executemany(
            "INSERT INTO run_stores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._store_rows(run_id, stores),
        )
        conn.execute(
            """UPDATE runs SET
                records = (SELECT coalesce(sum(records), 0) FROM run_stores WHERE run_id = :id),
                bytes = (SELECT coalesce(sum(bytes), 0) FROM run_stores WHERE run_id = :id),
                inserted = (SELECT coalesce(sum(inserted), 0) FROM run_stores WHERE run_id = :id),
                updated = (SELECT coalesce(sum(updated), 0) FROM run_stores WHERE run_id = :id),
                deleted = (SELECT coalesce(sum(deleted), 0) FROM run_stores WHERE run_id = :id),
                unchanged = (SELECT coalesce(sum(unchanged), 0) FROM run_stores
                             WHERE run_id = :id),
                incomplete_stores = (SELECT count(*) FROM run_stores
                                     WHERE run_id = :id AND NOT complete)
            WHERE id = :id""",
            {"id": run_id},
        )

    def mark_read(
        self,
        run_id: str,
        *,
        origin: str,
        stores: Sequence[RunStore],
        rows: int,
        problems: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """The run's spool is complete: status `read`, pending until committed."""
        with self._writing() as conn:
            status = self._status(conn, run_id)
            if status != "running":
                raise StateError(f"run {run_id} is {status}, not running: cannot mark it read")
            self._save_stores(conn, run_id, stores)
            conn.execute(
                "UPDATE runs SET status = 'read', pending = 1, origin = ?, rows = ?, read_at = ?, "
                "problems = ? WHERE id = ?",
                (origin, rows, iso_utc(), json.dumps(_kept(list(problems))), run_id),
            )

    def fail_run(
        self,
        run_id: str,
        error: str,
        *,
        origin: str | None = None,
        stores: Sequence[RunStore] | None = None,
        problems: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Mark a run `failed` with `error`; a pending spool stays pending, a commit stays.

        `origin`, `stores` and `problems` record what a failed read got through.
        """
        with self._writing() as conn:
            status = self._status(conn, run_id)
            if status == "committed":
                return
            if stores is not None:
                self._save_stores(conn, run_id, stores)
            if problems is not None:
                conn.execute(
                    "UPDATE runs SET problems = ? WHERE id = ?",
                    (json.dumps(_kept(list(problems))), run_id),
                )
            conn.execute(
                "UPDATE runs SET status = 'failed', error = ?, origin = coalesce(?, origin), "
                "finished_at = ? WHERE id = ?",
                (self._redact(error), origin, iso_utc(), run_id),
            )

    def drop_pending(self, run_id: str, error: str) -> None:
        """The run's spool is gone or unusable: it can never be sent, so it stops pending."""
        self._write(
            "UPDATE runs SET status = 'failed', pending = 0, error = ?, "
            "finished_at = coalesce(finished_at, ?) WHERE id = ? AND status != 'committed'",
            (self._redact(error), iso_utc(), run_id),
        )

    def _redact(self, error: str) -> str:
        # The log's secrets include those of a config reloaded since this DB was opened.
        return redact(self._secrets.redact(error))

    @staticmethod
    def _status(conn: sqlite3.Connection, run_id: str) -> str:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StateError(f"no run {run_id!r} in the state database")
        return str(row[0])

    def commit_run(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Apply a run's spooled rows to the snapshot, history and stores in one transaction.

        The snapshot decides each row's real op (a `--full` run spools every record as +I), so
        the history holds only true changes. Returns False, changing nothing, when the run was
        already committed: a spool sent twice never commits twice.
        """
        conn = self.connect(readonly=False)
        # A big first snapshot dirties index pages all over; spilling them early costs twice.
        conn.execute(f"PRAGMA cache_size = -{COMMIT_CACHE_KB}")
        try:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT target, origin, status, pending FROM runs WHERE id = ?", (run_id,)
                ).fetchone()
                if row is None:
                    raise StateError(f"no run {run_id!r} in the state database")
                target, origin, status, pending = row
                if status == "committed":
                    return False
                if not pending:
                    raise StateError(f"run {run_id} ({status}) has no spool to commit")
                applier = _Applier(conn, run_id=run_id, target=target, origin=origin)
                applier.apply(rows)
                self._commit_stores(conn, run_id, target, origin, applier)
                seq = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM runs").fetchone()[0]
                conn.execute(
                    "UPDATE runs SET status = 'committed', pending = 0, seq = ?, "
                    "finished_at = ? WHERE id = ?",
                    (seq, iso_utc(), run_id),
                )
                self._prune(conn, target)
            return True
        except sqlite3.Error as exc:
            raise StateError(f"committing run {run_id} failed: {exc}") from exc
        finally:
            conn.close()

    @staticmethod
    def _commit_stores(
        conn: sqlite3.Connection, run_id: str, target: str, origin: str, applier: _Applier
    ) -> None:
        stores = conn.execute(
            "SELECT db, store, db_version, key_path, auto_increment, indexes, complete "
            "FROM run_stores WHERE run_id = ?",
            (run_id,),
        ).fetchall()
        for db, store, db_version, key_path, auto_increment, indexes, complete in stores:
            records = conn.execute(
                "SELECT count(*) FROM snapshot "
                "WHERE target = ? AND origin = ? AND db = ? AND store = ?",
                (target, origin, db, store),
            ).fetchone()[0]
            changed = run_id if (db, store) in applier.changed else None
            conn.execute(
                """INSERT INTO stores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (target, origin, db, store) DO UPDATE SET
                    db_version = excluded.db_version, key_path = excluded.key_path,
                    auto_increment = excluded.auto_increment, indexes = excluded.indexes,
                    records = excluded.records, bytes = stores.bytes + excluded.bytes,
                    last_run = excluded.last_run,
                    last_changed_run = coalesce(excluded.last_changed_run, last_changed_run),
                    last_complete = excluded.last_complete""",
                (
                    target,
                    origin,
                    db,
                    store,
                    db_version,
                    key_path,
                    auto_increment,
                    indexes,
                    records,
                    applier.byte_delta.get((db, store), 0),
                    run_id,
                    run_id,
                    changed,
                    complete,
                ),
            )

    def _prune(self, conn: sqlite3.Connection, target: str) -> None:
        """Keep the newest `keep_runs` runs of `target` (and every pending one)."""
        old = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM runs WHERE target = ? AND status IN ('committed', 'failed') "
                "AND pending = 0 ORDER BY started_at DESC LIMIT -1 OFFSET ?",
                (target, self.keep_runs),
            )
        ]
        for run_id in old:
            conn.execute("DELETE FROM changes WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM run_stores WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---- queries (read-only; what `harvester.inspect` builds on) -----------------------------

    def get_run(self, run_id: str) -> Run | None:
        rows = self._rows(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def list_runs(
        self,
        *,
        target: str | None = None,
        status: RunStatus | Sequence[RunStatus] | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Runs, newest first, optionally of one target and/or in given statuses."""
        where, params = ["1"], []
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} "
            f"ORDER BY started_at DESC, rowid DESC LIMIT {-1 if limit is None else int(limit)}"
        )
        return [_run(row) for row in self._rows(sql, params)]

    def pending_runs(self, target: str | None = None) -> list[Run]:
        """Runs whose complete spool waits to be sent and committed, oldest first."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE pending = 1 AND status != 'committed'"
        params: list[Any] = []
        if target is not None:
            sql += " AND target = ?"
            params.append(target)
        return [_run(row) for row in self._rows(sql + " ORDER BY started_at, rowid", params)]

    def run_stores(self, run_id: str) -> list[RunStore]:
        """The stores a run read, in reading order."""
        rows = self._rows(
            "SELECT db, db_version, store, key_path, auto_increment, indexes, records, bytes, "
            "rows, inserted, updated, deleted, unchanged, complete, problems, seconds "
            "FROM run_stores WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        )
        return [
            RunStore(
                db=r[0],
                db_version=r[1],
                store=r[2],
                key_path=_key_path(r[3]),
                auto_increment=bool(r[4]),
                indexes=json.loads(r[5]),
                records=r[6],
                bytes=r[7],
                rows=r[8],
                inserted=r[9],
                updated=r[10],
                deleted=r[11],
                unchanged=r[12],
                complete=bool(r[13]),
                problems=json.loads(r[14]),
                seconds=r[15],
            )
            for r in rows
        ]

    def list_stores(self, *, target: str | None = None) -> list[Store]:
        """Every store with a committed run, by target, origin, db and store name."""
        sql = "SELECT * FROM stores"
        params: list[Any] = []
        if target is not None:
            sql += " WHERE target = ?"
            params.append(target)
        rows = self._rows(sql + " ORDER BY target, origin, db, store", params)
        return [
            Store(
                target=r[0],
                origin=r[1],
                db=r[2],
                store=r[3],
                db_version=r[4],
                key_path=_key_path(r[5]),
                auto_increment=bool(r[6]),
                indexes=json.loads(r[7]),
                records=r[8],
                bytes=r[9],
                first_run=r[10],
                last_run=r[11],
                last_changed_run=r[12],
                last_complete=bool(r[13]),
            )
            for r in rows
        ]

    def iter_records(
        self,
        target: str,
        origin: str,
        db: str,
        store: str,
        *,
        key: str | None = None,
        as_of: str | None = None,
    ) -> Iterator[SnapshotRecord]:
        """A store's committed records, streamed (in first-seen order for the latest state).

        `key` (typed JSON text) picks one record. `as_of` (a committed run of `target`) gives the
        store as that run left it, from the change history: records changed since then come
        with their value and hash as of that run, and `last_changed_run` None.
        """
        ident = {"target": target, "origin": origin, "db": db, "store": store, "key": key}
        one_key = "" if key is None else "AND key = :key"
        if as_of is None:
            sql = f"""SELECT key, value, value_hash, first_seen_run, last_changed_run
                FROM snapshot WHERE target = :target AND origin = :origin AND db = :db
                AND store = :store {one_key} ORDER BY id"""
        else:
            run = self.get_run(as_of)
            if run is None or run.target != target or run.seq is None:
                raise StateError(
                    f"run {as_of!r} is not a committed run of target {target!r} "
                    f"(the state DB keeps the last {self.keep_runs} runs per target)"
                )
            ident["seq"] = run.seq
            sql = f"""WITH later AS (
                    SELECT c.key, c.op, c.old_hash, c.old_value, r.seq FROM changes c
                    JOIN runs r ON r.id = c.run_id
                    WHERE r.target = :target AND r.seq > :seq AND c.origin = :origin
                    AND c.db = :db AND c.store = :store {"" if key is None else "AND c.key = :key"}
                ), first AS (
                    -- SQLite takes the bare columns from the row holding min(seq).
                    SELECT key, op, old_hash, old_value, min(seq) FROM later GROUP BY key
                )
                SELECT key, value, value_hash, first_seen_run, last_changed_run FROM snapshot
                WHERE target = :target AND origin = :origin AND db = :db AND store = :store
                {one_key} AND key NOT IN (SELECT key FROM first)
                UNION ALL
                SELECT first.key, first.old_value, first.old_hash, s.first_seen_run, NULL FROM first
                LEFT JOIN snapshot s ON s.target = :target AND s.origin = :origin
                AND s.db = :db AND s.store = :store AND s.key = first.key
                WHERE first.op != '+I'"""
        yield from (SnapshotRecord(*row) for row in self._stream(sql, ident))

    def run_changes(self, run_id: str) -> Iterator[Change]:
        """The change history of one committed run, streamed in the order it was applied."""
        sql = (
            "SELECT run_id, target, origin, db, store, key, op, old_hash, new_hash, old_value "
            "FROM changes WHERE run_id = ? ORDER BY rowid"
        )
        yield from (Change(*row) for row in self._stream(sql, (run_id,)))

    def _stream(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> Iterator[Any]:
        # A connection of its own, so a slow consumer never holds the shared one.
        conn = self.connect(readonly=True)
        try:
            cursor = conn.execute(sql, params)
            while batch := cursor.fetchmany(1000):
                yield from batch
        except sqlite3.Error as exc:
            raise StateError(f"reading the state database {self.path} failed: {exc}") from exc
        finally:
            conn.close()


class _Applier:
    """Applies spooled rows to the snapshot and history inside the commit's transaction."""

    def __init__(self, conn: sqlite3.Connection, *, run_id: str, target: str, origin: str) -> None:
        self.conn = conn
        self.run_id = run_id
        self.target = target
        self.origin = origin
        self.changed: set[tuple[str, str]] = set()
        self.byte_delta: dict[tuple[str, str], int] = {}

    def apply(self, rows: Iterable[Mapping[str, Any]]) -> None:
        batch: list[Mapping[str, Any]] = []
        keys: set[str] = set()
        where: tuple[str, str] | None = None
        for row in rows:
            if row.get("run_id") != self.run_id:
                raise StateError(
                    f"spool row of run {row.get('run_id')!r} found in the spool of {self.run_id}"
                )
            here = (row["db_name"], row["store"])
            # A batch holds one store and distinct keys, so its statements commute.
            if here != where or row["key"] in keys or len(batch) >= LOOKUP_CHUNK:
                if batch and where is not None:
                    self._flush(where, batch)
                batch, keys, where = [], set(), here
            batch.append(row)
            keys.add(row["key"])
        if batch and where is not None:
            self._flush(where, batch)

    def _flush(self, where: tuple[str, str], rows: list[Mapping[str, Any]]) -> None:
        db, store = where
        ident = (self.target, self.origin, db, store)
        keys = [row["key"] for row in rows]
        current = dict(
            self.conn.execute(
                "SELECT key, value_hash FROM snapshot WHERE target = ? AND origin = ? AND db = ? "
                f"AND store = ? AND key IN ({', '.join('?' * len(keys))})",
                (*ident, *keys),
            ).fetchall()
        )
        inserts, updates, deletes = [], [], []
        history: list[tuple[str, str, str | None, str | None]] = []  # key, op, old, new hash
        grown = 0
        for row in rows:
            key, old = row["key"], current.get(row["key"])
            if row["op"] == "-D":
                if old is not None:
                    deletes.append((*ident, key))
                    history.append((key, "-D", old, None))
                continue
            value, new = row["value"], row["value_hash"]
            if old == new:
                continue
            grown += len(value.encode("utf-8", "surrogatepass"))
            if old is None:
                inserts.append((*ident, key, value, new, self.run_id, self.run_id))
                history.append((key, "+I", None, new))
            else:
                updates.append((value, new, self.run_id, *ident, key))
                history.append((key, "+U", old, new))
        if not history:
            return
        replaced = [key for key, op, _, _ in history if op != "+I"]
        old_values: dict[str, str] = {}
        if replaced:
            old_values = dict(
                self.conn.execute(
                    "SELECT key, value FROM snapshot WHERE target = ? AND origin = ? AND db = ? "
                    f"AND store = ? AND key IN ({', '.join('?' * len(replaced))})",
                    (*ident, *replaced),
                ).fetchall()
            )
        shrunk = sum(len(value.encode("utf-8", "surrogatepass")) for value in old_values.values())
        self.conn.executemany(
            "INSERT INTO snapshot (target, origin, db, store, key, value, value_hash, "
            "first_seen_run, last_changed_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            inserts,
        )
        self.conn.executemany(
            "UPDATE snapshot SET value = ?, value_hash = ?, last_changed_run = ? "
            "WHERE target = ? AND origin = ? AND db = ? AND store = ? AND key = ?",
            updates,
        )
        self.conn.executemany(
            "DELETE FROM snapshot WHERE target = ? AND origin = ? AND db = ? AND store = ? "
            "AND key = ?",
            deletes,
        )
        self.conn.executemany(
            "INSERT INTO changes (run_id, target, origin, db, store, key, op, old_hash, new_hash, "
            "old_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self.run_id, *ident, key, op, old, new, old_values.get(key))
                for key, op, old, new in history
            ],
        )
        self.changed.add(where)
        self.byte_delta[where] = self.byte_delta.get(where, 0) + grown - shrunk
