"""The life of a run before its commit: started, read (pending), failed, dropped."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from harvester.errors import StateError
from harvester.limits import MAX_PROBLEMS
from harvester.state.connections import Connections
from harvester.state.records import ReadScope, RunStore
from harvester.state.retention import prune
from harvester.state.schemas import scope_text
from harvester.timefmt import iso_utc

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def new_run_id(target: str, moment: datetime | None = None) -> str:
    """`<target>-<UTC timestamp>-<random>`, safe as a file name whatever the target is called."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    # An id, not a time to read back: compact, and sorting like the time it was made.
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"
    return f"{_UNSAFE.sub('_', target)[:64]}-{stamp}-{secrets.token_hex(3)}"


def kept(problems: Sequence[Any]) -> list[Any]:
    """At most `MAX_PROBLEMS` problems, then one saying how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return list(problems)
    more = {"key": None, "message": f"{len(problems) - MAX_PROBLEMS} more problems not kept"}
    return [*problems[:MAX_PROBLEMS], more]


def start_run(
    conns: Connections, target: str, *, full: bool, trigger: str | None, events: int | None
) -> str:
    run_id = new_run_id(target)
    conns.write(
        "INSERT INTO runs (id, target, status, full, started_at, trigger, trigger_events) "
        "VALUES (?, ?, 'running', ?, ?, ?, ?)",
        (run_id, target, int(full), iso_utc(), trigger, events),
    )
    return run_id


def _store_rows(run_id: str, stores: Iterable[RunStore]) -> list[tuple[Any, ...]]:
    return [
        (
            run_id,
            s.db,
            s.store,
            s.db_version,
            json.dumps(s.key_path),
            int(s.auto_increment),
            json.dumps(s.indexes),
            s.records,
            s.bytes,
            s.rows,
            s.inserted,
            s.updated,
            s.deleted,
            s.unchanged,
            int(s.complete),
            json.dumps(kept(s.problems)),
            s.seconds,
        )
        for s in stores
    ]


def _save_stores(conn: sqlite3.Connection, run_id: str, stores: Sequence[RunStore]) -> None:
    conn.execute("DELETE FROM run_stores WHERE run_id = ?", (run_id,))
    conn.executemany(
        "INSERT INTO run_stores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _store_rows(run_id, stores),
    )
    conn.execute(
        """UPDATE runs SET
            records = (SELECT coalesce(sum(records), 0) FROM run_stores WHERE run_id = :id),
            bytes = (SELECT coalesce(sum(bytes), 0) FROM run_stores WHERE run_id = :id),
            inserted = (SELECT coalesce(sum(inserted), 0) FROM run_stores WHERE run_id = :id),
            updated = (SELECT coalesce(sum(updated), 0) FROM run_stores WHERE run_id = :id),
            deleted = (SELECT coalesce(sum(deleted), 0) FROM run_stores WHERE run_id = :id),
            unchanged = (SELECT coalesce(sum(unchanged), 0) FROM run_stores
                         WHERE run_id = :id),
            incomplete_stores = (SELECT count(*) FROM run_stores
                                 WHERE run_id = :id AND NOT complete)
        WHERE id = :id""",
        {"id": run_id},
    )


def _run(conn: sqlite3.Connection, run_id: str) -> sqlite3.Row:
    """The target and status of run `run_id`; an unknown run is an error."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT target, status FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    if row is None:
        raise StateError(f"no run {run_id!r} in the state database")
    return row


def mark_read(
    conns: Connections,
    run_id: str,
    *,
    origin: str,
    stores: Sequence[RunStore],
    rows: int,
    problems: Sequence[Mapping[str, Any]],
    scope: ReadScope | None,
) -> None:
    with conns.writing() as conn:
        now = _run(conn, run_id)["status"]
        if now != "running":
            raise StateError(f"run {run_id} is {now}, not running: cannot mark it read")
        _save_stores(conn, run_id, stores)
        conn.execute(
            "UPDATE runs SET status = 'read', pending = 1, origin = ?, rows = ?, read_at = ?, "
            "problems = ?, scope = ? WHERE id = ?",
            (origin, rows, iso_utc(), json.dumps(kept(problems)), scope_text(scope), run_id),
        )


def fail_run(
    conns: Connections,
    run_id: str,
    error: str,
    *,
    origin: str | None,
    stores: Sequence[RunStore] | None,
    problems: Sequence[Mapping[str, Any]] | None,
    keep_runs: int,
    keep_failed_runs: int,
) -> None:
    """Mark a run `failed` with `error` (already redacted), unless it is committed.

    Failed runs are pruned here too: a target that never commits still keeps only so many.
    """
    with conns.writing() as conn:
        run = _run(conn, run_id)
        if run["status"] == "committed":
            return
        if stores is not None:
            _save_stores(conn, run_id, stores)
        if problems is not None:
            conn.execute(
                "UPDATE runs SET problems = ? WHERE id = ?",
                (json.dumps(kept(problems)), run_id),
            )
        conn.execute(
            "UPDATE runs SET status = 'failed', error = ?, origin = coalesce(?, origin), "
            "finished_at = ? WHERE id = ?",
            (error, origin, iso_utc(), run_id),
        )
        prune(conn, run["target"], keep_runs=keep_runs, keep_failed_runs=keep_failed_runs)


def drop_pending(
    conns: Connections, run_id: str, error: str, *, keep_runs: int, keep_failed_runs: int
) -> None:
    """Fail a run whose spool can never be sent (`error` already redacted): it stops pending."""
    with conns.writing() as conn:
        run = _run(conn, run_id)
        if run["status"] == "committed":
            return
        conn.execute(
            "UPDATE runs SET status = 'failed', pending = 0, error = ?, "
            "finished_at = coalesce(finished_at, ?) WHERE id = ?",
            (error, iso_utc(), run_id),
        )
        prune(conn, run["target"], keep_runs=keep_runs, keep_failed_runs=keep_failed_runs)
