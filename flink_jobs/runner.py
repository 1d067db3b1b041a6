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

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harvester.errors import ConfigError, FlinkError, FlinkJobError

if TYPE_CHECKING:
    # Only for types: the worker imports this module and has no use for pydantic.
    from harvester.settings import FlinkSettings, Settings

logger = logging.getLogger(__name__)

# JVM resident size above which the worker is replaced after its job: from_collection jobs grow
# the heap (~25-30x the rows' JSON) and the JVM does not give it back.
MAX_JVM_RSS = 3 << 30
JOB_TIMEOUT = 3600.0
START_TIMEOUT = 180.0
_LOG4J = """\
rootLogger.level = ${env:ROOT_LOG_LEVEL:-WARN}
rootLogger.appenderRef.file.ref = RollingFile
appender.rolling.name = RollingFile
appender.rolling.type = RollingFile
appender.rolling.append = true
appender.rolling.fileName = ${sys:log.file}
appender.rolling.filePattern = ${sys:log.file}.%i
appender.rolling.layout.type = PatternLayout
appender.rolling.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
appender.rolling.policies.type = Policies
appender.rolling.policies.size.type = SizeBasedTriggeringPolicy
appender.rolling.policies.size.size = 10MB
appender.rolling.strategy.type = DefaultRolloverStrategy
appender.rolling.strategy.max = 3
"""
_WORKER_LOG_LIMIT = 10 << 20


@dataclass(frozen=True)
class SpoolSlice:
    """Lines `[start, stop)` of one run's spool (`stop` None: to the end)."""

    run_id: str
    target: str
    path: Path
    start: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class JobSpec:
    """Everything the worker needs to build one job (pickled over the pipe)."""

    name: str
    slices: tuple[SpoolSlice, ...]
    rows: int
    runtime: str
    source: str
    parallelism: int
    statements: tuple[str, ...]
    data_dir: Path
    jars: tuple[Path, ...]


@dataclass(frozen=True)
class JobResult:
    """A finished job."""

    job_id: str
    run_ids: tuple[str, ...]
    rows: int
    seconds: float
    build_seconds: float  # environment, tables, statement set (Python + planner calls)
    submit_seconds: float  # optimizing, job graph, submission to the cluster


@dataclass(frozen=True)
class WorkerStats:
    """Resident memory of the worker's Python and JVM processes, JVM threads, temp files."""

    python_rss: int
    jvm_rss: int
    jvm_threads: int
    temp_files: int
    jobs: int


def source_of(flink: FlinkSettings) -> str:
    """The source the jobs use: `auto` is the file source wherever the cluster reads our disk
    (embedded, local-cluster) and the collection source for a remote cluster.

    The file source was faster at every size measured (bench/flink_bench.py: 10k rows 1.8 s
    against 2.3 s, 100k 3.1 s against 6.8 s, 1M 18 s against 135 s) with the same fixed cost and
    a fraction of the JVM heap; the collection source ships the rows inside the job, which is
    what a cluster without our file system needs.
    """
    if flink.source != "auto":
        return flink.source
    return "collection" if flink.mode == "remote" else "file"


def job_spec(settings: Settings, slices: Sequence[SpoolSlice], rows: int) -> JobSpec:
    """The job that sends `slices` (`rows` changelog rows) with the configured pipeline."""
    flink = settings.flink
    run_ids = tuple(dict.fromkeys(part.run_id for part in slices))
    more = f" +{len(run_ids) - 3}" if len(run_ids) > 3 else ""
    name = "harvest " + ", ".join(run_ids[:3]) + more
    return JobSpec(
        name=name,
        slices=tuple(slices),
        rows=rows,
        runtime=flink.runtime,
        source=source_of(flink),
        parallelism=flink.parallelism,
        statements=tuple(statement.sql for statement in flink.statements),
        data_dir=settings.state.data_dir,
        jars=tuple(flink.jars),
    )


def validate_statements(settings: Settings) -> None:
    """Raise `ConfigError` with a line per broken `flink.statements` entry, e.g.
    `harvester.toml: flink.statements[2]: SqlParseException: …`.

    Each statement is parsed and planned by Flink against `change_log` (and `changes` in
    streaming runtime) in a short-lived worker; nothing runs.
    """
    if not settings.flink.statements:
        return
    worker = _Worker(settings, target="none", warm_up=False, name="check")
    try:
        _check_statements(worker, settings)
    finally:
        worker.close()


