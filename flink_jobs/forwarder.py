"""The harvest path's sink: spools of finished reads → as few Flink jobs as allowed.

`FlinkForwarder` implements `ChangeSink` (docs/contracts.md): `send` runs the jobs in order and
returns once all finished, or raises `FlinkJobError` (the harvest keeps the spools and fails the
runs). Delivery is at least once: when a later job of one `send` fails, the runs of the earlier
jobs are sent again with the retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flink_jobs.protocol import SpoolSlice, source_of
from flink_jobs.runner import FlinkRunner
from flink_jobs.statements import StatementCheck
from flink_jobs.verify import check_written
from harvester.sinks import ChangeSink

if TYPE_CHECKING:
    from harvester.config import Settings
    from harvester.spool import SpoolFile

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedJob:
    """The spool slices one job sends."""

    slices: tuple[SpoolSlice, ...]
    rows: int


def plan_jobs(
    spools: Sequence[SpoolFile], max_rows: int, *, whole_spools: bool = False
) -> list[PlannedJob]:
    """Batch `spools` in order into jobs of at most `max_rows` rows.

    A run larger than `max_rows` is split across consecutive jobs, except with `whole_spools`
    (Flink's file source reads whole files), where it gets a job of its own. Two runs of one
    target never share a job: the rows of one job are not ordered across spools (a file source
    per spool, parallel sinks), and only runs of the same target can change the same record.
    Empty spools need no job.
    """
    jobs: list[PlannedJob] = []
    slices: list[SpoolSlice] = []
    rows = 0

    def flush() -> None:
        nonlocal slices, rows
        if slices:
            jobs.append(PlannedJob(tuple(slices), rows))
        slices, rows = [], 0

    for spool in spools:
        if spool.rows <= 0:
            continue
        if any(part.target == spool.target for part in slices):
            flush()
        if whole_spools:
            if slices and rows + spool.rows > max_rows:
                flush()
            slices.append(SpoolSlice(spool.run_id, spool.target, spool.path))
            rows += spool.rows
            continue
        start = 0
        while start < spool.rows:
            if rows >= max_rows:
                flush()
            stop = min(spool.rows, start + max_rows - rows)
            whole = start == 0 and stop == spool.rows
            slices.append(
                SpoolSlice(spool.run_id, spool.target, spool.path, start, None if whole else stop)
            )
            rows += stop - start
            start = stop
    flush()
    return jobs


class FlinkForwarder(ChangeSink):
    """`ChangeSink` into Flink; owns a `FlinkRunner` unless given one. Close it when done."""

    def __init__(self, settings: Settings, *, runner: FlinkRunner | None = None) -> None:
        self.settings = settings
        self.runner = runner or FlinkRunner(settings)
        self.description = f"Flink ({settings.flink.mode})"
        self._check: StatementCheck | None = None

    def start(self) -> None:
        """Start Flink now (cluster, warm worker) rather than at the first `send`."""
        if self._check is None:  # the check started it, and holds its worker
            self.runner.start()

    def validate(self) -> None:
        """Have Flink plan `flink.statements` in the runner's worker (which then takes the
        jobs), in the background: `checked` and `send` raise `ConfigError` naming each broken
        one. The data folder's lock is taken at once: a second harvester on it fails here. The
        cluster (a remote one may be down for now) and the worker start in the check's thread."""
        if self.settings.flink.statements and self._check is None:
            self.runner.lock_data()
            self._check = StatementCheck(self.runner.validate)
            self._check.start()

    def checked(self) -> None:
        """Wait for the check of `flink.statements` (if one runs); raise what it found."""
        if self._check is not None:
            self._check.result()

    def send(self, spools: Sequence[SpoolFile]) -> None:
        """Send every row of `spools`; raises `FlinkJobError` if any job fails."""
        self.checked()
        flink = self.settings.flink
        whole = source_of(flink) == "file"
        planned = plan_jobs(spools, flink.max_rows_per_job, whole_spools=whole)
        rows = {spool.run_id: spool.rows for spool in spools}
        for job in planned:
            started = time.time()
            result = self.runner.run(job.slices, job.rows)
            expected: dict[str, int] = {}
            for part in job.slices:
                stop = rows[part.run_id] if part.stop is None else part.stop
                expected[part.run_id] = expected.get(part.run_id, 0) + stop - part.start
            check_written(self.settings.state.data_dir, started, expected)
            logger.info(
                "Flink job %s: %d rows of %s in %.1f s",
                result.job_id,
                result.rows,
                ", ".join(result.run_ids),
                result.seconds,
            )

    def close(self) -> None:
        self.runner.close()
