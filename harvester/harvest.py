"""One harvest of one target: read → capture → spool → send → commit, and recovery.

The steps are separate so that the daemon can batch the spools of several runs into one send
(one Flink job): `read_target` ends with a complete spool and the run `read`; `send` hands
spools to a `ChangeSink` in one call; `commit` applies one run to the state DB and removes its
spool. A run never captures while an earlier run of its target waits to be committed, because
its diff would then repeat that run's changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from harvester import interrupts
from harvester.capture import Capture, StoreReadLike, spool_schema
from harvester.config import format_duration
from harvester.errors import ConfigError, HarvesterError, StateError
from harvester.sinks import ChangeSink
from harvester.spool import (
    SPOOL_SUFFIX,
    BadSpoolError,
    SpoolFile,
    SpoolWriter,
    check_spool,
    checked_rows,
    quarantine,
    quarantine_dir,
    quarantined_spool,
    spool_path,
)
from harvester.state import ReadScope, Run, RunStore, StateDB
from harvester.surrogates import escape_surrogates

if TYPE_CHECKING:
    from harvester.browser import TargetSession
    from harvester.config import Settings, TargetSettings
    from harvester.reader import DatabaseSchema, Problem, StoreSchema

log = logging.getLogger(__name__)

DIED_DURING_READ = "process died during the read"


class PageReader(Protocol):
    """What a harvest needs of `reader.OriginReader`."""

    problems: list[Problem]  # about whole databases (one that could not be opened)

    async def schema(self) -> list[DatabaseSchema]: ...

    def read_store(self, store: StoreSchema, *, hash_first: bool = False) -> StoreReadLike: ...


# Opens the target and yields (origin, reader); tests pass their own.
Opener = Callable[[], AbstractAsyncContextManager[tuple[str, PageReader]]]

# Told what a run does now, as (target, phase, detail): "open" (the page), "read" (IndexedDB,
# from the origin), "send" (the rows), then "done" or "failed" (the reason).
Progress = Callable[[str, str, str], None]


def _quiet(_target: str, _phase: str, _detail: str) -> None:
    """The `Progress` of callers that show none."""


@dataclass(frozen=True)
class RunSummary:
    """A run as the state DB recorded it, with its stores."""

    run: Run
    stores: list[RunStore]


@dataclass
class Recovery:
    """What `recover` (or `send_pending`) found and did."""

    died: list[str] = field(default_factory=list)  # runs left `running`, now failed
    sent: list[str] = field(default_factory=list)  # pending runs sent and committed
    unsent: dict[str, str] = field(default_factory=dict)  # pending run → why it is still pending
    lost: list[str] = field(default_factory=list)  # pending runs whose spool file was gone
    # pending run → its error: its spool was bad, moved to the quarantine folder, and not sent
    quarantined: dict[str, str] = field(default_factory=dict)


def describe(exc: BaseException) -> str:
    """A one-line reason for a run's `error`."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    # Our own errors and our timeouts already say what happened; others need their type.
    if isinstance(exc, HarvesterError | TimeoutError):
        return text[0]
    return f"{type(exc).__name__}: {text[0]}"


def summary(state: StateDB, run_id: str) -> RunSummary:
    run = state.get_run(run_id)
    if run is None:
        raise StateError(f"no run {run_id!r} in the state database")
    return RunSummary(run=run, stores=state.run_stores(run_id))


def narrowed(
    target: TargetSettings,
    stores: Iterable[tuple[str, str]],
    databases: Iterable[str] = (),
) -> TargetSettings:
    """`target` reading exactly `stores` ((db, store) as change events name them) and opening
    `databases` too (one that came or went, even without stores): their globs are the run's
    scope, so `-D` and schema changes touch no store it did not read."""
    from harvester.watch import name_glob, store_glob

    pairs = sorted(set(stores))
    names = [store_glob(db, store) for db, store in pairs]
    opened = {name_glob(db) for db, _ in pairs} | {name_glob(db) for db in databases}
    return target.model_copy(update={"databases": sorted(opened), "stores": names})


