"""Change capture: diff a run's store reads against the committed snapshot, spool the rows.

Memory stays bounded by one batch: each batch's keys are looked up in the snapshot with keyed
queries, and the snapshot rows matched are marked in a bitmap over snapshot row ids (one bit per
id: 125 KB per million), so that after a complete read the rows never seen are found by one
streamed scan of the store's keys. A bitmap, not the temporary table of seen ids tried first:
inserting every matched id cost more than the lookups themselves. The `+U` and `-D` rows carry
the committed value they replace (`old_value`), fetched by row id for those rows only, a chunk
at a time. The capture reads the snapshot through `state.SnapshotView`, read-only: nothing it
does can touch the committed snapshot. A store the read finds gone (deleted, or its database
removed) gets a `-D` for every committed record the same way, before the run's schema rows
(`spool_schema`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from harvester.codec import value_hash
from harvester.spool import SpoolWriter
from harvester.state import LOOKUP_CHUNK, Op, ReadScope, RunStore, StateDB, change_op
from harvester.surrogates import escape_surrogates
from harvester.timefmt import iso_utc

if TYPE_CHECKING:
    from harvester.reader import IndexSchema, Problem, Record, StoreSchema


class StoreReadLike(AsyncIterable[list["Record"]], Protocol):
    """What capture needs of `reader.StoreRead` (batches in key order, then the outcome)."""

    complete: bool
    problems: list[Problem]
    records: int
    bytes: int

    async def values(self, positions: Sequence[int]) -> list[str]:
        """Value texts of the last batch's records at `positions` (a hash-first read's)."""
        ...


def _index(index: IndexSchema) -> dict[str, Any]:
    return {
        "name": index.name,
        "key_path": index.key_path,
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
        self._snapshot = state.open_snapshot(target=target, origin=origin)

    def close(self) -> None:
        self._snapshot.close()

    def hash_first(self, schema: StoreSchema) -> bool:
        """Whether the store is best read hash first: it has committed records to compare
        with, and this is not a `--full` run (which sends every value)."""
        db, name = escape_surrogates(schema.db), escape_surrogates(schema.name)
        return not self.full and self._snapshot.count(db, name) > 0

    async def store(self, schema: StoreSchema, read: StoreReadLike) -> RunStore:
        """Stream one store's read into the spool; its counts (the run's row for the store)."""
        started = time.monotonic()
        # Names, like keys, must be valid UTF-8 for SQLite and the spool: a page may use any.
        db, name = escape_surrogates(schema.db), escape_surrogates(schema.name)
        self.spool.begin_store(db=db, db_version=schema.db_version, store=name)
        write, full = self.spool.write, self.full
        rows_before = self.spool.rows
        inserted = updated = unchanged = deleted = matched = 0
        # Ids only grow past this for rows committed later, which this capture cannot match.
        seen = bytearray((self._snapshot.top_id() >> 3) + 1)
        async for batch in read:
            at = iso_utc()
            # Keys must be valid UTF-8 for SQLite; the escape is what the spool writes too.
            keys = [escape_surrogates(record.key) for record in batch]
            found = self._snapshot.lookup(db, name, keys)
            values, hashes = await self._values(read, batch, keys, found)
            ops: list[Op | None] = []
            replaced: list[int] = []  # snapshot row ids of the batch's +U keys
            for key, new_hash in zip(keys, hashes, strict=True):
                old_hash = None
                hit = found.get(key)
                if hit is not None:
                    row_id, old_hash = hit
                    bit = 1 << (row_id & 7)
                    # A key read twice (only a misbehaving reader does that) counts once.
                    if not seen[row_id >> 3] & bit:
                        seen[row_id >> 3] |= bit
                        matched += 1
                op = change_op(old_hash, new_hash)
                ops.append(op)
                if op is None:
                    unchanged += 1
                elif op == "+I":
                    inserted += 1
                else:
                    updated += 1
                    replaced.append(found[key][0])
            if full:
                # Every record is spooled as +I, which carries no before-image.
                for key, value, new_hash in zip(keys, values, hashes, strict=True):
                    write(key, "+I", value, None, new_hash, at)
                continue
            # Only the replaced values are read: values can be large, and most keys are unchanged.
            old = self._snapshot.values(db, name, replaced) if replaced else {}
            for key, value, new_hash, op in zip(keys, values, hashes, ops, strict=True):
                if op is not None:
                    before = old.get(found[key][0]) if op == "+U" else None
                    write(key, op, value, before, new_hash, at)
        if read.complete:
            deleted = self._deletions(db, name, seen, matched)
        return RunStore(
            db=db,
            db_version=schema.db_version,
            store=name,
            key_path=schema.key_path,
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

    @staticmethod
    async def _values(
        read: StoreReadLike,
        batch: list[Record],
        keys: list[str],
        found: dict[str, tuple[int, str]],
    ) -> tuple[list[str | None], list[str]]:
        """The batch's value texts and hashes, asking a hash-first read for the values of the
        keys that are new or whose hash differs from the snapshot's (None: unchanged, unasked).

        The hash of a value asked for is taken again here, so a hash the page got wrong can
        only cost a read of that value, never a change missed or made up.
        """
        values: list[str | None] = [record.value for record in batch]
        hashes = [record.value_hash for record in batch]
        wanted = [
            i
            for i, (key, record) in enumerate(zip(keys, batch, strict=True))
            if record.value is None
            and ((hit := found.get(key)) is None or hit[1] != record.value_hash)
        ]
        if wanted:
            for i, text in zip(wanted, await read.values(wanted), strict=True):
                values[i], hashes[i] = text, value_hash(text)
        return values, hashes

    def _deletions(self, db: str, store: str, seen: bytearray, matched: int) -> int:
        """Spool `-D`, with the value it deletes, for every snapshot key of the store that this
        read did not see."""
        if self._snapshot.count(db, store) == matched:
            return 0
        unseen = (
            (row_id, key)
            for row_id, key in self._snapshot.ids(db, store)
            if not seen[row_id >> 3] & (1 << (row_id & 7))
        )
        return self._spool_gone(db, store, unseen)

    def gone(self, *, db: str, db_version: int, store: str) -> int:
        """Spool `-D`, with the value it deletes, for every committed record of a store that the
        run found gone (deleted, or its database removed: `StateDB.schema_read`); how many.

        Streamed from the snapshot like the deletions of a read store, so a store of a million
        records costs a chunk of values in memory, not the store."""
        self.spool.begin_store(db=db, db_version=db_version, store=store)
        return self._spool_gone(db, store, self._snapshot.ids(db, store))

    def _spool_gone(self, db: str, store: str, rows: Iterable[tuple[int, str]]) -> int:
        """Spool `-D` for the snapshot rows `rows` (row id, key), a chunk at a time; how many."""
        at = iso_utc()
        deleted = 0
        gone: list[tuple[int, str]] = []  # bounded memory: one chunk of keys and their values
        for row in rows:
            gone.append(row)
            if len(gone) >= LOOKUP_CHUNK:
                deleted += self._spool_deletes(db, store, gone, at)
                gone = []
        return deleted + (self._spool_deletes(db, store, gone, at) if gone else 0)

    def _spool_deletes(self, db: str, store: str, gone: list[tuple[int, str]], at: str) -> int:
        """Spool `-D` for the snapshot rows `gone` (row id, key) with their values; how many."""
        old = self._snapshot.values(db, store, [row_id for row_id, _ in gone])
        for row_id, key in gone:
            self.spool.write(key, "-D", None, old.get(row_id), None, at)
        return len(gone)


def spool_schema(
    state: StateDB,
    writer: SpoolWriter,
    *,
    stores: Sequence[RunStore],
    problems: Sequence[dict[str, str | None]],
    scope: ReadScope,
) -> int:
    """Append, after the run's record rows, what its read changes in the schema; the `-D` rows
    among them. Blocking (the snapshot and the spool): async code runs it in a thread.

    First a `-D`, with its committed value, for every record of each store the read finds gone
    (deleted, or of a database removed: `StateDB.schema_read`, the schema history's rule), so
    that a sink dropping a table at its `-S` has had its rows deleted before; then the schema
    rows (+S, -S), the changes the commit will record, computed now from what `mark_read`
    saves, so the log carries them to Flink. The commit applies those `-D` like any other.
    """
    target, origin = writer.target, writer.origin
    read = state.schema_read(
        target=target, origin=origin, stores=stores, problems=problems, scope=scope
    )
    deleted = 0
    if read.gone:
        capture = Capture(state, writer, target=target, origin=origin)
        try:
            for gone in read.gone:
                deleted += capture.gone(db=gone.db, db_version=gone.db_version, store=gone.store)
        finally:
            capture.close()
    at = iso_utc()
    for row in read.rows:
        writer.write_schema(
            db=row.db,
            db_version=row.db_version,
            store=row.store,
            op=row.op,
            value=row.value,
            old_value=row.old_value,
            harvested_at=at,
        )
    return deleted
