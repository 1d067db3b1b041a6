"""One attempt of one target's run, scheduled or event-driven: begin → read → forward → finish.

Both kinds go through `attempt`, so that an event-driven run is recorded, spooled, diffed,
committed, sent, counted and logged exactly like a scheduled one; the daemon's per-target lock
keeps runs of one target from overlapping, whatever started them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harvester.daemon.health import TargetStatus
from harvester.harvest import describe

if TYPE_CHECKING:
    from harvester.config import TargetSettings
    from harvester.daemon.backend import ReadResult
    from harvester.daemon.daemon import Daemon
    from harvester.harvest import Opener

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventRead:
    """What an event-driven attempt reads: through the watched page, after `events` change
    events, the first of them at `first_event` (`time.monotonic()`)."""

    opener: Opener
    events: int
    first_event: float


@dataclass
class Attempt:
    """One attempt's timing: the whole run, and its read phase (browser to spool)."""

    target: TargetSettings
    run_id: str | None = None
    started: float = field(default_factory=time.monotonic)
    read_s: float | None = None
    first_event: float | None = None  # event-driven: when its first event came


async def attempt(
    daemon: Daemon, target: TargetSettings, number: int, event: EventRead | None = None
) -> bool:
    """One read → send → commit of `target`; False when it failed (already recorded).

    `event`: an event-driven read through the watched page, which needs no browser of the
    `max_concurrent_harvests` pool. A scheduled read goes through the watched page as well when
    it is open (`Watches.opener`): a persistent profile cannot be opened by a second browser.
    The read is bounded by its own deadline (`limits.harvest_timeout`, in the backend), not by
    one here: a second timeout racing it would cancel the read mid-write instead.
    """
    status = daemon.status.setdefault(target.name, TargetStatus())
    run = Attempt(target, first_event=None if event is None else event.first_event)
    async with daemon.lock(target.name):
        status.running = True
        try:
            for earlier in await daemon.backend.pending(target):
                # A new read would diff against a snapshot that lacks these runs' changes.
                await daemon.forwarder.forward(earlier)
            if event is None:
                opener = daemon.watches.opener(target.name)
                async with daemon.browsers():
                    if daemon.stopping:
                        # Stopped while waiting for a browser: this run never starts.
                        status.running = False
                        return True
                    result = await _read(daemon, run, number, opener, None)
            else:
                result = await _read(daemon, run, number, event.opener, event.events)
            run.read_s = time.monotonic() - run.started
            await daemon.forwarder.forward(result)
        except asyncio.CancelledError:
            await finish(daemon, run, "cancelled", "cancelled at shutdown")
            raise
        except Exception as exc:
            await finish(daemon, run, "failed", describe(exc))
            return False
        await finish(daemon, run, "committed", None, result.counts)
        return True


async def _read(
    daemon: Daemon, run: Attempt, number: int, opener: Opener | None, events: int | None
) -> ReadResult:
    target = run.target
    # The run's duration counts from here, not from the wait for a browser.
    run.started = time.monotonic()
    if events is None:
        run.run_id = await daemon.backend.begin(target)
    else:
        run.run_id = await daemon.backend.begin(target, trigger="event", events=events)
    daemon.status[target.name].started(run.run_id)
    log.info(
        "run started: target=%s run=%s attempt=%d%s",
        target.name,
        run.run_id,
        number + 1,
        "" if events is None else f" trigger=event events={events} stores={target.stores}",
        extra={
            "event": "run_started",
            "target": target.name,
            "run_id": run.run_id,
            "trigger": None if events is None else "event",
        },
    )
    if opener is not None:
        return await daemon.backend.read(target, run.run_id, opener=opener)
    daemon.metrics.browsers_alive.inc()
    try:
        return await daemon.backend.read(target, run.run_id)
    finally:
        daemon.metrics.browsers_alive.dec()


async def finish(
    daemon: Daemon,
    run: Attempt,
    outcome: str,
    error: str | None,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Record, count and log the end of an attempt."""
    name, run_id = run.target.name, run.run_id
    duration = time.monotonic() - run.started
    status = daemon.status.setdefault(name, TargetStatus())
    status.finished(outcome, error)
    daemon.metrics.run_finished(
        name,
        outcome=outcome,
        seconds=duration,
        counts=counts or {},
        failures=status.consecutive_failures,
    )
    if run.first_event is not None and outcome == "committed":
        daemon.metrics.watch_delay.labels(target=name).observe(time.monotonic() - run.first_event)
    if outcome != "committed" and run_id is not None:
        try:
            await daemon.backend.fail(run_id, error or outcome)
        except Exception as exc:
            log.error("recording the failure of run %s failed: %s", run_id, describe(exc))
    level = logging.INFO if outcome == "committed" else logging.WARNING
    read = f" (read {run.read_s:.1f}s)" if run.read_s is not None else ""
    log.log(
        level,
        "run %s: target=%s run=%s duration=%.1fs%s counts=%s%s",
        outcome,
        name,
        run_id,
        duration,
        read,
        dict(counts or {}),
        f" error={error}" if error else "",
        extra={
            "event": "run_finished",
            "target": name,
            "run_id": run_id,
            "status": outcome,
            "counts": dict(counts or {}),
            "duration_s": round(duration, 3),
            "read_s": None if run.read_s is None else round(run.read_s, 3),
            "error": error,
        },
    )
    if name not in daemon.targets:
        # Removed by a reload while this run went on: report it no more.
        daemon.status.pop(name, None)
        daemon.metrics.forget_target(name)
    elif outcome == "failed" and status.consecutive_failures == daemon.unhealthy_after:
        log.error(
            "target %s is unhealthy: %d failures in a row (last: %s); it keeps its schedule",
            name,
            status.consecutive_failures,
            error,
            extra={"event": "target_unhealthy", "target": name},
        )
