"""Change capture against the committed snapshot, with a fake reader that keeps the contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester.capture import Capture
from harvester.codec import value_hash
from harvester.reader import IndexSchema, Record, StoreSchema
from harvester.spool import SpoolWriter
from harvester.state import StateDB
from tests.support.fake_reader import (
    ORIGIN,
    Data,
    FakeReader,
    FakeStoreRead,
    capture_run,
    in_loop,
    record,
)


def ops(rows: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    ordered = sorted(rows, key=lambda row: (row["op"], row["store"], row["key"]))
    return [(row["op"], row["store"], json.loads(row["key"])) for row in ordered]


def before(row: dict[str, Any]) -> Any:
    """A row's `old_value`, parsed."""
    return None if row["old_value"] is None else json.loads(row["old_value"])


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    db = StateDB.open(tmp_path / "state")
    yield db
    db.close()


def _data() -> Data:
    return {
        "shop": {
            "orders": {n: {"id": n, "x": f"order {n}"} for n in range(10)},
            "notes": {f"n{n}": {"id": f"n{n}", "x": n} for n in range(5)},
        }
    }


@in_loop
async def test_first_run_inserts_everything_then_an_unchanged_run_emits_nothing(
    state: StateDB,
) -> None:
    data = _data()
    _, rows, stores = await capture_run(state, FakeReader(data))
    assert {row["op"] for row in rows} == {"+I"} and len(rows) == 15
    assert [(s.store, s.inserted, s.complete) for s in stores] == [
        ("notes", 5, True),
        ("orders", 10, True),
    ]
    _, rows, stores = await capture_run(state, FakeReader(data))
    assert rows == []
    assert [(s.store, s.unchanged, s.inserted + s.updated + s.deleted) for s in stores] == [
        ("notes", 5, 0),
        ("orders", 10, 0),
    ]


@in_loop
async def test_three_added_two_changed_one_deleted_gives_exactly_six_rows(state: StateDB) -> None:
    data = _data()
    await capture_run(state, FakeReader(data))
    orders = data["shop"]["orders"]
    for n in (10, 11, 12):
        orders[n] = {"id": n, "x": "new"}
    orders[3]["x"] = "changed"
    data["shop"]["notes"]["n1"]["x"] = 100
    del orders[7]
    run_id, rows, stores = await capture_run(state, FakeReader(data))
    assert ops(rows) == [
        ("+I", "orders", 10),
        ("+I", "orders", 11),
        ("+I", "orders", 12),
        ("+U", "notes", "n1"),
        ("+U", "orders", 3),
        ("-D", "orders", 7),
    ]
    changed = next(r for r in rows if r["op"] == "+U" and r["store"] == "orders")
    assert json.loads(changed["value"]) == {"id": 3, "x": "changed"}
    # The rows carry the committed value they replace, like the history below.
    assert {(r["op"], r["key"]): before(r) for r in rows} == {
        ("+I", "10"): None,
        ("+I", "11"): None,
        ("+I", "12"): None,
        ("+U", '"n1"'): {"id": "n1", "x": 1},
        ("+U", "3"): {"id": 3, "x": "order 3"},
        ("-D", "7"): {"id": 7, "x": "order 7"},
    }
    history = {(c.op, c.key): c for c in state.run_changes(run_id)}
    assert json.loads(history["+U", "3"].old_value or "") == {"id": 3, "x": "order 3"}
    assert json.loads(history["-D", "7"].old_value or "") == {"id": 7, "x": "order 7"}
    assert history["+I", "10"].old_value is None
    assert [(s.store, s.inserted, s.updated, s.deleted, s.unchanged) for s in stores] == [
        ("notes", 0, 1, 0, 4),
        ("orders", 3, 1, 1, 8),
    ]
    # The snapshot now holds the new state and the history exactly these changes.
    keys = {json.loads(r.key) for r in state.iter_records("app", ORIGIN, "shop", "orders")}
    assert keys == set(orders)
    assert sorted((c.op, c.store, c.key) for c in state.run_changes(run_id)) == [
        ("+I", "orders", "10"),
        ("+I", "orders", "11"),
        ("+I", "orders", "12"),
        ("+U", "notes", '"n1"'),
        ("+U", "orders", "3"),
        ("-D", "orders", "7"),
    ]


