"""Net differences between two runs of a target: added, changed (field by field), removed records.

The change history holds one row per key and run; between run A and run B a key may change
several times, so the net difference per key is its state after A against its state after B.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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


def net_diff(
    changes: Iterable[Change],
    lookup: Callable[[Sequence[Change]], Mapping[str, str]] | None = None,
    *,
    limit: int | None = None,
) -> list[StoreDiff]:
    """Fold the history rows after run A up to run B (in run order) into net per-key changes.

    `lookup` gives, for net changes (each a `Change` from the first old side to the last new
    one), the typed JSON texts the state DB still holds by hash (the current snapshot, kept old
    values); a side whose value is unknown is reported by hash only. `limit`: records listed per
    store and op; the rest are only counted (`StoreDiff.unlisted`), their values never read.
    """
    values: dict[str, str] = {}
    first: dict[tuple[str, str, str], Change] = {}
    last: dict[tuple[str, str, str], Change] = {}
    for change in changes:
        if change.old_hash and change.old_value is not None:
            values.setdefault(change.old_hash, change.old_value)
        ident = (change.db, change.store, change.key)
        first.setdefault(ident, change)
        last[ident] = change
    stores: dict[tuple[str, str], StoreDiff] = {}
    listed: list[tuple[str, Change]] = []
    shown: Counter[tuple[str, str, str]] = Counter()
    for ident, start in first.items():
        end = last[ident]
        old_hash = start.old_hash if start.op != "+I" else None
        new_hash = end.new_hash if end.op != "-D" else None
        if old_hash == new_hash:
            continue  # changed and changed back, or added and removed again
        op = "added" if old_hash is None else "removed" if new_hash is None else "changed"
        store = stores.setdefault(ident[:2], StoreDiff(ident[0], ident[1]))
        if limit is not None and shown[(*ident[:2], op)] >= limit:
            store.unlisted[op] = store.unlisted.get(op, 0) + 1
            continue
        shown[(*ident[:2], op)] += 1
        listed.append((op, replace(end, old_hash=old_hash, new_hash=new_hash, old_value=None)))
    if lookup is not None and listed:
        values.update(lookup([net for _, net in listed]))
    for op, net in listed:
        record = _record(op, net, values)
        getattr(stores[(net.db, net.store)], op).append(record)
    return sorted(stores.values(), key=lambda s: (s.db, s.store))


def _record(op: str, net: Change, values: Mapping[str, str]) -> RecordDiff:
    old_value = values.get(net.old_hash) if net.old_hash else None
    new_value = values.get(net.new_hash) if net.new_hash else None
    fields: tuple[FieldChange, ...] | None = None
    if op == "changed" and old_value is not None and new_value is not None:
        fields = tuple(field_changes(json.loads(old_value), json.loads(new_value)))
    return RecordDiff(op, net.key, net.old_hash, net.new_hash, old_value, new_value, fields)


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
