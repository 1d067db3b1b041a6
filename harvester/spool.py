"""Spool files: a run's changelog rows as JSON lines, the unit the sending stage takes.

A run writes `<state.dir>/spool/<run_id>.jsonl.part`; once its read is complete the file is
fsynced and renamed to `<run_id>.jsonl` (atomic), so a `.jsonl` file is always whole. It is
deleted only after the run's commit. A spool that is not its run's rows (`checked_rows`) is
moved to `<state.dir>/quarantine/` beside a reason file, never to be sent.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from harvester.codec import value_hash
from harvester.errors import HarvesterError, StateError, folder_problem
from harvester.surrogates import escape_surrogates
from harvester.timefmt import iso_utc

SPOOL_SUFFIX = ".jsonl"
PART_SUFFIX = ".jsonl.part"
# The changelog row, in spool order: each field and the kind of its JSON value. The one
# definition: the writer below and Flink's `change_log` columns (flink_jobs.pipeline) follow it.
# `text` may be null (`value` and `value_hash` of a `-D`, `old_value` of a `+I`; `key` of a
# schema row, `store` of a database's); `timestamp` is an ISO-8601 UTC string.
FieldKind = Literal["text", "integer", "timestamp"]
ROW_SCHEMA: tuple[tuple[str, FieldKind], ...] = (
    ("run_id", "text"),
    ("target", "text"),
    ("origin", "text"),
    ("db_name", "text"),
    ("db_version", "integer"),
    ("store", "text"),
    ("key", "text"),
    ("op", "text"),
    ("value", "text"),
    ("old_value", "text"),
    ("value_hash", "text"),
    ("harvested_at", "timestamp"),
)
ROW_FIELDS: tuple[str, ...] = tuple(name for name, _ in ROW_SCHEMA)
_FIELD_SET = frozenset(ROW_FIELDS)
_NULLABLE = frozenset(("value", "old_value", "value_hash", "key", "store"))
# A record's change, and a schema's: a database or store created or changed, or gone (their
# rows carry no key; `docs/contracts.md`). Only the record ops touch the snapshot.
RECORD_OPS = ("+I", "+U", "-D")
SCHEMA_OPS = ("+S", "-S")
_OPS = RECORD_OPS + SCHEMA_OPS
_REMOVALS = ("-D", "-S")

QUARANTINE_DIR = "quarantine"
REASON_SUFFIX = ".reason.json"
# How a quarantined run's error begins (`Quarantined.error`), so that listings can pick it out.
QUARANTINED = "spool quarantined"


def _dumps(text: str | None) -> bytes:
    try:
        return orjson.dumps(text)
    except orjson.JSONEncodeError:
        # Only lone surrogates make orjson refuse a str.
        return orjson.dumps(escape_surrogates(str(text)))


@dataclass(frozen=True)
class SpoolFile:
    """A run's complete spool: `rows` changelog rows in `path`."""

    run_id: str
    target: str
    path: Path
    rows: int


def spool_path(spool_dir: Path, run_id: str) -> Path:
    return spool_dir / f"{run_id}{SPOOL_SUFFIX}"


def part_path(spool_dir: Path, run_id: str) -> Path:
    return spool_dir / f"{run_id}{PART_SUFFIX}"


