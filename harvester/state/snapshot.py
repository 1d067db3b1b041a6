"""One target's committed snapshot as change capture reads it: keyed lookups and a key scan.

It reads through a read-only connection of its own, so nothing a capture does can touch the
committed snapshot, and a capture never waits for a commit (WAL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from harvester.state.connections import LOOKUP_CHUNK, Closing, Connections, marks
from harvester.state.schema import connect

SCAN_BATCH = 10_000
_STORE = "target = ? AND origin = ? AND db = ? AND store = ?"


class SnapshotView(Closing):
    """The snapshot of `target` at `origin`, read on a connection of its own; `close()` it."""

    def __init__(self, conns: Connections, *, target: str, origin: str) -> None:
        self.target = target
        self.origin = origin
        self._conns = conns
        self._conn = connect(conns.path, readonly=True)
        self._sql: dict[tuple[str, int], str] = {}

    def close(self) -> None:
        self._conn.close()

    def _rows(self, sql: str, params: Sequence[str | int]) -> list[sqlite3.Row]:
        with self._conns.failing("reading"):
            return self._conn.execute(sql, params).fetchall()

    def top_id(self) -> int:
        """The highest row id of the whole snapshot: only rows committed later have higher ones."""
        return int(self._rows("SELECT coalesce(max(id), 0) FROM snapshot", ())[0][0])

    def _chunks(
        self, columns: str, by: str, db: str, store: str, wanted: Sequence[str] | Sequence[int]
    ) -> Iterator[sqlite3.Row]:
        """`columns` of the store's rows whose `by` is one of `wanted`, LOOKUP_CHUNK at a time."""
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            sql = self._sql.get((by, len(chunk)))
            if sql is None:
                sql = self._sql[by, len(chunk)] = (
                    f"SELECT {columns} FROM snapshot WHERE {_STORE} "
                    f"AND {by} IN ({marks(len(chunk))})"
                )
            yield from self._rows(sql, (self.target, self.origin, db, store, *chunk))

    def lookup(self, db: str, store: str, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        """(row id, value hash) of each of `keys` that the store holds, by key."""
        rows = self._chunks("key, id, value_hash", "key", db, store, keys)
        return {key: (row_id, digest) for key, row_id, digest in rows}

    def values(self, db: str, store: str, ids: Sequence[int]) -> dict[int, str]:
        """The value text of each of the rows `ids` (from `lookup` or `ids`), by row id.

        Asked only for the rows a capture replaces or deletes: values can be large, and the
        unchanged majority never needs theirs.
        """
        rows = self._chunks("id, value", "id", db, store, ids)
        return {row_id: value for row_id, value in rows}

    def count(self, db: str, store: str) -> int:
        """How many records the store holds."""
        sql = f"SELECT count(*) FROM snapshot WHERE {_STORE}"
        return int(self._rows(sql, (self.target, self.origin, db, store))[0][0])

    def ids(self, db: str, store: str) -> Iterator[tuple[int, str]]:
        """(row id, key) of every record of the store, streamed."""
        with self._conns.failing("reading"):
            # Only the unique index is read (it holds key and id), not the values.
            cursor = self._conn.execute(
                f"SELECT id, key FROM snapshot WHERE {_STORE}",
                (self.target, self.origin, db, store),
            )
            while batch := cursor.fetchmany(SCAN_BATCH):
                for row in batch:
                    yield row[0], row[1]