@in_loop
async def test_a_failed_store_read_emits_no_deletes_and_says_so(state: StateDB) -> None:
    data = _data()
    await capture_run(state, FakeReader(data))
    data["shop"]["orders"][0]["x"] = "changed"  # in the first batch, which is read
    data["shop"]["notes"].clear()  # a complete read: all five are gone
    run_id, rows, stores = await capture_run(state, FakeReader(data, broken=[("shop", "orders")]))
    assert ops(rows) == [("+U", "orders", 0)] + [("-D", "notes", f"n{n}") for n in range(5)]
    orders = next(s for s in stores if s.store == "orders")
    assert not orders.complete and orders.deleted == 0
    assert orders.problems == [{"key": None, "message": "store threw"}]
    run = state.get_run(run_id)
    assert run is not None and run.incomplete_stores == 1
    # The keys the failed read never reached are still in the snapshot.
    left = [json.loads(r.key) for r in state.iter_records("app", ORIGIN, "shop", "orders")]
    assert sorted(left) == list(range(10))


@in_loop
async def test_full_run_spools_every_record_as_insert_and_keeps_the_true_diff(
    state: StateDB,
) -> None:
    data = _data()
    await capture_run(state, FakeReader(data))
    data["shop"]["orders"][1]["x"] = "changed"
    del data["shop"]["orders"][2]
    run_id, rows, stores = await capture_run(state, FakeReader(data), full=True)
    assert ops(rows).count(("-D", "orders", 2)) == 1
    assert sorted(r["op"] for r in rows) == ["+I"] * 14 + ["-D"]
    # A +I has no before-image, even for a record that changed; a -D still has its value.
    assert {r["key"]: before(r) for r in rows if r["op"] == "-D"} == {
        "2": {"id": 2, "x": "order 2"}
    }
    assert all(r["old_value"] is None for r in rows if r["op"] == "+I")
    orders = next(s for s in stores if s.store == "orders")
    assert (orders.inserted, orders.updated, orders.deleted, orders.unchanged) == (0, 1, 1, 8)
    assert orders.rows == 10
    assert sorted((c.op, json.loads(c.key)) for c in state.run_changes(run_id)) == [
        ("+U", 1),
        ("-D", 2),
    ]
    _, rows, _ = await capture_run(state, FakeReader(data))
    assert rows == []


@in_loop
async def test_lone_surrogates_never_crash_and_match_on_the_next_run(state: StateDB) -> None:
    escaped = Record('"k\\ud800"', '"v\\udfff"', value_hash('"v\\udfff"'))
    raw = Record('"r\ud800"', '"v\udc00"', "rawhash")
    reader = FakeReader({"db": {"s": {}}})
    reader.read_store = lambda store, **_: FakeStoreRead(store, [escaped, raw], 10, None)  # type: ignore[method-assign]
    _, rows, _ = await capture_run(state, reader)
    assert [(r["key"], r["value"]) for r in rows] == [
        ('"k\\ud800"', '"v\\udfff"'),
        ('"r\\ud800"', '"v\\udc00"'),
    ]
    _, rows, stores = await capture_run(state, reader)
    assert rows == [] and stores[0].unchanged == 2


@in_loop
async def test_batches_larger_than_one_lookup(state: StateDB) -> None:
    data: Data = {"db": {"big": {n: {"id": n} for n in range(1234)}}}
    await capture_run(state, FakeReader(data, batch=1000))
    del data["db"]["big"][1233]
    data["db"]["big"][5] = {"id": 5, "x": 1}
    _, rows, stores = await capture_run(state, FakeReader(data, batch=1000))
    assert ops(rows) == [("+U", "big", 5), ("-D", "big", 1233)]
    assert [before(r) for r in rows] == [{"id": 5}, {"id": 1233}]
    assert stores[0].unchanged == 1232


