"""The IndexedDB schema history as people read it (`todoapp: version 2 → 3; store archive
created`) and as JSON-ready data, for `diff` and `schema`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harvester.state import SchemaChange, SchemaDb, SchemaStore
from harvester.timefmt import iso_utc


def _key_path(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _on(value: Any) -> str:
    return "on" if value else "off"


def _index_delta(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = [
        f"{label} {shown(old.get(name))} → {shown(new.get(name))}"
        for name, label, shown in (
            ("key_path", "key path", _key_path),
            ("unique", "unique", _on),
            ("multi_entry", "multi-entry", _on),
        )
        if old.get(name) != new.get(name)
    ]
    return ", ".join(parts)


def change_text(change: SchemaChange) -> str:
    """One change in words, without its database's name."""
    old, new, store, index = change.old, change.new, change.store, change.index_name
    match change.kind:
        case "database_added":
            return f"database added (version {new})"
        case "database_removed":
            return f"database removed (it was at version {old})"
        case "version_changed":
            return f"version {old} → {new}"
        case "store_created":
            return f"store {store} created"
        case "store_deleted":
            return f"store {store} deleted"
        case "key_path_changed":
            return f"key path of {store} {_key_path(old)} → {_key_path(new)}"
        case "auto_increment_changed":
            return f"auto-increment of {store} {_on(old)} → {_on(new)}"
        case "index_added":
            return f"index {index} added to {store}"
        case "index_removed":
            return f"index {index} removed from {store}"
        case _:
            return f"index {index} of {store} changed ({_index_delta(old, new)})"


def change_dict(change: SchemaChange) -> dict[str, Any]:
    return {
        "kind": change.kind,
        "db": change.db,
        "store": change.store,
        "index": change.index_name,
        "old": change.old,
        "new": change.new,
        "origin": change.origin,
        "run_id": change.run_id,
        "at": iso_utc(change.at),
        "text": f"{change.db}: {change_text(change)}",
    }


def summary_lines(changes: Sequence[SchemaChange]) -> list[str]:
    """One line per database, its changes in the order found."""
    by_db: dict[str, list[str]] = {}
    for change in changes:
        by_db.setdefault(change.db, []).append(change_text(change))
    return [f"{db}: {'; '.join(texts)}" for db, texts in by_db.items()]


def _index_text(index: dict[str, Any]) -> str:
    flags = [name for name in ("unique", "multi_entry") if index.get(name)]
    inside = "; ".join([_key_path(index.get("key_path")), *(f.replace("_", "-") for f in flags)])
    return f"{index.get('name')} ({inside})"


def current_rows(dbs: Sequence[SchemaDb], stores: Sequence[SchemaStore]) -> list[dict[str, Any]]:
    """One row per store (or per database without stores), by origin, db and store."""
    rows: list[dict[str, Any]] = []
    for db in dbs:
        base = {
            "origin": db.origin,
            "db": db.db,
            "version": db.version,
            "db_text": f"{db.db} ({db.version})",
        }
        mine = [s for s in stores if (s.origin, s.db) == (db.origin, db.db)]
        if not mine:
            rows.append({**base, "store": None, "first_run": db.first_run, "last_run": db.last_run})
        for store in mine:
            rows.append(
                {
                    **base,
                    "store": store.store,
                    "key_path": store.key_path,
                    "auto_increment": store.auto_increment,
                    "indexes": store.indexes,
                    "key_text": _key_path(store.key_path)
                    + (" auto-increment" if store.auto_increment else ""),
                    "indexes_text": ", ".join(_index_text(ix) for ix in store.indexes),
                    "first_run": store.first_run,
                    "last_run": store.last_run,
                }
            )
    return rows


def current_json(dbs: Sequence[SchemaDb], stores: Sequence[SchemaStore]) -> list[dict[str, Any]]:
    """Each database with its version and its stores nested."""
    return [
        {
            "origin": db.origin,
            "db": db.db,
            "version": db.version,
            "first_run": db.first_run,
            "last_run": db.last_run,
            "stores": [
                {
                    "store": s.store,
                    "key_path": s.key_path,
                    "auto_increment": s.auto_increment,
                    "indexes": s.indexes,
                    "first_run": s.first_run,
                    "last_run": s.last_run,
                }
                for s in stores
                if (s.origin, s.db) == (db.origin, db.db)
            ],
        }
        for db in dbs
    ]


def indexes_text(indexes: Sequence[Mapping[str, Any]]) -> str:
    """A store's indexes on one line: `by_email ("email", unique), by_tags ("tags", multiEntry)`."""
    return ", ".join(
        f"{ix.get('name')} ({json.dumps(ix.get('key_path'))}"
        + (", unique" if ix.get("unique") else "")
        + (", multiEntry" if ix.get("multi_entry") else "")
        + ")"
        for ix in indexes
    )
