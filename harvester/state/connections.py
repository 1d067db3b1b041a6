"""The connections of one open state DB, and the error every SQLite failure becomes
(`failures.sqlite_failure`).

Reads use a read-only connection per thread and never wait for writes (WAL); small writes share
one connection under a lock; a commit, a capture and streaming queries use connections of their
own, so a slow consumer never holds a shared one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from harvester.errors import StateError
from harvester.state.failures import sqlite_failure
from harvester.state.schema import connect, transaction

Params = Sequence[Any] | Mapping[str, Any]
STREAM_BATCH = 1000
# Keys per `IN (…)` lookup: far below SQLite's variable limit, big enough to amortize a query.
LOOKUP_CHUNK = 500


def marks(n: int) -> str:
    """The `?, ?, …` of an `IN (…)` of `n` values."""
    return ", ".join("?" * n)


def tuples(n: int, width: int) -> str:
    """The `(?, ?), (?, ?), …` of a `VALUES` of `n` rows of `width` values."""
    row = f"({marks(width)})"
    return ", ".join([row] * n)


class Closing(ABC):
    """`with` support for the state package's objects that hold connections: `close()` on exit."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Connections:
    """Every connection to the DB file `path`; methods may be called from several threads."""

    def __init__(self, path: Path, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        self.shared = connect(path, readonly=readonly)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    def close(self) -> None:
        with self._lock:
            self.shared.close()
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    def new(self, *, readonly: bool) -> sqlite3.Connection:
        """A connection of the caller's own, who closes it."""
        return connect(self.path, readonly=readonly)

    @contextlib.contextmanager
    def failing(self, doing: str) -> Iterator[None]:
        """Turn a SQLite error into a `StateError` saying what failed (a refusal, for damage)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise sqlite_failure(self.path, doing, exc) from exc

    def write(self, sql: str, params: Params = ()) -> int:
        """One statement on the shared connection; the rows it changed."""
        with self._lock, self.failing("writing"):
            return self.shared.execute(sql, params).rowcount

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the shared connection."""
        with self._lock, self.failing("writing"), transaction(self.shared) as conn:
            yield conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = connect(self.path, readonly=True)
            with self._lock:
                self._readers.append(reader)
        return reader

    def rows(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """A query's rows, on this thread's read-only connection."""
        with self.failing("reading"):
            return self._reader().execute(sql, params).fetchall()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's read-only connection in one read transaction: every query in it sees
        the same commit."""
        reader = self._reader()
        with self.failing("reading"):
            reader.execute("BEGIN")
            try:
                yield reader
            finally:
                reader.execute("COMMIT")

    def stream(self, sql: str, params: Params = ()) -> Iterator[sqlite3.Row]:
        """A query's rows, streamed on a read-only connection of their own."""
        conn = connect(self.path, readonly=True)
        try:
            with self.failing("reading"):
                cursor = conn.execute(sql, params)
                while batch := cursor.fetchmany(STREAM_BATCH):
                    yield from batch
        finally:
            conn.close()

    def writable(self) -> bool:
        """True when the DB takes writes (a commit in progress counts as taking them)."""
        if self.readonly:
            return False
        try:
            conn = connect(self.path, readonly=False)
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
