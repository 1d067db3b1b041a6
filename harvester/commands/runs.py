"""`harvester runs`: list harvest runs, newest first."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from harvester.inspect.options import (
    format_options,
    open_state,
    output_format,
    positive_int,
    state_options,
)
from harvester.inspect.queries import run_dict
from harvester.inspect.render import Column, write_rows
from harvester.inspect.triggers import stores_read, trigger_text
from harvester.spool import QUARANTINED
from harvester.state import Run, TargetDelivery

# The default table fits a run on one line of 80 columns: the id (which holds the target and
# the start time) whole, the counts in one cell, the error cut to the width left. Delivery is
# left to `--wide`: beside these, its cell leaves no width for the error.
COLUMNS = (
    Column("id", "run", fit="keep"),
    Column("status", "status", fit="keep"),
    Column("duration_s", "seconds", "right", fit="keep"),
    Column("changes", "+I/+U/-D", "right", fit="keep"),
    Column("error", "error", fit="cut"),
)
# Added before `error` when an event-driven run is listed: what triggered it, the stores it read.
TRIGGER_COLUMN = Column("trigger_text", "trigger", fit="cut")

# `--wide`, and CSV, which has no width to keep to: every field.
WIDE_COLUMNS = (
    Column("id", "run", fit="keep"),
    Column("target", "target"),
    Column("status", "status"),
    Column("delivered", "delivered"),
    Column("full", "full"),
    Column("trigger_text", "trigger"),
    Column("origin", "origin"),
    Column("started_at", "started"),
    Column("read_at", "read"),
    Column("finished_at", "finished"),
    Column("duration_s", "seconds", "right"),
    Column("seq", "seq", "right"),
    Column("pending", "pending"),
    Column("log_seq", "log seq", "right"),
    Column("handed_off_at", "handed off"),
    Column("consumed_at", "consumed"),
    Column("consumed_rows", "consumed rows", "right"),
    Column("records", "records", "right"),
    Column("bytes", "bytes", "right"),
    Column("rows", "rows", "right"),
    Column("inserted", "+I", "right"),
    Column("updated", "+U", "right"),
    Column("deleted", "-D", "right"),
    Column("unchanged", "unchanged", "right"),
    Column("incomplete_stores", "incomplete stores", "right"),
    Column("problems", "problems"),
    Column("error", "error"),
)


# (below, unit, its seconds): an age under `below` seconds shows in `unit`, then days.
_AGE_UNITS = ((60, "s", 1), (3600, "m", 60), (48 * 3600, "h", 3600))


def _age(seconds: float) -> str:
    """A duration in whole units, short enough for a cell: `59s`, `1m`, `59m`, `47h`, `2d`."""
    whole = max(0, int(seconds))
    for below, unit, size in _AGE_UNITS:
        if whole < below:
            return f"{whole // size}{unit}"
    return f"{whole // 86400}d"


def delivered(run: Run, now: datetime) -> str:
    """`✓` once the run's rows were delivered, `waiting 12s` since its hand-off to the
    changelog log while the consumer has not acknowledged them all, `—` with nothing to deliver
    (no rows, or not committed)."""
    if run.status != "committed" or run.rows == 0:
        return "—"
    if run.consumed_at is not None:
        return "✓"
    if run.handed_off_at is None:
        return "waiting"
    return f"waiting {_age((now - run.handed_off_at).total_seconds())}"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "runs",
        parents=[common, state_options(), format_options()],
        help="list harvest runs",
        description="List harvest runs, newest first, with their status, timings and counts.",
    )
    parser.add_argument("--target", metavar="T", help="only runs of this target")
    parser.add_argument("--status", metavar="S", help="only runs with this status")
    parser.add_argument(
        "--limit", metavar="N", type=positive_int, default=50, help="at most N runs (default 50)"
    )
    parser.add_argument(
        "--wide", action="store_true", help="a table of every field (csv always has them all)"
    )
    parser.set_defaults(func=run)


def delivery_lines(targets: list[TargetDelivery], only: str | None) -> list[str]:
    """Per target, `handed off / consumed` by the continuous Flink job and its lag."""
    lines = []
    for t in targets:
        if t.handed_off and only in (None, t.target):
            lag = f", waiting {_age(t.lag_seconds)}" if t.lag_seconds else ""
            lines.append(f"{t.target}: {t.consumed} of {t.handed_off} runs consumed by Flink{lag}")
    return lines


def quarantine_lines(runs: list[Run]) -> list[str]:
    """The listed runs whose spool was quarantined, each with its whole reason (the table cuts
    errors to fit)."""
    return [f"{r.id}: {r.error}" for r in runs if (r.error or "").startswith(QUARANTINED)]


def run(args: argparse.Namespace) -> int:
    with open_state(args) as reader:
        runs = reader.runs(target=args.target, status=args.status, limit=args.limit)
        delivery = reader.delivery()
        read = stores_read(reader.path, runs)
    rows = [run_dict(r) for r in runs]
    for row, r in zip(rows, runs, strict=True):
        if r.trigger == "event":
            row["stores_read"] = read.get(r.id, [])
        if output_format(args) != "json":
            row["trigger_text"] = trigger_text(r, read.get(r.id))
    fmt = output_format(args)
    columns: tuple[Column, ...] = WIDE_COLUMNS
    if fmt == "table" and not args.wide:
        columns = COLUMNS
        if read:
            columns = (*COLUMNS[:-1], TRIGGER_COLUMN, COLUMNS[-1])
        for row in rows:
            row["changes"] = f"{row['inserted']}/{row['updated']}/{row['deleted']}"
    elif fmt != "json":
        # JSON has the times themselves; a cell's age is only true when it is printed.
        now = datetime.now(UTC)
        for row, r in zip(rows, runs, strict=True):
            row["delivered"] = delivered(r, now)
    write_rows(rows, columns, fmt, sys.stdout, title="runs", wide=args.wide)
    if fmt == "table":
        for line in [*quarantine_lines(runs), *delivery_lines(delivery, args.target)]:
            print(line)
    return 0
