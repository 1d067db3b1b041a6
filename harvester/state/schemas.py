"""The IndexedDB schema history: each commit compares the schema its run read with the one the
target's committed runs left (`schema_dbs`, `schema_stores`) and records every change.

A change is only what the run saw. A store missing from the run is deleted only when its
database was read whole (opened, every store complete, no problem named it) and the run's
`stores` globs select it; a database missing from the run is removed only when the run's
`databases` globs select it, no problem named it (one that could not be opened) and the run
would have listed it. The rule is the one `-D` follows: what was not read is not known gone.
The records of a store found gone are gone with it: the read spools a `-D` for each
(`read_changes`'s `gone`), and the commit drops the store from `stores`.
"""

from __future__ import annotations

import fnmatch
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from harvester.state.connections import Connections, marks
from harvester.state.records import (
    ReadScope,
    RunStore,
    SchemaChange,
    SchemaDb,
    SchemaRow,
    SchemaStore,
    from_row,
)

_IDENT = "target = ? AND origin = ?"


def scope_text(scope: ReadScope | None) -> str | None:
    """The `runs.scope` column of a run read in `scope` (NULL when not told)."""
    if scope is None:
        return None
    return json.dumps(
        {
            "databases": dict(scope.databases),
            "database_globs": list(scope.database_globs),
            "store_globs": list(scope.store_globs),
        }
    )


def _selected(name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


def _listed(db: str, stores: Iterable[str], scope: Mapping[str, Any]) -> bool:
    """Whether a run in `scope` would have read database `db`, had it been there: its globs
    select it, and one of its `stores` (the reader leaves out a database none of whose stores
    the globs select), or it had none."""
    if not _selected(db, scope["database_globs"]):
        return False
    names = list(stores)
    return not names or any(_selected(f"{db}/{store}", scope["store_globs"]) for store in names)


def _store_schema(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "key_path": json.loads(row["key_path"]),
        "auto_increment": bool(row["auto_increment"]),
        "indexes": json.loads(row["indexes"]),
    }


class _Changes:
    """The changes one commit finds, in the order they are listed."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str | None, str | None, str, Any, Any]] = []

    def add(
        self,
        kind: str,
        db: str,
        store: str | None = None,
        index: str | None = None,
        *,
        old: Any = None,
        new: Any = None,
    ) -> None:
        self.rows.append((db, store, index, kind, old, new))

    def store(self, db: str, store: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        """What changed between two schemas of one store."""
        for name, kind in (
            ("key_path", "key_path_changed"),
            ("auto_increment", "auto_increment_changed"),
        ):
            if old[name] != new[name]:
                self.add(kind, db, store, old=old[name], new=new[name])
        before = {ix["name"]: ix for ix in old["indexes"]}
        after = {ix["name"]: ix for ix in new["indexes"]}
        for name, index in after.items():
            if name not in before:
                self.add("index_added", db, store, name, new=index)
            elif before[name] != index:
                self.add("index_changed", db, store, name, old=before[name], new=index)
        for name, index in before.items():
            if name not in after:
                self.add("index_removed", db, store, name, old=index)


@dataclass
class Comparison:
    """What one run's read changes in its target's schema: the changes (`_Changes.rows`), what
    the schema history then drops, and the schemas on both sides (for `log_rows`)."""

    changes: _Changes
    databases: dict[str, int]  # the run's databases → versions
    known_dbs: dict[str, int]  # the committed ones
    seen: dict[str, dict[str, dict[str, Any]]]  # db → store → schema, as read
    known: dict[str, dict[str, dict[str, Any]]]  # as committed
    gone_dbs: list[str] = field(default_factory=list)
    gone_stores: list[tuple[str, str]] = field(default_factory=list)


def compare(
    read: Sequence[Mapping[str, Any]],
    *,
    scope: Mapping[str, Any] | None,
    problems: Iterable[Mapping[str, Any]],
    known_dbs: dict[str, int],
    known: dict[str, dict[str, dict[str, Any]]],
) -> Comparison:
    """The one comparison of a run's read with the committed schema, pure: the commit records
    it (`record_changes`) and the read spools it (`read_changes`), from the same inputs.

    `read`: the run's stores as `run_stores` holds them (`key_path` and `indexes` as JSON
    text); `scope`: `runs.scope` decoded; `problems`: the run's origin-level problems as kept.
    """
    databases: dict[str, int] = {row["db"]: row["db_version"] for row in read}
    if scope is not None:
        databases.update(scope["databases"])
    named = {problem.get("db") for problem in problems}
    partial = named | {row["db"] for row in read if not row["complete"]}
    seen: dict[str, dict[str, dict[str, Any]]] = {db: {} for db in databases}
    for row in read:
        seen[row["db"]][row["store"]] = _store_schema(row)
    out = Comparison(_Changes(), databases, known_dbs, seen, known)
    found = out.changes
    for db in sorted(databases):
        if db not in known_dbs:
            found.add("database_added", db, new=databases[db])
        elif known_dbs[db] != databases[db]:
            found.add("version_changed", db, old=known_dbs[db], new=databases[db])
        before = known.get(db, {})
        for store, schema in seen[db].items():
            if store not in before:
                found.add("store_created", db, store, new=schema)
            else:
                found.store(db, store, before[store], schema)
        if scope is None or db in partial:
            continue
        for store, schema in before.items():
            if store not in seen[db] and _selected(f"{db}/{store}", scope["store_globs"]):
                found.add("store_deleted", db, store, old=schema)
                out.gone_stores.append((db, store))
    for db in sorted(known_dbs.keys() - databases.keys()):
        if scope is not None and db not in named and _listed(db, known.get(db, {}), scope):
            found.add("database_removed", db, old=known_dbs[db])
            out.gone_dbs.append(db)
    return out


def _committed(
    conn: sqlite3.Connection, ident: tuple[str, str]
) -> tuple[dict[str, int], dict[str, dict[str, dict[str, Any]]]]:
    """The target's committed schema at one origin: db → version, db → store → schema."""
    known_dbs = {
        row["db"]: row["version"]
        for row in conn.execute(f"SELECT db, version FROM schema_dbs WHERE {_IDENT}", ident)
    }
    known: dict[str, dict[str, dict[str, Any]]] = {}
    for row in conn.execute(f"SELECT * FROM schema_stores WHERE {_IDENT}", ident):
        known.setdefault(row["db"], {})[row["store"]] = _store_schema(row)
    return known_dbs, known


