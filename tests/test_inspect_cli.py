"""The inspection commands' json output, field by field, over a state DB written by state.py."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from harvester.cli import main
from harvester.codec import canonical, value_hash
from harvester.errors import StateError
from harvester.inspect.diff import FieldChange
from harvester.inspect.queries import StateReader
from harvester.state import StateDB
from tests.support.inspect_data import (
    FIRST,
    ORIGIN,
    SECOND,
    TARGET,
    XSS,
    commit_records,
    user,
)


@pytest.fixture
def state_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    folder = tmp_path / "state"
    with StateDB.open(folder) as state:
        runs = [commit_records(state, FIRST, {}), commit_records(state, SECOND, FIRST)]
    return folder, runs


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_runs(state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    folder, (first, second) = state_dir
    runs = run_json(capsys, "runs", "--state", str(folder))
    assert [r["id"] for r in runs] == [second, first]
    assert [(r["inserted"], r["updated"], r["deleted"], r["unchanged"]) for r in runs] == [
        (1, 2, 1, 4),
        (7, 0, 0, 0),
    ]
    assert {r["status"] for r in runs} == {"committed"}
    assert all(r["duration_s"] >= 0 and r["target"] == TARGET for r in runs)
    assert run_json(capsys, "runs", "--state", str(folder), "--limit", "1")[0]["id"] == second


def test_stores_with_schema(
    state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, (first, second) = state_dir
    orders, users = run_json(capsys, "stores", "--state", str(folder), "--target", TARGET)
    assert (users["target"], users["origin"], users["db"], users["store"]) == (
        TARGET,
        ORIGIN,
        "shopdb",
        "users",
    )
    assert (users["db_version"], users["key_path"], users["auto_increment"]) == (3, "id", False)
    assert users["indexes"] == [
        {"name": "by_name", "key_path": "name", "unique": False, "multi_entry": False}
    ]
    assert users["records"] == 5
    assert (users["first_run"], users["last_run"], users["last_changed_run"]) == (
        first,
        second,
        second,
    )
    assert orders["last_changed_run"] == first and orders["records"] == 2
    assert users["schema"] == {
        "sampled": 5,
        "value_types": {"object": 5},
        "fields": [
            {"field": "id", "count": 5, "frequency": 1.0, "types": {"number": 5}},
            {"field": "name", "count": 5, "frequency": 1.0, "types": {"string": 5}},
            {"field": "tags", "count": 5, "frequency": 1.0, "types": {"array": 5}},
            {"field": "email", "count": 1, "frequency": 0.2, "types": {"string": 1}},
        ],
    }


def test_show(state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    folder, (first, second) = state_dir
    base = ["show", TARGET, "shopdb", "users", "--state", str(folder)]
    records = run_json(capsys, *base)
    assert [r["key"] for r in records] == [1, 2, 3, 5, 6]
    three = records[2]
    assert three["value"] == {
        "email": "three@example.com",
        "id": 3,
        "name": "user three",
        "tags": ["a"],
    }
    assert three["key_text"] == "3"
    assert three["value_hash"] == value_hash(canonical(SECOND["users"][3]))
    assert (three["first_seen_run"], three["last_changed_run"]) == (first, second)
    assert [r["key"] for r in run_json(capsys, *base, "--key", "5")] == [5]
    assert [r["key"] for r in run_json(capsys, *base, "--where", "name=user three")] == [3]
    assert [r["key"] for r in run_json(capsys, *base, "--where", 'tags=["a"]', "--limit", "2")] == [
        1,
        2,
    ]
    # As of the first run: 4 is back, 6 is not there yet; 3 and 5 changed since (by hash).
    old = run_json(capsys, *base, "--run", first)
    assert sorted(r["key"] for r in old) == [1, 2, 3, 4, 5]
    by_key = {r["key"]: r for r in old}
    assert by_key[1]["value"] == user(1)
    assert by_key[3]["value_hash"] == value_hash(canonical(user(3)))


def test_diff(state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    folder, (first, second) = state_dir
    result = run_json(capsys, "diff", first, second, "--state", str(folder))
    assert (
        run_json(capsys, "diff", "--target", TARGET, "--last", "2", "--state", str(folder))
        == result
    )
    assert (result["target"], result["from_run"], result["to_run"]) == (TARGET, first, second)
    (users,) = result["stores"]
    assert (users["db"], users["store"]) == ("shopdb", "users")
    assert users["counts"] == {"added": 1, "changed": 2, "removed": 1}
    (added,) = users["added"]
    assert (added["key"], added["new_value"]) == (6, user(6))
    (removed,) = users["removed"]
    assert (removed["key"], removed["old_hash"]) == (4, value_hash(canonical(user(4))))
    assert [c["key"] for c in users["changed"]] == [3, 5]
    assert [c["new_value"] for c in users["changed"]] == [SECOND["users"][3], SECOND["users"][5]]


def test_export_jsonl_and_csv(state_dir: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, (first, _second) = state_dir
    out = tmp_path / "users.jsonl"
    argv = ["export", TARGET, "--store", "users", "--state", str(folder)]
    assert main([*argv, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["key"], r["value"]) for r in lines] == [(k, v) for k, v in SECOND["users"].items()]
    assert lines[0] == {
        "target": TARGET,
        "origin": ORIGIN,
        "db": "shopdb",
        "store": "users",
        "key": 1,
        "value": user(1),
        "value_hash": value_hash(canonical(user(1))),
        "first_seen_run": first,
        "last_changed_run": first,
    }
    out_csv = tmp_path / "all.csv"
    assert main(["export", TARGET, "--state", str(folder), "--out", str(out_csv)]) == 0
    with out_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        *("target", "origin", "db", "store", "key"),
        *("value.id", "value.note", "value.name", "value.tags", "value.email"),
    ]
    by_key = {(r["store"], r["key"]): r for r in rows}
    assert len(rows) == 7
    assert by_key[("orders", "o-1")]["value.note"] == XSS[0]
    three = by_key[("users", "3")]
    assert (three["value.id"], three["value.name"], three["value.tags"]) == (
        "3",
        "user three",
        '["a"]',
    )
    assert (
        three["value.email"] == "three@example.com" and by_key[("users", "1")]["value.email"] == ""
    )
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "--target", "nope"], "unknown target 'nope'; known: 'shop'"),
        (["runs", "--status", "odd"], "unknown status 'odd'; known: 'running', 'read'"),
        (["stores", "--target", "nope"], "unknown target 'nope'; known: 'shop'"),
        (["show", "nope", "shopdb", "users"], "unknown target 'nope'; known: 'shop'"),
        (
            ["show", TARGET, "nodb", "users"],
            "unknown database 'nodb' of target 'shop'; known: 'shopdb'",
        ),
        (
            ["show", TARGET, "shopdb", "x"],
            "unknown store 'x' in database 'shopdb' of target 'shop'; known: 'orders', 'users'",
        ),
        (
            ["show", TARGET, "shopdb", "users", "--run", "r-x"],
            "unknown run 'r-x' (newest listed first); known: ",
        ),
        (["diff", "r-x", "r-y"], "unknown run 'r-x'"),
        (["show", "--run", "FAILED", TARGET, "shopdb", "users"], "unknown committed run 'FAILED'"),
        (["diff", "--target", "nope", "--last", "2"], "unknown target 'nope'"),
        (
            ["diff", "--target", TARGET, "--last", "3"],
            "has 2 committed runs kept, fewer than --last 3",
        ),
        (["export", "nope", "--out", "x.jsonl"], "unknown target 'nope'"),
        (["export", TARGET, "--out", "/nonexistent/x.csv"], "cannot write /nonexistent/x.csv"),
        (["report", "--out", "/nonexistent/r.html"], "cannot write /nonexistent/r.html"),
        (
            ["export", TARGET, "--store", "x", "--out", "x.jsonl"],
            "unknown store 'x' for target 'shop'; known: orders, users",
        ),
    ],
)
def test_bad_input_exits_2_listing_what_exists(
    state_dir: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    folder, _runs = state_dir
    with StateDB.open(folder) as state:
        failed = state.start_run(TARGET)
        state.fail_run(failed, "boom")
    argv = [failed if arg == "FAILED" else arg for arg in argv]
    message = message.replace("FAILED", failed)
    assert main([*argv, "--state", str(folder)]) == 2
    assert message in capsys.readouterr().err


def test_run_changes_counts_all_and_lists_up_to_the_limit(
    state_dir: tuple[Path, list[str]],
) -> None:
    folder, (_first, second) = state_dir
    with StateReader(folder) as reader:
        users = reader.store(TARGET, "shopdb", "users")
        diff = reader.run_changes(second, users, limit=1)
    assert diff.counts() == {"added": 1, "changed": 2, "removed": 1}
    assert [r.key for r in diff.changed] == ["3"]
    assert diff.unlisted == {"added": 0, "changed": 1, "removed": 0}


def test_diff_is_field_by_field_between_past_runs(
    state_dir: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The history keeps replaced values (`changes.old_value`), so diffs name each field, also
    between past runs whose values the snapshot no longer holds."""
    folder, (first, second) = state_dir
    third_data = {**SECOND, "users": {**SECOND["users"], 3: user(3, name="user 3c")}}
    with StateDB.open(folder) as state:
        commit_records(state, third_data, SECOND)
    result = run_json(capsys, "diff", first, second, "--state", str(folder))
    (users,) = result["stores"]
    three, five = users["changed"]
    assert three["fields"] == [
        {"field": "name", "old": '"user 3"', "new": '"user three"'},
        {"field": "email", "old": None, "new": '"three@example.com"'},
    ]
    assert five["fields"] == [{"field": "tags", "old": '["a"]', "new": '["a", "b"]'}]
    assert (three["old_value"], three["new_value"]) == (user(3), SECOND["users"][3])
    (removed,) = users["removed"]
    assert removed["old_value"] == user(4)
    with StateReader(folder) as reader:
        store = reader.store(TARGET, "shopdb", "users")
        latest = reader.run_changes(second, store, limit=10)
    assert [r.fields for r in latest.changed][1] == (FieldChange("tags", '["a"]', '["a", "b"]'),)
    # `show --run` gets past values from the history too.
    show = ["show", TARGET, "shopdb", "users", "--state", str(folder), "--run", second]
    assert {r["key"]: r["value"] for r in run_json(capsys, *show)} == SECOND["users"]


def test_the_schema_version_is_checked_whatever_the_file_is_called(
    state_dir: tuple[Path, list[str]], tmp_path: Path
) -> None:
    folder, _runs = state_dir
    copy = tmp_path / "backup.sqlite"
    shutil.copyfile(folder / "state.db", copy)
    with StateReader(copy) as reader:
        assert reader.targets() == [TARGET]
    conn = sqlite3.connect(copy)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with pytest.raises(StateError, match="has schema version 1, this harvester reads 2"):
        StateReader(copy)
    assert main(["runs", "--state", str(copy)]) == StateError.exit_code
