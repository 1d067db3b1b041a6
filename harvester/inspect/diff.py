"""Net differences between two runs of a target: added, changed (field by field), removed records.

The change history holds one row per key and run; between run A and run B a key may change
several times, so the net difference per key is its state after A against its state after B.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harvester.inspect.pretty import pretty, pretty_text
from harvester.inspect.schema import node_at, top_level_fields

_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One row of the change history, with the values the state DB still has (else None)."""

    run_id: str
    db: str
    store: str
    key: str
    op: str  # "+I", "+U" or "-D"
    old_hash: str | None
    new_hash: str | None
    old_value: str | None = None


@dataclass(frozen=True)
class FieldChange:
    """One field that differs; `path` is dotted through nested plain objects ("" = whole value)."""

    path: str
    old: str | None  # pretty text; None when the field is absent on that side
    new: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.path, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class RecordDiff:
    """The net change of one key between the two runs."""

    op: str  # "added", "changed" or "removed"
    key: str  # typed JSON text
    old_hash: str | None
    new_hash: str | None
    old_value: str | None  # typed JSON text, None when absent or no longer kept
    new_value: str | None
    fields: tuple[FieldChange, ...] | None  # None when a side's value is not kept

    def as_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "key": json.loads(self.key),
            "key_text": pretty_text(self.key),
            "old_hash": self.old_hash,
            "new_hash": self.new_hash,
            "old_value": None if self.old_value is None else json.loads(self.old_value),
            "new_value": None if self.new_value is None else json.loads(self.new_value),
            "old_text": None if self.old_value is None else pretty_text(self.old_value),
            "new_text": None if self.new_value is None else pretty_text(self.new_value),
            "fields": None if self.fields is None else [f.as_dict() for f in self.fields],
        }


@dataclass
class StoreDiff:
    """Every net change in one store, each list in key order of first appearance."""

    db: str
    store: str
    added: list[RecordDiff] = field(default_factory=list)
    changed: list[RecordDiff] = field(default_factory=list)
    removed: list[RecordDiff] = field(default_factory=list)
    # Records per op beyond those listed, when the lists were cut to a limit.
    unlisted: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """How many records were added, changed and removed (listed or not)."""
        return {
            op: len(getattr(self, op)) + self.unlisted.get(op, 0)
            for op in ("added", "changed", "removed")
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "store": self.store,
            "counts": self.counts(),
            "added": [r.as_dict() for r in self.added],
            "changed": [r.as_dict() for r in self.changed],
            "removed": [r.as_dict() for r in self.removed],
        }


def field_changes(old: Any, new: Any, prefix: str = "") -> list[FieldChange]:
    """Differences between two parsed typed-JSON values, through nested plain objects."""
    old_fields, new_fields = top_level_fields(old), top_level_fields(new)
    if old_fields is None or new_fields is None:
        if old == new:
            return []
        return [FieldChange(prefix, pretty(old), pretty(new))]
    changes: list[FieldChange] = []
    for name in [*old_fields, *(k for k in new_fields if k not in old_fields)]:
        path = f"{prefix}.{name}" if prefix else name
        before, after = old_fields.get(name, _MISSING), new_fields.get(name, _MISSING)
        if before is _MISSING:
            changes.append(FieldChange(path, None, pretty(after)))
        elif after is _MISSING:
            changes.append(FieldChange(path, pretty(before), None))
        elif before != after:
            changes.extend(field_changes(before, after, path))
    return changes


def net_diff(changes: Iterable[Change], values: Mapping[str, str] | None = None) -> list[StoreDiff]:
    """Fold the history rows after run A up to run B (in run order) into net per-key changes.

    `values` maps value hashes to typed JSON texts the state DB still holds (the current
    snapshot, kept old values); a side whose value is unknown is reported by hash only.
    """
    values = dict(values or {})
    first: dict[tuple[str, str, str], Change] = {}
    last: dict[tuple[str, str, str], Change] = {}
    for change in changes:
        if change.old_hash and change.old_value is not None:
            values.setdefault(change.old_hash, change.old_value)
        ident = (change.db, change.store, change.key)
        first.setdefault(ident, change)
        last[ident] = change
    stores: dict[tuple[str, str], StoreDiff] = {}
    for ident, start in first.items():
        end = last[ident]
        old_hash = start.old_hash if start.op != "+I" else None
        new_hash = end.new_hash if end.op != "-D" else None
        if old_hash == new_hash:
            continue  # changed and changed back, or added and removed again
        old_value = values.get(old_hash) if old_hash else None
        new_value = values.get(new_hash) if new_hash else None
        if old_hash is None:
            op = "added"
        elif new_hash is None:
            op = "removed"
        else:
            op = "changed"
        fields: tuple[FieldChange, ...] | None = None
        if op == "changed" and old_value is not None and new_value is not None:
            fields = tuple(field_changes(json.loads(old_value), json.loads(new_value)))
        record = RecordDiff(op, ident[2], old_hash, new_hash, old_value, new_value, fields)
        store = stores.setdefault(ident[:2], StoreDiff(ident[0], ident[1]))
        getattr(store, op).append(record)
    return sorted(stores.values(), key=lambda s: (s.db, s.store))


def field_row(record: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """One field change of `record` (with `old_value` and `new_value` nodes) as a row."""
    path = change["field"]
    return {
        "field": path,
        "old_text": change["old"],
        "new_text": change["new"],
        # A side where the field is absent has no node (and its text is None too).
        "old": None if change["old"] is None else node_at(record["old_value"], path),
        "new": None if change["new"] is None else node_at(record["new_value"], path),
    }
