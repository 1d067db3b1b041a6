"""One record's history: every version of one key across the kept committed runs.

A change row holds the value it replaced (`old_value`) and the hash of the value it wrote
(`new_hash`), never that value itself: it is the `old_value` of the key's next change, or the
snapshot's value after its last one. So the versions are rebuilt from the key's rows and its
snapshot row together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from harvester.state.connections import Connections
from harvester.timefmt import parse_iso

# `r.target` as well as `c.target`: without an index on the changes' keys, SQLite can then walk
# the target's runs (`runs_by_target`) and each run's changes (`changes_by_run`) instead of every
# change of every target; with one (`changes_by_key`), it looks the key up directly.
KEY_CHANGES = """
    SELECT c.run_id, r.seq, r.started_at, r.finished_at, c.op, c.old_hash, c.new_hash,
        c.old_value
    FROM changes c JOIN runs r ON r.id = c.run_id
    WHERE r.target = :target AND c.target = :target AND c.origin = :origin AND c.db = :db
    AND c.store = :store AND c.key = :key AND r.seq IS NOT NULL
    ORDER BY r.seq, c.rowid"""
_CURRENT = """
    SELECT value, value_hash FROM snapshot
    WHERE target = :target AND origin = :origin AND db = :db AND store = :store AND key = :key"""


@dataclass(frozen=True)
class KeyVersion:
    """One change of one record, with the values on both sides when the state DB keeps them."""

    run_id: str
    seq: int  # the run's commit order
    started_at: datetime
    committed_at: datetime | None  # the run's `finished_at`: when it was committed
    op: str  # "+I", "+U" or "-D"
    old_hash: str | None  # None for +I
    new_hash: str | None  # None for -D
    old_value: str | None  # typed JSON text the change replaced; None for +I or when not kept
    new_value: str | None  # typed JSON text it wrote; None for -D or when not kept


def key_history(
    conns: Connections, target: str, origin: str, db: str, store: str, key: str
) -> list[KeyVersion]:
    """Every kept change of record `key` (typed JSON text), oldest first, values rebuilt."""
    ident = {"target": target, "origin": origin, "db": db, "store": store, "key": key}
    rows = conns.rows(KEY_CHANGES, ident)
    if not rows:
        return []
    # Values by hash. A hash names one value, so this is the next change's old value (or the
    # snapshot's) for each version, and also finds a value whose own old_value was not kept
    # (history from before schema 2) when the record held it again at another time.
    values = {row["old_hash"]: row["old_value"] for row in rows if row["old_value"] is not None}
    values.update((row["value_hash"], row["value"]) for row in conns.rows(_CURRENT, ident))
    return [
        KeyVersion(
            run_id=row["run_id"],
            seq=row["seq"],
            started_at=parse_iso(row["started_at"]),
            committed_at=parse_iso(row["finished_at"]) if row["finished_at"] else None,
            op=row["op"],
            old_hash=row["old_hash"],
            new_hash=row["new_hash"],
            old_value=(
                row["old_value"] if row["old_value"] is not None else values.get(row["old_hash"])
            ),
            new_value=values.get(row["new_hash"]),
        )
        for row in rows
    ]
