"""Running Flink jobs from a pure-Python process: the three modes behind `FlinkRunner`.

Every mode plans and submits jobs from a child worker process (`python -m flink_jobs.worker`)
that owns the PyFlink gateway (the JVM), so the daemon never loads a JVM and the JVM's per-job
leaks (Metaspace, threads, temp files) end with the worker, which is replaced every
`flink.jobs_per_worker` jobs or when its JVM grows past a bound. Where the jobs run:

- `embedded`: a MiniCluster the worker keeps for its whole life (starting one per job cost
  about 1 s of every job);
- `local-cluster`: PyFlink's bundled standalone cluster (`flink_jobs.cluster`), started here;
- `remote`: the cluster at `flink.address`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flink_jobs.cluster import check_reachable, start_cluster
from flink_jobs.data_lock import DataDirLock
from flink_jobs.protocol import JobResult, SpoolSlice, WorkerStats, job_spec
from flink_jobs.statements import check_in
from flink_jobs.worker_process import WorkerProcess

if TYPE_CHECKING:
    from flink_jobs.cluster import LocalCluster
    from harvester.config import Settings

logger = logging.getLogger(__name__)

# JVM resident size above which the worker is replaced after its job: from_collection jobs grow
# the heap (~25-30x the rows' JSON) and the JVM does not give it back.
MAX_JVM_RSS = 3 << 30
JOB_TIMEOUT = 3600.0


class FlinkRunner:
    """Runs jobs in the configured mode; `run` blocks until the job finished.

    Thread-safe: calls are serialized. From the start to `close` it holds `state.data_dir`'s
    `DataDirLock`; `close` stops the worker and a cluster started here.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        job_timeout: float = JOB_TIMEOUT,
        max_jvm_rss: int = MAX_JVM_RSS,
    ) -> None:
        self.settings = settings
        self.job_timeout = job_timeout
        self.max_jvm_rss = max_jvm_rss
        self.dashboard_url: str | None = None
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None
        # A worker past its quota, still taking jobs while its replacement (`_worker`) starts.
        self._outgoing: WorkerProcess | None = None
        self._retiring: list[threading.Thread] = []
        self._cluster: LocalCluster | None = None
        self._data_lock = DataDirLock(settings.state.data_dir, settings.state.dir)
        self._target = "embedded"
        self._started = False

    def __enter__(self) -> FlinkRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Lock data_dir, start the cluster (local-cluster), check the remote one, warm up a
        worker."""
        with self._lock:
            self._start()

    def lock_data(self) -> None:
        """Take data_dir's lock now (`start` does too)."""
        self._data_lock.acquire()

    def _start(self) -> None:
        if self._started:
            self._check_reachable()
            return
        # Before anything that writes there: a second harvester fails here, with no JVM started.
        self._data_lock.acquire()
        self._target, self._cluster = start_cluster(self.settings)
        if self._target != "embedded":
            self.dashboard_url = f"http://{self._target}/"
            logger.info("Flink dashboard: %s", self.dashboard_url)
        self._started = True
        self._worker = WorkerProcess(settings=self.settings, target=self._target, warm_up=True)

    def _check_reachable(self) -> None:
        if self._target != "embedded":
            check_reachable(self._target)

    def run(self, slices: Sequence[SpoolSlice], rows: int) -> JobResult:
        """Run one job over `slices`; raises `FlinkJobError` with Flink's root cause."""
        spec = job_spec(self.settings, slices, rows)
        with self._lock:
            self._start()
            worker = self._job_worker()
            try:
                result: JobResult = worker.request(("run", spec), self.job_timeout)
            finally:
                if worker is self._outgoing:
                    if worker.dead:
                        self._outgoing = None
                elif worker.dead:
                    self._worker = None
                else:
                    self._recycle_if_due(worker)
            return result

    def validate(self) -> None:
        """`validate_statements` in this runner's worker (no extra JVM start)."""
        if not self.settings.flink.statements:
            return
        with self._lock:
            self._start()
            worker = self._live_worker()
            try:
                check_in(worker, self.settings)
            finally:
                if worker.dead:
                    self._worker = None

    def worker_stats(self) -> WorkerStats | None:
        """The current worker's memory, threads and temp files (None without a worker).

        Takes no lock, so it can sample a worker in the middle of a job.
        """
        worker = self._worker
        return worker.stats() if worker is not None and worker.alive() else None

    def _live_worker(self) -> WorkerProcess:
        if self._worker is None or not self._worker.alive():
            self._worker = WorkerProcess(settings=self.settings, target=self._target, warm_up=False)
        return self._worker

    def _job_worker(self) -> WorkerProcess:
        """The worker for the next job: the outgoing one until its replacement has started,
        so that no job waits for a JVM to start (about 8 s, a minute on a loaded machine)."""
        outgoing = self._outgoing
        if outgoing is not None:
            replacement = self._worker
            if (
                outgoing.alive()
                and outgoing.jobs < 2 * self.settings.flink.jobs_per_worker
                and replacement is not None
                and replacement.alive()
                and not replacement.started()
            ):
                return outgoing
            self._outgoing = None
            self._retire(outgoing)
        return self._live_worker()

    def _recycle_if_due(self, worker: WorkerProcess) -> None:
        """Replace the worker after its quota of jobs or when its JVM grew too big.

        The replacement starts and warms up in the background while the old worker takes the
        jobs that come meanwhile; then the old one stops in the background.
        """
        stats = worker.stats()
        if worker.jobs < self.settings.flink.jobs_per_worker and stats.jvm_rss < self.max_jvm_rss:
            return
        logger.debug(
            "replacing the Flink worker after %d jobs (JVM %d MB)", worker.jobs, stats.jvm_rss >> 20
        )
        self._outgoing = worker
        self._worker = WorkerProcess(settings=self.settings, target=self._target, warm_up=True)

    def _retire(self, worker: WorkerProcess) -> None:
        retiring = threading.Thread(target=worker.close, name="flink-worker-retire", daemon=True)
        retiring.start()
        self._retiring.append(retiring)

    def close(self) -> None:
        """Stop the worker and, in local-cluster mode, the cluster; then unlock data_dir."""
        with self._lock:
            for worker in (self._outgoing, self._worker):
                if worker is not None:
                    worker.close()
            self._outgoing = self._worker = None
            for thread in self._retiring:
                thread.join()
            self._retiring.clear()
            if self._cluster is not None:
                self._cluster.stop()
                self._cluster = None
            self._started = False
            # Last: until here a worker or the cluster could still write into data_dir.
            self._data_lock.release()
