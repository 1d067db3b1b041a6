"""Spool files: a run's changelog rows as JSON lines, the unit the sending stage takes.

A run writes `<state.dir>/spool/<run_id>.jsonl.part`; once its read is complete the file is
fsynced and renamed to `<run_id>.jsonl` (atomic), so a `.jsonl` file is always whole. It is
deleted only after the run's commit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from harvester.surrogates import escape_surrogates

SPOOL_SUFFIX = ".jsonl"
PART_SUFFIX = ".jsonl.part"
# The changelog row, in spool order: each field and the kind of its JSON value. The one
# definition: the writer below and Flink's `change_log` columns (flink_jobs.pipeline) follow it.
# `text` may be null (`value` and `value_hash` of a `-D`, `old_value` of a `+I`); `timestamp` is
# an ISO-8601 UTC string.
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
        spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.run_id = run_id
        self.target = target
        self.origin = origin
        self.part = part_path(spool_dir, run_id)
        self.path = spool_path(spool_dir, run_id)
        self.rows = 0
        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._head = b""

    def begin_store(self, *, db: str, db_version: int, store: str) -> None:
        """Set the store that the following rows belong to."""
        head = orjson.dumps(
            {
                "run_id": self.run_id,
                "target": self.target,
                "origin": self.origin,
                "db_name": db,
                "db_version": db_version,
                "store": store,
            }
        )
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
        self._file.write(
            b"".join(
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
        )
        self.rows += 1

    def finish(self) -> SpoolFile:
        """Flush, fsync and atomically rename the `.part` file to its final name."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.part.rename(self.path)
        fsync_dir(self.path.parent)
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
