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
import threading
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
    """Follows the acknowledgements in a sink's log into one state DB."""

    def __init__(self, state: StateDB, sink: ChangeSink, *, retention: timedelta) -> None:
        assert sink.changelog is not None  # only a sink with a log has acks to follow
        self.state = state
        self.sink = sink
        self.log: ChangeLog = sink.changelog
        self.retention = retention
        self._retired_at = 0.0
        # Acks read but not yet recorded: run → (rows, the sink's marker when first seen so).
        self._seen: dict[str, tuple[int, int]] = {}
        # The daemon's tracking loop and its shutdown's `wait` may track at the same time.
        self._lock = threading.Lock()

    def track(self) -> list[str]:
        """Record what the job acknowledged and its sinks committed since the last call; the
        runs that became consumed.

        An ack is recorded only once the sink says what was consumed before it is committed
        downstream (`ChangeSink.committed_marker`): the job's file sinks roll their files each
        on its own timer, so the ack's file may be committed a checkpoint before the run's
        rows are.
        """
        with self._lock:
            return self._track()

    def _track(self) -> list[str]:
        acks = self.log.read_acks()
        marker = self.sink.committed_marker()
        for run_id, rows in acks.rows.items():
            if self._seen.get(run_id, (-1, 0))[0] != rows:
                self._seen[run_id] = (rows, marker or 0)
        ready = {
            run_id: rows
            for run_id, (rows, seen) in self._seen.items()
            if marker is None or marker > seen
        }
        consumed = self.state.mark_consumed(ready) if ready else []
        for run_id in consumed:
            log.debug("run %s: consumed by the continuous Flink job", run_id)
        self.log.set_aside(consumed)
        # A file naming a run this state DB does not know belongs to another harvester on the
        # same log (or to a run retention dropped); it is left for `prune_acks`.
        done = [
            path
            for path, runs in acks.files
            if runs <= ready.keys() and all(self.state.get_run(r) is not None for r in runs)
        ]
        self.log.remove_acks(done)
        for run_id in ready:
            del self._seen[run_id]
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
