"""The daemon's scheduling, retries, health, shutdown and reload, with a fake harvest backend."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import random
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from harvester import harvest
from harvester.config import load_settings
from harvester.config.models.watch import WatchSettings
from harvester.daemon import Daemon, HarvestBackend, ReadResult
from harvester.daemon.health import TargetStatus, backoff_delay
from harvester.daemon.http import Request, Response
from harvester.errors import ConfigError, PageError
from harvester.sinks import JsonLinesSink
from harvester.state import StateDB
from tests.support.configs import write_config


@dataclass(frozen=True)
class _Limits:
    harvest_timeout: timedelta = timedelta(milliseconds=50)


@dataclass(frozen=True)
class _Target:
    name: str
    schedule: str = "1s"
    url: str = "http://127.0.0.1:1/"
    timezone: str = "UTC"
    enabled: bool = True
    retries: int = 2
    jitter: timedelta = timedelta(0)
    limits: _Limits = field(default_factory=_Limits)
    watch: WatchSettings = field(default_factory=WatchSettings)

    def trigger(self) -> BaseTrigger:
        """Intervals in whole seconds, as `TargetSettings.trigger()` gives them."""
        return IntervalTrigger(
            seconds=int(self.schedule.rstrip("sh")) * (3600 if self.schedule.endswith("h") else 1),
            timezone=self.timezone,
        )

    def schedule_key(self) -> tuple[object, ...]:
        return (self.schedule, self.timezone, self.jitter)


@dataclass(frozen=True)
class _DaemonSettings:
    shutdown_grace: timedelta = timedelta(seconds=5)
    catch_up: bool = True
    run_on_start: bool = True
    max_concurrent_harvests: int = 2


@dataclass(frozen=True)
class _Http:
    bind: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class _State:
    dir: Path = Path("/nonexistent/state")  # /healthz looks for quarantined spools in it


@dataclass(frozen=True)
class _Settings:
    targets: tuple[_Target, ...]
    daemon: _DaemonSettings = field(default_factory=_DaemonSettings)
    http: _Http = field(default_factory=_Http)
    state: _State = field(default_factory=_State)


class FakeBackend:
    """Reads take `delay` seconds; targets in `failing` raise; records what the daemon did."""

    def __init__(self, *, delay: float = 0.02) -> None:
        self.delay = delay
        self.delays: dict[str, float] = {}
        self.failing: set[str] = set()
        self.timing_out: set[str] = set()
        self.last: dict[str, datetime] = {}
        self.ids = itertools.count(1)
        self.reads: list[str] = []
        self.sends: list[list[str]] = []
        self.committed: list[str] = []
        self.failed: dict[str, str] = {}
        self.cancelled_reads: list[str] = []
        self.unsent: list[ReadResult] = []
        self.send_fails = 0
        self.hold_first_send = 0
        self.finished = 0
        self.active = 0
        self.max_active = 0
        self.is_writable = True
        self.recovered = False
        self.started = False
        self.closed = False

    def recover(self) -> None:
        self.recovered = True

    def start(self) -> None:
        self.started = True

    async def pending(self, target: Any) -> list[ReadResult]:
        return [r for r in self.unsent if r.run_id.startswith(target.name + "-")]

    async def begin(self, target: Any) -> str:
        return f"{target.name}-{next(self.ids)}"

    async def read(self, target: Any, run_id: str) -> ReadResult:
        self.reads.append(target.name)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delays.get(target.name, self.delay))
        except asyncio.CancelledError:
            self.cancelled_reads.append(run_id)
            raise
        finally:
            self.active -= 1
            self.finished += 1
        if target.name in self.failing:
            raise PageError(f"{target.url}: connection refused")
        if target.name in self.timing_out:
            # What `read_target` raises at its deadline, the run already marked failed.
            raise TimeoutError("harvest timed out after 50ms")
        return ReadResult(run_id, spool=run_id, counts={"+I": 2, "+U": 1})  # type: ignore[arg-type]

    def checked(self) -> None:
        pass

    def send(self, results: Sequence[ReadResult]) -> None:
        if not self.sends and self.hold_first_send:
            # Hold the first send until the other reads have finished and queued up.
            deadline = time.monotonic() + 60
            while self.finished < self.hold_first_send and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)
        self.sends.append([r.run_id for r in results])
        if self.send_fails:
            self.send_fails -= 1
            self.unsent.extend(r for r in results if r not in self.unsent)
            raise RuntimeError("Flink job failed")
        self.unsent = [r for r in self.unsent if r not in results]

    def commit(self, result: ReadResult) -> None:
        self.committed.append(result.run_id)

    async def fail(self, run_id: str, reason: str) -> None:
        self.failed[run_id] = reason

    def last_started(self, target: str) -> datetime | None:
        return self.last.get(target)

    def pending_spools(self) -> int:
        return 0

    def writable(self) -> bool:
        return self.is_writable

    def close(self) -> None:
        self.closed = True

    def committed_of(self, target: str) -> list[str]:
        return [run for run in self.committed if run.startswith(target + "-")]


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the project does not use pytest-asyncio)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def _daemon(settings: _Settings, backend: FakeBackend, **kwargs: Any) -> Daemon:
    kwargs.setdefault("backoff_base", timedelta(milliseconds=20))
    kwargs.setdefault("serve_http", False)
    return Daemon(settings, backend, **kwargs)  # type: ignore[arg-type]


WAIT_S = 60


async def _until(condition: Callable[[], object]) -> None:
    """Wait until `condition()` holds: conditions, not fixed sleeps, suit a loaded machine."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def _run_until(
    daemon: Daemon, condition: Callable[[], object], check: Callable[[], None] | None = None
) -> int:
    """Run the daemon until `condition()` holds, run `check`, stop it; its exit code."""
    task = asyncio.create_task(daemon.run(handle_signals=False))
    await _until(lambda: condition() or task.done())
    assert not task.done(), task
    if check is not None:
        check()
    daemon.request_stop()
    return await asyncio.wait_for(task, WAIT_S)


