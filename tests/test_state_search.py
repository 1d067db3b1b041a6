"""`StateDB.search_records` over real state DBs written through the commit: text search beyond
the first records, case, the 1–2 character rule, orders, paging, the index kept in step with
later commits, FTS syntax as literal text, and the migration that builds the index."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester.state import SCHEMA_VERSION, StateDB, Store, state_db_path
from harvester.state.schema import _MIGRATIONS
from harvester.state.search import COUNT_CAP
from tests.support.inspect_data import commit_records

N = 5000


def _value(n: int) -> dict[str, Any]:
    return {"id": n, "name": f"Customer {n}", "email": f"customer{n}@example.com", "city": "Oslo"}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StateDB, Store]]:
    folder = tmp_path_factory.mktemp("search") / "state"
    with StateDB.open(folder) as state:
        first = {"users": {n: _value(n) for n in range(N)}}
        commit_records(state, first, {})
        # A second run changes every 10th record: last_changed then orders two runs.
        second = {"users": {**first["users"], **{n: _value(n) | {"v": 2} for n in range(0, N, 10)}}}
        commit_records(state, second, first)
        yield state, state.list_stores()[0]


def _keys(page: Any) -> list[str]:
    return [record.key for record in page.records]


def test_text_is_found_beyond_the_first_records_in_any_case(big: tuple[StateDB, Store]) -> None:
    state, store = big
    page = state.search_records(store, text="CUSTOMER4321@Example")
    assert (_keys(page), page.total, page.capped) == (["4321"], 1, False)
    # A word of every value: counted up to the cap.
    common = state.search_records(store, text="oslo", limit=10)
    assert (len(common.records), common.total, common.capped) == (10, N, False)
    assert state.search_records(store, text="4999").total == 1
    assert state.search_records(store, text="no such thing").total == 0


def test_one_or_two_characters_match_keys_by_prefix(big: tuple[StateDB, Store]) -> None:
    state, store = big
    page = state.search_records(store, text="42", order="key", limit=200)
    assert _keys(page) == sorted(k for k in map(str, range(N)) if k.startswith("42"))
    assert page.total == 111
    assert state.search_records(store, text="x").total == 0


def test_orders_both_ways_and_pages(big: tuple[StateDB, Store]) -> None:
    state, store = big
    everything = [str(n) for n in range(N)]
    assert _keys(state.search_records(store, limit=N)) == everything
    assert _keys(state.search_records(store, descending=True, limit=3)) == ["4999", "4998", "4997"]
    by_key = _keys(state.search_records(store, order="key", limit=N))
    assert by_key == sorted(everything)  # text order: "10" before "9"
    assert _keys(state.search_records(store, order="key", descending=True, limit=N)) == by_key[::-1]
    changed = _keys(state.search_records(store, order="last_changed", limit=N))
    later = [str(n) for n in range(0, N, 10)]
    assert changed[-len(later) :] == later
    newest = _keys(state.search_records(store, order="last_changed", descending=True, limit=3))
    assert newest == ["4990", "4980", "4970"]
    pages = [
        state.search_records(store, text="oslo", offset=o, limit=1000) for o in range(0, N, 1000)
    ]
    assert [key for page in pages for key in _keys(page)] == everything
    assert {page.total for page in pages} == {N}
    assert state.search_records(store, offset=N).records == []
    with pytest.raises(ValueError, match="first_seen, key, last_changed"):
        state.search_records(store, order="rowid")


def test_pages_past_the_middle_are_those_of_the_whole_order(big: tuple[StateDB, Store]) -> None:
    """A page past the middle is read from the other end; it is still the page asked for."""
    state, store = big
    for order in ("first_seen", "key", "last_changed"):
        for descending in (False, True):
            whole = _keys(state.search_records(store, order=order, descending=descending, limit=N))
            for offset in (N // 2 - 1, N // 2 + 1, N - 70, N - 7, N - 1):
                page = state.search_records(
                    store, order=order, descending=descending, offset=offset, limit=50
                )
                assert _keys(page) == whole[offset : offset + 50], (order, descending, offset)


def test_a_common_text_is_capped(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as state:
        records = {n: {"n": n, "w": "common"} for n in range(COUNT_CAP + 5)}
        commit_records(state, {"users": records}, {})
        store = state.list_stores()[0]
        assert state.search_records(store, text='{"n').total == 0  # JSON syntax is not indexed
        for order in ("first_seen", "key", "last_changed"):
            page = state.search_records(store, text="COMMON", order=order, limit=3)
            assert (page.total, page.capped, len(page.records)) == (COUNT_CAP, True, 3)
        page = state.search_records(store, text="common", order="key", descending=True, limit=2)
        assert _keys(page) == ["9999", "9998"]
        assert state.search_records(store).total == COUNT_CAP + 5


def test_a_big_store_in_last_changed_order_pages_as_a_full_sort_would(tmp_path: Path) -> None:
    """The merge of the two walks (changed since first seen, and the rest) gives the pages of a
    sort by last-changed run, then first-seen order, in both directions and with a text."""
    with StateDB.open(tmp_path / "state") as state:
        first = {n: {"n": n, "w": "common"} for n in range(COUNT_CAP + 1500)}
        commit_records(state, {"users": first}, {})
        second = {n: v | {"v": 2} if n % 50 == 0 else v for n, v in first.items()}
        commit_records(state, {"users": second}, {"users": first})
        third = {n: v | {"v": 3} if n % 70 == 0 else v for n, v in second.items() if n % 13}
        third |= {COUNT_CAP + 1000 + n: {"n": n, "w": "common"} for n in range(200)}
        commit_records(state, {"users": third}, {"users": second})
        store = state.list_stores()[0]
        in_order = state.search_records(store, limit=len(third)).records
        expected = [r.key for r in sorted(in_order, key=lambda r: r.last_changed_run or "")]
        assert len(expected) == len(third) > COUNT_CAP  # big: the merge, not a sort
        for text in ("", "common"):
            for descending in (False, True):
                want = expected[::-1] if descending else expected
                for offset in (0, 7, 4321, len(want) - 20, len(want)):
                    page = state.search_records(
                        store,
                        text=text,
                        order="last_changed",
                        descending=descending,
                        offset=offset,
                        limit=50,
                    )
                    assert _keys(page) == want[offset : offset + 50], (text, descending, offset)


def test_the_index_follows_updates_and_deletes(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as state:
        first = {"users": {1: {"name": "alice"}, 2: {"name": "bob"}, 3: {"name": "carol"}}}
        commit_records(state, first, {})
        second = {"users": {1: {"name": "alicia"}, 3: {"name": "carol"}, 4: {"name": "dave"}}}
        commit_records(state, second, first)
        store = state.list_stores()[0]
        assert _keys(state.search_records(store, text="alici")) == ["1"]
        assert state.search_records(store, text="alice").total == 0
        assert state.search_records(store, text="bob").total == 0  # deleted
        assert _keys(state.search_records(store, text="dave")) == ["4"]
        conn = sqlite3.connect(state_db_path(tmp_path / "state"))
        conn.execute("INSERT INTO snapshot_search (snapshot_search) VALUES ('integrity-check')")
        conn.close()


HOSTILE = [
    'say "hi"',
    "a OR b",
    "NEAR(x y)",
    "tag*",
    "-minus",
    "col:on",
    "50% _off_",
    "(x)",
    "a\\b",
]


def test_fts_syntax_is_literal_text(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as state:
        records = {n: {"note": text} for n, text in enumerate(HOSTILE)}
        commit_records(state, {"notes": records | {99: {"note": "plain"}}}, {})
        store = state.list_stores()[0]
        for n, text in enumerate(HOSTILE):
            assert _keys(state.search_records(store, text=text)) == [str(n)], text
        assert state.search_records(store, text='"""').total == 0
        assert state.search_records(store, text="AND").total == 0


def test_migration_from_5_builds_the_index(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    with StateDB.open(folder) as state:
        commit_records(state, {"users": {n: _value(n) for n in range(20)}}, {})
    conn = sqlite3.connect(state_db_path(folder))
    for trigger in ("insert", "update", "delete"):
        conn.execute(f"DROP TRIGGER snapshot_search_{trigger}")
    conn.execute("DROP TABLE snapshot_search")
    conn.execute("DROP INDEX snapshot_changed")
    for column in ("trigger", "trigger_events"):  # schema 8's
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 5")
    conn.close()
    assert len(_MIGRATIONS) == SCHEMA_VERSION >= 7
    with StateDB.open(folder) as state:
        store = state.list_stores()[0]
        assert _keys(state.search_records(store, text="customer17@")) == ["17"]
    conn = sqlite3.connect(state_db_path(folder))
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema")}
    conn.close()
    # 7 made the index again without its per-record sizes, and the last-changed index.
    assert {"snapshot_search_data", "snapshot_changed"} <= names
    assert "snapshot_search_docsize" not in names
