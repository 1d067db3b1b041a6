"""Change capture: diff a run's store reads against the committed snapshot, spool the rows.

Memory stays bounded by one batch: each batch's keys are looked up in the snapshot with keyed
queries, and the snapshot rows matched are marked in a bitmap over snapshot row ids (one bit per
id: 125 KB per million), so that after a complete read the rows never seen are found by one
streamed scan of the store's keys. A bitmap, not the temporary table of seen ids tried first:
inserting every matched id cost more than the lookups themselves. The capture reads the state DB
through a read-only connection of its own: nothing it does can touch the committed snapshot.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any, Protocol

from harvester.spool import SpoolWriter
from harvester.state import LOOKUP_CHUNK, RunStore, StateDB
from harvester.surrogates import escape_surrogates
from harvester.timefmt import iso_utc

if TYPE_CHECKING:
    from harvester.reader import Problem, Record, StoreSchema


class StoreReadLike(AsyncIterable[list["Record"]], Protocol):
    """What capture needs of `reader.StoreRead` (batches in key order, then the outcome)."""

    complete: bool
    problems: list[Problem]
    records: int
    bytes: int


def _index(index: Any) -> dict[str, Any]:
    return {
        "name": index.name,
        "key_path": list(index.key_path) if isinstance(index.key_path, tuple) else index.key_path,
        "unique": index.unique,
        "multi_entry": index.multi_entry,
    }


def _problem(problem: Problem) -> dict[str, Any]:
    return {"key": problem.key, "message": problem.message}


class Capture:
    """One run's change capture over the stores it reads; `close()` when done."""

    def __init__(
        self,
        state: StateDB,
        spool: SpoolWriter,
        *,
        target: str,
        origin: str,
        full: bool = False,
    ) -> None:
        self.spool = spool
        self.target = target
        self.origin = origin
        self.full = full
        self._conn = state.connect(readonly=True)
        self._sql: dict[int, str] = {}

    def close(self) -> None:
        self._conn.close()

    def _lookup_sql(self, n: int) -> str:
        sql = self._sql.get(n)
        if sql is None:
            sql = self._sql[n] = (
                "SELECT key, id, value_hash FROM snapshot WHERE target = ? AND origin = ? "
                f"AND db = ? AND store = ? AND key IN ({', '.join('?' * n)})"
            )
        return sql

    def _lookup(self, ident: tuple[str, ...], keys: list[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            cursor = self._conn.execute(self._lookup_sql(len(chunk)), (*ident, *chunk))
            found.update((key, (row_id, digest)) for key, row_id, digest in cursor)
        return found

    async def store(self, schema: StoreSchema, read: StoreReadLike) -> RunStore:
        """Stream one store's read into the spool; its counts (the run's row for the store)."""
        started = time.monotonic()
        # Names, like keys, must be valid UTF-8 for SQLite and the spool: a page may use any.
        db, name = escape_surrogates(schema.db), escape_surrogates(schema.name)
        ident = (self.target, self.origin, db, name)
        self.spool.begin_store(db=db, db_version=schema.db_version, store=name)
        write, full = self.spool.write, self.full
        rows_before = self.spool.rows
        inserted = updated = unchanged = deleted = matched = 0
        # Ids only grow past this for rows committed later, which this capture cannot match.
        top = self._conn.execute("SELECT coalesce(max(id), 0) FROM snapshot").fetchone()[0]
        seen = bytearray((top >> 3) + 1)
        async for batch in read:
            at = iso_utc()
            # Keys must be valid UTF-8 for SQLite; the escape is what the spool writes too.
            keys = [escape_surrogates(record.key) for record in batch]
            found = self._lookup(ident, keys)
            for key, record in zip(keys, batch, strict=True):
                hit = found.get(key)
                if hit is None:
                    inserted += 1
                    write(key, "+I", record.value, record.value_hash, at)
                    continue
                row_id = hit[0]
                bit = 1 << (row_id & 7)
                # A key read twice (only a misbehaving reader does that) counts once.
                if not seen[row_id >> 3] & bit:
                    seen[row_id >> 3] |= bit
                    matched += 1
                if hit[1] == record.value_hash:
                    unchanged += 1
                    if full:
                        write(key, "+I", record.value, record.value_hash, at)
                else:
                    updated += 1
                    write(key, "+I" if full else "+U", record.value, record.value_hash, at)
        if read.complete:
            deleted = self._deletions(ident, seen, matched)
        return RunStore(
            db=db,
            db_version=schema.db_version,
            store=name,
            key_path=list(schema.key_path)
            if isinstance(schema.key_path, tuple)
            else schema.key_path,
            auto_increment=schema.auto_increment,
            indexes=[_index(index) for index in schema.indexes],
            records=read.records,
            bytes=read.bytes,
            rows=self.spool.rows - rows_before,
            inserted=inserted,
            updated=updated,
            deleted=deleted,
            unchanged=unchanged,
            complete=read.complete,
            problems=[_problem(problem) for problem in read.problems],
            seconds=round(time.monotonic() - started, 3),
        )

    def _deletions(self, ident: tuple[str, ...], seen: bytearray, matched: int) -> int:
        """Spool `-D` for every snapshot key of the store that this read did not see."""
        total = self._conn.execute(
            "SELECT count(*) FROM snapshot WHERE target = ? AND origin = ? AND db = ? "
            "AND store = ?",
            ident,
        ).fetchone()[0]
        if total == matched:
            return 0
        at = iso_utc()
        deleted = 0
        # Only the unique index is read (it holds key and id), not the values.
        cursor = self._conn.execute(
            "SELECT id, key FROM snapshot WHERE target = ? AND origin = ? AND db = ? AND store = ?",
            ident,
        )
        while batch := cursor.fetchmany(10_000):
            for row_id, key in batch:
                if not seen[row_id >> 3] & (1 << (row_id & 7)):
                    self.spool.write(key, "-D", None, None, at)
                    deleted += 1
        return deleted
