"""`[targets.watch]` validation, and migration 8 (`runs.trigger`, `runs.trigger_events`)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from harvester.config import load_settings
from harvester.errors import ConfigError
from harvester.harvest import narrowed
from harvester.state import StateDB, state_db_path

TARGET = """
[[targets]]
name = "app"
url = "http://127.0.0.1:1/"
schedule = "1h"
stores = ["app/*", "other/*"]
"""


def _load(tmp_path: Path, watch: str) -> object:
    config = tmp_path / "harvester.toml"
    config.write_text(TARGET + "[targets.watch]\n" + watch)
    return load_settings(config)


def test_watch_defaults(tmp_path: Path) -> None:
    config = tmp_path / "harvester.toml"
    config.write_text(TARGET)
    watch = load_settings(config).targets[0].watch
    assert watch.enabled is False
    assert watch.debounce == timedelta(milliseconds=250)
    assert watch.max_delay == timedelta(seconds=2)
    assert watch.recycle_after == timedelta(hours=6)
    assert watch.max_renderer_memory == 1000**3


def test_watch_settings_are_read(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        'enabled = true\ndebounce = "1s"\nmax_delay = "1s"\nmax_renderer_memory = "1.5GiB"\n',
    )
    watch = settings.targets[0].watch  # type: ignore[attr-defined]
    assert watch.enabled and watch.debounce == watch.max_delay == timedelta(seconds=1)
    assert watch.max_renderer_memory == int(1.5 * 1024**3)


@pytest.mark.parametrize(
    ("watch", "problem"),
    [
        ('debounce = "3s"\n', "targets[0].watch.debounce: debounce 3s is longer than max_delay 2s"),
        ('debounce = "0s"\n', "targets[0].watch.debounce: 0s is not positive"),
        ('max_delay = "0s"\n', "targets[0].watch.max_delay: 0s is not positive"),
        ('recycle_after = "0s"\n', "targets[0].watch.recycle_after: 0s is not positive"),
        ('max_renderer_memory = "lots"\n', '"lots" is not a size above 0'),
        ("max_renderer_memory = 0\n", "0 is not a size above 0"),
        ("bogus = 1\n", "targets[0].watch.bogus: unknown key"),
    ],
)
def test_bad_watch_settings_are_problems(tmp_path: Path, watch: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, watch)
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_narrowed_reads_exactly_the_stores_named(tmp_path: Path) -> None:
    config = tmp_path / "harvester.toml"
    config.write_text(TARGET)
    target = load_settings(config).targets[0]
    only = narrowed(target, [("app", "it*ems"), ("app", "a"), ("app", "a")])
    assert only.databases == ["app"]
    assert only.stores == ["app/a", "app/it[*]ems"]
    assert target.stores == ["app/*", "other/*"]  # the target itself is left as it was


def test_migration_8_adds_the_trigger_columns(tmp_path: Path) -> None:
    with StateDB.open(tmp_path) as state:
        scheduled = state.start_run("app")
        event = state.start_run("app", trigger="event", events=4)
        assert state.get_run(scheduled).trigger is None  # type: ignore[union-attr]
        run = state.get_run(event)
        assert run is not None and (run.trigger, run.trigger_events) == ("event", 4)
    conn = sqlite3.connect(state_db_path(tmp_path))
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        assert {"trigger", "trigger_events"} <= columns
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 8
    finally:
        conn.close()


def test_a_version_7_db_is_migrated_and_its_runs_have_no_trigger(tmp_path: Path) -> None:
    with StateDB.open(tmp_path) as state:
        old = state.start_run("app")
    conn = sqlite3.connect(state_db_path(tmp_path))
    # Back to version 7: drop the columns migration 8 added.
    conn.executescript(
        "ALTER TABLE runs DROP COLUMN trigger; ALTER TABLE runs DROP COLUMN trigger_events;"
        "PRAGMA user_version = 7;"
    )
    conn.close()
    with StateDB.open(tmp_path) as state:
        run = state.get_run(old)
        assert run is not None and run.trigger is None and run.trigger_events is None