@in_loop
async def test_old_values_of_more_rows_than_one_lookup(state: StateDB) -> None:
    data: Data = {"db": {"big": {n: {"id": n} for n in range(2000)}}}
    await capture_run(state, FakeReader(data, batch=1000))
    for n in range(0, 1400, 2):
        data["db"]["big"][n] = {"id": n, "new": True}
    for n in range(1, 2000, 2):
        del data["db"]["big"][n]
    # One batch of 1000 records: 700 old values of updates, then 1000 of deletes, to fetch.
    _, rows, stores = await capture_run(state, FakeReader(data, batch=2000))
    assert (stores[0].updated, stores[0].deleted) == (700, 1000)
    assert all(before(r) == {"id": json.loads(r["key"])} for r in rows)


@in_loop
async def test_capture_leaves_the_snapshot_alone_until_commit(state: StateDB) -> None:
    data = _data()
    await capture_run(state, FakeReader(data))
    data["shop"]["orders"].clear()
    run_id, rows, _ = await capture_run(state, FakeReader(data), commit=False)
    assert len(rows) == 10
    assert len(list(state.iter_records("app", ORIGIN, "shop", "orders"))) == 10
    assert state.commit_run(run_id, rows)
    assert list(state.iter_records("app", ORIGIN, "shop", "orders")) == []


@in_loop
async def test_compound_key_paths_are_recorded_as_lists(state: StateDB) -> None:
    schema = StoreSchema(
        db="db",
        db_version=2,
        name="pairs",
        key_path=["a", "b"],
        auto_increment=False,
        indexes=(IndexSchema("by_xy", ["x", "y"], True, False),),
        count=1,
    )
    run_id = state.start_run("app")
    writer = SpoolWriter(state.spool_dir, run_id=run_id, target="app", origin=ORIGIN)
    capture = Capture(state, writer, target="app", origin=ORIGIN)
    try:
        read = FakeStoreRead(schema, [record([1, 2], {"a": 1, "b": 2})], 10, None)
        stored = await capture.store(schema, read)
    finally:
        capture.close()
        writer.discard()
    assert stored.key_path == ["a", "b"]
    assert stored.indexes == [
        {"name": "by_xy", "key_path": ["x", "y"], "unique": True, "multi_entry": False}
    ]
    state.mark_read(run_id, origin=ORIGIN, stores=[stored], rows=1)
    (kept,) = state.run_stores(run_id)
    assert (kept.key_path, kept.indexes) == (stored.key_path, stored.indexes)


@in_loop
async def test_a_store_with_a_snapshot_is_read_hash_first_asking_only_for_changed_values(
    state: StateDB,
) -> None:
    data: Data = {"db": {"big": {n: {"id": n} for n in range(50)}}}
    reader = FakeReader(data, batch=7)
    await capture_run(state, reader)
    assert not reader.last_read.hash_first  # nothing to compare with yet

    data["db"]["big"][3] = {"id": 3, "x": 1}
    data["db"]["big"][60] = {"id": 60}
    del data["db"]["big"][10]
    _, rows, stores = await capture_run(state, reader)
    assert reader.last_read.hash_first
    assert sorted(reader.last_read.asked) == ["3", "60"]
    assert ops(rows) == [("+I", "big", 60), ("+U", "big", 3), ("-D", "big", 10)]
    assert [before(r) for r in rows if r["op"] != "+I"] == [{"id": 3}, {"id": 10}]
    assert (stores[0].unchanged, stores[0].records) == (48, 50)

    # --full sends every value: nothing is asked for.
    _, rows, _ = await capture_run(state, reader, full=True)
    assert not reader.last_read.hash_first and len(rows) == 50


@in_loop
async def test_a_wrong_hash_from_the_page_costs_a_read_of_the_value_never_a_change(
    state: StateDB,
) -> None:
    data: Data = {"db": {"s": {n: {"id": n} for n in range(5)}}}
    reader = FakeReader(data)
    await capture_run(state, reader)
    good = reader.read_store

    def lying(store: StoreSchema, *, hash_first: bool = False) -> FakeStoreRead:
        read = good(store, hash_first=hash_first)
        read._records[2] = Record(read._records[2].key, read._records[2].value, "0" * 64)
        return read

    reader.read_store = lying  # type: ignore[method-assign]
    _, rows, stores = await capture_run(state, reader)
    assert reader.last_read.asked == ["2"]
    assert rows == [] and stores[0].unchanged == 5
