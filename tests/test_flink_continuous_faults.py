"""The continuous job's own problems, with real Flink and no browser: a statement that fails at
run time is reported with its index while the log keeps taking runs; in local-cluster mode the
dashboard shows one RUNNING job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_jobs import rest
from flink_jobs.continuous import ContinuousForwarder
from harvester import harvest
from harvester.config import Settings
from harvester.delivery import Tracker
from harvester.errors import FlinkError
from harvester.state import StateDB
from tests.support.flink import change, flink_settings, tmpfs, write_spool
from tests.support.server import free_port

pytestmark = [pytest.mark.flink, pytest.mark.slow]

TIMEOUT = 240.0


def _hand_off(state: StateDB, sink: ContinuousForwarder, keys: range, pad: int = 0) -> str:
    """A read run of `keys` as inserts (`pad` characters more in each), handed off to the log
    and committed."""
    run_id = state.start_run("shop")
    values = [{"n": k, "pad": "x" * pad} if pad else {"n": k} for k in keys]
    rows = [change(k, "+I", value) for k, value in zip(keys, values, strict=True)]
    spool = write_spool(state.spool_dir, run_id, "shop", rows)
    state.mark_read(run_id, origin="http://127.0.0.1:8765", stores=[], rows=spool.rows, problems=[])
    harvest.send(state, sink, [spool])
    harvest.commit(state, spool, delivered=False)
    return run_id


def _json_sink(tmp_path: Path, name: str, folder: Path, columns: str) -> Settings:
    """Settings whose pipeline copies `columns` of change_log into a JSON file sink at `folder`."""
    typed = ", ".join(f"{column} STRING" for column in columns.split(", "))
    return flink_settings(
        tmp_path,
        statements=[
            {
                "sql": f"CREATE TABLE {name} ({typed}) WITH ('connector' = 'filesystem', "
                f"'path' = '{folder}', 'format' = 'json')"
            },
            {"sql": f"INSERT INTO {name} SELECT {columns} FROM change_log"},
        ],
    )


def _wait_for_problem(sink: ContinuousForwarder, text: str) -> str:
    deadline = time.monotonic() + TIMEOUT
    while text not in (sink.problem() or ""):
        assert time.monotonic() < deadline, f"no problem saying {text!r}: {sink.problem()}"
        time.sleep(0.5)
    return sink.problem() or ""


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB.open(tmp_path / "state", keep_runs=50, keep_failed_runs=100) as state:
        yield state


def test_a_statement_failing_at_run_time_is_named_and_the_log_keeps_growing(
    tmp_path: Path, opened: StateDB
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the sink's folder should be")
    settings = _json_sink(tmp_path, "broken", blocker / "out", "`key`")
    with ContinuousForwarder(settings) as sink:
        sink.validate()
        sink.start()
        first = _hand_off(opened, sink, range(3))
        assert "INSERT INTO broken" in _wait_for_problem(sink, "flink.statements[1]")
        # The pipeline is broken, not the harvests: runs still go into the log, unconsumed.
        second = _hand_off(opened, sink, range(3, 6))
        Tracker(opened, sink, retention=settings.flink.log_retention).track()
        assert [run.id for run in opened.undelivered()] == [first, second]
        assert len(list(sink.log.files())) == 2


def test_a_local_cluster_runs_one_job_that_consumes_every_run(
    tmp_path: Path, opened: StateDB
) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings: Settings = flink_settings(tmp_path, mode="local-cluster", address=address)
    with ContinuousForwarder(settings) as sink:
        sink.validate()
        sink.start()
        tracker = Tracker(opened, sink, retention=settings.flink.log_retention)
        for start in (0, 10, 20):
            _hand_off(opened, sink, range(start, start + 10))
            assert tracker.wait(sink, TIMEOUT).waiting == ()
        ours = [job for job in rest.jobs(address) if job.name.startswith("idb-harvester")]
        assert [job.state for job in ours] == ["RUNNING"]
        assert sink.dashboard_url == f"http://{address}/"
    # The cluster stopped with the sink: nothing answers there any more.
    with pytest.raises(FlinkError, match="unreachable"):
        rest.jobs(address)


def test_a_sink_folder_that_fills_up_under_the_running_job_is_named(
    tmp_path: Path, opened: StateDB
) -> None:
    with tmpfs(tmp_path / "small", "1m") as small:
        settings = _json_sink(tmp_path, "copy", small / "out", "`key`, `value`")
        with ContinuousForwarder(settings) as sink:
            sink.validate()
            sink.start()
            _hand_off(opened, sink, range(2000), pad=2000)
            _wait_for_problem(sink, "no space left on device")
            assert f"no space left on device in {small / 'out'} (its sink's folder)" in (
                sink.problem() or ""
            ), sink.problem()
            assert "flink.statements[1]" in (sink.problem() or "")
