"""The Flink pipeline with real Flink (embedded, batch runtime), plus the job planning logic and
the pipeline's schema.

One runner (one worker JVM) serves the whole module; each test is one or two jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from flink_jobs import pipeline, worker
from flink_jobs.forwarder import FlinkForwarder, plan_jobs
from flink_jobs.protocol import SpoolSlice
from flink_jobs.runner import FlinkRunner
from harvester.config import FlinkStatement, Settings
from harvester.errors import ConfigError, FlinkJobError
from harvester.spool import ROW_FIELDS, SpoolFile
from tests.support.flink import AT, change, flink_settings, read_rows, runs, write_spool


def statements(*sql: str) -> list[FlinkStatement]:
    return [FlinkStatement(sql=text) for text in sql]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("flink")
    return flink_settings(
        root,
        statements=[
            {
                "sql": "CREATE TABLE store_counts (store STRING, n BIGINT) WITH ("
                f"'connector' = 'filesystem', 'path' = '{root / 'counts'}', 'format' = 'json')"
            },
            {
                "sql": "INSERT INTO store_counts SELECT store, COUNT(*) FROM change_log "
                "GROUP BY store;"
            },
        ],
    )


@pytest.fixture(scope="module")
def forwarder(config: Settings) -> Iterator[FlinkForwarder]:
    with FlinkForwarder(config, runner=FlinkRunner(config)) as forwarder:
        forwarder.start()
        yield forwarder


def jobs_run(forwarder: FlinkForwarder) -> int:
    stats = forwarder.runner.worker_stats()
    assert stats is not None
    return stats.jobs


# ---- planning (no Flink) ----------------------------------------------------------------------


def test_plan_batches_runs_of_different_targets_and_splits_large_ones(tmp_path: Path) -> None:
    a = SpoolFile("a", "shop", tmp_path / "a.jsonl", 5)
    b = SpoolFile("b", "blog", tmp_path / "b.jsonl", 3)
    c = SpoolFile("c", "shop", tmp_path / "c.jsonl", 0)
    d = SpoolFile("d", "wiki", tmp_path / "d.jsonl", 9)
    jobs = plan_jobs([a, b, c, d], 10)
    assert [job.slices for job in jobs] == [
        (
            SpoolSlice("a", "shop", a.path),
            SpoolSlice("b", "blog", b.path),
            SpoolSlice("d", "wiki", d.path, 0, 2),
        ),
        (SpoolSlice("d", "wiki", d.path, 2, 9),),
    ]
    assert [job.rows for job in jobs] == [10, 7]


def test_plan_never_puts_two_runs_of_a_target_in_one_job(tmp_path: Path) -> None:
    first = SpoolFile("r1", "shop", tmp_path / "r1.jsonl", 2)
    second = SpoolFile("r2", "shop", tmp_path / "r2.jsonl", 2)
    jobs = plan_jobs([first, second], 100)
    assert [[part.run_id for part in job.slices] for job in jobs] == [["r1"], ["r2"]]


def test_plan_with_the_file_source_keeps_spools_whole(tmp_path: Path) -> None:
    big = SpoolFile("big", "shop", tmp_path / "big.jsonl", 25)
    small = SpoolFile("small", "blog", tmp_path / "small.jsonl", 5)
    jobs = plan_jobs([big, small], 10, whole_spools=True)
    assert [job.slices for job in jobs] == [
        (SpoolSlice("big", "shop", big.path),),
        (SpoolSlice("small", "blog", small.path),),
    ]


# ---- the schema (no Flink) --------------------------------------------------------------------


def test_change_log_columns_are_the_spool_fields_in_order() -> None:
    assert pipeline.NAMES == ROW_FIELDS
    assert dict(pipeline.COLUMNS) == {
        "run_id": "STRING",
        "target": "STRING",
        "origin": "STRING",
        "db_name": "STRING",
        "db_version": "BIGINT",
        "store": "STRING",
        "key": "STRING",
        "op": "STRING",
        "value": "STRING",
        "old_value": "STRING",
        "value_hash": "STRING",
        "harvested_at": "TIMESTAMP_LTZ(3)",
    }
    assert set(pipeline.RECORD_IDENTITY) <= set(ROW_FIELDS)
    # The warm-up job's rows go through the file source, which fails on a missing field.
    assert all(tuple(row) == ROW_FIELDS for row in worker._SAMPLE)


def test_collection_source_rows_follow_the_spool_fields(tmp_path: Path) -> None:
    rows = [change(1, "+I", "x"), change(2, "-D", old="y")]
    spool = write_spool(tmp_path, "run-rows", "shop", rows)
    rows = list(pipeline._rows([SpoolSlice("run-rows", "shop", spool.path, 1)]))
    # Row kind INSERT, the fields in spool order, the timestamp as epoch microseconds.
    assert rows == [
        (
            0,
            "run-rows",
            "shop",
            "http://127.0.0.1:8765",
            "shop",
            3,
            "items",
            "2",
            "-D",
            None,
            '"y"',
            "0" * 64,
            1_795_705_200_123_000,
        )
    ]


def test_forwarder_describes_its_mode_and_validates_nothing_without_statements(
    tmp_path: Path,
) -> None:
    config = flink_settings(tmp_path, mode="local-cluster")
    with FlinkForwarder(config) as forwarder:
        assert forwarder.description == "Flink (local-cluster)"
        forwarder.validate()
        assert forwarder.runner.worker_stats() is None
    assert not (tmp_path / "state").exists()


# ---- real Flink ------------------------------------------------------------------------------


@pytest.mark.flink
@pytest.mark.slow
def test_two_runs_in_one_job_reach_the_default_and_user_sinks(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path
) -> None:
    shop = write_spool(
        tmp_path,
        "run-shop",
        "shop",
        [
            change(1, "+I", {"name": "pen", "tags": ["a", "ü"]}),
            change(2, "+U", {"name": "ink"}),
            change([3, "x"], "-D", store="orders"),
        ],
    )
    blog = write_spool(tmp_path, "run-blog", "blog", [change("p1", "+I", "hi", store="posts")])
    before = jobs_run(forwarder)

    forwarder.send([shop, blog])

    assert jobs_run(forwarder) == before + 1
    changes = runs(read_rows(config.state.data_dir / "changes"), "run-shop", "run-blog")
    by_key = {(row["target"], row["key"]): row for row in changes}
    assert {key: row["op"] for key, row in by_key.items()} == {
        ("shop", "1"): "+I",
        ("shop", "2"): "+U",
        ("shop", '[3,"x"]'): "-D",
        ("blog", '"p1"'): "+I",
    }
    assert by_key["shop", "1"]["value"] == '{"name":"pen","tags":["a","ü"]}'
    assert by_key["shop", '[3,"x"]']["value"] is None
    assert by_key["shop", "1"]["harvested_at"] == AT
    assert by_key["shop", "1"]["dt"] == "2026-11-26"
    assert by_key["shop", "1"]["db_version"] == 3

    stats = runs(read_rows(config.state.data_dir / "run_stats"), "run-shop", "run-blog")
    assert sorted(
        (row["run_id"], row["store"], row["inserts"], row["updates"], row["deletes"])
        for row in stats
    ) == [
        ("run-blog", "posts", 1, 0, 0),
        ("run-shop", "items", 1, 1, 0),
        ("run-shop", "orders", 0, 0, 1),
    ]
    counts = {row["store"]: row["n"] for row in read_rows(config.state.dir.parent / "counts")}
    assert counts == {"items": 2, "orders": 1, "posts": 1}


@pytest.mark.flink
@pytest.mark.slow
def test_collection_and_file_sources_give_the_same_tables(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        change(1, "+I", {"big": 2**53, "s": 'quote " and \\ and \u2028'}),
        change(2, "+U", [1, None, True], old=[1]),
        change(3, "-D", old={"was": 3}),
    ]
    via_collection = write_spool(tmp_path, "via-collection", "same", rows)
    via_file = write_spool(tmp_path, "via-file", "same2", rows)

    # `auto` is the file source in embedded mode: each source is named.
    monkeypatch.setattr(config.flink, "source", "collection")
    forwarder.send([via_collection])
    monkeypatch.setattr(config.flink, "source", "file")
    forwarder.send([via_file])

    def strip(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in row.items() if k not in ("run_id", "target")} for row in found),
            key=lambda row: orjson.dumps(row, option=orjson.OPT_SORT_KEYS),
        )

    changes = read_rows(config.state.data_dir / "changes")
    stats = read_rows(config.state.data_dir / "run_stats")
    assert len(runs(changes, "via-file")) == 3
    assert strip(runs(changes, "via-collection")) == strip(runs(changes, "via-file"))
    assert strip(runs(stats, "via-collection")) == strip(runs(stats, "via-file"))


@pytest.mark.flink
@pytest.mark.slow
def test_a_failing_job_raises_its_root_cause(
    forwarder: FlinkForwarder, config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the sink wants a folder")
    monkeypatch.setattr(
        config.flink,
        "statements",
        statements(
            "CREATE TABLE broken (k STRING) WITH ('connector' = 'filesystem', "
            f"'path' = '{blocker}/out', 'format' = 'json')",
            "INSERT INTO broken SELECT `key` FROM change_log",
        ),
    )
    spool = write_spool(tmp_path, "run-fails", "shop", [change(1, "+I", 1)])

    with pytest.raises(FlinkJobError) as failure:
        forwarder.send([spool])

    assert "not-a-folder" in failure.value.root_cause
    assert "\n" not in failure.value.root_cause
    # The statement whose sink it is, found by the path Flink's error names.
    assert failure.value.args[0].startswith(
        "Flink job failed in flink.statements[1] "
        "(INSERT INTO broken SELECT `key` FROM change_log): "
    )
    assert spool.path.exists()
    assert not list(config.state.data_dir.glob("*/.staging_*"))


@pytest.mark.flink
@pytest.mark.slow
def test_the_check_names_each_broken_statement_and_no_job_runs(
    forwarder: FlinkForwarder, config: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        config.flink,
        "statements",
        statements(
            "CREATE TABLE ok (store STRING) WITH ('connector' = 'blackhole')",
            "INSERT INTO nowhere SELECT store FROM change_log",
            "INSERT INTO ok SELECT store FROM change_log",
        ),
    )

    forwarder.validate()  # returns at once: Flink plans the statements in the background
    with pytest.raises(ConfigError) as failure:
        forwarder.checked()
    with pytest.raises(ConfigError):
        forwarder.send([])

    assert len(failure.value.problems) == 1
    assert failure.value.problems[0].startswith("config: flink.statements[1]: ")
    assert "nowhere" in failure.value.problems[0]