def _check_statements(worker: _Worker, settings: Settings) -> None:
    problems = worker.request(("check", job_spec(settings, (), 0)), START_TIMEOUT)
    if problems:
        source = settings.config_path or "config"
        raise ConfigError([f"{source}: {problem}" for problem in problems])


class FlinkRunner:
    """Runs jobs in the configured mode; `run` blocks until the job finished.

    Thread-safe: calls are serialized. `close` stops the worker and a cluster started here.
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
        self._worker: _Worker | None = None
        # A worker past its quota, still taking jobs while its replacement (`_worker`) starts.
        self._outgoing: _Worker | None = None
        self._retiring: list[threading.Thread] = []
        self._cluster: Any = None
        self._target = "embedded"
        self._started = False

    def __enter__(self) -> FlinkRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the cluster (local-cluster), check the remote one, warm up a worker."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._started:
            self._check_reachable()
            return
        flink = self.settings.flink
        if flink.mode == "local-cluster":
            from flink_jobs.cluster import LocalCluster

            self._cluster = LocalCluster(
                self.settings.state.dir / "flink-cluster",
                address=flink.address or "localhost:8081",
                slots=max(flink.parallelism, 2),
            )
            self._cluster.start()
            self._target = self._cluster.address
        elif flink.mode == "remote":
            if not flink.address:
                raise FlinkError('flink.address is required when flink.mode = "remote"')
            self._target = flink.address
            self._check_reachable()
        if self._target != "embedded":
            self.dashboard_url = f"http://{self._target}/"
            logger.info("Flink dashboard: %s", self.dashboard_url)
        self._started = True
        self._worker = _Worker(self.settings, target=self._target, warm_up=True)

    def _check_reachable(self) -> None:
        if self._target == "embedded":
            return
        try:
            with urllib.request.urlopen(f"http://{self._target}/overview", timeout=5) as reply:
                reply.read()
        except (OSError, urllib.error.URLError) as exc:
            raise FlinkError(
                f"the Flink cluster at {self._target} is unreachable ({exc}); "
                "check flink.address and that the cluster runs"
            ) from exc

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
                _check_statements(worker, self.settings)
            finally:
                if worker.dead:
                    self._worker = None

    def worker_stats(self) -> WorkerStats | None:
        """The current worker's memory, threads and temp files (None without a worker).

        Takes no lock, so it can sample a worker in the middle of a job.
        """
        worker = self._worker
        return worker.stats() if worker is not None and worker.alive() else None

    def _live_worker(self) -> _Worker:
        if self._worker is None or not self._worker.alive():
            self._worker = _Worker(self.settings, target=self._target, warm_up=False)
        return self._worker

    def _job_worker(self) -> _Worker:
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

    def _recycle_if_due(self, worker: _Worker) -> None:
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
        self._worker = _Worker(self.settings, target=self._target, warm_up=True)

    def _retire(self, worker: _Worker) -> None:
        retiring = threading.Thread(target=worker.close, name="flink-worker-retire", daemon=True)
        retiring.start()
        self._retiring.append(retiring)

    def close(self) -> None:
        """Stop the worker and, in local-cluster mode, the cluster."""
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


def _read_proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _rss(status: dict[str, str]) -> int:
    return int(status.get("VmRSS", "0 kB").split()[0]) * 1024


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(
        self, settings: Settings, *, target: str, warm_up: bool, name: str = "worker"
    ) -> None:
        state_dir = settings.state.dir
        flink = settings.flink
        self.log_dir = state_dir / "flink-logs"
        tmp_root = state_dir / "flink-tmp"
        # The state folder too: `parents=True` would make it with the umask's mode.
        for folder in (state_dir, self.log_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.jobs = 0
        self.dead = False
        self.jvm_pid: int | None = None
        properties = self.log_dir / "log4j-worker.properties"
        if not properties.exists() or properties.read_text() != _LOG4J:
            fd = os.open(properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(_LOG4J)
        self.out_path = self.log_dir / f"{name}.out"
        if self.out_path.exists() and self.out_path.stat().st_size > _WORKER_LOG_LIMIT:
            self.out_path.replace(self.out_path.with_suffix(".out.1"))
        env = dict(os.environ)
        env.pop("PYFLINK_GATEWAY_PORT", None)
        env.update(
            FLINK_LOG_DIR=str(self.log_dir),
            FLINK_IDENT_STRING=f"harvester-{name}",
            ROOT_LOG_LEVEL="WARN",
            LOG4J_PROPERTIES=str(properties),
            PYTHONUNBUFFERED="1",
        )
        self._conn, child = multiprocessing.Pipe()
        command = [
            sys.executable,
            "-m",
            "flink_jobs.worker",
            f"--conn-fd={child.fileno()}",
            f"--tmp-root={tmp_root}",
            f"--target={target}",
            f"--slots={max(flink.parallelism, 1)}",
            f"--warm-up={flink.runtime}/{source_of(flink)}" if warm_up else "--warm-up=none",
        ]
        out_fd = os.open(self.out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(out_fd, "ab") as out:
            # The JVM inherits these: its output lands in the log file and never blocks on a
            # pipe nobody reads.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(child.fileno(),),
                env=env,
                start_new_session=True,
                # Flink (the worker and its JVM) creates the sinks' files in data_dir, its logs
                # and temp files with the umask: harvested data stays private to our user.
                umask=0o077,
            )
        child.close()
        # The worker's own folder: it wipes it at start and leaves its siblings to other workers.
        self.tmp_dir = tmp_root / str(self._process.pid)
        self._ready = False

    def alive(self) -> bool:
        """False once the worker failed, was closed, or exited on its own."""
        if not self.dead and self._process.poll() is not None:
            self._fail_dead()
        return not self.dead

    def _wait_ready(self) -> None:
        if self._ready:
            return
        reply = self._receive(START_TIMEOUT, what="start")
        if reply[0] != "ready":
            self._fail_dead()
            raise FlinkError(f"the Flink worker could not start: {reply[1]}")
        self.jvm_pid = reply[1]
        self._ready = True

    def started(self) -> bool:
        """True once the worker has said it is ready (after its warm-up); never blocks."""
        if not self._ready and not self.dead and self._conn.poll(0):
            with contextlib.suppress(FlinkError):  # a failed start leaves it dead
                self._wait_ready()
        return self._ready

    def request(self, message: tuple[Any, ...], timeout: float) -> Any:
        """Send one request and return the worker's answer, raising its failure."""
        self._wait_ready()
        try:
            self._conn.send(message)
        except OSError as exc:
            self._fail_dead()
            raise FlinkJobError("the Flink worker is gone", root_cause=self._log_tail()) from exc
        reply = self._receive(timeout, what=message[0])
        if message[0] == "run":
            self.jobs += 1
        if reply[0] == "ok":
            return reply[1]
        raise FlinkJobError(reply[1], root_cause=reply[2])

    def _receive(self, timeout: float, *, what: str) -> tuple[Any, ...]:
        try:
            if not self._conn.poll(timeout):
                self._fail_dead()
                raise FlinkJobError(
                    f"the Flink worker did not finish its {what} within {timeout:.0f} s",
                    root_cause=f"timed out after {timeout:.0f} s ({what})",
                )
            reply: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._fail_dead()
            raise FlinkJobError(
                f"the Flink worker died during its {what}", root_cause=self._log_tail()
            ) from exc
        return reply

    def _fail_dead(self) -> None:
        self.dead = True
        self._kill()

    def _log_tail(self) -> str:
        """The last line of the worker's output: usually the JVM's fatal error."""
        try:
            with self.out_path.open("rb") as out:
                out.seek(max(out.seek(0, os.SEEK_END) - 8192, 0))
                lines = [line.strip() for line in out.read().decode(errors="replace").splitlines()]
        except OSError:
            return "the Flink worker process ended"
        return next((line for line in reversed(lines) if line), "the Flink worker process ended")

    def stats(self) -> WorkerStats:
        python = _read_proc_status(self._process.pid)
        jvm = _read_proc_status(self.jvm_pid) if self.jvm_pid else {}
        temp_files = sum(len(files) for _, _, files in os.walk(self.tmp_dir))
        return WorkerStats(
            python_rss=_rss(python),
            jvm_rss=_rss(jvm),
            jvm_threads=int(jvm.get("Threads", "0")),
            temp_files=temp_files,
            jobs=self.jobs,
        )

    def close(self, timeout: float = 30.0) -> None:
        """Ask the worker to stop (it stops its MiniCluster and JVM), kill it if it hangs."""
        if not self.dead:
            self.dead = True
            self._conn.close()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def _kill(self) -> None:
        # The worker leads its own process group, which holds its JVM: kill both.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._conn.close()
