"""The daemon's watch loop (`harvester.daemon.watch`) without a browser: fast and deterministic.

A real `Daemon` with a fake backend drives `Watches`/`TargetWatch`; the page comes from a fake
opener and the events from a fake `Watcher` (attach, next_batch, received, close), both through
`WatchSeams`, as do the heap-check interval and the backoff; `recycle_after` is the config's.
Waits are for conditions, never fixed sleeps; the order of what happened is checked on the
timeline the fakes write, not on a state caught in passing. With Chromium: test_daemon_watch.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from harvester.browser import TargetSession
from harvester.config import Settings, load_settings
from harvester.daemon import Daemon, ReadResult
from harvester.daemon.watch import TargetWatch, Watches, WatchSeams
from harvester.errors import BrowserError, WatchError
from harvester.watch import Batch
from tests.support.configs import write_config
from tests.support.fake_reader import in_loop
from tests.test_daemon import FakeBackend

WAIT_S = 60  # the bound of every wait: generous, the machine may be loaded
ORIGIN = "http://app.test"
ITEMS = ("app", "items")


async def until(what: str, condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached in {WAIT_S}s"
        await asyncio.sleep(0.01)


# ---- the fakes ------------------------------------------------------------------------------


class Timeline(list[str]):
    """What the fakes did, in order ("open 1", "ready 1", "attach 1", "commit app-2", ...),
    with the moment of each."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, float] = {}

    def add(self, entry: str) -> None:
        self.append(entry)
        self.at.setdefault(entry, time.monotonic())

    def before(self, first: str, then: str) -> bool:
        return first in self and then in self and self.index(first) < self.index(then)


class Emitter:
    def __init__(self) -> None:
        self.handlers: dict[str, list[Callable[..., None]]] = defaultdict(list)

    def on(self, event: str, handler: Callable[..., None]) -> None:
        self.handlers[event].append(handler)

    def emit(self, event: str, arg: object = None) -> None:
        for handler in list(self.handlers[event]):
            handler(arg)


class FakePage(Emitter):
    """A page, and its heap check's DevTools session: `Runtime.getHeapUsage` gives `heap`."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number, self.main_frame = number, object()
        self.heap, self.heap_checks, self.detached = 10_000, 0, False

    async def send(self, method: str, _params: object = None) -> dict[str, Any]:
        assert method == "Runtime.getHeapUsage", method
        self.heap_checks += 1
        return {"usedSize": self.heap, "totalSize": self.heap}

    async def detach(self) -> None:
        self.detached = True


class FakeContext(Emitter):
    browser = None  # the `disconnected` event is the context's `close` here

    async def new_cdp_session(self, page: FakePage) -> FakePage:
        return page


class Pages:
    """The fake `open_target`: page N is opened, made ready (page `held` only once `ready` is set),
    yielded, and closed (held while `close_gate` is clear). `failing`: opens that raise first."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.ready, self.close_gate = asyncio.Event(), asyncio.Event()
        self.held: int | None = None
        self.close_gate.set()
        self.failing = self.attempts = 0
        self.opened: list[FakePage] = []
        self.open_now: list[FakePage] = []

    @asynccontextmanager
    async def open(self, _target: object, _browser: object) -> AsyncIterator[TargetSession]:
        self.attempts += 1
        number = self.attempts
        self.timeline.add(f"open {number}")
        if self.failing:
            self.failing -= 1
            raise BrowserError(f"{ORIGIN}/: net::ERR_CONNECTION_REFUSED (open {number})")
        if number == self.held:
            await self.ready.wait()  # what `ready` and `auth.steps` are to the real one
        page = FakePage(number)
        self.opened.append(page)
        self.open_now.append(page)
        self.timeline.add(f"ready {number}")
        try:
            yield TargetSession(cast(Any, page), cast(Any, FakeContext()), ORIGIN)
        finally:
            await self.close_gate.wait()
            self.open_now.remove(page)
            self.timeline.add(f"close {number}")


