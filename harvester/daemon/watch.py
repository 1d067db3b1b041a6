"""Watch mode in the daemon: each watched target's page stays open, and its IndexedDB change
events start partial harvests of the stores that changed (docs/daemon.md, "In the daemon").

One task per watched target opens the page (`browser.open_target`, readiness and login steps
included), attaches a `harvester.watch.Watcher` and waits for its batches. A batch becomes an
event-driven attempt (`attempt.attempt` with an `EventRead`) that reads only the changed stores
through the open page; a batch that says databases or stores came or went reads the target's
whole globs. Nothing runs between batches: no reads, no polling but a heap check every
`MEMORY_CHECK`. A crashed, closed or navigated-away page, a closed context or a dead browser
ends the page at once (Playwright's events); it is reopened after `health.backoff_delay`. The
page is recycled after `watch.recycle_after` and when its JavaScript heap passes
`watch.max_renderer_memory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from harvester.daemon.attempt import EventRead, attempt
from harvester.daemon.health import backoff_delay
from harvester.errors import BrowserError
from harvester.harvest import describe, narrowed, reader_on
from harvester.reader import chosen, selected
from harvester.timefmt import iso_utc

if TYPE_CHECKING:
    from harvester.browser import TargetSession
    from harvester.config import BrowserSettings, TargetSettings
    from harvester.daemon.daemon import Daemon
    from harvester.harvest import Opener
    from harvester.watch import Batch, Watcher

log = logging.getLogger(__name__)

# How often the page's heap is compared with watch.max_renderer_memory: one CDP call.
MEMORY_CHECK = timedelta(seconds=30)


# Detaching a DevTools session from a crashed page never answers: bounded, then given up.
DETACH_TIMEOUT = timedelta(seconds=2)


async def _quickly(closing: Awaitable[object], what: str) -> None:
    """Await a detach or close for at most DETACH_TIMEOUT; its failure is only logged."""
    try:
        async with asyncio.timeout(DETACH_TIMEOUT.total_seconds()):
            await closing
    except Exception as exc:
        log.debug("closing %s: %s", what, describe(exc))


@dataclass
class WatchStatus:
    """The `watch` entry of a target in /healthz."""

    state: str = "opening"  # opening, watching, reading, reopening (after a failure), stopped
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_error: str | None = None
    opened_at: datetime | None = None
    reopens: int = 0
    events: int = 0
    reads: int = 0

    def now(self, state: str) -> None:
        self.state, self.since = state, datetime.now(UTC)

    def payload(self, redact: Callable[[str], str]) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": iso_utc(self.since),
            "opened_at": iso_utc(self.opened_at) if self.opened_at else None,
            "last_error": redact(self.last_error) if self.last_error else None,
            "reopens": self.reopens,
            "events": self.events,
            "reads": self.reads,
        }


PageOpener = Callable[
    ["TargetSettings", "BrowserSettings"], AbstractAsyncContextManager["TargetSession"]
]
WatcherFactory = Callable[..., "Watcher"]


@dataclass(frozen=True)
class WatchSeams:
    """What a watched page is made of, replaceable by tests so that the loop runs without a
    browser and without waiting for production intervals.

    `open_page`: `browser.open_target` when None (imported then: Playwright loads only when a
    target is watched); `new_watcher`: `harvester.watch.Watcher` when None, called with
    `debounce`, `max_delay` and `accept`; `memory_check`: how often the heap is compared with
    `watch.max_renderer_memory`; `backoff(n)`: the wait before reopening after the (n+1)th
    failure in a row, and before retry n of an event-driven read.
    """

    open_page: PageOpener | None = None
    new_watcher: WatcherFactory | None = None
    memory_check: timedelta = MEMORY_CHECK
    backoff: Callable[[int], timedelta] = backoff_delay


def _open_target() -> PageOpener:
    # Imported here: Playwright and the event engine load only when a target is watched.
    from harvester.browser import open_target

    return open_target


def _watcher_class() -> WatcherFactory:
    from harvester.watch import Watcher

    return Watcher


class _PageGone(BrowserError):
    """The watched page can no longer be used; the message says why."""


class TargetWatch:
    """The watched page of one target, reopened until the daemon stops or the watch ends."""

    def __init__(
        self,
        daemon: Daemon,
        target: TargetSettings,
        *,
        seams: WatchSeams | None = None,
        after: asyncio.Task[None] | None = None,
    ) -> None:
        self.daemon = daemon
        self.target = target
        self._after = after
        self._seams = seams or WatchSeams()
        self.status = WatchStatus()
        self.session: TargetSession | None = None
        self._ended = asyncio.Event()
        self._gone: asyncio.Future[str] | None = None
        self._seen = 0  # events of the current Watcher already counted
        self.task = asyncio.create_task(self._run(), name=f"watch {target.name}")

    def end(self) -> None:
        """Close the page after any read in progress (a reload disabled or changed the target)."""
        self._ended.set()

    async def _run(self) -> None:
        if self._after is not None:
            # The watch this one replaces (a reload) closes its page first: a persistent profile
            # takes one browser at a time. Its own failure was its own: asyncio.wait never raises.
            await asyncio.wait({self._after})
        failures = 0
        while not self._done():
            started = time.monotonic()
            try:
                await self._open_and_serve()
                failures = 0
            except Exception as exc:
                self.status.last_error = describe(exc)
                if self._done():
                    break
                # A page that served for a good while is not failing again and again.
                failures = 0 if time.monotonic() - started > 600 else failures + 1
                delay = self._seams.backoff(max(0, failures - 1)).total_seconds()
                self.status.now("reopening")
                self.status.reopens += 1
                self.daemon.metrics.watch_reopens.labels(target=self.target.name).inc()
                log.warning(
                    "target %s: watched page lost: %s; reopening in %.1fs",
                    self.target.name,
                    self.status.last_error,
                    delay,
                    extra={"event": "watch_lost", "target": self.target.name},
                )
                await self._sleep(delay)
        self.status.now("stopped")

    def _done(self) -> bool:
        return self.daemon.stopping or self._ended.is_set()

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when the daemon stops or the watch ends."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wait_done()

    async def _wait_done(self) -> None:
        ended = asyncio.create_task(self._ended.wait())
        stopped = asyncio.create_task(self.daemon.stopped())
        try:
            await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            stopped.cancel()

    async def _open_and_serve(self) -> None:
        open_page = self._seams.open_page or _open_target()
        new_watcher = self._seams.new_watcher or _watcher_class()
        target = self.target
        settings = target.watch
        self.status.now("opening")
        stack = contextlib.AsyncExitStack()
        try:
            # Opened and closed under the target's lock: a scheduled run must not launch a second
            # browser on the same persistent profile meanwhile.
            async with self.daemon.lock(target.name):
                if self._done():
                    return
                session = await stack.enter_async_context(
                    open_page(target, self.daemon.settings.browser)
                )
                watcher = new_watcher(
                    debounce=settings.debounce.total_seconds(),
                    max_delay=settings.max_delay.total_seconds(),
                    accept=chosen(target.databases, target.stores),
                )
                stack.push_async_callback(_quickly, watcher.close(), "the watcher")
                self._seen = 0
                self._gone = self._watch_page(session)
                await watcher.attach(session.page)
                self.session = session
            self.status.opened_at = datetime.now(UTC)
            self.status.now("watching")
            log.info(
                "target %s: watching %s for IndexedDB changes",
                target.name,
                session.origin,
                extra={"event": "watch_opened", "target": target.name},
            )
            try:
                await self._serve(session, watcher)
            finally:
                self._count_events(watcher)
        finally:
            self.session = None
            await self._close(stack)

    async def _close(self, stack: contextlib.AsyncExitStack) -> None:
        """Close the page under the target's lock: a scheduled run reading through it finishes
        first, and none launches a browser on the profile while this one still closes."""
        lock = self.daemon.lock(self.target.name)
        try:
            async with asyncio.timeout(self.daemon.settings.daemon.shutdown_grace.total_seconds()):
                await lock.acquire()
        except TimeoutError:
            await stack.aclose()
            return
        try:
            await stack.aclose()
        finally:
            lock.release()

    def _watch_page(self, session: TargetSession) -> asyncio.Future[str]:
        """A future that gets why the page became unusable, from Playwright's events."""
        from harvester.browser import origin_of

        gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def lost(reason: str) -> Callable[..., None]:
            def set_reason(_arg: Any = None) -> None:
                if not gone.done():
                    gone.set_result(reason)

            return set_reason

        def navigated(frame: Any) -> None:
            # The Watcher follows the app's own navigations within its origin; another origin
            # has another storage key, and the target's URL no longer applies.
            if frame == session.page.main_frame and origin_of(frame.url) != session.origin:
                lost(f"the page navigated away to {frame.url}")()

        session.page.on("crash", lost("the page crashed"))
        session.page.on("close", lost("the page was closed"))
        session.page.on("framenavigated", navigated)
        session.context.on("close", lost("the browser context closed (or the browser died)"))
        if (browser := session.context.browser) is not None:
            browser.on("disconnected", lost("the browser disconnected"))
        return gone

    async def _serve(self, session: TargetSession, watcher: Watcher) -> None:
        """Read each batch until the page is gone (raises), recycled or the watch ends."""
        assert self._gone is not None
        settings = self.target.watch
        recycle_at = time.monotonic() + settings.recycle_after.total_seconds()
        heap = await session.context.new_cdp_session(session.page)
        done = asyncio.create_task(self._wait_done())
        batch: asyncio.Task[Batch] | None = None
        try:
            while True:
                batch = batch or asyncio.create_task(watcher.next_batch())
                left = recycle_at - time.monotonic()
                waiting: set[asyncio.Future[Any]] = {batch, done, self._gone}
                await asyncio.wait(
                    waiting,
                    timeout=max(0.0, min(left, self._seams.memory_check.total_seconds())),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if self._gone.done():
                    # Reported now: closing what is left of the page takes a while yet.
                    self.status.last_error = self._gone.result()
                    self.status.now("lost")
                    raise _PageGone(self._gone.result())
                if done.done():
                    return
                if batch.done():
                    await self._read(session, batch.result(), watcher)
                    batch = None
                    continue
                if time.monotonic() >= recycle_at:
                    return self._recycle(f"recycle_after {settings.recycle_after} passed")
                used = int((await heap.send("Runtime.getHeapUsage"))["usedSize"])
                if used > settings.max_renderer_memory:
                    return self._recycle(f"its heap of {used:,} bytes passed max_renderer_memory")
        finally:
            done.cancel()
            if batch is not None:
                batch.cancel()
            await _quickly(heap.detach(), "the heap check's session")

    def _recycle(self, why: str) -> None:
        log.info(
            "target %s: recycling the watched page: %s",
            self.target.name,
            why,
            extra={"event": "watch_recycled", "target": self.target.name},
        )

    def _count_events(self, watcher: Watcher) -> None:
        """Add the events `watcher` received since last asked to /healthz and /metrics."""
        fresh, self._seen = watcher.received - self._seen, watcher.received
        self.status.events += fresh
        self.daemon.metrics.watch_events.labels(target=self.target.name).inc(fresh)

    async def _read(self, session: TargetSession, batch: Batch, watcher: Watcher) -> None:
        """One event-driven attempt for `batch`: its stores, and the databases that came, went
        or changed version with every store they had or have (a new database or store is read,
        a deleted one gives -D for its records)."""
        self._count_events(watcher)
        current = self.daemon.targets.get(self.target.name, self.target)
        databases = [db for db in batch.databases if selected(db, current.databases)]
        if not databases and not batch.stores:
            return
        read = narrowed(current, batch.stores, databases)
        event = EventRead(
            opener=lambda: reader_on(session, read),
            events=batch.events,
            first_event=batch.first_event,
        )
        self.status.now("reading")
        self.status.reads += 1
        self.daemon.metrics.watch_reads.labels(target=self.target.name).inc()
        try:
            for number in range(current.retries + 1):
                if await attempt(self.daemon, read, number, event) or self._done():
                    break
                if self._gone is not None and self._gone.done():
                    break  # the page is gone: its reopening is the retry (the schedule too)
                await self._sleep(self._seams.backoff(number).total_seconds())
        finally:
            self.status.now("watching")
        self._count_events(watcher)


class Watches:
    """The watched pages of the daemon's targets: started, ended and reported."""

    def __init__(self, daemon: Daemon, *, seams: WatchSeams | None = None) -> None:
        self.daemon = daemon
        self.seams = seams or WatchSeams()
        self.watches: dict[str, TargetWatch] = {}

    def sync(self, targets: dict[str, TargetSettings]) -> None:
        """Watch the enabled targets with `watch.enabled`; a target whose settings changed (a
        reload) gets its page reopened with them."""
        if self.daemon.stopping:
            return
        ended: dict[str, asyncio.Task[None]] = {}
        for name, watch in list(self.watches.items()):
            if targets.get(name) != watch.target:
                watch.end()
                ended[name] = watch.task
                del self.watches[name]
        for name, target in targets.items():
            if target.watch.enabled and name not in self.watches:
                self.watches[name] = TargetWatch(
                    self.daemon, target, seams=self.seams, after=ended.get(name)
                )

    def opener(self, name: str) -> Opener | None:
        """For a scheduled run of `name`: a reader on its watched page while one is open."""
        watch = self.watches.get(name)
        session = watch.session if watch is not None else None
        if session is None or watch is None:
            return None
        target = watch.target
        return lambda: reader_on(session, self.daemon.targets.get(name, target))

    def reading(self) -> int:
        """Event-driven reads in progress."""
        return sum(1 for watch in self.watches.values() if watch.status.state == "reading")

    def tasks(self) -> list[asyncio.Task[None]]:
        return [w.task for w in self.watches.values() if not w.task.done()]

    def annotate(self, body: dict[str, Any], redact: Callable[[str], str]) -> None:
        """Each watched target's `watch` entry in the /healthz body."""
        for name, watch in list(self.watches.items()):
            if name in body["targets"]:
                body["targets"][name]["watch"] = watch.status.payload(redact)