@asynccontextmanager
async def reader_on(
    session: TargetSession, target: TargetSettings
) -> AsyncIterator[tuple[str, PageReader]]:
    """A reader of `target`'s databases and stores on a page already open and ready."""
    from harvester.reader import OriginReader

    reader = OriginReader(
        session.page,
        limits=target.limits,
        databases=tuple(target.databases),
        stores=tuple(target.stores),
        compress=session.remote,
    )
    try:
        yield session.origin, reader
    finally:
        await reader.close()


@asynccontextmanager
async def open_reader(
    settings: Settings, target: TargetSettings
) -> AsyncIterator[tuple[str, PageReader]]:
    """The target's page in Chromium, ready, and a reader on it."""
    # Imported here: Playwright is heavy, and sending, committing and recovery never need it.
    from harvester.browser import open_target

    async with open_target(target, settings.browser) as session, reader_on(session, target) as got:
        yield got


async def read_target(
    *,
    settings: Settings,
    target: TargetSettings,
    state: StateDB,
    run_id: str,
    full: bool = False,
    opener: Opener | None = None,
    progress: Progress = _quiet,
) -> SpoolFile:
    """Read run `run_id` of `target` into a complete spool; the run ends `read`.

    On any failure (the page, the reader, `limits.harvest_timeout`, cancellation) the run is
    marked failed, its spool removed, and the exception raised again. `limits.harvest_timeout`
    is enforced here and only here, raising `TimeoutError` that names it. `full` spools every
    record as `+I` (a re-snapshot; `-D` still for records gone) and records the true diff
    counts. State access and the spool's fsync run in a thread: a commit of another run may
    hold the DB for a while, and the event loop must not wait for it.
    """
    pending = await asyncio.to_thread(state.pending_runs, target.name)
    if pending:
        reason = f"run {pending[0].id} of this target is not committed yet"
        await asyncio.to_thread(state.fail_run, run_id, reason)
        raise StateError(
            f"target {target.name}: run {pending[0].id} waits to be sent and committed; "
            "send it before reading again"
        )
    opener = opener or (lambda: open_reader(settings, target))
    timeout = target.limits.harvest_timeout
    origin: str | None = None
    stores: list[RunStore] = []
    databases: dict[str, int] = {}
    problems: list[dict[str, str | None]] = []
    writer: SpoolWriter | None = None
    spool: SpoolFile | None = None
    deadline = asyncio.timeout(timeout.total_seconds())
    progress(target.name, "open", "")
    try:
        try:
            async with deadline, opener() as (origin, reader):
                progress(target.name, "read", origin)
                writer = SpoolWriter(
                    state.spool_dir, run_id=run_id, target=target.name, origin=origin
                )
                capture = Capture(state, writer, target=target.name, origin=origin, full=full)
                try:
                    for database in await reader.schema():
                        # Named as capture names them in run_stores (UTF-8 cannot hold them raw).
                        databases[escape_surrogates(database.name)] = database.version
                        for store in database.stores:
                            read = reader.read_store(store, hash_first=capture.hash_first(store))
                            stores.append(await capture.store(store, read))
                finally:
                    capture.close()
                    problems = [
                        {"db": p.db, "store": p.store, "message": p.message}
                        for p in reader.problems
                    ]
        except TimeoutError as exc:
            if deadline.expired():
                raise TimeoutError(f"harvest timed out after {format_duration(timeout)}") from exc
            raise
        scope = ReadScope(databases, tuple(target.databases), tuple(target.stores))
        # In a thread: the `-D` rows of a store found gone stream its whole committed snapshot.
        await asyncio.to_thread(
            functools.partial(
                spool_schema, state, writer, stores=stores, problems=problems, scope=scope
            )
        )
        spool = await asyncio.to_thread(writer.finish)
        await asyncio.to_thread(
            functools.partial(
                state.mark_read,
                run_id,
                origin=origin,
                stores=stores,
                rows=spool.rows,
                problems=problems,
                scope=scope,
            )
        )
    except BaseException as exc:
        if writer is not None:
            writer.discard()
        if spool is not None:
            spool.path.unlink(missing_ok=True)
        cancelled = isinstance(exc, asyncio.CancelledError)
        # A SIGINT reaches Playwright's driver too: the page errors it causes are not the page's.
        reason = "cancelled" if cancelled else describe(exc)
        fail = functools.partial(
            state.fail_run,
            run_id,
            "interrupted (SIGINT)" if interrupts.noted() else reason,
            origin=origin,
            stores=stores,
            problems=problems,
        )
        with contextlib.suppress(StateError):
            # A cancelled task should not await again; a rare blocking write is the lesser harm.
            if cancelled:
                fail()
            else:
                await asyncio.to_thread(fail)
        raise
    return spool


