"""`schema_log` with real Flink: a harvest whose schema changed reaches a user's statement and the
default `schema_log` sink, in the continuous job and per harvest, and its run is acknowledged
and verified with its schema rows counted."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from flink_jobs.continuous import ContinuousForwarder
from flink_jobs.forwarder import FlinkForwarder
from flink_jobs.runner import FlinkRunner
from harvester.config import Settings, load_settings
from harvester.delivery import Tracker
from harvester.harvest import harvest_target
from harvester.sinks import ChangeSink
from harvester.state import StateDB
from tests.support.configs import write_config
from tests.support.fake_reader import FakeReader, fake_opener
from tests.support.flink import read_rows

pytestmark = [pytest.mark.flink, pytest.mark.slow]

TIMEOUT = 240.0


def _settings(root: Path, delivery: str) -> Settings:
    """Target `app`; a statement that keeps every new store (its indexes) in `root/new_stores`."""
    rolling = (
        ", 'sink.rolling-policy.rollover-interval' = '1s', "
        "'sink.rolling-policy.check-interval' = '1s'"
        if delivery == "continuous"
        else ""
    )
    extra = f'''
[flink]
delivery = "{delivery}"

[[flink.statements]]
sql = """CREATE TABLE new_stores (target STRING, db_name STRING, store STRING, indexes STRING)
         WITH ('connector' = 'filesystem', 'path' = '{root / "new_stores"}',
               'format' = 'json'{rolling})"""

[[flink.statements]]
sql = """INSERT INTO new_stores SELECT target, db_name, store, JSON_QUERY(`value`, '$.indexes')
         FROM schema_log WHERE op = '+S' AND store IS NOT NULL AND old_value IS NULL"""
'''
    return load_settings(write_config(root, extra=extra))


def _harvest(settings: Settings, state: StateDB, sink: ChangeSink, data: Any) -> str:
    done = asyncio.run(
        harvest_target(
            settings=settings,
            target=settings.target("app"),
            state=state,
            sink=sink,
            opener=fake_opener(FakeReader(data)),
        )
    )
    assert done.run.status == "committed", done.run.error
    return done.run.id


def _new_stores(root: Path, count: int) -> list[tuple[str, str]]:
    deadline = time.monotonic() + TIMEOUT
    while len(rows := read_rows(root / "new_stores")) < count:
        assert time.monotonic() < deadline, f"new_stores holds {rows}"
        time.sleep(0.5)
    assert all(json.loads(row["indexes"])[0]["name"] == "by_x" for row in rows)
    return sorted((row["db_name"], row["store"]) for row in rows)


FIRST = {"shop": {"items": {1: {"id": 1}}}}
SECOND = {"shop": {"items": {1: {"id": 1}}, "carts": {7: {"id": 7}}}}


def test_the_continuous_job_feeds_schema_log_and_acks_every_row(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "continuous")
    with StateDB.open(settings.state.dir) as state, ContinuousForwarder(settings) as sink:
        sink.validate()
        sink.start()
        runs = [_harvest(settings, state, sink, data) for data in (FIRST, SECOND)]
        tracker = Tracker(state, sink, retention=settings.flink.log_retention)
        assert tracker.wait(sink, TIMEOUT).waiting == ()
        # Consumed means acknowledged whole: the acks counted the schema rows too.
        done = [state.get_run(run_id) for run_id in runs]
        assert [(run.rows, run.consumed_rows) for run in done if run] == [(3, 3), (2, 2)]
        assert _new_stores(tmp_path, 2) == [("shop", "carts"), ("shop", "items")]
    schema = read_rows(settings.state.data_dir / "schema_log")
    assert sorted((r["run_id"] == runs[1], r["op"], r.get("store") or "") for r in schema) == [
        (False, "+S", ""),
        (False, "+S", "items"),
        (True, "+S", "carts"),
    ]
    # change_log, and so the default `changes` sink, holds the records only.
    changes = read_rows(settings.state.data_dir / "changes")
    assert sorted((r["op"], r["store"]) for r in changes) == [("+I", "carts"), ("+I", "items")]


def test_a_per_harvest_job_feeds_schema_log_and_verifies_every_row(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "per-harvest")
    with (
        StateDB.open(settings.state.dir) as state,
        FlinkForwarder(settings, runner=FlinkRunner(settings)) as sink,
    ):
        sink.validate()
        sink.start()
        for data in (FIRST, SECOND):
            _harvest(settings, state, sink, data)
    assert _new_stores(tmp_path, 2) == [("shop", "carts"), ("shop", "items")]
    assert len(read_rows(settings.state.data_dir / "schema_log")) == 3
