"""A store deleted or a database removed takes its records with it: the run that finds it gone
(by the schema history's rule) spools a `-D`, with the committed value, for each record, before
its `-S`; the commit applies them and the store leaves `stores`. What the run could not have
seen (an incomplete read, a store the globs leave out, a partial run) keeps its records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harvester.harvest import harvest_target
from harvester.sinks import JsonLinesSink
from harvester.spool import read_rows
from harvester.state import StateDB
from tests.support.fake_reader import ORIGIN, Data, FakeReader, fake_opener, in_loop, text


class _Harvests:
    """Runs of target `app` through read, spool, send (JSON lines) and the real commit."""

    def __init__(self, settings: Any, state: StateDB, folder: Path) -> None:
        self.settings = settings
        self.state = state
        self.sink = JsonLinesSink(folder / "out")
        self.seen = 0  # rows of the sink's file that earlier runs wrote

    async def run(
        self,
        data: Data,
        *,
        stores: list[str] | None = None,
        only: list[tuple[str, str]] | None = None,
        broken: tuple[tuple[str, str], ...] = (),
        batch: int = 2,
    ) -> tuple[str, list[dict[str, Any]]]:
        """One committed run that read `data`: its id and the rows it sent."""
        target = self.settings.target("app")
        if stores is not None:
            target = target.model_copy(update={"stores": stores})
        done = await harvest_target(
            settings=self.settings,
            target=target,
            state=self.state,
            sink=self.sink,
            stores=only,
            opener=fake_opener(FakeReader(data, batch=batch, broken=broken)),
        )
        assert done.run.status == "committed", done.run.error
        rows = list(read_rows(self.sink.path)) if self.sink.path.exists() else []
        new, self.seen = rows[self.seen :], len(rows)
        assert all(row["run_id"] == done.run.id for row in new)
        return done.run.id, new

    def records(self, db: str, store: str) -> dict[str, str]:
        return {
            r.key: r.value for r in self.state.iter_records("app", ORIGIN, db, store) if r.value
        }

    def stores(self) -> dict[tuple[str, str], int]:
        return {(s.db, s.store): s.records for s in self.state.list_stores(target="app")}


@pytest.fixture
def runs(settings: Any, state: StateDB, tmp_path: Path) -> _Harvests:
    return _Harvests(settings, state, tmp_path)


def _ops(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["op"], r["db_name"], r["store"], r["key"]) for r in rows]


ITEMS = {1: {"id": 1, "x": "a"}, 2: {"id": 2, "x": "b"}}
ORDERS = {"o1": {"id": "o1", "total": 5}, "o2": {"id": "o2", "total": 7}, "o3": {"id": "o3"}}


@in_loop
async def test_a_deleted_store_sends_minus_d_for_each_record_then_minus_s(
    runs: _Harvests, state: StateDB
) -> None:
    await runs.run({"shop": {"items": ITEMS, "orders": ORDERS}})
    run_id, rows = await runs.run({"shop": {"items": ITEMS}})
    # The records' deletes first, in the snapshot's order, with the values they delete; then
    # the store's -S. Nothing else changed.
    assert _ops(rows) == [
        *(("-D", "shop", "orders", text(key)) for key in ORDERS),
        ("-S", "shop", "orders", None),
    ]
    for row, value in zip(rows, ORDERS.values(), strict=False):
        assert (row["old_value"], row["value"], row["value_hash"]) == (text(value), None, None)
        assert row["db_version"] == 1
    # The commit applied them: the snapshot, `stores` and the history.
    assert runs.records("shop", "orders") == {}
    assert runs.stores() == {("shop", "items"): 2}
    deleted = list(state.run_changes(run_id))
    assert [(c.store, c.op, c.old_value) for c in deleted] == [
        ("orders", "-D", text(value)) for value in ORDERS.values()
    ]
    run = state.get_run(run_id)
    assert run is not None and (run.rows, run.deleted, run.inserted) == (4, 3, 0)
    # `run_stores` is the schema the run read: the gone store has no row there.
    assert [s.store for s in state.run_stores(run_id)] == ["items"]
    assert [c.kind for c in state.schema_changes("app", [run_id])] == ["store_deleted"]
    # Gone once: the next run finds nothing.
    assert (await runs.run({"shop": {"items": ITEMS}}))[1] == []


@in_loop
async def test_a_removed_database_deletes_the_records_of_every_store(
    runs: _Harvests, state: StateDB
) -> None:
    old: Data = {"old": {"a": {1: {"id": 1}}, "b": {2: {"id": 2}, 3: {"id": 3}}, "empty": {}}}
    await runs.run({"shop": {"items": ITEMS}, **old})
    run_id, rows = await runs.run({"shop": {"items": ITEMS}})
    assert _ops(rows) == [
        ("-D", "old", "a", "1"),
        ("-D", "old", "b", "2"),
        ("-D", "old", "b", "3"),
        ("-S", "old", None, None),
    ]
    assert [r["old_value"] for r in rows[:3]] == [text({"id": n}) for n in (1, 2, 3)]
    assert runs.stores() == {("shop", "items"): 2}
    assert runs.records("old", "b") == {}
    run = state.get_run(run_id)
    assert run is not None and run.deleted == 3
    assert state.schema_dbs("app")[0].db == "shop" and len(state.schema_dbs("app")) == 1


@pytest.mark.parametrize("why", ["incomplete read", "globs", "partial run", "no longer named"])
@in_loop
async def test_a_store_not_judged_gone_keeps_its_records(
    runs: _Harvests, state: StateDB, why: str
) -> None:
    await runs.run({"shop": {"items": ITEMS, "orders": ORDERS}, "old": {"a": {1: {"id": 1}}}})
    # Each time the reader returns only what the run selects, as `OriginReader` does.
    now: Data = {"shop": {"items": ITEMS}}
    if why == "incomplete read":
        # `items` stops short: the database was not read whole, and `old` is still there.
        run_id, rows = await runs.run(
            {**now, "old": {"a": {1: {"id": 1}}}}, broken=(("shop", "items"),), batch=1
        )
    elif why == "globs":
        run_id, rows = await runs.run(now, stores=["shop/items"])
    elif why == "partial run":
        # A watch-mode run of one store (`harvest_target(stores=…)`).
        run_id, rows = await runs.run(now, only=[("shop", "items")])
    else:
        # The globs stopped selecting `orders` and `old` alone: both could be there still.
        run_id, rows = await runs.run(now, stores=["shop/items", "old/nothing"])
    assert [r for r in rows if r["op"] in ("-D", "-S")] == []
    assert len(runs.records("shop", "orders")) == 3
    assert len(runs.records("old", "a")) == 1
    assert runs.stores()[("shop", "orders")] == 3
    assert list(state.run_changes(run_id, op="-D")) == []


@in_loop
async def test_a_removed_databases_store_the_globs_leave_out_keeps_its_records(
    runs: _Harvests,
) -> None:
    await runs.run({"shop": {"items": ITEMS}, "old": {"a": {1: {"id": 1}}, "b": {2: {"id": 2}}}})
    # The globs select `old/a` only: `old` is judged removed, but `b` was not read.
    _, rows = await runs.run({"shop": {"items": ITEMS}}, stores=["shop/*", "old/a"])
    assert _ops(rows) == [("-D", "old", "a", "1"), ("-S", "old", None, None)]
    assert runs.records("old", "b") == {"2": text({"id": 2})}
    assert runs.stores() == {("old", "b"): 1, ("shop", "items"): 2}


@in_loop
async def test_a_big_deleted_store_is_streamed_whole(runs: _Harvests, state: StateDB) -> None:
    big = {n: {"id": n, "text": f"record {n}"} for n in range(20_000)}
    await runs.run({"shop": {"items": ITEMS, "big": big}}, batch=1000)
    run_id, rows = await runs.run({"shop": {"items": ITEMS}}, batch=1000)
    assert len(rows) == 20_001 and rows[-1]["op"] == "-S"
    by_key = {row["key"]: row["old_value"] for row in rows[:-1]}
    assert by_key == {text(n): text(value) for n, value in big.items()}
    assert {row["op"] for row in rows[:-1]} == {"-D"}
    assert runs.records("shop", "big") == {}
    assert state.change_counts(run_id) == {"-D": 20_000}
    run = state.get_run(run_id)
    assert run is not None and run.deleted == 20_000
    assert runs.stores() == {("shop", "items"): 2}


@in_loop
async def test_a_store_created_again_is_new(runs: _Harvests) -> None:
    await runs.run({"shop": {"items": ITEMS, "orders": ORDERS}})
    await runs.run({"shop": {"items": ITEMS}})
    _, rows = await runs.run({"shop": {"items": ITEMS, "orders": {"o9": {"id": "o9"}}}})
    assert _ops(rows) == [("+I", "shop", "orders", '"o9"'), ("+S", "shop", "orders", None)]
    assert json.loads(rows[-1]["value"])["changes"] == [{"kind": "store_created"}]
    assert runs.stores() == {("shop", "items"): 2, ("shop", "orders"): 1}