# ---- pure helpers ---------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    base, cap = timedelta(seconds=5), timedelta(minutes=5)
    for attempt, full in [(0, 5), (1, 10), (2, 20), (10, 300)]:
        for _ in range(20):
            delay = backoff_delay(attempt, base=base, cap=cap, rng=rng).total_seconds()
            assert full / 2 <= delay <= full


# ---- the daemon with a fake backend ---------------------------------------------------------


@in_loop
async def test_targets_run_on_their_schedule_and_commit() -> None:
    backend = FakeBackend()
    settings = _Settings(targets=(_Target("a", schedule="1s"), _Target("b", schedule="1s")))
    daemon = _daemon(settings, backend)
    two_each = lambda: all(len(backend.committed_of(n)) >= 2 for n in "ab")  # noqa: E731
    assert await _run_until(daemon, two_each) == 0
    assert backend.recovered and backend.started and backend.closed
    for name in ("a", "b"):
        assert daemon.status[name].last_status == "committed"
    assert daemon.metrics.registry.get_sample_value(
        "harvester_records_total", {"target": "a", "op": "+I"}
    ) == 2 * len(backend.committed_of("a"))


def test_fires_skipped_during_a_long_run_are_counted_and_noted_once_per_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = FakeBackend(delay=3.5)  # each run spans several 1 s fires
    daemon = _daemon(_Settings(targets=(_Target("a", schedule="1s"),)), backend)

    def skipped() -> float:
        value = daemon.metrics.registry.get_sample_value(
            "harvester_runs_skipped_total", {"target": "a"}
        )
        return value or 0

    async def go() -> None:
        assert await _run_until(daemon, lambda: skipped() >= 2 and backend.committed) == 0

    asyncio.run(go())
    assert not [r for r in caplog.records if "maximum number of running instances" in r.message]
    notes = [r for r in caplog.records if getattr(r, "event", None) == "run_skipped"]
    # One line per run that had skips, however many fires it skipped.
    assert 1 <= len(notes) <= len(backend.reads)


