"""`python -m flink_jobs.worker`: the child process that owns the PyFlink gateway and runs jobs.

Started by `flink_jobs.worker_process`, it speaks the job protocol (`flink_jobs.protocol`) over
an inherited pipe (`--conn-fd`): `("ready", jvm_pid)` once its JVM is up and warm, then one
answer per request until the pipe closes; then it stops its MiniCluster and exits, and its JVM
exits with it (the JVM's stdin is a pipe from this process).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
from py4j.protocol import Py4JError
from pyflink.common import Configuration
from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.pyflink_gateway_server import launch_gateway_server_process
from pyflink.table import StreamTableEnvironment
from pyflink.util.exceptions import JavaException

from flink_jobs import failures, pipeline, probes, streaming
from flink_jobs.failures import UserSink
from flink_jobs.protocol import JobResult, JobSpec, SpoolSlice, StreamSpec, StreamStarted
from flink_jobs.worker_process import set_parent_death_signal

logger = logging.getLogger("flink_jobs.worker")

CHECKPOINT_INTERVAL_MS = 500
_SAMPLE = [
    {
        "run_id": "warm-up",
        "target": "warm-up",
        "origin": "http://127.0.0.1",
        "db_name": "db",
        "db_version": 1,
        "store": "store",
        "key": str(index),
        "op": op,
        "value": None if op == "-D" else '{"n": 1}',
        "old_value": None if op == "+I" else '{"n": 0}',
        "value_hash": "0" * 64,
        "harvested_at": "2000-01-01T00:00:00.000Z",
    }
    for index, op in enumerate(("+I", "+U", "-D"))
]


def _drain(pipe: io.BufferedReader) -> None:
    """Copy the JVM's stderr pipe into our stderr (the log file) so the JVM never blocks on it."""
    for chunk in iter(lambda: pipe.read1(65536), b""):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()


def _exit_with(jvm: subprocess.Popen[bytes]) -> None:
    """End this worker when its JVM ends (crash, OOM kill): the runner then starts a new one
    instead of sending jobs to a worker without a gateway."""
    status = jvm.wait()
    print(f"the Flink JVM exited with status {status}", file=sys.stderr, flush=True)
    os._exit(3)


