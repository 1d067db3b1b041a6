"""Delivery through the changelog log: what its consumer acknowledged, into the state DB.

A run handed off to the log (`harvest.send`) is committed, but delivered only once the
continuous Flink job has consumed all its rows and a checkpoint has committed them: the job
then writes the run's row count into the log's ack folder. `track` records those counts in
the state DB (`runs.consumed_at`), removes the ack files it recorded, sets the consumed
runs' files aside, and removes those older than `flink.log_retention`. The daemon tracks
every half second; a one-shot command waits with `wait` until its runs are consumed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harvester.sinks import ChangeSink
    from harvester.sinks.log import ChangeLog
    from harvester.state import StateDB

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Waited:
    """How `wait` ended: the runs still not consumed, and what the sink said was wrong."""

    waiting: tuple[str, ...]
    problem: str | None


class Tracker:
    """Follows one log's acknowledgements into one state DB."""

    def __init__(self, state: StateDB, log: ChangeLog, *, retention: timedelta) -> None:
        self.state = state
        self.log = log
        self.retention = retention
        self._retired_at = 0.0

    def track(self) -> list[str]:
        """Record what the job acknowledged since the last call; the runs that became
        consumed."""
        acks = self.log.read_acks()
        consumed = self.state.mark_consumed(acks.rows) if acks.rows else []
        for run_id in consumed:
            log.debug("run %s: consumed by the continuous Flink job", run_id)
        self.log.set_aside(consumed)
        # A file naming a run this state DB does not know belongs to another harvester on the
        # same log (or to a run retention dropped); it is left for `prune_acks`.
        done = [
            path
            for path, runs in acks.files
            if all(self.state.get_run(run_id) is not None for run_id in runs)
        ]
        self.log.remove_acks(done)
        if time.monotonic() - self._retired_at > 60:
            self._retired_at = time.monotonic()
            self.retire()
        return consumed

    def retire(self) -> None:
        """Set aside the files of runs found consumed earlier (a crash between the record and
        the move), remove consumed files older than the retention; ack files nobody claimed go
        after the same time."""
        late = []
        for item in self.log.files():
            run = self.state.get_run(item.run_id)
            if run is not None and run.consumed_at is not None:
                late.append(item.run_id)
        self.log.set_aside(late)
        cutoff = time.time() - self.retention.total_seconds()
        if removed := self.log.retire(older_than=cutoff):
            log.info("removed %d consumed log file(s) older than flink.log_retention", removed)
        self.log.prune_acks(self.retention.total_seconds())

    def wait(self, sink: ChangeSink, timeout: float) -> Waited:
        """Track until every handed-off run is consumed, or `timeout` seconds passed."""
        deadline = time.monotonic() + timeout
        while True:
            self.track()
            waiting = tuple(run.id for run in self.state.undelivered())
            if not waiting or time.monotonic() >= deadline:
                return Waited(waiting, sink.problem() if waiting else None)
            time.sleep(POLL_SECONDS)
