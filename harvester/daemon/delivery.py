"""The daemon's view of delivery through the log: tracking acks, `/healthz`'s `flink` entry, and
the delivery metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from harvester.delivery import Tracker
from harvester.harvest import describe
from harvester.timefmt import iso_utc

if TYPE_CHECKING:
    from harvester.daemon.metrics import DaemonMetrics
    from harvester.sinks import ChangeSink
    from harvester.state import StateDB, TargetDelivery

log = logging.getLogger(__name__)

TRACK_SECONDS = 0.5


class DeliveryWatch:
    """Follows what the log's consumer acknowledged, for a sink with a changelog log."""

    def __init__(
        self,
        *,
        state: StateDB,
        sink: ChangeSink,
        max_lag: timedelta,
        retention: timedelta,
        metrics: DaemonMetrics,
    ) -> None:
        assert sink.changelog is not None  # only a sink with a log has acks to follow
        self.sink = sink
        self.state = state
        self.max_lag = max_lag
        self.metrics = metrics
        self.tracker = Tracker(state, sink, retention=retention)
        self.targets: list[TargetDelivery] = []
        self.checked_at: datetime | None = None

    async def run(self) -> None:
        """Track every half second until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.track)
            except Exception as exc:
                log.warning("tracking the log's acknowledgements failed: %s", describe(exc))
            await asyncio.sleep(TRACK_SECONDS)

    def track(self) -> None:
        self.tracker.track()
        now = datetime.now(UTC)
        self.targets = self.state.delivery(now)
        self.checked_at = now
        for target in self.targets:
            self.metrics.delivery(
                target.target,
                handed_off=target.handed_off,
                consumed=target.consumed,
                lag=target.lag_seconds,
            )

    def settle(self, timeout: float) -> None:
        """At shutdown: give the job up to `timeout` seconds to consume what was handed off
        (and a checkpoint to commit it); what it has not taken waits in the log for the next
        start."""
        waited = self.tracker.wait(self.sink, timeout)
        if waited.waiting:
            log.warning(
                "stopping with %d run(s) in the log not yet consumed by Flink (%s): the "
                "pipeline takes them at the next start",
                len(waited.waiting),
                waited.problem or "no error reported",
            )
            return
        self.sink.flush(timeout)

    def annotate(self, body: dict[str, Any], redact: Callable[[str], str]) -> bool:
        """Add the `flink` entry to a /healthz body, and to each target its delivery; False
        when the job reports a problem or a run has waited longer than `flink.max_lag` (the
        targets concerned are then unhealthy too)."""
        problem = self.sink.problem()
        shown = redact(problem) if problem else None
        limit = self.max_lag.total_seconds()
        lagging = [t.target for t in self.targets if t.lag_seconds > limit]
        ok = problem is None and not lagging
        body["flink"] = {
            "healthy": ok,
            "problem": shown,
            "max_lag_seconds": limit,
            "lagging_targets": lagging,
            "checked_at": iso_utc(self.checked_at) if self.checked_at else None,
        }
        for t in self.targets:
            entry = body["targets"].get(t.target)
            if entry is None:
                continue
            entry["delivery"] = {
                "handed_off": t.handed_off,
                "consumed": t.consumed,
                "waiting_since": iso_utc(t.waiting_since) if t.waiting_since else None,
                "lag_seconds": round(t.lag_seconds, 3),
                "problem": shown if t.lag_seconds > 0 or t.target in lagging else None,
            }
            if t.target in lagging or (shown and t.lag_seconds > 0):
                entry["healthy"] = False
        return ok
