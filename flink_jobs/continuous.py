"""`flink.delivery = "continuous"`: one long-running, checkpointed STREAMING job over the log.

`ContinuousForwarder` is the sink. Its `send` hands nothing to Flink itself: `harvest.send`
appends the runs to the log (`harvester.sinks.log`), and the job, which a supervisor thread
keeps running, consumes them and acknowledges them in the log at its checkpoints. The job is
started once (resumed from its latest retained checkpoint), watched through Flink's REST API,
and resumed again after a crash of the job, the worker or its JVM; `close` cancels it keeping
its last checkpoint. On a remote cluster the job belongs to the cluster: it is found again by
name, never submitted twice, and left running at `close`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flink_jobs import checkpoints, failures, rest
from flink_jobs.cluster import LocalCluster, start_cluster
from flink_jobs.data_lock import DataDirLock
from flink_jobs.protocol import (
    StreamStarted,
    fingerprint,
    job_name,
    job_name_prefix,
    stream_spec,
)
from flink_jobs.statements import StatementCheck, check_in
from flink_jobs.worker_process import START_TIMEOUT, WorkerProcess
from harvester.errors import ConfigError, FlinkError, HarvesterError, PipelineChangedError
from harvester.sinks import ChangeSink
from harvester.sinks.log import ChangeLog

if TYPE_CHECKING:
    from flink_jobs.failures import UserSink
    from harvester.config import Settings
    from harvester.spool import SpoolFile

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MAX_BACKOFF = 5.0  # a cluster that is back is found within this; a probe costs nothing


class ContinuousForwarder(ChangeSink):
    """The continuous pipeline's sink: keeps the job running for as long as it is open."""

    def __init__(self, settings: Settings, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.settings = settings
        flink = settings.flink
        # Settings fill the folders in from state.dir when the config leaves them unset.
        assert flink.log_dir is not None and flink.checkpoint_dir is not None
        self.checkpoint_dir = flink.checkpoint_dir
        self.log = ChangeLog(flink.log_dir)
        self.changelog = self.log
        self.description = f"Flink (continuous, {flink.mode}), through the log {flink.log_dir}"
        self.poll_seconds = poll_seconds
        self.dashboard_url: str | None = None
        self.job_id: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: WorkerProcess | None = None
        self._cluster: LocalCluster | None = None
        self._target: str | None = None
        self._rest: str | None = None
        self._sinks: tuple[UserSink, ...] = ()
        # A job still starting is no problem: the lag (flink.max_lag) covers one that never does.
        self._problem: str | None = None
        # Our job writes the default sinks: no other harvester may write (or clean) them.
        self._data_lock = DataDirLock(settings.state.data_dir, settings.state.dir)
        self._check: StatementCheck | None = None
        self._checkpoints = 0
        self._last_checkpoint: tuple[str, int] | None = None
        self._marker_lock = threading.Lock()

    # ---- the sink ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Refuse checkpoints of other SQL; have Flink plan `flink.statements` in the worker
        that then runs the job, in the background: the JVM starts while the first reads run,
        and `send` raises `ConfigError` naming each broken statement."""
        self._data_lock.acquire()
        checkpoints.check_fingerprint(self.checkpoint_dir, fingerprint(self.settings))
        if self.settings.flink.statements and self._check is None:
            self._check = StatementCheck(self._run_check)
            self._check.start()

    def _run_check(self) -> None:
        with self._lock:
            check_in(self._live_worker(), self.settings)

    def checked(self) -> None:
        """Wait for the check of `flink.statements` (if one runs); raise what it found."""
        if self._check is not None:
            self._check.result()

    def start(self) -> None:
        """Start the supervisor, which starts (or finds) the job; returns at once."""
        self._data_lock.acquire()
        self.log.prepare()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._supervise, name="flink-continuous", daemon=True
            )
            self._thread.start()

    def send(self, spools: Sequence[SpoolFile]) -> None:
        # A pipeline whose SQL Flink rejected takes no runs. One that could not be checked yet
        # (a remote cluster down) takes them: `harvest.send` appends them to the log, where the
        # job finds them once the supervisor has checked the SQL and started it.
        try:
            self.checked()
        except ConfigError:
            raise
        except HarvesterError as exc:
            self._problem = f"flink.statements could not be checked yet: {exc}"
        self.start()

    def problem(self) -> str | None:
        return self._problem

    def committed_marker(self) -> int:
        """How many distinct completed checkpoints this sink has seen, asking Flink now.

        The job's file sinks roll their part files each on its own timer, so a run's ack can be
        committed one checkpoint before its rows. An ack read from the log was committed by a
        checkpoint that had completed before this call; the next distinct checkpoint seen
        after it is a later one, which commits the rows read before the ack in every sink that
        rolls within a checkpoint interval.
        """
        job_id, address = self.job_id, self._rest
        if job_id is None or address is None:
            return self._checkpoints
        try:
            checkpoint = rest.last_checkpoint(address, job_id)
        except FlinkError:
            return self._checkpoints
        with self._marker_lock:
            if checkpoint is not None and (job_id, checkpoint.number) != self._last_checkpoint:
                self._last_checkpoint = (job_id, checkpoint.number)
                self._checkpoints += 1
            return self._checkpoints

    def flush(self, timeout: float) -> None:
        """Wait until a checkpoint triggered two intervals from now has completed: by then
        every file sink whose rollover and check intervals are at most the checkpoint interval
        (docs/flink.md asks that of users' sinks) has rolled and committed what the job has
        consumed so far."""
        job_id, address = self.job_id, self._rest
        if job_id is None or address is None:
            return
        interval = self.settings.flink.checkpoint_interval.total_seconds()
        wanted = (time.time() + 2 * interval) * 1000
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                checkpoint = rest.last_checkpoint(address, job_id)
            except FlinkError as exc:
                logger.warning("waiting for a checkpoint of the continuous job: %s", exc)
                return
            if checkpoint is not None and checkpoint.triggered_ms >= wanted:
                return
            time.sleep(0.2)
        logger.warning("no checkpoint completed within %.0f s: the sinks may lag", timeout)

    def close(self) -> None:
        """Stop watching; cancel the job (its last checkpoint stays) unless a remote cluster
        owns it; stop the worker and a cluster started here."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)
            self._thread = None
        with self._lock:
            if self.job_id and self._rest and self.settings.flink.mode != "remote":
                self._cancel(self._rest, self.job_id)
            self.job_id = None
            if self._worker is not None:
                self._worker.close()
                self._worker = None
            if self._cluster is not None:
                self._cluster.stop()
                self._cluster = None
            self._target = None
        self._data_lock.release()

    # ---- the supervisor ---------------------------------------------------------------------

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self.checked()
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._ensure_job()
                backoff = 1.0
                self._watch()
            except (ConfigError, PipelineChangedError) as exc:
                # Only a new config mends these: the daemon's reload starts a new sink.
                self._problem = str(exc)
                logger.error("%s", exc)
                return
            except HarvesterError as exc:
                self._problem = str(exc)
                logger.warning("the continuous Flink job: %s; retrying in %.0f s", exc, backoff)
            except Exception as exc:
                self._problem = f"the continuous Flink job: {type(exc).__name__}: {exc}"
                logger.exception("the continuous Flink job's supervisor failed")
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _connect(self) -> str:
        """Where the job runs: `embedded`, or a cluster (started here in local-cluster mode)."""
        if self._target is None:
            self._target, self._cluster = start_cluster(self.settings)
            if self._target != "embedded":
                self.dashboard_url = f"http://{self._target}/"
        return self._target

    def _live_worker(self) -> WorkerProcess:
        target = self._connect()
        if self._worker is None or not self._worker.alive():
            self._worker = WorkerProcess(
                settings=self.settings, target=target, warm_up=False, name="continuous"
            )
        return self._worker

    def _ensure_job(self) -> None:
        """Find the running job on a cluster, or submit it resuming its latest checkpoint."""
        target = self._connect()
        if target != "embedded":
            running = self._running_on_cluster(target)
            if running is not None:
                self.job_id, self._rest = running, target
                logger.info("the continuous Flink job %s runs on %s", running, target)
                return
        checkpoints.check_fingerprint(self.checkpoint_dir, fingerprint(self.settings))
        latest = checkpoints.latest(self.checkpoint_dir)
        restore = latest.as_uri() if latest else None
        worker = self._live_worker()
        started: StreamStarted = worker.request(
            ("stream", stream_spec(self.settings, restore)), START_TIMEOUT
        )
        self.job_id, self._rest, self._sinks = started.job_id, started.rest_address, started.sinks
        if target == "embedded":
            self.dashboard_url = f"http://{started.rest_address}/"
        resumed = f"resumed from {latest}" if latest else "with no checkpoint: from the log's start"
        logger.info("the continuous Flink job %s started, %s", started.job_id, resumed)

    def _running_on_cluster(self, address: str) -> str | None:
        """The id of our job if the cluster runs it; another pipeline's SQL on our log is an
        error (its checkpoints are not ours to resume)."""
        name = job_name(self.settings)
        ours = job_name_prefix(self.settings)
        for job in rest.jobs(address):
            if job.state not in rest.ALIVE:
                continue
            if job.name == name:
                return job.job_id
            if job.name.startswith(ours):
                raise PipelineChangedError(
                    f"the Flink cluster at {address} runs the continuous job {job.job_id} on "
                    "this log with other flink.statements: cancel it there, or run "
                    "`harvester flink reset`"
                )
        return None

    def _watch(self) -> None:
        """Follow the job until it ends or its worker dies; keeps `problem` up to date."""
        removed_older = False
        while not self._stop.wait(self.poll_seconds):
            job_id, address, worker = self.job_id, self._rest, self._worker
            if job_id is None or address is None:
                return
            if self._target == "embedded" and (worker is None or not worker.alive()):
                self._problem = "the Flink worker died; resuming the job from its last checkpoint"
                logger.warning("%s", self._problem)
                return
            state = rest.job_state(address, job_id)
            failure = rest.last_exception(address, job_id)
            checkpoint = rest.last_checkpoint(address, job_id)
            checkpointed = checkpoint.completed_ms if checkpoint else None
            if state not in rest.ALIVE:
                self._problem = self._describe(f"the continuous Flink job is {state}", failure)
                logger.warning("%s; resubmitting it", self._problem)
                self.job_id = None
                return
            if failure is not None and (checkpointed is None or failure[0] > checkpointed):
                self._problem = self._describe("the continuous Flink job is failing", failure)
            elif state == "RUNNING":
                self._problem = None
            if checkpointed is not None and not removed_older:
                checkpoints.remove_older(self.checkpoint_dir, job_id)
                removed_older = True

    def _describe(self, what: str, failure: tuple[int, str] | None) -> str:
        """`what`, with Flink's line for the failure and the statement it names, if any."""
        if failure is None:
            return what
        trace = failure[1]
        root = failures.root_line(failures.chain(trace)) or trace.strip().splitlines()[0]
        problem = None
        if (worker := self._worker) is not None:
            found = failures.stream_places(
                worker.tmp_dir,
                worker.log_dir,
                self.checkpoint_dir,
                self.settings.state.data_dir,
                self._sinks,
            )
            problem = failures.disk_problem([trace], found)
        if problem is not None and problem.place is not None and problem.place.sink is not None:
            culprits = [problem.place.sink.label]
        else:
            culprits = [sink.label for sink in failures.named_sinks([trace], self._sinks)]
        return failures.message(what, root, problem=problem and problem.text, culprits=culprits)

    def _cancel(self, address: str, job_id: str) -> None:
        try:
            if rest.cancel_and_wait(address, [job_id]):
                logger.warning(
                    "the continuous Flink job %s did not stop within %.0f s",
                    job_id,
                    rest.CANCEL_TIMEOUT,
                )
        except FlinkError as exc:
            logger.warning("cancelling the continuous Flink job %s: %s", job_id, exc)
