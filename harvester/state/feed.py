"""The changes feed: the committed change history in commit order, from a position, a page at a
time (`GET /api/v1/changes`).

A position is "after `done` rows of the committed run `seq`". Runs are numbered densely at
commit (`max(seq) + 1`) and only retention removes them, so the feed's retained part starts
after the newest gap: every run after it is still there, whole. A run's rows are inserted in
one transaction, so their rowids are consecutive and a row's place in its run is its rowid less
the run's first one; that place, not the rowid, is what a position holds.

A change row keeps the value it replaced and the hash of the value it wrote: that value is the
snapshot's (its last change) or the next change's `old_value`, found by hash, as in `history`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harvester.errors import FeedGoneError
from harvester.state.connections import Connections

# The newest run after a gap in `seq`: what came before it was pruned (or never committed here).
_HORIZON = """
    SELECT coalesce(max(r.seq) - 1, 0) FROM runs r
    WHERE r.seq > 1 AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.seq = r.seq - 1)"""
_RUN_AT = "SELECT id, seq FROM runs WHERE seq = ?"
_RUNS_AFTER = """
    SELECT id, seq FROM runs WHERE seq > :seq AND (:target IS NULL OR target = :target)
    ORDER BY seq"""
# A run's rowids are consecutive: their range gives its first row and its row count.
_ROWIDS = "SELECT min(rowid), max(rowid) FROM changes WHERE run_id = ?"
_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM runs"
# One run's rows from its `start`-th on (rowid order), each with the value it wrote.
_ROWS = """
    SELECT c.run_id, r.seq, c.rowid - :first + 1 AS run_row, r.target, c.origin,
        c.db AS db_name, rs.db_version, c.store, c.key, c.op, c.old_value,
        c.new_hash AS value_hash, coalesce(r.read_at, r.finished_at) AS harvested_at,
        r.finished_at AS committed_at,
        CASE WHEN c.op = '-D' THEN NULL ELSE coalesce(
            (SELECT s.value FROM snapshot s
             WHERE s.target = c.target AND s.origin = c.origin AND s.db = c.db
             AND s.store = c.store AND s.key = c.key AND s.value_hash = c.new_hash),
            (SELECT n.old_value FROM changes n
             WHERE n.key = c.key AND n.target = c.target AND n.origin = c.origin AND n.db = c.db
             AND n.store = c.store AND n.old_hash = c.new_hash AND n.old_value IS NOT NULL
             LIMIT 1)) END AS value
    FROM changes c JOIN runs r ON r.id = c.run_id
    LEFT JOIN run_stores rs ON rs.run_id = c.run_id AND rs.db = c.db AND rs.store = c.store
    WHERE c.run_id = :run_id AND c.rowid >= :first + :start
    AND (:db IS NULL OR (c.db = :db AND c.store = :store))
    ORDER BY c.rowid LIMIT :limit"""


@dataclass(frozen=True)
class Position:
    """After `done` rows of the committed run `seq` (`run_id`, which tells this state DB's run
    `seq` from another's). `run_id` None: before the first retained run, `seq` the gap's end."""

    seq: int
    done: int = 0
    run_id: str | None = None


# A row of the feed: the changelog row of docs/contracts.md as the state DB keeps it (`value`
# rebuilt, None for a -D or when no longer held; `db_version` None for a -D of a store found
# gone; `harvested_at` when the run's read ended), with the run's `seq` and `committed_at`, and
# `run_row`: its number in its run, 1 first. After it: Position(seq, run_row, run_id).
FeedRow = dict[str, Any]


def start(conns: Connections) -> Position:
    """Where the retained feed begins: before its oldest run."""
    return Position(int(conns.rows(_HORIZON)[0][0]))


def last_seq(conns: Connections) -> int:
    """The newest committed run's number (0 before the first): it grows at every commit."""
    return int(conns.rows(_LAST_SEQ)[0][0])


def _check(conns: Connections, after: Position) -> None:
    horizon = start(conns).seq
    if after.run_id is None:
        if after.seq != horizon:
            raise FeedGoneError(
                "the feed's start has moved on: runs after it were removed by retention"
                if after.seq < horizon
                else "the position is not one this state DB gave"
            )
        return
    found = conns.rows(_RUN_AT, (after.seq,))
    if not found or found[0]["id"] != after.run_id:
        if after.seq <= horizon:
            raise FeedGoneError(f"run {after.run_id} was removed by retention")
        raise FeedGoneError(
            f"run {after.run_id} is not run {after.seq} of this state DB: the position comes "
            "from another state folder, or this one was reset"
        )


@dataclass(frozen=True)
class FeedPage:
    """Rows in commit order, and the position to read on from: after the last row, or after
    the last run looked at when the feed's end was reached (its rows all filtered out)."""

    rows: list[FeedRow]
    next: Position
    more: bool  # stopped at `limit` or `max_bytes`, not at the end


def page(
    conns: Connections,
    after: Position | None,
    *,
    limit: int,
    max_bytes: int,
    target: str | None = None,
    store: tuple[str, str] | None = None,
) -> FeedPage:
    """Up to `limit` rows after `after` (None: from the feed's start), fewer once their values
    pass `max_bytes` (at least one), of `target` and `store` (db, store) only if given;
    FeedGoneError when `after` is older than retention or not from this state DB. One read
    transaction: a commit meanwhile is either wholly in the page or not at all, and retention
    cannot move the start between finding it and reading from it."""
    db, store_name = store if store is not None else (None, None)
    rows: list[FeedRow] = []
    size = 0
    with conns.reading() as reader:
        if after is None:
            after = start(conns)
        else:
            _check(conns, after)
        end = after
        runs: list[tuple[str, int, int]] = []
        if after.run_id is not None:
            runs.append((after.run_id, after.seq, after.done))
        runs.extend(
            (row["id"], row["seq"], 0)
            for row in reader.execute(_RUNS_AFTER, {"seq": after.seq, "target": target})
        )
        for run_id, seq, done in runs:
            first, last = reader.execute(_ROWIDS, (run_id,)).fetchone()
            if first is not None:
                params = {
                    "first": first,
                    "run_id": run_id,
                    "start": done,
                    "db": db,
                    "store": store_name,
                    "limit": limit - len(rows) + 1,
                }
                for row in reader.execute(_ROWS, params):
                    if len(rows) == limit or (rows and size >= max_bytes):
                        return FeedPage(rows, after_row(rows[-1]), more=True)
                    rows.append(dict(row))
                    size += len(row["value"] or "") + len(row["old_value"] or "")
            end = Position(seq, 0 if first is None else last - first + 1, run_id)
    return FeedPage(rows, end, more=False)


def after_row(row: FeedRow) -> Position:
    """The position right after `row`."""
    return Position(row["seq"], row["run_row"], row["run_id"])
