"""Schedule fires skipped because the target's run is still going: counted, noted once a run.

APScheduler logs a warning for every such fire (with a run longer than its interval: every
tick); that is how `max_instances=1` is meant to work, not a problem to warn about.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from harvester.daemon.metrics import DaemonMetrics

log = logging.getLogger(__name__)


class _DropSkipWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


_DROP = _DropSkipWarnings()


class SkippedFires:
    """Counts skipped fires in `/metrics` and writes one debug line per run that caused them."""

    def __init__(self, *, metrics: DaemonMetrics) -> None:
        self._metrics = metrics
        self._noted: set[str] = set()

    def attach(self, scheduler: BaseScheduler) -> None:
        scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        # The same filter object each time: `addFilter` keeps one copy.
        logging.getLogger("apscheduler.scheduler").addFilter(_DROP)

    def run_started(self, target: str) -> None:
        """A new run of `target` began: its skips, if any, get a line of their own."""
        self._noted.discard(target)

    def _skipped(self, event: JobSubmissionEvent) -> None:
        target = str(event.job_id)
        self._metrics.runs_skipped.labels(target=target).inc()
        if target not in self._noted:
            self._noted.add(target)
            log.debug(
                "target %s: a scheduled run was skipped, its previous run is still going",
                target,
                extra={"event": "run_skipped", "target": target},
            )
