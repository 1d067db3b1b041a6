"""The read side: runs, stores, records (now or as of a run) and the change history."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from harvester.errors import StateError
from harvester.state.connections import LOOKUP_CHUNK, Connections, marks
from harvester.state.records import (
    Change,
    Run,
    RunStatus,
    RunStore,
    SnapshotRecord,
    Store,
    from_row,
)


def get_run(conns: Connections, run_id: str) -> Run | None:
    rows = conns.rows("SELECT * FROM runs WHERE id = ?", (run_id,))
    return from_row(Run, rows[0]) if rows else None


def list_runs(
    conns: Connections,
    *,
    target: str | None,
    status: RunStatus | Sequence[RunStatus] | None,
    limit: int | None,
) -> list[Run]:
    where, params = ["1"], []
    if target is not None:
        where.append("target = ?")
        params.append(target)
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        where.append(f"status IN ({marks(len(wanted))})")
        params.extend(wanted)
    sql = (
        f"SELECT * FROM runs WHERE {' AND '.join(where)} "
        f"ORDER BY started_at DESC, rowid DESC LIMIT {-1 if limit is None else int(limit)}"
    )
    return [from_row(Run, row) for row in conns.rows(sql, params)]


def runs_where(conns: Connections, where: str, target: str | None, order: str) -> list[Run]:
    """The runs matching the SQL condition `where` (of one target, or all), in `order`."""
    sql = f"SELECT * FROM runs WHERE ({where})"
    params: list[Any] = []
    if target is not None:
        sql += " AND target = ?"
        params.append(target)
    return [from_row(Run, row) for row in conns.rows(f"{sql} ORDER BY {order}", params)]


def pending_runs(conns: Connections, target: str | None) -> list[Run]:
    return runs_where(conns, "pending = 1 AND status != 'committed'", target, "started_at, rowid")


def run_stores(conns: Connections, run_id: str) -> list[RunStore]:
    rows = conns.rows("SELECT * FROM run_stores WHERE run_id = ? ORDER BY rowid", (run_id,))
    return [from_row(RunStore, row) for row in rows]


def list_stores(conns: Connections, *, target: str | None) -> list[Store]:
    sql = "SELECT * FROM stores"
    params: list[Any] = []
    if target is not None:
        sql += " WHERE target = ?"
        params.append(target)
    rows = conns.rows(sql + " ORDER BY target, origin, db, store", params)
    return [from_row(Store, row) for row in rows]


def targets(conns: Connections) -> list[str]:
    rows = conns.rows("SELECT target FROM runs UNION SELECT target FROM stores ORDER BY 1")
    return [row["target"] for row in rows]


def iter_records(
    conns: Connections,
    target: str,
    origin: str,
    db: str,
    store: str,
    *,
    key: str | None,
    as_of: str | None,
    keep_runs: int,
) -> Iterator[SnapshotRecord]:
    ident: dict[str, str | int | None] = {
        "target": target,
        "origin": origin,
        "db": db,
        "store": store,
        "key": key,
    }
    one_key = "" if key is None else "AND key = :key"
    if as_of is None:
        sql = f"""SELECT key, value, value_hash, first_seen_run, last_changed_run
            FROM snapshot WHERE target = :target AND origin = :origin AND db = :db
            AND store = :store {one_key} ORDER BY id"""
    else:
        run = get_run(conns, as_of)
        if run is None or run.target != target or run.seq is None:
            raise StateError(
                f"run {as_of!r} is not a committed run of target {target!r} "
                f"(the state DB keeps the last {keep_runs} committed runs per target)"
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
    yield from (from_row(SnapshotRecord, row) for row in conns.stream(sql, ident))


def past_value(conns: Connections, store: Store, key: str, value_hash: str) -> str | None:
    rows = conns.rows(
        "SELECT old_value FROM changes WHERE target = ? AND origin = ? AND db = ? "
        "AND store = ? AND key = ? AND old_hash = ? AND old_value IS NOT NULL LIMIT 1",
        (store.target, store.origin, store.db, store.store, key, value_hash),
    )
    return rows[0]["old_value"] if rows else None


def _in_store(run_id: str, store: Store | None) -> tuple[str, list[Any]]:
    if store is None:
        return "run_id = ?", [run_id]
    where = "run_id = ? AND target = ? AND origin = ? AND db = ? AND store = ?"
    return where, [run_id, store.target, store.origin, store.db, store.store]


def run_changes(
    conns: Connections,
    run_id: str,
    *,
    store: Store | None,
    op: str | None,
    limit: int | None,
) -> Iterator[Change]:
    where, params = _in_store(run_id, store)
    if op is not None:
        where += " AND op = ?"
        params.append(op)
    sql = (
        f"SELECT * FROM changes WHERE {where} ORDER BY rowid "
        f"LIMIT {-1 if limit is None else int(limit)}"
    )
    yield from (from_row(Change, row) for row in conns.stream(sql, params))


def change_counts(conns: Connections, run_id: str, store: Store | None) -> dict[str, int]:
    where, params = _in_store(run_id, store)
    rows = conns.rows(f"SELECT op, count(*) AS n FROM changes WHERE {where} GROUP BY op", params)
    return {row["op"]: row["n"] for row in rows}


def values_by_hash(
    conns: Connections, target: str, db: str, store: str, keys: Sequence[str]
) -> dict[str, str]:
    sources = (
        # The origins named, so that the lookup is a seek on the snapshot's unique index.
        "SELECT value_hash AS hash, value FROM snapshot WHERE target = ?1 AND db = ?2 "
        "AND store = ?3 AND origin IN (SELECT origin FROM stores "
        "WHERE target = ?1 AND db = ?2 AND store = ?3)",
        "SELECT old_hash AS hash, old_value AS value FROM changes "
        "WHERE target = ?1 AND db = ?2 AND store = ?3 AND old_value IS NOT NULL",
    )
    unique = list(dict.fromkeys(keys))
    values: dict[str, str] = {}
    for start in range(0, len(unique), LOOKUP_CHUNK):
        chunk = unique[start : start + LOOKUP_CHUNK]
        for source in sources:
            rows = conns.rows(
                f"{source} AND key IN ({marks(len(chunk))})", (target, db, store, *chunk)
            )
            values.update((row["hash"], row["value"]) for row in rows)
    return values
