"""The changelog's schema rows (+S, -S): computed at read time by the comparison the commit
records, spooled after the records, checked, skipped by the snapshot, passed through by sinks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from flink_jobs import checkpoints
from harvester.errors import PipelineChangedError
from harvester.harvest import harvest_target
from harvester.reader import DatabaseSchema, IndexSchema, StoreSchema
from harvester.sinks import JsonLinesSink
from harvester.spool import read_rows, row_problem
from harvester.state import ReadScope, RunStore, StateDB
from harvester.state.records import SchemaRow
from tests.support.fake_reader import ORIGIN, FakeReader, fake_opener, in_loop
from tests.test_schema_history import index, store

BY_TITLE = index("by_title", "title")


def _read(
    state: StateDB, stores: Sequence[RunStore], databases: dict[str, int] | None = None
) -> list[SchemaRow]:
    opened = {s.db: s.db_version for s in stores} | (databases or {})
    read = state.schema_read(target="app", origin=ORIGIN, stores=stores, scope=ReadScope(opened))
    return read.rows


def _commit(state: StateDB, stores: Sequence[RunStore]) -> str:
    run_id = state.start_run("app")
    scope = ReadScope({s.db: s.db_version for s in stores})
    state.mark_read(run_id, origin=ORIGIN, stores=stores, rows=0, scope=scope)
    assert state.commit_run(run_id, [])
    return run_id


def _decoded(rows: Sequence[SchemaRow]) -> list[tuple[Any, ...]]:
    return [
        (
            r.op,
            r.db,
            r.db_version,
            r.store,
            None if r.value is None else json.loads(r.value),
            None if r.old_value is None else json.loads(r.old_value),
        )
        for r in rows
    ]


def _schema(*, indexes: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"key_path": "id", "auto_increment": False, "indexes": list(indexes)}


def test_a_first_read_creates_every_database_and_store(state: StateDB) -> None:
    rows = _read(state, [store("shop", "items"), store("shop", "orders")])
    assert _decoded(rows) == [
        ("+S", "shop", 1, None, {"version": 1, "changes": [{"kind": "database_added"}]}, None),
        ("+S", "shop", 1, "items", {**_schema(), "changes": [{"kind": "store_created"}]}, None),
        ("+S", "shop", 1, "orders", {**_schema(), "changes": [{"kind": "store_created"}]}, None),
    ]
    # Read-only: nothing was recorded.
    assert state.schema_dbs("app") == [] and state.schema_changes("app") == []


def test_new_store_new_index_version_bump_and_dropped_store_give_one_row_each(
    state: StateDB,
) -> None:
    _commit(state, [store("shop", "items"), store("shop", "orders"), store("blog", "posts")])
    stores = [
        store("shop", "items", version=2, indexes=[BY_TITLE]),
        store("shop", "carts", version=2),
        store("blog", "posts"),
    ]
    rows = _read(state, stores)
    assert _decoded(rows) == [
        (
            "+S",
            "shop",
            2,
            None,
            {"version": 2, "changes": [{"kind": "version_changed"}]},
            {"version": 1},
        ),
        (
            "+S",
            "shop",
            2,
            "items",
            {
                **_schema(indexes=[BY_TITLE]),
                "changes": [{"kind": "index_added", "index": "by_title"}],
            },
            _schema(),
        ),
        ("+S", "shop", 2, "carts", {**_schema(), "changes": [{"kind": "store_created"}]}, None),
        ("-S", "shop", 2, "orders", None, _schema()),
    ]
    # The commit records the same changes, one schema_changes row per entry of `changes`.
    run_id = _commit(state, stores)
    recorded = [(c.db, c.store, c.kind) for c in state.schema_changes("app", [run_id])]
    spooled = [
        (r.db, r.store, change["kind"])
        for r in rows
        for change in (
            json.loads(r.value)["changes"]
            if r.value
            else [{"kind": "store_deleted" if r.store else "database_removed"}]
        )
    ]
    assert sorted(spooled, key=str) == sorted(recorded, key=str)
    # Once committed, the same read finds nothing new.
    assert _read(state, stores) == []


def test_a_removed_database_is_one_minus_s_row(state: StateDB) -> None:
    _commit(state, [store("shop", "items"), store("old", "things", version=4)])
    assert _decoded(_read(state, [store("shop", "items")])) == [
        ("-S", "old", 4, None, None, {"version": 4})
    ]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"key": '"k"'}, "a +S row with a key"),
        ({"op": "-S", "value_hash": None}, "a -S row with a value"),
        ({"op": "+I", "key": '"k"', "store": None}, "a +I row without a store"),
        ({"op": "+I"}, "a +I row without a key"),
        ({"op": "+X"}, "op '+X' is none of +I, +U, -D, +S, -S"),
    ],
)
def test_schema_rows_are_checked(edit: dict[str, Any], problem: str) -> None:
    row = {
        "run_id": "r",
        "target": "app",
        "origin": ORIGIN,
        "db_name": "shop",
        "db_version": 1,
        "store": "items",
        "key": None,
        "op": "+S",
        "value": "{}",
        "old_value": None,
        "value_hash": "0" * 64,
        "harvested_at": "2026-11-26T15:00:00.123Z",
    }
    assert row_problem(row, run_id="r", target="app") is None
    assert row_problem({**row, **edit}, run_id="r", target="app") == problem


class _Versioned(FakeReader):
    """A FakeReader whose databases have `version` and whose stores have `indexes`."""

    def __init__(self, data: Any, *, version: int, indexes: Sequence[IndexSchema]) -> None:
        super().__init__(data)
        self.version = version
        self.indexes = tuple(indexes)

    def schemas(self) -> list[DatabaseSchema]:
        return [
            DatabaseSchema(
                db.name,
                self.version,
                tuple(
                    StoreSchema(
                        s.db,
                        self.version,
                        s.name,
                        s.key_path,
                        s.auto_increment,
                        self.indexes,
                        s.count,
                    )
                    for s in db.stores
                ),
            )
            for db in super().schemas()
        ]


@in_loop
async def test_a_harvest_spools_its_schema_rows_after_its_records(
    settings: Any, state: StateDB, tmp_path: Path
) -> None:
    sink = JsonLinesSink(tmp_path / "out")
    target = settings.target("app")

    async def harvest(reader: FakeReader) -> str:
        done = await harvest_target(
            settings=settings, target=target, state=state, sink=sink, opener=fake_opener(reader)
        )
        assert done.run.status == "committed", done.run.error
        return done.run.id

    first = await harvest(_Versioned({"shop": {"items": {1: {"id": 1}}}}, version=1, indexes=()))
    second = await harvest(
        _Versioned(
            {"shop": {"items": {1: {"id": 1}}, "carts": {}}},
            version=2,
            indexes=[IndexSchema("by_title", "title", False, False)],
        )
    )
    rows = list(read_rows(sink.path))
    assert [(r["run_id"], r["op"], r["store"]) for r in rows] == [
        (first, "+I", "items"),
        (first, "+S", None),
        (first, "+S", "items"),
        (second, "+S", None),
        (second, "+S", "carts"),
        (second, "+S", "items"),
    ]
    assert all(r["key"] is None for r in rows if r["op"] == "+S")
    items = json.loads(rows[-1]["value"])
    assert items["changes"] == [{"kind": "index_added", "index": "by_title"}]
    assert rows[-1]["db_version"] == 2 and json.loads(rows[-1]["old_value"])["indexes"] == []
    # The run counts its schema rows; the snapshot and history took only the record.
    run = state.get_run(second)
    assert run is not None and (run.rows, run.inserted) == (3, 0)
    assert [s.records for s in state.list_stores(target="app")] == [0, 1]
    assert list(state.run_changes(second)) == []


def test_checkpoints_of_an_older_pipeline_version_are_refused_as_an_upgrade(
    tmp_path: Path,
) -> None:
    (tmp_path / "job" / "chk-1").mkdir(parents=True)
    (tmp_path / "job" / "chk-1" / "_metadata").write_bytes(b"\0")
    # What a harvester before the schema rows wrote: the fingerprint alone (version 1).
    (tmp_path / checkpoints.FINGERPRINT_FILE).write_text("feedface\n")
    with pytest.raises(PipelineChangedError, match=r"pipeline version 1 → 2.*flink reset"):
        checkpoints.check_fingerprint(tmp_path, "0123456789abcdef")
    # The current version, other SQL: told as the statements' change.
    (tmp_path / checkpoints.FINGERPRINT_FILE).write_text("feedface 2\n")
    with pytest.raises(PipelineChangedError, match=r"flink\.statements changed"):
        checkpoints.check_fingerprint(tmp_path, "0123456789abcdef")
    checkpoints.check_fingerprint(tmp_path, "feedface")
