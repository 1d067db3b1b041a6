"""The state DB under faults: retention through failed runs, and a state DB that cannot be used
(empty, not SQLite, damaged, not ours, newer) refused instead of taken for a new one."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harvester.cli import main
from harvester.errors import StateLockedError, UnusableStateError
from harvester.lock import StateLock
from harvester.state import SCHEMA_VERSION, StateDB, reset_state, state_db_path
from tests.support.configs import write_config
from tests.support.fake_reader import ORIGIN, FakeReader, capture_run, in_loop


def _data(version: int) -> dict[str, dict[str, dict[int, dict[str, object]]]]:
    return {"db": {"s": {n: {"id": n, "v": f"v{version}" if n == 0 else n} for n in range(4)}}}


def _fail(state: StateDB, error: str = "page error: net::ERR_CONNECTION_REFUSED") -> str:
    run_id = state.start_run("app")
    state.fail_run(run_id, error)
    return run_id


# ---- retention (issue 14, item 2) ------------------------------------------------------------


@in_loop
async def test_failed_runs_never_push_committed_history_out(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state", keep_runs=3) as state:
        good = [(await capture_run(state, FakeReader(_data(n))))[0] for n in range(3)]
        failed = [_fail(state) for _ in range(4)]
        good.append((await capture_run(state, FakeReader(_data(3))))[0])
        committed = [run.id for run in state.list_runs(target="app", status="committed")]
        assert committed == good[:0:-1]
        # Their history is whole: the oldest kept run can still be rebuilt from it.
        assert [c.op for c in state.run_changes(good[1])] == ["+U"]
        as_of = state.iter_records("app", ORIGIN, "db", "s", as_of=good[1])
        values = {record.key: record.value for record in as_of}
        assert values["0"] == '{"id":0,"v":"v1"}'
        assert [run.id for run in state.list_runs(target="app", status="failed")] == failed[::-1]


@in_loop
async def test_failed_runs_have_a_bound_of_their_own(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state", keep_runs=2, keep_failed_runs=3) as state:
        good = (await capture_run(state, FakeReader(_data(0))))[0]
        # A target that stays down never commits: the failures are bounded all the same.
        failed = [_fail(state) for _ in range(5)]
        assert [run.id for run in state.list_runs(target="app")] == [*failed[:1:-1], good]
        # A run dropped as unsendable is a failed run too.
        run_id, _, _ = await capture_run(state, FakeReader(_data(1)), commit=False)
        state.drop_pending(run_id, "spool file missing")
        kept = [run.id for run in state.list_runs(target="app", status="failed")]
        assert kept == [run_id, failed[4], failed[3]]
        # A pending failed run (its send failed) is never pruned, and does not count.
        pending, _, _ = await capture_run(state, FakeReader(_data(2)), commit=False)
        state.fail_run(pending, "sending failed")
        for _ in range(3):
            _fail(state)
        assert [run.id for run in state.pending_runs("app")] == [pending]
        assert len(state.list_runs(target="app", status="failed")) == 4
        # Another target's runs are pruned on their own.
        other = state.start_run("other")
        state.fail_run(other, "down")
        assert [run.id for run in state.list_runs(target="other")] == [other]


@in_loop
async def test_committed_runs_are_kept_in_commit_order(tmp_path: Path) -> None:
    # A run committed late (its send failed) is newer than the runs committed before it: the
    # history is rebuilt in commit order, so retention keeps the newest commits, not starts.
    with StateDB.open(tmp_path / "state", keep_runs=2) as state:
        late, rows, _ = await capture_run(state, FakeReader(_data(0)), commit=False)
        state.fail_run(late, "sending failed")
        await capture_run(state, FakeReader(_data(1)))
        assert state.commit_run(late, rows)
        last = (await capture_run(state, FakeReader(_data(2))))[0]
        assert [r.id for r in state.list_runs(target="app", status="committed")] == [last, late]


# ---- a state DB that cannot be used (issue 14, item 3) ---------------------------------------


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path) -> None:
    path.write_bytes(b"{not a database}\n" * 500)


def _sqlite_without_tables(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 0")  # a write: SQLite writes its header
    conn.execute("VACUUM")
    conn.close()


def _foreign(version: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.executescript(f"CREATE TABLE notes (x); PRAGMA user_version = {version};")
        conn.close()

    return make


def _newer(path: Path) -> None:
    StateDB.open(path.parent).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()


def _damaged(table: str) -> Callable[[Path], None]:
    """A state DB with records whose `table` has its root page overwritten."""

    def make(path: Path) -> None:
        async def fill() -> None:
            with StateDB.open(path.parent) as state:
                data = {"db": {"s": {n: {"id": n, "v": "x" * 100} for n in range(300)}}}
                await capture_run(state, FakeReader(data))

        asyncio.run(fill())  # closing the last connection moved the WAL into the file
        conn = sqlite3.connect(path)
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        sql = "SELECT rootpage FROM sqlite_master WHERE name = ?"
        (root,) = conn.execute(sql, (table,)).fetchone()
        conn.close()
        with path.open("r+b") as file:
            file.seek((root - 1) * page_size)
            file.write(b"\xa5" * page_size)

    return make


# How to break a state DB, and what the refusal says it is.
BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (_empty, "is empty (0 bytes)"),
    "garbage": (_garbage, "is not a SQLite database"),
    "sqlite without tables": (_sqlite_without_tables, "holds no tables"),
    "foreign": (_foreign(0), "is not an idb-harvester state database (schema version 0"),
    "foreign at our version": (
        _foreign(SCHEMA_VERSION),
        f"is not an idb-harvester state database (schema version {SCHEMA_VERSION}, tables "
        "notes; missing runs, run_stores, stores, snapshot, changes)",
    ),
    "newer": (_newer, f"has schema version {SCHEMA_VERSION + 1}, newer than this harvester"),
    "damaged runs table": (_damaged("runs"), "is damaged"),
}


def _broken(tmp_path: Path, case: str) -> tuple[Path, str]:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    path = state_db_path(folder)
    make, problem = BROKEN[case]
    make(path)
    return path, problem


def _assert_refusal(message: str, path: Path, problem: str) -> None:
    assert f"the state database {path} {problem}" in message
    assert "a new one is not started over it" in message
    assert "restore it from a backup" in message
    assert "harvester harvest --reset-state" in message
    assert f"moves the state folder {path.parent} aside to {path.parent}.broken-<time>" in message
    assert "\n" not in message


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_state_db_is_refused_and_left_as_it_is(tmp_path: Path, case: str) -> None:
    path, problem = _broken(tmp_path, case)
    before = path.read_bytes()
    with pytest.raises(UnusableStateError) as refused:
        StateDB.open(path.parent)
    _assert_refusal(str(refused.value), path, problem)
    assert refused.value.exit_code == 2
    # Refusing changed nothing: no header written, no journal mode switched, no table added.
    assert path.read_bytes() == before
    with pytest.raises(UnusableStateError) as read_only:
        StateDB.open(path.parent, readonly=True)
    assert str(read_only.value) == str(refused.value)
    with pytest.raises(UnusableStateError) as by_file:
        StateDB.open_file(path)
    assert str(by_file.value) == str(refused.value)
    assert path.read_bytes() == before


def test_a_damaged_page_is_refused_when_a_read_meets_it(tmp_path: Path) -> None:
    # A read-only open checks the small tables only; the snapshot is checked as it is read.
    path = state_db_path(tmp_path / "state")
    _damaged("snapshot")(path)
    with pytest.raises(UnusableStateError) as refused:
        StateDB.open(path.parent)
    _assert_refusal(str(refused.value), path, "is damaged")
    with StateDB.open_file(path) as state:
        (store,) = state.list_stores()
        with pytest.raises(UnusableStateError) as reading:
            list(state.iter_records(store.target, store.origin, store.db, store.store))
    _assert_refusal(str(reading.value), path, "is damaged (reading it failed:")


def test_a_missing_db_beside_its_journal_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "state.db-wal").write_bytes(b"frames of the DB that was here")
    with pytest.raises(UnusableStateError) as refused:
        StateDB.open(folder)
    _assert_refusal(str(refused.value), folder / "state.db", "is missing but its journal")
    assert not (folder / "state.db").exists()


def test_only_a_missing_db_is_made_anew_and_whole(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    StateDB.open(folder).close()
    path = state_db_path(folder)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # No temporary file is left, and the DB is whole at this version before it has its name.
    assert sorted(p.name for p in folder.iterdir()) == ["state.db"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


@pytest.mark.parametrize("case", ["empty", "garbage", "foreign", "newer", "damaged runs table"])
def test_harvester_runs_on_a_broken_db_says_so_in_one_line(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, problem = _broken(tmp_path, case)
    for state in (path.parent, path):  # --state takes the folder or the file
        assert main(["runs", "--state", str(state)]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith("error: ") and err.count("\n") == 1
        assert "Traceback" not in err
        _assert_refusal(err.removesuffix("\n"), path, problem)


# ---- --reset-state ----------------------------------------------------------------------------


def _folder_with_a_pending_spool(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    StateDB.open(folder).close()
    spool = folder / "spool"
    spool.mkdir()
    (spool / "app-1.jsonl").write_text('{"op":"-D"}\n')
    _empty(state_db_path(folder))
    return folder


def test_reset_moves_the_folder_aside_whole_and_starts_anew(tmp_path: Path) -> None:
    folder = _folder_with_a_pending_spool(tmp_path)
    moment = datetime(2026, 11, 26, 15, 0, 0, tzinfo=UTC)
    aside = reset_state(folder, now=moment)
    assert aside == tmp_path / "state.broken-20261126T150000Z"
    assert (aside / "spool" / "app-1.jsonl").read_text() == '{"op":"-D"}\n'
    assert (aside / "state.db").stat().st_size == 0
    assert list(folder.iterdir()) == []
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with StateDB.open(folder) as state:
        assert state.list_runs() == []
    # A second reset in the same second does not collide with the first.
    assert reset_state(folder, now=moment) == tmp_path / "state.broken-20261126T150000Z-2"
    assert reset_state(tmp_path / "none") is None


def test_reset_refuses_while_the_folder_is_locked(tmp_path: Path) -> None:
    folder = _folder_with_a_pending_spool(tmp_path)
    with StateLock(folder), pytest.raises(StateLockedError, match=f"process {os.getpid()}"):
        reset_state(folder)
    assert (folder / "spool" / "app-1.jsonl").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_reset_of_a_symlinked_folder_moves_what_it_points_to(tmp_path: Path) -> None:
    real = _folder_with_a_pending_spool(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    aside = reset_state(link)
    assert aside is not None and aside.parent == tmp_path and aside.name.startswith("state.")
    assert (aside / "spool" / "app-1.jsonl").is_file()
    assert link.resolve() == real and list(real.iterdir()) == []


def test_harvest_on_an_emptied_state_db_exits_2_and_keeps_the_pending_spool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The case: `truncate -s 0 state/state.db` used to re-snapshot everything, exit 0.
    config = write_config(tmp_path)
    folder = _folder_with_a_pending_spool(tmp_path)
    code = main(["harvest", "--config", str(config), "--all", "--sink", "jsonl"])
    _out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    _assert_refusal(line.removeprefix("error: "), state_db_path(folder), "is empty (0 bytes)")
    assert state_db_path(folder).stat().st_size == 0
    assert (folder / "spool" / "app-1.jsonl").is_file()
    assert not (tmp_path / "data").exists()  # nothing was harvested or sent


@pytest.mark.browser
def test_harvest_with_reset_state_moves_the_broken_folder_aside_and_starts_anew(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)  # a target nothing listens on: the run itself fails
    folder = _folder_with_a_pending_spool(tmp_path)
    code = main(["harvest", "--config", str(config), "--all", "--sink", "jsonl", "--reset-state"])
    err = capsys.readouterr().err
    assert code == 1, err
    (aside,) = tmp_path.glob("state.broken-*")
    assert f"state folder {folder} moved aside to {aside}; starting a new one" in err
    assert (aside / "spool" / "app-1.jsonl").is_file()
    assert (aside / "state.db").stat().st_size == 0
    with StateDB.open(folder) as state:
        (run,) = state.list_runs()
        assert run.status == "failed"
