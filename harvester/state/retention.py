"""Retention: how many runs of a target the state DB keeps, with their stores and history.

Committed runs and failed runs have bounds of their own, so a target that is down for a while
never pushes its committed history out: `diff --last N` and `as_of` need the committed runs,
while failures only explain what went wrong. Committed runs are kept in commit order (`seq`),
the order the history is rebuilt in, so the kept history has no holes. Running and pending runs
are never pruned, nor a committed run handed off to the changelog log and not consumed yet,
nor any committed after it.
"""

from __future__ import annotations

import sqlite3

# Failed runs kept per target by default: a day of failures every 15 minutes, a few KB each.
KEEP_FAILED_RUNS = 100

# The committed runs past the newest `keep`, except those from the oldest run handed off and not
# consumed on. That run must stay: it is how the state DB knows what the log's consumer has still
# to take (`undelivered`, the delivery lag). The runs after it stay too, because keeping it alone
# would leave a hole in the history after it, which `as_of` and `diff` rebuild from. So while
# the consumer lags, the target's retention waits for it.
_OLD_COMMITTED = """
    SELECT id FROM (
        SELECT id, seq FROM runs WHERE target = :target AND status = 'committed'
        ORDER BY seq DESC LIMIT -1 OFFSET :keep
    ) AS old
    WHERE NOT EXISTS (
        SELECT 1 FROM runs AS waiting WHERE waiting.target = :target
        AND waiting.status = 'committed' AND waiting.handed_off_at IS NOT NULL
        AND waiting.consumed_at IS NULL AND waiting.seq <= old.seq
    )"""
_OLD_FAILED = (
    "SELECT id FROM runs WHERE target = :target AND status = 'failed' AND pending = 0 "
    "ORDER BY started_at DESC, rowid DESC LIMIT -1 OFFSET :keep"
)


def prune(conn: sqlite3.Connection, target: str, *, keep_runs: int, keep_failed_runs: int) -> None:
    """Keep the newest `keep_runs` committed and `keep_failed_runs` failed runs of `target`,
    and every committed run from the oldest one handed off and not consumed on.

    Runs inside the caller's write transaction.
    """
    old = [
        (row[0],)
        for sql, keep in ((_OLD_COMMITTED, keep_runs), (_OLD_FAILED, keep_failed_runs))
        for row in conn.execute(sql, {"target": target, "keep": keep}).fetchall()
    ]
    conn.executemany("DELETE FROM changes WHERE run_id = ?", old)
    conn.executemany("DELETE FROM run_stores WHERE run_id = ?", old)
    conn.executemany("DELETE FROM runs WHERE id = ?", old)
