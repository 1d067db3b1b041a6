"""The `Daemon`: lifecycle and signals, scheduling, runs with retries, health, and reload.

One asyncio loop runs APScheduler's `AsyncIOScheduler` (one job per target, `max_instances=1`),
the reads (at most `daemon.max_concurrent_harvests` browsers at once) and the `Forwarder`.
`docs/daemon.md` explains the scheduling and shutdown choices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from harvester.config.schedule import missed_run
from harvester.daemon import signals
from harvester.daemon.attempt import attempt as run_attempt
from harvester.daemon.forwarder import Forwarder
from harvester.daemon.health import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    UNHEALTHY_AFTER,
    TargetStatus,
    backoff_delay,
    health_body,
)
from harvester.daemon.http import Handler, HttpServer, Request, Response
from harvester.daemon.metrics import CONTENT_TYPE_LATEST, DaemonMetrics
from harvester.daemon.pages import inspector_page, report_page
from harvester.daemon.skips import SkippedFires
from harvester.daemon.watch import Watches
from harvester.errors import ConfigError
from harvester.harvest import describe
from harvester.redaction import Redactor, remember_secrets
from harvester.spool import quarantine_dir, quarantined

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

    from harvester.config import Settings, TargetSettings
    from harvester.daemon.backend import RunBackend
    from harvester.daemon.delivery import DeliveryWatch

log = logging.getLogger(__name__)


class Daemon:
    """Schedules, runs, retries and reports the harvests of every enabled target.

    `inspector` answers `/` and every other path no route of the daemon names (the live
    inspector's pages; the composition root passes it); `report` renders the single-file HTML
    report served on `/report`. Without them those paths are not served.
    """

    def __init__(
        self,
        settings: Settings,
        backend: RunBackend,
        *,
        config_path: Path | None = None,
        load: Callable[[Path | None], Settings] | None = None,
        metrics: DaemonMetrics | None = None,
        backoff_base: timedelta = BACKOFF_BASE,
        backoff_max: timedelta = BACKOFF_MAX,
        unhealthy_after: int = UNHEALTHY_AFTER,
        serve_http: bool = True,
        secrets: Callable[[Settings], Iterable[str]] = lambda _settings: (),
        report: Callable[[], str] | None = None,
        inspector: Handler | None = None,
        delivery: DeliveryWatch | None = None,
    ) -> None:
        self.settings = settings
        # /healthz shows run errors, which may quote a URL or page text holding a secret.
        self._secrets = secrets
        self._redact = Redactor(secrets(settings)).redact
        self.backend = backend
        self.metrics = metrics or DaemonMetrics()
        self.metrics.count_pending_spools(backend.pending_spools)
        self.config_path = config_path
        self._load = load
        self._render_report = report
        self._inspector = inspector
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self.unhealthy_after = unhealthy_after
        self.status: dict[str, TargetStatus] = {}
        self.targets: dict[str, TargetSettings] = {}
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._skips = SkippedFires(metrics=self.metrics)
        self._skips.attach(self.scheduler)
        self.http: HttpServer | None = None
        if serve_http:
            self.http = HttpServer(
                settings.http.bind,
                settings.http.port,
                health=self.health,
                metrics=self.metrics.render,
                metrics_content_type=CONTENT_TYPE_LATEST,
            )
            if report is not None:
                self.http.register_route("/report", self.report)
            if inspector is not None:
                self.http.register_fallback(self.inspect)
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self.stopping = False
        self._browsers = asyncio.Semaphore(settings.daemon.max_concurrent_harvests)
        self.forwarder = Forwarder(backend, on_config_error=self.config_broken)
        self._locks: dict[str, asyncio.Lock] = {}
        self.watches = Watches(self)
        self._exit_code = 0
        self._forwarding: asyncio.Task[None] | None = None
        self.delivery = delivery
        self._tracking: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self.reloads: set[asyncio.Task[bool]] = set()

    # ---- life cycle -------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> int:
        """Serve until asked to stop, then drain; the process exit code."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            signals.install(loop, self)
        if self.http is not None:
            self.http.start()
        try:
            await self._recover()
            self._forwarding = asyncio.create_task(self.forwarder.run(), name="forwarder")
            if self.delivery is not None:
                self._tracking = asyncio.create_task(self.delivery.run(), name="delivery")
            self.scheduler.start()
            self._schedule(self.settings, starting=True)
            log.info(
                "daemon started: %d target(s) scheduled",
                len(self.scheduler.get_jobs()),
                extra={"event": "daemon_started", "targets": sorted(self.targets)},
            )
            await self._stop.wait()
            return await self._drain()
        finally:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            for task in (self._forwarding, self._tracking, *self.watches.tasks()):
                if task is not None:
                    task.cancel()
            await asyncio.to_thread(self.backend.close)
            if self.http is not None:
                self.http.stop()
            if handle_signals:
                signals.remove(loop)

    def request_stop(self) -> None:
        """Stop scheduling, let running harvests finish within `daemon.shutdown_grace`."""
        if self.stopping:
            return
        self.stopping = True
        log.info(
            "stopping: no new runs; waiting up to %s for %d running harvest(s)",
            self.settings.daemon.shutdown_grace,
            len(self._runs) + self.watches.reading(),
            extra={"event": "daemon_stopping"},
        )
        if self.scheduler.running:
            self.scheduler.pause()
        self._stop.set()

    async def stopped(self) -> None:
        """Return once the daemon is asked to stop."""
        await self._stop.wait()

    def config_broken(self, exc: ConfigError) -> None:
        """A sink found the config broken after the start (its background check): stop, exit 2."""
        log.error("config error: %s", "; ".join(exc.problems), extra={"event": "config_broken"})
        self._exit_code = 2
        self.request_stop()

    async def _recover(self) -> None:
        try:
            await asyncio.to_thread(self.backend.recover)
        except Exception as exc:
            # The spools stay pending; the next runs of those targets send them again.
            log.error(
                "replaying pending spools failed: %s",
                describe(exc),
                extra={"event": "recover_failed", "error": describe(exc)},
            )

    async def _drain(self) -> int:
        grace = self.settings.daemon.shutdown_grace.total_seconds()
        # A watched page closes once its read in progress is committed, within the same grace.
        running = [task for task in self._runs.values() if not task.done()]
        running += self.watches.tasks()
        if running:
            _done, pending = await asyncio.wait(running, timeout=grace)
            if pending:
                log.warning(
                    "shutdown grace of %s over: cancelling %d harvest(s); "
                    "what they read stays spooled",
                    self.settings.daemon.shutdown_grace,
                    len(pending),
                    extra={"event": "daemon_cancelled_runs"},
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
        if self.delivery is not None:
            await asyncio.to_thread(self.delivery.settle, grace)
        log.info("daemon stopped", extra={"event": "daemon_stopped"})
        return self._exit_code

    # ---- scheduling -------------------------------------------------------------------------

    def _schedule(self, settings: Settings, *, starting: bool) -> None:
        """Make the scheduler's jobs match `settings.targets` (added, changed, removed)."""
        wanted = {t.name: t for t in settings.targets if t.enabled}
        for name in list(self.targets):
            if name not in wanted:
                self.scheduler.remove_job(name)
                del self.targets[name]
                if name not in self._runs:
                    self.status.pop(name, None)
                    self.metrics.forget_target(name)
                log.info("target %s removed from the schedule", name, extra={"target": name})
        now = datetime.now(UTC)
        for name, target in wanted.items():
            old = self.targets.get(name)
            self.targets[name] = target
            trigger = target.trigger()
            if old is None:
                self.status.setdefault(name, TargetStatus())
                options: dict[str, Any] = {}
                if starting and self._runs_at_start(target, trigger, now):
                    options["next_run_time"] = now
                self.scheduler.add_job(
                    self._fire,
                    trigger,
                    args=[name],
                    id=name,
                    name=f"harvest {name}",
                    max_instances=1,
                    # Several fires missed at once (loop busy, machine suspended) run once...
                    coalesce=True,
                    # ...however late: a late harvest is worth more than a skipped one.
                    misfire_grace_time=None,
                    **options,
                )
            elif old.schedule_key() != target.schedule_key():
                self.scheduler.reschedule_job(name, trigger=trigger)
                log.info("target %s rescheduled", name, extra={"target": name})
        self.watches.sync(self.targets)

    def _runs_at_start(self, target: TargetSettings, trigger: BaseTrigger, now: datetime) -> bool:
        if self.settings.daemon.run_on_start:
            return True
        if not self.settings.daemon.catch_up:
            return False
        missed = missed_run(trigger, self.backend.last_started(target.name), now)
        if missed:
            log.info(
                "target %s missed a run while the daemon was down: running it now",
                target.name,
                extra={"event": "catch_up", "target": target.name},
            )
        return missed

    def next_run(self, name: str) -> datetime | None:
        """When the target's job fires next; None when it has none (or nothing is scheduled)."""
        job = self.scheduler.get_job(name) if self.scheduler.running else None
        return job.next_run_time if job is not None else None

    # ---- runs -------------------------------------------------------------------------------

    async def _fire(self, name: str) -> None:
        """The APScheduler job: one run of `name` with its retries."""
        if self.stopping or name not in self.targets:
            return
        self._skips.run_started(name)
        task = asyncio.create_task(self._run_with_retries(name), name=f"harvest {name}")
        self._runs[name] = task
        task.add_done_callback(lambda _: self._runs.pop(name, None))
        # Shielded so that the scheduler's executor never cancels a run; shutdown does that.
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # The run was cancelled (only shutdown does that): no failure of the job, for which
            # APScheduler would log a traceback.
            if not task.cancelled():
                raise

    async def _run_with_retries(self, name: str) -> None:
        attempt = 0
        while True:
            target = self.targets.get(name)
            if target is None or self.stopping:
                return
            if await self._attempt(target, attempt) or self.stopping:
                return
            if attempt >= target.retries:
                log.error(
                    "target %s: giving up after %d attempt(s) until its next scheduled run",
                    name,
                    attempt + 1,
                    extra={"event": "run_gave_up", "target": name, "attempts": attempt + 1},
                )
                return
            delay = backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_max)
            attempt += 1
            log.info(
                "target %s: retry %d of %d in %.1fs",
                name,
                attempt,
                target.retries,
                delay.total_seconds(),
                extra={"event": "run_retry", "target": name, "attempt": attempt},
            )
            try:
                await asyncio.wait_for(self._stop.wait(), delay.total_seconds())
                return
            except TimeoutError:
                pass

    async def _attempt(self, target: TargetSettings, attempt: int) -> bool:
        """One read → send → commit of `target` (`attempt.attempt`); False when it failed."""
        return await run_attempt(self, target, attempt)

    def lock(self, name: str) -> asyncio.Lock:
        """Held by every run of target `name` and by its watched page's opening and closing:
        runs of one target never overlap, whether the schedule or change events started them."""
        return self._locks.setdefault(name, asyncio.Lock())

    def browsers(self) -> asyncio.Semaphore:
        """The bound of browsers open at once (a reload may replace it)."""
        return self._browsers

    # ---- health -----------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for /healthz; ok while the scheduler runs and the state DB is writable."""
        try:
            writable = self.backend.writable()
        except Exception:
            writable = False
        ok, body = health_body(
            self.status,
            scheduling=self.scheduler.running and not self.stopping,
            writable=writable,
            next_run=self.next_run,
            unhealthy_after=self.unhealthy_after,
            redact=self._redact,
            quarantined=quarantined(quarantine_dir(self.settings.state.dir)),
        )
        self.watches.annotate(body, self._redact)
        if self.delivery is not None and not self.delivery.annotate(body, self._redact):
            ok = False
            body["status"] = "unavailable"
        return ok, body

    def inspect(self, request: Request) -> Response:
        """`/` and below: the live inspector's pages (`pages.inspector_page`)."""
        return inspector_page(self._inspector, request, self._secrets(self.settings))

    def report(self, _request: Request) -> Response:
        """`/report`: the single-file HTML report (`pages.report_page`)."""
        return report_page(self._render_report, self._secrets(self.settings))

    # ---- reload -----------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the config; apply it if valid, else keep the old one. True when applied."""
        async with self._reload_lock:
            if self.stopping or self._load is None:
                return False
            try:
                new = await asyncio.to_thread(self._load, self.config_path)
            except ConfigError as exc:
                log.error(
                    "config reload rejected, keeping the running config: %s",
                    "; ".join(exc.problems),
                    extra={"event": "reload_rejected", "problems": exc.problems},
                )
                return False
            for section in ("state", "http", "log", "browser", "flink"):
                if getattr(new, section, None) != getattr(self.settings, section, None):
                    log.warning(
                        "config reload: [%s] changed; it takes effect at the next restart",
                        section,
                    )
            if new.daemon.max_concurrent_harvests != self.settings.daemon.max_concurrent_harvests:
                # Runs holding the old semaphore release it; new runs take the new one.
                self._browsers = asyncio.Semaphore(new.daemon.max_concurrent_harvests)
            self._schedule(new, starting=False)
            self.settings = new
            self._redact = Redactor(self._secrets(new)).redact
            # A new target's password must be masked in the log and in run errors as well.
            remember_secrets(self._secrets(new))
            log.info(
                "config reloaded: %d target(s) scheduled",
                len(self.targets),
                extra={"event": "reload_applied", "targets": sorted(self.targets)},
            )
            return True
