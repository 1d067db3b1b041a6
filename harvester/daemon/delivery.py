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
        self.tracker = Tracker(state, sink.changelog, retention=retention)
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

    def health(self, redact: Callable[[str], str]) -> tuple[bool, dict[str, Any]]:
        """(ok, the `flink` entry of /healthz): not ok when the job reports a problem or a run
        has waited longer than `flink.max_lag`."""
        problem = self.sink.problem()
        lagging = [t.target for t in self.targets if t.lag_seconds > self.max_lag.total_seconds()]
        ok = problem is None and not lagging
        return ok, {
            "healthy": ok,
            "problem": redact(problem) if problem else None,
            "max_lag_seconds": self.max_lag.total_seconds(),
            "lagging_targets": lagging,
            "checked_at": iso_utc(self.checked_at) if self.checked_at else None,
            "targets": {
                t.target: {
                    "handed_off": t.handed_off,
                    "consumed": t.consumed,
                    "waiting_since": iso_utc(t.waiting_since) if t.waiting_since else None,
                    "lag_seconds": round(t.lag_seconds, 3),
                }
                for t in self.targets
            },
        }
