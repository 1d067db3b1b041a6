"""The job protocol: the records the harvester and the Flink worker exchange over their pipe.

Both sides of the process boundary import this module, so it imports nothing heavy (no
pydantic, no PyFlink). The pipe carries tuples: the worker first sends `("ready", jvm_pid)` or
`("fatal", message)`; then each request `("run", JobSpec)`, `("check", JobSpec)` or
`("warm-up", JobSpec)` gets `("ok", JobResult | problems | None)` or
`("failed", message, root_cause, broken)`, `broken` True when the worker should be replaced.
The continuous job has `("stream", StreamSpec)` (submits it and answers at once with
`StreamStarted`) and `("check-stream", StreamSpec)` (problems).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flink_jobs.failures import UserSink
    from harvester.config import FlinkSettings, Settings


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


# Bumped whenever the continuous job's own tables or sinks change shape: a checkpoint of an
# older shape cannot be resumed, like one taken with other `flink.statements`.
# 2: the schema rows (`schema_log`, its default sink; the acks count every row).
PIPELINE_VERSION = 2
# What the last bump changed, for the message that refuses an older checkpoint.
PIPELINE_CHANGES = "the schema rows' `schema_log` view and default sink"
JOB_NAME_PREFIX = "idb-harvester continuous"


@dataclass(frozen=True)
class StreamSpec:
    """The continuous job (pickled over the pipe to the worker)."""

    name: str
    log_dir: Path
    checkpoint_dir: Path
    restore: str | None  # the checkpoint to resume from
    interval_ms: int
    parallelism: int
    statements: tuple[str, ...]
    data_dir: Path
    jars: tuple[Path, ...]
    runtime: str = "streaming"


@dataclass(frozen=True)
class StreamStarted:
    """The continuous job, submitted."""

    job_id: str
    rest_address: str  # host:port of the cluster running it
    sinks: tuple[UserSink, ...]


def fingerprint(settings: Settings) -> str:
    """What a checkpoint of the continuous job depends on: its SQL and the pipeline's shape."""
    text = "\n\0".join(
        (str(PIPELINE_VERSION), *(statement.sql.strip() for statement in settings.flink.statements))
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def job_name_prefix(settings: Settings) -> str:
    """What the name of every continuous job on this log starts with, whatever its SQL."""
    return f"{JOB_NAME_PREFIX} {settings.flink.log_dir} ["


def job_name(settings: Settings) -> str:
    """The continuous job's name: found again by it on a cluster, with the SQL it runs."""
    return f"{job_name_prefix(settings)}{fingerprint(settings)}]"


def stream_spec(settings: Settings, restore: str | None) -> StreamSpec:
    flink = settings.flink
    # Settings fill both folders in from state.dir when the config leaves them unset.
    assert flink.log_dir is not None and flink.checkpoint_dir is not None
    return StreamSpec(
        name=job_name(settings),
        log_dir=flink.log_dir,
        checkpoint_dir=flink.checkpoint_dir,
        restore=restore,
        interval_ms=max(int(flink.checkpoint_interval.total_seconds() * 1000), 100),
        parallelism=flink.parallelism,
        statements=tuple(statement.sql for statement in flink.statements),
        data_dir=settings.state.data_dir,
        jars=tuple(flink.jars),
    )
