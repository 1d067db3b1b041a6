"""The changes feed over a real state DB written through the commit: commit order, the values
each change wrote and replaced, paging that never skips or repeats a row (also after a reopen),
filters, the byte bound, and positions that retention or another state DB made unusable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harvester.codec import canonical
from harvester.errors import FeedGoneError
from harvester.state import StateDB
from harvester.state.feed import FeedRow, Position
from tests.support.inspect_data import commit_records

BIG = 1 << 30

# Three runs of one store and one of another: inserts, an update, a delete, a re-insert.
RUNS: list[dict[str, dict[Any, Any]]] = [
    {"users": {1: {"v": "a"}, 2: {"v": "b"}}},
    {"users": {1: {"v": "a2"}, 2: {"v": "b"}}, "orders": {"o": {"n": 1}}},
    {"users": {1: {"v": "a2"}}, "orders": {"o": {"n": 1}}},
    {"users": {1: {"v": "a2"}, 2: {"v": "b3"}}, "orders": {"o": {"n": 1}}},
]
# What the feed should say, in commit order: (run, store, key, op, value, old_value).
EXPECTED = [
    (0, "users", 1, "+I", {"v": "a"}, None),
    (0, "users", 2, "+I", {"v": "b"}, None),
    (1, "users", 1, "+U", {"v": "a2"}, {"v": "a"}),
    (1, "orders", "o", "+I", {"n": 1}, None),
    (2, "users", 2, "-D", None, {"v": "b"}),
    (3, "users", 2, "+I", {"v": "b3"}, None),
]


def _commit_all(state: StateDB, runs: list[dict[str, dict[Any, Any]]]) -> list[str]:
    ids, before = [], {}
    for records in runs:
        ids.append(commit_records(state, records, before))
        before = records
    return ids


def _seen(rows: list[FeedRow], ids: list[str]) -> list[tuple[Any, ...]]:
    return [
        (
            ids.index(row["run_id"]),
            row["store"],
            row["key"],
            row["op"],
            row["value"],
            row["old_value"],
        )
        for row in rows
    ]


def _expected(store: str | None = None) -> list[tuple[Any, ...]]:
    return [
        (run, s, canonical(key), op, value and canonical(value), old and canonical(old))
        for run, s, key, op, value, old in EXPECTED
        if store is None or s == store
    ]


def _walk(state: StateDB, after: Position, **kwargs: Any) -> tuple[list[FeedRow], Position]:
    rows: list[FeedRow] = []
    while True:
        page = state.feed_page(after, **kwargs)
        rows.extend(page.rows)
        assert page.next != after or not page.rows
        after = page.next
        if not page.more:
            return rows, after


def test_the_feed_is_every_change_in_commit_order_with_both_values(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as state:
        ids = _commit_all(state, RUNS)
        page = state.feed_page(state.feed_start(), limit=100, max_bytes=BIG)
        assert not page.more
        assert _seen(page.rows, ids) == _expected()
        assert [row["seq"] for row in page.rows] == sorted(row["seq"] for row in page.rows)
        first = page.rows[0]
        assert (first["target"], first["db_name"], first["db_version"]) == ("shop", "shopdb", 3)
        assert first["committed_at"] and first["harvested_at"] and first["value_hash"]
        assert [row["run_row"] for row in page.rows[:2]] == [1, 2]
        # At the end: the next page is empty, and grows once another run is committed.
        assert state.feed_page(page.next, limit=100, max_bytes=BIG).rows == []
        more = commit_records(state, {"users": {1: {"v": "a4"}, 2: {"v": "b3"}}}, RUNS[-1])
        later = state.feed_page(page.next, limit=100, max_bytes=BIG).rows
        assert [(row["run_id"], row["op"], row["key"]) for row in later] == [(more, "+U", "1")]


def test_pages_of_one_row_skip_and_repeat_nothing_across_a_reopen(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as state:
        ids = _commit_all(state, RUNS)
        after = state.feed_start()
        first = state.feed_page(after, limit=2, max_bytes=BIG)
        assert first.more and len(first.rows) == 2
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        rest, _end = _walk(state, first.next, limit=1, max_bytes=BIG)
    assert _seen(first.rows + rest, ids) == _expected()


def test_filters_and_the_byte_bound(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as state:
        ids = _commit_all(state, RUNS)
        start = state.feed_start()
        orders, end = _walk(state, start, limit=100, max_bytes=BIG, store=("shopdb", "orders"))
        assert _seen(orders, ids) == _expected("orders")
        # The end of a filtered walk is past runs whose rows were all filtered out.
        assert end.seq == state.feed_last_seq()
        assert state.feed_page(start, limit=100, max_bytes=BIG, target="nobody").rows == []
        # The byte bound: one row a page (at least one, however small the bound).
        rows, _end = _walk(state, start, limit=100, max_bytes=1)
        assert _seen(rows, ids) == _expected()
        assert len(state.feed_page(start, limit=100, max_bytes=1).rows) == 1


def test_positions_retention_removed_or_from_another_db_are_gone(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state", keep_runs=2) as state:
        ids = _commit_all(state, RUNS[:2])
        old_start = state.feed_start()
        assert old_start == Position(0)
        in_first_run = state.feed_page(old_start, limit=1, max_bytes=BIG).next
        # Two more runs: the first two are pruned.
        commit_records(state, RUNS[2], RUNS[1])
        commit_records(state, RUNS[3], RUNS[2])
        start = state.feed_start()
        assert start.seq > 0
        for gone in (old_start, in_first_run):
            with pytest.raises(FeedGoneError):
                state.feed_page(gone, limit=10, max_bytes=BIG)
        kept = state.feed_page(start, limit=100, max_bytes=BIG).rows
        assert {row["run_id"] for row in kept}.isdisjoint(ids)
        assert all(row["seq"] > start.seq for row in kept)
        with pytest.raises(FeedGoneError, match="another state folder"):
            state.feed_page(Position(start.seq + 1, 0, "someone-else"), limit=1, max_bytes=BIG)
        with pytest.raises(FeedGoneError, match="not one this state DB gave"):
            state.feed_page(Position(start.seq + 5), limit=1, max_bytes=BIG)