class FakeWatcher:
    """`harvester.watch.Watcher` as the loop uses it; the test hands out its batches."""

    def __init__(self, timeline: Timeline, *, debounce: float, **_timing: object) -> None:
        self.timeline, self.debounce = timeline, debounce
        self.received, self.closed = 0, False
        self.pages: list[FakePage] = []
        self._batches: asyncio.Queue[Batch | WatchError] = asyncio.Queue()

    async def attach(self, page: FakePage) -> None:
        self.pages.append(page)
        self.timeline.add(f"attach {page.number}")

    async def next_batch(self) -> Batch:
        item = await self._batches.get()
        if isinstance(item, WatchError):
            raise item
        return item

    async def close(self) -> None:
        self.closed = True
        self.timeline.add(f"watcher closed {self.pages[-1].number if self.pages else '-'}")

    def write(self, *stores: tuple[str, str], events: int = 1) -> None:
        """A burst of `events` writes to `stores`, due now."""
        self.received += events
        self._batches.put_nowait(Batch(frozenset(stores), False, time.monotonic(), events))

    def pending(self) -> None:
        """An event whose burst is not due yet: no batch (its debounce still runs)."""
        self.received += 1

    def fail(self, reason: str) -> None:
        self._batches.put_nowait(WatchError(reason))


@dataclass
class Read:
    run_id: str
    trigger: str | None
    events: int | None
    stores: tuple[str, ...]
    page: int | None  # the watched page it read through; None: a browser of its own


class WatchBackend(FakeBackend):
    """FakeBackend that takes `trigger`/`events` and reads through the `opener` it is given."""

    def __init__(self, timeline: Timeline, *, delay: float = 0.02) -> None:
        super().__init__(delay=delay)
        self.timeline = timeline
        self.runs: dict[str, Read] = {}

    async def begin(self, target: Any, *, trigger: Any = None, events: Any = None) -> str:
        run_id = await super().begin(target)
        self.runs[run_id] = Read(run_id, trigger, events, tuple(target.stores), None)
        return run_id

    async def read(self, target: Any, run_id: str, *, opener: Any = None) -> ReadResult:
        if opener is None:
            return await super().read(target, run_id)
        async with opener() as (origin, reader):
            assert origin == ORIGIN
            self.runs[run_id].page = reader.page.number
            assert tuple(reader.stores) == tuple(target.stores)
            return await super().read(target, run_id)

    def commit(self, result: ReadResult) -> None:
        super().commit(result)
        self.timeline.add(f"commit {result.run_id}")

    def event_runs(self) -> list[Read]:
        return [r for r in self.runs.values() if r.trigger == "event"]


@dataclass
class Rig:
    """A daemon whose watched page is fake, and what it did."""

    tmp_path: Path
    timeline: Timeline = field(default_factory=Timeline)
    backoffs: list[int] = field(default_factory=list)
    backoff_s: float = 0.01
    memory_check: timedelta = timedelta(seconds=30)
    delay: float = 0.02
    watchers: list[FakeWatcher] = field(default_factory=list)
    prime: Callable[[FakeWatcher], None] | None = None  # what watcher 1 holds from its start

    def __post_init__(self) -> None:
        self.pages = Pages(self.timeline)
        self.backend = WatchBackend(self.timeline, delay=self.delay)

    def settings(self, watch: str = "", *, enabled: bool = True, grace: str = "10s") -> Settings:
        """Target `app` watched, scheduled every 15 min (no run unless a test fires it)."""
        extra = (
            f"[targets.watch]\nenabled = {str(enabled).lower()}\n{watch}\n"
            f'[daemon]\nrun_on_start = false\ncatch_up = false\nshutdown_grace = "{grace}"\n'
        )
        return load_settings(write_config(self.tmp_path, extra=extra))

    def _watcher(self, **kwargs: Any) -> FakeWatcher:
        self.watchers.append(FakeWatcher(self.timeline, **kwargs))
        if self.prime is not None and len(self.watchers) == 1:
            self.prime(self.watchers[0])
        return self.watchers[-1]

    def _backoff(self, failures: int) -> timedelta:
        self.backoffs.append(failures)
        return timedelta(seconds=self.backoff_s)

    async def start(self, settings: Settings, **kwargs: Any) -> tuple[Daemon, asyncio.Task[int]]:
        """The daemon running, with its page 1 watched."""
        daemon = self.daemon(settings, **kwargs)
        task = await started(daemon)
        await until("page 1 watched", watching(daemon, self, 1))
        return daemon, task

    def daemon(self, settings: Settings, **kwargs: Any) -> Daemon:
        daemon = Daemon(settings, self.backend, serve_http=False, **kwargs)  # type: ignore[arg-type]
        seams = WatchSeams(
            open_page=self.pages.open,
            new_watcher=self._watcher,
            memory_check=self.memory_check,
            backoff=self._backoff,
        )
        daemon.watches = Watches(daemon, seams=seams)
        return daemon


