"""Delivery: runs handed off to the changelog log, and what the log's consumer acknowledged.

A sink whose send is the delivery (JSON lines, a per-harvest Flink job) has its runs consumed at
commit (`commit_run(delivered=True)`). A run sent to the log is handed off (`hand_off`: its
number in the log), committed, and consumed once the consumer's acknowledgements count all its
rows (`mark_consumed`); until then retention keeps it (`retention`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from harvester.errors import StateError
from harvester.state.connections import LOOKUP_CHUNK, Connections, marks
from harvester.state.queries import runs_where
from harvester.state.records import Run, TargetDelivery
from harvester.timefmt import iso_utc, parse_iso

# A run the consumer has to take: committed, with rows, handed off (the count `delivery` gives).
_HANDED_OFF = "status = 'committed' AND rows > 0 AND handed_off_at IS NOT NULL"


def hand_off(conns: Connections, run_id: str, *, above: int = 0) -> int:
    """The run's number in the log: the first time, the next one over all runs and above
    `above` (the highest number in the log folder); the same number after."""
    with conns.writing() as conn:
        run = conn.execute(
            "SELECT status, pending, log_seq FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if run is None:
            raise StateError(f"no run {run_id!r} in the state database")
        if run["log_seq"] is not None:
            return int(run["log_seq"])
        if not run["pending"] and run["status"] != "committed":
            raise StateError(f"run {run_id} ({run['status']}) has no spool to hand off")
        seq = int(conn.execute("SELECT coalesce(max(log_seq), 0) FROM runs").fetchone()[0])
        seq = max(seq, above) + 1
        conn.execute(
            "UPDATE runs SET log_seq = ?, handed_off_at = coalesce(handed_off_at, ?) WHERE id = ?",
            (seq, iso_utc(), run_id),
        )
        return seq


def mark_consumed(conns: Connections, counts: Mapping[str, int]) -> list[str]:
    """Record the rows acknowledged per run; the runs this made consumed, in log order.

    The counts are cumulative, so the highest one seen wins and a count given again changes
    nothing. Runs this DB never handed off are ignored: other harvesters may share the log.
    """
    ids = list(counts)
    became: list[tuple[int, str]] = []
    with conns.writing() as conn:
        conn.executemany(
            "UPDATE runs SET consumed_rows = max(consumed_rows, ?) "
            "WHERE id = ? AND log_seq IS NOT NULL",
            [(int(count), run_id) for run_id, count in counts.items()],
        )
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            rows = conn.execute(
                f"SELECT log_seq, id FROM runs WHERE id IN ({marks(len(chunk))}) "
                "AND log_seq IS NOT NULL AND consumed_at IS NULL AND consumed_rows >= rows",
                chunk,
            )
            became.extend((row[0], row[1]) for row in rows)
        now = iso_utc()
        conn.executemany(
            "UPDATE runs SET consumed_at = ? WHERE id = ?", [(now, run_id) for _, run_id in became]
        )
    return [run_id for _, run_id in sorted(became)]


def undelivered(conns: Connections, target: str | None) -> list[Run]:
    return runs_where(conns, f"{_HANDED_OFF} AND consumed_at IS NULL", target, "log_seq")


def delivery(conns: Connections, now: datetime) -> list[TargetDelivery]:
    # Times are `iso_utc` texts, all of one length: the least text is the earliest time.
    rows = conns.rows(
        f"""SELECT target,
            sum({_HANDED_OFF}) AS handed_off,
            sum({_HANDED_OFF} AND consumed_at IS NOT NULL) AS consumed,
            min(CASE WHEN {_HANDED_OFF} AND consumed_at IS NULL THEN handed_off_at END)
                AS waiting_since
        FROM runs GROUP BY target ORDER BY target"""
    )
    found = []
    for row in rows:
        since = None if row["waiting_since"] is None else parse_iso(row["waiting_since"])
        lag = 0.0 if since is None else max(0.0, round((now - since).total_seconds(), 3))
        found.append(TargetDelivery(row["target"], row["handed_off"], row["consumed"], since, lag))
    return found
