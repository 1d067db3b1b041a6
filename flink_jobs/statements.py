"""Checking `flink.statements`: each one parsed and planned by Flink in a worker, nothing run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from flink_jobs.protocol import job_spec, stream_spec
from flink_jobs.worker_process import START_TIMEOUT, WorkerProcess
from harvester.errors import ConfigError

if TYPE_CHECKING:
    from harvester.config import Settings


def validate_statements(settings: Settings) -> None:
    """Raise `ConfigError` with a line per broken `flink.statements` entry, e.g.
    `harvester.toml: flink.statements[2]: SqlParseException: …`.

    Each statement is parsed and planned by Flink against the tables of the configured delivery
    (the continuous job's, or a per-harvest job's) in a short-lived worker; nothing runs.
    """
    if not settings.flink.statements:
        return
    worker = WorkerProcess(settings=settings, target="none", warm_up=False, name="check")
    try:
        check_in(worker, settings)
    finally:
        worker.close()


def check_in(worker: WorkerProcess, settings: Settings) -> None:
    """`validate_statements` in a worker the caller already has (no extra JVM start)."""
    if settings.flink.delivery == "continuous":
        request: tuple[str, object] = ("check-stream", stream_spec(settings, None))
    else:
        request = ("check", job_spec(settings, (), 0))
    problems: list[str] = worker.request(request, START_TIMEOUT)
    if problems:
        source = settings.config_path or "config"
        raise ConfigError([f"{source}: {problem}" for problem in problems])


class StatementCheck:
    """The check of `flink.statements`, run in a thread from `start`: a sink's JVM starts while
    the first pages are read.

    Broken SQL (`ConfigError`) is found for good; a check that failed otherwise (a remote
    cluster down, a worker that died) is run again the next time its `result` is asked for.
    """

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check
        self._lock = threading.Lock()
        self._done: Future[None] | None = None

    def start(self) -> None:
        with self._lock:
            if self._done is None:
                self._done = Future()
                threading.Thread(
                    target=self._run, args=(self._done,), name="flink-check", daemon=True
                ).start()

    def _run(self, done: Future[None]) -> None:
        try:
            self._check()
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    def result(self) -> None:
        """Wait for the check (starting it if none runs); raise what it found."""
        self.start()
        done = self._done
        assert done is not None
        try:
            done.result()
        except ConfigError:
            raise
        except BaseException:
            with self._lock:
                if self._done is done:
                    self._done = None
            raise