async def started(daemon: Daemon) -> asyncio.Task[int]:
    task = asyncio.create_task(daemon.run(handle_signals=False))
    await until("the daemon scheduling", lambda: daemon.scheduler.running or task.done())
    assert not task.done(), task
    return task


async def stopped(daemon: Daemon, task: asyncio.Task[int]) -> None:
    daemon.request_stop()
    assert await asyncio.wait_for(task, WAIT_S) == 0


def watch_of(daemon: Daemon) -> TargetWatch:
    return daemon.watches.watches["app"]


def healthz(daemon: Daemon) -> dict[str, Any]:
    """The target's `watch` entry of /healthz."""
    return dict(daemon.health()[1]["targets"]["app"]["watch"])


def watching(daemon: Daemon, rig: Rig, page: int) -> Callable[[], bool]:
    """Page `page` open, attached and reported `watching`."""
    return lambda: (
        f"attach {page}" in rig.timeline
        and "app" in daemon.watches.watches
        and watch_of(daemon).status.state == "watching"
    )


def states_of(watch: TargetWatch) -> list[str]:
    """The states `watch` goes through from now on, in order."""
    seen: list[str] = []
    now = watch.status.now

    def recorded(state: str) -> None:
        seen.append(state)
        now(state)

    watch.status.now = recorded  # type: ignore[method-assign]
    return seen


@in_loop
async def test_recycle_after_closes_the_page_and_awaits_readiness_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.pages.held = 2  # page 2 is not ready until the test says so
    daemon, task = await rig.start(rig.settings('recycle_after = "300ms"'))

    await until("page 2 opening", lambda: "open 2" in rig.timeline)
    assert rig.pages.open_now == []  # page 1 closed before page 2 opens: one at a time
    assert watch_of(daemon).status.state == "opening"
    assert "attach 2" not in rig.timeline and len(rig.watchers) == 1  # not before it is ready
    assert rig.watchers[0].closed and rig.pages.opened[0].detached
    rig.pages.ready.set()

    await until("page 2 watched", lambda: "attach 2" in rig.timeline)
    assert " / ".join(rig.timeline[:8]) == (
        "open 1 / ready 1 / attach 1 / watcher closed 1 / close 1 / open 2 / ready 2 / attach 2"
    )
    assert rig.watchers[1].pages == [rig.pages.opened[1]]
    # A recycle is no failure: no backoff, not counted as a reopen.
    status = watch_of(daemon).status
    assert (status.reopens, status.last_error, rig.backoffs) == (0, None, [])
    await stopped(daemon, task)