@in_loop
async def test_a_failing_target_retries_with_backoff_and_others_go_on() -> None:
    backend = FakeBackend()
    backend.failing.add("down")
    settings = _Settings(
        targets=(_Target("down", schedule="1h", retries=3), _Target("up", schedule="1s"))
    )
    daemon = _daemon(settings, backend, unhealthy_after=3)

    def check() -> None:
        ok, body = daemon.health()
        assert ok
        assert body["targets"]["down"]["healthy"] is False
        assert body["targets"]["down"]["consecutive_failures"] == 4
        assert "connection refused" in body["targets"]["down"]["last_error"]
        assert body["targets"]["down"]["next_run"] is not None
        assert body["targets"]["up"]["healthy"] is True

    def done() -> bool:
        return len(backend.failed) == 4 and len(backend.committed_of("up")) >= 2

    assert await _run_until(daemon, done, check) == 0
    assert backend.reads.count("down") == 4  # the first attempt and 3 retries
    assert all("connection refused" in reason for reason in backend.failed.values())
    assert (
        daemon.metrics.registry.get_sample_value(
            "harvester_runs_total", {"target": "down", "status": "failed"}
        )
        == 4
    )


@in_loop
async def test_a_success_resets_the_failure_count() -> None:
    backend = FakeBackend()
    backend.failing.add("flaky")
    daemon = _daemon(_Settings(targets=(_Target("flaky", schedule="1h", retries=5),)), backend)

    def recovered() -> bool:
        if len(backend.failed) >= 2:
            backend.failing.clear()
        return bool(backend.committed)

    assert await _run_until(daemon, recovered) == 0
    assert daemon.status["flaky"].consecutive_failures == 0
    assert len(backend.committed_of("flaky")) == 1


@in_loop
async def test_reads_are_bounded_by_max_concurrent_harvests() -> None:
    backend = FakeBackend(delay=0.2)
    targets = tuple(_Target(name, schedule="1h") for name in "abcd")
    settings = _Settings(targets=targets, daemon=_DaemonSettings(max_concurrent_harvests=2))
    daemon = _daemon(settings, backend)
    assert await _run_until(daemon, lambda: len(backend.committed) == 4) == 0
    assert backend.max_active == 2


@in_loop
async def test_finished_reads_are_batched_into_one_send() -> None:
    backend = FakeBackend()
    backend.delays = {"a": 0.01, "b": 0.1, "c": 0.1}
    backend.hold_first_send = 3
    targets = tuple(_Target(name, schedule="1h") for name in "abc")
    settings = _Settings(targets=targets, daemon=_DaemonSettings(max_concurrent_harvests=3))
    daemon = _daemon(settings, backend)
    assert await _run_until(daemon, lambda: len(backend.committed) == 3) == 0
    # "a" finished first and went alone; "b" and "c" waited for that send and went together.
    assert backend.sends == [["a-1"], ["b-2", "c-3"]] or backend.sends == [
        ["a-1"],
        ["c-3", "b-2"],
    ]


@in_loop
async def test_a_read_past_its_timeout_fails_with_the_timeouts_message() -> None:
    backend = FakeBackend()
    backend.timing_out.add("slow")
    daemon = _daemon(_Settings(targets=(_Target("slow", schedule="1h", retries=0),)), backend)
    assert await _run_until(daemon, lambda: backend.failed) == 0
    assert backend.failed == {"slow-1": "harvest timed out after 50ms"}
    assert daemon.status["slow"].last_error == "harvest timed out after 50ms"
    assert daemon.metrics.registry.get_sample_value("harvester_browsers_alive") == 0


@in_loop
async def test_the_daemon_puts_no_deadline_of_its_own_on_a_read() -> None:
    # The read owns `harvest_timeout` (50 ms here); a second deadline would race it.
    backend = FakeBackend(delay=0.3)
    daemon = _daemon(_Settings(targets=(_Target("a", schedule="1h", retries=0),)), backend)
    assert await _run_until(daemon, lambda: backend.committed) == 0
    assert backend.committed == ["a-1"] and backend.failed == {} and backend.cancelled_reads == []


