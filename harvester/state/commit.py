"""The commit: a run's spooled rows applied to the snapshot, history and stores, then retention.

The committed snapshot changes only here, in one transaction per run, so a crash anywhere leaves
the last committed state intact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

from harvester.errors import StateError
from harvester.state.connections import LOOKUP_CHUNK, Connections, marks, tuples
from harvester.state.failures import sqlite_failure
from harvester.state.ops import Op, change_op
from harvester.state.retention import prune
from harvester.state.schema import transaction
from harvester.state.schemas import record_changes
from harvester.timefmt import iso_utc

COMMIT_CACHE_KB = 64 * 1024
_RECORD_OPS = frozenset(get_args(Op))


def commit_run(
    conns: Connections,
    run_id: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    delivered: bool,
    keep_runs: int,
    keep_failed_runs: int,
) -> bool:
    """Apply a run's spooled rows in one transaction; False, changing nothing, if committed.

    `delivered`: the rows were delivered by the send before it, so the run is consumed now; else
    it waits for the consumer's acknowledgement (`delivery.mark_consumed`), unless it has no rows.
    """
    conn = conns.new(readonly=False)
    # A big first snapshot dirties index pages all over; spilling them early costs twice.
    conn.execute(f"PRAGMA cache_size = -{COMMIT_CACHE_KB}")
    try:
        with transaction(conn):
            run = conn.execute(
                "SELECT target, origin, status, pending FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if run is None:
                raise StateError(f"no run {run_id!r} in the state database")
            if run["status"] == "committed":
                return False
            if not run["pending"]:
                raise StateError(f"run {run_id} ({run['status']}) has no spool to commit")
            applier = _Applier(conn, run_id=run_id, target=run["target"], origin=run["origin"])
            applier.apply(rows)
            applier.commit_stores()
            now = iso_utc()
            found = record_changes(conn, run_id, at=now)
            applier.forget_gone(found.gone_dbs, found.gone_stores)
            seq = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM runs").fetchone()[0]
            # An earlier attempt's error (a failed send) no longer describes the run.
            conn.execute(
                "UPDATE runs SET status = 'committed', pending = 0, error = NULL, seq = ?, "
                "finished_at = ? WHERE id = ?",
                (seq, now, run_id),
            )
            # An acknowledgement may have come before the commit: what it counted is kept.
            conn.execute(
                "UPDATE runs SET consumed_at = coalesce(consumed_at, finished_at), "
                "consumed_rows = max(consumed_rows, rows) WHERE id = ? AND (? OR rows = 0)",
                (run_id, delivered),
            )
            prune(conn, run["target"], keep_runs=keep_runs, keep_failed_runs=keep_failed_runs)
        return True
    except sqlite3.Error as exc:
        raise sqlite_failure(conns.path, f"committing run {run_id} to", exc) from exc
    finally:
        conn.close()


class _Applier:
    """Applies spooled rows to the snapshot and history inside the commit's transaction.

    The snapshot, not the spooled op, decides each row's change (`ops.change_op`), so the
    history holds only true changes. The rows are the run's, checked by the caller
    (`spool.checked_rows`): a `-D` has no value hash, any other row has one.
    """

    def __init__(self, conn: sqlite3.Connection, *, run_id: str, target: str, origin: str) -> None:
        self.conn = conn
        self.run_id = run_id
        self.target = target
        self.origin = origin
        self.changed: set[tuple[str, str]] = set()
        self.byte_delta: dict[tuple[str, str], int] = {}
        self.deleted: dict[tuple[str, str], int] = {}  # -D applied, per store

    def apply(self, rows: Iterable[Mapping[str, Any]]) -> None:
        batch: list[Mapping[str, Any]] = []
        keys: set[str] = set()
        where: tuple[str, str] | None = None
        for row in rows:
            if row["op"] not in _RECORD_OPS:
                # A schema row (+S, -S): `record_changes` finds those changes from the run's
                # stores, by the same comparison that wrote the rows at read time.
                continue
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

    def _current(self, ident: tuple[str, ...], keys: list[str], column: str) -> dict[str, str]:
        """`column` of the snapshot rows of `keys` in the store `ident`, by key."""
        rows = self.conn.execute(
            f"SELECT key, {column} FROM snapshot WHERE target = ? AND origin = ? AND db = ? "
            f"AND store = ? AND key IN ({marks(len(keys))})",
            (*ident, *keys),
        )
        return {row[0]: row[1] for row in rows}

    def _flush(self, where: tuple[str, str], rows: list[Mapping[str, Any]]) -> None:
        db, store = where
        ident = (self.target, self.origin, db, store)
        current = self._current(ident, [row["key"] for row in rows], "value_hash")
        inserts, updates, deletes = [], [], []
        history: list[tuple[str, str, str | None, str | None]] = []  # key, op, old, new hash
        grown = 0
        for row in rows:
            key, old = row["key"], current.get(row["key"])
            new: str | None = row["value_hash"]
            op = change_op(old, new)
            if op is None:
                continue
            history.append((key, op, old, new))
            if op == "-D":
                deletes.append(key)
                continue
            value = row["value"]
            grown += len(value.encode("utf-8", "surrogatepass"))
            if op == "+I":
                inserts.append((*ident, key, value, new, self.run_id, self.run_id))
            else:
                updates.append((key, value, new))
        if not history:
            return
        replaced = [key for key, op, _, _ in history if op != "+I"]
        old_values = self._current(ident, replaced, "value") if replaced else {}
        shrunk = sum(len(value.encode("utf-8", "surrogatepass")) for value in old_values.values())
        # One statement per kind, not one per row: the search index's triggers flush a segment
        # of it at the end of every statement (3× the commit's time, row by row).
        if inserts:
            self.conn.execute(
                "INSERT INTO snapshot (target, origin, db, store, key, value, value_hash, "
                f"first_seen_run, last_changed_run) VALUES {tuples(len(inserts), 9)}",
                [value for row in inserts for value in row],
            )
        if updates:
            self.conn.execute(
                "UPDATE snapshot SET value = v.column2, value_hash = v.column3, "
                f"last_changed_run = ? FROM (VALUES {tuples(len(updates), 3)}) AS v "
                "WHERE target = ? AND origin = ? AND db = ? AND store = ? AND key = v.column1",
                [self.run_id, *(value for row in updates for value in row), *ident],
            )
        if deletes:
            self.conn.execute(
                "DELETE FROM snapshot WHERE target = ? AND origin = ? AND db = ? AND store = ? "
                f"AND key IN ({marks(len(deletes))})",
                [*ident, *deletes],
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
        self.deleted[where] = self.deleted.get(where, 0) + len(deletes)

    def _records(self, where: tuple[str, str]) -> int:
        """How many records the snapshot holds of store `where` (db, store) now."""
        return int(
            self.conn.execute(
                "SELECT count(*) FROM snapshot "
                "WHERE target = ? AND origin = ? AND db = ? AND store = ?",
                (self.target, self.origin, *where),
            ).fetchone()[0]
        )

    def commit_stores(self) -> None:
        """Bring `stores` up to date with the run's stores and what the rows changed."""
        stores = self.conn.execute(
            "SELECT db, store, db_version, key_path, auto_increment, indexes, complete "
            "FROM run_stores WHERE run_id = ?",
            (self.run_id,),
        ).fetchall()
        for store in stores:
            where = (store["db"], store["store"])
            records = self._records(where)
            self.conn.execute(
                """INSERT INTO stores VALUES (
                    :target, :origin, :db, :store, :db_version, :key_path, :auto_increment,
                    :indexes, :records, :bytes, :run, :run, :changed, :complete)
                ON CONFLICT (target, origin, db, store) DO UPDATE SET
                    db_version = excluded.db_version, key_path = excluded.key_path,
                    auto_increment = excluded.auto_increment, indexes = excluded.indexes,
                    records = excluded.records, bytes = stores.bytes + excluded.bytes,
                    last_run = excluded.last_run,
                    last_changed_run = coalesce(excluded.last_changed_run, last_changed_run),
                    last_complete = excluded.last_complete""",
                {
                    **dict(zip(store.keys(), store, strict=True)),
                    "target": self.target,
                    "origin": self.origin,
                    "records": records,
                    "bytes": self.byte_delta.get(where, 0),
                    "run": self.run_id,
                    "changed": self.run_id if where in self.changed else None,
                },
            )

    def forget_gone(self, dbs: Sequence[str], stores: Sequence[tuple[str, str]]) -> None:
        """Drop from `stores` the stores the run found gone (`stores`, and those of the removed
        databases `dbs`), whose records its `-D` rows deleted; and count those in the run.

        A gone store's `-D` rows are the read's (`capture.spool_schema`), so the snapshot holds
        none of its records now: it leaves `stores`, and `harvester stores`, the inspector and
        the report list it no more. One whose records remain (a removed database's store the
        run's globs left out, or a spool written before the read deleted a gone store's records)
        keeps its row, with its count. `run_stores` has no row for a gone store (it is the
        schema the run read, which the schema history compares), so the run's `deleted` takes
        the count of its store rows plus these.
        """
        ident = (self.target, self.origin)
        gone = set(stores)
        for db in dbs:
            rows = self.conn.execute(
                "SELECT store FROM stores WHERE target = ? AND origin = ? AND db = ?",
                (*ident, db),
            )
            gone.update((db, row[0]) for row in rows)
        for where in sorted(gone):
            records = self._records(where)
            if records == 0:
                self.conn.execute(
                    "DELETE FROM stores WHERE target = ? AND origin = ? AND db = ? AND store = ?",
                    (*ident, *where),
                )
            elif where in self.changed:
                self.conn.execute(
                    "UPDATE stores SET records = ?, bytes = bytes + ?, last_changed_run = ? "
                    "WHERE target = ? AND origin = ? AND db = ? AND store = ?",
                    (records, self.byte_delta.get(where, 0), self.run_id, *ident, *where),
                )
        read = {
            (row[0], row[1])
            for row in self.conn.execute(
                "SELECT db, store FROM run_stores WHERE run_id = ?", (self.run_id,)
            )
        }
        if extra := sum(n for where, n in self.deleted.items() if where not in read):
            self.conn.execute(
                "UPDATE runs SET deleted = deleted + ? WHERE id = ?", (extra, self.run_id)
            )