def fsync_dir(path: Path) -> None:
    """Make a rename or link in folder `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolWriter:
    """Streams one run's changelog rows into its `.part` file, then publishes it."""

    def __init__(self, spool_dir: Path, *, run_id: str, target: str, origin: str) -> None:
        self.run_id = run_id
        self.target = target
        self.origin = origin
        self.part = part_path(spool_dir, run_id)
        self.path = spool_path(spool_dir, run_id)
        self.rows = 0
        try:
            spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._head = b""

    def _unwritable(self, exc: OSError) -> StateError:
        folder = self.part.parent
        return StateError(f"the spool folder {folder} {folder_problem(folder, exc, self.part)}")

    def _where(self, *, db: str, db_version: int, store: str | None) -> dict[str, Any]:
        """The fields a row's place sets: the run, its target and origin, the database, the
        store."""
        return {
            "run_id": self.run_id,
            "target": self.target,
            "origin": self.origin,
            "db_name": db,
            "db_version": db_version,
            "store": store,
        }

    def _append(self, line: bytes) -> None:
        try:
            self._file.write(line)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        self.rows += 1

    def begin_store(self, *, db: str, db_version: int, store: str) -> None:
        """Set the store that the following rows belong to."""
        head = orjson.dumps(self._where(db=db, db_version=db_version, store=store))
        # Rows are the store's fixed fields plus the record's own: the prefix is encoded once.
        self._head = head[:-1] + b',"key":'

    def write(
        self,
        key: str,
        op: str,
        value: str | None,
        old_value: str | None,
        value_hash: str | None,
        harvested_at: str,
    ) -> None:
        """Append one changelog row: `value` and `value_hash` are None for `-D`, `old_value` (the
        committed value a `+U` or `-D` replaces) for `+I`."""
        line = b"".join(
            (
                self._head,
                _dumps(key),
                b',"op":"',
                op.encode(),
                b'","value":',
                _dumps(value),
                b',"old_value":',
                _dumps(old_value),
                b',"value_hash":',
                _dumps(value_hash),
                b',"harvested_at":"',
                harvested_at.encode(),
                b'"}\n',
            )
        )
        self._append(line)

    def write_schema(
        self,
        *,
        db: str,
        db_version: int,
        store: str | None,
        op: str,
        value: str | None,
        old_value: str | None,
        harvested_at: str,
    ) -> None:
        """Append one schema row (`op` +S or -S; `store` None for a database): no key, and the
        hash of `value` like a record's."""
        row = {
            **self._where(db=db, db_version=db_version, store=store),
            "key": None,
            "op": op,
            "value": value,
            "old_value": old_value,
            "value_hash": None if value is None else value_hash(value),
            "harvested_at": harvested_at,
        }
        self._append(orjson.dumps(row) + b"\n")

    def finish(self) -> SpoolFile:
        """Flush, fsync and atomically rename the `.part` file to its final name."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.part.rename(self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        return SpoolFile(run_id=self.run_id, target=self.target, path=self.path, rows=self.rows)

    def discard(self) -> None:
        """Close and delete the unfinished `.part` file."""
        with contextlib.suppress(OSError):
            self._file.close()
        self.part.unlink(missing_ok=True)


def read_rows(path: Path) -> Iterator[dict[str, object]]:
    """The rows of a spool file, one dict per line, streamed."""
    with path.open("rb") as file:
        for line in file:
            if line.strip():
                yield orjson.loads(line)


class BadSpoolError(HarvesterError):
    """A spool that is not its run's rows: `line` (1-based; None for the count) says where."""

    def __init__(self, problem: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(problem if line is None else f"line {line}: {problem}")


@functools.lru_cache(maxsize=64)
def _is_time(text: str) -> bool:
    # Flink takes the text as an instant: a time without an offset has none. Cached: a run's
    # rows share a handful of times.
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


# Each kind: its JSON value's Python type (compared exactly: JSON's true and false decode as
# bool, a subclass of int) and what a value of it is.
_KINDS: dict[FieldKind, tuple[type, str]] = {
    "text": (str, "a string"),
    "integer": (int, "an integer"),
    "timestamp": (str, "an ISO-8601 time with an offset"),
}
# Per field, in spool order, what `row_problem` checks: every line of every commit goes through.
_CHECKS = tuple(
    (name, *_KINDS[kind], name in _NULLABLE, kind == "timestamp") for name, kind in ROW_SCHEMA
)


def _json_kind(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def row_problem(row: object, *, run_id: str, target: str) -> str | None:
    """What makes one decoded spool line not a changelog row of run `run_id` of `target`."""
    if not isinstance(row, dict):
        return f"{_json_kind(row)}, not an object"
    if row.keys() != _FIELD_SET:
        missing = [name for name in ROW_FIELDS if name not in row]
        unknown = sorted(row.keys() - _FIELD_SET)
        return "; ".join(
            f"{what} field(s) {', '.join(names)}"
            for what, names in (("missing", missing), ("unknown", unknown))
            if names
        )
    for name, kind_type, what, nullable, timestamp in _CHECKS:
        value = row[name]
        if value is None and nullable:
            continue
        if type(value) is not kind_type or (timestamp and not _is_time(value)):
            # The value is not quoted: it may be a record's, which a log must not carry.
            return f"{name} is not {what}"
    # Identifiers may be quoted, cut short: the line may be anything.
    if row["run_id"] != run_id:
        return f"a row of run {row['run_id']!r:.80}, not of run {run_id}"
    if row["target"] != target:
        return f"a row of target {row['target']!r:.80}, not of {target!r}"
    if (op := row["op"]) not in _OPS:
        return f"op {op!r:.20} is none of {', '.join(_OPS)}"
    gone = op in _REMOVALS
    for name in ("value", "value_hash"):
        if (row[name] is None) != gone:
            return f"a {op} row {'with' if gone else 'without'} a {name}"
    if op in RECORD_OPS:
        for name in ("key", "store"):
            if row[name] is None:
                return f"a {op} row without a {name}"
    elif row["key"] is not None:
        return f"a {op} row with a key"
    return None


def checked_rows(spool: SpoolFile) -> Iterator[dict[str, Any]]:
    """The rows of `spool`, streamed, each checked (`row_problem`); raises `BadSpoolError` at
    the first bad line, or after the last when there were not `spool.rows` of them."""
    count = 0
    with spool.path.open("rb") as file:
        for count, line in enumerate(file, 1):
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise BadSpoolError(f"not JSON: {exc.msg} at byte {exc.pos}", line=count) from exc
            if problem := row_problem(row, run_id=spool.run_id, target=spool.target):
                raise BadSpoolError(problem, line=count)
            yield row
    if count != spool.rows:
        raise BadSpoolError(f"{count} rows, but its run spooled {spool.rows}")


def check_spool(spool: SpoolFile) -> None:
    """Raise `BadSpoolError` unless every line of `spool` is a row of its run (streamed)."""
    collections.deque(checked_rows(spool), maxlen=0)


@dataclass(frozen=True)
class Quarantined:
    """A spool moved to the quarantine folder, as its reason file tells."""

    run_id: str
    target: str
    problem: str
    path: Path  # the spool, now in the quarantine folder
    at: str  # when it was moved (ISO-8601 UTC)

    @property
    def error(self) -> str:
        """The run's error in the state DB."""
        return f"{QUARANTINED}: {self.problem} (moved to {self.path})"


def quarantine_dir(state_dir: Path) -> Path:
    return state_dir / QUARANTINE_DIR


def _reason_path(folder: Path, run_id: str) -> Path:
    return folder / f"{run_id}{REASON_SUFFIX}"


def quarantine(spool: SpoolFile, problem: str, folder: Path) -> Quarantined:
    """Move `spool` into `folder`, beside `<run_id>.reason.json` saying what is wrong with it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    moved = Quarantined(spool.run_id, spool.target, problem, folder / spool.path.name, iso_utc())
    reason = {
        "run_id": moved.run_id,
        "target": moved.target,
        "rows": spool.rows,
        "problem": problem,
        "quarantined_at": moved.at,
        "spool": moved.path.name,
    }
    # The reason first: a spool found in quarantine always has one.
    fd = os.open(_reason_path(folder, spool.run_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(orjson.dumps(reason, option=orjson.OPT_INDENT_2) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    spool.path.rename(moved.path)
    fsync_dir(folder)
    fsync_dir(spool.path.parent)
    return moved


def quarantined_spool(folder: Path, run_id: str) -> Quarantined | None:
    """The quarantined spool of run `run_id`, if its reason file is in `folder` and readable."""
    try:
        reason = orjson.loads(_reason_path(folder, run_id).read_bytes())
        return Quarantined(
            run_id=reason["run_id"],
            target=reason["target"],
            problem=reason["problem"],
            # Beside its reason, wherever the state folder has moved since.
            path=folder / f"{run_id}{SPOOL_SUFFIX}",
            at=reason["quarantined_at"],
        )
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None


def quarantined(folder: Path) -> list[Quarantined]:
    """Every spool in the quarantine folder `folder` with a readable reason, oldest first."""
    if not folder.is_dir():
        return []
    found = (
        quarantined_spool(folder, path.name.removesuffix(REASON_SUFFIX))
        for path in folder.glob(f"*{REASON_SUFFIX}")
    )
    # A reason whose spool a person removed (or that a crash left before the move) is no spool.
    spools = [q for q in found if q is not None and q.path.is_file()]
    return sorted(spools, key=lambda q: (q.at, q.run_id))