@in_loop
async def test_a_hung_page_fails_at_harvest_timeout_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = "[targets.limits]\nharvest_timeout = '200ms'\n[daemon]\nrun_on_start = true\n"
    settings = load_settings(write_config(tmp_path, extra=extra))

    @asynccontextmanager
    async def hung_page(*_args: Any) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.sleep(30)
        yield "http://fake.test", None

    monkeypatch.setattr(harvest, "open_reader", hung_page)
    loop_thread = threading.get_ident()
    on_the_loop: list[str] = []
    with StateDB.open(settings.state.dir) as state:
        for name in ("start_run", "pending_runs", "fail_run", "mark_read", "commit_run"):
            method = getattr(state, name)

            def watched(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
                if threading.get_ident() == loop_thread:
                    on_the_loop.append(_name)
                return _method(*args, **kw)

            monkeypatch.setattr(state, name, watched)
        backend = HarvestBackend(settings, state, JsonLinesSink(tmp_path / "out"))
        daemon = Daemon(settings, backend, serve_http=False)
        app = daemon.status.setdefault("app", TargetStatus())
        assert await _run_until(daemon, lambda: app.last_status == "failed") == 0
        (run,) = state.list_runs(target="app")
    assert (run.status, run.error) == ("failed", "harvest timed out after 200ms")
    assert app.last_error == "harvest timed out after 200ms"
    assert on_the_loop == []


@in_loop
async def test_shutdown_lets_running_reads_finish_within_grace() -> None:
    backend = FakeBackend(delay=0.5)
    daemon = _daemon(_Settings(targets=(_Target("a", schedule="1h"),)), backend)
    assert await _run_until(daemon, lambda: backend.reads) == 0
    assert backend.committed == ["a-1"]
    assert backend.cancelled_reads == []


@in_loop
async def test_shutdown_cancels_reads_past_grace() -> None:
    backend = FakeBackend(delay=30)
    settings = _Settings(
        targets=(_Target("a", schedule="1h"),),
        daemon=_DaemonSettings(shutdown_grace=timedelta(seconds=0.2)),
    )
    daemon = _daemon(settings, backend)
    assert await _run_until(daemon, lambda: backend.reads) == 0
    assert backend.cancelled_reads == ["a-1"]
    assert backend.committed == []
    assert backend.failed == {"a-1": "cancelled at shutdown"}


@in_loop
async def test_stop_during_backoff_ends_the_retries() -> None:
    backend = FakeBackend()
    backend.failing.add("down")
    daemon = _daemon(
        _Settings(targets=(_Target("down", schedule="1h", retries=5),)),
        backend,
        backoff_base=timedelta(seconds=30),
    )
    assert await asyncio.wait_for(_run_until(daemon, lambda: backend.failed), 10) == 0
    assert backend.reads == ["down"]


@in_loop
async def test_a_run_waiting_for_a_browser_at_stop_never_starts() -> None:
    backend = FakeBackend(delay=0.5)
    targets = (_Target("a", schedule="1h"), _Target("b", schedule="1h"))
    settings = _Settings(targets=targets, daemon=_DaemonSettings(max_concurrent_harvests=1))
    daemon = _daemon(settings, backend)
    assert await _run_until(daemon, lambda: backend.reads) == 0
    assert len(backend.reads) == 1
    assert len(backend.committed) == 1


@in_loop
async def test_catch_up_runs_a_missed_run_once_at_start() -> None:
    backend = FakeBackend()
    backend.last = {
        "missed": datetime.now(UTC) - timedelta(hours=2),
        "recent": datetime.now(UTC) - timedelta(minutes=5),
    }
    settings = _Settings(
        targets=(_Target("missed", schedule="1h"), _Target("recent", schedule="1h")),
        daemon=_DaemonSettings(run_on_start=False, catch_up=True),
    )
    daemon = _daemon(settings, backend)
    assert await _run_until(daemon, lambda: backend.committed) == 0
    assert backend.reads == ["missed"]

    backend = FakeBackend()
    backend.last = {"missed": datetime.now(UTC) - timedelta(hours=2)}
    no_catch_up = replace(settings, daemon=_DaemonSettings(run_on_start=False, catch_up=False))
    daemon = _daemon(no_catch_up, backend)
    scheduled = lambda: daemon.next_run("missed") is not None  # noqa: E731
    assert await _run_until(daemon, scheduled) == 0
    assert backend.reads == []


@in_loop
async def test_health_is_503_when_the_state_db_is_not_writable() -> None:
    backend = FakeBackend()
    daemon = _daemon(_Settings(targets=(_Target("a", schedule="1h"),)), backend)

    def check() -> None:
        assert daemon.health()[0]
        backend.is_writable = False
        ok, body = daemon.health()
        assert not ok
        assert body["status"] == "unavailable"
        assert body["state_writable"] is False

    assert await _run_until(daemon, lambda: backend.committed, check) == 0
    assert not daemon.health()[0]  # stopped: the scheduler no longer runs


@in_loop
async def test_health_masks_secrets_in_errors() -> None:
    backend = FakeBackend()
    backend.failing.add("a")
    target = _Target("a", schedule="1h", retries=0, url="http://127.0.0.1:1/?token=s3cret")
    daemon = _daemon(_Settings(targets=(target,)), backend, secrets=lambda _s: ["s3cret"])
    assert await _run_until(daemon, lambda: backend.failed) == 0
    assert "s3cret" in backend.failed["a-1"]
    assert daemon.health()[1]["targets"]["a"]["last_error"] == (
        "http://127.0.0.1:1/?token=****: connection refused"
    )


async def _started(daemon: Daemon) -> asyncio.Task[int]:
    task = asyncio.create_task(daemon.run(handle_signals=False))
    await _until(lambda: daemon.scheduler.running)
    return task


@in_loop
async def test_reload_adds_removes_and_rejects(tmp_path: Path) -> None:
    backend = FakeBackend()
    first = _Settings(
        targets=(_Target("a", schedule="1h"), _Target("b", schedule="1h")),
        daemon=_DaemonSettings(run_on_start=False),
    )
    configs: list[_Settings | ConfigError] = []

    def load(_path: Path | None) -> _Settings:
        config = configs.pop(0)
        if isinstance(config, ConfigError):
            raise config
        return config

    daemon = _daemon(first, backend, load=load, config_path=tmp_path / "h.toml")
    task = await _started(daemon)
    before = {job.id: job.next_run_time for job in daemon.scheduler.get_jobs()}

    configs.append(ConfigError(["h.toml: targets[0].schedule: not a cron string"]))
    assert not await daemon.reload()
    assert {job.id: job.next_run_time for job in daemon.scheduler.get_jobs()} == before

    second = replace(
        first,
        targets=(_Target("a", schedule="1s"), _Target("c", schedule="1h")),
    )
    configs.append(second)
    assert await daemon.reload()
    assert sorted(job.id for job in daemon.scheduler.get_jobs()) == ["a", "c"]
    assert sorted(daemon.health()[1]["targets"]) == ["a", "c"]
    await _until(lambda: backend.committed)  # "a" now runs every second
    daemon.request_stop()
    assert await task == 0
    assert set(backend.reads) == {"a"}


@in_loop
async def test_reload_keeps_a_running_harvest() -> None:
    backend = FakeBackend(delay=0.5)
    first = _Settings(targets=(_Target("a", schedule="1h"),))
    daemon = _daemon(first, backend, load=lambda _p: _Settings(targets=()))
    task = await _started(daemon)
    await _until(lambda: backend.reads)
    assert await daemon.reload()
    assert daemon.scheduler.get_jobs() == []
    await _until(lambda: backend.committed)
    daemon.request_stop()
    assert await task == 0
    assert backend.committed == ["a-1"]
    assert "a" not in daemon.health()[1]["targets"]


@in_loop
async def test_a_failed_send_is_sent_again_before_the_next_read() -> None:
    backend = FakeBackend()
    backend.send_fails = 1
    daemon = _daemon(_Settings(targets=(_Target("a", schedule="1h", retries=2),)), backend)
    assert await _run_until(daemon, lambda: len(backend.committed) == 2) == 0
    # Attempt 1 read a-1 and its send failed; attempt 2 sent a-1 first, then read and sent a-2.
    assert backend.sends == [["a-1"], ["a-1"], ["a-2"]]
    assert backend.committed == ["a-1", "a-2"]
    assert backend.failed == {"a-1": "RuntimeError: Flink job failed"}


@in_loop
async def test_each_run_logs_one_start_and_one_finish_event() -> None:
    from harvester.logs import JsonFormatter

    backend = FakeBackend()
    backend.failing.add("down")
    targets = (_Target("up", schedule="1h"), _Target("down", schedule="1h", retries=0))
    daemon = _daemon(_Settings(targets=targets), backend)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("harvester.daemon")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        finished = lambda: backend.committed and backend.failed  # noqa: E731
        assert await _run_until(daemon, finished) == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    events = [json.loads(JsonFormatter().format(r)) for r in records if hasattr(r, "event")]
    runs = [e for e in events if e["event"] in ("run_started", "run_finished")]
    assert sorted((e["event"], e["target"]) for e in runs) == [
        ("run_finished", "down"),
        ("run_finished", "up"),
        ("run_started", "down"),
        ("run_started", "up"),
    ]
    up = next(e for e in runs if e["event"] == "run_finished" and e["target"] == "up")
    assert up["run_id"] in ("up-1", "up-2")
    assert (up["status"], up["counts"], up["error"]) == ("committed", {"+I": 2, "+U": 1}, None)
    assert up["duration_s"] >= up["read_s"] >= 0
    down = next(e for e in runs if e["event"] == "run_finished" and e["target"] == "down")
    assert down["status"] == "failed"
    assert "connection refused" in down["error"]


def test_the_inspector_on_slash_and_the_report_are_the_ones_given_with_secrets_masked() -> None:
    settings = _Settings(targets=())
    page = '<p>token s3cret, quoted "s3cr&amp;t"</p>'
    seen: list[str] = []

    def inspector(request: Request) -> Response:
        seen.append(request.path)
        return Response(200, page.encode(), "text/html; charset=utf-8", {"X-Test": "1"})

    daemon = _daemon(
        settings,
        FakeBackend(),
        serve_http=True,
        report=lambda: page,
        inspector=inspector,
        secrets=lambda _s: ["s3cret", "s3cr&t"],
    )
    response = daemon.report(None)  # type: ignore[arg-type]
    assert response.status == 200 and response.content_type.startswith("text/html")
    assert response.body.decode() == '<p>token ****, quoted "****"</p>'
    assert daemon.http is not None and "/report" in daemon.http._routes
    # Every path no route names goes to the inspector, masked the same way.
    reply = daemon.http._dispatch("GET", "/target/t?page=2", {})
    assert (reply.status, reply.headers) == (200, {"X-Test": "1"})
    assert reply.body.decode() == '<p>token ****, quoted "****"</p>'
    assert daemon.http._dispatch("GET", "/healthz", {}).content_type == "application/json"
    assert daemon.http._dispatch("POST", "/", {}).status == 405
    assert seen == ["/target/t"]
    without = _daemon(settings, FakeBackend(), serve_http=True)
    assert without.http is not None and "/" not in without.http._routes
    assert without.http._dispatch("GET", "/", {}).status == 404


def test_the_daemon_does_not_import_the_inspector() -> None:
    # The composition root hands it the report renderer; the daemon layer stays below it.
    code = "import sys, harvester.daemon; print([m for m in sys.modules if 'inspect' in m])"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "harvester.inspect" not in found, found
