"""The runner with real Flink: streaming runtime (`changes` into debezium-json), worker recycling
and a worker whose JVM dies. One module-scoped runner; jobs_per_worker = 1 replaces its worker
after every job. Plus an unreachable remote cluster (no Flink)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_jobs.forwarder import FlinkForwarder
from flink_jobs.runner import FlinkRunner
from harvester.config import Settings
from harvester.errors import FlinkError
from tests.support.flink import change, flink_settings, read_rows, runs, write_spool
from tests.support.server import free_port


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("flink-streaming")
    return flink_settings(
        root,
        runtime="streaming",
        jobs_per_worker=1,
        statements=[
            {
                "sql": "CREATE TABLE applied (target STRING, store STRING, `key` STRING, "
                "`value` STRING, PRIMARY KEY (target, store, `key`) NOT ENFORCED) WITH ("
                f"'connector' = 'filesystem', 'path' = '{root / 'applied'}', "
                "'format' = 'debezium-json')"
            },
            {"sql": "INSERT INTO applied SELECT target, store, `key`, `value` FROM changes"},
        ],
    )


@pytest.fixture(scope="module")
def forwarder(config: Settings) -> Iterator[FlinkForwarder]:
    with FlinkForwarder(config, runner=FlinkRunner(config)) as forwarder:
        forwarder.start()
        yield forwarder


def test_an_unreachable_remote_cluster_fails_the_start_naming_its_address(
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    with FlinkRunner(flink_settings(tmp_path, mode="remote", address=address)) as runner:
        with pytest.raises(FlinkError, match=f"the Flink cluster at {address} is unreachable"):
            runner.start()
        assert runner.worker_stats() is None


@pytest.mark.flink
@pytest.mark.slow
def test_streaming_changes_reach_a_debezium_sink_as_updates_and_deletes(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path
) -> None:
    spool = write_spool(
        tmp_path,
        "run-stream",
        "shop",
        [change(1, "+I", "new"), change(2, "+U", "changed"), change(3, "-D")],
    )

    forwarder.send([spool])

    applied = {}
    for row in read_rows(config.state.dir.parent / "applied"):
        image = row["after"] if row["op"] == "c" else row["before"]
        applied[image["key"]] = (row["op"], image["value"])
    # Flink's debezium-json writes an insert or the new image of an update as "c", and a
    # delete as "d" with the deleted row as `before`.
    assert applied == {"1": ("c", '"new"'), "2": ("c", '"changed"'), "3": ("d", None)}
    changes = runs(read_rows(config.state.data_dir / "changes"), "run-stream")
    assert sorted(row["op"] for row in changes) == ["+I", "+U", "-D"]
    stats = runs(read_rows(config.state.data_dir / "run_stats"), "run-stream")
    assert [(row["inserts"], row["updates"], row["deletes"]) for row in stats] == [(1, 1, 1)]


def _wait_for_exit(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "Z" in _state(pid):
            return True
        time.sleep(0.2)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return ""


@pytest.mark.flink
@pytest.mark.slow
def test_workers_are_replaced_after_their_jobs_and_when_their_jvm_dies(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path
) -> None:
    runner = forwarder.runner
    first = write_spool(tmp_path, "run-a", "a", [change(1, "+I", 1)])
    forwarder.send([first])
    worker = runner._worker
    assert worker is not None and worker.jobs == 0  # the one-job worker was replaced
    worker._wait_ready()
    stats = runner.worker_stats()
    assert stats is not None and stats.jvm_rss > 0 and stats.jvm_threads > 0
    assert worker.jvm_pid is not None
    os.kill(worker.jvm_pid, signal.SIGKILL)
    assert _wait_for_exit(worker._process.pid)

    second = write_spool(tmp_path, "run-b", "b", [change(2, "+I", 2)])
    forwarder.send([second])

    assert runner._worker is not worker
    changes = runs(read_rows(config.state.data_dir / "changes"), "run-a", "run-b")
    assert sorted(row["run_id"] for row in changes) == ["run-a", "run-b"]


@pytest.mark.flink
@pytest.mark.slow
def test_jobs_go_to_the_outgoing_worker_until_its_replacement_is_warm(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path
) -> None:
    runner = forwarder.runner
    assert runner._worker is not None
    runner._worker._wait_ready()
    forwarder.send([write_spool(tmp_path, "run-c", "c", [change(1, "+I", 1)])])
    outgoing, replacement = runner._outgoing, runner._worker
    assert outgoing is not None and replacement is not None and outgoing.jobs == 1

    # The replacement's JVM has only just been asked to start: this job goes to the outgoing one.
    forwarder.send([write_spool(tmp_path, "run-d", "d", [change(2, "+I", 2)])])
    assert outgoing.jobs == 2 and replacement.jobs == 0

    replacement._wait_ready()
    forwarder.send([write_spool(tmp_path, "run-e", "e", [change(3, "+I", 3)])])
    assert replacement.jobs == 1
    assert _wait_for_exit(outgoing._process.pid), "the outgoing worker was not stopped"
    changes = runs(read_rows(config.state.data_dir / "changes"), "run-c", "run-d", "run-e")
    assert sorted(row["run_id"] for row in changes) == ["run-c", "run-d", "run-e"]
