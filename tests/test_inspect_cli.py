"""The inspection commands' json output, field by field, over a state DB written by state.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from harvester.cli import main
from harvester.codec import canonical, value_hash
from harvester.inspect.diff import FieldChange
from harvester.inspect.queries import StateReader
from harvester.state import RunStore, StateDB

TARGET = "shop"
ORIGIN = "http://127.0.0.1:8765"
XSS = ["<img src=x onerror=window.pwned=1>", "</script><script>window.pwned=2</script>"]


def _user(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": n, "name": f"user {n}", "tags": ["a"], **extra}


def _commit(state: StateDB, records: dict[str, dict[Any, Any]], before: dict[str, dict]) -> str:
    """One run of TARGET whose stores end up holding `records` (store -> key -> value)."""
    run_id = state.start_run(TARGET)
    rows, stores = [], []
    for store, now in records.items():
        old = before.get(store, {})
        counts = {"+I": 0, "+U": 0, "-D": 0}
        for key, value in now.items():
            text = canonical(value)
            if key not in old:
                op = "+I"
            elif canonical(old[key]) != text:
                op = "+U"
            else:
                continue
            counts[op] += 1
            rows.append(_row(run_id, store, key, op, text))
        for key in old.keys() - now.keys():
            counts["-D"] += 1
            rows.append(_row(run_id, store, key, "-D", None))
        stores.append(
            RunStore(
                db="shopdb",
                db_version=3,
                store=store,
                key_path="id",
                auto_increment=False,
                indexes=[
                    {"name": "by_name", "key_path": "name", "unique": False, "multi_entry": False}
                ],
                records=len(now),
                bytes=sum(len(canonical(v)) for v in now.values()),
                rows=len(rows),
                inserted=counts["+I"],
                updated=counts["+U"],
                deleted=counts["-D"],
                unchanged=len(now) - counts["+I"] - counts["+U"],
                complete=True,
            )
        )
    state.mark_read(run_id, origin=ORIGIN, stores=stores, rows=len(rows))
    assert state.commit_run(run_id, rows)
    return run_id


def _row(run_id: str, store: str, key: Any, op: str, value: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "target": TARGET,
        "origin": ORIGIN,
        "db_name": "shopdb",
        "db_version": 3,
        "store": store,
        "key": canonical(key),
        "op": op,
        "value": value,
        "value_hash": None if value is None else value_hash(value),
    }


FIRST = {
    "users": {n: _user(n) for n in range(1, 6)},
    "orders": {"o-1": {"id": "o-1", "note": XSS[0]}, "o-2": {"id": "o-2", "note": XSS[1]}},
}
SECOND = {
    "users": {
        **{n: _user(n) for n in (1, 2)},
        3: _user(3, name="user three", email="three@example.com"),
        5: {"id": 5, "name": "user 5", "tags": ["a", "b"]},
        6: _user(6),
    },
    "orders": FIRST["orders"],
}


@pytest.fixture
def state_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    folder = tmp_path / "state"
    with StateDB.open(folder) as state:
        runs = [_commit(state, FIRST, {}), _commit(state, SECOND, FIRST)]
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
    assert by_key[1]["value"] == _user(1)
    assert by_key[3]["value_hash"] == value_hash(canonical(_user(3)))


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
    assert (added["key"], added["new_value"]) == (6, _user(6))
    (removed,) = users["removed"]
    assert (removed["key"], removed["old_hash"]) == (4, value_hash(canonical(_user(4))))
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
        "value": _user(1),
        "value_hash": value_hash(canonical(_user(1))),
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
    third_data = {**SECOND, "users": {**SECOND["users"], 3: _user(3, name="user 3c")}}
    with StateDB.open(folder) as state:
        _commit(state, third_data, SECOND)
    result = run_json(capsys, "diff", first, second, "--state", str(folder))
    (users,) = result["stores"]
    three, five = users["changed"]
    assert three["fields"] == [
        {"field": "name", "old": '"user 3"', "new": '"user three"'},
        {"field": "email", "old": None, "new": '"three@example.com"'},
    ]
    assert five["fields"] == [{"field": "tags", "old": '["a"]', "new": '["a", "b"]'}]
    assert (three["old_value"], three["new_value"]) == (_user(3), SECOND["users"][3])
    (removed,) = users["removed"]
    assert removed["old_value"] == _user(4)
    with StateReader(folder) as reader:
        store = reader.store(TARGET, "shopdb", "users")
        latest = reader.run_changes(second, store, limit=10)
    assert [r.fields for r in latest.changed][1] == (FieldChange("tags", '["a"]', '["a", "b"]'),)
    # `show --run` gets past values from the history too.
    show = ["show", TARGET, "shopdb", "users", "--state", str(folder), "--run", second]
    assert {r["key"]: r["value"] for r in run_json(capsys, *show)} == SECOND["users"]