@in_loop
async def test_a_read_at_the_recycle_commits_first_and_a_full_run_covers_the_rest(
    tmp_path: Path,
) -> None:
    # A batch is there as soon as the page is watched, and a write whose burst is not due when
    # the page goes. Reads take 1.5 s, the page is recycled after 1 s: the read spans it.
    prime = lambda watcher: (watcher.write(ITEMS, events=2), watcher.pending())  # noqa: E731
    rig = Rig(tmp_path, delay=1.5, prime=prime)
    daemon, task = await rig.start(rig.settings('recycle_after = "1s"'))
    old = rig.watchers[0]
    await until("page 2 watched", lambda: "attach 2" in rig.timeline)
    (read,) = rig.backend.event_runs()
    assert (read.events, read.stores, read.page) == (2, ("app/items",), 1)
    # The batch taken before the recycle was read and committed before page 1 closed.
    assert rig.timeline.before(f"commit {read.run_id}", "close 1"), rig.timeline
    assert rig.backend.cancelled_reads == []
    # The pending event died with the old watcher (counted, never a batch); what it wrote is
    # read by the target's next scheduled run: a full one, through the reopened page (taken
    # long before page 2 is recycled in turn, which then waits for that run's lock).
    assert old.closed and watch_of(daemon).status.events == 3
    daemon.scheduler.modify_job("app", next_run_time=datetime.now(UTC))
    await until(
        "the scheduled run", lambda: any(r.trigger is None for r in rig.backend.runs.values())
    )
    await until("it committed", lambda: len(rig.backend.committed) == 2)
    full = next(r for r in rig.backend.runs.values() if r.trigger is None)
    assert full.stores == tuple(daemon.targets["app"].stores) == ("*",)
    assert full.page is not None and full.page >= 2
    await stopped(daemon, task)


@in_loop
async def test_a_heap_past_max_renderer_memory_recycles_the_page(tmp_path: Path) -> None:
    rig = Rig(tmp_path, memory_check=timedelta(milliseconds=20))
    daemon, task = await rig.start(rig.settings('max_renderer_memory = "1MB"'))
    first = rig.pages.opened[0]
    first.heap = 999_999  # at the bound: kept
    checks = first.heap_checks
    await until("several heap checks", lambda: first.heap_checks >= checks + 5)
    assert rig.pages.open_now == [first] and "close 1" not in rig.timeline

    first.heap = 1_000_001
    await until("page 2 watched", lambda: "attach 2" in rig.timeline)
    assert rig.timeline.before("close 1", "open 2")
    assert watch_of(daemon).status.reopens == 0 and rig.backoffs == []
    await stopped(daemon, task)


@in_loop
async def test_a_crashed_page_is_reported_lost_then_reopened_after_backoff(tmp_path: Path) -> None:
    rig = Rig(tmp_path, backoff_s=0.3)
    daemon, task = await rig.start(rig.settings())
    states = states_of(watch_of(daemon))
    rig.pages.close_gate.clear()  # the crashed page takes its time to close

    rig.pages.opened[0].emit("crash")
    await until("the crash noticed", lambda: states)
    entry = healthz(daemon)
    assert (entry["state"], entry["last_error"]) == ("lost", "the page crashed")
    assert states == ["lost"]
    rig.pages.close_gate.set()

    await until("page 2 watched", watching(daemon, rig, 2))
    assert states == ["lost", "reopening", "opening", "watching"]
    entry = healthz(daemon)
    assert (entry["state"], entry["reopens"]) == ("watching", 1)
    assert entry["last_error"] == "the page crashed"  # the last error stays for the record
    assert rig.backoffs == [0]
    waited = rig.timeline.at["open 2"] - rig.timeline.at["close 1"]
    assert waited >= 0.3 * 0.9, waited  # the backoff was waited
    registry = daemon.metrics.registry
    assert registry.get_sample_value("harvester_watch_reopens_total", {"target": "app"}) == 1
    await stopped(daemon, task)


