"""The IndexedDB schema history over a real state DB: what each commit finds changed, what an
incomplete read must not claim, the migration from schema 3, and `harvester schema` / `diff`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harvester.cli import main
from harvester.state import ReadScope, RunStore, StateDB, state_db_path
from harvester.state.schema import _MIGRATIONS

ORIGIN = "http://127.0.0.1:8765"


def index(name: str, key_path: Any, *, unique: bool = False) -> dict[str, Any]:
    return {"name": name, "key_path": key_path, "unique": unique, "multi_entry": False}


def store(
    db: str,
    name: str,
    *,
    version: int = 1,
    key_path: Any = "id",
    auto_increment: bool = False,
    indexes: Sequence[dict[str, Any]] = (),
    complete: bool = True,
) -> RunStore:
    return RunStore(
        db=db,
        db_version=version,
        store=name,
        key_path=key_path,
        auto_increment=auto_increment,
        indexes=list(indexes),
        records=0,
        bytes=0,
        rows=0,
        inserted=0,
        updated=0,
        deleted=0,
        unchanged=0,
        complete=complete,
    )


def commit(
    state: StateDB,
    stores: Sequence[RunStore],
    *,
    databases: dict[str, int] | None = None,
    problems: Sequence[dict[str, Any]] = (),
    globs: tuple[tuple[str, ...], tuple[str, ...]] = (("*",), ("*",)),
    scoped: bool = True,
) -> str:
    """One committed run of target `app` that read `stores` (no record changes)."""
    run_id = state.start_run("app")
    opened = {s.db: s.db_version for s in stores} | (databases or {})
    scope = ReadScope(opened, *globs) if scoped else None
    state.mark_read(run_id, origin=ORIGIN, stores=stores, rows=0, problems=problems, scope=scope)
    assert state.commit_run(run_id, [])
    return run_id


def kinds(state: StateDB, run_id: str) -> list[tuple[Any, ...]]:
    return [
        (c.kind, c.db, c.store, c.index_name, c.old, c.new)
        for c in state.schema_changes("app", [run_id])
    ]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB.open(tmp_path / "state") as db:
        yield db


TODOS = store("todo", "todos", indexes=[index("by_done", "done")])


def test_a_first_run_adds_every_database_and_store(state: StateDB) -> None:
    run = commit(state, [TODOS], databases={"empty": 4})
    assert kinds(state, run) == [
        ("database_added", "empty", None, None, None, 4),
        ("database_added", "todo", None, None, None, 1),
        (
            "store_created",
            "todo",
            "todos",
            None,
            None,
            {"key_path": "id", "auto_increment": False, "indexes": [index("by_done", "done")]},
        ),
    ]
    assert [(d.db, d.version) for d in state.schema_dbs("app")] == [("empty", 4), ("todo", 1)]
    # The same schema again changes nothing.
    assert kinds(state, commit(state, [TODOS], databases={"empty": 4})) == []


def test_each_kind_of_change_is_found(state: StateDB) -> None:
    commit(state, [TODOS, store("todo", "tags", key_path=None, auto_increment=True)])
    run = commit(
        state,
        [
            store(
                "todo",
                "todos",
                version=2,
                key_path=["list", "id"],
                indexes=[index("by_done", "done", unique=True), index("by_title", "title")],
            ),
            store("todo", "tags", version=2, key_path=None),
            store("todo", "archive", version=2),
        ],
    )
    assert kinds(state, run) == [
        ("version_changed", "todo", None, None, 1, 2),
        ("key_path_changed", "todo", "todos", None, "id", ["list", "id"]),
        (
            "index_changed",
            "todo",
            "todos",
            "by_done",
            index("by_done", "done"),
            index("by_done", "done", unique=True),
        ),
        ("index_added", "todo", "todos", "by_title", None, index("by_title", "title")),
        ("auto_increment_changed", "todo", "tags", None, True, False),
        (
            "store_created",
            "todo",
            "archive",
            None,
            None,
            {"key_path": "id", "auto_increment": False, "indexes": []},
        ),
    ]
    todos = next(s for s in state.schema_stores("app") if s.store == "todos")
    assert (todos.key_path, [ix["name"] for ix in todos.indexes]) == (
        ["list", "id"],
        ["by_done", "by_title"],
    )


def test_a_complete_read_finds_stores_deleted_and_databases_removed(state: StateDB) -> None:
    first = commit(state, [TODOS, store("todo", "archive"), store("old", "s")])
    run = commit(state, [store("todo", "todos", version=2, indexes=TODOS.indexes)])
    assert [k[:3] for k in kinds(state, run)] == [
        ("version_changed", "todo", None),
        ("store_deleted", "todo", "archive"),
        ("database_removed", "old", None),
    ]
    assert [(s.db, s.store) for s in state.schema_stores("app")] == [("todo", "todos")]
    assert [d.db for d in state.schema_dbs("app")] == ["todo"]
    assert [c.run_id for c in state.schema_changes("app")][:1] == [first]


@pytest.mark.parametrize(
    "why",
    ["incomplete store", "database not opened", "store problem", "globs", "no scope"],
)
def test_what_was_not_read_is_not_gone(state: StateDB, why: str) -> None:
    commit(state, [TODOS, store("todo", "archive"), store("old", "s")])
    todos = store("todo", "todos", indexes=TODOS.indexes, complete=why != "incomplete store")
    problems: list[dict[str, Any]] = []
    globs: tuple[tuple[str, ...], tuple[str, ...]] = (("*",), ("*",))
    if why == "database not opened":
        problems = [{"db": "old", "store": None, "message": "cannot open: blocked"}]
    if why == "store problem":
        problems = [{"db": "todo", "store": "todos", "message": "cannot count: x"}]
    if why == "globs":
        globs = (("todo",), ("todo/todos",))
    run = commit(state, [todos], problems=problems, globs=globs, scoped=why != "no scope")
    removed = {k[:3] for k in kinds(state, run)}
    if why in {"incomplete store", "store problem"}:
        # The other database was read whole: that one is known gone.
        assert removed == {("database_removed", "old", None)}
    elif why == "database not opened":
        assert removed == {("store_deleted", "todo", "archive")}
    else:
        assert removed == set()
    if why != "database not opened":
        return
    # A later whole read of the database that could not be opened says it is gone.
    assert [k[:2] for k in kinds(state, commit(state, [todos]))] == [("database_removed", "old")]


def test_a_database_without_selected_stores_is_not_removed(state: StateDB) -> None:
    commit(state, [TODOS, store("old", "s")])
    # The reader leaves out a database none of whose stores the globs select.
    run = commit(state, [TODOS], globs=(("*",), ("todo/*",)))
    assert kinds(state, run) == []


def _db_at_3(folder: Path) -> sqlite3.Connection:
    folder.mkdir(mode=0o700)
    conn = sqlite3.connect(state_db_path(folder), isolation_level=None)
    for number, script in enumerate(_MIGRATIONS[:3], start=1):
        conn.executescript(f"{script}; PRAGMA user_version = {number};")
    return conn


def test_schema_3_is_migrated_with_a_baseline_from_stores(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    conn = _db_at_3(folder)
    conn.executemany(
        "INSERT INTO runs (id, target, status, origin, started_at, seq) "
        "VALUES (?, 'app', 'committed', ?, ?, ?)",
        [
            ("app-1", ORIGIN, "2026-01-01T00:00:00.000Z", 1),
            ("app-2", ORIGIN, "2026-01-02T00:00:00.000Z", 2),
        ],
    )
    indexes = json.dumps([index("by_done", "done")])
    conn.executemany(
        "INSERT INTO stores VALUES (?, ?, 'todo', ?, ?, '\"id\"', 0, ?, 0, 0, ?, ?, NULL, 1)",
        [
            # `archive` was last read by the older run, at the older version.
            ("app", ORIGIN, "archive", 1, "[]", "app-1", "app-1"),
            ("app", ORIGIN, "todos", 2, indexes, "app-1", "app-2"),
        ],
    )
    conn.close()
    with StateDB.open(folder) as state:
        assert [(d.db, d.version, d.first_run, d.last_run) for d in state.schema_dbs("app")] == [
            ("todo", 2, "app-1", "app-2")
        ]
        assert [(s.store, s.indexes) for s in state.schema_stores("app")] == [
            ("archive", []),
            ("todos", [index("by_done", "done")]),
        ]
        assert state.schema_changes("app") == []
        assert state.get_run("app-1") is not None
        # The next commit compares with the baseline.
        run = commit(state, [store("todo", "todos", version=3, indexes=[])])
        assert [k[:4] for k in kinds(state, run)] == [
            ("version_changed", "todo", None, None),
            ("index_removed", "todo", "todos", "by_done"),
            ("store_deleted", "todo", "archive", None),
        ]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_schema_and_diff_commands(
    state: StateDB, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = commit(state, [TODOS])
    second = commit(
        state,
        [
            store("todo", "todos", version=2, indexes=[*TODOS.indexes, index("by_title", "t")]),
            store("todo", "archive", version=2),
        ],
    )
    where = ("--state", str(tmp_path / "state"))
    now = json.loads(_cli(capsys, "schema", "app", *where, "--format", "json"))
    assert [(d["db"], d["version"], [s["store"] for s in d["stores"]]) for d in now] == [
        ("todo", 2, ["archive", "todos"])
    ]
    table = _cli(capsys, "schema", "app", *where, "--format", "table")
    assert 'by_title ("t")' in table and "archive" in table
    assert _cli(capsys, "schema", "app", *where, "--format", "csv").splitlines()[0] == (
        "origin,db,version,store,key_path,auto_increment,indexes,first_run,last_run"
    )
    history = json.loads(_cli(capsys, "schema", "app", "--history", *where, "--format", "json"))
    assert [(h["run_id"], h["kind"]) for h in history] == [
        (first, "database_added"),
        (first, "store_created"),
        (second, "version_changed"),
        (second, "index_added"),
        (second, "store_created"),
    ]
    assert history[2]["text"] == "todo: version 1 → 2" and history[2]["at"].endswith("Z")
    csv_history = _cli(capsys, "schema", "app", "--history", *where, "--format", "csv")
    assert csv_history.splitlines()[0] == "at,run_id,origin,db,store,index,kind,old,new"

    diff = json.loads(_cli(capsys, "diff", first, second, *where, "--format", "json"))
    assert [
        (c["kind"], c["db"], c["store"], c["index"], c["old"], c["new"]) for c in diff["schema"]
    ] == [
        ("version_changed", "todo", None, None, 1, 2),
        ("index_added", "todo", "todos", "by_title", None, index("by_title", "t")),
        (
            "store_created",
            "todo",
            "archive",
            None,
            None,
            {"key_path": "id", "auto_increment": False, "indexes": []},
        ),
    ]
    assert diff["stores"] == []
    table = _cli(capsys, "diff", first, second, *where, "--format", "table")
    assert table.splitlines()[0] == (
        "schema: todo: version 1 → 2; index by_title added to todos; store archive created"
    )
    csv_rows = _cli(capsys, "diff", first, second, *where, "--format", "csv").splitlines()
    assert csv_rows[1] == "todo,,version_changed,,,1,2"


def test_schema_of_an_unknown_target_lists_the_known(
    state: StateDB, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit(state, [TODOS])
    assert main(["schema", "nope", "--state", str(tmp_path / "state")]) == 2
    assert "unknown target 'nope'; known: 'app'" in capsys.readouterr().err
