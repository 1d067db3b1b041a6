"""`StateDB`: one state folder's SQLite database, the API every other layer uses.

`docs/state.md` documents the schema. The methods here only open, guard and delegate: the SQL
lives in `runs` (a run's life), `commit` (the commit), `delivery` (hand-off to the changelog log
and its consumer's acknowledgements), `queries` (the read side) and `snapshot` (what capture
reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from harvester.errors import StateError, UnusableStateError
from harvester.redaction import Redactor, redact
from harvester.state import commit, delivery, feed, history, queries, runs, schemas, search
from harvester.state.connections import Closing, Connections
from harvester.state.history import KeyVersion
from harvester.state.integrity import check_db, check_file, check_missing, check_readable
from harvester.state.paths import SPOOL_DIR, state_db_path
from harvester.state.records import (
    Change,
    ReadScope,
    RecordPage,
    Run,
    RunStatus,
    RunStore,
    SchemaChange,
    SchemaDb,
    SchemaStore,
    SnapshotRecord,
    Store,
    TargetDelivery,
)
from harvester.state.retention import KEEP_FAILED_RUNS
from harvester.state.schema import create_db, migrate
from harvester.state.schemas import SchemaRead
from harvester.state.snapshot import SnapshotView


class StateDB(Closing):
    """One state folder's SQLite database.

    Methods may be called from several threads; reads never wait for writes (WAL). A write may
    wait for a commit in progress: async code makes its writes in a thread (`asyncio.to_thread`).
    """

    def __init__(
        self,
        path: Path,
        *,
        keep_runs: int = 50,
        keep_failed_runs: int = KEEP_FAILED_RUNS,
        readonly: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.keep_runs = keep_runs
        self.keep_failed_runs = keep_failed_runs
        self.readonly = readonly
        # Run errors quote URLs, page text and Flink messages, any of which may hold a secret
        # from the config (a login URL, a password a page echoes, a statement's credentials).
        self._secrets = Redactor(secrets)
        self._conns = Connections(path, readonly=readonly)

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        keep_runs: int = 50,
        keep_failed_runs: int = KEEP_FAILED_RUNS,
        readonly: bool = False,
        secrets: Iterable[str] = (),
    ) -> StateDB:
        """Open (and create or migrate, unless `readonly`) the state DB of `state_dir`.

        Only a missing DB file is created; one that is empty, damaged, not a state DB or of a
        newer schema raises `UnusableStateError` (`integrity`). `keep_runs` committed and
        `keep_failed_runs` failed runs are kept per target (`retention`). `secrets`, and those
        of the process's log (`redaction.redact`), are masked in every run error written.
        """
        path = state_db_path(state_dir)
        if readonly:
            if not os.path.lexists(path):
                raise StateError(f"no state database at {path}; has a harvest run yet?")
            return cls.open_file(path, keep_runs=keep_runs)
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not os.path.lexists(path):
                check_missing(path)
                create_db(path)
            check_file(path)
            # Kept private even when the file was copied in with a wider mode.
            path.chmod(0o600)
        except OSError as exc:
            raise UnusableStateError(
                f"cannot use the state folder {state_dir}: {exc.strerror or exc} "
                f"({exc.filename or state_dir}); check its owner, mode and free space"
            ) from exc
        check_db(path, every_page=True)
        db = cls(path, keep_runs=keep_runs, keep_failed_runs=keep_failed_runs, secrets=secrets)
        try:
            migrate(db._conns.shared, path)
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def open_file(cls, path: Path, *, keep_runs: int = 50) -> StateDB:
        """Open the state DB file `path`, whatever its name, read-only and at this schema.

        A file that is not a usable state DB raises `UnusableStateError` (`integrity`).
        """
        check_file(path)
        check_readable(path, check_db(path, every_page=False))
        return cls(path, keep_runs=keep_runs, readonly=True)

    @property
    def spool_dir(self) -> Path:
        """The folder of this state folder's spool files."""
        return self.path.parent / SPOOL_DIR

    def close(self) -> None:
        self._conns.close()

    def writable(self) -> bool:
        """True when the DB takes writes (a commit in progress counts as taking them)."""
        return self._conns.writable()

    def open_snapshot(self, *, target: str, origin: str) -> SnapshotView:
        """The committed snapshot of `target` at `origin`, for change capture; close it."""
        return SnapshotView(self._conns, target=target, origin=origin)

    # ---- the life of a run ------------------------------------------------------------------

    def start_run(
        self,
        target: str,
        *,
        full: bool = False,
        trigger: str | None = None,
        events: int | None = None,
    ) -> str:
        """Record a new `running` run of `target`; its id. `trigger`: None for a scheduled or
        one-shot run, `"event"` for one that `events` IndexedDB change events triggered."""
        return runs.start_run(self._conns, target, full=full, trigger=trigger, events=events)

    def mark_read(
        self,
        run_id: str,
        *,
        origin: str,
        stores: Sequence[RunStore],
        rows: int,
        problems: Sequence[Mapping[str, Any]] = (),
        scope: ReadScope | None = None,
    ) -> None:
        """The run's spool is complete: status `read`, pending until committed.

        `scope`: the databases it opened and the globs that chose them; without it, its commit
        finds no store deleted and no database removed (`schemas`).
        """
        runs.mark_read(
            self._conns,
            run_id,
            origin=origin,
            stores=stores,
            rows=rows,
            problems=problems,
            scope=scope,
        )

    def schema_read(
        self,
        *,
        target: str,
        origin: str,
        stores: Sequence[RunStore],
        problems: Sequence[Mapping[str, Any]] = (),
        scope: ReadScope | None = None,
    ) -> SchemaRead:
        """What a read about to be marked read with these values finds changed (read-only): its
        schema log rows (`rows`: the changes its commit will record against the committed
        schema, a row per database and store; `mark_read`'s `rows` counts them), and the stores
        it finds gone (`gone`: deleted, or of a removed database, by the schema history's rule),
        whose committed records it spools as `-D`."""
        return schemas.read_changes(
            self._conns,
            target=target,
            origin=origin,
            stores=stores,
            scope=scope,
            problems=runs.kept(problems),
        )

    def fail_run(
        self,
        run_id: str,
        error: str,
        *,
        origin: str | None = None,
        stores: Sequence[RunStore] | None = None,
        problems: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Mark a run `failed` with `error`; a pending spool stays pending, a commit stays.

        `origin`, `stores` and `problems` record what a failed read got through.
        """
        runs.fail_run(
            self._conns,
            run_id,
            self._redact(error),
            origin=origin,
            stores=stores,
            problems=problems,
            keep_runs=self.keep_runs,
            keep_failed_runs=self.keep_failed_runs,
        )

    def drop_pending(self, run_id: str, error: str) -> None:
        """The run's spool is gone or unusable: it can never be sent, so it stops pending."""
        runs.drop_pending(
            self._conns,
            run_id,
            self._redact(error),
            keep_runs=self.keep_runs,
            keep_failed_runs=self.keep_failed_runs,
        )

    def _redact(self, error: str) -> str:
        # The log's secrets include those of a config reloaded since this DB was opened.
        return redact(self._secrets.redact(error))

    def commit_run(
        self, run_id: str, rows: Iterable[Mapping[str, Any]], *, delivered: bool = True
    ) -> bool:
        """Apply a run's spooled rows to the snapshot, history and stores in one transaction.

        `rows` must be the run's, checked (`spool.checked_rows`, which `harvest.commit` passes):
        an exception they raise rolls the whole commit back. The snapshot decides each row's
        real op (a `--full` run spools every record as +I), so the history holds only true
        changes. Returns False, changing nothing, when the run was already committed: a spool
        sent twice never commits twice. `delivered`: the send was the
        delivery (JSON lines, a per-harvest Flink job), so the run is consumed at commit; False
        when it was only handed off to the log, whose consumer acknowledges it later
        (`mark_consumed`). A run without rows is consumed at commit either way.
        """
        return commit.commit_run(
            self._conns,
            run_id,
            rows,
            delivered=delivered,
            keep_runs=self.keep_runs,
            keep_failed_runs=self.keep_failed_runs,
        )

    # ---- delivery through the changelog log --------------------------------------------------

    def hand_off(self, run_id: str, *, above: int = 0) -> int:
        """Record that the run's spool goes into the changelog log; its number there (`log_seq`).

        Idempotent: the first call takes the next number over all runs and above `above` (the
        log folder's highest, which survives a reset of this DB or retention of its newest
        run), every later one returns it again. Hand a target's runs off in commit order, so
        that the numbers order them.
        """
        return delivery.hand_off(self._conns, run_id, above=above)

    def mark_consumed(self, counts: Mapping[str, int]) -> list[str]:
        """Record the rows the log's consumer acknowledged per run id (cumulative counts: the
        highest wins); the runs that became consumed by this call, in log order.

        Run ids this DB never handed off are ignored (another harvester may share the log).
        """
        return delivery.mark_consumed(self._conns, counts)

    def undelivered(self, target: str | None = None) -> list[Run]:
        """Committed runs with rows, handed off and not consumed yet, oldest first."""
        return delivery.undelivered(self._conns, target)

    def delivery(self, now: datetime) -> list[TargetDelivery]:
        """Per target with a run, by name: runs handed off, consumed, and how long the oldest
        not consumed has waited at `now` (an aware time)."""
        return delivery.delivery(self._conns, now)

    # ---- queries (read-only; what `harvester.inspect` builds on) -----------------------------

    def get_run(self, run_id: str) -> Run | None:
        return queries.get_run(self._conns, run_id)

    def list_runs(
        self,
        *,
        target: str | None = None,
        status: RunStatus | Sequence[RunStatus] | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Runs, newest first, optionally of one target and/or in given statuses."""
        return queries.list_runs(self._conns, target=target, status=status, limit=limit)

    def pending_runs(self, target: str | None = None) -> list[Run]:
        """Runs whose complete spool waits to be sent and committed, oldest first."""
        return queries.pending_runs(self._conns, target)

    def run_stores(self, run_id: str) -> list[RunStore]:
        """The stores a run read, in reading order."""
        return queries.run_stores(self._conns, run_id)

    def list_stores(self, *, target: str | None = None) -> list[Store]:
        """Every store with a committed run, by target, origin, db and store name."""
        return queries.list_stores(self._conns, target=target)

    def targets(self) -> list[str]:
        """Every target with a run or a store, by name."""
        return queries.targets(self._conns)

    def iter_records(
        self,
        target: str,
        origin: str,
        db: str,
        store: str,
        *,
        key: str | None = None,
        as_of: str | None = None,
    ) -> Iterator[SnapshotRecord]:
        """A store's committed records, streamed (in first-seen order for the latest state).

        `key` (typed JSON text) picks one record. `as_of` (a committed run of `target`) gives the
        store as that run left it, from the change history: records changed since then come
        with their value and hash as of that run, and `last_changed_run` None.
        """
        return queries.iter_records(
            self._conns, target, origin, db, store, key=key, as_of=as_of, keep_runs=self.keep_runs
        )

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
        """One page of the store's committed records, sorted, optionally only those whose key or
        value text holds `text` (any case; 1–2 characters: keys that start with it).

        `order`: `first_seen` (as `iter_records`), `key` (the key texts' order, not IndexedDB's)
        or `last_changed` (commit order of the run that last changed each); else ValueError.
        `total` counts every match, up to `search.COUNT_CAP` (then `capped`).
        """
        return search.search_records(
            self._conns,
            store,
            text=text,
            order=order,
            descending=descending,
            offset=offset,
            limit=limit,
        )

    def feed_start(self) -> feed.Position:
        """Where the changes feed's retained part begins."""
        return feed.start(self._conns)

    def feed_last_seq(self) -> int:
        """The newest committed run's number: the feed has grown when it has."""
        return feed.last_seq(self._conns)

    def feed_page(
        self,
        after: feed.Position | None,
        *,
        limit: int,
        max_bytes: int,
        target: str | None = None,
        store: tuple[str, str] | None = None,
    ) -> feed.FeedPage:
        """The changes feed after `after` (None: from its start), a page at a time
        (`state.feed`)."""
        return feed.page(
            self._conns, after, limit=limit, max_bytes=max_bytes, target=target, store=store
        )

    def key_history(
        self, target: str, origin: str, db: str, store: str, key: str
    ) -> list[KeyVersion]:
        """Every kept change of record `key` (typed JSON text), oldest first (commit order),
        with the value each one replaced and wrote when the state DB keeps it."""
        return history.key_history(self._conns, target, origin, db, store, key)

    def schema_dbs(self, target: str) -> list[SchemaDb]:
        """The target's databases as its committed runs left them, by origin and name."""
        return schemas.databases(self._conns, target)

    def schema_stores(self, target: str) -> list[SchemaStore]:
        """The target's stores as its committed runs left them, by origin, db and name."""
        return schemas.stores(self._conns, target)

    def schema_changes(
        self, target: str, run_ids: Sequence[str] | None = None
    ) -> list[SchemaChange]:
        """The target's schema changes in the order found (only those of `run_ids`, if given)."""
        return schemas.changes(self._conns, target, run_ids)

    def past_value(self, store: Store, key: str, value_hash: str) -> str | None:
        """A value that record `key` of `store` once had, by its hash, from the history."""
        return queries.past_value(self._conns, store, key, value_hash)

    def run_changes(
        self,
        run_id: str,
        *,
        store: Store | None = None,
        op: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Change]:
        """The change history of one committed run, streamed in the order it was applied.

        `store` and `op` keep only the changes of that store and op, `limit` the first ones.
        """
        return queries.run_changes(self._conns, run_id, store=store, op=op, limit=limit)

    def change_counts(self, run_id: str, store: Store | None = None) -> dict[str, int]:
        """How many changes of each op one run made (in `store`); ops it did not make are absent."""
        return queries.change_counts(self._conns, run_id, store)

    def values_by_hash(
        self, target: str, db: str, store: str, keys: Sequence[str]
    ) -> dict[str, str]:
        """Every value the state DB still holds of `keys` of a store (of any origin), by hash:
        the snapshot's and the history's old values."""
        return queries.values_by_hash(self._conns, target, db, store, keys)