def record_changes(conn: sqlite3.Connection, run_id: str, *, at: str) -> Comparison:
    """Compare run `run_id`'s schema with the target's and record the changes (inside the
    commit's transaction, after `run_stores` and `runs` hold the run); what it found, whose
    `gone_dbs` and `gone_stores` the commit then drops from `stores`."""
    run = conn.execute(
        "SELECT target, origin, problems, scope FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    ident = (run["target"], run["origin"])
    read = conn.execute(
        "SELECT * FROM run_stores WHERE run_id = ? ORDER BY rowid", (run_id,)
    ).fetchall()
    known_dbs, known = _committed(conn, ident)
    found = compare(
        read,
        scope=None if run["scope"] is None else json.loads(run["scope"]),
        problems=json.loads(run["problems"]),
        known_dbs=known_dbs,
        known=known,
    )
    conn.executemany(
        "INSERT INTO schema_changes (run_id, target, origin, db, store, index_name, kind, old, "
        "new, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (run_id, *ident, db, store, index, kind, _json(old), _json(new), at)
            for db, store, index, kind, old, new in found.changes.rows
        ],
    )
    _save(conn, run_id, ident, found.databases, read, found.gone_dbs, found.gone_stores)
    return found


class GoneStore(NamedTuple):
    """A store whose committed records a read deletes: found deleted, or of a database found
    removed. `db_version` is the version its rows carry, as on its `-S` row."""

    db: str
    db_version: int
    store: str


@dataclass(frozen=True)
class SchemaRead:
    """What a read not marked read yet changes in the schema: its log rows, and the stores
    whose records it must spool as `-D` (`gone`, in the order found)."""

    rows: list[SchemaRow]
    gone: list[GoneStore]


def read_changes(
    conns: Connections,
    *,
    target: str,
    origin: str,
    stores: Sequence[RunStore],
    scope: ReadScope | None,
    problems: Sequence[Mapping[str, Any]],
) -> SchemaRead:
    """The schema log rows of a read not marked read yet: what its commit will record
    (`record_changes`), from what `mark_read` will save (`problems` as it keeps them); and the
    stores it finds gone, whose records it deletes."""
    # As `run_stores` and `runs.scope` will hold them: the commit compares those texts decoded.
    read = [
        {
            "db": s.db,
            "store": s.store,
            "db_version": s.db_version,
            "key_path": json.dumps(s.key_path),
            "auto_increment": s.auto_increment,
            "indexes": json.dumps(s.indexes),
            "complete": s.complete,
        }
        for s in stores
    ]
    text = scope_text(scope)
    decoded = None if text is None else json.loads(text)
    ident = (target, origin)
    conn = conns.new(readonly=True)
    try:
        with conns.failing("reading"):
            known_dbs, known = _committed(conn, ident)
            found = compare(
                read, scope=decoded, problems=problems, known_dbs=known_dbs, known=known
            )
            gone = _gone(conn, ident, found, decoded)
    finally:
        conn.close()
    return SchemaRead(log_rows(found), gone)