def send(state: StateDB, sink: ChangeSink, spools: Sequence[SpoolFile]) -> None:
    """Hand the spools with rows to `sink` in one call (blocking).

    A sink with a changelog log gets each spool appended to the log first, under the run's
    `log_seq`: that is the hand-off, idempotent, so a run sent again after a crash is never in
    the log twice. When the sink fails, every one of the runs is marked failed with the reason,
    its spool kept and still pending, and the exception raised again.
    """
    with_rows = [spool for spool in spools if spool.rows]
    if not with_rows:
        return
    try:
        # A log sink's send only says whether its consumer may take the runs now.
        sink.send(with_rows)
        if (changelog := sink.changelog) is not None:
            for spool in with_rows:
                seq = state.hand_off(spool.run_id, above=changelog.top_seq())
                changelog.append(spool, seq)
    except Exception as exc:
        for spool in spools:
            state.fail_run(spool.run_id, f"sending failed: {describe(exc)}")
        raise


def commit(state: StateDB, spool: SpoolFile, *, delivered: bool = True) -> bool:
    """Commit the run of a sent spool and remove the spool; False if it was committed before.

    Only rows that `spool.checked_rows` passes are committed: a bad spool commits nothing and is
    quarantined (sent once, it is never sent again), raising `BadSpoolError` with the run's error.
    `delivered` is False for a sink with a changelog log: the run is delivered only once the
    log's consumer acknowledges it (`harvester.delivery`).
    """
    try:
        committed = state.commit_run(spool.run_id, checked_rows(spool), delivered=delivered)
    except BadSpoolError as exc:
        raise BadSpoolError(_quarantine(state, spool, exc)) from exc
    except Exception as exc:
        # The spool stays pending: sent again later, the commit is tried again.
        state.fail_run(spool.run_id, f"commit failed: {describe(exc)}")
        raise
    spool.path.unlink(missing_ok=True)
    return committed


def _quarantine(state: StateDB, spool: SpoolFile, exc: BadSpoolError) -> str:
    """Move a bad spool to the quarantine folder and stop its run pending; the run's error."""
    moved = quarantine(spool, str(exc), quarantine_dir(state.path.parent))
    state.drop_pending(spool.run_id, moved.error)
    log.error(
        "run %s of %s: %s",
        spool.run_id,
        spool.target,
        moved.error,
        extra={"event": "spool_quarantined", "run_id": spool.run_id, "target": spool.target},
    )
    return moved.error


def pending_spools(
    state: StateDB, target: str | None = None, found: Recovery | None = None
) -> list[SpoolFile]:
    """The complete spools of runs waiting to be sent, oldest first, each checked whole.

    A run whose spool can never be sent stops pending, with the reason, and the next run of its
    target captures its changes again (the snapshot never took them): one whose spool file has
    gone (in `found.lost`), and one whose spool is not its rows (`spool.check_spool`), which is
    moved to `<state.dir>/quarantine/` with a reason file (in `found.quarantined`).
    """
    found = Recovery() if found is None else found
    spools = []
    for run in state.pending_runs(target):
        spool = SpoolFile(
            run_id=run.id,
            target=run.target,
            path=spool_path(state.spool_dir, run.id),
            rows=run.rows,
        )
        if not spool.path.is_file():
            # Moved to quarantine by a process that died before it could record it.
            moved = quarantined_spool(quarantine_dir(state.path.parent), run.id)
            if moved is not None:
                state.drop_pending(run.id, moved.error)
                found.quarantined[run.id] = moved.error
                continue
            log.error("run %s: its spool %s is missing; it cannot be sent", run.id, spool.path)
            state.drop_pending(run.id, f"spool file missing: {spool.path}")
            found.lost.append(run.id)
            continue
        try:
            check_spool(spool)
        except BadSpoolError as exc:
            found.quarantined[run.id] = _quarantine(state, spool, exc)
            continue
        spools.append(spool)
    return spools


