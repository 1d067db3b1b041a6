"""The harvester's handle on one Flink worker process (`python -m flink_jobs.worker`).

Starts the worker with its logs and temp files under the state folder, waits until it is
ready, sends it requests of the job protocol (`flink_jobs.protocol`), reads its memory from
/proc, and stops it, killing its process group (the worker and its JVM) when it hangs or fails.
A worker dies with the harvester, even one killed with SIGKILL: while it starts the kernel kills
it (`PR_SET_PDEATHSIG`, Linux), then its watchdog kills its process group, the JVM included
(`flink_jobs.worker`).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flink_jobs import failures
from flink_jobs.protocol import JobSpec, WorkerStats, source_of
from harvester.errors import FlinkError, FlinkJobError

if TYPE_CHECKING:
    from harvester.config import Settings

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
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up here, not in a forked child, where loading a library could deadlock.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None
# PR_SET_PDEATHSIG signals the child when the *thread* that forked it ends, not the process: the
# runner starts workers from whichever thread asks (asyncio.to_thread's pool, a caller's own
# thread), and the end of such a thread would kill a worker in use. So this one thread forks
# every worker; it lives as long as the process, so the signal comes when the harvester dies.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flink-worker-spawner")


def _read_proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    return next((line for line in reversed(lines) if line), "the Flink worker process ended")


def _rss(status: dict[str, str]) -> int:
    return int(status.get("VmRSS", "0 kB").split()[0]) * 1024


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send `signum` (0: none) to this process when the thread that forked it
    ends (Linux only)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signum)


def _die_with_us() -> Callable[[], None]:
    """The worker's `preexec_fn`: the kernel SIGKILLs it when its forking thread, `_SPAWNER`'s,
    ends, so even a SIGKILLed harvester takes a starting worker along. The worker's watchdog
    takes over once it runs (`flink_jobs.worker`), since this signal would leave its JVM."""
    parent = os.getpid()

    def preexec() -> None:
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:  # the harvester died before that: no signal will come
            os._exit(1)

    return preexec


class WorkerProcess:
    """One worker process and the pipe to it."""

    def __init__(
        self, *, settings: Settings, target: str, warm_up: bool, name: str = "worker"
    ) -> None:
        state_dir = settings.state.dir
        flink = settings.flink
        self.log_dir = state_dir / "flink-logs"
        tmp_root = state_dir / "flink-tmp"
        self.jobs = 0
        self.dead = False
        self.jvm_pid: int | None = None
        self.out_path = self.log_dir / f"{name}.out"
        try:
            properties = self._prepare_logs(state_dir)
        except OSError as exc:
            places = [failures.state_place(state_dir), failures.log_place(self.log_dir)]
            problem = failures.disk_problem([str(exc)], places)
            cause = problem.text if problem else f"cannot use {exc.filename}: {exc.strerror}"
            raise FlinkError(f"the Flink worker could not start: {cause}") from exc
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
        with self.out_path.open("ab") as out:
            # The JVM inherits these: its output lands in the log file and never blocks on a
            # pipe nobody reads.
            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    pass_fds=(child.fileno(),),
                    env=env,
                    start_new_session=True,
                    # Flink (the worker and its JVM) creates the sinks' files in data_dir, its
                    # logs and temp files with the umask: harvested data stays private to our user.
                    umask=0o077,
                    preexec_fn=_die_with_us(),
                )

            self._process = _SPAWNER.submit(spawn).result()
        child.close()
        # The worker's own folder: it wipes it at start and leaves its siblings to other workers.
        self.tmp_dir = tmp_root / str(self._process.pid)
        self._ready = False

    def _prepare_logs(self, state_dir: Path) -> Path:
        """The state and log folders, the log4j config and worker.out (rolled when big)."""
        # The state folder too: `parents=True` would make it with the umask's mode.
        for folder in (state_dir, self.log_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        properties = self.log_dir / "log4j-worker.properties"
        if not properties.exists() or properties.read_text() != _LOG4J:
            fd = os.open(properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(_LOG4J)
        if self.out_path.exists() and self.out_path.stat().st_size > _WORKER_LOG_LIMIT:
            self.out_path.replace(self.out_path.with_suffix(".out.1"))
        os.close(os.open(self.out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        return properties

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
            raise FlinkError(str(reply[1]))
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
            raise FlinkJobError(
                "the Flink worker is gone", root_cause=_last_line(self._out_tail())
            ) from exc
        reply = self._receive(timeout, what=message[0], spec=message[1])
        if message[0] == "run":
            self.jobs += 1
        if reply[0] == "ok":
            return reply[1]
        if reply[3]:
            self._fail_dead()
        raise FlinkJobError(reply[1], root_cause=reply[2])

    def _receive(
        self, timeout: float, *, what: str, spec: JobSpec | None = None
    ) -> tuple[Any, ...]:
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
            tail = self._out_tail()
            # A worker that could not write its output or temp files may die of it.
            places = failures.places(self.tmp_dir, self.log_dir, spec)
            problem = failures.disk_problem([tail], places)
            died = f"the Flink worker died during its {what}"
            raise FlinkJobError(
                f"{died}: {problem.text}" if problem else died, root_cause=_last_line(tail)
            ) from exc
        return reply

    def _fail_dead(self) -> None:
        self.dead = True
        self._kill()

    def _out_tail(self) -> str:
        """The end of the worker's output: usually the JVM's or the worker's fatal error."""
        try:
            with self.out_path.open("rb") as out:
                out.seek(max(out.seek(0, os.SEEK_END) - 8192, 0))
                return out.read().decode(errors="replace")
        except OSError:
            return ""

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
        """Ask the worker to stop (it stops its MiniCluster and JVM), kill it if it hangs; one
        still warming up ran nothing yet and reads no request until it is warm: kill it now."""
        if not self.dead and not self.started():
            self._fail_dead()
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
