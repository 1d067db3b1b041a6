"""The state DB: files and schema, the commit protocol, retention and the query API."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester.errors import StateError
from harvester.limits import MAX_PROBLEMS
from harvester.state import SCHEMA_VERSION, StateDB, change_op, state_db_path
from harvester.state.records import Run, from_row
from harvester.state.schema import _MIGRATIONS
from tests.support.fake_reader import ORIGIN, Data, FakeReader, capture_run, in_loop


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    db = StateDB.open(tmp_path / "state")
    yield db
    db.close()


def test_the_db_is_private_in_wal_mode_and_versioned(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    StateDB.open(folder).close()
    path = state_db_path(folder)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.execute("CREATE TABLE probe (x)")  # a write, so that the -wal file exists
    for name in ("state.db-wal", "state.db-shm"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
    StateDB.open(folder).close()  # opening again migrates nothing


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    StateDB.open(folder).close()
    conn = sqlite3.connect(state_db_path(folder))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer than this harvester"):
        StateDB.open(folder)


def _db_at(folder: Path, version: int) -> sqlite3.Connection:
    """A state DB as the release of schema `version` made it (its migrations only), open."""
    folder.mkdir(mode=0o700)
    conn = sqlite3.connect(state_db_path(folder), isolation_level=None)
    for number, script in enumerate(_MIGRATIONS[:version], start=1):
        conn.executescript(f"{script}; PRAGMA user_version = {number};")
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_an_older_schema_is_migrated(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    _db_at(folder, 1).close()
    with pytest.raises(StateError, match="run `harvester harvest` once"):
        StateDB.open(folder, readonly=True)
    StateDB.open(folder).close()
    conn = sqlite3.connect(state_db_path(folder))
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert "old_value" in _columns(conn, "changes")
    assert {"log_seq", "handed_off_at", "consumed_at", "consumed_rows"} <= set(
        _columns(conn, "runs")
    )
    conn.close()


def test_runs_committed_before_schema_3_count_as_delivered(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    conn = _db_at(folder, 2)
    conn.executemany(
        "INSERT INTO runs (id, target, status, pending, started_at, finished_at, seq, rows) "
        "VALUES (?, 'app', ?, ?, '2026-11-26T15:00:00.000Z', ?, ?, ?)",
        [
            ("sent", "committed", 0, "2026-11-26T15:00:09.000Z", 1, 7),
            ("empty", "committed", 0, "2026-11-26T15:01:00.000Z", 2, 0),
            ("unsent", "failed", 1, "2026-11-26T15:02:00.000Z", None, 3),
        ],
    )
    conn.close()
    with StateDB.open(folder) as state:
        runs = {run.id: run for run in state.list_runs()}
        sent, empty, unsent = runs["sent"], runs["empty"], runs["unsent"]
        assert (sent.consumed_at, sent.consumed_rows) == (sent.finished_at, 7)
        assert (empty.consumed_at, empty.consumed_rows) == (empty.finished_at, 0)
        assert (unsent.consumed_at, unsent.consumed_rows) == (None, 0)
        assert {(run.log_seq, run.handed_off_at) for run in runs.values()} == {(None, None)}
        # What they were sent by was the delivery: nothing waits for a consumer.
        assert state.undelivered() == []
        assert state.hand_off("unsent") == 1


def test_readonly_needs_an_existing_db_and_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state database"):
        StateDB.open(tmp_path / "none", readonly=True)
    StateDB.open(tmp_path / "state").close()
    with StateDB.open(tmp_path / "state", readonly=True) as db:
        assert not db.writable()
        with pytest.raises(StateError):
            db.start_run("app")


def _data() -> Data:
    return {"db": {"s": {n: {"id": n, "v": "x" * n} for n in range(6)}}}


@in_loop
async def test_a_second_commit_of_a_run_changes_nothing(state: StateDB) -> None:
    run_id, rows, _ = await capture_run(state, FakeReader(_data()))
    before = state.get_run(run_id)
    assert before is not None and before.status == "committed" and not before.pending
    assert not state.commit_run(run_id, rows)
    assert state.get_run(run_id) == before
    assert len(list(state.run_changes(run_id))) == 6


@in_loop
async def test_a_failing_commit_leaves_no_trace(state: StateDB) -> None:
    data = _data()
    await capture_run(state, FakeReader(data))
    data["db"]["s"][0]["v"] = "changed"
    del data["db"]["s"][5]
    run_id, rows, _ = await capture_run(state, FakeReader(data), commit=False)

    def broken() -> Iterator[dict[str, Any]]:
        # What `spool.checked_rows` does at a bad line, after the good ones went through.
        yield from rows
        raise StateError("line 3: a row of run 'someone-else'")

    with pytest.raises(StateError, match="someone-else"):
        state.commit_run(run_id, broken())
    run = state.get_run(run_id)
    assert run is not None and run.status == "read" and run.pending
    assert len(list(state.iter_records("app", ORIGIN, "db", "s"))) == 6
    assert list(state.run_changes(run_id)) == []
    assert state.commit_run(run_id, rows)
    assert len(list(state.iter_records("app", ORIGIN, "db", "s"))) == 5


@in_loop
async def test_only_a_pending_run_can_be_committed(state: StateDB) -> None:
    run_id = state.start_run("app")
    with pytest.raises(StateError, match="no spool to commit"):
        state.commit_run(run_id, [])
    with pytest.raises(StateError, match="no run"):
        state.commit_run("nope", [])


@in_loop
async def test_fail_run_keeps_a_pending_spool_pending_and_a_commit_committed(
    state: StateDB,
) -> None:
    run_id, rows, _ = await capture_run(state, FakeReader(_data()), commit=False)
    state.fail_run(run_id, "sending failed: boom")
    run = state.get_run(run_id)
    assert run is not None and (run.status, run.pending, run.error) == (
        "failed",
        True,
        "sending failed: boom",
    )
    assert [r.id for r in state.pending_runs("app")] == [run_id]
    assert state.commit_run(run_id, rows)
    run = state.get_run(run_id)
    # The failed send's error is not the committed run's.
    assert run is not None and (run.status, run.pending, run.error) == ("committed", False, None)
    state.fail_run(run_id, "too late")
    run = state.get_run(run_id)
    assert run is not None and run.status == "committed" and not run.pending
    assert run.error is None


@in_loop
async def test_stores_track_records_bytes_and_runs(state: StateDB) -> None:
    data = _data()
    first, _, _ = await capture_run(state, FakeReader(data))
    (store,) = state.list_stores()
    assert (store.target, store.origin, store.db, store.store) == ("app", ORIGIN, "db", "s")
    assert store.key_path == "id" and not store.auto_increment
    assert store.indexes == [
        {"name": "by_x", "key_path": "x", "unique": False, "multi_entry": False}
    ]
    values = [json.dumps({"id": n, "v": "x" * n}, separators=(",", ":")) for n in range(6)]
    assert (store.records, store.bytes) == (6, sum(len(v) for v in values))
    assert (store.first_run, store.last_run, store.last_changed_run) == (first, first, first)
    data["db"]["s"][1]["v"] = "yyyyyyyyyy"  # 9 more bytes
    del data["db"]["s"][2]
    data["db"]["s"][9] = {"id": 9}
    second, _, _ = await capture_run(state, FakeReader(data))
    (store,) = state.list_stores(target="app")
    assert store.records == 6
    assert store.bytes == sum(len(v) for v in values) + 9 - len(values[2]) + len('{"id":9}')
    assert (store.last_run, store.last_changed_run) == (second, second)
    third, _, _ = await capture_run(state, FakeReader(data))
    (store,) = state.list_stores()
    assert (store.last_run, store.last_changed_run, store.last_complete) == (third, second, True)
    assert state.list_stores(target="other") == []


@in_loop
async def test_history_is_kept_for_keep_runs_runs_per_target(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state", keep_runs=2) as state:
        data = _data()
        runs = []
        for n in range(4):
            data["db"]["s"][0]["v"] = f"v{n}"
            runs.append((await capture_run(state, FakeReader(data)))[0])
        kept = [run.id for run in state.list_runs(target="app")]
        assert kept == runs[:1:-1]
        assert [c.op for c in state.run_changes(runs[3])] == ["+U"]
        conn = sqlite3.connect(state.path)
        assert conn.execute("SELECT count(*) FROM changes").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM run_stores").fetchone() == (2,)
        conn.close()


@in_loop
async def test_list_runs_filters_by_target_status_and_limit(state: StateDB) -> None:
    first, _, _ = await capture_run(state, FakeReader(_data()))
    failed = state.start_run("other")
    state.fail_run(failed, "page error")
    running = state.start_run("app")
    assert [r.id for r in state.list_runs()] == [running, failed, first]
    assert [r.id for r in state.list_runs(target="app")] == [running, first]
    assert [r.id for r in state.list_runs(status="failed")] == [failed]
    assert [r.id for r in state.list_runs(status=["running", "committed"])] == [running, first]
    assert [r.id for r in state.list_runs(limit=1)] == [running]
    run = state.get_run(first)
    assert run is not None
    assert (run.target, run.origin, run.records, run.inserted, run.rows) == (
        "app",
        ORIGIN,
        6,
        6,
        6,
    )
    assert run.started_at <= run.read_at <= run.finished_at  # type: ignore[operator]
    assert run.seq == 1 and state.get_run("nope") is None
    (store,) = state.run_stores(first)
    assert (store.db, store.store, store.inserted, store.complete) == ("db", "s", 6, True)


@in_loop
async def test_records_by_key_and_as_of_an_earlier_run(state: StateDB) -> None:
    data = _data()
    first, _, _ = await capture_run(state, FakeReader(data))
    data["db"]["s"][1]["v"] = "changed"
    del data["db"]["s"][2]
    data["db"]["s"][7] = {"id": 7}
    second, _, _ = await capture_run(state, FakeReader(data))
    data["db"]["s"][1]["v"] = "again"
    await capture_run(state, FakeReader(data))

    (one,) = state.iter_records("app", ORIGIN, "db", "s", key="1")
    assert json.loads(one.value or "") == {"id": 1, "v": "again"}
    assert (one.first_seen_run, one.last_changed_run) != (None, None)

    then = {r.key: r for r in state.iter_records("app", ORIGIN, "db", "s", as_of=first)}
    assert sorted(then, key=int) == ["0", "1", "2", "3", "4", "5"]
    assert {k: json.loads(r.value or "") for k, r in then.items()} == {
        str(n): {"id": n, "v": "x" * n} for n in range(6)
    }
    assert then["1"].last_changed_run is None and then["0"].last_changed_run == first
    original = FakeReader(_data()).read_store(FakeReader(_data()).schemas()[0].stores[0])
    hashes = {r.key: r.value_hash async for batch in original for r in batch}
    assert {k: r.value_hash for k, r in then.items()} == hashes

    middle = {r.key for r in state.iter_records("app", ORIGIN, "db", "s", as_of=second)}
    assert middle == {"0", "1", "3", "4", "5", "7"}
    (only,) = state.iter_records("app", ORIGIN, "db", "s", key="1", as_of=second)
    assert json.loads(only.value or "") == {"id": 1, "v": "changed"}
    with pytest.raises(StateError, match="not a committed run"):
        list(state.iter_records("app", ORIGIN, "db", "s", as_of="nope"))


def test_reads_and_the_health_check_never_wait_for_a_commit(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as state:
        run_id = state.start_run("app")
        committing = sqlite3.connect(state.path, isolation_level=None)
        committing.execute("BEGIN IMMEDIATE")
        try:
            assert state.writable()
            assert [run.id for run in state.list_runs()] == [run_id]
        finally:
            committing.execute("ROLLBACK")
            committing.close()


@pytest.mark.parametrize(
    ("old", "new", "op"),
    [
        (None, "h1", "+I"),
        ("h1", "h2", "+U"),
        ("h1", None, "-D"),
        ("h1", "h1", None),
        (None, None, None),
    ],
)
def test_change_op_is_the_one_diff_rule(old: str | None, new: str | None, op: str | None) -> None:
    assert change_op(old, new) == op


def test_records_are_built_from_columns_by_name() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    row = conn.execute(
        """SELECT 'x' AS unknown, NULL AS error, '[{"db": "d", "message": "m"}]' AS problems,
        0 AS incomplete_stores, 4 AS unchanged, 3 AS deleted, 2 AS updated, 1 AS inserted,
        10 AS rows, 99 AS bytes, 10 AS records, 1 AS pending, NULL AS seq, NULL AS finished_at,
        '2026-11-26T15:00:01.000Z' AS read_at, '2026-11-26T15:00:00.000Z' AS started_at,
        'http://o.test' AS origin, 0 AS full, 'read' AS status, 'app' AS target, 'r1' AS id,
        3 AS log_seq, '2026-11-26T15:00:02.000Z' AS handed_off_at, NULL AS consumed_at,
        4 AS consumed_rows, 'event' AS trigger, 2 AS trigger_events"""
    ).fetchone()
    run = from_row(Run, row)
    assert (run.id, run.target, run.status, run.full, run.pending) == (
        "r1",
        "app",
        "read",
        False,
        True,
    )
    assert (run.started_at.second, run.read_at and run.read_at.second, run.finished_at) == (
        0,
        1,
        None,
    )
    assert (run.records, run.inserted, run.updated, run.deleted, run.unchanged) == (10, 1, 2, 3, 4)
    assert run.problems == [{"db": "d", "message": "m"}] and run.error is None
    assert (run.log_seq, run.consumed_at, run.consumed_rows) == (3, None, 4)
    assert run.handed_off_at is not None and run.handed_off_at.second == 2
    conn.close()


@in_loop
async def test_problems_are_kept_up_to_the_shared_bound(state: StateDB) -> None:
    _run_id, _rows, stores = await capture_run(state, FakeReader(_data()), commit=False)
    many = [{"key": str(n), "message": "unreadable"} for n in range(MAX_PROBLEMS + 5)]
    run_id = state.start_run("other")
    state.mark_read(
        run_id,
        origin=ORIGIN,
        stores=[dataclasses.replace(stores[0], problems=many)],
        rows=0,
        problems=many,
    )
    run = state.get_run(run_id)
    (store,) = state.run_stores(run_id)
    assert run is not None
    for kept in (run.problems, store.problems):
        assert kept[:MAX_PROBLEMS] == many[:MAX_PROBLEMS]
        assert kept[MAX_PROBLEMS:] == [{"key": None, "message": "5 more problems not kept"}]