def send_pending(state: StateDB, sink: ChangeSink) -> Recovery:
    """Check the pending spools, send the good ones in one send, then commit each (blocking).

    Each is sent once: a failed send leaves them all pending (`unsent`), a failed commit that
    run; the next attempt (`harvest`, or the daemon's next run of the target) sends them again.
    """
    found = Recovery()
    spools = pending_spools(state, found=found)
    try:
        send(state, sink, spools)
    except Exception as exc:
        found.unsent = {spool.run_id: describe(exc) for spool in spools}
        log.error("sending %d pending spool(s) failed: %s", len(spools), describe(exc))
        return found
    for spool in spools:
        try:
            commit(state, spool, delivered=sink.changelog is None)
        except BadSpoolError as exc:
            found.quarantined[spool.run_id] = describe(exc)
        except Exception as exc:
            # Recorded in the run; the spool stays pending, and the other runs still commit.
            found.unsent[spool.run_id] = describe(exc)
            log.error("committing run %s failed: %s", spool.run_id, describe(exc))
        else:
            found.sent.append(spool.run_id)
    return found


def recover(state: StateDB, sink: ChangeSink) -> Recovery:
    """Start-up recovery, run while holding the state folder's lock (blocking).

    Runs left `running` died with their process: they are marked failed and their unfinished
    spools removed. Spools of committed or failed-while-reading runs are removed. Then every
    pending spool is checked, sent and committed (`send_pending`), before any new run of its
    target; one still pending is sent again by the next attempt, not by this one.
    """
    died = []
    for run in state.list_runs(status="running"):
        state.fail_run(run.id, DIED_DURING_READ)
        died.append(run.id)
        log.warning("run %s of %s: %s; marked failed", run.id, run.target, DIED_DURING_READ)
    spool_dir = state.spool_dir
    if spool_dir.is_dir():
        for part in spool_dir.glob("*.part"):
            part.unlink(missing_ok=True)
        pending = {run.id for run in state.pending_runs()}
        for path in spool_dir.glob(f"*{SPOOL_SUFFIX}"):
            run_id = path.name.removesuffix(SPOOL_SUFFIX)
            if run_id in pending:
                continue
            if state.get_run(run_id) is None:
                log.warning("spool %s belongs to no run in the state DB; left in place", path)
            else:
                # Committed already (the process died before removing it) or never complete.
                path.unlink(missing_ok=True)
    recovery = send_pending(state, sink)
    recovery.died = died
    return recovery


async def harvest_target(
    *,
    settings: Settings,
    target: TargetSettings,
    state: StateDB,
    sink: ChangeSink,
    full: bool = False,
    stores: Iterable[tuple[str, str]] | None = None,
    trigger: str | None = None,
    opener: Opener | None = None,
    progress: Progress = _quiet,
) -> RunSummary:
    """Read, send and commit one new run; `recover` has sent the pending runs before.

    `stores`: only these (db, store) pairs (`narrowed`); `trigger`: `runs.trigger`. A failure
    of the new run is recorded in it and its summary returned; a pending run raises.
    """
    target = target if stores is None else narrowed(target, stores)
    if pending := await asyncio.to_thread(state.pending_runs, target.name):
        # Recovery sent it in this attempt already: again now would only repeat its failure.
        earlier = pending[0]
        raise StateError(
            f"run {earlier.id} is still pending ({earlier.error or 'not sent yet'}); "
            "the next harvest sends it again"
        )
    run_id = await asyncio.to_thread(
        functools.partial(state.start_run, target.name, full=full, trigger=trigger)
    )
    try:
        spool = await read_target(
            settings=settings,
            target=target,
            state=state,
            run_id=run_id,
            full=full,
            opener=opener,
            progress=progress,
        )
        progress(target.name, "send", f"{spool.rows} rows")
        await asyncio.to_thread(send, state, sink, [spool])
        await asyncio.to_thread(
            functools.partial(commit, state, spool, delivered=sink.changelog is None)
        )
    except ConfigError as exc:
        # The config is broken (the sink's SQL), not the run: the caller stops, exit 2.
        progress(target.name, "failed", describe(exc))
        raise
    except Exception as exc:
        log.warning("run %s of %s failed: %s", run_id, target.name, describe(exc))
        progress(target.name, "failed", describe(exc))
    else:
        progress(target.name, "done", "")
    return summary(state, run_id)