def _die_with_parent() -> None:
    """Kill this worker's process group (it and its JVM) within 0.1 s of its parent's end, even
    while the main thread waits in a py4j call for a whole job (it would see the closed pipe
    only after the job wrote its files).

    The kernel's parent-death SIGKILL (set by `WorkerProcess`) covered the start until here. It
    is turned off: it would kill this process alone, and an orphaned JVM lives on (0.4 s, or
    10 s while it starts). `getppid()` changes once the parent process is gone, whichever of its
    threads forked us; the worker leads its own process group.
    """
    # In this order: until `watch` can see a parent gone, the kernel's signal is still set.
    parent = os.getppid()
    set_parent_death_signal(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _launch_gateway(tmp_dir: Path) -> int:
    """Start PyFlink's gateway JVM with its stderr drained; returns the JVM's pid.

    PyFlink's own launcher pipes the JVM's stderr and never reads it, so a chatty job hangs
    once ~64 KB are written: this starts it the same way, reads the pipe, then points
    `get_gateway()` at it.
    """
    conn_info = tmp_dir / "gateway.port"
    env = dict(os.environ)
    env["_PYFLINK_CONN_INFO_PATH"] = str(conn_info)
    process = launch_gateway_server_process(
        env, ["-c", "org.apache.flink.client.python.PythonGatewayServer", "local"]
    )
    threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
    # The thread also keeps `process`, whose stdin pipe keeps the JVM alive, referenced.
    threading.Thread(target=_exit_with, args=(process,), daemon=True).start()
    while process.poll() is None and not conn_info.exists():
        time.sleep(0.05)
    if not conn_info.exists():
        raise RuntimeError(f"the Flink JVM exited with status {process.returncode} before starting")
    while len(port_bytes := conn_info.read_bytes()) < 4:
        time.sleep(0.01)
    (port,) = struct.unpack("!I", port_bytes[:4])
    conn_info.unlink()
    os.environ["PYFLINK_GATEWAY_PORT"] = str(port)
    pid: int = process.pid
    return pid


class JobFailure(Exception):
    """A job that failed once built; the Flink error is its `__cause__`."""

    def __init__(self, sinks: tuple[UserSink, ...], *, running: bool, seconds: float) -> None:
        super().__init__("Flink job failed")
        self.sinks = sinks
        self.running = running  # submitted, then failed at run time
        self.seconds = seconds  # from the start of the request to the failure


def explain(exc: BaseException, kind: str) -> tuple[str, str]:
    """Flink's line for a failure, and the whole trace to look for causes in."""
    if isinstance(exc, Py4JError | JavaException):
        line = pipeline.useful_line(exc)
        logger.warning("Flink %s failed: %s", kind, line)
        return line, pipeline.trace_text(exc)
    traceback.print_exc()
    line = f"{type(exc).__name__}: {exc}"
    return line, line


class FlinkLog:
    """The JVM's log4j file, to read what Flink logged while a request ran (it logs some causes,
    such as a full disk during a job's upload, only there)."""

    _LIMIT = 256 << 10

    def __init__(self) -> None:
        # Where and how PyFlink's launcher names the file (pyflink_gateway_server.py); without
        # FLINK_LOG_DIR (the harvester always sets it) the log is in PyFlink's own folder.
        folder = os.environ.get("FLINK_LOG_DIR")
        ident = os.environ.get("FLINK_IDENT_STRING") or getpass.getuser()
        name = f"flink-{ident}-python-{socket.gethostname()}.log"
        self.folder = Path(folder) if folder else None
        self.path = self.folder / name if self.folder else None

    def size(self) -> int:
        try:
            return self.path.stat().st_size if self.path else 0
        except OSError:
            return 0

    def since(self, offset: int) -> str:
        """What was logged after `offset` (all of it, once the file rolled), at most 256 KB."""
        if self.path is None:
            return ""
        try:
            with self.path.open("rb") as log:
                end = log.seek(0, os.SEEK_END)
                start = offset if offset <= end else 0
                log.seek(max(start, end - self._LIMIT))
                return log.read().decode(errors="replace")
        except OSError:
            return ""


class Session:
    """The gateway, the MiniCluster (embedded) and where jobs are submitted."""

    def __init__(self, target: str, tmp_dir: Path, slots: int) -> None:
        self.tmp_dir = tmp_dir
        self.py_tmp = tmp_dir / "py"
        self.flink_log = FlinkLog()
        self.prober = probes.Prober(self.environment)
        self.jvm_pid = _launch_gateway(tmp_dir)
        self.gateway = get_gateway()
        self._mini_cluster: Any = None
        self.host: str | None = None
        self.port = 0
        if target == "embedded":
            self._start_mini_cluster(slots)
        elif target != "none":
            host, _, port = target.rpartition(":")
            self.host, self.port = host, int(port)

    def _start_mini_cluster(self, slots: int) -> None:
        """One MiniCluster for the worker's life: jobs go to it through its REST port."""
        jvm = self.gateway.jvm
        config = jvm.org.apache.flink.configuration.Configuration()
        config.setString("rest.address", "127.0.0.1")
        config.setString("rest.bind-address", "127.0.0.1")
        config.setString("rest.bind-port", "0")
        config.setString("io.tmp.dirs", str(self.tmp_dir / "jvm"))
        builder = jvm.org.apache.flink.runtime.minicluster.MiniClusterConfiguration.Builder()
        cluster_config = (
            builder.setConfiguration(config)
            .setNumTaskManagers(1)
            .setNumSlotsPerTaskManager(slots)
            .build()
        )
        self._mini_cluster = jvm.org.apache.flink.runtime.minicluster.MiniCluster(cluster_config)
        self._mini_cluster.start()
        self.host = "127.0.0.1"
        self.port = self._mini_cluster.getRestAddress().get().getPort()

    def environment(
        self, spec: JobSpec | StreamSpec, config: Mapping[str, str] | None = None
    ) -> StreamExecutionEnvironment:
        """A StreamExecutionEnvironment submitting to our cluster (local, unused for checks),
        with `config` in the job's configuration."""
        jvm = self.gateway.jvm
        j_config = jvm.org.apache.flink.configuration.Configuration()
        for key, value in (config or {}).items():
            j_config.setString(key, value)
        if self.host is None:
            env = StreamExecutionEnvironment.get_execution_environment(
                Configuration(j_configuration=j_config)
            )
        else:
            # `execution.target: remote` alone silently stays local: the Java factory is what
            # submits to a cluster. Our jobs need no flink-python jar there; user jars travel
            # with every job.
            jars = self.gateway.new_array(jvm.String, len(spec.jars))
            for index, jar in enumerate(spec.jars):
                jars[index] = str(jar)
            j_env = jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
            env = StreamExecutionEnvironment(
                j_env.createRemoteEnvironment(self.host, self.port, j_config, jars)
            )
        env.set_parallelism(spec.parallelism)
        env.set_python_executable(sys.executable)
        if spec.runtime == "streaming":
            env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
            # File sinks commit only on checkpoints; the final one comes at the next interval
            # after the input ends, so a short interval ends the job soon after its data.
            interval = spec.interval_ms if isinstance(spec, StreamSpec) else CHECKPOINT_INTERVAL_MS
            env.enable_checkpointing(interval)
        else:
            env.set_runtime_mode(RuntimeExecutionMode.BATCH)
        return env

    def run(self, spec: JobSpec) -> JobResult:
        started = time.monotonic()
        env = self.environment(spec)
        t_env = pipeline.table_env(env, spec)
        job = pipeline.build(env, t_env, spec)
        built = time.monotonic()
        try:
            result = job.statement_set.execute()
        except (Py4JError, JavaException) as exc:
            raise JobFailure(job.sinks, running=False, seconds=0.0) from exc
        submitted = time.monotonic()
        job_id = str(result.get_job_client().get_job_id())
        try:
            result.wait()
        except (Py4JError, JavaException) as exc:
            raise JobFailure(job.sinks, running=True, seconds=time.monotonic() - started) from exc
        return JobResult(
            job_id=job_id,
            run_ids=tuple(dict.fromkeys(part.run_id for part in spec.slices)),
            rows=spec.rows,
            seconds=time.monotonic() - started,
            build_seconds=built - started,
            submit_seconds=submitted - built,
        )

    def check(self, spec: JobSpec) -> list[str]:
        env = self.environment(spec)
        t_env = pipeline.table_env(env, spec)
        empty = self.py_tmp / "empty.jsonl"
        empty.touch()
        pipeline.register_empty_change_log(t_env, empty, spec)
        return pipeline.check_statements(t_env, spec)

    def warm_up_spec(self, runtime: str, source: str) -> JobSpec:
        """A tiny job through the same code, into a throw-away folder, so the first real job
        finds the planner loaded and compiled (the first job in a JVM costs ~8 s otherwise)."""
        sample = self.py_tmp / "warm-up.jsonl"
        sample.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in _SAMPLE))
        spec = JobSpec(
            name="warm-up",
            slices=(SpoolSlice(run_id="warm-up", target="warm-up", path=sample),),
            rows=len(_SAMPLE),
            runtime=runtime,
            source=source,
            parallelism=1,
            statements=(),
            data_dir=self.py_tmp / "warm-up-data",
            jars=(),
        )
        return spec

    def warm_up(self, spec: JobSpec) -> None:
        """Run the warm-up job on our MiniCluster; on a cluster only plan it, since a job there
        would show on its dashboard (and a remote one would write on another host)."""
        if self._mini_cluster is not None:
            self.run(spec)
            return
        env = self.environment(spec)
        t_env = pipeline.table_env(env, spec)
        pipeline.build_job(env, t_env, spec).explain()

    def handle_stream(self, kind: str, spec: StreamSpec, log_start: int) -> tuple[Any, ...]:
        """Submit the continuous job (answering at once) or check its statements; a failure
        names a full or unwritable folder as `failed` does."""
        config = streaming.job_config(spec)
        try:
            t_env = StreamTableEnvironment.create(self.environment(spec, config))
            streaming.apply_config(t_env, config)
            if kind == "check-stream":
                return ("ok", streaming.check(t_env, spec))
            job = streaming.build(t_env, spec)
            job_id = str(job.statement_set.execute().get_job_client().get_job_id())
            return ("ok", StreamStarted(job_id, f"{self.host}:{self.port}", job.sinks))
        except Exception as exc:
            root, trace = explain(exc, kind)
            places = failures.places(self.tmp_dir, self.flink_log.folder, None)
            problem = failures.disk_problem([trace, self.flink_log.since(log_start)], places)
            text = failures.message(
                "the continuous Flink job failed", root, problem=problem.text if problem else None
            )
            # As in `failed`: a JVM that could not write its temp files is replaced.
            broken = problem is not None and problem.place in (None, places[0])
            return ("failed", text, root, broken)

    def handle(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        kind, spec = message
        log_start = self.flink_log.size()
        if kind in ("stream", "check-stream"):
            return self.handle_stream(kind, spec, log_start)
        try:
            if kind == "run":
                return ("ok", self.run(spec))
            if kind == "check":
                return ("ok", self.check(spec))
            if kind == "warm-up":
                self.warm_up(spec)
                return ("ok", None)
            return ("failed", f"unknown request {kind!r}", f"unknown request {kind!r}", False)
        except Exception as exc:
            reply = self.failed(kind, spec, exc, log_start)
        finally:
            self.clean()
        if kind == "run":
            pipeline.remove_staging(spec.data_dir)
        return reply

    def failed(
        self, kind: str, spec: JobSpec, exc: Exception, log_start: int
    ) -> tuple[str, str, str, bool]:
        """The reply for a failed request: what failed, where, Flink's line for it, and whether
        this worker should be replaced.

        A full disk or an unwritable folder is named from anywhere in the exception chain or
        Flink's log since the request came; a failure is put down to one of the user's
        statements when it names that statement's table or folder or, failing that, when a
        run-time failure happens again with that statement alone (`probes`).
        """
        sinks = exc.sinks if isinstance(exc, JobFailure) else ()
        cause = exc.__cause__ if isinstance(exc, JobFailure) and exc.__cause__ else exc
        root, trace = explain(cause, kind)
        links = failures.chain(trace)
        places = failures.places(self.tmp_dir, self.flink_log.folder, spec, sinks)
        problem = failures.disk_problem([trace, self.flink_log.since(log_start)], places)
        culprits: list[UserSink] = []
        if problem is not None:
            culprits = [problem.place.sink] if problem.place and problem.place.sink else []
        elif sinks:
            culprits = failures.named_sinks([trace], sinks)
            if not culprits and isinstance(exc, JobFailure) and exc.running:
                culprit = self.prober.culprit(spec, sinks, root, 2 * exc.seconds + 30)
                culprits = [culprit] if culprit else []
        text = failures.message(
            "the Flink worker could not start" if kind == "warm-up" else "Flink job failed",
            root,
            problem=problem.text if problem else None,
            culprits=[sink.label for sink in culprits],
        )
        # A JVM that could not write its temp files may have classes that failed to load for
        # good ("Could not initialize class …"): a new worker tries afresh.
        broken = problem is not None and (problem.place is None or problem.place == places[0])
        broken |= any(name.endswith("ExceptionInInitializerError") for name, _ in links)
        return ("failed", text, root, broken)

    def clean(self) -> None:
        """Remove what the last job left in our temp folder (PyFlink never deletes its files)."""
        for path in self.py_tmp.iterdir():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._mini_cluster is not None:
            with contextlib.suppress(Exception):
                self._mini_cluster.closeAsync().get()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flink_jobs.worker")
    parser.add_argument("--conn-fd", type=int, required=True)
    parser.add_argument("--tmp-root", type=Path, required=True)
    parser.add_argument("--target", required=True, help="embedded, none, or host:port")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--warm-up", default="none", help="none, or runtime/source")
    return parser.parse_args(argv)


def _prepare_tmp(tmp_root: Path) -> Path:
    """Our temp folder `<tmp_root>/<pid>`, wiped, with Python's and the JVM's temp files sent
    into it; folders of workers that no longer run are removed."""
    tmp_root.mkdir(parents=True, exist_ok=True)
    for folder in tmp_root.iterdir():
        if not folder.name.isdigit() or not Path(f"/proc/{folder.name}").exists():
            shutil.rmtree(folder, ignore_errors=True)
    tmp_dir = tmp_root / str(os.getpid())
    shutil.rmtree(tmp_dir, ignore_errors=True)
    (tmp_dir / "py").mkdir(parents=True)
    (tmp_dir / "jvm").mkdir()
    tempfile.tempdir = str(tmp_dir / "py")
    java_tmp = f"-Djava.io.tmpdir={tmp_dir / 'jvm'}"
    os.environ["JVM_ARGS"] = f"{os.environ.get('JVM_ARGS', '')} {java_tmp}".strip()
    return tmp_dir


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    conn = Connection(args.conn_fd)
    flink_log = FlinkLog()
    log_start = flink_log.size()
    try:
        session = Session(args.target, _prepare_tmp(args.tmp_root), args.slots)
    except Exception as exc:
        root, trace = explain(exc, "start")
        places = failures.places(args.tmp_root / str(os.getpid()), flink_log.folder, None)
        problem = failures.disk_problem([trace, flink_log.since(log_start)], places)
        what = "the Flink worker could not start"
        text = failures.message(what, root, problem=problem.text if problem else None)
        conn.send(("fatal", text))
        return 1
    if args.warm_up != "none":
        runtime, _, source = args.warm_up.partition("/")
        started = time.monotonic()
        reply = session.handle(("warm-up", session.warm_up_spec(runtime, source)))
        logger.info("warm-up: %s in %.1f s", reply[0], time.monotonic() - started)
        if reply[0] != "ok":
            # A tiny job without user statements failed: no job would run here.
            conn.send(("fatal", reply[1]))
            session.close()
            return 1
    # After the warm-up: a worker that says it is ready takes a job at once.
    conn.send(("ready", session.jvm_pid))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        conn.send(session.handle(message))
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
