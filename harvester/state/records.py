"""The records the state DB's rows are read into, each mapped from its columns by name.

A field whose column needs decoding says how in its metadata (`_BOOL`, `_JSON`, …); `from_row`
builds any of these records from a `sqlite3.Row` that has a column named like each field.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from harvester.timefmt import parse_iso

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RunStatus = Literal["running", "read", "committed", "failed"]
RUN_STATUSES: tuple[RunStatus, ...] = ("running", "read", "committed", "failed")


def _time(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def _key_path(text: str) -> str | list[str] | None:
    value = json.loads(text)
    return value if value is None or isinstance(value, str) else list(value)


def _decode(decode: Callable[[Any], Any]) -> Mapping[str, Callable[[Any], Any]]:
    return {"decode": decode}


# Booleans are stored as 0/1, lists and the key path as JSON text, times as ISO-8601 text.
_BOOL = _decode(bool)
_JSON = _decode(json.loads)
_KEY_PATH = _decode(_key_path)
_TIME = _decode(_time)
_REQUIRED_TIME = _decode(parse_iso)
_NULLABLE_JSON = _decode(lambda text: None if text is None else json.loads(text))

_Record = TypeVar("_Record", bound="DataclassInstance")


@functools.cache
def _columns(cls: type[DataclassInstance]) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    return tuple((item.name, item.metadata.get("decode")) for item in fields(cls))


def from_row(cls: type[_Record], row: sqlite3.Row) -> _Record:
    """A `cls` from the columns of `row` named like its fields (other columns are ignored)."""
    return cls(
        **{
            name: row[name] if decode is None else decode(row[name])
            for name, decode in _columns(cls)
        }
    )


@dataclass(frozen=True)
class RunStore:
    """One store as read by one run: schema, what was read, the diff counts, the problems."""

    db: str
    db_version: int
    store: str
    key_path: str | list[str] | None = field(metadata=_KEY_PATH)
    auto_increment: bool = field(metadata=_BOOL)
    # {"name", "key_path", "unique", "multi_entry"}
    indexes: list[dict[str, Any]] = field(metadata=_JSON)
    records: int  # records read
    bytes: int  # bytes of the value texts read
    rows: int  # changelog rows spooled (every record when the run is `full`)
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    complete: bool = field(metadata=_BOOL)  # False: error or limit cut; then no -D
    # {"key", "message"}
    problems: list[dict[str, Any]] = field(default_factory=list, metadata=_JSON)
    seconds: float = 0.0


@dataclass(frozen=True)
class Run:
    """One harvest of one target."""

    id: str
    target: str
    status: RunStatus
    full: bool = field(metadata=_BOOL)
    origin: str | None
    started_at: datetime = field(metadata=_REQUIRED_TIME)
    read_at: datetime | None = field(metadata=_TIME)  # when its spool was complete
    finished_at: datetime | None = field(metadata=_TIME)  # when it was committed or failed
    seq: int | None  # commit order over all targets; None until committed
    pending: bool = field(metadata=_BOOL)  # a complete spool waits to be sent and committed
    records: int
    bytes: int
    rows: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    incomplete_stores: int
    # origin-level: {"db", "message"} (a database not opened)
    problems: list[dict[str, Any]] = field(metadata=_JSON)
    error: str | None
    log_seq: int | None  # its number in the changelog log (hand-off order); None unless handed off
    handed_off_at: datetime | None = field(metadata=_TIME)  # when it went into the log
    consumed_at: datetime | None = field(metadata=_TIME)  # when all its rows were delivered
    consumed_rows: int  # rows the consumer has acknowledged so far
    trigger: str | None = None  # None: scheduled or one-shot; "event": IndexedDB change events
    trigger_events: int | None = None  # the change events that triggered it (event-driven runs)


@dataclass(frozen=True)
class TargetDelivery:
    """How far the consumer of the log got with one target's runs (of the runs the DB keeps).

    Counts only committed runs with rows that were handed off: a sink whose send is the delivery
    hands nothing off.
    """

    target: str
    handed_off: int
    consumed: int  # of the runs handed off
    waiting_since: datetime | None  # when the oldest run not consumed was handed off
    lag_seconds: float  # how long that run has waited; 0 when none waits


@dataclass(frozen=True)
class Store:
    """A store as of its last committed run."""

    target: str
    origin: str
    db: str
    store: str
    db_version: int
    key_path: str | list[str] | None = field(metadata=_KEY_PATH)
    auto_increment: bool = field(metadata=_BOOL)
    indexes: list[dict[str, Any]] = field(metadata=_JSON)
    records: int  # records in the committed snapshot
    bytes: int  # UTF-8 bytes of their value texts
    first_run: str
    last_run: str
    last_changed_run: str | None
    last_complete: bool = field(metadata=_BOOL)  # whether the last run read the whole store


@dataclass(frozen=True)
class SnapshotRecord:
    """A committed record (`value` is None only for history written before schema 2)."""

    key: str
    value: str | None
    value_hash: str
    first_seen_run: str | None
    last_changed_run: str | None


@dataclass(frozen=True)
class RecordPage:
    """One page of a store's records (`StateDB.search_records`) and how many match in all.

    `capped`: more than `search.COUNT_CAP` (10,000) match and `total` is that cap: counting a
    text found in most of a million records would cost more than the page.
    """

    records: list[SnapshotRecord]
    total: int
    capped: bool = False


@dataclass(frozen=True)
class Change:
    """One row of the change history."""

    run_id: str
    target: str
    origin: str
    db: str
    store: str
    key: str
    op: str
    old_hash: str | None
    new_hash: str | None
    old_value: str | None  # the value a +U or -D replaced; None for +I


@dataclass(frozen=True)
class ReadScope:
    """What a run looked at: the databases it opened (name → version) and the target's globs
    that chose the databases and the `db/store` names. Only a store these globs select can be
    found gone."""

    databases: Mapping[str, int]
    database_globs: tuple[str, ...] = ("*",)
    store_globs: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class SchemaDb:
    """A database of a target as its schema history knows it now."""

    target: str
    origin: str
    db: str
    version: int
    first_run: str
    last_run: str  # the last committed run that saw it


@dataclass(frozen=True)
class SchemaStore:
    """A store of a target as its schema history knows it now."""

    target: str
    origin: str
    db: str
    store: str
    key_path: str | list[str] | None = field(metadata=_KEY_PATH)
    auto_increment: bool = field(metadata=_BOOL)
    # {"name", "key_path", "unique", "multi_entry"}
    indexes: list[dict[str, Any]] = field(metadata=_JSON)
    first_run: str
    last_run: str


@dataclass(frozen=True)
class SchemaChange:
    """One change of a target's IndexedDB schema, found by the commit of `run_id`."""

    run_id: str
    target: str
    origin: str
    db: str
    store: str | None
    index_name: str | None
    kind: str  # database_added, version_changed, store_created, index_added, …
    old: Any = field(metadata=_NULLABLE_JSON)  # the schema before (JSON), None when added
    new: Any = field(metadata=_NULLABLE_JSON)  # the schema after, None when removed
    at: datetime = field(metadata=_REQUIRED_TIME)  # when the run was committed


@dataclass(frozen=True)
class SchemaRow:
    """One row of the changelog's schema log (`docs/contracts.md`): a database (`store` None)
    or a store created or changed (`+S`: `value` its new schema and what changed, as JSON
    text) or gone (`-S`); `old_value` the committed schema before, None when it had none."""

    db: str
    db_version: int  # the run's version of the database (the last known one, once it is gone)
    store: str | None
    op: Literal["+S", "-S"]
    value: str | None
    old_value: str | None
