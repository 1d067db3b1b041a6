"""Inferring a store's shape from its records: top-level fields, their types and frequency.

Works on the typed JSON trees as stored (no decoding): the type of a node is its `$` tag when it
has one, else its JSON type, which is both cheaper and exactly what the page wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Tags whose payload is a plain value of another JSON type, named as the user thinks of them.
_TAG_NAMES = {"$number": "number", "$object": "object", "$array": "array", "$bigint": "bigint"}


def type_name(node: Any) -> str:
    """The type of one typed-JSON node: `string`, `number`, `date`, `map`, `blob`, …"""
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "boolean"
    if isinstance(node, (int, float)):
        return "number"
    if isinstance(node, str):
        return "string"
    if isinstance(node, list):
        return "array"
    if isinstance(node, dict) and len(node) == 1:
        tag: str = next(iter(node))
        if tag.startswith("$"):
            if tag == "$blob" and isinstance(node[tag], dict) and "name" in node[tag]:
                return "file"
            return _TAG_NAMES.get(tag, tag[1:])
    return "object"


def top_level_fields(node: Any) -> dict[str, Any] | None:
    """The fields of a plain (or `$`-escaped) object value, else None."""
    if isinstance(node, dict):
        if len(node) == 1 and "$object" in node and isinstance(node["$object"], dict):
            return node["$object"]
        if not (len(node) == 1 and next(iter(node)).startswith("$")):
            return node
    return None


def node_at(node: Any, path: str) -> Any:
    """The node at a field path dotted through nested objects ("" = the whole value, as
    `diff.field_changes` names it), None if there is none. A field name may hold a dot itself,
    so each way of splitting is tried."""
    if path == "":
        return node
    fields = top_level_fields(node) or {}
    if path in fields:
        return fields[path]
    for at, char in enumerate(path):
        if char == "." and path[:at] in fields:
            found = node_at(fields[path[:at]], path[at + 1 :])
            if found is not None:
                return found
    return None


@dataclass
class FieldSummary:
    """One top-level field: in how many records it occurs and with which types."""

    name: str
    count: int = 0
    types: Counter[str] = field(default_factory=Counter)

    def as_dict(self, records: int) -> dict[str, Any]:
        return {
            "field": self.name,
            "count": self.count,
            "frequency": round(self.count / records, 4) if records else 0.0,
            "types": dict(self.types.most_common()),
        }


@dataclass
class SchemaSummary:
    """The inferred shape of `records` values (a sample of the store when it is large)."""

    records: int = 0
    value_types: Counter[str] = field(default_factory=Counter)
    fields: dict[str, FieldSummary] = field(default_factory=dict)

    def add(self, value: Any) -> None:
        self.records += 1
        self.value_types[type_name(value)] += 1
        for name, child in (top_level_fields(value) or {}).items():
            summary = self.fields.get(name)
            if summary is None:
                summary = self.fields[name] = FieldSummary(name)
            summary.count += 1
            summary.types[type_name(child)] += 1

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.fields.values(), key=lambda f: (-f.count, f.name))
        return {
            "sampled": self.records,
            "value_types": dict(self.value_types.most_common()),
            "fields": [f.as_dict(self.records) for f in ordered],
        }

    def short(self) -> str:
        """One line for tables: `name:string 100%, tags:array|null 40%, …`."""
        parts = []
        for item in self.as_dict()["fields"]:
            types = "|".join(item["types"])
            parts.append(f"{item['field']}:{types} {item['frequency']:.0%}")
        if not parts:
            return ", ".join(self.value_types) or "-"
        return ", ".join(parts)


def infer(values: Iterable[Any]) -> SchemaSummary:
    """The schema summary of parsed typed-JSON values."""
    summary = SchemaSummary()
    for value in values:
        summary.add(value)
    return summary