def _gone(
    conn: sqlite3.Connection,
    ident: tuple[str, str],
    found: Comparison,
    scope: Mapping[str, Any] | None,
) -> list[GoneStore]:
    """The stores `found` judges gone: each deleted one, and every store of a removed database
    that the snapshot holds and the run's store globs select. The snapshot, not the schema
    history, names a removed database's stores: records are what its `-D` rows delete. A store
    the globs leave out was not read, so by the rule of `-D` it is not known gone."""
    gone = [GoneStore(db, _version(found, db), store) for db, store in found.gone_stores]
    # A run without scope finds no database removed.
    globs = () if scope is None else scope["store_globs"]
    for db in found.gone_dbs:
        names = conn.execute(
            f"SELECT DISTINCT store FROM snapshot WHERE {_IDENT} AND db = ? ORDER BY store",
            (*ident, db),
        )
        gone += [
            GoneStore(db, _version(found, db), name)
            for (name,) in names
            if _selected(f"{db}/{name}", globs)
        ]
    return gone


def _version(found: Comparison, db: str) -> int:
    """The version a database's rows carry: the run's, or the last known one once it is gone."""
    return found.databases.get(db, found.known_dbs.get(db, 0))


def log_rows(found: Comparison) -> list[SchemaRow]:
    """The changes grouped into one row per database and per store (`docs/contracts.md`): a
    `+S` with the new schema and what changed (`value`) and the old one (`old_value`, None for
    one created), or a `-S` with the old schema."""
    grouped: dict[tuple[str, str | None], list[dict[str, str]]] = {}
    for db, store, index, kind, _, _ in found.changes.rows:
        change = {"kind": kind} if index is None else {"kind": kind, "index": index}
        grouped.setdefault((db, store), []).append(change)
    rows = []
    for (db, store), what in grouped.items():
        if store is None:
            old = found.known_dbs.get(db)
            new = found.databases.get(db)
            before = None if old is None else {"version": old}
            after = None if new is None else {"version": new}
        else:
            before = found.known.get(db, {}).get(store)
            after = found.seen.get(db, {}).get(store)
        version = _version(found, db)
        if what[0]["kind"] in ("store_deleted", "database_removed"):
            rows.append(SchemaRow(db, version, store, "-S", None, _log_json(before)))
        else:
            value = _log_json({**(after or {}), "changes": what})
            rows.append(SchemaRow(db, version, store, "+S", value, _log_json(before)))
    return rows


def _log_json(value: dict[str, Any] | None) -> str | None:
    # ASCII: a name with a lone surrogate stays valid UTF-8 (and hashable) as its escape.
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _save(
    conn: sqlite3.Connection,
    run_id: str,
    ident: tuple[str, str],
    databases: Mapping[str, int],
    read: Iterable[sqlite3.Row],
    gone_dbs: Sequence[str],
    gone_stores: Sequence[tuple[str, str]],
) -> None:
    """Bring `schema_dbs` and `schema_stores` to the schema the run left."""
    conn.executemany(
        """INSERT INTO schema_dbs VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (target, origin, db) DO UPDATE SET
            version = excluded.version, last_run = excluded.last_run""",
        [(*ident, db, version, run_id, run_id) for db, version in databases.items()],
    )
    conn.executemany(
        """INSERT INTO schema_stores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (target, origin, db, store) DO UPDATE SET
            key_path = excluded.key_path, auto_increment = excluded.auto_increment,
            indexes = excluded.indexes, last_run = excluded.last_run""",
        [
            (
                *ident,
                r["db"],
                r["store"],
                r["key_path"],
                r["auto_increment"],
                r["indexes"],
                run_id,
                run_id,
            )
            for r in read
        ],
    )
    conn.executemany(
        f"DELETE FROM schema_stores WHERE {_IDENT} AND db = ?", [(*ident, db) for db in gone_dbs]
    )
    conn.executemany(
        f"DELETE FROM schema_dbs WHERE {_IDENT} AND db = ?", [(*ident, db) for db in gone_dbs]
    )
    conn.executemany(
        f"DELETE FROM schema_stores WHERE {_IDENT} AND db = ? AND store = ?",
        [(*ident, *where) for where in gone_stores],
    )


# ---- the read side ---------------------------------------------------------------------------


def databases(conns: Connections, target: str) -> list[SchemaDb]:
    rows = conns.rows("SELECT * FROM schema_dbs WHERE target = ? ORDER BY origin, db", (target,))
    return [from_row(SchemaDb, row) for row in rows]


def stores(conns: Connections, target: str) -> list[SchemaStore]:
    rows = conns.rows(
        "SELECT * FROM schema_stores WHERE target = ? ORDER BY origin, db, store", (target,)
    )
    return [from_row(SchemaStore, row) for row in rows]


def changes(
    conns: Connections, target: str, run_ids: Sequence[str] | None = None
) -> list[SchemaChange]:
    """The target's schema changes in the order they were found, or only those of `run_ids`."""
    sql, params = "SELECT * FROM schema_changes WHERE target = ?", [target]
    if run_ids is not None:
        if not run_ids:
            return []
        sql += f" AND run_id IN ({marks(len(run_ids))})"
        params += run_ids
    return [from_row(SchemaChange, row) for row in conns.rows(sql + " ORDER BY rowid", params)]