@in_loop
async def test_failures_in_a_row_back_off_longer_a_watcher_error_reopens(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.pages.failing = 3
    daemon = rig.daemon(rig.settings())
    task = await started(daemon)
    await until("a page watched at last", lambda: "attach 4" in rig.timeline)
    assert rig.timeline[:6] == ["open 1", "open 2", "open 3", "open 4", "ready 4", "attach 4"]
    assert rig.backoffs == [0, 1, 2]  # the exponent grows with each failure in a row
    status = watch_of(daemon).status
    assert status.reopens == 3 and "ERR_CONNECTION_REFUSED (open 3)" in (status.last_error or "")

    # The watcher gives up (its DevTools session went): the page is closed and reopened. Lost
    # soon after it opened, it counts as one more failure in a row.
    states = states_of(watch_of(daemon))
    rig.watchers[-1].fail("the DevTools session closed")
    await until("page 5 watched", lambda: "attach 5" in rig.timeline)
    await until("watching", lambda: watch_of(daemon).status.state == "watching")
    assert rig.timeline.before("close 4", "open 5")
    assert states == ["reopening", "opening", "watching"]
    assert rig.backoffs == [0, 1, 2, 3]
    assert healthz(daemon)["last_error"] == "the DevTools session closed"
    await stopped(daemon, task)


@in_loop
async def test_a_reload_keeps_reopens_or_closes_the_page(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    configs: list[Settings] = []
    daemon, task = await rig.start(
        rig.settings('debounce = "250ms"'), load=lambda _p: configs.pop(0)
    )
    first = watch_of(daemon)

    configs.append(rig.settings('debounce = "250ms"'))  # the same settings, read again
    assert await daemon.reload()
    assert watch_of(daemon) is first and rig.pages.open_now == [rig.pages.opened[0]]
    assert len(rig.pages.opened) == 1 and first.status.state == "watching"

    configs.append(rig.settings('debounce = "100ms"'))
    assert await daemon.reload()
    await until("page 2 watched", watching(daemon, rig, 2))
    await until("the old watch stopped", lambda: first.task.done())
    assert watch_of(daemon) is not first and first.status.state == "stopped"
    assert "close 1" in rig.timeline
    assert rig.watchers[-1].debounce == 0.1
    assert rig.pages.open_now == [rig.pages.opened[1]]

    second = watch_of(daemon)
    configs.append(rig.settings('debounce = "100ms"', enabled=False))
    assert await daemon.reload()
    await until("the watch stopped", lambda: second.task.done())
    assert rig.pages.open_now == [] and "close 2" in rig.timeline
    assert daemon.watches.watches == {} and "watch" not in daemon.health()[1]["targets"]["app"]
    assert daemon.scheduler.get_job("app") is not None  # the schedule goes on without the page
    assert len(rig.pages.opened) == 2 and rig.backoffs == []
    await stopped(daemon, task)


@in_loop
async def test_a_reload_closes_the_old_page_before_it_opens_the_new_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    configs = [rig.settings('debounce = "100ms"')]
    daemon, task = await rig.start(rig.settings(), load=lambda _p: configs.pop(0))
    assert await daemon.reload()
    await until("page 2 watched", watching(daemon, rig, 2))
    await until("page 1 closed", lambda: "close 1" in rig.timeline)
    await stopped(daemon, task)
    assert rig.timeline.before("close 1", "open 2"), rig.timeline


@in_loop
async def test_shutdown_lets_the_read_in_progress_commit_then_closes(tmp_path: Path) -> None:
    rig = Rig(tmp_path, delay=1.0)
    daemon, task = await rig.start(rig.settings(grace="10s"))
    rig.watchers[0].write(ITEMS)
    await until("the read in progress", lambda: rig.backend.active == 1)

    asked = time.monotonic()
    await stopped(daemon, task)
    took = time.monotonic() - asked
    (read,) = rig.backend.event_runs()
    assert rig.backend.committed == [read.run_id] and rig.backend.cancelled_reads == []
    assert rig.timeline.before(f"commit {read.run_id}", "close 1"), rig.timeline
    assert rig.pages.open_now == [] and rig.watchers[0].closed
    assert took < 10, took  # within the grace: nothing was left to cancel
    assert watch_of(daemon).status.state == "stopped"
    assert len(rig.pages.opened) == 1  # not reopened on the way out
