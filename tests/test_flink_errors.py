"""What a Flink failure tells the user: a full or read-only disk under the worker's folders
(a tmpfs mounted for the test stands for the disk: it needs root, and the tests skip without
it), and which `flink.statements[i]` a job failed in at run time. Plus the parsing of Flink's
exception chains and the naming of folders and sinks, without Flink."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_jobs import failures
from flink_jobs.failures import MB, Place, UserSink
from flink_jobs.forwarder import FlinkForwarder
from flink_jobs.runner import FlinkRunner
from harvester.config import FlinkStatement, Settings
from harvester.errors import FlinkError, FlinkJobError
from tests.support.flink import change, fill, flink_settings, tmpfs, write_spool

TRACE = """\
org.apache.flink.table.api.TableException: Could not instantiate the executor.
\tat org.apache.flink.table.api.bridge.internal.Impl.lookupExecutor(Impl.java:109)
\tSuppressed: java.lang.IllegalStateException: not this one
\t\tat org.example.Other.run(Other.java:1)
Caused by: org.apache.flink.table.api.TableException: Unexpected error when loading a service.
\tat org.apache.flink.table.factories.ServiceLoaderUtil.load(ServiceLoaderUtil.java:41)
\t... 3 more
Caused by: java.lang.ExceptionInInitializerError
\tat org.apache.flink.table.planner.loader.PlannerModule.getInstance(PlannerModule.java:135)
Caused by: org.apache.flink.table.api.ValidationException: SQL validation failed.
line two of the message
Cause: the reason
\tat org.example.Planner.plan(Planner.java:1)
Caused by: java.io.IOException: No space left on device
\tat java.base/sun.nio.ch.FileDispatcherImpl.write0(Native Method)
"""


def statements(*sql: str) -> list[FlinkStatement]:
    return [FlinkStatement(sql=text) for text in sql]


# ---- without Flink ---------------------------------------------------------------------------


# ---- without Flink ---------------------------------------------------------------------------


def test_the_chain_of_a_java_trace_holds_each_cause_and_its_whole_message() -> None:
    links = failures.chain(TRACE)

    assert [name.rpartition(".")[2] for name, _ in links] == [
        "TableException",
        "TableException",
        "ExceptionInInitializerError",
        "ValidationException",
        "IOException",
    ]
    assert links[3][1] == "SQL validation failed.\nline two of the message\nCause: the reason"
    assert failures.root_line(links) == "IOException: No space left on device"
    # A table-API wrapper that quotes the root cause is the line shown.
    wrapped = [
        ("org.apache.flink.table.api.SqlParserException", "SQL parse failed. boom"),
        ("x.E", "boom"),
    ]
    assert failures.root_line(wrapped) == "SqlParserException: SQL parse failed. boom"


def test_a_disk_problem_names_the_folder_a_path_is_in_or_the_one_that_is_full(
    tmp_path: Path,
) -> None:
    tmp = Place(tmp_path / "flink-tmp" / "12", "the temp folder", 10 * MB, "it needs 10 MB there")
    data = Place(tmp_path / "data", "the data", 0, "rows need 1 MB there")

    named = failures.disk_problem(
        [f"java.io.IOException: {data.path}/x (No space left on device)"], [tmp, data]
    )
    assert named is not None and named.place == data
    assert named.text.startswith(f"no space left on device in {data.path} (the data): ")
    assert named.text.endswith("free; rows need 1 MB there")

    # No path in the message: the place that has less room than it needs (nothing exists yet,
    # so the free space is that of tmp_path's file system).
    huge = Place(tmp_path / "big", "the big one", 1 << 62, "it needs all there is")
    unnamed = failures.disk_problem(["IOException: No space left on device"], [tmp, huge])
    assert unnamed is not None and unnamed.place == huge

    read_only = failures.disk_problem(
        [f"[Errno 30] Read-only file system: '{tmp.path.parent}'"], [tmp]
    )
    assert read_only is not None
    assert read_only.text == f"{tmp.path} (the temp folder) is on a read-only file system"
    assert failures.disk_problem(["IOException: Stream closed"], [tmp]) is None


def test_sinks_are_named_by_their_table_or_their_folder(tmp_path: Path) -> None:
    counts = UserSink(1, "INSERT INTO c SELECT 1", "cat.db.c", "`cat`.`db`.`c`", None)
    files = UserSink(
        3, "INSERT INTO f\nSELECT 2", "cat.db.f", "`cat`.`db`.`f`", tmp_path / "f" / "out"
    )

    assert failures.named_sinks(["Table `cat`.`db`.`c` is broken"], [counts, files]) == [counts]
    # `cat.db.counts` is another table.
    assert failures.named_sinks(["cat.db.counts failed"], [counts, files]) == []
    # A file where the sink's folder should be.
    blocked = f"FileAlreadyExistsException: {tmp_path / 'f'}"
    assert failures.named_sinks([blocked], [counts, files]) == [files]
    assert files.label == "flink.statements[3] (INSERT INTO f)"
    assert failures.statement_label(0, "\n  " + "x" * 100).endswith("x…)")


# ---- a full or read-only disk, with the worker -------------------------------------------------


def test_a_read_only_state_dir_is_named_before_any_worker_starts(tmp_path: Path) -> None:
    config = flink_settings(tmp_path)
    with (
        tmpfs(config.state.dir, "1m", read_only=True),
        FlinkRunner(config) as runner,
        pytest.raises(FlinkError) as failure,
    ):
        runner.start()

    assert str(failure.value) == (
        f"the Flink worker could not start: {config.state.dir / 'flink-logs'} "
        "(the Flink logs, under state.dir) is on a read-only file system"
    )


@pytest.mark.flink
def test_a_read_only_temp_folder_fails_the_start_naming_it(tmp_path: Path) -> None:
    config = flink_settings(tmp_path)
    with (
        tmpfs(config.state.dir / "flink-tmp", "1m", read_only=True),
        FlinkRunner(config) as runner,
        pytest.raises(FlinkError) as failure,
    ):
        runner.run([], 0)

    message = str(failure.value)
    assert re.fullmatch(
        rf"the Flink worker could not start: {re.escape(str(config.state.dir))}/flink-tmp/\d+ "
        r"\(the Flink worker's temp folder, under state.dir\) is on a read-only file system "
        r"\(OSError: \[Errno 30\] Read-only file system: .*\)",
        message,
    ), message


@pytest.mark.flink
@pytest.mark.slow
@pytest.mark.parametrize(
    "size",
    [
        pytest.param("2m", id="full-before-the-rpc-system"),
        pytest.param("40m", id="full-before-the-planner"),
    ],
)
def test_a_full_temp_folder_fails_the_start_saying_how_much_room_it_needs(
    tmp_path: Path, size: str
) -> None:
    config = flink_settings(tmp_path)
    spool = write_spool(tmp_path / "spool", "run-full", "shop", [change(1, "+I", 1)])
    with (
        tmpfs(config.state.dir / "flink-tmp", size),
        FlinkForwarder(config) as forwarder,
        pytest.raises(FlinkError) as failure,
    ):
        forwarder.send([spool])

    message = str(failure.value)
    temp = re.escape(str(config.state.dir / "flink-tmp"))
    assert re.fullmatch(
        rf"the Flink worker could not start: no space left on device in {temp}/\d+ "
        r"\(the Flink worker's temp folder, under state.dir\): \d+\.\d MB free; "
        r"the Flink worker needs about 70 MB there \(twice that while a worker replaces another\) "
        r"\(IOException: No space left on device\)",
        message,
    ), message


@pytest.mark.flink
@pytest.mark.slow
def test_disks_that_fill_up_under_a_running_worker_are_named(tmp_path: Path) -> None:
    config = flink_settings(tmp_path)
    temp_root = config.state.dir / "flink-tmp"
    big = write_spool(
        tmp_path / "spool", "run-big", "shop", [change(n, "+I", "x" * 1000) for n in range(3000)]
    )
    small = write_spool(tmp_path / "spool", "run-small", "shop", [change(1, "+I", 1)])
    with (
        tmpfs(temp_root, "200m"),
        tmpfs(config.state.data_dir, "1m"),
        FlinkForwarder(config) as forwarder,
    ):
        forwarder.start()
        worker = forwarder.runner._worker
        assert worker is not None
        worker._wait_ready()

        # The default sinks' folder: Java names no path, the free space tells which it is.
        with pytest.raises(FlinkJobError) as data_full:
            forwarder.send([big])
        rows = failures.megabytes(big.path.stat().st_size)
        data_dir = re.escape(str(config.state.data_dir))
        assert re.fullmatch(
            rf"Flink job failed: no space left on device in {data_dir} "
            r"\(state.data_dir, the default sinks\): \d+\.\d MB free; this job's rows need about "
            rf"{re.escape(rows)} there \(IOException: No space left on device\)",
            data_full.value.args[0],
        ), data_full.value.args[0]
        assert worker.alive()  # a full data_dir does not break the worker

        # The worker's temp folder, full when the job is submitted: Flink's error says "File
        # upload failed" or the like, its log says why.
        fill(temp_root, leave=64 << 10)
        with pytest.raises(FlinkJobError) as temp_full:
            forwarder.send([small])
        assert temp_full.value.args[0].startswith(
            f"Flink job failed: no space left on device in {worker.tmp_dir} "
            "(the Flink worker's temp folder, under state.dir): 0.0 MB free; the Flink worker "
            "needs about 70 MB there"
        ), temp_full.value.args[0]
        assert not worker.alive()  # replaced: its JVM may not have written what it needed


# ---- which statement failed, with real Flink ----------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return flink_settings(tmp_path_factory.mktemp("flink-errors"))


@pytest.fixture(scope="module")
def forwarder(config: Settings) -> Iterator[FlinkForwarder]:
    with FlinkForwarder(config) as forwarder:
        forwarder.start()
        yield forwarder


@pytest.mark.flink
@pytest.mark.slow
def test_a_cast_failing_at_run_time_names_its_statement(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        config.flink,
        "statements",
        statements(
            "CREATE TABLE keys_out (k STRING) WITH ('connector' = 'blackhole')",
            "INSERT INTO keys_out SELECT `key` FROM change_log",
            "CREATE TABLE numbers (n INT) WITH ('connector' = 'blackhole')",
            "INSERT INTO numbers\n  SELECT CAST(`key` || 'x' AS INT) FROM change_log",
        ),
    )
    spool = write_spool(tmp_path, "run-cast", "shop", [change(1, "+I", 1)])

    with pytest.raises(FlinkJobError) as failure:
        forwarder.send([spool])

    assert failure.value.args[0] == (
        "Flink job failed in flink.statements[3] (INSERT INTO numbers): "
        "NumberFormatException: For input string: '1x'. Invalid character found."
    )
    assert failure.value.root_cause.startswith("NumberFormatException: ")


@pytest.mark.flink
@pytest.mark.slow
def test_a_sink_on_a_read_only_disk_names_its_statement_and_the_folder(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_only = tmp_path / "read-only"
    monkeypatch.setattr(
        config.flink,
        "statements",
        statements(
            "CREATE TABLE keys_out (k STRING) WITH ('connector' = 'blackhole')",
            "INSERT INTO keys_out SELECT `key` FROM change_log",
            "CREATE TABLE saved (k STRING) WITH ('connector' = 'filesystem', "
            f"'path' = '{read_only}/saved', 'format' = 'json')",
            "INSERT INTO saved SELECT `key` FROM change_log",
        ),
    )
    spool = write_spool(tmp_path, "run-read-only", "shop", [change(1, "+I", 1)])

    with tmpfs(read_only, "1m", read_only=True), pytest.raises(FlinkJobError) as failure:
        forwarder.send([spool])

    message = failure.value.args[0]
    assert message.startswith(
        "Flink job failed in flink.statements[3] (INSERT INTO saved SELECT `key` FROM change_log): "
        f"{read_only}/saved (its sink's folder) is on a read-only file system ("
    ), message


@pytest.mark.flink
@pytest.mark.slow
def test_a_failure_of_the_input_itself_is_not_put_on_a_statement(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        config.flink,
        "statements",
        statements(
            "CREATE TABLE keys_out (k STRING) WITH ('connector' = 'blackhole')",
            "INSERT INTO keys_out SELECT `key` FROM change_log",
        ),
    )
    spool = write_spool(tmp_path, "run-bad-line", "shop", [change(1, "+I", 1)])
    with spool.path.open("a") as out:
        out.write('{"run_id": "run-bad-line"}\n')  # fields missing: the file source fails

    with pytest.raises(FlinkJobError) as failure:
        forwarder.send([spool])

    assert failure.value.args[0].startswith("Flink job failed: ")
    assert "flink.statements" not in failure.value.args[0]
