"""Read-only access to the state DB for inspection, through `harvester.state.StateDB`'s query
API only.

The DB is opened read-only (`mode=ro`: nothing here can change it, and a missing file is an
error instead of a new empty DB) and must be at this harvester's schema version, whatever the
file is called. This module adds what inspection needs on top: errors that list what exists, and
diffs with the values the state DB still holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from harvester.errors import UsageError
from harvester.inspect.diff import Change, StoreDiff, net_diff
from harvester.state import (
    DB_NAME,
    RUN_STATUSES,
    KeyVersion,
    RecordPage,
    Run,
    RunStatus,
    SchemaChange,
    SchemaDb,
    SchemaStore,
    SnapshotRecord,
    StateDB,
    Store,
    TargetDelivery,
)
from harvester.state import Change as HistoryRow
from harvester.state.feed import FeedPage, Position
from harvester.timefmt import iso_utc

LISTED = 20  # known names an error message lists before "…"
OPS = (("+I", "added"), ("+U", "changed"), ("-D", "removed"))


def _unknown(kind: str, wanted: str, known: Sequence[str], where: str = "") -> UsageError:
    shown = ", ".join(repr(k) for k in known[:LISTED]) + (", …" if len(known) > LISTED else "")
    return UsageError(f"unknown {kind} {wanted!r}{where}; known: {shown or '(none)'}")


def run_dict(run: Run) -> dict[str, Any]:
    """A run as JSON-ready data, with its duration in seconds."""
    data = asdict(run)
    for name in ("started_at", "read_at", "finished_at", "handed_off_at", "consumed_at"):
        moment = data[name]
        data[name] = None if moment is None else iso_utc(moment)
    duration = None
    if run.finished_at is not None:
        duration = round((run.finished_at - run.started_at).total_seconds(), 3)
    data["duration_s"] = duration
    return data


def store_dict(store: Store) -> dict[str, Any]:
    return asdict(store)


def db_file(path: Path) -> Path:
    """The state DB file of `path`, which names the file or the state folder holding it."""
    return path / DB_NAME if path.is_dir() else path


def _change(row: HistoryRow) -> Change:
    return Change(
        row.run_id, row.db, row.store, row.key, row.op, row.old_hash, row.new_hash, row.old_value
    )


class StateReader:
    """A read-only view of one state DB."""

    def __init__(self, path: Path) -> None:
        self.path = db_file(path)
        if not self.path.is_file():
            raise UsageError(f"no state database at {self.path}: run a harvest first")
        self._state = StateDB.open_file(self.path)

    def close(self) -> None:
        self._state.close()

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- runs --------------------------------------------------------------------------------

    def targets(self) -> list[str]:
        """Every target with a run or a store."""
        return self._state.targets()

    def check_target(self, target: str) -> None:
        known = self.targets()
        if target not in known:
            raise _unknown("target", target, known)

    def runs(
        self,
        *,
        target: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        oldest_first: bool = False,
    ) -> list[Run]:
        """Runs, newest first (or oldest first), optionally of one target and status."""
        if target is not None:
            self.check_target(target)
        wanted: RunStatus | None = None
        if status is not None:
            wanted = next((known for known in RUN_STATUSES if known == status), None)
            if wanted is None:
                raise _unknown("status", status, RUN_STATUSES)
        runs = self._state.list_runs(target=target, status=wanted, limit=limit)
        return runs[::-1] if oldest_first else runs

    def delivery(self) -> list[TargetDelivery]:
        """Per target, the runs handed off to the changelog log and consumed by Flink so far."""
        return self._state.delivery(datetime.now(UTC))

    def run(self, run_id: str) -> Run:
        found = self._state.get_run(run_id)
        if found is None:
            recent = [r.id for r in self._state.list_runs(limit=LISTED + 1)]
            raise _unknown("run", run_id, recent, " (newest listed first)")
        return found

    def last_runs(self, target: str, count: int) -> tuple[Run, Run]:
        """The `count`-th last committed run of `target` and its last committed run."""
        committed = self.runs(target=target, status="committed", limit=count)
        if len(committed) < count:
            raise UsageError(
                f"target {target!r} has {len(committed)} committed runs kept, "
                f"fewer than --last {count}"
            )
        return committed[-1], committed[0]

    # ---- stores and records ------------------------------------------------------------------

    def stores(self, *, target: str | None = None) -> list[Store]:
        if target is not None:
            self.check_target(target)
        return self._state.list_stores(target=target)

    def store(self, target: str, db: str, store: str) -> Store:
        """One store; an unknown target, db or store is an error listing what exists."""
        stores = self.stores(target=target)
        dbs = sorted({s.db for s in stores})
        if db not in dbs:
            raise _unknown("database", db, dbs, f" of target {target!r}")
        names = [s.store for s in stores if s.db == db]
        if store not in names:
            raise _unknown("store", store, names, f" in database {db!r} of target {target!r}")
        # One target may have served several origins over time; the latest-run one wins.
        found = [s for s in stores if s.db == db and s.store == store]
        return max(found, key=lambda s: s.last_run)

    def records(
        self,
        store: Store,
        *,
        keys: Sequence[str] | None = None,
        as_of: str | None = None,
        limit: int | None = None,
    ) -> Iterator[SnapshotRecord]:
        """The store's records (first-seen order), or only `keys`, now or as of a run."""
        if as_of is not None:
            run = self.run(as_of)
            if run.target != store.target or run.status != "committed":
                committed = [r.id for r in self.runs(target=store.target, status="committed")]
                raise _unknown("committed run", as_of, committed, f" of target {store.target!r}")
        ident = (store.target, store.origin, store.db, store.store)
        selections: Sequence[str | None] = list(keys) if keys is not None else [None]
        count = 0
        for key in selections:
            for record in self._state.iter_records(*ident, key=key, as_of=as_of):
                if record.value is None:
                    # History from before schema 2 lacks some old values; another change of the
                    # record may have kept the same value.
                    value = self._state.past_value(store, record.key, record.value_hash)
                    record = replace(record, value=value)
                yield record
                count += 1
                if limit is not None and count >= limit:
                    return

    def search_records(
        self,
        store: Store,
        *,
        text: str = "",
        order: str = "first_seen",
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> RecordPage:
        """One page of the store's records, sorted and searched (`StateDB.search_records`)."""
        return self._state.search_records(
            store, text=text, order=order, descending=descending, offset=offset, limit=limit
        )

    def key_history(self, store: Store, key: str) -> list[KeyVersion]:
        """Every kept change of record `key` (typed JSON text) of `store`, oldest first."""
        return self._state.key_history(store.target, store.origin, store.db, store.store, key)

    def parsed_values(self, store: Store, *, limit: int | None = None) -> Iterator[Any]:
        """The current values of a store as parsed typed JSON (the first `limit`, in first-seen
        order: one page of `search_records`, which reads a big store's first records at once)."""
        records: Iterable[SnapshotRecord] = (
            self.records(store)
            if limit is None
            else self.search_records(store, limit=limit).records
        )
        for record in records:
            if record.value is not None:
                yield json.loads(record.value)

    # ---- the changes feed --------------------------------------------------------------------

    def feed_start(self) -> Position:
        return self._state.feed_start()

    def feed_last_seq(self) -> int:
        return self._state.feed_last_seq()

    def feed_page(
        self,
        after: Position | None,
        *,
        limit: int,
        max_bytes: int,
        target: str | None = None,
        store: tuple[str, str] | None = None,
    ) -> FeedPage:
        """The committed changes after `after` (None: from the start), in commit order
        (`StateDB.feed_page`)."""
        if target is not None:
            self.check_target(target)
        return self._state.feed_page(
            after, limit=limit, max_bytes=max_bytes, target=target, store=store
        )

    # ---- changes -----------------------------------------------------------------------------

    def diff_runs(self, run_a: Run, run_b: Run, *, limit: int | None = None) -> list[StoreDiff]:
        """What changed after `run_a` up to and including `run_b` (both of one target); `limit`:
        records listed per store and op, the others counted."""
        between = self._between(run_a, run_b)
        if limit is not None and len(between) == 1:  # one run: cut and counted in SQL
            (run,) = between
            stores = self.stores(target=run.target)
            diffs = [self.run_changes(run.id, store, limit=limit) for store in stores]
            return sorted(
                (d for d in diffs if any(d.counts().values())), key=lambda d: (d.db, d.store)
            )
        changes = [c for run in between for c in self._changes(run.id)]
        return net_diff(changes, partial(self._values, run_a.target), limit=limit)

    def schema_diff(self, run_a: Run, run_b: Run) -> list[SchemaChange]:
        """The schema changes after `run_a` up to and including `run_b`, in the order found."""
        runs = [run.id for run in self._between(run_a, run_b)]
        return self._state.schema_changes(run_a.target, runs)

    def schema(self, target: str) -> tuple[list[SchemaDb], list[SchemaStore]]:
        """The target's databases and stores as its committed runs left them."""
        self.check_target(target)
        return self._state.schema_dbs(target), self._state.schema_stores(target)

    def schema_history(self, target: str) -> list[SchemaChange]:
        """Every schema change of the target, oldest first."""
        self.check_target(target)
        return self._state.schema_changes(target)

    def _between(self, run_a: Run, run_b: Run) -> list[Run]:
        """The committed runs after `run_a` up to and including `run_b`, oldest first."""
        if run_a.target != run_b.target:
            raise UsageError(
                f"runs {run_a.id!r} and {run_b.id!r} are of different targets "
                f"({run_a.target!r}, {run_b.target!r})"
            )
        for run in (run_a, run_b):
            if run.seq is None:
                raise UsageError(f"run {run.id!r} is {run.status}: only committed runs diff")
        assert run_a.seq is not None and run_b.seq is not None  # checked just above
        if run_a.seq > run_b.seq:
            raise UsageError(f"run {run_a.id!r} is newer than {run_b.id!r}: give the older first")
        return [
            r
            for r in self.runs(target=run_a.target, status="committed", oldest_first=True)
            if r.seq is not None and run_a.seq < r.seq <= run_b.seq
        ]

    def run_changes(self, run_id: str, store: Store, *, limit: int) -> StoreDiff:
        """What one committed run changed in `store`: exact counts, at most `limit` records per op.

        A run's history has one row per key, so each row is a net change and can be counted and
        cut in SQL, which keeps a first run of a huge store cheap to show.
        """
        totals = self._state.change_counts(run_id, store)
        changes = [
            _change(row)
            for op, _name in OPS
            for row in self._state.run_changes(run_id, store=store, op=op, limit=limit)
        ]
        diffs = net_diff(changes, partial(self._values, store.target))
        diff = diffs[0] if diffs else StoreDiff(store.db, store.store)
        for op, name in OPS:
            diff.unlisted[name] = totals.get(op, 0) - len(getattr(diff, name))
        return diff

    def _changes(self, run_id: str) -> list[Change]:
        """One run's history, with the values it replaced."""
        return [_change(row) for row in self._state.run_changes(run_id)]

    def _values(self, target: str, changes: Sequence[Change]) -> dict[str, str]:
        """Values by hash of what `changes` wrote: from the snapshot while current, else from a
        later change's old value."""
        wanted: dict[tuple[str, str], dict[str, None]] = {}
        for change in changes:
            if change.new_hash is not None:
                wanted.setdefault((change.db, change.store), {})[change.key] = None
        values: dict[str, str] = {}
        for (db, store), keys in wanted.items():
            values.update(self._state.values_by_hash(target, db, store, list(keys)))
        return values
