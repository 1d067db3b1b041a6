"""Retention: how many runs of a target the state DB keeps, with their stores and history.

Committed runs and failed runs have bounds of their own, so a target that is down for a while
never pushes its committed history out: `diff --last N` and `as_of` need the committed runs,
while failures only explain what went wrong. Committed runs are kept in commit order (`seq`),
the order the history is rebuilt in, so the kept history has no holes. Running and pending runs
are never pruned.
"""

from __future__ import annotations

import sqlite3

# Failed runs kept per target by default: a day of failures every 15 minutes, a few KB each.
KEEP_FAILED_RUNS = 100

_OLD_COMMITTED = (
    "SELECT id FROM runs WHERE target = ? AND status = 'committed' "
    "ORDER BY seq DESC LIMIT -1 OFFSET ?"
)
_OLD_FAILED = (
    "SELECT id FROM runs WHERE target = ? AND status = 'failed' AND pending = 0 "
    "ORDER BY started_at DESC, rowid DESC LIMIT -1 OFFSET ?"
)


def prune(conn: sqlite3.Connection, target: str, *, keep_runs: int, keep_failed_runs: int) -> None:
    """Keep the newest `keep_runs` committed and `keep_failed_runs` failed runs of `target`.

    Runs inside the caller's write transaction.
    """
    old = [
        (row[0],)
        for sql, keep in ((_OLD_COMMITTED, keep_runs), (_OLD_FAILED, keep_failed_runs))
        for row in conn.execute(sql, (target, keep)).fetchall()
    ]
    conn.executemany("DELETE FROM changes WHERE run_id = ?", old)
    conn.executemany("DELETE FROM run_stores WHERE run_id = ?", old)
    conn.executemany("DELETE FROM runs WHERE id = ?", old)
